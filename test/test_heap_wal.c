/*
 * test_heap_wal.c - the heap's write-ahead path, mm_heap_tx_write, tested
 * against heap.h alone (CRASH SAFETY, mm_heap_tx_write, mm_heap_sync,
 * mm_heap_close):
 *
 *   semantics   in a durable transaction the bytes are deferred to commit
 *               (the range reads old until then), applied in the order
 *               made, after the in-place changes; abort drops them; src is
 *               copied at the call (even from inside the heap, overlapping);
 *               len 0; the errors; in a process-crash transaction the bytes
 *               are in the heap when the call returns. Writing an object
 *               and freeing it in one transaction leaves the allocator whole.
 *   sync counts (msync hook) a write-only durable commit is ONE msync, of
 *               the log only, made before the data changes; tx_add costs
 *               one more; allocating commits and commits after an
 *               allocation outside a transaction are two; mm_heap_sync
 *               after records is two (data, then log) and empties the log.
 *   crashes     same boot: a dead process's old records are not written
 *               again over later commits or later raw writes; a commit
 *               killed after its record's sync is redone; an allocating one
 *               killed at any of its msyncs is all or nothing.
 *   reboots     (mm__sys_boot_id_set) a disk image built from the msyncs
 *               alone (the "disk model": only what msync covered reached
 *               the disk), or the page cache at a commit's msync, recovers
 *               every durable commit; after a checkpoint nothing old is
 *               written again; random mixes of disk-model and page-cache
 *               pages (torn at 512-byte sectors), taken between calls and
 *               inside msyncs, recover every durable commit that returned
 *               and a commit in flight all or nothing; after a recovery on
 *               a new boot, a crash on that boot is a process crash.
 *   failures    a commit whose msync fails rolls back and stays gone.
 *   log         2000 durable commits through a 64 KiB log never fill it
 *               (checkpoints), a write larger than the log is MM_EFULL.
 *   close       checkpoints when the log holds records (2 msyncs), and
 *               syncs nothing otherwise; a failed checkpoint is returned.
 *
 * Every heap here: 64 KiB chunks, 64 KiB log, 256 MiB maximum.
 *
 * MM_WAL_COMMITS=N: commits in the log test (default 2000).
 * MM_WAL_SEED=S replays the random power-loss test (the seed is printed);
 * MM_WAL_IMAGES=N: images it checks (default 60); MM_WAL_VERBOSE=1 traces
 * it; MM_WAL_KEEP=FILE keeps its last image; MM_WAL_SEPARATE=1 keeps a
 * transaction's in-place ranges and writes apart (a diagnosis).
 */
#include "test.h"
#include "heap_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

#define CHUNK 65536u
#define LOG 65536u
#define MAXSZ ((uint64_t)256 << 20)
#define FAKE_BOOT 0x0DDB0075EEDull /* "another boot" for simulated reboots */

static const mm_heap_tx_opts_t DUR = {.flags = MM_HEAP_TX_DURABLE};
static const mm_heap_tx_opts_t NOSYNC = {.flags = MM_HEAP_TX_NOSYNC};

/* ---- helpers ------------------------------------------------------------- */

static uint64_t xs(uint64_t *x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  return *x;
}

/* Every byte of [p, p+n) is v. */
#define ASSERT_ALL(p, n, v)                                                  \
  do {                                                                       \
    const unsigned char *pa_ = (const void *)(p);                            \
    for (size_t i_ = 0; i_ < (size_t)(n); i_++)                              \
      if (pa_[i_] != (unsigned char)(v))                                     \
        FAIL("%s: byte %zu of %zu is %#x, want %#x", #p, i_, (size_t)(n),    \
             pa_[i_], (unsigned)(unsigned char)(v));                         \
  } while (0)

/* mm_heap_check finds nothing, and mm_heap_info adds up. */
#define ASSERT_CLEAN(h)                                                      \
  do {                                                                       \
    ASSERT_CHECK_CLEAN(h);                                                   \
    (void)info_of(h);                                                        \
  } while (0)

static mm_heap_t *create(const char *path, unsigned flags) {
  mm_heap_opts_t o = {.flags = MM_HEAP_CREATE | MM_HEAP_EXCL | flags,
                      .chunk_size = CHUNK,
                      .max_size = MAXSZ,
                      .log_size = LOG,
                      .lock_timeout_ms = 10000};
  mm_heap_t *h = NULL;
  ASSERT_OK(mm_heap_open(&h, path, &o));
  ASSERT(h != NULL);
  return h;
}

static mm_heap_t *reopen(const char *path) {
  mm_heap_opts_t o = {.lock_timeout_ms = 10000};
  mm_heap_t *h = NULL;
  ASSERT_OK(mm_heap_open(&h, path, &o));
  return h;
}

static unsigned char *P(mm_heap_t *h, uint64_t off) { return mm_heap_ptr(h, off); }

static uint64_t alloc_set(mm_heap_t *h, uint64_t size, int v) {
  uint64_t off = 0;
  ASSERT_OK(mm_heap_alloc(h, size, &off));
  ASSERT(off != 0);
  memset(P(h, off), v, (size_t)size);
  return off;
}

/* tx_write of n bytes of value v. */
static int wr(mm_heap_t *h, uint64_t off, int v, size_t n) {
  static unsigned char buf[1 << 18];
  ASSERT(n <= sizeof buf);
  memset(buf, v, n);
  return mm_heap_tx_write(h, off, buf, n);
}

/* One durable transaction that only writes n bytes of v at off. */
static void dur_write(mm_heap_t *h, uint64_t off, int v, size_t n) {
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, off, v, n));
  ASSERT_OK(mm_heap_tx_commit(h));
}

/* One durable write-only commit that changes nothing (8 bytes written over
 * themselves). Tests that count syncs or need records to stay in the log
 * make one first, so that a first commit that costs more (see
 * heap_wal_first_write_only_commit_is_one_sync) does not hide what they
 * check. */
static void warm_up(mm_heap_t *h, uint64_t off) {
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_write(h, off, P(h, off), 8));
  ASSERT_OK(mm_heap_tx_commit(h));
}

/* The log's place in the file, from the header (doc/heap-format.md: log_off
 * at 104, log_size at 112, data_off at 120). */
static void log_area(mm_heap_t *h, uint64_t *lo, uint64_t *hi) {
  const unsigned char *b = mm_heap_base(h);
  uint64_t log_off, log_size, data_off;
  memcpy(&log_off, b + 104, 8);
  memcpy(&log_size, b + 112, 8);
  memcpy(&data_off, b + 120, 8);
  ASSERT_EQ(log_size, LOG);
  ASSERT_EQ(log_off + log_size, data_off);
  ASSERT(log_off >= 8192);
  *lo = log_off, *hi = data_off;
}

static uint64_t file_len(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) FAIL("fstat: %s", strerror(errno));
  return (uint64_t)st.st_size;
}

/* The whole file as the page cache has it now (malloc'd). */
static unsigned char *slurp(int fd, uint64_t *len) {
  uint64_t n = file_len(fd);
  unsigned char *b = malloc(n ? (size_t)n : 1);
  if (!b) FAIL("malloc %" PRIu64, n);
  for (uint64_t at = 0; at < n;) {
    ssize_t r = pread(fd, b + at, (size_t)(n - at), (off_t)at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) FAIL("pread: %s", r < 0 ? strerror(errno) : "short file");
    at += (uint64_t)r;
  }
  *len = n;
  return b;
}

static void put_file(const char *path, const unsigned char *b, uint64_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  for (uint64_t at = 0; at < n;) {
    ssize_t r = write(fd, b + at, (size_t)(n - at));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) FAIL("write %s: %s", path, strerror(errno));
    at += (uint64_t)r;
  }
  if (close(fd) != 0) FAIL("close %s: %s", path, strerror(errno));
}

/* A copy of the file `path` as the page cache has it, written to `img`. */
static void copy_file(const char *path, const char *img) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  uint64_t n;
  unsigned char *b = slurp(fd, &n);
  close(fd);
  put_file(img, b, n);
  free(b);
}

/* ---- the msync hook: a record of every msync, a disk model ---------------- */

#define MSMAX 16384
struct msrec {
  uintptr_t addr;
  size_t len;
  int flags, result;
};
static struct msrec msr[MSMAX];
static int msn; /* real msyncs seen by the hook so far */

/* The disk model: D is the durable image of the file. It starts as the
 * file right after a mm_heap_sync (everything on disk); after that only
 * what a successful MS_SYNC msync covers (or an fsync: all) reaches it.
 * The kernel writing nothing back on its own is one legal behaviour, so a
 * power loss at any moment may leave exactly D on disk. */
struct disk {
  int fd;
  unsigned char *base;
  unsigned char *D;
  uint64_t len, cap;
};
static struct disk *disk_on;

/* Watch a byte: its value at the time of each msync (write-ahead order). */
static const unsigned char *watch;
static int watch_seen = -1;

/* While armed: capture the page cache's whole file at every successful
 * msync (the last one wins: disarm after the commit returns). */
static int capture_armed, capture_fd = -1;
static unsigned char *capture_buf;
static uint64_t capture_len;

/* _exit(42) after the `kill_at`th real msync from arming (test 5). */
static int kill_at, kill_seen;

static long pgsz(void) { return sysconf(_SC_PAGESIZE); }

static void disk_grow(struct disk *d, uint64_t n) {
  if (n > d->cap) {
    uint64_t c = d->cap ? d->cap : 65536;
    while (c < n) c *= 2;
    unsigned char *nd = realloc(d->D, (size_t)c);
    if (!nd) FAIL("realloc %" PRIu64, c);
    memset(nd + d->cap, 0, (size_t)(c - d->cap));
    d->D = nd, d->cap = c;
  }
  if (n > d->len) d->len = n;
}

static void disk_apply(struct disk *d, void *addr, size_t len, int flags, int result) {
  unsigned char *a = addr;
  if (result != 0 || !(flags & MS_SYNC)) return;
  if (a < d->base || a >= d->base + MAXSZ) return; /* another mapping */
  uint64_t pg = (uint64_t)pgsz(), flen = file_len(d->fd);
  uint64_t off = (uint64_t)(a - d->base);
  uint64_t end = off + len;
  off -= off % pg;
  end = (end + pg - 1) / pg * pg;
  if (end > flen) end = flen;
  disk_grow(d, flen); /* msync is fdatasync for its range: the length too */
  if (off < end) memcpy(d->D + off, d->base + off, (size_t)(end - off));
}

static void ms_hook(void *arg, void *addr, size_t len, int flags, int result) {
  (void)arg;
  if (msn < MSMAX) msr[msn] = (struct msrec){(uintptr_t)addr, len, flags, result};
  msn++;
  if (disk_on) disk_apply(disk_on, addr, len, flags, result);
  if (watch) watch_seen = *watch;
  if (capture_armed && result == 0) {
    capture_armed++;
    free(capture_buf);
    capture_buf = slurp(capture_fd, &capture_len);
  }
  if (kill_at && result == 0 && ++kill_seen == kill_at) _exit(42);
}

/* An fsync makes the whole file durable in the model. */
static void trace_hook(void *arg, int op, long result) {
  (void)arg;
  if (op == MM_SYS_FSYNC && result == 0 && disk_on) {
    uint64_t n;
    unsigned char *b = slurp(disk_on->fd, &n);
    disk_grow(disk_on, n);
    memcpy(disk_on->D, b, (size_t)n);
    free(b);
  }
}

static void hooks_on(void) {
  mm__sys_msync_hook(ms_hook, NULL);
  mm__sys_trace(trace_hook, NULL);
}

static void hooks_off(void) {
  mm__sys_msync_hook(NULL, NULL);
  mm__sys_trace(NULL, NULL);
  disk_on = NULL;
  watch = NULL;
  capture_armed = 0;
  kill_at = 0;
}

/* Start the disk model on heap h (file `path`): sync, then D = the file. */
static void disk_start(struct disk *d, mm_heap_t *h, const char *path) {
  memset(d, 0, sizeof *d);
  ASSERT_OK(mm_heap_sync(h));
  d->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (d->fd < 0) FAIL("open %s: %s", path, strerror(errno));
  d->base = mm_heap_base(h);
  uint64_t n;
  unsigned char *b = slurp(d->fd, &n);
  disk_grow(d, n);
  memcpy(d->D, b, (size_t)n);
  free(b);
  hooks_on();
  disk_on = d;
}

/* Does msync record r cover the page holding p? */
static int covers(const struct msrec *r, const void *p) {
  uintptr_t pg = (uintptr_t)pgsz();
  uintptr_t a = r->addr - r->addr % pg, e = r->addr + r->len;
  e = (e + pg - 1) / pg * pg;
  return (uintptr_t)p >= a && (uintptr_t)p < e;
}

static void print_ms(int from, int to, const unsigned char *base) {
  for (int i = from; i < to && i < MSMAX; i++)
    fprintf(stderr, "#   msync %d: offset %" PRIu64 " len %zu flags %#x result %d\n", i,
            (uint64_t)(msr[i].addr - (uintptr_t)base), msr[i].len, msr[i].flags,
            msr[i].result);
}

/* ---- expectations, checked on an image in another process ---------------- */

