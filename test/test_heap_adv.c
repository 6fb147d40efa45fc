/*
 * test_heap_adv.c - adversarial tests for the persistent heap
 * (memmap/heap.h), written from the header contract and doc/heap-format.md
 * only, not from src/heap.c.
 *
 * Every test runs in its own forked process (see runner.c), so tests fork
 * children freely and arm fault injection (src/sys.h).
 *
 * Where the header is ambiguous the reading taken is stated in a comment
 * beginning with "Reading:".
 */
#include "test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* the file format (doc/heap-format.md)                                     */

#define HDR_A 0
#define HDR_B 4096
#define HDR_SIZE 256
#define SUPER_OFF 8192
#define SUPER_SIZE 65536
#define LOG_OFF 73728

enum {
  F_MAGIC = 0,
  F_VERSION = 8,
  F_HSIZE = 12,
  F_COMPAT = 16,
  F_INCOMPAT = 24,
  F_PAGESIZE = 32,
  F_BYTEORDER = 36,
  F_WORDSIZE = 40,
  F_CHUNKSHIFT = 44,
  F_UUID = 48,
  F_GEN = 64,
  F_MAX = 72,
  F_FSIZE = 80,
  F_SUPER_OFF = 88,
  F_SUPER_SIZE = 96,
  F_LOG_OFF = 104,
  F_LOG_SIZE = 112,
  F_DATA_OFF = 120,
  F_ROOT_OFF = 128,
  F_NAMES_OFF = 136,
  F_FLAGS = 144,
  F_MUTEX = 148,
  F_RESERVED = 152,
  F_CRC = 252
};

/* CRC32C, bitwise (Castagnoli, reflected, init and final xor ~0). */
static uint32_t crc32c(const void *p, size_t n) {
  const unsigned char *b = p;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= b[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

static void crc_selftest(void) {
  ASSERT_EQ(crc32c("123456789", 9), 0xE3069283u);
}

static uint32_t rd32(const unsigned char *h, int f) {
  uint32_t v;
  memcpy(&v, h + f, 4);
  return v;
}
static uint64_t rd64(const unsigned char *h, int f) {
  uint64_t v;
  memcpy(&v, h + f, 8);
  return v;
}
static void wr32(unsigned char *h, int f, uint32_t v) { memcpy(h + f, &v, 4); }
static void wr64(unsigned char *h, int f, uint64_t v) { memcpy(h + f, &v, 8); }
static void fix_crc(unsigned char *h) { wr32(h, F_CRC, crc32c(h, F_CRC)); }
static int crc_ok(const unsigned char *h) {
  return rd32(h, F_CRC) == crc32c(h, F_CRC);
}

static double tscale(void) {
  const char *s = getenv("MM_TEST_TIMEOUT_SCALE");
  double v = s ? atof(s) : 1;
  return v > 0 ? v : 1;
}

static uint64_t pgsz(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

static uint64_t file_size(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) FAIL("stat %s: %s", path, strerror(errno));
  return (uint64_t)st.st_size;
}

static int file_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static void pread_all(const char *path, uint64_t off, void *buf, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  ssize_t r = pread(fd, buf, n, (off_t)off);
  if (r != (ssize_t)n) FAIL("pread %s at %" PRIu64 ": %zd", path, off, r);
  close(fd);
}

static void pwrite_all(const char *path, uint64_t off, const void *buf,
                       size_t n) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  ssize_t r = pwrite(fd, buf, n, (off_t)off);
  if (r != (ssize_t)n) FAIL("pwrite %s at %" PRIu64 ": %zd", path, off, r);
  close(fd);
}

/* The whole file. */
static unsigned char *slurp(const char *path, uint64_t *len) {
  uint64_t n = file_size(path);
  unsigned char *b = malloc(n ? n : 1);
  ASSERT(b);
  if (n) pread_all(path, 0, b, n);
  *len = n;
  return b;
}

/* Replace the file's contents with img[0, n). */
static void restore(const char *path, const unsigned char *img, uint64_t n) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  if (ftruncate(fd, (off_t)n) != 0) FAIL("ftruncate: %s", strerror(errno));
  uint64_t done = 0;
  while (done < n) {
    ssize_t r = pwrite(fd, img + done, n - done, (off_t)done);
    if (r <= 0) FAIL("pwrite: %s", strerror(errno));
    done += (uint64_t)r;
  }
  close(fd);
}

static void write_bytes(const char *path, const void *buf, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  if (n && write(fd, buf, n) != (ssize_t)n) FAIL("write: %s", strerror(errno));
  close(fd);
}

static void hdr_read(const char *path, int copy, unsigned char h[HDR_SIZE]) {
  pread_all(path, copy, h, HDR_SIZE);
}
static void hdr_write(const char *path, int copy, const unsigned char h[HDR_SIZE]) {
  pwrite_all(path, copy, h, HDR_SIZE);
}

/* Patch a field in both header copies, fixing each copy's CRC. */
static void patch_both32(const char *path, int f, uint32_t v) {
  unsigned char h[HDR_SIZE];
  for (int c = 0; c < 2; c++) {
    hdr_read(path, c ? HDR_B : HDR_A, h);
    wr32(h, f, v);
    fix_crc(h);
    hdr_write(path, c ? HDR_B : HDR_A, h);
  }
}
static void patch_both64(const char *path, int f, uint64_t v) {
  unsigned char h[HDR_SIZE];
  for (int c = 0; c < 2; c++) {
    hdr_read(path, c ? HDR_B : HDR_A, h);
    wr64(h, f, v);
    fix_crc(h);
    hdr_write(path, c ? HDR_B : HDR_A, h);
  }
}

/* ------------------------------------------------------------------------ */
/* patterns and randomness                                                  */

static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/* Byte i of pattern `seed` does not depend on the length. */
static void pfill(void *p, uint64_t n, uint64_t seed) {
  unsigned char *b = p;
  uint64_t i = 0, s = seed * 0x9E3779B97F4A7C15ull;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = mix64(s + (i >> 3));
    memcpy(b + i, &w, 8);
  }
  if (i < n) {
    uint64_t w = mix64(s + (i >> 3));
    memcpy(b + i, &w, (size_t)(n - i));
  }
}

/* -1 if p[0, n) is pattern `seed`, else the first bad index. */
static int64_t pbad(const void *p, uint64_t n, uint64_t seed) {
  const unsigned char *b = p;
  uint64_t i = 0, s = seed * 0x9E3779B97F4A7C15ull;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = mix64(s + (i >> 3));
    if (memcmp(b + i, &w, 8) != 0) break;
  }
  for (; i < n; i++) {
    uint64_t w = mix64(s + (i >> 3));
    if (b[i] != ((const unsigned char *)&w)[i & 7]) return (int64_t)i;
  }
  return -1;
}

static void pcheck_at(mm_heap_t *h, uint64_t off, uint64_t n, uint64_t seed,
                      const char *what, int line) {
  const unsigned char *p = mm_heap_ptr(h, off);
  int64_t bad = pbad(p, n, seed);
  if (bad >= 0)
    mm_test_fail(__FILE__, line,
                 "%s: object at %" PRIu64 " (%" PRIu64 " bytes): byte %" PRId64
                 " is 0x%02x, not the pattern",
                 what, off, n, bad, p[bad]);
}
#define PCHECK(h, off, n, seed, what) pcheck_at((h), (off), (n), (seed), (what), __LINE__)

static uint64_t rnd(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}
static uint64_t rrange(uint64_t *s, uint64_t lo, uint64_t hi) {
  return lo + rnd(s) % (hi - lo + 1);
}

/* ------------------------------------------------------------------------ */
/* opening                                                                  */

static char junk_storage;
#define JUNK ((mm_heap_t *)(void *)&junk_storage)

static int hopen_at(mm_heap_t **h, const char *path, unsigned flags,
                    uint32_t chunk, uint32_t log, uint64_t max, uint64_t initial,
                    int line) {
  mm_heap_opts_t o;
  memset(&o, 0, sizeof o);
  o.flags = flags;
  o.chunk_size = chunk;
  o.log_size = log;
  o.max_size = max;
  o.initial_size = initial;
  o.lock_timeout_ms = 20000;
  *h = JUNK;
  int rc = mm_heap_open(h, path, &o);
  if (rc != 0 && *h != NULL)
    mm_test_fail(__FILE__, line, "mm_heap_open failed with %s but *out is %p",
                 mm_errname(rc), (void *)*h);
  if (rc == 0 && (*h == NULL || *h == JUNK))
    mm_test_fail(__FILE__, line, "mm_heap_open returned 0 but *out is %p",
                 (void *)*h);
  return rc;
}
#define HOPEN_RC(h, path, flags, chunk, log, max, initial) \
  hopen_at((h), (path), (flags), (chunk), (log), (max), (initial), __LINE__)

static mm_heap_t *hcreate_at(const char *path, uint32_t chunk, uint32_t log,
                             uint64_t max, int line) {
  mm_heap_t *h;
  int rc = hopen_at(&h, path, MM_HEAP_CREATE | MM_HEAP_EXCL, chunk, log, max, 0,
                    line);
  if (rc != 0)
    mm_test_fail(__FILE__, line,
                 "create heap %s (chunk %u, log %u, max %" PRIu64 "): %s", path,
                 chunk, log, max, mm_errname(rc));
  return h;
}
#define HCREATE(path, chunk, log, max) hcreate_at((path), (chunk), (log), (max), __LINE__)

static mm_heap_t *hopen_existing_at(const char *path, int line) {
  mm_heap_t *h;
  int rc = hopen_at(&h, path, 0, 0, 0, 0, 0, line);
  if (rc != 0) mm_test_fail(__FILE__, line, "open heap %s: %s", path, mm_errname(rc));
  return h;
}
#define HOPEN(path) hopen_existing_at((path), __LINE__)

#define HCLOSE(h) ASSERT_EQ(mm_heap_close(h), 0)

/* ------------------------------------------------------------------------ */
/* check and info                                                           */

struct chk {
  uint64_t calls;
  int code0;
  uint64_t off0;
  char msgs[4][160];
};

static void chk_cb(void *arg, int code, uint64_t off, const char *msg) {
  struct chk *c = arg;
  if (c->calls == 0) {
    c->code0 = code;
    c->off0 = off;
  }
  if (c->calls < 4)
    snprintf(c->msgs[c->calls], sizeof c->msgs[0], "[%s @%" PRIu64 "] %s",
             mm_errname(code), off, msg ? msg : "(null)");
  c->calls++;
}

static void check_clean_at(mm_heap_t *h, const char *what, int line) {
  struct chk c;
  memset(&c, 0, sizeof c);
  uint64_t n = 12345;
  int rc = mm_heap_check(h, chk_cb, &c, &n);
  if (rc != 0 || n != 0 || c.calls != 0)
    mm_test_fail(__FILE__, line,
                 "%s: mm_heap_check returned %s, nfound %" PRIu64
                 ", %" PRIu64 " reports: %s | %s | %s | %s",
                 what, mm_errname(rc), n, c.calls, c.msgs[0], c.msgs[1],
                 c.msgs[2], c.msgs[3]);
}
#define CHECK_CLEAN(h, what) check_clean_at((h), (what), __LINE__)

static mm_heap_info_t info_at(mm_heap_t *h, int line) {
  mm_heap_info_t in;
  memset(&in, 0xA5, sizeof in);
  int rc = mm_heap_info(h, &in);
  if (rc != 0) mm_test_fail(__FILE__, line, "mm_heap_info: %s", mm_errname(rc));
  if (in.used + in.free + in.overhead != in.file_size)
    mm_test_fail(__FILE__, line,
                 "info: used %" PRIu64 " + free %" PRIu64 " + overhead %" PRIu64
                 " = %" PRIu64 " != file_size %" PRIu64,
                 in.used, in.free, in.overhead, in.used + in.free + in.overhead,
                 in.file_size);
  if (in.cached > in.free)
    mm_test_fail(__FILE__, line, "info: cached %" PRIu64 " > free %" PRIu64,
                 in.cached, in.free);
  return in;
}
#define INFO(h) info_at((h), __LINE__)

struct span {
  uint64_t off, len;
};

static int span_cmp(const void *a, const void *b) {
  const struct span *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* The live objects are exactly s[0, n) (len filled in here from
 * mm_heap_usable_size): none overlaps another, each lies in the data area,
 * and info's used and objects agree. */
static void check_layout_at(mm_heap_t *h, struct span *s, size_t n,
                            uint64_t data_off, int line) {
  mm_heap_info_t in = info_at(h, line);
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    s[i].len = mm_heap_usable_size(h, s[i].off);
    if (s[i].len == 0)
      mm_test_fail(__FILE__, line, "live object at %" PRIu64 " has usable size 0",
                   s[i].off);
    sum += s[i].len;
  }
  qsort(s, n, sizeof *s, span_cmp);
  for (size_t i = 0; i < n; i++) {
    if (s[i].off < data_off)
      mm_test_fail(__FILE__, line, "object at %" PRIu64 " lies before data_off %" PRIu64,
                   s[i].off, data_off);
    if (s[i].off + s[i].len > in.file_size)
      mm_test_fail(__FILE__, line,
                   "object [%" PRIu64 ", +%" PRIu64 ") ends past file_size %" PRIu64,
                   s[i].off, s[i].len, in.file_size);
    if (i && s[i - 1].off + s[i - 1].len > s[i].off)
      mm_test_fail(__FILE__, line,
                   "objects overlap: [%" PRIu64 ", +%" PRIu64 ") and [%" PRIu64
                   ", +%" PRIu64 ")",
                   s[i - 1].off, s[i - 1].len, s[i].off, s[i].len);
  }
  if (in.objects != n || in.used != sum)
    mm_test_fail(__FILE__, line,
                 "info.objects %" PRIu64 " (want %zu live objects), info.used %" PRIu64
                 " (want the sum of their usable sizes, %" PRIu64 "; diff %" PRId64
                 "); names %" PRIu64 ", cached %" PRIu64 " bytes",
                 in.objects, n, in.used, sum, (int64_t)(in.used - sum), in.names,
                 in.cached);
}
#define CHECK_LAYOUT(h, s, n, data_off) check_layout_at((h), (s), (n), (data_off), __LINE__)

