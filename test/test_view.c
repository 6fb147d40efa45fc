/*
 * test_view.c - file views: ranges, modes, backends, special files, limits,
 * range operations, resize, truncation safety and failure paths.
 */
#include "test.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys.h"

static size_t page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* Every byte of the view equals the file's byte at offset + i. */
static void check_bytes(mm_view_t *v, uint64_t offset) {
  const unsigned char *d = mm_view_data(v);
  for (uint64_t i = 0; i < mm_view_size(v); i++)
    if (d[i] != mm_test_byte(offset + i))
      FAIL("byte %llu of the view is %u, want %u", (unsigned long long)i, d[i],
           mm_test_byte(offset + i));
}

static uint64_t file_size(const char *path) {
  struct stat st;
  ASSERT(stat(path, &st) == 0);
  return (uint64_t)st.st_size;
}

/* Did the child die of `sig`? Under AddressSanitizer, whose own handler
 * was installed first and so is the one the guard chains to, a fatal
 * signal is reported and turned into exit status 1 instead. */
static int died_of(int st, int sig) {
  if (WIFSIGNALED(st)) return WTERMSIG(st) == sig;
#if defined(__SANITIZE_ADDRESS__)
  return WIFEXITED(st) && WEXITSTATUS(st) == 1;
#else
  return 0;
#endif
}

static int count_open_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; fd++) n += fcntl(fd, F_GETFD) >= 0;
  return n;
}

/* ---- ranges ---------------------------------------------------------- */

TEST(view_whole_file_reads_every_byte_with_each_backend) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 3 * page() + 123);
  int backends[] = {MM_BACKEND_MMAP, MM_BACKEND_READ};
  for (int i = 0; i < 2; i++) {
    mm_view_opts_t o = {.backend = backends[i]};
    mm_view_t *v;
    ASSERT_OK(mm_view_open(&v, p, &o));
    ASSERT_EQ(mm_view_backend(v), backends[i]);
    ASSERT_EQ(mm_view_size(v), 3 * page() + 123);
    check_bytes(v, 0);
    ASSERT_OK(mm_view_close(v));
  }
}

TEST(view_unaligned_range_hides_the_page_slack) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 10 * page());
  uint64_t offs[] = {1, page() - 1, page() + 7, 5 * page()};
  for (size_t i = 0; i < 4; i++) {
    mm_view_opts_t o = {.backend = MM_BACKEND_MMAP, .offset = offs[i], .length = 1000};
    mm_view_t *v;
    ASSERT_OK(mm_view_open(&v, p, &o));
    ASSERT_EQ(mm_view_size(v), 1000);
    check_bytes(v, offs[i]);
    /* The slack is what whole pages add around the 1000 bytes. */
    uint64_t start = offs[i] % page();
    uint64_t mapped = (start + 1000 + page() - 1) / page() * page();
    ASSERT_EQ(mm_view_slack(v), mapped - 1000);
    ASSERT_OK(mm_view_close(v));
  }
}

TEST(view_range_to_end_of_file_when_length_is_zero) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 5000);
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP, .offset = 4097};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_EQ(mm_view_size(v), 5000 - 4097);
  check_bytes(v, 4097);
  ASSERT_OK(mm_view_close(v));
}

TEST(view_range_past_end_of_file_is_mm_erange) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 5000);
  mm_view_t *v = (mm_view_t *)1;
  for (int b = MM_BACKEND_AUTO; b <= MM_BACKEND_READ; b++) {
    mm_view_opts_t o = {.backend = b, .offset = 5001};
    ASSERT_RC(mm_view_open(&v, p, &o), MM_ERANGE);
    ASSERT(v == NULL);
    o.offset = 4000, o.length = 1001;
    ASSERT_RC(mm_view_open(&v, p, &o), MM_ERANGE);
    o.offset = 10, o.length = UINT64_MAX - 5; /* offset + length overflows */
    ASSERT_RC(mm_view_open(&v, p, &o), MM_ERANGE);
  }
  /* Exactly at the end is an empty view, not an error. */
  mm_view_opts_t o = {.offset = 5000};
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_EQ(mm_view_size(v), 0);
  ASSERT_OK(mm_view_close(v));
}

/* ---- modes ------------------------------------------------------------ */

TEST(view_write_mode_stores_reach_the_file) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 2 * page());
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE, .offset = 100, .length = 50};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_MMAP); /* even though small */
  memcpy(mm_view_data(v), "hello", 5);
  ASSERT_OK(mm_view_write(v, 45, "world", 5));
  ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_view_close(v));
  char buf[50];
  int fd = open(p, O_RDONLY);
  ASSERT(pread(fd, buf, 50, 100) == 50);
  close(fd);
  ASSERT(!memcmp(buf, "hello", 5));
  ASSERT(!memcmp(buf + 45, "world", 5));
  ASSERT_EQ((unsigned char)buf[5], mm_test_byte(105));
}

TEST(view_private_stores_never_reach_the_file) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 2 * page());
  for (int b = MM_BACKEND_MMAP; b <= MM_BACKEND_READ; b++) {
    mm_view_opts_t o = {.mode = MM_VIEW_PRIVATE, .backend = b};
    mm_view_t *v, *r;
    ASSERT_OK(mm_view_open(&v, p, &o));
    memset(mm_view_data(v), 0xAB, (size_t)mm_view_size(v));
    ASSERT_OK(mm_view_write(v, 0, "x", 1));
    ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
    /* A second view of the file sees the original bytes. */
    mm_view_opts_t ro = {.backend = MM_BACKEND_READ};
    ASSERT_OK(mm_view_open(&r, p, &ro));
    check_bytes(r, 0);
    ASSERT_OK(mm_view_close(r));
    ASSERT_OK(mm_view_close(v));
  }
  mm_view_t *r;
  ASSERT_OK(mm_view_open(&r, p, NULL));
  check_bytes(r, 0);
  ASSERT_OK(mm_view_close(r));
}

