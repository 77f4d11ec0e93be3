/* test_reference.c — culeace's LEACE fit against golden erasers.
 *
 * Reads tests/fixtures/reference_erasers.h5 (written by
 * tests/py/gen_reference_fixtures.py; layout documented there): for every
 * case, fits with the public API on the CPU in float64 (moments streamed in
 * several random-size blocks), forms P = I - L R and compares it and the bias
 * with both the numpy reference and concept-erasure (torch f64), to 1e-6
 * relative (max abs error / max abs value). Then applies the eraser to the
 * rows (contiguous or strided buffer) and compares with
 * x - (x - bias) (I - P)^T computed here from the expected P. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "culeace.h"
#include "testutil.h"

#define TOL 1e-6

typedef struct {
  char name[128];
  int64_t method, affine, shrinkage, ctr, z_kind, mixture;
  int64_t k, z_dim, n, d, rank;
  double svd_tol;
  double *x;           /* (n, d) */
  int32_t *classes;    /* (n) when z_kind == classes */
  double *zc;          /* (n, k) when z_kind == continuous */
  double *P_ref, *bias_ref, *P_ce, *bias_ce;
} ref_case;

/* ---- HDF5 reading ------------------------------------------------------------ */

static int attr_i64(hid_t g, const char *name, int64_t *out) {
  hid_t a = H5Aopen(g, name, H5P_DEFAULT);
  if (a < 0) return -1;
  herr_t st = H5Aread(a, H5T_NATIVE_INT64, out);
  H5Aclose(a);
  return st < 0 ? -1 : 0;
}

static int attr_f64(hid_t g, const char *name, double *out) {
  hid_t a = H5Aopen(g, name, H5P_DEFAULT);
  if (a < 0) return -1;
  herr_t st = H5Aread(a, H5T_NATIVE_DOUBLE, out);
  H5Aclose(a);
  return st < 0 ? -1 : 0;
}

/* Reads dataset `name` of exactly `count` elements as `memtype`; NULL on any
 * failure (missing, wrong size). */
static void *read_dataset(hid_t g, const char *name, hid_t memtype,
                          size_t elsize, int64_t count) {
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  if (ds < 0) return NULL;
  hid_t sp = H5Dget_space(ds);
  hssize_t npts = H5Sget_simple_extent_npoints(sp);
  void *buf = NULL;
  if (npts == (hssize_t)count) {
    buf = malloc((size_t)(count > 0 ? count : 1) * elsize);
    if (buf && H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
      free(buf);
      buf = NULL;
    }
  }
  H5Sclose(sp);
  H5Dclose(ds);
  return buf;
}

static void case_free(ref_case *c) {
  free(c->x);
  free(c->classes);
  free(c->zc);
  free(c->P_ref);
  free(c->bias_ref);
  free(c->P_ce);
  free(c->bias_ce);
  memset(c, 0, sizeof *c);
}

/* Loads case group `g` into c; returns 0 when everything was read. */
static int case_load(hid_t g, const char *name, ref_case *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "%s", name);
  if (attr_i64(g, "method", &c->method) || attr_i64(g, "affine", &c->affine) ||
      attr_i64(g, "shrinkage", &c->shrinkage) ||
      attr_i64(g, "constrain_cov_trace", &c->ctr) ||
      attr_i64(g, "z_kind", &c->z_kind) || attr_i64(g, "mixture", &c->mixture) ||
      attr_i64(g, "k", &c->k) || attr_i64(g, "z_dim", &c->z_dim) ||
      attr_i64(g, "n", &c->n) || attr_i64(g, "d", &c->d) ||
      attr_i64(g, "rank", &c->rank) || attr_f64(g, "svd_tol", &c->svd_tol))
    return -1;
  int64_t n = c->n, d = c->d;
  c->x = read_dataset(g, "x", H5T_NATIVE_DOUBLE, 8, n * d);
  if (c->z_kind == CULEACE_Z_CLASSES)
    c->classes = read_dataset(g, "z", H5T_NATIVE_INT32, 4, n);
  else
    c->zc = read_dataset(g, "z", H5T_NATIVE_DOUBLE, 8, n * c->k);
  c->P_ref = read_dataset(g, "P_ref", H5T_NATIVE_DOUBLE, 8, d * d);
  c->bias_ref = read_dataset(g, "bias_ref", H5T_NATIVE_DOUBLE, 8, d);
  c->P_ce = read_dataset(g, "P_ce", H5T_NATIVE_DOUBLE, 8, d * d);
  c->bias_ce = read_dataset(g, "bias_ce", H5T_NATIVE_DOUBLE, 8, d);
  if (!c->x || !(c->classes || c->zc) || !c->P_ref || !c->bias_ref ||
      !c->P_ce || !c->bias_ce)
    return -1;
  return 0;
}