struct want {
  const char *what;
  uint64_t off, len;
  int v1, v2;               /* all bytes v1, or (v2 >= 0) all bytes v2 */
  const unsigned char *buf; /* or exactly these bytes */
  const unsigned char *buf2; /* ... or exactly these */
};
#define WMAX 24
struct wants {
  int n;
  struct want w[WMAX];
  int check_root;   /* the root must be `root` */
  uint64_t root;
  const char *name; /* the name must be bound to name_off */
  uint64_t name_off;
};

static void want(struct wants *ws, const char *what, uint64_t off, uint64_t len, int v1,
                 int v2) {
  ASSERT(ws->n < WMAX);
  ws->w[ws->n++] = (struct want){what, off, len, v1, v2, NULL, NULL};
}

static void want_buf(struct wants *ws, const char *what, uint64_t off, uint64_t len,
                     const unsigned char *buf) {
  ASSERT(ws->n < WMAX);
  ws->w[ws->n++] = (struct want){what, off, len, -1, -1, buf, NULL};
}

/* Exactly buf, or exactly buf2 (a transaction in flight: all or nothing). */
static void want_either(struct wants *ws, const char *what, uint64_t off, uint64_t len,
                        const unsigned char *buf, const unsigned char *buf2) {
  ASSERT(ws->n < WMAX);
  ws->w[ws->n++] = (struct want){what, off, len, -1, -1, buf, buf2};
}

/* Print up to 8 ranges where p differs from want. */
static void diff_ranges(const unsigned char *p, const unsigned char *w, size_t n,
                        const char *name) {
  int k = 0;
  for (size_t i = 0; i < n && k < 8;) {
    if (p[i] == w[i]) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < n && p[j] != w[j]) j++;
    fprintf(stderr, "#   differs from %s at [%zu, %zu): first %#x, want %#x\n", name, i, j,
            p[i], w[i]);
    k++;
    i = j;
  }
}

static void wants_check(mm_heap_t *h, const struct wants *ws, const char *ctx) {
  if (ws->check_root && mm_heap_root(h) != ws->root)
    FAIL("%s: root %" PRIu64 ", want %" PRIu64, ctx, mm_heap_root(h), ws->root);
  if (ws->name) {
    uint64_t o = 0;
    int rc = mm_heap_name_get(h, ws->name, &o);
    if (rc || o != ws->name_off)
      FAIL("%s: name \"%s\": %s, %" PRIu64 ", want %" PRIu64, ctx, ws->name, mm_errname(rc),
           o, ws->name_off);
  }
  for (int k = 0; k < ws->n; k++) {
    const struct want *w = &ws->w[k];
    const unsigned char *p = P(h, w->off);
    if (w->buf) {
      size_t at = mm_test_first_diff(p, w->buf, (size_t)w->len);
      if (at != (size_t)-1 && w->buf2) {
        size_t at2 = mm_test_first_diff(p, w->buf2, (size_t)w->len);
        if (at2 == (size_t)-1) continue;
        diff_ranges(p, w->buf, (size_t)w->len, "before");
        diff_ranges(p, w->buf2, (size_t)w->len, "after");
        FAIL("%s: %s: neither the state before the transaction in flight (differs at byte "
             "%zu: %#x, want %#x) nor after it (byte %zu: %#x, want %#x)", ctx, w->what, at,
             p[at], w->buf[at], at2, p[at2], w->buf2[at2]);
      }
      if (at != (size_t)-1)
        FAIL("%s: %s: byte %zu of %" PRIu64 " is %#x, want %#x", ctx, w->what, at, w->len,
             p[at], w->buf[at]);
      continue;
    }
    size_t bad1 = (size_t)-1, bad2 = (size_t)-1;
    for (size_t i = 0; i < w->len; i++)
      if (p[i] != (unsigned char)w->v1) {
        bad1 = i;
        break;
      }
    if (bad1 == (size_t)-1) continue;
    if (w->v2 >= 0) {
      for (size_t i = 0; i < w->len; i++)
        if (p[i] != (unsigned char)w->v2) {
          bad2 = i;
          break;
        }
      if (bad2 == (size_t)-1) continue;
      FAIL("%s: %s: byte %zu of %" PRIu64 " is %#x, want all %#x or all %#x", ctx, w->what,
           bad1, w->len, p[bad1], w->v1, w->v2);
    }
    FAIL("%s: %s: byte %zu of %" PRIu64 " is %#x, want %#x", ctx, w->what, bad1, w->len,
         p[bad1], w->v1);
  }
}

/* Open `path` in a child process with boot id `boot` (0: the real one):
 * recovery runs there; the heap must check clean, show `ws`, and take a
 * durable commit afterwards. */
#define CK_LEAVE_OPEN 1 /* exit without the extra commit and without close */
static void check_in_child_ex(const char *path, uint64_t boot, const struct wants *ws,
                              const char *ctx, int flags) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    hooks_off();
    mm__fault_clear();
    if (boot) mm__sys_boot_id_set(boot);
    mm_heap_t *h = NULL;
    mm_heap_opts_t o = {.lock_timeout_ms = 5000};
    int rc = mm_heap_open(&h, path, &o);
    if (rc) FAIL("%s: mm_heap_open: %s", ctx, mm_errname(rc));
    ASSERT_CLEAN(h);
    wants_check(h, ws, ctx);
    if (flags & CK_LEAVE_OPEN) {
      fflush(NULL);
      _exit(0);
    }
    if (ws->n) { /* a durable commit on the recovered heap (same bytes) */
      uint64_t off = ws->w[0].off, n = ws->w[0].len < 8 ? ws->w[0].len : 8;
      ASSERT_OK(mm_heap_tx_begin(h, &DUR));
      ASSERT_OK(mm_heap_tx_write(h, off, P(h, off), n));
      ASSERT_OK(mm_heap_tx_commit(h));
      wants_check(h, ws, ctx);
    }
    ASSERT_CLEAN(h);
    rc = mm_heap_close(h);
    if (rc) FAIL("%s: mm_heap_close: %s", ctx, mm_errname(rc));
    fflush(NULL);
    _exit(0);
  }
  int st = mm_test_wait_child(pid, 20);
  if (st == -1) FAIL("%s: the process opening the image hung (killed after 20 s)", ctx);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    FAIL("%s: the process opening the image failed (status %#x; its message is above)", ctx,
         st);
}

static void check_in_child(const char *path, uint64_t boot, const struct wants *ws,
                           const char *ctx) {
  check_in_child_ex(path, boot, ws, ctx, 0);
}

/* ==== 1. semantics ======================================================= */

/* Catches: a durable tx_write applied in place before commit (not
 * write-ahead); writes applied out of order or not after the in-place
 * changes; src kept by pointer instead of copied at the call; abort that
 * leaves a write pending for a later commit; len 0 refused. */
TEST(heap_wal_durable_write_is_deferred_ordered_and_dropped_on_abort) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  enum { N = 8192 };
  uint64_t d = 0;
  ASSERT_OK(mm_heap_alloc(h, N, &d));
  unsigned char *p = P(h, d);
  static unsigned char shadow[N], old[N], buf[4096];
  for (size_t i = 0; i < N; i++) p[i] = mm_test_byte(i);
  memcpy(shadow, p, N);

  /* (a, b) Deferred until commit; overlapping writes in order. */
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, d + 100, 0x11, 64));
  ASSERT_MEM_EQ(p, shadow, N); /* the range still reads old */
  ASSERT_OK(wr(h, d + 1000, 0x21, 300));
  ASSERT_OK(wr(h, d + 1050, 0x22, 100));
  ASSERT_OK(wr(h, d + 1040, 0x23, 30));
  ASSERT_OK(wr(h, d + 1299, 0x24, 1));
  memset(buf, 0x25, 16);
  ASSERT_OK(mm_heap_tx_write(h, d + 1500, buf, 16));
  memset(buf, 0xEE, sizeof buf); /* the caller's buffer changes after the call */
  ASSERT_MEM_EQ(p, shadow, N);
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  ASSERT_OK(mm_heap_tx_commit(h));
  memset(shadow + 100, 0x11, 64);
  memset(shadow + 1000, 0x21, 300);
  memset(shadow + 1050, 0x22, 100);
  memset(shadow + 1040, 0x23, 30);
  memset(shadow + 1299, 0x24, 1);
  memset(shadow + 1500, 0x25, 16);
  ASSERT_MEM_EQ(p, shadow, N);
  ASSERT_CLEAN(h);

  /* (c) tx_add + in-place, then tx_write of the same bytes: the write
   * wins. Also write first, then declare and change in place: heap.h says
   * writes are applied "after the transaction's in-place changes", so the
   * write wins there too. */
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_add(h, d + 2000, 200));
  memset(p + 2000, 0x31, 200);
  ASSERT_OK(wr(h, d + 2050, 0x32, 50));
  ASSERT_ALL(p + 2000, 200, 0x31); /* in place visible, the write not yet */
  ASSERT_OK(wr(h, d + 2300, 0x33, 40));
  ASSERT_OK(mm_heap_tx_add(h, d + 2280, 100));
  memset(p + 2280, 0x34, 100);
  ASSERT_OK(mm_heap_tx_commit(h));
  memset(shadow + 2000, 0x31, 200);
  memset(shadow + 2050, 0x32, 50);
  memset(shadow + 2280, 0x34, 100);
  memset(shadow + 2300, 0x33, 40);
  ASSERT_MEM_EQ(p, shadow, N);

  /* (d) Abort drops the writes and restores declared ranges; the next
   * commit must not apply them either. */
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, d + 3000, 0x41, 500));
  ASSERT_OK(mm_heap_tx_add(h, d + 3600, 100));
  memset(p + 3600, 0x42, 100);
  ASSERT_OK(wr(h, d + 3650, 0x43, 10));
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_EQ(mm_heap_tx_active(h), 0);
  ASSERT_MEM_EQ(p, shadow, N);
  dur_write(h, d + 7000, 0x44, 8);
  memset(shadow + 7000, 0x44, 8);
  ASSERT_MEM_EQ(p, shadow, N);
  /* A process-crash transaction after the aborted one: nothing of it. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, d + 7100, 0x45, 8));
  ASSERT_OK(mm_heap_tx_commit(h));
  memset(shadow + 7100, 0x45, 8);
  ASSERT_MEM_EQ(p, shadow, N);

  /* (e) src inside the heap, copied at the call, from memory as it reads
   * then: a range with a pending write still reads old; an in-place
   * change is what it is. Overlapping src and destination. */
  memcpy(old, p, N);
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_write(h, d + 4000, p + 0, 256));
  ASSERT_OK(mm_heap_tx_write(h, d + 4100, p + 4000, 256)); /* pending: old bytes */
  ASSERT_OK(mm_heap_tx_write(h, d + 10, p + 0, 200));      /* overlaps its source */
  ASSERT_OK(wr(h, d + 0, 0x00, 8));                       /* after copies of 0.. */
  ASSERT_OK(mm_heap_tx_add(h, d + 6000, 64));
  memset(p + 6000, 0x51, 64);
  ASSERT_OK(mm_heap_tx_write(h, d + 6500, p + 6000, 64)); /* the in-place bytes */
  ASSERT_MEM_EQ(p, old, 6000);
  ASSERT_OK(mm_heap_tx_commit(h));
  memcpy(shadow, old, N);
  memcpy(shadow + 4000, old + 0, 256);
  memcpy(shadow + 4100, old + 4000, 256);
  memcpy(shadow + 10, old + 0, 200);
  memset(shadow + 0, 0, 8);
  memset(shadow + 6000, 0x51, 64);
  memset(shadow + 6500, 0x51, 64);
  ASSERT_MEM_EQ(p, shadow, N);

  /* (f) len 0: fine, with or without src. */
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_write(h, d + 5, buf, 0));
  ASSERT_OK(mm_heap_tx_write(h, d + 5, NULL, 0));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_MEM_EQ(p, shadow, N);

  /* (g) Into an object allocated in the same transaction. */
  uint64_t y = 0;
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_alloc(h, 3000, &y));
  ASSERT_OK(wr(h, y, 0x61, 3000));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_ALL(P(h, y), 3000, 0x61);
  ASSERT_MEM_EQ(p, shadow, N);
  ASSERT_CLEAN(h);

  ASSERT_OK(mm_heap_close(h));
  h = reopen(path);
  ASSERT_MEM_EQ(P(h, d), shadow, N);
  ASSERT_ALL(P(h, y), 3000, 0x61);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

/* Catches: a deferred write applied after the transaction's frees (into a
 * block the allocator now owns: free-list links overwritten, the check
 * fails or a later allocation is corrupt). Writing an object, then freeing
 * it, in one transaction is legal: the free takes effect at commit. */
