/*
 * test_view_adv.c - adversarial tests for file views (memmap/view.h), written
 * from the header contract and the project issue only, not from src/view.c.
 *
 * Every test runs in its own forked process (see runner.c), so tests freely
 * set rlimits, fork children, install signal handlers and arm fault
 * injection (src/sys.h).
 *
 * Where the header is ambiguous the reading taken is stated in a comment
 * beginning with "Reading:".
 */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "sys.h"

/* ThreadSanitizer shares both ASan limitations these tests skip for: it
 * cannot run under a lowered RLIMIT_AS, and its mlock does not fail. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MM_ADV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MM_ADV_ASAN 1
#endif
#endif

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

static uint64_t pg(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

/* A value that is never a valid view, to check *out is reset to NULL. */
static char junk_view_storage;
#define JUNK_VIEW ((mm_view_t *)(void *)&junk_view_storage)

static int vopen(mm_view_t **v, const char *path, int mode, int backend,
                 uint64_t off, uint64_t len) {
  mm_view_opts_t o = {0};
  o.mode = mode;
  o.backend = backend;
  o.offset = off;
  o.length = len;
  return mm_view_open(v, path, &o);
}

static int vopen_fd(mm_view_t **v, int fd, int mode, int backend, uint64_t off,
                    uint64_t len) {
  mm_view_opts_t o = {0};
  o.mode = mode;
  o.backend = backend;
  o.offset = off;
  o.length = len;
  return mm_view_open_fd(v, fd, &o);
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) FAIL("opendir /proc/self/fd: %s", strerror(errno));
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

/* Lines of /proc/self/maps that name `path` (mappings of that file). */
static int count_maps_of(const char *path) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) FAIL("open /proc/self/maps: %s", strerror(errno));
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
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  int n = 0;
  for (char *line = buf; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (strstr(line, path)) n++;
    line = nl ? nl + 1 : NULL;
  }
  free(buf);
  return n;
}

static uint64_t file_size(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) FAIL("stat %s: %s", path, strerror(errno));
  return (uint64_t)st.st_size;
}

/* Check p[0..n) == mm_test_byte(base + i). */
static void check_pattern_at(const void *p, uint64_t base, uint64_t n,
                             const char *what, int line) {
  const unsigned char *b = p;
  for (uint64_t i = 0; i < n; i++)
    if (b[i] != mm_test_byte(base + i))
      mm_test_fail(__FILE__, line,
                   "%s: byte %" PRIu64 " (file offset %" PRIu64
                   ") is 0x%02x, want 0x%02x",
                   what, i, base + i, b[i], mm_test_byte(base + i));
}
#define CHECK_PATTERN(p, base, n, what) \
  check_pattern_at((p), (base), (n), (what), __LINE__)

/* Check the whole file at `path` is the pattern, except [from, to) == fill. */
static void check_file_at(const char *path, uint64_t size, uint64_t from,
                          uint64_t to, int fill, int line) {
  ASSERT_EQ(file_size(path), size);
  int fd = open(path, O_RDONLY);
  if (fd < 0) FAIL("open %s: %s", path, strerror(errno));
  unsigned char *buf = malloc(size ? size : 1);
  ASSERT(buf);
  ASSERT_EQ(pread(fd, buf, size, 0), (ssize_t)size);
  close(fd);
  for (uint64_t i = 0; i < size; i++) {
    unsigned char want = (i >= from && i < to) ? (unsigned char)fill
                                               : mm_test_byte(i);
    if (buf[i] != want)
      mm_test_fail(__FILE__, line,
                   "file byte %" PRIu64 " is 0x%02x, want 0x%02x", i, buf[i],
                   want);
  }
  free(buf);
}
#define CHECK_FILE(path, size, from, to, fill) \
  check_file_at((path), (size), (from), (to), (fill), __LINE__)

static uint64_t expected_slack(uint64_t off, uint64_t len) {
  uint64_t P = pg(), head = off % P, end = head + len;
  uint64_t tail = (P - end % P) % P;
  return head + tail;
}

/* Truncate `path` to `size` from another process, as the contract says. */
static void truncate_in_child(const char *path, uint64_t size) {
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) _exit(truncate(path, (off_t)size) == 0 ? 0 : 1);
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Fork a child writing pattern bytes [start, start+n) into wfd. */
static pid_t spawn_writer(int rfd, int wfd, uint64_t start, uint64_t n) {
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    if (rfd >= 0) close(rfd);
    unsigned char buf[8192];
    uint64_t i = 0;
    while (i < n) {
      size_t k = n - i < sizeof buf ? (size_t)(n - i) : sizeof buf;
      for (size_t j = 0; j < k; j++) buf[j] = mm_test_byte(start + i + j);
      size_t done = 0;
      while (done < k) {
        ssize_t w = write(wfd, buf + done, k - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(2);
        done += (size_t)w;
      }
      i += k;
    }
    close(wfd);
    _exit(0);
  }
  return pid;
}

static void reap(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
}

static void write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) FAIL("write: %s", strerror(errno));
    c += w;
    n -= (size_t)w;
  }
}

static void fill_pattern(unsigned char *b, uint64_t base, size_t n) {
  for (size_t i = 0; i < n; i++) b[i] = mm_test_byte(base + i);
}

/* ------------------------------------------------------------------------ */
/* ranges and offsets                                                       */

TEST(view_adv_whole_file_bytes_match_for_every_mode_and_backend) {
  uint64_t P = pg(), size = 3 * P + 123;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  ASSERT(!strcmp(mm_backend_name(MM_BACKEND_MMAP), "mmap"));
  ASSERT(!strcmp(mm_backend_name(MM_BACKEND_READ), "read"));
  ASSERT(!strcmp(mm_backend_name(MM_BACKEND_AUTO), "auto"));
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  int backends[] = {MM_BACKEND_AUTO, MM_BACKEND_MMAP, MM_BACKEND_READ};
  int accesses[] = {MM_ACCESS_DEFAULT, MM_ACCESS_SEQUENTIAL, MM_ACCESS_RANDOM};
  for (int m = 0; m < 3; m++)
    for (int b = 0; b < 3; b++)
      for (int a = 0; a < 3; a++) {
        if (modes[m] == MM_VIEW_WRITE && backends[b] == MM_BACKEND_READ)
          continue;
        mm_view_opts_t o = {0};
        o.mode = modes[m];
        o.backend = backends[b];
        o.access = accesses[a];
        o.flags = a == 1 ? MM_VIEW_POPULATE : 0;
        mm_view_t *v = JUNK_VIEW;
        ASSERT_OK(mm_view_open(&v, path, &o));
        ASSERT(v != NULL && v != JUNK_VIEW);
        ASSERT_EQ(mm_view_size(v), size);
        int be = mm_view_backend(v);
        if (backends[b] != MM_BACKEND_AUTO) ASSERT_EQ(be, backends[b]);
        if (modes[m] == MM_VIEW_WRITE) ASSERT_EQ(be, MM_BACKEND_MMAP);
        /* a 12 KiB file is far below both default thresholds */
        if (backends[b] == MM_BACKEND_AUTO && modes[m] != MM_VIEW_WRITE)
          ASSERT_EQ(be, MM_BACKEND_READ);
        ASSERT(be == MM_BACKEND_MMAP || be == MM_BACKEND_READ);
        ASSERT_EQ(mm_view_slack(v), be == MM_BACKEND_MMAP ? P - 123 : 0);
        CHECK_PATTERN(mm_view_data(v), 0, size, "whole-file view");
        unsigned char buf[300];
        ASSERT_OK(mm_view_read(v, size - 300, buf, 300));
        CHECK_PATTERN(buf, size - 300, 300, "mm_view_read tail");
        ASSERT_OK(mm_view_close(v));
      }
  /* NULL opts: all defaults, read-only whole file */
  mm_view_t *v = NULL;
  ASSERT_OK(mm_view_open(&v, path, NULL));
  ASSERT_EQ(mm_view_size(v), size);
  CHECK_PATTERN(mm_view_data(v), 0, size, "NULL opts");
  ASSERT_OK(mm_view_close(v));
  CHECK_FILE(path, size, 0, 0, 0);
}

TEST(view_adv_unaligned_offsets_give_exact_bytes_and_slack) {
  uint64_t P = pg(), size = 5 * P + 77;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  uint64_t offs[] = {1, P - 1, P, P + 1, 2 * P - 1, size - P, size - 2,
                     size - 1};
  uint64_t lens[] = {0, 1, 2, P - 1, P, P + 1, 2 * P + 3};
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ};
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  for (size_t oi = 0; oi < sizeof offs / sizeof offs[0]; oi++)
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
      for (int b = 0; b < 2; b++)
        for (int m = 0; m < 2; m++) {
          uint64_t off = offs[oi], len = lens[li];
          if (len && off + len > size) continue;
          uint64_t want = len ? len : size - off;
          mm_view_t *v = JUNK_VIEW;
          int rc = vopen(&v, path, modes[m], backends[b], off, len);
          if (rc != 0)
            FAIL("open off=%" PRIu64 " len=%" PRIu64 " backend=%d: %s", off,
                 len, backends[b], mm_errname(rc));
          ASSERT_EQ(mm_view_size(v), want);
          ASSERT_EQ(mm_view_backend(v), backends[b]);
          if (backends[b] == MM_BACKEND_MMAP) {
            ASSERT_EQ((uintptr_t)mm_view_data(v) % P, off % P);
            ASSERT_EQ(mm_view_slack(v), expected_slack(off, want));
          } else {
            ASSERT_EQ(mm_view_slack(v), 0);
          }
          CHECK_PATTERN(mm_view_data(v), off, want, "unaligned view");
          ASSERT_OK(mm_view_close(v));
        }
  /* offset = size - 1, length 0: exactly the last byte */
  for (int b = 0; b < 2; b++) {
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, MM_VIEW_READ, backends[b], size - 1, 0));
    ASSERT_EQ(mm_view_size(v), 1);
    ASSERT_EQ(*(unsigned char *)mm_view_data(v), mm_test_byte(size - 1));
    ASSERT_OK(mm_view_close(v));
  }
}

/* Reading: "offset or offset+length lies past the end of the file" - an
 * offset equal to the size is at, not past, the end: with length 0 it is a
 * valid empty view (like an empty file); any nonzero length is MM_ERANGE. */
TEST(view_adv_offset_equal_to_size_is_empty_view_and_any_length_is_erange) {
  uint64_t P = pg();
  uint64_t sizes[] = {1, P - 1, P, 2 * P + 1};
  const char *path = mm_test_path("f");
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ, MM_BACKEND_AUTO};
  for (int s = 0; s < 4; s++) {
    mm_test_write_file(path, sizes[s]);
    for (int b = 0; b < 3; b++) {
      mm_view_t *v = JUNK_VIEW;
      int rc = vopen(&v, path, MM_VIEW_READ, backends[b], sizes[s], 0);
      if (rc != 0)
        FAIL("offset == size %" PRIu64 " backend %d: %s", sizes[s],
             backends[b], mm_errname(rc));
      ASSERT_EQ(mm_view_size(v), 0);
      ASSERT(mm_view_data(v) != NULL);
      ASSERT_OK(mm_view_close(v));
      v = JUNK_VIEW;
      ASSERT_RC(vopen(&v, path, MM_VIEW_READ, backends[b], sizes[s], 1),
                MM_ERANGE);
      ASSERT(v == NULL);
    }
  }
}

TEST(view_adv_range_past_eof_is_mm_erange_and_leaves_nothing_behind) {
  uint64_t P = pg(), size = 2 * P + 5;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int fds0 = count_fds();
  struct {
    uint64_t off, len;
  } cases[] = {
      {size + 1, 0},     {size + P, 0},          {0, size + 1},
      {1, size},         {P - 1, size - P + 2},  {size - 1, 2},
      {size, 1},         {(uint64_t)1 << 40, 0}, {(uint64_t)1 << 63, 0},
      {((uint64_t)1 << 63) - 1, 1}, {UINT64_MAX, 0}, {UINT64_MAX - P + 1, 0},
  };
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  int backends[] = {MM_BACKEND_AUTO, MM_BACKEND_MMAP, MM_BACKEND_READ};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int m = 0; m < 3; m++)
      for (int b = 0; b < 3; b++) {
        if (modes[m] == MM_VIEW_WRITE && backends[b] == MM_BACKEND_READ)
          continue;
        mm_view_t *v = JUNK_VIEW;
        int rc = vopen(&v, path, modes[m], backends[b], cases[c].off,
                       cases[c].len);
        if (rc != MM_ERANGE)
          FAIL("off=%" PRIu64 " len=%" PRIu64 " mode=%d backend=%d: got %s,"
               " want MM_ERANGE",
               cases[c].off, cases[c].len, modes[m], backends[b],
               mm_errname(rc));
        ASSERT(v == NULL);
      }
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(count_maps_of(path), 0);
  CHECK_FILE(path, size, 0, 0, 0);
}

/* offset + length wraps around 2^64. Every such range is past the end of a
 * small file, so MM_ERANGE is the clear code (not success on a wrapped sum,
 * not a crash). */
TEST(view_adv_offset_plus_length_overflowing_uint64_is_mm_erange) {
  uint64_t P = pg(), size = 3 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  struct {
    uint64_t off, len;
  } cases[] = {
      {1, UINT64_MAX},                 /* sum wraps to 0 */
      {16, UINT64_MAX - 15},           /* sum wraps to exactly 0 */
      {size, UINT64_MAX - size + 1},   /* sum wraps to exactly 0 */
      {P, UINT64_MAX - P + 11},        /* sum wraps to 10, inside file */
      {P + 1, UINT64_MAX},             /* sum wraps to P, inside file */
      {UINT64_MAX, 1},
      {UINT64_MAX, 2},
      {UINT64_MAX - 1, 3},
      {0, UINT64_MAX},
      {2, UINT64_MAX - 1},
  };
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  int backends[] = {MM_BACKEND_AUTO, MM_BACKEND_MMAP, MM_BACKEND_READ};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int m = 0; m < 3; m++)
      for (int b = 0; b < 3; b++) {
        if (modes[m] == MM_VIEW_WRITE && backends[b] == MM_BACKEND_READ)
          continue;
        mm_view_t *v = JUNK_VIEW;
        int rc = vopen(&v, path, modes[m], backends[b], cases[c].off,
                       cases[c].len);
        if (rc != MM_ERANGE)
          FAIL("off=%" PRIu64 " len=%" PRIu64 " mode=%d backend=%d: got %s,"
               " want MM_ERANGE",
               cases[c].off, cases[c].len, modes[m], backends[b],
               mm_errname(rc));
        ASSERT(v == NULL);
      }
  ASSERT_EQ(count_maps_of(path), 0);
  CHECK_FILE(path, size, 0, 0, 0);
}

TEST(view_adv_offset_beyond_4gib_of_sparse_file_maps_the_right_bytes) {
  uint64_t P = pg();
  const char *path = mm_test_path("sparse");
  uint64_t base = ((uint64_t)5 << 30) + 1, n = 3 * P;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT(fd >= 0);
  unsigned char *buf = malloc(n);
  ASSERT(buf);
  fill_pattern(buf, base, n);
  ASSERT_EQ(pwrite(fd, buf, n, (off_t)base), (ssize_t)n);
  free(buf);
  close(fd);
  uint64_t size = base + n;
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ, MM_BACKEND_AUTO};
  for (int b = 0; b < 3; b++) {
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, MM_VIEW_READ, backends[b], base, n));
    ASSERT_EQ(mm_view_size(v), n);
    CHECK_PATTERN(mm_view_data(v), base, n, "view above 4 GiB");
    if (mm_view_backend(v) == MM_BACKEND_MMAP)
      ASSERT_EQ(mm_view_slack(v), expected_slack(base, n));
    ASSERT_OK(mm_view_close(v));
    /* to the end of file, from an unaligned offset above 4 GiB */
    ASSERT_OK(vopen(&v, path, MM_VIEW_READ, backends[b], base + P + 7, 0));
    ASSERT_EQ(mm_view_size(v), size - (base + P + 7));
    CHECK_PATTERN(mm_view_data(v), base + P + 7, size - (base + P + 7),
                  "tail above 4 GiB");
    ASSERT_OK(mm_view_close(v));
    v = JUNK_VIEW;
    ASSERT_RC(vopen(&v, path, MM_VIEW_READ, backends[b], base, n + 1),
              MM_ERANGE);
    ASSERT(v == NULL);
  }
  /* a WRITE view up there stores at the right file offset */
  mm_view_t *w = NULL;
  ASSERT_OK(vopen(&w, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, base + 2, 1));
  *(unsigned char *)mm_view_data(w) = 0x5a;
  ASSERT_OK(mm_view_close(w));
  fd = open(path, O_RDONLY);
  unsigned char c[3];
  ASSERT_EQ(pread(fd, c, 3, (off_t)(base + 1)), 3);
  close(fd);
  ASSERT_EQ(c[0], mm_test_byte(base + 1));
  ASSERT_EQ(c[1], 0x5a);
  ASSERT_EQ(c[2], mm_test_byte(base + 3));
}

