/* test_eval.c — probe evaluation helpers (src/core/eval.h): stratified folds
 * (per-class balance within one row, fold sizes, determinism), group folds
 * (no group split, every fold has every class), their error messages,
 * control labels (class / group counts kept exactly, constant within a
 * group), the public wrappers of both, and the metrics against
 * hand-computed / scikit-learn values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/eval.h"
#include "culeace.h"
#include "testutil.h"

static culeace_ctx *new_ctx(void) {
  culeace_ctx_opts o;
  culeace_ctx_opts_init(&o);
  o.device = CULEACE_DEVICE_CPU;
  culeace_ctx *ctx = NULL;
  culeace_ctx_create(&o, &ctx, NULL, 0);
  return ctx;
}

/* counts (F, k) of used rows per fold and class. */
static void fold_counts(int64_t n, const int32_t *lab, const int32_t *fold,
                        int64_t F, int64_t k, int64_t *counts) {
  memset(counts, 0, (size_t)(F * k) * sizeof *counts);
  for (int64_t i = 0; i < n; i++)
    if (fold[i] >= 0) counts[fold[i] * k + lab[i]]++;
}

static void test_folds_rows(culeace_ctx *ctx) {
  tu_rng rng;
  tu_seed(&rng, 11);
  for (int rep = 0; rep < 20; rep++) {
    int64_t n = tu_randint(&rng, 50, 2000), k = tu_randint(&rng, 2, 6);
    int64_t F = tu_randint(&rng, 2, 10);
    int32_t *lab = malloc((size_t)n * 4), *fold = malloc((size_t)n * 4);
    int32_t *fold2 = malloc((size_t)n * 4);
    int64_t *tot = calloc((size_t)k, 8), *cnt = malloc((size_t)(F * k) * 8);
    for (int64_t i = 0; i < n; i++) {
      /* unbalanced classes, a few unused rows */
      int64_t u = tu_randint(&rng, 0, 3 * k);
      lab[i] = u >= 2 * k ? 0 : (int32_t)(u % k);
      if (tu_randint(&rng, 0, 19) == 0) lab[i] = -1;
    }
    for (int64_t i = 0; i < k; i++) lab[i] = (int32_t)i; /* all classes */
    for (int64_t i = 0; i < n; i++)
      if (lab[i] >= 0) tot[lab[i]]++;
    int64_t min_class = n;
    for (int64_t c = 0; c < k; c++) min_class = tot[c] < min_class ? tot[c] : min_class;
    culeace_status st = culeace__stratified_folds(ctx, n, lab, k, NULL, F,
                                                  (uint64_t)rep, NULL, fold);
    if (min_class < F) {
      CHECK(st == CULEACE_ERR_DEGENERATE, "rep %d: a class with %lld rows "
            "and %lld folds must fail, got %s", rep, (long long)min_class,
            (long long)F, culeace_status_name(st));
      CHECK(strstr(culeace_ctx_last_error(ctx), "use fewer folds") != NULL,
            "message: %s", culeace_ctx_last_error(ctx));
    } else {
      CHECK_OK(ctx, st);
      fold_counts(n, lab, fold, F, k, cnt);
      int bad_balance = 0, bad_unused = 0;
      int64_t smin = n, smax = 0;
      for (int64_t f = 0; f < F; f++) {
        int64_t s = 0;
        for (int64_t c = 0; c < k; c++) {
          int64_t lo = tot[c] / F, hi = (tot[c] + F - 1) / F;
          bad_balance += cnt[f * k + c] < lo || cnt[f * k + c] > hi;
          s += cnt[f * k + c];
        }
        smin = s < smin ? s : smin;
        smax = s > smax ? s : smax;
      }
      for (int64_t i = 0; i < n; i++)
        bad_unused += (lab[i] < 0) != (fold[i] < 0);
      CHECK(bad_balance == 0, "rep %d: %d (fold, class) counts off by more "
            "than one row", rep, bad_balance);
      CHECK(smax - smin <= 1, "rep %d: fold sizes %lld..%lld", rep,
            (long long)smin, (long long)smax);
      CHECK(bad_unused == 0, "rep %d: unused rows must get fold -1", rep);
      /* determinism, and a different seed gives a different split */
      CHECK_OK(ctx, culeace__stratified_folds(ctx, n, lab, k, NULL, F,
                                              (uint64_t)rep, NULL, fold2));
      CHECK(!memcmp(fold, fold2, (size_t)n * 4), "rep %d: not deterministic",
            rep);
      CHECK_OK(ctx, culeace__stratified_folds(ctx, n, lab, k, NULL, F,
                                              (uint64_t)rep + 1000, NULL,
                                              fold2));
      CHECK(memcmp(fold, fold2, (size_t)n * 4) != 0,
            "rep %d: seed has no effect", rep);
    }
    free(lab);
    free(fold);
    free(fold2);
    free(tot);
    free(cnt);
  }
}

