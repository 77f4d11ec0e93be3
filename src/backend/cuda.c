/* cuda.c — the CUDA backend: the ops table of backend.h on cuBLAS, cuSOLVER
 * and the kernels in kernels/. The state (one per context) owns the device
 * choice, a stream, the cuBLAS/cuSOLVER handles, growable device buffers
 * and a small cache of erasers' factors on the device. Every CUDA, cuBLAS
 * and cuSOLVER call is checked; failures become a status with the raw code
 * in the message, and out-of-memory leaves the state usable. */
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"
#include "cuda_state.h"
#include "kernels.h"
#include "whiten.h"

/* ---- error translation ---------------------------------------------------- */

culeace_status cuda_fail(culeace_ctx *ctx, cudaError_t e,
                                const char *what) {
  (void)cudaGetLastError(); /* clear a non-sticky error for later calls */
  culeace_status st = e == cudaErrorMemoryAllocation
                          ? CULEACE_ERR_OUT_OF_MEMORY
                          : CULEACE_ERR_CUDA;
  return culeace__error(ctx, st, "%s on cuda:%d failed: %s (CUDA error %d: %s)",
                        what, ctx->device_index, cudaGetErrorName(e), (int)e,
                        cudaGetErrorString(e));
}

culeace_status cublas_fail(culeace_ctx *ctx, cublasStatus_t e,
                                  const char *what) {
  culeace_status st = e == CUBLAS_STATUS_ALLOC_FAILED
                          ? CULEACE_ERR_OUT_OF_MEMORY
                          : CULEACE_ERR_CUBLAS;
  return culeace__error(ctx, st, "%s on cuda:%d failed: %s (cuBLAS status %d)",
                        what, ctx->device_index, cublasGetStatusString(e),
                        (int)e);
}

culeace_status cusolver_fail(culeace_ctx *ctx, cusolverStatus_t e,
                                    const char *what) {
  culeace_status st = e == CUSOLVER_STATUS_ALLOC_FAILED
                          ? CULEACE_ERR_OUT_OF_MEMORY
                          : CULEACE_ERR_CUSOLVER;
  return culeace__error(ctx, st, "%s on cuda:%d failed (cuSOLVER status %d)",
                        what, ctx->device_index, (int)e);
}

/* ---- buffers ------------------------------------------------------------------ */

/* Grows device buffer b to bytes (contents not kept). On failure b is empty
 * and the state stays usable. */
culeace_status dgrow(culeace_ctx *ctx, dbuf *b, size_t bytes,
                            const char *what) {
  if (bytes <= b->cap) return CULEACE_OK;
  if (b->p) cudaFree(b->p);
  b->p = NULL;
  b->cap = 0;
  cudaError_t e = cudaMalloc(&b->p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    b->p = NULL;
    (void)cudaGetLastError();
    return culeace__error(
        ctx, e == cudaErrorMemoryAllocation ? CULEACE_ERR_OUT_OF_MEMORY
                                            : CULEACE_ERR_CUDA,
        "CUDA could not allocate %s (%zu bytes on cuda:%d): %s (CUDA error "
        "%d)", what, bytes, ctx->device_index, cudaGetErrorString(e), (int)e);
  }
  b->cap = bytes;
  return CULEACE_OK;
}

void dfree(dbuf *b) {
  if (b->p) cudaFree(b->p);
  b->p = NULL;
  b->cap = 0;
}

/* count * size bytes, or an out-of-memory error when that overflows. */
culeace_status dsize(culeace_ctx *ctx, size_t count, size_t size,
                            size_t *bytes, const char *what) {
  if (culeace__mul_size(count, size, bytes)) return CULEACE_OK;
  return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "size of %s overflows (%zu x %zu bytes)", what, count,
                        size);
}

static culeace_status grow_host(culeace_ctx *ctx, cuda_state *s, size_t bytes) {
  if (bytes <= s->host_work_cap) return CULEACE_OK;
  free(s->host_work);
  s->host_work = malloc(bytes ? bytes : 1);
  s->host_work_cap = s->host_work ? bytes : 0;
  if (!s->host_work)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating %zu bytes of host "
                          "scratch", bytes);
  return CULEACE_OK;
}

/* ---- init / destroy ------------------------------------------------------------ */

static void cuda_destroy(void *state) {
  cuda_state *s = state;
  if (!s) return;
  cudaSetDevice(s->device);
  if (s->stream) cudaStreamSynchronize(s->stream);
  dbuf *bufs[] = {&s->raw, &s->xc, &s->z, &s->prod, &s->prod64,
                  &s->sums, &s->work, &s->mat, &s->info};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dfree(bufs[i]);
  if (s->copy_stream) cudaStreamSynchronize(s->copy_stream);
  for (int i = 0; i < 2; i++) {
    dfree(&s->slot[i]);
    if (s->copied[i]) cudaEventDestroy(s->copied[i]);
    if (s->consumed[i]) cudaEventDestroy(s->consumed[i]);
  }
  if (s->copy_stream) cudaStreamDestroy(s->copy_stream);
  for (int i = 0; i < FACTOR_SLOTS; i++) dfree(&s->slots[i].mem);
  if (s->params) cusolverDnDestroyParams(s->params);
  if (s->solver) cusolverDnDestroy(s->solver);
  if (s->blas) cublasDestroy(s->blas);
  if (s->stream) cudaStreamDestroy(s->stream);
  free(s->host_work);
  free(s);
}

static culeace_status cuda_init(culeace_ctx *ctx, void **out) {
  culeace_status st = CULEACE_OK;
  int count = 0;
  /* Without a driver this fails (e.g. error 35 or 100) and leaves count. */
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return culeace__error(ctx, CULEACE_ERR_NO_DEVICE,
                          "no usable GPU: cudaGetDeviceCount failed: %s (CUDA "
                          "error %d)",
                          cudaGetErrorString(e), (int)e);
  }
  if (ctx->device_index < 0 || ctx->device_index >= count)
    return culeace__error(ctx, CULEACE_ERR_NO_DEVICE,
                          "no usable GPU: cuda:%d requested but %d CUDA "
                          "device(s) found",
                          ctx->device_index, count);
  cuda_state *s = calloc(1, sizeof *s);
  if (!s)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating the CUDA backend state");
  s->device = ctx->device_index;
  CU(cudaSetDevice(s->device), "cudaSetDevice");
  struct cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, s->device), "cudaGetDeviceProperties");
  snprintf(ctx->device_note, sizeof ctx->device_note,
           "cuda:%d (%.120s, sm_%d%d, %.1f GiB)", s->device, prop.name,
           prop.major, prop.minor, (double)prop.totalGlobalMem / 1073741824.0);
  CU(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking),
     "cudaStreamCreate");
  CU(cudaStreamCreateWithFlags(&s->copy_stream, cudaStreamNonBlocking),
     "cudaStreamCreate");
  for (int i = 0; i < 2; i++) {
    CU(cudaEventCreateWithFlags(&s->copied[i], cudaEventDisableTiming),
       "cudaEventCreate");
    CU(cudaEventCreateWithFlags(&s->consumed[i], cudaEventDisableTiming),
       "cudaEventCreate");
  }
  CUBLAS(cublasCreate(&s->blas), "cublasCreate");
  CUBLAS(cublasSetStream(s->blas, s->stream), "cublasSetStream");
  *out = s;
  return CULEACE_OK;
