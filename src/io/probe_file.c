/* probe_file.c — probe files (docs/FORMAT.md "Probe files"): written to a
 * temporary file and renamed on commit; read back with the format, version,
 * every attribute and every dataset shape validated before allocating. */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5out.h"
#include "io/h5attr.h"
#include "core/ctx.h"
#include "io/h5util.h"
#include "io/probe_file.h"

#define META_STR_MAX 4096
#define MAX_CLASSES 1000000
#define MAX_WIDTH ((int64_t)1 << 24)

struct culeace__probe_file {
  culeace_ctx *ctx;
  hid_t fid;
  int writing, committed;
  int64_t count;
  char *path, *tmp_path;
  /* last loaded meta (owned) */
  char strs[4][META_STR_MAX];
  int64_t *class_values;
};

/* ---- datasets ------------------------------------------------------------------ */
static int put_data(hid_t g, const char *name, hid_t ftype, hid_t mtype,
                    const void *v, int rank, hsize_t d0, hsize_t d1) {
  hsize_t dims[2] = {d0, d1};
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT,
                        H5P_DEFAULT);
  herr_t rc = ds < 0 ? -1
                     : H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp);
  return rc < 0 ? -1 : 0;
}

/* Dataset `name` exists with exactly these dims and the given type class. */
static int has_shape(hid_t g, const char *name, int rank, hsize_t d0,
                     hsize_t d1, H5T_class_t cls) {
  if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return 0;
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  if (ds < 0) return 0;
  hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
  hsize_t dims[2] = {0, 0};
  int ok = H5Sget_simple_extent_ndims(sp) == rank &&
           H5Sget_simple_extent_dims(sp, dims, NULL) == rank &&
           dims[0] == d0 && (rank == 1 || dims[1] == d1) &&
           H5Tget_class(t) == cls;
  H5Tclose(t);
  H5Sclose(sp);
  H5Dclose(ds);
  return ok;
}

static int get_data(hid_t g, const char *name, hid_t mtype, void *v) {
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  if (ds < 0) return -1;
  herr_t rc = H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(ds);
  return rc < 0 ? -1 : 0;
}

static const char *kind_name(culeace_probe_kind k) {
  return k == CULEACE_PROBE_DIFFMEANS ? "diffmeans" : "logistic";
}

