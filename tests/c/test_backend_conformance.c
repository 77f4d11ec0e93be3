/* test_backend_conformance.c — the backend conformance suite: every
 * operation of the backend ops table (src/backend/backend.h: block_moments,
 * eigh, gemm, apply, apply_device, acc_*) on random inputs of random shapes,
 * against a reference.
 *
 *   test_backend_conformance            CPU backend vs naive float64 code
 *                                       written here (always runs)
 *   test_backend_conformance --cuda     CUDA backend vs the CPU backend on
 *                                       the same inputs; prints "SKIP: ..."
 *                                       and exits 77 when there is no CUDA
 *   --seed N                            another seed (the default is fixed
 *                                       and printed)
 *   --quick                             fewer shapes (see `quick` below),
 *                                       for runs under compute-sanitizer
 *   --no-oom                            leaves out the deliberate
 *                                       out-of-memory case (memcheck counts
 *                                       the failed cudaHostAlloc it makes as
 *                                       an API error)
 *
 * What every case checks:
 *   - guards: each buffer has GUARD bytes of a sentinel before and after it,
 *     which must be intact after the call; inputs must be unchanged;
 *   - outputs are poisoned with NaN before the call and every element the
 *     contract says is written must no longer be NaN (cxx: upper triangle);
 *   - strided inputs carry NaN in their row padding (reading it would spoil
 *     the result) and strided outputs (apply's x, gemm's C) must leave their
 *     padding bit for bit as it was;
 *   - the error, normalised as ||out - ref||_F / ||ref||_F, is within the
 *     limit for its precision (LIM_* below); 2-byte rows are compared
 *     element by element in units in the last place of the row's magnitude.
 * Eigenvectors are never compared directly, only through quantities that do
 * not depend on their sign or order: eigenvalues and the projector onto the
 * top-m eigenspace, plus residuals, orthonormality and reconstruction.
 *
 * The logistic probes' pass (core/probe_pass.c on the CPU, probe_open/
 * probe_eval where a backend has them) is checked against float64 sums over
 * the same centred float32 rows (CPU) and against the CPU pass (CUDA), for
 * float32 rows (a centred copy) and strided 2-byte rows centred as read,
 * binary and softmax problems, float32 and float64 sums, and a pending
 * subset of the problems in another order.
 * acc_update/acc_read/acc_free (running co-moments, optional: NULL on the
 * CPU) are checked against the float64 two-pass wherever a backend has them.
 * The CUDA half adds apply_device (rows in cudaMalloc'ed memory), factor
 * cache reuse across serials, and recovery after a failed 64 TiB
 * culeace_host_alloc. A summary line per operation and metric ends the
 * output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/convert.h"
#include "core/ctx.h"
#include "core/probe.h"
#include "culeace.h"
#include "testutil.h"

#ifdef CULEACE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#define DEFAULT_SEED 20240611ull
#define FIRST_SERIAL 0x7000000000000000ull

/* Error limits (normalised Frobenius unless said otherwise). */
#define LIM_F64 1e-10      /* float64 moments, gemm, apply, eigh values */
#define LIM_PROJ 1e-8      /* eigh: projector onto the top-m eigenspace */
#define LIM_MOM_F32 1e-4   /* block_moments with float32 products */
#define LIM_APPLY_F32 1e-5 /* apply on float32 rows */
#define LIM_ULP 2.0        /* apply on float16/bfloat16 rows, in ulps */
#define LIM_PROBE_F32 1e-4 /* probe pass, float32 sums: gradient sums */
#define LIM_PROBE_LOSS_F32 1e-5 /* probe pass, float32 logits: losses */

static const culeace_dtype DTYPES[4] = {CULEACE_F64, CULEACE_F32, CULEACE_F16,
                                        CULEACE_BF16};
/* d not a multiple of 8, plus one >= 256. */
static const int64_t DIMS[6] = {1, 5, 13, 67, 130, 300};

/* --quick (for slow runs, e.g. under compute-sanitizer): every operation,
 * dtype, precision and edge case still runs, on d in {1, 13, 300} only and
 * without the extra random shapes. */
static int quick;
static int no_oom; /* --no-oom */
static int skip_dim(int di) { return quick && di != 0 && di != 2 && di != 5; }
static int extra_cases(int n) { return quick ? 0 : n; }

/* ---- the suite ----------------------------------------------------------- */

typedef struct {
  culeace_ctx *ctx; /* backend under test */
  culeace_ctx *ref; /* CPU context giving the expected outputs; NULL: the
                       naive float64 references in this file */
  const char *what; /* "cpu vs float64 reference", "cuda vs cpu" */
  tu_rng rng;
  uint64_t serial; /* next apply-factor serial */
  int notes;       /* contract deviations reported as notes, not failures */
} suite;

/* Worst error per operation and metric, for the summary. */
typedef struct {
  const char *op, *metric;
  double limit, worst;
  int cases;
} stat;
static stat stats[32];
static int n_stats;

static void record(const char *op, const char *metric, double limit,
                   double err) {
  stat *st = NULL;
  for (int i = 0; i < n_stats && !st; i++)
    if (!strcmp(stats[i].op, op) && !strcmp(stats[i].metric, metric))
      st = &stats[i];
  if (!st) {
    if (n_stats == (int)(sizeof stats / sizeof stats[0])) return;
    st = &stats[n_stats++];
    *st = (stat){op, metric, limit, 0, 0};
  }
  st->cases++;
  if (isnan(err) || err > st->worst) st->worst = isnan(err) ? INFINITY : err;
}

static void print_summary(const suite *s) {
  printf("summary (%s):\n", s->what);
  for (int i = 0; i < n_stats; i++)
    printf("  %-14s %-34s %4d cases  worst %.2e  limit %.0e\n", stats[i].op,
           stats[i].metric, stats[i].cases, stats[i].worst, stats[i].limit);
}

/* ---- memory: guarded buffers, poison, padding ---------------------------- */

enum { GUARD = 128 }; /* bytes either side (16 float64 elements) */
#define SENTINEL 0xA5

typedef struct {
  unsigned char *raw;
  size_t bytes;
} gbuf;

static void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "test: out of memory (%zu bytes)\n", bytes);
    exit(1);
  }
  return p;
}

/* bytes of sentinel-filled memory between two guards. */
static void *gb_alloc(gbuf *g, size_t bytes) {
  g->bytes = bytes;
  g->raw = xmalloc(bytes + 2 * GUARD);
  memset(g->raw, SENTINEL, bytes + 2 * GUARD);
  return g->raw + GUARD;
}

/* NULL (an absent buffer) unless want. */
static void *gb_opt(gbuf *g, size_t bytes, int want) {
  g->raw = NULL;
  g->bytes = 0;
  return want ? gb_alloc(g, bytes) : NULL;
}

static int gb_intact(const gbuf *g) {
  if (!g->raw) return 1;
  for (size_t i = 0; i < GUARD; i++)
    if (g->raw[i] != SENTINEL || g->raw[GUARD + g->bytes + i] != SENTINEL)
      return 0;
  return 1;
}

static void gb_free(gbuf *g) {
  free(g->raw);
  g->raw = NULL;
}

static void *dup_bytes(const void *p, size_t bytes) {
  void *q = xmalloc(bytes);
  if (p) memcpy(q, p, bytes);
  return q;
}

static void poison(double *p, int64_t count) {
  for (int64_t i = 0; p && i < count; i++) p[i] = NAN;
}

static int64_t count_nan(const double *p, int64_t count) {
  int64_t c = 0;
  for (int64_t i = 0; p && i < count; i++) c += isnan(p[i]) != 0;
  return c;
}

static int64_t count_nan_upper(const double *c, int64_t d) {
  int64_t bad = 0;
  for (int64_t i = 0; c && i < d; i++) bad += count_nan(c + i * d + i, d - i);
  return bad;
}

/* A NaN with a recognisable payload in dtype t: fills row padding. */
static void nan_pattern(culeace_dtype t, void *dst) {
  uint64_t u64 = 0x7FFA5A5A5A5A5A5Aull;
  uint32_t u32 = 0x7FE5A5A5u;
  uint16_t f16 = 0x7E5Au, bf16 = 0x7FE5u;
  switch (t) {
  case CULEACE_F64: memcpy(dst, &u64, 8); break;
  case CULEACE_F32: memcpy(dst, &u32, 4); break;
  case CULEACE_F16: memcpy(dst, &f16, 2); break;
  case CULEACE_BF16: memcpy(dst, &bf16, 2); break;
  }
}

/* Fills columns d..ld-1 of n rows with the NaN pattern. */
static void fill_padding(void *x, culeace_dtype t, int64_t n, int64_t d,
                         int64_t ld) {
  size_t es = culeace_dtype_size(t);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = d; j < ld; j++)
      nan_pattern(t, (char *)x + ((size_t)i * ld + j) * es);
}

/* Padding elements that no longer hold the NaN pattern. */
static int64_t padding_changed(const void *x, culeace_dtype t, int64_t n,
                               int64_t d, int64_t ld) {
  size_t es = culeace_dtype_size(t);
  unsigned char pat[8];
  nan_pattern(t, pat);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = d; j < ld; j++)
      bad += memcmp((const char *)x + ((size_t)i * ld + j) * es, pat, es) != 0;
  return bad;
}

/* ---- typed rows ---------------------------------------------------------- */

/* Stores d values as dtype t (2-byte types: via float32, nearest even). */
static void put_row(void *dst, culeace_dtype t, const double *v, int64_t d) {
  if (t == CULEACE_F64) {
    memcpy(dst, v, (size_t)d * 8);
    return;
  }
  float *f = t == CULEACE_F32 ? dst : xmalloc((size_t)d * 4);
  for (int64_t j = 0; j < d; j++) f[j] = (float)v[j];
  if (t != CULEACE_F32) {
    culeace__from_f32(f, d, t, dst);
    free(f);
  }
}

/* Reads d values of dtype t exactly as float64. */
static void get_row(const void *src, culeace_dtype t, int64_t d, double *v) {
  if (t == CULEACE_F64) {
    memcpy(v, src, (size_t)d * 8);
    return;
  }
  float *f = xmalloc((size_t)d * 4);
  if (t == CULEACE_F32)
    memcpy(f, src, (size_t)d * 4);
  else
    culeace__to_f32(src, t, d, f);
  for (int64_t j = 0; j < d; j++) v[j] = f[j];
  free(f);
}

static void get_rows(const void *x, culeace_dtype t, int64_t n, int64_t d,
                     int64_t ld, double *v) {
  size_t es = culeace_dtype_size(t);
  for (int64_t i = 0; i < n; i++)
    get_row((const char *)x + (size_t)i * ld * es, t, d, v + i * d);
}

/* Rounds float64 values to dtype t and back (what storing as t does). */
static void round_to(culeace_dtype t, double *v, int64_t count) {
  void *tmp = xmalloc((size_t)count * culeace_dtype_size(t));
  put_row(tmp, t, v, count);
  get_row(tmp, t, count, v);
  free(tmp);
}

