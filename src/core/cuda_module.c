/* cuda_module.c — finds and loads the CUDA backend module (see
 * cuda_module.h). The driver (libcuda.so.1) is looked for first: on a
 * machine without one (no GPU, or a CPU-only node) the module and the
 * CUDA libraries it links are never loaded. */
#define _GNU_SOURCE
#include "core/cuda_module.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#ifdef CULEACE_HAVE_CUDA
static pthread_once_t once = PTHREAD_ONCE_INIT;
static const culeace_backend *table;
static int (*device_count)(void);
static char reason[2560];

/* "<folder of libculeace.so>/libculeace_cuda.so" into out; 0 ok. */
static int module_path(char *out, size_t len) {
  Dl_info info;
  if (!dladdr((void *)&culeace__cuda_backend, &info) || !info.dli_fname)
    return -1;
  const char *slash = strrchr(info.dli_fname, '/');
  int dir = slash ? (int)(slash - info.dli_fname) : 1;
  int n = snprintf(out, len, "%.*s/%s", dir, slash ? info.dli_fname : ".",
                   CULEACE_CUDA_MODULE_FILE);
  return n > 0 && (size_t)n < len ? 0 : -1;
}

static void load(void) {
  /* The driver first: cheap, and its absence settles it. */
  void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!driver) {
    const char *e = dlerror();
    snprintf(reason, sizeof reason,
             "no CUDA driver on this machine (%.1000s)",
             e ? e : "libcuda.so.1 not found");
    return;
  }
  char path[4096];
  if (module_path(path, sizeof path)) {
    snprintf(reason, sizeof reason,
             "cannot locate the folder of libculeace.so to find %s",
             CULEACE_CUDA_MODULE_FILE);
    return;
  }
  void *module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!module) {
    const char *e = dlerror();
    snprintf(reason, sizeof reason, "cannot load the CUDA backend %.1000s: %.1000s",
             path, e ? e : "unknown error");
    return;
  }
  table = dlsym(module, CULEACE_CUDA_MODULE_BACKEND);
  *(void **)&device_count = dlsym(module, CULEACE_CUDA_MODULE_DEVICE_COUNT);
  if (!table || !device_count) {
    table = NULL;
    device_count = NULL;
    snprintf(reason, sizeof reason, "%.1000s lacks the symbols %s and %s", path,
             CULEACE_CUDA_MODULE_BACKEND, CULEACE_CUDA_MODULE_DEVICE_COUNT);
  }
  /* The module and driver stay loaded for the life of the process. */
}

const culeace_backend *culeace__cuda_backend(char *why, size_t why_len) {
  pthread_once(&once, load);
  if (!table && why && why_len) snprintf(why, why_len, "%s", reason);
  return table;
}

int culeace__cuda_module_device_count(void) {
  pthread_once(&once, load);
  return device_count ? device_count() : 0;
}
#else
const culeace_backend *culeace__cuda_backend(char *why, size_t why_len) {
  if (why && why_len)
    snprintf(why, why_len, "this culeace was not built with CUDA");
  return NULL;
}

int culeace__cuda_module_device_count(void) { return 0; }
#endif
