/* fit_iterative.c — `culeace fit --method inlp|rlace`: per selected layer,
 * reads the layer's kept rows into memory as float32 (layer_rows.c), holds
 * out one of FIT_HELD_OUT_FOLDS stratified (group-aware) folds, runs INLP or
 * R-LACE on them (CPU only), and writes the orthogonal-projection erasers
 * to an eraser file atomically; prints rank, iterations and the held-out
 * accuracy per layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/fit_iterative.h"
#include "cli/layer_rows.h"
#include "core/eval.h"

typedef struct {
  int64_t layer;
  const char *name;
  int64_t rows, dropped, held_out, rank;
  int iterations, stopped;
  double acc_before, acc_after, majority, seconds;
} iter_result;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void json_num(double v) {
  if (isfinite(v)) printf("%.6g", v);
  else printf("null");
}

static void print_results(const cli_common *c, const char *out,
                          const fit_iter_settings *s, const iter_result *r,
                          int64_t m) {
  const char *method = culeace_method_name(s->method);
  int inlp = s->method == CULEACE_METHOD_INLP;
  if (c->json) {
    printf("{\"erasers\": ");
    cli_json_str(stdout, out);
    printf(", \"method\": \"%s\", \"affine\": %s, \"seed\": %llu, "
           "\"held_out_folds\": %d, \"layers\": [", method,
           s->affine ? "true" : "false", (unsigned long long)s->seed,
           FIT_HELD_OUT_FOLDS);
    for (int64_t i = 0; i < m; i++) {
      printf("%s{\"layer\": %lld, \"name\": ", i ? ", " : "",
             (long long)r[i].layer);
      cli_json_str(stdout, r[i].name);
      printf(", \"rows\": %lld, \"dropped_nonfinite\": %lld, \"held_out\": "
             "%lld, \"rank\": %lld, \"iterations\": %d",
             (long long)r[i].rows, (long long)r[i].dropped,
             (long long)r[i].held_out, (long long)r[i].rank,
             r[i].iterations);
      if (inlp) {
        printf(", \"stopped\": %s, \"accuracy_before\": ",
               r[i].stopped ? "true" : "false");
        json_num(r[i].acc_before);
      }
      printf(", \"accuracy\": ");
      json_num(r[i].acc_after);
      printf(", \"majority\": ");
      json_num(r[i].majority);
      printf(", \"seconds\": %.3f}", r[i].seconds);
    }
    printf("]}\n");
    return;
  }
  if (inlp)
    printf("%-12s %8s %8s %5s %6s %8s %8s %8s %8s\n", "layer", "rows",
           "held-out", "rank", "iters", "acc0", "acc", "majority", "seconds");
  else
    printf("%-12s %8s %8s %5s %6s %8s %8s %8s\n", "layer", "rows",
           "held-out", "rank", "iters", "acc", "majority", "seconds");
  for (int64_t i = 0; i < m; i++) {
    printf("%-12s %8lld %8lld %5lld %6d ", r[i].name, (long long)r[i].rows,
           (long long)r[i].held_out, (long long)r[i].rank, r[i].iterations);
    if (inlp) printf("%8.4f ", r[i].acc_before);
    printf("%8.4f %8.4f %8.2f\n", r[i].acc_after, r[i].majority,
           r[i].seconds);
  }
  printf("wrote %lld %s eraser%s to %s (held-out accuracy of a logistic "
         "probe on the erased rows)\n", (long long)m, method,
         m == 1 ? "" : "s", out);
}

/* Fits one layer's eraser from its rows L with train mask tr. */
static int fit_layer(const cli_common *c, culeace_ctx *ctx,
                     const fit_iter_settings *s, const layer_rows *L,
                     int64_t d, int64_t k, const uint8_t *tr, double *acc,
                     culeace_eraser **e, iter_result *r) {
  culeace_status st;
  if (s->method == CULEACE_METHOD_INLP) {
    culeace_inlp_opts o;
    culeace_inlp_opts_init(&o);
    o.affine = s->affine;
    if (s->iterations) o.iterations = s->iterations;
    if (s->min_accuracy >= 0) o.min_accuracy = s->min_accuracy;
    culeace_inlp_report rep;
    st = culeace_inlp_fit(ctx, (const float *)L->x, L->n, d, d, L->y, k, tr, &o, e, &rep,
                          acc);
    if (!st) {
      r->rank = rep.rank;
      r->iterations = rep.iterations;
      r->stopped = rep.stopped;
      r->acc_before = acc[0];
      r->acc_after = rep.final_accuracy;
      r->majority = rep.majority;
    }
  } else {
    culeace_rlace_opts o;
    culeace_rlace_opts_init(&o);
    o.affine = s->affine;
    o.seed = s->seed;
    if (s->iterations) o.iterations = s->iterations;
    if (s->rank) o.rank = s->rank;
    culeace_rlace_report rep;
    st = culeace_rlace_fit(ctx, (const float *)L->x, L->n, d, d, L->y, k, tr, &o, e, &rep);
    if (!st) {
      r->rank = o.rank;
      r->iterations = rep.iterations;
      r->acc_before = NAN;
      r->acc_after = rep.accuracy;
      r->majority = rep.majority;
    }
  }
  if (st) return cli_error_ctx(c, ctx, r->name);
  return 0;
}

