/*
 * test_cache.c - page-cache residency with known page counts, checked
 * against fincore where installed; touch, evict, lock; permissions; the
 * tree walk.
 */
#include "test.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys.h"

static uint64_t page(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

/* The sanitizers (ASan, TSan) intercept mlock() and do nothing: locked
 * pages are then not locked, and tests of locking cannot hold. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SKIP_IF_MLOCK_IS_FAKE() SKIP("the sanitizer makes mlock() a no-op")
#else
#define SKIP_IF_MLOCK_IS_FAKE() ((void)0)
#endif

/* A file of npages pages, written, synced and evicted: nothing resident. */
static int cold_file(const char *path, uint64_t npages) {
  mm_test_write_file(path, npages * page());
  int fd = open(path, O_RDWR);
  ASSERT(fd >= 0);
  ASSERT(fsync(fd) == 0);
  ASSERT(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  /* No read-ahead: a read loads exactly the pages it covers. */
  ASSERT(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM) == 0);
  return fd;
}

static void read_pages(int fd, uint64_t first, uint64_t n) {
  char *buf = malloc(page());
  for (uint64_t i = first; i < first + n; i++)
    ASSERT((uint64_t)pread(fd, buf, page(), (off_t)(i * page())) == page());
  free(buf);
}

static int methods[] = {MM_CACHE_MINCORE, MM_CACHE_CACHESTAT};

static void want_resident(int fd, uint64_t off, uint64_t len, uint64_t pages,
                          uint64_t resident) {
  for (int m = 0; m < 2; m++) {
    if (methods[m] == MM_CACHE_CACHESTAT && !mm_cache_have_cachestat()) continue;
    mm_cache_stat_t st;
    ASSERT_OK(mm_cache_stat_fd(fd, off, len, methods[m], &st));
    ASSERT_EQ(st.method, methods[m]);
    if (st.pages != pages || st.resident != resident)
      FAIL("%s: %llu/%llu pages resident, want %llu/%llu", mm_cache_method_name(methods[m]),
           (unsigned long long)st.resident, (unsigned long long)st.pages,
           (unsigned long long)resident, (unsigned long long)pages);
  }
}

TEST(cache_counts_exactly_the_pages_read_back) {
  int fd = cold_file(mm_test_path("f"), 256);
  want_resident(fd, 0, 0, 256, 0);
  read_pages(fd, 10, 10);
  read_pages(fd, 100, 1);
  want_resident(fd, 0, 0, 256, 11);
  /* A byte range counts the pages it touches. */
  want_resident(fd, 15 * page() + 7, 10 * page(), 11, 5);
  want_resident(fd, 100 * page(), 1, 1, 1);
  want_resident(fd, 300 * page(), 0, 0, 0); /* past the end */
  close(fd);
}

TEST(cache_agrees_with_util_linux_fincore) {
  const char *p = mm_test_path("f");
  int fd = cold_file(p, 300);
  read_pages(fd, 0, 7);
  read_pages(fd, 200, 50);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "fincore --bytes --noheadings --output PAGES %s 2>/dev/null", p);
  FILE *f = popen(cmd, "r");
  long long theirs = -1;
  if (!f || fscanf(f, "%lld", &theirs) != 1) theirs = -1;
  if (f) pclose(f);
  if (theirs < 0) SKIP("fincore (util-linux) is not installed");
  mm_cache_stat_t st;
  ASSERT_OK(mm_cache_stat(p, 0, 0, MM_CACHE_AUTO, &st));
  ASSERT_EQ(st.resident, theirs);
  ASSERT_EQ(theirs, 57);
  close(fd);
}

TEST(cache_evict_then_touch_round_trips) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 4 << 20);
  int fd = open(p, O_RDONLY);
  ASSERT(fd >= 0);
  ASSERT(fsync(fd) == 0);
  mm_cache_stat_t st;
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, &st));
  ASSERT(st.resident <= 1); /* ~0 */
  ASSERT_OK(mm_cache_touch(fd, 0, 0));
  ASSERT_OK(mm_cache_stat_fd(fd, 0, 0, MM_CACHE_AUTO, &st));
  ASSERT_EQ(st.resident, st.pages);
  ASSERT_EQ(st.pages, (4 << 20) / page());
  /* A range. */
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, NULL));
  ASSERT_OK(mm_cache_touch(fd, page() * 3, page() * 5));
  ASSERT_OK(mm_cache_stat_fd(fd, 0, 0, MM_CACHE_MINCORE, &st));
  if (!(st.resident >= 5 && st.resident < 64)) FAIL("resident %llu", (unsigned long long)st.resident); /* read-around may add a little */
  unsigned char vec[2048];
  uint64_t n;
  ASSERT_OK(mm_cache_pages(fd, 0, 0, vec, sizeof vec, &n));
  ASSERT_EQ(n, (4 << 20) / page());
  for (int i = 3; i < 8; i++) ASSERT_EQ(vec[i], 1);
  close(fd);
}

