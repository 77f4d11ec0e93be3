/* eraser.c — the eraser object: factors L (d, r), R (r, d) and bias,
 * their float32 copies, and the in-place edit x <- x - ((x - bias) R^T) L^T
 * through the backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"

culeace_status culeace__eraser_alloc(culeace_ctx *ctx, int64_t d, int64_t r,
                                     culeace_eraser **out) {
  *out = NULL;
  if (d < 1 || r < 0 || r > d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "eraser shape d = %lld, rank = %lld is invalid "
                          "(need d >= 1, 0 <= rank <= d)", (long long)d,
                          (long long)r);
  culeace_eraser *e = calloc(1, sizeof *e);
  if (!e)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating an eraser");
  size_t dr = (size_t)d * (size_t)r; /* r <= d, so d*d bounds it */
  size_t dd;
  if (!culeace__mul_size((size_t)d, (size_t)d, &dd)) {
    free(e);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "eraser d = %lld is too large", (long long)d);
  }
  e->L = calloc(dr ? dr : 1, 8);
  e->R = calloc(dr ? dr : 1, 8);
  e->bias = calloc((size_t)d, 8);
  e->L32 = calloc(dr ? dr : 1, 4);
  e->R32 = calloc(dr ? dr : 1, 4);
  e->bias32 = calloc((size_t)d, 4);
  if (!e->L || !e->R || !e->bias || !e->L32 || !e->R32 || !e->bias32) {
    culeace_eraser_free(e);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating a %lld x %lld eraser",
                          (long long)d, (long long)r);
  }
  e->info.d = d;
  e->info.rank = r;
  e->info.affine = 1;
  *out = e;
  return CULEACE_OK;
}

void culeace__eraser_sync(culeace_eraser *e) {
  size_t dr = (size_t)e->info.d * (size_t)e->info.rank;
  for (size_t i = 0; i < dr; i++) {
    e->L32[i] = (float)e->L[i];
    e->R32[i] = (float)e->R[i];
  }
  for (int64_t j = 0; j < e->info.d; j++) e->bias32[j] = (float)e->bias[j];
  static uint64_t next_serial = 1;
  e->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
}

void culeace__eraser_labelled_info(culeace_eraser *e, culeace_method m,
                                   int64_t z_dim, int64_t n_classes,
                                   const culeace_fitter *f) {
  culeace_fit_opts dflt;
  culeace_fit_opts_init(&dflt);
  e->info.method = m;
  e->info.rank = 0;
  e->info.z_dim = z_dim;
  e->info.n_classes = n_classes;
  e->info.affine = 1; /* centred on mean_z / the class means; bias unused */
  e->info.constrain_cov_trace = 0;
  e->info.n_seen = f ? f->n : 0;
  e->info.shrinkage = f ? f->opts.shrinkage : 0;
  e->info.svd_tol = f ? f->opts.svd_tol : dflt.svd_tol;
}

void culeace_eraser_free(culeace_eraser *e) {
  if (!e) return;
  free(e->L);
  free(e->R);
  free(e->bias);
  free(e->L32);
  free(e->R32);
  free(e->bias32);
  free(e->coef);
  free(e->mean_z);
  free(e->q_means);
  free(e->q_maps);
  free(e->q_target);
  free(e);
}

culeace_status culeace_eraser_info_get(const culeace_eraser *e,
                                       culeace_eraser_info *info) {
  if (!e || !info) return CULEACE_ERR_INVALID_ARG;
  *info = e->info;
  return CULEACE_OK;
}

culeace_status culeace_eraser_factors(const culeace_eraser *e, double *L,
                                      double *R, double *bias) {
  if (!e) return CULEACE_ERR_INVALID_ARG;
  size_t dr = (size_t)e->info.d * (size_t)e->info.rank;
  if (L) memcpy(L, e->L, dr * 8);
  if (R) memcpy(R, e->R, dr * 8);
  if (bias) memcpy(bias, e->bias, (size_t)e->info.d * 8);
  return CULEACE_OK;
}

