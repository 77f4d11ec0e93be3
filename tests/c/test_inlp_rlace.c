/* test_inlp_rlace.c — INLP and R-LACE on planted data: INLP's directions
 * orthogonal and orthonormal, held-out accuracy falling to the majority
 * baseline with rank = iterations; the Fantope projection (trace, eigenvalue
 * range, a worked example, idempotence); R-LACE's exact rank-k projection
 * and the accuracy drop on a planted rank-1 concept; argument errors. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/iterative.h"
#include "culeace.h"
#include "testutil.h"

enum { N = 1200, D = 12 };
static float X[N * D];
static int32_t Y[N];
static uint8_t TRAIN[N];

/* y balanced; x = N(0, I) + concept: mean shift along the unit u1 (strength
 * a) plus, with a2 > 0, a weaker shift along u2 correlated with noise so one
 * probe direction does not remove everything. */
static void make_data(uint64_t seed, double a, double a2) {
  tu_rng r;
  tu_seed(&r, seed);
  double u1[D], u2[D], s1 = 0, s2 = 0;
  for (int j = 0; j < D; j++) {
    u1[j] = tu_normal(&r);
    s1 += u1[j] * u1[j];
  }
  for (int j = 0; j < D; j++) u1[j] /= sqrt(s1);
  for (int j = 0; j < D; j++) {
    u2[j] = tu_normal(&r);
    s2 += u2[j] * u2[j];
  }
  for (int j = 0; j < D; j++) u2[j] /= sqrt(s2);
  for (int i = 0; i < N; i++) {
    Y[i] = i % 2;
    TRAIN[i] = i % 5 != 0;
    double sgn = Y[i] ? 1.0 : -1.0;
    for (int j = 0; j < D; j++)
      X[i * D + j] = (float)(tu_normal(&r) + 3.0 + sgn * a * u1[j] +
                             sgn * a2 * u2[j] * (1 + tu_normal(&r)));
  }
}

/* Held-out accuracy of a fresh logistic probe on the erased rows. */
static double erased_accuracy(culeace_ctx *ctx, const culeace_eraser *e,
                              double *majority) {
  static float xe[N * D];
  static double proba[N * 2];
  memcpy(xe, X, sizeof X);
  CHECK_OK(ctx, culeace_eraser_apply(ctx, e, xe, CULEACE_F32, N, D));
  culeace_probe_opts po;
  culeace_probe_opts_init(&po);
  po.standardize = 0;
  const int32_t *lab[1] = {Y};
  const uint8_t *tr[1] = {TRAIN};
  culeace_probe *p = NULL;
  CHECK_OK(ctx, culeace_probe_fit_batch(ctx, xe, N, D, D, 2, 1, lab, tr, &po,
                                        &p));
  if (!p) return NAN;
  CHECK_OK(ctx, culeace_probe_predict_proba(ctx, p, xe, N, D, proba));
  culeace_probe_free(p);
  int64_t ok = 0, cnt = 0, ones = 0;
  for (int i = 0; i < N; i++)
    if (!TRAIN[i]) {
      cnt++;
      ones += Y[i];
      ok += (proba[i * 2 + 1] > proba[i * 2]) == (Y[i] == 1);
    }
  *majority = (double)(ones > cnt - ones ? ones : cnt - ones) / (double)cnt;
  return (double)ok / (double)cnt;
}

/* U (d, r) from the eraser: L; checks R = L^T, |u_i . u_j| and U^T U = I. */
static void check_orthonormal(const culeace_eraser *e, int64_t r,
                              const char *what) {
  double *L = malloc((size_t)(D * (r ? r : 1)) * sizeof *L);
  double *R = malloc((size_t)(D * (r ? r : 1)) * sizeof *R);
  culeace_eraser_factors(e, L, R, NULL);
  double worst_off = 0, worst_norm = 0, worst_t = 0;
  for (int64_t a = 0; a < r; a++) {
    for (int64_t b = 0; b <= a; b++) {
      double s = 0;
      for (int j = 0; j < D; j++) s += L[j * r + a] * L[j * r + b];
      if (a == b) worst_norm = fmax(worst_norm, fabs(s - 1));
      else worst_off = fmax(worst_off, fabs(s));
    }
    for (int j = 0; j < D; j++)
      worst_t = fmax(worst_t, fabs(L[j * r + a] - R[a * D + j]));
  }
  CHECK(worst_off < 1e-10, "%s: |u_i . u_j| up to %g", what, worst_off);
  CHECK(worst_norm < 1e-10, "%s: | |u_i|^2 - 1 | up to %g", what, worst_norm);
  CHECK(worst_t == 0, "%s: R is not L^T (%g)", what, worst_t);
  free(L);
  free(R);
}

