/* mpi_probe.c — `culeace probe` under mpirun/srun (see mpi_probe.h). Split
 * by layers: layer i is probed by rank i mod N, whole (its rows read only
 * there), and its result (the per-fold metrics, MDL, convergence, and with
 * --save the probe fitted on all rows) travels to rank 0 as one message of
 * doubles. Split by rows: the collectives of a layer (agreement, the
 * rows' ids and labels, the fits' sums, the held-out predictions, the
 * --erase moments), each opening with an agreement on failure. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_probe.h"
#include "cli/mpi_reduce.h"

/* ---- one layer's result as doubles --------------------------------------
 * rows, dropped, all_converged, max_n_iter, mdl (done, blocks,
 * uniform_blocks, online_bits, uniform_bits, compression), the
 * PROBE_N_METRICS metrics' fold values (PROBE_N_METRICS F), then with a
 * final probe: n_outputs, d, and its coef (n_outputs d), intercept
 * (n_outputs), mean (d), scale (d). */
enum { HEAD = 10 };

static double *pack(probe_layer_result *r, int64_t F, int *count) {
  culeace_probe_info pi;
  memset(&pi, 0, sizeof pi);
  if (r->final && culeace_probe_info_get(r->final, &pi)) return NULL;
  int64_t no = pi.n_outputs, d = pi.d;
  size_t n = HEAD + PROBE_N_METRICS * (size_t)F +
             (r->final ? 2 + (size_t)(no * d + no + 2 * d) : 0);
  double *b = malloc(n * sizeof *b);
  if (!b) return NULL;
  double *p = b;
  *p++ = (double)r->rows;
  *p++ = (double)r->dropped;
  *p++ = r->all_converged;
  *p++ = r->max_n_iter;
  *p++ = r->mdl.done;
  *p++ = r->mdl.blocks;
  *p++ = r->mdl.uniform_blocks;
  *p++ = r->mdl.online_bits;
  *p++ = r->mdl.uniform_bits;
  *p++ = r->mdl.compression;
  for (int i = 0; i < PROBE_N_METRICS; i++) {
    memcpy(p, probe_result_metric(r, i)->v, (size_t)F * sizeof *p);
    p += F;
  }
  if (r->final) {
    *p++ = (double)no;
    *p++ = (double)d;
    double *coef = p, *icpt = coef + no * d, *mean = icpt + no,
           *scale = mean + d;
    if (culeace_probe_params(r->final, coef, icpt, mean, scale)) {
      free(b);
      return NULL;
    }
    p = scale + d;
  }
  *count = (int)(p - b);
  return b;
}

/* Fills r (allocated for F folds) from a message of count doubles; the
 * final probe is rebuilt on ctx with kind and k. 0 ok. */
static int unpack(const double *b, int count, int64_t F, culeace_ctx *ctx,
                  culeace_probe_kind kind, int64_t k, probe_layer_result *r) {
  if (count < HEAD + PROBE_N_METRICS * F) return 1;
  const double *p = b;
  r->rows = (int64_t)*p++;
  r->dropped = (int64_t)*p++;
  r->all_converged = (int)*p++;
  r->max_n_iter = (int)*p++;
  r->mdl.done = (int)*p++;
  r->mdl.blocks = (int)*p++;
  r->mdl.uniform_blocks = (int)*p++;
  r->mdl.online_bits = *p++;
  r->mdl.uniform_bits = *p++;
  r->mdl.compression = *p++;
  for (int i = 0; i < PROBE_N_METRICS; i++) {
    memcpy(probe_result_metric(r, i)->v, p, (size_t)F * sizeof *p);
    p += F;
  }
  if (p - b < count) {
    if (count - (p - b) < 2) return 1;
    int64_t no = (int64_t)p[0], d = (int64_t)p[1];
    p += 2;
    if (count - (p - b) != no * d + no + 2 * d) return 1;
    const double *coef = p, *icpt = coef + no * d, *mean = icpt + no,
                 *scale = mean + d;
    if (culeace_probe_from_params(ctx, kind, d, k, coef, icpt, mean, scale,
                                  &r->final))
      return 1;
  }
  return 0;
}

