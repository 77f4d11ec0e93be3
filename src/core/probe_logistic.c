/* probe_logistic.c — L2-regularised logistic regression probes (sigmoid for
 * two classes, softmax for more), many problems at once: the problems of a
 * set (a layer) share its rows, so one L-BFGS step evaluates all of them in
 * one pass over the rows (logits, residuals and gradient sums per row:
 * probe_pass.c, on the CPU threads or the context's GPU), and the sets of a
 * batch (the layers of a sweep) step together: one round of passes, queued
 * together on a device, and one sum over processes per step. Parameters
 * live in the standardised space (as scikit-learn's coef_ after a
 * StandardScaler) and mapped to raw-feature weights for the pass over the
 * float32 rows centred on their column means (probe.c makes that copy).
 * Losses, gradients and the L-BFGS state are float64. Objective (scikit-learn's lbfgs):
 *   f = sum_i s_i logloss_i / S + |coef|^2 / (2 C S),  S = sum_i s_i. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/probe.h"

typedef struct {
  int64_t m, dim;            /* outputs; m (d + 1) parameters */
  double *theta, *grad;      /* current point: coef (m, d) then intercepts */
  double *trial, *trial_grad;/* line-search point */
  double *dir;
  double *S, *Y, *rho;       /* L-BFGS history ring (h, dim) */
  int hist_n, hist_head;
  double f, trial_f, alpha, gtd;
  int state;                 /* 0 running, 1 converged, 2 line search
                                failed, 3 out of iterations */
  int iter;                  /* accepted steps */
  int dirs;                  /* directions taken (at most max_iter) */
  int ls;                    /* line-search step of the current direction,
                                -1: a new direction is due */
} lbfgs_problem;

typedef struct { /* one set's share of an evaluation */
  culeace__probe_pass *pass; /* the pass over its rows (probe_pass.c) */
  const double *shift; /* (d) the rows' centre */
  float *W;        /* (m P, d) raw-feature weights of its pending problems */
  double *b;       /* (m P) raw-feature intercepts */
  int64_t *idx;    /* (P) its pending problems (indices into the set) */
  int64_t cnt;
  double *G, *rsum, *loss; /* this evaluation's sums, in eval_ws.sums */
} set_ws;

typedef struct { /* batched evaluation workspace */
  int64_t S;
  const culeace__probe_set *sets;
  set_ws *sw;      /* (S) */
  const int64_t *set_of, *base; /* (Ptot) each problem's set; (S) the
                                   first problem of each set */
  culeace__probe_eval_job *jobs; /* (S) */
  double *sums;    /* every set's G (M d), rsum (M), loss (cnt) one after
                      another: one buffer to sum over processes (red) */
  const culeace__probe_reduce *red; /* rows shared out (probe.h), or NULL */
  culeace_ctx *ctx;
} eval_ws;

static double max_abs(const double *v, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
  return m;
}

/* Objective and gradient of the listed problems (global indices, any
 * order) at theta (or trial), from one pass over each set's rows
 * (probe_pass.c: each row's logits for every pending problem of its set,
 * its residuals, and their products with the row), the passes of all sets
 * queued together. Returns a pass's error, or CULEACE_ERR_MPI when another
 * process of a shared fit failed. */
