/* cmd_score.c — `culeace score`: applies the probes of a probe file (from
 * `culeace probe --save`) to new activations, matching probes to layers by
 * name, streaming the rows in blocks, and writes each layer's class
 * probabilities (n, k) to an HDF5 score file or a CSV (atomically). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_fit.h"
#include "cli/probe.h"
#include "core/convert.h"
#include "io/score_file.h"

static const char *score_help =
    "usage: culeace score PROBES.h5 FILE --x PATH (-o SCORES.h5 | --csv OUT)\n"
    "\n"
    "Applies the probes saved by `culeace probe --save` to the activations\n"
    "of FILE: each probe scores the layer of the same name. Writes, per\n"
    "layer, the class probabilities of every kept row (masked rows are left\n"
    "out):\n"
    "  -o, --output FILE   HDF5: /scores/LAYER (n, k) float64 and\n"
    "                      /row_index/LAYER (n,) int64 (flat row of each\n"
    "                      score: example * t + token); see docs/FORMAT.md\n"
    "  --csv FILE          CSV: layer,row,p_<class value>...\n"
    "\n";

typedef struct {
  culeace_probe *p;
  int64_t layer, k;
  char name[256];
  char kind[16];
  int64_t *class_values; /* (k) */
  int64_t rows;
  int64_t *predicted;    /* (k) rows whose argmax is each class */
} score_item;

static void items_free(score_item *it, int64_t m) {
  for (int64_t i = 0; it && i < m; i++) {
    culeace_probe_free(it[i].p);
    free(it[i].class_values);
    free(it[i].predicted);
  }
  free(it);
}

/* Loads the probes of the file that match a selected layer of act. */
static int64_t load_probes(const cli_common *c, culeace_ctx *ctx,
                           const char *path, culeace_act *act,
                           score_item **out) {
  culeace__probe_file *pf = NULL;
  *out = NULL;
  if (culeace__probe_file_open(ctx, path, &pf))
    return cli_error_ctx(c, ctx, ""), -1;
  int64_t cnt = culeace__probe_file_count(pf), m = 0;
  int64_t *sel = NULL, nsel = cli_parse_layers(c, c->layers, act, &sel);
  score_item *items = calloc((size_t)(cnt ? cnt : 1), sizeof *items);
  if (nsel < 0 || !items) {
    if (!items && nsel >= 0) cli_error(c, "out of memory");
    goto fail;
  }
  int64_t L = culeace__act_layers(act), d = culeace__act_width(act);
  for (int64_t i = 0; i < cnt; i++) {
    culeace_probe *p = NULL;
    culeace__probe_meta meta;
    if (culeace__probe_file_load(pf, i, &p, &meta)) {
      cli_error_ctx(c, ctx, "");
      goto fail;
    }
    culeace_probe_info in;
    culeace_probe_info_get(p, &in);
    int64_t layer = -1;
    for (int64_t l = 0; l < L; l++)
      if (!strcmp(culeace__act_layer_name(act, l), meta.layer_name)) layer = l;
    if (layer < 0 && cnt == 1 && L == 1) layer = 0;
    if (layer < 0) {
      cli_error(c, "probe %lld of %s was fitted on layer '%s' (%s), but the "
                "activations %s have no layer of that name", (long long)i,
                path, meta.layer_name, meta.source_dataset, c->spec.x_path);
      culeace_probe_free(p);
      goto fail;
    }
    if (in.d != d) {
      cli_error(c, "probe %lld of %s (layer '%s') has d = %lld, but %s has "
                "d = %lld", (long long)i, path, meta.layer_name,
                (long long)in.d, culeace__act_dataset_path(act, layer),
                (long long)d);
      culeace_probe_free(p);
      goto fail;
    }
    int wanted = 0;
    for (int64_t s = 0; s < nsel; s++) wanted |= sel[s] == layer;
    if (!wanted) {
      culeace_probe_free(p);
      continue;
    }
    score_item *it = &items[m++];
    it->p = p;
    it->layer = layer;
    it->k = in.n_classes;
    snprintf(it->name, sizeof it->name, "%s",
             culeace__act_layer_name(act, layer));
    snprintf(it->kind, sizeof it->kind, "%s",
             in.kind == CULEACE_PROBE_DIFFMEANS ? "diffmeans" : "logistic");
    it->class_values = malloc((size_t)in.n_classes * sizeof(int64_t));
    it->predicted = calloc((size_t)in.n_classes, sizeof(int64_t));
    if (!it->class_values || !it->predicted) {
      cli_error(c, "out of memory");
      goto fail;
    }
    memcpy(it->class_values, meta.class_values,
           (size_t)in.n_classes * sizeof(int64_t));
  }
  if (m == 0) {
    cli_error(c, "no probe of %s matches the selected layers", path);
    goto fail;
  }
  free(sel);
  culeace__probe_file_free(pf);
  *out = items;
  return m;
fail:
  items_free(items, m);
  free(sel);
  culeace__probe_file_free(pf);
  return -1;
}

