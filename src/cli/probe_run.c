/* probe_run.c — a batch of layers of `culeace probe`: reads each layer's
 * kept rows into memory (float32, or float16/bfloat16 as stored), fits every
 * probe of every layer of the batch in one batched call (per layer the
 * folds, their control-task twins, the MDL prefixes and the final probe on
 * all rows; the layers' L-BFGS steps taken together), then per layer
 * evaluates them on their held-out rows, and with --erase fits LEACE on each
 * fold's training rows and re-probes the erased rows. Under
 * --split rows (mpi_probe.h) each rank holds a share of the rows: the masks
 * and labels cover all of them (probe_rows), the fits sum over the ranks,
 * and rank 0 gathers the held-out predictions and computes the metrics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/layer_rows.h"
#include "cli/mpi_probe.h"
#include "cli/probe.h"
#include "core/convert.h"
#include "core/ctx.h"
#include "core/eval.h"
#include "core/probe.h"

probe_metric *probe_result_metric(probe_layer_result *r, int i) {
  probe_metric *ms[PROBE_N_METRICS] = {&r->acc,  &r->bal,  &r->auc,
                                       &r->ll,   &r->maj,  &r->ctrl,
                                       &r->erased, &r->erase_rows};
  return ms[i];
}

int probe_result_alloc(probe_layer_result *r, int64_t folds) {
  memset(r, 0, sizeof *r);
  for (int i = 0; i < PROBE_N_METRICS; i++) {
    probe_metric *m = probe_result_metric(r, i);
    m->v = malloc((size_t)folds * sizeof(double));
    if (!m->v) return 1;
    for (int64_t f = 0; f < folds; f++) m->v[f] = NAN;
    m->mean = m->std = NAN;
  }
  r->selectivity = NAN;
  r->mdl.online_bits = r->mdl.uniform_bits = r->mdl.compression = NAN;
  r->all_converged = 1;
  return 0;
}

void probe_result_free(probe_layer_result *r) {
  for (int i = 0; i < PROBE_N_METRICS; i++) {
    free(probe_result_metric(r, i)->v);
    probe_result_metric(r, i)->v = NULL;
  }
  culeace_probe_free(r->final);
  r->final = NULL;
}

void probe_metric_summarise(probe_metric *m, int64_t folds) {
  double s = 0, q = 0;
  int64_t cnt = 0;
  for (int64_t f = 0; f < folds; f++)
    if (!isnan(m->v[f])) {
      s += m->v[f];
      cnt++;
    }
  if (!cnt) {
    m->mean = m->std = NAN;
    return;
  }
  m->mean = s / (double)cnt;
  for (int64_t f = 0; f < folds; f++)
    if (!isnan(m->v[f])) q += (m->v[f] - m->mean) * (m->v[f] - m->mean);
  m->std = sqrt(q / (double)cnt);
}

/* Indices of the rows with mask set; returns the count. */
static int64_t select_rows(int64_t n, const uint8_t *mask, int64_t *idx) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (mask[i]) idx[m++] = i;
  return m;
}

static void note_probe(probe_layer_result *res, const culeace_probe *p) {
  culeace_probe_info in;
  if (culeace_probe_info_get(p, &in)) return;
  if (!in.converged) res->all_converged = 0;
  if (in.n_iter > res->max_n_iter) res->max_n_iter = in.n_iter;
}

/* Working memory of one layer. */
typedef struct {
  layer_rows L;       /* this process's rows */
  probe_rows R;       /* the layer's rows as a whole (R.n) */
  int64_t P;
  culeace_probe **probes;
  const int32_t **labels;
  const uint8_t **train;
  const int32_t **labels_mine; /* (P) labels[p] + R.off: this process's */
  const uint8_t **train_mine;  /* (P) train[p] + R.off */
  uint8_t *masks;     /* (P_masks, R.n) */
  uint8_t *test;      /* (R.n) */
  int64_t *idx;       /* (L.n) */
  int32_t *ctrl;      /* (R.n) control labels of the kept rows */
  int32_t *ysel;      /* (R.n) labels of evaluated rows */
  float *xe;          /* (L.n, d) erased copy (--erase) */
  double *proba;      /* (R.n, k) */
  int64_t *pos;       /* (R.n) MDL positions */
  /* between the fit and the evaluation */
  probe_layer_result *res;
  const char *lname;
  char what[640];     /* "NAME (dataset)": the layer in messages */
  int64_t ends[CULEACE_MDL_N_BOUNDS];
  int usable[CULEACE_MDL_N_BOUNDS];
  int n_mdl;
  int64_t mdl_first, final_idx;
} layer_ws;

