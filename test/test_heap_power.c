/*
 * test_heap_power.c - a power-loss simulator for the heap's durable
 * transactions.
 *
 * The heap promises (heap.h, CRASH SAFETY): after mm_heap_tx_commit of a
 * durable transaction returns 0, the transaction survives a power loss; a
 * heap whose machine lost power opens (recovery runs in mm_heap_open),
 * checks clean, and shows every committed transaction and nothing of an
 * uncommitted or aborted one. A process-crash (non-durable) transaction is
 * promised nothing after a power loss until a durable commit after it, or
 * mm_heap_sync, returns: those sync every change committed before them.
 * The process-crash tests (SIGKILL) cannot see
 * a broken power-loss protocol: the page cache outlives the process. This
 * test models the disk instead, from the semantics of msync(2) alone; it
 * does not know how many syncs the library makes, of what, or in which
 * order.
 *
 * THE DISK MODEL
 *   D, the durable image of the file, starts as the file after creation
 *   and mm_heap_sync. The library's msyncs are seen through the hook of
 *   src/sys.h: a successful MS_SYNC msync copies the pages it covers from
 *   the mapping into D, and makes the file's current length durable. The
 *   kernel may also write back any dirty page at any time: at every hook
 *   call and at every user-level point (between calls, between tx_add and
 *   the write it protects, after the write, before commit) a few random
 *   pages that differ from D may be copied into D.
 *   A power loss may happen at any of those points, including inside an
 *   msync (before the hook applies it: a random part of its pages is on
 *   disk). The disk then holds D, plus, for each page that differs from
 *   the mapping, D's version, the mapping's, or a mix of the two at
 *   512-byte sector granularity; the file's length is the durable one or
 *   the current one. A crash point only takes a snapshot (an "image") and
 *   the workload goes on, so one run checks many images.
 *
 * EACH IMAGE (checked in a separate process, forked before the heap was
 * opened, so a crash or a hang there fails one image, not the run)
 *   mm_heap_open succeeds (recovery); mm_heap_check finds nothing; the
 *   root and its name are there; the accounts keep their sum; the list is
 *   as long as its recorded length and the name "last" points into it;
 *   the commit counter in the heap is the number of commits that had
 *   returned (or one more while a commit was in flight); and the whole
 *   application state (root, every list node and side object, offsets and
 *   bytes) is what it was right after that commit (compared by digests,
 *   part by part, so the report can say which part differs). Then a
 *   durable transaction on the recovered heap, half of the time written
 *   with mm_heap_tx_write, commits, its writes are there, and the heap
 *   checks clean. Recovery sees another boot (mm__sys_boot_id_set), so it
 *   writes again every commit record since the last checkpoint.
 *   No image is taken from the begin of a non-durable transaction that
 *   changes the compared state until the next durable commit or
 *   mm_heap_sync returns (see one_tx); the images after that must show it.
 *
 * THE WORKLOAD (one thread, random from a printed seed)
 *   Durable transactions over a root: transfers between accounts, pushes
 *   (alloc in the transaction) and pops (free in the transaction) on a
 *   list, changes to list nodes (bytes, some copied from the heap itself,
 *   and ids), realloc of the head node, side objects linked and unlinked,
 *   the name "last" set and deleted; every one adds 1 to the counter; some
 *   are aborted after changing things; a third of them allocate nothing
 *   (one-sync commits, whose records pile up in the log). 40% write with
 *   mm_heap_tx_write instead of tx_add and in place (or mix the two, write
 *   by write): the bytes land at commit, so the workload reads, and the
 *   model digests, the heap with its own copy of the staged writes laid
 *   over it (struct overlay), and the live heap after the commit must be
 *   exactly that. mm_heap_sync inside transactions (mostly when the log
 *   holds records) and between them; non-durable transactions
 *   (MM_HEAP_TX_NOSYNC in the durable heap), some changing the compared
 *   state (half of those on a log just emptied by mm_heap_sync, so they
 *   leave no record), some only bytes nothing compares. Between them, in
 *   a heap created MM_HEAP_DURABLE, plain allocs and frees (atomic and
 *   durable on their own), objects written outside a transaction and made
 *   durable by mm_heap_sync. Two heaps: one created MM_HEAP_DURABLE, one
 *   not, whose transactions are MM_HEAP_TX_DURABLE or not durable (and
 *   nothing else happens outside them but mm_heap_sync). Power is lost
 *   more often inside a commit's syncs than elsewhere.
 *
 * THE NEGATIVE CONTROL
 *   The same simulator over a disk that lies about one class of syncs
 *   (every other one; those smaller than half the file) must find bad
 *   images: a simulator that cannot fail proves nothing.
 *
 * The heap and its images live in /dev/shm when it can be written (the
 * simulator needs no real disk, and real syncs on one cost seconds), else in
 * the test's directory; MM_POWER_DIR=DIR chooses.
 *
 * MM_POWER_SEED=S replays a run; MM_POWER_VERBOSE=1 describes every bad
 * image (else the first 10); MM_POWER_ITERS=N sets the transactions
 * per heap (default 800, half that in sanitizer builds; about 5 s per 1000
 * here, so past 10000 raise MM_TEST_TIMEOUT_SCALE, and the negative control
 * then runs all N instead of stopping at its first bad image);
 * MM_POWER_KEEP=DIR keeps the bad images there
 * (as they were at the power loss, before recovery). MM_POWER_DECLARE_NEW=1
 * also declares (tx_add) each allocation made in a transaction before
 * writing it, which heap.h does not require: a diagnosis, for when the
 * new objects of a committed transaction come back unwritten.
 */
#include "test.h"

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

#define CHUNK 65536u                /* every heap here: 64 KiB chunks */
#define LOGSZ 65536u                /* and the smallest log */
#define MAXSZ ((uint64_t)256 << 20) /* small enough for 32-bit builds */
#define SECTOR 512u                 /* the disk writes sectors atomically, no more */

#define NACCT 8
#define ACCT0 1000
#define NSIDE 6
#define NTEMP 8
#define LIST_MAX 40
#define ROOT_MAGIC 0x31574f5052454f52ull
#define OBJ_MAGIC 0x314a424f52574f50ull

struct proot {
  uint64_t magic;
  uint64_t commits;     /* +1 in every committed transaction */
  uint64_t acct[NACCT]; /* their sum is NACCT * ACCT0 */
  uint64_t head, len, next_id; /* declared together */
  uint64_t side[NSIDE];
};

/* A list node or a side object; `size` bytes in all, data after the
 * header. */
struct pobj {
  uint64_t next, id, size, magic;
};

static uint64_t xs(uint64_t *x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  return *x;
}

static void fill_random(void *p, size_t n, uint64_t *x) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(xs(x) >> 24);
}

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *e = getenv(name);
  if (!e || !*e) return dflt;
  return strtoull(e, NULL, 0);
}

/* ---- the application state and its digest -------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 29);
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, b + i, 8);
    h = mix(h, w);
  }
  for (; i < n; i++) h = mix(h, b[i]);
  return mix(h, n);
}

static void grow_buf(unsigned char **b, uint64_t *cap, uint64_t need) {
  if (need <= *cap) return;
  uint64_t n = *cap ? *cap : 1 << 20;
  while (n < need) n *= 2;
  unsigned char *p = realloc(*b, (size_t)n);
  if (!p) FAIL("out of memory (%" PRIu64 " bytes)", n);
  memset(p + *cap, 0, (size_t)(n - *cap)); /* never written: zero on disk */
  *b = p, *cap = n;
}

/* ---- the transaction's staged writes --------------------------------------- */

/* In a durable transaction mm_heap_tx_write stages its bytes: they reach the
 * heap at commit, in the order written, after the transaction's in-place
 * changes (heap.h). Until then the workload reads, and the model digests,
 * the heap with them laid over it: the overlay is the simulator's own copy
 * of what the transaction wrote, so the state expected after the commit
 * does not come from the library. */
struct overlay {
  struct ovw { uint64_t off, len, at; } *v; /* at: where its bytes are in b */
  size_t n, cap;
  unsigned char *b;
  uint64_t blen, bcap;
};

static void ov_clear(struct overlay *ov) { ov->n = 0, ov->blen = 0; }

static void ov_add(struct overlay *ov, uint64_t off, const void *src, uint64_t len) {
  if (ov->n == ov->cap) {
    size_t n = ov->cap ? 2 * ov->cap : 64;
    struct ovw *p = realloc(ov->v, n * sizeof *p);
    if (!p) FAIL("out of memory");
    ov->v = p, ov->cap = n;
  }
  if (ov->blen + len > ov->bcap) {
    uint64_t n = ov->bcap ? ov->bcap : 65536;
    while (n < ov->blen + len) n *= 2;
    unsigned char *p = realloc(ov->b, (size_t)n);
    if (!p) FAIL("out of memory");
    ov->b = p, ov->bcap = n;
  }
  memcpy(ov->b + ov->blen, src, (size_t)len);
  ov->v[ov->n++] = (struct ovw){off, len, ov->blen};
  ov->blen += len;
}

