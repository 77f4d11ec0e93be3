/* folds.c — cross-validation folds and control-task labels for probes:
 * a seeded generator, stratified k-fold (rows dealt per class), stratified
 * group k-fold (whole groups, greedy balance of class shares, as
 * scikit-learn's StratifiedGroupKFold), and Hewitt & Liang control labels
 * (labels permuted per row or per group). See eval.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/eval.h"

/* ---- generator -------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void culeace__rng_seed(culeace__rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t culeace__rng_next(culeace__rng *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

uint64_t culeace__rng_below(culeace__rng *r, uint64_t bound) {
  if (bound <= 1) return 0;
  uint64_t limit = -bound % bound; /* 2^64 mod bound */
  for (;;) {
    uint64_t v = culeace__rng_next(r);
    if (v >= limit) return v % bound;
  }
}

/* Fisher-Yates shuffle of v (n). */
static void shuffle_i64(culeace__rng *r, int64_t *v, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)culeace__rng_below(r, (uint64_t)i + 1);
    int64_t t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

static void shuffle_i32(culeace__rng *r, int32_t *v, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)culeace__rng_below(r, (uint64_t)i + 1);
    int32_t t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

/* ---- dense group indices ------------------------------------------------------ */
typedef struct {
  int64_t id, row;
} id_row;

static int cmp_id_row(const void *a, const void *b) {
  const id_row *x = a, *y = b;
  if (x->id != y->id) return x->id < y->id ? -1 : 1;
  return x->row < y->row ? -1 : x->row > y->row;
}

/* gidx (n): dense index 0..G-1 of the group of each used row (ascending
 * group id), -1 for unused rows. Returns G or -1 (out of memory). */
static int64_t dense_groups(culeace_ctx *ctx, int64_t n, const int32_t *labels,
                            const int64_t *groups, int64_t *gidx) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++) m += labels[i] >= 0;
  id_row *v = culeace__alloc(ctx, (size_t)(m ? m : 1), sizeof *v, "group ids");
  if (!v) return -1;
  m = 0;
  for (int64_t i = 0; i < n; i++) {
    gidx[i] = -1;
    if (labels[i] >= 0) v[m++] = (id_row){groups[i], i};
  }
  qsort(v, (size_t)m, sizeof *v, cmp_id_row);
  int64_t G = 0;
  for (int64_t j = 0; j < m; j++) {
    if (j > 0 && v[j].id != v[j - 1].id) G++;
    gidx[v[j].row] = G;
  }
  free(v);
  return m ? G + 1 : 0;
}

/* ---- checks --------------------------------------------------------------------- */
static void class_label(const int64_t *class_values, int64_t c, char *buf,
                        size_t len) {
  if (class_values)
    snprintf(buf, len, "class %lld (label value %lld)", (long long)c,
             (long long)class_values[c]);
  else
    snprintf(buf, len, "class %lld", (long long)c);
}

/* Every fold holds every class. counts: (n_folds, k). */
static culeace_status check_fold_classes(culeace_ctx *ctx,
                                         const int64_t *counts,
                                         int64_t n_folds, int64_t k,
                                         const int64_t *class_values,
                                         int grouped) {
  for (int64_t f = 0; f < n_folds; f++)
    for (int64_t c = 0; c < k; c++)
      if (counts[f * k + c] == 0) {
        char cl[96];
        class_label(class_values, c, cl, sizeof cl);
        return culeace__error(
            ctx, CULEACE_ERR_DEGENERATE,
            "fold %lld of %lld has no rows of %s%s; use fewer folds",
            (long long)f, (long long)n_folds, cl,
            grouped ? " (whole groups go to one fold)" : "");
      }
  return CULEACE_OK;
}

