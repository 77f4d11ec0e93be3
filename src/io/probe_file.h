/* probe_file.h — probe files (HDF5, docs/FORMAT.md "Probe files"): one
 * fitted probe per layer with its weights, intercepts, standardisation,
 * classes and the settings it was fitted with. Written to PATH.tmpPID and
 * renamed on commit (nothing is left behind on error); read back with every
 * attribute and shape validated before anything is allocated. */
#ifndef CULEACE_IO_PROBE_FILE_H
#define CULEACE_IO_PROBE_FILE_H

#include <stdint.h>

#include "culeace.h"

#define CULEACE_PROBE_FILE_FORMAT "culeace-probes"
#define CULEACE_PROBE_FILE_VERSION 1

typedef struct {
  int64_t layer;              /* layer index in the source (-1: none) */
  const char *layer_name;     /* score matches layers by this name */
  const char *source_file;    /* may be NULL */
  const char *source_dataset; /* may be NULL */
  const char *label_dataset;  /* may be NULL */
  const int64_t *class_values; /* (k) label value of classes 0..k-1 */
  /* settings of the fit (recorded, not needed to apply the probe) */
  double C, tol;
  int64_t max_iter, standardize, balanced;
} culeace__probe_meta;

typedef struct culeace__probe_file culeace__probe_file;

/* ---- writing ---------------------------------------------------------------- */
culeace_status culeace__probe_file_create(culeace_ctx *ctx, const char *path,
                                          culeace__probe_file **out);
culeace_status culeace__probe_file_add(culeace__probe_file *f,
                                       const culeace_probe *p,
                                       const culeace__probe_meta *meta);
/* Writes the count, closes, fsyncs and renames the temp file into place. */
culeace_status culeace__probe_file_commit(culeace__probe_file *f);
/* Closes; an uncommitted file's temp file is removed. NULL-safe. */
void culeace__probe_file_free(culeace__probe_file *f);

/* ---- reading ---------------------------------------------------------------- */
culeace_status culeace__probe_file_open(culeace_ctx *ctx, const char *path,
                                        culeace__probe_file **out);
int64_t culeace__probe_file_count(const culeace__probe_file *f);
/* Loads probe i (file order). meta's strings and class_values stay owned by
 * the file handle until the next load or free. */
culeace_status culeace__probe_file_load(culeace__probe_file *f, int64_t i,
                                        culeace_probe **out,
                                        culeace__probe_meta *meta);

#endif
