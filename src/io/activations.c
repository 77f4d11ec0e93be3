/* activations.c — opens an activation source (one dataset, a stacked
 * dataset with a layer axis, or a group of per-layer datasets; optionally
 * token-level with a mask), validates it, and moves row blocks of one layer
 * between the file and a contiguous (nex * t, d) buffer. Elements travel raw
 * in the file's encoding: the memory type is a copy of the file type, so
 * HDF5 never converts (2-byte floats included). */
#include "io/activations.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ctx.h"
#include "io/h5attr.h"
#include "io/h5util.h"

typedef enum {
  LAYOUT_DATASET = 0, /* (n, d) or (n, t, d): one layer */
  LAYOUT_STACKED = 1, /* (L, n, [t,] d) or (n, L, [t,] d) */
  LAYOUT_GROUP = 2    /* group of (n, [t,] d) datasets */
} act_layout;

struct culeace_act {
  culeace_ctx *ctx;
  char *file;
  hid_t fid;
  int writable;
  act_layout layout;
  int layer_axis; /* STACKED: 0 or 1 */
  int tokens;     /* 1: token axis present */
  int rank;       /* rank of every dataset */
  int64_t L, n, t, d;
  culeace_dtype dtype;
  size_t elsize;
  hid_t memtype;   /* copy of the file type: no conversion */
  int64_t n_dsets; /* 1 (DATASET, STACKED) or L (GROUP) */
  hid_t *dsets;    /* (n_dsets) open datasets, chunk cache set */
  int64_t chunk_rows; /* examples per chunk along the example axis (the
                         largest over the datasets), 0 when contiguous */
  hid_t *fspaces;  /* (n_dsets) their file dataspaces (selection scratch) */
  char **names;    /* (L) display names */
  char **paths;    /* (L) dataset paths */
  int64_t n_names; /* allocated length of names/paths (>= L) */
  uint8_t *mask;   /* (n * t) or NULL */
  int filtered;
};

void culeace__act_spec_init(culeace_act_spec *s) {
  s->x_path = NULL;
  s->layer_axis = -1;
  s->tokens = 0;
  s->mask_path = NULL;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return (s && s[1]) ? s + 1 : path;
}

/* Shape the spec asks for, for messages. */
static const char *expected_shape(int layer_axis, int tokens) {
  if (layer_axis == 0) return tokens ? "(L, n, t, d)" : "(L, n, d)";
  if (layer_axis == 1) return tokens ? "(n, L, t, d)" : "(n, L, d)";
  return tokens ? "(n, t, d)" : "(n, d)";
}

/* Checks that type is a float we read raw; sets *dt. */
static culeace_status check_dtype(culeace_ctx *ctx, hid_t type,
                                  const char *file, const char *path,
                                  culeace_dtype *dt) {
  culeace_h5_kind k = culeace__h5_classify(type, dt);
  if (k == CULEACE_H5K_FLOAT) return CULEACE_OK;
  char tn[160];
  culeace__h5_type_name(type, tn, sizeof tn);
  return culeace__error(
      ctx, CULEACE_ERR_DTYPE,
      "dataset %s in %s has type %s; activations must be float16, bfloat16, "
      "float32 or float64, little-endian%s",
      path, file, tn,
      k == CULEACE_H5K_FLOAT_OTHER
          ? " (convert it first, e.g. h5py: f[p][...].astype('<f4'))"
          : "");
}

