/* test_io_roundtrip.c — the HDF5 activation reader/writer round trip.
 * Writes every layout (dataset, stacked on axis 0/1, layer group, and their
 * token-level forms) x dtype (f16, bf16, f32, f64) x storage (contiguous,
 * chunked + shuffle + gzip + fletcher32) with the HDF5 C API, reads it back
 * through culeace__act_read in blocks that straddle chunks, and checks the
 * raw values bit for bit; writes a block with culeace__act_write and reads it
 * back; labels, groups, masks, natural order; and the h5py-written fixture
 * tests/fixtures/io_h5py.h5 (tests/py/make_io_fixtures.py). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "culeace.h"
#include "io/activations.h"
#include "io/h5util.h"
#include "testutil.h"

static culeace_ctx *ctx;

/* v(l, i, j, k): exact in float32 on every platform (integer / 17). */
static float formula(int64_t l, int64_t i, int64_t j, int64_t k) {
  int64_t a = ((l * 131 + i * 31 + j * 7 + k * 3) % 97) - 48;
  return (float)a / 17.0f;
}

static size_t esize(culeace_dtype dt) {
  return dt == CULEACE_F64 ? 8 : dt == CULEACE_F32 ? 4 : 2;
}

static void encode(float v, culeace_dtype dt, void *dst) {
  switch (dt) {
  case CULEACE_F32: memcpy(dst, &v, 4); break;
  case CULEACE_F64: {
    double x = v;
    memcpy(dst, &x, 8);
    break;
  }
  case CULEACE_F16: {
    uint16_t h = culeace__f32_to_f16(v);
    memcpy(dst, &h, 2);
    break;
  }
  case CULEACE_BF16: {
    uint16_t h = culeace__f32_to_bf16(v);
    memcpy(dst, &h, 2);
    break;
  }
  }
}

/* The file type h5py would write for dt (2-byte types built the same way). */
static hid_t file_type(culeace_dtype dt) {
  switch (dt) {
  case CULEACE_F32: return H5Tcopy(H5T_IEEE_F32LE);
  case CULEACE_F64: return H5Tcopy(H5T_IEEE_F64LE);
  default: break;
  }
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  if (dt == CULEACE_F16) {
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
  } else {
    H5Tset_fields(t, 15, 7, 8, 0, 7);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 127);
  }
  return t;
}

/* Creates dataset name in loc with type ftype and writes raw data (memory
 * type = file type). chunk may be NULL (contiguous); chunked datasets get
 * shuffle + gzip + fletcher32. */
static int write_dsm(hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                     int rank, const hsize_t *dims, const hsize_t *chunk,
                     const void *data) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk) {
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
    H5Pset_fletcher32(dcpl);
  }
  hid_t ds = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  int ok = ds >= 0 &&
           H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
  if (ds >= 0) H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(sp);
  return ok;
}

static int write_ds(hid_t loc, const char *name, hid_t ftype, int rank,
                    const hsize_t *dims, const hsize_t *chunk,
                    const void *data) {
  return write_dsm(loc, name, ftype, ftype, rank, dims, chunk, data);
}

/* ---- layouts -------------------------------------------------------------- */

typedef struct {
  const char *name;
  int layer_axis, tokens, group;
} layout;

static const layout k_layouts[] = {
    {"dataset", -1, 0, 0},  {"stack0", 0, 0, 0},   {"stack1", 1, 0, 0},
    {"group", -1, 0, 1},    {"tok", -1, 1, 0},     {"tokstack0", 0, 1, 0},
    {"tokstack1", 1, 1, 0}, {"tokgroup", -1, 1, 1}};

enum { N = 23, T = 5, D = 17, NL = 3 };

/* Group member names in creation order; natural order is layer_1, layer_2,
 * layer_10, which hold formula layers 0, 1, 2. */
static const char *k_member_names[] = {"layer_10", "layer_1", "layer_2"};
static const int k_member_layer[] = {2, 0, 1};

static int64_t lay_L(const layout *y) {
  return (y->layer_axis >= 0 || y->group) ? NL : 1;
}
static int64_t lay_T(const layout *y) { return y->tokens ? T : 1; }

/* Fills one dataset's raw buffer in file order. For a stacked layout the
 * buffer holds every layer; otherwise layer `layer` only. bump shifts the
 * formula's layer index (for write tests). */
