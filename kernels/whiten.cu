/* whiten.cu — the elementwise steps of building LEACE's whitening on the
 * device (the products and the eigendecomposition are cuBLAS/cuSOLVER):
 * symmetrising the running co-moment with its trace and Frobenius norm,
 * the shrinkage update, and scaling eigenvectors by a function of their
 * eigenvalues. */
#include <cfloat>
#include <cuda_runtime.h>

#include "whiten.h"

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t m) {
  int64_t b = (m + kThreads - 1) / kThreads;
  return (unsigned)(b > 65535 ? 65535 : (b < 1 ? 1 : b));
}

__device__ double block_sum(double v, double *smem) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / 32; w++) t += smem[w];
  __syncthreads();
  return t; /* valid in thread 0 */
}

__global__ void symmetrise_kernel(const double *__restrict__ c,
                                  double *__restrict__ out, int64_t d,
                                  double scale, double *__restrict__ stats) {
  __shared__ double red[kThreads / 32];
  double tr = 0, fro = 0;
  const int64_t m = d * d;
  for (int64_t e = (int64_t)blockIdx.x * kThreads + threadIdx.x; e < m;
       e += (int64_t)gridDim.x * kThreads) {
    int64_t i = e % d, j = e / d; /* out[i + j d] */
    int64_t hi = i > j ? i : j, lo = i > j ? j : i;
    double v = scale * c[hi + lo * d];
    out[e] = v;
    fro += v * v;
    if (i == j) tr += v;
  }
  double t = block_sum(tr, red);
  double f = block_sum(fro, red);
  if (threadIdx.x == 0) {
    atomicAdd(&stats[0], t);
    atomicAdd(&stats[1], f);
  }
}

__global__ void shrink_kernel(double *__restrict__ s, int64_t d, double alpha,
                              double diag_add) {
  const int64_t m = d * d;
  for (int64_t e = (int64_t)blockIdx.x * kThreads + threadIdx.x; e < m;
       e += (int64_t)gridDim.x * kThreads) {
    double v = alpha * s[e];
    if (e % (d + 1) == 0) v += diag_add;
    s[e] = v;
  }
}

__global__ void scale_eigvecs_kernel(const double *__restrict__ v,
                                     const double *__restrict__ w, int64_t d,
                                     int inverse, double *__restrict__ t) {
  const double cut = w[d - 1] * (double)d * DBL_EPSILON;
  const int64_t m = d * d;
  for (int64_t e = (int64_t)blockIdx.x * kThreads + threadIdx.x; e < m;
       e += (int64_t)gridDim.x * kThreads) {
    double lam = w[e / d]; /* column j = e / d */
    double g = 0;
    if (lam > cut) {
      double l = lam > 0 ? lam : 0.0;
      g = inverse ? 1.0 / sqrt(l) : sqrt(l);
    }
    t[e] = g * v[e];
  }
}

} // namespace

extern "C" int culeace_k_symmetrise(const double *c, double *out, int64_t d,
                                    double scale, double *stats,
                                    void *stream) {
  if (d <= 0) return 0;
  symmetrise_kernel<<<grid_for(d * d), kThreads, 0, (cudaStream_t)stream>>>(
      c, out, d, scale, stats);
  return (int)cudaGetLastError();
}

extern "C" int culeace_k_shrink(double *s, int64_t d, double alpha,
                                double diag_add, void *stream) {
  if (d <= 0) return 0;
  shrink_kernel<<<grid_for(d * d), kThreads, 0, (cudaStream_t)stream>>>(
      s, d, alpha, diag_add);
  return (int)cudaGetLastError();
}

extern "C" int culeace_k_scale_eigvecs(const double *v, const double *w,
                                       int64_t d, int inverse, double *t,
                                       void *stream) {
  if (d <= 0) return 0;
  scale_eigvecs_kernel<<<grid_for(d * d), kThreads, 0, (cudaStream_t)stream>>>(
      v, w, d, inverse, t);
  return (int)cudaGetLastError();
}