TEST(heap_wal_write_then_free_in_one_transaction_leaves_the_allocator_intact) {
  mm_heap_t *h = create(mm_test_path("h"), 0);
  const uint64_t sizes[] = {32, 48, 1000, 2048, 5000, 70000};
  for (int round = 0; round < 2; round++) {
    uint64_t o[6];
    for (int k = 0; k < 6; k++) o[k] = alloc_set(h, sizes[k], 0x10 + k);
    ASSERT_OK(mm_heap_tx_begin(h, round ? NULL : &DUR));
    for (int k = 0; k < 6; k++) { /* at most 4 KiB each: the record fits the log */
      ASSERT_OK(wr(h, o[k], 0xFF, (size_t)(sizes[k] < 4096 ? sizes[k] : 4096)));
      ASSERT_OK(mm_heap_free(h, o[k]));
    }
    /* And one allocated, written, freed, all inside. */
    uint64_t t = 0;
    ASSERT_OK(mm_heap_alloc(h, 700, &t));
    ASSERT_OK(wr(h, t, 0xFE, 700));
    ASSERT_OK(mm_heap_free(h, t));
    ASSERT_OK(mm_heap_tx_commit(h));
    fprintf(stderr, "# %s transaction: wrote 6 objects and freed them, allocated, wrote "
            "and freed one more\n", round ? "process-crash" : "durable");
    ASSERT_CLEAN(h);
    for (int k = 0; k < 6; k++) ASSERT_EQ(mm_heap_usable_size(h, o[k]), 0);
    /* The freed space is reusable and allocations come back intact. */
    uint64_t r[12];
    for (int k = 0; k < 12; k++) r[k] = alloc_set(h, sizes[k % 6], 0x40 + k);
    for (int k = 0; k < 12; k++) ASSERT_ALL(P(h, r[k]), sizes[k % 6], 0x40 + k);
    ASSERT_CLEAN(h);
    for (int k = 0; k < 12; k++) ASSERT_OK(mm_heap_free(h, r[k]));
  }
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

struct thr_arg {
  mm_heap_t *h;
  uint64_t off;
  int rc;
};
static void *other_thread_write(void *a) {
  struct thr_arg *t = a;
  unsigned char b[8] = {0};
  t->rc = mm_heap_tx_write(t->h, t->off, b, 8);
  return NULL;
}

/* Catches: a missing bounds check (a write into the header, the shared
 * state or the log itself would corrupt the heap at commit or at once),
 * a wrapping length, src NULL accepted, a write outside a transaction or
 * from a thread without one accepted; a refused call ending the
 * transaction. */
TEST(heap_wal_write_refuses_bad_ranges) {
  mm_heap_t *h = create(mm_test_path("h"), 0);
  uint64_t d = alloc_set(h, 256, 0x5A);
  mm_heap_info_t in = info_of(h);
  uint64_t lo, hi;
  log_area(h, &lo, &hi);
  unsigned char b[64];
  memset(b, 0xC3, sizeof b);
  ASSERT_RC(mm_heap_tx_write(h, d, b, 8), -EINVAL); /* no transaction */
  for (int mode = 0; mode < 2; mode++) {
    const mm_heap_tx_opts_t *o = mode ? NULL : &DUR;
    ASSERT_OK(mm_heap_tx_begin(h, o));
    ASSERT_RC(mm_heap_tx_write(h, 0, b, 8), -EINVAL);            /* header A */
    ASSERT_RC(mm_heap_tx_write(h, 100, b, 8), -EINVAL);          /* header A */
    ASSERT_RC(mm_heap_tx_write(h, 4096, b, 8), -EINVAL);         /* header B */
    ASSERT_RC(mm_heap_tx_write(h, 8192 + 64, b, 8), -EINVAL);    /* shared state */
    ASSERT_RC(mm_heap_tx_write(h, lo, b, 8), -EINVAL);           /* the log */
    ASSERT_RC(mm_heap_tx_write(h, lo + 4096 + 100, b, 64), -EINVAL);
    ASSERT_RC(mm_heap_tx_write(h, hi - 8, b, 8), -EINVAL);       /* the log's end */
    ASSERT_RC(mm_heap_tx_write(h, hi - 8, b, 64), -EINVAL);      /* straddles into data */
    ASSERT_RC(mm_heap_tx_write(h, in.file_size - 8, b, 64), -EINVAL); /* past the end */
    ASSERT_RC(mm_heap_tx_write(h, in.file_size + CHUNK, b, 8), -EINVAL);
    ASSERT_RC(mm_heap_tx_write(h, d, b, UINT64_MAX), -EINVAL);   /* wraps */
    ASSERT_RC(mm_heap_tx_write(h, UINT64_MAX - 4, b, 8), -EINVAL);
    ASSERT_RC(mm_heap_tx_write(h, d, NULL, 8), -EINVAL);         /* src NULL */
    /* Another thread has no transaction. */
    struct thr_arg t = {h, d, 12345};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, other_thread_write, &t), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_RC(t.rc, -EINVAL);
    ASSERT_EQ(mm_heap_tx_active(h), 1); /* refusals do not end the transaction */
    ASSERT_OK(wr(h, d, 0x70 + mode, 16));
    ASSERT_OK(mm_heap_tx_commit(h));
    ASSERT_ALL(P(h, d), 16, 0x70 + mode);
    ASSERT_ALL(P(h, d) + 16, 240, 0x5A);
    ASSERT_CLEAN(h);
  }
  ASSERT_OK(mm_heap_close(h));
  h = reopen(mm_test_path("h"));
  ASSERT_ALL(P(h, d), 16, 0x71);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

/* Catches: a process-crash tx_write deferred (heap.h: "the bytes are in
 * the heap when it returns"), not undone by abort (it must be tx_add +
 * memcpy), or syncing; MM_HEAP_TX_NOSYNC in a durable heap taking the
 * durable path, and the durable heap's default not taking it. */
TEST(heap_wal_process_crash_write_is_immediate_and_abort_restores) {
  for (int durable_heap = 0; durable_heap < 2; durable_heap++) {
    mm_heap_t *h = create(mm_test_path(durable_heap ? "dh" : "h"),
                          durable_heap ? MM_HEAP_DURABLE : 0);
    ASSERT_EQ(info_of(h).durable, (unsigned)durable_heap);
    uint64_t d = 0;
    ASSERT_OK(mm_heap_alloc(h, 4096, &d));
    unsigned char *p = P(h, d);
    static unsigned char orig[4096];
    for (int i = 0; i < 4096; i++) p[i] = mm_test_byte((uint64_t)i + 7);
    memcpy(orig, p, 4096);
    const mm_heap_tx_opts_t *pc = durable_heap ? &NOSYNC : NULL;
    for (int commit = 0; commit < 2; commit++) {
      unsigned long m0 = mm__sys_count(MM_SYS_MSYNC), f0 = mm__sys_count(MM_SYS_FSYNC);
      ASSERT_OK(mm_heap_tx_begin(h, pc));
      ASSERT_OK(wr(h, d + 10, 0x61, 100));
      ASSERT_ALL(p + 10, 100, 0x61); /* in the heap at once */
      ASSERT_OK(mm_heap_tx_write(h, d + 2000, p + 10, 50)); /* src in the heap */
      ASSERT_ALL(p + 2000, 50, 0x61);
      ASSERT_OK(wr(h, d + 40, 0x62, 10)); /* overlaps the first */
      ASSERT_ALL(p + 40, 10, 0x62);
      if (commit) {
        ASSERT_OK(mm_heap_tx_commit(h));
      } else {
        ASSERT_EQ(mm_heap_tx_abort(h), 0);
        ASSERT_MEM_EQ(p, orig, 4096);
      }
      unsigned long ms = mm__sys_count(MM_SYS_MSYNC) - m0, fs = mm__sys_count(MM_SYS_FSYNC) - f0;
      if (ms || fs)
        FAIL("%s heap: a process-crash transaction with tx_write made %lu msync and %lu "
             "fsync calls; heap.h: none", durable_heap ? "durable" : "plain", ms, fs);
    }
    memset(orig + 10, 0x61, 100);
    memset(orig + 2000, 0x61, 50);
    memset(orig + 40, 0x62, 10);
    ASSERT_MEM_EQ(p, orig, 4096);
    /* src overlapping the destination ("src may point into the heap"; a
     * durable write copies it at the call): memmove's result, both ways,
     * and no memcpy of overlapping ranges (ASan: memcpy-param-overlap). */
    ASSERT_OK(mm_heap_tx_begin(h, pc));
    ASSERT_OK(mm_heap_tx_write(h, d + 3010, p + 3000, 300));
    memmove(orig + 3010, orig + 3000, 300);
    ASSERT_OK(mm_heap_tx_write(h, d + 3500, p + 3510, 300));
    memmove(orig + 3500, orig + 3510, 300);
    ASSERT_OK(mm_heap_tx_commit(h));
    ASSERT_MEM_EQ(p, orig, 4096);
    /* The durable heap's default transaction is durable: deferred. */
    if (durable_heap) {
      ASSERT_OK(mm_heap_tx_begin(h, NULL));
      ASSERT_OK(wr(h, d, 0x63, 32));
      ASSERT_MEM_EQ(p, orig, 4096);
      ASSERT_OK(mm_heap_tx_commit(h));
      ASSERT_ALL(p, 32, 0x63);
    }
    ASSERT_CLEAN(h);
    ASSERT_OK(mm_heap_close(h));
  }
}

/* ==== 2. sync counts ====================================================== */

/* Catches: a write-only durable commit syncing more than once, syncing the
 * data page (not write-ahead, or not "the record alone"), applying the data
 * before its record is on disk, an fsync; tx_add not costing exactly one;
 * an allocating commit or one after this thread's allocation not taking
 * the two-sync checkpoint way, or staying on it; mm_heap_sync after records
 * not being a data-then-log checkpoint, or leaving the log non-empty;
 * process-crash transactions syncing while the log holds records. */
TEST(heap_wal_sync_counts) {
  if (mm__sys_boot_id() == 0) SKIP("no boot id here: durable commits take two syncs");
  mm_heap_t *h = create(mm_test_path("h"), 0);
  uint64_t d = 0;
  ASSERT_OK(mm_heap_zalloc(h, 16384, &d));
  unsigned char *p = P(h, d), *base = mm_heap_base(h);
  ASSERT_EQ(d % 4096, 0);
  uint64_t lo, hi;
  log_area(h, &lo, &hi);
  ASSERT_OK(mm_heap_sync(h)); /* this thread owes no data sync; log empty */
  warm_up(h, d + 16384 - 8);
  hooks_on();
  int bad = 0; /* count mismatches with heap.h, each printed; failed at the end */
#define MISMATCH(from, to, ...)                        \
  do {                                                 \
    fprintf(stderr, "# MISMATCH: " __VA_ARGS__);       \
    fputc('\n', stderr);                               \
    print_ms((from), (to), base);                      \
    bad++;                                             \
  } while (0)

  /* (a) write-only durable commits: one msync each, of the log only, while
   * the data still holds its old bytes. */
  for (int i = 0; i < 8; i++) {
    unsigned char *t = p + (i % 4) * 4096;
    unsigned char oldv = t[0];
    int m0 = msn;
    unsigned long f0 = mm__sys_count(MM_SYS_FSYNC);
    ASSERT_OK(mm_heap_tx_begin(h, &DUR));
    ASSERT_OK(wr(h, d + (uint64_t)(i % 4) * 4096, 0x10 + i, 64));
    ASSERT_OK(wr(h, d + (uint64_t)(i % 4) * 4096 + 1000, 0x10 + i, 16));
    int m1 = msn;
    watch = t;
    watch_seen = -1;
    ASSERT_OK(mm_heap_tx_commit(h));
    watch = NULL;
    int m2 = msn;
    if (m1 != m0) MISMATCH(m0, m1, "write-only commit %d: %d msync(s) at begin/tx_write", i, m1 - m0);
    ASSERT_EQ(mm__sys_count(MM_SYS_FSYNC) - f0, 0);
    if (m2 - m1 != 1) {
      MISMATCH(m1, m2, "write-only durable commit %d made %d msyncs; heap.h: one, of the record",
               i, m2 - m1);
    } else {
      const struct msrec *r = &msr[m1];
      ASSERT_EQ(r->result, 0);
      ASSERT(r->flags & MS_SYNC);
      if (covers(r, t))
        MISMATCH(m1, m2, "commit %d: its msync covers the data page written (offset %" PRIu64
                 ")", i, (uint64_t)(t - base));
      if (r->addr < (uintptr_t)base + lo || r->addr + r->len > (uintptr_t)base + hi)
        MISMATCH(m1, m2, "commit %d: its msync is not inside the log [%" PRIu64 ", %" PRIu64
                 ")", i, lo, hi);
      /* Correctness, not cost: the data must not change before the record
       * is on disk. */
      if (watch_seen != oldv)
        FAIL("commit %d: the data already read %#x (not the old %#x) while its record was "
             "being synced: not write-ahead", i, watch_seen, oldv);
    }
    ASSERT_ALL(t, 64, 0x10 + i);
  }

  /* (b) process-crash transactions while the log holds records: none. */
  int m0 = msn, m1, m2, m3;
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, d + 100, 0x21, 32));
  ASSERT_OK(mm_heap_tx_add(h, d + 200, 32));
  memset(p + 200, 0x22, 32);
  ASSERT_OK(mm_heap_tx_commit(h));
  if (msn != m0) MISMATCH(m0, msn, "a process-crash transaction made %d msyncs", msn - m0);
  /* ... and a write-only durable commit right after it: two (heap.h: the
   * data first, after a process-crash commit since the last whole sync),
   * then one again. */
  m0 = msn;
  dur_write(h, d + 300, 0x23, 16);
  if (msn - m0 != 2)
    MISMATCH(m0, msn, "write-only durable commit right after a process-crash commit: %d "
             "msyncs, want 2", msn - m0);
  m0 = msn;
  dur_write(h, d + 308, 0x24, 8);
  if (msn - m0 != 1)
    MISMATCH(m0, msn, "the write-only durable commit after that: %d msyncs, want 1", msn - m0);

  /* (c) tx_add: one at tx_add, one at commit; mixed with tx_write too. */
  m0 = msn;
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_add(h, d + 8192 + 2048, 64));
  if (msn - m0 != 1) MISMATCH(m0, msn, "durable tx_add made %d msyncs; heap.h: one", msn - m0);
  memset(p + 8192 + 2048, 0x30, 64);
  m1 = msn;
  ASSERT_OK(mm_heap_tx_commit(h));
  if (msn - m1 != 1)
    MISMATCH(m1, msn, "commit of a durable tx_add transaction made %d msyncs; heap.h: one more",
             msn - m1);
  m0 = msn;
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_add(h, d + 8192, 64));
  m1 = msn;
  memset(p + 8192, 0x31, 64);
  ASSERT_OK(wr(h, d + 8192 + 512, 0x32, 64));
  m2 = msn;
  ASSERT_OK(mm_heap_tx_commit(h));
  m3 = msn;
  if (m1 - m0 != 1 || m2 != m1 || m3 - m2 != 1)
    MISMATCH(m0, m3, "tx_add + tx_write durable transaction: %d msync(s) to tx_add, %d to "
             "tx_write, %d at commit; want 1, 0, 1", m1 - m0, m2 - m1, m3 - m2);
  ASSERT_ALL(p + 8192, 64, 0x31);
  ASSERT_ALL(p + 8192 + 512, 64, 0x32);

  /* (d) An allocating durable transaction: two syncs (data, then log);
   * its record stays in the log (mm_heap_sync: a checkpoint, two) and
   * write-only commits are one sync again. */
  uint64_t y = 0;
  m0 = msn;
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_alloc(h, 100, &y));
  ASSERT_OK(wr(h, y, 0x41, 100));
  ASSERT_OK(wr(h, d + 4096 + 300, 0x42, 8));
  m1 = msn;
  ASSERT_OK(mm_heap_tx_commit(h));
  m2 = msn;
  if (m2 - m1 != 2)
    MISMATCH(m0, m2, "an allocating durable commit made %d msyncs; heap.h: two (data, then log)",
             m2 - m1);
  if (m2 - m1 < 2)
    FAIL("an allocating durable commit made %d msyncs: it cannot be a checkpoint", m2 - m1);
  /* The data sync (the next to last) covers the new object; the last is
   * the log's. */
  if (!covers(&msr[m2 - 2], P(h, y)) || covers(&msr[m2 - 1], P(h, y)))
    MISMATCH(m1, m2, "allocating commit: the data msync must cover the new object, the last "
             "one is the log's");
  ASSERT_ALL(P(h, y), 100, 0x41);
  m0 = msn;
  ASSERT_OK(mm_heap_sync(h));
  if (msn - m0 != 2)
    MISMATCH(m0, msn, "mm_heap_sync right after an allocating commit made %d msyncs; the log "
             "holds its record, so it is a checkpoint (2)", msn - m0);
  m0 = msn;
  ASSERT_OK(mm_heap_sync(h));
  if (msn - m0 != 1)
    MISMATCH(m0, msn, "mm_heap_sync with an empty log made %d msyncs; want 1", msn - m0);
  m0 = msn;
  dur_write(h, d + 12288, 0x43, 64);
  if (msn - m0 != 1)
    MISMATCH(m0, msn, "write-only commit after a checkpoint: %d msyncs, want 1", msn - m0);

  /* (e) This thread allocates outside a transaction: its next durable
   * commit takes the two-sync way, the one after that one again. Then
   * the same with a mm_heap_sync in between: one. */
  uint64_t z = alloc_set(h, 64, 0x44);
  m0 = msn;
  dur_write(h, d + 12288 + 128, 0x45, 64);
  if (msn - m0 != 2)
    MISMATCH(m0, msn, "write-only commit after an allocation outside a transaction: %d "
             "msyncs, want 2", msn - m0);
  m0 = msn;
  dur_write(h, d + 12288 + 256, 0x46, 64);
  if (msn - m0 != 1) MISMATCH(m0, msn, "the commit after that: %d msyncs, want 1", msn - m0);
  uint64_t z2 = alloc_set(h, 64, 0x47);
  ASSERT_OK(mm_heap_sync(h));
  m0 = msn;
  dur_write(h, d + 12288 + 384, 0x48, 64);
  if (msn - m0 != 1)
    MISMATCH(m0, msn, "write-only commit after an allocation and mm_heap_sync: %d msyncs, "
             "want 1 (heap.h: \"since its last such commit or mm_heap_sync\")", msn - m0);
  (void)z, (void)z2;

  /* (f) mm_heap_sync with records in the log: data (covering the pages
   * the records wrote), then the log's header; then the log is empty. */
  dur_write(h, d + 100, 0x51, 64);
  dur_write(h, d + 4096 + 100, 0x52, 64);
  m0 = msn;
  ASSERT_OK(mm_heap_sync(h));
  if (msn - m0 != 2) {
    MISMATCH(m0, msn, "mm_heap_sync after write-ahead commits made %d msyncs; heap.h: a "
             "checkpoint, two (data, then the log's header)", msn - m0);
  } else if (!covers(&msr[m0], p + 100) || !covers(&msr[m0], p + 4096 + 100) ||
             covers(&msr[m0 + 1], p + 100)) {
    MISMATCH(m0, msn, "mm_heap_sync's checkpoint: the first msync must cover the data the "
             "records wrote, the second only the log's header");
  }
  m0 = msn;
  ASSERT_OK(mm_heap_sync(h));
  if (msn - m0 != 1)
    MISMATCH(m0, msn, "a second mm_heap_sync made %d msyncs: the first left records in the log",
             msn - m0);
  m0 = msn;
  dur_write(h, d + 200, 0x53, 8);
  if (msn - m0 != 1) MISMATCH(m0, msn, "write-only commit: %d msyncs, want 1", msn - m0);
  ASSERT_CLEAN(h);
  hooks_off();
  ASSERT_OK(mm_heap_close(h));

  /* (g) A MM_HEAP_DURABLE heap: the default transaction is the one-sync
   * write-ahead one; NOSYNC makes none. */
  h = create(mm_test_path("dh"), MM_HEAP_DURABLE);
  ASSERT_OK(mm_heap_zalloc(h, 4096, &d));
  ASSERT_OK(mm_heap_sync(h));
  warm_up(h, d + 4096 - 8);
  base = mm_heap_base(h);
  hooks_on();
  for (int i = 0; i < 3; i++) {
    m0 = msn;
    ASSERT_OK(mm_heap_tx_begin(h, NULL));
    ASSERT_OK(wr(h, d + 64 * (uint64_t)i, 0x60 + i, 64));
    ASSERT_OK(mm_heap_tx_commit(h));
    if (msn - m0 != 1)
      MISMATCH(m0, msn, "durable heap, write-only default transaction %d: %d msyncs, want 1", i,
               msn - m0);
  }
  m0 = msn;
  ASSERT_OK(mm_heap_tx_begin(h, &NOSYNC));
  ASSERT_OK(wr(h, d + 1000, 0x66, 64));
  ASSERT_OK(mm_heap_tx_commit(h));
  if (msn != m0) MISMATCH(m0, msn, "durable heap, NOSYNC transaction: %d msyncs", msn - m0);
  ASSERT_CLEAN(h);
  hooks_off();
  ASSERT_OK(mm_heap_close(h));
