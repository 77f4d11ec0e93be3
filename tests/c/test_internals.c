/* test_internals.c — white-box tests of pieces the public API cannot reach
 * on ordinary data: the float16/bfloat16 conversions (bulk paths, including
 * the F16C ones, against the scalar reference and the compiler's _Float16),
 * the covariance-trace constraint's mixing branch, the binary probes'
 * vectorised loss and residual against libm and a long double reference,
 * the probes' AVX-512 register-tiled block kernels against float64, and
 * the context's thread count reaching both OpenBLAS and OpenMP. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "core/convert.h"
#include "core/fitter.h"
#include "core/probe.h"
#include "testutil.h"

/* culeace__binary_losses (AVX-512 polynomials where the CPU has them) vs
 * culeace__binary_losses_scalar (libm) vs long double, on logits from 0 to
 * beyond the underflow of exp, signed zeros, both labels, zero weights, and
 * lengths that leave a partial vector. */
static void test_binary_losses(void) {
  enum { NL = 4099 };
  static double t[NL], s[NL], y[NL], r[NL], l[NL], r0[NL], l0[NL];
  tu_rng g;
  tu_seed(&g, 11);
  for (int i = 0; i < NL; i++) {
    double mag = i < 2000 ? 40.0 * tu_uniform(&g)
                          : exp(7.0 * tu_uniform(&g)) - 1.0; /* to ~1100 */
    t[i] = (i % 2 ? -1 : 1) * mag;
    s[i] = i % 7 == 0 ? 0.0 : 0.5 + tu_uniform(&g);
    y[i] = (i / 2) % 2;
  }
  t[0] = 0.0;
  t[1] = -0.0;
  t[2] = 745.5;
  t[3] = -745.5;
  t[4] = 1e-300;
  culeace__binary_losses(t, s, y, NL, r, l);
  culeace__binary_losses_scalar(t, s, y, NL, r0, l0);
  double er = 0, el = 0, er0 = 0, el0 = 0;
  int zero_ok = 1;
  for (int i = 0; i < NL; i++) {
    long double T = t[i], E = expl(-fabsl(T));
    long double sp = (T > 0 ? T : 0) + log1pl(E);
    long double p1 = T > 0 ? 1 / (1 + E) : E / (1 + E);
    long double R = s[i] * (p1 - y[i]), L = s[i] * (sp - y[i] * T);
    /* errors relative to the terms' size: s (|p1| + y), s (sp + y |t|) */
    long double sr = s[i] * (p1 + y[i]) + 1e-300L;
    long double sl = s[i] * (sp + y[i] * fabsl(T)) + 1e-300L;
    er = fmax(er, (double)(fabsl(r[i] - R) / sr));
    el = fmax(el, (double)(fabsl(l[i] - L) / sl));
    er0 = fmax(er0, (double)(fabsl(r0[i] - R) / sr));
    el0 = fmax(el0, (double)(fabsl(l0[i] - L) / sl));
    if (s[i] == 0 && (r[i] != 0 || l[i] != 0)) zero_ok = 0;
  }
  CHECK(er < 6e-16, "binary residuals: relative error %.2e", er);
  CHECK(el < 6e-16, "binary losses: relative error %.2e", el);
  CHECK(er0 < 6e-16 && el0 < 6e-16, "libm twin: %.2e %.2e", er0, el0);
  CHECK(zero_ok, "a zero weight gave a nonzero residual or loss");
  CHECK(isfinite(l[2]) && isfinite(l[3]) && isfinite(r[2]) && isfinite(r[3]),
        "overflow guards: loss %g %g", l[2], l[3]);
}

