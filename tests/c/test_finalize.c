/* test_finalize.c — the eraser a fitter builds, compared across the ways it
 * can be built from the same rows:
 *
 *   test_finalize          CPU backend: the same rows fed in two different
 *                          block splits give the same eraser; the Cholesky
 *                          whitening (well-conditioned S) gives the eraser
 *                          of the eigendecomposition's (CULEACE_WHITEN=eigh)
 *                          and a singular S takes the eigendecomposition
 *   test_finalize --cuda   a CUDA context, whose LEACE whitening is built on
 *                          the device (backend leace_whiten/leace_factors),
 *                          vs the same context with CULEACE_HOST_WHITEN set
 *                          (the host path: eigh and gemm through the
 *                          backend) and vs a CPU context; exits 77 (skip)
 *                          without a usable GPU
 *
 * Compared: the edit L R (d, d) and the bias, as ||a - b||_F / ||b||_F, and
 * the rank. Cases cover d not a multiple of 8, n < d (with shrinkage),
 * binary, multi-class and continuous z, affine or not, shrinkage or not,
 * the covariance-trace constraint on and off, and every row dtype. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "culeace.h"
#include "testutil.h"

typedef struct {
  int64_t n, d, k;
  int classes; /* 1: class labels, k classes; 0: k continuous columns */
  culeace_dtype dtype;
  int affine, shrinkage, constrain;
  int singular; /* n < d without shrinkage: S is singular */
} fcase;

/* Rows (n, d) of dtype with per-column scales, a shared low-rank part and a
 * planted label signal; labels or continuous z. */
static void make_data(tu_rng *rng, const fcase *c, void *x, int32_t *cls,
                      double *z) {
  size_t es = culeace_dtype_size(c->dtype);
  double *row = malloc((size_t)c->d * 8), *scale = malloc((size_t)c->d * 8);
  double *u = malloc((size_t)c->d * 8);
  for (int64_t j = 0; j < c->d; j++) {
    scale[j] = exp(tu_uniform(rng) * 2 - 1);
    u[j] = tu_normal(rng);
  }
  for (int64_t i = 0; i < c->n; i++) {
    double g = tu_normal(rng), t;
    int32_t y = (int32_t)tu_randint(rng, 0, c->k - 1);
    t = c->classes ? (double)y : tu_normal(rng);
    for (int64_t j = 0; j < c->d; j++)
      row[j] = 3.0 + scale[j] * tu_normal(rng) + 0.5 * g * u[j] + 0.8 * t * u[j];
    culeace__from_f64(row, c->d, c->dtype,
                      (char *)x + (size_t)i * (size_t)c->d * es);
    if (c->classes) {
      cls[i] = y;
    } else {
      for (int64_t q = 0; q < c->k; q++)
        z[i * c->k + q] = t + 0.3 * tu_normal(rng) * (double)(q + 1);
    }
  }
  free(row);
  free(scale);
  free(u);
}

/* Fits on ctx with blocks of at most `block` rows; NULL on failure. */
static culeace_eraser *fit(culeace_ctx *ctx, const fcase *c, const void *x,
                           const int32_t *cls, const double *z, int64_t block) {
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.affine = c->affine;
  o.shrinkage = c->shrinkage;
  o.constrain_cov_trace = c->constrain;
  culeace_fitter *f = NULL;
  CHECK_OK(ctx, culeace_fitter_create(ctx, c->d, c->k,
                                      c->classes ? CULEACE_Z_CLASSES
                                                 : CULEACE_Z_CONTINUOUS,
                                      &o, &f));
  if (!f) return NULL;
  size_t es = culeace_dtype_size(c->dtype);
  for (int64_t i0 = 0; i0 < c->n; i0 += block) {
    int64_t b = c->n - i0 < block ? c->n - i0 : block;
    const char *rows = (const char *)x + (size_t)i0 * (size_t)c->d * es;
    if (c->classes)
      CHECK_OK(ctx, culeace_fitter_update_classes(f, rows, c->dtype, b, c->d,
                                                  cls + i0));
    else
      CHECK_OK(ctx, culeace_fitter_update_continuous(f, rows, c->dtype, b,
                                                     c->d, z + i0 * c->k,
                                                     c->k));
  }
  culeace_eraser *e = NULL;
  CHECK_OK(ctx, culeace_fitter_finalize(f, &e));
  culeace_fitter_free(f);
  return e;
}

