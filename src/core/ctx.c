/* ctx.c — the context: backend choice (AUTO/CPU/CUDA), thread count, the
 * last-error message, and small allocation helpers with overflow checks. */
#include "core/ctx.h"
#include "core/cuda_module.h"

#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

culeace_status culeace__error(culeace_ctx *ctx, culeace_status status,
                              const char *fmt, ...) {
  if (ctx) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
  }
  return status;
}

void culeace__error_prefix(culeace_ctx *ctx, const char *fmt, ...) {
  if (!ctx) return;
  char msg[CULEACE_ERRMSG_LEN];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t used = (size_t)n < sizeof msg - 3 ? (size_t)n : sizeof msg - 3;
  memcpy(msg + used, ": ", 3);
  size_t rest = sizeof msg - used - 3;
  size_t old = strlen(ctx->errmsg);
  if (old > rest) old = rest;
  memcpy(msg + used + 2, ctx->errmsg, old);
  msg[used + 2 + old] = 0;
  memcpy(ctx->errmsg, msg, sizeof msg);
}

int culeace__mul_size(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return 0;
  *out = a * b;
  return 1;
}

void *culeace__alloc(culeace_ctx *ctx, size_t count, size_t size,
                     const char *what) {
  size_t bytes;
  if (!culeace__mul_size(count, size, &bytes)) {
    culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                   "size of %s overflows (%zu x %zu bytes)", what, count, size);
    return NULL;
  }
  void *p = malloc(bytes ? bytes : 1);
  if (!p)
    culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                   "out of memory allocating %s (%zu bytes)", what, bytes);
  return p;
}

void culeace_ctx_opts_init(culeace_ctx_opts *opts) {
  memset(opts, 0, sizeof *opts);
  opts->device = CULEACE_DEVICE_AUTO;
}

static culeace_status ctx_fail(char *errbuf, size_t len, culeace_status st,
                               const char *msg) {
  if (errbuf && len) snprintf(errbuf, len, "%s", msg);
  return st;
}

culeace_status culeace_ctx_create(const culeace_ctx_opts *opts,
                                  culeace_ctx **out, char *errbuf,
                                  size_t errbuf_len) {
  culeace_ctx_opts dflt;
  if (!out) return CULEACE_ERR_INVALID_ARG;
  *out = NULL;
  if (!opts) {
    culeace_ctx_opts_init(&dflt);
    opts = &dflt;
  }
  if (opts->n_threads < 0)
    return ctx_fail(errbuf, errbuf_len, CULEACE_ERR_INVALID_ARG,
                    "thread count must be >= 0");
  culeace_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return ctx_fail(errbuf, errbuf_len, CULEACE_ERR_OUT_OF_MEMORY,
                    "out of memory allocating the context");
  /* Errors from HDF5 are reported through our own messages. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  ctx->n_threads = opts->n_threads;
  ctx->device_index = opts->device_index;
  /* Both pools: OpenBLAS's, and the OpenMP loops of the row passes (one
   * pool when OpenBLAS is its OpenMP build, as CMake links by default). */
  if (opts->n_threads > 0) {
    openblas_set_num_threads(opts->n_threads);
    omp_set_num_threads(opts->n_threads);
  }

  const culeace_backend *cuda = NULL;
  char why[2560] = "";
  switch (opts->device) {
  case CULEACE_DEVICE_CUDA:
    cuda = culeace__cuda_backend(why, sizeof why);
    if (!cuda) {
      free(ctx);
      char msg[2700];
      snprintf(msg, sizeof msg, "device 'cuda' requested but %s "
               "(compiled backends: %s)", why, culeace_backends_compiled());
#ifdef CULEACE_HAVE_CUDA /* no driver: as the backend says of no GPU */
      return ctx_fail(errbuf, errbuf_len, CULEACE_ERR_NO_DEVICE, msg);
#else
      return ctx_fail(errbuf, errbuf_len, CULEACE_ERR_NOT_BUILT, msg);
#endif
    }
    ctx->backend = cuda;
    break;
  case CULEACE_DEVICE_AUTO:
  case CULEACE_DEVICE_CPU:
    ctx->backend = &culeace__backend_cpu;
    break;
  default:
    free(ctx);
    return ctx_fail(errbuf, errbuf_len, CULEACE_ERR_INVALID_ARG,
                    "unknown device value");
  }
  culeace_status st = CULEACE_OK;
  if (opts->device == CULEACE_DEVICE_AUTO) {
    /* Only a machine with a CUDA driver loads the CUDA module. */
    cuda = culeace__cuda_backend(why, sizeof why);
    st = CULEACE_ERR_NOT_BUILT;
    if (cuda) {
      ctx->backend = cuda;
      st = ctx->backend->init(ctx, &ctx->backend_state);
    }
    if (st == CULEACE_OK) {
      char gpu[sizeof ctx->device_note];
      snprintf(gpu, sizeof gpu, "%s", ctx->device_note);
      ctx->device = CULEACE_DEVICE_CUDA;
      snprintf(ctx->device_note, sizeof ctx->device_note,
               "device auto: using %.200s", gpu);
    } else {
      snprintf(ctx->device_note, sizeof ctx->device_note,
               "device auto: %.200s; using cpu", cuda ? ctx->errmsg : why);
      ctx->backend = &culeace__backend_cpu;
      ctx->errmsg[0] = 0;
    }
    st = CULEACE_OK;
  }
  if (ctx->backend == &culeace__backend_cpu) {
    ctx->device = CULEACE_DEVICE_CPU;
    st = ctx->backend->init(ctx, &ctx->backend_state);
    snprintf(ctx->backend_name, sizeof ctx->backend_name, "cpu");
    if (!ctx->device_note[0])
      snprintf(ctx->device_note, sizeof ctx->device_note, "device cpu");
  } else if (!ctx->backend_state) {
    ctx->device = CULEACE_DEVICE_CUDA;
    st = ctx->backend->init(ctx, &ctx->backend_state);
    if (st == CULEACE_OK) {
      char gpu[sizeof ctx->device_note];
      snprintf(gpu, sizeof gpu, "%s", ctx->device_note);
      snprintf(ctx->device_note, sizeof ctx->device_note, "device %.200s",
               gpu);
    }
  }
  if (ctx->device == CULEACE_DEVICE_CUDA)
    snprintf(ctx->backend_name, sizeof ctx->backend_name, "cuda:%d",
             ctx->device_index);
  if (st != CULEACE_OK) {
    ctx_fail(errbuf, errbuf_len, st, ctx->errmsg);
    free(ctx);
    return st;
  }
  *out = ctx;
  return CULEACE_OK;
}

void culeace_ctx_free(culeace_ctx *ctx) {
  if (!ctx) return;
  if (ctx->backend && ctx->backend->destroy)
    ctx->backend->destroy(ctx->backend_state);
  free(ctx);
}

const char *culeace_ctx_last_error(const culeace_ctx *ctx) {
  return ctx ? ctx->errmsg : "no context";
}

const char *culeace_ctx_backend_name(const culeace_ctx *ctx) {
  return ctx ? ctx->backend_name : "";
}

const char *culeace_ctx_device_note(const culeace_ctx *ctx) {
  return ctx ? ctx->device_note : "";
}

void *culeace_host_alloc(culeace_ctx *ctx, size_t bytes) {
  if (!ctx) return NULL;
  return ctx->backend->host_alloc(ctx, bytes);
}

void culeace_host_free(culeace_ctx *ctx, void *p) {
  if (ctx && p) ctx->backend->host_free(ctx->backend_state, p);
}
