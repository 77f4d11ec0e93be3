/* erasers.c — loads an eraser file for apply/check and matches each eraser
 * to the layer of the activations it was fitted on (by layer name), checking
 * widths before any data is touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* Bytes an eraser holds in memory: its factors (float64 and float32), bias,
 * and the oracle/quadratic parameters. */
static double eraser_bytes(const culeace_eraser_info *in) {
  double d = (double)in->d, r = (double)in->rank, k = (double)in->n_classes;
  double b = 2.0 * d * r * 12.0 + d * 12.0;
  if (in->method == CULEACE_METHOD_ORACLE) b += (d + 1.0) * in->z_dim * 8.0;
  if (in->method == CULEACE_METHOD_QUADRATIC) b += k * (d * d + d) * 8.0 + d * 8;
  return b;
}

/* Loads the erasers and matches each to a layer of act by name; the ones
 * kept must fit in --max-memory (quadratic erasers hold k d^2 values). */
int64_t cli_load_erasers(const cli_common *c, culeace_ctx *ctx,
                          const char *erasers, culeace_act *act,
                          cli_layer_eraser **out) {
  culeace_eraser_file *ef = NULL;
  *out = NULL;
  if (culeace_eraser_file_open(ctx, erasers, &ef))
    return cli_error_ctx(c, ctx, ""), -1;
  int64_t cnt = culeace_eraser_file_count(ef), m = 0;
  double held = 0;
  int64_t *sel = NULL, nsel = cli_parse_layers(c, c->layers, act, &sel);
  cli_layer_eraser *items = calloc((size_t)(cnt ? cnt : 1), sizeof *items);
  if (nsel < 0 || !items) {
    if (items == NULL && nsel >= 0) cli_error(c, "out of memory");
    goto fail;
  }
  int64_t L = culeace__act_layers(act), d = culeace__act_width(act);
  for (int64_t i = 0; i < cnt; i++) {
    culeace_eraser *e = NULL;
    culeace_eraser_meta meta;
    if (culeace_eraser_file_load(ef, i, &e, &meta)) {
      cli_error_ctx(c, ctx, "");
      goto fail;
    }
    int64_t layer = -1;
    for (int64_t l = 0; l < L; l++)
      if (!strcmp(culeace__act_layer_name(act, l), meta.layer_name)) layer = l;
    if (layer < 0 && cnt == 1 && L == 1) layer = 0;
    if (layer < 0) {
      cli_error(c, "eraser %lld of %s was fitted on layer '%s' (%s), but the "
                "activations %s have no layer of that name", (long long)i,
                erasers, meta.layer_name, meta.source_dataset,
                c->spec.x_path);
      culeace_eraser_free(e);
      goto fail;
    }
    culeace_eraser_info info;
    culeace_eraser_info_get(e, &info);
    if (info.d != d) {
      cli_error(c, "eraser %lld of %s has d = %lld, but %s has d = %lld",
                (long long)i, erasers, (long long)info.d,
                culeace__act_dataset_path(act, layer), (long long)d);
      culeace_eraser_free(e);
      goto fail;
    }
    int wanted = 0;
    for (int64_t s = 0; s < nsel; s++) wanted |= sel[s] == layer;
    if (!wanted) {
      culeace_eraser_free(e);
      continue;
    }
    held += eraser_bytes(&info);
    if (held > cli_memory_limit(c) / 2) {
      char what[160];
      snprintf(what, sizeof what, "holding the selected erasers of %s (up "
               "to layer %s, %lld so far) in half the budget (the other "
               "half is for row blocks)", erasers,
               culeace__act_layer_name(act, layer), (long long)(m + 1));
      cli_check_memory(c, 2 * held, what); /* prints why */
      culeace_eraser_free(e);
      goto fail;
    }
    items[m].e = e;
    items[m].layer = layer;
    if (meta.class_values && meta.class_values[0] &&
        !(items[m].class_values = strdup(meta.class_values))) {
      cli_error(c, "out of memory");
      m++;
      goto fail;
    }
    snprintf(items[m].name, sizeof items[m].name, "%s",
             culeace__act_layer_name(act, layer));
    m++;
  }
  if (m == 0) {
    cli_error(c, "no eraser of %s matches the selected layers", erasers);
    goto fail;
  }
  if (cli_check_block_memory(c, act, 0, "streaming rows of " /* erasers: above */
                             "the selected layers"))
    goto fail;
  free(sel);
  culeace_eraser_file_free(ef);
  *out = items;
  return m;
fail:
  cli_free_erasers(items, cnt);
  free(sel);
  culeace_eraser_file_free(ef);
  return -1;
}

void cli_free_erasers(cli_layer_eraser *items, int64_t m) {
  for (int64_t i = 0; items && i < m; i++) {
    culeace_eraser_free(items[i].e);
    free(items[i].class_values);
  }
  free(items);
}