static void test_inlp(culeace_ctx *ctx, double a2) {
  make_data(11, 2.0, a2);
  culeace_inlp_opts o;
  culeace_inlp_opts_init(&o);
  culeace_inlp_report rep;
  double acc[21];
  culeace_eraser *e = NULL;
  CHECK_OK(ctx, culeace_inlp_fit(ctx, X, N, D, D, Y, 2, TRAIN, &o, &e, &rep,
                                 acc));
  if (!e) return;
  culeace_eraser_info info;
  culeace_eraser_info_get(e, &info);
  CHECK(info.method == CULEACE_METHOD_INLP, "method %d", (int)info.method);
  CHECK(info.n_seen == N && info.n_classes == 2 && info.z_dim == 1,
        "info n_seen %lld n_classes %lld z_dim %lld", (long long)info.n_seen,
        (long long)info.n_classes, (long long)info.z_dim);
  CHECK(rep.stopped == 1, "INLP did not reach the threshold");
  CHECK(rep.iterations >= 1 && rep.rank == rep.iterations &&
            info.rank == rep.rank,
        "rank %lld, iterations %d, eraser rank %lld", (long long)rep.rank,
        rep.iterations, (long long)info.rank);
  CHECK(acc[0] > 0.9, "accuracy before erasure %g", acc[0]);
  CHECK(acc[rep.iterations] <= rep.threshold &&
            rep.final_accuracy == acc[rep.iterations],
        "final accuracy %g, threshold %g", acc[rep.iterations], rep.threshold);
  CHECK(fabs(rep.threshold - (rep.majority + 0.01)) < 1e-15,
        "threshold %g vs majority %g", rep.threshold, rep.majority);
  for (int i = 0; i < rep.iterations; i++)
    CHECK(acc[i] > rep.threshold, "iteration %d stopped late (%g)", i, acc[i]);
  check_orthonormal(e, rep.rank, "INLP");
  double maj, after = erased_accuracy(ctx, e, &maj);
  CHECK(after < maj + 0.06, "INLP: fresh probe after erasure %g (majority %g)",
        after, maj);
  if (a2 > 0)
    CHECK(rep.iterations >= 2, "two planted directions, %d iterations",
          rep.iterations);
  culeace_eraser_free(e);
  /* min_accuracy 0 with 3 iterations: runs all three, rank 3 */
  o.min_accuracy = 0;
  o.iterations = 3;
  CHECK_OK(ctx, culeace_inlp_fit(ctx, X, N, D, D, Y, 2, TRAIN, &o, &e, &rep,
                                 acc));
  CHECK(rep.iterations == 3 && rep.rank == 3 && rep.stopped == 0,
        "iterations %d rank %lld stopped %d", rep.iterations,
        (long long)rep.rank, rep.stopped);
  if (e) check_orthonormal(e, 3, "INLP x3");
  culeace_eraser_free(e);
}

/* Eigenvalues of the symmetric A (d, d) (ascending) into w. */
static void eigvals(const double *A, int d, double *w) {
  double *c = malloc((size_t)(d * d) * sizeof *c);
  memcpy(c, A, (size_t)(d * d) * sizeof *c);
  LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', d, c, d, w);
  free(c);
}

