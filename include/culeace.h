/* culeace.h — the one public C API of culeace.
 *
 * Linear concept erasure (LEACE) over neural-network activations.
 * Conventions (see docs/DESIGN.md):
 *   - every function returns culeace_status (0 = OK, negative = error) and
 *     writes results through out-parameters;
 *   - handles are opaque; constructors are culeace_X_create(..., &out),
 *     destructors culeace_X_free (NULL-safe);
 *   - the context keeps a detailed message for the last error
 *     (culeace_ctx_last_error);
 *   - option structs are filled with defaults by culeace_X_opts_init so that
 *     fields can be added later without breaking callers;
 *   - matrices are row-major; "x: (n, d), stride ldx >= d" means row i starts
 *     at x + i*ldx elements.
 */
#ifndef CULEACE_H
#define CULEACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CULEACE_VERSION_MAJOR 0
#define CULEACE_VERSION_MINOR 1
#define CULEACE_VERSION_PATCH 0
#define CULEACE_VERSION_STRING "0.1.0"

/* ---- status codes: one X-macro table (name, value, description) -------- */
#define CULEACE_STATUS_MAP(X)                                                  \
  X(OK, 0, "success")                                                          \
  X(ERR_INVALID_ARG, -1, "invalid argument")                                   \
  X(ERR_OUT_OF_MEMORY, -2, "out of memory")                                    \
  X(ERR_IO, -3, "file input/output error")                                     \
  X(ERR_NOT_FOUND, -4, "file, dataset or attribute not found")                 \
  X(ERR_FORMAT, -5, "unexpected file format or contents")                      \
  X(ERR_SHAPE, -6, "shape mismatch")                                           \
  X(ERR_DTYPE, -7, "unsupported data type")                                    \
  X(ERR_NONFINITE, -8, "non-finite value (NaN or Inf) in input")               \
  X(ERR_DEGENERATE, -9, "degenerate input (too few rows or classes)")          \
  X(ERR_NOT_BUILT, -10, "feature not compiled into this build")                \
  X(ERR_NO_DEVICE, -11, "no usable GPU")                                       \
  X(ERR_HDF5, -12, "HDF5 library error")                                       \
  X(ERR_LAPACK, -13, "LAPACK routine failed")                                  \
  X(ERR_CUDA, -14, "CUDA runtime error")                                       \
  X(ERR_CUBLAS, -15, "cuBLAS error")                                           \
  X(ERR_CUSOLVER, -16, "cuSOLVER error")                                       \
  X(ERR_MPI, -17, "MPI error")                                                 \
  X(ERR_EXISTS, -18, "output already exists or would overwrite the input")     \
  X(ERR_STATE, -19, "operation not valid in the current state")               \
  X(ERR_INTERNAL, -20, "internal error")

typedef enum {
#define CULEACE_STATUS_ENUM_(name, value, text) CULEACE_##name = value,
  CULEACE_STATUS_MAP(CULEACE_STATUS_ENUM_)
#undef CULEACE_STATUS_ENUM_
} culeace_status;

/* "CULEACE_ERR_SHAPE" etc.; "CULEACE_UNKNOWN" for values outside the table. */
const char *culeace_status_name(culeace_status s);
/* One-line description of the code (not of the particular failure: see
 * culeace_ctx_last_error for that). */
const char *culeace_strerror(culeace_status s);

/* ---- version and build ---------------------------------------------------- */
const char *culeace_version(void);
/* Space-separated list of compiled-in backends, e.g. "cpu" or "cpu cuda". */
const char *culeace_backends_compiled(void);

/* ---- element types ---------------------------------------------------------- */
typedef enum {
  CULEACE_F32 = 0,
  CULEACE_F16 = 1,  /* IEEE binary16 */
  CULEACE_BF16 = 2, /* bfloat16 */
  CULEACE_F64 = 3
} culeace_dtype;

size_t culeace_dtype_size(culeace_dtype t); /* 0 for an unknown type */
const char *culeace_dtype_name(culeace_dtype t); /* "float16", ... */

/* ---- context -------------------------------------------------------------- */
typedef enum {
  CULEACE_DEVICE_AUTO = 0, /* CUDA when a usable GPU exists, else CPU */
  CULEACE_DEVICE_CPU = 1,
  CULEACE_DEVICE_CUDA = 2
} culeace_device;

typedef struct {
  culeace_device device;
  int device_index; /* CUDA device ordinal when device is CUDA */
  int n_threads;    /* CPU threads (BLAS and OpenMP loops, process-wide);
                       0 = library default (all) */
} culeace_ctx_opts;

typedef struct culeace_ctx culeace_ctx;

