/*
 * ring.c - a single-producer, single-consumer message channel in shared
 * memory, with futex wake-ups, end of stream, peer-death detection and
 * validation of everything the peer can write.
 *
 * HOW IT WORKS
 *
 * Layout. The shared object (a sealed memfd, or a file) is one header page
 * followed by `cap` data bytes (a power of two). It is mapped as
 *     [header][data][data again]
 * by reserving hdr + 2*cap of address space and mapping the data part of
 * the file twice with MAP_FIXED, so a record that runs past the end of the
 * data area continues, in memory, at its start: every record is
 * contiguous. Records are an 8-byte header {len, len ^ TAG} (never zero,
 * as len <= max_msg < TAG) and the payload, padded to 8 bytes. No record
 * is larger than cap - 8.
 *
 * Publishing. head (written by the producer) and tail (by the consumer)
 * count bytes since the start and never wrap in practice (64 bits). A
 * record lives at data[pos & (cap - 1)]. The producer writes the payload,
 * writes a zero header in the slot after the record (always free room: the
 * producer keeps 8 bytes between itself and the consumer), and only then
 * stores the record's header, with release order. The consumer polls the
 * header at its position with acquire order: zero means nothing yet, and a
 * header means the payload before it is complete. So the consumer reads no
 * index of the producer's (one cache line less per message between cores),
 * and a producer that dies mid-record never published it. The producer
 * still stores head, for a consumer that attaches later. Symmetrically,
 * tail gives room back; the producer re-reads it only when what it last
 * saw leaves too little room.
 *
 * Trust. Each side keeps its own index privately. Every value read from
 * the shared page is read once into a local and checked: the producer
 * checks 0 <= head - tail <= cap for the tail it reads, the consumer a
 * record header whose tag matches and len <= max_msg (which keeps the
 * record inside the double mapping), and attach checks both indices are
 * 8-byte aligned. The ring's
 * geometry (cap, max_msg) is read and checked once at open and never
 * re-read, so the peer cannot change it under us.
 *
 * Sleeping. A side that must wait spins for spin_us, then announces itself
 * (waiting = 1), re-checks, and sleeps on a futex sequence word with a
 * timeout of at most 20 ms. The other side, after publishing, issues a
 * full fence and looks at `waiting`; only if it is set does it bump the
 * sequence word and call futex wake. Either the waiter sees the new index
 * on its re-check, or the publisher sees `waiting`: the fences make the
 * third case impossible.
 *
 * Peers. Each side stores its pid when it attaches. A waiting side checks,
 * every 20 ms at most, whether the peer closed (a state word) or died: a
 * pidfd of the peer's pid polls readable once the process has exited, even
 * while it is an unreaped zombie. Death becomes MM_EPEERDEAD once the
 * committed messages are drained.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "memmap/ring.h"

#define RING_MAGIC UINT64_C(0x31474e49524d4d6d) /* "mmMRING1" little-endian */
#define RING_VERSION 1u
#define RING_TAG 0x6d6d7267u
#define RING_BYTE_ORDER 0x0102u
#define RING_MAX_CAP ((uint64_t)1 << 30)
#define SLICE_NS 20000000LL  /* longest sleep between peer checks */
#define CHECK_NS 10000000LL  /* at most one liveness check this often */

enum { SIDE_NONE = 0, SIDE_ATTACHED = 1, SIDE_CLOSED = 2 };

/* The shared header. Fixed-width fields. Each index sits alone on its
 * cache line, since it is written for every message; the wake flags and
 * futex words, written only around sleeps, sit on lines of their own so
 * that checking them costs no transfer between cores. */
