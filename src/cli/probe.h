/* probe.h — shared pieces of `culeace probe`: the settings, the state shared
 * by every layer (folds, control labels, MDL order), the per-layer results,
 * and the functions of the files that run a layer (probe_run.c), the MDL
 * online code (probe_mdl.c), and write the reports (probe_report.c: table,
 * JSON, CSV; probe_plot.c: SVG and PNG). */
#ifndef CULEACE_CLI_PROBE_H
#define CULEACE_CLI_PROBE_H

#include <stdint.h>

#include "cli/cli.h"
#include "cli/layer_rows.h"
#include "io/probe_file.h"

typedef enum { PROBE_SPLIT_AUTO = 0, PROBE_SPLIT_LAYERS, PROBE_SPLIT_ROWS } probe_split_how;

/* What the user asked for. */
typedef struct {
  const char *file, *y_path, *groups_path;
  const char *csv, *plot, *save;
  int64_t folds;
  uint64_t seed;
  culeace_probe_opts po; /* kind, C, tol, max_iter, standardize, balanced */
  int control, erase, mdl;
  culeace_method erase_method; /* --erase-method (leace) */
  int erase_iterations;        /* --erase-iterations (0: the method's) */
  probe_split_how split;       /* --split, under MPI */
  int64_t batch_layers;        /* --batch-layers (0: by --max-memory) */
} probe_settings;

/* A per-fold metric: values (folds), NAN where not defined. */
typedef struct {
  double *v;
  double mean, std; /* over the defined folds; std is the population std
                       (numpy's default), NAN when none is defined */
} probe_metric;

/* MDL online code of one layer (Voita & Titov 2020). */
typedef struct {
  int done;
  int blocks;          /* transmitted blocks (after the first) */
  int uniform_blocks;  /* blocks sent with the uniform code because their
                          training prefix lacked a class */
  double online_bits, uniform_bits, compression;
} probe_mdl;

typedef struct {
  int64_t layer;
  const char *name;
  int64_t rows, dropped;
  probe_metric acc, bal, auc, ll, maj, ctrl, erased;
  probe_metric erase_rows; /* rows each fold's --erase eraser was fitted on */
  double selectivity; /* acc.mean - ctrl.mean, NAN without --control */
  probe_mdl mdl;
  int all_converged; /* every fitted probe reached tol */
  int max_n_iter;    /* most L-BFGS iterations any of the layer's probes took */
  culeace_probe *final; /* fitted on all rows (probe_job.keep_final), owned */
} probe_layer_result;

/* A layer's kept rows as a whole: in a plain run (and a layer split) the
 * rows this process read; under --split rows the rows of every rank, in
 * rank order, of which this rank holds [off, off + nl). row (n): flat row
 * ids, y (n): classes. */
typedef struct {
  int64_t n, off, nl;
  const int64_t *row;
  const int32_t *y;
  int64_t *row_buf; /* owned copies under --split rows, else NULL */
  int32_t *y_buf;
} probe_rows;

struct probe_split; /* --split rows under MPI (mpi_probe.h) */

/* State shared by all layers (indexed by flat row: example * t + token). */
typedef struct {
  const cli_common *c;
  const probe_settings *s;
  culeace_ctx *ctx;
  culeace_act *act;
  const culeace_labels *lab;  /* classes, -1 on masked rows */
  const int64_t *groups;      /* (N) or NULL */
  int64_t N;                  /* flat rows: n * t */
  int64_t k;
  int32_t *fold;              /* (N) fold of each row, -1 unused */
  int64_t *fold_counts;       /* (folds, k) rows per fold and class */
  int32_t *control;           /* (N) control labels or NULL */
  uint64_t control_seed;      /* the seed the control labels were drawn with */
  int64_t *control_counts;    /* (k) rows per control class */
  int64_t *mdl_key;           /* (N) position of each row in the online-code
                                 order (groups kept together), or NULL */
  culeace__probe_file *save;  /* --save, on rank 0 once every layer is
                                 done (temp file until commit), or NULL */
  int mpi_ranks;              /* ranks of an MPI run, or 0 */
  struct probe_split *split;  /* rows split over those ranks (every rank
                                 probes every layer), or NULL: a plain run
                                 or layers split */
  layer_rows *ready;          /* (n_ready) layers read ahead together (a
                                 stacked dataset: one pass over the file),
                                 taken by probe_run_layers, or NULL */
  const int64_t *ready_layers;
  int64_t *ready_dropped;
  int64_t n_ready;
  int64_t batch;              /* layers per batched fit (>= 1) */
  int keep_final;             /* fit each layer's probe on all rows too
                                 (probe_layer_result.final), for --save */
  cli_progress *prog;
  double units_per_layer;     /* progress units of one layer */
} probe_job;

typedef struct {
  const probe_settings *s;
  const char *x_path;
  int64_t k;
  const int64_t *class_values, *class_counts;
  int64_t n_groups;     /* 0 without --groups */
  const probe_job *job;
  const probe_layer_result *layers;
  int64_t m;
  int64_t best;         /* index into layers of the best layer (accuracy) */
} probe_report;