/* ---- folds without groups --------------------------------------------------- */
static culeace_status folds_rows(culeace_ctx *ctx, int64_t n,
                                 const int32_t *labels, int64_t k,
                                 int64_t n_folds, culeace__rng *rng,
                                 int32_t *fold_out, int64_t *counts) {
  int64_t *rows = culeace__alloc(ctx, (size_t)(n ? n : 1), sizeof *rows,
                                 "fold rows");
  int64_t *start = culeace__alloc(ctx, (size_t)k + 1, sizeof *start,
                                  "class offsets");
  if (!rows || !start) {
    free(rows);
    free(start);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  /* rows grouped by class (counting sort), each class shuffled */
  memset(start, 0, ((size_t)k + 1) * sizeof *start);
  for (int64_t i = 0; i < n; i++)
    if (labels[i] >= 0) start[labels[i] + 1]++;
  for (int64_t c = 0; c < k; c++) start[c + 1] += start[c];
  int64_t *pos = counts; /* borrow counts (>= k entries) as cursors */
  for (int64_t c = 0; c < k; c++) pos[c] = start[c];
  for (int64_t i = 0; i < n; i++) {
    fold_out[i] = -1;
    if (labels[i] >= 0) rows[pos[labels[i]]++] = i;
  }
  memset(counts, 0, (size_t)(n_folds * k) * sizeof *counts);
  int64_t turn = 0;
  for (int64_t c = 0; c < k; c++) {
    shuffle_i64(rng, rows + start[c], start[c + 1] - start[c]);
    for (int64_t j = start[c]; j < start[c + 1]; j++) {
      int32_t f = (int32_t)(turn++ % n_folds);
      fold_out[rows[j]] = f;
      counts[f * k + c]++;
    }
  }
  free(rows);
  free(start);
  return CULEACE_OK;
}

/* ---- folds with groups ------------------------------------------------------- */
typedef struct {
  int64_t g, size, order;
} grp_key;

static int cmp_grp(const void *a, const void *b) {
  const grp_key *x = a, *y = b;
  if (x->size != y->size) return x->size > y->size ? -1 : 1; /* desc */
  return x->order < y->order ? -1 : x->order > y->order;      /* stable */
}

static culeace_status folds_groups(culeace_ctx *ctx, int64_t n,
                                   const int32_t *labels, int64_t k,
                                   const int64_t *gidx, int64_t G,
                                   int64_t n_folds, culeace__rng *rng,
                                   const int64_t *class_total,
                                   int32_t *fold_out, int64_t *counts) {
  culeace_status st = CULEACE_OK;
  size_t gk;
  if (!culeace__mul_size((size_t)G, (size_t)k, &gk))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "too many groups x classes");
  int64_t *gcount = culeace__alloc(ctx, gk, sizeof *gcount, "group counts");
  int64_t *perm = culeace__alloc(ctx, (size_t)G, sizeof *perm, "groups");
  grp_key *keys = culeace__alloc(ctx, (size_t)G, sizeof *keys, "groups");
  int32_t *gfold = culeace__alloc(ctx, (size_t)G, sizeof *gfold, "groups");
  double *share = culeace__alloc(ctx, (size_t)(n_folds * k), sizeof *share,
                                 "fold shares");
  double *sum = culeace__alloc(ctx, (size_t)k, sizeof *sum, "class sums");
  double *sumsq = culeace__alloc(ctx, (size_t)k, sizeof *sumsq, "class sums");
  int64_t *fold_rows = culeace__alloc(ctx, (size_t)n_folds, sizeof *fold_rows,
                                      "fold sizes");
  if (!gcount || !perm || !keys || !gfold || !share || !sum || !sumsq ||
      !fold_rows) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  memset(gcount, 0, gk * sizeof *gcount);
  for (int64_t i = 0; i < n; i++)
    if (labels[i] >= 0) gcount[gidx[i] * k + labels[i]]++;
  /* seeded random order, then stable sort by size (descending) */
  for (int64_t g = 0; g < G; g++) perm[g] = g;
  shuffle_i64(rng, perm, G);
  for (int64_t j = 0; j < G; j++) {
    int64_t g = perm[j], s = 0;
    for (int64_t c = 0; c < k; c++) s += gcount[g * k + c];
    keys[j] = (grp_key){g, s, j};
  }
  qsort(keys, (size_t)G, sizeof *keys, cmp_grp);
  /* greedy: the fold minimising mean_c std_f(share[f][c]) after adding the
   * group; per class, sum and sum of squares over folds make each candidate
   * O(k). */
  memset(share, 0, (size_t)(n_folds * k) * sizeof *share);
  memset(sum, 0, (size_t)k * sizeof *sum);
  memset(sumsq, 0, (size_t)k * sizeof *sumsq);
  memset(fold_rows, 0, (size_t)n_folds * sizeof *fold_rows);
  double F = (double)n_folds;
  for (int64_t j = 0; j < G; j++) {
    int64_t g = keys[j].g, best = -1;
    double best_eval = 0;
    for (int64_t f = 0; f < n_folds; f++) {
      double ev = 0;
      for (int64_t c = 0; c < k; c++) {
        double add = (double)gcount[g * k + c] / (double)class_total[c];
        double old = share[f * k + c], nw = old + add;
        double s = sum[c] + add, q = sumsq[c] - old * old + nw * nw;
        double var = q / F - (s / F) * (s / F);
        ev += var > 0 ? sqrt(var) : 0;
      }
      ev /= (double)k;
      if (best < 0 || ev < best_eval - 1e-12 ||
          (ev <= best_eval + 1e-12 && fold_rows[f] < fold_rows[best])) {
        best = f;
        best_eval = ev;
      }
    }
    gfold[g] = (int32_t)best;
    fold_rows[best] += keys[j].size;
    for (int64_t c = 0; c < k; c++) {
      double add = (double)gcount[g * k + c] / (double)class_total[c];
      double old = share[best * k + c], nw = old + add;
      share[best * k + c] = nw;
      sum[c] += add;
      sumsq[c] += nw * nw - old * old;
    }
  }
  memset(counts, 0, (size_t)(n_folds * k) * sizeof *counts);
  for (int64_t i = 0; i < n; i++) {
    fold_out[i] = -1;
    if (labels[i] >= 0) {
      fold_out[i] = gfold[gidx[i]];
      counts[fold_out[i] * k + labels[i]]++;
    }
  }
cleanup:
  free(gcount);
  free(perm);
  free(keys);
  free(gfold);
  free(share);
  free(sum);
  free(sumsq);
  free(fold_rows);
  return st;
}

