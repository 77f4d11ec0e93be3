/* convert.h — element conversions between the activation dtypes and
 * float32/float64. float16 and bfloat16 are converted by bit manipulation
 * (never through HDF5), rounding to nearest even on the way down. */
#ifndef CULEACE_CORE_CONVERT_H
#define CULEACE_CORE_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "culeace.h"

static inline float culeace__bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t culeace__f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep quiet NaN */
    return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}

static inline float culeace__f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t culeace__f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow->Inf */
  if (a < 0x38800000u) { /* result is subnormal or zero */
    if (a < 0x33000000u) return (uint16_t)sign; /* < half the min subnormal */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14 + (112 - e) + ... */
    /* value = m * 2^(e-150); subnormal unit = 2^-24 -> q = m >> (126 - e) */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  /* normal: rebias exponent, round mantissa to 10 bits, nearest even */
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
  r = r - ((uint32_t)(127 - 15) << 23);
  return (uint16_t)(sign | (r >> 13));
}

/* Converts n elements of src (type t) to float32 / float64. */
void culeace__to_f32(const void *src, culeace_dtype t, int64_t n, float *dst);
/* dst = float32(src) - sub (n values): one pass, for rows centred as they
 * are read (float32 subtraction, so the same values as converting then
 * subtracting). */
void culeace__to_f32_minus(const void *src, culeace_dtype t, int64_t n,
                           const float *sub, float *dst);
void culeace__to_f64(const void *src, culeace_dtype t, int64_t n, double *dst);
/* Converts n float32 / float64 values into dst of type t (RNE). */
void culeace__from_f32(const float *src, int64_t n, culeace_dtype t,
                       void *dst);
void culeace__from_f64(const double *src, int64_t n, culeace_dtype t,
                       void *dst);
/* Index of the first row (of n rows, d wide, stride ldx) holding a NaN or
 * Inf, or -1. Sets *col to its column. */
int64_t culeace__first_nonfinite(const void *x, culeace_dtype t, int64_t n,
                                 int64_t d, int64_t ldx, int64_t *col);

#endif