static void ws_free(layer_ws *w) {
  if (w->probes)
    for (int64_t p = 0; p < w->P; p++) culeace_probe_free(w->probes[p]);
  free(w->probes);
  free(w->labels);
  free(w->train);
  free(w->labels_mine);
  free(w->train_mine);
  free(w->masks);
  free(w->test);
  free(w->idx);
  free(w->ctrl);
  free(w->ysel);
  free(w->xe);
  free(w->proba);
  free(w->pos);
  layer_rows_free(&w->L);
  free(w->R.row_buf);
  free(w->R.y_buf);
  memset(w, 0, sizeof *w);
}

typedef struct {
  int64_t a, b;
} pair64;

static int cmp_pair(const void *x, const void *y) {
  const pair64 *p = x, *q = y;
  return p->a < q->a ? -1 : p->a > q->a;
}

/* Positions 0..n-1 of the kept rows in the online-code order. */
static int mdl_positions(const probe_job *J, const probe_rows *R,
                         int64_t *pos) {
  pair64 *v = malloc((size_t)(R->n ? R->n : 1) * sizeof *v);
  if (!v) return cli_error(J->c, "out of memory");
  for (int64_t i = 0; i < R->n; i++) v[i] = (pair64){J->mdl_key[R->row[i]], i};
  qsort(v, (size_t)R->n, sizeof *v, cmp_pair);
  for (int64_t j = 0; j < R->n; j++) pos[v[j].b] = j;
  free(v);
  return 0;
}

/* Evaluates probe p on the rows of mask (R.n, labels y (R.n)): predicts
 * this process's of them straight from x (its rows, type xt), and under
 * --split rows gathers every rank's predictions on rank 0. *cnt: the rows
 * of mask; on rank 0 (or in a plain run) w->proba/ysel hold their
 * predictions and labels, in row order. */
static int evaluate(probe_job *J, layer_ws *w, const void *x, culeace_dtype xt,
                    const culeace_probe *p, const uint8_t *mask,
                    const int32_t *y, int64_t *cnt) {
  int64_t d = culeace__act_width(J->act), off = w->R.off;
  int64_t m = select_rows(w->L.n, mask + off, w->idx);
  for (int64_t i = 0; i < m; i++) w->ysel[i] = y[off + w->idx[i]];
  int failed = 0;
  if (m > 0 && culeace__probe_predict_rows(J->ctx, p, x, xt, d, w->idx, m,
                                           w->proba))
    failed = cli_error_ctx(J->c, J->ctx, "predicting held-out rows");
  if (J->split)
    return probe_split_gather(J->split, failed, m, J->k, w->proba, w->ysel,
                              cnt);
  *cnt = m;
  return failed;
}

/* Prints the error of a fit unless it only says another rank failed (the
 * agreement has told rank 0 which one). 1. */
static int fit_error(probe_job *J, culeace_status st, const char *what) {
  if (st != CULEACE_ERR_MPI || !J->split) cli_error_ctx(J->c, J->ctx, what);
  return 1;
}

static int is_root(const probe_job *J) {
  return !J->split || probe_split_is_root(J->split);
}

/* The erased fold's probe pe (rows xe of this process, float32) scored on
 * the fold's test rows (train: the fold's mask over all R.n rows) into
 * *acc (on the root). 0, or 1 (printed). */
static int score_erased(probe_job *J, layer_ws *w, const float *xe,
                        const culeace_probe *pe, const uint8_t *train,
                        double *acc) {
  for (int64_t i = 0; i < w->R.n; i++) w->test[i] = !train[i];
  int64_t m;
  if (evaluate(J, w, xe, CULEACE_F32, pe, w->test, w->R.y, &m)) return 1;
  if (is_root(J)) *acc = culeace__accuracy(m, J->k, w->ysel, w->proba, NULL);
  return 0;
}

/* --erase for every fold of the layer: the --erase-method fitted on each
 * fold's training rows (probe_erase.c; the moment-based methods from the
 * other folds' moments) erases a copy of this process's rows, and a probe
 * refitted on the erased training rows is scored on the fold's test rows.
 * With batches of layers (J->batch > 1, the default on a GPU) and room for
 * F erased copies in a quarter of --max-memory, the F refits are fitted
 * together, as the layers of a batch are; else fold by fold in w->xe. 0,
 * or 1 (printed). */
