/* fit_report.c — the per-layer table or JSON object `culeace fit` prints
 * (plain and under MPI). */
#include <stdio.h>

#include "cli/fit_report.h"

void fit_print_results(const cli_common *c, const char *out,
                       const fit_layer_result *r, int64_t m,
                       const culeace_fit_opts *o, int mpi_ranks) {
  const char *method = culeace_method_name(o->method);
  if (c->json) {
    printf("{\"erasers\": ");
    cli_json_str(stdout, out);
    printf(", \"method\": \"%s\", \"affine\": %s, \"shrinkage\": %s, ",
           method, o->affine ? "true" : "false",
           o->shrinkage ? "true" : "false");
    if (mpi_ranks) printf("\"mpi_ranks\": %d, ", mpi_ranks);
    printf("\"layers\": [");
    for (int64_t i = 0; i < m; i++) {
      printf("%s{\"layer\": %lld, \"name\": ", i ? ", " : "",
             (long long)r[i].layer);
      cli_json_str(stdout, r[i].name);
      printf(", \"rows\": %lld, \"dropped_nonfinite\": %lld, \"rank\": %lld}",
             (long long)r[i].rows, (long long)r[i].dropped,
             (long long)r[i].rank);
    }
    printf("]}\n");
    return;
  }
  /* oracle and quadratic erasers have no rank-r factors: their edit uses
   * each row's label (the JSON keeps rank 0, the eraser file's value) */
  int factored = o->method != CULEACE_METHOD_ORACLE &&
                 o->method != CULEACE_METHOD_QUADRATIC;
  printf("%-12s %10s %8s %6s\n", "layer", "rows", "dropped", "rank");
  for (int64_t i = 0; i < m; i++) {
    printf("%-12s %10lld %8lld ", r[i].name, (long long)r[i].rows,
           (long long)r[i].dropped);
    if (factored) printf("%6lld\n", (long long)r[i].rank);
    else printf("%6s\n", "-");
  }
  printf("wrote %lld %s eraser%s to %s", (long long)m, method,
         m == 1 ? "" : "s", out);
  if (mpi_ranks) printf(" (%d MPI ranks)", mpi_ranks);
  printf("\n");
}