/* Random rows with mean ~3 (centring matters) and unequal column scales,
 * stored as t into x (n, d) stride ld, padding NaN; xd (n, d) gets the
 * stored values. */
static void random_rows(tu_rng *rng, culeace_dtype t, int64_t n, int64_t d,
                        int64_t ld, void *x, double *xd) {
  size_t es = culeace_dtype_size(t);
  for (int64_t i = 0; i < n; i++) {
    double *v = xd + i * d;
    for (int64_t j = 0; j < d; j++)
      v[j] = 3.0 + tu_normal(rng) * (0.5 + (double)(j % 4) * 0.5);
    put_row((char *)x + (size_t)i * ld * es, t, v, d);
    get_row((char *)x + (size_t)i * ld * es, t, d, v);
  }
  fill_padding(x, t, n, d, ld);
}

static void random_doubles(tu_rng *rng, double *p, int64_t count,
                           double offset) {
  for (int64_t i = 0; i < count; i++) p[i] = offset + tu_normal(rng);
}

/* ---- error measures ------------------------------------------------------ */

/* ||out - ref||_F / max(||ref||_F, floor); infinite when out has a NaN. */
static double nerr(const double *out, const double *ref, int64_t count,
                   double floor) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < count; i++) {
    double e = out[i] - ref[i];
    num += e * e;
    den += ref[i] * ref[i];
  }
  num = sqrt(num);
  den = sqrt(den);
  if (isnan(num)) return INFINITY;
  if (den < floor) den = floor;
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return num / den;
}

/* The upper triangle (i <= j) of a row-major (d, d) matrix, packed. */
static double *upper_of(const double *c, int64_t d) {
  double *u = xmalloc((size_t)(d * (d + 1) / 2) * 8);
  int64_t o = 0;
  for (int64_t i = 0; i < d; i++)
    for (int64_t j = i; j < d; j++) u[o++] = c[i * d + j];
  return u;
}

static double nerr_upper(const double *out, const double *ref, int64_t d,
                         double floor) {
  double *a = upper_of(out, d), *b = upper_of(ref, d);
  double e = nerr(a, b, d * (d + 1) / 2, floor);
  free(a);
  free(b);
  return e;
}

static double sumsq(const double *p, int64_t count) {
  double s = 0;
  for (int64_t i = 0; i < count; i++) s += p[i] * p[i];
  return s;
}

/* Element-wise error of 2-byte rows in units in the last place of each
 * row's largest expected magnitude (mant: 10 for float16, 7 for bfloat16). */
static double ulp_err(const double *out, const double *ref, int64_t n,
                      int64_t d, int mant) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double mag = 0;
    for (int64_t j = 0; j < d; j++)
      if (fabs(ref[i * d + j]) > mag) mag = fabs(ref[i * d + j]);
    int e;
    frexp(mag > 0 ? mag : 1e-30, &e); /* mag in [2^(e-1), 2^e) */
    double ulp = ldexp(1.0, e - 1 - mant);
    for (int64_t j = 0; j < d; j++) {
      double err = fabs(out[i * d + j] - ref[i * d + j]) / ulp;
      if (isnan(err)) return INFINITY;
      if (err > worst) worst = err;
    }
  }
  return worst;
}

/* ---- block_moments ------------------------------------------------------- */

/* A centred value as TENSOR precision feeds it to cxx for rows of type t:
 * rounded to float32, then (float16/bfloat16 rows) to t. */
static double tensor_round(double v, culeace_dtype t) {
  float f = (float)v;
  if (t == CULEACE_F16) return culeace__f16_to_f32(culeace__f32_to_f16(f));
  if (t == CULEACE_BF16) return culeace__bf16_to_f32(culeace__f32_to_bf16(f));
  return v;
}

/* Two passes in float64: means, then co-moments about them (cxx: upper
 * triangle only). With round16 (TENSOR precision on 16-bit rows of type t)
 * the centred values entering cxx are first rounded as tensor_round does;
 * cxz keeps them unrounded. */
static void ref_moments(const double *x, int64_t n, int64_t d, const double *z,
                        int64_t k, int64_t ldz, int round16, culeace_dtype t,
                        double *mx, double *mz, double *cxx, double *cxz) {
  double *xc = xmalloc((size_t)d * 8), *zc = xmalloc((size_t)k * 8);
  double *xr = xmalloc((size_t)d * 8);
  memset(mx, 0, (size_t)d * 8);
  if (k) memset(mz, 0, (size_t)k * 8);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++) mx[j] += x[i * d + j];
    for (int64_t c = 0; c < k; c++) mz[c] += z[i * ldz + c];
  }
  for (int64_t j = 0; j < d; j++) mx[j] /= (double)n;
  for (int64_t c = 0; c < k; c++) mz[c] /= (double)n;
  if (cxx) memset(cxx, 0, (size_t)(d * d) * 8);
  if (k) memset(cxz, 0, (size_t)(d * k) * 8);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++) xc[j] = x[i * d + j] - mx[j];
    for (int64_t c = 0; c < k; c++) zc[c] = z[i * ldz + c] - mz[c];
    for (int64_t j = 0; j < d; j++)
      xr[j] = round16 ? tensor_round(xc[j], t) : xc[j];
    for (int64_t a = 0; a < d; a++) {
      for (int64_t b = a; cxx && b < d; b++) cxx[a * d + b] += xr[a] * xr[b];
      for (int64_t c = 0; c < k; c++) cxz[a * k + c] += xc[a] * zc[c];
    }
  }
  free(xc);
  free(zc);
  free(xr);
}

static const culeace_precision PRECS[3] = {
    CULEACE_PRECISION_F64, CULEACE_PRECISION_F32, CULEACE_PRECISION_TENSOR};

static const char *prec_name(culeace_precision p) {
  return p == CULEACE_PRECISION_F64   ? "f64"
         : p == CULEACE_PRECISION_F32 ? "f32"
                                      : "tensor";
}

/* TENSOR rounds centred values of 16-bit rows to their type before cxx. */
static int is_round16(culeace_precision p, culeace_dtype t) {
  return p == CULEACE_PRECISION_TENSOR &&
         (t == CULEACE_F16 || t == CULEACE_BF16);
}

/* Limit and summary metric of a block_moments/acc_update result. */
static double moments_limit(culeace_precision p, const char **metric) {
  *metric = p == CULEACE_PRECISION_F64   ? "float64 products"
            : p == CULEACE_PRECISION_F32 ? "float32 products"
                                         : "tensor (16-bit centred, f32)";
  return p == CULEACE_PRECISION_F64 ? LIM_F64 : LIM_MOM_F32;
}

/* One block: x (n, d) of dtype t stride ldx, z (n, k) stride ldz; cxx
 * skipped (NULL) unless with_cxx. */
static void case_moments(suite *s, culeace_dtype t, culeace_precision p,
                         int64_t n, int64_t d, int64_t ldx, int64_t k,
                         int64_t ldz, int with_cxx) {
  size_t es = culeace_dtype_size(t);
  char desc[200];
  snprintf(desc, sizeof desc,
           "%s block_moments %s prec %s n %lld d %lld ldx %lld k %lld ldz "
           "%lld cxx %s",
           s->ctx->backend_name, culeace_dtype_name(t), prec_name(p),
           (long long)n, (long long)d, (long long)ldx, (long long)k,
           (long long)ldz, with_cxx ? "yes" : "NULL");
  gbuf gx, gz, gmx, gmz, gcxx, gcxz;
  void *x = gb_alloc(&gx, (size_t)(n * ldx) * es);
  double *xd = xmalloc((size_t)(n * d) * 8);
  random_rows(&s->rng, t, n, d, ldx, x, xd);
  double *z = gb_opt(&gz, (size_t)(n * ldz) * 8, k > 0);
  for (int64_t i = 0; z && i < n; i++) { /* z: mean ~0.5, tied to x */
    random_doubles(&s->rng, z + i * ldz, k, 0.5);
    for (int64_t c = 0; c < k; c++) z[i * ldz + c] += 0.3 * xd[i * d];
  }
  if (z) fill_padding(z, CULEACE_F64, n, k, ldz);
  void *x0 = dup_bytes(x, gx.bytes), *z0 = dup_bytes(z, gz.bytes);

  double *mx = gb_alloc(&gmx, (size_t)d * 8);
  double *mz = gb_opt(&gmz, (size_t)k * 8, k > 0);
  double *cxx = gb_opt(&gcxx, (size_t)(d * d) * 8, with_cxx);
  double *cxz = gb_opt(&gcxz, (size_t)(d * k) * 8, k > 0);
  poison(mx, d), poison(mz, k), poison(cxx, cxx ? d * d : 0),
      poison(cxz, d * k);

  culeace_status st = s->ctx->backend->block_moments(
      s->ctx, x, t, n, d, ldx, z, k, ldz, p, mx, mz, cxx, cxz);
  CHECK(st == CULEACE_OK, "%s: %s: %s", desc, culeace_status_name(st),
        culeace_ctx_last_error(s->ctx));
  CHECK(gb_intact(&gx) && gb_intact(&gz) && gb_intact(&gmx) &&
            gb_intact(&gmz) && gb_intact(&gcxx) && gb_intact(&gcxz),
        "%s: a guard was overwritten", desc);
  CHECK(!memcmp(x, x0, gx.bytes) && (!z || !memcmp(z, z0, gz.bytes)),
        "%s: an input was modified", desc);
  int64_t unwritten = count_nan(mx, d) + count_nan(mz, k) +
                      count_nan_upper(cxx, d) + count_nan(cxz, d * k);
  CHECK(unwritten == 0, "%s: %lld required outputs not written (still NaN)",
        desc, (long long)unwritten);

  /* Expected: the reference backend or the float64 two-pass. */
  double *emx = xmalloc((size_t)d * 8), *emz = xmalloc((size_t)k * 8),
         *ecxx = with_cxx ? xmalloc((size_t)(d * d) * 8) : NULL,
         *ecxz = xmalloc((size_t)(d * k) * 8);
  if (s->ref) {
    culeace_status rst = s->ref->backend->block_moments(
        s->ref, x, t, n, d, ldx, k ? z : NULL, k, ldz, p, emx, k ? emz : NULL,
        ecxx, k ? ecxz : NULL);
    CHECK(rst == CULEACE_OK, "%s: reference: %s", desc,
          culeace_ctx_last_error(s->ref));
  } else {
    ref_moments(xd, n, d, z, k, ldz, is_round16(p, t), t, emx, emz, ecxx, ecxz);
  }

  /* Floors keep an exactly-zero reference (n = 1) from dividing by 0. */
  double xx = sumsq(xd, n * d), zz = 0;
  for (int64_t i = 0; i < n; i++) zz += sumsq(z ? z + i * ldz : NULL, k);
  double e_mx = nerr(mx, emx, d, 1e-300);
  double e_mz = k ? nerr(mz, emz, k, 1e-300) : 0;
  double e_xx = with_cxx ? nerr_upper(cxx, ecxx, d, 1e-6 * xx) : 0;
  double e_xz = k ? nerr(cxz, ecxz, d * k, 1e-6 * sqrt(xx * zz)) : 0;
  double err = fmax(fmax(e_mx, e_mz), fmax(e_xx, e_xz));
  if (isnan(e_mx + e_mz + e_xx + e_xz)) err = INFINITY;
  const char *metric;
  double lim = moments_limit(p, &metric);
  record("block_moments", metric, lim, err);
  CHECK(err <= lim,
        "%s: normalised error mean_x %.2e mean_z %.2e cxx %.2e cxz %.2e "
        "(limit %.0e)",
        desc, e_mx, e_mz, e_xx, e_xz, lim);

  gb_free(&gx), gb_free(&gz), gb_free(&gmx), gb_free(&gmz), gb_free(&gcxx),
      gb_free(&gcxz);
  free(xd), free(x0), free(z0), free(emx), free(emz), free(ecxx), free(ecxz);
}