#undef MISMATCH
  if (bad) FAIL("%d sync count(s) differ from heap.h (each printed above)", bad);
}

/* Catches: the one-sync promise ("A transaction that only writes this way
 * costs one sync") broken for the first write-only commit of a handle or
 * a process: heap.h lists the exceptions (an allocation, free or name in
 * the transaction, or by the thread outside one since its last such
 * commit or mm_heap_sync), and a first commit is not one of them. Even on
 * the two-sync way it would be two, not three. */
TEST_T(heap_wal_first_write_only_commit_is_one_sync, 30) {
  if (mm__sys_boot_id() == 0) SKIP("no boot id here: durable commits take two syncs");
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t d = 0;
  ASSERT_OK(mm_heap_zalloc(h, 4096, &d));
  ASSERT_OK(mm_heap_sync(h));
  hooks_on();
  int n[5];
  const char *what[5] = {"the creating handle's first (after alloc + mm_heap_sync)",
                         "its second", "the first after close and reopen",
                         "the first in another process", "that process's second"};
  int m0 = msn;
  dur_write(h, d, 0x01, 64);
  n[0] = msn - m0, m0 = msn;
  dur_write(h, d, 0x02, 64);
  n[1] = msn - m0;
  ASSERT_OK(mm_heap_close(h));
  h = reopen(path);
  m0 = msn;
  dur_write(h, d, 0x03, 64);
  n[2] = msn - m0;
  ASSERT_OK(mm_heap_close(h));
  int *shm = mm_test_shared_page(4096);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    mm_heap_t *c = reopen(path);
    int c0 = msn;
    dur_write(c, d, 0x04, 64);
    shm[0] = msn - c0, c0 = msn;
    dur_write(c, d, 0x05, 64);
    shm[1] = msn - c0;
    ASSERT_OK(mm_heap_close(c));
    _exit(0);
  }
  int st = mm_test_wait_child(pid, 20);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) FAIL("child: status %#x", st);
  n[3] = shm[0], n[4] = shm[1];
  hooks_off();
  int bad = 0;
  for (int i = 0; i < 5; i++) {
    fprintf(stderr, "# write-only durable commit, %s: %d msync(s)\n", what[i], n[i]);
    bad += n[i] != 1;
  }
  if (bad) FAIL("%d of 5 write-only durable commits did not make exactly one msync", bad);
  h = reopen(path);
  ASSERT_ALL(P(h, d), 64, 0x05);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

/* ==== 3. same-boot process crashes ========================================= */

struct killshm {
  _Atomic int ready;
  char msg[256];
};

/* Catches: recovery after a dead lock holder on the same boot writing the
 * log's old commit records again (clobbering a later process-crash commit
 * and later undeclared writes), or applying the dead transaction's
 * pending writes. */
TEST_T(heap_wal_holder_killed_same_boot_redoes_no_old_record, 40) {
  SKIP_OWNERDEAD_UNDER_TSAN();
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t X = alloc_set(h, 64, 0x01), W = alloc_set(h, 64, 0x02), Y = alloc_set(h, 64, 0x03);
  ASSERT_OK(mm_heap_sync(h));
  warm_up(h, Y);
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, X, 0x05, 64));
  ASSERT_OK(wr(h, W, 0x05, 64));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_OK(mm_heap_tx_begin(h, NULL)); /* process-crash: X = 7 */
  ASSERT_OK(mm_heap_tx_add(h, X, 64));
  memset(P(h, X), 0x07, 64);
  ASSERT_OK(mm_heap_tx_commit(h));
  memset(P(h, W), 0x09, 64); /* raw, outside any transaction */
  memset(P(h, Y), 0x0A, 64);

  struct killshm *s = mm_test_shared_page(4096);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    hooks_off();
    mm_heap_t *c = NULL;
    mm_heap_opts_t o = {.lock_timeout_ms = 5000};
    int rc = mm_heap_open(&c, path, &o);
    if (rc) {
      snprintf(s->msg, sizeof s->msg, "open: %s", mm_errname(rc));
      _exit(2);
    }
    if ((rc = mm_heap_tx_begin(c, &DUR)) != 0 || (rc = wr(c, X, 0x66, 64)) != 0 ||
        (rc = mm_heap_tx_add(c, Y, 64)) != 0) {
      snprintf(s->msg, sizeof s->msg, "tx: %s", mm_errname(rc));
      _exit(3);
    }
    memset(P(c, Y), 0xEE, 64);
    if ((rc = wr(c, W, 0x66, 64)) != 0) _exit(4);
    atomic_store(&s->ready, 1);
    for (;;) pause();
  }
  if (!mm_test_wait_flag(&s->ready, 10)) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    FAIL("the child never got inside its transaction: %s", s->msg);
  }
  kill(pid, SIGKILL);
  int st = mm_test_wait_child(pid, 10);
  ASSERT(st != -1 && WIFSIGNALED(st));

  /* Take the lock: recovery of the dead holder. */
  mm_heap_tx_opts_t o = {.timeout_ms = 10000};
  ASSERT_OK(mm_heap_tx_begin(h, &o));
  ASSERT_ALL(P(h, X), 64, 0x07); /* 5 here: the old record was redone */
  ASSERT_ALL(P(h, W), 64, 0x09);
  ASSERT_ALL(P(h, Y), 64, 0x0A); /* the dead tx_add is undone */
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_CLEAN(h);

  /* Another opener, same boot, sees the same. */
  struct wants ws = {0};
  want(&ws, "X", X, 64, 0x07, -1);
  want(&ws, "W", W, 64, 0x09, -1);
  want(&ws, "Y", Y, 64, 0x0A, -1);
  check_in_child(path, 0, &ws, "same-boot reopen after the holder was killed");
  ASSERT_ALL(P(h, X), 64, 0x07);
  ASSERT_OK(mm_heap_close(h));
  h = reopen(path);
  ASSERT_ALL(P(h, X), 64, 0x07);
  ASSERT_ALL(P(h, W), 64, 0x09);
  ASSERT_ALL(P(h, Y), 64, 0x0A);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

