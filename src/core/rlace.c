/* rlace.c — R-LACE, linear adversarial concept erasure (Ravfogel et al.
 * 2022): the relaxed minimax game between P in the Fantope
 * F_k = {0 <= P <= I, tr P = k} and a linear classifier on (x - bias)(I - P),
 * played with alternating mini-batch SGD steps (projected gradient ascent on
 * P, descent on the classifier); the result is the rank-k orthogonal
 * projection from the top-k eigenvectors of the best P seen. The defaults
 * (75000 iterations, batches of 128, steps 0.005, weight decay 1e-4,
 * evaluation every 1000 iterations, epsilon 0.0015, P initialised to
 * 0.1 N(0, 1)) are those of the authors' reference code. CPU only.
 *
 * Shapes: xc (n, d) float32 centred rows; P, V, B (d, d); W (m, d) and
 * b (m) the classifier (m = 1 for k = 2, else k); Xb, H, T (batch, d);
 * S (batch, m) logits, then their gradient; U (d, rank) best directions. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/eval.h"
#include "core/iterative.h"

void culeace_rlace_opts_init(culeace_rlace_opts *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->rank = 1;
  o->iterations = 75000;
  o->batch_size = 128;
  o->lr_P = 0.005;
  o->lr_clf = 0.005;
  o->weight_decay = 1e-4;
  o->evaluate_every = 1000;
  o->epsilon = 0.0015;
  o->C = 1.0;
  o->max_iter = 100;
  o->seed = 0;
  o->affine = 1;
}

/* sum_i clip(lam_i - theta, 0, 1) */
static double clipped_sum(const double *lam, int64_t d, double theta) {
  double s = 0;
  for (int64_t i = 0; i < d; i++) {
    double v = lam[i] - theta;
    s += v <= 0 ? 0 : v >= 1 ? 1 : v;
  }
  return s;
}

/* The shift theta with sum_i clip(lam_i - theta, 0, 1) = k (1 <= k < d):
 * bisection on the decreasing piecewise-linear sum, then the exact root of
 * its linear piece around the bisection point. */
static double fantope_shift(const double *lam, int64_t d, int64_t k) {
  double lo = lam[0], hi = lam[0];
  for (int64_t i = 1; i < d; i++) {
    if (lam[i] < lo) lo = lam[i];
    if (lam[i] > hi) hi = lam[i];
  }
  lo -= 1; /* sum = d > k */
  double mid = 0.5 * (lo + hi);
  for (int it = 0; it < 200 && lo < mid && mid < hi; it++) {
    if (clipped_sum(lam, d, mid) > (double)k) lo = mid;
    else hi = mid;
    mid = 0.5 * (lo + hi);
  }
  int64_t n_free = 0, n_one = 0;
  double s_free = 0;
  for (int64_t i = 0; i < d; i++) {
    double v = lam[i] - mid;
    if (v >= 1) n_one++;
    else if (v > 0) {
      n_free++;
      s_free += lam[i];
    }
  }
  if (n_free == 0) return mid;
  double theta = (s_free + (double)n_one - (double)k) / (double)n_free;
  /* keep the exact root only if the active set it implies is the same */
  for (int64_t i = 0; i < d; i++) {
    double v = lam[i] - mid, w = lam[i] - theta;
    int a = v >= 1 ? 2 : v > 0, b = w >= 1 ? 2 : w > 0;
    if (a != b && fabs(w) > 1e-12 && fabs(w - 1) > 1e-12) return mid;
  }
  return theta;
}

