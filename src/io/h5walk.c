/* h5walk.c — reads every piece of an HDF5 file's metadata that culeace might
 * later touch (every object's header, every attribute's name, type, shape
 * and, when small, value; every dataset's type, shape, creation properties
 * and storage), without reading dataset values. The CLI runs it in a child
 * process before opening an input (cli_precheck_files): libhdf5 crashes on
 * some crafted files (docs/SECURITY.md), and a crash there names the file
 * instead of killing the command mid-way. */
#include <stdlib.h>

#include "io/h5util.h"

enum { SMALL_ATTR_BYTES = 1 << 16 };

static herr_t walk_attr(hid_t loc, const char *name, const H5A_info_t *info,
                        void *op) {
  (void)info;
  (void)op;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return 0;
  hid_t t = H5Aget_type(a), s = H5Aget_space(a);
  if (t >= 0 && s >= 0) {
    hssize_t n = H5Sget_simple_extent_npoints(s);
    size_t es = H5Tget_size(t);
    if (n >= 0 && es > 0 && H5Tget_class(t) != H5T_VLEN &&
        H5Tis_variable_str(t) == 0 &&
        (size_t)n <= SMALL_ATTR_BYTES / es) {
      void *buf = malloc((size_t)n * es + 1);
      if (buf) {
        H5Aread(a, t, buf);
        free(buf);
      }
    }
  }
  if (s >= 0) H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  H5Aclose(a);
  return 0;
}

static herr_t walk_object(hid_t fid, const char *name, const H5O_info_t *info,
                          void *op) {
  (void)op;
  hid_t o = H5Oopen(fid, name, H5P_DEFAULT);
  if (o < 0) return 0;
  hsize_t idx = 0;
  H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, walk_attr, NULL);
  if (info->type == H5O_TYPE_DATASET) {
    int rank;
    hsize_t dims[32];
    hid_t t = H5Dget_type(o);
    if (t >= 0) H5Tclose(t);
    /* the shape, then the storage checks (chunk shape and index, compact
     * size) every read goes through */
    (void)culeace__h5_dims(NULL, o, "", name, &rank, dims);
  }
  H5Oclose(o);
  return 0;
}

void culeace__h5_walk_metadata(const char *path) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) return;
  H5Ovisit2(fid, H5_INDEX_NAME, H5_ITER_NATIVE, walk_object, NULL,
            H5O_INFO_BASIC | H5O_INFO_NUM_ATTRS);
  H5Fclose(fid);
}
