/*
 * memmap/cache.h - the page cache: how much of a file is in memory, and
 * loading (touch), evicting and locking it.
 *
 * What vmtouch and util-linux fincore do, as a library. Residency is read
 * with the cachestat(2) system call where the kernel has it (Linux 6.5+),
 * which also counts dirty, writeback, evicted and recently evicted pages
 * without mapping anything; otherwise with mincore(2) over a temporary
 * read-only mapping. Every result says which method produced it.
 *
 * PERMISSIONS
 * The kernel hides page-cache residency of files the caller could not
 * write, to close a side channel: since Linux 5.2 mincore() then reports
 * only pages mapped in the caller's own page tables, and cachestat()
 * refuses with EPERM. This library does not print numbers the kernel made
 * up: for such a file the query fails with -EPERM (cachestat's answer, or,
 * for mincore, because the caller is neither the file's owner, nor root,
 * nor allowed to write it).
 *
 * THREADS
 * Every function here may be called from several threads at once.
 */
#ifndef MEMMAP_CACHE_H
#define MEMMAP_CACHE_H

#include "common.h"

/* How residency was, or is to be, read (mm_cache_stat_t.method). */
enum mm_cache_method {
  MM_CACHE_AUTO = 0,      /* cachestat where the kernel has it, else mincore */
  MM_CACHE_CACHESTAT = 1, /* cachestat(2), Linux 6.5+ */
  MM_CACHE_MINCORE = 2    /* mincore(2) over a temporary mapping */
};

/* The residency of a range of a file. Page counts are in pages of the
 * system page size. Counts only cachestat knows are -1 with mincore. */
typedef struct mm_cache_stat {
  uint64_t pages;            /* pages in the range */
  uint64_t resident;         /* pages of the range in the page cache */
  int64_t dirty;             /* resident pages not yet written back */
  int64_t writeback;         /* pages being written back now */
  int64_t evicted;           /* pages evicted from the cache */
  int64_t recently_evicted;  /* evicted pages that would still be
                                resident in a cache as large as the
                                workload's working set (refaults) */
  int method;                /* MM_CACHE_CACHESTAT or MM_CACHE_MINCORE */
  uint64_t page_size;        /* bytes per page */
} mm_cache_stat_t;

/* The name of a method: "cachestat", "mincore" or "auto". Static. */
MM_API const char *mm_cache_method_name(int method);

/* 1 if this kernel has cachestat(2), 0 if not. */
MM_API int mm_cache_have_cachestat(void);

/*
 * Residency of [offset, offset+len) of the open file fd (len 0: to the end
 * of the file; a range past the end counts only the pages that exist).
 * method: MM_CACHE_AUTO, or force one (MM_CACHE_CACHESTAT on a kernel
 * without it gives -ENOSYS).
 * Errors: -EPERM (the kernel does not report this file to this caller; see
 * PERMISSIONS), -EBADF, -EINVAL (not a regular file or block device),
 * -ENOSYS, -ENOMEM.
 */
MM_API MM_NODISCARD int mm_cache_stat_fd(int fd, uint64_t offset, uint64_t len,
                                         int method, mm_cache_stat_t *out);

/* The same for a path (opened read-only, closed again). */
MM_API MM_NODISCARD int mm_cache_stat(const char *path, uint64_t offset,
                                      uint64_t len, int method,
                                      mm_cache_stat_t *out);

/*
 * Per-page residency of [offset, offset+len) of fd (len 0: to the end):
 * vec[i] is 1 if page i of the range is resident, else 0. vec must hold
 * n bytes; *npages receives the number of pages in the range and at most
 * n are written. Uses mincore (cachestat has no per-page answer), so the
 * PERMISSIONS rules of mincore apply (-EPERM).
 */
MM_API MM_NODISCARD int mm_cache_pages(int fd, uint64_t offset, uint64_t len,
                                       unsigned char *vec, size_t n,
                                       uint64_t *npages);

/*
 * Load [offset, offset+len) of fd into the page cache and wait until it is
 * there (MADV_POPULATE_READ over a temporary mapping, in windows of at most
 * 256 MiB, so any file size works in a 32-bit process). len 0: to the end.
 * Errors: -EIO, -ENOMEM, MM_ETRUNCATED (the file shrank meanwhile).
 */
MM_API MM_NODISCARD int mm_cache_touch(int fd, uint64_t offset, uint64_t len);

/*
 * Ask the kernel to drop [offset, offset+len) of fd from the page cache
 * (POSIX_FADV_DONTNEED; len 0: to the end). Pages that are dirty, under
 * writeback or mapped by some process stay. If left is not NULL it
 * receives the residency afterwards (what could not be evicted), read
 * with `method` as in mm_cache_stat_fd.
 */
MM_API MM_NODISCARD int mm_cache_evict(int fd, uint64_t offset, uint64_t len,
                                       int method, mm_cache_stat_t *left);

/* A set of locked file ranges (mm_cache_lock). */
typedef struct mm_cache_lock mm_cache_lock_t;

/*
 * Load [offset, offset+len) of fd into memory and lock it there (mmap +
 * mlock, like vmtouch -l): the pages stay resident until mm_cache_unlock,
 * or the process exits. The descriptor is not kept. Needs RLIMIT_MEMLOCK
 * (or CAP_IPC_LOCK) for the size. *out is the handle.
 * Errors: -ENOMEM / -EPERM (over RLIMIT_MEMLOCK), -EAGAIN, -EINVAL (empty
 * range).
 */
MM_API MM_NODISCARD int mm_cache_lock(int fd, uint64_t offset, uint64_t len,
                                      mm_cache_lock_t **out);

/* Unlock and unmap; the pages may then be evicted. NULL is fine. */
MM_API int mm_cache_unlock(mm_cache_lock_t *lock);

/* Bytes locked by the handle. */
MM_API uint64_t mm_cache_locked_bytes(const mm_cache_lock_t *lock);

/* Walking a tree (mm_cache_walk). */
enum mm_cache_walk_flags {
  MM_CACHE_FOLLOW = 1u << 0, /* follow symbolic links (default: skip) */
  MM_CACHE_XDEV = 1u << 1    /* stay on the filesystem of the start path */
};

/*
 * Called by mm_cache_walk for every regular file and directory (err 0) and
 * for every entry that could not be read (err < 0: -EACCES, -ENOENT for a
 * file that vanished, -ELOOP for a directory loop through a followed link,
 * ...), with depth 0 for the start path. A nonzero return stops the walk
 * and is returned by it. `path` is valid only during the call.
 */
typedef int (*mm_cache_walk_fn)(void *arg, const char *path, int err,
                                int is_dir, int depth);

/*
 * Visit `path`: a file is reported itself; a directory, with everything
 * below it (depth-first, entries in directory order). Directories are
 * reported once (is_dir 1, before their contents). Errors on single
 * entries go to fn and do not stop the walk. Returns 0, fn's nonzero
 * return, or an error for the start path itself.
 */
MM_API int mm_cache_walk(const char *path, unsigned flags, mm_cache_walk_fn fn,
                         void *arg);

#endif /* MEMMAP_CACHE_H */
