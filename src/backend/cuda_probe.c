/* cuda_probe.c — the logistic probes' pass on the GPU (backend.h:
 * probe_open/probe_eval/probe_close). The centred rows stay on the device
 * for the whole fit as xe (n, d + 1) = [xc | 1] (float32, or float64 for
 * tight tolerances); each evaluation uploads the pending problems' weights
 * (cnt m x d floats) and then runs
 *   Z = xe[:, :d] W^T                 (GEMM, n x M)
 *   R, lrow = residuals(Z + b)        (probe.cu, float64 arithmetic)
 *   [G | rsum] = R^T xe               (GEMM, M x (d + 1))
 *   loss = lrow^T 1                   (GEMV)
 * and copies G, rsum and loss back: (M (d + 1) + cnt) numbers per pass,
 * into page-locked buffers so that the passes of several layers queue on
 * the stream behind one another with a single wait. The CPU pass
 * (core/probe_pass.c) is the reference; the sums differ only in their
 * order. */
#include <stdlib.h>
#include <string.h>

#include "core/probe.h"
#include "cuda_state.h"
#include "kernels.h"

typedef struct {
  int f64;
  int64_t n, d, ld, m, P;
  dbuf xe;    /* (n, ld) centred rows and a column of ones */
  dbuf sf;    /* (d) float32 centre of 2-byte rows */
  dbuf S, Y;  /* (P, n) sample weights (0 outside training), labels */
  dbuf ones;  /* (n) float64 */
  dbuf W, Wd; /* (Mtot, d) float32 weights; float64 copy when f64 */
  dbuf b;     /* (Mtot) intercepts */
  dbuf idx;   /* (P) pending problems */
  dbuf z, r;  /* (n, Mtot) logits, residuals */
  dbuf lrow;  /* (n, P) per-row losses */
  dbuf g;     /* (Mtot, ld) [G | rsum] */
  dbuf loss;  /* (P) */
  void *host; /* (Mtot, ld) [G | rsum] copied back (page-locked) */
  double *hloss; /* (P) losses copied back (page-locked) */
  char *hin;  /* page-locked staging of an evaluation's inputs: idx (P)
                 int64, b (Mtot) double, W (Mtot, d) float, so that the
                 copies up do not wait for the work queued before them */
} cuda_probe;

static void probe_free(cuda_probe *p) {
  if (!p)
    return;
  dbuf *bufs[] = {&p->xe, &p->sf,  &p->S, &p->Y, &p->ones, &p->W, &p->Wd,
                  &p->b,  &p->idx, &p->z, &p->r, &p->lrow, &p->g, &p->loss};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    dfree(bufs[i]);
  if (p->host)
    cudaFreeHost(p->host);
  if (p->hloss)
    cudaFreeHost(p->hloss);
  if (p->hin)
    cudaFreeHost(p->hin);
  free(p);
}

void cuda_probe_close(void *state, void *pass) {
  cuda_state *s = state;
  if (s)
    cudaSetDevice(s->device);
  probe_free(pass);
}

/* Grows b to count * size bytes (checked for overflow). */
static culeace_status dgrow_n(culeace_ctx *ctx, dbuf *b, size_t count,
                              size_t size, const char *what) {
  size_t bytes;
  culeace_status st = dsize(ctx, count, size, &bytes, what);
  return st ? st : dgrow(ctx, b, bytes, what);
}

enum { STAGE_BYTES = 64 << 20 }; /* rows copied up per round */

/* xe from the centred rows: float32 copies (rows->xc) or 2-byte rows
 * centred on rows->sf on the way, staged through s->raw. */
