/* probe_pass.c — the pass over the rows that every L-BFGS evaluation of the
 * logistic probes makes (probe_logistic.c): for M stacked outputs of the
 * pending problems, each row's logits, residuals and losses, and the
 * gradient sums G = R^T xc, rsum = R^T 1, loss per problem. On the CPU the
 * rows go through the OpenMP threads in blocks of 8 with register-tiled
 * kernels, each row read once per pass; a backend with probe_open (CUDA)
 * keeps the rows on its device and does the same with two GEMMs, and this
 * CPU pass is its reference (tests/c/test_backend_conformance.c). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/probe.h"

/* per-block kernels (below), chosen for the CPU */
enum { ROWS = 8 }; /* rows per kernel call */
/* Blocks of ROWS rows whose losses are taken together, at most: the losses
 * are long chains of dependent operations, and a block's few (ROWS x
 * outputs) left the core waiting on their latency; a group holds as many
 * blocks as fit 32 KiB of float32 rows (L1), so that the gradient kernel
 * still finds them there. */
enum { GROUP = 4, GROUP_BYTES = 32 << 10 };
typedef void (*dots_fn)(const float *, const double *, int64_t, int64_t,
                        const float *const *, double *);
typedef void (*axpy_fn)(void *, double *, const double *, int64_t, int64_t,
                        const float *const *);
typedef struct {
  dots_fn dots;
  axpy_fn axpy;
  culeace__losses_fn losses; /* binary rows (probe_loss.c) */
} block_kernels;

struct culeace__probe_pass {
  culeace_ctx *ctx;
  void *dev; /* the backend's pass (probe_open), or NULL: this CPU pass */
  const culeace__probe_rows *rows;
  const culeace__probe_problem *prs;
  int64_t m;       /* outputs per problem */
  int64_t Mtot;    /* m P: the most outputs one evaluation stacks */
  int threads;
  int group;       /* blocks per group (<= GROUP) */
  int f64;         /* accumulate in float64 (tight tolerances) */
  block_kernels kern; /* per-block kernels for this CPU and precision */
  float *xb;       /* (threads, GROUP, ROWS, d) a group of 2-byte rows,
                      centred */
  void *Gp;        /* (threads, Mtot, d) per-thread sum_i r_i xc_i, float or
                      double as f64 says */
  double *rsp;     /* (threads, Mtot) per-thread residual sums */
  double *lsp;     /* (threads, P) per-thread losses */
  double *zp, *rp; /* (threads, GROUP, ROWS, Mtot) a group's logits,
                      residuals */
  double *bp;      /* (threads, 3, GROUP, ROWS, Mtot) binary groups:
                      weights, labels and losses of each logit */
  const float *W;  /* the evaluation's (M, d) weights and (M) intercepts */
  const double *b;
};

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
                            int64_t rows, int64_t nb, int64_t m,
                            const culeace__probe_problem *prs,
                            const int64_t *idx, int64_t cnt, double *ls,
                            double *bw, culeace__losses_fn losses);

/* x[0..ROWS-1]: the rows i0 .. i0+nb-1 (past nb: the first again), centred:
 * pointers into the centred copy, or 2-byte rows converted and centred
 * into slot k of thread t's group buffer (L1-sized: the kernels then read
 * them from there, and the pass streams half the bytes of a float32
 * copy). */
static void block_rows(const culeace__probe_pass *w, int t, int k, int64_t i0,
                       int64_t nb, int64_t d, const float **x) {
  const culeace__probe_rows *r = w->rows;
  if (r->xc) {
    for (int q = 0; q < ROWS; q++) x[q] = r->xc + (i0 + (q < nb ? q : 0)) * d;
    return;
  }
  float *buf = w->xb + ((size_t)t * GROUP + (size_t)k) * ROWS * (size_t)d;
  for (int q = 0; q < nb; q++)
    x[q] = culeace__probe_row(r, i0 + q, buf + (size_t)q * (size_t)d);
  for (int q = (int)nb; q < ROWS; q++) x[q] = x[0];
}

/* The pass over the rows for M stacked outputs: per-thread logits,
 * residuals, losses and gradient sums, rows in blocks of ROWS, blocks in
 * groups of w->group over the OpenMP threads: a group's logits block by
 * block, its residuals and losses together, then its gradient sums block
 * by block. */
