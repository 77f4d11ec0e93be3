/* probe_loss.c — the weighted log-loss and residual of binary logistic
 * rows, many at once (culeace__binary_losses, core/probe.h): with AVX-512 8
 * rows per instruction, exp and log1p evaluated by polynomials, otherwise
 * one row at a time with libm. Per row, logit t, weight s, label y in
 * {0, 1}:
 *   loss = s (log(1 + exp(t)) - y t),  residual = s (sigmoid(t) - y),
 * from one e = exp(-|t|): log(1 + exp(t)) = max(t, 0) + log1p(e) and
 * sigmoid(t) = (t > 0 ? 1 : e) / (1 + e), so nothing overflows. */
#include <math.h>
#include <stdint.h>

#include "core/probe.h"

static void losses_scalar(const double *t, const double *s, const double *y,
                          int64_t n, double *r, double *loss) {
  for (int64_t i = 0; i < n; i++) {
    double e = exp(-fabs(t[i]));
    double sp = (t[i] > 0 ? t[i] : 0.0) + log1p(e);
    double p1 = t[i] > 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    r[i] = s[i] * (p1 - y[i]);
    loss[i] = s[i] * (sp - y[i] * t[i]);
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/* exp(x) for x <= 0: x = k ln 2 + u, |u| <= ln 2 / 2, exp(u) by its Taylor
 * polynomial to degree 13 (remainder < 1e-17), times 2^k by scalef (which
 * goes through the subnormals to 0 as libm does). */
AVX512 static __m512d exp_nonpos(__m512d x) {
  x = _mm512_max_pd(x, _mm512_set1_pd(-760.0));
  __m512d k = _mm512_roundscale_pd(
      _mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d u = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01),
                               x); /* ln 2, high part (exact in k * hi) */
  u = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), u);
  static const double c[14] = {
      1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
      1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
      1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
      1.0 / 24.0,         1.0 / 6.0,         0.5,
      1.0,                1.0};
  __m512d p = _mm512_set1_pd(c[0]);
  for (int i = 1; i < 14; i++) p = _mm512_fmadd_pd(p, u, _mm512_set1_pd(c[i]));
  return _mm512_scalef_pd(p, k);
}

/* log1p(e) for 0 <= e <= 1: 2 atanh(q), q = e / (2 + e) <= 1/3, by its
 * series to q^37 (remainder < 2e-18 relative). */
AVX512 static __m512d log1p_unit(__m512d e) {
  __m512d q = _mm512_div_pd(e, _mm512_add_pd(_mm512_set1_pd(2.0), e));
  __m512d q2 = _mm512_mul_pd(q, q);
  __m512d p = _mm512_set1_pd(2.0 / 37.0);
  for (int j = 35; j >= 1; j -= 2)
    p = _mm512_fmadd_pd(p, q2, _mm512_set1_pd(2.0 / j));
  return _mm512_mul_pd(p, q);
}

AVX512 static void losses_avx512(const double *t, const double *s,
                                 const double *y, int64_t n, double *r,
                                 double *loss) {
  const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m512d tv = _mm512_loadu_pd(t + i), sv = _mm512_loadu_pd(s + i),
            yv = _mm512_loadu_pd(y + i);
    __m512d a = _mm512_abs_pd(tv);
    __m512d e = exp_nonpos(_mm512_sub_pd(zero, a));
    __m512d sp = _mm512_add_pd(_mm512_max_pd(tv, zero), log1p_unit(e));
    __mmask8 pos = _mm512_cmp_pd_mask(tv, zero, _CMP_GT_OQ);
    __m512d num = _mm512_mask_blend_pd(pos, e, one);
    __m512d p1 = _mm512_div_pd(num, _mm512_add_pd(one, e));
    _mm512_storeu_pd(r + i, _mm512_mul_pd(sv, _mm512_sub_pd(p1, yv)));
    _mm512_storeu_pd(loss + i,
                     _mm512_mul_pd(sv, _mm512_fnmadd_pd(yv, tv, sp)));
  }
  losses_scalar(t + i, s + i, y + i, n - i, r + i, loss + i);
}
#endif

static culeace__losses_fn pick(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return losses_avx512;
#endif
  return losses_scalar;
}

culeace__losses_fn culeace__binary_losses_pick(void) { return pick(); }

void culeace__binary_losses(const double *t, const double *s, const double *y,
                            int64_t n, double *r, double *loss) {
  pick()(t, s, y, n, r, loss);
}

void culeace__binary_losses_scalar(const double *t, const double *s,
                                   const double *y, int64_t n, double *r,
                                   double *loss) {
  losses_scalar(t, s, y, n, r, loss);
}
