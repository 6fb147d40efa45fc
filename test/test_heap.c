/*
 * test_heap.c - the persistent heap: allocation and reuse across every size
 * kind, a churn against a shadow table, names, reopen, transactions and
 * recovery after a dead process, durable sync order, full disk and a full
 * log. (test_heap_adv.c and test_heap_tx.c hold the adversarial and the
 * crash-torture tests.)
 */
#include "test.h"

#include <pthread.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys.h"

static const mm_heap_opts_t small_opts = {
    .flags = MM_HEAP_CREATE, .chunk_size = 65536, .log_size = 65536};

static mm_heap_t *make(const char *name, const mm_heap_opts_t *o) {
  mm_heap_t *h;
  int rc = mm_heap_open(&h, mm_test_path(name), o ? o : &small_opts);
  if (rc) FAIL("mm_heap_open: %s", mm_errname(rc));
  return h;
}

static void fillp(mm_heap_t *h, uint64_t off, uint64_t n, uint64_t seed) {
  unsigned char *p = mm_heap_ptr(h, off);
  for (uint64_t i = 0; i < n; i++) p[i] = mm_test_byte(i * 7 + seed);
}

static void checkp(mm_heap_t *h, uint64_t off, uint64_t n, uint64_t seed) {
  const unsigned char *p = mm_heap_ptr(h, off);
  for (uint64_t i = 0; i < n; i++)
    if (p[i] != mm_test_byte(i * 7 + seed))
      FAIL("object %#llx byte %llu differs", (unsigned long long)off, (unsigned long long)i);
}

static void print_finding(void *arg, int code, uint64_t off, const char *msg) {
  (void)arg;
  fprintf(stderr, "  finding %s at %#llx: %s\n", mm_errname(code), (unsigned long long)off, msg);
}

static void assert_clean(mm_heap_t *h) {
  uint64_t n = 99;
  int rc = mm_heap_check(h, print_finding, NULL, &n);
  if (rc || n) FAIL("check: %s, %llu findings", mm_errname(rc), (unsigned long long)n);
  mm_heap_info_t in;
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.used + in.free + in.overhead, in.file_size);
}

TEST(heap_create_reopen_keeps_header_and_objects) {
  mm_heap_t *h = make("h", NULL);
  mm_heap_info_t in;
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.chunk_size, 65536);
  ASSERT_EQ(in.version, 1);
  ASSERT_EQ(in.used, 0);
  ASSERT_EQ(in.objects, 0);
  uint64_t a;
  ASSERT_OK(mm_heap_alloc(h, 100, &a));
  ASSERT_EQ(a % MM_HEAP_ALIGN, 0);
  fillp(h, a, 100, 1);
  ASSERT_OK(mm_heap_set_root(h, a));
  unsigned char uuid[16];
  memcpy(uuid, in.uuid, 16);
  ASSERT_OK(mm_heap_close(h));
  ASSERT_OK(mm_heap_open(&h, mm_test_path("h"), NULL));
  ASSERT_EQ(mm_heap_root(h), a);
  checkp(h, a, 100, 1);
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT(!memcmp(in.uuid, uuid, 16));
  ASSERT_EQ(in.objects, 1);
  ASSERT_EQ(in.used, 112); /* class 112 */
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

TEST(heap_every_size_kind_allocates_frees_and_reuses) {
  mm_heap_t *h = make("h", NULL);
  uint64_t sizes[] = {1, 16, 17, 255, 256, 257, 2048, 2049, 4096, 20000,
                      60000, 65536, 200000, 1 << 20};
  uint64_t off[sizeof sizes / sizeof sizes[0]];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    ASSERT_OK(mm_heap_alloc(h, sizes[i], &off[i]));
    ASSERT(mm_heap_usable_size(h, off[i]) >= sizes[i]);
    ASSERT(mm_heap_valid(h, off[i], sizes[i]));
    fillp(h, off[i], sizes[i], i);
  }
  assert_clean(h);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) checkp(h, off[i], sizes[i], i);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    ASSERT_OK(mm_heap_free(h, off[i]));
    ASSERT_EQ(mm_heap_usable_size(h, off[i]), 0);
    ASSERT_RC(mm_heap_free(h, off[i]), -EINVAL);
  }
  assert_clean(h);
  mm_heap_info_t in;
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.used, 0);
  uint64_t size_before = in.file_size;
  /* Freed memory is reused: the same sizes again do not grow the file. */
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    ASSERT_OK(mm_heap_alloc(h, sizes[i], &off[i]));
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.file_size, size_before);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

