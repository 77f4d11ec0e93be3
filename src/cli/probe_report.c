/* probe_report.c — the reports of `culeace probe`: the terminal table (best
 * layer marked), one JSON object (settings, classes, the fold assignment,
 * per-layer metrics with per-fold values) and the CSV; plus the temp-file +
 * rename helpers the file outputs share. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/probe.h"

FILE *probe_open_tmp(const cli_common *c, const char *path, char **tmp) {
  size_t len = strlen(path) + 32;
  *tmp = malloc(len);
  if (!*tmp) {
    cli_error(c, "out of memory");
    return NULL;
  }
  snprintf(*tmp, len, "%s.tmp%ld", path, (long)getpid());
  FILE *fp = fopen(*tmp, "w");
  if (!fp) {
    cli_error(c, "cannot create %s (temporary for %s): %s", *tmp, path,
              strerror(errno));
    free(*tmp);
    *tmp = NULL;
  }
  return fp;
}

int probe_commit_tmp(const cli_common *c, FILE *fp, char *tmp,
                     const char *path) {
  int bad = ferror(fp) != 0;
  if (fflush(fp) != 0) bad = 1;
  if (!bad) fsync(fileno(fp));
  if (fclose(fp) != 0) bad = 1;
  if (bad) {
    cli_error(c, "cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    free(tmp);
    return 1;
  }
  if (rename(tmp, path) != 0) {
    cli_error(c, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    unlink(tmp);
    free(tmp);
    return 1;
  }
  free(tmp);
  return 0;
}

static const char *kind_name(culeace_probe_kind k) {
  return k == CULEACE_PROBE_DIFFMEANS ? "diffmeans" : "logistic";
}

/* ---- table ----------------------------------------------------------------- */
static void cell(char *buf, size_t len, double v, const char *fmt) {
  if (isnan(v)) snprintf(buf, len, "-");
  else snprintf(buf, len, fmt, v);
}

void probe_print_table(const probe_report *r) {
  const probe_settings *s = r->s;
  int bin = r->k == 2;
  printf("  %-12s %8s  %-15s %7s", "layer", "rows", "accuracy", "bal.acc");
  if (bin) printf(" %7s", "AUROC");
  printf(" %8s %8s", "logloss", "majority");
  if (s->control) printf(" %8s %8s", "control", "select.");
  if (s->erase) printf(" %8s", "erased");
  if (s->mdl) printf(" %9s %7s", "MDL bits", "compr.");
  printf("\n");
  for (int64_t i = 0; i < r->m; i++) {
    const probe_layer_result *L = &r->layers[i];
    char acc[64], b[32];
    if (isnan(L->acc.mean)) snprintf(acc, sizeof acc, "-");
    else snprintf(acc, sizeof acc, "%.3f +- %.3f", L->acc.mean, L->acc.std);
    printf("%c %-12s %8lld  %-15s", i == r->best ? '*' : ' ', L->name,
           (long long)L->rows, acc);
    cell(b, sizeof b, L->bal.mean, "%.3f");
    printf(" %7s", b);
    if (bin) {
      cell(b, sizeof b, L->auc.mean, "%.3f");
      printf(" %7s", b);
    }
    cell(b, sizeof b, L->ll.mean, "%.4f");
    printf(" %8s", b);
    cell(b, sizeof b, L->maj.mean, "%.3f");
    printf(" %8s", b);
    if (s->control) {
      cell(b, sizeof b, L->ctrl.mean, "%.3f");
      printf(" %8s", b);
      cell(b, sizeof b, L->selectivity, "%+.3f");
      printf(" %8s", b);
    }
    if (s->erase) {
      cell(b, sizeof b, L->erased.mean, "%.3f");
      printf(" %8s", b);
    }
    if (s->mdl) {
      cell(b, sizeof b, L->mdl.online_bits, "%.0f");
      printf(" %9s", b);
      cell(b, sizeof b, L->mdl.compression, "%.2f");
      printf(" %7s", b);
    }
    printf("\n");
  }
  const probe_layer_result *B = &r->layers[r->best];
  printf("* best layer: %s (accuracy %.3f +- %.3f over %lld folds, majority "
         "baseline %.3f)\n", B->name, B->acc.mean, B->acc.std,
         (long long)s->folds, B->maj.mean);
  int unconv = 0;
  for (int64_t i = 0; i < r->m; i++) unconv += !r->layers[i].all_converged;
  if (unconv && s->po.kind == CULEACE_PROBE_LOGISTIC)
    printf("note: some probes of %d layer%s stopped at --max-iter %d before "
           "reaching --tol %g\n", unconv, unconv == 1 ? "" : "s",
           s->po.max_iter, s->po.tol);
  printf("%s probes, C = %g, %lld-fold %s cross-validation (seed %llu); "
         "std over folds\n", kind_name(s->po.kind), s->po.C,
         (long long)s->folds, r->job->groups ? "stratified group"
                                             : "stratified",
         (unsigned long long)s->seed);
  if (r->job->mpi_ranks > 1)
    printf("%s split over %d MPI ranks\n", r->job->split ? "rows" : "layers",
           r->job->mpi_ranks);
  if (s->erase)
    printf("erased: accuracy after --erase-method %s, fitted on each fold's "
           "training rows%s\n", culeace_method_name(s->erase_method),
           s->erase_method == CULEACE_METHOD_ORACLE ||
                   s->erase_method == CULEACE_METHOD_QUADRATIC
               ? " (it edits every row with its own label)"
               : "");
}

