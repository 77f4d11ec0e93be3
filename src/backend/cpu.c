/* cpu.c — the CPU backend: the readable reference for every backend
 * operation, on OpenBLAS (CBLAS) and LAPACKE. Scratch buffers live in the
 * backend state and grow as needed, so no operation allocates per block once
 * warm. */
#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "core/ctx.h"

typedef struct {
  void *buf;
  size_t cap;
} scratch;

typedef struct {
  scratch x;  /* block of rows converted to float32/float64 */
  scratch xc; /* centred rows (apply) */
  scratch z;  /* centred label block */
  scratch c;  /* float32 products before widening / apply coefficients */
  scratch part; /* per-thread partial column sums (threads, d) */
} cpu_state;

static culeace_status cpu_init(culeace_ctx *ctx, void **state) {
  cpu_state *s = calloc(1, sizeof *s);
  if (!s)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating the CPU backend state");
  *state = s;
  return CULEACE_OK;
}

static void cpu_destroy(void *state) {
  cpu_state *s = state;
  if (!s) return;
  free(s->x.buf);
  free(s->xc.buf);
  free(s->z.buf);
  free(s->c.buf);
  free(s->part.buf);
  free(s);
}

/* Grows b to hold count*size bytes (contents not kept). */
static culeace_status grow(culeace_ctx *ctx, scratch *b, size_t count,
                           size_t size, const char *what) {
  size_t bytes;
  if (!culeace__mul_size(count, size, &bytes))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "size of %s overflows", what);
  if (bytes <= b->cap) return CULEACE_OK;
  free(b->buf);
  b->buf = malloc(bytes);
  b->cap = b->buf ? bytes : 0;
  if (!b->buf)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating %s (%zu bytes)", what,
                          bytes);
  return CULEACE_OK;
}

static cpu_state *state_of(culeace_ctx *ctx) { return ctx->backend_state; }

/* cxz (d, k) = xc^T zc for centred xc (n, d), zc (n, k). A GEMM with tiny k
 * would repack the whole block; k GEMVs stream it once each instead. */
static void cross_moment_f64(const double *xc, const double *zc, int64_t n,
                             int64_t d, int64_t k, double *cxz) {
  if (k > 4) {
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)k,
                (int)n, 1.0, xc, (int)d, zc, (int)k, 0.0, cxz, (int)k);
    return;
  }
  for (int64_t c = 0; c < k; c++) /* column c of cxz has stride k */
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, 1.0, xc, (int)d,
                zc + c, (int)k, 0.0, cxz + c, (int)k);
}

/* Converts the block to float64 or float32 (xb (n, d), contiguous),
 * centred on its column means (mean_x, float64), rows split over the OpenMP
 * threads (partial sums in part (threads, d)). Two passes over x: the
 * sums, converting a piece of a row at a time in registers' reach, then
 * each row converted and centred while it is in L1, so that xb is written
 * once (x is often 2 bytes a value, xb 4 or 8). Returns 1 when a column
 * mean is not finite (NaN/Inf in x), with xb left uncentred. */
static int prep_block(const void *x, culeace_dtype xtype, int64_t n,
                      int64_t d, int64_t ldx, int f32, void *xb,
                      double *mean_x, double *part, int threads) {
  enum { PIECE = 256 }; /* values converted at a time for the sums */
  size_t es = culeace_dtype_size(xtype);
  memset(part, 0, (size_t)threads * (size_t)d * sizeof *part);
#pragma omp parallel num_threads(threads)
  {
    double *acc = part + (size_t)omp_get_thread_num() * (size_t)d;
    float vf[PIECE];
    double vd[PIECE];
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; i++) {
      const char *src = (const char *)x + (size_t)i * (size_t)ldx * es;
      for (int64_t j0 = 0; j0 < d; j0 += PIECE) {
        int64_t m = d - j0 < PIECE ? d - j0 : PIECE;
        const char *at = src + (size_t)j0 * es;
        if (f32) {
          culeace__to_f32(at, xtype, m, vf);
          for (int64_t j = 0; j < m; j++) acc[j0 + j] += vf[j];
        } else {
          culeace__to_f64(at, xtype, m, vd);
          for (int64_t j = 0; j < m; j++) acc[j0 + j] += vd[j];
        }
      }
    }
  }
  int finite = 1;
  for (int64_t j = 0; j < d; j++) {
    double sum = 0;
    for (int t = 0; t < threads; t++) sum += part[(size_t)t * d + j];
    mean_x[j] = sum / (double)n;
    finite &= isfinite(mean_x[j]) != 0;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; i++) {
    const char *src = (const char *)x + (size_t)i * (size_t)ldx * es;
    if (f32) {
      float *row = (float *)xb + i * d;
      culeace__to_f32(src, xtype, d, row);
      if (finite)
        for (int64_t j = 0; j < d; j++)
          row[j] = (float)((double)row[j] - mean_x[j]);
    } else {
      double *row = (double *)xb + i * d;
      culeace__to_f64(src, xtype, d, row);
      if (finite)
        for (int64_t j = 0; j < d; j++) row[j] -= mean_x[j];
    }
  }
  return !finite;
}

