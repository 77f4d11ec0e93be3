/* eval.h — internal evaluation helpers for probes: stratified (group) k-fold
 * assignment, Hewitt & Liang control-task labels (folds.c), and the metrics a
 * probe sweep reports (metrics.c): accuracy, balanced accuracy, AUROC,
 * log-loss, majority-class baseline, codelength.
 *
 * Conventions shared by every function here:
 *   labels: (n) int32 class indices 0..k-1; -1 marks a row that is not used
 *           (masked token, dropped row);
 *   groups: (n) int64 group ids (any values, e.g. prompt ids) or NULL;
 *   proba:  (n, k) float64 row-major class probabilities;
 *   mask:   (n) uint8, nonzero = the row takes part in the metric.
 */
#ifndef CULEACE_CORE_EVAL_H
#define CULEACE_CORE_EVAL_H

#include <stdint.h>

#include "culeace.h"

/* Splitmix64-seeded xoshiro256** generator: deterministic for a seed on every
 * platform. */
typedef struct {
  uint64_t s[4];
} culeace__rng;

void culeace__rng_seed(culeace__rng *r, uint64_t seed);
uint64_t culeace__rng_next(culeace__rng *r);
/* Uniform integer in [0, bound) without modulo bias (bound >= 1). */
uint64_t culeace__rng_below(culeace__rng *r, uint64_t bound);

/* Stratified k-fold assignment. fold_out (n): 0..n_folds-1 for used rows,
 * -1 for rows with label -1.
 *
 * Without groups: each class's rows are shuffled (seeded) and dealt to the
 * folds in turn, continuing the turn across classes, so every fold holds
 * floor or ceil of (class count / n_folds) rows of every class and fold
 * sizes differ by at most one row.
 *
 * With groups: whole groups go to one fold (never split), like
 * scikit-learn's StratifiedGroupKFold(shuffle=True): groups in seeded
 * random order, then stably sorted by size (descending), each given to the
 * fold that minimises the mean over classes of the std over folds of the
 * fold's share of that class (ties: the fold with fewer rows, then the
 * lower index).
 *
 * Errors (CULEACE_ERR_DEGENERATE / _INVALID_ARG, message set on ctx):
 * n_folds < 2; fewer than two classes among the used rows; more folds than
 * used rows or than groups; a fold without some class ("fold 3 has no rows
 * of class 1 (label value 7); use fewer folds"). class_values (k) gives the
 * label value of each class for messages (NULL: the class index is shown).
 * Deterministic for a seed. */
culeace_status culeace__stratified_folds(culeace_ctx *ctx, int64_t n,
                                         const int32_t *labels, int64_t k,
                                         const int64_t *groups,
                                         int64_t n_folds, uint64_t seed,
                                         const int64_t *class_values,
                                         int32_t *fold_out);

/* Control-task labels (Hewitt & Liang 2019). out (n): with groups, each
 * group's label (the majority label of its used rows; ties: the lower
 * class) is permuted among the groups (seeded), and every used row of a
 * group gets its group's new label: the number of groups per label is kept
 * exactly. Without groups, the used rows' labels are permuted: the class
 * counts are kept exactly. Rows with label -1 get -1. */
culeace_status culeace__control_labels(culeace_ctx *ctx, int64_t n,
                                       const int32_t *labels, int64_t k,
                                       const int64_t *groups, uint64_t seed,
                                       int32_t *out);

/* ---- metrics (metrics.c) ---------------------------------------------------
 * All are over the rows i with mask[i] != 0 and labels[i] >= 0 (mask NULL:
 * every row with labels[i] >= 0). Predicted class = argmax of proba (ties:
 * the lower class, like numpy's argmax). NAN when no row takes part. */

/* Log-loss clipping: probabilities are clipped to [eps, 1 - eps] with eps
 * the float64 machine epsilon, as scikit-learn's log_loss does (>= 1.5). */
#define CULEACE_LOGLOSS_EPS 2.220446049250313e-16

double culeace__accuracy(int64_t n, int64_t k, const int32_t *labels,
                         const double *proba, const uint8_t *mask);
/* Mean recall over the classes present among the rows (scikit-learn's
 * balanced_accuracy_score). */
double culeace__balanced_accuracy(int64_t n, int64_t k, const int32_t *labels,
                                  const double *proba, const uint8_t *mask);
/* Binary AUROC of score (n, stride ldscore: the positive class's
 * probability is proba + 1 with ldscore = 2) against labels == 1, from
 * ranks with ties given their average rank (Mann-Whitney U). NAN when a
 * class is absent. Needs O(rows) scratch: *status gets
 * CULEACE_ERR_OUT_OF_MEMORY if it cannot be had (status may be NULL). */
double culeace__auroc(culeace_ctx *ctx, int64_t n, const int32_t *labels,
                      const double *score, int64_t ldscore,
                      const uint8_t *mask, culeace_status *status);
/* Mean of -ln(clip(proba[i, labels[i]])). */
double culeace__log_loss(int64_t n, int64_t k, const int32_t *labels,
                         const double *proba, const uint8_t *mask);
/* Sum of -log2(clip(proba[i, labels[i]])): bits to transmit the labels
 * with the probe's distribution (MDL online code). 0 for no rows. */
double culeace__codelength_bits(int64_t n, int64_t k, const int32_t *labels,
                                const double *proba, const uint8_t *mask);
/* Majority-class baseline: the most frequent class among the train rows
 * (ties: the lower class) evaluated as a constant prediction on the test
 * rows; *majority_class (may be NULL) gets it (-1 if no train rows). */
double culeace__majority_accuracy(int64_t n, int64_t k, const int32_t *labels,
                                  const uint8_t *train, const uint8_t *test,
                                  int32_t *majority_class);

/* ---- MDL online code (Voita & Titov 2020) -------------------------------- */
/* Block boundaries of the online code as fractions of the data, in
 * percent: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50, 100. */
#define CULEACE_MDL_N_BOUNDS 11
extern const double culeace__mdl_percent[CULEACE_MDL_N_BOUNDS];
/* ends (CULEACE_MDL_N_BOUNDS): row counts ends[j] = max(1, floor(n *
 * percent[j] / 100)) made strictly increasing where n allows (ends[last]
 * = n). Returns the number of distinct boundaries (<= 11); the online code
 * sends rows [0, ends[0]) with the uniform code and block j ([ends[j-1],
 * ends[j])) with a probe trained on rows [0, ends[j-1]). */
int culeace__mdl_bounds(int64_t n, int64_t *ends);

#endif