/* Child bodies for the next test: each exits 0 (died without closing) or
 * is killed by itself. */
static void crash_child(const char *path, int which, uint64_t A, uint64_t B, uint64_t C) {
  hooks_off();
  mm_heap_t *c = NULL;
  mm_heap_opts_t o = {.lock_timeout_ms = 5000};
  if (mm_heap_open(&c, path, &o)) _exit(2);
  if (mm_heap_sync(c)) _exit(2);
  warm_up(c, A + 56);
#define CK(call) \
  if ((call) != 0) _exit(3)
  if (which == 1) {
    CK(mm_heap_tx_begin(c, &DUR)); CK(wr(c, A, 0x01, 64)); CK(mm_heap_tx_commit(c));
    CK(mm_heap_tx_begin(c, NULL)); CK(wr(c, A, 0x02, 64)); CK(mm_heap_tx_commit(c));
    CK(mm_heap_tx_begin(c, &DUR)); CK(wr(c, B, 0x03, 64)); CK(mm_heap_tx_commit(c));
    CK(mm_heap_tx_begin(c, &DUR)); CK(wr(c, C, 0x05, 64)); CK(mm_heap_tx_commit(c));
    memset(P(c, C), 0x4D, 64); /* raw, after its record */
    /* A process-crash transaction, killed before commit. */
    CK(mm_heap_tx_begin(c, NULL));
    CK(wr(c, A, 0x99, 64));
    CK(mm_heap_tx_add(c, B, 64));
    memset(P(c, B), 0x98, 64);
    raise(SIGKILL);
  } else if (which == 2) {
    /* Records, a raw write after them, then exit without close (no lock). */
    CK(mm_heap_tx_begin(c, &DUR)); CK(wr(c, A, 0x11, 64)); CK(mm_heap_tx_commit(c));
    memset(P(c, A), 0x12, 64);
    CK(mm_heap_tx_begin(c, &DUR)); CK(wr(c, B, 0x13, 64)); CK(mm_heap_tx_commit(c));
    _exit(0);
  } else {
    /* A durable write-ahead transaction killed before its commit. */
    CK(mm_heap_tx_begin(c, &DUR)); CK(wr(c, C, 0x21, 64)); CK(mm_heap_tx_commit(c));
    CK(mm_heap_tx_begin(c, &DUR));
    CK(wr(c, C, 0x22, 64));
    CK(wr(c, A, 0x23, 64));
    raise(SIGKILL);
  }
#undef CK
  _exit(4);
}

/* Catches: same-boot recovery redoing records of earlier commits (the
 * process-crash commit A=2 or the raw writes C=0x4D, A=0x12 overwritten),
 * the killed transaction's write-ahead bytes applied, or its in-place
 * change kept. */
TEST_T(heap_wal_process_crash_after_records_keeps_the_last_commit, 40) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t A = alloc_set(h, 64, 0xA0), B = alloc_set(h, 64, 0xB0), C = alloc_set(h, 64, 0xC0);
  ASSERT_OK(mm_heap_close(h));
  static const int want_exit[4] = {0, -SIGKILL, 0, -SIGKILL};
  static const int wa[4] = {0, 0x02, 0x12, 0x12}, wb[4] = {0, 0x03, 0x13, 0x13},
                   wc[4] = {0, 0x4D, 0x4D, 0x21};
  for (int which = 1; which <= 3; which++) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) FAIL("fork: %s", strerror(errno));
    if (pid == 0) crash_child(path, which, A, B, C);
    int st = mm_test_wait_child(pid, 20);
    if (st == -1) FAIL("child %d hung", which);
    if (want_exit[which] < 0) {
      if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        FAIL("child %d: status %#x (its calls failed before the kill)", which, st);
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      FAIL("child %d: status %#x", which, st);
    }
    h = reopen(path);
    ASSERT_CLEAN(h);
    if (P(h, A)[0] != wa[which] || P(h, B)[0] != wb[which] || P(h, C)[0] != wc[which])
      FAIL("after child %d: A %#x B %#x C %#x, want %#x %#x %#x", which, P(h, A)[0],
           P(h, B)[0], P(h, C)[0], wa[which], wb[which], wc[which]);
    ASSERT_ALL(P(h, A), 64, wa[which]);
    ASSERT_ALL(P(h, B), 64, wb[which]);
    ASSERT_ALL(P(h, C), 64, wc[which]);
    /* A second opener (another process, same boot) sees the same. */
    struct wants ws = {0};
    want(&ws, "A", A, 64, wa[which], -1);
    want(&ws, "B", B, 64, wb[which], -1);
    want(&ws, "C", C, 64, wc[which], -1);
    check_in_child(path, 0, &ws, "a second same-boot opener");
    ASSERT_OK(mm_heap_close(h)); /* checkpoints: the next child starts with an empty log */
  }
}

/* ==== 4. simulated reboots ================================================ */

/* Catches: power-loss recovery (another boot id) redoing only the last
 * record, or none; stopping at a process-crash commit's record (which may
 * not be on disk while a later durable one is); not redoing a tx_add
 * commit's record; redoing the process-crash record in the wrong order
 * (heap.h: it "is written again after them"); and, after a checkpoint,
 * redoing old records over newer undeclared writes. */
/* End a capture armed before a commit: the page cache at its last msync.
 * A one-sync commit's image has the record, not yet the data (still `old`
 * at [at, at+64)), so the recovery has to redo it. */
static unsigned char *capture_take(uint64_t *len, uint64_t at, int old, const char *which) {
  int nsync = capture_armed - 1;
  capture_armed = 0;
  ASSERT(capture_buf);
  if (nsync == 1) ASSERT_ALL(capture_buf + at, 64, old);
  else fprintf(stderr, "# (the %s commit made %d msyncs)\n", which, nsync);
  unsigned char *b = capture_buf;
  *len = capture_len;
  capture_buf = NULL;
  return b;
}

TEST_T(heap_wal_reboot_redoes_every_record_since_the_checkpoint, 60) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t A = alloc_set(h, 4096, 0xA0), B = alloc_set(h, 4096, 0xB0);
  uint64_t C = alloc_set(h, 4096, 0xC0), E = alloc_set(h, 4096, 0xE0);
  warm_up(h, E + 2048);
  struct disk dk;
  disk_start(&dk, h, path);
  capture_fd = dk.fd;

  /* 1. durable A[0,64) = 1; the page cache at its (last) msync -> P1 */
  capture_armed = 1;
  dur_write(h, A, 0x01, 64);
  uint64_t P1len;
  unsigned char *P1 = capture_take(&P1len, A, 0xA0, "first");
  /* 2. process-crash A[0,8) = 2 */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, A, 0x02, 8));
  ASSERT_OK(mm_heap_tx_commit(h));
  /* 3. durable B[0,64) = 3, A[32,48) = 4; the page cache at its msync -> P3 */
  capture_armed = 1;
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, B, 0x03, 64));
  ASSERT_OK(wr(h, A + 32, 0x04, 16));
  ASSERT_OK(mm_heap_tx_commit(h));
  uint64_t P3len;
  unsigned char *P3 = capture_take(&P3len, B, 0xB0, "second");
  /* 4. raw C[0,64) = 5, undeclared */
  memset(P(h, C), 0x05, 64);
  /* 5. durable tx_add E[0,64) = 6 in place; 6. durable write E[1000,1010) = 8 */
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_add(h, E, 64));
  memset(P(h, E), 0x06, 64);
  ASSERT_OK(mm_heap_tx_commit(h));
  dur_write(h, E + 1000, 0x08, 10);
  /* The disk now (nothing written back but what was msynced). */
  put_file(mm_test_path("disk.img"), dk.D, dk.len);
  put_file(mm_test_path("p1.img"), P1, P1len);
  put_file(mm_test_path("p3.img"), P3, P3len);

  struct wants w1 = {0};
  want(&w1, "A[0,64)", A, 64, 0x01, -1);
  want(&w1, "A[64,4096)", A + 64, 4096 - 64, 0xA0, -1);
  want(&w1, "B", B, 4096, 0xB0, -1);
  check_in_child(mm_test_path("p1.img"), FAKE_BOOT, &w1,
                 "reboot, page cache at the first durable commit's msync");

  struct wants w3 = {0};
  want(&w3, "A[0,8) (process-crash commit, redone after the durable one)", A, 8, 0x02, -1);
  want(&w3, "A[8,32)", A + 8, 24, 0x01, -1);
  want(&w3, "A[32,48)", A + 32, 16, 0x04, -1);
  want(&w3, "A[48,64)", A + 48, 16, 0x01, -1);
  want(&w3, "A[64,4096)", A + 64, 4096 - 64, 0xA0, -1);
  want(&w3, "B[0,64)", B, 64, 0x03, -1);
  want(&w3, "B[64,4096)", B + 64, 4096 - 64, 0xB0, -1);
  check_in_child(mm_test_path("p3.img"), FAKE_BOOT, &w3,
                 "reboot, page cache at the second durable commit's msync");

  struct wants wd = {0};
  want(&wd, "A[0,8) (not durable: either)", A, 8, 0x02, 0x01);
  want(&wd, "A[8,32)", A + 8, 24, 0x01, -1);
  want(&wd, "A[32,48)", A + 32, 16, 0x04, -1);
  want(&wd, "A[48,64)", A + 48, 16, 0x01, -1);
  want(&wd, "B[0,64)", B, 64, 0x03, -1);
  want(&wd, "B[64,4096)", B + 64, 4096 - 64, 0xB0, -1);
  want(&wd, "C[0,64) (undeclared: either)", C, 64, 0xC0, 0x05);
  want(&wd, "E[0,64) (tx_add commit)", E, 64, 0x06, -1);
  want(&wd, "E[64,1000)", E + 64, 1000 - 64, 0xE0, -1);
  want(&wd, "E[1000,1010)", E + 1000, 10, 0x08, -1);
  want(&wd, "E[1010,4096)", E + 1010, 4096 - 1010, 0xE0, -1);
  check_in_child(mm_test_path("disk.img"), FAKE_BOOT, &wd,
                 "reboot, disk model (only msynced bytes on disk)");

  /* 7. A checkpoint, then an undeclared write over bytes old records
   * wrote: after a reboot nothing may be written over it. */
  ASSERT_OK(mm_heap_sync(h));
  memset(P(h, A), 0x09, 64);
  memset(P(h, B), 0x09, 64);
  copy_file(path, mm_test_path("q.img"));
  struct wants wq = {0};
  want(&wq, "A[0,64) (undeclared, after the checkpoint)", A, 64, 0x09, -1);
  want(&wq, "B[0,64) (undeclared, after the checkpoint)", B, 64, 0x09, -1);
  want(&wq, "E[0,64)", E, 64, 0x06, -1);
  want(&wq, "E[1000,1010)", E + 1000, 10, 0x08, -1);
  check_in_child(mm_test_path("q.img"), FAKE_BOOT, &wq,
                 "reboot, page cache after mm_heap_sync and undeclared writes");
  /* The disk model after the checkpoint: everything up to it. */
  put_file(mm_test_path("disk2.img"), dk.D, dk.len);
  struct wants wd2 = {0};
  want(&wd2, "A[0,8)", A, 8, 0x02, -1);
  want(&wd2, "A[32,48)", A + 32, 16, 0x04, -1);
  want(&wd2, "B[0,64)", B, 64, 0x03, -1);
  want(&wd2, "C[0,64)", C, 64, 0x05, -1);
  want(&wd2, "E[0,64)", E, 64, 0x06, -1);
  check_in_child(mm_test_path("disk2.img"), FAKE_BOOT, &wd2,
                 "reboot, disk model right after mm_heap_sync");

  hooks_off();
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
  free(P1);
  free(P3);
  free(dk.D);
  close(dk.fd);
}

/* ==== 5. killed between the record's sync and the apply ================== */

