/* cmd_fit.c — `culeace fit`: one LEACE eraser per selected layer, fitted in
 * one streaming pass over each layer's rows, written atomically to an eraser
 * file; INLP and R-LACE (--method inlp|rlace) go to fit_iterative.c. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/fit_iterative.h"
#include "cli/fit_report.h"
#include "cli/mpi_fit.h"

static const char *fit_help =
    "usage: culeace fit FILE --x PATH --z PATH -o ERASERS.h5 [options]\n"
    "\n"
    "Fits one LEACE eraser per selected layer of the activations in FILE,\n"
    "streaming the rows once, and writes them to ERASERS.h5 (atomically).\n"
    "\n"
    "Concept options:\n"
    "  --z PATH            labels: integer (n,) or (n,t) classes, or float\n"
    "                      (n,) / (n,k) continuous columns\n"
    "  --method M          leace (default), orth, inlp (iterative nullspace\n"
    "                      projection) or rlace (R-LACE, rank-k adversarial\n"
    "                      projection); inlp and rlace need class labels,\n"
    "                      hold each layer's rows in memory as float32 and\n"
    "                      run on the CPU; oracle (oracle LEACE: each row\n"
    "                      edited with its own label, so apply needs --z);\n"
    "                      quadratic (quadratic LEACE: class means and\n"
    "                      covariances equalised by transport maps to their\n"
    "                      barycenter; class labels; apply needs --z)\n"
    "  --no-affine         linear eraser (no mean/bias term)\n"
    "  --shrinkage         optimal linear shrinkage of Sigma_xx (default;\n"
    "                      oracle: of Sigma_zz, off unless given, as in\n"
    "                      concept-erasure's OracleFitter)\n"
    "  --no-shrinkage      plain sample covariance (Bessel-corrected)\n"
    "  --svd-tol F         drop singular values of W Sigma_xz <= F (0.01)\n"
    "  --no-constrain-trace  allow the erased covariance trace to grow\n"
    "  --precision P       block products: auto (default: f32 for float16\n"
    "                      and bfloat16 rows, f64 for float32/float64),\n"
    "                      f64, f32 (after centring on the block mean;\n"
    "                      merged in float64 either way), or tensor (f32;\n"
    "                      16-bit rows centred and rounded back to 16 bits\n"
    "                      for X^T X: tensor cores on a GPU)\n"
    "  -o, --output FILE   eraser file to write\n"
    "\n"
    "INLP and R-LACE options (1/5 of the rows, stratified, held out to\n"
    "decide when to stop; the leace/orth options above do not apply):\n"
    "  --iterations N      inlp: most probes removed (20); rlace: game\n"
    "                      iterations (75000, the authors' default)\n"
    "  --min-accuracy A    inlp: stop once held-out accuracy <= A (default:\n"
    "                      the majority-class accuracy + 0.01)\n"
    "  --rank K            rlace: directions removed (1)\n"
    "  --seed S            held-out split and R-LACE's draws (0)\n"
    "  --groups PATH       integer group ids (n,): a group is never split\n"
    "                      between training and held-out rows\n"
    "\n";

/* Comma-separated class values for the eraser metadata. */
char *fit_class_values_str(const culeace_labels *lab) {
  if (lab->continuous) return NULL;
  size_t cap = (size_t)lab->n_classes * 24 + 1;
  char *s = malloc(cap);
  if (!s) return NULL;
  size_t used = 0;
  s[0] = 0;
  for (int64_t i = 0; i < lab->n_classes; i++)
    used += (size_t)snprintf(s + used, cap - used, "%s%lld", i ? "," : "",
                             (long long)lab->class_values[i]);
  return s;
}

/* One layer being fitted: its fitter and its row stream. */
typedef struct {
  culeace_fitter *f;
  cli_rows rows;
  int open;
} fit_stream;

