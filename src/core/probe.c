/* probe.c — the probe object (parameters, prediction, rebuild from saved
 * parameters) and the entry point that sets up every problem of a batch
 * (label checks, class weights, standardisation) before handing the batch
 * to the logistic or difference-in-means fitter. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "core/probe.h"

void culeace_probe_opts_init(culeace_probe_opts *o) {
  memset(o, 0, sizeof *o);
  o->kind = CULEACE_PROBE_LOGISTIC;
  o->C = 1.0;
  o->tol = 1e-4;
  o->max_iter = 100;
  o->history = 10;
  o->standardize = 1;
  o->balanced = 0;
}

culeace_status culeace__probe_alloc(culeace_ctx *ctx, culeace_probe_kind kind,
                                    int64_t d, int64_t k, int64_t m,
                                    culeace_probe **out) {
  *out = NULL;
  culeace_probe *p = calloc(1, sizeof *p);
  if (!p)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating a probe");
  p->coef = culeace__alloc(ctx, (size_t)m * (size_t)d, 8, "probe weights");
  p->intercept = culeace__alloc(ctx, (size_t)m, 8, "probe intercepts");
  p->mean = culeace__alloc(ctx, (size_t)d, 8, "probe standardisation");
  p->scale = culeace__alloc(ctx, (size_t)d, 8, "probe standardisation");
  if (!p->coef || !p->intercept || !p->mean || !p->scale) {
    culeace_probe_free(p);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  memset(p->coef, 0, (size_t)m * (size_t)d * 8);
  memset(p->intercept, 0, (size_t)m * 8);
  for (int64_t j = 0; j < d; j++) {
    p->mean[j] = 0;
    p->scale[j] = 1;
  }
  p->info.kind = kind;
  p->info.d = d;
  p->info.n_classes = k;
  p->info.n_outputs = m;
  *out = p;
  return CULEACE_OK;
}

void culeace_probe_free(culeace_probe *p) {
  if (!p) return;
  free(p->coef);
  free(p->intercept);
  free(p->mean);
  free(p->scale);
  free(p);
}

culeace_status culeace_probe_info_get(const culeace_probe *p,
                                      culeace_probe_info *info) {
  if (!p || !info) return CULEACE_ERR_INVALID_ARG;
  *info = p->info;
  return CULEACE_OK;
}

culeace_status culeace_probe_params(const culeace_probe *p, double *coef,
                                    double *intercept, double *mean,
                                    double *scale) {
  if (!p) return CULEACE_ERR_INVALID_ARG;
  size_t m = (size_t)p->info.n_outputs, d = (size_t)p->info.d;
  if (coef) memcpy(coef, p->coef, m * d * 8);
  if (intercept) memcpy(intercept, p->intercept, m * 8);
  if (mean) memcpy(mean, p->mean, d * 8);
  if (scale) memcpy(scale, p->scale, d * 8);
  return CULEACE_OK;
}

culeace_status culeace_probe_from_params(culeace_ctx *ctx,
                                         culeace_probe_kind kind, int64_t d,
                                         int64_t k, const double *coef,
                                         const double *intercept,
                                         const double *mean,
                                         const double *scale,
                                         culeace_probe **out) {
  if (!ctx || !out || !coef || !intercept) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  if (d < 1 || k < 2)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe needs d >= 1 and k >= 2 classes (got d = "
                          "%lld, k = %lld)", (long long)d, (long long)k);
  if (kind != CULEACE_PROBE_LOGISTIC && kind != CULEACE_PROBE_DIFFMEANS)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "unknown probe kind %d",
                          (int)kind);
  int64_t m = k == 2 ? 1 : k;
  culeace_probe *p;
  culeace_status st = culeace__probe_alloc(ctx, kind, d, k, m, &p);
  if (st) return st;
  for (int64_t i = 0; i < m * d; i++) p->coef[i] = coef[i];
  for (int64_t o = 0; o < m; o++) p->intercept[o] = intercept[o];
  for (int64_t j = 0; j < d; j++) {
    if (mean) p->mean[j] = mean[j];
    if (scale) p->scale[j] = scale[j];
  }
  int finite = 1;
  for (int64_t i = 0; i < m * d; i++) finite &= isfinite(p->coef[i]) != 0;
  for (int64_t o = 0; o < m; o++) finite &= isfinite(p->intercept[o]) != 0;
  for (int64_t j = 0; j < d; j++)
    finite &= isfinite(p->mean[j]) && isfinite(p->scale[j]) &&
              p->scale[j] > 0;
  if (!finite) {
    culeace_probe_free(p);
    return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                          "probe parameters hold a non-finite value or a "
                          "scale <= 0");
  }
  p->info.converged = 1;
  *out = p;
  return CULEACE_OK;
}

/* Logit of one row under the raw-feature weights w (d) and intercept b: 8
 * partial sums (one AVX-512 register of doubles), added in a fixed order,
 * so a row's logit does not depend on which thread computes it. */
