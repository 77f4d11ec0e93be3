/* probe.cu — the logistic probes' kernels (src/backend/cuda_probe.c): the
 * rows centred into the pass's float32/float64 matrix with a column of ones
 * (so that one GEMM gives the gradient sums and the residual sums), and the
 * per-row residuals and losses of the pending problems from their logits.
 * The arithmetic follows the CPU pass (src/core/probe_pass.c): 2-byte
 * values widened to float32 and centred in float32; residuals and losses in
 * float64. */
#include <cuda_runtime.h>

#include "dtype.cuh"
#include "kernels.h"

namespace {

constexpr int kThreads = 256;

/* xe (n, ld) = [widen(src) - sf | 1]: element (i, j < d) from src (n, d)
 * with stride lds, (i, d) = 1. sf (d) may be NULL (rows already centred). */
template <typename T, typename A>
__global__ void probe_rows_kernel(const T *__restrict__ src, int64_t n,
                                  int64_t d, int64_t lds,
                                  const float *__restrict__ sf,
                                  A *__restrict__ xe, int64_t ld) {
  int64_t total = n * ld;
  for (int64_t e = (int64_t)blockIdx.x * kThreads + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * kThreads) {
    int64_t i = e / ld, j = e - i * ld;
    if (j == d) {
      xe[e] = (A)1;
    } else {
      float v = widen<float>(src[i * lds + j]);
      if (sf)
        v -= sf[j];
      xe[e] = (A)v;
    }
  }
}

/* One thread per (row i, pending problem q): z (n, M) logits without the
 * intercepts b (M), M = cnt m; problem idx[q]'s weights S (P, n) and labels
 * Y (P, n). Writes r (n, M) residuals s (p - onehot(y)) and lrow (n, cnt)
 * losses s (logsumexp - z_y) (binary: s (log(1 + e^t) - y t)). */
template <typename A>
__global__ void probe_residuals_kernel(
    const A *__restrict__ z, const double *__restrict__ b, int64_t n, int64_t M,
    int64_t m, int64_t cnt, const int64_t *__restrict__ idx,
    const double *__restrict__ S, const int32_t *__restrict__ Y,
    A *__restrict__ r, double *__restrict__ lrow) {
  int64_t total = n * cnt;
  for (int64_t e = (int64_t)blockIdx.x * kThreads + threadIdx.x; e < total;
       e += (int64_t)gridDim.x * kThreads) {
    int64_t i = e / cnt, q = e - i * cnt, p = idx[q];
    double s = S[p * n + i];
    int32_t y = Y[p * n + i];
    const A *zi = z + i * M + q * m;
    const double *bq = b + q * m;
    A *ri = r + i * M + q * m;
    if (s == 0) {
      for (int64_t c = 0; c < m; c++)
        ri[c] = (A)0;
      lrow[e] = 0;
      continue;
    }
    if (m == 1) {
      double t = (double)zi[0] + bq[0], yy = y == 1 ? 1.0 : 0.0;
      double ex = exp(-fabs(t)); /* in (0, 1] */
      double sig = t >= 0 ? 1 / (1 + ex) : ex / (1 + ex);
      double softplus = fmax(t, 0.0) + log1p(ex); /* log(1 + e^t) */
      ri[0] = (A)(s * (sig - yy));
      lrow[e] = s * (softplus - yy * t);
      continue;
    }
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < m; c++)
      mx = fmax(mx, (double)zi[c] + bq[c]);
    for (int64_t c = 0; c < m; c++)
      sum += exp((double)zi[c] + bq[c] - mx);
    double lse = mx + log(sum);
    for (int64_t c = 0; c < m; c++)
      ri[c] = (A)(s * (exp((double)zi[c] + bq[c] - lse) - (c == y)));
    lrow[e] = s * (lse - ((double)zi[y] + bq[y]));
  }
}

unsigned grid_for(int64_t total) {
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 65535 * 8)
    blocks = 65535 * 8;
  return (unsigned)(blocks > 0 ? blocks : 1);
}

} // namespace

extern "C" int culeace_k_probe_rows(const void *src, culeace_dtype t, int64_t n,
                                    int64_t d, int64_t lds, const float *sf,
                                    int f64, void *xe, int64_t ld,
                                    void *stream) {
  if (n <= 0)
    return 0;
  cudaStream_t st = (cudaStream_t)stream;
  unsigned g = grid_for(n * ld);
  switch (t) {
  case CULEACE_F32: {
    typedef float T;
    if (f64)
      probe_rows_kernel<T, double><<<g, kThreads, 0, st>>>(
          (const T *)src, n, d, lds, sf, (double *)xe, ld);
    else
      probe_rows_kernel<T, float><<<g, kThreads, 0, st>>>(
          (const T *)src, n, d, lds, sf, (float *)xe, ld);
    break;
  }
  case CULEACE_F16: {
    typedef __half T;
    if (f64)
      probe_rows_kernel<T, double><<<g, kThreads, 0, st>>>(
          (const T *)src, n, d, lds, sf, (double *)xe, ld);
    else
      probe_rows_kernel<T, float><<<g, kThreads, 0, st>>>(
          (const T *)src, n, d, lds, sf, (float *)xe, ld);
    break;
  }
  case CULEACE_BF16: {
    typedef __nv_bfloat16 T;
    if (f64)
      probe_rows_kernel<T, double><<<g, kThreads, 0, st>>>(
          (const T *)src, n, d, lds, sf, (double *)xe, ld);
    else
      probe_rows_kernel<T, float><<<g, kThreads, 0, st>>>(
          (const T *)src, n, d, lds, sf, (float *)xe, ld);
    break;
  }
  default:
    return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

extern "C" int culeace_k_probe_residuals(const void *z, int f64,
                                         const double *b, int64_t n, int64_t M,
                                         int64_t m, int64_t cnt,
                                         const int64_t *idx, const double *S,
                                         const int32_t *Y, void *r,
                                         double *lrow, void *stream) {
  if (n <= 0 || cnt <= 0)
    return 0;
  cudaStream_t st = (cudaStream_t)stream;
  unsigned g = grid_for(n * cnt);
  if (f64)
    probe_residuals_kernel<double><<<g, kThreads, 0, st>>>(
        (const double *)z, b, n, M, m, cnt, idx, S, Y, (double *)r, lrow);
  else
    probe_residuals_kernel<float><<<g, kThreads, 0, st>>>(
        (const float *)z, b, n, M, m, cnt, idx, S, Y, (float *)r, lrow);
  return (int)cudaGetLastError();
}
