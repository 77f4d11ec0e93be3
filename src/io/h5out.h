/* h5out.h — writing culeace's own HDF5 files (erasers, probes, scores)
 * atomically: the file is built as PATH.tmpPID with the common header and
 * renamed to PATH only on commit, so PATH is never half-written; an abort
 * removes the temporary. */
#ifndef CULEACE_IO_H5OUT_H
#define CULEACE_IO_H5OUT_H

#include <hdf5.h>
#include <stdint.h>

#include "culeace.h"

/* Creates PATH.tmpPID with root attributes format, format_version and
 * culeace_version, and the top-level groups named in the NULL-terminated
 * list groups (may be NULL). what names the file kind in messages ("probe
 * file"). On success *fid is open and *tmp_path (caller frees) is set. */
culeace_status culeace__h5out_create(culeace_ctx *ctx, const char *path,
                                     const char *what, const char *format,
                                     int64_t version,
                                     const char *const *groups, hid_t *fid,
                                     char **tmp_path);
/* Writes the root attribute count (the mark of a committed file), closes,
 * fsyncs and renames the temporary to path. *fid is -1 afterwards. */
culeace_status culeace__h5out_commit(culeace_ctx *ctx, hid_t *fid,
                                     const char *tmp_path, const char *path,
                                     const char *what, int64_t count);
/* Closes *fid if open and, unless committed, removes the temporary. */
void culeace__h5out_close(hid_t *fid, const char *tmp_path, int committed);

#endif
