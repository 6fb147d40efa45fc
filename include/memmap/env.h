/*
 * memmap/env.h - the machine's limits and settings that matter to mmap
 * users, and advice about the ones that will bite.
 *
 * Mapping files and memory is fast and simple until a limit nobody looked
 * at is reached: the open-file limit, vm.max_map_count, an address-space
 * rlimit that counts reservations that use no memory, strict overcommit, a
 * tiny /dev/shm, a network filesystem under the file, a hypervisor that
 * makes every first touch of a page expensive. mm_env_read() gathers those
 * values into a plain struct; mm_env_advise() turns the struct into a list
 * of short pieces of advice, each naming the value that bites and what to
 * do about it. `memmap doctor` prints both.
 *
 * UNKNOWN VALUES
 * Nothing that cannot be read is an error: a value the library could not
 * read (no /proc, no permission, an old kernel) is reported as unknown.
 * Unknown is -1 for signed numbers and yes/no fields, the empty string for
 * strings, and 0 for fs_magic. Resource limits are always known (getrlimit
 * cannot fail); "no limit" is MM_ENV_UNLIMITED.
 *
 * THREADS
 * mm_env_read() and mm_env_advise() keep no state: they may be called from
 * any number of threads at once. mm_env_read() opens a few files and makes
 * one probing system call; it is meant for start-up and diagnostics, not
 * for a hot path (it takes a fraction of a millisecond).
 */
#ifndef MEMMAP_ENV_H
#define MEMMAP_ENV_H

#include "common.h"

/* A resource limit with no limit (RLIM_INFINITY). */
#define MM_ENV_UNLIMITED UINT64_MAX

/* How many huge page sizes mm_env_t can list (x86_64 has two, arm64 up
 * to four). */
#define MM_ENV_MAX_HUGEPAGE_SIZES 8

/* What kind of filesystem holds the path (mm_env_t.fs_kind). */
enum mm_env_fs_kind {
  MM_ENV_FS_UNKNOWN = 0,
  MM_ENV_FS_LOCAL = 1,   /* on a local block device: ext4, xfs, btrfs, ... */
  MM_ENV_FS_MEMORY = 2,  /* in memory: tmpfs, ramfs, hugetlbfs */
  MM_ENV_FS_NETWORK = 3, /* on another machine: nfs, cifs, 9p, ceph, ... */
  MM_ENV_FS_FUSE = 4,    /* served by a user-space daemon (FUSE) */
  MM_ENV_FS_OVERLAY = 5, /* a union of layers: overlay (containers) */
  MM_ENV_FS_PSEUDO = 6   /* kernel interfaces: proc, sysfs, debugfs, ... */
};

/* One huge page size (mm_env_t.hugepages). */
typedef struct mm_env_hugepage {
  uint64_t size;  /* bytes per page, e.g. 2 MiB */
  int64_t total;  /* pages reserved in the pool (nr_hugepages); -1 unknown */
  int64_t free;   /* pages of the pool not in use; -1 unknown */
} mm_env_hugepage_t;

/*
 * The environment, as read by mm_env_read(). A plain value: copy it, keep
 * it, compare two of them. Sizes are in bytes.
 */