/* ---- writing -------------------------------------------------------------------- */
culeace_status culeace__probe_file_create(culeace_ctx *ctx, const char *path,
                                          culeace__probe_file **out) {
  if (!ctx || !path || !out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  culeace__probe_file *f = calloc(1, sizeof *f);
  char *p = f ? strdup(path) : NULL;
  if (!f || !p) {
    free(f);
    free(p);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  static const char *const groups[] = {"probes", NULL};
  culeace_status st = culeace__h5out_create(
      ctx, path, "probe file", CULEACE_PROBE_FILE_FORMAT,
      CULEACE_PROBE_FILE_VERSION, groups, &f->fid, &f->tmp_path);
  if (st) {
    free(p);
    free(f);
    return st;
  }
  f->ctx = ctx;
  f->path = p;
  f->writing = 1;
  *out = f;
  return CULEACE_OK;
}

culeace_status culeace__probe_file_add(culeace__probe_file *f,
                                       const culeace_probe *p,
                                       const culeace__probe_meta *meta) {
  if (!f || !p || !meta || !meta->class_values || !f->writing || f->committed)
    return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  culeace_probe_info in;
  culeace_probe_info_get(p, &in);
  size_t md = (size_t)in.n_outputs * (size_t)in.d;
  double *coef = culeace__alloc(ctx, md, 8, "probe weights");
  double *icpt = culeace__alloc(ctx, (size_t)in.n_outputs, 8, "intercepts");
  double *mean = culeace__alloc(ctx, (size_t)in.d, 8, "probe mean");
  double *scale = culeace__alloc(ctx, (size_t)in.d, 8, "probe scale");
  culeace_status st = CULEACE_OK;
  if (!coef || !icpt || !mean || !scale) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  culeace_probe_params(p, coef, icpt, mean, scale);
  char name[32];
  snprintf(name, sizeof name, "probes/%04lld", (long long)f->count);
  hid_t g = H5Gcreate2(f->fid, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int bad = g < 0;
  if (!bad) {
    bad = culeace__h5_put_str(g, "kind", kind_name(in.kind)) || culeace__h5_put_i64(g, "d", in.d) ||
          culeace__h5_put_i64(g, "n_classes", in.n_classes) ||
          culeace__h5_put_i64(g, "n_outputs", in.n_outputs) ||
          culeace__h5_put_i64(g, "n_train", in.n_train) ||
          culeace__h5_put_i64(g, "n_iter", in.n_iter) ||
          culeace__h5_put_i64(g, "converged", in.converged) ||
          culeace__h5_put_f64(g, "objective", in.objective) ||
          culeace__h5_put_i64(g, "layer", meta->layer) ||
          culeace__h5_put_str(g, "layer_name", meta->layer_name) ||
          culeace__h5_put_str(g, "source_file", meta->source_file) ||
          culeace__h5_put_str(g, "source_dataset", meta->source_dataset) ||
          culeace__h5_put_str(g, "label_dataset", meta->label_dataset) ||
          culeace__h5_put_f64(g, "C", meta->C) || culeace__h5_put_f64(g, "tol", meta->tol) ||
          culeace__h5_put_i64(g, "max_iter", meta->max_iter) ||
          culeace__h5_put_i64(g, "standardize", meta->standardize) ||
          culeace__h5_put_i64(g, "balanced", meta->balanced) ||
          put_data(g, "coef", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, coef, 2,
                   (hsize_t)in.n_outputs, (hsize_t)in.d) ||
          put_data(g, "intercept", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, icpt, 1,
                   (hsize_t)in.n_outputs, 0) ||
          put_data(g, "mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, mean, 1,
                   (hsize_t)in.d, 0) ||
          put_data(g, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, scale, 1,
                   (hsize_t)in.d, 0) ||
          put_data(g, "class_values", H5T_STD_I64LE, H5T_NATIVE_INT64,
                   meta->class_values, 1, (hsize_t)in.n_classes, 0);
    H5Gclose(g);
  }
  if (bad) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                           "cannot write probe %lld (layer %s) to %s",
                           (long long)f->count,
                           meta->layer_name ? meta->layer_name : "?",
                           f->path);
    goto cleanup;
  }
  f->count++;
cleanup:
  free(coef);
  free(icpt);
  free(mean);
  free(scale);
  return st;
}

culeace_status culeace__probe_file_commit(culeace__probe_file *f) {
  if (!f || !f->writing || f->committed) return CULEACE_ERR_INVALID_ARG;
  culeace_status st = culeace__h5out_commit(f->ctx, &f->fid, f->tmp_path,
                                            f->path, "probe file", f->count);
  if (st == CULEACE_OK) f->committed = 1;
  return st;
}

void culeace__probe_file_free(culeace__probe_file *f) {
  if (!f) return;
  culeace__h5out_close(&f->fid, f->writing ? f->tmp_path : NULL,
                       f->committed);
  free(f->path);
  free(f->tmp_path);
  free(f->class_values);
  free(f);
}

/* ---- reading -------------------------------------------------------------------- */
culeace_status culeace__probe_file_open(culeace_ctx *ctx, const char *path,
                                        culeace__probe_file **out) {
  if (!ctx || !path || !out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  hid_t fid;
  culeace_status st = culeace__h5_open(ctx, path, 0, &fid);
  if (st) {
    culeace__error_prefix(ctx, "probe file: ");
    return st;
  }
  int64_t count = -1;
  st = culeace__h5_check_header(ctx, fid, path, "probe file",
                                CULEACE_PROBE_FILE_FORMAT,
                                CULEACE_PROBE_FILE_VERSION, &count);
  if (st) {
    H5Fclose(fid);
    return st;
  }
  culeace__probe_file *f = calloc(1, sizeof *f);
  char *p = f ? strdup(path) : NULL;
  if (!f || !p) {
    free(f);
    H5Fclose(fid);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  f->ctx = ctx;
  f->fid = fid;
  f->count = count;
  f->path = p;
  *out = f;
  return CULEACE_OK;
}

int64_t culeace__probe_file_count(const culeace__probe_file *f) {
  return f ? f->count : 0;
}

culeace_status culeace__probe_file_load(culeace__probe_file *f, int64_t i,
                                        culeace_probe **out,
                                        culeace__probe_meta *meta) {
  if (!f || !out || f->writing) return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  *out = NULL;
  if (i < 0 || i >= f->count)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "probe index %lld out of range (file %s holds %lld)",
                          (long long)i, f->path, (long long)f->count);
  char name[32];
  snprintf(name, sizeof name, "probes/%04lld", (long long)i);
  if (H5Lexists(f->fid, "probes", H5P_DEFAULT) <= 0 ||
      H5Lexists(f->fid, name, H5P_DEFAULT) <= 0)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "probe file %s: group /%s is missing", f->path, name);
  hid_t g = H5Gopen2(f->fid, name, H5P_DEFAULT);
  if (g < 0)
    return culeace__h5_error(ctx, CULEACE_ERR_FORMAT,
                             "probe file %s: /%s is not a group", f->path,
                             name);
  culeace_status st = CULEACE_OK;
  double *coef = NULL, *icpt = NULL, *mean = NULL, *scale = NULL;
  int64_t *cv = NULL;
  char kind[32];
  int64_t d = 0, k = 0, m = 0, layer = -1, max_iter = 0, stdz = 0, bal = 0;
  double C = 0, tol = 0;
  const char *missing = NULL;
  if (culeace__h5_get_str(g, "kind", kind, sizeof kind)) missing = "kind";
  else if (culeace__h5_get_i64(g, "d", &d)) missing = "d";
  else if (culeace__h5_get_i64(g, "n_classes", &k)) missing = "n_classes";
  else if (culeace__h5_get_i64(g, "n_outputs", &m)) missing = "n_outputs";
  else if (culeace__h5_get_str(g, "layer_name", f->strs[0], META_STR_MAX))
    missing = "layer_name";
  if (missing) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "probe file %s: /%s lacks attribute '%s' (or it has "
                        "the wrong type)", f->path, name, missing);
    goto cleanup;
  }
  culeace_probe_kind pk = CULEACE_PROBE_LOGISTIC;
  if (!strcmp(kind, "diffmeans")) pk = CULEACE_PROBE_DIFFMEANS;
  if ((strcmp(kind, "logistic") && strcmp(kind, "diffmeans")) || d < 1 ||
      d > MAX_WIDTH || k < 2 || k > MAX_CLASSES || m != (k == 2 ? 1 : k)) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "probe file %s: /%s has inconsistent fields (kind = "
                        "'%s', d = %lld, n_classes = %lld, n_outputs = %lld; "
                        "expected logistic|diffmeans, d >= 1, n_classes >= 2, "
                        "n_outputs = 1 for 2 classes else n_classes)",
                        f->path, name, kind, (long long)d, (long long)k,
                        (long long)m);
    goto cleanup;
  }
  if (!has_shape(g, "coef", 2, (hsize_t)m, (hsize_t)d, H5T_FLOAT) ||
      !has_shape(g, "intercept", 1, (hsize_t)m, 0, H5T_FLOAT) ||
      !has_shape(g, "mean", 1, (hsize_t)d, 0, H5T_FLOAT) ||
      !has_shape(g, "scale", 1, (hsize_t)d, 0, H5T_FLOAT) ||
      !has_shape(g, "class_values", 1, (hsize_t)k, 0, H5T_INTEGER)) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "probe file %s: /%s: datasets coef (%lld x %lld), "
                        "intercept (%lld), mean (%lld), scale (%lld) float "
                        "and class_values (%lld) integer missing or of the "
                        "wrong shape or type", f->path, name, (long long)m,
                        (long long)d, (long long)m, (long long)d,
                        (long long)d, (long long)k);
    goto cleanup;
  }
  coef = culeace__alloc(ctx, (size_t)(m * d), 8, "probe weights");
  icpt = culeace__alloc(ctx, (size_t)m, 8, "probe intercepts");
  mean = culeace__alloc(ctx, (size_t)d, 8, "probe mean");
  scale = culeace__alloc(ctx, (size_t)d, 8, "probe scale");
  cv = culeace__alloc(ctx, (size_t)k, 8, "class values");
  if (!coef || !icpt || !mean || !scale || !cv) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  if (get_data(g, "coef", H5T_NATIVE_DOUBLE, coef) ||
      get_data(g, "intercept", H5T_NATIVE_DOUBLE, icpt) ||
      get_data(g, "mean", H5T_NATIVE_DOUBLE, mean) ||
      get_data(g, "scale", H5T_NATIVE_DOUBLE, scale) ||
      get_data(g, "class_values", H5T_NATIVE_INT64, cv)) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                           "probe file %s: cannot read the datasets of /%s",
                           f->path, name);
    goto cleanup;
  }
  st = culeace_probe_from_params(ctx, pk, d, k, coef, icpt, mean, scale, out);
  if (st) {
    culeace__error_prefix(ctx, "probe file %s: /%s: ", f->path, name);
    goto cleanup;
  }
  if (meta) {
    static const char *keys[3] = {"source_file", "source_dataset",
                                  "label_dataset"};
    for (int s = 0; s < 3; s++)
      if (culeace__h5_get_str(g, keys[s], f->strs[s + 1], META_STR_MAX))
        f->strs[s + 1][0] = 0;
    if (culeace__h5_get_i64(g, "layer", &layer)) layer = -1;
    if (culeace__h5_get_f64(g, "C", &C)) C = NAN;
    if (culeace__h5_get_f64(g, "tol", &tol)) tol = NAN;
    if (culeace__h5_get_i64(g, "max_iter", &max_iter)) max_iter = -1;
    if (culeace__h5_get_i64(g, "standardize", &stdz)) stdz = -1;
    if (culeace__h5_get_i64(g, "balanced", &bal)) bal = -1;
    free(f->class_values);
    f->class_values = cv;
    cv = NULL;
    memset(meta, 0, sizeof *meta);
    meta->layer = layer;
    meta->layer_name = f->strs[0];
    meta->source_file = f->strs[1];
    meta->source_dataset = f->strs[2];
    meta->label_dataset = f->strs[3];
    meta->class_values = f->class_values;
    meta->C = C;
    meta->tol = tol;
    meta->max_iter = max_iter;
    meta->standardize = stdz;
    meta->balanced = bal;
  }
cleanup:
  free(coef);
  free(icpt);
  free(mean);
  free(scale);
  free(cv);
  H5Gclose(g);
  return st;
}
