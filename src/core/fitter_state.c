/* fitter_state.c — a fitter's running state as a flat float64 array, and the
 * exact merge of such a state into another fitter (Chan, Golub & LeVeque's
 * pairwise update for two sets of any sizes): what a sharded fit (one shard
 * of rows per MPI rank) sends and combines. Layout in include/culeace.h. */
#include <math.h>
#include <string.h>

#include "core/fitter.h"

enum {
  STATE_MAGIC = 0x1EAC35, /* [0] */
  STATE_VERSION = 1,      /* [1] */
  STATE_HEADER = 8        /* magic, version, n, d, k, z_dim, z_kind, method */
};

/* Number of doubles of f's state; 0 (and the message) on overflow. */
static size_t state_count(const culeace_fitter *f) {
  size_t d = (size_t)f->d, zd = (size_t)f->z_dim, k = (size_t)f->k;
  size_t xz, xx = 0, zz = 0, tri;
  if (!culeace__mul_size(d, zd, &xz)) return 0;
  if (f->cxx) {
    if (!culeace__mul_size(d, d + 1, &tri)) return 0;
    xx = tri / 2;
  }
  if (f->czz && !culeace__mul_size(zd, zd, &zz)) return 0;
  size_t qm = 0, qc = 0; /* quadratic: class means and co-moments */
  if (f->q_mean && (!culeace__mul_size(k, d, &qm) ||
                    !culeace__mul_size(d, d + 1, &tri) ||
                    !culeace__mul_size(k, tri / 2, &qc)))
    return 0;
  size_t parts[] = {STATE_HEADER, d, zd, k, xz, xx, zz, qm, qc}, total = 0;
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
    if (parts[i] > SIZE_MAX / 8 - total) return 0;
    total += parts[i];
  }
  return total;
}

culeace_status culeace_fitter_state_size(const culeace_fitter *f,
                                         size_t *count) {
  if (!f || !count) return CULEACE_ERR_INVALID_ARG;
  *count = state_count(f);
  if (!*count)
    return culeace__error(f->ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "fitter state of d = %lld is too large",
                          (long long)f->d);
  return CULEACE_OK;
}

culeace_status culeace_fitter_export(const culeace_fitter *f, double *buf) {
  if (!f || !buf) return CULEACE_ERR_INVALID_ARG;
  size_t count;
  culeace_status st = culeace_fitter_state_size(f, &count);
  if (st) return st;
  st = culeace__fitter_sync((culeace_fitter *)f); /* co-moments off the GPU */
  if (st) return st;
  int64_t d = f->d, zd = f->z_dim, k = f->k;
  double *p = buf;
  *p++ = STATE_MAGIC;
  *p++ = STATE_VERSION;
  *p++ = (double)f->n;
  *p++ = (double)d;
  *p++ = (double)k;
  *p++ = (double)zd;
  *p++ = (double)f->z_kind;
  *p++ = (double)f->opts.method;
  memcpy(p, f->mean_x, (size_t)d * 8), p += d;
  memcpy(p, f->mean_z, (size_t)zd * 8), p += zd;
  for (int64_t c = 0; c < k; c++) *p++ = (double)f->class_counts[c];
  memcpy(p, f->cxz, (size_t)d * (size_t)zd * 8), p += d * zd;
  if (f->cxx) /* upper triangle, row by row */
    for (int64_t i = 0; i < d; i++) {
      memcpy(p, f->cxx + i * d + i, (size_t)(d - i) * 8);
      p += d - i;
    }
  if (f->czz) memcpy(p, f->czz, (size_t)zd * (size_t)zd * 8), p += zd * zd;
  if (f->q_mean) {
    memcpy(p, f->q_mean, (size_t)k * (size_t)d * 8), p += k * d;
    for (int64_t c = 0; c < k; c++) {
      const double *C = f->q_cxx + (size_t)c * (size_t)d * (size_t)d;
      for (int64_t i = 0; i < d; i++) {
        memcpy(p, C + i * d + i, (size_t)(d - i) * 8);
        p += d - i;
      }
    }
  }
  return (size_t)(p - buf) == count
             ? CULEACE_OK
             : culeace__error(f->ctx, CULEACE_ERR_INTERNAL,
                              "fitter state layout mismatch");
}

/* An integer-valued double in [lo, hi]. */
static int is_int_in(double v, double lo, double hi) {
  return v >= lo && v <= hi && v == floor(v);
}

/* Checks buf's header against f; the other fitter's row count in *nb. */
static culeace_status check_header(culeace_fitter *f, const double *buf,
                                   size_t count, size_t want, int64_t *nb) {
  culeace_ctx *ctx = f->ctx;
  if (count < STATE_HEADER || buf[0] != STATE_MAGIC)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "not a fitter state (%zu values, bad header)",
                          count);
  if (buf[1] != STATE_VERSION)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "fitter state version %g, expected %d", buf[1],
                          STATE_VERSION);
  if (buf[3] != (double)f->d || buf[4] != (double)f->k ||
      buf[5] != (double)f->z_dim)
    return culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "fitter state of d = %g, k = %g, z_dim = %g does "
                          "not match this fitter's d = %lld, k = %lld, "
                          "z_dim = %lld", buf[3], buf[4], buf[5],
                          (long long)f->d, (long long)f->k,
                          (long long)f->z_dim);
  if (buf[6] != (double)f->z_kind || buf[7] != (double)f->opts.method)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "fitter state of z kind %g, method %g does not "
                          "match this fitter's z kind %d, method %d", buf[6],
                          buf[7], (int)f->z_kind, (int)f->opts.method);
  if (count != want)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "fitter state has %zu values, expected %zu", count,
                          want);
  /* 2^53: every count below is exact in a double */
  if (!is_int_in(buf[2], 0, 9007199254740992.0) ||
      (double)f->n + buf[2] > 9007199254740992.0)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "fitter state row count %g is not valid here",
                          buf[2]);
  *nb = (int64_t)buf[2];
  return CULEACE_OK;
}