static culeace_status evaluate(eval_ws *w, int64_t d,
                               const culeace_probe_opts *o, lbfgs_problem *lp,
                               const int64_t *idx, int64_t cnt, int at_trial) {
  for (int64_t s = 0; s < w->S; s++) w->sw[s].cnt = 0;
  for (int64_t q = 0; q < cnt; q++) {
    set_ws *sw = &w->sw[w->set_of[idx[q]]];
    sw->idx[sw->cnt++] = idx[q] - w->base[w->set_of[idx[q]]];
  }
  int64_t off = 0, nj = 0;
  for (int64_t s = 0; s < w->S; s++) {
    set_ws *sw = &w->sw[s];
    if (!sw->cnt) continue;
    int64_t M = 0;
    for (int64_t q = 0; q < sw->cnt; q++) {
      const lbfgs_problem *L = &lp[w->base[s] + sw->idx[q]];
      const culeace_probe *pb = w->sets[s].probes[sw->idx[q]];
      const double *th = at_trial ? L->trial : L->theta;
      for (int64_t c = 0; c < L->m; c++, M++) {
        double b = th[L->m * d + c];
        for (int64_t j = 0; j < d; j++) {
          double wj = th[c * d + j] / pb->scale[j];
          sw->W[M * d + j] = (float)wj;
          b -= wj * (pb->mean[j] - sw->shift[j]);
        }
        sw->b[M] = b;
      }
    }
    sw->G = w->sums + off;
    sw->rsum = sw->G + M * d;
    sw->loss = sw->rsum + M;
    off += M * d + M + sw->cnt;
    w->jobs[nj++] = (culeace__probe_eval_job){sw->pass, sw->cnt, sw->idx,
                                              sw->W, sw->b, sw->G, sw->rsum,
                                              sw->loss};
  }
  culeace_status st = culeace__probe_pass_eval_many(nj, w->jobs);
  if (st) {
    /* this process's failure: the others hear of it in the sum */
    culeace__probe_sum(w->red, NULL, 0, 1);
    return st;
  }
  if (w->red && culeace__probe_sum(w->red, w->sums, off, 0))
    return culeace__probe_other_failed(w->ctx);
  for (int64_t s = 0; s < w->S; s++) {
    const set_ws *sw = &w->sw[s];
    int64_t col = 0;
    for (int64_t q = 0; q < sw->cnt; q++) {
      lbfgs_problem *L = &lp[w->base[s] + sw->idx[q]];
      const culeace_probe *pb = w->sets[s].probes[sw->idx[q]];
      double S = w->sets[s].prs[sw->idx[q]].s_sum, reg = 1.0 / (o->C * S);
      const double *th = at_trial ? L->trial : L->theta;
      double *g = at_trial ? L->trial_grad : L->grad;
      double pen = 0;
      for (int64_t c = 0; c < L->m; c++, col++) {
        for (int64_t j = 0; j < d; j++) {
          double t = th[c * d + j];
          pen += t * t;
          /* d/dcoef of sum_i r_i ((x_i - mean) / scale), x_i = xc_i + shift */
          g[c * d + j] = (sw->G[col * d + j] +
                          (sw->shift[j] - pb->mean[j]) * sw->rsum[col]) /
                             pb->scale[j] / S + t * reg;
        }
        g[L->m * d + c] = sw->rsum[col] / S;
      }
      double f = sw->loss[q] / S + 0.5 * pen * reg;
      if (at_trial) L->trial_f = f;
      else L->f = f;
    }
  }
  return 0;
}

/* dir = -H g by the two-loop recursion over the history ring. */
static void direction(lbfgs_problem *L, int h, double *alpha_buf) {
  int64_t D = L->dim;
  for (int64_t i = 0; i < D; i++) L->dir[i] = -L->grad[i];
  int cnt = L->hist_n;
  for (int t = 0; t < cnt; t++) { /* newest to oldest */
    int slot = (L->hist_head - 1 - t + h) % h;
    const double *s = L->S + (size_t)slot * D, *y = L->Y + (size_t)slot * D;
    double a = 0;
    for (int64_t i = 0; i < D; i++) a += s[i] * L->dir[i];
    a *= L->rho[slot];
    alpha_buf[t] = a;
    for (int64_t i = 0; i < D; i++) L->dir[i] -= a * y[i];
  }
  if (cnt > 0) { /* initial Hessian gamma I, gamma = s^T y / y^T y */
    int slot = (L->hist_head - 1 + h) % h;
    const double *y = L->Y + (size_t)slot * D;
    double yy = 0;
    for (int64_t i = 0; i < D; i++) yy += y[i] * y[i];
    double gamma = 1.0 / (L->rho[slot] * yy);
    for (int64_t i = 0; i < D; i++) L->dir[i] *= gamma;
  }
  for (int t = cnt - 1; t >= 0; t--) { /* oldest to newest */
    int slot = (L->hist_head - 1 - t + h) % h;
    const double *s = L->S + (size_t)slot * D, *y = L->Y + (size_t)slot * D;
    double b = 0;
    for (int64_t i = 0; i < D; i++) b += y[i] * L->dir[i];
    b *= L->rho[slot];
    for (int64_t i = 0; i < D; i++) L->dir[i] += (alpha_buf[t] - b) * s[i];
  }
}