static culeace_status upload_rows(culeace_ctx *ctx, cuda_state *s,
                                  cuda_probe *p,
                                  const culeace__probe_rows *rows) {
  culeace_status st = CULEACE_OK;
  int64_t n = p->n, d = p->d;
  culeace_dtype t = rows->xc ? CULEACE_F32 : rows->t;
  const char *src = rows->xc ? (const char *)rows->xc : rows->raw;
  int64_t lds = rows->xc ? d : rows->ld;
  size_t es = culeace_dtype_size(t), row = (size_t)d * es;
  int64_t chunk = (int64_t)(STAGE_BYTES / row);
  if (chunk < 1)
    chunk = 1;
  if (chunk > n)
    chunk = n;
  const float *sf = NULL;
  if (!rows->xc) {
    st = dgrow_n(ctx, &p->sf, (size_t)d, 4, "the probe's column means");
    if (st)
      return st;
    CU(cudaMemcpyAsync(p->sf.p, rows->sf, (size_t)d * 4, cudaMemcpyHostToDevice,
                       s->stream),
       "copying the column means to the GPU");
    sf = p->sf.p;
  }
  st = dgrow(ctx, &s->raw, (size_t)chunk * row, "the probe's row staging");
  if (st)
    return st;
  size_t xes = p->f64 ? 8 : 4;
  for (int64_t i0 = 0; i0 < n; i0 += chunk) {
    int64_t c = n - i0 < chunk ? n - i0 : chunk;
    CU(cudaMemcpy2DAsync(s->raw.p, row, src + (size_t)i0 * (size_t)lds * es,
                         (size_t)lds * es, row, (size_t)c,
                         cudaMemcpyHostToDevice, s->stream),
       "copying probe rows to the GPU");
    KERNEL(culeace_k_probe_rows(s->raw.p, t, c, d, d, sf, p->f64,
                                (char *)p->xe.p + (size_t)i0 * p->ld * xes,
                                p->ld, s->stream),
           "probe rows kernel");
    /* the staging buffer is reused by the next chunk */
    CU(cudaStreamSynchronize(s->stream), "copying probe rows to the GPU");
  }
cleanup:
  return st;
}

/* S, Y (P, n) and the ones vector, built on the host and copied up. */
static culeace_status upload_targets(culeace_ctx *ctx, cuda_state *s,
                                     cuda_probe *p,
                                     const culeace__probe_problem *prs) {
  culeace_status st = CULEACE_OK;
  int64_t n = p->n, P = p->P;
  double *hs = malloc((size_t)(P * n) * 8), *ones = malloc((size_t)n * 8);
  int32_t *hy = malloc((size_t)(P * n) * 4);
  if (!hs || !hy || !ones) {
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of memory for the probes' targets");
    goto cleanup;
  }
  for (int64_t q = 0; q < P; q++)
    for (int64_t i = 0; i < n; i++) {
      int train = prs[q].train[i];
      int32_t y = train ? prs[q].y[i] : 0;
      hs[q * n + i] = train ? prs[q].class_w[y] : 0.0;
      hy[q * n + i] = y;
    }
  for (int64_t i = 0; i < n; i++)
    ones[i] = 1.0;
  /* on the pass's stream (a plain cudaMemcpy is not ordered with it), and
   * finished before the host buffers go */
  CU(cudaMemcpyAsync(p->S.p, hs, (size_t)(P * n) * 8, cudaMemcpyHostToDevice,
                     s->stream),
     "copying probe weights to the GPU");
  CU(cudaMemcpyAsync(p->Y.p, hy, (size_t)(P * n) * 4, cudaMemcpyHostToDevice,
                     s->stream),
     "copying probe labels to the GPU");
  CU(cudaMemcpyAsync(p->ones.p, ones, (size_t)n * 8, cudaMemcpyHostToDevice,
                     s->stream),
     "copying to the GPU");
  CU(cudaStreamSynchronize(s->stream), "copying probe targets to the GPU");
cleanup:
  free(hs);
  free(hy);
  free(ones);
  return st;
}