/* An allocation's promised alignment (heap.h: 16; page-run ones, which
 * are every size above 2048, 4096). */
static void check_align_at(uint64_t off, uint64_t size, int line) {
  if (off == 0 || off % MM_HEAP_ALIGN != 0)
    mm_test_fail(__FILE__, line, "alloc of %" PRIu64 " at %" PRIu64 ": not 16-aligned",
                 size, off);
  if (size > 2048 && off % 4096 != 0)
    mm_test_fail(__FILE__, line,
                 "alloc of %" PRIu64 " (page run) at %" PRIu64 ": not 4096-aligned",
                 size, off);
}
#define CHECK_ALIGN(off, size) check_align_at((off), (size), __LINE__)

static uint64_t alloc_fill_at(mm_heap_t *h, uint64_t size, uint64_t seed,
                              int line) {
  uint64_t off = 0;
  int rc = mm_heap_alloc(h, size, &off);
  if (rc != 0)
    mm_test_fail(__FILE__, line, "mm_heap_alloc(%" PRIu64 "): %s", size, mm_errname(rc));
  check_align_at(off, size, line);
  uint64_t us = mm_heap_usable_size(h, off);
  if (us < size)
    mm_test_fail(__FILE__, line, "usable size %" PRIu64 " < %" PRIu64 " asked", us, size);
  pfill(mm_heap_ptr(h, off), size, seed);
  return off;
}
#define ALLOC_FILL(h, size, seed) alloc_fill_at((h), (size), (seed), __LINE__)

/* ------------------------------------------------------------------------ */
/* processes                                                                */

static pid_t fork_flushed(void) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  return pid;
}

static void wait_child_at(pid_t pid, const char *what, int line) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) mm_test_fail(__FILE__, line, "waitpid: %s", strerror(errno));
  if (WIFSIGNALED(st))
    mm_test_fail(__FILE__, line, "%s: child killed by signal %d (%s)", what,
                 WTERMSIG(st), strsignal(WTERMSIG(st)));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    mm_test_fail(__FILE__, line, "%s: child exited with %d", what,
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}
#define WAIT_CHILD(pid, what) wait_child_at((pid), (what), __LINE__)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait for pid at most `secs`; 0 and *st when it ended, -1 when it timed
 * out (it is then killed and reaped). */
static int wait_timeout(pid_t pid, double secs, int *st) {
  double t0 = now_s();
  useconds_t nap = 20;
  for (;;) {
    pid_t r = waitpid(pid, st, WNOHANG);
    if (r == pid) return 0;
    if (r < 0 && errno != EINTR) FAIL("waitpid: %s", strerror(errno));
    if (now_s() - t0 > secs) {
      kill(pid, SIGKILL);
      while (waitpid(pid, st, 0) < 0 && errno == EINTR) {
      }
      return -1;
    }
    usleep(nap);
    if (nap < 2000) nap = nap * 3 / 2;
  }
}

static void xwrite(int fd, const void *b, size_t n) {
  if (write(fd, b, n) != (ssize_t)n) FAIL("write: %s", strerror(errno));
}
static void xread(int fd, void *b, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = read(fd, (char *)b + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) FAIL("read from pipe: %zd (%s)", r, r < 0 ? strerror(errno) : "EOF");
    done += (size_t)r;
  }
}

/* ------------------------------------------------------------------------ */
/* 0. the on-disk header matches doc/heap-format.md                         */

TEST(heap_adv_format_header) {
  crc_selftest();
  const char *path = mm_test_path("h.heap");
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 256 * MiB);
  uint64_t o = ALLOC_FILL(h, 100, 1);
  ASSERT_OK(mm_heap_set_root(h, o));
  mm_heap_info_t in = INFO(h);
  ASSERT_EQ(in.version, 1);
  ASSERT_EQ(in.page_size, pgsz());
  ASSERT_EQ(in.chunk_size, 64 * KiB);
  ASSERT_EQ(in.log_size, 64 * KiB);
  ASSERT_EQ(in.max_size, 256 * MiB);
  ASSERT_EQ(in.durable, 0);
  ASSERT_EQ(in.root, o);
  ASSERT_EQ(in.objects, 1);
  ASSERT_EQ(in.handles, 1);
  /* While open: the header's generation is info's, the uuid is info's. */
  unsigned char a[HDR_SIZE], b[HDR_SIZE];
  hdr_read(path, HDR_A, a);
  hdr_read(path, HDR_B, b);
  uint64_t gmax = 0;
  if (crc_ok(a)) gmax = rd64(a, F_GEN);
  if (crc_ok(b) && rd64(b, F_GEN) > gmax) gmax = rd64(b, F_GEN);
  ASSERT_EQ(in.generation, gmax);
  HCLOSE(h);

  uint64_t data_off = LOG_OFF + 64 * KiB;
  hdr_read(path, HDR_A, a);
  hdr_read(path, HDR_B, b);
  for (int c = 0; c < 2; c++) {
    unsigned char *x = c ? b : a;
    if (memcmp(x, "MMHEAP\r\n", 8) != 0) FAIL("copy %c: no magic", 'A' + c);
    if (!crc_ok(x))
      FAIL("copy %c: stored crc 0x%08x, computed 0x%08x", 'A' + c, rd32(x, F_CRC),
           crc32c(x, F_CRC));
    ASSERT_EQ(rd32(x, F_VERSION), 1);
    ASSERT_EQ(rd32(x, F_HSIZE), 256);
    ASSERT_EQ(rd32(x, F_PAGESIZE), pgsz());
    ASSERT_EQ(rd32(x, F_BYTEORDER), 0x01020304);
    ASSERT_EQ(rd32(x, F_WORDSIZE), sizeof(void *));
    ASSERT_EQ(rd32(x, F_CHUNKSHIFT), 16);
    ASSERT_EQ(rd64(x, F_MAX), 256 * MiB);
    ASSERT_EQ(rd64(x, F_SUPER_OFF), SUPER_OFF);
    ASSERT_EQ(rd64(x, F_SUPER_SIZE), SUPER_SIZE);
    ASSERT_EQ(rd64(x, F_LOG_OFF), LOG_OFF);
    ASSERT_EQ(rd64(x, F_LOG_SIZE), 64 * KiB);
    ASSERT_EQ(rd64(x, F_DATA_OFF), data_off);
    ASSERT_EQ(rd32(x, F_FLAGS) & 1u, 0);
    ASSERT_EQ(rd32(x, F_MUTEX), sizeof(pthread_mutex_t));
    ASSERT(rd64(x, F_ROOT_OFF) >= SUPER_OFF && rd64(x, F_ROOT_OFF) < SUPER_OFF + SUPER_SIZE);
    ASSERT(rd64(x, F_NAMES_OFF) >= SUPER_OFF && rd64(x, F_NAMES_OFF) < SUPER_OFF + SUPER_SIZE);
    for (int i = F_RESERVED; i < F_CRC; i++)
      if (x[i]) FAIL("copy %c: reserved byte %d is 0x%02x", 'A' + c, i, x[i]);
    if (memcmp(x + F_UUID, in.uuid, 16) != 0) FAIL("copy %c: uuid differs from info's", 'A' + c);
  }
  ASSERT(rd64(a, F_GEN) != rd64(b, F_GEN) || memcmp(a, b, HDR_SIZE) == 0);
  uint64_t fs = file_size(path);
  ASSERT(fs >= data_off + 64 * KiB);
  ASSERT_EQ((fs - data_off) % (64 * KiB), 0);
  /* The root pointer lives where the header says. */
  uint64_t root;
  pread_all(path, rd64(a, F_ROOT_OFF), &root, 8);
  ASSERT_EQ(root, o);
}

/* ------------------------------------------------------------------------ */
/* 1. a few thousand objects survive close; a fresh process sees them all   */

#define P1_N 3000
#define P1_MAGIC 0x4E4F44454E4F4445ull

struct p1node {
  uint64_t next, data, size, seed, idx, magic;
};

struct ename {
  char name[MM_HEAP_NAME_MAX + 1];
  uint64_t off;
  int seen;
};

static uint64_t p1_node[P1_N], p1_data[P1_N], p1_size[P1_N], p1_index;
static struct ename p1_names[128];
static int p1_nn;
static const char *p1_path;

static uint64_t p1_seed(int i) { return 0x5EED0000ull + (uint64_t)i * 7919u; }

static uint64_t p1_pick(uint64_t *r) {
  uint64_t p = rnd(r) % 100;
  if (p < 60) return rrange(r, 16, 256);
  if (p < 85) return rrange(r, 257, 2048);
  if (p < 97) return rrange(r, 2049, 65536);
  return rrange(r, 65537, 100 * KiB);
}

static void p1_addname(const char *name, uint64_t off) {
  ASSERT((size_t)p1_nn < NELEM(p1_names));
  ASSERT(strlen(name) <= MM_HEAP_NAME_MAX);
  strcpy(p1_names[p1_nn].name, name);
  p1_names[p1_nn].off = off;
  p1_nn++;
}

static int p1_list_cb(void *arg, const char *name, uint64_t off) {
  int *bad = arg;
  for (int i = 0; i < p1_nn; i++)
    if (strcmp(p1_names[i].name, name) == 0) {
      if (p1_names[i].seen++ || p1_names[i].off != off) (*bad)++;
      return 0;
    }
  (*bad)++;
  return 0;
}

static void p1_verify(mm_heap_t *h, const char *who) {
  uint64_t data_off = LOG_OFF + 64 * KiB;
  mm_heap_info_t in = INFO(h);
  ASSERT_EQ(in.root, p1_node[0]);
  ASSERT_EQ(mm_heap_root(h), p1_node[0]);
  ASSERT_EQ(in.names, p1_nn);
  ASSERT_EQ(in.objects, 2 * P1_N + 1);
  ASSERT_EQ(in.chunk_size, 64 * KiB);
  /* Reading: "handles with a cache slot" - a handle that has not allocated
   * yet may have none; no other handle is open. */
  ASSERT(in.handles <= 1);
  ASSERT_EQ(in.file_size, file_size(p1_path));
  ASSERT_EQ((in.file_size - data_off) % (64 * KiB), 0);
  const uint64_t *idx = mm_heap_ptr(h, p1_index);
  uint64_t cur = mm_heap_root(h);
  for (int i = 0; i < P1_N; i++) {
    if (cur != p1_node[i])
      FAIL("%s: list element %d is at %" PRIu64 ", want %" PRIu64, who, i, cur, p1_node[i]);
    ASSERT_EQ(idx[i], p1_node[i]);
    ASSERT_EQ(mm_heap_valid(h, cur, sizeof(struct p1node)), 1);
    const struct p1node *n = mm_heap_ptr(h, cur);
    ASSERT_EQ(n->magic, P1_MAGIC);
    ASSERT_EQ(n->idx, i);
    ASSERT_EQ(n->data, p1_data[i]);
    ASSERT_EQ(n->size, p1_size[i]);
    ASSERT_EQ(n->seed, p1_seed(i));
    CHECK_ALIGN(n->data, n->size);
    if (mm_heap_usable_size(h, n->data) < n->size)
      FAIL("%s: node %d: usable %" PRIu64 " < %" PRIu64, who, i,
           mm_heap_usable_size(h, n->data), n->size);
    ASSERT_EQ(mm_heap_valid(h, n->data, n->size), 1);
    PCHECK(h, n->data, n->size, n->seed, who);
    cur = n->next;
  }
  ASSERT_EQ(cur, 0);
  for (int i = 0; i < p1_nn; i++) {
    uint64_t off = 0;
    int rc = mm_heap_name_get(h, p1_names[i].name, &off);
    if (rc != 0) FAIL("%s: name %d (%zu bytes): %s", who, i, strlen(p1_names[i].name), mm_errname(rc));
    ASSERT_EQ(off, p1_names[i].off);
    p1_names[i].seen = 0;
  }
  uint64_t off = 0;
  ASSERT_RC(mm_heap_name_get(h, "deleted", &off), -ENOENT);
  int bad = 0;
  ASSERT_OK(mm_heap_name_list(h, p1_list_cb, &bad));
  ASSERT_EQ(bad, 0);
  for (int i = 0; i < p1_nn; i++)
    if (p1_names[i].seen != 1) FAIL("%s: name %d listed %d times", who, i, p1_names[i].seen);
  struct span *s = calloc(2 * P1_N + 1, sizeof *s);
  ASSERT(s);
  for (int i = 0; i < P1_N; i++) {
    s[2 * i].off = p1_node[i];
    s[2 * i + 1].off = p1_data[i];
  }
  s[2 * P1_N].off = p1_index;
  CHECK_LAYOUT(h, s, 2 * P1_N + 1, data_off);
  free(s);
  CHECK_CLEAN(h, who);
}

