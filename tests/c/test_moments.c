/* test_moments.c — streaming moments equal the two-pass float64 result for
 * random block splits, for every input dtype, class and continuous z, and
 * the float32 block precision stays within its error bound; the automatic
 * precision is float32 products for 16-bit rows and float64 otherwise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "culeace.h"
#include "testutil.h"

/* Two-pass reference: mean, Sigma_xx, Sigma_xz (Bessel). */
static void two_pass(const double *x, const double *z, int64_t n, int64_t d,
                     int64_t k, double *mx, double *sxx, double *sxz) {
  double *mz = calloc((size_t)k, 8);
  memset(mx, 0, (size_t)d * 8);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++) mx[j] += x[i * d + j] / (double)n;
    for (int64_t c = 0; c < k; c++) mz[c] += z[i * k + c] / (double)n;
  }
  memset(sxx, 0, (size_t)(d * d) * 8);
  memset(sxz, 0, (size_t)(d * k) * 8);
  for (int64_t i = 0; i < n; i++)
    for (int64_t a = 0; a < d; a++) {
      double xa = x[i * d + a] - mx[a];
      for (int64_t b = 0; b < d; b++)
        sxx[a * d + b] += xa * (x[i * d + b] - mx[b]) / (double)(n - 1);
      for (int64_t c = 0; c < k; c++)
        sxz[a * k + c] += xa * (z[i * k + c] - mz[c]) / (double)(n - 1);
    }
  free(mz);
}

/* Feeds x (n, d) (already rounded to dtype t, stored as t with stride ldx)
 * in random blocks. */
static void feed(culeace_ctx *ctx, culeace_fitter *f, const void *xt,
                 culeace_dtype t, int64_t n, int64_t ldx, const int32_t *cls,
                 const double *z, int64_t k, tu_rng *rng) {
  size_t es = culeace_dtype_size(t);
  for (int64_t i0 = 0; i0 < n;) {
    int64_t b = tu_randint(rng, 1, n / 3 + 1);
    if (i0 + b > n) b = n - i0;
    const char *rows = (const char *)xt + (size_t)i0 * ldx * es;
    if (cls)
      CHECK_OK(ctx, culeace_fitter_update_classes(f, rows, t, b, ldx, cls + i0));
    else
      CHECK_OK(ctx, culeace_fitter_update_continuous(f, rows, t, b, ldx,
                                                     z + i0 * k, k));
    i0 += b;
  }
}

