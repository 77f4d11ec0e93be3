/* layer_rows.h — one layer's kept, labelled rows read into memory
 * (layer_rows.c), for the commands that fit on all of a layer at once:
 * `culeace probe` and `culeace fit --method inlp|rlace`. */
#ifndef CULEACE_CLI_LAYER_ROWS_H
#define CULEACE_CLI_LAYER_ROWS_H

#include <stdint.h>

#include "cli/cli.h"

/* x (n, d) contiguous, of type xt: float32, or the file's own float16 or
 * bfloat16 when read with keep_half (half the memory and bytes per pass);
 * row (n) the flat row id (example * t + token) of each; y (n) its class.
 * cap: the labelled rows (room). */
typedef struct {
  void *x;
  culeace_dtype xt;
  int64_t *row;
  int32_t *y;
  int64_t n, cap;
} layer_rows;

/* Reads every kept row of layer l whose label (lab->classes, N flat rows)
 * is >= 0, as float32, refusing non-finite rows (or dropping them with
 * --drop-nonfinite: *dropped counts them). 0 ok, 1 error (printed). */
int layer_rows_read(const cli_common *c, culeace_ctx *ctx, culeace_act *act,
                    const char *file, int64_t l, const culeace_labels *lab,
                    int64_t N, layer_rows *L, int64_t *dropped);
/* The same for examples [ex0, ex1) only (one MPI rank's share), keeping
 * float16/bfloat16 rows as they are with keep_half. */
int layer_rows_read_range(const cli_common *c, culeace_ctx *ctx,
                          culeace_act *act, const char *file, int64_t l,
                          const culeace_labels *lab, int64_t N, int64_t ex0,
                          int64_t ex1, int keep_half, layer_rows *L,
                          int64_t *dropped);
/* All examples of the m layers `layers` into L[0..m-1] (dropped[j] each),
 * read block by block with every layer's rows of a block together: one
 * pass over the file for a stacked dataset instead of one per layer. 0,
 * or 1 (printed; nothing kept). */
int layer_rows_read_many(const cli_common *c, culeace_ctx *ctx,
                         culeace_act *act, const char *file,
                         const int64_t *layers, int64_t m,
                         const culeace_labels *lab, int64_t N, int keep_half,
                         layer_rows *L, int64_t *dropped);
/* Rows i .. i+cnt-1 of L as float32 into out (cnt, d). */
void layer_rows_f32(const layer_rows *L, int64_t d, int64_t i, int64_t cnt,
                    float *out);
void layer_rows_free(layer_rows *L);

#endif
