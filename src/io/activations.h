/* activations.h — streaming reader/writer of activation dumps in HDF5.
 *
 * One "activation source" is a file plus a spec naming where the activations
 * live. Accepted layouts (docs/FORMAT.md):
 *   - one dataset (n, d)                       -> 1 layer
 *   - one dataset with a layer axis: (L, n, d) layer_axis 0, (n, L, d)
 *     layer_axis 1                              -> L layers
 *   - a group of per-layer datasets, each (n, d) or (n, t, d), ordered
 *     naturally by name ("2" < "10", "layer_2" < "layer_10")
 *   - token-level (n, t, d) (tokens = 1), also (L, n, t, d) / (n, L, t, d)
 *     with a layer axis; rows are (example, token) pairs in row-major order,
 *     optionally filtered by a mask (n, t) (nonzero = keep).
 * dtypes: float16 (h5py's 2-byte IEEE type), bfloat16 (2-byte IEEE custom
 * type, 8-bit exponent), float32, float64, little-endian; contiguous or
 * chunked with any filter HDF5 ships. 2-byte floats are read raw (no HDF5
 * conversion) and returned in their own encoding.
 *
 * Memory is bounded by the block the caller asks for; the mask (n*t bytes) is
 * the only per-row state kept. All errors name the file and dataset.
 */
#ifndef CULEACE_IO_ACTIVATIONS_H
#define CULEACE_IO_ACTIVATIONS_H

#include <stdint.h>

#include "culeace.h"

/* The most layers a stacked dataset's layer axis may hold (per-layer names
 * and state are made when it is opened; models have hundreds). */
#define CULEACE_MAX_LAYERS (1 << 16)

typedef struct {
  const char *x_path;    /* dataset or group path inside the file */
  int layer_axis;        /* -1: no layer axis; 0 or 1: index of the layer
                            axis of a single dataset */
  int tokens;            /* 1: the axis after the example axis is tokens */
  const char *mask_path; /* NULL or (n, t) integer/bool dataset */
} culeace_act_spec;

void culeace__act_spec_init(culeace_act_spec *s); /* -1, 0, NULL */

typedef struct culeace_act culeace_act;

/* Opens file (read-only, or read-write when writable) and validates the spec:
 * every layer has the same (n, [t,] d) and dtype; d >= 1; n >= 1. */
culeace_status culeace__act_open(culeace_ctx *ctx, const char *file,
                                 const culeace_act_spec *spec, int writable,
                                 culeace_act **out);
/* Flushes (when writable) and closes. Returns the flush/close status. */
culeace_status culeace__act_close(culeace_act *a);
/* Lets go of the file (flushed and fsynced when writable, then closed) but
 * keeps what was learnt from it (shape, names, dtype, mask): HDF5 locks a
 * file for as long as it is open, so processes taking turns at writing one
 * file each hold it only for their turn. Until culeace__act_reopen, only
 * the queries below answer; reads and writes fail. Releasing twice is a
 * no-op. */
culeace_status culeace__act_release(culeace_act *a);
/* Opens a released file again (read-only, or read-write when writable),
 * with its datasets. */
culeace_status culeace__act_reopen(culeace_act *a, int writable);

int64_t culeace__act_layers(const culeace_act *a);   /* L >= 1 */
int64_t culeace__act_examples(const culeace_act *a); /* n */
int64_t culeace__act_tokens(const culeace_act *a);   /* t (1 if no tokens) */
int64_t culeace__act_width(const culeace_act *a);    /* d */
/* Examples per chunk along the example axis (0: contiguous storage). */
int64_t culeace__act_chunk_rows(const culeace_act *a);
culeace_dtype culeace__act_dtype(const culeace_act *a);
/* Display name of layer l: the dataset name within the group, or the
 * index for a stacked dataset ("0", "1", ...). */
const char *culeace__act_layer_name(const culeace_act *a, int64_t l);
/* Full dataset path of layer l (the one dataset for a stacked layout). */
const char *culeace__act_dataset_path(const culeace_act *a, int64_t l);
/* The file's path as opened. */
const char *culeace__act_file(const culeace_act *a);
/* Mask (n * t bytes, 1 = keep) or NULL when no mask was given. */
const uint8_t *culeace__act_mask(const culeace_act *a);
/* Whether the layer's dataset uses filters (compression/checksums); such
 * datasets cannot be rewritten in place crash-safely. */
