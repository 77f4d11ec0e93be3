/* mpi_apply_inplace.c — `culeace apply --in-place` under mpirun/srun (see
 * mpi_apply_inplace.h): blocks dealt round-robin over the ranks, written in
 * file order through the journal and checkpoint, one writer at a time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_apply_inplace.h"
#include "cli/mpi_reduce.h"

/* Bytes of nex examples: nex * t rows of d elements. */
static size_t block_bytes(const editor *ed, int64_t nex) {
  const culeace_act *a = ed->act;
  return (size_t)nex * (size_t)culeace__act_tokens(a) *
         (size_t)culeace__act_width(a) *
         culeace_dtype_size(culeace__act_dtype(a));
}

/* Opens FILE for one read or write turn. 0, or 1 (message printed). */
static int hold_file(editor *ed, int writable) {
  if (culeace__act_reopen(ed->act, writable))
    return cli_error_ctx(ed->c, ed->ctx, "");
  return 0;
}

/* Moves examples [ex, ex + nex) of layer between FILE and ed->raw, holding
 * the file only for this transfer (a write is flushed and fsynced before
 * the file is let go). 0, or 1 (message printed). */
static int transfer(editor *ed, int64_t layer, int64_t ex, int64_t nex,
                    int write) {
  if (hold_file(ed, write)) return 1;
  culeace_status st =
      write ? culeace__act_write(ed->act, layer, ex, nex, ed->raw)
            : culeace__act_read(ed->act, layer, ex, nex, ed->raw);
  culeace_status rel = culeace__act_release(ed->act);
  return st || rel ? apply_io_fail(ed, layer) : 0;
}

/* Rank 0: if the journal holds the original bytes of the block at start
 * (a killed run was rewriting it), puts them back, as the plain in-place
 * path does before its first block. 0, or 1 (message printed). */
static int restore_journaled(editor *ed, const cli_layer_eraser *items,
                             int64_t m, apply_journal *jr, apply_pos start) {
  if (start.item >= m) return 0;
  size_t len = 0, example = block_bytes(ed, 1);
  size_t cap = block_bytes(ed, ed->ex_per_block);
  if (apply_journal_pending(jr, start, ed->raw, cap, &len) != 1 ||
      len % example != 0)
    return 0;
  return transfer(ed, items[start.item].layer, start.ex,
                  (int64_t)(len / example), 1);
}

/* This rank's write turn for the edited block at pos (nex examples, ed->raw;
 * orig: the same rows as read): journal, write, checkpoint to next. */
static int commit_block(editor *ed, apply_journal *jr, int64_t layer,
                        apply_pos pos, int64_t nex, const void *orig,
                        apply_pos next, int rank) {
  if (apply_journal_save(jr, pos, orig, block_bytes(ed, nex)))
    return cli_error(ed->c, "cannot write the journal %s: %s",
                     jr->journal_path, strerror(errno));
  if (transfer(ed, layer, pos.ex, nex, 1)) return 1;
  static int stalled; /* the test hook, after this rank's first write */
  if (!stalled++) mpi_test_stall(rank);
  if (apply_journal_checkpoint(jr, next))
    return cli_error(ed->c, "cannot write the checkpoint %s: %s",
                     jr->ckpt_path, strerror(errno));
  return 0;
}

/* Every rank's rounds over item i from example ex0 (see the header). */
static int edit_item(mpi_job *P, editor *ed, cli_layer_eraser *items,
                     int64_t i, int64_t ex0, apply_journal *jr, void *orig,
                     int64_t *committed, cli_progress *prog) {
  const cli_common *c = ed->c;
  cli_layer_eraser *it = &items[i];
  const oracle_zmap *zm = ed->zmaps && ed->zmaps[i].zd ? &ed->zmaps[i] : NULL;
  int64_t n = culeace__act_examples(ed->act), t = culeace__act_tokens(ed->act);
  int64_t N = P->w.size, r = P->w.rank, B = ed->ex_per_block;
  int64_t blocks = (n - ex0 + B - 1) / B;
  for (int64_t k0 = 0; k0 < blocks; k0 += N) { /* one round */
    int64_t turns = blocks - k0 < N ? blocks - k0 : N;
    int64_t ex = ex0 + (k0 + r) * B;
    int64_t nex = r < turns ? (n - ex < B ? n - ex : B) : 0;
    ed->written = *committed; /* blocks of the job already in FILE */
    int failed = 0;
    if (nex > 0) {
      failed = transfer(ed, it->layer, ex, nex, 0);
      if (!failed) {
        memcpy(orig, ed->raw, block_bytes(ed, nex));
        failed = apply_edit_block(ed, it, zm, ex, nex);
      }
    }
    if (mpi_job_check(P, c, failed)) return 1;
    for (int64_t w = 0; w < turns; w++) { /* write turns in file order */
      failed = 0;
      if (w == r) {
        apply_pos pos = {i, ex};
        int last = ex + nex == n; /* the next block is the next item's */
        apply_pos next = {last ? i + 1 : i, last ? 0 : ex + nex};
        failed = commit_block(ed, jr, it->layer, pos, nex, orig, next,
                              (int)r);
      }
      if (mpi_job_check(P, c, failed)) return 1;
    }
    *committed += turns;
    cli_progress_add(prog, (double)(nex * t), it->name);
  }
  return 0;
}

int apply_mpi_in_place(mpi_job *P, editor *ed, cli_layer_eraser *items,
                       int64_t m, apply_journal *jr, apply_pos start,
                       cli_progress *prog) {
  const cli_common *c = ed->c;
  /* Nobody holds FILE from here on but the rank whose turn it is. */
  int failed = culeace__act_release(ed->act)
                   ? cli_error_ctx(c, ed->ctx, "")
                   : 0;
  if (mpi_job_check(P, c, failed)) return 1;
  failed = P->w.rank == 0 ? restore_journaled(ed, items, m, jr, start) : 0;
  if (mpi_job_check(P, c, failed)) return 1;
  void *orig = malloc(block_bytes(ed, ed->ex_per_block));
  failed = !orig ? cli_error(c, "out of memory for a block (lower "
                             "--block-rows)")
                 : 0;
  if (mpi_job_check(P, c, failed)) return free(orig), 1;
  int64_t committed = 0;
  for (int64_t i = start.item; i < m; i++)
    if (edit_item(P, ed, items, i, i == start.item ? start.ex : 0, jr, orig,
                  &committed, prog)) {
      free(orig);
      return 1;
    }
  free(orig);
  for (int64_t i = 0; i < m; i++) {
    items[i].edited = mpi_job_sum(P, items[i].edited);
    items[i].skipped = mpi_job_sum(P, items[i].skipped);
  }
  return 0;
}
