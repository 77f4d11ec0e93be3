/* cuda_state.h — what the CUDA backend's files (cuda.c, cuda_probe.c)
 * share: the per-context state, growable device buffers, the error
 * translation of CUDA/cuBLAS/cuSOLVER codes into statuses, and the checking
 * macros. Only the CUDA module includes it. */
#ifndef CULEACE_CUDA_STATE_H
#define CULEACE_CUDA_STATE_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include "core/ctx.h"

typedef struct {
  void *p;
  size_t cap;
} dbuf;

/* An eraser's factors on the device: Lt (r, d), R (r, d), bias (d), in
 * float64 (f64 = 1) or float32. */
typedef struct {
  uint64_t serial;
  int f64;
  int64_t d, r;
  dbuf mem;
  const void *Lt, *R, *bias;
  uint64_t used; /* tick of last use, for eviction */
} factor_slot;

enum { FACTOR_SLOTS = 64 };

typedef struct {
  int device;
  cudaStream_t stream;
  cublasHandle_t blas;
  cusolverDnHandle_t solver;
  cusolverDnParams_t params;
  dbuf raw;   /* a block of rows as read (n, d) */
  dbuf xc;    /* centred rows, float64 or float32 */
  dbuf z;     /* centred labels (n, k) */
  dbuf prod;  /* cxx/cxz products (float32 before widening) */
  dbuf prod64;
  dbuf sums;  /* column sums (d) */
  dbuf work;  /* cuSOLVER workspace */
  dbuf mat;   /* gemm/eigh operands */
  dbuf info;
  /* The running-moment pipeline (acc_update): chunk i + 1 is copied on
   * copy_stream into slot[(i + 1) % 2] while chunk i is computed. */
  cudaStream_t copy_stream;
  dbuf slot[2];
  cudaEvent_t copied[2], consumed[2];
  void *host_work; /* host scratch: centred z, float32 z, cuSOLVER host work */
  size_t host_work_cap;
  factor_slot slots[FACTOR_SLOTS];
  uint64_t tick;
} cuda_state;

static inline cuda_state *state_of(culeace_ctx *ctx) {
  return ctx->backend_state;
}

/* A failed call's code as a status and message (out-of-memory as
 * CULEACE_ERR_OUT_OF_MEMORY); what names the step. */
culeace_status cuda_fail(culeace_ctx *ctx, cudaError_t e, const char *what);
culeace_status cublas_fail(culeace_ctx *ctx, cublasStatus_t e,
                           const char *what);
culeace_status cusolver_fail(culeace_ctx *ctx, cusolverStatus_t e,
                             const char *what);

/* Grows device buffer b to bytes (contents not kept). On failure b is empty
 * and the state stays usable. */
culeace_status dgrow(culeace_ctx *ctx, dbuf *b, size_t bytes, const char *what);
void dfree(dbuf *b);
/* count * size bytes, or an out-of-memory error when that overflows. */
culeace_status dsize(culeace_ctx *ctx, size_t count, size_t size,
                     size_t *bytes, const char *what);
/* Makes the state's device current for the calling thread. */
culeace_status use_device(culeace_ctx *ctx, cuda_state *s);

/* The logistic probes' pass (cuda_probe.c; backend.h: probe_*). */
struct culeace__probe_rows;
struct culeace__probe_problem;
culeace_status cuda_probe_open(culeace_ctx *ctx,
                               const struct culeace__probe_rows *rows,
                               int64_t m, int64_t P,
                               const struct culeace__probe_problem *prs,
                               int f64, void **out);
struct culeace__probe_eval_job;
culeace_status cuda_probe_eval(culeace_ctx *ctx, int64_t count,
                               const struct culeace__probe_eval_job *jobs);
void cuda_probe_close(void *state, void *pass);

/* Each jumps to the function's cleanup label with st set. */
#define CU(call, what)                                                         \
  do {                                                                         \
    cudaError_t cu_e_ = (call);                                                \
    if (cu_e_ != cudaSuccess) {                                                \
      st = cuda_fail(ctx, cu_e_, what);                                        \
      goto cleanup;                                                            \
    }                                                                          \
  } while (0)
#define CUBLAS(call, what)                                                     \
  do {                                                                         \
    cublasStatus_t cb_e_ = (call);                                             \
    if (cb_e_ != CUBLAS_STATUS_SUCCESS) {                                      \
      st = cublas_fail(ctx, cb_e_, what);                                      \
      goto cleanup;                                                            \
    }                                                                          \
  } while (0)
#define CUSOLVER(call, what)                                                   \
  do {                                                                         \
    cusolverStatus_t cs_e_ = (call);                                           \
    if (cs_e_ != CUSOLVER_STATUS_SUCCESS) {                                    \
      st = cusolver_fail(ctx, cs_e_, what);                                    \
      goto cleanup;                                                            \
    }                                                                          \
  } while (0)
/* A kernel launcher's result (kernels.h returns cudaError_t as int). */
#define KERNEL(call, what) CU((cudaError_t)(call), what)

#endif
