/*
 * sys_linux.c - the kernel boundary on Linux, with fault injection.
 * See sys.h. Nothing else in the library calls these system calls.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(off_t) == 8, "memmap needs 64-bit file offsets");

static const char *const sys_names[MM_SYS__COUNT] = {
#define MM__SYSOP_NAME(name) #name,
    MM__SYSOP_LIST(MM__SYSOP_NAME)
#undef MM__SYSOP_NAME
};

static _Atomic unsigned long sys_calls[MM_SYS__COUNT];
static _Atomic unsigned long fault_at[MM_SYS__COUNT]; /* 0: not armed */
static _Atomic int fault_err[MM_SYS__COUNT];
static _Atomic int fault_sticky[MM_SYS__COUNT];
static _Atomic int fault_armed; /* any op armed: the fast path's one load */
static mm__sys_trace_fn trace_fn;
static void *trace_arg;
static mm__sys_msync_fn msync_fn;
static void *msync_arg;

const char *mm__sys_name(int op) {
  static char lower[MM_SYS__COUNT][16];
  if (op < 0 || op >= MM_SYS__COUNT) return "?";
  /* Lower-case once; the race is benign (same bytes written). */
  if (lower[op][0] == 0) {
    char tmp[16];
    size_t i;
    for (i = 0; sys_names[op][i] && i < sizeof tmp - 1; i++) {
      char c = sys_names[op][i];
      tmp[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    tmp[i] = 0;
    memcpy(lower[op], tmp, sizeof tmp);
  }
  return lower[op];
}

/* Count the call; return -errno if a fault is armed for it. */
static int sys_enter(int op) {
  unsigned long n =
      atomic_fetch_add_explicit(&sys_calls[op], 1, memory_order_relaxed) + 1;
  if (!atomic_load_explicit(&fault_armed, memory_order_relaxed)) return 0;
  unsigned long at = atomic_load(&fault_at[op]);
  if (at == 0) return 0;
  if (n == at || (n > at && atomic_load(&fault_sticky[op])))
    return -atomic_load(&fault_err[op]);
  return 0;
}

static long sys_leave(int op, long result) {
  if (trace_fn) trace_fn(trace_arg, op, result);
  return result;
}

#define SYS_ENTER(op)                      \
  do {                                     \
    int f_ = sys_enter(op);                \
    if (f_) return (int)sys_leave(op, f_); \
  } while (0)

#define SYS_RESULT(op, r) ((int)sys_leave((op), (r) < 0 ? -errno : (r)))

void mm__fault_set(int op, unsigned long nth, int err, int sticky) {
  if (op < 0 || op >= MM_SYS__COUNT) return;
  atomic_store(&fault_err[op], err > 0 ? err : -err);
  atomic_store(&fault_sticky[op], sticky);
  atomic_store(&fault_at[op], nth ? atomic_load(&sys_calls[op]) + nth : 0);
  int any = 0;
  for (int i = 0; i < MM_SYS__COUNT; i++) any |= atomic_load(&fault_at[i]) != 0;
  atomic_store(&fault_armed, any);
}

void mm__fault_clear(void) {
  atomic_store(&fault_armed, 0);
  for (int i = 0; i < MM_SYS__COUNT; i++) {
    atomic_store(&fault_at[i], 0);
    atomic_store(&sys_calls[i], 0);
  }
}

unsigned long mm__sys_count(int op) {
  if (op < 0 || op >= MM_SYS__COUNT) return 0;
  return atomic_load(&sys_calls[op]);
}

void mm__sys_trace(mm__sys_trace_fn fn, void *arg) {
  trace_arg = arg;
  trace_fn = fn;
}

void mm__sys_msync_hook(mm__sys_msync_fn fn, void *arg) {
  msync_arg = arg;
  msync_fn = fn;
}

static _Atomic uint64_t boot_fake, boot_real;

/* Read once it worked: a failure (no /proc, EMFILE) is tried again. */
static uint64_t boot_read(void) {
  char buf[64];
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n < 32) return 0;
  uint64_t x = 0xcbf29ce484222325ull; /* FNV-1a */
  for (ssize_t i = 0; i < n; i++) {
    x ^= (unsigned char)buf[i];
    x *= 0x100000001b3ull;
  }
  return x ? x : 1;
}

uint64_t mm__sys_boot_id(void) {
  uint64_t f = atomic_load_explicit(&boot_fake, memory_order_relaxed);
  if (f) return f;
  uint64_t b = atomic_load_explicit(&boot_real, memory_order_relaxed);
  if (!b && (b = boot_read())) atomic_store(&boot_real, b);
  return b;
}

void mm__sys_boot_id_set(uint64_t x) { atomic_store(&boot_fake, x); }

int mm__sys_mmap(void **out, void *addr, size_t len, int prot, int flags,
                 int fd, uint64_t off) {
  *out = NULL;
  SYS_ENTER(MM_SYS_MMAP);
  if (off > (uint64_t)INT64_MAX) return (int)sys_leave(MM_SYS_MMAP, -EOVERFLOW);
  void *p = mmap(addr, len, prot, flags, fd, (off_t)off);
  if (p == MAP_FAILED) return (int)sys_leave(MM_SYS_MMAP, -errno);
  *out = p;
  return (int)sys_leave(MM_SYS_MMAP, 0);
}

int mm__sys_munmap(void *addr, size_t len) {
  SYS_ENTER(MM_SYS_MUNMAP);
  int r = munmap(addr, len);
  return SYS_RESULT(MM_SYS_MUNMAP, r);
}

int mm__sys_mremap(void **out, void *old, size_t old_len, size_t new_len,
                   int flags, void *new_addr) {
  *out = NULL;
  SYS_ENTER(MM_SYS_MREMAP);
  void *p = mremap(old, old_len, new_len, flags, new_addr);
  if (p == MAP_FAILED) return (int)sys_leave(MM_SYS_MREMAP, -errno);
  *out = p;
  return (int)sys_leave(MM_SYS_MREMAP, 0);
}

int mm__sys_mprotect(void *addr, size_t len, int prot) {
  SYS_ENTER(MM_SYS_MPROTECT);
  int r = mprotect(addr, len, prot);
  return SYS_RESULT(MM_SYS_MPROTECT, r);
}

int mm__sys_madvise(void *addr, size_t len, int advice) {
  SYS_ENTER(MM_SYS_MADVISE);
  int r;
  do r = madvise(addr, len, advice);
  while (r < 0 && errno == EINTR);
  return SYS_RESULT(MM_SYS_MADVISE, r);
}

int mm__sys_msync(void *addr, size_t len, int flags) {
  SYS_ENTER(MM_SYS_MSYNC);
  int r = msync(addr, len, flags);
  if (msync_fn) {
    int e = r == 0 ? 0 : errno;
    msync_fn(msync_arg, addr, len, flags, -e);
    errno = e;
  }
  return SYS_RESULT(MM_SYS_MSYNC, r);
}

int mm__sys_mincore(void *addr, size_t len, unsigned char *vec) {
  SYS_ENTER(MM_SYS_MINCORE);
  int r = mincore(addr, len, vec);
  return SYS_RESULT(MM_SYS_MINCORE, r);
}

int mm__sys_mlock(const void *addr, size_t len) {
  SYS_ENTER(MM_SYS_MLOCK);
  int r = mlock(addr, len);
  return SYS_RESULT(MM_SYS_MLOCK, r);
}

int mm__sys_munlock(const void *addr, size_t len) {
  SYS_ENTER(MM_SYS_MUNLOCK);
  int r = munlock(addr, len);
  return SYS_RESULT(MM_SYS_MUNLOCK, r);
}

int mm__sys_ftruncate(int fd, uint64_t len) {
  SYS_ENTER(MM_SYS_FTRUNCATE);
  if (len > (uint64_t)INT64_MAX) return (int)sys_leave(MM_SYS_FTRUNCATE, -EFBIG);
  int r;
  do r = ftruncate(fd, (off_t)len);
  while (r < 0 && errno == EINTR);
  return SYS_RESULT(MM_SYS_FTRUNCATE, r);
}

int mm__sys_fallocate(int fd, int mode, uint64_t off, uint64_t len) {
  SYS_ENTER(MM_SYS_FALLOCATE);
  if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
    return (int)sys_leave(MM_SYS_FALLOCATE, -EFBIG);
  int r;
  do r = fallocate(fd, mode, (off_t)off, (off_t)len);
  while (r < 0 && errno == EINTR);
  return SYS_RESULT(MM_SYS_FALLOCATE, r);
}

int mm__sys_memfd_create(const char *name, unsigned flags) {
  SYS_ENTER(MM_SYS_MEMFD_CREATE);
  int r = (int)syscall(SYS_memfd_create, name, flags);
  return SYS_RESULT(MM_SYS_MEMFD_CREATE, r);
}

int mm__sys_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ns,
                       int shared) {
  SYS_ENTER(MM_SYS_FUTEX_WAIT);
  struct timespec ts, *tsp = NULL;
  if (timeout_ns >= 0) {
    ts.tv_sec = (time_t)(timeout_ns / 1000000000);
    ts.tv_nsec = (long)(timeout_ns % 1000000000);
    tsp = &ts;
  }
  int op = shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE;
  long r = syscall(SYS_futex, addr, op, val, tsp, NULL, 0);
  return SYS_RESULT(MM_SYS_FUTEX_WAIT, r);
}

