/* test_fitter_merge.c — a fit sharded into 1..4 unequal shards (one empty
 * now and then), each shard's state exported and merged in shard order,
 * gives the moments, class counts and eraser of one fitter over all rows
 * (1e-12 relative for moments), for LEACE / orth / oracle, classes and
 * continuous z; bad states are refused and leave the fitter unchanged. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"
#include "culeace.h"
#include "testutil.h"

typedef struct {
  culeace_method method;
  culeace_z_kind kind;
  int64_t k;
} merge_case;

/* Feeds rows [i0, i1) of x (n, d) float64 in random blocks. */
static void feed(culeace_ctx *ctx, culeace_fitter *f, const double *x,
                 int64_t d, const int32_t *cls, const double *z, int64_t k,
                 int64_t i0, int64_t i1, tu_rng *rng) {
  while (i0 < i1) {
    int64_t b = tu_randint(rng, 1, 150);
    if (b > i1 - i0) b = i1 - i0;
    if (cls)
      CHECK_OK(ctx, culeace_fitter_update_classes(f, x + i0 * d, CULEACE_F64,
                                                  b, d, cls + i0));
    else
      CHECK_OK(ctx, culeace_fitter_update_continuous(
                        f, x + i0 * d, CULEACE_F64, b, d, z + i0 * k, k));
    i0 += b;
  }
}

/* Compares everything finalize reads: moments, counts, and C_zz. */
static void compare(culeace_ctx *ctx, culeace_fitter *a, culeace_fitter *b,
                    int64_t d, const char *what) {
  int64_t zd = culeace_fitter_z_dim(a);
  CHECK(culeace_fitter_rows(a) == culeace_fitter_rows(b), "%s: rows %lld %lld",
        what, (long long)culeace_fitter_rows(a),
        (long long)culeace_fitter_rows(b));
  double *m[2], *mz[2], *sxz[2], *sxx[2];
  culeace_fitter *fs[2] = {a, b};
  int has_xx = a->cxx != NULL;
  for (int i = 0; i < 2; i++) {
    m[i] = malloc((size_t)d * 8);
    mz[i] = malloc((size_t)zd * 8);
    sxz[i] = malloc((size_t)(d * zd) * 8);
    sxx[i] = malloc((size_t)(d * d) * 8);
    CHECK_OK(ctx, culeace_fitter_moments(fs[i], m[i], mz[i], sxz[i],
                                         has_xx ? sxx[i] : NULL));
  }
  double e1 = tu_rel_err(m[0], m[1], d), e2 = tu_rel_err(mz[0], mz[1], zd),
         e3 = tu_rel_err(sxz[0], sxz[1], d * zd),
         e4 = has_xx ? tu_rel_err(sxx[0], sxx[1], d * d) : 0;
  CHECK(e1 <= 1e-12 && e2 <= 1e-12 && e3 <= 1e-12 && e4 <= 1e-12,
        "%s: mean_x %.2e mean_z %.2e sigma_xz %.2e sigma_xx %.2e", what, e1,
        e2, e3, e4);
  if (a->czz) {
    double e5 = tu_rel_err(a->czz, b->czz, zd * zd);
    CHECK(e5 <= 1e-12, "%s: C_zz %.2e", what, e5);
  }
  for (int64_t c = 0; c < a->k; c++)
    CHECK(a->class_counts[c] == b->class_counts[c], "%s: class %lld count",
          what, (long long)c);
  for (int i = 0; i < 2; i++) {
    free(m[i]);
    free(mz[i]);
    free(sxz[i]);
    free(sxx[i]);
  }
}