static void test_folds_groups(culeace_ctx *ctx) {
  tu_rng rng;
  tu_seed(&rng, 12);
  for (int rep = 0; rep < 20; rep++) {
    int64_t G = tu_randint(&rng, 20, 300), k = tu_randint(&rng, 2, 4);
    int64_t F = tu_randint(&rng, 2, 6);
    int64_t n = 0, cap = G * 40;
    int32_t *lab = malloc((size_t)cap * 4), *fold = malloc((size_t)cap * 4);
    int32_t *fold2 = malloc((size_t)cap * 4);
    int64_t *grp = malloc((size_t)cap * 8), *cnt = malloc((size_t)(F * k) * 8);
    int mixed = rep % 3 == 0; /* some groups with mixed labels */
    for (int64_t g = 0; g < G; g++) {
      int64_t size = tu_randint(&rng, 1, 30);
      int32_t gl = (int32_t)(g % k);
      int64_t id = (int64_t)(tu_next(&rng) >> 20) * 1000 + g; /* sparse ids */
      for (int64_t j = 0; j < size; j++) {
        lab[n] = mixed && tu_randint(&rng, 0, 4) == 0
                     ? (int32_t)tu_randint(&rng, 0, k - 1) : gl;
        if (tu_randint(&rng, 0, 29) == 0) lab[n] = -1;
        grp[n++] = id;
      }
    }
    /* shuffle rows so groups are interleaved */
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = tu_randint(&rng, 0, i);
      int32_t tl = lab[i]; lab[i] = lab[j]; lab[j] = tl;
      int64_t tg = grp[i]; grp[i] = grp[j]; grp[j] = tg;
    }
    culeace_status st = culeace__stratified_folds(ctx, n, lab, k, grp, F,
                                                  (uint64_t)rep, NULL, fold);
    CHECK_OK(ctx, st);
    if (st) goto next;
    /* no group split: all used rows of an id share a fold */
    int split = 0;
    for (int64_t i = 0; i < n && !split; i++)
      for (int64_t j = i + 1; j < n; j++)
        if (grp[j] == grp[i] && lab[i] >= 0 && lab[j] >= 0 &&
            fold[i] != fold[j]) {
          split = 1;
          break;
        }
    CHECK(!split, "rep %d: a group was split across folds", rep);
    fold_counts(n, lab, fold, F, k, cnt);
    int64_t missing = 0;
    for (int64_t x = 0; x < F * k; x++) missing += cnt[x] == 0;
    CHECK(missing == 0, "rep %d: %lld (fold, class) pairs empty", rep,
          (long long)missing);
    /* balance: each fold's size within 40% of n / F (many groups) */
    for (int64_t f = 0; f < F; f++) {
      int64_t s = 0;
      for (int64_t c = 0; c < k; c++) s += cnt[f * k + c];
      double ideal = (double)n / (double)F;
      CHECK(fabs((double)s - ideal) < 0.4 * ideal + 30,
            "rep %d: fold %lld has %lld rows, ideal %.0f", rep, (long long)f,
            (long long)s, ideal);
    }
    CHECK_OK(ctx, culeace__stratified_folds(ctx, n, lab, k, grp, F,
                                            (uint64_t)rep, NULL, fold2));
    CHECK(!memcmp(fold, fold2, (size_t)n * 4), "rep %d: not deterministic",
          rep);
  next:
    free(lab);
    free(fold);
    free(fold2);
    free(grp);
    free(cnt);
  }
}

