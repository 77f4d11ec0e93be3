/* whiten.h — C entry points of the whitening kernels (whiten.cu), used by
 * the CUDA backend to build a LEACE eraser's whitening on the device. Same
 * conventions as kernels.h: device pointers, enqueued on `stream`, launch
 * status returned without waiting. Matrices are (d, d) float64 and
 * symmetric unless said otherwise, so row- and column-major agree. */
#ifndef CULEACE_WHITEN_H
#define CULEACE_WHITEN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out (d, d) = scale * C symmetrised, C holding its lower triangle in
 * column-major order (as cuBLAS's SYRK writes it: C[i + j d], i >= j);
 * stats[0] += tr(out), stats[1] += ||out||_F^2 (the caller zeroes stats). */
int culeace_k_symmetrise(const double *c, double *out, int64_t d, double scale,
                         double *stats, void *stream);

/* s (d, d) <- alpha * s + diag_add * I. */
int culeace_k_shrink(double *s, int64_t d, double alpha, double diag_add,
                     void *stream);

/* t (d, d) column-major = v diag(g): column j of v (an eigenvector, w (d)
 * its ascending eigenvalues) times g_j = w_j > cut ? f(max(w_j, 0)) : 0,
 * cut = w[d - 1] d DBL_EPSILON, f = 1/sqrt (inverse = 1) or sqrt. */
int culeace_k_scale_eigvecs(const double *v, const double *w, int64_t d,
                            int inverse, double *t, void *stream);

#ifdef __cplusplus
}
#endif

#endif