void culeace_ctx_opts_init(culeace_ctx_opts *opts);
/* On failure *out is NULL; where the failure has a message beyond the status
 * code (e.g. "not built with CUDA"), it is written to errbuf (may be NULL). */
culeace_status culeace_ctx_create(const culeace_ctx_opts *opts,
                                  culeace_ctx **out, char *errbuf,
                                  size_t errbuf_len);
void culeace_ctx_free(culeace_ctx *ctx);
/* Message of the last error on this context ("" when none). Valid until the
 * next call on the context. */
const char *culeace_ctx_last_error(const culeace_ctx *ctx);
/* "cpu" or "cuda:N": the backend the context runs on. */
const char *culeace_ctx_backend_name(const culeace_ctx *ctx);
/* One line saying which backend was picked and why (for AUTO). */
const char *culeace_ctx_device_note(const culeace_ctx *ctx);
/* Number of CUDA devices this process can use (0 when the build has no
 * CUDA backend or there is no driver or GPU); for picking one device per
 * process, e.g. the node-local MPI rank modulo this count (devices.c). */
int culeace_cuda_device_count(void);

/* ---- LEACE fitter ------------------------------------------------------------ */
typedef enum {
  CULEACE_METHOD_LEACE = 0, /* whitened (oblique) projection: LEACE */
  CULEACE_METHOD_ORTH = 1,  /* orthogonal projection onto ker(Sigma_xz^T) */
  CULEACE_METHOD_INLP = 2,  /* iterative nullspace projection (Ravfogel et
                               al. 2020): orthogonal projection out of the
                               span of successive probe directions */
  CULEACE_METHOD_RLACE = 3, /* R-LACE (Ravfogel et al. 2022): rank-k
                               orthogonal projection from a minimax game */
  CULEACE_METHOD_ORACLE = 4, /* oracle LEACE: x' = x - (z - mean_z) coef^T,
                                needs z at apply time */
  CULEACE_METHOD_QUADRATIC = 5 /* quadratic LEACE: each class moved onto the
                                  2-Wasserstein barycenter of the classes'
                                  Gaussians; needs the class at apply time */
} culeace_method;

/* "leace", "orth", "inlp", "rlace", "oracle", "quadratic"; NULL for other
 * values. */
const char *culeace_method_name(culeace_method m);
/* The method named s (as culeace_method_name writes it): 0 and *out set,
 * or -1 for an unknown name. */
int culeace_method_parse(const char *s, culeace_method *out);

typedef enum {
  CULEACE_PRECISION_F64 = 0, /* block moments in float64 (reference) */
  CULEACE_PRECISION_F32 = 1, /* block moments in float32 after centring on
                                the block mean, merged into float64 */
  CULEACE_PRECISION_TENSOR = 2, /* as F32, except that for float16/bfloat16
                                rows the centred values are rounded back to
                                the row's 16-bit type before Xc^T Xc (float32
                                accumulation): tensor-core GEMM on the GPU */
  CULEACE_PRECISION_AUTO = 3 /* F32 for float16/bfloat16 rows (their 11 or 8
                                significant bits: float32 products of the
                                centred block change erased rows far below
                                the type's rounding), F64 for float32 and
                                float64 rows; chosen block by block */
} culeace_precision;

typedef struct {
  culeace_method method;
  int affine;              /* 1: keep the mean (bias = mean_x); 0: linear */
  int shrinkage;           /* 1: optimal linear shrinkage of Sigma_xx */
  int constrain_cov_trace; /* 1: never let the trace of Cov(x') exceed
                              Cov(x) (concept-erasure's default) */
  double svd_tol;          /* singular values of W Sigma_xz <= svd_tol are
                              dropped; must be > 0 (default 0.01) */
  culeace_precision precision;
} culeace_fit_opts;

void culeace_fit_opts_init(culeace_fit_opts *opts);

/* How z is given to the fitter. */
typedef enum {
  CULEACE_Z_CLASSES = 0,   /* class indices 0..k-1; binary (k = 2) uses one
                              indicator column, k >= 3 one-hot k columns */
  CULEACE_Z_CONTINUOUS = 1 /* (n, k) float64 columns */
} culeace_z_kind;

typedef struct culeace_fitter culeace_fitter;

/* d: feature width; k: number of classes (CLASSES, k >= 2) or number of
 * continuous columns (CONTINUOUS, k >= 1). */
culeace_status culeace_fitter_create(culeace_ctx *ctx, int64_t d, int64_t k,
                                     culeace_z_kind z_kind,
                                     const culeace_fit_opts *opts,
                                     culeace_fitter **out);
void culeace_fitter_free(culeace_fitter *f);