/* ------------------------------------------------------------------------ */
/* empty files                                                              */

static int fn_count_calls(void *arg, void *data, uint64_t size) {
  int *n = arg;
  (void)data;
  (*n)++;
  return size == 0 ? 17 : -1;
}

TEST(view_adv_empty_file_is_a_valid_zero_length_view_in_every_mode) {
  const char *path = mm_test_path("empty");
  mm_test_write_file(path, 0);
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  int backends[] = {MM_BACKEND_AUTO, MM_BACKEND_MMAP, MM_BACKEND_READ};
  int fds0 = count_fds();
  for (int m = 0; m < 3; m++)
    for (int b = 0; b < 3; b++) {
      if (modes[m] == MM_VIEW_WRITE && backends[b] == MM_BACKEND_READ)
        continue;
      mm_view_t *v = JUNK_VIEW;
      int rc = vopen(&v, path, modes[m], backends[b], 0, 0);
      if (rc != 0)
        FAIL("empty file mode %d backend %d: %s", modes[m], backends[b],
             mm_errname(rc));
      ASSERT_EQ(mm_view_size(v), 0);
      ASSERT(mm_view_data(v) != NULL);
      ASSERT_EQ(mm_view_slack(v), 0);
      int be = mm_view_backend(v);
      if (backends[b] != MM_BACKEND_AUTO) ASSERT_EQ(be, backends[b]);
      if (modes[m] == MM_VIEW_WRITE) ASSERT_EQ(be, MM_BACKEND_MMAP);
      ASSERT(be == MM_BACKEND_MMAP || be == MM_BACKEND_READ);
      unsigned char c = 0;
      ASSERT_OK(mm_view_read(v, 0, &c, 0));
      ASSERT_RC(mm_view_read(v, 0, &c, 1), MM_ERANGE);
      if (modes[m] != MM_VIEW_READ)
        ASSERT_RC(mm_view_write(v, 0, &c, 1), MM_ERANGE);
      int calls = 0;
      ASSERT_EQ(mm_view_guard(v, fn_count_calls, &calls), 17);
      ASSERT_EQ(calls, 1);
      ASSERT_OK(mm_view_advise(v, 0, 0, MM_ADVISE_WILLNEED));
      ASSERT_OK(mm_view_populate(v, 0, 0));
      ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
      ASSERT_OK(mm_view_close(v));
    }
  ASSERT_EQ(count_fds(), fds0);
  /* an offset past an empty file is a range error, not an empty view */
  for (int b = 0; b < 3; b++) {
    mm_view_t *v = JUNK_VIEW;
    ASSERT_RC(vopen(&v, path, MM_VIEW_READ, backends[b], 1, 0), MM_ERANGE);
    ASSERT(v == NULL);
    v = JUNK_VIEW;
    ASSERT_RC(vopen(&v, path, MM_VIEW_READ, backends[b], 0, 1), MM_ERANGE);
    ASSERT(v == NULL);
  }
  ASSERT_EQ(file_size(path), 0);
}

/* ------------------------------------------------------------------------ */
/* backend selection                                                        */

static void make_sparse(const char *path, uint64_t size) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT(fd >= 0);
  ASSERT_EQ(ftruncate(fd, (off_t)size), 0);
  close(fd);
}

static int backend_for(const char *path, int access, uint64_t threshold,
                       uint64_t off, uint64_t len) {
  mm_view_opts_t o = {0};
  o.access = access;
  o.threshold = threshold;
  o.offset = off;
  o.length = len;
  mm_view_t *v = NULL;
  int rc = mm_view_open(&v, path, &o);
  if (rc != 0) FAIL("open for backend choice: %s", mm_errname(rc));
  int be = mm_view_backend(v);
  ASSERT_OK(mm_view_close(v));
  return be;
}

/* "AUTO maps regular-file ranges at least this large": the boundary is
 * inclusive, and it is the range that counts, not the file. */
TEST(view_adv_threshold_option_picks_backend_by_range_at_exact_boundary) {
  const char *path = mm_test_path("f");
  uint64_t size = 64 << 10;
  mm_test_write_file(path, size);
  ASSERT_EQ(backend_for(path, 0, 0, 0, 0), MM_BACKEND_READ);
  ASSERT_EQ(backend_for(path, 0, size, 0, 0), MM_BACKEND_MMAP);
  ASSERT_EQ(backend_for(path, 0, size + 1, 0, 0), MM_BACKEND_READ);
  ASSERT_EQ(backend_for(path, 0, 1, 0, 0), MM_BACKEND_MMAP);
  /* the range, not the file size, is compared */
  ASSERT_EQ(backend_for(path, 0, 8192, 100, 8191), MM_BACKEND_READ);
  ASSERT_EQ(backend_for(path, 0, 8192, 100, 8192), MM_BACKEND_MMAP);
  ASSERT_EQ(backend_for(path, 0, 8192, size - 8191, 0), MM_BACKEND_READ);
  ASSERT_EQ(backend_for(path, 0, 8192, size - 8192, 0), MM_BACKEND_MMAP);
  ASSERT_EQ(backend_for(path, MM_ACCESS_RANDOM, 8192, 1, 8192),
            MM_BACKEND_MMAP);
}

TEST(view_adv_default_thresholds_are_32mib_and_256kib_for_random) {
  const char *path = mm_test_path("big");
  make_sparse(path, MM_VIEW_THRESHOLD_DEFAULT);
  ASSERT_EQ(backend_for(path, MM_ACCESS_DEFAULT, 0, 0, 0), MM_BACKEND_MMAP);
  ASSERT_EQ(backend_for(path, MM_ACCESS_SEQUENTIAL, 0, 0, 0), MM_BACKEND_MMAP);
  ASSERT_EQ(backend_for(path, MM_ACCESS_DEFAULT, 0, 1, 0), MM_BACKEND_READ);
  ASSERT_EQ(backend_for(path, MM_ACCESS_DEFAULT, 0, 0,
                        MM_VIEW_THRESHOLD_DEFAULT - 1),
            MM_BACKEND_READ);
  ASSERT_EQ(backend_for(path, MM_ACCESS_RANDOM, 0, 0,
                        MM_VIEW_RANDOM_THRESHOLD_DEFAULT),
            MM_BACKEND_MMAP);
  ASSERT_EQ(backend_for(path, MM_ACCESS_RANDOM, 0, 5,
                        MM_VIEW_RANDOM_THRESHOLD_DEFAULT - 1),
            MM_BACKEND_READ);
  ASSERT_EQ(backend_for(path, MM_ACCESS_DEFAULT, 0, 0,
                        MM_VIEW_RANDOM_THRESHOLD_DEFAULT),
            MM_BACKEND_READ);
}

/* ------------------------------------------------------------------------ */
/* streams and special files                                                */

TEST(view_adv_pipe_larger_than_pipe_buffer_is_read_byte_exact) {
  uint64_t n = (1 << 20) + 3;
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  int backends[] = {MM_BACKEND_AUTO, MM_BACKEND_READ};
  for (int m = 0; m < 2; m++)
    for (int b = 0; b < 2; b++) {
      int p[2];
      ASSERT_EQ(pipe(p), 0);
      pid_t w = spawn_writer(p[0], p[1], 0, n);
      close(p[1]);
      mm_view_t *v = NULL;
      int rc = vopen_fd(&v, p[0], modes[m], backends[b], 0, 0);
      if (rc != 0) FAIL("pipe view: %s", mm_errname(rc));
      ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
      ASSERT_EQ(mm_view_size(v), n);
      ASSERT_EQ(mm_view_slack(v), 0);
      CHECK_PATTERN(mm_view_data(v), 0, n, "pipe view");
      if (modes[m] == MM_VIEW_PRIVATE) {
        unsigned char *d = mm_view_data(v);
        d[0] ^= 0xff;
        ASSERT_EQ(d[0], (unsigned char)(mm_test_byte(0) ^ 0xff));
      }
      ASSERT_OK(mm_view_close(v));
      /* the descriptor stays the caller's */
      ASSERT(fcntl(p[0], F_GETFD) >= 0);
      close(p[0]);
      reap(w);
    }
}

/* Forcing the mmap backend (or WRITE mode) on a pipe fails with
 * MM_ENOTMAPPABLE and "loses nothing": no byte of the pipe is consumed. */
TEST(view_adv_pipe_forced_mmap_or_write_is_enotmappable_and_consumes_nothing) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  unsigned char buf[100];
  fill_pattern(buf, 0, sizeof buf);
  write_all(p[1], buf, sizeof buf);
  close(p[1]);
  int fds0 = count_fds();
  mm_view_t *v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, p[0], MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, p[0], MM_VIEW_READ, MM_BACKEND_MMAP, 0, 50),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, p[0], MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, p[0], MM_VIEW_PRIVATE, MM_BACKEND_MMAP, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  ASSERT_EQ(count_fds(), fds0);
  unsigned char got[200];
  ssize_t r = read(p[0], got, sizeof got);
  ASSERT_EQ(r, 100);
  CHECK_PATTERN(got, 0, 100, "pipe after refused views");
  close(p[0]);
}

/* Reading: with an explicit length a stream view reads exactly `length`
 * bytes; "the view consumes what it reads", and the rest stays in the pipe
 * for the caller (loses nothing). */
TEST(view_adv_pipe_with_length_reads_exactly_length_and_leaves_the_rest) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  unsigned char buf[100];
  fill_pattern(buf, 0, sizeof buf);
  write_all(p[1], buf, sizeof buf);
  close(p[1]);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen_fd(&v, p[0], MM_VIEW_READ, MM_BACKEND_AUTO, 0, 40));
  ASSERT_EQ(mm_view_size(v), 40);
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  CHECK_PATTERN(mm_view_data(v), 0, 40, "pipe view with length");
  ASSERT_OK(mm_view_close(v));
  unsigned char got[200];
  ssize_t r = read(p[0], got, sizeof got);
  ASSERT_EQ(r, 60);
  CHECK_PATTERN(got, 40, 60, "rest of the pipe");
  close(p[0]);
}

/* Reading: a stream that ends before offset+length means the range lies
 * past the end of the "file": MM_ERANGE. */
TEST(view_adv_pipe_shorter_than_requested_length_is_mm_erange) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  unsigned char buf[10];
  fill_pattern(buf, 0, sizeof buf);
  write_all(p[1], buf, sizeof buf);
  close(p[1]);
  mm_view_t *v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, p[0], MM_VIEW_READ, MM_BACKEND_AUTO, 0, 20),
            MM_ERANGE);
  ASSERT(v == NULL);
  close(p[0]);
}

TEST(view_adv_stream_limit_is_inclusive_and_a_longer_stream_is_efbig) {
  uint64_t limit = 100000;
  for (int extra = 0; extra <= 1; extra++) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t w = spawn_writer(p[0], p[1], 0, limit + (uint64_t)extra);
    close(p[1]);
    mm_view_opts_t o = {0};
    o.stream_limit = limit;
    mm_view_t *v = JUNK_VIEW;
    int rc = mm_view_open_fd(&v, p[0], &o);
    if (extra == 0) {
      if (rc != 0) FAIL("stream of exactly stream_limit: %s", mm_errname(rc));
      ASSERT_EQ(mm_view_size(v), limit);
      CHECK_PATTERN(mm_view_data(v), 0, limit, "stream at limit");
      ASSERT_OK(mm_view_close(v));
    } else {
      ASSERT_RC(rc, -EFBIG);
      ASSERT(v == NULL);
    }
    close(p[0]);
    reap(w);
  }
  /* /dev/zero never ends: forced read with no length stops at the limit */
  mm_view_opts_t o = {0};
  o.backend = MM_BACKEND_READ;
  o.stream_limit = 1 << 20;
  mm_view_t *v = JUNK_VIEW;
  ASSERT_RC(mm_view_open(&v, "/dev/zero", &o), -EFBIG);
  ASSERT(v == NULL);
}

TEST(view_adv_fifo_by_path_is_read_and_forced_mmap_is_enotmappable) {
  const char *path = mm_test_path("fifo");
  ASSERT_EQ(mkfifo(path, 0600), 0);
  uint64_t n = 200000;
  /* writer: open blocks until the view opens the FIFO for reading */
  fflush(NULL);
  pid_t w = fork();
  ASSERT(w >= 0);
  if (w == 0) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) _exit(3);
    pid_t inner = spawn_writer(-1, fd, 0, n);
    int st;
    waitpid(inner, &st, 0);
    _exit(0);
  }
  mm_view_t *v = NULL;
  ASSERT_OK(mm_view_open(&v, path, NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), n);
  CHECK_PATTERN(mm_view_data(v), 0, n, "fifo view");
  ASSERT_OK(mm_view_close(v));
  reap(w);

  /* forced mmap on the FIFO: give it a writer that might be needed to let
   * open() return, then expect MM_ENOTMAPPABLE */
  fflush(NULL);
  w = fork();
  ASSERT(w >= 0);
  if (w == 0) {
    int fd = open(path, O_WRONLY);
    if (fd >= 0) {
      pause();
    }
    _exit(0);
  }
  v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  kill(w, SIGKILL);
  reap(w);
}

TEST(view_adv_socketpair_is_read_and_forced_mmap_is_enotmappable) {
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
  unsigned char buf[5000];
  fill_pattern(buf, 7, sizeof buf);
  write_all(s[0], buf, sizeof buf);
  ASSERT_EQ(shutdown(s[0], SHUT_WR), 0);
  mm_view_t *v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, s[1], MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, s[1], MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  ASSERT_OK(vopen_fd(&v, s[1], MM_VIEW_READ, MM_BACKEND_AUTO, 0, 0));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), sizeof buf);
  CHECK_PATTERN(mm_view_data(v), 7, sizeof buf, "socket view");
  ASSERT_OK(mm_view_close(v));
  ASSERT(fcntl(s[1], F_GETFD) >= 0);
  close(s[0]);
  close(s[1]);
}

TEST(view_adv_tty_is_read_with_explicit_length_and_refuses_mmap) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0) SKIP("posix_openpt: %s", strerror(errno));
  ASSERT_EQ(grantpt(m), 0);
  ASSERT_EQ(unlockpt(m), 0);
  const char *name = ptsname(m);
  ASSERT(name);
  int s = open(name, O_RDWR | O_NOCTTY);
  ASSERT(s >= 0);
  struct termios t;
  ASSERT_EQ(tcgetattr(s, &t), 0);
  cfmakeraw(&t);
  ASSERT_EQ(tcsetattr(s, TCSANOW, &t), 0);
  unsigned char buf[300];
  fill_pattern(buf, 0, sizeof buf);
  write_all(m, buf, sizeof buf);
  mm_view_t *v = JUNK_VIEW;
  ASSERT_RC(vopen_fd(&v, s, MM_VIEW_READ, MM_BACKEND_MMAP, 0, sizeof buf),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  ASSERT_OK(vopen_fd(&v, s, MM_VIEW_READ, MM_BACKEND_AUTO, 0, sizeof buf));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), sizeof buf);
  CHECK_PATTERN(mm_view_data(v), 0, sizeof buf, "tty view");
  ASSERT_OK(mm_view_close(v));
  close(s);
  close(m);
}

/* Reading: forcing the mmap backend on a procfs/sysfs file that "cannot be
 * mapped" gives MM_ENOTMAPPABLE - not an empty mapped view because procfs
 * reports size 0. AUTO reads the real contents, of their real length (a
 * sysfs attribute reports st_size 4096 but holds a few bytes). */