TEST_T(heap_churn_matches_a_shadow_table, 60) {
  mm_heap_t *h = make("h", NULL);
  enum { N = 4000 };
  static uint64_t off[N], len[N];
  uint64_t x = 12345;
  for (int i = 0; i < 200000; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    int k = (int)((x >> 33) % N);
    if (off[k]) {
      checkp(h, off[k], len[k], (uint64_t)k);
      ASSERT_OK(mm_heap_free(h, off[k]));
      off[k] = 0;
    } else {
      uint64_t r = x >> 40;
      len[k] = r % 16 == 0 ? 1 + r % 300000 : 1 + r % 600;
      ASSERT_OK(mm_heap_alloc(h, len[k], &off[k]));
      fillp(h, off[k], len[k], (uint64_t)k);
    }
  }
  uint64_t used = 0, objs = 0;
  for (int k = 0; k < N; k++)
    if (off[k]) {
      checkp(h, off[k], len[k], (uint64_t)k);
      used += mm_heap_usable_size(h, off[k]);
      objs++;
    }
  mm_heap_info_t in;
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.used, used);
  ASSERT_EQ(in.objects, objs);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
  /* Closing flushed the cache: reopened, nothing is cached. */
  ASSERT_OK(mm_heap_open(&h, mm_test_path("h"), NULL));
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.cached, 0);
  ASSERT_EQ(in.used, used);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

static int count_names(void *arg, const char *name, uint64_t off) {
  (void)name;
  (void)off;
  (*(int *)arg)++;
  return 0;
}

TEST(heap_names_set_get_delete_list_and_persist) {
  mm_heap_t *h = make("h", NULL);
  char name[64];
  for (int i = 0; i < 500; i++) {
    snprintf(name, sizeof name, "object-%d", i);
    ASSERT_OK(mm_heap_name_set(h, name, (uint64_t)(i + 1) * 16 + 73728 + 65536));
  }
  ASSERT_OK(mm_heap_name_set(h, "object-7", 0)); /* rebind */
  ASSERT_OK(mm_heap_name_del(h, "object-9"));
  ASSERT_RC(mm_heap_name_del(h, "object-9"), -ENOENT);
  ASSERT_OK(mm_heap_close(h));
  ASSERT_OK(mm_heap_open(&h, mm_test_path("h"), NULL));
  uint64_t v;
  ASSERT_OK(mm_heap_name_get(h, "object-499", &v));
  ASSERT_EQ(v, 500 * 16 + 73728 + 65536);
  ASSERT_OK(mm_heap_name_get(h, "object-7", &v));
  ASSERT_EQ(v, 0);
  ASSERT_RC(mm_heap_name_get(h, "object-9", &v), -ENOENT);
  int n = 0;
  ASSERT_OK(mm_heap_name_list(h, count_names, &n));
  ASSERT_EQ(n, 499);
  mm_heap_info_t in;
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.names, 499);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

