/*
 * files.c - `memmap bench files`: when does mapping a file beat reading it?
 *
 * For cached files from 512 B to 256 MiB:
 *   seq-scan   open the file, get every byte into memory the program can
 *              scan, scan it (sum of 64-bit words), release it. Methods:
 *              read (baseline: fstat for the size, read() in 1 MiB chunks
 *              into a buffer allocated once, scan each chunk), mmap (plain
 *              mmap, faults on first touch), mmap+populate (MAP_POPULATE),
 *              view (mm_view_open with MM_ACCESS_SEQUENTIAL: the library's
 *              automatic choice), and memory (the same scan over an
 *              anonymous buffer already in RAM: the ceiling).
 *   random-4k  4 KiB reads at random 4 KiB-aligned offsets of a file that
 *              is open, with the pages warm: pread into a buffer (baseline)
 *              and a scan through a view's pointer (view), the guarded copy
 *              mm_view_read (view-read), and, for the cost of first touch,
 *              the same reads on a fresh mapping each repetition
 *              (mmap-cold, which includes mmap, the faults and munmap).
 * Files are written and read once before timing, so every case runs on the
 * page cache: this measures the CPU cost of each method, not the disk.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

#define CHUNK (1u << 20)

struct files_arg {
  const char *path;
  uint64_t size;
  unsigned char *buf;   /* CHUNK bytes, for read() and pread() */
  unsigned char *anon;  /* prefaulted anonymous memory, for the ceiling */
  uint64_t *offs;       /* random offsets */
  size_t noffs;
  const unsigned char *map; /* an open mapping, for random reads */
  mm_view_t *view;
  int fd;
  int fail;             /* set when an operation failed */
};

/* The like-for-like alternative to a view: the whole file in a buffer of
 * its own, addressable at once (malloc + read). */
static void seq_read(void *p) {
  struct files_arg *a = p;
  int fd = open(a->path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    a->fail = errno;
    if (fd >= 0) close(fd);
    return;
  }
  size_t size = (size_t)st.st_size, got = 0;
  unsigned char *buf = malloc(size ? size : 1);
  if (!buf) {
    a->fail = ENOMEM;
    close(fd);
    return;
  }
  while (got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  bench_sum(buf, got);
  free(buf);
}

/* A pure one-pass scan needs no view at all: read 1 MiB chunks into one
 * buffer that stays in cache. The floor for read(), shown for reference. */
static void seq_stream(void *p) {
  struct files_arg *a = p;
  int fd = open(a->path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    a->fail = errno;
    if (fd >= 0) close(fd);
    return;
  }
  uint64_t left = (uint64_t)st.st_size;
  while (left > 0) {
    ssize_t n = read(fd, a->buf, left < CHUNK ? (size_t)left : CHUNK);
    if (n <= 0) break;
    bench_sum(a->buf, (size_t)n);
    left -= (uint64_t)n;
  }
  close(fd);
}

static void seq_mmap_flags(struct files_arg *a, int flags) {
  int fd = open(a->path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    a->fail = errno;
    if (fd >= 0) close(fd);
    return;
  }
  size_t len = (size_t)st.st_size;
  void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | flags, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    a->fail = errno;
    return;
  }
  bench_sum(m, len);
  munmap(m, len);
}

static void seq_mmap(void *p) { seq_mmap_flags(p, 0); }
static void seq_mmap_populate(void *p) { seq_mmap_flags(p, MAP_POPULATE); }

static void seq_view(void *p) {
  struct files_arg *a = p;
  mm_view_opts_t o = {.access = MM_ACCESS_SEQUENTIAL};
  mm_view_t *v;
  int rc = mm_view_open(&v, a->path, &o);
  if (rc < 0) {
    a->fail = -rc;
    return;
  }
  bench_sum(mm_view_data(v), (size_t)mm_view_size(v));
  (void)mm_view_close(v);
}

