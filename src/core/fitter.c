/* fitter.c — the streaming moment fitter: block moments from the backend,
 * merged exactly into float64 running moments (Chan, Golub & LeVeque's
 * pairwise update), for class-index or continuous z. */
#include "core/fitter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


#include "core/convert.h"

void culeace_fit_opts_init(culeace_fit_opts *o) {
  memset(o, 0, sizeof *o);
  o->method = CULEACE_METHOD_LEACE;
  o->affine = 1;
  o->shrinkage = 1;
  o->constrain_cov_trace = 1;
  o->svd_tol = 0.01;
  o->precision = CULEACE_PRECISION_F64;
}

culeace_status culeace_fitter_create(culeace_ctx *ctx, int64_t d, int64_t k,
                                     culeace_z_kind z_kind,
                                     const culeace_fit_opts *opts,
                                     culeace_fitter **out) {
  if (!ctx || !out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  culeace_fit_opts dflt;
  if (!opts) {
    culeace_fit_opts_init(&dflt);
    opts = &dflt;
  }
  if (d < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "feature width d must be >= 1 (got %lld)",
                          (long long)d);
  if (z_kind == CULEACE_Z_CLASSES && k < 2)
    return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "need at least 2 classes to erase a concept (got "
                          "%lld)", (long long)k);
  if (z_kind == CULEACE_Z_CONTINUOUS && k < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "continuous z needs at least 1 column (got %lld)",
                          (long long)k);
  if (z_kind != CULEACE_Z_CLASSES && z_kind != CULEACE_Z_CONTINUOUS)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "unknown z kind %d",
                          (int)z_kind);
  if (opts->method != CULEACE_METHOD_LEACE &&
      opts->method != CULEACE_METHOD_ORTH &&
      opts->method != CULEACE_METHOD_ORACLE &&
      opts->method != CULEACE_METHOD_QUADRATIC)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "unknown method %d (expected leace, orth, oracle or "
                          "quadratic)", (int)opts->method);
  if (opts->method == CULEACE_METHOD_QUADRATIC && z_kind != CULEACE_Z_CLASSES)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "quadratic LEACE needs class labels, not continuous "
                          "z");
  if (!(opts->svd_tol > 0) || !isfinite(opts->svd_tol))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "svd_tol must be a positive number (got %g)",
                          opts->svd_tol);
  if (opts->precision != CULEACE_PRECISION_F64 &&
      opts->precision != CULEACE_PRECISION_F32 &&
      opts->precision != CULEACE_PRECISION_TENSOR &&
      opts->precision != CULEACE_PRECISION_AUTO)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "unknown precision %d", (int)opts->precision);

  culeace_fitter *f = calloc(1, sizeof *f);
  if (!f)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating a fitter");
  f->ctx = ctx;
  f->opts = *opts;
  f->z_kind = z_kind;
  f->d = d;
  f->k = k;
  f->z_dim = (z_kind == CULEACE_Z_CLASSES && k == 2) ? 1 : k;
  size_t dd = 0;
  int need_xx = opts->method == CULEACE_METHOD_LEACE;
  if (need_xx && !culeace__mul_size((size_t)d, (size_t)d, &dd)) {
    free(f);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "d = %lld is too large", (long long)d);
  }
  f->mean_x = culeace__alloc(ctx, (size_t)d, 8, "fitter mean");
  f->b_mean_x = culeace__alloc(ctx, (size_t)d, 8, "fitter mean");
  f->mean_z = culeace__alloc(ctx, (size_t)f->z_dim, 8, "fitter mean");
  f->b_mean_z = culeace__alloc(ctx, (size_t)f->z_dim, 8, "fitter mean");
  f->cxz = culeace__alloc(ctx, (size_t)d * (size_t)f->z_dim, 8,
                          "cross-covariance");
  f->b_cxz = culeace__alloc(ctx, (size_t)d * (size_t)f->z_dim, 8,
                            "cross-covariance");
  f->class_counts = culeace__alloc(ctx, (size_t)k, 8, "class counts");
  int need_zz = opts->method == CULEACE_METHOD_ORACLE;
  size_t zz = 0;
  if (need_zz && !culeace__mul_size((size_t)f->z_dim, (size_t)f->z_dim, &zz)) {
    int64_t zd = f->z_dim;
    culeace_fitter_free(f);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "z_dim = %lld is too large", (long long)zd);
  }
  if (need_zz) {
    f->czz = culeace__alloc(ctx, zz, 8, "z covariance");
    f->b_czz = f->czz ? culeace__alloc(ctx, zz, 8, "z covariance") : NULL;
  }
  if (need_xx) {
    f->cxx = culeace__alloc(ctx, dd, 8, "d x d covariance");
    f->b_cxx = f->cxx ? culeace__alloc(ctx, dd, 8, "d x d covariance") : NULL;
  }
  if (!f->mean_x || !f->b_mean_x || !f->mean_z || !f->b_mean_z || !f->cxz ||
      !f->b_cxz || !f->class_counts || (need_xx && (!f->cxx || !f->b_cxx)) ||
      (need_zz && (!f->czz || !f->b_czz))) {
    culeace_fitter_free(f);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  if (opts->method == CULEACE_METHOD_QUADRATIC) {
    culeace_status st = culeace__quadratic_init(f);
    if (st) {
      culeace_fitter_free(f);
      return st;
    }
  }
  memset(f->mean_x, 0, (size_t)d * 8);
  memset(f->mean_z, 0, (size_t)f->z_dim * 8);
  memset(f->cxz, 0, (size_t)d * (size_t)f->z_dim * 8);
  memset(f->class_counts, 0, (size_t)k * 8);
  if (f->cxx) memset(f->cxx, 0, dd * 8);
  if (f->czz) memset(f->czz, 0, zz * 8);
  *out = f;
  return CULEACE_OK;
}