/* ---- JSON ------------------------------------------------------------------ */
/* Shortest of %.15g / %.17g that reads back as v. */
static void fmt_exact(char *buf, size_t len, double v) {
  snprintf(buf, len, "%.15g", v);
  if (strtod(buf, NULL) != v) snprintf(buf, len, "%.17g", v);
}

static void jnum(double v) {
  char b[40];
  if (isnan(v) || isinf(v)) {
    printf("null");
    return;
  }
  fmt_exact(b, sizeof b, v);
  printf("%s", b);
}

static void jmetric(const char *key, const probe_metric *m, int64_t folds,
                    int present) {
  printf(", \"%s\": ", key);
  if (!present) {
    printf("null");
    return;
  }
  printf("{\"mean\": ");
  jnum(m->mean);
  printf(", \"std\": ");
  jnum(m->std);
  printf(", \"folds\": [");
  for (int64_t f = 0; f < folds; f++) {
    printf("%s", f ? ", " : "");
    jnum(m->v[f]);
  }
  printf("]}");
}

static void jints(const int64_t *v, int64_t n) {
  printf("[");
  for (int64_t i = 0; i < n; i++)
    printf("%s%lld", i ? ", " : "", (long long)v[i]);
  printf("]");
}

/* v (n) as "a,b,c" on stdout, formatted by hand into blocks: the fold
 * assignment holds a number per row, and printf per number cost more than
 * the rest of the JSON. */
static void jints32_bare(const int32_t *v, int64_t n) {
  char buf[8192];
  size_t len = 0;
  for (int64_t i = 0; i < n; i++) {
    if (len > sizeof buf - 16) {
      fwrite(buf, 1, len, stdout);
      len = 0;
    }
    if (i) buf[len++] = ',';
    long long x = v[i];
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x
                                 : (unsigned long long)x;
    if (x < 0) buf[len++] = '-';
    char dig[12];
    int nd = 0;
    do {
      dig[nd++] = (char)('0' + u % 10);
      u /= 10;
    } while (u);
    while (nd) buf[len++] = dig[--nd];
  }
  fwrite(buf, 1, len, stdout);
}

