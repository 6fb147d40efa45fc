/*
 * test_region_adv.c - adversarial tests for growable regions
 * (memmap/region.h), written from the header contract and the project
 * issue only, not from src/region.c.
 *
 * Every test runs in its own forked process (see runner.c), so tests freely
 * set rlimits, fork children, unshare a mount namespace and arm fault
 * injection (src/sys.h).
 *
 * Where the header is ambiguous the reading taken is stated in a comment
 * beginning with "Reading:".
 */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys.h"

/* The sanitizers cannot run under a lowered RLIMIT_AS, and their own
 * mappings make map-count games meaningless. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MM_RADV_SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MM_RADV_SAN 1
#endif
#endif

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* <linux/fs.h> clashes with <sys/mount.h>; the two values it would give. */
#define RADV_FS_IOC_GETFLAGS _IOR('f', 1, long)
#define RADV_FS_IOC_SETFLAGS _IOW('f', 2, long)
#define RADV_FS_IMMUTABLE_FL 0x00000010

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

static uint64_t pg(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }
static uint64_t rup(uint64_t x) {
  uint64_t p = pg();
  return (x + p - 1) / p * p;
}
static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* A value that is never a valid region, to check *out is reset to NULL. */
static char junk_storage;
#define JUNK ((mm_region_t *)(void *)&junk_storage)

static const char *kind_name(const char *path) {
  return path ? "file-backed" : "anonymous";
}

static int rcreate_at(mm_region_t **r, const char *path, uint64_t reserve,
                      uint64_t initial, unsigned flags, int line) {
  mm_region_opts_t o;
  memset(&o, 0, sizeof o);
  o.path = path;
  o.reserve = reserve;
  o.initial = initial;
  o.flags = flags;
  *r = JUNK;
  int rc = mm_region_create(r, &o);
  if (rc != 0 && *r != NULL)
    mm_test_fail(__FILE__, line,
                 "mm_region_create failed with %s but *out is %p, not NULL",
                 mm_errname(rc), (void *)*r);
  if (rc == 0 && (*r == NULL || *r == JUNK))
    mm_test_fail(__FILE__, line, "mm_region_create returned 0 but *out is %p",
                 (void *)*r);
  return rc;
}
#define RCREATE(r, path, reserve, initial, flags) \
  rcreate_at((r), (path), (reserve), (initial), (flags), __LINE__)

static mm_region_t *mk_at(const char *path, uint64_t reserve, uint64_t initial,
                          int line) {
  mm_region_t *r;
  int rc = rcreate_at(&r, path, reserve, initial,
                      path ? MM_REGION_CREATE : 0, line);
  if (rc != 0)
    mm_test_fail(__FILE__, line,
                 "create %s region (reserve %" PRIu64 ", initial %" PRIu64
                 "): %s",
                 kind_name(path), reserve, initial, mm_errname(rc));
  return r;
}
#define MK(path, reserve, initial) mk_at((path), (reserve), (initial), __LINE__)

static unsigned char *B(const mm_region_t *r) {
  return (unsigned char *)mm_region_base(r);
}

/* Pattern byte i of stream `seed`. */
static unsigned char pat(uint64_t i, uint64_t seed) {
  return mm_test_byte(i + seed * 1000003u);
}

static void fill_at(unsigned char *b, uint64_t from, uint64_t to,
                    uint64_t seed) {
  for (uint64_t i = from; i < to; i++) b[i] = pat(i, seed);
}

static void check_pat_at(const unsigned char *b, uint64_t from, uint64_t to,
                         uint64_t seed, const char *what, int line) {
  for (uint64_t i = from; i < to; i++)
    if (b[i] != pat(i, seed))
      mm_test_fail(__FILE__, line, "%s: byte %" PRIu64 " is 0x%02x, want 0x%02x",
                   what, i, b[i], pat(i, seed));
}
#define CHECK_PAT(b, from, to, seed, what) \
  check_pat_at((b), (from), (to), (seed), (what), __LINE__)

static void check_zero_at(const unsigned char *b, uint64_t from, uint64_t to,
                          const char *what, int line) {
  for (uint64_t i = from; i < to; i++)
    if (b[i] != 0)
      mm_test_fail(__FILE__, line,
                   "%s: byte %" PRIu64 " is 0x%02x, want 0 (range %" PRIu64
                   "..%" PRIu64 ")",
                   what, i, b[i], from, to);
}
#define CHECK_ZERO(b, from, to, what) \
  check_zero_at((b), (from), (to), (what), __LINE__)

static void check_mem_at(const unsigned char *got, const unsigned char *want,
                         uint64_t n, const char *what, int line) {
  if (n == 0 || memcmp(got, want, n) == 0) return;
  for (uint64_t i = 0; i < n; i++)
    if (got[i] != want[i])
      mm_test_fail(__FILE__, line, "%s: byte %" PRIu64 " is 0x%02x, want 0x%02x",
                   what, i, got[i], want[i]);
}
#define CHECK_MEM(got, want, n, what) \
  check_mem_at((got), (want), (n), (what), __LINE__)

/* A pipe to test whether an address can be read without faulting: write()
 * from an inaccessible address (PROT_NONE, unmapped, or a file page past
 * EOF) fails with EFAULT instead of raising a signal. */
static int probe_pipe[2] = {-1, -1};
static void probe_init(void) {
  if (probe_pipe[0] < 0 && pipe2(probe_pipe, O_CLOEXEC) != 0)
    FAIL("pipe2: %s", strerror(errno));
}
static int readable(const void *p) {
  probe_init();
  ssize_t w = write(probe_pipe[1], p, 1);
  if (w == 1) {
    char c;
    if (read(probe_pipe[0], &c, 1) != 1) FAIL("probe read: %s", strerror(errno));
    return 1;
  }
  if (w < 0 && errno == EFAULT) return 0;
  FAIL("probe write: %s", strerror(errno));
}
static void check_readable_at(const unsigned char *b, uint64_t n,
                              const char *what, int line) {
  uint64_t p = pg();
  for (uint64_t off = 0; off < n; off += p)
    if (!readable(b + off))
      mm_test_fail(__FILE__, line,
                   "%s: byte %" PRIu64 " of the region (size %" PRIu64
                   ") cannot be read",
                   what, off, n);
  if (n && !readable(b + n - 1))
    mm_test_fail(__FILE__, line, "%s: last byte %" PRIu64 " cannot be read",
                 what, n - 1);
}
#define CHECK_READABLE(b, n, what) check_readable_at((b), (n), (what), __LINE__)

static int file_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static uint64_t file_size(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) FAIL("stat %s: %s", path, strerror(errno));
  return (uint64_t)st.st_size;
}

static uint64_t file_blocks_bytes(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) FAIL("stat %s: %s", path, strerror(errno));
  return (uint64_t)st.st_blocks * 512;
}

/* The whole of a file (or of /proc/self/...), NUL-terminated. */
static char *slurp(const char *path, size_t *len_out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap + 1);
  ASSERT(buf);
  for (;;) {
    if (len == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
      ASSERT(buf);
    }
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) FAIL("read %s: %s", path, strerror(errno));
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  if (len_out) *len_out = len;
  return buf;
}

/* Check the file holds exactly want[0, n). */
static void check_file_at(const char *path, const unsigned char *want,
                          uint64_t n, const char *what, int line) {
  uint64_t fs = file_size(path);
  if (fs != n)
    mm_test_fail(__FILE__, line, "%s: file size is %" PRIu64 ", want %" PRIu64,
                 what, fs, n);
  size_t len = 0;
  char *got = slurp(path, &len);
  if (len != n) mm_test_fail(__FILE__, line, "%s: read %zu bytes", what, len);
  check_mem_at((const unsigned char *)got, want, n, what, line);
  free(got);
}
#define CHECK_FILE(path, want, n, what) \
  check_file_at((path), (want), (n), (what), __LINE__)

/* Check the file is mm_test_write_file's pattern of exactly `size` bytes. */
static void check_file_pattern_at(const char *path, uint64_t size,
                                  const char *what, int line) {
  uint64_t fs = file_size(path);
  if (fs != size)
    mm_test_fail(__FILE__, line, "%s: file size is %" PRIu64 ", want %" PRIu64,
                 what, fs, size);
  size_t len = 0;
  unsigned char *got = (unsigned char *)slurp(path, &len);
  for (uint64_t i = 0; i < size; i++)
    if (got[i] != mm_test_byte(i))
      mm_test_fail(__FILE__, line, "%s: file byte %" PRIu64 " is 0x%02x, want 0x%02x",
                   what, i, got[i], mm_test_byte(i));
  free(got);
}
#define CHECK_FILE_PATTERN(path, size, what) \
  check_file_pattern_at((path), (size), (what), __LINE__)

static int count_fds(void) {
  probe_init();
  DIR *d = opendir("/proc/self/fd");
  if (!d) FAIL("opendir /proc/self/fd: %s", strerror(errno));
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1;
}

/* Lines of /proc/self/maps (containing `needle`, if not NULL). */
static int maps_count(const char *needle) {
  char *buf = slurp("/proc/self/maps", NULL);
  int n = 0;
  for (char *line = buf; *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (!needle || strstr(line, needle)) n++;
    if (!nl) break;
    line = nl + 1;
  }
  free(buf);
  return n;
}

/* The end of the mapping containing `a`, or 0 if `a` is not mapped. */
static uintptr_t vma_end_containing(uintptr_t a) {
  char *buf = slurp("/proc/self/maps", NULL);
  uintptr_t end = 0;
  for (char *line = buf; *line;) {
    unsigned long s = 0, e = 0;
    if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= a && a < e) {
      end = e;
      break;
    }
    char *nl = strchr(line, '\n');
    if (!nl) break;
    line = nl + 1;
  }
  free(buf);
  return end;
}

static void statm(uint64_t *vsz, uint64_t *rss) {
  char buf[256];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) FAIL("open statm: %s", strerror(errno));
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) FAIL("read statm");
  buf[n] = 0;
  unsigned long long a = 0, b = 0;
  if (sscanf(buf, "%llu %llu", &a, &b) != 2) FAIL("parse statm: %s", buf);
  if (vsz) *vsz = a * pg();
  if (rss) *rss = b * pg();
}
static uint64_t vsz_now(void) {
  uint64_t v;
  statm(&v, NULL);
  return v;
}
static uint64_t rss_now(void) {
  uint64_t r;
  statm(NULL, &r);
  return r;
}

static uint64_t sys_total(void) {
  uint64_t t = 0;
  for (int op = 0; op < MM_SYS__COUNT; op++) t += mm__sys_count(op);
  return t;
}

/* The observable state of a region, to check "as it was". */
struct snap {
  uint64_t size, committed, reserve, moves, fsize;
  void *base;
  int stable;
  unsigned char *bytes;
  const char *path;
};

static void snap_take(struct snap *s, const mm_region_t *r, const char *path) {
  s->size = mm_region_size(r);
  s->committed = mm_region_committed(r);
  s->reserve = mm_region_reserve(r);
  s->moves = mm_region_moves(r);
  s->base = mm_region_base(r);
  s->stable = mm_region_stable(r);
  s->path = path;
  s->fsize = path ? file_size(path) : 0;
  s->bytes = malloc(s->size ? s->size : 1);
  ASSERT(s->bytes);
  if (s->size) memcpy(s->bytes, s->base, s->size);
}

static void snap_free(struct snap *s) {
  free(s->bytes);
  s->bytes = NULL;
}

static void snap_check_at(const struct snap *s, const mm_region_t *r,
                          const char *what, int line) {
#define SNAP_FIELD(get, field)                                                \
  do {                                                                        \
    uint64_t now_ = (uint64_t)(get);                                          \
    if (now_ != (uint64_t)(field))                                            \
      mm_test_fail(__FILE__, line, "%s: %s is %" PRIu64 ", was %" PRIu64,     \
                   what, #get, now_, (uint64_t)(field));                      \
  } while (0)
  SNAP_FIELD(mm_region_size(r), s->size);
  SNAP_FIELD(mm_region_committed(r), s->committed);
  SNAP_FIELD(mm_region_reserve(r), s->reserve);
  SNAP_FIELD(mm_region_moves(r), s->moves);
  SNAP_FIELD(mm_region_stable(r), s->stable);
  SNAP_FIELD((uintptr_t)mm_region_base(r), (uintptr_t)s->base);
  if (s->path) SNAP_FIELD(file_size(s->path), s->fsize);
#undef SNAP_FIELD
  check_readable_at(B(r), s->size, what, line);
  check_mem_at(B(r), s->bytes, s->size, what, line);
}
#define SNAP_CHECK(s, r, what) snap_check_at((s), (r), (what), __LINE__)

/* The invariants every region keeps. */
static void inv_at(const mm_region_t *r, int line) {
  uint64_t p = pg(), s = mm_region_size(r), c = mm_region_committed(r),
           rv = mm_region_reserve(r);
  if (c % p)
    mm_test_fail(__FILE__, line, "committed %" PRIu64 " is not whole pages", c);
  if (c < s)
    mm_test_fail(__FILE__, line, "committed %" PRIu64 " < size %" PRIu64, c, s);
  if (s > rv)
    mm_test_fail(__FILE__, line, "size %" PRIu64 " > reserve %" PRIu64, s, rv);
  if (c > rup(rv))
    mm_test_fail(__FILE__, line,
                 "committed %" PRIu64 " beyond the reserve %" PRIu64, c, rv);
  if (mm_region_stable(r) && mm_region_moves(r))
    mm_test_fail(__FILE__, line, "a stable region reports %" PRIu64 " moves",
                 mm_region_moves(r));
  if (mm_region_stable(r) && (mm_region_base(r) == NULL ||
                              (uintptr_t)mm_region_base(r) % p))
    mm_test_fail(__FILE__, line, "stable region base %p", mm_region_base(r));
}
#define INV(r) inv_at((r), __LINE__)

/* Close a region and check its file then holds exactly its bytes. */
static void close_check_at(mm_region_t *r, const char *path, int line) {
  uint64_t n = mm_region_size(r);
  unsigned char *copy = NULL;
  if (path) {
    copy = malloc(n ? n : 1);
    ASSERT(copy);
    if (n) memcpy(copy, B(r), n);
  }
  int rc = mm_region_close(r);
  if (rc != 0)
    mm_test_fail(__FILE__, line, "mm_region_close: %s", mm_errname(rc));
  if (path) {
    check_file_at(path, copy, n, "file after close", line);
    if (maps_count(path) != 0)
      mm_test_fail(__FILE__, line, "%s is still mapped after close", path);
    free(copy);
  }
}
#define CLOSE_CHECK(r, path) close_check_at((r), (path), __LINE__)

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

static pid_t fork_flushed(void) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  return pid;
}

/* A private mount namespace with a fresh tmpfs at <testdir>/mnt. */
static void private_tmpfs(char *mnt, size_t cap, const char *opts) {
  if (unshare(CLONE_NEWNS) != 0) SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
  if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    SKIP("make / private: %s", strerror(errno));
  snprintf(mnt, cap, "%s/mnt", mm_test_dir());
  if (mkdir(mnt, 0700) != 0) FAIL("mkdir %s: %s", mnt, strerror(errno));
  if (mount("tmpfs", mnt, "tmpfs", 0, opts) != 0)
    SKIP("mount tmpfs -o %s: %s", opts, strerror(errno));
}

/* Is [a, a+P) free address space? Maps and unmaps a probe with
 * MAP_FIXED_NOREPLACE. 1: free (a hole), 0: something is mapped there. */
