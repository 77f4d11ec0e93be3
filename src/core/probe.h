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

/* Training-row setup shared by the fitters: class counts, sample weights
 * and the standardisation of one problem. */
typedef struct {
  const int32_t *y;    /* (n) labels */
  const uint8_t *train;/* (n) training mask */
  int64_t n_train;
  double *class_w;     /* (k) weight of each class */
  double s_sum;        /* S = sum of training sample weights */
} culeace__probe_problem;

/* Checks labels and fills class weights, n_train, S; computes the
 * standardisation (mean, scale) of the training rows into probe from xc,
 * the rows centred on shift (n, d contiguous). */
culeace_status culeace__probe_setup(culeace_ctx *ctx, const float *xc,
                                    const double *shift, int64_t n, int64_t d,
                                    int64_t k, int64_t index,
                                    const culeace_probe_opts *o,
                                    culeace__probe_problem *pr,
                                    culeace_probe *probe);

/* Batched L-BFGS for logistic probes (probe_logistic.c) on xc, the rows
 * centred on shift (n, d contiguous float32). */
culeace_status culeace__probe_fit_logistic(culeace_ctx *ctx, const float *xc,
                                           const double *shift, int64_t n,
                                           int64_t d, int64_t k, int64_t P,
                                           culeace__probe_problem *prs,
                                           const culeace_probe_opts *o,
                                           culeace_probe **probes);

/* Class-mean directions with a fitted temperature (probe_diffmeans.c). */
culeace_status culeace__probe_fit_diffmeans(culeace_ctx *ctx, const float *x,
                                            int64_t n, int64_t d, int64_t ldx,
                                            int64_t k,
                                            culeace__probe_problem *pr,
                                            culeace_probe *probe);

#endif