/* ---- public (internal) entry points ---------------------------------------- */
culeace_status culeace__stratified_folds(culeace_ctx *ctx, int64_t n,
                                         const int32_t *labels, int64_t k,
                                         const int64_t *groups,
                                         int64_t n_folds, uint64_t seed,
                                         const int64_t *class_values,
                                         int32_t *fold_out) {
  if (!labels || !fold_out || n < 0 || k < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "stratified folds: bad arguments");
  if (n_folds < 2)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "--folds must be at least 2 (got %lld)",
                          (long long)n_folds);
  if (n_folds > INT32_MAX)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "--folds %lld is too large", (long long)n_folds);
  culeace_status st = CULEACE_OK;
  int64_t *class_total = culeace__alloc(ctx, (size_t)k, sizeof *class_total,
                                        "class counts");
  int64_t *counts = NULL, *gidx = NULL;
  if (!class_total) return CULEACE_ERR_OUT_OF_MEMORY;
  memset(class_total, 0, (size_t)k * sizeof *class_total);
  int64_t used = 0;
  for (int64_t i = 0; i < n; i++) {
    if (labels[i] < -1 || labels[i] >= k) {
      st = culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "stratified folds: row %lld has class %d outside "
                          "0..%lld", (long long)i, (int)labels[i],
                          (long long)(k - 1));
      goto cleanup;
    }
    if (labels[i] >= 0) {
      class_total[labels[i]]++;
      used++;
    }
  }
  int64_t present = 0, only = -1;
  for (int64_t c = 0; c < k; c++)
    if (class_total[c]) present++, only = c;
  if (present < 2) {
    char cl[96] = "no class";
    if (only >= 0) class_label(class_values, only, cl, sizeof cl);
    st = culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                        "the labels have only one class (%s among %lld used "
                        "rows); a probe needs at least two", cl,
                        (long long)used);
    goto cleanup;
  }
  if (n_folds > used) {
    st = culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                        "--folds %lld is more than the %lld used rows",
                        (long long)n_folds, (long long)used);
    goto cleanup;
  }
  counts = culeace__alloc(ctx, (size_t)(n_folds * (k > 1 ? k : 1)),
                          sizeof *counts, "fold class counts");
  if (!counts) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  culeace__rng rng;
  culeace__rng_seed(&rng, seed);
  if (!groups) {
    CULEACE_TRY(folds_rows(ctx, n, labels, k, n_folds, &rng, fold_out,
                           counts));
  } else {
    gidx = culeace__alloc(ctx, (size_t)(n ? n : 1), sizeof *gidx, "groups");
    if (!gidx) {
      st = CULEACE_ERR_OUT_OF_MEMORY;
      goto cleanup;
    }
    int64_t G = dense_groups(ctx, n, labels, groups, gidx);
    if (G < 0) {
      st = CULEACE_ERR_OUT_OF_MEMORY;
      goto cleanup;
    }
    if (n_folds > G) {
      st = culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "--folds %lld is more than the %lld groups (whole "
                          "groups go to one fold); use at most %lld folds",
                          (long long)n_folds, (long long)G, (long long)G);
      goto cleanup;
    }
    CULEACE_TRY(folds_groups(ctx, n, labels, k, gidx, G, n_folds, &rng,
                             class_total, fold_out, counts));
  }
  st = check_fold_classes(ctx, counts, n_folds, k, class_values,
                          groups != NULL);
