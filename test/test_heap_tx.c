/*
 * test_heap_tx.c - the heap's transactions, tested against heap.h: abort
 * restores every declared byte and undoes the transaction's allocations,
 * frees and realloc moves; commit keeps; the root and names roll back; the
 * sync order of durable transactions (traced) and none in process-crash
 * ones; a failed sync at tx_add or commit rolls back; the undo log filling
 * up; growth inside a transaction; the lock's timeout; a lock holder killed
 * while another process waits; and the crash torture: processes running
 * random transactions are SIGKILLed at random moments, and after every kill
 * the heap must check clean with its invariants intact.
 *
 * MM_HEAP_TORTURE_KILLS=N (default 50) sets the torture's number of kills;
 * MM_HEAP_TORTURE_SEED=S replays a run (the seed is printed). `make stress`
 * runs 1000.
 */
#include "test.h"
#include "heap_util.h"

#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

#define CHUNK 65536u                     /* every heap here: 64 KiB chunks */
#define MAXSZ ((uint64_t)256 << 20)      /* small enough for 32-bit builds */

static uint64_t xs(uint64_t *x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  return *x;
}

static void fill_random(void *p, size_t n, uint64_t *x) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(xs(x) >> 24);
}

static mm_heap_t *heap_create_at(const char *path, unsigned flags, uint32_t log_size) {
  mm_heap_opts_t o = {.flags = MM_HEAP_CREATE | MM_HEAP_EXCL | flags,
                      .chunk_size = CHUNK,
                      .max_size = MAXSZ,
                      .log_size = log_size};
  mm_heap_t *h = NULL;
  ASSERT_OK(mm_heap_open(&h, path, &o));
  ASSERT(h != NULL);
  return h;
}

static mm_heap_t *heap_reopen(const char *path, int lock_timeout_ms) {
  mm_heap_opts_t o = {.lock_timeout_ms = lock_timeout_ms};
  mm_heap_t *h = NULL;
  ASSERT_OK(mm_heap_open(&h, path, &o));
  return h;
}

/* mm_heap_check must find nothing; each problem is printed. */
#define ASSERT_CLEAN(h) ASSERT_CHECK_CLEAN(h)


static uint64_t alloc_fill(mm_heap_t *h, uint64_t size, uint64_t *x, unsigned char **copy) {
  uint64_t off = 0;
  ASSERT_OK(mm_heap_alloc(h, size, &off));
  ASSERT(off != 0);
  ASSERT_EQ(off % MM_HEAP_ALIGN, 0);
  fill_random(mm_heap_ptr(h, off), (size_t)size, x);
  if (copy) {
    *copy = malloc((size_t)size);
    ASSERT(*copy != NULL);
    memcpy(*copy, mm_heap_ptr(h, off), (size_t)size);
  }
  return off;
}

/* Declare [off+at, off+at+len) and scribble random bytes over it. */
static void declare_and_scribble(mm_heap_t *h, uint64_t off, uint64_t at, uint64_t len,
                                 uint64_t *x) {
  ASSERT_OK(mm_heap_tx_add(h, off + at, len));
  fill_random((unsigned char *)mm_heap_ptr(h, off) + at, (size_t)len, x);
}

/* ---- 1. abort restores, allocations vanish ----------------------------- */

TEST(heap_tx_abort_restores_every_declared_byte_and_undoes_allocs) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = heap_create_at(path, 0, 0);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  /* One object of each kind: size class, page run, whole chunks. */
  const uint64_t sizes[3] = {1000, 20000, 150000};
  uint64_t obj[3];
  unsigned char *orig[3];
  for (int k = 0; k < 3; k++) obj[k] = alloc_fill(h, sizes[k], &x, &orig[k]);
  mm_heap_info_t before = info_of(h);

  ASSERT_EQ(mm_heap_tx_active(h), 0);
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  for (int k = 0; k < 3; k++) {
    uint64_t n = sizes[k];
    /* Overlapping ranges, one declared again after both were changed: the
     * abort must bring back the bytes from before the transaction, not the
     * ones saved by the second declaration. */
    declare_and_scribble(h, obj[k], 10, 300, &x);
    declare_and_scribble(h, obj[k], 200, 400, &x);
    declare_and_scribble(h, obj[k], 10, 300, &x);
    declare_and_scribble(h, obj[k], 5, 700, &x); /* covers both */
    declare_and_scribble(h, obj[k], 0, 1, &x);    /* the first byte */
    declare_and_scribble(h, obj[k], n - 1, 1, &x); /* the last */
    for (int i = 0; i < 10; i++) {
      uint64_t at = xs(&x) % n;
      uint64_t room = n - at < 4096 ? n - at : 4096;
      declare_and_scribble(h, obj[k], at, 1 + xs(&x) % room, &x);
    }
    ASSERT(mm_test_first_diff(mm_heap_ptr(h, obj[k]), orig[k], (size_t)n) != (size_t)-1);
  }
  /* Allocations inside the transaction, written to (no tx_add needed). */
  const uint64_t asz[4] = {48, 10000, 100000, 700};
  uint64_t a[4];
  for (int i = 0; i < 4; i++) {
    if (i == 3)
      ASSERT_OK(mm_heap_zalloc(h, asz[i], &a[i]));
    else
      ASSERT_OK(mm_heap_alloc(h, asz[i], &a[i]));
    ASSERT(a[i] != 0);
    ASSERT(mm_heap_usable_size(h, a[i]) >= asz[i]);
    memset(mm_heap_ptr(h, a[i]), 0x5A, (size_t)asz[i]);
  }
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_EQ(mm_heap_tx_active(h), 0);

  for (int k = 0; k < 3; k++) ASSERT_MEM_EQ(mm_heap_ptr(h, obj[k]), orig[k], sizes[k]);
  for (int i = 0; i < 4; i++) {
    if (mm_heap_usable_size(h, a[i]) != 0)
      FAIL("allocation %d (%" PRIu64 " bytes at %" PRIu64 ") made in the aborted "
           "transaction is still live: usable size %" PRIu64, i, asz[i], a[i],
           mm_heap_usable_size(h, a[i]));
    ASSERT_EQ(mm_heap_valid(h, a[i], 1), 0);
  }
  mm_heap_info_t after = info_of(h);
  ASSERT_EQ(after.used, before.used);
  ASSERT_EQ(after.objects, before.objects);
  ASSERT_CLEAN(h);

  /* The space is free again: the same sizes can be had (reuse is allowed,
   * not required; say what happened). */
  int reused = 0;
  for (int i = 0; i < 4; i++) {
    uint64_t b;
    ASSERT_OK(mm_heap_alloc(h, asz[i], &b));
    reused += b == a[i];
  }
  fprintf(stderr, "# %d of 4 aborted allocations' offsets were handed out again\n", reused);
  ASSERT_CLEAN(h);
  for (int k = 0; k < 3; k++) free(orig[k]);
  ASSERT_OK(mm_heap_close(h));
}

/* The counts the other tests compare: objects are live allocations, not
 * blocks waiting in a per-thread cache. */
TEST(heap_tx_info_objects_are_live_allocations) {
  mm_heap_t *h = heap_create_at(mm_test_path("h"), 0, 0);
  mm_heap_info_t i0 = info_of(h);
  uint64_t a, b;
  ASSERT_OK(mm_heap_alloc(h, 64, &a));
  mm_heap_info_t i1 = info_of(h);
  if (i1.objects != i0.objects + 1)
    FAIL("one 64-byte allocation: objects %" PRIu64 " -> %" PRIu64 " (cached %" PRIu64
         "); want +1", i0.objects, i1.objects, i1.cached);
  ASSERT_EQ(i1.used, i0.used + mm_heap_usable_size(h, a));
  ASSERT_OK(mm_heap_free(h, a));
  mm_heap_info_t i2 = info_of(h);
  ASSERT_EQ(i2.objects, i0.objects);
  ASSERT_EQ(i2.used, i0.used);
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_alloc(h, 64, &b));
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  mm_heap_info_t i3 = info_of(h);
  ASSERT_EQ(i3.objects, i0.objects);
  ASSERT_EQ(i3.used, i0.used);
  ASSERT_OK(mm_heap_close(h));
}

TEST(heap_tx_free_and_realloc_take_effect_only_at_commit) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = heap_create_at(path, 0, 0);
  uint64_t x = 42;
  unsigned char *fc, *rcopy;
  uint64_t f = alloc_fill(h, 300, &x, &fc);
  uint64_t r = alloc_fill(h, 1000, &x, &rcopy);
  mm_heap_info_t i0 = info_of(h);

  /* Aborted: the free and the realloc's move never happen. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_free(h, f));
  ASSERT(mm_heap_usable_size(h, f) >= 300); /* takes effect at commit */
  uint64_t r2 = r;
  ASSERT_OK(mm_heap_realloc(h, &r2, 50000));
  ASSERT(r2 != 0);
  ASSERT_MEM_EQ(mm_heap_ptr(h, r2), rcopy, 1000);
  memset(mm_heap_ptr(h, r2), 0xEE, 50000);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT(mm_heap_usable_size(h, f) >= 300);
  ASSERT_EQ(mm_heap_valid(h, f, 300), 1);
  ASSERT_MEM_EQ(mm_heap_ptr(h, f), fc, 300);
  ASSERT(mm_heap_usable_size(h, r) >= 1000);
  ASSERT_EQ(mm_heap_valid(h, r, 1000), 1);
  if (r2 != r) {
    ASSERT_EQ(mm_heap_usable_size(h, r2), 0);
    ASSERT_MEM_EQ(mm_heap_ptr(h, r), rcopy, 1000);
  } else {
    /* Grown in place: the grown tail is the transaction's and goes back. */
    ASSERT(mm_heap_usable_size(h, r) < 50000);
  }
  mm_heap_info_t i1 = info_of(h);
  ASSERT_EQ(i1.objects, i0.objects);
  ASSERT_EQ(i1.used, i0.used);
  ASSERT_CLEAN(h);

  /* Committed: both happen. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_free(h, f));
  uint64_t r3 = r;
  ASSERT_OK(mm_heap_realloc(h, &r3, 50000));
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_EQ(mm_heap_usable_size(h, f), 0);
  ASSERT_EQ(mm_heap_valid(h, f, 1), 0);
  ASSERT(mm_heap_usable_size(h, r3) >= 50000);
  ASSERT_MEM_EQ(mm_heap_ptr(h, r3), rcopy, 1000);
  if (r3 != r) ASSERT_EQ(mm_heap_usable_size(h, r), 0);
  mm_heap_info_t i2 = info_of(h);
  ASSERT_EQ(i2.objects, i0.objects - 1);
  ASSERT_CLEAN(h);
  free(fc);
  free(rcopy);
  ASSERT_OK(mm_heap_close(h));
}

/* ---- 2. commit keeps; root and names roll back ----------------------------- */

