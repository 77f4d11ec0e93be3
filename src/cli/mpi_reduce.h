/* mpi_reduce.h — what the MPI drivers share (mpi_reduce.c): the world,
 * each rank's context, every rank agreeing on failure, and the fitter
 * states of all ranks merged into rank 0's along a fixed binomial tree. MPI
 * builds only. */
#ifndef CULEACE_CLI_MPI_REDUCE_H
#define CULEACE_CLI_MPI_REDUCE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/cli.h"
#include "culeace.h"

typedef struct {
  MPI_Comm comm;  /* MPI_COMM_WORLD */
  int rank, size;
  int local_rank; /* rank among the ranks of this node (shared memory) */
} mpi_world;

/* A command's MPI job (mpi_job.h): the world and the counted agreement
 * points passed so far. */
struct mpi_job {
  mpi_world w;
  int stage, agreements;
};

/* Rank r's first example of N shards of n examples: floor(n r / N) (rank
 * r holds [start(r), start(r + 1))). */
static inline int64_t mpi_shard_start(int64_t n, int64_t r, int64_t N) {
  return (int64_t)((__int128)n * r / N);
}

/* MPI_Init and the world's size, rank and node-local rank. */
void mpi_world_init(mpi_world *w);

/* This rank's context: with --device auto or cuda (no index) and GPUs
 * present, the node-local rank modulo their count picks its GPU; else as
 * cli_open_ctx. NULL (message printed) on failure. */
culeace_ctx *mpi_open_ctx(const cli_common *c, const mpi_world *w);

/* Collective: 1 on every rank when any rank passes failed != 0, else 0;
 * *first (may be NULL) gets the lowest failing rank. */
int mpi_any_failed(const mpi_world *w, int failed, int *first);

/* Test hook (tests/py/test_mpi.py): with CULEACE_TEST_MPI_STALL="R:PIDFILE"
 * rank R writes its pid to PIDFILE and sleeps 120 s, so that a test can
 * kill it mid-job; other ranks return at once. fit stalls after its rows
 * of the first layer, apply --in-place after writing its first block
 * (before the checkpoint moves past it), probe --split rows after the
 * ranks have shared the first layer's row ids. */
void mpi_test_stall(int rank);

/* Collective: merges every rank's fitter state into rank 0's fitter f
 * along a binomial tree: at step s = 1, 2, 4, ..., rank r with r mod 2s = s
 * sends its (merged) state to r - s and is done; rank r with r mod 2s = 0
 * receives from r + s (if any) and merges. Rank 0's result is the same
 * for the same size and data: ((s0 + s1) + (s2 + s3)) + ... buf and tmp:
 * count doubles each (culeace_fitter_state_size). Returns 0, or 1 with
 * the message in err (a local failure: every send and receive still
 * happens, and the caller agrees on it with mpi_any_failed). */
int mpi_merge_states(const mpi_world *w, culeace_ctx *ctx,
                     culeace_fitter *f, double *buf, double *tmp,
                     size_t count, char *err, size_t err_len);

#endif