/* Rounds m float32 values to float16/bfloat16 (nearest even) and back, in
 * place: what the tensor-core path on the GPU multiplies. */
static void round_through(float *v, size_t m, culeace_dtype t, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (size_t i = 0; i < m; i++)
    v[i] = t == CULEACE_F16 ? culeace__f16_to_f32(culeace__f32_to_f16(v[i]))
                            : culeace__bf16_to_f32(culeace__f32_to_bf16(v[i]));
}

static culeace_status cpu_block_moments(culeace_ctx *ctx, const void *x,
                                        culeace_dtype xtype, int64_t n,
                                        int64_t d, int64_t ldx,
                                        const double *z, int64_t k,
                                        int64_t ldz,
                                        culeace_precision precision,
                                        double *mean_x, double *mean_z,
                                        double *cxx, double *cxz) {
  cpu_state *s = state_of(ctx);
  int f32 = precision != CULEACE_PRECISION_F64;
  int round16 = precision == CULEACE_PRECISION_TENSOR &&
                (xtype == CULEACE_F16 || xtype == CULEACE_BF16);
  size_t nd;
  if (!culeace__mul_size((size_t)n, (size_t)d, &nd))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "block too large");
  culeace_status st = grow(ctx, &s->x, nd, f32 ? 4 : 8, "moment block");
  if (!st) st = grow(ctx, &s->z, (size_t)n * (size_t)k, 8, "label block");
  if (!st && f32)
    st = grow(ctx, &s->c, (size_t)d * (size_t)(cxx && d > k ? d : k) +
                              (size_t)n * (size_t)k, 4, "float32 products");
  if (st) return st;

  int threads = omp_get_max_threads();
  st = grow(ctx, &s->part, (size_t)threads * (size_t)d, 8, "column sums");
  if (st) return st;
  double *zc = s->z.buf;
  if (k > 0) culeace__centre_z(z, n, k, ldz, zc, mean_z);
  /* NaN/Inf anywhere in the block makes a column mean non-finite (a sum of
   * finite values this size cannot overflow float64 from float32 inputs);
   * block_nonfinite then finds and names the row. */
  if (prep_block(x, xtype, n, d, ldx, f32, s->x.buf, mean_x, s->part.buf,
                 threads) &&
      culeace__block_nonfinite(ctx, x, xtype, n, d, ldx, mean_x))
    return CULEACE_ERR_NONFINITE;

  if (!f32) {
    double *xb = s->x.buf;
    if (cxx)
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)n, 1.0,
                  xb, (int)d, 0.0, cxx, (int)d);
    if (k > 0) cross_moment_f64(xb, zc, n, d, k, cxz);
    return CULEACE_OK;
  }

  /* float32 products after centring on the block mean (kept in float64),
   * widened into the float64 outputs. */
  float *xb = s->x.buf;
  float *c32 = s->c.buf;
  if (k > 0) {
    /* after both products' room: cxz (d, k) and cxx (d, d) use c32 */
    float *z32 = c32 + (size_t)d * (size_t)(cxx && d > k ? d : k);
    for (int64_t i = 0; i < n * k; i++) z32[i] = (float)zc[i];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)k,
                (int)n, 1.0f, xb, (int)d, z32, (int)k, 0.0f, c32, (int)k);
    for (int64_t i = 0; i < d * k; i++) cxz[i] = c32[i];
  }
  if (round16) round_through(xb, (size_t)n * (size_t)d, xtype, threads);
  if (cxx) {
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)n, 1.0f,
                xb, (int)d, 0.0f, c32, (int)d);
    for (int64_t i = 0; i < d; i++)
      for (int64_t j = i; j < d; j++) cxx[i * d + j] = c32[i * d + j];
  }
  return CULEACE_OK;
}

