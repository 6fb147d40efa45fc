/*
 * test_env.c - the environment report (memmap/env.h) and `memmap doctor`.
 *
 * Values are checked against sources the library does not share code with:
 * getrlimit, sysconf, files under /proc and /sys read with stdio, statfs,
 * and the coreutils commands stat -f and df. Advice is checked both on the
 * real machine (a limit lowered in the test's own process or in a shell
 * child) and on made-up environments, one setting at a time.
 *
 * Each test runs in its own forked process (runner.c), so tests lower
 * rlimits, arm fault injection and unshare their mount namespace freely.
 */
#include "test.h"

#include <sched.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memmap/env.h"
#include "sys.h"

#if defined(__SANITIZE_ADDRESS__)
#define ENV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ENV_ASAN 1
#endif
#endif

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

#define run mm_test_run

#define MEMMAP "%s/memmap"

/* Run `memmap doctor ARGS` and fail, with what it printed, unless it exits
 * with `want`. Until the doctor subcommand is registered in cli/main.c this
 * fails with "'doctor' is not a memmap command". */
static void doctor(char *out, size_t cap, int want, const char *args) {
  int rc = run(out, cap, MEMMAP " doctor %s 2>&1", mm_test_bindir(), args);
  if (rc != want)
    FAIL("memmap doctor %s: exit %d, want %d; output:\n%s", args, rc, want, out);
}

/* First line of a file, without the newline; "" when unreadable. */
static void read_line(const char *path, char *buf, size_t cap) {
  buf[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) return;
  if (!fgets(buf, (int)cap, f)) buf[0] = 0;
  fclose(f);
  buf[strcspn(buf, "\n")] = 0;
}

static int64_t meminfo(const char *key) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return -1;
  char line[256];
  int64_t v = -1;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, klen) && line[klen] == ':') {
      v = strtoll(line + klen + 1, NULL, 10) * 1024;
      break;
    }
  fclose(f);
  return v;
}

static uint64_t rl(uint64_t v) {
  return v == (uint64_t)RLIM_INFINITY ? MM_ENV_UNLIMITED : v;
}

static const mm_env_advice_t *find_advice(const mm_env_advice_t *a, int n,
                                          const char *key) {
  for (int i = 0; i < n; i++)
    if (!strcmp(a[i].key, key)) return &a[i];
  return NULL;
}

static int advise(const mm_env_t *e, mm_env_advice_t *a, int cap) {
  int n = mm_env_advise(e, a, cap);
  if (n < 0) FAIL("mm_env_advise: %s", mm_errname(n));
  if (n > cap) FAIL("mm_env_advise: %d items for an array of %d", n, cap);
  return n;
}

static void list_advice(const mm_env_advice_t *a, int n, char *buf, size_t cap) {
  buf[0] = 0;
  for (int i = 0; i < n; i++) {
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "%s ", a[i].key);
  }
}

/* ------------------------------------------------------------------------ */
/* values against independent sources                                       */

TEST(env_read_matches_sysconf_getrlimit_and_the_pointer_width) {
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  ASSERT_EQ(e.page_size, sysconf(_SC_PAGESIZE));
  ASSERT_EQ(e.ptr_bits, (int)(sizeof(void *) * 8));
  struct rlimit r;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &r), 0);
  ASSERT(e.nofile_soft == rl(r.rlim_cur) && e.nofile_hard == rl(r.rlim_max));
  ASSERT_EQ(getrlimit(RLIMIT_AS, &r), 0);
  ASSERT(e.as_soft == rl(r.rlim_cur) && e.as_hard == rl(r.rlim_max));
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &r), 0);
  ASSERT(e.memlock_soft == rl(r.rlim_cur) && e.memlock_hard == rl(r.rlim_max));
  /* The lowered limit is what is reported, not a cached one. */
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &r), 0);
  r.rlim_cur = 100;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &r), 0);
  ASSERT_OK(mm_env_read(&e, NULL));
  ASSERT_EQ(e.nofile_soft, 100);
  ASSERT(e.nofile_used > 0 && e.nofile_used < 100);
}

TEST(env_descriptors_in_use_count_the_ones_opened) {
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  int64_t before = e.nofile_used;
  ASSERT(before >= 0);
  int fds[10];
  for (int i = 0; i < 10; i++) ASSERT((fds[i] = dup(0)) >= 0);
  ASSERT_OK(mm_env_read(&e, NULL));
  ASSERT_EQ(e.nofile_used, before + 10);
  for (int i = 0; i < 10; i++) close(fds[i]);
}

TEST(env_map_counts_match_proc) {
  char line[64];
  read_line("/proc/sys/vm/max_map_count", line, sizeof line);
  if (!line[0]) SKIP("/proc/sys/vm/max_map_count is unreadable here");
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  ASSERT_EQ(e.max_map_count, atoll(line));
  /* Count /proc/self/maps ourselves; allocations in between may add a few. */
  FILE *f = fopen("/proc/self/maps", "r");
  ASSERT(f);
  long lines = 0;
  int c;
  while ((c = fgetc(f)) != EOF) lines += c == '\n';
  fclose(f);
  ASSERT(e.map_count > 0);
  if (e.map_count < lines - 8 || e.map_count > lines + 8)
    FAIL("map_count %lld, /proc/self/maps has %ld lines", (long long)e.map_count, lines);
}

