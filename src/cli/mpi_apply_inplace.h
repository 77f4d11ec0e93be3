/* mpi_apply_inplace.h — `culeace apply --in-place` started by an MPI
 * launcher (docs/CLUSTER.md, "Apply"). The blocks of each layer, counted
 * from the checkpoint's position, are dealt round-robin: in round q rank r
 * reads and edits block q N + r (only its own rows). The ranks then write
 * their blocks in rank order, i.e. in file order, each through the plain
 * in-place protocol (apply_journal.h): the original bytes to the journal,
 * the edited rows written and fsynced, the checkpoint moved to the next
 * block; the others wait. The file, journal and checkpoint therefore go
 * through exactly the states of a plain in-place run, one writer at a
 * time, and a run killed anywhere is finished by the same command on any
 * number of ranks or none. HDF5 locks a file while it is open, so a rank
 * holds FILE open only for one read or one write turn. MPI builds:
 * mpi_apply_inplace.c; a stub in mpi_launch.c. */
#ifndef CULEACE_CLI_MPI_APPLY_INPLACE_H
#define CULEACE_CLI_MPI_APPLY_INPLACE_H

#include "cli/apply_edit.h"
#include "cli/apply_journal.h"
#include "cli/mpi_job.h"

/* Edits items [start.item, m) of FILE in place from start on (ed->act:
 * FILE, open read-only on every rank; released on return, reopen it to
 * mark it). Rank 0 first restores a block a killed run may have half
 * written (the journal). jr: the same paths and identity on every rank.
 * The items' edited and skipped counts are summed over the ranks on
 * return. 0, or 1 on every rank when any failed (the checkpoint then
 * names the first block not yet written). */
int apply_mpi_in_place(mpi_job *P, editor *ed, cli_layer_eraser *items,
                       int64_t m, apply_journal *jr, apply_pos start,
                       cli_progress *prog);

#endif