/* Adds n rows. x: (n, d) of type xtype, row stride ldx >= d (elements).
 * Blocks of any size may be given any number of times; the result equals the
 * one-pass float64 moments (Chan et al. merge). Rows with NaN/Inf are
 * rejected (CULEACE_ERR_NONFINITE, message names the row within the block)
 * and nothing is added. */
culeace_status culeace_fitter_update_classes(culeace_fitter *f, const void *x,
                                             culeace_dtype xtype, int64_t n,
                                             int64_t ldx,
                                             const int32_t *classes /* (n) */);
culeace_status culeace_fitter_update_continuous(culeace_fitter *f,
                                                const void *x,
                                                culeace_dtype xtype, int64_t n,
                                                int64_t ldx,
                                                const double *z /* (n, k) */,
                                                int64_t ldz);

/* Number of rows seen. */
int64_t culeace_fitter_rows(const culeace_fitter *f);
/* Width of the z matrix the moments use (1 for binary classes). */
int64_t culeace_fitter_z_dim(const culeace_fitter *f);

/* Moments (float64, population-free: co-moments divided by n - 1).
 * Any output may be NULL. mean_x: (d); mean_z: (z_dim);
 * sigma_xz: (d, z_dim) row-major; sigma_xx: (d, d) (without shrinkage). */
culeace_status culeace_fitter_moments(const culeace_fitter *f, double *mean_x,
                                      double *mean_z, double *sigma_xz,
                                      double *sigma_xx);
/* Per-class means and counts (CLASSES only). means: (k, d); counts: (k). */
culeace_status culeace_fitter_class_means(const culeace_fitter *f,
                                          double *means, int64_t *counts);

/* ---- fitter state: fits sharded over processes (fitter_state.c) ---------
 * A fitter's running state as a flat float64 array, to send to another
 * process and merge there into a fitter created with the same d, k, z kind
 * and method (precision may differ). Merging state b into fitter a is the
 * pairwise update of Chan, Golub & LeVeque, exact for any shard sizes:
 *   delta = mean_b - mean_a;  n = n_a + n_b;  mean_a += delta n_b / n;
 *   C_a += C_b + delta delta^T n_a n_b / n   (C: C_xx, C_xz and C_zz);
 *   class counts add.
 * Fitting rows in shards and merging gives the moments of one fitter over
 * all rows to rounding; floating-point merges are not associative, so merge
 * in a fixed order (e.g. shard order) for run-to-run identical results.
 * Layout (count values): magic 0x1EAC35, version 1, n, d, k, z_dim, z_kind,
 * method; mean_x (d); mean_z (z_dim); class counts (k; zeros for
 * continuous z); C_xz (d, z_dim) row-major; C_xx's upper triangle row by
 * row (d (d + 1) / 2; LEACE only); C_zz (z_dim, z_dim) (ORACLE only);
 * QUADRATIC only: the class means (k, d), then each class's co-moment as
 * an upper triangle row by row (k d (d + 1) / 2), merged per class. Counts
 * are exact integers in doubles (up to 2^53 rows). */

/* Number of doubles of f's state (constant for the fitter's lifetime). */
culeace_status culeace_fitter_state_size(const culeace_fitter *f,
                                         size_t *count);
/* Writes f's state into buf (count doubles, culeace_fitter_state_size). On
 * a CUDA context the co-moments are read back from the GPU first. */
culeace_status culeace_fitter_export(const culeace_fitter *f, double *buf);
/* Merges a state (buf, count doubles, as culeace_fitter_export wrote it)
 * into f. The header, sizes, counts and means are checked first and f is
 * unchanged on error: CULEACE_ERR_FORMAT (not a state, wrong count or
 * version, bad counts), CULEACE_ERR_SHAPE (other d, k or z_dim),
 * CULEACE_ERR_STATE (other z kind or method), CULEACE_ERR_NONFINITE. A
 * state of 0 rows changes nothing. On a CUDA context f's co-moments move
 * to the host at the first merge and later updates merge there. */
culeace_status culeace_fitter_merge(culeace_fitter *f, const double *buf,
                                    size_t count);

/* ---- eraser ------------------------------------------------------------------ */
typedef struct culeace_eraser culeace_eraser;

/* Finalises the fitter's moments into an eraser (the fitter stays usable). */
culeace_status culeace_fitter_finalize(culeace_fitter *f,
                                       culeace_eraser **out);
void culeace_eraser_free(culeace_eraser *e);

typedef struct {
  int64_t d;       /* feature width */
  int64_t rank;    /* rank r of the edit: x' = x - ((x - bias) R^T) L^T */
  int64_t z_dim;   /* width of z used to fit */
  int64_t n_seen;  /* rows the moments were fitted on */
  int64_t n_classes; /* 0 for continuous z */
  culeace_method method;
  int affine, shrinkage, constrain_cov_trace;
  double svd_tol;
} culeace_eraser_info;