static void suite_moments(suite *s) {
  int c = 0;
  static const int64_t KS[3] = {0, 1, 3};
  for (int di = 0; di < 6; di++) {
    if (skip_dim(di)) continue;
    int64_t d = DIMS[di];
    /* n = 1, n < d (n = 2 when d = 1), n > d */
    int64_t ns[3] = {1, d > 2 ? d / 2 : 2, 2 * d + 37};
    for (int ni = 0; ni < 3; ni++)
      for (int ti = 0; ti < 4; ti++)
        for (int pi = 0; pi < 3; pi++, c++) {
          int64_t k = KS[(c + c / 3) % 3]; /* varies with precision too */
          int64_t ldx = d + (c % 2 ? tu_randint(&s->rng, 1, 7) : 0);
          int64_t ldz = k + (c % 4 < 2 ? tu_randint(&s->rng, 1, 2) : 0);
          case_moments(s, DTYPES[ti], PRECS[pi], ns[ni], d, ldx, k, ldz,
                       c % 5 != 4);
        }
  }
  /* Random shapes: n in [1, 300], d in [1, 150], any k, dtype, precision. */
  for (int i = 0; i < extra_cases(40); i++) {
    int64_t n = tu_randint(&s->rng, 1, 300), d = tu_randint(&s->rng, 1, 150);
    int64_t k = KS[tu_randint(&s->rng, 0, 2)];
    case_moments(s, DTYPES[tu_randint(&s->rng, 0, 3)],
                 PRECS[tu_randint(&s->rng, 0, 2)], n, d,
                 d + tu_randint(&s->rng, 0, 3), k,
                 k + tu_randint(&s->rng, 0, 2), tu_randint(&s->rng, 0, 3) != 0);
  }
  /* Many rows (the CPU splits them over threads; a GPU over blocks). */
  for (int ti = 0; ti < 4; ti++)
    for (int pi = 0; pi < 3; pi++)
      case_moments(s, DTYPES[ti], PRECS[pi], 3001, 13, 16, 3, 4, 1);
}

/* A NaN (or -Inf) at row i, column j: CULEACE_ERR_NONFINITE naming row i,
 * and cxx/cxz not written. */
static void case_nonfinite(suite *s, culeace_dtype t, culeace_precision p) {
  int64_t n = tu_randint(&s->rng, 2, 40), d = tu_randint(&s->rng, 1, 20);
  int64_t ldx = d + 1, k = 1, ldz = 2;
  int64_t bi = tu_randint(&s->rng, 0, n - 1),
          bj = tu_randint(&s->rng, 0, d - 1);
  size_t es = culeace_dtype_size(t);
  gbuf gx, gmx, gmz, gcxx, gcxz;
  void *x = gb_alloc(&gx, (size_t)(n * ldx) * es);
  double *xd = xmalloc((size_t)(n * d) * 8), z[80];
  random_rows(&s->rng, t, n, d, ldx, x, xd);
  random_doubles(&s->rng, z, 2 * n, 0.5);
  double bad = p == CULEACE_PRECISION_F32 ? -INFINITY : NAN;
  put_row((char *)x + ((size_t)bi * ldx + bj) * es, t, &bad, 1);
  double *mx = gb_alloc(&gmx, (size_t)d * 8), *mz = gb_alloc(&gmz, 8);
  double *cxx = gb_alloc(&gcxx, (size_t)(d * d) * 8);
  double *cxz = gb_alloc(&gcxz, (size_t)d * 8);
  poison(mx, d), poison(mz, 1), poison(cxx, d * d), poison(cxz, d);
  double *cxx0 = dup_bytes(cxx, gcxx.bytes), *cxz0 = dup_bytes(cxz, gcxz.bytes);
  double *mx0 = dup_bytes(mx, gmx.bytes), *mz0 = dup_bytes(mz, 8);

  culeace_status st = s->ctx->backend->block_moments(
      s->ctx, x, t, n, d, ldx, z, k, ldz, p, mx, mz, cxx, cxz);
  const char *msg = culeace_ctx_last_error(s->ctx);
  long long row = -1;
  for (const char *q = strstr(msg, "row "); q && row < 0;
       q = strstr(q + 4, "row "))
    if (q[4] >= '0' && q[4] <= '9') row = strtoll(q + 4, NULL, 10);
  CHECK(st == CULEACE_ERR_NONFINITE && row == (long long)bi,
        "%s block_moments %s prec %s n %lld d %lld, %s at row %lld col "
        "%lld: status %s, message \"%s\"",
        s->ctx->backend_name, culeace_dtype_name(t), prec_name(p), (long long)n,
        (long long)d, isnan(bad) ? "NaN" : "-Inf", (long long)bi, (long long)bj,
        culeace_status_name(st), msg);
  CHECK(gb_intact(&gx) && gb_intact(&gmx) && gb_intact(&gmz) &&
            gb_intact(&gcxx) && gb_intact(&gcxz),
        "%s block_moments non-finite: a guard was overwritten",
        s->ctx->backend_name);
  CHECK(!memcmp(cxx, cxx0, gcxx.bytes) && !memcmp(cxz, cxz0, gcxz.bytes),
        "%s block_moments non-finite: cxx/cxz written on error",
        s->ctx->backend_name);
  /* backend.h: "nothing is written" on this error. The means are reported
   * as a note (once), not a failure: the CPU reference writes them. */
  if ((memcmp(mx, mx0, gmx.bytes) || memcmp(mz, mz0, 8)) && !s->notes++)
    printf("NOTE: %s block_moments wrote mean_x/mean_z before returning "
           "CULEACE_ERR_NONFINITE (backend.h says nothing is written)\n",
           s->ctx->backend_name);
  record("block_moments", "NaN/Inf: status + row (1 = wrong)", 0,
         st == CULEACE_ERR_NONFINITE && row == (long long)bi ? 0 : 1);
  gb_free(&gx), gb_free(&gmx), gb_free(&gmz), gb_free(&gcxx), gb_free(&gcxz);
  free(xd), free(cxx0), free(cxz0), free(mx0), free(mz0);
}

static void suite_nonfinite(suite *s) {
  for (int ti = 0; ti < 4; ti++)
    for (int pi = 0; pi < 3; pi++) case_nonfinite(s, DTYPES[ti], PRECS[pi]);
}

/* Running co-moments kept by the backend (acc_update / acc_read /
 * acc_free; optional, NULL on the CPU): N rows fed in random blocks must
 * give the two-pass co-moments of all N rows, and each call returns its
 * block's means. The expected values are always computed here in float64
 * (the CPU backend has no running sums to compare with): the two-pass over
 * all rows, or, where TENSOR rounds each block's centred values, the
 * per-block references merged with Chan's formula. */