TEST(view_read_mode_mapping_is_not_writable) {
  SKIP_UNDER_TSAN();
  const char *p = mm_test_path("f");
  mm_test_write_file(p, page());
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_RC(mm_view_write(v, 0, "x", 1), -EBADF);
  pid_t pid = fork();
  if (pid == 0) {
    ((volatile char *)mm_view_data(v))[0] = 1;
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
  ASSERT(died_of(st, SIGSEGV));
  ASSERT_OK(mm_view_close(v));
}

TEST(view_bad_options_are_einval) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 100);
  mm_view_t *v;
  mm_view_opts_t o = {.mode = 7};
  ASSERT_RC(mm_view_open(&v, p, &o), -EINVAL);
  o = (mm_view_opts_t){.backend = 9};
  ASSERT_RC(mm_view_open(&v, p, &o), -EINVAL);
  o = (mm_view_opts_t){.flags = 1u << 30};
  ASSERT_RC(mm_view_open(&v, p, &o), -EINVAL);
  o = (mm_view_opts_t){.mode = MM_VIEW_WRITE, .backend = MM_BACKEND_READ};
  ASSERT_RC(mm_view_open(&v, p, &o), -EINVAL);
  o = (mm_view_opts_t){.flags = MM_VIEW_CREATE}; /* CREATE needs WRITE */
  ASSERT_RC(mm_view_open(&v, p, &o), -EINVAL);
  ASSERT_RC(mm_view_open(&v, NULL, NULL), -EINVAL);
  ASSERT_RC(mm_view_open(NULL, p, NULL), -EINVAL);
  ASSERT_RC(mm_view_open(&v, mm_test_path("missing"), NULL), -ENOENT);
  ASSERT_RC(mm_view_open(&v, mm_test_dir(), NULL), -EISDIR);
}

TEST(view_create_makes_a_0600_file_and_grows_it_with_resize) {
  const char *p = mm_test_path("new");
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE, .flags = MM_VIEW_CREATE | MM_VIEW_EXCL};
  mm_view_t *v;
  mode_t old = umask(0);
  ASSERT_OK(mm_view_open(&v, p, &o));
  umask(old);
  struct stat st;
  ASSERT(stat(p, &st) == 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(mm_view_size(v), 0);
  ASSERT_OK(mm_view_resize(v, 3 * page() + 5, 0));
  memset(mm_view_data(v), 'z', 3 * page() + 5);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(file_size(p), 3 * page() + 5);
  /* EXCL refuses an existing file. */
  ASSERT_RC(mm_view_open(&v, p, &o), -EEXIST);
  /* CREATE does not follow a symlink at the name. */
  ASSERT(symlink(p, mm_test_path("link")) == 0);
  o.flags = MM_VIEW_CREATE;
  ASSERT_RC(mm_view_open(&v, mm_test_path("link"), &o), -ELOOP);
}

/* ---- empty files ------------------------------------------------------ */

TEST(view_empty_file_is_a_valid_view_of_length_zero) {
  const char *p = mm_test_path("empty");
  mm_test_write_file(p, 0);
  int modes[] = {MM_VIEW_READ, MM_VIEW_WRITE, MM_VIEW_PRIVATE};
  for (int m = 0; m < 3; m++) {
    for (int b = MM_BACKEND_AUTO; b <= MM_BACKEND_READ; b++) {
      if (modes[m] == MM_VIEW_WRITE && b == MM_BACKEND_READ) continue;
      mm_view_opts_t o = {.mode = modes[m], .backend = b};
      mm_view_t *v;
      ASSERT_OK(mm_view_open(&v, p, &o));
      ASSERT_EQ(mm_view_size(v), 0);
      ASSERT(mm_view_data(v) != NULL);
      ASSERT_EQ(mm_view_slack(v), 0);
      ASSERT_OK(mm_view_advise(v, 0, 0, MM_ADVISE_WILLNEED));
      ASSERT_OK(mm_view_populate(v, 0, 0));
      ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
      char c;
      ASSERT_OK(mm_view_read(v, 0, &c, 0));
      ASSERT_RC(mm_view_read(v, 0, &c, 1), MM_ERANGE);
      ASSERT_OK(mm_view_close(v));
    }
  }
}

/* ---- what cannot be mapped -------------------------------------------- */

static void write_all(int fd, const void *buf, size_t n) {
  const char *c = buf;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w <= 0) _exit(3);
    c += w, n -= (size_t)w;
  }
}

/* A child writes `n` pattern bytes to fd and exits. */
static pid_t feed(int fd, size_t n) {
  pid_t pid = fork();
  if (pid == 0) {
    unsigned char buf[4096];
    for (size_t i = 0; i < n;) {
      size_t k = n - i < sizeof buf ? n - i : sizeof buf;
      for (size_t j = 0; j < k; j++) buf[j] = mm_test_byte(i + j);
      write_all(fd, buf, k);
      i += k;
    }
    _exit(0);
  }
  return pid;
}

TEST(view_pipe_is_read_transparently_and_refuses_forced_mapping) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  pid_t pid = feed(fds[1], 300000); /* larger than a pipe's buffer */
  close(fds[1]);
  mm_view_t *v;
  ASSERT_OK(mm_view_open_fd(&v, fds[0], NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), 300000);
  check_bytes(v, 0);
  ASSERT_OK(mm_view_close(v));
  waitpid(pid, NULL, 0);
  close(fds[0]);

  ASSERT(pipe(fds) == 0);
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  ASSERT_RC(mm_view_open_fd(&v, fds[0], &o), MM_ENOTMAPPABLE);
  o = (mm_view_opts_t){.mode = MM_VIEW_WRITE};
  ASSERT_RC(mm_view_open_fd(&v, fds[0], &o), MM_ENOTMAPPABLE);
  close(fds[0]);
  close(fds[1]);
}

