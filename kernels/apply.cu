/* apply.cu — the fused in-place eraser edit on device rows:
 *   x_i <- x_i - ((x_i - bias) R^T) L^T      (rank r, one row at a time)
 * x (n, d) row stride ldx; Lt = L^T (r, d), R (r, d), bias (d) or NULL, in
 * A = float (f16/bf16/f32 rows) or double (f64 rows). 16-bit rows are edited
 * in float32 and rounded once to nearest even, like the CPU backend. Each
 * element is read from DRAM once and written once. Two kernels:
 *
 * Fast path (apply_fast): rows of f16/bf16/f32 with x, the row stride in
 * bytes and the row in bytes (d * es) all multiples of 16, Lt/R/bias 16-byte
 * aligned, r <= kFastRank (8) and the row fitting one block's registers:
 * dv = d * es / 16 vectors, NV = 1, 2 or 4 vectors per thread (the least that
 * gives <= 256 threads), threads = dv / NV rounded up to a warp. A persistent
 * grid (blocks resident per SM x SMs) walks groups of kRows = 4 / NV rows
 * (2 at NV = 1 and rank > 4):
 * each thread loads its 16-byte vectors of the group (and prefetches the
 * next group's while it computes), widens to float, forms its part of the
 * r coefficients t = (x - bias) R^T, the block reduces them (one warp
 * transpose-reduction, one __syncthreads, a double-buffered shared array),
 * then x - t L^T is rounded and stored with 16-byte stores. The thread's
 * columns are the same for every row: its slices of R, Lt and bias stay in
 * registers when they are small ((2 r + 1) x columns <= 48 floats, e.g. rank
 * 1 with 16 columns), else they are re-read per row group through the
 * read-only cache (L1 for small r x d, L2 otherwise). Rows are loaded and
 * stored with the streaming cache hint so they do not evict the factors.
 *
 * General path (apply_kernel, any alignment, any rank up to
 * culeace_k_apply_max_rank, f64): a block of kThreads threads owns kRows
 * rows. Pass 1 walks the rows once, accumulating the r coefficients, kChunk
 * at a time, in registers (reduced over the block through shared memory);
 * pass 2 walks the rows again (the same block just read them: an L1/L2 hit
 * for ranks up to kChunk) and writes x - t L^T.
 *
 * CULEACE_APPLY_KERNEL (environment, read at every call so a benchmark can
 * time both paths in one process): "generic" forces the general path; unset
 * or any other value picks the fast path when its conditions hold. */
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- fast path ---------------------------------------------------------- */

constexpr int kFastThreads = 256; /* most threads per block */
constexpr int kFastWarps = kFastThreads / 32;
constexpr int kFastRank = 8;      /* largest rank the fast path takes */
constexpr int kFastNV = 4;        /* most 16-byte vectors per thread and row */

template <typename T> __device__ __forceinline__ T from_bits(unsigned b);
template <> __device__ __forceinline__ __half from_bits<__half>(unsigned b) {
  return __ushort_as_half((unsigned short)b);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_bits<__nv_bfloat16>(unsigned b) {
  return __ushort_as_bfloat16((unsigned short)b);
}
__device__ __forceinline__ unsigned to_bits(__half v) {
  return __half_as_ushort(v);
}
__device__ __forceinline__ unsigned to_bits(__nv_bfloat16 v) {
  return __bfloat16_as_ushort(v);
}

/* The 16 / sizeof(T) elements of a 16-byte vector as floats (widen<float>),
 * and back (narrow<T, float>: round to nearest even). */
template <typename T>
__device__ __forceinline__ void unpack(const uint4 &u, float *f) {
  const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    f[2 * i] = widen<float>(from_bits<T>(w[i] & 0xffffu));
    f[2 * i + 1] = widen<float>(from_bits<T>(w[i] >> 16));
  }
}
template <>
__device__ __forceinline__ void unpack<float>(const uint4 &u, float *f) {
  f[0] = __uint_as_float(u.x);
  f[1] = __uint_as_float(u.y);
  f[2] = __uint_as_float(u.z);
  f[3] = __uint_as_float(u.w);
}
template <typename T> __device__ __forceinline__ uint4 pack(const float *f) {
  unsigned w[4];
#pragma unroll
  for (int i = 0; i < 4; i++)
    w[i] = to_bits(narrow<T, float>(f[2 * i])) |
           (to_bits(narrow<T, float>(f[2 * i + 1])) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}
template <> __device__ __forceinline__ uint4 pack<float>(const float *f) {
  return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]),
                    __float_as_uint(f[2]), __float_as_uint(f[3]));
}