cleanup:
  cuda_destroy(s);
  return st;
}

/* Every operation starts here: the calling thread may have another current
 * device. */
culeace_status use_device(culeace_ctx *ctx, cuda_state *s) {
  culeace_status st = CULEACE_OK;
  CU(cudaSetDevice(s->device), "cudaSetDevice");
cleanup:
  return st;
}

/* ---- block moments ------------------------------------------------------------- */

/* Sizes the device buffers for a block; on failure nothing is left half
 * allocated that matters (each buffer is either its old size or empty).
 * prod holds the float32 products (cxx then cxz) when f64 is 0. */
static culeace_status moments_buffers(culeace_ctx *ctx, cuda_state *s,
                                      culeace_dtype xtype, int64_t n,
                                      int64_t d, int64_t k, int f64, int cxx,
                                      int with_raw) {
  size_t nd, raw_b, xc_b, z_b, dd;
  culeace_status st = dsize(ctx, (size_t)n, (size_t)d, &nd, "moment block");
  if (!st) st = dsize(ctx, nd, culeace_dtype_size(xtype), &raw_b, "block");
  if (!st) st = dsize(ctx, nd, f64 ? 8 : 4, &xc_b, "centred block");
  if (!st) st = dsize(ctx, (size_t)n * (size_t)k, f64 ? 8 : 4, &z_b, "labels");
  if (!st)
    st = dsize(ctx, cxx ? (size_t)d : (size_t)0, (size_t)d, &dd, "products");
  if (st) return st;
  size_t prod = dd + (size_t)d * (size_t)k;
  if (!st && with_raw) st = dgrow(ctx, &s->raw, raw_b, "the row block");
  if (!st) st = dgrow(ctx, &s->xc, xc_b, "the centred row block");
  if (!st) st = dgrow(ctx, &s->z, z_b, "the label block");
  if (!st && !f64) st = dgrow(ctx, &s->prod, prod * 4, "float32 moments");
  if (!st) st = dgrow(ctx, &s->sums, ((size_t)d + (size_t)k) * 8, "sums");
  if (!st) st = grow_host(ctx, s, (size_t)n * (size_t)k * 12);
  return st;
}

/* The first half of every moment op, on rows already on the device (raw,
 * (n, d) contiguous; the same rows are rows row0.. of x_block on the host,
 * whose earlier rows are known finite: for the NaN message):
 * float64 column sums, means to the host (mean_x (d), mean_z (k)) with
 * NaN/Inf refused there, the centred block in s->xc (float64 or float32)
 * and the centred labels in s->z. */
static culeace_status prologue_on_device(culeace_ctx *ctx, cuda_state *s,
                                         const void *raw, const void *x_block,
                                         int64_t row0, culeace_dtype xtype,
                                         int64_t n, int64_t d, int64_t ldx,
                                         const double *z, int64_t k,
                                         int64_t ldz, int f64, double *mean_x,
                                         double *mean_z) {
  culeace_status st = CULEACE_OK;
  CU(cudaMemsetAsync(s->sums.p, 0, (size_t)d * 8, s->stream), "cudaMemset");
  KERNEL(culeace_k_column_sums(raw, xtype, n, d, d, s->sums.p, s->stream),
         "column sums kernel");
  CU(cudaMemcpyAsync(mean_x, s->sums.p, (size_t)d * 8, cudaMemcpyDeviceToHost,
                     s->stream),
     "copying column sums from the GPU");
  CU(cudaStreamSynchronize(s->stream), "column sums");
  for (int64_t j = 0; j < d; j++) mean_x[j] /= (double)n;
  if (culeace__block_nonfinite(ctx, x_block, xtype, row0 + n, d, ldx, mean_x))
    return CULEACE_ERR_NONFINITE;
  KERNEL(culeace_k_centre(raw, xtype, n, d, d, s->sums.p, f64, s->xc.p,
                          s->stream),
         "centring kernel");
  if (k > 0) {
    double *zc = s->host_work;
    culeace__centre_z(z, n, k, ldz, zc, mean_z);
    const void *zup = zc;
    if (!f64) {
      float *zf = (float *)(zc + (size_t)n * (size_t)k);
      for (int64_t i = 0; i < n * k; i++) zf[i] = (float)zc[i];
      zup = zf;
    }
    CU(cudaMemcpyAsync(s->z.p, zup, (size_t)n * (size_t)k * (f64 ? 8 : 4),
                       cudaMemcpyHostToDevice, s->stream),
       "copying the label block to the GPU");
    /* The copy reads host_work: finish it before the next op reuses it. */
    CU(cudaStreamSynchronize(s->stream), "copying the label block");
  }
cleanup:
  return st;
}

/* The prologue of block_moments: the block up to the device (s->raw) on
 * the state's stream, then prologue_on_device. */
static culeace_status moments_prologue(culeace_ctx *ctx, cuda_state *s,
                                       const void *x, culeace_dtype xtype,
                                       int64_t n, int64_t d, int64_t ldx,
                                       const double *z, int64_t k, int64_t ldz,
                                       int f64, int with_cxx, double *mean_x,
                                       double *mean_z) {
  size_t es = culeace_dtype_size(xtype);
  culeace_status st = use_device(ctx, s);
  if (!st) st = moments_buffers(ctx, s, xtype, n, d, k, f64, with_cxx, 1);
  if (st) return st;
  CU(cudaMemcpy2DAsync(s->raw.p, (size_t)d * es, x, (size_t)ldx * es,
                       (size_t)d * es, (size_t)n, cudaMemcpyHostToDevice,
                       s->stream),
     "copying the row block to the GPU");
  st = prologue_on_device(ctx, s, s->raw.p, x, 0, xtype, n, d, ldx, z, k, ldz,
                          f64, mean_x, mean_z);
cleanup:
  return st;
}