TEST(view_adv_proc_and_sys_files_are_read_with_their_real_length) {
  mm_view_t *v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, "/proc/self/status", MM_VIEW_READ, MM_BACKEND_MMAP, 0,
                  0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  int backends[] = {MM_BACKEND_AUTO, MM_BACKEND_READ};
  for (int b = 0; b < 2; b++) {
    ASSERT_OK(vopen(&v, "/proc/self/status", MM_VIEW_READ, backends[b], 0, 0));
    ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
    uint64_t n = mm_view_size(v);
    const char *d = mm_view_data(v);
    ASSERT(n > 100);
    ASSERT(!strncmp(d, "Name:", 5));
    ASSERT(memchr(d, 0, n) == NULL);
    ASSERT(d[n - 1] == '\n');
    char want[64];
    snprintf(want, sizeof want, "\nPid:\t%d\n", (int)getpid());
    ASSERT(memmem(d, n, want, strlen(want)) != NULL);
    ASSERT_OK(mm_view_close(v));
  }

  const char *sysf = "/sys/devices/system/cpu/online";
  int fd = open(sysf, O_RDONLY);
  if (fd < 0) SKIP("no %s", sysf);
  char real[4096];
  ssize_t rn = read(fd, real, sizeof real);
  close(fd);
  ASSERT(rn > 0);
  for (int b = 0; b < 2; b++) {
    ASSERT_OK(vopen(&v, sysf, MM_VIEW_READ, backends[b], 0, 0));
    ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
    ASSERT_EQ(mm_view_size(v), rn);
    ASSERT(!memcmp(mm_view_data(v), real, (size_t)rn));
    ASSERT_OK(mm_view_close(v));
  }
  v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, sysf, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
}

/* Reading: procfs and sysfs files are seekable files, only their size is
 * unknown up front: "any (offset, length)" applies to them as to regular
 * files - the view holds content bytes [offset, offset+length), and a range
 * past the content is MM_ERANGE. */
TEST(view_adv_proc_and_sys_files_honour_offset_and_length) {
  const char *sysf = "/sys/devices/system/cpu/online";
  int fd = open(sysf, O_RDONLY);
  if (fd < 0) SKIP("no %s", sysf);
  char real[4096];
  ssize_t rn = read(fd, real, sizeof real);
  close(fd);
  ASSERT(rn >= 2);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, sysf, MM_VIEW_READ, MM_BACKEND_AUTO, 1, 0));
  ASSERT_EQ(mm_view_size(v), rn - 1);
  ASSERT(!memcmp(mm_view_data(v), real + 1, (size_t)rn - 1));
  ASSERT_OK(mm_view_close(v));
  ASSERT_OK(vopen(&v, sysf, MM_VIEW_READ, MM_BACKEND_AUTO, 0, 1));
  ASSERT_EQ(mm_view_size(v), 1);
  ASSERT_EQ(*(char *)mm_view_data(v), real[0]);
  ASSERT_OK(mm_view_close(v));
  v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, sysf, MM_VIEW_READ, MM_BACKEND_AUTO, 0, (uint64_t)rn + 1),
            MM_ERANGE);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, sysf, MM_VIEW_READ, MM_BACKEND_AUTO, (uint64_t)rn + 1, 0),
            MM_ERANGE);
  ASSERT(v == NULL);
  /* /proc/self/status: "Name:\t" is 6 bytes, then the command name */
  ASSERT_OK(vopen(&v, "/proc/self/status", MM_VIEW_READ, MM_BACKEND_AUTO, 1,
                  4));
  ASSERT_EQ(mm_view_size(v), 4);
  ASSERT(!memcmp(mm_view_data(v), "ame:", 4));
  ASSERT_OK(mm_view_close(v));
}

/* Reading: an offset on a stream means the view starts that many bytes
 * into it (the skipped bytes are consumed). We accept a clear refusal
 * (-EINVAL or -ESPIPE) too, but never bytes from the wrong place. */
TEST(view_adv_pipe_offset_skips_bytes_or_fails_clearly) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  unsigned char buf[1000];
  fill_pattern(buf, 0, sizeof buf);
  write_all(p[1], buf, sizeof buf);
  close(p[1]);
  mm_view_t *v = JUNK_VIEW;
  int rc = vopen_fd(&v, p[0], MM_VIEW_READ, MM_BACKEND_AUTO, 100, 50);
  if (rc == 0) {
    ASSERT_EQ(mm_view_size(v), 50);
    CHECK_PATTERN(mm_view_data(v), 100, 50, "pipe view at offset 100");
    ASSERT_OK(mm_view_close(v));
  } else {
    if (rc != -EINVAL && rc != -ESPIPE)
      FAIL("pipe with offset: got %s", mm_errname(rc));
    ASSERT(v == NULL);
  }
  close(p[0]);
}

TEST(view_adv_dev_zero_maps_with_explicit_length_and_dev_null_is_empty) {
  uint64_t P = pg(), n = 3 * P + 5;
  uint64_t offs[] = {0, 1, P};
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  for (int o = 0; o < 3; o++)
    for (int m = 0; m < 2; m++) {
      mm_view_t *v = NULL;
      int rc = vopen(&v, "/dev/zero", modes[m], MM_BACKEND_MMAP, offs[o], n);
      if (rc != 0)
        FAIL("/dev/zero mmap off %" PRIu64 ": %s", offs[o], mm_errname(rc));
      ASSERT_EQ(mm_view_backend(v), MM_BACKEND_MMAP);
      ASSERT_EQ(mm_view_size(v), n);
      unsigned char *d = mm_view_data(v);
      for (uint64_t i = 0; i < n; i++)
        if (d[i]) FAIL("/dev/zero byte %" PRIu64 " is %d", i, d[i]);
      if (modes[m] == MM_VIEW_PRIVATE) {
        d[0] = 1;
        d[n - 1] = 2;
        ASSERT_EQ(d[0] + d[n - 1], 3);
      }
      ASSERT_OK(mm_view_close(v));
    }
  /* AUTO with a length: either backend, but zeros of the right length */
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, "/dev/zero", MM_VIEW_READ, MM_BACKEND_AUTO, 0, n));
  ASSERT_EQ(mm_view_size(v), n);
  for (uint64_t i = 0; i < n; i++)
    ASSERT_EQ(((unsigned char *)mm_view_data(v))[i], 0);
  ASSERT_OK(mm_view_close(v));
  /* Reading: forced mapping of /dev/zero without the required length is
   * an error (it cannot be a view of "the whole device"). */
  v = JUNK_VIEW;
  ASSERT(vopen(&v, "/dev/zero", MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0) < 0);
  ASSERT(v == NULL);
  /* a length that cannot fit the address space: -ENOMEM or -EFBIG */
  int modes2[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  for (int m = 0; m < 2; m++) {
    v = JUNK_VIEW;
    int rc = vopen(&v, "/dev/zero", modes2[m], MM_BACKEND_MMAP, 0,
                   (uint64_t)1 << 62);
    if (rc != -ENOMEM && rc != -EFBIG)
      FAIL("/dev/zero with a 2^62 length: got %s", mm_errname(rc));
    ASSERT(v == NULL);
  }
  /* /dev/null is an empty stream: an empty read view */
  ASSERT_OK(vopen(&v, "/dev/null", MM_VIEW_READ, MM_BACKEND_AUTO, 0, 0));
  ASSERT_EQ(mm_view_size(v), 0);
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT(mm_view_data(v) != NULL);
  ASSERT_OK(mm_view_close(v));
}

TEST(view_adv_dev_urandom_refuses_mmap_and_is_read_with_length) {
  mm_view_t *v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, "/dev/urandom", MM_VIEW_READ, MM_BACKEND_MMAP, 0, 4096),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(vopen(&v, "/dev/urandom", MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 4096),
            MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  ASSERT_OK(vopen(&v, "/dev/urandom", MM_VIEW_READ, MM_BACKEND_AUTO, 0, 4096));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), 4096);
  const unsigned char *d = mm_view_data(v);
  int nonzero = 0;
  for (int i = 0; i < 4096; i++) nonzero += d[i] != 0;
  ASSERT(nonzero > 3000);
  ASSERT_OK(mm_view_close(v));
  ASSERT_OK(vopen(&v, "/dev/urandom", MM_VIEW_PRIVATE, MM_BACKEND_READ, 0, 1));
  ASSERT_EQ(mm_view_size(v), 1);
  ASSERT_OK(mm_view_close(v));
}

/* ------------------------------------------------------------------------ */
/* modes                                                                    */

TEST(view_adv_private_stores_never_reach_the_file_in_either_backend) {
  uint64_t P = pg(), size = 4 * P + 9;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ};
  for (int b = 0; b < 2; b++) {
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, MM_VIEW_PRIVATE, backends[b], P - 1, 2 * P + 2));
    unsigned char *d = mm_view_data(v);
    memset(d, 0xee, 2 * P + 2);
    unsigned char src[10];
    memset(src, 0x11, sizeof src);
    ASSERT_OK(mm_view_write(v, 2 * P + 2 - 10, src, sizeof src));
    ASSERT_EQ(d[2 * P + 1], 0x11);
    ASSERT_EQ(d[0], 0xee);
    unsigned char back[3];
    ASSERT_OK(mm_view_read(v, 0, back, 3));
    ASSERT(back[0] == 0xee && back[2] == 0xee);
    /* a concurrent read view and a plain pread see the file untouched */
    mm_view_t *r = NULL;
    ASSERT_OK(vopen(&r, path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
    CHECK_PATTERN(mm_view_data(r), 0, size, "read view beside private view");
    ASSERT_OK(mm_view_close(r));
    CHECK_FILE(path, size, 0, 0, 0);
    /* nothing to sync for a private view, and syncing must not leak it */
    ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
    CHECK_FILE(path, size, 0, 0, 0);
    ASSERT_OK(mm_view_close(v));
    CHECK_FILE(path, size, 0, 0, 0);
  }
}

TEST(view_adv_write_view_stores_reach_the_file_at_unaligned_offset) {
  uint64_t P = pg(), size = 4 * P + 9;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  uint64_t off = P - 1, len = P + 2;
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, off, len));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_MMAP);
  ASSERT_EQ(mm_view_size(v), len);
  ASSERT_EQ(mm_view_slack(v), expected_slack(off, len));
  CHECK_PATTERN(mm_view_data(v), off, len, "write view before stores");
  memset(mm_view_data(v), 0xab, len);
  /* the page cache at once: a separate read of the file sees it, no sync */
  CHECK_FILE(path, size, off, off + len, 0xab);
  /* and a separate mapped view too */
  mm_view_t *r = NULL;
  ASSERT_OK(vopen(&r, path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  ASSERT_EQ(((unsigned char *)mm_view_data(r))[off], 0xab);
  ASSERT_EQ(((unsigned char *)mm_view_data(r))[off - 1], mm_test_byte(off - 1));
  ASSERT_EQ(((unsigned char *)mm_view_data(r))[off + len],
            mm_test_byte(off + len));
  ASSERT_OK(mm_view_close(r));
  /* guarded writes land too */
  unsigned char src[4] = {1, 2, 3, 4};
  ASSERT_OK(mm_view_write(v, len - 4, src, 4));
  ASSERT_RC(mm_view_write(v, len - 3, src, 4), MM_ERANGE);
  ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_view_close(v));
  int fd = open(path, O_RDONLY);
  unsigned char got[6];
  ASSERT_EQ(pread(fd, got, 6, (off_t)(off + len - 5)), 6);
  close(fd);
  ASSERT_EQ(got[0], 0xab);
  ASSERT(!memcmp(got + 1, src, 4));
  ASSERT_EQ(got[5], mm_test_byte(off + len));
}

TEST(view_adv_read_view_rejects_guarded_writes_and_pointer_stores_fault) {
  uint64_t P = pg(), size = 2 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ};
  for (int b = 0; b < 2; b++) {
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, MM_VIEW_READ, backends[b], 3, 0));
    unsigned char src[2] = {0, 0};
    ASSERT_RC(mm_view_write(v, 0, src, 2), -EBADF);
    CHECK_PATTERN(mm_view_data(v), 3, size - 3, "read view after -EBADF");
    ASSERT_OK(mm_view_close(v));
  }
  CHECK_FILE(path, size, 0, 0, 0);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);
    *(volatile unsigned char *)mm_view_data(v) = 1;
    _exit(0);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
  ASSERT_OK(mm_view_close(v));
  CHECK_FILE(path, size, 0, 0, 0);
}

/* Reading: WRITE is "always mapped", so asking for WRITE with the read
 * backend is contradictory options - it must fail (we accept -EINVAL or
 * MM_ENOTMAPPABLE), never hand out a buffer whose stores are lost. */
TEST(view_adv_bad_options_and_paths_fail_clearly_with_out_null) {
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 1000);
  mm_view_t *v = JUNK_VIEW;
  int rc = vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_READ, 0, 0);
  ASSERT(rc == -EINVAL || rc == MM_ENOTMAPPABLE);
  ASSERT(v == NULL);
  struct {
    int mode, backend, access;
    unsigned flags;
  } bad[] = {
      {3, 0, 0, 0},
      {-1, 0, 0, 0},
      {0, 3, 0, 0},
      {0, -1, 0, 0},
      {0, 0, 3, 0},
      {0, 0, -1, 0},
      {0, 0, 0, 1u << 9},
      {0, 0, 0, 1u << 31},
      {MM_VIEW_READ, 0, 0, MM_VIEW_CREATE},    /* CREATE is WRITE-only */
      {MM_VIEW_PRIVATE, 0, 0, MM_VIEW_CREATE}, /* CREATE is WRITE-only */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mm_view_opts_t o = {0};
    o.mode = bad[i].mode;
    o.backend = bad[i].backend;
    o.access = bad[i].access;
    o.flags = bad[i].flags;
    v = JUNK_VIEW;
    rc = mm_view_open(&v, path, &o);
    if (rc != -EINVAL)
      FAIL("bad option set %zu: got %s, want EINVAL", i, mm_errname(rc));
    ASSERT(v == NULL);
  }
  /* CREATE in a bad mode must not create the file either */
  const char *nf = mm_test_path("never");
  mm_view_opts_t o = {0};
  o.flags = MM_VIEW_CREATE;
  v = JUNK_VIEW;
  ASSERT_RC(mm_view_open(&v, nf, &o), -EINVAL);
  ASSERT(access(nf, F_OK) != 0);
  v = JUNK_VIEW;
  ASSERT_RC(mm_view_open(&v, mm_test_path("missing"), NULL), -ENOENT);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  rc = mm_view_open(&v, mm_test_dir(), NULL);
  ASSERT(rc < 0);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(mm_view_open_fd(&v, -1, NULL), -EBADF);
  ASSERT(v == NULL);
  v = JUNK_VIEW;
  ASSERT_RC(mm_view_open_fd(&v, 1000000, NULL), -EBADF);
  ASSERT(v == NULL);
  CHECK_FILE(path, 1000, 0, 0, 0);
}

TEST(view_adv_create_honours_perm_excl_and_nofollow) {
  umask(0);
  const char *path = mm_test_path("new");
  mm_view_opts_t o = {0};
  o.mode = MM_VIEW_WRITE;
  o.flags = MM_VIEW_CREATE;
  o.perm = 0640;
  mm_view_t *v = NULL;
  ASSERT_OK(mm_view_open(&v, path, &o));
  ASSERT_EQ(mm_view_size(v), 0);
  ASSERT(mm_view_data(v) != NULL);
  struct stat st;
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0640);
  ASSERT_EQ(st.st_size, 0);
  ASSERT_OK(mm_view_resize(v, 10, MM_RESIZE_MAYMOVE));
  memcpy(mm_view_data(v), "0123456789", 10);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(file_size(path), 10);

  /* perm 0 means 0600 */
  const char *p2 = mm_test_path("new2");
  o.perm = 0;
  ASSERT_OK(mm_view_open(&v, p2, &o));
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(stat(p2, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);

  /* CREATE without EXCL opens an existing file as it is */
  ASSERT_OK(mm_view_open(&v, path, &o));
  ASSERT_EQ(mm_view_size(v), 10);
  ASSERT(!memcmp(mm_view_data(v), "0123456789", 10));
  ASSERT_OK(mm_view_close(v));

  /* EXCL on an existing file: -EEXIST, file untouched */
  o.flags = MM_VIEW_CREATE | MM_VIEW_EXCL;
  v = JUNK_VIEW;
  ASSERT_RC(mm_view_open(&v, path, &o), -EEXIST);
  ASSERT(v == NULL);
  ASSERT_EQ(file_size(path), 10);

  /* O_NOFOLLOW: a symlink is refused, and its target left alone */
  const char *link = mm_test_path("link");
  ASSERT_EQ(symlink(path, link), 0);
  o.flags = MM_VIEW_CREATE;
  v = JUNK_VIEW;
  ASSERT_RC(mm_view_open(&v, link, &o), -ELOOP);
  ASSERT(v == NULL);
  ASSERT_EQ(file_size(path), 10);
}

/* ------------------------------------------------------------------------ */
/* file descriptors and mapping counts                                      */

