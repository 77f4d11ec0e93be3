/* main.c — entry point of the `culeace` command: dispatches subcommands,
 * prints the version and the top-level help. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>
#include <hdf5.h>

#include "cli/cli.h"
#include "cli/mpi_fit.h"
#include "cli/probe.h"

static const char *usage =
    "usage: culeace COMMAND [options]   (culeace COMMAND --help for more)\n"
    "\n"
    "LEACE concept erasure over neural-network activations in HDF5.\n"
    "\n"
    "Commands:\n"
    "  inspect FILE                      what a dump holds\n"
    "  fit FILE --x P --z P -o E.h5      fit one eraser per layer\n"
    "  apply E.h5 FILE --x P -o OUT      edit activations (or --in-place)\n"
    "  check E.h5 FILE --x P --z P       measure the erasure guarantee\n"
    "  probe FILE --x P --y P            held-out linear probes per layer\n"
    "  score PR.h5 FILE --x P -o S.h5    apply saved probes to activations\n"
    "\n"
    "  --version                         version and compiled backends\n";

int main(int argc, char **argv) {
  /* A file-size limit (ulimit -f) makes writes fail with EFBIG instead of
   * killing the process: the error path then removes partial outputs. */
  signal(SIGXFSZ, SIG_IGN);
  /* libhdf5 1.10 crashes in its exit-time cleanup (H5F__close_cb) when a
   * file's H5Fclose failed on a write error (disk full): every file is
   * closed explicitly, so its atexit cleanup is not needed. Must come
   * before the first HDF5 call. */
  H5dont_atexit();
  cli_select_blas_kernel(argv);
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    printf("%s", usage);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    /* openblas_get_parallel: 0 sequential, 1 pthreads, 2 OpenMP. */
    static const char *const blas_threads[] = {"sequential", "pthreads",
                                               "OpenMP"};
    int par = openblas_get_parallel();
    printf("culeace %s (backends: %s; BLAS kernel: %s, %s threads; MPI: %s)\n",
           culeace_version(), culeace_backends_compiled(),
           openblas_get_corename(),
           par >= 0 && par <= 2 ? blas_threads[par] : "unknown",
           mpi_build_name());
    return 0;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 1, argv + 1);
  if (!strcmp(cmd, "fit")) return cmd_fit(argc - 1, argv + 1);
  if (!strcmp(cmd, "apply")) return cmd_apply(argc - 1, argv + 1);
  if (!strcmp(cmd, "check")) return cmd_check(argc - 1, argv + 1);
  if (!strcmp(cmd, "probe")) return cmd_probe(argc - 1, argv + 1);
  if (!strcmp(cmd, "score")) return cmd_score(argc - 1, argv + 1);
  fprintf(stderr, "culeace: unknown command '%s'\n\n%s", cmd, usage);
  return EXIT_USAGE;
}
