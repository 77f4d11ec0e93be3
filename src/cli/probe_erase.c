/* probe_erase.c — `probe --erase`: one fold's eraser, fitted on the fold's
 * training rows only with the --erase-method (leace by default; orth,
 * oracle, quadratic, inlp, rlace), and applied to a copy of all of the
 * layer's rows. The moment-based methods take a fold's training moments as
 * the merge of the other folds' (probe_erase_moments: each row summed once
 * per layer, not once per fold it trains). Oracle and quadratic erasers
 * edit each row with its own label (the probe's labels are known for every
 * row). INLP and R-LACE
 * decide when to stop on a stratified, group-aware fifth of the fold's
 * training rows, never on its test rows. Under --split rows the ranks'
 * moments are merged (mpi_probe.h) and every rank finalises the same
 * eraser and erases its own rows; INLP and R-LACE are not split. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_probe.h"
#include "cli/probe.h"
#include "core/ctx.h"
#include "core/eval.h"

enum { INNER_FOLDS = 5 };

/* INLP / R-LACE on the nt gathered training rows xt (nt, d), labels yt,
 * with an inner held-out split. */
static culeace_status fit_iterative_eraser(probe_job *J, const layer_rows *L,
                                           const int64_t *idx, int64_t nt,
                                           const float *xt, const int32_t *yt,
                                           culeace_eraser **e) {
  const probe_settings *s = J->s;
  culeace_ctx *ctx = J->ctx;
  int64_t d = culeace__act_width(J->act), k = J->k;
  int32_t *fold = malloc((size_t)(nt ? nt : 1) * sizeof *fold);
  uint8_t *inner = malloc((size_t)(nt ? nt : 1));
  int64_t *g = J->groups ? malloc((size_t)(nt ? nt : 1) * sizeof *g) : NULL;
  double *acc = malloc((size_t)(s->erase_iterations > 0 ? s->erase_iterations
                                                        : 20) * 8 + 8);
  culeace_status st = CULEACE_ERR_OUT_OF_MEMORY;
  if (!fold || !inner || !acc || (J->groups && !g)) {
    culeace__error(ctx, st, "out of memory for the inner split");
    goto done;
  }
  for (int64_t i = 0; g && i < nt; i++) g[i] = J->groups[L->row[idx[i]]];
  st = culeace__stratified_folds(ctx, nt, yt, k, g, INNER_FOLDS, s->seed,
                                 J->lab->class_values, fold);
  if (st) goto done;
  for (int64_t i = 0; i < nt; i++) inner[i] = fold[i] != 0;
  if (s->erase_method == CULEACE_METHOD_INLP) {
    culeace_inlp_opts o;
    culeace_inlp_opts_init(&o);
    if (s->erase_iterations > 0) o.iterations = s->erase_iterations;
    culeace_inlp_report rep;
    st = culeace_inlp_fit(ctx, xt, nt, d, d, yt, k, inner, &o, e, &rep, acc);
  } else {
    culeace_rlace_opts o;
    culeace_rlace_opts_init(&o);
    o.seed = s->seed;
    if (s->erase_iterations > 0) o.iterations = s->erase_iterations;
    culeace_rlace_report rep;
    st = culeace_rlace_fit(ctx, xt, nt, d, d, yt, k, inner, &o, e, &rep);
  }
done:
  free(fold);
  free(inner);
  free(g);
  free(acc);
  return st;
}

/* Oracle LEACE's z of every row: the indicator of class 1 (k = 2) or
 * one-hot (k >= 3), as `fit` encodes class labels. */
static double *oracle_z(const layer_rows *L, int64_t k) {
  int64_t zd = k == 2 ? 1 : k;
  double *z = calloc((size_t)(L->n ? L->n : 1) * (size_t)zd, sizeof *z);
  for (int64_t i = 0; z && i < L->n; i++) {
    if (zd == 1) z[i] = L->y[i] == 1;
    else z[i * zd + L->y[i]] = 1;
  }
  return z;
}

