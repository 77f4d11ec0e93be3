/* leace.c — turns finished moments into a LEACE (or orth) eraser, with the
 * semantics of concept-erasure's LeaceFitter.eraser:
 *   W = Sigma_xx^{-1/2} (eigenvalues <= lambda_max * d * eps cut), W+ = its
 *   pseudo-inverse; U = left singular vectors of W Sigma_xz with singular
 *   values > svd_tol; L = W+ U, R = U^T W; bias = mean_x when affine.
 *   With constrain_cov_trace, if tr(P S P^T) > tr(S) for P = I - L R, P is
 *   mixed with Q = I - U U^T so the trace is kept, and I - P is refactored.
 * All of it in float64; the d x d products and the eigendecomposition go
 * through the backend, or, when the running moments live on a device that
 * can (backend leace_whiten/leace_factors), stay there entirely. */
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"

typedef struct {
  double *S;    /* (d, d) covariance estimate (shrunk or Bessel) */
  double *V;    /* (d, d) eigenvectors, row j = vector j */
  double *w;    /* (d) eigenvalues */
  double *W;    /* (d, d) whitening */
  double *Winv; /* (d, d) unwhitening */
  double *M;    /* (d, zd) W Sigma_xz */
  double *U;    /* (d, min(d, zd)) left singular vectors */
  double *s;    /* singular values */
  double *VT;   /* right singular vectors (unused) */
  double *tmp;  /* (d, d) scratch */
} work;

static void work_free(work *w) {
  free(w->S);
  free(w->V);
  free(w->w);
  free(w->W);
  free(w->Winv);
  free(w->M);
  free(w->U);
  free(w->s);
  free(w->VT);
  free(w->tmp);
}

/* Covariance estimate S (d, d) from the co-moment (upper triangle). */
static void covariance(const culeace_fitter *f, double *S) {
  int64_t d = f->d;
  double n = (double)f->n;
  double scale = f->opts.shrinkage ? 1.0 / n : 1.0 / (n - 1.0);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i; j < d; j++)
      S[i * d + j] = S[j * d + i] = f->cxx[i * d + j] * scale;
  if (f->opts.shrinkage) culeace__optimal_linear_shrinkage(S, d, n);
}

/* W and W+ from the eigendecomposition of S. */
static culeace_status whitening(culeace_ctx *ctx, int64_t d, work *k) {
  memcpy(k->V, k->S, (size_t)d * (size_t)d * 8);
  culeace_status st = ctx->backend->eigh(ctx, k->V, k->w, d);
  if (st) return st;
  double cut = k->w[d - 1] * (double)d * DBL_EPSILON;
  /* tmp = diag(f(w)) V^T rows scaled; W = V diag V^T = Vt^T (diag Vt) */
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t j = 0; j < d; j++) {
      double lam = k->w[j] > 0 ? k->w[j] : 0.0;
      double g = k->w[j] > cut ? (pass == 0 ? 1.0 / sqrt(lam) : sqrt(lam)) : 0;
      for (int64_t i = 0; i < d; i++) k->tmp[j * d + i] = g * k->V[j * d + i];
    }
    st = ctx->backend->gemm(ctx, 1, 0, d, d, d, 1.0, k->V, d, k->tmp, d, 0.0,
                            pass == 0 ? k->W : k->Winv, d);
    if (st) return st;
  }
  return CULEACE_OK;
}

/* tr(A B) for A (m, p), B (p, m). */
static double trace_ab(const double *A, const double *B, int64_t m, int64_t p) {
  double t = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < p; j++) t += A[i * p + j] * B[j * m + i];
  return t;
}

