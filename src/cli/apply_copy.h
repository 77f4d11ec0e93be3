/* apply_copy.h — the temporary copy of FILE that `apply -o` edits
 * (apply_copy.c): every byte of FILE except the activation datasets that the
 * edit rewrites whole, which are left as holes for it to fill. */
#ifndef CULEACE_CLI_APPLY_COPY_H
#define CULEACE_CLI_APPLY_COPY_H

#include <stdint.h>

#include "cli/cli.h"

typedef struct {
  uint64_t off, len; /* bytes [off, off + len) of the file */
} apply_range;

/* The byte ranges of act's file that editing items rewrites whole: the
 * datasets stored contiguously and unfiltered all of whose layers are among
 * the items, sorted by offset, none overlapping. Returns their count
 * (0: copy everything; *out is then NULL) or -1 when out of memory. */
int64_t apply_rewritten_ranges(const culeace_act *act,
                               const cli_layer_eraser *items, int64_t m,
                               apply_range **out);

/* Copies src to dst (created exclusively) but for the nskip ranges, which
 * stay holes (dst has src's size). Not fsynced: dst is a temporary name no
 * one sees until the edit is done, and the fsync before its rename then
 * writes each page once. The kernel copies (copy_file_range) where it can,
 * else pread/pwrite. 0 ok, else 1 (message printed; dst may be partial). */
int apply_copy_file(const cli_common *c, const char *src, const char *dst,
                    const apply_range *skip, int64_t nskip);

/* The message for a failed write of the temporary copy dst (errno set);
 * returns 1. */
int apply_copy_write_error(const cli_common *c, const char *dst);

#endif
