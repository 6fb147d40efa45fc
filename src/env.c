/*
 * env.c - the environment report: page and huge page sizes, transparent
 * huge pages, resource limits, mapping counts, overcommit, swap,
 * /dev/shm, the filesystem of a path, the platform (address width,
 * cachestat, fault-around, hypervisor, virtio balloon), and advice
 * computed from them.
 *
 * Every file read goes through mm__sys_open/read/close so tests can make
 * them fail; a failed read leaves its value unknown and is never an error.
 * Directory listings (/sys/kernel/mm/hugepages, /sys/bus/virtio/devices,
 * /proc/self/fd), statfs, getrlimit, sysconf and uname are called
 * directly: they have no wrapper in sys.h, and none of them can corrupt
 * anything when they fail.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "memmap/env.h"

/* cachestat(2) came with Linux 6.5. New system calls share one number on
 * every architecture but alpha, which adds 110. */
#ifndef SYS_cachestat
#if defined(__alpha__)
#define SYS_cachestat 561
#else
#define SYS_cachestat 451
#endif
#endif

/* ---------------------------------------------------------------------- */
/* Reading small files                                                     */

/* Read up to cap-1 bytes of a file into buf, NUL-terminated. Returns the
 * length or -errno. */
static long read_text(const char *path, char *buf, size_t cap) {
  int fd = mm__sys_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return fd;
  size_t have = 0;
  long rc = 0;
  while (have < cap - 1) {
    ssize_t n = mm__sys_read(fd, buf + have, cap - 1 - have);
    if (n < 0) {
      rc = (long)n;
      break;
    }
    if (n == 0) break;
    have += (size_t)n;
  }
  mm__sys_close(fd);
  buf[have] = 0;
  return rc < 0 ? rc : (long)have;
}

/* Read a whole file of unknown length into a malloc'd, NUL-terminated
 * buffer (mountinfo can be long). Returns the buffer or NULL. */
static char *read_all(const char *path) {
  int fd = mm__sys_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return NULL;
  size_t cap = 16384, have = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (have == cap - 1) {
      /* A sanity bound: no mount table is a hundred megabytes. */
      char *n = cap < ((size_t)64 << 20) ? realloc(buf, cap * 2) : NULL;
      if (!n) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = n;
      cap *= 2;
    }
    ssize_t r = mm__sys_read(fd, buf + have, cap - 1 - have);
    if (r < 0) {
      free(buf);
      buf = NULL;
    } else if (r == 0) {
      buf[have] = 0;
      break;
    } else {
      have += (size_t)r;
    }
  }
  mm__sys_close(fd);
  return buf;
}

/* A file holding one integer; -1 when unreadable or not a number. */
static int64_t read_int(const char *path) {
  char buf[64];
  if (read_text(path, buf, sizeof buf) <= 0) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(buf, &end, 10);
  if (end == buf || errno) return -1;
  return (int64_t)v;
}

/* A sysfs mode file such as "always [madvise] never": copy the bracketed
 * word to out, or leave out empty. */
static void read_mode(const char *path, char *out, size_t cap) {
  char buf[256];
  out[0] = 0;
  if (read_text(path, buf, sizeof buf) <= 0) return;
  char *open = strchr(buf, '['), *close = open ? strchr(open, ']') : NULL;
  if (!close) return;
  size_t n = (size_t)(close - open - 1);
  if (n >= cap) return;
  memcpy(out, open + 1, n);
  out[n] = 0;
}

/* The value of "Key:   123 kB" in /proc/meminfo text, in bytes; -1 if
 * absent. */
static int64_t meminfo_get(const char *text, const char *key) {
  size_t klen = strlen(key);
  for (const char *p = text; p && *p;) {
    if (!strncmp(p, key, klen) && p[klen] == ':') {
      char *end;
      long long v = strtoll(p + klen + 1, &end, 10);
      if (end == p + klen + 1) return -1;
      while (*end == ' ') end++;
      return (int64_t)v * (end[0] == 'k' && end[1] == 'B' ? 1024 : 1);
    }
    p = strchr(p, '\n');
    if (p) p++;
  }
  return -1;
}

/* Copy a string, cut to fit. */
static void copy_str(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = 0;
}

/* ---------------------------------------------------------------------- */
/* Memory                                                                  */

static int cmp_hugepage(const void *a, const void *b) {
  uint64_t x = ((const mm_env_hugepage_t *)a)->size;
  uint64_t y = ((const mm_env_hugepage_t *)b)->size;
  return x < y ? -1 : x > y;
}

static void read_hugepages(mm_env_t *env) {
  DIR *d = opendir("/sys/kernel/mm/hugepages");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) && env->nhugepages < MM_ENV_MAX_HUGEPAGE_SIZES) {
    unsigned long long kb;
    char tail[4];
    if (sscanf(e->d_name, "hugepages-%llukB%3s", &kb, tail) != 1) continue;
    mm_env_hugepage_t *h = &env->hugepages[env->nhugepages++];
    char path[320];
    h->size = (uint64_t)kb * 1024;
    snprintf(path, sizeof path, "/sys/kernel/mm/hugepages/%s/nr_hugepages",
             e->d_name);
    h->total = read_int(path);
    snprintf(path, sizeof path, "/sys/kernel/mm/hugepages/%s/free_hugepages",
             e->d_name);
    h->free = read_int(path);
  }
  closedir(d);
  qsort(env->hugepages, (size_t)env->nhugepages, sizeof env->hugepages[0],
        cmp_hugepage);
}