TEST(env_memory_values_match_proc_and_sys) {
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  ASSERT_EQ(e.mem_total, meminfo("MemTotal"));
  ASSERT_EQ(e.swap_total, meminfo("SwapTotal"));
  ASSERT_EQ(e.commit_limit, meminfo("CommitLimit"));
  int64_t hp = meminfo("Hugepagesize");
  if (hp >= 0) ASSERT_EQ(e.hugepage_default, hp);
  char line[256];
  read_line("/proc/sys/vm/overcommit_memory", line, sizeof line);
  ASSERT_EQ(e.overcommit_memory, line[0] ? atoi(line) : -1);
  read_line("/proc/sys/vm/overcommit_ratio", line, sizeof line);
  ASSERT_EQ(e.overcommit_ratio, line[0] ? atoll(line) : -1);
  /* THP modes: the bracketed word. */
  const char *files[] = {"/sys/kernel/mm/transparent_hugepage/enabled",
                         "/sys/kernel/mm/transparent_hugepage/shmem_enabled"};
  const char *got[] = {e.thp_anon, e.thp_shmem};
  for (int i = 0; i < 2; i++) {
    read_line(files[i], line, sizeof line);
    char want[32] = "";
    char *o = strchr(line, '['), *c = o ? strchr(o, ']') : NULL;
    if (c) snprintf(want, sizeof want, "%.*s", (int)(c - o - 1), o + 1);
    if (strcmp(got[i], want)) FAIL("%s: got '%s', want '%s'", files[i], got[i], want);
  }
  /* Huge page sizes: one per hugepages-NkB directory, smallest first. */
  int n = 0;
  FILE *p = popen("ls /sys/kernel/mm/hugepages 2>/dev/null", "r");
  ASSERT(p);
  while (fgets(line, sizeof line, p)) {
    unsigned long long kb;
    if (sscanf(line, "hugepages-%llukB", &kb) != 1) continue;
    int found = 0;
    for (int i = 0; i < e.nhugepages; i++) found |= e.hugepages[i].size == kb * 1024;
    if (!found) FAIL("huge page size %llu kB not reported", kb);
    n++;
  }
  pclose(p);
  ASSERT_EQ(e.nhugepages, n);
  for (int i = 1; i < e.nhugepages; i++)
    ASSERT(e.hugepages[i - 1].size < e.hugepages[i].size);
  for (int i = 0; i < e.nhugepages; i++) {
    char path[128];
    snprintf(path, sizeof path, "/sys/kernel/mm/hugepages/hugepages-%llukB/nr_hugepages",
             (unsigned long long)(e.hugepages[i].size / 1024));
    read_line(path, line, sizeof line);
    ASSERT_EQ(e.hugepages[i].total, atoll(line));
  }
}

TEST(env_shm_matches_statfs_of_dev_shm) {
  struct statfs sf;
  if (statfs("/dev/shm", &sf) != 0) {
    mm_env_t e;
    ASSERT_OK(mm_env_read(&e, NULL));
    ASSERT(e.shm_size == -1);
    SKIP("no /dev/shm here: checked that its size is unknown");
  }
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  uint64_t unit = sf.f_frsize ? (uint64_t)sf.f_frsize : (uint64_t)sf.f_bsize;
  ASSERT_EQ(e.shm_size, (int64_t)(sf.f_blocks * unit));
  /* Others may be using /dev/shm meanwhile. */
  int64_t want_free = (int64_t)(sf.f_bavail * unit);
  ASSERT(e.shm_free <= e.shm_size);
  ASSERT(llabs(e.shm_free - want_free) <= ((int64_t)64 << 20));
  if (sf.f_type == 0x01021994) ASSERT(!strcmp(e.shm_fstype, "tmpfs"));
}

TEST(env_filesystem_of_a_path_matches_stat_f_and_df) {
  const char *dir = mm_test_dir();
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, dir));
  char out[256];
  ASSERT_EQ(run(out, sizeof out, "stat -f -c %%t %s", dir), 0);
  ASSERT_EQ(e.fs_magic, strtoull(out, NULL, 16));
  struct statfs sf;
  ASSERT_EQ(statfs(dir, &sf), 0);
  uint64_t unit = sf.f_frsize ? (uint64_t)sf.f_frsize : (uint64_t)sf.f_bsize;
  ASSERT_EQ(e.fs_size, (int64_t)(sf.f_blocks * unit));
  ASSERT(e.fs_free >= 0 && e.fs_free <= e.fs_size);
  ASSERT_EQ(e.fs_readonly, 0);
  ASSERT(e.fs_mount[0] == '/');
  /* df reads the mount table, as the library does; stat -f names the
   * magic number (ext2, 3 and 4 share one, so compare only the others). */
  if (run(out, sizeof out, "df --output=fstype %s 2>/dev/null | tail -n 1", dir) == 0 &&
      out[0]) {
    out[strcspn(out, "\n ")] = 0;
    if (strcmp(out, e.fs_type)) FAIL("df says '%s', library '%s'", out, e.fs_type);
  }
  ASSERT_EQ(run(out, sizeof out, "stat -f -c %%T %s", dir), 0);
  out[strcspn(out, "\n")] = 0;
  const char *same[] = {"tmpfs", "xfs", "btrfs", "zfs", "f2fs"};
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
    if (!strcmp(out, same[i]) && strcmp(e.fs_type, out))
      FAIL("stat -f says '%s', library '%s'", out, e.fs_type);
  ASSERT(e.fs_kind != MM_ENV_FS_UNKNOWN);
  /* A file gives the filesystem of the file. */
  const char *f = mm_test_path("file");
  mm_test_write_file(f, 10);
  mm_env_t e2;
  ASSERT_OK(mm_env_read(&e2, f));
  ASSERT(e2.fs_magic == e.fs_magic && !strcmp(e2.fs_type, e.fs_type) &&
         !strcmp(e2.fs_mount, e.fs_mount));
}

TEST(env_proc_and_sys_are_pseudo_filesystems) {
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, "/proc/self/status"));
  ASSERT(!strcmp(e.fs_type, "proc"));
  ASSERT_EQ(e.fs_kind, MM_ENV_FS_PSEUDO);
  ASSERT(!strcmp(e.fs_mount, "/proc"));
  mm_env_advice_t a[32];
  int n = advise(&e, a, 32);
  const mm_env_advice_t *fs = find_advice(a, n, "fs");
  ASSERT(fs && strstr(fs->message, "cannot be mapped"));
}

/* Move the test process into a mount namespace of its own, so its mounts
 * vanish when it exits; skips unless that is allowed. */
