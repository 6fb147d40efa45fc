/*
 * grow.c - `memmap bench grow`: memory whose final size is unknown.
 *
 * Growth: a buffer grows to 1 GiB (quick: 128 MiB) in steps of 64 B, 4 KiB
 * and 64 KiB; each step appends `step` bytes (a memcpy from a small source
 * buffer). Methods:
 *   floor        the same writes into memory mapped once at full size: the
 *                cost of first-touching that many pages, which every method
 *                pays at least once;
 *   region       mm_region_resize by one step, then the memcpy;
 *   append       mm_region_append;
 *   realloc      realloc() by one step (glibc moves large blocks with
 *                mremap, small ones by copying);
 *   realloc-x2   realloc() with capacity doubling, as a vector does;
 *   mremap-x2    an anonymous mapping grown with mremap(MREMAP_MAYMOVE),
 *                capacity doubling.
 * Each run is a fresh process, so its peak RSS (getrusage) is the
 * method's own. After growing, each method shrinks back to 10% of the
 * size (region: resize; realloc: realloc down; mremap: mremap down; floor:
 * MADV_DONTNEED of the tail) and the RSS left is measured: with no
 * fragmentation it is 10% of the data.
 *
 * Fragmentation: 1,000 buffers grow in turn, 1 KiB at a time, to 256 KiB
 * each (quick: 64 KiB), with a small allocation (16-256 B, kept) made
 * between steps; then 90% of the buffers are freed. The RSS left, against
 * the data still live, with malloc/realloc and with one region per buffer.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

struct grow_result {
  double seconds;    /* growing, every step */
  uint64_t moves;    /* times the data moved to another address */
  uint64_t rss_after;/* RSS after shrinking to 10% (growth) / freeing 90%,
                        above what the child had when it started (a fork
                        of the bench, whose own memory is not the
                        method's) */
  uint64_t live;     /* bytes still live then */
  uint64_t rss_base; /* RSS before the work started */
  int ok;
};