/* f (N floats, N a multiple of 4) = p[0 .. N), 16-byte aligned, through the
 * read-only cache. */
template <int N>
__device__ __forceinline__ void load_f(const float *__restrict__ p, float *f) {
#pragma unroll
  for (int i = 0; i < N / 4; i++) {
    float4 q = __ldg(reinterpret_cast<const float4 *>(p) + i);
    f[4 * i] = q.x;
    f[4 * i + 1] = q.y;
    f[4 * i + 2] = q.z;
    f[4 * i + 3] = q.w;
  }
}

/* buf (kRows, NV) = this thread's vectors of row group g (zeros past n or
 * past the row's dv vectors). Streaming loads: each row is read once. */
template <typename T, int NV, int kRows>
__device__ __forceinline__ void load_group(const T *x, int64_t n, int64_t ldx,
                                           int dv, int64_t g,
                                           uint4 (&buf)[kRows][NV]) {
#pragma unroll
  for (int q = 0; q < kRows; q++) {
    const int64_t row = g * kRows + q;
    const uint4 *p = reinterpret_cast<const uint4 *>(x + row * ldx);
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int v = k * (int)blockDim.x + (int)threadIdx.x;
      buf[q][k] = row < n && v < dv ? __ldcs(p + v) : make_uint4(0, 0, 0, 0);
    }
  }
}

/* Sums each of the V values (V a power of two <= 32) over the warp, V / 2 +
 * V / 4 + ... + 1 shuffles for the halving steps (each lane hands half of
 * its values to its partner) then plain butterflies. Returns the total of
 * value *idx; *writer is set on one lane per value. */
template <int V>
__device__ __forceinline__ float warp_sum_multi(float (&v)[V], int lane,
                                                int *idx, bool *writer) {
  int id = 0;
  int n = V;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    if (n > 1) {
      const bool upper = (lane & o) != 0;
      const int half = n / 2;
#pragma unroll
      for (int i = 0; i < V / 2; i++) {
        if (i < half) {
          const float send = upper ? v[i] : v[i + half];
          const float keep = upper ? v[i + half] : v[i];
          v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
      }
      id = 2 * id + (upper ? 1 : 0);
      n = half;
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], o);
    }
  }
  *idx = id;
  *writer = (lane & (32 / V - 1)) == 0;
  return v[0];
}

/* One block edits groups of kRows rows, a grid-stride walk; thread i owns
 * the vectors i, i + blockDim.x, ... (NV of them, fewer at the row's end)
 * of each row. KR >= r coefficients are formed per row (only c < r are
 * touched). Shared memory: red (2, warps, kRows * KR), two buffers so that
 * one __syncthreads per group suffices: a buffer is rewritten two groups
 * later, after every thread has passed the next group's barrier, which it
 * reaches only after reading this group's sums. */