struct ring_shared {
  uint64_t magic;        /* RING_MAGIC */
  uint32_t version;      /* RING_VERSION */
  uint32_t header_size;  /* bytes before the data area (a page) */
  uint64_t capacity;     /* data bytes, a power of two */
  uint64_t max_msg;      /* longest message */
  uint32_t creator_uid;  /* effective uid of the creator */
  uint16_t word_size;    /* sizeof(void *) of the creator */
  uint16_t byte_order;   /* RING_BYTE_ORDER as the creator stored it */
  uint32_t page_size;    /* the creator's page size */
  uint32_t reserved0;
  uint8_t pad0[64 - 48];
  uint64_t head;         /* offset 64: bytes published by the producer */
  uint8_t pad1[64 - 8];
  uint64_t tail;         /* offset 128: bytes consumed by the consumer */
  uint8_t pad2[64 - 8];
  uint32_t prod_pid;     /* offset 192: attached producer, 0 if none */
  uint32_t prod_state;   /* SIDE_* */
  uint32_t cons_pid;     /* attached consumer, 0 if none */
  uint32_t cons_state;   /* SIDE_* */
  uint8_t pad3[64 - 16];
  uint32_t prod_waiting; /* offset 256: 1 while the producer sleeps */
  uint32_t space_seq;    /* futex word the producer sleeps on */
  uint8_t pad4[64 - 8];
  uint32_t cons_waiting; /* offset 320: 1 while the consumer sleeps */
  uint32_t data_seq;     /* futex word the consumer sleeps on */
  uint8_t pad5[64 - 8];
};

_Static_assert(sizeof(struct ring_shared) == 384, "ring header layout");
#if defined(__GCC_ATOMIC_LLONG_LOCK_FREE) && __GCC_ATOMIC_LLONG_LOCK_FREE != 2
#error "the ring needs lock-free 64-bit atomics across processes"
#endif