culeace_status cuda_probe_open(culeace_ctx *ctx,
                               const culeace__probe_rows *rows, int64_t m,
                               int64_t P, const culeace__probe_problem *prs,
                               int f64, void **out) {
  cuda_state *s = state_of(ctx);
  *out = NULL;
  culeace_status st = use_device(ctx, s);
  if (st)
    return st;
  cuda_probe *p = calloc(1, sizeof *p);
  if (!p)
    return culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                          "out of memory for a GPU probe pass");
  p->f64 = f64, p->n = rows->n, p->d = rows->d, p->ld = rows->d + 1;
  p->m = m, p->P = P;
  size_t es = f64 ? 8 : 4, n = (size_t)p->n, ld = (size_t)p->ld;
  size_t Mt = (size_t)(m * P), nMt;
  if (!culeace__mul_size(n, Mt, &nMt))
    nMt = SIZE_MAX;
  if ((st = dgrow_n(ctx, &p->xe, n * ld, es, "the probe rows")) ||
      (st = dgrow_n(ctx, &p->S, n * (size_t)P, 8, "the probe weights")) ||
      (st = dgrow_n(ctx, &p->Y, n * (size_t)P, 4, "the probe labels")) ||
      (st = dgrow_n(ctx, &p->ones, n, 8, "a vector of ones")) ||
      (st = dgrow_n(ctx, &p->W, Mt * (size_t)p->d, 4, "the probe weights")) ||
      (f64 && (st = dgrow_n(ctx, &p->Wd, Mt * (size_t)p->d, 8,
                            "the probe weights"))) ||
      (st = dgrow_n(ctx, &p->b, Mt, 8, "the probe intercepts")) ||
      (st = dgrow_n(ctx, &p->idx, (size_t)P, 8, "the pending probes")) ||
      (st = dgrow_n(ctx, &p->z, nMt, es, "the probe logits")) ||
      (st = dgrow_n(ctx, &p->r, nMt, es, "the probe residuals")) ||
      (st = dgrow_n(ctx, &p->lrow, n * (size_t)P, 8, "the probe losses")) ||
      (st = dgrow_n(ctx, &p->g, Mt * ld, es, "the probe gradients")) ||
      (st = dgrow_n(ctx, &p->loss, (size_t)P, 8, "the probe losses")))
    goto fail;
  void *hg = NULL, *hl = NULL, *hi = NULL;
  cudaError_t e = cudaHostAlloc(&hg, Mt * ld * es, 0);
  if (e == cudaSuccess) {
    p->host = hg;
    e = cudaHostAlloc(&hl, (size_t)P * 8, 0);
  }
  if (e == cudaSuccess) {
    p->hloss = hl;
    e = cudaHostAlloc(&hi, (size_t)P * 8 + Mt * 8 + Mt * (size_t)p->d * 4, 0);
  }
  if (e == cudaSuccess)
    p->hin = hi;
  else {
    cudaGetLastError(); /* not sticky: cleared for the calls after */
    st = culeace__error(ctx, CULEACE_ERR_OUT_OF_MEMORY,
                        "out of page-locked memory for the probe gradients "
                        "(%s)", cudaGetErrorString(e));
    goto fail;
  }
  if ((st = upload_rows(ctx, s, p, rows)) ||
      (st = upload_targets(ctx, s, p, prs)))
    goto fail;
  *out = p;
  return CULEACE_OK;
fail:
  cudaStreamSynchronize(s->stream);
  probe_free(p);
  return st;
}

/* Queues one evaluation of pass p on the stream, through the copies back
 * to p->host and p->hloss (no wait). */