#define DEFINE_ROW_PASS(SUFFIX, ACC)                                           \
  static void row_pass_##SUFFIX(culeace__probe_pass *w, int64_t M,           \
                                const int64_t *idx, int64_t cnt) {             \
    int64_t n = w->rows->n, d = w->rows->d, GR = w->group;                     \
    int T = w->threads;                                                        \
    ACC *Gall = (ACC *)w->Gp;                                                  \
    memset(Gall, 0, (size_t)T * (size_t)M * (size_t)d * sizeof(ACC));         \
    memset(w->rsp, 0, (size_t)T * (size_t)M * sizeof *w->rsp);                 \
    memset(w->lsp, 0, (size_t)T * (size_t)cnt * sizeof *w->lsp);              \
    _Pragma("omp parallel num_threads(T)") {                                   \
      int t = omp_get_thread_num();                                            \
      ACC *G = Gall + (size_t)t * M * d;                                       \
      double *rs = w->rsp + (size_t)t * M, *ls = w->lsp + (size_t)t * cnt;     \
      double *z = w->zp + (size_t)t * GROUP * ROWS * M;                        \
      double *r = w->rp + (size_t)t * GROUP * ROWS * M;                        \
      double *bw = w->bp + (size_t)t * 3 * GROUP * ROWS * M;                   \
      int64_t nblk = (n + ROWS - 1) / ROWS, ngrp = (nblk + GR - 1) / GR;       \
      _Pragma("omp for schedule(static)") for (int64_t g = 0; g < ngrp;        \
                                               g++) {                          \
        int64_t b0 = g * GR, gb = nblk - b0 < GR ? nblk - b0 : GR;             \
        int64_t i0 = b0 * ROWS, nr = n - i0 < gb * ROWS ? n - i0 : gb * ROWS;  \
        const float *x[GROUP][ROWS]; /* rows past the end repeat the first */ \
        for (int k = 0; k < gb; k++) {                                         \
          int64_t j0 = i0 + k * ROWS, nb = n - j0 < ROWS ? n - j0 : ROWS;      \
          block_rows(w, t, k, j0, nb, d, x[k]);                                \
          w->kern.dots(w->W, w->b, M, d, x[k], z + k * ROWS * M);              \
        }                                                                      \
        block_residuals(z, r, M, i0, gb * ROWS, nr, w->m, w->prs, idx, cnt,    \
                        ls, bw, w->kern.losses);                               \
        for (int k = 0; k < gb; k++)                                           \
          w->kern.axpy(G, rs, r + k * ROWS * M, M, d, x[k]);                   \
      }                                                                        \
    }                                                                          \
  }

/* Residuals (and losses into ls) of a group of `rows` rows from i0, of
 * which the first nb are rows of the layer, from their logits z (rows,
 * M); rows past nb or outside a problem's training set get zero
 * residuals. Binary problems (one output
 * each) go through losses (culeace__binary_losses) all at once, with bw
 * (3, rows, M) as scratch. */