static void fill(const layout *y, culeace_dtype dt, int64_t layer,
                 unsigned char *buf) {
  int64_t L = lay_L(y), t = lay_T(y);
  size_t es = esize(dt);
  int stacked = y->layer_axis >= 0;
  for (int64_t l = 0; l < (stacked ? L : 1); l++)
    for (int64_t i = 0; i < N; i++)
      for (int64_t j = 0; j < t; j++)
        for (int64_t k = 0; k < D; k++) {
          int64_t off;
          if (y->layer_axis == 0) off = ((l * N + i) * t + j) * D + k;
          else if (y->layer_axis == 1) off = ((i * L + l) * t + j) * D + k;
          else off = (i * t + j) * D + k;
          encode(formula(stacked ? l : layer, i, j, k), dt,
                 buf + (size_t)off * es);
        }
}

static int make_file(const char *path, const layout *y, culeace_dtype dt,
                     int chunked) {
  int64_t L = lay_L(y), t = lay_T(y);
  hsize_t dims[4], chunk[4];
  int r = 0;
  if (y->layer_axis == 0) {
    dims[r] = (hsize_t)L;
    chunk[r++] = 2;
  }
  dims[r] = N;
  chunk[r++] = 4;
  if (y->layer_axis == 1) {
    dims[r] = (hsize_t)L;
    chunk[r++] = 1;
  }
  if (y->tokens) {
    dims[r] = (hsize_t)t;
    chunk[r++] = 2;
  }
  dims[r] = D;
  chunk[r++] = 8;
  size_t nel = 1;
  for (int i = 0; i < r; i++) nel *= dims[i];
  unsigned char *buf = malloc(nel * esize(dt));
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t ft = file_type(dt);
  int ok = f >= 0 && ft >= 0 && buf;
  if (ok && y->group) {
    hid_t g = H5Gcreate2(f, "x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int m = 0; m < NL && ok; m++) {
      fill(y, dt, k_member_layer[m], buf);
      ok = write_ds(g, k_member_names[m], ft, r, dims,
                    chunked ? chunk : NULL, buf);
    }
    /* a sub-group and an attribute-free scalar-free extra group: skipped */
    hid_t sub = H5Gcreate2(g, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(sub);
    H5Gclose(g);
  } else if (ok) {
    fill(y, dt, 0, buf);
    ok = write_ds(f, "x", ft, r, dims, chunked ? chunk : NULL, buf);
  }
  if (ft >= 0) H5Tclose(ft);
  if (f >= 0) H5Fclose(f);
  free(buf);
  return ok;
}

static culeace_act_spec spec_for(const layout *y) {
  culeace_act_spec s;
  culeace__act_spec_init(&s);
  s.x_path = "/x";
  s.layer_axis = y->layer_axis;
  s.tokens = y->tokens;
  return s;
}

/* Expected raw block of layer l, examples [ex0, ex0+nex) (formula layer
 * fl). */
static void expect_block(culeace_dtype dt, int64_t fl, int64_t ex0,
                         int64_t nex, int64_t t, unsigned char *out) {
  size_t es = esize(dt);
  for (int64_t i = 0; i < nex; i++)
    for (int64_t j = 0; j < t; j++)
      for (int64_t k = 0; k < D; k++)
        encode(formula(fl, ex0 + i, j, k), dt,
               out + (size_t)((i * t + j) * D + k) * es);
}

/* Reads every layer in blocks of `blk` examples; returns mismatches. */
static int check_all(culeace_act *a, culeace_dtype dt, int64_t blk,
                     int64_t bump_layer, int64_t bump_ex0, int64_t bump_nex) {
  int64_t L = culeace__act_layers(a), t = culeace__act_tokens(a);
  size_t es = esize(dt);
  unsigned char *got = malloc((size_t)(blk * t * D) * es);
  unsigned char *want = malloc((size_t)(blk * t * D) * es);
  int bad = 0;
  for (int64_t l = 0; l < L; l++)
    for (int64_t e0 = 0; e0 < N; e0 += blk) {
      int64_t ne = N - e0 < blk ? N - e0 : blk;
      memset(got, 0xAB, (size_t)(blk * t * D) * es);
      culeace_status st = culeace__act_read(a, l, e0, ne, got);
      if (st != CULEACE_OK) {
        bad++;
        fprintf(stderr, "read failed: %s\n", culeace_ctx_last_error(ctx));
        continue;
      }
      for (int64_t i = 0; i < ne; i++) {
        int64_t ex = e0 + i;
        int bumped = l == bump_layer && ex >= bump_ex0 &&
                     ex < bump_ex0 + bump_nex;
        expect_block(dt, bumped ? l + 7 : l, ex, 1, t,
                     want + (size_t)(i * t * D) * es);
      }
      if (memcmp(got, want, (size_t)(ne * t * D) * es) != 0) bad++;
    }
  free(got);
  free(want);
  return bad;
}

static void test_layouts(void) {
  static const culeace_dtype dts[] = {CULEACE_F16, CULEACE_BF16, CULEACE_F32,
                                      CULEACE_F64};
  static const char *dtn[] = {"f32", "f16", "bf16", "f64"};
  const char *path = tu_tmp("io_layout.h5");
  for (size_t li = 0; li < sizeof k_layouts / sizeof k_layouts[0]; li++)
    for (int di = 0; di < 4; di++)
      for (int chunked = 0; chunked < 2; chunked++) {
        const layout *y = &k_layouts[li];
        culeace_dtype dt = dts[di];
        char what[96];
        snprintf(what, sizeof what, "%s %s %s", y->name, dtn[dt],
                 chunked ? "chunked" : "contiguous");
        CHECK(make_file(path, y, dt, chunked), "writing %s", what);
        culeace_act_spec s = spec_for(y);
        culeace_act *a = NULL;
        CHECK_OK(ctx, culeace__act_open(ctx, path, &s, 0, &a));
        if (!a) continue;
        CHECK(culeace__act_layers(a) == lay_L(y), "%s: L", what);
        CHECK(culeace__act_examples(a) == N, "%s: n", what);
        CHECK(culeace__act_tokens(a) == lay_T(y), "%s: t", what);
        CHECK(culeace__act_width(a) == D, "%s: d", what);
        CHECK(culeace__act_dtype(a) == dt, "%s: dtype %d", what,
              (int)culeace__act_dtype(a));
        CHECK(culeace__act_filtered(a) == chunked, "%s: filtered", what);
        CHECK(culeace__act_mask(a) == NULL, "%s: no mask", what);
        if (y->group) {
          CHECK(strcmp(culeace__act_layer_name(a, 0), "layer_1") == 0 &&
                    strcmp(culeace__act_layer_name(a, 1), "layer_2") == 0 &&
                    strcmp(culeace__act_layer_name(a, 2), "layer_10") == 0,
                "%s: natural order", what);
          CHECK(strcmp(culeace__act_dataset_path(a, 2), "/x/layer_10") == 0,
                "%s: path %s", what, culeace__act_dataset_path(a, 2));
        } else if (y->layer_axis >= 0) {
          CHECK(strcmp(culeace__act_layer_name(a, 1), "1") == 0 &&
                    strcmp(culeace__act_dataset_path(a, 1), "/x") == 0,
                "%s: stacked names", what);
        } else {
          CHECK(strcmp(culeace__act_layer_name(a, 0), "x") == 0,
                "%s: single name", what);
        }
        CHECK(check_all(a, dt, 7, -1, 0, 0) == 0, "%s: values (block 7)",
              what);
        CHECK(check_all(a, dt, N, -1, 0, 0) == 0, "%s: values (one block)",
              what);
        CHECK(check_all(a, dt, 1, -1, 0, 0) == 0, "%s: values (block 1)",
              what);
        CHECK_OK(ctx, culeace__act_close(a));

        /* write a block of the last layer, read everything back */
        a = NULL;
        CHECK_OK(ctx, culeace__act_open(ctx, path, &s, 1, &a));
        if (!a) continue;
        int64_t L = culeace__act_layers(a), t = culeace__act_tokens(a);
        int64_t e0 = 5, ne = 9;
        unsigned char *blk = malloc((size_t)(ne * t * D) * esize(dt));
        expect_block(dt, L - 1 + 7, e0, ne, t, blk);
        CHECK_OK(ctx, culeace__act_write(a, L - 1, e0, ne, blk));
        CHECK_OK(ctx, culeace__act_flush(a));
        CHECK(check_all(a, dt, 6, L - 1, e0, ne) == 0,
              "%s: read back before close", what);
        CHECK_OK(ctx, culeace__act_close(a));
        free(blk);
        a = NULL;
        CHECK_OK(ctx, culeace__act_open(ctx, path, &s, 0, &a));
        if (!a) continue;
        CHECK(check_all(a, dt, 4, L - 1, e0, ne) == 0,
              "%s: read back after reopen", what);
        CHECK_OK(ctx, culeace__act_close(a));
      }
}

/* ---- labels, groups, masks ------------------------------------------------ */

static hid_t bool_type(void) {
  hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
  int8_t v = 0;
  H5Tenum_insert(t, "FALSE", &v);
  v = 1;
  H5Tenum_insert(t, "TRUE", &v);
  return t;
}

static void test_labels(void) {
  const char *path = tu_tmp("io_labels.h5");
  enum { n = 10, t = 3 };
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  int16_t y[n];
  for (int i = 0; i < n; i++) y[i] = (int16_t)(i % 3 == 0 ? 9 : i % 3 == 1 ? -2 : 5);
  hsize_t d1 = n, d2[2] = {n, t}, dk[2] = {n, 2};
  write_ds(f, "y16", H5T_STD_I16LE, 1, &d1, NULL, y);
  uint8_t yt[n * t]; /* per token; -100-like padding not possible: uint8 */
  for (int i = 0; i < n * t; i++) yt[i] = (uint8_t)(200 + (i * 7) % 4);
  write_ds(f, "ytok", H5T_STD_U8LE, 2, d2, NULL, yt);
  int32_t ypad[n * t]; /* per token with padding label -100 where masked */
  uint8_t mask[n * t];
  for (int i = 0; i < n * t; i++) {
    mask[i] = (uint8_t)((i % t) != 2 || i < t); /* token 2 masked after ex 0 */
    ypad[i] = mask[i] ? i % 2 : -100;
  }
  write_dsm(f, "ypad", H5T_STD_I32BE, H5T_NATIVE_INT32, 2, d2, NULL,
            ypad); /* big-endian labels are fine (HDF5 converts) */
  write_ds(f, "mask", H5T_STD_U8LE, 2, d2, NULL, mask);
  hid_t bt = bool_type();
  int8_t yb[n];
  for (int i = 0; i < n; i++) yb[i] = (int8_t)(i % 4 == 1);
  write_ds(f, "ybool", bt, 1, &d1, NULL, yb);
  uint8_t mb[n * t];
  for (int i = 0; i < n * t; i++) mb[i] = (uint8_t)(i % 5 != 0);
  write_ds(f, "maskbool", bt, 2, d2, NULL, mb);
  H5Tclose(bt);
  float z[n * 2];
  for (int i = 0; i < n; i++) {
    z[2 * i] = (float)i / 4.0f;
    z[2 * i + 1] = -(float)i;
  }
  write_ds(f, "z", H5T_IEEE_F32LE, 2, dk, NULL, z);
  double z1[n];
  for (int i = 0; i < n; i++) z1[i] = 0.5 * i;
  write_ds(f, "z1", H5T_IEEE_F64LE, 1, &d1, NULL, z1);
  int64_t gid[n];
  for (int i = 0; i < n; i++) gid[i] = 1000 + i / 2;
  write_ds(f, "prompt", H5T_STD_I64LE, 1, &d1, NULL, gid);
  /* activations (n, t, d) for the mask test */
  float *x = malloc(sizeof(float) * n * t * 16);
  for (int i = 0; i < n * t * 16; i++) x[i] = (float)i;
  hsize_t dx[3] = {n, t, 16};
  write_ds(f, "x", H5T_IEEE_F32LE, 3, dx, NULL, x);
  free(x);
  H5Fclose(f);

  culeace_labels lb;
  /* integer (n,) int16: values ascending -2, 5, 9 */
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "y16", n, 1, "/x", &lb));
  CHECK(lb.n == n && !lb.continuous && lb.n_classes == 3, "y16 shape");
  if (lb.n_classes == 3) {
    CHECK(lb.class_values[0] == -2 && lb.class_values[1] == 5 &&
              lb.class_values[2] == 9,
          "y16 values");
    CHECK(lb.class_counts[0] == 3 && lb.class_counts[1] == 3 &&
              lb.class_counts[2] == 4,
          "y16 counts");
    int ok = 1;
    for (int i = 0; i < n; i++)
      ok &= lb.classes[i] == (i % 3 == 0 ? 2 : i % 3 == 1 ? 0 : 1);
    CHECK(ok, "y16 classes");
  }
  culeace__labels_free(&lb);
  /* per-example labels repeated over tokens */
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "/y16", n, t, "/x", &lb));
  CHECK(lb.n == n * t && lb.n_classes == 3, "y16 x tokens");
  if (lb.classes) {
    int ok = 1;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < t; j++)
        ok &= lb.classes[i * t + j] == (i % 3 == 0 ? 2 : i % 3 == 1 ? 0 : 1);
    CHECK(ok, "y16 expanded classes");
    CHECK(lb.class_counts[2] == 4 * t, "y16 expanded counts");
  }
  culeace__labels_free(&lb);
  /* per-token uint8 labels (n, t) */
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "ytok", n, t, "/x", &lb));
  CHECK(lb.n == n * t && lb.n_classes == 4, "ytok classes %lld",
        (long long)lb.n_classes);
  if (lb.classes) {
    int ok = 1;
    for (int i = 0; i < n * t; i++) ok &= lb.classes[i] == (i * 7) % 4;
    CHECK(ok && lb.class_values[3] == 203, "ytok mapping");
  }
  culeace__labels_free(&lb);
  /* masked per-token labels: -100 padding is not a class */
  uint8_t *m8 = malloc(n * t);
  for (int i = 0; i < n * t; i++) m8[i] = mask[i];
  CHECK_OK(ctx, culeace__labels_read_masked(ctx, path, "ypad", n, t, "/x", m8,
                                            &lb));
  CHECK(lb.n_classes == 2 && lb.class_values[0] == 0, "ypad classes");
  if (lb.classes) {
    int ok = 1;
    int64_t kept = 0;
    for (int i = 0; i < n * t; i++) {
      ok &= lb.classes[i] == (mask[i] ? i % 2 : -1);
      kept += mask[i];
    }
    CHECK(ok && lb.class_counts[0] + lb.class_counts[1] == kept,
          "ypad masked mapping");
  }
  culeace__labels_free(&lb);
  free(m8);
  /* unmasked, -100 is a class */
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "ypad", n, t, "/x", &lb));
  CHECK(lb.n_classes == 3 && lb.class_values[0] == -100, "ypad unmasked");
  culeace__labels_free(&lb);
  /* bool (h5py enum) labels */
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "ybool", n, 1, "/x", &lb));
  CHECK(lb.n_classes == 2 && lb.class_counts[1] == 3 && lb.classes[1] == 1 &&
            lb.classes[0] == 0,
        "ybool");
  culeace__labels_free(&lb);
  /* continuous (n, 2) float32 and (n,) float64 over tokens */
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "z", n, 1, "/x", &lb));
  CHECK(lb.continuous && lb.k == 2 && lb.n == n, "z shape");
  if (lb.z) {
    int ok = 1;
    for (int i = 0; i < n; i++)
      ok &= lb.z[2 * i] == i / 4.0 && lb.z[2 * i + 1] == -(double)i;
    CHECK(ok, "z values");
  }
  culeace__labels_free(&lb);
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "z1", n, t, "/x", &lb));
  CHECK(lb.continuous && lb.k == 1 && lb.n == n * t, "z1 shape");
  if (lb.z) {
    int ok = 1;
    for (int i = 0; i < n * t; i++) ok &= lb.z[i] == 0.5 * (i / t);
    CHECK(ok, "z1 expanded");
  }
  culeace__labels_free(&lb);
  /* groups */
  int64_t *g = NULL;
  CHECK_OK(ctx, culeace__groups_read(ctx, path, "prompt", n, t, &g));
  if (g) {
    int ok = 1;
    for (int i = 0; i < n * t; i++) ok &= g[i] == 1000 + (i / t) / 2;
    CHECK(ok, "groups expanded");
  }
  free(g);
  /* masks: uint8 and bool */
  const char *mpaths[] = {"mask", "maskbool"};
  for (int mi = 0; mi < 2; mi++) {
    culeace_act_spec s;
    culeace__act_spec_init(&s);
    s.x_path = "x";
    s.tokens = 1;
    s.mask_path = mpaths[mi];
    culeace_act *a = NULL;
    CHECK_OK(ctx, culeace__act_open(ctx, path, &s, 0, &a));
    if (!a) continue;
    const uint8_t *m = culeace__act_mask(a);
    int ok = m != NULL;
    for (int i = 0; ok && i < n * t; i++)
      ok &= m[i] == (mi == 0 ? mask[i] : mb[i]);
    CHECK(ok, "mask %s", mpaths[mi]);
    culeace__act_close(a);
  }
}

