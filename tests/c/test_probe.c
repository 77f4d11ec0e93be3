/* test_probe.c — the probe core: batched fits equal separate fits; the
 * returned parameters are optimal for scikit-learn's objective (gradient
 * recomputed here in float64); probabilities are consistent with the
 * parameters and survive a rebuild from them; the diffmeans probe points
 * along the class-mean difference; layers fitted together
 * (culeace_probe_fit_layers) equal each layer fitted alone, bit for bit; bad
 * input is refused with a message.
 * (Agreement with scikit-learn itself is tested in tests/py/test_probe.py.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "culeace.h"
#include "testutil.h"

enum { N = 600, D = 20 };

static float X[N * D];
static int32_t Y2[N], Y4[N];

static void make_data(void) {
  tu_rng r;
  tu_seed(&r, 5);
  double mu[4][D];
  for (int c = 0; c < 4; c++)
    for (int j = 0; j < D; j++) mu[c][j] = 0.7 * tu_normal(&r);
  for (int i = 0; i < N; i++) {
    Y4[i] = (int32_t)(i % 4);
    Y2[i] = Y4[i] >= 2;
    for (int j = 0; j < D; j++)
      X[i * D + j] = (float)(3.0 + (1 + j % 3) * tu_normal(&r) + mu[Y4[i]][j]);
  }
}

/* Max |gradient| of the objective at the probe's parameters (float64). */
static double grad_norm(const culeace_probe *p, const int32_t *y,
                        const uint8_t *train, double C, int balanced) {
  culeace_probe_info in;
  culeace_probe_info_get(p, &in);
  int64_t m = in.n_outputs, k = in.n_classes;
  double coef[4 * D], b[4], mean[D], scale[D], g[4 * (D + 1)];
  culeace_probe_params(p, coef, b, mean, scale);
  memset(g, 0, sizeof g);
  double cnt[4] = {0}, S = 0, w[4];
  for (int i = 0; i < N; i++) if (train[i]) cnt[y[i]]++;
  double nt = 0;
  for (int c = 0; c < k; c++) nt += cnt[c];
  for (int c = 0; c < k; c++) w[c] = balanced ? nt / (k * cnt[c]) : 1.0;
  for (int c = 0; c < k; c++) S += w[c] * cnt[c];
  for (int i = 0; i < N; i++) {
    if (!train[i]) continue;
    double xs[D], z[4], r[4];
    for (int j = 0; j < D; j++) xs[j] = (X[i * D + j] - mean[j]) / scale[j];
    for (int c = 0; c < m; c++) {
      z[c] = b[c];
      for (int j = 0; j < D; j++) z[c] += coef[c * D + j] * xs[j];
    }
    if (m == 1) {
      r[0] = 1 / (1 + exp(-z[0])) - (y[i] == 1);
    } else {
      double mx = z[0], s = 0;
      for (int c = 1; c < m; c++) mx = fmax(mx, z[c]);
      for (int c = 0; c < m; c++) s += exp(z[c] - mx);
      for (int c = 0; c < m; c++) r[c] = exp(z[c] - mx) / s - (c == y[i]);
    }
    for (int c = 0; c < m; c++) {
      for (int j = 0; j < D; j++) g[c * D + j] += w[y[i]] * r[c] * xs[j] / S;
      g[m * D + c] += w[y[i]] * r[c] / S;
    }
  }
  double worst = 0;
  for (int c = 0; c < m; c++) {
    for (int j = 0; j < D; j++)
      worst = fmax(worst, fabs(g[c * D + j] + coef[c * D + j] / (C * S)));
    worst = fmax(worst, fabs(g[m * D + c]));
  }
  return worst;
}

