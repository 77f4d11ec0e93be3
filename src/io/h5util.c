/* h5util.c — HDF5 helpers for the io/ files: error-stack translation, file
 * and object opening with clear messages, datatype naming/classification,
 * natural name order, chunk-cache sizing, integer row-block reads. */
#include "io/h5util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ctx.h"

/* ---- error translation -------------------------------------------------- */

typedef struct {
  int have;
  char func[96];
  char desc[256];
  hid_t min_num;
} h5_err_top;

/* Walked upward (innermost first): keep entry 0. */
static herr_t h5_err_walk(unsigned n, const H5E_error2_t *e, void *data) {
  h5_err_top *t = data;
  if (n == 0 && e) {
    t->have = 1;
    snprintf(t->func, sizeof t->func, "%s", e->func_name ? e->func_name : "?");
    snprintf(t->desc, sizeof t->desc, "%s", e->desc ? e->desc : "");
    t->min_num = e->min_num;
  }
  return 0;
}

culeace_status culeace__h5_error(culeace_ctx *ctx, culeace_status status,
                                 const char *fmt, ...) {
  char msg[CULEACE_ERRMSG_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);

  h5_err_top top = {0};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_err_walk, &top);
  char minor[128] = "";
  if (top.have) {
    H5E_type_t mt;
    if (H5Eget_msg(top.min_num, &mt, minor, sizeof minor) < 0) minor[0] = 0;
  }
  H5Eclear2(H5E_DEFAULT);
  if (!top.have) return culeace__error(ctx, status, "%s", msg);
  return culeace__error(ctx, status, "%s [HDF5: %s(): %s%s%s]", msg, top.func,
                        top.desc, minor[0] ? "; " : "", minor);
}

/* ---- opening files and objects -------------------------------------------- */

culeace_status culeace__h5_open(culeace_ctx *ctx, const char *path,
                                int writable, hid_t *out) {
  *out = H5I_INVALID_HID;
  if (!path || !*path)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG, "empty file name");
  struct stat sb;
  if (stat(path, &sb) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return culeace__error(ctx, CULEACE_ERR_NOT_FOUND, "file not found: %s",
                            path);
    return culeace__error(ctx, CULEACE_ERR_IO, "cannot access %s: %s", path,
                          strerror(errno));
  }
  if (S_ISDIR(sb.st_mode))
    return culeace__error(ctx, CULEACE_ERR_IO,
                          "%s is a directory, not an HDF5 file", path);
  if (access(path, writable ? (R_OK | W_OK) : R_OK) != 0)
    return culeace__error(ctx, CULEACE_ERR_IO, "cannot open %s for %s: %s",
                          path, writable ? "writing" : "reading",
                          strerror(errno));
  if (sb.st_size == 0)
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "not an HDF5 file: %s (the file is empty)", path);
#if H5_VERSION_GE(1, 12, 0)
  htri_t ok = H5Fis_accessible(path, H5P_DEFAULT);
#else
  htri_t ok = H5Fis_hdf5(path);
#endif
  if (ok <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return culeace__error(ctx, CULEACE_ERR_FORMAT,
                          "not an HDF5 file: %s (no HDF5 signature found)",
                          path);
  }
  hid_t fid = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY,
                      H5P_DEFAULT);
  if (fid < 0)
    return culeace__h5_error(ctx, CULEACE_ERR_IO,
                             "cannot open HDF5 file %s for %s", path,
                             writable ? "writing" : "reading");
  *out = fid;
  return CULEACE_OK;
}

char *culeace__h5_abs_path(const char *path) {
  size_t len = strlen(path);
  int add = path[0] != '/';
  char *p = malloc(len + 2);
  if (!p) return NULL;
  if (add) p[0] = '/';
  memcpy(p + add, path, len + 1);
  return p;
}

typedef struct {
  char buf[400];
  size_t used;
  int count;
} name_list;

#if H5_VERSION_GE(1, 12, 0)
static herr_t list_cb(hid_t g, const char *name, const H5L_info2_t *i, void *d)
#else
static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *i, void *d)
#endif
{
  name_list *nl = d;
  (void)g;
  (void)i;
  int w = -1;
  if (nl->count < 24 && nl->used + strlen(name) + 8 < sizeof nl->buf)
    w = snprintf(nl->buf + nl->used, sizeof nl->buf - nl->used, "%s%s",
                 nl->count ? ", " : "", name);
  if (w < 0 || (size_t)w >= sizeof nl->buf - nl->used) {
    snprintf(nl->buf + nl->used, sizeof nl->buf - nl->used, ", ...");
    return 1;
  }
  nl->used += (size_t)w;
  nl->count++;
  return 0;
}

