/* mpi_reduce.c — what the MPI drivers (mpi_fit.c, mpi_probe.c) share: the
 * world and each rank's context, agreeing on failure after each step (so
 * every rank exits the same way when one rank could not read its rows),
 * and the binomial-tree merge of fitter states into rank 0 (ceil(log2 N)
 * rounds; at most that many states reach rank 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/mpi_reduce.h"

/* Messages of at most 2^28 doubles (2 GiB): MPI counts are ints. */
#define CHUNK ((size_t)1 << 28)

void mpi_world_init(mpi_world *w) {
  MPI_Init(NULL, NULL);
  w->comm = MPI_COMM_WORLD;
  MPI_Comm_rank(w->comm, &w->rank);
  MPI_Comm_size(w->comm, &w->size);
  MPI_Comm node;
  MPI_Comm_split_type(w->comm, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL,
                      &node);
  MPI_Comm_rank(node, &w->local_rank);
  MPI_Comm_free(&node);
}

culeace_ctx *mpi_open_ctx(const cli_common *c, const mpi_world *w) {
  int is_auto = !strcmp(c->device, "auto");
  int is_cuda = !strcmp(c->device, "cuda");
  int gpus = (is_auto || is_cuda) ? culeace_cuda_device_count() : 0;
  if (gpus <= 0) return cli_open_ctx(c);
  culeace_ctx_opts o;
  culeace_ctx_opts_init(&o);
  o.n_threads = c->threads;
  o.device = is_auto ? CULEACE_DEVICE_AUTO : CULEACE_DEVICE_CUDA;
  o.device_index = w->local_rank % gpus;
  culeace_ctx *ctx = NULL;
  char err[512] = "";
  culeace_status st = culeace_ctx_create(&o, &ctx, err, sizeof err);
  if (st) {
    cli_error(c, "%s", err[0] ? err : culeace_strerror(st));
    return NULL;
  }
  if (!c->quiet && !c->json)
    fprintf(stderr, "%s: %s (node-local rank %d of this node's ranks, %d "
            "GPUs)\n", c->prog, culeace_ctx_device_note(ctx), w->local_rank,
            gpus);
  return ctx;
}

void mpi_test_stall(int rank) {
  const char *v = getenv("CULEACE_TEST_MPI_STALL");
  char *end;
  if (!v || strtol(v, &end, 10) != rank || *end != ':') return;
  FILE *fp = fopen(end + 1, "w");
  if (fp) {
    fprintf(fp, "%ld\n", (long)getpid());
    fclose(fp);
  }
  for (int i = 0; i < 1200; i++) usleep(100000);
}

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
