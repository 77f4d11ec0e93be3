/* mpi_fit.c — `culeace fit` under mpirun/srun (docs/CLUSTER.md). Rank r of
 * N fits examples [r n / N, (r + 1) n / N) of every selected layer (every
 * rank reads all labels, so the class mapping is the same everywhere); the
 * fitter states meet on rank 0 along a binomial tree (mpi_reduce.c); rank 0
 * finalises each layer and, once every layer is done, writes the eraser file
 * (atomically, as the plain fit). After every step the ranks agree on
 * failure: one rank's bad read fails the job on every rank, with that
 * rank's message, and nothing is written. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/fit_report.h"
#include "cli/mpi_fit.h"
#include "cli/mpi_reduce.h"

/* What a run holds, freed in one place. */
typedef struct {
  culeace_ctx *ctx;
  culeace_act *act;
  culeace_labels lab;
  int64_t *layers, m;
  culeace_eraser **erasers; /* (m) rank 0 */
  fit_layer_result *res;    /* (m) rank 0 */
  double *buf, *tmp;        /* (count) fitter states in flight */
  size_t count;
  char *cvals;
} fit_run;

/* "v0,v1,..." class values for the eraser metadata; NULL if continuous. */
static char *class_values(const culeace_labels *lab) {
  if (lab->continuous) return NULL;
  size_t cap = (size_t)lab->n_classes * 24 + 1, used = 0;
  char *s = malloc(cap);
  if (!s) return NULL;
  s[0] = 0;
  for (int64_t i = 0; i < lab->n_classes; i++)
    used += (size_t)snprintf(s + used, cap - used, "%s%lld", i ? "," : "",
                             (long long)lab->class_values[i]);
  return s;
}

/* Fits this rank's rows of layer l into f; 0, or 1 (message printed). */
static int fit_shard(const cli_common *c, fit_run *R, const mpi_world *w,
                     const char *file, int64_t l, culeace_fitter *f,
                     cli_progress *prog, int64_t *dropped) {
  culeace_act *act = R->act;
  int64_t n = culeace__act_examples(act), d = culeace__act_width(act);
  int64_t ex0 = mpi_shard_start(n, w->rank, w->size),
          ex1 = mpi_shard_start(n, w->rank + 1, w->size);
  cli_rows rows;
  if (cli_rows_open(&rows, c, R->ctx, act, file, l, &R->lab)) return 1;
  if (cli_rows_range(&rows, ex0, ex1)) {
    cli_rows_close(&rows);
    return 1;
  }
  culeace_status st = CULEACE_OK;
  int more;
  while ((more = cli_rows_next(&rows)) == 1) {
    if (rows.n_rows > 0) {
      st = R->lab.continuous
               ? culeace_fitter_update_continuous(
                     f, rows.rows, culeace__act_dtype(act), rows.n_rows, d,
                     rows.z, R->lab.k)
               : culeace_fitter_update_classes(f, rows.rows,
                                               culeace__act_dtype(act),
                                               rows.n_rows, d, rows.classes);
      if (st) break;
    }
    cli_progress_add(prog, (double)rows.raw_rows,
                     culeace__act_layer_name(act, l));
  }
  if (st == CULEACE_ERR_NONFINITE) cli_rows_nonfinite_error(&rows);
  else if (st) cli_error_ctx(c, R->ctx, culeace__act_dataset_path(act, l));
  *dropped = rows.dropped;
  cli_rows_close(&rows);
  return more < 0 || st != CULEACE_OK;
}

/* Opens the file, reads all labels, selects layers, checks memory and (rank
 * 0) that the output can be created; 0 or 1 (message printed). */