static void seq_memory(void *p) {
  struct files_arg *a = p;
  bench_sum(a->anon, (size_t)a->size);
}

static void rnd_pread(void *p) {
  struct files_arg *a = p;
  for (size_t i = 0; i < a->noffs; i++) {
    if (pread(a->fd, a->buf, 4096, (off_t)a->offs[i]) != 4096) a->fail = EIO;
    bench_sum(a->buf, 4096);
  }
}

static void rnd_view(void *p) {
  struct files_arg *a = p;
  const unsigned char *d = mm_view_data(a->view);
  for (size_t i = 0; i < a->noffs; i++) bench_sum(d + a->offs[i], 4096);
}

static void rnd_view_read(void *p) {
  struct files_arg *a = p;
  for (size_t i = 0; i < a->noffs; i++) {
    if (mm_view_read(a->view, a->offs[i], a->buf, 4096) < 0) a->fail = EIO;
    bench_sum(a->buf, 4096);
  }
}

static void rnd_mmap_cold(void *p) {
  struct files_arg *a = p;
  void *m = mmap(NULL, (size_t)a->size, PROT_READ, MAP_PRIVATE, a->fd, 0);
  if (m == MAP_FAILED) {
    a->fail = errno;
    return;
  }
  madvise(m, (size_t)a->size, MADV_RANDOM);
  for (size_t i = 0; i < a->noffs; i++)
    bench_sum((unsigned char *)m + a->offs[i], 4096);
  munmap(m, (size_t)a->size);
}

/* Create the file and get it into the page cache in one of two ways:
 *   readback  write it, drop it from the cache, read it back: cached the
 *             way a file read from disk is, by read-ahead, which builds
 *             large folios once it ramps up (the start of the file stays in
 *             small ones);
 *   huge      write it in 2 MiB-aligned 2 MiB writes and keep it: cached in
 *             2 MiB folios throughout, which a 2 MiB-aligned mapping maps
 *             with one PMD each.
 * Which of the two a real file is in decides how much a mapping costs on a
 * machine where touching a new page-table entry is expensive. */
static int make_file(const char *path, uint64_t size, int huge) {
  const size_t wchunk = (size_t)2 << 20;
  unsigned char *chunk = aligned_alloc(4096, wchunk);
  if (!chunk) return -ENOMEM;
  for (size_t i = 0; i < wchunk; i++) chunk[i] = (unsigned char)(i * 7 + 1);
  int rc = 0;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    free(chunk);
    return -errno;
  }
  for (uint64_t at = 0; at < size && rc == 0;) {
    size_t n = size - at < wchunk ? (size_t)(size - at) : wchunk;
    ssize_t w = pwrite(fd, chunk, n, (off_t)at);
    if (w <= 0) rc = w < 0 ? -errno : -EIO;
    at += (uint64_t)(w > 0 ? w : 0);
  }
  if (rc == 0 && !huge) {
    if (fsync(fd) < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) < 0)
      rc = -errno;
    for (ssize_t n = 1; rc == 0 && n > 0;) {
      n = read(fd, chunk, wchunk);
      if (n < 0) rc = -errno;
    }
  }
  if (close(fd) < 0 && rc == 0) rc = -errno;
  free(chunk);
  return rc;
}

static void add(struct bench *b, const char *case_, const char *method,
                const char *baseline, uint64_t bytes, struct bench_row *timed,
                const char *note) {
  struct bench_row r = *timed;
  snprintf(r.suite, sizeof r.suite, "files");
  snprintf(r.case_, sizeof r.case_, "%s", case_);
  snprintf(r.method, sizeof r.method, "%s", method);
  snprintf(r.baseline, sizeof r.baseline, "%s", baseline ? baseline : "");
  snprintf(r.note, sizeof r.note, "%s", note ? note : "");
  r.bytes = bytes;
  bench_add(b, &r);
}

static const char *const seq_methods[] = {"read", "read-stream", "mmap",
                                          "mmap+populate", "view", "memory"};