/* The block's co-moments from s->xc and s->z, added (beta = 1) or written
 * (beta = 0) into float64 device outputs: c64 (d, d) row-major upper
 * triangle (NULL to skip) and z64 (d, k). In cuBLAS's column-major view the
 * row-major upper triangle is the lower one, and cxz^T (k, d) = zc^T xc.
 * float32 products go through s->prod and are widened (and added). */
static culeace_status block_products(culeace_ctx *ctx, cuda_state *s,
                                     culeace_precision precision,
                                     culeace_dtype xtype, int64_t n, int64_t d,
                                     int64_t k, void *raw, double *c64,
                                     double *z64, int add) {
  culeace_status st = CULEACE_OK;
  int f64 = precision == CULEACE_PRECISION_F64;
  if (f64) {
    const double one = 1, beta = add ? 1 : 0;
    if (c64)
      CUBLAS(cublasDsyrk(s->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)d,
                         (int)n, &one, s->xc.p, (int)d, &beta, c64, (int)d),
             "cublasDsyrk (co-moments)");
    if (k > 0)
      CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)k, (int)d,
                         (int)n, &one, s->z.p, (int)k, s->xc.p, (int)d, &beta,
                         z64, (int)k),
             "cublasDgemm (cross moment)");
    goto cleanup;
  }
  const float one = 1, zero = 0;
  float *c32 = s->prod.p, *z32 = c32 + (c64 ? (size_t)d * (size_t)d : 0);
  if (k > 0) { /* first: the tensor path rounds s->xc's values below */
    CUBLAS(cublasSgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)k, (int)d,
                       (int)n, &one, s->z.p, (int)k, s->xc.p, (int)d, &zero,
                       z32, (int)k),
           "cublasSgemm (cross moment)");
    KERNEL(culeace_k_widen(z32, z64, d * k, add, s->stream), "widen kernel");
  }
  if (c64 && precision == CULEACE_PRECISION_TENSOR &&
      (xtype == CULEACE_F16 || xtype == CULEACE_BF16)) {
    /* Centred values rounded to the rows' type (into raw, whose rows are
     * no longer needed), full Xc^T Xc on tensor cores, float32 sums. */
    cudaDataType t16 = xtype == CULEACE_F16 ? CUDA_R_16F : CUDA_R_16BF;
    KERNEL(culeace_k_round16(s->xc.p, raw, xtype, n * d, s->stream),
           "rounding kernel");
    CUBLAS(cublasGemmEx(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)d, (int)d,
                        (int)n, &one, raw, t16, (int)d, raw, t16,
                        (int)d, &zero, c32, CUDA_R_32F, (int)d,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
           "cublasGemmEx (16-bit co-moments)");
    KERNEL(culeace_k_widen(c32, c64, d * d, add, s->stream), "widen kernel");
  } else if (c64) {
    CU(cudaMemsetAsync(c32, 0, (size_t)d * (size_t)d * 4, s->stream),
       "cudaMemset");
    CUBLAS(cublasSsyrk(s->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)d,
                       (int)n, &one, s->xc.p, (int)d, &zero, c32, (int)d),
           "cublasSsyrk (co-moments)");
    KERNEL(culeace_k_widen(c32, c64, d * d, add, s->stream), "widen kernel");
  }
cleanup:
  return st;
}

static culeace_status cuda_block_moments(culeace_ctx *ctx, const void *x,
                                         culeace_dtype xtype, int64_t n,
                                         int64_t d, int64_t ldx,
                                         const double *z, int64_t k,
                                         int64_t ldz,
                                         culeace_precision precision,
                                         double *mean_x, double *mean_z,
                                         double *cxx, double *cxz) {
  cuda_state *s = state_of(ctx);
  int f64 = precision == CULEACE_PRECISION_F64;
  size_t dd = cxx ? (size_t)d * (size_t)d : 0;
  culeace_status st = moments_prologue(ctx, s, x, xtype, n, d, ldx, z, k, ldz,
                                       f64, cxx != NULL, mean_x, mean_z);
  if (!st) st = dgrow(ctx, &s->prod64, (dd + (size_t)d * (size_t)k) * 8,
                      "the block moments");
  if (st) return st;
  double *c64 = cxx ? s->prod64.p : NULL, *z64 = (double *)s->prod64.p + dd;
  /* The other triangle is zeroed so the copy back carries no stale values. */
  if (cxx)
    CU(cudaMemsetAsync(c64, 0, dd * 8, s->stream), "cudaMemset");
  CULEACE_TRY(block_products(ctx, s, precision, xtype, n, d, k, s->raw.p, c64,
                             z64, 0));
  if (cxx)
    CU(cudaMemcpyAsync(cxx, c64, dd * 8, cudaMemcpyDeviceToHost, s->stream),
       "copying co-moments from the GPU");
  if (k > 0)
    CU(cudaMemcpyAsync(cxz, z64, (size_t)d * (size_t)k * 8,
                       cudaMemcpyDeviceToHost, s->stream),
       "copying cross moments from the GPU");
  CU(cudaStreamSynchronize(s->stream), "block moments");
cleanup:
  return st;
}

/* ---- running co-moments on the device --------------------------------------- */

typedef struct {
  int64_t d, k;
  int with_cxx;
  dbuf mem; /* cxx (d, d) when with_cxx, then cxz (d, k), then dx (d), dz (k) */
  dbuf blk; /* the same layout: the block being added, merged into mem only
               once all its rows have passed the NaN check */
  /* leace_whiten's results, for leace_factors: S, W, W+ (d, d) each, then
   * eigenvalues (d) and 2 statistics; `wk` the eigenvectors and workspace */
  dbuf wh, wk;
  int whitened;
} cuda_acc;

static void cuda_acc_free(void *state, void *acc) {
  cuda_state *s = state;
  cuda_acc *a = acc;
  if (!a) return;
  if (s) cudaSetDevice(s->device);
  dfree(&a->mem);
  dfree(&a->blk);
  dfree(&a->wh);
  dfree(&a->wk);
  free(a);
}