typedef struct mm_env {
  /* Memory. */
  int64_t page_size;          /* base page size (sysconf _SC_PAGESIZE) */
  int64_t hugepage_default;   /* default huge page size (Hugepagesize in
                                 /proc/meminfo); -1 unknown, 0 none */
  int nhugepages;             /* entries used in hugepages[]; 0 when the
                                 kernel offers none or they are unknown */
  mm_env_hugepage_t hugepages[MM_ENV_MAX_HUGEPAGE_SIZES]; /* smallest first */
  char thp_anon[16];          /* transparent huge pages for anonymous
                                 memory: "always", "madvise" or "never" */
  char thp_shmem[16];         /* the same for shared memory and tmpfs:
                                 "always", "within_size", "advise",
                                 "never", "deny" or "force" */
  char thp_defrag[24];        /* whether a huge page fault may stall to
                                 compact memory: "always", "defer",
                                 "defer+madvise", "madvise" or "never" */
  int overcommit_memory;      /* vm.overcommit_memory: 0 heuristic,
                                 1 always, 2 strict; -1 unknown */
  int64_t overcommit_ratio;   /* vm.overcommit_ratio, percent of RAM
                                 counted by the strict mode; -1 unknown */
  int64_t commit_limit;       /* CommitLimit: what strict mode allows */
  int64_t committed;          /* Committed_AS: what is committed now */
  int64_t mem_total;          /* MemTotal: RAM the kernel manages */
  int64_t mem_available;      /* MemAvailable: RAM usable without swapping */
  int64_t swap_total;         /* SwapTotal; 0 when there is no swap */
  int64_t swap_free;          /* SwapFree */

  /* Limits of this process. */
  uint64_t nofile_soft;       /* RLIMIT_NOFILE, current (soft) limit */
  uint64_t nofile_hard;       /* RLIMIT_NOFILE, ceiling for the soft one */
  int64_t nofile_used;        /* descriptors open now (/proc/self/fd) */
  uint64_t as_soft;           /* RLIMIT_AS: bytes of address space */
  uint64_t as_hard;           /* RLIMIT_AS, ceiling */
  uint64_t memlock_soft;      /* RLIMIT_MEMLOCK: bytes mlock may lock */
  uint64_t memlock_hard;      /* RLIMIT_MEMLOCK, ceiling */
  int cap_ipc_lock;           /* 1 if the process has CAP_IPC_LOCK, which
                                 lifts RLIMIT_MEMLOCK; -1 unknown */
  int64_t max_map_count;      /* vm.max_map_count: mappings per process */
  int64_t map_count;          /* mappings this process has now */

  /* Shared memory (/dev/shm, where shm_open creates its objects). */
  char shm_fstype[32];        /* filesystem of /dev/shm, normally "tmpfs";
                                 "none" when there is no /dev/shm */
  int64_t shm_size;           /* its size limit */
  int64_t shm_free;           /* bytes still free in it */

  /* The filesystem of the path given to mm_env_read() (unknown when the
   * path was NULL). */
  char fs_type[32];           /* type as mounted: "ext4", "xfs", "nfs4",
                                 "tmpfs", "fuse.sshfs", ... */
  uint64_t fs_magic;          /* statfs f_type; 0 unknown */
  int fs_kind;                /* enum mm_env_fs_kind */
  char fs_mount[256];         /* its mount point (cut to fit) */
  int fs_readonly;            /* 1 if mounted read-only, 0 if not;
                                 -1 unknown */
  int64_t fs_size;            /* size of the filesystem */
  int64_t fs_free;            /* bytes an unprivileged user may still use */

  /* Platform. */
  char kernel[64];            /* kernel release (uname -r) */
  char machine[16];           /* hardware name (uname -m), e.g. "x86_64" */
  int ptr_bits;               /* width of a pointer in this process: 32
                                 or 64 */
  int va_bits;                /* virtual address bits of the CPU (x86
                                 "address sizes"); -1 unknown */
  int cachestat;              /* 1 if cachestat(2) works (Linux 6.5+), 0 if
                                 the kernel lacks it or it is blocked,
                                 -1 unknown */
  int64_t fault_around_bytes; /* bytes a file page fault maps around the
                                 faulting page (debugfs, root only);
                                 -1 unknown */
  int hypervisor;             /* 1 if running under a hypervisor (the CPU's
                                 "hypervisor" flag), 0 if not, -1 unknown */
  int balloon;                /* 1 if a virtio balloon device is present,
                                 0 if not, -1 unknown */
  int balloon_reporting;      /* 1 if that balloon reports free pages to the
                                 host (feature bit 5), 0 if not, -1 unknown */
} mm_env_t;

/*
 * Read the environment into *env. `path` names a file or directory whose
 * filesystem to describe (fs_* fields); NULL leaves those unknown.
 * Everything else is read from /proc, /sys, statfs, getrlimit, sysconf and
 * uname; what cannot be read is left unknown (see UNKNOWN VALUES).
 *
 * Returns 0, or:
 *   -EINVAL  env is NULL;
 *   -errno   path was given and cannot be looked up (-ENOENT, -EACCES,
 *            ...). *env is then filled all the same, with the fs_*
 *            fields unknown.
 */
MM_API MM_NODISCARD int mm_env_read(mm_env_t *env, const char *path);

/* Severity of a piece of advice (mm_env_advice_t.severity). */
enum mm_env_severity {
  MM_ENV_INFO = 0,    /* worth knowing when choosing options */
  MM_ENV_WARN = 1,    /* will bite some uses of mmap here */
  MM_ENV_CRITICAL = 2 /* will bite ordinary use: fix it first */
};

/* No environment gets more pieces of advice than this: an array of this
 * many items is always large enough for mm_env_advise(). */
#define MM_ENV_MAX_ADVICE 32

/* One piece of advice. */
typedef struct mm_env_advice {
  int severity;       /* enum mm_env_severity */
  char key[24];       /* what it is about, short and stable, for scripts
                         and tests: "nofile", "as", "memlock",
                         "max_map_count", "map_count", "overcommit", "swap",
                         "shm", "fs", "fs_free", "fs_readonly", "page_size",
                         "thp", "addr32", "cachestat", "fault_around",
                         "hypervisor", "balloon" */
  char message[400];  /* one or two sentences: the value, why it bites,
                         what to do */
} mm_env_advice_t;

/*
 * Compute advice from an environment read by mm_env_read(): write at most
 * `cap` items to items[] (items may be NULL when cap is 0), most severe
 * first, in a fixed order within one severity.
 *
 * Returns the number of items that apply, which may exceed cap (call again
 * with a larger array, as with snprintf), or -EINVAL if env is NULL, cap
 * is negative, or items is NULL while cap is not 0. Unknown values give no
 * advice. Works on the struct alone: it may come from another machine or
 * be made up in a test.
 */
MM_API MM_NODISCARD int mm_env_advise(const mm_env_t *env,
                                      mm_env_advice_t *items, int cap);

/* "info", "warn" or "critical" for an enum mm_env_severity; "?" otherwise.
 * The string is static. */
MM_API const char *mm_env_severity_name(int severity);

/* "unknown", "local", "memory", "network", "fuse", "overlay" or "pseudo"
 * for an enum mm_env_fs_kind; "?" otherwise. The string is static. */
MM_API const char *mm_env_fs_kind_name(int kind);

#endif /* MEMMAP_ENV_H */