static const bench_fn seq_fns[] = {seq_read, seq_stream, seq_mmap,
                                   seq_mmap_populate, seq_view, seq_memory};
#define NSEQ 6
static const char *const rnd_methods[] = {"pread", "view", "view-read",
                                          "mmap-cold"};
static const bench_fn rnd_fns[] = {rnd_pread, rnd_view, rnd_view_read,
                                   rnd_mmap_cold};
#define NRND 4

static void print_case(struct bench *b, const char *case_, const char *title,
                       const char *const *methods, const char *const *heads,
                       int nm, const uint64_t *sizes, int nsizes) {
  char t[32], s[32];
  fprintf(b->out, "\n%s\n", title);
  int seq = !strncmp(case_, "seq", 3);
  fprintf(b->out, "%-9s %10s", "size", heads[0]);
  for (int m = 1; m < nm; m++) fprintf(b->out, " %19s", heads[m]);
  fprintf(b->out, seq ? "  view/ceiling\n" : "\n");
  for (int i = 0; i < nsizes; i++) {
    if (!bench_find(b, "files", case_, methods[0], sizes[i])) continue;
    fprintf(b->out, "%-9s", cli_format_size(sizes[i], s, sizeof s));
    for (int m = 0; m < nm; m++) {
      struct bench_row *r = bench_find(b, "files", case_, methods[m], sizes[i]);
      if (!r) {
        fprintf(b->out, m ? " %19s" : " %10s", "-");
      } else if (m == 0) {
        fprintf(b->out, " %10s", bench_fmt_time(r->seconds, t, sizeof t));
      } else {
        char cell[48];
        snprintf(cell, sizeof cell, "%s %5.2fx%s",
                 bench_fmt_time(r->seconds, t, sizeof t), r->ratio,
                 !strcmp(methods[m], "view") && !strcmp(case_, "seq-scan") ?
                 (strcmp(r->note, "mmap") ? "r" : "m") : " ");
        fprintf(b->out, " %19s", cell);
      }
    }
    struct bench_row *vw = bench_find(b, "files", case_, "view", sizes[i]);
    struct bench_row *mem = bench_find(b, "files", case_, "memory", sizes[i]);
    if (seq && vw && mem && vw->seconds > 0)
      fprintf(b->out, "  %11.2fx", mem->seconds / vw->seconds);
    fprintf(b->out, "\n");
  }
}

/* The smallest size from which every larger size measured is faster
 * mapped (the better of mmap and mmap+populate) than read; 0 if none. */
static uint64_t crossover(struct bench *b, const char *case_,
                          const uint64_t *sizes, int nsizes) {
  uint64_t cross = 0;
  for (int i = nsizes - 1; i >= 0; i--) {
    struct bench_row *rd = bench_find(b, "files", case_, "read", sizes[i]);
    struct bench_row *mp = bench_find(b, "files", case_, "mmap", sizes[i]);
    struct bench_row *pp = bench_find(b, "files", case_, "mmap+populate", sizes[i]);
    if (!rd || !mp || !pp) continue;
    double best_map = mp->seconds < pp->seconds ? mp->seconds : pp->seconds;
    if (best_map >= rd->seconds) break;
    cross = sizes[i];
  }
  return cross;
}