/* Scores one layer: proba (rows, k) and row ids appended to growing arrays,
 * or written to the CSV. */
static int score_layer(const cli_common *c, culeace_ctx *ctx,
                       culeace_act *act, const char *file, score_item *it,
                       FILE *csv, culeace__score_file *sf) {
  int64_t d = culeace__act_width(act), k = it->k;
  culeace_dtype dt = culeace__act_dtype(act);
  int64_t N = culeace__act_examples(act) * culeace__act_tokens(act);
  cli_rows rs;
  if (cli_rows_open(&rs, c, ctx, act, file, it->layer, NULL)) return 1;
  int64_t blk = cli_examples_per_block(c, act) * culeace__act_tokens(act);
  float *xf = malloc((size_t)blk * (size_t)d * sizeof *xf);
  double *pb = malloc((size_t)blk * (size_t)k * sizeof *pb);
  double *all = sf ? malloc((size_t)(N ? N : 1) * (size_t)k * sizeof *all)
                   : NULL;
  int64_t *rows = sf ? malloc((size_t)(N ? N : 1) * sizeof *rows) : NULL;
  int rc = 1, more;
  if (!xf || !pb || (sf && (!all || !rows))) {
    cli_error(c, "out of memory scoring layer %s", it->name);
    goto done;
  }
  it->rows = 0;
  while ((more = cli_rows_next(&rs)) == 1) {
    int64_t n = rs.n_rows;
    if (n == 0) continue;
    if (!c->drop_nonfinite &&
        culeace__first_nonfinite(rs.rows, dt, n, d, d, NULL) >= 0) {
      cli_rows_nonfinite_error(&rs);
      goto done;
    }
    culeace__to_f32(rs.rows, dt, n * d, xf);
    if (culeace_probe_predict_proba(ctx, it->p, xf, n, d, pb)) {
      cli_error_ctx(c, ctx, culeace__act_dataset_path(act, it->layer));
      goto done;
    }
    for (int64_t i = 0; i < n; i++) {
      const double *pr = pb + i * k;
      int64_t best = 0;
      for (int64_t j = 1; j < k; j++)
        if (pr[j] > pr[best]) best = j;
      it->predicted[best]++;
      if (csv) {
        fputc('"', csv);
        for (const char *s = it->name; *s; s++) {
          if (*s == '"') fputc('"', csv);
          fputc(*s, csv);
        }
        fprintf(csv, "\",%lld", (long long)rs.row_ids[i]);
        for (int64_t j = 0; j < k; j++) fprintf(csv, ",%.17g", pr[j]);
        fputc('\n', csv);
      } else {
        memcpy(all + (it->rows + i) * k, pr, (size_t)k * sizeof *pr);
        rows[it->rows + i] = rs.row_ids[i];
      }
    }
    it->rows += n;
  }
  if (more < 0) goto done;
  if (sf && culeace__score_file_add(sf, it->name, it->layer, it->kind,
                                    it->rows, k, all, rows,
                                    it->class_values)) {
    cli_error_ctx(c, ctx, "");
    goto done;
  }
  rc = 0;
done:
  cli_rows_close(&rs);
  free(xf);
  free(pb);
  free(all);
  free(rows);
  return rc;
}

static void print_results(const cli_common *c, const char *out,
                          const score_item *it, int64_t m) {
  if (c->json) {
    printf("{\"output\": ");
    cli_json_str(stdout, out);
    printf(", \"layers\": [");
    for (int64_t i = 0; i < m; i++) {
      printf("%s{\"layer\": %lld, \"name\": ", i ? ", " : "",
             (long long)it[i].layer);
      cli_json_str(stdout, it[i].name);
      printf(", \"rows\": %lld, \"kind\": \"%s\", \"classes\": [",
             (long long)it[i].rows, it[i].kind);
      for (int64_t j = 0; j < it[i].k; j++)
        printf("%s%lld", j ? ", " : "", (long long)it[i].class_values[j]);
      printf("], \"predicted_counts\": [");
      for (int64_t j = 0; j < it[i].k; j++)
        printf("%s%lld", j ? ", " : "", (long long)it[i].predicted[j]);
      printf("]}");
    }
    printf("]}\n");
    return;
  }
  printf("%-12s %10s  %s\n", "layer", "rows", "predicted (class value: rows)");
  for (int64_t i = 0; i < m; i++) {
    printf("%-12s %10lld ", it[i].name, (long long)it[i].rows);
    for (int64_t j = 0; j < it[i].k; j++)
      printf(" %lld: %lld", (long long)it[i].class_values[j],
             (long long)it[i].predicted[j]);
    printf("\n");
  }
  printf("wrote scores of %lld layer%s to %s\n", (long long)m,
         m == 1 ? "" : "s", out);
}

