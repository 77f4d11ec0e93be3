/* probe.h — private body of culeace_probe and the internal pieces of the
 * probe fitters (probe_logistic.c, probe_diffmeans.c, probe.c). */
#ifndef CULEACE_CORE_PROBE_H
#define CULEACE_CORE_PROBE_H

#include "core/ctx.h"

struct culeace_probe {
  culeace_probe_info info;
  double *coef;      /* (m, d) in the standardised space */
  double *intercept; /* (m) */
  double *mean;      /* (d) standardisation (0 when off) */
  double *scale;     /* (d) (1 when off) */
};

/* Allocates a probe for d features, k classes, m outputs (zeroed params,
 * mean 0, scale 1). */
culeace_status culeace__probe_alloc(culeace_ctx *ctx, culeace_probe_kind kind,
                                    int64_t d, int64_t k, int64_t m,
                                    culeace_probe **out);

/* Class probabilities proba (n, k) of rows idx[0..n-1] (or 0..n-1 when
 * idx is NULL) of x (type t, stride ldx elements; 2-byte rows widened to
 * float32 one at a time): culeace_probe_predict_proba on rows that are not
 * float32 or not contiguous, without a gathered float32 copy. */
culeace_status culeace__probe_predict_rows(culeace_ctx *ctx,
                                           const culeace_probe *p,
                                           const void *x, culeace_dtype t,
                                           int64_t ldx, const int64_t *idx,
                                           int64_t n, double *proba);

/* Fitting over rows shared out among cooperating processes (the CLI's
 * data-parallel probes under MPI): each process passes its own rows, and
 * every sum over rows the fit needs (column sums, class counts,
 * standardisation moments, each L-BFGS evaluation's loss and gradient, the
 * diffmeans class means and temperature steps) goes through sum, which adds
 * count doubles of buf over the processes in place and must leave the same
 * bits on every process, so that their fits stay identical. failed != 0
 * says this process failed (buf may be NULL then); sum returns nonzero
 * when any process failed, and then sums nothing. Every process makes the
 * same calls in the same order. NULL: the rows are all there is. */
typedef struct {
  int (*sum)(double *buf, int64_t count, int failed, void *arg);
  void *arg;
} culeace__probe_reduce;

/* The rows a fit reads, centred on shift (d), a float32 value (sf): either
 * xc (n, d) float32 (x - shift, a copy made for float32 inputs), or, for
 * float16/bfloat16 inputs, the rows themselves (raw, type t, stride ld
 * elements), centred as they are read into the same float32 differences,
 * at half the bytes per pass over the rows. */
typedef struct culeace__probe_rows {
  const float *xc;     /* (n, d), or NULL: raw */
  const void *raw;
  culeace_dtype t;
  int64_t ld;
  int64_t n, d;
  const double *shift; /* (d) */
  const float *sf;     /* (d) shift as float32 (raw rows) */
} culeace__probe_rows;

/* Row i of r, centred, as float32: a pointer into xc, or buf (d) filled. */
const float *culeace__probe_row(const culeace__probe_rows *r, int64_t i,
                                float *buf);

/* Training-row setup shared by the fitters: class counts, sample weights
 * and the standardisation of one problem. */
typedef struct culeace__probe_problem {
  const int32_t *y;    /* (n) labels */
  const uint8_t *train;/* (n) training mask */
  int64_t n_train;
  double *class_w;     /* (k) weight of each class */
  double s_sum;        /* S = sum of training sample weights */
} culeace__probe_problem;

/* mv (P, 2, d): for each problem, the column sums and sums of squares of
 * its training rows (centred), in float64, in one pass over the rows on
 * the OpenMP threads (fixed row chunks added in order: the same bits with
 * any thread count). Problems sharing a mask share its sums; a mask that
 * trains on most rows is summed over the rows it leaves out and subtracted
 * from the sums over all rows. */
culeace_status culeace__probe_train_moments(culeace_ctx *ctx,
                                            const culeace__probe_rows *rows,
                                            int64_t P,
                                            const culeace__probe_problem *prs,
                                            double *mv);

/* Checks labels and fills class weights, n_train, S; computes the
 * standardisation (mean, scale) of the training rows into probe from mv
 * (2, d: culeace__probe_train_moments' sums of this problem; unused without
 * standardisation). red: see above. */
culeace_status culeace__probe_setup(culeace_ctx *ctx,
                                    const culeace__probe_rows *rows,
                                    int64_t k, int64_t index,
                                    const culeace_probe_opts *o,
                                    const culeace__probe_reduce *red,
                                    const double *mv,
                                    culeace__probe_problem *pr,
                                    culeace_probe *probe);

/* culeace_probe_fit_batch on rows x of type xtype (float32, float16 or
 * bfloat16; stride ldx elements), shared out among processes (red, see
 * above; NULL: all rows are here). With red, this process's n may be 0. */
culeace_status culeace__probe_fit_batch_shared(
    culeace_ctx *ctx, const void *x, culeace_dtype xtype, int64_t n,
    int64_t d, int64_t ldx,
    int64_t k, int64_t P, const int32_t *const *labels,
    const uint8_t *const *train, const culeace_probe_opts *opts,
    const culeace__probe_reduce *red, culeace_probe **out);

/* One layer of a batched fit: its rows x (n, d) of type xtype (float32,
 * float16 or bfloat16; stride ldx), and its P problems (labels[p] and
 * train[p], n each), fitted into out (P). name: the layer in messages. */
typedef struct {
  const void *x;
  culeace_dtype xtype;
  int64_t n, ldx, P;
  const int32_t *const *labels;
  const uint8_t *const *train;
  const char *name;
  culeace_probe **out;
} culeace__probe_layer;

