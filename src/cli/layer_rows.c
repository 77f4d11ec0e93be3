/* layer_rows.c — reads one layer's kept, labelled rows into memory (x (n,
 * d) contiguous, float32 or the file's 2-byte type, with their flat row ids
 * and classes), for `culeace probe` and `culeace fit --method
 * inlp|rlace`. */
#include <stdlib.h>
#include <string.h>

#include "cli/layer_rows.h"
#include "core/bigmem.h"
#include "core/convert.h"
#include "core/ctx.h"

void layer_rows_free(layer_rows *L) {
  free(L->x);
  free(L->row);
  free(L->y);
  L->x = NULL;
  L->row = NULL;
  L->y = NULL;
}

int layer_rows_read(const cli_common *c, culeace_ctx *ctx, culeace_act *act,
                    const char *file, int64_t l, const culeace_labels *lab,
                    int64_t N, layer_rows *L, int64_t *dropped) {
  return layer_rows_read_range(c, ctx, act, file, l, lab, N, 0,
                               culeace__act_examples(act), 0, L, dropped);
}

void layer_rows_f32(const layer_rows *L, int64_t d, int64_t i, int64_t cnt,
                    float *out) {
  size_t es = culeace_dtype_size(L->xt);
  culeace__to_f32((const char *)L->x + (size_t)(i * d) * es, L->xt, cnt * d,
                  out);
}

/* Sizes and allocates L for the labelled rows of examples [ex0, ex1). */
static int rows_alloc(const cli_common *c, culeace_act *act, int64_t l,
                      const culeace_labels *lab, int64_t N, int64_t ex0,
                      int64_t ex1, int keep_half, layer_rows *L) {
  int64_t d = culeace__act_width(act), t = culeace__act_tokens(act);
  culeace_dtype dt = culeace__act_dtype(act);
  memset(L, 0, sizeof *L);
  L->xt = keep_half && (dt == CULEACE_F16 || dt == CULEACE_BF16) ? dt
                                                                  : CULEACE_F32;
  size_t es = culeace_dtype_size(L->xt);
  int64_t r1 = ex1 * t < N ? ex1 * t : N;
  for (int64_t i = ex0 * t; i < r1; i++) L->cap += lab->classes[i] >= 0;
  size_t bytes;
  if (!culeace__mul_size((size_t)L->cap, (size_t)d * es, &bytes))
    return cli_error(c, "%s: %lld rows x %lld is too large to hold in memory",
                     culeace__act_dataset_path(act, l), (long long)L->cap,
                     (long long)d);
  L->x = culeace__big_alloc(bytes);
  L->row = malloc((size_t)(L->cap ? L->cap : 1) * sizeof *L->row);
  L->y = malloc((size_t)(L->cap ? L->cap : 1) * sizeof *L->y);
  if (!L->x || !L->row || !L->y) {
    layer_rows_free(L);
    return cli_error(c, "out of memory holding the %lld rows x %lld of layer "
                     "%s as %s (%.1f GiB); use fewer rows",
                     (long long)L->cap, (long long)d,
                     culeace__act_layer_name(act, l),
                     culeace_dtype_name(L->xt), (double)bytes / 1073741824.0);
  }
  return 0;
}

/* Appends the current block of rs (its labelled, kept rows) to L; the
 * block may already sit at L's end (cli_rows_next_into). 0, or 1
 * (printed: a non-finite row without --drop-nonfinite). */
static int rows_absorb(const cli_common *c, culeace_act *act, cli_rows *rs,
                       layer_rows *L) {
  int64_t d = culeace__act_width(act);
  culeace_dtype dt = culeace__act_dtype(act);
  size_t es = culeace_dtype_size(L->xt);
  if (rs->n_rows == 0) return 0;
  if (!c->drop_nonfinite &&
      culeace__first_nonfinite(rs->rows, dt, rs->n_rows, d, d, NULL) >= 0)
    return cli_rows_nonfinite_error(rs);
  for (int64_t i = 0; i < rs->n_rows; i++) {
    if (rs->classes[i] < 0) continue; /* not a used row */
    if (L->n >= L->cap)
      return cli_error(c, "internal error: more kept rows than labelled "
                       "rows");
    const char *src = (const char *)rs->rows +
                      (size_t)i * (size_t)d * culeace_dtype_size(dt);
    char *dst = (char *)L->x + (size_t)L->n * (size_t)d * es;
    if (L->xt != dt) culeace__to_f32(src, dt, d, (float *)dst);
    else if (dst != src) memmove(dst, src, (size_t)d * es); /* in place */
    L->row[L->n] = rs->row_ids[i];
    L->y[L->n] = rs->classes[i];
    L->n++;
  }
  return 0;
}

