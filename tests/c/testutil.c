/* testutil.c — implementation of the C test harness (see testutil.h). */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int tu_passed = 0, tu_failed = 0;

void tu_seed(tu_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 1; }

uint64_t tu_next(tu_rng *r) {
  uint64_t x = r->s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  r->s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

double tu_uniform(tu_rng *r) { return (double)(tu_next(r) >> 11) * 0x1.0p-53; }

double tu_normal(tu_rng *r) {
  double u1 = tu_uniform(r), u2 = tu_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t tu_randint(tu_rng *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)(tu_next(r) % (uint64_t)(hi - lo + 1));
}

double tu_rel_err(const double *a, const double *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(a[i] - b[i]);
    if (e > num || isnan(e)) num = isnan(e) ? INFINITY : e;
    if (fabs(b[i]) > den) den = fabs(b[i]);
  }
  return num / (den > 1e-300 ? den : 1e-300);
}

static const char *tu_join(const char *env, const char *dflt, const char *name) {
  static char bufs[8][1024];
  static int next = 0;
  const char *base = getenv(env);
  if (!base) base = dflt;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", base, name);
  return b;
}

const char *tu_tmp(const char *name) { return tu_join("CULEACE_TEST_TMP", "/tmp", name); }
const char *tu_src(const char *rel) { return tu_join("CULEACE_SOURCE_DIR", ".", rel); }

int tu_finish(const char *suite) {
  printf("%s: %d passed, %d failed\n", suite, tu_passed, tu_failed);
  return tu_failed ? 1 : 0;
}

static const H5I_type_t tu_id_types[3] = {H5I_DATASPACE, H5I_DATATYPE,
                                          H5I_GENPROP_LST};

void tu_h5_ids_take(tu_h5_ids *ids) {
  H5open();
  for (int k = 0; k < 3; k++) {
    hsize_t v = 0;
    H5Inmembers(tu_id_types[k], &v);
    ids->n[k] = v;
  }
}

void tu_h5_ids_check(const tu_h5_ids *ids) {
  ssize_t open_objs = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  CHECK(open_objs == 0, "%zd HDF5 objects left open", open_objs);
  for (int k = 0; k < 3; k++) {
    hsize_t now = 0;
    H5Inmembers(tu_id_types[k], &now);
    CHECK(now == ids->n[k], "HDF5 id type %d: %llu ids before, %llu after",
          (int)tu_id_types[k], ids->n[k], (unsigned long long)now);
  }
}