static void private_mounts(const char *why) {
  if (geteuid() != 0) SKIP("%s needs root", why);
  if (unshare(CLONE_NEWNS) != 0) SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    SKIP("making mounts private: %s", strerror(errno));
}

/* Mount a tmpfs in the test's private mount namespace at a new directory
 * `name` of the test directory. Returns the mount point. */
static const char *mount_tmpfs(const char *name, const char *opts) {
  private_mounts("mounting a tmpfs");
  const char *mnt = mm_test_path(name);
  if (mkdir(mnt, 0700) != 0) FAIL("mkdir %s: %s", mnt, strerror(errno));
  if (mount("memmaptest", mnt, "tmpfs", 0, opts) != 0)
    SKIP("mount tmpfs: %s", strerror(errno));
  return mnt;
}

TEST(env_a_mounted_tmpfs_is_reported_as_tmpfs_in_memory) {
  const char *mnt = mount_tmpfs("mnt", "size=8m");
  char real[4096];
  ASSERT(realpath(mnt, real));
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, mnt));
  ASSERT(!strcmp(e.fs_type, "tmpfs"));
  ASSERT_EQ(e.fs_kind, MM_ENV_FS_MEMORY);
  ASSERT_EQ(e.fs_magic, 0x01021994);
  ASSERT(!strcmp(e.fs_mount, real));
  struct statfs sf;
  ASSERT_EQ(statfs(mnt, &sf), 0);
  ASSERT_EQ(e.fs_size, (int64_t)8 << 20);
  ASSERT_EQ(e.fs_size, (int64_t)(sf.f_blocks * (uint64_t)sf.f_bsize));
  ASSERT_EQ(e.fs_free, (int64_t)(sf.f_bavail * (uint64_t)sf.f_bsize));
  char out[8192];
  ASSERT_EQ(run(out, sizeof out, "stat -f -c %%T %s", mnt), 0);
  ASSERT(!strncmp(out, "tmpfs", 5));
  /* Small and in memory: both pieces of advice. */
  mm_env_advice_t a[32];
  int n = advise(&e, a, 32);
  ASSERT(find_advice(a, n, "fs") && strstr(find_advice(a, n, "fs")->message, "in memory"));
  ASSERT(find_advice(a, n, "fs_free"));
  /* Read-only after a remount, and said so. */
  ASSERT_EQ(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, "size=8m"), 0);
  ASSERT_OK(mm_env_read(&e, mnt));
  ASSERT_EQ(e.fs_readonly, 1);
  n = advise(&e, a, 32);
  ASSERT(find_advice(a, n, "fs_readonly"));
  ASSERT(!find_advice(a, n, "fs_free"));
  /* The command sees the same. */
  char args[1024];
  snprintf(args, sizeof args, "%s", mnt);
  doctor(out, sizeof out, 0, args);
  ASSERT(strstr(out, "tmpfs (memory, magic 0x1021994)"));
  ASSERT(strstr(out, "read-only:           yes"));
  ASSERT(strstr(out, "fs_readonly:"));
  /* Calibrating there cannot create its scratch file: exit 1, and why. */
  snprintf(args, sizeof args, "--calibrate --max-size 8K %s", mnt);
  doctor(out, sizeof out, 1, args);
  ASSERT(strstr(out, "memmap: doctor: calibrating in "));
  ASSERT(strstr(out, ": Read-only file system\n"));
}

TEST(env_a_path_with_spaces_finds_its_mount) {
  /* mountinfo writes the space as \040. */
  const char *sub = mount_tmpfs("a dir", "size=4m");
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, sub));
  char real[4096];
  ASSERT(realpath(sub, real));
  if (strcmp(e.fs_mount, real)) FAIL("mount '%s', want '%s'", e.fs_mount, real);
  ASSERT(!strcmp(e.fs_type, "tmpfs"));
}

TEST(env_null_path_leaves_the_filesystem_unknown) {
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  ASSERT(e.fs_type[0] == 0 && e.fs_mount[0] == 0 && e.fs_magic == 0);
  ASSERT_EQ(e.fs_kind, MM_ENV_FS_UNKNOWN);
  ASSERT(e.fs_size == -1 && e.fs_free == -1 && e.fs_readonly == -1);
  ASSERT(e.page_size > 0);
}

TEST(env_missing_path_is_an_error_but_the_rest_is_filled) {
  mm_env_t e;
  char p[600];
  snprintf(p, sizeof p, "%s/none/such", mm_test_dir());
  ASSERT_RC(mm_env_read(&e, p), -ENOENT);
  ASSERT(e.page_size > 0 && e.nofile_soft > 0);
  ASSERT(e.fs_type[0] == 0 && e.fs_magic == 0 && e.fs_size == -1);
  ASSERT_RC(mm_env_read(NULL, "."), -EINVAL);
  ASSERT_RC(mm_env_advise(NULL, NULL, 0), -EINVAL);
  ASSERT_OK(mm_env_read(&e, NULL));
  ASSERT_RC(mm_env_advise(&e, NULL, -1), -EINVAL);
  mm_env_advice_t a[1];
  ASSERT_RC(mm_env_advise(&e, NULL, 1), -EINVAL);
  ASSERT(mm_env_advise(&e, a, 0) >= 0);
}

TEST(env_cachestat_matches_a_direct_probe) {
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 8192);
  FILE *f = fopen(p, "r");
  ASSERT(f);
  struct { uint64_t off, len; } range = {0, 0};
  uint64_t cs[5];
  long r = syscall(451, fileno(f), &range, cs, 0);
  int err = errno;
  fclose(f);
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
  if (r == 0) ASSERT_EQ(e.cachestat, 1);
  else if (err == ENOSYS) ASSERT_EQ(e.cachestat, 0);
  else FAIL("cachestat probe: %s", strerror(err));
#else
  (void)r, (void)err;
  ASSERT(e.cachestat >= -1 && e.cachestat <= 1);
#endif
}