static culeace_status acc_create(culeace_ctx *ctx, cuda_state *s, int64_t d,
                                 int64_t k, int with_cxx, cuda_acc **out) {
  cuda_acc *a = calloc(1, sizeof *a);
  if (!a)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory allocating running moments");
  a->d = d;
  a->k = k;
  a->with_cxx = with_cxx;
  size_t count = (with_cxx ? (size_t)d * (size_t)d : 0) +
                 ((size_t)d + 1) * (size_t)k + (size_t)d + (size_t)k, bytes;
  culeace_status st = dsize(ctx, count, 8, &bytes, "running moments");
  if (!st) st = dgrow(ctx, &a->mem, bytes, "the running co-moments");
  if (!st)
    CU(cudaMemsetAsync(a->mem.p, 0, bytes, s->stream), "cudaMemset");
cleanup:
  if (st) {
    cuda_acc_free(s, a);
    return st;
  }
  *out = a;
  return CULEACE_OK;
}

/* The parts of a sums buffer laid out as acc->mem (or acc->blk). */
static double *sums_cxx(const cuda_acc *a, const dbuf *m) {
  return a->with_cxx ? m->p : NULL;
}
static double *sums_cxz(const cuda_acc *a, const dbuf *m) {
  return (double *)m->p + (a->with_cxx ? (size_t)a->d * (size_t)a->d : 0);
}
static double *acc_cxx(cuda_acc *a) { return sums_cxx(a, &a->mem); }
static double *acc_cxz(cuda_acc *a) { return sums_cxz(a, &a->mem); }
static size_t sums_count(const cuda_acc *a) {
  return (a->with_cxx ? (size_t)a->d * (size_t)a->d : 0) +
         ((size_t)a->d + 1) * (size_t)a->k + (size_t)a->d;
}

/* Chan's correction for two sets of rows whose means differ by dx (d), dz
 * (k) (host): C += w dx dx^T, Cxz += w dx dz^T on the sums in m. */
static culeace_status chan_merge(culeace_ctx *ctx, cuda_state *s,
                                 cuda_acc *a, dbuf *m, double w,
                                 const double *delta) {
  culeace_status st = CULEACE_OK;
  const int64_t d = a->d, k = a->k;
  double *ddx = sums_cxz(a, m) + (size_t)d * (size_t)k, *ddz = ddx + d;
  CU(cudaMemcpyAsync(ddx, delta, ((size_t)d + (size_t)k) * 8,
                     cudaMemcpyHostToDevice, s->stream),
     "copying mean shifts to the GPU");
  if (a->with_cxx)
    CUBLAS(cublasDsyr(s->blas, CUBLAS_FILL_MODE_LOWER, (int)d, &w, ddx, 1,
                      sums_cxx(a, m), (int)d),
           "cublasDsyr (moment merge)");
  if (k > 0)
    CUBLAS(cublasDger(s->blas, (int)k, (int)d, &w, ddz, 1, ddx, 1,
                      sums_cxz(a, m), (int)k),
           "cublasDger (moment merge)");
cleanup:
  return st;
}

/* y (m) += x (m) on the device, in pieces cuBLAS's int sizes take. */
static culeace_status daxpy_long(culeace_ctx *ctx, cuda_state *s,
                                 const double *x, double *y, size_t m) {
  culeace_status st = CULEACE_OK;
  const double one = 1;
  for (size_t i = 0; i < m; i += (size_t)1 << 30) {
    size_t c = m - i < ((size_t)1 << 30) ? m - i : ((size_t)1 << 30);
    CUBLAS(cublasDaxpy(s->blas, (int)c, &one, x + i, 1, y + i, 1),
           "cublasDaxpy (moment merge)");
  }
cleanup:
  return st;
}

/* Rows per chunk of acc_update's pipeline: large enough for efficient
 * GEMMs, small enough that a block of 64k rows has four chunks to overlap. */
enum { CHUNK_ROWS = 16384 };

/* Copies rows [i0, i0 + m) of x into pipeline slot `slot` on the copy
 * stream, after the compute stream has finished with that slot. */
static culeace_status copy_chunk(culeace_ctx *ctx, cuda_state *s, int slot,
                                 const void *x, culeace_dtype xtype,
                                 int64_t i0, int64_t m, int64_t d,
                                 int64_t ldx) {
  culeace_status st = CULEACE_OK;
  size_t es = culeace_dtype_size(xtype);
  CU(cudaStreamWaitEvent(s->copy_stream, s->consumed[slot], 0),
     "cudaStreamWaitEvent");
  CU(cudaMemcpy2DAsync(s->slot[slot].p, (size_t)d * es,
                       (const char *)x + (size_t)i0 * (size_t)ldx * es,
                       (size_t)ldx * es, (size_t)d * es, (size_t)m,
                       cudaMemcpyHostToDevice, s->copy_stream),
     "copying rows to the GPU");
  CU(cudaEventRecord(s->copied[slot], s->copy_stream), "cudaEventRecord");
cleanup:
  return st;
}

/* The block goes up in chunks: chunk c + 1 is copied (copy stream) while
 * chunk c is reduced (the state's stream). Chunks are merged (Chan) into
 * the block's own sums acc->blk, which join the running sums only after
 * every chunk passed the NaN check: a refused block leaves them as they
 * were. */