static void print_tables(struct bench *b, const uint64_t *sizes, int nsizes) {
  static const char *const seq_heads[] = {
      "read()", "read() 1MiB chunks", "mmap", "mmap+populate", "view (auto)",
      "memory (ceiling)"};
  static const char *const rnd_heads[] = {"pread()", "view (pointer)",
                                          "view (mm_view_read)", "mmap (cold)"};
  fprintf(b->out,
          "\nfiles: whole-file scan of a cached file (open, every byte, close); "
          "median per file.\n"
          "  Ratios are read() time / this time: >1 is faster than read(), "
          "which here means malloc(size) + read() of the\n"
          "  whole file, the like-for-like alternative to a view; 'read() 1MiB "
          "chunks' streams through one small buffer.\n");
  print_case(b, "seq-scan",
             "[cached by read-back, like a file read from disk; view backend: "
             "m = mapped, r = read]",
             seq_methods, seq_heads, NSEQ, sizes, nsizes);
  print_case(b, "seq-scan-2m",
             "[cached in 2 MiB folios (written in 2 MiB-aligned writes)]",
             seq_methods, seq_heads, NSEQ, sizes, nsizes);
  fprintf(b->out,
          "\nfiles: random 4 KiB reads at 4 KiB-aligned offsets of a cached "
          "file that is already open; median per read.\n"
          "  Ratios are pread() time / this time. mmap (cold) maps the file "
          "afresh for each batch of reads and unmaps it.\n");
  print_case(b, "random-4k", "", rnd_methods, rnd_heads, NRND, sizes, nsizes);

  char s[32], s2[32], text[384];
  fprintf(b->out, "\n");
  for (int c = 0; c < 2; c++) {
    const char *case_ = c ? "seq-scan-2m" : "seq-scan";
    if (!bench_find(b, "files", case_, "view", sizes[nsizes - 1])) continue;
    uint64_t cross = crossover(b, case_, sizes, nsizes);
    int n = cross ? snprintf(text, sizeof text,
                             "mmap beats reading the whole file from %s up on this "
                             "machine (%s); below that, read().",
                             cli_format_size(cross, s, sizeof s),
                             c ? "cache in 2 MiB folios" : "cache filled by read-ahead")
                  : snprintf(text, sizeof text,
                             "read() beats mapping at every size measured (%s).",
                             c ? "cache in 2 MiB folios" : "cache filled by read-ahead");
    double worst = 0;
    uint64_t worst_size = 0;
    for (int i = 0; i < nsizes; i++) {
      struct bench_row *vw = bench_find(b, "files", case_, "view", sizes[i]);
      if (!vw) continue;
      double best = 0;
      for (int m = 0; m < 4; m++) {
        if (m == 1) continue; /* streaming is not a whole-file method */
        struct bench_row *r = bench_find(b, "files", case_, seq_methods[m], sizes[i]);
        if (r && (best == 0 || r->seconds < best)) best = r->seconds;
      }
      if (best > 0 && vw->seconds / best > worst)
        worst = vw->seconds / best, worst_size = sizes[i];
    }
    if (worst > 0 && n > 0 && (size_t)n < sizeof text)
      snprintf(text + n, sizeof text - (size_t)n,
               " The view's automatic choice takes at worst %.2fx the time of the "
               "faster of the two (at %s).",
               worst, cli_format_size(worst_size, s2, sizeof s2));
    bench_verdict(b, "files", "%s", text);
  }
  double lo = 0, hi = 0;
  for (int i = 0; i < nsizes; i++) {
    struct bench_row *r = bench_find(b, "files", "random-4k", "view", sizes[i]);
    if (!r) continue;
    if (lo == 0 || r->ratio < lo) lo = r->ratio;
    if (r->ratio > hi) hi = r->ratio;
  }
  if (hi > 0)
    bench_verdict(b, "files",
                  "random 4 KiB reads through an open view's pointer run %.1fx to "
                  "%.1fx the speed of pread().",
                  lo, hi);
}

