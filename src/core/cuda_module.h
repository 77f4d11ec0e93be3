/* cuda_module.h — the CUDA backend lives in its own module
 * (libculeace_cuda.so, next to libculeace.so), loaded on first use so that
 * a process that never uses a GPU never maps cuBLAS/cuSOLVER (about 0.2 s
 * and 250 MiB of resident memory per process on the CPU build machine). */
#ifndef CULEACE_CORE_CUDA_MODULE_H
#define CULEACE_CORE_CUDA_MODULE_H

#include <stddef.h>

#include "backend/backend.h"

/* The CUDA backend's table, loading the module on the first call; NULL with
 * the reason in why (e.g. no CUDA driver on this machine, the module
 * missing) when it cannot be had. Thread-safe; the answer never changes. */
const culeace_backend *culeace__cuda_backend(char *why, size_t why_len);

/* CUDA devices the driver sees: 0 without a driver, without the module or
 * without a GPU. Loads the module only when a driver is present. */
int culeace__cuda_module_device_count(void);

/* The symbols the module exports (looked up by name). */
#define CULEACE_CUDA_MODULE_FILE "libculeace_cuda.so"
#define CULEACE_CUDA_MODULE_BACKEND "culeace__backend_cuda"
#define CULEACE_CUDA_MODULE_DEVICE_COUNT "culeace__cuda_device_count"

#endif