culeace_status culeace_eraser_info_get(const culeace_eraser *e,
                                       culeace_eraser_info *info);
/* Copies out the factors (float64). L: (d, r); R: (r, d); bias: (d) (zeros
 * when not affine). Any may be NULL. */
culeace_status culeace_eraser_factors(const culeace_eraser *e, double *L,
                                      double *R, double *bias);
/* Builds an eraser from factors (as loaded from elsewhere). Its info: d,
 * rank, affine (bias given), z_dim = max(rank, 1), n_seen = 0, method
 * LEACE, no shrinkage or trace constraint, svd_tol the fit default, so that
 * it can be written to an eraser file and read back. */
culeace_status culeace_eraser_from_factors(culeace_ctx *ctx, int64_t d,
                                           int64_t rank, const double *L,
                                           const double *R,
                                           const double *bias /* NULL ok */,
                                           culeace_eraser **out);

/* Edits rows in place: x <- x - ((x - bias) R^T) L^T, one pass over the
 * rows. x: (n, d) of type xtype, stride ldx >= d. float16/bfloat16 results
 * are rounded to nearest even. An oracle eraser needs z:
 * culeace_eraser_apply_oracle (here CULEACE_ERR_STATE). */
culeace_status culeace_eraser_apply(culeace_ctx *ctx, const culeace_eraser *e,
                                    void *x, culeace_dtype xtype, int64_t n,
                                    int64_t ldx);

/* The same edit on rows already in GPU memory (CUDA contexts only): x_dev
 * (n, d) of xtype with row stride ldx, on the context's device, enqueued on
 * `stream` (a cudaStream_t; NULL is the legacy default stream) and returning
 * without waiting for it. The eraser's factors are copied to the device on
 * first use and kept there (per context) while the eraser lives. float64
 * rows are edited in float64, the others in float32 with one rounding.
 * CULEACE_ERR_STATE on a CPU context. */
culeace_status culeace_eraser_apply_device(culeace_ctx *ctx,
                                           const culeace_eraser *e,
                                           void *x_dev, culeace_dtype xtype,
                                           int64_t n, int64_t ldx,
                                           void *stream);

/* ---- oracle erasers (method ORACLE) ------------------------------------------ */
/* Oracle LEACE (concept-erasure's OracleFitter/OracleEraser) edits each row
 * with its own z: x' = x - (z - mean_z) coef^T, coef = Sigma_xz
 * pinv(Sigma_zz) (d, z_dim). A fitter created with method ORACLE also keeps
 * z's co-moment; culeace_fitter_finalize then builds an oracle eraser:
 * Sigma_zz = sym(C_zz)/(n - 1), or with shrinkage the optimal linear
 * shrinkage of sym(C_zz)/n (concept-erasure's OracleFitter defaults to no
 * shrinkage); eigenvalues of Sigma_zz with |lambda| <= svd_tol are cut
 * (torch.linalg.pinv(atol=svd_tol)); mean_z is z's mean; affine and
 * constrain_cov_trace do not apply. Its info: method ORACLE, rank 0 (no
 * L/R factors), z_dim the width of coef; culeace_eraser_apply and
 * culeace_eraser_apply_device refuse it (CULEACE_ERR_STATE). */

/* Edits rows in place: x_i <- x_i - (z_i - mean_z) coef^T. x: (n, d) of
 * xtype, stride ldx >= d (host memory, on any context: the edit runs on the
 * CPU); z: (n, z_dim) float64, stride ldz >= z_dim, in the encoding the
 * eraser was fitted with (binary classes: one indicator column of class 1;
 * k >= 3 classes: one-hot; continuous: the columns). The difference is
 * formed in float64; float32 rows are rounded once, float16/bfloat16 via
 * float32 once more (as culeace_eraser_apply). A non-finite z is refused
 * before any row is edited (CULEACE_ERR_NONFINITE, naming the row);
 * CULEACE_ERR_STATE for an eraser that is not an oracle one. */
culeace_status culeace_eraser_apply_oracle(culeace_ctx *ctx,
                                           const culeace_eraser *e, void *x,
                                           culeace_dtype xtype, int64_t n,
                                           int64_t ldx,
                                           const double *z /* (n, z_dim) */,
                                           int64_t ldz);
/* Builds an oracle eraser from parameters (as loaded from elsewhere):
 * coef (d, z_dim), mean_z (z_dim), float64, all finite. Its info: d,
 * z_dim, rank 0, n_seen = 0, n_classes = 0 (continuous z), method ORACLE,
 * affine 1, no shrinkage, svd_tol the fit default. */