int layer_rows_read_range(const cli_common *c, culeace_ctx *ctx,
                          culeace_act *act, const char *file, int64_t l,
                          const culeace_labels *lab, int64_t N, int64_t ex0,
                          int64_t ex1, int keep_half, layer_rows *L,
                          int64_t *dropped) {
  *dropped = 0;
  if (rows_alloc(c, act, l, lab, N, ex0, ex1, keep_half, L)) return 1;
  cli_rows rs;
  if (cli_rows_open(&rs, c, ctx, act, file, l, lab)) {
    layer_rows_free(L);
    return 1;
  }
  if (cli_rows_range(&rs, ex0, ex1)) {
    cli_rows_close(&rs);
    layer_rows_free(L);
    return 1;
  }
  /* blocks go straight to L's end when they fit there and need no
   * conversion */
  size_t rb = (size_t)culeace__act_width(act) * culeace_dtype_size(L->xt);
  int same = L->xt == culeace__act_dtype(act), more;
  while ((more = same ? cli_rows_next_into(&rs, (char *)L->x + L->n * rb,
                                           L->cap - L->n)
                      : cli_rows_next(&rs)) == 1)
    if (rows_absorb(c, act, &rs, L)) {
      more = -1;
      break;
    }
  *dropped = rs.dropped;
  cli_rows_close(&rs);
  if (more < 0) {
    layer_rows_free(L);
    return 1;
  }
  return 0;
}

int layer_rows_read_many(const cli_common *c, culeace_ctx *ctx,
                         culeace_act *act, const char *file,
                         const int64_t *layers, int64_t m,
                         const culeace_labels *lab, int64_t N, int keep_half,
                         layer_rows *L, int64_t *dropped) {
  int64_t n = culeace__act_examples(act);
  /* blocks of one row of chunks, aligned with them: the dataset's chunk
   * cache holds a row of chunks, so every layer after the first reads the
   * block from the cache */
  cli_common cc = *c;
  cc.block_rows = cli_group_block_rows(c, act, m);
  c = &cc;
  cli_rows *rs = calloc((size_t)(m ? m : 1), sizeof *rs);
  int64_t opened = 0;
  int failed = !rs ? cli_error(c, "out of memory") : 0;
  for (int64_t j = 0; j < m; j++) memset(&L[j], 0, sizeof L[j]);
  for (int64_t j = 0; !failed && j < m; j++) {
    dropped[j] = 0;
    failed = rows_alloc(c, act, layers[j], lab, N, 0, n, keep_half, &L[j]) ||
             cli_rows_open(&rs[j], c, ctx, act, file, layers[j], lab);
    if (!failed) opened = j + 1;
  }
  /* block by block, every layer's rows of that block: from a stacked
   * dataset whose chunks hold all layers, each chunk is decompressed once
   * (it stays in the dataset's chunk cache) instead of once per layer */
  for (int any = 1; !failed && any;) {
    any = 0;
    for (int64_t j = 0; !failed && j < m; j++) {
      int more = cli_rows_next(&rs[j]);
      if (more < 0 || (more == 1 && rows_absorb(c, act, &rs[j], &L[j])))
        failed = 1;
      any |= more == 1;
    }
  }
  for (int64_t j = 0; j < opened; j++) {
    dropped[j] = rs[j].dropped;
    cli_rows_close(&rs[j]);
  }
  free(rs);
  if (failed)
    for (int64_t j = 0; j < m; j++) layer_rows_free(&L[j]);
  return failed;
}
