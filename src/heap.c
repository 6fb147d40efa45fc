/*
 * heap.c - the persistent heap: an allocator over offsets in one shared
 * file, with an undo log for crash atomicity (see memmap/heap.h for the
 * contract and doc/heap-format.md for the layout and the protocols).
 *
 * Map of this file:
 *   format       header copies, shared state, log header, chunk maps
 *   crc32c       hardware where the CPU has it
 *   log          logw() saves a range before it is written; rollback
 *   lock         the robust mutex and recovery after a dead holder
 *   chunks/pages free page runs in bins, chunk growth, huge spans
 *   small        size classes, runs, the per-thread caches (slots)
 *   public API   open/close, alloc/free, names, transactions, info, check
 *
 * THE ONE RULE. Every write to heap metadata while the lock is held goes
 * through logw() first (the old bytes go to the undo log), except writes to
 * memory nobody can reach yet (past heap_size, or blocks never handed out).
 * A rollback then restores the exact bytes, whatever the mix of allocator,
 * name and user ranges. The per-thread caches are the exception, updated
 * without the lock by single aligned stores that each leave a valid list.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "memmap/heap.h"

/* ---- format ------------------------------------------------------------ */

#define HP 4096u                  /* the heap's page: unit of runs */
#define HDR_B_OFF 4096u
#define SUPER_OFF 8192u
#define SUPER_SIZE 65536u
#define LOG_OFF (SUPER_OFF + SUPER_SIZE)
#define FORMAT_VERSION 1u
#define BYTE_ORDER_MARK 0x01020304u
#define SUPER_MAGIC 0x31525053504d4d48ull /* "HMMPSPR1" */
#define LOG_MAGIC 0x31474f4c504d4d48ull   /* "HMMPLOG1" */
#define RUN_MAGIC 0x4e555248u             /* "HRUN" */
/* Incompatible features: a version without them must refuse the file. */
#define INCOMPAT_WAL 1ull /* the log holds groups of committed records
                             (earlier versions would redo only the first) */
#define KNOWN_INCOMPAT INCOMPAT_WAL

#define NCLASS 24
#define SMALL_MAX 2048u
#define NBINS 10        /* free page runs by floor(log2(pages)), pages < 1024 */
#define MAXSLOTS 64
#define SLOT_CAP 64     /* blocks a slot keeps per class before flushing */
#define SLOT_REFILL 32  /* blocks a refill brings */
#define RUN_HDR 64u
#define NAME_BUCKETS0 64u

/* OFD lock bytes, far past any real data: one everyone holds shared while
 * open (exclusive = first opener), one per cache slot. */
#define LOCK_OPEN ((int64_t)1 << 40)
#define LOCK_SLOT(k) (LOCK_OPEN + 1 + (int64_t)(k))

static const unsigned char heap_magic[8] = {'M', 'M', 'H', 'E', 'A', 'P', '\r', '\n'};

struct hdr {
  unsigned char magic[8];
  uint32_t version, header_size;
  uint64_t compat, incompat;
  uint32_t page_size, byte_order, word_size, chunk_shift;
  unsigned char uuid[16];
  uint64_t generation, max_size, file_size;
  uint64_t super_off, super_size, log_off, log_size, data_off;
  uint64_t root_off, names_off;
  uint32_t flags, mutex_size;
  unsigned char reserved[100];
  uint32_t crc;
};
_Static_assert(sizeof(struct hdr) == 256, "header layout");
#define HDR_DURABLE 1u

struct slot {
  uint32_t state; /* 0 free, 1 taken */
  uint32_t pid;   /* informational */
  uint64_t tid;   /* informational */
  uint64_t head[NCLASS];
  uint32_t count[NCLASS]; /* a hint: exact while the owner lives */
  unsigned char pad[16];
};
_Static_assert(sizeof(struct slot) == 320, "slot layout");

struct super {
  uint64_t magic;
  uint64_t heap_size; /* data_off + nchunks * chunk: the live size */
  uint64_t nchunks;
  uint64_t root;
  uint64_t free_key;  /* marks free small blocks: word 1 = key ^ offset */
  uint64_t names_buckets, names_nbuckets, names_count;
  uint64_t partial[NCLASS]; /* small runs with free blocks, per class */
  uint64_t bins[NBINS];     /* free page runs */
  /* Process-crash commits under the lock, and how many of them a sync of
   * the whole heap has covered: while they differ, the next durable commit
   * syncs the data (see log_commit), so that it never reaches the disk
   * before the unsynced changes committed ahead of it. */
  uint64_t nosync_commits, nosync_synced;
  unsigned char pad0[512 - 8 * (10 + NCLASS + NBINS)];
  union {
    pthread_mutex_t m;
    unsigned char pad[64];
  } lock;
  unsigned char pad1[1024 - 512 - 64];
  struct slot slots[MAXSLOTS];
};
_Static_assert(sizeof(pthread_mutex_t) <= 64, "mutex fits");
_Static_assert(sizeof(struct super) <= SUPER_SIZE, "super fits");

struct loghdr {
  uint64_t magic;
  uint64_t seq;    /* +1 at every begin */
  uint64_t used;   /* bytes of entries; published last */
  uint64_t flags;  /* LOG_DURABLE: a durable operation wrote this log */
  uint64_t applied; /* [0, applied) ends in a commit record and all of it
                       is in memory, in boot `boot` (a shared hint: on
                       disk it may be ahead of the data) */
  uint64_t boot;    /* mm__sys_boot_id() of whoever set `applied` */
  uint64_t ckpt;    /* [0, ckpt) ends in a commit record whose data is on
                       disk: recovery after a power loss starts there */
  uint64_t reserved;
};
_Static_assert(sizeof(struct loghdr) == 64, "log header layout");
#define LOG_DURABLE 1u

struct logent {
  uint64_t off;
  uint32_t len;
  uint16_t type;   /* ENT_RANGE: len bytes of old contents follow; ENT_FREE;
                      ENT_COMMIT: len bytes of images (struct img) follow */
  uint16_t seq_hi; /* bits 32..47 of the log's seq */
  uint32_t crc;    /* of this header (crc 0) and the data */
  uint32_t seq_lo; /* bits 0..31 of the log's seq: an entry of an older
                      log left in the area never parses as this one's */
};
_Static_assert(sizeof(struct logent) == 24, "log entry layout");
#define ENT_RANGE 1
#define ENT_FREE 2
#define ENT_COMMIT 3

/* In an ENT_COMMIT record: the new contents of one logged range. */
struct img {
  uint64_t off, len; /* len bytes follow, padded to 8 */
};

struct run {
  uint32_t magic;
  uint16_t cls, nblocks, nfree, bump, npages, pad;
  uint64_t free_head, next, prev;
  uint64_t pad2[3];
};
_Static_assert(sizeof(struct run) == RUN_HDR, "run header layout");

struct frun { uint64_t next, prev; }; /* at the start of a free page run */

struct nent { /* a named-object binding */
  uint64_t next, value;
  uint32_t hash;
  uint16_t len, pad;
  char name[];
};

/* Page map entries: kind in the top 4 bits, value below. */
#define KSHIFT 28
#define KIND(e) ((uint32_t)(e) >> KSHIFT)
#define VAL(e) ((uint32_t)(e) & 0x0fffffffu)
#define ENT(k, v) (((uint32_t)(k) << KSHIFT) | ((uint32_t)(v) & 0x0fffffffu))
enum {
  K_NONE = 0,
  K_FREE = 1,   /* head of a free page run: pages */
  K_FTAIL = 2,  /* last page of a free run longer than 1: pages */
  K_LARGE = 3,  /* head of a large allocation: pages */
  K_SMALL = 4,  /* head of a small run: class << 8 | pages */
  K_CONT = 5,   /* a later page of a large allocation or run: distance */
  C_NORMAL = 6, /* entry 0: a chunk with a page map; value = chunk index */
  C_FREE = 7,   /* entry 0: a free span of chunks: count */
  C_HUGE = 8    /* entry 0: a huge allocation over chunks: count */
};

static const uint16_t class_size[NCLASS] = {
    16,  32,  48,  64,  80,  96,  112,  128,  160,  192,  224,  256,
    320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048};
static uint8_t class_lut[SMALL_MAX / 16 + 1];
static uint16_t class_pages[NCLASS], class_blocks[NCLASS];
static uint32_t class_recip[NCLASS]; /* ceil(2^32 / size): x / size without a
                                        division, exact for x < 2^21 */
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static void class_init(void) {
  int c = 0;
  for (unsigned i = 0; i <= SMALL_MAX / 16; i++) {
    while (class_size[c] < i * 16) c++;
    class_lut[i] = (uint8_t)c;
  }
  for (c = 0; c < NCLASS; c++) {
    unsigned bs = class_size[c];
    class_pages[c] = (uint16_t)(bs <= 256 ? 1 : bs <= 1024 ? 4 : 8);
    class_blocks[c] = (uint16_t)((class_pages[c] * HP - RUN_HDR) / bs);
    class_recip[c] = (uint32_t)((((uint64_t)1 << 32) + bs - 1) / bs);
  }
}

static inline int size_class(uint64_t size) {
  return size <= SMALL_MAX ? class_lut[(size + 15) >> 4] : -1;
}
static inline unsigned run_pages(int c) { return class_pages[c]; }
static inline unsigned run_blocks(int c) { return class_blocks[c]; }
/* The block index of byte x of a run's block area (x < 32 KiB). */
static inline uint64_t block_index(uint64_t x, int c) {
  return (x * class_recip[c]) >> 32;
}

/* ---- crc32c ------------------------------------------------------------- */

static uint32_t crc_table[256];
#if defined(__x86_64__)
static int crc_hw;
#endif
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    crc_table[i] = c;
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_sse(uint32_t c,
                                                          const unsigned char *p,
                                                          size_t n) {
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
  }
  c = (uint32_t)c64;
  for (; n; n--) c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}
#endif