culeace_status culeace_eraser_from_oracle(culeace_ctx *ctx, int64_t d,
                                          int64_t z_dim, const double *coef,
                                          const double *mean_z,
                                          culeace_eraser **out);
/* Copies out an oracle eraser's coef (d, z_dim) and mean_z (z_dim); either
 * may be NULL. CULEACE_ERR_STATE for other erasers. */
culeace_status culeace_eraser_oracle_params(const culeace_eraser *e,
                                            double *coef, double *mean_z);

/* ---- quadratic erasers (method QUADRATIC) ------------------------------------ */
/* Quadratic LEACE (Belrose et al. 2023, concept-erasure's QuadraticFitter/
 * QuadraticEraser) equalises the class-conditional means and covariances:
 * a row x of class c becomes
 *   x' = A_c (x - mu_c) + m,
 * A_c (d, d) the optimal transport map from N(0, Sigma_c) to N(0, B), B the
 * 2-Wasserstein barycenter of the classes' covariances weighted by the
 * class priors (two classes: the closed-form midpoint; more: the
 * fixed-point iteration of Alvarez-Esteban et al., at most 100 steps), mu_c
 * the class means and m = sum_c prior_c mu_c the overall mean (concept-
 * erasure uses the unweighted mean of the class means; the two agree for
 * balanced classes, and the prior-weighted one keeps the data's mean and
 * gives the smaller edit). Sigma_c = sym(C_c)/n_c with optimal linear
 * shrinkage (the fit default), or C_c/(n_c - 1) without. A fitter created
 * with method QUADRATIC (class labels only) keeps each class's mean and
 * co-moment (k d^2 doubles); every class needs >= 2 rows at finalize. Its
 * eraser: method QUADRATIC, rank 0, n_classes = k; culeace_eraser_apply
 * refuses it (CULEACE_ERR_STATE). */

/* Edits rows in place with each row's class (0..k-1, the fitter's class
 * indices). x: (n, d) of xtype, stride ldx >= d, host memory on any
 * context. The map runs in float64 (backend GEMM on row chunks); float32
 * rows are rounded once, float16/bfloat16 via float32 once more. A class
 * outside 0..k-1 is refused before any row is edited (CULEACE_ERR_INVALID_ARG
 * naming the row); CULEACE_ERR_STATE for other erasers. */
culeace_status culeace_eraser_apply_quadratic(culeace_ctx *ctx,
                                              const culeace_eraser *e,
                                              void *x, culeace_dtype xtype,
                                              int64_t n, int64_t ldx,
                                              const int32_t *classes /* (n) */);
/* Builds a quadratic eraser from parameters: class means (k, d), maps
 * (k, d, d) and target mean (d), float64, all finite, k >= 2. Its info: d,
 * n_classes = k, z_dim (1 for k = 2, else k), rank 0, n_seen = 0, method
 * QUADRATIC, affine 1, svd_tol the fit default. */
culeace_status culeace_eraser_from_quadratic(culeace_ctx *ctx, int64_t d,
                                             int64_t k, const double *means,
                                             const double *maps,
                                             const double *target,
                                             culeace_eraser **out);
/* Class covariances of a QUADRATIC fitter: covs (k, d, d), class c's
 * C_c / (n_c - 1) (Bessel-corrected, no shrinkage); NaN for a class with
 * fewer than 2 rows. CULEACE_ERR_STATE for other fitters. */
culeace_status culeace_fitter_class_covariances(const culeace_fitter *f,
                                                double *covs);
/* Copies out a quadratic eraser's means (k, d), maps (k, d, d) and target
 * (d); any may be NULL. CULEACE_ERR_STATE for other erasers. */
culeace_status culeace_eraser_quadratic_params(const culeace_eraser *e,
                                               double *means, double *maps,
                                               double *target);

/* Host memory for row blocks the library reads: page-locked on a CUDA
 * context (so copies to the GPU run at full speed), plain malloc on the CPU.
 * NULL (and the context's message set) on failure. Free with
 * culeace_host_free on the same context. */
void *culeace_host_alloc(culeace_ctx *ctx, size_t bytes);
void culeace_host_free(culeace_ctx *ctx, void *p);

/* ---- eraser files (HDF5, see docs/FORMAT.md) ---------------------------- */
typedef struct {
  const char *source_file;    /* may be NULL */
  const char *source_dataset; /* may be NULL */
  int64_t layer;              /* -1 when not a layer of a stack */
  const char *layer_name;     /* may be NULL */
  const char *label_dataset;  /* may be NULL */
  const char *class_values;   /* "v0,v1,..." label values of classes 0..k-1 */
} culeace_eraser_meta;

