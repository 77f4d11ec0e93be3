/* probe_logistic.c — L2-regularised logistic regression probes (sigmoid for
 * two classes, softmax for more), many problems at once: every problem of a
 * batch shares the rows x, so one L-BFGS step evaluates all of them in one
 * pass over x (logits, residuals and gradient sums per row, rows split over
 * the OpenMP threads). Parameters
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

/* per-block kernels (below), chosen for the CPU */
enum { ROWS = 8 }; /* rows per kernel call */
typedef void (*dots_fn)(const float *, const double *, int64_t, int64_t,
                        const float *const *, double *);
typedef void (*axpy_fn)(void *, double *, const double *, int64_t, int64_t,
                        const float *const *);
typedef struct {
  dots_fn dots;
  axpy_fn axpy;
  culeace__losses_fn losses; /* binary rows (probe_loss.c) */
} block_kernels;

typedef struct { /* batched evaluation workspace */
  const culeace__probe_rows *rows; /* the centred rows (probe.h) */
  const double *shift; /* (d) their centre: rows->shift */
  float *xb;       /* (threads, ROWS, d) a block of 2-byte rows, centred */
  int threads;
  float *W;        /* (M, d) raw-feature weights */
  double *b;       /* (M) raw-feature intercepts */
  int f64;         /* accumulate in float64 (tight tolerances) */
  block_kernels kern; /* per-block kernels for this CPU and precision */
  void *Gp;        /* (threads, M, d) per-thread sum_i r_i xc_i, float or
                      double as f64 says */
  double *G;       /* (M, d) their sum, then rsum and loss: one buffer of
                      M d + M + P to sum over processes (red) */
  double *rsp;     /* (threads, M) per-thread residual sums */
  double *rsum;    /* (M) */
  double *lsp;     /* (threads, P) per-thread losses */
  double *loss;    /* (P) */
  const culeace__probe_reduce *red; /* rows shared out (probe.h), or NULL */
  double *zp, *rp; /* (threads, ROWS, M) a row block's logits, residuals */
  double *bp;      /* (threads, 3, ROWS, M) binary blocks: weights, labels
                      and losses of each logit (culeace__binary_losses) */
} eval_ws;

static double max_abs(const double *v, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
  return m;
}

/* Weighted softmax log-loss of one row from its logits z (m >= 3);
 * residuals s (p - onehot(y)) into r. (Binary rows: probe_loss.c.) */
static double row_loss(const double *z, int64_t m, int32_t y, double s,
                       double *r) {
  double mx = -INFINITY, sum = 0;
  for (int64_t c = 0; c < m; c++) mx = fmax(mx, z[c]);
  for (int64_t c = 0; c < m; c++) sum += exp(z[c] - mx);
  double lse = mx + log(sum);
  for (int64_t c = 0; c < m; c++) r[c] = s * (exp(z[c] - lse) - (c == y));
  return s * (lse - z[y]);
}

/* Per-block kernels, compiled for several instruction sets and picked at
 * run time: a baseline x86-64 build would run these loops 4 wide without
 * FMA on CPUs that have AVX2 or AVX-512. ACC is the
 * accumulation type: float is fast and good to ~1e-5 in the gradient;
 * double reaches the tight tolerances used to compare with scikit-learn
 * (products of float inputs are exact in double). ROWS rows per call, so
 * that each weight and gradient element loaded serves ROWS rows. */