static int ov_overlaps(const struct overlay *ov, uint64_t off, uint64_t len) {
  for (size_t i = 0; ov && i < ov->n; i++)
    if (ov->v[i].off < off + len && off < ov->v[i].off + ov->v[i].len) return 1;
  return 0;
}

/* Lay the staged writes over dst, a copy of [off, off+len). */
static void ov_apply(const struct overlay *ov, uint64_t off, void *dst, uint64_t len) {
  for (size_t i = 0; ov && i < ov->n; i++) {
    const struct ovw *e = &ov->v[i];
    uint64_t lo = e->off > off ? e->off : off;
    uint64_t hi = e->off + e->len < off + len ? e->off + e->len : off + len;
    if (lo < hi)
      memcpy((unsigned char *)dst + (lo - off), ov->b + e->at + (lo - e->off), (size_t)(hi - lo));
  }
}

/* [off, off+len) as the transaction will leave it. */
static void ov_read(mm_heap_t *h, const struct overlay *ov, uint64_t off, void *dst,
                    uint64_t len) {
  memcpy(dst, mm_heap_ptr(h, off), (size_t)len);
  ov_apply(ov, off, dst, len);
}

/* The same as a pointer: into the heap when no staged write touches the
 * range, else to a copy (valid until the next call). */
static const void *ov_view(mm_heap_t *h, const struct overlay *ov, uint64_t off, uint64_t len) {
  static unsigned char *buf;
  static uint64_t cap;
  if (!ov_overlaps(ov, off, len)) return mm_heap_ptr(h, off);
  grow_buf(&buf, &cap, len);
  ov_read(h, ov, off, buf, len);
  return buf;
}

/* Is `off` a whole object of ours (its header in *o)? With `validate` the
 * heap is asked (an image may be anything); the live process trusts its
 * own offsets. */
static int obj_ok(mm_heap_t *h, const struct overlay *ov, uint64_t off, int validate,
                  struct pobj *o) {
  if (!off || off % MM_HEAP_ALIGN) return 0;
  if (validate && !mm_heap_valid(h, off, sizeof(struct pobj))) return 0;
  ov_read(h, ov, off, o, sizeof *o);
  if (o->magic != OBJ_MAGIC || o->size < sizeof *o) return 0;
  return !validate || mm_heap_valid(h, off, o->size);
}

/* The application state, digested part by part, so a difference can be
 * named. */
#define NODE_DIGS 48 /* list nodes digested one by one; the rest together */
struct pstate {
  uint64_t commits; /* the counter */
  uint64_t root;    /* the root's fields and the name "last" */
  uint64_t nodes;   /* the list's length */
  uint64_t node[NODE_DIGS + 1]; /* each node's offset and bytes */
  uint64_t side[NSIDE];
};

/* Walk the application state into *st: 0, or -1 with what is wrong in msg.
 * ov (may be NULL): the open transaction's staged writes, to digest the
 * state its commit will leave. */
static int app_state(mm_heap_t *h, const struct overlay *ov, int validate, struct pstate *st,
                     char *msg, size_t cap) {
  memset(st, 0, sizeof *st);
  uint64_t ro = mm_heap_root(h), named = 0;
  if (!ro) return snprintf(msg, cap, "no root"), -1;
  if (validate && !mm_heap_valid(h, ro, sizeof(struct proot)))
    return snprintf(msg, cap, "the root %" PRIu64 " is not a live allocation", ro), -1;
  int rc = mm_heap_name_get(h, "root", &named);
  if (rc != 0 || named != ro)
    return snprintf(msg, cap, "the name \"root\" gives %s %" PRIu64 ", the root is %" PRIu64,
                    mm_errname(rc), named, ro), -1;
  struct proot rbuf;
  const struct proot *r = &rbuf;
  ov_read(h, ov, ro, &rbuf, sizeof rbuf);
  if (r->magic != ROOT_MAGIC)
    return snprintf(msg, cap, "the root's magic is %016" PRIx64, r->magic), -1;
  st->commits = r->commits;
  uint64_t sum = 0;
  for (int i = 0; i < NACCT; i++) sum += r->acct[i];
  if (sum != (uint64_t)NACCT * ACCT0)
    return snprintf(msg, cap, "the accounts sum to %" PRIu64 ", not %d (commit counter %" PRIu64
                    ")", sum, NACCT * ACCT0, r->commits), -1;
  uint64_t last = 0, n = 0;
  int last_seen = 0;
  rc = mm_heap_name_get(h, "last", &last);
  if (rc != 0 && rc != -ENOENT)
    return snprintf(msg, cap, "mm_heap_name_get(\"last\"): %s", mm_errname(rc)), -1;
  if (rc == -ENOENT) last = 0;
  st->root = mix(hash_bytes(mix(0, ro), r, sizeof *r), last);
  struct pobj o;
  for (uint64_t off = r->head; off;) {
    if (n == r->len)
      return snprintf(msg, cap, "the list is longer than its length %" PRIu64
                      " (commit counter %" PRIu64 ")", r->len, r->commits), -1;
    if (!obj_ok(h, ov, off, validate, &o))
      return snprintf(msg, cap, "list node %" PRIu64 " (at %" PRIu64 ") is not a whole node"
                      " (commit counter %" PRIu64 ")", n, off, r->commits), -1;
    last_seen |= off == last;
    uint64_t k = n < NODE_DIGS ? n : NODE_DIGS;
    st->node[k] = hash_bytes(mix(st->node[k], off), ov_view(h, ov, off, o.size), o.size);
    n++;
    off = o.next;
  }
  if (n != r->len)
    return snprintf(msg, cap, "the list has %" PRIu64 " nodes, its length says %" PRIu64
                    " (commit counter %" PRIu64 ")", n, r->len, r->commits), -1;
  st->nodes = n;
  if (last && !last_seen)
    return snprintf(msg, cap, "the name \"last\" gives %" PRIu64 ", not a node of the list",
                    last), -1;
  for (int i = 0; i < NSIDE; i++) {
    if (!r->side[i]) continue;
    if (!obj_ok(h, ov, r->side[i], validate, &o))
      return snprintf(msg, cap, "side object %d (at %" PRIu64 ") is not a whole object"
                      " (commit counter %" PRIu64 ")", i, r->side[i], r->commits), -1;
    st->side[i] = hash_bytes(mix(0, r->side[i]), ov_view(h, ov, r->side[i], o.size), o.size);
  }
  return 0;
}

/* Where two states differ, in words; NULL if they do not. */
static const char *state_diff(mm_heap_t *h, const struct pstate *got, const struct pstate *want,
                              char *buf, size_t cap) {
  if (!memcmp(got, want, sizeof *got)) return NULL;
  if (got->root != want->root)
    return "the root's fields (accounts, list head or length, side links, the name \"last\")";
  if (got->nodes != want->nodes) return "the list's length";
  const struct proot *r = mm_heap_ptr(h, mm_heap_root(h));
  uint64_t off = r->head;
  for (uint64_t k = 0; k <= NODE_DIGS && k < got->nodes; k++) {
    const struct pobj *o = mm_heap_ptr(h, off);
    if (got->node[k] != want->node[k]) {
      uint64_t zero = 0;
      const unsigned char *b = (const unsigned char *)(o + 1);
      for (uint64_t i = 0; i < o->size - sizeof *o; i++) zero += !b[i];
      snprintf(buf, cap, "the bytes of list node %" PRIu64 "%s (at %" PRIu64 ", %" PRIu64
               " B, id %" PRIu64 "; %" PRIu64 " of its %" PRIu64 " data bytes are zero)", k,
               k == NODE_DIGS ? " or a later one" : "", off, o->size, o->id, zero,
               o->size - sizeof *o);
      return buf;
    }
    off = o->next;
  }
  for (int i = 0; i < NSIDE; i++)
    if (got->side[i] != want->side[i]) {
      snprintf(buf, cap, "the bytes of side object %d (at %" PRIu64 ")", i, r->side[i]);
      return buf;
    }
  return "something";
}

/* ---- the checker: a process that opens and checks images ----------------- */

struct creq {
  uint64_t lo, hi;         /* the counter the image may hold */
  struct pstate want_lo, want_hi; /* and the state for each */
};

struct cresp {
  int32_t ok, stage;
  uint64_t commits; /* the counter found */
  char msg[480];
};

struct first_problem {
  char msg[300];
  uint64_t n;
};

static void first_problem_fn(void *arg, int code, uint64_t off, const char *m) {
  struct first_problem *fp = arg;
  if (fp->n++ == 0)
    snprintf(fp->msg, sizeof fp->msg, "%s at %" PRIu64 ": %s", mm_errname(code), off,
             m ? m : "(no message)");
}

static int check_clean(mm_heap_t *h, char *msg, size_t cap, const char *when) {
  struct first_problem fp;
  memset(&fp, 0, sizeof fp);
  uint64_t nf = 0;
  int rc = mm_heap_check(h, first_problem_fn, &fp, &nf);
  if (rc == 0 && nf == 0) return 0;
  snprintf(msg, cap, "mm_heap_check %s: %s, %" PRIu64 " problem(s); the first: %s", when,
           mm_errname(rc), nf, fp.msg);
  return -1;
}

/* Push a node in a durable transaction: the recovered heap must work. With
 * `staged` the node, the counter and the link are written with
 * mm_heap_tx_write, and must be in the heap once the commit returns. */