/* The erasers of two fitters agree (LEACE/orth: L R and bias). */
static void compare_erasers(culeace_ctx *ctx, culeace_fitter *a,
                            culeace_fitter *b, int64_t d, const char *what) {
  culeace_eraser *e[2] = {NULL, NULL};
  CHECK_OK(ctx, culeace_fitter_finalize(a, &e[0]));
  CHECK_OK(ctx, culeace_fitter_finalize(b, &e[1]));
  if (!e[0] || !e[1]) goto out;
  culeace_eraser_info ia, ib;
  culeace_eraser_info_get(e[0], &ia);
  culeace_eraser_info_get(e[1], &ib);
  CHECK(ia.rank == ib.rank && ia.n_seen == ib.n_seen, "%s: rank %lld %lld",
        what, (long long)ia.rank, (long long)ib.rank);
  if (ia.rank != ib.rank || ia.rank == 0) goto out;
  int64_t r = ia.rank;
  double *P[2], *bias[2];
  for (int i = 0; i < 2; i++) {
    double *L = malloc((size_t)(d * r) * 8), *R = malloc((size_t)(r * d) * 8);
    P[i] = calloc((size_t)(d * d), 8);
    bias[i] = malloc((size_t)d * 8);
    CHECK_OK(ctx, culeace_eraser_factors(e[i], L, R, bias[i]));
    for (int64_t p = 0; p < d; p++) /* L R: (d, d), sign-free */
      for (int64_t q = 0; q < d; q++)
        for (int64_t s = 0; s < r; s++)
          P[i][p * d + q] += L[p * r + s] * R[s * d + q];
    free(L);
    free(R);
  }
  double ep = tu_rel_err(P[0], P[1], d * d);
  double eb = tu_rel_err(bias[0], bias[1], d);
  CHECK(ep <= 1e-9 && eb <= 1e-12, "%s: eraser L R %.2e bias %.2e", what, ep,
        eb);
  for (int i = 0; i < 2; i++) {
    free(P[i]);
    free(bias[i]);
  }
out:
  culeace_eraser_free(e[0]);
  culeace_eraser_free(e[1]);
}

/* Quadratic erasers of two fitters: the same class means, maps and
 * target. */
static void compare_quadratic(culeace_ctx *ctx, culeace_fitter *a,
                              culeace_fitter *b, int64_t d, int64_t k,
                              const char *what) {
  culeace_eraser *e[2] = {NULL, NULL};
  double *p[2][3] = {{NULL}};
  CHECK_OK(ctx, culeace_fitter_finalize(a, &e[0]));
  CHECK_OK(ctx, culeace_fitter_finalize(b, &e[1]));
  for (int i = 0; i < 2; i++) {
    p[i][0] = malloc((size_t)(k * d) * 8);
    p[i][1] = malloc((size_t)(k * d * d) * 8);
    p[i][2] = malloc((size_t)d * 8);
    if (e[i])
      CHECK_OK(ctx, culeace_eraser_quadratic_params(e[i], p[i][0], p[i][1],
                                                    p[i][2]));
  }
  if (e[0] && e[1]) {
    double em = tu_rel_err(p[0][0], p[1][0], k * d);
    double et = tu_rel_err(p[0][1], p[1][1], k * d * d);
    double eg = tu_rel_err(p[0][2], p[1][2], d);
    CHECK(em <= 1e-12 && et <= 1e-9 && eg <= 1e-12,
          "%s: quadratic means %.2e maps %.2e target %.2e", what, em, et, eg);
  }
  for (int i = 0; i < 2; i++) {
    for (int j = 0; j < 3; j++) free(p[i][j]);
    culeace_eraser_free(e[i]);
  }
}