/* Continue a CRC32C: start with crc_run(0xFFFFFFFF, ...), finish with ~. */
static uint32_t crc_run(uint32_t c, const void *data, size_t n) {
  const unsigned char *p = data;
#if defined(__x86_64__)
  if (crc_hw) return crc_sse(c, p, n);
#endif
  while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

static uint32_t crc32c(const void *data, size_t n) {
  return ~crc_run(0xFFFFFFFFu, data, n);
}

/* ---- the handle ---------------------------------------------------------- */

struct mm_heap {
  unsigned char *base;
  size_t map_len;
  int fd;
  uint64_t uid;
  struct hdr hdr; /* the newest valid header copy */
  struct super *S;
  struct loghdr *L;
  unsigned char *logdata; /* the current log's entries (see log_pick) */
  uint64_t chunk, data_off, max_size, log_cap; /* log_cap: one area's */
  uint64_t log_size; /* the whole log, header included */
  uint64_t log_bound; /* during recovery: where log entries may write */
  unsigned cshift, cp; /* pages per chunk (the first is the map) */
  size_t page_size;
  int durable;    /* the heap's default */
  int timeout_ms;
  pthread_mutex_t tlock; /* process-local: the thread table */
  struct { pid_t tid; int slot; } th[MAXSLOTS];
  int nth;
  _Atomic int tx_tid;  /* the thread whose transaction is open, 0 none */
  int op_sync;         /* the current log is durable */
  int log_raw;         /* the current log allocated or freed (see log_commit) */
  int log_defer;       /* durable: hold entries' sync until log_defer_end */
  int log_unsynced;    /* entries appended while deferred */
  int committing;      /* tx_commit is applying the deferred frees */
  uint64_t recent_off[8], recent_len[8]; /* ranges logged since begin */
  unsigned nrecent;
  uint64_t tail;       /* where this operation's (transaction's) entries
                          start: the log's commit records are before it */
  uint64_t boot;       /* mm__sys_boot_id() at open; 0: unknown */
  unsigned char *wbuf; /* a durable transaction's tx_writes: struct img */
  size_t wlen, wcap;   /* and bytes, as in a commit record */
};

static _Atomic uint64_t heap_uid_next = 1;
static _Atomic unsigned long fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void on_fork_child(void) { atomic_fetch_add(&fork_gen, 1); }
static void fork_init(void) { pthread_atfork(NULL, NULL, on_fork_child); }

/* Heaps (a bit for uid % 64) on which this thread allocated or freed since
 * its last durable commit with the data synced first: it may have filled
 * what it got, in bytes no log holds (see log_commit). */
static __thread uint64_t tls_raw;
static inline uint64_t raw_bit(const mm_heap_t *h) { return 1ull << (h->uid & 63); }

static __thread struct {
  unsigned long gen;
  pid_t tid;
  uint64_t uid; /* the heap whose slot is cached */
  int slot;
} tls;

static __attribute__((noinline)) void tls_reset(unsigned long g) {
  tls.tid = (pid_t)syscall(SYS_gettid);
  tls.gen = g;
  tls.uid = 0;
}

static inline pid_t my_tid(void) {
  unsigned long g = atomic_load_explicit(&fork_gen, memory_order_relaxed);
  if (MM__UNLIKELY(tls.gen != g || tls.tid == 0)) tls_reset(g);
  return tls.tid;
}

static inline int in_my_tx(const mm_heap_t *h) {
  int t = atomic_load_explicit(&((mm_heap_t *)h)->tx_tid, memory_order_relaxed);
  return t != 0 && t == my_tid();
}

#define AT(h, off) ((void *)((h)->base + (off)))
static inline uint64_t OFF(const mm_heap_t *h, const void *p) {
  return (uint64_t)((const unsigned char *)p - h->base);
}
static inline uint64_t heap_size(const mm_heap_t *h) {
  return __atomic_load_n(&h->S->heap_size, __ATOMIC_ACQUIRE);
}
static inline uint64_t chunk_off(const mm_heap_t *h, uint64_t ci) {
  return h->data_off + (ci << h->cshift);
}
static inline uint32_t *cmap(const mm_heap_t *h, uint64_t ci) {
  return (uint32_t *)AT(h, chunk_off(h, ci));
}
static inline uint64_t page_off(const mm_heap_t *h, uint64_t ci, uint32_t pi) {
  return chunk_off(h, ci) + (uint64_t)pi * HP;
}
/* The number of chunks, from heap_size (validated at open to be
 * data_off + n chunks within the file); the stored nchunks is only
 * checked against it, never trusted for a bound. */
static inline uint64_t nchunks(const mm_heap_t *h) {
  return (heap_size(h) - h->data_off) >> h->cshift;
}

/* Is [off, off+len) inside the allocations area of the live heap? */
static inline int in_data(const mm_heap_t *h, uint64_t off, uint64_t len) {
  uint64_t hs = heap_size(h);
  return off >= h->data_off && off <= hs && len <= hs - off;
}

/* ---- the undo log -------------------------------------------------------- */

static inline uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

static int sync_range(mm_heap_t *h, uint64_t off, uint64_t len) {
  uint64_t a = mm__align_down(off, h->page_size);
  return mm__sys_msync(AT(h, a), (size_t)(off + len - a), MS_SYNC);
}

/* The log is two areas of log_size / 2 bytes, each a header and entries;
 * the current log is the one whose header has the greater seq. New logs
 * start in the first area (the second is read, for files that used it).
 *
 * A log is a sequence of groups, each some undo entries (ENT_RANGE,
 * ENT_FREE) ending in a commit record (ENT_COMMIT: the new contents of
 * the group's ranges and its tx_writes), then the tail: the entries of the
 * operation under way, if any. The groups are committed work whose data
 * may not be on disk yet: after a power loss recovery writes every record
 * again, in order, from `ckpt`; after a process crash (same boot, so the
 * page cache holds everything) only those from `applied`. A checkpoint
 * syncs the data, then the emptied header. */
static struct loghdr *log_hdr(const mm_heap_t *h, unsigned area) {
  return (struct loghdr *)(h->base + LOG_OFF + area * (h->log_size / 2));
}

/* Point h->L and h->logdata at the current log (the lock is held, or the
 * opener is alone). A second header without the magic is not one. */
static void log_pick(mm_heap_t *h) {
  struct loghdr *a = log_hdr(h, 0), *b = log_hdr(h, 1);
  h->L = (b->magic == LOG_MAGIC && b->seq > a->seq) ? b : a;
  h->logdata = (unsigned char *)(h->L + 1);
}

static inline uint64_t ent_size(const struct logent *e) {
  return sizeof *e + (e->type == ENT_FREE ? 0 : align8(e->len));
}

/* Does the log hold only finished groups, all in memory (this boot's:
 * for a process that has the heap open, so the lock is held)? Then a free
 * lock with a non-empty log is normal. */
static inline int log_settled(const struct loghdr *L) {
  uint64_t used = __atomic_load_n(&L->used, __ATOMIC_ACQUIRE);
  return used == 0 || L->applied == used;
}

/* Sync the whole heap (lock held or not), and note what that covered: the
 * process-crash commits counted before it (see log_commit) and what this
 * thread filled outside transactions (tls_raw). */
static int sync_heap(mm_heap_t *h) {
  uint64_t g = __atomic_load_n(&h->S->nosync_commits, __ATOMIC_ACQUIRE);
  int rc = mm__sys_msync(h->base, (size_t)heap_size(h), MS_SYNC);
  if (rc) return rc;
  uint64_t *p = &h->S->nosync_synced, cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while ((int64_t)(g - cur) > 0 &&
         !__atomic_compare_exchange_n(p, &cur, g, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  tls_raw &= ~raw_bit(h);
  return 0;
}

/* Sync the whole heap, then empty the log (lock held, no tail). */
static int checkpoint(mm_heap_t *h) {
  struct loghdr *L = h->L;
  uint64_t used = L->used;
  int rc = sync_heap(h);
  if (rc) return rc;
  __atomic_store_n(&L->used, 0, __ATOMIC_RELEASE);
  rc = sync_range(h, OFF(h, L), sizeof *L);
  if (rc) {
    __atomic_store_n(&L->used, used, __ATOMIC_RELEASE); /* keep the groups */
    return rc;
  }
  L->applied = L->ckpt = 0;
  return 0;
}

/* Start an operation or a transaction (the lock is held, no tail). An
 * empty log starts afresh with the next seq; one holding groups is
 * appended to, after a checkpoint if it is over a quarter full (so an
 * operation always has three quarters of it). */
static int log_begin(mm_heap_t *h, int durable) {
  struct loghdr *L = h->L;
  if (L->used > h->log_cap / 4) {
    int rc = checkpoint(h);
    if (rc) return rc;
  }
  if (L->used == 0) {
    uint64_t seq = L->seq + 1;
    L = log_hdr(h, 0);
    /* Empty first, the seq last: the seq is what makes it the current log. */
    __atomic_store_n(&L->used, 0, __ATOMIC_RELAXED);
    L->flags = durable ? LOG_DURABLE : 0;
    L->applied = L->ckpt = 0;
    L->boot = h->boot;
    L->magic = LOG_MAGIC;
    __atomic_store_n(&L->seq, seq, __ATOMIC_RELEASE);
    h->L = L;
    h->logdata = (unsigned char *)(L + 1);
    struct loghdr *B = log_hdr(h, 1); /* older files used the second area */
    if (B->used) __atomic_store_n(&B->used, 0, __ATOMIC_RELEASE);
  } else if (durable) {
    L->flags |= LOG_DURABLE;
  }
  h->tail = L->used;
  h->op_sync = durable;
  h->log_raw = 0;
  h->nrecent = 0;
  h->wlen = 0;
  return 0;
}

static uint32_t ent_crc(const struct logent *e, const void *data) {
  struct logent t = *e;
  t.crc = 0;
  uint32_t c = crc_run(0xFFFFFFFFu, &t, sizeof t);
  if (e->type != ENT_FREE) c = crc_run(c, data, e->len);
  return ~c;
}

static void ent_seal(const mm_heap_t *h, struct logent *e) {
  uint64_t seq = h->L->seq;
  e->seq_lo = (uint32_t)seq;
  e->seq_hi = (uint16_t)(seq >> 32);
  e->crc = ent_crc(e, e + 1);
}

static int ent_ok(const mm_heap_t *h, const struct logent *e) {
  uint64_t seq = h->L->seq;
  return e->seq_lo == (uint32_t)seq && e->seq_hi == (uint16_t)(seq >> 32) &&
         ent_crc(e, e + 1) == e->crc;
}

/* Sync the header and the entries in [0, end): every durable sync of the
 * log writes the header too, so the disk's `used` covers what it wrote. */
static int log_sync(mm_heap_t *h, uint64_t end) {
  uint64_t lo = OFF(h, h->L), hi = (uint64_t)(h->logdata - h->base) + end;
  return sync_range(h, lo, hi - lo);
}

static int log_append(mm_heap_t *h, uint64_t off, uint32_t len, int type) {
  struct loghdr *L = h->L;
  uint64_t used = L->used;
  uint64_t need = sizeof(struct logent) + (type == ENT_RANGE ? align8(len) : 0);
  if (need > h->log_cap - used) return MM_EFULL;
  struct logent *e = (struct logent *)(h->logdata + used);
  e->off = off;
  e->len = len;
  e->type = (uint16_t)type;
  if (type == ENT_RANGE) memcpy(e + 1, AT(h, off), len);
  ent_seal(h, e);
  /* Publish: the entry is complete before `used` covers it. */
  __atomic_store_n(&L->used, used + need, __ATOMIC_RELEASE);
  /* Durable: the undo record is on disk before the caller may change the
   * range it protects (the log header is in the same span). A deferred
   * free is only read at commit, so it waits for the next sync. */
  if (h->op_sync && type == ENT_RANGE) {
    if (h->log_defer) {
      h->log_unsynced = 1;
    } else {
      int rc = log_sync(h, used + need);
      if (rc) return rc;
    }
  }
  return 0;
}

/* Save [p, p+len) in the log before it is written. */
static int logw(mm_heap_t *h, const void *p, uint64_t len) {
  uint64_t off = OFF(h, p);
  for (unsigned i = 0; i < h->nrecent && i < 8; i++)
    if (off >= h->recent_off[i] && off + len <= h->recent_off[i] + h->recent_len[i])
      return 0;
  if (len > UINT32_MAX) return MM_EFULL;
  int rc = log_append(h, off, (uint32_t)len, ENT_RANGE);
  if (rc) return rc;
  h->recent_off[h->nrecent % 8] = off;
  h->recent_len[h->nrecent % 8] = len;
  h->nrecent++;
  return 0;
}

/* Save several ranges, then write them: between log_defer_begin and
 * log_defer_end a durable log appends without syncing, and the end syncs
 * once (if anything was appended). Nothing may be written in between. */
static void log_defer_begin(mm_heap_t *h) {
  h->log_defer = 1;
  h->log_unsynced = 0;
}

static int log_defer_end(mm_heap_t *h, int rc) {
  h->log_defer = 0;
  if (rc == 0 && h->log_unsynced) rc = log_sync(h, h->L->used);
  h->log_unsynced = 0;
  return rc;
}

/* Save two ranges (b may be NULL) before writing either. */
static int logw2(mm_heap_t *h, const void *a, uint64_t alen, const void *b,
                 uint64_t blen) {
  log_defer_begin(h);
  int rc = logw(h, a, alen);
  if (rc == 0 && b) rc = logw(h, b, blen);
  return log_defer_end(h, rc);
}

/* Where may a log entry write? Only between the shared state and the end of
 * the heap, never over the header copies or the log itself. In recovery
 * the end is the file's: after a power loss the heap_size on disk can be
 * older than entries that initialised a chunk the heap grew by. */
static int ent_target_ok(const mm_heap_t *h, uint64_t off, uint64_t len) {
  uint64_t hs = h->log_bound ? h->log_bound : heap_size(h);
  if (off < SUPER_OFF || off > hs || len > hs - off) return 0;
  if (off < LOG_OFF + h->log_size && off + len > LOG_OFF) return 0;
  if (off < SUPER_OFF + SUPER_SIZE &&
      off + len > SUPER_OFF + offsetof(struct super, lock) &&
      off < SUPER_OFF + offsetof(struct super, lock) + sizeof(pthread_mutex_t))
    return 0; /* never the mutex */
  return 1;
}

/* Parse this log's entries in [from, limit) (from: an entry boundary):
 * positions of the valid prefix, which ends at the first entry that is torn
 * or of another log. Returns the count (>= 0) or a negative error; *end
 * gets the end of the prefix. */
static long log_parse(mm_heap_t *h, uint64_t from, uint64_t limit, uint32_t **pos,
                      uint64_t *end) {
  size_t cap = 64, n = 0;
  uint32_t *v = malloc(cap * sizeof *v);
  if (!v) return -ENOMEM;
  uint64_t at = from;
  while (at + sizeof(struct logent) <= limit) {
    const struct logent *e = (const struct logent *)(h->logdata + at);
    if (e->type != ENT_RANGE && e->type != ENT_FREE && e->type != ENT_COMMIT) break;
    uint64_t sz = ent_size(e);
    if (sz > limit - at || !ent_ok(h, e)) break;
    if (e->type == ENT_RANGE && !ent_target_ok(h, e->off, e->len)) break;
    if (n == cap) {
      uint32_t *nv = realloc(v, 2 * cap * sizeof *v);
      if (!nv) { free(v); return -ENOMEM; }
      v = nv;
      cap *= 2;
    }
    v[n++] = (uint32_t)at;
    at += sz;
  }
  *pos = v;
  *end = at;
  return (long)n;
}

/* Copy back the old bytes of the entries at pos[0..n) that start at or
 * after `keep`, newest first. */
static void undo(mm_heap_t *h, const uint32_t *pos, long n, uint64_t keep) {
  for (long i = n - 1; i >= 0 && pos[i] >= keep; i--) {
    const struct logent *e = (const struct logent *)(h->logdata + pos[i]);
    if (e->type == ENT_RANGE) memcpy(AT(h, e->off), e + 1, e->len);
  }
}

/* A change under the lock that no sync covers yet (a process-crash commit,
 * or a rollback made in memory only): the next durable commit syncs the
 * data first, so that it never reaches the disk ahead of it, or ahead of a
 * half-written change that the rollback undid only in memory. */
static void nosync_count(mm_heap_t *h) {
  __atomic_store_n(&h->S->nosync_commits, h->S->nosync_commits + 1, __ATOMIC_RELAXED);
}

/* Undo every entry at or after `keep` (an entry boundary in the tail),
 * newest first, then cut the log back to `keep`. A durable log then syncs
 * what it restored: the entries past `keep` are about to be overwritten or
 * dropped, and the disk must not keep a change that no record can undo. */
static int rollback_to(mm_heap_t *h, uint64_t keep) {
  uint32_t *pos;
  uint64_t end;
  long n = log_parse(h, keep, h->L->used, &pos, &end);
  if (n < 0) return (int)n;
  undo(h, pos, n, keep);
  free(pos);
  int rc = 0;
  if (n > 0) { /* (a tail of staged tx_writes alone changed nothing) */
    if (h->op_sync) rc = sync_heap(h);
    else nosync_count(h); /* restored in memory only */
  }
  __atomic_store_n(&h->L->used, keep, __ATOMIC_RELEASE);
  h->nrecent = 0;
  return rc;
}

/* Write images (struct img, bytes padded to 8) in [p, p+n) into the heap. */
static int apply_images(mm_heap_t *h, const unsigned char *p, uint64_t n) {
  const unsigned char *q = p + n;
  while (p < q) {
    struct img im;
    if ((size_t)(q - p) < sizeof im) return MM_ECORRUPT;
    memcpy(&im, p, sizeof im);
    p += sizeof im;
    if (im.len > (uint64_t)(q - p) || !ent_target_ok(h, im.off, im.len))
      return MM_ECORRUPT;
    memcpy(AT(h, im.off), p, im.len);
    p += align8(im.len);
  }
  return 0;
}

/* Redo a commit record (recovery). */
static int redo(mm_heap_t *h, uint64_t at) {
  const struct logent *e = (const struct logent *)(h->logdata + at);
  return apply_images(h, (const unsigned char *)(e + 1), e->len);
}

/* Bring the heap back to a consistent state after a holder died, at the
 * first open, or after a power loss: write the groups' records again (from
 * `applied` in the same boot, else from `ckpt`), undo the tail, newest
 * first. A log that is empty, or settled, needs nothing. Recovery that
 * wrote anything durable-worthy ends in a checkpoint. `same`: the caller
 * knows this is the boot that wrote the log (it takes the lock of a heap
 * that this process has open: the opener that was alone after a reboot has
 * recovered already); else the header's boot id says. */
static int recover(mm_heap_t *h, int same) {
  if (log_hdr(h, 0)->magic != LOG_MAGIC) return MM_ECORRUPT;
  log_pick(h);
  struct loghdr *L = h->L;
  uint64_t used = L->used;
  if (!same) same = h->boot && L->boot == h->boot;
  if (used == 0 || (same && L->applied == used)) return 0;
  if (used > h->log_cap || used % 8) return MM_ECORRUPT;
  h->op_sync = 0; /* synced below, once */
  struct stat st;
  int rc = mm__sys_fstat(h->fd, &st);
  if (rc) return rc;
  uint64_t fsize = (uint64_t)st.st_size;
  h->log_bound = fsize < h->map_len ? fsize : h->map_len;
  if (h->log_bound <= SUPER_OFF) h->log_bound = SUPER_OFF; /* nothing fits */
  uint32_t *pos;
  uint64_t end, last = 0;
  long n = log_parse(h, 0, used, &pos, &end);
  int replayed = 0;
  if (n >= 0) {
    /* Where to start: a group boundary. In the same boot that is
     * `applied`, or the file is corrupt: starting earlier would write older
     * records over later changes that no record holds. After a reboot it
     * is `ckpt`, or the beginning. */
    uint64_t want = same ? L->applied : L->ckpt, from = 0;
    for (long i = 0; i < n; i++) {
      const struct logent *e = (const struct logent *)(h->logdata + pos[i]);
      if (e->type != ENT_COMMIT) continue;
      last = pos[i] + ent_size(e);
      if (last == want) from = want;
    }
    if (same && from != want) rc = MM_ECORRUPT;
    for (long i = 0; rc == 0 && i < n; i++) {
      const struct logent *e = (const struct logent *)(h->logdata + pos[i]);
      if (e->type == ENT_COMMIT && pos[i] >= from) {
        rc = redo(h, pos[i]);
        replayed = 1;
      }
    }
    if (rc == 0) undo(h, pos, n, last);
    free(pos);
  } else {
    rc = (int)n;
  }
  h->log_bound = 0;
  if (rc) return rc;
  /* What the log restored must still describe a heap inside the file. */
  uint64_t hs = heap_size(h), nc = (hs - h->data_off) >> h->cshift;
  if (hs < h->data_off + h->chunk || hs > h->max_size ||
      hs != h->data_off + (nc << h->cshift))
    return MM_ECORRUPT;
  if (fsize < hs) return MM_ETRUNCATED;
  if (!same || replayed || (L->flags & LOG_DURABLE)) return checkpoint(h);
  /* A process crash in a log of process-crash operations: drop the tail.
   * What it restored is in memory only, like a process-crash commit. */
  if (last < used) nosync_count(h);
  __atomic_store_n(&L->used, last, __ATOMIC_RELEASE);
  L->applied = last;
  if (h->boot) L->boot = h->boot;
  return 0;
}

/* Append a commit record: the new contents of every range logged at or
 * after `from`, then the transaction's tx_writes. *at gets its position. */
static int log_commit_record(mm_heap_t *h, uint64_t from, uint64_t *at) {
  struct loghdr *L = h->L;
  uint64_t used = L->used, need = h->wlen;
  for (uint64_t a = from; a < used;) {
    const struct logent *e = (const struct logent *)(h->logdata + a);
    if (e->type == ENT_RANGE) need += sizeof(struct img) + align8(e->len);
    a += ent_size(e);
  }
  if (need > UINT32_MAX || sizeof(struct logent) + need > h->log_cap - used)
    return MM_EFULL;
  struct logent *c = (struct logent *)(h->logdata + used);
  unsigned char *p = (unsigned char *)(c + 1);
  for (uint64_t a = from; a < used;) {
    const struct logent *e = (const struct logent *)(h->logdata + a);
    if (e->type == ENT_RANGE) {
      struct img im = {e->off, e->len};
      memcpy(p, &im, sizeof im);
      memcpy(p + sizeof im, AT(h, e->off), e->len);
      memset(p + sizeof im + e->len, 0, align8(e->len) - e->len);
      p += sizeof im + align8(e->len);
    }
    a += ent_size(e);
  }
  if (h->wlen) memcpy(p, h->wbuf, h->wlen);
  c->off = 0;
  c->len = (uint32_t)need;
  c->type = ENT_COMMIT;
  ent_seal(h, c);
  __atomic_store_n(&L->used, used + sizeof *c + need, __ATOMIC_RELEASE);
  *at = used;
  return 0;
}

/* Does a staged tx_write touch [off, off+len)? */
static int wal_overlaps(const mm_heap_t *h, uint64_t off, uint64_t len) {
  for (const unsigned char *p = h->wbuf, *q = p + h->wlen; p < q;) {
    struct img im;
    memcpy(&im, p, sizeof im);
    if (im.off < off + len && off < im.off + im.len) return 1;
    p += sizeof im + align8(im.len);
  }
  return 0;
}

/* Turn a durable transaction's tx_writes into in-place writes: log their
 * old contents (synced once), then write them. */
static int wal_materialize(mm_heap_t *h) {
  const unsigned char *p = h->wbuf, *q = p + h->wlen;
  log_defer_begin(h);
  int rc = 0;
  while (rc == 0 && p < q) {
    struct img im;
    memcpy(&im, p, sizeof im);
    p += sizeof im;
    rc = logw(h, AT(h, im.off), im.len);
    p += align8(im.len);
  }
  rc = log_defer_end(h, rc);
  if (rc == 0) rc = apply_images(h, h->wbuf, h->wlen);
  if (rc == 0) h->wlen = 0;
  return rc;
}

/* Make the current operation permanent (lock held).
 * - Not durable, in an empty log: drop the tail; nothing to sync.
 * - Not durable, after groups: the tail becomes a group (a record, not
 *   synced), so that recovery after a power loss, which writes the earlier
 *   records again, writes this one after them.
 * - Durable: the tail becomes a group whose record (the new contents of
 *   its ranges, then its tx_writes) is synced with the log: that sync is
 *   the commit point, and the tx_writes are applied after it. One sync,
 *   when every change is logged. When some are not (the operation
 *   allocated, freed or named: the allocator wrote fresh memory, a new run
 *   or a new object the caller filled; or this thread did so outside a
 *   transaction since its last sync of the heap; or a process-crash
 *   commit is not on disk yet), the whole heap is synced first, so that
 *   what no record holds is on disk before the commit point: two syncs.
 * - Durable, with a record that does not fit, or on a machine without a
 *   boot id (where recovery could not tell which records to write again):
 *   the tx_writes become logged in-place writes, then a checkpoint. */
static int log_commit(mm_heap_t *h) {
  struct loghdr *L = h->L;
  struct super *S = h->S;
  uint64_t used = L->used, tail = h->tail, at;
  int rc;
  if (used == tail && h->wlen == 0) return 0;
  if (!h->op_sync) {
    nosync_count(h);
    if (tail == 0) {
      __atomic_store_n(&L->used, 0, __ATOMIC_RELEASE);
      h->nrecent = 0;
      return 0;
    }
    rc = log_commit_record(h, tail, &at);
    if (rc == 0) {
      if (h->boot) L->boot = h->boot;
      L->applied = L->used;
      return 0;
    }
    return rc == MM_EFULL ? checkpoint(h) : rc;
  }
  rc = MM_EFULL;
  if (h->boot) {
    int raw = h->log_raw || (tls_raw & raw_bit(h)) ||
              __atomic_load_n(&S->nosync_synced, __ATOMIC_RELAXED) != S->nosync_commits;
    if (!raw) rc = log_commit_record(h, tail, &at);
    if (rc == MM_EFULL) {
      /* The data first: then the tail's ranges are on disk, so the record
       * needs only the tx_writes, and the groups before are on disk too. */
      if ((rc = sync_heap(h))) return rc;
      L->ckpt = tail;
      rc = log_commit_record(h, L->used, &at);
    }
  }
  if (rc == 0) {
    rc = log_sync(h, L->used);
    if (rc) {
      /* Not committed: the record must never be redone. */
      ((struct logent *)(h->logdata + at))->type = 0;
      __atomic_store_n(&L->used, at, __ATOMIC_RELEASE);
      return rc; /* the caller rolls back */
    }
    if (h->wlen) (void)apply_images(h, h->wbuf, h->wlen); /* checked when staged */
    h->wlen = 0;
    if (h->boot) L->boot = h->boot;
    L->applied = L->used;
    return 0;
  }
  if (rc != MM_EFULL) return rc;
  if (h->wlen && (rc = wal_materialize(h))) return rc;
  if ((rc = checkpoint(h))) return rc;
  h->nrecent = 0;
  return 0;
}

/* ---- the lock ----------------------------------------------------------- */

static int glock(mm_heap_t *h, int timeout_ms) {
  pthread_mutex_t *m = &h->S->lock.m;
  int rc;
  if (timeout_ms <= 0) {
    rc = pthread_mutex_lock(m);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    rc = pthread_mutex_timedlock(m, &ts);
  }
  if (rc == EOWNERDEAD) {
    /* The holder died mid-operation: undo what it had under way. */
    int r = recover(h, 1);
    if (r) {
      pthread_mutex_unlock(m); /* not consistent: later lockers fail */
      return r;
    }
    pthread_mutex_consistent(m);
    return 0;
  }
  if (rc == ENOTRECOVERABLE) return MM_ECORRUPT;
  if (rc) return -rc;
  log_pick(h);
  if (!log_settled(h->L)) {
    /* A free lock with a tail in the log: only a corrupt file does that. */
    int r = recover(h, 1);
    if (r) { pthread_mutex_unlock(m); return r; }
  }
  return 0;
}

static void gunlock(mm_heap_t *h) { pthread_mutex_unlock(&h->S->lock.m); }

/* An operation on the shared state: alone (lock + its own log) or as part
 * of this thread's transaction (then a failure undoes just the operation). */
struct op { int nested; uint64_t save; };

static int op_begin(mm_heap_t *h, struct op *op) {
  if (in_my_tx(h)) {
    op->nested = 1;
    op->save = h->L->used;
    return 0;
  }
  op->nested = 0;
  int rc = glock(h, h->timeout_ms);
  if (rc) return rc;
  if ((rc = log_begin(h, h->durable))) gunlock(h);
  return rc;
}

/* An operation that allocates, frees or fills fresh memory: its commit (or
 * its transaction's) must sync the data before the commit point. */
static int op_begin_raw(mm_heap_t *h, struct op *op) {
  int rc = op_begin(h, op);
  if (rc == 0) h->log_raw = 1;
  return rc;
}

static int op_end(mm_heap_t *h, struct op *op, int rc) {
  if (op->nested) {
    if (rc) (void)rollback_to(h, op->save);
    return rc;
  }
  if (rc == 0) rc = log_commit(h);
  if (rc) (void)rollback_to(h, h->tail);
  gunlock(h);
  return rc;
}

enum { HC_NONE, HC_OK, HC_BAD, HC_FOREIGN, HC_NEWER };
static int hdr_check(const unsigned char *p, size_t avail, struct hdr *x);

/* ---- header copies ---------------------------------------------------------- */

static void hdr_seal(struct hdr *x) { x->crc = crc32c(x, offsetof(struct hdr, crc)); }

/* Rewrite the older header copy with generation + 1 (lock held, or the
 * opener is alone). Which copy is older is read from the file, not from
 * this handle, since other processes update it too. A torn write leaves
 * the other copy valid. */
/* Mark a file of an earlier version as using this log (the opener is
 * alone): both valid header copies get INCOMPAT_WAL. */
static void hdr_mark_wal(mm_heap_t *h) {
  for (unsigned k = 0; k < 2; k++) {
    struct hdr x;
    if (hdr_check(h->base + k * HDR_B_OFF, sizeof x, &x) != HC_OK) continue;
    x.incompat |= INCOMPAT_WAL;
    hdr_seal(&x);
    memcpy(AT(h, k * HDR_B_OFF), &x, sizeof x);
  }
  h->hdr.incompat |= INCOMPAT_WAL;
}

static void hdr_update(mm_heap_t *h) {
  struct hdr a, b;
  int ka = hdr_check(h->base, sizeof a, &a) == HC_OK;
  int kb = hdr_check(h->base + HDR_B_OFF, sizeof b, &b) == HC_OK;
  int write_b = ka && (!kb || a.generation >= b.generation);
  struct hdr x = write_b ? a : kb ? b : h->hdr;
  x.generation++;
  x.file_size = heap_size(h);
  hdr_seal(&x);
  memcpy(AT(h, write_b ? HDR_B_OFF : 0), &x, sizeof x);
  h->hdr = x;
}

/* ---- page runs and chunks --------------------------------------------------- */

static inline int bin_of(uint32_t n) { return 31 - __builtin_clz(n); }

static int set_ent(mm_heap_t *h, uint32_t *e, uint32_t v) {
  int rc = logw(h, e, 4);
  if (rc) return rc;
  *e = v;
  return 0;
}

/* A free-run node must be a page inside a normal chunk of the live heap. */
static int frun_ok(const mm_heap_t *h, uint64_t off) {
  if (!in_data(h, off, HP) || (off - h->data_off) % HP) return 0;
  return ((off - h->data_off) & (h->chunk - 1)) != 0;
}

static int frun_insert(mm_heap_t *h, uint64_t off, uint32_t n) {
  int b = bin_of(n), rc;
  struct frun *f = AT(h, off);
  uint64_t nx = h->S->bins[b];
  if (nx && !frun_ok(h, nx)) return MM_ECORRUPT;
  if ((rc = logw(h, f, sizeof *f))) return rc;
  f->next = nx;
  f->prev = 0;
  if (nx) {
    struct frun *g = AT(h, nx);
    if ((rc = logw(h, &g->prev, 8))) return rc;
    g->prev = off;
  }
  if ((rc = logw(h, &h->S->bins[b], 8))) return rc;
  h->S->bins[b] = off;
  return 0;
}

static int frun_remove(mm_heap_t *h, uint64_t off, uint32_t n) {
  int b = bin_of(n), rc;
  struct frun *f = AT(h, off);
  uint64_t nx = f->next, pv = f->prev;
  if ((nx && !frun_ok(h, nx)) || (pv && !frun_ok(h, pv))) return MM_ECORRUPT;
  /* The node itself does not change, but the pages it is on may be handed
   * out and written in this same transaction: a rollback must find it. */
  if ((rc = logw(h, f, sizeof *f))) return rc;
  if (pv) {
    struct frun *p = AT(h, pv);
    if (p->next != off) return MM_ECORRUPT;
    if ((rc = logw(h, &p->next, 8))) return rc;
    p->next = nx;
  } else {
    if (h->S->bins[b] != off) return MM_ECORRUPT;
    if ((rc = logw(h, &h->S->bins[b], 8))) return rc;
    h->S->bins[b] = nx;
  }
  if (nx) {
    struct frun *q = AT(h, nx);
    if ((rc = logw(h, &q->prev, 8))) return rc;
    q->prev = pv;
  }
  return 0;
}

/* Make pages [pi, pi+n) of chunk ci one free run. */
static int frun_make(mm_heap_t *h, uint64_t ci, uint32_t pi, uint32_t n) {
  uint32_t *m = cmap(h, ci);
  int rc = set_ent(h, &m[pi], ENT(K_FREE, n));
  if (!rc && n > 1) rc = set_ent(h, &m[pi + n - 1], ENT(K_FTAIL, n));
  if (!rc) rc = frun_insert(h, page_off(h, ci, pi), n);
  return rc;
}

/* Extend the file by k chunks and make them part of the heap. The file is
 * allocated first (a full disk is -ENOSPC here, never a SIGBUS later). */
static int grow(mm_heap_t *h, uint64_t k) {
  struct super *S = h->S;
  uint64_t hs = S->heap_size, add = k << h->cshift;
  if (k == 0 || add >> h->cshift != k || add > h->max_size ||
      hs > h->max_size - add)
    return MM_EFULL;
  int rc = mm__sys_fallocate(h->fd, 0, hs, add);
  if (rc == -EOPNOTSUPP) {
    struct stat st;
    rc = mm__sys_fstat(h->fd, &st);
    if (!rc && (uint64_t)st.st_size < hs + add) rc = mm__sys_ftruncate(h->fd, hs + add);
  }
  if (rc) return rc;
  /* Chunks past the old end are unreachable until heap_size moves: their
   * maps need no log (a rollback makes them unreachable again). */
  uint64_t n0 = nchunks(h);
  for (uint64_t i = 0; i < k; i++) memset(cmap(h, n0 + i), 0, HP);
  if ((rc = logw(h, &S->heap_size, 16))) return rc; /* heap_size, nchunks */
  S->nchunks = n0 + k;
  __atomic_store_n(&S->heap_size, hs + add, __ATOMIC_RELEASE);
  hdr_update(h); /* informational size; no log needed */
  return 0;
}

/* Turn chunk ci (free or fresh) into a normal chunk: one free run. */
static int chunk_init_normal(mm_heap_t *h, uint64_t ci) {
  uint32_t *m = cmap(h, ci);
  int rc = logw(h, m, HP);
  if (rc) return rc;
  memset(m, 0, HP);
  m[0] = ENT(C_NORMAL, ci);
  return frun_make(h, ci, 1, h->cp - 1);
}

/* Walk the chunk list, merging adjacent free spans. Finds the first free
 * span of at least `need` chunks (*at), or the free span that ends the
 * heap (*tail_at, *tail_n). */
static int chunk_find(mm_heap_t *h, uint64_t need, uint64_t *at,
                      uint64_t *tail_at, uint64_t *tail_n) {
  uint64_t n = nchunks(h), i = 0;
  *at = UINT64_MAX;
  *tail_at = UINT64_MAX;
  *tail_n = 0;
  while (i < n) {
    uint32_t *m = cmap(h, i);
    uint32_t e = m[0];
    uint64_t len = KIND(e) == C_NORMAL ? 1 : VAL(e);
    if ((KIND(e) != C_NORMAL && KIND(e) != C_FREE && KIND(e) != C_HUGE) ||
        len == 0 || len > n - i)
      return MM_ECORRUPT;
    if (KIND(e) == C_FREE) {
      /* Merge the free spans that follow. */
      while (i + len < n && KIND(cmap(h, i + len)[0]) == C_FREE) {
        uint32_t *absorbed = &cmap(h, i + len)[0];
        uint64_t more = VAL(*absorbed);
        if (more == 0 || more > n - i - len || len + more > 0x0fffffffu)
          return MM_ECORRUPT;
        len += more;
        /* The absorbed head becomes data that may be written in this same
         * transaction; a rollback must bring it back. */
        int rc = logw(h, absorbed, 4);
        if (rc || (rc = set_ent(h, &m[0], ENT(C_FREE, len)))) return rc;
      }
      if (len >= need) { *at = i; return 0; }
      if (i + len == n) { *tail_at = i; *tail_n = len; }
    }
    i += len;
  }
  return 0;
}

/* Take `want` chunks starting at span `at` of length `have` (>= want). */
static int chunk_take(mm_heap_t *h, uint64_t at, uint64_t have, uint64_t want) {
  if (have > want) {
    int rc = set_ent(h, &cmap(h, at + want)[0], ENT(C_FREE, have - want));
    if (rc) return rc;
  }
  return 0;
}

static int new_chunk(mm_heap_t *h, uint64_t *ci) {
  uint64_t at, tat, tn;
  int rc = chunk_find(h, 1, &at, &tat, &tn);
  if (rc) return rc;
  if (at != UINT64_MAX) {
    if ((rc = chunk_take(h, at, VAL(cmap(h, at)[0]), 1))) return rc;
  } else {
    at = nchunks(h);
    if ((rc = grow(h, 1))) return rc;
  }
  *ci = at;
  return chunk_init_normal(h, at);
}

/* Allocate n pages (n < cp) as one run; the head entry gets `head`. */
static int alloc_pages(mm_heap_t *h, uint32_t n, uint32_t head, uint64_t *out) {
  struct super *S = h->S;
  uint64_t found = 0, guard = nchunks(h) * h->cp + 1;
  uint32_t m = 0;
  for (int b = bin_of(n); b < NBINS && !found; b++) {
    for (uint64_t o = S->bins[b]; o; o = ((struct frun *)AT(h, o))->next) {
      if (!frun_ok(h, o) || guard-- == 0) return MM_ECORRUPT;
      uint64_t ci = (o - h->data_off) >> h->cshift;
      uint32_t pi = (uint32_t)(((o - h->data_off) & (h->chunk - 1)) / HP);
      uint32_t e = cmap(h, ci)[pi];
      if (KIND(e) != K_FREE || VAL(e) == 0 || pi + VAL(e) > h->cp)
        return MM_ECORRUPT;
      if (VAL(e) >= n) { found = o; m = VAL(e); break; }
    }
  }
  int rc;
  if (!found) {
    uint64_t ci;
    if ((rc = new_chunk(h, &ci))) return rc;
    found = page_off(h, ci, 1);
    m = h->cp - 1;
  }
  uint64_t ci = (found - h->data_off) >> h->cshift;
  uint32_t pi = (uint32_t)(((found - h->data_off) & (h->chunk - 1)) / HP);
  uint32_t *map = cmap(h, ci);
  if ((rc = frun_remove(h, found, m))) return rc;
  /* The run's node is about to be overwritten: save it for a rollback. */
  if ((rc = logw(h, AT(h, found), sizeof(struct frun)))) return rc;
  if (m > n && (rc = frun_make(h, ci, pi + n, m - n))) return rc;
  if ((rc = logw(h, &map[pi], 4 * (uint64_t)n))) return rc;
  map[pi] = head;
  for (uint32_t i = 1; i < n; i++) map[pi + i] = ENT(K_CONT, i);
  *out = found;
  return 0;
}

/* Give pages [pi, pi+n) of chunk ci back, merging with free neighbours. */
static int free_pages(mm_heap_t *h, uint64_t ci, uint32_t pi, uint32_t n) {
  uint32_t *map = cmap(h, ci);
  uint32_t start = pi, len = n;
  int rc;
  if (pi > 1) {
    uint32_t e = map[pi - 1], s = 0, m = 0;
    if (KIND(e) == K_FTAIL && VAL(e) >= 2 && VAL(e) < pi) { m = VAL(e); s = pi - m; }
    else if (KIND(e) == K_FREE && VAL(e) == 1) { m = 1; s = pi - 1; }
    if (m) {
      if (map[s] != ENT(K_FREE, m)) return MM_ECORRUPT;
      if ((rc = frun_remove(h, page_off(h, ci, s), m))) return rc;
      if ((rc = set_ent(h, &map[pi], 0))) return rc; /* old head: interior */
      start = s;
      len += m;
    }
  }
  if (pi + n < h->cp) {
    uint32_t e = map[pi + n];
    if (KIND(e) == K_FREE) {
      uint32_t m = VAL(e);
      if (m == 0 || pi + n + m > h->cp) return MM_ECORRUPT;
      if ((rc = frun_remove(h, page_off(h, ci, pi + n), m))) return rc;
      if ((rc = set_ent(h, &map[pi + n], 0))) return rc;
      len += m;
    }
  }
  return frun_make(h, ci, start, len);
}

static int alloc_huge(mm_heap_t *h, uint64_t size, uint64_t *out) {
  uint64_t nch = (size + HP + h->chunk - 1) >> h->cshift;
  if (nch == 0 || nch > 0x0fffffffu) return MM_EFULL;
  uint64_t at, tat, tn;
  int rc = chunk_find(h, nch, &at, &tat, &tn);
  if (rc) return rc;
  if (at != UINT64_MAX) {
    if ((rc = chunk_take(h, at, VAL(cmap(h, at)[0]), nch))) return rc;
  } else if (tat != UINT64_MAX) {
    if ((rc = grow(h, nch - tn))) return rc;
    at = tat;
  } else {
    at = nchunks(h);
    if ((rc = grow(h, nch))) return rc;
  }
  uint32_t *m = cmap(h, at);
  if ((rc = logw(h, m, 16))) return rc; /* entry 0 and the user's first bytes */
  m[0] = ENT(C_HUGE, nch);
  *out = chunk_off(h, at) + HP;
  return 0;
}

/* ---- small objects -------------------------------------------------------- */

/* The fields of a run that never change while it lives: what callers
 * without the lock (free, usable_size, valid) may look at. */
static int run_fixed_ok(const mm_heap_t *h, uint64_t r, int c) {
  if (!in_data(h, r, (uint64_t)run_pages(c) * HP) || (r - h->data_off) % HP) return 0;
  const struct run *R = AT(h, r);
  return R->magic == RUN_MAGIC && R->cls == c && R->nblocks == run_blocks(c) &&
         R->npages == run_pages(c);
}

/* All of a run's header, counts included (lock held). */
static int run_ok(const mm_heap_t *h, uint64_t r, int c) {
  const struct run *R = AT(h, r);
  return run_fixed_ok(h, r, c) && R->nfree <= R->nblocks && R->bump <= R->nblocks;
}

static int partial_insert(mm_heap_t *h, uint64_t r, int c) {
  struct run *R = AT(h, r);
  uint64_t nx = h->S->partial[c];
  int rc;
  if (nx && !run_ok(h, nx, c)) return MM_ECORRUPT;
  struct run *N = nx ? AT(h, nx) : NULL;
  log_defer_begin(h);
  rc = logw(h, R, RUN_HDR);
  if (rc == 0 && N) rc = logw(h, N, RUN_HDR);
  if (rc == 0) rc = logw(h, &h->S->partial[c], 8);
  if ((rc = log_defer_end(h, rc))) return rc;
  R->next = nx;
  R->prev = 0;
  if (N) N->prev = r;
  h->S->partial[c] = r;
  return 0;
}

static int partial_remove(mm_heap_t *h, uint64_t r, int c) {
  struct run *R = AT(h, r);
  uint64_t nx = R->next, pv = R->prev;
  int rc;
  if ((nx && !run_ok(h, nx, c)) || (pv && !run_ok(h, pv, c))) return MM_ECORRUPT;
  struct run *P = pv ? AT(h, pv) : NULL, *N = nx ? AT(h, nx) : NULL;
  if (P ? P->next != r : h->S->partial[c] != r) return MM_ECORRUPT;
  log_defer_begin(h);
  rc = P ? logw(h, P, RUN_HDR) : logw(h, &h->S->partial[c], 8);
  if (rc == 0 && N) rc = logw(h, N, RUN_HDR);
  if (rc == 0) rc = logw(h, R, RUN_HDR);
  if ((rc = log_defer_end(h, rc))) return rc;
  if (P) P->next = nx;
  else h->S->partial[c] = nx;
  if (N) N->prev = pv;
  R->next = R->prev = 0;
  return 0;
}

/* Take one block of class c from the shared runs (lock held). Its first 16
 * bytes are saved in the log, so any later write to it can be undone. */
static int take_block(mm_heap_t *h, int c, uint64_t *out) {
  struct super *S = h->S;
  uint64_t r = S->partial[c];
  int rc;
  if (!r) {
    unsigned np = run_pages(c);
    if ((rc = alloc_pages(h, np, ENT(K_SMALL, (uint32_t)c << 8 | np), &r))) return rc;
    struct run *R = AT(h, r);
    if ((rc = logw(h, R, RUN_HDR))) return rc;
    memset(R, 0, RUN_HDR);
    R->magic = RUN_MAGIC;
    R->cls = (uint16_t)c;
    R->npages = (uint16_t)np;
    R->nblocks = (uint16_t)run_blocks(c);
    R->nfree = R->nblocks;
    if ((rc = partial_insert(h, r, c))) return rc;
  }
  if (!run_ok(h, r, c)) return MM_ECORRUPT;
  struct run *R = AT(h, r);
  uint64_t bs = class_size[c], first = r + RUN_HDR;
  uint64_t end = first + (uint64_t)R->nblocks * bs, b;
  if (R->nfree == 0) return MM_ECORRUPT;
  if (R->free_head) {
    b = R->free_head;
    if (b < first || b >= end || (b - first) % bs) return MM_ECORRUPT;
    uint64_t nx = *(uint64_t *)AT(h, b);
    if (nx && (nx < first || nx >= end || (nx - first) % bs)) return MM_ECORRUPT;
    if ((rc = logw2(h, R, RUN_HDR, AT(h, b), 16))) return rc;
    R->free_head = nx;
  } else if (R->bump < R->nblocks) {
    /* A block never handed out: nothing in it to save. */
    if ((rc = logw(h, R, RUN_HDR))) return rc;
    b = first + (uint64_t)R->bump * bs;
    __atomic_store_n(&R->bump, (uint16_t)(R->bump + 1), __ATOMIC_RELAXED);
  } else {
    return MM_ECORRUPT;
  }
  R->nfree--;
  if (R->nfree == 0 && (rc = partial_remove(h, r, c))) return rc;
  ((uint64_t *)AT(h, b))[1] = 0; /* no longer marked free */
  *out = b;
  return 0;
}

/* What an offset given by a caller is. */
enum { OBJ_SMALL = 1, OBJ_LARGE, OBJ_HUGE };
struct obj {
  int kind, cls;
  uint64_t start, usable, run; /* run: small run or page run offset */
  uint64_t ci;
  uint32_t pi, npages;
};

static int classify(mm_heap_t *h, uint64_t off, struct obj *o) {
  uint64_t hs = heap_size(h);
  if (off < h->data_off + HP || off >= hs || off % MM_HEAP_ALIGN) return -EINVAL;
  uint64_t ci = (off - h->data_off) >> h->cshift;
  uint32_t pi = (uint32_t)(((off - h->data_off) & (h->chunk - 1)) / HP);
  uint32_t *m = cmap(h, ci);
  uint32_t e0 = m[0];
  o->ci = ci;
  if (KIND(e0) == C_HUGE) {
    uint64_t n = VAL(e0);
    if (pi != 1 || off != page_off(h, ci, 1) || n == 0 ||
        n > ((hs - h->data_off) >> h->cshift) - ci)
      return -EINVAL;
    o->kind = OBJ_HUGE;
    o->start = off;
    o->usable = (n << h->cshift) - HP;
    o->pi = 1;
    o->npages = 0;
    return 0;
  }
  if (KIND(e0) != C_NORMAL || VAL(e0) != (ci & 0x0fffffffu) || pi == 0)
    return -EINVAL;
  uint32_t e = m[pi];
  if (KIND(e) == K_CONT) {
    if (VAL(e) >= pi) return -EINVAL;
    pi -= VAL(e);
    e = m[pi];
  }
  uint64_t p = page_off(h, ci, pi);
  if (KIND(e) == K_LARGE) {
    uint32_t n = VAL(e);
    if (off != p || n == 0 || pi + n > h->cp) return -EINVAL;
    o->kind = OBJ_LARGE;
    o->start = off;
    o->usable = (uint64_t)n * HP;
    o->run = p;
    o->pi = pi;
    o->npages = n;
    return 0;
  }
  if (KIND(e) == K_SMALL) {
    int c = (int)(VAL(e) >> 8);
    if (c >= NCLASS || (VAL(e) & 0xff) != run_pages(c) || !run_fixed_ok(h, p, c))
      return -EINVAL;
    const struct run *R = AT(h, p);
    uint64_t bs = class_size[c], first = p + RUN_HDR;
    if (off < first) return -EINVAL;
    uint64_t idx = block_index(off - first, c);
    if (idx * bs != off - first || idx >= __atomic_load_n(&R->bump, __ATOMIC_RELAXED))
      return -EINVAL; /* not a block, or one never handed out */
    o->kind = OBJ_SMALL;
    o->cls = c;
    o->start = off;
    o->usable = bs;
    o->run = p;
    o->pi = pi;
    o->npages = run_pages(c);
    return 0;
  }
  return -EINVAL;
}

static inline int marked_free(const mm_heap_t *h, uint64_t off) {
  return ((const uint64_t *)AT(h, off))[1] == (h->S->free_key ^ off);
}

/* Return a small block to its run (lock held). A run left empty goes back
 * to the page allocator unless it is its class's only partial run. */
static int run_put(mm_heap_t *h, uint64_t b, uint64_t r, int c) {
  struct run *R = AT(h, r);
  uint64_t *w = AT(h, b);
  int rc;
  if (R->nfree >= R->nblocks) return MM_ECORRUPT;
  if ((rc = logw2(h, w, 16, R, RUN_HDR))) return rc;
  w[0] = R->free_head;
  w[1] = h->S->free_key ^ b;
  R->free_head = b;
  R->nfree++;
  if (R->nfree == 1 && (rc = partial_insert(h, r, c))) return rc;
  /* An empty run goes back to the pages, but not in a transaction's body:
   * its pages could be handed out and written before a rollback revives
   * the run (the block links in it are not in the log). */
  if (R->nfree == R->nblocks && (h->S->partial[c] != r || R->next != 0) &&
      (!in_my_tx(h) || h->committing)) {
    if ((rc = partial_remove(h, r, c))) return rc;
    uint64_t ci = (r - h->data_off) >> h->cshift;
    uint32_t pi = (uint32_t)(((r - h->data_off) & (h->chunk - 1)) / HP);
    if ((rc = logw(h, R, 4))) return rc;
    R->magic = 0;
    return free_pages(h, ci, pi, R->npages);
  }
  return 0;
}

/* Allocate inside an operation (lock held). */
static int galloc(mm_heap_t *h, uint64_t size, uint64_t *out) {
  int c = size_class(size);
  if (c >= 0) return take_block(h, c, out);
  uint64_t pages = (size + HP - 1) / HP;
  if (pages < h->cp) return alloc_pages(h, (uint32_t)pages, ENT(K_LARGE, pages), out);
  return alloc_huge(h, size, out);
}

/* Free a classified object (lock held). */
static int gfree(mm_heap_t *h, const struct obj *o) {
  if (o->kind == OBJ_SMALL) return run_put(h, o->start, o->run, o->cls);
  if (o->kind == OBJ_LARGE) return free_pages(h, o->ci, o->pi, o->npages);
  uint32_t *m = cmap(h, o->ci);
  return set_ent(h, &m[0], ENT(C_FREE, VAL(m[0])));
}

/* ---- per-thread caches (slots) ------------------------------------------------ */

static int ofd_lock(int fd, int type, int64_t at, int wait) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = (short)type;
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)at;
  fl.l_len = 1;
  return mm__sys_fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, (long)&fl);
}