int64_t probe_mpi_my_layers(const mpi_job *P, int64_t m) {
  int64_t mine = 0;
  for (int64_t i = P->w.rank; i < m; i += P->w.size) mine++;
  return mine;
}

int probe_mpi_run_layers(mpi_job *P, probe_job *J, const int64_t *layers,
                         int64_t m, probe_layer_result *res) {
  const cli_common *c = J->c;
  int64_t F = J->s->folds;
  /* this rank's layers (rank, rank + size, ...), J->batch at a time */
  int64_t *mine = malloc((size_t)(m ? m : 1) * sizeof *mine), cnt = 0;
  probe_layer_result **rp = malloc((size_t)(m ? m : 1) * sizeof *rp);
  int failed = !mine || !rp ? cli_error(c, "out of memory") : 0;
  for (int64_t i = P->w.rank; !failed && i < m; i += P->w.size) {
    mine[cnt] = layers[i];
    rp[cnt++] = &res[i];
  }
  for (int64_t i = 0; !failed && i < cnt; i += J->batch)
    failed = probe_run_layers(J, cnt - i < J->batch ? cnt - i : J->batch,
                              mine + i, rp + i);
  free(mine);
  free(rp);
  if (mpi_job_agree(P, c, failed)) return 1;
  /* layer i from its rank to rank 0, in layer order */
  failed = 0;
  for (int64_t i = 0; i < m; i++) {
    int owner = (int)(i % P->w.size);
    if (owner == 0) continue;
    if (P->w.rank == owner) {
      int count = 0;
      double *b = pack(&res[i], F, &count);
      if (!b) { /* rank 0 is waiting: tell it with an empty message */
        failed = cli_error(c, "out of memory sending layer %s",
                           res[i].name);
        count = 0;
      }
      MPI_Send(b, count, MPI_DOUBLE, 0, (int)(i % 32768), P->w.comm);
      free(b);
    } else if (P->w.rank == 0) {
      MPI_Status stt;
      int count = 0;
      MPI_Probe(owner, (int)(i % 32768), P->w.comm, &stt);
      MPI_Get_count(&stt, MPI_DOUBLE, &count);
      double *b = malloc((size_t)(count > 0 ? count : 1) * sizeof *b);
      if (b)
        MPI_Recv(b, count, MPI_DOUBLE, owner, (int)(i % 32768), P->w.comm,
                 MPI_STATUS_IGNORE);
      else
        MPI_Recv(NULL, 0, MPI_DOUBLE, owner, (int)(i % 32768), P->w.comm,
                 MPI_STATUS_IGNORE);
      res[i].layer = layers[i];
      res[i].name = culeace__act_layer_name(J->act, layers[i]);
      if (!failed && (!b || unpack(b, count, F, J->ctx, J->s->po.kind, J->k,
                                   &res[i])))
        failed = cli_error(c, "layer %s: the result from rank %d could not "
                           "be read", res[i].name, owner);
      free(b);
      for (int q = 0; q < PROBE_N_METRICS && !failed; q++)
        probe_metric_summarise(probe_result_metric(&res[i], q), F);
      if (J->s->control) res[i].selectivity = res[i].acc.mean - res[i].ctrl.mean;
    }
  }
  return failed;
}

/* ---- --split rows ------------------------------------------------------- */
struct probe_split {
  mpi_job *P;
  const cli_common *c;
  int64_t ex0, ex1;
  int agreed;  /* a failure was agreed on in the current layer */
  culeace__probe_reduce red;
};

enum { SUM_CHUNK = 1 << 26 }; /* doubles per MPI call */

int probe_split_agree(probe_split *S, int failed) {
  if (S->agreed) return 1;
  if (mpi_job_check(S->P, S->c, failed)) S->agreed = 1;
  return S->agreed;
}

/* The reduce of a shared fit: summed on rank 0 and broadcast, so that
 * every rank has the same bits (an allreduce need not give them). */