culeace_status culeace__h5_open_object(culeace_ctx *ctx, hid_t fid,
                                       const char *file, const char *path,
                                       const char *what, hid_t *out) {
  *out = H5I_INVALID_HID;
  if (!path || !*path)
    return culeace__error(ctx, CULEACE_ERR_INVALID_ARG,
                          "empty %s path for %s", what, file);
  /* Walk the components so that a missing parent is reported as missing,
   * together with what its nearest existing parent holds. */
  size_t len = strlen(path);
  char *pre = malloc(len + 2);
  if (!pre)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  char parent[512] = "/";
  int missing = 0;
  for (size_t i = 0; i <= len && !missing; i++) {
    if (i < len && path[i] != '/') continue;
    if (i == 0) continue; /* leading '/' */
    memcpy(pre, path, i);
    pre[i] = 0;
    if (pre[i - 1] == '/') continue; /* "a//b" */
    htri_t ex = H5Lexists(fid, pre, H5P_DEFAULT);
    if (ex <= 0) {
      H5Eclear2(H5E_DEFAULT);
      missing = 1;
    } else if (i < len) {
      snprintf(parent, sizeof parent, "%s", pre);
    }
  }
  free(pre);
  if (missing) {
    name_list nl = {.used = 0, .count = 0};
    nl.buf[0] = 0;
    int is_group = 0;
    hid_t g = H5Oopen(fid, parent, H5P_DEFAULT);
    if (g >= 0 && H5Iget_type(g) == H5I_GROUP) {
      hsize_t idx = 0;
      is_group = 1;
      H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &nl);
    }
    if (g >= 0) H5Oclose(g);
    H5Eclear2(H5E_DEFAULT);
    if (!is_group)
      return culeace__error(ctx, CULEACE_ERR_NOT_FOUND,
                            "%s %s not found in %s (%s is not a group)", what,
                            path, file, parent);
    return culeace__error(ctx, CULEACE_ERR_NOT_FOUND,
                          "%s %s not found in %s (%s %s holds: %s)", what,
                          path, file, strcmp(parent, "/") ? "group" : "root",
                          parent, nl.count ? nl.buf : "nothing");
  }
  hid_t o = H5Oopen(fid, path, H5P_DEFAULT);
  if (o < 0)
    return culeace__h5_error(ctx, CULEACE_ERR_NOT_FOUND,
                             "cannot open %s %s in %s", what, path, file);
  *out = o;
  return CULEACE_OK;
}

culeace_status culeace__h5_dims(culeace_ctx *ctx, hid_t dset, const char *file,
                                const char *path, int *rank, hsize_t *dims) {
  hid_t sp = H5Dget_space(dset);
  if (sp < 0)
    return culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot get the dataspace of %s in %s", path,
                             file);
  int r = H5Sget_simple_extent_ndims(sp);
  if (r < 0) {
    culeace_status st = culeace__h5_error(
        ctx, CULEACE_ERR_HDF5, "cannot get the rank of %s in %s", path, file);
    H5Sclose(sp);
    return st;
  }
  if (r > 32) {
    H5Sclose(sp);
    return culeace__error(ctx, CULEACE_ERR_SHAPE,
                          "dataset %s in %s has rank %d (more than 32)", path,
                          file, r);
  }
  if (r > 0 && H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
    culeace_status st = culeace__h5_error(
        ctx, CULEACE_ERR_HDF5, "cannot get the shape of %s in %s", path, file);
    H5Sclose(sp);
    return st;
  }
  H5Sclose(sp);
  *rank = r;
  return culeace__h5_check_storage(ctx, dset, file, path, r, dims);
}

/* Storage a crafted file can make libhdf5 misread (fuzzing found a
 * use-after-free inside H5Dread on a corrupt chunk index; SECURITY.md):
 * the chunk index must be walkable, hold no more chunks than the shape
 * allows and claim no more bytes than the file has, and compact data must
 * be exactly the shape's size. */