int cmd_fit(int argc, char **argv) {
  cli_common c;
  cli_common_init(&c, "culeace fit");
  culeace_fit_opts o;
  culeace_fit_opts_init(&o);
  o.precision = CULEACE_PRECISION_AUTO;
  const char *z_path = NULL, *out = NULL;
  static struct option opts[] = {
      CLI_COMMON_LONG_OPTIONS,
      {"z", 1, 0, 0}, {"method", 1, 0, 0}, {"no-affine", 0, 0, 0},
      {"shrinkage", 0, 0, 0}, {"no-shrinkage", 0, 0, 0}, {"svd-tol", 1, 0, 0},
      {"no-constrain-trace", 0, 0, 0}, {"precision", 1, 0, 0},
      {"iterations", 1, 0, 0}, {"min-accuracy", 1, 0, 0}, {"rank", 1, 0, 0},
      {"seed", 1, 0, 0}, {"groups", 1, 0, 0},
      {"output", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  fit_iter_settings it;
  memset(&it, 0, sizeof it);
  it.min_accuracy = -1;
  const char *leace_opt = NULL, *iter_opt[5] = {0}; /* as given, for checks */
  const char *proj_opt = NULL; /* options of the projection methods only */
  int shrink_given = 0;
  int idx, ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "o:h", opts, &idx)) != -1) {
    if (ch == 'h') {
      printf("%s%s", fit_help, cli_common_help);
      return 0;
    }
    if (ch == 'o') {
      out = optarg;
      continue;
    }
    if (ch != 0) return EXIT_USAGE;
    const char *name = opts[idx].name;
    int r = cli_common_option(&c, name, optarg);
    if (r < 0) return EXIT_USAGE;
    if (r > 0) continue;
    if (!strcmp(name, "shrinkage") || !strcmp(name, "no-shrinkage") ||
        !strcmp(name, "svd-tol") || !strcmp(name, "no-constrain-trace") ||
        !strcmp(name, "precision"))
      leace_opt = name;
    if (!strcmp(name, "svd-tol") || !strcmp(name, "no-constrain-trace") ||
        !strcmp(name, "no-affine"))
      proj_opt = name;
    if (!strcmp(name, "z")) z_path = optarg;
    else if (!strcmp(name, "method")) {
      if (culeace_method_parse(optarg, &o.method))
        return cli_error(&c, "--method must be leace, orth, inlp, rlace, "
                         "oracle or quadratic (got '%s')", optarg),
               EXIT_USAGE;
    } else if (!strcmp(name, "iterations") || !strcmp(name, "rank") ||
               !strcmp(name, "seed")) {
      int64_t v = cli_parse_int(optarg);
      if (v < 1 && !(v == 0 && name[0] == 's'))
        return cli_error(&c, "--%s must be a %s integer (got '%s')", name,
                         name[0] == 's' ? "non-negative" : "positive",
                         optarg), EXIT_USAGE;
      if (name[0] == 'i') {
        if (v > 100000000)
          return cli_error(&c, "--iterations %lld is too large (at most "
                           "1e8)", (long long)v), EXIT_USAGE;
        it.iterations = (int)v;
        iter_opt[0] = "iterations";
      } else if (name[0] == 'r') {
        it.rank = v;
        iter_opt[1] = "rank";
      } else {
        it.seed = (uint64_t)v;
        iter_opt[2] = "seed";
      }
    } else if (!strcmp(name, "min-accuracy")) {
      char *end;
      it.min_accuracy = strtod(optarg, &end);
      if (*end || !(it.min_accuracy >= 0 && it.min_accuracy <= 1))
        return cli_error(&c, "--min-accuracy must be a number in [0, 1] "
                         "(got '%s')", optarg), EXIT_USAGE;
      iter_opt[3] = "min-accuracy";
    } else if (!strcmp(name, "groups")) {
      it.groups_path = optarg;
      iter_opt[4] = "groups";
    } else if (!strcmp(name, "no-affine")) o.affine = 0;
    else if (!strcmp(name, "shrinkage")) o.shrinkage = shrink_given = 1;
    else if (!strcmp(name, "no-shrinkage")) o.shrinkage = 0, shrink_given = 1;
    else if (!strcmp(name, "no-constrain-trace")) o.constrain_cov_trace = 0;
    else if (!strcmp(name, "svd-tol")) {
      char *end;
      o.svd_tol = strtod(optarg, &end);
      if (*end || !(o.svd_tol > 0))
        return cli_error(&c, "--svd-tol must be a positive number (got '%s')",
                         optarg), EXIT_USAGE;
    } else if (!strcmp(name, "precision")) {
      if (!strcmp(optarg, "auto")) o.precision = CULEACE_PRECISION_AUTO;
      else if (!strcmp(optarg, "f64")) o.precision = CULEACE_PRECISION_F64;
      else if (!strcmp(optarg, "f32")) o.precision = CULEACE_PRECISION_F32;
      else if (!strcmp(optarg, "tensor"))
        o.precision = CULEACE_PRECISION_TENSOR;
      else return cli_error(&c, "--precision must be auto, f64, f32 or "
                            "tensor (got '%s')",
                            optarg), EXIT_USAGE;
    }
  }
  if (optind != argc - 1)
    return cli_error(&c, "expected exactly one input FILE (see --help)"),
           EXIT_USAGE;
  const char *file = argv[optind];
  if (!c.spec.x_path)
    return cli_error(&c, "--x PATH (the activations) is required"), EXIT_USAGE;
  if (!z_path)
    return cli_error(&c, "--z PATH (the labels) is required"), EXIT_USAGE;
  if (!out)
    return cli_error(&c, "-o ERASERS.h5 (the output) is required"), EXIT_USAGE;
  if (cli_same_file(file, out))
    return cli_error(&c, "-o %s is the input file; choose another output "
                     "path", out);
  int iterative = o.method == CULEACE_METHOD_INLP ||
                  o.method == CULEACE_METHOD_RLACE;
  const char *mname = culeace_method_name(o.method);
  for (int i = 0; i < 5; i++) {
    int ok = iterative && !(i == 1 && o.method == CULEACE_METHOD_INLP) &&
             !(i == 3 && o.method == CULEACE_METHOD_RLACE);
    if (iter_opt[i] && !ok)
      return cli_error(&c, "--%s does not apply to --method %s%s",
                       iter_opt[i], mname,
                       iterative ? "" : " (only to inlp and rlace)"),
             EXIT_USAGE;
  }
  if (iterative && leace_opt)
    return cli_error(&c, "--%s does not apply to --method %s (only to leace "
                     "and orth)", leace_opt, mname), EXIT_USAGE;
  if (iterative && fit_mpi_wanted()) /* refused: not sharded yet */
    return fit_mpi(&c, file, z_path, out, &o);
  if (iterative) {
    it.method = o.method;
    it.affine = o.affine;
    return fit_iterative(&c, file, z_path, out, &it);
  }
  if (o.method == CULEACE_METHOD_ORACLE && !shrink_given) o.shrinkage = 0;
  if (o.method == CULEACE_METHOD_QUADRATIC && proj_opt)
    return cli_error(&c, "--%s does not apply to --method quadratic", proj_opt),
           EXIT_USAGE;
  /* under mpirun/srun with several ranks: rows sharded (mpi_fit.c) */
  if (fit_mpi_wanted()) return fit_mpi(&c, file, z_path, out, &o);

  int rc = 1;
  const char *inputs[] = {file};
  if (cli_precheck_files(&c, 1, inputs)) return 1;
  culeace_ctx *ctx = cli_open_ctx(&c);
  culeace_act *act = NULL;
  culeace_labels lab;
  memset(&lab, 0, sizeof lab);
  culeace_eraser_file *ef = NULL;
  int64_t *layers = NULL, m = 0;
  fit_layer_result *res = NULL;
  char *cvals = NULL;
  fit_stream *fs = NULL; /* (n_fs) the layers being fitted together */
  int64_t n_fs = 0;
  if (!ctx) return 1;
  if (culeace__act_open(ctx, file, &c.spec, 0, &act) != CULEACE_OK) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  char xdesc[512];
  snprintf(xdesc, sizeof xdesc, "%s", c.spec.x_path);
  if (culeace__labels_read_masked(ctx, file, z_path,
                                  culeace__act_examples(act),
                                  culeace__act_tokens(act), xdesc,
                                  culeace__act_mask(act), &lab)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  if (o.method == CULEACE_METHOD_QUADRATIC && lab.continuous) {
    cli_error(&c, "%s: --method quadratic needs class labels; %s holds "
              "continuous values (float)", file, z_path);
    goto done;
  }
  m = cli_parse_layers(&c, c.layers, act, &layers);
  if (m < 0) goto done;
  { /* one layer at a time: a block, and ~8 d x d float64 matrices (running
       and block co-moments, then the eraser's whitening) */
    double dd = (double)culeace__act_width(act);
    double blk = (double)cli_examples_per_block(&c, act) *
                 (double)culeace__act_tokens(act) * dd *
                 (2.0 * (double)culeace_dtype_size(culeace__act_dtype(act)) + 8);
    char what[160];
    snprintf(what, sizeof what, "fitting an eraser of width d = %lld (8 d x d "
             "float64 matrices and a block of rows)",
             (long long)culeace__act_width(act));
    double mats = cli_fit_matrices(o.method, lab.n_classes);
    if (o.method == CULEACE_METHOD_QUADRATIC)
      snprintf(what, sizeof what, "quadratic LEACE of width d = %lld and %lld "
               "classes ((3 k + 9) d x d float64 matrices and a block)",
               (long long)culeace__act_width(act), (long long)lab.n_classes);
    if (cli_check_memory(&c, mats * dd * dd * 8.0 + blk, what)) goto done;
  }
  res = calloc((size_t)m, sizeof *res);
  cvals = fit_class_values_str(&lab);
  if (!res) {
    cli_error(&c, "out of memory");
    goto done;
  }
  if (culeace_eraser_file_create(ctx, out, &ef)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  int64_t d = culeace__act_width(act);
  int64_t rows_per_layer = culeace__act_examples(act) * culeace__act_tokens(act);
  cli_progress prog;
  cli_progress_start(&prog, &c, "fit", (double)rows_per_layer * (double)m,
                     (double)d * (double)culeace_dtype_size(culeace__act_dtype(act)));
  /* Layers of one chunked dataset (a stacked layout) are fitted in groups,
   * block by block with every layer of the group, in blocks of one row of
   * chunks: each chunk, which holds every layer, is then read and
   * decompressed once (it stays in the chunk cache) instead of once per
   * layer. A group's fitters must fit in the budget (CPU: on a GPU each
   * holds device memory the budget does not count). */
  int64_t g = 1;
  if (!strcmp(culeace_ctx_backend_name(ctx), "cpu") &&
      culeace__act_chunk_rows(act) > 0 &&
      cli_layers_share_a_dataset(act, layers, m)) {
    size_t state = 0;
    culeace_fitter *probe = NULL;
    if (!culeace_fitter_create(ctx, d, lab.continuous ? lab.k : lab.n_classes,
                               lab.continuous ? CULEACE_Z_CONTINUOUS
                                              : CULEACE_Z_CLASSES,
                               &o, &probe) &&
        !culeace_fitter_state_size(probe, &state)) {
      double dd = (double)d, mats = cli_fit_matrices(o.method, lab.n_classes);
      double room = cli_memory_limit(&c) / 2 - mats * dd * dd * 8.0;
      double each = 2.0 * (double)state * 8.0; /* its moments, with room */
      g = room / each >= (double)m ? m : room / each < 1 ? 1 : (int64_t)(room / each);
    }
    culeace_fitter_free(probe);
  }
  cli_common cc = c; /* grouped: blocks of at most a row of chunks */
  if (g > 1)
    cc.block_rows = cli_group_block_rows(&c, act, g);
  fs = calloc((size_t)g, sizeof *fs);
  if (!fs) {
    cli_error(&c, "out of memory");
    goto done;
  }
  n_fs = g;
  for (int64_t i0 = 0; i0 < m; i0 += g) {
    int64_t cnt = m - i0 < g ? m - i0 : g;
    for (int64_t j = 0; j < cnt; j++) {
      int64_t l = layers[i0 + j];
      if (culeace_fitter_create(ctx, d, lab.continuous ? lab.k : lab.n_classes,
                                lab.continuous ? CULEACE_Z_CONTINUOUS
                                               : CULEACE_Z_CLASSES,
                                &o, &fs[j].f)) {
        cli_error_ctx(&c, ctx, "");
        goto done;
      }
      if (cli_rows_open(&fs[j].rows, g > 1 ? &cc : &c, ctx, act, file, l,
                        &lab))
        goto done;
      fs[j].open = 1;
    }
    for (int any = 1; any;) { /* block by block, every layer of the group */
      any = 0;
      for (int64_t j = 0; j < cnt; j++) {
        int64_t l = layers[i0 + j];
        cli_rows *rows = &fs[j].rows;
        int more = cli_rows_next(rows);
        if (more < 0) goto done;
        if (more == 0) continue;
        any = 1;
        culeace_status st = CULEACE_OK;
        if (rows->n_rows > 0)
          st = lab.continuous
                   ? culeace_fitter_update_continuous(
                         fs[j].f, rows->rows, culeace__act_dtype(act),
                         rows->n_rows, d, rows->z, lab.k)
                   : culeace_fitter_update_classes(
                         fs[j].f, rows->rows, culeace__act_dtype(act),
                         rows->n_rows, d, rows->classes);
        if (st) {
          if (st == CULEACE_ERR_NONFINITE) cli_rows_nonfinite_error(rows);
          else cli_error_ctx(&c, ctx, culeace__act_dataset_path(act, l));
          goto done;
        }
        cli_progress_add(&prog, (double)rows->raw_rows,
                         culeace__act_layer_name(act, l));
      }
    }
    for (int64_t j = 0; j < cnt; j++) {
      int64_t i = i0 + j, l = layers[i];
      culeace_eraser *e = NULL;
      culeace_status st = culeace_fitter_finalize(fs[j].f, &e);
      res[i].layer = l;
      res[i].name = culeace__act_layer_name(act, l);
      res[i].rows = culeace_fitter_rows(fs[j].f);
      res[i].dropped = fs[j].rows.dropped;
      culeace_fitter_free(fs[j].f);
      fs[j].f = NULL;
      cli_rows_close(&fs[j].rows);
      fs[j].open = 0;
      if (st) {
        cli_error_ctx(&c, ctx, culeace__act_dataset_path(act, l));
        goto done;
      }
      culeace_eraser_info info;
      culeace_eraser_info_get(e, &info);
      res[i].rank = info.rank;
      culeace_eraser_meta meta;
      culeace_eraser_meta_init(&meta);
      meta.source_file = file;
      meta.source_dataset = culeace__act_dataset_path(act, l);
      meta.layer = l;
      meta.layer_name = culeace__act_layer_name(act, l);
      meta.label_dataset = z_path;
      meta.class_values = cvals;
      st = culeace_eraser_file_add(ef, e, &meta);
      culeace_eraser_free(e);
      if (st) {
        cli_error_ctx(&c, ctx, "");
        goto done;
      }
      if (info.rank == 0 && !c.quiet &&
          (info.method == CULEACE_METHOD_LEACE ||
           info.method == CULEACE_METHOD_ORTH))
        fprintf(stderr, "%s: warning: layer %s: no direction above --svd-tol "
                "%g; its eraser is the identity\n", c.prog,
                res[i].name, o.svd_tol);
    }
  }
  cli_progress_end(&prog);
  if (culeace_eraser_file_commit(ef)) {
    cli_error_ctx(&c, ctx, "");
    goto done;
  }
  fit_print_results(&c, out, res, m, &o, 0);
  rc = 0;
done:
  for (int64_t j = 0; fs && j < n_fs; j++) {
    if (fs[j].open) cli_rows_close(&fs[j].rows);
    culeace_fitter_free(fs[j].f);
  }
  free(fs);
  culeace_eraser_file_free(ef);
  culeace__labels_free(&lab);
  if (act) culeace__act_close(act);
  culeace_ctx_free(ctx);
  free(layers);
  free(res);
  free(cvals);
  return rc;
}
