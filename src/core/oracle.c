/* oracle.c — oracle LEACE's fit side, with the semantics of concept-erasure's
 * OracleFitter: the running co-moment of z (merged exactly, like the other
 * moments) and the eraser built from the finished moments:
 *   Sigma_zz = sym(Czz)/(n-1), or optimal linear shrinkage of sym(Czz)/n
 *   Sigma_xz = Cxz/(n-1)
 *   coef = Sigma_xz pinv(Sigma_zz)  (d, z_dim); eigenvalues with
 *          |lambda| <= svd_tol are cut (torch.linalg.pinv(atol=svd_tol))
 *   mean_z = the running mean of z (z_dim)
 * The edit x' = x - (z - mean_z) coef^T needs z at apply time
 * (oracle_apply.c). */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fitter.h"

void culeace__oracle_block_czz(culeace_fitter *f, const double *z, int64_t n,
                               int64_t ldz) {
  int64_t zd = f->z_dim;
  double *bc = f->b_czz, *mz = f->b_mean_z; /* b_mean_z: scratch here; the
                                               backend rewrites it */
  for (int64_t c = 0; c < zd; c++) mz[c] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < zd; c++) mz[c] += z[i * ldz + c];
  for (int64_t c = 0; c < zd; c++) mz[c] /= (double)n;
  memset(bc, 0, (size_t)zd * (size_t)zd * 8);
  for (int64_t i = 0; i < n; i++) {
    const double *zi = z + i * ldz;
    for (int64_t a = 0; a < zd; a++) {
      double da = zi[a] - mz[a];
      for (int64_t b = a; b < zd; b++) bc[a * zd + b] += da * (zi[b] - mz[b]);
    }
  }
  /* Chan et al.: + delta delta^T n_a n_b / (n_a + n_b), against the running
   * mean before this block */
  double w = (double)f->n * (double)n / ((double)f->n + (double)n);
  for (int64_t a = 0; a < zd; a++) {
    double da = mz[a] - f->mean_z[a];
    for (int64_t b = a; b < zd; b++) {
      bc[a * zd + b] += w * da * (mz[b] - f->mean_z[b]);
      bc[b * zd + a] = bc[a * zd + b];
    }
  }
}

/* pinv (zd, zd) of the symmetric S (destroyed): V diag(1/lambda) V^T over
 * the eigenvalues with |lambda| > tol. */
static culeace_status pinv_sym(culeace_ctx *ctx, double *S, int64_t zd,
                               double tol, double *w, double *pinv) {
  lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)zd,
                                   S, (lapack_int)zd, w);
  if (info != 0)
    return culeace__error(ctx, CULEACE_ERR_LAPACK,
                          "dsyevd failed on Sigma_zz (%lld x %lld, info = %d)",
                          (long long)zd, (long long)zd, (int)info);
  /* S now holds the eigenvectors as columns (row-major): S[i*zd + j] =
   * component i of vector j */
  memset(pinv, 0, (size_t)zd * (size_t)zd * 8);
  for (int64_t j = 0; j < zd; j++) {
    if (!(fabs(w[j]) > tol)) continue;
    double g = 1.0 / w[j];
    for (int64_t a = 0; a < zd; a++) {
      double va = S[a * zd + j] * g;
      for (int64_t b = 0; b < zd; b++) pinv[a * zd + b] += va * S[b * zd + j];
    }
  }
  return CULEACE_OK;
}

culeace_status culeace__oracle_build(culeace_fitter *f, culeace_eraser **out) {
  culeace_ctx *ctx = f->ctx;
  int64_t d = f->d, zd = f->z_dim;
  culeace_status st = CULEACE_OK;
  culeace_eraser *e = NULL;
  double *S = NULL, *w = NULL, *pinv = NULL, *sxz = NULL;
  *out = NULL;
  if (f->n < 2)
    return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "fitting an eraser needs at least 2 rows (seen "
                          "%lld)", (long long)f->n);
  size_t zz = (size_t)zd * (size_t)zd; /* checked when the fitter was made */
  size_t dz = 0;
  if (!culeace__mul_size((size_t)d, (size_t)zd, &dz))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "d x z_dim = %lld x %lld is too large", (long long)d,
                          (long long)zd);
  S = culeace__alloc(ctx, zz, 8, "Sigma_zz");
  w = culeace__alloc(ctx, (size_t)zd, 8, "eigenvalues");
  pinv = culeace__alloc(ctx, zz, 8, "pinv(Sigma_zz)");
  sxz = culeace__alloc(ctx, dz, 8, "Sigma_xz");
  if (!S || !w || !pinv || !sxz) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  double n = (double)f->n;
  double scale = f->opts.shrinkage ? 1.0 / n : 1.0 / (n - 1.0);
  for (int64_t a = 0; a < zd; a++)
    for (int64_t b = 0; b < zd; b++)
      S[a * zd + b] = 0.5 * (f->czz[a * zd + b] + f->czz[b * zd + a]) * scale;
  if (f->opts.shrinkage) culeace__optimal_linear_shrinkage(S, zd, n);
  CULEACE_TRY(pinv_sym(ctx, S, zd, f->opts.svd_tol, w, pinv));
  for (size_t i = 0; i < dz; i++) sxz[i] = f->cxz[i] / (n - 1.0);
  CULEACE_TRY(culeace__eraser_alloc(ctx, d, 0, &e));
  e->coef = culeace__alloc(ctx, dz, 8, "oracle coef");
  e->mean_z = culeace__alloc(ctx, (size_t)zd, 8, "oracle mean_z");
  if (!e->coef || !e->mean_z) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  /* coef (d, zd) = Sigma_xz (d, zd) pinv (zd, zd) */
  CULEACE_TRY(ctx->backend->gemm(ctx, 0, 0, d, zd, zd, 1.0, sxz, zd, pinv, zd,
                                 0.0, e->coef, zd));
  memcpy(e->mean_z, f->mean_z, (size_t)zd * 8);
  culeace__eraser_labelled_info(e, CULEACE_METHOD_ORACLE, zd,
                                f->z_kind == CULEACE_Z_CLASSES ? f->k : 0, f);
  culeace__eraser_sync(e);
  *out = e;
  e = NULL;
cleanup:
  culeace_eraser_free(e);
  free(S);
  free(w);
  free(pinv);
  free(sxz);
  return st;
}
