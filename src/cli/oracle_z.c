/* oracle_z.c — maps the --z labels of apply/check onto the z or classes of
 * an eraser that takes labels (oracle, quadratic; see oracle_z.h): label
 * values are matched to the eraser's
 * class_values, never re-derived from the file being edited (whose classes
 * may be a subset, or ordered differently). */
#include <stdlib.h>
#include <string.h>

#include "cli/oracle_z.h"

int cli_takes_labels(culeace_method m) {
  return m == CULEACE_METHOD_ORACLE || m == CULEACE_METHOD_QUADRATIC;
}

int cli_any_labelled(const cli_layer_eraser *items, int64_t m,
                     int64_t *first) {
  for (int64_t i = 0; i < m; i++) {
    culeace_eraser_info info;
    culeace_eraser_info_get(items[i].e, &info);
    if (cli_takes_labels(info.method)) {
      if (first) *first = i;
      return 1;
    }
  }
  return 0;
}

/* Parses "v0,v1,..." into exactly k values; 0 ok. */
static int parse_values(const char *s, int64_t k, int64_t *out) {
  int64_t n = 0;
  while (s && *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || n >= k) return -1;
    out[n++] = v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',') return -1;
  }
  return n == k ? 0 : -1;
}

int cli_oracle_zmap(const cli_common *c, const char *erasers,
                    const cli_layer_eraser *it, const culeace_labels *lab,
                    oracle_zmap *out) {
  culeace_eraser_info info;
  culeace_eraser_info_get(it->e, &info);
  memset(out, 0, sizeof *out);
  out->zd = info.z_dim;
  out->method = info.method;
  const char *mn = culeace_method_name(info.method);
  out->classes = info.n_classes >= 2;
  if (!out->classes) { /* continuous z */
    if (lab->continuous && lab->k != info.z_dim)
      return cli_error(c, "%s: the %s eraser of layer %s takes %lld z "
                       "column%s, but the --z labels have %lld", erasers,
                       mn, it->name, (long long)info.z_dim,
                       info.z_dim == 1 ? "" : "s", (long long)lab->k);
    if (!lab->continuous && info.z_dim != 1)
      return cli_error(c, "%s: the %s eraser of layer %s takes %lld "
                       "continuous z columns, but the --z labels are one "
                       "integer column", erasers, mn, it->name,
                       (long long)info.z_dim);
    out->value_as_z = !lab->continuous;
    return 0;
  }
  if (lab->continuous)
    return cli_error(c, "%s: the %s eraser of layer %s was fitted on "
                     "%lld classes, but the --z labels are continuous "
                     "(float) values", erasers, mn, it->name,
                     (long long)info.n_classes);
  int64_t k = info.n_classes;
  int64_t *vals = malloc((size_t)k * sizeof *vals);
  out->map = malloc((size_t)(lab->n_classes ? lab->n_classes : 1) *
                    sizeof *out->map);
  if (!vals || !out->map) {
    free(vals);
    cli_oracle_zmap_free(out);
    return cli_error(c, "out of memory");
  }
  if (!it->class_values || parse_values(it->class_values, k, vals)) {
    cli_error(c, "%s: the %s eraser of layer %s has no usable "
              "class_values for its %lld classes (got '%s'): the labels "
              "cannot be mapped to its classes", erasers, mn, it->name,
              (long long)k, it->class_values ? it->class_values : "");
    goto fail;
  }
  for (int64_t j = 0; j < lab->n_classes; j++) {
    int64_t v = lab->class_values[j], hit = -1;
    for (int64_t q = 0; q < k && hit < 0; q++)
      if (vals[q] == v) hit = q;
    if (hit < 0) {
      cli_error(c, "%s: the --z labels have the value %lld, which is not a "
                "class of the %s eraser of layer %s (its classes: %s)",
                erasers, (long long)v, mn, it->name, it->class_values);
      goto fail;
    }
    out->map[j] = (int32_t)hit;
  }
  free(vals);
  return 0;
fail:
  free(vals);
  cli_oracle_zmap_free(out);
  return 1;
}

void cli_oracle_zmap_free(oracle_zmap *m) {
  free(m->map);
  m->map = NULL;
}

void cli_oracle_z_row(const oracle_zmap *m, const culeace_labels *lab,
                      int32_t cls, const double *zc, double *out) {
  if (!m->classes) {
    if (m->value_as_z)
      out[0] = (double)lab->class_values[cls];
    else
      memcpy(out, zc, (size_t)m->zd * sizeof *out);
    return;
  }
  int32_t q = m->map[cls];
  if (m->zd == 1) {
    out[0] = q == 1 ? 1.0 : 0.0;
    return;
  }
  memset(out, 0, (size_t)m->zd * sizeof *out);
  out[q] = 1.0;
}

culeace_status cli_erase_labelled(culeace_ctx *ctx, const culeace_eraser *e,
                                  const oracle_zmap *zm,
                                  const culeace_labels *lab, void *rows,
                                  culeace_dtype dt, int64_t n, int64_t d,
                                  const int32_t *cls, const double *zc,
                                  const int64_t *idx, double *zbuf) {
  if (zm->method == CULEACE_METHOD_QUADRATIC) {
    int32_t *c = (int32_t *)zbuf; /* n doubles hold n int32s */
    for (int64_t i = 0; i < n; i++) c[i] = zm->map[cls[idx ? idx[i] : i]];
    return culeace_eraser_apply_quadratic(ctx, e, rows, dt, n, d, c);
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t r = idx ? idx[i] : i;
    cli_oracle_z_row(zm, lab, lab->continuous ? 0 : cls[r],
                     lab->continuous ? zc + r * lab->k : NULL,
                     zbuf + i * zm->zd);
  }
  return culeace_eraser_apply_oracle(ctx, e, rows, dt, n, d, zbuf, zm->zd);
}
