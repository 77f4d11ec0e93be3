/* iterative.h — internal pieces shared by the iterative erasers (INLP in
 * inlp.c, R-LACE in rlace.c): argument checks, the centred float32 copy of
 * the rows, the eraser built from orthonormal directions (iterative.c), and
 * the Fantope projection (rlace.c). */
#ifndef CULEACE_CORE_ITERATIVE_H
#define CULEACE_CORE_ITERATIVE_H

#include <stdint.h>

#include "core/ctx.h"

/* Checks x (n, d) stride ldx, labels (n) in 0..k-1, train (n) with at least
 * two training rows, one held-out row and every class among the training
 * rows. who: "INLP" / "R-LACE" for messages. */
culeace_status culeace__iter_check(culeace_ctx *ctx, const char *who,
                                   const float *x, int64_t n, int64_t d,
                                   int64_t ldx, const int32_t *labels,
                                   int64_t k, const uint8_t *train);

/* bias (d) = mean of the n rows (affine) or zeros; *xc = malloc'd (n, d)
 * contiguous float32 copy of x - bias (rounded once from float64). Rejects
 * non-finite values. */
culeace_status culeace__iter_centre(culeace_ctx *ctx, const float *x,
                                    int64_t n, int64_t d, int64_t ldx,
                                    int affine, double *bias, float **xc);

/* The eraser x' = x - ((x - bias) U) U^T from r orthonormal directions,
 * rows of dirs (r, d) (so L = dirs^T, R = dirs); info as culeace.h says for
 * INLP/R-LACE (method, n_seen = n, n_classes = k). */
culeace_status culeace__iter_eraser(culeace_ctx *ctx, int64_t d, int64_t r,
                                    const double *dirs, const double *bias,
                                    int affine, culeace_method method,
                                    int64_t n, int64_t k,
                                    culeace_eraser **out);

/* Euclidean projection of the symmetric P (d, d) onto the Fantope
 * {0 <= P <= I, tr P = k} (1 <= k <= d): eigendecomposition, the
 * eigenvalues shifted by theta (bisection, then solved exactly on the
 * active set) and clipped to [0, 1] so they sum to k, P = V diag V^T.
 * Only the upper triangle of P is read; all of P is written. work: NULL
 * (allocated here) or (2 d d + d) doubles. eig_out (d) may be NULL: the
 * projected eigenvalues, in the ascending order of the input's. */
culeace_status culeace__fantope_project(culeace_ctx *ctx, double *P,
                                        int64_t d, int64_t k, double *work,
                                        double *eig_out);

#endif
