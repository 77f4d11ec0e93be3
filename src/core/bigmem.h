/* bigmem.h — allocations of many megabytes (a layer's rows held for a
 * probe) backed by transparent huge pages where the kernel offers them. */
#ifndef CULEACE_CORE_BIGMEM_H
#define CULEACE_CORE_BIGMEM_H

#include <stddef.h>

/* malloc for a buffer that will be filled whole: from 4 MiB on, 2 MiB
 * aligned and marked MADV_HUGEPAGE, so that filling it takes one page
 * fault per 2 MiB instead of one per 4 KiB. Freed with free(); NULL when
 * out of memory. */
void *culeace__big_alloc(size_t bytes);

#endif
