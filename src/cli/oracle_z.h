/* oracle_z.h — the labels an eraser that takes them (oracle: z; quadratic:
 * the class) gets from the --z labels of `apply` and `check`: each file
 * label is mapped to the eraser's class by the class_values it was fitted
 * with (the mapping `fit` made); oracle erasers then get z encoded as fit
 * encoded it (binary: indicator of class 1; k >= 3 classes: one-hot;
 * continuous: the columns). */
#ifndef CULEACE_CLI_ORACLE_Z_H
#define CULEACE_CLI_ORACLE_Z_H

#include "cli/cli.h"

typedef struct {
  culeace_method method; /* ORACLE or QUADRATIC */
  int64_t zd;       /* the eraser's z_dim */
  int classes;      /* eraser fitted on classes (else continuous z) */
  int32_t *map;     /* (labels' n_classes) label class -> eraser class */
  int value_as_z;   /* continuous eraser (z_dim 1) given integer labels:
                       z = the label's value */
} oracle_zmap;

/* 1 for the methods whose erasers edit each row with its label. */
int cli_takes_labels(culeace_method m);
/* 1 when any of the m erasers takes labels (*first: its index). */
int cli_any_labelled(const cli_layer_eraser *items, int64_t m,
                     int64_t *first);
/* Builds the mapping of lab onto item's oracle eraser; 0, or 1 with a
 * message naming the eraser file, the layer and the offending label. */
int cli_oracle_zmap(const cli_common *c, const char *erasers,
                    const cli_layer_eraser *it, const culeace_labels *lab,
                    oracle_zmap *out);
void cli_oracle_zmap_free(oracle_zmap *m);
/* z (zd) of one row: its class index in lab (classes) or its columns zc
 * (lab->k, continuous labels). */
void cli_oracle_z_row(const oracle_zmap *m, const culeace_labels *lab,
                      int32_t cls, const double *zc, double *out);

/* Erases n contiguous rows (stride d) in place with a labelled eraser:
 * row i's label is that of row r = idx ? idx[i] : i, its class cls[r]
 * (class labels) or its z columns zc + r lab->k (continuous). zbuf: room
 * for n z_dim doubles (scratch). */
culeace_status cli_erase_labelled(culeace_ctx *ctx, const culeace_eraser *e,
                                  const oracle_zmap *zm,
                                  const culeace_labels *lab, void *rows,
                                  culeace_dtype dt, int64_t n, int64_t d,
                                  const int32_t *cls, const double *zc,
                                  const int64_t *idx, double *zbuf);

#endif