TEST(view_pipe_range_skips_the_offset_and_stops_at_the_length) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  pid_t pid = feed(fds[1], 10000);
  close(fds[1]);
  mm_view_opts_t o = {.offset = 1234, .length = 5000};
  mm_view_t *v;
  ASSERT_OK(mm_view_open_fd(&v, fds[0], &o));
  ASSERT_EQ(mm_view_size(v), 5000);
  check_bytes(v, 1234);
  ASSERT_OK(mm_view_close(v));
  /* The rest stays in the pipe for the caller. */
  unsigned char c;
  ASSERT(read(fds[0], &c, 1) == 1);
  ASSERT_EQ(c, mm_test_byte(6234));
  waitpid(pid, NULL, 0);
  close(fds[0]);
}

TEST(view_pipe_shorter_than_the_range_is_mm_erange) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  pid_t pid = feed(fds[1], 100);
  close(fds[1]);
  mm_view_opts_t o = {.length = 200};
  mm_view_t *v;
  ASSERT_RC(mm_view_open_fd(&v, fds[0], &o), MM_ERANGE);
  waitpid(pid, NULL, 0);
  close(fds[0]);
}

TEST(view_stream_longer_than_the_limit_is_efbig) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  pid_t pid = feed(fds[1], 100000);
  close(fds[1]);
  mm_view_opts_t o = {.stream_limit = 65536};
  mm_view_t *v;
  ASSERT_RC(mm_view_open_fd(&v, fds[0], &o), -EFBIG);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  close(fds[0]);
}

TEST(view_fifo_is_read_transparently) {
  const char *p = mm_test_path("fifo");
  ASSERT(mkfifo(p, 0600) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(p, O_WRONLY);
    if (fd < 0) _exit(2);
    pid_t w = feed(fd, 70000);
    waitpid(w, NULL, 0);
    _exit(0);
  }
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), 70000);
  check_bytes(v, 0);
  ASSERT_OK(mm_view_close(v));
  waitpid(pid, NULL, 0);
}

TEST(view_socket_is_read_transparently) {
  int sv[2];
  ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid_t pid = feed(sv[1], 50000);
  close(sv[1]);
  mm_view_t *v;
  ASSERT_OK(mm_view_open_fd(&v, sv[0], NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), 50000);
  check_bytes(v, 0);
  ASSERT_OK(mm_view_close(v));
  waitpid(pid, NULL, 0);
  close(sv[0]);
}

TEST(view_tty_is_read_transparently) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0) SKIP("no pseudo-terminals: %s", strerror(errno));
  ASSERT(grantpt(m) == 0 && unlockpt(m) == 0);
  int s = open(ptsname(m), O_RDWR | O_NOCTTY);
  ASSERT(s >= 0);
  ASSERT(write(m, "hello tty\n", 10) == 10);
  /* A tty has no end: ask for a length. The line discipline echoes and
   * translates, so ask only for what was typed. */
  mm_view_opts_t o = {.length = 6};
  mm_view_t *v;
  ASSERT_OK(mm_view_open_fd(&v, s, &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT(!memcmp(mm_view_data(v), "hello ", 6));
  ASSERT_OK(mm_view_close(v));
  o.backend = MM_BACKEND_MMAP;
  ASSERT_RC(mm_view_open_fd(&v, s, &o), MM_ENOTMAPPABLE);
  close(s);
  close(m);
}

TEST(view_procfs_file_of_size_zero_is_read_not_empty) {
  struct stat st;
  ASSERT(stat("/proc/self/status", &st) == 0);
  ASSERT_EQ(st.st_size, 0);
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, "/proc/self/status", NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT(mm_view_size(v) > 100);
  ASSERT(!memcmp(mm_view_data(v), "Name:", 5));
  ASSERT_OK(mm_view_close(v));
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  ASSERT_RC(mm_view_open(&v, "/proc/self/status", &o), MM_ENOTMAPPABLE);
}

TEST(view_sysfs_file_is_read_with_its_real_length) {
  const char *p = "/sys/kernel/mm/transparent_hugepage/enabled";
  FILE *f = fopen(p, "r");
  if (!f) SKIP("%s: %s", p, strerror(errno));
  char want[4096];
  size_t n = fread(want, 1, sizeof want, f);
  fclose(f);
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), n); /* not the 4096 that stat reports */
  ASSERT(!memcmp(mm_view_data(v), want, n));
  ASSERT_OK(mm_view_close(v));
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  ASSERT_RC(mm_view_open(&v, p, &o), MM_ENOTMAPPABLE);
}

TEST(view_device_that_refuses_mmap_is_read) {
  mm_view_opts_t o = {.length = 10000};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, "/dev/urandom", &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_EQ(mm_view_size(v), 10000);
  ASSERT_OK(mm_view_close(v));
  o.backend = MM_BACKEND_MMAP;
  ASSERT_RC(mm_view_open(&v, "/dev/urandom", &o), MM_ENOTMAPPABLE);
}

TEST(view_dev_zero_maps_with_an_explicit_length) {
  mm_view_opts_t o = {.length = 1 << 20, .backend = MM_BACKEND_MMAP,
                      .mode = MM_VIEW_PRIVATE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, "/dev/zero", &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_MMAP);
  const unsigned char *d = mm_view_data(v);
  for (size_t i = 0; i < (1u << 20); i += 4093) ASSERT_EQ(d[i], 0);
  ASSERT_OK(mm_view_write(v, 5, "abc", 3));
  ASSERT_OK(mm_view_close(v));
  /* Without a length a device has no size to map. */
  o.length = 0;
  ASSERT_RC(mm_view_open(&v, "/dev/zero", &o), -EINVAL);
}

