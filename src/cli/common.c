/* common.c — options shared by the subcommands, the context, error
 * printing, layer selection and small parsing helpers. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

const char *cli_common_help =
    "Data options:\n"
    "  --x PATH            activations: a dataset (n,d), (L,n,d), (n,L,d),\n"
    "                      (n,t,d), or a group of per-layer datasets\n"
    "  --layer-axis N      axis of the layer index in a single dataset (0|1)\n"
    "  --tokens            the axis after the example axis holds tokens\n"
    "  --mask PATH         (n,t) token mask; nonzero = use the token\n"
    "  --layers SEL        layers to use: all (default), 0,3-7, or names\n"
    "  --block-rows N      rows per block read from the file (default 8192)\n"
    "  --drop-nonfinite    skip rows with NaN/Inf instead of refusing\n"
    "General options:\n"
    "  --device D          auto (default), cpu, cuda or cuda:N\n"
    "  --threads N         CPU threads, BLAS and culeace's own loops\n"
    "                      (default: all)\n"
    "  --max-memory SIZE   memory the command may plan for, e.g. 8G (default:\n"
    "                      75% of physical memory); blocks shrink to fit, and\n"
    "                      a job that cannot fit says so before starting\n"
    "  --json              machine-readable results on stdout\n"
    "  --quiet             no progress or notes on stderr\n";

void cli_common_init(cli_common *c, const char *prog) {
  memset(c, 0, sizeof *c);
  c->prog = prog;
  culeace__act_spec_init(&c->spec);
  c->device = "auto";
  c->block_rows = 8192;
}

int64_t cli_parse_int(const char *s) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < 0) return -1;
  return (int64_t)v;
}

int cli_common_option(cli_common *c, const char *name, const char *arg) {
  if (!strcmp(name, "x")) {
    c->spec.x_path = arg;
  } else if (!strcmp(name, "layer-axis")) {
    int64_t v = cli_parse_int(arg);
    if (v < 0 || v > 1) {
      cli_error(c, "--layer-axis must be 0 or 1 (got '%s')", arg);
      return -1;
    }
    c->spec.layer_axis = (int)v;
  } else if (!strcmp(name, "tokens")) {
    c->spec.tokens = 1;
  } else if (!strcmp(name, "mask")) {
    c->spec.mask_path = arg;
  } else if (!strcmp(name, "layers")) {
    c->layers = arg;
  } else if (!strcmp(name, "device")) {
    c->device = arg;
  } else if (!strcmp(name, "threads")) {
    int64_t v = cli_parse_int(arg);
    if (v < 0 || v > 4096) {
      cli_error(c, "--threads must be a number >= 0 (got '%s')", arg);
      return -1;
    }
    c->threads = (int)v;
  } else if (!strcmp(name, "block-rows")) {
    int64_t v = cli_parse_int(arg);
    if (v < 1) {
      cli_error(c, "--block-rows must be a number >= 1 (got '%s')", arg);
      return -1;
    }
    c->block_rows = v;
  } else if (!strcmp(name, "max-memory")) {
    int64_t v = cli_parse_size(arg);
    if (v < 1) {
      cli_error(c, "--max-memory must be a size such as 8G, 512M or 1000000 "
                "(bytes) (got '%s')", arg);
      return -1;
    }
    c->max_memory = v;
  } else if (!strcmp(name, "json")) {
    c->json = 1;
  } else if (!strcmp(name, "quiet")) {
    c->quiet = 1;
  } else if (!strcmp(name, "drop-nonfinite")) {
    c->drop_nonfinite = 1;
  } else {
    return 0;
  }
  return 1;
}

/* The whole line goes out in one write: ranks of an MPI job share stderr,
 * and a prefix written apart from its message gets interleaved. */
int cli_error(const cli_common *c, const char *fmt, ...) {
  char line[4096];
  int k = snprintf(line, sizeof line, "%s: error: ", c ? c->prog : "culeace");
  if (k < 0 || (size_t)k >= sizeof line) k = 0;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + k, sizeof line - (size_t)k - 1, fmt, ap);
  va_end(ap);
  size_t len = m < 0 ? (size_t)k : (size_t)k + (size_t)m;
  if (len > sizeof line - 2) len = sizeof line - 2; /* truncated: keep the \n */
  line[len++] = '\n';
  fwrite(line, 1, len, stderr);
  return 1;
}

int cli_error_ctx(const cli_common *c, culeace_ctx *ctx, const char *what) {
  const char *msg = ctx ? culeace_ctx_last_error(ctx) : "";
  if (what && *what)
    return cli_error(c, "%s: %s", what, msg);
  return cli_error(c, "%s", msg);
}