culeace_status culeace__constrain_trace(culeace_ctx *ctx, const double *S,
                                      int64_t d, const double *U, int64_t ldu,
                                      culeace_eraser **e) {
  int64_t r = (*e)->info.rank;
  if (r == 0) return CULEACE_OK;
  culeace_status st = CULEACE_OK;
  double *RS = malloc((size_t)r * d * 8), *SU = malloc((size_t)d * r * 8);
  double *Ur = malloc((size_t)d * r * 8);
  if (!RS || !SU || !Ur) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory in the covariance-trace constraint");
    goto cleanup;
  }
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < r; j++) Ur[i * r + j] = U[i * ldu + j];
  double trS = 0;
  for (int64_t i = 0; i < d; i++) trS += S[i * d + i];
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 0, r, d, d, 1, (*e)->R, d, S, d, 0,
                                 RS, d));
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 0, d, r, d, 1, S, d, Ur, r, 0, SU, r));
  st = culeace__constrain_trace_with(ctx, trS, RS, SU, d, U, ldu, e);
cleanup:
  free(RS);
  free(SU);
  free(Ur);
  return st;
}

culeace_status culeace__constrain_trace_with(culeace_ctx *ctx, double trS,
                                           const double *RS, const double *SU,
                                           int64_t d, const double *U,
                                           int64_t ldu, culeace_eraser **e) {
  culeace_eraser *er = *e;
  int64_t r = er->info.rank;
  if (r == 0) return CULEACE_OK;
  culeace_status st = CULEACE_OK;
  double *G = malloc((size_t)r * r * 8), *H = malloc((size_t)r * r * 8);
  double *Ur = malloc((size_t)d * r * 8), *UL = malloc((size_t)r * r * 8);
  double *RSU = malloc((size_t)r * r * 8), *E = NULL, *sv = NULL, *u = NULL,
         *vt = NULL;
  culeace_eraser *mixed = NULL;
  if (!G || !H || !Ur || !UL || !RSU) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory in the covariance-trace constraint");
    goto cleanup;
  }
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < r; j++) Ur[i * r + j] = U[i * ldu + j];
  const double *L = er->L, *R = er->R;
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 1, r, r, d, 1, RS, d, R, d, 0, G, r));
  CULEACE_TRY(ctx->backend->gemm(ctx, 1, 0, r, r, d, 1, L, r, L, r, 0, H, r));
  double t_rsl = trace_ab(RS, L, r, d);
  double new_tr = trS - 2 * t_rsl + trace_ab(G, H, r, r);
  if (!(new_tr > trS)) goto cleanup;

  /* Mix P with Q = I - U U^T so that tr(P' S P'^T) = tr(S). */
  CULEACE_TRY(ctx->backend->gemm(ctx, 1, 0, r, r, d, 1, Ur, r, L, r, 0, UL, r));
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 0, r, r, d, 1, RS, d, Ur, r, 0, RSU, r));
  double t_usu = 0;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < r; j++) t_usu += Ur[i * r + j] * SU[i * r + j];
  double x = new_tr;
  double y = 2 * (trS - t_usu - t_rsl + trace_ab(UL, RSU, r, r));
  double z = trS - t_usu;
  double w = trS;
  double disc2 = 4 * w * x - 4 * w * y + 4 * w * z - 4 * x * z + y * y;
  double discr = sqrt(disc2 > 0 ? disc2 : 0);
  double a1 = (-y / 2 + z - discr / 2) / (x - y + z);
  double a2 = (-y / 2 + z + discr / 2) / (x - y + z);
  double alpha = a1 > 0 ? a1 : a2;
  alpha = alpha < 0 ? 0 : alpha > 1 ? 1 : alpha;

  /* I - P' = alpha L R + (1 - alpha) U U^T, refactored by SVD. */
  size_t dd = (size_t)d * d;
  E = malloc(dd * 8);
  sv = malloc((size_t)d * 8);
  u = malloc(dd * 8);
  vt = malloc(dd * 8);
  if (!E || !sv || !u || !vt) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory refactoring the mixed projection");
    goto cleanup;
  }
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 1, d, d, r, 1 - alpha, Ur, r, Ur, r,
                                 0, E, d));
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 0, d, d, r, alpha, L, r, R, d, 1, E,
                                 d));
  lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)d,
                                   (lapack_int)d, E, (lapack_int)d, sv, u,
                                   (lapack_int)d, vt, (lapack_int)d);
  if (info != 0) {
    st = culeace__error(ctx, CULEACE_ERR_LAPACK,
                        "dgesdd failed refactoring the mixed projection "
                        "(info = %d)", (int)info);
    goto cleanup;
  }
  int64_t r2 = 0;
  while (r2 < d && sv[r2] > sv[0] * (double)d * DBL_EPSILON) r2++;
  CULEACE_TRY(culeace__eraser_alloc(ctx, d, r2, &mixed));
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < r2; j++) {
      mixed->L[i * r2 + j] = u[i * d + j] * sqrt(sv[j]);
      mixed->R[j * d + i] = vt[j * d + i] * sqrt(sv[j]);
    }
  mixed->info = er->info;
  mixed->info.rank = r2;
  memcpy(mixed->bias, er->bias, (size_t)d * 8);
  culeace_eraser_free(er);
  *e = mixed;
  mixed = NULL;