static void test_fold_errors(culeace_ctx *ctx) {
  enum { N = 40 };
  int32_t lab[N], fold[N];
  int64_t grp[N], vals[3] = {3, 7, 9};
  for (int i = 0; i < N; i++) {
    lab[i] = i % 2;
    grp[i] = i / 4; /* 10 groups of 4 */
  }
  culeace_status st;
  st = culeace__stratified_folds(ctx, N, lab, 2, NULL, 1, 0, NULL, fold);
  CHECK(st == CULEACE_ERR_INVALID_ARG &&
        strstr(culeace_ctx_last_error(ctx), "--folds must be at least 2"),
        "1 fold: %s", culeace_ctx_last_error(ctx));
  st = culeace__stratified_folds(ctx, N, lab, 2, NULL, 41, 0, NULL, fold);
  CHECK(st == CULEACE_ERR_DEGENERATE &&
        strstr(culeace_ctx_last_error(ctx), "more than the 40 used rows"),
        "too many folds for rows: %s", culeace_ctx_last_error(ctx));
  /* groups of 4 with labels alternating: groups are mixed; 11 folds > 10 */
  st = culeace__stratified_folds(ctx, N, lab, 2, grp, 11, 0, NULL, fold);
  CHECK(st == CULEACE_ERR_DEGENERATE &&
        strstr(culeace_ctx_last_error(ctx), "more than the 10 groups"),
        "too many folds for groups: %s", culeace_ctx_last_error(ctx));
  /* one class only */
  int32_t one[N];
  for (int i = 0; i < N; i++) one[i] = i < 5 ? -1 : 1;
  st = culeace__stratified_folds(ctx, N, one, 3, NULL, 5, 0, vals, fold);
  CHECK(st == CULEACE_ERR_DEGENERATE &&
        strstr(culeace_ctx_last_error(ctx), "only one class") &&
        strstr(culeace_ctx_last_error(ctx), "label value 7"),
        "one class: %s", culeace_ctx_last_error(ctx));
  /* a rare class: 3 rows of class 1 (label value 7), 5 folds */
  int32_t rare[N];
  for (int i = 0; i < N; i++) rare[i] = i < 3 ? 1 : (i % 2 ? 0 : 2);
  st = culeace__stratified_folds(ctx, N, rare, 3, NULL, 5, 0, vals, fold);
  CHECK(st == CULEACE_ERR_DEGENERATE &&
        strstr(culeace_ctx_last_error(ctx), "has no rows of class 1 (label "
                                            "value 7); use fewer folds"),
        "rare class: %s", culeace_ctx_last_error(ctx));
  /* group labels: each group one label, 2 groups of class 1, 4 folds */
  int32_t gl[N];
  for (int i = 0; i < N; i++) gl[i] = grp[i] < 2 ? 1 : 0;
  st = culeace__stratified_folds(ctx, N, gl, 2, grp, 4, 0, NULL, fold);
  CHECK(st == CULEACE_ERR_DEGENERATE &&
        strstr(culeace_ctx_last_error(ctx), "no rows of class 1") &&
        strstr(culeace_ctx_last_error(ctx), "whole groups"),
        "group rare class: %s", culeace_ctx_last_error(ctx));
  st = culeace__stratified_folds(ctx, N, gl, 2, grp, 2, 0, NULL, fold);
  CHECK_OK(ctx, st);
}