int fit_iterative(cli_common *c, const char *file, const char *z_path,
                  const char *out, const fit_iter_settings *s) {
  const char *inputs[] = {file};
  if (cli_precheck_files(c, 1, inputs)) return 1;
  culeace_ctx *ctx = cli_open_ctx(c);
  if (!ctx) return 1;
  int rc = 1;
  culeace_act *act = NULL;
  culeace_labels lab;
  memset(&lab, 0, sizeof lab);
  culeace_eraser_file *ef = NULL;
  int64_t *layers = NULL, *groups = NULL, m = 0;
  int32_t *fold = NULL;
  uint8_t *tr = NULL;
  double *acc = NULL;
  iter_result *res = NULL;
  char *cvals = NULL;
  layer_rows L;
  memset(&L, 0, sizeof L);
  const char *method = culeace_method_name(s->method);
  if (culeace__act_open(ctx, file, &c->spec, 0, &act)) {
    cli_error_ctx(c, ctx, "");
    goto done;
  }
  int64_t n = culeace__act_examples(act), t = culeace__act_tokens(act);
  int64_t d = culeace__act_width(act), N = n * t;
  if (culeace__labels_read_masked(ctx, file, z_path, n, t, c->spec.x_path,
                                  culeace__act_mask(act), &lab)) {
    cli_error_ctx(c, ctx, "");
    goto done;
  }
  if (lab.continuous) {
    cli_error(c, "--method %s needs integer class labels; --z %s holds "
              "floating-point values", method, z_path);
    goto done;
  }
  int64_t k = lab.n_classes;
  if (s->rank > d) {
    cli_error(c, "--rank %lld is larger than the width d = %lld of %s",
              (long long)s->rank, (long long)d, c->spec.x_path);
    goto done;
  }
  if (s->groups_path) {
    if (culeace__groups_read(ctx, file, s->groups_path, n, t, &groups)) {
      cli_error_ctx(c, ctx, "--groups");
      goto done;
    }
  } else if (t > 1) { /* an example's tokens stay on one side */
    groups = malloc((size_t)N * sizeof *groups);
    if (!groups) {
      cli_error(c, "out of memory");
      goto done;
    }
    for (int64_t i = 0; i < N; i++) groups[i] = i / t;
  }
  m = cli_parse_layers(c, c->layers, act, &layers);
  if (m < 0) goto done;
  { /* the layer's rows as float32, a working copy and a projected copy,
       and (R-LACE) a few d x d float64 matrices */
    double need = 3.0 * (double)N * (double)d * 4.0 +
                  (s->method == CULEACE_METHOD_RLACE ? 4.0 : 0.0) *
                      (double)d * (double)d * 8.0;
    char what[200];
    snprintf(what, sizeof what, "%s on %lld rows of width %lld (the rows as "
             "float32, three copies)", method, (long long)N, (long long)d);
    if (cli_check_memory(c, need, what)) goto done;
  }
  fold = malloc((size_t)(N ? N : 1) * sizeof *fold);
  tr = malloc((size_t)(N ? N : 1));
  acc = malloc(((size_t)(s->iterations > 0 ? s->iterations : 20) + 1) *
               sizeof *acc);
  res = calloc((size_t)m, sizeof *res);
  cvals = fit_class_values_str(&lab);
  if (!fold || !tr || !acc || !res || !cvals) {
    cli_error(c, "out of memory");
    goto done;
  }
  if (culeace__stratified_folds(ctx, N, lab.classes, k, groups,
                                FIT_HELD_OUT_FOLDS, s->seed, lab.class_values,
                                fold)) {
    cli_error_ctx(c, ctx, "splitting off the held-out rows");
    goto done;
  }
  if (culeace_eraser_file_create(ctx, out, &ef)) {
    cli_error_ctx(c, ctx, "");
    goto done;
  }
  for (int64_t i = 0; i < m; i++) {
    int64_t l = layers[i];
    iter_result *r = &res[i];
    r->layer = l;
    r->name = culeace__act_layer_name(act, l);
    double t0 = now_s();
    if (layer_rows_read(c, ctx, act, file, l, &lab, N, &L, &r->dropped))
      goto done;
    r->rows = L.n;
    for (int64_t j = 0; j < L.n; j++) {
      tr[j] = fold[L.row[j]] != 0;
      r->held_out += !tr[j];
    }
    culeace_eraser *e = NULL;
    if (fit_layer(c, ctx, s, &L, d, k, tr, acc, &e, r)) goto done;
    layer_rows_free(&L);
    r->seconds = now_s() - t0;
    culeace_eraser_meta meta;
    culeace_eraser_meta_init(&meta);
    meta.source_file = file;
    meta.source_dataset = culeace__act_dataset_path(act, l);
    meta.layer = l;
    meta.layer_name = r->name;
    meta.label_dataset = z_path;
    meta.class_values = cvals;
    culeace_status st = culeace_eraser_file_add(ef, e, &meta);
    culeace_eraser_free(e);
    if (st) {
      cli_error_ctx(c, ctx, "");
      goto done;
    }
  }
  if (culeace_eraser_file_commit(ef)) {
    cli_error_ctx(c, ctx, "");
    goto done;
  }
  print_results(c, out, s, res, m);
  rc = 0;
done:
  layer_rows_free(&L);
  culeace_eraser_file_free(ef);
  culeace__labels_free(&lab);
  if (act) culeace__act_close(act);
  culeace_ctx_free(ctx);
  free(layers);
  free(groups);
  free(fold);
  free(tr);
  free(acc);
  free(res);
  free(cvals);
  return rc;
}
