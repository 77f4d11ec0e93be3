/* run_rss.c — runs a command and reports the command's own peak resident
 * set and CPU time, for the harnesses in bench/.
 *
 * A child's ru_maxrss counts the memory of the process it was forked from
 * (the high-water mark survives fork and exec), so a command started
 * straight from a Python harness that has imported numpy, h5py or torch
 * reports that interpreter's size, not its own. This small process forks
 * the command itself: its peak is the command's.
 *
 * usage: culeace_bench_run REPORT CMD [ARGS...]
 * Writes {"maxrss_kib": K, "utime_s": U, "stime_s": S} to REPORT and exits
 * with the command's status (128 + signal when a signal ended it). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s REPORT CMD [ARGS...]\n", argv[0]);
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("culeace_bench_run: fork");
    return 127;
  }
  if (pid == 0) {
    execvp(argv[2], argv + 2);
    perror(argv[2]);
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    perror("culeace_bench_run: wait4");
    return 127;
  }
  FILE *f = fopen(argv[1], "w");
  if (!f) {
    perror(argv[1]);
    return 127;
  }
  fprintf(f, "{\"maxrss_kib\": %ld, \"utime_s\": %.6f, \"stime_s\": %.6f}\n",
          ru.ru_maxrss, ru.ru_utime.tv_sec + 1e-6 * ru.ru_utime.tv_usec,
          ru.ru_stime.tv_sec + 1e-6 * ru.ru_stime.tv_usec);
  if (fclose(f) != 0) return 127;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}