/* 1 if another open file description holds the byte at `at`. */
static int ofd_held(int fd, int64_t at) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)at;
  fl.l_len = 1;
  if (mm__sys_fcntl(fd, F_OFD_GETLK, (long)&fl) < 0) return 1; /* assume yes */
  return fl.l_type != F_UNLCK;
}

/* Is b a block of class c? */
static int slot_block_ok(mm_heap_t *h, uint64_t b, int c, struct obj *o) {
  return classify(h, b, o) == 0 && o->kind == OBJ_SMALL && o->cls == c;
}

/* Give up to `max` blocks of slot k's class c back to the runs, leaving
 * `keep` (lock held, in an op; the log bounds how many one op can move).
 * A bad link cuts the list there (the rest leaks; mm_heap_check says so). */
static int slot_flush_class(mm_heap_t *h, int k, int c, uint32_t keep, int max) {
  struct slot *s = &h->S->slots[k];
  uint32_t cnt = __atomic_load_n(&s->count[c], __ATOMIC_RELAXED);
  int rc;
  while (s->head[c] && (keep == 0 || cnt > keep) && max-- > 0) {
    uint64_t b = s->head[c];
    struct obj o;
    if (!slot_block_ok(h, b, c, &o) || !marked_free(h, b)) {
      if ((rc = logw(h, &s->head[c], 8))) return rc;
      s->head[c] = 0;
      break;
    }
    uint64_t nx = *(uint64_t *)AT(h, b);
    if ((rc = logw(h, &s->head[c], 8)) || (rc = logw(h, &s->count[c], 4))) return rc;
    s->head[c] = nx;
    cnt = cnt ? cnt - 1 : 0;
    __atomic_store_n(&s->count[c], cnt, __ATOMIC_RELAXED);
    if ((rc = run_put(h, b, o.run, c))) return rc;
  }
  if (!s->head[c] && cnt) {
    if ((rc = logw(h, &s->count[c], 4))) return rc;
    __atomic_store_n(&s->count[c], 0, __ATOMIC_RELAXED);
  }
  return 0;
}