static void one_case(culeace_ctx *ctx, tu_rng *rng, const merge_case *mc,
                     int shards) {
  int64_t n = 1001, d = tu_randint(rng, 3, 24), k = mc->k;
  int classes = mc->kind == CULEACE_Z_CLASSES;
  double *x = malloc((size_t)(n * d) * 8), *z = malloc((size_t)(n * k) * 8);
  int32_t *cls = malloc((size_t)n * sizeof *cls);
  double *scale = malloc((size_t)d * 8);
  for (int64_t j = 0; j < d; j++) scale[j] = 0.1 + 3 * tu_uniform(rng);
  for (int64_t i = 0; i < n; i++) {
    cls[i] = (int32_t)tu_randint(rng, 0, k - 1);
    for (int64_t c = 0; c < k; c++) z[i * k + c] = tu_normal(rng) + 2.0 * c;
    for (int64_t j = 0; j < d; j++) /* far from 0: the shifts matter */
      x[i * d + j] = 50.0 + scale[j] * tu_normal(rng) +
                     (classes ? 0.7 * cls[i] * (j % 3 == 0)
                              : 0.5 * z[i * k + j % k]);
  }
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.method = mc->method;
  culeace_fitter *all = NULL, *fresh = NULL, *part[4] = {NULL};
  CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, mc->kind, &o, &all));
  CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, mc->kind, &o, &fresh));
  if (!all || !fresh) goto done;
  feed(ctx, all, x, d, classes ? cls : NULL, z, k, 0, n, rng);
  /* unequal shard bounds; with 3 or more shards one may be empty */
  int64_t bound[5] = {0};
  for (int s = 1; s < shards; s++)
    bound[s] = tu_randint(rng, bound[s - 1] + (shards < 3), n - (shards - s));
  bound[shards] = n;
  size_t count = 0;
  CHECK_OK(ctx, culeace_fitter_state_size(all, &count));
  double *buf = malloc(count * 8);
  for (int s = 0; s < shards; s++) {
    CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, mc->kind, &o, &part[s]));
    if (!part[s]) goto freebuf;
    feed(ctx, part[s], x, d, classes ? cls : NULL, z, k, bound[s],
         bound[s + 1], rng);
  }
  for (int s = 0; s < shards; s++) { /* into shard 0's fitter, and a new one */
    CHECK_OK(ctx, culeace_fitter_export(part[s], buf));
    CHECK_OK(ctx, culeace_fitter_merge(fresh, buf, count));
    if (s > 0) CHECK_OK(ctx, culeace_fitter_merge(part[0], buf, count));
  }
  char what[128];
  snprintf(what, sizeof what, "method %s, %s k = %lld, %d shards, d = %lld",
           culeace_method_name(mc->method), classes ? "classes" : "continuous",
           (long long)k, shards, (long long)d);
  compare(ctx, part[0], all, d, what);
  compare(ctx, fresh, all, d, what);
  if (mc->method == CULEACE_METHOD_QUADRATIC)
    compare_quadratic(ctx, part[0], all, d, k, what);
  else if (mc->method != CULEACE_METHOD_ORACLE)
    compare_erasers(ctx, part[0], all, d, what);
  /* the merged fitter keeps fitting: more rows to both */
  feed(ctx, part[0], x, d, classes ? cls : NULL, z, k, 0, 100, rng);
  feed(ctx, all, x, d, classes ? cls : NULL, z, k, 0, 100, rng);
  compare(ctx, part[0], all, d, what);
freebuf:
  free(buf);
done:
  for (int s = 0; s < 4; s++) culeace_fitter_free(part[s]);
  culeace_fitter_free(all);
  culeace_fitter_free(fresh);
  free(x);
  free(z);
  free(cls);
  free(scale);
}

