/* test_oracle.c — oracle LEACE: after culeace_eraser_apply_oracle on the
 * fitting rows the cross-covariance of x' with z is zero (float64 rows,
 * 1e-10 relative), for continuous z, binary and one-hot classes; random
 * block splits give the one-block eraser; float32 rows; the refusals
 * (apply without z, apply_oracle on a LEACE eraser, non-finite z); and
 * eraser files (round trip, a missing coef named in the error). */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "culeace.h"
#include "testutil.h"

/* max |Cov(x, z)| (d, k) of rows x (n, d), z (n, k). */
static double max_cross_cov(const double *x, const double *z, int64_t n,
                            int64_t d, int64_t k) {
  double *mx = calloc((size_t)d, 8), *mz = calloc((size_t)k, 8), m = 0;
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++) mx[j] += x[i * d + j] / (double)n;
    for (int64_t c = 0; c < k; c++) mz[c] += z[i * k + c] / (double)n;
  }
  for (int64_t j = 0; j < d; j++)
    for (int64_t c = 0; c < k; c++) {
      double s = 0;
      for (int64_t i = 0; i < n; i++)
        s += (x[i * d + j] - mx[j]) * (z[i * k + c] - mz[c]);
      m = fmax(m, fabs(s / (double)(n - 1)));
    }
  free(mx);
  free(mz);
  return m;
}

/* Rows that depend on z: x = z A + noise + offset. z: (n, k) dense. */
static void make_x(tu_rng *r, const double *z, int64_t n, int64_t d,
                   int64_t k, double *x) {
  double *A = malloc((size_t)(k * d) * 8);
  for (int64_t i = 0; i < k * d; i++) A[i] = 2 * tu_normal(r);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) {
      double v = 3.0 + tu_normal(r);
      for (int64_t c = 0; c < k; c++) v += z[i * k + c] * A[c * d + j];
      x[i * d + j] = v;
    }
  free(A);
}

static culeace_fitter *new_fitter(culeace_ctx *ctx, int64_t d, int64_t k,
                                  culeace_z_kind kind, int shrink) {
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.method = CULEACE_METHOD_ORACLE;
  o.shrinkage = shrink;
  culeace_fitter *f = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, kind, &o, &f));
  return f;
}

/* Fits on (x, z) in one block and in random blocks; checks the two agree,
 * that x' has zero cross-covariance with z and the refusals. zdense:
 * (n, zd) the encoding apply_oracle takes. */
static void one_case(culeace_ctx *ctx, tu_rng *r, const char *what,
                     int64_t n, int64_t d, int64_t k, culeace_z_kind kind,
                     const int32_t *cls, const double *zdense, int64_t zd,
                     int shrink) {
  double *x = malloc((size_t)(n * d) * 8), *x2 = malloc((size_t)(n * d) * 8);
  make_x(r, zdense, n, d, zd, x);
  culeace_fitter *f1 = new_fitter(ctx, d, k, kind, shrink);
  culeace_fitter *f2 = new_fitter(ctx, d, k, kind, shrink);
  if (!f1 || !f2) goto done;
  if (kind == CULEACE_Z_CLASSES)
    CHECK_OK(ctx, culeace_fitter_update_classes(f1, x, CULEACE_F64, n, d, cls));
  else
    CHECK_OK(ctx, culeace_fitter_update_continuous(f1, x, CULEACE_F64, n, d,
                                                   zdense, zd));
  for (int64_t i0 = 0; i0 < n;) {
    int64_t b = tu_randint(r, 1, n / 4 + 1);
    if (i0 + b > n) b = n - i0;
    if (kind == CULEACE_Z_CLASSES)
      CHECK_OK(ctx, culeace_fitter_update_classes(f2, x + i0 * d, CULEACE_F64,
                                                  b, d, cls + i0));
    else
      CHECK_OK(ctx, culeace_fitter_update_continuous(
                        f2, x + i0 * d, CULEACE_F64, b, d, zdense + i0 * zd,
                        zd));
    i0 += b;
  }
  culeace_eraser *e1 = NULL, *e2 = NULL;
  CHECK_OK(ctx, culeace_fitter_finalize(f1, &e1));
  CHECK_OK(ctx, culeace_fitter_finalize(f2, &e2));
  if (!e1 || !e2) goto free_erasers;
  culeace_eraser_info info;
  culeace_eraser_info_get(e1, &info);
  CHECK(info.method == CULEACE_METHOD_ORACLE && info.rank == 0 &&
            info.z_dim == zd && info.n_seen == n && info.d == d,
        "%s: info method %d rank %lld z_dim %lld", what, (int)info.method,
        (long long)info.rank, (long long)info.z_dim);
  double *c1 = malloc((size_t)(d * zd) * 8), *c2 = malloc((size_t)(d * zd) * 8);
  double *m1 = malloc((size_t)zd * 8), *m2 = malloc((size_t)zd * 8);
  CHECK_OK(ctx, culeace_eraser_oracle_params(e1, c1, m1));
  CHECK_OK(ctx, culeace_eraser_oracle_params(e2, c2, m2));
  double ec = tu_rel_err(c2, c1, d * zd), em = tu_rel_err(m2, m1, zd);
  CHECK(ec < 1e-10 && em < 1e-10,
        "%s: blocks vs one block: coef %.3g, mean_z %.3g", what, ec, em);
  free(c1);
  free(c2);
  free(m1);
  free(m2);

  /* the defining property, on the fitting rows */
  memcpy(x2, x, (size_t)(n * d) * 8);
  double before = max_cross_cov(x2, zdense, n, d, zd);
  CHECK_OK(ctx, culeace_eraser_apply_oracle(ctx, e1, x2, CULEACE_F64, n, d,
                                            zdense, zd));
  double after = max_cross_cov(x2, zdense, n, d, zd);
  if (!shrink)
    CHECK(after <= 1e-10 * before,
          "%s: |Cov(x', z)| %.3g vs %.3g before", what, after, before);
  else /* shrinkage: only approximately zero, but much smaller */
    CHECK(after < 0.2 * before, "%s (shrinkage): |Cov(x', z)| %.3g vs %.3g",
          what, after, before);

  /* float32 rows, strided: rounding level */
  int64_t ld = d + 3;
  float *xf = calloc((size_t)(n * ld), 4);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) xf[i * ld + j] = (float)x[i * d + j];
  CHECK_OK(ctx, culeace_eraser_apply_oracle(ctx, e1, xf, CULEACE_F32, n, ld,
                                            zdense, zd));
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) x2[i * d + j] = xf[i * ld + j];
  if (!shrink) {
    double a32 = max_cross_cov(x2, zdense, n, d, zd);
    CHECK(a32 <= 1e-5 * before, "%s: float32 |Cov(x', z)| %.3g vs %.3g",
          what, a32, before);
  }
  free(xf);

  /* refusals: apply without z; apply_oracle on a LEACE eraser */
  CHECK(culeace_eraser_apply(ctx, e1, x2, CULEACE_F64, n, d) ==
            CULEACE_ERR_STATE &&
            strstr(culeace_ctx_last_error(ctx), "apply_oracle"),
        "%s: apply on an oracle eraser: %s", what, culeace_ctx_last_error(ctx));
