/* fuzzutil.c — the scratch file and the context the fuzz targets share. */
#include "fuzzutil.h"

#include <stdio.h>
#include <unistd.h>

const char *fuzz_file(const uint8_t *data, size_t size) {
  static char path[256];
  if (!path[0]) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/culeace-fuzz-%ld.h5", dir, (long)getpid());
  }
  FILE *f = fopen(path, "wb");
  if (!f) return NULL;
  size_t w = fwrite(data, 1, size, f);
  if (fclose(f) != 0 || w != size) return NULL;
  return path;
}

culeace_ctx *fuzz_ctx(void) {
  static culeace_ctx *ctx;
  if (!ctx) {
    culeace_ctx_opts o;
    culeace_ctx_opts_init(&o);
    o.device = CULEACE_DEVICE_CPU;
    o.n_threads = 1;
    if (culeace_ctx_create(&o, &ctx, NULL, 0) != CULEACE_OK) return NULL;
  }
  return ctx;
}