struct mm_ring {
  unsigned char *base;     /* header page */
  size_t map_len;          /* header + 2 * cap of address space */
  struct ring_shared *sh;
  unsigned char *data;
  uint64_t cap, mask, max_msg;
  size_t hdr;
  int fd;
  int role;
  int spin_us;
  uint64_t pos;            /* producer: head; consumer: tail (ours) */
  uint64_t seen;           /* producer: the consumer's tail as last read,
                              read again only when it leaves too little
                              room (the consumer polls headers instead) */
  uint64_t pending;        /* producer: bytes reserved; consumer: peeked */
  size_t pending_len;      /* the payload length of that record */
  int peer_pidfd;
  uint32_t peer_pid;
  int peer_dead;
  int64_t next_check;      /* monotonic ns of the next liveness check */
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static uint64_t rec_size(uint64_t len) { return 8 + ((len + 7) & ~(uint64_t)7); }

/* ---------------------------------------------------------------------- */
/* Mapping                                                                 */

static int map_ring(mm_ring_t *r) {
  uint64_t total = (uint64_t)r->hdr + 2 * r->cap;
  if (total > SIZE_MAX) return -EFBIG;
  r->map_len = (size_t)total;
  void *res, *p;
  int rc = mm__sys_mmap(&res, NULL, r->map_len, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (rc < 0) return mm__mmap_error(rc);
  unsigned char *b = res;
  rc = mm__sys_mmap(&p, b, r->hdr + (size_t)r->cap, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_FIXED, r->fd, 0);
  if (rc == 0)
    rc = mm__sys_mmap(&p, b + r->hdr + r->cap, (size_t)r->cap,
                      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->fd,
                      r->hdr);
  if (rc < 0) {
    (void)mm__sys_munmap(res, r->map_len);
    return mm__mmap_error(rc);
  }
  r->base = b;
  r->sh = (struct ring_shared *)b;
  r->data = b + r->hdr;
  r->mask = r->cap - 1;
  return 0;
}

static mm_ring_t *ring_new(const mm_ring_opts_t *o) {
  mm_ring_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->fd = -1;
  r->peer_pidfd = -1;
  r->spin_us = o && o->spin_us ? o->spin_us : 20;
  return r;
}

int mm_ring_create(mm_ring_t **out, const char *path, const mm_ring_opts_t *opts) {
  if (!out) return -EINVAL;
  *out = NULL;
  static const mm_ring_opts_t defaults;
  const mm_ring_opts_t *o = opts ? opts : &defaults;
  size_t page = mm__page_size();
  uint64_t cap = o->capacity ? o->capacity : MM_RING_CAPACITY_DEFAULT;
  if (cap > RING_MAX_CAP || (o->flags & ~(unsigned)MM_RING_ANY_OWNER) ||
      (o->spin_us < 0 && o->spin_us != MM_RING_SPIN_ONLY && o->spin_us != MM_RING_SPIN_NONE))
    return -EINVAL;
  uint64_t c = page;
  while (c < cap) c <<= 1;
  cap = c;
  uint64_t max_msg = o->max_msg ? o->max_msg : cap / 2;
  if (max_msg > cap - 16 || max_msg > UINT32_MAX) return -EINVAL;
  mm_ring_t *r = ring_new(o);
  if (!r) return -ENOMEM;
  r->cap = cap;
  r->max_msg = max_msg;
  r->hdr = page;
  int rc;
  if (path) {
    r->fd = mm__sys_open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW,
                         o->perm ? o->perm : 0600);
  } else {
    r->fd = mm__sys_memfd_create("memmap-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  }
  if (r->fd < 0) {
    rc = r->fd;
    r->fd = -1;
    free(r);
    return rc;
  }
  rc = mm__sys_ftruncate(r->fd, r->hdr + cap);
  if (rc == 0 && !path)
    rc = mm__sys_fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  if (rc >= 0) rc = map_ring(r);
  if (rc < 0) {
    (void)mm__sys_close(r->fd);
    if (path) unlink(path);
    free(r);
    return rc;
  }
  struct ring_shared *sh = r->sh;
  sh->version = RING_VERSION;
  sh->header_size = (uint32_t)r->hdr;
  sh->capacity = cap;
  sh->max_msg = max_msg;
  sh->creator_uid = (uint32_t)geteuid();
  sh->word_size = (uint16_t)sizeof(void *);
  sh->byte_order = RING_BYTE_ORDER;
  sh->page_size = (uint32_t)page;
  /* The magic last: a half-made ring is not a ring. */
  STORE(&sh->magic, RING_MAGIC);
  *out = r;
  return 0;
}

/* Validate an existing ring's descriptor and map it. */
static int open_checked(mm_ring_t *r, unsigned flags) {
  struct stat st;
  int rc = mm__sys_fstat(r->fd, &st);
  if (rc < 0) return rc;
  if (!S_ISREG(st.st_mode)) return MM_ECORRUPT;
  int any = (flags & MM_RING_ANY_OWNER) != 0;
  /* A memfd must be sealed against shrinking, or the peer could make our
   * accesses fault. Files that cannot be sealed report EINVAL. */
  int seals = mm__sys_fcntl(r->fd, F_GET_SEALS, 0);
  if (seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
    return MM_ECORRUPT;
  /* A named file must be ours and private to us. A memfd has no name to be
   * reached by (its mode bits mean nothing); its owner still counts. */
  if (!any && (st.st_uid != geteuid() || (seals < 0 && (st.st_mode & 077))))
    return -EACCES;
  struct ring_shared h;
  ssize_t n = mm__sys_pread(r->fd, &h, sizeof h, 0);
  if (n < 0) return (int)n;
  if ((size_t)n < sizeof h || h.magic != RING_MAGIC) return MM_ECORRUPT;
  if (h.version != RING_VERSION) return MM_EVERSION;
  size_t page = mm__page_size();
  if (h.byte_order != RING_BYTE_ORDER || h.word_size != sizeof(void *) ||
      h.page_size != page || h.header_size != page)
    return MM_ECORRUPT;
  if (h.capacity < page || h.capacity > RING_MAX_CAP ||
      (h.capacity & (h.capacity - 1)) || h.max_msg > h.capacity - 16)
    return MM_ECORRUPT;
  if ((uint64_t)st.st_size != h.header_size + h.capacity) return MM_ECORRUPT;
  if (!any && h.creator_uid != (uint32_t)geteuid()) return -EACCES;
  r->cap = h.capacity;
  r->max_msg = h.max_msg;
  r->hdr = h.header_size;
  return map_ring(r);
}

/* Open an existing ring on the descriptor fd (taken over; -errno passes
 * through). */
static int open_on(mm_ring_t **out, int fd, const mm_ring_opts_t *opts) {
  if (fd < 0) return fd;
  mm_ring_t *r = ring_new(opts);
  if (!r) {
    (void)mm__sys_close(fd);
    return -ENOMEM;
  }
  r->fd = fd;
  int rc = open_checked(r, opts ? opts->flags : 0);
  if (rc < 0) {
    (void)mm__sys_close(r->fd);
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

int mm_ring_open(mm_ring_t **out, const char *path, const mm_ring_opts_t *opts) {
  if (!out || !path) return -EINVAL;
  *out = NULL;
  return open_on(out, mm__sys_open(path, O_RDWR | O_NOFOLLOW, 0), opts);
}

int mm_ring_open_fd(mm_ring_t **out, int fd, const mm_ring_opts_t *opts) {
  if (!out) return -EINVAL;
  *out = NULL;
  return open_on(out, mm__sys_fcntl(fd, F_DUPFD_CLOEXEC, 0), opts);
}

int mm_ring_fd(const mm_ring_t *r) { return r->fd; }
uint64_t mm_ring_capacity(const mm_ring_t *r) { return r->cap; }
uint64_t mm_ring_max_msg(const mm_ring_t *r) { return r->max_msg; }

/* ---------------------------------------------------------------------- */
/* Roles and peers                                                         */

int mm_ring_attach(mm_ring_t *r, int role) {
  if (role != MM_RING_PRODUCER && role != MM_RING_CONSUMER) return -EINVAL;
  if (r->role) return -EBUSY;
  struct ring_shared *sh = r->sh;
  uint32_t *pid = role == MM_RING_PRODUCER ? &sh->prod_pid : &sh->cons_pid;
  uint32_t *state = role == MM_RING_PRODUCER ? &sh->prod_state : &sh->cons_state;
  /* Check the indices before claiming anything, so that a refusal leaves
   * the role free. Records are 8-byte aligned: so are valid indices. */
  uint64_t head = LOAD(&sh->head), tail = LOAD(&sh->tail);
  if (head - tail > r->cap || ((head | tail) & 7)) return MM_ECORRUPT;
  uint32_t zero = 0, me = (uint32_t)getpid();
  if (!__atomic_compare_exchange_n(pid, &zero, me, 0, __ATOMIC_SEQ_CST,
                                   __ATOMIC_SEQ_CST))
    return -EBUSY;
  STORE(state, (uint32_t)SIDE_ATTACHED);
  r->pos = role == MM_RING_PRODUCER ? head : tail;
  r->seen = tail;
  r->role = role;
  return 0;
}

/* The peer's state: SIDE_CLOSED if it closed, or MM_EPEERDEAD if it died;
 * 0 while it is (or may still become) alive. Liveness is polled at most
 * every CHECK_NS unless `force`. */
static int peer_gone(mm_ring_t *r, int force) {
  struct ring_shared *sh = r->sh;
  int producer = r->role == MM_RING_PRODUCER;
  uint32_t state = LOAD(producer ? &sh->cons_state : &sh->prod_state);
  if (state == SIDE_CLOSED) return SIDE_CLOSED;
  if (r->peer_dead) return MM_EPEERDEAD;
  int64_t t = now_ns();
  if (!force && t < r->next_check) return 0;
  r->next_check = t + CHECK_NS;
  uint32_t pid = LOAD(producer ? &sh->cons_pid : &sh->prod_pid);
  if (pid == 0) return 0; /* not attached yet */
  if (pid != r->peer_pid || r->peer_pidfd < 0) {
    if (r->peer_pidfd >= 0) (void)mm__sys_close(r->peer_pidfd);
    r->peer_pid = pid;
    r->peer_pidfd = mm__sys_pidfd_open((int)pid);
    if (r->peer_pidfd < 0) {
      int e = r->peer_pidfd;
      r->peer_pidfd = -1;
      /* No such process: it died (and was reaped) before we looked. */
      if (e == -ESRCH) return r->peer_dead = 1, MM_EPEERDEAD;
      return 0; /* pidfds unavailable: rely on timeouts */
    }
  }
  struct pollfd pfd = {r->peer_pidfd, POLLIN, 0};
  if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN)) {
    /* It exited. If it closed properly just before, that wins. */
    state = LOAD(producer ? &sh->cons_state : &sh->prod_state);
    if (state == SIDE_CLOSED) return SIDE_CLOSED;
    r->peer_dead = 1;
    return MM_EPEERDEAD;
  }
  return 0;
}

static void wake(uint32_t *waiting, uint32_t *seq) {
  FENCE();
  if (LOAD_RELAXED(waiting)) {
    __atomic_fetch_add(seq, 1, __ATOMIC_SEQ_CST);
    (void)mm__sys_futex_wake(seq, 1, 1);
  }
}

int mm_ring_close(mm_ring_t *r) {
  if (!r) return 0;
  int rc = 0;
  if (r->role && r->sh) {
    struct ring_shared *sh = r->sh;
    if (r->role == MM_RING_PRODUCER) {
      STORE(&sh->prod_state, (uint32_t)SIDE_CLOSED);
      FENCE();
      __atomic_fetch_add(&sh->data_seq, 1, __ATOMIC_SEQ_CST);
      (void)mm__sys_futex_wake(&sh->data_seq, 1, 1);
    } else {
      STORE(&sh->cons_state, (uint32_t)SIDE_CLOSED);
      FENCE();
      __atomic_fetch_add(&sh->space_seq, 1, __ATOMIC_SEQ_CST);
      (void)mm__sys_futex_wake(&sh->space_seq, 1, 1);
    }
  }
  if (r->base) rc = mm__sys_munmap(r->base, r->map_len);
  if (r->fd >= 0) {
    int r2 = mm__sys_close(r->fd);
    if (rc == 0) rc = r2;
  }
  if (r->peer_pidfd >= 0) (void)mm__sys_close(r->peer_pidfd);
  free(r);
  return rc;
}

/* ---------------------------------------------------------------------- */
/* Waiting                                                                 */

/* check() says whether to stop waiting: > 0 ready, < 0 an error, 0 not yet. */
typedef int (*ready_fn)(mm_ring_t *r, uint64_t arg);

static int wait_for(mm_ring_t *r, ready_fn check, uint64_t arg, uint32_t *waiting,
                    uint32_t *seq, int timeout_ms) {
  int c = check(r, arg);
  if (c) return c;
  if (timeout_ms == 0) {
    /* A closed peer shows in check(); only death needs looking for. */
    if (peer_gone(r, 0) == MM_EPEERDEAD) return (c = check(r, arg)) ? c : MM_EPEERDEAD;
    return -EAGAIN;
  }
  /* The clock is read only where a deadline or a spin limit needs it. */
  int finite = timeout_ms > 0;
  int spin_only = r->spin_us == MM_RING_SPIN_ONLY, sleep_now = r->spin_us == MM_RING_SPIN_NONE;
  int64_t start = finite || (!spin_only && !sleep_now) ? now_ns() : 0;
  int64_t deadline = finite ? start + (int64_t)timeout_ms * 1000000 : INT64_MAX;
  int64_t spin_end = spin_only ? INT64_MAX : start + (int64_t)r->spin_us * 1000;
  for (unsigned i = 1; !sleep_now; i++) {
    if ((c = check(r, arg))) return c;
    cpu_relax();
    if ((i & 63) == 0) {
      int64_t t = now_ns();
      if (t >= deadline) return -ETIMEDOUT;
      int g = peer_gone(r, 0);
      if (g == MM_EPEERDEAD) return (c = check(r, arg)) ? c : g;
      if (t >= spin_end) break;
    }
  }
  for (;;) {
    uint32_t s = LOAD(seq);
    __atomic_store_n(waiting, 1, __ATOMIC_SEQ_CST);
    FENCE();
    if ((c = check(r, arg))) {
      __atomic_store_n(waiting, 0, __ATOMIC_RELAXED);
      return c;
    }
    int64_t slice = SLICE_NS;
    if (finite) {
      int64_t left = deadline - now_ns();
      if (left < slice) slice = left;
    }
    if (slice > 0) (void)mm__sys_futex_wait(seq, s, slice, 1);
    __atomic_store_n(waiting, 0, __ATOMIC_RELAXED);
    if ((c = check(r, arg))) return c;
    int g = peer_gone(r, 1);
    if (g == MM_EPEERDEAD) return (c = check(r, arg)) ? c : g;
    if (finite && now_ns() >= deadline) return -ETIMEDOUT;
  }
}

/* ---------------------------------------------------------------------- */
/* Producer                                                                */

/* Room for `need` bytes? The consumer's tail is read again only when
 * what we last saw of it leaves too little. */
static int have_room(mm_ring_t *r, uint64_t need) {
  struct ring_shared *sh = r->sh;
  need += 8; /* the next record's header slot stays free */
  if (r->cap - (r->pos - r->seen) >= need) {
    if (LOAD_RELAXED(&sh->cons_state) != SIDE_CLOSED) return 1;
    return -EPIPE;
  }
  if (LOAD(&sh->cons_state) == SIDE_CLOSED) return -EPIPE;
  uint64_t tail = LOAD(&sh->tail);
  if (r->pos - tail > r->cap || (tail & 7)) return MM_ECORRUPT;
  r->seen = tail;
  return r->cap - (r->pos - tail) >= need ? 1 : 0;
}

int mm_ring_reserve(mm_ring_t *r, size_t len, void **p, int timeout_ms) {
  if (r->role != MM_RING_PRODUCER || !p) return -EINVAL;
  if (r->pending) return -EBUSY; /* commit the last reservation first */
  if (len > r->max_msg) return -EMSGSIZE;
  uint64_t need = rec_size(len);
  int rc = wait_for(r, have_room, need, &r->sh->prod_waiting, &r->sh->space_seq,
                    timeout_ms);
  if (rc < 0) return rc;
  r->pending = need;
  r->pending_len = len;
  *p = r->data + (r->pos & r->mask) + 8;
  return 0;
}

int mm_ring_commit(mm_ring_t *r, size_t len) {
  if (r->role != MM_RING_PRODUCER || !r->pending || len > r->pending_len)
    return -EINVAL;
  unsigned char *rec = r->data + (r->pos & r->mask);
  uint64_t size = rec_size(len);
  uint32_t hdr[2] = {(uint32_t)len, (uint32_t)len ^ RING_TAG};
  uint64_t word;
  memcpy(&word, hdr, 8);
  /* Mark the next slot empty, then publish this one (see HOW IT WORKS). */
  __atomic_store_n((uint64_t *)(void *)(r->data + ((r->pos + size) & r->mask)), 0,
                   __ATOMIC_RELAXED);
  __atomic_store_n((uint64_t *)(void *)rec, word, __ATOMIC_RELEASE);
  r->pos += size;
  r->pending = 0;
  __atomic_store_n(&r->sh->head, r->pos, __ATOMIC_RELAXED);
  wake(&r->sh->cons_waiting, &r->sh->data_seq);
  return 0;
}

int mm_ring_send(mm_ring_t *r, const void *data, size_t len, int timeout_ms) {
  void *p;
  int rc = mm_ring_reserve(r, len, &p, timeout_ms);
  if (rc < 0) return rc;
  if (len) memcpy(p, data, len);
  return mm_ring_commit(r, len);
}

/* ---------------------------------------------------------------------- */
/* Consumer                                                                */

/* The header word at our position: zero while nothing is published. */
static uint64_t header_at(const mm_ring_t *r) {
  return __atomic_load_n((const uint64_t *)(const void *)(r->data + (r->pos & r->mask)),
                         __ATOMIC_ACQUIRE);
}

/* A record to read? > 0 yes, 0 not yet, MM_EOF. */
static int have_data(mm_ring_t *r, uint64_t unused) {
  (void)unused;
  if (header_at(r)) return 1;
  if (LOAD(&r->sh->prod_state) == SIDE_CLOSED)
    return header_at(r) ? 1 : MM_EOF; /* closed after its last commit */
  return 0;
}

int mm_ring_peek(mm_ring_t *r, const void **p, size_t *len, int timeout_ms) {
  if (r->role != MM_RING_CONSUMER || !p || !len) return -EINVAL;
  if (!r->pending) {
    int rc = wait_for(r, have_data, 0, &r->sh->cons_waiting, &r->sh->data_seq,
                      timeout_ms);
    if (rc < 0) return rc;
    /* One read of the header into a local: the peer may change it. */
    uint64_t word = header_at(r);
    uint32_t hdr[2];
    memcpy(hdr, &word, sizeof hdr);
    uint64_t l = hdr[0];
    /* max_msg <= cap - 16 keeps the record inside the double mapping. */
    if ((hdr[0] ^ RING_TAG) != hdr[1] || l > r->max_msg) return MM_ECORRUPT;
    /* Start fetching the next header now: the next miss then overlaps
     * with the caller's work on this record. */
    __builtin_prefetch(r->data + ((r->pos + rec_size(l)) & r->mask), 0, 3);
    r->pending = rec_size(l);
    r->pending_len = (size_t)l;
  }
  *p = r->data + (r->pos & r->mask) + 8;
  *len = r->pending_len;
  return 0;
}

int mm_ring_release(mm_ring_t *r) {
  if (r->role != MM_RING_CONSUMER || !r->pending) return -EINVAL;
  r->pos += r->pending;
  r->pending = 0;
  STORE(&r->sh->tail, r->pos);
  wake(&r->sh->prod_waiting, &r->sh->space_seq);
  return 0;
}

int mm_ring_recv(mm_ring_t *r, void *buf, size_t cap, size_t *len, int timeout_ms) {
  const void *p;
  size_t n;
  int rc = mm_ring_peek(r, &p, &n, timeout_ms);
  if (rc < 0) return rc;
  if (len) *len = n;
  if (n > cap) return -EMSGSIZE;
  if (n) memcpy(buf, p, n);
  return mm_ring_release(r);
}

/* ---------------------------------------------------------------------- */
/* Passing the descriptor                                                  */

int mm_ring_send_fd(int sock, const mm_ring_t *r) {
  char byte = 'R';
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &r->fd, sizeof(int));
  ssize_t n;
  do n = sendmsg(sock, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

int mm_ring_recv_fd(int sock, int *fd) {
  if (!fd) return -EINVAL;
  *fd = -1;
  char byte;
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  ssize_t n;
  do n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  if (n == 0) return MM_EOF;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int)) || (m.msg_flags & MSG_CTRUNC)) {
    /* Close whatever arrived, then refuse. */
    for (; c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
          int f;
          memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
          close(f);
        }
      }
    return MM_ECORRUPT;
  }
  memcpy(fd, CMSG_DATA(c), sizeof(int));
  return 0;
}