/* Interprets a dataset's dims under the spec: fills L, n, t, d. */
static culeace_status shape_from_dims(culeace_act *a, const char *path,
                                      int rank, const hsize_t *dims,
                                      int group_member) {
  culeace_ctx *ctx = a->ctx;
  char shp[256];
  culeace__h5_shape_str(rank, dims, shp, sizeof shp);
  int want = 2 + (a->layer_axis >= 0) + (a->tokens != 0);
  if (rank != want) {
    if (rank == 3 && want == 2 && !group_member)
      return culeace__error(
          ctx, CULEACE_ERR_SHAPE,
          "dataset %s in %s has shape %s, which is ambiguous: pass "
          "--layer-axis 0|1 or --tokens (expected (n, d) without them)",
          path, a->file, shp);
    if (rank == 3 && want == 2)
      return culeace__error(
          ctx, CULEACE_ERR_SHAPE,
          "dataset %s in %s has shape %s but the layer group's members "
          "must be (n, d); for token-level (n, t, d) members pass --tokens",
          path, a->file, shp);
    return culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "dataset %s in %s has shape %s but %s was expected",
                          path, a->file, shp,
                          expected_shape(a->layer_axis, a->tokens));
  }
  int ax = 0;
  hsize_t L = 1, n, t = 1, d;
  if (a->layer_axis == 0) L = dims[ax++];
  n = dims[ax++];
  if (a->layer_axis == 1) L = dims[ax++];
  if (a->tokens) t = dims[ax++];
  d = dims[ax];
  if (n < 1)
    return culeace__error(ctx, CULEACE_ERR_DEGENERATE,
                          "dataset %s in %s has shape %s: no examples "
                          "(n = 0) in %s",
                          path, a->file, shp,
                          expected_shape(a->layer_axis, a->tokens));
  if (L < 1 || t < 1 || d < 1)
    return culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "dataset %s in %s has shape %s: %s must be >= 1 in "
                          "%s",
                          path, a->file, shp,
                          d < 1 ? "width d" : (t < 1 ? "tokens t" : "layers L"),
                          expected_shape(a->layer_axis, a->tokens));
  size_t total = 1;
  for (int i = 0; i < rank; i++)
    if (!culeace__mul_size(total, (size_t)dims[i], &total) ||
        dims[i] > (hsize_t)INT64_MAX)
      return culeace__error(ctx, CULEACE_ERR_SHAPE,
                            "dataset %s in %s has shape %s: too many "
                            "elements for this machine",
                            path, a->file, shp);
  /* Each layer gets a name and per-layer state before anything is read: a
   * layer axis that only the header claims (a chunked dataset stores
   * nothing it was not given) must not make that cost gigabytes. */
  if (L > CULEACE_MAX_LAYERS)
    return culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "dataset %s in %s has shape %s: %llu layers along "
                          "the layer axis, more than culeace handles (%d)",
                          path, a->file, shp, (unsigned long long)L,
                          CULEACE_MAX_LAYERS);
  a->L = (int64_t)L;
  a->n = (int64_t)n;
  a->t = (int64_t)t;
  a->d = (int64_t)d;
  return CULEACE_OK;
}

/* ---- group layout: member listing ------------------------------------------ */

typedef struct {
  char **names;
  int64_t count, cap;
  int oom;
} member_list;

#if H5_VERSION_GE(1, 12, 0)
static herr_t member_cb(hid_t g, const char *name, const H5L_info2_t *i,
                        void *d)
#else
static herr_t member_cb(hid_t g, const char *name, const H5L_info_t *i,
                        void *d)
#endif
{
  member_list *m = d;
  (void)g;
  (void)i;
  if (m->count == m->cap) {
    int64_t cap = m->cap ? 2 * m->cap : 16;
    char **nn = realloc(m->names, (size_t)cap * sizeof *nn);
    if (!nn) {
      m->oom = 1;
      return -1;
    }
    m->names = nn;
    m->cap = cap;
  }
  m->names[m->count] = dup_str(name);
  if (!m->names[m->count]) {
    m->oom = 1;
    return -1;
  }
  m->count++;
  return 0;
}

static int natural_qsort_cmp(const void *x, const void *y) {
  return culeace__natural_cmp(*(const char *const *)x,
                              *(const char *const *)y);
}

static char *join_path(const char *group, const char *name) {
  size_t lg = strlen(group), ln = strlen(name);
  int slash = !(lg > 0 && group[lg - 1] == '/');
  char *p = malloc(lg + ln + 2);
  if (!p) return NULL;
  memcpy(p, group, lg);
  if (slash) p[lg] = '/';
  memcpy(p + lg + slash, name, ln + 1);
  return p;
}

/* Fills a->names/paths with the group's direct child datasets (natural
 * order), validating that they share shape and dtype. */