int bench_files(struct bench *b) {
  static const uint64_t sizes[] = {
      512,        4096,        16384,        65536,        262144,
      1u << 20,   4u << 20,    16u << 20,    64u << 20,    256u << 20};
  int nsizes = (int)(sizeof sizes / sizeof sizes[0]);
  while (b->max_size && nsizes > 1 && sizes[nsizes - 1] > b->max_size) nsizes--;
  const uint64_t rnd_min = 1u << 20, huge_min = 4u << 20;
  uint64_t max = sizes[nsizes - 1];
  struct files_arg a;
  memset(&a, 0, sizeof a);
  char path[4096];
  snprintf(path, sizeof path, "%s/memmap-bench-files.%ld", b->dir,
           (long)getpid());
  a.path = path;
  a.buf = malloc(CHUNK);
  a.anon = mmap(NULL, (size_t)max, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  a.noffs = b->quick ? 4096 : 16384;
  a.offs = malloc(a.noffs * sizeof *a.offs);
  int rc = 0, reps = b->quick ? 5 : 11;
  double target = b->quick ? 0.01 : 0.05;
  if (!a.buf || a.anon == MAP_FAILED || !a.offs) {
    rc = -ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < (size_t)max; i += 64) a.anon[i] = (unsigned char)i;
  memset(a.buf, 1, CHUNK);

  for (int si = 0; si < nsizes && rc == 0; si++) {
    uint64_t size = sizes[si];
    char s[32];
    cli_format_size(size, s, sizeof s);
    a.size = size;
    void *args[NSEQ];
    struct bench_row rows[NSEQ];
    for (int m = 0; m < NSEQ; m++) args[m] = &a;

    for (int huge = 0; huge <= 1 && rc == 0; huge++) {
      if (huge && size < huge_min) continue;
      const char *case_ = huge ? "seq-scan-2m" : "seq-scan";
      bench_progress(b, "files: %s: %s", s, case_);
      if ((rc = make_file(path, size, huge)) < 0) break;
      memset(rows, 0, sizeof rows);
      /* The ceiling is timed on its own: interleaved with methods that
       * allocate and free hundreds of MiB, its buffer gets migrated by
       * compaction and measures the kernel instead of memory. */
      bench_time_set(seq_fns, args, NSEQ - 1, reps, target, rows);
      bench_time_set(seq_fns + NSEQ - 1, args, 1, reps, target,
                     rows + NSEQ - 1);
      const char *note = NULL;
      mm_view_t *v;
      mm_view_opts_t o = {.access = MM_ACCESS_SEQUENTIAL};
      if (mm_view_open(&v, path, &o) == 0) {
        note = mm_backend_name(mm_view_backend(v));
        (void)mm_view_close(v);
      }
      for (int m = 0; m < NSEQ; m++)
        add(b, case_, seq_methods[m], m ? "read" : NULL, size, &rows[m],
            m == 4 ? note : NULL);
    }
    if (rc < 0 || size < rnd_min) continue;

    /* Random reads, on the read-back file. */
    bench_progress(b, "files: %s: random 4 KiB reads", s);
    if ((rc = make_file(path, size, 0)) < 0) break;
    uint64_t x = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < a.noffs; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      a.offs[i] = (x % (size / 4096)) * 4096;
    }
    a.fd = open(path, O_RDONLY | O_CLOEXEC);
    mm_view_opts_t o = {.access = MM_ACCESS_RANDOM, .flags = MM_VIEW_POPULATE};
    rc = a.fd < 0 ? -errno : mm_view_open(&a.view, path, &o);
    if (rc < 0) break;
    memset(rows, 0, sizeof rows);
    bench_time_set(rnd_fns, args, NRND, reps, target, rows);
    for (int m = 0; m < NRND; m++) {
      rows[m].ops *= a.noffs; /* per read, not per batch */
      rows[m].seconds /= (double)a.noffs;
      rows[m].min /= (double)a.noffs;
      rows[m].max /= (double)a.noffs;
      add(b, "random-4k", rnd_methods[m], m ? "pread" : NULL, size, &rows[m],
          NULL);
    }
    (void)mm_view_close(a.view);
    a.view = NULL;
    close(a.fd);
    if (a.fail) rc = -a.fail;
  }
  bench_progress_done(b);
  unlink(path);
  if (rc == 0) print_tables(b, sizes, nsizes);
out:
  free(a.buf);
  free(a.offs);
  if (a.anon && a.anon != MAP_FAILED) munmap(a.anon, (size_t)max);
  return rc;
}