culeace_ctx *cli_open_ctx(const cli_common *c) {
  culeace_ctx_opts o;
  culeace_ctx_opts_init(&o);
  o.n_threads = c->threads;
  if (!strcmp(c->device, "auto")) {
    o.device = CULEACE_DEVICE_AUTO;
  } else if (!strcmp(c->device, "cpu")) {
    o.device = CULEACE_DEVICE_CPU;
  } else if (!strncmp(c->device, "cuda", 4)) {
    o.device = CULEACE_DEVICE_CUDA;
    if (c->device[4] == ':') {
      int64_t v = cli_parse_int(c->device + 5);
      if (v < 0) {
        cli_error(c, "--device: bad CUDA device index in '%s'", c->device);
        return NULL;
      }
      o.device_index = (int)v;
    } else if (c->device[4]) {
      cli_error(c, "--device must be auto, cpu, cuda or cuda:N (got '%s')",
                c->device);
      return NULL;
    }
  } else {
    cli_error(c, "--device must be auto, cpu, cuda or cuda:N (got '%s')",
              c->device);
    return NULL;
  }
  culeace_ctx *ctx = NULL;
  char err[512] = "";
  culeace_status st = culeace_ctx_create(&o, &ctx, err, sizeof err);
  if (st != CULEACE_OK) {
    cli_error(c, "%s", err[0] ? err : culeace_strerror(st));
    return NULL;
  }
  if (!c->quiet && !c->json)
    fprintf(stderr, "%s: %s\n", c->prog, culeace_ctx_device_note(ctx));
  return ctx;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Index of the layer called name, or -1. */
static int64_t layer_by_name(const culeace_act *a, const char *name,
                             size_t len) {
  for (int64_t l = 0; l < culeace__act_layers(a); l++) {
    const char *ln = culeace__act_layer_name(a, l);
    if (strlen(ln) == len && !strncmp(ln, name, len)) return l;
  }
  return -1;
}

int64_t cli_parse_layers(const cli_common *c, const char *sel,
                         const culeace_act *a, int64_t **out) {
  int64_t L = culeace__act_layers(a);
  *out = NULL;
  int64_t cap = L, n = 0;
  int64_t *v = malloc((size_t)(cap ? cap : 1) * sizeof *v);
  if (!v) return cli_error(c, "out of memory"), -1;
  if (!sel || !strcmp(sel, "all")) {
    for (int64_t l = 0; l < L; l++) v[n++] = l;
    *out = v;
    return n;
  }
  const char *p = sel;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char item[256];
    if (len == 0 || len >= sizeof item) goto bad;
    memcpy(item, p, len);
    item[len] = 0;
    int64_t lo, hi;
    char *dash = strchr(item, '-');
    int64_t byname = layer_by_name(a, item, len);
    if (byname >= 0) {
      lo = hi = byname;
    } else if (dash && dash != item) {
      *dash = 0;
      lo = cli_parse_int(item);
      hi = cli_parse_int(dash + 1);
    } else {
      lo = hi = cli_parse_int(item);
    }
    if (lo < 0 || hi < lo) goto bad;
    if (hi >= L) {
      cli_error(c, "--layers: layer %lld does not exist (the activations have "
                "%lld layers, 0..%lld)", (long long)hi, (long long)L,
                (long long)(L - 1));
      free(v);
      return -1;
    }
    for (int64_t l = lo; l <= hi; l++) {
      if (n == cap) {
        cap = cap * 2 + 8;
        int64_t *nv = realloc(v, (size_t)cap * sizeof *v);
        if (!nv) {
          free(v);
          return cli_error(c, "out of memory"), -1;
        }
        v = nv;
      }
      v[n++] = l;
    }
    p += len;
    if (*p == ',') p++;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_i64);
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (m == 0 || v[m - 1] != v[i]) v[m++] = v[i];
  if (m == 0) goto bad;
  *out = v;
  return m;
bad:
  free(v);
  cli_error(c, "--layers: cannot parse '%s' (expected all, a list like "
            "0,3-7, or layer names)", sel);
  return -1;
}

int cli_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void cli_json_str(FILE *fp, const char *s) {
  fputc('"', fp);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(fp, "\\%c", *p);
    else if (*p == '\n') fputs("\\n", fp);
    else if (*p == '\t') fputs("\\t", fp);
    else if (*p < 0x20) fprintf(fp, "\\u%04x", *p);
    else fputc(*p, fp);
  }
  fputc('"', fp);
}

int cli_layers_share_a_dataset(const culeace_act *act, const int64_t *layers,
                               int64_t m) {
  for (int64_t i = 1; i < m; i++)
    if (strcmp(culeace__act_dataset_path(act, layers[i]),
               culeace__act_dataset_path(act, layers[0])))
      return 0;
  return m > 1;
}
