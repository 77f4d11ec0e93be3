/* mpi_probe.h — `culeace probe` started by an MPI launcher (mpirun, srun):
 * layer-parallel, each rank probes whole layers (layer i on rank i mod N)
 * and rank 0 gathers the results and writes every output (docs/CLUSTER.md).
 * Declared without MPI types so cmd_probe.c builds either way: mpi_probe.c
 * with CULEACE_MPI, stubs in mpi_launch.c without.
 *
 * Every rank runs the same setup (labels, folds, control labels: the same
 * seeds give the same draws everywhere) and passes the same three
 * agreement points: after setup (probe_mpi_agree), after its layers
 * (inside probe_mpi_run_layers) and after rank 0's outputs
 * (probe_mpi_end). A rank that fails anywhere still passes the remaining
 * points (probe_mpi_end does it), so every rank exits 1 with the failing
 * rank's message and no output. */
#ifndef CULEACE_CLI_MPI_PROBE_H
#define CULEACE_CLI_MPI_PROBE_H

#include <stdint.h>

#include "cli/probe.h"

typedef struct probe_mpi probe_mpi;

/* Starts MPI (fit_mpi_wanted() said so): *out, this rank's decorated
 * program name in c->prog and, on ranks other than 0, c->quiet. 0, or 1
 * (printed; *out NULL) when this build has no MPI or the launcher's rank
 * count disagrees with MPI's. */
int probe_mpi_begin(cli_common *c, probe_mpi **out);
/* This rank's context (a GPU per node-local rank when there are GPUs). */
culeace_ctx *probe_mpi_ctx(probe_mpi *P, const cli_common *c);
int probe_mpi_rank(const probe_mpi *P);
int probe_mpi_size(const probe_mpi *P);
/* Layers of the m this rank probes. */
int64_t probe_mpi_my_layers(const probe_mpi *P, int64_t m);
/* Agreement point 1 (after setup): 1 on every rank when any rank failed
 * (rank 0 names the failing rank when it did not fail itself). */
int probe_mpi_agree(probe_mpi *P, const cli_common *c, int failed);
/* Probes this rank's layers into res (J->keep_final: their final probes
 * too), agrees (point 2), and sends them to rank 0, which then holds all m
 * results (means, std and selectivity computed). 0 ok, 1 on every rank when
 * any failed. */
int probe_mpi_run_layers(probe_mpi *P, probe_job *J, const int64_t *layers,
                         int64_t m, probe_layer_result *res);
/* Passes the remaining agreement points with this rank's rc (rank 0's
 * outputs at point 3), finalises MPI and frees P; returns the job's exit
 * code, the same on every rank. */
int probe_mpi_end(probe_mpi *P, const cli_common *c, int rc);

#endif