TEST(env_hypervisor_and_balloon_match_cpuinfo_and_sysfs) {
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  char out[4096];
  /* The "flags" line of x86 cpuinfo. */
  int have_flags = run(out, sizeof out, "grep -q '^flags' /proc/cpuinfo") == 0;
  if (have_flags) {
    int hv = run(out, sizeof out, "grep -m1 '^flags' /proc/cpuinfo | grep -qw hypervisor") == 0;
    ASSERT_EQ(e.hypervisor, hv);
  }
  /* Balloon: a virtio device with id 0x0005; reporting is bit 5 of the
   * features string (the sixth character). */
  int balloon = 0, reporting = 0;
  FILE *p = popen("for d in /sys/bus/virtio/devices/*; do "
                  "[ \"$(cat $d/device 2>/dev/null)\" = 0x0005 ] && cat $d/features; "
                  "done 2>/dev/null", "r");
  ASSERT(p);
  char line[512];
  while (fgets(line, sizeof line, p)) {
    balloon = 1;
    if (strlen(line) > 5 && line[5] == '1') reporting = 1;
  }
  pclose(p);
  if (access("/sys/bus", F_OK) == 0) {
    ASSERT_EQ(e.balloon, balloon);
    ASSERT_EQ(e.balloon_reporting, reporting);
  }
  if (e.va_bits != -1) ASSERT(e.va_bits >= 32 && e.va_bits <= 64);
}

/* ------------------------------------------------------------------------ */
/* fault injection                                                          */

static void assert_proc_values_unknown(const mm_env_t *e) {
  ASSERT(e->thp_anon[0] == 0 && e->thp_shmem[0] == 0 && e->thp_defrag[0] == 0);
  ASSERT_EQ(e->overcommit_memory, -1);
  ASSERT_EQ(e->overcommit_ratio, -1);
  ASSERT(e->mem_total == -1 && e->swap_total == -1 && e->commit_limit == -1);
  ASSERT_EQ(e->hugepage_default, -1);
  for (int i = 0; i < e->nhugepages; i++)
    ASSERT(e->hugepages[i].total == -1 && e->hugepages[i].free == -1);
  ASSERT_EQ(e->cap_ipc_lock, -1);
  ASSERT_EQ(e->hypervisor, -1);
  ASSERT_EQ(e->va_bits, -1);
  ASSERT_EQ(e->fault_around_bytes, -1);
  /* What needs no file still reads. */
  ASSERT(e->page_size > 0 && e->ptr_bits >= 32 && e->nofile_soft > 0);
  ASSERT(e->kernel[0]);
}

TEST(env_unreadable_proc_and_sys_give_unknown_not_errors) {
  const int errs[] = {EACCES, EIO, ENOENT};
  for (int k = 0; k < 3; k++) {
    mm_env_t e;
    mm__fault_set(MM_SYS_OPEN, 1, errs[k], 1);
    int rc = mm_env_read(&e, mm_test_dir());
    mm__fault_clear();
    ASSERT_OK(rc);
    assert_proc_values_unknown(&e);
    /* The mount table is unreadable too: the type comes from the magic. */
    ASSERT(e.fs_magic != 0 && e.fs_type[0] && e.fs_mount[0] == 0);
    mm_env_advice_t a[32];
    advise(&e, a, 32); /* and advice copes */
  }
  mm_env_t e;
  mm__fault_set(MM_SYS_READ, 1, EIO, 1);
  int rc = mm_env_read(&e, NULL);
  mm__fault_clear();
  ASSERT_OK(rc);
  assert_proc_values_unknown(&e);
  /* Virtio devices present but unreadable: the balloon cannot be known. */
  char out[256];
  if (run(out, sizeof out, "ls /sys/bus/virtio/devices 2>/dev/null | head -1") == 0 && out[0]) {
    ASSERT_EQ(e.balloon, -1);
    ASSERT_EQ(e.balloon_reporting, -1);
  }
}

TEST(env_every_single_failed_open_or_read_is_survived) {
  const int ops[] = {MM_SYS_OPEN, MM_SYS_READ, MM_SYS_CLOSE, MM_SYS_MEMFD_CREATE};
  mm_env_t clean;
  ASSERT_OK(mm_env_read(&clean, mm_test_dir()));
  for (int k = 0; k < 4; k++) {
    unsigned long before = mm__sys_count(ops[k]);
    mm_env_t e;
    ASSERT_OK(mm_env_read(&e, mm_test_dir()));
    unsigned long calls = mm__sys_count(ops[k]) - before;
    if (ops[k] != MM_SYS_MEMFD_CREATE) ASSERT(calls > 5);
    for (unsigned long i = 1; i <= calls; i++) {
      mm__fault_set(ops[k], i, EIO, 0);
      int rc = mm_env_read(&e, mm_test_dir());
      mm__fault_clear();
      if (rc != 0) FAIL("%s call %lu failing: %s", mm__sys_name(ops[k]), i, mm_errname(rc));
      /* Unaffected values stay right. */
      ASSERT_EQ(e.page_size, clean.page_size);
      ASSERT_EQ(e.fs_magic, clean.fs_magic);
    }
  }
  /* Without memfd, cachestat is probed on another file. */
  mm_env_t e;
  mm__fault_set(MM_SYS_MEMFD_CREATE, 1, EMFILE, 1);
  ASSERT_OK(mm_env_read(&e, NULL));
  mm__fault_clear();
  ASSERT_EQ(e.cachestat, clean.cachestat);
}

