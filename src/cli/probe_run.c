/* probe_run.c — one layer of `culeace probe`: reads the layer's kept rows
 * into memory as float32, fits every probe of the layer in one batched call
 * (the folds, their control-task twins, the MDL prefixes and the final probe
 * on all rows), evaluates them on their held-out rows, and with --erase fits
 * LEACE on each fold's training rows and re-probes the erased rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/layer_rows.h"
#include "cli/probe.h"
#include "core/convert.h"
#include "core/ctx.h"
#include "core/eval.h"

int probe_result_alloc(probe_layer_result *r, int64_t folds) {
  memset(r, 0, sizeof *r);
  probe_metric *ms[7] = {&r->acc, &r->bal, &r->auc, &r->ll,
                         &r->maj, &r->ctrl, &r->erased};
  for (int i = 0; i < 7; i++) {
    ms[i]->v = malloc((size_t)folds * sizeof(double));
    if (!ms[i]->v) return 1;
    for (int64_t f = 0; f < folds; f++) ms[i]->v[f] = NAN;
    ms[i]->mean = ms[i]->std = NAN;
  }
  r->selectivity = NAN;
  r->mdl.online_bits = r->mdl.uniform_bits = r->mdl.compression = NAN;
  r->all_converged = 1;
  return 0;
}

void probe_result_free(probe_layer_result *r) {
  probe_metric *ms[7] = {&r->acc, &r->bal, &r->auc, &r->ll,
                         &r->maj, &r->ctrl, &r->erased};
  for (int i = 0; i < 7; i++) {
    free(ms[i]->v);
    ms[i]->v = NULL;
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

/* Copies rows idx (cnt) of x (.., d) into out (cnt, d). */
static void gather(const float *x, int64_t d, const int64_t *idx, int64_t cnt,
                   float *out) {
  for (int64_t i = 0; i < cnt; i++)
    memcpy(out + (size_t)i * (size_t)d, x + (size_t)idx[i] * (size_t)d,
           (size_t)d * sizeof(float));
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
  layer_rows L;
  int64_t P;
  culeace_probe **probes;
  const int32_t **labels;
  const uint8_t **train;
  uint8_t *masks;     /* (P_masks, n) */
  uint8_t *test;      /* (n) */
  int64_t *idx;       /* (n) */
  int32_t *ctrl;      /* (n) control labels of the kept rows */
  int32_t *ysel;      /* (n) labels of gathered rows */
  float *xs;          /* (n, d) gathered rows */
  float *xe;          /* (n, d) erased copy (--erase) */
  double *proba;      /* (n, k) */
  int64_t *pos;       /* (n) MDL positions */
} layer_ws;

static void ws_free(layer_ws *w) {
  if (w->probes)
    for (int64_t p = 0; p < w->P; p++) culeace_probe_free(w->probes[p]);
  free(w->probes);
  free(w->labels);
  free(w->train);
  free(w->masks);
  free(w->test);
  free(w->idx);
  free(w->ctrl);
  free(w->ysel);
  free(w->xs);
  free(w->xe);
  free(w->proba);
  free(w->pos);
  layer_rows_free(&w->L);
}

typedef struct {
  int64_t a, b;
} pair64;

static int cmp_pair(const void *x, const void *y) {
  const pair64 *p = x, *q = y;
  return p->a < q->a ? -1 : p->a > q->a;
}

/* Positions 0..n-1 of the kept rows in the online-code order. */
static int mdl_positions(const probe_job *J, const layer_rows *L,
                         int64_t *pos) {
  pair64 *v = malloc((size_t)(L->n ? L->n : 1) * sizeof *v);
  if (!v) return cli_error(J->c, "out of memory");
  for (int64_t i = 0; i < L->n; i++) v[i] = (pair64){J->mdl_key[L->row[i]], i};
  qsort(v, (size_t)L->n, sizeof *v, cmp_pair);
  for (int64_t j = 0; j < L->n; j++) pos[v[j].b] = j;
  free(v);
  return 0;
}

/* Evaluates probe p on the rows of mask (labels y): gathers them, predicts,
 * and returns the number of rows; w->proba/ysel hold the predictions. */
static int evaluate(probe_job *J, layer_ws *w, const float *x,
                    const culeace_probe *p, const uint8_t *mask,
                    const int32_t *y, int64_t *cnt) {
  int64_t d = culeace__act_width(J->act);
  int64_t m = select_rows(w->L.n, mask, w->idx);
  gather(x, d, w->idx, m, w->xs);
  for (int64_t i = 0; i < m; i++) w->ysel[i] = y[w->idx[i]];
  *cnt = m;
  if (m == 0) return 0;
  if (culeace_probe_predict_proba(J->ctx, p, w->xs, m, d, w->proba))
    return cli_error_ctx(J->c, J->ctx, "predicting held-out rows");
  return 0;
}

