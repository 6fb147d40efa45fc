/*
 * memmap/heap.h - a persistent heap in a file: allocate, reopen later,
 * share between processes, with crash-safe transactions.
 *
 * A heap is one file. Objects in it are named by their offset from the
 * start of the file (a uint64_t, 0 meaning null); a structure stored in the
 * heap links its parts by offsets, so it means the same thing in every
 * process and after every reopen. mm_heap_ptr() turns an offset into a
 * pointer for this process, mm_heap_off() turns it back.
 *
 * MAPPING AND GROWTH
 * The file is mapped once, shared, at its maximum size (opts.max_size),
 * beyond its current end. The heap grows by extending the file (with
 * fallocate: a full disk is -ENOSPC from the call that needed the room,
 * never a SIGBUS later); since every process maps the whole maximum, the new
 * space is visible to all of them as soon as the file is longer, before any
 * offset into it can be handed out. So pointers from mm_heap_ptr() stay
 * valid until mm_heap_close(), however the heap grows. The maximum costs
 * address space only (64 GiB by default on 64-bit systems, 256 MiB on
 * 32-bit), no memory and no disk.
 *
 * SHARING
 * Any number of processes may open one heap at once. Up to 64 threads
 * (over all handles) get a per-thread cache; more still work, without it. Threads may share a
 * handle. The shared allocator state lives in the file and is guarded by a
 * process-shared, robust mutex, also in the file. Small allocations and
 * frees are served from a per-thread cache of blocks, recorded in the file
 * too, that needs no lock; it is flushed when the handle is closed, and a
 * dead process's cache is taken back by the next process that opens the
 * heap.
 *
 * CRASH SAFETY (see doc/heap-format.md for the protocol)
 * Every change to the heap's own metadata (alloc, free, realloc, the root,
 * named objects) is atomic with respect to a process crash: if the process
 * dies at any instruction, the next process to open the heap or take its
 * lock sees the change done or not done, never half. An allocation that
 * was done, but whose offset the dead process never stored anywhere, is
 * leaked (mm_heap_check counts it as used); allocate inside a transaction
 * to have it vanish instead.
 *
 * Changes to your own data are atomic only inside a transaction:
 *   mm_heap_tx_begin(h, NULL);
 *   mm_heap_tx_add(h, off, len);     declare a range before changing it
 *   ... write through pointers, alloc, free ...
 *   mm_heap_tx_write(h, off, src, n); or have the transaction write it
 *   mm_heap_tx_commit(h);             or mm_heap_tx_abort(h)
 * tx_add copies the range's old contents to an undo log in the file; abort,
 * or a crash before commit, copies them back. Allocations made in the
 * transaction vanish on abort or crash; frees take effect at commit.
 *
 * Two promises, chosen per heap (MM_HEAP_DURABLE) or per transaction
 * (MM_HEAP_TX_DURABLE / MM_HEAP_TX_NOSYNC):
 *   process-crash atomicity (the default): no msync (but in a heap that
 *     also makes durable commits, a begin may checkpoint: see below); the
 *     page cache outlives a dead process, so the next process sees exactly
 *     the committed transactions. Survives kill -9, not an OS crash.
 *   power-loss durability: commit returns once the transaction is on
 *     disk; after that it survives an OS crash or power loss. There are
 *     two ways to change data in a durable transaction:
 *     - mm_heap_tx_write (write-ahead): the bytes go into the
 *       transaction's commit record and reach the heap at commit, after
 *       the record is on disk. A transaction that only writes this way
 *       costs one sync, of the record alone; the heap's pages reach the
 *       disk later, at a checkpoint (see below).
 *     - mm_heap_tx_add, then write in place: the undo record is synced
 *       before tx_add returns (so before you can change the range), and
 *       commit syncs a record of the ranges' new contents. Each tx_add
 *       costs a sync, the commit one more.
 *     Either commit costs two syncs instead (all of the heap's data,
 *     then the log with the record) when the transaction allocated, freed
 *     or named something (the allocator's fresh memory and the objects you
 *     filled are in no record), when the same thread did so outside a
 *     transaction since its last such commit or mm_heap_sync (it may be
 *     publishing an object it filled), or when any process-crash operation
 *     or transaction committed or was rolled back since the last sync of
 *     the whole heap (so a durable commit never reaches the disk ahead of
 *     changes committed, or undone in memory, before it), or when the
 *     record of its declared ranges does not fit in the log. An abort of a
 *     durable transaction that changed memory in place costs a sync (of
 *     the restored bytes). A durable tx_write into an object that the same
 *     transaction frees costs one more sync (it is then made in place,
 *     before the free). Other bytes you changed without declaring them
 *     are not part of any transaction: a power loss may keep the
 *     transaction and not them, and until the next checkpoint recovery
 *     after a power loss may write a commit record's bytes over them. So
 *     an object another thread filled must be declared, or synced
 *     (mm_heap_sync), before a transaction publishes it.
 *   Checkpoints. The records of durable commits stay in the log until the
 *     heap's data is on disk: recovery after an OS crash or power loss
 *     writes every record since the last checkpoint again, in order, and
 *     a transaction that commits (durable or not) while the log holds
 *     records leaves a record too, so that it is written again after
 *     them. A checkpoint (two syncs: all the heap's dirty pages, then the
 *     log's header) empties the log. It happens when a transaction or
 *     operation begins with the log over a quarter full, at mm_heap_sync,
 *     at mm_heap_close, and in recovery; so a transaction always has at
 *     least three quarters of half of the log (opts.log_size).
 *   Recovery tells a process crash (the page cache is intact: only a
 *     commit cut short is written again) from an OS crash or power loss
 *     by the boot ID (/proc/sys/kernel/random/boot_id), read by the first
 *     process to open the heap alone. A process that cannot read it
 *     commits durably by checkpoints (its tx_writes are made in place
 *     first: three syncs).
 * In a heap created with MM_HEAP_DURABLE the metadata changes outside
 * transactions are durable too (each one costs syncs), and the per-thread
 * cache is off.
 *
 * READING
 * Reading objects outside a transaction is allowed and needs no lock; what
 * you read is whatever is in memory at that moment, possibly another
 * process's uncommitted write. Readers that need a consistent snapshot of
 * data other processes change should take a transaction (which holds the
 * heap's lock) or use their own synchronization.
 *
 * ONE WRITER
 * A transaction holds the heap's lock from begin to commit/abort: one
 * transaction at a time per heap, across all processes; others wait (with
 * the handle's timeout). Within the transaction's thread, alloc, free and
 * the named-object calls join the transaction; other threads' calls that
 * need the lock wait for it. Transactions do not nest (-EBUSY).
 *
 * TRUST
 * The file may be corrupt, truncated, from a newer version or another
 * machine. mm_heap_open validates the header and the shared state and
 * refuses with a specific code; mm_heap_check walks every piece of
 * metadata, bounds-checking each offset before it follows it, and reports
 * what is wrong. Neither crashes on any input. The allocator itself trusts
 * metadata that passed open (it checks offsets it is given by callers).
 *
 * FORK
 * Do not use a handle in a child after fork(); open the heap again there.
 */