TEST(cache_evict_reports_dirty_pages_it_could_not_evict) {
  SKIP_IF_MLOCK_IS_FAKE();
  if (!mm_cache_have_cachestat()) SKIP("cachestat(2) is not available: no dirty counts");
  const char *p = mm_test_path("f");
  int fd = cold_file(p, 64);
  char *buf = malloc(page());
  memset(buf, 'd', page());
  for (int i = 0; i < 8; i++) ASSERT(pwrite(fd, buf, page(), (off_t)(i * page())) == (ssize_t)page());
  free(buf);
  mm_cache_stat_t st;
  ASSERT_OK(mm_cache_stat_fd(fd, 0, 0, MM_CACHE_CACHESTAT, &st));
  ASSERT(st.dirty >= 1 || st.writeback >= 1);
  /* Mapped and locked pages cannot be evicted either. */
  mm_cache_lock_t *l;
  ASSERT_OK(mm_cache_lock(fd, 32 * page(), 4 * page(), &l));
  ASSERT_EQ(mm_cache_locked_bytes(l), 4 * page());
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_CACHESTAT, &st));
  ASSERT(st.resident >= 4); /* at least the locked ones */
  ASSERT_OK(mm_cache_unlock(l));
  ASSERT_OK(mm_cache_unlock(NULL));
  ASSERT(fsync(fd) == 0);
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_CACHESTAT, &st));
  ASSERT_EQ(st.resident, 0);
  ASSERT_EQ(st.dirty, 0);
  close(fd);
}

TEST(cache_lock_keeps_pages_resident_across_evict) {
  SKIP_IF_MLOCK_IS_FAKE();
  const char *p = mm_test_path("f");
  int fd = cold_file(p, 32);
  mm_cache_lock_t *l;
  ASSERT_OK(mm_cache_lock(fd, 0, 0, &l));
  ASSERT_EQ(mm_cache_locked_bytes(l), 32 * page());
  mm_cache_stat_t st;
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, &st));
  ASSERT_EQ(st.resident, 32);
  ASSERT_OK(mm_cache_unlock(l));
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, &st));
  ASSERT_EQ(st.resident, 0);
  mm_cache_lock_t *l2 = (mm_cache_lock_t *)1;
  ASSERT_OK(mm_cache_lock(fd, 0, 0, &l2));
  ASSERT_OK(mm_cache_unlock(l2));
  int empty = open(mm_test_path("empty"), O_RDWR | O_CREAT, 0600);
  ASSERT_RC(mm_cache_lock(empty, 0, 0, &l2), -EINVAL);
  ASSERT(l2 == NULL);
  close(empty);
  close(fd);
}

TEST(cache_files_the_caller_cannot_write_are_refused_not_guessed) {
  if (geteuid() != 0) SKIP("needs root to create a file owned by someone else");
  const char *p = mm_test_path("f");
  int fd = cold_file(p, 16);
  read_pages(fd, 0, 16);
  close(fd);
  ASSERT(chmod(p, 0644) == 0);
  ASSERT(chmod(mm_test_dir(), 0755) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(90);
    mm_cache_stat_t st;
    int fd2 = open(p, O_RDONLY);
    if (fd2 < 0) _exit(91);
    if (mm_cache_stat_fd(fd2, 0, 0, MM_CACHE_MINCORE, &st) != -EPERM) _exit(92);
    if (mm_cache_have_cachestat() &&
        mm_cache_stat_fd(fd2, 0, 0, MM_CACHE_CACHESTAT, &st) != -EPERM)
      _exit(93);
    unsigned char vec[16];
    uint64_t n;
    if (mm_cache_pages(fd2, 0, 0, vec, 16, &n) != -EPERM) _exit(94);
    _exit(0);
  }
  int st;
  ASSERT(waitpid(pid, &st, 0) == pid);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    FAIL("child: status %d (92: mincore, 93: cachestat not refused)", WEXITSTATUS(st));
}

