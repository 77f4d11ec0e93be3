/* probe_mdl.c — the data order and training masks of the MDL online code
 * (Voita & Titov 2020, "Information-Theoretic Probing with Minimum
 * Description Length"): rows in a seeded random order (whole groups kept
 * together so no block shares a prompt with its training prefix), blocks
 * ending at 0.1, 0.2, 0.4, ..., 50, 100 percent of the rows (core/eval.h). */
#include <stdlib.h>
#include <string.h>

#include "cli/probe.h"
#include "core/eval.h"

typedef struct {
  uint64_t key;  /* random key of the row's group (or of the row) */
  int64_t gid;   /* group id (ties of key) */
  int64_t row;
} order_item;

static int cmp_item(const void *a, const void *b) {
  const order_item *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  if (x->gid != y->gid) return x->gid < y->gid ? -1 : 1;
  return x->row < y->row ? -1 : x->row > y->row;
}

/* Hash of a group id with the seed: the same group always gets the same
 * key, so its rows sort together. */
static uint64_t mix(uint64_t x, uint64_t seed) {
  culeace__rng r;
  culeace__rng_seed(&r, x ^ (seed * 0x9E3779B97F4A7C15ull + 0x4D444C));
  return culeace__rng_next(&r);
}

int probe_mdl_order(const cli_common *c, int64_t N, const int32_t *labels,
                    const int64_t *groups, uint64_t seed, int64_t *key) {
  int64_t m = 0;
  for (int64_t i = 0; i < N; i++) m += labels[i] >= 0;
  order_item *v = malloc((size_t)(m ? m : 1) * sizeof *v);
  if (!v) return cli_error(c, "out of memory ordering rows for --mdl");
  m = 0;
  for (int64_t i = 0; i < N; i++) {
    key[i] = -1;
    if (labels[i] < 0) continue;
    int64_t g = groups ? groups[i] : i;
    v[m++] = (order_item){mix((uint64_t)g, seed), g, i};
  }
  qsort(v, (size_t)m, sizeof *v, cmp_item);
  for (int64_t j = 0; j < m; j++) key[v[j].row] = j;
  free(v);
  return 0;
}

int probe_mdl_masks(int64_t n, int64_t k, const int32_t *y,
                    const int64_t *pos, const int64_t *ends, int nb,
                    uint8_t **masks, int *usable) {
  int64_t *seen = calloc((size_t)k, sizeof *seen);
  int blocks = nb > 1 ? nb - 1 : 0;
  for (int b = 0; b < blocks; b++) {
    /* block b + 1 ([ends[b], ends[b+1])) is coded by a probe trained on
     * the prefix [0, ends[b]) */
    int64_t end = ends[b];
    if (seen) memset(seen, 0, (size_t)k * sizeof *seen);
    for (int64_t i = 0; i < n; i++) {
      masks[b][i] = pos[i] < end;
      if (masks[b][i] && seen && y[i] >= 0 && y[i] < k) seen[y[i]]++;
    }
    usable[b] = seen != NULL;
    for (int64_t c = 0; seen && c < k; c++)
      if (!seen[c]) usable[b] = 0;
  }
  free(seen);
  return blocks;
}
