/* ctx.h — private body of culeace_ctx and the error-reporting helpers every
 * part of the library uses (culeace__error sets the context's message). */
#ifndef CULEACE_CORE_CTX_H
#define CULEACE_CORE_CTX_H

#include "culeace.h"
#include "backend/backend.h"

#define CULEACE_ERRMSG_LEN 1024

struct culeace_ctx {
  culeace_device device;       /* resolved: CPU or CUDA (never AUTO) */
  int device_index;
  int n_threads;
  const culeace_backend *backend; /* ops table, chosen once */
  void *backend_state;            /* owned by the backend */
  char backend_name[32];
  char device_note[256];
  char errmsg[CULEACE_ERRMSG_LEN];
};

/* Sets ctx's last-error message (printf-style) and returns status. ctx may be
 * NULL (then only the status is returned). */
culeace_status culeace__error(culeace_ctx *ctx, culeace_status status,
                              const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Puts "context: " in front of the current message (for context added by
 * callers, e.g. the file name around a lower-level failure). */
void culeace__error_prefix(culeace_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Overflow-checked a*b for sizes; returns 0 on overflow. */
int culeace__mul_size(size_t a, size_t b, size_t *out);

/* malloc with overflow-checked count*size; on failure sets the message
 * ("out of memory allocating %s (%zu bytes)") and returns NULL. */
void *culeace__alloc(culeace_ctx *ctx, size_t count, size_t size,
                     const char *what);

#define CULEACE_TRY(expr)                                                      \
  do {                                                                         \
    culeace_status try_st_ = (expr);                                           \
    if (try_st_ != CULEACE_OK) {                                               \
      st = try_st_;                                                            \
      goto cleanup;                                                            \
    }                                                                          \
  } while (0)

#endif