static int erase_folds(probe_job *J, layer_ws *w) {
  const probe_settings *s = J->s;
  probe_layer_result *res = w->res;
  layer_rows *L = &w->L;
  int64_t d = culeace__act_width(J->act), k = J->k, F = s->folds;
  int64_t n = w->R.n, off = w->R.off, nl = L->n;
  const uint8_t *fold_train = w->masks; /* (F, n) */
  const culeace__probe_reduce *red =
      J->split ? probe_split_reduce(J->split) : NULL;
  probe_fold_moments fm;
  if (probe_erase_moments(J, L, fold_train, n, off, w->idx, w->ysel, w->xe,
                          &fm))
    return 1;
  /* the same choice on every rank: n is the layer's rows over all ranks */
  double bytes = (double)F * (double)(n ? n : 1) * (double)d * 4;
  int together = J->batch > 1 && F > 1 && bytes <= cli_memory_limit(J->c) / 4;
  float *xes = NULL;
  culeace_probe **pe = calloc((size_t)F, sizeof *pe);
  culeace__probe_layer *ly = calloc((size_t)F, sizeof *ly);
  const uint8_t **tr = calloc((size_t)F, sizeof *tr);
  char *names = malloc((size_t)F * 700);
  int failed = !pe || !ly || !tr || !names;
  if (together && !failed) {
    xes = malloc((size_t)F * (size_t)(nl ? nl : 1) * (size_t)d * sizeof *xes);
    failed = !xes;
  }
  if (failed) cli_error(J->c, "out of memory for --erase of layer %s",
                        w->lname);
  if (J->split && probe_split_agree(J->split, failed)) failed = 1;
  const int32_t *lab[1] = {L->y};
  for (int64_t f = 0; !failed && f < F; f++) {
    const uint8_t *train = fold_train + (size_t)f * (size_t)n;
    float *xe = together ? xes + (size_t)f * (size_t)nl * (size_t)d : w->xe;
    int64_t fit_rows = 0;
    if (probe_erase_fold(J, L, train + off, &fm, f, w->idx, w->ysel, xe,
                         &fit_rows)) {
      failed = 1;
      break;
    }
    res->erase_rows.v[f] = (double)fit_rows;
    tr[f] = train + off;
    char *name = names + (size_t)f * 700;
    snprintf(name, 700, "%s, fold %lld erased", w->what, (long long)f);
    ly[f] = (culeace__probe_layer){xe, CULEACE_F32, nl, d, 1, lab, &tr[f],
                                   name, &pe[f]};
    if (together) continue;
    culeace_status st = culeace__probe_fit_layers_shared(
        J->ctx, 1, &ly[f], d, k, &s->po, red, NULL, NULL);
    if (st) {
      failed = fit_error(J, st, "fitting the probe on erased rows");
      break;
    }
    failed = score_erased(J, w, xe, pe[f], train, &res->erased.v[f]);
    culeace_probe_free(pe[f]);
    pe[f] = NULL;
    if (!failed) cli_progress_add(J->prog, (double)n, w->lname);
  }
  if (together && !failed) {
    culeace_status st = culeace__probe_fit_layers_shared(
        J->ctx, F, ly, d, k, &s->po, red, NULL, NULL);
    if (st) failed = fit_error(J, st, "fitting the probes on erased rows");
    for (int64_t f = 0; !failed && f < F; f++) {
      failed = score_erased(J, w, ly[f].x, pe[f],
                            fold_train + (size_t)f * (size_t)n,
                            &res->erased.v[f]);
      if (!failed) cli_progress_add(J->prog, (double)n, w->lname);
    }
  }
  for (int64_t f = 0; pe && f < F; f++) culeace_probe_free(pe[f]);
  free(pe);
  free(ly);
  free(tr);
  free(names);
  free(xes);
  probe_fold_moments_free(&fm);
  return failed;
}

/* Reads this process's rows of layer l into w->L (or takes them from the
 * layers read ahead) and sets w->R: all of them, or under --split rows
 * every rank's (the agreement after the read included). 0, or 1
 * (printed). */