TEST(env_doctor_prints_unknown_when_proc_and_sys_are_hidden) {
#ifdef ENV_ASAN
  SKIP("AddressSanitizer's runtime needs /proc/self/maps to start the command");
#endif
  private_mounts("hiding /proc and /sys");
  char out[16384];
  /* Build the command line before /proc goes. */
  char cmd[1024];
  snprintf(cmd, sizeof cmd, MEMMAP " doctor %s 2>&1", mm_test_bindir(), mm_test_dir());
  if (mount("none", "/proc", "tmpfs", 0, "size=1m") != 0 ||
      mount("none", "/sys", "tmpfs", 0, "size=1m") != 0)
    SKIP("mounting over /proc and /sys: %s", strerror(errno));
  int rc = run(out, sizeof out, "%s", cmd);
  if (rc != 0) FAIL("exit %d:\n%s", rc, out);
  const char *want[] = {"THP anonymous:       unknown", "overcommit:          unknown",
                        "vm.max_map_count:    unknown", "hypervisor:          unknown",
                        "cachestat:", "page size:           ", "advice:"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(out, want[i])) FAIL("output lacks '%s':\n%s", want[i], out);
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, mm_test_dir()));
  ASSERT_EQ(e.max_map_count, -1);
  ASSERT_EQ(e.map_count, -1);
  ASSERT_EQ(e.nofile_used, -1);
  ASSERT(e.thp_anon[0] == 0);
}

/* ------------------------------------------------------------------------ */
/* advice                                                                   */

/* An environment where nothing should bite. */
static mm_env_t quiet_env(void) {
  mm_env_t e;
  memset(&e, 0, sizeof e);
  e.page_size = 4096;
  e.hugepage_default = 2 << 20;
  e.nhugepages = 1;
  e.hugepages[0].size = 2 << 20;
  strcpy(e.thp_anon, "madvise");
  strcpy(e.thp_shmem, "never");
  strcpy(e.thp_defrag, "madvise");
  e.overcommit_memory = 0;
  e.overcommit_ratio = 50;
  e.commit_limit = (int64_t)16 << 30;
  e.committed = (int64_t)1 << 30;
  e.mem_total = (int64_t)32 << 30;
  e.mem_available = (int64_t)30 << 30;
  e.swap_total = e.swap_free = (int64_t)8 << 30;
  e.nofile_soft = e.nofile_hard = 1 << 20;
  e.nofile_used = 10;
  e.as_soft = e.as_hard = MM_ENV_UNLIMITED;
  e.memlock_soft = e.memlock_hard = MM_ENV_UNLIMITED;
  e.cap_ipc_lock = 0;
  e.max_map_count = 1 << 20;
  e.map_count = 100;
  strcpy(e.shm_fstype, "tmpfs");
  e.shm_size = e.shm_free = (int64_t)16 << 30;
  strcpy(e.fs_type, "ext4");
  e.fs_magic = 0xEF53;
  e.fs_kind = MM_ENV_FS_LOCAL;
  strcpy(e.fs_mount, "/");
  e.fs_readonly = 0;
  e.fs_size = (int64_t)1 << 40;
  e.fs_free = (int64_t)1 << 39;
  strcpy(e.kernel, "6.18.0");
  strcpy(e.machine, "x86_64");
  e.ptr_bits = 64;
  e.va_bits = 48;
  e.cachestat = 1;
  e.fault_around_bytes = 65536;
  e.hypervisor = e.balloon = e.balloon_reporting = 0;
  return e;
}

/* Everything unknown that can be. */
static mm_env_t unknown_env(void) {
  mm_env_t e;
  memset(&e, 0, sizeof e);
  e.page_size = e.hugepage_default = -1;
  e.overcommit_memory = -1;
  e.overcommit_ratio = e.commit_limit = e.committed = -1;
  e.mem_total = e.mem_available = e.swap_total = e.swap_free = -1;
  e.nofile_soft = e.nofile_hard = MM_ENV_UNLIMITED;
  e.as_soft = e.as_hard = e.memlock_soft = e.memlock_hard = MM_ENV_UNLIMITED;
  e.nofile_used = -1;
  e.cap_ipc_lock = -1;
  e.max_map_count = e.map_count = -1;
  e.shm_size = e.shm_free = -1;
  e.fs_readonly = -1;
  e.fs_size = e.fs_free = -1;
  e.ptr_bits = 64;
  e.va_bits = e.cachestat = -1;
  e.fault_around_bytes = -1;
  e.hypervisor = e.balloon = e.balloon_reporting = -1;
  return e;
}

TEST(env_advice_is_silent_when_nothing_bites_or_nothing_is_known) {
  mm_env_advice_t a[32];
  char keys[1024];
  mm_env_t e = quiet_env();
  int n = advise(&e, a, 32);
  list_advice(a, n, keys, sizeof keys);
  if (n) FAIL("advice for a quiet machine: %s", keys);
  e = unknown_env();
  n = advise(&e, a, 32);
  list_advice(a, n, keys, sizeof keys);
  if (n) FAIL("advice from unknown values: %s", keys);
}

#define SET(field_, value_) (e.field_ = (value_))

