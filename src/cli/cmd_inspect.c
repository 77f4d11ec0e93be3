/* cmd_inspect.c — `culeace inspect`: what is in an HDF5 dump (datasets,
 * shapes, dtypes, storage, guessed roles, label class counts). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cmd_inspect(int argc, char **argv) {
  cli_common c;
  cli_common_init(&c, "culeace inspect");
  static struct option opts[] = {{"json", 0, 0, 0}, {"help", 0, 0, 'h'},
                                 {0, 0, 0, 0}};
  int idx, ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
    if (ch == 'h') {
      printf("usage: culeace inspect FILE [--json]\n\n"
             "Lists the datasets of FILE with shapes, dtypes, storage and\n"
             "filters, guesses which hold activations, labels and group ids,\n"
             "and counts the classes of label datasets.\n\n"
             "  --json              one JSON object on stdout\n");
      return 0;
    }
    if (ch != 0) return EXIT_USAGE;
    c.json = 1;
  }
  if (optind != argc - 1)
    return cli_error(&c, "expected exactly one FILE (see --help)"), EXIT_USAGE;
  c.quiet = 1;
  const char *inputs[] = {argv[optind]};
  if (cli_precheck_files(&c, 1, inputs)) return 1;
  culeace_ctx *ctx = cli_open_ctx(&c);
  if (!ctx) return 1;
  int rc = 0;
  if (culeace__inspect(ctx, argv[optind], c.json, stdout) != CULEACE_OK)
    rc = cli_error_ctx(&c, ctx, "");
  culeace_ctx_free(ctx);
  return rc;
}