static culeace_status scan_group(culeace_act *a, hid_t gid, const char *gpath,
                                 hid_t *first_type) {
  culeace_ctx *ctx = a->ctx;
  culeace_status st = CULEACE_OK;
  member_list m = {0};
  hid_t ds = H5I_INVALID_HID, ty = H5I_INVALID_HID;
  char *path = NULL;
  hsize_t dims0[32], dims[32];
  int rank0 = 0;
  char ref_path[512] = "";

  hsize_t idx = 0;
  if (H5Literate(gid, H5_INDEX_NAME, H5_ITER_INC, &idx, member_cb, &m) < 0) {
    if (m.oom) {
      H5Eclear2(H5E_DEFAULT);
      st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory listing group %s in %s", gpath,
                          a->file);
    } else {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot list group %s in %s", gpath, a->file);
    }
    goto cleanup;
  }
  if (m.count > 1) /* an empty group lists nothing (names may be NULL) */
    qsort(m.names, (size_t)m.count, sizeof *m.names, natural_qsort_cmp);

  a->names = calloc((size_t)(m.count ? m.count : 1), sizeof *a->names);
  a->paths = calloc((size_t)(m.count ? m.count : 1), sizeof *a->paths);
  a->n_names = m.count;
  if (!a->names || !a->paths) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
    goto cleanup;
  }
  int64_t L = 0;
  for (int64_t i = 0; i < m.count; i++) {
    path = join_path(gpath, m.names[i]);
    if (!path) {
      st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
      goto cleanup;
    }
    hid_t o = H5Oopen(a->fid, path, H5P_DEFAULT);
    if (o < 0 || H5Iget_type(o) != H5I_DATASET) { /* sub-group, dangling */
      if (o >= 0) H5Oclose(o);
      H5Eclear2(H5E_DEFAULT);
      free(path);
      path = NULL;
      continue;
    }
    ds = o;
    ty = H5Dget_type(ds);
    if (ty < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot get the type of %s in %s", path, a->file);
      goto cleanup;
    }
    culeace_dtype dt;
    int rank;
    CULEACE_TRY(check_dtype(ctx, ty, a->file, path, &dt));
    CULEACE_TRY(culeace__h5_dims(ctx, ds, a->file, path, &rank, dims));
    if (L == 0) {
      CULEACE_TRY(shape_from_dims(a, path, rank, dims, 1));
      rank0 = rank;
      memcpy(dims0, dims, sizeof dims);
      a->dtype = dt;
      a->rank = rank;
      snprintf(ref_path, sizeof ref_path, "%s", path);
      *first_type = ty;
      ty = H5I_INVALID_HID;
    } else {
      int same = rank == rank0;
      for (int k = 0; same && k < rank; k++) same = dims[k] == dims0[k];
      if (!same || dt != a->dtype) {
        char s1[256], s0[256];
        culeace__h5_shape_str(rank, dims, s1, sizeof s1);
        culeace__h5_shape_str(rank0, dims0, s0, sizeof s0);
        static const char *dn[] = {"float32", "float16", "bfloat16",
                                   "float64"};
        st = culeace__error(
            ctx, same ? CULEACE_ERR_DTYPE : CULEACE_ERR_SHAPE,
            "layer group %s in %s: dataset %s has %s %s but %s has %s %s "
            "(every member must have the same shape and dtype)",
            gpath, a->file, path, s1, dn[dt], ref_path, s0, dn[a->dtype]);
        goto cleanup;
      }
    }
    if (ty >= 0) H5Tclose(ty);
    ty = H5I_INVALID_HID;
    H5Dclose(ds);
    ds = H5I_INVALID_HID;
    a->names[L] = m.names[i];
    m.names[i] = NULL;
    a->paths[L] = path;
    path = NULL;
    L++;
  }
  if (L == 0) {
    st = culeace__error(ctx, CULEACE_ERR_NOT_FOUND,
                        "group %s in %s holds no datasets (expected one "
                        "dataset per layer, each %s)",
                        gpath, a->file, a->tokens ? "(n, t, d)" : "(n, d)");
    goto cleanup;
  }
  a->L = L;
  a->n_dsets = L;
cleanup:
  if (ty >= 0) H5Tclose(ty);
  if (ds >= 0) H5Dclose(ds);
  free(path);
  for (int64_t i = 0; i < m.count; i++) free(m.names[i]);
  free(m.names);
  return st;
}

/* ---- opening ------------------------------------------------------------------- */

