/* h5out.c — atomic writing of culeace's own HDF5 files (see h5out.h). */
#include "io/h5out.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ctx.h"
#include "io/h5attr.h"
#include "io/h5util.h"

culeace_status culeace__h5out_create(culeace_ctx *ctx, const char *path,
                                     const char *what, const char *format,
                                     int64_t version,
                                     const char *const *groups, hid_t *fid,
                                     char **tmp_path) {
  *fid = -1;
  *tmp_path = NULL;
  size_t len = strlen(path) + 32;
  char *tmp = malloc(len);
  if (!tmp)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY, "out of memory");
  snprintf(tmp, len, "%s.tmp%ld", path, (long)getpid());
  errno = 0;
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) {
    int err = errno;
    culeace_status st = culeace__h5_error(
        ctx, CULEACE_ERR_IO, "cannot create %s %s (temporary %s)%s%s", what,
        path, tmp, err ? ": " : "", err ? strerror(err) : "");
    free(tmp);
    return st;
  }
  int bad = culeace__h5_put_str(f, "format", format) ||
            culeace__h5_put_i64(f, "format_version", version) ||
            culeace__h5_put_str(f, "culeace_version", CULEACE_VERSION_STRING);
  for (int i = 0; !bad && groups && groups[i]; i++) {
    hid_t g = H5Gcreate2(f, groups[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bad = g < 0;
    if (g >= 0) H5Gclose(g);
  }
  if (bad) {
    culeace_status st = culeace__h5_error(
        ctx, CULEACE_ERR_HDF5, "cannot write the header of %s %s", what, path);
    culeace__h5out_close(&f, tmp, 0);
    free(tmp);
    return st;
  }
  *fid = f;
  *tmp_path = tmp;
  return CULEACE_OK;
}

culeace_status culeace__h5out_commit(culeace_ctx *ctx, hid_t *fid,
                                     const char *tmp_path, const char *path,
                                     const char *what, int64_t count) {
  int bad = culeace__h5_put_i64(*fid, "count", count) < 0;
  bad |= H5Fclose(*fid) < 0;
  *fid = -1;
  if (bad)
    return culeace__h5_error(ctx, CULEACE_ERR_HDF5, "cannot finish %s %s",
                             what, tmp_path);
  int fd = open(tmp_path, O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  if (rename(tmp_path, path) != 0)
    return culeace__error(ctx, CULEACE_ERR_IO, "cannot rename %s to %s: %s",
                          tmp_path, path, strerror(errno));
  return CULEACE_OK;
}

void culeace__h5out_close(hid_t *fid, const char *tmp_path, int committed) {
  if (*fid >= 0) H5Fclose(*fid);
  *fid = -1;
  if (!committed && tmp_path) unlink(tmp_path);
}