TEST(view_adv_read_and_private_views_hold_no_fd_under_low_rlimit_nofile) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 2 * P + 3);
  int fds0 = count_fds();
  struct rlimit rl = {(rlim_t)fds0 + 3, (rlim_t)fds0 + 3};
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  enum { N = 400 };
  static mm_view_t *views[3 * N];
  int k = 0;
  for (int i = 0; i < N; i++) {
    int rc = vopen(&views[k++], path, MM_VIEW_READ, MM_BACKEND_MMAP, 1, 0);
    if (rc) FAIL("READ/mmap view %d: %s", i, mm_errname(rc));
    rc = vopen(&views[k++], path, MM_VIEW_PRIVATE, MM_BACKEND_MMAP,
               (uint64_t)i % P, 0);
    if (rc) FAIL("PRIVATE/mmap view %d: %s", i, mm_errname(rc));
    rc = vopen(&views[k++], path, MM_VIEW_READ, MM_BACKEND_READ, 2, 0);
    if (rc) FAIL("READ/read view %d: %s", i, mm_errname(rc));
  }
  ASSERT_EQ(count_fds(), fds0);
  for (int i = 0; i < k; i++) {
    uint64_t off = i % 3 == 0 ? 1 : i % 3 == 1 ? (uint64_t)(i / 3) % P : 2;
    CHECK_PATTERN(mm_view_data(views[i]), off, 2 * P + 3 - off, "many views");
    ASSERT_OK(mm_view_close(views[i]));
  }
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(count_maps_of(path), 0);
}

TEST(view_adv_write_view_keeps_one_fd_and_open_fd_never_closes_callers) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 2 * P);
  int fds0 = count_fds();
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  ASSERT_EQ(count_fds(), fds0 + 1);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(count_fds(), fds0);

  /* open_fd: the caller's descriptor survives a view's close */
  int fd = open(path, O_RDWR);
  ASSERT(fd >= 0);
  ASSERT_OK(vopen_fd(&v, fd, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  ASSERT_OK(mm_view_close(v));
  ASSERT(fcntl(fd, F_GETFD) >= 0);
  /* a WRITE view keeps its own duplicate: it still resizes after the
   * caller closed theirs */
  ASSERT_OK(vopen_fd(&v, fd, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  ASSERT_EQ(close(fd), 0);
  ASSERT_OK(mm_view_resize(v, 3 * P, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(file_size(path), 3 * P);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(count_fds(), fds0);

  /* PRIVATE on a read-only descriptor is fine */
  fd = open(path, O_RDONLY);
  ASSERT(fd >= 0);
  ASSERT_OK(vopen_fd(&v, fd, MM_VIEW_PRIVATE, MM_BACKEND_MMAP, 0, 0));
  memset(mm_view_data(v), 0, 10);
  ASSERT_OK(mm_view_close(v));
  close(fd);
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(count_maps_of(path), 0);
}

/* The file can be mapped - just not shared-writable through a read-only
 * descriptor. The header lists -EACCES among the -errno results from
 * open/mmap, and keeps MM_ENOTMAPPABLE for "something that cannot be mapped"
 * (pipes, sockets, ...); a regular file is not that. We accept -EACCES
 * (what mmap says) or -EBADF (a check of the descriptor's access mode). */
TEST(view_adv_write_view_of_readonly_fd_is_eacces_not_enotmappable) {
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 3 * pg());
  int fd = open(path, O_RDONLY);
  ASSERT(fd >= 0);
  int fds0 = count_fds();
  mm_view_t *v = JUNK_VIEW;
  int rc = vopen_fd(&v, fd, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0);
  if (rc != -EACCES && rc != -EBADF)
    FAIL("WRITE view of O_RDONLY fd: got %s (%s), want EACCES or EBADF",
         mm_errname(rc), mm_strerror(rc));
  ASSERT(v == NULL);
  ASSERT(fcntl(fd, F_GETFD) >= 0);
  ASSERT_EQ(count_fds(), fds0);
  /* the same descriptor maps fine read-only: it *is* mappable */
  ASSERT_OK(vopen_fd(&v, fd, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  ASSERT_OK(mm_view_close(v));
  close(fd);
  CHECK_FILE(path, 3 * pg(), 0, 0, 0);
}

/* A write-sealed memfd can be mapped read-only but not shared-writable:
 * mmap fails with EPERM. That is a permission error from mmap, not "cannot
 * be memory-mapped". */
TEST(view_adv_write_view_of_write_sealed_memfd_is_eperm_not_enotmappable) {
  int fd = (int)syscall(SYS_memfd_create, "adv", 0x2u /* MFD_ALLOW_SEALING */);
  if (fd < 0) SKIP("memfd_create: %s", strerror(errno));
  unsigned char buf[5000];
  fill_pattern(buf, 0, sizeof buf);
  write_all(fd, buf, sizeof buf);
  if (fcntl(fd, 1033 /* F_ADD_SEALS */, 0x0008 /* F_SEAL_WRITE */) != 0)
    SKIP("F_ADD_SEALS: %s", strerror(errno));
  mm_view_t *v = JUNK_VIEW;
  int rc = vopen_fd(&v, fd, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0);
  if (rc != -EPERM)
    FAIL("WRITE view of write-sealed memfd: got %s (%s), want EPERM",
         mm_errname(rc), mm_strerror(rc));
  ASSERT(v == NULL);
  ASSERT_OK(vopen_fd(&v, fd, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  CHECK_PATTERN(mm_view_data(v), 0, sizeof buf, "sealed memfd");
  ASSERT_OK(mm_view_close(v));
  close(fd);
}

/* mmap's errno comes back as -errno ("Errors: -errno from ... mmap"), and
 * only ENODEV - the kernel's "this file does not support mmap" - becomes
 * MM_ENOTMAPPABLE for a forced mapping.
 * Reading: with AUTO, a regular file whose mmap says ENODEV is read instead,
 * "transparently", like any other thing that cannot be mapped. */
TEST(view_adv_mmap_errno_passes_through_and_only_enodev_is_unmappable) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 2 * P + 1);
  int errs[] = {EACCES, EPERM, EAGAIN, ENOMEM, EOVERFLOW};
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  char bad[1024] = "";
  for (int m = 0; m < 3; m++) {
    for (int e = 0; e < 5; e++) {
      mm_view_t *v = JUNK_VIEW;
      mm__fault_set(MM_SYS_MMAP, 1, errs[e], 0);
      int rc = vopen(&v, path, modes[m], MM_BACKEND_MMAP, 1, 0);
      mm__fault_clear();
      if (rc != -errs[e]) {
        size_t l = strlen(bad);
        snprintf(bad + l, sizeof bad - l, " [mode %d: mmap %s -> %s]",
                 modes[m], mm_errname(-errs[e]), mm_errname(rc));
      }
      ASSERT(v == NULL);
    }
    mm_view_t *v = JUNK_VIEW;
    mm__fault_set(MM_SYS_MMAP, 1, ENODEV, 0);
    ASSERT_RC(vopen(&v, path, modes[m], MM_BACKEND_MMAP, 1, 0),
              MM_ENOTMAPPABLE);
    mm__fault_clear();
    ASSERT(v == NULL);
  }
  mm_view_opts_t o = {0};
  o.threshold = 1;
  o.offset = 1;
  mm_view_t *v = NULL;
  mm__fault_set(MM_SYS_MMAP, 1, ENODEV, 1);
  int rc = mm_view_open(&v, path, &o);
  mm__fault_clear();
  if (rc != 0) FAIL("AUTO on a file refusing mmap: %s", mm_errname(rc));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  CHECK_PATTERN(mm_view_data(v), 1, 2 * P, "AUTO fallback to read");
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(count_maps_of(path), 0);
  if (bad[0]) FAIL("mmap errno not passed through:%s", bad);
}

/* Reading: "For streams the view consumes what it reads" implies that for a
 * regular file it does not: the caller's file position is left alone, and
 * the view's range comes from opts.offset, not from that position. */
TEST(view_adv_open_fd_on_regular_file_keeps_the_callers_file_position) {
  uint64_t P = pg(), size = 3 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int fd = open(path, O_RDWR);
  ASSERT(fd >= 0);
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ, MM_BACKEND_AUTO};
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  for (int m = 0; m < 2; m++)
    for (int b = 0; b < 3; b++) {
      ASSERT_EQ(lseek(fd, 100, SEEK_SET), 100);
      mm_view_t *v = NULL;
      ASSERT_OK(vopen_fd(&v, fd, modes[m], backends[b], 5, 0));
      ASSERT_EQ(mm_view_size(v), size - 5);
      CHECK_PATTERN(mm_view_data(v), 5, size - 5, "open_fd view");
      ASSERT_OK(mm_view_close(v));
      ASSERT_EQ(lseek(fd, 0, SEEK_CUR), 100);
    }
  mm_view_t *v = NULL;
  ASSERT_EQ(lseek(fd, 7, SEEK_SET), 7);
  ASSERT_OK(vopen_fd(&v, fd, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  ASSERT_OK(mm_view_resize(v, size + 10, MM_RESIZE_MAYMOVE));
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(lseek(fd, 0, SEEK_CUR), 7);
  close(fd);
  /* an O_PATH descriptor can be fstat'ed but not read or mapped */
  fd = open(path, O_PATH);
  ASSERT(fd >= 0);
  v = JUNK_VIEW;
  int rc = vopen_fd(&v, fd, MM_VIEW_READ, MM_BACKEND_AUTO, 0, 0);
  if (rc != -EBADF) FAIL("O_PATH fd: got %s, want EBADF", mm_errname(rc));
  ASSERT(v == NULL);
  close(fd);
}

static long read_long_file(const char *p) {
  FILE *f = fopen(p, "r");
  if (!f) return -1;
  long x = -1;
  if (fscanf(f, "%ld", &x) != 1) x = -1;
  fclose(f);
  return x;
}

TEST_T(view_adv_map_count_exhaustion_is_mm_emapcount, 120) {
  long maxmaps = read_long_file("/proc/sys/vm/max_map_count");
  if (maxmaps < 0 || maxmaps > 2000000)
    SKIP("vm.max_map_count is %ld", maxmaps);
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_test_write_file(path, P);
  /* Fill the map table: split a PROT_NONE reservation with single-page
   * PROT_READ islands until the kernel refuses. */
  size_t npages = (size_t)maxmaps * 2 + 16;
  unsigned char *res = mmap(NULL, npages * P, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT(res != MAP_FAILED);
  size_t islands = 0;
  size_t i;
  for (i = 1; i + 1 < npages; i += 2) {
    if (mprotect(res + i * P, P, PROT_READ) != 0) {
      ASSERT_EQ(errno, ENOMEM);
      break;
    }
    islands++;
  }
  ASSERT(i + 1 < npages); /* we did hit the limit */
  /* free a few slots: drop the last 40 islands */
  for (size_t k = 0; k < 40; k++) {
    i -= 2;
    ASSERT_EQ(munmap(res + i * P, P), 0);
  }
  enum { MAXV = 400 };
  static mm_view_t *views[MAXV];
  int n = 0, rc = 0;
  while (n < MAXV) {
    rc = vopen(&views[n], path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0);
    if (rc != 0) break;
    n++;
  }
  if (rc != MM_EMAPCOUNT)
    FAIL("after %d views: got %s (%s), want MM_EMAPCOUNT", n, mm_errname(rc),
         mm_strerror(rc));
  ASSERT(strstr(mm_strerror(rc), "max_map_count") != NULL);
  ASSERT(n >= 5);
  ASSERT(views[n] == NULL);
  for (int k = 0; k < n; k++) {
    CHECK_PATTERN(mm_view_data(views[k]), 0, P, "view near map limit");
    ASSERT_OK(mm_view_close(views[k]));
  }
  /* the failed attempt leaked nothing: as many views fit again */
  int again = 0;
  while (again < n) {
    rc = vopen(&views[again], path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0);
    if (rc != 0) break;
    again++;
  }
  if (again < n) FAIL("only %d of %d views fit again: %s", again, n,
                      mm_errname(rc));
  for (int k = 0; k < again; k++) ASSERT_OK(mm_view_close(views[k]));
  munmap(res, npages * P);
}

/* ------------------------------------------------------------------------ */
/* advise, populate, lock, sync                                             */

TEST(view_adv_advise_any_byte_range_and_reject_bad_ranges_and_advice) {
  uint64_t P = pg(), size = 4 * P + 10;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  for (int m = 0; m < 3; m++) {
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, modes[m], MM_BACKEND_MMAP, 1, 0));
    uint64_t n = mm_view_size(v);
    for (int adv = MM_ADVISE_NORMAL; adv <= MM_ADVISE_HUGEPAGE; adv++) {
      uint64_t rs[][2] = {{0, 0}, {1, 1}, {P - 2, 3}, {P - 1, 1}, {n - 1, 1},
                          {n - 1, 0}, {3, n - 3}, {0, n}};
      for (size_t r = 0; r < sizeof rs / sizeof rs[0]; r++) {
        int rc = mm_view_advise(v, rs[r][0], rs[r][1], adv);
        if (rc != 0 && !(adv == MM_ADVISE_HUGEPAGE && rc == -EINVAL))
          FAIL("advise %d [%" PRIu64 ", +%" PRIu64 ") mode %d: %s", adv,
               rs[r][0], rs[r][1], modes[m], mm_errname(rc));
      }
      ASSERT_RC(mm_view_advise(v, n + 1, 0, adv), MM_ERANGE);
      ASSERT_RC(mm_view_advise(v, 0, n + 1, adv), MM_ERANGE);
      ASSERT_RC(mm_view_advise(v, n, 1, adv), MM_ERANGE);
      ASSERT_RC(mm_view_advise(v, 1, UINT64_MAX, adv), MM_ERANGE);
      ASSERT_RC(mm_view_advise(v, UINT64_MAX, 2, adv), MM_ERANGE);
    }
    ASSERT_RC(mm_view_advise(v, 0, 0, 6), -EINVAL);
    ASSERT_RC(mm_view_advise(v, 0, 0, -1), -EINVAL);
    ASSERT_RC(mm_view_advise(v, 0, 0, 99), -EINVAL);
    /* a kernel refusal comes back */
    mm__fault_set(MM_SYS_MADVISE, 1, EINVAL, 1);
    ASSERT_RC(mm_view_advise(v, 0, 0, MM_ADVISE_WILLNEED), -EINVAL);
    mm__fault_clear();
    /* DONTNEED on a READ or WRITE view loses nothing */
    if (modes[m] != MM_VIEW_PRIVATE)
      CHECK_PATTERN(mm_view_data(v), 1, n, "after advice");
    ASSERT_OK(mm_view_close(v));
  }
  CHECK_FILE(path, size, 0, 0, 0);
  /* read backend: nothing to act on, returns 0 */
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_READ, 1, 0));
  for (int adv = MM_ADVISE_NORMAL; adv <= MM_ADVISE_HUGEPAGE; adv++)
    ASSERT_OK(mm_view_advise(v, 1, 1, adv));
  CHECK_PATTERN(mm_view_data(v), 1, size - 1, "read backend after advice");
  ASSERT_OK(mm_view_close(v));
}

/* DONTNEED on a PRIVATE view reverts the pages it covers to the file. The
 * view starts at file offset 1, so view byte P-1 is file page 1: the
 * advice range must be translated by the offset. */
TEST(view_adv_dontneed_on_private_view_reverts_exactly_the_covered_pages) {
  uint64_t P = pg(), size = 3 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_PRIVATE, MM_BACKEND_MMAP, 1, 0));
  unsigned char *d = mm_view_data(v);
  uint64_t n = mm_view_size(v);
  memset(d, 0xaa, n);
  ASSERT_OK(mm_view_advise(v, P - 1, P, MM_ADVISE_DONTNEED));
  for (uint64_t i = 0; i < n; i++) {
    unsigned char want = (i >= P - 1 && i < 2 * P - 1) ? mm_test_byte(i + 1)
                                                       : 0xaa;
    if (d[i] != want)
      FAIL("view byte %" PRIu64 " is 0x%02x, want 0x%02x", i, d[i], want);
  }
  ASSERT_OK(mm_view_close(v));
  CHECK_FILE(path, size, 0, 0, 0);
}

TEST(view_adv_populate_and_lock_over_unaligned_ranges_keep_contents) {
  uint64_t P = pg(), size = 4 * P + 10;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  for (int m = 0; m < 3; m++) {
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, modes[m], MM_BACKEND_MMAP, P - 1, 0));
    uint64_t n = mm_view_size(v);
    uint64_t rs[][2] = {{0, 0}, {1, 1}, {P - 2, 3}, {n - 1, 1}, {n - 1, 0}};
    for (size_t r = 0; r < sizeof rs / sizeof rs[0]; r++) {
      ASSERT_OK(mm_view_populate(v, rs[r][0], rs[r][1]));
      ASSERT_OK(mm_view_lock(v, rs[r][0], rs[r][1]));
      ASSERT_OK(mm_view_unlock(v, rs[r][0], rs[r][1]));
    }
    ASSERT_RC(mm_view_populate(v, n + 1, 0), MM_ERANGE);
    ASSERT_RC(mm_view_populate(v, 0, n + 1), MM_ERANGE);
    ASSERT_RC(mm_view_populate(v, 2, UINT64_MAX - 1), MM_ERANGE);
    /* Reading: lock/unlock work "over any byte range" like the others, so
     * a range outside the view is MM_ERANGE there too. */
    ASSERT_RC(mm_view_lock(v, n + 1, 0), MM_ERANGE);
    ASSERT_RC(mm_view_lock(v, 1, UINT64_MAX), MM_ERANGE);
    ASSERT_RC(mm_view_unlock(v, 0, n + 1), MM_ERANGE);
    /* Reading: populate falls back to touching pages "where the kernel
     * lacks" MADV_POPULATE_*, which shows as EINVAL from madvise. */
    mm__fault_set(MM_SYS_MADVISE, 1, EINVAL, 1);
    ASSERT_OK(mm_view_populate(v, 0, 0));
    mm__fault_clear();
    /* kernel errors from mlock come back */
    mm__fault_set(MM_SYS_MLOCK, 1, ENOMEM, 0);
    ASSERT_RC(mm_view_lock(v, 0, 0), -ENOMEM);
    mm__fault_set(MM_SYS_MLOCK, 1, EAGAIN, 0);
    ASSERT_RC(mm_view_lock(v, 1, 1), -EAGAIN);
    mm__fault_clear();
    CHECK_PATTERN(mm_view_data(v), P - 1, n, "after populate/lock");
    ASSERT_OK(mm_view_close(v));
    CHECK_FILE(path, size, 0, 0, 0);
  }
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_READ, 0, 0));
  ASSERT_OK(mm_view_populate(v, 0, 0));
  ASSERT_OK(mm_view_populate(v, 5, 7));
  ASSERT_OK(mm_view_close(v));
}

