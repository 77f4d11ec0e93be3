/* labels.c — reads concept labels and group ids that go with activations.
 * Integer labels become classes 0..K-1 (ascending original value); float
 * labels become continuous (rows, k) float64 columns. Per-example labels are
 * repeated over the activations' tokens. Label datasets are read in bounded
 * row blocks (twice for classes: distinct values, then mapping), so the only
 * large allocation is the output itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "io/activations.h"
#include "io/h5util.h"

#define LABEL_BLOCK_ELEMS 65536 /* elements per read block */

/* Open label-like dataset state. */
typedef struct {
  culeace_ctx *ctx;
  const char *file;
  char *path; /* absolute */
  hid_t fid, ds, ty;
  int rank;
  hsize_t dims[32];
  culeace_h5_kind kind;
} lab_src;

static void src_close(lab_src *s) {
  if (s->ty >= 0) H5Tclose(s->ty);
  if (s->ds >= 0) H5Oclose(s->ds);
  if (s->fid >= 0) H5Fclose(s->fid);
  free(s->path);
  s->ty = s->ds = s->fid = H5I_INVALID_HID;
  s->path = NULL;
}

static culeace_status src_open(culeace_ctx *ctx, const char *file,
                               const char *path, const char *what,
                               lab_src *s) {
  culeace_status st = CULEACE_OK;
  memset(s, 0, sizeof *s);
  s->ctx = ctx;
  s->file = file;
  s->fid = s->ds = s->ty = H5I_INVALID_HID;
  if (!file || !path || !*path)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "no %s dataset given",
                          what);
  s->path = culeace__h5_abs_path(path);
  if (!s->path)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  CULEACE_TRY(culeace__h5_open(ctx, file, 0, &s->fid));
  CULEACE_TRY(
      culeace__h5_open_object(ctx, s->fid, file, s->path, what, &s->ds));
  if (H5Iget_type(s->ds) != H5I_DATASET) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "%s %s in %s is a group, not a dataset", what, s->path,
                        file);
    goto cleanup;
  }
  s->ty = H5Dget_type(s->ds);
  if (s->ty < 0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                           "cannot get the type of %s in %s", s->path, file);
    goto cleanup;
  }
  s->kind = culeace__h5_classify(s->ty, NULL);
  CULEACE_TRY(culeace__h5_dims(ctx, s->ds, file, s->path, &s->rank, s->dims));
  return CULEACE_OK;
cleanup:
  src_close(s);
  return st;
}

/* "labels /y in f.h5 have 999 rows but activations /x have 1000". */
static culeace_status rows_mismatch(lab_src *s, const char *what,
                                    int64_t n_examples, const char *x_desc) {
  if (s->rank >= 1 && s->dims[0] == (hsize_t)n_examples) return CULEACE_OK;
  char xd[300];
  if (x_desc && *x_desc)
    snprintf(xd, sizeof xd, "activations %s", x_desc);
  else
    snprintf(xd, sizeof xd, "the activations");
  if (s->rank == 0)
    return culeace__error(s->ctx, CULEACE_ERR_SHAPE,
                          "%s %s in %s is a scalar but %s have %lld rows",
                          what, s->path, s->file, xd, (long long)n_examples);
  return culeace__error(s->ctx, CULEACE_ERR_SHAPE,
                        "%s %s in %s have %llu rows but %s have %lld", what,
                        s->path, s->file, (unsigned long long)s->dims[0], xd,
                        (long long)n_examples);
}

