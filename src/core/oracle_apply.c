/* oracle_apply.c — oracle erasers as objects: built from parameters
 * (coef (d, z_dim), mean_z (z_dim)), their parameters read back, and the
 * edit x <- x - (z - mean_z) coef^T on host rows given each row's z.
 * The edit is plain C on the host (z_dim dot products per element, rows
 * split over OpenMP threads) on every context: there is no backend op, so
 * a CUDA context runs the same code as the CPU. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "core/fitter.h"

culeace_status culeace_eraser_from_oracle(culeace_ctx *ctx, int64_t d,
                                          int64_t z_dim, const double *coef,
                                          const double *mean_z,
                                          culeace_eraser **out) {
  if (!ctx || !out || !coef || !mean_z) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  size_t dz = 0;
  if (d < 1 || z_dim < 1 ||
      !culeace__mul_size((size_t)d, (size_t)z_dim, &dz))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "oracle eraser shape d = %lld, z_dim = %lld is "
                          "invalid (need d >= 1, z_dim >= 1)", (long long)d,
                          (long long)z_dim);
  for (size_t i = 0; i < dz; i++)
    if (!isfinite(coef[i]))
      return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                            "oracle coef element %zu is not finite", i);
  for (int64_t c = 0; c < z_dim; c++)
    if (!isfinite(mean_z[c]))
      return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                            "oracle mean_z element %lld is not finite",
                            (long long)c);
  culeace_eraser *e;
  culeace_status st = culeace__eraser_alloc(ctx, d, 0, &e);
  if (st) return st;
  e->coef = culeace__alloc(ctx, dz, 8, "oracle coef");
  e->mean_z = culeace__alloc(ctx, (size_t)z_dim, 8, "oracle mean_z");
  if (!e->coef || !e->mean_z) {
    culeace_eraser_free(e);
    return CULEACE_ERR_OUT_OF_MEMORY;
  }
  memcpy(e->coef, coef, dz * 8);
  memcpy(e->mean_z, mean_z, (size_t)z_dim * 8);
  culeace__eraser_labelled_info(e, CULEACE_METHOD_ORACLE, z_dim, 0, NULL);
  culeace__eraser_sync(e);
  *out = e;
  return CULEACE_OK;
}

culeace_status culeace_eraser_oracle_params(const culeace_eraser *e,
                                            double *coef, double *mean_z) {
  if (!e) return CULEACE_ERR_INVALID_ARG;
  if (e->info.method != CULEACE_METHOD_ORACLE || !e->coef)
    return CULEACE_ERR_STATE;
  size_t zd = (size_t)e->info.z_dim;
  if (coef) memcpy(coef, e->coef, (size_t)e->info.d * zd * 8);
  if (mean_z) memcpy(mean_z, e->mean_z, zd * 8);
  return CULEACE_OK;
}

/* One row: x_j <- x_j - sum_c t_c coef[j, c], t = z - mean_z (zd). The
 * difference is formed in float64; float32 rows store it rounded to
 * float32, 16-bit rows round that float32 once more to their type (as
 * culeace_eraser_apply rounds its float32 result). */
static void edit_row(void *row, culeace_dtype t, int64_t d, int64_t zd,
                     const double *coef, const double *tz) {
  for (int64_t j = 0; j < d; j++) {
    const double *cj = coef + j * zd;
    double corr = 0;
    for (int64_t c = 0; c < zd; c++) corr += tz[c] * cj[c];
    switch (t) {
      case CULEACE_F64: ((double *)row)[j] -= corr; break;
      case CULEACE_F32: {
        float *p = (float *)row + j;
        *p = (float)((double)*p - corr);
        break;
      }
      case CULEACE_F16: {
        uint16_t *p = (uint16_t *)row + j;
        *p = culeace__f32_to_f16(
            (float)((double)culeace__f16_to_f32(*p) - corr));
        break;
      }
      case CULEACE_BF16: {
        uint16_t *p = (uint16_t *)row + j;
        *p = culeace__f32_to_bf16(
            (float)((double)culeace__bf16_to_f32(*p) - corr));
        break;
      }
    }
  }
}

culeace_status culeace_eraser_apply_oracle(culeace_ctx *ctx,
                                           const culeace_eraser *e, void *x,
                                           culeace_dtype xtype, int64_t n,
                                           int64_t ldx, const double *z,
                                           int64_t ldz) {
  if (!ctx || !e) return CULEACE_ERR_INVALID_ARG;
  if (e->info.method != CULEACE_METHOD_ORACLE || !e->coef)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "apply_oracle: this is a %s eraser, not an oracle "
                          "one (use culeace_eraser_apply)",
                          culeace_method_name(e->info.method)
                              ? culeace_method_name(e->info.method)
                              : "?");
  int64_t d = e->info.d, zd = e->info.z_dim;
  size_t es = culeace_dtype_size(xtype);
  if (n < 0 || (n > 0 && (!x || !z)))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "apply_oracle: x or z is NULL or n < 0");
  if (es == 0)
    return culeace__error(ctx, CULEACE_ERR_DTYPE,
                          "apply_oracle: unknown dtype %d", (int)xtype);
  if (ldx < d)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "apply_oracle: row stride %lld is smaller than d = "
                          "%lld", (long long)ldx, (long long)d);
  if (ldz < zd)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "apply_oracle: z stride %lld is smaller than the "
                          "eraser's z_dim = %lld", (long long)ldz,
                          (long long)zd);
  for (int64_t i = 0; i < n; i++) /* before any row is edited */
    for (int64_t c = 0; c < zd; c++)
      if (!isfinite(z[i * ldz + c]))
        return culeace__error(ctx, CULEACE_ERR_NONFINITE,
                              "apply_oracle: z row %lld has a non-finite "
                              "value in column %lld (nothing was edited)",
                              (long long)i, (long long)c);
  if (n == 0) return CULEACE_OK;
  int nt = ctx->n_threads > 0 ? ctx->n_threads : omp_get_max_threads();
  if (nt < 1) nt = 1;
  size_t tzn = 0;
  if (!culeace__mul_size((size_t)nt, (size_t)zd, &tzn))
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "apply_oracle: z_dim = %lld is too large",
                          (long long)zd);
  double *tz = culeace__alloc(ctx, tzn, 8, "z rows"); /* (nt, zd) */
  if (!tz) return CULEACE_ERR_OUT_OF_MEMORY;
  int parallel = (double)n * (double)d * (double)zd > 1e6;
#pragma omp parallel for schedule(static) num_threads(nt) if (parallel)
  for (int64_t i = 0; i < n; i++) {
    double *mine = tz + (size_t)omp_get_thread_num() * (size_t)zd;
    for (int64_t c = 0; c < zd; c++) mine[c] = z[i * ldz + c] - e->mean_z[c];
    edit_row((char *)x + (size_t)i * (size_t)ldx * es, xtype, d, zd, e->coef,
             mine);
  }
  free(tz);
  return CULEACE_OK;
}
