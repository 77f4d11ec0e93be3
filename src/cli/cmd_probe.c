/* cmd_probe.c — `culeace probe`: which layers linearly encode a concept.
 * Per selected layer, held-out linear probes over stratified (group) k-fold
 * cross-validation, with the majority baseline, optional control task
 * (selectivity), accuracy after LEACE erasure and MDL codelength; reports as
 * a table, JSON, CSV and an SVG plot, and saves the probes fitted on all
 * rows. Option parsing and the shared setup live here; a layer's work is in
 * probe_run.c, the reports in probe_report.c and probe_plot.c. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_fit.h"
#include "cli/mpi_probe.h"
#include "cli/probe.h"
#include "core/eval.h"

static const char *probe_help =
    "usage: culeace probe FILE --x PATH --y PATH [options]\n"
    "\n"
    "Fits held-out linear probes on every selected layer of the activations\n"
    "in FILE (stratified k-fold cross-validation; whole groups per fold with\n"
    "--groups) and reports per layer: accuracy (mean and std over folds),\n"
    "balanced accuracy, AUROC (2 classes), log-loss and the majority-class\n"
    "baseline; optionally the control task, the accuracy after LEACE\n"
    "erasure and the MDL codelength. The best layer (highest accuracy) is\n"
    "marked. All folds of a layer are fitted together in one pass.\n"
    "\n"
    "Probe options:\n"
    "  --y PATH            integer class labels (n,) or (n,t) (alias --z)\n"
    "  --groups PATH       integer group ids (n,) (e.g. prompt ids): a group's\n"
    "                      rows always share a fold; with --tokens and no\n"
    "                      --groups, each example's tokens share a fold\n"
    "  --folds N           cross-validation folds (default 5)\n"
    "  --seed N            seed of the folds, control labels and MDL order (0)\n"
    "  --probe KIND        logistic (default) or diffmeans\n"
    "  --C F               inverse L2 strength, as scikit-learn's C (1.0)\n"
    "  --tol F             stop when max |gradient| <= F (1e-4)\n"
    "  --max-iter N        L-BFGS iterations (100)\n"
    "  --no-standardize    do not z-score features (default: z-score with the\n"
    "                      training fold's mean and std)\n"
    "  --balanced          class weights n / (k * n_class)\n"
    "  --control           control task (Hewitt & Liang 2019): labels\n"
    "                      permuted per group (or per row); reports the\n"
    "                      control accuracy and selectivity = task - control\n"
    "  --erase             per fold: fit LEACE on the training rows, erase\n"
    "                      all rows, re-probe: accuracy after erasure\n"
    "  --erase-method M    the eraser --erase fits (implies --erase): leace\n"
    "                      (default), orth, oracle, quadratic (these two\n"
    "                      edit each row with its label), inlp or rlace\n"
    "                      (they stop on a fifth of the fold's training\n"
    "                      rows)\n"
    "  --erase-iterations N  inlp: most directions (20); rlace: game\n"
    "                      iterations (75000)\n"
    "  --batch-layers N    layers whose probes are fitted together, their\n"
    "                      L-BFGS steps taken at once (default: on a GPU as\n"
    "                      many as half of --max-memory holds, on the CPU\n"
    "                      1); the results are the same for any N\n"
    "  --mdl               MDL online code (Voita & Titov 2020): codelength\n"
    "                      in bits and compression = uniform / online\n"
    "Outputs:\n"
    "  --csv FILE          one line per layer\n"
    "  --plot FILE.svg     accuracy vs layer with baseline, control and\n"
    "                      erased curves (and FILE.png when rsvg-convert or\n"
    "                      ImageMagick's convert is on PATH)\n"
    "  --save FILE.h5      each layer's probe fitted on all rows (for score)\n"
    "Under mpirun/srun (docs/CLUSTER.md):\n"
    "  --split HOW         layers: each rank probes whole layers; rows: every\n"
    "                      rank probes every layer on its share of the\n"
    "                      examples, the fits summed over the ranks at each\n"
    "                      L-BFGS step; auto (default): rows when the layers\n"
    "                      would leave ranks idle (ceil(layers / ranks) >\n"
    "                      1.1 layers / ranks) or a whole layer would not fit\n"
    "                      --max-memory, else layers\n"
    "\n";

/* Parses a float option; -1 (message printed) when not a finite number. */
static int parse_double(const cli_common *c, const char *name, const char *s,
                        double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || *end || errno || !isfinite(v)) {
    cli_error(c, "--%s must be a number (got '%s')", name, s);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, cli_common *c,
                      probe_settings *s) {
  static struct option opts[] = {
      CLI_COMMON_LONG_OPTIONS,
      {"y", 1, 0, 0}, {"z", 1, 0, 0}, {"groups", 1, 0, 0}, {"folds", 1, 0, 0},
      {"seed", 1, 0, 0}, {"probe", 1, 0, 0}, {"C", 1, 0, 0}, {"tol", 1, 0, 0},
      {"max-iter", 1, 0, 0}, {"no-standardize", 0, 0, 0},
      {"balanced", 0, 0, 0}, {"control", 0, 0, 0}, {"erase", 0, 0, 0},
      {"erase-method", 1, 0, 0}, {"erase-iterations", 1, 0, 0},
      {"mdl", 0, 0, 0}, {"csv", 1, 0, 0}, {"plot", 1, 0, 0}, {"save", 1, 0, 0},
      {"split", 1, 0, 0}, {"batch-layers", 1, 0, 0},
      {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  int idx, ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
    if (ch == 'h') {
      printf("%s%s", probe_help, cli_common_help);
      return 1;
    }
    if (ch != 0) return -1;
    const char *name = opts[idx].name;
    int r = cli_common_option(c, name, optarg);
    if (r < 0) return -1;
    if (r > 0) continue;
    if (!strcmp(name, "y") || !strcmp(name, "z")) s->y_path = optarg;
    else if (!strcmp(name, "groups")) s->groups_path = optarg;
    else if (!strcmp(name, "folds")) {
      s->folds = cli_parse_int(optarg);
      if (s->folds < 2 || s->folds > 1000)
        return cli_error(c, "--folds must be a number from 2 to 1000 (got "
                         "'%s')", optarg), -1;
    } else if (!strcmp(name, "seed")) {
      char *end;
      errno = 0;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (!*optarg || *end || errno || optarg[0] == '-')
        return cli_error(c, "--seed must be a number >= 0 (got '%s')",
                         optarg), -1;
      s->seed = (uint64_t)v;
    } else if (!strcmp(name, "probe")) {
      if (!strcmp(optarg, "logistic")) s->po.kind = CULEACE_PROBE_LOGISTIC;
      else if (!strcmp(optarg, "diffmeans"))
        s->po.kind = CULEACE_PROBE_DIFFMEANS;
      else
        return cli_error(c, "--probe must be logistic or diffmeans (got "
                         "'%s')", optarg), -1;
    } else if (!strcmp(name, "C")) {
      if (parse_double(c, "C", optarg, &s->po.C)) return -1;
      if (!(s->po.C > 0))
        return cli_error(c, "--C must be > 0 (got '%s'): it is the inverse "
                         "of the L2 strength", optarg), -1;
    } else if (!strcmp(name, "tol")) {
      if (parse_double(c, "tol", optarg, &s->po.tol)) return -1;
      if (!(s->po.tol > 0))
        return cli_error(c, "--tol must be > 0 (got '%s')", optarg), -1;
    } else if (!strcmp(name, "max-iter")) {
      int64_t v = cli_parse_int(optarg);
      if (v < 1 || v > 1000000)
        return cli_error(c, "--max-iter must be a number from 1 to 1000000 "
                         "(got '%s')", optarg), -1;
      s->po.max_iter = (int)v;
    } else if (!strcmp(name, "no-standardize")) s->po.standardize = 0;
    else if (!strcmp(name, "balanced")) s->po.balanced = 1;
    else if (!strcmp(name, "control")) s->control = 1;
    else if (!strcmp(name, "erase")) s->erase = 1;
    else if (!strcmp(name, "erase-method")) {
      if (culeace_method_parse(optarg, &s->erase_method))
        return cli_error(c, "--erase-method must be leace, orth, oracle, "
                         "quadratic, inlp or rlace (got '%s')", optarg), -1;
      s->erase = 1;
    } else if (!strcmp(name, "erase-iterations")) {
      int64_t v = cli_parse_int(optarg);
      if (v < 1 || v > 100000000)
        return cli_error(c, "--erase-iterations must be a number from 1 to "
                         "1e8 (got '%s')", optarg), -1;
      s->erase_iterations = (int)v;
    }
    else if (!strcmp(name, "mdl")) s->mdl = 1;
    else if (!strcmp(name, "csv")) s->csv = optarg;
    else if (!strcmp(name, "plot")) s->plot = optarg;
    else if (!strcmp(name, "save")) s->save = optarg;
    else if (!strcmp(name, "batch-layers")) {
      int64_t v = cli_parse_int(optarg);
      if (v < 1 || v > 65536)
        return cli_error(c, "--batch-layers must be a number from 1 to "
                         "65536 (got '%s')", optarg), -1;
      s->batch_layers = v;
    } else if (!strcmp(name, "split")) {
      if (!strcmp(optarg, "auto")) s->split = PROBE_SPLIT_AUTO;
      else if (!strcmp(optarg, "layers")) s->split = PROBE_SPLIT_LAYERS;
      else if (!strcmp(optarg, "rows")) s->split = PROBE_SPLIT_ROWS;
      else
        return cli_error(c, "--split must be auto, layers or rows (got '%s')",
                         optarg), -1;
    }
  }
  if (optind != argc - 1)
    return cli_error(c, "expected exactly one input FILE (see --help)"), -1;
  if (s->erase_iterations && s->erase_method != CULEACE_METHOD_INLP &&
      s->erase_method != CULEACE_METHOD_RLACE)
    return cli_error(c, "--erase-iterations applies to --erase-method inlp "
                     "and rlace only"), -1;
  s->file = argv[optind];
  if (!c->spec.x_path)
    return cli_error(c, "--x PATH (the activations) is required"), -1;
  if (!s->y_path)
    return cli_error(c, "--y PATH (the class labels) is required"), -1;
  const char *outs[3] = {s->csv, s->plot, s->save};
  const char *names[3] = {"--csv", "--plot", "--save"};
  for (int i = 0; i < 3; i++) {
    if (!outs[i]) continue;
    if (cli_same_file(s->file, outs[i]) || !strcmp(s->file, outs[i]))
      return cli_error(c, "%s %s is the input file; choose another path",
                       names[i], outs[i]), -1;
    for (int j = 0; j < i; j++)
      if (outs[j] && !strcmp(outs[i], outs[j]))
        return cli_error(c, "%s and %s name the same file %s", names[j],
                         names[i], outs[i]), -1;
  }
  return 0;
}

/* Under MPI with N ranks and m layers: 1 to split the rows (--split rows,
 * or auto when the layer split would leave ranks idle or a whole layer,
 * needing `need` bytes, would not fit --max-memory), 0 for the layers, -1
 * (printed) when rows were asked for but cannot be split. The choice is a
 * pure function of the arguments: every rank makes the same one. */
static int choose_split(const cli_common *c, probe_settings *s, int64_t m,
                        int N, double need) {
  int iterative = s->erase && (s->erase_method == CULEACE_METHOD_INLP ||
                               s->erase_method == CULEACE_METHOD_RLACE);
  if (s->split == PROBE_SPLIT_LAYERS) return 0;
  if (s->split == PROBE_SPLIT_ROWS) {
    if (!iterative) return 1;
    cli_error(c, "--split rows: --erase-method %s fits on a whole layer's "
              "rows and is not split over ranks; use --split layers",
              culeace_method_name(s->erase_method));
    return -1;
  }
  if (iterative) return 0;
  int64_t per_rank = (m + N - 1) / N;
  int idle = (double)per_rank > 1.1 * (double)m / (double)N;
  int too_big = need > cli_memory_limit(c);
  s->split = idle || too_big ? PROBE_SPLIT_ROWS : PROBE_SPLIT_LAYERS;
  return s->split == PROBE_SPLIT_ROWS;
}

/* As many layers as half of --max-memory holds (each layer's rows of this
 * process as read, and the float32 copy a fit centres float32 rows into),
 * at least 1: rows per layer on this process. */
static int64_t layers_in_memory(const cli_common *c, const culeace_act *act,
                                int64_t m, double rows) {
  culeace_dtype dt = culeace__act_dtype(act);
  double es = dt == CULEACE_F16 || dt == CULEACE_BF16 ? 2 : 8;
  double per_layer = rows * (double)culeace__act_width(act) * es;
  double fit = cli_memory_limit(c) / 2 / (per_layer > 0 ? per_layer : 1);
  return fit >= (double)m ? (m > 0 ? m : 1) : fit < 1 ? 1 : (int64_t)fit;
}

/* Layers per batched fit: --batch-layers; else on a GPU, where each L-BFGS
 * step's passes are latency-bound, as many as memory holds (one wait per
 * step for all layers instead of one per layer); else 1: on the CPU threads
 * a batch gains nothing and moves each layer's rows out of the cache
 * between its passes (docs/BENCHMARKS.md, "Probe batches"). */
static int64_t batch_layers(const cli_common *c, const probe_settings *s,
                            const culeace_act *act, int64_t m, double rows,
                            int pays) {
  if (s->batch_layers > 0) return s->batch_layers < m ? s->batch_layers : m;
  return pays ? layers_in_memory(c, act, m, rows) : 1;
}

/* The plain run's layers, J->batch at a time: each batch's probes fitted
 * together (probe_run_layers). From a stacked dataset the layers are read
 * ahead in groups (as many as half of --max-memory holds), each group in
 * one pass over the file: read layer by layer, every chunk that holds all
 * layers would be read and decompressed once per layer. */
static int probe_run_all(const cli_common *c, probe_job *J,
                         const int64_t *layers, int64_t m,
                         probe_layer_result *res, int64_t used) {
  int64_t g = J->batch;
  int ahead = 0;
  if (cli_layers_share_a_dataset(J->act, layers, m)) {
    int64_t gr = layers_in_memory(c, J->act, m, (double)used);
    g = gr > g ? gr : g;
    ahead = g > 1;
  }
  layer_rows *ready = ahead ? calloc((size_t)g, sizeof *ready) : NULL;
  int64_t *dropped = ahead ? calloc((size_t)g, sizeof *dropped) : NULL;
  probe_layer_result **rp = malloc((size_t)g * sizeof *rp);
  if (ahead && (!ready || !dropped)) ahead = 0; /* read layer by layer */
  int rc = !rp ? cli_error(c, "out of memory") : 0;
  for (int64_t i = 0; i < m && !rc; i += g) {
    int64_t cnt = m - i < g ? m - i : g;
    if (ahead) {
      if (layer_rows_read_many(c, J->ctx, J->act, J->s->file, layers + i, cnt,
                               J->lab, J->N, 1, ready, dropped)) {
        rc = 1;
        break;
      }
      J->ready = ready;
      J->ready_layers = layers + i;
      J->ready_dropped = dropped;
      J->n_ready = cnt;
    }
    for (int64_t j = 0; j < cnt; j++) rp[j] = &res[i + j];
    for (int64_t j = 0; j < cnt && !rc; j += J->batch)
      rc = probe_run_layers(J, cnt - j < J->batch ? cnt - j : J->batch,
                            layers + i + j, rp + j);
    for (int64_t j = 0; ahead && j < cnt; j++) layer_rows_free(&ready[j]);
  }
  J->ready = NULL;
  J->n_ready = 0;
  free(ready);
  free(dropped);
  free(rp);
  return rc;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Draws control labels until every training fold holds every class (at
 * most 100 draws with seeds derived from --seed). */
static int make_control(probe_job *J) {
  const cli_common *c = J->c;
  int64_t N = J->N, k = J->k, F = J->s->folds;
  int64_t *cnt = malloc((size_t)(F * k + k) * sizeof *cnt);
  if (!cnt) return cli_error(c, "out of memory");
  for (int attempt = 0; attempt < 100; attempt++) {
    uint64_t seed = J->s->seed + (uint64_t)attempt * 0x100000001ull;
    if (culeace__control_labels(J->ctx, N, J->lab->classes, k, J->groups,
                                seed, J->control)) {
      free(cnt);
      return cli_error_ctx(c, J->ctx, "control labels");
    }
    int64_t *tot = cnt + F * k;
    memset(cnt, 0, (size_t)(F * k + k) * sizeof *cnt);
    for (int64_t i = 0; i < N; i++)
      if (J->control[i] >= 0) {
        cnt[J->fold[i] * k + J->control[i]]++;
        tot[J->control[i]]++;
      }
    int ok = 1;
    for (int64_t f = 0; f < F && ok; f++)
      for (int64_t cl = 0; cl < k; cl++)
        if (tot[cl] - cnt[f * k + cl] == 0) ok = 0;
    if (ok) {
      J->control_seed = seed;
      memcpy(J->control_counts, tot, (size_t)k * sizeof *tot);
      free(cnt);
      return 0;
    }
  }
  free(cnt);
  return cli_error(c, "--control: no permutation of the %s labels found in "
                   "100 draws leaves every class in every training fold; "
                   "use fewer folds or more groups",
                   J->groups ? "group" : "row");
}

int cmd_probe(int argc, char **argv) {
  cli_common c;
  cli_common_init(&c, "culeace probe");
  probe_settings s;
  memset(&s, 0, sizeof s);
  s.folds = 5;
  culeace_probe_opts_init(&s.po);
  int pr = parse_args(argc, argv, &c, &s);
  if (pr > 0) return 0;
  if (pr < 0) return EXIT_USAGE;

  int rc = 1;
  const char *inputs[] = {s.file};
  if (cli_precheck_files(&c, 1, inputs)) return 1; /* forks: before MPI */
  mpi_job *P = NULL; /* under mpirun/srun: layers over ranks */
  if (fit_mpi_wanted() &&
      mpi_job_begin(&c, PROBE_MPI_AGREEMENTS,
                    "every rank would probe every layer and race on the "
                    "outputs", &P))
    return P ? mpi_job_end(P, &c, 1) : 1;
  culeace_ctx *ctx = P ? mpi_job_ctx(P, &c) : cli_open_ctx(&c);
  culeace_act *act = NULL;
  culeace_labels lab;
  memset(&lab, 0, sizeof lab);
  int64_t *groups = NULL, *layers = NULL, m = 0, n_groups = 0;
  probe_layer_result *res = NULL;
  probe_job J;
  memset(&J, 0, sizeof J);
  int wrote_csv = 0, wrote_plot = 0;
  if (!ctx) goto done;
  if (culeace__act_open(ctx, s.file, &c.spec, 0, &act)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  int64_t n = culeace__act_examples(act), t = culeace__act_tokens(act);
  if (culeace__labels_read_masked(ctx, s.file, s.y_path, n, t, c.spec.x_path,
                                  culeace__act_mask(act), &lab)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  if (lab.continuous) {
    cli_error(&c, "--y %s in %s holds floating-point values; a probe needs "
              "integer class labels", s.y_path, s.file);
    goto done;
  }
  if (s.groups_path) {
    if (culeace__groups_read(ctx, s.file, s.groups_path, n, t, &groups)) {
      cli_error_ctx(&c, ctx, "--groups");
      goto done;
    }
  } else if (t > 1) { /* token rows: the example is the group (no leakage
                         of an example's tokens across folds) */
    groups = malloc((size_t)(n * t) * sizeof *groups);
    if (!groups) {
      cli_error(&c, "out of memory");
      goto done;
    }
    for (int64_t i = 0; i < n * t; i++) groups[i] = i / t;
  }
  m = cli_parse_layers(&c, c.layers, act, &layers);
  if (m < 0) goto done;
  J.c = &c;
  J.s = &s;
  J.ctx = ctx;
  J.act = act;
  J.lab = &lab;
  J.groups = groups;
  J.N = n * t;
  J.k = lab.n_classes;
  int64_t F = s.folds, k = J.k;
  J.fold = malloc((size_t)J.N * sizeof *J.fold);
  J.fold_counts = calloc((size_t)(F * k), sizeof *J.fold_counts);
  J.control = s.control ? malloc((size_t)J.N * sizeof *J.control) : NULL;
  J.control_counts = calloc((size_t)k, sizeof *J.control_counts);
  J.mdl_key = s.mdl ? malloc((size_t)J.N * sizeof *J.mdl_key) : NULL;
  res = calloc((size_t)m, sizeof *res);
  if (!J.fold || !J.fold_counts || (s.control && !J.control) ||
      !J.control_counts || (s.mdl && !J.mdl_key) || !res) {
    cli_error(&c, "out of memory");
    goto done;
  }
  if (culeace__stratified_folds(ctx, J.N, lab.classes, k, groups, F, s.seed,
                                lab.class_values, J.fold)) {
    char what[600];
    if (s.groups_path)
      snprintf(what, sizeof what, "--y %s, --groups %s", s.y_path,
               s.groups_path);
    else
      snprintf(what, sizeof what, "--y %s%s", s.y_path,
               groups ? " (each example's tokens are one group)" : "");
    cli_error_ctx(&c, ctx, what);
    goto done;
  }
  for (int64_t i = 0; i < J.N; i++)
    if (J.fold[i] >= 0) J.fold_counts[J.fold[i] * k + lab.classes[i]]++;
  if (groups) { /* groups with at least one used row */
    int64_t *ids = malloc((size_t)(J.N ? J.N : 1) * sizeof *ids), u = 0;
    if (!ids) {
      cli_error(&c, "out of memory");
      goto done;
    }
    for (int64_t i = 0; i < J.N; i++)
      if (lab.classes[i] >= 0) ids[u++] = groups[i];
    qsort(ids, (size_t)u, sizeof *ids, cmp_i64);
    for (int64_t i = 0; i < u; i++) n_groups += i == 0 || ids[i] != ids[i - 1];
    free(ids);
  }
  if (s.control && make_control(&J)) goto done;
  if (s.mdl &&
      probe_mdl_order(&c, J.N, lab.classes, groups, s.seed, J.mdl_key))
    goto done;
  for (int64_t i = 0; i < m; i++)
    if (probe_result_alloc(&res[i], F)) {
      cli_error(&c, "out of memory");
      goto done;
    }
  J.keep_final = s.save != NULL;
  J.mpi_ranks = P ? mpi_job_size(P) : 0;
  int root = !P || mpi_job_rank(P) == 0; /* writes the outputs */
  if (s.save && root) { /* fail now, not after the layers, on an
                           unwritable --save; written at the end, so a
                           killed job leaves no temporary file behind */
    if (culeace__probe_file_create(ctx, s.save, &J.save)) {
      cli_error_ctx(&c, ctx, "--save");
      goto done;
    }
    culeace__probe_file_free(J.save); /* removes the temporary file */
    J.save = NULL;
  }
  const char *texts[2] = {s.csv, s.plot}; /* the same for --csv, --plot */
  for (int i = 0; root && i < 2; i++) {
    char *tmp = NULL;
    FILE *fp = texts[i] ? probe_open_tmp(&c, texts[i], &tmp) : NULL;
    if (fp) {
      fclose(fp);
      remove(tmp);
    }
    free(tmp);
    if (texts[i] && !fp) goto done;
  }
  int64_t used = 0;
  for (int64_t i = 0; i < J.N; i++) used += lab.classes[i] >= 0;
  /* one layer at a time: its rows (float32 at most) and the centred
     float32 copy the fit makes of float32 rows, and the erased copy with
     --erase; under --split rows a rank's share of them */
  double need = (double)used * (double)culeace__act_width(act) * 4.0 *
                (2.0 + (s.erase ? 1.0 : 0.0));
  int split_rows = P ? choose_split(&c, &s, m, mpi_job_size(P), need) : 0;
  if (split_rows < 0) goto done;
  if (split_rows) {
    J.split = probe_split_create(P, &c, n);
    if (!J.split) goto done;
    need /= mpi_job_size(P);
  }
  {
    char what[200];
    snprintf(what, sizeof what, "probing %lld rows x %lld features per layer "
             "(held as float32%s)", (long long)used,
             (long long)culeace__act_width(act),
             J.split ? ", shared out over the ranks" : "");
    if (cli_check_memory(&c, need, what)) goto done;
  }
  J.batch = batch_layers(&c, &s, act, m,
                         J.split ? (double)used / mpi_job_size(P)
                                 : (double)used,
                         strcmp(culeace_ctx_backend_name(ctx), "cpu") != 0);
  if (P && mpi_job_agree(P, &c, 0)) goto done; /* setup done everywhere */
  double units = 1 + (double)F + (s.erase ? (double)F : 0);
  double mine = (double)(P && !J.split ? probe_mpi_my_layers(P, m) : m);
  cli_progress prog;
  cli_progress_start(&prog, &c, "probe", units * (double)used * mine,
                     (double)culeace__act_width(act) * 4.0);
  J.prog = &prog;
  if (P) {
    if (J.split ? probe_mpi_run_rows(P, &J, layers, m, res)
                : probe_mpi_run_layers(P, &J, layers, m, res))
      goto done;
  } else if (probe_run_all(&c, &J, layers, m, res, used)) {
    goto done;
  }
  cli_progress_end(&prog);
  if (!root) { /* rank 0 reports and writes */
    rc = 0;
    goto done;
  }
  probe_report R;
  memset(&R, 0, sizeof R);
  R.s = &s;
  R.x_path = c.spec.x_path;
  R.k = k;
  R.class_values = lab.class_values;
  R.class_counts = lab.class_counts;
  R.n_groups = n_groups;
  R.job = &J;
  R.layers = res;
  R.m = m;
  R.best = 0;
  for (int64_t i = 1; i < m; i++)
    if (res[i].acc.mean > res[R.best].acc.mean) R.best = i;
  /* outputs: the probe file last (a failure after the CSV or plot were
   * written removes them again, so an error leaves no output behind) */
  if (s.csv) {
    if (probe_write_csv(&c, &R, s.csv)) goto done;
    wrote_csv = 1;
  }
  if (s.plot) {
    if (probe_write_plot(&c, &R, s.plot)) goto done;
    wrote_plot = 1;
  }
  if (s.save) {
    if (culeace__probe_file_create(ctx, s.save, &J.save)) {
      cli_error_ctx(&c, ctx, "--save");
      goto done;
    }
    for (int64_t i = 0; i < m; i++)
      if (probe_save_layer(&J, &res[i])) goto done;
    if (culeace__probe_file_commit(J.save)) {
      cli_error_ctx(&c, ctx, "--save");
      goto done;
    }
  }
  if (c.json) probe_print_json(&R);
  else probe_print_table(&R);
  rc = 0;
done:
  if (P) rc = mpi_job_end(P, &c, rc); /* the same rc on every rank */
  if (rc && wrote_csv) remove(s.csv);
  if (rc && wrote_plot) probe_remove_plot(s.plot);
  culeace__probe_file_free(J.save);
  if (J.split) probe_split_free(J.split);
  for (int64_t i = 0; res && i < m; i++) probe_result_free(&res[i]);
  free(res);
  free(J.fold);
  free(J.fold_counts);
  free(J.control);
  free(J.control_counts);
  free(J.mdl_key);
  free(groups);
  free(layers);
  culeace__labels_free(&lab);
  if (act) culeace__act_close(act);
  culeace_ctx_free(ctx);
  return rc;
}