/* ---- the threshold ----------------------------------------------------- */

TEST(view_small_files_are_read_and_large_ones_mapped) {
  const char *small = mm_test_path("small"), *big = mm_test_path("big");
  mm_test_write_file(small, 4096);
  mm_test_write_file(big, MM_VIEW_THRESHOLD_DEFAULT);
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, small, NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  check_bytes(v, 0);
  ASSERT_OK(mm_view_close(v));
  ASSERT_OK(mm_view_open(&v, big, NULL));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_MMAP);
  ASSERT_OK(mm_view_close(v));
  /* Random access has a lower default threshold. */
  mm_test_write_file(small, MM_VIEW_RANDOM_THRESHOLD_DEFAULT);
  mm_view_opts_t o = {.access = MM_ACCESS_RANDOM};
  ASSERT_OK(mm_view_open(&v, small, &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_MMAP);
  ASSERT_OK(mm_view_close(v));
  /* The threshold is an option, applied to the range, not the file. */
  o = (mm_view_opts_t){.threshold = 2000};
  ASSERT_OK(mm_view_open(&v, small, &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_MMAP);
  ASSERT_OK(mm_view_close(v));
  o.length = 1999;
  ASSERT_OK(mm_view_open(&v, small, &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  ASSERT_OK(mm_view_close(v));
}

/* ---- descriptors and mapping limits ------------------------------------ */

TEST_T(view_readonly_views_keep_no_descriptor_20000_under_nofile_256, 120) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 8192);
  struct rlimit rl = {256, 256};
  ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  int before = count_open_fds();
  enum { N = 20000 };
  mm_view_t **views = calloc(N, sizeof *views);
  ASSERT(views);
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  for (int i = 0; i < N; i++) {
    int rc = mm_view_open(&views[i], p, &o);
    if (rc) FAIL("view %d: %s", i, mm_errname(rc));
  }
  ASSERT_EQ(count_open_fds(), before);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(mm_view_backend(views[i]), MM_BACKEND_MMAP);
    ASSERT_EQ(((unsigned char *)mm_view_data(views[i]))[8191], mm_test_byte(8191));
  }
  for (int i = 0; i < N; i++) ASSERT_OK(mm_view_close(views[i]));
  free(views);
}

TEST_T(view_exhausting_vm_max_map_count_is_mm_emapcount, 180) {
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  long max = 0;
  if (!f || fscanf(f, "%ld", &max) != 1) SKIP("cannot read vm.max_map_count");
  fclose(f);
  if (max > 1000000) SKIP("vm.max_map_count is %ld: too many to exhaust here", max);
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 4096);
  mm_view_t **views = calloc((size_t)max + 10, sizeof *views);
  ASSERT(views);
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  int rc = 0;
  long n = 0;
  while (n < max + 10 && (rc = mm_view_open(&views[n], p, &o)) == 0) n++;
  ASSERT_RC(rc, MM_EMAPCOUNT);
  ASSERT(strstr(mm_strerror(rc), "max_map_count") != NULL);
  ASSERT(n > max / 2);
  for (long i = 0; i < n; i++) ASSERT_OK(mm_view_close(views[i]));
  free(views);
}

TEST(view_write_view_keeps_one_descriptor_and_close_releases_it) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 8192);
  int before = count_open_fds();
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_EQ(count_open_fds(), before + 1);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(count_open_fds(), before);
}

TEST(view_open_fd_leaves_the_callers_descriptor_open) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 100000);
  int fd = open(p, O_RDWR);
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open_fd(&v, fd, &o));
  ASSERT_OK(mm_view_close(v));
  ASSERT(fcntl(fd, F_GETFD) >= 0);
  ASSERT_OK(mm_view_open_fd(&v, fd, NULL));
  check_bytes(v, 0);
  ASSERT_OK(mm_view_close(v));
  ASSERT(fcntl(fd, F_GETFD) >= 0);
  close(fd);
}

/* ---- range operations -------------------------------------------------- */

TEST(view_advise_populate_lock_sync_accept_any_byte_range) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 20 * page() + 17);
  int modes[] = {MM_VIEW_READ, MM_VIEW_WRITE, MM_VIEW_PRIVATE};
  for (int m = 0; m < 3; m++) {
    for (int b = MM_BACKEND_MMAP; b <= MM_BACKEND_READ; b++) {
      if (modes[m] == MM_VIEW_WRITE && b == MM_BACKEND_READ) continue;
      mm_view_opts_t o = {.mode = modes[m], .backend = b, .offset = 3,
                          .length = 20 * page()};
      mm_view_t *v;
      ASSERT_OK(mm_view_open(&v, p, &o));
      for (int a = MM_ADVISE_NORMAL; a <= MM_ADVISE_WILLNEED; a++)
        ASSERT_OK(mm_view_advise(v, 5, 3 * page() + 1, a));
      ASSERT_OK(mm_view_populate(v, 1, 5 * page()));
      ASSERT_OK(mm_view_populate(v, 0, 0));
      ASSERT_OK(mm_view_lock(v, 7, page()));
      ASSERT_OK(mm_view_unlock(v, 7, page()));
      ASSERT_OK(mm_view_sync(v, 11, 2 * page(), MM_SYNC_ASYNC));
      ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
      ASSERT_RC(mm_view_advise(v, 0, 0, 99), -EINVAL);
      ASSERT_RC(mm_view_sync(v, 0, 0, 5), -EINVAL);
      uint64_t end = mm_view_size(v);
      ASSERT_RC(mm_view_advise(v, end + 1, 0, MM_ADVISE_NORMAL), MM_ERANGE);
      ASSERT_RC(mm_view_populate(v, 10, end), MM_ERANGE);
      ASSERT_RC(mm_view_lock(v, end, 1), MM_ERANGE);
      ASSERT_RC(mm_view_sync(v, 1, UINT64_MAX, MM_SYNC_WAIT), MM_ERANGE);
      check_bytes(v, 3);
      ASSERT_OK(mm_view_close(v));
    }
  }
}