static int name_is(mm_heap_t *h, const char *name, uint64_t want) {
  uint64_t off = 0;
  int rc = mm_heap_name_get(h, name, &off);
  if (want == 0) return rc == -ENOENT;
  return rc == 0 && off == want;
}

TEST(heap_tx_commit_keeps_everything_and_root_and_names_roll_back) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = heap_create_at(path, 0, 0);
  uint64_t x = 7;
  unsigned char *orig;
  uint64_t d = alloc_fill(h, 5000, &x, &orig);

  /* Commit: the changes, the allocation, the root and a name all stay. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  declare_and_scribble(h, d, 0, 100, &x);
  declare_and_scribble(h, d, 4000, 1000, &x);
  uint64_t b;
  ASSERT_OK(mm_heap_alloc(h, 3000, &b));
  memset(mm_heap_ptr(h, b), 0xB0, 3000);
  ASSERT_OK(mm_heap_set_root(h, b));
  ASSERT_OK(mm_heap_name_set(h, "b", b));
  ASSERT_OK(mm_heap_tx_commit(h));
  unsigned char *committed = malloc(5000);
  ASSERT(committed != NULL);
  memcpy(committed, mm_heap_ptr(h, d), 5000);
  ASSERT(mm_test_first_diff(committed, orig, 5000) != (size_t)-1);
  ASSERT_EQ(mm_heap_root(h), b);
  ASSERT(name_is(h, "b", b));
  ASSERT(mm_heap_usable_size(h, b) >= 3000);
  ASSERT_OK(mm_heap_close(h));

  h = heap_reopen(path, 0);
  ASSERT_CLEAN(h);
  ASSERT_MEM_EQ(mm_heap_ptr(h, d), committed, 5000);
  ASSERT_EQ(mm_heap_root(h), b);
  ASSERT(name_is(h, "b", b));
  ASSERT_EQ(mm_heap_valid(h, b, 3000), 1);
  unsigned char *bb = mm_heap_ptr(h, b);
  for (int i = 0; i < 3000; i++) ASSERT_EQ(bb[i], 0xB0);

  /* Abort: root, new name, rebinding and deletion all roll back. */
  ASSERT_OK(mm_heap_name_set(h, "keep", d));
  mm_heap_info_t i0 = info_of(h);
  ASSERT_EQ(i0.names, 2);
  ASSERT_EQ(i0.root, b);
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_set_root(h, d));
  ASSERT_OK(mm_heap_name_set(h, "b", d));
  ASSERT_OK(mm_heap_name_set(h, "new", d));
  ASSERT_OK(mm_heap_name_del(h, "keep"));
  /* The transaction's thread sees its own changes. */
  ASSERT_EQ(mm_heap_root(h), d);
  ASSERT(name_is(h, "b", d));
  ASSERT(name_is(h, "new", d));
  ASSERT(name_is(h, "keep", 0));
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_EQ(mm_heap_root(h), b);
  ASSERT(name_is(h, "b", b));
  ASSERT(name_is(h, "new", 0));
  ASSERT(name_is(h, "keep", d));
  mm_heap_info_t i1 = info_of(h);
  ASSERT_EQ(i1.names, 2);
  ASSERT_EQ(i1.root, b);
  ASSERT_EQ(i1.objects, i0.objects);
  ASSERT_CLEAN(h);

  /* Clearing the root inside an aborted transaction. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_set_root(h, 0));
  ASSERT_EQ(mm_heap_root(h), 0);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_EQ(mm_heap_root(h), b);

  /* Close with a transaction open: it is aborted. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  declare_and_scribble(h, d, 50, 2000, &x);
  uint64_t c;
  ASSERT_OK(mm_heap_alloc(h, 777, &c));
  ASSERT_OK(mm_heap_name_set(h, "c", c));
  ASSERT_OK(mm_heap_set_root(h, c));
  ASSERT_OK(mm_heap_close(h));
  h = heap_reopen(path, 0);
  ASSERT_CLEAN(h);
  ASSERT_MEM_EQ(mm_heap_ptr(h, d), committed, 5000);
  ASSERT_EQ(mm_heap_usable_size(h, c), 0);
  ASSERT(name_is(h, "c", 0));
  ASSERT_EQ(mm_heap_root(h), b);
  mm_heap_info_t i2 = info_of(h);
  ASSERT_EQ(i2.objects, i0.objects);
  ASSERT_EQ(i2.names, 2);
  free(orig);
  free(committed);
  ASSERT_OK(mm_heap_close(h));
}

TEST(heap_tx_api_errors) {
  mm_heap_t *h = heap_create_at(mm_test_path("h"), 0, 0);
  uint64_t x = 3;
  unsigned char *orig;
  uint64_t d = alloc_fill(h, 256, &x, &orig);
  mm_heap_info_t in = info_of(h);
  ASSERT_RC(mm_heap_tx_add(h, d, 8), -EINVAL); /* no transaction */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_RC(mm_heap_tx_begin(h, NULL), -EBUSY); /* no nesting */
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  ASSERT_RC(mm_heap_tx_add(h, 0, 8), -EINVAL);          /* the header */
  ASSERT_RC(mm_heap_tx_add(h, 100, 8), -EINVAL);        /* the header */
  ASSERT_RC(mm_heap_tx_add(h, 8192 + 64, 8), -EINVAL);  /* the shared state */
  ASSERT_RC(mm_heap_tx_add(h, in.file_size - 8, 64), -EINVAL); /* past the end */
  ASSERT_RC(mm_heap_tx_add(h, in.file_size + CHUNK, 8), -EINVAL);
  ASSERT_RC(mm_heap_tx_add(h, d, UINT64_MAX), -EINVAL); /* wraps */
  /* The transaction survives refused calls; tx_add_ptr works like tx_add. */
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  unsigned char *p = mm_heap_ptr(h, d);
  ASSERT_OK(mm_heap_tx_add_ptr(h, p + 10, 20));
  memset(p + 10, 0, 20);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_EQ(mm_heap_tx_active(h), 0);
  ASSERT_MEM_EQ(p, orig, 256);
  ASSERT_CLEAN(h);
  free(orig);
  ASSERT_OK(mm_heap_close(h));
}

/* ---- 3. the sync order -------------------------------------------------- */

#define TRACE_MAX 8192
struct trace {
  int n;
  unsigned char op[TRACE_MAX];
  long res[TRACE_MAX];
};
static struct trace tr;

static void trace_fn(void *arg, int op, long result) {
  struct trace *t = arg;
  if (t->n < TRACE_MAX) {
    t->op[t->n] = (unsigned char)op;
    t->res[t->n] = result;
  }
  t->n++;
}

/* Calls of `op` recorded in [from, to); failed ones counted in *failed. */
static int count_op(int from, int to, int op, int *failed) {
  int n = 0;
  if (to > TRACE_MAX) FAIL("trace overflow (%d calls)", to);
  for (int i = from; i < to; i++)
    if (tr.op[i] == op) {
      n++;
      if (failed && tr.res[i] != 0) ++*failed;
    }
  return n;
}

/* A durable transaction: tx_add syncs before it returns (so the undo record
 * is on disk before the range can change), commit syncs before returning. */
static void expect_durable_tx(mm_heap_t *h, uint64_t d, const mm_heap_tx_opts_t *o,
                              const char *what) {
  memset(&tr, 0, sizeof tr);
  mm__sys_trace(trace_fn, &tr);
  ASSERT_OK(mm_heap_tx_begin(h, o));
  int s1 = tr.n;
  ASSERT_OK(mm_heap_tx_add(h, d, 512));
  int s2 = tr.n;
  memset(mm_heap_ptr(h, d), 0x11, 512); /* only now may the range change */
  ASSERT_OK(mm_heap_tx_add(h, d + 2048, 512));
  int s3 = tr.n;
  memset((char *)mm_heap_ptr(h, d) + 2048, 0x22, 512);
  int s4 = tr.n;
  ASSERT_OK(mm_heap_tx_commit(h));
  int s5 = tr.n;
  mm__sys_trace(NULL, NULL);
  int bad = 0;
  int add1 = count_op(s1, s2, MM_SYS_MSYNC, &bad);
  int add2 = count_op(s2, s3, MM_SYS_MSYNC, &bad);
  int com = count_op(s4, s5, MM_SYS_MSYNC, &bad);
  fprintf(stderr, "# %s: msync calls: first tx_add %d, second tx_add %d, commit %d "
          "(fsync: %d, %d, %d)\n", what, add1, add2, com,
          count_op(s1, s2, MM_SYS_FSYNC, NULL), count_op(s2, s3, MM_SYS_FSYNC, NULL),
          count_op(s4, s5, MM_SYS_FSYNC, NULL));
  if (add1 < 1) FAIL("%s: the first tx_add returned without an msync (undo record not on disk)", what);
  if (add2 < 1) FAIL("%s: the second tx_add returned without an msync", what);
  if (com < 1) FAIL("%s: commit returned without an msync", what);
  ASSERT_EQ(bad, 0);
  ASSERT_EQ(s4, s3); /* nothing in between: the writes are ours */
}

/* A process-crash transaction: no msync or fsync from begin to commit. */
static void expect_nosync_tx(mm_heap_t *h, uint64_t d, const mm_heap_tx_opts_t *o,
                             int with_alloc, const char *what) {
  memset(&tr, 0, sizeof tr);
  mm__sys_trace(trace_fn, &tr);
  ASSERT_OK(mm_heap_tx_begin(h, o));
  ASSERT_OK(mm_heap_tx_add(h, d, 512));
  memset(mm_heap_ptr(h, d), 0x33, 512);
  ASSERT_OK(mm_heap_tx_add(h, d + 1024, 4096));
  memset((char *)mm_heap_ptr(h, d) + 1024, 0x44, 4096);
  if (with_alloc) {
    uint64_t a, f;
    ASSERT_OK(mm_heap_alloc(h, 200, &a));
    ASSERT_OK(mm_heap_alloc(h, 9000, &f));
    ASSERT_OK(mm_heap_free(h, f));
  }
  ASSERT_OK(mm_heap_tx_commit(h));
  /* And one aborted. */
  ASSERT_OK(mm_heap_tx_begin(h, o));
  ASSERT_OK(mm_heap_tx_add(h, d, 512));
  memset(mm_heap_ptr(h, d), 0x55, 512);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  int n = tr.n;
  mm__sys_trace(NULL, NULL);
  int ms = count_op(0, n, MM_SYS_MSYNC, NULL), fs = count_op(0, n, MM_SYS_FSYNC, NULL);
  if (ms || fs)
    FAIL("%s: %d msync and %d fsync calls; a process-crash transaction makes none", what,
         ms, fs);
}

