/*
 * memmap/view.h - a window on a file that you read or write through a
 * pointer.
 *
 * A view covers a whole file or any byte range of it. Offsets need not be
 * page aligned: the library maps from the page below and hides the slack.
 * Behind the pointer is one of two backends:
 *
 *   MM_BACKEND_MMAP  the file's pages are mapped; reads and writes through
 *                    the pointer are loads and stores on the page cache, with
 *                    no copy and no system call per access.
 *   MM_BACKEND_READ  the bytes were read with read() into a private buffer.
 *                    Used for what cannot be mapped (pipes, FIFOs, ttys,
 *                    sockets, procfs and sysfs files, character devices that
 *                    refuse mmap) and for regular files smaller than the
 *                    threshold, where mapping costs more than reading.
 *
 * The caller sees the same view either way, can ask which backend was used
 * (mm_view_backend) and can force one (mm_view_opts_t.backend).
 *
 * MODES
 *   MM_VIEW_READ     read-only. Writing through the pointer is not allowed
 *                    (it faults when mapped; with the read backend it is a
 *                    bug the library cannot catch).
 *   MM_VIEW_WRITE    shared writable: stores reach the file (the page cache
 *                    at once, the disk after mm_view_sync or the kernel's own
 *                    writeback). Always mapped: a file that cannot be mapped
 *                    gives MM_ENOTMAPPABLE.
 *   MM_VIEW_PRIVATE  private copy-on-write: the pointer is writable, but
 *                    stores never reach the file.
 *
 * FILE DESCRIPTORS
 * A READ or PRIVATE view does not keep a file descriptor: once mapped (or
 * read) the descriptor is closed, so a process can hold many more views than
 * RLIMIT_NOFILE allows. The real limit is then vm.max_map_count (one mapping
 * per view); reaching it gives MM_EMAPCOUNT. A WRITE view keeps one
 * descriptor, needed to resize the file.
 *
 * TRUNCATION
 * If another process truncates the file while it is mapped, touching a page
 * past the new end of file raises SIGBUS, which kills a process by default.
 * mm_view_read(), mm_view_write() and mm_view_guard() catch that SIGBUS and
 * return MM_ETRUNCATED instead. Plain pointer access through mm_view_data()
 * is unguarded: after a truncation it is the caller's risk. The guard
 * installs one process-wide SIGBUS handler the first time it is used; a
 * SIGBUS that is not the guard's own (another address, another thread with
 * no guard active, a signal sent with kill) is passed to the handler that
 * was installed before it, or, if that was the default, kills the process
 * as it would have. Install your own SIGBUS handler before first using the
 * guard if you want both.
 *
 * THREADS
 * A view may be read from any number of threads. Functions that change the
 * view (resize, close) need the caller to ensure no other thread uses the
 * view at the same time. Guarded calls work in several threads at once.
 */
#ifndef MEMMAP_VIEW_H
#define MEMMAP_VIEW_H

#include "common.h"

typedef struct mm_view mm_view_t;

/* Access modes (mm_view_opts_t.mode). */
enum mm_view_mode {
  MM_VIEW_READ = 0,
  MM_VIEW_WRITE = 1,
  MM_VIEW_PRIVATE = 2
};

/* Backends (mm_view_opts_t.backend, mm_view_backend()). */
enum mm_backend {
  MM_BACKEND_AUTO = 0, /* only as an option: let the library choose */
  MM_BACKEND_MMAP = 1,
  MM_BACKEND_READ = 2
};

/* Expected access pattern (mm_view_opts_t.access). */
enum mm_access {
  MM_ACCESS_DEFAULT = 0,
  /* Will be read front to back: map with read-ahead and fault the pages in
   * up front (MAP_POPULATE), so the scan takes no page faults. */
  MM_ACCESS_SEQUENTIAL = 1,
  /* Random accesses: no read-ahead (MADV_RANDOM). */
  MM_ACCESS_RANDOM = 2
};

/* Flags (mm_view_opts_t.flags). */
enum mm_view_flags {
  /* Create the file if it does not exist (mode MM_VIEW_WRITE only), with
   * O_CREAT|O_NOFOLLOW and permissions opts.perm (0600 if 0). A new file is
   * empty: the view has size 0 until mm_view_resize() grows it. */
  MM_VIEW_CREATE = 1u << 0,
  /* With MM_VIEW_CREATE: fail with -EEXIST if the file exists (O_EXCL). */
  MM_VIEW_EXCL = 1u << 3,
  /* Fault every page in while opening (MAP_POPULATE). */
  MM_VIEW_POPULATE = 1u << 1,
  /* mm_view_close() first syncs a WRITE view to disk (msync MS_SYNC) and
   * returns that sync's error. Without it, close writes nothing back
   * itself: stores are in the page cache and reach the disk when the kernel
   * writes them back. */
  MM_VIEW_SYNC_ON_CLOSE = 1u << 2
};

