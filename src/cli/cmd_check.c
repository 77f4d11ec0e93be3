/* cmd_check.c — `culeace check`: measures on given data what the LEACE
 * guarantee promises, per layer: the largest |cross-covariance| between x
 * and z, and the largest gap between a class mean and the overall mean,
 * before and after erasure (erasure done in memory, in the data's dtype;
 * oracle and quadratic erasers edit each row with its --z label,
 * oracle_z.c). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/oracle_z.h"
#include "core/ctx.h"

static const char *check_help =
    "usage: culeace check ERASERS.h5 FILE --x PATH --z PATH [options]\n"
    "\n"
    "Erases the activations of FILE in memory and reports, per layer, the\n"
    "largest |Cov(x, z)| entry and the largest |class mean - mean| entry\n"
    "before and after erasure (for quadratic erasers also the largest\n"
    "|class covariance - their prior-weighted mean| entry). On the rows the\n"
    "erasers were fitted on, the\n"
    "after/before ratio is at rounding level; on held-out rows it shows how\n"
    "well the erasure generalises.\n"
    "\n"
    "  --z PATH            labels (as for fit)\n"
    "\n";

typedef struct {
  int64_t rows;
  double xz_before, xz_after, mean_before, mean_after;
  double cov_before, cov_after; /* quadratic erasers; NAN otherwise */
} check_result;

static double max_abs(const double *v, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
  return m;
}

/* Erases the block's n rows in place: with the eraser, or for one that
 * takes labels (zm) with each row's label (z built into *zbuf, grown as
 * needed). */
static culeace_status erase_block(culeace_ctx *ctx, const culeace_eraser *e,
                                  const oracle_zmap *zm,
                                  const culeace_labels *lab,
                                  const cli_rows *rows, culeace_dtype dt,
                                  int64_t d, double **zbuf, int64_t *zcap) {
  int64_t n = rows->n_rows;
  if (!zm) return culeace_eraser_apply(ctx, e, rows->rows, dt, n, d);
  if (n > *zcap) {
    size_t cnt = 0;
    free(*zbuf);
    *zbuf = culeace__mul_size((size_t)n, (size_t)zm->zd, &cnt)
                ? culeace__alloc(ctx, cnt, sizeof **zbuf, "a z block")
                : NULL;
    *zcap = *zbuf ? n : 0;
    if (!*zbuf) return CULEACE_ERR_OUT_OF_MEMORY;
  }
  return cli_erase_labelled(ctx, e, zm, lab, rows->rows, dt, n, d,
                            rows->classes, rows->z, NULL, *zbuf);
}

/* Largest |Sigma_xz| entry and |class mean - mean| entry of a fitter. */
static int measure(culeace_fitter *f, int64_t d, const culeace_labels *lab,
                   double *xz, double *gap) {
  int64_t zd = culeace_fitter_z_dim(f);
  int64_t k = lab->continuous ? 0 : lab->n_classes;
  double *s = malloc((size_t)(d * zd) * 8), *mx = malloc((size_t)d * 8);
  double *cm = k ? malloc((size_t)(k * d) * 8) : NULL;
  int rc = 1;
  if (!s || !mx || (k && !cm)) goto done;
  if (culeace_fitter_moments(f, mx, NULL, s, NULL)) goto done;
  *xz = max_abs(s, d * zd);
  *gap = NAN;
  if (k) {
    if (culeace_fitter_class_means(f, cm, NULL)) goto done;
    double g = 0;
    for (int64_t c = 0; c < k; c++)
      for (int64_t j = 0; j < d; j++)
        if (!isnan(cm[c * d + j])) g = fmax(g, fabs(cm[c * d + j] - mx[j]));
    *gap = g;
  }
  rc = 0;
done:
  free(s);
  free(mx);
  free(cm);
  return rc;
}

/* Quadratic fitters: the largest |Sigma_c - sum_c prior_c Sigma_c| entry
 * over the classes with >= 2 rows. */
static int measure_cov(culeace_fitter *f, int64_t d, int64_t k, double *gap) {
  size_t dd = (size_t)d * (size_t)d;
  double *covs = malloc(dd * (size_t)k * 8), *avg = malloc(dd * 8);
  int64_t *cnt = malloc((size_t)k * sizeof *cnt);
  int rc = 1;
  if (!covs || !avg || !cnt || culeace_fitter_class_covariances(f, covs) ||
      culeace_fitter_class_means(f, NULL, cnt))
    goto done;
  double tot = 0, g = 0;
  for (int64_t c = 0; c < k; c++) tot += cnt[c] >= 2 ? (double)cnt[c] : 0;
  memset(avg, 0, dd * 8);
  for (int64_t c = 0; c < k; c++)
    for (size_t i = 0; cnt[c] >= 2 && i < dd; i++)
      avg[i] += (double)cnt[c] / tot * covs[(size_t)c * dd + i];
  for (int64_t c = 0; c < k; c++)
    for (size_t i = 0; cnt[c] >= 2 && i < dd; i++)
      g = fmax(g, fabs(covs[(size_t)c * dd + i] - avg[i]));
  *gap = g;
  rc = 0;
done:
  free(covs);
  free(avg);
  free(cnt);
  return rc;
}