/* Accepts the trial point: history update, convergence tests. */
static void accept(lbfgs_problem *L, int h, double tol) {
  int64_t D = L->dim;
  int slot = L->hist_head;
  double *s = L->S + (size_t)slot * D, *y = L->Y + (size_t)slot * D;
  double sy = 0, yy = 0;
  for (int64_t i = 0; i < D; i++) {
    s[i] = L->trial[i] - L->theta[i];
    y[i] = L->trial_grad[i] - L->grad[i];
    sy += s[i] * y[i];
    yy += y[i] * y[i];
  }
  if (sy > DBL_EPSILON * yy) { /* keep only pairs with positive curvature */
    L->rho[slot] = 1.0 / sy;
    L->hist_head = (L->hist_head + 1) % h;
    if (L->hist_n < h) L->hist_n++;
  }
  double f_old = L->f;
  memcpy(L->theta, L->trial, (size_t)D * 8);
  memcpy(L->grad, L->trial_grad, (size_t)D * 8);
  L->f = L->trial_f;
  L->iter++;
  if (max_abs(L->grad, D) <= tol) {
    L->state = 1;
  } else if ((f_old - L->f) <= 64 * DBL_EPSILON *
                                    fmax(fmax(fabs(f_old), fabs(L->f)), 1.0)) {
    L->state = 1; /* no relative progress: scipy's factr stop, as sklearn */
  }
}

/* Calls done for each set whose problems have all stopped since the last
 * call (reported[s] marks those told). */
static void report_done(const eval_ws *w, const lbfgs_problem *lp,
                        uint8_t *reported, culeace__probe_layer_done done,
                        void *arg) {
  if (!done) return;
  for (int64_t s = 0; s < w->S; s++) {
    if (reported[s]) continue;
    int running = 0;
    for (int64_t p = 0; p < w->sets[s].P && !running; p++)
      running = lp[w->base[s] + p].state == 0;
    if (running) continue;
    reported[s] = 1;
    done(arg, s);
  }
}

static void free_problem(lbfgs_problem *L) {
  free(L->theta);
  free(L->grad);
  free(L->trial);
  free(L->trial_grad);
  free(L->dir);
  free(L->S);
  free(L->Y);
  free(L->rho);
}

