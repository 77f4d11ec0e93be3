/* quadratic.c — quadratic LEACE's fit side (include/culeace.h, "quadratic
 * erasers"): each class's running mean and co-moment, merged exactly per
 * block like the other moments, and the eraser built from them: class
 * covariances, their Wasserstein barycenter and the transport map of each
 * class onto it (gauss_ot.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"
#include "core/gauss_ot.h"

enum { BARYCENTER_MAX_ITER = 100 };

culeace_status culeace__quadratic_init(culeace_fitter *f) {
  culeace_ctx *ctx = f->ctx;
  size_t d = (size_t)f->d, k = (size_t)f->k, dd = 0, kdd = 0, kd = 0;
  if (!culeace__mul_size(d, d, &dd) || !culeace__mul_size(dd, k, &kdd) ||
      !culeace__mul_size(d, k, &kd))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "quadratic LEACE with d = %lld and %lld classes "
                          "needs k d^2 values: too large", (long long)f->d,
                          (long long)f->k);
  f->q_mean = culeace__alloc(ctx, kd, 8, "class means");
  f->q_cxx = f->q_mean ? culeace__alloc(ctx, kdd, 8, "class covariances")
                       : NULL;
  f->b_cxx = f->q_cxx ? culeace__alloc(ctx, dd, 8, "d x d covariance") : NULL;
  if (!f->b_cxx) return CULEACE_ERR_OUT_OF_MEMORY;
  memset(f->q_mean, 0, kd * 8);
  memset(f->q_cxx, 0, kdd * 8);
  return CULEACE_OK;
}

/* Adds the block moments of nc rows (b_mean_x, b_cxx) to class c, which
 * has seen na rows so far (Chan et al.'s pairwise update). */
static void merge_class(culeace_fitter *f, int64_t c, int64_t na, int64_t nc) {
  int64_t d = f->d;
  double *mean = f->q_mean + c * d, *C = f->q_cxx + (size_t)c * (size_t)d * d;
  double *dx = f->b_mean_x; /* becomes the delta */
  double nt = (double)na + (double)nc, w = (double)na * (double)nc / nt;
  for (int64_t j = 0; j < d; j++) dx[j] -= mean[j];
  for (int64_t i = 0; i < d; i++) {
    double *row = C + i * d;
    const double *brow = f->b_cxx + i * d;
    double s = w * dx[i];
    for (int64_t j = i; j < d; j++) row[j] += brow[j] + s * dx[j];
  }
  for (int64_t j = 0; j < d; j++) mean[j] += dx[j] * (double)nc / nt;
}

culeace_status culeace__quadratic_update(culeace_fitter *f, const void *x,
                                         culeace_dtype t, int64_t n,
                                         int64_t ldx, const int32_t *classes) {
  culeace_ctx *ctx = f->ctx;
  size_t es = culeace_dtype_size(t), row = (size_t)f->d * es, need = 0;
  if (!culeace__mul_size((size_t)n, row, &need))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "a block of %lld rows is too large", (long long)n);
  if (need > f->q_rows_bytes) {
    free(f->q_rows);
    f->q_rows = culeace__alloc(ctx, need, 1, "class rows");
    f->q_rows_bytes = f->q_rows ? need : 0;
    if (!f->q_rows) return CULEACE_ERR_OUT_OF_MEMORY;
  }
  for (int64_t c = 0; c < f->k; c++) {
    int64_t nc = 0; /* gather class c's rows contiguously */
    for (int64_t i = 0; i < n; i++)
      if (classes[i] == c)
        memcpy((char *)f->q_rows + (size_t)nc++ * row,
               (const char *)x + (size_t)i * (size_t)ldx * es, row);
    if (nc == 0) continue;
    culeace_status st = ctx->backend->block_moments(
        ctx, f->q_rows, t, nc, f->d, f->d, NULL, 0, 0,
        culeace__block_precision(f->opts.precision, t),
        f->b_mean_x, f->b_mean_z, f->b_cxx, NULL);
    if (st) { /* the overall moments already took this block */
      f->q_broken = 1;
      return st;
    }
    merge_class(f, c, f->class_counts[c], nc);
  }
  return CULEACE_OK;
}

