/* memory.c — `--max-memory`: the memory a command may plan for (default 75%
 * of this machine's physical memory), the block size that keeps within it,
 * and the check each command makes from the file's shapes before it starts
 * ("needs about X GiB ..., more than --max-memory Y GiB"). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli.h"

/* "1.5 GiB", "12.0 MiB", "300 KiB", "17 bytes" into buf. */
static const char *human(double b, char *buf, size_t len) {
  if (b >= 1073741824.0) snprintf(buf, len, "%.2f GiB", b / 1073741824.0);
  else if (b >= 1048576.0) snprintf(buf, len, "%.1f MiB", b / 1048576.0);
  else if (b >= 1024.0) snprintf(buf, len, "%.0f KiB", b / 1024.0);
  else snprintf(buf, len, "%.0f bytes", b);
  return buf;
}

int64_t cli_parse_size(const char *s) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || !(v >= 0)) return -1;
  double mult = 1;
  switch (toupper((unsigned char)*end)) {
  case 0: break;
  case 'K': mult = 1024.0; end++; break;
  case 'M': mult = 1048576.0; end++; break;
  case 'G': mult = 1073741824.0; end++; break;
  case 'T': mult = 1099511627776.0; end++; break;
  default: return -1;
  }
  if (*end == 'i' || *end == 'I') end++;
  if (*end == 'b' || *end == 'B') end++;
  if (*end || v * mult > 9.0e18 || v * mult < 1) return -1;
  return (int64_t)(v * mult);
}

double cli_physical_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? (double)pages * (double)size : 0;
}

double cli_memory_limit(const cli_common *c) {
  if (c->max_memory > 0) return (double)c->max_memory;
  double phys = cli_physical_memory();
  return phys > 0 ? 0.75 * phys : 1e18;
}

int cli_check_memory(const cli_common *c, double need, const char *what) {
  double limit = cli_memory_limit(c);
  if (need <= limit) return 0;
  char a[32], b[32];
  if (c->max_memory > 0)
    return cli_error(c, "%s needs about %s, more than --max-memory %s; "
                     "nothing was started", what, human(need, a, sizeof a),
                     human(limit, b, sizeof b));
  return cli_error(c, "%s needs about %s, more than 75%% of this machine's "
                   "%s (raise it with --max-memory if the machine has room); "
                   "nothing was started", what, human(need, a, sizeof a),
                   human(cli_physical_memory(), b, sizeof b));
}

/* Bytes one example's rows take in a block: held about three times over
 * (as read, compacted, and the backend's centred float64 copy). */
static double bytes_per_example(const culeace_act *a) {
  int64_t t = culeace__act_tokens(a);
  return (double)(t > 0 ? t : 1) * (double)culeace__act_width(a) *
         (2.0 * (double)culeace_dtype_size(culeace__act_dtype(a)) + 8);
}

int cli_check_block_memory(const cli_common *c, const culeace_act *a,
                           double held, const char *what) {
  char line[400];
  snprintf(line, sizeof line, "%s: a block of one example (%lld rows x "
           "%lld, held about three times over) in a quarter of the budget",
           what, (long long)culeace__act_tokens(a),
           (long long)culeace__act_width(a));
  if (cli_check_memory(c, 4 * bytes_per_example(a), line)) return 1;
  snprintf(line, sizeof line, "%s: what it holds throughout in half of "
           "the budget (the rest is for blocks)", what);
  return cli_check_memory(c, 2 * held, line);
}

int64_t cli_examples_per_block(const cli_common *c, const culeace_act *a) {
  int64_t t = culeace__act_tokens(a);
  int64_t e = c->block_rows / (t > 0 ? t : 1);
  /* keep a block under a quarter of the limit */
  double per_ex = bytes_per_example(a);
  double cap = cli_memory_limit(c) / 4 / (per_ex > 0 ? per_ex : 1);
  if ((double)e > cap) e = (int64_t)cap;
  return e < 1 ? 1 : e;
}

double cli_fit_matrices(culeace_method method, int64_t k) {
  return method == CULEACE_METHOD_QUADRATIC ? 3.0 * (double)k + 9.0 : 8.0;
}

int64_t cli_group_block_rows(const cli_common *c, const culeace_act *a,
                             int64_t g) {
  int64_t t = culeace__act_tokens(a);
  int64_t e = c->block_rows / (t > 0 ? t : 1); /* each within 1/g of the
                                                   blocks' quarter */
  double per_ex = bytes_per_example(a);
  double cap = cli_memory_limit(c) / 4 / (double)(g > 0 ? g : 1) /
               (per_ex > 0 ? per_ex : 1);
  if ((double)e > cap) e = (int64_t)cap;
  int64_t cr = culeace__act_chunk_rows(a);
  if (e < 1) e = 1;
  if (cr > 0 && cr <= e) e = cr;
  else if (cr > 0) e = cr / ((cr + e - 1) / e); /* an equal part of one */
  return (e < 1 ? 1 : e) * t;
}