/* Opens every dataset with a chunk cache sized for row blocks. */
static culeace_status open_datasets(culeace_act *a) {
  culeace_ctx *ctx = a->ctx;
  culeace_status st = CULEACE_OK;
  hid_t d0 = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dapl = H5I_INVALID_HID;
  a->dsets = malloc((size_t)a->n_dsets * sizeof *a->dsets);
  a->fspaces = malloc((size_t)a->n_dsets * sizeof *a->fspaces);
  if (!a->dsets || !a->fspaces) {
    free(a->dsets);
    free(a->fspaces);
    a->dsets = a->fspaces = NULL;
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  for (int64_t i = 0; i < a->n_dsets; i++)
    a->dsets[i] = a->fspaces[i] = H5I_INVALID_HID;
  int row_axis = a->layout == LAYOUT_STACKED && a->layer_axis == 0 ? 1 : 0;
  for (int64_t i = 0; i < a->n_dsets; i++) {
    const char *path = a->paths[i];
    d0 = H5Dopen2(a->fid, path, H5P_DEFAULT);
    if (d0 < 0 || (dcpl = H5Dget_create_plist(d0)) < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot open dataset %s in %s", path, a->file);
      goto cleanup;
    }
    int nf = H5Pget_nfilters(dcpl);
    if (nf > 0) a->filtered = 1;
    hsize_t dims[32];
    int rank;
    CULEACE_TRY(culeace__h5_dims(ctx, d0, a->file, path, &rank, dims));
    hsize_t cd[32];
    if (H5Pget_layout(dcpl) == H5D_CHUNKED && rank > row_axis &&
        H5Pget_chunk(dcpl, rank, cd) == rank &&
        (int64_t)cd[row_axis] > a->chunk_rows)
      a->chunk_rows = (int64_t)cd[row_axis];
    H5Eclear2(H5E_DEFAULT);
    dapl = culeace__h5_chunk_dapl(dcpl, rank, dims, a->elsize, row_axis,
                                  a->n_dsets);
    if (dapl < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot set up the chunk cache of %s in %s",
                             path, a->file);
      goto cleanup;
    }
    H5Pclose(dcpl);
    dcpl = H5I_INVALID_HID;
    H5Dclose(d0);
    d0 = H5I_INVALID_HID;
    a->dsets[i] = H5Dopen2(a->fid, path, dapl);
    if (a->dsets[i] < 0 || (a->fspaces[i] = H5Dget_space(a->dsets[i])) < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot open dataset %s in %s", path, a->file);
      goto cleanup;
    }
    if (dapl != H5P_DEFAULT) H5Pclose(dapl);
    dapl = H5I_INVALID_HID;
  }
cleanup:
  if (d0 >= 0) H5Dclose(d0);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (dapl >= 0 && dapl != H5P_DEFAULT) H5Pclose(dapl);
  return st;
}

/* Reads the mask (n, t) (or (n,) when t == 1) into a->mask as 0/1 bytes.
 * Elements are read raw and tested for any nonzero byte, which is exact for
 * every integer size, sign and byte order, and for bool enums. */
static culeace_status read_mask(culeace_act *a, const char *mask_path) {
  culeace_ctx *ctx = a->ctx;
  culeace_status st = CULEACE_OK;
  hid_t ds = H5I_INVALID_HID, ty = H5I_INVALID_HID, raw = H5I_INVALID_HID;
  hid_t fsp = H5I_INVALID_HID, msp = H5I_INVALID_HID;
  uint8_t *tmp = NULL;
  char *mp = culeace__h5_abs_path(mask_path);
  if (!mp) return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  CULEACE_TRY(culeace__h5_open_object(ctx, a->fid, a->file, mp, "mask", &ds));
  if (H5Iget_type(ds) != H5I_DATASET) {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "mask %s in %s is a group, not a dataset", mp,
                        a->file);
    goto cleanup;
  }
  ty = H5Dget_type(ds);
  if (ty < 0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                           "cannot get the type of %s in %s", mp, a->file);
    goto cleanup;
  }
  culeace_h5_kind k = culeace__h5_classify(ty, NULL);
  if (k != CULEACE_H5K_INT && k != CULEACE_H5K_ENUM) {
    char tn[160];
    culeace__h5_type_name(ty, tn, sizeof tn);
    st = culeace__error(ctx, CULEACE_ERR_DTYPE,
                        "mask %s in %s has type %s; a mask must be integer "
                        "or bool (nonzero = keep)",
                        mp, a->file, tn);
    goto cleanup;
  }
  int rank;
  hsize_t dims[32];
  CULEACE_TRY(culeace__h5_dims(ctx, ds, a->file, mp, &rank, dims));
  int ok = (rank == 2 && dims[0] == (hsize_t)a->n &&
            dims[1] == (hsize_t)a->t) ||
           (rank == 1 && a->t == 1 && dims[0] == (hsize_t)a->n);
  if (!ok) {
    char shp[256];
    culeace__h5_shape_str(rank, dims, shp, sizeof shp);
    st = culeace__error(ctx, CULEACE_ERR_SHAPE,
                        "mask %s in %s has shape %s but the activations %s "
                        "have (n, t) = (%lld, %lld)",
                        mp, a->file, shp, a->paths[0], (long long)a->n,
                        (long long)a->t);
    goto cleanup;
  }
  size_t nt;
  if (!culeace__mul_size((size_t)a->n, (size_t)a->t, &nt)) {
    st = culeace__error(ctx, CULEACE_ERR_SHAPE, "mask %s in %s is too large",
                        mp, a->file);
    goto cleanup;
  }
  a->mask = culeace__alloc(ctx, nt, 1, "the token mask");
  if (!a->mask) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  size_t es = H5Tget_size(ty);
  raw = H5Tcopy(ty);
  fsp = H5Dget_space(ds);
  if (es == 0 || raw < 0 || fsp < 0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5, "cannot read mask %s in %s",
                           mp, a->file);
    goto cleanup;
  }
  /* Blocks of rows of at most ~4 MiB. */
  int64_t rows = (int64_t)((4u << 20) / (es * (size_t)a->t));
  if (rows < 1) rows = 1;
  if (rows > a->n) rows = a->n;
  tmp = culeace__alloc(ctx, (size_t)rows * (size_t)a->t, es, "a mask block");
  if (!tmp) {
    st = CULEACE_ERR_OUT_OF_MEMORY;
    goto cleanup;
  }
  for (int64_t r0 = 0; r0 < a->n; r0 += rows) {
    int64_t nr = a->n - r0 < rows ? a->n - r0 : rows;
    hsize_t start[2] = {(hsize_t)r0, 0};
    hsize_t count[2] = {(hsize_t)nr, rank == 2 ? dims[1] : 1};
    hsize_t nel = (hsize_t)nr * (hsize_t)a->t;
    if (H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) <
            0 ||
        (msp = H5Screate_simple(rank, count, NULL)) < 0 ||
        H5Dread(ds, raw, msp, fsp, H5P_DEFAULT, tmp) < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot read mask %s in %s", mp, a->file);
      goto cleanup;
    }
    H5Sclose(msp);
    msp = H5I_INVALID_HID;
    uint8_t *dst = a->mask + (size_t)r0 * (size_t)a->t;
    for (hsize_t e = 0; e < nel; e++) {
      uint8_t any = 0;
      for (size_t b = 0; b < es; b++) any |= tmp[e * es + b];
      dst[e] = any != 0;
    }
  }
