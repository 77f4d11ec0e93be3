/* test_io_errors.c — every way an activation source, label, group or mask
 * dataset can be wrong gives the right status code and a message naming the
 * file and the dataset (and what was expected); the library never aborts and
 * a failed open leaves nothing open. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "culeace.h"
#include "io/activations.h"
#include "testutil.h"

static culeace_ctx *ctx;
static const char *g_file; /* the main test file */

static int write_dsm(hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                     int rank, const hsize_t *dims, const hsize_t *chunk,
                     const void *data) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk) {
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_fletcher32(dcpl);
  }
  hid_t ds = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  int ok = ds >= 0 && (!data || H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL,
                                         H5P_DEFAULT, data) >= 0);
  if (ds >= 0) H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(sp);
  return ok;
}

/* Float32 dataset filled with i * 0.5 (data may be large enough for all). */
static float g_buf[4096];

static void f32(hid_t loc, const char *name, int rank, hsize_t d0, hsize_t d1,
                hsize_t d2, hsize_t d3) {
  hsize_t dims[4] = {d0, d1, d2, d3};
  write_dsm(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank, dims, NULL,
            g_buf);
}

static void make_file(const char *path) {
  for (int i = 0; i < 4096; i++) g_buf[i] = 0.5f * (float)i;
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  f32(f, "x", 2, 10, 16, 0, 0);        /* good (n, d) */
  f32(f, "vec", 1, 10, 0, 0, 0);       /* rank 1 */
  f32(f, "cube", 3, 10, 4, 16, 0);     /* rank 3: ambiguous */
  f32(f, "hyper", 4, 2, 10, 4, 16);    /* rank 4 */
  f32(f, "empty", 2, 0, 16, 0, 0);     /* n = 0 */
  f32(f, "nod", 2, 10, 0, 0, 0);       /* d = 0 */
  hsize_t d2[2] = {10, 16};
  write_dsm(f, "xbe", H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 2, d2, NULL, g_buf);
  int32_t ibuf[160];
  for (int i = 0; i < 160; i++) ibuf[i] = i;
  write_dsm(f, "xint", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, NULL, ibuf);
  /* a 2-byte float with non-standard fields (neither f16 nor bf16) */
  hid_t odd = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(odd, 15, 9, 6, 0, 9);
  H5Tset_size(odd, 2);
  H5Tset_ebias(odd, 31);
  write_dsm(f, "xodd", odd, odd, 2, d2, NULL, NULL);
  H5Tclose(odd);
  /* layer groups */
  hid_t g = H5Gcreate2(f, "gshape", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  f32(g, "layer_0", 2, 10, 16, 0, 0);
  f32(g, "layer_1", 2, 10, 16, 0, 0);
  f32(g, "layer_3", 2, 10, 15, 0, 0); /* the odd one */
  H5Gclose(g);
  g = H5Gcreate2(f, "gtype", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  f32(g, "l0", 2, 10, 16, 0, 0);
  write_dsm(g, "l1", H5T_IEEE_F64LE, H5T_NATIVE_FLOAT, 2, d2, NULL, g_buf);
  H5Gclose(g);
  g = H5Gcreate2(f, "gempty", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t sub = H5Gcreate2(g, "sub", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(sub);
  H5Gclose(g);
  g = H5Gcreate2(f, "g3d", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  f32(g, "a", 3, 10, 4, 16, 0);
  H5Gclose(g);
  /* labels */
  int64_t y[1000];
  for (int i = 0; i < 1000; i++) y[i] = i % 2;
  hsize_t n999 = 999, n10 = 10, n10x5[2] = {10, 5};
  write_dsm(f, "y999", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n999, NULL, y);
  int64_t three[10] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
  write_dsm(f, "one", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n10, NULL, three);
  write_dsm(f, "ywide", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, n10x5, NULL, y);
  double z[10] = {0, 1, 2, 3, NAN, 5, 6, 7, 8, 9};
  write_dsm(f, "znan", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n10, NULL, z);
  hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, 4);
  char sbuf[40] = "abcdefghijklmnopqrstuvwxyzabcdefghijklmn";
  write_dsm(f, "ystr", str, str, 1, &n10, NULL, sbuf);
  H5Tclose(str);
  /* masks: wrong shape, float */
  uint8_t m[50] = {0};
  write_dsm(f, "mask_bad", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, n10x5, NULL, m);
  write_dsm(f, "mask_f", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n10, NULL,
            g_buf);
  H5Fclose(f);
}

/* Checks status and that the message holds every non-NULL needle. */
static void expect(culeace_status got, culeace_status want, const char *what,
                   const char *n1, const char *n2, const char *n3) {
  const char *msg = culeace_ctx_last_error(ctx);
  if (getenv("TU_VERBOSE")) printf("%-28s %s\n", what, msg);
  CHECK(got == want, "%s: got %s, want %s (%s)", what,
        culeace_status_name(got), culeace_status_name(want), msg);
  const char *needles[3] = {n1, n2, n3};
  for (int i = 0; i < 3; i++)
    if (needles[i])
      CHECK(strstr(msg, needles[i]) != NULL, "%s: message lacks \"%s\": %s",
            what, needles[i], msg);
}

static culeace_status open_x(const char *file, const char *x, int axis,
                             int tokens, const char *mask) {
  culeace_act_spec s;
  culeace__act_spec_init(&s);
  s.x_path = x;
  s.layer_axis = axis;
  s.tokens = tokens;
  s.mask_path = mask;
  culeace_act *a = (culeace_act *)0x1;
  culeace_status st = culeace__act_open(ctx, file, &s, 0, &a);
  if (st != CULEACE_OK)
    CHECK(a == NULL, "failed open of %s must leave *out NULL", x);
  if (a && a != (culeace_act *)0x1) culeace__act_close(a);
  return st;
}

static void test_files(void) {
  const char *missing = tu_tmp("io_no_such_file.h5");
  remove(missing);
  expect(open_x(missing, "x", -1, 0, NULL), CULEACE_ERR_NOT_FOUND,
         "missing file", "file not found", missing, NULL);
  const char *garbage = tu_tmp("io_garbage.h5");
  FILE *fp = fopen(garbage, "wb");
  for (int i = 0; i < 4000; i++) fputc("not hdf5 "[i % 9], fp);
  fclose(fp);
  expect(open_x(garbage, "x", -1, 0, NULL), CULEACE_ERR_FORMAT, "garbage",
         "not an HDF5 file", garbage, NULL);
  const char *empty = tu_tmp("io_empty.h5");
  fp = fopen(empty, "wb");
  fclose(fp);
  expect(open_x(empty, "x", -1, 0, NULL), CULEACE_ERR_FORMAT, "empty file",
         "not an HDF5 file", empty, NULL);
  expect(open_x(tu_tmp(""), "x", -1, 0, NULL), CULEACE_ERR_IO, "directory",
         "directory", NULL, NULL);
  culeace_labels lb;
  expect(culeace__labels_read(ctx, garbage, "y", 10, 1, "/x", &lb),
         CULEACE_ERR_FORMAT, "labels in garbage", "not an HDF5 file", garbage,
         NULL);
  expect(culeace__inspect(ctx, missing, 0, NULL), CULEACE_ERR_NOT_FOUND,
         "inspect missing", missing, NULL, NULL);
}

static void test_datasets(void) {
  const char *f = g_file;
  expect(open_x(f, "nope", -1, 0, NULL), CULEACE_ERR_NOT_FOUND,
         "missing dataset", "/nope", f, "holds: cube, empty, g3d");
  expect(open_x(f, "/gshape/nope/x", -1, 0, NULL), CULEACE_ERR_NOT_FOUND,
         "missing nested dataset", "/gshape/nope/x", f, "layer_0");
  expect(open_x(f, "/x/y", -1, 0, NULL), CULEACE_ERR_NOT_FOUND,
         "path through a dataset", "/x/y", f, "not a group");
  expect(open_x(f, "vec", -1, 0, NULL), CULEACE_ERR_SHAPE, "rank 1", "/vec",
         f, "(n, d)");
  expect(open_x(f, "cube", -1, 0, NULL), CULEACE_ERR_SHAPE, "ambiguous",
         "ambiguous: pass --layer-axis 0|1 or --tokens", "/cube", f);
  expect(open_x(f, "x", 0, 0, NULL), CULEACE_ERR_SHAPE, "axis on 2-D",
         "(L, n, d)", "/x", f);
  expect(open_x(f, "hyper", 1, 0, NULL), CULEACE_ERR_SHAPE, "4-D no tokens",
         "(n, L, d)", "/hyper", f);
  expect(open_x(f, "cube", 0, 1, NULL), CULEACE_ERR_SHAPE, "3-D axis+tokens",
         "(L, n, t, d)", "/cube", f);
  expect(open_x(f, "x", 2, 0, NULL), CULEACE_ERR_INVALID_ARG, "axis 2",
         "layer axis", NULL, NULL);
  expect(open_x(f, "empty", -1, 0, NULL), CULEACE_ERR_DEGENERATE, "n = 0",
         "/empty", f, "n = 0");
  expect(open_x(f, "nod", -1, 0, NULL), CULEACE_ERR_SHAPE, "d = 0", "/nod", f,
         "width d");
  expect(open_x(f, "xbe", -1, 0, NULL), CULEACE_ERR_DTYPE, "big-endian",
         "/xbe", f, "float32 big-endian");
  expect(open_x(f, "xint", -1, 0, NULL), CULEACE_ERR_DTYPE, "integer",
         "/xint", f, "int32");
  expect(open_x(f, "xodd", -1, 0, NULL), CULEACE_ERR_DTYPE, "odd float",
         "/xodd", f, "6-bit exponent");
  expect(open_x(f, "gshape", -1, 0, NULL), CULEACE_ERR_SHAPE, "group shape",
         "/gshape/layer_3", f, "(10, 15)");
  expect(open_x(f, "gtype", -1, 0, NULL), CULEACE_ERR_DTYPE, "group dtype",
         "/gtype/l1", f, "float64");
  expect(open_x(f, "gempty", -1, 0, NULL), CULEACE_ERR_NOT_FOUND,
         "empty group", "/gempty", f, "no datasets");
  expect(open_x(f, "g3d", -1, 0, NULL), CULEACE_ERR_SHAPE, "3-D member",
         "/g3d/a", f, "--tokens");
  expect(open_x(f, "gshape", 0, 0, NULL), CULEACE_ERR_INVALID_ARG,
         "axis on group", "/gshape", f, "layer axis");
  expect(open_x(f, "x", -1, 0, "mask_bad"), CULEACE_ERR_SHAPE, "mask shape",
         "/mask_bad", f, "(10, 5)");
  expect(open_x(f, "x", -1, 0, "mask_f"), CULEACE_ERR_DTYPE, "mask float",
         "/mask_f", f, "float32");
  expect(open_x(f, "x", -1, 0, "nomask"), CULEACE_ERR_NOT_FOUND,
         "mask missing", "/nomask", f, NULL);
}

static void test_labels(void) {
  const char *f = g_file;
  culeace_labels lb;
  char want[512];
  snprintf(want, sizeof want,
           "labels /y999 in %s have 999 rows but activations /x have 1000", f);
  expect(culeace__labels_read(ctx, f, "y999", 1000, 1, "/x", &lb),
         CULEACE_ERR_SHAPE, "label length", want, NULL, NULL);
  CHECK(lb.classes == NULL && lb.z == NULL, "nothing left allocated");
  snprintf(want, sizeof want,
           "labels /one in %s have only one class (value 3)", f);
  expect(culeace__labels_read(ctx, f, "/one", 10, 1, "/x", &lb),
         CULEACE_ERR_DEGENERATE, "one class", want, NULL, NULL);
  expect(culeace__labels_read(ctx, f, "ywide", 10, 3, "/x", &lb),
         CULEACE_ERR_SHAPE, "labels (n, 5) with t = 3", "/ywide", f,
         "(n,) or (n, t)");
  expect(culeace__labels_read(ctx, f, "znan", 10, 1, "/x", &lb),
         CULEACE_ERR_NONFINITE, "NaN label", "/znan", f, "row 4");
  expect(culeace__labels_read(ctx, f, "ystr", 10, 1, "/x", &lb),
         CULEACE_ERR_DTYPE, "string labels", "/ystr", f, "string");
  expect(culeace__labels_read(ctx, f, "nolabels", 10, 1, "/x", &lb),
         CULEACE_ERR_NOT_FOUND, "missing labels", "/nolabels", f, NULL);
  int64_t *g = (int64_t *)0x1;
  expect(culeace__groups_read(ctx, f, "znan", 10, 1, &g), CULEACE_ERR_DTYPE,
         "float groups", "/znan", f, "integers");
  CHECK(g == NULL, "groups out NULL on error");
  expect(culeace__groups_read(ctx, f, "y999", 10, 1, &g), CULEACE_ERR_SHAPE,
         "groups length", "/y999", f, "999 rows");
}

static void test_usage(void) {
  const char *f = g_file;
  culeace_act_spec s;
  culeace__act_spec_init(&s);
  s.x_path = "x";
  culeace_act *a = NULL;
  CHECK_OK(ctx, culeace__act_open(ctx, f, &s, 0, &a));
  if (!a) return;
  float buf[16 * 10];
  expect(culeace__act_read(a, 1, 0, 1, buf), CULEACE_ERR_INVALID_ARG,
         "bad layer", "/x", f, "1 layers");
  expect(culeace__act_read(a, 0, 5, 6, buf), CULEACE_ERR_INVALID_ARG,
         "past the end", "[5, 11)", "/x", f);
  expect(culeace__act_read(a, 0, -1, 1, buf), CULEACE_ERR_INVALID_ARG,
         "negative", "/x", NULL, NULL);
  expect(culeace__act_write(a, 0, 0, 1, buf), CULEACE_ERR_STATE,
         "write read-only", "/x", f, "read-only");
  CHECK_OK(ctx, culeace__act_read(a, 0, 0, 0, NULL)); /* empty block: ok */
  CHECK_OK(ctx, culeace__act_read(a, 0, 9, 1, buf));
  CHECK(buf[0] == 0.5f * 144 && buf[15] == 0.5f * 159, "last row");
  CHECK_OK(ctx, culeace__act_close(a));
  CHECK(culeace__act_close(NULL) == CULEACE_OK, "close NULL");
}

/* A flipped byte inside a fletcher32 chunk: the read fails with ERR_IO and
 * the message carries the file, dataset and HDF5's own description. */
static void test_corrupt_chunk(void) {
  const char *path = tu_tmp("io_corrupt.h5");
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[2] = {64, 16}, chunk[2] = {16, 16};
  for (int i = 0; i < 1024; i++) g_buf[i] = (float)i;
  write_dsm(f, "x", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims, chunk, g_buf);
  hid_t ds = H5Dopen2(f, "x", H5P_DEFAULT);
  hsize_t off[2] = {16, 0}, size = 0;
  haddr_t addr = HADDR_UNDEF;
  unsigned fm = 0;
  herr_t rc = H5Dget_chunk_info_by_coord(ds, off, &fm, &addr, &size);
  H5Dclose(ds);
  H5Fclose(f);
  CHECK(rc >= 0 && addr != HADDR_UNDEF, "chunk address");
  if (rc < 0) return;
  FILE *fp = fopen(path, "r+b");
  fseek(fp, (long)addr + 40, SEEK_SET);
  int c = fgetc(fp);
  fseek(fp, (long)addr + 40, SEEK_SET);
  fputc(c ^ 0x5a, fp);
  fclose(fp);
  culeace_act_spec s;
  culeace__act_spec_init(&s);
  s.x_path = "x";
  culeace_act *a = NULL;
  CHECK_OK(ctx, culeace__act_open(ctx, path, &s, 0, &a));
  if (!a) return;
  float buf[64 * 16];
  CHECK_OK(ctx, culeace__act_read(a, 0, 0, 16, buf)); /* chunk 0 intact */
  expect(culeace__act_read(a, 0, 10, 20, buf), CULEACE_ERR_IO,
         "corrupt chunk", "examples [10, 30) of /x", path, "[HDF5: ");
  CHECK_OK(ctx, culeace__act_close(a));
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
  g_file = tu_tmp("io_errors.h5");
  make_file(g_file);
  test_files();
  test_datasets();
  test_labels();
  test_usage();
  test_corrupt_chunk();
  tu_h5_ids_check(&ids);
  culeace_ctx_free(ctx);
  return tu_finish("test_io_errors");
}