TEST_T(heap_adv_persist_list, 60) {
  const char *path = mm_test_path("p1.heap");
  p1_path = path;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 1 * GiB);
  uint64_t r = 0x1234567;
  ASSERT_OK(mm_heap_zalloc(h, P1_N * 8, &p1_index));
  CHECK_ALIGN(p1_index, P1_N * 8);
  uint64_t *idx = mm_heap_ptr(h, p1_index);
  for (int i = 0; i < P1_N; i++) ASSERT_EQ(idx[i], 0);
  static uint64_t garb[P1_N];
  int ng = 0;
  struct p1node *prev = NULL;
  for (int i = 0; i < P1_N; i++) {
    ASSERT_OK(mm_heap_alloc(h, sizeof(struct p1node), &p1_node[i]));
    CHECK_ALIGN(p1_node[i], sizeof(struct p1node));
    p1_size[i] = p1_pick(&r);
    p1_data[i] = ALLOC_FILL(h, p1_size[i], p1_seed(i));
    struct p1node *n = mm_heap_ptr(h, p1_node[i]);
    n->next = 0;
    n->data = p1_data[i];
    n->size = p1_size[i];
    n->seed = p1_seed(i);
    n->idx = (uint64_t)i;
    n->magic = P1_MAGIC;
    if (prev) prev->next = p1_node[i];
    prev = n;
    idx[i] = p1_node[i];
    if (i % 5 == 0) garb[ng++] = ALLOC_FILL(h, p1_pick(&r), 99);
    if (i % 10 == 9 && ng > 0) {
      int k = (int)(rnd(&r) % (uint64_t)ng);
      ASSERT_OK(mm_heap_free(h, garb[k]));
      garb[k] = garb[--ng];
    }
    if (i % 50 == 49) { /* resize an older object's data, keeping its bytes */
      int j = i - 25;
      struct p1node *m = mm_heap_ptr(h, p1_node[j]);
      uint64_t ns = p1_pick(&r), keep = ns < p1_size[j] ? ns : p1_size[j];
      uint64_t d = p1_data[j];
      ASSERT_OK(mm_heap_realloc(h, &d, ns));
      CHECK_ALIGN(d, ns);
      PCHECK(h, d, keep, p1_seed(j), "realloc kept");
      pfill(mm_heap_ptr(h, d), ns, p1_seed(j));
      p1_data[j] = m->data = d;
      p1_size[j] = m->size = ns;
    }
  }
  for (int k = 0; k < ng; k++) ASSERT_OK(mm_heap_free(h, garb[k]));
  ASSERT_OK(mm_heap_set_root(h, p1_node[0]));

  char nm[MM_HEAP_NAME_MAX + 1];
  for (int i = 0; i < P1_N; i += 37) {
    snprintf(nm, sizeof nm, "node/%05d", i);
    ASSERT_OK(mm_heap_name_set(h, nm, p1_node[i]));
    p1_addname(nm, p1_node[i]);
  }
  ASSERT_OK(mm_heap_name_set(h, "index", p1_index));
  p1_addname("index", p1_index);
  for (int i = 0; i < MM_HEAP_NAME_MAX; i++) nm[i] = (char)(1 + (i * 7) % 255);
  nm[MM_HEAP_NAME_MAX] = 0;
  ASSERT_OK(mm_heap_name_set(h, nm, p1_node[P1_N - 1]));
  p1_addname(nm, p1_node[P1_N - 1]);
  ASSERT_OK(mm_heap_name_set(h, "\xff\xfe\x01 spaces and / slashes", p1_data[7]));
  p1_addname("\xff\xfe\x01 spaces and / slashes", p1_data[7]);
  ASSERT_OK(mm_heap_name_set(h, "replaced", p1_node[1]));
  ASSERT_OK(mm_heap_name_set(h, "replaced", p1_node[2]));
  p1_addname("replaced", p1_node[2]);
  ASSERT_OK(mm_heap_name_set(h, "deleted", p1_node[3]));
  ASSERT_OK(mm_heap_name_del(h, "deleted"));
  p1_verify(h, "creator");
  HCLOSE(h);

  pid_t pid = fork_flushed();
  if (pid == 0) {
    mm_heap_t *hc = HOPEN(path);
    p1_verify(hc, "child");
    HCLOSE(hc);
    fflush(NULL);
    _exit(0);
  }
  WAIT_CHILD(pid, "verifying child");
  h = HOPEN(path);
  p1_verify(h, "parent reopen");
  HCLOSE(h);
}

/* ------------------------------------------------------------------------ */
/* 2, 3. several processes / threads allocating at once                     */

#define W_SLOTS 48
#define W_OPS 20000

struct wobj {
  uint64_t off, size, seed, slot;
};

struct wstate {
  mm_heap_t *h;
  int id;
  int ops;
  uint64_t rng, counter;
  struct wobj slot[W_SLOTS];
};

static uint64_t pick_mixed(uint64_t *r) {
  uint64_t p = rnd(r) % 1000;
  if (p < 550) return rrange(r, 1, 128);
  if (p < 850) return rrange(r, 129, 2048);
  if (p < 975) return rrange(r, 2049, 32 * KiB);
  return rrange(r, 64 * KiB + 1, 160 * KiB); /* larger than a 64 KiB chunk */
}

static void run_ops(struct wstate *w) {
  mm_heap_t *h = w->h;
  for (int i = 0; i < w->ops; i++) {
    struct wobj *o = &w->slot[rnd(&w->rng) % W_SLOTS];
    if (o->off) {
      const unsigned char *p = mm_heap_ptr(h, o->off);
      int64_t bad = pbad(p, o->size, o->seed);
      if (bad >= 0)
        FAIL("worker %d op %d: object at %" PRIu64 " (%" PRIu64
             " bytes) byte %" PRId64 " was overwritten",
             w->id, i, o->off, o->size, bad);
      if (i % 8 == 0 && mm_heap_valid(h, o->off, o->size) != 1)
        FAIL("worker %d: mm_heap_valid(%" PRIu64 ", %" PRIu64 ") != 1", w->id,
             o->off, o->size);
      int rc = mm_heap_free(h, o->off);
      if (rc != 0)
        FAIL("worker %d op %d: free(%" PRIu64 "): %s", w->id, i, o->off, mm_errname(rc));
      o->off = 0;
    } else {
      o->size = pick_mixed(&w->rng);
      o->seed = ((uint64_t)(w->id + 1) << 40) | ++w->counter;
      int rc = mm_heap_alloc(h, o->size, &o->off);
      if (rc != 0)
        FAIL("worker %d op %d: alloc(%" PRIu64 "): %s", w->id, i, o->size, mm_errname(rc));
      CHECK_ALIGN(o->off, o->size);
      uint64_t us = mm_heap_usable_size(h, o->off);
      if (us < o->size)
        FAIL("worker %d: usable %" PRIu64 " < %" PRIu64, w->id, us, o->size);
      pfill(mm_heap_ptr(h, o->off), o->size, o->seed);
    }
  }
}

struct mf_head {
  uint64_t count, id;
};

/* Name every live object and write a manifest of them. */
static void publish(struct wstate *w) {
  mm_heap_t *h = w->h;
  uint64_t n = 0;
  for (int s = 0; s < W_SLOTS; s++) {
    w->slot[s].slot = (uint64_t)s;
    if (w->slot[s].off) n++;
  }
  uint64_t mf;
  ASSERT_OK(mm_heap_alloc(h, sizeof(struct mf_head) + n * sizeof(struct wobj), &mf));
  struct mf_head *hd = mm_heap_ptr(h, mf);
  struct wobj *e = (struct wobj *)(hd + 1);
  hd->count = n;
  hd->id = (uint64_t)w->id;
  char nm[64];
  for (int s = 0; s < W_SLOTS; s++) {
    if (!w->slot[s].off) continue;
    *e++ = w->slot[s];
    snprintf(nm, sizeof nm, "p/%d/%d", w->id, s);
    ASSERT_OK(mm_heap_name_set(h, nm, w->slot[s].off));
  }
  snprintf(nm, sizeof nm, "m/%d", w->id);
  ASSERT_OK(mm_heap_name_set(h, nm, mf));
}

static int count_names_cb(void *arg, const char *name, uint64_t off) {
  (void)name, (void)off;
  (*(uint64_t *)arg)++;
  return 0;
}

/* The parent's audit after nproc workers published. */
static void audit_published(mm_heap_t *h, int nproc, uint64_t data_off) {
  size_t cap = (size_t)nproc * (W_SLOTS + 1), n = 0;
  struct span *s = calloc(cap, sizeof *s);
  ASSERT(s);
  uint64_t nnames = 0;
  char nm[64];
  for (int id = 0; id < nproc; id++) {
    uint64_t mf = 0;
    snprintf(nm, sizeof nm, "m/%d", id);
    ASSERT_OK(mm_heap_name_get(h, nm, &mf));
    const struct mf_head *hd = mm_heap_ptr(h, mf);
    ASSERT_EQ(hd->id, id);
    ASSERT(hd->count <= W_SLOTS);
    ASSERT(mm_heap_usable_size(h, mf) >= sizeof *hd + hd->count * sizeof(struct wobj));
    s[n++].off = mf;
    nnames++;
    const struct wobj *e = (const struct wobj *)(hd + 1);
    for (uint64_t k = 0; k < hd->count; k++) {
      uint64_t off = 0;
      snprintf(nm, sizeof nm, "p/%d/%d", id, (int)e[k].slot);
      ASSERT_OK(mm_heap_name_get(h, nm, &off));
      ASSERT_EQ(off, e[k].off);
      ASSERT(mm_heap_usable_size(h, off) >= e[k].size);
      ASSERT_EQ(mm_heap_valid(h, off, e[k].size), 1);
      PCHECK(h, off, e[k].size, e[k].seed, "published object");
      s[n++].off = off;
      nnames++;
    }
  }
  mm_heap_info_t in = INFO(h);
  ASSERT_EQ(in.names, nnames);
  ASSERT(in.handles <= 1); /* the workers' handles are closed */
  uint64_t listed = 0;
  ASSERT_OK(mm_heap_name_list(h, count_names_cb, &listed));
  ASSERT_EQ(listed, nnames);
  CHECK_LAYOUT(h, s, n, data_off);
  CHECK_CLEAN(h, "after the workers");

  /* Free everything: nothing is used any more. */
  for (int id = 0; id < nproc; id++)
    for (int sl = 0; sl < W_SLOTS; sl++) {
      snprintf(nm, sizeof nm, "p/%d/%d", id, sl);
      uint64_t off = 0;
      int rc = mm_heap_name_get(h, nm, &off);
      if (rc == -ENOENT) continue;
      ASSERT_OK(rc);
      ASSERT_OK(mm_heap_name_del(h, nm));
      ASSERT_OK(mm_heap_free(h, off));
    }
  for (int id = 0; id < nproc; id++) {
    snprintf(nm, sizeof nm, "m/%d", id);
    uint64_t off = 0;
    ASSERT_OK(mm_heap_name_get(h, nm, &off));
    ASSERT_OK(mm_heap_name_del(h, nm));
    ASSERT_OK(mm_heap_free(h, off));
  }
  in = INFO(h);
  ASSERT_EQ(in.objects, 0);
  ASSERT_EQ(in.used, 0);
  ASSERT_EQ(in.names, 0);
  CHECK_CLEAN(h, "after freeing everything");
  free(s);
}

static void multiproc(int nproc) {
  const char *path = mm_test_path("mp.heap");
  uint64_t data_off = LOG_OFF + 64 * KiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 2 * GiB);
  HCLOSE(h);
  int gate[2];
  ASSERT(pipe(gate) == 0);
  pid_t pids[8];
  for (int i = 0; i < nproc; i++) {
    pids[i] = fork_flushed();
    if (pids[i] == 0) {
      close(gate[1]);
      struct wstate *w = calloc(1, sizeof *w);
      ASSERT(w);
      w->h = HOPEN(path);
      w->id = i;
      w->ops = W_OPS;
      w->rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
      char c;
      while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
      }
      run_ops(w);
      publish(w);
      HCLOSE(w->h);
      fflush(NULL);
      _exit(0);
    }
  }
  close(gate[0]);
  close(gate[1]); /* go */
  for (int i = 0; i < nproc; i++) WAIT_CHILD(pids[i], "worker process");
  h = HOPEN(path);
  audit_published(h, nproc, data_off);
  HCLOSE(h);
  h = HOPEN(path);
  CHECK_CLEAN(h, "reopened");
  ASSERT_EQ(INFO(h).used, 0);
  HCLOSE(h);
}

TEST_T(heap_adv_procs2, 60) { multiproc(2); }
TEST_T(heap_adv_procs4, 90) { multiproc(4); }

static void *thread_main(void *arg) {
  run_ops(arg);
  return NULL;
}

TEST_T(heap_adv_threads4, 90) {
  const char *path = mm_test_path("th.heap");
  uint64_t data_off = LOG_OFF + 64 * KiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 2 * GiB);
  struct wstate *w = calloc(4, sizeof *w);
  ASSERT(w);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    w[i].h = h;
    w[i].id = i;
    w[i].ops = W_OPS;
    w[i].rng = 0xC2B2AE3D27D4EB4Full * (uint64_t)(i + 7);
    ASSERT_EQ(pthread_create(&th[i], NULL, thread_main, &w[i]), 0);
  }
  for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_join(th[i], NULL), 0);
  struct span s[4 * W_SLOTS];
  size_t n = 0;
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < W_SLOTS; k++)
      if (w[i].slot[k].off) {
        PCHECK(h, w[i].slot[k].off, w[i].slot[k].size, w[i].slot[k].seed, "thread object");
        s[n++].off = w[i].slot[k].off;
      }
  CHECK_LAYOUT(h, s, n, data_off);
  CHECK_CLEAN(h, "after the threads");
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < W_SLOTS; k++)
      if (w[i].slot[k].off) ASSERT_OK(mm_heap_free(h, w[i].slot[k].off));
  mm_heap_info_t in = INFO(h);
  ASSERT_EQ(in.objects, 0);
  ASSERT_EQ(in.used, 0);
  CHECK_CLEAN(h, "after freeing everything");
  HCLOSE(h);
  h = HOPEN(path);
  CHECK_CLEAN(h, "reopened");
  ASSERT_EQ(INFO(h).used, 0);
  HCLOSE(h);
  free(w);
}