static void read_memory(mm_env_t *env) {
  long page = sysconf(_SC_PAGESIZE);
  env->page_size = page > 0 ? page : -1;
  char *mi = read_all("/proc/meminfo");
  if (mi) {
    env->hugepage_default = meminfo_get(mi, "Hugepagesize");
    env->commit_limit = meminfo_get(mi, "CommitLimit");
    env->committed = meminfo_get(mi, "Committed_AS");
    env->mem_total = meminfo_get(mi, "MemTotal");
    env->mem_available = meminfo_get(mi, "MemAvailable");
    env->swap_total = meminfo_get(mi, "SwapTotal");
    env->swap_free = meminfo_get(mi, "SwapFree");
    /* A kernel without hugetlb support has no Hugepagesize line at all. */
    if (env->hugepage_default < 0 && env->mem_total >= 0)
      env->hugepage_default = 0;
    free(mi);
  }
  read_hugepages(env);
  read_mode("/sys/kernel/mm/transparent_hugepage/enabled", env->thp_anon,
            sizeof env->thp_anon);
  read_mode("/sys/kernel/mm/transparent_hugepage/shmem_enabled",
            env->thp_shmem, sizeof env->thp_shmem);
  read_mode("/sys/kernel/mm/transparent_hugepage/defrag", env->thp_defrag,
            sizeof env->thp_defrag);
  int64_t v = read_int("/proc/sys/vm/overcommit_memory");
  env->overcommit_memory = v >= 0 && v <= 2 ? (int)v : -1;
  env->overcommit_ratio = read_int("/proc/sys/vm/overcommit_ratio");
}

/* ---------------------------------------------------------------------- */
/* Limits                                                                  */

static void get_limit(int res, uint64_t *soft, uint64_t *hard) {
  struct rlimit rl;
  if (getrlimit(res, &rl) != 0) {
    /* Cannot happen for a valid resource; "no limit" is the safe guess
     * because it produces no advice. */
    *soft = *hard = MM_ENV_UNLIMITED;
    return;
  }
  *soft = rl.rlim_cur == RLIM_INFINITY ? MM_ENV_UNLIMITED : (uint64_t)rl.rlim_cur;
  *hard = rl.rlim_max == RLIM_INFINITY ? MM_ENV_UNLIMITED : (uint64_t)rl.rlim_max;
}

static void read_limits(mm_env_t *env) {
  get_limit(RLIMIT_NOFILE, &env->nofile_soft, &env->nofile_hard);
  get_limit(RLIMIT_AS, &env->as_soft, &env->as_hard);
  get_limit(RLIMIT_MEMLOCK, &env->memlock_soft, &env->memlock_hard);
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
      if (e->d_name[0] != '.') n++;
    /* Not counting the descriptor the listing itself holds. */
    env->nofile_used = n > 0 ? n - 1 : 0;
    closedir(d);
  }
  char buf[8192];
  if (read_text("/proc/self/status", buf, sizeof buf) > 0) {
    const char *p = strstr(buf, "\nCapEff:");
    if (p) {
      unsigned long long caps = strtoull(p + 8, NULL, 16);
      env->cap_ipc_lock = (int)((caps >> 14) & 1); /* CAP_IPC_LOCK is 14 */
    }
  }
  env->max_map_count = mm__max_map_count();
  if (env->max_map_count <= 0) env->max_map_count = -1;
  env->map_count = mm__map_count();
}

/* ---------------------------------------------------------------------- */
/* Filesystems                                                             */