static int after_recovery_tx(mm_heap_t *h, int staged, char *msg, size_t cap) {
  mm_heap_tx_opts_t o = {.flags = MM_HEAP_TX_DURABLE};
  uint64_t ro = mm_heap_root(h), n = 0;
  struct proot *r = mm_heap_ptr(h, ro);
  uint64_t commits = r->commits, link[3];
  unsigned char node[200];
  int rc = mm_heap_tx_begin(h, &o);
  if (rc == 0) rc = mm_heap_alloc(h, sizeof node, &n);
  if (rc == 0) {
    struct pobj *p = (struct pobj *)node;
    memset(node, 0x77, sizeof node);
    p->next = r->head, p->id = r->next_id, p->size = sizeof node, p->magic = OBJ_MAGIC;
    link[0] = n, link[1] = r->len + 1, link[2] = r->next_id + 1;
    commits++;
  }
  if (rc == 0 && staged) {
    rc = mm_heap_tx_write(h, n, node, sizeof node);
    if (rc == 0) rc = mm_heap_tx_write(h, ro + offsetof(struct proot, commits), &commits, 8);
    if (rc == 0) rc = mm_heap_tx_write(h, ro + offsetof(struct proot, head), link, sizeof link);
  } else if (rc == 0) {
    rc = mm_heap_tx_add(h, ro + offsetof(struct proot, commits), 8);
    if (rc == 0) rc = mm_heap_tx_add(h, ro + offsetof(struct proot, head), 24);
    if (rc == 0) {
      memcpy(mm_heap_ptr(h, n), node, sizeof node);
      r->commits = commits;
      memcpy(&r->head, link, sizeof link);
    }
  }
  if (rc == 0) {
    rc = mm_heap_tx_commit(h);
  } else if (mm_heap_tx_active(h)) {
    mm_heap_tx_abort(h);
  }
  if (rc)
    return snprintf(msg, cap, "a transaction%s after recovery: %s",
                    staged ? " with mm_heap_tx_write" : "", mm_errname(rc)), -1;
  if (r->commits != commits || r->head != n || memcmp(mm_heap_ptr(h, n), node, sizeof node))
    return snprintf(msg, cap, "a transaction%s after recovery committed, but its writes are"
                    " not in the heap", staged ? " with mm_heap_tx_write" : ""), -1;
  return check_clean(h, msg, cap, "after a transaction on the recovered heap");
}

static void check_image(const char *path, const struct creq *q, struct cresp *a) {
  mm_heap_t *h = NULL;
  mm_heap_opts_t o = {.lock_timeout_ms = 5000};
  a->stage = 1;
  int rc = mm_heap_open(&h, path, &o);
  if (rc) {
    snprintf(a->msg, sizeof a->msg, "mm_heap_open: %s (%s)", mm_errname(rc), mm_strerror(rc));
    return;
  }
  a->stage = 2;
  if (check_clean(h, a->msg, sizeof a->msg, "after recovery")) goto out;
  a->stage = 3;
  struct pstate st;
  if (app_state(h, NULL, 1, &st, a->msg, sizeof a->msg)) goto out;
  uint64_t c = st.commits;
  a->commits = c;
  a->stage = 4;
  if (c < q->lo) {
    snprintf(a->msg, sizeof a->msg, "a lost commit: the image holds %" PRIu64 " commits, %" PRIu64
             " had returned", c, q->lo);
    goto out;
  }
  if (c > q->hi) {
    snprintf(a->msg, sizeof a->msg, "an uncommitted transaction shows: the image holds %" PRIu64
             " commits, %" PRIu64 " had returned and %s", c, q->lo,
             q->hi > q->lo ? "one was in flight" : "none was in flight");
    goto out;
  }
  a->stage = 5;
  char where[300];
  const char *d = state_diff(h, &st, c == q->lo ? &q->want_lo : &q->want_hi, where, sizeof where);
  if (d) {
    snprintf(a->msg, sizeof a->msg, "the counter says commit %" PRIu64 ", but the state is not"
             " the one after it: %s differ", c, d);
    goto out;
  }
  a->stage = 6;
  if (after_recovery_tx(h, (int)(c & 1), a->msg, sizeof a->msg)) goto out;
  a->ok = 1;
out:
  mm_heap_close(h);
}

static int read_full(int fd, void *buf, size_t n) {
  unsigned char *p = buf;
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r, n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  const unsigned char *p = buf;
  while (n) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r, n -= (size_t)r;
  }
  return 0;
}

struct checker {
  pid_t pid;
  int to, from; /* requests, answers */
};

static void checker_start(struct checker *c, const char *img) {
  int q[2], a[2];
  if (pipe2(q, O_CLOEXEC) || pipe2(a, O_CLOEXEC)) FAIL("pipe: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    mm__sys_msync_hook(NULL, NULL);
    /* An image is what a disk holds after a power loss: recovery must see
     * another boot (the page cache it would trust is gone). */
    mm__sys_boot_id_set(mm__sys_boot_id() ^ 0x5a5a5a5a5a5a5a5aull);
    close(q[1]), close(a[0]);
    struct creq rq;
    while (read_full(q[0], &rq, sizeof rq) == 0) {
      struct cresp rs;
      memset(&rs, 0, sizeof rs);
      check_image(img, &rq, &rs);
      if (write_full(a[1], &rs, sizeof rs)) break;
    }
    _exit(0);
  }
  close(q[0]), close(a[1]);
  c->pid = pid, c->to = q[1], c->from = a[0];
}

static void checker_stop(struct checker *c) {
  if (c->pid <= 0) return;
  close(c->to), close(c->from);
  int st;
  waitpid(c->pid, &st, 0);
  c->pid = 0;
}

/* Ask the checker about the image; a checker that dies or hangs fails the
 * image and is replaced. */
static void checker_ask(struct checker *c, const char *img, const struct creq *q,
                        struct cresp *a) {
  memset(a, 0, sizeof *a);
  if (write_full(c->to, q, sizeof *q) == 0) {
    struct pollfd pf = {.fd = c->from, .events = POLLIN};
    int r;
    do r = poll(&pf, 1, 60000);
    while (r < 0 && errno == EINTR);
    if (r > 0 && read_full(c->from, a, sizeof *a) == 0) return;
    snprintf(a->msg, sizeof a->msg, "%s",
             r == 0 ? "the checker hung (60 s) on this image" : "");
  }
  kill(c->pid, SIGKILL);
  int st = 0;
  waitpid(c->pid, &st, 0);
  if (!a->msg[0])
    snprintf(a->msg, sizeof a->msg, "the checker died on this image (%s)",
             WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exited");
  a->ok = 0;
  close(c->to), close(c->from);
  checker_start(c, img);
}

/* ---- the simulated disk -------------------------------------------------- */

enum { LIE_NONE, LIE_ALTERNATE, LIE_SMALL };
static const char *const lie_name[] = {"an honest disk", "a disk ignoring every other sync",
                                       "a disk ignoring syncs of less than half the file"};

struct sim {
  mm_heap_t *h;
  unsigned char *base;
  int fd; /* the heap file, for its length */
  size_t pg;
  const char *img;
  uint64_t seed, x; /* the simulator's randomness (the workload has its own) */
  unsigned char *D, *I; /* the durable image; an image being built */
  uint64_t dcap, icap, dlen;
  uint32_t *dirty;
  uint64_t dirtycap;
  int lie;
  uint64_t lie_n;
  unsigned wb_pct, crash_pct, crash_sync_pct, crash_commit_pct; /* per point */
  /* What an image taken now must show. */
  uint64_t returned; /* commits that returned 0 */
  int in_commit;
  struct pstate *hist; /* hist[k]: the state right after commit k */
  uint64_t nhist;
  /* Where we are, for the report. */
  const char *op;
  const char *what; /* the transaction's or operation's steps so far */
  uint64_t iter;
  int tag; /* the heap's kind, for the report */
  struct checker ck;
  /* Counts. */
  uint64_t syncs, applied, lied, wbpages, images, bad, inflight, inflight_new;
  uint64_t commit_syncs; /* msyncs seen in the commit under way */
  int unsafe;       /* a non-durable commit may not be on disk: no images */
  uint64_t skipped; /* images not taken so */
  uint64_t records; /* commits made with one sync since the last msync of the
                       whole heap: a guess at the records in the log */
  uint64_t by_stage[8];
  int stop_on_bad, quiet;
};

static uint64_t srnd(struct sim *s) { return xs(&s->x); }

static uint64_t file_len(struct sim *s) {
  struct stat st;
  if (fstat(s->fd, &st)) FAIL("fstat: %s", strerror(errno));
  uint64_t n = (uint64_t)st.st_size;
  return n > MAXSZ ? MAXSZ : n;
}

static void hist_set(struct sim *s, uint64_t k, const struct pstate *st) {
  if (k >= s->nhist) {
    uint64_t n = s->nhist ? s->nhist : 256;
    while (n <= k) n *= 2;
    struct pstate *p = realloc(s->hist, (size_t)n * sizeof *p);
    if (!p) FAIL("out of memory");
    s->hist = p, s->nhist = n;
  }
  s->hist[k] = *st;
}

/* The kernel writes back a few dirty pages (now and then all of them). */
static void writeback(struct sim *s) {
  if (srnd(s) % 100 >= s->wb_pct) return;
  uint64_t len = file_len(s), np = 0;
  grow_buf(&s->D, &s->dcap, len);
  if (s->dirtycap < len / s->pg + 1) {
    s->dirtycap = len / s->pg + 1;
    uint32_t *p = realloc(s->dirty, (size_t)s->dirtycap * sizeof *p);
    if (!p) FAIL("out of memory");
    s->dirty = p;
  }
  for (uint64_t p = 0; p + s->pg <= len; p += s->pg)
    if (memcmp(s->D + p, s->base + p, s->pg)) s->dirty[np++] = (uint32_t)(p / s->pg);
  if (!np) return;
  uint64_t k = srnd(s) % 40 == 0 ? np : 1 + srnd(s) % 3;
  for (uint64_t i = 0; i < k && i < np; i++) {
    uint64_t j = i + srnd(s) % (np - i), t = s->dirty[j]; /* a random one not yet taken */
    s->dirty[j] = s->dirty[i];
    memcpy(s->D + t * s->pg, s->base + t * s->pg, s->pg);
    s->wbpages++;
  }
}

static void keep_image(struct sim *s, uint64_t len) {
  const char *dir = getenv("MM_POWER_KEEP");
  if (!dir || !*dir) return;
  char p[600];
  snprintf(p, sizeof p, "%s/power-%" PRIu64 "-%" PRIu64 ".heap", dir, s->seed, s->images);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write_full(fd, s->I, (size_t)len)) {
    fprintf(stderr, "# (could not keep the image in %s: %s)\n", p, strerror(errno));
  } else {
    fprintf(stderr, "# the image is kept in %s\n", p);
  }
  if (fd >= 0) close(fd);
}