/* ------------------------------------------------------------------------ */
/* 4. growth by one process is seen by another holding pointers             */

struct gidx {
  uint64_t n;
  struct {
    uint64_t off, size;
  } e[64];
};

TEST_T(heap_adv_growth_shared, 60) {
  const char *path = mm_test_path("g.heap");
  const uint64_t CH = 64 * KiB;
  mm_heap_t *h = HCREATE(path, (uint32_t)CH, 64 * KiB, 1 * GiB);
  HCLOSE(h);

  h = HOPEN(path); /* process A */
  uint64_t x = ALLOC_FILL(h, 1000, 4242);
  unsigned char *px = mm_heap_ptr(h, x);
  void *base0 = mm_heap_base(h);
  ASSERT(base0 != NULL);
  ASSERT(px == (unsigned char *)base0 + x);
  ASSERT_EQ(mm_heap_off(h, px), x);
  ASSERT(mm_heap_ptr(h, 0) == NULL);
  ASSERT_EQ(mm_heap_off(h, NULL), 0);
  uint64_t fs0 = INFO(h).file_size;

  int a2b[2], b2a[2];
  ASSERT(pipe(a2b) == 0 && pipe(b2a) == 0);
  pid_t pid = fork_flushed();
  if (pid == 0) { /* process B: its own handle */
    close(a2b[1]);
    close(b2a[0]);
    mm_heap_t *hb = HOPEN(path);
    void *bbase = mm_heap_base(hb);
    uint64_t gi;
    ASSERT_OK(mm_heap_zalloc(hb, sizeof(struct gidx), &gi));
    struct gidx *g = mm_heap_ptr(hb, gi);
    static const uint64_t sizes[] = {40000, 70000, 3000, 100, 150000, 20000};
    while (INFO(hb).file_size < fs0 + 8 * CH || g->n < 20) {
      ASSERT(g->n < NELEM(g->e));
      uint64_t sz = sizes[g->n % NELEM(sizes)];
      g->e[g->n].off = ALLOC_FILL(hb, sz, 5000 + g->n);
      g->e[g->n].size = sz;
      g->n++;
    }
    ASSERT(file_size(path) >= fs0 + 8 * CH);
    ASSERT_OK(mm_heap_name_set(hb, "growth", gi));
    xwrite(b2a[1], "g", 1);
    char c;
    xread(a2b[0], &c, 1);
    /* A grew the heap in turn: B sees A's objects without reopening. */
    uint64_t ai;
    ASSERT_OK(mm_heap_name_get(hb, "fromA", &ai));
    const struct gidx *ga = mm_heap_ptr(hb, ai);
    ASSERT(ga->n > 0 && ga->n <= NELEM(ga->e));
    for (uint64_t i = 0; i < ga->n; i++) {
      ASSERT_EQ(mm_heap_valid(hb, ga->e[i].off, ga->e[i].size), 1);
      PCHECK(hb, ga->e[i].off, ga->e[i].size, 9000 + i, "B reads A's object");
    }
    ASSERT(mm_heap_base(hb) == bbase);
    HCLOSE(hb);
    fflush(NULL);
    _exit(0);
  }
  close(a2b[0]);
  close(b2a[1]);
  char c;
  xread(b2a[0], &c, 1);
  ASSERT(mm_heap_base(h) == base0);
  mm_heap_info_t in = INFO(h);
  ASSERT(in.file_size >= fs0 + 8 * CH);
  ASSERT_EQ(in.handles, 2);
  uint64_t gi = 0;
  ASSERT_OK(mm_heap_name_get(h, "growth", &gi));
  const struct gidx *g = mm_heap_ptr(h, gi);
  ASSERT(g->n >= 20 && g->n <= NELEM(g->e));
  uint64_t maxend = 0;
  for (uint64_t i = 0; i < g->n; i++) {
    uint64_t off = g->e[i].off, sz = g->e[i].size;
    if (off + sz > maxend) maxend = off + sz;
    if (mm_heap_valid(h, off, sz) != 1)
      FAIL("A: mm_heap_valid(%" PRIu64 ", %" PRIu64 ") of B's object %" PRIu64
           " is not 1 (A opened at file size %" PRIu64 ")",
           off, sz, i, fs0);
    ASSERT(mm_heap_usable_size(h, off) >= sz);
    PCHECK(h, off, sz, 5000 + i, "A reads B's object");
  }
  ASSERT(maxend > fs0); /* some object lies in space A never saw at open */
  PCHECK(h, x, 1000, 4242, "A's first object");
  ASSERT(mm_heap_ptr(h, x) == px);

  /* A grows it further; B must see that. */
  uint64_t ai;
  ASSERT_OK(mm_heap_zalloc(h, sizeof(struct gidx), &ai));
  struct gidx *ga = mm_heap_ptr(h, ai);
  uint64_t fs1 = INFO(h).file_size;
  while (INFO(h).file_size < fs1 + 4 * CH || ga->n < 8) {
    ASSERT(ga->n < NELEM(ga->e));
    uint64_t sz = ga->n % 3 == 2 ? 150000 : 50000;
    ga->e[ga->n].off = ALLOC_FILL(h, sz, 9000 + ga->n);
    ga->e[ga->n].size = sz;
    ga->n++;
  }
  ASSERT_OK(mm_heap_name_set(h, "fromA", ai));
  for (uint64_t i = 0; i < g->n; i++)
    PCHECK(h, g->e[i].off, g->e[i].size, 5000 + i, "B's object after A grew");
  xwrite(a2b[1], "a", 1);
  WAIT_CHILD(pid, "process B");
  ASSERT(mm_heap_base(h) == base0);
  PCHECK(h, x, 1000, 4242, "A's first object at the end");
  CHECK_CLEAN(h, "after growth by two processes");
  HCLOSE(h);
}

/* Opening while another process grows the heap: every open succeeds
 * ("any number of processes may open one heap at once"). */
TEST_T(heap_adv_open_during_growth, 60) {
  const char *path = mm_test_path("og.heap");
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 1 * GiB);
  uint64_t o = ALLOC_FILL(h, 300, 777);
  ASSERT_OK(mm_heap_set_root(h, o));
  HCLOSE(h);
  int done[2];
  ASSERT(pipe(done) == 0);
  pid_t g = fork_flushed();
  if (g == 0) { /* the grower */
    close(done[0]);
    mm_heap_t *hg = HOPEN(path);
    uint64_t i = 0;
    while (INFO(hg).file_size < 40 * MiB) {
      uint64_t x;
      int rc = mm_heap_alloc(hg, 70 * KiB, &x);
      if (rc != 0) FAIL("grower: alloc %" PRIu64 ": %s", i, mm_errname(rc));
      *(uint64_t *)mm_heap_ptr(hg, x) = i++;
    }
    HCLOSE(hg);
    _exit(0); /* closes done[1]: EOF for the opener */
  }
  close(done[1]);
  int opens = 0, fails = 0, first = 0, other = 0;
  ASSERT(fcntl(done[0], F_SETFL, fcntl(done[0], F_GETFL) | O_NONBLOCK) == 0);
  for (;;) {
    char c;
    ssize_t r = read(done[0], &c, 1);
    if (r == 0) break; /* the grower is done */
    mm_heap_t *ho;
    int rc = HOPEN_RC(&ho, path, 0, 0, 0, 0, 0);
    opens++;
    if (rc != 0) {
      if (!fails++) first = rc;
      else if (rc != first) other = rc;
      continue;
    }
    if (mm_heap_root(ho) != o) FAIL("open %d: root %" PRIu64 ", want %" PRIu64, opens,
                                    mm_heap_root(ho), o);
    PCHECK(ho, o, 300, 777, "probe");
    HCLOSE(ho);
  }
  WAIT_CHILD(g, "grower");
  fprintf(stderr, "# %d opens during growth, %d failed\n", opens, fails);
  if (fails)
    FAIL("%d of %d opens during growth failed, the first with %s%s%s", fails, opens,
         mm_errname(first), other ? ", also " : "", other ? mm_errname(other) : "");
  ASSERT(opens >= 10);
  h = HOPEN(path);
  CHECK_CLEAN(h, "after growth");
  HCLOSE(h);
}

/* ------------------------------------------------------------------------ */
/* extra: dead processes and the lock                                       */

/* A process dies (SIGKILL) with a full per-thread cache, some of it freed
 * blocks: the next opener takes the cache back, nothing is handed out
 * twice, the dead process's stored objects stay live. */
TEST_T(heap_adv_dead_process_cache, 60) {
  const char *path = mm_test_path("dc.heap");
  uint64_t data_off = LOG_OFF + 64 * KiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 256 * MiB);
  HCLOSE(h);
  pid_t pid = fork_flushed();
  if (pid == 0) {
    mm_heap_t *hc = HOPEN(path);
    uint64_t idx;
    ASSERT_OK(mm_heap_zalloc(hc, 8 * 101, &idx));
    uint64_t *ix = mm_heap_ptr(hc, idx);
    uint64_t o[200];
    for (int i = 0; i < 200; i++) o[i] = ALLOC_FILL(hc, 48, 3000 + (uint64_t)i);
    for (int i = 0; i < 200; i += 2) ASSERT_OK(mm_heap_free(hc, o[i]));
    for (int i = 0; i < 100; i++) ix[i] = o[2 * i + 1];
    ix[100] = 0xD1E;
    ASSERT_OK(mm_heap_name_set(hc, "kept", idx));
    fflush(NULL);
    raise(SIGKILL);
    _exit(3);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  h = HOPEN(path);
  CHECK_CLEAN(h, "after the dead process");
  uint64_t idx;
  ASSERT_OK(mm_heap_name_get(h, "kept", &idx));
  const uint64_t *ix = mm_heap_ptr(h, idx);
  ASSERT_EQ(ix[100], 0xD1E);
  struct span s[101 + 600];
  size_t n = 0;
  s[n++].off = idx;
  for (int i = 0; i < 100; i++) {
    PCHECK(h, ix[i], 48, 3000 + 2 * (uint64_t)i + 1, "dead process's object");
    s[n++].off = ix[i];
  }
  mm_heap_info_t in = INFO(h);
  ASSERT(in.handles <= 1);
  CHECK_LAYOUT(h, s, n, data_off);
  /* New allocations never land on the dead process's live objects. */
  for (int i = 0; i < 600; i++) s[n++].off = ALLOC_FILL(h, i % 2 ? 48 : 40, 7000 + (uint64_t)i);
  CHECK_LAYOUT(h, s, n, data_off);
  for (int i = 0; i < 100; i++) PCHECK(h, ix[i], 48, 3000 + 2 * (uint64_t)i + 1, "after reuse");
  CHECK_CLEAN(h, "after reuse");
  HCLOSE(h);
}

/* Kill a transaction's holder: the next opener, and a process that had the
 * heap open all along and takes the lock next, see it rolled back. */
static void tx_victim(const char *path, uint64_t x) {
  mm_heap_t *hc = HOPEN(path);
  ASSERT_OK(mm_heap_tx_begin(hc, NULL));
  ASSERT_OK(mm_heap_tx_add(hc, x, 4096));
  memset(mm_heap_ptr(hc, x), 0, 4096);
  uint64_t y = ALLOC_FILL(hc, 100, 5);
  uint64_t z = ALLOC_FILL(hc, 100 * KiB, 6);
  ASSERT_OK(mm_heap_name_set(hc, "y", y));
  ASSERT_OK(mm_heap_set_root(hc, z));
  ASSERT_OK(mm_heap_free(hc, x + 0)); /* takes effect at commit only */
  fflush(NULL);
  raise(SIGKILL);
  _exit(3);
}

static void tx_after(mm_heap_t *h, uint64_t x, uint64_t objects0, const char *who) {
  PCHECK(h, x, 4096, 1, who);
  uint64_t y;
  ASSERT_RC(mm_heap_name_get(h, "y", &y), -ENOENT);
  ASSERT_EQ(mm_heap_root(h), x);
  ASSERT(mm_heap_usable_size(h, x) >= 4096);
  ASSERT_EQ(INFO(h).objects, objects0);
  CHECK_CLEAN(h, who);
}

TEST_T(heap_adv_tx_dead_holder, 60) {
#if defined(__SANITIZE_THREAD__)
  SKIP("ThreadSanitizer does not model a robust mutex whose owner died in another process");
#endif
  const char *path = mm_test_path("td.heap");
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 256 * MiB);
  uint64_t x = ALLOC_FILL(h, 4096, 1);
  ASSERT_OK(mm_heap_set_root(h, x));
  uint64_t objects0 = INFO(h).objects;
  ASSERT_EQ(objects0, 1);
  HCLOSE(h);
  int st;
  /* 1: nobody has it open; the next open recovers. */
  pid_t pid = fork_flushed();
  if (pid == 0) tx_victim(path, x);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  h = HOPEN(path);
  tx_after(h, x, objects0, "recovered at open");
  /* 2: this process keeps it open; its next lock recovers. */
#if defined(__SANITIZE_THREAD__)
  /* TSan's pthread_mutex_timedlock interceptor does not record a lock that
   * returned EOWNERDEAD and then reports the unlock as "unlock of an
   * unlocked mutex" (reproduced with a plain robust mutex, no memmap). */
  HCLOSE(h);
  SKIP("part 2 (recovery at the next lock): TSan does not model timedlock's EOWNERDEAD");
