/* mpi_apply.c — `culeace apply -o` under mpirun/srun (see mpi_apply.h):
 * every rank edits its own examples, the writes into the temporary copy
 * take turns in rank order. */
#include <stdlib.h>

#include "cli/mpi_apply.h"
#include "cli/mpi_reduce.h"

/* Writes nex examples from ex of layer into tmp (open, write, close). */
static int write_turn(editor *ed, const char *tmp, int64_t layer, int64_t ex,
                      int64_t nex) {
  culeace_act *out = NULL;
  culeace_status st =
      culeace__act_open(ed->ctx, tmp, &ed->c->spec, 1, &out);
  if (!st) st = culeace__act_write(out, layer, ex, nex, ed->raw);
  culeace_status cl = out ? culeace__act_close(out) : CULEACE_OK;
  if (st || cl)
    return cli_error_ctx(ed->c, ed->ctx,
                         culeace__act_dataset_path(ed->act, layer));
  return 0;
}

int apply_mpi_edit(mpi_job *P, editor *ed, cli_layer_eraser *items,
                   int64_t m, const char *tmp, cli_progress *prog) {
  const cli_common *c = ed->c;
  int64_t n = culeace__act_examples(ed->act), t = culeace__act_tokens(ed->act);
  int64_t N = P->w.size, r = P->w.rank, B = ed->ex_per_block;
  int64_t lo = mpi_shard_start(n, r, N), hi = mpi_shard_start(n, r + 1, N);
  int64_t most = (n + N - 1) / N, rounds = (most + B - 1) / B;
  for (int64_t i = 0; i < m; i++) {
    cli_layer_eraser *it = &items[i];
    const oracle_zmap *zm =
        ed->zmaps && ed->zmaps[i].zd ? &ed->zmaps[i] : NULL;
    for (int64_t q = 0; q < rounds; q++) { /* every rank: the same rounds */
      int64_t ex = lo + q * B;
      int64_t nex = ex < hi ? (hi - ex < B ? hi - ex : B) : 0;
      int failed = 0;
      if (nex > 0)
        failed = culeace__act_read(ed->act, it->layer, ex, nex, ed->raw)
                     ? apply_io_fail(ed, it->layer)
                     : apply_edit_block(ed, it, zm, ex, nex);
      if (mpi_job_check(P, c, failed)) return 1;
      for (int64_t w = 0; w < N; w++) { /* write turns in rank order */
        failed = w == r && nex > 0 ? write_turn(ed, tmp, it->layer, ex, nex)
                                   : 0;
        if (mpi_job_check(P, c, failed)) return 1;
      }
      cli_progress_add(prog, (double)(nex * t), it->name);
    }
  }
  for (int64_t i = 0; i < m; i++) {
    items[i].edited = mpi_job_sum(P, items[i].edited);
    items[i].skipped = mpi_job_sum(P, items[i].skipped);
  }
  return 0;
}