static int split_sum(double *buf, int64_t count, int failed, void *arg) {
  probe_split *S = arg;
  if (probe_split_agree(S, failed)) return 1;
  MPI_Comm comm = S->P->w.comm;
  int root = S->P->w.rank == 0;
  for (int64_t at = 0; at < count; at += SUM_CHUNK) {
    int n = (int)(count - at < SUM_CHUNK ? count - at : SUM_CHUNK);
    MPI_Reduce(root ? MPI_IN_PLACE : buf + at, buf + at, n, MPI_DOUBLE,
               MPI_SUM, 0, comm);
    MPI_Bcast(buf + at, n, MPI_DOUBLE, 0, comm);
  }
  return 0;
}

probe_split *probe_split_create(mpi_job *P, const cli_common *c,
                                int64_t examples) {
  probe_split *S = calloc(1, sizeof *S);
  if (!S) {
    cli_error(c, "out of memory");
    return NULL;
  }
  int r = P->w.rank, N = P->w.size;
  S->P = P;
  S->c = c;
  S->ex0 = mpi_shard_start(examples, r, N);
  S->ex1 = mpi_shard_start(examples, r + 1, N);
  S->red.sum = split_sum;
  S->red.arg = S;
  return S;
}

void probe_split_free(probe_split *S) { free(S); }

void probe_split_examples(const probe_split *S, int64_t *ex0, int64_t *ex1) {
  *ex0 = S->ex0;
  *ex1 = S->ex1;
}

int probe_split_is_root(const probe_split *S) { return S->P->w.rank == 0; }

const culeace__probe_reduce *probe_split_reduce(probe_split *S) {
  return &S->red;
}

/* counts (N) of every rank's local count; displs (N) their offsets; the
 * total, or -1 when it does not fit MPI's int counts. */
static int64_t all_counts(probe_split *S, int64_t mine, int *counts,
                          int *displs) {
  long long v = mine, *all = malloc((size_t)S->P->w.size * sizeof *all);
  if (!all) return -1;
  MPI_Allgather(&v, 1, MPI_LONG_LONG, all, 1, MPI_LONG_LONG, S->P->w.comm);
  int64_t tot = 0;
  for (int q = 0; q < S->P->w.size; q++) {
    if (tot > INT32_MAX || all[q] > INT32_MAX - tot) tot = -1;
    if (tot < 0) break;
    counts[q] = (int)all[q];
    displs[q] = (int)tot;
    tot += all[q];
  }
  free(all);
  return tot;
}

int probe_split_rows(probe_split *S, int failed, const layer_rows *L,
                     int64_t *dropped, probe_rows *R) {
  static int stalled;
  if (!stalled++) mpi_test_stall(S->P->w.rank); /* after its first rows */
  int N = S->P->w.size;
  int *counts = malloc((size_t)N * sizeof *counts);
  int *displs = malloc((size_t)N * sizeof *displs);
  memset(R, 0, sizeof *R);
  if (!counts || !displs)
    failed = cli_error(S->c, "out of memory");
  if (probe_split_agree(S, failed)) {
    free(counts);
    free(displs);
    return 1;
  }
  *dropped = mpi_job_sum(S->P, *dropped);
  int64_t n = all_counts(S, L->n, counts, displs);
  failed = 0;
  if (n < 0)
    failed = cli_error(S->c, "a layer's kept rows over all ranks exceed "
                       "2^31 (MPI's counts)");
  else {
    R->row_buf = malloc((size_t)(n ? n : 1) * sizeof *R->row_buf);
    R->y_buf = malloc((size_t)(n ? n : 1) * sizeof *R->y_buf);
    if (!R->row_buf || !R->y_buf) failed = cli_error(S->c, "out of memory");
  }
  if (probe_split_agree(S, failed)) {
    free(R->row_buf);
    free(R->y_buf);
    memset(R, 0, sizeof *R);
    free(counts);
    free(displs);
    return 1;
  }
  MPI_Allgatherv(L->row, (int)L->n, MPI_INT64_T, R->row_buf, counts, displs,
                 MPI_INT64_T, S->P->w.comm);
  MPI_Allgatherv(L->y, (int)L->n, MPI_INT32_T, R->y_buf, counts, displs,
                 MPI_INT32_T, S->P->w.comm);
  R->n = n;
  R->off = displs[S->P->w.rank];
  R->nl = L->n;
  R->row = R->row_buf;
  R->y = R->y_buf;
  free(counts);
  free(displs);
  return 0;
}

