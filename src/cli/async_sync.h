/* async_sync.h — an fdatasync run on a helper thread, so that the caller
 * computes (or reads) while the disk writes. */
#ifndef CULEACE_CLI_ASYNC_SYNC_H
#define CULEACE_CLI_ASYNC_SYNC_H

#include <pthread.h>

typedef struct {
  pthread_t thread;
  int fd;
  int rc;      /* fdatasync's result */
  int err;     /* its errno */
  int started; /* 1 while a thread runs (0: none, or done in the caller) */
  int pending; /* 1 from start until wait */
} async_sync;

/* Starts fdatasync(fd) (fd < 0: nothing to sync); without a thread it runs
 * here, before returning. */
void async_sync_start(async_sync *a, int fd);
/* Waits for the sync started last (none: returns 0). 0, or -1 with errno
 * set to the sync's error. */
int async_sync_wait(async_sync *a);

#endif