TEST(view_dontneed_on_private_view_drops_private_changes) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 4 * page());
  mm_view_opts_t o = {.mode = MM_VIEW_PRIVATE, .backend = MM_BACKEND_MMAP};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  unsigned char *d = mm_view_data(v);
  d[page() + 1] ^= 0xFF;
  ASSERT_OK(mm_view_advise(v, page(), page(), MM_ADVISE_DONTNEED));
  ASSERT_EQ(d[page() + 1], mm_test_byte(page() + 1));
  ASSERT_OK(mm_view_close(v));
}

TEST(view_lock_makes_pages_resident) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 16 * page());
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_OK(mm_view_lock(v, 0, 0));
  unsigned char vec[16];
  ASSERT(mincore(mm_view_data(v), 16 * page(), vec) == 0);
  for (int i = 0; i < 16; i++) ASSERT(vec[i] & 1);
  ASSERT_OK(mm_view_unlock(v, 0, 0));
  ASSERT_OK(mm_view_close(v));
}

/* ---- resize ------------------------------------------------------------ */

TEST(view_resize_grows_and_shrinks_the_file_and_the_view) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 3 * page() + 10);
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_OK(mm_view_resize(v, 40 * page() + 3, MM_RESIZE_MAYMOVE));
  ASSERT_EQ(mm_view_size(v), 40 * page() + 3);
  ASSERT_EQ(file_size(p), 40 * page() + 3);
  const unsigned char *d = mm_view_data(v);
  for (uint64_t i = 0; i < 3 * page() + 10; i++) ASSERT_EQ(d[i], mm_test_byte(i));
  for (uint64_t i = 3 * page() + 10; i < 40 * page() + 3; i++) ASSERT_EQ(d[i], 0);
  ((unsigned char *)mm_view_data(v))[40 * page() + 2] = 'E';
  ASSERT_OK(mm_view_resize(v, page() + 1, 0));
  ASSERT_EQ(mm_view_size(v), page() + 1);
  ASSERT_EQ(file_size(p), page() + 1);
  d = mm_view_data(v);
  for (uint64_t i = 0; i < page() + 1; i++) ASSERT_EQ(d[i], mm_test_byte(i));
  ASSERT_OK(mm_view_resize(v, 0, 0));
  ASSERT_EQ(mm_view_size(v), 0);
  ASSERT_EQ(file_size(p), 0);
  ASSERT_OK(mm_view_resize(v, 100, 0));
  ASSERT_EQ(((unsigned char *)mm_view_data(v))[99], 0);
  ASSERT_OK(mm_view_close(v));
}

TEST(view_resize_without_maymove_keeps_the_address_or_fails) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, page());
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  void *before = mm_view_data(v);
  /* Block the page after the mapping so it cannot grow in place. */
  void *blocker = mmap((char *)before + page(), page(), PROT_READ,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  /* EEXIST: something is mapped there already, which blocks just as well
   * (mmap places mappings top-down, so this is the usual case). */
  if (blocker == MAP_FAILED && errno != EEXIST)
    SKIP("could not place a blocking mapping: %s", strerror(errno));
  ASSERT_RC(mm_view_resize(v, 2 * page(), 0), -ENOMEM);
  ASSERT(mm_view_data(v) == before);
  ASSERT_EQ(mm_view_size(v), page());
  ASSERT_EQ(file_size(p), page()); /* the file was put back */
  ASSERT_OK(mm_view_resize(v, 2 * page(), MM_RESIZE_MAYMOVE));
  ASSERT_EQ(mm_view_size(v), 2 * page());
  const unsigned char *d = mm_view_data(v);
  for (size_t i = 0; i < page(); i++) ASSERT_EQ(d[i], mm_test_byte(i));
  for (size_t i = page(); i < 2 * page(); i++) ASSERT_EQ(d[i], 0);
  if (blocker != MAP_FAILED) munmap(blocker, page());
  ASSERT_OK(mm_view_close(v));
}

TEST(view_resize_is_refused_for_read_views_and_mid_file_ranges) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 4 * page());
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, NULL));
  ASSERT_RC(mm_view_resize(v, 100, 0), -EINVAL);
  ASSERT_OK(mm_view_close(v));
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE, .offset = 10, .length = 100};
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_RC(mm_view_resize(v, 50, 0), -EINVAL);
  ASSERT_RC(mm_view_resize(v, 50, 1u << 7), -EINVAL);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(file_size(p), 4 * page());
}

TEST(view_resize_on_a_full_disk_fails_and_changes_nothing) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, page());
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  void *before = mm_view_data(v);
  mm__fault_set(MM_SYS_FALLOCATE, 1, ENOSPC, 0);
  ASSERT_RC(mm_view_resize(v, 100 * page(), MM_RESIZE_MAYMOVE), -ENOSPC);
  ASSERT_EQ(mm_view_size(v), page());
  ASSERT(mm_view_data(v) == before);
  ASSERT_EQ(file_size(p), page());
  check_bytes(v, 0);
  /* mremap failing after the file grew: the file is put back. */
  mm__fault_set(MM_SYS_MREMAP, 1, ENOMEM, 0);
  ASSERT_RC(mm_view_resize(v, 100 * page(), MM_RESIZE_MAYMOVE), -ENOMEM);
  ASSERT_EQ(file_size(p), page());
  ASSERT_EQ(mm_view_size(v), page());
  /* ftruncate failing on shrink: mapping and file as they were. */
  mm__fault_set(MM_SYS_FTRUNCATE, 1, EIO, 0);
  ASSERT_RC(mm_view_resize(v, 10, 0), -EIO);
  ASSERT_EQ(mm_view_size(v), page());
  ASSERT_EQ(file_size(p), page());
  check_bytes(v, 0);
  ASSERT_OK(mm_view_close(v));
}