static culeace_status cuda_acc_update(
    culeace_ctx *ctx, void **accp, const void *x, culeace_dtype xtype,
    int64_t n, int64_t d, int64_t ldx, const double *z, int64_t k, int64_t ldz,
    culeace_precision precision, int with_cxx, int64_t n_prev,
    const double *prev_mean_x, const double *prev_mean_z, double *mean_x,
    double *mean_z) {
  cuda_state *s = state_of(ctx);
  const int f64 = precision == CULEACE_PRECISION_F64;
  const size_t es = culeace_dtype_size(xtype);
  double *host = NULL;
  culeace_status st = use_device(ctx, s);
  if (st) return st;
  if (!*accp) {
    cuda_acc *created = NULL;
    st = acc_create(ctx, s, d, k, with_cxx, &created);
    if (st) return st;
    *accp = created;
  }
  cuda_acc *a = *accp;
  a->whitened = 0;
  const int64_t chunk = n < 2 * CHUNK_ROWS ? n : CHUNK_ROWS;
  size_t slot_b, sums_b;
  CULEACE_TRY(dsize(ctx, (size_t)chunk * (size_t)d, es, &slot_b, "row chunk"));
  CULEACE_TRY(dsize(ctx, sums_count(a), 8, &sums_b, "block moments"));
  CULEACE_TRY(moments_buffers(ctx, s, xtype, chunk, d, k, f64, with_cxx, 0));
  CULEACE_TRY(dgrow(ctx, &s->slot[0], slot_b, "a row chunk"));
  CULEACE_TRY(dgrow(ctx, &s->slot[1], slot_b, "a row chunk"));
  CULEACE_TRY(dgrow(ctx, &a->blk, sums_b, "the block's co-moments"));
  /* host: chunk means cm (d + k), block means bm (d + k), delta (d + k) */
  const size_t dk = (size_t)d + (size_t)k;
  host = malloc(3 * dk * 8);
  if (!host) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory for the block means");
    goto cleanup;
  }
  double *cm = host, *bm = cm + dk, *delta = bm + dk;
  CU(cudaMemsetAsync(a->blk.p, 0, sums_b, s->stream), "cudaMemset");
  CULEACE_TRY(copy_chunk(ctx, s, 0, x, xtype, 0, chunk, d, ldx));
  int64_t nb = 0; /* rows of this block reduced so far */
  for (int64_t i0 = 0, c = 0; i0 < n; i0 += chunk, c++) {
    const int slot = (int)(c % 2);
    const int64_t m = n - i0 < chunk ? n - i0 : chunk;
    CU(cudaStreamWaitEvent(s->stream, s->copied[slot], 0),
       "cudaStreamWaitEvent");
    CULEACE_TRY(prologue_on_device(ctx, s, s->slot[slot].p, x, i0, xtype, m, d,
                                   ldx, k > 0 ? z + (size_t)i0 * (size_t)ldz
                                              : NULL,
                                   k, ldz, f64, cm, cm + d));
    CULEACE_TRY(block_products(ctx, s, precision, xtype, m, d, k,
                               s->slot[slot].p, sums_cxx(a, &a->blk),
                               sums_cxz(a, &a->blk), 1));
    if (nb > 0) {
      for (size_t j = 0; j < dk; j++) delta[j] = cm[j] - bm[j];
      CULEACE_TRY(chan_merge(ctx, s, a, &a->blk,
                             (double)nb * (double)m / ((double)nb + (double)m),
                             delta));
      for (size_t j = 0; j < dk; j++)
        bm[j] += delta[j] * ((double)m / ((double)nb + (double)m));
    } else {
      memcpy(bm, cm, dk * 8);
    }
    nb += m;
    CU(cudaEventRecord(s->consumed[slot], s->stream), "cudaEventRecord");
    if (i0 + m < n) {
      int64_t next = n - (i0 + m) < chunk ? n - (i0 + m) : chunk;
      CULEACE_TRY(copy_chunk(ctx, s, 1 - slot, x, xtype, i0 + m, next, d, ldx));
    }
  }
  /* Every row passed: the block joins the running sums. */
  if (with_cxx)
    CULEACE_TRY(daxpy_long(ctx, s, sums_cxx(a, &a->blk), acc_cxx(a),
                           (size_t)d * (size_t)d));
  if (k > 0)
    CULEACE_TRY(daxpy_long(ctx, s, sums_cxz(a, &a->blk), acc_cxz(a),
                           (size_t)d * (size_t)k));
  if (n_prev > 0) {
    for (int64_t j = 0; j < d; j++) delta[j] = bm[j] - prev_mean_x[j];
    for (int64_t c = 0; c < k; c++) delta[d + c] = bm[d + c] - prev_mean_z[c];
    CULEACE_TRY(chan_merge(
        ctx, s, a, &a->mem,
        (double)n_prev * (double)n / ((double)n_prev + (double)n), delta));
  }
  memcpy(mean_x, bm, (size_t)d * 8);
  if (k > 0) memcpy(mean_z, bm + d, (size_t)k * 8);
  /* No wait for the merge: every copy of the caller's rows has completed
   * (each chunk's column sums came back after it), the shift uploads were
   * staged from pageable memory when they returned, and the next call's
   * first copy may overlap this block's last products. */
cleanup:
  if (st) { /* nothing left in flight that reads the caller's rows */
    cudaStreamSynchronize(s->copy_stream);
    cudaStreamSynchronize(s->stream);
    (void)cudaGetLastError();
  }
  free(host);
  return st;
}

static culeace_status cuda_acc_read(culeace_ctx *ctx, void *acc, double *cxx,
                                    double *cxz) {
  cuda_state *s = state_of(ctx);
  cuda_acc *a = acc;
  culeace_status st = use_device(ctx, s);
  if (st) return st;
  if (cxx && a->with_cxx)
    CU(cudaMemcpyAsync(cxx, acc_cxx(a), (size_t)a->d * (size_t)a->d * 8,
                       cudaMemcpyDeviceToHost, s->stream),
       "copying running co-moments from the GPU");
  if (cxz && a->k > 0)
    CU(cudaMemcpyAsync(cxz, acc_cxz(a), (size_t)a->d * (size_t)a->k * 8,
                       cudaMemcpyDeviceToHost, s->stream),
       "copying running cross moments from the GPU");
  CU(cudaStreamSynchronize(s->stream), "reading running moments");
cleanup:
  return st;
}

/* ---- LEACE whitening on the device ------------------------------------------- */

/* cusolverDnXsyevd on a (d, d) in place (eigenvectors in its columns), w (d)
 * eigenvalues ascending, workspace in *work; info checked. */
static culeace_status syevd_device(culeace_ctx *ctx, cuda_state *s, double *a,
                                   double *w, int64_t d, dbuf *work) {
  culeace_status st = CULEACE_OK;
  size_t dev_bytes = 0, host_bytes = 0;
  int info = 0;
  if (!s->solver) { /* on first use: probes and applies never need it */
    cusolverDnHandle_t h = NULL;
    CUSOLVER(cusolverDnCreate(&h), "cusolverDnCreate");
    cusolverStatus_t e = cusolverDnSetStream(h, s->stream);
    if (e != CUSOLVER_STATUS_SUCCESS) {
      cusolverDnDestroy(h);
      CUSOLVER(e, "cusolverDnSetStream");
    }
    s->solver = h;
  }
  if (!s->params)
    CUSOLVER(cusolverDnCreateParams(&s->params), "cusolverDnCreateParams");
  CUSOLVER(cusolverDnXsyevd_bufferSize(
               s->solver, s->params, CUSOLVER_EIG_MODE_VECTOR,
               CUBLAS_FILL_MODE_UPPER, d, CUDA_R_64F, a, d, CUDA_R_64F, w,
               CUDA_R_64F, &dev_bytes, &host_bytes),
           "cusolverDnXsyevd_bufferSize");
  CULEACE_TRY(dgrow(ctx, work, dev_bytes, "the eigh workspace"));
  CULEACE_TRY(dgrow(ctx, &s->info, sizeof(int), "eigh info"));
  CULEACE_TRY(grow_host(ctx, s, host_bytes));
  CUSOLVER(cusolverDnXsyevd(s->solver, s->params, CUSOLVER_EIG_MODE_VECTOR,
                            CUBLAS_FILL_MODE_UPPER, d, CUDA_R_64F, a, d,
                            CUDA_R_64F, w, CUDA_R_64F, work->p, dev_bytes,
                            s->host_work, host_bytes, s->info.p),
           "cusolverDnXsyevd");
  CU(cudaMemcpyAsync(&info, s->info.p, sizeof info, cudaMemcpyDeviceToHost,
                     s->stream),
     "copying eigh info from the GPU");
  CU(cudaStreamSynchronize(s->stream), "eigh");
  if (info != 0)
    return culeace__error(ctx, CULEACE_ERR_CUSOLVER,
                          "cusolverDnXsyevd did not converge on a %lldx%lld "
                          "matrix (info = %d)", (long long)d, (long long)d,
                          info);
cleanup:
  return st;
}