TEST(heap_tx_durable_sync_order_traced) {
  mm_heap_t *h = heap_create_at(mm_test_path("h"), 0, 0);
  uint64_t d;
  ASSERT_OK(mm_heap_zalloc(h, 8192, &d));
  mm_heap_tx_opts_t dur = {.flags = MM_HEAP_TX_DURABLE};
  expect_durable_tx(h, d, &dur, "MM_HEAP_TX_DURABLE transaction");
  expect_nosync_tx(h, d, NULL, 1, "default transaction");
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));

  /* A durable heap: transactions are durable by default; NOSYNC opts out. */
  h = heap_create_at(mm_test_path("durable"), MM_HEAP_DURABLE, 0);
  mm_heap_info_t in = info_of(h);
  ASSERT_EQ(in.durable, 1);
  ASSERT_OK(mm_heap_zalloc(h, 8192, &d));
  expect_durable_tx(h, d, NULL, "default transaction in a MM_HEAP_DURABLE heap");
  mm_heap_tx_opts_t nos = {.flags = MM_HEAP_TX_NOSYNC};
  expect_nosync_tx(h, d, &nos, 0, "MM_HEAP_TX_NOSYNC transaction in a MM_HEAP_DURABLE heap");
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

/* ---- 4. a failed sync rolls back ------------------------------------------ */

/* One durable transaction that changes d, allocates and frees f; the
 * `nth` msync from the commit's start fails with EIO (0: none). */
static int durable_attempt(mm_heap_t *h, uint64_t d, uint64_t f, unsigned long nth,
                           uint64_t *y, unsigned long *msyncs) {
  mm_heap_tx_opts_t dur = {.flags = MM_HEAP_TX_DURABLE};
  ASSERT_OK(mm_heap_tx_begin(h, &dur));
  ASSERT_OK(mm_heap_tx_add(h, d + 64, 512));
  memset((char *)mm_heap_ptr(h, d) + 64, 0x77, 512);
  ASSERT_OK(mm_heap_alloc(h, 1000, y));
  memset(mm_heap_ptr(h, *y), 0x78, 1000);
  ASSERT_OK(mm_heap_free(h, f));
  unsigned long c0 = mm__sys_count(MM_SYS_MSYNC);
  if (nth) mm__fault_set(MM_SYS_MSYNC, nth, EIO, 0);
  int rc = mm_heap_tx_commit(h);
  *msyncs = mm__sys_count(MM_SYS_MSYNC) - c0;
  mm__fault_clear();
  return rc;
}

TEST(heap_tx_durable_sync_failure_rolls_back) {
  mm_heap_t *h = heap_create_at(mm_test_path("h"), 0, 0);
  uint64_t x = 99;
  unsigned char *orig, *forig;
  uint64_t d = alloc_fill(h, 4096, &x, &orig);
  uint64_t f = alloc_fill(h, 64, &x, &forig);
  mm_heap_info_t i0 = info_of(h);

  /* Commit: whichever of its msyncs fails, it returns -EIO and the data,
   * the allocation and the free are rolled back, the lock released. */
  unsigned long nth, msyncs = 0;
  int done = 0;
  for (nth = 1; nth <= 64 && !done; nth++) {
    uint64_t y = 0;
    int rc = durable_attempt(h, d, f, nth, &y, &msyncs);
    if (rc == 0) {
      if (msyncs >= nth) FAIL("commit succeeded although its msync #%lu failed", nth);
      done = 1;
      ASSERT(mm_heap_usable_size(h, y) >= 1000);
      ASSERT_EQ(mm_heap_usable_size(h, f), 0);
      break;
    }
    if (rc != -EIO)
      FAIL("commit with msync #%lu failing: got %s, want EIO", nth, mm_errname(rc));
    ASSERT_EQ(mm_heap_tx_active(h), 0);
    ASSERT_MEM_EQ(mm_heap_ptr(h, d), orig, 4096);
    ASSERT_EQ(mm_heap_usable_size(h, y), 0);
    ASSERT(mm_heap_usable_size(h, f) >= 64);
    ASSERT_MEM_EQ(mm_heap_ptr(h, f), forig, 64);
    mm_heap_info_t i1 = info_of(h);
    ASSERT_EQ(i1.objects, i0.objects);
    ASSERT_EQ(i1.used, i0.used);
    ASSERT_CLEAN(h);
  }
  ASSERT(done);
  if (nth == 1) FAIL("a durable commit made no msync at all");
  fprintf(stderr, "# a durable commit makes %lu msync(s); failing each one rolled back\n",
          nth - 1);
  ASSERT_CLEAN(h);

  /* tx_add: a failed sync of the undo record fails the call, and nothing
   * has changed; earlier ranges of the transaction still roll back. */
  memcpy(orig, mm_heap_ptr(h, d), 4096);
  mm_heap_tx_opts_t dur = {.flags = MM_HEAP_TX_DURABLE};
  for (nth = 1; nth <= 16; nth++) {
    ASSERT_OK(mm_heap_tx_begin(h, &dur));
    mm__fault_set(MM_SYS_MSYNC, nth, EIO, 0);
    int rc = mm_heap_tx_add(h, d, 256);
    mm__fault_clear();
    if (rc == 0) {
      ASSERT(nth > 1);
      ASSERT_EQ(mm_heap_tx_abort(h), 0);
      break;
    }
    if (rc != -EIO) FAIL("tx_add with msync #%lu failing: got %s, want EIO", nth, mm_errname(rc));
    if (mm_heap_tx_active(h)) ASSERT_EQ(mm_heap_tx_abort(h), 0);
    ASSERT_MEM_EQ(mm_heap_ptr(h, d), orig, 4096);
    ASSERT_CLEAN(h);
  }
  ASSERT_OK(mm_heap_tx_begin(h, &dur));
  ASSERT_OK(mm_heap_tx_add(h, d, 256));
  memset(mm_heap_ptr(h, d), 0x99, 256);
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 0);
  int rc = mm_heap_tx_add(h, d + 1024, 256);
  mm__fault_clear();
  ASSERT_RC(rc, -EIO);
  if (mm_heap_tx_active(h)) ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_MEM_EQ(mm_heap_ptr(h, d), orig, 4096);
  ASSERT_CLEAN(h);
  /* The lock is free again. */
  ASSERT_OK(mm_heap_tx_begin(h, &dur));
  ASSERT_OK(mm_heap_tx_commit(h));
  free(orig);
  free(forig);
  ASSERT_OK(mm_heap_close(h));
}

/* ---- 8. the log fills up ------------------------------------------------- */

TEST(heap_tx_log_full_is_efull_and_abort_restores) {
  const uint32_t LOG = 65536;
  mm_heap_t *h = heap_create_at(mm_test_path("h"), 0, LOG);
  mm_heap_info_t in = info_of(h);
  ASSERT_EQ(in.log_size, LOG);
  uint64_t x = 5;
  const uint64_t N = 4 * (uint64_t)LOG;
  unsigned char *orig;
  uint64_t d = alloc_fill(h, N, &x, &orig);
  unsigned char *p = mm_heap_ptr(h, d);

  /* One range larger than the whole log. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_RC(mm_heap_tx_add(h, d, (uint64_t)LOG + 1), MM_EFULL);
  ASSERT_EQ(mm_heap_tx_active(h), 1);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  ASSERT_MEM_EQ(p, orig, N);

  /* Piece by piece until full; abort restores everything declared. */
  for (int commit = 0; commit < 2; commit++) {
    const uint64_t STEP = 4096;
    uint64_t declared = 0;
    int rc = 0;
    ASSERT_OK(mm_heap_tx_begin(h, NULL));
    for (uint64_t at = 0; at + STEP <= N; at += STEP) {
      rc = mm_heap_tx_add(h, d + at, STEP);
      if (rc != 0) break;
      declared += STEP;
      memset(p + at, 0xF0 + commit, STEP);
    }
    fprintf(stderr, "# log of %u bytes: %" PRIu64 " bytes declared before MM_EFULL\n", LOG,
            declared);
    if (rc != MM_EFULL)
      FAIL("declaring %" PRIu64 " bytes with a %u-byte log: got %s, want MM_EFULL",
           declared, LOG, mm_errname(rc));
    ASSERT(declared <= LOG);
    ASSERT(declared >= LOG / 4); /* the log holds at least some of its size */
    ASSERT_EQ(mm_heap_tx_active(h), 1);
    /* The refused range was not changed, and stays as it was. */
    ASSERT_MEM_EQ(p + declared, orig + declared, N - declared);
    if (!commit) {
      ASSERT_EQ(mm_heap_tx_abort(h), 0);
      ASSERT_MEM_EQ(p, orig, N);
    } else {
      /* Or commit what you have. */
      ASSERT_OK(mm_heap_tx_commit(h));
      for (uint64_t i = 0; i < declared; i++)
        if (p[i] != 0xF1) FAIL("committed byte %" PRIu64 " lost", i);
      ASSERT_MEM_EQ(p + declared, orig + declared, N - declared);
    }
    ASSERT_CLEAN(h);
  }
  /* The log is reusable after a full one (a transaction has one of the
   * log's two areas: a little under half of it). */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_tx_add(h, d, LOG / 4));
  ASSERT_OK(mm_heap_tx_commit(h));
  free(orig);
  ASSERT_OK(mm_heap_close(h));
}

/* ---- 9. growth inside a transaction -------------------------------------- */

#define GROW_N 64
static const uint64_t grow_sizes[] = {150000, 5000, 100, 200000, 40000, 700, 2048, 130000};

/* Allocate GROW_N objects (about 4.2 MB: dozens of 64 KiB chunks). */
static void grow_allocs(mm_heap_t *h, uint64_t *offs) {
  for (int i = 0; i < GROW_N; i++) {
    uint64_t sz = grow_sizes[i % 8];
    ASSERT_OK(mm_heap_alloc(h, sz, &offs[i]));
    memset(mm_heap_ptr(h, offs[i]), i + 1, (size_t)sz);
  }
}