#ifndef MEMMAP_HEAP_H
#define MEMMAP_HEAP_H

#include "common.h"

typedef struct mm_heap mm_heap_t;

/* The default maximum size: 64 GiB on 64-bit systems, 256 MiB on 32-bit. */
#define MM_HEAP_MAX_DEFAULT \
  (sizeof(void *) >= 8 ? (uint64_t)64 << 30 : (uint64_t)256 << 20)

/* Every allocation is aligned to this; page-run ones to 4096. */
#define MM_HEAP_ALIGN 16

/* The most bytes a name may have (mm_heap_name_*). */
#define MM_HEAP_NAME_MAX 255

/* Flags (mm_heap_opts_t.flags). */
enum mm_heap_flags {
  /* Create the file if it does not exist (O_CREAT|O_NOFOLLOW, mode
   * opts.perm or 0600). Without it the heap must exist. */
  MM_HEAP_CREATE = 1u << 0,
  /* With MM_HEAP_CREATE: fail with -EEXIST if the file exists. */
  MM_HEAP_EXCL = 1u << 1,
  /* At creation: make every commit durable by default (see CRASH SAFETY). */
  MM_HEAP_DURABLE = 1u << 2
};

/* Options for mm_heap_open(). All zero: open an existing heap. */
typedef struct mm_heap_opts {
  unsigned flags;        /* enum mm_heap_flags */
  unsigned perm;         /* file mode for MM_HEAP_CREATE; 0 = 0600 */
  uint64_t initial_size; /* at creation: bytes to allocate in the file at
                            once (rounded up to whole chunks); 0 = one chunk */
  uint64_t max_size;     /* at creation: the most the file may grow to;
                            0 = MM_HEAP_MAX_DEFAULT. Fixed for the heap's
                            life (recorded in its header). */
  uint32_t chunk_size;   /* at creation: the unit of growth, a power of two
                            from 64 KiB to 4 MiB; 0 = 4 MiB. Allocations
                            larger than a chunk take whole chunks. */
  uint32_t log_size;     /* at creation: bytes of log, in two halves of
                            which one is in use; a transaction whose log
                            (its declared ranges, 24 bytes + the range
                            each, its tx_writes, the allocator's own)
                            does not fit in the room left in that half
                            fails with MM_EFULL (a begin leaves three
                            quarters of it or more: see Checkpoints).
                            0 = 1 MiB; at least 64 KiB, a multiple of
                            4096. */
  int lock_timeout_ms;   /* how long a call waits for the heap's lock:
                            < 0 or 0 = for ever; else -ETIMEDOUT */
} mm_heap_opts_t;