void probe_print_json(const probe_report *r) {
  const probe_settings *s = r->s;
  const probe_job *J = r->job;
  int64_t F = s->folds, k = r->k;
  printf("{\"file\": ");
  cli_json_str(stdout, s->file);
  printf(", \"x\": ");
  cli_json_str(stdout, r->x_path);
  printf(", \"y\": ");
  cli_json_str(stdout, s->y_path);
  printf(", \"groups\": ");
  if (s->groups_path) cli_json_str(stdout, s->groups_path);
  else printf("null");
  printf(", \"fold_unit\": \"%s\"", s->groups_path    ? "group"
                                    : r->job->groups ? "example"
                                                     : "row");
  printf(", \"settings\": {\"probe\": \"%s\", \"folds\": %lld, \"seed\": %llu"
         ", \"C\": ", kind_name(s->po.kind), (long long)F,
         (unsigned long long)s->seed);
  jnum(s->po.C);
  printf(", \"tol\": ");
  jnum(s->po.tol);
  printf(", \"max_iter\": %d, \"standardize\": %s, \"balanced\": %s, "
         "\"control\": %s, \"erase\": %s, \"erase_method\": %s%s%s, "
         "\"mdl\": %s, \"std\": \"population\"}", s->po.max_iter,
         s->po.standardize ? "true" : "false",
         s->po.balanced ? "true" : "false", s->control ? "true" : "false",
         s->erase ? "true" : "false", s->erase ? "\"" : "",
         s->erase ? culeace_method_name(s->erase_method) : "null",
         s->erase ? "\"" : "", s->mdl ? "true" : "false");
  if (r->job->mpi_ranks > 1)
    printf(", \"mpi_ranks\": %d, \"mpi_split\": \"%s\"", r->job->mpi_ranks,
           r->job->split ? "rows" : "layers");
  printf(", \"classes\": ");
  jints(r->class_values, k);
  printf(", \"class_counts\": ");
  jints(r->class_counts, k);
  printf(", \"n_groups\": ");
  if (r->job->groups) printf("%lld", (long long)r->n_groups);
  else printf("null");
  /* folds: sizes, class counts per fold, and the assignment of every flat
   * row (example * t + token; -1 = not used) so others can reuse it */
  printf(", \"folds\": {\"sizes\": [");
  for (int64_t f = 0; f < F; f++) {
    int64_t sz = 0;
    for (int64_t c = 0; c < k; c++) sz += J->fold_counts[f * k + c];
    printf("%s%lld", f ? ", " : "", (long long)sz);
  }
  printf("], \"class_counts\": [");
  for (int64_t f = 0; f < F; f++) {
    printf("%s", f ? ", " : "");
    jints(J->fold_counts + f * k, k);
  }
  printf("], \"assignment\": [");
  jints32_bare(J->fold, J->N);
  printf("]}");
  printf(", \"control\": ");
  if (s->control) {
    printf("{\"seed\": %llu, \"unit\": \"%s\", \"class_counts\": ",
           (unsigned long long)J->control_seed,
           r->job->groups ? "group" : "row");
    jints(J->control_counts, k);
    printf("}");
  } else {
    printf("null");
  }
  printf(", \"layers\": [");
  for (int64_t i = 0; i < r->m; i++) {
    const probe_layer_result *L = &r->layers[i];
    printf("%s{\"layer\": %lld, \"name\": ", i ? ", " : "",
           (long long)L->layer);
    cli_json_str(stdout, L->name);
    printf(", \"rows\": %lld, \"dropped_nonfinite\": %lld",
           (long long)L->rows, (long long)L->dropped);
    jmetric("accuracy", &L->acc, F, 1);
    jmetric("balanced_accuracy", &L->bal, F, 1);
    jmetric("auroc", &L->auc, F, k == 2);
    jmetric("log_loss", &L->ll, F, 1);
    jmetric("majority", &L->maj, F, 1);
    jmetric("control_accuracy", &L->ctrl, F, s->control);
    printf(", \"selectivity\": ");
    jnum(L->selectivity);
    jmetric("erased_accuracy", &L->erased, F, s->erase);
    printf(", \"erase_fit_rows\": ");
    if (s->erase) { /* the rows each fold's eraser was fitted on */
      printf("[");
      for (int64_t f = 0; f < F; f++)
        if (isnan(L->erase_rows.v[f])) printf(f ? ", null" : "null");
        else printf(f ? ", %.0f" : "%.0f", L->erase_rows.v[f]);
      printf("]");
    } else {
      printf("null");
    }
    printf(", \"mdl\": ");
    if (L->mdl.done) {
      printf("{\"online_bits\": ");
      jnum(L->mdl.online_bits);
      printf(", \"uniform_bits\": ");
      jnum(L->mdl.uniform_bits);
      printf(", \"compression\": ");
      jnum(L->mdl.compression);
      printf(", \"blocks\": %d, \"uniform_blocks\": %d}", L->mdl.blocks,
             L->mdl.uniform_blocks);
    } else {
      printf("null");
    }
    printf(", \"converged\": %s, \"max_iterations\": %d}",
           L->all_converged ? "true" : "false", L->max_n_iter);
  }
  const probe_layer_result *B = &r->layers[r->best];
  printf("], \"best_layer\": {\"layer\": %lld, \"name\": ",
         (long long)B->layer);
  cli_json_str(stdout, B->name);
  printf(", \"accuracy\": ");
  jnum(B->acc.mean);
  printf("}");
  if (s->save) {
    printf(", \"saved\": ");
    cli_json_str(stdout, s->save);
  }
  printf("}\n");
}

