/* mpi_reduce.c — the collective steps of the sharded fit: agreeing on
 * failure after each step (so every rank exits the same way when one rank
 * could not read its rows), and the binomial-tree merge of fitter states
 * into rank 0 (ceil(log2 N) rounds; at most that many states reach rank 0). */
#include <stdio.h>

#include "cli/mpi_reduce.h"

/* Messages of at most 2^28 doubles (2 GiB): MPI counts are ints. */
#define CHUNK ((size_t)1 << 28)

int mpi_any_failed(const mpi_world *w, int failed, int *first) {
  int mine = failed ? w->rank : w->size, low = w->size;
  MPI_Allreduce(&mine, &low, 1, MPI_INT, MPI_MIN, w->comm);
  if (first) *first = low;
  return low < w->size;
}

static void send_all(const mpi_world *w, const double *buf, size_t count,
                     int to) {
  for (size_t at = 0; at < count; at += CHUNK) {
    size_t n = count - at < CHUNK ? count - at : CHUNK;
    MPI_Send(buf + at, (int)n, MPI_DOUBLE, to, 0, w->comm);
  }
}

static void recv_all(const mpi_world *w, double *buf, size_t count,
                     int from) {
  for (size_t at = 0; at < count; at += CHUNK) {
    size_t n = count - at < CHUNK ? count - at : CHUNK;
    MPI_Recv(buf + at, (int)n, MPI_DOUBLE, from, 0, w->comm,
             MPI_STATUS_IGNORE);
  }
}

int mpi_merge_states(const mpi_world *w, culeace_ctx *ctx,
                     culeace_fitter *f, double *buf, double *tmp,
                     size_t count, char *err, size_t err_len) {
  int failed = 0;
  for (int step = 1; step < w->size; step *= 2) {
    if (w->rank % (2 * step) == step) { /* send the merged state; done */
      if (!failed && culeace_fitter_export(f, buf)) {
        snprintf(err, err_len, "exporting the fitter state: %s",
                 culeace_ctx_last_error(ctx));
        failed = 1;
      }
      send_all(w, buf, count, w->rank - step);
      break;
    }
    if (w->rank + step < w->size) { /* r mod 2 step == 0: receive, merge */
      recv_all(w, tmp, count, w->rank + step);
      if (!failed && culeace_fitter_merge(f, tmp, count)) {
        snprintf(err, err_len, "merging the state of rank %d: %s",
                 w->rank + step, culeace_ctx_last_error(ctx));
        failed = 1;
      }
    }
  }
  return failed;
}