/*
 * Open (or create) the heap in `path`. On success *out is the handle and 0
 * is returned; on failure *out is NULL and the file is unchanged (a file
 * this call created is removed again).
 * If the last process to use the heap died, this recovers it first (rolls
 * back the transaction or operation it had under way).
 * Errors:
 *   -ENOENT, -EACCES, -EEXIST, ...  from the file system
 *   -EINVAL        bad options (sizes not powers of two, max < initial, ...)
 *   MM_ENOTHEAP    the file is not a memmap heap (no magic; empty file)
 *   MM_EVERSION    a newer format version, or an incompatible feature bit
 *                  this library does not know
 *   MM_EPLATFORM   made on a machine with another page size, byte order or
 *                  word size
 *   MM_ETRUNCATED  the file is shorter than its header says
 *   MM_ECORRUPT    both header copies fail their checksum, or the shared
 *                  state is impossible
 *   -ENOSPC        no disk for the initial size
 *   -ENOMEM        no address space for max_size
 *   -ETIMEDOUT     the lock was not had within lock_timeout_ms
 */
MM_API MM_NODISCARD int mm_heap_open(mm_heap_t **out, const char *path,
                                     const mm_heap_opts_t *opts);

/*
 * Close the handle: flush its per-thread caches back to the heap, unmap,
 * close the file. An open transaction is aborted first. When the log holds
 * commit records, close checkpoints (two syncs; it takes the heap's lock,
 * with the handle's timeout): a heap closed by every user has an empty
 * log, so a copy of the file, or a later boot, never writes old records
 * over newer data. Nothing else is synced (durable commits already were).
 * A failed checkpoint is returned, but the handle is closed anyway.
 * mm_heap_close(NULL) returns 0.
 * No other thread may use the handle during or after the call.
 */
MM_API int mm_heap_close(mm_heap_t *h);

/* ---- offsets and pointers ---------------------------------------------- */

/* The address of offset 0 in this process; valid until mm_heap_close. */
MM_API void *mm_heap_base(const mm_heap_t *h);

/* Offset -> pointer (NULL for 0) and back (0 for NULL). Pure arithmetic:
 * use mm_heap_valid to check an offset from an untrusted source. */
MM_API void *mm_heap_ptr(const mm_heap_t *h, uint64_t off);
MM_API uint64_t mm_heap_off(const mm_heap_t *h, const void *p);

/* 1 if [off, off+len) lies inside one live allocation of this heap, else 0.
 * Takes the heap's lock for large objects. */
MM_API int mm_heap_valid(mm_heap_t *h, uint64_t off, uint64_t len);

/* Typed helpers: MM_HEAP_PTR(h, off, struct node) -> struct node *. */
#define MM_HEAP_PTR(h, off, type) ((type *)mm_heap_ptr((h), (off)))
#define MM_HEAP_OFF(h, p) mm_heap_off((h), (p))

/* ---- allocation ---------------------------------------------------------- */

/*
 * Allocate `size` bytes (1 .. the heap's maximum), 16-byte aligned; *off
 * receives the offset. Sizes up to 2048 come from size-class runs, larger
 * ones from page runs, larger than a chunk from whole chunks. The heap
 * grows as needed. In a transaction of this thread, the allocation vanishes
 * if the transaction aborts or the process dies before commit.
 * Errors: -EINVAL (size 0), MM_EFULL (the maximum size is reached), -ENOSPC,
 * -ETIMEDOUT, MM_ECORRUPT (the metadata it had to follow is impossible),
 * MM_EFULL also when a transaction's log is full.
 */
MM_API MM_NODISCARD int mm_heap_alloc(mm_heap_t *h, uint64_t size,
                                      uint64_t *off);

/* As mm_heap_alloc, the bytes zeroed. */
MM_API MM_NODISCARD int mm_heap_zalloc(mm_heap_t *h, uint64_t size,
                                       uint64_t *off);