static void one_case(culeace_ctx *ctx, tu_rng *rng, culeace_dtype t,
                     int classes, int64_t k, culeace_precision prec) {
  int64_t n = tu_randint(rng, 5, 400), d = tu_randint(rng, 1, 40);
  int64_t ldx = d + tu_randint(rng, 0, 3);
  size_t es = culeace_dtype_size(t);
  int64_t zd = classes ? (k == 2 ? 1 : k) : k;
  double *x = malloc((size_t)(n * d) * 8), *z = calloc((size_t)(n * zd), 8);
  double *tmp = malloc((size_t)ldx * 8);
  int32_t *cls = classes ? malloc((size_t)n * 4) : NULL;
  char *xt = calloc((size_t)(n * ldx), es);
  double offset = 100.0 * tu_normal(rng); /* large mean: tests centring */
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++) tmp[j] = offset + tu_normal(rng) * (1 + j);
    culeace__from_f64(tmp, d, t, xt + (size_t)i * ldx * es);
    culeace__to_f64(xt + (size_t)i * ldx * es, t, d, x + i * d);
    if (classes) {
      cls[i] = (int32_t)tu_randint(rng, 0, k - 1);
      if (zd == 1) z[i] = cls[i] == 1;
      else z[i * zd + cls[i]] = 1;
    } else {
      for (int64_t c = 0; c < k; c++) z[i * k + c] = tu_normal(rng) + x[i * d];
    }
  }
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.precision = prec;
  culeace_fitter *f = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, classes ? CULEACE_Z_CLASSES
                                                         : CULEACE_Z_CONTINUOUS,
                                      &o, &f));
  if (!f) return;
  feed(ctx, f, xt, t, n, ldx, cls, z, k, rng);
  CHECK(culeace_fitter_rows(f) == n, "rows %lld", (long long)culeace_fitter_rows(f));
  CHECK(culeace_fitter_z_dim(f) == zd, "z_dim");
  double *mx = malloc((size_t)d * 8), *sxx = malloc((size_t)(d * d) * 8),
         *sxz = malloc((size_t)(d * zd) * 8);
  double *gmx = malloc((size_t)d * 8), *gsxx = malloc((size_t)(d * d) * 8),
         *gsxz = malloc((size_t)(d * zd) * 8);
  two_pass(x, z, n, d, zd, mx, sxx, sxz);
  CHECK_OK(ctx, culeace_fitter_moments(f, gmx, NULL, gsxz, gsxx));
  double tol = prec == CULEACE_PRECISION_F64 ? 1e-10 : 2e-5;
  /* TENSOR rounds centred 16-bit values once more (half an ulp: 2^-11
   * relative for float16, 2^-8 for bfloat16) before X^T X. */
  double tol_xx = tol;
  if (prec == CULEACE_PRECISION_TENSOR && t == CULEACE_F16) tol_xx = 5e-4;
  if (prec == CULEACE_PRECISION_TENSOR && t == CULEACE_BF16) tol_xx = 4e-3;
  double e1 = tu_rel_err(gmx, mx, d), e2 = tu_rel_err(gsxx, sxx, d * d),
         e3 = tu_rel_err(gsxz, sxz, d * zd);
  if (getenv("CULEACE_TEST_VERBOSE"))
    printf("dtype %-8s prec %d n %4lld d %3lld: mean %.1e xx %.1e xz %.1e\n",
           culeace_dtype_name(t), (int)prec, (long long)n, (long long)d, e1,
           e2, e3);
  CHECK(e1 < tol && e2 < tol_xx && e3 < tol,
        "dtype %s classes %d k %lld prec %d n %lld d %lld: rel err mean %.2e "
        "xx %.2e xz %.2e", culeace_dtype_name(t), classes, (long long)k,
        (int)prec, (long long)n, (long long)d, e1, e2, e3);
  if (classes) { /* class means against direct averages */
    double *cm = malloc((size_t)(k * d) * 8), *ref = calloc((size_t)(k * d), 8);
    int64_t *cnt = malloc((size_t)k * 8), *rc = calloc((size_t)k, 8);
    CHECK_OK(ctx, culeace_fitter_class_means(f, cm, cnt));
    for (int64_t i = 0; i < n; i++) {
      rc[cls[i]]++;
      for (int64_t j = 0; j < d; j++) ref[cls[i] * d + j] += x[i * d + j];
    }
    for (int64_t c = 0; c < k; c++) {
      CHECK(cnt[c] == rc[c], "class %lld count %lld vs %lld", (long long)c,
            (long long)cnt[c], (long long)rc[c]);
      if (rc[c] == 0) continue;
      for (int64_t j = 0; j < d; j++) ref[c * d + j] /= (double)rc[c];
      double e = tu_rel_err(cm + c * d, ref + c * d, d);
      CHECK(e < tol * 10, "class %lld mean rel err %.2e", (long long)c, e);
    }
    free(cm); free(ref); free(cnt); free(rc);
  }
  culeace_fitter_free(f);
  free(x); free(z); free(tmp); free(cls); free(xt);
  free(mx); free(sxx); free(sxz); free(gmx); free(gsxx); free(gsxz);
}

/* CULEACE_PRECISION_AUTO gives, bit for bit, the moments of the precision
 * it stands for: F32 for float16/bfloat16 rows, F64 for float32/float64,
 * fed the same rows in the same blocks. */
static void auto_case(culeace_ctx *ctx, tu_rng *rng, culeace_dtype t) {
  const int64_t n = 300, d = 13, k = 3;
  size_t es = culeace_dtype_size(t);
  char *xt = malloc((size_t)(n * d) * es);
  double *row = malloc((size_t)d * 8);
  int32_t *cls = malloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++) row[j] = 5 + tu_normal(rng) * (1 + j);
    culeace__from_f64(row, d, t, xt + (size_t)(i * d) * es);
    cls[i] = (int32_t)tu_randint(rng, 0, k - 1);
  }
  int half = t == CULEACE_F16 || t == CULEACE_BF16;
  culeace_precision want = half ? CULEACE_PRECISION_F32 : CULEACE_PRECISION_F64;
  double *m[2], *xx[2], *xz[2];
  tu_rng blocks = *rng; /* both fitters get the same block split */
  for (int v = 0; v < 2; v++) {
    culeace_fit_opts o;
    culeace_fit_opts_init(&o);
    o.precision = v ? want : CULEACE_PRECISION_AUTO;
    culeace_fitter *f = NULL;
    m[v] = malloc((size_t)d * 8);
    xx[v] = malloc((size_t)(d * d) * 8);
    xz[v] = malloc((size_t)(d * k) * 8);
    tu_rng r = blocks;
    CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, CULEACE_Z_CLASSES, &o, &f));
    if (f) {
      feed(ctx, f, xt, t, n, d, cls, NULL, k, &r);
      CHECK_OK(ctx, culeace_fitter_moments(f, m[v], NULL, xz[v], xx[v]));
      culeace_fitter_free(f);
    }
  }
  CHECK(!memcmp(m[0], m[1], (size_t)d * 8) &&
            !memcmp(xx[0], xx[1], (size_t)(d * d) * 8) &&
            !memcmp(xz[0], xz[1], (size_t)(d * k) * 8),
        "auto precision on %s rows differs from precision %d",
        culeace_dtype_name(t), (int)want);
  for (int v = 0; v < 2; v++) {
    free(m[v]); free(xx[v]); free(xz[v]);
  }
  free(xt); free(row); free(cls);
}