static int read_rows(probe_job *J, int64_t l, layer_ws *w,
                     probe_layer_result *res) {
  const probe_settings *s = J->s;
  for (int64_t j = 0; j < J->n_ready; j++)
    if (J->ready_layers[j] == l && J->ready[j].x) { /* read ahead */
      w->L = J->ready[j];
      memset(&J->ready[j], 0, sizeof J->ready[j]);
      res->dropped = J->ready_dropped[j];
      w->R = (probe_rows){.n = w->L.n, .off = 0, .nl = w->L.n,
                          .row = w->L.row, .y = w->L.y};
      return 0;
    }
  int64_t ex0 = 0, ex1 = culeace__act_examples(J->act);
  if (J->split) probe_split_examples(J->split, &ex0, &ex1);
  int failed = layer_rows_read_range(J->c, J->ctx, J->act, s->file, l, J->lab,
                                     J->N, ex0, ex1, 1, &w->L, &res->dropped);
  if (J->split)
    return probe_split_rows(J->split, failed, &w->L, &res->dropped, &w->R);
  if (failed) return 1;
  w->R = (probe_rows){.n = w->L.n, .off = 0, .nl = w->L.n, .row = w->L.row,
                      .y = w->L.y};
  return 0;
}

/* The first half of a layer: reads its rows and sets up its problems (F
 * task folds, F control folds, the MDL prefixes, the final probe) in w. 0,
 * or 1 (printed). */
static int layer_begin(probe_job *J, int64_t l, probe_layer_result *res,
                       layer_ws *w) {
  const cli_common *c = J->c;
  const probe_settings *s = J->s;
  const char *lname = culeace__act_layer_name(J->act, l);
  int64_t d = culeace__act_width(J->act), k = J->k, F = s->folds;
  w->res = res;
  w->lname = lname;
  snprintf(w->what, sizeof w->what, "%s (%s)", lname,
           culeace__act_dataset_path(J->act, l));
  res->layer = l;
  res->name = lname;
  if (read_rows(J, l, w, res)) return 1;
  probe_rows *R = &w->R;
  int64_t n = R->n, off = R->off;
  res->rows = n;
  cli_progress_add(J->prog, (double)n, lname);
  int nb = s->mdl ? culeace__mdl_bounds(n, w->ends) : 0;
  int n_mdl = w->n_mdl = nb > 1 ? nb - 1 : 0;
  int64_t P = F + (s->control ? F : 0) + n_mdl + (J->keep_final ? 1 : 0);
  int64_t n_masks = F + n_mdl + 1;
  size_t n1 = (size_t)(n ? n : 1);
  w->P = P;
  w->probes = calloc((size_t)P, sizeof *w->probes);
  w->labels = calloc((size_t)P, sizeof *w->labels);
  w->train = calloc((size_t)P, sizeof *w->train);
  w->labels_mine = calloc((size_t)P, sizeof *w->labels_mine);
  w->train_mine = calloc((size_t)P, sizeof *w->train_mine);
  w->masks = malloc((size_t)n_masks * n1);
  w->ctrl = malloc(n1 * sizeof *w->ctrl);
  w->pos = s->mdl ? malloc(n1 * sizeof *w->pos) : NULL;
  int failed = 0;
  if (!w->probes || !w->labels || !w->train || !w->labels_mine ||
      !w->train_mine || !w->masks || !w->ctrl || (s->mdl && !w->pos))
    failed = cli_error(c, "out of memory for the probes of layer %s (%lld "
                       "rows x %lld)", lname, (long long)n, (long long)d);
  uint8_t *fold_train = w->masks;                       /* (F, n) */
  uint8_t *mdl_train = w->masks + (size_t)F * (size_t)n; /* (n_mdl, n) */
  uint8_t *all = w->masks + (size_t)(F + n_mdl) * (size_t)n;
  int64_t p = 0;
  for (int64_t f = 0; !failed && f < F; f++) {
    uint8_t *t = fold_train + (size_t)f * (size_t)n;
    for (int64_t i = 0; i < n; i++) t[i] = J->fold[R->row[i]] != f;
    w->labels[p] = R->y;
    w->train[p++] = t;
  }
  if (!failed && s->control) {
    for (int64_t i = 0; i < n; i++) w->ctrl[i] = J->control[R->row[i]];
    for (int64_t f = 0; f < F; f++) {
      w->labels[p] = w->ctrl;
      w->train[p++] = fold_train + (size_t)f * (size_t)n;
    }
  }
  w->mdl_first = p;
  if (!failed && n_mdl) {
    failed = mdl_positions(J, R, w->pos);
    uint8_t *mm[CULEACE_MDL_N_BOUNDS];
    for (int b = 0; b < n_mdl; b++) mm[b] = mdl_train + (size_t)b * (size_t)n;
    if (!failed)
      probe_mdl_masks(n, k, R->y, w->pos, w->ends, nb, mm, w->usable);
    for (int b = 0; !failed && b < n_mdl; b++)
      if (w->usable[b]) {
        w->labels[p] = R->y;
        w->train[p++] = mm[b];
      }
  }
  w->final_idx = -1;
  if (!failed && J->keep_final) {
    memset(all, 1, (size_t)n);
    w->final_idx = p;
    w->labels[p] = R->y;
    w->train[p++] = all;
  }
  if (J->split && probe_split_agree(J->split, failed)) return 1;
  if (failed) return 1;
  w->P = p;
  for (int64_t q = 0; q < p; q++) {
    w->labels_mine[q] = w->labels[q] + off;
    w->train_mine[q] = w->train[q] + off;
  }
  return 0;
}