int mm__sys_futex_wake(uint32_t *addr, int n, int shared) {
  SYS_ENTER(MM_SYS_FUTEX_WAKE);
  int op = shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE;
  long r = syscall(SYS_futex, addr, op, n, NULL, NULL, 0);
  return SYS_RESULT(MM_SYS_FUTEX_WAKE, r);
}

int mm__sys_sigaction(int sig, const struct sigaction *act,
                      struct sigaction *old) {
  SYS_ENTER(MM_SYS_SIGACTION);
  int r = sigaction(sig, act, old);
  return SYS_RESULT(MM_SYS_SIGACTION, r);
}

int mm__sys_open(const char *path, int flags, unsigned mode) {
  SYS_ENTER(MM_SYS_OPEN);
  int r;
  do r = open(path, flags | O_CLOEXEC, (mode_t)mode);
  while (r < 0 && errno == EINTR);
  return SYS_RESULT(MM_SYS_OPEN, r);
}

int mm__sys_fstat(int fd, struct stat *st) {
  SYS_ENTER(MM_SYS_FSTAT);
  int r = fstat(fd, st);
  return SYS_RESULT(MM_SYS_FSTAT, r);
}

ssize_t mm__sys_read(int fd, void *buf, size_t n) {
  int f = sys_enter(MM_SYS_READ);
  if (f) return sys_leave(MM_SYS_READ, f);
  ssize_t r;
  do r = read(fd, buf, n);
  while (r < 0 && errno == EINTR);
  return sys_leave(MM_SYS_READ, r < 0 ? -errno : r);
}