static int drop_cap_ipc_lock(void) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) != 0) return -1;
  d[0].effective &= ~(1u << CAP_IPC_LOCK);
  d[0].permitted &= ~(1u << CAP_IPC_LOCK);
  d[0].inheritable &= ~(1u << CAP_IPC_LOCK);
  if (syscall(SYS_capset, &h, d) != 0) return -1;
  return 0;
}

TEST(view_adv_lock_past_rlimit_memlock_is_enomem_or_eperm) {
  uint64_t P = pg(), size = 1 << 20;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
#ifdef MM_ADV_ASAN
  /* AddressSanitizer intercepts mlock() and makes it a no-op */
  SKIP("mlock is a no-op under AddressSanitizer");
#endif
  if (drop_cap_ipc_lock() != 0) SKIP("cannot drop CAP_IPC_LOCK");
  struct rlimit rl = {64 << 10, 64 << 10};
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_MMAP, 3, 0));
  int rc = mm_view_lock(v, 0, 0);
  if (rc != -ENOMEM && rc != -EPERM)
    FAIL("lock 1 MiB under 64 KiB RLIMIT_MEMLOCK: got %s", mm_errname(rc));
  ASSERT_OK(mm_view_lock(v, 1, P));
  ASSERT_OK(mm_view_unlock(v, 1, P));
  CHECK_PATTERN(mm_view_data(v), 3, size - 3, "after lock");
  ASSERT_OK(mm_view_close(v));
}

TEST(view_adv_sync_any_range_and_return_msync_errors) {
  uint64_t P = pg(), size = 3 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, P + 3, 0));
  uint64_t n = mm_view_size(v);
  ((unsigned char *)mm_view_data(v))[5] = 0x77;
  ASSERT_OK(mm_view_sync(v, 5, 1, MM_SYNC_WAIT));
  ASSERT_OK(mm_view_sync(v, 5, 1, MM_SYNC_ASYNC));
  ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_view_sync(v, n - 1, 1, MM_SYNC_WAIT));
  ASSERT_OK(mm_view_sync(v, P - 4, 2, MM_SYNC_WAIT));
  ASSERT_RC(mm_view_sync(v, n + 1, 0, MM_SYNC_WAIT), MM_ERANGE);
  ASSERT_RC(mm_view_sync(v, 0, n + 1, MM_SYNC_WAIT), MM_ERANGE);
  ASSERT_RC(mm_view_sync(v, 1, UINT64_MAX, MM_SYNC_WAIT), MM_ERANGE);
  ASSERT_RC(mm_view_sync(v, UINT64_MAX, 1, MM_SYNC_WAIT), MM_ERANGE);
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 0);
  ASSERT_RC(mm_view_sync(v, 0, 0, MM_SYNC_WAIT), -EIO);
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 0);
  ASSERT_RC(mm_view_sync(v, 7, 3, MM_SYNC_WAIT), -EIO);
  mm__fault_clear();
  ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_view_close(v));
  CHECK_FILE(path, size, P + 3 + 5, P + 3 + 6, 0x77);
  /* READ and PRIVATE: nothing to write back, 0 */
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  for (int m = 0; m < 2; m++) {
    ASSERT_OK(vopen(&v, path, modes[m], MM_BACKEND_MMAP, 1, 0));
    ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
    ASSERT_OK(mm_view_sync(v, 3, 1, MM_SYNC_ASYNC));
    ASSERT_OK(mm_view_close(v));
  }
}

TEST(view_adv_close_returns_sync_on_close_error_and_still_releases_all) {
  uint64_t P = pg(), size = 2 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int fds0 = count_fds();
  mm_view_opts_t o = {0};
  o.mode = MM_VIEW_WRITE;
  o.flags = MM_VIEW_SYNC_ON_CLOSE;
  o.offset = 1;
  mm_view_t *v = NULL;
  ASSERT_OK(mm_view_open(&v, path, &o));
  ((unsigned char *)mm_view_data(v))[0] = 0x42;
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 1);
  ASSERT_RC(mm_view_close(v), -EIO);
  mm__fault_clear();
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(count_maps_of(path), 0);
  CHECK_FILE(path, size, 1, 2, 0x42);

  /* a successful sync-on-close returns 0 */
  ASSERT_OK(mm_view_open(&v, path, &o));
  unsigned long before = mm__sys_count(MM_SYS_MSYNC);
  ASSERT_OK(mm_view_close(v));
  ASSERT(mm__sys_count(MM_SYS_MSYNC) > before);

  /* without the flag close writes nothing back itself: no msync, and an
   * armed msync failure cannot surface */
  o.flags = 0;
  ASSERT_OK(mm_view_open(&v, path, &o));
  ((unsigned char *)mm_view_data(v))[1] = 0x43;
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 1);
  before = mm__sys_count(MM_SYS_MSYNC);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(mm__sys_count(MM_SYS_MSYNC), before);
  mm__fault_clear();
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(count_maps_of(path), 0);

  /* Reading: on a PRIVATE or READ view the flag has nothing to sync
   * ("For READ and PRIVATE views there is nothing to write"): if such a
   * view opens, its close returns 0 and private stores stay private. */
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  for (int m = 0; m < 2; m++) {
    mm_test_write_file(path, size);
    o.mode = modes[m];
    o.flags = MM_VIEW_SYNC_ON_CLOSE;
    v = JUNK_VIEW;
    int rc = mm_view_open(&v, path, &o);
    if (rc == -EINVAL) {
      ASSERT(v == NULL);
      continue;
    }
    ASSERT_OK(rc);
    if (modes[m] == MM_VIEW_PRIVATE) memset(mm_view_data(v), 0x44, 100);
    mm__fault_set(MM_SYS_MSYNC, 1, EIO, 1);
    ASSERT_OK(mm_view_close(v));
    mm__fault_clear();
    CHECK_FILE(path, size, 0, 0, 0);
  }
}

TEST(view_adv_close_returns_kept_fd_close_error_and_close_null_is_zero) {
  ASSERT_OK(mm_view_close(NULL));
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 5000);
  int fds0 = count_fds();
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  mm__fault_set(MM_SYS_CLOSE, 1, EIO, 0);
  ASSERT_RC(mm_view_close(v), -EIO);
  mm__fault_clear();
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(count_maps_of(path), 0);
  /* READ views keep no descriptor: an armed close failure cannot surface
   * from their close */
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  mm__fault_set(MM_SYS_CLOSE, 1, EIO, 1);
  ASSERT_OK(mm_view_close(v));
  mm__fault_clear();
}

/* ------------------------------------------------------------------------ */
/* resize                                                                   */

static void check_zero(const void *p, uint64_t n, const char *what, int line) {
  const unsigned char *b = p;
  for (uint64_t i = 0; i < n; i++)
    if (b[i])
      mm_test_fail(__FILE__, line, "%s: byte %" PRIu64 " is 0x%02x, want 0",
                   what, i, b[i]);
}
#define CHECK_ZERO(p, n, what) check_zero((p), (n), (what), __LINE__)

TEST(view_adv_resize_grow_preserves_content_and_zero_fills_new_bytes) {
  uint64_t P = pg(), size = P + 100;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  uint64_t sizes[] = {P + 101, 2 * P, 2 * P + 1, 5 * P + 7, 64 * P + 3};
  uint64_t cur = size;
  for (int i = 0; i < 5; i++) {
    ASSERT_OK(mm_view_resize(v, sizes[i], MM_RESIZE_MAYMOVE));
    ASSERT_EQ(mm_view_size(v), sizes[i]);
    ASSERT_EQ(file_size(path), sizes[i]);
    ASSERT_EQ(mm_view_slack(v), expected_slack(0, sizes[i]));
    unsigned char *d = mm_view_data(v);
    CHECK_PATTERN(d, 0, size, "grown view, old part");
    CHECK_ZERO(d + size, sizes[i] - size, "grown view, new part");
    /* the new part is real, shared file memory */
    d[sizes[i] - 1] = 0x99;
    d[sizes[i] - 1] = 0;
    cur = sizes[i];
  }
  unsigned char *d = mm_view_data(v);
  d[cur - 1] = 0x5c;
  ASSERT_OK(mm_view_close(v));
  int fd = open(path, O_RDONLY);
  unsigned char c;
  ASSERT_EQ(pread(fd, &c, 1, (off_t)(cur - 1)), 1);
  ASSERT_EQ(c, 0x5c);
  close(fd);
}