static int slot_is_mine(const mm_heap_t *h, int k) {
  for (int i = 0; i < h->nth; i++)
    if (h->th[i].slot == k) return 1;
  return 0;
}

/* May slot k be taken back? (lock held) Taken, not ours, and (unless
 * `all`: the opener is alone) its owner's lock byte is free. */
static int slot_dead(mm_heap_t *h, int k, int all) {
  struct slot *s = &h->S->slots[k];
  return s->state != 0 && !slot_is_mine(h, k) &&
         (all || !ofd_held(h->fd, LOCK_SLOT(k)));
}

/* Empty slot k and mark it free, one op per batch (outside any op). With
 * `check`, each op first makes sure the slot is still dead. */
static int slot_drain(mm_heap_t *h, int k, int check, int all) {
  struct slot *s = &h->S->slots[k];
  for (int c = 0; c < NCLASS; c++) {
    for (int guard = 0; guard < 1000000; guard++) {
      struct op op;
      int rc = op_begin_raw(h, &op);
      if (rc) return rc;
      int go = (!check || slot_dead(h, k, all)) && s->head[c];
      rc = op_end(h, &op, go ? slot_flush_class(h, k, c, 0, 128) : 0);
      if (rc) return rc;
      if (!go) break;
    }
  }
  struct op op;
  int rc = op_begin_raw(h, &op);
  if (rc) return rc;
  if ((!check || slot_dead(h, k, all)) && (rc = logw(h, s, 16)) == 0) {
    s->state = 0;
    s->pid = 0;
    s->tid = 0;
  }
  return op_end(h, &op, rc);
}

