/* probe.c — the probe object (parameters, prediction, rebuild from saved
 * parameters) and the entry point that sets up every problem of a batch
 * (label checks, class weights, standardisation) before handing the batch
 * to the logistic or difference-in-means fitter. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

culeace_status culeace_probe_predict_proba(culeace_ctx *ctx,
                                           const culeace_probe *p,
                                           const float *x, int64_t n,
                                           int64_t ldx, double *proba) {
  if (!ctx || !p || (n > 0 && (!x || !proba)))
    return CULEACE_ERR_INVALID_ARG;
  int64_t d = p->info.d, k = p->info.n_classes, m = p->info.n_outputs;
  if (ldx < d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "predict: row stride %lld < d = %lld",
                          (long long)ldx, (long long)d);
  /* logits = W x + b with W = coef / scale, b = intercept - W mean */
  double *W = culeace__alloc(ctx, (size_t)m * (size_t)d, 8, "probe weights");
  double *b = culeace__alloc(ctx, (size_t)m, 8, "probe intercepts");
  double *z = culeace__alloc(ctx, (size_t)m, 8, "logits");
  if (!W || !b || !z) {
    free(W);
    free(b);
    free(z);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  for (int64_t o = 0; o < m; o++) {
    b[o] = p->intercept[o];
    for (int64_t j = 0; j < d; j++) {
      W[o * d + j] = p->coef[o * d + j] / p->scale[j];
      b[o] -= W[o * d + j] * p->mean[j];
    }
  }
  for (int64_t i = 0; i < n; i++) {
    const float *row = x + i * ldx;
    double *pr = proba + i * k;
    for (int64_t o = 0; o < m; o++) {
      double s = b[o];
      for (int64_t j = 0; j < d; j++) s += W[o * d + j] * row[j];
      z[o] = s;
    }
    if (m == 1) {
      double p1 = z[0] >= 0 ? 1.0 / (1.0 + exp(-z[0]))
                            : exp(z[0]) / (1.0 + exp(z[0]));
      pr[0] = 1.0 - p1;
      pr[1] = p1;
    } else {
      double mx = z[0], sum = 0;
      for (int64_t o = 1; o < m; o++) mx = z[o] > mx ? z[o] : mx;
      for (int64_t o = 0; o < m; o++) sum += (pr[o] = exp(z[o] - mx));
      for (int64_t o = 0; o < m; o++) pr[o] /= sum;
    }
  }
  free(W);
  free(b);
  free(z);
  return CULEACE_OK;
}

culeace_status culeace__probe_setup(culeace_ctx *ctx, const float *xc,
                                    const double *shift, int64_t n, int64_t d,
                                    int64_t k, int64_t index,
                                    const culeace_probe_opts *o,
                                    culeace__probe_problem *pr,
                                    culeace_probe *probe) {
  int64_t *cnt = calloc((size_t)k, sizeof *cnt);
  if (!cnt)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  pr->n_train = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!pr->train[i]) continue;
    int32_t y = pr->y[i];
    if (y < 0 || y >= k) {
      free(cnt);
      return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                            "probe %lld: training row %lld has label %d, "
                            "expected 0..%lld", (long long)index, (long long)i,
                            (int)y, (long long)(k - 1));
    }
    cnt[y]++;
    pr->n_train++;
  }
  for (int64_t c = 0; c < k; c++)
    if (cnt[c] == 0) {
      free(cnt);
      return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                            "probe %lld: no training row of class %lld (%lld "
                            "training rows)", (long long)index, (long long)c,
                            (long long)pr->n_train);
    }
  pr->s_sum = 0;
  for (int64_t c = 0; c < k; c++) {
    pr->class_w[c] = o->balanced ? (double)pr->n_train / ((double)k * (double)cnt[c])
                                 : 1.0;
    pr->s_sum += pr->class_w[c] * (double)cnt[c];
  }
  free(cnt);
  probe->info.n_train = pr->n_train;
  if (!o->standardize) return CULEACE_OK;
  /* mean and population std of the training rows, one pass over the
   * centred rows in float64 (centring makes E[x^2] - E[x]^2 benign) */
  double *m = probe->mean, *v = probe->scale;
  for (int64_t j = 0; j < d; j++) m[j] = v[j] = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!pr->train[i]) continue;
    const float *row = xc + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      double e = row[j];
      m[j] += e;
      v[j] += e * e;
    }
  }
  double nt = (double)pr->n_train, sd_max = 0;
  for (int64_t j = 0; j < d; j++) {
    double mc = m[j] / nt, var = v[j] / nt - mc * mc;
    v[j] = sqrt(var > 0 ? var : 0);
    m[j] = shift[j] + mc;
    sd_max = fmax(sd_max, v[j]);
  }
  /* Columns whose spread is below float32 resolution (1e-6 relative to the
   * column's own magnitude or to the widest column) are constant: left
   * unscaled, as StandardScaler leaves zero-variance columns. Scaling them
   * would blow rounding noise up to unit variance; after an erasure that
   * noise can still carry the concept (it is what the edit left behind in a
   * constant column), and a probe would read it back. */
  for (int64_t j = 0; j < d; j++) {
    double floor = 1e-6 * fmax(fabs(m[j]), sd_max);
    v[j] = v[j] > floor && v[j] > 0 ? v[j] : 1.0;
  }
  return CULEACE_OK;
}