#endif
  pid = fork_flushed();
  if (pid == 0) tx_victim(path, x);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  mm_heap_tx_opts_t to = {0, 5000};
  ASSERT_OK(mm_heap_tx_begin(h, &to));
  PCHECK(h, x, 4096, 1, "rolled back when the lock was taken");
  ASSERT_OK(mm_heap_tx_abort(h));
  tx_after(h, x, objects0, "recovered at lock");
  HCLOSE(h);
  h = HOPEN(path);
  tx_after(h, x, objects0, "reopened");
  HCLOSE(h);
}

/* Another process holds the lock: waits end with -ETIMEDOUT. */
TEST_T(heap_adv_lock_timeout, 60) {
  const char *path = mm_test_path("lt.heap");
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 256 * MiB);
  HCLOSE(h);
  int a2b[2], b2a[2];
  ASSERT(pipe(a2b) == 0 && pipe(b2a) == 0);
  pid_t pid = fork_flushed();
  if (pid == 0) {
    mm_heap_t *hc = HOPEN(path);
    ASSERT_OK(mm_heap_tx_begin(hc, NULL));
    xwrite(b2a[1], "l", 1);
    char c;
    xread(a2b[0], &c, 1);
    ASSERT_OK(mm_heap_tx_commit(hc));
    HCLOSE(hc);
    _exit(0);
  }
  char c;
  xread(b2a[0], &c, 1);
  mm_heap_opts_t o;
  memset(&o, 0, sizeof o);
  o.lock_timeout_ms = 200;
  ASSERT_OK(mm_heap_open(&h, path, &o));
  double t0 = now_s();
  ASSERT_RC(mm_heap_tx_begin(h, NULL), -ETIMEDOUT);
  double dt = now_s() - t0;
  if (dt < 0.15 || dt > 5 * tscale()) FAIL("tx_begin timed out after %.3f s, want ~0.2", dt);
  mm_heap_tx_opts_t to = {0, 50};
  t0 = now_s();
  ASSERT_RC(mm_heap_tx_begin(h, &to), -ETIMEDOUT);
  dt = now_s() - t0;
  if (dt < 0.03 || dt > 5 * tscale()) FAIL("tx_begin(50 ms) timed out after %.3f s", dt);
  ASSERT_EQ(mm_heap_tx_active(h), 0);
  uint64_t off;
  ASSERT_RC(mm_heap_alloc(h, 100 * KiB, &off), -ETIMEDOUT); /* needs the lock */
  xwrite(a2b[1], "u", 1);
  WAIT_CHILD(pid, "lock holder");
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_tx_commit(h));
  off = ALLOC_FILL(h, 100 * KiB, 1);
  ASSERT_EQ(INFO(h).objects, 1);
  CHECK_CLEAN(h, "after the timeouts");
  HCLOSE(h);
}

/* ------------------------------------------------------------------------ */
/* 5. files that are not (good) heaps                                       */

/* A small heap with one named, filled object as the root. Returns its
 * offset. */
static uint64_t make_heap(const char *path, uint64_t nbig) {
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 64 * MiB);
  uint64_t o = ALLOC_FILL(h, 300, 777);
  ASSERT_OK(mm_heap_set_root(h, o));
  ASSERT_OK(mm_heap_name_set(h, "probe", o));
  for (uint64_t i = 0; i < nbig; i++) (void)ALLOC_FILL(h, 100 * KiB, 800 + i);
  HCLOSE(h);
  return o;
}

/* The heap opens, its probe object is intact. */
static void probe_ok_at(const char *path, uint64_t o, int line) {
  mm_heap_t *h;
  int rc = hopen_at(&h, path, 0, 0, 0, 0, 0, line);
  if (rc != 0) mm_test_fail(__FILE__, line, "open: %s", mm_errname(rc));
  if (mm_heap_root(h) != o) mm_test_fail(__FILE__, line, "root changed");
  pcheck_at(h, o, 300, 777, "probe", line);
  mm_heap_close(h);
}

/* Open must fail with exactly `want`, leave *out NULL and the file as it
 * was, byte for byte. */
static void expect_open_at(const char *path, int want, int line) {
  uint64_t n0, n1;
  unsigned char *before = slurp(path, &n0);
  mm_heap_t *h;
  int rc = hopen_at(&h, path, 0, 0, 0, 0, 0, line);
  if (rc == 0) mm_heap_close(h);
  if (rc != want)
    mm_test_fail(__FILE__, line, "open: got %s, want %s", mm_errname(rc), mm_errname(want));
  unsigned char *after = slurp(path, &n1);
  if (n0 != n1)
    mm_test_fail(__FILE__, line, "refused open changed the file size %" PRIu64 " -> %" PRIu64, n0, n1);
  for (uint64_t i = 0; i < n0; i++)
    if (before[i] != after[i])
      mm_test_fail(__FILE__, line, "refused open changed file byte %" PRIu64, i);
  free(before);
  free(after);
}
#define EXPECT_OPEN(path, want) expect_open_at((path), (want), __LINE__)

TEST(heap_adv_bad_random) {
  const char *path = mm_test_path("random");
  static const uint64_t sizes[] = {100, 4096, 8192, 256 * KiB, 1 * MiB + 123};
  for (size_t i = 0; i < NELEM(sizes); i++) {
    mm_test_write_file(path, sizes[i]);
    EXPECT_OPEN(path, MM_ENOTHEAP);
  }
  /* Random bytes from a generator, too. */
  unsigned char *b = malloc(300 * KiB);
  ASSERT(b);
  uint64_t r = 99;
  for (size_t i = 0; i < 300 * KiB; i++) b[i] = (unsigned char)rnd(&r);
  write_bytes(path, b, 300 * KiB);
  EXPECT_OPEN(path, MM_ENOTHEAP);
  free(b);
}

TEST(heap_adv_bad_text) {
  const char *path = mm_test_path("text");
  char *t = malloc(200 * KiB);
  ASSERT(t);
  size_t n = 0;
  while (n + 80 < 200 * KiB)
    n += (size_t)sprintf(t + n, "line %zu: the quick brown fox jumps over the lazy dog\n", n);
  write_bytes(path, t, n);
  EXPECT_OPEN(path, MM_ENOTHEAP);
  const char *s = "hello\n";
  write_bytes(path, s, strlen(s));
  EXPECT_OPEN(path, MM_ENOTHEAP);
  free(t);
}

TEST(heap_adv_bad_empty) {
  const char *path = mm_test_path("empty");
  write_bytes(path, "", 0);
  EXPECT_OPEN(path, MM_ENOTHEAP);
  /* A short file: the magic alone. */
  write_bytes(path, "MMHEAP\r\n", 8);
  EXPECT_OPEN(path, MM_ENOTHEAP);
  /* A page of zeros. */
  static const unsigned char z[8192];
  write_bytes(path, z, sizeof z);
  EXPECT_OPEN(path, MM_ENOTHEAP);
}

TEST(heap_adv_bad_truncated) {
  const char *path = mm_test_path("t.heap");
  uint64_t o = make_heap(path, 8); /* 8 objects of 100 KiB: >= 16 chunks */
  uint64_t n;
  unsigned char *img = slurp(path, &n);
  uint64_t data_off = LOG_OFF + 64 * KiB;
  ASSERT(n >= data_off + 16 * 64 * KiB);
  const uint64_t cuts[] = {n - 64 * KiB, n - 1, n - 4096, data_off + 64 * KiB,
                           data_off, LOG_OFF + 100, SUPER_OFF + 4096};
  for (size_t i = 0; i < NELEM(cuts); i++) {
    restore(path, img, n);
    if (truncate(path, (off_t)cuts[i]) != 0) FAIL("truncate: %s", strerror(errno));
    fprintf(stderr, "# truncated to %" PRIu64 " of %" PRIu64 "\n", cuts[i], n);
    EXPECT_OPEN(path, MM_ETRUNCATED);
  }
  restore(path, img, n);
  probe_ok_at(path, o, __LINE__);
  free(img);
}

TEST(heap_adv_bad_version) {
  crc_selftest();
  const char *path = mm_test_path("v.heap");
  uint64_t o = make_heap(path, 0);
  uint64_t n;
  unsigned char *img = slurp(path, &n);
  patch_both32(path, F_VERSION, 2);
  EXPECT_OPEN(path, MM_EVERSION);
  restore(path, img, n);
  patch_both32(path, F_VERSION, 0xFFFFFFFFu);
  EXPECT_OPEN(path, MM_EVERSION);
  restore(path, img, n);
  probe_ok_at(path, o, __LINE__);
  free(img);
}

TEST(heap_adv_bad_incompat) {
  crc_selftest();
  const char *path = mm_test_path("i.heap");
  uint64_t o = make_heap(path, 0);
  uint64_t n;
  unsigned char *img = slurp(path, &n);
  unsigned char h[HDR_SIZE];
  hdr_read(path, HDR_A, h);
  uint64_t inc = rd64(h, F_INCOMPAT);
  static const int bits[] = {63, 31, 20};
  for (size_t i = 0; i < NELEM(bits); i++) {
    restore(path, img, n);
    patch_both64(path, F_INCOMPAT, inc | (1ull << bits[i]));
    EXPECT_OPEN(path, MM_EVERSION);
  }
  restore(path, img, n);
  probe_ok_at(path, o, __LINE__);
  free(img);
}

TEST(heap_adv_compat_unknown_ok) {
  crc_selftest();
  const char *path = mm_test_path("c.heap");
  uint64_t o = make_heap(path, 0);
  unsigned char h[HDR_SIZE];
  hdr_read(path, HDR_A, h);
  patch_both64(path, F_COMPAT, rd64(h, F_COMPAT) | (1ull << 63) | (1ull << 17));
  mm_heap_t *hp = HOPEN(path);
  ASSERT_EQ(mm_heap_root(hp), o);
  PCHECK(hp, o, 300, 777, "probe");
  CHECK_CLEAN(hp, "unknown compat bits");
  uint64_t x = ALLOC_FILL(hp, 5000, 1);
  ASSERT_OK(mm_heap_name_set(hp, "x", x));
  HCLOSE(hp);
  hp = HOPEN(path);
  uint64_t y;
  ASSERT_OK(mm_heap_name_get(hp, "x", &y));
  ASSERT_EQ(y, x);
  PCHECK(hp, x, 5000, 1, "x");
  CHECK_CLEAN(hp, "reopened");
  HCLOSE(hp);
}

static void platform_case(int field, uint32_t value) {
  crc_selftest();
  const char *path = mm_test_path("pf.heap");
  uint64_t o = make_heap(path, 0);
  uint64_t n;
  unsigned char *img = slurp(path, &n);
  patch_both32(path, field, value);
  EXPECT_OPEN(path, MM_EPLATFORM);
  restore(path, img, n);
  probe_ok_at(path, o, __LINE__);
  free(img);
}

TEST(heap_adv_platform_byteorder) { platform_case(F_BYTEORDER, 0x04030201u); }
TEST(heap_adv_platform_pagesize) {
  platform_case(F_PAGESIZE, pgsz() == 4096 ? 65536u : 4096u);
}
TEST(heap_adv_platform_wordsize) {
  platform_case(F_WORDSIZE, sizeof(void *) == 8 ? 4u : 8u);
}
TEST(heap_adv_platform_mutexsize) {
  platform_case(F_MUTEX, (uint32_t)sizeof(pthread_mutex_t) + 8u);
}

TEST(heap_adv_crc_both_broken) {
  crc_selftest();
  const char *path = mm_test_path("cb.heap");
  uint64_t o = make_heap(path, 0);
  uint64_t n;
  unsigned char *img = slurp(path, &n);
  unsigned char h[HDR_SIZE];
  /* A uuid byte changed, CRC left alone, in both. */
  for (int c = 0; c < 2; c++) {
    hdr_read(path, c ? HDR_B : HDR_A, h);
    h[F_UUID + 3] ^= 0x5A;
    hdr_write(path, c ? HDR_B : HDR_A, h);
  }
  EXPECT_OPEN(path, MM_ECORRUPT);
  /* The stored CRC itself wrong, in both. */
  restore(path, img, n);
  for (int c = 0; c < 2; c++) {
    hdr_read(path, c ? HDR_B : HDR_A, h);
    h[F_CRC] ^= 0x01;
    hdr_write(path, c ? HDR_B : HDR_A, h);
  }
  EXPECT_OPEN(path, MM_ECORRUPT);
  restore(path, img, n);
  probe_ok_at(path, o, __LINE__);
  free(img);
}

static void one_copy_broken(int copy) {
  crc_selftest();
  const char *path = mm_test_path("c1.heap");
  uint64_t o = make_heap(path, 0);
  unsigned char h[HDR_SIZE];
  hdr_read(path, copy, h);
  ASSERT(crc_ok(h));
  h[F_UUID + 5] ^= 0x10;
  hdr_write(path, copy, h);
  mm_heap_t *hp = HOPEN(path);
  ASSERT_EQ(mm_heap_root(hp), o);
  PCHECK(hp, o, 300, 777, "probe");
  uint64_t got = 0;
  ASSERT_OK(mm_heap_name_get(hp, "probe", &got));
  ASSERT_EQ(got, o);
  struct chk c;
  memset(&c, 0, sizeof c);
  uint64_t nf = 0;
  int rc = mm_heap_check(hp, chk_cb, &c, &nf);
  if (rc != MM_ECORRUPT || nf == 0 || c.calls == 0) {
    hdr_read(path, copy, h);
    FAIL("copy %c broken: mm_heap_check returned %s, nfound %" PRIu64
         ", %" PRIu64 " reports; want MM_ECORRUPT and a finding (the copy on "
         "disk is now %s)",
         copy ? 'B' : 'A', mm_errname(rc), nf, c.calls,
         crc_ok(h) ? "valid again: open rewrote it" : "still broken");
  }
  ASSERT_EQ(nf, c.calls);
  fprintf(stderr, "# copy %c broken: %s\n", copy ? 'B' : 'A', c.msgs[0]);
  HCLOSE(hp);
}

