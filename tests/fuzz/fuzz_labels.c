/* fuzz_labels.c — libFuzzer target for the label mapping alone: the input
 * bytes become a well-formed label dataset (so every run reaches the
 * mapping, not HDF5's parser): byte 0 picks the stored type (signed or
 * unsigned 8/16/32/64-bit integers, float32/float64) and the shape ((n,) or
 * (n, t) per-token labels), byte 1 the token count t (1..4) and whether a
 * row mask is used (the bits of the following bytes), the rest are the
 * values. The result is checked against the definition: classes in
 * 0..K-1 on kept rows and -1 on masked ones, class_values strictly
 * ascending, each kept row's class mapping back to its own value, counts
 * summing to the kept rows; continuous labels finite on kept rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "fuzzutil.h"
#include "io/activations.h"

enum { MAX_ROWS = 256 };

static const hid_t *types(int *count) {
  static hid_t t[10];
  t[0] = H5T_NATIVE_INT8;   t[1] = H5T_NATIVE_UINT8;
  t[2] = H5T_NATIVE_INT16;  t[3] = H5T_NATIVE_UINT16;
  t[4] = H5T_NATIVE_INT32;  t[5] = H5T_NATIVE_UINT32;
  t[6] = H5T_NATIVE_INT64;  t[7] = H5T_NATIVE_UINT64;
  t[8] = H5T_NATIVE_FLOAT;  t[9] = H5T_NATIVE_DOUBLE;
  *count = 10;
  return t;
}

/* The stored value of element i as a double and, for integer types, as
 * the int64 the mapping sees (uint64 above INT64_MAX is refused there). */
static double value_at(const uint8_t *v, size_t es, int ti, size_t i,
                       int64_t *as_int) {
  const uint8_t *p = v + i * es;
  int64_t r = 0;
  double f = 0;
  switch (ti) {
  case 0: { int8_t x; memcpy(&x, p, 1); r = x; break; }
  case 1: { uint8_t x; memcpy(&x, p, 1); r = x; break; }
  case 2: { int16_t x; memcpy(&x, p, 2); r = x; break; }
  case 3: { uint16_t x; memcpy(&x, p, 2); r = x; break; }
  case 4: { int32_t x; memcpy(&x, p, 4); r = x; break; }
  case 5: { uint32_t x; memcpy(&x, p, 4); r = x; break; }
  case 6: { int64_t x; memcpy(&x, p, 8); r = x; break; }
  case 7: { uint64_t x; memcpy(&x, p, 8); r = (int64_t)x; break; }
  case 8: { float x; memcpy(&x, p, 4); f = x; break; }
  default: { double x; memcpy(&x, p, 8); f = x; break; }
  }
  *as_int = r;
  return ti >= 8 ? f : (double)r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  culeace_ctx *ctx = fuzz_ctx();
  int nt;
  const hid_t *tt = types(&nt);
  const int ti = data[0] % nt, per_token = (data[0] / nt) & 1;
  const int64_t t = 1 + (data[1] & 3);
  const int use_mask = (data[1] >> 2) & 1;
  data += 2;
  size -= 2;
  const size_t es = H5Tget_size(tt[ti]);
  const size_t cells_per_ex = per_token ? (size_t)t : 1;
  int64_t n = (int64_t)(size / (es * cells_per_ex));
  if (n > MAX_ROWS) n = MAX_ROWS;
  if (n < 1 || !ctx) return 0;
  const size_t cells = (size_t)n * cells_per_ex;
  uint8_t mask[MAX_ROWS * 4];
  for (int64_t i = 0; i < n * t; i++)  /* mask bits from the value bytes */
    mask[i] = use_mask ? (data[(size_t)i % size] >> (i % 8)) & 1 : 1;

  /* a well-formed file holding /labels */
  const char *path = fuzz_file((const uint8_t *)"", 0);
  if (!path) return 0;
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return 0;
  hsize_t dims[2] = {(hsize_t)n, (hsize_t)t};
  hid_t s = H5Screate_simple(per_token ? 2 : 1, dims, NULL);
  hid_t d = H5Dcreate2(f, "labels", tt[ti], s, H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT);
  H5Dwrite(d, tt[ti], H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);

  culeace_labels lab;
  if (culeace__labels_read_masked(ctx, path, "/labels", n, t, "/x",
                                  use_mask ? mask : NULL, &lab) != CULEACE_OK)
    return 0;
  const int64_t rows = n * t;
  if (lab.n != rows) abort();
  if (!lab.continuous) {
    for (int64_t c = 1; c < lab.n_classes; c++)
      if (lab.class_values[c] <= lab.class_values[c - 1]) abort();
    int64_t total = 0;
    for (int64_t c = 0; c < lab.n_classes; c++) total += lab.class_counts[c];
    int64_t kept = 0;
    for (int64_t r = 0; r < rows; r++) {
      size_t cell = per_token ? (size_t)r : (size_t)(r / t);
      int64_t v;
      value_at(data, es, ti, cell, &v);
      if (!mask[r]) {
        if (lab.classes[r] != -1) abort();
        continue;
      }
      kept++;
      if (lab.classes[r] < 0 || lab.classes[r] >= lab.n_classes) abort();
      if (lab.class_values[lab.classes[r]] != v) abort();
    }
    if (total != kept || lab.n_classes < 2) abort();
  } else {
    for (int64_t r = 0; r < rows; r++)
      if (mask[r] && !isfinite(lab.z[(size_t)r * (size_t)lab.k])) abort();
  }
  (void)cells;
  culeace__labels_free(&lab);
  return 0;
}