TEST(view_adv_resize_shrink_then_grow_reads_zero_not_old_bytes) {
  uint64_t P = pg(), size = 3 * P + 50;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  ASSERT_OK(mm_view_resize(v, 10, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(mm_view_size(v), 10);
  ASSERT_EQ(file_size(path), 10);
  CHECK_PATTERN(mm_view_data(v), 0, 10, "shrunk view");
  ASSERT_OK(mm_view_resize(v, size, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(file_size(path), size);
  CHECK_PATTERN(mm_view_data(v), 0, 10, "regrown view, kept part");
  CHECK_ZERO((unsigned char *)mm_view_data(v) + 10, size - 10,
             "regrown view, dropped part");
  /* shrink to zero: an empty view, file empty; then back */
  ASSERT_OK(mm_view_resize(v, 0, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(mm_view_size(v), 0);
  ASSERT(mm_view_data(v) != NULL);
  ASSERT_EQ(file_size(path), 0);
  ASSERT_OK(mm_view_resize(v, P, MM_RESIZE_MAYMOVE));
  CHECK_ZERO(mm_view_data(v), P, "grown from empty");
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(file_size(path), P);
  /* without MAYMOVE, shrinking never moves the view */
  mm_test_write_file(path, size);
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  void *before = mm_view_data(v);
  ASSERT_OK(mm_view_resize(v, P + 1, 0));
  ASSERT(mm_view_data(v) == before);
  ASSERT_EQ(file_size(path), P + 1);
  CHECK_PATTERN(mm_view_data(v), 0, P + 1, "shrunk in place");
  ASSERT_OK(mm_view_close(v));
}

TEST(view_adv_resize_unaligned_offset_view_sets_file_to_offset_plus_size) {
  uint64_t P = pg(), size = 2 * P + 9, off = P + 3;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  /* explicit length reaching exactly the end of file: still "ends at the
   * end of the file", so resizable */
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, off, size - off));
  ASSERT_OK(mm_view_resize(v, 3 * P, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(file_size(path), off + 3 * P);
  ASSERT_EQ(mm_view_size(v), 3 * P);
  ASSERT_EQ((uintptr_t)mm_view_data(v) % P, off % P);
  ASSERT_EQ(mm_view_slack(v), expected_slack(off, 3 * P));
  CHECK_PATTERN(mm_view_data(v), off, size - off, "offset view grown");
  CHECK_ZERO((unsigned char *)mm_view_data(v) + (size - off),
             3 * P - (size - off), "offset view new bytes");
  ASSERT_OK(mm_view_resize(v, 1, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(file_size(path), off + 1);
  ASSERT_EQ(*(unsigned char *)mm_view_data(v), mm_test_byte(off));
  ASSERT_OK(mm_view_close(v));
  /* the bytes before the offset were never touched */
  int fd = open(path, O_RDONLY);
  unsigned char *buf = malloc(off);
  ASSERT_EQ(pread(fd, buf, off, 0), (ssize_t)off);
  close(fd);
  CHECK_PATTERN(buf, 0, off, "bytes before the view");
  free(buf);
}

TEST(view_adv_resize_rejects_read_private_non_tail_and_wrapping_sizes) {
  uint64_t P = pg(), size = 3 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE};
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ};
  for (int m = 0; m < 2; m++)
    for (int b = 0; b < 2; b++) {
      mm_view_t *v = NULL;
      ASSERT_OK(vopen(&v, path, modes[m], backends[b], 0, 0));
      ASSERT_RC(mm_view_resize(v, 4 * P, MM_RESIZE_MAYMOVE), -EINVAL);
      ASSERT_RC(mm_view_resize(v, P, MM_RESIZE_MAYMOVE), -EINVAL);
      ASSERT_EQ(mm_view_size(v), size);
      ASSERT_OK(mm_view_close(v));
      ASSERT_EQ(file_size(path), size);
    }
  /* a WRITE view that stops short of the end of file */
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, size - 1));
  ASSERT_RC(mm_view_resize(v, size, MM_RESIZE_MAYMOVE), -EINVAL);
  ASSERT_RC(mm_view_resize(v, 10, MM_RESIZE_MAYMOVE), -EINVAL);
  ASSERT_EQ(mm_view_size(v), size - 1);
  ASSERT_OK(mm_view_close(v));
  CHECK_FILE(path, size, 0, 0, 0);
  /* offset + new_size wraps around 2^64: must fail and change nothing
   * (a wrapped sum would truncate the file to a few bytes) */
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, P, 0));
  void *d0 = mm_view_data(v);
  uint64_t bad[] = {UINT64_MAX - P + 1, UINT64_MAX - P + 11, UINT64_MAX,
                    (uint64_t)1 << 63, (uint64_t)1 << 62};
  for (int i = 0; i < 5; i++) {
    int rc = mm_view_resize(v, bad[i], MM_RESIZE_MAYMOVE);
    if (rc >= 0) FAIL("resize to %" PRIu64 " succeeded", bad[i]);
    ASSERT_EQ(mm_view_size(v), size - P);
    ASSERT(mm_view_data(v) == d0);
    CHECK_FILE(path, size, 0, 0, 0);
  }
  CHECK_PATTERN(mm_view_data(v), P, size - P, "after refused resizes");
  ASSERT_OK(mm_view_close(v));
}

TEST(view_adv_resize_without_maymove_when_blocked_is_enomem_and_no_change) {
  uint64_t P = pg(), size = 2 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  unsigned char *d = mm_view_data(v);
  /* put a mapping of our own right after the view */
  unsigned char *end = d + size;
  unsigned char *blk = mmap(end, P, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                            -1, 0);
  int blocked = blk == end;
  if (blk != MAP_FAILED && blk != end) {
    munmap(blk, P); /* old kernel ignored NOREPLACE as a hint */
    SKIP("MAP_FIXED_NOREPLACE unsupported");
  }
  if (blocked) memset(blk, 0x3c, P);
  int rc = mm_view_resize(v, 4 * P, 0);
  if (blocked) {
    ASSERT_RC(rc, -ENOMEM);
  } else {
    /* something (perhaps a reservation) already sits there */
    ASSERT(rc == 0 || rc == -ENOMEM);
  }
  if (rc == -ENOMEM) {
    ASSERT(mm_view_data(v) == d);
    ASSERT_EQ(mm_view_size(v), size);
    ASSERT_EQ(file_size(path), size);
    CHECK_PATTERN(d, 0, size, "view after refused in-place grow");
  } else {
    ASSERT(mm_view_data(v) == d);
    ASSERT_EQ(file_size(path), 4 * P);
  }
  if (blocked)
    for (uint64_t i = 0; i < P; i++)
      if (blk[i] != 0x3c) FAIL("resize clobbered the neighbouring mapping");
  /* with MAYMOVE it may move and succeeds */
  ASSERT_OK(mm_view_resize(v, 4 * P, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(mm_view_size(v), 4 * P);
  ASSERT_EQ(file_size(path), 4 * P);
  CHECK_PATTERN(mm_view_data(v), 0, size, "moved view");
  CHECK_ZERO((unsigned char *)mm_view_data(v) + size, 2 * P, "moved view tail");
  if (blocked)
    for (uint64_t i = 0; i < P; i++)
      if (blk[i] != 0x3c) FAIL("resize clobbered the neighbouring mapping");
  ASSERT_OK(mm_view_close(v));
}

/* Only a view that ends at the end of the file can be resized. If another
 * process appended to the file, the view no longer ends there: -EINVAL, and
 * the other process's bytes must survive (a resize that trusted its own
 * idea of the file size would truncate them away). */
TEST(view_adv_resize_after_another_process_appended_is_einval_and_keeps_data) {
  uint64_t P = pg(), size = 2 * P;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  /* another process appends 100 pattern bytes */
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    int fd = open(path, O_WRONLY | O_APPEND);
    unsigned char b[100];
    fill_pattern(b, size, 100);
    _exit(fd >= 0 && write(fd, b, 100) == 100 ? 0 : 1);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  uint64_t tries[] = {size + 10, size - 10, size + 3 * P};
  for (int i = 0; i < 3; i++) {
    int rc = mm_view_resize(v, tries[i], MM_RESIZE_MAYMOVE);
    if (rc != -EINVAL)
      FAIL("resize to %" PRIu64 " after an append: got %s, file now %" PRIu64
           " bytes (was %" PRIu64 ")",
           tries[i], mm_errname(rc), file_size(path), size + 100);
    ASSERT_EQ(mm_view_size(v), size);
  }
  ASSERT_OK(mm_view_close(v));
  CHECK_FILE(path, size + 100, 0, 0, 0);
}

/* Growing past RLIMIT_FSIZE (with SIGXFSZ ignored by the application) is
 * -EFBIG, and the view and file are as they were. */
TEST(view_adv_resize_past_rlimit_fsize_is_efbig_and_changes_nothing) {
  uint64_t P = pg(), size = 2 * P + 1;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = {1 << 20, 1 << 20};
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &rl), 0);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  void *d0 = mm_view_data(v);
  ASSERT_RC(mm_view_resize(v, 2 << 20, MM_RESIZE_MAYMOVE), -EFBIG);
  ASSERT_EQ(mm_view_size(v), size);
  ASSERT(mm_view_data(v) == d0);
  CHECK_FILE(path, size, 0, 0, 0);
  ASSERT_OK(mm_view_resize(v, 1 << 20, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(file_size(path), 1 << 20);
  ASSERT_OK(mm_view_close(v));
}

/* "On failure the view and the file are as they were." Fail each system
 * call a resize makes, one at a time, on grow and on shrink. A library may
 * recover from some failures (e.g. mremap -> a fresh mmap) and succeed;
 * then the result must be complete. Otherwise the injected errno comes back
 * and nothing changed. fallocate's -ENOSPC must always come back. */
static void resize_fault_case(const char *path, uint64_t size, uint64_t off,
                              uint64_t new_size, int op, unsigned long nth,
                              int err, unsigned flags) {
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, off, 0));
  void *d0 = mm_view_data(v);
  int fds0 = count_fds();
  mm__fault_set(op, nth, err, 0);
  int rc = mm_view_resize(v, new_size, flags);
  mm__fault_clear();
  if (rc == 0) {
    if (op == MM_SYS_FALLOCATE || op == MM_SYS_FTRUNCATE)
      FAIL("resize %" PRIu64 "->%" PRIu64 " ignored a failed %s #%lu",
           size - off, new_size, mm__sys_name(op), nth);
    ASSERT_EQ(mm_view_size(v), new_size);
    ASSERT_EQ(file_size(path), off + new_size);
  } else {
    if (rc != -err)
      FAIL("resize %" PRIu64 "->%" PRIu64 " with %s #%lu failing: got %s,"
           " want %s",
           size - off, new_size, mm__sys_name(op), nth, mm_errname(rc),
           mm_errname(-err));
    if (mm_view_size(v) != size - off)
      FAIL("failed resize (%s #%lu) changed the view size to %" PRIu64,
           mm__sys_name(op), nth, mm_view_size(v));
    if (file_size(path) != size)
      FAIL("failed resize (%s #%lu) changed the file size to %" PRIu64,
           mm__sys_name(op), nth, file_size(path));
    if (mm_view_data(v) != d0)
      FAIL("failed resize (%s #%lu) moved the view", mm__sys_name(op), nth);
    CHECK_PATTERN(mm_view_data(v), off, size - off, "view after failed resize");
    CHECK_FILE(path, size, 0, 0, 0);
  }
  ASSERT_EQ(count_fds(), fds0);
  /* the view still works */
  ASSERT_OK(mm_view_resize(v, size - off + 1, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(file_size(path), size + 1);
  ASSERT_OK(mm_view_close(v));
}

static int err_for(int op) {
  switch (op) {
  case MM_SYS_FALLOCATE: return ENOSPC;
  case MM_SYS_FTRUNCATE: return EIO;
  case MM_SYS_FSTAT: return EIO;
  default: return ENOMEM;
  }
}

TEST_T(view_adv_resize_fault_injection_leaves_view_and_file_unchanged, 60) {
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  int ops[] = {MM_SYS_FALLOCATE, MM_SYS_FTRUNCATE, MM_SYS_MREMAP,
               MM_SYS_MMAP, MM_SYS_MUNMAP, MM_SYS_FSTAT};
  struct {
    uint64_t size, off, new_size;
    unsigned flags;
  } cases[] = {
      {2 * P + 5, 0, 6 * P + 1, MM_RESIZE_MAYMOVE}, /* grow */
      {2 * P + 5, 3, 40 * P, MM_RESIZE_MAYMOVE},    /* grow, offset view */
      {2 * P + 5, 0, 2 * P + 9, 0},                 /* grow within the page */
      {6 * P + 5, 0, P + 1, MM_RESIZE_MAYMOVE},     /* shrink */
      {6 * P + 5, 1, 5, 0},                         /* shrink, offset view */
  };
  int tried = 0;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    /* dry run: how many calls of each op does this resize make? */
    unsigned long counts[MM_SYS__COUNT];
    mm_test_write_file(path, cases[c].size);
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, cases[c].off, 0));
    for (int op = 0; op < MM_SYS__COUNT; op++) counts[op] = mm__sys_count(op);
    ASSERT_OK(mm_view_resize(v, cases[c].new_size, cases[c].flags));
    for (int op = 0; op < MM_SYS__COUNT; op++)
      counts[op] = mm__sys_count(op) - counts[op];
    ASSERT_OK(mm_view_close(v));
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
      for (unsigned long nth = 1; nth <= counts[ops[o]]; nth++) {
        resize_fault_case(path, cases[c].size, cases[c].off,
                          cases[c].new_size, ops[o], nth, err_for(ops[o]),
                          cases[c].flags);
        tried++;
      }
  }
  ASSERT(tried >= 3);
}

/* ------------------------------------------------------------------------ */
/* fault injection on open                                                  */

struct open_cfg {
  const char *name;
  int mode, backend, use_fd, fd_flags;
  uint64_t off, len;
};

static int open_with_cfg(const struct open_cfg *c, const char *path,
                         mm_view_t **v) {
  if (!c->use_fd) return vopen(v, path, c->mode, c->backend, c->off, c->len);
  int fd = open(path, c->fd_flags);
  ASSERT(fd >= 0);
  int rc = vopen_fd(v, fd, c->mode, c->backend, c->off, c->len);
  ASSERT(fcntl(fd, F_GETFD) >= 0); /* still the caller's */
  close(fd);
  return rc;
}

static int open_err_for(int op) {
  switch (op) {
  case MM_SYS_OPEN: return EACCES;
  case MM_SYS_FSTAT: return EIO;
  case MM_SYS_MMAP: return ENOMEM;
  case MM_SYS_READ: return EIO;
  case MM_SYS_PREAD: return EIO;
  case MM_SYS_FCNTL: return EMFILE;
  case MM_SYS_MADVISE: return EINVAL;
  default: return EIO;
  }
}

TEST_T(view_adv_open_fault_injection_returns_errno_and_leaks_nothing, 60) {
  uint64_t P = pg(), size = 3 * P + 5;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  struct open_cfg cfgs[] = {
      {"read/mmap", MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0, 1, 0},
      {"read/read", MM_VIEW_READ, MM_BACKEND_READ, 0, 0, P - 1, 2 * P},
      {"private/mmap", MM_VIEW_PRIVATE, MM_BACKEND_MMAP, 0, 0, 0, 0},
      {"private/read", MM_VIEW_PRIVATE, MM_BACKEND_READ, 0, 0, 0, 0},
      {"write", MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0, 2, 0},
      {"fd read/mmap", MM_VIEW_READ, MM_BACKEND_MMAP, 1, O_RDONLY, 1, 0},
      {"fd read/read", MM_VIEW_READ, MM_BACKEND_READ, 1, O_RDONLY, 1, 0},
      {"fd write", MM_VIEW_WRITE, MM_BACKEND_AUTO, 1, O_RDWR, 0, 0},
  };
  int ops[] = {MM_SYS_OPEN, MM_SYS_FSTAT, MM_SYS_MMAP, MM_SYS_READ,
               MM_SYS_PREAD, MM_SYS_FCNTL};
  int tried = 0;
  for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
    unsigned long counts[MM_SYS__COUNT];
    mm_view_t *v = NULL;
    for (int op = 0; op < MM_SYS__COUNT; op++) counts[op] = mm__sys_count(op);
    ASSERT_OK(open_with_cfg(&cfgs[c], path, &v));
    for (int op = 0; op < MM_SYS__COUNT; op++)
      counts[op] = mm__sys_count(op) - counts[op];
    uint64_t want = mm_view_size(v);
    ASSERT_OK(mm_view_close(v));
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
      for (unsigned long nth = 1; nth <= counts[ops[o]]; nth++) {
        int err = open_err_for(ops[o]);
        int fds0 = count_fds();
        v = JUNK_VIEW;
        mm__fault_set(ops[o], nth, err, 0);
        int rc = open_with_cfg(&cfgs[c], path, &v);
        mm__fault_clear();
        tried++;
        if (rc == 0) {
          /* a read that fails can't be papered over; allow only a full,
           * correct view otherwise */
          if (ops[o] == MM_SYS_READ || ops[o] == MM_SYS_PREAD ||
              ops[o] == MM_SYS_OPEN || ops[o] == MM_SYS_FSTAT)
            FAIL("%s: %s #%lu failed but open succeeded", cfgs[c].name,
                 mm__sys_name(ops[o]), nth);
          ASSERT_EQ(mm_view_size(v), want);
          if (cfgs[c].backend != MM_BACKEND_AUTO)
            ASSERT_EQ(mm_view_backend(v), cfgs[c].backend);
          CHECK_PATTERN(mm_view_data(v), cfgs[c].off, want, "recovered view");
          ASSERT_OK(mm_view_close(v));
        } else {
          if (rc != -err)
            FAIL("%s: %s #%lu failing with %s: got %s", cfgs[c].name,
                 mm__sys_name(ops[o]), nth, mm_errname(-err), mm_errname(rc));
          if (v != NULL) FAIL("%s: *out not NULL after failure", cfgs[c].name);
        }
        if (count_fds() != fds0)
          FAIL("%s: %s #%lu failing leaked a descriptor", cfgs[c].name,
               mm__sys_name(ops[o]), nth);
        if (count_maps_of(path) != 0)
          FAIL("%s: %s #%lu failing leaked a mapping", cfgs[c].name,
               mm__sys_name(ops[o]), nth);
      }
  }
  ASSERT(tried >= 8);
  CHECK_FILE(path, size, 0, 0, 0);
}

TEST(view_adv_stream_read_failure_returns_errno_and_frees_the_buffer) {
  unsigned long nths[] = {1, 2, 5};
  for (int i = 0; i < 3; i++) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t w = spawn_writer(p[0], p[1], 0, 300000);
    close(p[1]);
    int fds0 = count_fds();
    mm__fault_clear();
    mm__fault_set(MM_SYS_READ, nths[i], EIO, 0);
    mm_view_t *v = JUNK_VIEW;
    int rc = vopen_fd(&v, p[0], MM_VIEW_READ, MM_BACKEND_AUTO, 0, 0);
    unsigned long calls = mm__sys_count(MM_SYS_READ);
    mm__fault_clear();
    if (calls >= nths[i]) {
      ASSERT_RC(rc, -EIO);
      ASSERT(v == NULL);
    } else {
      ASSERT_OK(rc);
      ASSERT_OK(mm_view_close(v));
    }
    ASSERT_EQ(count_fds(), fds0);
    close(p[0]);
    reap(w);
  }
}

/* ------------------------------------------------------------------------ */
/* truncation and the guard                                                 */

struct touch {
  uint64_t at;
  int ret;
  unsigned sum;
};

static int fn_touch(void *arg, void *data, uint64_t size) {
  struct touch *t = arg;
  (void)size;
  t->sum += ((volatile unsigned char *)data)[t->at];
  return t->ret;
}

/* a 4-page file mapped, then truncated to 1 page by another process */
static mm_view_t *truncated_view(const char *path, int mode) {
  uint64_t P = pg();
  mm_test_write_file(path, 4 * P);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, mode, MM_BACKEND_MMAP, 0, 0));
  truncate_in_child(path, P);
  return v;
}

TEST(view_adv_guarded_read_and_write_after_child_truncate_are_etruncated) {
  SKIP_UNDER_TSAN();
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_view_t *v = truncated_view(path, MM_VIEW_READ);
  ASSERT_EQ(mm_view_size(v), 4 * P);
  unsigned char *buf = malloc(4 * P);
  ASSERT(buf);
  ASSERT_OK(mm_view_read(v, 10, buf, P - 10));
  CHECK_PATTERN(buf, 10, P - 10, "still-present page");
  ASSERT_RC(mm_view_read(v, 2 * P, buf, 1), MM_ETRUNCATED);
  ASSERT_RC(mm_view_read(v, P - 5, buf, 10), MM_ETRUNCATED);
  ASSERT_RC(mm_view_read(v, 0, buf, 4 * P), MM_ETRUNCATED);
  ASSERT_RC(mm_view_read(v, 4 * P - 1, buf, 1), MM_ETRUNCATED);
  /* range errors still win over truncation */
  ASSERT_RC(mm_view_read(v, 4 * P, buf, 1), MM_ERANGE);
  ASSERT_OK(mm_view_close(v));

  mm_view_t *w = truncated_view(path, MM_VIEW_WRITE);
  memset(buf, 0x61, 16);
  ASSERT_OK(mm_view_write(w, 0, buf, 16));
  ASSERT_RC(mm_view_write(w, 3 * P, buf, 16), MM_ETRUNCATED);
  ASSERT_RC(mm_view_write(w, P - 8, buf, 16), MM_ETRUNCATED);
  ASSERT_RC(mm_view_populate(w, 2 * P, P), MM_ETRUNCATED);
  ASSERT_OK(mm_view_populate(w, 0, P));
  ASSERT_OK(mm_view_close(w));
  ASSERT_EQ(file_size(path), P); /* nothing grew the file back */
  {
    /* the straddling write may have stored a prefix; check what's before */
    int fd = open(path, O_RDONLY);
    unsigned char *fb = malloc(P);
    ASSERT_EQ(pread(fd, fb, P, 0), (ssize_t)P);
    close(fd);
    for (int i = 0; i < 16; i++) ASSERT_EQ(fb[i], 0x61);
    CHECK_PATTERN(fb + 16, 16, P - 24, "file after guarded writes");
    free(fb);
  }

  mm_view_t *p = truncated_view(path, MM_VIEW_PRIVATE);
  ASSERT_RC(mm_view_write(p, 3 * P, buf, 16), MM_ETRUNCATED);
  ASSERT_RC(mm_view_read(p, 3 * P, buf, 16), MM_ETRUNCATED);
  ASSERT_RC(mm_view_populate(p, 0, 0), MM_ETRUNCATED);
  ASSERT_OK(mm_view_close(p));

  /* a read-backend view holds its own copy: truncation cannot hurt it */
  mm_test_write_file(path, 4 * P);
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_READ, 0, 0));
  truncate_in_child(path, 0);
  ASSERT_OK(mm_view_read(v, 0, buf, 4 * P));
  CHECK_PATTERN(buf, 0, 4 * P, "read backend after truncation");
  struct touch t = {3 * P, 5, 0};
  ASSERT_EQ(mm_view_guard(v, fn_touch, &t), 5);
  ASSERT_OK(mm_view_close(v));
  free(buf);
}