int culeace__act_filtered(const culeace_act *a);
/* The bytes [*off, *off + *len) of the file that hold the dataset of layer
 * l (all of it: every layer it stores), when it is stored contiguously in
 * the file, unfiltered and allocated: 1; else 0 (chunked, compact, filtered,
 * external or not yet written). */
int culeace__act_contiguous_extent(const culeace_act *a, int64_t l,
                                   uint64_t *off, uint64_t *len);

/* Reads examples [ex0, ex0 + nex) of layer l into buf as (nex * t, d) raw
 * elements of culeace__act_dtype (contiguous, row stride d). */
culeace_status culeace__act_read(culeace_act *a, int64_t l, int64_t ex0,
                                 int64_t nex, void *buf);
/* Writes the same selection back (file opened writable). */
culeace_status culeace__act_write(culeace_act *a, int64_t l, int64_t ex0,
                                  int64_t nex, const void *buf);
/* Flushes HDF5 buffers and fsyncs the file (writable only). */
culeace_status culeace__act_flush(culeace_act *a);
/* The flush of culeace__act_flush without its sync: *fd is the file's
 * descriptor for the caller to fdatasync (-1: nothing to sync). */
culeace_status culeace__act_flush_fd(culeace_act *a, int *fd);

/* A string attribute `name` = value on the dataset holding layer l (the
 * in-place apply marks what it completed); set needs a writable file.
 * has: 1 when the attribute is there with exactly that value. */
culeace_status culeace__act_set_marker(culeace_act *a, int64_t l,
                                       const char *name, const char *value);
int culeace__act_has_marker(const culeace_act *a, int64_t l, const char *name,
                            const char *value);

/* ---- labels -------------------------------------------------------------- */
typedef struct {
  int64_t n;          /* rows: examples, or examples * tokens */
  int continuous;     /* 0: classes; 1: continuous columns */
  /* classes */
  int32_t *classes;   /* (n) values 0..n_classes-1 */
  int64_t n_classes;
  int64_t *class_values; /* (n_classes) original label value of each class,
                            ascending */
  int64_t *class_counts; /* (n_classes) */
  /* continuous */
  double *z;          /* (n, k) */
  int64_t k;
} culeace_labels;

/* Reads a label dataset: integer (n,) or (n, t) -> classes (values mapped to
 * 0..K-1 in ascending order); float (n,) or (n, k) -> continuous. When the
 * labels are per example (n,) and the activations have t tokens, each label
 * is repeated for the example's t rows (expand_tokens = t). n_examples is the
 * activation's n, checked against the dataset ("labels /y have 999 rows but
 * activations /x have 1000"). x_desc names the activations for that message:
 * the dataset path ("/x"; the message adds "activations "), or NULL. Class
 * counts count rows after token expansion. */
culeace_status culeace__labels_read(culeace_ctx *ctx, const char *file,
                                    const char *path, int64_t n_examples,
                                    int64_t tokens, const char *x_desc,
                                    culeace_labels *out);
/* As culeace__labels_read, with a row mask (n_examples * tokens bytes,
 * nonzero = keep; NULL keeps all, e.g. culeace__act_mask). Masked-out rows
 * get class -1 and are left out of the class values, counts, the
 * one-class check and the non-finite check (a padding label such as -100
 * on masked tokens does not become a class). */
culeace_status culeace__labels_read_masked(culeace_ctx *ctx, const char *file,
                                           const char *path,
                                           int64_t n_examples, int64_t tokens,
                                           const char *x_desc,
                                           const uint8_t *mask,
                                           culeace_labels *out);
void culeace__labels_free(culeace_labels *l);

/* Reads integer group ids (n,) (e.g. prompt ids), expanded over tokens like
 * labels. *out: (n * tokens) int64, caller frees. */
culeace_status culeace__groups_read(culeace_ctx *ctx, const char *file,
                                    const char *path, int64_t n_examples,
                                    int64_t tokens, int64_t **out);

/* ---- inspection ------------------------------------------------------------ */
/* Walks every object of the file and prints a human-readable table of
 * datasets (path, shape, dtype, layout/chunks/filters) with guesses of which
 * are activations and which labels (class counts for small integer
 * datasets), to fp; as JSON when json != 0. */
culeace_status culeace__inspect(culeace_ctx *ctx, const char *file, int json,
                                void *fp /* FILE* */);

#endif