void culeace_eraser_meta_init(culeace_eraser_meta *m);

typedef struct culeace_eraser_file culeace_eraser_file;

/* Creates FILE.tmp and writes erasers into it; commit renames it to FILE
 * atomically. Without commit (or on error) nothing is left behind. */
culeace_status culeace_eraser_file_create(culeace_ctx *ctx, const char *path,
                                          culeace_eraser_file **out);
culeace_status culeace_eraser_file_add(culeace_eraser_file *f,
                                       const culeace_eraser *e,
                                       const culeace_eraser_meta *meta);
culeace_status culeace_eraser_file_commit(culeace_eraser_file *f);
/* Aborts an uncommitted file (removes the temp file) and frees. */
void culeace_eraser_file_free(culeace_eraser_file *f);

/* Opens an eraser file for reading; validates the format version and every
 * field before allocating. */
culeace_status culeace_eraser_file_open(culeace_ctx *ctx, const char *path,
                                        culeace_eraser_file **out);
int64_t culeace_eraser_file_count(const culeace_eraser_file *f);
/* Loads eraser i (0-based, in file order). meta strings stay owned by the
 * file handle. */
culeace_status culeace_eraser_file_load(culeace_eraser_file *f, int64_t i,
                                        culeace_eraser **out,
                                        culeace_eraser_meta *meta);

/* ---- linear probes ------------------------------------------------------------ */
typedef enum {
  CULEACE_PROBE_LOGISTIC = 0, /* L2 logistic regression (sigmoid for 2
                                 classes, softmax for >= 3) */
  CULEACE_PROBE_DIFFMEANS = 1 /* class-mean directions (difference in means
                                 for 2 classes), with a fitted temperature */
} culeace_probe_kind;

typedef struct {
  culeace_probe_kind kind;
  double C;        /* inverse L2 strength, scikit-learn's C (> 0); 1.0 */
  double tol;      /* stop when max |gradient| <= tol (scikit-learn's tol for
                      lbfgs, on the mean objective); 1e-4 */
  int max_iter;    /* L-BFGS iterations; 100 (scikit-learn's default) */
  int history;     /* L-BFGS memory; 10 */
  int standardize; /* 1: z-score features with the training rows' mean and
                      population std (zero std -> 1), like StandardScaler */
  int balanced;    /* 1: class weights n_train / (k * n_c) */
} culeace_probe_opts;

void culeace_probe_opts_init(culeace_probe_opts *opts);

typedef struct culeace_probe culeace_probe;

typedef struct {
  culeace_probe_kind kind;
  int64_t d;
  int64_t n_classes; /* k */
  int64_t n_outputs; /* 1 for binary logistic, k otherwise */
  int64_t n_train;   /* training rows */
  int n_iter;        /* L-BFGS iterations taken */
  int converged;     /* 1 if max |gradient| <= tol was reached */
  double objective;  /* final mean weighted log-loss + penalty */
  double grad_max;   /* final max |gradient| */
} culeace_probe_info;

/* Fits P probes at once on the same rows: x (n, d) float32, stride ldx >= d.
 * Probe p learns labels[p] (n values in 0..k-1; rows it does not train on
 * may hold anything >= -1) from the rows i with train[p][i] != 0. All P
 * problems are evaluated together, one GEMM over x per L-BFGS step (the
 * batching that makes fold x variant sweeps cost one pass over the rows).
 * The objective is scikit-learn's: sum_i s_i logloss_i / S + |w|^2/(2 C S),
 * S = sum_i s_i over training rows, intercept not penalised.
 * out: caller's array of P pointers, each freed with culeace_probe_free.
 * A training set with a missing class is an error (CULEACE_ERR_DEGENERATE,
 * naming the probe and the class). */
culeace_status culeace_probe_fit_batch(culeace_ctx *ctx, const float *x,
                                       int64_t n, int64_t d, int64_t ldx,
                                       int64_t k, int64_t P,
                                       const int32_t *const *labels,
                                       const uint8_t *const *train,
                                       const culeace_probe_opts *opts,
                                       culeace_probe **out);
/* culeace_probe_fit_batch on L layers at once: x[l] (n, d) float32, stride
 * ldx, is layer l's activations of the same n rows, and every layer gets
 * the same P problems (labels, train). Layer l's probe p goes to
 * out[l * P + p] (caller's array of L * P pointers). The layers' L-BFGS
 * steps are taken together: on a GPU each step's passes over the layers
 * queue behind one another with one wait for all of them. Each probe is
 * the one culeace_probe_fit_batch gives for its layer alone (the same bits
 * on the CPU). On error every out is NULL and, when L > 1, the message
 * names the layer. */