static void block_residuals(const double *z, double *r, int64_t M, int64_t i0,
                            int64_t rows, int64_t nb, int64_t m,
                            const culeace__probe_problem *prs,
                            const int64_t *idx, int64_t cnt, double *ls,
                            double *bw, culeace__losses_fn losses) {
  if (m == 1) { /* every problem of a batch has the same m */
    double *s = bw, *y = bw + rows * M, *loss = bw + 2 * rows * M;
    /* without branches: which rows train is as good as random (the folds
     * are), and a branch on it mispredicted often enough to make this
     * loop cost as much as the losses */
    for (int64_t q = 0; q < cnt; q++) {
      const culeace__probe_problem *pr = &prs[idx[q]];
      const uint8_t *tr = pr->train;
      const int32_t *yv = pr->y;
      const double *cw = pr->class_w;
      static const double as_double[2] = {0.0, 1.0};
      for (int64_t bi = 0; bi < rows; bi++) {
        int64_t in = bi < nb, i = in ? i0 + bi : i0, e = bi * M + q;
        int32_t t = (int32_t)(in & (tr[i] != 0));
        int32_t yi = yv[i] & -t; /* 0 outside the training rows */
        s[e] = cw[yi] * as_double[t];
        y[e] = as_double[yi == 1]; /* a load: GCC made (double) a branch */
      }
    }
    losses(z, s, y, rows * M, r, loss);
    for (int64_t bi = 0; bi < nb; bi++)
      for (int64_t q = 0; q < cnt; q++) ls[q] += loss[bi * M + q];
    return;
  }
  for (int64_t bi = 0; bi < rows; bi++) {
    const double *zb = z + bi * M;
    double *rb = r + bi * M;
    int64_t i = i0 + bi, col = 0;
    for (int64_t q = 0; q < cnt; q++) {
      const culeace__probe_problem *pr = &prs[idx[q]];
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


/* ---- open / evaluate / close -------------------------------------------- */

static void free_cpu(culeace__probe_pass *p) {
  free(p->xb);
  free(p->Gp);
  free(p->rsp);
  free(p->lsp);
  free(p->zp);
  free(p->rp);
  free(p->bp);
}

culeace_status culeace__probe_pass_open(culeace_ctx *ctx,
                                        const culeace__probe_rows *rows,
                                        int64_t m, int64_t P,
                                        const culeace__probe_problem *prs,
                                        int f64, int device,
                                        culeace__probe_pass **out) {
  *out = NULL;
  culeace__probe_pass *p = calloc(1, sizeof *p);
  if (!p)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory for a probe pass");
  p->ctx = ctx, p->rows = rows, p->prs = prs, p->m = m, p->Mtot = m * P;
  p->f64 = f64;
  const culeace_backend *be = ctx->backend;
  if (device && be->probe_open && rows->n > 0) {
    culeace_status st = be->probe_open(ctx, rows, m, P, prs, f64, &p->dev);
    if (st == CULEACE_OK) {
      *out = p;
      return CULEACE_OK;
    }
    p->dev = NULL;
    if (st != CULEACE_ERR_OUT_OF_MEMORY) {
      free(p);
      return st;
    }
    /* rows too large for the device: the CPU pass below */
  }
  int T = omp_get_max_threads();
  int64_t d = rows->d, Mt = p->Mtot;
  p->threads = T;
  p->kern = pick_kernels(f64);
  p->Gp = culeace__alloc(ctx, (size_t)T * (size_t)Mt * (size_t)d, f64 ? 8 : 4,
                         "probe gradients");
  p->rsp = culeace__alloc(ctx, (size_t)T * (size_t)Mt, 8, "residual sums");
  p->lsp = culeace__alloc(ctx, (size_t)T * (size_t)P, 8, "probe losses");
  int64_t fit = GROUP_BYTES / (ROWS * 4 * (d > 0 ? d : 1));
  p->group = fit < 1 ? 1 : fit > GROUP ? GROUP : (int)fit;
  size_t TR = (size_t)T * GROUP * ROWS; /* rows of every thread's group */
  p->zp = culeace__alloc(ctx, TR * (size_t)Mt, 8, "logits");
  p->rp = culeace__alloc(ctx, TR * (size_t)Mt, 8, "residuals");
  p->bp = culeace__alloc(ctx, 3 * TR * (size_t)Mt, 8, "binary losses");
  p->xb = rows->xc ? NULL
                   : culeace__alloc(ctx, TR * (size_t)d, 4, "row blocks");
  if (!p->Gp || !p->rsp || !p->lsp || !p->zp || !p->rp || !p->bp ||
      (!rows->xc && !p->xb)) {
    free_cpu(p);
    free(p);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory for %lld probes of %lld x %lld",
                          (long long)P, (long long)rows->n, (long long)d);
  }
  *out = p;
  return CULEACE_OK;
}

int culeace__probe_pass_on_device(const culeace__probe_pass *p) {
  return p->dev != NULL;
}

/* The CPU pass: per-thread sums of the rows' blocks, then added. */
static void eval_cpu(culeace__probe_pass *p, int64_t cnt, const int64_t *idx,
                     const float *W, const double *b, double *G, double *rsum,
                     double *loss) {
  int64_t M = cnt * p->m, d = p->rows->d;
  p->W = W, p->b = b;
  if (p->f64) row_pass_f64(p, M, idx, cnt);
  else row_pass_f32(p, M, idx, cnt);
  int T = p->threads;
  for (int64_t c = 0; c < M; c++) {
    double sum = 0;
    for (int t = 0; t < T; t++) sum += p->rsp[(size_t)t * M + c];
    rsum[c] = sum;
    for (int64_t j = 0; j < d; j++) {
      double g = 0;
      for (int t = 0; t < T; t++) {
        size_t at = ((size_t)t * M + c) * d + j;
        g += p->f64 ? ((const double *)p->Gp)[at] : ((const float *)p->Gp)[at];
      }
      G[c * d + j] = g;
    }
  }
  for (int64_t q = 0; q < cnt; q++) {
    double sum = 0;
    for (int t = 0; t < T; t++) sum += p->lsp[(size_t)t * cnt + q];
    loss[q] = sum;
  }
}

culeace_status culeace__probe_pass_eval(culeace__probe_pass *p, int64_t cnt,
                                        const int64_t *idx, const float *W,
                                        const double *b, double *G,
                                        double *rsum, double *loss) {
  culeace__probe_eval_job job = {p, cnt, idx, W, b, G, rsum, loss};
  return culeace__probe_pass_eval_many(1, &job);
}

culeace_status culeace__probe_pass_eval_many(
    int64_t count, const culeace__probe_eval_job *jobs) {
  enum { QUEUE = 64 }; /* device passes queued per wait */
  culeace__probe_eval_job dev[QUEUE];
  culeace_ctx *ctx = NULL;
  int64_t nd = 0;
  for (int64_t j = 0; j < count; j++) {
    culeace__probe_pass *p = jobs[j].pass;
    if (!p->dev) {
      eval_cpu(p, jobs[j].cnt, jobs[j].idx, jobs[j].W, jobs[j].b, jobs[j].G,
               jobs[j].rsum, jobs[j].loss);
      continue;
    }
    dev[nd] = jobs[j];
    dev[nd++].pass = p->dev; /* the backend's own handle */
    ctx = p->ctx;
    if (nd == QUEUE) {
      culeace_status st = ctx->backend->probe_eval(ctx, nd, dev);
      if (st) return st;
      nd = 0;
    }
  }
  if (nd) return ctx->backend->probe_eval(ctx, nd, dev);
  return CULEACE_OK;
}

void culeace__probe_pass_close(culeace__probe_pass *p) {
  if (!p) return;
  if (p->dev) p->ctx->backend->probe_close(p->ctx->backend_state, p->dev);
  free_cpu(p);
  free(p);
}