/* C (rows x cols, row stride ld) += B + w dr dc^T over the columns
 * [j0(i), cols); B advances by its own packed or full rows. */
static const double *merge_block(double *C, const double *B, int64_t rows,
                                 int64_t cols, int64_t ld, int upper,
                                 double w, const double *dr,
                                 const double *dc) {
  for (int64_t i = 0; i < rows; i++) {
    int64_t j0 = upper ? i : 0;
    double *row = C + i * ld, s = w * dr[i];
    for (int64_t j = j0; j < cols; j++) row[j] += *B++ + s * dc[j];
  }
  return B;
}

/* Quadratic: merges the state's class means (k, d) at p and class
 * co-moments (k upper triangles) after them into f's, class by class with
 * the classes' own counts (cnt: the state's, k); returns the end. */
static const double *merge_classes(culeace_fitter *f, const double *p,
                                   const double *cnt) {
  int64_t d = f->d, k = f->k;
  const double *means = p;
  p += k * d;
  double *dx = f->b_mean_x; /* the overall merge is done with it */
  for (int64_t c = 0; c < k; c++) {
    double na = (double)f->class_counts[c], nb = cnt[c], nt = na + nb;
    double *mean = f->q_mean + c * d;
    double *C = f->q_cxx + (size_t)c * (size_t)d * (size_t)d;
    double w = nt > 0 ? na * nb / nt : 0;
    for (int64_t j = 0; j < d; j++) dx[j] = means[c * d + j] - mean[j];
    p = merge_block(C, p, d, d, d, 1, w, dx, dx);
    if (nb > 0)
      for (int64_t j = 0; j < d; j++) mean[j] += dx[j] * nb / nt;
  }
  return p;
}

culeace_status culeace_fitter_merge(culeace_fitter *f, const double *buf,
                                    size_t count) {
  if (!f || !buf) return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  size_t want = state_count(f);
  if (!want)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "fitter state of d = %lld is too large",
                          (long long)f->d);
  int64_t nb = 0, d = f->d, zd = f->z_dim, k = f->k;
  culeace_status st = check_header(f, buf, count, want, &nb);
  if (st) return st;
  const double *mx = buf + STATE_HEADER, *mz = mx + d, *cnt = mz + zd,
               *cxz = cnt + k;
  double total = 0;
  for (int64_t c = 0; c < k; c++) {
    if (!is_int_in(cnt[c], 0, buf[2]))
      return culeace__error(ctx, CULEACE_ERR_FORMAT,
                            "fitter state class count %g is not valid",
                            cnt[c]);
    total += cnt[c];
  }
  if (f->z_kind == CULEACE_Z_CLASSES && total != buf[2])
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "fitter state class counts sum to %g, not its %g "
                          "rows", total, buf[2]);
  for (int64_t j = 0; j < d + zd; j++)
    if (!isfinite(mx[j]))
      return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                            "fitter state has a non-finite mean");
  if (f->q_broken)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "this quadratic fitter failed part-way through an "
                          "update; its class moments are incomplete");
  if (nb == 0) return CULEACE_OK;
  /* Merge on the host: a fitter whose co-moments the GPU holds brings them
   * back and continues on the host from here (fitter.c's update_dense). */
  st = culeace__fitter_sync(f);
  if (st) return st;
  if (f->dev_acc) {
    ctx->backend->acc_free(ctx->backend_state, f->dev_acc);
    f->dev_acc = NULL;
  }
  double na = (double)f->n, nbd = (double)nb, nt = na + nbd;
  double w = na * nbd / nt;
  double *dx = f->b_mean_x, *dz = f->b_mean_z; /* deltas (block scratch) */
  for (int64_t j = 0; j < d; j++) dx[j] = mx[j] - f->mean_x[j];
  for (int64_t c = 0; c < zd; c++) dz[c] = mz[c] - f->mean_z[c];
  const double *p = merge_block(f->cxz, cxz, d, zd, zd, 0, w, dx, dz);
  if (f->cxx) p = merge_block(f->cxx, p, d, d, d, 1, w, dx, dx);
  if (f->czz) p = merge_block(f->czz, p, zd, zd, zd, 0, w, dz, dz);
  for (int64_t j = 0; j < d; j++) f->mean_x[j] += dx[j] * nbd / nt;
  for (int64_t c = 0; c < zd; c++) f->mean_z[c] += dz[c] * nbd / nt;
  if (f->q_mean) /* after the means: it reuses their delta scratch */
    p = merge_classes(f, p, cnt);
  for (int64_t c = 0; c < k; c++) f->class_counts[c] += (int64_t)cnt[c];
  f->n += nb;
  return (size_t)(p - buf) == count
             ? CULEACE_OK
             : culeace__error(ctx, CULEACE_ERR_INTERNAL,
                              "fitter state layout mismatch");
}