static void test_f16(void) {
  static uint16_t all[65536];
  static float f[65536];
  static uint16_t back[65536];
  for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
  culeace__to_f32(all, CULEACE_F16, 65536, f);
  culeace__from_f32(f, 65536, CULEACE_F16, back);
  int bad = 0, badrt = 0;
  for (int i = 0; i < 65536; i++) {
    float ref = culeace__f16_to_f32(all[i]);
    if (memcmp(&ref, &f[i], 4) != 0 && !(isnan(ref) && isnan(f[i]))) bad++;
    if (!isnan(ref) && back[i] != all[i]) badrt++;
  }
  CHECK(bad == 0, "%d float16 values decode differently in bulk", bad);
  CHECK(badrt == 0, "%d float16 values do not round-trip", badrt);
  /* float32 -> float16: bulk (hardware when present) vs scalar vs compiler */
  tu_rng r;
  tu_seed(&r, 3);
  enum { N = 1 << 20 };
  float *src = malloc(N * sizeof *src);
  uint16_t *got = malloc(N * 2);
  for (int i = 0; i < N; i++) {
    uint32_t u = (uint32_t)tu_next(&r);
    if (i % 4 == 0) u = (u & 0x807fffffu) | ((uint32_t)(100 + (u >> 27)) << 23);
    memcpy(&src[i], &u, 4);
    if (isnan(src[i])) src[i] = 1.0f;
  }
  src[0] = 65520.0f;          /* rounds to Inf */
  src[1] = 65519.99f;         /* rounds to 65504 */
  src[2] = 2.9802322e-08f;    /* half the smallest subnormal: tie to 0 */
  src[3] = 1.0009765625f * 1.00048828125f; /* near a tie */
  culeace__from_f32(src, N, CULEACE_F16, got);
  int mism = 0, mismc = 0;
  for (int i = 0; i < N; i++) {
    if (got[i] != culeace__f32_to_f16(src[i])) mism++;
    _Float16 h = (_Float16)src[i];
    uint16_t hb;
    memcpy(&hb, &h, 2);
    if (got[i] != hb) mismc++;
  }
  CHECK(mism == 0, "%d bulk float16 roundings differ from the scalar one", mism);
  CHECK(mismc == 0, "%d float16 roundings differ from the compiler's", mismc);
  /* bfloat16: round to nearest even at the tie */
  float t1;
  uint32_t u1 = 0x3f808000u; /* exactly halfway between two bf16 values */
  memcpy(&t1, &u1, 4);
  CHECK(culeace__f32_to_bf16(t1) == 0x3f80, "bf16 tie to even (down)");
  u1 = 0x3f818000u;
  memcpy(&t1, &u1, 4);
  CHECK(culeace__f32_to_bf16(t1) == 0x3f82, "bf16 tie to even (up)");
  CHECK(culeace__f32_to_bf16(INFINITY) == 0x7f80, "bf16 inf");
  free(src);
  free(got);
}

/* I - P' must equal alpha (I - P) + (1 - alpha) U U^T and keep the trace. */
static void test_trace_mixture(culeace_ctx *ctx) {
  enum { D = 6 };
  double S[D * D], U[D], Lv[D], Rv[D];
  tu_rng r;
  tu_seed(&r, 11);
  double A[D * D];
  for (int i = 0; i < D * D; i++) A[i] = tu_normal(&r);
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      S[i * D + j] = i == j ? 0.5 : 0;
      for (int k = 0; k < D; k++) S[i * D + j] += A[i * D + k] * A[j * D + k];
    }
  /* U = e0; L = e0 + 5 e1 so R L = 1 (a projection) that inflates the trace */
  memset(U, 0, sizeof U);
  U[0] = 1;
  memset(Lv, 0, sizeof Lv);
  Lv[0] = 1;
  Lv[1] = 5;
  memcpy(Rv, U, sizeof U);
  culeace_eraser *e = NULL;
  CHECK_OK(ctx, culeace_eraser_from_factors(ctx, D, 1, Lv, Rv, NULL, &e));
  if (!e) return;
  CHECK_OK(ctx, culeace__constrain_trace(ctx, S, D, U, 1, &e));
  culeace_eraser_info info;
  culeace_eraser_info_get(e, &info);
  /* here R = U^T, so the mixture (e0 + 5 alpha e1) e0^T stays rank 1 */
  CHECK(info.rank == 1, "mixed eraser rank %lld (expected 1)", (long long)info.rank);
  int64_t r2 = info.rank;
  double *L = malloc((size_t)(D * r2) * 8), *R = malloc((size_t)(D * r2) * 8);
  culeace_eraser_factors(e, L, R, NULL);
  double E[D * D], B[D * D], C[D * D], P[D * D];
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      E[i * D + j] = 0;
      for (int k = 0; k < r2; k++) E[i * D + j] += L[i * r2 + k] * R[k * D + j];
      B[i * D + j] = Lv[i] * Rv[j] - U[i] * U[j]; /* (I-P) - UU^T */
      C[i * D + j] = E[i * D + j] - U[i] * U[j];  /* (I-P') - UU^T */
    }
  double num = 0, den = 0;
  for (int i = 0; i < D * D; i++) {
    num += C[i] * B[i];
    den += B[i] * B[i];
  }
  double alpha = num / den, resid = 0;
  for (int i = 0; i < D * D; i++) resid = fmax(resid, fabs(C[i] - alpha * B[i]));
  CHECK(alpha > 0 && alpha < 1, "alpha %.4f not in (0, 1)", alpha);
  CHECK(resid < 1e-10, "I - P' is not a mixture (residual %.2e)", resid);
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) P[i * D + j] = (i == j) - E[i * D + j];
  double trS = 0, trP = 0;
  for (int i = 0; i < D; i++) trS += S[i * D + i];
  for (int i = 0; i < D; i++) /* tr(P S P^T) = sum_ij (P S)_ij P_ij */
    for (int j = 0; j < D; j++) {
      double ps = 0;
      for (int k = 0; k < D; k++) ps += P[i * D + k] * S[k * D + j];
      trP += ps * P[i * D + j];
    }
  CHECK(fabs(trP - trS) < 1e-9 * trS, "trace %.12g after, %.12g before", trP, trS);
  free(L);
  free(R);
  culeace_eraser_free(e);
}

