/* cli.h — shared pieces of the `culeace` command: common options, the
 * context, error printing, layer selection, progress, and the row stream
 * that every subcommand reads activations through. */
#ifndef CULEACE_CLI_H
#define CULEACE_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "culeace.h"
#include "io/activations.h"

enum { EXIT_USAGE = 2 };

/* Options every data-reading subcommand accepts. */
typedef struct {
  const char *prog;       /* "culeace fit" (for messages) */
  culeace_act_spec spec;  /* --x, --layer-axis, --tokens, --mask */
  const char *layers;     /* --layers (NULL = all) */
  const char *device;     /* --device auto|cpu|cuda[:N] */
  int threads;            /* --threads */
  int64_t block_rows;     /* --block-rows */
  int64_t max_memory;     /* --max-memory bytes; 0 = 75% of physical */
  int quiet, json;
  int drop_nonfinite;
} cli_common;

void cli_common_init(cli_common *c, const char *prog);
/* getopt_long entries of the options cli_common_option handles; put first
 * in each data-reading subcommand's table. */
#define CLI_COMMON_LONG_OPTIONS                                                \
  {"x", 1, 0, 0}, {"layer-axis", 1, 0, 0}, {"tokens", 0, 0, 0},                \
      {"mask", 1, 0, 0}, {"layers", 1, 0, 0}, {"device", 1, 0, 0},             \
      {"threads", 1, 0, 0}, {"block-rows", 1, 0, 0}, {"json", 0, 0, 0},        \
      {"quiet", 0, 0, 0}, {"drop-nonfinite", 0, 0, 0},                      \
      {"max-memory", 1, 0, 0}

/* Handles one common long option (by name, with optarg); returns 1 if it
 * was one, 0 if not, -1 on a bad value (message printed). */
int cli_common_option(cli_common *c, const char *name, const char *arg);
/* Help text of the common options. */
extern const char *cli_common_help;

