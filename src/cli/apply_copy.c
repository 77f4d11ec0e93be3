/* apply_copy.c — the temporary copy of FILE that `apply -o` edits. The
 * activation datasets the edit rewrites whole are not copied: their bytes
 * would be read and written once by the copy and again by the edit; the
 * edit reads them from FILE instead and writes them into the holes left
 * here (a 256 MiB dataset: about 0.1 s of in-kernel copying less). */
#define _GNU_SOURCE /* copy_file_range */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/apply_copy.h"

int apply_copy_write_error(const cli_common *c, const char *dst) {
  int e = errno;
  return cli_error(c, "writing the temporary copy %s: %s%s (nothing was "
                   "written to the output)", dst, strerror(e),
                   e == ENOSPC || e == EFBIG || e == EDQUOT
                       ? " (disk full or file-size limit)"
                       : "");
}

static int by_offset(const void *x, const void *y) {
  const apply_range *a = x, *b = y;
  return a->off < b->off ? -1 : a->off > b->off;
}

/* 1 when every layer stored in layer l's dataset is among the items. */
static int all_layers_edited(const culeace_act *act, int64_t l,
                             const cli_layer_eraser *items, int64_t m) {
  const char *path = culeace__act_dataset_path(act, l);
  for (int64_t k = 0; k < culeace__act_layers(act); k++) {
    if (strcmp(culeace__act_dataset_path(act, k), path)) continue;
    int found = 0;
    for (int64_t i = 0; i < m && !found; i++) found = items[i].layer == k;
    if (!found) return 0;
  }
  return 1;
}

int64_t apply_rewritten_ranges(const culeace_act *act,
                               const cli_layer_eraser *items, int64_t m,
                               apply_range **out) {
  *out = NULL;
  apply_range *r = calloc((size_t)(m > 0 ? m : 1), sizeof *r);
  if (!r) return -1;
  int64_t n = 0;
  for (int64_t i = 0; i < m; i++) {
    int64_t l = items[i].layer;
    uint64_t off, len;
    if (!culeace__act_contiguous_extent(act, l, &off, &len)) continue;
    int dup = 0; /* the layers of one stacked dataset share its range */
    for (int64_t j = 0; j < n && !dup; j++) dup = r[j].off == off;
    if (!dup && all_layers_edited(act, l, items, m))
      r[n++] = (apply_range){off, len};
  }
  qsort(r, (size_t)n, sizeof *r, by_offset);
  /* Overlapping ranges cannot come from a well-formed file: copy all. */
  for (int64_t j = 1; j < n; j++)
    if (r[j].off < r[j - 1].off + r[j - 1].len) n = 0;
  if (n == 0) {
    free(r);
    return 0;
  }
  *out = r;
  return n;
}

/* Copies bytes [from, to) of in to the same offsets of out; *by_hand
 * (sticky) once the kernel refused. 0 ok, else 1 (printed). */
static int copy_range(const cli_common *c, const char *src, const char *dst,
                      int in, int out, uint64_t from, uint64_t to,
                      int *by_hand, char **buf) {
  while (!*by_hand && from < to) {
    loff_t oi = (loff_t)from, oo = (loff_t)from;
    size_t want = to - from < ((uint64_t)1 << 30) ? (size_t)(to - from)
                                                  : (size_t)1 << 30;
    ssize_t r = copy_file_range(in, &oi, out, &oo, want, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r > 0) {
      from += (uint64_t)r;
      continue;
    }
    if (r == 0) /* src shorter than its stat said: it changed under us */
      return cli_error(c, "%s changed while it was copied", src);
    if (errno == ENOSPC || errno == EFBIG || errno == EDQUOT || errno == EIO)
      return apply_copy_write_error(c, dst);
    *by_hand = 1; /* EXDEV, ENOSYS, EINVAL, EOPNOTSUPP...: by hand from here */
  }
  if (from < to && !*buf && !(*buf = malloc(1 << 20)))
    return cli_error(c, "out of memory");
  while (from < to) {
    size_t want = to - from < (1u << 20) ? (size_t)(to - from) : 1u << 20;
    ssize_t r = pread(in, *buf, want, (off_t)from);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return cli_error(c, "reading %s: %s", src, strerror(errno));
    if (r == 0) return cli_error(c, "%s changed while it was copied", src);
    for (ssize_t done = 0; done < r;) {
      ssize_t w = pwrite(out, *buf + done, (size_t)(r - done),
                         (off_t)(from + (uint64_t)done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return apply_copy_write_error(c, dst);
      done += w;
    }
    from += (uint64_t)r;
  }
  return 0;
}

int apply_copy_file(const cli_common *c, const char *src, const char *dst,
                    const apply_range *skip, int64_t nskip) {
  int in = open(src, O_RDONLY), out = -1, rc = 1, by_hand = 0;
  char *buf = NULL;
  struct stat st;
  if (in < 0 || fstat(in, &st) != 0) {
    cli_error(c, "cannot open %s: %s", src, strerror(errno));
    goto done;
  }
  out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (out < 0) {
    cli_error(c, "cannot create %s: %s", dst, strerror(errno));
    goto done;
  }
  uint64_t size = (uint64_t)st.st_size, pos = 0;
  for (int64_t i = 0; i <= nskip; i++) {
    /* The bytes before range i (after the last: to the end of the file). */
    uint64_t to = i < nskip && skip[i].off < size ? skip[i].off : size;
    if (pos < to &&
        copy_range(c, src, dst, in, out, pos, to, &by_hand, &buf))
      goto done;
    if (i < nskip && skip[i].off + skip[i].len > pos)
      pos = skip[i].off + skip[i].len < size ? skip[i].off + skip[i].len
                                             : size;
  }
  /* The size of src even when it ends in a hole. */
  if (ftruncate(out, (off_t)size) != 0) {
    apply_copy_write_error(c, dst);
    goto done;
  }
  rc = 0;
done:
  if (in >= 0) close(in);
  if (out >= 0 && close(out) != 0 && rc == 0)
    rc = apply_copy_write_error(c, dst);
  free(buf);
  return rc;
}