culeace_status culeace_fitter_class_covariances(const culeace_fitter *f,
                                                double *covs) {
  if (!f || !covs) return CULEACE_ERR_INVALID_ARG;
  if (!f->q_cxx)
    return culeace__error(f->ctx, CULEACE_ERR_STATE,
                          "class covariances are kept by quadratic fitters "
                          "only");
  int64_t d = f->d;
  size_t dd = (size_t)d * (size_t)d;
  for (int64_t c = 0; c < f->k; c++) {
    const double *C = f->q_cxx + (size_t)c * dd;
    double *S = covs + (size_t)c * dd, nc = (double)f->class_counts[c];
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = i; j < d; j++)
        S[i * d + j] = S[j * d + i] = nc >= 2 ? C[i * d + j] / (nc - 1) : NAN;
  }
  return CULEACE_OK;
}

/* Sigma_c (d, d) of class c into S: sym(C_c)/n_c with optimal linear
 * shrinkage, or C_c/(n_c - 1). */
static void class_cov(const culeace_fitter *f, int64_t c, double *S) {
  int64_t d = f->d;
  const double *C = f->q_cxx + (size_t)c * (size_t)d * d;
  double nc = (double)f->class_counts[c];
  double s = f->opts.shrinkage ? 1.0 / nc : 1.0 / (nc - 1.0);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i; j < d; j++)
      S[i * d + j] = S[j * d + i] = C[i * d + j] * s;
  if (f->opts.shrinkage) culeace__optimal_linear_shrinkage(S, d, nc);
}

culeace_status culeace__quadratic_build(culeace_fitter *f,
                                        culeace_eraser **out) {
  culeace_ctx *ctx = f->ctx;
  int64_t d = f->d, k = f->k;
  *out = NULL;
  if (f->q_broken)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "this quadratic fitter failed part-way through an "
                          "update; its class moments are incomplete");
  for (int64_t c = 0; c < k; c++)
    if (f->class_counts[c] < 2)
      return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                            "quadratic LEACE needs at least 2 rows of every "
                            "class; class %lld has %lld", (long long)c,
                            (long long)f->class_counts[c]);
  size_t dd = (size_t)d * (size_t)d; /* checked at init */
  culeace_status st = CULEACE_OK;
  culeace_eraser *e = NULL;
  double *sig = culeace__alloc(ctx, dd * (size_t)k, 8, "class covariances");
  double *bary = culeace__alloc(ctx, dd, 8, "barycenter");
  double *w = culeace__alloc(ctx, (size_t)k, 8, "class weights");
  double *work = culeace__ot_work_alloc(ctx, d);
  if (!sig || !bary || !w || !work) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  for (int64_t c = 0; c < k; c++) {
    class_cov(f, c, sig + (size_t)c * dd);
    w[c] = (double)f->class_counts[c] / (double)f->n;
  }
  if (k == 2) {
    st = culeace__ot_midpoint(ctx, sig, sig + dd, w[0], w[1], d, work, bary);
  } else {
    int steps = 0;
    st = culeace__ot_barycenter(ctx, sig, w, k, d, BARYCENTER_MAX_ITER, work,
                                bary, &steps);
  }
  if (st) goto cleanup;
  CULEACE_TRY(culeace__eraser_alloc(ctx, d, 0, &e));
  e->q_means = culeace__alloc(ctx, (size_t)k * (size_t)d, 8, "class means");
  e->q_maps = culeace__alloc(ctx, dd * (size_t)k, 8, "transport maps");
  e->q_target = culeace__alloc(ctx, (size_t)d, 8, "target mean");
  if (!e->q_means || !e->q_maps || !e->q_target) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  for (int64_t c = 0; c < k; c++)
    CULEACE_TRY(culeace__ot_map(ctx, sig + (size_t)c * dd, bary, d, work,
                                e->q_maps + (size_t)c * dd));
  memcpy(e->q_means, f->q_mean, (size_t)k * (size_t)d * 8);
  for (int64_t j = 0; j < d; j++) { /* sum_c prior_c mu_c */
    double m = 0;
    for (int64_t c = 0; c < k; c++) m += w[c] * f->q_mean[c * d + j];
    e->q_target[j] = m;
  }
  culeace__eraser_labelled_info(e, CULEACE_METHOD_QUADRATIC, f->z_dim, k, f);
  culeace__eraser_sync(e);
  *out = e;
  e = NULL;
cleanup:
  culeace_eraser_free(e);
  free(sig);
  free(bary);
  free(w);
  free(work);
  return st;
}