static int setup(const cli_common *c, fit_run *R, const mpi_world *w,
                 const char *file, const char *z_path, const char *out,
                 const culeace_fit_opts *o) {
  R->ctx = mpi_open_ctx(c, w);
  if (!R->ctx) return 1;
  if (culeace__act_open(R->ctx, file, &c->spec, 0, &R->act))
    return cli_error_ctx(c, R->ctx, "");
  culeace_act *act = R->act;
  if (culeace__labels_read_masked(R->ctx, file, z_path,
                                  culeace__act_examples(act),
                                  culeace__act_tokens(act), c->spec.x_path,
                                  culeace__act_mask(act), &R->lab))
    return cli_error_ctx(c, R->ctx, "");
  R->m = cli_parse_layers(c, c->layers, act, &R->layers);
  if (R->m < 0) return 1;
  int64_t d = culeace__act_width(act);
  culeace_fitter *probe = NULL;
  if (culeace_fitter_create(R->ctx, d,
                            R->lab.continuous ? R->lab.k : R->lab.n_classes,
                            R->lab.continuous ? CULEACE_Z_CONTINUOUS
                                              : CULEACE_Z_CLASSES,
                            o, &probe) ||
      culeace_fitter_state_size(probe, &R->count)) {
    culeace_fitter_free(probe);
    return cli_error_ctx(c, R->ctx, "");
  }
  culeace_fitter_free(probe);
  /* as the plain fit (8 d x d float64 and a block), plus two states */
  double dd = (double)d;
  double blk = (double)cli_examples_per_block(c, act) *
               (double)culeace__act_tokens(act) * dd *
               (2.0 * (double)culeace_dtype_size(culeace__act_dtype(act)) + 8);
  char what[200];
  double mats = cli_fit_matrices(o->method, R->lab.n_classes);
  snprintf(what, sizeof what, "fitting an eraser of width d = %lld under MPI "
           "(%g d x d float64 matrices, 2 fitter states and a block of rows)",
           (long long)d, mats);
  if (cli_check_memory(c, mats * dd * dd * 8.0 + 16.0 * (double)R->count + blk,
                       what))
    return 1;
  R->buf = malloc(R->count * 8);
  R->tmp = malloc(R->count * 8);
  R->erasers = calloc((size_t)R->m, sizeof *R->erasers);
  R->res = calloc((size_t)R->m, sizeof *R->res);
  R->cvals = class_values(&R->lab);
  if (!R->buf || !R->tmp || !R->erasers || !R->res ||
      (!R->lab.continuous && !R->cvals))
    return cli_error(c, "out of memory for the fitter states (%zu bytes "
                     "each)", R->count * 8);
  if (w->rank == 0) { /* fail now, not after the fit, on an unwritable -o */
    culeace_eraser_file *ef = NULL;
    if (culeace_eraser_file_create(R->ctx, out, &ef))
      return cli_error_ctx(c, R->ctx, "");
    culeace_eraser_file_free(ef); /* removes the temporary file */
  }
  return 0;
}

/* Rank 0: the erasers to OUT (temporary file renamed when complete). */
static int write_erasers(const cli_common *c, fit_run *R, const char *file,
                         const char *z_path, const char *out) {
  culeace_eraser_file *ef = NULL;
  int failed = culeace_eraser_file_create(R->ctx, out, &ef) != CULEACE_OK;
  for (int64_t i = 0; !failed && i < R->m; i++) {
    int64_t l = R->layers[i];
    culeace_eraser_meta meta;
    culeace_eraser_meta_init(&meta);
    meta.source_file = file;
    meta.source_dataset = culeace__act_dataset_path(R->act, l);
    meta.layer = l;
    meta.layer_name = culeace__act_layer_name(R->act, l);
    meta.label_dataset = z_path;
    meta.class_values = R->cvals;
    failed = culeace_eraser_file_add(ef, R->erasers[i], &meta) != CULEACE_OK;
  }
  if (!failed) failed = culeace_eraser_file_commit(ef) != CULEACE_OK;
  if (failed) cli_error_ctx(c, R->ctx, "");
  culeace_eraser_file_free(ef);
  return failed;
}

