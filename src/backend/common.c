/* common.c — small host-side steps every backend shares: centring the label
 * block and naming the row behind a non-finite block mean. */
#include <math.h>

#include "backend/backend.h"
#include "core/convert.h"
#include "core/ctx.h"

void culeace__centre_z(const double *z, int64_t n, int64_t k, int64_t ldz,
                       double *zc, double *mean_z) {
  for (int64_t c = 0; c < k; c++) mean_z[c] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < k; c++) mean_z[c] += z[i * ldz + c];
  for (int64_t c = 0; c < k; c++) mean_z[c] /= (double)n;
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < k; c++) zc[i * k + c] = z[i * ldz + c] - mean_z[c];
}

/* A NaN/Inf shows as a non-finite column mean; a finite mean can still hide
 * huge float64 inputs whose sum overflowed, so the rows are scanned then. */
int culeace__block_nonfinite(culeace_ctx *ctx, const void *x,
                             culeace_dtype xtype, int64_t n, int64_t d,
                             int64_t ldx, const double *mean_x) {
  int ok = 1;
  for (int64_t j = 0; j < d; j++) ok &= isfinite(mean_x[j]) != 0;
  if (ok) return 0;
  int64_t col = 0, row = culeace__first_nonfinite(x, xtype, n, d, ldx, &col);
  if (row < 0) {
    culeace__error(ctx, CULEACE_ERR_NONFINITE,
                   "the block's values are too large: their sum overflows "
                   "float64");
    return 1;
  }
  culeace__error(ctx, CULEACE_ERR_NONFINITE,
                 "row %lld of the block has a non-finite value (NaN or Inf) "
                 "in column %lld", (long long)row, (long long)col);
  return 1;
}