TEST(heap_tx_abort_restores_ranges_and_undoes_allocations) {
  mm_heap_t *h = make("h", NULL);
  uint64_t a, b;
  ASSERT_OK(mm_heap_alloc(h, 4000, &a));
  fillp(h, a, 4000, 3);
  mm_heap_info_t before, after;
  ASSERT_OK(mm_heap_info(h, &before));
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_RC(mm_heap_tx_begin(h, NULL), -EBUSY);
  ASSERT_OK(mm_heap_tx_add(h, a + 10, 100));
  ASSERT_OK(mm_heap_tx_add(h, a + 50, 1000));
  memset(mm_heap_ptr(h, a), 0xEE, 1050);
  ASSERT_OK(mm_heap_alloc(h, 300000, &b));
  ASSERT_OK(mm_heap_name_set(h, "b", b));
  ASSERT_OK(mm_heap_free(h, a)); /* deferred: the abort drops it */
  ASSERT(mm_heap_usable_size(h, a) > 0);
  ASSERT_OK(mm_heap_tx_abort(h));
  /* Bytes 0..9 were not declared: they keep the new value. */
  const unsigned char *p = mm_heap_ptr(h, a);
  for (int i = 0; i < 10; i++) ASSERT_EQ(p[i], 0xEE);
  for (uint64_t i = 10; i < 4000; i++) ASSERT_EQ(p[i], mm_test_byte(i * 7 + 3));
  ASSERT_EQ(mm_heap_usable_size(h, b), 0);
  uint64_t v;
  ASSERT_RC(mm_heap_name_get(h, "b", &v), -ENOENT);
  ASSERT_OK(mm_heap_info(h, &after));
  ASSERT_EQ(after.used, before.used);
  ASSERT_EQ(after.objects, before.objects);
  assert_clean(h);
  /* Committed, the free happens. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_free(h, a));
  ASSERT_RC(mm_heap_free(h, a), -EINVAL);
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_EQ(mm_heap_usable_size(h, a), 0);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

/* A child dies (SIGKILL) inside a transaction; the parent's open handle
 * takes the lock (owner dead) and finds the transaction rolled back. */
TEST(heap_dead_holder_is_rolled_back_when_the_lock_is_taken) {
  SKIP_UNDER_TSAN();
  mm_heap_t *h = make("h", NULL);
  uint64_t a;
  ASSERT_OK(mm_heap_alloc(h, 256, &a));
  fillp(h, a, 256, 9);
  int pfd[2];
  ASSERT(pipe(pfd) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    mm_heap_t *c;
    if (mm_heap_open(&c, mm_test_path("h"), NULL)) _exit(2);
    uint64_t x;
    if (mm_heap_tx_begin(c, NULL) || mm_heap_tx_add(c, a, 256) ||
        mm_heap_alloc(c, 100000, &x) || mm_heap_name_set(c, "x", x))
      _exit(3);
    memset(mm_heap_ptr(c, a), 0, 256);
    if (write(pfd[1], "k", 1) != 1) _exit(4);
    pause();
    _exit(5);
  }
  char ch;
  ASSERT_EQ(read(pfd[0], &ch, 1), 1);
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  ASSERT(WIFSIGNALED(st));
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  checkp(h, a, 256, 9);
  uint64_t v;
  ASSERT_RC(mm_heap_name_get(h, "x", &v), -ENOENT);
  ASSERT_OK(mm_heap_tx_commit(h));
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

/* The last process dies mid-transaction; the next open recovers. */
TEST(heap_open_after_a_crash_recovers) {
  mm_heap_t *h = make("h", NULL);
  uint64_t a;
  ASSERT_OK(mm_heap_alloc(h, 5000, &a));
  fillp(h, a, 5000, 11);
  ASSERT_OK(mm_heap_close(h));
  pid_t pid = fork();
  if (pid == 0) {
    mm_heap_t *c;
    if (mm_heap_open(&c, mm_test_path("h"), NULL)) _exit(2);
    if (mm_heap_tx_begin(c, NULL) || mm_heap_tx_add(c, a, 5000)) _exit(3);
    memset(mm_heap_ptr(c, a), 0x55, 5000);
    uint64_t x;
    for (int i = 0; i < 100; i++)
      if (mm_heap_alloc(c, 64, &x)) _exit(4);
    raise(SIGKILL);
    _exit(5);
  }
  int st;
  waitpid(pid, &st, 0);
  ASSERT(WIFSIGNALED(st));
  ASSERT_OK(mm_heap_open(&h, mm_test_path("h"), NULL));
  checkp(h, a, 5000, 11);
  mm_heap_info_t in;
  ASSERT_OK(mm_heap_info(h, &in));
  ASSERT_EQ(in.objects, 1);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

static int nsync;
static void count_sync(void *arg, int op, long result) {
  (void)arg;
  (void)result;
  if (op == MM_SYS_MSYNC || op == MM_SYS_FSYNC) nsync++;
}

/* One durable transaction: syncs before tx_add returned, and in total. */
static void durable_tx(mm_heap_t *h, uint64_t a, int fill, int alloc, int *at_add,
                       int *total) {
  mm_heap_tx_opts_t d = {.flags = MM_HEAP_TX_DURABLE};
  nsync = 0;
  ASSERT_OK(mm_heap_tx_begin(h, &d));
  ASSERT_EQ(nsync, 0);
  ASSERT_OK(mm_heap_tx_add(h, a, 64));
  *at_add = nsync;
  memset(mm_heap_ptr(h, a), fill, 64);
  if (alloc) {
    uint64_t b;
    ASSERT_OK(mm_heap_alloc(h, 100, &b));
    memset(mm_heap_ptr(h, b), fill, 100);
  }
  ASSERT_OK(mm_heap_tx_commit(h));
  *total = nsync;
}

TEST(heap_durable_tx_syncs_the_log_before_the_data_changes) {
  mm_heap_t *h = make("h", NULL);
  uint64_t a;
  int add, all;
  ASSERT_OK(mm_heap_alloc(h, 64, &a));
  mm__sys_trace(count_sync, NULL);
  /* Process-crash mode: no sync at all. */
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_tx_add(h, a, 64));
  memset(mm_heap_ptr(h, a), 1, 64);
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_EQ(nsync, 0);
  /* After an allocation outside any transaction (whose object the caller
   * may have filled): the undo record before the change, then at commit
   * the data, then the emptied log. */
  durable_tx(h, a, 2, 0, &add, &all);
  ASSERT_EQ(add, 1);
  ASSERT_EQ(all, 3);
  /* Only declared ranges changed: the commit record goes with the data,
   * in one sync. */
  durable_tx(h, a, 3, 0, &add, &all);
  ASSERT_EQ(add, 1);
  ASSERT_EQ(all, 2);
  durable_tx(h, a, 4, 0, &add, &all);
  ASSERT_EQ(all, 2);
  /* A transaction that allocates: its new object is not in any record,
   * so the data is synced before the commit point again. */
  durable_tx(h, a, 5, 1, &add, &all);
  ASSERT_EQ(add, 1);
  ASSERT(all >= 3);
  /* A process-crash transaction right after a durable commit still makes
   * none: it writes the log's other area, leaving the record whole. */
  nsync = 0;
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_tx_add(h, a, 64));
  memset(mm_heap_ptr(h, a), 6, 64);
  ASSERT_OK(mm_heap_tx_commit(h));
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_tx_add(h, a, 64));
  ASSERT_OK(mm_heap_tx_abort(h));
  ASSERT_EQ(nsync, 0);
  mm__sys_trace(NULL, NULL);
  ASSERT_OK(mm_heap_close(h));
}