static int hole_at(uintptr_t a) {
  void *m = mmap((void *)a, pg(), PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (m == MAP_FAILED) {
    if (errno == EEXIST) return 0;
    FAIL("probe mmap at %#lx: %s", (unsigned long)a, strerror(errno));
  }
  munmap(m, pg());
  if ((uintptr_t)m != a) SKIP("kernel ignores MAP_FIXED_NOREPLACE");
  return 1;
}

/* Map `len` bytes at the first free address at or after `from` (walking
 * over mappings in the way), or NULL. */
static void *place_blocker(uintptr_t from, uint64_t len) {
  uintptr_t a = from;
  for (int t = 0; t < 32; t++) {
    void *m = mmap((void *)a, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m == (void *)a) return m;
    if (m != MAP_FAILED) {
      munmap(m, len);
      return NULL;
    }
    if (errno != EEXIST) return NULL;
    uintptr_t e = vma_end_containing(a);
    if (e == 0) return NULL;
    a = e;
  }
  return NULL;
}

static void limit_as(uint64_t headroom) {
  struct rlimit rl;
  rl.rlim_cur = rl.rlim_max = (rlim_t)(vsz_now() + headroom);
  if (setrlimit(RLIMIT_AS, &rl) != 0) FAIL("setrlimit(RLIMIT_AS): %s", strerror(errno));
}

/* ------------------------------------------------------------------------ */
/* creation, sizes and contents                                             */

TEST(region_adv_all_zero_opts_give_an_empty_anonymous_region_with_the_default_reserve) {
  uint64_t P = pg();
  mm_region_opts_t o;
  memset(&o, 0, sizeof o);
  mm_region_t *r = JUNK;
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT(r != NULL && r != JUNK);
  ASSERT_EQ(mm_region_size(r), 0);
  ASSERT_EQ(mm_region_committed(r), 0); /* "nothing committed" */
  ASSERT_EQ(mm_region_reserve(r), MM_REGION_RESERVE_DEFAULT);
  ASSERT_EQ(mm_region_stable(r), 1);
  ASSERT_EQ(mm_region_moves(r), 0);
  INV(r);
  /* Anonymous regions have nothing to write back. */
  ASSERT_OK(mm_region_sync(r, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_region_sync(r, 0, 0, MM_SYNC_ASYNC));
  void *b0 = mm_region_base(r);
  ASSERT_OK(mm_region_resize(r, 1));
  ASSERT(mm_region_base(r) == b0);
  ASSERT(mm_region_committed(r) >= P);
  INV(r);
  ASSERT_EQ(B(r)[0], 0);
  B(r)[0] = 0x42;
  ASSERT_OK(mm_region_sync(r, 0, 1, MM_SYNC_WAIT));
  ASSERT_OK(mm_region_close(r));
  ASSERT_EQ(mm_region_close(NULL), 0);

  /* reserve 0 on a file-backed region is the default as well */
  const char *path = mm_test_path("f");
  ASSERT_OK(RCREATE(&r, path, 0, 0, MM_REGION_CREATE));
  ASSERT_EQ(mm_region_reserve(r), MM_REGION_RESERVE_DEFAULT);
  ASSERT_EQ(mm_region_size(r), 0);
  ASSERT_EQ(mm_region_stable(r), 1);
  INV(r);
  ASSERT_EQ(file_size(path), 0);
  CLOSE_CHECK(r, path);
}

TEST(region_adv_initial_size_reads_zero_over_whole_pages_and_sets_the_file_size) {
  uint64_t P = pg();
  uint64_t inits[] = {1, P - 1, P, P + 1, 3 * P + 5, MiB + 3};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < NELEM(inits); i++) {
      const char *path = k ? mm_test_path("f") : NULL;
      if (path) unlink(path);
      mm_region_t *r = MK(path, 64 * MiB, inits[i]);
      ASSERT_EQ(mm_region_size(r), inits[i]);
      ASSERT_EQ(mm_region_reserve(r), 64 * MiB);
      ASSERT_EQ(mm_region_stable(r), 1);
      INV(r);
      CHECK_READABLE(B(r), inits[i], "initial");
      CHECK_ZERO(B(r), 0, inits[i], "initial bytes");
      if (path) ASSERT(file_size(path) >= inits[i]);
      fill_at(B(r), 0, inits[i], i);
      CLOSE_CHECK(r, path);
    }
}

TEST(region_adv_resize_steps_keep_the_base_and_every_byte_and_zero_new_bytes) {
  uint64_t P = pg();
  uint64_t steps[] = {1,         7,      P - 1, P,     P + 1,          5 * P + 3,
                      2 * P + 9, 2 * P + 9, 17 * P + 1, 3, 0,           4 * P + 2,
                      16 * MiB + 5, 123, 3 * P, 3 * P - 1, 40 * P + 77};
  uint64_t maxs = 16 * MiB + 5;
  unsigned char *model = calloc(maxs, 1);
  ASSERT(model);
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 64 * MiB, 0);
    void *base0 = mm_region_base(r);
    uint64_t cur = 0;
    for (size_t j = 0; j < NELEM(steps); j++) {
      uint64_t s = steps[j];
      char what[128];
      snprintf(what, sizeof what, "%s, step %zu: %" PRIu64 " -> %" PRIu64,
               kind_name(path), j, cur, s);
      int rc = mm_region_resize(r, s);
      if (rc) FAIL("%s: %s", what, mm_errname(rc));
      if (mm_region_base(r) != base0) FAIL("%s: the base moved", what);
      ASSERT_EQ(mm_region_size(r), s);
      /* Reading: shrinking gives back every page past the new size (how
       * much a grow commits is checked on its own below). */
      if (s < cur && mm_region_committed(r) != rup(s))
        FAIL("%s: committed %" PRIu64 " after shrinking, want %" PRIu64, what,
             mm_region_committed(r), rup(s));
      INV(r);
      uint64_t keep = min64(cur, s);
      CHECK_READABLE(B(r), s, what);
      CHECK_MEM(B(r), model, keep, what);
      if (s > cur) CHECK_ZERO(B(r), cur, s, what);
      if (path && file_size(path) < s)
        FAIL("%s: file is %" PRIu64 " bytes, shorter than the region", what,
             file_size(path));
      fill_at(B(r), keep, s, j + 1);
      /* and rewrite a few old bytes too */
      for (uint64_t i = 0; i < keep; i += P / 3 + 1) B(r)[i] ^= 0x5a;
      memcpy(model, B(r), s);
      cur = s;
    }
    CLOSE_CHECK(r, path);
    if (path) {
      mm_region_t *r2;
      ASSERT_OK(RCREATE(&r2, path, 64 * MiB, 0, 0));
      ASSERT_EQ(mm_region_size(r2), cur);
      CHECK_MEM(B(r2), model, cur, "reopened");
      CLOSE_CHECK(r2, path);
    }
  }
  free(model);
}

/* SIZES: "size is what the caller asked for (mm_region_resize) or appended
 * (mm_region_append); the committed memory behind it is whole pages, and
 * for appends grows ahead geometrically". Reading: only appends grow ahead;
 * a resize commits the whole pages covering the size and no more (for a
 * file-backed region that is also the disk space fallocated for it). */
/* SIZES (as amended: growth commits ahead like a vector's capacity):
 * growing commits whole pages covering the size plus at most the room
 * ahead (an eighth of what was committed, at least 64 KiB); shrinking
 * commits exactly the pages covering the size; a file-backed region's file
 * is as long as what is committed and has no more blocks allocated. */
TEST(region_adv_resize_commits_the_covering_pages_plus_bounded_room_ahead) {
  uint64_t P = pg();
  uint64_t steps[] = {1, P, P + 1, 64 * KiB + 1, MiB, MiB + 1, 2 * MiB + 3,
                      3 * MiB, 5};
  char report[4096] = "";
  size_t used = 0;
  int bad = 0;
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 1 * GiB, 0);
    if (used < sizeof report)
      used += (size_t)snprintf(report + used, sizeof report - used, " [%s]",
                               kind_name(path));
    uint64_t before = 0, size = 0;
    for (size_t i = 0; i < NELEM(steps); i++) {
      ASSERT_OK(mm_region_resize(r, steps[i]));
      INV(r);
      uint64_t c = mm_region_committed(r);
      uint64_t need = rup(steps[i]);
      uint64_t ahead = before / 8 > 64 * KiB ? before / 8 : 64 * KiB;
      int ok;
      if (steps[i] < size)
        ok = c == need; /* shrinking: exactly the covering pages */
      else if (need <= before)
        ok = c == before; /* already covered: no change */
      else
        ok = c % P == 0 && c >= need && c <= (need > before + ahead ? need : rup(before + ahead));
      if (!ok) bad++;
      if (used < sizeof report)
        used += (size_t)snprintf(report + used, sizeof report - used,
                                 " resize(%" PRIu64 ")->committed %" PRIu64 "%s;",
                                 steps[i], c, ok ? "" : " (!)");
      if (path && file_blocks_bytes(path) > c + 64 * KiB && used < sizeof report) {
        bad++;
        used += (size_t)snprintf(report + used, sizeof report - used,
                                 " file has %" PRIu64 " bytes allocated (!);",
                                 file_blocks_bytes(path));
      }
      before = c;
      size = steps[i];
    }
    CLOSE_CHECK(r, path);
  }
  if (bad) FAIL("resize commits outside the contract:%s", report);
}

/* "Shrinking ... the bytes are gone" and "new bytes read as zero": bytes
 * past a shrunken size that share its last page must not come back. */
TEST(region_adv_shrink_then_grow_within_the_kept_page_reads_zero) {
  uint64_t P = pg();
  struct {
    uint64_t big, small, regrow;
  } cases[] = {{100, 50, 100},         {3 * P + 100, P + 7, 3 * P + 100},
               {P, P - 1, P},          {2 * P + 5, 2 * P + 1, 2 * P + 5},
               {P + 7, 0, 2 * P},      {5 * P, 4 * P + 1, 8 * P},
               {5 * P, 1, 5 * P},      {64 * KiB + 9, 64 * KiB + 1, 70 * KiB}};
  for (int k = 0; k < 2; k++)
    for (int mode = 0; mode < 2; mode++) /* regrow by resize / append(NULL) */
      for (size_t c = 0; c < NELEM(cases); c++) {
        const char *path = k ? mm_test_path("f") : NULL;
        if (path) unlink(path);
        char what[160];
        snprintf(what, sizeof what,
                 "%s, %" PRIu64 " -> %" PRIu64 " -> %" PRIu64 " by %s",
                 kind_name(path), cases[c].big, cases[c].small,
                 cases[c].regrow, mode ? "append(NULL)" : "resize");
        mm_region_t *r = MK(path, 64 * MiB, 0);
        ASSERT_OK(mm_region_resize(r, cases[c].big));
        fill_at(B(r), 0, cases[c].big, 3);
        ASSERT_OK(mm_region_resize(r, cases[c].small));
        CHECK_PAT(B(r), 0, cases[c].small, 3, what);
        if (mode == 0) {
          ASSERT_OK(mm_region_resize(r, cases[c].regrow));
        } else {
          uint64_t at = 77;
          ASSERT_OK(mm_region_append(r, NULL, cases[c].regrow - cases[c].small,
                                     &at));
          ASSERT_EQ(at, cases[c].small);
        }
        ASSERT_EQ(mm_region_size(r), cases[c].regrow);
        INV(r);
        CHECK_PAT(B(r), 0, cases[c].small, 3, what);
        CHECK_ZERO(B(r), cases[c].small, cases[c].regrow, what);
        CLOSE_CHECK(r, path);
      }
}

TEST(region_adv_append_then_resize_down_then_append_null_reads_zero) {
  uint64_t P = pg();
  unsigned char chunk[777];
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 256 * MiB, 0);
    uint64_t total = 3 * P + 50, at = 0;
    while (mm_region_size(r) < total) {
      uint64_t s0 = mm_region_size(r);
      size_t n = (size_t)min64(sizeof chunk, total - s0);
      for (size_t i = 0; i < n; i++) chunk[i] = pat(s0 + i, 5);
      ASSERT_OK(mm_region_append(r, chunk, n, &at));
      ASSERT_EQ(at, s0);
    }
    /* SIZES: appends grow ahead by at least 64 KiB */
    ASSERT(mm_region_committed(r) >= 64 * KiB);
    INV(r);
    CHECK_PAT(B(r), 0, total, 5, "appended");
    ASSERT_OK(mm_region_resize(r, P + 3));
    /* Reading: "gives the pages past the new size back" - the append slack
     * included. */
    ASSERT_EQ(mm_region_committed(r), rup(P + 3));
    CHECK_PAT(B(r), 0, P + 3, 5, "after resize down");
    ASSERT_OK(mm_region_append(r, NULL, 2 * P, &at));
    ASSERT_EQ(at, P + 3);
    CHECK_ZERO(B(r), P + 3, 3 * P + 3, "append(NULL) after resize down");
    ASSERT_OK(mm_region_append(r, NULL, MiB, &at));
    ASSERT_EQ(at, 3 * P + 3);
    CHECK_ZERO(B(r), P + 3, 3 * P + 3 + MiB, "big append(NULL)");
    /* dirty the tail, shrink into the middle of a page, append real bytes,
     * then grow: only the appended bytes may be non-zero */
    memset(B(r) + P + 3, 0xee, 2 * P);
    ASSERT_OK(mm_region_resize(r, P + 3));
    for (size_t i = 0; i < 100; i++) chunk[i] = (unsigned char)(0x80 | i);
    ASSERT_OK(mm_region_append(r, chunk, 100, &at));
    ASSERT_EQ(at, P + 3);
    ASSERT_OK(mm_region_resize(r, 3 * P));
    CHECK_PAT(B(r), 0, P + 3, 5, "head");
    CHECK_MEM(B(r) + P + 3, chunk, 100, "appended after shrink");
    CHECK_ZERO(B(r), P + 103, 3 * P, "grown after append");
    INV(r);
    CLOSE_CHECK(r, path);
  }
}

TEST(region_adv_shrinking_an_anonymous_region_drops_rss_and_regrows_zeroed) {
  uint64_t big = 128 * MiB;
  mm_region_t *r = MK(NULL, 1 * GiB, 0);
  void *b0 = mm_region_base(r);
  uint64_t rss0 = rss_now();
  ASSERT_OK(mm_region_resize(r, big));
  memset(B(r), 0x5a, big);
  uint64_t rss1 = rss_now();
  if (rss1 < rss0 + big - 8 * MiB)
    FAIL("RSS only rose from %" PRIu64 " to %" PRIu64 " after touching 128 MiB",
         rss0, rss1);
  ASSERT_OK(mm_region_resize(r, MiB + 1));
  uint64_t rss2 = rss_now();
#if defined(__SANITIZE_THREAD__)
  /* ThreadSanitizer's shadow of the touched range (several times its size)
   * stays resident after the pages are freed: RSS says nothing here. */
  rss2 = 0, rss1 = big;
#endif
  if (rss2 + (big - 16 * MiB) > rss1)
    FAIL("shrinking 128 MiB to 1 MiB left RSS at %" PRIu64 " MiB (was %" PRIu64
         " MiB with 128 MiB touched, %" PRIu64 " MiB before): the pages were "
         "not given back",
         rss2 >> 20, rss1 >> 20, rss0 >> 20);
  ASSERT_EQ(mm_region_committed(r), rup(MiB + 1));
  for (uint64_t i = 0; i < MiB + 1; i++)
    if (B(r)[i] != 0x5a) FAIL("byte %" PRIu64 " lost in shrink", i);
  ASSERT_OK(mm_region_resize(r, 0));
  ASSERT_EQ(mm_region_committed(r), 0);
  /* (slack of big/4: a sanitizer's shadow of the touched range stays) */
#if !defined(__SANITIZE_THREAD__)
  if (rss_now() > rss0 + big / 4)
    FAIL("after resize(0) RSS is %" PRIu64 " MiB, %" PRIu64 " MiB before",
         rss_now() >> 20, rss0 >> 20);
#endif
  ASSERT_OK(mm_region_resize(r, big));
  ASSERT(mm_region_base(r) == b0);
  /* (no RSS check after reading: this kernel backs read faults on private
   * anonymous memory with real pages, not the zero page) */
  CHECK_ZERO(B(r), 0, big, "regrown after shrink to 0");
  /* and closing a touched region gives its memory back too */
  memset(B(r), 0x11, big);
  ASSERT(rss_now() >= rss0 + big - 8 * MiB);
  ASSERT_OK(mm_region_close(r));
  if (rss_now() > rss0 + big / 4)
    FAIL("after close RSS is %" PRIu64 " MiB, %" PRIu64 " MiB before",
         rss_now() >> 20, rss0 >> 20);
}