free_erasers:
  culeace_eraser_free(e1);
  culeace_eraser_free(e2);
done:
  culeace_fitter_free(f1);
  culeace_fitter_free(f2);
  free(x);
  free(x2);
}

static void test_fits(culeace_ctx *ctx) {
  tu_rng r;
  tu_seed(&r, 7);
  int64_t n = 600, d = 9;
  /* continuous z, 3 columns */
  double *z = malloc((size_t)(n * 3) * 8);
  for (int64_t i = 0; i < n * 3; i++) z[i] = tu_normal(&r) + 0.5;
  one_case(ctx, &r, "continuous", n, d, 3, CULEACE_Z_CONTINUOUS, NULL, z, 3, 0);
  one_case(ctx, &r, "continuous", n, d, 3, CULEACE_Z_CONTINUOUS, NULL, z, 3, 1);
  /* binary classes: one indicator column */
  int32_t *cls = malloc((size_t)n * 4);
  double *zb = malloc((size_t)n * 8), *zh = calloc((size_t)(n * 4), 8);
  for (int64_t i = 0; i < n; i++) {
    cls[i] = (int32_t)tu_randint(&r, 0, 1);
    zb[i] = cls[i];
  }
  one_case(ctx, &r, "binary", n, d, 2, CULEACE_Z_CLASSES, cls, zb, 1, 0);
  /* 4 classes, one-hot (Sigma_zz is singular: pinv) */
  for (int64_t i = 0; i < n; i++) {
    cls[i] = (int32_t)tu_randint(&r, 0, 3);
    zh[i * 4 + cls[i]] = 1;
  }
  one_case(ctx, &r, "one-hot", n, d, 4, CULEACE_Z_CLASSES, cls, zh, 4, 0);
  free(z);
  free(cls);
  free(zb);
  free(zh);
}

