/*
 * heap.c - `memmap bench heap`: the persistent heap (mm_heap) against the
 * allocators and the database it stands in for, in one process.
 *
 * Small objects: a working set of N live objects of random sizes, 16 to
 * 256 B, is allocated first; then each operation frees the object in a
 * random slot and allocates a new one (random size) into it, writing its
 * first byte so that no allocator gets away without touching the memory.
 * One op = one free + one alloc. N = 64 (fits in any cache) and 1,000,000
 * (quick: 100,000, and the case's name says so). Methods:
 *   glibc     malloc/free (the baseline);
 *   heap      mm_heap_alloc/mm_heap_free in a heap file created with the
 *             defaults in --dir;
 *   jemalloc  mallocx/dallocx (or its malloc/free) from libjemalloc.so.2,
 *   mimalloc  mi_malloc/mi_free from libmimalloc.so.2, each loaded with
 *             dlopen when installed (bench/setup.sh installs them), so the
 *             build needs neither.
 * Rows carry bytes = N x 136 B (the mean object size). jemalloc needs more
 * static TLS than glibc keeps for dlopen: see bench_heap_prepare().
 *
 * Commits: a transaction that changes one 64-byte value, chosen at random
 * among 1,000: mm_heap_tx_begin, mm_heap_tx_add of the 64 B, the write,
 * mm_heap_tx_commit ("in place"); the same with mm_heap_tx_write of the
 * 64 B instead of tx_add and the write ("tx_write": a durable one is
 * write-ahead, one sync of the log per commit, the data at checkpoints,
 * whose cost the time-boxed run includes); and one that allocates (see
 * commit_heap_alloc). Process-crash atomic (the default) against LMDB
 * putting a 64-byte value under one of 1,000 8-byte keys, one transaction
 * per put, with MDB_NOSYNC (the baseline); durable (MM_HEAP_TX_DURABLE)
 * against LMDB with its default syncs (the baseline). Durable commits take
 * milliseconds each, so those runs are time-boxed: about 1 s per method
 * (quick: 0.3 s). LMDB is loaded with dlopen("liblmdb.so.0") when installed;
 * without it the heap's rows stand alone.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

#define BATCH 1000      /* operations per timed call */
#define MEAN_SIZE 136   /* mean of 16..256 */
#define NVALUES 1000    /* values (keys) the commits choose from */

/* Load a symbol into a function pointer without converting between object
 * and function pointers (which ISO C does not define). */
static int load_sym(void *lib, const char *name, void *fnptr) {
  void *s = dlsym(lib, name);
  if (!s) return -1;
  memcpy(fnptr, &s, sizeof s);
  return 0;
}

/* ---- small objects ------------------------------------------------------ */

enum { A_GLIBC, A_HEAP, A_JEMALLOC, A_MIMALLOC, NALLOC };
static const char *const alloc_names[NALLOC] = {"glibc", "heap", "jemalloc", "mimalloc"};
static const char *const alloc_heads[NALLOC] = {"glibc malloc", "heap", "jemalloc",
                                                "mimalloc"};

struct allocators {
  void *(*je_mallocx)(size_t, int);
  void (*je_dallocx)(void *, int);
  void *(*je_malloc)(size_t);
  void (*je_free)(void *);
  void *(*mi_malloc)(size_t);
  void (*mi_free)(void *);
  void *je_lib, *mi_lib;
};

struct churn {
  int kind;
  size_t n;                /* live objects */
  void **slots;            /* pointer allocators */
  uint64_t *offs;          /* the heap */
  mm_heap_t *heap;
  unsigned char *base;     /* mm_heap_base(heap) */
  const struct allocators *al;
  uint64_t x;              /* xorshift state */
  int fail;
};

static inline uint64_t next_rand(uint64_t *x) {
  uint64_t v = *x;
  v ^= v << 13, v ^= v >> 7, v ^= v << 17;
  return *x = v;
}

/* A slot in [0, n) and a size in [16, 256], from one random word. */
static inline size_t rand_slot(uint64_t r, size_t n) {
  return (size_t)(((r >> 32) * (uint64_t)n) >> 32);
}
static inline size_t rand_size(uint64_t r) {
  return 16 + (size_t)(((r & 0xffff) * 241) >> 16);
}

static inline void *p_alloc(const struct churn *c, size_t size) {
  switch (c->kind) {
  case A_JEMALLOC:
    return c->al->je_mallocx ? c->al->je_mallocx(size, 0) : c->al->je_malloc(size);
  case A_MIMALLOC:
    return c->al->mi_malloc(size);
  default:
    return malloc(size);
  }
}

static inline void p_free(const struct churn *c, void *p) {
  switch (c->kind) {
  case A_JEMALLOC:
    if (c->al->je_dallocx) c->al->je_dallocx(p, 0);
    else c->al->je_free(p);
    break;
  case A_MIMALLOC:
    c->al->mi_free(p);
    break;
  default:
    free(p);
  }
}