/* Take back the slots of handles that are gone (outside any op). */
static int slots_reclaim(mm_heap_t *h, int all) {
  for (int k = 0; k < MAXSLOTS; k++) {
    if (h->S->slots[k].state == 0) continue;
    int rc = slot_drain(h, k, 1, all);
    if (rc) return rc;
  }
  return 0;
}

/* Claim a free slot for thread tid (lock held, in an op): -1 if none. */
static int slot_claim(mm_heap_t *h, pid_t tid, int *out) {
  struct super *S = h->S;
  int rc;
  *out = -1;
  for (int k = 0; k < MAXSLOTS; k++) {
    struct slot *s = &S->slots[k];
    if (s->state != 0) continue;
    if (ofd_lock(h->fd, F_WRLCK, LOCK_SLOT(k), 0) < 0) continue;
    if ((rc = logw(h, s, sizeof *s))) return rc;
    memset(s->head, 0, sizeof s->head); /* leftovers in a free slot leak */
    memset(s->count, 0, sizeof s->count);
    s->state = 1;
    s->pid = (uint32_t)getpid();
    s->tid = (uint64_t)tid;
    *out = k;
    return 0;
  }
  return 0;
}

/* This thread's slot in h, claiming one on first use; -1 if none. */
static int my_slot_slow(mm_heap_t *h) {
  pid_t tid = my_tid();
  int slot = -1, found = 0;
  pthread_mutex_lock(&h->tlock);
  for (int i = 0; i < h->nth; i++)
    if (h->th[i].tid == tid) { slot = h->th[i].slot; found = 1; break; }
  if (!found && h->nth < MAXSLOTS) {
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0 && slot < 0; pass++) {
      struct op op;
      if (pass == 1 && (rc = slots_reclaim(h, 0))) break;
      if ((rc = op_begin(h, &op)) == 0) rc = op_end(h, &op, slot_claim(h, tid, &slot));
    }
    if (rc) slot = -1;
    if (rc == 0 || slot >= 0) {
      h->th[h->nth].tid = tid;
      h->th[h->nth].slot = slot;
      h->nth++;
    }
  }
  pthread_mutex_unlock(&h->tlock);
  tls.uid = h->uid;
  tls.slot = slot;
  return slot;
}

static inline int my_slot(mm_heap_t *h) {
  unsigned long g = atomic_load_explicit(&fork_gen, memory_order_relaxed);
  if (MM__LIKELY(tls.uid == h->uid && tls.gen == g)) return tls.slot;
  return my_slot_slow(h);
}

/* Refill slot k's class c from the runs. */
static int slot_refill(mm_heap_t *h, int k, int c) {
  struct op op;
  int rc = op_begin_raw(h, &op);
  if (rc) return rc;
  struct slot *s = &h->S->slots[k];
  uint64_t b;
  if ((rc = logw(h, &s->head[c], 8)) == 0 && (rc = logw(h, &s->count[c], 4)) == 0) {
    for (int i = 0; i < SLOT_REFILL; i++) {
      if ((rc = take_block(h, c, &b))) break;
      uint64_t *w = AT(h, b);
      w[0] = s->head[c];
      w[1] = h->S->free_key ^ b;
      s->head[c] = b;
      __atomic_store_n(&s->count[c], s->count[c] + 1, __ATOMIC_RELAXED);
    }
    if (rc && s->head[c]) rc = 0; /* got some: good enough */
  }
  return op_end(h, &op, rc);
}

static int slot_trim(mm_heap_t *h, int k) {
  struct op op;
  int rc = op_begin_raw(h, &op);
  if (rc) return rc;
  int rc2 = 0;
  for (int c = 0; c < NCLASS && rc2 == 0; c++)
    if (__atomic_load_n(&h->S->slots[k].count[c], __ATOMIC_RELAXED) > SLOT_CAP)
      rc2 = slot_flush_class(h, k, c, SLOT_CAP / 2, SLOT_CAP);
  return op_end(h, &op, rc2);
}

/* ---- opening ---------------------------------------------------------------- */

static int hdr_check(const unsigned char *p, size_t avail, struct hdr *x) {
  if (avail < sizeof *x) return HC_NONE;
  memcpy(x, p, sizeof *x);
  if (memcmp(x->magic, heap_magic, 8)) return HC_NONE;
  if (x->byte_order == 0x04030201u) return HC_FOREIGN;
  if (x->crc != crc32c(x, offsetof(struct hdr, crc)))
    return x->byte_order == BYTE_ORDER_MARK && x->version > FORMAT_VERSION &&
                   x->version < 1000
               ? HC_NEWER
               : HC_BAD;
  if (x->version > FORMAT_VERSION || (x->incompat & ~KNOWN_INCOMPAT)) return HC_NEWER;
  if (x->byte_order != BYTE_ORDER_MARK || x->version == 0 ||
      x->header_size != sizeof *x || x->chunk_shift < 16 || x->chunk_shift > 22 ||
      x->super_off != SUPER_OFF || x->super_size != SUPER_SIZE ||
      x->log_off != LOG_OFF || x->log_size < 65536 || x->log_size > (1u << 30) ||
      x->log_size % HP || x->data_off != LOG_OFF + x->log_size ||
      x->max_size < x->data_off + ((uint64_t)1 << x->chunk_shift) ||
      x->max_size > ((uint64_t)1 << 56) ||
      x->root_off != SUPER_OFF + offsetof(struct super, root) ||
      x->names_off != SUPER_OFF + offsetof(struct super, names_buckets))
    return HC_BAD;
  return HC_OK;
}

static int hdr_load(mm_heap_t *h, const unsigned char *buf, size_t n) {
  struct hdr a, b;
  int ka = hdr_check(buf, n, &a);
  int kb = n > HDR_B_OFF ? hdr_check(buf + HDR_B_OFF, n - HDR_B_OFF, &b) : HC_NONE;
  if (ka == HC_OK || kb == HC_OK) {
    int useb = kb == HC_OK && (ka != HC_OK || b.generation > a.generation);
    h->hdr = useb ? b : a;
  } else if (ka == HC_FOREIGN || kb == HC_FOREIGN) {
    return MM_EPLATFORM;
  } else if (ka == HC_NEWER || kb == HC_NEWER) {
    return MM_EVERSION;
  } else if (ka == HC_BAD || kb == HC_BAD) {
    return MM_ECORRUPT;
  } else {
    return MM_ENOTHEAP;
  }
  const struct hdr *x = &h->hdr;
  if (x->page_size != mm__page_size() || x->word_size != sizeof(void *) ||
      x->mutex_size != sizeof(pthread_mutex_t))
    return MM_EPLATFORM;
  h->cshift = x->chunk_shift;
  h->chunk = (uint64_t)1 << x->chunk_shift;
  h->cp = (unsigned)(h->chunk / HP);
  h->data_off = x->data_off;
  h->log_size = x->log_size;
  h->log_cap = x->log_size / 2 - sizeof(struct loghdr);
  h->max_size = x->max_size;
  h->durable = (x->flags & HDR_DURABLE) != 0;
  return 0;
}

static int map_heap(mm_heap_t *h) {
  uint64_t len = mm__align_up(h->max_size, h->page_size);
  if (len == 0 || len > SIZE_MAX) return -ENOMEM;
  void *p;
  int rc = mm__sys_mmap(&p, NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED,
                        h->fd, 0);
  if (rc) return mm__mmap_error(rc);
  h->base = p;
  h->map_len = (size_t)len;
  h->S = (struct super *)(h->base + SUPER_OFF);
  h->L = (struct loghdr *)(h->base + LOG_OFF); /* log_pick, under the lock */
  h->logdata = (unsigned char *)(h->L + 1);
  return 0;
}

/* Is the name directory's bucket array inside the heap? (No product that
 * can wrap: the count is bounded first.) */
static int names_dir_ok(const mm_heap_t *h) {
  const struct super *S = h->S;
  uint64_t nb = S->names_nbuckets;
  if (nb == 0) return S->names_buckets == 0 && S->names_count == 0;
  return (nb & (nb - 1)) == 0 && nb <= heap_size(h) / 8 &&
         in_data(h, S->names_buckets, nb * 8);
}

/* The shared state, checked before anything follows it. */
static int super_check(mm_heap_t *h, uint64_t fsize, uint64_t hs) {
  struct super *S = h->S;
  if (S->magic != SUPER_MAGIC || log_hdr(h, 0)->magic != LOG_MAGIC) return MM_ECORRUPT;
  uint64_t n = (hs - h->data_off) >> h->cshift;
  if (n == 0 || n > (h->max_size >> h->cshift) ||
      hs != h->data_off + (n << h->cshift) || hs > h->max_size)
    return MM_ECORRUPT;
  if (fsize < hs) return MM_ETRUNCATED;
  for (unsigned a = 0; a < 2; a++) {
    const struct loghdr *L = log_hdr(h, a);
    if (L->magic == LOG_MAGIC && (L->used > h->log_cap || L->used % 8)) return MM_ECORRUPT;
  }
  if (S->root >= hs) return MM_ECORRUPT;
  if (!names_dir_ok(h)) return MM_ECORRUPT;
  return 0;
}

static void mutex_init(mm_heap_t *h) {
  pthread_mutexattr_t at;
  pthread_mutexattr_init(&at);
  pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
  memset(&h->S->lock, 0, sizeof h->S->lock);
  pthread_mutex_init(&h->S->lock.m, &at);
  pthread_mutexattr_destroy(&at);
}

static int create_format(mm_heap_t *h, const mm_heap_opts_t *o) {
  uint64_t chunk = o->chunk_size ? o->chunk_size : (4u << 20);
  uint64_t logsz = o->log_size ? o->log_size : (1u << 20);
  uint64_t max = o->max_size ? o->max_size : MM_HEAP_MAX_DEFAULT;
  if (chunk < 65536 || chunk > (4u << 20) || (chunk & (chunk - 1)) ||
      logsz < 65536 || logsz > (1u << 30) || logsz % HP)
    return -EINVAL;
  unsigned shift = (unsigned)__builtin_ctzll(chunk);
  uint64_t data_off = LOG_OFF + logsz;
  uint64_t nch = o->initial_size ? (o->initial_size + chunk - 1) >> shift : 1;
  if (nch == 0) nch = 1;
  if (max > ((uint64_t)1 << 56) || nch > (max >> shift) ||
      data_off + (nch << shift) > max)
    return -EINVAL;
  uint64_t hs = data_off + (nch << shift);
  int rc = mm__sys_fallocate(h->fd, 0, 0, hs);
  if (rc == -EOPNOTSUPP) rc = mm__sys_ftruncate(h->fd, hs);
  if (rc) return rc;

  struct hdr *x = &h->hdr;
  memset(x, 0, sizeof *x);
  memcpy(x->magic, heap_magic, 8);
  x->version = FORMAT_VERSION;
  x->incompat = INCOMPAT_WAL;
  x->header_size = sizeof *x;
  x->page_size = (uint32_t)mm__page_size();
  x->byte_order = BYTE_ORDER_MARK;
  x->word_size = sizeof(void *);
  x->chunk_shift = shift;
  if ((rc = mm__sys_getrandom(x->uuid, sizeof x->uuid))) return rc;
  x->max_size = max;
  x->super_off = SUPER_OFF;
  x->super_size = SUPER_SIZE;
  x->log_off = LOG_OFF;
  x->log_size = logsz;
  x->data_off = data_off;
  x->root_off = SUPER_OFF + offsetof(struct super, root);
  x->names_off = SUPER_OFF + offsetof(struct super, names_buckets);
  x->flags = (o->flags & MM_HEAP_DURABLE) ? HDR_DURABLE : 0;
  x->mutex_size = sizeof(pthread_mutex_t);
  h->cshift = shift;
  h->chunk = chunk;
  h->cp = (unsigned)(chunk / HP);
  h->data_off = data_off;
  h->log_size = logsz;
  h->log_cap = logsz / 2 - sizeof(struct loghdr);
  h->max_size = max;
  h->durable = (x->flags & HDR_DURABLE) != 0;
  if ((rc = map_heap(h))) return rc;

  struct super *S = h->S;
  S->magic = SUPER_MAGIC;
  S->nchunks = nch;
  S->heap_size = hs;
  if ((rc = mm__sys_getrandom(&S->free_key, sizeof S->free_key))) return rc;
  S->free_key |= 1; /* never 0 */
  mutex_init(h);
  log_hdr(h, 0)->magic = LOG_MAGIC;
  log_hdr(h, 1)->magic = LOG_MAGIC;
  uint32_t n = h->cp - 1;
  int b = bin_of(n);
  for (uint64_t i = 0; i < nch; i++) {
    uint32_t *m = cmap(h, i);
    m[0] = ENT(C_NORMAL, i);
    m[1] = ENT(K_FREE, n);
    m[n] = ENT(K_FTAIL, n);
    uint64_t node = page_off(h, i, 1);
    struct frun *f = AT(h, node);
    f->next = S->bins[b];
    f->prev = 0;
    if (S->bins[b]) ((struct frun *)AT(h, S->bins[b]))->prev = node;
    S->bins[b] = node;
  }
  /* The headers go last: until they are written the file is not a heap. */
  if (h->durable && (rc = mm__sys_msync(h->base, (size_t)hs, MS_SYNC))) return rc;
  x->generation = 1;
  x->file_size = hs;
  hdr_seal(x);
  memcpy(AT(h, HDR_B_OFF), x, sizeof *x);
  x->generation = 2;
  hdr_seal(x);
  memcpy(AT(h, 0), x, sizeof *x);
  if (h->durable) rc = mm__sys_msync(h->base, HP * 2, MS_SYNC);
  return rc;
}

static int open_file(const char *path, const mm_heap_opts_t *o, int *created) {
  unsigned perm = o->perm ? o->perm : 0600;
  *created = 0;
  if ((o->flags & MM_HEAP_CREATE) && (o->flags & MM_HEAP_EXCL)) {
    int fd = mm__sys_open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
    if (fd >= 0) *created = 1;
    return fd;
  }
  for (int tries = 0; tries < 3; tries++) {
    int fd = mm__sys_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd != -ENOENT || !(o->flags & MM_HEAP_CREATE)) return fd;
    fd = mm__sys_open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
    if (fd >= 0) { *created = 1; return fd; }
    if (fd != -EEXIST) return fd;
  }
  return -EEXIST;
}

static void heap_free_handle(mm_heap_t *h) {
  if (h->base) (void)mm__sys_munmap(h->base, h->map_len);
  if (h->fd >= 0) (void)mm__sys_close(h->fd);
  pthread_mutex_destroy(&h->tlock);
  free(h->wbuf);
  free(h);
}

