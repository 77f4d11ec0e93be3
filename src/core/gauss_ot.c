/* gauss_ot.c — optimal transport maps and 2-Wasserstein barycenters of
 * centred Gaussians (see gauss_ot.h), for quadratic LEACE. Every product
 * and eigendecomposition goes through the backend (gemm, eigh). */
#include "core/gauss_ot.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

enum { BUF_V, BUF_T, BUF_A, BUF_B, BUF_M, BUF_Q, BUF_S, N_BUFS };

double *culeace__ot_work_alloc(culeace_ctx *ctx, int64_t d) {
  size_t dd = 0, total = 0;
  if (!culeace__mul_size((size_t)d, (size_t)d, &dd) ||
      !culeace__mul_size(dd, N_BUFS, &total) || total > SIZE_MAX - (size_t)d) {
    culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                   "d = %lld is too large for transport maps", (long long)d);
    return NULL;
  }
  return culeace__alloc(ctx, total + (size_t)d, 8, "transport workspace");
}

static double *buf(double *work, int64_t d, int i) {
  return work + (size_t)i * (size_t)d * (size_t)d;
}

/* C (d, d) = alpha op(A) op(B) + beta C. */
static culeace_status mm(culeace_ctx *ctx, int ta, int tb, int64_t d,
                         double alpha, const double *A, const double *B,
                         double beta, double *C) {
  return ctx->backend->gemm(ctx, ta, tb, d, d, d, alpha, A, d, B, d, beta, C,
                            d);
}

/* sqrt_out = A^1/2 and (when rsqrt_out) rsqrt_out = pinv(A)^1/2 of the
 * symmetric positive semidefinite A (d, d); uses work's V, T and eigenvalue
 * slots. */
static culeace_status psd_roots(culeace_ctx *ctx, const double *A, int64_t d,
                                double *work, double *sqrt_out,
                                double *rsqrt_out) {
  double *V = buf(work, d, BUF_V), *T = buf(work, d, BUF_T);
  double *w = buf(work, d, N_BUFS);
  memcpy(V, A, (size_t)d * (size_t)d * 8);
  culeace_status st = ctx->backend->eigh(ctx, V, w, d); /* row j: vector j */
  if (st) return st;
  for (int64_t j = 0; j < d; j++) w[j] = w[j] > 0 ? w[j] : 0.0;
  double cut = w[d - 1] * (double)d * DBL_EPSILON;
  for (int pass = 0; pass < (rsqrt_out ? 2 : 1); pass++) {
    for (int64_t j = 0; j < d; j++) {
      double s = pass == 0 ? sqrt(w[j]) : (w[j] > cut ? 1.0 / sqrt(w[j]) : 0);
      const double *vj = V + (size_t)j * (size_t)d;
      double *tj = T + (size_t)j * (size_t)d;
      for (int64_t i = 0; i < d; i++) tj[i] = s * vj[i];
    }
    /* V^T diag(s) V */
    st = mm(ctx, 1, 0, d, 1.0, V, T, 0.0, pass == 0 ? sqrt_out : rsqrt_out);
    if (st) return st;
  }
  return CULEACE_OK;
}

/* Q = (S K S)^1/2 for S = K1^1/2 in work's A slot; uses M. */
static culeace_status inner_root(culeace_ctx *ctx, const double *S,
                                 const double *K, int64_t d, double *work,
                                 double *Q) {
  double *M = buf(work, d, BUF_M);
  culeace_status st = mm(ctx, 0, 0, d, 1.0, S, K, 0.0, Q);
  if (!st) st = mm(ctx, 0, 0, d, 1.0, Q, S, 0.0, M);
  if (!st) st = psd_roots(ctx, M, d, work, Q, NULL);
  return st;
}

