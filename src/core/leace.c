/* leace.c — turns finished moments into a LEACE (or orth) eraser, with the
 * semantics of concept-erasure's LeaceFitter.eraser:
 *   W = Sigma_xx^{-1/2} (eigenvalues <= lambda_max * d * eps cut), W+ = its
 *   pseudo-inverse; U = left singular vectors of W Sigma_xz with singular
 *   values > svd_tol; L = W+ U, R = U^T W; bias = mean_x when affine.
 *   With constrain_cov_trace, if tr(P S P^T) > tr(S) for P = I - L R, P is
 *   mixed with Q = I - U U^T so the trace is kept, and I - P is refactored.
 * All of it in float64. On the host, a well-conditioned S is whitened by its
 * Cholesky factor instead (W = C^-1, W+ = C for S = C C^T): the eraser
 * I - W+ U U^T W is the same for every whitening (any two differ by an
 * orthogonal factor Q, C^-1 = Q S^-1/2, which U absorbs), the eigenvalue
 * cut removes nothing there, and a factorisation of d^3/3 flops replaces
 * the eigendecomposition. The eigendecomposition (through the backend)
 * serves the rest: S singular or near it, and the rare case where rounding
 * makes the trace constraint fire, whose mixing with I - U U^T depends on
 * the symmetric whitening's U. When the running moments live on a device
 * that can (backend leace_whiten/leace_factors), all of it stays there. */
#include <float.h>
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"

typedef struct {
  double *S;    /* (d, d) covariance estimate (shrunk or Bessel) */
  double *V;    /* (d, d) eigenvectors, row j = vector j; or the Cholesky
                   factor C (row-major lower, S = C C^T) when chol */
  double *w;    /* (d) eigenvalues */
  double *T;    /* (d, zd) scratch for V X (zd >= the rank r) */
  double *M;    /* (d, zd) W Sigma_xz */
  double *U;    /* (d, min(d, zd)) left singular vectors */
  double *s;    /* singular values */
  double *VT;   /* right singular vectors (unused) */
  int chol;     /* 1: whitened by C, 0: by the eigendecomposition */
} work;

static void work_free(work *w) {
  free(w->S);
  free(w->V);
  free(w->w);
  free(w->T);
  free(w->M);
  free(w->U);
  free(w->s);
  free(w->VT);
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

/* The Cholesky whitening is taken only when LAPACK's estimate of S's
 * reciprocal condition number (1-norm, which bounds the 2-norm one from
 * below) is this many times above the eigenvalue cut's d * eps: no
 * eigenvalue is then anywhere near the cut. */
#define CHOLESKY_RCOND_MARGIN 1e4

/* 1 and C (d, d) the factor of S (row-major lower: S = C C^T), when S is
 * positive definite and well conditioned (CHOLESKY_RCOND_MARGIN); 0 else.
 * CULEACE_WHITEN=eigh in the environment always answers 0 (for
 * comparisons). */
static int cholesky(int64_t d, const double *S, double *C) {
  const char *force = getenv("CULEACE_WHITEN");
  if (force && !strcmp(force, "eigh")) return 0;
  double anorm = 0; /* 1-norm = largest row sum (S symmetric) */
  for (int64_t i = 0; i < d; i++) {
    double sum = 0;
    for (int64_t j = 0; j < d; j++) sum += fabs(S[i * d + j]);
    if (sum > anorm) anorm = sum;
  }
  memcpy(C, S, (size_t)d * (size_t)d * 8);
  /* column-major upper of a row-major symmetric matrix: row-major lower */
  if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)d, C, (lapack_int)d))
    return 0;
  double rcond = 0;
  if (LAPACKE_dpocon(LAPACK_COL_MAJOR, 'U', (lapack_int)d, C, (lapack_int)d,
                     anorm, &rcond))
    return 0;
  return rcond > CHOLESKY_RCOND_MARGIN * (double)d * DBL_EPSILON;
}

/* V and w: the eigendecomposition of S, through the backend. */
static culeace_status eigen(culeace_ctx *ctx, int64_t d, work *k) {
  memcpy(k->V, k->S, (size_t)d * (size_t)d * 8);
  return ctx->backend->eigh(ctx, k->V, k->w, d);
}