culeace_status culeace__fantope_project(culeace_ctx *ctx, double *P,
                                        int64_t d, int64_t k, double *work,
                                        double *eig_out) {
  if (d < 1 || k < 1 || k > d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "Fantope projection: rank %lld for d = %lld (need "
                          "1 <= rank <= d)", (long long)k, (long long)d);
  size_t dd;
  if (!culeace__mul_size((size_t)d, (size_t)d, &dd) || dd > SIZE_MAX / 16)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "d = %lld is too large", (long long)d);
  double *own = NULL;
  if (!work) {
    own = culeace__alloc(ctx, 2 * dd + (size_t)d, sizeof(double),
                         "the Fantope projection's workspace");
    if (!own) return CULEACE_ERR_OUT_OF_MEMORY;
    work = own;
  }
  double *V = work, *B = work + dd, *lam = work + 2 * dd;
  memcpy(V, P, dd * sizeof *V);
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)d,
                                   V, (lapack_int)d, lam);
  if (info) {
    free(own);
    return culeace__error(ctx, CULEACE_ERR_LAPACK,
                          "Fantope projection: dsyevd failed (info %d)",
                          (int)info);
  }
  if (k == d) {
    for (int64_t j = 0; j < d; j++) lam[j] = 1;
  } else {
    double theta = fantope_shift(lam, d, k);
    for (int64_t j = 0; j < d; j++) {
      double v = lam[j] - theta;
      lam[j] = v <= 0 ? 0 : v >= 1 ? 1 : v;
    }
  }
  if (eig_out) memcpy(eig_out, lam, (size_t)d * sizeof *lam);
  /* P = V diag(lam) V^T: B = V diag(lam), P = B V^T */
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++)
      B[(size_t)i * (size_t)d + (size_t)j] =
          V[(size_t)i * (size_t)d + (size_t)j] * lam[j];
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d, (int)d, (int)d,
              1.0, B, (int)d, V, (int)d, 0.0, P, (int)d);
  for (int64_t i = 0; i < d; i++) /* exactly symmetric */
    for (int64_t j = i + 1; j < d; j++) {
      double *a = P + (size_t)i * (size_t)d + (size_t)j,
             *b = P + (size_t)j * (size_t)d + (size_t)i;
      double s = 0.5 * (*a + *b);
      *a = *b = s;
    }
  free(own);
  return CULEACE_OK;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(culeace__rng *r) {
  return (double)(culeace__rng_next(r) >> 11) * 0x1.0p-53;
}

/* Standard normal (Box-Muller; one of the pair). */
static double normal01(culeace__rng *r) {
  double u = uniform01(r), v = uniform01(r);
  return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

/* Working state of one game. */
typedef struct {
  culeace_ctx *ctx;
  const float *xc;
  const int32_t *y;
  int64_t n, d, k, m, nt, B;
  int64_t *idx;   /* (nt) training rows, partially shuffled per batch */
  int32_t *yb;    /* (B) batch labels */
  double *Xb, *H, *T, *S; /* (B, d), (B, d), (B, d), (B, m) */
  double *P, *W, *b;      /* (d, d), (m, d), (m) */
  double *work;           /* (2 d d + d) eigendecomposition */
  culeace__rng rng;
} game;

/* Draws B distinct training rows into Xb, yb. */
static void draw_batch(game *g) {
  for (int64_t j = 0; j < g->B; j++) {
    int64_t t = j + (int64_t)culeace__rng_below(&g->rng,
                                                (uint64_t)(g->nt - j));
    int64_t s = g->idx[j];
    g->idx[j] = g->idx[t];
    g->idx[t] = s;
    const float *r = g->xc + (size_t)g->idx[j] * (size_t)g->d;
    double *o = g->Xb + (size_t)j * (size_t)g->d;
    for (int64_t c = 0; c < g->d; c++) o[c] = r[c];
    g->yb[j] = g->y[g->idx[j]];
  }
}

/* H = Xb (I - P); S = gradient of the batch's mean log-loss with respect to
 * the logits H W^T + b. */
static void forward(game *g) {
  int B = (int)g->B, d = (int)g->d, m = (int)g->m;
  memcpy(g->H, g->Xb, (size_t)B * (size_t)d * sizeof *g->H);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, d, -1.0, g->Xb,
              d, g->P, d, 1.0, g->H, d);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, m, d, 1.0, g->H, d,
              g->W, d, 0.0, g->S, m);
  for (int i = 0; i < B; i++) {
    double *s = g->S + (size_t)i * (size_t)m;
    if (m == 1) {
      double z = s[0] + g->b[0];
      double p = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
      s[0] = (p - (g->yb[i] == 1)) / B;
      continue;
    }
    double mx = -INFINITY, tot = 0;
    for (int c = 0; c < m; c++) {
      s[c] += g->b[c];
      if (s[c] > mx) mx = s[c];
    }
    for (int c = 0; c < m; c++) tot += (s[c] = exp(s[c] - mx));
    for (int c = 0; c < m; c++) s[c] = (s[c] / tot - (g->yb[i] == c)) / B;
  }
}

