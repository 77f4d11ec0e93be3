/* mpi_job.c — a CLI command run as one MPI job (see mpi_job.h): MPI
 * started and finalised, each rank's context, the counted agreement points
 * and the small collectives the commands need. MPI builds only. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_fit.h"
#include "cli/mpi_job.h"
#include "cli/mpi_reduce.h"

static char prog_name[96]; /* c->prog, which outlives the job */

int mpi_job_begin(cli_common *c, int agreements, const char *refusal,
                  mpi_job **out) {
  (void)refusal; /* MPI is built in: nothing to refuse */
  mpi_job *J = calloc(1, sizeof *J);
  *out = NULL;
  if (!J) return cli_error(c, "out of memory");
  mpi_world_init(&J->w);
  J->agreements = agreements;
  snprintf(prog_name, sizeof prog_name, "%s (rank %d of %d)", c->prog,
           J->w.rank, J->w.size);
  c->prog = prog_name;
  if (J->w.rank != 0) c->quiet = 1; /* progress and notes on rank 0 only */
  const char *which = NULL;
  int64_t launched = mpi_launcher_size(&which);
  *out = J;
  if (launched > 0 && launched != J->w.size)
    return cli_error(c, "the launcher started %lld ranks (%s) but MPI sees "
                     "%d: under srun, pass the MPI plugin your MPI was built "
                     "for (srun --mpi=pmix; srun --mpi=list)",
                     (long long)launched, which, J->w.size);
  return 0;
}

culeace_ctx *mpi_job_ctx(mpi_job *J, const cli_common *c) {
  return mpi_open_ctx(c, &J->w);
}

int mpi_job_rank(const mpi_job *J) { return J->w.rank; }
int mpi_job_size(const mpi_job *J) { return J->w.size; }

int mpi_job_check(mpi_job *J, const cli_common *c, int failed) {
  int first = J->w.size;
  int any = mpi_any_failed(&J->w, failed, &first);
  if (any && !failed && J->w.rank == 0)
    cli_error(c, "rank %d of %d failed (its message above); nothing written",
              first, J->w.size);
  return any;
}

int mpi_job_agree(mpi_job *J, const cli_common *c, int failed) {
  J->stage++;
  return mpi_job_check(J, c, failed);
}

void mpi_job_bcast_str(mpi_job *J, char *buf, size_t len) {
  MPI_Bcast(buf, (int)len, MPI_CHAR, 0, J->w.comm);
  buf[len - 1] = 0;
}

void mpi_job_bcast_i64(mpi_job *J, int64_t *v, int count) {
  MPI_Bcast(v, count, MPI_INT64_T, 0, J->w.comm);
}

int64_t mpi_job_sum(mpi_job *J, int64_t v) {
  long long in = (long long)v, out = 0;
  MPI_Allreduce(&in, &out, 1, MPI_LONG_LONG, MPI_SUM, J->w.comm);
  return (int64_t)out;
}

int mpi_job_end(mpi_job *J, const cli_common *c, int rc) {
  int failed = rc != 0, any = 0;
  while (J->stage < J->agreements) any |= mpi_job_agree(J, c, failed || any);
  fflush(stdout);
  fflush(stderr);
  MPI_Finalize();
  free(J);
  return any || failed ? 1 : 0;
}