/* ---- probe_run.c --------------------------------------------------------- */
/* Reads the kept rows of the cnt layers `layers`, fits every probe of all
 * of them in one batched fit (their L-BFGS steps together), then evaluates
 * each layer's into res[j]. 0 ok, 1 error (message printed). res[j]->*.v
 * must be allocated by the caller (probe_result_alloc). Under --split rows
 * every rank makes the same call. */
int probe_run_layers(probe_job *J, int64_t cnt, const int64_t *layers,
                     probe_layer_result *const *res);

int probe_result_alloc(probe_layer_result *r, int64_t folds);
/* The per-fold metrics of a result, i < PROBE_N_METRICS: acc, bal, auc,
 * ll, maj, ctrl, erased, erase_rows. */
enum { PROBE_N_METRICS = 8 };
probe_metric *probe_result_metric(probe_layer_result *r, int i);
/* Adds r->final with its metadata to J->save. 0, or 1 (printed). */
int probe_save_layer(probe_job *J, const probe_layer_result *r);
void probe_result_free(probe_layer_result *r);
/* Fills mean/std of a metric over its defined folds. */
void probe_metric_summarise(probe_metric *m, int64_t folds);

/* ---- probe_erase.c ------------------------------------------------------ */
/* The moments of each fold's own rows for a moment-based --erase-method
 * (leace, orth, oracle, quadratic): state (F, count) holds F fitter states
 * (culeace_fitter_export; under --split rows merged over the ranks), so a
 * fold's training moments are the merge of the other folds'. state is NULL
 * for inlp and rlace, and when the F states would take more than a quarter
 * of --max-memory (each fold then sums its training rows itself). */
typedef struct {
  int64_t F;
  size_t count;
  double *state;
} probe_fold_moments;
/* Fills fm for layer L (this process's rows) from fold_train (F masks over
 * all n_all rows of the layer, this process's from off). idx, ysel, xe:
 * scratch of L->n rows. 0 ok, 1 error (printed). */
int probe_erase_moments(probe_job *J, const layer_rows *L,
                        const uint8_t *fold_train, int64_t n_all,
                        int64_t off, int64_t *idx, int32_t *ysel, float *xe,
                        probe_fold_moments *fm);
void probe_fold_moments_free(probe_fold_moments *fm);
/* --erase for fold f: fits the --erase-method on the training rows of L
 * (train mask; from fm's other folds when fm->state is set, else from the
 * rows), writes the erased copy of all n rows into xe (n, d); *fit_rows:
 * the rows the eraser was fitted on (over all ranks). idx (n) and ysel
 * (n): scratch. 0 ok, 1 error (printed). */
int probe_erase_fold(probe_job *J, const layer_rows *L, const uint8_t *train,
                     const probe_fold_moments *fm, int64_t f, int64_t *idx,
                     int32_t *ysel, float *xe, int64_t *fit_rows);

/* ---- probe_mdl.c --------------------------------------------------------- */
/* Online-code order of the used rows: key (N) = position of each flat row
 * (-1 unused); groups stay contiguous. 0 ok, 1 error (printed). */
int probe_mdl_order(const cli_common *c, int64_t N, const int32_t *labels,
                    const int64_t *groups, uint64_t seed, int64_t *key);
/* Training masks of the online code for n kept rows with positions pos (n,
 * 0..n-1): writes up to CULEACE_MDL_N_BOUNDS - 1 masks (each n bytes, from
 * masks[b]) for the blocks whose prefix has every class; usable[b] = 1 for
 * those. ends: the bounds (culeace__mdl_bounds). Returns the number of
 * blocks (bounds - 1). */
int probe_mdl_masks(int64_t n, int64_t k, const int32_t *y,
                    const int64_t *pos, const int64_t *ends, int nb,
                    uint8_t **masks, int *usable);

/* ---- probe_report.c ------------------------------------------------------ */
void probe_print_table(const probe_report *r);
void probe_print_json(const probe_report *r);
/* Writes the CSV to path (temp + rename). 0 ok, 1 error (printed). */
int probe_write_csv(const cli_common *c, const probe_report *r,
                    const char *path);

/* ---- probe_plot.c -------------------------------------------------------- */
/* Writes the SVG to path (temp + rename), then a PNG next to it (same name,
 * .png) when rsvg-convert or convert is on PATH (a failed conversion is a
 * warning). 0 ok, 1 error (printed). */
int probe_write_plot(const cli_common *c, const probe_report *r,
                     const char *path);
/* Removes the SVG and the PNG probe_write_plot wrote next to it. */
void probe_remove_plot(const char *path);

/* ---- shared helpers (probe_report.c) ------------------------------------- */
/* Opens PATH.tmpPID for writing; *tmp gets the malloc'd temp name. */
FILE *probe_open_tmp(const cli_common *c, const char *path, char **tmp);
/* fclose + fsync + rename; removes the temp file on failure. 0 ok. */
int probe_commit_tmp(const cli_common *c, FILE *fp, char *tmp,
                     const char *path);

int cmd_probe(int argc, char **argv);
int cmd_score(int argc, char **argv);

#endif
