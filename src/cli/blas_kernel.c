/* blas_kernel.c — picks OpenBLAS's kernel when its CPU detection falls back.
 * On virtual machines that hide the CPU model, OpenBLAS's dynamic dispatch
 * can fall back to its oldest x86-64 kernel (Prescott, SSE3), several times
 * slower than the AVX2/AVX-512 kernels the CPU supports (docs/DESIGN.md has
 * the measurements). OpenBLAS reads OPENBLAS_CORETYPE only when it loads, so
 * the command re-executes itself once with the variable set to the kernel
 * that matches the CPU's instruction set. A user-set OPENBLAS_CORETYPE is
 * always left alone, and CULEACE_NO_BLAS_KERNEL=1 turns this off. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

#include "cli/cli.h"

void cli_select_blas_kernel(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") || getenv("CULEACE_NO_BLAS_KERNEL")) return;
#if defined(__x86_64__)
  const char *core = openblas_get_corename();
  if (!core || (strcasecmp(core, "prescott") && strcasecmp(core, "core2") &&
                strcasecmp(core, "nehalem") && strcasecmp(core, "generic")))
    return;
  __builtin_cpu_init();
  const char *want = NULL;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
  if (!want) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  execv("/proc/self/exe", argv); /* returns only on failure: go on as is */
#else
  (void)argv;
#endif
}