TEST(env_advice_names_each_setting_that_bites) {
  struct acase {
    const char *what;
    const char *key;
    int severity;
    const char *mention; /* a word the message must contain */
  };
  /* Each case starts from a quiet machine and changes one thing. */
  for (int c = 0;; c++) {
    mm_env_t e = quiet_env();
    struct acase k;
    switch (c) {
    case 0: SET(nofile_soft, 64); k = (struct acase){"nofile 64", "nofile", MM_ENV_WARN, "64"}; break;
    case 1: SET(nofile_soft, 1024); k = (struct acase){"nofile 1024", "nofile", MM_ENV_INFO, "hard limit"}; break;
    case 2: SET(nofile_soft, 2000); SET(nofile_used, 1900); k = (struct acase){"nofile crowded", "nofile", MM_ENV_WARN, "1900 open"}; break;
    case 3: SET(as_soft, (uint64_t)8 << 30); k = (struct acase){"as 8G", "as", MM_ENV_WARN, "8 GiB"}; break;
    case 4: SET(as_soft, (uint64_t)512 << 20); k = (struct acase){"as 512M", "as", MM_ENV_CRITICAL, "512 MiB"}; break;
    case 5: SET(memlock_soft, 65536); k = (struct acase){"memlock 64K", "memlock", MM_ENV_WARN, "64 KiB"}; break;
    case 6: SET(memlock_soft, 8 << 20); k = (struct acase){"memlock 8M", "memlock", MM_ENV_INFO, "CAP_IPC_LOCK"}; break;
    case 7: SET(map_count, 60000); SET(max_map_count, 65530); k = (struct acase){"maps 60000/65530", "map_count", MM_ENV_CRITICAL, "MM_EMAPCOUNT"}; break;
    case 8: SET(map_count, 40000); SET(max_map_count, 65530); k = (struct acase){"maps 40000/65530", "map_count", MM_ENV_WARN, "40000"}; break;
    case 9: SET(max_map_count, 65530); k = (struct acase){"max_map_count default", "max_map_count", MM_ENV_INFO, "sysctl"}; break;
    case 10: SET(max_map_count, 1000); k = (struct acase){"max_map_count 1000", "max_map_count", MM_ENV_WARN, "1000"}; break;
    case 11: SET(overcommit_memory, 2); k = (struct acase){"overcommit 2", "overcommit", MM_ENV_WARN, "50%"}; break;
    case 12: SET(overcommit_memory, 1); k = (struct acase){"overcommit 1", "overcommit", MM_ENV_INFO, "OOM"}; break;
    case 13: SET(swap_total, 0); k = (struct acase){"no swap", "swap", MM_ENV_INFO, "RAM"}; break;
    case 14: SET(shm_size, 64 << 20); SET(shm_free, 60 << 20); k = (struct acase){"shm 64M", "shm", MM_ENV_WARN, "64 MiB"}; break;
    case 15: SET(shm_free, 1 << 20); k = (struct acase){"shm full", "shm", MM_ENV_WARN, "nearly full"}; break;
    case 16: strcpy(e.shm_fstype, "none"); k = (struct acase){"no shm", "shm", MM_ENV_WARN, "memfd"}; break;
    case 17: strcpy(e.fs_type, "nfs4"); SET(fs_kind, MM_ENV_FS_NETWORK); k = (struct acase){"nfs", "fs", MM_ENV_WARN, "nfs4"}; break;
    case 18: strcpy(e.fs_type, "fuse.sshfs"); SET(fs_kind, MM_ENV_FS_FUSE); k = (struct acase){"fuse", "fs", MM_ENV_WARN, "FUSE"}; break;
    case 19: strcpy(e.fs_type, "overlay"); SET(fs_kind, MM_ENV_FS_OVERLAY); k = (struct acase){"overlay", "fs", MM_ENV_INFO, "copies the whole file"}; break;
    case 20: strcpy(e.fs_type, "tmpfs"); SET(fs_kind, MM_ENV_FS_MEMORY); k = (struct acase){"tmpfs", "fs", MM_ENV_INFO, "in memory"}; break;
    case 21: strcpy(e.fs_type, "btrfs"); k = (struct acase){"btrfs", "fs", MM_ENV_INFO, "chattr +C"}; break;
    case 22: SET(fs_readonly, 1); k = (struct acase){"read-only", "fs_readonly", MM_ENV_INFO, "EROFS"}; break;
    case 23: SET(fs_free, 100 << 20); k = (struct acase){"disk full", "fs_free", MM_ENV_WARN, "100 MiB"}; break;
    case 24: SET(page_size, 65536); k = (struct acase){"64K pages", "page_size", MM_ENV_INFO, "64 KiB"}; break;
    case 25: strcpy(e.thp_anon, "never"); k = (struct acase){"thp never", "thp", MM_ENV_INFO, "MM_ADVISE_HUGEPAGE"}; break;
    case 26: strcpy(e.thp_anon, "always"); k = (struct acase){"thp always", "thp", MM_ENV_INFO, "2 MiB"}; break;
    case 27: SET(ptr_bits, 32); k = (struct acase){"32-bit", "addr32", MM_ENV_WARN, "32-bit"}; break;
    case 28: SET(cachestat, 0); k = (struct acase){"no cachestat", "cachestat", MM_ENV_INFO, "mincore"}; break;
    case 29: SET(fault_around_bytes, 4096); k = (struct acase){"fault-around 4K", "fault_around", MM_ENV_INFO, "4 KiB"}; break;
    case 30: SET(hypervisor, 1); k = (struct acase){"hypervisor", "hypervisor", MM_ENV_INFO, "--calibrate"}; break;
    case 31: SET(balloon, 1); SET(balloon_reporting, 1); k = (struct acase){"balloon", "balloon", MM_ENV_WARN, "free page reporting"}; break;
    case 32: strcpy(e.fs_type, "proc"); SET(fs_kind, MM_ENV_FS_PSEUDO); k = (struct acase){"proc", "fs", MM_ENV_INFO, "cannot be mapped"}; break;
    case 33: strcpy(e.fs_type, "zfs"); k = (struct acase){"zfs", "fs", MM_ENV_INFO, "ARC"}; break;
    case 34: strcpy(e.shm_fstype, "ext2/3/4"); k = (struct acase){"shm on disk", "shm", MM_ENV_WARN, "not tmpfs"}; break;
    default: return;
    }
    mm_env_advice_t a[32];
    int n = advise(&e, a, 32);
    char keys[1024];
    list_advice(a, n, keys, sizeof keys);
    if (n != 1) FAIL("%s: want only '%s', got: %s", k.what, k.key, keys);
    if (strcmp(a[0].key, k.key)) FAIL("%s: want '%s', got '%s'", k.what, k.key, a[0].key);
    if (a[0].severity != k.severity)
      FAIL("%s: severity %s, want %s", k.what, mm_env_severity_name(a[0].severity),
           mm_env_severity_name(k.severity));
    if (!strstr(a[0].message, k.mention))
      FAIL("%s: message lacks '%s': %s", k.what, k.mention, a[0].message);
  }
}