static void json_num(double v) {
  if (isnan(v)) printf("null");
  else printf("%.6g", v);
}

static void print_results(const cli_common *c, const cli_layer_eraser *items,
                          const check_result *r, int64_t m) {
  if (c->json) {
    printf("{\"layers\": [");
    for (int64_t i = 0; i < m; i++) {
      printf("%s{\"layer\": %lld, \"name\": ", i ? ", " : "",
             (long long)items[i].layer);
      cli_json_str(stdout, items[i].name);
      printf(", \"rows\": %lld, \"max_abs_cov_xz_before\": ",
             (long long)r[i].rows);
      json_num(r[i].xz_before);
      printf(", \"max_abs_cov_xz_after\": ");
      json_num(r[i].xz_after);
      printf(", \"max_class_mean_gap_before\": ");
      json_num(r[i].mean_before);
      printf(", \"max_class_mean_gap_after\": ");
      json_num(r[i].mean_after);
      printf(", \"max_class_cov_gap_before\": ");
      json_num(r[i].cov_before);
      printf(", \"max_class_cov_gap_after\": ");
      json_num(r[i].cov_after);
      printf("}");
    }
    printf("]}\n");
    return;
  }
  int quad = 0;
  for (int64_t i = 0; i < m; i++) quad |= !isnan(r[i].cov_before);
  printf("%-12s %10s %13s %13s %9s %13s %13s", "layer", "rows",
         "|cov| before", "|cov| after", "ratio", "gap before", "gap after");
  if (quad) printf(" %13s %13s", "covgap before", "covgap after");
  printf("\n");
  for (int64_t i = 0; i < m; i++) {
    printf("%-12s %10lld %13.4e %13.4e %9.1e %13.4e %13.4e", items[i].name,
           (long long)r[i].rows, r[i].xz_before, r[i].xz_after,
           r[i].xz_before > 0 ? r[i].xz_after / r[i].xz_before : 0.0,
           r[i].mean_before, r[i].mean_after);
    if (quad && isnan(r[i].cov_before)) printf(" %13s %13s", "-", "-");
    else if (quad) printf(" %13.4e %13.4e", r[i].cov_before, r[i].cov_after);
    printf("\n");
  }
  if (quad)
    printf("covgap: largest |class covariance - their prior-weighted mean| "
           "entry (quadratic erasers)\n");
}