static culeace_status cuda_leace_whiten(culeace_ctx *ctx, void *acc, double n,
                                        double n_div, int shrink,
                                        double m_scale, double *M,
                                        double *tr_s) {
  cuda_state *s = state_of(ctx);
  cuda_acc *a = acc;
  const int64_t d = a->d, k = a->k;
  const size_t dd = (size_t)d * (size_t)d;
  culeace_status st = use_device(ctx, s);
  if (st) return st;
  if (!a->with_cxx)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "whitening needs the running covariance");
  a->whitened = 0;
  size_t bytes;
  CULEACE_TRY(dsize(ctx, 3 * dd + (size_t)d + 2, 8, &bytes, "the whitening"));
  CULEACE_TRY(dgrow(ctx, &a->wh, bytes, "the whitening matrices"));
  /* V (d, d) and T, scratch for (d, d) products and for M (k, d), which is
   * larger when the concept has more dimensions than the rows */
  const size_t dk = (size_t)d * (size_t)k;
  CULEACE_TRY(dsize(ctx, dd + (dk > dd ? dk : dd), 8, &bytes,
                    "the eigenvectors"));
  CULEACE_TRY(dgrow(ctx, &a->wk, bytes, "the eigenvectors"));
  double *S = a->wh.p, *W = S + dd, *Wp = W + dd, *w = Wp + dd, *stats = w + d;
  double *V = a->wk.p, *T = V + dd;
  double host_stats[2] = {0, 0};
  const double one = 1, zero = 0;
  /* S = C / n_div, with tr(S) and ||S||_F^2 for the shrinkage. */
  CU(cudaMemsetAsync(stats, 0, 2 * 8, s->stream), "cudaMemset");
  KERNEL(culeace_k_symmetrise(acc_cxx(a), S, d, 1.0 / n_div, stats, s->stream),
         "symmetrising kernel");
  CU(cudaMemcpyAsync(host_stats, stats, 2 * 8, cudaMemcpyDeviceToHost,
                     s->stream),
     "copying the covariance's trace from the GPU");
  CU(cudaStreamSynchronize(s->stream), "covariance");
  double tr = host_stats[0];
  if (shrink) {
    double alpha, diag_add;
    culeace__shrinkage_coefs(host_stats[0], host_stats[1], d, n, &alpha,
                             &diag_add);
    KERNEL(culeace_k_shrink(S, d, alpha, diag_add, s->stream),
           "shrinkage kernel");
    tr = alpha * tr + diag_add * (double)d;
  }
  *tr_s = tr;
  /* S = V diag(w) V^T (V's columns); W = (V diag(g)) V^T, W+ likewise. */
  CU(cudaMemcpyAsync(V, S, dd * 8, cudaMemcpyDeviceToDevice, s->stream),
     "copying the covariance on the GPU");
  CULEACE_TRY(syevd_device(ctx, s, V, w, d, &s->work));
  for (int pass = 0; pass < 2; pass++) {
    KERNEL(culeace_k_scale_eigvecs(V, w, d, pass == 0, T, s->stream),
           "eigenvector scaling kernel");
    CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)d, (int)d,
                       (int)d, &one, T, (int)d, V, (int)d, &zero,
                       pass == 0 ? W : Wp, (int)d),
           "cublasDgemm (whitening)");
  }
  /* M (d, k) row-major = m_scale W Cxz: column-major M^T = Cxz^T W. */
  if (k > 0) {
    CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)k, (int)d,
                       (int)d, &m_scale, acc_cxz(a), (int)k, W, (int)d, &zero,
                       T, (int)k),
           "cublasDgemm (W Sigma_xz)");
    CU(cudaMemcpyAsync(M, T, (size_t)d * (size_t)k * 8,
                       cudaMemcpyDeviceToHost, s->stream),
       "copying W Sigma_xz from the GPU");
  }
  CU(cudaStreamSynchronize(s->stream), "whitening");
  a->whitened = 1;
cleanup:
  return st;
}

static culeace_status cuda_leace_factors(culeace_ctx *ctx, void *acc,
                                         const double *U, int64_t ldu,
                                         int64_t r, double *L, double *R,
                                         double *RS, double *SU) {
  cuda_state *s = state_of(ctx);
  cuda_acc *a = acc;
  const int64_t d = a->d;
  const size_t dd = (size_t)d * (size_t)d;
  culeace_status st = use_device(ctx, s);
  if (st) return st;
  if (!a->whitened || r < 1 || ldu < r)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "leace_factors without a whitening (or r = %lld)",
                          (long long)r);
  double *S = a->wh.p, *W = S + dd, *Wp = W + dd;
  size_t dr = (size_t)d * (size_t)r, du = (size_t)d * (size_t)ldu;
  CULEACE_TRY(dgrow(ctx, &a->wk, (du + 4 * dr) * 8, "the eraser's factors"));
  double *Ud = a->wk.p, *Ld = Ud + du, *Rd = Ld + dr, *RSd = Rd + dr,
         *SUd = RSd + dr;
  const double one = 1, zero = 0;
  CU(cudaMemcpyAsync(Ud, U, du * 8, cudaMemcpyHostToDevice, s->stream),
     "copying singular vectors to the GPU");
  /* Column-major views: Ud is U^T (ldu, d); its first r rows are U_r^T. */
  /* L^T (r, d) = U_r^T W+ */
  CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)r, (int)d, (int)d,
                     &one, Ud, (int)ldu, Wp, (int)d, &zero, Ld, (int)r),
         "cublasDgemm (L)");
  /* R^T (d, r) = W U_r */
  CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)d, (int)r, (int)d,
                     &one, W, (int)d, Ud, (int)ldu, &zero, Rd, (int)d),
         "cublasDgemm (R)");
  CU(cudaMemcpyAsync(L, Ld, dr * 8, cudaMemcpyDeviceToHost, s->stream),
     "copying L from the GPU");
  CU(cudaMemcpyAsync(R, Rd, dr * 8, cudaMemcpyDeviceToHost, s->stream),
     "copying R from the GPU");
  if (RS) { /* (R S)^T (d, r) = S R^T */
    CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)d, (int)r,
                       (int)d, &one, S, (int)d, Rd, (int)d, &zero, RSd, (int)d),
           "cublasDgemm (R S)");
    CU(cudaMemcpyAsync(RS, RSd, dr * 8, cudaMemcpyDeviceToHost, s->stream),
       "copying R S from the GPU");
  }
  if (SU) { /* (S U_r)^T (r, d) = U_r^T S */
    CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)r, (int)d,
                       (int)d, &one, Ud, (int)ldu, S, (int)d, &zero, SUd,
                       (int)r),
           "cublasDgemm (S U)");
    CU(cudaMemcpyAsync(SU, SUd, dr * 8, cudaMemcpyDeviceToHost, s->stream),
       "copying S U from the GPU");
  }
  CU(cudaStreamSynchronize(s->stream), "the eraser's factors");