static const struct {
  const char *name;
  int kind;
} fs_kinds[] = {
    {"ext2", MM_ENV_FS_LOCAL},       {"ext3", MM_ENV_FS_LOCAL},
    {"ext4", MM_ENV_FS_LOCAL},       {"xfs", MM_ENV_FS_LOCAL},
    {"btrfs", MM_ENV_FS_LOCAL},      {"f2fs", MM_ENV_FS_LOCAL},
    {"zfs", MM_ENV_FS_LOCAL},        {"bcachefs", MM_ENV_FS_LOCAL},
    {"jfs", MM_ENV_FS_LOCAL},        {"reiserfs", MM_ENV_FS_LOCAL},
    {"vfat", MM_ENV_FS_LOCAL},       {"msdos", MM_ENV_FS_LOCAL},
    {"exfat", MM_ENV_FS_LOCAL},      {"ntfs", MM_ENV_FS_LOCAL},
    {"ntfs3", MM_ENV_FS_LOCAL},      {"iso9660", MM_ENV_FS_LOCAL},
    {"squashfs", MM_ENV_FS_LOCAL},   {"erofs", MM_ENV_FS_LOCAL},
    {"udf", MM_ENV_FS_LOCAL},        {"hfsplus", MM_ENV_FS_LOCAL},
    {"nilfs2", MM_ENV_FS_LOCAL},     {"ext2/3/4", MM_ENV_FS_LOCAL},
    {"tmpfs", MM_ENV_FS_MEMORY},     {"ramfs", MM_ENV_FS_MEMORY},
    {"hugetlbfs", MM_ENV_FS_MEMORY}, {"devtmpfs", MM_ENV_FS_MEMORY},
    {"nfs", MM_ENV_FS_NETWORK},      {"nfs4", MM_ENV_FS_NETWORK},
    {"cifs", MM_ENV_FS_NETWORK},     {"smb3", MM_ENV_FS_NETWORK},
    {"smbfs", MM_ENV_FS_NETWORK},    {"9p", MM_ENV_FS_NETWORK},
    {"ceph", MM_ENV_FS_NETWORK},     {"afs", MM_ENV_FS_NETWORK},
    {"lustre", MM_ENV_FS_NETWORK},   {"gfs2", MM_ENV_FS_NETWORK},
    {"ocfs2", MM_ENV_FS_NETWORK},    {"glusterfs", MM_ENV_FS_NETWORK},
    {"gpfs", MM_ENV_FS_NETWORK},     {"orangefs", MM_ENV_FS_NETWORK},
    {"virtiofs", MM_ENV_FS_NETWORK}, {"fuse.sshfs", MM_ENV_FS_NETWORK},
    {"fuse.s3fs", MM_ENV_FS_NETWORK}, {"fuse.gcsfuse", MM_ENV_FS_NETWORK},
    {"fuse.rclone", MM_ENV_FS_NETWORK},
    {"fuse.glusterfs", MM_ENV_FS_NETWORK},
    {"fuse.ceph-fuse", MM_ENV_FS_NETWORK},
    {"overlay", MM_ENV_FS_OVERLAY},  {"aufs", MM_ENV_FS_OVERLAY},
    {"proc", MM_ENV_FS_PSEUDO},      {"sysfs", MM_ENV_FS_PSEUDO},
    {"debugfs", MM_ENV_FS_PSEUDO},   {"tracefs", MM_ENV_FS_PSEUDO},
    {"securityfs", MM_ENV_FS_PSEUDO}, {"cgroup", MM_ENV_FS_PSEUDO},
    {"cgroup2", MM_ENV_FS_PSEUDO},   {"bpf", MM_ENV_FS_PSEUDO},
    {"configfs", MM_ENV_FS_PSEUDO},  {"devpts", MM_ENV_FS_PSEUDO},
    {"pstore", MM_ENV_FS_PSEUDO},    {"efivarfs", MM_ENV_FS_PSEUDO},
    {"mqueue", MM_ENV_FS_PSEUDO},    {"autofs", MM_ENV_FS_PSEUDO},
    {"binfmt_misc", MM_ENV_FS_PSEUDO}, {"fusectl", MM_ENV_FS_PSEUDO},
    {"nsfs", MM_ENV_FS_PSEUDO},      {"selinuxfs", MM_ENV_FS_PSEUDO},
};

/* Names for statfs magic numbers, for when the mount table is unreadable.
 * ext2, ext3 and ext4 share one magic. */
static const struct {
  uint64_t magic;
  const char *name;
} fs_magics[] = {
    {0xEF53, "ext2/3/4"},     {0x58465342, "xfs"},     {0x9123683E, "btrfs"},
    {0xF2F52010, "f2fs"},     {0x2FC12FC1, "zfs"},     {0xCA451A4E, "bcachefs"},
    {0x73717368, "squashfs"}, {0xE0F5E1E2, "erofs"},   {0x4D44, "vfat"},
    {0x2011BAB0, "exfat"},    {0x5346544E, "ntfs"},    {0x9660, "iso9660"},
    {0x01021994, "tmpfs"},    {0x858458F6, "ramfs"},   {0x958458F6, "hugetlbfs"},
    {0x6969, "nfs"},          {0xFF534D42, "cifs"},    {0xFE534D42, "smb3"},
    {0x517B, "smbfs"},        {0x01021997, "9p"},      {0x00C36400, "ceph"},
    {0x5346414F, "afs"},      {0x65735546, "fuse"},    {0x794C7630, "overlay"},
    {0x9FA0, "proc"},         {0x62656572, "sysfs"},   {0x64626720, "debugfs"},
    {0x74726163, "tracefs"},  {0x27E0EB, "cgroup"},    {0x63677270, "cgroup2"},
    {0x1CD1, "devpts"},
};

static int fs_kind_of(const char *type) {
  if (!type[0]) return MM_ENV_FS_UNKNOWN;
  for (size_t i = 0; i < sizeof fs_kinds / sizeof fs_kinds[0]; i++)
    if (!strcmp(fs_kinds[i].name, type)) return fs_kinds[i].kind;
  if (!strncmp(type, "fuse", 4)) return MM_ENV_FS_FUSE; /* fuse, fuseblk, fuse.x */
  return MM_ENV_FS_UNKNOWN;
}

/* Undo the octal escapes of mountinfo (\040 for a space) in place. */
static void unescape(char *s) {
  char *out = s;
  for (; *s; s++) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
        s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
      *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    } else {
      *out++ = *s;
    }
  }
  *out = 0;
}

/* Length of mount point `mnt` if it is a prefix of `path` on a component
 * boundary, else -1. */
static long mount_prefix(const char *mnt, const char *path) {
  size_t n = strlen(mnt);
  if (n == 1 && mnt[0] == '/') return 1;
  if (strncmp(mnt, path, n) || (path[n] && path[n] != '/')) return -1;
  return (long)n;
}

/* Find the mount that holds `real` (a resolved path on device `dev`) in
 * /proc/self/mountinfo: the longest mount point that is a prefix of the
 * path, preferring mounts of the same device; a later line wins a tie, as
 * a later mount hides an earlier one on the same point. Fills fs_type and
 * fs_mount. */