static void wal_kill_child(const char *path, int variant, uint64_t X, uint64_t Y, uint64_t Z) {
  hooks_off();
  mm_heap_t *c = NULL;
  mm_heap_opts_t o = {.lock_timeout_ms = 5000};
  if (mm_heap_open(&c, path, &o)) _exit(2);
  if (mm_heap_sync(c)) _exit(3); /* this thread owes no data sync */
  warm_up(c, Z + 56);
  mm__sys_msync_hook(ms_hook, NULL);
  if (variant == 0) {
    if (mm_heap_tx_begin(c, &DUR) || wr(c, Z, 0x5A, 64) || mm_heap_tx_commit(c)) _exit(4);
    memset(P(c, Z), 0x77, 64); /* raw, after its record: must stay */
    if (mm_heap_tx_begin(c, &DUR) || wr(c, X, 0x11, 64) || wr(c, Y + 8, 0x12, 32)) _exit(5);
    kill_seen = 0, kill_at = 1; /* die right after the commit's (only) msync */
    if (mm_heap_tx_commit(c)) _exit(6);
    _exit(7);
  }
  if (variant == 1) {
    /* Killed at tx_add's sync, with a write pending: all undone. */
    if (mm_heap_tx_begin(c, &DUR) || wr(c, X, 0x22, 64)) _exit(5);
    kill_seen = 0, kill_at = 1;
    if (mm_heap_tx_add(c, Y, 64)) _exit(6);
    memset(P(c, Y), 0x33, 64);
    _exit(7);
  }
  /* variant 2+: an allocating transaction killed at its (variant-1)th
   * commit msync: all or nothing (the root, X and Y together). */
  uint64_t n = 0;
  if (mm_heap_tx_begin(c, &DUR) || mm_heap_alloc(c, 200, &n) || wr(c, n, 0x44, 200) ||
      wr(c, X, 0x45, 64) || wr(c, Y, 0x46, 64) || mm_heap_set_root(c, n))
    _exit(5);
  kill_seen = 0, kill_at = variant - 1;
  if (mm_heap_tx_commit(c)) _exit(6);
  _exit(8); /* the commit made fewer msyncs than that */
}

/* Catches: a commit whose record reached the disk but which died before
 * applying it not being redone on the same boot (heap.h: "only a commit
 * cut short is written again"), redoing more than that commit (Z's raw
 * write after an older record), a tx_add sync carrying pending writes, and
 * an allocating commit killed midway coming back half done. */
TEST_T(heap_wal_killed_after_the_record_sync_is_redone, 40) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t X = alloc_set(h, 64, 0x01), Y = alloc_set(h, 64, 0x02), Z = alloc_set(h, 64, 0x03);
  ASSERT_OK(mm_heap_close(h));
  int all_or_nothing_done = 0;
  for (int variant = 0; variant <= 5; variant++) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) FAIL("fork: %s", strerror(errno));
    if (pid == 0) wal_kill_child(path, variant, X, Y, Z);
    int st = mm_test_wait_child(pid, 20);
    if (st == -1) FAIL("variant %d: child hung", variant);
    if (!WIFEXITED(st)) FAIL("variant %d: child status %#x", variant, st);
    int code = WEXITSTATUS(st);
    if (variant >= 2 && code == 8) { /* no such msync: the commit finished */
      all_or_nothing_done = 1;
    } else if (code != 42) {
      FAIL("variant %d: the child exited %d, not at the msync (42)", variant, code);
    }
    h = reopen(path);
    ASSERT_CLEAN(h);
    if (variant == 0) {
      ASSERT_ALL(P(h, X), 64, 0x11); /* redone */
      ASSERT_ALL(P(h, Y), 8, 0x02);
      ASSERT_ALL(P(h, Y) + 8, 32, 0x12);
      ASSERT_ALL(P(h, Y) + 40, 24, 0x02);
      ASSERT_ALL(P(h, Z), 64, 0x77); /* not the older record's 0x5A */
    } else if (variant == 1) {
      ASSERT_ALL(P(h, X), 64, 0x11); /* not 0x22: killed before commit */
      ASSERT_ALL(P(h, Y) + 8, 32, 0x12);
      ASSERT_ALL(P(h, Y), 8, 0x02);
    } else {
      uint64_t root = mm_heap_root(h);
      int xn = P(h, X)[0] == 0x45, yn = P(h, Y)[0] == 0x46;
      fprintf(stderr, "# allocating commit killed at msync %d: %s\n", variant - 1,
              code == 8 ? "(finished first)" : root ? "redone" : "undone");
      if (root) {
        ASSERT(xn && yn);
        ASSERT(mm_heap_usable_size(h, root) >= 200);
        ASSERT_ALL(P(h, root), 200, 0x44);
        ASSERT_ALL(P(h, X), 64, 0x45);
        ASSERT_ALL(P(h, Y), 64, 0x46);
        /* Put things back for the next variant. */
        ASSERT_OK(mm_heap_tx_begin(h, NULL));
        ASSERT_OK(mm_heap_set_root(h, 0));
        ASSERT_OK(mm_heap_free(h, root));
        ASSERT_OK(wr(h, X, 0x11, 64));
        ASSERT_OK(wr(h, Y, 0x02, 8));
        ASSERT_OK(wr(h, Y + 8, 0x12, 32));
        ASSERT_OK(wr(h, Y + 40, 0x02, 24));
        ASSERT_OK(mm_heap_tx_commit(h));
      } else {
        if (xn || yn) FAIL("half a transaction: root unset, X new %d, Y new %d", xn, yn);
        ASSERT_ALL(P(h, X), 64, 0x11);
        ASSERT_ALL(P(h, Y) + 8, 32, 0x12);
      }
      ASSERT_EQ(info_of(h).objects, 3);
    }
    ASSERT_CLEAN(h);
    ASSERT_OK(mm_heap_close(h));
    if (all_or_nothing_done) break;
  }
  ASSERT(all_or_nothing_done);
}

/* ==== 6. a commit whose sync fails ======================================== */

/* Catches: a failed one-sync commit reported as success, not rolled back in
 * memory, leaving the lock held or the heap inconsistent; its record left
 * valid in the page cache, so a later reboot (or a later commit's sync
 * carrying it to disk) brings the failed transaction back. */
TEST_T(heap_wal_failed_commit_sync_rolls_back_and_stays_gone, 40) {
  for (int sticky = 0; sticky < 2; sticky++) {
    const char *path = mm_test_path(sticky ? "h2" : "h1");
    mm_heap_t *h = create(path, 0);
    uint64_t X = alloc_set(h, 64, 0x01), Z = alloc_set(h, 64, 0x02);
    struct disk dk;
    disk_start(&dk, h, path);
    dur_write(h, X, 0x05, 64);

    ASSERT_OK(mm_heap_tx_begin(h, &DUR));
    ASSERT_OK(wr(h, Z, 0x66, 64));
    ASSERT_OK(wr(h, X, 0x67, 64));
    mm__fault_set(MM_SYS_MSYNC, 1, EIO, sticky);
    int rc = mm_heap_tx_commit(h);
    mm__fault_clear();
    if (rc == 0) FAIL("commit returned 0 although its msync failed (sticky %d)", sticky);
    ASSERT_RC(rc, -EIO);
    ASSERT_EQ(mm_heap_tx_active(h), 0);
    ASSERT_ALL(P(h, X), 64, 0x05);
    ASSERT_ALL(P(h, Z), 64, 0x02);
    ASSERT_CLEAN(h);
    /* The page cache right after the failure: as if all of it reached the
     * disk, then the power went. */
    copy_file(path, mm_test_path("cache.img"));

    /* The lock is free and a later durable commit works. */
    mm_heap_tx_opts_t o = {.flags = MM_HEAP_TX_DURABLE, .timeout_ms = 2000};
    ASSERT_OK(mm_heap_tx_begin(h, &o));
    ASSERT_OK(wr(h, X, 0x08, 64));
    ASSERT_OK(mm_heap_tx_commit(h));
    ASSERT_ALL(P(h, X), 64, 0x08);
    ASSERT_ALL(P(h, Z), 64, 0x02);
    put_file(mm_test_path("disk.img"), dk.D, dk.len);

    struct wants wc = {0};
    want(&wc, "Z (failed commit)", Z, 64, 0x02, -1);
    want(&wc, "X", X, 64, 0x05, -1);
    check_in_child(mm_test_path("cache.img"), FAKE_BOOT, &wc,
                   sticky ? "reboot, page cache after a commit whose syncs all failed"
                          : "reboot, page cache after a commit whose sync failed");
    struct wants wd = {0};
    want(&wd, "Z (failed commit)", Z, 64, 0x02, -1);
    want(&wd, "X", X, 64, 0x08, -1);
    check_in_child(mm_test_path("disk.img"), FAKE_BOOT, &wd,
                   "reboot, disk model after a failed and a good commit");
    /* Same boot, another process. */
    check_in_child(path, 0, &wd, "same-boot opener after a failed commit");
    hooks_off();
    ASSERT_CLEAN(h);
    ASSERT_OK(mm_heap_close(h));
    h = reopen(path);
    ASSERT_ALL(P(h, Z), 64, 0x02);
    ASSERT_ALL(P(h, X), 64, 0x08);
    ASSERT_OK(mm_heap_close(h));
    free(dk.D);
    close(dk.fd);
  }
}

/* ==== 7. the log never fills ============================================== */

#define OBJ 32768u
#define DREG 24576u /* durable writes go here; process-crash ones after it */

/* Catches: checkpoints not making room (MM_EFULL from a small commit), a
 * checkpoint at commit instead of at begin (a write-only commit then costs
 * more than one msync), records from before a checkpoint or from the other
 * half of the log redone after a reboot (the disk model keeps stale log
 * pages), a record split across the wrap lost; a write bigger than the log
 * accepted or ending the transaction; a transaction unable to use a
 * quarter of the log. */
TEST_T(heap_wal_log_never_fills_and_a_huge_write_is_efull, 60) {
  if (mm__sys_boot_id() == 0) SKIP("no boot id here");
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t d = 0;
  ASSERT_OK(mm_heap_zalloc(h, OBJ, &d));
  unsigned char *p = P(h, d);
  static unsigned char shadow[OBJ], buf[LOG + 1];
  memset(shadow, 0, OBJ);
  warm_up(h, d);
  struct disk dk;
  disk_start(&dk, h, path);
  uint64_t x = 0x243F6A8885A308D3ull;
  /* MM_WAL_COMMITS=N: more (5000 take about 10 s on a real disk here). */
  const int NCOMMIT = getenv("MM_WAL_COMMITS") ? atoi(getenv("MM_WAL_COMMITS")) : 2000;
  int checkpoints = 0, images = 0, odd_commits = 0, odd_after_pc = 0, odd_begins = 0;
  double t0 = mm_test_now();
  for (int i = 0; i < NCOMMIT; i++) {
    if (i % 50 == 49) { /* a process-crash commit, into its own region */
      int b0 = msn;
      ASSERT_OK(mm_heap_tx_begin(h, NULL)); /* may checkpoint (2 msyncs) */
      if (msn - b0 == 2) checkpoints++;
      else if (msn != b0) FAIL("process-crash begin %d made %d msyncs", i, msn - b0);
      int m0 = msn;
      uint64_t at = DREG + xs(&x) % (OBJ - DREG - 256), n = 1 + xs(&x) % 256;
      for (uint64_t k = 0; k < n; k++) buf[k] = (unsigned char)xs(&x);
      ASSERT_OK(mm_heap_tx_write(h, d + at, buf, n));
      memcpy(shadow + at, buf, (size_t)n);
      ASSERT_OK(mm_heap_tx_commit(h));
      if (msn != m0) FAIL("process-crash commit %d made %d msyncs", i, msn - m0);
      continue;
    }
    int b0 = msn;
    ASSERT_OK(mm_heap_tx_begin(h, &DUR));
    int b1 = msn;
    int k = 1 + (int)(xs(&x) % 3);
    for (int j = 0; j < k; j++) {
      uint64_t n = 1 + xs(&x) % 200, at = xs(&x) % (DREG - n);
      for (uint64_t q = 0; q < n; q++) buf[q] = (unsigned char)xs(&x);
      int rc = mm_heap_tx_write(h, d + at, buf, n);
      if (rc) FAIL("commit %d, write %d of %" PRIu64 " bytes: %s", i, j, n, mm_errname(rc));
      memcpy(shadow + at, buf, (size_t)n);
    }
    int c0 = msn;
    int rc = mm_heap_tx_commit(h);
    if (rc) FAIL("durable commit %d: %s (checkpoints so far %d)", i, mm_errname(rc), checkpoints);
    /* Counted, reported at the end (after the correctness checks). After a
     * process-crash commit (i % 50 == 0, i > 0) the data is synced first:
     * two, unless this begin checkpointed (which synced it). */
    if (msn - c0 != (i % 50 == 0 && i > 0 && b1 == b0 ? 2 : 1)) {
      if (!odd_commits++) {
        print_ms(c0, msn, mm_heap_base(h));
        fprintf(stderr, "# write-only durable commit %d made %d msyncs (the first such; "
                "heap.h: one, two after a process-crash commit; checkpoints happen at begin)%s\n", i, msn - c0,
                i % 50 == 0 ? "; it follows a process-crash commit" : "");
      }
      if (i % 50 == 0) odd_after_pc++;
    }
    if (b1 - b0 == 2) checkpoints++;
    else if (b1 != b0 && !odd_begins++) {
      print_ms(b0, b1, mm_heap_base(h));
      fprintf(stderr, "# begin %d made %d msyncs (0, or 2 for a checkpoint)\n", i, b1 - b0);
    }
    if (i % 500 == 498) { /* (not a process-crash iteration: those are i % 50 == 49) */
      ASSERT_MEM_EQ(p, shadow, OBJ);
      put_file(mm_test_path("disk.img"), dk.D, dk.len);
      struct wants w = {0};
      want_buf(&w, "the durably written region", d, DREG, shadow);
      char ctx[96];
      snprintf(ctx, sizeof ctx, "reboot, disk model after %d commits", i + 1);
      check_in_child(mm_test_path("disk.img"), FAKE_BOOT, &w, ctx);
      images++;
    }
  }
  fprintf(stderr, "# %d commits through a %u-byte log in %.2f s: %d checkpoints at begin, "
          "%d reboot images checked\n", NCOMMIT, LOG, mm_test_now() - t0, checkpoints, images);
  ASSERT(checkpoints >= 10);
  ASSERT_MEM_EQ(p, shadow, OBJ);
  ASSERT_CLEAN(h);

  /* A write bigger than the log: MM_EFULL, the transaction still open,
   * abort clean. */
  memset(buf, 0xBB, sizeof buf);
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, d, 0x01, 16));
  uint64_t big = 0;
  ASSERT_OK(mm_heap_alloc(h, LOG + 1, &big));
  ASSERT_RC(mm_heap_tx_write(h, big, buf, LOG + 1), MM_EFULL);
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_EQ(mm_heap_usable_size(h, big), 0);
  ASSERT_MEM_EQ(p, shadow, OBJ);
  ASSERT_CLEAN(h);

  /* 16 KiB writes, one per transaction, back to back: each fits (a
   * transaction may use three quarters of half of the log). */
  for (int j = 0; j < 12; j++) {
    uint64_t at = (uint64_t)(j % 2) * 8192;
    ASSERT_OK(mm_heap_tx_begin(h, &DUR));
    int rc = wr(h, d + at, 0x80 + j, 16384);
    if (rc) FAIL("a 16 KiB write in transaction %d: %s", j, mm_errname(rc));
    ASSERT_OK(mm_heap_tx_commit(h));
    memset(shadow + at, 0x80 + j, 16384);
  }
  ASSERT_MEM_EQ(p, shadow, OBJ);

  /* 1 KiB writes in one transaction until MM_EFULL; commit what fit. */
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  uint64_t total = 0;
  int rc = 0, j = 0;
  for (;; j++) {
    uint64_t at = ((uint64_t)j * 1024) % DREG;
    rc = wr(h, d + at, 0x20 + (j & 0x3F), 1024);
    if (rc) break;
    memset(shadow + at, 0x20 + (j & 0x3F), 1024);
    total += 1024;
    if (total > 4 * (uint64_t)LOG) FAIL("4 x the log's size written in one transaction");
  }
  fprintf(stderr, "# one durable transaction took %" PRIu64 " bytes of writes before %s\n",
          total, mm_errname(rc));
  ASSERT_RC(rc, MM_EFULL);
  ASSERT(total >= LOG / 4);
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_MEM_EQ(p, shadow, OBJ);
  ASSERT_CLEAN(h);

  put_file(mm_test_path("disk.img"), dk.D, dk.len);
  struct wants w = {0};
  want_buf(&w, "the durably written region", d, DREG, shadow);
  check_in_child(mm_test_path("disk.img"), FAKE_BOOT, &w, "reboot, disk model at the end");

  hooks_off();
  ASSERT_OK(mm_heap_close(h));
  copy_file(path, mm_test_path("closed.img"));
  struct wants wall = {0};
  want_buf(&wall, "the whole object", d, OBJ, shadow);
  check_in_child(mm_test_path("closed.img"), FAKE_BOOT, &wall, "reboot after close");
  h = reopen(path);
  ASSERT_MEM_EQ(P(h, d), shadow, OBJ);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
  free(dk.D);
  close(dk.fd);
  if (odd_commits || odd_begins)
    FAIL("%d of the write-only durable commits did not make exactly one msync (%d of them "
         "right after a process-crash commit, of %d such); %d begins made neither 0 nor 2",
         odd_commits, odd_after_pc, NCOMMIT / 50, odd_begins);
}