culeace_status culeace__probe_fit_logistic(culeace_ctx *ctx, int64_t S,
                                           const culeace__probe_set *sets,
                                           int64_t k,
                                           const culeace_probe_opts *o,
                                           const culeace__probe_reduce *red,
                                           culeace__probe_layer_done done,
                                           void *done_arg) {
  int h = o->history;
  int64_t d = sets[0].rows->d, P = 0, sum_len = 0;
  int64_t m = k == 2 ? 1 : k, D = m * (d + 1);
  for (int64_t s = 0; s < S; s++) {
    P += sets[s].P;
    sum_len += sets[s].P * (m * d + m + 1);
  }
  culeace_status st = CULEACE_OK;
  lbfgs_problem *lp = calloc((size_t)P, sizeof *lp);
  int64_t *all = malloc((size_t)P * sizeof *all), *pend = malloc((size_t)P * sizeof *pend);
  int64_t *set_of = malloc((size_t)P * sizeof *set_of);
  int64_t *base = malloc((size_t)S * sizeof *base);
  uint8_t *reported = calloc((size_t)S, 1);
  /* (threads, h) the two-loop recursion's coefficients */
  double *abuf = malloc((size_t)omp_get_max_threads() * (size_t)h *
                        sizeof *abuf);
  eval_ws w;
  memset(&w, 0, sizeof w);
  w.S = S;
  w.sets = sets;
  w.sw = calloc((size_t)S, sizeof *w.sw);
  w.jobs = calloc((size_t)S, sizeof *w.jobs);
  w.sums = culeace__alloc(ctx, (size_t)sum_len, 8, "probe gradients");
  w.set_of = set_of;
  w.base = base;
  w.red = red;
  w.ctx = ctx;
  int failed = !lp || !all || !pend || !set_of || !base || !reported ||
               !abuf || !w.sw || !w.jobs || !w.sums;
  for (int64_t s = 0, g = 0; !failed && s < S; s++) {
    set_ws *sw = &w.sw[s];
    int64_t Ms = m * sets[s].P;
    base[s] = g;
    for (int64_t p = 0; p < sets[s].P; p++) set_of[g++] = s;
    sw->shift = sets[s].rows->shift;
    sw->W = culeace__alloc(ctx, (size_t)Ms * (size_t)d, 4, "probe weights");
    sw->b = culeace__alloc(ctx, (size_t)Ms, 8, "probe intercepts");
    sw->idx = malloc((size_t)sets[s].P * sizeof *sw->idx);
    failed = !sw->W || !sw->b || !sw->idx;
  }
  if (failed) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory for %lld probes of width %lld",
                        (long long)P, (long long)d);
    culeace__probe_sum(red, NULL, 0, 1); /* the others: at the first sum */
    goto cleanup;
  }
  /* float accumulation is good to ~1e-5 in the gradient; below that
   * tolerance the pass accumulates in double */
  for (int64_t s = 0; s < S; s++) {
    st = culeace__probe_pass_open(ctx, sets[s].rows, m, sets[s].P,
                                  sets[s].prs, o->tol < 1e-5,
                                  !getenv("CULEACE_PROBE_HOST"),
                                  &w.sw[s].pass);
    if (st) {
      culeace__probe_sum(red, NULL, 0, 1);
      goto cleanup;
    }
  }
  for (int64_t p = 0; p < P; p++) {
    lbfgs_problem *L = &lp[p];
    L->m = m;
    L->dim = D;
    L->theta = calloc((size_t)D, 8);
    L->grad = calloc((size_t)D, 8);
    L->trial = calloc((size_t)D, 8);
    L->trial_grad = calloc((size_t)D, 8);
    L->dir = calloc((size_t)D, 8);
    L->S = calloc((size_t)h * (size_t)D, 8);
    L->Y = calloc((size_t)h * (size_t)D, 8);
    L->rho = calloc((size_t)h, 8);
    if (!L->theta || !L->grad || !L->trial || !L->trial_grad || !L->dir ||
        !L->S || !L->Y || !L->rho) {
      st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory for the L-BFGS state");
      culeace__probe_sum(red, NULL, 0, 1);
      goto cleanup;
    }
    all[p] = p;
  }
  st = evaluate(&w, d, o, lp, all, P, 0);
  if (st) goto cleanup;
  for (int64_t p = 0; p < P; p++)
    if (max_abs(lp[p].grad, D) <= o->tol) lp[p].state = 1;
  report_done(&w, lp, reported, done, done_arg);

  /* Each pass evaluates one trial point of every running problem, wherever
   * it is in its own iteration: a problem whose line search needs another
   * step does not make the others wait a pass (in lockstep, any one retry
   * cost a whole pass over the rows: 1.3 passes per iteration on a 5-fold
   * sweep). A problem's iterates are those of its own L-BFGS run, since a
   * pass computes each problem's loss and gradient on its own. */
  for (int64_t p = 0; p < P; p++) lp[p].ls = -1;
  for (;;) {
    int64_t cnt = 0;
    for (int64_t p = 0; p < P; p++) { /* the running problems */
      lbfgs_problem *L = &lp[p];
      if (L->state != 0) continue;
      if (L->ls < 0 && L->dirs == o->max_iter) {
        L->state = 3;
        continue;
      }
      pend[cnt++] = p;
    }
    /* each one's next trial point: a new direction (the two-loop
     * recursion, O(h D)) or the next step of its line search; problems
     * are independent, so on the threads (the same bits with any count) */
#pragma omp parallel for schedule(dynamic, 1) if (cnt > 1)
    for (int64_t q = 0; q < cnt; q++) {
      lbfgs_problem *L = &lp[pend[q]];
      if (L->ls < 0) { /* a new direction and its first step */
        L->dirs++;
        L->ls = 0;
        direction(L, h, abuf + (size_t)omp_get_thread_num() * (size_t)h);
        L->gtd = 0;
        for (int64_t i = 0; i < D; i++) L->gtd += L->grad[i] * L->dir[i];
        if (!(L->gtd < 0)) { /* not a descent direction: restart */
          L->hist_n = 0;
          L->gtd = 0;
          for (int64_t i = 0; i < D; i++) {
            L->dir[i] = -L->grad[i];
            L->gtd -= L->grad[i] * L->grad[i];
          }
        }
        double gn = 0;
        for (int64_t i = 0; i < D; i++) gn += L->grad[i] * L->grad[i];
        L->alpha = L->hist_n == 0 ? fmin(1.0, 1.0 / sqrt(gn)) : 1.0;
      }
      for (int64_t i = 0; i < D; i++)
        L->trial[i] = L->theta[i] + L->alpha * L->dir[i];
    }
    report_done(&w, lp, reported, done, done_arg);
    if (cnt == 0) break;
    st = evaluate(&w, d, o, lp, pend, cnt, 1);
    if (st) goto cleanup;
    /* backtracking (Armijo) line search (problems on the threads) */
#pragma omp parallel for schedule(dynamic, 1) if (cnt > 1)
    for (int64_t q = 0; q < cnt; q++) {
      lbfgs_problem *L = &lp[pend[q]];
      if (L->trial_f <= L->f + 1e-4 * L->alpha * L->gtd) {
        accept(L, h, o->tol);
        L->ls = -1;
      } else if (L->ls == 39 || L->alpha < 1e-20) {
        L->state = 2; /* line search failed: stop where we are */
      } else {
        /* minimiser of the quadratic through f, f'(0) and f(alpha),
         * kept within [0.1, 0.5] of the step */
        double a = L->alpha;
        double den = 2 * (L->trial_f - L->f - L->gtd * a);
        double an = den > 0 ? -L->gtd * a * a / den : 0.5 * a;
        L->alpha = fmin(fmax(an, 0.1 * a), 0.5 * a);
        L->ls++;
      }
    }
  }
  for (int64_t p = 0; p < P; p++) {
    lbfgs_problem *L = &lp[p];
    int64_t s = set_of[p];
    culeace_probe *pb = sets[s].probes[p - base[s]];
    memcpy(pb->coef, L->theta, (size_t)(m * d) * 8);
    memcpy(pb->intercept, L->theta + m * d, (size_t)m * 8);
    pb->info.n_iter = L->iter;
    pb->info.objective = L->f;
    pb->info.grad_max = max_abs(L->grad, D);
    pb->info.converged = L->state == 1;
  }
cleanup:
  for (int64_t p = 0; lp && p < P; p++) free_problem(&lp[p]);
  for (int64_t s = 0; w.sw && s < S; s++) {
    culeace__probe_pass_close(w.sw[s].pass);
    free(w.sw[s].W);
    free(w.sw[s].b);
    free(w.sw[s].idx);
  }
  free(lp);
  free(all);
  free(pend);
  free(set_of);
  free(base);
  free(reported);
  free(abuf);
  free(w.sw);
  free(w.jobs);
  free(w.sums);
  return st;
}
