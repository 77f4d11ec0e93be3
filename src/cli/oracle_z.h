/* oracle_z.h — the z an oracle eraser takes, built from the --z labels of
 * `apply` and `check`: each file label is mapped to the eraser's class by
 * the class_values it was fitted with (the mapping `fit` made), then
 * encoded as fit encoded it (binary: indicator of class 1; k >= 3 classes:
 * one-hot; continuous: the columns). */
#ifndef CULEACE_CLI_ORACLE_Z_H
#define CULEACE_CLI_ORACLE_Z_H

#include "cli/cli.h"

typedef struct {
  int64_t zd;       /* the eraser's z_dim */
  int classes;      /* eraser fitted on classes (else continuous z) */
  int32_t *map;     /* (labels' n_classes) label class -> eraser class */
  int value_as_z;   /* continuous eraser (z_dim 1) given integer labels:
                       z = the label's value */
} oracle_zmap;

/* 1 when any of the m erasers is an oracle one (*first: its index). */
int cli_any_oracle(const cli_layer_eraser *items, int64_t m, int64_t *first);
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

#endif