cleanup:
  if (msp >= 0) H5Sclose(msp);
  if (fsp >= 0) H5Sclose(fsp);
  if (raw >= 0) H5Tclose(raw);
  if (ty >= 0) H5Tclose(ty);
  if (ds >= 0) H5Oclose(ds);
  free(tmp);
  free(mp);
  return st;
}

static void close_datasets(culeace_act *a) {
  for (int64_t i = 0; a->dsets && i < a->n_dsets; i++)
    if (a->dsets[i] >= 0) H5Dclose(a->dsets[i]);
  for (int64_t i = 0; a->fspaces && i < a->n_dsets; i++)
    if (a->fspaces[i] >= 0) H5Sclose(a->fspaces[i]);
  free(a->dsets);
  free(a->fspaces);
  a->dsets = a->fspaces = NULL;
}

static void act_destroy(culeace_act *a) {
  if (!a) return;
  close_datasets(a);
  if (a->memtype >= 0) H5Tclose(a->memtype);
  if (a->names)
    for (int64_t i = 0; i < a->n_names; i++) free(a->names[i]);
  if (a->paths)
    for (int64_t i = 0; i < a->n_names; i++) free(a->paths[i]);
  free(a->names);
  free(a->paths);
  free(a->mask);
  free(a->file);
  free(a);
}

