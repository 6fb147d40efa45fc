/*
 * memmap/region.h - memory that grows without moving, in RAM or in a file.
 *
 * A region reserves a large span of address space once (64 GiB by default
 * on 64-bit systems; it costs no memory) and commits pages at its start as
 * it grows. Its base address never changes, so pointers into it stay valid
 * for the region's life, and growing never copies: the alternative, malloc
 * + realloc, copies or remaps as a buffer grows and leaves the heap
 * fragmented when buffers of unknown final size are built side by side.
 *
 * Anonymous regions are private memory. File-backed regions map a file
 * that grows with the region: its pages live in the page cache and are
 * written back to the file, not to swap, so a program can hold far more
 * than RAM + swap in regions (the kernel writes dirty pages out and drops
 * them under memory pressure). Reopening a file-backed region gives back
 * its contents.
 *
 * ADDRESS STABILITY
 * mm_region_base() never changes for the region's life, with one
 * exception: when the reservation cannot be had (a 32-bit process, or
 * RLIMIT_AS smaller than the reserve), the region falls back to mapping
 * only what is committed and growing with mremap, which may move it. Such
 * a region reports mm_region_stable() == 0 and counts its moves; code that
 * must hold raw pointers across growth should check it (or set
 * MM_REGION_STABLE to get an error instead of the fallback).
 *
 * SIZES
 * size is what the caller asked for (mm_region_resize) or appended
 * (mm_region_append); the committed memory behind it is whole pages, and
 * when the region grows it commits ahead geometrically (by an eighth, at
 * least 64 KiB), like a vector's capacity, so that growing in small steps
 * costs no system call most of the time. Committed but unused memory costs
 * no RAM until touched (anonymous) or disk blocks (file-backed, where the
 * file is that long while open); shrinking and mm_region_trim() give it
 * back.
 *
 * THREADS
 * A region is not locked: functions that change it (resize, append,
 * close) need the caller to serialize them. Reading and writing the memory
 * itself from many threads is the caller's business, as for any memory.
 */
#ifndef MEMMAP_REGION_H
#define MEMMAP_REGION_H

#include "common.h"

typedef struct mm_region mm_region_t;

/* The default reservation: 64 GiB on 64-bit systems, 256 MiB on 32-bit. */
#define MM_REGION_RESERVE_DEFAULT \
  (sizeof(void *) >= 8 ? (uint64_t)64 << 30 : (uint64_t)256 << 20)

/* Flags (mm_region_opts_t.flags). */
enum mm_region_flags {
  /* File-backed: create the file if missing (O_CREAT|O_NOFOLLOW, mode
   * opts.perm or 0600). Without it the file must exist. */
  MM_REGION_CREATE = 1u << 0,
  /* With MM_REGION_CREATE: fail with -EEXIST if the file exists. */
  MM_REGION_EXCL = 1u << 1,
  /* Refuse the remapping fallback: if the reservation cannot be had,
   * mm_region_create fails with -ENOMEM instead. */
  MM_REGION_STABLE = 1u << 2,
  /* File-backed: truncate an existing file to opts.initial on open,
   * discarding its contents. */
  MM_REGION_TRUNCATE = 1u << 3
};

/* Options for mm_region_create(). All zero: an anonymous region with the
 * default reserve and nothing committed. */
typedef struct mm_region_opts {
  const char *path;  /* NULL: anonymous; else the backing file */
  uint64_t reserve;  /* most the region may grow to; 0 = default. For an
                        existing file larger than this, the file's size. */
  uint64_t initial;  /* size at creation (an existing file keeps its own
                        size if larger) */
  unsigned flags;    /* enum mm_region_flags */
  unsigned perm;     /* for MM_REGION_CREATE; 0 = 0600 */
} mm_region_opts_t;

/*
 * Create a region (and, file-backed, open or create its file). On success
 * *out is the region and 0 is returned; on failure *out is NULL.
 * Errors: -EINVAL (bad options: reserve or initial absurd, initial >
 * reserve), -ENOENT (missing file or directory), -EACCES / -EROFS (the file
 * cannot be opened for writing), -ENOSPC (no disk for `initial`), -ENOMEM
 * (no address space, with MM_REGION_STABLE; or no memory), MM_EMAPCOUNT.
 */
MM_API MM_NODISCARD int mm_region_create(mm_region_t **out,
                                         const mm_region_opts_t *opts);

/*
 * Unmap the region and free it. A file-backed region's file keeps
 * mm_region_size() bytes (nothing is synced: call mm_region_sync first for
 * durability). Returns the error of closing the file, if any.
 * mm_region_close(NULL) returns 0.
 */
MM_API int mm_region_close(mm_region_t *region);

/*
 * The first byte of the region. Valid until mm_region_close(); it does not
 * change when the region grows or shrinks unless mm_region_stable() is 0.
 * Bytes [0, mm_region_size()) may be read and written.
 */
MM_API void *mm_region_base(const mm_region_t *region);

/* The region's size in bytes. */
MM_API uint64_t mm_region_size(const mm_region_t *region);

/* The most the region may grow to. */
MM_API uint64_t mm_region_reserve(const mm_region_t *region);

/* Bytes of memory committed behind the region (whole pages, >= size). */
MM_API uint64_t mm_region_committed(const mm_region_t *region);

/* 1 if the base can never move (the reservation was had), 0 if the region
 * fell back to remapping. */
MM_API int mm_region_stable(const mm_region_t *region);

/* How many times the base moved (always 0 for a stable region). */
MM_API uint64_t mm_region_moves(const mm_region_t *region);

/*
 * Set the region's size. Growing commits pages, with room ahead (see
 * SIZES): anonymous ones are made accessible; for a file-backed region the
 * file is extended with fallocate first, so a full disk is -ENOSPC here and
 * not a SIGBUS later. New bytes read as zero. Shrinking gives the pages past the new size back to the system
 * (anonymous: freed, RSS drops; file-backed: unmapped and the file
 * truncated) and the bytes are gone.
 * Errors: MM_EFULL (beyond the reserve), -ENOSPC, -ENOMEM; on any error the
 * region (and its file) are as they were.
 */
MM_API MM_NODISCARD int mm_region_resize(mm_region_t *region,
                                         uint64_t new_size);

/*
 * Append n bytes at the end, growing the region (see SIZES). If at is not NULL it receives the offset the bytes were written
 * at. src may be NULL to append n zero bytes (reserving space to fill).
 * Errors as mm_region_resize(); on error nothing is appended.
 */
MM_API MM_NODISCARD int mm_region_append(mm_region_t *region, const void *src,
                                         size_t n, uint64_t *at);

/*
 * Give back committed memory beyond the size (the slack appends keep
 * ahead), e.g. when a buffer is finished.
 */
MM_API MM_NODISCARD int mm_region_trim(mm_region_t *region);

/* Sync flags are those of view.h: MM_SYNC_WAIT, MM_SYNC_ASYNC. */

/*
 * Write [offset, offset+len) of a file-backed region back to its file
 * (len 0: to the end); with MM_SYNC_WAIT, durable when it returns 0.
 * Anonymous regions have nothing to write and return 0.
 * Errors: -EIO, MM_ERANGE.
 */
MM_API MM_NODISCARD int mm_region_sync(mm_region_t *region, uint64_t offset,
                                       uint64_t len, int flags);

#endif /* MEMMAP_REGION_H */