/* ---- CSV ------------------------------------------------------------------- */
static void cnum(FILE *fp, double v) {
  char b[40];
  if (isnan(v) || isinf(v)) return;
  fmt_exact(b, sizeof b, v);
  fputs(b, fp);
}

/* A CSV field: quoted when it holds a comma, quote or newline. */
static void cstr(FILE *fp, const char *s) {
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, fp);
    return;
  }
  fputc('"', fp);
  for (; *s; s++) {
    if (*s == '"') fputc('"', fp);
    fputc(*s, fp);
  }
  fputc('"', fp);
}

int probe_write_csv(const cli_common *c, const probe_report *r,
                    const char *path) {
  char *tmp;
  FILE *fp = probe_open_tmp(c, path, &tmp);
  if (!fp) return 1;
  fprintf(fp, "layer,name,rows,accuracy_mean,accuracy_std,"
              "balanced_accuracy_mean,balanced_accuracy_std,auroc_mean,"
              "auroc_std,log_loss_mean,log_loss_std,majority_mean,"
              "control_accuracy_mean,control_accuracy_std,selectivity,"
              "erased_accuracy_mean,erased_accuracy_std,mdl_online_bits,"
              "mdl_uniform_bits,mdl_compression,best\n");
  for (int64_t i = 0; i < r->m; i++) {
    const probe_layer_result *L = &r->layers[i];
    fprintf(fp, "%lld,", (long long)L->layer);
    cstr(fp, L->name);
    fprintf(fp, ",%lld", (long long)L->rows);
    const probe_metric *ms[7] = {&L->acc, &L->bal, &L->auc, &L->ll,
                                 &L->maj, &L->ctrl, NULL};
    for (int j = 0; j < 6; j++) {
      fputc(',', fp);
      cnum(fp, ms[j]->mean);
      if (j == 4) continue; /* majority: mean only */
      fputc(',', fp);
      cnum(fp, ms[j]->std);
    }
    fputc(',', fp);
    cnum(fp, L->selectivity);
    fputc(',', fp);
    cnum(fp, L->erased.mean);
    fputc(',', fp);
    cnum(fp, L->erased.std);
    fputc(',', fp);
    cnum(fp, L->mdl.online_bits);
    fputc(',', fp);
    cnum(fp, L->mdl.uniform_bits);
    fputc(',', fp);
    cnum(fp, L->mdl.compression);
    fprintf(fp, ",%d\n", i == r->best);
  }
  return probe_commit_tmp(c, fp, tmp, path);
}
