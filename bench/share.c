/*
 * share.c - `memmap bench share`: processes mapping one file share its
 * pages; processes reading it each hold a copy.
 *
 * N processes (1, 2, 4, 8) each get all of one cached 256 MiB file (quick:
 * 64 MiB) into memory and scan it: by mmap (the pages of the page cache,
 * shared) or by read() into a buffer of their own. When all are done, the
 * memory they use is the sum of their PSS (proportional set size, from
 * /proc/PID/smaps_rollup: a page shared by k processes counts 1/k in
 * each), and the time is from the start until the last one finished.
 * Baseline: read() with the same N.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

/* Pss of a process, in bytes; 0 if unreadable. */
static uint64_t pss_of(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  uint64_t kb = 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "Pss:", 4)) {
      kb = strtoull(line + 4, NULL, 10);
      break;
    }
  fclose(f);
  return kb * 1024;
}

/* One child: get the file into memory, scan it, report, wait to be
 * measured and killed. */
static void child(const char *path, int use_mmap, int ready_fd) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) _exit(2);
  size_t size = (size_t)st.st_size;
  const unsigned char *p;
  if (use_mmap) {
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (m == MAP_FAILED) _exit(3);
    p = m;
  } else {
    unsigned char *buf = malloc(size);
    if (!buf) _exit(4);
    for (size_t got = 0; got < size;) {
      ssize_t n = read(fd, buf + got, size - got);
      if (n <= 0) _exit(5);
      got += (size_t)n;
    }
    p = buf;
  }
  close(fd);
  bench_sum(p, size);
  char c = 'r';
  if (write(ready_fd, &c, 1) != 1) _exit(6);
  pause();
  _exit(0);
}

/* Run n children; memory (summed PSS) and seconds until all were ready. */
static int run_n(const char *path, int n, int use_mmap, uint64_t *mem, double *secs) {
  int fds[2];
  if (pipe(fds) < 0) return -errno;
  pid_t pids[8];
  fflush(NULL);
  double t0 = bench_now();
  int started = 0, rc = 0;
  for (; started < n; started++) {
    pids[started] = fork();
    if (pids[started] < 0) {
      rc = -errno;
      break;
    }
    if (pids[started] == 0) {
      close(fds[0]);
      child(path, use_mmap, fds[1]);
    }
  }
  close(fds[1]);
  for (int i = 0; i < started && rc == 0; i++) {
    char c;
    if (read(fds[0], &c, 1) != 1) rc = -EIO;
  }
  *secs = bench_now() - t0;
  *mem = 0;
  for (int i = 0; i < started && rc == 0; i++) *mem += pss_of(pids[i]);
  for (int i = 0; i < started; i++) kill(pids[i], SIGKILL);
  for (int i = 0; i < started; i++) waitpid(pids[i], NULL, 0);
  close(fds[0]);
  return rc;
}

static int cmp_d(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

int bench_share(struct bench *b) {
  uint64_t size = b->quick ? (uint64_t)64 << 20 : (uint64_t)256 << 20;
  if (b->max_size && size > b->max_size) size = b->max_size;
  char path[4096];
  snprintf(path, sizeof path, "%s/memmap-bench-share.%ld", b->dir, (long)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int rc = 0;
  unsigned char *chunk = malloc(1 << 20);
  if (!chunk) rc = -ENOMEM;
  for (uint64_t at = 0; at < size && rc == 0; at += 1 << 20) {
    memset(chunk, (int)(at >> 20), 1 << 20);
    if (write(fd, chunk, 1 << 20) != 1 << 20) rc = -EIO;
  }
  free(chunk);
  close(fd);
  static const int ns[] = {1, 2, 4, 8};
  int reps = b->quick ? 3 : 5;
  uint64_t mem[4][2] = {{0}};
  for (int i = 0; i < 4 && rc == 0; i++) {
    double t[2][16];
    for (int r = 0; r < reps && rc == 0; r++)
      for (int m = 0; m < 2 && rc == 0; m++) {
        bench_progress(b, "share: %d processes, %s, run %d/%d", ns[i], m ? "mmap" : "read",
                       r + 1, reps);
        uint64_t used = 0;
        rc = run_n(path, ns[i], m, &used, &t[m][r]);
        if (used > mem[i][m]) mem[i][m] = used;
      }
    if (rc) break;
    for (int m = 0; m < 2; m++) {
      qsort(t[m], (size_t)reps, sizeof t[m][0], cmp_d);
      struct bench_row row;
      memset(&row, 0, sizeof row);
      snprintf(row.suite, sizeof row.suite, "share");
      snprintf(row.case_, sizeof row.case_, "processes-%d", ns[i]);
      snprintf(row.method, sizeof row.method, "%s", m ? "mmap" : "read");
      snprintf(row.baseline, sizeof row.baseline, "%s", m ? "read" : "");
      snprintf(row.note, sizeof row.note, "pss_bytes=%llu", (unsigned long long)mem[i][m]);
      row.bytes = size;
      row.ops = (uint64_t)ns[i];
      row.seconds = t[m][reps / 2];
      row.min = t[m][0];
      row.max = t[m][reps - 1];
      row.reps = reps;
      bench_add(b, &row);
    }
  }
  bench_progress_done(b);
  unlink(path);
  if (rc < 0) return rc;
  char s1[32], s2[32], t1[32], t2[32];
  fprintf(b->out,
          "\nshare: N processes each get all of one cached %s file into memory "
          "and scan it; median of %d runs.\n"
          "  memory = PSS summed over the processes (shared pages counted once "
          "in all); [x] = read() time / mmap time.\n",
          cli_format_size(size, s1, sizeof s1), reps);
  fprintf(b->out, "%-10s %14s %14s %12s %12s %8s\n", "processes", "read() memory",
          "mmap memory", "read() time", "mmap time", "");
  for (int i = 0; i < 4; i++) {
    char c1[32], c2[32];
    snprintf(c1, sizeof c1, "processes-%d", ns[i]);
    struct bench_row *rd = bench_find(b, "share", c1, "read", size);
    struct bench_row *mp = bench_find(b, "share", c1, "mmap", size);
    snprintf(c2, sizeof c2, "[%.2fx]", mp->ratio);
    fprintf(b->out, "%-10d %14s %14s %12s %12s %8s\n", ns[i],
            cli_format_size(mem[i][0], s1, sizeof s1), cli_format_size(mem[i][1], s2, sizeof s2),
            bench_fmt_time(rd->seconds, t1, sizeof t1), bench_fmt_time(mp->seconds, t2, sizeof t2),
            c2);
  }
  fprintf(b->out, "\n");
  bench_verdict(b, "share",
                "8 processes reading one %s file hold %s by read() and %s by mmap "
                "(%.1fx less): mapped pages are shared, read() copies are not.",
                cli_format_size(size, s1, sizeof s1), cli_format_size(mem[3][0], s2, sizeof s2),
                cli_format_size(mem[3][1], t1, sizeof t1),
                mem[3][1] ? (double)mem[3][0] / (double)mem[3][1] : 0);
  return 0;
}
