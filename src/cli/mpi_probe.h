/* mpi_probe.h — `culeace probe` started by an MPI launcher (mpirun, srun),
 * split one of two ways (docs/CLUSTER.md): by layers (each rank probes
 * whole layers, layer i on rank i mod N, and sends rank 0 the results) or
 * by rows (every rank probes every layer on its share of the examples; the
 * fits sum their losses and gradients over the ranks at every L-BFGS step,
 * and rank 0 gathers the held-out predictions). Rank 0 writes every
 * output.
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
#include "core/probe.h"

enum { PROBE_MPI_AGREEMENTS = 3 };

/* Layers of the m this rank probes. */
int64_t probe_mpi_my_layers(const mpi_job *P, int64_t m);
/* Probes this rank's layers into res (J->keep_final: their final probes
 * too), agrees (point 2), and sends them to rank 0, which then holds all m
 * results (means, std and selectivity computed). 0 ok, 1 on every rank when
 * any failed. */
int probe_mpi_run_layers(mpi_job *P, probe_job *J, const int64_t *layers,
                         int64_t m, probe_layer_result *res);

/* ---- --split rows ---------------------------------------------------------
 * Every collective of a layer starts with the ranks agreeing whether one
 * failed (mpi_job_check), and does nothing more when one did. A rank that
 * fails on its own (a read error, out of memory) therefore enters no
 * further collective of the layer; probe_mpi_run_rows agrees once more
 * after each layer for the ranks that have not yet heard of a failure, so
 * every rank leaves the layer having made the same calls. */
typedef struct probe_split probe_split;

/* The split of `examples` examples over the job's ranks: rank r holds
 * examples [floor(r n / N), floor((r + 1) n / N)). NULL: out of memory
 * (printed). */
probe_split *probe_split_create(mpi_job *P, const cli_common *c,
                                int64_t examples);
void probe_split_free(probe_split *S);
void probe_split_examples(const probe_split *S, int64_t *ex0, int64_t *ex1);
int probe_split_is_root(const probe_split *S);
/* The sums of a shared fit (core/probe.h) over the ranks. */
const culeace__probe_reduce *probe_split_reduce(probe_split *S);
/* Agreement: 1 on every rank when any rank passes failed. */
int probe_split_agree(probe_split *S, int failed);
/* Collective: the layer's kept rows of every rank (L, this rank's; its
 * dropped count) as R, and the total dropped. 0, or 1 on every rank. */
int probe_split_rows(probe_split *S, int failed, const layer_rows *L,
                     int64_t *dropped, probe_rows *R);
/* Collective: each rank's m_local predictions (proba (m_local, k), ysel
 * (m_local)) after rank 0's own, in rank order, into rank 0's proba and
 * ysel (room for every rank's); *m_total on every rank. 0, or 1 on every
 * rank. */
int probe_split_gather(probe_split *S, int failed, int64_t m_local, int64_t k,
                       double *proba, int32_t *ysel, int64_t *m_total);
/* Collective: total (a fresh fitter, created alike on every rank) gets
 * the merged moments of every rank's local fitter. 0, or 1 on every rank
 * (message printed by the rank that failed). */
int probe_split_merge(probe_split *S, int failed, culeace_ctx *ctx,
                      culeace_fitter *local, culeace_fitter *total);
/* Probes every layer on this rank's rows, agreeing after each, then agrees
 * (point 2); rank 0 holds the results. 0 ok, 1 on every rank. */
int probe_mpi_run_rows(mpi_job *P, probe_job *J, const int64_t *layers,
                       int64_t m, probe_layer_result *res);

#endif
