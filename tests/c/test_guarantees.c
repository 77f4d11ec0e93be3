/* test_guarantees.c — the LEACE guarantees on random data, for 1 continuous
 * column and 2 and 5 classes, affine on/off, leace and orth, shrinkage on/off,
 * d > n and rank-deficient x:
 *   cross-covariance of erased x with z ~ 0; class means equal after
 *   erasure; the eraser is idempotent; rank of the edit <= z_dim; column
 *   means preserved when affine; the trace constraint holds when on. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "culeace.h"
#include "testutil.h"

typedef struct {
  int64_t n, d, k;
  int classes, affine, shrinkage, rank_deficient;
  culeace_method method;
} gcase;

static double max_abs(const double *a, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
  return m;
}

/* Sigma_xz of x (n, d) with z (n, zd), and column means of x. */
static void xz_cov(const double *x, const double *z, int64_t n, int64_t d,
                   int64_t zd, double *sxz, double *mx) {
  double *mz = calloc((size_t)zd, 8);
  memset(mx, 0, (size_t)d * 8);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++) mx[j] += x[i * d + j] / (double)n;
    for (int64_t c = 0; c < zd; c++) mz[c] += z[i * zd + c] / (double)n;
  }
  memset(sxz, 0, (size_t)(d * zd) * 8);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++)
      for (int64_t c = 0; c < zd; c++)
        sxz[j * zd + c] += (x[i * d + j] - mx[j]) * (z[i * zd + c] - mz[c]) /
                           (double)(n - 1);
  free(mz);
}

static double trace_cov(const double *x, int64_t n, int64_t d) {
  double t = 0;
  for (int64_t j = 0; j < d; j++) {
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) m += x[i * d + j] / (double)n;
    for (int64_t i = 0; i < n; i++) s += (x[i * d + j] - m) * (x[i * d + j] - m);
    t += s / (double)(n - 1);
  }
  return t;
}