static double row_logit(const double *w, double b, const float *x,
                        int64_t d) {
  double a[8] = {0};
  int64_t j = 0;
  for (; j + 8 <= d; j += 8)
#pragma omp simd
    for (int l = 0; l < 8; l++) a[l] += w[j + l] * (double)x[j + l];
  for (; j < d; j++) a[j & 7] += w[j] * (double)x[j];
  double lo = (a[0] + a[4]) + (a[1] + a[5]), hi = (a[2] + a[6]) + (a[3] + a[7]);
  return b + (lo + hi);
}

/* Class probabilities pr (k) from the logits z (m outputs). */
static void row_proba(const double *z, int64_t m, double *pr) {
  if (m == 1) {
    double p1 = z[0] >= 0 ? 1.0 / (1.0 + exp(-z[0]))
                          : exp(z[0]) / (1.0 + exp(z[0]));
    pr[0] = 1.0 - p1;
    pr[1] = p1;
    return;
  }
  double mx = z[0], sum = 0;
  for (int64_t o = 1; o < m; o++) mx = z[o] > mx ? z[o] : mx;
  for (int64_t o = 0; o < m; o++) sum += (pr[o] = exp(z[o] - mx));
  for (int64_t o = 0; o < m; o++) pr[o] /= sum;
}