/* ==== 7b. power loss at random moments ==================================== */

/* The disk after a power loss: the disk model D, plus, for every page the
 * page cache has changed since, D's version, the cache's, or a mix of the
 * two at 512-byte sectors (the kernel may write back any dirty page at any
 * time, and a page may be torn). Taken between calls and inside msyncs
 * (before and after the msync's pages count as written). Whatever the mix,
 * recovery on another boot must give a heap that checks clean and holds
 * every durable commit that had returned; a transaction in flight is there
 * entirely or not at all. */

#define PL_OBJ 16384u
#define PL_DREG 12288u /* durable transactions only; the rest: anything */

static struct pl {
  struct disk dk;
  uint64_t x, d, seed;
  int verbose;
  unsigned char before[PL_DREG], after[PL_DREG];
  int in_hook_pct, images, max_images, committing;
  const char *phase;
  int iter;
} pl;

static void pl_image(const char *where) {
  if (pl.images >= pl.max_images) return;
  int fd = pl.dk.fd;
  uint64_t clen;
  unsigned char *cache = slurp(fd, &clen);
  uint64_t len = pl.dk.len, pg = (uint64_t)pgsz();
  unsigned char *img = malloc((size_t)len);
  ASSERT(img);
  memcpy(img, pl.dk.D, (size_t)len);
  int mode = (int)(xs(&pl.x) % 4); /* how much was written back */
  int mixed = 0;
  for (uint64_t at = 0; at + pg <= len && at + pg <= clen; at += pg) {
    if (!memcmp(img + at, cache + at, (size_t)pg)) continue;
    uint64_t r = xs(&pl.x) % 8;
    if (mode == 0) r = 7;                 /* nothing written back */
    if (mode == 3 && r < 6) r = 0;        /* nearly everything */
    if (pl.verbose)
      fprintf(stderr, "#     page at %" PRIu64 " dirty: %s\n", at,
              r < 3 ? "cache" : r < 5 ? "torn" : "disk");
    if (r < 3) {
      memcpy(img + at, cache + at, (size_t)pg);
      mixed++;
    } else if (r < 5) {
      for (uint64_t sct = 0; sct < pg; sct += 512)
        if (xs(&pl.x) % 2) memcpy(img + at + sct, cache + at + sct, 512);
      mixed++;
    }
  }
  free(cache);
  char ctx[200];
  snprintf(ctx, sizeof ctx, "power loss %s (%s, transaction %d, %d dirty page(s) mixed in; "
           "MM_WAL_SEED=%" PRIu64 " replays)", where, pl.phase, pl.iter, mixed,
           pl.seed);
  put_file(mm_test_path("pl.img"), img, len);
  if (getenv("MM_WAL_KEEP")) put_file(getenv("MM_WAL_KEEP"), img, len);
  free(img);
  if (pl.verbose) fprintf(stderr, "#   image %d: %s\n", pl.images, ctx);
  struct wants w = {0};
  if (pl.committing && memcmp(pl.before, pl.after, PL_DREG))
    want_either(&w, "the durable region", pl.d, PL_DREG, pl.before, pl.after);
  else
    want_buf(&w, "the durable region", pl.d, PL_DREG, pl.before);
  pl.images++;
  check_in_child(mm_test_path("pl.img"), FAKE_BOOT, &w, ctx);
}

static void pl_msync_hook(void *arg, void *addr, size_t len, int flags, int result) {
  (void)arg;
  msn++;
  if (pl.verbose)
    fprintf(stderr, "#   msync %" PRIu64 " +%zu (%s)\n",
            (uint64_t)((unsigned char *)addr - pl.dk.base), len, pl.phase);
  if (xs(&pl.x) % 100 < (uint64_t)pl.in_hook_pct) pl_image("inside an msync");
  disk_apply(&pl.dk, addr, len, flags, result);
  if (xs(&pl.x) % 100 < (uint64_t)pl.in_hook_pct) pl_image("just after an msync");
}

static void pl_random_bytes(unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)xs(&pl.x);
}

/* Catches: a torn or partly written record redone (or its tear making
 * recovery drop earlier records), stale log pages from before a wrap or a
 * checkpoint redone, redo that is not all-or-nothing per transaction, an
 * undo record of a durable tx_add not honoured when the in-place bytes
 * reached the disk before the commit, write-ahead bytes reaching the data
 * before their record. */
TEST_T(heap_wal_power_loss_at_random_moments_keeps_durable_commits, 90) {
  if (mm__sys_boot_id() == 0) SKIP("no boot id here");
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  memset(&pl, 0, sizeof pl);
  pl.x = getenv("MM_WAL_SEED") ? strtoull(getenv("MM_WAL_SEED"), NULL, 0) : 0;
  if (!pl.x) pl.x = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
  pl.seed = pl.x;
  pl.verbose = getenv("MM_WAL_VERBOSE") != NULL;
  fprintf(stderr, "# MM_WAL_SEED=%" PRIu64 "\n", pl.x);
  ASSERT_OK(mm_heap_zalloc(h, PL_OBJ, &pl.d));
  unsigned char *p = P(h, pl.d);
  warm_up(h, pl.d);
  pl.phase = "start";
  /* The disk model, with this test's own hook. */
  memset(&pl.dk, 0, sizeof pl.dk);
  ASSERT_OK(mm_heap_sync(h));
  pl.dk.fd = open(path, O_RDONLY | O_CLOEXEC);
  ASSERT(pl.dk.fd >= 0);
  pl.dk.base = mm_heap_base(h);
  {
    uint64_t n;
    unsigned char *b = slurp(pl.dk.fd, &n);
    disk_grow(&pl.dk, n);
    memcpy(pl.dk.D, b, (size_t)n);
    free(b);
  }
  mm__sys_msync_hook(pl_msync_hook, NULL);
  disk_on = &pl.dk; /* for fsyncs (trace hook) */
  mm__sys_trace(trace_hook, NULL);
  memcpy(pl.before, p, PL_DREG);
  memcpy(pl.after, p, PL_DREG);
  pl.max_images = getenv("MM_WAL_IMAGES") ? atoi(getenv("MM_WAL_IMAGES")) : 60;
  pl.in_hook_pct = 3;
  /* MM_WAL_SEPARATE=1 (a diagnosis): a transaction's in-place ranges and
   * its writes never overlap. */
  int separate = getenv("MM_WAL_SEPARATE") != NULL;
  static unsigned char b[8192], mem[PL_DREG], wb[3][8192];
  uint64_t wat[3], wn[3];
  int iters = 0;
  for (pl.iter = 0; pl.images < pl.max_images && pl.iter < 3000; pl.iter++, iters++) {
    uint64_t op = xs(&pl.x) % 100;
    if (op < 55 || op >= 95) { /* a durable transaction, committed or aborted */
      int abort_it = op >= 50 && op < 55;
      pl.phase = "durable transaction";
      ASSERT_OK(mm_heap_tx_begin(h, &DUR));
      int k = 1 + (int)(xs(&pl.x) % 3), nw = 0;
      memcpy(mem, pl.before, PL_DREG);
      for (int j = 0; j < k; j++) {
        uint64_t n = op >= 95 ? 2048 + xs(&pl.x) % 3000 : 1 + xs(&pl.x) % 300;
        uint64_t at = xs(&pl.x) % (PL_DREG - n);
        int in_place = xs(&pl.x) % 4 == 0;
        if (separate) /* in-place ranges in the first half, writes in the second */
          at = (in_place ? 0 : PL_DREG / 2) + at % (PL_DREG / 2 - n);
        if (pl.verbose)
          fprintf(stderr, "#   %d: %s %" PRIu64 " bytes at %" PRIu64 "\n", pl.iter,
                  abort_it ? "(to abort)" : "", n, at);
        if (in_place) { /* in place, declared */
          if (pl.verbose) fprintf(stderr, "#     (tx_add, in place)\n");
          ASSERT_OK(mm_heap_tx_add(h, pl.d + at, n));
          pl_random_bytes(p + at, (size_t)n);
          memcpy(mem + at, p + at, (size_t)n);
        } else {
          pl_random_bytes(wb[nw], (size_t)n);
          ASSERT_OK(mm_heap_tx_write(h, pl.d + at, wb[nw], n));
          wat[nw] = at, wn[nw] = n, nw++;
        }
        /* If it commits: the in-place state, then the writes in order
         * (heap.h: applied "after the transaction's in-place changes"). */
        memcpy(pl.after, mem, PL_DREG);
        for (int q = 0; q < nw; q++) memcpy(pl.after + wat[q], wb[q], (size_t)wn[q]);
        ASSERT_MEM_EQ(p, mem, PL_DREG); /* the writes are not visible yet */
        if (xs(&pl.x) % 20 == 0) pl_image("inside a transaction");
      }
      if (abort_it) {
        memcpy(pl.after, pl.before, PL_DREG); /* never committed */
        ASSERT_EQ(mm_heap_tx_abort(h), 0);
      } else {
        pl.phase = "durable commit";
        pl.committing = 1;
        int rc = mm_heap_tx_commit(h);
        pl.committing = 0;
        if (rc) FAIL("commit %d: %s", pl.iter, mm_errname(rc));
        memcpy(pl.before, pl.after, PL_DREG);
      }
      ASSERT_MEM_EQ(p, pl.before, PL_DREG);
    } else if (op < 75) { /* process-crash transaction, outside the durable region */
      pl.phase = "process-crash transaction";
      if (pl.verbose) fprintf(stderr, "#   %d: process-crash tx\n", pl.iter);
      ASSERT_OK(mm_heap_tx_begin(h, NULL));
      uint64_t n = 1 + xs(&pl.x) % 500, at = PL_DREG + xs(&pl.x) % (PL_OBJ - PL_DREG - n);
      pl_random_bytes(b, (size_t)n);
      ASSERT_OK(mm_heap_tx_write(h, pl.d + at, b, n));
      ASSERT_OK(mm_heap_tx_commit(h));
    } else if (op < 85) { /* undeclared write outside the durable region */
      uint64_t n = 1 + xs(&pl.x) % 500, at = PL_DREG + xs(&pl.x) % (PL_OBJ - PL_DREG - n);
      if (pl.verbose) fprintf(stderr, "#   %d: raw write\n", pl.iter);
      pl_random_bytes(p + at, (size_t)n);
    } else if (op < 88) {
      pl.phase = "mm_heap_sync";
      if (pl.verbose) fprintf(stderr, "#   %d: mm_heap_sync\n", pl.iter);
      ASSERT_OK(mm_heap_sync(h));
    } else if (op < 91) {
      pl.phase = "between calls";
      pl_image("between calls");
    }
    pl.phase = "between calls";
  }
  fprintf(stderr, "# %d operations, %d power-loss images recovered and checked\n", iters,
          pl.images);
  hooks_off();
  ASSERT_MEM_EQ(p, pl.before, PL_DREG);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
  free(pl.dk.D);
  close(pl.dk.fd);
}