TEST(view_resize_on_a_really_full_filesystem_is_enospc) {
  /* A tiny tmpfs needs mount privileges; skip without them. */
  const char *dir = mm_test_path("tiny");
  ASSERT(mkdir(dir, 0700) == 0);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=1m tmpfs %s 2>/dev/null", dir);
  if (system(cmd) != 0) SKIP("cannot mount a 1 MiB tmpfs (needs root)");
  char path[1100];
  snprintf(path, sizeof path, "%s/f", dir);
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE, .flags = MM_VIEW_CREATE};
  mm_view_t *v;
  int rc = mm_view_open(&v, path, &o);
  if (rc == 0) {
    ASSERT_OK(mm_view_resize(v, 512 * 1024, 0));
    ASSERT_RC(mm_view_resize(v, 4 << 20, MM_RESIZE_MAYMOVE), -ENOSPC);
    ASSERT_EQ(mm_view_size(v), 512 * 1024);
    ASSERT_EQ(file_size(path), 512 * 1024);
    ASSERT_OK(mm_view_close(v));
  }
  snprintf(cmd, sizeof cmd, "umount %s", dir);
  if (system(cmd) != 0) FAIL("umount failed");
  ASSERT_OK(rc);
}

/* ---- truncation safety ------------------------------------------------- */

/* Truncate from another process, as the contract describes. */
static void truncate_elsewhere(const char *path, off_t size) {
  pid_t pid = fork();
  if (pid == 0) _exit(truncate(path, size) == 0 ? 0 : 1);
  int st;
  ASSERT(waitpid(pid, &st, 0) == pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static mm_view_t *open_then_truncate(const char *p, int mode, off_t to) {
  mm_test_write_file(p, 8 * page());
  mm_view_opts_t o = {.mode = mode, .backend = MM_BACKEND_MMAP};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  truncate_elsewhere(p, to);
  return v;
}

TEST(view_guarded_read_of_truncated_file_is_mm_etruncated) {
  SKIP_UNDER_TSAN();
  mm_view_t *v = open_then_truncate(mm_test_path("f"), MM_VIEW_READ, page());
  unsigned char buf[64];
  ASSERT_OK(mm_view_read(v, 10, buf, 64)); /* still inside the file */
  ASSERT_EQ(buf[0], mm_test_byte(10));
  ASSERT_RC(mm_view_read(v, 3 * page(), buf, 64), MM_ETRUNCATED);
  ASSERT_RC(mm_view_read(v, page() - 32, buf, 64), MM_ETRUNCATED);
  ASSERT_OK(mm_view_read(v, 0, buf, 64)); /* the guard is reusable */
  ASSERT_OK(mm_view_close(v));
}

TEST(view_guarded_write_of_truncated_file_is_mm_etruncated) {
  SKIP_UNDER_TSAN();
  int modes[] = {MM_VIEW_WRITE, MM_VIEW_PRIVATE};
  for (int m = 0; m < 2; m++) {
    mm_view_t *v = open_then_truncate(mm_test_path("f"), modes[m], page());
    ASSERT_RC(mm_view_write(v, 5 * page(), "abc", 3), MM_ETRUNCATED);
    ASSERT_OK(mm_view_write(v, 5, "abc", 3));
    ASSERT_OK(mm_view_close(v));
  }
}

static int sum_all(void *arg, void *data, uint64_t size) {
  unsigned long *sum = arg;
  const volatile unsigned char *d = data;
  for (uint64_t i = 0; i < size; i++) *sum += d[i];
  return 42;
}

TEST(view_guarded_call_returns_mm_etruncated_or_the_functions_result) {
  SKIP_UNDER_TSAN();
  mm_view_t *v = open_then_truncate(mm_test_path("f"), MM_VIEW_READ, 8 * page());
  unsigned long sum = 0;
  ASSERT_EQ(mm_view_guard(v, sum_all, &sum), 42);
  truncate_elsewhere(mm_test_path("f"), 2 * page());
  ASSERT_RC(mm_view_guard(v, sum_all, &sum), MM_ETRUNCATED);
  ASSERT_RC(mm_view_guard(v, NULL, NULL), -EINVAL);
  ASSERT_OK(mm_view_close(v));
}

TEST(view_populate_of_truncated_range_is_mm_etruncated) {
  SKIP_UNDER_TSAN();
  mm_view_t *v = open_then_truncate(mm_test_path("f"), MM_VIEW_READ, page());
  ASSERT_RC(mm_view_populate(v, 0, 0), MM_ETRUNCATED);
  ASSERT_OK(mm_view_populate(v, 0, page()));
  ASSERT_OK(mm_view_close(v));
}

struct nest {
  mm_view_t *outer, *inner;
  int inner_rc;
};

static int touch_outer_tail(void *arg, void *data, uint64_t size) {
  (void)data, (void)size;
  struct nest *n = arg;
  const volatile unsigned char *d = mm_view_data(n->outer);
  return d[mm_view_size(n->outer) - 1]; /* past the truncated end */
}

static int run_inner(void *arg, void *data, uint64_t size) {
  (void)data, (void)size;
  struct nest *n = arg;
  unsigned long sum = 0;
  n->inner_rc = mm_view_guard(n->inner, sum_all, &sum); /* inner is intact */
  /* A fault on the outer view inside an inner guard goes to the outer. */
  return mm_view_guard(n->inner, touch_outer_tail, n);
}

TEST(view_nested_guards_deliver_each_fault_to_the_guard_that_owns_it) {
  SKIP_UNDER_TSAN();
  struct nest n;
  n.outer = open_then_truncate(mm_test_path("outer"), MM_VIEW_READ, page());
  const char *ip = mm_test_path("inner");
  mm_test_write_file(ip, 2 * page());
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP};
  ASSERT_OK(mm_view_open(&n.inner, ip, &o));
  ASSERT_RC(mm_view_guard(n.outer, run_inner, &n), MM_ETRUNCATED);
  ASSERT_EQ(n.inner_rc, 42);
  /* Both guards are gone: the stack unwound correctly. */
  unsigned long sum = 0;
  ASSERT_EQ(mm_view_guard(n.inner, sum_all, &sum), 42);
  char c;
  ASSERT_RC(mm_view_read(n.outer, 5 * page(), &c, 1), MM_ETRUNCATED);
  ASSERT_OK(mm_view_close(n.inner));
  ASSERT_OK(mm_view_close(n.outer));
}

struct thr {
  mm_view_t *v;
  int bad;
};

static void *thread_reads(void *arg) {
  struct thr *t = arg;
  unsigned char buf[256];
  for (int i = 0; i < 2000; i++) {
    if (mm_view_read(t->v, 4 * page() + (uint64_t)(i % 7), buf, 200) != MM_ETRUNCATED)
      t->bad++;
    if (mm_view_read(t->v, (uint64_t)(i % 100), buf, 200) != 0) t->bad++;
  }
  return NULL;
}

TEST(view_guard_works_in_several_threads_at_once) {
  SKIP_UNDER_TSAN();
  mm_view_t *v = open_then_truncate(mm_test_path("f"), MM_VIEW_READ, page());
  enum { N = 4 };
  pthread_t th[N];
  struct thr t[N];
  for (int i = 0; i < N; i++) {
    t[i] = (struct thr){v, 0};
    ASSERT(pthread_create(&th[i], NULL, thread_reads, &t[i]) == 0);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ASSERT_EQ(t[i].bad, 0);
  }
  ASSERT_OK(mm_view_close(v));
}

static volatile sig_atomic_t app_handler_calls;
static sigjmp_buf app_jb;
static void app_handler(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)si, (void)uc;
  app_handler_calls++;
  if (si->si_code > 0) siglongjmp(app_jb, 1); /* a real fault: jump out */
}