/* One layer: local fit, agreement, tree merge, rank 0 finalises. */
static int fit_layer(const cli_common *c, fit_run *R, const mpi_world *w,
                     const char *file, const culeace_fit_opts *o, int64_t i,
                     cli_progress *prog) {
  int64_t l = R->layers[i], dropped = 0, total = 0;
  culeace_fitter *f = NULL;
  int failed = 0, first;
  if (culeace_fitter_create(R->ctx, culeace__act_width(R->act),
                            R->lab.continuous ? R->lab.k : R->lab.n_classes,
                            R->lab.continuous ? CULEACE_Z_CONTINUOUS
                                              : CULEACE_Z_CLASSES,
                            o, &f))
    failed = cli_error_ctx(c, R->ctx, "");
  if (!failed) failed = fit_shard(c, R, w, file, l, f, prog, &dropped);
  if (i == 0) mpi_test_stall(w->rank);
  if (mpi_any_failed(w, failed, &first)) goto out;
  char err[1200] = "";
  failed = mpi_merge_states(w, R->ctx, f, R->buf, R->tmp, R->count, err,
                            sizeof err);
  if (failed) cli_error(c, "%s: %s", culeace__act_layer_name(R->act, l), err);
  MPI_Reduce(&dropped, &total, 1, MPI_INT64_T, MPI_SUM, 0, w->comm);
  if (!failed && w->rank == 0) {
    culeace_eraser_info info;
    if (culeace_fitter_finalize(f, &R->erasers[i]) ||
        culeace_eraser_info_get(R->erasers[i], &info)) {
      failed = cli_error_ctx(c, R->ctx, culeace__act_dataset_path(R->act, l));
    } else {
      R->res[i] = (fit_layer_result){culeace__act_layer_name(R->act, l), l,
                                 culeace_fitter_rows(f), total, info.rank};
      if (info.rank == 0 && (info.method == CULEACE_METHOD_LEACE ||
                             info.method == CULEACE_METHOD_ORTH) &&
          !c->quiet)
        fprintf(stderr, "%s: warning: layer %s: no direction above --svd-tol "
                "%g; its eraser is the identity\n", c->prog, R->res[i].name,
                o->svd_tol);
    }
  }
  mpi_any_failed(w, failed, &first);
out:
  culeace_fitter_free(f);
  if (first < w->size && first != 0 && w->rank == 0)
    cli_error(c, "layer %s: rank %d of %d failed (its message above); "
              "nothing written", culeace__act_layer_name(R->act, l), first,
              w->size);
  return first < w->size;
}

int fit_mpi(const cli_common *c0, const char *file, const char *z_path,
            const char *out, const culeace_fit_opts *o) {
  const char *inputs[] = {file};
  int failed = cli_precheck_files(c0, 1, inputs); /* forks: before MPI */
  mpi_world w;
  mpi_world_init(&w);
  cli_common cc = *c0;
  char name[96];
  snprintf(name, sizeof name, "%s (rank %d of %d)", c0->prog, w.rank,
           w.size);
  cc.prog = name;
  if (w.rank != 0) cc.quiet = 1; /* progress and notes on rank 0 only */
  const cli_common *c = &cc;
  const char *which = NULL;
  int64_t launched = mpi_launcher_size(&which);
  fit_run R;
  memset(&R, 0, sizeof R);
  int first = w.size, rc = 1;
  if (!failed && launched > 0 && launched != w.size)
    failed = cli_error(c, "the launcher started %lld ranks (%s) but MPI sees "
                       "%d: under srun, pass the MPI plugin your MPI was "
                       "built for (srun --mpi=pmix; srun --mpi=list)",
                       (long long)launched, which, w.size);
  if (!failed && (o->method == CULEACE_METHOD_INLP ||
                  o->method == CULEACE_METHOD_RLACE))
    failed = w.rank == 0 ? cli_error(c, "--method %s is not sharded under MPI "
                                     "yet (docs/CLUSTER.md): run it without "
                                     "mpirun/srun",
                                     culeace_method_name(o->method))
                         : 1;
  if (!failed) failed = setup(c, &R, &w, file, z_path, out, o);
  if (mpi_any_failed(&w, failed, &first)) {
    if (first != 0 && w.rank == 0)
      cli_error(c, "rank %d of %d failed (its message above); nothing "
                "written", first, w.size);
    goto done;
  }
  cli_progress prog;
  int64_t n = culeace__act_examples(R.act), t = culeace__act_tokens(R.act);
  int64_t mine = mpi_shard_start(n, w.rank + 1, w.size) -
                 mpi_shard_start(n, w.rank, w.size);
  cli_progress_start(&prog, c, "fit", (double)(mine * t) * (double)R.m,
                     (double)culeace__act_width(R.act) *
                         (double)culeace_dtype_size(culeace__act_dtype(R.act)));
  for (int64_t i = 0; i < R.m; i++)
    if (fit_layer(c, &R, &w, file, o, i, &prog)) goto done;
  cli_progress_end(&prog);
  failed = w.rank == 0 ? write_erasers(c, &R, file, z_path, out) : 0;
  if (mpi_any_failed(&w, failed, &first)) goto done;
  if (w.rank == 0) fit_print_results(c, out, R.res, R.m, o, w.size);
  rc = 0;
done:
  for (int64_t i = 0; R.erasers && i < R.m; i++)
    culeace_eraser_free(R.erasers[i]);
  free(R.erasers);
  free(R.res);
  free(R.buf);
  free(R.tmp);
  free(R.cvals);
  free(R.layers);
  culeace__labels_free(&R.lab);
  if (R.act) culeace__act_close(R.act);
  culeace_ctx_free(R.ctx);
  fflush(stdout);
  fflush(stderr);
  MPI_Finalize();
  return rc;
}