/*
 * Free the allocation at `off` (0 is a no-op). Inside a transaction of this
 * thread, the free takes effect at commit. Errors: -EINVAL (not the start
 * of a live allocation, including most double frees), -ETIMEDOUT.
 */
MM_API int mm_heap_free(mm_heap_t *h, uint64_t off);

/*
 * Resize the allocation at *off to `size` bytes, keeping the first
 * min(old, new) bytes; *off may change (then the old allocation is freed,
 * at commit inside a transaction). *off == 0 allocates. On error *off and
 * its contents are unchanged.
 */
MM_API MM_NODISCARD int mm_heap_realloc(mm_heap_t *h, uint64_t *off,
                                        uint64_t size);

/* The bytes usable at `off` (>= what was asked), or 0 if `off` is not a
 * live allocation. */
MM_API uint64_t mm_heap_usable_size(mm_heap_t *h, uint64_t off);

/* ---- root and named objects --------------------------------------------- */

/* The root object's offset (0 when none was set). */
MM_API uint64_t mm_heap_root(mm_heap_t *h);

/* Set the root offset (0 clears it). Atomic; joins this thread's
 * transaction. The heap does not free the previous root. */
MM_API MM_NODISCARD int mm_heap_set_root(mm_heap_t *h, uint64_t off);

/*
 * Bind `name` (1..MM_HEAP_NAME_MAX bytes, any bytes but NUL) to `off`,
 * replacing a previous binding. Atomic; joins this thread's transaction.
 * Errors: -EINVAL (bad name), plus those of mm_heap_alloc.
 */
MM_API MM_NODISCARD int mm_heap_name_set(mm_heap_t *h, const char *name,
                                         uint64_t off);

/* The offset bound to `name`, or -ENOENT. */
MM_API MM_NODISCARD int mm_heap_name_get(mm_heap_t *h, const char *name,
                                         uint64_t *off);

/* Remove the binding (the object itself is not freed), or -ENOENT. */
MM_API int mm_heap_name_del(mm_heap_t *h, const char *name);

/*
 * Call fn once per binding, in no particular order, with the heap's lock
 * held (fn must not call back into this heap). `name` is a NUL-terminated
 * copy valid only during the call. fn returns nonzero to stop; that value
 * is then returned. Returns 0 after the last binding.
 */
typedef int (*mm_heap_name_fn)(void *arg, const char *name, uint64_t off);
MM_API int mm_heap_name_list(mm_heap_t *h, mm_heap_name_fn fn, void *arg);

/* ---- transactions ---------------------------------------------------------- */

enum mm_heap_tx_flags {
  /* This transaction is durable (see CRASH SAFETY). */
  MM_HEAP_TX_DURABLE = 1u << 0,
  /* This transaction is only process-crash atomic, even in a durable heap. */
  MM_HEAP_TX_NOSYNC = 1u << 1
};

typedef struct mm_heap_tx_opts {
  unsigned flags;  /* enum mm_heap_tx_flags */
  int timeout_ms;  /* wait for the lock; 0 = the handle's lock_timeout_ms,
                      < 0 = for ever */
} mm_heap_tx_opts_t;

/*
 * Begin a transaction on this thread (takes the heap's lock).
 * Errors: -EBUSY (this handle already has a transaction open), -ETIMEDOUT,
 * MM_ECORRUPT (recovery after a dead holder
 * found an impossible log).
 */
MM_API MM_NODISCARD int mm_heap_tx_begin(mm_heap_t *h,
                                         const mm_heap_tx_opts_t *opts);

/*
 * Declare that [off, off+len) is about to change: its current contents are
 * saved in the undo log (and synced, in a durable transaction). Ranges may
 * overlap and be declared again. Errors: -EINVAL (no transaction on this
 * thread; a range outside the heap's allocations area), MM_EFULL (the log
 * is full: abort, or commit what you have), -EIO.
 */
MM_API MM_NODISCARD int mm_heap_tx_add(mm_heap_t *h, uint64_t off,
                                       uint64_t len);

/* mm_heap_tx_add for a pointer into the heap. */
MM_API MM_NODISCARD int mm_heap_tx_add_ptr(mm_heap_t *h, const void *p,
                                           uint64_t len);

