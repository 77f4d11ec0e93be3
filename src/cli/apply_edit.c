/* apply_edit.c — one block of `culeace apply` edited in memory (see
 * apply_edit.h). */
#include <string.h>

#include "cli/apply_edit.h"
#include "core/convert.h"

/* Erases m rows (the block's kept rows ed->kept, flat rows row0 + kept[i])
 * stored contiguously at rows: with the eraser, or for an eraser that takes
 * labels with each row's label. */
static culeace_status erase_rows(editor *ed, const cli_layer_eraser *it,
                                 const oracle_zmap *zm, void *rows, int64_t m,
                                 int64_t row0) {
  culeace_dtype dt = culeace__act_dtype(ed->act);
  int64_t d = culeace__act_width(ed->act);
  if (!zm) return culeace_eraser_apply(ed->ctx, it->e, rows, dt, m, d);
  const culeace_labels *lab = ed->lab;
  return cli_erase_labelled(
      ed->ctx, it->e, zm, lab, rows, dt, m, d,
      lab->continuous ? NULL : lab->classes + row0,
      lab->continuous ? lab->z + row0 * lab->k : NULL, ed->kept, ed->zbuf);
}

int apply_edit_block(editor *ed, cli_layer_eraser *it, const oracle_zmap *zm,
                     int64_t ex0, int64_t nex) {
  culeace_act *a = ed->act;
  int64_t t = culeace__act_tokens(a), d = culeace__act_width(a);
  culeace_dtype dt = culeace__act_dtype(a);
  size_t rb = (size_t)d * culeace_dtype_size(dt);
  const uint8_t *mask = culeace__act_mask(a);
  int64_t n = nex * t, m = 0, col;
  /* The common case, no mask and every value finite, in one parallel scan;
   * otherwise row by row to know which rows to keep. */
  int clean = !mask && culeace__first_nonfinite(ed->raw, dt, n, d, d, &col) < 0;
  for (int64_t i = 0; clean && i < n; i++) ed->kept[m++] = i;
  for (int64_t i = 0; !clean && i < n; i++) {
    int64_t row = ex0 * t + i;
    if (mask && !mask[row]) continue;
    if (culeace__first_nonfinite((char *)ed->raw + (size_t)i * rb, dt, 1, d, d,
                                 &col) >= 0) {
      if (!ed->c->drop_nonfinite)
        return cli_error(ed->c, "%s: %s: row %lld has a non-finite value (NaN "
                         "or Inf) in column %lld; pass --drop-nonfinite to "
                         "leave such rows unedited", ed->file,
                         culeace__act_dataset_path(a, it->layer),
                         (long long)row, (long long)col);
      it->skipped++;
      continue;
    }
    ed->kept[m++] = i;
  }
  culeace_status st;
  if (m == n) {
    st = erase_rows(ed, it, zm, ed->raw, n, ex0 * t);
  } else {
    for (int64_t i = 0; i < m; i++)
      memcpy((char *)ed->compact + (size_t)i * rb,
             (char *)ed->raw + (size_t)ed->kept[i] * rb, rb);
    st = erase_rows(ed, it, zm, ed->compact, m, ex0 * t);
    for (int64_t i = 0; !st && i < m; i++)
      memcpy((char *)ed->raw + (size_t)ed->kept[i] * rb,
             (char *)ed->compact + (size_t)i * rb, rb);
  }
  if (st) return cli_error_ctx(ed->c, ed->ctx, "");
  /* Finite rows in, so a non-finite value out is an overflow of the
   * stored type (float16 tops out at 65504): refuse before writing. */
  int64_t bad = -1;
  if (m == n) { /* every row edited: one parallel scan */
    bad = culeace__first_nonfinite(ed->raw, dt, n, d, d, &col);
  } else {
    for (int64_t i = 0; bad < 0 && i < m; i++)
      if (culeace__first_nonfinite((char *)ed->raw + (size_t)ed->kept[i] * rb,
                                   dt, 1, d, d, &col) >= 0)
        bad = ed->kept[i];
  }
  if (bad >= 0)
    return cli_error(ed->c, "%s: %s: the erased row %lld overflows %s in "
                     "column %lld (the eraser does not suit this data, or "
                     "the data needs a wider type); this block was not "
                     "written%s", ed->file,
                     culeace__act_dataset_path(a, it->layer),
                     (long long)(ex0 * t + bad), culeace_dtype_name(dt),
                     (long long)col,
                     ed->in_place && ed->written
                         ? "; earlier blocks are already erased (the "
                           "checkpoint keeps the position)"
                         : "");
  it->edited += m;
  return 0;
}

int apply_io_fail(editor *ed, int64_t layer) {
  const char *path = culeace__act_dataset_path(ed->act, layer);
  if (ed->in_place)
    return cli_error_ctx(ed->c, ed->ctx, path);
  /* -o: the temporary copy goes, OUT is not touched. */
  return cli_error(ed->c, "%s: %s (nothing was written to the output)", path,
                   culeace_ctx_last_error(ed->ctx));
}

