/* progress.c — a one-line progress bar on stderr (rows/s, MB/s, ETA), drawn
 * only when stderr is a terminal and --quiet is not given. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_start(cli_progress *p, const cli_common *c,
                        const char *label, double total_rows,
                        double bytes_per_row) {
  p->enabled = !c->quiet && !c->json && isatty(2);
  p->label = label;
  p->t0 = p->last = now();
  p->total_rows = total_rows;
  p->done_rows = 0;
  p->bytes_per_row = bytes_per_row;
}

static void human(double v, char *buf, size_t len) {
  const char *u = "";
  if (v >= 1e9) { v /= 1e9; u = "G"; }
  else if (v >= 1e6) { v /= 1e6; u = "M"; }
  else if (v >= 1e3) { v /= 1e3; u = "k"; }
  snprintf(buf, len, "%.1f%s", v, u);
}

static void draw(cli_progress *p, const char *what, double t) {
  double el = t - p->t0, frac = p->total_rows > 0 ? p->done_rows / p->total_rows : 1;
  if (frac > 1) frac = 1;
  double rate = el > 0 ? p->done_rows / el : 0;
  double eta = rate > 0 ? (p->total_rows - p->done_rows) / rate : 0;
  char bar[21], r[16], mb[16];
  int fill = (int)(frac * 20);
  for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
  bar[20] = 0;
  human(rate, r, sizeof r);
  human(rate * p->bytes_per_row, mb, sizeof mb);
  fprintf(stderr, "\r%s %-14.14s [%s] %3.0f%% %s rows/s %sB/s ETA %d:%02d  ",
          p->label, what ? what : "", bar, frac * 100, r, mb,
          (int)(eta / 60), (int)eta % 60);
  fflush(stderr);
}

void cli_progress_add(cli_progress *p, double rows, const char *what) {
  p->done_rows += rows;
  if (!p->enabled) return;
  double t = now();
  if (t - p->last < 0.1 && p->done_rows < p->total_rows) return;
  p->last = t;
  draw(p, what, t);
}

void cli_progress_end(cli_progress *p) {
  if (!p->enabled) return;
  draw(p, "done", now());
  fputc('\n', stderr);
}
