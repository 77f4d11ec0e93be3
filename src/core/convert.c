/* convert.c — bulk conversions between activation dtypes and float32 /
 * float64, and the non-finite scan used to reject bad rows. */
#include "core/convert.h"

#include <math.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define CULEACE_X86 1
#endif

/* ---- float16 with the F16C instructions where the CPU has them --------- */
#ifdef CULEACE_X86
__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(
    const uint16_t *s, int64_t n, float *d) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
  for (; i < n; i++) d[i] = culeace__f16_to_f32(s[i]);
}

__attribute__((target("avx,f16c"))) static void f32_to_f16_f16c(
    const float *s, int64_t n, uint16_t *d) {
  int64_t i = 0; /* hardware rounding: to nearest even */
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i),
                                     _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) d[i] = culeace__f32_to_f16(s[i]);
}

/* F16C and AVX with the OS saving the YMM state (CPUID leaf 1 ECX bits 29,
 * 28, 27 and XCR0 bits 1-2); by CPUID because not every compiler's
 * __builtin_cpu_supports knows "f16c". */
static int have_f16c(void) {
  static int cached = -1;
  if (cached < 0) {
    unsigned a, b, c, d;
    int ok = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1) &&
             (c >> 28 & 1) && (c >> 27 & 1);
    if (ok) {
      unsigned lo, hi;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      ok = (lo & 6u) == 6u;
    }
    cached = ok;
  }
  return cached;
}
#endif

static void f16_to_f32(const uint16_t *s, int64_t n, float *d) {
#ifdef CULEACE_X86
  if (have_f16c()) {
    f16_to_f32_f16c(s, n, d);
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) d[i] = culeace__f16_to_f32(s[i]);
}

static void f32_to_f16(const float *s, int64_t n, uint16_t *d) {
#ifdef CULEACE_X86
  if (have_f16c()) {
    f32_to_f16_f16c(s, n, d);
    return;
  }
#endif
  for (int64_t i = 0; i < n; i++) d[i] = culeace__f32_to_f16(s[i]);
}

#ifdef CULEACE_X86
/* dst = f32(s) - sub, 16 values per instruction (AVX-512 has F16C's
 * conversion at full width). */
__attribute__((target("avx512f"))) static void f16_minus_avx512(
    const uint16_t *s, int64_t n, const float *sub, float *d) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(
        d + i, _mm512_sub_ps(_mm512_cvtph_ps(_mm256_loadu_si256(
                                 (const __m256i *)(s + i))),
                             _mm512_loadu_ps(sub + i)));
  for (; i < n; i++) d[i] = culeace__f16_to_f32(s[i]) - sub[i];
}

__attribute__((target("avx512f"))) static void bf16_minus_avx512(
    const uint16_t *s, int64_t n, const float *sub, float *d) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i w = _mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(s + i))),
        16); /* bfloat16 is the top half of a float32 */
    _mm512_storeu_ps(d + i, _mm512_sub_ps(_mm512_castsi512_ps(w),
                                          _mm512_loadu_ps(sub + i)));
  }
  for (; i < n; i++) d[i] = culeace__bf16_to_f32(s[i]) - sub[i];
}

static int have_avx512(void) {
  static int cached = -1;
  if (cached < 0) {
    __builtin_cpu_init();
    cached = __builtin_cpu_supports("avx512f") != 0;
  }
  return cached;
}
#endif

void culeace__to_f32_minus(const void *src, culeace_dtype t, int64_t n,
                           const float *sub, float *dst) {
#ifdef CULEACE_X86
  if ((t == CULEACE_F16 || t == CULEACE_BF16) && have_avx512()) {
    (t == CULEACE_F16 ? f16_minus_avx512 : bf16_minus_avx512)(src, n, sub,
                                                              dst);
    return;
  }
#endif
  culeace__to_f32(src, t, n, dst);
#pragma omp simd
  for (int64_t i = 0; i < n; i++) dst[i] -= sub[i];
}

void culeace__to_f32(const void *src, culeace_dtype t, int64_t n, float *dst) {
  switch (t) {
  case CULEACE_F32:
    memcpy(dst, src, (size_t)n * sizeof(float));
    break;
  case CULEACE_F64:
    for (int64_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i];
    break;
  case CULEACE_F16:
    f16_to_f32(src, n, dst);
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
  case CULEACE_F16: { /* via float32 in chunks (exact: f16 fits f32) */
    float tmp[256];
    for (int64_t i = 0; i < n; i += 256) {
      int64_t m = n - i < 256 ? n - i : 256;
      f16_to_f32((const uint16_t *)src + i, m, tmp);
      for (int64_t j = 0; j < m; j++) dst[i + j] = tmp[j];
    }
    break;
  }
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
    f32_to_f16(src, n, dst);
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

/* Whether one row of d elements holds a NaN/Inf (first column in *col).
 * Branch-free inner loops so the compiler vectorises the common case. */
static int row_nonfinite(const void *row, culeace_dtype t, int64_t d,
                         int64_t *col) {
  int any = 0;
  switch (t) {
  case CULEACE_F32: {
    const uint32_t *u = row;
    for (int64_t j = 0; j < d; j++) any |= (u[j] & 0x7f800000u) == 0x7f800000u;
    break;
  }
  case CULEACE_F64: {
    const uint64_t *u = row;
    for (int64_t j = 0; j < d; j++)
      any |= (u[j] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
    break;
  }
  case CULEACE_F16: {
    const uint16_t *u = row;
    for (int64_t j = 0; j < d; j++) any |= (u[j] & 0x7c00u) == 0x7c00u;
    break;
  }
  case CULEACE_BF16: {
    const uint16_t *u = row;
    for (int64_t j = 0; j < d; j++) any |= (u[j] & 0x7f80u) == 0x7f80u;
    break;
  }
  }
  if (!any) return 0;
  double v[1];
  for (int64_t j = 0; j < d; j++) {
    culeace__to_f64((const char *)row + (size_t)j * culeace_dtype_size(t), t, 1, v);
    if (!isfinite(v[0])) {
      if (col) *col = j;
      return 1;
    }
  }
  return 0;
}

int64_t culeace__first_nonfinite(const void *x, culeace_dtype t, int64_t n,
                                 int64_t d, int64_t ldx, int64_t *col) {
  size_t es = culeace_dtype_size(t), stride = (size_t)ldx * es;
  const char *base = x;
  if ((double)n * (double)d < (double)(1 << 18)) { /* small: one thread */
    for (int64_t i = 0; i < n; i++)
      if (row_nonfinite(base + (size_t)i * stride, t, d, col)) return i;
    return -1;
  }
  /* Rows split over the threads; each stops looking past the first bad
   * row it has found, and the smallest wins. */
  int64_t first = n;
#pragma omp parallel for schedule(static) reduction(min : first)
  for (int64_t i = 0; i < n; i++)
    if (i < first && row_nonfinite(base + (size_t)i * stride, t, d, NULL))
      first = i;
  if (first == n) return -1;
  row_nonfinite(base + (size_t)first * stride, t, d, col);
  return first;
}