#define DEFINE_BLOCK_KERNELS(SUFFIX, ACC, TARGET)                              \
  /* z (8, M) = logits of rows x[0..7] under W (M, d), plus b */             \
  TARGET static void dots8_##SUFFIX(const float *W, const double *b,           \
                                    int64_t M, int64_t d,                      \
                                    const float *const *x, double *z) {        \
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4],    \
                *x5 = x[5], *x6 = x[6], *x7 = x[7];                            \
    for (int64_t c = 0; c < M; c++) {                                          \
      const float *wc = W + c * d;                                             \
      ACC a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;      \
      _Pragma("omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7)")        \
      for (int64_t j = 0; j < d; j++) {                                        \
        ACC wj = wc[j];                                                        \
        a0 += wj * x0[j];                                                      \
        a1 += wj * x1[j];                                                      \
        a2 += wj * x2[j];                                                      \
        a3 += wj * x3[j];                                                      \
        a4 += wj * x4[j];                                                      \
        a5 += wj * x5[j];                                                      \
        a6 += wj * x6[j];                                                      \
        a7 += wj * x7[j];                                                      \
      }                                                                        \
      ACC a[8] = {a0, a1, a2, a3, a4, a5, a6, a7};                             \
      for (int q = 0; q < 8; q++) z[q * M + c] = a[q] + b[c];                  \
    }                                                                          \
  }                                                                            \
  /* G (M, d) += r (8, M)^T x[0..7]; rs (M) += column sums of r */             \
  TARGET static void axpy8_##SUFFIX(void *Gv, double *rs, const double *r,     \
                                    int64_t M, int64_t d,                      \
                                    const float *const *x) {                   \
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3], *x4 = x[4],    \
                *x5 = x[5], *x6 = x[6], *x7 = x[7];                            \
    ACC *G = Gv;                                                               \
    for (int64_t c = 0; c < M; c++) {                                          \
      ACC q[8];                                                                \
      int any = 0;                                                             \
      for (int k = 0; k < 8; k++) {                                            \
        q[k] = (ACC)r[k * M + c];                                              \
        rs[c] += r[k * M + c];                                                 \
        any |= q[k] != 0;                                                      \
      }                                                                        \
      if (!any) continue;                                                      \
      ACC r0 = q[0], r1 = q[1], r2 = q[2], r3 = q[3], r4 = q[4], r5 = q[5],    \
          r6 = q[6], r7 = q[7];                                                \
      ACC *gc = G + c * d;                                                     \
      _Pragma("omp simd") for (int64_t j = 0; j < d; j++) gc[j] +=             \
          r0 * x0[j] + r1 * x1[j] + r2 * x2[j] + r3 * x3[j] + r4 * x4[j] +     \
          r5 * x5[j] + r6 * x6[j] + r7 * x7[j];                                \
    }                                                                          \
  }

DEFINE_BLOCK_KERNELS(f32, float, )
DEFINE_BLOCK_KERNELS(f64, double, )
#if defined(__x86_64__) && defined(__GNUC__)
#define CULEACE_AVX2 __attribute__((target("avx2,fma")))
#define CULEACE_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
DEFINE_BLOCK_KERNELS(f32_avx2, float, CULEACE_AVX2)
DEFINE_BLOCK_KERNELS(f64_avx2, double, CULEACE_AVX2)
DEFINE_BLOCK_KERNELS(f64_avx512, double, CULEACE_AVX512)
#endif

/* The kernels for the CPU at hand, by its instruction-set features (not its
 * model name, which virtual machines hide). */
static block_kernels pick_kernels(int f64) {
  block_kernels k = {f64 ? dots8_f64 : dots8_f32, f64 ? axpy8_f64 : axpy8_f32,
                     culeace__binary_losses_pick()};
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
    /* float32 sums in register tiles (probe_tiles.c) */
    k.dots = f64 ? dots8_f64_avx512 : culeace__dots8_tiled_f32;
    k.axpy = f64 ? axpy8_f64_avx512 : culeace__axpy8_tiled_f32;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    k.dots = f64 ? dots8_f64_avx2 : dots8_f32_avx2;
    k.axpy = f64 ? axpy8_f64_avx2 : axpy8_f32_avx2;
  }
#endif
  return k;
}

static void block_residuals(const double *z, double *r, int64_t M, int64_t i0,
                            int64_t nb, const culeace__probe_problem *prs,
                            const lbfgs_problem *lp, const int64_t *idx,
                            int64_t cnt, double *ls, double *bw,
                            culeace__losses_fn losses);

/* x[0..ROWS-1]: the rows i0 .. i0+nb-1 (past nb: the first again), centred:
 * pointers into the centred copy, or 2-byte rows converted and centred
 * into thread t's block buffer (L1-sized: the kernels then read them from
 * there, and the pass streams half the bytes of a float32 copy). */
static void block_rows(const eval_ws *w, int t, int64_t i0, int64_t nb,
                       int64_t d, const float **x) {
  const culeace__probe_rows *r = w->rows;
  if (r->xc) {
    for (int q = 0; q < ROWS; q++) x[q] = r->xc + (i0 + (q < nb ? q : 0)) * d;
    return;
  }
  float *buf = w->xb + (size_t)t * ROWS * (size_t)d;
  for (int q = 0; q < nb; q++)
    x[q] = culeace__probe_row(r, i0 + q, buf + (size_t)q * (size_t)d);
  for (int q = (int)nb; q < ROWS; q++) x[q] = x[0];
}

/* The pass over the rows for M stacked outputs: per-thread logits,
 * residuals, losses and gradient sums, rows in blocks of ROWS over the OpenMP
 * threads. */