culeace_status culeace__h5_check_storage(culeace_ctx *ctx, hid_t dset,
                                         const char *file, const char *path,
                                         int rank, const hsize_t *dims) {
  hid_t dcpl = H5Dget_create_plist(dset);
  if (dcpl < 0)
    return culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot get the storage layout of %s in %s", path,
                             file);
  culeace_status st = CULEACE_OK;
  H5D_layout_t lay = H5Pget_layout(dcpl);
  if (lay == H5D_CHUNKED && rank > 0 && rank <= 32) {
    hsize_t chunk[32], maxdims[32], n_chunks = 0, max_chunks = 1;
    int cr = H5Pget_chunk(dcpl, 32, chunk), bad_chunk = 0;
    hid_t sp = H5Dget_space(dset);
    if (sp < 0 || H5Sget_simple_extent_dims(sp, NULL, maxdims) != rank)
      bad_chunk = 1;
    for (int i = 0; !bad_chunk && cr == rank && i < rank; i++) {
      /* HDF5 only creates chunks within a fixed axis's size; 1.10.8 writes
       * past the caller's buffer reading one that is not. */
      if (chunk[i] == 0 ||
          (maxdims[i] != H5S_UNLIMITED && chunk[i] > maxdims[i] &&
           chunk[i] > 1))
        bad_chunk = 1;
      hsize_t c = chunk[i] ? (dims[i] + chunk[i] - 1) / chunk[i] : 0;
      max_chunks = c && max_chunks > (hsize_t)-1 / c ? (hsize_t)-1
                                                     : max_chunks * c;
    }
    herr_t rc = sp >= 0 ? H5Dget_num_chunks(dset, sp, &n_chunks) : -1;
    if (sp >= 0) H5Sclose(sp);
    /* The storage size walks every chunk's record (0 is also a valid size:
     * a failure shows on the error stack). */
    H5Eclear2(H5E_DEFAULT);
    (void)H5Dget_storage_size(dset);
    if (H5Eget_num(H5E_DEFAULT) > 0) rc = -1;
    /* libhdf5 allocates each chunk's stored size to read it: the chunks'
     * claimed sizes must fit in the file (a crafted index claiming a 4 GiB
     * chunk in a 10 KiB file made H5Dread ask for 4 GiB) */
    hsize_t stored = H5Dget_storage_size(dset), fsize = 0;
    hid_t fid = H5Iget_file_id(dset);
    if (fid < 0 || H5Fget_filesize(fid, &fsize) < 0) rc = -1;
    if (fid >= 0) H5Fclose(fid);
    if (cr != rank || bad_chunk || rc < 0 || n_chunks > max_chunks)
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "dataset %s in %s has corrupt chunked storage "
                             "(chunk shape or chunk index; refusing to read "
                             "it)", path, file);
    else if (stored > fsize)
      st = culeace__error(ctx, CULEACE_ERR_HDF5,
                          "dataset %s in %s claims %llu bytes of chunks in a "
                          "file of %llu bytes (a corrupt chunk index; "
                          "refusing to read it)", path, file,
                          (unsigned long long)stored,
                          (unsigned long long)fsize);
  } else if (lay == H5D_COMPACT) {
    hid_t t = H5Dget_type(dset);
    size_t es = t >= 0 ? H5Tget_size(t) : 0;
    if (t >= 0) H5Tclose(t);
    hsize_t want = es;
    for (int i = 0; i < rank; i++) want *= dims[i];
    if (H5Dget_storage_size(dset) != want)
      st = culeace__error(ctx, CULEACE_ERR_HDF5,
                          "dataset %s in %s has compact data of the wrong "
                          "size (refusing to read it)", path, file);
  } else if (lay < 0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                           "cannot get the storage layout of %s in %s", path,
                           file);
  }
  H5Pclose(dcpl);
  return st;
}

/* ---- datatypes ---------------------------------------------------------------- */

typedef struct {
  culeace_dtype dt;
  size_t size, spos, epos, esize, mpos, msize, ebias;
} float_layout;

static const float_layout k_floats[] = {
    {CULEACE_F16, 2, 15, 10, 5, 0, 10, 15},
    {CULEACE_BF16, 2, 15, 7, 8, 0, 7, 127},
    {CULEACE_F32, 4, 31, 23, 8, 0, 23, 127},
    {CULEACE_F64, 8, 63, 52, 11, 0, 52, 1023},
};