int probe_split_gather(probe_split *S, int failed, int64_t m_local, int64_t k,
                       double *proba, int32_t *ysel, int64_t *m_total) {
  int N = S->P->w.size, root = S->P->w.rank == 0;
  int *counts = malloc((size_t)N * sizeof *counts);
  int *displs = malloc((size_t)N * sizeof *displs);
  if (!counts || !displs) failed = cli_error(S->c, "out of memory");
  if (probe_split_agree(S, failed)) {
    free(counts);
    free(displs);
    return 1;
  }
  int64_t m = all_counts(S, m_local * k, counts, displs);
  failed = m < 0 ? cli_error(S->c, "held-out predictions over all ranks "
                             "exceed 2^31 values (MPI's counts)")
                 : 0;
  if (probe_split_agree(S, failed)) {
    free(counts);
    free(displs);
    return 1;
  }
  MPI_Comm comm = S->P->w.comm;
  /* rank 0's rows come first: its own are already in place */
  MPI_Gatherv(root ? MPI_IN_PLACE : proba, (int)(m_local * k), MPI_DOUBLE,
              proba, counts, displs, MPI_DOUBLE, 0, comm);
  for (int q = 0; q < N; q++) {
    counts[q] /= (int)k;
    displs[q] /= (int)k;
  }
  MPI_Gatherv(root ? MPI_IN_PLACE : ysel, (int)m_local, MPI_INT32_T, ysel,
              counts, displs, MPI_INT32_T, 0, comm);
  *m_total = m / k;
  free(counts);
  free(displs);
  return 0;
}

int probe_split_merge(probe_split *S, int failed, culeace_ctx *ctx,
                      culeace_fitter *local, culeace_fitter *total) {
  size_t count = 0;
  double *buf = NULL, *tmp = NULL;
  if (!failed && culeace_fitter_state_size(local, &count))
    failed = cli_error_ctx(S->c, ctx, "the fold's fitter state");
  if (!failed) {
    buf = malloc((count ? count : 1) * sizeof *buf);
    tmp = malloc((count ? count : 1) * sizeof *tmp);
    if (!buf || !tmp) failed = cli_error(S->c, "out of memory");
  }
  if (probe_split_agree(S, failed)) {
    free(buf);
    free(tmp);
    return 1;
  }
  char err[512] = "";
  failed = mpi_merge_states(&S->P->w, ctx, local, buf, tmp, count, err,
                            sizeof err);
  if (!failed && S->P->w.rank == 0 && culeace_fitter_export(local, buf))
    failed = 1, snprintf(err, sizeof err, "exporting the merged state: %s",
                         culeace_ctx_last_error(ctx));
  if (failed) cli_error(S->c, "--erase: %s", err);
  if (probe_split_agree(S, failed)) {
    free(buf);
    free(tmp);
    return 1;
  }
  for (size_t at = 0; at < count; at += SUM_CHUNK) {
    size_t n = count - at < SUM_CHUNK ? count - at : SUM_CHUNK;
    MPI_Bcast(buf + at, (int)n, MPI_DOUBLE, 0, S->P->w.comm);
  }
  failed = culeace_fitter_merge(total, buf, count) != CULEACE_OK;
  if (failed) cli_error_ctx(S->c, ctx, "--erase: the merged state");
  free(buf);
  free(tmp);
  return probe_split_agree(S, failed);
}

int probe_mpi_run_rows(mpi_job *P, probe_job *J, const int64_t *layers,
                       int64_t m, probe_layer_result *res) {
  probe_split *S = J->split;
  int failed = 0;
  probe_layer_result **rp = malloc((size_t)J->batch * sizeof *rp);
  failed = !rp; /* every rank: the same batches, the same calls */
  if (failed) cli_error(J->c, "out of memory");
  for (int64_t i = 0; i < m && !failed; i += J->batch) {
    int64_t cnt = m - i < J->batch ? m - i : J->batch;
    for (int64_t j = 0; j < cnt; j++) rp[j] = &res[i + j];
    S->agreed = 0;
    failed = probe_run_layers(J, cnt, layers + i, rp);
    failed = probe_split_agree(S, failed); /* no-op when already agreed */
  }
  free(rp);
  return mpi_job_agree(P, J->c, failed);
}
