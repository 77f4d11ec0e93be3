/* inspect.c — `culeace inspect`: walks every object of an HDF5 file and
 * prints its datasets (path, shape, dtype, storage, filters) with a guess of
 * each one's role (activations / labels / groups / mask), class counts of
 * small integer datasets (read in bounded blocks), and groups that look like
 * per-layer activation groups. Plain table or one JSON object. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "io/activations.h"
#include "io/h5util.h"

#define MAX_CLASSES 64
#define COUNT_BLOCK 65536 /* elements per block when counting classes */

typedef struct {
  char *path;
  int ok; /* metadata could be read */
  int rank;
  hsize_t dims[32];
  char dtype[96];
  culeace_h5_kind kind;
  char storage[16]; /* contiguous / chunked / compact / virtual */
  int chunk_rank;
  hsize_t chunks[32];
  int nfilters;
  char filters[8][32];
  const char *role;
  int nclasses; /* -1: not counted; MAX_CLASSES + 1: more than that */
  int64_t cvals[MAX_CLASSES], ccounts[MAX_CLASSES];
} ds_entry;

typedef struct {
  const char *path; /* a group path (owned by the groups list) */
  int64_t layers;
  int rank;
  hsize_t dims[32];
  char dtype[96];
  int64_t first, last; /* first and last member's index in ents */
} layer_group;

typedef struct {
  ds_entry *ents;
  int64_t n_ents, cap_ents;
  char **groups;
  int64_t n_groups, cap_groups;
  int oom;
} walk_state;

static int push_str(char ***arr, int64_t *n, int64_t *cap, char *s) {
  if (*n == *cap) {
    int64_t c = *cap ? 2 * *cap : 32;
    char **na = realloc(*arr, (size_t)c * sizeof *na);
    if (!na) return 0;
    *arr = na;
    *cap = c;
  }
  (*arr)[(*n)++] = s;
  return 1;
}

static char *abs_name(const char *name) {
  if (strcmp(name, ".") == 0) name = "";
  size_t n = strlen(name);
  char *p = malloc(n + 2);
  if (!p) return NULL;
  p[0] = '/';
  memcpy(p + 1, name, n + 1);
  return p;
}

#if H5_VERSION_GE(1, 12, 0)
static herr_t visit_cb(hid_t o, const char *name, const H5O_info2_t *info,
                       void *data)
#else
static herr_t visit_cb(hid_t o, const char *name, const H5O_info_t *info,
                       void *data)
#endif
{
  walk_state *w = data;
  (void)o;
  if (info->type != H5O_TYPE_DATASET && info->type != H5O_TYPE_GROUP)
    return 0;
  char *p = abs_name(name);
  if (!p) goto oom;
  if (info->type == H5O_TYPE_GROUP) {
    if (!push_str(&w->groups, &w->n_groups, &w->cap_groups, p)) {
      free(p);
      goto oom;
    }
    return 0;
  }
  if (w->n_ents == w->cap_ents) {
    int64_t c = w->cap_ents ? 2 * w->cap_ents : 32;
    ds_entry *ne = realloc(w->ents, (size_t)c * sizeof *ne);
    if (!ne) {
      free(p);
      goto oom;
    }
    w->ents = ne;
    w->cap_ents = c;
  }
  ds_entry *e = &w->ents[w->n_ents++];
  memset(e, 0, sizeof *e);
  e->path = p;
  e->nclasses = -1;
  e->role = "-";
  return 0;
oom:
  w->oom = 1;
  return -1;
}

static int ent_cmp(const void *x, const void *y) {
  return culeace__natural_cmp(((const ds_entry *)x)->path,
                              ((const ds_entry *)y)->path);
}

/* ---- per-dataset metadata ------------------------------------------------- */

