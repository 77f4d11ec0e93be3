/* fuzzutil.h — what every fuzz target shares: the input bytes as a file (in
 * /dev/shm when it exists: the library reads files by path) and one CPU
 * context for the whole run. */
#ifndef CULEACE_FUZZUTIL_H
#define CULEACE_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "culeace.h"

/* Writes data (size bytes) to this process's scratch file; returns its path
 * (static storage), or NULL if it cannot be written. */
const char *fuzz_file(const uint8_t *data, size_t size);

/* A CPU context created on first use (one thread). */
culeace_ctx *fuzz_ctx(void);

#endif