TEST(region_adv_trim_gives_back_append_slack_and_keeps_every_byte) {
  unsigned char chunk[4000];
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 1 * GiB, 0);
    void *b0 = mm_region_base(r);
    /* append until there is a good deal of slack */
    while (mm_region_size(r) < 8 * MiB ||
           mm_region_committed(r) - rup(mm_region_size(r)) < 256 * KiB) {
      uint64_t s0 = mm_region_size(r);
      for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = pat(s0 + i, 8);
      ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, NULL));
      if (mm_region_size(r) > 64 * MiB) FAIL("append never left 256 KiB of slack");
    }
    uint64_t size = mm_region_size(r), c0 = mm_region_committed(r);
    uint64_t rss0 = rss_now();
    uint64_t blocks0 = path ? file_blocks_bytes(path) : 0;
    ASSERT_OK(mm_region_trim(r));
    ASSERT_EQ(mm_region_size(r), size);
    ASSERT(mm_region_base(r) == b0);
    if (mm_region_committed(r) != rup(size))
      FAIL("%s: after trim committed is %" PRIu64 ", want %" PRIu64
           " (size %" PRIu64 ", committed before %" PRIu64 ")",
           kind_name(path), mm_region_committed(r), rup(size), size, c0);
    INV(r);
    CHECK_READABLE(B(r), size, "after trim");
    CHECK_PAT(B(r), 0, size, 8, "after trim");
    ASSERT(rss_now() <= rss0 + MiB);
    if (path) {
      uint64_t fs = file_size(path), blocks1 = file_blocks_bytes(path);
      if (fs < size) FAIL("file shorter (%" PRIu64 ") than the region", fs);
      /* Reading: the file's tail past the committed pages is released */
      if (fs > rup(size) || blocks1 > rup(size) + 128 * KiB)
        FAIL("after trim the file is %" PRIu64 " bytes with %" PRIu64
             " allocated (before: %" PRIu64 " allocated), for a size of %" PRIu64,
             fs, blocks1, blocks0, size);
    }
    /* trim twice is harmless; appending after it works */
    ASSERT_OK(mm_region_trim(r));
    ASSERT_EQ(mm_region_committed(r), rup(size));
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = pat(size + i, 8);
    uint64_t at = 0;
    ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, &at));
    ASSERT_EQ(at, size);
    CHECK_PAT(B(r), 0, size + sizeof chunk, 8, "appended after trim");
    ASSERT_OK(mm_region_resize(r, 0));
    ASSERT_OK(mm_region_trim(r));
    ASSERT_EQ(mm_region_committed(r), 0);
    ASSERT(mm_region_base(r) == b0);
    CLOSE_CHECK(r, path);
  }
}

TEST(region_adv_shrinking_a_file_backed_region_releases_the_file_tail) {
  const char *path = mm_test_path("f");
  mm_region_t *r = MK(path, 1 * GiB, 0);
  ASSERT_OK(mm_region_resize(r, 32 * MiB));
  fill_at(B(r), 0, 32 * MiB, 9);
  ASSERT(file_blocks_bytes(path) >= 30 * MiB);
  uint64_t small = MiB + 5;
  ASSERT_OK(mm_region_resize(r, small));
  uint64_t fs = file_size(path), blocks = file_blocks_bytes(path);
  if (fs < small || fs > rup(small) || blocks > rup(small) + 128 * KiB)
    FAIL("after shrinking 32 MiB to %" PRIu64 " the file is %" PRIu64
         " bytes with %" PRIu64 " allocated",
         small, fs, blocks);
  ASSERT_EQ(mm_region_committed(r), rup(small));
  CHECK_PAT(B(r), 0, small, 9, "after shrink");
  CLOSE_CHECK(r, path);
  mm_region_t *r2;
  ASSERT_OK(RCREATE(&r2, path, 1 * GiB, 0, 0));
  ASSERT_EQ(mm_region_size(r2), small);
  CHECK_PAT(B(r2), 0, small, 9, "reopened");
  ASSERT_OK(mm_region_close(r2));
}

/* mm_region_close: "A file-backed region's file keeps mm_region_size()
 * bytes" - not the committed pages, not the append slack. */
TEST(region_adv_file_holds_exactly_size_bytes_after_close_in_every_case) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  for (int sc = 0; sc < 8; sc++) {
    unlink(path);
    mm_region_t *r = NULL;
    uint64_t reserve = sc == 6 ? 3 * P + 5 : 64 * MiB;
    r = MK(path, reserve, sc == 0 ? 5 : 0);
    switch (sc) {
      case 0: /* initial not page-aligned, nothing else */
        break;
      case 1: /* many small appends: slack ahead */
      case 2: /* ... then trim */
        for (int i = 0; i < 1000; i++) {
          unsigned char b[37];
          for (int j = 0; j < 37; j++) b[j] = pat((uint64_t)i * 37 + (uint64_t)j, 1);
          ASSERT_OK(mm_region_append(r, b, sizeof b, NULL));
        }
        ASSERT(mm_region_committed(r) > rup(mm_region_size(r)));
        if (sc == 2) ASSERT_OK(mm_region_trim(r));
        break;
      case 3: /* grow then shrink to an odd size */
        ASSERT_OK(mm_region_resize(r, 3 * P));
        fill_at(B(r), 0, 3 * P, 2);
        ASSERT_OK(mm_region_resize(r, 2 * P - 1));
        break;
      case 4: /* shrink to nothing */
        ASSERT_OK(mm_region_resize(r, 3 * P));
        fill_at(B(r), 0, 3 * P, 2);
        ASSERT_OK(mm_region_resize(r, 0));
        break;
      case 5: /* append slack, then resize up inside the slack */
        ASSERT_OK(mm_region_append(r, "abc", 3, NULL));
        ASSERT_OK(mm_region_resize(r, 1000));
        break;
      case 6: /* an odd reserve, filled exactly */
        ASSERT_OK(mm_region_resize(r, 3 * P + 5));
        fill_at(B(r), 0, 3 * P + 5, 4);
        break;
      case 7: /* append(NULL) of an odd length */
        ASSERT_OK(mm_region_append(r, NULL, 12345, NULL));
        break;
    }
    uint64_t size = mm_region_size(r);
    unsigned char *copy = malloc(size + 1);
    memcpy(copy, B(r), size);
    CLOSE_CHECK(r, path);
    mm_region_t *r2;
    ASSERT_OK(RCREATE(&r2, path, 64 * MiB, 0, 0));
    if (mm_region_size(r2) != size)
      FAIL("case %d: reopened size %" PRIu64 ", closed at %" PRIu64, sc,
           mm_region_size(r2), size);
    CHECK_MEM(B(r2), copy, size, "reopened");
    CLOSE_CHECK(r2, path);
    free(copy);
  }
}

TEST(region_adv_reopening_an_existing_file_gives_back_its_contents_and_size) {
  uint64_t P = pg(), fsz = 3 * P + 5;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, fsz);
  mm_region_t *r;
  /* initial 0 and initial smaller than the file: the file's own size */
  uint64_t inits[] = {0, 1, P, fsz};
  for (size_t i = 0; i < NELEM(inits); i++) {
    ASSERT_OK(RCREATE(&r, path, 64 * MiB, inits[i], 0));
    ASSERT_EQ(mm_region_size(r), fsz);
    INV(r);
    CHECK_READABLE(B(r), fsz, "reopened");
    for (uint64_t j = 0; j < fsz; j++)
      if (B(r)[j] != mm_test_byte(j)) FAIL("reopened byte %" PRIu64 " differs", j);
    CLOSE_CHECK(r, path);
    CHECK_FILE_PATTERN(path, fsz, "after reopen+close");
  }
  /* MM_REGION_CREATE without EXCL opens the existing file as it is */
  ASSERT_OK(RCREATE(&r, path, 64 * MiB, 0, MM_REGION_CREATE));
  ASSERT_EQ(mm_region_size(r), fsz);
  CLOSE_CHECK(r, path);
  CHECK_FILE_PATTERN(path, fsz, "after CREATE on an existing file");
  /* initial larger than the file grows it, zero-filled */
  ASSERT_OK(RCREATE(&r, path, 64 * MiB, 5 * P + 1, 0));
  ASSERT_EQ(mm_region_size(r), 5 * P + 1);
  ASSERT(file_size(path) >= 5 * P + 1);
  for (uint64_t j = 0; j < fsz; j++)
    if (B(r)[j] != mm_test_byte(j)) FAIL("grown-on-open byte %" PRIu64 " differs", j);
  CHECK_ZERO(B(r), fsz, 5 * P + 1, "grown on open");
  CLOSE_CHECK(r, path);
  ASSERT_EQ(file_size(path), 5 * P + 1);
}

TEST(region_adv_truncate_flag_discards_the_contents_down_to_initial) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 3 * P + 5);
  mm_region_t *r;
  ASSERT_OK(RCREATE(&r, path, 64 * MiB, 0, MM_REGION_TRUNCATE));
  ASSERT_EQ(mm_region_size(r), 0);
  CLOSE_CHECK(r, path);
  ASSERT_EQ(file_size(path), 0);

  mm_test_write_file(path, 3 * P + 5);
  ASSERT_OK(RCREATE(&r, path, 64 * MiB, P + 3, MM_REGION_TRUNCATE));
  ASSERT_EQ(mm_region_size(r), P + 3);
  CHECK_ZERO(B(r), 0, P + 3, "truncated to initial");
  ASSERT_OK(mm_region_resize(r, 3 * P + 5));
  CHECK_ZERO(B(r), 0, 3 * P + 5, "grown after truncate");
  ASSERT_OK(mm_region_resize(r, P + 3));
  CLOSE_CHECK(r, path);

  /* TRUNCATE with an initial larger than the old file: all zero */
  mm_test_write_file(path, P);
  ASSERT_OK(RCREATE(&r, path, 64 * MiB, 2 * P + 1,
                    MM_REGION_TRUNCATE | MM_REGION_CREATE));
  ASSERT_EQ(mm_region_size(r), 2 * P + 1);
  CHECK_ZERO(B(r), 0, 2 * P + 1, "truncate+grow");
  CLOSE_CHECK(r, path);
}

TEST(region_adv_excl_on_an_existing_file_is_eexist_and_leaves_it_untouched) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 2 * P + 7);
  int fds0 = count_fds();
  mm_region_t *r;
  unsigned flags[] = {MM_REGION_CREATE | MM_REGION_EXCL,
                      MM_REGION_CREATE | MM_REGION_EXCL | MM_REGION_TRUNCATE};
  uint64_t inits[] = {0, 5 * P};
  for (size_t f = 0; f < NELEM(flags); f++)
    for (size_t i = 0; i < NELEM(inits); i++) {
      ASSERT_RC(RCREATE(&r, path, 64 * MiB, inits[i], flags[f]), -EEXIST);
      CHECK_FILE_PATTERN(path, 2 * P + 7, "after EEXIST");
      ASSERT_EQ(count_fds(), fds0);
      ASSERT_EQ(maps_count(path), 0);
    }
  const char *p2 = mm_test_path("new");
  ASSERT_OK(RCREATE(&r, p2, 64 * MiB, 10, MM_REGION_CREATE | MM_REGION_EXCL));
  ASSERT_EQ(mm_region_size(r), 10);
  CLOSE_CHECK(r, p2);
}

TEST(region_adv_create_uses_perm_or_0600_and_never_follows_a_symlink) {
  uint64_t P = pg();
  umask(0);
  mm_region_t *r;
  struct stat st;
  const char *p1 = mm_test_path("a");
  ASSERT_OK(RCREATE(&r, p1, 64 * MiB, 1, MM_REGION_CREATE));
  ASSERT_OK(mm_region_close(r));
  ASSERT_EQ(stat(p1, &st), 0);
  ASSERT_EQ(st.st_mode & 07777, 0600);

  const char *p2 = mm_test_path("b");
  mm_region_opts_t o;
  memset(&o, 0, sizeof o);
  o.path = p2;
  o.flags = MM_REGION_CREATE;
  o.perm = 0640;
  o.reserve = 64 * MiB;
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT_OK(mm_region_close(r));
  ASSERT_EQ(stat(p2, &st), 0);
  ASSERT_EQ(st.st_mode & 07777, 0640);

  /* a symlink to an existing file: O_NOFOLLOW refuses it */
  const char *target = mm_test_path("target");
  const char *link = mm_test_path("link");
  mm_test_write_file(target, 2 * P + 1);
  ASSERT_EQ(symlink(target, link), 0);
  int fds0 = count_fds();
  unsigned fl[] = {MM_REGION_CREATE, MM_REGION_CREATE | MM_REGION_TRUNCATE};
  for (size_t i = 0; i < NELEM(fl); i++) {
    int rc = RCREATE(&r, link, 64 * MiB, 5 * P, fl[i]);
    if (rc == 0) {
      ASSERT_OK(mm_region_close(r));
      FAIL("MM_REGION_CREATE followed a symlink (flags %#x)", fl[i]);
    }
    ASSERT(rc < 0);
    CHECK_FILE_PATTERN(target, 2 * P + 1, "symlink target");
    ASSERT_EQ(count_fds(), fds0);
  }
  /* a dangling symlink: nothing may be created at its target */
  const char *dangling = mm_test_path("dangling");
  const char *nowhere = mm_test_path("nowhere");
  ASSERT_EQ(symlink(nowhere, dangling), 0);
  int rc = RCREATE(&r, dangling, 64 * MiB, P, MM_REGION_CREATE);
  if (rc == 0) {
    ASSERT_OK(mm_region_close(r));
    FAIL("MM_REGION_CREATE followed a dangling symlink");
  }
  ASSERT(!file_exists(nowhere));
}

TEST(region_adv_missing_directory_or_file_is_enoent_and_creates_nothing) {
  mm_region_t *r;
  int fds0 = count_fds();
  const char *in_missing = mm_test_path("nodir/f");
  ASSERT_RC(RCREATE(&r, in_missing, 64 * MiB, 0, MM_REGION_CREATE), -ENOENT);
  ASSERT_RC(RCREATE(&r, in_missing, 64 * MiB, 4096,
                    MM_REGION_CREATE | MM_REGION_EXCL | MM_REGION_TRUNCATE),
            -ENOENT);
  ASSERT_RC(RCREATE(&r, in_missing, 64 * MiB, 0, 0), -ENOENT);
  ASSERT_RC(RCREATE(&r, "", 64 * MiB, 0, 0), -ENOENT);
  ASSERT_RC(RCREATE(&r, "", 64 * MiB, 0, MM_REGION_CREATE), -ENOENT);
  const char *missing = mm_test_path("missing");
  ASSERT_RC(RCREATE(&r, missing, 64 * MiB, 0, 0), -ENOENT);
  ASSERT_RC(RCREATE(&r, missing, 64 * MiB, 100, MM_REGION_TRUNCATE), -ENOENT);
  ASSERT(!file_exists(missing));
  ASSERT_EQ(count_fds(), fds0);
}

/* Reading: a path that is not a regular file cannot back a region; the
 * error is any clear negative code, promptly (a FIFO must not block). */