static culeace_status queue_eval(culeace_ctx *ctx, cuda_state *s,
                                 cuda_probe *p,
                                 const culeace__probe_eval_job *job) {
  culeace_status st = CULEACE_OK;
  int64_t n = p->n, d = p->d, ld = p->ld, cnt = job->cnt, M = cnt * p->m;
  size_t es = p->f64 ? 8 : 4;
  const double one = 1, zero = 0;
  const float onef = 1, zerof = 0;
  /* the inputs through page-locked staging (free: the previous use of
   * this pass's staging was waited for), so that the copies up queue
   * behind the work already on the stream instead of waiting for it */
  char *hidx = p->hin, *hb = hidx + (size_t)p->P * 8,
       *hW = hb + (size_t)(p->m * p->P) * 8;
  memcpy(hidx, job->idx, (size_t)cnt * 8);
  memcpy(hb, job->b, (size_t)M * 8);
  memcpy(hW, job->W, (size_t)(M * d) * 4);
  CU(cudaMemcpyAsync(p->idx.p, hidx, (size_t)cnt * 8, cudaMemcpyHostToDevice,
                     s->stream),
     "copying to the GPU");
  CU(cudaMemcpyAsync(p->W.p, hW, (size_t)(M * d) * 4, cudaMemcpyHostToDevice,
                     s->stream),
     "copying probe weights to the GPU");
  CU(cudaMemcpyAsync(p->b.p, hb, (size_t)M * 8, cudaMemcpyHostToDevice,
                     s->stream),
     "copying probe intercepts to the GPU");
  /* Z (n, M) row-major = (M, n) column-major = W (M x d) xe[:, :d]^T */
  if (p->f64) {
    KERNEL(culeace_k_widen(p->W.p, p->Wd.p, M * d, 0, s->stream),
           "widening kernel");
    CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)M, (int)n,
                       (int)d, &one, p->Wd.p, (int)d, p->xe.p, (int)ld, &zero,
                       p->z.p, (int)M),
           "cublasDgemm (probe logits)");
  } else {
    CUBLAS(cublasSgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)M, (int)n,
                       (int)d, &onef, p->W.p, (int)d, p->xe.p, (int)ld, &zerof,
                       p->z.p, (int)M),
           "cublasSgemm (probe logits)");
  }
  KERNEL(culeace_k_probe_residuals(p->z.p, p->f64, p->b.p, n, M, p->m, cnt,
                                   p->idx.p, p->S.p, p->Y.p, p->r.p, p->lrow.p,
                                   s->stream),
         "probe residuals kernel");
  /* [G | rsum] (M, ld) row-major = (ld, M) column-major = xe^T R */
  if (p->f64)
    CUBLAS(cublasDgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)ld, (int)M,
                       (int)n, &one, p->xe.p, (int)ld, p->r.p, (int)M, &zero,
                       p->g.p, (int)ld),
           "cublasDgemm (probe gradients)");
  else
    CUBLAS(cublasSgemm(s->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)ld, (int)M,
                       (int)n, &onef, p->xe.p, (int)ld, p->r.p, (int)M, &zerof,
                       p->g.p, (int)ld),
           "cublasSgemm (probe gradients)");
  /* loss (cnt) = lrow (n, cnt)^T 1: (cnt, n) column-major times ones */
  CUBLAS(cublasDgemv(s->blas, CUBLAS_OP_N, (int)cnt, (int)n, &one, p->lrow.p,
                     (int)cnt, p->ones.p, 1, &zero, p->loss.p, 1),
         "cublasDgemv (probe losses)");
  CU(cudaMemcpyAsync(p->host, p->g.p, (size_t)(M * ld) * es,
                     cudaMemcpyDeviceToHost, s->stream),
     "copying probe gradients from the GPU");
  CU(cudaMemcpyAsync(p->hloss, p->loss.p, (size_t)cnt * 8,
                     cudaMemcpyDeviceToHost, s->stream),
     "copying probe losses from the GPU");
cleanup:
  return st;
}

/* After the wait: p->host and p->hloss into the job's G, rsum and loss. */
static void unpack_eval(const cuda_probe *p,
                        const culeace__probe_eval_job *job) {
  int64_t d = p->d, ld = p->ld, M = job->cnt * p->m;
  for (int64_t c = 0; c < M; c++) {
    if (p->f64) {
      const double *h = (const double *)p->host + c * ld;
      memcpy(job->G + c * d, h, (size_t)d * 8);
      job->rsum[c] = h[d];
    } else {
      const float *h = (const float *)p->host + c * ld;
      for (int64_t j = 0; j < d; j++)
        job->G[c * d + j] = h[j];
      job->rsum[c] = h[d];
    }
  }
  memcpy(job->loss, p->hloss, (size_t)job->cnt * 8);
}

culeace_status cuda_probe_eval(culeace_ctx *ctx, int64_t count,
                               const culeace__probe_eval_job *jobs) {
  cuda_state *s = state_of(ctx);
  culeace_status st = use_device(ctx, s);
  if (st)
    return st;
  for (int64_t j = 0; j < count; j++) {
    st = queue_eval(ctx, s, jobs[j].pass, &jobs[j]);
    if (st) {
      cudaStreamSynchronize(s->stream); /* nothing left in flight */
      return st;
    }
  }
  CU(cudaStreamSynchronize(s->stream), "the probe pass");
  for (int64_t j = 0; j < count; j++)
    unpack_eval(jobs[j].pass, &jobs[j]);
cleanup:
  return st;
}