culeace_status culeace__ot_map(culeace_ctx *ctx, const double *K1,
                               const double *K2, int64_t d, double *work,
                               double *out) {
  double *S = buf(work, d, BUF_A), *R = buf(work, d, BUF_B);
  double *M = buf(work, d, BUF_M), *Q = buf(work, d, BUF_Q);
  culeace_status st = psd_roots(ctx, K1, d, work, S, R);
  if (!st) st = inner_root(ctx, S, K2, d, work, Q);
  if (!st) st = mm(ctx, 0, 0, d, 1.0, R, Q, 0.0, M);
  if (!st) st = mm(ctx, 0, 0, d, 1.0, M, R, 0.0, out);
  return st;
}

culeace_status culeace__ot_midpoint(culeace_ctx *ctx, const double *K1,
                                    const double *K2, double w1, double w2,
                                    int64_t d, double *work, double *out) {
  double *S = buf(work, d, BUF_A), *R = buf(work, d, BUF_B);
  double *M = buf(work, d, BUF_M), *Q = buf(work, d, BUF_Q);
  culeace_status st = psd_roots(ctx, K1, d, work, S, R);
  if (!st) st = inner_root(ctx, S, K2, d, work, Q);
  if (!st) st = mm(ctx, 0, 0, d, 1.0, S, Q, 0.0, M);
  if (!st) st = mm(ctx, 0, 0, d, 1.0, M, R, 0.0, Q); /* P */
  if (st) return st;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      size_t ij = (size_t)i * (size_t)d + (size_t)j;
      size_t ji = (size_t)j * (size_t)d + (size_t)i;
      out[ij] = w1 * w1 * K1[ij] + w2 * w2 * K2[ij] +
                w1 * w2 * (Q[ij] + Q[ji]);
    }
  return CULEACE_OK;
}

static double trace(const double *A, int64_t d) {
  double t = 0;
  for (int64_t i = 0; i < d; i++) t += A[(size_t)i * (size_t)(d + 1)];
  return t;
}

culeace_status culeace__ot_barycenter(culeace_ctx *ctx, const double *Ks,
                                      const double *w, int64_t k, int64_t d,
                                      int max_iter, double *work, double *out,
                                      int *steps) {
  size_t dd = (size_t)d * (size_t)d;
  double *S = buf(work, d, BUF_A), *R = buf(work, d, BUF_B);
  double *M = buf(work, d, BUF_M), *Q = buf(work, d, BUF_Q);
  double *Tsum = buf(work, d, BUF_S);
  double wsum = 0;
  for (int64_t c = 0; c < k; c++) wsum += w[c];
  /* start: the weighted arithmetic mean of the covariances */
  memset(out, 0, dd * 8);
  for (int64_t c = 0; c < k; c++)
    for (size_t i = 0; i < dd; i++) out[i] += w[c] / wsum * Ks[c * dd + i];
  double trace_avg = trace(out, d), loss = INFINITY;
  *steps = 0;
  for (int it = 0; it < max_iter; it++) {
    culeace_status st = psd_roots(ctx, out, d, work, S, R);
    if (st) return st;
    /* Tsum = sum_c w_c R inner_c R, built alongside the loss (discarded
     * when the loss stops falling) */
    double inner_tr = 0;
    memset(Tsum, 0, dd * 8);
    for (int64_t c = 0; c < k && !st; c++) {
      st = inner_root(ctx, S, Ks + c * dd, d, work, Q);
      if (st) break;
      inner_tr += w[c] / wsum * trace(Q, d);
      st = mm(ctx, 0, 0, d, 1.0, R, Q, 0.0, M);
      if (!st) st = mm(ctx, 0, 0, d, w[c] / wsum, M, R, 1.0, Tsum);
    }
    if (st) return st;
    double new_loss = trace(out, d) + trace_avg - 2.0 * inner_tr;
    if (loss - new_loss < DBL_EPSILON) break;
    loss = new_loss;
    st = mm(ctx, 0, 0, d, 1.0, Tsum, out, 0.0, M);
    if (!st) st = mm(ctx, 0, 1, d, 1.0, M, Tsum, 0.0, out);
    if (st) return st;
    (*steps)++;
  }
  return CULEACE_OK;
}