/* edit (d, d) = L R and bias (d) of e; returns the rank. */
static int64_t edit_of(const culeace_eraser *e, int64_t d, double *edit,
                       double *bias) {
  culeace_eraser_info info;
  culeace_eraser_info_get(e, &info);
  int64_t r = info.rank;
  double *L = malloc((size_t)(d * (r ? r : 1)) * 8);
  double *R = malloc((size_t)(d * (r ? r : 1)) * 8);
  culeace_eraser_factors(e, L, R, bias);
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = 0; j < d; j++) {
      double s = 0;
      for (int64_t q = 0; q < r; q++) s += L[i * r + q] * R[q * d + j];
      edit[i * d + j] = s;
    }
  free(L);
  free(R);
  return r;
}

static double fro_rel(const double *a, const double *b, int64_t m) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < m; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Compares erasers a and b (reference) of the case; tol on the edit. */
static void compare(const fcase *c, const char *what, culeace_eraser *a,
                    culeace_eraser *b, double tol) {
  if (!a || !b) return;
  int64_t d = c->d;
  double *ea = malloc((size_t)(d * d) * 8), *eb = malloc((size_t)(d * d) * 8);
  double *ba = malloc((size_t)d * 8), *bb = malloc((size_t)d * 8);
  int64_t ra = edit_of(a, d, ea, ba), rb = edit_of(b, d, eb, bb);
  double e1 = fro_rel(ea, eb, d * d), e2 = fro_rel(ba, bb, d);
  if (getenv("CULEACE_TEST_VERBOSE"))
    printf("%-28s %-8s n %4lld d %3lld k %lld cls %d aff %d shr %d tr %d: "
           "rank %lld/%lld edit %.1e bias %.1e\n", what,
           culeace_dtype_name(c->dtype), (long long)c->n, (long long)d,
           (long long)c->k, c->classes, c->affine, c->shrinkage, c->constrain,
           (long long)ra, (long long)rb, e1, e2);
  CHECK(ra == rb && e1 <= tol && e2 <= tol,
        "%s: %s n %lld d %lld k %lld classes %d affine %d shrinkage %d "
        "trace %d: rank %lld vs %lld, edit rel %.2e, bias rel %.2e (limit "
        "%.0e)", what, culeace_dtype_name(c->dtype), (long long)c->n,
        (long long)d, (long long)c->k, c->classes, c->affine, c->shrinkage,
        c->constrain, (long long)ra, (long long)rb, e1, e2, tol);
  free(ea);
  free(eb);
  free(ba);
  free(bb);
}

/* 1 when a and b have bit-identical edits and biases. */
static int same_bits(const fcase *c, culeace_eraser *a, culeace_eraser *b) {
  int64_t d = c->d;
  double *ea = malloc((size_t)(d * d) * 8), *eb = malloc((size_t)(d * d) * 8);
  double *ba = malloc((size_t)d * 8), *bb = malloc((size_t)d * 8);
  int same = edit_of(a, d, ea, ba) == edit_of(b, d, eb, bb) &&
             !memcmp(ea, eb, (size_t)(d * d) * 8) &&
             !memcmp(ba, bb, (size_t)d * 8);
  free(ea);
  free(eb);
  free(ba);
  free(bb);
  return same;
}