static void case_acc(suite *s, culeace_dtype t, culeace_precision p, int64_t N,
                     int64_t d, int64_t k, int with_cxx) {
  const culeace_backend *be = s->ctx->backend;
  size_t es = culeace_dtype_size(t);
  int64_t ldx = d + 2, ldz = k + 1;
  char desc[200];
  snprintf(desc, sizeof desc,
           "%s acc_update %s prec %s N %lld d %lld k %lld cxx %s",
           s->ctx->backend_name, culeace_dtype_name(t), prec_name(p),
           (long long)N, (long long)d, (long long)k, with_cxx ? "yes" : "no");
  gbuf gx, gz, gmx, gmz, gcxx, gcxz;
  void *x = gb_alloc(&gx, (size_t)(N * ldx) * es);
  double *xd = xmalloc((size_t)(N * d) * 8);
  random_rows(&s->rng, t, N, d, ldx, x, xd);
  for (int64_t i = 0; i < N; i++) { /* drifting means: the merge matters */
    char *row = (char *)x + (size_t)i * ldx * es;
    for (int64_t j = 0; j < d; j++)
      xd[i * d + j] += 2.0 * (double)i / (double)N;
    put_row(row, t, xd + i * d, d);
    get_row(row, t, d, xd + i * d);
  }
  double *z = gb_opt(&gz, (size_t)(N * ldz) * 8, k > 0);
  for (int64_t i = 0; z && i < N; i++)
    random_doubles(&s->rng, z + i * ldz, k, 0.5 + 0.1 * (double)i / (double)N);
  if (z) fill_padding(z, CULEACE_F64, N, k, ldz);
  double *mx = gb_alloc(&gmx, (size_t)d * 8);
  double *mz = gb_opt(&gmz, (size_t)k * 8, k > 0);
  double *run_mx = calloc((size_t)d, 8), *run_mz = calloc((size_t)k + 1, 8);
  double *emx = xmalloc((size_t)d * 8), *emz = xmalloc((size_t)k * 8 + 8);
  double *ecxx = with_cxx ? xmalloc((size_t)(d * d) * 8) : NULL;
  double *ecxz = xmalloc((size_t)(d * k) * 8 + 8);
  /* merged per-block references (used when round16) */
  int round16 = is_round16(p, t);
  double *mcxx = calloc((size_t)(d * d), 8),
         *mcxz = calloc((size_t)(d * k) + 1, 8);
  double *rmx = calloc((size_t)d, 8), *rmz = calloc((size_t)k + 1, 8);
  double *bcxx = xmalloc((size_t)(d * d) * 8);
  const char *metric;
  double lim = moments_limit(p, &metric);
  double e_means = 0;
  void *acc = NULL;
  int ok = 1;
  for (int64_t seen = 0; seen < N && ok;) {
    int64_t nb = tu_randint(&s->rng, 1, N / 3 + 1);
    if (nb > N - seen) nb = N - seen;
    poison(mx, d), poison(mz, k);
    culeace_status st =
        be->acc_update(s->ctx, &acc, (const char *)x + (size_t)seen * ldx * es,
                       t, nb, d, ldx, z ? z + seen * ldz : NULL, k, ldz, p,
                       with_cxx, seen, run_mx, k ? run_mz : NULL, mx, mz);
    ok = st == CULEACE_OK;
    CHECK(ok, "%s: block at row %lld: %s: %s", desc, (long long)seen,
          culeace_status_name(st), culeace_ctx_last_error(s->ctx));
    ref_moments(xd + seen * d, nb, d, z ? z + seen * ldz : NULL, k, ldz,
                round16, t, emx, emz, bcxx, ecxz);
    e_means = fmax(e_means, fmax(nerr(mx, emx, d, 1e-300),
                                 k ? nerr(mz, emz, k, 1e-300) : 0));
    double w = (double)seen * (double)nb / (double)(seen + nb);
    for (int64_t a = 0; a < d; a++) { /* Chan: M += M_b + w dx dx^T */
      double dxa = emx[a] - rmx[a];
      for (int64_t b = a; b < d; b++)
        mcxx[a * d + b] += bcxx[a * d + b] + w * dxa * (emx[b] - rmx[b]);
      for (int64_t c = 0; c < k; c++)
        mcxz[a * k + c] += ecxz[a * k + c] + w * dxa * (emz[c] - rmz[c]);
    }
    for (int64_t j = 0; j < d; j++)
      rmx[j] += (emx[j] - rmx[j]) * (double)nb / (double)(seen + nb);
    for (int64_t c = 0; c < k; c++)
      rmz[c] += (emz[c] - rmz[c]) * (double)nb / (double)(seen + nb);
    for (int64_t j = 0; j < d; j++) /* the caller's running means */
      run_mx[j] += (mx[j] - run_mx[j]) * (double)nb / (double)(seen + nb);
    for (int64_t c = 0; c < k; c++)
      run_mz[c] += (mz[c] - run_mz[c]) * (double)nb / (double)(seen + nb);
    seen += nb;
  }
  double *cxx = gb_opt(&gcxx, (size_t)(d * d) * 8, with_cxx);
  double *cxz = gb_opt(&gcxz, (size_t)(d * k) * 8, k > 0);
  poison(cxx, with_cxx ? d * d : 0), poison(cxz, d * k);
  if (ok && acc) CHECK_OK(s->ctx, be->acc_read(s->ctx, acc, cxx, cxz));
  if (acc) be->acc_free(s->ctx->backend_state, acc);
  CHECK(gb_intact(&gx) && gb_intact(&gz) && gb_intact(&gmx) &&
            gb_intact(&gmz) && gb_intact(&gcxx) && gb_intact(&gcxz),
        "%s: a guard was overwritten", desc);
  int64_t unwritten = count_nan_upper(cxx, d) + count_nan(cxz, d * k);
  CHECK(unwritten == 0, "%s: %lld outputs not written", desc,
        (long long)unwritten);
  ref_moments(xd, N, d, z, k, ldz, 0, t, emx, emz, ecxx, ecxz);
  if (round16) {
    if (ecxx) memcpy(ecxx, mcxx, (size_t)(d * d) * 8);
    memcpy(ecxz, mcxz, (size_t)(d * k) * 8);
  }
  double xx = sumsq(xd, N * d);
  double e_xx = with_cxx ? nerr_upper(cxx, ecxx, d, 1e-6 * xx) : 0;
  double e_xz = k ? nerr(cxz, ecxz, d * k, 1e-300) : 0;
  double err = fmax(e_means, fmax(e_xx, e_xz));
  if (isnan(e_means + e_xx + e_xz)) err = INFINITY;
  record("acc_update", metric, lim, err);
  CHECK(err <= lim, "%s: error block means %.2e cxx %.2e cxz %.2e (limit %.0e)",
        desc, e_means, e_xx, e_xz, lim);
  gb_free(&gx), gb_free(&gz), gb_free(&gmx), gb_free(&gmz), gb_free(&gcxx),
      gb_free(&gcxz);
  free(xd), free(run_mx), free(run_mz), free(emx), free(emz), free(ecxx),
      free(ecxz), free(mcxx), free(mcxz), free(rmx), free(rmz), free(bcxx);
}

static void suite_acc(suite *s) {
  const culeace_backend *be = s->ctx->backend;
  if (!be->acc_update || !be->acc_read || !be->acc_free) {
    CHECK(!be->acc_update && !be->acc_read && !be->acc_free,
          "%s: acc_update/acc_read/acc_free must be all set or all NULL",
          s->ctx->backend_name);
    printf("acc_update: NULL in the %s backend (the fitter merges on the "
           "host): not tested\n",
           be->name);
    return;
  }
  static const int64_t AD[3] = {5, 67, 130}, AK[3] = {1, 3, 0};
  int c = 0;
  for (int ti = 0; ti < 4; ti++)
    for (int pi = 0; pi < 3; pi++, c++)
      case_acc(s, DTYPES[ti], PRECS[pi], tu_randint(&s->rng, 20, 400),
               AD[c % 3], AK[c % 3], c % 3 == 2 || c % 4 != 3);
}

/* ---- gemm ---------------------------------------------------------------- */

/* C (m, n) = alpha op(A) op(B) + beta C; A stored (m, k) or, transposed,
 * (k, m); B (k, n) or (n, k); each stride = columns + pad. beta = 0 with C
 * poisoned NaN: C must not be read. */
static void case_gemm(suite *s, int ta, int tb, int64_t m, int64_t n, int64_t k,
                      int pad, int beta_zero) {
  int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  int64_t lda = ac + (pad ? tu_randint(&s->rng, 1, 5) : 0);
  int64_t ldb = bc + (pad ? tu_randint(&s->rng, 1, 5) : 0);
  int64_t ldc = n + (pad ? tu_randint(&s->rng, 1, 5) : 0);
  double alpha = tu_normal(&s->rng), beta = beta_zero ? 0 : tu_normal(&s->rng);
  char desc[200];
  snprintf(desc, sizeof desc,
           "%s gemm trans %d%d m %lld n %lld k %lld lda %lld ldb %lld ldc "
           "%lld beta %s",
           s->ctx->backend_name, ta, tb, (long long)m, (long long)n,
           (long long)k, (long long)lda, (long long)ldb, (long long)ldc,
           beta_zero ? "0" : "!=0");
  gbuf ga, gb, gc;
  double *a = gb_alloc(&ga, (size_t)(ar * lda) * 8);
  double *b = gb_alloc(&gb, (size_t)(br * ldb) * 8);
  double *c = gb_alloc(&gc, (size_t)(m * ldc) * 8);
  for (int64_t i = 0; i < ar; i++)
    random_doubles(&s->rng, a + i * lda, ac, 0.5);
  for (int64_t i = 0; i < br; i++)
    random_doubles(&s->rng, b + i * ldb, bc, -0.5);
  for (int64_t i = 0; i < m; i++) {
    if (beta_zero)
      poison(c + i * ldc, n);
    else
      random_doubles(&s->rng, c + i * ldc, n, 0);
  }
  fill_padding(a, CULEACE_F64, ar, ac, lda);
  fill_padding(b, CULEACE_F64, br, bc, ldb);
  fill_padding(c, CULEACE_F64, m, n, ldc);
  double *a0 = dup_bytes(a, ga.bytes), *b0 = dup_bytes(b, gb.bytes);
  double *c0 = dup_bytes(c, gc.bytes);

  double *e = xmalloc((size_t)(m * n) * 8), *o = xmalloc((size_t)(m * n) * 8);
  if (s->ref) {
    double *cr = dup_bytes(c0, gc.bytes);
    culeace_status rst = s->ref->backend->gemm(s->ref, ta, tb, m, n, k, alpha,
                                               a, lda, b, ldb, beta, cr, ldc);
    CHECK(rst == CULEACE_OK, "%s: reference failed", desc);
    for (int64_t i = 0; i < m; i++)
      memcpy(e + i * n, cr + i * ldc, (size_t)n * 8);
    free(cr);
  } else {
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double sum = 0;
        for (int64_t q = 0; q < k; q++)
          sum += (ta ? a[q * lda + i] : a[i * lda + q]) *
                 (tb ? b[j * ldb + q] : b[q * ldb + j]);
        e[i * n + j] = alpha * sum + (beta_zero ? 0 : beta * c0[i * ldc + j]);
      }
  }

  culeace_status st = s->ctx->backend->gemm(s->ctx, ta, tb, m, n, k, alpha, a,
                                            lda, b, ldb, beta, c, ldc);
  CHECK(st == CULEACE_OK, "%s: %s: %s", desc, culeace_status_name(st),
        culeace_ctx_last_error(s->ctx));
  CHECK(gb_intact(&ga) && gb_intact(&gb) && gb_intact(&gc),
        "%s: a guard was overwritten", desc);
  CHECK(!memcmp(a, a0, ga.bytes) && !memcmp(b, b0, gb.bytes),
        "%s: an input was modified", desc);
  int64_t padbad = padding_changed(c, CULEACE_F64, m, n, ldc);
  CHECK(padbad == 0, "%s: %lld padding elements of C changed", desc,
        (long long)padbad);
  for (int64_t i = 0; i < m; i++) memcpy(o + i * n, c + i * ldc, (size_t)n * 8);
  int64_t unwritten = count_nan(o, m * n);
  CHECK(unwritten == 0, "%s: %lld elements of C are NaN", desc,
        (long long)unwritten);
  double err = nerr(o, e, m * n, 1e-300);
  record("gemm", "float64", LIM_F64, err);
  CHECK(err <= LIM_F64, "%s: normalised error %.2e", desc, err);
  gb_free(&ga), gb_free(&gb), gb_free(&gc);
  free(a0), free(b0), free(c0), free(e), free(o);
}

static void suite_gemm(suite *s) {
  static const int64_t SH[][3] = {
      {1, 1, 1},      {5, 13, 1},  {13, 5, 67},   {67, 130, 13},  {130, 1, 67},
      {257, 67, 130}, {1, 257, 5}, {67, 67, 257}, {300, 300, 300}};
  int c = 0;
  for (size_t i = 0; i < sizeof SH / sizeof SH[0]; i++)
    for (int ta = 0; ta < 2 && !(quick && i % 2); ta++)
      for (int tb = 0; tb < 2; tb++, c++)
        case_gemm(s, ta, tb, SH[i][0], SH[i][1], SH[i][2], c % 3 != 2, c % 2);
  for (int i = 0; i < extra_cases(24); i++) /* random shapes in [1, 90]^3 */
    case_gemm(s, i % 2, i / 2 % 2, tu_randint(&s->rng, 1, 90),
              tu_randint(&s->rng, 1, 90), tu_randint(&s->rng, 1, 90),
              (int)tu_randint(&s->rng, 0, 1), (int)tu_randint(&s->rng, 0, 1));
}

/* ---- eigh ---------------------------------------------------------------- */

/* q (d, d) with orthonormal rows: modified Gram-Schmidt, twice, on
 * Gaussian rows. */