cleanup:
  free(class_total);
  free(counts);
  free(gidx);
  return st;
}

culeace_status culeace__control_labels(culeace_ctx *ctx, int64_t n,
                                       const int32_t *labels, int64_t k,
                                       const int64_t *groups, uint64_t seed,
                                       int32_t *out) {
  if (!labels || !out || n < 0 || k < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "control labels: bad arguments");
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < -1 || labels[i] >= k)
      return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                            "control labels: row %lld has class %d outside "
                            "0..%lld", (long long)i, (int)labels[i],
                            (long long)(k - 1));
  culeace__rng rng;
  culeace__rng_seed(&rng, seed ^ 0xC0A7B01DC0A7B01Dull);
  culeace_status st = CULEACE_OK;
  if (!groups) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += labels[i] >= 0;
    int32_t *v = culeace__alloc(ctx, (size_t)(m ? m : 1), sizeof *v,
                                "control labels");
    if (!v) return CULEACE_ERR_OUT_OF_MEMORY;
    m = 0;
    for (int64_t i = 0; i < n; i++)
      if (labels[i] >= 0) v[m++] = labels[i];
    shuffle_i32(&rng, v, m);
    m = 0;
    for (int64_t i = 0; i < n; i++) out[i] = labels[i] >= 0 ? v[m++] : -1;
    free(v);
    return CULEACE_OK;
  }
  int64_t *gidx = culeace__alloc(ctx, (size_t)(n ? n : 1), sizeof *gidx,
                                 "groups");
  int64_t *gcount = NULL;
  int32_t *glab = NULL;
  if (!gidx) return CULEACE_ERR_OUT_OF_MEMORY;
  int64_t G = dense_groups(ctx, n, labels, groups, gidx);
  size_t gk;
  if (G < 0 || !culeace__mul_size((size_t)(G ? G : 1), (size_t)k, &gk)) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  gcount = culeace__alloc(ctx, gk, sizeof *gcount, "group counts");
  glab = culeace__alloc(ctx, (size_t)(G ? G : 1), sizeof *glab, "groups");
  if (!gcount || !glab) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  memset(gcount, 0, gk * sizeof *gcount);
  for (int64_t i = 0; i < n; i++)
    if (labels[i] >= 0) gcount[gidx[i] * k + labels[i]]++;
  for (int64_t g = 0; g < G; g++) {
    /* majority label; ties drawn at random, so that groups holding one row
     * of each class (paired prompts) do not all collapse to class 0 */
    int64_t best = 0, ties = 1;
    for (int64_t c = 1; c < k; c++) {
      if (gcount[g * k + c] > gcount[g * k + best]) {
        best = c;
        ties = 1;
      } else if (gcount[g * k + c] == gcount[g * k + best] &&
                 culeace__rng_below(&rng, (uint64_t)++ties) == 0) {
        best = c; /* reservoir choice among the tied classes */
      }
    }
    glab[g] = (int32_t)best;
  }
  shuffle_i32(&rng, glab, G);
  for (int64_t i = 0; i < n; i++) out[i] = labels[i] >= 0 ? glab[gidx[i]] : -1;
cleanup:
  free(gidx);
  free(gcount);
  free(glab);
  return st;
}
