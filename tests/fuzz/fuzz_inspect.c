/* fuzz_inspect.c — libFuzzer target: `culeace inspect` on the input file
 * (walks every object: groups, datasets, types, layouts, filters, and reads
 * small integer datasets to guess labels), as JSON into /dev/null. */
#include <stdio.h>

#include "fuzzutil.h"
#include "io/activations.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  culeace_ctx *ctx = fuzz_ctx();
  const char *path = fuzz_file(data, size);
  static FILE *devnull;
  if (!devnull) devnull = fopen("/dev/null", "w");
  if (!ctx || !path || !devnull) return 0;
  culeace__inspect(ctx, path, 1, devnull);
  return 0;
}