/* Y (d, m) = alpha * W X (power -1/2), W+ X (power +1/2) or, for the
 * Cholesky whitening, W^T X (power -1/2 with transpose set); X (d, m) with
 * row stride ldx, Y with row stride m. The symmetric whitening is
 * V^T diag(g) V X with concept-erasure's cut (g = 0 for eigenvalues <=
 * lambda_max * d * eps): two d x d x m products, never W itself. */
static culeace_status whiten_apply(culeace_ctx *ctx, const work *k, int64_t d,
                                   double power, int transpose,
                                   const double *X, int64_t ldx, int64_t m,
                                   double alpha, double *Y) {
  if (k->chol) {
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = 0; j < m; j++) Y[i * m + j] = alpha * X[i * ldx + j];
    if (power > 0) /* W+ X = C X */
      cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans,
                  CblasNonUnit, (int)d, (int)m, 1.0, k->V, (int)d, Y, (int)m);
    else /* W X = C^-1 X; W^T X = C^-T X */
      cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower,
                  transpose ? CblasTrans : CblasNoTrans, CblasNonUnit, (int)d,
                  (int)m, 1.0, k->V, (int)d, Y, (int)m);
    return CULEACE_OK;
  }
  culeace_status st = ctx->backend->gemm(ctx, 0, 0, d, m, d, 1.0, k->V, d, X,
                                         ldx, 0.0, k->T, m);
  if (st) return st;
  double cut = k->w[d - 1] * (double)d * DBL_EPSILON;
  for (int64_t j = 0; j < d; j++) {
    double g = k->w[j] > cut && k->w[j] > 0
                   ? (power > 0 ? sqrt(k->w[j]) : 1 / sqrt(k->w[j]))
                   : 0.0;
    for (int64_t c = 0; c < m; c++) k->T[j * m + c] *= g;
  }
  return ctx->backend->gemm(ctx, 1, 0, d, m, d, alpha, k->V, d, k->T, m, 0.0,
                            Y, m);
}

/* tr(A B) for A (m, p), B (p, m). */
static double trace_ab(const double *A, const double *B, int64_t m, int64_t p) {
  double t = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < p; j++) t += A[i * p + j] * B[j * m + i];
  return t;
}

/* tr(P S P^T) for P = I - L R (e's factors, rank r), from RS = R S (r, d)
 * and tr(S): tr(S) - 2 tr(R S L) + tr((R S R^T)(L^T L)); *t_rsl gets
 * tr(R S L), which the constraint's mixing reuses. */
static culeace_status erased_trace(culeace_ctx *ctx, double trS,
                                   const double *RS, const culeace_eraser *e,
                                   int64_t d, double *t_rsl,
                                   double *tr_after) {
  int64_t r = e->info.rank;
  double *G = malloc((size_t)r * r * 8), *H = malloc((size_t)r * r * 8);
  culeace_status st = CULEACE_OK;
  if (!G || !H) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory in the covariance-trace constraint");
    goto cleanup;
  }
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 1, r, r, d, 1, RS, d, e->R, d, 0, G,
                                 r));
  CULEACE_TRY(ctx->backend->gemm(ctx, 1, 0, r, r, d, 1, e->L, r, e->L, r, 0,
                                 H, r));
  *t_rsl = trace_ab(RS, e->L, r, d);
  *tr_after = trS - 2 * *t_rsl + trace_ab(G, H, r, r);
cleanup:
  free(G);
  free(H);
  return st;
}