static void test_refusals(culeace_ctx *ctx) {
  double coef[6] = {1, 2, 3, 4, 5, 6}, mz[2] = {0.5, -1};
  culeace_eraser *e = NULL, *l = NULL;
  CHECK_OK(ctx, culeace_eraser_from_oracle(ctx, 3, 2, coef, mz, &e));
  if (!e) return;
  double x[6] = {1, 1, 1, 2, 2, 2}, z[4] = {1.5, 0, 0.5, NAN};
  double want[3] = {1 - 1 * 1 - 2 * 1, 1 - 3 - 4, 1 - 5 - 6};
  CHECK_OK(ctx, culeace_eraser_apply_oracle(ctx, e, x, CULEACE_F64, 1, 3, z, 2));
  CHECK(x[0] == want[0] && x[1] == want[1] && x[2] == want[2],
        "from_oracle edit: %g %g %g", x[0], x[1], x[2]);
  double x0[6];
  memcpy(x0, x, sizeof x);
  CHECK(culeace_eraser_apply_oracle(ctx, e, x, CULEACE_F64, 2, 3, z, 2) ==
            CULEACE_ERR_NONFINITE && !memcmp(x, x0, sizeof x),
        "non-finite z: refused with x untouched (%s)",
        culeace_ctx_last_error(ctx));
  CHECK(culeace_eraser_apply_oracle(ctx, e, x, CULEACE_F64, 1, 3, z, 1) ==
            CULEACE_ERR_INVALID_ARG,
        "ldz < z_dim refused");
  double L[3] = {1, 0, 0};
  CHECK_OK(ctx, culeace_eraser_from_factors(ctx, 3, 1, L, L, NULL, &l));
  CHECK(culeace_eraser_apply_oracle(ctx, l, x, CULEACE_F64, 1, 3, z, 2) ==
            CULEACE_ERR_STATE,
        "apply_oracle on a LEACE eraser: %s", culeace_ctx_last_error(ctx));
  CHECK(culeace_eraser_oracle_params(l, NULL, NULL) == CULEACE_ERR_STATE,
        "oracle_params on a LEACE eraser");
  coef[4] = INFINITY;
  culeace_eraser *bad = NULL;
  CHECK(culeace_eraser_from_oracle(ctx, 3, 2, coef, mz, &bad) ==
            CULEACE_ERR_NONFINITE && !bad,
        "from_oracle with a non-finite coef");
  culeace_eraser_free(e);
  culeace_eraser_free(l);
}

static void test_file(culeace_ctx *ctx) {
  double coef[8] = {1, 2, 3, 4, 5, 6, 7, 8}, mz[2] = {0.25, 0.75};
  culeace_eraser *e = NULL, *back = NULL;
  CHECK_OK(ctx, culeace_eraser_from_oracle(ctx, 4, 2, coef, mz, &e));
  const char *path = tu_tmp("oracle_erasers.h5");
  remove(path);
  culeace_eraser_file *w = NULL, *rd = NULL;
  CHECK_OK(ctx, culeace_eraser_file_create(ctx, path, &w));
  culeace_eraser_meta meta;
  culeace_eraser_meta_init(&meta);
  meta.layer_name = "layer0";
  meta.class_values = "3,7";
  CHECK_OK(ctx, culeace_eraser_file_add(w, e, &meta));
  CHECK_OK(ctx, culeace_eraser_file_commit(w));
  culeace_eraser_file_free(w);
  CHECK_OK(ctx, culeace_eraser_file_open(ctx, path, &rd));
  if (rd) {
    culeace_eraser_meta m2;
    CHECK_OK(ctx, culeace_eraser_file_load(rd, 0, &back, &m2));
    double c2[8] = {0}, z2[2] = {0};
    culeace_eraser_info info;
    if (back) {
      culeace_eraser_info_get(back, &info);
      CHECK_OK(ctx, culeace_eraser_oracle_params(back, c2, z2));
      CHECK(info.method == CULEACE_METHOD_ORACLE && info.z_dim == 2 &&
                !memcmp(c2, coef, sizeof coef) && !memcmp(z2, mz, sizeof mz) &&
                !strcmp(m2.class_values, "3,7"),
            "oracle eraser file round trip");
    }
    culeace_eraser_file_free(rd);
  }
  /* the same file without coef */
  hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  CHECK(fid >= 0 && H5Ldelete(fid, "erasers/0000/coef", H5P_DEFAULT) >= 0,
        "deleting coef");
  if (fid >= 0) H5Fclose(fid);
  culeace_eraser *none = NULL;
  CHECK_OK(ctx, culeace_eraser_file_open(ctx, path, &rd));
  if (rd) {
    culeace_status st = culeace_eraser_file_load(rd, 0, &none, NULL);
    const char *msg = culeace_ctx_last_error(ctx);
    CHECK(st == CULEACE_ERR_FORMAT && !none && strstr(msg, "/erasers/0000") &&
              strstr(msg, "'coef'"),
          "missing coef: %s (%s)", culeace_status_name(st), msg);
    culeace_eraser_file_free(rd);
  }
  culeace_eraser_free(e);
  culeace_eraser_free(back);
}

int main(void) {
  culeace_ctx_opts o;
  culeace_ctx_opts_init(&o);
  o.device = CULEACE_DEVICE_CPU;
  culeace_ctx *ctx = NULL;
  char err[256];
  CHECK_OK(NULL, culeace_ctx_create(&o, &ctx, err, sizeof err));
  if (!ctx) return tu_finish("test_oracle");
  tu_h5_ids ids; /* HDF5 ids alive before the tests; the same after */
  tu_h5_ids_take(&ids);
  test_fits(ctx);
  test_refusals(ctx);
  test_file(ctx);
  culeace_ctx_free(ctx);
  tu_h5_ids_check(&ids);
  return tu_finish("test_oracle");
}