static void run_case(culeace_ctx *main_ctx, culeace_ctx *cpu, int cuda,
                     tu_rng *rng, const fcase *c) {
  size_t es = culeace_dtype_size(c->dtype);
  void *x = malloc((size_t)(c->n * c->d) * es);
  int32_t *cls = malloc((size_t)c->n * 4);
  double *z = malloc((size_t)(c->n * c->k) * 8);
  make_data(rng, c, x, cls, z);
  int64_t block = tu_randint(rng, 1, c->n / 2 + 1);
  if (!cuda) {
    culeace_eraser *a = fit(main_ctx, c, x, cls, z, c->n);
    culeace_eraser *b = fit(main_ctx, c, x, cls, z, block);
    compare(c, "cpu: one block vs split", b, a, 1e-9);
    setenv("CULEACE_WHITEN", "eigh", 1);
    culeace_eraser *eig = fit(main_ctx, c, x, cls, z, c->n);
    unsetenv("CULEACE_WHITEN");
    compare(c, "cpu: Cholesky vs eigh", a, eig, 1e-9);
    if (a && eig && c->singular) /* both took the eigendecomposition */
      CHECK(same_bits(c, a, eig), "singular S, d %lld: the default path "
            "differs from the eigendecomposition's", (long long)c->d);
    else if (a && eig && c->d >= 7) /* two algorithms: other roundings */
      CHECK(!same_bits(c, a, eig), "d %lld: the Cholesky whitening was not "
            "taken (bit-identical to the eigendecomposition's)",
            (long long)c->d);
    culeace_eraser_free(eig);
    culeace_eraser_free(a);
    culeace_eraser_free(b);
  } else {
    culeace_eraser *dev = fit(main_ctx, c, x, cls, z, block);
    setenv("CULEACE_HOST_WHITEN", "1", 1);
    culeace_eraser *host = fit(main_ctx, c, x, cls, z, block);
    unsetenv("CULEACE_HOST_WHITEN");
    culeace_eraser *ref = fit(cpu, c, x, cls, z, block);
    compare(c, "cuda: device vs host path", dev, host, 1e-9);
    compare(c, "cuda (device path) vs cpu", dev, ref, 1e-8);
    culeace_eraser_free(dev);
    culeace_eraser_free(host);
    culeace_eraser_free(ref);
  }
  free(x);
  free(cls);
  free(z);
}

int main(int argc, char **argv) {
  int cuda = argc > 1 && !strcmp(argv[1], "--cuda");
  char err[1024] = "";
  culeace_ctx_opts co;
  culeace_ctx_opts_init(&co);
  co.device = CULEACE_DEVICE_CPU;
  culeace_ctx *cpu = NULL, *gpu = NULL;
  CHECK_OK(cpu, culeace_ctx_create(&co, &cpu, err, sizeof err));
  if (!cpu) return tu_finish("test_finalize");
  if (cuda) {
    co.device = CULEACE_DEVICE_CUDA;
    if (culeace_ctx_create(&co, &gpu, err, sizeof err) != CULEACE_OK) {
      printf("SKIP: CUDA context: %s\n", err);
      culeace_ctx_free(cpu);
      return 77;
    }
    printf("test_finalize: %s (%s) vs cpu\n", culeace_ctx_backend_name(gpu),
           culeace_ctx_device_note(gpu));
  }
  tu_rng rng;
  tu_seed(&rng, 7);
  const int64_t dims[] = {1, 7, 33, 130, 257};
  const culeace_dtype types[] = {CULEACE_F32, CULEACE_F64, CULEACE_F16,
                                 CULEACE_BF16};
  int ci = 0;
  for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
    for (int variant = 0; variant < 5; variant++, ci++) {
      /* variant 4: fewer rows than features, no shrinkage: S singular
       * (the CPU's whitening choice; d >= 33 so that n < d) */
      if (variant == 4 && (cuda || dims[di] < 33)) continue;
      fcase c = {0};
      c.d = dims[di];
      c.dtype = types[ci % 4];
      c.classes = variant != 2;
      c.k = variant == 0 ? 2 : variant == 1 ? 5 : variant == 2 ? 2 : 3;
      /* variant 3: fewer rows than features (needs shrinkage to whiten) */
      c.n = variant >= 3 ? c.d / 2 + 8 : 3 * c.d + 40;
      c.shrinkage = variant == 3 ? 1 : variant == 4 ? 0 : (int)(ci % 3 != 0);
      c.singular = variant == 4;
      c.affine = ci % 5 != 1;
      c.constrain = ci % 4 != 2;
      run_case(cuda ? gpu : cpu, cpu, cuda, &rng, &c);
    }
  culeace_ctx_free(gpu);
  culeace_ctx_free(cpu);
  return tu_finish("test_finalize");
}