TEST(region_adv_directory_or_fifo_path_fails_cleanly) {
  mm_region_t *r;
  int fds0 = count_fds();
  uint64_t v0 = vsz_now();
  const char *dir = mm_test_path("dir");
  ASSERT_EQ(mkdir(dir, 0700), 0);
  const char *fifo = mm_test_path("fifo");
  ASSERT_EQ(mkfifo(fifo, 0600), 0);
  const char *paths[] = {dir, fifo};
  unsigned fl[] = {0, MM_REGION_CREATE, MM_REGION_TRUNCATE};
  for (size_t p = 0; p < 2; p++)
    for (size_t f = 0; f < NELEM(fl); f++) {
      int rc = RCREATE(&r, paths[p], 64 * MiB, 4096, fl[f]);
      if (rc == 0) {
        ASSERT_OK(mm_region_close(r));
        FAIL("a region over %s was created", p ? "a FIFO" : "a directory");
      }
      ASSERT(rc < 0);
      ASSERT_EQ(count_fds(), fds0);
    }
  ASSERT(vsz_now() < v0 + 32 * MiB);
}

TEST(region_adv_read_only_mount_is_erofs_and_leaves_the_file_unchanged) {
  uint64_t P = pg();
  char mnt[600], path[700], fresh[700];
  private_tmpfs(mnt, sizeof mnt, "size=4m");
  snprintf(path, sizeof path, "%s/f", mnt);
  snprintf(fresh, sizeof fresh, "%s/new", mnt);
  mm_test_write_file(path, 3 * P + 5);
  if (mount("tmpfs", mnt, "tmpfs", MS_REMOUNT | MS_RDONLY, "size=4m") != 0)
    SKIP("remount read-only: %s", strerror(errno));
  int fds0 = count_fds();
  mm_region_t *r;
  unsigned fl[] = {0, MM_REGION_CREATE, MM_REGION_TRUNCATE,
                   MM_REGION_CREATE | MM_REGION_TRUNCATE};
  for (size_t f = 0; f < NELEM(fl); f++) {
    ASSERT_RC(RCREATE(&r, path, 64 * MiB, 0, fl[f]), -EROFS);
    ASSERT_RC(RCREATE(&r, path, 64 * MiB, 5 * P, fl[f]), -EROFS);
    CHECK_FILE_PATTERN(path, 3 * P + 5, "read-only file");
  }
  ASSERT_RC(RCREATE(&r, fresh, 64 * MiB, 0, MM_REGION_CREATE), -EROFS);
  ASSERT(!file_exists(fresh));
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(maps_count(path), 0);
}

/* The refusals an unprivileged user must get (run as uid 65534). */
static void unwritable_child_checks(const char *path, const char *fresh) {
  uint64_t P = pg();
  mm_region_t *r;
  int fds0 = count_fds();
  ASSERT_RC(RCREATE(&r, path, 64 * MiB, 0, 0), -EACCES);
  ASSERT_RC(RCREATE(&r, path, 64 * MiB, 5 * P, MM_REGION_TRUNCATE), -EACCES);
  ASSERT_RC(RCREATE(&r, path, 64 * MiB, 0, MM_REGION_CREATE), -EACCES);
  ASSERT_RC(RCREATE(&r, fresh, 64 * MiB, 0, MM_REGION_CREATE), -EACCES);
  ASSERT_EQ(count_fds(), fds0);
}

TEST(region_adv_unwritable_file_is_refused_and_left_unchanged) {
  uint64_t P = pg();
  const char *dir = mm_test_dir();
  const char *path = mm_test_path("ro");
  const char *fresh = mm_test_path("fresh");
  mm_test_write_file(path, 3 * P + 5);

  /* 1. as an unprivileged user: 0644 root-owned file, 0755 directory */
  ASSERT_EQ(chmod(dir, 0755), 0);
  ASSERT_EQ(chmod(path, 0644), 0);
  pid_t pid = fork_flushed();
  if (pid == 0) {
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      fprintf(stderr, "# cannot drop privileges: %s\n", strerror(errno));
      _exit(3);
    }
    unwritable_child_checks(path, fresh);
    _exit(0);
  }
  WAIT_CHILD(pid, "as nobody");
  CHECK_FILE_PATTERN(path, 3 * P + 5, "after refusals as nobody");
  ASSERT(!file_exists(fresh));

  /* 2. as root, an immutable file: open for writing fails with EPERM.
   * Reading: the kernel's errno passes through (-EPERM); -EACCES is
   * accepted as the header's "cannot be opened for writing". */
  int fd = open(path, O_RDONLY);
  ASSERT(fd >= 0);
  int fl = 0;
  if (ioctl(fd, RADV_FS_IOC_GETFLAGS, &fl) != 0) {
    close(fd);
    SKIP("FS_IOC_GETFLAGS: %s (immutable part not run)", strerror(errno));
  }
  int fl2 = fl | RADV_FS_IMMUTABLE_FL;
  if (ioctl(fd, RADV_FS_IOC_SETFLAGS, &fl2) != 0) {
    close(fd);
    SKIP("FS_IOC_SETFLAGS immutable: %s (immutable part not run)", strerror(errno));
  }
  pid = fork_flushed();
  if (pid == 0) {
    mm_region_t *r;
    int fds0 = count_fds();
    unsigned flags[] = {0, MM_REGION_CREATE, MM_REGION_TRUNCATE};
    for (size_t i = 0; i < NELEM(flags); i++) {
      int rc = RCREATE(&r, path, 64 * MiB, 5 * P, flags[i]);
      if (rc != -EPERM && rc != -EACCES) {
        fprintf(stderr, "# immutable file, flags %#x: got %s, want EPERM or EACCES\n",
                flags[i], mm_errname(rc));
        if (rc == 0) (void)mm_region_close(r);
        _exit(1);
      }
    }
    if (count_fds() != fds0) _exit(2);
    _exit(0);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  fl2 = fl & ~RADV_FS_IMMUTABLE_FL;
  int clr = ioctl(fd, RADV_FS_IOC_SETFLAGS, &fl2);
  close(fd);
  ASSERT_EQ(clr, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    FAIL("immutable-file child failed (status %#x)", st);
  CHECK_FILE_PATTERN(path, 3 * P + 5, "after refusals of an immutable file");
}

/* "zero or absurd sizes ... give a clear error". Reading: a reserve larger
 * than PTRDIFF_MAX can never be an object, so it is absurd (-EINVAL), and
 * bad options are refused before anything is created on disk. */
TEST(region_adv_absurd_or_inconsistent_create_sizes_are_einval_and_touch_nothing) {
  uint64_t P = pg();
  struct {
    uint64_t reserve, initial;
  } bad[] = {{UINT64_MAX, 0},
             {UINT64_MAX - P + 2, 0}, /* rounds up past 2^64 */
             {(uint64_t)1 << 63, 0},
             {((uint64_t)1 << 63) + P, P},
             {UINT64_MAX, 1},
             {P, P + 1},
             {3 * P + 5, 3 * P + 6},
             {0, MM_REGION_RESERVE_DEFAULT + 1},
             {0, UINT64_MAX},
             {1, 2},
             {MiB, UINT64_MAX},
             {64 * MiB, UINT64_MAX - P + 2}};
  int fds0 = count_fds();
  uint64_t v0 = vsz_now();
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < NELEM(bad); i++) {
      const char *path = k ? mm_test_path("new") : NULL;
      mm_region_t *r;
      int rc = RCREATE(&r, path, bad[i].reserve, bad[i].initial,
                       path ? MM_REGION_CREATE : 0);
      if (rc == 0) {
        uint64_t rs = mm_region_reserve(r), sz = mm_region_size(r);
        (void)mm_region_close(r);
        FAIL("%s, reserve %" PRIu64 " initial %" PRIu64
             ": created (reserve %" PRIu64 ", size %" PRIu64 "), want EINVAL",
             kind_name(path), bad[i].reserve, bad[i].initial, rs, sz);
      }
      if (rc != -EINVAL)
        FAIL("%s, reserve %" PRIu64 " initial %" PRIu64 ": got %s, want EINVAL",
             kind_name(path), bad[i].reserve, bad[i].initial, mm_errname(rc));
      if (path && file_exists(path))
        FAIL("reserve %" PRIu64 " initial %" PRIu64
             ": a refused create left the file behind",
             bad[i].reserve, bad[i].initial);
    }
  /* an existing file smaller than the reserve, initial > reserve */
  const char *path = mm_test_path("old");
  mm_test_write_file(path, 2 * P);
  mm_region_t *r;
  ASSERT_RC(RCREATE(&r, path, 3 * P, 4 * P, 0), -EINVAL);
  ASSERT_RC(RCREATE(&r, path, 3 * P, 4 * P, MM_REGION_TRUNCATE), -EINVAL);
  CHECK_FILE_PATTERN(path, 2 * P, "existing file after EINVAL");
  ASSERT_EQ(count_fds(), fds0);
  ASSERT(vsz_now() < v0 + 64 * MiB);

  /* edge cases that are fine: a 1-byte reserve, initial == odd reserve */
  ASSERT_OK(RCREATE(&r, NULL, 1, 1, 0));
  ASSERT_EQ(mm_region_reserve(r), 1);
  ASSERT_EQ(mm_region_size(r), 1);
  ASSERT_EQ(mm_region_committed(r), P);
  ASSERT_RC(mm_region_resize(r, 2), MM_EFULL);
  ASSERT_OK(mm_region_close(r));
  ASSERT_OK(RCREATE(&r, NULL, 3 * P + 5, 3 * P + 5, 0));
  ASSERT_EQ(mm_region_size(r), 3 * P + 5);
  ASSERT_OK(mm_region_close(r));
}

/* ------------------------------------------------------------------------ */
/* the reserve                                                              */

/* Reading: mm_region_reserve() reports exactly the reserve asked for (not
 * rounded to pages), and that is the most the size may reach. */
TEST(region_adv_resize_to_the_reserve_works_and_one_byte_more_is_efull) {
  uint64_t P = pg();
  uint64_t reserves[] = {1, P, 3 * P + 5, MiB, 64 * MiB + 1};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < NELEM(reserves); i++) {
      uint64_t R = reserves[i];
      const char *path = k ? mm_test_path("f") : NULL;
      if (path) unlink(path);
      char what[128];
      snprintf(what, sizeof what, "%s, reserve %" PRIu64, kind_name(path), R);
      mm_region_t *r = MK(path, R, 0);
      ASSERT_EQ(mm_region_reserve(r), R);
      int rc = mm_region_resize(r, R);
      if (rc) FAIL("%s: resize to the reserve: %s", what, mm_errname(rc));
      ASSERT_EQ(mm_region_size(r), R);
      ASSERT_EQ(mm_region_committed(r), rup(R));
      CHECK_READABLE(B(r), R, what);
      CHECK_ZERO(B(r), 0, R, what);
      fill_at(B(r), 0, R, i);
      struct snap s;
      snap_take(&s, r, path);
      uint64_t over[] = {R + 1, rup(R) + 1, R + P, UINT64_MAX, UINT64_MAX - P + 2,
                         (uint64_t)1 << 63, R % P ? rup(R) : R + 2};
      for (size_t o = 0; o < NELEM(over); o++) {
        rc = mm_region_resize(r, over[o]);
        if (rc != MM_EFULL)
          FAIL("%s: resize to %" PRIu64 ": got %s, want MM_EFULL", what, over[o],
               mm_errname(rc));
        SNAP_CHECK(&s, r, what);
      }
      uint64_t at = 5;
      ASSERT_RC(mm_region_append(r, "x", 1, &at), MM_EFULL);
      ASSERT_RC(mm_region_append(r, NULL, 1, &at), MM_EFULL);
      SNAP_CHECK(&s, r, what);
      snap_free(&s);
      ASSERT_OK(mm_region_resize(r, R - 1));
      ASSERT_OK(mm_region_resize(r, R));
      CHECK_PAT(B(r), 0, R - 1, i, what);
      CHECK_ZERO(B(r), R - 1, R, what);
      CLOSE_CHECK(r, path);
    }
  /* the default reserve: one byte past it is MM_EFULL, not ENOMEM */
  mm_region_t *r = MK(NULL, 0, 0);
  ASSERT_RC(mm_region_resize(r, MM_REGION_RESERVE_DEFAULT + 1), MM_EFULL);
  ASSERT_RC(mm_region_resize(r, UINT64_MAX), MM_EFULL);
  ASSERT_EQ(mm_region_size(r), 0);
  ASSERT_EQ(mm_region_committed(r), 0);
  ASSERT_OK(mm_region_close(r));
}

/* The append slack must never turn an append that fits into MM_EFULL, and
 * an append that does not fit appends nothing. */
TEST(region_adv_appends_fill_the_reserve_exactly_and_one_crossing_it_is_efull) {
  uint64_t P = pg();
  uint64_t reserves[] = {200 * KiB + 123, 64 * KiB, 3 * P + 1, MiB};
  unsigned char *src = malloc(2 * MiB);
  ASSERT(src);
  fill_at(src, 0, 2 * MiB, 6);
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < NELEM(reserves); i++) {
      uint64_t R = reserves[i], at = 0;
      const char *path = k ? mm_test_path("f") : NULL;
      if (path) unlink(path);
      char what[128];
      snprintf(what, sizeof what, "%s, reserve %" PRIu64, kind_name(path), R);
      mm_region_t *r = MK(path, R, 0);
      while (mm_region_size(r) + 1000 <= R) {
        uint64_t s0 = mm_region_size(r);
        int rc = mm_region_append(r, src + s0, 1000, &at);
        if (rc)
          FAIL("%s: append of 1000 at size %" PRIu64 ": %s", what, s0,
               mm_errname(rc));
        ASSERT_EQ(at, s0);
        INV(r);
      }
      uint64_t rem = R - mm_region_size(r);
      struct snap s;
      snap_take(&s, r, path);
      at = 12345;
      ASSERT_RC(mm_region_append(r, src + s.size, (size_t)rem + 1, &at), MM_EFULL);
      SNAP_CHECK(&s, r, what);
      ASSERT_RC(mm_region_append(r, NULL, (size_t)rem + 1, &at), MM_EFULL);
      SNAP_CHECK(&s, r, what);
      snap_free(&s);
      int rc = mm_region_append(r, src + (R - rem), (size_t)rem, &at);
      if (rc) FAIL("%s: the final %" PRIu64 " bytes: %s", what, rem, mm_errname(rc));
      ASSERT_EQ(mm_region_size(r), R);
      INV(r);
      snap_take(&s, r, path);
      ASSERT_RC(mm_region_append(r, src, 1, &at), MM_EFULL);
      ASSERT_RC(mm_region_append(r, NULL, 1, NULL), MM_EFULL);
      SNAP_CHECK(&s, r, what);
      snap_free(&s);
      /* Reading: a zero-length append always fits; it lands at the end */
      at = 0;
      ASSERT_OK(mm_region_append(r, src, 0, &at));
      ASSERT_EQ(at, R);
      CHECK_MEM(B(r), src, R, what);
      /* an append crossing the end by a little: nothing appended */
      ASSERT_OK(mm_region_resize(r, R - 10));
      snap_take(&s, r, path);
      ASSERT_RC(mm_region_append(r, src, 11, &at), MM_EFULL);
      SNAP_CHECK(&s, r, what);
      snap_free(&s);
      ASSERT_OK(mm_region_append(r, src + R - 10, 10, &at));
      CHECK_MEM(B(r), src, R, what);
      CLOSE_CHECK(r, path);
    }
  free(src);
}

TEST(region_adv_append_length_overflowing_the_size_is_efull_and_reads_nothing) {
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 0, 0);
    ASSERT_OK(mm_region_append(r, "0123456789", 10, NULL));
    struct snap s;
    snap_take(&s, r, path);
    unsigned char small[16] = {0};
    uint64_t at = 0;
    size_t ns[] = {SIZE_MAX, SIZE_MAX - 5, SIZE_MAX - 9, SIZE_MAX - 10,
                   (size_t)MM_REGION_RESERVE_DEFAULT - 9,
                   SIZE_MAX / 4 + 1}; /* 2^62 on 64-bit, 2^30 on 32-bit */
    for (size_t i = 0; i < NELEM(ns); i++) {
      int rc = mm_region_append(r, small, ns[i], &at);
      if (rc != MM_EFULL)
        FAIL("%s: append of %zu bytes at size 10: got %s, want MM_EFULL",
             kind_name(path), ns[i], mm_errname(rc));
      SNAP_CHECK(&s, r, "after overflowing append");
      rc = mm_region_append(r, NULL, ns[i], &at);
      if (rc != MM_EFULL)
        FAIL("%s: append(NULL) of %zu bytes: got %s, want MM_EFULL",
             kind_name(path), ns[i], mm_errname(rc));
      SNAP_CHECK(&s, r, "after overflowing append(NULL)");
    }
    snap_free(&s);
    CLOSE_CHECK(r, path);
  }
}

