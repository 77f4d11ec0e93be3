/* fit_report.h — what `culeace fit` reports per layer, and the table /
 * JSON it prints (fit_report.c); shared by the plain fit (cmd_fit.c) and
 * the sharded one under MPI (mpi_fit.c). */
#ifndef CULEACE_CLI_FIT_REPORT_H
#define CULEACE_CLI_FIT_REPORT_H

#include <stdint.h>

#include "cli/cli.h"

typedef struct {
  const char *name; /* layer name in reports */
  int64_t layer, rows, dropped, rank;
} fit_layer_result;

/* The table (or --json object) of the m fitted layers written to out.
 * mpi_ranks: the number of MPI ranks that fitted them, 0 outside MPI (then
 * neither the JSON nor the last line mentions ranks). */
void fit_print_results(const cli_common *c, const char *out,
                       const fit_layer_result *r, int64_t m,
                       const culeace_fit_opts *o, int mpi_ranks);

#endif