/* ==== 7c. more orders ===================================================== */

/* Catches: mm_heap_sync inside a transaction (allowed: "inside this
 * thread's transaction it has it") emptying the log while the
 * transaction's undo records are still needed: an abort, or a crash, or a
 * reboot after it could then not restore the in-place change; or the
 * in-transaction checkpoint applying the pending write-ahead bytes. */
TEST_T(heap_wal_sync_inside_a_transaction_keeps_it_undoable, 30) {
  SKIP_OWNERDEAD_UNDER_TSAN();
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t X = alloc_set(h, 64, 0x01), Y = alloc_set(h, 64, 0x02);
  ASSERT_OK(mm_heap_sync(h));
  warm_up(h, X + 56);
  dur_write(h, Y, 0x02, 64); /* a record in the log */
  for (int commit = 0; commit < 2; commit++) {
    ASSERT_OK(mm_heap_tx_begin(h, &DUR));
    ASSERT_OK(mm_heap_tx_add(h, X, 64));
    memset(P(h, X), 0x11, 64);
    ASSERT_OK(wr(h, Y, 0x12, 64));
    ASSERT_OK(mm_heap_sync(h));
    ASSERT_EQ(mm_heap_tx_active(h), 1);
    ASSERT_ALL(P(h, Y), 64, 0x02); /* still pending */
    if (commit) {
      ASSERT_OK(mm_heap_tx_commit(h));
      ASSERT_ALL(P(h, X), 64, 0x11);
      ASSERT_ALL(P(h, Y), 64, 0x12);
    } else {
      ASSERT_EQ(mm_heap_tx_abort(h), 0);
      ASSERT_ALL(P(h, X), 64, 0x01);
      ASSERT_ALL(P(h, Y), 64, 0x02);
    }
    ASSERT_CLEAN(h);
  }
  struct killshm *s = mm_test_shared_page(4096);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    hooks_off();
    mm_heap_t *c = reopen(path);
    warm_up(c, X + 56);
    ASSERT_OK(mm_heap_tx_begin(c, &DUR));
    ASSERT_OK(mm_heap_tx_add(c, X, 64));
    memset(P(c, X), 0x21, 64);
    ASSERT_OK(wr(c, Y, 0x22, 64));
    ASSERT_OK(mm_heap_sync(c));
    copy_file(path, mm_test_path("mid.img")); /* the page cache now */
    atomic_store(&s->ready, 1);
    raise(SIGKILL);
    _exit(5);
  }
  int st = mm_test_wait_child(pid, 20);
  if (st == -1 || !WIFSIGNALED(st) || !atomic_load(&s->ready))
    FAIL("the child did not get to its kill (status %#x)", st);
  struct wants w = {0};
  want(&w, "X (declared, changed in place, then mm_heap_sync, then killed)", X, 64, 0x11, -1);
  want(&w, "Y (pending write)", Y, 64, 0x12, -1);
  check_in_child(mm_test_path("mid.img"), FAKE_BOOT, &w,
                 "reboot, page cache after mm_heap_sync inside a transaction");
  ASSERT_OK(mm_heap_tx_begin(h, NULL)); /* the dead holder's lock */
  ASSERT_ALL(P(h, X), 64, 0x11);
  ASSERT_ALL(P(h, Y), 64, 0x12);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

/* Catches: the log keeping the old boot's identity after a recovery on a
 * new boot, so that the new boot's next process crash is taken for a
 * power loss (old records written again over later raw writes); recovery
 * not being a checkpoint (a second reboot redoing records of the first). */
TEST_T(heap_wal_after_a_reboot_recovery_a_crash_is_a_process_crash, 30) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t X = alloc_set(h, 64, 0x01), Y = alloc_set(h, 64, 0x02);
  ASSERT_OK(mm_heap_sync(h));
  warm_up(h, Y + 56);
  dur_write(h, X, 0x05, 64);
  copy_file(path, mm_test_path("img")); /* the machine "loses power" here */
  ASSERT_OK(mm_heap_close(h));
  const char *img = mm_test_path("img");
  /* Boot A: recover, commit, write raw after the record, die (no close). */
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    hooks_off();
    mm__sys_boot_id_set(FAKE_BOOT);
    mm_heap_t *c = reopen(img);
    ASSERT_ALL(P(c, X), 64, 0x05);
    warm_up(c, X + 56);
    dur_write(c, Y, 0x06, 64);
    memset(P(c, Y), 0x09, 64); /* raw, after Y's record */
    dur_write(c, X, 0x07, 64);
    _exit(0);
  }
  int st = mm_test_wait_child(pid, 20);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) FAIL("boot A's first process: %#x", st);
  /* Boot A again: a process crash, nothing old written again. */
  struct wants w = {0};
  want(&w, "X", X, 64, 0x07, -1);
  want(&w, "Y (raw write after its record, same boot)", Y, 64, 0x09, -1);
  check_in_child_ex(img, FAKE_BOOT, &w, "boot A, after a process died without closing",
                    CK_LEAVE_OPEN);
  /* Boot B: a power loss with everything written back: every record since
   * boot A's recovery is written again (X = 7), none from before it; Y
   * may get its record's bytes back (undeclared write, no checkpoint). */
  struct wants w2 = {0};
  want(&w2, "X", X, 64, 0x07, -1);
  want(&w2, "Y", Y, 64, 0x09, 0x06);
  check_in_child(img, FAKE_BOOT + 1, &w2, "boot B after boot A's records");
}

/* Catches: in a MM_HEAP_DURABLE heap, the durable metadata operations made
 * outside transactions (alloc, set_root, name_set) and the write-ahead
 * records interleaved with them not all surviving a power loss with
 * nothing written back but what was msynced. */
TEST_T(heap_wal_durable_heap_metadata_and_records_survive_a_reboot, 30) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, MM_HEAP_DURABLE);
  uint64_t A = 0;
  ASSERT_OK(mm_heap_zalloc(h, 4096, &A));
  ASSERT_OK(mm_heap_sync(h));
  warm_up(h, A + 4096 - 8);
  struct disk dk;
  disk_start(&dk, h, path);
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, A, 0x01, 64));
  ASSERT_OK(mm_heap_tx_commit(h));
  uint64_t R = 0;
  ASSERT_OK(mm_heap_alloc(h, 200, &R));
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, R, 0x02, 200));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_OK(mm_heap_set_root(h, R));
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, A + 64, 0x03, 64));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_OK(mm_heap_name_set(h, "n", A));
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, A + 128, 0x04, 64));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_OK(mm_heap_tx_begin(h, &NOSYNC));
  ASSERT_OK(wr(h, A + 192, 0x05, 64));
  ASSERT_OK(mm_heap_tx_commit(h));
  put_file(mm_test_path("disk.img"), dk.D, dk.len);
  struct wants w = {0};
  w.check_root = 1, w.root = R, w.name = "n", w.name_off = A;
  want(&w, "A[0,64)", A, 64, 0x01, -1);
  want(&w, "R", R, 200, 0x02, -1);
  want(&w, "A[64,128)", A + 64, 64, 0x03, -1);
  want(&w, "A[128,192)", A + 128, 64, 0x04, -1);
  want(&w, "A[192,256) (NOSYNC: either)", A + 192, 64, 0x05, 0x00);
  check_in_child(mm_test_path("disk.img"), FAKE_BOOT, &w,
                 "durable heap, reboot, disk model");
  hooks_off();
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
  free(dk.D);
  close(dk.fd);
}

/* ==== 8. close checkpoints ================================================= */

/* Catches: close leaving records in the log (a reboot, or a copy of the
 * file, then writes X = 5 over the later X = 7 and W = 5 over the raw
 * W = 9), close syncing when the log is empty, a failed checkpoint at
 * close not reported, or followed by a same-boot redo of old records. */
TEST_T(heap_wal_close_checkpoints_so_a_reboot_redoes_nothing, 40) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t X = alloc_set(h, 64, 0x01), W = alloc_set(h, 64, 0x02);
  ASSERT_OK(mm_heap_sync(h));
  warm_up(h, X);
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, X, 0x05, 64));
  ASSERT_OK(wr(h, W, 0x05, 64));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_tx_add(h, X, 64));
  memset(P(h, X), 0x07, 64);
  ASSERT_OK(mm_heap_tx_commit(h));
  memset(P(h, W), 0x09, 64);
  hooks_on();
  int m0 = msn;
  ASSERT_OK(mm_heap_close(h));
  int m1 = msn;
  hooks_off();
  if (m1 - m0 != 2)
    FAIL("close with commit records in the log made %d msyncs; heap.h: a checkpoint (two)",
         m1 - m0);
  copy_file(path, mm_test_path("closed.img"));
  struct wants w = {0};
  want(&w, "X (process-crash commit after the durable one)", X, 64, 0x07, -1);
  want(&w, "W (raw write after the durable one)", W, 64, 0x09, -1);
  check_in_child(mm_test_path("closed.img"), FAKE_BOOT, &w, "reboot after close");
  check_in_child(path, 0, &w, "same-boot open after close");

  /* Empty log: close syncs nothing. */
  h = reopen(path);
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(wr(h, X, 0x07, 8));
  ASSERT_OK(mm_heap_tx_commit(h));
  unsigned long c0 = mm__sys_count(MM_SYS_MSYNC), f0 = mm__sys_count(MM_SYS_FSYNC);
  ASSERT_OK(mm_heap_close(h));
  if (mm__sys_count(MM_SYS_MSYNC) != c0 || mm__sys_count(MM_SYS_FSYNC) != f0)
    FAIL("close with an empty log made %lu msync and %lu fsync calls; heap.h: nothing else "
         "is synced", mm__sys_count(MM_SYS_MSYNC) - c0, mm__sys_count(MM_SYS_FSYNC) - f0);

  /* A failed checkpoint at close: reported; the handle is closed anyway;
   * a same-boot opener redoes nothing over the raw write. */
  h = reopen(path);
  warm_up(h, W);
  dur_write(h, X, 0x15, 64);
  memset(P(h, X), 0x19, 64);
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 1);
  int rc = mm_heap_close(h);
  mm__fault_clear();
  if (rc == 0) FAIL("close returned 0 although every msync of its checkpoint failed");
  ASSERT_RC(rc, -EIO);
  h = reopen(path);
  ASSERT_ALL(P(h, X), 64, 0x19);
  ASSERT_ALL(P(h, W), 64, 0x09);
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
  copy_file(path, mm_test_path("closed2.img"));
  struct wants w2 = {0};
  want(&w2, "X (raw write after a durable commit, closed twice)", X, 64, 0x19, -1);
  want(&w2, "W", W, 64, 0x09, -1);
  check_in_child(mm_test_path("closed2.img"), FAKE_BOOT, &w2,
                 "reboot after a failed close checkpoint and a good close");
}

/* A durable transaction whose only changes are staged tx_writes changed no
 * byte of the heap: its abort syncs nothing and restores nothing; one that
 * also declared and wrote a range syncs what it restored (one msync). */
TEST(heap_wal_abort_of_staged_writes_only_syncs_nothing) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = create(path, 0);
  uint64_t a = alloc_set(h, 64, 0x01);
  ASSERT_OK(mm_heap_sync(h));
  hooks_on();
  int m0 = msn;
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(wr(h, a, 0x02, 64));
  ASSERT_OK(mm_heap_tx_abort(h));
  ASSERT_EQ(msn - m0, 0);
  ASSERT_ALL(P(h, a), 64, 0x01);
  m0 = msn;
  ASSERT_OK(mm_heap_tx_begin(h, &DUR));
  ASSERT_OK(mm_heap_tx_add(h, a, 8));
  memset(P(h, a), 0x03, 8);
  ASSERT_OK(wr(h, a + 8, 0x04, 8));
  int m1 = msn;
  ASSERT_OK(mm_heap_tx_abort(h));
  ASSERT_EQ(m1 - m0, 1); /* tx_add's */
  ASSERT_EQ(msn - m1, 1); /* the restored bytes */
  ASSERT_ALL(P(h, a), 64, 0x01);
  hooks_off();
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}