TEST(region_adv_file_larger_than_the_reserve_takes_the_file_size_as_reserve) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  uint64_t sizes[] = {3 * MiB + 5, 3 * P};
  uint64_t reserves[] = {MiB, 2 * P};
  for (size_t i = 0; i < NELEM(sizes); i++) {
    uint64_t fsz = sizes[i];
    mm_test_write_file(path, fsz);
    for (int create = 0; create < 2; create++) {
      mm_region_t *r;
      ASSERT_OK(RCREATE(&r, path, reserves[i], 0, create ? MM_REGION_CREATE : 0));
      ASSERT_EQ(mm_region_reserve(r), fsz);
      ASSERT_EQ(mm_region_size(r), fsz);
      INV(r);
      CHECK_READABLE(B(r), fsz, "big file");
      for (uint64_t j = 0; j < fsz; j++)
        if (B(r)[j] != mm_test_byte(j)) FAIL("byte %" PRIu64 " differs", j);
      struct snap s;
      snap_take(&s, r, path);
      ASSERT_RC(mm_region_resize(r, fsz + 1), MM_EFULL);
      ASSERT_RC(mm_region_append(r, "x", 1, NULL), MM_EFULL);
      SNAP_CHECK(&s, r, "file larger than reserve");
      snap_free(&s);
      ASSERT_OK(mm_region_resize(r, fsz - P));
      ASSERT_OK(mm_region_resize(r, fsz));
      CHECK_ZERO(B(r), fsz - P, fsz, "regrown to the file's size");
      /* put the pattern back for the next round */
      for (uint64_t j = fsz - P; j < fsz; j++) B(r)[j] = mm_test_byte(j);
      CLOSE_CHECK(r, path);
      CHECK_FILE_PATTERN(path, fsz, "after close");
    }
  }
}

/* ------------------------------------------------------------------------ */
/* append                                                                   */

/* An existing file of odd size: appends continue exactly at its end, the
 * old tail is kept, and the part of its last page past the old end (which
 * the kernel shows as zero) is overwritten only by what is appended. */
TEST(region_adv_append_to_a_reopened_odd_sized_file_continues_at_its_end) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  uint64_t sizes[] = {1, P - 1, 3 * P + 5, 64 * KiB + 3};
  for (size_t i = 0; i < NELEM(sizes); i++) {
    uint64_t fsz = sizes[i];
    mm_test_write_file(path, fsz);
    mm_region_t *r;
    ASSERT_OK(RCREATE(&r, path, 64 * MiB, 0, 0));
    ASSERT_EQ(mm_region_size(r), fsz);
    unsigned char buf[300];
    memset(buf, 0xd7, sizeof buf);
    uint64_t at = 0;
    ASSERT_OK(mm_region_append(r, buf, 100, &at));
    ASSERT_EQ(at, fsz);
    ASSERT_OK(mm_region_append(r, NULL, 50, &at));
    ASSERT_EQ(at, fsz + 100);
    ASSERT_OK(mm_region_append(r, buf, 300, &at));
    ASSERT_EQ(at, fsz + 150);
    for (uint64_t j = 0; j < fsz; j++)
      if (B(r)[j] != mm_test_byte(j)) FAIL("old byte %" PRIu64 " changed", j);
    for (uint64_t j = fsz; j < fsz + 450; j++) {
      unsigned char want = (j < fsz + 100 || j >= fsz + 150) ? 0xd7 : 0;
      if (B(r)[j] != want)
        FAIL("file of %" PRIu64 ": byte %" PRIu64 " is 0x%02x, want 0x%02x", fsz, j,
             B(r)[j], want);
    }
    CLOSE_CHECK(r, path);
    ASSERT_EQ(file_size(path), fsz + 450);
  }
}

TEST(region_adv_append_reports_offsets_copies_bytes_and_null_appends_zeros) {
  uint64_t P = pg();
  size_t ns[] = {0, 1, (size_t)P - 1, (size_t)P, 70000, 3, 0, 200000, 1, 65536};
  unsigned char *model = calloc(4 * MiB, 1);
  unsigned char *src = malloc(MiB);
  ASSERT(model && src);
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 256 * MiB, 0);
    void *b0 = mm_region_base(r);
    uint64_t size = 0;
    for (size_t i = 0; i < NELEM(ns); i++)
      for (int withsrc = 0; withsrc < 2; withsrc++) {
        fill_at(src, 0, ns[i], i * 2 + (size_t)withsrc + 10);
        uint64_t at = 0xdeadbeef;
        ASSERT_OK(mm_region_append(r, withsrc ? src : NULL, ns[i], &at));
        ASSERT_EQ(at, size);
        if (withsrc) memcpy(model + size, src, ns[i]);
        else memset(model + size, 0, ns[i]);
        size += ns[i];
        ASSERT_EQ(mm_region_size(r), size);
        ASSERT(mm_region_base(r) == b0);
        INV(r);
      }
    ASSERT_OK(mm_region_append(r, "tail", 4, NULL)); /* at may be NULL */
    memcpy(model + size, "tail", 4);
    size += 4;
    CHECK_MEM(B(r), model, size, "appended");
    /* Reading: the base never moves, so the source may be the region
     * itself, even when the append has to grow it. */
    uint64_t at = 0;
    ASSERT_OK(mm_region_append(r, B(r), (size_t)size, &at));
    ASSERT_EQ(at, size);
    memcpy(model + size, model, size);
    size *= 2;
    ASSERT_OK(mm_region_append(r, B(r) + 1, (size_t)size - 1, &at));
    memcpy(model + size, model + 1, size - 1);
    size += size - 1;
    ASSERT_EQ(mm_region_size(r), size);
    ASSERT(size <= 4 * MiB);
    CHECK_MEM(B(r), model, size, "self-appended");
    CLOSE_CHECK(r, path);
  }
  free(model);
  free(src);
}

/* SIZES: appends grow ahead "by an eighth, at least 64 KiB, so that
 * appending costs no system call most of the time". */
TEST(region_adv_small_appends_make_few_system_calls_and_grow_ahead_geometrically) {
  uint64_t P = pg();
  unsigned char b[37];
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 1 * GiB, 0);
    mm__fault_clear();
    uint64_t calls0 = sys_total(), prev_c = mm_region_committed(r);
    int growths = 0;
    for (uint64_t i = 0; i < 100000; i++) {
      uint64_t s0 = mm_region_size(r);
      for (size_t j = 0; j < sizeof b; j++) b[j] = pat(s0 + j, 12);
      int rc = mm_region_append(r, b, sizeof b, NULL);
      if (rc) FAIL("append %" PRIu64 ": %s", i, mm_errname(rc));
      uint64_t c = mm_region_committed(r);
      if (c != prev_c) {
        growths++;
        uint64_t want = prev_c + max64(prev_c / 8, 64 * KiB);
        if (c + P < want)
          FAIL("%s: an append grew committed from %" PRIu64 " to %" PRIu64
               " (size %" PRIu64 "); SIZES promises at least %" PRIu64,
               kind_name(path), prev_c, c, mm_region_size(r), want);
        prev_c = c;
      }
    }
    uint64_t calls = sys_total() - calls0;
    if (calls > 300 || growths > 40)
      FAIL("%s: 100000 appends of 37 bytes made %" PRIu64
           " system calls in %d growths",
           kind_name(path), calls, growths);
    CHECK_PAT(B(r), 0, mm_region_size(r), 12, "appended");
    CLOSE_CHECK(r, path);
  }
}

/* ------------------------------------------------------------------------ */
/* address stability and the address space                                  */

TEST_T(region_adv_pointers_taken_at_the_start_stay_valid_over_10000_growth_steps, 120) {
  uint64_t P = pg(), step = P + 13;
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 1 * GiB, 0);
    ASSERT_OK(mm_region_resize(r, 64));
    unsigned char *p0 = B(r);
    memset(p0, 0xc3, 64);
    struct {
      unsigned char *p;
      unsigned char v;
    } keep[16];
    int nk = 0;
    uint64_t prev = 64;
    for (int i = 1; i <= 10000; i++) {
      uint64_t s = 64 + (uint64_t)i * step;
      int rc = mm_region_resize(r, s);
      if (rc)
        FAIL("%s: growth step %d to %" PRIu64 ": %s", kind_name(path), i, s,
             mm_errname(rc));
      if (B(r) != p0) FAIL("%s: the base moved at growth step %d", kind_name(path), i);
      CHECK_ZERO(p0, prev, s, "new bytes");
      p0[s - 1] = (unsigned char)(i * 7 + 1);
      if (i % 1000 == 0 && nk < 16) {
        keep[nk].p = p0 + s - 1;
        keep[nk].v = (unsigned char)(i * 7 + 1);
        nk++;
      }
      if (i % 500 == 0) {
        for (int j = 0; j < 64; j++)
          if (p0[j] != 0xc3) FAIL("step %d: first bytes changed", i);
        for (int j = 0; j < nk; j++)
          if (*keep[j].p != keep[j].v) FAIL("step %d: kept pointer %d changed", i, j);
      }
      prev = s;
    }
    for (int i = 1; i <= 10000; i++)
      if (p0[64 + (uint64_t)i * step - 1] != (unsigned char)(i * 7 + 1))
        FAIL("%s: the byte written at step %d changed", kind_name(path), i);
    CLOSE_CHECK(r, path);
  }
}

/* vm.max_map_count is a process-wide budget (65530 by default): growth
 * must not leave one mapping per step behind. */
TEST_T(region_adv_10000_growth_steps_do_not_use_up_map_count, 120) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  unsigned char chunk[4099];
  memset(chunk, 0x3c, sizeof chunk);
  for (int k = 0; k < 2; k++) {
    const char *rp = k ? path : NULL;
    int m0 = maps_count(NULL);
    mm_region_t *r = MK(rp, 1 * GiB, 0);
    for (int i = 1; i <= 10000; i++) {
      ASSERT_OK(mm_region_resize(r, (uint64_t)i * (P / 2 + 7)));
      B(r)[mm_region_size(r) - 1] = 1;
      if (i % 1000 == 0) {
        int m = maps_count(NULL), mf = rp ? maps_count(rp) : 0;
        if (m > m0 + 16 || mf > 4)
          FAIL("%s after %d resize steps: %d mappings (%d before), %d of the "
               "file",
               kind_name(rp), i, m, m0, mf);
      }
    }
    for (int i = 1; i <= 10000; i++) {
      ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, NULL));
      if (i % 1000 == 0) {
        int m = maps_count(NULL), mf = rp ? maps_count(rp) : 0;
        if (m > m0 + 16 || mf > 4)
          FAIL("%s after %d appends: %d mappings (%d before), %d of the file",
               kind_name(rp), i, m, m0, mf);
      }
    }
    /* shrink/grow/trim cycles must not fragment the mappings either */
    uint64_t big = mm_region_size(r);
    for (int i = 1; i <= 5000; i++) {
      ASSERT_OK(mm_region_resize(r, big / 2 + (uint64_t)(i % 97) * (P + 3)));
      ASSERT_OK(mm_region_resize(r, big - (uint64_t)(i % 89) * (P - 5)));
      if (i % 7 == 0) ASSERT_OK(mm_region_trim(r));
      if (i % 11 == 0) ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, NULL));
      if (i % 500 == 0) {
        int m = maps_count(NULL), mf = rp ? maps_count(rp) : 0;
        if (m > m0 + 16 || mf > 4)
          FAIL("%s after %d shrink/grow cycles: %d mappings (%d before), %d of "
               "the file",
               kind_name(rp), i, m, m0, mf);
      }
    }
    ASSERT_OK(mm_region_close(r));
    if (rp) ASSERT_EQ(maps_count(rp), 0);
    ASSERT(maps_count(NULL) <= m0 + 8);
  }
}

static int cmp_span(const void *a, const void *b) {
  const uintptr_t *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void check_disjoint(mm_region_t **rs, int n) {
  uintptr_t(*sp)[2] = malloc(sizeof *sp * (size_t)n);
  ASSERT(sp);
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (!rs[i]) continue;
    /* A region that fell back to remapping (as under ThreadSanitizer,
     * whose address space has no room for 64 GiB reservations) holds only
     * what it has committed. */
    sp[m][0] = (uintptr_t)mm_region_base(rs[i]);
    sp[m][1] = sp[m][0] + (uintptr_t)rup(mm_region_stable(rs[i]) ? mm_region_reserve(rs[i])
                                                                 : mm_region_committed(rs[i]));
    m++;
  }
  qsort(sp, (size_t)m, sizeof *sp, cmp_span);
  for (int i = 0; i + 1 < m; i++)
    if (sp[i][1] > sp[i + 1][0])
      FAIL("reserves overlap: [%#lx, %#lx) and [%#lx, %#lx)",
           (unsigned long)sp[i][0], (unsigned long)sp[i][1],
           (unsigned long)sp[i + 1][0], (unsigned long)sp[i + 1][1]);
  free(sp);
}

static void check_outside_reserves(mm_region_t **rs, int n, uintptr_t a,
                                   uint64_t len) {
  for (int i = 0; i < n; i++) {
    if (!rs[i]) continue;
    /* As in check_disjoint: a region that fell back to remapping holds
     * only what it has committed. */
    uintptr_t s = (uintptr_t)mm_region_base(rs[i]);
    uintptr_t e = s + (uintptr_t)rup(mm_region_stable(rs[i]) ? mm_region_reserve(rs[i])
                                                              : mm_region_committed(rs[i]));
    if (a < e && a + len > s)
      FAIL("a later mmap at [%#lx, %#lx) landed inside region %d's reserve "
           "[%#lx, %#lx)",
           (unsigned long)a, (unsigned long)(a + len), i, (unsigned long)s,
           (unsigned long)e);
  }
}

TEST_T(region_adv_regions_side_by_side_and_later_mmaps_never_overlap, 60) {
  uint64_t P = pg();
  enum { NR = 64, NM = 256 };
  mm_region_t *rs[NR];
  char names[NR][16];
  for (int i = 0; i < NR; i++) {
    const char *path = NULL;
    if (i % 8 == 7) {
      snprintf(names[i], sizeof names[i], "f%d", i);
      path = mm_test_path(names[i]);
    }
    rs[i] = MK(path, 0, 0);
    ASSERT_EQ(mm_region_reserve(rs[i]), MM_REGION_RESERVE_DEFAULT);
    ASSERT_OK(mm_region_resize(rs[i], 3 * P + (uint64_t)i));
    fill_at(B(rs[i]), 0, 3 * P + (uint64_t)i, (uint64_t)i + 100);
  }
  check_disjoint(rs, NR);
  void *maps[NM];
  for (int i = 0; i < NM; i++) {
    uint64_t len = i % 16 == 0 ? 64 * MiB : MiB;
    maps[i] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    ASSERT(maps[i] != MAP_FAILED);
    check_outside_reserves(rs, NR, (uintptr_t)maps[i], len);
    memset(maps[i], 0x99, P);
  }
  /* grow them all, interleaved */
  for (int round = 0; round < 4; round++)
    for (int i = 0; i < NR; i++) {
      uint64_t s0 = mm_region_size(rs[i]);
      ASSERT_OK(mm_region_resize(rs[i], s0 + 5 * P + 1));
      fill_at(B(rs[i]), s0, s0 + 5 * P + 1, (uint64_t)i + 100);
    }
  for (int i = 0; i < NR; i++)
    CHECK_PAT(B(rs[i]), 0, mm_region_size(rs[i]), (uint64_t)i + 100, "region");
  /* close half, make new ones: still disjoint */
  for (int i = 0; i < NR; i += 2) {
    ASSERT_OK(mm_region_close(rs[i]));
    rs[i] = NULL;
  }
  for (int i = 0; i < NR; i += 2) {
    rs[i] = MK(NULL, 0, P);
    check_outside_reserves(rs, NR, (uintptr_t)maps[i % NM], MiB);
  }
  check_disjoint(rs, NR);
  for (int i = 1; i < NR; i += 2)
    CHECK_PAT(B(rs[i]), 0, mm_region_size(rs[i]), (uint64_t)i + 100, "kept region");
  for (int i = 0; i < NM; i++) {
    if (((unsigned char *)maps[i])[0] != 0x99) FAIL("mapping %d was overwritten", i);
    munmap(maps[i], i % 16 == 0 ? 64 * MiB : MiB);
  }
  for (int i = 0; i < NR; i++) ASSERT_OK(mm_region_close(rs[i]));
}