static void test_control(culeace_ctx *ctx) {
  tu_rng rng;
  tu_seed(&rng, 13);
  enum { N = 3000, K = 4 };
  int32_t *lab = malloc(N * 4), *out = malloc(N * 4), *out2 = malloc(N * 4);
  int64_t *grp = malloc(N * 8);
  for (int i = 0; i < N; i++) {
    grp[i] = tu_randint(&rng, 0, 199) * 7;
    lab[i] = (int32_t)(grp[i] / 7 % K);
    if (i % 10 == 0) lab[i] = (int32_t)tu_randint(&rng, 0, K - 1); /* mixed */
    if (i % 37 == 0) lab[i] = -1;
  }
  /* per row: class counts kept exactly, -1 kept */
  CHECK_OK(ctx, culeace__control_labels(ctx, N, lab, K, NULL, 5, out));
  int64_t a[K] = {0}, b[K] = {0};
  int moved = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    if (lab[i] >= 0) a[lab[i]]++;
    if (out[i] >= 0) b[out[i]]++;
    bad += (lab[i] < 0) != (out[i] < 0);
    moved += lab[i] != out[i];
  }
  for (int c = 0; c < K; c++)
    CHECK(a[c] == b[c], "class %d: %lld rows before, %lld after", c,
          (long long)a[c], (long long)b[c]);
  CHECK(!bad, "unused rows must stay -1");
  CHECK(moved > N / 2, "control labels barely differ (%d moved)", moved);
  CHECK_OK(ctx, culeace__control_labels(ctx, N, lab, K, NULL, 5, out2));
  CHECK(!memcmp(out, out2, N * 4), "control labels not deterministic");
  /* per group: constant within a group; groups per (majority) label kept */
  CHECK_OK(ctx, culeace__control_labels(ctx, N, lab, K, grp, 5, out));
  int64_t gmaj[200][K], newlab[200];
  memset(gmaj, 0, sizeof gmaj);
  for (int g = 0; g < 200; g++) newlab[g] = -2;
  int inconsistent = 0;
  for (int i = 0; i < N; i++) {
    if (lab[i] < 0) continue;
    int64_t g = grp[i] / 7;
    gmaj[g][lab[i]]++;
    if (newlab[g] == -2) newlab[g] = out[i];
    inconsistent += newlab[g] != out[i];
  }
  CHECK(!inconsistent, "%d rows differ from their group's control label",
        inconsistent);
  int64_t ga[K] = {0}, gb[K] = {0};
  for (int g = 0; g < 200; g++) {
    if (newlab[g] == -2) continue;
    int best = 0;
    for (int c = 1; c < K; c++)
      if (gmaj[g][c] > gmaj[g][best]) best = c;
    ga[best]++;
    gb[newlab[g]]++;
  }
  for (int c = 0; c < K; c++)
    CHECK(ga[c] == gb[c], "class %d: %lld groups before, %lld after", c,
          (long long)ga[c], (long long)gb[c]);
  free(lab);
  free(out);
  free(out2);
  free(grp);
}

static void test_metrics(culeace_ctx *ctx) {
  /* 3 classes: argmax [0,1,2,0,1] vs truth [0,1,1,2,1]; values from
   * scikit-learn 1.9 (accuracy_score, balanced_accuracy_score, log_loss) */
  double P[15] = {0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4,
                  1.0, 0.0, 0.0, 0.2, 0.5, 0.3};
  int32_t y[5] = {0, 1, 1, 2, 1};
  CHECK(fabs(culeace__accuracy(5, 3, y, P, NULL) - 0.6) < 1e-15, "accuracy");
  CHECK(fabs(culeace__balanced_accuracy(5, 3, y, P, NULL) -
             0.5555555555555555) < 1e-15, "balanced accuracy");
  double ll = culeace__log_loss(5, 3, y, P, NULL);
  CHECK(fabs(ll - 7.7041183738511965) < 1e-12, "log-loss %.17g", ll);
  double bits = culeace__codelength_bits(5, 3, y, P, NULL);
  CHECK(fabs(bits - 5 * ll / log(2)) < 1e-9, "codelength %.17g", bits);
  /* mask: rows 0, 1, 4 only -> all correct */
  uint8_t m[5] = {1, 1, 0, 0, 1};
  CHECK(culeace__accuracy(5, 3, y, P, m) == 1.0, "masked accuracy");
  CHECK(culeace__balanced_accuracy(5, 3, y, P, m) == 1.0, "masked bal acc");
  uint8_t none[5] = {0};
  CHECK(isnan(culeace__accuracy(5, 3, y, P, none)), "no rows -> NaN");
  /* argmax ties: the lower class */
  double T[2] = {0.5, 0.5};
  int32_t t0 = 0, t1 = 1;
  CHECK(culeace__accuracy(1, 2, &t0, T, NULL) == 1.0 &&
        culeace__accuracy(1, 2, &t1, T, NULL) == 0.0, "argmax tie");
  /* AUROC with ties: sklearn roc_auc_score = 2/3 */
  int32_t yb[6] = {0, 0, 1, 1, 0, 1};
  double s[12] = {0.9, 0.1, 0.6, 0.4, 0.65, 0.35, 0.2, 0.8,
                  0.6, 0.4, 0.6, 0.4}; /* (n, 2): positive col 1 */
  culeace_status st;
  double auc = culeace__auroc(ctx, 6, yb, s + 1, 2, NULL, &st);
  CHECK(st == CULEACE_OK && fabs(auc - 2.0 / 3.0) < 1e-15, "AUROC %.17g", auc);
  /* all tied -> 0.5; perfect -> 1; reversed -> 0; one class -> NaN */
  double flat[6] = {1, 1, 1, 1, 1, 1};
  CHECK(fabs(culeace__auroc(ctx, 6, yb, flat, 1, NULL, NULL) - 0.5) < 1e-15,
        "tied AUROC");
  double perfect[6] = {0, 0, 1, 1, 0, 1}, rev[6] = {1, 1, 0, 0, 1, 0};
  CHECK(culeace__auroc(ctx, 6, yb, perfect, 1, NULL, NULL) == 1.0, "AUROC 1");
  CHECK(culeace__auroc(ctx, 6, yb, rev, 1, NULL, NULL) == 0.0, "AUROC 0");
  uint8_t negs[6] = {1, 1, 0, 0, 1, 0};
  CHECK(isnan(culeace__auroc(ctx, 6, yb, perfect, 1, negs, NULL)),
        "AUROC one class -> NaN");
  /* majority baseline: train rows 0..5 hold class 2 thrice, class 1 twice */
  int32_t ym[10] = {2, 1, 2, 1, 2, 0, 2, 2, 1, 0};
  uint8_t tr[10] = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  uint8_t te[10] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
  int32_t maj;
  double mb = culeace__majority_accuracy(10, 3, ym, tr, te, &maj);
  CHECK(maj == 2 && fabs(mb - 0.5) < 1e-15, "majority %d acc %g", maj, mb);
  uint8_t tr2[10] = {0, 1, 0, 1, 0, 1, 0, 0, 0, 0}; /* tie 1:2 vs 0:1 */
  mb = culeace__majority_accuracy(10, 3, ym, tr2, te, &maj);
  CHECK(maj == 1 && fabs(mb - 0.25) < 1e-15, "majority tie %d acc %g", maj,
        mb);
  /* clipping: p = 0 costs -ln(eps), p = 1 costs -ln(1 - eps) */
  double pz[2] = {1.0, 0.0};
  CHECK(fabs(culeace__log_loss(1, 2, &t1, pz, NULL) -
             -log(CULEACE_LOGLOSS_EPS)) < 1e-12, "clip at eps");
  CHECK(fabs(culeace__log_loss(1, 2, &t0, pz, NULL) -
             -log(1 - CULEACE_LOGLOSS_EPS)) < 1e-20, "clip at 1 - eps");
}

