/* mpi_launch.c — whether this process was started by an MPI launcher,
 * decided from the environment alone (MPI_Init is called only then, so the
 * plain CLI never loads MPI's runtime), and the refusal a build without
 * MPI gives under a launcher with several ranks. */
#include <stdlib.h>
#include <string.h>

#ifdef CULEACE_HAVE_MPI
#include <mpi.h>
#endif

#include "cli/mpi_fit.h"
#include "cli/mpi_apply.h"
#include "cli/mpi_apply_inplace.h"
#include "cli/mpi_job.h"
#include "cli/mpi_probe.h"

/* A positive integer environment variable, or 0. */
static int64_t env_count(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  long long n = strtoll(v, &end, 10);
  return *end || n < 1 ? 0 : (int64_t)n;
}

int64_t mpi_launcher_size(const char **which) {
  /* SLURM_STEP_NUM_TASKS is set by srun for the tasks of a step, not in a
   * batch script's own shell (where SLURM_NTASKS and SLURM_PROCID=0 are
   * set for a job of several tasks: a plain `culeace fit` there is not an
   * MPI run). */
  static const char *const sized[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                      "SLURM_STEP_NUM_TASKS"};
  for (size_t i = 0; i < sizeof sized / sizeof *sized; i++) {
    int64_t n = env_count(sized[i]);
    if (n > 0) {
      if (which) *which = sized[i];
      return n;
    }
  }
  if (getenv("PMIX_RANK")) {
    if (which) *which = "PMIX_RANK";
    return -1;
  }
  if (which) *which = NULL;
  return 0;
}

const char *mpi_build_name(void) {
#ifdef CULEACE_HAVE_MPI
  /* callable before MPI_Init; the text up to its first comma */
  static char name[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(name, &len) != MPI_SUCCESS) return "yes";
  name[strcspn(name, ",\n")] = 0;
  return name;
#else
  return "none";
#endif
}

int mpi_refuse_launch(const cli_common *c, const char *command) {
  const char *which = NULL;
  int64_t n = mpi_launcher_size(&which);
  if (n == 0 || n == 1) return 0;
  return cli_error(c, "%s is not sharded under MPI: started by a launcher "
                   "(%s) with %s ranks, each would rewrite the same output; "
                   "run it without mpirun/srun (docs/CLUSTER.md)", command,
                   which, n > 0 ? "several" : "an unknown number of");
}

/* One rank (mpirun -n 1, srun -n 1) is the plain fit: nothing to shard. */
#ifdef CULEACE_HAVE_MPI
int fit_mpi_wanted(void) {
  int64_t n = mpi_launcher_size(NULL);
  return n > 1 || n < 0;
}
#else
int fit_mpi_wanted(void) { return mpi_launcher_size(NULL) > 1; }

int fit_mpi(const cli_common *c, const char *file, const char *z_path,
            const char *out, const culeace_fit_opts *o) {
  const char *which = NULL;
  int64_t n = mpi_launcher_size(&which);
  return cli_error(c, "started by an MPI launcher with %lld ranks (%s) but "
                   "this culeace was built without MPI (CULEACE_MPI=OFF or "
                   "no MPI library found): every rank would fit all rows; "
                   "rebuild with Open MPI (libopenmpi-dev) or run it "
                   "without the launcher (docs/CLUSTER.md)",
                   (long long)n, which);
}

/* A command under a launcher in a build without MPI: refused, as fit. */
int mpi_job_begin(cli_common *c, int agreements, const char *refusal,
                  mpi_job **out) {
  const char *which = NULL;
  int64_t n = mpi_launcher_size(&which);
  *out = NULL;
  return cli_error(c, "started by an MPI launcher with %lld ranks (%s) but "
                   "this culeace was built without MPI (CULEACE_MPI=OFF or "
                   "no MPI library found): %s; rebuild with Open MPI "
                   "(libopenmpi-dev) or run it without the launcher "
                   "(docs/CLUSTER.md)", (long long)n, which, refusal);
}
/* Unreachable without a job (mpi_job_begin never makes one here). */
culeace_ctx *mpi_job_ctx(mpi_job *J, const cli_common *c) { return NULL; }
int mpi_job_rank(const mpi_job *J) { return 0; }
int mpi_job_size(const mpi_job *J) { return 1; }
int mpi_job_agree(mpi_job *J, const cli_common *c, int failed) { return 1; }
int mpi_job_check(mpi_job *J, const cli_common *c, int failed) { return 1; }
void mpi_job_bcast_str(mpi_job *J, char *buf, size_t len) {}
void mpi_job_bcast_i64(mpi_job *J, int64_t *v, int count) {}
int64_t mpi_job_sum(mpi_job *J, int64_t v) { return v; }
int mpi_job_end(mpi_job *J, const cli_common *c, int rc) { return 1; }
int64_t probe_mpi_my_layers(const mpi_job *P, int64_t m) { return m; }
int apply_mpi_edit(mpi_job *P, editor *ed, cli_layer_eraser *items,
                   int64_t m, const char *tmp, cli_progress *prog) {
  return 1;
}
int apply_mpi_in_place(mpi_job *P, editor *ed, cli_layer_eraser *items,
                       int64_t m, apply_journal *jr, apply_pos start,
                       cli_progress *prog) {
  return 1;
}
int probe_mpi_run_layers(mpi_job *P, probe_job *J, const int64_t *layers,
                         int64_t m, probe_layer_result *res) {
  return 1;
}
/* --split rows: never chosen without a job. */
probe_split *probe_split_create(mpi_job *P, const cli_common *c,
                                int64_t examples) {
  return NULL;
}
void probe_split_free(probe_split *S) {}
void probe_split_examples(const probe_split *S, int64_t *ex0, int64_t *ex1) {}
int probe_split_is_root(const probe_split *S) { return 1; }
const culeace__probe_reduce *probe_split_reduce(probe_split *S) {
  return NULL;
}
int probe_split_agree(probe_split *S, int failed) { return 1; }
int probe_split_rows(probe_split *S, int failed, const layer_rows *L,
                     int64_t *dropped, probe_rows *R) {
  return 1;
}
int probe_split_gather(probe_split *S, int failed, int64_t m_local, int64_t k,
                       double *proba, int32_t *ysel, int64_t *m_total) {
  return 1;
}
int probe_split_merge(probe_split *S, int failed, culeace_ctx *ctx,
                      culeace_fitter *local, culeace_fitter *total) {
  return 1;
}
int probe_mpi_run_rows(mpi_job *P, probe_job *J, const int64_t *layers,
                       int64_t m, probe_layer_result *res) {
  return 1;
}
#endif
