/* testutil.h — tiny test harness for the C tests: CHECK macros that count
 * failures, a seeded random generator, scratch paths, and the closing line
 * "N passed, N failed" that ctest and CI read. */
#ifndef CULEACE_TESTUTIL_H
#define CULEACE_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>

extern int tu_passed, tu_failed;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (cond) {                                                                \
      tu_passed++;                                                             \
    } else {                                                                   \
      tu_failed++;                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
    }                                                                          \
  } while (0)

/* CHECK that a culeace call returned OK; prints the context's message. */
#define CHECK_OK(ctx, expr)                                                    \
  do {                                                                         \
    culeace_status chk_st_ = (expr);                                           \
    CHECK(chk_st_ == CULEACE_OK, "%s -> %s: %s", #expr,                        \
          culeace_status_name(chk_st_),                                        \
          (ctx) ? culeace_ctx_last_error(ctx) : "");                           \
  } while (0)

/* Deterministic xorshift generator. */
typedef struct { uint64_t s; } tu_rng;
void tu_seed(tu_rng *r, uint64_t seed);
uint64_t tu_next(tu_rng *r);
double tu_uniform(tu_rng *r);  /* [0, 1) */
double tu_normal(tu_rng *r);   /* N(0, 1) */
int64_t tu_randint(tu_rng *r, int64_t lo, int64_t hi); /* [lo, hi] */

/* Max |a - b| / max(max |b|, tiny) over n elements. */
double tu_rel_err(const double *a, const double *b, int64_t n);

/* Scratch path $CULEACE_TEST_TMP/name (static buffer rotation of 8). */
const char *tu_tmp(const char *name);
/* $CULEACE_SOURCE_DIR/rel (static buffer rotation of 8). */
const char *tu_src(const char *rel);

/* HDF5 leak check: counts of live dataspace, datatype and property-list
 * ids taken before the tests; tu_h5_ids_check CHECKs that no file object is
 * open and the counts are back where they were. */
typedef struct {
  unsigned long long n[3];
} tu_h5_ids;
void tu_h5_ids_take(tu_h5_ids *ids);
void tu_h5_ids_check(const tu_h5_ids *ids);

/* Prints "N passed, N failed" and returns the exit code. */
int tu_finish(const char *suite);

#endif