/* Power is lost now: build the disk's image and have it checked. Pages in
 * [slo, shi) belong to an msync under way: about half of them made it. */
static void take_image(struct sim *s, const char *where, uint64_t slo, uint64_t shi) {
  if (s->unsafe) {
    s->skipped++;
    return;
  }
  static const unsigned pm_of_mode[4] = {0, 10, 50, 100};
  uint64_t flen = file_len(s), len = s->dlen;
  if (flen > len && srnd(s) % 2) len = flen;
  if (len > flen) len = flen; /* a file never shrinks */
  grow_buf(&s->D, &s->dcap, flen);
  grow_buf(&s->I, &s->icap, len);
  unsigned mode = (unsigned)(srnd(s) % 4), pm = pm_of_mode[mode];
  memcpy(s->I, s->D, (size_t)len);
  for (uint64_t p = 0; p + s->pg <= len; p += s->pg) {
    if (!memcmp(s->D + p, s->base + p, s->pg)) continue;
    unsigned ppm = p >= slo && p < shi ? 50 : pm;
    if (srnd(s) % 100 >= ppm) continue; /* not written: D's version */
    if (srnd(s) % 2) {
      memcpy(s->I + p, s->base + p, s->pg); /* written */
    } else {                                /* torn */
      for (uint64_t q = 0; q < s->pg; q += SECTOR)
        if (srnd(s) % 2) memcpy(s->I + p + q, s->base + p + q, SECTOR);
    }
  }
  int fd = open(s->img, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write_full(fd, s->I, (size_t)len) || close(fd))
    FAIL("writing the image %s: %s", s->img, strerror(errno));
  struct creq q = {.lo = s->returned, .hi = s->returned + (s->in_commit ? 1 : 0)};
  q.want_lo = s->hist[q.lo];
  q.want_hi = s->hist[q.hi];
  struct cresp a;
  checker_ask(&s->ck, s->img, &q, &a);
  unlink(s->img);
  s->images++;
  if (s->in_commit) {
    s->inflight++;
    s->inflight_new += a.ok && a.commits == q.hi;
  }
  if (a.ok) return;
  s->bad++;
  s->by_stage[a.stage & 7]++;
  if (!s->quiet && (s->bad <= 10 || getenv("MM_POWER_VERBOSE"))) {
    fprintf(stderr,
            "# BAD IMAGE %" PRIu64 " (seed %" PRIu64 ", %s heap, transaction %" PRIu64
            " [%s], during %s, power lost %s; %" PRIu64 " commits had returned%s; disk: %s;"
            " pages not synced: %s; file length %" PRIu64 " of %" PRIu64 "):\n#   %s\n",
            s->images, s->seed, s->tag ? "a non-durable" : "a MM_HEAP_DURABLE", s->iter,
            s->what ? s->what : "", s->op, where, s->returned,
            s->in_commit ? ", one was in flight" : "",
            lie_name[s->lie],
            mode == 0 ? "none written" : mode == 1 ? "10% written or torn"
                      : mode == 2 ? "half written or torn" : "all written or torn",
            len, flen, a.msg);
    keep_image(s, len);
  }
}

/* A moment at which the kernel may write back and the power may fail. */
static void sim_point(struct sim *s, const char *where) {
  writeback(s);
  if (srnd(s) % 1000 < s->crash_pct) take_image(s, where, 0, 0);
}

static struct sim *hooked;

static void msync_hook(void *arg, void *addr, size_t len, int flags, int result) {
  struct sim *s = arg;
  unsigned char *a = addr;
  if (s != hooked || a < s->base || a >= s->base + MAXSZ) return; /* another mapping */
  uint64_t off = (uint64_t)(a - s->base), flen = file_len(s);
  off -= off % s->pg;
  uint64_t end = (uint64_t)(a - s->base) + len;
  end = (end + s->pg - 1) / s->pg * s->pg;
  if (end > flen) end = flen;
  s->syncs++;
  s->commit_syncs += s->in_commit;
  /* Power lost while this msync was under way. */
  writeback(s);
  unsigned pm = s->in_commit ? s->crash_commit_pct : s->crash_sync_pct;
  if (srnd(s) % 1000 < pm) take_image(s, "inside an msync", off, end);
  if (result != 0 || !(flags & MS_SYNC) || off >= end) return;
  if (off == 0) s->records = 0; /* a checkpoint, or a sync of the data */
  if (s->lie == LIE_ALTERNATE && s->lie_n++ % 2) {
    s->lied++;
    return;
  }
  if (s->lie == LIE_SMALL && len < flen / 2) {
    s->lied++;
    return;
  }
  grow_buf(&s->D, &s->dcap, flen);
  memcpy(s->D + off, s->base + off, (size_t)(end - off));
  if (flen > s->dlen) s->dlen = flen; /* msync is fdatasync: the length too */
  s->applied++;
  if (srnd(s) % 1000 < pm) take_image(s, "just after an msync", 0, 0);
}

/* ---- the workload ---------------------------------------------------------- */

#define NJUNK 3          /* objects only the non-durable transactions change */
#define STAGE_MAX 4096   /* the largest new object filled by one tx_write */

/* How a transaction writes: declared (tx_add) and in place, staged
 * (tx_write), or either, chosen write by write. */
enum { WM_ADD, WM_WRITE, WM_MIXED };
static const char *const wm_name[] = {"tx_add", "tx_write", "tx_add and tx_write"};

struct work {
  struct sim *s;
  mm_heap_t *h;
  uint64_t x, ro;
  int durable_heap;
  uint64_t temps[NTEMP], tsize[NTEMP];
  uint64_t junk[NJUNK], jsize[NJUNK]; /* made at the start; never compared */
  uint64_t pending;      /* a side object allocated outside a transaction */
  int pending_written;   /* ... already written and synced */
  uint64_t defer[NSIDE]; /* side objects to free once the transaction commits */
  int ndefer;
  int declare_new; /* tx_add fresh allocations too (MM_POWER_DECLARE_NEW) */
  int durable_tx;  /* the open transaction is durable: its tx_writes are staged */
  int wmode;       /* how it writes (WM_*) */
  int nosync_last; /* the last non-durable transaction aborted */
  struct overlay ov; /* its staged writes */
  unsigned char *buf; /* bytes being built */
  uint64_t bcap;
  char what[256];  /* what the current transaction or operation did so far */
  uint64_t committed, aborted, efull, pushes, pops, plain;
  uint64_t staged_commits, one_sync, tx_writes, nosync, nosync_data, syncs_in_tx, syncs_in_tx_rec;
  uint64_t syncs_between;
};

static uint64_t wrnd(struct work *w) { return xs(&w->x); }
#define ROOT(w) MM_HEAP_PTR((w)->h, (w)->ro, struct proot)
#define P(w, where) sim_point((w)->s, (where))

/* The state the open transaction's commit will leave (with no transaction
 * open, the heap's). */
static void live_state(struct work *w, struct pstate *st) {
  char msg[480];
  if (app_state(w->h, &w->ov, 0, st, msg, sizeof msg)) FAIL("the live heap: %s", msg);
}

/* Reads through the staged writes: code that reads back what it wrote in
 * the same transaction sees its own tx_writes. */
static void rd(struct work *w, uint64_t off, void *dst, uint64_t len) {
  ov_read(w->h, &w->ov, off, dst, len);
}