static uint64_t rss_now(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t page_align(uint64_t x) {
  uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
  return (x + pg - 1) / pg * pg;
}

static unsigned char src[65536];

enum { M_FLOOR, M_REGION, M_APPEND, M_REALLOC, M_REALLOC2, M_MREMAP2, NMETHODS };
static const char *const method_names[NMETHODS] = {
    "floor", "region", "append", "realloc", "realloc-x2", "mremap-x2"};

/* One growth run, in the child. */
static void grow_child(int method, uint64_t total, size_t step,
                       struct grow_result *res) {
  uint64_t steps = total / step;
  unsigned char *p = NULL, *first = NULL;
  uint64_t cap = 0, size = 0;
  res->rss_base = rss_now();
  double t0 = bench_now();
  switch (method) {
  case M_FLOOR: {
    p = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    for (uint64_t i = 0; i < steps; i++, size += step) memcpy(p + size, src, step);
    res->seconds = bench_now() - t0;
    size_t keep = (size_t)page_align(total / 10);
    madvise(p + keep, (size_t)total - keep, MADV_DONTNEED);
    break;
  }
  case M_REGION:
  case M_APPEND: {
    mm_region_t *r;
    mm_region_opts_t o = {.reserve = total};
    if (mm_region_create(&r, &o) != 0) return;
    first = mm_region_base(r);
    for (uint64_t i = 0; i < steps; i++) {
      if (method == M_REGION) {
        if (mm_region_resize(r, size + step) != 0) return;
        memcpy((unsigned char *)mm_region_base(r) + size, src, step);
      } else if (mm_region_append(r, src, step, NULL) != 0) {
        return;
      }
      size += step;
    }
    res->seconds = bench_now() - t0;
    res->moves = mm_region_moves(r) + (mm_region_base(r) != first);
    if (mm_region_resize(r, total / 10) != 0 || mm_region_trim(r) != 0) return;
    res->rss_after = rss_now() - res->rss_base;
    res->live = total / 10;
    res->ok = 1;
    return; /* the region is released by exit */
  }
  case M_REALLOC:
  case M_REALLOC2:
    for (uint64_t i = 0; i < steps; i++) {
      if (size + step > cap) {
        uint64_t ncap = size + step;
        if (method == M_REALLOC2)
          for (ncap = cap ? cap : 4096; ncap < size + step;) ncap *= 2;
        unsigned char *q = realloc(p, (size_t)ncap);
        if (!q) return;
        if (p && q != p) res->moves++;
        p = q;
        cap = ncap;
      }
      memcpy(p + size, src, step);
      size += step;
    }
    res->seconds = bench_now() - t0;
    {
      unsigned char *q = realloc(p, (size_t)(total / 10));
      if (q) p = q;
    }
    break;
  case M_MREMAP2:
    for (uint64_t i = 0; i < steps; i++) {
      if (size + step > cap) {
        uint64_t ncap = cap ? cap : 65536;
        while (ncap < size + step) ncap *= 2;
        void *q = cap ? mremap(p, (size_t)cap, (size_t)ncap, MREMAP_MAYMOVE)
                      : mmap(NULL, (size_t)ncap, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (q == MAP_FAILED) return;
        if (p && q != p) res->moves++;
        p = q;
        cap = ncap;
      }
      memcpy(p + size, src, step);
      size += step;
    }
    res->seconds = bench_now() - t0;
    {
      size_t keep = (size_t)page_align(total / 10);
      void *q = mremap(p, (size_t)cap, keep, 0);
      if (q == MAP_FAILED) return;
    }
    break;
  }
  res->rss_after = rss_now() - res->rss_base;
  res->live = total / 10;
  res->ok = 1;
}

/* Fragmentation run, in the child: 1,000 buffers grown in turn with small
 * allocations in between, then 90% freed. */
static void frag_child(int use_region, uint64_t per_buf, struct grow_result *res) {
  enum { NBUF = 1000, STEP = 1024 };
  static unsigned char *bufs[NBUF];
  static mm_region_t *regs[NBUF];
  static void *smalls[NBUF * 256];
  size_t nsmall = 0;
  uint64_t x = 88172645463325252ull;
  res->rss_base = rss_now();
  double t0 = bench_now();
  for (uint64_t size = STEP; size <= per_buf; size += STEP) {
    for (int b = 0; b < NBUF; b++) {
      if (use_region) {
        if (!regs[b]) {
          mm_region_opts_t o = {.reserve = per_buf};
          if (mm_region_create(&regs[b], &o) != 0) return;
        }
        if (mm_region_append(regs[b], src, STEP, NULL) != 0) return;
      } else {
        unsigned char *q = realloc(bufs[b], (size_t)size);
        if (!q) return;
        if (bufs[b] && q != bufs[b]) res->moves++;
        bufs[b] = q;
        memcpy(q + size - STEP, src, STEP);
      }
      if (nsmall < sizeof smalls / sizeof smalls[0]) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = 16 + (size_t)(x % 241);
        smalls[nsmall] = malloc(n);
        if (!smalls[nsmall]) return;
        memset(smalls[nsmall++], 1, n);
      }
    }
  }
  res->seconds = bench_now() - t0;
  uint64_t small_bytes = 0;
  for (size_t i = 0; i < nsmall; i++) small_bytes += malloc_usable_size(smalls[i]);
  for (int b = 0; b < NBUF; b++) {
    if (b % 10 == 0) continue; /* keep 10% */
    if (use_region) {
      (void)mm_region_close(regs[b]);
      regs[b] = NULL;
    } else {
      free(bufs[b]);
      bufs[b] = NULL;
    }
  }
  res->rss_after = rss_now() - res->rss_base;
  res->live = (uint64_t)(NBUF / 10) * per_buf + small_bytes;
  res->ok = 1;
}

/* Run fn in a child process; fill res and peak (max RSS of the child). */
static int in_child(int kind, int method, uint64_t total, size_t step,
                    struct grow_result *res, uint64_t *peak) {
  int fds[2];
  if (pipe(fds) < 0) return -errno;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    close(fds[0]);
    struct grow_result r;
    memset(&r, 0, sizeof r);
    if (kind == 0) {
      /* Fault in and release as much memory as the run will use, so that
       * the run gets pages the guest already holds. Under a hypervisor
       * with free page reporting (virtio-balloon), memory freed by the
       * previous run is handed back to the host within seconds and costs
       * about 10 us a page to get back, by chance more or less of it:
       * noise that would swamp the differences between the methods. */
      size_t warm = (size_t)(total + total / 8);
      void *w = mmap(NULL, warm, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
      if (w != MAP_FAILED) munmap(w, warm);
      /* Reset the peak RSS to what is resident now (Linux 4.0+), so that
       * the peak reported is the run's, not the warm-up's. */
      FILE *cr = fopen("/proc/self/clear_refs", "w");
      if (cr) {
        fputs("5", cr);
        fclose(cr);
      }
    }
    if (kind == 0)
      grow_child(method, total, step, &r);
    else
      frag_child(method, total, &r);
    ssize_t w = write(fds[1], &r, sizeof r);
    _exit(w == (ssize_t)sizeof r ? 0 : 1);
  }
  close(fds[1]);
  memset(res, 0, sizeof *res);
  ssize_t n = read(fds[0], res, sizeof *res);
  close(fds[0]);
  int st;
  struct rusage ru;
  if (wait4(pid, &st, 0, &ru) != pid) return -errno;
  *peak = (uint64_t)ru.ru_maxrss * 1024;
  /* The peak above the child's own start, as for rss_after. */
  *peak = *peak > res->rss_base ? *peak - res->rss_base : 0;
  if (n != (ssize_t)sizeof *res || !WIFEXITED(st) || WEXITSTATUS(st) || !res->ok)
    return -EIO;
  return 0;
}

static int cmp_res(const void *a, const void *b) {
  double x = ((const struct grow_result *)a)->seconds;
  double y = ((const struct grow_result *)b)->seconds;
  return x < y ? -1 : x > y;
}

int bench_grow(struct bench *b) {
  /* Quick: 128 MiB, still far above glibc's mmap threshold, so realloc
   * moves and mremaps as it does at 1 GiB. Each run is bound by first
   * touches (about 12 us a page on the 2-core VM it was tuned on), so half
   * the size is half the time. */
  uint64_t total = b->quick ? (uint64_t)128 << 20 : (uint64_t)1 << 30;
  if (b->max_size && total > b->max_size) total = b->max_size;
  static const size_t steps[] = {64, 4096, 65536};
  int reps = b->quick ? 3 : 5;
  char t[32], s1[32], s2[32], s3[32];
  memset(src, 0x5A, sizeof src);
  struct bench_row rows[3][NMETHODS];
  uint64_t peaks[3][NMETHODS], moves[3][NMETHODS], after[3][NMETHODS];
  memset(rows, 0, sizeof rows);

  for (int si = 0; si < 3; si++) {
    struct grow_result rr[NMETHODS][16];
    uint64_t pk[NMETHODS][16];
    /* Interleave methods across repetitions, as elsewhere. */
    for (int rep = 0; rep < reps; rep++) {
      for (int m = 0; m < NMETHODS; m++) {
        bench_progress(b, "grow: %s steps, %s, run %d/%d",
                       cli_format_size(steps[si], s1, sizeof s1), method_names[m],
                       rep + 1, reps);
        int rc = in_child(0, m, total, steps[si], &rr[m][rep], &pk[m][rep]);
        if (rc < 0) {
          bench_progress_done(b);
          return rc;
        }
      }
    }
    for (int m = 0; m < NMETHODS; m++) {
      qsort(rr[m], (size_t)reps, sizeof rr[m][0], cmp_res);
      struct bench_row *r = &rows[si][m];
      snprintf(r->suite, sizeof r->suite, "grow");
      snprintf(r->case_, sizeof r->case_, "grow-step-%zu", steps[si]);
      snprintf(r->method, sizeof r->method, "%s", method_names[m]);
      snprintf(r->baseline, sizeof r->baseline, "%s", m == M_REALLOC ? "" : "realloc");
      r->bytes = total;
      r->ops = total / steps[si];
      r->seconds = rr[m][reps / 2].seconds;
      r->min = rr[m][0].seconds;
      r->max = rr[m][reps - 1].seconds;
      r->reps = reps;
      uint64_t maxpeak = 0;
      for (int k = 0; k < reps; k++) maxpeak = pk[m][k] > maxpeak ? pk[m][k] : maxpeak;
      peaks[si][m] = maxpeak;
      moves[si][m] = rr[m][reps / 2].moves;
      after[si][m] = rr[m][reps / 2].rss_after;
      snprintf(r->note, sizeof r->note, "moves=%llu peak_rss=%llu rss_after=%llu",
               (unsigned long long)moves[si][m], (unsigned long long)peaks[si][m],
               (unsigned long long)after[si][m]);
    }
    /* realloc first, so the others find their baseline. */
    bench_add(b, &rows[si][M_REALLOC]);
    for (int m = 0; m < NMETHODS; m++)
      if (m != M_REALLOC) bench_add(b, &rows[si][m]);
  }

  /* Fragmentation. */
  uint64_t per_buf = b->quick ? 64 << 10 : 256 << 10;
  struct grow_result fr[2];
  uint64_t fpk[2];
  for (int u = 0; u < 2; u++) {
    bench_progress(b, "grow: fragmentation, %s", u ? "regions" : "malloc/realloc");
    int rc = in_child(1, u, per_buf, 0, &fr[u], &fpk[u]);
    if (rc < 0) {
      bench_progress_done(b);
      return rc;
    }
  }
  bench_progress_done(b);
  struct bench_row fm = {0}, frg = {0};
  snprintf(fm.suite, sizeof fm.suite, "grow");
  snprintf(fm.case_, sizeof fm.case_, "fragmentation");
  snprintf(fm.method, sizeof fm.method, "malloc");
  fm.bytes = fr[0].rss_after;
  fm.seconds = fm.min = fm.max = fr[0].seconds;
  fm.reps = 1;
  snprintf(fm.note, sizeof fm.note, "rss_after=%llu live=%llu",
           (unsigned long long)fr[0].rss_after, (unsigned long long)fr[0].live);
  frg = fm;
  snprintf(frg.method, sizeof frg.method, "region");
  snprintf(frg.baseline, sizeof frg.baseline, "malloc");
  frg.bytes = fr[1].rss_after;
  frg.seconds = frg.min = frg.max = fr[1].seconds;
  snprintf(frg.note, sizeof frg.note, "rss_after=%llu live=%llu",
           (unsigned long long)fr[1].rss_after, (unsigned long long)fr[1].live);
  /* The ratio that matters here is of memory left behind, not time: rows
   * carry it as bytes; bench_add computes a time ratio, so set it after. */
  bench_add(b, &fm);
  struct bench_row *added = bench_add(b, &frg);
  if (added && fr[1].rss_after) added->ratio = (double)fr[0].rss_after / (double)fr[1].rss_after;

  /* Tables. */
  fprintf(b->out,
          "\ngrow: a buffer grown to %s in fixed steps; median of %d runs, each "
          "in a fresh process.\n"
          "  [x] = realloc() time / this time. 'floor' writes the same bytes "
          "into memory mapped once at full size.\n"
          "  RSS after = after shrinking back to 10%% (%s of data). RSS figures "
          "are above the run's own start.\n"
          "  Each run first faults in and frees as much memory\n"
          "  as it will use, so that all methods start from memory the guest "
          "holds (see bench/grow.c).\n",
          cli_format_size(total, s1, sizeof s1), reps,
          cli_format_size(total / 10, s2, sizeof s2));
  fprintf(b->out, "%-7s %-11s %18s %10s %7s %12s %12s\n", "step", "method", "time",
          "vs floor", "moves", "peak RSS", "RSS after");
  for (int si = 0; si < 3; si++) {
    double floor_s = rows[si][M_FLOOR].seconds;
    for (int m = 0; m < NMETHODS; m++) {
      struct bench_row *r = bench_find(b, "grow", rows[si][m].case_, method_names[m], total);
      char cell[48];
      if (m == M_REALLOC)
        snprintf(cell, sizeof cell, "%s", bench_fmt_time(r->seconds, t, sizeof t));
      else
        snprintf(cell, sizeof cell, "%s [%5.2fx]", bench_fmt_time(r->seconds, t, sizeof t),
                 r->ratio);
      fprintf(b->out, "%-7s %-11s %18s %9.2fx %7llu %12s %12s\n",
              m == 0 ? cli_format_size(steps[si], s1, sizeof s1) : "", method_names[m],
              cell, r->seconds / floor_s, (unsigned long long)moves[si][m],
              cli_format_size(peaks[si][m], s2, sizeof s2),
              cli_format_size(after[si][m], s3, sizeof s3));
    }
  }
  fprintf(b->out,
          "\ngrow: fragmentation: 1,000 buffers grown in turn by 1 KiB to %s "
          "each, small allocations between steps,\n"
          "  then 90%% of the buffers freed. RSS left behind, against the data "
          "still live:\n",
          cli_format_size(per_buf, s1, sizeof s1));
  for (int u = 0; u < 2; u++)
    fprintf(b->out, "  %-15s RSS left %10s for %10s live (%.2fx)  [%s]\n",
            u ? "regions" : "malloc/realloc",
            cli_format_size(fr[u].rss_after, s1, sizeof s1),
            cli_format_size(fr[u].live, s2, sizeof s2),
            (double)fr[u].rss_after / (double)fr[u].live,
            bench_fmt_time(fr[u].seconds, t, sizeof t));

  /* Verdicts. */
  int region_wins = 1;
  double worst_floor = 0;
  for (int si = 0; si < 3; si++) {
    if (rows[si][M_REGION].seconds > rows[si][M_REALLOC].seconds) region_wins = 0;
    double f = rows[si][M_REGION].seconds / rows[si][M_FLOOR].seconds;
    if (f > worst_floor) worst_floor = f;
  }
  fprintf(b->out, "\n");
  bench_verdict(b, "grow",
                "a region grows %s realloc() at every step size, within %.2fx of "
                "the first-touch floor, and never moves (realloc moved the data "
                "%llu times at 64 B steps).",
                region_wins ? "at least as fast as" : "slower than", worst_floor,
                (unsigned long long)moves[0][M_REALLOC]);
  bench_verdict(b, "grow",
                "after freeing 90%% of fragmented buffers, regions leave %s "
                "resident, malloc/realloc %s (%.1fx).",
                cli_format_size(fr[1].rss_after, s1, sizeof s1),
                cli_format_size(fr[0].rss_after, s2, sizeof s2),
                fr[1].rss_after ? (double)fr[0].rss_after / (double)fr[1].rss_after : 0);
  return 0;
}
