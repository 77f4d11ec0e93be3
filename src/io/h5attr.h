/* h5attr.h — scalar HDF5 attributes (int64, float64, UTF-8 string) written
 * and read with type and shape checks; shared by the eraser, probe and score
 * files. Every function returns 0 on success, -1 on any failure (missing,
 * wrong type or shape, HDF5 error); callers turn that into a message. */
#ifndef CULEACE_IO_H5ATTR_H
#define CULEACE_IO_H5ATTR_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "culeace.h"

int culeace__h5_put_i64(hid_t obj, const char *name, int64_t v);
int culeace__h5_put_f64(hid_t obj, const char *name, double v);
int culeace__h5_put_str(hid_t obj, const char *name, const char *v);
int culeace__h5_get_i64(hid_t obj, const char *name, int64_t *v);
int culeace__h5_get_f64(hid_t obj, const char *name, double *v);
/* Fixed or variable length string into buf (fails if it does not fit). */
int culeace__h5_get_str(hid_t obj, const char *name, char *buf, size_t len);

/* Checks the header every culeace file starts with: root attributes
 * 'format' == format, 'format_version' == version, and 'count' (written
 * last, at commit) in [0, 10^6]. what names the file kind in messages
 * ("eraser file"). Sets ctx's message; returns CULEACE_OK or
 * CULEACE_ERR_FORMAT. */
culeace_status culeace__h5_check_header(culeace_ctx *ctx, hid_t fid,
                                        const char *path, const char *what,
                                        const char *format, int64_t version,
                                        int64_t *count);

#endif
