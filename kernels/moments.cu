/* moments.cu — the block-moment kernels: float64 column sums of a row block
 * of any dtype, centring on the block mean (float64 or float32 output for
 * the cuBLAS products), and float32 -> float64 widening of the products. */
#include <cuda_runtime.h>

#include "dtype.cuh"
#include "kernels.h"

namespace {

constexpr int kThreads = 256;

/* Grid: x over column tiles of kThreads, y over row slices; each thread sums
 * one column over its slice, then adds to sums[j]. Warps read 32 adjacent
 * columns of a row: coalesced. */
template <typename T>
__global__ void column_sums_kernel(const T *__restrict__ x, int64_t n,
                                   int64_t d, int64_t ldx,
                                   double *__restrict__ sums) {
  int64_t j = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (j >= d) return;
  double acc = 0;
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) acc += to_double(x[i * ldx + j]);
  atomicAdd(&sums[j], acc);
}

template <typename T, typename O>
__global__ void centre_kernel(const T *__restrict__ x, int64_t n, int64_t d,
                              int64_t ldx, const double *__restrict__ sums,
                              O *__restrict__ out) {
  int64_t j = (int64_t)blockIdx.x * kThreads + threadIdx.x;
  if (j >= d) return;
  double mean = sums[j] / (double)n;
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y)
    out[i * d + j] = (O)(to_double(x[i * ldx + j]) - mean);
}

__global__ void widen_kernel(const float *__restrict__ src,
                             double *__restrict__ dst, int64_t m, int add) {
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < m;
       i += (int64_t)gridDim.x * kThreads)
    dst[i] = add ? dst[i] + (double)src[i] : (double)src[i];
}

template <typename T>
__global__ void round16_kernel(const float *__restrict__ src,
                               T *__restrict__ dst, int64_t m) {
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < m;
       i += (int64_t)gridDim.x * kThreads)
    dst[i] = narrow<T, float>(src[i]);
}

/* About 8 resident blocks per SM on a large GPU, at most one y-slice per
 * row, within the grid's y limit. */
dim3 column_grid(int64_t n, int64_t d) {
  int64_t gx = (d + kThreads - 1) / kThreads;
  int64_t gy = (2048 + gx - 1) / gx;
  if (gy > n) gy = n;
  if (gy > 65535) gy = 65535;
  if (gy < 1) gy = 1;
  return dim3((unsigned)gx, (unsigned)gy);
}

} // namespace

extern "C" int culeace_k_column_sums(const void *x, culeace_dtype xtype,
                                     int64_t n, int64_t d, int64_t ldx,
                                     double *sums, void *stream) {
  if (n <= 0 || d <= 0) return 0;
  cudaStream_t s = (cudaStream_t)stream;
  dim3 grid = column_grid(n, d);
  CULEACE_DISPATCH_DTYPE(xtype, column_sums_kernel<T><<<grid, kThreads, 0, s>>>(
                                    (const T *)x, n, d, ldx, sums));
  return (int)cudaGetLastError();
}

extern "C" int culeace_k_centre(const void *x, culeace_dtype xtype, int64_t n,
                                int64_t d, int64_t ldx, const double *sums,
                                int out_f64, void *out, void *stream) {
  if (n <= 0 || d <= 0) return 0;
  cudaStream_t s = (cudaStream_t)stream;
  dim3 grid = column_grid(n, d);
  if (out_f64) {
    CULEACE_DISPATCH_DTYPE(xtype, centre_kernel<T, double><<<grid, kThreads, 0, s>>>(
                                      (const T *)x, n, d, ldx, sums, (double *)out));
  } else {
    CULEACE_DISPATCH_DTYPE(xtype, centre_kernel<T, float><<<grid, kThreads, 0, s>>>(
                                      (const T *)x, n, d, ldx, sums, (float *)out));
  }
  return (int)cudaGetLastError();
}

extern "C" int culeace_k_widen(const float *src, double *dst, int64_t m,
                               int add, void *stream) {
  if (m <= 0) return 0;
  int64_t blocks = (m + kThreads - 1) / kThreads;
  if (blocks > 65535) blocks = 65535;
  widen_kernel<<<(unsigned)blocks, kThreads, 0, (cudaStream_t)stream>>>(src, dst, m, add);
  return (int)cudaGetLastError();
}

extern "C" int culeace_k_round16(const float *src, void *dst,
                                 culeace_dtype dtype, int64_t m, void *stream) {
  if (m <= 0) return 0;
  int64_t blocks = (m + kThreads - 1) / kThreads;
  if (blocks > 65535) blocks = 65535;
  cudaStream_t s = (cudaStream_t)stream;
  if (dtype == CULEACE_F16)
    round16_kernel<__half><<<(unsigned)blocks, kThreads, 0, s>>>(
        src, (__half *)dst, m);
  else if (dtype == CULEACE_BF16)
    round16_kernel<__nv_bfloat16><<<(unsigned)blocks, kThreads, 0, s>>>(
        src, (__nv_bfloat16 *)dst, m);
  else
    return (int)cudaErrorInvalidValue;
  return (int)cudaGetLastError();
}