/* Blocks larger than the CUDA backend's pipeline chunk (16384 rows: a
 * block of more than 32768 rows is reduced in chunks, copy and compute
 * overlapped) still give the two-pass moments, fed as one block, after a
 * small first block (so the merge with earlier rows is exercised too); and
 * a NaN in a late chunk is refused with its row named and leaves the
 * moments as they were. The CPU backend must do the same. */
static void large_block_case(culeace_ctx *ctx, tu_rng *rng, culeace_dtype t,
                             culeace_precision prec) {
  const int64_t n = 2 * 16384 + 4321 + 17, d = 19, k = 3, first = 17;
  size_t es = culeace_dtype_size(t);
  double *x = malloc((size_t)(n * d) * 8), *z = calloc((size_t)(n * k), 8);
  int32_t *cls = malloc((size_t)n * 4);
  char *xt = malloc((size_t)(n * d) * es);
  double row[19];
  for (int64_t i = 0; i < n; i++) {
    cls[i] = (int32_t)tu_randint(rng, 0, k - 1);
    for (int64_t j = 0; j < d; j++)
      row[j] = 50.0 + tu_normal(rng) * (1 + 0.1 * j) + 0.7 * cls[i];
    culeace__from_f64(row, d, t, xt + (size_t)i * d * es);
    culeace__to_f64(xt + (size_t)i * d * es, t, d, x + i * d);
    z[i * k + cls[i]] = 1;
  }
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.precision = prec;
  culeace_fitter *f = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, d, k, CULEACE_Z_CLASSES, &o, &f));
  if (f) {
    CHECK_OK(ctx, culeace_fitter_update_classes(f, xt, t, first, d, cls));
    /* A NaN in the last chunk: refused, the row named, nothing added. */
    char *bad = malloc((size_t)(n * d) * es);
    memcpy(bad, xt, (size_t)(n * d) * es);
    const int64_t nan_row = n - first - 5;
    double nanv = NAN;
    culeace__from_f64(&nanv, 1, t, bad + ((size_t)(first + nan_row) * d + 3) * es);
    CHECK(culeace_fitter_update_classes(f, bad + (size_t)first * d * es, t,
                                        n - first, d, cls + first) ==
              CULEACE_ERR_NONFINITE,
          "NaN in a late chunk accepted (%s)", culeace_dtype_name(t));
    char want[64];
    snprintf(want, sizeof want, "row %lld", (long long)nan_row);
    CHECK(strstr(culeace_ctx_last_error(ctx), want) != NULL,
          "message names %s: %s", want, culeace_ctx_last_error(ctx));
    free(bad);
    CHECK(culeace_fitter_rows(f) == first, "rows after the refused block");
    CHECK_OK(ctx, culeace_fitter_update_classes(f, xt + (size_t)first * d * es,
                                                t, n - first, d, cls + first));
    double mx[19], *sxx = malloc((size_t)(d * d) * 8),
           *sxz = malloc((size_t)(d * k) * 8);
    double gmx[19], *gsxx = malloc((size_t)(d * d) * 8),
           *gsxz = malloc((size_t)(d * k) * 8);
    two_pass(x, z, n, d, k, mx, sxx, sxz);
    CHECK_OK(ctx, culeace_fitter_moments(f, gmx, NULL, gsxz, gsxx));
    double tol = prec == CULEACE_PRECISION_F64 ? 1e-10 : 2e-5;
    double tol_xx = prec != CULEACE_PRECISION_TENSOR ? tol
                    : t == CULEACE_BF16 ? 4e-3 : 5e-4; /* as one_case */
    double e1 = tu_rel_err(gmx, mx, d), e2 = tu_rel_err(gsxx, sxx, d * d),
           e3 = tu_rel_err(gsxz, sxz, d * k);
    CHECK(e1 < tol && e2 < tol_xx && e3 < tol,
          "large block %s prec %d: rel err mean %.2e xx %.2e xz %.2e",
          culeace_dtype_name(t), (int)prec, e1, e2, e3);
    free(sxx); free(sxz); free(gsxx); free(gsxz);
    culeace_fitter_free(f);
  }
  free(x); free(z); free(cls); free(xt);
}