static void random_orthogonal(tu_rng *rng, int64_t d, double *q) {
  random_doubles(rng, q, d * d, 0);
  for (int pass = 0; pass < 2; pass++)
    for (int64_t i = 0; i < d; i++) {
      double *qi = q + i * d;
      for (int64_t p = 0; p < i; p++) {
        const double *qp = q + p * d;
        double dot = 0;
        for (int64_t j = 0; j < d; j++) dot += qi[j] * qp[j];
        for (int64_t j = 0; j < d; j++) qi[j] -= dot * qp[j];
      }
      double nrm = sqrt(sumsq(qi, d));
      for (int64_t j = 0; j < d; j++) qi[j] /= nrm;
    }
}

/* p (d, d) = sum of v_i v_i^T over the m rows v_i of v listed in idx. */
static void projector(const double *v, const int64_t *idx, int64_t m, int64_t d,
                      double *p) {
  memset(p, 0, (size_t)(d * d) * 8);
  for (int64_t t = 0; t < m; t++) {
    const double *vi = v + idx[t] * d;
    for (int64_t a = 0; a < d; a++)
      for (int64_t b = 0; b < d; b++) p[a * d + b] += vi[a] * vi[b];
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sign/order-free checks of an eigendecomposition (v: rows are
 * eigenvectors, w ascending) of a: residuals, orthonormality, V^T W V = A. */
static void check_eigh_intrinsic(const char *desc, const double *a,
                                 const double *v, const double *w, int64_t d) {
  double anrm = sqrt(sumsq(a, d * d)), res = 0, orth = 0, rec = 0;
  int ascending = 1;
  for (int64_t j = 0; j + 1 < d; j++) ascending &= w[j] <= w[j + 1];
  for (int64_t j = 0; j < d; j++) { /* ||A v_j - w_j v_j|| */
    const double *vj = v + j * d;
    double r2 = 0;
    for (int64_t a1 = 0; a1 < d; a1++) {
      double av = 0;
      for (int64_t b = 0; b < d; b++) av += a[a1 * d + b] * vj[b];
      r2 += (av - w[j] * vj[a1]) * (av - w[j] * vj[a1]);
    }
    res = fmax(res, sqrt(r2) / anrm);
  }
  for (int64_t i = 0; i < d; i++) /* V V^T = I */
    for (int64_t j = 0; j < d; j++) {
      double dot = 0;
      for (int64_t q = 0; q < d; q++) dot += v[i * d + q] * v[j * d + q];
      orth += (dot - (i == j)) * (dot - (i == j));
    }
  orth = sqrt(orth / (double)d);
  for (int64_t a1 = 0; a1 < d; a1++) /* V^T W V = A */
    for (int64_t b = 0; b < d; b++) {
      double sum = 0;
      for (int64_t j = 0; j < d; j++)
        sum += v[j * d + a1] * w[j] * v[j * d + b];
      rec += (sum - a[a1 * d + b]) * (sum - a[a1 * d + b]);
    }
  rec = sqrt(rec) / anrm;
  if (isnan(res + orth + rec)) res = orth = rec = INFINITY;
  CHECK(ascending, "%s: eigenvalues not ascending", desc);
  record("eigh", "residual |Av - wv| / |A|", LIM_F64, res);
  record("eigh", "orthonormality |VV^T - I|/sqrt(d)", LIM_F64, orth);
  record("eigh", "reconstruction |V^T W V - A|/|A|", LIM_F64, rec);
  CHECK(res <= LIM_F64 && orth <= LIM_F64 && rec <= LIM_F64,
        "%s: residual %.2e orthonormality %.2e reconstruction %.2e", desc, res,
        orth, rec);
}

/* A = Q^T diag(lam) Q with distinct, well separated eigenvalues (gaps >=
 * 0.4, some negative) or, clustered, three eigenvalues of multiplicity
 * ~d/3; the top-m projector is compared with m at a gap. */
static void case_eigh(suite *s, int64_t d, int clustered) {
  char desc[120];
  snprintf(desc, sizeof desc, "%s eigh d %lld%s", s->ctx->backend_name,
           (long long)d, clustered ? " clustered" : "");
  double *q = xmalloc((size_t)(d * d) * 8), *a = xmalloc((size_t)(d * d) * 8);
  double *lam = xmalloc((size_t)d * 8), *sorted = xmalloc((size_t)d * 8);
  random_orthogonal(&s->rng, d, q);
  for (int64_t i = 0; i < d; i++) /* distinct: i - d/3 + jitter in [0.2, 0.8) */
    lam[i] = clustered ? 1.0 + 2.0 * (double)(3 * i / d)
                       : (double)(i - d / 3) + 0.2 + 0.6 * tu_uniform(&s->rng);
  for (int64_t i = d - 1; i > 0; i--) { /* shuffle which row gets which */
    int64_t j = tu_randint(&s->rng, 0, i);
    double t = lam[i];
    lam[i] = lam[j], lam[j] = t;
  }
  for (int64_t r = 0; r < d; r++)
    for (int64_t c = r; c < d; c++) {
      double sum = 0;
      for (int64_t i = 0; i < d; i++)
        sum += q[i * d + r] * lam[i] * q[i * d + c];
      a[r * d + c] = a[c * d + r] = sum;
    }
  memcpy(sorted, lam, (size_t)d * 8);
  qsort(sorted, (size_t)d, 8, cmp_double);
  int64_t m = clustered ? 0 : tu_randint(&s->rng, 1, d);
  if (clustered) /* the top cluster */
    for (int64_t i = 0; i < d; i++) m += lam[i] == sorted[d - 1];

  gbuf gv, gw;
  double *v = gb_alloc(&gv, (size_t)(d * d) * 8),
         *w = gb_alloc(&gw, (size_t)d * 8);
  memcpy(v, a, (size_t)(d * d) * 8);
  poison(w, d);
  culeace_status st = s->ctx->backend->eigh(s->ctx, v, w, d);
  CHECK(st == CULEACE_OK, "%s: %s: %s", desc, culeace_status_name(st),
        culeace_ctx_last_error(s->ctx));
  CHECK(gb_intact(&gv) && gb_intact(&gw), "%s: a guard was overwritten", desc);
  int64_t unwritten = count_nan(v, d * d) + count_nan(w, d);
  CHECK(unwritten == 0, "%s: %lld outputs NaN", desc, (long long)unwritten);
  check_eigh_intrinsic(desc, a, v, w, d);

  /* Expected eigenvalues and top-m projector. */
  double *ew = xmalloc((size_t)d * 8), *ep = xmalloc((size_t)(d * d) * 8);
  double *p = xmalloc((size_t)(d * d) * 8);
  int64_t *idx = xmalloc((size_t)d * 8);
  if (s->ref) {
    double *rv = dup_bytes(a, (size_t)(d * d) * 8);
    CHECK(s->ref->backend->eigh(s->ref, rv, ew, d) == CULEACE_OK,
          "%s: reference failed", desc);
    for (int64_t t = 0; t < m; t++) idx[t] = d - m + t;
    projector(rv, idx, m, d, ep);
    free(rv);
  } else {
    memcpy(ew, sorted, (size_t)d * 8);
    int64_t t = 0; /* rows of q whose eigenvalue is among the top m */
    for (int64_t i = 0; i < d; i++)
      if (lam[i] >= sorted[d - m]) idx[t++] = i;
    projector(q, idx, t, d, ep);
  }
  for (int64_t t = 0; t < m; t++) idx[t] = d - m + t;
  projector(v, idx, m, d, p);
  double e_w = nerr(w, ew, d, 1e-300), e_p = nerr(p, ep, d * d, 1e-300);
  record("eigh", "eigenvalues", LIM_F64, e_w);
  record("eigh", "top-m projector", LIM_PROJ, e_p);
  CHECK(e_w <= LIM_F64 && e_p <= LIM_PROJ,
        "%s: eigenvalue error %.2e, top-%lld projector error %.2e", desc, e_w,
        (long long)m, e_p);
  gb_free(&gv), gb_free(&gw);
  free(q), free(a), free(lam), free(sorted), free(ew), free(ep), free(p),
      free(idx);
}

static void suite_eigh(suite *s) {
  static const int64_t ED[] = {1, 2, 5, 13, 67, 130, 300};
  for (size_t i = 0; i < sizeof ED / sizeof ED[0]; i++)
    if (!quick || i % 2 == 0) case_eigh(s, ED[i], 0);
  case_eigh(s, 13, 1);
  case_eigh(s, 67, 1);
}

/* ---- apply --------------------------------------------------------------- */

/* One eraser's factors in both precisions: L (d, r), R (r, d), bias (d)
 * when affine; a fresh serial for every set (device copies are cached by
 * it). */
typedef struct {
  culeace_apply_factors f;
  double *L, *R, *bias;
  float *L32, *R32, *bias32;
} factors;

static float *to_f32_copy(const double *v, int64_t count) {
  float *f = xmalloc((size_t)count * 4);
  for (int64_t i = 0; i < count; i++) f[i] = (float)v[i];
  return f;
}

static void factors_make(suite *s, int64_t d, int64_t r, int affine,
                         factors *F) {
  F->L = xmalloc((size_t)(d * r) * 8);
  F->R = xmalloc((size_t)(r * d) * 8);
  F->bias = xmalloc((size_t)d * 8);
  for (int64_t i = 0; i < d * r; i++)
    F->L[i] = tu_normal(&s->rng) / sqrt((double)r);
  for (int64_t i = 0; i < r * d; i++)
    F->R[i] = tu_normal(&s->rng) / sqrt((double)d);
  for (int64_t i = 0; i < d; i++) F->bias[i] = 3.0 + 0.1 * tu_normal(&s->rng);
  F->L32 = to_f32_copy(F->L, d * r);
  F->R32 = to_f32_copy(F->R, r * d);
  F->bias32 = to_f32_copy(F->bias, d);
  F->f = (culeace_apply_factors){.serial = s->serial++,
                                 .d = d,
                                 .r = r,
                                 .L = F->L,
                                 .R = F->R,
                                 .bias = affine ? F->bias : NULL,
                                 .L32 = F->L32,
                                 .R32 = F->R32,
                                 .bias32 = affine ? F->bias32 : NULL};
}

static void factors_free(factors *F) {
  free(F->L), free(F->R), free(F->bias), free(F->L32), free(F->R32),
      free(F->bias32);
}

/* out (n, d) = x - ((x - bias) R^T) L^T in float64. */
static void ref_apply(const double *x, int64_t n,
                      const culeace_apply_factors *f, double *out) {
  int64_t d = f->d, r = f->r;
  double *t = xmalloc((size_t)r * 8);
  for (int64_t i = 0; i < n; i++) {
    const double *xi = x + i * d;
    for (int64_t c = 0; c < r; c++) {
      double sum = 0;
      for (int64_t j = 0; j < d; j++)
        sum += (xi[j] - (f->bias ? f->bias[j] : 0)) * f->R[c * d + j];
      t[c] = sum;
    }
    for (int64_t j = 0; j < d; j++) {
      double sum = 0;
      for (int64_t c = 0; c < r; c++) sum += t[c] * f->L[j * r + c];
      out[i * d + j] = xi[j] - sum;
    }
  }
  free(t);
}

/* Error of edited rows (values of dtype t) against the expected ones, and
 * its metric name and limit. */
static double apply_err(culeace_dtype t, const double *out, const double *e,
                        int64_t n, int64_t d, const char **metric,
                        double *lim) {
  switch (t) {
  case CULEACE_F64:
    *metric = "float64 rows", *lim = LIM_F64;
    return nerr(out, e, n * d, 1e-300);
  case CULEACE_F32:
    *metric = "float32 rows", *lim = LIM_APPLY_F32;
    return nerr(out, e, n * d, 1e-300);
  case CULEACE_F16:
    *metric = "float16 rows (ulp of row magnitude)", *lim = LIM_ULP;
    return ulp_err(out, e, n, d, 10);
  default:
    *metric = "bfloat16 rows (ulp of row magnitude)", *lim = LIM_ULP;
    return ulp_err(out, e, n, d, 7);
  }
}

/* Expected rows after the edit: the reference backend on a copy, or the
 * float64 formula rounded to the row dtype. */
static void expected_apply(suite *s, const void *x0, culeace_dtype t, int64_t n,
                           int64_t ldx, const culeace_apply_factors *f,
                           double *e) {
  int64_t d = f->d;
  size_t bytes = (size_t)(n * ldx) * culeace_dtype_size(t);
  if (s->ref) {
    void *xr = dup_bytes(x0, bytes);
    culeace_status st = s->ref->backend->apply(s->ref, xr, t, n, ldx, f);
    CHECK(st == CULEACE_OK, "reference apply: %s",
          culeace_ctx_last_error(s->ref));
    get_rows(xr, t, n, d, ldx, e);
    free(xr);
    return;
  }
  double *xd = xmalloc((size_t)(n * d) * 8);
  get_rows(x0, t, n, d, ldx, xd);
  ref_apply(xd, n, f, e);
  round_to(t, e, n * d);
  free(xd);
}

/* Checks rows x (guarded by g) after an edit: guards, padding, error. */
static void check_applied(const char *op, const char *desc, const gbuf *g,
                          const void *x, culeace_dtype t, int64_t n, int64_t d,
                          int64_t ldx, const double *e) {
  CHECK(gb_intact(g), "%s: a guard was overwritten", desc);
  int64_t padbad = padding_changed(x, t, n, d, ldx);
  CHECK(padbad == 0, "%s: %lld row padding elements changed", desc,
        (long long)padbad);
  double *o = xmalloc((size_t)(n * d) * 8);
  get_rows(x, t, n, d, ldx, o);
  const char *metric;
  double lim, err = apply_err(t, o, e, n, d, &metric, &lim);
  record(op, metric, lim, err);
  CHECK(err <= lim, "%s: error %.2e (limit %.0e, %s)", desc, err, lim, metric);
  free(o);
}

/* rows x (n, d) of dtype t, stride ldx, edited by a rank-r eraser. */
static void case_apply(suite *s, culeace_dtype t, int64_t n, int64_t d,
                       int64_t ldx, int64_t r, int affine) {
  size_t es = culeace_dtype_size(t);
  char desc[200];
  snprintf(desc, sizeof desc, "%s apply %s n %lld d %lld ldx %lld r %lld %s",
           s->ctx->backend_name, culeace_dtype_name(t), (long long)n,
           (long long)d, (long long)ldx, (long long)r,
           affine ? "affine" : "linear");
  factors F;
  factors_make(s, d, r, affine, &F);
  gbuf gx;
  void *x = gb_alloc(&gx, (size_t)(n * ldx) * es);
  double *xd = xmalloc((size_t)(n * d) * 8), *e = xmalloc((size_t)(n * d) * 8);
  random_rows(&s->rng, t, n, d, ldx, x, xd);
  expected_apply(s, x, t, n, ldx, &F.f, e);
  culeace_status st = s->ctx->backend->apply(s->ctx, x, t, n, ldx, &F.f);
  CHECK(st == CULEACE_OK, "%s: %s: %s", desc, culeace_status_name(st),
        culeace_ctx_last_error(s->ctx));
  check_applied("apply", desc, &gx, x, t, n, d, ldx, e);
  gb_free(&gx);
  free(xd), free(e);
  factors_free(&F);
}

static void suite_apply(suite *s) {
  static const int64_t RS[5] = {1, 2, 5, 9, 17},
                       NS[6] = {1, 7, 300, 600, 37, 0};
  int c = 0;
  for (int di = 0; di < 6; di++)
    for (int ri = 0; ri < 5 && !skip_dim(di); ri++) {
      int64_t d = DIMS[di], r = RS[ri];
      if (r > d) continue; /* an eraser's rank never exceeds d */
      for (int ti = 0; ti < 4; ti++, c++) {
        int64_t ldx = d + (c % 3 ? tu_randint(&s->rng, 1, 9) : 0);
        case_apply(s, DTYPES[ti], NS[c % 6], d, ldx, r, c % 2);
      }
    }
  for (int i = 0; i < extra_cases(32); i++) { /* random shapes */
    int64_t d = tu_randint(&s->rng, 1, 200), n = tu_randint(&s->rng, 1, 700);
    int64_t r = RS[tu_randint(&s->rng, 0, 4)];
    if (r > d) r = d;
    case_apply(s, DTYPES[i % 4], n, d, d + tu_randint(&s->rng, 0, 4), r,
               (int)tu_randint(&s->rng, 0, 1));
  }
}

/* Factor sets A, B, A again (same serial, same values): a backend that
 * caches factors by serial must switch and switch back correctly. */
static void suite_apply_cache(suite *s) {
  int64_t n = 50, d = 67, ldx = 70;
  factors F[2];
  factors_make(s, d, 5, 1, &F[0]);
  factors_make(s, d, 9, 0, &F[1]);
  static const int order[3] = {0, 1, 0};
  for (int step = 0; step < 3; step++) {
    culeace_dtype t = DTYPES[step];
    const culeace_apply_factors *f = &F[order[step]].f;
    char desc[120];
    snprintf(desc, sizeof desc, "%s apply cache step %d (serial %#llx)",
             s->ctx->backend_name, step, (unsigned long long)f->serial);
    gbuf gx;
    void *x = gb_alloc(&gx, (size_t)(n * ldx) * culeace_dtype_size(t));
    double *xd = xmalloc((size_t)(n * d) * 8),
           *e = xmalloc((size_t)(n * d) * 8);
    random_rows(&s->rng, t, n, d, ldx, x, xd);
    expected_apply(s, x, t, n, ldx, f, e);
    CHECK_OK(s->ctx, s->ctx->backend->apply(s->ctx, x, t, n, ldx, f));
    check_applied("apply", desc, &gx, x, t, n, d, ldx, e);
    gb_free(&gx);
    free(xd), free(e);
  }
  factors_free(&F[0]), factors_free(&F[1]);
}

/* ---- the logistic probes' pass ------------------------------------------ */

/* The pass's outputs in float64 from the centred float32 rows xc (n, d). */
static void ref_probe_pass(const float *xc, int64_t n, int64_t d, int64_t m,
                           const culeace__probe_problem *prs,
                           const int64_t *idx, int64_t cnt, const float *W,
                           const double *b, double *G, double *rsum,
                           double *loss) {
  int64_t M = cnt * m;
  memset(G, 0, (size_t)(M * d) * 8);
  memset(rsum, 0, (size_t)M * 8);
  memset(loss, 0, (size_t)cnt * 8);
  double *z = xmalloc((size_t)M * 8), *r = xmalloc((size_t)M * 8);
  for (int64_t i = 0; i < n; i++) {
    const float *xi = xc + i * d;
    for (int64_t c = 0; c < M; c++) {
      double a = b[c];
      for (int64_t j = 0; j < d; j++)
        a += (double)W[c * d + j] * xi[j];
      z[c] = a;
    }
    for (int64_t q = 0; q < cnt; q++) {
      const culeace__probe_problem *pr = &prs[idx[q]];
      double *rq = r + q * m, *zq = z + q * m;
      if (!pr->train[i]) {
        for (int64_t c = 0; c < m; c++)
          rq[c] = 0;
        continue;
      }
      int32_t y = pr->y[i];
      double w = pr->class_w[y];
      if (m == 1) {
        double t = zq[0], yy = y == 1;
        rq[0] = w * (1 / (1 + exp(-t)) - yy);
        loss[q] += w * ((t > 0 ? t + log1p(exp(-t)) : log1p(exp(t))) - yy * t);
      } else {
        double mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < m; c++)
          mx = fmax(mx, zq[c]);
        for (int64_t c = 0; c < m; c++)
          sum += exp(zq[c] - mx);
        double lse = mx + log(sum);
        for (int64_t c = 0; c < m; c++)
          rq[c] = w * (exp(zq[c] - lse) - (c == y));
        loss[q] += w * (lse - zq[y]);
      }
    }
    for (int64_t c = 0; c < M; c++) {
      rsum[c] += r[c];
      for (int64_t j = 0; j < d; j++)
        G[c * d + j] += r[c] * xi[j];
    }
  }
  free(z), free(r);
}

/* One pass of P problems with k classes over n rows of type t (float32: a
 * centred copy; 2-byte: the raw rows, stride ldx, NaN padding), pending
 * problems P-1 .. 1 (all of them when P == 1), sums in float64 when f64. */
static void case_probe_pass(suite *s, culeace_dtype t, int64_t n, int64_t d,
                            int64_t ldx, int64_t k, int64_t P, int f64) {
  size_t es = culeace_dtype_size(t);
  int64_t m = k == 2 ? 1 : k;
  int64_t cnt = P > 1 ? P - 1 : 1, M = cnt * m;
  char desc[200];
  snprintf(desc, sizeof desc,
           "%s probe_pass %s n %lld d %lld ldx %lld k %lld P %lld %s",
           s->ctx->backend_name, culeace_dtype_name(t), (long long)n,
           (long long)d, (long long)ldx, (long long)k, (long long)P,
           f64 ? "f64" : "f32");
  void *x = xmalloc((size_t)(n * ldx) * es);
  double *xd = xmalloc((size_t)(n * d) * 8), *shift = xmalloc((size_t)d * 8);
  float *sf = xmalloc((size_t)d * 4), *xc = xmalloc((size_t)(n * d) * 4);
  random_rows(&s->rng, t, n, d, ldx, x, xd);
  for (int64_t j = 0; j < d; j++) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
      sum += xd[i * d + j];
    shift[j] = sf[j] = (float)(sum / (double)n);
  }
  for (int64_t i = 0; i < n * d; i++)
    xc[i] = (float)xd[i] - sf[i % d];
  void *x0 = dup_bytes(x, (size_t)(n * ldx) * es);
  culeace__probe_rows rows = {t == CULEACE_F32 ? xc : NULL,
                              t == CULEACE_F32 ? NULL : x,
                              t,
                              ldx,
                              n,
                              d,
                              shift,
                              sf};
  int32_t *y = xmalloc((size_t)(P * n) * 4);
  uint8_t *train = xmalloc((size_t)(P * n));
  double *cw = xmalloc((size_t)(P * k) * 8);
  culeace__probe_problem *prs = xmalloc((size_t)P * sizeof *prs);
  for (int64_t p = 0; p < P; p++) {
    for (int64_t i = 0; i < n; i++) {
      y[p * n + i] = (int32_t)(tu_next(&s->rng) % (uint64_t)k);
      train[p * n + i] = tu_uniform(&s->rng) < 0.75;
    }
    for (int64_t c = 0; c < k; c++)
      cw[p * k + c] = 0.5 + 1.5 * tu_uniform(&s->rng);
    prs[p] =
        (culeace__probe_problem){y + p * n, train + p * n, 0, cw + p * k, 0};
  }
  int64_t *idx = xmalloc((size_t)cnt * 8);
  for (int64_t q = 0; q < cnt; q++)
    idx[q] = P - 1 - q;
  float *W = xmalloc((size_t)(M * d) * 4);
  double *b = xmalloc((size_t)M * 8);
  for (int64_t i = 0; i < M * d; i++)
    W[i] = (float)(tu_normal(&s->rng) / sqrt((double)d) *
                   (i < d ? 30.0 : 1.0)); /* output 0: logits up to ~100 */
  random_doubles(&s->rng, b, M, 0.0);
  float *W0 = dup_bytes(W, (size_t)(M * d) * 4);
  gbuf gG, gr, gl;
  double *G = gb_alloc(&gG, (size_t)(M * d) * 8),
         *rsum = gb_alloc(&gr, (size_t)M * 8),
         *loss = gb_alloc(&gl, (size_t)cnt * 8);
  poison(G, M * d), poison(rsum, M), poison(loss, cnt);
  double *Ge = xmalloc((size_t)(M * d) * 8), *re = xmalloc((size_t)M * 8),
         *le = xmalloc((size_t)cnt * 8);

  culeace__probe_pass *pass = NULL;
  culeace_status st =
      culeace__probe_pass_open(s->ctx, &rows, m, P, prs, f64, 1, &pass);
  CHECK(st == CULEACE_OK, "%s: open: %s: %s", desc, culeace_status_name(st),
        culeace_ctx_last_error(s->ctx));
  if (st == CULEACE_OK) {
    CHECK(culeace__probe_pass_on_device(pass) == (s->ref != NULL),
          "%s: the pass runs on the %s, expected the %s", desc,
          culeace__probe_pass_on_device(pass) ? "device" : "CPU",
          s->ref ? "device" : "CPU");
    CHECK_OK(s->ctx,
             culeace__probe_pass_eval(pass, cnt, idx, W, b, G, rsum, loss));
    culeace__probe_pass_close(pass);
  }
  if (s->ref) {
    culeace__probe_pass *rp = NULL;
    CHECK_OK(s->ref,
             culeace__probe_pass_open(s->ref, &rows, m, P, prs, f64, 1, &rp));
    if (rp) {
      CHECK_OK(s->ref,
               culeace__probe_pass_eval(rp, cnt, idx, W, b, Ge, re, le));
      culeace__probe_pass_close(rp);
    }
  } else {
    ref_probe_pass(xc, n, d, m, prs, idx, cnt, W, b, Ge, re, le);
  }
  CHECK(gb_intact(&gG) && gb_intact(&gr) && gb_intact(&gl),
        "%s: a guard around an output was overwritten", desc);
  CHECK(count_nan(G, M * d) == 0 && count_nan(rsum, M) == 0 &&
            count_nan(loss, cnt) == 0,
        "%s: outputs left unwritten (NaN): G %lld, rsum %lld, loss %lld", desc,
        (long long)count_nan(G, M * d), (long long)count_nan(rsum, M),
        (long long)count_nan(loss, cnt));
  CHECK(!memcmp(x, x0, (size_t)(n * ldx) * es) &&
            !memcmp(W, W0, (size_t)(M * d) * 4),
        "%s: the rows or weights were changed", desc);
  double lim = f64 ? LIM_F64 : LIM_PROBE_F32;
  double lim_loss = f64 ? LIM_F64 : LIM_PROBE_LOSS_F32;
  double eg = nerr(G, Ge, M * d, 1e-300), er = nerr(rsum, re, M, 1e-300),
         el = nerr(loss, le, cnt, 1e-300);
  record("probe_pass", f64 ? "G, rsum (f64)" : "G, rsum (f32)", lim,
         fmax(eg, er));
  record("probe_pass", f64 ? "loss (f64)" : "loss (f32)", lim_loss, el);
  CHECK(eg <= lim && er <= lim && el <= lim_loss,
        "%s: error G %.2e, rsum %.2e (limit %.0e), loss %.2e (limit %.0e)",
        desc, eg, er, lim, el, lim_loss);
  gb_free(&gG), gb_free(&gr), gb_free(&gl);
  free(x), free(x0), free(xd), free(shift), free(sf), free(xc), free(y);
  free(train), free(cw), free(prs), free(idx), free(W), free(W0), free(b);
  free(Ge), free(re), free(le);
}