void culeace_fitter_free(culeace_fitter *f) {
  if (!f) return;
  if (f->dev_acc) f->ctx->backend->acc_free(f->ctx->backend_state, f->dev_acc);
  free(f->mean_x);
  free(f->mean_z);
  free(f->cxx);
  free(f->cxz);
  free(f->class_counts);
  free(f->b_mean_x);
  free(f->b_mean_z);
  free(f->b_cxx);
  free(f->b_cxz);
  free(f->czz);
  free(f->b_czz);
  free(f->zblock);
  free(f->q_mean);
  free(f->q_cxx);
  free(f->q_rows);
  free(f);
}

/* Merges block moments (nb rows, in f->b_*) into the running moments:
 *   delta = mean_b - mean;  n' = n + nb;  mean += delta * nb / n'
 *   C += C_b + delta delta^T * n * nb / n'   (xx: upper triangle; xz full) */
static void merge_block(culeace_fitter *f, int64_t nb) {
  int64_t d = f->d, zd = f->z_dim;
  double na = (double)f->n, nbd = (double)nb, nt = na + nbd;
  double w = na * nbd / nt;
  double *dx = f->b_mean_x, *dz = f->b_mean_z; /* become deltas */
  for (int64_t j = 0; j < d; j++) dx[j] -= f->mean_x[j];
  for (int64_t c = 0; c < zd; c++) dz[c] -= f->mean_z[c];
  if (f->cxx) {
    for (int64_t i = 0; i < d; i++) {
      double *row = f->cxx + i * d, *brow = f->b_cxx + i * d;
      double s = w * dx[i];
      for (int64_t j = i; j < d; j++) row[j] += brow[j] + s * dx[j];
    }
  }
  for (int64_t i = 0; i < d; i++)
    for (int64_t c = 0; c < zd; c++)
      f->cxz[i * zd + c] += f->b_cxz[i * zd + c] + w * dx[i] * dz[c];
  for (int64_t j = 0; j < d; j++) f->mean_x[j] += dx[j] * nbd / nt;
  for (int64_t c = 0; c < zd; c++) f->mean_z[c] += dz[c] * nbd / nt;
  f->n += nb;
}

/* The running means and count after a block whose co-moments the backend
 * merged itself (block means in b_mean_x/b_mean_z). */
static void merge_means(culeace_fitter *f, int64_t nb) {
  double nt = (double)f->n + (double)nb, nbd = (double)nb;
  for (int64_t j = 0; j < f->d; j++)
    f->mean_x[j] += (f->b_mean_x[j] - f->mean_x[j]) * nbd / nt;
  for (int64_t c = 0; c < f->z_dim; c++)
    f->mean_z[c] += (f->b_mean_z[c] - f->mean_z[c]) * nbd / nt;
  f->n += nb;
}