template <typename T, int NV, int kRows, int KR>
__global__ void __launch_bounds__(kFastThreads, 2)
    apply_fast(T *__restrict__ x, int64_t n, int dv, int64_t ldx, int r,
               const float *__restrict__ Lt, const float *__restrict__ R,
               const float *__restrict__ bias) {
  constexpr int EV = 16 / (int)sizeof(T); /* elements per vector */
  constexpr int V = kRows * KR;            /* sums reduced per group */
  constexpr int CN = NV * EV;              /* columns per thread */
  /* Factor slices held in registers across rows when this small. */
  constexpr bool kCache = (2 * KR + 1) * CN <= 48;
  constexpr int CC = kCache ? NV : 1;
  __shared__ __align__(16) float red[2][kFastWarps][V];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int nwarps = (int)(blockDim.x >> 5);
  const int64_t d = (int64_t)dv * EV;
  const int64_t groups = (n + kRows - 1) / kRows;

  float cb[CC][EV], cr[CC][KR][EV], cl[CC][KR][EV];
  if constexpr (kCache) {
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int v = k * (int)blockDim.x + tid;
      const int64_t j = (int64_t)v * EV;
#pragma unroll
      for (int e = 0; e < EV; e++) cb[k][e] = 0.f;
#pragma unroll
      for (int c = 0; c < KR; c++)
#pragma unroll
        for (int e = 0; e < EV; e++) cr[k][c][e] = cl[k][c][e] = 0.f;
      if (v < dv) {
        if (bias) load_f<EV>(bias + j, cb[k]);
#pragma unroll
        for (int c = 0; c < KR; c++)
          if (c < r) {
            load_f<EV>(R + c * d + j, cr[k][c]);
            load_f<EV>(Lt + c * d + j, cl[k][c]);
          }
      }
    }
  }

  uint4 cur[kRows][NV];
  int64_t g = blockIdx.x;
  load_group<T, NV, kRows>(x, n, ldx, dv, g, cur);
  int buf = 0;
  for (; g < groups; g += gridDim.x) {
    uint4 nxt[kRows][NV]; /* the next group, in flight during this one */
    load_group<T, NV, kRows>(x, n, ldx, dv, g + gridDim.x, nxt);

    /* Pass 1: this thread's part of t (kRows, KR). */
    float acc[V];
#pragma unroll
    for (int i = 0; i < V; i++) acc[i] = 0.f;
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int v = k * (int)blockDim.x + tid;
      if (v < dv) {
        const int64_t j = (int64_t)v * EV;
        float b[EV];
        if constexpr (kCache) {
#pragma unroll
          for (int e = 0; e < EV; e++) b[e] = cb[k][e];
        } else {
#pragma unroll
          for (int e = 0; e < EV; e++) b[e] = 0.f;
          if (bias) load_f<EV>(bias + j, b);
        }
        float xb[kRows][EV];
#pragma unroll
        for (int q = 0; q < kRows; q++) {
          unpack<T>(cur[q][k], xb[q]);
#pragma unroll
          for (int e = 0; e < EV; e++) xb[q][e] -= b[e];
        }
#pragma unroll
        for (int c = 0; c < KR; c++) {
          if (c < r) {
            float rv[EV];
            if constexpr (kCache) {
#pragma unroll
              for (int e = 0; e < EV; e++) rv[e] = cr[k][c][e];
            } else {
              load_f<EV>(R + c * d + j, rv);
            }
#pragma unroll
            for (int q = 0; q < kRows; q++)
#pragma unroll
              for (int e = 0; e < EV; e++)
                acc[q * KR + c] += xb[q][e] * rv[e];
          }
        }
      }
    }

    /* Block sum: warp transpose-reduction, then every thread adds the
     * warps' partial sums in warp order (same order in every thread). */
    int idx;
    bool writer;
    const float part = warp_sum_multi<V>(acc, lane, &idx, &writer);
    if (writer) red[buf][warp][idx] = part;
    __syncthreads();
    float t[V];
#pragma unroll
    for (int i = 0; i < V; i++) t[i] = 0.f;
#pragma unroll
    for (int w = 0; w < kFastWarps; w++)
      if (w < nwarps) {
#pragma unroll
        for (int i = 0; i < V; i++) t[i] += red[buf][w][i];
      }
    buf ^= 1;

    /* Pass 2: x - t L^T from the registers, rounded once, 16-byte stores. */
#pragma unroll
    for (int k = 0; k < NV; k++) {
      const int v = k * (int)blockDim.x + tid;
      if (v < dv) {
        const int64_t j = (int64_t)v * EV;
        float s[kRows][EV];
#pragma unroll
        for (int q = 0; q < kRows; q++)
#pragma unroll
          for (int e = 0; e < EV; e++) s[q][e] = 0.f;
#pragma unroll
        for (int c = 0; c < KR; c++) {
          if (c < r) {
            float lv[EV];
            if constexpr (kCache) {
#pragma unroll
              for (int e = 0; e < EV; e++) lv[e] = cl[k][c][e];
            } else {
              load_f<EV>(Lt + c * d + j, lv);
            }
#pragma unroll
            for (int q = 0; q < kRows; q++)
#pragma unroll
              for (int e = 0; e < EV; e++) s[q][e] += t[q * KR + c] * lv[e];
          }
        }
#pragma unroll
        for (int q = 0; q < kRows; q++) {
          const int64_t row = g * kRows + q;
          if (row < n) {
            float o[EV];
            unpack<T>(cur[q][k], o);
#pragma unroll
            for (int e = 0; e < EV; e++) o[e] -= s[q][e];
            __stcs(reinterpret_cast<uint4 *>(x + row * ldx) + v, pack<T>(o));
          }
        }
      }
    }

