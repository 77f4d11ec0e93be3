/* quadratic_apply.c — quadratic erasers as objects: built from parameters
 * (class means (k, d), transport maps (k, d, d), target mean (d)), their
 * parameters read back, and the edit x <- A_c (x - mu_c) + m of host rows
 * given each row's class. Rows of one class are gathered in chunks into
 * float64, mapped with one backend GEMM per chunk and scattered back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/convert.h"
#include "core/fitter.h"

enum { CHUNK_ROWS = 1024 };

static culeace_status check_finite(culeace_ctx *ctx, const double *v,
                                   size_t count, const char *what) {
  for (size_t i = 0; i < count; i++)
    if (!isfinite(v[i]))
      return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                            "quadratic eraser: %s element %zu is not finite",
                            what, i);
  return CULEACE_OK;
}

culeace_status culeace_eraser_from_quadratic(culeace_ctx *ctx, int64_t d,
                                             int64_t k, const double *means,
                                             const double *maps,
                                             const double *target,
                                             culeace_eraser **out) {
  if (!ctx || !out || !means || !maps || !target)
    return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  size_t kd = 0, dd = 0, kdd = 0;
  if (d < 1 || k < 2 || !culeace__mul_size((size_t)k, (size_t)d, &kd) ||
      !culeace__mul_size((size_t)d, (size_t)d, &dd) ||
      !culeace__mul_size(dd, (size_t)k, &kdd))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "quadratic eraser shape d = %lld, k = %lld is "
                          "invalid (need d >= 1, k >= 2)", (long long)d,
                          (long long)k);
  culeace_status st = check_finite(ctx, means, kd, "class mean");
  if (!st) st = check_finite(ctx, maps, kdd, "transport map");
  if (!st) st = check_finite(ctx, target, (size_t)d, "target mean");
  if (st) return st;
  culeace_eraser *e;
  st = culeace__eraser_alloc(ctx, d, 0, &e);
  if (st) return st;
  e->q_means = culeace__alloc(ctx, kd, 8, "class means");
  e->q_maps = culeace__alloc(ctx, kdd, 8, "transport maps");
  e->q_target = culeace__alloc(ctx, (size_t)d, 8, "target mean");
  if (!e->q_means || !e->q_maps || !e->q_target) {
    culeace_eraser_free(e);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  memcpy(e->q_means, means, kd * 8);
  memcpy(e->q_maps, maps, kdd * 8);
  memcpy(e->q_target, target, (size_t)d * 8);
  culeace__eraser_labelled_info(e, CULEACE_METHOD_QUADRATIC, k == 2 ? 1 : k,
                                k, NULL);
  culeace__eraser_sync(e);
  *out = e;
  return CULEACE_OK;
}

culeace_status culeace_eraser_quadratic_params(const culeace_eraser *e,
                                               double *means, double *maps,
                                               double *target) {
  if (!e) return CULEACE_ERR_INVALID_ARG;
  if (e->info.method != CULEACE_METHOD_QUADRATIC || !e->q_maps)
    return CULEACE_ERR_STATE;
  size_t d = (size_t)e->info.d, k = (size_t)e->info.n_classes;
  if (means) memcpy(means, e->q_means, k * d * 8);
  if (maps) memcpy(maps, e->q_maps, k * d * d * 8);
  if (target) memcpy(target, e->q_target, d * 8);
  return CULEACE_OK;
}

/* Maps the m rows listed in idx (all of class c) in place. buf, out:
 * (CHUNK_ROWS, d) float64. */