TEST(cache_bad_input_is_a_clear_error) {
  mm_cache_stat_t st;
  ASSERT_RC(mm_cache_stat(mm_test_path("none"), 0, 0, MM_CACHE_AUTO, &st), -ENOENT);
  ASSERT_RC(mm_cache_stat(mm_test_dir(), 0, 0, MM_CACHE_AUTO, &st), -EISDIR);
  ASSERT_RC(mm_cache_stat("/dev/null", 0, 0, MM_CACHE_AUTO, &st), -EINVAL);
  ASSERT_RC(mm_cache_stat(NULL, 0, 0, MM_CACHE_AUTO, &st), -EINVAL);
  ASSERT_RC(mm_cache_stat_fd(-1, 0, 0, MM_CACHE_MINCORE, &st), -EBADF);
  ASSERT_RC(mm_cache_stat_fd(0, 0, 0, 9, &st), -EINVAL);
  int fd = cold_file(mm_test_path("f"), 4);
  mm__fault_set(MM_SYS_MINCORE, 1, ENOMEM, 0);
  ASSERT_RC(mm_cache_stat_fd(fd, 0, 0, MM_CACHE_MINCORE, &st), -ENOMEM);
  mm__fault_set(MM_SYS_MMAP, 1, ENOMEM, 0);
  ASSERT_RC(mm_cache_touch(fd, 0, 0), -ENOMEM);
  mm__fault_set(MM_SYS_FADVISE, 1, EIO, 0);
  ASSERT_RC(mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, NULL), -EIO);
  mm__fault_set(MM_SYS_MLOCK, 1, EAGAIN, 0);
  mm_cache_lock_t *l;
  ASSERT_RC(mm_cache_lock(fd, 0, 0, &l), -EAGAIN);
  mm__fault_set(MM_SYS_CACHESTAT, 1, ENOSYS, 0);
  if (mm_cache_have_cachestat())
    ASSERT_RC(mm_cache_stat_fd(fd, 0, 0, MM_CACHE_CACHESTAT, &st), -ENOSYS);
  close(fd);
  ASSERT(!strcmp(mm_cache_method_name(MM_CACHE_CACHESTAT), "cachestat"));
  ASSERT(!strcmp(mm_cache_method_name(MM_CACHE_MINCORE), "mincore"));
}

TEST(cache_touch_of_a_truncated_range_is_mm_etruncated) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 64 * page());
  int fd = open(p, O_RDONLY);
  /* Shrink the file between the size check and the populate. */
  mm__fault_set(MM_SYS_MADVISE, 3, EFAULT, 0); /* the populate */
  ASSERT_RC(mm_cache_touch(fd, 0, 0), MM_ETRUNCATED);
  close(fd);
}

struct seen {
  char names[64][256];
  int dirs, files, errors, n;
  int last_err;
};

static int record(void *arg, const char *path, int err, int is_dir, int depth) {
  (void)depth;
  struct seen *s = arg;
  if (err) {
    s->errors++;
    s->last_err = err;
  } else if (is_dir) {
    s->dirs++;
  } else {
    s->files++;
  }
  if (s->n < 64) snprintf(s->names[s->n++], 256, "%s", path);
  return 0;
}

static int seen_has(struct seen *s, const char *suffix) {
  for (int i = 0; i < s->n; i++) {
    size_t a = strlen(s->names[i]), b = strlen(suffix);
    if (a >= b && !strcmp(s->names[i] + a - b, suffix)) return 1;
  }
  return 0;
}