static culeace_status cpu_eigh(culeace_ctx *ctx, double *a, double *w,
                               int64_t d) {
  /* LAPACKE_dsyevd's own workspace query is wrong for large n in OpenBLAS
   * 0.3.21 (see docs/DESIGN.md): size the workspace ourselves. */
  size_t lwork = 1 + 6 * (size_t)d + 2 * (size_t)d * (size_t)d;
  size_t liwork = 3 + 5 * (size_t)d;
  double *work = culeace__alloc(ctx, lwork, sizeof(double), "eigh workspace");
  lapack_int *iwork =
      culeace__alloc(ctx, liwork, sizeof(lapack_int), "eigh workspace");
  culeace_status st = CULEACE_OK;
  if (!work || !iwork) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  /* A symmetric matrix is its own transpose: column-major call, and the
   * column-major eigenvector matrix read row-major is V^T. */
  lapack_int info =
      LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', (lapack_int)d, a,
                          (lapack_int)d, w, work, (lapack_int)lwork, iwork,
                          (lapack_int)liwork);
  if (info != 0)
    st = culeace__error(ctx, CULEACE_ERR_LAPACK,
                        "dsyevd failed on a %lldx%lld matrix (info = %d)",
                        (long long)d, (long long)d, (int)info);
cleanup:
  free(work);
  free(iwork);
  return st;
}

static culeace_status cpu_gemm(culeace_ctx *ctx, int trans_a, int trans_b,
                               int64_t m, int64_t n, int64_t k, double alpha,
                               const double *a, int64_t lda, const double *b,
                               int64_t ldb, double beta, double *c,
                               int64_t ldc) {
  (void)ctx;
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
  return CULEACE_OK;
}

enum { APPLY_CHUNK = 256 }; /* rows per pass: a chunk stays in cache */

/* One chunk in float64: t = (x - bias) R^T ; x -= t L^T. */
static void apply_chunk_f64(cpu_state *s, double *rows, int64_t m,
                            int64_t ldx, const culeace_apply_factors *f) {
  int64_t d = f->d, r = f->r;
  double *xc = s->xc.buf, *t = s->c.buf;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < d; j++)
      xc[i * d + j] = rows[i * ldx + j] - (f->bias ? f->bias[j] : 0.0);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)r, (int)d,
              1.0, xc, (int)d, f->R, (int)d, 0.0, t, (int)r);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)d, (int)r,
              -1.0, t, (int)r, f->L, (int)r, 1.0, rows, (int)ldx);
}

/* One chunk in float32; xf: (m, d) rows with stride ldf (the data itself
 * for float32, a converted copy for 2-byte types). */
static void apply_chunk_f32(cpu_state *s, float *xf, int64_t m, int64_t ldf,
                            const culeace_apply_factors *f) {
  int64_t d = f->d, r = f->r;
  float *xc = s->xc.buf, *t = s->c.buf;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < d; j++)
      xc[i * d + j] = xf[i * ldf + j] - (f->bias32 ? f->bias32[j] : 0.0f);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)r, (int)d,
              1.0f, xc, (int)d, f->R32, (int)d, 0.0f, t, (int)r);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)d, (int)r,
              -1.0f, t, (int)r, f->L32, (int)r, 1.0f, xf, (int)ldf);
}

enum { FUSED_MAX_RANK = 8 };

/* One float32 row (d) edited in place at rank r <= FUSED_MAX_RANK:
 * t = (x - bias) R^T in one pass over the row (r accumulators per lane),
 * then x -= t L^T in a second pass while the row is still in L1. The GEMM
 * path packs the factors per chunk, which dominates at small rank. Inlined
 * with r a constant (edit_row_f32's switch) so both loops vectorise.
 * Lt: (r, d) = L^T. */
static inline __attribute__((always_inline)) void
edit_row_rank(float *x, int64_t d, const int r, const float *R,
              const float *Lt, const float *bias) {
  float t[FUSED_MAX_RANK] = {0};
#pragma omp simd reduction(+ : t[:FUSED_MAX_RANK])
  for (int64_t j = 0; j < d; j++) {
    const float v = x[j] - (bias ? bias[j] : 0.0f);
    for (int c = 0; c < r; c++) t[c] += v * R[(size_t)c * (size_t)d + j];
  }
#pragma omp simd
  for (int64_t j = 0; j < d; j++) {
    float e = 0;
    for (int c = 0; c < r; c++) e += t[c] * Lt[(size_t)c * (size_t)d + j];
    x[j] -= e;
  }
}

static void edit_row_f32(float *x, int64_t d, int r, const float *R,
                         const float *Lt, const float *bias) {
  switch (r) {
  case 1: edit_row_rank(x, d, 1, R, Lt, bias); break;
  case 2: edit_row_rank(x, d, 2, R, Lt, bias); break;
  case 3: edit_row_rank(x, d, 3, R, Lt, bias); break;
  case 4: edit_row_rank(x, d, 4, R, Lt, bias); break;
  case 5: edit_row_rank(x, d, 5, R, Lt, bias); break;
  case 6: edit_row_rank(x, d, 6, R, Lt, bias); break;
  case 7: edit_row_rank(x, d, 7, R, Lt, bias); break;
  default: edit_row_rank(x, d, 8, R, Lt, bias); break;
  }
}