TEST(env_advice_is_ordered_counted_like_snprintf_and_never_cut) {
  /* Everything at once, with the longest values. */
  mm_env_t e = quiet_env();
  e.ptr_bits = 32;
  e.as_soft = 100 << 20;
  e.as_hard = (uint64_t)1000 << 30;
  e.nofile_soft = 100;
  e.nofile_hard = 1000000000;
  e.nofile_used = 999999;
  e.memlock_soft = 1000;
  e.memlock_hard = (uint64_t)999 << 40;
  e.map_count = 2000000000;
  e.max_map_count = 2000000001;
  e.overcommit_memory = 2;
  e.overcommit_ratio = 100000;
  e.commit_limit = (int64_t)999 << 40;
  e.committed = (int64_t)998 << 40;
  e.swap_total = 0;
  e.page_size = 65536;
  strcpy(e.thp_anon, "always");
  e.hugepage_default = (int64_t)1 << 30;
  e.shm_size = 1000;
  e.shm_free = 999;
  strcpy(e.fs_type, "fuse.averyveryverylongname123");
  e.fs_kind = MM_ENV_FS_FUSE;
  memset(e.fs_mount, 'm', sizeof e.fs_mount - 1);
  e.fs_readonly = 1;
  e.cachestat = 0;
  e.fault_around_bytes = 4095;
  e.hypervisor = e.balloon = e.balloon_reporting = 1;
  mm_env_advice_t a[32];
  int n = advise(&e, a, 32);
  ASSERT(n >= 14);
  for (int i = 0; i < n; i++) {
    size_t len = strlen(a[i].message);
    if (len >= sizeof a[i].message - 1) FAIL("'%s' is cut: %s", a[i].key, a[i].message);
    if (len < 40 || a[i].message[len - 1] != '.')
      FAIL("'%s' is not a sentence: %s", a[i].key, a[i].message);
    ASSERT(a[i].key[0]);
    if (i) ASSERT(a[i - 1].severity >= a[i].severity);
  }
  ASSERT_EQ(a[0].severity, MM_ENV_CRITICAL);
  /* A short array gets the most severe items and the full count. */
  mm_env_advice_t two[3];
  memset(two, 0x5a, sizeof two);
  ASSERT_EQ(mm_env_advise(&e, two, 2), n);
  ASSERT(!strcmp(two[0].key, a[0].key) && !strcmp(two[1].key, a[1].key));
  ASSERT_EQ(two[2].severity, 0x5a5a5a5a);
  ASSERT_EQ(mm_env_advise(&e, NULL, 0), n);
  ASSERT(!strcmp(mm_env_severity_name(MM_ENV_WARN), "warn"));
  ASSERT(!strcmp(mm_env_severity_name(99), "?"));
  ASSERT(!strcmp(mm_env_fs_kind_name(MM_ENV_FS_NETWORK), "network"));
  ASSERT(!strcmp(mm_env_fs_kind_name(-3), "?"));
}

TEST(env_low_nofile_in_this_process_gives_descriptor_advice) {
  struct rlimit r;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &r), 0);
  r.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &r), 0);
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, NULL));
  mm_env_advice_t a[32];
  int n = advise(&e, a, 32);
  const mm_env_advice_t *d = find_advice(a, n, "nofile");
  ASSERT(d);
  ASSERT_EQ(d->severity, MM_ENV_WARN);
  ASSERT(strstr(d->message, "64 open file descriptors"));
}

/* ------------------------------------------------------------------------ */
/* memmap doctor                                                            */

TEST(env_doctor_prints_every_section_and_the_advice) {
  char out[32768];
  char args[600];
  snprintf(args, sizeof args, "%s", mm_test_dir());
  doctor(out, sizeof out, 0, args);
  const char *want[] = {"memory\n", "limits\n", "shared memory\n", "filesystem of ",
                        "platform\n", "\nadvice:\n", "page size:", "huge page sizes:",
                        "THP anonymous:", "THP shmem:", "RLIMIT_NOFILE:", "RLIMIT_AS:",
                        "RLIMIT_MEMLOCK:", "vm.max_map_count:", "overcommit:", "swap:",
                        "/dev/shm:", "type:", "mapping files:", "address space:",
                        "cachestat:", "fault_around_bytes:", "hypervisor:",
                        "virtio balloon:"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(out, want[i])) FAIL("output lacks '%s':\n%s", want[i], out);
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, mm_test_dir()));
  char line[128];
  snprintf(line, sizeof line, "vm.max_map_count:    %lld,", (long long)e.max_map_count);
  if (e.max_map_count > 0 && !strstr(out, line)) FAIL("output lacks '%s':\n%s", line, out);
  if (e.page_size == 4096) ASSERT(strstr(out, "page size:           4 KiB\n"));
  snprintf(line, sizeof line, "type:                %s (", e.fs_type);
  if (!strstr(out, line)) FAIL("output lacks '%s':\n%s", line, out);
  /* Every piece of advice is printed with its severity and key. */
  mm_env_advice_t a[32];
  int n = advise(&e, a, 32);
  for (int i = 0; i < n; i++) {
    snprintf(line, sizeof line, "  %-8s %s: ", mm_env_severity_name(a[i].severity), a[i].key);
    if (!strstr(out, line)) FAIL("output lacks '%s':\n%s", line, out);
  }
  /* The default path is the current directory. */
  char out2[32768];
  ASSERT_EQ(run(out2, sizeof out2, "cd %s && " MEMMAP " doctor", mm_test_dir(), mm_test_bindir()), 0);
  ASSERT(strstr(out2, "filesystem of .\n"));
}

