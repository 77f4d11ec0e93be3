/* mpi_fit.h — `culeace fit` started by an MPI launcher (mpirun, srun): the
 * rows of every layer sharded over the ranks, the fitter states merged
 * exactly on rank 0, which writes the eraser file (docs/CLUSTER.md).
 * Declared here without MPI types, so cmd_fit.c builds either way:
 * mpi_launch.c is always compiled, mpi_fit.c and mpi_reduce.c only with
 * CULEACE_MPI. */
#ifndef CULEACE_CLI_MPI_FIT_H
#define CULEACE_CLI_MPI_FIT_H

#include <stdint.h>

#include "cli/cli.h"

/* The world size an MPI launcher announced through the environment
 * (mpi_launch.c): Open MPI's OMPI_COMM_WORLD_SIZE, PMI_SIZE (MPICH's
 * hydra, srun --mpi=pmi2) or SLURM_STEP_NUM_TASKS (srun); -1 when only
 * PMIX_RANK says a PMIx launcher started us (size unknown); 0 when no
 * launcher did. *which names the variable (may be NULL). */
int64_t mpi_launcher_size(const char **which);

/* "none", or the MPI library this build uses ("Open MPI v4.1.4"), for
 * --version. */
const char *mpi_build_name(void);

/* 1 when `culeace fit` must take the MPI path: started by a launcher with
 * more than one rank (or PMIx's of unknown size, when built with MPI); built
 * without MPI, fit_mpi then refuses rather than have every rank fit all
 * rows and race on the output. 0 (also for one rank): the plain fit, MPI
 * never initialised. */
int fit_mpi_wanted(void);

/* For the commands that are not sharded (score): 1 with a message
 * when started by a launcher with several ranks (each would rewrite the
 * same output), else 0. */
int mpi_refuse_launch(const cli_common *c, const char *command);

/* The sharded fit of FILE's selected layers with options o; every rank
 * returns the same exit code (0, or 1 when any rank failed). Without MPI
 * built in: an error saying so. */
int fit_mpi(const cli_common *c, const char *file, const char *z_path,
            const char *out, const culeace_fit_opts *o);

#endif