int mm_heap_open(mm_heap_t **out, const char *path, const mm_heap_opts_t *opts) {
  static const mm_heap_opts_t zero;
  if (!out) return -EINVAL;
  *out = NULL;
  if (!path) return -EINVAL;
  const mm_heap_opts_t *o = opts ? opts : &zero;
  if (o->flags & ~(unsigned)(MM_HEAP_CREATE | MM_HEAP_EXCL | MM_HEAP_DURABLE))
    return -EINVAL;
  pthread_once(&class_once, class_init);
  pthread_once(&crc_once, crc_init);
  pthread_once(&fork_once, fork_init);

  mm_heap_t *h = calloc(1, sizeof *h);
  if (!h) return -ENOMEM;
  h->fd = -1;
  pthread_mutex_init(&h->tlock, NULL);
  h->page_size = mm__page_size();
  h->boot = mm__sys_boot_id();
  h->timeout_ms = o->lock_timeout_ms > 0 ? o->lock_timeout_ms : 0;
  int created = 0, rc, fresh = 0;
  int fd = open_file(path, o, &created);
  if (fd < 0) { rc = fd; goto fail; }
  h->fd = fd;
  /* Everyone holds the open byte shared; whoever gets it exclusive is
   * alone, so it may initialize, reset the lock and recover. */
  int excl = ofd_lock(fd, F_WRLCK, LOCK_OPEN, 0) == 0;
  if (!excl && (rc = ofd_lock(fd, F_RDLCK, LOCK_OPEN, 1)) < 0) goto fail;
  struct stat st;
  if ((rc = mm__sys_fstat(fd, &st))) goto fail;
  if (!S_ISREG(st.st_mode)) { rc = MM_ENOTHEAP; goto fail; }
  uint64_t fsize = (uint64_t)st.st_size;
  if (fsize == 0 && excl && (o->flags & MM_HEAP_CREATE)) {
    if ((rc = create_format(h, o))) goto fail;
    fresh = 1;
    fsize = heap_size(h);
  } else {
    unsigned char buf[HDR_B_OFF + sizeof(struct hdr)];
    ssize_t n = mm__sys_pread(fd, buf, sizeof buf, 0);
    if (n < 0) { rc = (int)n; goto fail; }
    if ((rc = hdr_load(h, buf, (size_t)n))) goto fail;
    if (fsize < h->data_off + h->chunk) { rc = MM_ETRUNCATED; goto fail; }
    if ((rc = map_heap(h))) goto fail;
    /* Another process may grow the file meanwhile: size it after reading
     * the heap's size, which is updated only once the file is longer. */
    uint64_t hs = 0;
    for (int tries = 0; tries < 3; tries++) {
      hs = __atomic_load_n(&h->S->heap_size, __ATOMIC_ACQUIRE);
      if ((rc = mm__sys_fstat(fd, &st))) goto fail;
      fsize = (uint64_t)st.st_size;
      if (fsize >= hs) break;
    }
    if ((rc = super_check(h, fsize, hs))) goto fail;
  }
  h->uid = atomic_fetch_add(&heap_uid_next, 1);
  if (excl && !fresh) {
    /* Alone: a lock left held by a crashed machine or process is reset, the
     * log rolled back, every cache slot taken back. */
    mutex_init(h);
    if ((rc = recover(h, 0))) goto fail;
    if (!(h->hdr.incompat & INCOMPAT_WAL)) hdr_mark_wal(h);
    /* The log may have rewritten the shared state: check it again. */
    if ((rc = mm__sys_fstat(fd, &st)) ||
        (rc = super_check(h, (uint64_t)st.st_size, heap_size(h))))
      goto fail;
    if ((rc = slots_reclaim(h, 1))) goto fail;
  }
  if (excl && (rc = ofd_lock(fd, F_RDLCK, LOCK_OPEN, 0)) < 0) goto fail;
  *out = h;
  return 0;
fail:
  if (created) (void)unlink(path);
  heap_free_handle(h);
  return rc;
}

/* Is there anything in either log header (a peek without the lock)? */
static int log_nonempty(const mm_heap_t *h) {
  return __atomic_load_n(&log_hdr(h, 0)->used, __ATOMIC_ACQUIRE) ||
         __atomic_load_n(&log_hdr(h, 1)->used, __ATOMIC_ACQUIRE);
}

/* Checkpoint a log that holds groups (takes the lock). */
static int checkpoint_locked(mm_heap_t *h) {
  int rc = glock(h, h->timeout_ms);
  if (rc) return rc;
  rc = h->L->used ? checkpoint(h) : sync_heap(h);
  gunlock(h);
  return rc;
}

int mm_heap_close(mm_heap_t *h) {
  if (!h) return 0;
  int rc = 0;
  if (atomic_load(&h->tx_tid) != 0) {
    atomic_store(&h->tx_tid, my_tid()); /* abort it from here */
    rc = mm_heap_tx_abort(h);
  }
  for (int i = 0; i < h->nth; i++) {
    int k = h->th[i].slot;
    if (k < 0) continue;
    int r = slot_drain(h, k, 0, 0);
    if (r == 0) (void)ofd_lock(h->fd, F_UNLCK, LOCK_SLOT(k), 0);
    if (!rc) rc = r;
  }
  if (log_nonempty(h)) {
    /* Leave no records behind: a later boot, or a copy of the file, would
     * write them over whatever changed after them. */
    int r = checkpoint_locked(h);
    if (!rc) rc = r;
  }
  (void)ofd_lock(h->fd, F_UNLCK, LOCK_OPEN, 0);
  if (tls.uid == h->uid) tls.uid = 0;
  if (mm__sys_munmap(h->base, h->map_len) == 0) h->base = NULL;
  int fd = h->fd;
  h->fd = -1;
  int r = mm__sys_close(fd);
  if (!rc) rc = r;
  heap_free_handle(h);
  return rc;
}

/* ---- offsets ------------------------------------------------------------------ */

void *mm_heap_base(const mm_heap_t *h) { return h ? h->base : NULL; }

void *mm_heap_ptr(const mm_heap_t *h, uint64_t off) {
  return off ? h->base + off : NULL;
}

uint64_t mm_heap_off(const mm_heap_t *h, const void *p) {
  return p ? (uint64_t)((const unsigned char *)p - h->base) : 0;
}

/* ---- allocation ---------------------------------------------------------------- */

/* The lock-free path: pop a block from this thread's slot. */
static inline int slot_pop(mm_heap_t *h, int k, int c, uint64_t *out) {
  struct slot *s = &h->S->slots[k];
  uint64_t b = s->head[c];
  if (!b) return 1;
  if (!in_data(h, b, class_size[c]) || b % MM_HEAP_ALIGN) return MM_ECORRUPT;
  uint64_t *w = AT(h, b);
  uint64_t nx = w[0];
  if (nx && (!in_data(h, nx, 16) || nx % MM_HEAP_ALIGN)) return MM_ECORRUPT;
  s->head[c] = nx; /* one store: the list stays whole if we die here */
  uint32_t n = s->count[c];
  __atomic_store_n(&s->count[c], n ? n - 1 : 0, __ATOMIC_RELAXED);
  w[1] = 0;
  *out = b;
  return 0;
}

static int heap_alloc(mm_heap_t *h, uint64_t size, uint64_t *off) {
  *off = 0;
  if (size == 0) return -EINVAL;
  if (size > h->max_size) return MM_EFULL;
  int c = size_class(size), rc;
  if (c >= 0 && !h->durable && !in_my_tx(h)) {
    int k = my_slot(h);
    if (k >= 0) {
      rc = slot_pop(h, k, c, off);
      if (rc <= 0) return rc;
      if ((rc = slot_refill(h, k, c))) return rc;
      rc = slot_pop(h, k, c, off);
      if (rc <= 0) return rc;
    }
  }
  struct op op;
  uint64_t o = 0;
  if ((rc = op_begin_raw(h, &op))) return rc;
  rc = op_end(h, &op, galloc(h, size, &o));
  if (rc == 0) *off = o;
  return rc;
}

/* The caller may now fill (or has given up) memory no log holds: this
 * thread's next durable commit on the heap syncs the data first, so that
 * what it publishes is on disk before the commit point. Marked after the
 * call, since the call's own durable commit clears the mark. */
int mm_heap_alloc(mm_heap_t *h, uint64_t size, uint64_t *off) {
  if (!h || !off) return -EINVAL;
  int rc = heap_alloc(h, size, off);
  tls_raw |= raw_bit(h);
  return rc;
}

int mm_heap_zalloc(mm_heap_t *h, uint64_t size, uint64_t *off) {
  int rc = mm_heap_alloc(h, size, off);
  if (rc == 0) memset(AT(h, *off), 0, (size_t)size);
  return rc;
}

/* A free inside a transaction: checked now, done at commit. */
static int tx_defer_free(mm_heap_t *h, uint64_t off) {
  uint64_t used = h->L->used, at = h->tail;
  while (at + sizeof(struct logent) <= used) {
    const struct logent *e = (const struct logent *)(h->logdata + at);
    if (e->type == ENT_FREE && e->off == off) return -EINVAL; /* twice */
    at += ent_size(e);
  }
  return log_append(h, off, 0, ENT_FREE);
}

/* The small-block part of classify, for the lock-free free: 1 and *cls if
 * off is a handed-out block of a small run, else 0. */
static inline int small_block(const mm_heap_t *h, uint64_t off, int *cls) {
  uint64_t hs = heap_size(h);
  if (MM__UNLIKELY(off < h->data_off + HP || off >= hs || off % MM_HEAP_ALIGN)) return 0;
  uint64_t rel = off - h->data_off, ci = rel >> h->cshift;
  uint32_t pi = (uint32_t)((rel & (h->chunk - 1)) / HP);
  const uint32_t *m = cmap(h, ci);
  if (m[0] != ENT(C_NORMAL, ci) || pi == 0) return 0;
  uint32_t e = m[pi];
  if (KIND(e) == K_CONT) {
    if (VAL(e) >= pi) return 0;
    pi -= VAL(e);
    e = m[pi];
  }
  int c = (int)(VAL(e) >> 8);
  if (KIND(e) != K_SMALL || c >= NCLASS) return 0;
  uint64_t p = chunk_off(h, ci) + (uint64_t)pi * HP, first = p + RUN_HDR;
  const struct run *R = AT(h, p);
  if (R->magic != RUN_MAGIC || R->cls != c || off < first) return 0;
  uint64_t idx = block_index(off - first, c);
  if (idx * class_size[c] != off - first || idx >= class_blocks[c] ||
      idx >= __atomic_load_n(&R->bump, __ATOMIC_RELAXED))
    return 0;
  *cls = c;
  return 1;
}

static int heap_free(mm_heap_t *h, uint64_t off) {
  int cls;
  if (MM__LIKELY(!h->durable) && small_block(h, off, &cls) &&
      atomic_load_explicit(&h->tx_tid, memory_order_relaxed) == 0) {
    uint64_t *w = AT(h, off);
    if (w[1] == (h->S->free_key ^ off)) return -EINVAL; /* already free */
    int k = my_slot(h);
    if (k >= 0) {
      struct slot *s = &h->S->slots[k];
      w[0] = s->head[cls];
      w[1] = h->S->free_key ^ off;
      s->head[cls] = off; /* one store publishes it */
      uint32_t n = s->count[cls] + 1;
      __atomic_store_n(&s->count[cls], n, __ATOMIC_RELAXED);
      if (MM__UNLIKELY(n > SLOT_CAP)) (void)slot_trim(h, k); /* retried later */
      return 0;
    }
  }
  struct obj o;
  int rc = classify(h, off, &o);
  if (rc) return rc;
  if (o.kind == OBJ_SMALL && marked_free(h, off)) return -EINVAL;
  if (in_my_tx(h)) return tx_defer_free(h, off);
  struct op op;
  if ((rc = op_begin_raw(h, &op))) return rc;
  /* Again under the lock: another thread may have freed it meanwhile. */
  rc = classify(h, off, &o);
  if (rc == 0 && o.kind == OBJ_SMALL && marked_free(h, off)) rc = -EINVAL;
  if (rc == 0) rc = gfree(h, &o);
  return op_end(h, &op, rc);
}

int mm_heap_free(mm_heap_t *h, uint64_t off) {
  if (!h) return -EINVAL;
  if (off == 0) return 0;
  int rc = heap_free(h, off);
  tls_raw |= raw_bit(h);
  return rc;
}

int mm_heap_realloc(mm_heap_t *h, uint64_t *off, uint64_t size) {
  if (!h || !off) return -EINVAL;
  if (*off == 0) return mm_heap_alloc(h, size, off);
  if (size == 0) return -EINVAL;
  struct obj o;
  int rc = classify(h, *off, &o);
  if (rc) return rc;
  if (o.kind == OBJ_SMALL && marked_free(h, *off)) return -EINVAL;
  if (size <= o.usable && (size > o.usable / 4 || o.usable <= SMALL_MAX)) return 0;
  uint64_t n;
  if ((rc = mm_heap_alloc(h, size, &n))) return rc;
  memcpy(AT(h, n), AT(h, *off), (size_t)(size < o.usable ? size : o.usable));
  if ((rc = mm_heap_free(h, *off))) {
    (void)mm_heap_free(h, n);
    return rc;
  }
  *off = n;
  return 0;
}

uint64_t mm_heap_usable_size(mm_heap_t *h, uint64_t off) {
  struct obj o;
  if (!h || classify(h, off, &o)) return 0;
  if (o.kind == OBJ_SMALL && marked_free(h, off)) return 0;
  return o.usable;
}

int mm_heap_valid(mm_heap_t *h, uint64_t off, uint64_t len) {
  if (!h || off == 0 || !in_data(h, off, len)) return 0;
  /* Find the allocation containing off: try it as a start, then the start
   * of its block, run or chunk span. */
  struct obj o;
  if (classify(h, off, &o) != 0) {
    uint64_t ci = (off - h->data_off) >> h->cshift;
    uint32_t pi = (uint32_t)(((off - h->data_off) & (h->chunk - 1)) / HP);
    uint32_t *m = cmap(h, ci);
    if (KIND(m[0]) == C_NORMAL && pi > 0) {
      uint32_t e = m[pi];
      if (KIND(e) == K_CONT && VAL(e) < pi) { pi -= VAL(e); e = m[pi]; }
      uint64_t p = page_off(h, ci, pi);
      if (KIND(e) == K_SMALL && (VAL(e) >> 8) < NCLASS) {
        uint64_t bs = class_size[VAL(e) >> 8];
        if (off < p + RUN_HDR) return 0;
        p += RUN_HDR + (off - p - RUN_HDR) / bs * bs;
      }
      if (classify(h, p, &o) != 0) return 0;
    } else {
      /* Inside a huge span: walk the chunk list. */
      int found = 0;
      if (glock(h, h->timeout_ms)) return 0;
      for (uint64_t i = 0, n = nchunks(h); i < n;) {
        uint32_t e = cmap(h, i)[0];
        uint64_t l = KIND(e) == C_NORMAL ? 1 : VAL(e);
        if (l == 0 || l > n - i) break;
        if (KIND(e) == C_HUGE && off >= chunk_off(h, i) + HP &&
            off < chunk_off(h, i + l)) {
          found = classify(h, chunk_off(h, i) + HP, &o) == 0;
          break;
        }
        i += l;
      }
      gunlock(h);
      if (!found) return 0;
    }
  }
  if (o.kind == OBJ_SMALL && marked_free(h, o.start)) return 0;
  return off >= o.start && off - o.start <= o.usable && len <= o.usable - (off - o.start);
}

/* ---- root and names --------------------------------------------------------------- */

uint64_t mm_heap_root(mm_heap_t *h) {
  return h ? __atomic_load_n(&h->S->root, __ATOMIC_ACQUIRE) : 0;
}

int mm_heap_set_root(mm_heap_t *h, uint64_t off) {
  if (!h || (off && !in_data(h, off, 1))) return -EINVAL;
  struct op op;
  int rc = op_begin(h, &op);
  if (rc) return rc;
  if ((rc = logw(h, &h->S->root, 8)) == 0)
    __atomic_store_n(&h->S->root, off, __ATOMIC_RELEASE);
  return op_end(h, &op, rc);
}

/* Free an object the library itself owns (lock held, in an op). In a
 * transaction's body the free waits for commit, like the caller's frees:
 * the object is live again if the transaction rolls back, so its bytes
 * must not be reused before then. */
static int tx_defer_free(mm_heap_t *h, uint64_t off);
static int op_free(mm_heap_t *h, uint64_t off) {
  if (in_my_tx(h) && !h->committing) return tx_defer_free(h, off);
  struct obj o;
  int rc = classify(h, off, &o);
  return rc ? MM_ECORRUPT : gfree(h, &o);
}

static uint32_t name_hash(const char *s, size_t n) {
  uint32_t x = 2166136261u;
  for (size_t i = 0; i < n; i++) x = (x ^ (unsigned char)s[i]) * 16777619u;
  return x;
}