static void filter_name(H5Z_filter_t id, const char *name,
                        const unsigned *cd, size_t ncd, char *buf,
                        size_t len) {
  switch (id) {
  case H5Z_FILTER_DEFLATE:
    if (ncd > 0) snprintf(buf, len, "gzip(%u)", cd[0]);
    else snprintf(buf, len, "gzip");
    break;
  case H5Z_FILTER_SHUFFLE: snprintf(buf, len, "shuffle"); break;
  case H5Z_FILTER_FLETCHER32: snprintf(buf, len, "fletcher32"); break;
  case H5Z_FILTER_SZIP: snprintf(buf, len, "szip"); break;
  case H5Z_FILTER_NBIT: snprintf(buf, len, "nbit"); break;
  case H5Z_FILTER_SCALEOFFSET: snprintf(buf, len, "scaleoffset"); break;
  default:
    if (name && *name) snprintf(buf, len, "%s", name);
    else snprintf(buf, len, "filter%d", (int)id);
  }
}

static void read_meta(hid_t fid, ds_entry *e) {
  hid_t ds = H5Dopen2(fid, e->path, H5P_DEFAULT);
  hid_t ty = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
  if (ds < 0) goto done;
  ty = H5Dget_type(ds);
  dcpl = H5Dget_create_plist(ds);
  if (ty < 0 || dcpl < 0) goto done;
  culeace__h5_type_name(ty, e->dtype, sizeof e->dtype);
  e->kind = culeace__h5_classify(ty, NULL);
  if (culeace__h5_dims(NULL, ds, "", e->path, &e->rank, e->dims) != CULEACE_OK)
    goto done;
  H5D_layout_t lay = H5Pget_layout(dcpl);
  snprintf(e->storage, sizeof e->storage, "%s",
           lay == H5D_CHUNKED   ? "chunked"
           : lay == H5D_COMPACT ? "compact"
           : lay == H5D_VIRTUAL ? "virtual"
                                : "contiguous");
  if (lay == H5D_CHUNKED) {
    e->chunk_rank = H5Pget_chunk(dcpl, 32, e->chunks);
    if (e->chunk_rank < 0) e->chunk_rank = 0;
  }
  int nf = H5Pget_nfilters(dcpl);
  for (int i = 0; i < nf && i < 8; i++) {
    unsigned flags, cd[8], cfg;
    size_t ncd = 8;
    char name[64] = "";
    H5Z_filter_t id =
        H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof name, name,
                       &cfg);
    if (id < 0) continue;
    filter_name(id, name, cd, ncd < 8 ? ncd : 8, e->filters[e->nfilters],
                sizeof e->filters[0]);
    e->nfilters++;
  }
  e->ok = 1;
done:
  if (!e->ok && !e->dtype[0]) snprintf(e->dtype, sizeof e->dtype, "?");
  if (dcpl >= 0) H5Pclose(dcpl);
  if (ty >= 0) H5Tclose(ty);
  if (ds >= 0) H5Dclose(ds);
  H5Eclear2(H5E_DEFAULT);
}

/* Counts distinct values of an integer dataset of rank 1 or 2 in bounded
 * blocks; stops once there are more than MAX_CLASSES. Unreadable (e.g. a
 * missing filter plugin): leaves nclasses at -1. */
static void count_classes(culeace_ctx *ctx, hid_t fid, const char *file,
                          ds_entry *e) {
  hid_t ds = H5Dopen2(fid, e->path, H5P_DEFAULT);
  hid_t ty = ds >= 0 ? H5Dget_type(ds) : H5I_INVALID_HID;
  int64_t *buf = NULL;
  if (ds < 0 || ty < 0) goto done;
  int64_t cols = e->rank == 2 ? (int64_t)e->dims[1] : 1;
  int64_t n = (int64_t)e->dims[0];
  size_t es = H5Tget_size(ty);
  /* a block holds whole rows: wider rows than a block (no label dataset
   * is), or integers wider than 16 bytes, are not counted rather than
   * allocated as the header says */
  if (n == 0 || cols == 0 || cols > COUNT_BLOCK || es == 0 || es > 16)
    goto done;
  int64_t rows = COUNT_BLOCK / cols;
  if (rows > n) rows = n;
  buf = malloc((size_t)(rows * cols) * (es > 8 ? es : 8));
  if (!buf) goto done;
  int nv = 0;
  for (int64_t r0 = 0; r0 < n && nv <= MAX_CLASSES; r0 += rows) {
    int64_t nr = n - r0 < rows ? n - r0 : rows;
    char msg[CULEACE_ERRMSG_LEN];
    if (ctx) memcpy(msg, ctx->errmsg, sizeof msg);
    culeace_status st = culeace__h5_read_int_rows(
        ctx, ds, ty, file, e->path, e->rank, e->dims, r0, nr, buf);
    if (ctx) memcpy(ctx->errmsg, msg, sizeof msg); /* not a failure here */
    if (st != CULEACE_OK) goto done;
    for (int64_t i = 0; i < nr * cols && nv <= MAX_CLASSES; i++) {
      int64_t v = buf[i];
      int lo = 0, hi = nv - 1, pos = -1;
      while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (e->cvals[mid] == v) {
          pos = mid;
          break;
        }
        if (e->cvals[mid] < v) lo = mid + 1;
        else hi = mid - 1;
      }
      if (pos >= 0) {
        e->ccounts[pos]++;
        continue;
      }
      if (nv == MAX_CLASSES) {
        nv = MAX_CLASSES + 1;
        break;
      }
      memmove(&e->cvals[lo + 1], &e->cvals[lo], (size_t)(nv - lo) * 8);
      memmove(&e->ccounts[lo + 1], &e->ccounts[lo], (size_t)(nv - lo) * 8);
      e->cvals[lo] = v;
      e->ccounts[lo] = 1;
      nv++;
    }
  }
  e->nclasses = nv;