TEST(view_guard_passes_foreign_sigbus_to_the_applications_handler) {
  SKIP_UNDER_TSAN();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = app_handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  ASSERT(sigaction(SIGBUS, &sa, NULL) == 0);
  mm_view_t *v = open_then_truncate(mm_test_path("f"), MM_VIEW_READ, page());
  char c;
  ASSERT_RC(mm_view_read(v, 5 * page(), &c, 1), MM_ETRUNCATED); /* installs */
  ASSERT_EQ(app_handler_calls, 0);
  /* A SIGBUS sent by kill() is not a fault: the application's. */
  ASSERT(kill(getpid(), SIGBUS) == 0);
  ASSERT_EQ(app_handler_calls, 1);
  /* An unguarded access to the truncated page: the application's too. */
  if (sigsetjmp(app_jb, 1) == 0) {
    volatile unsigned char *d = mm_view_data(v);
    c = (char)d[5 * page()];
    FAIL("no SIGBUS on a truncated page");
  }
  ASSERT_EQ(app_handler_calls, 2);
  /* And the guard still works afterwards. */
  ASSERT_RC(mm_view_read(v, 5 * page(), &c, 1), MM_ETRUNCATED);
  ASSERT_EQ(app_handler_calls, 2);
  ASSERT_OK(mm_view_close(v));
}

TEST(view_unguarded_access_still_dies_by_sigbus_with_the_default_handler) {
  SKIP_UNDER_TSAN();
  mm_view_t *v = open_then_truncate(mm_test_path("f"), MM_VIEW_READ, page());
  char c;
  ASSERT_RC(mm_view_read(v, 5 * page(), &c, 1), MM_ETRUNCATED); /* installs */
  pid_t pid = fork();
  if (pid == 0) {
    volatile unsigned char *d = mm_view_data(v);
    _exit(d[5 * page()]);
  }
  int st;
  waitpid(pid, &st, 0);
  ASSERT(died_of(st, SIGBUS));
  pid = fork();
  if (pid == 0) {
    kill(getpid(), SIGBUS);
    _exit(0);
  }
  waitpid(pid, &st, 0);
  ASSERT(died_of(st, SIGBUS));
  ASSERT_OK(mm_view_close(v));
}

TEST(view_guard_install_failure_is_reported) {
  mm_view_t *v = open_then_truncate(mm_test_path("f"), MM_VIEW_READ, page());
  mm__fault_set(MM_SYS_SIGACTION, 1, EINVAL, 0);
  char c;
  ASSERT_RC(mm_view_read(v, 0, &c, 1), -EINVAL);
  ASSERT_OK(mm_view_read(v, 0, &c, 1));
  ASSERT_OK(mm_view_close(v));
}

/* ---- close and failures -------------------------------------------------- */

TEST(view_close_null_is_zero) { ASSERT_OK(mm_view_close(NULL)); }