/* Wrong states are refused with the right status; the fitter is unchanged. */
static void bad_states(culeace_ctx *ctx) {
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  culeace_fitter *a = NULL, *b = NULL, *c = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, 4, 2, CULEACE_Z_CLASSES, &o, &a));
  CHECK_OK(ctx, culeace_fitter_create(ctx, 5, 2, CULEACE_Z_CLASSES, &o, &b));
  o.method = CULEACE_METHOD_ORTH;
  CHECK_OK(ctx, culeace_fitter_create(ctx, 4, 2, CULEACE_Z_CLASSES, &o, &c));
  if (!a || !b || !c) goto done;
  double x[8] = {1, 2, 3, 4, 5, 6, 7, 9};
  int32_t y[2] = {0, 1};
  CHECK_OK(ctx, culeace_fitter_update_classes(a, x, CULEACE_F64, 2, 4, y));
  size_t na = 0, nb = 0, nc = 0;
  CHECK_OK(ctx, culeace_fitter_state_size(a, &na));
  CHECK_OK(ctx, culeace_fitter_state_size(b, &nb));
  CHECK_OK(ctx, culeace_fitter_state_size(c, &nc));
  CHECK(na == 8 + 4 + 1 + 2 + 4 + 10, "state size %zu", na);
  CHECK(nc == na - 10, "orth state size %zu", nc);
  double *sa = calloc(na, 8), *sb = calloc(nb, 8), *sc = calloc(nc, 8);
  CHECK_OK(ctx, culeace_fitter_export(a, sa));
  CHECK_OK(ctx, culeace_fitter_export(b, sb));
  CHECK_OK(ctx, culeace_fitter_export(c, sc));
  CHECK(culeace_fitter_merge(a, sb, nb) == CULEACE_ERR_SHAPE, "other d");
  CHECK(culeace_fitter_merge(a, sc, nc) == CULEACE_ERR_STATE, "other method");
  CHECK(culeace_fitter_merge(a, sa, na - 1) == CULEACE_ERR_FORMAT, "count");
  CHECK(culeace_fitter_merge(a, sa, 3) == CULEACE_ERR_FORMAT, "short");
  double keep = sa[0];
  sa[0] = 1;
  CHECK(culeace_fitter_merge(a, sa, na) == CULEACE_ERR_FORMAT, "magic");
  sa[0] = keep;
  sa[2] = 2.5; /* a fractional row count */
  CHECK(culeace_fitter_merge(a, sa, na) == CULEACE_ERR_FORMAT, "rows");
  sa[2] = 3; /* counts no longer sum to the rows */
  CHECK(culeace_fitter_merge(a, sa, na) == CULEACE_ERR_FORMAT, "sum");
  sa[2] = 2;
  sa[8] = NAN;
  CHECK(culeace_fitter_merge(a, sa, na) == CULEACE_ERR_NONFINITE, "nan");
  CHECK(culeace_fitter_rows(a) == 2, "unchanged after errors");
  CHECK(strstr(culeace_ctx_last_error(ctx), "non-finite") != NULL, "msg %s",
        culeace_ctx_last_error(ctx));
  free(sa);
  free(sb);
  free(sc);
done:
  culeace_fitter_free(a);
  culeace_fitter_free(b);
  culeace_fitter_free(c);
}

int main(void) {
  culeace_ctx *ctx = NULL;
  culeace_ctx_opts co;
  culeace_ctx_opts_init(&co);
  co.device = CULEACE_DEVICE_CPU;
  char err[256];
  if (culeace_ctx_create(&co, &ctx, err, sizeof err)) {
    fprintf(stderr, "context: %s\n", err);
    return 1;
  }
  tu_rng rng;
  tu_seed(&rng, 20240607);
  const merge_case cases[] = {
      {CULEACE_METHOD_LEACE, CULEACE_Z_CLASSES, 2},
      {CULEACE_METHOD_LEACE, CULEACE_Z_CLASSES, 3},
      {CULEACE_METHOD_LEACE, CULEACE_Z_CONTINUOUS, 2},
      {CULEACE_METHOD_ORTH, CULEACE_Z_CLASSES, 4},
      {CULEACE_METHOD_ORACLE, CULEACE_Z_CLASSES, 3},
      {CULEACE_METHOD_ORACLE, CULEACE_Z_CONTINUOUS, 2},
      {CULEACE_METHOD_QUADRATIC, CULEACE_Z_CLASSES, 2},
      {CULEACE_METHOD_QUADRATIC, CULEACE_Z_CLASSES, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    for (int shards = 1; shards <= 4; shards++)
      for (int rep = 0; rep < 3; rep++) one_case(ctx, &rng, &cases[i], shards);
  bad_states(ctx);
  culeace_ctx_free(ctx);
  return tu_finish("test_fitter_merge");
}