struct durable_arg {
  mm_heap_t *h;
  uint64_t a;
  int alloc_first, add, all;
};

static void *durable_thread(void *p) {
  struct durable_arg *d = p;
  if (d->alloc_first) {
    uint64_t b;
    if (mm_heap_alloc(d->h, 40, &b) == 0) memset(mm_heap_ptr(d->h, b), 9, 40);
  }
  durable_tx(d->h, d->a, 7, 0, &d->add, &d->all);
  return NULL;
}

/* Which commit takes one sync follows the committing thread's own
 * allocations since its last two-sync commit or mm_heap_sync. */
TEST(heap_durable_one_sync_commit_follows_the_threads_own_allocations) {
  mm_heap_t *h = make("h", NULL);
  uint64_t a, b;
  int add, all;
  ASSERT_OK(mm_heap_alloc(h, 64, &a));
  ASSERT_OK(mm_heap_sync(h)); /* this thread's allocations are on disk */
  mm__sys_trace(count_sync, NULL);
  durable_tx(h, a, 1, 0, &add, &all);
  ASSERT_EQ(all, 2);
  /* Another thread allocates and fills: this thread's commit stays one
   * sync; the other thread's own commit syncs the data first. */
  struct durable_arg d = {h, a, 1, 0, 0};
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, durable_thread, &d), 0);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(d.all, 3);
  durable_tx(h, a, 2, 0, &add, &all);
  ASSERT_EQ(all, 2);
  /* This thread frees, then commits: two syncs, then one again. */
  ASSERT_OK(mm_heap_alloc(h, 32, &b));
  ASSERT_OK(mm_heap_free(h, b));
  durable_tx(h, a, 3, 0, &add, &all);
  ASSERT_EQ(all, 3);
  durable_tx(h, a, 4, 0, &add, &all);
  ASSERT_EQ(all, 2);
  /* A name change, then mm_heap_sync: the sync covers it. */
  ASSERT_OK(mm_heap_name_set(h, "x", a));
  nsync = 0;
  ASSERT_OK(mm_heap_sync(h));
  durable_tx(h, a, 5, 0, &add, &all);
  ASSERT_EQ(all, 2);
  mm__sys_trace(NULL, NULL);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