static void find_mount(mm_env_t *env, const char *real, dev_t dev) {
  char *text = read_all("/proc/self/mountinfo");
  if (!text) return;
  long best_len = -1;
  int best_dev = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    /* id parent major:minor root mountpoint options [optional...] - type
     * source superoptions */
    char *f[6] = {0};
    char *save = NULL, *tok = strtok_r(line, " ", &save);
    int nf = 0;
    for (; tok && nf < 6; tok = strtok_r(NULL, " ", &save)) f[nf++] = tok;
    if (nf < 6) continue;
    char *type = NULL;
    for (; tok; tok = strtok_r(NULL, " ", &save))
      if (!strcmp(tok, "-")) {
        type = strtok_r(NULL, " ", &save);
        break;
      }
    if (!type) continue;
    unsigned maj, min;
    int same_dev = sscanf(f[2], "%u:%u", &maj, &min) == 2 &&
                   makedev(maj, min) == dev;
    unescape(f[4]);
    long len = mount_prefix(f[4], real);
    if (len < 0) continue;
    if (same_dev > best_dev || (same_dev == best_dev && len >= best_len)) {
      best_dev = same_dev;
      best_len = len;
      copy_str(env->fs_type, sizeof env->fs_type, type);
      copy_str(env->fs_mount, sizeof env->fs_mount, f[4]);
    }
  }
  free(text);
}

/* statfs block counts are in f_frsize units (f_bsize on old kernels). */
static void statfs_sizes(const struct statfs *sf, int64_t *size, int64_t *avail) {
  uint64_t unit = sf->f_frsize ? (uint64_t)sf->f_frsize : (uint64_t)sf->f_bsize;
  *size = (int64_t)((uint64_t)sf->f_blocks * unit);
  *avail = (int64_t)((uint64_t)sf->f_bavail * unit);
}

static int read_fs(mm_env_t *env, const char *path) {
  struct statfs sf;
  struct stat st;
  if (statfs(path, &sf) != 0 || stat(path, &st) != 0) return -errno;
  env->fs_magic = (uint64_t)(unsigned long)sf.f_type;
  statfs_sizes(&sf, &env->fs_size, &env->fs_free);
  env->fs_readonly = (sf.f_flags & ST_RDONLY) ? 1 : 0;
  /* The mount table lists absolute paths: without one, rely on the
   * magic number alone. */
  char *real = realpath(path, NULL);
  if (real || path[0] == '/') find_mount(env, real ? real : path, st.st_dev);
  free(real);
  if (!env->fs_type[0]) {
    for (size_t i = 0; i < sizeof fs_magics / sizeof fs_magics[0]; i++)
      if (fs_magics[i].magic == env->fs_magic)
        copy_str(env->fs_type, sizeof env->fs_type, fs_magics[i].name);
  }
  env->fs_kind = fs_kind_of(env->fs_type);
  return 0;
}

static void read_shm(mm_env_t *env) {
  struct statfs sf;
  if (statfs("/dev/shm", &sf) != 0) {
    if (errno == ENOENT) copy_str(env->shm_fstype, sizeof env->shm_fstype, "none");
    return;
  }
  statfs_sizes(&sf, &env->shm_size, &env->shm_free);
  uint64_t magic = (uint64_t)(unsigned long)sf.f_type;
  for (size_t i = 0; i < sizeof fs_magics / sizeof fs_magics[0]; i++)
    if (fs_magics[i].magic == magic)
      copy_str(env->shm_fstype, sizeof env->shm_fstype, fs_magics[i].name);
  if (!env->shm_fstype[0])
    snprintf(env->shm_fstype, sizeof env->shm_fstype, "0x%" PRIx64, magic);
}

/* ---------------------------------------------------------------------- */
/* Platform                                                                */

/* cachestat(2) on a small file with valid arguments: only a kernel without
 * it (or a filter that blocks it) fails with ENOSYS (or EPERM). */
struct env_cachestat_range {
  uint64_t off, len;
};
struct env_cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

