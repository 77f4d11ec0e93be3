/* floor.c — measures this machine's floor for the fit benchmark: SYRK rate
 * (float32 and float64) on an (n, d) block, the time of a float64 /
 * float32 symmetric eigendecomposition of size d, and of a float64
 * Cholesky factorisation of the same d x d covariance (what culeace's fit
 * runs in place of the eigendecomposition when the covariance is well
 * conditioned), with the same OpenBLAS / LAPACKE the library links. Prints
 * one JSON object.
 * usage: culeace_bench_floor N D REPEATS [both|f64|f32|fit]
 * (the precisions to time, default both; the others print as null; fit:
 * both SYRKs, dsyevd and dpotrf, no ssyevd). */
#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  return v[n / 2];
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s N D REPEATS [both|f64|f32|fit]\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[1]), d = atoi(argv[2]), reps = atoi(argv[3]);
  const char *which = argc == 5 ? argv[4] : "both";
  int fit = !strcmp(which, "fit");
  int do64 = fit || !strcmp(which, "both") || !strcmp(which, "f64");
  int do32 = fit || !strcmp(which, "both") || !strcmp(which, "f32");
  int eig32 = do32 && !fit;
  if (n < 1 || d < 1 || reps < 1 || reps > 100 || (!do64 && !do32)) return 2;
  float *xs = malloc((size_t)n * d * 4), *cs = malloc((size_t)d * d * 4);
  double *xd = malloc((size_t)n * d * 8), *cd = malloc((size_t)d * d * 8);
  double *a = malloc((size_t)d * d * 8), *w = malloc((size_t)d * 8);
  double *ch = malloc((size_t)d * d * 8);
  float *as = malloc((size_t)d * d * 4), *ws = malloc((size_t)d * 4);
  size_t lwork = 1 + 6 * (size_t)d + 2 * (size_t)d * d, liwork = 3 + 5 * (size_t)d;
  double *work = malloc(lwork * 8);
  float *works = malloc(lwork * 4);
  lapack_int *iwork = malloc(liwork * sizeof *iwork);
  if (!xs || !cs || !xd || !cd || !a || !w || !ch || !as || !ws || !work ||
      !works || !iwork)
    return 1;
  unsigned s = 1;
  for (size_t i = 0; i < (size_t)n * d; i++) {
    s = s * 1664525u + 1013904223u;
    xd[i] = (double)(s >> 8) / 16777216.0 - 0.5;
    xs[i] = (float)xd[i];
  }
  double t_s[100], t_d[100], t_es[100], t_ed[100], t_ch[100];
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    t_s[r] = t_d[r] = t_es[r] = t_ed[r] = 0.0;
    if (do32) {
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n, 1.0f, xs, d, 0.0f, cs, d);
      t_s[r] = now() - t0;
    }
    t0 = now();
    if (do64) {
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n, 1.0, xd, d, 0.0, cd, d);
      t_d[r] = now() - t0;
    } else { /* the eigenproblem still needs a covariance */
      for (size_t i = 0; i < (size_t)d * d; i++) cd[i] = (double)cs[i];
    }
    for (size_t i = 0; i < (size_t)d * d; i++) a[i] = cd[i] / n;
    for (int i = 0; i < d; i++)
      for (int j = 0; j < i; j++) a[(size_t)i * d + j] = a[(size_t)j * d + i];
    for (size_t i = 0; i < (size_t)d * d; i++) as[i] = (float)a[i];
    memcpy(ch, a, (size_t)d * d * 8);
    t0 = now();
    lapack_int pinfo = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', d, ch, d);
    t_ch[r] = pinfo == 0 ? now() - t0 : -1.0; /* -1: not positive definite */
    if (do64) {
      t0 = now();
      LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'U', d, a, d, w, work,
                          (lapack_int)lwork, iwork, (lapack_int)liwork);
      t_ed[r] = now() - t0;
    }
    if (eig32) {
      t0 = now();
      LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'U', d, as, d, ws, works,
                          (lapack_int)lwork, iwork, (lapack_int)liwork);
      t_es[r] = now() - t0;
    }
  }
  double flops = (double)n * d * d; /* SYRK: n d^2 multiply-adds ~ n d^2 flops*2/2 */
  double ms = median(t_s, reps), md = median(t_d, reps);
  double es = median(t_es, reps), ed = median(t_ed, reps);
  double ct = median(t_ch, reps);
  char f[5][32];
  snprintf(f[0], sizeof f[0], do32 ? "%.6f" : "null", ms);
  snprintf(f[1], sizeof f[1], do64 ? "%.6f" : "null", md);
  snprintf(f[2], sizeof f[2], do64 ? "%.6f" : "null", ed);
  snprintf(f[3], sizeof f[3], eig32 ? "%.6f" : "null", es);
  snprintf(f[4], sizeof f[4], ct >= 0 ? "%.6f" : "null", ct);
  printf("{\"n\": %d, \"d\": %d, \"ssyrk_s\": %s, \"dsyrk_s\": %s, "
         "\"ssyrk_gflops\": %.1f, \"dsyrk_gflops\": %.1f, \"dsyevd_s\": %s, "
         "\"ssyevd_s\": %s, \"dpotrf_s\": %s}\n", n, d, f[0], f[1],
         do32 ? flops / ms / 1e9 : 0.0, do64 ? flops / md / 1e9 : 0.0, f[2],
         f[3], f[4]);
  return 0;
}