/* Reads rows [r0, r0 + nr) of a float dataset (all later axes) as double. */
static culeace_status read_f64_rows(lab_src *s, int64_t r0, int64_t nr,
                                    double *buf) {
  culeace_status st = CULEACE_OK;
  hsize_t start[32] = {0}, count[32];
  start[0] = (hsize_t)r0;
  count[0] = (hsize_t)nr;
  for (int i = 1; i < s->rank; i++) count[i] = s->dims[i];
  hid_t fsp = H5Dget_space(s->ds), msp = H5I_INVALID_HID;
  if (fsp < 0 ||
      H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
      (msp = H5Screate_simple(s->rank, count, NULL)) < 0 ||
      H5Dread(s->ds, H5T_NATIVE_DOUBLE, msp, fsp, H5P_DEFAULT, buf) < 0)
    st = culeace__h5_error(s->ctx, CULEACE_ERR_HDF5,
                           "cannot read rows %lld..%lld of %s in %s",
                           (long long)r0, (long long)(r0 + nr - 1), s->path,
                           s->file);
  if (msp >= 0) H5Sclose(msp);
  if (fsp >= 0) H5Sclose(fsp);
  return st;
}

static int cmp_i64(const void *x, const void *y) {
  int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
  return (a > b) - (a < b);
}

/* Merges sorted unique src (ns) into sorted unique *vals (*nv, capacity
 * *cap). Returns 0 on out of memory. */
static int merge_unique(int64_t **vals, int64_t *nv, int64_t *cap,
                        const int64_t *src, int64_t ns) {
  int64_t need = *nv + ns;
  int64_t *out = malloc((size_t)(need ? need : 1) * sizeof *out);
  if (!out) return 0;
  int64_t i = 0, j = 0, k = 0;
  const int64_t *v = *vals;
  while (i < *nv || j < ns) {
    int64_t x;
    if (j >= ns || (i < *nv && v[i] <= src[j])) {
      x = v[i++];
      if (j < ns && src[j] == x) j++;
    } else {
      x = src[j++];
    }
    out[k++] = x;
  }
  free(*vals);
  *vals = out;
  *nv = k;
  *cap = need;
  return 1;
}