/* One projected gradient-ascent step of P on the log-loss. */
static culeace_status step_P(game *g, double lr, double wd, int64_t rank) {
  int B = (int)g->B, d = (int)g->d, m = (int)g->m;
  draw_batch(g);
  forward(g);
  /* d loss / dP = -Xb^T S W; ascent with weight decay:
   * P <- (1 - lr wd) P - lr Xb^T (S W) */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, d, m, 1.0, g->S,
              m, g->W, d, 0.0, g->T, d);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, B, -lr, g->Xb, d,
              g->T, d, 1.0 - lr * wd, g->P, d);
  for (int64_t i = 0; i < d; i++) /* the step on the symmetric part */
    for (int64_t j = i + 1; j < d; j++) {
      double *a = g->P + (size_t)i * (size_t)d + (size_t)j,
             *c = g->P + (size_t)j * (size_t)d + (size_t)i;
      *a = *c = 0.5 * (*a + *c);
    }
  return culeace__fantope_project(g->ctx, g->P, g->d, rank, g->work, NULL);
}

/* One SGD step of the classifier on the log-loss (with weight decay). */
static void step_clf(game *g, double lr, double wd) {
  int B = (int)g->B, d = (int)g->d, m = (int)g->m;
  draw_batch(g);
  forward(g);
  for (int c = 0; c < m; c++) {
    double gb = 0;
    for (int i = 0; i < B; i++) gb += g->S[(size_t)i * (size_t)m + (size_t)c];
    g->b[c] -= lr * (gb + wd * g->b[c]);
  }
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, d, B, -lr, g->S, m,
              g->H, d, 1.0 - lr * wd, g->W, d);
}

/* Top-rank eigenvectors of the symmetric P as rows of U (rank, d). */
static culeace_status top_directions(game *g, int64_t rank, double *U) {
  int64_t d = g->d;
  double *V = g->work, *lam = g->work + 2 * (size_t)d * (size_t)d;
  memcpy(V, g->P, (size_t)d * (size_t)d * sizeof *V);
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)d,
                                   V, (lapack_int)d, lam);
  if (info)
    return culeace__error(g->ctx, CULEACE_ERR_LAPACK,
                          "R-LACE: dsyevd failed (info %d)", (int)info);
  for (int64_t a = 0; a < rank; a++)
    for (int64_t j = 0; j < d; j++)
      U[(size_t)a * (size_t)d + (size_t)j] =
          V[(size_t)j * (size_t)d + (size_t)(d - 1 - a)];
  return CULEACE_OK;
}

/* Scores directions U (rank, d): a probe on the training rows of
 * xc (I - U^T U) (into xe), its log-loss and accuracy on the test rows. */
static culeace_status evaluate(game *g, const double *U, int64_t rank,
                               const uint8_t *train, const uint8_t *test,
                               const culeace_probe_opts *po, float *xe,
                               double *proba, double *loss, double *acc) {
  int64_t n = g->n, d = g->d;
  for (int64_t i = 0; i < n; i++) {
    const float *r = g->xc + (size_t)i * (size_t)d;
    float *o = xe + (size_t)i * (size_t)d;
    for (int64_t j = 0; j < d; j++) o[j] = r[j];
    for (int64_t a = 0; a < rank; a++) {
      const double *u = U + (size_t)a * (size_t)d;
      double s = 0;
      for (int64_t j = 0; j < d; j++) s += (double)r[j] * u[j];
      for (int64_t j = 0; j < d; j++) o[j] = (float)((double)o[j] - s * u[j]);
    }
  }
  const int32_t *lab1[1] = {g->y};
  const uint8_t *tr1[1] = {train};
  culeace_probe *p = NULL;
  culeace_status st =
      culeace_probe_fit_batch(g->ctx, xe, n, d, d, g->k, 1, lab1, tr1, po, &p);
  if (!st) st = culeace_probe_predict_proba(g->ctx, p, xe, n, d, proba);
  culeace_probe_free(p);
  if (st) return st;
  *loss = culeace__log_loss(n, g->k, g->y, proba, test);
  *acc = culeace__accuracy(n, g->k, g->y, proba, test);
  return CULEACE_OK;
}

