/*
 * sys.h - the kernel boundary. Every mmap, munmap, mremap, mprotect,
 * madvise, msync, mincore, mlock, ftruncate, fallocate, memfd_create, futex
 * and sigaction call in the library goes through here, as do the file calls (open, fstat,
 * read, pread, close, fsync) whose failures the library must handle.
 *
 * Each wrapper returns 0 (or a count) on success and -errno on failure; none
 * touches errno on the caller's behalf. EINTR is retried where the call is
 * restartable.
 *
 * FAULT INJECTION
 * Any wrapper can be made to fail on purpose with a chosen errno on its Nth
 * call from now (mm__fault_set). The check is one relaxed atomic load per
 * call while nothing is armed, so it stays compiled in: the tests exercise
 * the same code that ships. These symbols are hidden; tests link the static
 * library to reach them.
 *
 * TRACE
 * A test can also install a trace hook that is called after every wrapper
 * with the operation and its result, to record the order of calls (for
 * example, that a log is synced before the data it protects).
 */
#ifndef MM_SYS_H
#define MM_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>

#define MM__SYSOP_LIST(X) \
  X(MMAP) X(MUNMAP) X(MREMAP) X(MPROTECT) X(MADVISE) X(MSYNC) X(MINCORE) \
  X(MLOCK) X(MUNLOCK) X(FTRUNCATE) X(FALLOCATE) X(MEMFD_CREATE) X(FUTEX_WAIT)    \
  X(FUTEX_WAKE) X(SIGACTION) X(OPEN) X(FSTAT) X(READ) X(PREAD) X(CLOSE) \
  X(FSYNC) X(FCNTL) X(FADVISE) X(CACHESTAT) X(PIDFD_OPEN) \
  X(GETRANDOM)

enum mm__sysop {
#define MM__SYSOP_ENUM(name) MM_SYS_##name,
  MM__SYSOP_LIST(MM__SYSOP_ENUM)
#undef MM__SYSOP_ENUM
  MM_SYS__COUNT
};

/* The wrapper's name in lower case ("mmap"), for traces and messages. */
const char *mm__sys_name(int op);

int mm__sys_mmap(void **out, void *addr, size_t len, int prot, int flags,
                 int fd, uint64_t off);
int mm__sys_munmap(void *addr, size_t len);
int mm__sys_mremap(void **out, void *old, size_t old_len, size_t new_len,
                   int flags, void *new_addr);
int mm__sys_mprotect(void *addr, size_t len, int prot);
int mm__sys_madvise(void *addr, size_t len, int advice);
int mm__sys_msync(void *addr, size_t len, int flags);
int mm__sys_mincore(void *addr, size_t len, unsigned char *vec);
int mm__sys_mlock(const void *addr, size_t len);
int mm__sys_munlock(const void *addr, size_t len);
int mm__sys_ftruncate(int fd, uint64_t len);
int mm__sys_fallocate(int fd, int mode, uint64_t off, uint64_t len);
int mm__sys_memfd_create(const char *name, unsigned flags); /* fd or -errno */
/* Wait while *addr == val, at most timeout_ns (< 0: forever). shared: the
 * word may be in memory shared between processes. 0, -EAGAIN (value
 * differed), -ETIMEDOUT or -EINTR. */
int mm__sys_futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ns,
                       int shared);
int mm__sys_futex_wake(uint32_t *addr, int n, int shared); /* woken or -errno */
int mm__sys_sigaction(int sig, const struct sigaction *act,
                      struct sigaction *old);
int mm__sys_open(const char *path, int flags, unsigned mode); /* fd or -errno */
int mm__sys_fstat(int fd, struct stat *st);
/* read/pread: bytes read (0 at end of file) or -errno; EINTR is retried. */
ssize_t mm__sys_read(int fd, void *buf, size_t n);
ssize_t mm__sys_pread(int fd, void *buf, size_t n, uint64_t off);
int mm__sys_close(int fd);
int mm__sys_fsync(int fd);
int mm__sys_fcntl(int fd, int cmd, long arg); /* result or -errno */
int mm__sys_fadvise(int fd, uint64_t off, uint64_t len, int advice);

/* cachestat(2), Linux 6.5+; declared here because older headers lack it. */
struct mm__cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
int mm__sys_cachestat(int fd, uint64_t off, uint64_t len,
                      struct mm__cachestat *cs);
/* pidfd_open(2), Linux 5.3+: a descriptor that polls readable once the
 * process has exited (zombie or reaped). fd or -errno. */
int mm__sys_pidfd_open(int pid);
/* getrandom(2) until n bytes are had: 0 or -errno. */
int mm__sys_getrandom(void *buf, size_t n);

/* Make the `nth` call of `op` from now (1 = the next one) fail with -err.
 * With sticky, that call and every later one fail until cleared. nth 0
 * disarms `op`. */
void mm__fault_set(int op, unsigned long nth, int err, int sticky);
/* Disarm every operation. */
void mm__fault_clear(void);
/* How many calls of `op` the process has made since start (or the last
 * mm__fault_clear), counting injected failures. */
unsigned long mm__sys_count(int op);

typedef void (*mm__sys_trace_fn)(void *arg, int op, long result);
/* Install a trace hook (NULL removes it). Not thread-safe to change while
 * other threads make calls. */
void mm__sys_trace(mm__sys_trace_fn fn, void *arg);

/* A test hook called after every real msync(2) (not an injected failure)
 * with its arguments and result (0 or -errno): a power-loss simulator
 * learns from it which bytes have reached the disk. NULL removes it; not
 * thread-safe to change while other threads make calls. */
typedef void (*mm__sys_msync_fn)(void *arg, void *addr, size_t len, int flags,
                                 int result);
void mm__sys_msync_hook(mm__sys_msync_fn fn, void *arg);

/* This boot's identity: a hash of /proc/sys/kernel/random/boot_id, never 0;
 * 0 when it cannot be read (cached once read; a failure is tried again). A heap's recovery
 * tells a process crash (same boot: the page cache is intact) from an OS
 * crash or power loss by it. mm__sys_boot_id_set(x) makes it return x
 * instead (a test simulating a reboot); 0 restores the real one. */
uint64_t mm__sys_boot_id(void);
void mm__sys_boot_id_set(uint64_t x);

#endif /* MM_SYS_H */