static int64_t find_i64(const int64_t *v, int64_t n, int64_t x) {
  int64_t lo = 0, hi = n - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (v[mid] == x) return mid;
    if (v[mid] < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/* Whether row r (example i, token j, t tokens) is kept by mask. For per-
 * example labels (j < 0) an example is kept if any of its tokens is. */
static int kept(const uint8_t *mask, int64_t i, int64_t j, int64_t t) {
  if (!mask) return 1;
  if (j >= 0) return mask[i * t + j] != 0;
  for (int64_t k = 0; k < t; k++)
    if (mask[i * t + k]) return 1;
  return 0;
}

static culeace_status read_classes(lab_src *s, int64_t n, int64_t t,
                                   int per_token, const uint8_t *mask,
                                   culeace_labels *out) {
  culeace_ctx *ctx = s->ctx;
  culeace_status st = CULEACE_OK;
  int64_t cols = per_token ? t : 1;
  int64_t rows_blk = LABEL_BLOCK_ELEMS / cols;
  if (rows_blk < 1) rows_blk = 1;
  if (rows_blk > n) rows_blk = n;
  size_t es = H5Tget_size(s->ty);
  size_t slot = es > 8 ? es : 8;
  int64_t *buf = NULL, *tmp = NULL, *vals = NULL;
  int64_t nv = 0, cap = 0;
  buf = culeace__alloc(ctx, (size_t)(rows_blk * cols), slot, "a label block");
  tmp = culeace__alloc(ctx, (size_t)(rows_blk * cols), 8, "a label block");
  if (!buf || !tmp) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  /* Pass 1: distinct values of kept rows. */
  for (int64_t r0 = 0; r0 < n; r0 += rows_blk) {
    int64_t nr = n - r0 < rows_blk ? n - r0 : rows_blk;
    CULEACE_TRY(culeace__h5_read_int_rows(ctx, s->ds, s->ty, s->file, s->path,
                                          s->rank, s->dims, r0, nr, buf));
    /* labels take few values: the block's first FEW distinct ones are
     * kept in seen (sorted), and only values past those are sorted */
    enum { FEW = 16 };
    int64_t seen[FEW], ns = 0, m = 0;
    for (int64_t i = 0; i < nr; i++)
      for (int64_t j = 0; j < cols; j++) {
        if (!kept(mask, r0 + i, per_token ? j : -1, t)) continue;
        int64_t v = buf[i * cols + j], at = 0;
        while (at < ns && seen[at] < v) at++;
        if (at < ns && seen[at] == v) continue;
        if (ns == FEW) {
          tmp[m++] = v;
          continue;
        }
        memmove(seen + at + 1, seen + at, (size_t)(ns - at) * sizeof *seen);
        seen[at] = v;
        ns++;
      }
    qsort(tmp, (size_t)m, sizeof *tmp, cmp_i64);
    int64_t u = 0;
    for (int64_t i = 0; i < m; i++)
      if (u == 0 || tmp[u - 1] != tmp[i]) tmp[u++] = tmp[i];
    if (!merge_unique(&vals, &nv, &cap, seen, ns) ||
        !merge_unique(&vals, &nv, &cap, tmp, u)) {
      st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory collecting label values");
      goto cleanup;
    }
  }
  if (nv == 0) {
    st = culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                        "labels %s in %s: the mask keeps no rows", s->path,
                        s->file);
    goto cleanup;
  }
  if (nv < 2) {
    st = culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                        "labels %s in %s have only one class (value %lld)",
                        s->path, s->file, (long long)vals[0]);
    goto cleanup;
  }
  if (nv > INT32_MAX) {
    st = culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                        "labels %s in %s have %lld distinct values: too many "
                        "classes",
                        s->path, s->file, (long long)nv);
    goto cleanup;
  }
  size_t rows = (size_t)n * (size_t)t;
  out->classes = culeace__alloc(ctx, rows, sizeof *out->classes, "labels");
  out->class_counts = calloc((size_t)nv, sizeof *out->class_counts);
  out->class_values = culeace__alloc(ctx, (size_t)nv, 8, "class values");
  if (!out->classes || !out->class_counts || !out->class_values) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory for labels %s", s->path);
    goto cleanup;
  }
  memcpy(out->class_values, vals, (size_t)nv * 8);
  out->n_classes = nv;
  /* Pass 2: map to 0..K-1, repeating per-example labels over tokens. */
  for (int64_t r0 = 0; r0 < n; r0 += rows_blk) {
    int64_t nr = n - r0 < rows_blk ? n - r0 : rows_blk;
    CULEACE_TRY(culeace__h5_read_int_rows(ctx, s->ds, s->ty, s->file, s->path,
                                          s->rank, s->dims, r0, nr, buf));
    for (int64_t i = 0; i < nr; i++) {
      int64_t ex = r0 + i;
      for (int64_t j = 0; j < t; j++) {
        int64_t v = buf[i * cols + (per_token ? j : 0)];
        int64_t row = ex * t + j;
        if (mask && !mask[row]) {
          out->classes[row] = -1;
          continue;
        }
        int64_t c = find_i64(vals, nv, v);
        out->classes[row] = (int32_t)c;
        out->class_counts[c]++;
      }
    }
  }
cleanup:
  free(buf);
  free(tmp);
  free(vals);
  return st;
}