static int check_opts(const culeace_rlace_opts *o, int64_t d) {
  return o->rank >= 1 && o->rank <= d && o->iterations >= 1 &&
         o->batch_size >= 1 && o->lr_P > 0 && isfinite(o->lr_P) &&
         o->lr_clf > 0 && isfinite(o->lr_clf) && o->weight_decay >= 0 &&
         isfinite(o->weight_decay) && o->evaluate_every >= 1 &&
         o->epsilon >= 0 && isfinite(o->epsilon) && o->C > 0 &&
         isfinite(o->C) && o->max_iter >= 1;
}

culeace_status culeace_rlace_fit(culeace_ctx *ctx, const float *x, int64_t n,
                                 int64_t d, int64_t ldx,
                                 const int32_t *labels, int64_t k,
                                 const uint8_t *train,
                                 const culeace_rlace_opts *opts,
                                 culeace_eraser **out,
                                 culeace_rlace_report *report) {
  if (!out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  culeace_rlace_opts o;
  culeace_rlace_opts_init(&o);
  if (opts) o = *opts;
  culeace_status st =
      culeace__iter_check(ctx, "R-LACE", x, n, d, ldx, labels, k, train);
  if (st) return st;
  if (!check_opts(&o, d))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "R-LACE: options rank = %lld (d = %lld), iterations "
                          "= %d, batch_size = %lld, lr_P = %g, lr_clf = %g, "
                          "weight_decay = %g, evaluate_every = %d, epsilon = "
                          "%g, C = %g, max_iter = %d: need 1 <= rank <= d, "
                          "positive counts and steps, C > 0, decay and "
                          "epsilon >= 0", (long long)o.rank, (long long)d,
                          o.iterations, (long long)o.batch_size, o.lr_P,
                          o.lr_clf, o.weight_decay, o.evaluate_every,
                          o.epsilon, o.C, o.max_iter);
  size_t dd;
  if (!culeace__mul_size((size_t)d, (size_t)d, &dd) || dd > SIZE_MAX / 16)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "R-LACE: d = %lld is too large", (long long)d);
  game g;
  memset(&g, 0, sizeof g);
  g.ctx = ctx;
  g.y = labels;
  g.n = n;
  g.d = d;
  g.k = k;
  g.m = k == 2 ? 1 : k;
  for (int64_t i = 0; i < n; i++) g.nt += train[i] != 0;
  g.B = o.batch_size < g.nt ? o.batch_size : g.nt;
  float *xc = NULL, *xe = NULL;
  double *bias = culeace__alloc(ctx, (size_t)d, sizeof(double), "the mean");
  double *U = culeace__alloc(ctx, (size_t)o.rank, (size_t)d * sizeof(double),
                             "the directions");
  double *Ubest = culeace__alloc(ctx, (size_t)o.rank,
                                 (size_t)d * sizeof(double), "the directions");
  double *proba = culeace__alloc(ctx, (size_t)n, (size_t)k * sizeof(double),
                                 "the probe's probabilities");
  uint8_t *test = culeace__alloc(ctx, (size_t)n, 1, "the held-out mask");
  g.idx = culeace__alloc(ctx, (size_t)g.nt, sizeof *g.idx, "row indices");
  g.yb = culeace__alloc(ctx, (size_t)g.B, sizeof *g.yb, "batch labels");
  g.Xb = culeace__alloc(ctx, (size_t)g.B, (size_t)d * sizeof(double), "batch");
  g.H = culeace__alloc(ctx, (size_t)g.B, (size_t)d * sizeof(double), "batch");
  g.T = culeace__alloc(ctx, (size_t)g.B, (size_t)d * sizeof(double), "batch");
  g.S = culeace__alloc(ctx, (size_t)g.B, (size_t)g.m * sizeof(double),
                       "logits");
  g.P = culeace__alloc(ctx, dd, sizeof(double), "P");
  g.W = culeace__alloc(ctx, (size_t)g.m, (size_t)d * sizeof(double),
                       "the classifier");
  g.b = culeace__alloc(ctx, (size_t)g.m, sizeof(double), "the classifier");
  g.work = culeace__alloc(ctx, 2 * dd + (size_t)d, sizeof(double),
                          "the eigendecomposition workspace");
  size_t nd = 0;
  if (culeace__mul_size((size_t)n, (size_t)d, &nd))
    xe = culeace__alloc(ctx, nd, sizeof(float), "the projected rows");
  if (!bias || !U || !Ubest || !proba || !test || !g.idx || !g.yb || !g.Xb ||
      !g.H || !g.T || !g.S || !g.P || !g.W || !g.b || !g.work || !xe) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto done;
  }
  if ((st = culeace__iter_centre(ctx, x, n, d, ldx, o.affine, bias, &xc)))
    goto done;
  g.xc = xc;
  culeace_rlace_report rep;
  memset(&rep, 0, sizeof rep);
  {
    int64_t t = 0;
    double *cnt = proba; /* (k) scratch before the first evaluation */
    memset(cnt, 0, (size_t)k * sizeof *cnt);
    for (int64_t i = 0; i < n; i++) {
      test[i] = !train[i];
      if (train[i]) {
        g.idx[t++] = i;
        cnt[labels[i]] += 1;
      }
    }
    for (int64_t c = 0; c < k; c++) {
      double p = cnt[c] / (double)g.nt;
      if (p > 0) rep.label_entropy -= p * log(p);
    }
  }
  rep.majority = culeace__majority_accuracy(n, k, labels, train, test, NULL);
  /* the reference's initialisation: P ~ 0.1 N(0, 1) (symmetrised), the
   * classifier uniform in +-1/sqrt(d) (torch.nn.Linear's) */
  culeace__rng_seed(&g.rng, o.seed);
  for (size_t i = 0; i < dd; i++) g.P[i] = 0.1 * normal01(&g.rng);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i + 1; j < d; j++) {
      double *a = g.P + (size_t)i * (size_t)d + (size_t)j,
             *c = g.P + (size_t)j * (size_t)d + (size_t)i;
      *a = *c = 0.5 * (*a + *c);
    }
  double bound = 1.0 / sqrt((double)d);
  for (size_t i = 0; i < (size_t)g.m * (size_t)d; i++)
    g.W[i] = bound * (2 * uniform01(&g.rng) - 1);
  for (int64_t c = 0; c < g.m; c++) g.b[c] = bound * (2 * uniform01(&g.rng) - 1);
  culeace_probe_opts po;
  culeace_probe_opts_init(&po);
  po.kind = CULEACE_PROBE_LOGISTIC;
  po.C = o.C;
  po.max_iter = o.max_iter;
  po.standardize = 0; /* an erased direction must stay erased */
  rep.best_loss = -1;
  for (int it = 0; it < o.iterations; it++) {
    if ((st = step_P(&g, o.lr_P, o.weight_decay, o.rank))) goto done;
    step_clf(&g, o.lr_clf, o.weight_decay);
    rep.iterations = it + 1;
    if (it % o.evaluate_every) continue;
    double loss, acc;
    if ((st = top_directions(&g, o.rank, U))) goto done;
    if ((st = evaluate(&g, U, o.rank, train, test, &po, xe, proba, &loss,
                       &acc)))
      goto done;
    rep.evaluations++;
    if (loss > rep.best_loss) {
      rep.best_loss = loss;
      rep.accuracy = acc;
      rep.best_iteration = it;
      memcpy(Ubest, U, (size_t)o.rank * (size_t)d * sizeof *U);
    }
    if (it > 1 && rep.best_loss >= rep.label_entropy - o.epsilon) break;
  }
  st = culeace__iter_eraser(ctx, d, o.rank, Ubest, bias, o.affine,
                            CULEACE_METHOD_RLACE, n, k, out);
  if (!st && report) *report = rep;
done:
  free(xc);
  free(xe);
  free(bias);
  free(U);
  free(Ubest);
  free(proba);
  free(test);
  free(g.idx);
  free(g.yb);
  free(g.Xb);
  free(g.H);
  free(g.T);
  free(g.S);
  free(g.P);
  free(g.W);
  free(g.b);
  free(g.work);
  return st;
}