#define DEFINE_ROW_PASS(SUFFIX, ACC)                                           \
  static void row_pass_##SUFFIX(eval_ws *w, int64_t n, int64_t d, int64_t M,   \
                                const culeace__probe_problem *prs,             \
                                const lbfgs_problem *lp, const int64_t *idx,   \
                                int64_t cnt) {                                 \
    int T = w->threads;                                                        \
    ACC *Gall = (ACC *)w->Gp;                                                  \
    memset(Gall, 0, (size_t)T * (size_t)M * (size_t)d * sizeof(ACC));         \
    memset(w->rsp, 0, (size_t)T * (size_t)M * sizeof *w->rsp);                 \
    memset(w->lsp, 0, (size_t)T * (size_t)cnt * sizeof *w->lsp);              \
    _Pragma("omp parallel num_threads(T)") {                                   \
      int t = omp_get_thread_num();                                            \
      ACC *G = Gall + (size_t)t * M * d;                                       \
      double *rs = w->rsp + (size_t)t * M, *ls = w->lsp + (size_t)t * cnt;     \
      double *z = w->zp + (size_t)t * ROWS * M;                                \
      double *r = w->rp + (size_t)t * ROWS * M;                                \
      double *bw = w->bp + (size_t)t * 3 * ROWS * M;                           \
      int64_t nblk = (n + ROWS - 1) / ROWS;                                    \
      _Pragma("omp for schedule(static)") for (int64_t blk = 0; blk < nblk;    \
                                               blk++) {                        \
        int64_t i0 = blk * ROWS, nb = n - i0 < ROWS ? n - i0 : ROWS;           \
        const float *x[ROWS]; /* rows past the end repeat the first */         \
        block_rows(w, t, i0, nb, d, x);                                        \
        w->kern.dots(w->W, w->b, M, d, x, z);                                  \
        block_residuals(z, r, M, i0, nb, prs, lp, idx, cnt, ls, bw,            \
                        w->kern.losses);                                       \
        w->kern.axpy(G, rs, r, M, d, x);                                       \
      }                                                                        \
    }                                                                          \
  }

/* Residuals (and losses into ls) of the rows i0 .. i0+nb-1 of a block from
 * their logits z (ROWS, M); rows past nb or outside a problem's training set
 * get zero residuals. Binary problems (one output each) go through
 * losses (culeace__binary_losses) all at once, with bw (3, ROWS, M) as
 * scratch. */
static void block_residuals(const double *z, double *r, int64_t M, int64_t i0,
                            int64_t nb, const culeace__probe_problem *prs,
                            const lbfgs_problem *lp, const int64_t *idx,
                            int64_t cnt, double *ls, double *bw,
                            culeace__losses_fn losses) {
  if (lp[idx[0]].m == 1) { /* every problem of a batch has the same m */
    double *s = bw, *y = bw + ROWS * M, *loss = bw + 2 * ROWS * M;
    for (int64_t bi = 0; bi < ROWS; bi++)
      for (int64_t q = 0; q < cnt; q++) {
        const culeace__probe_problem *pr = &prs[idx[q]];
        int64_t i = i0 + bi, e = bi * M + q;
        int train = bi < nb && pr->train[i];
        int32_t yi = train ? pr->y[i] : 0;
        s[e] = train ? pr->class_w[yi] : 0.0;
        y[e] = yi == 1;
      }
    losses(z, s, y, ROWS * M, r, loss);
    for (int64_t bi = 0; bi < nb; bi++)
      for (int64_t q = 0; q < cnt; q++) ls[q] += loss[bi * M + q];
    return;
  }
  for (int64_t bi = 0; bi < ROWS; bi++) {
    const double *zb = z + bi * M;
    double *rb = r + bi * M;
    int64_t i = i0 + bi, col = 0;
    for (int64_t q = 0; q < cnt; q++) {
      const culeace__probe_problem *pr = &prs[idx[q]];
      int64_t m = lp[idx[q]].m;
      if (bi < nb && pr->train[i]) {
        int32_t y = pr->y[i];
        ls[q] += row_loss(zb + col, m, y, pr->class_w[y], rb + col);
      } else {
        for (int64_t c = 0; c < m; c++) rb[col + c] = 0;
      }
      col += m;
    }
  }
}

DEFINE_ROW_PASS(f32, float)
DEFINE_ROW_PASS(f64, double)