TEST(heap_durable_commit_that_cannot_sync_is_rolled_back) {
  mm_heap_t *h = make("h", NULL);
  uint64_t a;
  ASSERT_OK(mm_heap_alloc(h, 64, &a));
  memset(mm_heap_ptr(h, a), 7, 64);
  mm_heap_tx_opts_t d = {.flags = MM_HEAP_TX_DURABLE};
  ASSERT_OK(mm_heap_tx_begin(h, &d));
  ASSERT_OK(mm_heap_tx_add(h, a, 64));
  memset(mm_heap_ptr(h, a), 8, 64);
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 0);
  ASSERT_RC(mm_heap_tx_commit(h), -EIO);
  mm__fault_clear();
  ASSERT_EQ(((unsigned char *)mm_heap_ptr(h, a))[63], 7);
  ASSERT(!mm_heap_tx_active(h));
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

/* The one-sync commit (a transaction that only changed declared ranges):
 * if its sync fails, the record is voided and the transaction rolled
 * back, in memory and for whoever opens the heap next. */
TEST(heap_durable_one_sync_commit_that_cannot_sync_is_rolled_back) {
  mm_heap_t *h = make("h", NULL);
  uint64_t a;
  ASSERT_OK(mm_heap_alloc(h, 64, &a));
  memset(mm_heap_ptr(h, a), 7, 64);
  ASSERT_OK(mm_heap_sync(h)); /* no allocation of this thread pending */
  mm_heap_tx_opts_t d = {.flags = MM_HEAP_TX_DURABLE};
  ASSERT_OK(mm_heap_tx_begin(h, &d));
  ASSERT_OK(mm_heap_tx_add(h, a, 64));
  memset(mm_heap_ptr(h, a), 8, 64);
  nsync = 0;
  mm__sys_trace(count_sync, NULL);
  mm__fault_set(MM_SYS_MSYNC, 1, EIO, 0);
  ASSERT_RC(mm_heap_tx_commit(h), -EIO);
  mm__fault_clear();
  mm__sys_trace(NULL, NULL);
  ASSERT_EQ(nsync, 2); /* the failed commit sync, then the rollback's */
  ASSERT_EQ(((unsigned char *)mm_heap_ptr(h, a))[63], 7);
  ASSERT(!mm_heap_tx_active(h));
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
  ASSERT_OK(mm_heap_open(&h, mm_test_path("h"), NULL));
  ASSERT_EQ(((unsigned char *)mm_heap_ptr(h, a))[0], 7);
  /* And the next one commits. */
  ASSERT_OK(mm_heap_tx_begin(h, &d));
  ASSERT_OK(mm_heap_tx_add(h, a, 64));
  memset(mm_heap_ptr(h, a), 9, 64);
  ASSERT_OK(mm_heap_tx_commit(h));
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

/* A process killed right after its one-sync commit's sync, before the log
 * is emptied: the commit record is whole, so the next opener redoes the
 * transaction (all of it: both ranges) instead of undoing it. Killed at
 * tx_add's sync instead, before the write, the next opener undoes it. */
static int kill_at_msync_n, kill_msync_seen;
static void kill_at_msync(void *arg, void *addr, size_t len, int flags, int result) {
  (void)arg, (void)addr, (void)len, (void)flags, (void)result;
  if (++kill_msync_seen == kill_at_msync_n) raise(SIGKILL);
}

static void durable_crash_child(uint64_t a, uint64_t b, int at) {
  mm_heap_t *c;
  if (mm_heap_open(&c, mm_test_path("h"), NULL)) _exit(2);
  if (mm_heap_sync(c)) _exit(7); /* this thread owes no data sync */
  mm_heap_tx_opts_t d = {.flags = MM_HEAP_TX_DURABLE};
  if (mm_heap_tx_begin(c, &d)) _exit(3);
  kill_at_msync_n = at;
  mm__sys_msync_hook(kill_at_msync, NULL);
  if (mm_heap_tx_add(c, a, 64)) _exit(4);
  memset(mm_heap_ptr(c, a), 0x11, 64);
  if (mm_heap_tx_add(c, b, 64)) _exit(5);
  memset(mm_heap_ptr(c, b), 0x22, 64);
  if (mm_heap_tx_commit(c)) _exit(6);
  _exit(8);
}

TEST(heap_durable_crash_in_commit_sync_redoes_and_in_tx_add_undoes) {
  for (int at = 1; at <= 3; at++) {
    mm_heap_t *h = make("h", NULL);
    uint64_t a, b;
    ASSERT_OK(mm_heap_alloc(h, 64, &a));
    ASSERT_OK(mm_heap_alloc(h, 64, &b));
    memset(mm_heap_ptr(h, a), 1, 64);
    memset(mm_heap_ptr(h, b), 2, 64);
    ASSERT_OK(mm_heap_close(h));
    pid_t pid = fork();
    if (pid == 0) durable_crash_child(a, b, at);
    int st;
    waitpid(pid, &st, 0);
    ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ASSERT_OK(mm_heap_open(&h, mm_test_path("h"), NULL));
    const unsigned char *pa = mm_heap_ptr(h, a), *pb = mm_heap_ptr(h, b);
    /* msync 1: the first tx_add's, 2: the second's (the first write was
     * made: undone), 3: the commit's (redone). */
    unsigned char wa = at == 3 ? 0x11 : 1, wb = at == 3 ? 0x22 : 2;
    for (int i = 0; i < 64; i++) {
      if (pa[i] != wa || pb[i] != wb)
        FAIL("killed at msync %d: a[%d] = %#x, b[%d] = %#x; want %#x, %#x", at, i, pa[i],
             i, pb[i], wa, wb);
    }
    assert_clean(h);
    ASSERT_OK(mm_heap_close(h));
    ASSERT_EQ(unlink(mm_test_path("h")), 0);
  }
}

TEST(heap_full_disk_is_an_error_from_alloc_and_loses_nothing) {
  mm_heap_t *h = make("h", NULL);
  mm_heap_info_t in;
  ASSERT_OK(mm_heap_info(h, &in));
  uint64_t a;
  mm__fault_set(MM_SYS_FALLOCATE, 1, ENOSPC, 1);
  int rc = 0, n = 0;
  while ((rc = mm_heap_alloc(h, 20000, &a)) == 0) n++;
  ASSERT_RC(rc, -ENOSPC);
  ASSERT(n >= 1); /* the first chunk had room */
  mm__fault_clear();
  assert_clean(h);
  mm_heap_info_t in2;
  ASSERT_OK(mm_heap_info(h, &in2));
  ASSERT_EQ(in2.file_size, in.file_size);
  ASSERT_OK(mm_heap_alloc(h, 20000, &a));
  ASSERT_OK(mm_heap_info(h, &in2));
  ASSERT(in2.file_size > in.file_size);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

TEST(heap_tx_larger_than_the_log_fails_with_efull_and_aborts_cleanly) {
  mm_heap_t *h = make("h", NULL);
  uint64_t a;
  ASSERT_OK(mm_heap_alloc(h, 200000, &a));
  fillp(h, a, 200000, 5);
  ASSERT_OK(mm_heap_tx_begin(h, NULL));
  ASSERT_OK(mm_heap_tx_add(h, a, 30000));
  memset(mm_heap_ptr(h, a), 0, 30000);
  ASSERT_RC(mm_heap_tx_add(h, a + 30000, 60000), MM_EFULL);
  ASSERT_OK(mm_heap_tx_abort(h));
  checkp(h, a, 200000, 5);
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}

TEST(heap_refuses_bad_options_and_non_heaps) {
  mm_heap_t *h;
  mm_heap_opts_t o = {.flags = MM_HEAP_CREATE, .chunk_size = 100000};
  ASSERT_RC(mm_heap_open(&h, mm_test_path("x"), &o), -EINVAL);
  ASSERT(h == NULL);
  ASSERT(access(mm_test_path("x"), F_OK) != 0); /* not left behind */
  ASSERT_RC(mm_heap_open(&h, mm_test_path("missing"), NULL), -ENOENT);
  mm_test_write_file(mm_test_path("junk"), 100000);
  ASSERT_RC(mm_heap_open(&h, mm_test_path("junk"), NULL), MM_ENOTHEAP);
  ASSERT_OK(mm_heap_close(NULL));
}

TEST(examples_todo_keeps_a_list_across_runs) {
  char out[4096];
  const char *f = mm_test_path("todo.heap");
  const char *bin = mm_test_bindir();
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/examples/todo %s add 'buy milk'", bin, f), 0);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/examples/todo %s add 'write tests'", bin, f), 0);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/examples/todo %s add 'ship'", bin, f), 0);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/examples/todo %s done 2", bin, f), 0);
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/examples/todo %s list", bin, f), 0);
  ASSERT(!strcmp(out, "1. buy milk\n2. ship\n"));
  ASSERT_EQ(mm_test_run(out, sizeof out, "%s/examples/todo %s done 9 2>&1", bin, f), 1);
  ASSERT(strstr(out, "no item 9") != NULL);
  mm_heap_t *h;
  ASSERT_OK(mm_heap_open(&h, f, NULL));
  assert_clean(h);
  ASSERT_OK(mm_heap_close(h));
}