TEST(heap_adv_crc_one_broken_a) { one_copy_broken(HDR_A); }
TEST(heap_adv_crc_one_broken_b) { one_copy_broken(HDR_B); }

/* ------------------------------------------------------------------------ */
/* 6. byte flips                                                            */

struct probe_res {
  int open_rc, check_rc, close_rc, root_ok, name_ok, unchanged;
  uint64_t nfound, calls;
  char msg[160];
};

enum { PR_OK, PR_CRASH, PR_HANG, PR_EXIT };

/* Open + check + close in a child, with a time limit. want_root: when
 * nonzero, also check the root and the "probe" name. */
static int probe_child(const char *path, uint64_t want_root, struct probe_res *res,
                       int *sig) {
  int pfd[2];
  if (pipe(pfd) != 0) FAIL("pipe: %s", strerror(errno));
  pid_t pid = fork_flushed();
  if (pid == 0) {
    close(pfd[0]);
    alarm((unsigned)(10 * tscale())); /* a hang dies of SIGALRM */
    struct probe_res r;
    memset(&r, 0, sizeof r);
    mm_heap_t *h = NULL;
    mm_heap_opts_t o;
    memset(&o, 0, sizeof o);
    o.lock_timeout_ms = 3000;
    r.open_rc = mm_heap_open(&h, path, &o);
    if (r.open_rc == 0) {
      struct chk c;
      memset(&c, 0, sizeof c);
      r.check_rc = mm_heap_check(h, chk_cb, &c, &r.nfound);
      r.calls = c.calls;
      snprintf(r.msg, sizeof r.msg, "%s", c.msgs[0]);
      if (want_root) {
        uint64_t got = 0;
        r.root_ok = mm_heap_root(h) == want_root;
        r.name_ok = mm_heap_name_get(h, "probe", &got) == 0 && got == want_root;
      }
      r.close_rc = mm_heap_close(h);
    } else {
      r.root_ok = h == NULL;
    }
    xwrite(pfd[1], &r, sizeof r);
    _exit(0);
  }
  close(pfd[1]);
  int st = 0;
  int w = wait_timeout(pid, 30 * tscale(), &st);
  int out;
  if (w < 0 || (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)) out = PR_HANG;
  else if (WIFSIGNALED(st)) {
    *sig = WTERMSIG(st);
    out = PR_CRASH;
  } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) out = PR_EXIT;
  else {
    memset(res, 0, sizeof *res);
    xread(pfd[0], res, sizeof *res);
    out = PR_OK;
  }
  close(pfd[0]);
  return out;
}

static void flip_header(int copy) {
  crc_selftest();
  const char *path = mm_test_path("fh.heap");
  uint64_t o = make_heap(path, 0);
  uint64_t n;
  unsigned char *img = slurp(path, &n);
  struct probe_res r;
  int sig = 0;
  ASSERT_EQ(probe_child(path, o, &r, &sig), PR_OK);
  ASSERT_OK(r.open_rc);
  ASSERT_OK(r.check_rc);
  ASSERT_EQ(r.nfound, 0);
  ASSERT(r.root_ok && r.name_ok);

  int bad = 0, refused = 0, reported = 0, total = 0;
  static const unsigned char masks[] = {0xFF, 0x01};
  for (int i = 0; i < HDR_SIZE; i++)
    for (size_t m = 0; m < NELEM(masks); m++) {
      unsigned char mask = masks[m] == 0x01 ? (unsigned char)(1u << (i % 8)) : masks[m];
      restore(path, img, n);
      unsigned char b = (unsigned char)(img[copy + i] ^ mask);
      pwrite_all(path, (uint64_t)copy + (uint64_t)i, &b, 1);
      total++;
      int out = probe_child(path, o, &r, &sig);
      char why[256] = "";
      if (out == PR_CRASH) snprintf(why, sizeof why, "crashed (signal %d)", sig);
      else if (out == PR_HANG) snprintf(why, sizeof why, "hung");
      else if (out == PR_EXIT) snprintf(why, sizeof why, "child failed");
      else if (r.open_rc != 0) {
        refused++;
        if (r.open_rc > 0 || !r.root_ok)
          snprintf(why, sizeof why, "open returned %d and *out not NULL", r.open_rc);
        else {
          /* Refused: the file must be unchanged. */
          uint64_t n2;
          unsigned char *now = slurp(path, &n2);
          unsigned char *want = malloc(n);
          ASSERT(want);
          memcpy(want, img, n);
          want[copy + i] = b;
          if (n2 != n || memcmp(now, want, n) != 0)
            snprintf(why, sizeof why, "refused (%s) but changed the file",
                     mm_errname(r.open_rc));
          free(now);
          free(want);
        }
      } else if (r.check_rc != MM_ECORRUPT || r.nfound == 0) {
        snprintf(why, sizeof why, "opened, check returned %s nfound %" PRIu64,
                 mm_errname(r.check_rc), r.nfound);
      } else if (!r.root_ok || !r.name_ok) {
        snprintf(why, sizeof why, "opened, but root/name wrong");
      } else if (r.close_rc != 0) {
        snprintf(why, sizeof why, "close returned %s", mm_errname(r.close_rc));
      } else {
        reported++;
      }
      if (why[0]) {
        if (bad < 12)
          fprintf(stderr, "# copy %c byte %d ^0x%02x: %s\n", copy ? 'B' : 'A', i,
                  mask, why);
        bad++;
      }
    }
  fprintf(stderr, "# copy %c: %d flips: %d refused at open, %d opened and reported by check, %d bad\n",
          copy ? 'B' : 'A', total, refused, reported, bad);
  restore(path, img, n);
  free(img);
  if (bad) FAIL("%d of %d header flips handled wrongly (see above)", bad, total);
}

TEST_T(heap_adv_flip_header_a, 120) { flip_header(HDR_A); }
TEST_T(heap_adv_flip_header_b, 120) { flip_header(HDR_B); }

TEST_T(heap_adv_flip_pagemap, 120) {
  const char *path = mm_test_path("fp.heap");
  const uint64_t CH = 1 * MiB;
  uint64_t data_off = LOG_OFF + 64 * KiB;
  mm_heap_t *h = HCREATE(path, (uint32_t)CH, 64 * KiB, 64 * MiB);
  /* Fill chunk 0 with a mix: size-class runs, page runs of several
   * lengths, then single pages until the heap must grow. */
  uint64_t seed = 1;
  for (int i = 0; i < 300; i++) (void)ALLOC_FILL(h, 48, seed++);
  for (int i = 0; i < 100; i++) (void)ALLOC_FILL(h, 1000, seed++);
  for (int i = 0; i < 20; i++) (void)ALLOC_FILL(h, 3000, seed++);
  for (int i = 0; i < 10; i++) (void)ALLOC_FILL(h, 20000, seed++);
  int guard = 0;
  while (INFO(h).file_size <= data_off + CH) {
    (void)ALLOC_FILL(h, 4096, seed++);
    ASSERT(++guard < 1000);
  }
  HCLOSE(h);
  uint64_t n;
  unsigned char *img = slurp(path, &n);
  struct probe_res r;
  int sig = 0;
  ASSERT_EQ(probe_child(path, 0, &r, &sig), PR_OK);
  ASSERT_OK(r.open_rc);
  ASSERT_OK(r.check_rc);
  ASSERT_EQ(r.nfound, 0);

  int crashes = 0, hangs = 0, other = 0, total = 0, detected = 0, missed64 = 0;
  int detected64 = 0;
  for (uint64_t k = 0; k < 4096; k += (k < 256 ? 1 : 16)) {
    restore(path, img, n);
    unsigned char b = (unsigned char)(img[data_off + k] ^ 0xFF);
    pwrite_all(path, data_off + k, &b, 1);
    total++;
    int out = probe_child(path, 0, &r, &sig);
    if (out == PR_CRASH) {
      if (crashes++ < 10)
        fprintf(stderr, "# page map byte %" PRIu64 ": crashed (signal %d)\n", k, sig);
      continue;
    }
    if (out == PR_HANG) {
      if (hangs++ < 10) fprintf(stderr, "# page map byte %" PRIu64 ": hung\n", k);
      continue;
    }
    if (out != PR_OK) {
      if (other++ < 10) fprintf(stderr, "# page map byte %" PRIu64 ": child failed\n", k);
      continue;
    }
    int det = r.open_rc != 0 || r.check_rc != 0;
    if (r.open_rc == 0 &&
        ((r.check_rc == 0 && r.nfound != 0) ||
         (r.check_rc == MM_ECORRUPT && r.nfound == 0) ||
         r.calls != (r.nfound < 1000 ? r.nfound : 1000))) {
      if (other++ < 10)
        fprintf(stderr, "# page map byte %" PRIu64 ": check %s with nfound %" PRIu64
                        " and %" PRIu64 " reports\n",
                k, mm_errname(r.check_rc), r.nfound, r.calls);
    }
    detected += det;
    if (k < 64) {
      detected64 += det;
      if (!det && missed64++ < 16)
        fprintf(stderr, "# page map byte %" PRIu64 " (0x%02x -> 0x%02x): not detected\n",
                k, img[data_off + k], b);
    }
  }
  restore(path, img, n);
  fprintf(stderr,
          "# page map: %d flips, %d detected (%d of the first 64), %d crashes, "
          "%d hangs, %d other\n",
          total, detected, detected64, crashes, hangs, other);
  free(img);
  ASSERT_EQ(crashes, 0);
  ASSERT_EQ(hangs, 0);
  ASSERT_EQ(other, 0);
  ASSERT_EQ(detected64, 64);
}

/* ------------------------------------------------------------------------ */
/* 7. API misuse                                                            */

TEST(heap_adv_misuse_free) {
  const char *path = mm_test_path("mf.heap");
  uint64_t data_off = LOG_OFF + 64 * KiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 64 * MiB);
  uint64_t a = ALLOC_FILL(h, 64, 1), b = ALLOC_FILL(h, 64, 2);
  uint64_t p = ALLOC_FILL(h, 3 * 4096, 3);
  uint64_t c = ALLOC_FILL(h, 150 * KiB, 4); /* whole chunks */
  uint64_t keep[] = {a, b, p, c};
  uint64_t us[4];
  for (int i = 0; i < 4; i++) us[i] = mm_heap_usable_size(h, keep[i]);
  mm_heap_info_t in0 = INFO(h);
  ASSERT_EQ(in0.objects, 4);
  uint64_t fs = in0.file_size;
  const uint64_t bad[] = {
      1, 16, 4096, SUPER_OFF, SUPER_OFF + 64, LOG_OFF, data_off, /* metadata */
      a + 16, a + 8, a + 1, b + 32, /* interior of small objects */
      b + 4 * (b > a ? b - a : a - b), /* likely a slot never handed out */
      p + 16, p + 4096, p + 8192, /* interior of a page run */
      c + 4096, c + 64 * KiB, c + 128 * KiB, /* interior of a chunk run */
      fs, fs + 4096, fs + 64 * KiB, 64 * MiB - 4096, 64 * MiB, 64 * MiB + 4096,
      1ull << 40, UINT64_MAX - 15, UINT64_MAX};
  for (size_t i = 0; i < NELEM(bad); i++) {
    int live = 0; /* only our four objects are live: anything else is bad */
    for (int k = 0; k < 4; k++) live |= bad[i] == keep[k];
    if (live) continue;
    int rc = mm_heap_free(h, bad[i]);
    if (rc != -EINVAL)
      FAIL("mm_heap_free(%" PRIu64 ") [case %zu]: got %s, want EINVAL", bad[i], i,
           mm_errname(rc));
    ASSERT_EQ(mm_heap_usable_size(h, bad[i]), 0);
  }
  ASSERT_OK(mm_heap_free(h, 0)); /* a no-op */
  /* Every 16-aligned offset around the small objects that does not start
   * one of the four live objects: the rest of their run, including blocks
   * a per-thread cache may hold but never handed out, is not live. */
  for (uint64_t x = a - 64 * 64; x <= a + 64 * 64; x += 16) {
    int live = 0;
    for (int k = 0; k < 4; k++) live |= x == keep[k];
    if (live) continue;
    ASSERT_EQ(mm_heap_valid(h, x, 1), x >= a && x < a + us[0] ? 1 :
                                      x >= b && x < b + us[1] ? 1 :
                                      x >= p && x < p + us[2] ? 1 :
                                      x >= c && x < c + us[3] ? 1 : 0);
    uint64_t u = mm_heap_usable_size(h, x);
    if (u != 0) FAIL("mm_heap_usable_size(%" PRIu64 ") = %" PRIu64 " (a %" PRIu64 ", b %" PRIu64
                     "): not a live allocation, want 0", x, u, a, b);
    int rc = mm_heap_free(h, x);
    if (rc != -EINVAL)
      FAIL("mm_heap_free(%" PRIu64 ") near small objects a %" PRIu64 " b %" PRIu64
           ": got %s, want EINVAL (never handed out)", x, a, b, mm_errname(rc));
  }
  for (int i = 0; i < 4; i++) ASSERT_EQ(mm_heap_usable_size(h, keep[i]), us[i]);
  PCHECK(h, a, 64, 1, "a");
  PCHECK(h, b, 64, 2, "b");
  PCHECK(h, p, 3 * 4096, 3, "p");
  PCHECK(h, c, 150 * KiB, 4, "c");
  ASSERT_EQ(INFO(h).objects, 4);
  ASSERT_EQ(INFO(h).used, in0.used);
  CHECK_CLEAN(h, "after bad frees");

  /* Double frees, with nothing allocated in between. */
  uint64_t d1 = ALLOC_FILL(h, 64, 5), d2 = ALLOC_FILL(h, 5000, 6),
           d3 = ALLOC_FILL(h, 100 * KiB, 7);
  uint64_t dd[] = {d1, d2, d3};
  for (int i = 0; i < 3; i++) {
    ASSERT_OK(mm_heap_free(h, dd[i]));
    int rc = mm_heap_free(h, dd[i]);
    if (rc != -EINVAL)
      FAIL("double free of %" PRIu64 " (object %d): got %s, want EINVAL", dd[i], i,
           mm_errname(rc));
    ASSERT_EQ(mm_heap_usable_size(h, dd[i]), 0);
    ASSERT_EQ(mm_heap_valid(h, dd[i], 1), 0);
  }
  mm_heap_info_t in1 = INFO(h);
  ASSERT_EQ(in1.objects, 4);
  ASSERT_EQ(in1.used, in0.used);
  CHECK_CLEAN(h, "after double frees");
  /* And the allocator still hands out sane, separate blocks. */
  uint64_t e1 = ALLOC_FILL(h, 64, 8), e2 = ALLOC_FILL(h, 64, 9);
  ASSERT_NE(e1, e2);
  PCHECK(h, e1, 64, 8, "e1");
  PCHECK(h, a, 64, 1, "a");
  PCHECK(h, b, 64, 2, "b");
  HCLOSE(h);
  h = HOPEN(path);
  CHECK_CLEAN(h, "reopened");
  ASSERT_EQ(INFO(h).objects, 6);
  HCLOSE(h);
}

