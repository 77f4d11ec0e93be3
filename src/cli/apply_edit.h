/* apply_edit.h — one block of `culeace apply` edited in memory (apply_edit.c):
 * the rows kept by the mask and finite get their layer's eraser (with each
 * row's label for oracle and quadratic erasers), and an erased value that
 * overflows the stored type stops the block before it is written. Shared by
 * the plain apply (cmd_apply.c) and the one under MPI (mpi_apply.c). */
#ifndef CULEACE_CLI_APPLY_EDIT_H
#define CULEACE_CLI_APPLY_EDIT_H

#include "cli/cli.h"
#include "cli/oracle_z.h"

typedef struct {
  const cli_common *c;
  culeace_ctx *ctx;
  culeace_act *act; /* the file written (temporary or FILE) */
  culeace_act *src; /* -o alone: FILE, the blocks' source (NULL: act) */
  const char *file; /* the file being edited (temporary or FILE) */
  void *raw;        /* (ex_per_block * t, d) */
  void *compact;    /* kept rows */
  int64_t *kept;    /* indices of kept rows */
  int64_t ex_per_block;
  int in_place;    /* editing FILE itself */
  int64_t written; /* blocks written so far by this run */
  const culeace_labels *lab; /* --z, for labelled erasers (else NULL) */
  oracle_zmap *zmaps;        /* (items) zd == 0 for unlabelled erasers */
  double *zbuf;              /* (ex_per_block * t, max z_dim) */
} editor;

/* Edits block [ex0, ex0 + nex) of item it, held in ed->raw, in memory; it's
 * edited and skipped counts grow. 0, or 1 (message printed). */
int apply_edit_block(editor *ed, cli_layer_eraser *it, const oracle_zmap *zm,
                     int64_t ex0, int64_t nex);
/* The message for a failed read or write of layer's dataset; returns 1. */
int apply_io_fail(editor *ed, int64_t layer);

#endif