TEST(cache_walk_visits_trees_skips_links_unless_asked_and_reports_errors) {
  char d[600];
  snprintf(d, sizeof d, "%s/tree", mm_test_dir());
  ASSERT(mkdir(d, 0700) == 0);
  char p[700];
  snprintf(p, sizeof p, "%s/a", d);
  mm_test_write_file(p, 10);
  snprintf(p, sizeof p, "%s/sub", d);
  ASSERT(mkdir(p, 0700) == 0);
  snprintf(p, sizeof p, "%s/sub/b", d);
  mm_test_write_file(p, 10);
  snprintf(p, sizeof p, "%s/sub/loop", d);
  ASSERT(symlink("..", p) == 0);
  snprintf(p, sizeof p, "%s/link", d);
  ASSERT(symlink("sub/b", p) == 0);
  snprintf(p, sizeof p, "%s/fifo", d);
  ASSERT(mkfifo(p, 0600) == 0);

  struct seen s;
  memset(&s, 0, sizeof s);
  ASSERT_OK(mm_cache_walk(d, 0, record, &s));
  ASSERT_EQ(s.files, 2);
  ASSERT_EQ(s.dirs, 2);
  ASSERT_EQ(s.errors, 0);
  ASSERT(seen_has(&s, "/tree/sub/b") && !seen_has(&s, "/link"));

  memset(&s, 0, sizeof s);
  ASSERT_OK(mm_cache_walk(d, MM_CACHE_FOLLOW, record, &s));
  ASSERT(seen_has(&s, "/tree/link"));
  ASSERT_EQ(s.errors, 1); /* the loop back up, reported, not followed */
  ASSERT_EQ(s.last_err, -ELOOP);

  /* A directory that cannot be read is an error for it alone. */
  if (geteuid() != 0) {
    snprintf(p, sizeof p, "%s/sub", d);
    ASSERT(chmod(p, 0) == 0);
    memset(&s, 0, sizeof s);
    ASSERT_OK(mm_cache_walk(d, 0, record, &s));
    ASSERT_EQ(s.errors, 1);
    ASSERT_EQ(s.last_err, -EACCES);
    ASSERT(chmod(p, 0700) == 0);
  }
  memset(&s, 0, sizeof s);
  ASSERT_RC(mm_cache_walk(mm_test_path("nothing"), 0, record, &s), -ENOENT);
  ASSERT_RC(mm_cache_walk(d, 1u << 9, record, &s), -EINVAL);
}

static int stop_at_second(void *arg, const char *path, int err, int is_dir, int depth) {
  (void)path, (void)err, (void)is_dir, (void)depth;
  return ++*(int *)arg == 2 ? 42 : 0;
}

TEST(cache_walk_stops_when_the_callback_says_so) {
  char p[700];
  for (int i = 0; i < 5; i++) {
    snprintf(p, sizeof p, "%s/f%d", mm_test_dir(), i);
    mm_test_write_file(p, 1);
  }
  int calls = 0;
  ASSERT_EQ(mm_cache_walk(mm_test_dir(), 0, stop_at_second, &calls), 42);
  ASSERT_EQ(calls, 2);
}

/* ---- memmap cache ---------------------------------------------------- */

TEST(cache_cli_reports_evicts_touches_and_maps_pages) {
  char out[16384];
  const char *p = mm_test_path("f");
  int fd = cold_file(p, 100);
  read_pages(fd, 0, 25);
  close(fd);
  const char *bin = mm_test_bindir();
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache %s", bin, p), 0);
  if (!strstr(out, "Resident Pages: 25/100") || !strstr(out, "Files: 1") ||
      !strstr(out, "Method: "))
    FAIL("summary:\n%s", out);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -v -m mincore %s", bin, p), 0);
  /* 100 pages in 60 columns: the first quarter full, the rest empty. */
  if (!strstr(out, "[OOOOOOOOOOOOOOO ") || !strstr(out, "] 25/100") ||
      !strstr(out, "Method: mincore"))
    FAIL("page map:\n%s", out);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -e %s", bin, p), 0);
  ASSERT(strstr(out, "Left Pages: 0/100"));
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -t %s", bin, p), 0);
  ASSERT(strstr(out, "Touched Pages: 100/100"));
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache --json -v %s", bin, p), 0);
  /* Just touched, but a separate process and a moment later: the kernel
   * may have reclaimed a page or two meanwhile (seen under load in CI).
   * The entry and the summary must agree, and be nearly all resident. */
  const char *e = strstr(out, "\"resident\": "), *t = strstr(out, "\"resident_pages\": ");
  if (!strstr(out, "\"entries\": [") || !strstr(out, "\"map\": \"O") || !e || !t ||
      atoi(e + 12) != atoi(t + 18) || atoi(t + 18) < 90 || atoi(t + 18) > 100)
    FAIL("json:\n%s", out);
  char res[64];
  if (mm_test_run(res, sizeof res, "command -v python3 >/dev/null") == 0) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd,
             "%s/memmap cache --json -v %s %s/none 2>/dev/null | python3 -c "
             "'import json,sys; d=json.load(sys.stdin); print(len(d[\"entries\"]), d[\"failed\"])'",
             bin, p, mm_test_dir());
    ASSERT_EQ(mm_test_run(res, sizeof res, "%s", cmd), 0);
    ASSERT(!strcmp(res, "2 1\n"));
  }
}