TEST(heap_tx_spanning_growth_abort_frees_everything) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = heap_create_at(path, 0, 0);
  uint64_t x = 11;
  unsigned char *orig;
  uint64_t d = alloc_fill(h, 3000, &x, &orig);
  mm_heap_info_t i0 = info_of(h);
  uint64_t offs[GROW_N];

  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  declare_and_scribble(h, d, 0, 3000, &x);
  grow_allocs(h, offs);
  ASSERT_EQ(mm_heap_tx_abort(h), 0);
  mm_heap_info_t i1 = info_of(h);
  fprintf(stderr, "# file %" PRIu64 " -> %" PRIu64 " bytes after an aborted 4.2 MB "
          "transaction; free %" PRIu64 "\n", i0.file_size, i1.file_size, i1.free);
  ASSERT_EQ(i1.used, i0.used);
  ASSERT_EQ(i1.objects, i0.objects);
  for (int i = 0; i < GROW_N; i++) ASSERT_EQ(mm_heap_usable_size(h, offs[i]), 0);
  ASSERT_MEM_EQ(mm_heap_ptr(h, d), orig, 3000);
  ASSERT_CLEAN(h);

  /* The same, committed: everything stays, across a reopen. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  grow_allocs(h, offs);
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_OK(mm_heap_close(h));
  h = heap_reopen(path, 0);
  ASSERT_CLEAN(h);
  mm_heap_info_t i2 = info_of(h);
  ASSERT_EQ(i2.objects, i0.objects + GROW_N);
  ASSERT(i2.file_size > i0.file_size + 2000000);
  for (int i = 0; i < GROW_N; i++) {
    uint64_t sz = grow_sizes[i % 8];
    ASSERT_EQ(mm_heap_valid(h, offs[i], sz), 1);
    unsigned char *q = mm_heap_ptr(h, offs[i]);
    ASSERT_EQ(q[0], i + 1);
    ASSERT_EQ(q[sz - 1], i + 1);
  }
  free(orig);
  ASSERT_OK(mm_heap_close(h));
}

TEST_T(heap_tx_spanning_growth_killed_vanishes, 30) {
  const char *path = mm_test_path("h");
  mm_heap_t *h = heap_create_at(path, 0, 0);
  uint64_t x = 12;
  unsigned char *orig;
  uint64_t d = alloc_fill(h, 3000, &x, &orig);
  ASSERT_OK(mm_heap_set_root(h, d));
  mm_heap_info_t i0 = info_of(h);
  ASSERT_OK(mm_heap_close(h));

  _Atomic int *inside = mm_test_shared_page(4096);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    mm_heap_t *c = NULL;
    if (mm_heap_open(&c, path, NULL) != 0) _exit(3);
    uint64_t r = mm_heap_root(c), o[GROW_N];
    if (mm_heap_tx_begin(c, NULL) != 0) _exit(4);
    if (mm_heap_tx_add(c, r, 3000) != 0) _exit(5);
    memset(mm_heap_ptr(c, r), 0, 3000);
    for (int i = 0; i < GROW_N; i++)
      if (mm_heap_alloc(c, grow_sizes[i % 8], &o[i]) != 0) _exit(6);
    atomic_store(inside, 1);
    for (;;) pause();
  }
  int ok = mm_test_wait_flag(inside, 10);
  kill(pid, SIGKILL);
  int st = mm_test_wait_child(pid, 10);
  if (!ok) FAIL("the child never got inside its transaction (status %d)", st);
  h = heap_reopen(path, 10000);
  ASSERT_CLEAN(h);
  mm_heap_info_t i1 = info_of(h);
  ASSERT_EQ(i1.used, i0.used);
  ASSERT_EQ(i1.objects, i0.objects);
  ASSERT_MEM_EQ(mm_heap_ptr(h, d), orig, 3000);
  free(orig);
  ASSERT_OK(mm_heap_close(h));
}

/* ---- 6, 7. the lock: a holder killed, a waiter timed out ------------------ */

struct lockshm {
  uint64_t d, f;            /* the declared object, an object to free */
  _Atomic uint64_t x;       /* the holder's allocation */
  _Atomic int a_opened, a_go, a_inside;
  _Atomic int b_opened, b_go, b_returned;
  uint64_t objects0; /* live objects after setup */
  double b_t_begin, b_t_ret;
  int b_rc, b_commit_rc, b_restored, b_x_gone, b_f_live, b_root_ok, b_name_ok;
  char msg[256];
};

/* Under ThreadSanitizer, the process that takes the heap's lock over from a
 * killed holder is reported for "unlock of an unlocked mutex": TSan does not
 * seem to model a robust mutex recovered after EOWNERDEAD (with a time-out).
 * Not yet confirmed to be TSan's alone, so these two skip there and run in
 * the plain, ASan and UBSan builds; the torture, whose killed children never
 * exit normally, runs under TSan too. */

#define LOCK_D_AT 100
#define LOCK_D_LEN 1000
#define LOCK_D_SIZE 4096

/* Holder A: opens, waits for the go, begins a transaction that declares and
 * changes part of d, allocates x, frees f, moves the root and the name "f"
 * to x, says it is inside, and sleeps until killed. */
static void holder_child(const char *path, struct lockshm *s) {
  mm_heap_t *h = NULL;
  int rc = mm_heap_open(&h, path, NULL);
  if (rc) {
    snprintf(s->msg, sizeof s->msg, "holder: open: %s", mm_errname(rc));
    _exit(3);
  }
  atomic_store(&s->a_opened, 1);
  while (!atomic_load(&s->a_go)) usleep(200);
  uint64_t x = 0;
  if ((rc = mm_heap_tx_begin(h, NULL)) != 0 ||
      (rc = mm_heap_tx_add(h, s->d + LOCK_D_AT, LOCK_D_LEN)) != 0) {
    snprintf(s->msg, sizeof s->msg, "holder: begin/add: %s", mm_errname(rc));
    _exit(3);
  }
  memset((char *)mm_heap_ptr(h, s->d) + LOCK_D_AT, 0xAA, LOCK_D_LEN);
  if ((rc = mm_heap_alloc(h, 5000, &x)) != 0 || (rc = mm_heap_free(h, s->f)) != 0 ||
      (rc = mm_heap_set_root(h, x)) != 0 || (rc = mm_heap_name_set(h, "f", x)) != 0) {
    snprintf(s->msg, sizeof s->msg, "holder: alloc/free/root/name: %s", mm_errname(rc));
    _exit(3);
  }
  atomic_store(&s->x, x);
  atomic_store(&s->a_inside, 1);
  for (;;) pause();
}

/* Waiter B: opens, waits for the go, then blocks in tx_begin until the
 * holder is killed; records what it sees, commits its own change. */
static void waiter_child(const char *path, struct lockshm *s) {
  mm_heap_t *h = NULL;
  int rc = mm_heap_open(&h, path, NULL);
  if (rc) {
    snprintf(s->msg, sizeof s->msg, "waiter: open: %s", mm_errname(rc));
    _exit(3);
  }
  atomic_store(&s->b_opened, 1);
  while (!atomic_load(&s->b_go)) usleep(200);
  mm_heap_tx_opts_t o = {.timeout_ms = 10000};
  s->b_t_begin = mm_test_now();
  rc = mm_heap_tx_begin(h, &o);
  s->b_t_ret = mm_test_now();
  s->b_rc = rc;
  atomic_store(&s->b_returned, 1);
  if (rc) _exit(0);
  unsigned char *p = mm_heap_ptr(h, s->d);
  s->b_restored = 1;
  for (int i = 0; i < LOCK_D_SIZE; i++)
    if (p[i] != mm_test_byte((uint64_t)i)) s->b_restored = 0;
  rc = mm_heap_tx_add(h, s->d + LOCK_D_AT, LOCK_D_LEN);
  if (rc) {
    snprintf(s->msg, sizeof s->msg, "waiter: tx_add: %s", mm_errname(rc));
    _exit(3);
  }
  memset(p + LOCK_D_AT, 0xBB, LOCK_D_LEN);
  s->b_commit_rc = mm_heap_tx_commit(h);
  uint64_t x = atomic_load(&s->x), nf = 0;
  s->b_x_gone = mm_heap_usable_size(h, x) == 0;
  s->b_f_live = mm_heap_valid(h, s->f, 64) == 1;
  s->b_root_ok = mm_heap_root(h) == s->d;
  s->b_name_ok = mm_heap_name_get(h, "f", &nf) == 0 && nf == s->f;
  mm_heap_close(h);
  _exit(0);
}

/* A heap with d (LOCK_D_SIZE bytes of mm_test_byte) as root and f named "f". */
static void lock_setup(const char *path, struct lockshm *s) {
  mm_heap_t *h = heap_create_at(path, 0, 0);
  ASSERT_OK(mm_heap_alloc(h, LOCK_D_SIZE, &s->d));
  unsigned char *p = mm_heap_ptr(h, s->d);
  for (int i = 0; i < LOCK_D_SIZE; i++) p[i] = mm_test_byte((uint64_t)i);
  ASSERT_OK(mm_heap_zalloc(h, 64, &s->f));
  ASSERT_OK(mm_heap_set_root(h, s->d));
  ASSERT_OK(mm_heap_name_set(h, "f", s->f));
  ASSERT_OK(mm_heap_close(h));
  h = heap_reopen(path, 0); /* counted by a handle with nothing cached */
  s->objects0 = info_of(h).objects;
  ASSERT_OK(mm_heap_close(h));
}

static pid_t spawn(void (*fn)(const char *, struct lockshm *), const char *path,
                   struct lockshm *s) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    fn(path, s);
    _exit(0);
  }
  return pid;
}

