/* probe_plot.c — the --plot picture of `culeace probe`: a hand-written SVG
 * (no dependencies) of held-out accuracy vs layer with std error bars, the
 * majority baseline, the control-task and after-erasure curves, the best
 * layer marked, axes and a legend; then a PNG next to it when rsvg-convert
 * or ImageMagick's convert is on PATH. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/probe.h"

extern char **environ;

enum { W = 780, H = 480, LEFT = 70, RIGHT = 190, TOP = 84, BOTTOM = 78 };

/* Text with XML's special characters escaped. */
static void xml_text(FILE *fp, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '<': fputs("&lt;", fp); break;
      case '>': fputs("&gt;", fp); break;
      case '&': fputs("&amp;", fp); break;
      case '"': fputs("&quot;", fp); break;
      case '\'': fputs("&apos;", fp); break;
      default:
        if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, fp);
    }
  }
}

typedef struct {
  double y0, y1; /* value range shown */
  double px0, px1, py0, py1;
  int64_t m;
} frame;

static double fx(const frame *f, int64_t i) {
  return f->px0 + ((double)i + 0.5) * (f->px1 - f->px0) / (double)f->m;
}

static double fy(const frame *f, double v) {
  return f->py1 - (v - f->y0) / (f->y1 - f->y0) * (f->py1 - f->py0);
}

/* Polyline through the defined values (a NaN breaks the line). */
static void series(FILE *fp, const frame *f, const double *v, int64_t stride,
                   const char *color, const char *dash, double width,
                   int dots) {
  int open = 0;
  for (int64_t i = 0; i < f->m; i++) {
    double y = v[i * stride];
    if (isnan(y)) {
      if (open) fputs("\"/>\n", fp);
      open = 0;
      continue;
    }
    if (!open)
      fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\""
                  "%s%s%s points=\"", color, width, dash ? " stroke-dasharray=\"" : "",
              dash ? dash : "", dash ? "\"" : "");
    fprintf(fp, "%s%.1f,%.1f", open ? " " : "", fx(f, i), fy(f, y));
    open = 1;
  }
  if (open) fputs("\"/>\n", fp);
  if (dots)
    for (int64_t i = 0; i < f->m; i++)
      if (!isnan(v[i * stride]))
        fprintf(fp, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                fx(f, i), fy(f, v[i * stride]), color);
}

