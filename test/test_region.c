/*
 * test_region.c - growable regions: stable addresses, anonymous and
 * file-backed growth, giving memory back, the remapping fallback, failure
 * paths, and a file-backed region larger than a memory cgroup's limit.
 */
#include "test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys.h"

static uint64_t page(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

/* Resident set size of this process, in bytes. */
static uint64_t rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (!f || fscanf(f, "%lu %lu", &size, &res) != 2) FAIL("cannot read statm");
  fclose(f);
  return (uint64_t)res * page();
}

static uint64_t file_size(const char *path) {
  struct stat st;
  ASSERT(stat(path, &st) == 0);
  return (uint64_t)st.st_size;
}

static long map_count(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  long n = 0;
  int c;
  while ((c = fgetc(f)) != EOF) n += c == '\n';
  fclose(f);
  return n;
}

static void fill(unsigned char *p, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i < to; i++) p[i] = mm_test_byte(i);
}

static void check(const unsigned char *p, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i < to; i++)
    if (p[i] != mm_test_byte(i))
      FAIL("byte %llu is %u, want %u", (unsigned long long)i, p[i], mm_test_byte(i));
}

TEST(region_anonymous_defaults_reserve_64gib_and_commit_nothing) {
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, NULL));
  ASSERT_EQ(mm_region_reserve(r), (uint64_t)64 << 30);
  ASSERT_EQ(mm_region_size(r), 0);
  ASSERT_EQ(mm_region_committed(r), 0);
  ASSERT_EQ(mm_region_stable(r), 1);
  ASSERT(mm_region_base(r) != NULL);
  ASSERT_OK(mm_region_close(r));
  ASSERT_OK(mm_region_close(NULL));
}

TEST(region_grows_and_shrinks_without_moving) {
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, NULL));
  unsigned char *base = mm_region_base(r);
  ASSERT_OK(mm_region_resize(r, 10 * page() + 3));
  ASSERT(mm_region_base(r) == base);
  ASSERT_EQ(mm_region_size(r), 10 * page() + 3);
  /* Committed ahead, in whole pages, at least 64 KiB. */
  ASSERT(mm_region_committed(r) >= 11 * page() && mm_region_committed(r) >= 65536);
  ASSERT_EQ(mm_region_committed(r) % page(), 0);
  fill(base, 0, 10 * page() + 3);
  ASSERT_OK(mm_region_resize(r, 300 * page()));
  ASSERT(mm_region_base(r) == base);
  check(base, 0, 10 * page() + 3);
  for (uint64_t i = 10 * page() + 3; i < 300 * page(); i++) ASSERT_EQ(base[i], 0);
  ASSERT_OK(mm_region_resize(r, page() + 5));
  ASSERT(mm_region_base(r) == base);
  check(base, 0, page() + 5);
  /* Shrink then grow within a page: the old bytes read as zero again. */
  ASSERT_OK(mm_region_resize(r, page() + 100));
  for (uint64_t i = page() + 5; i < page() + 100; i++) ASSERT_EQ(base[i], 0);
  ASSERT_EQ(mm_region_moves(r), 0);
  ASSERT_OK(mm_region_close(r));
}

TEST(region_growing_past_the_reserve_is_mm_efull_and_changes_nothing) {
  mm_region_opts_t o = {.reserve = 1 << 20};
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT_OK(mm_region_resize(r, 1 << 20));
  unsigned char *base = mm_region_base(r);
  base[(1 << 20) - 1] = 7;
  ASSERT_RC(mm_region_resize(r, (1 << 20) + 1), MM_EFULL);
  ASSERT_RC(mm_region_append(r, "x", 1, NULL), MM_EFULL);
  ASSERT_EQ(mm_region_size(r), 1 << 20);
  ASSERT_EQ(base[(1 << 20) - 1], 7);
  ASSERT_OK(mm_region_close(r));
}

TEST(region_bad_options_are_einval) {
  mm_region_t *r = (mm_region_t *)1;
  mm_region_opts_t o = {.reserve = UINT64_MAX};
  ASSERT_RC(mm_region_create(&r, &o), -EINVAL);
  ASSERT(r == NULL);
  o = (mm_region_opts_t){.reserve = 4096, .initial = 8192};
  ASSERT_RC(mm_region_create(&r, &o), -EINVAL);
  o = (mm_region_opts_t){.flags = MM_REGION_CREATE}; /* no path */
  ASSERT_RC(mm_region_create(&r, &o), -EINVAL);
  o = (mm_region_opts_t){.flags = 1u << 20};
  ASSERT_RC(mm_region_create(&r, &o), -EINVAL);
  o = (mm_region_opts_t){.path = mm_test_path("no/such/dir/f"), .flags = MM_REGION_CREATE};
  ASSERT_RC(mm_region_create(&r, &o), -ENOENT);
  o = (mm_region_opts_t){.path = mm_test_path("missing")};
  ASSERT_RC(mm_region_create(&r, &o), -ENOENT);
  o = (mm_region_opts_t){.path = mm_test_dir()};
  ASSERT_RC(mm_region_create(&r, &o), -EISDIR);
  ASSERT_RC(mm_region_create(NULL, NULL), -EINVAL);
}