/* culeace__dots8_tiled_f32 / culeace__axpy8_tiled_f32 for every output
 * count 1..13 (full tiles of 5 and the remainders) and widths that leave
 * masked tails, against float64 sums; rows whose residuals are all zero
 * add nothing. */
static void test_tiled_kernels(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    printf("test_internals: tiled probe kernels skipped (no AVX-512)\n");
    return;
  }
  tu_rng g;
  tu_seed(&g, 21);
  double worst_z = 0, worst_g = 0, worst_s = 0;
  for (int M = 1; M <= 13; M++)
    for (int d = 1; d <= 83; d += 41) {
      float *x = malloc((size_t)(8 * d) * 4), *W = malloc((size_t)(M * d) * 4);
      float *G = calloc((size_t)(M * d), 4);
      double *b = malloc((size_t)M * 8), *z = malloc((size_t)(8 * M) * 8);
      double *r = malloc((size_t)(8 * M) * 8), *rs = calloc((size_t)M, 8);
      for (int i = 0; i < 8 * d; i++) x[i] = (float)tu_normal(&g);
      for (int i = 0; i < M * d; i++) W[i] = (float)tu_normal(&g);
      for (int i = 0; i < M; i++) b[i] = tu_normal(&g);
      for (int i = 0; i < 8 * M; i++) /* rows 0..3 never train: zeros */
        r[i] = i < 4 * M ? 0.0 : tu_normal(&g);
      const float *xp[8];
      for (int q = 0; q < 8; q++) xp[q] = x + q * d;
      culeace__dots8_tiled_f32(W, b, M, d, xp, z);
      culeace__axpy8_tiled_f32(G, rs, r, M, d, xp);
      for (int q = 0; q < 8; q++)
        for (int c = 0; c < M; c++) {
          double ref = b[c], mag = fabs(b[c]);
          for (int j = 0; j < d; j++) {
            ref += (double)x[q * d + j] * W[c * d + j];
            mag += fabs((double)x[q * d + j] * W[c * d + j]);
          }
          worst_z = fmax(worst_z, fabs(z[q * M + c] - ref) / mag);
        }
      for (int c = 0; c < M; c++) {
        double sr = 0;
        for (int q = 0; q < 8; q++) sr += r[q * M + c];
        worst_s = fmax(worst_s, fabs(rs[c] - sr));
        for (int j = 0; j < d; j++) {
          double ref = 0, mag = 1e-300;
          for (int q = 0; q < 8; q++) {
            ref += r[q * M + c] * x[q * d + j];
            mag += fabs(r[q * M + c] * x[q * d + j]);
          }
          worst_g = fmax(worst_g, fabs(G[c * d + j] - ref) / mag);
        }
      }
      free(x), free(W), free(G), free(b), free(z), free(r), free(rs);
    }
  CHECK(worst_z < 1e-6, "tiled logits: relative error %.2e", worst_z);
  CHECK(worst_g < 1e-6, "tiled gradient sums: relative error %.2e", worst_g);
  CHECK(worst_s < 1e-12, "tiled residual sums: error %.2e", worst_s);
#endif
}

/* n_threads = 1 sets OpenBLAS's and OpenMP's thread counts (the row
 * loops'), and a later context asking for 2 raises both again. */
static void test_thread_count(void) {
  for (int want = 1; want <= 2; want++) {
    culeace_ctx *c = NULL;
    culeace_ctx_opts o;
    culeace_ctx_opts_init(&o);
    o.device = CULEACE_DEVICE_CPU;
    o.n_threads = want;
    CHECK_OK(c, culeace_ctx_create(&o, &c, NULL, 0));
    CHECK(openblas_get_num_threads() == want, "n_threads %d: OpenBLAS has %d",
          want, openblas_get_num_threads());
    CHECK(omp_get_max_threads() == want, "n_threads %d: OpenMP has %d", want,
          omp_get_max_threads());
    culeace_ctx_free(c);
  }
}

int main(void) {
  test_thread_count();
  culeace_ctx *ctx = NULL;
  culeace_ctx_opts o;
  culeace_ctx_opts_init(&o);
  o.device = CULEACE_DEVICE_CPU;
  CHECK_OK(ctx, culeace_ctx_create(&o, &ctx, NULL, 0));
  test_f16();
  test_trace_mixture(ctx);
  test_binary_losses();
  test_tiled_kernels();
  culeace_ctx_free(ctx);
  return tu_finish("test_internals");
}