done:
  free(buf);
  if (ty >= 0) H5Tclose(ty);
  if (ds >= 0) H5Dclose(ds);
  H5Eclear2(H5E_DEFAULT);
}

/* ---- role guesses ---------------------------------------------------------------- */

static int name_has(const char *path, const char *word) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t lw = strlen(word);
  for (const char *p = base; *p; p++) {
    size_t i = 0;
    while (i < lw && p[i] && tolower((unsigned char)p[i]) == word[i]) i++;
    if (i == lw) return 1;
  }
  return 0;
}

static int is_activation(const ds_entry *e) {
  return e->ok &&
         (e->kind == CULEACE_H5K_FLOAT || e->kind == CULEACE_H5K_FLOAT_OTHER) &&
         e->rank >= 2 && e->rank <= 4 && e->dims[e->rank - 1] >= 16;
}

/* Whether rows == the n of some activation dataset (axis 0, or axis 1 of a
 * stacked (L, n, ...) layout); true when the file holds no activations. */
static int matches_n(const walk_state *w, hsize_t rows) {
  int any = 0;
  for (int64_t i = 0; i < w->n_ents; i++) {
    const ds_entry *a = &w->ents[i];
    if (!is_activation(a)) continue;
    any = 1;
    if (a->dims[0] == rows || (a->rank >= 3 && a->dims[1] == rows)) return 1;
  }
  return !any;
}

static void guess_role(culeace_ctx *ctx, hid_t fid, const char *file,
                       walk_state *w, ds_entry *e) {
  if (!e->ok) return;
  int isint = e->kind == CULEACE_H5K_INT || e->kind == CULEACE_H5K_ENUM;
  int isflt = e->kind == CULEACE_H5K_FLOAT || e->kind == CULEACE_H5K_FLOAT_OTHER;
  if (is_activation(e)) {
    e->role = "activations";
    return;
  }
  if (isint && (e->rank == 1 || e->rank == 2)) {
    count_classes(ctx, fid, file, e);
    int few = e->nclasses >= 0 && e->nclasses <= MAX_CLASSES;
    int bin01 = few && e->nclasses <= 2;
    for (int i = 0; bin01 && i < e->nclasses; i++)
      bin01 = e->cvals[i] == 0 || e->cvals[i] == 1;
    int match = matches_n(w, e->dims[0]);
    if (e->rank == 2 && bin01 && name_has(e->path, "mask")) e->role = "mask";
    else if (e->rank == 1 &&
             (name_has(e->path, "group") || name_has(e->path, "prompt")))
      e->role = "groups";
    else if (few && match) e->role = "labels";
    else if (e->rank == 1 && match && e->nclasses > MAX_CLASSES)
      e->role = "groups";
    return;
  }
  if (isflt && (e->rank == 1 || (e->rank == 2 && e->dims[1] < 16)) &&
      matches_n(w, e->dims[0]))
    e->role = "labels";
}