/* Prints "culeace CMD: error: ..." to stderr; returns 1. */
int cli_error(const cli_common *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Same with the context's last error appended. */
int cli_error_ctx(const cli_common *c, culeace_ctx *ctx, const char *what);

/* Creates the context from --device/--threads; prints the device note
 * unless quiet. NULL on failure (message printed). */
culeace_ctx *cli_open_ctx(const cli_common *c);

/* Reads each input file's HDF5 metadata in a child process first; 1 (and
 * the message) if that crashed libhdf5 (precheck.c). */
int cli_precheck_files(const cli_common *c, int n, const char *const *paths);

/* Parses "all" or "0,3-7" against L layers into a sorted, de-duplicated list;
 * names may also be given (layer names as in the file). Returns count or -1
 * (message printed). *out must be freed. */
int64_t cli_parse_layers(const cli_common *c, const char *sel,
                         const culeace_act *a, int64_t **out);

/* Parses a non-negative integer option value; -1 on error. */
int64_t cli_parse_int(const char *s);

/* 1 if paths a and b name the same existing file. */
int cli_same_file(const char *a, const char *b);

/* ---- progress ----------------------------------------------------------- */
typedef struct {
  int enabled;
  const char *label;
  double t0, last;
  double total_rows, done_rows;
  double bytes_per_row;
} cli_progress;

/* Enabled only when stderr is a terminal and not quiet. */
void cli_progress_start(cli_progress *p, const cli_common *c,
                        const char *label, double total_rows,
                        double bytes_per_row);
void cli_progress_add(cli_progress *p, double rows, const char *what);
void cli_progress_end(cli_progress *p);

/* ---- row stream ----------------------------------------------------------- */
/* Streams the kept rows of one layer in blocks: reads whole examples, drops
 * masked tokens, checks for NaN/Inf (error naming the row, or skip with
 * --drop-nonfinite), and carries the matching labels along. */
typedef struct {
  const cli_common *c;
  culeace_ctx *ctx;
  culeace_act *act;
  const char *file;
  int64_t layer;
  const culeace_labels *labels; /* may be NULL */
  int64_t ex_per_block;
  int64_t next_ex;
  int64_t end_ex;   /* examples [next_ex, end_ex) are left to read */
  /* current block */
  int64_t raw_rows; /* rows of the block as read, masked ones included */
  int64_t *row_ids; /* (rows) flat row index (example * t + token) */
  void *rows;       /* kept rows, contiguous (rows, d): rows_buf, or the
                       caller's buffer (cli_rows_next_into); the block is
                       read there and its kept rows compacted in place */
  void *rows_buf;   /* (ex_per_block * t, d) page-locked on a GPU context */
  int32_t *classes; /* (rows) or NULL */
  double *z;        /* (rows, k) or NULL */
  int64_t n_rows;
  int64_t dropped;  /* rows skipped as non-finite so far */
  int64_t masked;   /* rows skipped by the mask so far */
} cli_rows;

/* Returns 0 ok, 1 error (message printed). */
int cli_rows_open(cli_rows *s, const cli_common *c, culeace_ctx *ctx,
                  culeace_act *act, const char *file, int64_t layer,
                  const culeace_labels *labels);
/* Next block: 1 if a block was read (s->n_rows may be 0 when every row
 * of it was masked or dropped), 0 at end, -1 on
 * error (message printed). */
int cli_rows_next(cli_rows *s);
/* cli_rows_next reading the block into dst (s->rows = dst) instead of
 * s->rows_buf when the block's rows fit the room dst has (rows of the
 * file's type): a caller that holds every row saves a copy of each. */
int cli_rows_next_into(cli_rows *s, void *dst, int64_t room);
void cli_rows_close(cli_rows *s);
/* Restricts the stream to examples [ex0, ex1) of the layer (a shard of
 * the row axis, e.g. one MPI rank's); call after cli_rows_open, before the
 * first cli_rows_next. Returns 0, or 1 for a range outside 0..n. */
int cli_rows_range(cli_rows *s, int64_t ex0, int64_t ex1);
/* After the library refused the current block with CULEACE_ERR_NONFINITE:
 * prints which row of the file (example, token, column) it was; returns 1. */
int cli_rows_nonfinite_error(cli_rows *s);

/* Whether m > 1 layers are slices of one dataset (a stacked layout), whose
 * chunks may hold every layer's values of a block of rows. */
int cli_layers_share_a_dataset(const culeace_act *act, const int64_t *layers,
                               int64_t m);

/* --block-rows for each of g streams read side by side over the layers of
 * one dataset: the g blocks share the quarter of the budget one block
 * gets, and a block is one row of chunks, or an equal part of one (aligned
 * with them from example 0), which the dataset's chunk cache holds while
 * every layer reads it. */
int64_t cli_group_block_rows(const cli_common *c, const culeace_act *a,
                             int64_t g);

/* Examples per block for --block-rows rows of t tokens (>= 1). */
int64_t cli_examples_per_block(const cli_common *c, const culeace_act *a);

/* --max-memory (memory.c): "8G", "512M", "1.5GiB" or bytes -> bytes, -1 if
 * malformed; the limit in bytes (the option or 75% of physical memory);
 * and the check a command makes before starting: 0, or 1 with a message
 * naming what needs how much. cli_examples_per_block (above) also keeps a
 * block within a quarter of the limit. */
int64_t cli_parse_size(const char *s);
double cli_physical_memory(void);
double cli_memory_limit(const cli_common *c);
int cli_check_memory(const cli_common *c, double need, const char *what);
/* The same for a command that streams blocks of a's rows while holding
 * `held` bytes throughout: a block of one example must fit the quarter of
 * the budget blocks get, and held the half the rest gets. */
int cli_check_block_memory(const cli_common *c, const culeace_act *a,
                           double held, const char *what);
/* How many d x d float64 matrices fitting one layer's eraser holds at its
 * peak: 8 for leace/orth/oracle (running and block co-moments, then the
 * whitening); quadratic with k classes: 3 k + 9 (per-class co-moments,
 * covariances and maps, and the transport workspace). */
double cli_fit_matrices(culeace_method method, int64_t k);

/* ---- erasers matched to layers -------------------------------------------- */
typedef struct {
  culeace_eraser *e;
  int64_t layer;       /* layer index in the activations */
  char name[256];      /* layer name */
  int64_t edited, skipped;
  char *class_values;  /* the eraser's class_values metadata (owned; NULL
                          when empty): how oracle erasers map labels */
} cli_layer_eraser;

/* Loads every eraser of the file whose layer is selected by --layers and
 * exists in act (same name), checking d. Returns the count (>= 1) or -1
 * (message printed). */
int64_t cli_load_erasers(const cli_common *c, culeace_ctx *ctx,
                         const char *erasers, culeace_act *act,
                         cli_layer_eraser **out);
void cli_free_erasers(cli_layer_eraser *items, int64_t m);

/* ---- subcommands ---------------------------------------------------------- */
int cmd_inspect(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_check(int argc, char **argv);

/* Re-executes the command with OPENBLAS_CORETYPE set when OpenBLAS fell
 * back to a slow generic kernel on a CPU with AVX2/AVX-512 (blas_kernel.c). */
void cli_select_blas_kernel(char **argv);

/* JSON string escaping to fp. */
void cli_json_str(FILE *fp, const char *s);

#endif