culeace_status culeace__probe_predict_rows(culeace_ctx *ctx,
                                           const culeace_probe *p,
                                           const void *x, culeace_dtype t,
                                           int64_t ldx, const int64_t *idx,
                                           int64_t n, double *proba) {
  int64_t d = p->info.d, k = p->info.n_classes, m = p->info.n_outputs;
  size_t es = culeace_dtype_size(t);
  /* logits = W x + b with W = coef / scale, b = intercept - W mean */
  int T = omp_get_max_threads();
  double *W = culeace__alloc(ctx, (size_t)m * (size_t)d, 8, "probe weights");
  double *b = culeace__alloc(ctx, (size_t)m, 8, "probe intercepts");
  double *zall = culeace__alloc(ctx, (size_t)T * (size_t)m, 8, "logits");
  float *rows = t == CULEACE_F32
                    ? NULL
                    : culeace__alloc(ctx, (size_t)T * (size_t)d, 4,
                                     "rows as float32");
  if (!W || !b || !zall || (t != CULEACE_F32 && !rows)) {
    free(W);
    free(b);
    free(zall);
    free(rows);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  for (int64_t o = 0; o < m; o++) {
    b[o] = p->intercept[o];
    for (int64_t j = 0; j < d; j++) {
      W[o * d + j] = p->coef[o * d + j] / p->scale[j];
      b[o] -= W[o * d + j] * p->mean[j];
    }
  }
  /* rows over the threads; a row's probabilities do not depend on them */
#pragma omp parallel for schedule(static) num_threads(T) \
    if (n * d * m > (1 << 16))
  for (int64_t i = 0; i < n; i++) {
    int th = omp_get_thread_num();
    const char *src = (const char *)x +
                      (size_t)(idx ? idx[i] : i) * (size_t)ldx * es;
    const float *row = (const float *)src;
    if (rows) {
      float *buf = rows + (size_t)th * (size_t)d;
      culeace__to_f32(src, t, d, buf);
      row = buf;
    }
    double *z = zall + (size_t)th * m;
    for (int64_t o = 0; o < m; o++) z[o] = row_logit(W + o * d, b[o], row, d);
    row_proba(z, m, proba + i * k);
  }
  free(W);
  free(b);
  free(zall);
  free(rows);
  return CULEACE_OK;
}

culeace_status culeace_probe_predict_proba(culeace_ctx *ctx,
                                           const culeace_probe *p,
                                           const float *x, int64_t n,
                                           int64_t ldx, double *proba) {
  if (!ctx || !p || (n > 0 && (!x || !proba)))
    return CULEACE_ERR_INVALID_ARG;
  int64_t d = p->info.d;
  if (ldx < d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "predict: row stride %lld < d = %lld",
                          (long long)ldx, (long long)d);
  return culeace__probe_predict_rows(ctx, p, x, CULEACE_F32, ldx, NULL, n,
                                     proba);
}

int culeace__probe_sum(const culeace__probe_reduce *red, double *buf,
                       int64_t count, int failed) {
  return red ? red->sum(buf, count, failed, red->arg) != 0 : failed != 0;
}

culeace_status culeace__probe_other_failed(culeace_ctx *ctx) {
  return culeace__error(ctx, CULEACE_ERR_MPI, "probe: another process of the "
                        "job failed (its message names the cause)");
}

const float *culeace__probe_row(const culeace__probe_rows *r, int64_t i,
                                float *buf) {
  if (r->xc) return r->xc + i * r->d;
  culeace__to_f32_minus((const char *)r->raw +
                            (size_t)(i * r->ld) * culeace_dtype_size(r->t),
                        r->t, r->d, r->sf, buf);
  return buf;
}

enum { MOMENT_CHUNKS = 64 }; /* fixed row ranges: sums in a fixed order */

/* Rows [c n / C, (c + 1) n / C) of chunk c of C. */
static int64_t chunk_start(int64_t n, int64_t c, int64_t C) {
  return (int64_t)((__int128)n * c / C);
}

/* The sums train_moments accumulates: one per distinct training mask
 * (control twins share their fold's), each over its training rows, or,
 * when it trains on more than half of the rows, over the rows it leaves
 * out, subtracted from the sums over all rows afterwards (a row of a 5-fold
 * sweep then adds into the total and its own fold's sums: 2 accumulations
 * instead of 4, or 8 with the control task). */
typedef struct {
  int64_t P, U;      /* problems, distinct masks */
  int64_t *slot;     /* (P) each problem's mask */
  const uint8_t **mask; /* (U) */
  uint8_t *comp;     /* (U) 1: accumulated over the rows left out */
  int total;         /* some mask is complemented: sums over all rows too */
} moment_plan;

static int moment_plan_make(const culeace__probe_rows *rows, int64_t P,
                            const culeace__probe_problem *prs,
                            moment_plan *mp) {
  int64_t n = rows->n;
  memset(mp, 0, sizeof *mp);
  mp->P = P;
  mp->slot = malloc((size_t)P * sizeof *mp->slot);
  mp->mask = malloc((size_t)P * sizeof *mp->mask);
  mp->comp = calloc((size_t)P, 1);
  if (!mp->slot || !mp->mask || !mp->comp) return 1;
  for (int64_t p = 0; p < P; p++) {
    int64_t u = 0;
    while (u < mp->U && mp->mask[u] != prs[p].train) u++;
    if (u == mp->U) {
      mp->mask[mp->U++] = prs[p].train;
      int64_t t = 0;
      for (int64_t i = 0; i < n; i++) t += prs[p].train[i] != 0;
      mp->comp[u] = 2 * t > n;
      mp->total |= mp->comp[u];
    }
    mp->slot[p] = u;
  }
  return 0;
}

static void moment_plan_free(moment_plan *mp) {
  free(mp->slot);
  free(mp->mask);
  free(mp->comp);
}

culeace_status culeace__probe_train_moments(culeace_ctx *ctx,
                                            const culeace__probe_rows *rows,
                                            int64_t P,
                                            const culeace__probe_problem *prs,
                                            double *mv) {
  int64_t n = rows->n, d = rows->d, C = n < MOMENT_CHUNKS ? 1 : MOMENT_CHUNKS;
  moment_plan mp;
  if (moment_plan_make(rows, P, prs, &mp)) {
    moment_plan_free(&mp);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  int64_t U = mp.U, S = U + 1; /* sums: each mask's, then all rows' */
  size_t per = (size_t)S * 2 * (size_t)d; /* one chunk's sums */
  double *part = culeace__alloc(ctx, (size_t)C * per, 8, "training moments");
  if (!part) {
    moment_plan_free(&mp);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  memset(part, 0, (size_t)C * per * 8);
  int failed = 0;
#pragma omp parallel
  {
    float *buf = malloc((size_t)d * sizeof *buf);
    if (!buf) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; c++) {
      if (!buf) continue;
      double *acc = part + (size_t)c * per;
      int64_t i1 = chunk_start(n, c + 1, C);
      for (int64_t i = chunk_start(n, c, C); i < i1; i++) {
        const float *row = NULL;
        for (int64_t u = 0; u <= U; u++) {
          if (u == U ? !mp.total : (mp.mask[u][i] != 0) == mp.comp[u])
            continue; /* not a row this sum adds */
          if (!row) row = culeace__probe_row(rows, i, buf);
          double *m = acc + (size_t)u * 2 * d, *v = m + d;
#pragma omp simd
          for (int64_t j = 0; j < d; j++) {
            double e = row[j];
            m[j] += e;
            v[j] += e * e;
          }
        }
      }
    }
    free(buf);
  }
  if (failed) {
    free(part);
    moment_plan_free(&mp);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  for (int64_t c = 1; c < C; c++)
    for (size_t e = 0; e < per; e++) part[e] += part[(size_t)c * per + e];
  const double *all = part + (size_t)U * 2 * d;
  for (int64_t p = 0; p < P; p++) {
    int64_t u = mp.slot[p];
    const double *src = part + (size_t)u * 2 * d;
    double *dst = mv + (size_t)p * 2 * d;
    for (int64_t j = 0; j < 2 * d; j++)
      dst[j] = mp.comp[u] ? all[j] - src[j] : src[j];
  }
  free(part);
  moment_plan_free(&mp);
  return CULEACE_OK;
}

culeace_status culeace__probe_setup(culeace_ctx *ctx,
                                    const culeace__probe_rows *rows,
                                    int64_t k, int64_t index,
                                    const culeace_probe_opts *o,
                                    const culeace__probe_reduce *red,
                                    const double *mv,
                                    culeace__probe_problem *pr,
                                    culeace_probe *probe) {
  /* one sum over the processes: class counts (k), then with
   * standardisation the column sums and sums of squares of the training
   * rows (d each, from mv) */
  int64_t n = rows->n, d = rows->d;
  int64_t nsum = k + (o->standardize ? 2 * d : 0);
  double *acc = calloc((size_t)nsum, sizeof *acc);
  culeace_status st = CULEACE_OK;
  if (!acc)
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  double *cnt = acc, *m = acc ? acc + k : NULL, *v = m ? m + d : NULL;
  for (int64_t i = 0; !st && i < n; i++) {
    if (!pr->train[i]) continue;
    int32_t y = pr->y[i];
    if (y < 0 || y >= k)
      st = culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe %lld: training row %lld has label %d, "
                          "expected 0..%lld", (long long)index, (long long)i,
                          (int)y, (long long)(k - 1));
    else cnt[y] += 1;
  }
  /* mean and population std of the training rows from their sums over
   * the centred rows in float64 (centring makes E[x^2] - E[x]^2 benign) */
  if (!st && o->standardize) memcpy(m, mv, (size_t)(2 * d) * 8);
  if (culeace__probe_sum(red, acc, nsum, st != CULEACE_OK)) {
    free(acc);
    return st ? st : culeace__probe_other_failed(ctx);
  }
  pr->n_train = 0;
  for (int64_t c = 0; c < k; c++) pr->n_train += (int64_t)cnt[c];
  for (int64_t c = 0; c < k; c++)
    if (cnt[c] == 0) {
      free(acc);
      return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                            "probe %lld: no training row of class %lld (%lld "
                            "training rows)", (long long)index, (long long)c,
                            (long long)pr->n_train);
    }
  pr->s_sum = 0;
  for (int64_t c = 0; c < k; c++) {
    pr->class_w[c] = o->balanced ? (double)pr->n_train / ((double)k * cnt[c])
                                 : 1.0;
    pr->s_sum += pr->class_w[c] * cnt[c];
  }
  probe->info.n_train = pr->n_train;
  if (!o->standardize) {
    free(acc);
    return CULEACE_OK;
  }
  double *mean = probe->mean, *sd = probe->scale;
  double nt = (double)pr->n_train, sd_max = 0;
  for (int64_t j = 0; j < d; j++) {
    double mc = m[j] / nt, var = v[j] / nt - mc * mc;
    sd[j] = sqrt(var > 0 ? var : 0);
    mean[j] = rows->shift[j] + mc;
    sd_max = fmax(sd_max, sd[j]);
  }
  free(acc);
  /* Columns whose spread is below float32 resolution (1e-6 relative to the
   * column's own magnitude or to the widest column) are constant: left
   * unscaled, as StandardScaler leaves zero-variance columns. Scaling them
   * would blow rounding noise up to unit variance; after an erasure that
   * noise can still carry the concept (it is what the edit left behind in a
   * constant column), and a probe would read it back. */
  for (int64_t j = 0; j < d; j++) {
    double floor = 1e-6 * fmax(fabs(mean[j]), sd_max);
    sd[j] = sd[j] > floor && sd[j] > 0 ? sd[j] : 1.0;
  }
  return CULEACE_OK;
}

/* sums (d + 1) = column sums of x (n, d, type t, stride ldx), then n: in
 * fixed row chunks over the threads, added in chunk order (the same bits
 * with any thread count). */
static int column_sums(const void *x, culeace_dtype t, int64_t n, int64_t d,
                       int64_t ldx, double *sums) {
  int64_t C = n < MOMENT_CHUNKS ? 1 : MOMENT_CHUNKS;
  double *part = calloc((size_t)(C * d), sizeof *part);
  if (!part) return 1;
  int failed = 0;
  size_t es = culeace_dtype_size(t);
#pragma omp parallel
  {
    float *row = malloc((size_t)d * sizeof *row);
    if (!row) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; c++) {
      if (!row) continue;
      double *acc = part + c * d;
      int64_t i1 = chunk_start(n, c + 1, C);
      for (int64_t i = chunk_start(n, c, C); i < i1; i++) {
        culeace__to_f32((const char *)x + (size_t)(i * ldx) * es, t, d, row);
#pragma omp simd
        for (int64_t j = 0; j < d; j++) acc[j] += row[j];
      }
    }
    free(row);
  }
  for (int64_t j = 0; j < d; j++) {
    double sum = 0;
    for (int64_t c = 0; c < C; c++) sum += part[c * d + j];
    sums[j] = sum;
  }
  sums[d] = (double)n;
  free(part);
  return failed;
}