/* Index into k_floats of a float type with the standard fields (any byte
 * order), or -1. */
static int float_match(hid_t type) {
  size_t size = H5Tget_size(type);
  size_t spos, epos, esize, mpos, msize;
  if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  size_t ebias = H5Tget_ebias(type);
  int off = H5Tget_offset(type);
  size_t prec = H5Tget_precision(type);
  for (int i = 0; i < (int)(sizeof k_floats / sizeof k_floats[0]); i++) {
    const float_layout *f = &k_floats[i];
    if (size == f->size && spos == f->spos && epos == f->epos &&
        esize == f->esize && mpos == f->mpos && msize == f->msize &&
        ebias == f->ebias && off == 0 && prec == 8 * f->size)
      return i;
  }
  return -1;
}

culeace_h5_kind culeace__h5_classify(hid_t type, culeace_dtype *dt) {
  H5T_class_t c = H5Tget_class(type);
  if (c == H5T_FLOAT) {
    int i = float_match(type);
    if (i < 0) return CULEACE_H5K_FLOAT_OTHER;
    if (k_floats[i].size > 1 && H5Tget_order(type) != H5T_ORDER_LE)
      return CULEACE_H5K_FLOAT_OTHER;
    if (dt) *dt = k_floats[i].dt;
    return CULEACE_H5K_FLOAT;
  }
  if (c == H5T_INTEGER) return CULEACE_H5K_INT;
  if (c == H5T_ENUM) {
    hid_t base = H5Tget_super(type);
    culeace_h5_kind k = CULEACE_H5K_OTHER;
    if (base >= 0) {
      if (H5Tget_class(base) == H5T_INTEGER) k = CULEACE_H5K_ENUM;
      H5Tclose(base);
    }
    H5Eclear2(H5E_DEFAULT);
    return k;
  }
  H5Eclear2(H5E_DEFAULT);
  return CULEACE_H5K_OTHER;
}

static void int_name(hid_t type, char *buf, size_t len) {
  size_t size = H5Tget_size(type);
  int sgn = H5Tget_sign(type) == H5T_SGN_2;
  int be = size > 1 && H5Tget_order(type) == H5T_ORDER_BE;
  snprintf(buf, len, "%sint%zu%s", sgn ? "" : "u", 8 * size,
           be ? " big-endian" : "");
}

static int is_bool_enum(hid_t type) {
  if (H5Tget_nmembers(type) != 2) return 0;
  char *a = H5Tget_member_name(type, 0), *b = H5Tget_member_name(type, 1);
  int yes = a && b && strcmp(a, "FALSE") == 0 && strcmp(b, "TRUE") == 0;
  if (a) H5free_memory(a);
  if (b) H5free_memory(b);
  return yes;
}

void culeace__h5_type_name(hid_t type, char *buf, size_t len) {
  static const char *names[] = {"float32", "float16", "bfloat16", "float64"};
  H5T_class_t c = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  switch (c) {
  case H5T_FLOAT: {
    int i = float_match(type);
    if (i >= 0) {
      int be = size > 1 && H5Tget_order(type) == H5T_ORDER_BE;
      snprintf(buf, len, "%s%s", names[k_floats[i].dt],
               be ? " big-endian" : "");
    } else {
      size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
      H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize);
      snprintf(buf, len,
               "float (%zu bytes, sign bit %zu, %zu-bit exponent at %zu, "
               "%zu-bit mantissa at %zu, bias %zu%s)",
               size, spos, esize, epos, msize, mpos, H5Tget_ebias(type),
               H5Tget_order(type) == H5T_ORDER_BE ? ", big-endian" : "");
    }
    break;
  }
  case H5T_INTEGER: int_name(type, buf, len); break;
  case H5T_ENUM: {
    if (is_bool_enum(type)) {
      snprintf(buf, len, "bool");
      break;
    }
    char base[48] = "?";
    hid_t s = H5Tget_super(type);
    if (s >= 0) {
      if (H5Tget_class(s) == H5T_INTEGER) int_name(s, base, sizeof base);
      H5Tclose(s);
    }
    snprintf(buf, len, "enum(%s)", base);
    break;
  }
  case H5T_STRING: snprintf(buf, len, "string"); break;
  case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
  case H5T_BITFIELD: snprintf(buf, len, "bitfield%zu", 8 * size); break;
  case H5T_OPAQUE: snprintf(buf, len, "opaque (%zu bytes)", size); break;
  case H5T_REFERENCE: snprintf(buf, len, "reference"); break;
  case H5T_VLEN: snprintf(buf, len, "vlen"); break;
  case H5T_ARRAY: snprintf(buf, len, "array"); break;
  case H5T_TIME: snprintf(buf, len, "time"); break;
  default: snprintf(buf, len, "unknown type"); break;
  }
  H5Eclear2(H5E_DEFAULT);
}