/* Rank <= FUSED_MAX_RANK: rows split over the OpenMP threads, each row
 * converted to float32 (2-byte types) into the thread's own row of scratch,
 * edited, and rounded back (nearest even). Lt is L^T (r, d). */
static void apply_fused(cpu_state *s, void *x, culeace_dtype xtype, int64_t n,
                        int64_t ldx, const culeace_apply_factors *f,
                        const float *Lt, int threads) {
  const int64_t d = f->d;
  const int r = (int)f->r;
  const size_t es = culeace_dtype_size(xtype);
#pragma omp parallel num_threads(threads)
  {
    float *tmp = (float *)s->x.buf + (size_t)omp_get_thread_num() * (size_t)d;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; i++) {
      char *row = (char *)x + (size_t)i * (size_t)ldx * es;
      if (xtype == CULEACE_F32) {
        edit_row_f32((float *)row, d, r, f->R32, Lt, f->bias32);
      } else {
        culeace__to_f32(row, xtype, d, tmp);
        edit_row_f32(tmp, d, r, f->R32, Lt, f->bias32);
        culeace__from_f32(tmp, d, xtype, row);
      }
    }
  }
}

static culeace_status cpu_apply(culeace_ctx *ctx, void *x,
                                culeace_dtype xtype, int64_t n, int64_t ldx,
                                const culeace_apply_factors *f) {
  cpu_state *s = state_of(ctx);
  int64_t d = f->d, r = f->r;
  if (r == 0 || n == 0) return CULEACE_OK;
  const char *kernel = getenv("CULEACE_APPLY_KERNEL"); /* "generic": GEMMs */
  if (xtype != CULEACE_F64 && r <= FUSED_MAX_RANK &&
      !(kernel && !strcmp(kernel, "generic"))) {
    int threads = omp_get_max_threads();
    culeace_status st = grow(ctx, &s->x, (size_t)threads * (size_t)d, 4,
                             "apply rows");
    if (!st) st = grow(ctx, &s->xc, (size_t)r * (size_t)d, 4, "apply factors");
    if (st) return st;
    float *Lt = s->xc.buf; /* L (d, r) -> L^T (r, d) */
    for (int64_t j = 0; j < d; j++)
      for (int64_t c = 0; c < r; c++) Lt[c * d + j] = f->L32[j * r + c];
    apply_fused(s, x, xtype, n, ldx, f, Lt, threads);
    return CULEACE_OK;
  }
  size_t es = culeace_dtype_size(xtype);
  size_t vs = xtype == CULEACE_F64 ? 8 : 4;
  size_t chunk = (size_t)APPLY_CHUNK * (size_t)d;
  culeace_status st = grow(ctx, &s->xc, chunk, vs, "apply block");
  if (!st) st = grow(ctx, &s->c, (size_t)APPLY_CHUNK * (size_t)r, vs,
                     "apply coefficients");
  if (!st && es == 2) st = grow(ctx, &s->x, chunk, 4, "apply block");
  if (st) return st;

  for (int64_t i0 = 0; i0 < n; i0 += APPLY_CHUNK) {
    int64_t m = n - i0 < APPLY_CHUNK ? n - i0 : APPLY_CHUNK;
    char *rows = (char *)x + (size_t)i0 * (size_t)ldx * es;
    if (xtype == CULEACE_F64) {
      apply_chunk_f64(s, (double *)rows, m, ldx, f);
    } else if (xtype == CULEACE_F32) {
      apply_chunk_f32(s, (float *)rows, m, ldx, f);
    } else { /* 2-byte rows: convert, edit in float32, round back (RNE) */
      float *xf = s->x.buf;
      for (int64_t i = 0; i < m; i++)
        culeace__to_f32(rows + (size_t)i * ldx * es, xtype, d, xf + i * d);
      apply_chunk_f32(s, xf, m, d, f);
      for (int64_t i = 0; i < m; i++)
        culeace__from_f32(xf + i * d, d, xtype, rows + (size_t)i * ldx * es);
    }
  }
  return CULEACE_OK;
}

static void *cpu_host_alloc(culeace_ctx *ctx, size_t bytes) {
  return culeace__alloc(ctx, bytes, 1, "host block buffer");
}

static void cpu_host_free(void *state, void *p) {
  (void)state;
  free(p);
}

const culeace_backend culeace__backend_cpu = {
    .name = "cpu",
    .init = cpu_init,
    .destroy = cpu_destroy,
    .block_moments = cpu_block_moments,
    .eigh = cpu_eigh,
    .gemm = cpu_gemm,
    .apply = cpu_apply,
    .apply_device = NULL,
    .acc_update = NULL, /* the fitter merges on the host */
    .acc_read = NULL,
    .acc_free = NULL,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
};