static void write_svg(FILE *fp, const probe_report *r) {
  const probe_settings *s = r->s;
  int64_t m = r->m;
  double *acc = malloc((size_t)m * 5 * sizeof *acc);
  if (!acc) return;
  double *maj = acc + m, *ctl = acc + 2 * m, *era = acc + 3 * m,
         *sd = acc + 4 * m;
  double lo = 1, hi = 0;
  for (int64_t i = 0; i < m; i++) {
    const probe_layer_result *L = &r->layers[i];
    acc[i] = L->acc.mean;
    sd[i] = isnan(L->acc.std) ? 0 : L->acc.std;
    maj[i] = L->maj.mean;
    ctl[i] = s->control ? L->ctrl.mean : NAN;
    era[i] = s->erase ? L->erased.mean : NAN;
    double vals[5] = {acc[i] - sd[i], acc[i] + sd[i], maj[i], ctl[i], era[i]};
    for (int j = 0; j < 5; j++)
      if (!isnan(vals[j])) {
        lo = fmin(lo, vals[j]);
        hi = fmax(hi, vals[j]);
      }
  }
  if (lo > hi) lo = 0, hi = 1;
  frame f = {floor(lo * 10 - 1e-9) / 10, ceil(hi * 10 + 1e-9) / 10, LEFT,
             W - RIGHT, TOP, H - BOTTOM, m};
  if (f.y0 < 0) f.y0 = 0;
  if (f.y1 > 1) f.y1 = 1;
  if (f.y1 - f.y0 < 0.2) {
    f.y0 = fmax(0, f.y1 - 0.2);
    f.y1 = f.y0 + 0.2;
  }
  fprintf(fp, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
              "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"Helvetica, "
              "Arial, sans-serif\" font-size=\"12\">\n", W, H, W, H);
  fprintf(fp, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
  fprintf(fp, "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">"
              "Held-out probe accuracy by layer</text>\n", LEFT);
  fprintf(fp, "<text x=\"%d\" y=\"44\" fill=\"#555\">", LEFT);
  xml_text(fp, s->file);
  fputs(" ", fp);
  xml_text(fp, r->x_path);
  fprintf(fp, " | %s probe, C = %g, %lld-fold%s CV, seed %llu, %lld "
              "classes</text>\n",
          s->po.kind == CULEACE_PROBE_DIFFMEANS ? "diffmeans" : "logistic",
          s->po.C, (long long)s->folds, r->job->groups ? " group" : "",
          (unsigned long long)s->seed, (long long)r->k);
  /* grid and y axis */
  double step = f.y1 - f.y0 > 0.5 ? 0.1 : 0.05;
  for (double v = f.y0; v <= f.y1 + 1e-9; v += step) {
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"#e5e5e5\"/>\n", f.px0, fy(&f, v), f.px1, fy(&f, v));
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n",
            f.px0 - 6, fy(&f, v) + 4, v);
  }
  fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
              "stroke=\"black\"/>\n", f.px0, f.py0, f.px0, f.py1);
  fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
              "stroke=\"black\"/>\n", f.px0, f.py1, f.px1, f.py1);
  fprintf(fp, "<text transform=\"translate(18,%.1f) rotate(-90)\" "
              "text-anchor=\"middle\">held-out accuracy</text>\n",
          (f.py0 + f.py1) / 2);
  fprintf(fp, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">layer</text>\n",
          (f.px0 + f.px1) / 2, H - 18);
  /* x ticks: layer names (at most ~24 labels) */
  int64_t every = m > 24 ? (m + 23) / 24 : 1;
  for (int64_t i = 0; i < m; i++) {
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"black\"/>\n", fx(&f, i), f.py1, fx(&f, i), f.py1 + 4);
    if (i % every) continue;
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                "transform=\"rotate(-35 %.1f %.1f)\">", fx(&f, i), f.py1 + 16,
            fx(&f, i), f.py1 + 16);
    xml_text(fp, r->layers[i].name);
    fputs("</text>\n", fp);
  }
  /* curves */
  series(fp, &f, maj, 1, "#888888", "6 4", 1.5, 0);
  if (s->control) series(fp, &f, ctl, 1, "#e08214", "2 3", 1.8, 1);
  if (s->erase) series(fp, &f, era, 1, "#d7301f", NULL, 1.8, 1);
  for (int64_t i = 0; i < m; i++) /* error bars: mean +- std over folds */
    if (!isnan(acc[i]) && sd[i] > 0) {
      double x = fx(&f, i), a = fy(&f, fmin(f.y1, acc[i] + sd[i])),
             b = fy(&f, fmax(f.y0, acc[i] - sd[i]));
      fprintf(fp, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" "
                  "stroke=\"#2166ac\" stroke-width=\"1.2\" fill=\"none\"/>\n",
              x, a, b, x - 4, a, x + 4, x - 4, b, x + 4);
    }
  series(fp, &f, acc, 1, "#2166ac", NULL, 2.2, 1);
  /* best layer */
  const probe_layer_result *B = &r->layers[r->best];
  if (!isnan(B->acc.mean)) {
    double bx = fx(&f, r->best), by = fy(&f, B->acc.mean);
    fprintf(fp, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"8\" fill=\"none\" "
                "stroke=\"#1a9850\" stroke-width=\"2.5\"/>\n", bx, by);
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                "fill=\"#1a9850\" font-weight=\"bold\">best: ", bx, by - 14);
    xml_text(fp, B->name);
    fprintf(fp, " (%.3f)</text>\n", B->acc.mean);
  }
  /* legend */
  double lx = W - RIGHT + 18, ly = TOP + 6;
  char erased_label[48];
  snprintf(erased_label, sizeof erased_label, "after %s erasure",
           s->erase_method == CULEACE_METHOD_LEACE
               ? "LEACE"
               : culeace_method_name(s->erase_method));
  struct {
    const char *label, *color, *dash;
    int on;
  } items[5] = {{"accuracy (mean \u00b1 std)", "#2166ac", NULL, 1},
                {"majority baseline", "#888888", "6 4", 1},
                {"control task", "#e08214", "2 3", s->control},
                {erased_label, "#d7301f", NULL, s->erase},
                {"best layer", "#1a9850", NULL, 1}};
  for (int j = 0; j < 5; j++) {
    if (!items[j].on) continue;
    if (j == 4)
      fprintf(fp, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"none\" "
                  "stroke=\"%s\" stroke-width=\"2.5\"/>\n", lx + 12, ly,
              items[j].color);
    else
      fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                  "stroke=\"%s\" stroke-width=\"2\"%s%s%s/>\n", lx, ly, lx + 24,
              ly, items[j].color, items[j].dash ? " stroke-dasharray=\"" : "",
              items[j].dash ? items[j].dash : "", items[j].dash ? "\"" : "");
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n",
            lx + 30, ly + 4, items[j].label);
    ly += 20;
  }
  fputs("</svg>\n", fp);
  free(acc);
}