cleanup:
  return st;
}

/* ---- eigh and gemm ------------------------------------------------------------- */

static culeace_status cuda_eigh(culeace_ctx *ctx, double *a, double *w,
                                int64_t d) {
  cuda_state *s = state_of(ctx);
  size_t dd;
  culeace_status st = use_device(ctx, s);
  if (!st) st = dsize(ctx, (size_t)d * (size_t)d + (size_t)d, 8, &dd, "eigh");
  if (!st) st = dgrow(ctx, &s->mat, dd, "the eigh matrix");
  if (st) return st;
  double *A = s->mat.p, *W = A + (size_t)d * (size_t)d;
  /* Column-major call on a symmetric matrix (as the CPU backend): the
   * eigenvector columns, read row-major, are the rows of V^T. */
  CU(cudaMemcpyAsync(A, a, (size_t)d * (size_t)d * 8, cudaMemcpyHostToDevice,
                     s->stream),
     "copying the eigh matrix to the GPU");
  CULEACE_TRY(syevd_device(ctx, s, A, W, d, &s->work));
  CU(cudaMemcpyAsync(a, A, (size_t)d * (size_t)d * 8, cudaMemcpyDeviceToHost,
                     s->stream),
     "copying eigenvectors from the GPU");
  CU(cudaMemcpyAsync(w, W, (size_t)d * 8, cudaMemcpyDeviceToHost, s->stream),
     "copying eigenvalues from the GPU");
  CU(cudaStreamSynchronize(s->stream), "eigh");
cleanup:
  return st;
}

/* Elements spanned by a row-major (rows, cols) operand with stride ld. */
static size_t span(int64_t rows, int64_t cols, int64_t ld) {
  return rows > 0 && cols > 0 ? (size_t)(rows - 1) * (size_t)ld + (size_t)cols
                              : 0;
}

static culeace_status cuda_gemm(culeace_ctx *ctx, int trans_a, int trans_b,
                                int64_t m, int64_t n, int64_t k, double alpha,
                                const double *a, int64_t lda, const double *b,
                                int64_t ldb, double beta, double *c,
                                int64_t ldc) {
  cuda_state *s = state_of(ctx);
  if (m == 0 || n == 0) return CULEACE_OK;
  int64_t ar = trans_a ? k : m, ac = trans_a ? m : k;
  int64_t br = trans_b ? n : k, bc = trans_b ? k : n;
  size_t sa = span(ar, ac, lda), sb = span(br, bc, ldb), sc = span(m, n, ldc);
  culeace_status st = use_device(ctx, s);
  if (!st) st = dgrow(ctx, &s->mat, (sa + sb + sc) * 8, "gemm operands");
  if (st) return st;
  double *A = s->mat.p, *B = A + sa, *C = B + sb;
  if (sa)
    CU(cudaMemcpy2DAsync(A, (size_t)lda * 8, a, (size_t)lda * 8,
                         (size_t)ac * 8, (size_t)ar, cudaMemcpyHostToDevice,
                         s->stream),
       "copying a gemm operand to the GPU");
  if (sb)
    CU(cudaMemcpy2DAsync(B, (size_t)ldb * 8, b, (size_t)ldb * 8,
                         (size_t)bc * 8, (size_t)br, cudaMemcpyHostToDevice,
                         s->stream),
       "copying a gemm operand to the GPU");
  if (beta != 0)
    CU(cudaMemcpy2DAsync(C, (size_t)ldc * 8, c, (size_t)ldc * 8,
                         (size_t)n * 8, (size_t)m, cudaMemcpyHostToDevice,
                         s->stream),
       "copying a gemm operand to the GPU");
  /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. */
  CUBLAS(cublasDgemm(s->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                     trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m,
                     (int)k, &alpha, B, (int)(ldb > 0 ? ldb : 1), A,
                     (int)(lda > 0 ? lda : 1), &beta, C, (int)ldc),
         "cublasDgemm");
  CU(cudaMemcpy2DAsync(c, (size_t)ldc * 8, C, (size_t)ldc * 8, (size_t)n * 8,
                       (size_t)m, cudaMemcpyDeviceToHost, s->stream),
     "copying a gemm result from the GPU");
  CU(cudaStreamSynchronize(s->stream), "gemm");
cleanup:
  return st;
}

/* ---- apply ----------------------------------------------------------------------- */

/* The factors on the device in the precision rows of xtype use, uploaded on
 * first use (Lt = L^T so the kernel's reads are coalesced) and cached by the
 * eraser's serial. */