TEST(env_doctor_json_parses_and_agrees_with_the_library) {
  const char *json = mm_test_path("doctor.json");
  char out[65536], args[1200];
  snprintf(args, sizeof args, "--json %s", mm_test_dir());
  doctor(out, sizeof out, 0, args);
  FILE *f = fopen(json, "w");
  ASSERT(f && fputs(out, f) >= 0 && fclose(f) == 0);
  const char *keys[] = {"\"memory\"", "\"limits\"", "\"shm\"", "\"filesystem\"",
                        "\"platform\"", "\"advice\"", "\"page_size\"", "\"max_map_count\"",
                        "\"thp_anon\"", "\"balloon_reporting\"", "\"cachestat\""};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strstr(out, keys[i])) FAIL("JSON lacks %s:\n%s", keys[i], out);
  ASSERT(!strstr(out, "calibration"));
  char res[1024];
  if (run(res, sizeof res, "command -v python3 >/dev/null") != 0) return;
  int rc = run(res, sizeof res,
               "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
               "l=d[\"limits\"]; m=d[\"memory\"]; f=d[\"filesystem\"]; "
               "print(m[\"page_size\"], l[\"max_map_count\"] if l[\"max_map_count\"] is not None else -1, "
               "l[\"nofile_soft\"], f[\"type\"], f[\"kind\"], f[\"magic\"], len(d[\"advice\"]), "
               "all(set(a)=={\"severity\",\"key\",\"message\"} for a in d[\"advice\"]))' %s 2>&1",
               json);
  if (rc != 0) FAIL("python3 could not parse the JSON: %s", res);
  mm_env_t e;
  ASSERT_OK(mm_env_read(&e, mm_test_dir()));
  mm_env_advice_t a[32];
  int n = advise(&e, a, 32);
  char want[512];
  snprintf(want, sizeof want, "%lld %lld %llu %s %s %llu %d True\n", (long long)e.page_size,
           (long long)e.max_map_count, (unsigned long long)e.nofile_soft, e.fs_type,
           mm_env_fs_kind_name(e.fs_kind), (unsigned long long)e.fs_magic, n);
  if (strcmp(res, want)) FAIL("python3 read '%s', the library says '%s'", res, want);
}

TEST(env_doctor_low_nofile_in_a_child_gives_descriptor_advice) {
  char out[32768];
  int rc = run(out, sizeof out, "ulimit -n 64 && " MEMMAP " doctor %s 2>&1",
               mm_test_bindir(), mm_test_dir());
  if (rc != 0) FAIL("exit %d:\n%s", rc, out);
  ASSERT(strstr(out, "RLIMIT_NOFILE:       64 (hard "));
  ASSERT(strstr(out, "warn     nofile: RLIMIT_NOFILE allows 64 open file"));
  rc = run(out, sizeof out, "ulimit -n 64 && " MEMMAP " doctor --json %s 2>&1",
           mm_test_bindir(), mm_test_dir());
  if (rc != 0) FAIL("exit %d:\n%s", rc, out);
  ASSERT(strstr(out, "\"nofile_soft\": 64,"));
  ASSERT(strstr(out, "{\"severity\": \"warn\", \"key\": \"nofile\""));
}

TEST_T(env_doctor_calibrate_prints_a_threshold_and_cleans_up, 120) {
  char *out = malloc(1 << 16);
  ASSERT(out);
  char args[1200];
  snprintf(args, sizeof args, "--calibrate --max-size 1M %s", mm_test_dir());
  doctor(out, 1 << 16, 0, args);
  const char *want[] = {"calibration in ", "open + read every byte + close", "4 KiB",
                        "512 KiB", "1 MiB", "\nthreshold: ", "\nin code:   .threshold = "};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(out, want[i])) FAIL("output lacks '%s':\n%s", want[i], out);
  const char *table = strstr(out, "calibration in ");
  if (strstr(table, " 2 MiB ")) FAIL("--max-size 1M measured 2 MiB:\n%s", out);
  /* The threshold is a size that was measured, or none. */
  const char *t = strstr(out, ".threshold = ");
  ASSERT(t);
  t += strlen(".threshold = ");
  if (strncmp(t, "UINT64_MAX", 10)) {
    unsigned long long v = strtoull(t, NULL, 10);
    ASSERT(v >= 4096 && v <= (1 << 20) && (v & (v - 1)) == 0);
  }
  /* No scratch file is left behind. */
  char ls[4096];
  ASSERT_EQ(run(ls, sizeof ls, "ls -A %s", mm_test_dir()), 0);
  if (strstr(ls, "memmap-calibrate")) FAIL("scratch file left: %s", ls);
  /* A file as PATH calibrates in its directory; JSON holds the rows. */
  const char *file = mm_test_path("some file");
  mm_test_write_file(file, 100);
  snprintf(args, sizeof args, "--json --calibrate -m 64K '%s'", file);
  doctor(out, 1 << 16, 0, args);
  ASSERT(strstr(out, "\"calibration\": {\"dir\": "));
  ASSERT(strstr(out, "{\"bytes\": 65536, \"read_seconds\": "));
  ASSERT(!strstr(out, "{\"bytes\": 131072,"));
  ASSERT(strstr(out, "\"threshold\": "));
  ASSERT_EQ(run(ls, sizeof ls, "ls -A %s", mm_test_dir()), 0);
  if (strstr(ls, "memmap-calibrate")) FAIL("scratch file left: %s", ls);
  free(out);
}

TEST(env_doctor_help_exits_zero_and_bad_usage_exits_two) {
  char out[16384];
  doctor(out, sizeof out, 0, "--help");
  ASSERT(strstr(out, "usage: memmap doctor"));
  ASSERT(strstr(out, "--calibrate") && strstr(out, "--max-size") && strstr(out, "--json"));
  char again[16384];
  ASSERT_EQ(run(again, sizeof again, MEMMAP " help doctor", mm_test_bindir()), 0);
  ASSERT(!strcmp(out, again));
  doctor(out, sizeof out, 2, "--no-such-option");
  doctor(out, sizeof out, 2, "a b");
  doctor(out, sizeof out, 2, "--max-size 1M .");
  ASSERT(strstr(out, "--max-size needs --calibrate"));
  doctor(out, sizeof out, 2, "--calibrate --max-size 12Q .");
  ASSERT(strstr(out, "memmap: doctor: bad size '12Q'"));
  doctor(out, sizeof out, 2, "--calibrate --max-size 100 .");
  char args[700];
  snprintf(args, sizeof args, "%s/none", mm_test_dir());
  doctor(out, sizeof out, 1, args);
  ASSERT(strstr(out, "memmap: ") && strstr(out, "/none: No such file or directory"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " --help", mm_test_bindir()), 0);
  ASSERT(strstr(out, "doctor"));
}