static culeace_status read_continuous(lab_src *s, int64_t n, int64_t t,
                                      int per_token, int64_t k,
                                      const uint8_t *mask,
                                      culeace_labels *out) {
  culeace_ctx *ctx = s->ctx;
  culeace_status st = CULEACE_OK;
  int64_t per_row = (per_token ? t : 1) * k; /* values per dataset row */
  int64_t rows_blk = LABEL_BLOCK_ELEMS / per_row;
  if (rows_blk < 1) rows_blk = 1;
  if (rows_blk > n) rows_blk = n;
  double *buf = NULL;
  size_t zn;
  if (!culeace__mul_size((size_t)n * (size_t)t, (size_t)k, &zn))
    return culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "labels %s in %s are too large", s->path, s->file);
  buf = culeace__alloc(ctx, (size_t)(rows_blk * per_row), sizeof *buf,
                       "a label block");
  out->z = culeace__alloc(ctx, zn, sizeof *out->z, "continuous labels");
  if (!buf || !out->z) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  out->k = k;
  for (int64_t r0 = 0; r0 < n; r0 += rows_blk) {
    int64_t nr = n - r0 < rows_blk ? n - r0 : rows_blk;
    CULEACE_TRY(read_f64_rows(s, r0, nr, buf));
    for (int64_t i = 0; i < nr; i++) {
      int64_t ex = r0 + i;
      for (int64_t j = 0; j < t; j++) {
        const double *src = buf + i * per_row + (per_token ? j * k : 0);
        int64_t row = ex * t + j;
        int keep = !mask || mask[row];
        for (int64_t c = 0; c < k; c++) {
          if (keep && !isfinite(src[c])) {
            char tok[48] = "";
            if (t > 1) snprintf(tok, sizeof tok, ", token %lld", (long long)j);
            st = culeace__error(ctx, CULEACE_ERR_NONFINITE,
                                "labels %s in %s: row %lld%s, column %lld is "
                                "%s",
                                s->path, s->file, (long long)ex, tok,
                                (long long)c, isnan(src[c]) ? "NaN" : "Inf");
            goto cleanup;
          }
          out->z[row * k + c] = src[c];
        }
      }
    }
  }
cleanup:
  free(buf);
  return st;
}

culeace_status culeace__labels_read_masked(culeace_ctx *ctx, const char *file,
                                           const char *path,
                                           int64_t n_examples, int64_t tokens,
                                           const char *x_desc,
                                           const uint8_t *mask,
                                           culeace_labels *out) {
  culeace_status st = CULEACE_OK;
  lab_src s;
  if (!out)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "NULL labels output");
  memset(out, 0, sizeof *out);
  if (n_examples < 1 || tokens < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "labels need n >= 1 and t >= 1 (got %lld, %lld)",
                          (long long)n_examples, (long long)tokens);
  CULEACE_TRY(src_open(ctx, file, path, "labels", &s));
  char shp[256];
  culeace__h5_shape_str(s.rank, s.dims, shp, sizeof shp);
  if (s.kind == CULEACE_H5K_INT || s.kind == CULEACE_H5K_ENUM) {
    CULEACE_TRY(rows_mismatch(&s, "labels", n_examples, x_desc));
    int per_token;
    if (s.rank == 1 || (s.rank == 2 && s.dims[1] == 1)) {
      per_token = 0;
    } else if (s.rank == 2 && s.dims[1] == (hsize_t)tokens) {
      per_token = 1;
    } else {
      st = culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "labels %s in %s have shape %s; integer labels must "
                          "be (n,) or (n, t) = (%lld, %lld)",
                          s.path, file, shp, (long long)n_examples,
                          (long long)tokens);
      goto cleanup;
    }
    out->n = n_examples * tokens;
    out->continuous = 0;
    CULEACE_TRY(read_classes(&s, n_examples, tokens, per_token, mask, out));
  } else if (s.kind == CULEACE_H5K_FLOAT || s.kind == CULEACE_H5K_FLOAT_OTHER) {
    CULEACE_TRY(rows_mismatch(&s, "labels", n_examples, x_desc));
    int per_token = 0;
    int64_t k;
    if (s.rank == 1) {
      k = 1;
    } else if (s.rank == 2) {
      k = (int64_t)s.dims[1];
    } else if (s.rank == 3 && tokens > 1 && s.dims[1] == (hsize_t)tokens) {
      per_token = 1;
      k = (int64_t)s.dims[2];
    } else {
      st = culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "labels %s in %s have shape %s; float labels must "
                          "be (n,), (n, k) or, per token, (n, t, k) with "
                          "n = %lld, t = %lld",
                          s.path, file, shp, (long long)n_examples,
                          (long long)tokens);
      goto cleanup;
    }
    if (k < 1) {
      st = culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "labels %s in %s have shape %s: no columns", s.path,
                          file, shp);
      goto cleanup;
    }
    out->n = n_examples * tokens;
    out->continuous = 1;
    CULEACE_TRY(
        read_continuous(&s, n_examples, tokens, per_token, k, mask, out));
  } else {
    char tn[160];
    culeace__h5_type_name(s.ty, tn, sizeof tn);
    st = culeace__error(ctx, CULEACE_ERR_DTYPE,
                        "labels %s in %s have type %s; labels must be "
                        "integer or bool (classes) or float (continuous)",
                        s.path, file, tn);
    goto cleanup;
  }
