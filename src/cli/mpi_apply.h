/* mpi_apply.h — `culeace apply -o OUT` started by an MPI launcher: rank r
 * reads and edits examples [r n / N, (r + 1) n / N) of every layer from
 * the input, and the ranks write their edited blocks into rank 0's
 * temporary copy of the input in rank order (one rank holds the copy open
 * at a time: serial HDF5 needs no parallel build and no file locking
 * tricks); rank 0 marks and renames the copy once every rank has written
 * (docs/CLUSTER.md). The job (mpi_job.h) has APPLY_MPI_AGREEMENTS counted
 * points: after validation, after rank 0's copy, after rank 0's rename;
 * the edit loop agrees after every read and every write turn. --in-place
 * shares the job and its points (rank 0's checkpoint instead of the copy,
 * its marks instead of the rename): mpi_apply_inplace.h. MPI builds:
 * mpi_apply.c; a stub in mpi_launch.c. */
#ifndef CULEACE_CLI_MPI_APPLY_H
#define CULEACE_CLI_MPI_APPLY_H

#include "cli/apply_edit.h"
#include "cli/mpi_job.h"

enum { APPLY_MPI_AGREEMENTS = 3 };

/* Edits this rank's examples of every item (ed->act: the input, open
 * read-only) and writes them into tmp in rank order; the items' edited and
 * skipped counts are summed over the ranks on return. 0, or 1 on every
 * rank when any failed. */
int apply_mpi_edit(mpi_job *P, editor *ed, cli_layer_eraser *items,
                   int64_t m, const char *tmp, cli_progress *prog);

#endif
