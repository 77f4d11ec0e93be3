/* eraser_file.c — eraser files (HDF5, docs/FORMAT.md "Eraser files"):
 * written to a temporary file and renamed on commit; read back with every
 * field validated before anything is allocated. */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fitter.h"
#include "io/h5attr.h"
#include "io/h5out.h"
#include "io/h5util.h"

#define ERASER_FORMAT "culeace-erasers"
#define ERASER_FORMAT_VERSION 1
#define META_STR_MAX 4096

struct culeace_eraser_file {
  culeace_ctx *ctx;
  hid_t fid;
  int writing;
  int committed;
  int64_t count;
  char *path;
  char *tmp_path;
  /* strings of the last loaded meta (owned) */
  char meta_strs[5][META_STR_MAX];
};

void culeace_eraser_meta_init(culeace_eraser_meta *m) {
  memset(m, 0, sizeof *m);
  m->layer = -1;
}

/* ---- dataset helpers (attributes: io/h5attr.h) --------------------------- */

/* Fixed-length string attribute into buf (at most len-1 chars). */

static int write_array(hid_t g, const char *name, const double *v, int rank,
                       const hsize_t *dims) {
  hsize_t count = 1;
  for (int i = 0; i < rank; i++) count *= dims[i];
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t ds = H5Dcreate2(g, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                        H5P_DEFAULT);
  herr_t rc = ds < 0      ? -1
              : count == 0 ? 0
                           : H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL,
                                      H5P_DEFAULT, v);
  if (ds >= 0) H5Dclose(ds);
  H5Sclose(sp);
  return rc < 0 ? -1 : 0;
}

static int write_matrix(hid_t g, const char *name, const double *v,
                        hsize_t rows, hsize_t cols, int rank) {
  hsize_t dims[2] = {rows, cols};
  return write_array(g, name, v, rank, dims);
}

/* The datasets a method keeps beyond L, R and bias: oracle's coef and
 * mean_z, quadratic's class means, transport maps and target mean. */
typedef struct {
  const char *name;
  int rank;
  hsize_t dims[3];
  double **slot; /* where the eraser holds it */
} param_ds;

enum { MAX_PARAMS = 3 };

static int params_of(const culeace_eraser_info *in, culeace_eraser *e,
                     param_ds *p) {
  hsize_t d = (hsize_t)in->d, zd = (hsize_t)in->z_dim,
          k = (hsize_t)in->n_classes;
  if (in->method == CULEACE_METHOD_ORACLE) {
    p[0] = (param_ds){"coef", 2, {d, zd, 0}, &e->coef};
    p[1] = (param_ds){"mean_z", 1, {zd, 0, 0}, &e->mean_z};
    return 2;
  }
  if (in->method == CULEACE_METHOD_QUADRATIC) {
    p[0] = (param_ds){"class_means", 2, {k, d, 0}, &e->q_means};
    p[1] = (param_ds){"ot_maps", 3, {k, d, d}, &e->q_maps};
    p[2] = (param_ds){"target_mean", 1, {d, 0, 0}, &e->q_target};
    return 3;
  }
  return 0;
}

static size_t param_count(const param_ds *p) { /* sizes checked on load */
  size_t c = 1;
  for (int i = 0; i < p->rank; i++) c *= (size_t)p->dims[i];
  return c;
}

