/* rows.c — the row stream: whole examples read in blocks, masked tokens
 * dropped, non-finite rows refused (naming the row) or skipped, labels
 * carried along with the rows that are kept. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/convert.h"
#include "core/ctx.h"

int cli_rows_open(cli_rows *s, const cli_common *c, culeace_ctx *ctx,
                  culeace_act *act, const char *file, int64_t layer,
                  const culeace_labels *labels) {
  memset(s, 0, sizeof *s);
  s->c = c;
  s->ctx = ctx;
  s->act = act;
  s->file = file;
  s->layer = layer;
  s->labels = labels;
  s->ex_per_block = cli_examples_per_block(c, act);
  int64_t n = culeace__act_examples(act);
  s->end_ex = n;
  if (s->ex_per_block > n) s->ex_per_block = n;
  int64_t t = culeace__act_tokens(act), d = culeace__act_width(act);
  size_t es = culeace_dtype_size(culeace__act_dtype(act));
  size_t rows = (size_t)s->ex_per_block * (size_t)t, bytes;
  if (!culeace__mul_size(rows, (size_t)d * es, &bytes))
    return cli_error(c, "block of %zu rows x %lld is too large", rows,
                     (long long)d);
  /* The block handed to the library: page-locked on a GPU context. */
  s->rows = s->rows_buf = culeace_host_alloc(ctx, bytes ? bytes : 1);
  s->row_ids = malloc(rows * sizeof *s->row_ids);
  if (labels && !labels->continuous)
    s->classes = malloc(rows * sizeof *s->classes);
  if (labels && labels->continuous)
    s->z = malloc(rows * (size_t)labels->k * sizeof *s->z);
  if (!s->rows_buf || !s->row_ids ||
      (labels && !s->classes && !s->z)) {
    cli_rows_close(s);
    return cli_error(c, "out of memory for a block of %zu rows (lower "
                     "--block-rows)", rows);
  }
  return 0;
}

void cli_rows_close(cli_rows *s) {
  culeace_host_free(s->ctx, s->rows_buf);
  free(s->row_ids);
  free(s->classes);
  free(s->z);
  s->rows = s->rows_buf = NULL;
  s->row_ids = NULL;
  s->classes = NULL;
  s->z = NULL;
}

/* Prints the message for the first non-finite kept row of the block. */
static int report_nonfinite(cli_rows *s, int64_t k, int64_t col) {
  culeace_act *a = s->act;
  int64_t t = culeace__act_tokens(a), row = s->row_ids[k];
  const char *ds = culeace__act_dataset_path(a, s->layer);
  if (t > 1)
    return cli_error(s->c, "%s: %s: row %lld (example %lld, token %lld) has a "
                     "non-finite value (NaN or Inf) in column %lld; pass "
                     "--drop-nonfinite to skip such rows", s->file, ds,
                     (long long)row, (long long)(row / t), (long long)(row % t),
                     (long long)col);
  return cli_error(s->c, "%s: %s: row %lld has a non-finite value (NaN or "
                   "Inf) in column %lld; pass --drop-nonfinite to skip such "
                   "rows", s->file, ds, (long long)row, (long long)col);
}

int cli_rows_nonfinite_error(cli_rows *s) {
  culeace_act *a = s->act;
  int64_t d = culeace__act_width(a), col = 0;
  int64_t k = culeace__first_nonfinite(s->rows, culeace__act_dtype(a),
                                       s->n_rows, d, d, &col);
  if (k < 0) return cli_error_ctx(s->c, s->ctx, "");
  return report_nonfinite(s, k, col);
}

int cli_rows_range(cli_rows *s, int64_t ex0, int64_t ex1) {
  if (ex0 < 0 || ex1 < ex0 || ex1 > culeace__act_examples(s->act))
    return cli_error(s->c, "row range [%lld, %lld) is outside the %lld "
                     "examples", (long long)ex0, (long long)ex1,
                     (long long)culeace__act_examples(s->act));
  s->next_ex = ex0;
  s->end_ex = ex1;
  return 0;
}

/* The next block read into buf, its kept rows compacted in place (they
 * only move towards its start). */
static int next_block(cli_rows *s, void *buf) {
  culeace_act *a = s->act;
  int64_t n = s->end_ex, t = culeace__act_tokens(a),
          d = culeace__act_width(a);
  culeace_dtype dt = culeace__act_dtype(a);
  size_t rb = (size_t)d * culeace_dtype_size(dt);
  const uint8_t *mask = culeace__act_mask(a);
  s->n_rows = 0;
  if (s->next_ex >= n) return 0;
  int64_t nex = n - s->next_ex < s->ex_per_block ? n - s->next_ex
                                                  : s->ex_per_block;
  s->rows = buf;
  if (culeace__act_read(a, s->layer, s->next_ex, nex, buf) != CULEACE_OK) {
    cli_error_ctx(s->c, s->ctx, "");
    return -1;
  }
  int64_t first = s->next_ex * t;
  s->raw_rows = nex * t;
  for (int64_t i = 0; i < nex * t; i++) {
    int64_t row = first + i;
    if (mask && !mask[row]) {
      s->masked++;
      continue;
    }
    const char *src = (const char *)buf + (size_t)i * rb;
    /* Without --drop-nonfinite the fitter's own pass finds bad rows (see
     * cli_rows_nonfinite_error); with it, bad rows are skipped here. */
    if (s->c->drop_nonfinite &&
        culeace__first_nonfinite(src, dt, 1, d, d, NULL) >= 0) {
      s->dropped++;
      continue;
    }
    int64_t k = s->n_rows++;
    char *dst = (char *)buf + (size_t)k * rb;
    if (dst != src) memmove(dst, src, rb);
    s->row_ids[k] = row;
    if (s->classes) s->classes[k] = s->labels->classes[row];
    if (s->z)
      memcpy(s->z + k * s->labels->k, s->labels->z + row * s->labels->k,
             (size_t)s->labels->k * sizeof *s->z);
  }
  s->next_ex += nex;
  return 1;
}

int cli_rows_next(cli_rows *s) { return next_block(s, s->rows_buf); }

int cli_rows_next_into(cli_rows *s, void *dst, int64_t room) {
  int64_t left = s->end_ex - s->next_ex;
  int64_t rows = (left < s->ex_per_block ? left : s->ex_per_block) *
                 culeace__act_tokens(s->act);
  return next_block(s, rows <= room ? dst : s->rows_buf);
}