/* The second half of a layer, after its probes are fitted: held-out
 * metrics, MDL codelength, the final probe, --erase. 0, or 1 (printed). */
static int layer_end(probe_job *J, layer_ws *w) {
  const cli_common *c = J->c;
  const probe_settings *s = J->s;
  probe_layer_result *res = w->res;
  const char *lname = w->lname;
  layer_rows *L = &w->L;
  probe_rows *R = &w->R;
  int64_t d = culeace__act_width(J->act), k = J->k, F = s->folds;
  int64_t n = R->n, nl = L->n, P = w->P;
  int root = is_root(J);
  size_t n1 = (size_t)(n ? n : 1), nl1 = (size_t)(nl ? nl : 1);
  size_t xbytes = nl1 * (size_t)d * sizeof(float);
  w->test = malloc(n1);
  w->idx = malloc(nl1 * sizeof *w->idx);
  w->ysel = malloc(n1 * sizeof *w->ysel);
  w->xe = s->erase ? malloc(xbytes) : NULL;
  w->proba = malloc(n1 * (size_t)k * sizeof *w->proba);
  int failed = 0;
  if (!w->test || !w->idx || !w->ysel || (s->erase && !w->xe) ||
      !w->proba)
    failed = cli_error(c, "out of memory evaluating the probes of layer %s "
                       "(%lld rows x %lld)", lname, (long long)n,
                       (long long)d);
  if (J->split && probe_split_agree(J->split, failed)) return 1;
  if (failed) return 1;
  const uint8_t *fold_train = w->masks; /* (F, n) */
  culeace_status st;
  for (int64_t q = 0; q < P; q++) note_probe(res, w->probes[q]);
  /* held-out metrics per fold (on rank 0 under --split rows) */
  for (int64_t f = 0; f < F; f++) {
    const uint8_t *t = fold_train + (size_t)f * (size_t)n;
    for (int64_t i = 0; i < n; i++) w->test[i] = !t[i];
    int64_t m;
    if (evaluate(J, w, L->x, L->xt, w->probes[f], w->test, R->y, &m))
      return 1;
    if (m == 0) continue;
    if (root) {
      res->acc.v[f] = culeace__accuracy(m, k, w->ysel, w->proba, NULL);
      res->bal.v[f] = culeace__balanced_accuracy(m, k, w->ysel, w->proba,
                                                 NULL);
      res->ll.v[f] = culeace__log_loss(m, k, w->ysel, w->proba, NULL);
      if (k == 2) {
        res->auc.v[f] = culeace__auroc(J->ctx, m, w->ysel, w->proba + 1, 2,
                                       NULL, &st);
        if (st) return cli_error_ctx(c, J->ctx, "AUROC");
      }
      res->maj.v[f] = culeace__majority_accuracy(n, k, R->y, t, w->test,
                                                 NULL);
    }
    if (s->control) {
      if (evaluate(J, w, L->x, L->xt, w->probes[F + f], w->test, w->ctrl,
                   &m))
        return 1;
      if (root)
        res->ctrl.v[f] = culeace__accuracy(m, k, w->ysel, w->proba, NULL);
    }
  }
  /* MDL: uniform code for the first block, then each block coded with the
   * probe trained on everything before it */
  if (w->n_mdl) {
    probe_mdl *md = &res->mdl;
    double lk = log2((double)k);
    md->online_bits = (double)w->ends[0] * lk;
    md->uniform_bits = (double)n * lk;
    int64_t q = w->mdl_first;
    for (int b = 0; b < w->n_mdl; b++) {
      int64_t lo = w->ends[b], hi = w->ends[b + 1];
      if (!w->usable[b]) {
        md->online_bits += (double)(hi - lo) * lk;
        md->uniform_blocks++;
        continue;
      }
      for (int64_t i = 0; i < n; i++)
        w->test[i] = w->pos[i] >= lo && w->pos[i] < hi;
      int64_t m;
      if (evaluate(J, w, L->x, L->xt, w->probes[q++], w->test, R->y, &m))
        return 1;
      if (root)
        md->online_bits += culeace__codelength_bits(m, k, w->ysel, w->proba,
                                                    NULL);
    }
    md->blocks = w->n_mdl;
    md->compression = md->uniform_bits / md->online_bits;
    md->done = 1;
  }
  if (J->keep_final) { /* the caller saves it (probe_save_layer) */
    res->final = w->probes[w->final_idx];
    w->probes[w->final_idx] = NULL;
  }
  if (s->erase && erase_folds(J, w)) return 1;
  for (int i = 0; i < PROBE_N_METRICS; i++)
    probe_metric_summarise(probe_result_metric(res, i), F);
  if (s->control) res->selectivity = res->acc.mean - res->ctrl.mean;
  return 0;
}