culeace_status culeace_eraser_from_factors(culeace_ctx *ctx, int64_t d,
                                           int64_t rank, const double *L,
                                           const double *R, const double *bias,
                                           culeace_eraser **out) {
  if (!ctx || !out || (rank > 0 && (!L || !R))) return CULEACE_ERR_INVALID_ARG;
  culeace_eraser *e;
  culeace_status st = culeace__eraser_alloc(ctx, d, rank, &e);
  if (st) return st;
  size_t dr = (size_t)d * (size_t)rank;
  for (size_t i = 0; i < dr; i++) {
    if (!isfinite(L[i]) || !isfinite(R[i])) {
      culeace_eraser_free(e);
      return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                            "eraser factor element %zu is not finite", i);
    }
  }
  if (dr) {
    memcpy(e->L, L, dr * 8);
    memcpy(e->R, R, dr * 8);
  }
  if (bias) {
    for (int64_t j = 0; j < d; j++)
      if (!isfinite(bias[j])) {
        culeace_eraser_free(e);
        return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                              "eraser bias element %lld is not finite",
                              (long long)j);
      }
    memcpy(e->bias, bias, (size_t)d * 8);
  }
  e->info.affine = bias != NULL;
  /* Not fitted here: the rest of the info takes values an eraser file can
   * hold (the loader requires z_dim >= 1 and svd_tol > 0). */
  culeace_fit_opts fo;
  culeace_fit_opts_init(&fo);
  e->info.z_dim = rank > 0 ? rank : 1;
  e->info.method = fo.method;
  e->info.shrinkage = 0;
  e->info.constrain_cov_trace = 0;
  e->info.svd_tol = fo.svd_tol;
  culeace__eraser_sync(e);
  *out = e;
  return CULEACE_OK;
}

/* The eraser's factors as the backends take them. */
static culeace_apply_factors factors_of(const culeace_eraser *e) {
  culeace_apply_factors f = {
      .serial = e->serial, .d = e->info.d, .r = e->info.rank,
      .L = e->L, .R = e->R, .bias = e->info.affine ? e->bias : NULL,
      .L32 = e->L32, .R32 = e->R32,
      .bias32 = e->info.affine ? e->bias32 : NULL};
  return f;
}

static culeace_status check_apply_args(culeace_ctx *ctx,
                                       const culeace_eraser *e, void *x,
                                       culeace_dtype xtype, int64_t n,
                                       int64_t ldx) {
  if (!ctx || !e) return CULEACE_ERR_INVALID_ARG;
  if (n < 0 || (n > 0 && !x))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "apply: x is NULL or n < 0");
  if (culeace_dtype_size(xtype) == 0)
    return culeace__error(ctx, CULEACE_ERR_DTYPE, "apply: unknown dtype %d",
                          (int)xtype);
  if (ldx < e->info.d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "apply: row stride %lld is smaller than d = %lld",
                          (long long)ldx, (long long)e->info.d);
  if (e->info.method == CULEACE_METHOD_ORACLE)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "apply: an oracle eraser needs each row's z: use "
                          "culeace_eraser_apply_oracle");
  if (e->info.method == CULEACE_METHOD_QUADRATIC)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "apply: a quadratic eraser needs each row's class: "
                          "use culeace_eraser_apply_quadratic");
  return CULEACE_OK;
}

culeace_status culeace_eraser_apply(culeace_ctx *ctx, const culeace_eraser *e,
                                    void *x, culeace_dtype xtype, int64_t n,
                                    int64_t ldx) {
  culeace_status st = check_apply_args(ctx, e, x, xtype, n, ldx);
  if (st) return st;
  culeace_apply_factors f = factors_of(e);
  return ctx->backend->apply(ctx, x, xtype, n, ldx, &f);
}

culeace_status culeace_eraser_apply_device(culeace_ctx *ctx,
                                           const culeace_eraser *e,
                                           void *x_dev, culeace_dtype xtype,
                                           int64_t n, int64_t ldx,
                                           void *stream) {
  culeace_status st = check_apply_args(ctx, e, x_dev, xtype, n, ldx);
  if (st) return st;
  if (!ctx->backend->apply_device)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "apply on device memory needs a CUDA context (this "
                          "context runs on %s)", ctx->backend_name);
  culeace_apply_factors f = factors_of(e);
  return ctx->backend->apply_device(ctx, x_dev, xtype, n, ldx, &f, stream);
}