static int probe_cachestat(void) {
  int fd = mm__sys_memfd_create("memmap-env", MFD_CLOEXEC);
  if (fd < 0) fd = mm__sys_open("/proc/self/exe", O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct env_cachestat_range range = {0, 4096};
  struct env_cachestat cs;
  long r = syscall(SYS_cachestat, fd, &range, &cs, 0);
  int err = r < 0 ? errno : 0;
  mm__sys_close(fd);
  if (r == 0) return 1;
  return err == ENOSYS || err == EPERM ? 0 : -1;
}

/* The CPU's flags and address sizes, from the first processor in
 * /proc/cpuinfo (x86; other architectures have neither line). */
static void read_cpuinfo(mm_env_t *env) {
  char *buf = malloc(65536);
  if (!buf) return;
  if (read_text("/proc/cpuinfo", buf, 65536) > 0) {
    char *end = strstr(buf, "\n\n"); /* the first processor's block */
    if (end) *end = 0;
    for (char *line = buf, *next; line; line = next) {
      next = strchr(line, '\n');
      if (next) *next++ = 0;
      char *colon = strchr(line, ':');
      if (!colon) continue;
      if (!strncmp(line, "flags", 5)) {
        env->hypervisor = 0;
        char *save = NULL;
        for (char *t = strtok_r(colon + 1, " \t", &save); t;
             t = strtok_r(NULL, " \t", &save))
          if (!strcmp(t, "hypervisor")) env->hypervisor = 1;
      } else if (!strncmp(line, "address sizes", 13)) {
        /* "48 bits physical, 48 bits virtual" */
        char *v = strstr(colon, ", ");
        int bits;
        if (v && sscanf(v + 2, "%d bits virtual", &bits) == 1) env->va_bits = bits;
      }
    }
  }
  free(buf);
  /* Xen guests, and others without the x86 flag, say so here. */
  char type[64];
  if (env->hypervisor != 1 && read_text("/sys/hypervisor/type", type, sizeof type) > 0 &&
      type[0] && type[0] != '\n')
    env->hypervisor = 1;
}

/* A virtio balloon is device id 5 on the virtio bus. Its features file is
 * a string of '0' and '1', bit 0 first; bit 5 is
 * VIRTIO_BALLOON_F_REPORTING (free page reporting). */
static void read_balloon(mm_env_t *env) {
  DIR *d = opendir("/sys/bus/virtio/devices");
  if (!d) {
    struct stat st;
    /* /sys is there but no virtio bus: no balloon. No /sys: unknown. */
    if (errno == ENOENT && stat("/sys/bus", &st) == 0) {
      env->balloon = 0;
      env->balloon_reporting = 0;
    }
    return;
  }
  int unreadable = 0;
  env->balloon = 0;
  env->balloon_reporting = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[320], buf[64];
    snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/device", e->d_name);
    if (read_text(path, buf, sizeof buf) <= 0) {
      unreadable = 1;
      continue;
    }
    if (strtol(buf, NULL, 16) != 5) continue;
    env->balloon = 1;
    snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/features", e->d_name);
    char feat[256];
    if (read_text(path, feat, sizeof feat) > 5 && (feat[5] == '0' || feat[5] == '1')) {
      if (feat[5] == '1') env->balloon_reporting = 1;
    } else if (env->balloon_reporting == 0) {
      env->balloon_reporting = -1;
    }
  }
  closedir(d);
  if (env->balloon == 0 && unreadable) env->balloon = env->balloon_reporting = -1;
}

static void read_platform(mm_env_t *env) {
  struct utsname u;
  if (uname(&u) == 0) {
    copy_str(env->kernel, sizeof env->kernel, u.release);
    copy_str(env->machine, sizeof env->machine, u.machine);
  }
  env->ptr_bits = (int)(sizeof(void *) * CHAR_BIT);
  env->cachestat = probe_cachestat();
  env->fault_around_bytes = read_int("/sys/kernel/debug/fault_around_bytes");
  read_cpuinfo(env);
  read_balloon(env);
}

/* ---------------------------------------------------------------------- */

int mm_env_read(mm_env_t *env, const char *path) {
  if (!env) return -EINVAL;
  memset(env, 0, sizeof *env);
  env->page_size = env->hugepage_default = -1;
  env->overcommit_memory = -1;
  env->overcommit_ratio = env->commit_limit = env->committed = -1;
  env->mem_total = env->mem_available = env->swap_total = env->swap_free = -1;
  env->nofile_used = -1;
  env->cap_ipc_lock = -1;
  env->max_map_count = env->map_count = -1;
  env->shm_size = env->shm_free = -1;
  env->fs_kind = MM_ENV_FS_UNKNOWN;
  env->fs_readonly = -1;
  env->fs_size = env->fs_free = -1;
  env->va_bits = env->cachestat = -1;
  env->fault_around_bytes = -1;
  env->hypervisor = env->balloon = env->balloon_reporting = -1;

  read_memory(env);
  read_limits(env);
  read_shm(env);
  read_platform(env);
  int rc = 0;
  if (path) {
    rc = read_fs(env, path);
    if (rc < 0) {
      /* Leave every fs_* field unknown rather than half filled. */
      env->fs_type[0] = env->fs_mount[0] = 0;
      env->fs_magic = 0;
      env->fs_kind = MM_ENV_FS_UNKNOWN;
      env->fs_readonly = -1;
      env->fs_size = env->fs_free = -1;
    }
  }
  return rc;
}

/* ---------------------------------------------------------------------- */
/* Advice                                                                  */

const char *mm_env_severity_name(int severity) {
  switch (severity) {
  case MM_ENV_INFO: return "info";
  case MM_ENV_WARN: return "warn";
  case MM_ENV_CRITICAL: return "critical";
  default: return "?";
  }
}

const char *mm_env_fs_kind_name(int kind) {
  switch (kind) {
  case MM_ENV_FS_UNKNOWN: return "unknown";
  case MM_ENV_FS_LOCAL: return "local";
  case MM_ENV_FS_MEMORY: return "memory";
  case MM_ENV_FS_NETWORK: return "network";
  case MM_ENV_FS_FUSE: return "fuse";
  case MM_ENV_FS_OVERLAY: return "overlay";
  case MM_ENV_FS_PSEUDO: return "pseudo";
  default: return "?";
  }
}

/* "512 B", "64 KiB", "1.5 GiB" into one of a few rotating buffers, so a
 * message can format several sizes. */
struct sizes {
  char buf[6][24];
  int next;
};