/* Progress of a batched fit: a layer's folds are done. */
typedef struct {
  probe_job *J;
  layer_ws *ws;
} fit_progress;

static void layer_fitted(void *arg, int64_t l) {
  fit_progress *fp = arg;
  const layer_ws *w = &fp->ws[l];
  cli_progress_add(fp->J->prog, (double)(fp->J->s->folds * w->R.n), w->lname);
}

int probe_run_layers(probe_job *J, int64_t cnt, const int64_t *layers,
                     probe_layer_result *const *res) {
  int64_t d = culeace__act_width(J->act);
  layer_ws *ws = calloc((size_t)cnt, sizeof *ws);
  culeace__probe_layer *fit = calloc((size_t)cnt, sizeof *fit);
  int rc = 1;
  if (!ws || !fit) {
    cli_error(J->c, "out of memory");
    if (J->split) probe_split_agree(J->split, 1);
    goto done;
  }
  for (int64_t j = 0; j < cnt; j++) {
    if (layer_begin(J, layers[j], res[j], &ws[j])) goto done;
    layer_ws *w = &ws[j];
    fit[j] = (culeace__probe_layer){w->L.x, w->L.xt, w->L.n, d, w->P,
                                    w->labels_mine, w->train_mine, w->what,
                                    w->probes};
  }
  fit_progress fp = {J, ws};
  culeace_status st = culeace__probe_fit_layers_shared(
      J->ctx, cnt, fit, d, J->k, &J->s->po,
      J->split ? probe_split_reduce(J->split) : NULL, layer_fitted, &fp);
  if (st) {
    fit_error(J, st, "");
    goto done;
  }
  for (int64_t j = 0; j < cnt; j++) {
    if (layer_end(J, &ws[j])) goto done;
    ws_free(&ws[j]); /* its rows and buffers, before the next layer's */
  }
  rc = 0;
done:
  for (int64_t j = 0; ws && j < cnt; j++) ws_free(&ws[j]);
  free(ws);
  free(fit);
  return rc;
}

int probe_save_layer(probe_job *J, const probe_layer_result *r) {
  const probe_settings *s = J->s;
  culeace__probe_meta meta;
  memset(&meta, 0, sizeof meta);
  meta.layer = r->layer;
  meta.layer_name = r->name;
  meta.source_file = s->file;
  meta.source_dataset = culeace__act_dataset_path(J->act, r->layer);
  meta.label_dataset = s->y_path;
  meta.class_values = J->lab->class_values;
  meta.C = s->po.C;
  meta.tol = s->po.tol;
  meta.max_iter = s->po.max_iter;
  meta.standardize = s->po.standardize;
  meta.balanced = s->po.balanced;
  if (culeace__probe_file_add(J->save, r->final, &meta))
    return cli_error_ctx(J->c, J->ctx, "--save");
  return 0;
}