/* Whether path is a direct child of group gp ("/" or "/a/b"). */
static int is_child(const char *gp, const char *p) {
  size_t gl = strlen(gp);
  size_t off = (gl == 1) ? 1 : gl + 1;
  return strncmp(p, gp, gl) == 0 && (gl == 1 || p[gl] == '/') &&
         strlen(p) > off && !strchr(p + off, '/');
}

/* Groups whose direct children are >= 2 float datasets of one shape and
 * dtype, rank 2-3, last dim >= 16. */
static int64_t find_layer_groups(walk_state *w, layer_group *out) {
  int64_t ng = 0;
  for (int64_t g = 0; g < w->n_groups; g++) {
    const char *gp = w->groups[g];
    int64_t first = -1, last = -1, count = 0, ok = 1;
    for (int64_t i = 0; i < w->n_ents && ok; i++) {
      if (!is_child(gp, w->ents[i].path)) continue;
      const ds_entry *e = &w->ents[i];
      last = i;
      if (first < 0) first = i;
      else {
        const ds_entry *f = &w->ents[first];
        ok = e->rank == f->rank && strcmp(e->dtype, f->dtype) == 0;
        for (int k = 0; ok && k < e->rank; k++) ok = e->dims[k] == f->dims[k];
      }
      ok = ok && is_activation(e) && e->rank <= 3;
      count++;
    }
    if (!ok || count < 2) continue;
    layer_group *lg = &out[ng++];
    const ds_entry *f = &w->ents[first];
    lg->path = gp;
    lg->layers = count;
    lg->rank = f->rank;
    memcpy(lg->dims, f->dims, sizeof f->dims);
    snprintf(lg->dtype, sizeof lg->dtype, "%s", f->dtype);
    lg->first = first;
    lg->last = last;
  }
  return ng;
}

/* ---- output --------------------------------------------------------------------- */

static void json_str(FILE *fp, const char *s) {
  fputc('"', fp);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': fputs("\\\"", fp); break;
    case '\\': fputs("\\\\", fp); break;
    case '\n': fputs("\\n", fp); break;
    case '\r': fputs("\\r", fp); break;
    case '\t': fputs("\\t", fp); break;
    case '\b': fputs("\\b", fp); break;
    case '\f': fputs("\\f", fp); break;
    default:
      if (*p < 0x20) fprintf(fp, "\\u%04x", *p);
      else fputc(*p, fp);
    }
  }
  fputc('"', fp);
}