/* Labels with many distinct values (more than the few a block keeps
 * aside while it looks for new ones), repeated and out of order, spread
 * over several label blocks: sorted class values, each row's class and
 * the counts. */
static void test_many_label_values(void) {
  const char *path = tu_tmp("io_labels_many.h5");
  enum { n = 300000, V = 97 };
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  int64_t *y = malloc(sizeof *y * n);
  for (int64_t i = 0; i < n; i++) /* values 1000 - 13 v: descending in v */
    y[i] = 1000 - 13 * ((i * 37 + i / 1000) % V);
  hsize_t d1 = n;
  write_ds(f, "y", H5T_STD_I64LE, 1, &d1, NULL, y);
  hsize_t dx[2] = {n, 1};
  float *x = calloc(n, sizeof *x);
  write_ds(f, "x", H5T_IEEE_F32LE, 2, dx, NULL, x);
  free(x);
  H5Fclose(f);
  culeace_labels lb;
  CHECK_OK(ctx, culeace__labels_read(ctx, path, "y", n, 1, "/x", &lb));
  CHECK(lb.n_classes == V, "many values: %lld classes",
        (long long)lb.n_classes);
  if (lb.n_classes == V) {
    int ok = 1;
    for (int c = 0; c < V; c++)
      ok &= lb.class_values[c] == 1000 - 13 * (V - 1 - c);
    CHECK(ok, "many values: sorted class values");
    int64_t counts[V] = {0};
    ok = 1;
    for (int64_t i = 0; i < n; i++) {
      int32_t c = lb.classes[i];
      ok &= c >= 0 && c < V && lb.class_values[c] == y[i];
      if (c >= 0 && c < V) counts[c]++;
    }
    CHECK(ok, "many values: each row's class");
    ok = 1;
    for (int c = 0; c < V; c++) ok &= lb.class_counts[c] == counts[c];
    CHECK(ok, "many values: class counts");
  }
  culeace__labels_free(&lb);
  free(y);
}