static culeace_status map_rows(culeace_ctx *ctx, const culeace_eraser *e,
                               int64_t c, void *x, culeace_dtype t,
                               int64_t ldx, const int64_t *idx, int64_t m,
                               double *buf, double *out) {
  int64_t d = e->info.d;
  size_t es = culeace_dtype_size(t);
  const double *mu = e->q_means + c * d;
  const double *A = e->q_maps + (size_t)c * (size_t)d * (size_t)d;
  for (int64_t i = 0; i < m; i++) {
    double *r = buf + i * d;
    culeace__to_f64((char *)x + (size_t)idx[i] * (size_t)ldx * es, t, d, r);
    for (int64_t j = 0; j < d; j++) r[j] -= mu[j];
  }
  /* out (m, d) = (x - mu) A^T */
  culeace_status st = ctx->backend->gemm(ctx, 0, 1, m, d, d, 1.0, buf, d, A,
                                         d, 0.0, out, d);
  if (st) return st;
  for (int64_t i = 0; i < m; i++) {
    double *r = out + i * d;
    for (int64_t j = 0; j < d; j++) r[j] += e->q_target[j];
    void *dst = (char *)x + (size_t)idx[i] * (size_t)ldx * es;
    if (t == CULEACE_F64 || t == CULEACE_F32) {
      culeace__from_f64(r, d, t, dst);
    } else { /* float32 first, as culeace_eraser_apply rounds */
      float *r32 = (float *)buf; /* buf is free again */
      for (int64_t j = 0; j < d; j++) r32[j] = (float)r[j];
      culeace__from_f32(r32, d, t, dst);
    }
  }
  return CULEACE_OK;
}

culeace_status culeace_eraser_apply_quadratic(culeace_ctx *ctx,
                                              const culeace_eraser *e,
                                              void *x, culeace_dtype xtype,
                                              int64_t n, int64_t ldx,
                                              const int32_t *classes) {
  if (!ctx || !e) return CULEACE_ERR_INVALID_ARG;
  if (e->info.method != CULEACE_METHOD_QUADRATIC || !e->q_maps)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "apply_quadratic: this is a %s eraser, not a "
                          "quadratic one",
                          culeace_method_name(e->info.method)
                              ? culeace_method_name(e->info.method)
                              : "?");
  int64_t d = e->info.d, k = e->info.n_classes;
  if (n < 0 || (n > 0 && (!x || !classes)))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "apply_quadratic: x or classes is NULL or n < 0");
  if (culeace_dtype_size(xtype) == 0)
    return culeace__error(ctx, CULEACE_ERR_DTYPE,
                          "apply_quadratic: unknown dtype %d", (int)xtype);
  if (ldx < d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "apply_quadratic: row stride %lld is smaller than "
                          "d = %lld", (long long)ldx, (long long)d);
  for (int64_t i = 0; i < n; i++) /* before any row is edited */
    if (classes[i] < 0 || classes[i] >= k)
      return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                            "apply_quadratic: row %lld has class %d, "
                            "expected 0..%lld (nothing was edited)",
                            (long long)i, (int)classes[i], (long long)(k - 1));
  if (n == 0) return CULEACE_OK;
  int64_t chunk = n < CHUNK_ROWS ? n : CHUNK_ROWS;
  size_t cd = (size_t)chunk * (size_t)d;
  double *buf = culeace__alloc(ctx, cd, 8, "class rows");
  double *out = buf ? culeace__alloc(ctx, cd, 8, "class rows") : NULL;
  int64_t *idx = out ? culeace__alloc(ctx, (size_t)chunk, 8, "row indices")
                     : NULL;
  culeace_status st = idx ? CULEACE_OK : CULEACE_ERR_OUT_OF_MEMORY;
  for (int64_t c = 0; c < k && !st; c++) {
    int64_t m = 0;
    for (int64_t i = 0; i < n && !st; i++) {
      if (classes[i] != c) continue;
      idx[m++] = i;
      if (m == chunk) {
        st = map_rows(ctx, e, c, x, xtype, ldx, idx, m, buf, out);
        m = 0;
      }
    }
    if (m > 0 && !st) st = map_rows(ctx, e, c, x, xtype, ldx, idx, m, buf, out);
  }
  free(buf);
  free(out);
  free(idx);
  return st;
}
