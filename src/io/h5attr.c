/* h5attr.c — scalar HDF5 attributes with type and shape checks (see
 * h5attr.h). Strings are written as fixed-length UTF-8 and read in the
 * file's own character set. */
#include "io/h5attr.h"

#include "core/ctx.h"

#include <stdio.h>
#include <string.h>

int culeace__h5_put_i64(hid_t obj, const char *name, int64_t v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc < 0 ? -1 : 0;
}

int culeace__h5_put_f64(hid_t obj, const char *name, double v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc < 0 ? -1 : 0;
}

int culeace__h5_put_str(hid_t obj, const char *name, const char *v) {
  if (!v) v = "";
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(v) + 1);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Awrite(a, t, v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return rc < 0 ? -1 : 0;
}

int culeace__h5_get_i64(hid_t obj, const char *name, int64_t *v) {
  if (H5Aexists(obj, name) <= 0) return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t sp = H5Aget_space(a);
  hid_t t = H5Aget_type(a);
  int ok = H5Sget_simple_extent_npoints(sp) == 1 &&
           H5Tget_class(t) == H5T_INTEGER &&
           H5Aread(a, H5T_NATIVE_INT64, v) >= 0;
  if (t >= 0) H5Tclose(t);
  H5Sclose(sp);
  H5Aclose(a);
  return ok ? 0 : -1;
}

int culeace__h5_get_f64(hid_t obj, const char *name, double *v) {
  if (H5Aexists(obj, name) <= 0) return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t sp = H5Aget_space(a);
  hid_t t = H5Aget_type(a);
  int ok = H5Sget_simple_extent_npoints(sp) == 1 &&
           H5Tget_class(t) == H5T_FLOAT && H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0;
  H5Tclose(t);
  H5Sclose(sp);
  H5Aclose(a);
  return ok ? 0 : -1;
}

int culeace__h5_get_str(hid_t obj, const char *name, char *buf, size_t len) {
  buf[0] = 0;
  if (H5Aexists(obj, name) <= 0) return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t ft = H5Aget_type(a);
  int ok = 0;
  if (H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft)) {
    size_t sz = H5Tget_size(ft);
    if (sz < len) {
      hid_t mt = H5Tcopy(ft); /* same size and character set */
      ok = H5Aread(a, mt, buf) >= 0;
      buf[sz] = 0;
      H5Tclose(mt);
    }
  } else if (H5Tget_class(ft) == H5T_STRING) { /* variable length */
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(ft));
    char *p = NULL;
    if (H5Aread(a, mt, &p) >= 0 && p) {
      snprintf(buf, len, "%s", p);
      ok = strlen(p) < len;
      H5free_memory(p);
    }
    H5Tclose(mt);
  }
  H5Tclose(ft);
  H5Aclose(a);
  return ok ? 0 : -1;
}

culeace_status culeace__h5_check_header(culeace_ctx *ctx, hid_t fid,
                                        const char *path, const char *what,
                                        const char *format, int64_t version,
                                        int64_t *count) {
  char fmt[64];
  int64_t ver = 0;
  if (culeace__h5_get_str(fid, "format", fmt, sizeof fmt) || strcmp(fmt, format))
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "%s is not a culeace %s (attribute 'format' missing "
                          "or not '%s'%s%s)", path, what, format,
                          fmt[0] ? "; it says " : "", fmt);
  if (culeace__h5_get_i64(fid, "format_version", &ver) || ver != version)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "%s %s has format_version %lld; this culeace reads "
                          "version %lld", what, path, (long long)ver,
                          (long long)version);
  if (culeace__h5_get_i64(fid, "count", count) || *count < 0 ||
      *count > 1000000)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "%s %s: attribute 'count' missing or out of range "
                          "(file not committed?)", what, path);
  return CULEACE_OK;
}
