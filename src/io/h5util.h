/* h5util.h — small HDF5 helpers shared by the io/ files: error translation
 * (our message + the innermost entry of HDF5's error stack), opening files
 * with clear "file not found" / "not an HDF5 file" messages, describing and
 * classifying datatypes, natural ordering of names, and a chunk-cache access
 * property list sized for row-block streaming. */
#ifndef CULEACE_IO_H5UTIL_H
#define CULEACE_IO_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "culeace.h"

/* Sets ctx's message from fmt and appends the innermost HDF5 error-stack
 * entry (" [HDF5: func(): description]"), then clears the stack. Call it
 * right after the failing HDF5 call (any later HDF5 call resets the stack).
 * Returns status. */
culeace_status culeace__h5_error(culeace_ctx *ctx, culeace_status status,
                                 const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Opens path read-only (writable = 0) or read-write. Missing file ->
 * CULEACE_ERR_NOT_FOUND "file not found: PATH"; directory / unreadable ->
 * CULEACE_ERR_IO; not HDF5 -> CULEACE_ERR_FORMAT "not an HDF5 file: PATH". */
culeace_status culeace__h5_open(culeace_ctx *ctx, const char *path,
                                int writable, hid_t *out);

/* Opens the object at path (dataset or group) in file fid. When nothing is
 * there: CULEACE_ERR_NOT_FOUND "WHAT PATH not found in FILE" listing up to a
 * few names of the nearest existing parent group. what: "dataset",
 * "labels", ... */
culeace_status culeace__h5_open_object(culeace_ctx *ctx, hid_t fid,
                                       const char *file, const char *path,
                                       const char *what, hid_t *out);

/* Rank and dims (up to 32) of a dataset; rank 0 for scalars. Also checks
 * its storage (culeace__h5_check_storage) before anything reads it. */
culeace_status culeace__h5_dims(culeace_ctx *ctx, hid_t dset, const char *file,
                                const char *path, int *rank, hsize_t *dims);
/* Reads every object header, attribute and dataset description of the
 * file at path, ignoring errors (h5walk.c); meant for a child process: see
 * cli_precheck_files. */
void culeace__h5_walk_metadata(const char *path);

/* Refuses storage that libhdf5 would misread: a chunk index that cannot be
 * walked or holds more chunks than the shape allows; compact data whose
 * size is not the shape's. */
culeace_status culeace__h5_check_storage(culeace_ctx *ctx, hid_t dset,
                                         const char *file, const char *path,
                                         int rank, const hsize_t *dims);

/* Element types we understand. */
typedef enum {
  CULEACE_H5K_OTHER = 0,
  CULEACE_H5K_FLOAT,  /* one of culeace_dtype, little-endian */
  CULEACE_H5K_FLOAT_OTHER, /* a float we cannot read raw (big-endian, odd
                              fields) but HDF5 can convert */
  CULEACE_H5K_INT,    /* integer (any size/sign/order) */
  CULEACE_H5K_ENUM    /* enum with an integer base (h5py bool) */
} culeace_h5_kind;

/* Classifies a datatype; *dt is set for CULEACE_H5K_FLOAT. */
culeace_h5_kind culeace__h5_classify(hid_t type, culeace_dtype *dt);
/* Human-readable name: "float16", "bfloat16", "float32", "float32
 * big-endian", "int64", "uint8", "bool", "enum(int8)", "string",
 * "compound", ... */
void culeace__h5_type_name(hid_t type, char *buf, size_t len);

/* "(a, b, c)" into buf. */
void culeace__h5_shape_str(int rank, const hsize_t *dims, char *buf,
                           size_t len);

/* Natural order: digit runs compare numerically ("layer_2" < "layer_10"),
 * ties broken by plain strcmp. */
int culeace__natural_cmp(const char *a, const char *b);

/* "x" -> "/x" (malloc'd, caller frees); NULL on out of memory. */
char *culeace__h5_abs_path(const char *path);

/* Dataset access plist with a chunk cache that holds two "rows of chunks"
 * (every chunk at one chunk index along row_axis, the example axis; for a
 * stacked dataset that covers every layer), so a chunk straddling two row
 * blocks is read and decompressed once. Capped at 64 MiB and at 256 MiB /
 * n_open (datasets open at once), floor 1 MiB. Returns H5P_DEFAULT for
 * unchunked datasets; the caller closes it otherwise. H5I_INVALID_HID on
 * error. dcpl: the dataset's creation plist. */
hid_t culeace__h5_chunk_dapl(hid_t dcpl, int rank, const hsize_t *dims,
                             size_t elsize, int row_axis, int64_t n_open);

/* Reads rows [r0, r0 + nr) of an integer or enum dataset of rank 1 or 2
 * (row = first axis, all of the second axis) into buf as int64:
 * (nr * cols) values. buf must hold nr * cols * max(8, elsize) bytes. */
culeace_status culeace__h5_read_int_rows(culeace_ctx *ctx, hid_t dset,
                                         hid_t ftype, const char *file,
                                         const char *path, int rank,
                                         const hsize_t *dims, int64_t r0,
                                         int64_t nr, int64_t *buf);

#endif