static void test_natural(void) {
  CHECK(culeace__natural_cmp("layer_2", "layer_10") < 0, "2 < 10");
  CHECK(culeace__natural_cmp("layer_10", "layer_2") > 0, "10 > 2");
  CHECK(culeace__natural_cmp("a9", "a10") < 0, "a9 < a10");
  CHECK(culeace__natural_cmp("a10", "b1") < 0, "a10 < b1");
  CHECK(culeace__natural_cmp("x7", "x007") != 0 &&
            culeace__natural_cmp("x7", "x008") < 0,
        "leading zeros");
  CHECK(culeace__natural_cmp("h.3.mlp", "h.12.attn") < 0, "dotted");
  CHECK(culeace__natural_cmp("same", "same") == 0, "equal");
  CHECK(culeace__natural_cmp("l1", "l1a") < 0, "prefix");
}

/* ---- the h5py fixture ------------------------------------------------------- */

enum { FN = 37, FD = 24, FL = 3, FT = 4 };

static int fixture_check(const char *file, const char *ds, int layer_axis,
                         int tokens, culeace_dtype dt, const int *layer_of) {
  culeace_act_spec s;
  culeace__act_spec_init(&s);
  s.x_path = ds;
  s.layer_axis = layer_axis;
  s.tokens = tokens;
  culeace_act *a = NULL;
  culeace_status st = culeace__act_open(ctx, file, &s, 0, &a);
  CHECK(st == CULEACE_OK, "open %s: %s", ds, culeace_ctx_last_error(ctx));
  if (!a) return 0;
  int64_t t = culeace__act_tokens(a), L = culeace__act_layers(a);
  CHECK(culeace__act_dtype(a) == dt, "%s dtype", ds);
  CHECK(culeace__act_examples(a) == FN && culeace__act_width(a) == FD,
        "%s shape", ds);
  size_t es = esize(dt);
  unsigned char *got = malloc((size_t)(FN * t * FD) * es);
  unsigned char *want = malloc((size_t)(FN * t * FD) * es);
  int bad = 0;
  for (int64_t l = 0; l < L; l++) {
    int64_t fl = layer_of ? layer_of[l] : l;
    if (culeace__act_read(a, l, 0, FN, got) != CULEACE_OK) bad++;
    for (int64_t i = 0; i < FN; i++)
      for (int64_t j = 0; j < t; j++)
        for (int64_t k = 0; k < FD; k++)
          encode(formula(fl, i, j, k), dt,
                 want + (size_t)((i * t + j) * FD + k) * es);
    if (memcmp(got, want, (size_t)(FN * t * FD) * es) != 0) bad++;
    if (dt == CULEACE_F16 || dt == CULEACE_BF16) {
      /* decode and compare with the float32 value rounded the same way */
      for (int64_t e = 0; e < FN * t * FD; e++) {
        uint16_t h;
        memcpy(&h, got + e * 2, 2);
        float v = dt == CULEACE_F16 ? culeace__f16_to_f32(h)
                                    : culeace__bf16_to_f32(h);
        float ref = formula(fl, e / (t * FD), (e / FD) % t, e % FD);
        float tol = dt == CULEACE_F16 ? 1.0f / 1024 : 1.0f / 128;
        if (fabsf(v - ref) > tol * fabsf(ref) + 1e-7f) {
          bad++;
          break;
        }
      }
    }
  }
  CHECK(bad == 0, "fixture %s values (%d bad layers)", ds, bad);
  free(got);
  free(want);
  CHECK_OK(ctx, culeace__act_close(a));
  return bad == 0;
}

