/* mpi_job.h — a CLI command run by an MPI launcher (mpirun, srun) as one
 * job of N ranks: MPI started, each rank's context, and agreement on
 * failure at fixed points so that one rank's error ends every rank the same
 * way with no output left (mpi_job.c; without MPI built in, the stubs in
 * mpi_launch.c refuse to run under a launcher). Declared without MPI types
 * so the commands build either way.
 *
 * A command declares how many counted agreement points it has; every rank
 * passes each of them in order (mpi_job_agree), and one that fails before
 * the last passes the rest in mpi_job_end, so no rank is left blocked in a
 * collective. Between counted points, loops whose iteration count is the
 * same on every rank may agree with mpi_job_check. */
#ifndef CULEACE_CLI_MPI_JOB_H
#define CULEACE_CLI_MPI_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "cli/cli.h"

typedef struct mpi_job mpi_job;

/* Starts MPI: *out, c->prog decorated with the rank, c->quiet on ranks
 * other than 0. 0, or 1 (printed) when this build has no MPI (*out NULL:
 * `refusal` says what every rank would do) or the launcher's rank count
 * disagrees with MPI's (*out set: end it with mpi_job_end). */
int mpi_job_begin(cli_common *c, int agreements, const char *refusal,
                  mpi_job **out);
/* This rank's context (a GPU per node-local rank when there are GPUs). */
culeace_ctx *mpi_job_ctx(mpi_job *J, const cli_common *c);
int mpi_job_rank(const mpi_job *J);
int mpi_job_size(const mpi_job *J);
/* A counted agreement point: 1 on every rank when any rank failed (rank 0
 * names the lowest failing rank when it did not fail itself). */
int mpi_job_agree(mpi_job *J, const cli_common *c, int failed);
/* The same, not counted (for loops every rank runs alike). */
int mpi_job_check(mpi_job *J, const cli_common *c, int failed);
/* Rank 0's string buf (len bytes) on every rank. */
void mpi_job_bcast_str(mpi_job *J, char *buf, size_t len);
/* Rank 0's count int64s v on every rank. */
void mpi_job_bcast_i64(mpi_job *J, int64_t *v, int count);
/* The sum of v over the ranks, on every rank. */
int64_t mpi_job_sum(mpi_job *J, int64_t v);
/* Passes the remaining counted points with this rank's rc, finalises MPI
 * and frees J; the job's exit code, the same on every rank. */
int mpi_job_end(mpi_job *J, const cli_common *c, int rc);

#endif
