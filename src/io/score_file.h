/* score_file.h — the output of `culeace score -o` (docs/FORMAT.md "Score
 * files"): per layer, the class probabilities of every scored row and the
 * flat row index each one came from. Written to PATH.tmpPID and renamed on
 * commit. */
#ifndef CULEACE_IO_SCORE_FILE_H
#define CULEACE_IO_SCORE_FILE_H

#include <stdint.h>

#include "culeace.h"

#define CULEACE_SCORE_FILE_FORMAT "culeace-scores"
#define CULEACE_SCORE_FILE_VERSION 1

typedef struct culeace__score_file culeace__score_file;

/* source_file, x_path, probes: recorded as root attributes. */
culeace_status culeace__score_file_create(culeace_ctx *ctx, const char *path,
                                          const char *source_file,
                                          const char *x_path,
                                          const char *probes,
                                          culeace__score_file **out);
/* Adds /scores/NAME (n, k) float64 and /row_index/NAME (n,) int64, with
 * attributes layer, kind and class_values (k) on the scores dataset. */
culeace_status culeace__score_file_add(culeace__score_file *f,
                                       const char *name, int64_t layer,
                                       const char *kind, int64_t n, int64_t k,
                                       const double *proba,
                                       const int64_t *row_index,
                                       const int64_t *class_values);
culeace_status culeace__score_file_commit(culeace__score_file *f);
/* Removes an uncommitted temp file. NULL-safe. */
void culeace__score_file_free(culeace__score_file *f);

#endif
