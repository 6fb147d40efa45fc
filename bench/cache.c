/*
 * cache.c - `memmap bench cache`: what it costs to ask how much of 1 GiB of
 * files (quick: 256 MiB) is in the page cache.
 *
 * The files (16 MiB each) are written and left cached. Methods:
 *   cachestat   mm_cache_stat with cachestat(2): one system call per file;
 *   mincore     mm_cache_stat with mincore over a fresh mapping;
 *   memmap      the `memmap cache -q` command as a process, which pays for
 *               exec and the walk, like the two below;
 *   vmtouch     `vmtouch -q DIR` as a process (the baseline), when
 *               installed (bench/setup.sh installs it);
 *   fincore     util-linux `fincore FILES` as a process, when installed.
 * Reported per GiB of files queried and per page.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

#define FILE_SIZE ((uint64_t)16 << 20)

struct cache_arg {
  char dir[4096];
  int nfiles;
  int method;
  char cmd[8192];
  int fail;
};

static void q_library(void *p) {
  struct cache_arg *a = p;
  char path[4200];
  for (int i = 0; i < a->nfiles; i++) {
    snprintf(path, sizeof path, "%s/f%03d", a->dir, i);
    mm_cache_stat_t st;
    /* The cost of asking is measured, whatever the answer. */
    if (mm_cache_stat(path, 0, 0, a->method, &st) < 0) a->fail = 1;
  }
}

static void q_process(void *p) {
  struct cache_arg *a = p;
  if (system(a->cmd) != 0) a->fail = 1;
}

static int have(const char *tool) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
  return system(cmd) == 0;
}

/* The path of the running memmap binary, to run it as a process. */
static int self_path(char *buf, size_t len) {
  ssize_t n = readlink("/proc/self/exe", buf, len - 1);
  if (n <= 0) return -errno;
  buf[n] = 0;
  return 0;
}