static int name_len(const char *name, size_t *n) {
  if (!name) return -EINVAL;
  *n = strnlen(name, MM_HEAP_NAME_MAX + 1);
  return *n == 0 || *n > MM_HEAP_NAME_MAX ? -EINVAL : 0;
}

/* Is e a plausible binding? (lock held) */
static int nent_ok(mm_heap_t *h, uint64_t e) {
  if (!in_data(h, e, sizeof(struct nent)) || e % 8) return 0;
  const struct nent *N = AT(h, e);
  return N->len >= 1 && N->len <= MM_HEAP_NAME_MAX &&
         in_data(h, e, sizeof *N + N->len + 1);
}

/* Find name: *slotp is the link that points at it (bucket or a next). */
static int name_find(mm_heap_t *h, const char *name, size_t n, uint64_t **linkp,
                     uint64_t *found) {
  struct super *S = h->S;
  *found = 0;
  *linkp = NULL;
  if (!S->names_nbuckets) return 0;
  if (!names_dir_ok(h)) return MM_ECORRUPT;
  uint32_t hv = name_hash(name, n);
  uint64_t *link = (uint64_t *)AT(h, S->names_buckets) + (hv & (S->names_nbuckets - 1));
  uint64_t guard = S->names_count + 1;
  while (*link) {
    uint64_t e = *link;
    if (!nent_ok(h, e) || guard-- == 0) return MM_ECORRUPT;
    struct nent *N = AT(h, e);
    if (N->hash == hv && N->len == n && !memcmp(N->name, name, n)) {
      *linkp = link;
      *found = e;
      return 0;
    }
    link = &N->next;
  }
  *linkp = link;
  return 0;
}

/* Double the bucket array (lock held, in an op); *old gets the old array,
 * for the caller to free once nothing else is allocated in the op. */
static int names_grow(mm_heap_t *h, uint64_t *old_arr) {
  struct super *S = h->S;
  uint64_t nb = S->names_nbuckets ? S->names_nbuckets * 2 : NAME_BUCKETS0;
  uint64_t arr;
  int rc = galloc(h, nb * 8, &arr);
  if (rc) return rc;
  uint64_t *A = AT(h, arr);
  memset(A, 0, nb * 8); /* fresh: its first bytes are in the log already */
  if (S->names_nbuckets) {
    uint64_t *old = AT(h, S->names_buckets), guard = S->names_count + 1;
    for (uint64_t i = 0; i < S->names_nbuckets; i++) {
      for (uint64_t e = old[i]; e;) {
        if (!nent_ok(h, e) || guard-- == 0) return MM_ECORRUPT;
        struct nent *N = AT(h, e);
        uint64_t nx = N->next;
        if ((rc = logw(h, &N->next, 8))) return rc;
        N->next = A[N->hash & (nb - 1)];
        A[N->hash & (nb - 1)] = e;
        e = nx;
      }
    }
  }
  *old_arr = S->names_buckets;
  if ((rc = logw(h, &S->names_buckets, 16))) return rc;
  S->names_buckets = arr;
  S->names_nbuckets = nb;
  return 0;
}

static int name_set_locked(mm_heap_t *h, const char *name, size_t n, uint64_t off) {
  struct super *S = h->S;
  uint64_t *link, e;
  int rc = name_find(h, name, n, &link, &e);
  if (rc) return rc;
  if (e) {
    struct nent *N = AT(h, e);
    if ((rc = logw(h, &N->value, 8))) return rc;
    N->value = off;
    return 0;
  }
  uint64_t old_arr = 0;
  if (S->names_count >= S->names_nbuckets * 2) {
    if ((rc = names_grow(h, &old_arr))) return rc;
  }
  if ((rc = galloc(h, sizeof(struct nent) + n + 1, &e))) return rc;
  struct nent *N = AT(h, e);
  uint32_t hv = name_hash(name, n);
  uint64_t *bucket = (uint64_t *)AT(h, S->names_buckets) + (hv & (S->names_nbuckets - 1));
  if ((rc = logw(h, N, sizeof *N + n + 1))) return rc;
  N->next = *bucket;
  N->value = off;
  N->hash = hv;
  N->len = (uint16_t)n;
  N->pad = 0;
  memcpy(N->name, name, n);
  N->name[n] = 0;
  if ((rc = logw(h, bucket, 8)) || (rc = logw(h, &S->names_count, 8))) return rc;
  *bucket = e;
  S->names_count++;
  return old_arr ? op_free(h, old_arr) : 0;
}

static int name_set(mm_heap_t *h, const char *name, uint64_t off) {
  size_t n;
  if (name_len(name, &n) || (off && !in_data(h, off, 1))) return -EINVAL;
  struct op op;
  int rc = op_begin_raw(h, &op);
  if (rc) return rc;
  return op_end(h, &op, name_set_locked(h, name, n, off));
}

int mm_heap_name_get(mm_heap_t *h, const char *name, uint64_t *off) {
  size_t n;
  if (!h || !off || name_len(name, &n)) return -EINVAL;
  int mine = in_my_tx(h), rc;
  if (!mine && (rc = glock(h, h->timeout_ms))) return rc;
  uint64_t *link, e;
  rc = name_find(h, name, n, &link, &e);
  if (rc == 0 && !e) rc = -ENOENT;
  if (rc == 0) *off = ((struct nent *)AT(h, e))->value;
  if (!mine) gunlock(h);
  return rc;
}

static int name_del(mm_heap_t *h, const char *name) {
  size_t n;
  if (name_len(name, &n)) return -EINVAL;
  struct op op;
  int rc = op_begin_raw(h, &op);
  if (rc) return rc;
  uint64_t *link, e;
  rc = name_find(h, name, n, &link, &e);
  if (rc == 0 && !e) rc = -ENOENT;
  if (rc == 0) {
    struct nent *N = AT(h, e);
    if ((rc = logw(h, link, 8)) == 0 && (rc = logw(h, &h->S->names_count, 8)) == 0) {
      *link = N->next;
      h->S->names_count--;
      rc = op_free(h, e);
    }
  }
  return op_end(h, &op, rc);
}

int mm_heap_name_set(mm_heap_t *h, const char *name, uint64_t off) {
  if (!h) return -EINVAL;
  int rc = name_set(h, name, off);
  tls_raw |= raw_bit(h);
  return rc;
}

int mm_heap_name_del(mm_heap_t *h, const char *name) {
  if (!h) return -EINVAL;
  int rc = name_del(h, name);
  tls_raw |= raw_bit(h);
  return rc;
}

int mm_heap_name_list(mm_heap_t *h, mm_heap_name_fn fn, void *arg) {
  if (!h || !fn) return -EINVAL;
  int mine = in_my_tx(h), rc;
  if (!mine && (rc = glock(h, h->timeout_ms))) return rc;
  struct super *S = h->S;
  rc = 0;
  if (!names_dir_ok(h)) rc = MM_ECORRUPT;
  uint64_t guard = S->names_count + 1;
  for (uint64_t i = 0; rc == 0 && i < S->names_nbuckets; i++) {
    for (uint64_t e = ((uint64_t *)AT(h, S->names_buckets))[i]; e && rc == 0;) {
      if (!nent_ok(h, e) || guard-- == 0) { rc = MM_ECORRUPT; break; }
      struct nent *N = AT(h, e);
      char name[MM_HEAP_NAME_MAX + 1];
      memcpy(name, N->name, N->len);
      name[N->len] = 0;
      rc = fn(arg, name, N->value);
      e = N->next;
    }
  }
  if (!mine) gunlock(h);
  return rc;
}

/* ---- transactions ------------------------------------------------------------------ */

int mm_heap_tx_begin(mm_heap_t *h, const mm_heap_tx_opts_t *opts) {
  if (!h) return -EINVAL;
  if (in_my_tx(h)) return -EBUSY;
  unsigned flags = opts ? opts->flags : 0;
  int t = opts && opts->timeout_ms ? opts->timeout_ms : h->timeout_ms;
  int rc = glock(h, t < 0 ? 0 : t);
  if (rc) return rc;
  int durable = (flags & MM_HEAP_TX_DURABLE) ||
                (h->durable && !(flags & MM_HEAP_TX_NOSYNC));
  if ((rc = log_begin(h, durable))) {
    gunlock(h);
    return rc;
  }
  atomic_store(&h->tx_tid, my_tid());
  return 0;
}

int mm_heap_tx_add(mm_heap_t *h, uint64_t off, uint64_t len) {
  if (!h || !in_my_tx(h)) return -EINVAL;
  if (len == 0) return 0;
  if (!in_data(h, off, len)) return -EINVAL;
  return logw(h, AT(h, off), len);
}

int mm_heap_tx_add_ptr(mm_heap_t *h, const void *p, uint64_t len) {
  if (!h || !p) return -EINVAL;
  return mm_heap_tx_add(h, OFF(h, p), len);
}

int mm_heap_tx_write(mm_heap_t *h, uint64_t off, const void *src, uint64_t len) {
  if (!h || !in_my_tx(h)) return -EINVAL;
  if (len == 0) return 0;
  if (!src || !in_data(h, off, len)) return -EINVAL;
  if (!h->op_sync) {
    int rc = logw(h, AT(h, off), len);
    if (rc == 0) memmove(AT(h, off), src, (size_t)len);
    return rc;
  }
  /* Durable: staged as a commit record's image, written at commit. */
  uint64_t need = sizeof(struct img) + align8(len);
  if (len > UINT32_MAX || need > h->log_cap ||
      h->wlen + need + sizeof(struct logent) > h->log_cap - h->L->used)
    return MM_EFULL;
  if (h->wlen + need > h->wcap) {
    size_t cap = h->wcap ? h->wcap : 4096;
    while (cap < h->wlen + need) cap *= 2;
    unsigned char *nb = realloc(h->wbuf, cap);
    if (!nb) return -ENOMEM;
    h->wbuf = nb;
    h->wcap = cap;
  }
  unsigned char *p = h->wbuf + h->wlen;
  struct img im = {off, len};
  memcpy(p, &im, sizeof im);
  memcpy(p + sizeof im, src, (size_t)len);
  memset(p + sizeof im + len, 0, (size_t)(align8(len) - len));
  h->wlen += (size_t)need;
  return 0;
}

static void tx_end(mm_heap_t *h) {
  h->wlen = 0;
  atomic_store(&h->tx_tid, 0);
  gunlock(h);
}

int mm_heap_tx_commit(mm_heap_t *h) {
  if (!h || !in_my_tx(h)) return -EINVAL;
  uint32_t *pos;
  uint64_t end;
  long n = log_parse(h, h->tail, h->L->used, &pos, &end);
  int rc = n < 0 ? (int)n : 0;
  /* A durable tx_write lands at commit, after the frees: one into an
   * object this transaction frees would land on the allocator's links. So
   * then the writes are made in place (logged) before the frees. */
  for (long i = 0; rc == 0 && h->wlen && i < n; i++) {
    const struct logent *e = (const struct logent *)(h->logdata + pos[i]);
    struct obj o;
    if (e->type != ENT_FREE || pos[i] < h->tail || classify(h, e->off, &o)) continue;
    if (wal_overlaps(h, o.start, o.usable)) rc = wal_materialize(h);
  }
  h->committing = 1;
  for (long i = 0; rc == 0 && i < n; i++) {
    const struct logent *e = (const struct logent *)(h->logdata + pos[i]);
    if (e->type != ENT_FREE || pos[i] < h->tail) continue;
    struct obj o;
    rc = classify(h, e->off, &o);
    if (rc == 0 && o.kind == OBJ_SMALL && marked_free(h, e->off)) rc = -EINVAL;
    if (rc == 0) rc = gfree(h, &o);
  }
  if (n >= 0) free(pos);
  h->committing = 0;
  if (rc == 0) rc = log_commit(h);
  if (rc) (void)rollback_to(h, h->tail);
  tx_end(h);
  return rc;
}

int mm_heap_tx_abort(mm_heap_t *h) {
  if (!h || !in_my_tx(h)) return -EINVAL;
  int rc = rollback_to(h, h->tail);
  tx_end(h);
  return rc;
}

int mm_heap_tx_active(const mm_heap_t *h) { return h && in_my_tx(h); }

int mm_heap_sync(mm_heap_t *h) {
  if (!h) return -EINVAL;
  if (in_my_tx(h)) {
    /* The groups before this transaction are on disk with their data. */
    int rc = sync_heap(h);
    if (rc == 0 && h->tail) {
      h->L->ckpt = h->tail;
      rc = sync_range(h, OFF(h, h->L), sizeof *h->L);
    }
    return rc;
  }
  if (log_nonempty(h)) return checkpoint_locked(h);
  /* Records committed after this peek are newer than what we sync. */
  return sync_heap(h);
}

/* ---- info and check ------------------------------------------------------------------ */

struct walk {
  mm_heap_t *h;
  mm_heap_check_fn fn;
  void *arg;
  uint64_t nfound;
  uint64_t used, free, overhead, objects, cached, ncached, largest, free_pages;
  uint64_t *fruns; size_t nfr, capfr;      /* free page runs seen in the maps */
  uint64_t *pruns; size_t npr, cappr;      /* runs with free blocks: off<<5|cls */
  uint64_t *sblk; size_t nsb, capsb;       /* blocks in caches of dead slots */
  unsigned handles;
  int oom;
};

__attribute__((format(printf, 4, 5)))
static void finding(struct walk *w, int code, uint64_t off, const char *fmt, ...) {
  w->nfound++;
  if (!w->fn || w->nfound > 1000) return;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  w->fn(w->arg, code, off, msg);
}

static int push(struct walk *w, uint64_t **v, size_t *n, size_t *cap, uint64_t x) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 256;
    uint64_t *nv = realloc(*v, nc * sizeof *nv);
    if (!nv) { w->oom = 1; return -1; }
    *v = nv;
    *cap = nc;
  }
  (*v)[(*n)++] = x;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int has(const uint64_t *v, size_t n, uint64_t x) {
  return v && n && bsearch(&x, v, n, sizeof *v, cmp_u64) != NULL;
}

static void walk_headers(struct walk *w) {
  mm_heap_t *h = w->h;
  struct hdr x;
  for (int k = 0; k < 2; k++) {
    int r = hdr_check(h->base + (k ? HDR_B_OFF : 0), sizeof x, &x);
    if (r != HC_OK)
      finding(w, MM_ECORRUPT, k ? HDR_B_OFF : 0,
              "header copy %c is not valid (%s); the other copy is used and "
              "the next header update rewrites this one",
              k ? 'B' : 'A', r == HC_NONE ? "no magic" : "bad checksum or field");
    else if (x.version != h->hdr.version || memcmp(x.uuid, h->hdr.uuid, 16) ||
             x.max_size != h->hdr.max_size || x.log_size != h->hdr.log_size ||
             x.chunk_shift != h->hdr.chunk_shift)
      finding(w, MM_ECORRUPT, k ? HDR_B_OFF : 0,
              "header copy %c disagrees with the other copy", k ? 'B' : 'A');
  }
}

/* The caches: live handles' counts are hints; dead ones' lists are walked. */
static void walk_slots(struct walk *w) {
  mm_heap_t *h = w->h;
  for (int k = 0; k < MAXSLOTS; k++) {
    struct slot *s = &h->S->slots[k];
    uint64_t so = OFF(h, s);
    if (s->state > 1) finding(w, MM_ECORRUPT, so, "cache slot %d: state %u", k, s->state);
    int live = s->state == 1 && (slot_is_mine(h, k) || ofd_held(h->fd, LOCK_SLOT(k)));
    if (live) {
      w->handles++;
      for (int c = 0; c < NCLASS; c++) {
        uint64_t n = __atomic_load_n(&s->count[c], __ATOMIC_RELAXED);
        w->cached += n * class_size[c];
        w->ncached += n;
      }
      continue;
    }
    for (int c = 0; c < NCLASS; c++) {
      uint64_t guard = heap_size(h) / 16, n = 0;
      for (uint64_t b = s->head[c]; b; b = *(uint64_t *)AT(h, b)) {
        struct obj o;
        if (!slot_block_ok(h, b, c, &o)) {
          finding(w, MM_ECORRUPT, b, "cache slot %d class %d: link to a non-block", k, c);
          break;
        }
        if (!marked_free(h, b))
          finding(w, MM_ECORRUPT, b, "cache slot %d: block not marked free", k);
        if (n++ > guard) {
          finding(w, MM_ECORRUPT, b, "cache slot %d class %d: cycle", k, c);
          break;
        }
        if (push(w, &w->sblk, &w->nsb, &w->capsb, b)) return;
      }
      if (s->state == 0 && s->head[c])
        finding(w, MM_ECORRUPT, so, "free cache slot %d holds blocks", k);
    }
  }
  if (w->sblk) qsort(w->sblk, w->nsb, sizeof *w->sblk, cmp_u64);
  for (size_t i = 1; i < w->nsb; i++)
    if (w->sblk[i] == w->sblk[i - 1])
      finding(w, MM_ECORRUPT, w->sblk[i], "block in two cache lists (or twice in one)");
}