static void test_batch_and_optimality(culeace_ctx *ctx, const int32_t *y,
                                      int64_t k, int balanced) {
  enum { P = 3 };
  static uint8_t masks[P][N];
  for (int p = 0; p < P; p++)
    for (int i = 0; i < N; i++) masks[p][i] = (i % P) != p; /* 3 folds */
  const int32_t *labels[P] = {y, y, y};
  const uint8_t *train[P] = {masks[0], masks[1], masks[2]};
  culeace_probe_opts o;
  culeace_probe_opts_init(&o);
  o.tol = 1e-7;
  o.max_iter = 1000;
  o.C = 0.5;
  o.balanced = balanced;
  culeace_probe *batch[P] = {0}, *single = NULL;
  CHECK_OK(ctx, culeace_probe_fit_batch(ctx, X, N, D, D, k, P, labels, train,
                                        &o, batch));
  for (int p = 0; p < P && batch[p]; p++) {
    double gmax = grad_norm(batch[p], y, masks[p], o.C, balanced);
    culeace_probe_info in;
    culeace_probe_info_get(batch[p], &in);
    /* float32 passes over the rows put a floor of ~1e-5 under the gradient
     * of this small, strongly regularised problem (the probe's own float32
     * estimate goes lower); the float64 recomputation here must agree */
    CHECK(gmax < 3e-5, "k %lld probe %d: gradient %.2e at the solution "
          "(probe says %.2e after %d iterations, converged %d)", (long long)k,
          p, gmax, in.grad_max, in.n_iter, in.converged);
    CHECK_OK(ctx, culeace_probe_fit_batch(ctx, X, N, D, D, k, 1, &labels[p],
                                          &train[p], &o, &single));
    if (!single) continue;
    double a[4 * D], b[4 * D];
    culeace_probe_params(batch[p], a, NULL, NULL, NULL);
    culeace_probe_params(single, b, NULL, NULL, NULL);
    int64_t m = k == 2 ? 1 : k;
    double e = tu_rel_err(a, b, m * D);
    CHECK(e < 1e-4, "k %lld probe %d: batch vs single rel err %.2e",
          (long long)k, p, e);
    culeace_probe_free(single);
    single = NULL;
  }
  /* probabilities: rows sum to 1, match a rebuilt probe */
  if (batch[0]) {
    double pr[N * 4], pr2[N * 4], coef[4 * D], b[4], mean[D], scale[D];
    CHECK_OK(ctx, culeace_probe_predict_proba(ctx, batch[0], X, N, D, pr));
    culeace_probe_params(batch[0], coef, b, mean, scale);
    culeace_probe *re = NULL;
    CHECK_OK(ctx, culeace_probe_from_params(ctx, CULEACE_PROBE_LOGISTIC, D, k,
                                            coef, b, mean, scale, &re));
    CHECK_OK(ctx, culeace_probe_predict_proba(ctx, re, X, N, D, pr2));
    double worst = 0, diff = 0;
    int correct = 0;
    for (int i = 0; i < N; i++) {
      double s = 0;
      int best = 0;
      for (int c = 0; c < k; c++) {
        s += pr[i * k + c];
        diff = fmax(diff, fabs(pr[i * k + c] - pr2[i * k + c]));
        if (pr[i * k + c] > pr[i * k + best]) best = c;
      }
      worst = fmax(worst, fabs(s - 1));
      correct += best == y[i];
    }
    CHECK(worst < 1e-12, "probabilities sum to 1 within %.2e", worst);
    CHECK(diff == 0, "rebuilt probe predicts differently (%.2e)", diff);
    CHECK(correct > N * 0.6, "k %lld: training accuracy %d/%d", (long long)k,
          correct, N);
    culeace_probe_free(re);
  }
  for (int p = 0; p < P; p++) culeace_probe_free(batch[p]);
  /* the default tolerance takes the float32-accumulation pass: the float64
   * gradient at its answer must still meet the tolerance (with margin for
   * float32 rounding) */
  o.tol = 1e-4;
  CHECK_OK(ctx, culeace_probe_fit_batch(ctx, X, N, D, D, k, P, labels, train,
                                        &o, batch));
  for (int p = 0; p < P && batch[p]; p++) {
    double gmax = grad_norm(batch[p], y, masks[p], o.C, balanced);
    CHECK(gmax < 1.5e-4, "k %lld probe %d at tol 1e-4: gradient %.2e",
          (long long)k, p, gmax);
    culeace_probe_free(batch[p]);
  }
}