/* xc (n, d) = x - shift. */
static void centre_rows(const float *x, int64_t n, int64_t d, int64_t ldx,
                        const double *shift, float *xc) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++)
      xc[i * d + j] = (float)(x[i * ldx + j] - shift[j]);
}

culeace_status culeace_probe_fit_batch(culeace_ctx *ctx, const float *x,
                                       int64_t n, int64_t d, int64_t ldx,
                                       int64_t k, int64_t P,
                                       const int32_t *const *labels,
                                       const uint8_t *const *train,
                                       const culeace_probe_opts *opts,
                                       culeace_probe **out) {
  return culeace__probe_fit_batch_shared(ctx, x, CULEACE_F32, n, d, ldx, k,
                                         P, labels, train, opts, NULL, out);
}

culeace_status culeace_probe_fit_layers(culeace_ctx *ctx, int64_t L,
                                        const float *const *x, int64_t n,
                                        int64_t d, int64_t ldx, int64_t k,
                                        int64_t P,
                                        const int32_t *const *labels,
                                        const uint8_t *const *train,
                                        const culeace_probe_opts *opts,
                                        culeace_probe **out) {
  if (!ctx || L < 1 || !x || !out || P < 1 || !labels || !train)
    return CULEACE_ERR_INVALID_ARG;
  culeace__probe_layer *ly = calloc((size_t)L, sizeof *ly);
  if (!ly)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t l = 0; l < L; l++)
    ly[l] = (culeace__probe_layer){x[l], CULEACE_F32, n, ldx, P, labels,
                                   train, NULL, out + l * P};
  culeace_status st = culeace__probe_fit_layers_shared(ctx, L, ly, d, k, opts,
                                                       NULL, NULL, NULL);
  free(ly);
  return st;
}