TEST(heap_adv_misuse_alloc) {
  const char *path = mm_test_path("ma.heap");
  const uint64_t MAX = 64 * MiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, MAX);
  uint64_t off = 777;
  ASSERT_RC(mm_heap_alloc(h, 0, &off), -EINVAL);
  ASSERT_RC(mm_heap_zalloc(h, 0, &off), -EINVAL);
  uint64_t fs0 = INFO(h).file_size;
  const uint64_t huge[] = {MAX + 1, MAX, 2 * MAX, 1ull << 40, 1ull << 62,
                           UINT64_MAX - 4095, UINT64_MAX - 15, UINT64_MAX};
  for (size_t i = 0; i < NELEM(huge); i++) {
    int rc = mm_heap_alloc(h, huge[i], &off);
    if (rc != MM_EFULL)
      FAIL("mm_heap_alloc(%" PRIu64 "): got %s, want MM_EFULL", huge[i], mm_errname(rc));
    rc = mm_heap_zalloc(h, huge[i], &off);
    if (rc != MM_EFULL)
      FAIL("mm_heap_zalloc(%" PRIu64 "): got %s, want MM_EFULL", huge[i], mm_errname(rc));
  }
  mm_heap_info_t in = INFO(h);
  ASSERT_EQ(in.objects, 0);
  ASSERT_EQ(in.file_size, fs0);
  ASSERT_EQ(file_size(path), fs0);
  CHECK_CLEAN(h, "after refused allocations");

  /* zalloc zeroes blocks that were used and freed before. */
  static const uint64_t zs[] = {24, 1000, 2048, 6000, 100 * KiB};
  for (size_t i = 0; i < NELEM(zs); i++) {
    uint64_t o[8];
    for (int k = 0; k < 8; k++) {
      ASSERT_OK(mm_heap_alloc(h, zs[i], &o[k]));
      memset(mm_heap_ptr(h, o[k]), 0xAB, mm_heap_usable_size(h, o[k]));
    }
    for (int k = 0; k < 8; k++) ASSERT_OK(mm_heap_free(h, o[k]));
    for (int k = 0; k < 8; k++) {
      ASSERT_OK(mm_heap_zalloc(h, zs[i], &o[k]));
      const unsigned char *q = mm_heap_ptr(h, o[k]);
      for (uint64_t j = 0; j < zs[i]; j++)
        if (q[j]) FAIL("zalloc(%" PRIu64 ") at %" PRIu64 ": byte %" PRIu64 " is 0x%02x",
                       zs[i], o[k], j, q[j]);
    }
    for (int k = 0; k < 8; k++) ASSERT_OK(mm_heap_free(h, o[k]));
  }
  CHECK_CLEAN(h, "after zallocs");
  HCLOSE(h);
}

TEST(heap_adv_alloc_full_max) {
  const char *path = mm_test_path("mx.heap");
  const uint64_t MAX = 1 * MiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, MAX);
  uint64_t offs[512];
  int n = 0, rc = 0;
  for (;;) {
    ASSERT(n < 512);
    rc = mm_heap_alloc(h, 4096, &offs[n]);
    if (rc != 0) break;
    pfill(mm_heap_ptr(h, offs[n]), 4096, (uint64_t)n + 1);
    n++;
  }
  if (rc != MM_EFULL) FAIL("after %d pages: got %s, want MM_EFULL", n, mm_errname(rc));
  ASSERT(n >= 8); /* at least most of 13 chunks' worth */
  mm_heap_info_t in = INFO(h);
  ASSERT(in.file_size <= MAX);
  ASSERT(file_size(path) <= MAX);
  ASSERT_RC(mm_heap_alloc(h, 200 * KiB, &offs[n]), MM_EFULL);
  ASSERT_RC(mm_heap_alloc(h, MAX + 1, &offs[n]), MM_EFULL);
  for (int i = 0; i < n; i++) PCHECK(h, offs[i], 4096, (uint64_t)i + 1, "page");
  CHECK_CLEAN(h, "full");
  ASSERT_OK(mm_heap_free(h, offs[n / 2]));
  ASSERT_OK(mm_heap_alloc(h, 4096, &offs[n / 2]));
  CHECK_CLEAN(h, "full again");
  HCLOSE(h);
}

TEST(heap_adv_misuse_names) {
  const char *path = mm_test_path("mn.heap");
  /* Growing the directory logs each name's link (32 bytes): 2000 names
   * need more than the smallest log's area. */
  mm_heap_t *h = HCREATE(path, 64 * KiB, 256 * KiB, 64 * MiB);
  uint64_t x = ALLOC_FILL(h, 32, 1), y = ALLOC_FILL(h, 32, 2), off = 0;
  char nm[MM_HEAP_NAME_MAX + 2];
  memset(nm, 'n', sizeof nm);
  nm[MM_HEAP_NAME_MAX + 1] = 0; /* 256 bytes */
  ASSERT_RC(mm_heap_name_set(h, nm, x), -EINVAL);
  ASSERT_RC(mm_heap_name_set(h, "", x), -EINVAL);
  nm[MM_HEAP_NAME_MAX] = 0; /* 255 bytes: fine */
  ASSERT_OK(mm_heap_name_set(h, nm, x));
  ASSERT_OK(mm_heap_name_get(h, nm, &off));
  ASSERT_EQ(off, x);
  nm[MM_HEAP_NAME_MAX - 1] = 0; /* its 254-byte prefix is another name */
  ASSERT_RC(mm_heap_name_get(h, nm, &off), -ENOENT);
  ASSERT_RC(mm_heap_name_get(h, "missing", &off), -ENOENT);
  ASSERT_RC(mm_heap_name_del(h, "missing"), -ENOENT);
  ASSERT_OK(mm_heap_name_set(h, "a", x));
  ASSERT_OK(mm_heap_name_set(h, "a", y));
  ASSERT_OK(mm_heap_name_get(h, "a", &off));
  ASSERT_EQ(off, y);
  ASSERT_EQ(INFO(h).names, 2);
  ASSERT_OK(mm_heap_name_del(h, "a"));
  ASSERT_RC(mm_heap_name_get(h, "a", &off), -ENOENT);
  ASSERT_RC(mm_heap_name_del(h, "a"), -ENOENT);
  ASSERT_EQ(INFO(h).names, 1);
  ASSERT_EQ(INFO(h).objects, 2);
  /* Many names, to push the directory past any first block. */
  char b[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(b, sizeof b, "many-%d", i);
    ASSERT_OK(mm_heap_name_set(h, b, (i & 1) ? x : y));
  }
  for (int i = 0; i < 2000; i++) {
    snprintf(b, sizeof b, "many-%d", i);
    ASSERT_OK(mm_heap_name_get(h, b, &off));
    ASSERT_EQ(off, (i & 1) ? x : y);
  }
  ASSERT_EQ(INFO(h).names, 2001);
  for (int i = 0; i < 2000; i += 2) {
    snprintf(b, sizeof b, "many-%d", i);
    ASSERT_OK(mm_heap_name_del(h, b));
  }
  ASSERT_EQ(INFO(h).names, 1001);
  CHECK_CLEAN(h, "names");
  HCLOSE(h);
  h = HOPEN(path);
  ASSERT_EQ(INFO(h).names, 1001);
  ASSERT_RC(mm_heap_name_get(h, "many-0", &off), -ENOENT);
  ASSERT_OK(mm_heap_name_get(h, "many-1999", &off));
  ASSERT_EQ(off, x);
  CHECK_CLEAN(h, "names reopened");
  HCLOSE(h);
}

TEST(heap_adv_misuse_tx) {
  const char *path = mm_test_path("mt.heap");
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 64 * MiB);
  uint64_t x = ALLOC_FILL(h, 256, 1);
  ASSERT_EQ(mm_heap_tx_active(h), 0);
  ASSERT_RC(mm_heap_tx_add(h, x, 16), -EINVAL);
  ASSERT_RC(mm_heap_tx_add_ptr(h, mm_heap_ptr(h, x), 16), -EINVAL);
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  ASSERT_RC(mm_heap_tx_begin(h, NULL), -EBUSY);
  ASSERT_EQ(mm_heap_tx_active(h), 1); /* the first one is still open */
  ASSERT_OK(mm_heap_tx_add(h, x, 256));
  memset(mm_heap_ptr(h, x), 0, 256);
  ASSERT_OK(mm_heap_tx_abort(h));
  ASSERT_EQ(mm_heap_tx_active(h), 0);
  PCHECK(h, x, 256, 1, "restored by abort");
  ASSERT_RC(mm_heap_tx_add(h, x, 16), -EINVAL);

  /* Ranges outside the allocations area. */
  uint64_t fs = INFO(h).file_size;
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_RC(mm_heap_tx_add(h, 0, 16), -EINVAL);
  ASSERT_RC(mm_heap_tx_add(h, fs + 4096, 16), -EINVAL);
  ASSERT_RC(mm_heap_tx_add(h, x, UINT64_MAX), -EINVAL);
  ASSERT_RC(mm_heap_tx_add(h, UINT64_MAX - 7, 16), -EINVAL);
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  ASSERT_OK(mm_heap_tx_add(h, x, 16));
  memset(mm_heap_ptr(h, x), 0x11, 16);
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_EQ(mm_heap_tx_active(h), 0);
  const unsigned char *q = mm_heap_ptr(h, x);
  for (int i = 0; i < 16; i++) ASSERT_EQ(q[i], 0x11);
  unsigned char want[256];
  pfill(want, 256, 1);
  memset(want, 0x11, 16);
  ASSERT(memcmp(mm_heap_ptr(h, x), want, 256) == 0);
  CHECK_CLEAN(h, "after transactions");
  HCLOSE(h);
  h = HOPEN(path);
  ASSERT(memcmp(mm_heap_ptr(h, x), want, 256) == 0);
  HCLOSE(h);
}

/* ------------------------------------------------------------------------ */
/* 8. full disk; create and exclusive create                                */

TEST(heap_adv_enospc_growth) {
  const char *path = mm_test_path("ns.heap");
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 64 * MiB);
  uint64_t objs[64];
  int n = 0;
  for (; n < 4; n++) objs[n] = ALLOC_FILL(h, 4000, (uint64_t)n + 1);
  mm_heap_info_t in0 = INFO(h);
  mm__fault_set(MM_SYS_FALLOCATE, 1, ENOSPC, 1);
  int rc = 0;
  for (;;) {
    ASSERT(n < 64);
    rc = mm_heap_alloc(h, 4000, &objs[n]);
    if (rc != 0) break;
    pfill(mm_heap_ptr(h, objs[n]), 4000, (uint64_t)n + 1);
    n++;
  }
  if (rc != -ENOSPC) FAIL("after %d allocations: got %s, want ENOSPC", n, mm_errname(rc));
  ASSERT(mm__sys_count(MM_SYS_FALLOCATE) >= 1);
  uint64_t big;
  ASSERT_RC(mm_heap_alloc(h, 200 * KiB, &big), -ENOSPC);
  mm_heap_info_t in1 = INFO(h);
  ASSERT_EQ(in1.file_size, in0.file_size);
  ASSERT_EQ(file_size(path), in0.file_size);
  for (int i = 0; i < n; i++) PCHECK(h, objs[i], 4000, (uint64_t)i + 1, "before ENOSPC");
  mm__fault_clear();
  CHECK_CLEAN(h, "after ENOSPC");
  ASSERT_EQ(INFO(h).objects, n);
  objs[n] = ALLOC_FILL(h, 4000, (uint64_t)n + 1);
  n++;
  big = ALLOC_FILL(h, 200 * KiB, 999);
  ASSERT(INFO(h).file_size > in0.file_size);
  for (int i = 0; i < n; i++) PCHECK(h, objs[i], 4000, (uint64_t)i + 1, "after ENOSPC");
  PCHECK(h, big, 200 * KiB, 999, "big");
  CHECK_CLEAN(h, "grown after ENOSPC");
  HCLOSE(h);
  h = HOPEN(path);
  CHECK_CLEAN(h, "reopened");
  ASSERT_EQ(INFO(h).objects, n + 1);
  HCLOSE(h);
}