/*
 * The defaults for mm_view_opts_t.threshold: MM_BACKEND_AUTO maps a regular
 * file's range when it is at least this large, and reads it otherwise.
 *
 * Whole-file use (MM_ACCESS_DEFAULT and MM_ACCESS_SEQUENTIAL): 32 MiB. Below
 * it, malloc + read() of the whole range cost less than mapping it and
 * touching every page on the machine this was measured on (2-core x86_64
 * VM, Linux 6.18, `memmap bench files`), where installing each page-table
 * entry costs about 1.3 us; at 64 MiB and above, mapping is faster because a
 * fresh 64 MiB buffer costs even more. On bare metal the crossover is far
 * lower: run `memmap bench files` and set opts.threshold from its verdict.
 *
 * Random access (MM_ACCESS_RANDOM): 256 KiB. Only the pages touched are
 * paid for, so mapping wins once the fixed cost of mmap + munmap (about
 * 25 us there) is below the cost of reading the whole range.
 */
#define MM_VIEW_THRESHOLD_DEFAULT ((uint64_t)32 << 20)
#define MM_VIEW_RANDOM_THRESHOLD_DEFAULT ((uint64_t)256 << 10)

/*
 * The default cap on how much a READ-backend view of a stream (a pipe, a
 * socket, a character device, a procfs file) reads when no length is given:
 * 1 GiB. Past it, mm_view_open() fails with -EFBIG.
 */
#define MM_VIEW_STREAM_LIMIT_DEFAULT ((uint64_t)1 << 30)

/* Options for mm_view_open(). All-zero means: read-only, whole file,
 * automatic backend, default threshold. */
typedef struct mm_view_opts {
  int mode;            /* enum mm_view_mode */
  int backend;         /* enum mm_backend; AUTO by default */
  int access;          /* enum mm_access */
  unsigned flags;      /* enum mm_view_flags, or-ed */
  uint64_t offset;     /* first byte of the range; any value */
  uint64_t length;     /* bytes in the range; 0 means "to the end of file".
                          Required for character devices that are mapped,
                          such as /dev/zero. */
  uint64_t threshold;  /* AUTO maps regular-file ranges at least this
                          large; 0 = MM_VIEW_THRESHOLD_DEFAULT, or
                          MM_VIEW_RANDOM_THRESHOLD_DEFAULT for
                          MM_ACCESS_RANDOM */
  uint64_t stream_limit; /* see MM_VIEW_STREAM_LIMIT_DEFAULT; 0 = default */
  unsigned perm;       /* permissions for MM_VIEW_CREATE; 0 = 0600 */
} mm_view_opts_t;

/*
 * Open a view of the file at `path`. `opts` may be NULL (all defaults).
 * On success stores the new view in *out and returns 0; on failure *out is
 * set to NULL.
 *
 * Errors: -errno from open/fstat/mmap/read (-ENOENT, -EACCES, ...);
 *   MM_ERANGE        offset or offset+length lies past the end of the file;
 *   MM_ENOTMAPPABLE  backend MMAP (or mode WRITE) on something that cannot
 *                    be mapped;
 *   MM_EMAPCOUNT     the process has as many mappings as vm.max_map_count;
 *   -ENOMEM          out of memory or address space;
 *   -EFBIG           a stream was longer than opts.stream_limit, or the
 *                    range does not fit in this process's address space;
 *   -EINVAL          bad options.
 */
MM_API MM_NODISCARD int mm_view_open(mm_view_t **out, const char *path,
                                     const mm_view_opts_t *opts);

/*
 * The same on an open descriptor, which stays the caller's: the view never
 * closes it (a WRITE view keeps its own duplicate). For streams (pipes,
 * sockets, ttys) the view consumes what it reads from the descriptor.
 */
MM_API MM_NODISCARD int mm_view_open_fd(mm_view_t **out, int fd,
                                        const mm_view_opts_t *opts);

/*
 * Close the view, unmap or free its memory. Every pointer into the view
 * becomes invalid. With MM_VIEW_SYNC_ON_CLOSE, returns the error of that
 * final sync (the view is closed all the same); also returns the error of
 * closing a kept descriptor. mm_view_close(NULL) returns 0.
 */
MM_API int mm_view_close(mm_view_t *view);

/*
 * The first byte of the view. Valid until mm_view_close() or a
 * mm_view_resize() that may move the view. Never NULL, even for an empty
 * view (then it must not be dereferenced).
 */
MM_API void *mm_view_data(const mm_view_t *view);

/* The number of bytes in the view. */
MM_API uint64_t mm_view_size(const mm_view_t *view);

/* MM_BACKEND_MMAP or MM_BACKEND_READ: how this view got its bytes. An empty
 * view reports MM_BACKEND_MMAP if it was opened for mapping (nothing needed
 * mapping) and MM_BACKEND_READ if it was read. */
MM_API int mm_view_backend(const mm_view_t *view);

/* Bytes mapped beyond the view because mappings are whole pages: the part of
 * the first page before the offset plus the rest of the last page. 0 for the
 * read backend. This is the study note's "page-granular slack". */
MM_API uint64_t mm_view_slack(const mm_view_t *view);

/* A name for a backend: "mmap", "read" or "auto". Static. */
MM_API const char *mm_backend_name(int backend);

