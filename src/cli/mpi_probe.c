/* mpi_probe.c — `culeace probe` under mpirun/srun (see mpi_probe.h): layer
 * i is probed by rank i mod N, whole (its rows read only there), and its
 * result (the per-fold metrics, MDL, convergence, and with --save the
 * probe fitted on all rows) travels to rank 0 as one message of doubles. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mpi_probe.h"
#include "cli/mpi_reduce.h"

/* ---- one layer's result as doubles --------------------------------------
 * rows, dropped, all_converged, max_n_iter, mdl (done, blocks,
 * uniform_blocks, online_bits, uniform_bits, compression), the 7 metrics'
 * fold values (7 F), then with a final probe: n_outputs, d, and its coef
 * (n_outputs d), intercept (n_outputs), mean (d), scale (d). */
enum { HEAD = 10 };

static probe_metric *metric(probe_layer_result *r, int i) {
  probe_metric *ms[7] = {&r->acc, &r->bal, &r->auc, &r->ll,
                         &r->maj, &r->ctrl, &r->erased};
  return ms[i];
}

static double *pack(probe_layer_result *r, int64_t F, int *count) {
  culeace_probe_info pi;
  memset(&pi, 0, sizeof pi);
  if (r->final && culeace_probe_info_get(r->final, &pi)) return NULL;
  int64_t no = pi.n_outputs, d = pi.d;
  size_t n = HEAD + 7 * (size_t)F + (r->final ? 2 + (size_t)(no * d + no + 2 * d)
                                               : 0);
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
  for (int i = 0; i < 7; i++) {
    memcpy(p, metric(r, i)->v, (size_t)F * sizeof *p);
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
  if (count < HEAD + 7 * F) return 1;
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
  for (int i = 0; i < 7; i++) {
    memcpy(metric(r, i)->v, p, (size_t)F * sizeof *p);
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
  int failed = 0;
  for (int64_t i = P->w.rank; i < m && !failed; i += P->w.size)
    failed = probe_run_layer(J, layers[i], &res[i]);
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
      for (int q = 0; q < 7 && !failed; q++)
        probe_metric_summarise(metric(&res[i], q), F);
      if (J->s->control) res[i].selectivity = res[i].acc.mean - res[i].ctrl.mean;
    }
  }
  return failed;
}