/* Objective and gradient of the listed problems at theta (or trial), in
 * one pass over the rows: each row's logits for every problem, its
 * residuals, and their products with the row, while the row is in cache
 * (a GEMM pair would read x twice and repack it for so few columns).
 * Returns nonzero when another process of a shared fit failed. */
static int evaluate(eval_ws *w, int64_t n, int64_t d,
                     const culeace_probe_opts *o,
                     const culeace__probe_problem *prs,
                     culeace_probe *const *probes, lbfgs_problem *lp,
                     const int64_t *idx, int64_t cnt, int at_trial) {
  int64_t M = 0;
  for (int64_t q = 0; q < cnt; q++) {
    const lbfgs_problem *L = &lp[idx[q]];
    const culeace_probe *pb = probes[idx[q]];
    const double *th = at_trial ? L->trial : L->theta;
    for (int64_t c = 0; c < L->m; c++, M++) {
      double b = th[L->m * d + c];
      for (int64_t j = 0; j < d; j++) {
        double wj = th[c * d + j] / pb->scale[j];
        w->W[M * d + j] = (float)wj;
        b -= wj * (pb->mean[j] - w->shift[j]);
      }
      w->b[M] = b;
    }
  }
  int T = w->threads;
  w->rsum = w->G + M * d;
  w->loss = w->rsum + M;
  if (w->f64) row_pass_f64(w, n, d, M, prs, lp, idx, cnt);
  else row_pass_f32(w, n, d, M, prs, lp, idx, cnt);
  for (int64_t c = 0; c < M; c++) {
    double sum = 0;
    for (int t = 0; t < T; t++) sum += w->rsp[(size_t)t * M + c];
    w->rsum[c] = sum;
    for (int64_t j = 0; j < d; j++) {
      double g = 0;
      for (int t = 0; t < T; t++) {
        size_t at = ((size_t)t * M + c) * d + j;
        g += w->f64 ? ((const double *)w->Gp)[at] : ((const float *)w->Gp)[at];
      }
      w->G[c * d + j] = g;
    }
  }
  for (int64_t q = 0; q < cnt; q++) {
    double sum = 0;
    for (int t = 0; t < T; t++) sum += w->lsp[(size_t)t * cnt + q];
    w->loss[q] = sum;
  }
  if (w->red && culeace__probe_sum(w->red, w->G, M * d + M + cnt, 0)) return 1;
  int64_t col = 0;
  for (int64_t q = 0; q < cnt; q++) {
    lbfgs_problem *L = &lp[idx[q]];
    const culeace_probe *pb = probes[idx[q]];
    double S = prs[idx[q]].s_sum, reg = 1.0 / (o->C * S);
    const double *th = at_trial ? L->trial : L->theta;
    double *g = at_trial ? L->trial_grad : L->grad;
    double pen = 0;
    for (int64_t c = 0; c < L->m; c++, col++) {
      for (int64_t j = 0; j < d; j++) {
        double t = th[c * d + j];
        pen += t * t;
        /* d/dcoef of sum_i r_i ((x_i - mean) / scale), x_i = xc_i + shift */
        g[c * d + j] = (w->G[col * d + j] +
                        (w->shift[j] - pb->mean[j]) * w->rsum[col]) /
                           pb->scale[j] / S + t * reg;
      }
      g[L->m * d + c] = w->rsum[col] / S;
    }
    double f = w->loss[q] / S + 0.5 * pen * reg;
    if (at_trial) L->trial_f = f;
    else L->f = f;
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

culeace_status culeace__probe_fit_logistic(culeace_ctx *ctx,
                                           const culeace__probe_rows *rows,
                                           int64_t k, int64_t P,
                                           culeace__probe_problem *prs,
                                           const culeace_probe_opts *o,
                                           const culeace__probe_reduce *red,
                                           culeace_probe **probes) {
  int h = o->history;
  int64_t n = rows->n, d = rows->d;
  int64_t m = k == 2 ? 1 : k, D = m * (d + 1), Mtot = m * P;
  culeace_status st = CULEACE_OK;
  lbfgs_problem *lp = calloc((size_t)P, sizeof *lp);
  int64_t *all = malloc((size_t)P * sizeof *all), *pend = malloc((size_t)P * sizeof *pend);
  double *abuf = malloc((size_t)h * sizeof *abuf);
  eval_ws w;
  memset(&w, 0, sizeof w);
  int T = omp_get_max_threads();
  w.threads = T;
  size_t TMd = (size_t)T * (size_t)Mtot * (size_t)d;
  w.W = culeace__alloc(ctx, (size_t)Mtot * (size_t)d, 4, "probe weights");
  w.G = culeace__alloc(ctx, (size_t)Mtot * (size_t)d + (size_t)(Mtot + P), 8,
                       "probe gradients");
  w.red = red;
  /* float accumulation is good to ~1e-5 in the gradient; below that
   * tolerance the pass accumulates in double */
  w.f64 = o->tol < 1e-5;
  w.kern = pick_kernels(w.f64);
  w.Gp = culeace__alloc(ctx, TMd, w.f64 ? 8 : 4, "probe gradients");
  w.b = culeace__alloc(ctx, (size_t)Mtot, 8, "probe intercepts");
  w.rsp = culeace__alloc(ctx, (size_t)T * (size_t)Mtot, 8, "residual sums");
  w.lsp = culeace__alloc(ctx, (size_t)T * (size_t)P, 8, "probe losses");
  w.zp = culeace__alloc(ctx, (size_t)T * ROWS * (size_t)Mtot, 8, "logits");
  w.rp = culeace__alloc(ctx, (size_t)T * ROWS * (size_t)Mtot, 8, "residuals");
  w.bp = culeace__alloc(ctx, (size_t)T * 3 * ROWS * (size_t)Mtot, 8,
                        "binary losses");
  w.xb = rows->xc ? NULL
                  : culeace__alloc(ctx, (size_t)T * ROWS * (size_t)d, 4,
                                   "row blocks");
  w.rows = rows;
  w.shift = rows->shift;
  if (!lp || !all || !pend || !abuf || !w.W || !w.G ||
      !w.Gp || !w.b || !w.rsp || !w.lsp || !w.zp || !w.rp || !w.bp ||
      (!rows->xc && !w.xb)) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory for %lld probes of %lld x %lld",
                        (long long)P, (long long)n, (long long)d);
    culeace__probe_sum(red, NULL, 0, 1); /* the others: at the first sum */
    goto cleanup;
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
  if (evaluate(&w, n, d, o, prs, probes, lp, all, P, 0)) goto other_failed;
  for (int64_t p = 0; p < P; p++)
    if (max_abs(lp[p].grad, D) <= o->tol) lp[p].state = 1;

  /* Each pass evaluates one trial point of every running problem, wherever
   * it is in its own iteration: a problem whose line search needs another
   * step does not make the others wait a pass (in lockstep, any one retry
   * cost a whole pass over the rows: 1.3 passes per iteration on a 5-fold
   * sweep). A problem's iterates are those of its own L-BFGS run, since a
   * pass computes each problem's loss and gradient on its own. */
  for (int64_t p = 0; p < P; p++) lp[p].ls = -1;
  for (;;) {
    int64_t cnt = 0;
    for (int64_t p = 0; p < P; p++) {
      lbfgs_problem *L = &lp[p];
      if (L->state != 0) continue;
      if (L->ls < 0) { /* a new direction and its first step */
        if (L->dirs == o->max_iter) {
          L->state = 3;
          continue;
        }
        L->dirs++;
        L->ls = 0;
        direction(L, h, abuf);
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
      pend[cnt++] = p;
    }
    if (cnt == 0) break;
    if (evaluate(&w, n, d, o, prs, probes, lp, pend, cnt, 1))
      goto other_failed;
    /* backtracking (Armijo) line search */
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
    culeace_probe *pb = probes[p];
    memcpy(pb->coef, L->theta, (size_t)(m * d) * 8);
    memcpy(pb->intercept, L->theta + m * d, (size_t)m * 8);
    pb->info.n_iter = L->iter;
    pb->info.objective = L->f;
    pb->info.grad_max = max_abs(L->grad, D);
    pb->info.converged = L->state == 1;
  }
  goto cleanup;
other_failed:
  st = culeace__probe_other_failed(ctx);
cleanup:
  for (int64_t p = 0; lp && p < P; p++) {
    free(lp[p].theta);
    free(lp[p].grad);
    free(lp[p].trial);
    free(lp[p].trial_grad);
    free(lp[p].dir);
    free(lp[p].S);
    free(lp[p].Y);
    free(lp[p].rho);
  }
  free(lp);
  free(all);
  free(pend);
  free(abuf);
  free(w.W);
  free(w.G);
  free(w.Gp);
  free(w.b);
  free(w.rsp);
  free(w.lsp);
  free(w.zp);
  free(w.rp);
  free(w.bp);
  free(w.xb);
  return st;
}