static const char *size_str(struct sizes *s, uint64_t n) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  char *b = s->buf[s->next++ % 6];
  if (n == MM_ENV_UNLIMITED) {
    copy_str(b, sizeof s->buf[0], "unlimited");
    return b;
  }
  int u = 0;
  uint64_t whole = n, rem = 0;
  while (whole >= 1024 && u < 5) {
    rem = whole % 1024;
    whole /= 1024;
    u++;
  }
  if (u == 0 || rem == 0 || whole >= 100)
    snprintf(b, sizeof s->buf[0], "%" PRIu64 " %s", whole, units[u]);
  else
    snprintf(b, sizeof s->buf[0], "%" PRIu64 ".%" PRIu64 " %s", whole,
             rem * 10 / 1024, units[u]);
  return b;
}

struct advice_list {
  mm_env_advice_t items[MM_ENV_MAX_ADVICE];
  int n;
};

static void add(struct advice_list *l, int severity, const char *key,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void add(struct advice_list *l, int severity, const char *key,
                const char *fmt, ...) {
  if (l->n == MM_ENV_MAX_ADVICE) return;
  mm_env_advice_t *a = &l->items[l->n++];
  a->severity = severity;
  copy_str(a->key, sizeof a->key, key);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->message, sizeof a->message, fmt, ap);
  va_end(ap);
}

static void advise_limits(const mm_env_t *e, struct advice_list *l,
                          struct sizes *s) {
  if (e->ptr_bits == 32)
    add(l, MM_ENV_WARN, "addr32",
        "This is a 32-bit process: all its mappings share about 3 GiB of "
        "address space. Map windows of large files (opts.offset and "
        "opts.length), not whole files, and give regions a small "
        "opts.reserve.");
  if (e->as_soft != MM_ENV_UNLIMITED)
    add(l, e->as_soft < ((uint64_t)1 << 30) ? MM_ENV_CRITICAL : MM_ENV_WARN,
        "as",
        "RLIMIT_AS caps this process at %s of address space (hard limit "
        "%s). Every mapping counts, even reserved address space with no "
        "memory behind it, such as a region's reservation (64 GiB by "
        "default), so mmap fails with ENOMEM long before memory runs out. "
        "Raise it (ulimit -v unlimited) or give regions a smaller "
        "opts.reserve.",
        size_str(s, e->as_soft), size_str(s, e->as_hard));
  if (e->nofile_soft != MM_ENV_UNLIMITED) {
    int crowded = e->nofile_used >= 0 &&
                  (uint64_t)e->nofile_used * 5 >= e->nofile_soft * 4;
    int sev = e->nofile_soft < 256 || crowded ? MM_ENV_WARN
              : e->nofile_soft <= 1024        ? MM_ENV_INFO
                                              : -1;
    if (sev >= 0) {
      char used[48] = "";
      if (e->nofile_used >= 0)
        snprintf(used, sizeof used, ", %" PRId64 " open now", e->nofile_used);
      char how[96];
      if (e->nofile_hard > e->nofile_soft)
        snprintf(how, sizeof how, "setrlimit() or ulimit -n can raise it to %s "
                 "without privilege",
                 e->nofile_hard == MM_ENV_UNLIMITED ? "any value" : "the hard limit");
      else
        copy_str(how, sizeof how, "raising it needs the hard limit raised "
                 "(nofile in limits.conf)");
      char hard[24];
      if (e->nofile_hard == MM_ENV_UNLIMITED) copy_str(hard, sizeof hard, "unlimited");
      else snprintf(hard, sizeof hard, "%" PRIu64, e->nofile_hard);
      add(l, sev, "nofile",
          "RLIMIT_NOFILE allows %" PRIu64 " open file descriptors (hard "
          "limit %s%s). Read-only and private views close theirs once "
          "mapped, but writable views, heaps and rings keep one each; %s.",
          e->nofile_soft, hard, used, how);
    }
  }
  if (e->cap_ipc_lock != 1 && e->memlock_soft != MM_ENV_UNLIMITED)
    add(l, e->memlock_soft < ((uint64_t)1 << 20) ? MM_ENV_WARN : MM_ENV_INFO,
        "memlock",
        "RLIMIT_MEMLOCK lets mm_view_lock() lock at most %s (hard limit %s)%s; "
        "locking more fails with ENOMEM or EPERM. Raise it (ulimit -l, "
        "memlock in limits.conf) or grant CAP_IPC_LOCK.",
        size_str(s, e->memlock_soft), size_str(s, e->memlock_hard),
        e->cap_ipc_lock < 0 ? ", unless the process has CAP_IPC_LOCK" : "");
  if (e->max_map_count > 0 && e->map_count >= 0 &&
      e->map_count * 2 >= e->max_map_count)
    add(l, e->map_count * 10 >= e->max_map_count * 9 ? MM_ENV_CRITICAL : MM_ENV_WARN,
        "map_count",
        "This process has %" PRId64 " of the %" PRId64 " mappings "
        "vm.max_map_count allows; past it every new view fails with "
        "MM_EMAPCOUNT. Close views you no longer need, or raise the limit: "
        "sysctl -w vm.max_map_count=262144.",
        e->map_count, e->max_map_count);
  else if (e->max_map_count > 0 && e->max_map_count < 262144) {
    char left[64] = "";
    if (e->map_count >= 0)
      snprintf(left, sizeof left, " (%" PRId64 " are in use)", e->map_count);
    add(l, e->max_map_count < 65530 ? MM_ENV_WARN : MM_ENV_INFO, "max_map_count",
        "vm.max_map_count is %" PRId64 ": a process can hold that many "
        "mappings%s, and every mapped view is one. Programs that keep many "
        "views open need more: sysctl -w vm.max_map_count=262144 (persist "
        "it in /etc/sysctl.d).",
        e->max_map_count, left);
  }
}