TEST(region_pointers_survive_10000_growth_steps) {
  int backed;
  for (backed = 0; backed <= 1; backed++) {
    mm_region_opts_t o = {.reserve = 1 << 30};
    if (backed) {
      o.path = mm_test_path("grow");
      o.flags = MM_REGION_CREATE;
    }
    mm_region_t *r;
    ASSERT_OK(mm_region_create(&r, &o));
    long maps_before = map_count();
    unsigned char *first = mm_region_base(r);
    uint64_t total = 0;
    for (int step = 0; step < 10000; step++) {
      unsigned char chunk[700];
      size_t n = 1 + (size_t)(step * 37 % 700);
      for (size_t i = 0; i < n; i++) chunk[i] = mm_test_byte(total + i);
      uint64_t at;
      ASSERT_OK(mm_region_append(r, chunk, n, &at));
      ASSERT_EQ(at, total);
      total += n;
      if (step % 1000 == 999) ASSERT_OK(mm_region_resize(r, total + 5000));
      if (step % 1000 == 999) ASSERT_OK(mm_region_resize(r, total));
    }
    ASSERT(mm_region_base(r) == first);
    ASSERT_EQ(mm_region_size(r), total);
    check(first, 0, total); /* through the pointer taken at the start */
    ASSERT_EQ(mm_region_moves(r), 0);
    /* Growth did not eat mappings: a file's adjacent mappings merge. */
    ASSERT(map_count() <= maps_before + 3);
    ASSERT_OK(mm_region_close(r));
  }
  ASSERT(file_size(mm_test_path("grow")) > 3000000);
}

TEST(region_file_backed_grows_the_file_and_reopens_with_its_contents) {
  const char *p = mm_test_path("f");
  mm_region_opts_t o = {.path = p, .flags = MM_REGION_CREATE | MM_REGION_EXCL};
  mm_region_t *r;
  mode_t old = umask(0);
  ASSERT_OK(mm_region_create(&r, &o));
  umask(old);
  struct stat st;
  ASSERT(stat(p, &st) == 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_OK(mm_region_resize(r, 5 * page() + 11));
  /* While open the file is as long as what is committed. */
  ASSERT_EQ(file_size(p), mm_region_committed(r));
  ASSERT(file_size(p) >= 6 * page());
  fill(mm_region_base(r), 0, 5 * page() + 11);
  ASSERT_OK(mm_region_sync(r, 0, 0, MM_SYNC_WAIT));
  ASSERT_OK(mm_region_sync(r, 3, 100, MM_SYNC_ASYNC));
  ASSERT_RC(mm_region_sync(r, 0, 100 * page(), MM_SYNC_WAIT), MM_ERANGE);
  ASSERT_OK(mm_region_close(r));
  ASSERT_EQ(file_size(p), 5 * page() + 11); /* exactly the size on close */
  ASSERT_RC(mm_region_create(&r, &o), -EEXIST);

  o.flags = 0;
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT_EQ(mm_region_size(r), 5 * page() + 11);
  check(mm_region_base(r), 0, 5 * page() + 11);
  ASSERT_OK(mm_region_append(r, "tail", 4, NULL));
  ASSERT_OK(mm_region_close(r));
  ASSERT_EQ(file_size(p), 5 * page() + 15);
  /* MM_REGION_TRUNCATE starts over. */
  o.flags = MM_REGION_TRUNCATE;
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT_EQ(mm_region_size(r), 0);
  ASSERT_OK(mm_region_close(r));
  ASSERT_EQ(file_size(p), 0);
}

TEST(region_file_larger_than_the_reserve_raises_the_reserve) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 3 * page() + 1);
  mm_region_opts_t o = {.path = p, .reserve = page()};
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT_EQ(mm_region_reserve(r), 3 * page() + 1);
  check(mm_region_base(r), 0, 3 * page() + 1);
  ASSERT_RC(mm_region_resize(r, 4 * page()), MM_EFULL);
  ASSERT_OK(mm_region_close(r));
  ASSERT_EQ(file_size(p), 3 * page() + 1);
}