culeace_status culeace_probe_fit_layers(culeace_ctx *ctx, int64_t L,
                                        const float *const *x, int64_t n,
                                        int64_t d, int64_t ldx, int64_t k,
                                        int64_t P,
                                        const int32_t *const *labels,
                                        const uint8_t *const *train,
                                        const culeace_probe_opts *opts,
                                        culeace_probe **out);
void culeace_probe_free(culeace_probe *p);
culeace_status culeace_probe_info_get(const culeace_probe *p,
                                      culeace_probe_info *info);

/* Class probabilities: proba (n, k) float64 for rows x (n, d) float32. */
culeace_status culeace_probe_predict_proba(culeace_ctx *ctx,
                                           const culeace_probe *p,
                                           const float *x, int64_t n,
                                           int64_t ldx, double *proba);

/* Parameters, float64. In the standardised space (scikit-learn's coef_ and
 * intercept_ after a StandardScaler): coef (n_outputs, d), intercept
 * (n_outputs); the standardisation: mean (d), scale (d). Logits of a row x
 * are coef ((x - mean) / scale) + intercept (for DIFFMEANS the temperature
 * is folded into coef and intercept). Any output may be NULL. */
culeace_status culeace_probe_params(const culeace_probe *p, double *coef,
                                    double *intercept, double *mean,
                                    double *scale);
/* Rebuilds a probe from saved parameters (e.g. a probe file). */
culeace_status culeace_probe_from_params(culeace_ctx *ctx,
                                         culeace_probe_kind kind, int64_t d,
                                         int64_t k, const double *coef,
                                         const double *intercept,
                                         const double *mean,
                                         const double *scale,
                                         culeace_probe **out);

/* ---- iterative erasers: INLP and R-LACE (inlp.c, rlace.c) ------------------
 * Both find an orthonormal U (d, r) from labelled rows and return an eraser
 * that is the orthogonal projection out of its span: L = U, R = U^T, bias =
 * the mean of the n rows (affine) or zeros, so x' = x - ((x - bias) U) U^T.
 * Inputs shared by both: x (n, d) float32, stride ldx >= d; labels (n) int32
 * classes 0..k-1 (k >= 2, every class among the training rows); train (n)
 * uint8: nonzero = a training row, zero = a held-out row (both functions
 * need at least one held-out row: it decides when to stop). The eraser's
 * info: method INLP/RLACE, n_seen = n, n_classes = k, z_dim = 1 for k = 2
 * else k, no shrinkage or trace constraint, svd_tol the LEACE default.
 * They run on the CPU (C + BLAS/LAPACK) whatever the context's device. */

typedef struct {
  int iterations;      /* most probes whose directions are removed; 20 */
  double min_accuracy; /* stop once the held-out accuracy is <= this; < 0
                          (default -1): majority baseline + margin */
  double margin;       /* 0.01 (used when min_accuracy < 0) */
  double C;            /* the probes' inverse L2 strength; 1.0 */
  int max_iter;        /* L-BFGS iterations per probe; 100 */
  int affine;          /* 1: bias = mean of x (default); 0: linear */
} culeace_inlp_opts;

void culeace_inlp_opts_init(culeace_inlp_opts *opts);

typedef struct {
  int iterations;   /* iterations whose directions were removed */
  int64_t rank;     /* directions removed (columns of U, in order) */
  int stopped;      /* 1: accuracy reached the threshold; 0: the iteration
                       limit (or rank d, or no new direction) ended it */
  double majority;  /* held-out accuracy of the training majority class */
  double threshold; /* the stopping accuracy used */
  double final_accuracy; /* held-out accuracy after the last removal */
} culeace_inlp_report;

/* INLP (Ravfogel et al. 2020). Iteration i fits a logistic probe (no
 * standardisation, C, max_iter) on the training rows projected by
 * P_i = I - U_i U_i^T and measures its accuracy on the held-out rows; it
 * stops there when that accuracy is <= the threshold or i = iterations;
 * otherwise it projects the probe's direction(s) (n_outputs: 1 for k = 2,
 * else k) by P_i, orthonormalises them (dropping any that vanish) and
 * appends them to U. accuracy: (opts->iterations + 1) doubles or NULL;
 * gets the held-out accuracy measured at each iteration (report->iterations
 * + 1 values: before any removal, ..., after the last). report may be
 * NULL. */
culeace_status culeace_inlp_fit(culeace_ctx *ctx, const float *x, int64_t n,
                                int64_t d, int64_t ldx, const int32_t *labels,
                                int64_t k, const uint8_t *train,
                                const culeace_inlp_opts *opts,
                                culeace_eraser **out,
                                culeace_inlp_report *report, double *accuracy);