culeace_status culeace__fitter_sync(culeace_fitter *f) {
  if (!f->dev_acc || !f->host_stale) return CULEACE_OK;
  culeace_status st =
      f->ctx->backend->acc_read(f->ctx, f->dev_acc, f->cxx, f->cxz);
  if (!st) f->host_stale = 0;
  return st;
}

static culeace_status check_x(culeace_fitter *f, const void *x,
                              culeace_dtype t, int64_t n, int64_t ldx) {
  culeace_ctx *ctx = f->ctx;
  if (!x && n > 0)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "x is NULL");
  if (n < 0)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "row count must be >= 0 (got %lld)", (long long)n);
  if (culeace_dtype_size(t) == 0)
    return culeace__error(ctx, CULEACE_ERR_DTYPE, "unknown x dtype %d", (int)t);
  if (ldx < f->d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "row stride ldx = %lld is smaller than d = %lld",
                          (long long)ldx, (long long)f->d);
  return CULEACE_OK; /* NaN/Inf rows are caught by the backend's pass */
}

/* Adds the accepted block's b_czz into czz (oracle; no-op otherwise). */
static void add_czz(culeace_fitter *f) {
  if (!f->czz) return;
  size_t zz = (size_t)f->z_dim * (size_t)f->z_dim;
  for (size_t i = 0; i < zz; i++) f->czz[i] += f->b_czz[i];
}

static culeace_status update_dense(culeace_fitter *f, const void *x,
                                   culeace_dtype t, int64_t n, int64_t ldx,
                                   const double *z, int64_t ldz) {
  if (n == 0) return CULEACE_OK;
  culeace_ctx *ctx = f->ctx;
  /* oracle: z's co-moment, computed against the running means before the
   * block changes them and added only once the backend accepted it */
  if (f->czz) culeace__oracle_block_czz(f, z, n, ldz);
  /* co-moments stay on the device; after a culeace_fitter_merge
   * (fitter_state.c) the host holds them and keeps them */
  if (ctx->backend->acc_update && (f->dev_acc || f->n == 0)) {
    culeace_status st = ctx->backend->acc_update(
        ctx, &f->dev_acc, x, t, n, f->d, ldx, z, f->z_dim, ldz,
        culeace__block_precision(f->opts.precision, t), f->cxx != NULL, f->n,
        f->mean_x, f->mean_z,
        f->b_mean_x, f->b_mean_z);
    if (st) return st;
    add_czz(f);
    merge_means(f, n);
    f->host_stale = 1;
    return CULEACE_OK;
  }
  culeace_status st = ctx->backend->block_moments(
      ctx, x, t, n, f->d, ldx, z, f->z_dim, ldz,
      culeace__block_precision(f->opts.precision, t),
      f->b_mean_x, f->b_mean_z, f->cxx ? f->b_cxx : NULL, f->b_cxz);
  if (st) return st;
  add_czz(f);
  merge_block(f, n);
  return CULEACE_OK;
}

culeace_status culeace_fitter_update_classes(culeace_fitter *f, const void *x,
                                             culeace_dtype xtype, int64_t n,
                                             int64_t ldx,
                                             const int32_t *classes) {
  if (!f) return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  if (f->z_kind != CULEACE_Z_CLASSES)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "this fitter takes continuous z, not classes");
  culeace_status st = check_x(f, x, xtype, n, ldx);
  if (st) return st;
  if (n > 0 && !classes)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "classes is NULL");
  for (int64_t i = 0; i < n; i++)
    if (classes[i] < 0 || classes[i] >= f->k)
      return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                            "row %lld of the block has class %d, expected "
                            "0..%lld", (long long)i, (int)classes[i],
                            (long long)(f->k - 1));
  if (n > f->zblock_rows) {
    free(f->zblock);
    f->zblock = culeace__alloc(ctx, (size_t)n * (size_t)f->z_dim, 8,
                               "label block");
    f->zblock_rows = f->zblock ? n : 0;
    if (!f->zblock) return CULEACE_ERR_OUT_OF_MEMORY;
  }
  int64_t zd = f->z_dim;
  memset(f->zblock, 0, (size_t)n * (size_t)zd * 8);
  for (int64_t i = 0; i < n; i++) {
    if (zd == 1)
      f->zblock[i] = classes[i] == 1 ? 1.0 : 0.0;
    else
      f->zblock[i * zd + classes[i]] = 1.0;
  }
  st = update_dense(f, x, xtype, n, ldx, f->zblock, zd);
  if (st) return st;
  if (f->q_mean) { /* quadratic: each class's own moments too */
    st = culeace__quadratic_update(f, x, xtype, n, ldx, classes);
    if (st) return st;
  }
  for (int64_t i = 0; i < n; i++) f->class_counts[classes[i]]++;
  return CULEACE_OK;
}

