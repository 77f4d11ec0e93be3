/* metrics.c — classification metrics of probe predictions over masked rows:
 * accuracy, balanced accuracy, AUROC (ranks, ties averaged), log-loss and
 * codelength (scikit-learn's clipping), the majority-class baseline, and the
 * block boundaries of the MDL online code. See eval.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/eval.h"

const double culeace__mdl_percent[CULEACE_MDL_N_BOUNDS] = {
    0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50, 100};

static int takes_part(const int32_t *labels, const uint8_t *mask, int64_t i) {
  return labels[i] >= 0 && (!mask || mask[i]);
}

static int32_t argmax_row(const double *p, int64_t k) {
  int64_t best = 0;
  for (int64_t c = 1; c < k; c++)
    if (p[c] > p[best]) best = c;
  return (int32_t)best;
}

double culeace__accuracy(int64_t n, int64_t k, const int32_t *labels,
                         const double *proba, const uint8_t *mask) {
  int64_t m = 0, ok = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!takes_part(labels, mask, i)) continue;
    m++;
    ok += argmax_row(proba + i * k, k) == labels[i];
  }
  return m ? (double)ok / (double)m : NAN;
}

double culeace__balanced_accuracy(int64_t n, int64_t k, const int32_t *labels,
                                  const double *proba, const uint8_t *mask) {
  int64_t *tot = calloc((size_t)k * 2, sizeof *tot);
  if (!tot) return NAN;
  int64_t *hit = tot + k;
  for (int64_t i = 0; i < n; i++) {
    if (!takes_part(labels, mask, i) || labels[i] >= k) continue;
    tot[labels[i]]++;
    hit[labels[i]] += argmax_row(proba + i * k, k) == labels[i];
  }
  double s = 0;
  int64_t present = 0;
  for (int64_t c = 0; c < k; c++)
    if (tot[c]) {
      s += (double)hit[c] / (double)tot[c];
      present++;
    }
  free(tot);
  return present ? s / (double)present : NAN;
}

typedef struct {
  uint64_t key; /* the score, ordered as an unsigned integer */
  int32_t pos;  /* a positive row */
} score_lab;

/* An unsigned integer that orders as the double s does (-0 as +0, every
 * NaN after +Inf, as one value). */
static uint64_t order_key(double s) {
  if (isnan(s)) return UINT64_MAX;
  if (s == 0) s = 0.0;
  uint64_t u;
  memcpy(&u, &s, sizeof u);
  return u >> 63 ? ~u : u | (UINT64_C(1) << 63);
}

/* Sorts v (m) by key: least significant byte first, one stable counting
 * pass per byte in which the keys differ; tmp (m) is scratch. Returns the
 * array that holds the result. */
static score_lab *radix_sort(score_lab *v, score_lab *tmp, int64_t m) {
  for (int shift = 0; shift < 64; shift += 8) {
    int64_t count[257] = {0};
    for (int64_t i = 0; i < m; i++) count[((v[i].key >> shift) & 255) + 1]++;
    if (count[((v[0].key >> shift) & 255) + 1] == m) continue; /* one byte */
    for (int b = 0; b < 256; b++) count[b + 1] += count[b];
    for (int64_t i = 0; i < m; i++)
      tmp[count[(v[i].key >> shift) & 255]++] = v[i];
    score_lab *t = v;
    v = tmp;
    tmp = t;
  }
  return v;
}

double culeace__auroc(culeace_ctx *ctx, int64_t n, const int32_t *labels,
                      const double *score, int64_t ldscore,
                      const uint8_t *mask, culeace_status *status) {
  if (status) *status = CULEACE_OK;
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++) m += takes_part(labels, mask, i);
  score_lab *buf = culeace__alloc(ctx, (size_t)(m ? m : 1) * 2, sizeof *buf,
                                  "AUROC ranks");
  if (!buf) {
    if (status) *status = CULEACE_ERR_OUT_OF_MEMORY;
    return NAN;
  }
  m = 0;
  for (int64_t i = 0; i < n; i++)
    if (takes_part(labels, mask, i))
      buf[m++] = (score_lab){order_key(score[i * ldscore]), labels[i] == 1};
  score_lab *v = m ? radix_sort(buf, buf + m, m) : buf;
  /* rank sum of positives, ties sharing their average rank (1-based) */
  double rank_sum = 0;
  int64_t n_pos = 0;
  for (int64_t a = 0; a < m;) {
    int64_t b = a, pos = 0;
    while (b < m && v[b].key == v[a].key) pos += v[b++].pos;
    rank_sum += (double)pos * 0.5 * (double)(a + 1 + b); /* mean of a+1..b */
    n_pos += pos;
    a = b;
  }
  free(buf);
  int64_t n_neg = m - n_pos;
  if (n_pos == 0 || n_neg == 0) return NAN;
  return (rank_sum - 0.5 * (double)n_pos * (double)(n_pos + 1)) /
         ((double)n_pos * (double)n_neg);
}

static double clip_p(double p) {
  const double eps = CULEACE_LOGLOSS_EPS;
  if (!(p >= eps)) return eps; /* also NaN */
  return p > 1 - eps ? 1 - eps : p;
}

double culeace__log_loss(int64_t n, int64_t k, const int32_t *labels,
                         const double *proba, const uint8_t *mask) {
  double s = 0;
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!takes_part(labels, mask, i) || labels[i] >= k) continue;
    s -= log(clip_p(proba[i * k + labels[i]]));
    m++;
  }
  return m ? s / (double)m : NAN;
}

double culeace__codelength_bits(int64_t n, int64_t k, const int32_t *labels,
                                const double *proba, const uint8_t *mask) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!takes_part(labels, mask, i) || labels[i] >= k) continue;
    s -= log2(clip_p(proba[i * k + labels[i]]));
  }
  return s;
}

double culeace__majority_accuracy(int64_t n, int64_t k, const int32_t *labels,
                                  const uint8_t *train, const uint8_t *test,
                                  int32_t *majority_class) {
  int64_t *cnt = calloc((size_t)k, sizeof *cnt);
  if (majority_class) *majority_class = -1;
  if (!cnt) return NAN;
  int64_t seen = 0;
  for (int64_t i = 0; i < n; i++)
    if (takes_part(labels, train, i) && labels[i] < k) {
      cnt[labels[i]]++;
      seen++;
    }
  int32_t maj = 0;
  for (int64_t c = 1; c < k; c++)
    if (cnt[c] > cnt[maj]) maj = (int32_t)c;
  free(cnt);
  if (!seen) return NAN;
  if (majority_class) *majority_class = maj;
  int64_t m = 0, ok = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!takes_part(labels, test, i)) continue;
    m++;
    ok += labels[i] == maj;
  }
  return m ? (double)ok / (double)m : NAN;
}

int culeace__mdl_bounds(int64_t n, int64_t *ends) {
  int cnt = 0;
  for (int j = 0; j < CULEACE_MDL_N_BOUNDS; j++) {
    int64_t e = j == CULEACE_MDL_N_BOUNDS - 1
                    ? n
                    : (int64_t)floor((double)n * culeace__mdl_percent[j] / 100);
    if (e < 1) e = 1;
    if (e > n) e = n;
    if (cnt > 0 && e <= ends[cnt - 1]) continue;
    ends[cnt++] = e;
  }
  return cnt;
}