TEST(region_shrinking_gives_memory_back) {
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, NULL));
  ASSERT_OK(mm_region_resize(r, 256 << 20));
  memset(mm_region_base(r), 1, 256 << 20);
  uint64_t full = rss();
  ASSERT_OK(mm_region_resize(r, 16 << 20));
  uint64_t after = rss();
  ASSERT(full - after >= (uint64_t)230 << 20);
  /* Append slack is given back by trim. */
  ASSERT_OK(mm_region_append(r, NULL, 1, NULL));
  ASSERT(mm_region_committed(r) > (16u << 20) + page());
  ASSERT_OK(mm_region_trim(r));
  ASSERT_EQ(mm_region_committed(r), (16u << 20) + page());
  ASSERT_OK(mm_region_close(r));
}

TEST(region_file_backed_shrink_truncates_the_file) {
  const char *p = mm_test_path("f");
  mm_region_opts_t o = {.path = p, .flags = MM_REGION_CREATE, .initial = 64 << 20};
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT_EQ(file_size(p), 64 << 20);
  memset(mm_region_base(r), 2, 64 << 20);
  ASSERT_OK(mm_region_resize(r, 1 << 20));
  ASSERT_EQ(file_size(p), 1 << 20);
  struct stat st;
  ASSERT(stat(p, &st) == 0);
  ASSERT((uint64_t)st.st_blocks * 512 <= (2u << 20)); /* blocks released */
  ASSERT_OK(mm_region_close(r));
}

TEST(region_full_disk_is_an_error_from_grow_not_a_sigbus) {
  const char *p = mm_test_path("f");
  mm_region_opts_t o = {.path = p, .flags = MM_REGION_CREATE, .initial = page()};
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, &o));
  unsigned char *base = mm_region_base(r);
  base[0] = 9;
  uint64_t committed = mm_region_committed(r);
  /* A full disk fails every allocation: sticky. */
  mm__fault_set(MM_SYS_FALLOCATE, 1, ENOSPC, 1);
  ASSERT_RC(mm_region_resize(r, 100 * page()), -ENOSPC);
  ASSERT_EQ(mm_region_size(r), page());
  ASSERT_EQ(mm_region_committed(r), committed);
  ASSERT_EQ(file_size(p), committed);
  ASSERT_RC(mm_region_append(r, NULL, committed, NULL), -ENOSPC);
  ASSERT_EQ(mm_region_size(r), page());
  mm__fault_clear();
  ASSERT(mm_region_base(r) == base && base[0] == 9);
  ASSERT_OK(mm_region_close(r));

  /* And a real one: a 1 MiB tmpfs. */
  const char *dir = mm_test_path("tiny");
  ASSERT(mkdir(dir, 0700) == 0);
  char cmd[1024], path[1100];
  snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=1m tmpfs %s 2>/dev/null", dir);
  if (system(cmd) != 0) SKIP("cannot mount a 1 MiB tmpfs (needs root); injected ENOSPC passed");
  snprintf(path, sizeof path, "%s/f", dir);
  o.path = path;
  int rc = mm_region_create(&r, &o);
  int rc2 = -1, rc3 = -1, rc4 = -1;
  uint64_t size = 0, size2 = 0;
  if (rc == 0) {
    rc2 = mm_region_resize(r, 4 << 20);
    size = mm_region_size(r);
    /* 960 KiB still fits, though the room ahead would not: it is had
     * without the room. */
    rc4 = mm_region_resize(r, 960 << 10);
    size2 = mm_region_size(r);
    rc3 = mm_region_close(r);
  }
  snprintf(cmd, sizeof cmd, "umount %s", dir);
  if (system(cmd) != 0) FAIL("umount");
  ASSERT_OK(rc);
  ASSERT_RC(rc2, -ENOSPC);
  ASSERT_EQ(size, page());
  ASSERT_OK(rc4);
  ASSERT_EQ(size2, 960 << 10);
  ASSERT_OK(rc3);
}

TEST(region_read_only_file_is_refused_clearly) {
  const char *p = mm_test_path("ro");
  mm_test_write_file(p, 100);
  if (geteuid() != 0) {
    ASSERT(chmod(p, 0400) == 0);
    mm_region_opts_t o = {.path = p};
    mm_region_t *r;
    ASSERT_RC(mm_region_create(&r, &o), -EACCES);
    return;
  }
  /* Root ignores file modes: use a read-only mount instead. */
  const char *dir = mm_test_path("romnt");
  ASSERT(mkdir(dir, 0700) == 0);
  char cmd[1024], path[1100];
  snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=1m tmpfs %s && echo x > %s/f && mount -o remount,ro %s",
           dir, dir, dir);
  if (system(cmd) != 0) SKIP("cannot make a read-only mount");
  snprintf(path, sizeof path, "%s/f", dir);
  mm_region_opts_t o = {.path = path};
  mm_region_t *r;
  int rc = mm_region_create(&r, &o);
  snprintf(cmd, sizeof cmd, "umount %s", dir);
  if (system(cmd) != 0) FAIL("umount");
  ASSERT_RC(rc, -EROFS);
}