static uint64_t rd64(struct work *w, uint64_t off) {
  uint64_t v;
  rd(w, off, &v, 8);
  return v;
}

static unsigned char *wbuf(struct work *w, uint64_t len) {
  grow_buf(&w->buf, &w->bcap, len);
  return w->buf;
}

/* A library call inside a transaction: 0, or MM_EFULL (the log is full:
 * the transaction is aborted); anything else fails the test. */
#define TRY(w, what, call)                                                    \
  do {                                                                        \
    (w)->s->op = (what);                                                      \
    int trc_ = (call);                                                        \
    if (trc_ == MM_EFULL) return trc_;                                        \
    if (trc_ != 0) FAIL("%s: %s (seed %" PRIu64 ")", #call, mm_errname(trc_), \
                        (w)->s->seed);                                        \
    P((w), "after " what);                                                    \
  } while (0)

#define ADD(w, off, len) TRY((w), "mm_heap_tx_add", mm_heap_tx_add((w)->h, (off), (len)))
#define RFIELD(w, f) ((w)->ro + offsetof(struct proot, f))

/* Add a step to the description of what is under way (for the report). */
static __attribute__((format(printf, 2, 3))) void note(struct work *w, const char *fmt, ...) {
  size_t n = strlen(w->what);
  if (n + 2 >= sizeof w->what) return;
  if (n) w->what[n++] = ',', w->what[n++] = ' ', w->what[n] = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->what + n, sizeof w->what - n, fmt, ap);
  va_end(ap);
}

/* Write len bytes from src (which may be in the heap) at off, in the open
 * transaction: staged with mm_heap_tx_write, or declared with tx_add and
 * written in place. A range a tx_write of this transaction touched is
 * written with tx_write again: staged writes land after the in-place
 * changes, so an in-place write there would be lost (heap.h). */
static int tx_put(struct work *w, uint64_t off, const void *src, uint64_t len,
                  const char *after) {
  int staged = w->wmode == WM_WRITE || (w->wmode == WM_MIXED && wrnd(w) % 2) ||
               ov_overlaps(&w->ov, off, len);
  if (staged) {
    TRY(w, "mm_heap_tx_write", mm_heap_tx_write(w->h, off, src, len));
    /* The bytes src holds now: the library copied them at the call. */
    if (w->durable_tx) ov_add(&w->ov, off, src, len);
    w->tx_writes++;
    return 0;
  }
  ADD(w, off, len);
  memmove(mm_heap_ptr(w->h, off), src, (size_t)len);
  P(w, after);
  return 0;
}

#define PUT(w, off, src, len, after)                      \
  do {                                                    \
    int prc_ = tx_put((w), (off), (src), (len), (after)); \
    if (prc_) return prc_;                                \
  } while (0)

static uint64_t pick_size(struct work *w) {
  unsigned c = (unsigned)(wrnd(w) % 100);
  if (c < 70) return sizeof(struct pobj) + wrnd(w) % 2017; /* size classes */
  if (c < 95) return 2049 + wrnd(w) % 30000;                /* page runs */
  return CHUNK + 1 + wrnd(w) % (CHUNK + CHUNK / 2);         /* whole chunks */
}

/* An object's bytes at p: random data, then the header. */
static void obj_build(struct work *w, void *p, uint64_t size, uint64_t next, uint64_t id) {
  struct pobj *o = p;
  fill_random(o + 1, (size_t)(size - sizeof *o), &w->x);
  o->next = next, o->id = id, o->size = size, o->magic = OBJ_MAGIC;
}

/* Fill an allocation made in this transaction: in place, undeclared (heap.h
 * does not ask for it), or, when the transaction stages, with tx_write (the
 * whole object when it is small; else the data in place and the header
 * with tx_write). */
static int fill_new(struct work *w, uint64_t off, uint64_t size, uint64_t next, uint64_t id,
                    const char *after) {
  int staged = w->durable_tx && (w->wmode == WM_WRITE || (w->wmode == WM_MIXED && wrnd(w) % 2));
  if (!staged) {
    obj_build(w, mm_heap_ptr(w->h, off), size, next, id);
    P(w, after);
    return 0;
  }
  if (size <= STAGE_MAX) {
    unsigned char *b = wbuf(w, size);
    obj_build(w, b, size, next, id);
    TRY(w, "mm_heap_tx_write", mm_heap_tx_write(w->h, off, b, size));
    ov_add(&w->ov, off, b, size);
  } else {
    struct pobj hd;
    fill_random(mm_heap_ptr(w->h, off + sizeof hd), (size_t)(size - sizeof hd), &w->x);
    P(w, "after writing a new object's data in place");
    hd.next = next, hd.id = id, hd.size = size, hd.magic = OBJ_MAGIC;
    TRY(w, "mm_heap_tx_write", mm_heap_tx_write(w->h, off, &hd, sizeof hd));
    ov_add(&w->ov, off, &hd, sizeof hd);
  }
  w->tx_writes++;
  return 0;
}

static int op_transfer(struct work *w) {
  int a = (int)(wrnd(w) % NACCT), b = (int)((a + 1 + wrnd(w) % (NACCT - 1)) % NACCT);
  uint64_t acct[NACCT];
  rd(w, RFIELD(w, acct), acct, sizeof acct);
  uint64_t amt = wrnd(w) % (acct[a] + 1);
  acct[a] -= amt, acct[b] += amt;
  if (wrnd(w) % 4 == 0) {
    note(w, "transfer %d->%d (every account written)", a, b);
    PUT(w, RFIELD(w, acct), acct, sizeof acct, "after a transfer's writes");
  } else {
    note(w, "transfer %d->%d", a, b);
    PUT(w, RFIELD(w, acct) + 8 * (uint64_t)a, &acct[a], 8, "between the two writes of a transfer");
    PUT(w, RFIELD(w, acct) + 8 * (uint64_t)b, &acct[b], 8, "after a transfer's writes");
  }
  return 0;
}

static int op_push(struct work *w) {
  uint64_t size = pick_size(w), off = 0, link[3]; /* head, len, next_id */
  note(w, "push %" PRIu64 " B", size);
  if (wrnd(w) % 2)
    TRY(w, "mm_heap_alloc", mm_heap_alloc(w->h, size, &off));
  else
    TRY(w, "mm_heap_zalloc", mm_heap_zalloc(w->h, size, &off));
  if (w->declare_new) ADD(w, off, size);
  rd(w, RFIELD(w, head), link, sizeof link);
  int rc = fill_new(w, off, size, link[0], link[2], "after filling a new node (not yet linked)");
  if (rc) return rc;
  link[0] = off, link[1]++, link[2]++;
  PUT(w, RFIELD(w, head), link, sizeof link, "after linking a new node");
  if (wrnd(w) % 3 == 0) TRY(w, "mm_heap_name_set", mm_heap_name_set(w->h, "last", off));
  w->pushes++;
  return 0;
}

static int op_pop(struct work *w) {
  uint64_t link[2], last = 0; /* head, len */
  rd(w, RFIELD(w, head), link, sizeof link);
  uint64_t n = link[0];
  if (!n) return 0;
  struct pobj o;
  rd(w, n, &o, sizeof o);
  /* Not a node with staged writes: they would land at commit, in the
   * block the commit has just freed. */
  if (ov_overlaps(&w->ov, n, o.size)) return 0;
  note(w, "pop %" PRIu64 " B", o.size);
  link[0] = o.next, link[1]--;
  PUT(w, RFIELD(w, head), link, sizeof link, "after unlinking a node");
  if (mm_heap_name_get(w->h, "last", &last) == 0 && last == n)
    TRY(w, "mm_heap_name_del", mm_heap_name_del(w->h, "last"));
  TRY(w, "mm_heap_free", mm_heap_free(w->h, n));
  w->pops++;
  return 0;
}

static int op_modify(struct work *w) {
  uint64_t n = rd64(w, RFIELD(w, head)), len = rd64(w, RFIELD(w, len));
  if (!n) return 0;
  struct pobj o;
  rd(w, n, &o, sizeof o);
  for (uint64_t k = wrnd(w) % len; k && o.next; k--) n = o.next, rd(w, n, &o, sizeof o);
  if (wrnd(w) % 5 == 0) {
    uint64_t id = o.id ^ (wrnd(w) | 1);
    note(w, "change a node's id");
    PUT(w, n + offsetof(struct pobj, id), &id, 8, "after changing a node's id");
    return 0;
  }
  uint64_t room = o.size - sizeof o;
  if (!room) return 0;
  uint64_t at = sizeof o + wrnd(w) % room;
  len = 1 + wrnd(w) % (o.size - at);
  if (len > 3000) len = 3000;
  const void *src;
  if (wrnd(w) % 4 == 0) {
    /* From the heap: the node's first data bytes as they are now (the
     * range may overlap the one written; staged writes are not there). */
    src = mm_heap_ptr(w->h, n + sizeof o);
    note(w, "copy %" PRIu64 " B within a node", len);
  } else {
    unsigned char *b = wbuf(w, len);
    fill_random(b, (size_t)len, &w->x);
    src = b;
    note(w, "change %" PRIu64 " B of a node", len);
  }
  PUT(w, n + at, src, len, "after changing a node");
  return 0;
}