typedef struct {
  int64_t rank;        /* k of the Fantope: directions removed; 1 */
  int iterations;      /* outer iterations (each one P step and one
                          classifier step on a mini-batch); 75000 */
  int64_t batch_size;  /* rows per mini-batch; 128 */
  double lr_P;         /* SGD step of the adversary P; 0.005 */
  double lr_clf;       /* SGD step of the classifier; 0.005 */
  double weight_decay; /* SGD weight decay of both players; 1e-4 */
  int evaluate_every;  /* iterations between evaluations; 1000 */
  double epsilon;      /* stop once the best held-out log-loss is within
                          epsilon of the label entropy (nats); 0.0015 */
  double C;            /* inverse L2 strength of the evaluation probe; 1.0 */
  int max_iter;        /* its L-BFGS iterations; 100 */
  uint64_t seed;       /* initial P, classifier and batches; 0 */
  int affine;          /* 1: centre on (and bias =) the mean of x; 0 */
} culeace_rlace_opts;

void culeace_rlace_opts_init(culeace_rlace_opts *opts);

typedef struct {
  int iterations;       /* outer iterations run */
  int evaluations;      /* evaluations made */
  int best_iteration;   /* iteration of the P returned */
  double label_entropy; /* entropy of the training labels (nats) */
  double best_loss;     /* held-out log-loss of the probe at that P */
  double accuracy;      /* its held-out accuracy */
  double majority;      /* held-out accuracy of the majority class */
} culeace_rlace_report;

/* R-LACE (Ravfogel et al. 2022): the relaxed game min over P in the Fantope
 * {0 <= P <= I, tr P = rank} of max over a linear classifier (sigmoid for
 * k = 2, softmax otherwise) of its mean log-loss on mini-batches of
 * (x - bias)(I - P). Each iteration: one SGD ascent step on P followed by
 * the projection onto the Fantope (eigendecomposition, eigenvalues shifted
 * and clipped to [0, 1] to sum to rank), then one SGD step of the
 * classifier. Every evaluate_every iterations (and at the first) the
 * rank-`rank` projection from P's top eigenvectors is scored: a logistic
 * probe fitted on the projected training rows, its log-loss on the held-out
 * rows; the P with the highest loss is kept and returned as U = its top
 * eigenvectors. Deterministic for a seed (and a BLAS thread count). Costs
 * one d x d eigendecomposition per iteration. report may be NULL. */
culeace_status culeace_rlace_fit(culeace_ctx *ctx, const float *x, int64_t n,
                                 int64_t d, int64_t ldx,
                                 const int32_t *labels, int64_t k,
                                 const uint8_t *train,
                                 const culeace_rlace_opts *opts,
                                 culeace_eraser **out,
                                 culeace_rlace_report *report);

/* ---- probe cross-validation: folds and control labels ------------------- */
/* The fold assignment `culeace probe` uses (deterministic for a seed on
 * every platform). labels: (n) int32 classes 0..k-1, -1 = row not used;
 * groups: (n) int64 group ids (any values) or NULL; fold_out: (n) int32,
 * 0..n_folds-1 for used rows, -1 for unused ones.
 * Without groups: stratified k-fold, each class's rows shuffled and dealt
 * to the folds in turn (fold sizes differ by at most one row). With
 * groups: whole groups go to one fold (never split), balanced per class
 * like scikit-learn's StratifiedGroupKFold(shuffle=True).
 * CULEACE_ERR_DEGENERATE (message on ctx) for fewer than two classes, more
 * folds than used rows or groups, or a fold without some class;
 * CULEACE_ERR_INVALID_ARG for n_folds < 2 or a label outside -1..k-1.
 * `culeace probe --seed S` draws its folds with seed S. */
culeace_status culeace_stratified_folds(culeace_ctx *ctx, int64_t n,
                                        const int32_t *labels, int64_t k,
                                        const int64_t *groups, int64_t n_folds,
                                        uint64_t seed, int32_t *fold_out);

/* Control-task labels (Hewitt & Liang 2019): out (n) int32. Without
 * groups, the used rows' labels permuted (class counts kept exactly); with
 * groups (n) int64, each group's majority label (ties drawn at random)
 * permuted among the groups and given to all its used rows. Rows with
 * label -1 get -1. labels, k, groups as for culeace_stratified_folds.
 * `culeace probe --control --seed S` draws with seed
 * S + a * 0x100000001 (mod 2^64) for the first attempt a = 0, 1, ..., 99
 * whose labels leave every class in every training fold. */
culeace_status culeace_control_labels(culeace_ctx *ctx, int64_t n,
                                      const int32_t *labels, int64_t k,
                                      const int64_t *groups, uint64_t seed,
                                      int32_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CULEACE_H */