culeace_status culeace__probe_fit_batch_shared(
    culeace_ctx *ctx, const void *x, culeace_dtype xtype, int64_t n,
    int64_t d, int64_t ldx,
    int64_t k, int64_t P, const int32_t *const *labels,
    const uint8_t *const *train, const culeace_probe_opts *opts,
    const culeace__probe_reduce *red, culeace_probe **out) {
  if (!ctx || !out || P < 1 || !labels || !train || (n > 0 && !x))
    return CULEACE_ERR_INVALID_ARG;
  culeace__probe_layer layer = {x, xtype, n, ldx, P, labels, train, NULL,
                                out};
  return culeace__probe_fit_layers_shared(ctx, 1, &layer, d, k, opts, red,
                                          NULL, NULL);
}

/* One layer's prepared fit: its centred rows and its problems' setup. */
typedef struct {
  culeace__probe_rows rows;
  culeace__probe_problem *prs; /* (P) */
  double *cw;                  /* (P, k) class weights */
  float *xc;                   /* (n, d) centred copy of float32 rows */
  double *shift;               /* (d + 1) */
  float *sf;                   /* (d) */
} layer_fit;

static void layer_fit_free(layer_fit *f) {
  free(f->prs);
  free(f->cw);
  free(f->xc);
  free(f->shift);
  free(f->sf);
}