static void run_case(culeace_ctx *ctx, tu_rng *rng, gcase c, int constrain) {
  int64_t n = c.n, d = c.d, k = c.k;
  int64_t zd = c.classes ? (k == 2 ? 1 : k) : k;
  double *x = malloc((size_t)(n * d) * 8), *z = calloc((size_t)(n * zd), 8);
  int32_t *cls = malloc((size_t)n * 4);
  /* planted concept: class-dependent shift along random directions, plus
   * anisotropic noise; rank-deficient x repeats columns. */
  double *dir = malloc((size_t)(k * d) * 8);
  for (int64_t i = 0; i < k * d; i++) dir[i] = tu_normal(rng);
  for (int64_t i = 0; i < n; i++) {
    cls[i] = (int32_t)tu_randint(rng, 0, c.classes ? k - 1 : 0);
    for (int64_t j = 0; j < d; j++)
      x[i * d + j] = 3.0 + tu_normal(rng) * (0.2 + (double)(j % 7));
    if (c.classes) {
      if (zd == 1) z[i] = cls[i] == 1;
      else z[i * zd + cls[i]] = 1;
      for (int64_t j = 0; j < d; j++) x[i * d + j] += dir[cls[i] * d + j];
    } else {
      for (int64_t q = 0; q < k; q++) {
        z[i * k + q] = tu_normal(rng);
        for (int64_t j = 0; j < d; j++)
          x[i * d + j] += 0.5 * z[i * k + q] * dir[q * d + j];
      }
    }
    if (c.rank_deficient)
      for (int64_t j = d / 2; j < d; j++) x[i * d + j] = x[i * d + j - d / 2];
  }
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.method = c.method;
  o.affine = c.affine;
  o.shrinkage = c.shrinkage;
  o.constrain_cov_trace = constrain;
  o.svd_tol = 1e-12; /* keep every direction: the guarantee is exact */
  culeace_fitter *f = NULL;
  culeace_eraser *e = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, c.classes ? CULEACE_Z_CLASSES
                                                           : CULEACE_Z_CONTINUOUS,
                                      &o, &f));
  if (c.classes)
    CHECK_OK(ctx, culeace_fitter_update_classes(f, x, CULEACE_F64, n, d, cls));
  else
    CHECK_OK(ctx, culeace_fitter_update_continuous(f, x, CULEACE_F64, n, d, z, k));
  CHECK_OK(ctx, culeace_fitter_finalize(f, &e));
  if (!e) goto done;
  culeace_eraser_info info;
  culeace_eraser_info_get(e, &info);
  char desc[160];
  snprintf(desc, sizeof desc,
           "n %lld d %lld k %lld classes %d %s affine %d shrink %d rankdef %d "
           "constrain %d", (long long)n, (long long)d, (long long)k, c.classes,
           c.method == CULEACE_METHOD_LEACE ? "leace" : "orth", c.affine,
           c.shrinkage, c.rank_deficient, constrain);
  CHECK(info.rank <= zd && info.rank >= 1, "%s: rank %lld > z_dim %lld", desc,
        (long long)info.rank, (long long)zd);

  double *xe = malloc((size_t)(n * d) * 8), *xe2 = malloc((size_t)(n * d) * 8);
  memcpy(xe, x, (size_t)(n * d) * 8);
  CHECK_OK(ctx, culeace_eraser_apply(ctx, e, xe, CULEACE_F64, n, d));
  double *s0 = malloc((size_t)(d * zd) * 8), *s1 = malloc((size_t)(d * zd) * 8);
  double *m0 = malloc((size_t)d * 8), *m1 = malloc((size_t)d * 8);
  xz_cov(x, z, n, d, zd, s0, m0);
  xz_cov(xe, z, n, d, zd, s1, m1);
  double before = max_abs(s0, d * zd), after = max_abs(s1, d * zd);
  CHECK(after <= 1e-9 * before, "%s: cross-cov %.3e -> %.3e", desc, before,
        after);
  if (c.classes) { /* class means equal after erasure */
    double worst = 0, scale = max_abs(m1, d);
    for (int64_t q = 0; q < k; q++) {
      double *cm = calloc((size_t)d, 8);
      int64_t cnt = 0;
      for (int64_t i = 0; i < n; i++)
        if (cls[i] == q) {
          cnt++;
          for (int64_t j = 0; j < d; j++) cm[j] += xe[i * d + j];
        }
      for (int64_t j = 0; j < d && cnt; j++)
        worst = fmax(worst, fabs(cm[j] / (double)cnt - m1[j]));
      free(cm);
    }
    CHECK(worst <= 1e-9 * scale, "%s: class-mean gap %.3e", desc, worst);
  }
  if (c.affine) {
    double gap = 0;
    for (int64_t j = 0; j < d; j++) gap = fmax(gap, fabs(m1[j] - m0[j]));
    CHECK(gap <= 1e-10 * max_abs(m0, d), "%s: mean moved by %.3e", desc, gap);
  }
  if (!constrain) { /* idempotent: a second application changes nothing */
    memcpy(xe2, xe, (size_t)(n * d) * 8);
    CHECK_OK(ctx, culeace_eraser_apply(ctx, e, xe2, CULEACE_F64, n, d));
    double diff = 0;
    for (int64_t i = 0; i < n * d; i++) diff = fmax(diff, fabs(xe2[i] - xe[i]));
    CHECK(diff <= 1e-9 * max_abs(xe, n * d), "%s: not idempotent (%.3e)", desc,
          diff);
  } else if (c.method == CULEACE_METHOD_LEACE) {
    double t0 = trace_cov(x, n, d), t1 = trace_cov(xe, n, d);
    CHECK(t1 <= t0 * (1 + 1e-9), "%s: trace grew %.6e -> %.6e", desc, t0, t1);
  }
  free(xe); free(xe2); free(s0); free(s1); free(m0); free(m1);
done:
  culeace_eraser_free(e);
  culeace_fitter_free(f);
  free(x); free(z); free(cls); free(dir);
}

int main(void) {
  culeace_ctx *ctx = NULL;
  culeace_ctx_opts co;
  culeace_ctx_opts_init(&co);
  co.device = CULEACE_DEVICE_CPU;
  CHECK_OK(ctx, culeace_ctx_create(&co, &ctx, NULL, 0));
  tu_rng rng;
  tu_seed(&rng, 7);
  int64_t ks[3][2] = {{1, 0}, {2, 1}, {5, 1}}; /* (k, classes) */
  for (int ki = 0; ki < 3; ki++)
    for (int method = 0; method < 2; method++)
      for (int affine = 0; affine < 2; affine++)
        for (int shrink = 0; shrink < 2; shrink++)
          for (int shape = 0; shape < 3; shape++) {
            gcase c = {.k = ks[ki][0], .classes = (int)ks[ki][1],
                       .affine = affine, .shrinkage = shrink,
                       .method = method ? CULEACE_METHOD_ORTH
                                        : CULEACE_METHOD_LEACE};
            if (shape == 0) { c.n = 300; c.d = 12; }
            if (shape == 1) { c.n = 25; c.d = 40; }  /* d > n */
            if (shape == 2) { c.n = 200; c.d = 16; c.rank_deficient = 1; }
            run_case(ctx, &rng, c, 0);
            run_case(ctx, &rng, c, 1);
          }
  culeace_ctx_free(ctx);
  return tu_finish("test_guarantees");
}