culeace_status culeace__act_open(culeace_ctx *ctx, const char *file,
                                 const culeace_act_spec *spec, int writable,
                                 culeace_act **out) {
  culeace_status st = CULEACE_OK;
  hid_t obj = H5I_INVALID_HID, ty = H5I_INVALID_HID;
  char *xp = NULL;
  culeace_act *a = NULL;
  if (!out || !file || !spec)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "culeace__act_open: NULL argument");
  *out = NULL;
  if (!spec->x_path || !*spec->x_path)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "no activation dataset given for %s", file);
  if (spec->layer_axis < -1 || spec->layer_axis > 1)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "layer axis must be 0 or 1 (or -1 for none), not "
                          "%d",
                          spec->layer_axis);
  a = calloc(1, sizeof *a);
  xp = culeace__h5_abs_path(spec->x_path);
  if (!a || !xp || !(a->file = dup_str(file))) {
    free(xp);
    if (a) free(a->file);
    free(a);
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  }
  a->ctx = ctx;
  a->fid = a->memtype = H5I_INVALID_HID;
  a->writable = writable != 0;
  a->layer_axis = spec->layer_axis;
  a->tokens = spec->tokens != 0;
  a->t = 1;

  CULEACE_TRY(culeace__h5_open(ctx, file, a->writable, &a->fid));
  CULEACE_TRY(culeace__h5_open_object(ctx, a->fid, file, xp, "dataset", &obj));
  H5I_type_t ot = H5Iget_type(obj);
  if (ot == H5I_DATASET) {
    a->layout = spec->layer_axis >= 0 ? LAYOUT_STACKED : LAYOUT_DATASET;
    ty = H5Dget_type(obj);
    if (ty < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot get the type of %s in %s", xp, file);
      goto cleanup;
    }
    CULEACE_TRY(check_dtype(ctx, ty, file, xp, &a->dtype));
    hsize_t dims[32];
    CULEACE_TRY(culeace__h5_dims(ctx, obj, file, xp, &a->rank, dims));
    CULEACE_TRY(shape_from_dims(a, xp, a->rank, dims, 0));
    a->n_dsets = 1;
    a->names = calloc((size_t)a->L, sizeof *a->names);
    a->paths = calloc((size_t)a->L, sizeof *a->paths);
    a->n_names = a->L;
    if (!a->names || !a->paths) {
      st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
      goto cleanup;
    }
    for (int64_t l = 0; l < a->L; l++) {
      char nb[32];
      snprintf(nb, sizeof nb, "%lld", (long long)l);
      a->names[l] = dup_str(a->layout == LAYOUT_STACKED ? nb : base_name(xp));
      a->paths[l] = dup_str(xp);
      if (!a->names[l] || !a->paths[l]) {
        st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
        goto cleanup;
      }
    }
  } else if (ot == H5I_GROUP) {
    if (spec->layer_axis >= 0) {
      st = culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "%s in %s is a group of per-layer datasets; a layer "
                          "axis only applies to a single stacked dataset",
                          xp, file);
      goto cleanup;
    }
    a->layout = LAYOUT_GROUP;
    a->layer_axis = -1;
    CULEACE_TRY(scan_group(a, obj, xp, &ty));
  } else {
    st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                        "%s in %s is neither a dataset nor a group", xp, file);
    goto cleanup;
  }
  a->memtype = H5Tcopy(ty);
  if (a->memtype < 0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5, "cannot copy a datatype");
    goto cleanup;
  }
  a->elsize = H5Tget_size(ty);
  size_t row_bytes;
  if (!culeace__mul_size((size_t)a->t, (size_t)a->d, &row_bytes) ||
      !culeace__mul_size(row_bytes, a->elsize, &row_bytes)) {
    st = culeace__error(ctx, CULEACE_ERR_SHAPE,
                        "activations %s in %s: one example (t x d) is too "
                        "large",
                        xp, file);
    goto cleanup;
  }
  H5Oclose(obj);
  obj = H5I_INVALID_HID;
  CULEACE_TRY(open_datasets(a));
  if (spec->mask_path) CULEACE_TRY(read_mask(a, spec->mask_path));
  *out = a;
  a = NULL;
cleanup:
  if (ty >= 0) H5Tclose(ty);
  if (obj >= 0) H5Oclose(obj);
  if (a) {
    hid_t fid = a->fid;
    act_destroy(a);
    if (fid >= 0) H5Fclose(fid);
  }
  free(xp);
  return st;
}

culeace_status culeace__act_close(culeace_act *a) {
  if (!a) return CULEACE_OK;
  culeace_status st = CULEACE_OK;
  if (a->writable && a->fid >= 0) st = culeace__act_flush(a);
  hid_t fid = a->fid;
  culeace_ctx *ctx = a->ctx;
  char *file = a->file;
  a->file = NULL;
  act_destroy(a);
  if (fid >= 0 && H5Fclose(fid) < 0 && st == CULEACE_OK)
    st = culeace__h5_error(ctx, CULEACE_ERR_IO, "cannot close %s", file);
  free(file);
  return st;
}

culeace_status culeace__act_release(culeace_act *a) {
  if (a->fid < 0) return CULEACE_OK;
  culeace_status st = a->writable ? culeace__act_flush(a) : CULEACE_OK;
  close_datasets(a);
  if (H5Fclose(a->fid) < 0 && st == CULEACE_OK)
    st = culeace__h5_error(a->ctx, CULEACE_ERR_IO, "cannot close %s", a->file);
  a->fid = H5I_INVALID_HID;
  return st;
}

culeace_status culeace__act_reopen(culeace_act *a, int writable) {
  if (a->fid >= 0)
    return culeace__error(a->ctx, CULEACE_ERR_STATE,
                          "%s is already open (release it first)", a->file);
  a->writable = writable != 0;
  culeace_status st = culeace__h5_open(a->ctx, a->file, a->writable, &a->fid);
  if (st) return st;
  st = open_datasets(a);
  if (st) {
    close_datasets(a);
    H5Fclose(a->fid);
    a->fid = H5I_INVALID_HID;
  }
  return st;
}

const char *culeace__act_file(const culeace_act *a) { return a->file; }
int64_t culeace__act_layers(const culeace_act *a) { return a->L; }
int64_t culeace__act_examples(const culeace_act *a) { return a->n; }
int64_t culeace__act_tokens(const culeace_act *a) { return a->t; }
int64_t culeace__act_chunk_rows(const culeace_act *a) { return a->chunk_rows; }