/* The reserve is held as mapped address space for the region's whole life:
 * a hole in it could be taken by another mmap, and then growing would have
 * to move or clobber that mapping. Closing releases all of it. */
TEST(region_adv_the_reservation_has_no_holes_in_any_state_and_close_frees_it) {
  uint64_t P = pg();
  uint64_t R = 64 * MiB + 5;
  unsigned char chunk[1000];
  memset(chunk, 7, sizeof chunk);
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, R, 0);
    uintptr_t base = (uintptr_t)mm_region_base(r);
    uint64_t offs[] = {0, P, 2 * P, 3 * P, 32 * MiB, 64 * MiB - P, rup(R) - P};
    for (int state = 0; state < 6; state++) {
      const char *sname = "";
      switch (state) {
        case 0: sname = "fresh"; break;
        case 1: sname = "grown to 32 MiB";
          ASSERT_OK(mm_region_resize(r, 32 * MiB)); break;
        case 2: sname = "shrunk to P+1";
          ASSERT_OK(mm_region_resize(r, P + 1)); break;
        case 3: sname = "appended then trimmed";
          for (int i = 0; i < 100; i++)
            ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, NULL));
          ASSERT_OK(mm_region_trim(r)); break;
        case 4: sname = "grown to the reserve";
          ASSERT_OK(mm_region_resize(r, R)); break;
        case 5: sname = "shrunk to 0";
          ASSERT_OK(mm_region_resize(r, 0)); break;
      }
      ASSERT_EQ((uintptr_t)mm_region_base(r), base);
      for (size_t o = 0; o < NELEM(offs); o++)
        if (hole_at(base + offs[o]))
          FAIL("%s region, %s: offset %" PRIu64 " of the %" PRIu64
               "-byte reserve is unmapped address space",
               kind_name(path), sname, offs[o], R);
    }
    ASSERT_OK(mm_region_close(r));
    for (size_t o = 0; o < NELEM(offs); o++)
      if (!hole_at(base + offs[o]))
        FAIL("%s region: offset %" PRIu64 " of the reserve still mapped after "
             "close",
             kind_name(path), offs[o]);
  }
}

/* ------------------------------------------------------------------------ */
/* fault injection                                                          */

static const struct {
  int op, err;
} fi_cases[] = {
    {MM_SYS_MMAP, ENOMEM},     {MM_SYS_MUNMAP, ENOMEM},
    {MM_SYS_MREMAP, ENOMEM},   {MM_SYS_MPROTECT, ENOMEM},
    {MM_SYS_MADVISE, ENOMEM},  {MM_SYS_MADVISE, EINVAL},
    {MM_SYS_MSYNC, EIO},       {MM_SYS_MINCORE, ENOMEM},
    {MM_SYS_MLOCK, ENOMEM},    {MM_SYS_FTRUNCATE, EIO},
    {MM_SYS_FALLOCATE, ENOSPC}, {MM_SYS_FALLOCATE, EIO},
    {MM_SYS_MEMFD_CREATE, EMFILE}, {MM_SYS_OPEN, EMFILE},
    {MM_SYS_FSTAT, EIO},       {MM_SYS_READ, EIO},
    {MM_SYS_PREAD, EIO},       {MM_SYS_CLOSE, EIO},
    {MM_SYS_FSYNC, EIO},       {MM_SYS_FCNTL, ENOLCK},
};

enum {
  FI_GROW,
  FI_GROW_BIG,
  FI_SHRINK,
  FI_SHRINK_ZERO,
  FI_APPEND,
  FI_APPEND_NULL,
  FI_TRIM,
  FI_SYNC
};
static const char *const fi_act_name[] = {
    "resize-grow", "resize-grow-1MiB", "resize-shrink", "resize-to-0",
    "append",      "append(NULL)",     "trim",          "sync"};

#define FI_RESERVE (4 * GiB)
#define FI_APPEND_N ((size_t)MiB + 3)
#define FI_SEED 777
static unsigned char *fi_src;

static mm_region_t *fi_setup(const char *path, int slack) {
  uint64_t S = 5 * pg() + 123;
  if (path) unlink(path);
  mm_region_t *r = MK(path, FI_RESERVE, 0);
  if (slack) {
    unsigned char buf[1000];
    for (uint64_t off = 0; off < S;) {
      size_t n = (size_t)min64(sizeof buf, S - off);
      for (size_t j = 0; j < n; j++) buf[j] = pat(off + j, 1);
      ASSERT_OK(mm_region_append(r, buf, n, NULL));
      off += n;
    }
    ASSERT(mm_region_committed(r) > rup(S));
  } else {
    ASSERT_OK(mm_region_resize(r, S));
    fill_at(B(r), 0, S, 1);
  }
  return r;
}

static uint64_t fi_new_size(int act, uint64_t s) {
  uint64_t P = pg();
  switch (act) {
    case FI_GROW: return s + 3 * P + 17;
    case FI_GROW_BIG: return s + MiB + 1;
    case FI_SHRINK: return P + 7;
    case FI_SHRINK_ZERO: return 0;
    case FI_APPEND:
    case FI_APPEND_NULL: return s + FI_APPEND_N;
    default: return s;
  }
}

static int fi_do(mm_region_t *r, int act, uint64_t *at) {
  switch (act) {
    case FI_GROW:
    case FI_GROW_BIG:
    case FI_SHRINK:
    case FI_SHRINK_ZERO:
      return mm_region_resize(r, fi_new_size(act, mm_region_size(r)));
    case FI_APPEND: return mm_region_append(r, fi_src, FI_APPEND_N, at);
    case FI_APPEND_NULL: return mm_region_append(r, NULL, FI_APPEND_N, at);
    case FI_TRIM: return mm_region_trim(r);
    default: return mm_region_sync(r, 0, 0, MM_SYNC_WAIT);
  }
}

/* The state after `act` succeeded, from the state before it (s). */
static void fi_check_done(const mm_region_t *r, const char *path,
                          const struct snap *s, int act, uint64_t at,
                          const char *ctx) {
  uint64_t ns = fi_new_size(act, s->size);
  if (mm_region_size(r) != ns)
    FAIL("%s: size %" PRIu64 ", want %" PRIu64, ctx, mm_region_size(r), ns);
  if (mm_region_base(r) != s->base) {
    if (s->stable) FAIL("%s: the base of a stable region moved", ctx);
    /* (moves across an empty fallback region are checked on their own, in
     * region_adv_fallback_region_counts_every_base_change...) */
    if (ns != 0 && mm_region_moves(r) <= s->moves)
      FAIL("%s: the base moved but mm_region_moves() did not count it", ctx);
  }
  inv_at(r, __LINE__);
  check_readable_at(B(r), ns, ctx, __LINE__);
  uint64_t keep = min64(s->size, ns);
  check_mem_at(B(r), s->bytes, keep, ctx, __LINE__);
  if (act == FI_APPEND) {
    if (at != s->size) FAIL("%s: at %" PRIu64 ", want %" PRIu64, ctx, at, s->size);
    check_mem_at(B(r) + s->size, fi_src, FI_APPEND_N, ctx, __LINE__);
  } else if (ns > s->size) {
    check_zero_at(B(r), s->size, ns, ctx, __LINE__);
  }
  if (act == FI_APPEND_NULL && at != s->size)
    FAIL("%s: at %" PRIu64 ", want %" PRIu64, ctx, at, s->size);
  if ((act == FI_SHRINK || act == FI_SHRINK_ZERO || act == FI_TRIM) &&
      mm_region_committed(r) != rup(ns))
    FAIL("%s: committed %" PRIu64 ", want %" PRIu64, ctx, mm_region_committed(r),
         rup(ns));
  if (act == FI_SYNC && mm_region_committed(r) != s->committed)
    FAIL("%s: sync changed committed", ctx);
  if (path && file_size(path) < ns)
    FAIL("%s: the file (%" PRIu64 ") is shorter than the region (%" PRIu64 ")",
         ctx, file_size(path), ns);
}

/* For every injectable failure of every call the action makes: the action
 * either succeeds completely or fails with the injected error and changes
 * nothing; either way the region keeps working and nothing leaks. */
static void fi_run(const int *acts, size_t nacts, int block) {
  uint64_t P = pg();
  fi_src = malloc(FI_APPEND_N);
  ASSERT(fi_src);
  fill_at(fi_src, 0, FI_APPEND_N, FI_SEED);
  const char *fpath = mm_test_path("fi");
  int fds0 = count_fds();
  uint64_t v0 = vsz_now();
  for (int k = 0; k < 2; k++)
    for (int slack = 0; slack < 2; slack++)
      for (size_t a = 0; a < nacts; a++)
        for (size_t c = 0; c < NELEM(fi_cases); c++)
          for (unsigned long nth = 1; nth <= 64; nth++) {
            const char *path = k ? fpath : NULL;
            int act = acts[a];
            char ctx[256];
            snprintf(ctx, sizeof ctx,
                     "%s %s (%s append slack), %s failing with %s on call %lu",
                     kind_name(path), fi_act_name[act], slack ? "with" : "no",
                     mm__sys_name(fi_cases[c].op), mm_errname(-fi_cases[c].err),
                     nth);
            mm_region_t *r = fi_setup(path, slack);
            /* a mapping right after the region: growing in place is
             * impossible, so a fallback region has to move */
            void *blk = block ? place_blocker((uintptr_t)B(r) +
                                                  (uintptr_t)mm_region_committed(r),
                                              P)
                              : NULL;
            if (block && !blk) FAIL("%s: could not place a blocking mapping", ctx);
            struct snap s;
            snap_take(&s, r, path);
            uint64_t at = UINT64_MAX;
            mm__fault_clear();
            mm__fault_set(fi_cases[c].op, nth, fi_cases[c].err, 0);
            int rc = fi_do(r, act, &at);
            unsigned long calls = mm__sys_count(fi_cases[c].op);
            mm__fault_clear();
            int fired = calls >= nth;
            if (!fired && rc != 0)
              FAIL("%s: failed with %s though the fault never fired", ctx,
                   mm_errname(rc));
            if (rc == 0) {
              fi_check_done(r, path, &s, act, at, ctx);
            } else {
              if (rc != -fi_cases[c].err)
                FAIL("%s: got %s, want the injected %s", ctx, mm_errname(rc),
                     mm_errname(-fi_cases[c].err));
              snap_check_at(&s, r, ctx, __LINE__);
              at = UINT64_MAX;
              int rc2 = fi_do(r, act, &at);
              if (rc2)
                FAIL("%s: retrying after the failure: %s", ctx, mm_errname(rc2));
              fi_check_done(r, path, &s, act, at, ctx);
            }
            /* it still grows, with zeros */
            uint64_t sz = mm_region_size(r);
            int rc3 = mm_region_resize(r, sz + P);
            if (rc3) FAIL("%s: growing afterwards: %s", ctx, mm_errname(rc3));
            check_zero_at(B(r), sz, sz + P, ctx, __LINE__);
            close_check_at(r, path, __LINE__);
            if (blk) munmap(blk, P);
            snap_free(&s);
            int fds = count_fds();
            if (fds != fds0) FAIL("%s: %d descriptors open, %d before", ctx, fds, fds0);
            uint64_t v = vsz_now();
            if (v > v0 + FI_RESERVE / 2)
              FAIL("%s: address space grew by %" PRIu64 " MiB: a reservation leaked",
                   ctx, (v - v0) >> 20);
            if (!fired) break;
          }
  free(fi_src);
}

TEST_T(region_adv_injected_failure_in_grow_changes_nothing_and_leaks_nothing, 120) {
  static const int acts[] = {FI_GROW, FI_GROW_BIG};
  fi_run(acts, NELEM(acts), 0);
}

TEST_T(region_adv_injected_failure_in_shrink_changes_nothing_and_leaks_nothing, 120) {
  static const int acts[] = {FI_SHRINK, FI_SHRINK_ZERO};
  fi_run(acts, NELEM(acts), 0);
}

TEST_T(region_adv_injected_failure_in_append_changes_nothing_and_leaks_nothing, 120) {
  static const int acts[] = {FI_APPEND, FI_APPEND_NULL};
  fi_run(acts, NELEM(acts), 0);
}

TEST_T(region_adv_injected_failure_in_trim_or_sync_changes_nothing, 120) {
  static const int acts[] = {FI_TRIM, FI_SYNC};
  fi_run(acts, NELEM(acts), 0);
}

/* The same, for regions that fell back to remapping (RLIMIT_AS below the
 * reserve), with a mapping placed after each so that growing must move:
 * a failed mremap or mmap must leave the region where and as it was. */
TEST_T(region_adv_injected_failure_in_a_fallback_region_changes_nothing, 180) {
#ifdef MM_RADV_SAN
  SKIP("RLIMIT_AS cannot be lowered under a sanitizer");
#endif
  limit_as(1 * GiB);
  mm_region_t *r = MK(NULL, FI_RESERVE, 0);
  if (mm_region_stable(r)) FAIL("a 4 GiB reserve under a 1 GiB RLIMIT_AS is stable");
  ASSERT_OK(mm_region_close(r));
  static const int acts[] = {FI_GROW,   FI_GROW_BIG,    FI_SHRINK, FI_SHRINK_ZERO,
                             FI_APPEND, FI_APPEND_NULL, FI_TRIM,   FI_SYNC};
  fi_run(acts, NELEM(acts), 1);
}

/* Create variants for the create fault matrix. */
struct fi_create_variant {
  const char *name;
  int file;           /* 0 anonymous, 1 new file, 2 existing file */
  uint64_t existing;  /* size of the existing file */
  uint64_t reserve, initial;
  unsigned flags;
  uint64_t want_size, want_reserve;
};

