/* fitter.h — private bodies of the fitter and the eraser. */
#ifndef CULEACE_CORE_FITTER_H
#define CULEACE_CORE_FITTER_H

#include "backend/backend.h"
#include "core/ctx.h"

struct culeace_fitter {
  culeace_ctx *ctx;
  culeace_fit_opts opts;
  culeace_z_kind z_kind;
  int64_t d;
  int64_t k;     /* classes (CLASSES) or columns (CONTINUOUS) */
  int64_t z_dim; /* columns of the z matrix in the moments */
  int64_t n;     /* rows seen */
  double *mean_x;  /* (d) */
  double *mean_z;  /* (z_dim) */
  double *cxx;     /* (d, d) co-moment, upper triangle; NULL for orth */
  double *cxz;     /* (d, z_dim) co-moment */
  double *czz;     /* (z_dim, z_dim) co-moment of z; oracle only, else NULL */
  double *b_czz;   /* (z_dim, z_dim) a block's czz increment (oracle) */
  int64_t *class_counts; /* (k) for CLASSES */
  /* per-block scratch: block moments and the dense z block */
  double *b_mean_x, *b_mean_z, *b_cxx, *b_cxz, *zblock;
  int64_t zblock_rows;
  /* quadratic: each class's running mean and co-moment, and a buffer the
   * block's rows of one class are gathered into (quadratic.c) */
  double *q_mean; /* (k, d) */
  double *q_cxx;  /* (k, d, d) upper triangles */
  void *q_rows;
  size_t q_rows_bytes;
  int q_broken; /* a per-class update failed after the overall one */
  /* Running co-moments held by the backend (CUDA) instead of cxx/cxz; the
   * host copies are refreshed by culeace__fitter_sync before use. */
  void *dev_acc;
  int host_stale; /* cxx/cxz behind dev_acc */
};

/* Brings cxx/cxz up to date from the backend's running co-moments (a no-op
 * when the fitter merges on the host). */
/* The precision a block of type t is multiplied in: AUTO resolved by the
 * row type (include/culeace.h), the others as they are. */
static inline culeace_precision culeace__block_precision(culeace_precision p,
                                                         culeace_dtype t) {
  if (p != CULEACE_PRECISION_AUTO) return p;
  return t == CULEACE_F16 || t == CULEACE_BF16 ? CULEACE_PRECISION_F32
                                               : CULEACE_PRECISION_F64;
}

culeace_status culeace__fitter_sync(culeace_fitter *f);

struct culeace_eraser {
  culeace_eraser_info info;
  double *L;    /* (d, r) */
  double *R;    /* (r, d) */
  double *bias; /* (d), zeros when not affine */
  float *L32, *R32, *bias32;
  double *coef;   /* (d, z_dim) oracle erasers only (rank 0), else NULL */
  double *mean_z; /* (z_dim) oracle erasers only, else NULL */
  double *q_means;  /* (k, d) quadratic erasers only, else NULL */
  double *q_maps;   /* (k, d, d) transport maps (quadratic) */
  double *q_target; /* (d) the mean every class is moved to (quadratic) */
  uint64_t serial; /* unique per eraser contents (device caches key on it) */
};

/* Allocates an eraser with room for rank r (factors zeroed) and fills info's
 * d and rank. */
culeace_status culeace__eraser_alloc(culeace_ctx *ctx, int64_t d, int64_t r,
                                     culeace_eraser **out);
/* Info of an eraser that edits each row with its label (oracle,
 * quadratic): method m, z_dim, n_classes, rank 0 (no factors), affine 1,
 * no trace constraint; n_seen, shrinkage and svd_tol from the fitter f, or
 * for an eraser built from parameters (f NULL) 0, 0 and the fit default. */
void culeace__eraser_labelled_info(culeace_eraser *e, culeace_method m,
                                   int64_t z_dim, int64_t n_classes,
                                   const culeace_fitter *f);
/* Refreshes the float32 copies from the float64 factors and gives the
 * eraser a new serial. */
void culeace__eraser_sync(culeace_eraser *e);

/* Builds the oracle eraser (coef, mean_z) from finished moments
 * (oracle.c). */
culeace_status culeace__oracle_build(culeace_fitter *f, culeace_eraser **out);
/* The block's contribution to the oracle fitter's czz, before the block is
 * merged: b_czz = Z_c^T Z_c + w dz dz^T for z (n, z_dim) stride ldz
 * (oracle.c; merged into czz only once the block is accepted). */
void culeace__oracle_block_czz(culeace_fitter *f, const double *z,
                               int64_t n, int64_t ldz);

/* Quadratic LEACE (quadratic.c): allocates the per-class moments of a
 * fitter made with method QUADRATIC; adds a block's rows to them (classes
 * already checked; called before class_counts counts the block); builds the
 * eraser from them. */
culeace_status culeace__quadratic_init(culeace_fitter *f);
culeace_status culeace__quadratic_update(culeace_fitter *f, const void *x,
                                         culeace_dtype t, int64_t n,
                                         int64_t ldx, const int32_t *classes);
culeace_status culeace__quadratic_build(culeace_fitter *f,
                                        culeace_eraser **out);

/* Builds the LEACE/orth eraser from finished moments (leace.c). */
culeace_status culeace__leace_build(culeace_fitter *f, culeace_eraser **out);

/* The covariance-trace constraint: if tr(P S P^T) > tr(S) for the eraser's
 * P = I - L R, mixes P with Q = I - U U^T so the trace is kept and refactors
 * I - P by SVD, replacing *e (rank may grow). U: (d, rank) orthonormal
 * columns in a row-major (d, ldu) array; S: (d, d). For LEACE with S the
 * whitening covariance this cannot trigger in exact arithmetic (tr grows
 * by -|W+ u|^2 <= 0); it guards against round-off, as concept-erasure does. */
culeace_status culeace__constrain_trace(culeace_ctx *ctx, const double *S,
                                        int64_t d, const double *U,
                                        int64_t ldu, culeace_eraser **e);
/* The same from tr(S), RS = R S (rank, d) and SU = S U_rank (d, rank)
 * instead of S (the device path keeps S on the GPU). */
culeace_status culeace__constrain_trace_with(culeace_ctx *ctx, double trS,
                                             const double *RS, const double *SU,
                                             int64_t d, const double *U,
                                             int64_t ldu, culeace_eraser **e);

/* Optimal linear shrinkage (concept-erasure / Bodnar-Gupta-Parolya) of the
 * sample covariance S_n (d, d) for sample size n, in place (shrinkage.c):
 * S <- alpha S + diag_add I, the coefficients from tr(S) and ||S||_F^2
 * (culeace__shrinkage_coefs, shared with the device path). */
void culeace__optimal_linear_shrinkage(double *s, int64_t d, double n);
void culeace__shrinkage_coefs(double tr, double fro2, int64_t d, double n,
                              double *alpha, double *diag_add);

#endif