TEST(region_kernel_failures_leave_the_region_as_it_was) {
  mm_region_t *r;
  ASSERT_OK(mm_region_create(&r, NULL));
  ASSERT_OK(mm_region_resize(r, 3 * page()));
  unsigned char *base = mm_region_base(r);
  fill(base, 0, 3 * page());
  uint64_t committed = mm_region_committed(r);
  mm__fault_set(MM_SYS_MPROTECT, 1, ENOMEM, 1);
  ASSERT_RC(mm_region_resize(r, committed + page()), -ENOMEM);
  mm__fault_clear();
  ASSERT_EQ(mm_region_size(r), 3 * page());
  ASSERT_EQ(mm_region_committed(r), committed);
  mm__fault_set(MM_SYS_MADVISE, 1, EINVAL, 0);
  ASSERT_RC(mm_region_resize(r, page()), -EINVAL);
  ASSERT_EQ(mm_region_size(r), 3 * page());
  check(base, 0, 3 * page());
  ASSERT_OK(mm_region_close(r));
  /* Creation: the reservation itself failing for lack of memory falls
   * back, unless the caller insists on a stable address. */
  mm__fault_set(MM_SYS_MMAP, 1, ENOMEM, 0);
  mm_region_opts_t o = {.flags = MM_REGION_STABLE};
  ASSERT_RC(mm_region_create(&r, &o), -ENOMEM);
  mm__fault_set(MM_SYS_OPEN, 1, EMFILE, 0);
  o = (mm_region_opts_t){.path = mm_test_path("x"), .flags = MM_REGION_CREATE};
  ASSERT_RC(mm_region_create(&r, &o), -EMFILE);
  /* File-backed: mapping the new part fails after fallocate: the file is
   * put back. */
  ASSERT_OK(mm_region_create(&r, &o));
  ASSERT_OK(mm_region_resize(r, page()));
  committed = mm_region_committed(r);
  mm__fault_set(MM_SYS_MMAP, 1, ENOMEM, 1);
  ASSERT_RC(mm_region_resize(r, committed + page()), -ENOMEM);
  mm__fault_clear();
  ASSERT_EQ(file_size(mm_test_path("x")), committed);
  ASSERT_EQ(mm_region_size(r), page());
  /* Shrink: ftruncate fails; the tail is mapped back, nothing lost. */
  ASSERT_OK(mm_region_resize(r, 40 * page()));
  ((unsigned char *)mm_region_base(r))[30 * page()] = 0x5A;
  mm__fault_set(MM_SYS_FTRUNCATE, 1, EIO, 0);
  ASSERT_RC(mm_region_resize(r, page()), -EIO);
  ASSERT_EQ(mm_region_size(r), 40 * page());
  ASSERT_EQ(((unsigned char *)mm_region_base(r))[30 * page()], 0x5A);
  ASSERT_OK(mm_region_close(r));
}