/* The loops are written out per method so that each calls its allocator
 * directly (glibc, the heap) or through one pointer (the dlopened ones),
 * with no dispatch per operation. */
static void churn_glibc(void *arg) {
  struct churn *c = arg;
  for (int i = 0; i < BATCH; i++) {
    uint64_t r = next_rand(&c->x);
    size_t k = rand_slot(r, c->n);
    free(c->slots[k]);
    unsigned char *p = malloc(rand_size(r));
    if (!p) {
      c->fail = -ENOMEM;
      c->slots[k] = NULL;
      return;
    }
    p[0] = (unsigned char)r;
    c->slots[k] = p;
  }
}

static void churn_jemalloc(void *arg) {
  struct churn *c = arg;
  void *(*mallocx)(size_t, int) = c->al->je_mallocx;
  void (*dallocx)(void *, int) = c->al->je_dallocx;
  for (int i = 0; i < BATCH; i++) {
    uint64_t r = next_rand(&c->x);
    size_t k = rand_slot(r, c->n);
    unsigned char *p;
    if (mallocx) {
      dallocx(c->slots[k], 0);
      p = mallocx(rand_size(r), 0);
    } else {
      c->al->je_free(c->slots[k]);
      p = c->al->je_malloc(rand_size(r));
    }
    c->slots[k] = p;
    if (!p) {
      c->fail = -ENOMEM;
      return;
    }
    p[0] = (unsigned char)r;
  }
}

static void churn_mimalloc(void *arg) {
  struct churn *c = arg;
  void *(*mi_malloc)(size_t) = c->al->mi_malloc;
  void (*mi_free)(void *) = c->al->mi_free;
  for (int i = 0; i < BATCH; i++) {
    uint64_t r = next_rand(&c->x);
    size_t k = rand_slot(r, c->n);
    mi_free(c->slots[k]);
    unsigned char *p = mi_malloc(rand_size(r));
    c->slots[k] = p;
    if (!p) {
      c->fail = -ENOMEM;
      return;
    }
    p[0] = (unsigned char)r;
  }
}

static void churn_heap(void *arg) {
  struct churn *c = arg;
  for (int i = 0; i < BATCH; i++) {
    uint64_t r = next_rand(&c->x);
    size_t k = rand_slot(r, c->n);
    int rc = mm_heap_free(c->heap, c->offs[k]);
    c->offs[k] = 0;
    if (rc == 0) rc = mm_heap_alloc(c->heap, rand_size(r), &c->offs[k]);
    if (rc < 0) {
      c->fail = rc;
      c->offs[k] = 0;
      return;
    }
    c->base[c->offs[k]] = (unsigned char)r;
  }
}

static const bench_fn churn_fns[NALLOC] = {churn_glibc, churn_heap, churn_jemalloc,
                                           churn_mimalloc};

static int churn_fill(struct churn *c) {
  for (size_t k = 0; k < c->n; k++) {
    uint64_t r = next_rand(&c->x);
    if (c->kind == A_HEAP) {
      int rc = mm_heap_alloc(c->heap, rand_size(r), &c->offs[k]);
      if (rc < 0) return rc;
      c->base[c->offs[k]] = (unsigned char)r;
    } else {
      unsigned char *p = p_alloc(c, rand_size(r));
      if (!p) return -ENOMEM;
      p[0] = (unsigned char)r;
      c->slots[k] = p;
    }
  }
  return 0;
}

static void churn_release(struct churn *c) {
  if (c->slots)
    for (size_t k = 0; k < c->n; k++)
      if (c->slots[k]) p_free(c, c->slots[k]);
  free(c->slots);
  free(c->offs);
  c->slots = NULL;
  c->offs = NULL;
}

/* The allocators stay loaded (RTLD_NODELETE): a malloc library may leave
 * thread-exit destructors behind that must not point into unmapped code. */
#define ALLOC_DLOPEN (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)
#define TLS_ENV "MEMMAP_BENCH_STATIC_TLS"