static void json_dims(FILE *fp, int rank, const hsize_t *dims) {
  fputc('[', fp);
  for (int i = 0; i < rank; i++)
    fprintf(fp, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
  fputc(']', fp);
}

static void print_json(FILE *fp, const char *file, const walk_state *w,
                       const layer_group *lgs, int64_t ng) {
  fputs("{\"file\": ", fp);
  json_str(fp, file);
  fputs(", \"datasets\": [", fp);
  for (int64_t i = 0; i < w->n_ents; i++) {
    const ds_entry *e = &w->ents[i];
    fputs(i ? ",\n  {" : "\n  {", fp);
    fputs("\"path\": ", fp);
    json_str(fp, e->path);
    fputs(", \"shape\": ", fp);
    json_dims(fp, e->rank, e->dims);
    fputs(", \"dtype\": ", fp);
    json_str(fp, e->dtype);
    fputs(", \"storage\": ", fp);
    json_str(fp, e->storage[0] ? e->storage : "?");
    fputs(", \"chunks\": ", fp);
    if (e->chunk_rank > 0) json_dims(fp, e->chunk_rank, e->chunks);
    else fputs("null", fp);
    fputs(", \"filters\": [", fp);
    for (int f = 0; f < e->nfilters; f++) {
      if (f) fputs(", ", fp);
      json_str(fp, e->filters[f]);
    }
    fputs("], \"role\": ", fp);
    if (strcmp(e->role, "-") == 0) fputs("null", fp);
    else json_str(fp, e->role);
    fputs(", \"classes\": ", fp);
    if (e->nclasses >= 0 && e->nclasses <= MAX_CLASSES) {
      fputc('{', fp);
      for (int c = 0; c < e->nclasses; c++)
        fprintf(fp, "%s\"%lld\": %lld", c ? ", " : "", (long long)e->cvals[c],
                (long long)e->ccounts[c]);
      fputc('}', fp);
    } else {
      fputs("null", fp);
    }
    fputc('}', fp);
  }
  fputs(w->n_ents ? "\n], \"layer_groups\": [" : "], \"layer_groups\": [", fp);
  for (int64_t g = 0; g < ng; g++) {
    const layer_group *lg = &lgs[g];
    fputs(g ? ",\n  {" : "\n  {", fp);
    fputs("\"path\": ", fp);
    json_str(fp, lg->path);
    fprintf(fp, ", \"layers\": %lld, \"shape\": ", (long long)lg->layers);
    json_dims(fp, lg->rank, lg->dims);
    fputs(", \"dtype\": ", fp);
    json_str(fp, lg->dtype);
    fputs(", \"members\": [", fp);
    for (int64_t i = lg->first, k = 0; i <= lg->last; i++) {
      const char *p = w->ents[i].path;
      if (!is_child(lg->path, p)) continue;
      if (k++) fputs(", ", fp);
      json_str(fp, strrchr(p, '/') + 1);
    }
    fputs("]}", fp);
  }
  fputs(ng ? "\n]}\n" : "]}\n", fp);
}

static void storage_str(const ds_entry *e, char *buf, size_t len) {
  size_t used = 0;
  int wr;
  if (e->chunk_rank > 0) {
    char c[160];
    culeace__h5_shape_str(e->chunk_rank, e->chunks, c, sizeof c);
    wr = snprintf(buf, len, "chunked %s", c);
  } else {
    wr = snprintf(buf, len, "%s", e->storage[0] ? e->storage : "?");
  }
  if (wr > 0) used = (size_t)wr;
  for (int f = 0; f < e->nfilters && used < len; f++) {
    wr = snprintf(buf + used, len - used, " %s", e->filters[f]);
    if (wr < 0) break;
    used += (size_t)wr;
  }
}

static void print_table(FILE *fp, const char *file, const walk_state *w,
                        const layer_group *lgs, int64_t ng) {
  fprintf(fp, "file: %s\n", file);
  if (w->n_ents == 0) {
    fprintf(fp, "(no datasets)\n");
    return;
  }
  int wp = 4, ws = 5, wd = 5, wst = 7;
  char buf[512];
  for (int64_t i = 0; i < w->n_ents; i++) {
    const ds_entry *e = &w->ents[i];
    int l = (int)strlen(e->path);
    if (l > wp) wp = l;
    culeace__h5_shape_str(e->rank, e->dims, buf, sizeof buf);
    if ((int)strlen(buf) > ws) ws = (int)strlen(buf);
    if ((int)strlen(e->dtype) > wd) wd = (int)strlen(e->dtype);
    storage_str(e, buf, sizeof buf);
    if ((int)strlen(buf) > wst) wst = (int)strlen(buf);
  }
  if (wp > 48) wp = 48;
  fprintf(fp, "%-*s  %-*s  %-*s  %-*s  %s\n", wp, "PATH", ws, "SHAPE", wd,
          "DTYPE", wst, "STORAGE", "ROLE");
  for (int64_t i = 0; i < w->n_ents; i++) {
    const ds_entry *e = &w->ents[i];
    char shp[256], sto[512];
    culeace__h5_shape_str(e->rank, e->dims, shp, sizeof shp);
    storage_str(e, sto, sizeof sto);
    fprintf(fp, "%-*s  %-*s  %-*s  %-*s  %s", wp, e->path, ws, shp, wd,
            e->dtype, wst, sto, e->role);
    int is_lab = strcmp(e->role, "labels") == 0;
    int is_grp = strcmp(e->role, "groups") == 0;
    if (strcmp(e->role, "activations") == 0 && e->rank == 3)
      fprintf(fp, " (3-D: pass --layer-axis 0|1 or --tokens)");
    else if (strcmp(e->role, "activations") == 0 && e->rank == 4)
      fprintf(fp, " (4-D: pass --layer-axis 0|1 and --tokens)");
    if (is_grp && e->nclasses >= 0) {
      if (e->nclasses > MAX_CLASSES)
        fprintf(fp, " (> %d distinct ids)", MAX_CLASSES);
      else
        fprintf(fp, " (%d distinct ids)", e->nclasses);
    } else if (strcmp(e->role, "mask") == 0 && e->nclasses >= 0) {
      int64_t kept = 0, all = 0;
      for (int c = 0; c < e->nclasses; c++) {
        all += e->ccounts[c];
        if (e->cvals[c] != 0) kept += e->ccounts[c];
      }
      fprintf(fp, " (keeps %lld of %lld)", (long long)kept, (long long)all);
    } else if (is_lab && e->nclasses >= 0 && e->nclasses <= MAX_CLASSES) {
      fprintf(fp, " (%d classes:", e->nclasses);
      for (int c = 0; c < e->nclasses; c++)
        fprintf(fp, "%s %lld: %lld", c ? "," : "", (long long)e->cvals[c],
                (long long)e->ccounts[c]);
      fputc(')', fp);
    }
    fputc('\n', fp);
  }
  if (ng == 0) return;
  fprintf(fp, "\nlayer groups (pass the group path as the activations):\n");
  for (int64_t g = 0; g < ng; g++) {
    const layer_group *lg = &lgs[g];
    char dims[256] = "";
    size_t used = 0;
    for (int k = 0; k < lg->rank && used < sizeof dims; k++) {
      int wr = snprintf(dims + used, sizeof dims - used, "%s%llu",
                        k ? " x " : "", (unsigned long long)lg->dims[k]);
      if (wr < 0) break;
      used += (size_t)wr;
    }
    const char *p0 = w->ents[lg->first].path;
    const char *p1 = w->ents[lg->last].path;
    fprintf(fp, "%-*s  layer group (%lld layers, %s, %s%s): %s .. %s\n", wp,
            lg->path, (long long)lg->layers, dims, lg->dtype,
            lg->rank == 3 ? ", token-level: pass --tokens" : "",
            strrchr(p0, '/') + 1, strrchr(p1, '/') + 1);
  }
}

culeace_status culeace__inspect(culeace_ctx *ctx, const char *file, int json,
                                void *fpv) {
  culeace_status st = CULEACE_OK;
  FILE *fp = fpv ? (FILE *)fpv : stdout;
  hid_t fid = H5I_INVALID_HID;
  walk_state w = {0};
  layer_group *lgs = NULL;
  CULEACE_TRY(culeace__h5_open(ctx, file, 0, &fid));
#if H5_VERSION_GE(1, 12, 0)
  herr_t rc = H5Ovisit3(fid, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &w,
                        H5O_INFO_BASIC);
#else
  herr_t rc = H5Ovisit2(fid, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &w,
                        H5O_INFO_BASIC);
#endif
  if (rc < 0) {
    if (w.oom) {
      H5Eclear2(H5E_DEFAULT);
      st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory walking %s", file);
    } else {
      st = culeace__h5_error(ctx, CULEACE_ERR_HDF5, "cannot walk %s", file);
    }
    goto cleanup;
  }
  if (w.n_ents > 1) qsort(w.ents, (size_t)w.n_ents, sizeof *w.ents, ent_cmp);
  for (int64_t i = 0; i < w.n_ents; i++) read_meta(fid, &w.ents[i]);
  for (int64_t i = 0; i < w.n_ents; i++)
    guess_role(ctx, fid, file, &w, &w.ents[i]);
  lgs = calloc((size_t)(w.n_groups ? w.n_groups : 1), sizeof *lgs);
  if (!lgs) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
    goto cleanup;
  }
  int64_t ng = find_layer_groups(&w, lgs);
  if (json) print_json(fp, file, &w, lgs, ng);
  else print_table(fp, file, &w, lgs, ng);
  if (fflush(fp) != 0 || ferror(fp))
    st = culeace__error(ctx, CULEACE_ERR_IO, "cannot write the listing of %s",
                        file);
cleanup:
  for (int64_t i = 0; i < w.n_ents; i++) free(w.ents[i].path);
  free(w.ents);
  for (int64_t i = 0; i < w.n_groups; i++) free(w.groups[i]);
  free(w.groups);
  free(lgs);
  if (fid >= 0) H5Fclose(fid);
  return st;
}