TEST(view_close_returns_the_error_of_the_final_sync) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 4 * page());
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE, .flags = MM_VIEW_SYNC_ON_CLOSE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  ((char *)mm_view_data(v))[0] = 'x';
  int fds = count_open_fds();
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 0);
  unsigned long munmaps = mm__sys_count(MM_SYS_MUNMAP);
  ASSERT_RC(mm_view_close(v), -EIO);
  /* Closed all the same: unmapped, descriptor released. */
  ASSERT_EQ(mm__sys_count(MM_SYS_MUNMAP), munmaps + 1);
  ASSERT_EQ(count_open_fds(), fds - 1);
  /* Without the flag, close does not sync. */
  o.flags = 0;
  ASSERT_OK(mm_view_open(&v, p, &o));
  unsigned long syncs = mm__sys_count(MM_SYS_MSYNC);
  ASSERT_OK(mm_view_close(v));
  ASSERT_EQ(mm__sys_count(MM_SYS_MSYNC), syncs);
}

TEST(view_sync_error_is_returned) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 4 * page());
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open(&v, p, &o));
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 0);
  ASSERT_RC(mm_view_sync(v, 0, 0, MM_SYNC_WAIT), -EIO);
  ASSERT_OK(mm_view_sync(v, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_view_close(v));
}

TEST(view_open_reports_each_failing_system_call) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 100 * page());
  const char *small = mm_test_path("small");
  mm_test_write_file(small, 100);
  struct {
    int op, err;
    const char *path;
    int backend;
  } cases[] = {
      {MM_SYS_OPEN, EMFILE, NULL, MM_BACKEND_AUTO},
      {MM_SYS_FSTAT, EIO, NULL, MM_BACKEND_AUTO},
      {MM_SYS_MMAP, ENOMEM, NULL, MM_BACKEND_MMAP},
      {MM_SYS_MMAP, ENODEV, NULL, MM_BACKEND_MMAP}, /* forced: no fallback */
      {MM_SYS_PREAD, EIO, NULL, MM_BACKEND_READ},
      {MM_SYS_PREAD, EIO, "small", MM_BACKEND_AUTO},
  };
  int fds = count_open_fds();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mm_view_opts_t o = {.backend = cases[i].backend};
    mm_view_t *v = (mm_view_t *)1;
    mm__fault_set(cases[i].op, 1, cases[i].err, 0);
    int rc = mm_view_open(&v, cases[i].path ? small : p, &o);
    mm__fault_clear();
    int want = cases[i].err == ENODEV ? MM_ENOTMAPPABLE : -cases[i].err;
    if (rc != want)
      FAIL("case %zu (%s fails with %s): got %s, want %s", i,
           mm__sys_name(cases[i].op), strerror(cases[i].err), mm_errname(rc),
           mm_errname(want));
    ASSERT(v == NULL);
    ASSERT_EQ(count_open_fds(), fds);
  }
}

TEST(view_auto_falls_back_to_read_when_mmap_refuses) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 100 * page());
  mm_view_opts_t o = {.threshold = 1};
  mm_view_t *v;
  mm__fault_set(MM_SYS_MMAP, 1, ENODEV, 0);
  ASSERT_OK(mm_view_open(&v, p, &o));
  ASSERT_EQ(mm_view_backend(v), MM_BACKEND_READ);
  check_bytes(v, 0);
  ASSERT_OK(mm_view_close(v));
  /* But not for lack of memory, which reading would not cure. */
  mm__fault_set(MM_SYS_MMAP, 1, ENOMEM, 0);
  ASSERT_RC(mm_view_open(&v, p, &o), -ENOMEM);
}

TEST(view_stream_read_failure_is_reported_and_frees_the_buffer) {
  int fds[2];
  ASSERT(pipe(fds) == 0);
  pid_t pid = feed(fds[1], 200000);
  close(fds[1]);
  mm__fault_set(MM_SYS_READ, 3, EIO, 0);
  mm_view_t *v;
  ASSERT_RC(mm_view_open_fd(&v, fds[0], NULL), -EIO);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  close(fds[0]);
}

TEST(view_backend_names) {
  ASSERT(!strcmp(mm_backend_name(MM_BACKEND_MMAP), "mmap"));
  ASSERT(!strcmp(mm_backend_name(MM_BACKEND_READ), "read"));
  ASSERT(!strcmp(mm_backend_name(MM_BACKEND_AUTO), "auto"));
  ASSERT(!strcmp(mm_backend_name(42), "?"));
}

TEST(view_device_length_that_wraps_with_the_offset_is_refused) {
  /* offset 4095 + a length near 2^64 once wrapped to one page mapped under
   * a view that claimed 2^64 bytes. */
  mm_view_opts_t o = {.backend = MM_BACKEND_MMAP, .offset = 4095,
                      .length = UINT64_MAX - 4000};
  mm_view_t *v = (mm_view_t *)1;
  ASSERT_RC(mm_view_open(&v, "/dev/zero", &o), MM_ERANGE);
  ASSERT(v == NULL);
  o.offset = 0;
  o.length = (uint64_t)INT64_MAX; /* fits the offset rule, not memory */
  int rc = mm_view_open(&v, "/dev/zero", &o);
  if (rc != -ENOMEM && rc != -EFBIG) FAIL("got %s, want ENOMEM or EFBIG", mm_errname(rc));
}

TEST(view_failed_shrink_of_a_sealed_memfd_changes_nothing) {
  int fd = memfd_create("sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT(fd >= 0);
  ASSERT(ftruncate(fd, 64 * page()) == 0);
  ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
  mm_view_opts_t o = {.mode = MM_VIEW_WRITE};
  mm_view_t *v;
  ASSERT_OK(mm_view_open_fd(&v, fd, &o));
  unsigned char *d = mm_view_data(v);
  d[60 * page()] = 0x77;
  ASSERT_RC(mm_view_resize(v, page(), 0), -EPERM);
  ASSERT(mm_view_data(v) == d);
  ASSERT_EQ(mm_view_size(v), 64 * page());
  ASSERT_EQ(d[60 * page()], 0x77); /* the tail is mapped back, contents and all */
  ASSERT_OK(mm_view_close(v));
  close(fd);
}
