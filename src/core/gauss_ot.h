/* gauss_ot.h — optimal transport between centred Gaussians, float64 (d, d)
 * row-major matrices, eigendecompositions and products through the
 * context's backend (gauss_ot.c). The formulas are those of
 * concept-erasure's optimal_transport.py:
 *   sqrt(A), pinv-sqrt(A)   from eigh(A), eigenvalues clamped at 0 and
 *                           those <= lambda_max d eps left out of the
 *                           inverse;
 *   ot_map(K1, K2)        = K1^-1/2 (K1^1/2 K2 K1^1/2)^1/2 K1^-1/2;
 *   ot_midpoint(K1, K2)   = w1^2 K1 + w2^2 K2 + w1 w2 (P + P^T),
 *                           P = K1^1/2 (K1^1/2 K2 K1^1/2)^1/2 K1^-1/2;
 *   ot_barycenter(Ks, w)  = the fixed point of Alvarez-Esteban et al.
 *                           (2016), started at sum w_i K_i. */
#ifndef CULEACE_CORE_GAUSS_OT_H
#define CULEACE_CORE_GAUSS_OT_H

#include "core/ctx.h"

/* Workspace for the functions below: room for 7 (d, d) matrices and d
 * eigenvalues (culeace__ot_work_alloc; free with free()). */
double *culeace__ot_work_alloc(culeace_ctx *ctx, int64_t d);

/* out (d, d) = the optimal transport map from N(0, K1) to N(0, K2). */
culeace_status culeace__ot_map(culeace_ctx *ctx, const double *K1,
                               const double *K2, int64_t d, double *work,
                               double *out);
/* out (d, d) = the barycenter of N(0, K1), N(0, K2) with weights w1, w2
 * (summing to 1). */
culeace_status culeace__ot_midpoint(culeace_ctx *ctx, const double *K1,
                                    const double *K2, double w1, double w2,
                                    int64_t d, double *work, double *out);
/* out (d, d) = the barycenter of N(0, Ks[i]) (Ks: (k, d, d)) with weights
 * w (k, any positive scale); *steps: fixed-point steps taken (<= max_iter). */
culeace_status culeace__ot_barycenter(culeace_ctx *ctx, const double *Ks,
                                      const double *w, int64_t k, int64_t d,
                                      int max_iter, double *work, double *out,
                                      int *steps);

#endif