static void test_mdl_bounds(void) {
  int64_t e[CULEACE_MDL_N_BOUNDS];
  int m = culeace__mdl_bounds(10000, e);
  int64_t want[11] = {10, 20, 40, 80, 160, 320, 625, 1250, 2500, 5000, 10000};
  CHECK(m == 11, "10000 rows: %d bounds", m);
  int ok = 1;
  for (int j = 0; j < m && j < 11; j++) ok &= e[j] == want[j];
  CHECK(ok, "bounds of 10000 rows");
  m = culeace__mdl_bounds(500, e); /* 0.5 -> 1, 1 -> dup, 2, 4, 8, 16, 31 ... */
  int inc = 1;
  for (int j = 1; j < m; j++) inc &= e[j] > e[j - 1];
  CHECK(e[0] == 1 && e[m - 1] == 500 && inc && m == 10,
        "500 rows: %d bounds, first %lld", m, (long long)e[0]);
}

static void test_rng(void) {
  culeace__rng a, b;
  culeace__rng_seed(&a, 42);
  culeace__rng_seed(&b, 42);
  int same = 1;
  int64_t hist[7] = {0};
  for (int i = 0; i < 70000; i++) {
    uint64_t x = culeace__rng_below(&a, 7);
    same &= x == culeace__rng_below(&b, 7);
    hist[x]++;
  }
  CHECK(same, "rng not deterministic");
  for (int j = 0; j < 7; j++)
    CHECK(hist[j] > 9500 && hist[j] < 10500, "rng_below(7): bin %d = %lld",
          j, (long long)hist[j]);
}