#pragma unroll
    for (int q = 0; q < kRows; q++)
#pragma unroll
      for (int k = 0; k < NV; k++) cur[q][k] = nxt[q][k];
  }
}

template <typename T, int NV, int KR>
int launch_fast_rank(T *x, int64_t n, int dv, int64_t ldx, int r,
                     const float *Lt, const float *R, const float *bias,
                     int threads, cudaStream_t s) {
  /* Rows per group: 4 x 16 bytes per thread in flight (8 bytes at NV = 1,
   * rank > 4, which would spill with 4 rows). */
  constexpr int kRows = NV > 1 ? 4 / NV : (KR > 4 ? 2 : 4);
  auto kern = apply_fast<T, NV, kRows, KR>;
  int dev = 0, sms = 0, per_sm = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess)
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, threads,
                                                      0);
  if (e != cudaSuccess) return (int)e;
  const int64_t groups = (n + kRows - 1) / kRows;
  int64_t blocks = (int64_t)(sms > 0 ? sms : 1) * (per_sm > 0 ? per_sm : 1);
  if (blocks > groups) blocks = groups;
  kern<<<(unsigned)blocks, threads, 0, s>>>(x, n, dv, ldx, r, Lt, R, bias);
  return (int)cudaGetLastError();
}

template <typename T, int NV>
int launch_fast_nv(T *x, int64_t n, int dv, int64_t ldx, int r,
                   const float *Lt, const float *R, const float *bias,
                   int threads, cudaStream_t s) {
  if (r == 1)
    return launch_fast_rank<T, NV, 1>(x, n, dv, ldx, r, Lt, R, bias, threads,
                                      s);
  if (r == 2)
    return launch_fast_rank<T, NV, 2>(x, n, dv, ldx, r, Lt, R, bias, threads,
                                      s);
  if (r <= 4)
    return launch_fast_rank<T, NV, 4>(x, n, dv, ldx, r, Lt, R, bias, threads,
                                      s);
  return launch_fast_rank<T, NV, 8>(x, n, dv, ldx, r, Lt, R, bias, threads, s);
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* The fast path when its conditions hold (see the file comment): returns
 * the launch status, or -1 (nothing launched) when they do not hold. */
template <typename T>
int launch_fast(T *x, int64_t n, int64_t d, int64_t ldx, int64_t r,
                const float *Lt, const float *R, const float *bias,
                cudaStream_t s) {
  const int64_t es = (int64_t)sizeof(T);
  if (r < 1 || r > kFastRank || ldx < d || !aligned16(x) ||
      (ldx * es) % 16 != 0 || (d * es) % 16 != 0 || !aligned16(Lt) ||
      !aligned16(R) || (bias && !aligned16(bias)))
    return -1;
  const int64_t dv = d * es / 16;
  int nv = 1;
  while (nv <= kFastNV && (dv + nv - 1) / nv > kFastThreads) nv *= 2;
  if (nv > kFastNV) return -1;
  const int threads = (int)(((dv + nv - 1) / nv + 31) / 32 * 32);
  switch (nv) {
  case 1:
    return launch_fast_nv<T, 1>(x, n, (int)dv, ldx, (int)r, Lt, R, bias,
                                threads, s);
  case 2:
    return launch_fast_nv<T, 2>(x, n, (int)dv, ldx, (int)r, Lt, R, bias,
                                threads, s);
  default:
    return launch_fast_nv<T, 4>(x, n, (int)dv, ldx, (int)r, Lt, R, bias,
                                threads, s);
  }
}

/* CULEACE_APPLY_KERNEL=generic forces the general kernel. */
bool force_generic() {
  const char *e = getenv("CULEACE_APPLY_KERNEL");
  return e && strcmp(e, "generic") == 0;
}

/* ---- dispatch ----------------------------------------------------------- */

/* Launches the fast path when its conditions hold (and it is not switched
 * off), else the general kernel with the most rows per block whose shared
 * memory fits. */
template <typename T, typename A>
int launch(T *x, int64_t n, int64_t d, int64_t ldx, int64_t r, const A *Lt,
           const A *R, const A *bias, cudaStream_t s) {
  if constexpr (sizeof(A) == 4) {
    if (!force_generic()) {
      int st = launch_fast<T>(x, n, d, ldx, r, Lt, R, bias, s);
      if (st >= 0) return st;
    }
  }
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