/* ---- fitting and checks -------------------------------------------------------- */

/* Streams the case's rows into a fitter in random-size blocks (at least
 * three blocks when n >= 3); returns the eraser or NULL. */
static culeace_eraser *fit_case(culeace_ctx *ctx, const ref_case *c,
                                tu_rng *rng) {
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.method = (culeace_method)c->method;
  o.affine = (int)c->affine;
  o.shrinkage = (int)c->shrinkage;
  o.constrain_cov_trace = (int)c->ctr;
  o.svd_tol = c->svd_tol;
  o.precision = CULEACE_PRECISION_F64;
  culeace_fitter *f = NULL;
  culeace_eraser *e = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, c->d, c->k,
                                      (culeace_z_kind)c->z_kind, &o, &f));
  if (!f) return NULL;
  int64_t start = 0, blocks = 0, max_block = c->n / 3 > 1 ? c->n / 3 : 1;
  while (start < c->n) {
    int64_t m = tu_randint(rng, 1, max_block);
    if (m > c->n - start) m = c->n - start;
    const double *xb = c->x + start * c->d;
    if (c->z_kind == CULEACE_Z_CLASSES)
      CHECK_OK(ctx, culeace_fitter_update_classes(f, xb, CULEACE_F64, m, c->d,
                                                  c->classes + start));
    else
      CHECK_OK(ctx, culeace_fitter_update_continuous(
                        f, xb, CULEACE_F64, m, c->d, c->zc + start * c->k, c->k));
    start += m;
    blocks++;
  }
  CHECK(culeace_fitter_rows(f) == c->n, "%s: rows %lld != n %lld", c->name,
        (long long)culeace_fitter_rows(f), (long long)c->n);
  CHECK(culeace_fitter_z_dim(f) == c->z_dim, "%s: z_dim %lld != %lld", c->name,
        (long long)culeace_fitter_z_dim(f), (long long)c->z_dim);
  CHECK(blocks >= 3 || c->n < 3, "%s: only %lld blocks", c->name,
        (long long)blocks);
  CHECK_OK(ctx, culeace_fitter_finalize(f, &e));
  culeace_fitter_free(f);
  return e;
}

/* P = I - L R from the eraser's factors; NULL on failure. bias: (d) out. */
static double *eraser_P(culeace_ctx *ctx, const culeace_eraser *e,
                        const ref_case *c, double *bias) {
  culeace_eraser_info info;
  CHECK_OK(ctx, culeace_eraser_info_get(e, &info));
  int64_t d = c->d, r = info.rank;
  CHECK(info.d == d, "%s: eraser d %lld != %lld", c->name, (long long)info.d,
        (long long)d);
  if (!c->mixture)
    CHECK(r == c->rank, "%s: edit rank %lld, expected %lld", c->name,
          (long long)r, (long long)c->rank);
  CHECK(info.n_seen == c->n, "%s: n_seen %lld", c->name,
        (long long)info.n_seen);
  if (info.d != d || r < 0 || r > d) return NULL;
  double *L = calloc((size_t)(d * r + 1), 8), *R = calloc((size_t)(r * d + 1), 8);
  double *P = calloc((size_t)(d * d), 8);
  if (!L || !R || !P) {
    free(L), free(R), free(P);
    return NULL;
  }
  CHECK_OK(ctx, culeace_eraser_factors(e, L, R, bias));
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      double s = 0;
      for (int64_t t = 0; t < r; t++) s += L[i * r + t] * R[t * d + j];
      P[i * d + j] = (i == j ? 1.0 : 0.0) - s;
    }
  free(L);
  free(R);
  return P;
}

/* Expected erased rows: x - (x - bias) (I - P)^T, into out (n, d). */
static void expected_apply(const ref_case *c, double *out) {
  int64_t d = c->d;
  double *delta = malloc((size_t)d * 8);
  for (int64_t i = 0; i < c->n; i++) {
    const double *xi = c->x + i * d;
    for (int64_t j = 0; j < d; j++) delta[j] = xi[j] - c->bias_ref[j];
    for (int64_t a = 0; a < d; a++) {
      double s = 0; /* ((I - P) delta)_a */
      for (int64_t b = 0; b < d; b++)
        s += ((a == b ? 1.0 : 0.0) - c->P_ref[a * d + b]) * delta[b];
      out[i * d + a] = xi[a] - s;
    }
  }
  free(delta);
}

/* Applies e to a copy of the rows with stride ldx (>= d; padding holds a
 * sentinel that must survive) and compares with the expected rows. */