/*
 * Write len bytes from src at [off, off+len) as part of the transaction
 * (the same ranges as tx_add are allowed; src may point into the heap).
 * In a process-crash transaction this is tx_add, then memcpy: the bytes are
 * in the heap when it returns. In a durable transaction the bytes are
 * copied into the transaction's commit record and reach the heap at
 * commit, after the record is on disk (write-ahead): until then reading
 * the range shows its old contents (so does a realloc's copy of it in the
 * same transaction); writes are applied in the order made,
 * after all of the transaction's in-place changes: a tx_write beats an
 * in-place change of the same byte whichever came first (in a
 * process-crash transaction the later one wins), so do not mix the two
 * on the same bytes. A durable transaction that only writes this way commits with one
 * sync, of the record. Abort or a crash before commit drops the writes.
 * Errors: -EINVAL (no transaction on this thread; a range outside the
 * heap's allocations area; src NULL with len > 0), MM_EFULL (the record
 * would not fit in the log), -ENOMEM, -EIO (process-crash: as tx_add).
 */
MM_API MM_NODISCARD int mm_heap_tx_write(mm_heap_t *h, uint64_t off,
                                         const void *src, uint64_t len);

/*
 * Commit: apply the transaction's frees, then make it permanent (durable:
 * sync first). Releases the lock. On an error the transaction is rolled
 * back (as by abort) and the lock released; the error is returned:
 * MM_EFULL when the log filled while the frees were applied (each logs
 * the allocator's changes; leave room, or free in a later transaction),
 * -EIO and other sync errors, MM_ECORRUPT.
 */
MM_API MM_NODISCARD int mm_heap_tx_commit(mm_heap_t *h);

/* Abort: restore every declared range byte for byte, undo the
 * transaction's allocations, drop its frees; release the lock. */
MM_API int mm_heap_tx_abort(mm_heap_t *h);

/* 1 if this thread has a transaction open on h. */
MM_API int mm_heap_tx_active(const mm_heap_t *h);

/* ---- durability -------------------------------------------------------------- */

/* Write all of the heap's dirty pages back to its file and wait. When the
 * log holds commit records this is a checkpoint (see CRASH SAFETY): it
 * takes the heap's lock (the handle's timeout; inside this thread's
 * transaction it has it) and, after the data, syncs the log's header, so
 * no recovery writes an older record over what this call made durable.
 * -EIO, -ETIMEDOUT. */
MM_API MM_NODISCARD int mm_heap_sync(mm_heap_t *h);

/* ---- information and checking --------------------------------------------- */

typedef struct mm_heap_info {
  uint64_t file_size;     /* bytes of file in use */
  uint64_t max_size;      /* the most it may grow to */
  uint64_t chunk_size;
  uint64_t log_size;
  uint64_t used;          /* bytes in live allocations (usable sizes) */
  uint64_t free;          /* bytes free for allocation, including the
                             per-thread caches */
  uint64_t overhead;      /* headers, log, maps, run headers, rounding */
  uint64_t largest_free;  /* the largest allocation that fits without
                             growing the file */
  uint64_t objects;       /* live allocations */
  uint64_t cached;        /* of free: blocks in per-thread caches */
  uint64_t generation;    /* the header's generation counter */
  uint64_t names;         /* named objects */
  uint64_t root;          /* root offset */
  double fragmentation;   /* 1 - largest_free / the largest block the free
                             page space could form (a chunk's data pages,
                             or less if less is free): 0 when the free
                             space is in whole chunks, near 1 when it is
                             in scattered pages */
  unsigned version;       /* format version */
  unsigned page_size;
  unsigned durable;       /* 1 if created with MM_HEAP_DURABLE */
  unsigned handles;       /* cache slots held by open handles: one per
                             thread that allocated through a handle */
  unsigned char uuid[16];
} mm_heap_info_t;

/* Fill *info (takes the lock; walks the metadata, so O(heap size / 4096)).
 * used + free + overhead == file_size. */
MM_API MM_NODISCARD int mm_heap_info(mm_heap_t *h, mm_heap_info_t *info);

/*
 * Walk all metadata and check every invariant (header copies, shared
 * state, log, chunk and page maps, runs and their free lists, bins,
 * per-thread caches of handles no longer open, named objects, and that the
 * counts add up). For each problem, fn (may be NULL) is called with a
 * library error code (MM_ECORRUPT for most), the offset concerned and a
 * message; at most 1000 calls. Takes the heap's lock.
 * Returns 0 when consistent, MM_ECORRUPT when something was found, or
 * another error if the check itself could not run. *nfound (may be NULL)
 * gets the number of problems.
 */
typedef void (*mm_heap_check_fn)(void *arg, int code, uint64_t off,
                                 const char *msg);
MM_API int mm_heap_check(mm_heap_t *h, mm_heap_check_fn fn, void *arg,
                         uint64_t *nfound);

#endif /* MEMMAP_HEAP_H */
