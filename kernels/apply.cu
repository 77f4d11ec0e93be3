/* apply.cu — the fused in-place eraser edit on device rows:
 *   x_i <- x_i - ((x_i - bias) R^T) L^T      (rank r, one row at a time)
 * A block of kThreads threads owns kRows rows. Pass 1 walks the rows once,
 * accumulating the r coefficients t = (x - bias) R^T, kChunk at a time, in
 * registers (reduced over the block through shared memory); pass 2 walks
 * the rows again (the same block just read them: an L1/L2 hit, not a second
 * trip to DRAM for ranks up to kChunk) and writes x - t L^T. Each element is
 * read from DRAM once and written once. 16-bit rows are edited in float32
 * and rounded once to nearest even, like the CPU backend. */
#include <cuda_runtime.h>

#include "dtype.cuh"
#include "kernels.h"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 8; /* coefficients accumulated per walk over a row */
constexpr size_t kSmemLimit = 48 * 1024; /* default dynamic shared memory */

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* kCh coefficients are accumulated per walk (1 for rank 1, which keeps the
 * registers low). Shared memory: coef (kRows, r) then red
 * (kWarps, kRows * kCh). */
template <typename T, typename A, int kRows, int kCh>
__global__ void __launch_bounds__(kThreads)
    apply_kernel(T *__restrict__ x, int64_t n, int64_t d, int64_t ldx, int r,
                 const A *__restrict__ Lt, const A *__restrict__ R,
                 const A *__restrict__ bias) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A *coef = reinterpret_cast<A *>(smem_raw);
  A *red = coef + kRows * r;
  const int64_t row0 = (int64_t)blockIdx.x * kRows;
  const int rows = n - row0 < kRows ? (int)(n - row0) : kRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  T *base = x + row0 * ldx;

  for (int c0 = 0; c0 < r; c0 += kCh) {
    const int kc = r - c0 < kCh ? r - c0 : kCh;
    A acc[kRows][kCh];
#pragma unroll
    for (int q = 0; q < kRows; q++)
#pragma unroll
      for (int c = 0; c < kCh; c++) acc[q][c] = 0;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) {
      A b = bias ? bias[j] : A(0);
      A rv[kCh];
#pragma unroll
      for (int c = 0; c < kCh; c++)
        rv[c] = c < kc ? R[(int64_t)(c0 + c) * d + j] : A(0);
#pragma unroll
      for (int q = 0; q < kRows; q++) {
        if (q < rows) {
          A v = widen<A>(base[q * ldx + j]) - b;
#pragma unroll
          for (int c = 0; c < kCh; c++) acc[q][c] += v * rv[c];
        }
      }
    }
#pragma unroll
    for (int q = 0; q < kRows; q++)
#pragma unroll
      for (int c = 0; c < kCh; c++) {
        A v = warp_sum(acc[q][c]);
        if (lane == 0) red[warp * (kRows * kCh) + q * kCh + c] = v;
      }
    __syncthreads();
    for (int t = threadIdx.x; t < kRows * kCh; t += kThreads) {
      A sum = 0;
      for (int w = 0; w < kWarps; w++) sum += red[w * (kRows * kCh) + t];
      int q = t / kCh, c = t % kCh;
      if (c < kc) coef[q * r + c0 + c] = sum;
    }
    __syncthreads();
  }

  for (int64_t j = threadIdx.x; j < d; j += kThreads) {
    A s[kRows];
#pragma unroll
    for (int q = 0; q < kRows; q++) s[q] = 0;
    for (int c = 0; c < r; c++) {
      A l = Lt[(int64_t)c * d + j];
#pragma unroll
      for (int q = 0; q < kRows; q++) s[q] += coef[q * r + c] * l;
    }
#pragma unroll
    for (int q = 0; q < kRows; q++)
      if (q < rows) {
        T *p = base + q * ldx + j;
        *p = narrow<T, A>(widen<A>(*p) - s[q]);
      }
  }
}

template <int kRows, typename A> size_t smem_bytes(int64_t r) {
  return sizeof(A) * ((size_t)kRows * (size_t)r + (size_t)kWarps * kRows * kChunk);
}

template <typename T, typename A, int kRows>
void launch_rows(T *x, int64_t n, int64_t d, int64_t ldx, int64_t r,
                 const A *Lt, const A *R, const A *bias, cudaStream_t s) {
  unsigned blocks = (unsigned)((n + kRows - 1) / kRows);
  size_t smem = smem_bytes<kRows, A>(r);
  if (r == 1)
    apply_kernel<T, A, kRows, 1><<<blocks, kThreads, smem, s>>>(
        x, n, d, ldx, (int)r, Lt, R, bias);
  else if (r <= 4)
    apply_kernel<T, A, kRows, 4><<<blocks, kThreads, smem, s>>>(
        x, n, d, ldx, (int)r, Lt, R, bias);
  else
    apply_kernel<T, A, kRows, kChunk><<<blocks, kThreads, smem, s>>>(
        x, n, d, ldx, (int)r, Lt, R, bias);
}

/* Launches with the most rows per block whose shared memory fits. */
template <typename T, typename A>
int launch(T *x, int64_t n, int64_t d, int64_t ldx, int64_t r, const A *Lt,
           const A *R, const A *bias, cudaStream_t s) {
  constexpr int kWide = sizeof(A) == 8 ? 4 : 8;
  if (smem_bytes<kWide, A>(r) <= kSmemLimit)
    launch_rows<T, A, kWide>(x, n, d, ldx, r, Lt, R, bias, s);
  else
    launch_rows<T, A, 1>(x, n, d, ldx, r, Lt, R, bias, s);
  return (int)cudaGetLastError();
}

} // namespace

extern "C" int64_t culeace_k_apply_max_rank(culeace_dtype xtype) {
  size_t a = xtype == CULEACE_F64 ? 8 : 4;
  return (int64_t)(kSmemLimit / a) - (int64_t)kWarps * kChunk;
}

extern "C" int culeace_k_apply(void *x, culeace_dtype xtype, int64_t n,
                               int64_t d, int64_t ldx, int64_t r,
                               const void *Lt, const void *R, const void *bias,
                               void *stream) {
  if (n <= 0 || r <= 0 || d <= 0) return 0;
  if (r > culeace_k_apply_max_rank(xtype) || n > 0x7fffffffLL)
    return (int)cudaErrorInvalidValue;
  cudaStream_t s = (cudaStream_t)stream;
  switch (xtype) {
  case CULEACE_F64:
    return launch<double, double>((double *)x, n, d, ldx, r, (const double *)Lt,
                                  (const double *)R, (const double *)bias, s);
  case CULEACE_F32:
    return launch<float, float>((float *)x, n, d, ldx, r, (const float *)Lt,
                                (const float *)R, (const float *)bias, s);
  case CULEACE_F16:
    return launch<__half, float>((__half *)x, n, d, ldx, r, (const float *)Lt,
                                 (const float *)R, (const float *)bias, s);
  case CULEACE_BF16:
    return launch<__nv_bfloat16, float>((__nv_bfloat16 *)x, n, d, ldx, r,
                                        (const float *)Lt, (const float *)R,
                                        (const float *)bias, s);
  default:
    return (int)cudaErrorInvalidValue;
  }
}