/* fo for the moment-based --erase-method m. */
static void moment_opts(culeace_method m, culeace_fit_opts *fo) {
  culeace_fit_opts_init(fo);
  fo->method = m;
  if (m == CULEACE_METHOD_ORACLE) fo->shrinkage = 0; /* as `fit` */
}

/* Under --split rows: replaces *fit (this rank's moments) by every rank's,
 * merged (mpi_probe.h); failed: this rank's failure so far. 0, or 1 (the
 * ranks agreed on a failure; printed; *fit freed and NULL). */
static int merge_over_ranks(probe_job *J, const culeace_fit_opts *fo,
                            int failed, culeace_fitter **fit) {
  culeace_ctx *ctx = J->ctx;
  culeace_fitter *total = NULL;
  if (!failed && culeace_fitter_create(ctx, culeace__act_width(J->act), J->k,
                                       CULEACE_Z_CLASSES, fo, &total))
    failed = cli_error_ctx(J->c, ctx, "--erase");
  failed = probe_split_merge(J->split, failed, ctx, *fit, total);
  culeace_fitter_free(*fit);
  *fit = total;
  if (failed) {
    culeace_fitter_free(*fit);
    *fit = NULL;
  }
  return failed;
}

void probe_fold_moments_free(probe_fold_moments *fm) {
  free(fm->state);
  memset(fm, 0, sizeof *fm);
}

int probe_erase_moments(probe_job *J, const layer_rows *L,
                        const uint8_t *fold_train, int64_t n_all,
                        int64_t off, int64_t *idx, int32_t *ysel, float *xe,
                        probe_fold_moments *fm) {
  const probe_settings *s = J->s;
  culeace_ctx *ctx = J->ctx;
  culeace_method m = s->erase_method;
  int64_t d = culeace__act_width(J->act), k = J->k, F = s->folds;
  memset(fm, 0, sizeof *fm);
  if (m == CULEACE_METHOD_INLP || m == CULEACE_METHOD_RLACE) return 0;
  culeace_fit_opts fo;
  moment_opts(m, &fo);
  culeace_fitter *fit = NULL;
  size_t count = 0;
  if (culeace_fitter_create(ctx, d, k, CULEACE_Z_CLASSES, &fo, &fit) ||
      culeace_fitter_state_size(fit, &count)) {
    culeace_fitter_free(fit);
    return cli_error_ctx(J->c, ctx, "--erase");
  }
  culeace_fitter_free(fit);
  /* the F states must fit a quarter of --max-memory; else each fold sums
   * its own training rows (the same on every rank: it depends on the
   * arguments only) */
  if ((double)F * (double)count * 8.0 > cli_memory_limit(J->c) / 4) return 0;
  fm->state = malloc((size_t)F * count * sizeof *fm->state);
  int failed = !fm->state ? cli_error(J->c, "out of memory") : 0;
  if (J->split && probe_split_agree(J->split, failed)) {
    probe_fold_moments_free(fm);
    return 1;
  }
  if (failed) return 1;
  fm->F = F;
  fm->count = count;
  for (int64_t f = 0; f < F; f++) {
    const uint8_t *train = fold_train + (size_t)f * (size_t)n_all + off;
    int64_t nf = 0;
    for (int64_t i = 0; i < L->n; i++) /* the fold's own rows, into xe */
      if (!train[i]) {
        layer_rows_f32(L, d, i, 1, xe + (size_t)nf * (size_t)d);
        ysel[nf] = L->y[i];
        idx[nf++] = i;
      }
    culeace_fitter *acc = NULL;
    failed = culeace_fitter_create(ctx, d, k, CULEACE_Z_CLASSES, &fo, &acc) ||
             (nf > 0 && culeace_fitter_update_classes(acc, xe, CULEACE_F32, nf,
                                                      d, ysel));
    if (failed) cli_error_ctx(J->c, ctx, "--erase: a fold's moments");
    if (J->split) /* every rank's rows of the fold, on every rank */
      failed = merge_over_ranks(J, &fo, failed, &acc);
    if (!failed && culeace_fitter_export(acc, fm->state + (size_t)f * count))
      failed = cli_error_ctx(J->c, ctx, "--erase: a fold's moments");
    culeace_fitter_free(acc);
    if (J->split && probe_split_agree(J->split, failed)) failed = 1;
    if (failed) {
      probe_fold_moments_free(fm);
      return 1;
    }
  }
  return 0;
}