/* --erase for fold f: the --erase-method fitted on the fold's training
 * rows erases a copy of all rows (probe_erase.c); the probe is refitted on
 * the erased training rows and scored on the test rows. */
static int erase_fold(probe_job *J, layer_ws *w, const uint8_t *train,
                      double *acc_out) {
  layer_rows *L = &w->L;
  int64_t d = culeace__act_width(J->act), k = J->k;
  culeace_probe *pe = NULL;
  int rc = 1;
  if (probe_erase_fold(J, L, train, w->idx, w->ysel, w->xe)) return 1;
  const int32_t *lab[1] = {L->y};
  const uint8_t *tr[1] = {train};
  if (culeace_probe_fit_batch(J->ctx, w->xe, L->n, d, d, k, 1, lab, tr,
                              &J->s->po, &pe)) {
    cli_error_ctx(J->c, J->ctx, "fitting the probe on erased rows");
    goto done;
  }
  for (int64_t i = 0; i < L->n; i++) w->test[i] = !train[i];
  int64_t m;
  if (evaluate(J, w, w->xe, pe, w->test, L->y, &m)) goto done;
  *acc_out = culeace__accuracy(m, k, w->ysel, w->proba, NULL);
  rc = 0;
done:
  culeace_probe_free(pe);
  return rc;
}

