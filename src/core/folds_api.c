/* folds_api.c — the public entry points of the cross-validation helpers
 * (culeace_stratified_folds, culeace_control_labels in culeace.h): thin
 * wrappers of folds.c's internal functions, so that bindings draw the same
 * folds and control labels as `culeace probe`. */
#include "core/ctx.h"
#include "core/eval.h"

culeace_status culeace_stratified_folds(culeace_ctx *ctx, int64_t n,
                                        const int32_t *labels, int64_t k,
                                        const int64_t *groups, int64_t n_folds,
                                        uint64_t seed, int32_t *fold_out) {
  if (!ctx) return CULEACE_ERR_INVALID_ARG;
  return culeace__stratified_folds(ctx, n, labels, k, groups, n_folds, seed,
                                   NULL, fold_out);
}

culeace_status culeace_control_labels(culeace_ctx *ctx, int64_t n,
                                      const int32_t *labels, int64_t k,
                                      const int64_t *groups, uint64_t seed,
                                      int32_t *out) {
  if (!ctx) return CULEACE_ERR_INVALID_ARG;
  return culeace__control_labels(ctx, n, labels, k, groups, seed, out);
}