/* ---- writing -------------------------------------------------------------- */
culeace_status culeace_eraser_file_create(culeace_ctx *ctx, const char *path,
                                          culeace_eraser_file **out) {
  if (!ctx || !path || !out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  culeace_eraser_file *f = calloc(1, sizeof *f);
  char *p = f ? strdup(path) : NULL;
  if (!f || !p) {
    free(f);
    free(p);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  static const char *const groups[] = {"erasers", NULL};
  culeace_status st = culeace__h5out_create(
      ctx, path, "eraser file", ERASER_FORMAT, ERASER_FORMAT_VERSION, groups,
      &f->fid, &f->tmp_path);
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

culeace_status culeace_eraser_file_add(culeace_eraser_file *f,
                                       const culeace_eraser *e,
                                       const culeace_eraser_meta *meta) {
  if (!f || !e || !f->writing || f->committed) return CULEACE_ERR_INVALID_ARG;
  culeace_eraser_meta dm;
  if (!meta) {
    culeace_eraser_meta_init(&dm);
    meta = &dm;
  }
  char name[32];
  snprintf(name, sizeof name, "erasers/%04lld", (long long)f->count);
  const culeace_eraser_info *in = &e->info;
  hid_t g = H5Gcreate2(f->fid, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int bad = g < 0;
  if (!bad) {
    bad = culeace__h5_put_i64(g, "d", in->d) || culeace__h5_put_i64(g, "rank", in->rank) ||
          culeace__h5_put_i64(g, "z_dim", in->z_dim) || culeace__h5_put_i64(g, "n_seen", in->n_seen) ||
          culeace__h5_put_i64(g, "n_classes", in->n_classes) ||
          culeace__h5_put_str(g, "method", culeace_method_name(in->method)) ||
          culeace__h5_put_i64(g, "affine", in->affine) ||
          culeace__h5_put_i64(g, "shrinkage", in->shrinkage) ||
          culeace__h5_put_i64(g, "constrain_cov_trace", in->constrain_cov_trace) ||
          culeace__h5_put_f64(g, "svd_tol", in->svd_tol) ||
          culeace__h5_put_str(g, "source_file", meta->source_file) ||
          culeace__h5_put_str(g, "source_dataset", meta->source_dataset) ||
          culeace__h5_put_i64(g, "layer", meta->layer) ||
          culeace__h5_put_str(g, "layer_name", meta->layer_name) ||
          culeace__h5_put_str(g, "label_dataset", meta->label_dataset) ||
          culeace__h5_put_str(g, "class_values", meta->class_values) ||
          write_matrix(g, "L", e->L, (hsize_t)in->d, (hsize_t)in->rank, 2) ||
          write_matrix(g, "R", e->R, (hsize_t)in->rank, (hsize_t)in->d, 2) ||
          write_matrix(g, "bias", e->bias, (hsize_t)in->d, 1, 1);
    param_ds p[MAX_PARAMS];
    int np = params_of(in, (culeace_eraser *)e, p);
    for (int i = 0; i < np && !bad; i++)
      bad = !*p[i].slot ||
            write_array(g, p[i].name, *p[i].slot, p[i].rank, p[i].dims);
    H5Gclose(g);
  }
  if (bad)
    return culeace__error(f->ctx, CULEACE_ERR_HDF5,
                          "cannot write eraser %lld to %s", (long long)f->count,
                          f->path);
  f->count++;
  return CULEACE_OK;
}

culeace_status culeace_eraser_file_commit(culeace_eraser_file *f) {
  if (!f || !f->writing || f->committed) return CULEACE_ERR_INVALID_ARG;
  culeace_status st = culeace__h5out_commit(f->ctx, &f->fid, f->tmp_path,
                                            f->path, "eraser file", f->count);
  if (st == CULEACE_OK) f->committed = 1;
  return st;
}

void culeace_eraser_file_free(culeace_eraser_file *f) {
  if (!f) return;
  culeace__h5out_close(&f->fid, f->writing ? f->tmp_path : NULL,
                       f->committed);
  free(f->path);
  free(f->tmp_path);
  free(f);
}

/* ---- reading ----------------------------------------------------------------- */
culeace_status culeace_eraser_file_open(culeace_ctx *ctx, const char *path,
                                        culeace_eraser_file **out) {
  if (!ctx || !path || !out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  hid_t fid;
  culeace_status st = culeace__h5_open(ctx, path, 0, &fid);
  if (st) {
    culeace__error_prefix(ctx, "eraser file");
    return st;
  }
  int64_t count = -1;
  st = culeace__h5_check_header(
      ctx, fid, path, "eraser file", ERASER_FORMAT, ERASER_FORMAT_VERSION,
      &count);
  if (st) {
    H5Fclose(fid);
    return st;
  }
  culeace_eraser_file *f = calloc(1, sizeof *f);
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

int64_t culeace_eraser_file_count(const culeace_eraser_file *f) {
  return f ? f->count : 0;
}

/* Checks that dataset `name` in g is a float dataset of exactly the given
 * dims (rank 1 to 3) whose stored bytes cover them (a dataset declared
 * large but never written is refused before anything is allocated). */
static int check_array(hid_t g, const char *name, int rank,
                       const hsize_t *want) {
  if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return -1;
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  if (ds < 0) return -1;
  hid_t sp = H5Dget_space(ds);
  hid_t t = H5Dget_type(ds);
  hsize_t dims[3] = {0, 0, 0};
  int ok = H5Sget_simple_extent_ndims(sp) == rank &&
           H5Sget_simple_extent_dims(sp, dims, NULL) == rank &&
           H5Tget_class(t) == H5T_FLOAT;
  double bytes = ok ? (double)H5Tget_size(t) : 0;
  for (int i = 0; ok && i < rank; i++) {
    ok = dims[i] == want[i];
    bytes *= (double)dims[i];
  }
  ok = ok && (double)H5Dget_storage_size(ds) >= bytes;
  H5Tclose(t);
  H5Sclose(sp);
  H5Dclose(ds);
  return ok ? 0 : -1;
}

static int check_dims(hid_t g, const char *name, int rank, hsize_t d0,
                      hsize_t d1) {
  hsize_t want[2] = {d0, d1};
  return check_array(g, name, rank, want);
}

static int read_matrix(hid_t g, const char *name, double *v, size_t count) {
  if (count == 0) return 0;
  hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
  if (ds < 0) return -1;
  herr_t rc = H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(ds);
  return rc < 0 ? -1 : 0;
}

culeace_status culeace_eraser_file_load(culeace_eraser_file *f, int64_t i,
                                        culeace_eraser **out,
                                        culeace_eraser_meta *meta) {
  if (!f || !out || f->writing) return CULEACE_ERR_INVALID_ARG;
  culeace_ctx *ctx = f->ctx;
  *out = NULL;
  if (i < 0 || i >= f->count)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "eraser index %lld out of range (file %s holds %lld)",
                          (long long)i, f->path, (long long)f->count);
  char name[32];
  snprintf(name, sizeof name, "erasers/%04lld", (long long)i);
  if (H5Lexists(f->fid, "erasers", H5P_DEFAULT) <= 0 ||
      H5Lexists(f->fid, name, H5P_DEFAULT) <= 0)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "eraser file %s: group /%s is missing", f->path,
                          name);
  hid_t g = H5Gopen2(f->fid, name, H5P_DEFAULT);
  if (g < 0)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "eraser file %s: /%s is not a group", f->path, name);
  culeace_eraser_info in;
  memset(&in, 0, sizeof in);
  int64_t affine = -1, shrink = -1, ctr = -1;
  char method[16];
  culeace_status st = CULEACE_OK;
  culeace_eraser *e = NULL;
  const char *missing = NULL;
  if (culeace__h5_get_i64(g, "d", &in.d)) missing = "d";
  else if (culeace__h5_get_i64(g, "rank", &in.rank)) missing = "rank";
  else if (culeace__h5_get_i64(g, "z_dim", &in.z_dim)) missing = "z_dim";
  else if (culeace__h5_get_i64(g, "n_seen", &in.n_seen)) missing = "n_seen";
  else if (culeace__h5_get_i64(g, "n_classes", &in.n_classes)) missing = "n_classes";
  else if (culeace__h5_get_str(g, "method", method, sizeof method)) missing = "method";
  else if (culeace__h5_get_i64(g, "affine", &affine)) missing = "affine";
  else if (culeace__h5_get_i64(g, "shrinkage", &shrink)) missing = "shrinkage";
  else if (culeace__h5_get_i64(g, "constrain_cov_trace", &ctr))
    missing = "constrain_cov_trace";
  else if (culeace__h5_get_f64(g, "svd_tol", &in.svd_tol)) missing = "svd_tol";
  if (missing) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "eraser file %s: /%s lacks attribute '%s' (or it has "
                        "the wrong type)", f->path, name, missing);
    goto cleanup;
  }
  if (in.d < 1 || in.d > (int64_t)1 << 20 || in.rank < 0 || in.rank > in.d ||
      in.z_dim < 1 || in.n_seen < 0 || in.n_classes < 0 ||
      (affine != 0 && affine != 1) || (shrink != 0 && shrink != 1) ||
      (ctr != 0 && ctr != 1) || !(in.svd_tol > 0) || !isfinite(in.svd_tol) ||
      culeace_method_parse(method, &in.method) ||
      (in.method == CULEACE_METHOD_ORACLE &&
       (in.rank != 0 || in.z_dim > (int64_t)1 << 20)) ||
      (in.method == CULEACE_METHOD_QUADRATIC &&
       (in.rank != 0 || in.n_classes < 2 || in.n_classes > (int64_t)1 << 16 ||
        in.z_dim != (in.n_classes == 2 ? 1 : in.n_classes)))) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "eraser file %s: /%s has inconsistent fields (d = "
                        "%lld, rank = %lld, z_dim = %lld, method = '%s', "
                        "affine = %lld)", f->path, name, (long long)in.d,
                        (long long)in.rank, (long long)in.z_dim, method,
                        (long long)affine);
    goto cleanup;
  }
  in.affine = (int)affine;
  in.shrinkage = (int)shrink;
  in.constrain_cov_trace = (int)ctr;
  if (check_dims(g, "L", 2, (hsize_t)in.d, (hsize_t)in.rank) ||
      check_dims(g, "R", 2, (hsize_t)in.rank, (hsize_t)in.d) ||
      check_dims(g, "bias", 1, (hsize_t)in.d, 0)) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "eraser file %s: /%s: datasets L (%lld x %lld), R "
                        "(%lld x %lld) and bias (%lld) missing or of the "
                        "wrong shape or type", f->path, name, (long long)in.d,
                        (long long)in.rank, (long long)in.rank,
                        (long long)in.d, (long long)in.d);
    goto cleanup;
  }
  CULEACE_TRY(culeace__eraser_alloc(ctx, in.d, in.rank, &e));
  param_ds p[MAX_PARAMS];
  int np = params_of(&in, e, p);
  for (int i = 0; i < np; i++)
    if (check_array(g, p[i].name, p[i].rank, p[i].dims)) {
      st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "eraser file %s: /%s is a %s eraser but its "
                          "dataset '%s' is missing, of the wrong shape or "
                          "type, or not fully stored (expected float, %d-D: "
                          "%lld x %lld x %lld)", f->path, name, method,
                          p[i].name, p[i].rank, (long long)p[i].dims[0],
                          (long long)(p[i].rank > 1 ? p[i].dims[1] : 1),
                          (long long)(p[i].rank > 2 ? p[i].dims[2] : 1));
      goto cleanup;
    }
  for (int i = 0; i < np; i++) { /* sizes are backed by stored bytes */
    size_t count = param_count(&p[i]);
    *p[i].slot = culeace__alloc(ctx, count, 8, p[i].name);
    if (!*p[i].slot) {
      st = CULEACE_ERR_OUT_OF_MEMORY;
      goto cleanup;
    }
    if (read_matrix(g, p[i].name, *p[i].slot, count)) {
      st = culeace__error(ctx, CULEACE_ERR_HDF5,
                          "eraser file %s: cannot read %s of /%s", f->path,
                          p[i].name, name);
      goto cleanup;
    }
    for (size_t j = 0; j < count; j++)
      if (!isfinite((*p[i].slot)[j])) {
        st = culeace__error(ctx, CULEACE_ERR_NONFINITE,
                            "eraser file %s: /%s has a non-finite value in "
                            "%s", f->path, name, p[i].name);
        goto cleanup;
      }
  }
  size_t dr = (size_t)in.d * (size_t)in.rank;
  if (read_matrix(g, "L", e->L, dr) || read_matrix(g, "R", e->R, dr) ||
      read_matrix(g, "bias", e->bias, (size_t)in.d)) {
    st = culeace__error(ctx, CULEACE_ERR_HDF5,
                        "eraser file %s: cannot read the matrices of /%s",
                        f->path, name);
    goto cleanup;
  }
  for (size_t j = 0; j < dr; j++)
    if (!isfinite(e->L[j]) || !isfinite(e->R[j])) {
      st = culeace__error(ctx, CULEACE_ERR_NONFINITE,
                          "eraser file %s: /%s has a non-finite value in L "
                          "or R", f->path, name);
      goto cleanup;
    }
  for (int64_t j = 0; j < in.d; j++)
    if (!isfinite(e->bias[j])) {
      st = culeace__error(ctx, CULEACE_ERR_NONFINITE,
                          "eraser file %s: /%s has a non-finite bias", f->path,
                          name);
      goto cleanup;
    }
  e->info = in;
  culeace__eraser_sync(e);
  if (meta) {
    culeace_eraser_meta_init(meta);
    static const char *keys[5] = {"source_file", "source_dataset",
                                  "layer_name", "label_dataset",
                                  "class_values"};
    for (int s = 0; s < 5; s++)
      if (culeace__h5_get_str(g, keys[s], f->meta_strs[s], META_STR_MAX))
        f->meta_strs[s][0] = 0;
    meta->source_file = f->meta_strs[0];
    meta->source_dataset = f->meta_strs[1];
    meta->layer_name = f->meta_strs[2];
    meta->label_dataset = f->meta_strs[3];
    meta->class_values = f->meta_strs[4];
    if (culeace__h5_get_i64(g, "layer", &meta->layer)) meta->layer = -1;
  }
  *out = e;
  e = NULL;
cleanup:
  culeace_eraser_free(e);
  H5Gclose(g);
  return st;
}