void bench_heap_prepare(void) {
  /* Debian's libjemalloc.so.2 keeps its thread state in initial-exec TLS
   * (2.6 KiB), more than glibc keeps spare for libraries loaded after
   * start-up (512 B by default), so dlopen fails with "cannot allocate
   * memory in static TLS block". The tunable glibc.rtld.optional_static_tls,
   * read at start-up, makes room: run this command again with it set. The
   * variable TLS_ENV stops a second try. */
  if (getenv(TLS_ENV)) return;
  void *je = dlopen("libjemalloc.so.2", ALLOC_DLOPEN);
  if (je) return; /* loaded: bench_heap will find it so */
  const char *err = dlerror();
  if (!err || !strstr(err, "static TLS")) return;
  static char cmdline[65536];
  char *args[1024];
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
  close(fd);
  if (n <= 0 || n == (ssize_t)sizeof cmdline - 1) return;
  cmdline[n] = 0;
  int argc = 0;
  for (char *p = cmdline; p < cmdline + n && argc < 1023; p += strlen(p) + 1) args[argc++] = p;
  args[argc] = NULL;
  static char tunables[4096];
  const char *old = getenv("GLIBC_TUNABLES");
  int w = snprintf(tunables, sizeof tunables, "%s%sglibc.rtld.optional_static_tls=8192",
                   old ? old : "", old && *old ? ":" : "");
  if (w < 0 || w >= (int)sizeof tunables) return;
  if (setenv("GLIBC_TUNABLES", tunables, 1) < 0 || setenv(TLS_ENV, "1", 1) < 0) return;
  fflush(NULL);
  execv("/proc/self/exe", args);
  /* The exec failed: go on, without jemalloc. */
}

/* Why a library is not there: not installed, or installed but not
 * loadable (dlerror's words). */
static void why_missing(char *buf, size_t len, const char *name, const char *err) {
  size_t at = strlen(buf);
  if (!err || strstr(err, "No such file") || strstr(err, "cannot open shared object"))
    snprintf(buf + at, len - at, "%s%s is not installed (bench/setup.sh installs it)",
             at ? "; " : "", name);
  else
    snprintf(buf + at, len - at, "%s%s could not be loaded (%s)", at ? "; " : "", name, err);
}

static void load_allocators(struct allocators *al, char *missing, size_t len) {
  memset(al, 0, sizeof *al);
  missing[0] = 0;
  al->je_lib = dlopen("libjemalloc.so.2", ALLOC_DLOPEN);
  if (!al->je_lib) {
    why_missing(missing, len, "jemalloc", dlerror());
  } else if (load_sym(al->je_lib, "mallocx", &al->je_mallocx) < 0 ||
             load_sym(al->je_lib, "dallocx", &al->je_dallocx) < 0) {
    al->je_mallocx = NULL;
    al->je_dallocx = NULL;
    if (load_sym(al->je_lib, "malloc", &al->je_malloc) < 0 ||
        load_sym(al->je_lib, "free", &al->je_free) < 0) {
      al->je_lib = NULL;
      why_missing(missing, len, "jemalloc", "no mallocx, no malloc");
    }
  }
  al->mi_lib = dlopen("libmimalloc.so.2", ALLOC_DLOPEN);
  if (!al->mi_lib) {
    why_missing(missing, len, "mimalloc", dlerror());
  } else if (load_sym(al->mi_lib, "mi_malloc", &al->mi_malloc) < 0 ||
             load_sym(al->mi_lib, "mi_free", &al->mi_free) < 0) {
    al->mi_lib = NULL;
    why_missing(missing, len, "mimalloc", "no mi_malloc");
  }
}

/* One working-set size: every available allocator, interleaved. */
static int churn_case(struct bench *b, const struct allocators *al, size_t n,
                      const char *case_, const char *path, int reps, double target) {
  struct churn c[NALLOC];
  bench_fn fns[NALLOC];
  void *args[NALLOC];
  int idx[NALLOC], nm = 0, rc = 0;
  memset(c, 0, sizeof c);
  for (int m = 0; m < NALLOC; m++) {
    if (m == A_JEMALLOC && !al->je_lib) continue;
    if (m == A_MIMALLOC && !al->mi_lib) continue;
    idx[nm++] = m;
  }
  mm_heap_t *heap = NULL;
  unlink(path);
  mm_heap_opts_t ho = {.flags = MM_HEAP_CREATE | MM_HEAP_EXCL};
  rc = mm_heap_open(&heap, path, &ho);
  for (int i = 0; i < nm && rc == 0; i++) {
    int m = idx[i];
    struct churn *cm = &c[m];
    cm->kind = m;
    cm->n = n;
    cm->al = al;
    cm->x = 0x9E3779B97F4A7C15ull + (uint64_t)n;
    if (m == A_HEAP) {
      cm->heap = heap;
      cm->base = mm_heap_base(heap);
      cm->offs = calloc(n, sizeof *cm->offs);
    } else {
      cm->slots = calloc(n, sizeof *cm->slots);
    }
    if (!cm->offs && !cm->slots) rc = -ENOMEM;
    if (rc == 0) {
      bench_progress(b, "heap: %s: filling %zu objects, %s", case_, n, alloc_names[m]);
      rc = churn_fill(cm);
    }
    fns[i] = churn_fns[m];
    args[i] = cm;
  }
  struct bench_row rows[NALLOC];
  memset(rows, 0, sizeof rows);
  if (rc == 0) {
    bench_progress(b, "heap: %s: alloc+free", case_);
    bench_time_set(fns, args, nm, reps, target, rows);
    for (int i = 0; i < nm; i++)
      if (c[idx[i]].fail) rc = c[idx[i]].fail;
  }
  for (int i = 0; i < nm && rc == 0; i++) {
    int m = idx[i];
    struct bench_row *r = &rows[i];
    snprintf(r->suite, sizeof r->suite, "heap");
    snprintf(r->case_, sizeof r->case_, "%s", case_);
    snprintf(r->method, sizeof r->method, "%s", alloc_names[m]);
    snprintf(r->baseline, sizeof r->baseline, "%s", m == A_GLIBC ? "" : "glibc");
    r->bytes = (uint64_t)n * MEAN_SIZE;
    r->ops *= BATCH;
    r->seconds /= BATCH, r->min /= BATCH, r->max /= BATCH;
    snprintf(r->note, sizeof r->note, "ops_per_s=%.4g live=%zu", 1 / r->seconds, n);
    bench_add(b, r); /* glibc is first: the others find their baseline */
  }
  for (int m = 0; m < NALLOC; m++) churn_release(&c[m]);
  (void)mm_heap_close(heap);
  unlink(path);
  return rc;
}