int64_t culeace__act_width(const culeace_act *a) { return a->d; }
culeace_dtype culeace__act_dtype(const culeace_act *a) { return a->dtype; }
const uint8_t *culeace__act_mask(const culeace_act *a) { return a->mask; }
int culeace__act_filtered(const culeace_act *a) { return a->filtered; }

int culeace__act_contiguous_extent(const culeace_act *a, int64_t l,
                                   uint64_t *off, uint64_t *len) {
  if (l < 0 || l >= a->L || a->fid < 0) return 0;
  hid_t ds = a->dsets[a->layout == LAYOUT_GROUP ? l : 0];
  hid_t dcpl = H5Dget_create_plist(ds);
  if (dcpl < 0) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  int plain = H5Pget_layout(dcpl) == H5D_CONTIGUOUS &&
              H5Pget_nfilters(dcpl) == 0 && H5Pget_external_count(dcpl) == 0;
  H5Pclose(dcpl);
  haddr_t at = plain ? H5Dget_offset(ds) : HADDR_UNDEF;
  hsize_t size = at != HADDR_UNDEF ? H5Dget_storage_size(ds) : 0;
  /* Every element stored: the dataset's shape times its element size. */
  hid_t sp = H5Dget_space(ds);
  hssize_t npoints = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (sp >= 0) H5Sclose(sp);
  H5Eclear2(H5E_DEFAULT);
  if (at == HADDR_UNDEF || npoints <= 0 ||
      size != (hsize_t)npoints * (hsize_t)a->elsize)
    return 0;
  *off = (uint64_t)at;
  *len = (uint64_t)size;
  return 1;
}

const char *culeace__act_layer_name(const culeace_act *a, int64_t l) {
  return (l >= 0 && l < a->L) ? a->names[l] : NULL;
}

const char *culeace__act_dataset_path(const culeace_act *a, int64_t l) {
  return (l >= 0 && l < a->L) ? a->paths[l] : NULL;
}

/* ---- row blocks ------------------------------------------------------------------ */

/* Moves examples [ex0, ex0 + nex) of layer l between file and buf. */
static culeace_status xfer(culeace_act *a, int64_t l, int64_t ex0,
                           int64_t nex, void *buf, int write) {
  culeace_ctx *ctx = a->ctx;
  const char *verb = write ? "write" : "read";
  if (l < 0 || l >= a->L)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "cannot %s layer %lld of %s in %s: it has %lld "
                          "layers",
                          verb, (long long)l, a->paths[0], a->file,
                          (long long)a->L);
  if (ex0 < 0 || nex < 0 || ex0 > a->n || nex > a->n - ex0)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "cannot %s examples [%lld, %lld) of %s in %s: it "
                          "has %lld examples",
                          verb, (long long)ex0, (long long)(ex0 + nex),
                          a->paths[l], a->file, (long long)a->n);
  if (write && !a->writable)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "cannot write %s in %s: opened read-only",
                          a->paths[l], a->file);
  if (a->fid < 0)
    return culeace__error(ctx, CULEACE_ERR_STATE,
                          "cannot %s %s in %s: the file was released "
                          "(culeace__act_reopen first)",
                          verb, a->paths[l], a->file);
  if (nex == 0) return CULEACE_OK;
  if (!buf)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "NULL buffer");
  size_t nel;
  if (!culeace__mul_size((size_t)nex, (size_t)a->t, &nel) ||
      !culeace__mul_size(nel, (size_t)a->d, &nel))
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "block of %lld examples is too large",
                          (long long)nex);

  int64_t di = a->layout == LAYOUT_GROUP ? l : 0;
  hid_t ds = a->dsets[di], fsp = a->fspaces[di];
  /* start/count per axis; everything after the example/layer axes full. */
  hsize_t start[4] = {0, 0, 0, 0}, count[4];
  int ax = 0;
  if (a->layout == LAYOUT_STACKED && a->layer_axis == 0) {
    start[ax] = (hsize_t)l;
    count[ax++] = 1;
  }
  start[ax] = (hsize_t)ex0;
  count[ax++] = (hsize_t)nex;
  if (a->layout == LAYOUT_STACKED && a->layer_axis == 1) {
    start[ax] = (hsize_t)l;
    count[ax++] = 1;
  }
  if (a->tokens) count[ax++] = (hsize_t)a->t;
  count[ax++] = (hsize_t)a->d;

  /* The memory space has the selection's own shape: with a 1-D memory
   * space HDF5 maps chunked selections element by element (~100x slower). */
  culeace_status st = CULEACE_OK;
  hid_t msp = H5Screate_simple(ax, count, NULL);
  herr_t rc = -1;
  if (msp >= 0 &&
      H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
    rc = write ? H5Dwrite(ds, a->memtype, msp, fsp, H5P_DEFAULT, buf)
               : H5Dread(ds, a->memtype, msp, fsp, H5P_DEFAULT, buf);
  if (rc < 0) {
    char where[64] = "";
    if (a->layout == LAYOUT_STACKED)
      snprintf(where, sizeof where, " (layer %lld)", (long long)l);
    st = culeace__h5_error(ctx, CULEACE_ERR_IO,
                           "cannot %s examples [%lld, %lld) of %s%s in %s",
                           verb, (long long)ex0, (long long)(ex0 + nex),
                           a->paths[l], where, a->file);
  }
  if (msp >= 0) H5Sclose(msp);
  return st;
}