/* Called when every problem of layer l of a batched fit has stopped
 * iterating, e.g. to move a progress bar (the probes are filled in when the
 * fit returns). */
typedef void (*culeace__probe_layer_done)(void *arg, int64_t l);

/* Fits the problems of L layers (same d, k and options) together: every
 * L-BFGS step evaluates the running problems of all layers, each layer's
 * in one pass over its own rows, queued together on a device (one wait per
 * step for all layers) and summed over processes in one call of red. Each
 * problem's iterates are those it has when fitted alone (the same bits on
 * the CPU: the per-layer passes are unchanged). On error every out[p] of
 * every layer is NULL. done may be NULL. */
culeace_status culeace__probe_fit_layers_shared(
    culeace_ctx *ctx, int64_t L, const culeace__probe_layer *layers,
    int64_t d, int64_t k, const culeace_probe_opts *opts,
    const culeace__probe_reduce *red, culeace__probe_layer_done done,
    void *done_arg);

/* red->sum when red is set, else failed: the sums of a fit, with this
 * process's failure flag. */
int culeace__probe_sum(const culeace__probe_reduce *red, double *buf,
                       int64_t count, int failed);
/* The error (CULEACE_ERR_MPI) of a process whose shared fit stopped because
 * another process failed. */
culeace_status culeace__probe_other_failed(culeace_ctx *ctx);

/* The problems of one layer for the logistic fitter: P problems (prs)
 * on rows, fitted into probes (P). */
typedef struct {
  const culeace__probe_rows *rows;
  int64_t P;
  culeace__probe_problem *prs;
  culeace_probe **probes;
} culeace__probe_set;

/* Batched L-BFGS for logistic probes (probe_logistic.c) on the centred
 * rows of S sets (layers): see culeace__probe_fit_layers_shared. */
culeace_status culeace__probe_fit_logistic(culeace_ctx *ctx, int64_t S,
                                           const culeace__probe_set *sets,
                                           int64_t k,
                                           const culeace_probe_opts *o,
                                           const culeace__probe_reduce *red,
                                           culeace__probe_layer_done done,
                                           void *done_arg);

/* The pass over the rows of one L-BFGS evaluation (probe_pass.c) for the
 * problems prs (P, each with m outputs: 1 for two classes, k for softmax) on
 * rows: for the pending problems idx (cnt, any order), with W (cnt m, d)
 * float32 weights on the centred rows and b (cnt m) intercepts, stacked in
 * idx's order, fills
 *   G (cnt m, d) = sum_i r_i xc_i,  rsum (cnt m) = sum_i r_i,
 *   loss (cnt)   = sum_i s_i logloss_i over each problem's training rows,
 * with r_i = s_i (p_i - onehot(y_i)), s_i the class weight of y_i (0 outside
 * the training rows). f64: sums in float64 (else float32, good to ~1e-5).
 * device: on the context's device when its backend has probe_open and the
 * rows fit there (else the CPU threads). rows and prs must outlive the
 * pass. */
typedef struct culeace__probe_pass culeace__probe_pass;
culeace_status culeace__probe_pass_open(culeace_ctx *ctx,
                                        const culeace__probe_rows *rows,
                                        int64_t m, int64_t P,
                                        const culeace__probe_problem *prs,
                                        int f64, int device,
                                        culeace__probe_pass **out);
culeace_status culeace__probe_pass_eval(culeace__probe_pass *p, int64_t cnt,
                                        const int64_t *idx, const float *W,
                                        const double *b, double *G,
                                        double *rsum, double *loss);
/* The evaluations of count passes (each over its own rows, jobs[j].pass a
 * culeace__probe_pass): those on the device queued together with one wait
 * (backend probe_eval), the CPU ones one after another. */
culeace_status culeace__probe_pass_eval_many(
    int64_t count, const culeace__probe_eval_job *jobs);
/* 1 when the pass runs on the device. */
int culeace__probe_pass_on_device(const culeace__probe_pass *p);
void culeace__probe_pass_close(culeace__probe_pass *p);

/* Binary logistic rows (probe_loss.c): for logits t (n), weights s and
 * labels y in {0, 1}, residual r = s (sigmoid(t) - y) and loss = s (log(1 +
 * exp(t)) - y t), to ~1 ulp; 8 at a time with AVX-512. The _scalar twin is
 * libm's, one row at a time (tests compare the two). */
void culeace__binary_losses(const double *t, const double *s, const double *y,
                            int64_t n, double *r, double *loss);
/* The implementation culeace__binary_losses uses on this CPU (picked once
 * by a fit, before its threads start). */
typedef void (*culeace__losses_fn)(const double *t, const double *s,
                                   const double *y, int64_t n, double *r,
                                   double *loss);
culeace__losses_fn culeace__binary_losses_pick(void);
void culeace__binary_losses_scalar(const double *t, const double *s,
                                   const double *y, int64_t n, double *r,
                                   double *loss);

/* AVX-512 kernels of a block of 8 centred rows x with float32 sums, in
 * register tiles (probe_tiles.c; x86-64 only): z (8, M) = x W^T + b, and
 * G (M, d) += r^T x with rs (M) += column sums of r (r, z: (8, M)). */
void culeace__dots8_tiled_f32(const float *W, const double *b, int64_t M,
                              int64_t d, const float *const *x, double *z);
void culeace__axpy8_tiled_f32(void *G, double *rs, const double *r,
                              int64_t M, int64_t d, const float *const *x);

/* Class-mean directions with a fitted temperature (probe_diffmeans.c), on
 * the centred rows. */
culeace_status culeace__probe_fit_diffmeans(culeace_ctx *ctx,
                                            const culeace__probe_rows *rows,
                                            int64_t k,
                                            culeace__probe_problem *pr,
                                            const culeace__probe_reduce *red,
                                            culeace_probe *probe);

#endif