static void advise_memory(const mm_env_t *e, struct advice_list *l,
                          struct sizes *s) {
  if (e->overcommit_memory == 2) {
    char ratio[32] = "a share";
    if (e->overcommit_ratio >= 0)
      snprintf(ratio, sizeof ratio, "%" PRId64 "%%", e->overcommit_ratio);
    char limit[96] = "";
    if (e->commit_limit >= 0 && e->committed >= 0)
      snprintf(limit, sizeof limit, " (%s, %s committed now)",
               size_str(s, (uint64_t)e->commit_limit),
               size_str(s, (uint64_t)e->committed));
    add(l, MM_ENV_WARN, "overcommit",
        "vm.overcommit_memory is 2 (strict): every writable private mapping "
        "is charged in full against CommitLimit%s when it is made, touched "
        "or not, and MAP_NORESERVE is ignored. Large private views and "
        "anonymous regions fail with ENOMEM early; CommitLimit is swap plus "
        "%s of RAM (vm.overcommit_ratio).",
        limit, ratio);
  } else if (e->overcommit_memory == 1) {
    add(l, MM_ENV_INFO, "overcommit",
        "vm.overcommit_memory is 1: the kernel never refuses memory, so "
        "running out kills a process (the OOM killer) instead of failing "
        "mmap with ENOMEM.");
  }
  if (e->swap_total == 0)
    add(l, MM_ENV_INFO, "swap",
        "There is no swap: anonymous memory (regions without a file, pages "
        "changed in private views) must stay in RAM. Back large regions with "
        "a file (opts.path): file pages can be written back and dropped.");
  if (e->page_size > 0 && e->page_size != 4096)
    add(l, MM_ENV_INFO, "page_size",
        "Pages are %s: mappings come in whole pages, so a view of a small "
        "file costs at least %s and has up to %s of slack.",
        size_str(s, (uint64_t)e->page_size), size_str(s, (uint64_t)e->page_size),
        size_str(s, (uint64_t)e->page_size - 1));
  uint64_t huge = e->hugepage_default > 0 ? (uint64_t)e->hugepage_default
                                          : (uint64_t)2 << 20;
  if (!strcmp(e->thp_anon, "never"))
    add(l, MM_ENV_INFO, "thp",
        "Transparent huge pages are off (never): MM_ADVISE_HUGEPAGE has no "
        "effect, and large anonymous regions take one page-table entry (and "
        "one TLB entry) per page.");
  else if (!strcmp(e->thp_anon, "always"))
    add(l, MM_ENV_INFO, "thp",
        "Transparent huge pages are always on for anonymous memory: touching "
        "one byte of a sparse region can commit a whole %s page and raise "
        "RSS. The madvise mode avoids that.",
        size_str(s, huge));
  if (!strcmp(e->shm_fstype, "none"))
    add(l, MM_ENV_WARN, "shm",
        "There is no /dev/shm: shm_open() fails. memfd_create() needs no "
        "mount and still works.");
  else if (e->shm_fstype[0] && strcmp(e->shm_fstype, "tmpfs"))
    add(l, MM_ENV_WARN, "shm",
        "/dev/shm is %s, not tmpfs: shared memory created with shm_open() "
        "lives on that filesystem instead of in memory.",
        e->shm_fstype);
  else if (e->shm_size >= 0 && e->shm_size < ((int64_t)256 << 20))
    add(l, MM_ENV_WARN, "shm",
        "/dev/shm holds only %s (%s free): all shm_open() objects together "
        "must fit, and touching a page that does not fit raises SIGBUS. "
        "Containers default to 64 MiB: docker run --shm-size=1g, or mount "
        "-o remount,size=1g /dev/shm.",
        size_str(s, (uint64_t)e->shm_size), size_str(s, (uint64_t)e->shm_free));
  else if (e->shm_size > 0 && e->shm_free >= 0 && e->shm_free * 10 < e->shm_size)
    add(l, MM_ENV_WARN, "shm",
        "/dev/shm is nearly full (%s free of %s): touching a new page of a "
        "shared memory object then raises SIGBUS. Remove stale objects.",
        size_str(s, (uint64_t)e->shm_free), size_str(s, (uint64_t)e->shm_size));
}