static int op_realloc_head(struct work *w) {
  uint64_t head = rd64(w, RFIELD(w, head));
  if (!head) return 0;
  struct pobj o;
  rd(w, head, &o, sizeof o);
  /* Not a node with staged writes: realloc copies what is in the heap, and
   * a move frees the old block at commit, before the writes land. */
  if (o.size > 6000 || ov_overlaps(&w->ov, head, o.size)) return 0;
  uint64_t off = head, size = sizeof o + wrnd(w) % 6000;
  note(w, "realloc the head to %" PRIu64 " B", size);
  TRY(w, "mm_heap_realloc", mm_heap_realloc(w->h, &off, size));
  unsigned char *b = wbuf(w, size);
  obj_build(w, b, size, o.next, o.id);
  PUT(w, off, b, size, "after rewriting a reallocated node"); /* moved or not */
  if (off != head) {
    uint64_t last = 0;
    if (mm_heap_name_get(w->h, "last", &last) == 0 && last == head)
      TRY(w, "mm_heap_name_set", mm_heap_name_set(w->h, "last", off));
    PUT(w, RFIELD(w, head), &off, 8, "after linking a moved node");
  }
  return 0;
}

static int op_link_side(struct work *w) {
  int i = (int)(wrnd(w) % NSIDE);
  uint64_t slot = RFIELD(w, side) + 8 * (uint64_t)i;
  if (rd64(w, slot)) return 0;
  uint64_t off = w->pending, size = 0, id = rd64(w, RFIELD(w, next_id));
  note(w, "link side object %d (%s)", i,
       !off ? "allocated in the transaction" : w->pending_written
                  ? "allocated and written outside, synced"
                  : "allocated outside, written in the transaction");
  if (off && w->pending_written) {
    /* Written outside any transaction and made durable by mm_heap_sync. */
  } else if (off) {
    /* Allocated outside the transaction: declared and written, or staged. */
    size = MM_HEAP_PTR(w->h, off, struct pobj)->size;
    unsigned char *b = wbuf(w, size);
    obj_build(w, b, size, 0, id);
    PUT(w, off, b, size, "after writing a side object");
  } else {
    size = sizeof(struct pobj) + wrnd(w) % 5000;
    TRY(w, "mm_heap_alloc", mm_heap_alloc(w->h, size, &off));
    if (w->declare_new) ADD(w, off, size);
    int rc = fill_new(w, off, size, 0, id, "after writing a side object");
    if (rc) return rc;
  }
  PUT(w, slot, &off, 8, "after linking a side object");
  if (off == w->pending) w->pending = 0;
  return 0;
}

static int op_unlink_side(struct work *w) {
  int i = (int)(wrnd(w) % NSIDE);
  uint64_t slot = RFIELD(w, side) + 8 * (uint64_t)i, off = rd64(w, slot), zero = 0;
  if (!off) return 0;
  struct pobj o;
  rd(w, off, &o, sizeof o);
  /* An object with staged writes is freed after the commit, or not now. */
  int staged = ov_overlaps(&w->ov, off, o.size);
  if (staged && !w->durable_heap) return 0;
  note(w, "unlink side object %d", i);
  PUT(w, slot, &zero, 8, "after unlinking a side object");
  if (w->durable_heap && (staged || wrnd(w) % 2))
    w->defer[w->ndefer++] = off; /* freed outside, after the commit */
  else
    TRY(w, "mm_heap_free", mm_heap_free(w->h, off));
  return 0;
}

/* mm_heap_sync inside the open transaction: the log's groups before it
 * count as checkpointed; the transaction goes on. */
static void sync_in_tx(struct work *w) {
  note(w, "mm_heap_sync%s", w->s->records ? " (records in the log)" : "");
  w->s->op = "mm_heap_sync (inside a transaction)";
  w->syncs_in_tx_rec += w->s->records != 0;
  ASSERT_OK(mm_heap_sync(w->h));
  w->syncs_in_tx++;
  P(w, "after mm_heap_sync inside a transaction");
}

static void sync_between(struct work *w) {
  w->what[0] = 0;
  w->s->what = w->what;
  note(w, "mm_heap_sync between transactions");
  w->s->op = "mm_heap_sync";
  ASSERT_OK(mm_heap_sync(w->h));
  w->s->unsafe = 0; /* every commit before it is on disk */
  w->syncs_between++;
  P(w, "after mm_heap_sync");
}

/* No transaction may leave the live heap in another state than the last
 * commit's. */
static void expect_unchanged(struct work *w, const char *after) {
  struct sim *s = w->s;
  struct pstate st;
  ov_clear(&w->ov);
  live_state(w, &st);
  if (st.commits != s->returned || memcmp(&st, &s->hist[s->returned], sizeof st))
    FAIL("the live heap %s is not as after commit %" PRIu64 " (seed %" PRIu64 ")", after,
         s->returned, s->seed);
}

/* A transaction: durable, or with `nosync` not (MM_HEAP_TX_NOSYNC in the
 * MM_HEAP_DURABLE heap, the default in the other). A non-durable one is
 * promised nothing after a power loss, not even to be whole (with an empty
 * log it leaves no record, and the kernel may have written back any part
 * of it), until a durable commit after it returns or mm_heap_sync does:
 * heap.h has that commit sync every change committed before it. So from
 * its begin until then no image is taken (the simulated kernel still
 * writes pages back); the images after it must show it. */
static void one_tx(struct work *w, int nosync) {
  struct sim *s = w->s;
  mm_heap_tx_opts_t o = {.flags = MM_HEAP_TX_DURABLE};
  if (w->durable_heap && wrnd(w) % 2) o.flags = 0; /* the heap's default: durable */
  if (nosync) o.flags = w->durable_heap ? MM_HEAP_TX_NOSYNC : 0;
  unsigned m = (unsigned)(wrnd(w) % 100);
  w->wmode = m < 25 ? WM_WRITE : m < 40 ? WM_MIXED : WM_ADD;
  w->durable_tx = !nosync;
  if (nosync) s->unsafe = 1;
  ov_clear(&w->ov);
  uint64_t pending = w->pending, writes0 = w->tx_writes;
  int pending_written = w->pending_written;
  w->ndefer = 0;
  w->what[0] = 0;
  note(w, "%s, %s",
       nosync ? (o.flags ? "MM_HEAP_TX_NOSYNC" : "not durable")
              : o.flags ? "MM_HEAP_TX_DURABLE" : "the heap's default",
       wm_name[w->wmode]);
  if (!nosync && s->unsafe) /* for the report */
    note(w, "after a non-durable transaction that %s", w->nosync_last ? "aborted" : "committed");
  s->what = w->what;
  s->op = "mm_heap_tx_begin";
  ASSERT_OK(mm_heap_tx_begin(w->h, &o));
  P(w, "after mm_heap_tx_begin");
  /* A third of them only transfer and change nodes: with no allocation
   * they commit with one sync, and their records pile up in the log until
   * a checkpoint; power-loss recovery writes them all again. */
  int small = wrnd(w) % 3 == 0 || (s->unsafe && !nosync && wrnd(w) % 2), nops = 1 + (int)(wrnd(w) % 3);
  if (small) note(w, "no allocation");
  /* mm_heap_sync inside it, mostly when the log holds records (it then
   * marks them checkpointed). */
  int sync_at = wrnd(w) % 100 < (s->records ? 30u : 4u) ? (int)(wrnd(w) % (unsigned)(nops + 1))
                                                        : -1;
  uint64_t count = rd64(w, RFIELD(w, commits)) + 1;
  int rc = tx_put(w, RFIELD(w, commits), &count, 8, "after writing the counter");
  for (int k = 0; k < nops && !rc; k++) {
    if (k == sync_at) sync_in_tx(w);
    unsigned c = (unsigned)(wrnd(w) % 100);
    if (small) rc = c < 60 ? op_transfer(w) : op_modify(w);
    else if (c < 30) rc = op_transfer(w);
    else if (c < 55) rc = rd64(w, RFIELD(w, len)) < LIST_MAX ? op_push(w) : op_pop(w);
    else if (c < 72) rc = op_pop(w);
    else if (c < 82) rc = op_modify(w);
    else if (c < 87) rc = op_realloc_head(w);
    else if (c < 94) rc = op_link_side(w);
    else rc = op_unlink_side(w);
  }
  if (!rc && sync_at == nops) sync_in_tx(w);
  if (rc) w->efull++;
  if (rc || wrnd(w) % 100 < 15) {
    note(w, "%s", rc ? "abort (log full)" : "abort");
    s->op = "mm_heap_tx_abort";
    ASSERT_EQ(mm_heap_tx_abort(w->h), 0);
    P(w, "after mm_heap_tx_abort");
    w->pending = pending, w->pending_written = pending_written;
    w->ndefer = 0;
    expect_unchanged(w, "after an abort");
    w->aborted++;
    if (nosync) w->nosync_last = 1;
    return;
  }
  /* The state the commit must leave: the heap with the staged writes. */
  struct pstate st, st2;
  live_state(w, &st);
  uint64_t c = st.commits;
  ASSERT_EQ(c, s->returned + 1);
  hist_set(s, c, &st);
  note(w, "commit");
  s->op = "mm_heap_tx_commit";
  s->in_commit = !nosync;
  s->commit_syncs = 0;
  rc = mm_heap_tx_commit(w->h);
  s->in_commit = 0;
  if (rc == MM_EFULL) {
    /* The frees applied at commit found the log full: rolled back, as by
     * an abort (heap.h). */
    P(w, "after mm_heap_tx_commit failed");
    w->pending = pending, w->pending_written = pending_written;
    w->ndefer = 0;
    expect_unchanged(w, "after a failed commit");
    w->aborted++, w->efull++;
    if (nosync) w->nosync_last = 1;
    return;
  }
  if (rc) FAIL("mm_heap_tx_commit: %s (seed %" PRIu64 ")", mm_errname(rc), s->seed);
  ov_clear(&w->ov);
  s->returned++;
  w->committed++;
  w->staged_commits += !nosync && w->tx_writes != writes0;
  w->nosync_data += nosync;
  if (nosync) w->nosync_last = 0;
  if (!nosync && s->unsafe) {
    /* The non-durable commits before it are on disk now: a power loss
     * here, before a checkpoint, must find them there. */
    s->unsafe = 0;
    if (wrnd(w) % 2) take_image(s, "after a durable commit that followed non-durable ones", 0, 0);
  }
  w->one_sync += s->commit_syncs == 1;
  s->records += s->commit_syncs == 1;
  P(w, "after mm_heap_tx_commit returned");
  live_state(w, &st2);
  if (memcmp(&st, &st2, sizeof st))
    FAIL("the live heap after commit %" PRIu64 " is not what the transaction wrote (in place,"
         " then its tx_writes in order; seed %" PRIu64 ")", c, s->seed);
  if (w->ndefer) w->what[0] = 0, note(w, "free unlinked side objects");
  for (int i = 0; i < w->ndefer; i++) {
    s->op = "mm_heap_free (outside a transaction)";
    ASSERT_OK(mm_heap_free(w->h, w->defer[i]));
    P(w, "after a plain free");
  }
  w->ndefer = 0;
}

