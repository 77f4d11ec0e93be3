/* precheck.c — reads each input file's HDF5 metadata in a child process
 * before the command opens it (culeace__h5_walk_metadata): libhdf5 1.10
 * crashes on some crafted files (docs/SECURITY.md). A crash in the child
 * becomes a clear error naming the file; the command has then read nothing
 * from it and written nothing. CULEACE_NO_PRECHECK=1 skips it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "cli/cli.h"
#include "io/h5util.h"

/* The error for a check process that ended with status (0 if it passed). */
static int report(const cli_common *c, const char *path, int status) {
  /* The child exits 0 unless libhdf5 crashed (a signal, or the exit
   * status a sanitizer gives a crash). */
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
    return cli_error(c, "%s: reading its HDF5 metadata did not finish in 10 "
                     "minutes in a check process: the file is corrupt or "
                     "crafted (or has an enormous number of objects: "
                     "CULEACE_NO_PRECHECK=1 skips the check); nothing was "
                     "read from it or written", path);
  if (WIFSIGNALED(status))
    return cli_error(c, "%s: reading its HDF5 metadata crashed libhdf5 in a "
                     "check process (signal %d, %s): the file is corrupt "
                     "or crafted; nothing was read from it or written",
                     path, WTERMSIG(status), strsignal(WTERMSIG(status)));
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
    return cli_error(c, "%s: reading its HDF5 metadata crashed libhdf5 in a "
                     "check process (exit status %d): the file is corrupt "
                     "or crafted; nothing was read from it or written",
                     path, WEXITSTATUS(status));
  return 0;
}

/* One check process per file, all started before any is waited for (two
 * files: ~4 ms less than one after the other), reported in path order. */
int cli_precheck_files(const cli_common *c, int n, const char *const *paths) {
  if (getenv("CULEACE_NO_PRECHECK") || n <= 0) return 0;
  pid_t *pids = calloc((size_t)n, sizeof *pids);
  if (!pids) return 0; /* no room to track children: go on unchecked */
  fflush(NULL);
  for (int i = 0; i < n; i++) {
    if (!paths[i] || access(paths[i], R_OK) != 0) continue; /* reported later */
    pid_t pid = fork();
    if (pid < 0) continue; /* no child: the command goes on unchecked */
    if (pid == 0) { /* quiet: libhdf5's or a sanitizer's report is noise */
#ifdef __linux__
      /* Dies with the command (a killed culeace must not leave a child
       * holding the file's HDF5 lock against the rerun). */
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() == 1) _exit(0);
#endif
      int null = open("/dev/null", O_WRONLY);
      if (null >= 0) {
        dup2(null, 1);
        dup2(null, 2);
      }
      signal(SIGSEGV, SIG_DFL);
      signal(SIGBUS, SIG_DFL);
      signal(SIGABRT, SIG_DFL);
      alarm(600); /* a libhdf5 loop on a crafted file: SIGALRM after 10 min */
      culeace__h5_walk_metadata(paths[i]);
      _exit(0);
    }
    pids[i] = pid;
  }
  int rc = 0;
  for (int i = 0; i < n; i++) { /* every child is reaped, failed or not */
    if (!pids[i]) continue;
    int status = 0;
    while (waitpid(pids[i], &status, 0) < 0) {
      if (errno != EINTR) {
        status = 0;
        break;
      }
    }
    if (!rc) rc = report(c, paths[i], status);
  }
  free(pids);
  return rc;
}
