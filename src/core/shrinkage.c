/* shrinkage.c — optimal linear shrinkage of a sample covariance toward the
 * isotropic matrix of equal trace (Bodnar, Gupta & Parolya 2014), written to
 * give the same numbers as concept-erasure's optimal_linear_shrinkage,
 * including its epsilon terms. */
#include <float.h>
#include <stdint.h>

#include "core/fitter.h"

void culeace__shrinkage_coefs(double tr, double fro2, int64_t d, double n,
                              double *alpha, double *diag_add) {
  double p = (double)d;
  double sigma0_norm_sq = tr * tr / p;  /* ||tr/p I||_F^2 */
  double prod_trace = tr * tr / p;      /* tr(S sigma0) */
  double top = tr * tr * sigma0_norm_sq / n;
  double bottom = fro2 * sigma0_norm_sq - prod_trace * prod_trace;
  double eps = DBL_EPSILON;
  double a = 1.0 - (top + eps) / (bottom + eps);
  double beta = (1.0 - a) * (prod_trace + eps) / (sigma0_norm_sq + eps);
  *alpha = a;
  *diag_add = beta * tr / p;
}

void culeace__optimal_linear_shrinkage(double *s, int64_t d, double n) {
  /* s: (d, d) symmetric, the sample covariance S_n = X_c^T X_c / n. */
  double tr = 0, fro2 = 0, alpha, diag_add;
  for (int64_t i = 0; i < d; i++) tr += s[i * d + i];
  for (int64_t i = 0; i < d * d; i++) fro2 += s[i] * s[i];
  culeace__shrinkage_coefs(tr, fro2, d, n, &alpha, &diag_add);
  for (int64_t i = 0; i < d * d; i++) s[i] *= alpha;
  for (int64_t i = 0; i < d; i++) s[i * d + i] += diag_add;
}