static void check_apply(culeace_ctx *ctx, const culeace_eraser *e,
                        const ref_case *c, int64_t ldx) {
  int64_t n = c->n, d = c->d;
  const double sentinel = -12345.678;
  double *buf = malloc((size_t)(n * ldx) * 8), *want = malloc((size_t)(n * d) * 8);
  double *got = malloc((size_t)(n * d) * 8);
  if (!buf || !want || !got) {
    CHECK(0, "%s: out of memory", c->name);
    free(buf), free(want), free(got);
    return;
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < ldx; j++)
      buf[i * ldx + j] = j < d ? c->x[i * d + j] : sentinel;
  CHECK_OK(ctx, culeace_eraser_apply(ctx, e, buf, CULEACE_F64, n, ldx));
  int pad_ok = 1;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < ldx; j++) {
      if (j < d) got[i * d + j] = buf[i * ldx + j];
      else if (buf[i * ldx + j] != sentinel) pad_ok = 0;
    }
  expected_apply(c, want);
  double err = tu_rel_err(got, want, n * d);
  CHECK(err <= TOL, "%s: apply (ldx %lld) rel err %.3e", c->name,
        (long long)ldx, err);
  CHECK(pad_ok, "%s: apply wrote into the row padding (ldx %lld)", c->name,
        (long long)ldx);
  free(buf);
  free(want);
  free(got);
}

static void run_case(culeace_ctx *ctx, const ref_case *c, int64_t index) {
  tu_rng rng;
  tu_seed(&rng, 1000 + (uint64_t)index);
  culeace_eraser *e = fit_case(ctx, c, &rng);
  if (!e) return;
  double *bias = calloc((size_t)c->d, 8);
  double *P = bias ? eraser_P(ctx, e, c, bias) : NULL;
  if (P) {
    double e_ref = tu_rel_err(P, c->P_ref, c->d * c->d);
    double e_ce = tu_rel_err(P, c->P_ce, c->d * c->d);
    double b_ref = tu_rel_err(bias, c->bias_ref, c->d);
    double b_ce = tu_rel_err(bias, c->bias_ce, c->d);
    CHECK(e_ref <= TOL, "%s: P vs numpy reference rel err %.3e", c->name, e_ref);
    CHECK(e_ce <= TOL, "%s: P vs concept-erasure rel err %.3e", c->name, e_ce);
    CHECK(b_ref <= TOL, "%s: bias vs numpy reference rel err %.3e", c->name, b_ref);
    CHECK(b_ce <= TOL, "%s: bias vs concept-erasure rel err %.3e", c->name, b_ce);
    printf("  %-34s n=%4lld d=%3lld  P err %.2e / %.2e  bias err %.2e\n",
           c->name, (long long)c->n, (long long)c->d, e_ref, e_ce, b_ref);
  } else {
    CHECK(0, "%s: could not form P from the eraser", c->name);
  }
  check_apply(ctx, e, c, (index % 2) ? c->d + 3 : c->d);
  free(P);
  free(bias);
  culeace_eraser_free(e);
}

int main(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  const char *path = tu_src("tests/fixtures/reference_erasers.h5");
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  CHECK(file >= 0, "cannot open %s (run tests/py/gen_reference_fixtures.py)",
        path);
  if (file < 0) return tu_finish("test_reference");

  culeace_ctx_opts co;
  culeace_ctx_opts_init(&co);
  co.device = CULEACE_DEVICE_CPU;
  culeace_ctx *ctx = NULL;
  char errbuf[256] = "";
  culeace_status st = culeace_ctx_create(&co, &ctx, errbuf, sizeof errbuf);
  CHECK(st == CULEACE_OK && ctx, "culeace_ctx_create: %s %s",
        culeace_status_name(st), errbuf);

  hid_t cases = H5Gopen2(file, "/cases", H5P_DEFAULT);
  H5G_info_t gi;
  CHECK(cases >= 0 && H5Gget_info(cases, &gi) >= 0, "no /cases group in %s", path);
  int64_t n_cases = (cases >= 0 && ctx) ? (int64_t)gi.nlinks : 0;
  CHECK(n_cases >= 10, "only %lld cases in the fixture", (long long)n_cases);
  for (int64_t i = 0; i < n_cases; i++) {
    char name[128];
    if (H5Lget_name_by_idx(cases, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)i,
                           name, sizeof name, H5P_DEFAULT) < 0) {
      CHECK(0, "cannot read the name of case %lld", (long long)i);
      continue;
    }
    hid_t g = H5Gopen2(cases, name, H5P_DEFAULT);
    ref_case c;
    int bad = g < 0 || case_load(g, name, &c) != 0;
    CHECK(!bad, "cannot load case %s", name);
    if (!bad) run_case(ctx, &c, i);
    if (g >= 0) {
      case_free(&c);
      H5Gclose(g);
    }
  }
  if (cases >= 0) H5Gclose(cases);
  H5Fclose(file);
  culeace_ctx_free(ctx);
  return tu_finish("test_reference");
}