int cmd_check(int argc, char **argv) {
  cli_common c;
  cli_common_init(&c, "culeace check");
  const char *z_path = NULL;
  static struct option opts[] = {
      CLI_COMMON_LONG_OPTIONS,
      {"z", 1, 0, 0}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  int idx, ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
    if (ch == 'h') {
      printf("%s%s", check_help, cli_common_help);
      return 0;
    }
    if (ch != 0) return EXIT_USAGE;
    int r = cli_common_option(&c, opts[idx].name, optarg);
    if (r < 0) return EXIT_USAGE;
    if (!r && !strcmp(opts[idx].name, "z")) z_path = optarg;
  }
  if (optind != argc - 2)
    return cli_error(&c, "expected ERASERS.h5 and FILE (see --help)"),
           EXIT_USAGE;
  const char *erasers = argv[optind], *file = argv[optind + 1];
  if (!c.spec.x_path)
    return cli_error(&c, "--x PATH (the activations) is required"), EXIT_USAGE;
  if (!z_path)
    return cli_error(&c, "--z PATH (the labels) is required"), EXIT_USAGE;

  int rc = 1;
  const char *inputs[] = {erasers, file};
  if (cli_precheck_files(&c, 2, inputs)) return 1;
  culeace_ctx *ctx = cli_open_ctx(&c);
  culeace_act *act = NULL;
  culeace_labels lab;
  memset(&lab, 0, sizeof lab);
  cli_layer_eraser *items = NULL;
  int64_t m = 0;
  check_result *res = NULL;
  cli_rows rows;
  memset(&rows, 0, sizeof rows);
  culeace_fitter *before = NULL, *after = NULL;
  oracle_zmap zm;
  memset(&zm, 0, sizeof zm);
  double *zbuf = NULL;
  int64_t zcap = 0;
  if (!ctx) return 1;
  if (culeace__act_open(ctx, file, &c.spec, 0, &act) ||
      culeace__labels_read_masked(ctx, file, z_path,
                                  culeace__act_examples(act),
                                  culeace__act_tokens(act), c.spec.x_path,
                                  culeace__act_mask(act), &lab)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  m = cli_load_erasers(&c, ctx, erasers, act, &items);
  if (m < 0) goto done;
  res = calloc((size_t)m, sizeof *res);
  if (!res) {
    cli_error(&c, "out of memory");
    goto done;
  }
  int64_t d = culeace__act_width(act);
  culeace_dtype dt = culeace__act_dtype(act);
  culeace_fit_opts o; /* only Sigma_xz and means are needed: orth skips xx */
  culeace_fit_opts_init(&o);
  o.method = CULEACE_METHOD_ORTH;
  culeace_z_kind zk = lab.continuous ? CULEACE_Z_CONTINUOUS : CULEACE_Z_CLASSES;
  int64_t zk_n = lab.continuous ? lab.k : lab.n_classes;
  cli_progress prog;
  cli_progress_start(&prog, &c, "check",
                     (double)(culeace__act_examples(act) *
                              culeace__act_tokens(act)) * (double)m,
                     (double)d * (double)culeace_dtype_size(dt));
  for (int64_t i = 0; i < m; i++) {
    int64_t l = items[i].layer;
    culeace_eraser_info info;
    culeace_eraser_info_get(items[i].e, &info);
    cli_oracle_zmap_free(&zm);
    memset(&zm, 0, sizeof zm);
    zcap = 0; /* the z width may change with the eraser */
    if (cli_takes_labels(info.method) &&
        cli_oracle_zmap(&c, erasers, &items[i], &lab, &zm))
      goto done;
    /* quadratic erasers: class covariances too */
    o.method = info.method == CULEACE_METHOD_QUADRATIC && !lab.continuous
                   ? CULEACE_METHOD_QUADRATIC
                   : CULEACE_METHOD_ORTH;
    if (culeace_fitter_create(ctx, d, zk_n, zk, &o, &before) ||
        culeace_fitter_create(ctx, d, zk_n, zk, &o, &after)) {
      cli_error_ctx(&c, ctx, "");
      goto done;
    }
    if (cli_rows_open(&rows, &c, ctx, act, file, l, &lab)) goto done;
    int more;
    culeace_status st = CULEACE_OK;
    while (!st && (more = cli_rows_next(&rows)) == 1) {
      int64_t n = rows.n_rows;
      if (n == 0) continue;
      for (int pass = 0; pass < 2 && !st; pass++) {
        culeace_fitter *f = pass ? after : before;
        if (pass)
          st = erase_block(ctx, items[i].e, zm.zd ? &zm : NULL, &lab, &rows,
                           dt, d, &zbuf, &zcap);
        if (!st)
          st = lab.continuous
                   ? culeace_fitter_update_continuous(f, rows.rows, dt, n, d,
                                                      rows.z, lab.k)
                   : culeace_fitter_update_classes(f, rows.rows, dt, n, d,
                                                   rows.classes);
      }
      cli_progress_add(&prog, (double)rows.raw_rows, items[i].name);
    }
    if (more < 0) goto done;
    if (st == CULEACE_ERR_NONFINITE) {
      cli_rows_nonfinite_error(&rows);
      goto done;
    }
    if (st) {
      cli_error_ctx(&c, ctx, culeace__act_dataset_path(act, l));
      goto done;
    }
    res[i].rows = culeace_fitter_rows(before);
    if (measure(before, d, &lab, &res[i].xz_before, &res[i].mean_before) ||
        measure(after, d, &lab, &res[i].xz_after, &res[i].mean_after)) {
      cli_error_ctx(&c, ctx, culeace__act_dataset_path(act, l));
      goto done;
    }
    res[i].cov_before = res[i].cov_after = NAN;
    if (o.method == CULEACE_METHOD_QUADRATIC &&
        (measure_cov(before, d, zk_n, &res[i].cov_before) ||
         measure_cov(after, d, zk_n, &res[i].cov_after))) {
      cli_error_ctx(&c, ctx, culeace__act_dataset_path(act, l));
      goto done;
    }
    culeace_fitter_free(before);
    culeace_fitter_free(after);
    before = after = NULL;
    cli_rows_close(&rows);
  }
  cli_progress_end(&prog);
  print_results(&c, items, res, m);
  rc = 0;
done:
  culeace_fitter_free(before);
  culeace_fitter_free(after);
  cli_oracle_zmap_free(&zm);
  free(zbuf);
  cli_rows_close(&rows);
  cli_free_erasers(items, m);
  culeace__labels_free(&lab);
  if (act) culeace__act_close(act);
  culeace_ctx_free(ctx);
  free(res);
  return rc;
}
