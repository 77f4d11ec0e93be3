/* fuzz_layer_spec.c — libFuzzer target: the input is a `--layers`
 * selection ("all", "0,3-7", layer names, anything else), parsed by the
 * CLI's cli_parse_layers against a fixed 5-layer dump with numeric and
 * odd names. Every index it returns must be a real layer, sorted and
 * without repeats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "cli/cli.h"
#include "fuzzutil.h"

static culeace_act *dump(culeace_ctx *ctx) {
  static culeace_act *a;
  static char path[64];
  if (a) return a;
  snprintf(path, sizeof path, "/tmp/culeace-fuzz-layers-%d.h5", (int)getpid());
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t g = H5Gcreate2(f, "h", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const char *names[] = {"0", "1", "10", "2-3", "a,b"};
  hsize_t dims[2] = {2, 2};
  float v[4] = {1, 2, 3, 4};
  for (int i = 0; i < 5; i++) {
    hid_t s = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(g, names[i], H5T_NATIVE_FLOAT, s, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d);
    H5Sclose(s);
  }
  H5Gclose(g);
  H5Fclose(f);
  culeace_act_spec spec;
  culeace__act_spec_init(&spec);
  spec.x_path = "/h";
  if (culeace__act_open(ctx, path, &spec, 0, &a) != CULEACE_OK) abort();
  remove(path);
  return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  culeace_ctx *ctx = fuzz_ctx();
  if (!ctx) return 0;
  culeace_act *a = dump(ctx);
  char *sel = malloc(size + 1);
  if (!sel) return 0;
  memcpy(sel, data, size);
  sel[size] = 0;
  cli_common c;
  cli_common_init(&c, "fuzz");
  int64_t *out = NULL;
  FILE *saved = stderr;
  stderr = fopen("/dev/null", "w"); /* its error messages */
  int64_t m = cli_parse_layers(&c, sel, a, &out);
  fclose(stderr);
  stderr = saved;
  for (int64_t i = 0; i < m; i++)
    if (out[i] < 0 || out[i] >= culeace__act_layers(a) ||
        (i > 0 && out[i] <= out[i - 1]))
      abort();
  free(out);
  free(sel);
  return 0;
}