static void fi_create_run(const struct fi_create_variant *vs, size_t nv) {
  const char *path = mm_test_path("fc");
  for (size_t v = 0; v < nv; v++)
    for (size_t c = 0; c < NELEM(fi_cases); c++)
      for (unsigned long nth = 1; nth <= 64; nth++) {
        const struct fi_create_variant *fv = &vs[v];
        const char *p = fv->file ? path : NULL;
        char ctx[256];
        snprintf(ctx, sizeof ctx, "create %s, %s failing with %s on call %lu",
                 fv->name, mm__sys_name(fi_cases[c].op),
                 mm_errname(-fi_cases[c].err), nth);
        unlink(path);
        if (fv->file == 2) mm_test_write_file(path, fv->existing);
        int fds0 = count_fds();
        uint64_t v0 = vsz_now();
        mm_region_t *r;
        mm__fault_clear();
        mm__fault_set(fi_cases[c].op, nth, fi_cases[c].err, 0);
        int rc = RCREATE(&r, p, fv->reserve, fv->initial, fv->flags);
        unsigned long calls = mm__sys_count(fi_cases[c].op);
        mm__fault_clear();
        int fired = calls >= nth;
        if (!fired && rc != 0)
          FAIL("%s: failed with %s though the fault never fired", ctx,
               mm_errname(rc));
        if (rc == 0) {
          if (mm_region_size(r) != fv->want_size)
            FAIL("%s: size %" PRIu64 ", want %" PRIu64, ctx, mm_region_size(r),
                 fv->want_size);
          if (mm_region_reserve(r) != fv->want_reserve)
            FAIL("%s: reserve %" PRIu64 ", want %" PRIu64, ctx,
                 mm_region_reserve(r), fv->want_reserve);
          /* a failed reservation may legitimately fall back to remapping */
          if (!mm_region_stable(r) &&
              !(fired && (fi_cases[c].op == MM_SYS_MMAP ||
                          fi_cases[c].op == MM_SYS_MREMAP)))
            FAIL("%s: the region is not stable", ctx);
          inv_at(r, __LINE__);
          check_readable_at(B(r), fv->want_size, ctx, __LINE__);
          uint64_t old = (fv->file == 2 && !(fv->flags & MM_REGION_TRUNCATE))
                             ? min64(fv->existing, fv->want_size)
                             : 0;
          for (uint64_t i = 0; i < old; i++)
            if (B(r)[i] != mm_test_byte(i))
              FAIL("%s: byte %" PRIu64 " of the file differs", ctx, i);
          check_zero_at(B(r), old, fv->want_size, ctx, __LINE__);
          close_check_at(r, p, __LINE__);
        } else {
          if (rc != -fi_cases[c].err)
            FAIL("%s: got %s, want the injected %s", ctx, mm_errname(rc),
                 mm_errname(-fi_cases[c].err));
          if (count_fds() != fds0) FAIL("%s: a descriptor leaked", ctx);
          if (p && maps_count(p) != 0) FAIL("%s: the file is still mapped", ctx);
          if (vsz_now() > v0 + 512 * MiB)
            FAIL("%s: address space grew by %" PRIu64 " MiB", ctx,
                 (vsz_now() - v0) >> 20);
          /* Reading: "leave ... file same size": a failed create leaves an
           * existing file exactly as it was. */
          if (fv->file == 2) check_file_pattern_at(path, fv->existing, ctx, __LINE__);
        }
        if (!fired) break;
      }
}

TEST_T(region_adv_injected_failure_in_create_leaves_nothing_behind, 120) {
  uint64_t P = pg();
  const struct fi_create_variant vs[] = {
      {"anonymous, initial 3P+5", 0, 0, 1 * GiB, 3 * P + 5, 0, 3 * P + 5, 1 * GiB},
      {"anonymous, default reserve", 0, 0, 0, 0, 0, 0, MM_REGION_RESERVE_DEFAULT},
      {"new file, initial 3P+5", 1, 0, 1 * GiB, 3 * P + 5, MM_REGION_CREATE,
       3 * P + 5, 1 * GiB},
      {"existing 2P+7 file grown to 5P on open", 2, 2 * P + 7, 1 * GiB, 5 * P, 0,
       5 * P, 1 * GiB},
      {"existing 3P+5 file larger than a 2P reserve", 2, 3 * P + 5, 2 * P, 0, 0,
       3 * P + 5, 3 * P + 5},
      {"existing 3P+5 file with MM_REGION_CREATE", 2, 3 * P + 5, 1 * GiB, 0,
       MM_REGION_CREATE, 3 * P + 5, 1 * GiB},
  };
  fi_create_run(vs, NELEM(vs));
}

/* Reading: even MM_REGION_TRUNCATE must not have discarded the contents if
 * mm_region_create then fails ("leave ... file same size, same contents"). */
TEST_T(region_adv_injected_failure_in_create_with_truncate_keeps_the_file, 60) {
  uint64_t P = pg();
  const struct fi_create_variant vs[] = {
      {"existing 3P+5 file, TRUNCATE to P+1", 2, 3 * P + 5, 1 * GiB, P + 1,
       MM_REGION_TRUNCATE, P + 1, 1 * GiB},
      {"existing 3P+5 file, TRUNCATE to 0", 2, 3 * P + 5, 1 * GiB, 0,
       MM_REGION_TRUNCATE, 0, 1 * GiB},
  };
  fi_create_run(vs, NELEM(vs));
}

/* ------------------------------------------------------------------------ */
/* real resource limits                                                     */

TEST(region_adv_full_tmpfs_gives_enospc_from_create_resize_and_append_never_sigbus) {
  char mnt[600], path[700], fresh[700];
  private_tmpfs(mnt, sizeof mnt, "size=1m");
  snprintf(path, sizeof path, "%s/f", mnt);
  snprintf(fresh, sizeof fresh, "%s/new", mnt);
  mm_region_t *r;
  int fds0 = count_fds();

  /* a new file whose initial size does not fit */
  ASSERT_RC(RCREATE(&r, fresh, 0, 2 * MiB, MM_REGION_CREATE), -ENOSPC);
  ASSERT_EQ(count_fds(), fds0);
  /* Reading: a file the failed call created may remain, but empty */
  if (file_exists(fresh)) {
    ASSERT_EQ(file_size(fresh), 0);
    unlink(fresh);
  }
  /* an existing file that cannot grow to initial: unchanged */
  mm_test_write_file(path, 64 * KiB);
  ASSERT_RC(RCREATE(&r, path, 0, 2 * MiB, 0), -ENOSPC);
  CHECK_FILE_PATTERN(path, 64 * KiB, "after ENOSPC on open");
  ASSERT_EQ(count_fds(), fds0);

  /* Reading: space is allocated for the size asked; any slack ahead is
   * best effort, so a size that fits on the disk can be had */
  ASSERT_OK(RCREATE(&r, fresh, 0, 0, MM_REGION_CREATE));
  ASSERT_OK(mm_region_resize(r, 512 * KiB));
  int rcfit = mm_region_resize(r, 1 * MiB - 64 * KiB - 1);
  if (rcfit != 0)
    FAIL("resize from 512 KiB to 1 MiB - 64 KiB - 1 on an empty 1 MiB tmpfs: %s",
         mm_errname(rcfit));
  memset(B(r), 0x21, mm_region_size(r));
  ASSERT_RC(mm_region_resize(r, 1 * MiB + pg()), -ENOSPC);
  ASSERT_EQ(mm_region_size(r), 1 * MiB - 64 * KiB - 1);
  ASSERT_OK(mm_region_close(r));
  unlink(fresh);

  ASSERT_OK(RCREATE(&r, path, 0, 0, 0));
  ASSERT_EQ(mm_region_size(r), 64 * KiB);
  unsigned char *model = malloc(2 * MiB);
  ASSERT(model);
  memcpy(model, B(r), 64 * KiB);
  ASSERT_OK(mm_region_resize(r, 512 * KiB));
  CHECK_ZERO(B(r), 64 * KiB, 512 * KiB, "grown on tmpfs");
  fill_at(B(r), 64 * KiB, 512 * KiB, 2);
  memcpy(model + 64 * KiB, B(r) + 64 * KiB, 448 * KiB);
  struct snap s;
  snap_take(&s, r, path);
  ASSERT_RC(mm_region_resize(r, 2 * MiB), -ENOSPC);
  SNAP_CHECK(&s, r, "after ENOSPC from resize");
  snap_free(&s);
  /* every byte of the region is backed: writing it raises no SIGBUS */
  for (uint64_t i = 0; i < mm_region_size(r); i++) B(r)[i] = model[i];

  /* append until the disk is full */
  unsigned char chunk[3000];
  for (;;) {
    uint64_t s0 = mm_region_size(r), c0 = mm_region_committed(r), at = 0;
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = pat(s0 + i, 3);
    int rc = mm_region_append(r, chunk, sizeof chunk, &at);
    if (rc == 0) {
      ASSERT_EQ(at, s0);
      ASSERT(s0 + sizeof chunk <= 2 * MiB);
      memcpy(model + s0, chunk, sizeof chunk);
      for (uint64_t i = s0; i < s0 + sizeof chunk; i++) B(r)[i] = model[i];
      continue;
    }
    if (rc != -ENOSPC)
      FAIL("append on a full tmpfs at size %" PRIu64 ": got %s, want ENOSPC", s0,
           mm_errname(rc));
    ASSERT_EQ(mm_region_size(r), s0);
    ASSERT_EQ(mm_region_committed(r), c0);
    ASSERT(mm_region_base(r) == s.base);
    CHECK_MEM(B(r), model, s0, "after ENOSPC from append");
    /* Reading: an append fails for want of space only when its bytes do
     * not fit, not because the slack ahead did not. */
    int rr = mm_region_resize(r, s0 + sizeof chunk);
    if (rr == 0)
      FAIL("append of %zu bytes at size %" PRIu64 " (committed %" PRIu64
           ") failed with ENOSPC, but resizing to the same size then worked:"
           " the slack, not the data, did not fit",
           sizeof chunk, s0, c0);
    ASSERT_RC(rr, -ENOSPC);
    ASSERT_EQ(mm_region_size(r), s0);
    break;
  }
  uint64_t full = mm_region_size(r);
  ASSERT(full >= 512 * KiB);
  for (uint64_t i = 0; i < full; i++) B(r)[i] = model[i];
  /* shrinking frees space for more */
  ASSERT_OK(mm_region_resize(r, 100 * KiB));
  ASSERT_OK(mm_region_trim(r));
  ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, NULL));
  memcpy(model + 100 * KiB, chunk, sizeof chunk);
  ASSERT_OK(mm_region_resize(r, 900 * KiB));
  memset(B(r) + 100 * KiB + sizeof chunk, 0x6b, 900 * KiB - 100 * KiB - sizeof chunk);
  ASSERT_OK(mm_region_resize(r, 100 * KiB + sizeof chunk));
  CHECK_MEM(B(r), model, 100 * KiB + sizeof chunk, "after refill");
  CLOSE_CHECK(r, path);
  free(model);
}

/* "When the reserve cannot be had (... RLIMIT_AS), the region falls back to
 * growing by remapping": stable() 0, moves counted, contents kept. */
static void fallback_run(const char *path) {
  uint64_t P = pg();
  int fds0 = count_fds();
  mm_region_t *r;
  unsigned cf = path ? MM_REGION_CREATE : 0;
  ASSERT_RC(RCREATE(&r, path, 0, 3 * P, MM_REGION_STABLE | cf), -ENOMEM);
  ASSERT_EQ(count_fds(), fds0);
  if (path) ASSERT_EQ(maps_count(path), 0);
  ASSERT_OK(RCREATE(&r, path, 0, 3 * P, cf));
  ASSERT_EQ(mm_region_stable(r), 0);
  ASSERT_EQ(mm_region_moves(r), 0);
  /* Reading: the reserve still reports what was asked for */
  ASSERT_EQ(mm_region_reserve(r), MM_REGION_RESERVE_DEFAULT);
  ASSERT_EQ(mm_region_size(r), 3 * P);
  INV(r);
  CHECK_ZERO(B(r), 0, 3 * P, "fallback initial");
  uint64_t maxsz = 64 * MiB;
  unsigned char *model = calloc(maxsz, 1);
  ASSERT(model);
  fill_at(B(r), 0, 3 * P, 1);
  memcpy(model, B(r), 3 * P);
  uint64_t changes = 0;
  void *prev = mm_region_base(r);
  for (int i = 1; i <= 200; i++) {
    uint64_t s0 = mm_region_size(r), s = s0 + 13 * P + 7;
    int rc = mm_region_resize(r, s);
    if (rc) FAIL("fallback growth step %d: %s", i, mm_errname(rc));
    if (mm_region_base(r) != prev) changes++;
    prev = mm_region_base(r);
    INV(r);
    CHECK_ZERO(B(r), s0, s, "fallback growth");
    fill_at(B(r), s0, s, (uint64_t)i + 1);
    memcpy(model + s0, B(r) + s0, s - s0);
    if (i % 20 == 0) CHECK_MEM(B(r), model, s, "fallback contents");
  }
  /* force a move: map something right after the region */
  uint64_t s0 = mm_region_size(r);
  uintptr_t end = (uintptr_t)B(r) + (uintptr_t)mm_region_committed(r);
  unsigned char *blk = place_blocker(end, P);
  if (blk) {
    memset(blk, 0xab, P);
    uint64_t s = ((uintptr_t)blk - (uintptr_t)B(r)) + 16 * P;
    if (s > maxsz) s = maxsz;
    void *b_before = mm_region_base(r);
    uint64_t m_before = mm_region_moves(r);
    int rc = mm_region_resize(r, s);
    if (rc) FAIL("fallback growth past a neighbouring mapping: %s", mm_errname(rc));
    for (uint64_t i = 0; i < P; i++)
      if (blk[i] != 0xab) FAIL("growing clobbered the neighbouring mapping");
    if (mm_region_base(r) == b_before)
      FAIL("the region grew over a neighbouring mapping without moving");
    changes++;
    if (mm_region_moves(r) <= m_before) FAIL("a move was not counted");
    CHECK_MEM(B(r), model, s0, "after the forced move");
    CHECK_ZERO(B(r), s0, s, "after the forced move");
    fill_at(B(r), s0, s, 999);
    memcpy(model + s0, B(r) + s0, s - s0);
    munmap(blk, P);
  }
  if (mm_region_moves(r) < changes)
    FAIL("the base changed %" PRIu64 " times but moves is %" PRIu64, changes,
         mm_region_moves(r));
  ASSERT_EQ(mm_region_stable(r), 0);
  /* shrink */
  ASSERT_OK(mm_region_resize(r, 5 * P + 1));
  CHECK_MEM(B(r), model, 5 * P + 1, "fallback shrink");
  /* beyond the address-space limit: ENOMEM, nothing changed */
  struct snap s;
  snap_take(&s, r, path);
  int rc = mm_region_resize(r, 2 * GiB);
  if (rc != -ENOMEM)
    FAIL("%s fallback grow past RLIMIT_AS: got %s, want ENOMEM", kind_name(path),
         mm_errname(rc));
  SNAP_CHECK(&s, r, "after ENOMEM in fallback");
  rc = mm_region_append(r, NULL, (size_t)(2 * GiB), NULL);
  if (rc != -ENOMEM)
    FAIL("%s fallback append past RLIMIT_AS: got %s, want ENOMEM",
         kind_name(path), mm_errname(rc));
  SNAP_CHECK(&s, r, "after ENOMEM from append in fallback");
  /* beyond the reserve: still MM_EFULL */
  ASSERT_RC(mm_region_resize(r, MM_REGION_RESERVE_DEFAULT + 1), MM_EFULL);
  SNAP_CHECK(&s, r, "after EFULL in fallback");
  snap_free(&s);
  CLOSE_CHECK(r, path);
  if (path) {
    ASSERT_OK(RCREATE(&r, path, 0, 0, 0));
    ASSERT_EQ(mm_region_size(r), 5 * P + 1);
    CHECK_MEM(B(r), model, 5 * P + 1, "fallback file reopened");
    ASSERT_OK(mm_region_close(r));
  }
  free(model);
}

TEST(region_adv_under_small_rlimit_as_anonymous_region_falls_back_and_keeps_bytes) {
#ifdef MM_RADV_SAN
  SKIP("RLIMIT_AS cannot be lowered under a sanitizer");
#endif
  limit_as(1 * GiB);
  fallback_run(NULL);
}

TEST(region_adv_under_small_rlimit_as_file_region_falls_back_and_keeps_bytes) {
#ifdef MM_RADV_SAN
  SKIP("RLIMIT_AS cannot be lowered under a sanitizer");
#endif
  limit_as(1 * GiB);
  fallback_run(mm_test_path("f"));
}

/* mm_region_moves(): "How many times the base moved". Reading: every
 * change of mm_region_base() counts, including when the region is shrunk
 * to nothing and grown again - a caller comparing moves before and after
 * a resize to decide whether its pointers are still good must never see
 * the base change with the count unchanged. */
