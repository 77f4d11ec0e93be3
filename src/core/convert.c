/* convert.c — bulk conversions between activation dtypes and float32 /
 * float64, and the non-finite scan used to reject bad rows. */
#include "core/convert.h"

#include <math.h>

void culeace__to_f32(const void *src, culeace_dtype t, int64_t n, float *dst) {
  switch (t) {
  case CULEACE_F32:
    memcpy(dst, src, (size_t)n * sizeof(float));
    break;
  case CULEACE_F64:
    for (int64_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i];
    break;
  case CULEACE_F16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = culeace__f16_to_f32(((const uint16_t *)src)[i]);
    break;
  case CULEACE_BF16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = culeace__bf16_to_f32(((const uint16_t *)src)[i]);
    break;
  }
}

void culeace__to_f64(const void *src, culeace_dtype t, int64_t n,
                     double *dst) {
  switch (t) {
  case CULEACE_F32:
    for (int64_t i = 0; i < n; i++) dst[i] = ((const float *)src)[i];
    break;
  case CULEACE_F64:
    memcpy(dst, src, (size_t)n * sizeof(double));
    break;
  case CULEACE_F16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = culeace__f16_to_f32(((const uint16_t *)src)[i]);
    break;
  case CULEACE_BF16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = culeace__bf16_to_f32(((const uint16_t *)src)[i]);
    break;
  }
}

void culeace__from_f32(const float *src, int64_t n, culeace_dtype t,
                       void *dst) {
  switch (t) {
  case CULEACE_F32:
    memcpy(dst, src, (size_t)n * sizeof(float));
    break;
  case CULEACE_F64:
    for (int64_t i = 0; i < n; i++) ((double *)dst)[i] = src[i];
    break;
  case CULEACE_F16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)dst)[i] = culeace__f32_to_f16(src[i]);
    break;
  case CULEACE_BF16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)dst)[i] = culeace__f32_to_bf16(src[i]);
    break;
  }
}

void culeace__from_f64(const double *src, int64_t n, culeace_dtype t,
                       void *dst) {
  switch (t) {
  case CULEACE_F32:
    for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = (float)src[i];
    break;
  case CULEACE_F64:
    memcpy(dst, src, (size_t)n * sizeof(double));
    break;
  case CULEACE_F16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)dst)[i] = culeace__f32_to_f16((float)src[i]);
    break;
  case CULEACE_BF16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)dst)[i] = culeace__f32_to_bf16((float)src[i]);
    break;
  }
}

int64_t culeace__first_nonfinite(const void *x, culeace_dtype t, int64_t n,
                                 int64_t d, int64_t ldx, int64_t *col) {
  size_t es = culeace_dtype_size(t);
  for (int64_t i = 0; i < n; i++) {
    const char *row = (const char *)x + (size_t)i * (size_t)ldx * es;
    for (int64_t j = 0; j < d; j++) {
      int bad;
      switch (t) {
      case CULEACE_F32: bad = !isfinite(((const float *)row)[j]); break;
      case CULEACE_F64: bad = !isfinite(((const double *)row)[j]); break;
      case CULEACE_F16: bad = (((const uint16_t *)row)[j] & 0x7c00u) == 0x7c00u; break;
      default: bad = (((const uint16_t *)row)[j] & 0x7f80u) == 0x7f80u; break;
      }
      if (bad) {
        if (col) *col = j;
        return i;
      }
    }
  }
  return -1;
}