static void suite_probe_pass(suite *s) {
  static const int64_t SH[][5] = {/* n, d, ldx, k, P */
                                  {1, 1, 1, 2, 1},       {7, 5, 8, 2, 3},
                                  {300, 67, 67, 3, 2},   {600, 130, 133, 2, 5},
                                  {257, 300, 300, 5, 4}, {20, 300, 301, 2, 2},
                                  {64, 13, 16, 4, 1}};
  static const culeace_dtype T3[3] = {CULEACE_F32, CULEACE_F16, CULEACE_BF16};
  for (size_t i = 0; i < sizeof SH / sizeof SH[0]; i++) {
    if (quick && (i == 3 || i == 4))
      continue;
    for (int ti = 0; ti < 3; ti++)
      for (int f64 = 0; f64 < 2; f64++)
        case_probe_pass(s, T3[ti], SH[i][0], SH[i][1], SH[i][2], SH[i][3],
                        SH[i][4], f64);
  }
}

/* The passes of a batch of layers (culeace__probe_pass_eval_many, what a
 * batched fit makes each L-BFGS step): three layers of different row
 * counts and types, each with its own problems, evaluated together must
 * give exactly what each gives evaluated alone on the same backend, and
 * match the float64 reference. */
static void case_probe_pass_many(suite *s, int64_t d, int64_t k, int f64) {
  enum { NL = 3, PL = 3 };
  static const int64_t NS[NL] = {41, 300, 7};
  static const culeace_dtype TS[NL] = {CULEACE_F16, CULEACE_F32, CULEACE_BF16};
  int64_t m = k == 2 ? 1 : k, M = PL * m;
  char desc[160];
  snprintf(desc, sizeof desc, "%s probe_pass_many d %lld k %lld %s",
           s->ctx->backend_name, (long long)d, (long long)k,
           f64 ? "f64" : "f32");
  struct {
    void *x;
    double *xd, *shift;
    float *sf, *xc;
    int32_t *y;
    uint8_t *train;
    double *cw;
    culeace__probe_problem prs[PL];
    culeace__probe_rows rows;
    culeace__probe_pass *pass;
    float *W;
    double *b, *G[2], *rs[2], *ls[2];
    int64_t idx[PL];
  } L[NL];
  culeace__probe_eval_job jobs[NL];
  for (int l = 0; l < NL; l++) {
    int64_t n = NS[l];
    culeace_dtype t = TS[l];
    L[l].x = xmalloc((size_t)(n * d) * culeace_dtype_size(t));
    L[l].xd = xmalloc((size_t)(n * d) * 8);
    L[l].shift = xmalloc((size_t)d * 8);
    L[l].sf = xmalloc((size_t)d * 4);
    L[l].xc = xmalloc((size_t)(n * d) * 4);
    random_rows(&s->rng, t, n, d, d, L[l].x, L[l].xd);
    for (int64_t j = 0; j < d; j++) {
      double sum = 0;
      for (int64_t i = 0; i < n; i++)
        sum += L[l].xd[i * d + j];
      L[l].shift[j] = L[l].sf[j] = (float)(sum / (double)n);
    }
    for (int64_t i = 0; i < n * d; i++)
      L[l].xc[i] = (float)L[l].xd[i] - L[l].sf[i % d];
    L[l].rows = (culeace__probe_rows){t == CULEACE_F32 ? L[l].xc : NULL,
                                      t == CULEACE_F32 ? NULL : L[l].x,
                                      t, d, n, d, L[l].shift, L[l].sf};
    L[l].y = xmalloc((size_t)(PL * n) * 4);
    L[l].train = xmalloc((size_t)(PL * n));
    L[l].cw = xmalloc((size_t)(PL * k) * 8);
    for (int p = 0; p < PL; p++) {
      for (int64_t i = 0; i < n; i++) {
        L[l].y[p * n + i] = (int32_t)(tu_next(&s->rng) % (uint64_t)k);
        L[l].train[p * n + i] = tu_uniform(&s->rng) < 0.75;
      }
      for (int64_t c = 0; c < k; c++)
        L[l].cw[p * k + c] = 0.5 + 1.5 * tu_uniform(&s->rng);
      L[l].prs[p] = (culeace__probe_problem){L[l].y + p * n,
                                             L[l].train + p * n, 0,
                                             L[l].cw + p * k, 0};
      L[l].idx[p] = (p + l) % PL; /* every problem, in another order */
    }
    L[l].W = xmalloc((size_t)(M * d) * 4);
    L[l].b = xmalloc((size_t)M * 8);
    for (int64_t i = 0; i < M * d; i++)
      L[l].W[i] = (float)(tu_normal(&s->rng) / sqrt((double)d));
    random_doubles(&s->rng, L[l].b, M, 0.0);
    for (int v = 0; v < 2; v++) {
      L[l].G[v] = xmalloc((size_t)(M * d) * 8);
      L[l].rs[v] = xmalloc((size_t)M * 8);
      L[l].ls[v] = xmalloc((size_t)PL * 8);
      poison(L[l].G[v], M * d), poison(L[l].rs[v], M), poison(L[l].ls[v], PL);
    }
    L[l].pass = NULL;
    CHECK_OK(s->ctx, culeace__probe_pass_open(s->ctx, &L[l].rows, m, PL,
                                              L[l].prs, f64, 1, &L[l].pass));
  }
  int open = 1;
  for (int l = 0; l < NL; l++)
    open &= L[l].pass != NULL;
  if (open) {
    for (int l = 0; l < NL; l++)
      jobs[l] = (culeace__probe_eval_job){L[l].pass, PL, L[l].idx, L[l].W,
                                          L[l].b, L[l].G[0], L[l].rs[0],
                                          L[l].ls[0]};
    CHECK_OK(s->ctx, culeace__probe_pass_eval_many(NL, jobs));
    for (int l = 0; l < NL; l++)
      CHECK_OK(s->ctx, culeace__probe_pass_eval(L[l].pass, PL, L[l].idx,
                                                L[l].W, L[l].b, L[l].G[1],
                                                L[l].rs[1], L[l].ls[1]));
  }
  double lim = f64 ? LIM_F64 : LIM_PROBE_F32;
  double lim_loss = f64 ? LIM_F64 : LIM_PROBE_LOSS_F32;
  for (int l = 0; open && l < NL; l++) {
    CHECK(!memcmp(L[l].G[0], L[l].G[1], (size_t)(M * d) * 8) &&
              !memcmp(L[l].rs[0], L[l].rs[1], (size_t)M * 8) &&
              !memcmp(L[l].ls[0], L[l].ls[1], (size_t)PL * 8),
          "%s: layer %d evaluated with the others differs from alone", desc,
          l);
    double *Ge = xmalloc((size_t)(M * d) * 8), *re = xmalloc((size_t)M * 8),
           *le = xmalloc((size_t)PL * 8);
    ref_probe_pass(L[l].xc, NS[l], d, m, L[l].prs, L[l].idx, PL, L[l].W,
                   L[l].b, Ge, re, le);
    double eg = nerr(L[l].G[0], Ge, M * d, 1e-300),
           er = nerr(L[l].rs[0], re, M, 1e-300),
           el = nerr(L[l].ls[0], le, PL, 1e-300);
    record("probe_pass_many", f64 ? "G, rsum (f64)" : "G, rsum (f32)", lim,
           fmax(eg, er));
    record("probe_pass_many", f64 ? "loss (f64)" : "loss (f32)", lim_loss,
           el);
    CHECK(eg <= lim && er <= lim && el <= lim_loss,
          "%s: layer %d: error G %.2e, rsum %.2e (limit %.0e), loss %.2e "
          "(limit %.0e)",
          desc, l, eg, er, lim, el, lim_loss);
    free(Ge), free(re), free(le);
  }
  for (int l = 0; l < NL; l++) {
    culeace__probe_pass_close(L[l].pass);
    free(L[l].x), free(L[l].xd), free(L[l].shift), free(L[l].sf);
    free(L[l].xc), free(L[l].y), free(L[l].train), free(L[l].cw);
    free(L[l].W), free(L[l].b);
    for (int v = 0; v < 2; v++)
      free(L[l].G[v]), free(L[l].rs[v]), free(L[l].ls[v]);
  }
}

