/* fuzz_activations.c — libFuzzer target: the input is an activation dump.
 * Opened as /hidden (a dataset or a layer group), then as /acts with a layer
 * axis and with tokens and a mask; the first rows of each layer read; labels
 * /labels and groups /groups read against it. */
#include <stdlib.h>

#include "fuzzutil.h"
#include "io/activations.h"

static void one_spec(culeace_ctx *ctx, const char *path,
                     const culeace_act_spec *spec) {
  culeace_act *a = NULL;
  if (culeace__act_open(ctx, path, spec, 0, &a) != CULEACE_OK) return;
  int64_t n = culeace__act_examples(a), t = culeace__act_tokens(a);
  int64_t d = culeace__act_width(a), ex = n < 8 ? n : 8;
  size_t es = culeace_dtype_size(culeace__act_dtype(a));
  /* The reader validated (n, t, d) against the file; stay small anyway. */
  if (d <= 1 << 16 && t <= 1 << 10) {
    void *buf = malloc((size_t)(ex * t * d) * es);
    for (int64_t l = 0; buf && l < culeace__act_layers(a) && l < 4; l++)
      culeace__act_read(a, l, 0, ex, buf);
    free(buf);
  }
  culeace_labels lab;
  if (culeace__labels_read_masked(ctx, path, "/labels", n, t, "/hidden",
                                  culeace__act_mask(a), &lab) == CULEACE_OK)
    culeace__labels_free(&lab);
  int64_t *groups = NULL;
  if (culeace__groups_read(ctx, path, "/groups", n, t, &groups) == CULEACE_OK)
    free(groups);
  culeace__act_close(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  culeace_ctx *ctx = fuzz_ctx();
  const char *path = fuzz_file(data, size);
  if (!ctx || !path) return 0;
  culeace_act_spec s;
  culeace__act_spec_init(&s);
  s.x_path = "/hidden";
  one_spec(ctx, path, &s);
  s.x_path = "/acts";
  s.layer_axis = 0;
  one_spec(ctx, path, &s);
  culeace__act_spec_init(&s);
  s.x_path = "/tokens/hidden";
  s.tokens = 1;
  s.mask_path = "/tokens/mask";
  one_spec(ctx, path, &s);
  return 0;
}