static void walk_run(struct walk *w, uint64_t ci, uint32_t pi, int c) {
  mm_heap_t *h = w->h;
  uint64_t r = page_off(h, ci, pi);
  const struct run *R = AT(h, r);
  uint64_t bs = class_size[c], first = r + RUN_HDR;
  unsigned nb = run_blocks(c);
  if (R->magic != RUN_MAGIC || R->cls != c || R->nblocks != nb ||
      R->npages != run_pages(c) || R->nfree > nb || R->bump > nb) {
    finding(w, MM_ECORRUPT, r, "small run header is wrong (class %d)", c);
    w->overhead += (uint64_t)run_pages(c) * HP;
    return;
  }
  uint64_t bm[4] = {0, 0, 0, 0}; /* nb <= 252 */
  uint64_t nlist = 0;
  for (uint64_t b = R->free_head; b; b = *(uint64_t *)AT(h, b)) {
    if (b < first || (b - first) % bs || (b - first) / bs >= R->bump) {
      finding(w, MM_ECORRUPT, r, "run free list: bad link %#llx", (unsigned long long)b);
      break;
    }
    uint64_t i = (b - first) / bs;
    if (bm[i / 64] >> (i % 64) & 1) {
      finding(w, MM_ECORRUPT, b, "run free list: a block twice (a cycle)");
      break;
    }
    bm[i / 64] |= 1ull << (i % 64);
    if (!marked_free(h, b)) finding(w, MM_ECORRUPT, b, "free block not marked free");
    if (has(w->sblk, w->nsb, b))
      finding(w, MM_ECORRUPT, b, "block both in its run's free list and a cache");
    nlist++;
  }
  if (nlist + (nb - R->bump) != R->nfree)
    finding(w, MM_ECORRUPT, r, "run count: %u free, list %llu + %u never used",
            R->nfree, (unsigned long long)nlist, nb - R->bump);
  uint64_t incache = 0;
  for (uint64_t i = 0; i < R->bump && w->nsb; i++)
    if (has(w->sblk, w->nsb, first + i * bs)) incache++;
  uint64_t nfree = R->nfree <= nb ? R->nfree : nb;
  uint64_t alloc = nb - nfree >= incache ? nb - nfree - incache : 0;
  w->used += alloc * bs;
  w->objects += alloc;
  w->free += (nfree + incache) * bs;
  w->overhead += (uint64_t)run_pages(c) * HP - (uint64_t)nb * bs;
  if (R->nfree) (void)push(w, &w->pruns, &w->npr, &w->cappr, r << 5 | (uint64_t)c);
}

static void walk_chunk(struct walk *w, uint64_t ci) {
  mm_heap_t *h = w->h;
  uint32_t *m = cmap(h, ci);
  int prev_free = 0;
  w->overhead += HP;
  for (uint32_t p = 1; p < h->cp;) {
    uint32_t e = m[p], n = VAL(e);
    uint64_t po = page_off(h, ci, p);
    switch (KIND(e)) {
    case K_FREE:
      if (n == 0 || p + n > h->cp) break;
      if (n > 1 && m[p + n - 1] != ENT(K_FTAIL, n)) {
        finding(w, MM_ECORRUPT, po, "free run of %u pages: no tail entry", n);
      }
      if (prev_free) finding(w, MM_ECORRUPT, po, "two free runs side by side");
      (void)push(w, &w->fruns, &w->nfr, &w->capfr, po << 4 | (uint64_t)bin_of(n));
      w->free += (uint64_t)n * HP;
      w->free_pages += (uint64_t)n * HP;
      if ((uint64_t)n * HP > w->largest) w->largest = (uint64_t)n * HP;
      prev_free = 1;
      p += n;
      continue;
    case K_LARGE:
    case K_SMALL: {
      uint32_t np = KIND(e) == K_LARGE ? n : (n & 0xff);
      int c = (int)(n >> 8);
      if (np == 0 || p + np > h->cp || (KIND(e) == K_SMALL && (c >= NCLASS || np != run_pages(c))))
        break;
      for (uint32_t j = 1; j < np; j++)
        if (m[p + j] != ENT(K_CONT, j)) {
          finding(w, MM_ECORRUPT, page_off(h, ci, p + j), "page of a run: entry %#x", m[p + j]);
          break;
        }
      if (KIND(e) == K_LARGE) {
        w->used += (uint64_t)np * HP;
        w->objects++;
      } else {
        walk_run(w, ci, p, c);
      }
      prev_free = 0;
      p += np;
      continue;
    }
    default:
      break;
    }
    finding(w, MM_ECORRUPT, po, "page map: entry %#x where a run should start", e);
    w->overhead += HP;
    prev_free = 0;
    p++;
  }
}

static void walk_lists(struct walk *w) {
  mm_heap_t *h = w->h;
  struct super *S = h->S;
  if (w->fruns) qsort(w->fruns, w->nfr, sizeof *w->fruns, cmp_u64);
  if (w->pruns) qsort(w->pruns, w->npr, sizeof *w->pruns, cmp_u64);
  uint64_t seen = 0;
  for (int b = 0; b < NBINS; b++) {
    uint64_t prev = 0, guard = w->nfr + 1;
    for (uint64_t o = S->bins[b]; o; o = ((struct frun *)AT(h, o))->next) {
      if (!frun_ok(h, o) || !has(w->fruns, w->nfr, o << 4 | (uint64_t)b)) {
        finding(w, MM_ECORRUPT, o, "free page bin %d: link to something not a free run of its size", b);
        break;
      }
      if (((struct frun *)AT(h, o))->prev != prev)
        finding(w, MM_ECORRUPT, o, "free page bin %d: back link wrong", b);
      if (guard-- == 0) { finding(w, MM_ECORRUPT, o, "free page bin %d: cycle", b); break; }
      prev = o;
      seen++;
    }
  }
  if (seen != w->nfr)
    finding(w, MM_ECORRUPT, SUPER_OFF, "%llu free page runs in the maps, %llu in the bins",
            (unsigned long long)w->nfr, (unsigned long long)seen);
  seen = 0;
  for (int c = 0; c < NCLASS; c++) {
    uint64_t prev = 0, guard = w->npr + 1;
    for (uint64_t r = S->partial[c]; r; r = ((struct run *)AT(h, r))->next) {
      if (!has(w->pruns, w->npr, r << 5 | (uint64_t)c) || !run_ok(h, r, c)) {
        finding(w, MM_ECORRUPT, r, "class %d partial list: link to something not a run with free blocks", c);
        break;
      }
      if (((struct run *)AT(h, r))->prev != prev)
        finding(w, MM_ECORRUPT, r, "class %d partial list: back link wrong", c);
      if (guard-- == 0) { finding(w, MM_ECORRUPT, r, "class %d partial list: cycle", c); break; }
      prev = r;
      seen++;
    }
  }
  if (seen != w->npr)
    finding(w, MM_ECORRUPT, SUPER_OFF, "%llu runs have free blocks, %llu are listed",
            (unsigned long long)w->npr, (unsigned long long)seen);
}

static int live_object(mm_heap_t *h, uint64_t off, uint64_t len) {
  struct obj o;
  return classify(h, off, &o) == 0 && !(o.kind == OBJ_SMALL && marked_free(h, off)) &&
         len <= o.usable;
}

/* The name directory's own allocations are the heap's overhead, not the
 * caller's objects. */
static void names_overhead(struct walk *w, uint64_t off) {
  struct obj o;
  if (classify(w->h, off, &o) || w->used < o.usable || w->objects == 0) return;
  w->used -= o.usable;
  w->overhead += o.usable;
  w->objects--;
}

static void walk_names(struct walk *w) {
  mm_heap_t *h = w->h;
  struct super *S = h->S;
  uint64_t nb = S->names_nbuckets, count = 0;
  if (!nb) {
    if (S->names_count || S->names_buckets)
      finding(w, MM_ECORRUPT, SUPER_OFF, "names: no buckets but a count or array");
    return;
  }
  if (!names_dir_ok(h) || !live_object(h, S->names_buckets, nb * 8)) {
    finding(w, MM_ECORRUPT, S->names_buckets, "names: the bucket array is not a live object of its size");
    return;
  }
  names_overhead(w, S->names_buckets);
  for (uint64_t i = 0; i < nb; i++) {
    for (uint64_t e = ((uint64_t *)AT(h, S->names_buckets))[i]; e;) {
      if (!nent_ok(h, e) || !live_object(h, e, sizeof(struct nent))) {
        finding(w, MM_ECORRUPT, e, "names: bucket %llu links to a non-binding", (unsigned long long)i);
        break;
      }
      struct nent *N = AT(h, e);
      names_overhead(w, e);
      if (N->hash != name_hash(N->name, N->len) || (N->hash & (nb - 1)) != i)
        finding(w, MM_ECORRUPT, e, "names: binding hash wrong");
      if (N->value >= heap_size(h))
        finding(w, MM_ECORRUPT, e, "names: value past the end of the heap");
      if (++count > S->names_count) break;
      e = N->next;
    }
  }
  if (count != S->names_count)
    finding(w, MM_ECORRUPT, SUPER_OFF, "names: %llu bindings found, count says %llu",
            (unsigned long long)count, (unsigned long long)S->names_count);
}

/* Walk everything (lock held). */
/* With the lock free the log is empty or holds finished groups only, all
 * in memory: every entry valid, the last a commit record. */
static void walk_log(struct walk *w) {
  mm_heap_t *h = w->h;
  struct loghdr *L = h->L;
  /* Inside the caller's own transaction its tail is not a finding. */
  uint64_t used = in_my_tx(h) ? h->tail : L->used;
  if (used == 0) return;
  if (used > h->log_cap || used % 8) {
    finding(w, MM_ECORRUPT, OFF(h, L), "the log's length is impossible");
    return;
  }
  if (!in_my_tx(h) && !log_settled(L))
    finding(w, MM_ECORRUPT, OFF(h, L),
            "the log holds an unfinished operation with the lock free");
  uint32_t *pos;
  uint64_t end;
  long n = log_parse(h, 0, used, &pos, &end);
  if (n < 0) return;
  const struct logent *e =
      n > 0 ? (const struct logent *)(h->logdata + pos[n - 1]) : NULL;
  if (end != used || !e || e->type != ENT_COMMIT)
    finding(w, MM_ECORRUPT, OFF(h, L) + sizeof *L + end,
            "the log's groups do not parse to their end in a commit record");
  free(pos);
}

static void walk_all(struct walk *w) {
  mm_heap_t *h = w->h;
  struct super *S = h->S;
  uint64_t hs = S->heap_size, n = nchunks(h);
  walk_headers(w);
  if (S->magic != SUPER_MAGIC || log_hdr(h, 0)->magic != LOG_MAGIC || n == 0 ||
      S->nchunks != n || hs != h->data_off + (n << h->cshift) || hs > h->max_size) {
    finding(w, MM_ECORRUPT, SUPER_OFF, "shared state: sizes or magic wrong");
    return;
  }
  log_pick(h);
  walk_log(w);
  if (S->root >= hs) finding(w, MM_ECORRUPT, SUPER_OFF, "root past the end of the heap");
  walk_slots(w);
  w->overhead += h->data_off;
  int complete = 1;
  for (uint64_t i = 0; i < n;) {
    uint32_t e = cmap(h, i)[0];
    uint64_t l = KIND(e) == C_NORMAL ? 1 : VAL(e);
    if (l == 0 || l > n - i ||
        (KIND(e) != C_NORMAL && KIND(e) != C_FREE && KIND(e) != C_HUGE) ||
        (KIND(e) == C_NORMAL && VAL(e) != (i & 0x0fffffffu))) {
      finding(w, MM_ECORRUPT, chunk_off(h, i), "chunk %llu: descriptor %#x", (unsigned long long)i, e);
      complete = 0;
      break;
    }
    if (KIND(e) == C_NORMAL) {
      walk_chunk(w, i);
    } else if (KIND(e) == C_FREE) {
      w->free += l << h->cshift;
      w->free_pages += l << h->cshift;
      if ((l << h->cshift) - HP > w->largest) w->largest = (l << h->cshift) - HP;
    } else {
      w->used += (l << h->cshift) - HP;
      w->overhead += HP;
      w->objects++;
    }
    i += l;
  }
  if (w->oom) { finding(w, -ENOMEM, 0, "out of memory while checking"); return; }
  walk_lists(w);
  walk_names(w);
  /* The live handles' caches hold blocks the runs count as allocated. */
  if (w->cached > w->used) finding(w, MM_ECORRUPT, SUPER_OFF, "caches hold more than is allocated");
  else { w->used -= w->cached; w->free += w->cached; }
  if (w->ncached <= w->objects) w->objects -= w->ncached;
  if (complete && w->used + w->free + w->overhead != hs)
    finding(w, MM_ECORRUPT, SUPER_OFF, "sizes do not add up: used %llu + free %llu + overhead %llu != %llu",
            (unsigned long long)w->used, (unsigned long long)w->free,
            (unsigned long long)w->overhead, (unsigned long long)hs);
}

static void walk_done(struct walk *w) {
  free(w->fruns);
  free(w->pruns);
  free(w->sblk);
}

int mm_heap_info(mm_heap_t *h, mm_heap_info_t *info) {
  if (!h || !info) return -EINVAL;
  int mine = in_my_tx(h), rc;
  if (!mine && (rc = glock(h, h->timeout_ms))) return rc;
  struct walk w;
  memset(&w, 0, sizeof w);
  w.h = h;
  walk_all(&w);
  uint64_t dead_cached = 0;
  for (size_t i = 0; i < w.nsb; i++) {
    struct obj o;
    if (classify(h, w.sblk[i], &o) == 0) dead_cached += o.usable;
  }
  memset(info, 0, sizeof *info);
  info->file_size = h->S->heap_size;
  info->max_size = h->max_size;
  info->chunk_size = h->chunk;
  info->log_size = h->hdr.log_size;
  info->used = w.used;
  info->free = w.free;
  info->overhead = w.overhead;
  info->largest_free = w.largest;
  info->objects = w.objects;
  info->cached = w.cached + dead_cached;
  info->generation = h->hdr.generation;
  info->names = h->S->names_count;
  info->root = h->S->root;
  /* How far the largest free block falls short of the largest the free
   * space could make: a chunk's data pages, or all of it if less. */
  uint64_t could = h->chunk - HP > w.largest ? h->chunk - HP : w.largest;
  if (could > w.free_pages) could = w.free_pages;
  info->fragmentation = could ? 1.0 - (double)w.largest / (double)could : 0;
  if (info->fragmentation < 0) info->fragmentation = 0;
  info->version = h->hdr.version;
  info->page_size = h->hdr.page_size;
  info->durable = h->durable;
  info->handles = w.handles;
  memcpy(info->uuid, h->hdr.uuid, 16);
  if (!mine) gunlock(h);
  rc = w.nfound ? MM_ECORRUPT : 0;
  walk_done(&w);
  return rc;
}

int mm_heap_check(mm_heap_t *h, mm_heap_check_fn fn, void *arg, uint64_t *nfound) {
  if (nfound) *nfound = 0;
  if (!h) return -EINVAL;
  int mine = in_my_tx(h), rc;
  if (!mine && (rc = glock(h, h->timeout_ms))) return rc;
  struct walk w;
  memset(&w, 0, sizeof w);
  w.h = h;
  w.fn = fn;
  w.arg = arg;
  walk_all(&w);
  if (!mine) gunlock(h);
  if (nfound) *nfound = w.nfound;
  rc = w.oom ? -ENOMEM : w.nfound ? MM_ECORRUPT : 0;
  walk_done(&w);
  return rc;
}