cleanup:
  src_close(&s);
  if (st != CULEACE_OK) culeace__labels_free(out);
  return st;
}

culeace_status culeace__labels_read(culeace_ctx *ctx, const char *file,
                                    const char *path, int64_t n_examples,
                                    int64_t tokens, const char *x_desc,
                                    culeace_labels *out) {
  return culeace__labels_read_masked(ctx, file, path, n_examples, tokens,
                                     x_desc, NULL, out);
}

void culeace__labels_free(culeace_labels *l) {
  if (!l) return;
  free(l->classes);
  free(l->class_values);
  free(l->class_counts);
  free(l->z);
  memset(l, 0, sizeof *l);
}

culeace_status culeace__groups_read(culeace_ctx *ctx, const char *file,
                                    const char *path, int64_t n_examples,
                                    int64_t tokens, int64_t **out) {
  culeace_status st = CULEACE_OK;
  lab_src s;
  int64_t *ids = NULL, *buf = NULL;
  if (!out)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "NULL groups output");
  *out = NULL;
  if (n_examples < 1 || tokens < 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "groups need n >= 1 and t >= 1");
  CULEACE_TRY(src_open(ctx, file, path, "groups", &s));
  if (s.kind != CULEACE_H5K_INT && s.kind != CULEACE_H5K_ENUM) {
    char tn[160];
    culeace__h5_type_name(s.ty, tn, sizeof tn);
    st = culeace__error(ctx, CULEACE_ERR_DTYPE,
                        "groups %s in %s have type %s; group ids must be "
                        "integers",
                        s.path, file, tn);
    goto cleanup;
  }
  CULEACE_TRY(rows_mismatch(&s, "groups", n_examples, NULL));
  if (!(s.rank == 1 || (s.rank == 2 && s.dims[1] == 1))) {
    char shp[256];
    culeace__h5_shape_str(s.rank, s.dims, shp, sizeof shp);
    st = culeace__error(ctx, CULEACE_ERR_SHAPE,
                        "groups %s in %s have shape %s; group ids must be "
                        "(n,) = (%lld,)",
                        s.path, file, shp, (long long)n_examples);
    goto cleanup;
  }
  size_t rows;
  if (!culeace__mul_size((size_t)n_examples, (size_t)tokens, &rows)) {
    st = culeace__error(ctx, CULEACE_ERR_SHAPE, "groups: too many rows");
    goto cleanup;
  }
  int64_t rows_blk = n_examples < LABEL_BLOCK_ELEMS ? n_examples
                                                    : LABEL_BLOCK_ELEMS;
  size_t es = H5Tget_size(s.ty);
  ids = culeace__alloc(ctx, rows, sizeof *ids, "group ids");
  buf = culeace__alloc(ctx, (size_t)rows_blk, es > 8 ? es : 8,
                       "a group-id block");
  if (!ids || !buf) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  for (int64_t r0 = 0; r0 < n_examples; r0 += rows_blk) {
    int64_t nr = n_examples - r0 < rows_blk ? n_examples - r0 : rows_blk;
    CULEACE_TRY(culeace__h5_read_int_rows(ctx, s.ds, s.ty, file, s.path,
                                          s.rank, s.dims, r0, nr, buf));
    for (int64_t i = 0; i < nr; i++)
      for (int64_t j = 0; j < tokens; j++) ids[(r0 + i) * tokens + j] = buf[i];
  }
  *out = ids;
  ids = NULL;
cleanup:
  src_close(&s);
  free(ids);
  free(buf);
  return st;
}