cleanup:
  free(G);
  free(H);
  free(Ur);
  free(UL);
  free(RSU);
  free(E);
  free(sv);
  free(u);
  free(vt);
  culeace_eraser_free(mixed);
  return st;
}

/* LEACE whose running co-moments are on a device that builds the
 * whitening there (and CULEACE_HOST_WHITEN unset: it forces the host path,
 * for comparisons). */
static int device_path(const culeace_fitter *f) {
  const culeace_backend *b = f->ctx->backend;
  return f->opts.method == CULEACE_METHOD_LEACE && f->dev_acc && f->cxx &&
         b->leace_whiten && b->leace_factors && !getenv("CULEACE_HOST_WHITEN");
}

culeace_status culeace__leace_build(culeace_fitter *f, culeace_eraser **out) {
  culeace_ctx *ctx = f->ctx;
  int64_t d = f->d, zd = f->z_dim, mn = d < zd ? d : zd;
  int leace = f->opts.method == CULEACE_METHOD_LEACE;
  culeace_status st = CULEACE_OK;
  culeace_eraser *e = NULL;
  double *RS = NULL, *SU = NULL; /* (r, d), (d, r): the device path's */
  work k;
  memset(&k, 0, sizeof k);
  *out = NULL;
  if (f->n < 2)
    return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "fitting an eraser needs at least 2 rows (seen "
                          "%lld)", (long long)f->n);
  size_t dd = (size_t)d * (size_t)d;
  k.M = culeace__alloc(ctx, (size_t)d * zd, 8, "W Sigma_xz");
  k.U = culeace__alloc(ctx, (size_t)d * mn, 8, "singular vectors");
  k.s = culeace__alloc(ctx, (size_t)mn, 8, "singular values");
  k.VT = culeace__alloc(ctx, (size_t)mn * zd, 8, "singular vectors");
  if (!k.M || !k.U || !k.s || !k.VT) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  double scale = 1.0 / (double)(f->n - 1);
  const int on_device = device_path(f);
  double trS = 0;
  if (on_device) { /* S, W, W+ stay on the device; M comes back */
    double n = (double)f->n;
    CULEACE_TRY(ctx->backend->leace_whiten(ctx, f->dev_acc, n,
                                           f->opts.shrinkage ? n : n - 1.0,
                                           f->opts.shrinkage, scale, k.M,
                                           &trS));
  } else if (leace) {
    k.S = culeace__alloc(ctx, dd, 8, "covariance");
    k.V = culeace__alloc(ctx, dd, 8, "eigenvectors");
    k.w = culeace__alloc(ctx, (size_t)d, 8, "eigenvalues");
    k.W = culeace__alloc(ctx, dd, 8, "whitening matrix");
    k.Winv = culeace__alloc(ctx, dd, 8, "whitening matrix");
    k.tmp = culeace__alloc(ctx, dd, 8, "scratch");
    if (!k.S || !k.V || !k.w || !k.W || !k.Winv || !k.tmp) {
      st = CULEACE_ERR_OUT_OF_MEMORY;
      goto cleanup;
    }
    covariance(f, k.S);
    CULEACE_TRY(whitening(ctx, d, &k));
    /* M = W Sigma_xz */
    CULEACE_TRY(ctx->backend->gemm(ctx, 0, 0, d, zd, d, scale, k.W, d, f->cxz,
                                   zd, 0.0, k.M, zd));
  } else {
    for (size_t i = 0; i < (size_t)d * zd; i++) k.M[i] = f->cxz[i] * scale;
  }
  lapack_int info =
      LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)d, (lapack_int)zd, k.M,
                     (lapack_int)zd, k.s, k.U, (lapack_int)mn, k.VT,
                     (lapack_int)zd);
  if (info != 0) {
    st = culeace__error(ctx, CULEACE_ERR_LAPACK,
                        "dgesdd failed on W Sigma_xz (%lldx%lld, info = %d)",
                        (long long)d, (long long)zd, (int)info);
    goto cleanup;
  }
  int64_t r = 0;
  while (r < mn && k.s[r] > f->opts.svd_tol) r++;
  CULEACE_TRY(culeace__eraser_alloc(ctx, d, r, &e));
  if (r > 0 && on_device) {
    int trace = f->opts.constrain_cov_trace;
    if (trace) {
      RS = culeace__alloc(ctx, (size_t)r * (size_t)d, 8, "R S");
      SU = culeace__alloc(ctx, (size_t)d * (size_t)r, 8, "S U");
      if (!RS || !SU) {
        st = CULEACE_ERR_OUT_OF_MEMORY;
        goto cleanup;
      }
    }
    CULEACE_TRY(ctx->backend->leace_factors(ctx, f->dev_acc, k.U, mn, r, e->L,
                                            e->R, RS, SU));
  } else if (r > 0) {
    if (leace) {
      /* L = W+ U_r (d, r); R = U_r^T W = (W U_r)^T (r, d) */
      CULEACE_TRY(ctx->backend->gemm(ctx, 0, 0, d, r, d, 1.0, k.Winv, d, k.U,
                                     mn, 0.0, e->L, r));
      CULEACE_TRY(ctx->backend->gemm(ctx, 1, 0, r, d, d, 1.0, k.U, mn, k.W, d,
                                     0.0, e->R, d));
    } else {
      for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < r; j++)
          e->L[i * r + j] = e->R[j * d + i] = k.U[i * mn + j];
    }
  }
  memcpy(e->bias, f->mean_x, (size_t)d * 8);
  e->info.z_dim = zd;
  e->info.n_seen = f->n;
  e->info.n_classes = f->z_kind == CULEACE_Z_CLASSES ? f->k : 0;
  e->info.method = f->opts.method;
  e->info.affine = f->opts.affine;
  e->info.shrinkage = f->opts.shrinkage;
  e->info.constrain_cov_trace = f->opts.constrain_cov_trace;
  e->info.svd_tol = f->opts.svd_tol;
  if (leace && f->opts.constrain_cov_trace && on_device)
    CULEACE_TRY(culeace__constrain_trace_with(ctx, trS, RS, SU, d, k.U, mn, &e));
  else if (leace && f->opts.constrain_cov_trace)
    CULEACE_TRY(culeace__constrain_trace(ctx, k.S, d, k.U, mn, &e));
  if (!f->opts.affine) memset(e->bias, 0, (size_t)d * 8);
  culeace__eraser_sync(e);
  *out = e;
  e = NULL;
cleanup:
  free(RS);
  free(SU);
  culeace_eraser_free(e);
  work_free(&k);
  return st;
}

culeace_status culeace_fitter_finalize(culeace_fitter *f,
                                       culeace_eraser **out) {
  if (!f || !out) return CULEACE_ERR_INVALID_ARG;
  if (f->opts.method == CULEACE_METHOD_ORACLE) { /* oracle.c, host moments */
    culeace_status st = culeace__fitter_sync(f);
    return st ? st : culeace__oracle_build(f, out);
  }
  if (f->opts.method == CULEACE_METHOD_QUADRATIC) /* class moments: host */
    return culeace__quadratic_build(f, out);
  if (!device_path(f)) { /* the host path reads cxx/cxz */
    culeace_status st = culeace__fitter_sync(f);
    if (st) return st;
  }
  return culeace__leace_build(f, out);
}