culeace_status culeace__act_read(culeace_act *a, int64_t l, int64_t ex0,
                                 int64_t nex, void *buf) {
  return xfer(a, l, ex0, nex, buf, 0);
}

culeace_status culeace__act_write(culeace_act *a, int64_t l, int64_t ex0,
                                  int64_t nex, const void *buf) {
  return xfer(a, l, ex0, nex, (void *)buf, 1);
}

culeace_status culeace__act_flush_fd(culeace_act *a, int *fd) {
  *fd = -1;
  if (!a->writable) return CULEACE_OK;
  if (H5Fflush(a->fid, H5F_SCOPE_GLOBAL) < 0)
    return culeace__h5_error(a->ctx, CULEACE_ERR_IO, "cannot flush %s",
                             a->file);
  /* the file descriptor under the sec2 driver */
  hid_t fapl = H5Fget_access_plist(a->fid);
  if (fapl < 0)
    return culeace__h5_error(a->ctx, CULEACE_ERR_HDF5,
                             "cannot get the access plist of %s", a->file);
  hid_t drv = H5Pget_driver(fapl);
  H5Pclose(fapl);
  if (drv != H5FD_SEC2) {
    H5Eclear2(H5E_DEFAULT);
    return CULEACE_OK; /* not a POSIX file descriptor: flushed only */
  }
  void *handle = NULL;
  if (H5Fget_vfd_handle(a->fid, H5P_DEFAULT, &handle) < 0 || !handle)
    return culeace__h5_error(a->ctx, CULEACE_ERR_IO,
                             "cannot get the file descriptor of %s", a->file);
  *fd = *(int *)handle;
  return CULEACE_OK;
}

culeace_status culeace__act_flush(culeace_act *a) {
  int fd;
  culeace_status st = culeace__act_flush_fd(a, &fd);
  /* fdatasync: the data and what reading it back needs (the size), not
   * the inode's times */
  if (!st && fd >= 0 && fdatasync(fd) != 0)
    return culeace__error(a->ctx, CULEACE_ERR_IO, "fsync of %s failed: %s",
                          a->file, strerror(errno));
  return st;
}

/* ---- completion markers ------------------------------------------------------ */

static hid_t layer_dataset(const culeace_act *a, int64_t l) {
  if (!a->dsets) return H5I_INVALID_HID; /* released */
  return a->dsets[a->layout == LAYOUT_GROUP ? l : 0];
}

culeace_status culeace__act_set_marker(culeace_act *a, int64_t l,
                                       const char *name, const char *value) {
  if (!a->writable)
    return culeace__error(a->ctx, CULEACE_ERR_STATE,
                          "%s is open read-only", a->file);
  hid_t ds = layer_dataset(a, l);
  if (H5Aexists(ds, name) > 0 && H5Adelete(ds, name) < 0)
    return culeace__h5_error(a->ctx, CULEACE_ERR_IO,
                             "cannot replace attribute %s of %s in %s", name,
                             a->paths[l], a->file);
  if (culeace__h5_put_str(ds, name, value) != 0)
    return culeace__h5_error(a->ctx, CULEACE_ERR_IO,
                             "cannot write attribute %s of %s in %s", name,
                             a->paths[l], a->file);
  return CULEACE_OK;
}

int culeace__act_has_marker(const culeace_act *a, int64_t l, const char *name,
                            const char *value) {
  hid_t ds = layer_dataset(a, l);
  if (H5Aexists(ds, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  size_t len = strlen(value) + 2;
  char *buf = malloc(len);
  int same = buf && culeace__h5_get_str(ds, name, buf, len) == 0 &&
             strcmp(buf, value) == 0;
  free(buf);
  H5Eclear2(H5E_DEFAULT);
  return same;
}