TEST(cache_cli_walks_trees_with_r_and_keeps_going_past_errors) {
  char out[16384];
  char d[600];
  snprintf(d, sizeof d, "%s/t", mm_test_dir());
  ASSERT(mkdir(d, 0700) == 0);
  for (int i = 0; i < 3; i++) {
    char p[700];
    snprintf(p, sizeof p, "%s/f%d", d, i);
    mm_test_write_file(p, 8192);
  }
  const char *bin = mm_test_bindir();
  /* A directory without -r is an error; the other paths are still done. */
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache %s %s/f0 2>&1", bin, d, d), 1);
  if (!strstr(out, "memmap: ") || !strstr(out, "Is a directory") || !strstr(out, "Files: 1"))
    FAIL("%s", out);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -r %s %s/missing 2>&1", bin, d, d), 1);
  if (!strstr(out, "Files: 3") || !strstr(out, "Directories: 1") ||
      !strstr(out, "No such file or directory") || !strstr(out, "Failed: 1"))
    FAIL("%s", out);
}

TEST(cache_cli_lock_daemon_keeps_pages_until_killed) {
  SKIP_IF_MLOCK_IS_FAKE();
  char out[4096];
  const char *p = mm_test_path("f");
  int fd = cold_file(p, 64);
  const char *pidf = mm_test_path("pid");
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -l -d -q -p %s %s", mm_test_bindir(),
                        pidf, p), 0);
  FILE *f = fopen(pidf, "r");
  ASSERT(f);
  int pid = 0;
  ASSERT(fscanf(f, "%d", &pid) == 1 && pid > 0);
  fclose(f);
  mm_cache_stat_t st;
  int rc = mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, &st);
  uint64_t locked = st.resident;
  ASSERT(kill(pid, SIGTERM) == 0); /* first, so that no failure leaves it running */
  ASSERT_OK(rc);
  ASSERT_EQ(locked, 64); /* locked by the daemon */
  for (int i = 0; i < 200 && kill(pid, 0) == 0; i++) usleep(10000);
  ASSERT(kill(pid, 0) != 0);
  ASSERT(access(pidf, F_OK) != 0); /* it removed its pidfile */
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, &st));
  ASSERT_EQ(st.resident, 0);
  close(fd);
}

TEST(cache_cli_bad_usage_exits_two) {
  char out[4096];
  const char *bin = mm_test_bindir();
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache 2>&1", bin), 2);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -t -e x 2>&1", bin), 2);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -d x 2>&1", bin), 2);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache -m bogus x 2>&1", bin), 2);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/memmap cache --help", bin), 0);
  ASSERT(strstr(out, "usage: memmap cache"));
}

TEST_T(cache_bench_reports_each_method_per_gib, 120) {
  char *out = malloc(1 << 16);
  int rc = mm_test_run(out, 1 << 16, "%s/memmap bench --quick --max-size 32M --dir %s cache 2>&1",
                       mm_test_bindir(), mm_test_dir());
  if (rc != 0) FAIL("exit %d:\n%s", rc, out);
  if (!strstr(out, "cache: residency of 32 MiB in 2 cached files") ||
      !strstr(out, "mincore") || !strstr(out, "memmap"))
    FAIL("%s", out);
  if (mm_cache_have_cachestat() && !strstr(out, "cachestat")) FAIL("%s", out);
  if (mm_test_run(out, 64, "command -v vmtouch >/dev/null") == 0) {
    mm_test_run(out, 1 << 16, "%s/memmap bench --quick --max-size 32M --dir %s cache 2>&1",
                mm_test_bindir(), mm_test_dir());
    ASSERT(strstr(out, "vmtouch") && strstr(out, "verdict"));
  }
  free(out);
}

TEST(cache_touch_without_populate_reads_to_the_real_end_of_file) {
  /* Kernels before 5.14 have no MADV_POPULATE_READ (EINVAL): touch reads
   * instead, and must stop at the end of a file that ends mid-page. */
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 5000);
  int fd = open(p, O_RDONLY);
  ASSERT_OK(mm_cache_evict(fd, 0, 0, MM_CACHE_AUTO, NULL));
  mm__fault_set(MM_SYS_MADVISE, 3, EINVAL, 0); /* the populate */
  ASSERT_OK(mm_cache_touch(fd, 0, 0));
  mm_cache_stat_t st;
  ASSERT_OK(mm_cache_stat_fd(fd, 0, 0, MM_CACHE_AUTO, &st));
  ASSERT_EQ(st.resident, 2);
  close(fd);
}
