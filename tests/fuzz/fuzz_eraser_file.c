/* fuzz_eraser_file.c — libFuzzer target: the input is an eraser file. It is
 * opened, each of its first 8 erasers loaded and, when small enough, applied
 * to a few float32 rows. Anything but a clean status or a clean error is a
 * finding (crash, sanitizer report, leak, hang). */
#include <stdlib.h>

#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  culeace_ctx *ctx = fuzz_ctx();
  const char *path = fuzz_file(data, size);
  if (!ctx || !path) return 0;
  culeace_eraser_file *f = NULL;
  if (culeace_eraser_file_open(ctx, path, &f) != CULEACE_OK) return 0;
  int64_t count = culeace_eraser_file_count(f);
  for (int64_t i = 0; i < count && i < 8; i++) {
    culeace_eraser *e = NULL;
    culeace_eraser_meta meta;
    if (culeace_eraser_file_load(f, i, &e, &meta) != CULEACE_OK) continue;
    culeace_eraser_info info;
    if (culeace_eraser_info_get(e, &info) == CULEACE_OK && info.d > 0 &&
        info.d <= 4096) {
      float *rows = calloc((size_t)(4 * info.d), sizeof *rows);
      if (rows) {
        for (int64_t j = 0; j < 4 * info.d; j++) rows[j] = (float)(j % 7) - 3;
        culeace_eraser_apply(ctx, e, rows, CULEACE_F32, 4, info.d);
        free(rows);
      }
    }
    culeace_eraser_free(e);
  }
  culeace_eraser_file_free(f);
  return 0;
}
