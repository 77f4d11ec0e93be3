/* backend.h — the backend operations table (CPU now, CUDA behind the same
 * seam). A backend is a const table of function pointers plus a state
 * pointer owned by the context; the core never calls BLAS/LAPACK/cuBLAS for
 * bulk work except through this table. */
#ifndef CULEACE_BACKEND_H
#define CULEACE_BACKEND_H

#include <stdint.h>

#include "culeace.h"

/* The eraser's factors in the precisions the backends use.
 * L: (d, r), R: (r, d), bias: (d) or NULL when not affine. */
typedef struct culeace_apply_factors {
  uint64_t serial; /* unique per eraser (device copies are cached by it) */
  int64_t d, r;
  const double *L, *R, *bias;
  const float *L32, *R32, *bias32;
} culeace_apply_factors;

struct culeace__probe_rows;    /* core/probe.h */
struct culeace__probe_problem;

/* One pass of a probe evaluation (probe_eval below; the fields are
 * culeace__probe_pass_eval's arguments): pass is what probe_open gave. */
typedef struct culeace__probe_eval_job {
  void *pass;
  int64_t cnt;
  const int64_t *idx;
  const float *W;
  const double *b;
  double *G, *rsum, *loss;
} culeace__probe_eval_job;

typedef struct culeace_backend {
  const char *name;

  culeace_status (*init)(culeace_ctx *ctx, void **state);
  void (*destroy)(void *state);

  /* Moments of one block, centred on the block's own mean.
   * x: (n, d) of xtype, stride ldx; z: (n, k) float64 stride ldz (may be
   * NULL when k == 0). Outputs (float64):
   *   mean_x (d), mean_z (k),
   *   cxx (d, d): sum_i (x_i - mean_x)(x_i - mean_x)^T, upper triangle
   *              (row-major, i <= j) filled; may be NULL to skip,
   *   cxz (d, k): sum_i (x_i - mean_x)(z_i - mean_z)^T.
   * precision F32 does the products in float32 after centring; TENSOR
   * does too, but rounds the centred values of float16/bfloat16 blocks back
   * to their type before cxx (cxz keeps the float32 values).
   * A NaN/Inf in x returns CULEACE_ERR_NONFINITE with a message naming the
   * row within the block (cxx and cxz untouched; the means may have been
   * written). */
  culeace_status (*block_moments)(culeace_ctx *ctx, const void *x,
                                  culeace_dtype xtype, int64_t n, int64_t d,
                                  int64_t ldx, const double *z, int64_t k,
                                  int64_t ldz, culeace_precision precision,
                                  double *mean_x, double *mean_z, double *cxx,
                                  double *cxz);

  /* Symmetric eigendecomposition (float64): a (d, d) symmetric in; out, row
   * j of a is eigenvector j (a = V^T, row-major); w (d) eigenvalues
   * ascending. */
  culeace_status (*eigh)(culeace_ctx *ctx, double *a, double *w, int64_t d);

  /* C (m, n) = alpha * op(A) op(B) + beta * C, float64 row-major. */
  culeace_status (*gemm)(culeace_ctx *ctx, int trans_a, int trans_b,
                         int64_t m, int64_t n, int64_t k, double alpha,
                         const double *a, int64_t lda, const double *b,
                         int64_t ldb, double beta, double *c, int64_t ldc);

  /* In-place rank-r edit of rows: x <- x - ((x - bias) R^T) L^T.
   * x: (n, d) of xtype, stride ldx; factors as described below. */
  culeace_status (*apply)(culeace_ctx *ctx, void *x, culeace_dtype xtype,
                          int64_t n, int64_t ldx,
                          const struct culeace_apply_factors *f);

  /* The same edit on rows in device memory, enqueued on a caller's stream
   * (a cudaStream_t) without waiting. NULL for backends without a device. */
  culeace_status (*apply_device)(culeace_ctx *ctx, void *x_dev,
                                 culeace_dtype xtype, int64_t n, int64_t ldx,
                                 const struct culeace_apply_factors *f,
                                 void *stream);

  /* Running co-moments kept on the device (optional; NULL where the fitter
   * merges block moments on the host). acc_update does block_moments'
   * work but, instead of returning the block's co-moments, adds them to the
   * running sums in *acc (created on first use; cxx only when with_cxx):
   *   C += C_b + w dx dx^T,   Cxz += Cxz_b + w dx dz^T,
   * dx = mean_x - prev_mean_x, dz = mean_z - prev_mean_z,
   * w = n_prev n / (n_prev + n); the block's means still come back in
   * mean_x (d) and mean_z (k) for the caller's running means. acc_read
   * copies the sums out (cxx: (d, d) upper triangle, may be NULL; cxz:
   * (d, k)); acc_free releases them. */
  culeace_status (*acc_update)(culeace_ctx *ctx, void **acc, const void *x,
                               culeace_dtype xtype, int64_t n, int64_t d,
                               int64_t ldx, const double *z, int64_t k,
                               int64_t ldz, culeace_precision precision,
                               int with_cxx, int64_t n_prev,
                               const double *prev_mean_x,
                               const double *prev_mean_z, double *mean_x,
                               double *mean_z);
  culeace_status (*acc_read)(culeace_ctx *ctx, void *acc, double *cxx,
                             double *cxz);
  void (*acc_free)(void *state, void *acc);

  /* LEACE's whitening built on the device from the running co-moments in
   * acc (optional: NULL where the core builds it on the host with eigh and
   * gemm; acc must hold cxx). With C the acc's co-moment (d, d) and Cxz its
   * cross moment (d, zd):
   *   S = C / n_div, then optimal linear shrinkage for sample size n when
   *   shrink; S = V diag(w) V^T; cut = w_max d DBL_EPSILON;
   *   W = V diag(w > cut ? w^-1/2 : 0) V^T, W+ the same with w^1/2;
   *   M (d, zd) = m_scale W Cxz, copied to the host; *tr_s = tr(S).
   * The same float64 arithmetic as the host path. S, W and W+ stay with
   * acc (freed with it) for leace_factors. */
  culeace_status (*leace_whiten)(culeace_ctx *ctx, void *acc, double n,
                                 double n_div, int shrink, double m_scale,
                                 double *M, double *tr_s);
  /* After leace_whiten, to the host: L (d, r) = W+ U_r, R (r, d) = U_r^T W,
   * RS (r, d) = R S and SU (d, r) = S U_r, with U_r the first r columns of
   * U (d, ldu) row-major (host memory); r >= 1. */
  culeace_status (*leace_factors)(culeace_ctx *ctx, void *acc, const double *U,
                                  int64_t ldu, int64_t r, double *L, double *R,
                                  double *RS, double *SU);

  /* The logistic probes' pass over rows kept on the device (optional; NULL:
   * the CPU pass of core/probe_pass.c, which is the reference).
   * probe_open copies the centred rows and each problem's per-row weights
   * and labels to the device (an out-of-memory status lets the caller fall
   * back to the CPU); probe_eval does culeace__probe_pass_eval's work
   * (core/probe.h: same arguments, same outputs) for count passes, each
   * over its own rows (the layers of a batched fit), queued one after
   * another with a single wait for all of them; probe_close frees. */
  culeace_status (*probe_open)(culeace_ctx *ctx,
                               const struct culeace__probe_rows *rows,
                               int64_t m, int64_t P,
                               const struct culeace__probe_problem *prs,
                               int f64, void **pass);
  culeace_status (*probe_eval)(culeace_ctx *ctx, int64_t count,
                               const struct culeace__probe_eval_job *jobs);
  void (*probe_close)(void *state, void *pass);

  /* Host buffers the backend copies from fastest (page-locked for CUDA).
   * host_alloc returns NULL with the context's message set on failure. */
  void *(*host_alloc)(culeace_ctx *ctx, size_t bytes);
  void (*host_free)(void *state, void *p);
} culeace_backend;

/* Helpers every backend shares (backend/common.c). */

/* zc (n, k) = z - mean_z with mean_z (k) the column means of z (n, k),
 * stride ldz. */
void culeace__centre_z(const double *z, int64_t n, int64_t k, int64_t ldz,
                       double *zc, double *mean_z);

/* Called when a block's column means mean_x (d) may hold a NaN/Inf: returns
 * 0 when all are finite; otherwise sets the message naming the first row and
 * column of x (host memory) with a non-finite value (or saying the sum
 * overflowed) and returns 1. */
int culeace__block_nonfinite(culeace_ctx *ctx, const void *x,
                             culeace_dtype xtype, int64_t n, int64_t d,
                             int64_t ldx, const double *mean_x);

extern const culeace_backend culeace__backend_cpu;
#ifdef CULEACE_HAVE_CUDA
extern const culeace_backend culeace__backend_cuda;
#endif

#endif
