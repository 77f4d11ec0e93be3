/* fit_iterative.h — `culeace fit --method inlp|rlace` (fit_iterative.c):
 * the settings cmd_fit.c parses and the driver that fits one INLP or
 * R-LACE eraser per selected layer from the layer's rows held in memory. */
#ifndef CULEACE_CLI_FIT_ITERATIVE_H
#define CULEACE_CLI_FIT_ITERATIVE_H

#include <stdint.h>

#include "cli/cli.h"

/* Rows held out to decide when to stop: one of this many stratified
 * (group-aware) folds. */
#define FIT_HELD_OUT_FOLDS 5

typedef struct {
  culeace_method method;   /* CULEACE_METHOD_INLP or _RLACE */
  int affine;
  const char *groups_path; /* --groups or NULL */
  int iterations;          /* --iterations; 0 = the method's default */
  double min_accuracy;     /* --min-accuracy (INLP); < 0 = the default */
  int64_t rank;            /* --rank (R-LACE); 0 = the default */
  uint64_t seed;           /* --seed: the held-out split and R-LACE */
} fit_iter_settings;

/* Fits and writes the erasers of FILE's selected layers to out; prints the
 * per-layer results (table or JSON). Returns the exit code. */
int fit_iterative(cli_common *c, const char *file, const char *z_path,
                  const char *out, const fit_iter_settings *s);

/* "v0,v1,..." label values of classes 0..k-1 for eraser metadata (malloc'd;
 * NULL for continuous labels or out of memory); cmd_fit.c. */
char *fit_class_values_str(const culeace_labels *lab);

#endif
