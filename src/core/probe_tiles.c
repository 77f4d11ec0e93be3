/* probe_tiles.c — the probes' per-block kernels in register tiles, for
 * AVX-512 and float32 sums (probe_logistic.c picks them on such CPUs): a
 * block of 8 centred rows sits in L1 (probe_logistic.c's row blocks), so
 * what bounds the kernels is loads per FMA. The plain kernels load every
 * row element once per output (9 loads for 8 FMAs); tiles of 4 rows x up
 * to 5 outputs keep 20 sums in registers and load each row element once
 * per 5 outputs (9 loads for 20 FMAs).
 *   dots: z (8, M) = x (8, d) W^T (M, d) + b
 *   axpy: G (M, d) += r^T (M, 8) x (8, d); rs (M) += column sums of r */
#include <stdint.h>

#include "core/probe.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))
/* tiles are inlined with a constant output count, so their sums stay in
 * registers */
#define TILE AVX512 static inline __attribute__((always_inline))
enum { TR = 4, TO = 5 }; /* rows, outputs per tile */

/* The lanes of the 16 columns from j that lie within d. */
TILE __mmask16 lanes(int64_t d, int64_t j) {
  return d - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - j)) - 1);
}

/* xv[r] = columns j .. j+15 of row x[r] (lanes m), for the TR rows. */
TILE void load_rows(const float *const *x, int64_t j, __mmask16 m,
                    __m512 *xv) {
  _Pragma("GCC unroll 4") for (int r = 0; r < TR; r++)
    xv[r] = _mm512_maskz_loadu_ps(m, x[r] + j);
}

/* Sums of rows x[0..3] against outputs W[o0 .. o0+no-1], no <= TO, into
 * z (rows of M). */
TILE void dots_tile(const float *W, const double *b, int64_t M, int64_t d,
                    const float *const *x, int64_t o0, int no, double *z) {
  __m512 acc[TR][TO];
  _Pragma("GCC unroll 4") for (int r = 0; r < TR; r++)
    _Pragma("GCC unroll 5") for (int o = 0; o < TO; o++)
      acc[r][o] = _mm512_setzero_ps();
  for (int64_t j = 0; j < d; j += 16) {
    __mmask16 m = lanes(d, j);
    __m512 xv[TR];
    load_rows(x, j, m, xv);
    _Pragma("GCC unroll 5") for (int o = 0; o < no; o++) {
      __m512 w = _mm512_maskz_loadu_ps(m, W + (o0 + o) * d + j);
      _Pragma("GCC unroll 4") for (int r = 0; r < TR; r++)
        acc[r][o] = _mm512_fmadd_ps(xv[r], w, acc[r][o]);
    }
  }
  _Pragma("GCC unroll 4") for (int r = 0; r < TR; r++)
    _Pragma("GCC unroll 5") for (int o = 0; o < no; o++)
      z[r * M + o0 + o] = (double)_mm512_reduce_add_ps(acc[r][o]) + b[o0 + o];
}

AVX512 void culeace__dots8_tiled_f32(const float *W, const double *b,
                                     int64_t M, int64_t d,
                                     const float *const *x, double *z) {
  for (int half = 0; half < 2; half++)
    for (int64_t o0 = 0; o0 < M; o0 += TO) {
      int no = M - o0 < TO ? (int)(M - o0) : TO;
      double *zh = z + half * TR * M;
      const float *const *xh = x + half * TR;
      switch (no) { /* constant trip counts keep the sums in registers */
      case 5: dots_tile(W, b, M, d, xh, o0, 5, zh); break;
      case 4: dots_tile(W, b, M, d, xh, o0, 4, zh); break;
      case 3: dots_tile(W, b, M, d, xh, o0, 3, zh); break;
      case 2: dots_tile(W, b, M, d, xh, o0, 2, zh); break;
      default: dots_tile(W, b, M, d, xh, o0, 1, zh); break;
      }
    }
}

/* G[o0 .. o0+no-1] += r (rows 0..3, those outputs)^T x[0..3]. */
TILE void axpy_tile(float *G, const double *r, int64_t M, int64_t d,
                    const float *const *x, int64_t o0, int no) {
  __m512 rv[TR][TO];
  _Pragma("GCC unroll 4") for (int q = 0; q < TR; q++)
    _Pragma("GCC unroll 5") for (int o = 0; o < TO; o++)
      rv[q][o] = _mm512_set1_ps(o < no ? (float)r[q * M + o0 + o] : 0.0f);
  for (int64_t j = 0; j < d; j += 16) {
    __mmask16 m = lanes(d, j);
    __m512 xv[TR];
    load_rows(x, j, m, xv);
    _Pragma("GCC unroll 5") for (int o = 0; o < no; o++) {
      float *g = G + (o0 + o) * d + j;
      __m512 acc = _mm512_maskz_loadu_ps(m, g);
      _Pragma("GCC unroll 4") for (int q = 0; q < TR; q++)
        acc = _mm512_fmadd_ps(xv[q], rv[q][o], acc);
      _mm512_mask_storeu_ps(g, m, acc);
    }
  }
}

AVX512 void culeace__axpy8_tiled_f32(void *Gv, double *rs, const double *r,
                                     int64_t M, int64_t d,
                                     const float *const *x) {
  float *G = Gv;
  for (int64_t c = 0; c < M; c++)
    for (int q = 0; q < 8; q++) rs[c] += r[q * M + c];
  for (int half = 0; half < 2; half++) {
    const double *rh = r + half * TR * M;
    int any = 0; /* a block of rows no problem trains on adds nothing */
    for (int64_t e = 0; e < TR * M && !any; e++) any = rh[e] != 0;
    if (!any) continue;
    const float *const *xh = x + half * TR;
    for (int64_t o0 = 0; o0 < M; o0 += TO) {
      int no = M - o0 < TO ? (int)(M - o0) : TO;
      switch (no) {
      case 5: axpy_tile(G, rh, M, d, xh, o0, 5); break;
      case 4: axpy_tile(G, rh, M, d, xh, o0, 4); break;
      case 3: axpy_tile(G, rh, M, d, xh, o0, 3); break;
      case 2: axpy_tile(G, rh, M, d, xh, o0, 2); break;
      default: axpy_tile(G, rh, M, d, xh, o0, 1); break;
      }
    }
  }
}
#endif