static void test_fixture(void) {
  const char *file = tu_src("tests/fixtures/io_h5py.h5");
  fixture_check(file, "f16", -1, 0, CULEACE_F16, NULL);
  fixture_check(file, "f16_gzip", -1, 0, CULEACE_F16, NULL);
  fixture_check(file, "bf16", -1, 0, CULEACE_BF16, NULL);
  fixture_check(file, "bf16_gzip", -1, 0, CULEACE_BF16, NULL);
  fixture_check(file, "f32", -1, 0, CULEACE_F32, NULL);
  fixture_check(file, "f64", -1, 0, CULEACE_F64, NULL);
  fixture_check(file, "stack", 0, 0, CULEACE_F16, NULL);
  fixture_check(file, "tok", -1, 1, CULEACE_F16, NULL);
  static const int layer_of[] = {0, 2, 10};
  fixture_check(file, "layers", -1, 0, CULEACE_F16, layer_of);

  /* float16 special values exactly as numpy encodes them */
  culeace_act_spec s;
  culeace__act_spec_init(&s);
  s.x_path = "f16_special";
  culeace_act *a = NULL;
  CHECK_OK(ctx, culeace__act_open(ctx, file, &s, 0, &a));
  if (a) {
    uint16_t h[16];
    static const uint16_t want[8] = {0x0001, 0x0010, 0x8400, 0x7bff,
                                     0x8000, 0x7c00, 0xfc00, 0x3555};
    CHECK_OK(ctx, culeace__act_read(a, 0, 0, 2, h));
    CHECK(memcmp(h, want, sizeof want) == 0 && memcmp(h + 8, want, 16) == 0,
          "f16 specials %04x %04x %04x %04x", h[0], h[1], h[2], h[3]);
    CHECK(culeace__f16_to_f32(h[0]) == ldexpf(1.0f, -24) &&
              culeace__f16_to_f32(h[3]) == 65504.0f &&
              isinf(culeace__f16_to_f32(h[5])),
          "f16 special decode");
    culeace__act_close(a);
  }
  /* layer names of the group (sub-group skipped) */
  s.x_path = "layers";
  a = NULL;
  CHECK_OK(ctx, culeace__act_open(ctx, file, &s, 0, &a));
  if (a) {
    CHECK(culeace__act_layers(a) == 3 &&
              strcmp(culeace__act_layer_name(a, 1), "layer_2") == 0 &&
              strcmp(culeace__act_layer_name(a, 2), "layer_10") == 0,
          "fixture group order");
    culeace__act_close(a);
  }
  /* bool mask of the token-level dataset */
  s.x_path = "tok";
  s.tokens = 1;
  s.mask_path = "tok_mask";
  a = NULL;
  CHECK_OK(ctx, culeace__act_open(ctx, file, &s, 0, &a));
  if (a) {
    const uint8_t *m = culeace__act_mask(a);
    int ok = m != NULL;
    for (int i = 0; ok && i < FN; i++)
      for (int j = 0; j < FT; j++) ok &= m[i * FT + j] == ((i * 3 + j) % 5 != 0);
    CHECK(ok, "fixture mask");
    culeace__act_close(a);
  }
  /* labels / groups written by h5py */
  culeace_labels lb;
  CHECK_OK(ctx, culeace__labels_read(ctx, file, "y", FN, FT, "/tok", &lb));
  CHECK(lb.n_classes == 3 && lb.class_values[1] == 7 &&
            lb.class_counts[0] == 13 * FT && lb.n == FN * FT,
        "fixture y");
  culeace__labels_free(&lb);
  CHECK_OK(ctx, culeace__labels_read(ctx, file, "y_bool", FN, 1, "/f16", &lb));
  CHECK(lb.n_classes == 2 && lb.class_counts[1] == 9, "fixture y_bool");
  culeace__labels_free(&lb);
  CHECK_OK(ctx, culeace__labels_read(ctx, file, "z", FN, 1, "/f16", &lb));
  CHECK(lb.continuous && lb.k == 2 && lb.z && lb.z[2 * 5] == 1.25 &&
            lb.z[2 * 5 + 1] == -2.5,
        "fixture z");
  culeace__labels_free(&lb);
  int64_t *g = NULL;
  CHECK_OK(ctx, culeace__groups_read(ctx, file, "prompt_id", FN, 1, &g));
  CHECK(g && g[36] == 18, "fixture groups");
  free(g);

  /* inspect: table and JSON */
  for (int json = 0; json < 2; json++) {
    FILE *fp = tmpfile();
    CHECK_OK(ctx, culeace__inspect(ctx, file, json, fp));
    if (!fp) continue;
    long len = ftell(fp);
    rewind(fp);
    char *txt = calloc((size_t)len + 1, 1);
    size_t rd = fread(txt, 1, (size_t)len, fp);
    (void)rd;
    fclose(fp);
    if (json) {
      CHECK(strstr(txt, "{\"file\": ") == txt, "json start");
      CHECK(strstr(txt, "\"path\": \"/bf16\", \"shape\": [37, 24], "
                        "\"dtype\": \"bfloat16\""),
            "json bf16: %s", txt);
      CHECK(strstr(txt, "\"dtype\": \"float16\", \"storage\": \"chunked\", "
                        "\"chunks\": [8, 8], \"filters\": [\"shuffle\", "
                        "\"gzip(4)\", \"fletcher32\"], \"role\": "
                        "\"activations\""),
            "json f16_gzip");
      CHECK(strstr(txt, "\"path\": \"/y\"") &&
                strstr(txt, "\"classes\": {\"3\": 13, \"7\": 12, \"9\": 12}"),
            "json classes");
      CHECK(strstr(txt, "\"path\": \"/prompt_id\", \"shape\": [37], "
                        "\"dtype\": \"int32\"") &&
                strstr(txt, "\"role\": \"groups\""),
            "json groups");
      CHECK(strstr(txt, "\"dtype\": \"bool\""), "json bool");
      CHECK(strstr(txt, "\"layer_groups\": [\n  {\"path\": \"/layers\", "
                        "\"layers\": 3, \"shape\": [37, 24], \"dtype\": "
                        "\"float16\", \"members\": [\"layer_0\", "
                        "\"layer_2\", \"layer_10\"]}"),
            "json layer group: %s",
            strstr(txt, "layer_groups") ? strstr(txt, "layer_groups") : "-");
      CHECK(strstr(txt, "\"role\": \"mask\""), "json mask");
    } else {
      CHECK(strstr(txt, "layer group (3 layers, 37 x 24, float16)"),
            "table layer group: %s", txt);
      CHECK(strstr(txt, "labels (3 classes: 3: 13, 7: 12, 9: 12)"),
            "table classes");
    }
    free(txt);
  }
}

int main(void) {
  culeace_ctx_opts o;
  culeace_ctx_opts_init(&o);
  o.device = CULEACE_DEVICE_CPU;
  char err[256] = "";
  if (culeace_ctx_create(&o, &ctx, err, sizeof err) != CULEACE_OK) {
    fprintf(stderr, "cannot create context: %s\n", err);
    return 1;
  }
  tu_h5_ids ids; /* HDF5 ids alive before the tests; the same after */
  tu_h5_ids_take(&ids);
  test_natural();
  test_layouts();
  test_labels();
  test_many_label_values();
  test_fixture();
  tu_h5_ids_check(&ids);
  culeace_ctx_free(ctx);
  return tu_finish("test_io_roundtrip");
}