static void test_diffmeans(culeace_ctx *ctx) {
  static uint8_t all[N];
  memset(all, 1, sizeof all);
  const int32_t *labels[1] = {Y2};
  const uint8_t *train[1] = {all};
  culeace_probe_opts o;
  culeace_probe_opts_init(&o);
  o.kind = CULEACE_PROBE_DIFFMEANS;
  o.standardize = 0;
  culeace_probe *p = NULL;
  CHECK_OK(ctx, culeace_probe_fit_batch(ctx, X, N, D, D, 2, 1, labels, train,
                                        &o, &p));
  if (!p) return;
  double coef[D], mu0[D] = {0}, mu1[D] = {0}, n0 = 0, n1 = 0;
  culeace_probe_params(p, coef, NULL, NULL, NULL);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D; j++) {
      if (Y2[i]) mu1[j] += X[i * D + j]; else mu0[j] += X[i * D + j];
    }
  for (int i = 0; i < N; i++) { if (Y2[i]) n1++; else n0++; }
  double dot = 0, na = 0, nb = 0;
  for (int j = 0; j < D; j++) {
    double dm = mu1[j] / n1 - mu0[j] / n0;
    dot += dm * coef[j];
    na += dm * dm;
    nb += coef[j] * coef[j];
  }
  double cosv = dot / sqrt(na * nb);
  CHECK(cosv > 1 - 1e-9, "diffmeans direction cosine %.12f", cosv);
  culeace_probe_free(p);
}

/* A constant column carrying label-correlated noise far below float32
 * resolution (what an erasure leaves in a constant column) must not be
 * scaled up to unit variance and read back by the probe. */
static void test_constant_column(culeace_ctx *ctx) {
  static float Xc[N * 2];
  static uint8_t all[N];
  tu_rng r;
  tu_seed(&r, 9);
  for (int i = 0; i < N; i++) {
    Xc[i * 2] = (float)tu_normal(&r); /* unrelated to the label */
    Xc[i * 2 + 1] = 5.0f + (Y2[i] ? 2e-6f : -2e-6f); /* ~ulp-level signal */
    all[i] = 1;
  }
  const int32_t *labels[1] = {Y2};
  const uint8_t *train[1] = {all};
  culeace_probe *p = NULL;
  CHECK_OK(ctx, culeace_probe_fit_batch(ctx, Xc, N, 2, 2, 2, 1, labels, train,
                                        NULL, &p));
  if (!p) return;
  double scale[2], proba[N * 2];
  culeace_probe_params(p, NULL, NULL, NULL, scale);
  CHECK(scale[1] == 1.0, "near-constant column scaled by %g", scale[1]);
  culeace_probe_predict_proba(ctx, p, Xc, N, 2, proba);
  int correct = 0;
  for (int i = 0; i < N; i++) correct += (proba[i * 2 + 1] > 0.5) == Y2[i];
  CHECK(correct < N * 0.6, "probe read a sub-resolution column: %d/%d",
        correct, N);
  culeace_probe_free(p);
}

static void test_errors(culeace_ctx *ctx) {
  static uint8_t m[N];
  for (int i = 0; i < N; i++) m[i] = Y2[i] == 0; /* class 1 missing */
  const int32_t *labels[1] = {Y2};
  const uint8_t *train[1] = {m};
  culeace_probe *p = NULL;
  CHECK(culeace_probe_fit_batch(ctx, X, N, D, D, 2, 1, labels, train, NULL,
                                &p) == CULEACE_ERR_DEGENERATE,
        "missing class accepted");
  CHECK(strstr(culeace_ctx_last_error(ctx), "class 1") != NULL, "msg: %s",
        culeace_ctx_last_error(ctx));
  CHECK(p == NULL, "probe returned on error");
  culeace_probe_opts o;
  culeace_probe_opts_init(&o);
  o.C = 0;
  memset(m, 1, sizeof m);
  CHECK(culeace_probe_fit_batch(ctx, X, N, D, D, 2, 1, labels, train, &o,
                                &p) == CULEACE_ERR_INVALID_ARG,
        "C = 0 accepted");
  CHECK(strstr(culeace_ctx_last_error(ctx), "C must be") != NULL, "msg: %s",
        culeace_ctx_last_error(ctx));
}

/* Bitwise equality of two probes' parameters and iteration counts. */
static int same_probe(const culeace_probe *a, const culeace_probe *b) {
  culeace_probe_info ia, ib;
  if (culeace_probe_info_get(a, &ia) || culeace_probe_info_get(b, &ib))
    return 0;
  int64_t no = ia.n_outputs;
  if (no != ib.n_outputs || ia.n_iter != ib.n_iter) return 0;
  double ca[4 * D], cb[4 * D], ta[4], tb[4], ma[D], mb[D], sa[D], sb[D];
  culeace_probe_params(a, ca, ta, ma, sa);
  culeace_probe_params(b, cb, tb, mb, sb);
  return !memcmp(ca, cb, (size_t)(no * D) * 8) &&
         !memcmp(ta, tb, (size_t)no * 8) && !memcmp(ma, mb, sizeof ma) &&
         !memcmp(sa, sb, sizeof sa);
}