ssize_t mm__sys_pread(int fd, void *buf, size_t n, uint64_t off) {
  int f = sys_enter(MM_SYS_PREAD);
  if (f) return sys_leave(MM_SYS_PREAD, f);
  if (off > (uint64_t)INT64_MAX) return sys_leave(MM_SYS_PREAD, -EINVAL);
  ssize_t r;
  do r = pread(fd, buf, n, (off_t)off);
  while (r < 0 && errno == EINTR);
  return sys_leave(MM_SYS_PREAD, r < 0 ? -errno : r);
}

int mm__sys_close(int fd) {
  int f = sys_enter(MM_SYS_CLOSE);
  if (f) {
    /* Even an injected failure must not leak the descriptor: Linux always
     * frees the descriptor on close, whatever it returns. */
    (void)close(fd);
    return (int)sys_leave(MM_SYS_CLOSE, f);
  }
  /* Never retry close on EINTR: on Linux the descriptor is already gone. */
  int r = close(fd);
  return SYS_RESULT(MM_SYS_CLOSE, r);
}

int mm__sys_fsync(int fd) {
  SYS_ENTER(MM_SYS_FSYNC);
  int r;
  do r = fsync(fd);
  while (r < 0 && errno == EINTR);
  return SYS_RESULT(MM_SYS_FSYNC, r);
}

int mm__sys_fcntl(int fd, int cmd, long arg) {
  SYS_ENTER(MM_SYS_FCNTL);
  int r = fcntl(fd, cmd, arg);
  return SYS_RESULT(MM_SYS_FCNTL, r);
}

int mm__sys_fadvise(int fd, uint64_t off, uint64_t len, int advice) {
  SYS_ENTER(MM_SYS_FADVISE);
  if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX)
    return (int)sys_leave(MM_SYS_FADVISE, -EINVAL);
  /* posix_fadvise returns the error instead of setting errno. */
  int r = posix_fadvise(fd, (off_t)off, (off_t)len, advice);
  return (int)sys_leave(MM_SYS_FADVISE, -r);
}

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same on every architecture */
#endif

int mm__sys_cachestat(int fd, uint64_t off, uint64_t len,
                      struct mm__cachestat *cs) {
  SYS_ENTER(MM_SYS_CACHESTAT);
  struct {
    uint64_t off, len;
  } range = {off, len};
  long r = syscall(__NR_cachestat, fd, &range, cs, 0);
  return SYS_RESULT(MM_SYS_CACHESTAT, r);
}

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434 /* the same on every architecture */
#endif

int mm__sys_pidfd_open(int pid) {
  SYS_ENTER(MM_SYS_PIDFD_OPEN);
  long r = syscall(__NR_pidfd_open, pid, 0);
  return SYS_RESULT(MM_SYS_PIDFD_OPEN, r);
}

int mm__sys_getrandom(void *buf, size_t n) {
  SYS_ENTER(MM_SYS_GETRANDOM);
  unsigned char *p = buf;
  long r = 0;
  while (n) {
    r = syscall(SYS_getrandom, p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    p += r;
    n -= (size_t)r;
    r = 0;
  }
  return SYS_RESULT(MM_SYS_GETRANDOM, r);
}