static void advise_fs(const mm_env_t *e, struct advice_list *l,
                      struct sizes *s) {
  const char *t = e->fs_type, *m = e->fs_mount[0] ? e->fs_mount : "it";
  switch (e->fs_kind) {
  case MM_ENV_FS_NETWORK:
    add(l, MM_ENV_WARN, "fs",
        "The path is on %s, a network filesystem: a mapping sees other "
        "machines' writes late or never, each page fault is a round trip, "
        "and a server error becomes SIGBUS. Prefer read() (opts.backend = "
        "MM_BACKEND_READ) or a copy on local disk; never share a heap or a "
        "ring through it.",
        t);
    break;
  case MM_ENV_FS_FUSE:
    add(l, MM_ENV_WARN, "fs",
        "The path is on %s, served by a FUSE daemon: every page fault is a "
        "request to it, shared writable mappings work only if it enables "
        "writeback caching, and an error becomes SIGBUS. Reading is usually "
        "the better choice here.",
        t);
    break;
  case MM_ENV_FS_OVERLAY:
    add(l, MM_ENV_INFO, "fs",
        "The path is on %s (a container's filesystem): the first write to a "
        "file from a lower layer copies the whole file up, and a mapping made "
        "before that keeps showing the old copy. Keep files written through "
        "mappings on a volume.",
        t);
    break;
  case MM_ENV_FS_MEMORY:
    add(l, MM_ENV_INFO, "fs",
        "The path is on %s, in memory: a mapping uses the file's pages "
        "directly with no disk I/O, they count against the filesystem's "
        "size and go to swap, not disk, and nothing survives a reboot, so a "
        "sync buys only process-crash safety.",
        t);
    break;
  case MM_ENV_FS_PSEUDO:
    add(l, MM_ENV_INFO, "fs",
        "The path is on %s, a kernel interface: its files cannot be mapped, "
        "and views read them instead.",
        t);
    break;
  default:
    break;
  }
  if (!strcmp(t, "btrfs"))
    add(l, MM_ENV_INFO, "fs",
        "btrfs copies on write: each write-back of a page changed through a "
        "mapping goes to a new extent, fragmenting files rewritten in place "
        "such as heaps. Mark such files NOCOW (chattr +C on the empty file "
        "or its directory) if they need no checksums.");
  else if (!strcmp(t, "zfs"))
    add(l, MM_ENV_INFO, "fs",
        "ZFS caches file data in its ARC, outside the page cache: a mapped "
        "file is cached twice and mapping is slower than reading. Prefer "
        "read() for large scans.");
  if (e->fs_readonly == 1)
    add(l, MM_ENV_INFO, "fs_readonly",
        "%s is mounted read-only: writable views and heaps there fail with "
        "EROFS.",
        m);
  if ((e->fs_kind == MM_ENV_FS_LOCAL || e->fs_kind == MM_ENV_FS_MEMORY ||
       e->fs_kind == MM_ENV_FS_NETWORK) &&
      e->fs_readonly != 1 && e->fs_size > 0 && e->fs_free >= 0 &&
      (e->fs_free * 20 < e->fs_size || e->fs_free < ((int64_t)256 << 20)))
    add(l, MM_ENV_WARN, "fs_free",
        "Only %s of %s is free on %s. Regions and heaps grow files here; the "
        "library allocates the space before growing, so a full disk is "
        "ENOSPC from resize or append, but a file grown by other means and "
        "then mapped raises SIGBUS when the space runs out.",
        size_str(s, (uint64_t)e->fs_free), size_str(s, (uint64_t)e->fs_size), m);
}

static void advise_platform(const mm_env_t *e, struct advice_list *l,
                            struct sizes *s) {
  if (e->cachestat == 0)
    add(l, MM_ENV_INFO, "cachestat",
        "cachestat(2) is unavailable (Linux before 6.5, or blocked by a "
        "seccomp filter): mm_cache finds page-cache residency with mincore "
        "over a temporary mapping instead, which is slower on large files "
        "and cannot count dirty or evicted pages.");
  if (e->fault_around_bytes > 0 && e->fault_around_bytes < 65536)
    add(l, MM_ENV_INFO, "fault_around",
        "fault_around_bytes is %s: a page fault on a mapped file maps only "
        "that much of the cached file around it, so a first scan takes a "
        "fault every %s. MM_ACCESS_SEQUENTIAL populates the mapping up "
        "front.",
        size_str(s, (uint64_t)e->fault_around_bytes),
        size_str(s, (uint64_t)e->fault_around_bytes));
  if (e->hypervisor == 1)
    add(l, MM_ENV_INFO, "hypervisor",
        "This runs under a hypervisor: the first touch of each newly mapped "
        "page can cost a microsecond or more (nested or shadow paging), "
        "which can move the file size from which mapping beats reading into "
        "the tens of MiB. Measure it with memmap doctor --calibrate PATH and "
        "set mm_view_opts_t.threshold.");
  if (e->balloon_reporting == 1)
    add(l, MM_ENV_WARN, "balloon",
        "A virtio balloon with free page reporting is present: memory the "
        "guest frees is handed back to the host, and touching it again costs "
        "a host fault on top of the guest's, many times a normal first "
        "touch. Keep buffers, regions and views for reuse rather than "
        "freeing and re-creating them.");
}

int mm_env_advise(const mm_env_t *env, mm_env_advice_t *items, int cap) {
  if (!env || cap < 0 || (cap > 0 && !items)) return -EINVAL;
  struct advice_list l; /* about 14 KiB */
  struct sizes s;
  l.n = 0;
  s.next = 0;
  advise_limits(env, &l, &s);
  advise_memory(env, &l, &s);
  advise_fs(env, &l, &s);
  advise_platform(env, &l, &s);
  int out = 0;
  for (int sev = MM_ENV_CRITICAL; sev >= MM_ENV_INFO; sev--)
    for (int i = 0; i < l.n; i++)
      if (l.items[i].severity == sev) {
        if (out < cap) items[out] = l.items[i];
        out++;
      }
  return out;
}