TEST(heap_adv_create_excl) {
  const char *path = mm_test_path("ex.heap");
  uint64_t o = make_heap(path, 0);
  uint64_t n0;
  unsigned char *img = slurp(path, &n0);
  mm_heap_t *h;
  ASSERT_RC(HOPEN_RC(&h, path, MM_HEAP_CREATE | MM_HEAP_EXCL, 64 * KiB, 64 * KiB, 64 * MiB, 0),
            -EEXIST);
  ASSERT(h == NULL);
  uint64_t n1;
  unsigned char *img1 = slurp(path, &n1);
  ASSERT_EQ(n1, n0);
  ASSERT(memcmp(img, img1, n0) == 0);
  free(img1);
  /* CREATE without EXCL on an existing heap opens it, keeping the data. */
  ASSERT_OK(HOPEN_RC(&h, path, MM_HEAP_CREATE, 64 * KiB, 64 * KiB, 64 * MiB, 0));
  ASSERT_EQ(mm_heap_root(h), o);
  PCHECK(h, o, 300, 777, "probe");
  ASSERT_EQ(INFO(h).objects, 1);
  HCLOSE(h);
  /* EXCL on a file that is not a heap: still EEXIST, still unchanged. */
  const char *other = mm_test_path("other");
  write_bytes(other, "not a heap\n", 11);
  ASSERT_RC(HOPEN_RC(&h, other, MM_HEAP_CREATE | MM_HEAP_EXCL, 64 * KiB, 64 * KiB, 64 * MiB, 0),
            -EEXIST);
  ASSERT_EQ(file_size(other), 11);
  /* Without CREATE a missing heap is ENOENT, and is not created. */
  const char *missing = mm_test_path("missing.heap");
  ASSERT_RC(HOPEN_RC(&h, missing, 0, 0, 0, 0, 0), -ENOENT);
  ASSERT(!file_exists(missing));
  free(img);
}

TEST(heap_adv_create_fail_no_file) {
  const char *path = mm_test_path("cf.heap");
  mm_heap_t *h;
  struct {
    uint32_t chunk, log;
    uint64_t max, initial;
    const char *what;
  } bad[] = {
      {3000, 64 * KiB, 64 * MiB, 0, "chunk 3000"},
      {32 * KiB, 64 * KiB, 64 * MiB, 0, "chunk 32 KiB"},
      {8 * MiB, 64 * KiB, 64 * MiB, 0, "chunk 8 MiB"},
      {96 * KiB, 64 * KiB, 64 * MiB, 0, "chunk 96 KiB"},
      {64 * KiB, 32 * KiB, 64 * MiB, 0, "log 32 KiB"},
      {64 * KiB, 64 * KiB, 4 * MiB, 8 * MiB, "max < initial"},
  };
  for (size_t i = 0; i < NELEM(bad); i++) {
    int rc = HOPEN_RC(&h, path, MM_HEAP_CREATE | MM_HEAP_EXCL, bad[i].chunk, bad[i].log,
                      bad[i].max, bad[i].initial);
    if (rc != -EINVAL) FAIL("%s: got %s, want EINVAL", bad[i].what, mm_errname(rc));
    if (file_exists(path)) FAIL("%s: the refused create left a file behind", bad[i].what);
  }
  mm__fault_set(MM_SYS_FALLOCATE, 1, ENOSPC, 1);
  ASSERT_RC(HOPEN_RC(&h, path, MM_HEAP_CREATE | MM_HEAP_EXCL, 64 * KiB, 64 * KiB, 64 * MiB,
                     1 * MiB),
            -ENOSPC);
  mm__fault_clear();
  if (file_exists(path)) FAIL("create failing with ENOSPC left a file behind");
  mm__fault_set(MM_SYS_MMAP, 1, ENOMEM, 1);
  ASSERT_RC(HOPEN_RC(&h, path, MM_HEAP_CREATE, 64 * KiB, 64 * KiB, 64 * MiB, 0), -ENOMEM);
  mm__fault_clear();
  if (file_exists(path)) FAIL("create failing with ENOMEM left a file behind");
  /* And it works once the faults are gone. */
  h = HCREATE(path, 64 * KiB, 64 * KiB, 64 * MiB);
  HCLOSE(h);
  /* An open of an existing heap that fails leaves it unchanged. */
  uint64_t n0, n1;
  unsigned char *img = slurp(path, &n0);
  mm__fault_set(MM_SYS_MMAP, 1, ENOMEM, 1);
  ASSERT_RC(HOPEN_RC(&h, path, 0, 0, 0, 0, 0), -ENOMEM);
  mm__fault_clear();
  unsigned char *img1 = slurp(path, &n1);
  ASSERT_EQ(n0, n1);
  ASSERT(memcmp(img, img1, n0) == 0);
  free(img);
  free(img1);
  h = HOPEN(path);
  CHECK_CLEAN(h, "after the failed opens");
  HCLOSE(h);
}

/* ------------------------------------------------------------------------ */
/* 9. mm_heap_valid, mm_heap_usable_size                                    */

TEST(heap_adv_valid_usable) {
  const char *path = mm_test_path("vu.heap");
  uint64_t data_off = LOG_OFF + 64 * KiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 64 * MiB);
  static const uint64_t sizes[] = {1,    15,   16,   17,    100,   2047,   2048,
                                   2049, 4095, 4096, 4097,  30000, 65536,  65537,
                                   200000, 24, 48,   333,   1500,  9000,   131072};
  struct span s[NELEM(sizes)], fr[NELEM(sizes)];
  size_t n = NELEM(sizes);
  for (size_t i = 0; i < n; i++) {
    s[i].off = ALLOC_FILL(h, sizes[i], i + 1);
    uint64_t us = mm_heap_usable_size(h, s[i].off);
    ASSERT(us >= sizes[i]);
    s[i].len = us;
    ASSERT_EQ(mm_heap_valid(h, s[i].off, 1), 1);
    ASSERT_EQ(mm_heap_valid(h, s[i].off, sizes[i]), 1);
    ASSERT_EQ(mm_heap_valid(h, s[i].off, us), 1);
    ASSERT_EQ(mm_heap_valid(h, s[i].off + us - 1, 1), 1);
    ASSERT_EQ(mm_heap_valid(h, s[i].off, us + 1), 0);
    ASSERT_EQ(mm_heap_valid(h, s[i].off - 1, 2), 0);
    ASSERT_EQ(mm_heap_valid(h, s[i].off, UINT64_MAX), 0);
    ASSERT_EQ(mm_heap_valid(h, s[i].off + 1, UINT64_MAX - 1), 0);
    if (us > 16) {
      ASSERT_EQ(mm_heap_valid(h, s[i].off + 8, us - 8), 1);
      ASSERT_EQ(mm_heap_usable_size(h, s[i].off + 16), 0);
    }
  }
  /* Some freed objects (allocated, then freed). */
  for (size_t i = 0; i < n; i++) {
    fr[i].off = ALLOC_FILL(h, sizes[i], 100 + i);
    fr[i].len = mm_heap_usable_size(h, fr[i].off);
  }
  for (size_t i = 0; i < n; i++) {
    ASSERT_OK(mm_heap_free(h, fr[i].off));
    ASSERT_EQ(mm_heap_usable_size(h, fr[i].off), 0);
    ASSERT_EQ(mm_heap_valid(h, fr[i].off, 1), 0);
  }
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(mm_heap_usable_size(h, fr[i].off), 0);
    ASSERT_EQ(mm_heap_valid(h, fr[i].off, 1), 0);
  }
  const uint64_t odd[] = {0, 1, 8, 4096, SUPER_OFF, LOG_OFF, data_off,
                          64 * MiB, UINT64_MAX, UINT64_MAX - 16};
  for (size_t i = 0; i < NELEM(odd); i++) {
    ASSERT_EQ(mm_heap_valid(h, odd[i], 1), 0);
    ASSERT_EQ(mm_heap_valid(h, odd[i], 16), 0);
    ASSERT_EQ(mm_heap_usable_size(h, odd[i]), 0);
  }
  /* Exactly our objects are live: mm_heap_valid(x, 1) is 1 iff x lies in
   * one of them, usable_size(x) nonzero iff x starts one. */
  mm_heap_info_t in = INFO(h);
  ASSERT_EQ(in.objects, n);
  uint64_t r = 4711, end = in.file_size + 2 * 64 * KiB;
  for (int k = 0; k < 20000; k++) {
    uint64_t x;
    if (k % 4 == 0) {
      const struct span *t = &s[rnd(&r) % n];
      x = t->off + t->len - 2 + rnd(&r) % 4; /* around an end */
    } else if (k % 4 == 1) {
      const struct span *t = &fr[rnd(&r) % n];
      x = t->off + rnd(&r) % (t->len + 1);
    } else {
      x = rnd(&r) % end;
    }
    int want = 0;
    uint64_t wus = 0;
    for (size_t i = 0; i < n; i++) {
      if (x >= s[i].off && x < s[i].off + s[i].len) want = 1;
      if (x == s[i].off) wus = s[i].len;
    }
    int got = mm_heap_valid(h, x, 1);
    if (got != want)
      FAIL("mm_heap_valid(%" PRIu64 ", 1) = %d, want %d", x, got, want);
    uint64_t gus = mm_heap_usable_size(h, x);
    if (gus != wus)
      FAIL("mm_heap_usable_size(%" PRIu64 ") = %" PRIu64 ", want %" PRIu64, x, gus, wus);
  }
  for (size_t i = 0; i < n; i++) PCHECK(h, s[i].off, sizes[i], i + 1, "live");
  CHECK_LAYOUT(h, s, n, data_off);
  CHECK_CLEAN(h, "valid/usable");
  HCLOSE(h);
}

/* ------------------------------------------------------------------------ */
/* 10. realloc                                                              */

TEST(heap_adv_realloc_contents) {
  const char *path = mm_test_path("ra.heap");
  const uint64_t MAX = 64 * MiB;
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, MAX);
  uint64_t off = 0;
  ASSERT_OK(mm_heap_realloc(h, &off, 40)); /* *off == 0 allocates */
  ASSERT(off != 0);
  CHECK_ALIGN(off, 40);
  const uint64_t seed = 31337;
  pfill(mm_heap_ptr(h, off), 40, seed);
  uint64_t nb = ALLOC_FILL(h, 40, 1); /* a neighbour, to make growing in place hard */
  uint64_t nb2 = ALLOC_FILL(h, 5000, 2);
  static const uint64_t steps[] = {1000,   2048,  2049,  5000,  60000, 100000,
                                   300000, 300001, 150000, 70000, 65536, 10000,
                                   3000,   2000,  100,   17,    1,     64,
                                   128 * KiB};
  uint64_t cur = 40;
  for (size_t i = 0; i < NELEM(steps); i++) {
    uint64_t want = steps[i], keep = want < cur ? want : cur;
    uint64_t before = off;
    int rc = mm_heap_realloc(h, &off, want);
    if (rc != 0) FAIL("realloc %" PRIu64 " -> %" PRIu64 ": %s", cur, want, mm_errname(rc));
    CHECK_ALIGN(off, want);
    if (mm_heap_usable_size(h, off) < want)
      FAIL("realloc to %" PRIu64 ": usable %" PRIu64, want, mm_heap_usable_size(h, off));
    ASSERT_EQ(mm_heap_valid(h, off, want), 1);
    int64_t bad = pbad(mm_heap_ptr(h, off), keep, seed);
    if (bad >= 0)
      FAIL("realloc %" PRIu64 " -> %" PRIu64 " (%" PRIu64 " -> %" PRIu64
           "): kept byte %" PRId64 " differs",
           cur, want, before, off, bad);
    if (before != off && mm_heap_usable_size(h, before) != 0)
      FAIL("realloc moved %" PRIu64 " -> %" PRIu64 " but the old block is still live",
           before, off);
    pfill(mm_heap_ptr(h, off), want, seed);
    PCHECK(h, nb, 40, 1, "neighbour");
    PCHECK(h, nb2, 5000, 2, "neighbour 2");
    ASSERT_EQ(INFO(h).objects, 3);
    cur = want;
  }
  /* A failing realloc leaves *off and the contents alone. */
  uint64_t same = off;
  ASSERT_RC(mm_heap_realloc(h, &off, MAX + 1), MM_EFULL);
  ASSERT_EQ(off, same);
  PCHECK(h, off, cur, seed, "after a failed realloc");
  struct span s[3] = {{off, 0}, {nb, 0}, {nb2, 0}};
  CHECK_LAYOUT(h, s, 3, LOG_OFF + 64 * KiB);
  CHECK_CLEAN(h, "realloc");
  HCLOSE(h);
  h = HOPEN(path);
  PCHECK(h, same, cur, seed, "reopened");
  HCLOSE(h);
}

TEST(heap_adv_realloc_enospc) {
  const char *path = mm_test_path("rn.heap");
  mm_heap_t *h = HCREATE(path, 64 * KiB, 64 * KiB, 64 * MiB);
  uint64_t off = ALLOC_FILL(h, 100, 5);
  uint64_t fs = INFO(h).file_size;
  mm__fault_set(MM_SYS_FALLOCATE, 1, ENOSPC, 1);
  uint64_t o2 = off;
  ASSERT_RC(mm_heap_realloc(h, &o2, 500000), -ENOSPC);
  ASSERT_EQ(o2, off);
  PCHECK(h, off, 100, 5, "after failed realloc");
  ASSERT(mm_heap_usable_size(h, off) >= 100);
  ASSERT_EQ(INFO(h).objects, 1);
  ASSERT_EQ(INFO(h).file_size, fs);
  mm__fault_clear();
  CHECK_CLEAN(h, "after ENOSPC realloc");
  ASSERT_OK(mm_heap_realloc(h, &o2, 500000));
  PCHECK(h, o2, 100, 5, "grown");
  ASSERT_EQ(INFO(h).objects, 1);
  CHECK_CLEAN(h, "after realloc");
  HCLOSE(h);
}
