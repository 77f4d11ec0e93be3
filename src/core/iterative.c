/* iterative.c — pieces shared by INLP (inlp.c) and R-LACE (rlace.c): the
 * argument checks, the centred float32 working copy of the rows, and the
 * orthogonal-projection eraser built from their orthonormal directions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"
#include "core/iterative.h"

culeace_status culeace__iter_check(culeace_ctx *ctx, const char *who,
                                   const float *x, int64_t n, int64_t d,
                                   int64_t ldx, const int32_t *labels,
                                   int64_t k, const uint8_t *train) {
  if (!ctx) return CULEACE_ERR_INVALID_ARG;
  if (!x || !labels || !train || n < 1 || d < 1 || ldx < d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "%s: x, labels or train is NULL, or n = %lld, d = "
                          "%lld, ldx = %lld is invalid", who, (long long)n,
                          (long long)d, (long long)ldx);
  if (k < 2 || k > 1000000)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "%s: k = %lld classes (need 2 <= k <= 1e6)", who,
                          (long long)k);
  int64_t *cnt = culeace__alloc(ctx, (size_t)k, sizeof *cnt, "class counts");
  if (!cnt) return CULEACE_ERR_OUT_OF_MEMORY;
  memset(cnt, 0, (size_t)k * sizeof *cnt);
  int64_t n_train = 0, n_held = 0;
  for (int64_t i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= k) {
      free(cnt);
      return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                            "%s: label %d of row %lld is outside 0..%lld",
                            who, labels[i], (long long)i, (long long)(k - 1));
    }
    if (train[i]) {
      n_train++;
      cnt[labels[i]]++;
    } else {
      n_held++;
    }
  }
  culeace_status st = CULEACE_OK;
  for (int64_t c = 0; c < k && !st; c++)
    if (!cnt[c])
      st = culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "%s: no training row of class %lld", who,
                          (long long)c);
  free(cnt);
  if (st) return st;
  if (n_held < 1)
    return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "%s: no held-out row (train marks all %lld rows); "
                          "held-out rows decide when to stop", who,
                          (long long)n);
  return CULEACE_OK;
}

culeace_status culeace__iter_centre(culeace_ctx *ctx, const float *x,
                                    int64_t n, int64_t d, int64_t ldx,
                                    int affine, double *bias, float **xc) {
  *xc = NULL;
  size_t nd;
  if (!culeace__mul_size((size_t)n, (size_t)d, &nd))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "%lld x %lld rows are too large", (long long)n,
                          (long long)d);
  float *out = culeace__alloc(ctx, nd, sizeof(float), "the working rows");
  if (!out) return CULEACE_ERR_OUT_OF_MEMORY;
  memset(bias, 0, (size_t)d * sizeof *bias);
  for (int64_t i = 0; i < n; i++) {
    const float *r = x + (size_t)i * (size_t)ldx;
    for (int64_t j = 0; j < d; j++) {
      if (!isfinite(r[j])) {
        free(out);
        return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                              "row %lld, column %lld is not finite",
                              (long long)i, (long long)j);
      }
      if (affine) bias[j] += r[j];
    }
  }
  if (affine)
    for (int64_t j = 0; j < d; j++) bias[j] /= (double)n;
  for (int64_t i = 0; i < n; i++) {
    const float *r = x + (size_t)i * (size_t)ldx;
    float *o = out + (size_t)i * (size_t)d;
    for (int64_t j = 0; j < d; j++) o[j] = (float)((double)r[j] - bias[j]);
  }
  *xc = out;
  return CULEACE_OK;
}

culeace_status culeace__iter_eraser(culeace_ctx *ctx, int64_t d, int64_t r,
                                    const double *dirs, const double *bias,
                                    int affine, culeace_method method,
                                    int64_t n, int64_t k,
                                    culeace_eraser **out) {
  culeace_eraser *e;
  culeace_status st = culeace__eraser_alloc(ctx, d, r, &e);
  if (st) return st;
  for (int64_t a = 0; a < r; a++)
    for (int64_t j = 0; j < d; j++) {
      double v = dirs[(size_t)a * (size_t)d + (size_t)j];
      e->L[(size_t)j * (size_t)r + (size_t)a] = v; /* L (d, r) = U */
      e->R[(size_t)a * (size_t)d + (size_t)j] = v; /* R (r, d) = U^T */
    }
  if (affine) memcpy(e->bias, bias, (size_t)d * sizeof *bias);
  culeace_fit_opts fo;
  culeace_fit_opts_init(&fo);
  e->info.affine = affine != 0;
  e->info.method = method;
  e->info.n_seen = n;
  e->info.n_classes = k;
  e->info.z_dim = k == 2 ? 1 : k;
  e->info.shrinkage = 0;
  e->info.constrain_cov_trace = 0;
  e->info.svd_tol = fo.svd_tol;
  culeace__eraser_sync(e);
  *out = e;
  return CULEACE_OK;
}