static void suite_probe_pass_many(suite *s) {
  for (int f64 = 0; f64 < 2; f64++) {
    case_probe_pass_many(s, 67, 2, f64);
    case_probe_pass_many(s, 130, 4, f64);
  }
}

/* ---- CUDA-only cases ----------------------------------------------------- */

#ifdef CULEACE_HAVE_CUDA
/* Rows in device memory (with the host's guards and padding copied up
 * around them), edited by apply_device on the legacy default stream. */
static void case_apply_device(suite *s, culeace_dtype t, int64_t n, int64_t d,
                              int64_t ldx, int64_t r, int affine) {
  size_t es = culeace_dtype_size(t);
  char desc[200];
  snprintf(
      desc, sizeof desc, "%s apply_device %s n %lld d %lld ldx %lld r %lld %s",
      s->ctx->backend_name, culeace_dtype_name(t), (long long)n, (long long)d,
      (long long)ldx, (long long)r, affine ? "affine" : "linear");
  factors F;
  factors_make(s, d, r, affine, &F);
  gbuf gx;
  void *x = gb_alloc(&gx, (size_t)(n * ldx) * es);
  double *xd = xmalloc((size_t)(n * d) * 8), *e = xmalloc((size_t)(n * d) * 8);
  random_rows(&s->rng, t, n, d, ldx, x, xd);
  expected_apply(s, x, t, n, ldx, &F.f, e);
  size_t total = gx.bytes + 2 * GUARD;
  unsigned char *dev = NULL;
  cudaError_t ce = cudaMalloc((void **)&dev, total);
  CHECK(ce == cudaSuccess, "%s: cudaMalloc: %s", desc, cudaGetErrorString(ce));
  if (ce == cudaSuccess) {
    ce = cudaMemcpy(dev, gx.raw, total, cudaMemcpyHostToDevice);
    CHECK(ce == cudaSuccess, "%s: copy up: %s", desc, cudaGetErrorString(ce));
    culeace_status st = s->ctx->backend->apply_device(s->ctx, dev + GUARD, t, n,
                                                      ldx, &F.f, NULL);
    CHECK(st == CULEACE_OK, "%s: %s: %s", desc, culeace_status_name(st),
          culeace_ctx_last_error(s->ctx));
    ce = cudaDeviceSynchronize();
    CHECK(ce == cudaSuccess, "%s: sync: %s", desc, cudaGetErrorString(ce));
    memset(gx.raw, 0, total); /* everything must come back from the device */
    ce = cudaMemcpy(gx.raw, dev, total, cudaMemcpyDeviceToHost);
    CHECK(ce == cudaSuccess, "%s: copy down: %s", desc, cudaGetErrorString(ce));
    check_applied("apply_device", desc, &gx, x, t, n, d, ldx, e);
    cudaFree(dev);
  }
  gb_free(&gx);
  free(xd), free(e);
  factors_free(&F);
}

