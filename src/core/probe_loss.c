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

/* The vector steps below work on V vectors side by side: each is a long
 * chain of dependent FMAs, and one chain at a time left the core waiting
 * on their latency (measured: the losses took as long as the logits). */
enum { V = 4 };

/* exp(x) for x <= 0: x = k ln 2 + u, |u| <= ln 2 / 2, exp(u) by its Taylor
 * polynomial to degree 13 (remainder < 1e-17), times 2^k by scalef (which
 * goes through the subnormals to 0 as libm does). */
AVX512 static inline void exp_nonpos(__m512d *x, int nv) {
  static const double c[14] = {
      1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
      1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
      1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
      1.0 / 24.0,         1.0 / 6.0,         0.5,
      1.0,                1.0};
  __m512d k[V], u[V], p[V];
  for (int v = 0; v < nv; v++) {
    __m512d xv = _mm512_max_pd(x[v], _mm512_set1_pd(-760.0));
    k[v] = _mm512_roundscale_pd(
        _mm512_mul_pd(xv, _mm512_set1_pd(1.4426950408889634)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    u[v] = _mm512_fnmadd_pd(k[v],
                            _mm512_set1_pd(6.93147180369123816490e-01),
                            xv); /* ln 2, high part (exact in k * hi) */
    u[v] = _mm512_fnmadd_pd(k[v], _mm512_set1_pd(1.90821492927058770002e-10),
                            u[v]);
    p[v] = _mm512_set1_pd(c[0]);
  }
  for (int i = 1; i < 14; i++)
    for (int v = 0; v < nv; v++)
      p[v] = _mm512_fmadd_pd(p[v], u[v], _mm512_set1_pd(c[i]));
  for (int v = 0; v < nv; v++) x[v] = _mm512_scalef_pd(p[v], k[v]);
}

/* log1p(e) for 0 <= e <= 1: 2 atanh(q), q = e / (2 + e) <= 1/3, by its
 * series to q^37 (remainder < 2e-18 relative). */
AVX512 static inline void log1p_unit(const __m512d *e, __m512d *out,
                                     int nv) {
  __m512d q[V], q2[V], p[V];
  for (int v = 0; v < nv; v++) {
    q[v] = _mm512_div_pd(e[v], _mm512_add_pd(_mm512_set1_pd(2.0), e[v]));
    q2[v] = _mm512_mul_pd(q[v], q[v]);
    p[v] = _mm512_set1_pd(2.0 / 37.0);
  }
  for (int j = 35; j >= 1; j -= 2)
    for (int v = 0; v < nv; v++)
      p[v] = _mm512_fmadd_pd(p[v], q2[v], _mm512_set1_pd(2.0 / j));
  for (int v = 0; v < nv; v++) out[v] = _mm512_mul_pd(p[v], q[v]);
}

/* nv (<= V) vectors of 8 rows from t + 8 v. */
AVX512 static inline void losses_vectors(const double *t, const double *s,
                                         const double *y, double *r,
                                         double *loss, int nv) {
  const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
  __m512d tv[V], e[V], l1p[V];
  for (int v = 0; v < nv; v++) {
    tv[v] = _mm512_loadu_pd(t + 8 * v);
    e[v] = _mm512_sub_pd(zero, _mm512_abs_pd(tv[v]));
  }
  exp_nonpos(e, nv);
  log1p_unit(e, l1p, nv);
  for (int v = 0; v < nv; v++) {
    __m512d sv = _mm512_loadu_pd(s + 8 * v), yv = _mm512_loadu_pd(y + 8 * v);
    __m512d sp = _mm512_add_pd(_mm512_max_pd(tv[v], zero), l1p[v]);
    __mmask8 pos = _mm512_cmp_pd_mask(tv[v], zero, _CMP_GT_OQ);
    __m512d num = _mm512_mask_blend_pd(pos, e[v], one);
    __m512d p1 = _mm512_div_pd(num, _mm512_add_pd(one, e[v]));
    _mm512_storeu_pd(r + 8 * v, _mm512_mul_pd(sv, _mm512_sub_pd(p1, yv)));
    _mm512_storeu_pd(loss + 8 * v,
                     _mm512_mul_pd(sv, _mm512_fnmadd_pd(yv, tv[v], sp)));
  }
}

AVX512 static void losses_avx512(const double *t, const double *s,
                                 const double *y, int64_t n, double *r,
                                 double *loss) {
  int64_t i = 0;
  for (; i + 8 * V <= n; i += 8 * V)
    losses_vectors(t + i, s + i, y + i, r + i, loss + i, V);
  int nv = (int)((n - i) / 8);
  if (nv) losses_vectors(t + i, s + i, y + i, r + i, loss + i, nv);
  i += 8 * nv;
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