/* Change some bytes of a junk object or a temporary allocation. */
static int op_scribble(struct work *w) {
  uint64_t cand[NJUNK + NTEMP], csz[NJUNK + NTEMP];
  int nc = 0;
  for (int i = 0; i < NJUNK; i++) cand[nc] = w->junk[i], csz[nc++] = w->jsize[i];
  for (int i = 0; i < NTEMP; i++)
    if (w->temps[i]) cand[nc] = w->temps[i], csz[nc++] = w->tsize[i];
  int k = (int)(wrnd(w) % (unsigned)nc);
  uint64_t at = wrnd(w) % csz[k], len = 1 + wrnd(w) % (csz[k] - at);
  if (len > 2000) len = 2000;
  note(w, "change %" PRIu64 " B of a %s", len, k < NJUNK ? "junk object" : "temporary");
  unsigned char *b = wbuf(w, len);
  fill_random(b, (size_t)len, &w->x);
  PUT(w, cand[k] + at, b, len, "after a non-durable write");
  return 0;
}

/* A non-durable transaction that changes only bytes the checker does not
 * compare (junk objects, temporaries) and allocates nothing: images need
 * not stop (see one_tx). One taken after it must still show a heap that
 * opens and checks clean, with the state of the last commit; this
 * transaction's record, which it leaves in a log that holds records, is
 * written again by recovery after a power loss, between the durable
 * records around it. */
static void nosync_junk_tx(struct work *w) {
  struct sim *s = w->s;
  mm_heap_tx_opts_t o = {.flags = w->durable_heap ? MM_HEAP_TX_NOSYNC : 0};
  unsigned m = (unsigned)(wrnd(w) % 100);
  w->wmode = m < 40 ? WM_WRITE : m < 60 ? WM_MIXED : WM_ADD;
  w->durable_tx = 0;
  ov_clear(&w->ov);
  w->what[0] = 0;
  note(w, "%s, %s", o.flags ? "MM_HEAP_TX_NOSYNC" : "non-durable", wm_name[w->wmode]);
  s->what = w->what;
  s->op = "mm_heap_tx_begin";
  ASSERT_OK(mm_heap_tx_begin(w->h, &o));
  P(w, "after mm_heap_tx_begin");
  int rc = 0;
  for (int n = 1 + (int)(wrnd(w) % 3); n > 0 && !rc; n--) {
    rc = op_scribble(w);
    if (!rc && wrnd(w) % 100 < (s->records ? 20u : 5u)) sync_in_tx(w);
  }
  if (rc || wrnd(w) % 100 < 15) {
    note(w, "%s", rc ? "abort (log full)" : "abort");
    s->op = "mm_heap_tx_abort";
    ASSERT_EQ(mm_heap_tx_abort(w->h), 0);
    P(w, "after mm_heap_tx_abort");
  } else {
    note(w, "commit");
    s->op = "mm_heap_tx_commit (not durable)";
    rc = mm_heap_tx_commit(w->h);
    if (rc && rc != MM_EFULL) FAIL("mm_heap_tx_commit: %s (seed %" PRIu64 ")", mm_errname(rc),
                                   s->seed);
    P(w, "after a non-durable commit");
  }
  w->nosync++;
  expect_unchanged(w, "after a non-durable transaction");
}

/* Between transactions, in a MM_HEAP_DURABLE heap: plain allocs and frees,
 * and objects written outside transactions. */
static void plain_ops(struct work *w) {
  struct sim *s = w->s;
  unsigned c = (unsigned)(wrnd(w) % 100);
  w->what[0] = 0;
  s->what = w->what;
  note(w, "plain operations");
  if (c < 40) {
    int k = (int)(wrnd(w) % NTEMP);
    if (w->temps[k]) {
      s->op = "mm_heap_free (outside a transaction)";
      ASSERT_OK(mm_heap_free(w->h, w->temps[k]));
      w->temps[k] = 0;
      P(w, "after a plain free");
    } else {
      uint64_t size = pick_size(w);
      s->op = "mm_heap_alloc (outside a transaction)";
      ASSERT_OK(mm_heap_alloc(w->h, size, &w->temps[k]));
      w->tsize[k] = size;
      P(w, "after a plain alloc");
      fill_random(mm_heap_ptr(w->h, w->temps[k]), (size_t)size, &w->x);
      P(w, "after writing a plain allocation");
    }
    w->plain++;
  } else if (c < 60 && !w->pending) {
    uint64_t size = sizeof(struct pobj) + wrnd(w) % 5000;
    s->op = "mm_heap_alloc (a side object, outside a transaction)";
    ASSERT_OK(mm_heap_alloc(w->h, size, &w->pending));
    P(w, "after a plain alloc");
    MM_HEAP_PTR(w->h, w->pending, struct pobj)->size = size;
    w->pending_written = 0;
    if (wrnd(w) % 2) {
      obj_build(w, mm_heap_ptr(w->h, w->pending), size, 0, ROOT(w)->next_id);
      P(w, "after writing a side object outside a transaction");
      s->op = "mm_heap_sync";
      ASSERT_OK(mm_heap_sync(w->h));
      w->pending_written = 1;
      P(w, "after mm_heap_sync");
    }
    w->plain++;
  } else if (c < 63) {
    s->op = "mm_heap_sync";
    ASSERT_OK(mm_heap_sync(w->h));
    P(w, "after mm_heap_sync");
  }
}

/* Where the heap and its images go: tmpfs if possible. A directory made
 * here is removed at exit, even after a failure. */