int bench_cache(struct bench *b) {
  uint64_t total = b->quick ? (uint64_t)256 << 20 : (uint64_t)1 << 30;
  if (b->max_size && total > b->max_size) total = b->max_size;
  if (total < FILE_SIZE) total = FILE_SIZE;
  struct cache_arg a;
  memset(&a, 0, sizeof a);
  a.nfiles = (int)(total / FILE_SIZE);
  snprintf(a.dir, sizeof a.dir, "%s/memmap-bench-cache.%ld", b->dir, (long)getpid());
  if (mkdir(a.dir, 0700) < 0) return -errno;
  int rc = 0;
  unsigned char *chunk = malloc(1 << 20);
  if (!chunk) rc = -ENOMEM;
  if (chunk) memset(chunk, 7, 1 << 20);
  char path[4200], self[4096];
  for (int i = 0; i < a.nfiles && rc == 0; i++) {
    bench_progress(b, "cache: writing file %d/%d", i + 1, a.nfiles);
    snprintf(path, sizeof path, "%s/f%03d", a.dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      rc = -errno;
      break;
    }
    for (uint64_t at = 0; at < FILE_SIZE && rc == 0; at += 1 << 20)
      if (write(fd, chunk, 1 << 20) != 1 << 20) rc = -EIO;
    if (fsync(fd) < 0 && rc == 0) rc = -errno;
    close(fd);
  }
  free(chunk);
  if (rc == 0) rc = self_path(self, sizeof self);

  struct {
    const char *name;
    const char *need;
    bench_fn fn;
    int method;
    const char *fmt;
  } methods[] = {
      {"vmtouch", "vmtouch", q_process, 0, "vmtouch -q %s"},
      {"cachestat", NULL, q_library, MM_CACHE_CACHESTAT, NULL},
      {"mincore", NULL, q_library, MM_CACHE_MINCORE, NULL},
      {"memmap", NULL, q_process, 0, "%s cache -q -r %s"},
      {"fincore", "fincore", q_process, 0, "fincore %s/f* >/dev/null"},
  };
  enum { NM = sizeof methods / sizeof methods[0] };
  struct cache_arg args[NM];
  bench_fn fns[NM];
  void *argp[NM];
  int idx[NM], n = 0;
  for (int m = 0; m < NM && rc == 0; m++) {
    if (methods[m].need && !have(methods[m].need)) continue;
    if (methods[m].method == MM_CACHE_CACHESTAT && !mm_cache_have_cachestat()) continue;
    args[n] = a;
    args[n].method = methods[m].method;
    if (methods[m].fmt == NULL)
      args[n].cmd[0] = 0;
    else if (!strcmp(methods[m].name, "memmap"))
      snprintf(args[n].cmd, sizeof args[n].cmd, methods[m].fmt, self, a.dir);
    else
      snprintf(args[n].cmd, sizeof args[n].cmd, methods[m].fmt, a.dir);
    fns[n] = methods[m].fn;
    argp[n] = &args[n];
    idx[n++] = m;
  }
  struct bench_row rows[NM];
  memset(rows, 0, sizeof rows);
  if (rc == 0) {
    bench_progress(b, "cache: querying %d files", a.nfiles);
    bench_time_set(fns, argp, n, b->quick ? 5 : 11, b->quick ? 0.05 : 0.2, rows);
  }
  bench_progress_done(b);
  for (int i = 0; i < n; i++)
    if (args[i].fail) rc = -EIO;
  for (int i = 0; i < a.nfiles; i++) {
    snprintf(path, sizeof path, "%s/f%03d", a.dir, i);
    unlink(path);
  }
  rmdir(a.dir);
  if (rc < 0) return rc;

  /* Rows: time per GiB; the baseline is vmtouch when installed. */
  int have_vmtouch = n > 0 && idx[0] == 0;
  double gib = (double)total / (double)(1u << 30);
  uint64_t pages = total / (uint64_t)sysconf(_SC_PAGESIZE);
  char s[32], t1[32], t2[32];
  fprintf(b->out,
          "\ncache: residency of %s in %d cached files of 16 MiB; median of "
          "interleaved runs.\n"
          "  [x] = vmtouch time / this time. Library calls run in this process; "
          "the others are processes (exec included).\n",
          cli_format_size(total, s, sizeof s), a.nfiles);
  if (!have_vmtouch)
    fprintf(b->out, "  vmtouch is not installed (bench/setup.sh installs it): "
                    "no baseline, no ratios.\n");
  fprintf(b->out, "%-10s %14s %14s %10s\n", "method", "per GiB", "per page", "vs vmtouch");
  for (int i = 0; i < n; i++) {
    struct bench_row r = rows[i];
    snprintf(r.suite, sizeof r.suite, "cache");
    snprintf(r.case_, sizeof r.case_, "residency-query");
    snprintf(r.method, sizeof r.method, "%s", methods[idx[i]].name);
    snprintf(r.baseline, sizeof r.baseline, "%s", have_vmtouch && i ? "vmtouch" : "");
    r.bytes = total;
    /* Per GiB, so runs of different sizes compare. */
    r.seconds /= gib, r.min /= gib, r.max /= gib;
    struct bench_row *added = bench_add(b, &r);
    char cell[32] = "";
    if (added && added->ratio > 0) snprintf(cell, sizeof cell, "%.2fx", added->ratio);
    fprintf(b->out, "%-10s %14s %14s %10s\n", r.method,
            bench_fmt_time(r.seconds, t1, sizeof t1),
            bench_fmt_time(r.seconds * gib / (double)pages, t2, sizeof t2), cell);
  }
  struct bench_row *cs = bench_find(b, "cache", "residency-query", "cachestat", total);
  struct bench_row *vt = bench_find(b, "cache", "residency-query", "vmtouch", total);
  if (cs && vt)
    bench_verdict(b, "cache",
                  "cachestat answers for a GiB of cached files in %s, %.0fx faster "
                  "than running vmtouch.",
                  bench_fmt_time(cs->seconds, t1, sizeof t1), cs->ratio);
  return 0;
}