/* Three layers (the rows, rescaled and shifted copies, one with a stride):
 * every probe of culeace_probe_fit_layers equals culeace_probe_fit_batch's
 * on its layer alone; a missing class names the layer and returns no
 * probe. */
static void test_layers(culeace_ctx *ctx, const int32_t *y, int64_t k,
                        culeace_probe_kind kind) {
  enum { NL = 3, P = 3, LD = D + 3 };
  static float Xs[NL][N * LD];
  for (int l = 0; l < NL; l++)
    for (int i = 0; i < N; i++)
      for (int j = 0; j < LD; j++)
        Xs[l][i * LD + j] =
            j < D ? (float)((1.0 + l) * X[i * D + (j + l) % D] - 2.0 * l)
                  : NAN; /* padding past d: never read */
  static uint8_t tr[P][N];
  for (int p = 0; p < P; p++)
    for (int i = 0; i < N; i++) tr[p][i] = (i + p) % 5 != 0;
  const int32_t *labels[P] = {y, y, y};
  const uint8_t *train[P] = {tr[0], tr[1], tr[2]};
  const float *xs[NL] = {Xs[0], Xs[1], Xs[2]};
  culeace_probe_opts o;
  culeace_probe_opts_init(&o);
  o.kind = kind;
  o.tol = 1e-6;
  culeace_probe *all[NL * P], *one[P];
  CHECK_OK(ctx, culeace_probe_fit_layers(ctx, NL, xs, N, D, LD, k, P, labels,
                                         train, &o, all));
  for (int l = 0; l < NL; l++) {
    CHECK_OK(ctx, culeace_probe_fit_batch(ctx, xs[l], N, D, LD, k, P, labels,
                                          train, &o, one));
    for (int p = 0; p < P; p++) {
      CHECK(all[l * P + p] && one[p] && same_probe(all[l * P + p], one[p]),
            "k %lld kind %d: layer %d probe %d fitted with the other layers "
            "differs from fitted alone", (long long)k, (int)kind, l, p);
      culeace_probe_free(one[p]);
    }
  }
  for (int i = 0; i < NL * P; i++) culeace_probe_free(all[i]);
  /* class k-1 missing from problem 2's training rows: an error naming the
   * layer, nothing returned */
  static uint8_t miss[N];
  for (int i = 0; i < N; i++) miss[i] = y[i] != k - 1;
  train[2] = miss;
  for (int i = 0; i < NL * P; i++) all[i] = (culeace_probe *)&o; /* junk */
  CHECK(culeace_probe_fit_layers(ctx, NL, xs, N, D, LD, k, P, labels, train,
                                 &o, all) == CULEACE_ERR_DEGENERATE,
        "a missing class accepted");
  CHECK(strstr(culeace_ctx_last_error(ctx), "layer 0 of 3") &&
            strstr(culeace_ctx_last_error(ctx), "probe 2"),
        "msg: %s", culeace_ctx_last_error(ctx));
  for (int i = 0; i < NL * P; i++)
    CHECK(all[i] == NULL, "probe %d returned on error", i);
  CHECK(culeace_probe_fit_layers(ctx, 0, xs, N, D, LD, k, P, labels, train,
                                 &o, all) == CULEACE_ERR_INVALID_ARG,
        "L = 0 accepted");
}

int main(void) {
  culeace_ctx *ctx = NULL;
  culeace_ctx_opts co;
  culeace_ctx_opts_init(&co);
  co.device = CULEACE_DEVICE_CPU;
  CHECK_OK(ctx, culeace_ctx_create(&co, &ctx, NULL, 0));
  make_data();
  test_batch_and_optimality(ctx, Y2, 2, 0);
  test_batch_and_optimality(ctx, Y4, 4, 0);
  test_batch_and_optimality(ctx, Y4, 4, 1);
  test_diffmeans(ctx);
  test_constant_column(ctx);
  test_errors(ctx);
  test_layers(ctx, Y2, 2, CULEACE_PROBE_LOGISTIC);
  test_layers(ctx, Y4, 4, CULEACE_PROBE_LOGISTIC);
  test_layers(ctx, Y4, 4, CULEACE_PROBE_DIFFMEANS);
  culeace_ctx_free(ctx);
  return tu_finish("test_probe");
}
