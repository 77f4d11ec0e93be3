/* inlp.c — INLP, iterative nullspace projection (Ravfogel et al. 2020):
 * repeatedly fit a logistic probe on the rows projected out of the
 * directions found so far, add its direction(s) (projected and
 * orthonormalised) to the basis U, until the probe's held-out accuracy
 * falls to the threshold. The eraser is x' = x - ((x - bias) U) U^T.
 *
 * Shapes: x (n, d) float32 stride ldx; xc (n, d) the centred working rows,
 * kept projected by I - U U^T; dirs (rmax, d) the directions found, rows
 * of U^T; coef (m, d) the current probe's directions (m = n_outputs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/eval.h"
#include "core/iterative.h"

void culeace_inlp_opts_init(culeace_inlp_opts *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->iterations = 20;
  o->min_accuracy = -1.0;
  o->margin = 0.01;
  o->C = 1.0;
  o->max_iter = 100;
  o->affine = 1;
}

/* v <- v - U U^T v over the r rows of dirs, twice (classical Gram-Schmidt
 * with reorthogonalisation: orthogonal to working precision). */
static void project_out(const double *dirs, int64_t r, int64_t d, double *v) {
  for (int pass = 0; pass < 2; pass++)
    for (int64_t a = 0; a < r; a++) {
      const double *u = dirs + (size_t)a * (size_t)d;
      double s = 0;
      for (int64_t j = 0; j < d; j++) s += u[j] * v[j];
      for (int64_t j = 0; j < d; j++) v[j] -= s * u[j];
    }
}

/* xc <- xc (I - u u^T) for one unit direction u. */
static void remove_direction(float *xc, int64_t n, int64_t d,
                             const double *u) {
  for (int64_t i = 0; i < n; i++) {
    float *r = xc + (size_t)i * (size_t)d;
    double s = 0;
    for (int64_t j = 0; j < d; j++) s += (double)r[j] * u[j];
    for (int64_t j = 0; j < d; j++) r[j] = (float)((double)r[j] - s * u[j]);
  }
}

/* Held-out accuracy of probe p on xc; proba (n, k) scratch. */
static culeace_status held_out_accuracy(culeace_ctx *ctx,
                                        const culeace_probe *p,
                                        const float *xc, int64_t n, int64_t d,
                                        int64_t k, const int32_t *labels,
                                        const uint8_t *test, double *proba,
                                        double *acc) {
  culeace_status st = culeace_probe_predict_proba(ctx, p, xc, n, d, proba);
  if (st) return st;
  *acc = culeace__accuracy(n, k, labels, proba, test);
  return CULEACE_OK;
}

culeace_status culeace_inlp_fit(culeace_ctx *ctx, const float *x, int64_t n,
                                int64_t d, int64_t ldx, const int32_t *labels,
                                int64_t k, const uint8_t *train,
                                const culeace_inlp_opts *opts,
                                culeace_eraser **out,
                                culeace_inlp_report *report,
                                double *accuracy) {
  if (!out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  culeace_inlp_opts o;
  culeace_inlp_opts_init(&o);
  if (opts) o = *opts;
  culeace_status st =
      culeace__iter_check(ctx, "INLP", x, n, d, ldx, labels, k, train);
  if (st) return st;
  if (o.iterations < 1 || !(o.C > 0) || !isfinite(o.C) || o.max_iter < 1 ||
      !(o.min_accuracy <= 1) || !(o.margin >= 0) || !isfinite(o.margin))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "INLP: options iterations = %d, C = %g, max_iter = "
                          "%d, min_accuracy = %g, margin = %g are invalid "
                          "(need iterations >= 1, C > 0, max_iter >= 1, "
                          "min_accuracy <= 1, margin >= 0)", o.iterations,
                          o.C, o.max_iter, o.min_accuracy, o.margin);
  int64_t m = k == 2 ? 1 : k; /* directions per probe */
  double rmax_d = (double)o.iterations * (double)m;
  int64_t rmax = rmax_d < (double)d ? (int64_t)rmax_d : d;
  float *xc = NULL;
  double *bias = culeace__alloc(ctx, (size_t)d, sizeof(double), "the mean");
  double *dirs = culeace__alloc(ctx, (size_t)rmax, (size_t)d * sizeof(double),
                                "the INLP directions");
  double *coef = culeace__alloc(ctx, (size_t)m, (size_t)d * sizeof(double),
                                "the probe directions");
  double *proba = culeace__alloc(ctx, (size_t)n, (size_t)k * sizeof(double),
                                 "the probe's probabilities");
  uint8_t *test = culeace__alloc(ctx, (size_t)n, 1, "the held-out mask");
  culeace_probe *p = NULL;
  if (!bias || !dirs || !coef || !proba || !test) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto done;
  }
  if ((st = culeace__iter_centre(ctx, x, n, d, ldx, o.affine, bias, &xc)))
    goto done;
  for (int64_t i = 0; i < n; i++) test[i] = !train[i];
  culeace_inlp_report rep;
  memset(&rep, 0, sizeof rep);
  rep.majority = culeace__majority_accuracy(n, k, labels, train, test, NULL);
  rep.threshold = o.min_accuracy >= 0 ? o.min_accuracy
                                      : rep.majority + o.margin;
  culeace_probe_opts po;
  culeace_probe_opts_init(&po);
  po.kind = CULEACE_PROBE_LOGISTIC;
  po.C = o.C;
  po.max_iter = o.max_iter;
  po.standardize = 0; /* directions in x's own coordinates */
  const int32_t *lab1[1] = {labels};
  const uint8_t *tr1[1] = {train};
  int64_t r = 0;
  for (int it = 0;; it++) {
    double acc;
    culeace_probe_free(p);
    p = NULL;
    if ((st = culeace_probe_fit_batch(ctx, xc, n, d, d, k, 1, lab1, tr1, &po,
                                      &p)))
      goto done;
    if ((st = held_out_accuracy(ctx, p, xc, n, d, k, labels, test, proba,
                                &acc)))
      goto done;
    if (accuracy) accuracy[it] = acc;
    rep.final_accuracy = acc;
    if (acc <= rep.threshold) {
      rep.stopped = 1;
      break;
    }
    if (it == o.iterations || r == rmax) break;
    if ((st = culeace_probe_params(p, coef, NULL, NULL, NULL))) goto done;
    int64_t added = 0;
    for (int64_t a = 0; a < m && r < rmax; a++) {
      double *v = dirs + (size_t)r * (size_t)d;
      memcpy(v, coef + (size_t)a * (size_t)d, (size_t)d * sizeof *v);
      double n0 = 0, n1 = 0;
      for (int64_t j = 0; j < d; j++) n0 += v[j] * v[j];
      project_out(dirs, r, d, v);
      for (int64_t j = 0; j < d; j++) n1 += v[j] * v[j];
      if (!(n1 > 1e-16 * n0) || !(n1 > 0)) continue; /* in span(U) */
      double s = 1.0 / sqrt(n1);
      for (int64_t j = 0; j < d; j++) v[j] *= s;
      remove_direction(xc, n, d, v);
      r++;
      added++;
    }
    if (!added) break; /* the probe found nothing new */
    rep.iterations = it + 1;
  }
  rep.rank = r;
  st = culeace__iter_eraser(ctx, d, r, dirs, bias, o.affine,
                            CULEACE_METHOD_INLP, n, k, out);
  if (!st && report) *report = rep;
done:
  culeace_probe_free(p);
  free(xc);
  free(bias);
  free(dirs);
  free(coef);
  free(proba);
  free(test);
  return st;
}