/* Advice (mm_view_advise). */
enum mm_advice {
  MM_ADVISE_NORMAL = 0,
  MM_ADVISE_SEQUENTIAL = 1,
  MM_ADVISE_RANDOM = 2,
  MM_ADVISE_WILLNEED = 3,
  MM_ADVISE_DONTNEED = 4,
  MM_ADVISE_HUGEPAGE = 5
};

/*
 * Tell the kernel how [offset, offset+len) of the view will be used
 * (madvise). Ranges are in view bytes and aligned to pages internally;
 * len 0 means to the end of the view. For a read-backend view the advice has
 * nothing to act on and returns 0. DONTNEED on a PRIVATE view throws away
 * private changes on the pages it covers, which then read as the file
 * again.
 * Errors: MM_ERANGE, -EINVAL (unknown advice or not supported by the
 * kernel for this mapping).
 */
MM_API MM_NODISCARD int mm_view_advise(mm_view_t *view, uint64_t offset,
                                       uint64_t len, int advice);

/* Fault the pages of [offset, offset+len) in now (MADV_POPULATE_READ, or
 * _WRITE for a WRITE view; touching each page where the kernel lacks it).
 * len 0 means to the end. Returns MM_ETRUNCATED if the file was truncated
 * under the range. 0 for the read backend. */
MM_API MM_NODISCARD int mm_view_populate(mm_view_t *view, uint64_t offset,
                                         uint64_t len);

/* Lock [offset, offset+len) in memory (mlock) / unlock it. len 0 = to the
 * end. Errors: -ENOMEM or -EPERM past RLIMIT_MEMLOCK, -EAGAIN. */
MM_API MM_NODISCARD int mm_view_lock(mm_view_t *view, uint64_t offset,
                                     uint64_t len);
MM_API MM_NODISCARD int mm_view_unlock(mm_view_t *view, uint64_t offset,
                                       uint64_t len);

/* Sync flags (MM_SYNC_WAIT, MM_SYNC_ASYNC) are in common.h. */

/*
 * Write the changed pages of [offset, offset+len) of a WRITE view back to
 * the file (msync). len 0 = to the end. After MM_SYNC_WAIT returns 0 the
 * bytes are on the device (as far as the device's cache flush allows).
 * For READ and PRIVATE views there is nothing to write and it returns 0.
 * Errors: -EIO (write-back failed), MM_ERANGE.
 */
MM_API MM_NODISCARD int mm_view_sync(mm_view_t *view, uint64_t offset,
                                     uint64_t len, int flags);

/* Resize flags. */
enum mm_resize_flags {
  /* The view may move to a new address. Without it, resize fails with
   * -ENOMEM when the view cannot grow in place, and changes nothing. */
  MM_RESIZE_MAYMOVE = 1u << 0
};

/*
 * Resize a WRITE view and its file to `new_size` bytes of view (the file
 * becomes offset + new_size bytes long). Only a view that ends at the end of
 * the file can be resized; otherwise -EINVAL. Growing allocates disk space
 * first (fallocate), so a full disk gives -ENOSPC here rather than a SIGBUS
 * later; new bytes read as zero. Shrinking truncates the file.
 * Without MM_RESIZE_MAYMOVE the address never changes; with it the address
 * may change and every old pointer into the view is invalid.
 * On failure the view and the file are as they were.
 * Errors: -EINVAL (not a WRITE view, or not at the end of the file),
 * -ENOSPC, -ENOMEM, -EFBIG.
 */
MM_API MM_NODISCARD int mm_view_resize(mm_view_t *view, uint64_t new_size,
                                       unsigned flags);

/*
 * Guarded copy out of the view: copy n bytes at `offset` into dst.
 * Returns 0, MM_ERANGE if [offset, offset+n) is not inside the view, or
 * MM_ETRUNCATED if the file was truncated under the range (dst then holds
 * an unspecified prefix of the bytes). Never raises SIGBUS.
 */
MM_API MM_NODISCARD int mm_view_read(const mm_view_t *view, uint64_t offset,
                                     void *dst, size_t n);

/*
 * Guarded copy into a WRITE or PRIVATE view. Returns 0, MM_ERANGE,
 * MM_ETRUNCATED, or -EBADF for a READ view.
 */
MM_API MM_NODISCARD int mm_view_write(mm_view_t *view, uint64_t offset,
                                      const void *src, size_t n);

/*
 * Guarded call: run fn(arg, data, size) over the view's bytes. If the file
 * is truncated and fn touches a page past its end, fn is abandoned at that
 * instruction (with a siglongjmp: it does not return, its cleanup does not
 * run, so fn must not hold locks or allocate what it cannot lose) and
 * mm_view_guard returns MM_ETRUNCATED. Otherwise returns what fn returned.
 * Guarded calls may be nested and may run in several threads at once.
 */
typedef int (*mm_view_fn)(void *arg, void *data, uint64_t size);
MM_API int mm_view_guard(const mm_view_t *view, mm_view_fn fn, void *arg);

#endif /* MEMMAP_VIEW_H */
