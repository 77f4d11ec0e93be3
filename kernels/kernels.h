/* kernels.h — C entry points of the CUDA kernels (the .cu files beside this
 * header), called by the CUDA backend (src/backend/cuda.c). Every pointer is
 * device memory. Each function enqueues its kernel on `stream` (a
 * cudaStream_t) and returns the launch status (a cudaError_t, 0 on success)
 * without waiting. */
#ifndef CULEACE_KERNELS_H
#define CULEACE_KERNELS_H

#include <stdint.h>

#include "culeace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sums (d) += column sums of x (n, d) of xtype, row stride ldx, in float64.
 * The caller zeroes sums first. */
int culeace_k_column_sums(const void *x, culeace_dtype xtype, int64_t n,
                          int64_t d, int64_t ldx, double *sums, void *stream);

/* out (n, d), contiguous, = x - sums / n, computed in float64 and stored as
 * float64 (out_f64 = 1) or rounded once to float32 (out_f64 = 0). */
int culeace_k_centre(const void *x, culeace_dtype xtype, int64_t n, int64_t d,
                     int64_t ldx, const double *sums, int out_f64, void *out,
                     void *stream);

/* dst (m) = src (m) widened from float32 to float64, or dst += src when
 * add is non-zero. */
int culeace_k_widen(const float *src, double *dst, int64_t m, int add,
                    void *stream);

/* dst (m) of the 16-bit dtype (CULEACE_F16 or CULEACE_BF16) = src (m)
 * rounded to nearest even. */
int culeace_k_round16(const float *src, void *dst, culeace_dtype dtype,
                      int64_t m, void *stream);

/* Largest rank culeace_k_apply takes for d columns and rows of xtype. */
int64_t culeace_k_apply_max_rank(culeace_dtype xtype);

/* In-place rank-r edit x <- x - ((x - bias) R^T) L^T of rows x (n, d) with
 * stride ldx, each row read from memory once and written once. Factors are
 * float64 for CULEACE_F64 rows and float32 otherwise: Lt = L^T (r, d),
 * R (r, d), bias (d) or NULL. 16-bit rows are edited in float32 and rounded
 * to nearest even. */
int culeace_k_apply(void *x, culeace_dtype xtype, int64_t n, int64_t d,
                    int64_t ldx, int64_t r, const void *Lt, const void *R,
                    const void *bias, void *stream);

/* Logistic probes (probe.cu). xe (n, ld = d + 1), float64 when f64 else
 * float32, = [widen(src) - sf | 1] for rows src (n, d) of type t (float32,
 * float16 or bfloat16) with stride lds; sf (d) may be NULL. */
int culeace_k_probe_rows(const void *src, culeace_dtype t, int64_t n,
                         int64_t d, int64_t lds, const float *sf, int f64,
                         void *xe, int64_t ld, void *stream);

/* Residuals r (n, M) and per-row losses lrow (n, cnt) of the pending
 * problems idx (cnt, each m outputs, M = cnt m) from logits z (n, M)
 * without intercepts b (M); z and r are float64 when f64 else float32.
 * S (P, n) sample weights (0: not a training row), Y (P, n) labels. */
int culeace_k_probe_residuals(const void *z, int f64, const double *b,
                              int64_t n, int64_t M, int64_t m, int64_t cnt,
                              const int64_t *idx, const double *S,
                              const int32_t *Y, void *r, double *lrow,
                              void *stream);

#ifdef __cplusplus
}
#endif

#endif
