/* async_sync.c — fdatasync on a helper thread (async_sync.h). */
#include "cli/async_sync.h"

#include <errno.h>
#include <unistd.h>

static void *run(void *arg) {
  async_sync *a = arg;
  a->rc = fdatasync(a->fd);
  a->err = a->rc ? errno : 0;
  return NULL;
}

void async_sync_start(async_sync *a, int fd) {
  a->fd = fd;
  a->rc = 0;
  a->err = 0;
  a->started = 0;
  a->pending = 1;
  if (fd < 0) return;
  if (pthread_create(&a->thread, NULL, run, a) == 0) {
    a->started = 1;
    return;
  }
  run(a); /* no thread: sync here */
}

int async_sync_wait(async_sync *a) {
  if (!a->pending) return 0;
  if (a->started) pthread_join(a->thread, NULL);
  a->started = a->pending = 0;
  if (a->rc) {
    errno = a->err;
    return -1;
  }
  return 0;
}