TEST_T(heap_tx_lock_holder_killed_waiter_recovers, 40) {
  SKIP_OWNERDEAD_UNDER_TSAN();
  const char *path = mm_test_path("h");
  struct lockshm *s = mm_test_shared_page(4096);
  lock_setup(path, s);
  pid_t a = spawn(holder_child, path, s);
  if (!mm_test_wait_flag(&s->a_opened, 10)) FAIL("holder did not open: %s", s->msg);
  pid_t b = spawn(waiter_child, path, s);
  if (!mm_test_wait_flag(&s->b_opened, 10)) FAIL("waiter did not open: %s", s->msg);
  atomic_store(&s->a_go, 1);
  if (!mm_test_wait_flag(&s->a_inside, 10)) FAIL("holder never got inside: %s", s->msg);
  atomic_store(&s->b_go, 1);
  usleep(300000);
  if (atomic_load(&s->b_returned))
    FAIL("the waiter's tx_begin returned %s while the holder was alive", mm_errname(s->b_rc));
  double t_kill = mm_test_now();
  kill(a, SIGKILL);
  int st = mm_test_wait_child(a, 10);
  ASSERT(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  st = mm_test_wait_child(b, 15);
  if (st == -1) FAIL("the waiter was still blocked 15 s after the holder was killed");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("waiter: status %d: %s", st, s->msg);
  if (s->b_rc != 0) FAIL("the waiter's tx_begin: %s", mm_errname(s->b_rc));
  double waited = s->b_t_ret - t_kill;
  fprintf(stderr, "# the waiter had the lock %.1f ms after the holder's SIGKILL\n", waited * 1e3);
  if (waited > 2.0) FAIL("the waiter got the lock %.2f s after the holder died", waited);
  if (!s->b_restored) FAIL("the waiter saw the dead holder's uncommitted change");
  ASSERT_OK(s->b_commit_rc);
  if (!s->b_x_gone) FAIL("the dead holder's allocation survived");
  if (!s->b_f_live) FAIL("the dead holder's free took effect");
  if (!s->b_root_ok) FAIL("the dead holder's set_root survived");
  if (!s->b_name_ok) FAIL("the dead holder's name_set survived");

  mm_heap_t *h = heap_reopen(path, 10000);
  ASSERT_CLEAN(h);
  unsigned char *p = mm_heap_ptr(h, s->d);
  for (int i = 0; i < LOCK_D_SIZE; i++) {
    int want = i >= LOCK_D_AT && i < LOCK_D_AT + LOCK_D_LEN ? 0xBB : mm_test_byte((uint64_t)i);
    if (p[i] != want) FAIL("byte %d: %02x, want %02x", i, p[i], want);
  }
  mm_heap_info_t in = info_of(h);
  ASSERT_EQ(in.objects, s->objects0);
  ASSERT_OK(mm_heap_close(h));
}

TEST_T(heap_tx_lock_timeout, 30) {
  SKIP_OWNERDEAD_UNDER_TSAN();
  const char *path = mm_test_path("h");
  struct lockshm *s = mm_test_shared_page(4096);
  lock_setup(path, s);
  pid_t a = spawn(holder_child, path, s);
  if (!mm_test_wait_flag(&s->a_opened, 10)) FAIL("holder did not open: %s", s->msg);
  mm_heap_t *h = heap_reopen(path, 150); /* the handle's timeout */
  atomic_store(&s->a_go, 1);
  if (!mm_test_wait_flag(&s->a_inside, 10)) FAIL("holder never got inside: %s", s->msg);

  mm_heap_tx_opts_t o = {.timeout_ms = 100};
  double t0 = mm_test_now();
  int rc = mm_heap_tx_begin(h, &o);
  double dt = mm_test_now() - t0;
  fprintf(stderr, "# tx_begin with timeout_ms 100: %s after %.1f ms\n", mm_errname(rc), dt * 1e3);
  ASSERT_RC(rc, -ETIMEDOUT);
  if (dt < 0.080 || dt >= 2.0) FAIL("timed out after %.1f ms; want 80 ms .. 2 s", dt * 1e3);
  ASSERT_EQ(mm_heap_tx_active(h), 0);

  /* timeout_ms 0 (no opts): the handle's lock_timeout_ms. */
  t0 = mm_test_now();
  rc = mm_heap_tx_begin(h, NULL);
  dt = mm_test_now() - t0;
  ASSERT_RC(rc, -ETIMEDOUT);
  if (dt < 0.120 || dt >= 2.0) FAIL("handle timeout 150 ms: took %.1f ms", dt * 1e3);
  ASSERT_EQ(mm_heap_tx_active(h), 0);
  /* Other calls that need the lock obey the same timeout. */
  mm_heap_info_t in;
  t0 = mm_test_now();
  rc = mm_heap_info(h, &in);
  dt = mm_test_now() - t0;
  ASSERT_RC(rc, -ETIMEDOUT);
  if (dt >= 2.0) FAIL("mm_heap_info timed out after %.1f ms", dt * 1e3);

  kill(a, SIGKILL);
  int st = mm_test_wait_child(a, 10);
  ASSERT(st != -1 && WIFSIGNALED(st));
  mm_heap_tx_opts_t o2 = {.timeout_ms = 5000};
  ASSERT_OK(mm_heap_tx_begin(h, &o2));
  unsigned char *p = mm_heap_ptr(h, s->d);
  for (int i = 0; i < LOCK_D_SIZE; i++)
    if (p[i] != mm_test_byte((uint64_t)i)) FAIL("byte %d not restored after the holder died", i);
  ASSERT_OK(mm_heap_tx_add(h, s->d, 16));
  memset(p, 0xCC, 16);
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_CLEAN(h);
  ASSERT_EQ(mm_heap_usable_size(h, atomic_load(&s->x)), 0);
  ASSERT_EQ(mm_heap_root(h), s->d);
  ASSERT_OK(mm_heap_close(h));
}

/* ---- 5. the crash torture ------------------------------------------------ */

/* One or two children run random transactions on a heap (not created
 * durable) and are SIGKILLed; after every round the parent recovers the
 * heap and checks it. The transactions: transfers between accounts and
 * list pushes, pops, reallocs and node rewrites, each +1 on a counter;
 * most process-crash only, some MM_HEAP_TX_DURABLE. Writes go through
 * tx_add and in place, or mm_heap_tx_write (staged until commit in a
 * durable transaction, so the child keeps its own copy of what it wrote),
 * or both. A durable commit syncs its record (after the whole heap, when
 * it allocated or follows process-crash commits) and leaves it in the log;
 * the process-crash transactions after it leave records too, and outside
 * transactions the children allocate, free and write scratch objects and
 * the root's scratch slots, which some durable records also hold. Recovery
 * after a kill (the same boot) must write again only a commit cut short:
 * an older record written again would bring back a freed or leaked scratch
 * object.
 * Some kills are aimed with src/sys.h's msync hook: a child parked in a
 * durable commit just after one of its msyncs (a record synced and not yet
 * applied, a checkpoint's data synced and not yet its log), and a process
 * that recovers what the dead left, parked after an msync of its
 * mm_heap_open or killed at random, before the parent's check. */

#define NACC 64
#define BAL0 1000
#define NSCR 8 /* scratch slots per child */
#define ROOT_MAGIC 0x544f52545552454full
#define NODE_MAGIC 0x4e4f44454e4f4445ull
#define SCR_MAGIC 0x5343524154434821ull

struct troot {
  uint64_t magic;
  int64_t bal[NACC];
  uint64_t head, count; /* declared together */
  uint64_t committed;   /* +1 in every committed transaction */
  uint64_t scratch[2 * NSCR];
};

struct tnode {
  uint64_t next, magic, seq, size;
  /* then size - 32 bytes of payload */
};

enum {
  PH_IDLE, PH_OPEN, PH_BEGIN, PH_BODY, PH_COMMIT, PH_ABORT, PH_SCRATCH,
  PH_PARK_IN, PH_PARK_OUT, PH_SYNC, PH_PARK_COMMIT, PH_PARK_RECOVERY, PH_RECOVERED, PH__N
};
static const char *const ph_name[PH__N] = {
    "between operations", "in mm_heap_open (recovery)", "in tx_begin",
    "in a transaction's body", "in tx_commit", "in tx_abort",
    "in a non-transactional alloc/free", "parked inside a transaction",
    "parked outside a transaction", "in mm_heap_sync (a checkpoint)",
    "parked in a durable tx_commit, just after one of its msyncs",
    "parked in recovery (mm_heap_open), just after one of its msyncs",
    "a recovering process, after mm_heap_open returned"};
static int ph_in_tx(int ph) {
  return ph == PH_BEGIN || ph == PH_BODY || ph == PH_COMMIT || ph == PH_ABORT ||
         ph == PH_PARK_IN || ph == PH_PARK_COMMIT;
}

struct tchild {
  _Atomic int phase, ready, failed;
  _Atomic int parked_at;  /* the msync it parked after (1 = the first) */
  _Atomic int parked_log; /* ... and it synced the log, not the whole heap */
  _Atomic int open_syncs; /* msyncs its mm_heap_open made (a recovering process) */
  _Atomic uint64_t commits; /* transactions whose commit returned 0 */
  _Atomic uint64_t txs, durable_commits, staged_commits, tx_writes;
  char msg[400];
};
struct tshm {
  struct tchild c[2];
};

static __attribute__((noreturn, format(printf, 2, 3))) void cfail(struct tchild *me,
                                                                  const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(me->msg, sizeof me->msg, fmt, ap);
  va_end(ap);
  atomic_store(&me->failed, 1);
  _exit(3);
}

#define CK(me, call)                                                   \
  do {                                                                 \
    int crc_ = (call);                                                 \
    if (crc_ != 0) cfail((me), "%s: %s", #call, mm_errname(crc_));     \
  } while (0)

#define TXADD(me, h, p, len) CK(me, mm_heap_tx_add_ptr((h), (p), (len)))

static uint64_t pick_size(uint64_t *x) {
  unsigned c = (unsigned)(xs(x) % 100);
  if (c < 75) return 32 + xs(x) % 2017;     /* size classes */
  if (c < 95) return 2049 + xs(x) % 40000;  /* page runs */
  return CHUNK + 1 + xs(x) % (2 * CHUNK);   /* whole chunks */
}

static uint64_t payload_word(uint64_t seq, uint64_t i) {
  return seq ^ (i * 0x9E3779B97F4A7C15ull);
}

static void node_fill(struct tnode *n, uint64_t seq, uint64_t size) {
  n->magic = NODE_MAGIC;
  n->seq = seq;
  n->size = size;
  uint64_t *w = (uint64_t *)(n + 1);
  for (uint64_t i = 0; i < (size - sizeof *n) / 8; i++) w[i] = payload_word(seq, i);
}

/* 0 if intact, else the index of the first bad payload word + 1. */
static uint64_t node_bad(const struct tnode *n) {
  const uint64_t *w = (const uint64_t *)(n + 1);
  for (uint64_t i = 0; i < (n->size - sizeof *n) / 8; i++)
    if (w[i] != payload_word(n->seq, i)) return i + 1;
  return 0;
}

static void ph(struct tchild *me, int p) { atomic_store(&me->phase, p); }

/* Parking on an msync (src/sys.h's hook, in the child): after the at-th
 * msync of a durable commit, or of mm_heap_open, the child stops there
 * until it is killed. The hook runs once the msync has returned, before
 * the library goes on: a commit's record is on disk and its tx_writes not
 * yet applied; a checkpoint has synced the data and not yet the emptied
 * log; recovery has written the records again and not yet checkpointed. */
static struct {
  struct tchild *me;
  int want;    /* PH_COMMIT or PH_OPEN */
  int at, n;   /* park after the at-th msync of that phase; n seen so far */
  int durable; /* the commit under way is durable */
  void *base;  /* the heap's mapping: a sync from there is of the whole heap */
} tpark;

static void tpark_hook(void *arg, void *addr, size_t len, int flags, int result) {
  (void)arg, (void)len, (void)flags, (void)result;
  struct tchild *me = tpark.me;
  if (!me || atomic_load(&me->phase) != tpark.want) return;
  if (tpark.want == PH_COMMIT && !tpark.durable) return;
  if (++tpark.n < tpark.at) return;
  atomic_store(&me->parked_at, tpark.n);
  atomic_store(&me->parked_log, tpark.base && addr != tpark.base);
  ph(me, tpark.want == PH_COMMIT ? PH_PARK_COMMIT : PH_PARK_RECOVERY);
  for (;;) pause();
}

/* How a transaction writes: declared (tx_add) and in place, with
 * mm_heap_tx_write, or either, write by write. */
enum { TW_ADD, TW_WRITE, TW_MIXED };

/* The open transaction, as its child sees it. */
#define TSTAGED 32
struct ttx {
  mm_heap_t *h;
  struct tchild *me;
  uint64_t *x;
  int durable, mode;
  uint64_t soff[TSTAGED], slen[TSTAGED]; /* ranges staged with tx_write */
  int ns;                                /* (more than TSTAGED: all are) */
  uint64_t writes0;
};

static void tbegin(struct ttx *t, mm_heap_t *h, struct tchild *me, uint64_t *x,
                   unsigned flags) {
  mm_heap_tx_opts_t o = {.flags = flags, .timeout_ms = 20000};
  memset(t, 0, sizeof *t);
  t->h = h, t->me = me, t->x = x;
  t->durable = (flags & MM_HEAP_TX_DURABLE) != 0; /* the heap is not durable */
  unsigned c = (unsigned)(xs(x) % 100);
  if (t->durable) /* mostly write-ahead */
    t->mode = c < 45 ? TW_WRITE : c < 75 ? TW_MIXED : TW_ADD;
  else /* tx_write is tx_add and memcpy here */
    t->mode = c < 15 ? TW_WRITE : c < 30 ? TW_MIXED : TW_ADD;
  t->writes0 = atomic_load(&me->tx_writes);
  ph(me, PH_BEGIN);
  CK(me, mm_heap_tx_begin(h, &o));
  ph(me, PH_BODY);
  atomic_fetch_add(&me->txs, 1);
}

/* Does [off, off+len) meet a range this durable transaction staged? Its
 * bytes in the heap are then not what the commit will leave. */
static int tstaged(const struct ttx *t, uint64_t off, uint64_t len) {
  if (t->ns > TSTAGED) return 1;
  for (int i = 0; i < t->ns; i++)
    if (t->soff[i] < off + len && off < t->soff[i] + t->slen[i]) return 1;
  return 0;
}

static void tstage(struct ttx *t, uint64_t off, uint64_t len) {
  atomic_fetch_add(&t->me->tx_writes, 1);
  if (!t->durable) return; /* written at once */
  if (t->ns < TSTAGED) t->soff[t->ns] = off, t->slen[t->ns] = len;
  t->ns++;
}

/* Write len bytes from src (perhaps in the heap, perhaps p itself) at p in
 * the open transaction: with mm_heap_tx_write, or declared and written in
 * place. A staged range is staged again: the staged writes land last, so
 * an in-place write there would be lost. The caller keeps its own copy of
 * what it wrote: a durable transaction's staged bytes reach the heap at
 * commit. */
static void tput(struct ttx *t, void *p, const void *src, uint64_t len) {
  uint64_t off = mm_heap_off(t->h, p);
  int staged = t->mode == TW_WRITE || (t->mode == TW_MIXED && xs(t->x) % 2) ||
               (t->durable && tstaged(t, off, len));
  if (!staged) {
    TXADD(t->me, t->h, p, len);
    memmove(p, src, (size_t)len);
    return;
  }
  CK(t->me, mm_heap_tx_write(t->h, off, src, len));
  tstage(t, off, len);
}

/* Fill a node allocated in this transaction: in place (fresh memory needs
 * no declaring), or, in a durable transaction that stages, with one
 * tx_write when it is small. */
static void tnode_new(struct ttx *t, uint64_t n, uint64_t seq, uint64_t size, uint64_t next) {
  static uint64_t buf[4096 / 8];
  int staged = t->durable && size <= sizeof buf &&
               (t->mode == TW_WRITE || (t->mode == TW_MIXED && xs(t->x) % 2));
  struct tnode *nd = staged ? (struct tnode *)buf : mm_heap_ptr(t->h, n);
  node_fill(nd, seq, size);
  nd->next = next;
  if (!staged) return;
  CK(t->me, mm_heap_tx_write(t->h, n, buf, size));
  tstage(t, n, size);
}

static void tfinish(struct ttx *t) {
  struct tchild *me = t->me;
  if (xs(t->x) % 100 < 8) { /* abort on purpose */
    ph(me, PH_ABORT);
    CK(me, mm_heap_tx_abort(t->h));
    ph(me, PH_IDLE);
    return;
  }
  tpark.n = 0, tpark.durable = t->durable;
  ph(me, PH_COMMIT);
  CK(me, mm_heap_tx_commit(t->h));
  atomic_fetch_add(&me->commits, 1); /* before leaving the commit phase */
  ph(me, PH_IDLE);
  if (t->durable) {
    atomic_fetch_add(&me->durable_commits, 1);
    if (atomic_load(&me->tx_writes) != t->writes0) atomic_fetch_add(&me->staged_commits, 1);
  }
}

/* Inside a transaction, a dead process's transaction has been rolled back:
 * the invariants hold. */
static void tverify(mm_heap_t *h, struct troot *r, struct tchild *me, int walk) {
  int64_t sum = 0;
  for (int i = 0; i < NACC; i++) sum += r->bal[i];
  if (sum != (int64_t)NACC * BAL0) cfail(me, "after tx_begin: sum of balances %lld", (long long)sum);
  if (!walk) return;
  uint64_t n = r->head, len = 0;
  while (n && len <= r->count) {
    struct tnode *nd = mm_heap_ptr(h, n);
    if (nd->magic != NODE_MAGIC) cfail(me, "after tx_begin: node %" PRIu64 " bad magic", len);
    n = nd->next;
    len++;
  }
  if (n != 0 || len != r->count)
    cfail(me, "after tx_begin: list length %" PRIu64 "%s, counter %" PRIu64, len,
          n ? "+" : "", r->count);
}

static void t_transfer(mm_heap_t *h, struct troot *r, struct tchild *me, int k, uint64_t *x,
                       unsigned flags) {
  struct ttx t;
  tbegin(&t, h, me, x, flags);
  tverify(h, r, me, 0);
  /* Own copies: staged writes show in the heap only after the commit. */
  int64_t bal[NACC];
  memcpy(bal, r->bal, sizeof bal);
  uint64_t committed = r->committed + 1;
  tput(&t, &r->committed, &committed, 8);
  int m = 1 + (int)(xs(x) % 6);
  for (int n = 0; n < m; n++) {
    int i = (int)(xs(x) % NACC), j = (i + 1 + (int)(xs(x) % (NACC - 1))) % NACC;
    int64_t amt = (int64_t)(xs(x) % 100);
    bal[i] -= amt;
    tput(&t, &r->bal[i], &bal[i], 8); /* the sum is off until the next write */
    bal[j] += amt;
    tput(&t, &r->bal[j], &bal[j], 8);
  }
  if (xs(x) % 5 == 0) tput(&t, r->bal, bal, sizeof bal); /* all of them again */
  if (t.durable && xs(x) % 2 == 0) {
    /* This child's scratch slots, written as they are: the record holds
     * them now, and t_scratch changes them later outside any transaction.
     * Recovery after a kill (the same boot) writes again only a commit cut
     * short: never this record over those later changes. */
    tput(&t, &r->scratch[k * NSCR], &r->scratch[k * NSCR], NSCR * 8);
  }
  tfinish(&t);
}

static void t_list(mm_heap_t *h, struct troot *r, struct tchild *me, uint64_t *x,
                   unsigned flags) {
  static uint64_t buf[4096 / 8];
  struct ttx t;
  tbegin(&t, h, me, x, flags);
  tverify(h, r, me, xs(x) % 8 == 0);
  uint64_t hc[2] = {r->head, r->count}, committed = r->committed + 1; /* own copies */
  tput(&t, &r->committed, &committed, 8);
  int m = 1 + (int)(xs(x) % 3);
  for (int k = 0; k < m; k++) {
    unsigned c = (unsigned)(xs(x) % 100);
    struct tnode *hd = hc[0] ? mm_heap_ptr(h, hc[0]) : NULL;
    /* A node with staged writes is neither freed nor moved in this
     * transaction: the writes would land in a freed block. */
    int hd_staged = hd && tstaged(&t, hc[0], sizeof *hd);
    if (hc[1] < 4 || (hc[1] < 96 && c < 45)) { /* push */
      uint64_t size = pick_size(x), n;
      if (c % 4 == 0)
        CK(me, mm_heap_zalloc(h, size, &n));
      else
        CK(me, mm_heap_alloc(h, size, &n));
      tnode_new(&t, n, xs(x), size, hc[0]);
      hc[0] = n;
      hc[1]++;
    } else if (c < 52 && hd && !hd_staged && hd->size <= CHUNK) {
      /* Realloc the head node. Declare the old node first: resized in
       * place, its bytes are rewritten; moved, the new block is the
       * transaction's own and the old one is freed at commit. */
      uint64_t n = hc[0], size = pick_size(x);
      struct tnode *nd = hd;
      uint64_t next = nd->next;
      TXADD(me, h, nd, nd->size);
      CK(me, mm_heap_realloc(h, &n, size));
      nd = mm_heap_ptr(h, n);
      if (nd->next != next || nd->magic != NODE_MAGIC) cfail(me, "realloc lost the node's header");
      node_fill(nd, xs(x), size);
      hc[0] = n;
    } else if (c < 60 && hd && !hd_staged) {
      /* Rewrite a node near the head with a new seq and payload, in one
       * write (staged in a durable transaction that stages). Not a node
       * staged in this transaction: its bytes are not in the heap yet. */
      uint64_t n = hc[0];
      for (uint64_t s = xs(x) % 4; s; s--) {
        uint64_t nx = MM_HEAP_PTR(h, n, struct tnode)->next;
        if (!nx || tstaged(&t, nx, sizeof(struct tnode))) break;
        n = nx;
      }
      struct tnode *nd = mm_heap_ptr(h, n), *b = (struct tnode *)buf;
      if (nd->size > sizeof buf || tstaged(&t, n, nd->size)) continue;
      node_fill(b, xs(x), nd->size);
      b->next = nd->next;
      tput(&t, nd, b, nd->size);
    } else if (hd && !hd_staged) { /* pop */
      uint64_t n = hc[0];
      if (hd->magic != NODE_MAGIC) cfail(me, "pop: bad magic");
      hc[0] = hd->next;
      hc[1]--;
      CK(me, mm_heap_free(h, n));
    }
  }
  tput(&t, &r->head, hc, sizeof hc);
  if (hc[0]) {
    CK(me, mm_heap_name_set(h, "head", hc[0]));
  } else {
    int rc = mm_heap_name_del(h, "head");
    if (rc && rc != -ENOENT) cfail(me, "name_del: %s", mm_errname(rc));
  }
  tfinish(&t);
}

static void t_scratch(mm_heap_t *h, struct troot *r, struct tchild *me, int k, uint64_t *x) {
  ph(me, PH_SCRATCH);
  int s = k * NSCR + (int)(xs(x) % NSCR);
  uint64_t off = r->scratch[s];
  if (!off) {
    uint64_t size = pick_size(x);
    CK(me, mm_heap_alloc(h, size, &off));
    uint64_t *w = mm_heap_ptr(h, off);
    w[0] = SCR_MAGIC;
    w[1] = size;
    ((unsigned char *)w)[size - 1] = 0x5C;
    r->scratch[s] = off; /* a kill before this line leaks it */
  } else {
    uint64_t *w = mm_heap_ptr(h, off);
    if (w[0] != SCR_MAGIC) cfail(me, "scratch object at %" PRIu64 ": bad magic", off);
    r->scratch[s] = 0; /* a kill after this line leaks it */
    CK(me, mm_heap_free(h, off));
  }
  ph(me, PH_IDLE);
}

/* park: 1 inside a transaction, 2 outside, 3 in a durable commit after
 * one of its msyncs (chosen at random, the first to the third). */
static __attribute__((noreturn)) void torture_child(const char *path, struct tchild *me,
                                                    int k, uint64_t seed, int park) {
  ph(me, PH_OPEN);
  mm_heap_t *h = NULL;
  mm_heap_opts_t o = {.lock_timeout_ms = 20000};
  CK(me, mm_heap_open(&h, path, &o));
  uint64_t roff = mm_heap_root(h);
  if (!roff) cfail(me, "no root after open");
  struct troot *r = mm_heap_ptr(h, roff);
  if (r->magic != ROOT_MAGIC) cfail(me, "root magic");
  ph(me, PH_IDLE);
  atomic_store(&me->ready, 1);
  uint64_t x = seed | 1;
  long park_at = park == 1 || park == 2 ? (long)(xs(&x) % 30) : -1;
  if (park == 3) {
    tpark.me = me, tpark.want = PH_COMMIT, tpark.at = 1 + (int)(xs(&x) % 3);
    tpark.base = mm_heap_base(h);
    mm__sys_msync_hook(tpark_hook, NULL);
  }
  for (long n = 0;; n++) {
    if (n == park_at) {
      if (park == 1) { /* half a transfer and a pushed node, then wait */
        struct ttx t;
        tbegin(&t, h, me, &x, 0);
        TXADD(me, h, &r->committed, 8);
        r->committed++;
        TXADD(me, h, &r->bal[0], 8);
        r->bal[0] -= 500;
        TXADD(me, h, &r->head, 16);
        uint64_t nd;
        CK(me, mm_heap_alloc(h, 100, &nd));
        node_fill(mm_heap_ptr(h, nd), 1, 100);
        MM_HEAP_PTR(h, nd, struct tnode)->next = r->head;
        r->head = nd;
        r->count++;
        CK(me, mm_heap_name_set(h, "head", nd));
        ph(me, PH_PARK_IN);
      } else {
        ph(me, PH_PARK_OUT);
      }
      for (;;) pause();
    }
    unsigned c = (unsigned)(xs(&x) % 100);
    if (c < 33)
      t_transfer(h, r, me, k, &x, 0);
    else if (c < 44)
      t_transfer(h, r, me, k, &x, MM_HEAP_TX_DURABLE);
    else if (c < 71)
      t_list(h, r, me, &x, 0);
    else if (c < 79)
      t_list(h, r, me, &x, MM_HEAP_TX_DURABLE);
    else if (c < 80) {
      ph(me, PH_SYNC);
      CK(me, mm_heap_sync(h));
      ph(me, PH_IDLE);
    } else {
      t_scratch(h, r, me, k, &x);
    }
  }
}

/* A process that opens the heap after the kill, so recovers it (the log may
 * hold commit records and a dead transaction), and is killed: parked after
 * the at-th msync of its mm_heap_open, or, with at 0, whenever the kill
 * comes. */
static __attribute__((noreturn)) void torture_recoverer(const char *path, struct tchild *me,
                                                        int at) {
  if (at) {
    tpark.me = me, tpark.want = PH_OPEN, tpark.at = at, tpark.n = 0;
    mm__sys_msync_hook(tpark_hook, NULL);
  }
  ph(me, PH_OPEN);
  mm_heap_t *h = NULL;
  mm_heap_opts_t o = {.lock_timeout_ms = 20000};
  CK(me, mm_heap_open(&h, path, &o));
  atomic_store(&me->open_syncs, tpark.n);
  ph(me, PH_RECOVERED);
  atomic_store(&me->ready, 1);
  for (;;) pause();
}

/* Allocations undone after a random history: plain allocs and frees of
 * every size (so free space is split and coalesced), then a transaction
 * that allocates, frees and declares, aborted or committed; the heap must
 * check clean after every round, and an abort must leave used/objects as
 * they were. Deterministic (fixed seed). */
TEST_T(heap_tx_random_history_abort_and_commit_check_clean, 60) {
  mm_heap_t *h = heap_create_at(mm_test_path("h"), 0, 0);
  enum { SLOTS = 48 };
  uint64_t live[SLOTS] = {0}, lsz[SLOTS] = {0}, x = 0xC0FFEE;
  for (int round = 0; round < 400; round++) {
    for (int k = 0; k < 3; k++) { /* churn outside transactions */
      int sl = (int)(xs(&x) % SLOTS);
      if (live[sl]) {
        ASSERT_OK(mm_heap_free(h, live[sl]));
        live[sl] = 0;
      } else {
        lsz[sl] = pick_size(&x);
        ASSERT_OK(mm_heap_alloc(h, lsz[sl], &live[sl]));
        memset(mm_heap_ptr(h, live[sl]), 0x5A, (size_t)lsz[sl]);
      }
    }
    uint64_t nf = 0;
    int crc = mm_heap_check(h, check_report, NULL, &nf);
    if (crc != 0 || nf != 0)
      FAIL("round %d, after plain allocs and frees: mm_heap_check: %s", round, mm_errname(crc));
    mm_heap_info_t i0 = info_of(h);
    int abort_it = (int)(xs(&x) % 2), nnew = 1 + (int)(xs(&x) % 4), freed = -1, declared = -1;
    uint64_t nw[4], nsz[4];
    unsigned char saved[256];
    ASSERT_OK(mm_heap_tx_begin(h, NULL));
    for (int i = 0; i < nnew; i++) {
      nsz[i] = pick_size(&x);
      ASSERT_OK(mm_heap_alloc(h, nsz[i], &nw[i]));
      memset(mm_heap_ptr(h, nw[i]), 0xA5, (size_t)nsz[i]);
    }
    int sl = (int)(xs(&x) % SLOTS);
    if (live[sl]) { /* declare and change a live object's first bytes */
      declared = sl;
      uint64_t len = lsz[sl] < sizeof saved ? lsz[sl] : sizeof saved;
      memcpy(saved, mm_heap_ptr(h, live[sl]), (size_t)len);
      declare_and_scribble(h, live[sl], 0, len, &x);
    }
    sl = (int)(xs(&x) % SLOTS);
    if (live[sl] && sl != declared) { /* free one, in the transaction */
      freed = sl;
      ASSERT_OK(mm_heap_free(h, live[sl]));
    }
    if (abort_it)
      ASSERT_EQ(mm_heap_tx_abort(h), 0);
    else
      ASSERT_OK(mm_heap_tx_commit(h));
    crc = mm_heap_check(h, check_report, NULL, &nf);
    if (crc != 0 || nf != 0)
      FAIL("round %d (after %s of a transaction with %d allocation(s) of %" PRIu64
           "%s bytes): mm_heap_check: %s", round, abort_it ? "abort" : "commit", nnew,
           nsz[0], nnew > 1 ? ", ..." : "", mm_errname(crc));
    if (abort_it) {
      for (int i = 0; i < nnew; i++) ASSERT_EQ(mm_heap_usable_size(h, nw[i]), 0);
      if (freed >= 0) ASSERT(mm_heap_usable_size(h, live[freed]) >= lsz[freed]);
      if (declared >= 0) {
        uint64_t len = lsz[declared] < sizeof saved ? lsz[declared] : sizeof saved;
        ASSERT_MEM_EQ(mm_heap_ptr(h, live[declared]), saved, len);
      }
      mm_heap_info_t i1 = info_of(h);
      ASSERT_EQ(i1.used, i0.used);
      ASSERT_EQ(i1.objects, i0.objects);
    } else {
      if (freed >= 0) {
        ASSERT_EQ(mm_heap_usable_size(h, live[freed]), 0);
        live[freed] = 0;
      }
      for (int i = 0; i < nnew; i++) { /* keep them, or free them outside */
        ASSERT(mm_heap_usable_size(h, nw[i]) >= nsz[i]);
        int to = (int)(xs(&x) % SLOTS);
        if (!live[to]) {
          live[to] = nw[i];
          lsz[to] = nsz[i];
        } else {
          ASSERT_OK(mm_heap_free(h, nw[i]));
        }
      }
    }
  }
  ASSERT_CLEAN(h);
  ASSERT_OK(mm_heap_close(h));
}

static long torture_kills(void) {
  const char *e = getenv("MM_HEAP_TORTURE_KILLS");
  long k = e ? atol(e) : 50;
  return k > 0 ? k : 50;
}

struct tstate {
  uint64_t roff;
  uint64_t committed;    /* the root's counter after the last check */
  uint64_t leaks_allowed;
  uint64_t objects_slack; /* objects the library keeps besides ours */
  uint64_t max_excess;
};

/* After every kill: the heap opens (recovering), checks clean, and every
 * invariant of the data holds. */
static void torture_verify(const char *path, struct tstate *ts, uint64_t commits,
                           int in_commit, int round, const char *where) {
  mm_heap_t *h = heap_reopen(path, 10000);
  uint64_t nf = 0;
  int crc = mm_heap_check(h, check_report, NULL, &nf);
  if (crc != 0 || nf != 0)
    FAIL("round %d, after a kill %s: mm_heap_check: %s, %" PRIu64 " problem(s)", round,
         where, mm_errname(crc), nf);
  mm_heap_info_t in = info_of(h);
  ASSERT_EQ(mm_heap_root(h), ts->roff);
  struct troot *r = mm_heap_ptr(h, ts->roff);
  ASSERT_EQ(r->magic, ROOT_MAGIC);
  int64_t sum = 0;
  for (int i = 0; i < NACC; i++) sum += r->bal[i];
  if (sum != (int64_t)NACC * BAL0)
    FAIL("round %d: sum of balances %lld, want %lld", round, (long long)sum,
         (long long)NACC * BAL0);
  /* Exactly the transactions whose commit returned are in, plus perhaps
   * one whose commit was under way when its process died. */
  uint64_t got = r->committed - ts->committed;
  if (got < commits || got > commits + (uint64_t)in_commit)
    FAIL("round %d: %" PRIu64 " transactions committed in the file, but %" PRIu64
         " commits returned (%d process(es) killed inside tx_commit)", round, got, commits,
         in_commit);
  ts->committed = r->committed;
  uint64_t n = r->head, len = 0;
  while (n && len <= r->count) {
    if (mm_heap_valid(h, n, sizeof(struct tnode)) != 1)
      FAIL("round %d: list node %" PRIu64 " at %" PRIu64 " is not a live allocation", round,
           len, n);
    struct tnode *nd = mm_heap_ptr(h, n);
    if (nd->magic != NODE_MAGIC) FAIL("round %d: list node %" PRIu64 ": bad magic", round, len);
    if (mm_heap_valid(h, n, nd->size) != 1 || mm_heap_usable_size(h, n) < nd->size)
      FAIL("round %d: list node %" PRIu64 " of %" PRIu64 " bytes: usable size %" PRIu64,
           round, len, nd->size, mm_heap_usable_size(h, n));
    uint64_t bad = node_bad(nd);
    if (bad) FAIL("round %d: list node %" PRIu64 ": payload word %" PRIu64 " damaged", round, len, bad - 1);
    n = nd->next;
    len++;
  }
  if (n != 0 || len != r->count)
    FAIL("round %d: list length %" PRIu64 "%s, counter %" PRIu64, round, len, n ? "+" : "",
         r->count);
  uint64_t hn = 0;
  int rc = mm_heap_name_get(h, "head", &hn);
  if (r->head ? (rc != 0 || hn != r->head) : rc != -ENOENT)
    FAIL("round %d: name \"head\" -> %s %" PRIu64 ", list head %" PRIu64, round,
         mm_errname(rc), hn, r->head);
  uint64_t reachable = 1 + r->count;
  for (int s = 0; s < 2 * NSCR; s++) {
    uint64_t off = r->scratch[s];
    if (!off) continue;
    reachable++;
    uint64_t *w = mm_heap_ptr(h, off);
    if (mm_heap_valid(h, off, 16) != 1 || w[0] != SCR_MAGIC || mm_heap_valid(h, off, w[1]) != 1 ||
        ((unsigned char *)w)[w[1] - 1] != 0x5C)
      FAIL("round %d: scratch slot %d (%" PRIu64 ") damaged", round, s, off);
  }
  /* Allocations of a transaction never leak; a plain alloc/free cut short
   * by the kill may. */
  if (in.objects < reachable)
    FAIL("round %d: info says %" PRIu64 " objects, %" PRIu64 " are reachable", round,
         in.objects, reachable);
  uint64_t excess = in.objects - reachable;
  if (excess > ts->max_excess) ts->max_excess = excess;
  if (excess > ts->objects_slack + ts->leaks_allowed)
    FAIL("round %d: %" PRIu64 " live objects not reachable; at most %" PRIu64
         " could have leaked (kills inside plain alloc/free) + %" PRIu64
         " the library's own: transactional allocations leaked", round, excess,
         ts->leaks_allowed, ts->objects_slack);
  if (in.handles > 1) /* this handle's, if it has taken one yet */
    FAIL("round %d: %u handles hold cache slots; the dead ones' were not taken back",
         round, in.handles);
  ASSERT_OK(mm_heap_close(h));
}

TEST_T(heap_tx_torture, 60) {
  const char *path = mm_test_path("torture");
  long kills = torture_kills();
  uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 20;
  if (getenv("MM_HEAP_TORTURE_SEED")) seed = strtoull(getenv("MM_HEAP_TORTURE_SEED"), NULL, 0);
  if (!seed) seed = 1;
  fprintf(stderr, "# heap_tx_torture: %ld kills, seed %" PRIu64 " (MM_HEAP_TORTURE_SEED)\n",
          kills, seed);
  uint64_t x = seed;

  struct tstate ts = {0};
  {
    mm_heap_t *h = heap_create_at(path, 0, 0);
    ASSERT_OK(mm_heap_zalloc(h, sizeof(struct troot), &ts.roff));
    struct troot *r = mm_heap_ptr(h, ts.roff);
    r->magic = ROOT_MAGIC;
    for (int i = 0; i < NACC; i++) r->bal[i] = BAL0;
    ASSERT_OK(mm_heap_set_root(h, ts.roff));
    /* One node, named, so the name directory exists from the start. */
    uint64_t n;
    ASSERT_OK(mm_heap_alloc(h, 64, &n));
    node_fill(mm_heap_ptr(h, n), 7, 64);
    MM_HEAP_PTR(h, n, struct tnode)->next = 0;
    r->head = n;
    r->count = 1;
    ASSERT_OK(mm_heap_name_set(h, "head", n));
    ASSERT_OK(mm_heap_close(h));
    /* Counted from a handle with no cache, as after every kill. */
    h = heap_reopen(path, 0);
    mm_heap_info_t in = info_of(h);
    ASSERT(in.objects >= 2);
    ts.objects_slack = in.objects - 2 + 2; /* the library's own now, plus 2 */
    ASSERT_OK(mm_heap_close(h));
  }
  struct tshm *shm = mm_test_shared_page(sizeof(struct tshm));
  unsigned long hist[PH__N] = {0}, parked_at[4] = {0}, parked_log = 0, recovered_syncs = 0;
  long killed = 0, rounds = 0;
  uint64_t commits_total = 0, txs_total = 0, durable_total = 0, staged_total = 0, writes_total = 0;
  double t_start = mm_test_now();
  while (killed < kills) {
    int round = (int)rounds++;
    memset(shm, 0, sizeof *shm);
    int nchild = (round % 4 == 1 && kills - killed >= 2) ? 2 : 1;
    /* Parked: 1 in a transaction, 2 outside, 3 in a durable commit after
     * one of its msyncs. */
    int park = nchild == 1 ? (round % 10 == 3 ? 1 : round % 10 == 7 ? 2
                              : round % 10 == 5 || round % 10 == 9 ? 3 : 0) : 0;
    int early = !park && xs(&x) % 8 == 0; /* kill during open / recovery */
    pid_t pid[2];
    for (int k = 0; k < nchild; k++) {
      uint64_t cseed = xs(&x);
      fflush(NULL);
      pid[k] = fork();
      if (pid[k] < 0) FAIL("fork: %s", strerror(errno));
      if (pid[k] == 0) torture_child(path, &shm->c[k], k, cseed, park);
    }
    if (park) {
      int want = park == 1 ? PH_PARK_IN : park == 2 ? PH_PARK_OUT : PH_PARK_COMMIT;
      double t0 = mm_test_now();
      while (atomic_load(&shm->c[0].phase) != want) {
        if (atomic_load(&shm->c[0].failed) || mm_test_now() - t0 > 20) break;
        usleep(200);
      }
    } else if (!early) {
      double t0 = mm_test_now();
      for (int k = 0; k < nchild; k++)
        while (!atomic_load(&shm->c[k].ready) && !atomic_load(&shm->c[k].failed) &&
               mm_test_now() - t0 < 20)
          usleep(100);
      usleep((useconds_t)(xs(&x) % 20001));
    } else {
      usleep((useconds_t)(xs(&x) % 2001));
    }
    for (int k = 0; k < nchild; k++) {
      if (k) usleep((useconds_t)(xs(&x) % 3001));
      kill(pid[k], SIGKILL);
    }
    int in_commit = 0;
    uint64_t commits = 0;
    char where[256] = "";
    for (int k = 0; k < nchild; k++) {
      int st = 0;
      while (waitpid(pid[k], &st, 0) < 0 && errno == EINTR) {
      }
      struct tchild *c = &shm->c[k];
      if (atomic_load(&c->failed))
        FAIL("round %d: child %d failed: %s", round, k, c->msg);
      if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        FAIL("round %d: child %d ended with status %d before the kill", round, k, st);
      int p = atomic_load(&c->phase);
      hist[p]++;
      snprintf(where + strlen(where), sizeof where - strlen(where), "%s%s", k ? " and " : "",
               ph_name[p]);
      killed++;
      in_commit += p == PH_COMMIT || p == PH_PARK_COMMIT;
      if (p == PH_PARK_COMMIT) {
        parked_at[atomic_load(&c->parked_at) & 3]++;
        parked_log += atomic_load(&c->parked_log);
      }
      if (p == PH_SCRATCH) ts.leaks_allowed++;
      commits += atomic_load(&c->commits);
      txs_total += atomic_load(&c->txs);
      durable_total += atomic_load(&c->durable_commits);
      staged_total += atomic_load(&c->staged_commits);
      writes_total += atomic_load(&c->tx_writes);
    }
    commits_total += commits;
    if (round % 3 == 2 && killed < kills) {
      /* Another process recovers the heap the dead left (its log may hold
       * commit records and a transaction cut short) and is killed in turn:
       * parked after the first or second msync of its mm_heap_open, or
       * whenever the kill comes. It commits nothing. */
      struct tchild *c = &shm->c[0];
      memset(c, 0, sizeof *c);
      int at = (int)(xs(&x) % 3);
      fflush(NULL);
      pid_t rp = fork();
      if (rp < 0) FAIL("fork: %s", strerror(errno));
      if (rp == 0) torture_recoverer(path, c, at);
      double t0 = mm_test_now();
      if (at)
        while (atomic_load(&c->phase) != PH_PARK_RECOVERY && !atomic_load(&c->ready) &&
               !atomic_load(&c->failed) && mm_test_now() - t0 < 20)
          usleep(100);
      else
        usleep((useconds_t)(xs(&x) % 3001));
      kill(rp, SIGKILL);
      int st = 0;
      while (waitpid(rp, &st, 0) < 0 && errno == EINTR) {
      }
      if (atomic_load(&c->failed)) FAIL("round %d: the recovering process failed: %s", round, c->msg);
      if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        FAIL("round %d: the recovering process ended with status %d before the kill", round, st);
      int p = atomic_load(&c->phase);
      hist[p]++;
      recovered_syncs += p == PH_RECOVERED && atomic_load(&c->open_syncs) > 0;
      snprintf(where + strlen(where), sizeof where - strlen(where),
               ", then a recovering process %s", ph_name[p]);
      killed++;
    }
    torture_verify(path, &ts, commits, in_commit, round, where);
  }
  unsigned long in_tx = 0, out_tx = 0;
  for (int p = 0; p < PH__N; p++) {
    if (ph_in_tx(p))
      in_tx += hist[p];
    else
      out_tx += hist[p];
  }
  fprintf(stderr, "# heap_tx_torture: %ld kills in %ld rounds, %.1f s; %" PRIu64
          " transactions begun, %" PRIu64 " commits returned (%" PRIu64 " durable, %" PRIu64
          " of them with tx_write; %" PRIu64 " tx_writes in all)\n", killed, rounds,
          mm_test_now() - t_start, txs_total, commits_total, durable_total, staged_total,
          writes_total);
  fprintf(stderr, "# kills mid-transaction: %lu, outside a transaction: %lu\n", in_tx, out_tx);
  for (int p = 0; p < PH__N; p++)
    if (hist[p]) fprintf(stderr, "#   %5lu %s\n", hist[p], ph_name[p]);
  if (hist[PH_PARK_COMMIT])
    fprintf(stderr, "# parked in a durable commit after its msync 1, 2, 3: %lu, %lu, %lu; after"
            " a sync of the log (a record or an undo entry): %lu, of the whole heap: %lu\n",
            parked_at[1], parked_at[2], parked_at[3], parked_log,
            hist[PH_PARK_COMMIT] - parked_log);
  if (hist[PH_RECOVERED])
    fprintf(stderr, "# recovering processes that finished mm_heap_open: %lu, %lu of them after"
            " syncing (a checkpoint in recovery)\n", hist[PH_RECOVERED], recovered_syncs);
  fprintf(stderr, "# unreachable live objects at most %" PRIu64 " (%" PRIu64
          " kills inside plain alloc/free)\n", ts.max_excess, ts.leaks_allowed);
  if (kills >= 10) {
    ASSERT(in_tx > 0);
    ASSERT(out_tx > 0);
  }
  ASSERT(commits_total > 0);
}

/* The torture's time limit follows its number of kills. */
__attribute__((constructor)) static void torture_timeout(void) {
  long k = torture_kills();
  long t = 60 + k / 4;
  test_rec_heap_tx_torture.timeout_s = (int)(t > 100000 ? 100000 : t);
}