/* With --cuda the same cases run on a CUDA context (the running moments
 * then stay on the device); exit 77 (skipped) when there is none. */
int main(int argc, char **argv) {
  culeace_ctx *ctx = NULL;
  culeace_ctx_opts co;
  culeace_ctx_opts_init(&co);
  int cuda = argc > 1 && !strcmp(argv[1], "--cuda");
  co.device = cuda ? CULEACE_DEVICE_CUDA : CULEACE_DEVICE_CPU;
  char err[1024] = "";
  if (cuda && culeace_ctx_create(&co, &ctx, err, sizeof err) != CULEACE_OK) {
    printf("SKIP: fitter on CUDA: %s\n", err);
    return 77;
  }
  if (!cuda) CHECK_OK(ctx, culeace_ctx_create(&co, &ctx, NULL, 0));
  printf("fitter on %s\n", culeace_ctx_backend_name(ctx));
  tu_rng rng;
  tu_seed(&rng, 42);
  culeace_dtype types[4] = {CULEACE_F64, CULEACE_F32, CULEACE_F16, CULEACE_BF16};
  for (int rep = 0; rep < 6; rep++)
    for (int ti = 0; ti < 4; ti++) {
      one_case(ctx, &rng, types[ti], 1, 2, CULEACE_PRECISION_F64);
      one_case(ctx, &rng, types[ti], 1, 5, CULEACE_PRECISION_F64);
      one_case(ctx, &rng, types[ti], 0, 3, CULEACE_PRECISION_F64);
      one_case(ctx, &rng, types[ti], 1, 3, CULEACE_PRECISION_F32);
      one_case(ctx, &rng, types[ti], 1, 2, CULEACE_PRECISION_TENSOR);
    }
  for (int ti = 0; ti < 4; ti++) auto_case(ctx, &rng, types[ti]);
  large_block_case(ctx, &rng, CULEACE_F16, CULEACE_PRECISION_F32);
  large_block_case(ctx, &rng, CULEACE_F32, CULEACE_PRECISION_F64);
  large_block_case(ctx, &rng, CULEACE_BF16, CULEACE_PRECISION_TENSOR);
  /* Errors: bad class, non-finite row, stride too small. */
  culeace_fitter *f = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, 3, 2, CULEACE_Z_CLASSES, NULL, &f));
  double xb[6] = {1, 2, 3, 4, NAN, 6};
  int32_t cb[2] = {0, 1}, cbad[2] = {0, 7};
  CHECK(culeace_fitter_update_classes(f, xb, CULEACE_F64, 2, 3, cb) ==
            CULEACE_ERR_NONFINITE, "NaN row accepted");
  CHECK(strstr(culeace_ctx_last_error(ctx), "row 1") != NULL, "msg: %s",
        culeace_ctx_last_error(ctx));
  xb[4] = 5;
  CHECK(culeace_fitter_update_classes(f, xb, CULEACE_F64, 2, 3, cbad) ==
            CULEACE_ERR_INVALID_ARG, "class 7 accepted");
  CHECK(culeace_fitter_update_classes(f, xb, CULEACE_F64, 2, 2, cb) ==
            CULEACE_ERR_INVALID_ARG, "ldx < d accepted");
  CHECK(culeace_fitter_rows(f) == 0, "rejected blocks were counted");
  culeace_fitter_free(f);
  CHECK(culeace_fitter_create(ctx, 3, 1, CULEACE_Z_CLASSES, NULL, &f) ==
            CULEACE_ERR_DEGENERATE, "one class accepted");
  culeace_fit_opts bad;
  culeace_fit_opts_init(&bad);
  bad.precision = (culeace_precision)7;
  CHECK(culeace_fitter_create(ctx, 3, 2, CULEACE_Z_CLASSES, &bad, &f) ==
            CULEACE_ERR_INVALID_ARG, "precision 7 accepted");
  CHECK(strstr(culeace_ctx_last_error(ctx), "unknown precision 7") != NULL,
        "msg: %s", culeace_ctx_last_error(ctx));
  culeace_ctx_free(ctx);
  return tu_finish("test_moments");
}