/* ---- commits -------------------------------------------------------------- */

/* The part of lmdb.h used here (checked against LMDB 0.9's header). */
typedef struct MDB_env MDB_env;
typedef struct MDB_txn MDB_txn;
typedef unsigned int MDB_dbi;
typedef struct MDB_val {
  size_t mv_size;
  void *mv_data;
} MDB_val;
#define MDB_NOSUBDIR 0x4000
#define MDB_NOSYNC 0x10000

struct lmdb {
  void *lib;
  int (*env_create)(MDB_env **env);
  int (*env_set_mapsize)(MDB_env *env, size_t size);
  int (*env_open)(MDB_env *env, const char *path, unsigned int flags, mode_t mode);
  void (*env_close)(MDB_env *env);
  int (*txn_begin)(MDB_env *env, MDB_txn *parent, unsigned int flags, MDB_txn **txn);
  int (*txn_commit)(MDB_txn *txn);
  void (*txn_abort)(MDB_txn *txn);
  int (*dbi_open)(MDB_txn *txn, const char *name, unsigned int flags, MDB_dbi *dbi);
  int (*put)(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags);
};

static int lmdb_load(struct lmdb *l) {
  memset(l, 0, sizeof *l);
  l->lib = dlopen("liblmdb.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!l->lib) return -1;
  if (load_sym(l->lib, "mdb_env_create", &l->env_create) < 0 ||
      load_sym(l->lib, "mdb_env_set_mapsize", &l->env_set_mapsize) < 0 ||
      load_sym(l->lib, "mdb_env_open", &l->env_open) < 0 ||
      load_sym(l->lib, "mdb_env_close", &l->env_close) < 0 ||
      load_sym(l->lib, "mdb_txn_begin", &l->txn_begin) < 0 ||
      load_sym(l->lib, "mdb_txn_commit", &l->txn_commit) < 0 ||
      load_sym(l->lib, "mdb_txn_abort", &l->txn_abort) < 0 ||
      load_sym(l->lib, "mdb_dbi_open", &l->dbi_open) < 0 ||
      load_sym(l->lib, "mdb_put", &l->put) < 0) {
    dlclose(l->lib);
    l->lib = NULL;
    return -1;
  }
  return 0;
}

struct commit {
  /* the heap */
  mm_heap_t *heap;
  unsigned char *base;
  uint64_t offs[NVALUES];
  uint64_t table; /* NVALUES offsets of 64 B objects, in the heap */
  unsigned tx_flags;
  /* LMDB */
  const struct lmdb *l;
  MDB_env *env;
  MDB_dbi dbi;
  uint64_t keys[NVALUES];
  /* both */
  uint64_t x, count;
  int fail;
};

/* Pick a value, make its new contents, begin: 0, or the error recorded. */
static int commit_begin(struct commit *c, size_t *k, uint64_t value[8]) {
  *k = rand_slot(next_rand(&c->x), NVALUES);
  for (int i = 0; i < 8; i++) value[i] = ++c->count;
  mm_heap_tx_opts_t o = {.flags = c->tx_flags};
  int rc = mm_heap_tx_begin(c->heap, &o);
  if (rc < 0) c->fail = rc;
  return rc;
}

/* In place: declare the 64 B, write them, commit. */
static void commit_heap(void *arg) {
  struct commit *c = arg;
  size_t k;
  uint64_t value[8];
  if (commit_begin(c, &k, value) < 0) return;
  int rc = mm_heap_tx_add(c->heap, c->offs[k], sizeof value);
  if (rc == 0) memcpy(c->base + c->offs[k], value, sizeof value);
  if (rc < 0) {
    (void)mm_heap_tx_abort(c->heap);
    c->fail = rc;
  } else if ((rc = mm_heap_tx_commit(c->heap)) < 0) {
    c->fail = rc;
  }
}

/* The same change through mm_heap_tx_write: write-ahead when durable. */
static void commit_heap_write(void *arg) {
  struct commit *c = arg;
  size_t k;
  uint64_t value[8];
  if (commit_begin(c, &k, value) < 0) return;
  int rc = mm_heap_tx_write(c->heap, c->offs[k], value, sizeof value);
  if (rc < 0) {
    (void)mm_heap_tx_abort(c->heap);
    c->fail = rc;
  } else if ((rc = mm_heap_tx_commit(c->heap)) < 0) {
    c->fail = rc;
  }
}

/* A transaction that replaces a value by a new object: allocate and fill
 * it, point the table's slot at it, free the old one. It allocates, so a
 * durable commit syncs the data before its commit point (two syncs). */
static void commit_heap_alloc(void *arg) {
  struct commit *c = arg;
  size_t k = rand_slot(next_rand(&c->x), NVALUES);
  mm_heap_tx_opts_t o = {.flags = c->tx_flags};
  int rc = mm_heap_tx_begin(c->heap, &o);
  if (rc < 0) {
    c->fail = rc;
    return;
  }
  uint64_t *slot = (uint64_t *)(c->base + c->table) + k, n = 0;
  if ((rc = mm_heap_alloc(c->heap, 64, &n)) == 0 &&
      (rc = mm_heap_tx_add_ptr(c->heap, slot, sizeof *slot)) == 0) {
    uint64_t *v = (uint64_t *)(c->base + n);
    for (int i = 0; i < 8; i++) v[i] = ++c->count;
    rc = mm_heap_free(c->heap, *slot);
    *slot = n;
  }
  if (rc < 0) {
    (void)mm_heap_tx_abort(c->heap);
    c->fail = rc;
    return;
  }
  if ((rc = mm_heap_tx_commit(c->heap)) < 0) c->fail = rc;
}

static void commit_lmdb(void *arg) {
  struct commit *c = arg;
  size_t k = rand_slot(next_rand(&c->x), NVALUES);
  uint64_t value[8];
  for (int i = 0; i < 8; i++) value[i] = ++c->count;
  MDB_val key = {sizeof c->keys[k], &c->keys[k]}, data = {sizeof value, value};
  MDB_txn *txn;
  int rc = c->l->txn_begin(c->env, NULL, 0, &txn);
  if (rc != 0) {
    c->fail = -EIO;
    return;
  }
  if (c->l->put(txn, c->dbi, &key, &data, 0) != 0) {
    c->l->txn_abort(txn);
    c->fail = -EIO;
    return;
  }
  if (c->l->txn_commit(txn) != 0) c->fail = -EIO;
}

/* An LMDB environment in one file with every key present. */
static int lmdb_setup(struct commit *c, const char *path, int nosync) {
  const struct lmdb *l = c->l;
  char lock[8300];
  snprintf(lock, sizeof lock, "%s-lock", path);
  unlink(path);
  unlink(lock);
  if (l->env_create(&c->env) != 0) return -ENOMEM;
  MDB_txn *txn = NULL;
  int rc = l->env_set_mapsize(c->env, (size_t)64 << 20);
  if (rc == 0)
    rc = l->env_open(c->env, path, MDB_NOSUBDIR | (nosync ? MDB_NOSYNC : 0), 0600);
  if (rc == 0) rc = l->txn_begin(c->env, NULL, 0, &txn);
  if (rc == 0) rc = l->dbi_open(txn, NULL, 0, &c->dbi);
  for (int k = 0; k < NVALUES && rc == 0; k++) {
    uint64_t zero[8] = {0};
    c->keys[k] = (uint64_t)k * 0x9E3779B97F4A7C15ull;
    MDB_val key = {sizeof c->keys[k], &c->keys[k]}, data = {sizeof zero, zero};
    rc = l->put(txn, c->dbi, &key, &data, 0);
  }
  if (txn) {
    if (rc == 0) rc = l->txn_commit(txn);
    else l->txn_abort(txn);
  }
  /* LMDB returns positive errnos and its own negative codes. */
  return rc == 0 ? 0 : rc > 0 ? -rc : -EIO;
}

static void lmdb_teardown(struct commit *c, const char *path) {
  char lock[8300];
  if (c->env) c->l->env_close(c->env);
  c->env = NULL;
  snprintf(lock, sizeof lock, "%s-lock", path);
  unlink(path);
  unlink(lock);
}

/* ---- the suite ------------------------------------------------------------ */

/* "12.34 M ops/s", "1.6 k commits/s". */
static const char *fmt_rate(double per_s, const char *unit, char *buf, size_t len) {
  if (per_s >= 1e6) snprintf(buf, len, "%.2f M %s", per_s / 1e6, unit);
  else if (per_s >= 1e3) snprintf(buf, len, "%.1f k %s", per_s / 1e3, unit);
  else snprintf(buf, len, "%.0f %s", per_s, unit);
  return buf;
}

static const char *fmt_ratio(double r, char *buf, size_t len) {
  snprintf(buf, len, r >= 9.95 ? "%.0fx" : "%.2fx", r);
  return buf;
}

/* Record a commit row: the heap's against LMDB's in the same case. */
static void add_commit_row(struct bench *b, struct bench_row *r, const char *case_,
                           const char *method, int have_lmdb, const char *note) {
  snprintf(r->suite, sizeof r->suite, "heap");
  snprintf(r->case_, sizeof r->case_, "%s", case_);
  snprintf(r->method, sizeof r->method, "%s", method);
  snprintf(r->baseline, sizeof r->baseline, "%s",
           strcmp(method, "lmdb") && have_lmdb ? "lmdb" : "");
  snprintf(r->note, sizeof r->note, "ops_per_s=%.4g %s", 1 / r->seconds, note);
  r->bytes = 64;
  bench_add(b, r);
}

int bench_heap(struct bench *b) {
  int reps = b->quick ? 5 : 11;
  double target = b->quick ? 0.01 : 0.05;
  /* Durable commits are time-boxed: reps x target per method. */
  int dreps = b->quick ? 3 : 5;
  double dtarget = b->quick ? 0.1 : 0.2;
  size_t big = b->quick ? 100000 : 1000000;
  char case_big[48];
  snprintf(case_big, sizeof case_big, "alloc-free-%s-live", b->quick ? "100k" : "1m");
  char path[4096], txpath[4096], lpath[2][4096];
  long pid = (long)getpid();
  snprintf(path, sizeof path, "%s/memmap-bench-heap.%ld", b->dir, pid);
  snprintf(txpath, sizeof txpath, "%s/memmap-bench-heap-tx.%ld", b->dir, pid);
  snprintf(lpath[0], sizeof lpath[0], "%s/memmap-bench-lmdb-nosync.%ld", b->dir, pid);
  snprintf(lpath[1], sizeof lpath[1], "%s/memmap-bench-lmdb-sync.%ld", b->dir, pid);

  struct allocators al;
  char missing[512];
  load_allocators(&al, missing, sizeof missing);
  int rc = churn_case(b, &al, 64, "alloc-free-64-live", path, reps, target);
  if (rc == 0) rc = churn_case(b, &al, big, case_big, path, reps, target);

  /* Commits. */
  struct lmdb l;
  int have_lmdb = lmdb_load(&l) == 0;
  struct commit *hc = calloc(1, sizeof *hc), *lc = calloc(2, sizeof *lc);
  if (!hc || !lc) rc = rc ? rc : -ENOMEM;
  if (rc == 0) {
    bench_progress(b, "heap: commits: setting up");
    unlink(txpath);
    mm_heap_opts_t ho = {.flags = MM_HEAP_CREATE | MM_HEAP_EXCL};
    rc = mm_heap_open(&hc->heap, txpath, &ho);
    if (rc == 0) hc->base = mm_heap_base(hc->heap);
    for (int k = 0; k < NVALUES && rc == 0; k++) rc = mm_heap_zalloc(hc->heap, 64, &hc->offs[k]);
    if (rc == 0) rc = mm_heap_zalloc(hc->heap, NVALUES * 8, &hc->table);
    for (int k = 0; k < NVALUES && rc == 0; k++) {
      uint64_t o;
      rc = mm_heap_zalloc(hc->heap, 64, &o);
      ((uint64_t *)(hc->base + hc->table))[k] = o;
    }
    hc->x = 0x2545F4914F6CDD1Dull;
    for (int s = 0; s < 2 && rc == 0 && have_lmdb; s++) {
      lc[s].l = &l;
      lc[s].x = 0x2545F4914F6CDD1Dull;
      rc = lmdb_setup(&lc[s], lpath[s], s == 0);
    }
  }
  /* [process-crash, durable][heap in place, heap tx_write, allocating heap, lmdb] */
  struct bench_row rows[2][4];
  memset(rows, 0, sizeof rows);
  for (int d = 0; d < 2 && rc == 0; d++) {
    bench_fn fns[4] = {commit_heap, commit_heap_write, commit_heap_alloc, commit_lmdb};
    void *args[4] = {hc, hc, hc, &lc[d]};
    hc->tx_flags = d ? MM_HEAP_TX_DURABLE : 0;
    bench_progress(b, "heap: %s commits", d ? "durable" : "process-crash");
    bench_time_set(fns, args, have_lmdb ? 4 : 3, d ? dreps : reps, d ? dtarget : target,
                   rows[d]);
    if (hc->fail) rc = hc->fail;
    if (lc[d].fail) rc = lc[d].fail;
  }
  bench_progress_done(b);
  if (hc) (void)mm_heap_close(hc->heap);
  unlink(txpath);
  for (int s = 0; s < 2 && lc && have_lmdb; s++) lmdb_teardown(&lc[s], lpath[s]);
  free(hc);
  free(lc);
  if (have_lmdb) dlclose(l.lib);
  if (rc == 0) {
    static const char *const cases[2] = {"tx-commit-64", "tx-commit-64-durable"};
    static const char *const wcases[2] = {"tx-write-64", "tx-write-64-durable"};
    static const char *const acases[2] = {"tx-commit-alloc-64", "tx-commit-alloc-64-durable"};
    for (int d = 0; d < 2; d++) {
      if (have_lmdb) {
        add_commit_row(b, &rows[d][3], cases[d], "lmdb", 1, d ? "synced" : "MDB_NOSYNC");
        /* The same LMDB figure is the other cases' baseline. */
        struct bench_row lb = rows[d][3], lw = rows[d][3];
        add_commit_row(b, &lw, wcases[d], "lmdb", 1, d ? "synced" : "MDB_NOSYNC");
        add_commit_row(b, &lb, acases[d], "lmdb", 1, d ? "synced" : "MDB_NOSYNC");
      }
      add_commit_row(b, &rows[d][0], cases[d], "heap", have_lmdb,
                     d ? "MM_HEAP_TX_DURABLE, tx_add + write in place" : "process-crash, tx_add");
      add_commit_row(b, &rows[d][1], wcases[d], "heap", have_lmdb,
                     d ? "MM_HEAP_TX_DURABLE, tx_write (write-ahead)" : "process-crash, tx_write");
      add_commit_row(b, &rows[d][2], acases[d], "heap", have_lmdb,
                     d ? "MM_HEAP_TX_DURABLE, allocates" : "process-crash, allocates");
    }
  }
  if (rc < 0) return rc;

  /* Tables. */
  const char *cases[2] = {"alloc-free-64-live", case_big};
  const size_t ns[2] = {64, big};
  char r1[32], r2[32], x1[16], x2[16], cell[64], label[32];
  fprintf(b->out,
          "\nheap: small objects (16-256 B, random sizes): free a random slot of "
          "a working set of live objects,\n"
          "  allocate into it, write the first byte; one op = free + alloc. "
          "Median of %d interleaved runs;\n"
          "  [x] = this rate / glibc malloc's. The heap is a file in %s, created "
          "with the defaults.%s\n",
          reps, b->dir, b->quick ? " Quick: 100,000 live\n  objects where a full run has 1,000,000." : "");
  if (missing[0])
    fprintf(b->out, "  %s.\n", missing);
  fprintf(b->out, "%-14s", "live objects");
  for (int m = 0; m < NALLOC; m++) fprintf(b->out, " %24s", alloc_heads[m]);
  fprintf(b->out, "\n");
  for (int i = 0; i < 2; i++) {
    snprintf(label, sizeof label, "%zu%s", ns[i], i && b->quick ? " (quick)" : "");
    fprintf(b->out, "%-14s", label);
    for (int m = 0; m < NALLOC; m++) {
      struct bench_row *r = bench_find(b, "heap", cases[i], alloc_names[m],
                                       (uint64_t)ns[i] * MEAN_SIZE);
      if (!r) snprintf(cell, sizeof cell, "-");
      else if (m == A_GLIBC) fmt_rate(1 / r->seconds, "ops/s", cell, sizeof cell);
      else
        snprintf(cell, sizeof cell, "%s [%s]", fmt_rate(1 / r->seconds, "ops/s", r1, sizeof r1),
                 fmt_ratio(r->ratio, x1, sizeof x1));
      fprintf(b->out, " %24s", cell);
    }
    fprintf(b->out, "\n");
  }
  fprintf(b->out,
          "\nheap: transactions that change one 64 B value of %d, against LMDB "
          "putting a 64 B value under\n"
          "  one of %d 8-byte keys, a transaction per put; median of %d "
          "interleaved runs (durable: %d,\n"
          "  time-boxed, so a durable heap run includes its checkpoints). "
          "[x] = this rate / LMDB's.\n"
          "  in place: begin, tx_add, write, commit (durable: a sync at tx_add "
          "and one at commit).\n"
          "  tx_write: begin, mm_heap_tx_write, commit (durable: write-ahead, "
          "one sync of the log).\n"
          "  allocating: allocate a new 64 B object, fill it, point a table "
          "slot at it, free the old one\n"
          "  (durable: the commit syncs all of the data, then the log).\n",
          NVALUES, NVALUES, reps, dreps);
  if (!have_lmdb)
    fprintf(b->out, "  LMDB is not installed (bench/setup.sh installs it): "
                    "no baseline, no ratios.\n");
  fprintf(b->out, "%-14s %26s %26s %26s %26s\n", "commits", "heap, in place",
          "heap, tx_write", "heap, allocating", "LMDB");
  static const char *const tcases[2] = {"tx-commit-64", "tx-commit-64-durable"};
  static const char *const twcases[2] = {"tx-write-64", "tx-write-64-durable"};
  static const char *const tacases[2] = {"tx-commit-alloc-64", "tx-commit-alloc-64-durable"};
  struct bench_row *hr[2], *hw[2], *ha[2], *lr[2];
  for (int d = 0; d < 2; d++) {
    hr[d] = bench_find(b, "heap", tcases[d], "heap", 64);
    hw[d] = bench_find(b, "heap", twcases[d], "heap", 64);
    ha[d] = bench_find(b, "heap", tacases[d], "heap", 64);
    lr[d] = bench_find(b, "heap", tcases[d], "lmdb", 64);
    struct bench_row *hs[3] = {hr[d], hw[d], ha[d]};
    char hcell[3][64], lcell[64] = "-";
    for (int i = 0; i < 3; i++) {
      fmt_rate(1 / hs[i]->seconds, "commits/s", r1, sizeof r1);
      if (lr[d])
        snprintf(hcell[i], sizeof hcell[i], "%s [%s]", r1,
                 fmt_ratio(hs[i]->ratio, x1, sizeof x1));
      else
        snprintf(hcell[i], sizeof hcell[i], "%s", r1);
    }
    if (lr[d])
      snprintf(lcell, sizeof lcell, "%s (%s)",
               fmt_rate(1 / lr[d]->seconds, "commits/s", r1, sizeof r1),
               d ? "synced" : "NOSYNC");
    fprintf(b->out, "%-14s %26s %26s %26s %26s\n", d ? "durable" : "process-crash",
            hcell[0], hcell[1], hcell[2], lcell);
  }
  fprintf(b->out, "\n");

  /* Verdicts. */
  struct bench_row *h64 = bench_find(b, "heap", cases[0], "heap", 64 * MEAN_SIZE);
  struct bench_row *hbig = bench_find(b, "heap", cases[1], "heap", (uint64_t)big * MEAN_SIZE);
  char others[160] = "";
  for (int m = A_JEMALLOC; m < NALLOC; m++) {
    struct bench_row *o64 = bench_find(b, "heap", cases[0], alloc_names[m], 64 * MEAN_SIZE);
    struct bench_row *obig =
        bench_find(b, "heap", cases[1], alloc_names[m], (uint64_t)big * MEAN_SIZE);
    if (!o64 || !obig) continue;
    size_t at = strlen(others);
    snprintf(others + at, sizeof others - at, "; %s %s and %s",
             alloc_names[m], fmt_ratio(o64->ratio, x1, sizeof x1),
             fmt_ratio(obig->ratio, x2, sizeof x2));
  }
  bench_verdict(b, "heap",
                "the heap allocates and frees small objects at %s glibc malloc's rate "
                "with 64 live objects and %s with %s live (%s and %s%s).",
                fmt_ratio(h64->ratio, x1, sizeof x1), fmt_ratio(hbig->ratio, x2, sizeof x2),
                big >= 1000000 ? "1,000,000" : "100,000",
                fmt_rate(1 / h64->seconds, "ops/s", r1, sizeof r1),
                fmt_rate(1 / hbig->seconds, "ops/s", r2, sizeof r2), others);
  char hp[32], hd[32], hdw[32], x3[16], x4[16], ra[32];
  fmt_rate(1 / hr[0]->seconds, "commits/s", hp, sizeof hp);
  fmt_rate(1 / hr[1]->seconds, "commits/s", hd, sizeof hd);
  fmt_rate(1 / hw[1]->seconds, "commits/s", hdw, sizeof hdw);
  if (lr[0] && lr[1]) {
    bench_verdict(b, "heap",
                  "process-crash-safe commits of a 64 B change run %s LMDB's NOSYNC "
                  "commits (%s against %s); durable ones run %s LMDB's synced "
                  "commits through mm_heap_tx_write (%s against %s), %s in place "
                  "(tx_add, %s), and %s when the transaction allocates (%s).",
                  fmt_ratio(hr[0]->ratio, x1, sizeof x1), hp,
                  fmt_rate(1 / lr[0]->seconds, "commits/s", r1, sizeof r1),
                  fmt_ratio(hw[1]->ratio, x2, sizeof x2), hdw,
                  fmt_rate(1 / lr[1]->seconds, "commits/s", r2, sizeof r2),
                  fmt_ratio(hr[1]->ratio, x4, sizeof x4), hd,
                  fmt_ratio(ha[1]->ratio, x3, sizeof x3),
                  fmt_rate(1 / ha[1]->seconds, "commits/s", ra, sizeof ra));
  } else {
    bench_verdict(b, "heap",
                  "the heap commits a 64 B change at %s process-crash-safe and %s "
                  "durable (%s through mm_heap_tx_write); LMDB was not installed "
                  "(bench/setup.sh installs it), so there is no comparison.",
                  hp, hd, hdw);
  }
  return 0;
}