void culeace__h5_shape_str(int rank, const hsize_t *dims, char *buf,
                           size_t len) {
  size_t used = 0;
  int w = snprintf(buf, len, "(");
  if (w > 0) used = (size_t)w;
  for (int i = 0; i < rank && used < len; i++) {
    w = snprintf(buf + used, len - used, "%s%llu", i ? ", " : "",
                 (unsigned long long)dims[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (used < len) snprintf(buf + used, len - used, rank == 1 ? ",)" : ")");
}

/* ---- names ----------------------------------------------------------------------- */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int culeace__natural_cmp(const char *a, const char *b) {
  const char *p = a, *q = b;
  while (*p && *q) {
    if (is_digit(*p) && is_digit(*q)) {
      const char *p0 = p, *q0 = q;
      while (*p0 == '0' && is_digit(p0[1])) p0++;
      while (*q0 == '0' && is_digit(q0[1])) q0++;
      const char *p1 = p0, *q1 = q0;
      while (is_digit(*p1)) p1++;
      while (is_digit(*q1)) q1++;
      size_t lp = (size_t)(p1 - p0), lq = (size_t)(q1 - q0);
      if (lp != lq) return lp < lq ? -1 : 1;
      int c = memcmp(p0, q0, lp);
      if (c) return c < 0 ? -1 : 1;
      p = p1;
      q = q1;
    } else {
      if (*p != *q) return (unsigned char)*p < (unsigned char)*q ? -1 : 1;
      p++;
      q++;
    }
  }
  if (*p || *q) return *p ? 1 : -1;
  int c = strcmp(a, b); /* "007" vs "7": stable tie-break */
  return c < 0 ? -1 : c > 0;
}

/* ---- chunk cache ------------------------------------------------------------------ */

static int is_prime(size_t x) {
  if (x < 2) return 0;
  for (size_t i = 2; i * i <= x; i++)
    if (x % i == 0) return 0;
  return 1;
}

hid_t culeace__h5_chunk_dapl(hid_t dcpl, int rank, const hsize_t *dims,
                             size_t elsize, int row_axis, int64_t n_open) {
  if (H5Pget_layout(dcpl) != H5D_CHUNKED) {
    H5Eclear2(H5E_DEFAULT);
    return H5P_DEFAULT;
  }
  hsize_t cd[32];
  if (rank < 1 || rank > 32 || H5Pget_chunk(dcpl, rank, cd) != rank)
    return H5I_INVALID_HID;
  /* One "row of chunks": every chunk at one chunk index of the row axis. */
  double chunk_bytes = (double)elsize, row_chunks = 1;
  for (int a = 0; a < rank; a++) {
    chunk_bytes *= (double)cd[a];
    if (a != row_axis && cd[a] > 0)
      row_chunks *= (double)((dims[a] + cd[a] - 1) / cd[a]);
  }
  const double mib = 1024.0 * 1024.0;
  double cap = 256.0 * mib / (double)(n_open > 0 ? n_open : 1);
  if (cap < 4 * mib) cap = 4 * mib;
  if (cap > 64 * mib) cap = 64 * mib;
  double want = 2.0 * row_chunks * chunk_bytes; /* a row + its straddler */
  if (want < 1 * mib) want = 1 * mib;
  if (want > cap) want = cap;
  size_t fit = chunk_bytes > 0 ? (size_t)(want / chunk_bytes) : 1;
  size_t slots = fit * 100;
  if (slots < 521) slots = 521;
  if (slots > 1000003) slots = 1000003;
  while (!is_prime(slots)) slots++;
  hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
  if (dapl < 0) return H5I_INVALID_HID;
  if (H5Pset_chunk_cache(dapl, slots, (size_t)want, 0.75) < 0) {
    H5Pclose(dapl);
    return H5I_INVALID_HID;
  }
  return dapl;
}

/* ---- integer rows ------------------------------------------------------------------- */

culeace_status culeace__h5_read_int_rows(culeace_ctx *ctx, hid_t dset,
                                         hid_t ftype, const char *file,
                                         const char *path, int rank,
                                         const hsize_t *dims, int64_t r0,
                                         int64_t nr, int64_t *buf) {
  culeace_status st = CULEACE_OK;
  hid_t fsp = H5I_INVALID_HID, msp = H5I_INVALID_HID;
  hid_t raw = H5I_INVALID_HID, base = H5I_INVALID_HID;
  hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)nr, 1};
  if (rank == 2) count[1] = dims[1];
  hsize_t nelem = count[0] * count[1];
  if (nelem == 0) return CULEACE_OK;
  fsp = H5Dget_space(dset);
  if (fsp < 0 ||
      H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                           "cannot select rows of %s in %s", path, file);
    goto cleanup;
  }
  msp = H5Screate_simple(rank == 2 ? 2 : 1, count, NULL); /* same shape as
                                                            the selection */
  if (msp < 0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5, "cannot create dataspace");
    goto cleanup;
  }
  /* 64-bit unsigned values above INT64_MAX do not fit: HDF5's conversion
   * would clip them all to INT64_MAX (distinct labels merged), so they are
   * read as uint64 and refused by name. */
  int is_enum = H5Tget_class(ftype) == H5T_ENUM;
  hid_t ity = is_enum ? H5Tget_super(ftype) : H5Tcopy(ftype);
  int wide_unsigned = ity >= 0 && H5Tget_size(ity) >= 8 &&
                      H5Tget_sign(ity) == H5T_SGN_NONE;
  if (ity >= 0) H5Tclose(ity);
  if (wide_unsigned && !is_enum) {
    if (H5Dread(dset, H5T_NATIVE_UINT64, msp, fsp, H5P_DEFAULT, buf) < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot read rows %lld..%lld of %s in %s",
                             (long long)r0, (long long)(r0 + nr - 1), path,
                             file);
      goto cleanup;
    }
    const uint64_t *u = (const uint64_t *)buf;
    for (hsize_t i = 0; i < nelem; i++)
      if (u[i] > (uint64_t)INT64_MAX) {
        st = culeace__error(ctx, CULEACE_ERR_FORMAT,
                            "%s in %s: row %lld holds %llu, above the "
                            "largest integer label (2^63 - 1)", path, file,
                            (long long)(r0 + (int64_t)(i / count[1])),
                            (unsigned long long)u[i]);
        goto cleanup;
      }
  } else if (is_enum && wide_unsigned) {
    st = culeace__error(ctx, CULEACE_ERR_DTYPE,
                        "%s in %s: enum labels over a 64-bit unsigned type "
                        "are not supported (store them as int64)", path, file);
    goto cleanup;
  } else if (is_enum) {
    /* HDF5 has no enum -> integer conversion: read the enum's raw storage,
     * then convert it as its base integer type. */
    raw = H5Tcopy(ftype);
    base = H5Tget_super(ftype);
    if (raw < 0 || base < 0 ||
        H5Dread(dset, raw, msp, fsp, H5P_DEFAULT, buf) < 0 ||
        H5Tconvert(base, H5T_NATIVE_INT64, (size_t)nelem, buf, NULL,
                   H5P_DEFAULT) < 0) {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                             "cannot read rows %lld..%lld of %s in %s",
                             (long long)r0, (long long)(r0 + nr - 1), path,
                             file);
      goto cleanup;
    }
  } else if (H5Dread(dset, H5T_NATIVE_INT64, msp, fsp, H5P_DEFAULT, buf) <
             0) {
    st = culeace__h5_error(ctx, CULEACE_ERR_HDF5,
                           "cannot read rows %lld..%lld of %s in %s",
                           (long long)r0, (long long)(r0 + nr - 1), path, file);
    goto cleanup;
  }
cleanup:
  if (fsp >= 0) H5Sclose(fsp);
  if (msp >= 0) H5Sclose(msp);
  if (raw >= 0) H5Tclose(raw);
  if (base >= 0) H5Tclose(base);
  return st;
}