TEST(region_small_address_space_falls_back_to_remapping) {
  /* What a 32-bit process sees: the 64 GiB reserve cannot be had. */
  struct rlimit rl = {(rlim_t)2 << 30, (rlim_t)2 << 30};
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  SKIP("sanitizers cannot run under a small RLIMIT_AS");
#endif
  ASSERT(setrlimit(RLIMIT_AS, &rl) == 0);
  mm_region_t *r;
  mm_region_opts_t o = {.flags = MM_REGION_STABLE};
  ASSERT_RC(mm_region_create(&r, &o), -ENOMEM);
  for (int backed = 0; backed <= 1; backed++) {
    o = (mm_region_opts_t){0};
    if (backed) o.path = mm_test_path("f"), o.flags = MM_REGION_CREATE;
    ASSERT_OK(mm_region_create(&r, &o));
    ASSERT_EQ(mm_region_stable(r), 0);
    uint64_t total = 0;
    for (int i = 0; i < 2000; i++) {
      unsigned char chunk[4000];
      for (size_t k = 0; k < sizeof chunk; k++) chunk[k] = mm_test_byte(total + k);
      ASSERT_OK(mm_region_append(r, chunk, sizeof chunk, NULL));
      total += sizeof chunk;
      /* Something else takes the address space after the region, so that
       * it has to move to grow. */
      if (i % 500 == 0)
        ASSERT(mmap(NULL, page(), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED);
    }
    check(mm_region_base(r), 0, total);
    /* The blockers forced moves, and each was counted. */
    if (mm_region_moves(r) == 0) FAIL("a fallback region grew 8 MB past blockers without moving");
    ASSERT_OK(mm_region_resize(r, 1000));
    check(mm_region_base(r), 0, 1000);
    ASSERT_OK(mm_region_resize(r, 0));
    ASSERT_OK(mm_region_resize(r, 10));
    ASSERT_EQ(((unsigned char *)mm_region_base(r))[9], 0);
    ASSERT_OK(mm_region_close(r));
  }
}

/* ---- larger than the memory a process may use ----------------------- */

struct cg {
  char dir[256];
};

/* A memory cgroup (v1 or v2) limited to `limit` bytes, or skip. */
static void cg_make(struct cg *c, uint64_t limit) {
  char path[512];
  FILE *f;
  snprintf(c->dir, sizeof c->dir, "/sys/fs/cgroup/memory/memmap-test-%d", (int)getpid());
  if (mkdir(c->dir, 0755) == 0) {
    snprintf(path, sizeof path, "%s/memory.limit_in_bytes", c->dir);
  } else {
    /* cgroup v2: needs the memory controller enabled for children. */
    snprintf(c->dir, sizeof c->dir, "/sys/fs/cgroup/memmap-test-%d", (int)getpid());
    if (mkdir(c->dir, 0755) != 0)
      SKIP("cannot create a memory cgroup (v1 or v2): %s", strerror(errno));
    snprintf(path, sizeof path, "%s/memory.max", c->dir);
  }
  f = fopen(path, "w");
  if (!f || fprintf(f, "%llu\n", (unsigned long long)limit) < 0 || fclose(f) != 0) {
    rmdir(c->dir);
    SKIP("cannot set the memory limit in %s", path);
  }
}

static void cg_enter(struct cg *c) {
  char path[512];
  snprintf(path, sizeof path, "%s/cgroup.procs", c->dir);
  FILE *f = fopen(path, "w");
  if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) _exit(90);
}

/* In the cgroup: make a 1 GiB region, fill it with a pattern, verify. */
static int fill_gib(struct cg *c, const char *path) {
  pid_t pid = fork();
  if (pid == 0) {
    cg_enter(c);
    mm_region_opts_t o = {.path = path, .flags = path ? MM_REGION_CREATE : 0};
    mm_region_t *r;
    if (mm_region_create(&r, &o) != 0) _exit(91);
    const uint64_t gib = (uint64_t)1 << 30;
    if (mm_region_resize(r, gib) != 0) _exit(92);
    uint64_t *w = mm_region_base(r);
    for (uint64_t i = 0; i < gib / 8; i++) w[i] = i * 0x9E3779B97F4A7C15ull;
    for (uint64_t i = 0; i < gib / 8; i++)
      if (w[i] != i * 0x9E3779B97F4A7C15ull) _exit(93);
    _exit(mm_region_close(r) == 0 ? 0 : 94);
  }
  int st;
  ASSERT(waitpid(pid, &st, 0) == pid);
  return st;
}

TEST_T(region_file_backed_gib_fits_in_a_256mib_cgroup_where_anonymous_is_killed, 300) {
  SKIP_UNDER_TSAN();
#if defined(__SANITIZE_ADDRESS__)
  SKIP("AddressSanitizer's shadow memory does not fit a 256 MiB cgroup");
#endif
  struct cg c;
  cg_make(&c, (uint64_t)256 << 20);
  int file_st = fill_gib(&c, mm_test_path("big"));
  int anon_st = fill_gib(&c, NULL);
  rmdir(c.dir);
  if (!(WIFEXITED(file_st) && WEXITSTATUS(file_st) == 0))
    FAIL("file-backed child: %s %d", WIFEXITED(file_st) ? "exit" : "signal",
         WIFEXITED(file_st) ? WEXITSTATUS(file_st) : WTERMSIG(file_st));
  if (!(WIFSIGNALED(anon_st) && WTERMSIG(anon_st) == SIGKILL))
    FAIL("anonymous child was not killed by the limit: %s %d",
         WIFEXITED(anon_st) ? "exit" : "signal",
         WIFEXITED(anon_st) ? WEXITSTATUS(anon_st) : WTERMSIG(anon_st));
  ASSERT_EQ(file_size(mm_test_path("big")), (uint64_t)1 << 30);
}
