/* h5attr.h — scalar HDF5 attributes (int64, float64, UTF-8 string) written
 * and read with type and shape checks; shared by the eraser, probe and score
 * files. Every function returns 0 on success, -1 on any failure (missing,
 * wrong type or shape, HDF5 error); callers turn that into a message. */
#ifndef CULEACE_IO_H5ATTR_H
#define CULEACE_IO_H5ATTR_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

int culeace__h5_put_i64(hid_t obj, const char *name, int64_t v);
int culeace__h5_put_f64(hid_t obj, const char *name, double v);
int culeace__h5_put_str(hid_t obj, const char *name, const char *v);
int culeace__h5_get_i64(hid_t obj, const char *name, int64_t *v);
int culeace__h5_get_f64(hid_t obj, const char *name, double *v);
/* Fixed or variable length string into buf (fails if it does not fit). */
int culeace__h5_get_str(hid_t obj, const char *name, char *buf, size_t len);

#endif