/* xc (n, d) = x - shift, shift = column means of x (float64). */
static void centre_rows(const float *x, int64_t n, int64_t d, int64_t ldx,
                        float *xc, double *shift) {
  for (int64_t j = 0; j < d; j++) shift[j] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) shift[j] += x[i * ldx + j];
  for (int64_t j = 0; j < d; j++) shift[j] /= (double)n;
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
  if (!ctx || !out || P < 1 || !labels || !train || (n > 0 && !x))
    return CULEACE_ERR_INVALID_ARG;
  culeace_probe_opts dflt;
  if (!opts) {
    culeace_probe_opts_init(&dflt);
    opts = &dflt;
  }
  for (int64_t p = 0; p < P; p++) out[p] = NULL;
  if (d < 1 || n < 1 || ldx < d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe: need n >= 1 rows and d >= 1 features with "
                          "stride >= d (got n = %lld, d = %lld, ldx = %lld)",
                          (long long)n, (long long)d, (long long)ldx);
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
  int64_t m = k == 2 ? 1 : k; /* sigmoid for 2 classes, softmax above */
  culeace__probe_problem *prs = calloc((size_t)P, sizeof *prs);
  double *cw = calloc((size_t)(P * k), sizeof *cw);
  /* one float32 copy of x centred on its column means: raw logits W x + b
   * of uncentred activations cancel large terms and leave float32 noise
   * that stalls the line search near the optimum */
  float *xc = culeace__alloc(ctx, (size_t)n * (size_t)d, 4, "centred rows");
  double *shift = culeace__alloc(ctx, (size_t)d, 8, "column means");
  culeace_status st = CULEACE_OK;
  if (!prs || !cw || !xc || !shift) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
    goto cleanup;
  }
  centre_rows(x, n, d, ldx, xc, shift);
  for (int64_t p = 0; p < P; p++) {
    prs[p].y = labels[p];
    prs[p].train = train[p];
    prs[p].class_w = cw + p * k;
    CULEACE_TRY(culeace__probe_alloc(ctx, opts->kind, d, k, m, &out[p]));
    CULEACE_TRY(culeace__probe_setup(ctx, xc, shift, n, d, k, p, opts,
                                     &prs[p], out[p]));
  }
  if (opts->kind == CULEACE_PROBE_LOGISTIC) {
    st = culeace__probe_fit_logistic(ctx, xc, shift, n, d, k, P, prs, opts,
                                     out);
  } else {
    for (int64_t p = 0; p < P && !st; p++)
      st = culeace__probe_fit_diffmeans(ctx, x, n, d, ldx, k, &prs[p], out[p]);
  }
cleanup:
  if (st)
    for (int64_t p = 0; p < P; p++) {
      culeace_probe_free(out[p]);
      out[p] = NULL;
    }
  free(prs);
  free(cw);
  free(xc);
  free(shift);
  return st;
}