TEST(view_adv_guard_returns_fn_result_or_etruncated_and_restores_mask) {
  SKIP_UNDER_TSAN();
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_view_t *v = truncated_view(path, MM_VIEW_READ);
  struct touch ok = {7, -12345, 0};
  ASSERT_EQ(mm_view_guard(v, fn_touch, &ok), -12345);
  ASSERT_EQ(ok.sum, mm_test_byte(7));
  ok.ret = 0;
  ASSERT_EQ(mm_view_guard(v, fn_touch, &ok), 0);
  ok.ret = MM_ETRUNCATED - 1;
  ASSERT_EQ(mm_view_guard(v, fn_touch, &ok), MM_ETRUNCATED - 1);
  /* many faults in a row: the handler stays installed and the mask is
   * restored every time */
  for (int i = 0; i < 2000; i++) {
    struct touch bad = {P + (uint64_t)(i % 3) * P, 1, 0};
    int rc = mm_view_guard(v, fn_touch, &bad);
    if (rc != MM_ETRUNCATED) FAIL("iteration %d: got %s", i, mm_errname(rc));
    unsigned char c;
    ASSERT_RC(mm_view_read(v, 2 * P + (uint64_t)i, &c, 1), MM_ETRUNCATED);
  }
  sigset_t cur;
  ASSERT_EQ(sigprocmask(SIG_SETMASK, NULL, &cur), 0);
  ASSERT(!sigismember(&cur, SIGBUS));
  ASSERT(!sigismember(&cur, SIGSEGV));
  ok.ret = 3;
  ASSERT_EQ(mm_view_guard(v, fn_touch, &ok), 3);
  ASSERT_OK(mm_view_close(v));
}

struct nest {
  mm_view_t *outer, *inner;
  int inner_bad, inner_ok, inner_same_bad;
  int inner_read_bad, inner_read_ok, inner_read_byte;
  int phase;
};

static int fn_nest_outer(void *arg, void *data, uint64_t size) {
  struct nest *n = arg;
  uint64_t P = pg();
  (void)size;
  struct touch bad = {2 * P, 1, 0}, good = {3, 5, 0};
  n->inner_bad = mm_view_guard(n->inner, fn_touch, &bad);
  n->phase = 1;
  n->inner_ok = mm_view_guard(n->inner, fn_touch, &good);
  n->phase = 2;
  /* nested guard on the very same view */
  n->inner_same_bad = mm_view_guard(n->outer, fn_touch, &bad);
  /* guarded copies inside a guard */
  unsigned char c;
  n->inner_read_bad = mm_view_read(n->inner, 2 * P, &c, 1);
  n->inner_read_ok = mm_view_read(n->outer, 4, &c, 1);
  n->inner_read_byte = c;
  n->phase = 3;
  /* after the inner guards returned, the outer guard must still catch */
  (void)((volatile unsigned char *)data)[3 * P];
  n->phase = 4;
  return 99;
}

TEST(view_adv_nested_guards_each_catch_their_own_truncation) {
  SKIP_UNDER_TSAN();
  const char *pa = mm_test_path("a"), *pb = mm_test_path("b");
  struct nest n = {0};
  n.outer = truncated_view(pa, MM_VIEW_READ);
  n.inner = truncated_view(pb, MM_VIEW_READ);
  int rc = mm_view_guard(n.outer, fn_nest_outer, &n);
  ASSERT_RC(rc, MM_ETRUNCATED);
  ASSERT_EQ(n.phase, 3);
  ASSERT_RC(n.inner_bad, MM_ETRUNCATED);
  ASSERT_EQ(n.inner_ok, 5);
  ASSERT_RC(n.inner_same_bad, MM_ETRUNCATED);
  ASSERT_RC(n.inner_read_bad, MM_ETRUNCATED);
  ASSERT_OK(n.inner_read_ok);
  ASSERT_EQ(n.inner_read_byte, mm_test_byte(4));
  /* and the guard machinery is sane afterwards */
  struct touch t = {1, 8, 0};
  ASSERT_EQ(mm_view_guard(n.outer, fn_touch, &t), 8);
  t.at = 2 * pg();
  ASSERT_RC(mm_view_guard(n.inner, fn_touch, &t), MM_ETRUNCATED);
  ASSERT_OK(mm_view_close(n.outer));
  ASSERT_OK(mm_view_close(n.inner));
}

struct thr {
  mm_view_t *bad, *good;
  pthread_barrier_t *bar;
  int id, errors;
  char msg[128];
};

static void *thr_guard(void *arg) {
  struct thr *t = arg;
  uint64_t P = pg();
  pthread_barrier_wait(t->bar);
  for (int i = 0; i < 500 && !t->errors; i++) {
    struct touch b = {P + (uint64_t)((i + t->id) % 3) * P, 1, 0};
    int rc = mm_view_guard(t->bad, fn_touch, &b);
    if (rc != MM_ETRUNCATED) {
      t->errors++;
      snprintf(t->msg, sizeof t->msg, "thread %d iter %d bad guard: %s",
               t->id, i, mm_errname(rc));
    }
    struct touch g = {(uint64_t)(i * 7 + t->id) % (4 * P), 1000 + t->id, 0};
    rc = mm_view_guard(t->good, fn_touch, &g);
    if (rc != 1000 + t->id || g.sum != mm_test_byte(g.at)) {
      t->errors++;
      snprintf(t->msg, sizeof t->msg, "thread %d iter %d good guard: %d",
               t->id, i, rc);
    }
    unsigned char c;
    rc = mm_view_read(t->bad, 2 * P + (uint64_t)i, &c, 1);
    if (rc != MM_ETRUNCATED) {
      t->errors++;
      snprintf(t->msg, sizeof t->msg, "thread %d iter %d read: %s", t->id, i,
               mm_errname(rc));
    }
    rc = mm_view_read(t->bad, (uint64_t)i, &c, 1);
    if (rc != 0 || c != mm_test_byte((uint64_t)i)) {
      t->errors++;
      snprintf(t->msg, sizeof t->msg, "thread %d iter %d ok read: %s", t->id,
               i, mm_errname(rc));
    }
  }
  return NULL;
}

TEST_T(view_adv_guards_in_several_threads_at_once, 60) {
  SKIP_UNDER_TSAN();
  const char *pa = mm_test_path("a"), *pb = mm_test_path("b");
  mm_view_t *bad = truncated_view(pa, MM_VIEW_READ);
  mm_test_write_file(pb, 4 * pg());
  mm_view_t *good = NULL;
  ASSERT_OK(vopen(&good, pb, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  enum { NT = 6 };
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, NT);
  pthread_t th[NT];
  struct thr ts[NT];
  for (int i = 0; i < NT; i++) {
    ts[i] = (struct thr){bad, good, &bar, i, 0, ""};
    ASSERT_EQ(pthread_create(&th[i], NULL, thr_guard, &ts[i]), 0);
  }
  for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < NT; i++)
    if (ts[i].errors) FAIL("%s", ts[i].msg);
  pthread_barrier_destroy(&bar);
  ASSERT_OK(mm_view_close(bad));
  ASSERT_OK(mm_view_close(good));
}

/* --- the application's own SIGBUS handler ------------------------------- */

static volatile sig_atomic_t app_hits;
static void *volatile app_addr;
static volatile int app_code;
static volatile pid_t app_pid;
static volatile pthread_t app_thread;
static volatile int repair_fd = -1;
static volatile uint64_t repair_size;
static __thread sigjmp_buf tls_jb;
static __thread volatile int tls_jump;

static void app_sigbus(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  if (sig != SIGBUS) return;
  app_hits++;
  app_code = si->si_code;
  app_thread = pthread_self();
  if (si->si_code <= 0) {
    app_pid = si->si_pid;
    app_addr = NULL;
  } else {
    app_addr = si->si_addr;
  }
  if (tls_jump) {
    tls_jump = 0;
    siglongjmp(tls_jb, 1);
  }
  if (repair_fd >= 0 && si->si_code > 0)
    if (ftruncate(repair_fd, (off_t)repair_size) != 0) _exit(98);
}

static void install_app_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = app_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGBUS, &sa, NULL), 0);
}

/* Use the guard once, so that it installs its handler (after ours). */
static mm_view_t *arm_guard(const char *path) {
  mm_test_write_file(path, 2 * pg());
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0));
  struct touch t = {1, 4, 0};
  ASSERT_EQ(mm_view_guard(v, fn_touch, &t), 4);
  unsigned char c;
  ASSERT_OK(mm_view_read(v, 0, &c, 1));
  return v;
}

static int fn_kill_self(void *arg, void *data, uint64_t size) {
  (void)data, (void)size;
  int how = *(int *)arg;
  if (how == 0) kill(getpid(), SIGBUS);
  else raise(SIGBUS);
  return 7 + how;
}

TEST(view_adv_sigbus_from_kill_reaches_the_applications_handler) {
  install_app_handler();
  mm_view_t *g = arm_guard(mm_test_path("g"));
  /* outside any guard */
  ASSERT_EQ(kill(getpid(), SIGBUS), 0);
  ASSERT_EQ(app_hits, 1);
  ASSERT_EQ(app_code, SI_USER);
  ASSERT_EQ(app_pid, getpid());
  /* inside a guard: kill() is not a truncation; fn runs on and returns */
  int how = 0;
  ASSERT_EQ(mm_view_guard(g, fn_kill_self, &how), 7);
  ASSERT_EQ(app_hits, 2);
  ASSERT_EQ(app_code, SI_USER);
  how = 1;
  ASSERT_EQ(mm_view_guard(g, fn_kill_self, &how), 8);
  ASSERT_EQ(app_hits, 3);
  ASSERT_EQ(app_code, SI_TKILL);
  /* sigqueue too */
  union sigval sv = {.sival_int = 1};
  ASSERT_EQ(sigqueue(getpid(), SIGBUS, sv), 0);
  ASSERT_EQ(app_hits, 4);
  ASSERT_EQ(app_code, SI_QUEUE);
  ASSERT_OK(mm_view_close(g));
}

static volatile sig_atomic_t plain_hits;
static void plain_sigbus(int sig) {
  if (sig == SIGBUS) plain_hits++;
}

TEST(view_adv_sigbus_from_kill_reaches_a_plain_sa_handler) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = plain_sigbus;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGBUS, &sa, NULL), 0);
  mm_view_t *g = arm_guard(mm_test_path("g"));
  ASSERT_EQ(kill(getpid(), SIGBUS), 0);
  ASSERT_EQ(plain_hits, 1);
  int how = 0;
  ASSERT_EQ(mm_view_guard(g, fn_kill_self, &how), 7);
  ASSERT_EQ(plain_hits, 2);
  ASSERT_OK(mm_view_close(g));
}

static int fn_touch_foreign(void *arg, void *data, uint64_t size) {
  (void)data, (void)size;
  volatile unsigned char *f = arg;
  return 40 + f[pg()];
}

TEST(view_adv_sigbus_at_an_unowned_address_reaches_the_applications_handler) {
  uint64_t P = pg();
  install_app_handler();
  mm_view_t *g = arm_guard(mm_test_path("g"));
  /* a mapping the library knows nothing about */
  const char *fp = mm_test_path("foreign");
  mm_test_write_file(fp, 2 * P);
  int fd = open(fp, O_RDWR);
  ASSERT(fd >= 0);
  unsigned char *f = mmap(NULL, 2 * P, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT(f != MAP_FAILED);
  repair_size = 2 * P;
  repair_fd = fd;
  /* outside any guard: our handler sees the fault, repairs the file, and
   * the load completes (reading the zeroes of the re-extended file) */
  truncate_in_child(fp, 0);
  ASSERT_EQ(((volatile unsigned char *)f)[P], 0);
  ASSERT_EQ(app_hits, 1);
  ASSERT(app_addr == f + P);
  ASSERT_EQ(app_code, BUS_ADRERR);
  /* inside a guard over another view: not the guard's address */
  truncate_in_child(fp, 0);
  int rc = mm_view_guard(g, fn_touch_foreign, f);
  if (rc != 40)
    FAIL("guarded fn touching a foreign mapping: guard returned %s (%d),"
         " app handler hits %d", mm_errname(rc), rc, (int)app_hits);
  ASSERT_EQ(app_hits, 2);
  ASSERT(app_addr == f + P);
  /* the guard's own view is truncated too, and fn touches the foreign
   * mapping only: still the application's */
  const char *gp = mm_test_path("g2");
  mm_view_t *t = truncated_view(gp, MM_VIEW_READ);
  truncate_in_child(fp, 0);
  rc = mm_view_guard(t, fn_touch_foreign, f);
  ASSERT_EQ(rc, 40);
  ASSERT_EQ(app_hits, 3);
  repair_fd = -1;
  ASSERT_OK(mm_view_close(t));
  /* Reading: "another address" includes another memmap view that no
   * guard covers: a guard over view g does not own view y's pages. */
  const char *yp = mm_test_path("y");
  mm_view_t *y = truncated_view(yp, MM_VIEW_READ);
  int yfd = open(yp, O_RDWR);
  ASSERT(yfd >= 0);
  repair_size = 4 * P;
  repair_fd = yfd;
  rc = mm_view_guard(g, fn_touch_foreign,
                     (unsigned char *)mm_view_data(y) + P); /* y's page 2 */
  repair_fd = -1;
  if (rc != 40)
    FAIL("guard over g, fn touching unguarded view y: guard returned %s,"
         " app handler hits %d (want 40, 4)", mm_errname(rc), (int)app_hits);
  ASSERT_EQ(app_hits, 4);
  close(yfd);
  ASSERT_OK(mm_view_close(y));
  ASSERT_OK(mm_view_close(g));
  munmap(f, 2 * P);
  close(fd);
}

struct unguarded {
  mm_view_t *v;
  atomic_int a_in_fn, b_done;
  int a_rc, b_jumped, b_survived;
};

static int fn_wait_then_touch(void *arg, void *data, uint64_t size) {
  struct unguarded *u = arg;
  (void)size;
  atomic_store(&u->a_in_fn, 1);
  while (!atomic_load(&u->b_done)) usleep(1000);
  (void)((volatile unsigned char *)data)[2 * pg()];
  return 1;
}

static void *thr_a(void *arg) {
  struct unguarded *u = arg;
  u->a_rc = mm_view_guard(u->v, fn_wait_then_touch, u);
  return NULL;
}

static void *thr_b(void *arg) {
  struct unguarded *u = arg;
  while (!atomic_load(&u->a_in_fn)) usleep(1000);
  volatile unsigned char *d = mm_view_data(u->v);
  tls_jump = 1;
  if (sigsetjmp(tls_jb, 1) == 0) {
    (void)d[3 * pg()]; /* unguarded, in a thread with no guard active */
    u->b_survived = 1;
  } else {
    u->b_jumped = 1;
  }
  tls_jump = 0;
  atomic_store(&u->b_done, 1);
  return NULL;
}

TEST(view_adv_sigbus_in_a_thread_without_guard_reaches_the_app_handler) {
  uint64_t P = pg();
  install_app_handler();
  mm_view_t *g = arm_guard(mm_test_path("g"));
  struct unguarded u;
  memset(&u, 0, sizeof u);
  u.v = truncated_view(mm_test_path("f"), MM_VIEW_READ);
  /* main thread, no guard active, touching the truncated view directly */
  volatile unsigned char *d = mm_view_data(u.v);
  tls_jump = 1;
  int jumped = 0;
  if (sigsetjmp(tls_jb, 1) == 0) {
    (void)d[2 * P];
  } else {
    jumped = 1;
  }
  tls_jump = 0;
  ASSERT(jumped);
  ASSERT_EQ(app_hits, 1);
  ASSERT(app_addr == (void *)(d + 2 * P));
  /* thread A inside a guard on the same view, thread B touching it bare */
  pthread_t a, b;
  ASSERT_EQ(pthread_create(&a, NULL, thr_a, &u), 0);
  ASSERT_EQ(pthread_create(&b, NULL, thr_b, &u), 0);
  pthread_join(b, NULL);
  pthread_join(a, NULL);
  ASSERT(u.b_jumped);
  ASSERT(!u.b_survived);
  ASSERT_EQ(app_hits, 2);
  ASSERT(app_addr == (void *)(d + 3 * P));
  ASSERT(pthread_equal(app_thread, b));
  ASSERT_RC(u.a_rc, MM_ETRUNCATED);
  ASSERT_OK(mm_view_close(u.v));
  ASSERT_OK(mm_view_close(g));
}

static int fn_kill_in_guard(void *arg, void *data, uint64_t size) {
  (void)arg, (void)data, (void)size;
  kill(getpid(), SIGBUS);
  return 0;
}

/* With the default SIGBUS disposition before the guard, a SIGBUS that is
 * not the guard's kills the process by SIGBUS "as it would have". */
TEST(view_adv_foreign_sigbus_with_default_disposition_kills_by_sigbus) {
  uint64_t P = pg();
  for (int kind = 0; kind < 4; kind++) {
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
      signal(SIGBUS, SIG_DFL); /* also replaces a sanitizer's handler */
      mm_view_t *g = arm_guard(mm_test_path(kind == 0 ? "g0" : kind == 1 ? "g1"
                                            : kind == 2 ? "g2" : "g3"));
      if (kind == 0) {
        kill(getpid(), SIGBUS);
      } else if (kind == 1) {
        const char *fp = mm_test_path("foreign");
        mm_test_write_file(fp, 2 * P);
        int fd = open(fp, O_RDONLY);
        unsigned char *f = mmap(NULL, 2 * P, PROT_READ, MAP_SHARED, fd, 0);
        if (f == MAP_FAILED) _exit(3);
        truncate_in_child(fp, 0);
        (void)((volatile unsigned char *)f)[P];
      } else if (kind == 2) {
        mm_view_t *t = truncated_view(mm_test_path("t"), MM_VIEW_READ);
        (void)((volatile unsigned char *)mm_view_data(t))[2 * P];
      } else {
        (void)mm_view_guard(g, fn_kill_in_guard, NULL);
      }
      _exit(0);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS))
      FAIL("case %d: child %s %d, want killed by SIGBUS", kind,
           WIFSIGNALED(st) ? "killed by signal" : "exited with",
           WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
  }
}