int probe_erase_fold(probe_job *J, const layer_rows *L, const uint8_t *train,
                     const probe_fold_moments *fm, int64_t f, int64_t *idx,
                     int32_t *ysel, float *xe, int64_t *fit_rows) {
  const probe_settings *s = J->s;
  culeace_ctx *ctx = J->ctx;
  int64_t d = culeace__act_width(J->act), k = J->k, n = L->n, nt = 0;
  culeace_method m = s->erase_method;
  int merged = fm && fm->state; /* the moments are there already */
  for (int64_t i = 0; !merged && i < n; i++) /* the fold's training rows */
    if (train[i]) {
      layer_rows_f32(L, d, i, 1, xe + (size_t)nt * (size_t)d);
      ysel[nt] = L->y[i];
      idx[nt++] = i;
    }
  culeace_eraser *e = NULL;
  culeace_status st;
  if (m == CULEACE_METHOD_INLP || m == CULEACE_METHOD_RLACE) {
    st = fit_iterative_eraser(J, L, idx, nt, xe, ysel, &e);
  } else if (merged) { /* the other folds' moments, in fold order */
    culeace_fit_opts fo;
    moment_opts(m, &fo);
    culeace_fitter *fit = NULL;
    st = culeace_fitter_create(ctx, d, k, CULEACE_Z_CLASSES, &fo, &fit);
    for (int64_t g = 0; !st && g < fm->F; g++)
      if (g != f)
        st = culeace_fitter_merge(fit, fm->state + (size_t)g * fm->count,
                                  fm->count);
    if (!st) st = culeace_fitter_finalize(fit, &e);
    culeace_fitter_free(fit);
  } else {
    culeace_fit_opts fo;
    moment_opts(m, &fo);
    culeace_fitter *fit = NULL;
    st = culeace_fitter_create(ctx, d, k, CULEACE_Z_CLASSES, &fo, &fit);
    if (!st && nt > 0)
      st = culeace_fitter_update_classes(fit, xe, CULEACE_F32, nt, d, ysel);
    if (J->split) { /* every rank's moments, on every rank */
      if (st) cli_error_ctx(J->c, ctx, "--erase: a fold's moments");
      if (merge_over_ranks(J, &fo, st != CULEACE_OK, &fit)) return 1;
    }
    if (!st) st = culeace_fitter_finalize(fit, &e);
    culeace_fitter_free(fit);
  }
  if (st) {
    char what[96];
    snprintf(what, sizeof what, "fitting --erase-method %s on a fold's "
             "training rows", culeace_method_name(m));
    return cli_error_ctx(J->c, ctx, what), 1;
  }
  culeace_eraser_info info;
  *fit_rows = culeace_eraser_info_get(e, &info) ? -1 : info.n_seen;
  layer_rows_f32(L, d, 0, n, xe);
  if (m == CULEACE_METHOD_QUADRATIC) {
    st = culeace_eraser_apply_quadratic(ctx, e, xe, CULEACE_F32, n, d, L->y);
  } else if (m == CULEACE_METHOD_ORACLE) {
    double *z = oracle_z(L, k);
    st = z ? culeace_eraser_apply_oracle(ctx, e, xe, CULEACE_F32, n, d, z,
                                         k == 2 ? 1 : k)
           : CULEACE_ERR_OUT_OF_MEMORY;
    free(z);
  } else {
    st = culeace_eraser_apply(ctx, e, xe, CULEACE_F32, n, d);
  }
  culeace_eraser_free(e);
  if (st) return cli_error_ctx(J->c, ctx, "erasing a fold's rows"), 1;
  return 0;
}