/* tr(S) (d, d) and R S (r, d) for e's R. */
static culeace_status trace_and_rs(culeace_ctx *ctx, const double *S,
                                   int64_t d, const culeace_eraser *e,
                                   double *trS, double *RS) {
  *trS = 0;
  for (int64_t i = 0; i < d; i++) *trS += S[i * d + i];
  return ctx->backend->gemm(ctx, 0, 0, e->info.rank, d, d, 1, e->R, d, S, d,
                            0, RS, d);
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
  CULEACE_TRY(trace_and_rs(ctx, S, d, *e, &trS, RS));
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
  double *Ur = malloc((size_t)d * r * 8), *UL = malloc((size_t)r * r * 8);
  double *RSU = malloc((size_t)r * r * 8), *E = NULL, *sv = NULL, *u = NULL,
         *vt = NULL;
  culeace_eraser *mixed = NULL;
  if (!Ur || !UL || !RSU) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory in the covariance-trace constraint");
    goto cleanup;
  }
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < r; j++) Ur[i * r + j] = U[i * ldu + j];
  const double *L = er->L, *R = er->R;
  double t_rsl = 0, new_tr = 0;
  CULEACE_TRY(erased_trace(ctx, trS, RS, er, d, &t_rsl, &new_tr));
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
  if (!on_device && leace) {
    k.S = culeace__alloc(ctx, dd, 8, "covariance");
    k.V = culeace__alloc(ctx, dd, 8, "eigenvectors");
    k.w = culeace__alloc(ctx, (size_t)d, 8, "eigenvalues");
    k.T = culeace__alloc(ctx, (size_t)d * (size_t)zd, 8, "scratch");
    if (!k.S || !k.V || !k.w || !k.T) {
      st = CULEACE_ERR_OUT_OF_MEMORY;
      goto cleanup;
    }
    covariance(f, k.S);
    k.chol = cholesky(d, k.S, k.V);
  }
  for (;;) { /* once, or twice when the Cholesky whitening hands over */
    if (on_device) { /* S, W, W+ stay on the device; M comes back */
      double n = (double)f->n;
      CULEACE_TRY(ctx->backend->leace_whiten(ctx, f->dev_acc, n,
                                             f->opts.shrinkage ? n : n - 1.0,
                                             f->opts.shrinkage, scale, k.M,
                                             &trS));
    } else if (leace) {
      if (!k.chol) CULEACE_TRY(eigen(ctx, d, &k));
      /* M = W Sigma_xz */
      CULEACE_TRY(whiten_apply(ctx, &k, d, -0.5, 0, f->cxz, zd, zd, scale,
                               k.M));
    } else {
      for (size_t i = 0; i < (size_t)d * zd; i++) k.M[i] = f->cxz[i] * scale;
    }
    lapack_int info =
        LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)d, (lapack_int)zd,
                       k.M, (lapack_int)zd, k.s, k.U, (lapack_int)mn, k.VT,
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
      if (f->opts.constrain_cov_trace) {
        RS = culeace__alloc(ctx, (size_t)r * (size_t)d, 8, "R S");
        SU = culeace__alloc(ctx, (size_t)d * (size_t)r, 8, "S U");
        if (!RS || !SU) {
          st = CULEACE_ERR_OUT_OF_MEMORY;
          goto cleanup;
        }
      }
      CULEACE_TRY(ctx->backend->leace_factors(ctx, f->dev_acc, k.U, mn, r,
                                              e->L, e->R, RS, SU));
    } else if (r > 0 && leace) {
      /* L = W+ U_r (d, r); R = U_r^T W = (W^T U_r)^T (r, d) */
      CULEACE_TRY(whiten_apply(ctx, &k, d, 0.5, 0, k.U, mn, r, 1.0, e->L));
      double *Rt = k.M; /* (d, zd) holds (d, r), r <= zd: M is spent */
      CULEACE_TRY(whiten_apply(ctx, &k, d, -0.5, 1, k.U, mn, r, 1.0, Rt));
      for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < r; j++) e->R[j * d + i] = Rt[i * r + j];
    } else if (r > 0) {
      for (int64_t i = 0; i < d; i++)
        for (int64_t j = 0; j < r; j++)
          e->L[i * r + j] = e->R[j * d + i] = k.U[i * mn + j];
    }
    if (!(k.chol && f->opts.constrain_cov_trace && r > 0)) break;
    /* With S positive definite the erased trace is tr(S) - |S^1/2 u|^2 <
     * tr(S), so the constraint cannot fire; should rounding make it, the
     * mixing needs the symmetric whitening's U: start over with it. */
    double tr_s = 0, t_rsl = 0, tr_after = 0;
    double *RSc = culeace__alloc(ctx, (size_t)r * (size_t)d, 8, "R S");
    if (!RSc) {
      st = CULEACE_ERR_OUT_OF_MEMORY;
      goto cleanup;
    }
    st = trace_and_rs(ctx, k.S, d, e, &tr_s, RSc);
    if (!st) st = erased_trace(ctx, tr_s, RSc, e, d, &t_rsl, &tr_after);
    free(RSc);
    if (st) goto cleanup;
    if (!(tr_after > tr_s)) break;
    culeace_eraser_free(e);
    e = NULL;
    k.chol = 0;
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
  else if (leace && f->opts.constrain_cov_trace && !k.chol)
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