static char power_tmp[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

static void power_tmp_remove(void) {
  if (power_tmp[0]) nftw(power_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *power_dir(void) {
  const char *e = getenv("MM_POWER_DIR");
  if (e && *e) return e;
  if (!power_tmp[0]) {
    snprintf(power_tmp, sizeof power_tmp, "/dev/shm/mmpower.XXXXXX");
    if (!mkdtemp(power_tmp)) {
      power_tmp[0] = 0;
      return mm_test_dir();
    }
    atexit(power_tmp_remove);
  }
  return power_tmp;
}

/* "N bad (open N, check N, ...)" */
static const char *bad_counts(const struct sim *s, char *buf, size_t cap) {
  snprintf(buf, cap, "%" PRIu64 " bad (failed: open %" PRIu64 ", check %" PRIu64
           ", invariants %" PRIu64 ", commit count %" PRIu64 ", state %" PRIu64
           ", a transaction after recovery %" PRIu64 ")", s->bad, s->by_stage[1],
           s->by_stage[2], s->by_stage[3], s->by_stage[4], s->by_stage[5], s->by_stage[6]);
  return buf;
}

struct run_cfg {
  int durable_heap, lie;
  uint64_t iters, seed;
  int stop_on_bad, quiet;
};

/* One run of the simulator over a fresh heap; the counts come back in *out
 * (its checker stopped, its buffers freed). */
static void run_sim(const struct run_cfg *cfg, struct sim *out) {
  static int runs;
  char path[512], img[512];
  snprintf(path, sizeof path, "%s/heap%d", power_dir(), runs);
  snprintf(img, sizeof img, "%s/image%d", power_dir(), runs++);
  struct sim *s = calloc(1, sizeof *s);
  ASSERT(s != NULL);
  s->img = img;
  s->seed = cfg->seed;
  s->x = cfg->seed * 0x9E3779B97F4A7C15ull | 1;
  s->pg = (size_t)sysconf(_SC_PAGESIZE);
  s->lie = cfg->lie;
  s->tag = !cfg->durable_heap;
  s->stop_on_bad = cfg->stop_on_bad, s->quiet = cfg->quiet;
  /* Per mille; the syncs of a commit are where write-ahead goes wrong. */
  s->wb_pct = 30, s->crash_pct = 25, s->crash_sync_pct = 50, s->crash_commit_pct = 150;
  s->op = "setup";
  checker_start(&s->ck, s->img); /* before the heap is opened */

  struct work w;
  memset(&w, 0, sizeof w);
  w.s = s;
  w.x = cfg->seed ^ 0xD1B54A32D192ED03ull;
  if (!w.x) w.x = 1;
  w.durable_heap = cfg->durable_heap;
  w.declare_new = env_u64("MM_POWER_DECLARE_NEW", 0) != 0;
  mm_heap_opts_t o = {.flags = MM_HEAP_CREATE | MM_HEAP_EXCL |
                               (cfg->durable_heap ? MM_HEAP_DURABLE : 0),
                      .chunk_size = CHUNK, .log_size = LOGSZ, .max_size = MAXSZ,
                      .initial_size = 2 * CHUNK};
  ASSERT_OK(mm_heap_open(&w.h, path, &o));
  s->h = w.h;
  s->base = mm_heap_base(w.h);
  mm_heap_tx_opts_t txo = {.flags = MM_HEAP_TX_DURABLE};
  ASSERT_OK(mm_heap_tx_begin(w.h, &txo));
  ASSERT_OK(mm_heap_zalloc(w.h, sizeof(struct proot), &w.ro));
  struct proot *r = ROOT(&w);
  r->magic = ROOT_MAGIC;
  for (int i = 0; i < NACCT; i++) r->acct[i] = ACCT0;
  ASSERT_OK(mm_heap_set_root(w.h, w.ro));
  ASSERT_OK(mm_heap_name_set(w.h, "root", w.ro));
  for (int i = 0; i < NJUNK; i++) { /* a size class, a page run, whole pages */
    w.jsize[i] = i == 0 ? 700 : i == 1 ? 3000 : 9000;
    ASSERT_OK(mm_heap_zalloc(w.h, w.jsize[i], &w.junk[i]));
  }
  ASSERT_OK(mm_heap_tx_commit(w.h));
  ASSERT_OK(mm_heap_sync(w.h));
  struct pstate st0;
  live_state(&w, &st0);
  hist_set(s, 0, &st0);

  /* The disk now holds the file as it is. */
  s->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) FAIL("open %s: %s", path, strerror(errno));
  s->dlen = file_len(s);
  grow_buf(&s->D, &s->dcap, s->dlen);
  if (pread(s->fd, s->D, (size_t)s->dlen, 0) != (ssize_t)s->dlen)
    FAIL("pread %s: %s", path, strerror(errno));
  /* The heap needs its name no more (nor do the images, once checked): a
   * test killed at its time limit leaves next to nothing in /dev/shm. */
  unlink(path);

  hooked = s;
  mm__sys_msync_hook(msync_hook, s);
  for (uint64_t it = 0; it < cfg->iters; it++) {
    s->iter = it;
    if (cfg->durable_heap)
      for (int k = (int)(wrnd(&w) % 3); k > 0; k--) plain_ops(&w);
    unsigned c = (unsigned)(wrnd(&w) % 100);
    if (c < 6) nosync_junk_tx(&w);
    else if (c < 12) {
      /* Half of them on an emptied log: then they leave no record, and
       * only the durable commit after them can put them on disk. */
      if (wrnd(&w) % 2) sync_between(&w);
      one_tx(&w, 1);
    }
    else if (c < 16) sync_between(&w);
    one_tx(&w, 0);
    if (s->stop_on_bad && s->bad) break;
  }
  mm__sys_msync_hook(NULL, NULL);
  hooked = NULL;

  /* The live heap itself must be sound at the end. */
  char msg[480];
  if (check_clean(w.h, msg, sizeof msg, "of the live heap")) FAIL("%s", msg);
  ASSERT_OK(mm_heap_close(w.h));
  checker_stop(&s->ck);
  close(s->fd);
  char bc[300];
  if (!cfg->quiet || s->bad)
    printf("# %s heap, %s: %" PRIu64 " transactions (%" PRIu64 " committed, %" PRIu64
           " aborted, %" PRIu64 " of them on a full log), %" PRIu64 " pushes, %" PRIu64
           " pops, %" PRIu64 " plain operations; %" PRIu64 " commits with tx_write (%" PRIu64
           " tx_writes), %" PRIu64 " commits with one sync, %" PRIu64 " non-durable transactions (%"
           PRIu64 " on the compared state, then %" PRIu64 " images skipped), %" PRIu64 " mm_heap_sync in a"
           " transaction (%" PRIu64 " after records) and %" PRIu64 " between; %" PRIu64 " msyncs seen, %" PRIu64
           " applied, %" PRIu64 " lied about; %" PRIu64 " pages written back at random;"
           " %" PRIu64 " images checked, %" PRIu64 " taken inside a commit (%" PRIu64
           " of those showed it), %s\n",
           cfg->durable_heap ? "MM_HEAP_DURABLE" : "non-durable (MM_HEAP_TX_DURABLE)",
           lie_name[cfg->lie], w.committed + w.aborted, w.committed, w.aborted, w.efull,
           w.pushes, w.pops, w.plain, w.staged_commits, w.tx_writes, w.one_sync, w.nosync + w.nosync_data, w.nosync_data, s->skipped, w.syncs_in_tx, w.syncs_in_tx_rec,
           w.syncs_between, s->syncs, s->applied, s->lied, s->wbpages, s->images,
           s->inflight, s->inflight_new, bad_counts(s, bc, sizeof bc));
  free(w.ov.v), free(w.ov.b), free(w.buf);
  free(s->D), free(s->I), free(s->dirty), free(s->hist);
  s->D = s->I = NULL, s->dirty = NULL, s->hist = NULL, s->what = NULL;
  *out = *s;
  free(s);
}

static uint64_t power_seed(void) {
  uint64_t seed = env_u64("MM_POWER_SEED", 0);
  if (!seed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    seed = seed ? seed : 1;
  }
  printf("# seed %" PRIu64 " (MM_POWER_SEED=%" PRIu64 " replays it)\n", seed, seed);
  return seed;
}

#ifndef MM_TEST_SAN
#define MM_TEST_SAN ""
#endif

static uint64_t power_iters(uint64_t dflt) {
  if (MM_TEST_SAN[0]) dflt /= 2; /* sanitized builds are slower */
  uint64_t n = env_u64("MM_POWER_ITERS", dflt);
  return n ? n : dflt;
}

/* ---- the tests -------------------------------------------------------------- */

TEST_T(heap_power_loss_keeps_every_durable_commit_and_nothing_else, 120) {
  uint64_t seed = power_seed(), iters = power_iters(800);
  struct sim a, b;
  struct run_cfg ca = {.durable_heap = 1, .lie = LIE_NONE, .iters = iters, .seed = seed};
  run_sim(&ca, &a);
  struct run_cfg cb = {.durable_heap = 0, .lie = LIE_NONE, .iters = iters, .seed = seed + 1};
  run_sim(&cb, &b);
  ASSERT(a.images > 0 && b.images > 0);
  if (a.bad || b.bad)
    FAIL("%" PRIu64 " of %" PRIu64 " power-loss images were bad (seed %" PRIu64
         "; MM_POWER_SEED=%" PRIu64 " replays; the first ones are described above)",
         a.bad + b.bad, a.images + b.images, seed, seed);
}

/* The negative control: a disk that drops syncs the library relies on must
 * be caught. A lie that never fires (no sync of its class) proves nothing
 * either way and is only reported; at least one must fire. */
TEST_T(heap_power_loss_simulator_catches_a_lying_disk, 120) {
  uint64_t seed = power_seed(), iters = power_iters(800);
  int fired = 0;
  for (int lie = LIE_ALTERNATE; lie <= LIE_SMALL; lie++) {
    struct sim s;
    struct run_cfg c = {.durable_heap = 1, .lie = lie, .iters = iters, .seed = seed + (uint64_t)lie,
                        .stop_on_bad = !getenv("MM_POWER_ITERS"), .quiet = 1};
    run_sim(&c, &s);
    char bc[300];
    printf("# %s: %" PRIu64 " of %" PRIu64 " msyncs dropped; of %" PRIu64 " images, %s\n",
           lie_name[lie], s.lied, s.syncs, s.images, bad_counts(&s, bc, sizeof bc));
    if (!s.lied) continue;
    fired++;
    if (!s.bad)
      FAIL("%s dropped %" PRIu64 " msyncs, yet none of %" PRIu64
           " images was bad: the simulator is too weak (seed %" PRIu64 ")",
           lie_name[lie], s.lied, s.images, seed);
  }
  if (!fired) FAIL("no lie fired: the library made no msync the lies could drop");
}