/* Prefixes the context's message with the layer's name (in a batch of
 * several layers, or when one was given). */
static culeace_status name_error(culeace_ctx *ctx, culeace_status st,
                                 const culeace__probe_layer *ly, int64_t l,
                                 int64_t L) {
  if (!st || st == CULEACE_ERR_MPI || (L == 1 && !ly->name)) return st;
  char msg[768];
  snprintf(msg, sizeof msg, "%s", culeace_ctx_last_error(ctx));
  if (ly->name)
    return culeace__error(ctx, st, "layer %s: %s", ly->name, msg);
  return culeace__error(ctx, st, "layer %lld of %lld: %s", (long long)l,
                        (long long)L, msg);
}

/* Centres the rows of one layer and sets up its problems (label checks,
 * class weights, standardisation), allocating its probes into ly->out. */
static culeace_status prepare_layer(culeace_ctx *ctx,
                                    const culeace__probe_layer *ly, int64_t d,
                                    int64_t k, const culeace_probe_opts *opts,
                                    const culeace__probe_reduce *red,
                                    layer_fit *f) {
  int64_t n = ly->n, ldx = ly->ldx, P = ly->P, m = k == 2 ? 1 : k;
  const void *x = ly->x;
  culeace_dtype xtype = ly->xtype;
  memset(f, 0, sizeof *f);
  f->prs = calloc((size_t)P, sizeof *f->prs);
  f->cw = calloc((size_t)(P * k), sizeof *f->cw);
  /* the rows centred on their column means: raw logits W x + b of
   * uncentred activations cancel large terms and leave float32 noise that
   * stalls the line search near the optimum. float32 rows: one centred
   * copy; 2-byte rows: centred as they are read, on a float32 shift */
  int half = xtype != CULEACE_F32;
  f->xc = half ? NULL
               : culeace__alloc(ctx, (size_t)(n ? n : 1) * (size_t)d, 4,
                                "centred rows");
  double *shift = f->shift =
      culeace__alloc(ctx, (size_t)d + 1, 8, "column means");
  float *sf = f->sf = culeace__alloc(ctx, (size_t)d, 4, "column means");
  double *mv = NULL; /* (P, 2, d) training moments */
  culeace_status st = CULEACE_OK;
  if (!f->prs || !f->cw || (!half && !f->xc) || !shift || !sf ||
      column_sums(x, xtype, n, d, ldx, shift))
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  if (culeace__probe_sum(red, shift, d + 1, st != CULEACE_OK))
    return st ? st : culeace__probe_other_failed(ctx);
  if (shift[d] < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe: no rows to fit on");
  /* the centre rounded to float32 for every input type: then x - shift
   * is the float32 difference whether a copy is made (float32 rows) or
   * the rows are centred as they are read (2-byte rows), and the same
   * activations give the same fit either way (the Python package passes
   * float32 copies of what the CLI reads as float16) */
  for (int64_t j = 0; j < d; j++) shift[j] = sf[j] = (float)(shift[j] / shift[d]);
  if (!half) centre_rows(x, n, d, ldx, shift, f->xc);
  f->rows = (culeace__probe_rows){f->xc, half ? x : NULL, xtype, ldx, n, d,
                                  shift, sf};
  for (int64_t p = 0; p < P; p++) {
    f->prs[p].y = ly->labels[p];
    f->prs[p].train = ly->train[p];
    f->prs[p].class_w = f->cw + p * k;
    st = culeace__probe_alloc(ctx, opts->kind, d, k, m, &ly->out[p]);
    if (st) { /* this process's alone: the others hear of it in the
                 setup's sum */
      culeace__probe_sum(red, NULL, 0, 1);
      return st;
    }
  }
  /* the training rows' column sums and sums of squares of every problem,
   * in one pass over the rows */
  if (opts->standardize) {
    mv = culeace__alloc(ctx, (size_t)(P * 2) * (size_t)d, 8,
                        "training moments");
    st = mv ? culeace__probe_train_moments(ctx, &f->rows, P, f->prs, mv)
            : CULEACE_ERR_OUT_OF_MEMORY;
    if (st) {
      free(mv);
      culeace__probe_sum(red, NULL, 0, 1);
      return st;
    }
  }
  for (int64_t p = 0; p < P && !st; p++)
    st = culeace__probe_setup(ctx, &f->rows, k, p, opts, red,
                              mv ? mv + p * 2 * d : NULL, &f->prs[p],
                              ly->out[p]);
  free(mv);
  return st;
}

culeace_status culeace__probe_fit_layers_shared(
    culeace_ctx *ctx, int64_t L, const culeace__probe_layer *layers,
    int64_t d, int64_t k, const culeace_probe_opts *opts,
    const culeace__probe_reduce *red, culeace__probe_layer_done done,
    void *done_arg) {
  if (!ctx || L < 1 || !layers) return CULEACE_ERR_INVALID_ARG;
  for (int64_t l = 0; l < L; l++) {
    const culeace__probe_layer *ly = &layers[l];
    if (!ly->out || ly->P < 1 || !ly->labels || !ly->train ||
        (ly->n > 0 && !ly->x))
      return CULEACE_ERR_INVALID_ARG;
    for (int64_t p = 0; p < ly->P; p++) ly->out[p] = NULL;
  }
  culeace_probe_opts dflt;
  if (!opts) {
    culeace_probe_opts_init(&dflt);
    opts = &dflt;
  }
  /* checks of the arguments every process shares (the same outcome on
   * each, so no process waits in a sum another one skipped) */
  for (int64_t l = 0; l < L; l++) {
    const culeace__probe_layer *ly = &layers[l];
    culeace_status st = CULEACE_OK;
    if (ly->xtype != CULEACE_F32 && ly->xtype != CULEACE_F16 &&
        ly->xtype != CULEACE_BF16)
      st = culeace__error(ctx, CULEACE_ERR_DTYPE, "probe: rows must be "
                          "float32, float16 or bfloat16");
    else if (d < 1 || ly->n < (red ? 0 : 1) || ly->ldx < d)
      st = culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe: need n >= 1 rows and d >= 1 features with "
                          "stride >= d (got n = %lld, d = %lld, ldx = %lld)",
                          (long long)ly->n, (long long)d, (long long)ly->ldx);
    if (st) return name_error(ctx, st, ly, l, L);
  }
  if (k < 2)
    return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "probe: need at least 2 classes (got %lld)",
                          (long long)k);
  if (!(opts->C > 0) || !isfinite(opts->C))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe: C must be a positive number (got %g)",
                          opts->C);
  if (!(opts->tol > 0) || opts->max_iter < 1 || opts->history < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe: tol must be > 0, max_iter and history >= 1");
  if (opts->kind != CULEACE_PROBE_LOGISTIC &&
      opts->kind != CULEACE_PROBE_DIFFMEANS)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe: unknown kind %d", (int)opts->kind);
  layer_fit *fits = calloc((size_t)L, sizeof *fits);
  culeace__probe_set *sets = calloc((size_t)L, sizeof *sets);
  culeace_status st = CULEACE_OK;
  if (!fits || !sets) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
    culeace__probe_sum(red, NULL, 0, 1); /* the others: at the first sum */
    goto cleanup;
  }
  for (int64_t l = 0; l < L && !st; l++) {
    st = name_error(ctx,
                    prepare_layer(ctx, &layers[l], d, k, opts, red, &fits[l]),
                    &layers[l], l, L);
    sets[l] = (culeace__probe_set){&fits[l].rows, layers[l].P, fits[l].prs,
                                   layers[l].out};
  }
  if (st) goto cleanup;
  if (opts->kind == CULEACE_PROBE_LOGISTIC) {
    st = culeace__probe_fit_logistic(ctx, L, sets, k, opts, red, done,
                                     done_arg);
  } else {
    for (int64_t l = 0; l < L && !st; l++) {
      for (int64_t p = 0; p < layers[l].P && !st; p++)
        st = name_error(ctx,
                        culeace__probe_fit_diffmeans(ctx, &fits[l].rows, k,
                                                     &fits[l].prs[p], red,
                                                     layers[l].out[p]),
                        &layers[l], l, L);
      if (!st && done) done(done_arg, l);
    }
  }
cleanup:
  for (int64_t l = 0; l < L; l++) {
    if (st)
      for (int64_t p = 0; p < layers[l].P; p++) {
        culeace_probe_free(layers[l].out[p]);
        layers[l].out[p] = NULL;
      }
    if (fits) layer_fit_free(&fits[l]);
  }
  free(fits);
  free(sets);
  return st;
}
