/* probe_diffmeans.c — the difference-in-means probe: class means of the
 * (standardised) training rows as directions, logits
 *   z_c = a (mu_c . x - |mu_c|^2 / 2)   (nearest class mean; for two classes
 * the single logit z_1 - z_0 along mu_1 - mu_0), with one temperature a >= 0
 * fitted by Newton's method on the weighted training log-loss so that the
 * probabilities (and log-loss) are calibrated. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/probe.h"

/* Weighted log-loss of softmax(a u_i) (or sigmoid for m == 1) and its first
 * two derivatives in a, summed over the processes of a shared fit (red).
 * u: (n, m) raw scores. Nonzero when another process failed. */
static int loss_in_a(const double *u, int64_t n, int64_t m,
                     const culeace__probe_problem *pr,
                     const culeace__probe_reduce *red, double a, double *f,
                     double *g, double *hs) {
  *f = *g = *hs = 0;
  double e[64];
  for (int64_t i = 0; i < n; i++) {
    if (!pr->train[i]) continue;
    int32_t y = pr->y[i];
    double s = pr->class_w[y];
    const double *ui = u + i * m;
    if (m == 1) {
      double z = a * ui[0], t = y == 1 ? ui[0] : 0;
      double p = z > 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
      *f += s * ((z > 0 ? z + log1p(exp(-z)) : log1p(exp(z))) - a * t);
      *g += s * (p * ui[0] - t);
      *hs += s * p * (1 - p) * ui[0] * ui[0];
    } else {
      double mx = -INFINITY, sum = 0, mean_u = 0, mean_u2 = 0;
      for (int64_t c = 0; c < m; c++) mx = fmax(mx, a * ui[c]);
      for (int64_t c = 0; c < m && c < 64; c++) sum += (e[c] = exp(a * ui[c] - mx));
      for (int64_t c = 0; c < m && c < 64; c++) {
        double p = e[c] / sum;
        mean_u += p * ui[c];
        mean_u2 += p * ui[c] * ui[c];
      }
      *f += s * (mx + log(sum) - a * ui[y]);
      *g += s * (mean_u - ui[y]);
      *hs += s * (mean_u2 - mean_u * mean_u);
    }
  }
  double t[3] = {*f, *g, *hs};
  if (culeace__probe_sum(red, t, 3, 0)) return 1;
  *f = t[0];
  *g = t[1];
  *hs = t[2];
  return 0;
}

culeace_status culeace__probe_fit_diffmeans(culeace_ctx *ctx,
                                            const culeace__probe_rows *rows,
                                            int64_t k,
                                            culeace__probe_problem *pr,
                                            const culeace__probe_reduce *red,
                                            culeace_probe *probe) {
  if (k > 64)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "the diffmeans probe supports at most 64 classes "
                          "(got %lld)", (long long)k);
  int64_t m = probe->info.n_outputs, n = rows->n, d = rows->d;
  /* mu (k, d) then cnt (k): one sum over the processes */
  double *mu = calloc((size_t)(k * d + k), 8), *cnt = mu ? mu + k * d : NULL;
  double *dir = calloc((size_t)(m * d), 8), *off = calloc((size_t)m, 8);
  double *u = malloc((size_t)(n ? n : 1) * (size_t)m * 8);
  /* ctr (d): the standardisation's mean relative to the rows' centre */
  double *ctr = malloc((size_t)d * 8);
  float *buf = malloc((size_t)d * sizeof *buf);
  culeace_status st = CULEACE_OK;
  int failed = !mu || !dir || !off || !u || !ctr || !buf;
  if (failed)
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory for a diffmeans probe");
  const double *scale = probe->scale;
  for (int64_t j = 0; !failed && j < d; j++)
    ctr[j] = probe->mean[j] - rows->shift[j];
  for (int64_t i = 0; !failed && i < n; i++) { /* class means in
                                                  standardised space */
    if (!pr->train[i]) continue;
    int32_t y = pr->y[i];
    const float *x = culeace__probe_row(rows, i, buf);
    cnt[y] += 1;
    for (int64_t j = 0; j < d; j++) mu[y * d + j] += (x[j] - ctr[j]) / scale[j];
  }
  if (culeace__probe_sum(red, mu, failed ? 0 : k * d + k, failed)) {
    if (!st) st = culeace__probe_other_failed(ctx);
    goto cleanup;
  }
  for (int64_t c = 0; c < k; c++)
    for (int64_t j = 0; j < d; j++) mu[c * d + j] /= cnt[c];
  if (m == 1) { /* z = (mu1 - mu0) . x - (|mu1|^2 - |mu0|^2) / 2 */
    for (int64_t j = 0; j < d; j++) {
      dir[j] = mu[d + j] - mu[j];
      off[0] -= 0.5 * (mu[d + j] * mu[d + j] - mu[j] * mu[j]);
    }
  } else {
    for (int64_t c = 0; c < k; c++)
      for (int64_t j = 0; j < d; j++) {
        dir[c * d + j] = mu[c * d + j];
        off[c] -= 0.5 * mu[c * d + j] * mu[c * d + j];
      }
  }
  for (int64_t i = 0; i < n; i++) {
    const float *x = culeace__probe_row(rows, i, buf);
    for (int64_t o = 0; o < m; o++) {
      double s = off[o];
      for (int64_t j = 0; j < d; j++)
        s += dir[o * d + j] * (x[j] - ctr[j]) / scale[j];
      u[i * m + o] = s;
    }
  }
  /* Newton on the temperature a (convex in a), safeguarded to a >= 0 */
  double a = 1e-3, f, g, hs;
  int it;
  for (it = 0; it < 50; it++) {
    if (loss_in_a(u, n, m, pr, red, a, &f, &g, &hs)) goto other_failed;
    if (!(hs > 0)) break;
    double na = a - g / hs;
    if (na < 0) na = a / 2;
    if (fabs(na - a) <= 1e-10 * fmax(1.0, fabs(a))) {
      a = na;
      break;
    }
    a = na;
  }
  if (loss_in_a(u, n, m, pr, red, a, &f, &g, &hs)) goto other_failed;
  for (int64_t c = 0; c < m; c++) {
    for (int64_t j = 0; j < d; j++) probe->coef[c * d + j] = a * dir[c * d + j];
    probe->intercept[c] = a * off[c];
  }
  probe->info.n_iter = it;
  probe->info.objective = f / pr->s_sum;
  probe->info.grad_max = fabs(g) / pr->s_sum;
  probe->info.converged = 1;
  goto cleanup;
other_failed:
  st = culeace__probe_other_failed(ctx);
cleanup:
  free(ctr);
  free(buf);
  free(mu);
  free(dir);
  free(off);
  free(u);
  return st;
}
