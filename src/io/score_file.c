/* score_file.c — score files written by `culeace score -o`: per layer the
 * class probabilities (n, k) and the flat row index of each row, written to
 * a temporary file and renamed into place on commit (see score_file.h). */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5out.h"
#include "io/h5attr.h"
#include "core/ctx.h"
#include "io/h5util.h"
#include "io/score_file.h"

struct culeace__score_file {
  culeace_ctx *ctx;
  hid_t fid;
  int committed;
  int64_t count;
  char *path, *tmp_path;
};

static int put_i64_array(hid_t obj, const char *name, const int64_t *v,
                         hsize_t n) {
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc < 0 ? -1 : 0;
}

culeace_status culeace__score_file_create(culeace_ctx *ctx, const char *path,
                                          const char *source_file,
                                          const char *x_path,
                                          const char *probes,
                                          culeace__score_file **out) {
  if (!ctx || !path || !out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  culeace__score_file *f = calloc(1, sizeof *f);
  char *p = f ? strdup(path) : NULL;
  if (!f || !p) {
    free(f);
    free(p);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  static const char *const groups[] = {"scores", "row_index", NULL};
  culeace_status st = culeace__h5out_create(
      ctx, path, "score file", CULEACE_SCORE_FILE_FORMAT,
      CULEACE_SCORE_FILE_VERSION, groups, &f->fid, &f->tmp_path);
  if (st) {
    free(p);
    free(f);
    return st;
  }
  f->ctx = ctx;
  f->path = p;
  if (culeace__h5_put_str(f->fid, "source_file", source_file) ||
      culeace__h5_put_str(f->fid, "source_dataset", x_path) ||
      culeace__h5_put_str(f->fid, "probes", probes)) {
    culeace__score_file_free(f);
    return culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot write the header of score file %s", path);
  }
  *out = f;
  return CULEACE_OK;
}

culeace_status culeace__score_file_add(culeace__score_file *f,
                                       const char *name, int64_t layer,
                                       const char *kind, int64_t n, int64_t k,
                                       const double *proba,
                                       const int64_t *row_index,
                                       const int64_t *class_values) {
  if (!f || !name || !*name || f->committed || n < 0 || k < 1)
    return CULEACE_ERR_INVALID_ARG;
  size_t len = strlen(name) + 16;
  char *p1 = malloc(len), *p2 = malloc(len);
  if (!p1 || !p2) {
    free(p1);
    free(p2);
    return culeace__error(f->ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  snprintf(p1, len, "scores/%s", name);
  snprintf(p2, len, "row_index/%s", name);
  hsize_t dims[2] = {(hsize_t)n, (hsize_t)k};
  hid_t sp = H5Screate_simple(2, dims, NULL);
  hid_t ds = H5Dcreate2(f->fid, p1, H5T_IEEE_F64LE, sp, H5P_DEFAULT,
                        H5P_DEFAULT, H5P_DEFAULT);
  int bad = ds < 0 ||
            (n > 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                               H5P_DEFAULT, proba) < 0) ||
            culeace__h5_put_i64(ds, "layer", layer) || culeace__h5_put_str(ds, "kind", kind) ||
            put_i64_array(ds, "class_values", class_values, (hsize_t)k);
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp);
  if (!bad) {
    hsize_t d1 = (hsize_t)n;
    sp = H5Screate_simple(1, &d1, NULL);
    ds = H5Dcreate2(f->fid, p2, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                    H5P_DEFAULT);
    bad = ds < 0 || (n > 0 && H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL,
                                       H5P_DEFAULT, row_index) < 0);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
  }
  culeace_status st = CULEACE_OK;
  if (bad)
    st = culeace__h5_error(f->ctx, CULEACE_ERR_HDF5,
                           "cannot write /%s to score file %s", p1, f->path);
  else
    f->count++;
  free(p1);
  free(p2);
  return st;
}

culeace_status culeace__score_file_commit(culeace__score_file *f) {
  if (!f || f->committed) return CULEACE_ERR_INVALID_ARG;
  culeace_status st = culeace__h5out_commit(f->ctx, &f->fid, f->tmp_path,
                                            f->path, "score file", f->count);
  if (st == CULEACE_OK) f->committed = 1;
  return st;
}

void culeace__score_file_free(culeace__score_file *f) {
  if (!f) return;
  culeace__h5out_close(&f->fid, f->tmp_path, f->committed);
  free(f->path);
  free(f->tmp_path);
  free(f);
}