static void test_fantope(culeace_ctx *ctx) {
  enum { M = 12 };
  tu_rng r;
  tu_seed(&r, 5);
  for (int k = 1; k <= M; k += 3) {
    double A[M * M], P[M * M], Q[M * M], w[M], pe[M];
    for (int i = 0; i < M; i++)
      for (int j = 0; j <= i; j++)
        A[i * M + j] = A[j * M + i] = 2 * tu_normal(&r);
    memcpy(P, A, sizeof A);
    CHECK_OK(ctx, culeace__fantope_project(ctx, P, M, k, NULL, pe));
    double tr = 0, asym = 0;
    for (int i = 0; i < M; i++) {
      tr += P[i * M + i];
      for (int j = 0; j < M; j++)
        asym = fmax(asym, fabs(P[i * M + j] - P[j * M + i]));
    }
    eigvals(P, M, w);
    double esum = 0;
    for (int i = 0; i < M; i++) esum += pe[i];
    CHECK(fabs(tr - k) < 1e-10 && fabs(esum - k) < 1e-12,
          "k = %d: trace %.15g, eigenvalue sum %.15g", k, tr, esum);
    CHECK(w[0] > -1e-10 && w[M - 1] < 1 + 1e-10,
          "k = %d: eigenvalues in [%g, %g]", k, w[0], w[M - 1]);
    CHECK(asym == 0, "k = %d: not symmetric (%g)", k, asym);
    /* a point of the Fantope projects onto itself */
    memcpy(Q, P, sizeof P);
    CHECK_OK(ctx, culeace__fantope_project(ctx, Q, M, k, NULL, NULL));
    double diff = 0;
    for (int i = 0; i < M * M; i++) diff = fmax(diff, fabs(Q[i] - P[i]));
    CHECK(diff < 1e-10, "k = %d: projection not idempotent (%g)", k, diff);
    /* P commutes with A (same eigenvectors) */
    double comm = 0;
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) {
        double s = 0;
        for (int l = 0; l < M; l++)
          s += A[i * M + l] * P[l * M + j] - P[i * M + l] * A[l * M + j];
        comm = fmax(comm, fabs(s));
      }
    CHECK(comm < 1e-9, "k = %d: P does not commute with A (%g)", k, comm);
  }
  /* worked example: eigenvalues (3, 0.5, 0.2, -1), k = 2: theta = -0.15 ->
   * (1, 0.65, 0.35, 0) */
  double P[16] = {0}, w[4];
  P[0] = 0.5;
  P[5] = 3;
  P[10] = -1;
  P[15] = 0.2;
  CHECK_OK(ctx, culeace__fantope_project(ctx, P, 4, 2, NULL, NULL));
  double want[4] = {0.65, 1, 0, 0.35};
  double err = 0;
  for (int i = 0; i < 4; i++) err = fmax(err, fabs(P[i * 4 + i] - want[i]));
  eigvals(P, 4, w);
  CHECK(err < 1e-12, "worked example off by %g (%g %g %g %g)", err, P[0],
        P[5], P[10], P[15]);
  CHECK(culeace__fantope_project(ctx, P, 4, 5, NULL, NULL) ==
            CULEACE_ERR_INVALID_ARG, "rank > d accepted");
}