culeace_status culeace_fitter_update_continuous(culeace_fitter *f,
                                                const void *x,
                                                culeace_dtype xtype, int64_t n,
                                                int64_t ldx, const double *z,
                                                int64_t ldz) {
  if (!f) return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  if (f->z_kind != CULEACE_Z_CONTINUOUS)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "this fitter takes class indices, not continuous z");
  culeace_status st = check_x(f, x, xtype, n, ldx);
  if (st) return st;
  if (n > 0 && !z)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "z is NULL");
  if (ldz < f->k)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "z stride ldz = %lld is smaller than k = %lld",
                          (long long)ldz, (long long)f->k);
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < f->k; c++)
      if (!isfinite(z[i * ldz + c]))
        return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                              "row %lld of the z block has a non-finite "
                              "value in column %lld", (long long)i,
                              (long long)c);
  return update_dense(f, x, xtype, n, ldx, z, ldz);
}

int64_t culeace_fitter_rows(const culeace_fitter *f) { return f ? f->n : 0; }
int64_t culeace_fitter_z_dim(const culeace_fitter *f) {
  return f ? f->z_dim : 0;
}

culeace_status culeace_fitter_moments(const culeace_fitter *f, double *mean_x,
                                      double *mean_z, double *sigma_xz,
                                      double *sigma_xx) {
  if (!f) return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  int64_t d = f->d, zd = f->z_dim;
  if (f->n < 2)
    return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "moments need at least 2 rows (seen %lld)",
                          (long long)f->n);
  culeace_status st = culeace__fitter_sync((culeace_fitter *)f);
  if (st) return st;
  double s = 1.0 / (double)(f->n - 1);
  if (mean_x) memcpy(mean_x, f->mean_x, (size_t)d * 8);
  if (mean_z) memcpy(mean_z, f->mean_z, (size_t)zd * 8);
  if (sigma_xz)
    for (int64_t i = 0; i < d * zd; i++) sigma_xz[i] = f->cxz[i] * s;
  if (sigma_xx) {
    if (!f->cxx)
      return culeace__error(ctx, CULEACE_ERR_STATE,
                            "method orth does not track the covariance of x");
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = i; j < d; j++)
        sigma_xx[i * d + j] = sigma_xx[j * d + i] = f->cxx[i * d + j] * s;
  }
  return CULEACE_OK;
}

culeace_status culeace_fitter_class_means(const culeace_fitter *f,
                                          double *means, int64_t *counts) {
  if (!f) return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  if (f->z_kind != CULEACE_Z_CLASSES)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "class means need class labels, not continuous z");
  int64_t d = f->d, k = f->k, zd = f->z_dim;
  if (counts) memcpy(counts, f->class_counts, (size_t)k * 8);
  if (!means) return CULEACE_OK;
  culeace_status st = culeace__fitter_sync((culeace_fitter *)f);
  if (st) return st;
  /* With z_c the indicator of class c: cxz[:, c] = n_c (mean_c - mean). */
  for (int64_t c = 0; c < k; c++) {
    double nc = (double)f->class_counts[c];
    for (int64_t j = 0; j < d; j++) means[c * d + j] = NAN;
    if (nc == 0) continue;
    if (zd == 1 && c == 0) continue; /* binary class 0: from the total */
    int64_t col = zd == 1 ? 0 : c;
    for (int64_t j = 0; j < d; j++)
      means[c * d + j] = f->mean_x[j] + f->cxz[j * zd + col] / nc;
  }
  if (zd == 1 && f->class_counts[0] > 0) {
    double n0 = (double)f->class_counts[0], n1 = (double)f->class_counts[1];
    for (int64_t j = 0; j < d; j++) {
      double m1 = n1 > 0 ? means[d + j] : 0.0;
      means[j] = ((double)f->n * f->mean_x[j] - n1 * m1) / n0;
    }
  }
  return CULEACE_OK;
}