TEST(region_adv_fallback_region_counts_every_base_change_even_through_size_zero) {
#ifdef MM_RADV_SAN
  SKIP("RLIMIT_AS cannot be lowered under a sanitizer");
#endif
  uint64_t P = pg();
  limit_as(1 * GiB);
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    mm_region_t *r = MK(path, 0, 5 * P);
    ASSERT_EQ(mm_region_stable(r), 0);
    fill_at(B(r), 0, 5 * P, 3);
    void *prev = mm_region_base(r);
    uint64_t changes = 0;
    char log[2048] = "";
    size_t used = 0;
    uint64_t seq[] = {0, P, 0, 3 * P, 2 * P, 0, 7 * P + 1};
    void *blk[8];
    int nblk = 0;
    for (size_t i = 0; i < NELEM(seq); i++) {
      /* once emptied, occupy the old address so the next mapping lands
       * elsewhere */
      if (mm_region_size(r) == 0 && nblk < 8) {
        void *m = mmap(prev, P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
                       MAP_FIXED_NOREPLACE, -1, 0);
        if (m == prev) blk[nblk++] = m;
        else if (m != MAP_FAILED) munmap(m, P);
      }
      ASSERT_OK(mm_region_resize(r, seq[i]));
      void *b = mm_region_base(r);
      if (b != prev) changes++;
      if (used < sizeof log)
        used += (size_t)snprintf(log + used, sizeof log - used,
                                 " resize(%" PRIu64 ")->base %p moves %" PRIu64 ";",
                                 seq[i], b, mm_region_moves(r));
      if (mm_region_moves(r) < changes)
        FAIL("%s fallback region: the base changed %" PRIu64
             " times but mm_region_moves() is %" PRIu64 ":%s",
             kind_name(path), changes, mm_region_moves(r), log);
      prev = b;
      CHECK_ZERO(B(r), 0, mm_region_size(r), "regrown from empty");
    }
    CLOSE_CHECK(r, path);
    while (nblk > 0) munmap(blk[--nblk], P);
  }
}

TEST(region_adv_reserve_that_fits_under_rlimit_as_is_stable) {
#ifdef MM_RADV_SAN
  SKIP("RLIMIT_AS cannot be lowered under a sanitizer");
#endif
  uint64_t P = pg();
  limit_as(1 * GiB);
  for (int k = 0; k < 2; k++) {
    const char *path = k ? mm_test_path("f") : NULL;
    for (int st = 0; st < 2; st++) {
      if (path) unlink(path);
      mm_region_t *r;
      ASSERT_OK(RCREATE(&r, path, 256 * MiB, P,
                        (path ? MM_REGION_CREATE : 0) | (st ? MM_REGION_STABLE : 0)));
      ASSERT_EQ(mm_region_stable(r), 1);
      void *b0 = mm_region_base(r);
      ASSERT_OK(mm_region_resize(r, 200 * MiB));
      ASSERT(mm_region_base(r) == b0);
      ASSERT_RC(mm_region_resize(r, 256 * MiB + 1), MM_EFULL);
      ASSERT_OK(mm_region_resize(r, 3 * P));
      CLOSE_CHECK(r, path);
    }
  }
}

TEST_T(region_adv_at_the_map_count_limit_create_is_emapcount_and_grow_fails_cleanly, 120) {
#ifdef MM_RADV_SAN
  SKIP("sanitizer runtimes need mappings of their own");
#endif
  uint64_t P = pg();
  char *mc = slurp("/proc/sys/vm/max_map_count", NULL);
  long maxc = atol(mc);
  free(mc);
  if (maxc < 1000 || maxc > 1000000) SKIP("vm.max_map_count is %ld", maxc);
  /* keep malloc on a pre-grown heap: it must not need new mappings */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  {
    void *hold[256];
    for (int i = 0; i < 256; i++) hold[i] = malloc(64 * 1024);
    for (int i = 0; i < 256; i++) free(hold[i]);
  }
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 3 * P);
  int fds0 = count_fds();
  long lines = maps_count(NULL);
  long pairs = (maxc - lines - 64) / 2;
  if (pairs < 100) SKIP("too close to the limit already");
  uint64_t flen = (uint64_t)(2 * pairs + 1) * P;
  unsigned char *filler = mmap(NULL, flen, PROT_NONE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT(filler != MAP_FAILED);
  for (long i = 0; i < pairs; i++)
    if (mprotect(filler + (2 * i + 1) * P, P, PROT_READ) != 0)
      FAIL("filler mprotect %ld: %s", i, strerror(errno));
  void *top[512];
  int ntop = 0;
#define TOP_UP()                                                                \
  do {                                                                          \
    for (;;) {                                                                  \
      void *m_ = mmap(NULL, P, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);    \
      if (m_ == MAP_FAILED) {                                                   \
        if (errno != ENOMEM) FAIL("top-up mmap: %s", strerror(errno));          \
        break;                                                                  \
      }                                                                         \
      if (ntop == 512) FAIL("could not reach vm.max_map_count");               \
      top[ntop++] = m_;                                                         \
    }                                                                           \
  } while (0)
  TOP_UP();
  if (ntop < 16) FAIL("only %d top-up mappings", ntop);
  /* now no mapping can be added; free them one at a time */
  for (int k = 0; k <= 6; k++) {
    if (k > 0) munmap(top[--ntop], P);
    for (int kind = 0; kind < 2; kind++) {
      const char *p = kind ? path : NULL;
      int before = maps_count(NULL);
      mm_region_t *r;
      int rc = RCREATE(&r, p, 64 * MiB, kind ? 0 : 2 * P, 0);
      if (rc != 0 && rc != MM_EMAPCOUNT)
        FAIL("%s create with %d free map slots: got %s, want MM_EMAPCOUNT or "
             "success",
             kind_name(p), k, mm_errname(rc));
      if (k == 0 && kind == 1 && rc == 0) {
        ASSERT_OK(mm_region_close(r));
        FAIL("a file-backed region was created with no free map slot");
      }
      if (rc == 0) {
        ASSERT_EQ(mm_region_size(r), kind ? 3 * P : 2 * P);
        if (kind)
          for (uint64_t i = 0; i < 3 * P; i++)
            if (B(r)[i] != mm_test_byte(i)) FAIL("byte %" PRIu64 " differs", i);
        ASSERT_OK(mm_region_close(r));
      }
      int after = maps_count(NULL);
      if (after != before)
        FAIL("%s create (rc %s) with %d free slots: %d mappings before, %d after",
             kind_name(p), mm_errname(rc), k, before, after);
      ASSERT_EQ(count_fds(), fds0);
    }
  }
  /* growing and shrinking at the limit: done completely or not at all */
  while (ntop > 0) munmap(top[--ntop], P);
  for (int kind = 0; kind < 2; kind++) {
    const char *p = kind ? path : NULL;
    mm_region_t *r;
    ASSERT_OK(RCREATE(&r, p, 64 * MiB, 0, 0));
    ASSERT_OK(mm_region_resize(r, 5 * P));
    fill_at(B(r), 0, 5 * P, 4);
    TOP_UP();
    uint64_t targets[] = {64 * P + 3, P + 1, 0};
    for (size_t t = 0; t < NELEM(targets); t++) {
      struct snap s;
      snap_take(&s, r, p);
      int rc = mm_region_resize(r, targets[t]);
      if (rc == 0) {
        ASSERT_EQ(mm_region_size(r), targets[t]);
        CHECK_MEM(B(r), s.bytes, min64(s.size, targets[t]), "resize at the limit");
        if (targets[t] > s.size) CHECK_ZERO(B(r), s.size, targets[t], "grown at the limit");
      } else {
        if (rc != -ENOMEM && rc != MM_EMAPCOUNT)
          FAIL("%s resize to %" PRIu64 " at the map limit: got %s", kind_name(p),
               targets[t], mm_errname(rc));
        SNAP_CHECK(&s, r, "failed resize at the map limit");
      }
      snap_free(&s);
    }
    while (ntop > 0) munmap(top[--ntop], P);
    ASSERT_OK(mm_region_resize(r, 3 * P));
    ASSERT_OK(mm_region_close(r));
    mm_test_write_file(path, 3 * P);
  }
#undef TOP_UP
  munmap(filler, flen);
}

/* ------------------------------------------------------------------------ */
/* sharing, persistence, sync, close                                        */

TEST(region_adv_file_region_is_shared_with_file_io_and_another_process) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_region_t *r = MK(path, 64 * MiB, 4 * P);
  fill_at(B(r), 0, 4 * P, 1);
  /* the mapping is the file: pread sees region writes, region sees pwrite */
  int fd = open(path, O_RDWR);
  ASSERT(fd >= 0);
  unsigned char buf[256];
  ASSERT_EQ(pread(fd, buf, sizeof buf, (off_t)P), (ssize_t)sizeof buf);
  CHECK_MEM(buf, B(r) + P, sizeof buf, "pread of region bytes");
  ASSERT_EQ(pwrite(fd, "hello", 5, (off_t)(2 * P)), 5);
  ASSERT(memcmp(B(r) + 2 * P, "hello", 5) == 0);
  memcpy(B(r) + 2 * P, "\0\0\0\0\0", 5);
  fill_at(B(r), 2 * P, 2 * P + 5, 1);

  for (int round = 0; round < 2; round++) {
    uint64_t size = mm_region_size(r);
    pid_t pid = fork_flushed();
    if (pid == 0) {
      mm_region_t *c;
      ASSERT_OK(RCREATE(&c, path, 64 * MiB, 0, 0));
      ASSERT(mm_region_size(c) >= size);
      CHECK_PAT(B(c), 0, size, 1, "seen by the other process");
      memset(B(c) + 100, 0x77, 100);
      /* Reading: leave the file as large as it is (the parent maps it) */
      ASSERT_EQ(mm_region_size(c), file_size(path));
      ASSERT_OK(mm_region_close(c));
      _exit(0);
    }
    WAIT_CHILD(pid, "second opener");
    for (int i = 100; i < 200; i++)
      if (B(r)[i] != 0x77) FAIL("round %d: the other process's write is not seen", round);
    fill_at(B(r), 100, 200, 1);
    ASSERT_OK(mm_region_resize(r, 8 * P));
    fill_at(B(r), 4 * P, 8 * P, 1);
  }
  close(fd);
  CLOSE_CHECK(r, path);
}

/* A process that dies without closing: the appended bytes are in the file
 * (MAP_SHARED pages live in the page cache). Reading: the file may be
 * longer than the appended data (slack), with zeros there. */
TEST(region_adv_process_dying_without_close_keeps_the_appended_bytes) {
  const char *path = mm_test_path("f");
  uint64_t n = 200000;
  pid_t pid = fork_flushed();
  if (pid == 0) {
    mm_region_t *r = MK(path, 64 * MiB, 0);
    unsigned char chunk[4000];
    for (uint64_t off = 0; off < n; off += sizeof chunk) {
      for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = pat(off + i, 4);
      if (mm_region_append(r, chunk, (size_t)min64(sizeof chunk, n - off), NULL))
        _exit(1);
    }
    _exit(0); /* no close, no sync */
  }
  WAIT_CHILD(pid, "writer");
  uint64_t fs = file_size(path);
  if (fs < n) FAIL("the file has %" PRIu64 " bytes, %" PRIu64 " were appended", fs, n);
  mm_region_t *r;
  ASSERT_OK(RCREATE(&r, path, 64 * MiB, 0, 0));
  ASSERT_EQ(mm_region_size(r), fs);
  CHECK_PAT(B(r), 0, n, 4, "after the writer died");
  CHECK_ZERO(B(r), n, fs, "past the appended bytes");
  ASSERT_OK(mm_region_close(r));
}

TEST(region_adv_sync_checks_its_range_and_reports_write_back_errors) {
  uint64_t P = pg(), S = 3 * P + 100;
  const char *path = mm_test_path("f");
  mm_region_t *r = MK(path, 64 * MiB, S);
  fill_at(B(r), 0, S, 2);
  int flags[] = {MM_SYNC_WAIT, MM_SYNC_ASYNC};
  for (int f = 0; f < 2; f++) {
    ASSERT_OK(mm_region_sync(r, 0, 0, flags[f]));
    ASSERT_OK(mm_region_sync(r, P + 1, 10, flags[f]));
    ASSERT_OK(mm_region_sync(r, S - 1, 1, flags[f]));
    ASSERT_OK(mm_region_sync(r, 1, S - 1, flags[f]));
    ASSERT_OK(mm_region_sync(r, 0, S, flags[f]));
    ASSERT_OK(mm_region_sync(r, 2 * P + 3, 0, flags[f]));
    struct {
      uint64_t off, len;
    } bad[] = {{S, 1},        {S + 1, 0},         {0, S + 1},
               {S - 1, 2},    {1, UINT64_MAX},    {UINT64_MAX, 2},
               {UINT64_MAX, 0}, {P, UINT64_MAX - P + 1}, {rup(S), 0},
               {S + P, P}};
    for (size_t i = 0; i < NELEM(bad); i++) {
      int rc = mm_region_sync(r, bad[i].off, bad[i].len, flags[f]);
      if (rc != MM_ERANGE)
        FAIL("sync(%" PRIu64 ", %" PRIu64 ") of a %" PRIu64
             "-byte region: got %s, want MM_ERANGE",
             bad[i].off, bad[i].len, S, mm_errname(rc));
    }
  }
  /* a waited sync writes back: a write-back error comes out of it */
  mm__fault_clear();
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 1);
  mm__fault_set(MM_SYS_FSYNC, 1, EIO, 1);
  int rc = mm_region_sync(r, 0, 0, MM_SYNC_WAIT);
  unsigned long calls = mm__sys_count(MM_SYS_MSYNC) + mm__sys_count(MM_SYS_FSYNC);
  mm__fault_clear();
  if (calls == 0) FAIL("mm_region_sync(MM_SYNC_WAIT) made no msync or fsync call");
  ASSERT_RC(rc, -EIO);
  ASSERT_EQ(mm_region_size(r), S);
  ASSERT_OK(mm_region_sync(r, 0, 0, MM_SYNC_WAIT));
  /* after a grow the new part syncs too */
  ASSERT_OK(mm_region_resize(r, 10 * P));
  ASSERT_OK(mm_region_sync(r, 9 * P, P, MM_SYNC_WAIT));
  ASSERT_RC(mm_region_sync(r, 9 * P, P + 1, MM_SYNC_WAIT), MM_ERANGE);
  /* an empty region: the whole (empty) range syncs */
  ASSERT_OK(mm_region_resize(r, 0));
  ASSERT_OK(mm_region_sync(r, 0, 0, MM_SYNC_WAIT));
  CLOSE_CHECK(r, path);
  /* anonymous: nothing to write, 0 */
  mm_region_t *a = MK(NULL, 64 * MiB, S);
  ASSERT_OK(mm_region_sync(a, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_region_sync(a, P + 1, 10, MM_SYNC_ASYNC));
  ASSERT_OK(mm_region_close(a));
}

TEST(region_adv_close_reports_the_file_close_error_and_still_leaves_size_bytes) {
  const char *path = mm_test_path("f");
  int fds0 = count_fds();
  mm_region_t *r = MK(path, 64 * MiB, 0);
  unsigned char chunk[1000];
  for (int i = 0; i < 10; i++) {
    fill_at(chunk, 0, sizeof chunk, (uint64_t)i);
    ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, NULL));
  }
  unsigned char *copy = malloc(10000);
  memcpy(copy, B(r), 10000);
  mm__fault_clear();
  mm__fault_set(MM_SYS_CLOSE, 1, EIO, 1);
  int rc = mm_region_close(r);
  unsigned long calls = mm__sys_count(MM_SYS_CLOSE);
  mm__fault_clear();
  if (calls == 0) FAIL("mm_region_close closed no descriptor");
  ASSERT_RC(rc, -EIO);
  CHECK_FILE(path, copy, 10000, "after a failing close");
  ASSERT_EQ(maps_count(path), 0);
  ASSERT_EQ(count_fds(), fds0);
  free(copy);
}