/* An application that ignores SIGBUS before the guard: a SIGBUS sent with
 * kill() is "passed to the handler that was installed before" - i.e.
 * ignored, in and out of a guard - and the guard keeps working. */
TEST(view_adv_sigbus_ignored_before_guard_stays_ignored_for_kill) {
  signal(SIGBUS, SIG_IGN);
  mm_view_t *g = arm_guard(mm_test_path("g"));
  ASSERT_EQ(kill(getpid(), SIGBUS), 0);
  ASSERT_EQ(raise(SIGBUS), 0);
  int how = 0;
  ASSERT_EQ(mm_view_guard(g, fn_kill_self, &how), 7);
  how = 1;
  ASSERT_EQ(mm_view_guard(g, fn_kill_self, &how), 8);
  mm_view_t *t = truncated_view(mm_test_path("t"), MM_VIEW_READ);
  struct touch b = {2 * pg(), 1, 0};
  ASSERT_RC(mm_view_guard(t, fn_touch, &b), MM_ETRUNCATED);
  ASSERT_OK(mm_view_close(t));
  ASSERT_OK(mm_view_close(g));
}

TEST(view_adv_guard_keeps_working_in_a_forked_child_and_its_threads) {
  SKIP_UNDER_TSAN();
  uint64_t P = pg();
  mm_view_t *g = arm_guard(mm_test_path("g"));
  mm_view_t *t = truncated_view(mm_test_path("t"), MM_VIEW_READ);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    struct touch b = {2 * P, 1, 0};
    if (mm_view_guard(t, fn_touch, &b) != MM_ETRUNCATED) _exit(2);
    unsigned char c;
    if (mm_view_read(t, 3 * P, &c, 1) != MM_ETRUNCATED) _exit(3);
    const char *gp = mm_test_path("good");
    mm_test_write_file(gp, 4 * P);
    mm_view_t *good = NULL;
    if (vopen(&good, gp, MM_VIEW_READ, MM_BACKEND_MMAP, 0, 0) != 0) _exit(4);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct thr ts[2] = {{t, good, &bar, 0, 0, ""}, {t, good, &bar, 1, 0, ""}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
      if (pthread_create(&th[i], NULL, thr_guard, &ts[i]) != 0) _exit(5);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++)
      if (ts[i].errors) {
        fprintf(stderr, "# child: %s\n", ts[i].msg);
        _exit(6);
      }
    _exit(0);
  }
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    FAIL("child: %s %d", WIFSIGNALED(st) ? "signal" : "exit",
         WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
  ASSERT_OK(mm_view_close(t));
  ASSERT_OK(mm_view_close(g));
}

/* A range bigger than the address space allows: -ENOMEM (or -EFBIG),
 * nothing leaked, and a normal view works right after. */
TEST(view_adv_view_larger_than_rlimit_as_is_enomem_and_leaks_nothing) {
#ifdef MM_ADV_ASAN
  SKIP("RLIMIT_AS cannot be lowered under AddressSanitizer");
#else
  const char *path = mm_test_path("big");
  make_sparse(path, (uint64_t)1 << 30);
  struct rlimit rl = {(rlim_t)256 << 20, (rlim_t)256 << 20};
  ASSERT_EQ(setrlimit(RLIMIT_AS, &rl), 0);
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ, MM_BACKEND_AUTO};
  int modes[] = {MM_VIEW_READ, MM_VIEW_PRIVATE, MM_VIEW_WRITE};
  int fds0 = count_fds();
  for (int m = 0; m < 3; m++)
    for (int b = 0; b < 3; b++) {
      if (modes[m] == MM_VIEW_WRITE && backends[b] == MM_BACKEND_READ)
        continue;
      mm_view_t *v = JUNK_VIEW;
      int rc = vopen(&v, path, modes[m], backends[b], 1, 0);
      if (rc != -ENOMEM && rc != -EFBIG)
        FAIL("1 GiB view under 256 MiB RLIMIT_AS, mode %d backend %d: %s",
             modes[m], backends[b], mm_errname(rc));
      ASSERT(v == NULL);
    }
  ASSERT_EQ(count_fds(), fds0);
  ASSERT_EQ(count_maps_of(path), 0);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_READ, MM_BACKEND_MMAP, 1, 1 << 20));
  ASSERT_OK(mm_view_close(v));
#endif
}

/* The guard must follow a view that resize moved or grew: a truncation
 * under the new range is still caught (a guard that only knew the address
 * range from open time would let the SIGBUS kill the process). */
TEST(view_adv_guard_catches_truncation_after_resize_moved_or_grew_the_view) {
  SKIP_UNDER_TSAN();
  uint64_t P = pg();
  const char *path = mm_test_path("f");
  mm_test_write_file(path, 2 * P);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  unsigned char *d0 = mm_view_data(v);
  /* block growth in place so that MAYMOVE really moves */
  unsigned char *blk = mmap(d0 + 2 * P, P, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                            -1, 0);
  ASSERT_OK(mm_view_resize(v, 8 * P, MM_RESIZE_MAYMOVE));
  unsigned char *d1 = mm_view_data(v);
  if (blk == d0 + 2 * P) ASSERT(d1 != d0);
  truncate_in_child(path, P);
  unsigned char c;
  ASSERT_RC(mm_view_read(v, 6 * P, &c, 1), MM_ETRUNCATED);
  ASSERT_RC(mm_view_write(v, 7 * P, &c, 1), MM_ETRUNCATED);
  struct touch t = {5 * P, 1, 0};
  ASSERT_RC(mm_view_guard(v, fn_touch, &t), MM_ETRUNCATED);
  ASSERT_OK(mm_view_read(v, 0, &c, 1));
  ASSERT_EQ(c, mm_test_byte(0));
  ASSERT_OK(mm_view_close(v));
  if (blk != MAP_FAILED) munmap(blk, P);
}

static const char *race_path;
static uint64_t race_size;
static int race_done;
static void race_truncate(void *arg, int op, long result) {
  (void)arg, (void)result;
  if (op == MM_SYS_FSTAT && !race_done) {
    race_done = 1;
    if (truncate(race_path, (off_t)race_size) != 0) _exit(97);
  }
}

/* The file shrinks between the library's fstat and its read/mmap. The read
 * backend must not hand out bytes that were never in the file: either an
 * error (MM_ETRUNCATED or MM_ERANGE) or a view of exactly the bytes there
 * are. The mmap backend may succeed (the guard then reports the
 * truncation), but must never die of SIGBUS while opening (MM_VIEW_POPULATE
 * included). */
TEST(view_adv_file_shrinking_between_fstat_and_read_gives_no_phantom_bytes) {
  SKIP_UNDER_TSAN();
  uint64_t P = pg(), size = 8 * P;
  const char *path = mm_test_path("f");
  race_path = path;
  struct {
    int backend;
    unsigned flags;
    uint64_t off, len;
  } cases[] = {
      {MM_BACKEND_READ, 0, 0, 0},     {MM_BACKEND_READ, 0, 3, 0},
      {MM_BACKEND_READ, 0, 0, 7 * P}, {MM_BACKEND_READ, 0, 1, P},
      {MM_BACKEND_MMAP, 0, 0, 0},     {MM_BACKEND_MMAP, MM_VIEW_POPULATE, 0, 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    mm_test_write_file(path, size);
    race_size = 2 * P + 5;
    race_done = 0;
    mm_view_opts_t o = {0};
    o.backend = cases[c].backend;
    o.flags = cases[c].flags;
    o.offset = cases[c].off;
    o.length = cases[c].len;
    mm_view_t *v = JUNK_VIEW;
    mm__sys_trace(race_truncate, NULL);
    int rc = mm_view_open(&v, path, &o);
    mm__sys_trace(NULL, NULL);
    if (!race_done) SKIP("the library did not fstat");
    uint64_t now_avail = race_size - cases[c].off;
    uint64_t want_len = cases[c].len ? cases[c].len : size - cases[c].off;
    if (rc != 0) {
      if (rc != MM_ETRUNCATED && rc != MM_ERANGE)
        FAIL("case %zu: got %s", c, mm_errname(rc));
      if (cases[c].len && cases[c].len <= now_avail)
        FAIL("case %zu: range still inside the file but got %s", c,
             mm_errname(rc));
      ASSERT(v == NULL);
      continue;
    }
    if (cases[c].backend == MM_BACKEND_READ) {
      uint64_t n = mm_view_size(v);
      if (n != (want_len < now_avail ? want_len : now_avail))
        FAIL("case %zu: read view of %" PRIu64 " bytes from a file now holding"
             " %" PRIu64 " bytes past the offset (asked %" PRIu64 ")",
             c, n, now_avail, want_len);
      CHECK_PATTERN(mm_view_data(v), cases[c].off, n, "raced read view");
    } else {
      unsigned char b;
      ASSERT_OK(mm_view_read(v, 0, &b, 1));
      ASSERT_RC(mm_view_read(v, 5 * P, &b, 1), MM_ETRUNCATED);
    }
    ASSERT_OK(mm_view_close(v));
  }
}

/* A real full disk: a 256 KiB tmpfs in a private mount namespace. Growing
 * past the free space gives -ENOSPC from resize (space is allocated first),
 * the file and view stay as they were, and a grow that fits leaves every
 * new byte writable without SIGBUS. */
TEST(view_adv_resize_on_full_tmpfs_is_enospc_and_changes_nothing) {
  uint64_t P = pg();
  if (unshare(CLONE_NEWNS) != 0) SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
  if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    SKIP("make / private: %s", strerror(errno));
  char mnt[600];
  snprintf(mnt, sizeof mnt, "%s/mnt", mm_test_dir());
  ASSERT_EQ(mkdir(mnt, 0700), 0);
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k") != 0)
    SKIP("mount tmpfs: %s", strerror(errno));
  char path[700];
  snprintf(path, sizeof path, "%s/f", mnt);
  mm_test_write_file(path, 16 * P);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  void *d0 = mm_view_data(v);
  int rc = mm_view_resize(v, 1 << 20, MM_RESIZE_MAYMOVE);
  if (rc != -ENOSPC) {
    umount2(mnt, MNT_DETACH);
    FAIL("grow past a full tmpfs: got %s, want ENOSPC", mm_errname(rc));
  }
  ASSERT_EQ(mm_view_size(v), 16 * P);
  ASSERT(mm_view_data(v) == d0);
  ASSERT_EQ(file_size(path), 16 * P);
  CHECK_PATTERN(mm_view_data(v), 0, 16 * P, "view after ENOSPC");
  /* a grow that fits: every new byte is backed */
  ASSERT_OK(mm_view_resize(v, 32 * P, MM_RESIZE_MAYMOVE));
  memset((unsigned char *)mm_view_data(v) + 16 * P, 0x7e, 16 * P);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(file_size(path), 32 * P);
  umount2(mnt, MNT_DETACH);
}

/* Reading: on a file system without fallocate (EOPNOTSUPP) growing still
 * works - the header lists no EOPNOTSUPP for resize. If the library does
 * return it, nothing may have changed. */
TEST(view_adv_resize_when_fallocate_is_unsupported_still_grows_or_changes_nothing) {
  uint64_t P = pg(), size = 2 * P + 3;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  mm_view_t *v = NULL;
  ASSERT_OK(vopen(&v, path, MM_VIEW_WRITE, MM_BACKEND_AUTO, 0, 0));
  mm__fault_set(MM_SYS_FALLOCATE, 1, EOPNOTSUPP, 1);
  int rc = mm_view_resize(v, 5 * P, MM_RESIZE_MAYMOVE);
  mm__fault_clear();
  if (rc == 0) {
    ASSERT_EQ(mm_view_size(v), 5 * P);
    ASSERT_EQ(file_size(path), 5 * P);
    CHECK_PATTERN(mm_view_data(v), 0, size, "grown without fallocate");
    CHECK_ZERO((unsigned char *)mm_view_data(v) + size, 5 * P - size,
               "grown without fallocate, new part");
  } else {
    ASSERT_RC(rc, -EOPNOTSUPP);
    ASSERT_EQ(mm_view_size(v), size);
    CHECK_FILE(path, size, 0, 0, 0);
  }
  /* -ENOSPC from fallocate always comes back, nothing changed */
  uint64_t cur = mm_view_size(v);
  mm__fault_set(MM_SYS_FALLOCATE, 1, ENOSPC, 1);
  ASSERT_RC(mm_view_resize(v, 9 * P, MM_RESIZE_MAYMOVE), -ENOSPC);
  mm__fault_clear();
  ASSERT_EQ(mm_view_size(v), cur);
  ASSERT_EQ(file_size(path), cur);
  ASSERT_OK(mm_view_close(v));
}

/* ------------------------------------------------------------------------ */
/* guarded copies: bounds                                                   */

TEST(view_adv_guarded_copies_check_bounds_including_overflow) {
  uint64_t P = pg(), size = 2 * P + 1;
  const char *path = mm_test_path("f");
  mm_test_write_file(path, size);
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ};
  for (int b = 0; b < 2; b++) {
    mm_view_t *v = NULL;
    ASSERT_OK(vopen(&v, path, MM_VIEW_PRIVATE, backends[b], 1, 0));
    uint64_t n = mm_view_size(v);
    unsigned char buf[16] = {0};
    ASSERT_OK(mm_view_read(v, n - 16, buf, 16));
    CHECK_PATTERN(buf, 1 + n - 16, 16, "read at the end");
    /* Reading: an empty range at the end is inside the view; past it is
     * not, even if empty. */
    ASSERT_OK(mm_view_read(v, n, buf, 0));
    ASSERT_RC(mm_view_read(v, n + 1, buf, 0), MM_ERANGE);
    ASSERT_RC(mm_view_read(v, n - 15, buf, 16), MM_ERANGE);
    ASSERT_RC(mm_view_read(v, n, buf, 1), MM_ERANGE);
    ASSERT_RC(mm_view_read(v, UINT64_MAX, buf, 2), MM_ERANGE);
    ASSERT_RC(mm_view_read(v, 16, buf, SIZE_MAX - 8), MM_ERANGE);
    ASSERT_RC(mm_view_read(v, UINT64_MAX - 3, buf, 8), MM_ERANGE);
    memset(buf, 0x21, sizeof buf);
    ASSERT_RC(mm_view_write(v, n - 15, buf, 16), MM_ERANGE);
    ASSERT_RC(mm_view_write(v, UINT64_MAX, buf, 2), MM_ERANGE);
    ASSERT_RC(mm_view_write(v, 16, buf, SIZE_MAX - 8), MM_ERANGE);
    /* a refused write wrote nothing */
    CHECK_PATTERN(mm_view_data(v), 1, n, "view after refused writes");
    ASSERT_OK(mm_view_write(v, n - 16, buf, 16));
    ASSERT_EQ(((unsigned char *)mm_view_data(v))[n - 1], 0x21);
    ASSERT_OK(mm_view_close(v));
  }
  CHECK_FILE(path, size, 0, 0, 0);
}
