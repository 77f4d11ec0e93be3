/* dtype.cuh — loads and stores of every row dtype as float/double on the
 * device, and a dispatch from culeace_dtype to the element type. */
#ifndef CULEACE_DTYPE_CUH
#define CULEACE_DTYPE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

__device__ __forceinline__ double to_double(float v) { return v; }
__device__ __forceinline__ double to_double(double v) { return v; }
__device__ __forceinline__ double to_double(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ double to_double(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

/* Value of an element in the edit's arithmetic type A (float or double). */
template <typename A, typename T> __device__ __forceinline__ A widen(T v);
template <> __device__ __forceinline__ float widen<float>(float v) { return v; }
template <> __device__ __forceinline__ float widen<float>(__half v) {
  return __half2float(v);
}
template <> __device__ __forceinline__ float widen<float>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <> __device__ __forceinline__ double widen<double>(double v) {
  return v;
}

/* Rounds an A back to the element type (nearest even). */
template <typename T, typename A> __device__ __forceinline__ T narrow(A v);
template <> __device__ __forceinline__ float narrow<float>(float v) { return v; }
template <> __device__ __forceinline__ __half narrow<__half>(float v) {
  return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(
    float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ double narrow<double>(double v) {
  return v;
}

/* Runs the statements after dtype with T the element type of dtype (a
 * variadic macro: launch syntax has commas); returns cudaErrorInvalidValue
 * for an unknown dtype. */
#define CULEACE_DISPATCH_DTYPE(dtype, ...)                                     \
  switch (dtype) {                                                             \
  case CULEACE_F64: { typedef double T; __VA_ARGS__; break; }                  \
  case CULEACE_F32: { typedef float T; __VA_ARGS__; break; }                   \
  case CULEACE_F16: { typedef __half T; __VA_ARGS__; break; }                  \
  case CULEACE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; break; }          \
  default: return (int)cudaErrorInvalidValue;                                  \
  }

#endif