/* PATH.png for PATH.svg (PATH + ".png" otherwise); malloc'd. */
static char *png_path(const char *path) {
  size_t len = strlen(path);
  char *p = malloc(len + 5);
  if (!p) return NULL;
  memcpy(p, path, len + 1);
  if (len >= 4 && !strcmp(path + len - 4, ".svg")) p[len - 4] = 0;
  strcat(p, ".png");
  return p;
}

/* Finds an executable called name on PATH. */
static int on_path(const char *name) {
  const char *path = getenv("PATH");
  if (!path) return 0;
  char buf[4096];
  while (*path) {
    const char *end = strchr(path, ':');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    if (len && len + strlen(name) + 2 < sizeof buf) {
      memcpy(buf, path, len);
      buf[len] = '/';
      strcpy(buf + len + 1, name);
      struct stat sb;
      if (stat(buf, &sb) == 0 && S_ISREG(sb.st_mode) && access(buf, X_OK) == 0)
        return 1;
    }
    if (!end) break;
    path = end + 1;
  }
  return 0;
}

/* Runs argv (output silenced); 0 when it exits with status 0. */
static int run_quiet(char *const argv[]) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The PNG next to the SVG, through whichever converter exists. */
static void write_png(const cli_common *c, const char *svg) {
  const char *tool = on_path("rsvg-convert") ? "rsvg-convert"
                     : on_path("convert")    ? "convert"
                                             : NULL;
  if (!tool) return;
  char *png = png_path(svg);
  size_t tl = png ? strlen(png) + 40 : 0;
  char *tmp = png ? malloc(tl) : NULL, *dst = png ? malloc(tl + 8) : NULL;
  if (!png || !tmp || !dst) goto done;
  snprintf(tmp, tl, "%s.tmp%ld", png, (long)getpid());
  int rc;
  if (!strcmp(tool, "rsvg-convert")) {
    char *argv[] = {"rsvg-convert", "-f", "png", "-o", tmp, (char *)svg, NULL};
    rc = run_quiet(argv);
  } else {
    snprintf(dst, tl + 8, "png:%s", tmp);
    char *argv[] = {"convert", (char *)svg, dst, NULL};
    rc = run_quiet(argv);
  }
  if (rc == 0 && rename(tmp, png) == 0) {
    if (!c->quiet && !c->json)
      fprintf(stderr, "%s: wrote %s (%s)\n", c->prog, png, tool);
  } else {
    unlink(tmp);
    if (!c->quiet)
      fprintf(stderr, "%s: warning: %s could not convert %s to PNG; the SVG "
              "is written\n", c->prog, tool, svg);
  }
done:
  free(png);
  free(tmp);
  free(dst);
}

int probe_write_plot(const cli_common *c, const probe_report *r,
                     const char *path) {
  char *tmp;
  FILE *fp = probe_open_tmp(c, path, &tmp);
  if (!fp) return 1;
  write_svg(fp, r);
  if (probe_commit_tmp(c, fp, tmp, path)) return 1;
  write_png(c, path);
  return 0;
}

void probe_remove_plot(const char *path) {
  char *png = png_path(path);
  unlink(path);
  if (png) unlink(png);
  free(png);
}