static void test_rlace(culeace_ctx *ctx, int64_t rank) {
  make_data(23, 2.0, 0);
  culeace_rlace_opts o;
  culeace_rlace_opts_init(&o);
  o.rank = rank;
  o.iterations = 4000;
  o.evaluate_every = 250;
  o.seed = 7;
  culeace_rlace_report rep;
  culeace_eraser *e = NULL, *e2 = NULL;
  CHECK_OK(ctx, culeace_rlace_fit(ctx, X, N, D, D, Y, 2, TRAIN, &o, &e, &rep));
  if (!e) return;
  culeace_eraser_info info;
  culeace_eraser_info_get(e, &info);
  CHECK(info.rank == rank && info.method == CULEACE_METHOD_RLACE,
        "rank %lld method %d", (long long)info.rank, (int)info.method);
  check_orthonormal(e, rank, "R-LACE");
  /* U U^T has eigenvalues exactly 0 (d - k of them) and 1 (k) */
  double L[D * 4], UU[D * D], w[D];
  culeace_eraser_factors(e, L, NULL, NULL);
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      double s = 0;
      for (int a = 0; a < rank; a++) s += L[i * rank + a] * L[j * rank + a];
      UU[i * D + j] = s;
    }
  eigvals(UU, D, w);
  double dev = 0;
  for (int i = 0; i < D; i++)
    dev = fmax(dev, fabs(w[i] - (i >= D - rank ? 1.0 : 0.0)));
  CHECK(dev < 1e-10, "R-LACE projection eigenvalues off 0/1 by %g", dev);
  double maj, after = erased_accuracy(ctx, e, &maj);
  CHECK(after < maj + 0.1,
        "R-LACE rank %lld: fresh probe after erasure %g (majority %g, "
        "%d iterations, best loss %g, entropy %g)", (long long)rank, after,
        maj, rep.iterations, rep.best_loss, rep.label_entropy);
  CHECK(rep.evaluations >= 1 && rep.iterations >= 1, "report empty");
  /* deterministic for a seed */
  CHECK_OK(ctx, culeace_rlace_fit(ctx, X, N, D, D, Y, 2, TRAIN, &o, &e2, NULL));
  if (e2) {
    double L2[D * 4];
    culeace_eraser_factors(e2, L2, NULL, NULL);
    CHECK(!memcmp(L, L2, (size_t)(D * rank) * sizeof *L),
          "R-LACE differs between two runs with one seed");
  }
  culeace_eraser_free(e);
  culeace_eraser_free(e2);
}

static void test_errors(culeace_ctx *ctx) {
  make_data(3, 1.0, 0);
  culeace_eraser *e = NULL;
  culeace_inlp_opts io;
  culeace_inlp_opts_init(&io);
  io.iterations = 0;
  CHECK(culeace_inlp_fit(ctx, X, N, D, D, Y, 2, TRAIN, &io, &e, NULL, NULL) ==
            CULEACE_ERR_INVALID_ARG && !e, "iterations 0 accepted");
  culeace_inlp_opts_init(&io);
  io.min_accuracy = 2;
  CHECK(culeace_inlp_fit(ctx, X, N, D, D, Y, 2, TRAIN, &io, &e, NULL, NULL) ==
            CULEACE_ERR_INVALID_ARG, "min_accuracy 2 accepted");
  static uint8_t all[N];
  memset(all, 1, sizeof all);
  CHECK(culeace_inlp_fit(ctx, X, N, D, D, Y, 2, all, NULL, &e, NULL, NULL) ==
            CULEACE_ERR_DEGENERATE, "no held-out rows accepted");
  culeace_rlace_opts ro;
  culeace_rlace_opts_init(&ro);
  ro.rank = D + 1;
  CHECK(culeace_rlace_fit(ctx, X, N, D, D, Y, 2, TRAIN, &ro, &e, NULL) ==
            CULEACE_ERR_INVALID_ARG && !e, "rank > d accepted");
  ro.rank = 0;
  CHECK(culeace_rlace_fit(ctx, X, N, D, D, Y, 2, TRAIN, &ro, &e, NULL) ==
            CULEACE_ERR_INVALID_ARG, "rank 0 accepted");
  Y[5] = 2;
  CHECK(culeace_rlace_fit(ctx, X, N, D, D, Y, 2, TRAIN, NULL, &e, NULL) ==
            CULEACE_ERR_INVALID_ARG, "label outside 0..k-1 accepted");
}

int main(void) {
  culeace_ctx *ctx = NULL;
  culeace_ctx_opts co;
  culeace_ctx_opts_init(&co);
  co.device = CULEACE_DEVICE_CPU;
  CHECK_OK(ctx, culeace_ctx_create(&co, &ctx, NULL, 0));
  test_inlp(ctx, 0);
  test_inlp(ctx, 1.5);
  test_fantope(ctx);
  test_rlace(ctx, 1);
  test_rlace(ctx, 2);
  test_errors(ctx);
  culeace_ctx_free(ctx);
  return tu_finish("test_inlp_rlace");
}
