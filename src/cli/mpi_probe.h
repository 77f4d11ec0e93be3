/* mpi_probe.h — `culeace probe` started by an MPI launcher (mpirun, srun):
 * layer-parallel, each rank probes whole layers (layer i on rank i mod N)
 * and rank 0 gathers the results and writes every output (docs/CLUSTER.md).
 * The job (mpi_job.h) has PROBE_MPI_AGREEMENTS counted points: after the
 * setup (every rank reads the labels and draws the same folds and control
 * labels), after the layers (inside probe_mpi_run_layers) and after rank
 * 0's outputs (mpi_job_end). MPI builds: mpi_probe.c; stubs in
 * mpi_launch.c. */
#ifndef CULEACE_CLI_MPI_PROBE_H
#define CULEACE_CLI_MPI_PROBE_H

#include <stdint.h>

#include "cli/mpi_job.h"
#include "cli/probe.h"

enum { PROBE_MPI_AGREEMENTS = 3 };

/* Layers of the m this rank probes. */
int64_t probe_mpi_my_layers(const mpi_job *P, int64_t m);
/* Probes this rank's layers into res (J->keep_final: their final probes
 * too), agrees (point 2), and sends them to rank 0, which then holds all m
 * results (means, std and selectivity computed). 0 ok, 1 on every rank when
 * any failed. */
int probe_mpi_run_layers(mpi_job *P, probe_job *J, const int64_t *layers,
                         int64_t m, probe_layer_result *res);

#endif