static culeace_status device_factors(culeace_ctx *ctx, cuda_state *s,
                                     const culeace_apply_factors *f,
                                     culeace_dtype xtype, factor_slot **out) {
  int f64 = xtype == CULEACE_F64;
  factor_slot *slot = NULL;
  s->tick++;
  for (int i = 0; i < FACTOR_SLOTS; i++)
    if (s->slots[i].serial == f->serial && s->slots[i].f64 == f64 &&
        s->slots[i].d == f->d && s->slots[i].r == f->r && s->slots[i].mem.p) {
      s->slots[i].used = s->tick;
      *out = &s->slots[i];
      return CULEACE_OK;
    }
  for (int i = 0; i < FACTOR_SLOTS; i++) /* empty, else least recently used */
    if (!slot || s->slots[i].used < slot->used) slot = &s->slots[i];
  slot->serial = 0;
  size_t es = f64 ? 8 : 4, dr = (size_t)f->d * (size_t)f->r;
  size_t bytes = (2 * dr + (size_t)f->d) * es;
  culeace_status st = dgrow(ctx, &slot->mem, bytes, "the eraser's factors");
  if (!st) st = grow_host(ctx, s, bytes);
  if (st) return st;
  /* Host image: Lt (r, d), R (r, d), bias (d). */
  char *img = s->host_work;
  for (int64_t c = 0; c < f->r; c++)
    for (int64_t j = 0; j < f->d; j++) {
      size_t at = (size_t)c * (size_t)f->d + (size_t)j;
      if (f64)
        ((double *)img)[at] = f->L[j * f->r + c];
      else
        ((float *)img)[at] = f->L32[j * f->r + c];
    }
  memcpy(img + dr * es, f64 ? (const void *)f->R : (const void *)f->R32,
         dr * es);
  const void *bias = f64 ? (const void *)f->bias : (const void *)f->bias32;
  if (bias) memcpy(img + 2 * dr * es, bias, (size_t)f->d * es);
  CU(cudaMemcpyAsync(slot->mem.p, img, bytes, cudaMemcpyHostToDevice,
                     s->stream),
     "copying the eraser's factors to the GPU");
  CU(cudaStreamSynchronize(s->stream), "copying the eraser's factors");
  slot->serial = f->serial;
  slot->f64 = f64;
  slot->d = f->d;
  slot->r = f->r;
  slot->used = s->tick;
  slot->Lt = slot->mem.p;
  slot->R = (const char *)slot->mem.p + dr * es;
  slot->bias = bias ? (const char *)slot->mem.p + 2 * dr * es : NULL;
  *out = slot;
cleanup:
  return st;
}

static culeace_status check_rank(culeace_ctx *ctx, culeace_dtype xtype,
                                 int64_t r) {
  if (r <= culeace_k_apply_max_rank(xtype)) return CULEACE_OK;
  return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                        "apply on the GPU takes erasers of rank <= %lld for "
                        "these rows (this one has rank %lld)",
                        (long long)culeace_k_apply_max_rank(xtype),
                        (long long)r);
}

static culeace_status cuda_apply_device(culeace_ctx *ctx, void *x_dev,
                                        culeace_dtype xtype, int64_t n,
                                        int64_t ldx,
                                        const culeace_apply_factors *f,
                                        void *stream) {
  cuda_state *s = state_of(ctx);
  if (f->r == 0 || n == 0) return CULEACE_OK;
  factor_slot *slot = NULL;
  culeace_status st = check_rank(ctx, xtype, f->r);
  if (!st) st = use_device(ctx, s);
  if (!st) st = device_factors(ctx, s, f, xtype, &slot);
  if (st) return st;
  KERNEL(culeace_k_apply(x_dev, xtype, n, f->d, ldx, f->r, slot->Lt, slot->R,
                         slot->bias, stream),
         "apply kernel");
cleanup:
  return st;
}

enum { APPLY_STAGE_BYTES = 256 << 20 }; /* device rows per round trip */

/* Rows in host memory: staged through the device in chunks. */
static culeace_status cuda_apply(culeace_ctx *ctx, void *x, culeace_dtype xtype,
                                 int64_t n, int64_t ldx,
                                 const culeace_apply_factors *f) {
  cuda_state *s = state_of(ctx);
  if (f->r == 0 || n == 0) return CULEACE_OK;
  size_t es = culeace_dtype_size(xtype), row = (size_t)f->d * es;
  int64_t chunk = (int64_t)(APPLY_STAGE_BYTES / row);
  if (chunk < 1) chunk = 1;
  if (chunk > n) chunk = n;
  factor_slot *slot = NULL;
  culeace_status st = check_rank(ctx, xtype, f->r);
  if (!st) st = use_device(ctx, s);
  if (!st) st = device_factors(ctx, s, f, xtype, &slot);
  if (!st) st = dgrow(ctx, &s->raw, (size_t)chunk * row, "the apply block");
  if (st) return st;
  for (int64_t i0 = 0; i0 < n; i0 += chunk) {
    int64_t m = n - i0 < chunk ? n - i0 : chunk;
    char *rows = (char *)x + (size_t)i0 * (size_t)ldx * es;
    CU(cudaMemcpy2DAsync(s->raw.p, row, rows, (size_t)ldx * es, row, (size_t)m,
                         cudaMemcpyHostToDevice, s->stream),
       "copying rows to the GPU");
    KERNEL(culeace_k_apply(s->raw.p, xtype, m, f->d, f->d, f->r, slot->Lt,
                           slot->R, slot->bias, s->stream),
           "apply kernel");
    CU(cudaMemcpy2DAsync(rows, (size_t)ldx * es, s->raw.p, row, row,
                         (size_t)m, cudaMemcpyDeviceToHost, s->stream),
       "copying rows from the GPU");
  }
  CU(cudaStreamSynchronize(s->stream), "apply");
cleanup:
  return st;
}

/* ---- page-locked host memory ------------------------------------------------------ */

static void *cuda_host_alloc(culeace_ctx *ctx, size_t bytes) {
  void *p = NULL;
  culeace_status st = use_device(ctx, state_of(ctx));
  if (st) return NULL;
  cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    cuda_fail(ctx, e, "allocating page-locked host memory");
    return NULL;
  }
  return p;
}

static void cuda_host_free(void *state, void *p) {
  (void)state;
  cudaFreeHost(p);
}

const culeace_backend culeace__backend_cuda = {
    .name = "cuda",
    .init = cuda_init,
    .destroy = cuda_destroy,
    .block_moments = cuda_block_moments,
    .eigh = cuda_eigh,
    .gemm = cuda_gemm,
    .apply = cuda_apply,
    .apply_device = cuda_apply_device,
    .acc_update = cuda_acc_update,
    .acc_read = cuda_acc_read,
    .acc_free = cuda_acc_free,
    .leace_whiten = cuda_leace_whiten,
    .leace_factors = cuda_leace_factors,
    .probe_open = cuda_probe_open,
    .probe_eval = cuda_probe_eval,
    .probe_close = cuda_probe_close,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
};

/* Looked up by the loader (src/core/cuda_module.c) next to the table. */
int culeace__cuda_device_count(void);
int culeace__cuda_device_count(void) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError(); /* no GPU: clear the sticky error */
    return 0;
  }
  return count;
}