static void suite_apply_device(suite *s) {
  CHECK(s->ctx->backend->apply_device != NULL,
        "the CUDA backend has no apply_device");
  if (!s->ctx->backend->apply_device) return;
  static const int64_t SH[][4] = {/* n, d, ldx, r */
                                  {1, 5, 5, 2},        {7, 13, 16, 1},
                                  {300, 67, 67, 9},    {37, 130, 133, 5},
                                  {600, 300, 301, 17}, {0, 13, 13, 1}};
  int c = 0;
  for (size_t i = 0; i < sizeof SH / sizeof SH[0]; i++)
    for (int ti = 0; ti < 4; ti++, c++)
      case_apply_device(s, DTYPES[ti], SH[i][0], SH[i][1], SH[i][2], SH[i][3],
                        c % 2);
}

/* A page-locked allocation that cannot succeed returns NULL with a
 * message, and the context keeps working. */
static void suite_host_oom(suite *s) {
  void *p = culeace_host_alloc(s->ctx, (size_t)1 << 46);
  const char *msg = culeace_ctx_last_error(s->ctx);
  CHECK(p == NULL && msg[0] != 0,
        "culeace_host_alloc(64 TiB) returned %p, message \"%s\"", p, msg);
  printf("host_alloc(64 TiB) on %s -> %s: %s\n", s->ctx->backend_name,
         p ? "memory (!)" : "NULL", msg);
  if (p) culeace_host_free(s->ctx, p);
  unsigned char *small = culeace_host_alloc(s->ctx, 1 << 20);
  CHECK(small != NULL, "culeace_host_alloc(1 MiB) after the failure: %s",
        culeace_ctx_last_error(s->ctx));
  if (small) {
    memset(small, 1, 1 << 20);
    culeace_host_free(s->ctx, small);
  }
  case_moments(s, CULEACE_F32, CULEACE_PRECISION_F32, 50, 13, 13, 1, 1, 1);
  case_moments(s, CULEACE_BF16, CULEACE_PRECISION_F64, 9, 67, 70, 3, 4, 1);
  case_apply(s, CULEACE_F16, 40, 13, 16, 2, 1);
}
#endif

/* ---- main ---------------------------------------------------------------- */

static void run_suite(suite *s) {
  suite_moments(s);
  suite_nonfinite(s);
  suite_acc(s);
  suite_gemm(s);
  suite_eigh(s);
  suite_apply(s);
  suite_apply_cache(s);
  suite_probe_pass(s);
  suite_probe_pass_many(s);
#ifdef CULEACE_HAVE_CUDA
  if (s->ref) {
    suite_apply_device(s);
    if (!no_oom) suite_host_oom(s);
  }
#endif
  print_summary(s);
}

static culeace_ctx *make_ctx(culeace_device dev, char *err, size_t len,
                             culeace_status *st) {
  culeace_ctx_opts o;
  culeace_ctx_opts_init(&o);
  o.device = dev;
  culeace_ctx *ctx = NULL;
  err[0] = 0;
  *st = culeace_ctx_create(&o, &ctx, err, len);
  return ctx;
}

int main(int argc, char **argv) {
  int cuda = 0;
  uint64_t seed = DEFAULT_SEED;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--cuda")) {
      cuda = 1;
    } else if (!strcmp(argv[i], "--quick")) {
      quick = 1;
    } else if (!strcmp(argv[i], "--no-oom")) {
      no_oom = 1;
    } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
      seed = strtoull(argv[++i], NULL, 0);
    } else {
      fprintf(stderr, "usage: %s [--cuda] [--quick] [--no-oom] [--seed N]\n", argv[0]);
      return 2;
    }
  }
  char err[CULEACE_ERRMSG_LEN];
  culeace_status st;
  culeace_ctx *cpu = make_ctx(CULEACE_DEVICE_CPU, err, sizeof err, &st);
  CHECK(cpu != NULL, "CPU context: %s: %s", culeace_status_name(st), err);
  if (!cpu) return tu_finish("test_backend_conformance");

  suite s = {.ctx = cpu,
             .ref = NULL,
             .what = "cpu vs float64 reference",
             .serial = FIRST_SERIAL};
  tu_seed(&s.rng, seed);
  culeace_ctx *gpu = NULL;
  if (cuda) {
    gpu = make_ctx(CULEACE_DEVICE_CUDA, err, sizeof err, &st);
#ifndef CULEACE_HAVE_CUDA
    printf("SKIP: CUDA half: this test was built without CULEACE_HAVE_CUDA; "
           "the library says: %s (%s)\n",
           err[0] ? err : "cuda context created", culeace_status_name(st));
    culeace_ctx_free(gpu);
    culeace_ctx_free(cpu);
    return 77;
#else
    if (!gpu) {
      printf("SKIP: CUDA half: no CUDA context (%s): %s\n",
             culeace_status_name(st), err);
      culeace_ctx_free(cpu);
      return 77;
    }
    s.ctx = gpu, s.ref = cpu, s.what = "cuda vs cpu backend";
#endif
  }
  printf("test_backend_conformance: seed %llu, %s half%s%s\n",
         (unsigned long long)seed, cuda ? "CUDA" : "CPU",
         quick ? " (--quick)" : "", no_oom ? " (--no-oom)" : "");
  if (cuda) {
    printf("CUDA context: %s (%s)\n", culeace_ctx_backend_name(gpu),
           culeace_ctx_device_note(gpu));
  } else {
    CHECK(cpu->backend->apply_device == NULL,
          "the CPU backend has an apply_device (backend.h: NULL without a "
          "device)");
  }
  run_suite(&s);
  culeace_ctx_free(gpu);
  culeace_ctx_free(cpu);
  return tu_finish("test_backend_conformance");
}