int cmd_score(int argc, char **argv) {
  cli_common c;
  cli_common_init(&c, "culeace score");
  const char *out = NULL, *csv_path = NULL;
  static struct option opts[] = {
      CLI_COMMON_LONG_OPTIONS,
      {"csv", 1, 0, 0}, {"output", 1, 0, 'o'}, {"help", 0, 0, 'h'},
      {0, 0, 0, 0}};
  int idx, ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "o:h", opts, &idx)) != -1) {
    if (ch == 'h') {
      printf("%s%s", score_help, cli_common_help);
      return 0;
    }
    if (ch == 'o') {
      out = optarg;
      continue;
    }
    if (ch != 0) return EXIT_USAGE;
    int r = cli_common_option(&c, opts[idx].name, optarg);
    if (r < 0) return EXIT_USAGE;
    if (!r && !strcmp(opts[idx].name, "csv")) csv_path = optarg;
  }
  if (optind != argc - 2)
    return cli_error(&c, "expected PROBES.h5 and FILE (see --help)"),
           EXIT_USAGE;
  const char *probes = argv[optind], *file = argv[optind + 1];
  if (!c.spec.x_path)
    return cli_error(&c, "--x PATH (the activations) is required"), EXIT_USAGE;
  if (!out == !csv_path)
    return cli_error(&c, "give exactly one of -o SCORES.h5 and --csv FILE"),
           EXIT_USAGE;
  const char *dst = out ? out : csv_path;
  if (cli_same_file(dst, file) || cli_same_file(dst, probes) ||
      !strcmp(dst, file) || !strcmp(dst, probes))
    return cli_error(&c, "%s %s is an input file; choose another path",
                     out ? "-o" : "--csv", dst), EXIT_USAGE;

  int rc = 1;
  const char *inputs[] = {probes, file};
  if (mpi_refuse_launch(&c, "score")) return 1;
  if (cli_precheck_files(&c, 2, inputs)) return 1;
  culeace_ctx *ctx = cli_open_ctx(&c);
  culeace_act *act = NULL;
  score_item *items = NULL;
  int64_t m = 0;
  culeace__score_file *sf = NULL;
  FILE *csv = NULL;
  char *csv_tmp = NULL;
  if (!ctx) return 1;
  if (culeace__act_open(ctx, file, &c.spec, 0, &act)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  m = load_probes(&c, ctx, probes, act, &items);
  if (m < 0) {
    m = 0;
    goto done;
  }
  { /* -o holds a layer's probabilities and row ids until it is written */
    int64_t N = culeace__act_examples(act) * culeace__act_tokens(act), kmax = 0;
    for (int64_t i = 0; i < m; i++) kmax = items[i].k > kmax ? items[i].k : kmax;
    double held = csv_path ? 0 : (double)N * (double)(kmax + 1) * 8.0;
    if (cli_check_block_memory(&c, act, held, "scoring the selected layers"))
      goto done;
  }
  if (csv_path) {
    for (int64_t i = 1; i < m; i++)
      if (items[i].k != items[0].k ||
          memcmp(items[i].class_values, items[0].class_values,
                 (size_t)items[0].k * sizeof(int64_t))) {
        cli_error(&c, "--csv needs every probe to have the same classes "
                  "(layers %s and %s differ); use -o", items[0].name,
                  items[i].name);
        goto done;
      }
    csv = probe_open_tmp(&c, csv_path, &csv_tmp);
    if (!csv) goto done;
    fprintf(csv, "layer,row");
    for (int64_t j = 0; j < items[0].k; j++)
      fprintf(csv, ",p_%lld", (long long)items[0].class_values[j]);
    fputc('\n', csv);
  } else if (culeace__score_file_create(ctx, out, file, c.spec.x_path, probes,
                                        &sf)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  int64_t N = culeace__act_examples(act) * culeace__act_tokens(act);
  cli_progress prog;
  cli_progress_start(&prog, &c, "score", (double)N * (double)m,
                     (double)culeace__act_width(act) *
                         (double)culeace_dtype_size(culeace__act_dtype(act)));
  for (int64_t i = 0; i < m; i++) {
    if (score_layer(&c, ctx, act, file, &items[i], csv, sf)) goto done;
    cli_progress_add(&prog, (double)N, items[i].name);
  }
  cli_progress_end(&prog);
  if (csv) {
    FILE *fp = csv;
    csv = NULL;
    char *tmp = csv_tmp;
    csv_tmp = NULL;
    if (probe_commit_tmp(&c, fp, tmp, csv_path)) goto done;
  } else if (culeace__score_file_commit(sf)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  print_results(&c, dst, items, m);
  rc = 0;
done:
  if (csv) {
    fclose(csv);
    remove(csv_tmp);
  }
  free(csv_tmp);
  culeace__score_file_free(sf);
  items_free(items, m);
  if (act) culeace__act_close(act);
  culeace_ctx_free(ctx);
  return rc;
}