int probe_run_layer(probe_job *J, int64_t l, probe_layer_result *res) {
  const cli_common *c = J->c;
  const probe_settings *s = J->s;
  const char *lname = culeace__act_layer_name(J->act, l);
  int64_t d = culeace__act_width(J->act), k = J->k, F = s->folds;
  layer_ws w;
  memset(&w, 0, sizeof w);
  int rc = 1;
  res->layer = l;
  res->name = lname;
  if (layer_rows_read(c, J->ctx, J->act, s->file, l, J->lab, J->N, &w.L,
                      &res->dropped))
    return 1;
  layer_rows *L = &w.L;
  int64_t n = L->n;
  res->rows = n;
  cli_progress_add(J->prog, (double)n, lname);
  /* problems: F task folds, F control folds, the MDL prefixes, the final */
  int64_t ends[CULEACE_MDL_N_BOUNDS];
  int nb = s->mdl ? culeace__mdl_bounds(n, ends) : 0;
  int n_mdl = nb > 1 ? nb - 1 : 0;
  int64_t P = F + (s->control ? F : 0) + n_mdl + (J->keep_final ? 1 : 0);
  int64_t n_masks = F + n_mdl + 1;
  size_t xbytes = (size_t)(n ? n : 1) * (size_t)d * sizeof(float);
  w.P = P;
  w.probes = calloc((size_t)P, sizeof *w.probes);
  w.labels = calloc((size_t)P, sizeof *w.labels);
  w.train = calloc((size_t)P, sizeof *w.train);
  w.masks = malloc((size_t)n_masks * (size_t)(n ? n : 1));
  w.test = malloc((size_t)(n ? n : 1));
  w.idx = malloc((size_t)(n ? n : 1) * sizeof *w.idx);
  w.ctrl = malloc((size_t)(n ? n : 1) * sizeof *w.ctrl);
  w.ysel = malloc((size_t)(n ? n : 1) * sizeof *w.ysel);
  w.xs = malloc(xbytes);
  w.xe = s->erase ? malloc(xbytes) : NULL;
  w.proba = malloc((size_t)(n ? n : 1) * (size_t)k * sizeof *w.proba);
  w.pos = s->mdl ? malloc((size_t)(n ? n : 1) * sizeof *w.pos) : NULL;
  if (!w.probes || !w.labels || !w.train || !w.masks || !w.test || !w.idx ||
      !w.ctrl || !w.ysel || !w.xs || (s->erase && !w.xe) || !w.proba ||
      (s->mdl && !w.pos)) {
    cli_error(c, "out of memory for the probes of layer %s (%lld rows x %lld)",
              lname, (long long)n, (long long)d);
    goto done;
  }
  uint8_t *fold_train = w.masks;                      /* (F, n) */
  uint8_t *mdl_train = w.masks + (size_t)F * (size_t)n; /* (n_mdl, n) */
  uint8_t *all = w.masks + (size_t)(F + n_mdl) * (size_t)n;
  int64_t p = 0;
  for (int64_t f = 0; f < F; f++) {
    uint8_t *t = fold_train + (size_t)f * (size_t)n;
    for (int64_t i = 0; i < n; i++) t[i] = J->fold[L->row[i]] != f;
    w.labels[p] = L->y;
    w.train[p++] = t;
  }
  if (s->control) {
    for (int64_t i = 0; i < n; i++) w.ctrl[i] = J->control[L->row[i]];
    for (int64_t f = 0; f < F; f++) {
      w.labels[p] = w.ctrl;
      w.train[p++] = fold_train + (size_t)f * (size_t)n;
    }
  }
  int usable[CULEACE_MDL_N_BOUNDS];
  int64_t mdl_first = p;
  if (n_mdl) {
    if (mdl_positions(J, L, w.pos)) goto done;
    uint8_t *mm[CULEACE_MDL_N_BOUNDS];
    for (int b = 0; b < n_mdl; b++) mm[b] = mdl_train + (size_t)b * (size_t)n;
    probe_mdl_masks(n, k, L->y, w.pos, ends, nb, mm, usable);
    for (int b = 0; b < n_mdl; b++)
      if (usable[b]) {
        w.labels[p] = L->y;
        w.train[p++] = mm[b];
      }
  }
  int64_t final_idx = -1;
  if (J->keep_final) {
    memset(all, 1, (size_t)n);
    final_idx = p;
    w.labels[p] = L->y;
    w.train[p++] = all;
  }
  w.P = P = p;
  if (culeace_probe_fit_batch(J->ctx, L->x, n, d, d, k, P, w.labels, w.train,
                              &s->po, w.probes)) {
    char what[512];
    snprintf(what, sizeof what, "layer %s (%s)", lname,
             culeace__act_dataset_path(J->act, l));
    cli_error_ctx(c, J->ctx, what);
    goto done;
  }
  for (int64_t q = 0; q < P; q++) note_probe(res, w.probes[q]);
  cli_progress_add(J->prog, (double)(F * n), lname);
  /* held-out metrics per fold */
  for (int64_t f = 0; f < F; f++) {
    const uint8_t *t = fold_train + (size_t)f * (size_t)n;
    for (int64_t i = 0; i < n; i++) w.test[i] = !t[i];
    int64_t m;
    if (evaluate(J, &w, L->x, w.probes[f], w.test, L->y, &m)) goto done;
    if (m == 0) continue;
    res->acc.v[f] = culeace__accuracy(m, k, w.ysel, w.proba, NULL);
    res->bal.v[f] = culeace__balanced_accuracy(m, k, w.ysel, w.proba, NULL);
    res->ll.v[f] = culeace__log_loss(m, k, w.ysel, w.proba, NULL);
    if (k == 2) {
      culeace_status st;
      res->auc.v[f] = culeace__auroc(J->ctx, m, w.ysel, w.proba + 1, 2, NULL,
                                     &st);
      if (st) {
        cli_error_ctx(c, J->ctx, "AUROC");
        goto done;
      }
    }
    res->maj.v[f] = culeace__majority_accuracy(n, k, L->y, t, w.test, NULL);
    if (s->control) {
      if (evaluate(J, &w, L->x, w.probes[F + f], w.test, w.ctrl, &m))
        goto done;
      res->ctrl.v[f] = culeace__accuracy(m, k, w.ysel, w.proba, NULL);
    }
  }
  /* MDL: uniform code for the first block, then each block coded with the
   * probe trained on everything before it */
  if (n_mdl) {
    probe_mdl *md = &res->mdl;
    double lk = log2((double)k);
    md->online_bits = (double)ends[0] * lk;
    md->uniform_bits = (double)n * lk;
    int64_t q = mdl_first;
    for (int b = 0; b < n_mdl; b++) {
      int64_t lo = ends[b], hi = ends[b + 1];
      if (!usable[b]) {
        md->online_bits += (double)(hi - lo) * lk;
        md->uniform_blocks++;
        continue;
      }
      for (int64_t i = 0; i < n; i++) w.test[i] = w.pos[i] >= lo && w.pos[i] < hi;
      int64_t m;
      if (evaluate(J, &w, L->x, w.probes[q++], w.test, L->y, &m)) goto done;
      md->online_bits += culeace__codelength_bits(m, k, w.ysel, w.proba, NULL);
    }
    md->blocks = n_mdl;
    md->compression = md->uniform_bits / md->online_bits;
    md->done = 1;
  }
  if (J->keep_final) { /* the caller saves it (probe_save_layer) */
    res->final = w.probes[final_idx];
    w.probes[final_idx] = NULL;
  }
  if (s->erase)
    for (int64_t f = 0; f < F; f++) {
      if (erase_fold(J, &w, fold_train + (size_t)f * (size_t)n,
                     &res->erased.v[f]))
        goto done;
      cli_progress_add(J->prog, (double)n, lname);
    }
  probe_metric *ms[7] = {&res->acc, &res->bal, &res->auc, &res->ll,
                         &res->maj, &res->ctrl, &res->erased};
  for (int i = 0; i < 7; i++) probe_metric_summarise(ms[i], F);
  if (s->control) res->selectivity = res->acc.mean - res->ctrl.mean;
  rc = 0;
done:
  ws_free(&w);
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