/* The public wrappers (culeace.h) give what the CLI's internal calls give. */
static void test_public_wrappers(culeace_ctx *ctx) {
  enum { N = 300, K = 3, F = 4 };
  int32_t lab[N], a[N], b[N];
  int64_t grp[N];
  for (int i = 0; i < N; i++) {
    grp[i] = (i * 37) % 60;
    lab[i] = i % 29 == 0 ? -1 : (int32_t)((grp[i] + i / 100) % K);
  }
  for (int g = 0; g < 2; g++) {
    const int64_t *gr = g ? grp : NULL;
    CHECK_OK(ctx, culeace_stratified_folds(ctx, N, lab, K, gr, F, 9, a));
    CHECK_OK(ctx,
             culeace__stratified_folds(ctx, N, lab, K, gr, F, 9, NULL, b));
    CHECK(!memcmp(a, b, sizeof a), "public folds differ (groups %d)", g);
    CHECK_OK(ctx, culeace_control_labels(ctx, N, lab, K, gr, 9, a));
    CHECK_OK(ctx, culeace__control_labels(ctx, N, lab, K, gr, 9, b));
    CHECK(!memcmp(a, b, sizeof a), "public control labels differ (%d)", g);
  }
  CHECK(culeace_stratified_folds(NULL, N, lab, K, NULL, F, 0, a) ==
            CULEACE_ERR_INVALID_ARG, "NULL context accepted");
  CHECK(culeace_stratified_folds(ctx, N, lab, K, NULL, 1, 0, a) ==
            CULEACE_ERR_INVALID_ARG, "1 fold accepted");
}

/* AUROC against its definition, P(score of a positive > score of a
 * negative) + P(tie) / 2 over every pair, on random scores with many ties,
 * both signs, signed zeros and infinities, scores a few ulps apart, and a
 * mask. */
static void test_auroc_pairs(culeace_ctx *ctx) {
  tu_rng r;
  tu_seed(&r, 7);
  const double levels[] = {-INFINITY, -3.5, -1e-300, -0.0, 0.0, 1e-300,
                           0.25, 0.5, 0.75, 1.0, 1e300, INFINITY};
  for (int trial = 0; trial < 40; trial++) {
    int64_t n = tu_randint(&r, 2, 3000);
    int32_t *y = malloc((size_t)n * sizeof *y);
    double *sc = malloc((size_t)n * sizeof *sc);
    uint8_t *mask = malloc((size_t)n);
    int use_mask = trial % 2;
    for (int64_t i = 0; i < n; i++) {
      y[i] = (int32_t)tu_randint(&r, 0, 1);
      if (trial % 8 == 3) y[i] = i % 7 == 0 ? -1 : y[i]; /* unused rows */
      if (trial % 3 == 0) /* spread over magnitudes */
        sc[i] = tu_normal(&r) * pow(10.0, tu_randint(&r, -5, 5));
      else if (trial % 3 == 1) /* few values, special ones */
        sc[i] = levels[tu_randint(&r, 0, 11)];
      else /* a few ulps apart: only the low bytes differ */
        sc[i] = 0.5 + ldexp((double)tu_randint(&r, 0, 600), -53);
      mask[i] = tu_uniform(&r) < 0.7;
    }
    double gt = 0, eq = 0;
    int64_t np = 0, nn = 0;
    for (int64_t i = 0; i < n; i++) {
      if (y[i] < 0 || (use_mask && !mask[i])) continue;
      if (y[i] == 1) np++;
      else nn++;
      if (y[i] != 1) continue;
      for (int64_t j = 0; j < n; j++) {
        if (y[j] != 0 || (use_mask && !mask[j])) continue;
        gt += sc[i] > sc[j];
        eq += sc[i] == sc[j];
      }
    }
    culeace_status st;
    double got = culeace__auroc(ctx, n, y, sc, 1, use_mask ? mask : NULL,
                                &st);
    if (np == 0 || nn == 0) {
      CHECK(st == CULEACE_OK && isnan(got), "AUROC one class, trial %d",
            trial);
    } else {
      double want = (gt + 0.5 * eq) / ((double)np * (double)nn);
      CHECK(st == CULEACE_OK && fabs(got - want) < 1e-12,
            "AUROC trial %d (n %lld): %.17g, pairs say %.17g", trial,
            (long long)n, got, want);
    }
    free(y);
    free(sc);
    free(mask);
  }
}

int main(void) {
  culeace_ctx *ctx = new_ctx();
  CHECK(ctx != NULL, "context");
  if (!ctx) return tu_finish("test_eval");
  test_rng();
  test_folds_rows(ctx);
  test_folds_groups(ctx);
  test_fold_errors(ctx);
  test_control(ctx);
  test_public_wrappers(ctx);
  test_metrics(ctx);
  test_auroc_pairs(ctx);
  test_mdl_bounds();
  culeace_ctx_free(ctx);
  return tu_finish("test_eval");
}
