/*
 * test_ring.c - the shared-memory channel: framing, zero copy across the
 * wrap, waiting, end of stream, fork stress with checksums, peers killed
 * at random moments, a hostile peer scribbling on the shared page, named
 * ring permissions, descriptor passing, and no system call per message.
 */
#include "test.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A producer handle and a consumer handle on one anonymous ring. */
static void pair(mm_ring_t **p, mm_ring_t **c, const mm_ring_opts_t *o) {
  ASSERT_OK(mm_ring_create(p, NULL, o));
  ASSERT_OK(mm_ring_open_fd(c, mm_ring_fd(*p), o));
  ASSERT_OK(mm_ring_attach(*p, MM_RING_PRODUCER));
  ASSERT_OK(mm_ring_attach(*c, MM_RING_CONSUMER));
}

static uint64_t xs(uint64_t *x) {
  *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
  return *x;
}

/* A message: 8-byte sequence number, then bytes derived from it. */
static size_t make_msg(unsigned char *buf, uint64_t seq, size_t len) {
  if (len < 8) len = 8;
  memcpy(buf, &seq, 8);
  for (size_t i = 8; i < len; i++) buf[i] = (unsigned char)(seq * 31 + i);
  return len;
}

static int check_msg(const unsigned char *buf, size_t len, uint64_t want_seq) {
  uint64_t seq;
  if (len < 8) return 0;
  memcpy(&seq, buf, 8);
  if (seq != want_seq) return 0;
  for (size_t i = 8; i < len; i++)
    if (buf[i] != (unsigned char)(seq * 31 + i)) return 0;
  return 1;
}

TEST(ring_keeps_message_boundaries_and_order) {
  mm_ring_t *p, *c;
  pair(&p, &c, NULL);
  ASSERT_EQ(mm_ring_capacity(p), MM_RING_CAPACITY_DEFAULT);
  ASSERT_EQ(mm_ring_max_msg(c), MM_RING_CAPACITY_DEFAULT / 2);
  const char *msgs[] = {"", "a", "hello", "exactly8", "a somewhat longer message"};
  for (int i = 0; i < 5; i++) ASSERT_OK(mm_ring_send(p, msgs[i], strlen(msgs[i]), 0));
  char buf[64];
  size_t n;
  for (int i = 0; i < 5; i++) {
    ASSERT_OK(mm_ring_recv(c, buf, sizeof buf, &n, 0));
    ASSERT_EQ(n, strlen(msgs[i]));
    ASSERT(!memcmp(buf, msgs[i], n));
  }
  ASSERT_RC(mm_ring_recv(c, buf, sizeof buf, &n, 0), -EAGAIN);
  /* Too long for the buffer: stays, with its length reported. */
  ASSERT_OK(mm_ring_send(p, "0123456789", 10, 0));
  ASSERT_RC(mm_ring_recv(c, buf, 4, &n, 0), -EMSGSIZE);
  ASSERT_EQ(n, 10);
  ASSERT_OK(mm_ring_recv(c, buf, sizeof buf, &n, 0));
  ASSERT_EQ(n, 10);
  /* Roles are enforced. */
  ASSERT_RC(mm_ring_send(c, "x", 1, 0), -EINVAL);
  ASSERT_RC(mm_ring_recv(p, buf, sizeof buf, &n, 0), -EINVAL);
  ASSERT_RC(mm_ring_attach(c, MM_RING_CONSUMER), -EBUSY);
  mm_ring_t *third;
  ASSERT_OK(mm_ring_open_fd(&third, mm_ring_fd(p), NULL));
  ASSERT_RC(mm_ring_attach(third, MM_RING_PRODUCER), -EBUSY);
  ASSERT_OK(mm_ring_close(third));
  ASSERT_OK(mm_ring_close(p));
  ASSERT_OK(mm_ring_close(c));
  ASSERT_OK(mm_ring_close(NULL));
}

TEST(ring_zero_copy_messages_are_contiguous_across_the_wrap) {
  mm_ring_opts_t o = {.capacity = 4096, .max_msg = 4096 - 16};
  mm_ring_t *p, *c;
  pair(&p, &c, &o);
  uint64_t seq = 0, rseq = 0, x = 7;
  for (int round = 0; round < 2000; round++) {
    size_t len = 8 + (size_t)(xs(&x) % 3000);
    void *w;
    ASSERT_OK(mm_ring_reserve(p, len, &w, 0));
    ASSERT_EQ((uintptr_t)w % 8, 0);
    make_msg(w, seq++, len);
    ASSERT_OK(mm_ring_commit(p, len));
    const void *r;
    size_t n;
    ASSERT_OK(mm_ring_peek(c, &r, &n, 0));
    const void *again;
    size_t n2;
    ASSERT_OK(mm_ring_peek(c, &again, &n2, 0)); /* same message until release */
    ASSERT(again == r && n2 == n);
    ASSERT_EQ(n, len);
    if (!check_msg(r, n, rseq++)) FAIL("message %llu damaged", (unsigned long long)rseq - 1);
    ASSERT_OK(mm_ring_release(c));
  }
  /* The largest message fills the ring (but for one header slot). */
  void *w;
  ASSERT_OK(mm_ring_reserve(p, 4096 - 16, &w, 0));
  memset(w, 0xEE, 4096 - 16);
  ASSERT_OK(mm_ring_commit(p, 4096 - 16));
  ASSERT_RC(mm_ring_send(p, "", 0, 0), -EAGAIN); /* full */
  ASSERT_RC(mm_ring_send(p, w, 4096 - 15, 0), -EMSGSIZE);
  const void *r;
  size_t n;
  ASSERT_OK(mm_ring_peek(c, &r, &n, 0));
  ASSERT_EQ(n, 4096 - 16);
  ASSERT_EQ(((const unsigned char *)r)[4000], 0xEE);
  ASSERT_OK(mm_ring_release(c));
  ASSERT_RC(mm_ring_release(c), -EINVAL);
  /* Commit less than reserved. */
  ASSERT_OK(mm_ring_reserve(p, 100, &w, 0));
  ASSERT_RC(mm_ring_reserve(p, 100, &w, 0), -EBUSY);
  memcpy(w, "short", 5);
  ASSERT_RC(mm_ring_commit(p, 101), -EINVAL);
  ASSERT_OK(mm_ring_commit(p, 5));
  char buf[16];
  ASSERT_OK(mm_ring_recv(c, buf, sizeof buf, &n, 0));
  ASSERT_EQ(n, 5);
  mm_ring_close(p);
  mm_ring_close(c);
}

TEST(ring_options_are_checked) {
  mm_ring_t *r;
  mm_ring_opts_t o = {.capacity = (uint64_t)2 << 30};
  ASSERT_RC(mm_ring_create(&r, NULL, &o), -EINVAL);
  o = (mm_ring_opts_t){.capacity = 4096, .max_msg = 4096 - 15};
  ASSERT_RC(mm_ring_create(&r, NULL, &o), -EINVAL);
  o = (mm_ring_opts_t){.capacity = 5000}; /* rounded up to 8192 */
  ASSERT_OK(mm_ring_create(&r, NULL, &o));
  ASSERT_EQ(mm_ring_capacity(r), 8192);
  ASSERT_RC(mm_ring_attach(r, 3), -EINVAL);
  mm_ring_close(r);
  o = (mm_ring_opts_t){.spin_us = -5};
  ASSERT_RC(mm_ring_create(&r, NULL, &o), -EINVAL);
}

TEST(ring_waits_time_out_and_try_does_not_wait) {
  mm_ring_opts_t o = {.capacity = 4096};
  mm_ring_t *p, *c;
  pair(&p, &c, &o);
  char buf[8];
  size_t n;
  double t0 = now();
  ASSERT_RC(mm_ring_recv(c, buf, sizeof buf, &n, 50), -ETIMEDOUT);
  double waited = now() - t0;
  ASSERT(waited >= 0.045);
  while (mm_ring_send(p, "12345678", 8, 0) == 0) {
  }
  ASSERT_RC(mm_ring_send(p, "12345678", 8, 0), -EAGAIN);
  ASSERT_RC(mm_ring_send(p, "12345678", 8, 30), -ETIMEDOUT);
  mm_ring_close(p);
  mm_ring_close(c);
}

TEST(ring_consumer_drains_then_gets_eof_and_producer_gets_epipe) {
  mm_ring_t *p, *c;
  pair(&p, &c, NULL);
  ASSERT_OK(mm_ring_send(p, "one", 3, 0));
  ASSERT_OK(mm_ring_send(p, "two", 3, 0));
  ASSERT_OK(mm_ring_close(p));
  char buf[8];
  size_t n;
  ASSERT_OK(mm_ring_recv(c, buf, sizeof buf, &n, 0));
  ASSERT_OK(mm_ring_recv(c, buf, sizeof buf, &n, -1));
  ASSERT(!memcmp(buf, "two", 3));
  ASSERT_RC(mm_ring_recv(c, buf, sizeof buf, &n, -1), MM_EOF);
  ASSERT_RC(mm_ring_recv(c, buf, sizeof buf, &n, 0), MM_EOF);
  mm_ring_close(c);

  pair(&p, &c, NULL);
  ASSERT_OK(mm_ring_close(c));
  ASSERT_RC(mm_ring_send(p, "x", 1, -1), -EPIPE);
  mm_ring_close(p);
}

TEST(ring_blocked_consumer_wakes_on_a_message_from_another_process) {
  mm_ring_t *r;
  ASSERT_OK(mm_ring_create(&r, NULL, NULL));
  pid_t pid = fork();
  if (pid == 0) {
    if (mm_ring_attach(r, MM_RING_PRODUCER)) _exit(2);
    usleep(100000); /* long enough for the consumer to be asleep */
    if (mm_ring_send(r, "wake", 4, -1)) _exit(3);
    mm_ring_close(r);
    _exit(0);
  }
  ASSERT_OK(mm_ring_attach(r, MM_RING_CONSUMER));
  char buf[8];
  size_t n;
  unsigned long waits = mm__sys_count(MM_SYS_FUTEX_WAIT);
  ASSERT_OK(mm_ring_recv(r, buf, sizeof buf, &n, 5000));
  ASSERT(!memcmp(buf, "wake", 4));
  ASSERT(mm__sys_count(MM_SYS_FUTEX_WAIT) > waits); /* it slept, not spun */
  ASSERT_RC(mm_ring_recv(r, buf, sizeof buf, &n, 5000), MM_EOF);
  int st;
  waitpid(pid, &st, 0);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  mm_ring_close(r);
}

TEST(ring_steady_state_makes_no_system_call_per_message) {
  mm_ring_t *p, *c;
  pair(&p, &c, NULL);
  unsigned long wakes = mm__sys_count(MM_SYS_FUTEX_WAKE);
  unsigned long waits = mm__sys_count(MM_SYS_FUTEX_WAIT);
  char buf[64];
  size_t n;
  for (int i = 0; i < 100000; i++) {
    ASSERT_OK(mm_ring_send(p, buf, 48, 0));
    ASSERT_OK(mm_ring_recv(c, buf, sizeof buf, &n, 0));
  }
  ASSERT_EQ(mm__sys_count(MM_SYS_FUTEX_WAKE), wakes);
  ASSERT_EQ(mm__sys_count(MM_SYS_FUTEX_WAIT), waits);
  mm_ring_close(p);
  mm_ring_close(c);
}

/* ---- fork stress -------------------------------------------------------- */

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof set, &set);
}

/* The producer: n messages of random length 0..max with a sequence number
 * and a running checksum in the last message. */
static void produce(mm_ring_t *r, uint64_t n, int cpu) {
  if (cpu >= 0) pin(cpu);
  if (mm_ring_attach(r, MM_RING_PRODUCER)) _exit(2);
  uint64_t x = 12345, sum = 0;
  size_t max = (size_t)mm_ring_max_msg(r);
  for (uint64_t i = 0; i < n; i++) {
    size_t len = (size_t)(xs(&x) % (max + 1));
    if (i % 64 != 0) len %= 512; /* mostly small, now and then up to max */
    void *w;
    if (mm_ring_reserve(r, len, &w, 10000)) _exit(3);
    unsigned char *b = w;
    for (size_t k = 0; k < len; k++) b[k] = (unsigned char)(i + k * 7);
    if (len >= 8) memcpy(b, &i, 8);
    for (size_t k = 0; k < len; k++) sum = sum * 31 + b[k];
    if (mm_ring_commit(r, len)) _exit(4);
  }
  if (mm_ring_send(r, &sum, 8, 10000)) _exit(5);
  mm_ring_close(r);
  _exit(0);
}

static void stress(uint64_t n, int pcpu, int ccpu) {
  mm_ring_opts_t o = {.capacity = 65536};
  mm_ring_t *r;
  ASSERT_OK(mm_ring_create(&r, NULL, &o));
  pid_t pid = fork();
  if (pid == 0) produce(r, n, pcpu);
  if (ccpu >= 0) pin(ccpu);
  ASSERT_OK(mm_ring_attach(r, MM_RING_CONSUMER));
  uint64_t sum = 0, got = 0;
  for (;;) {
    const void *p;
    size_t len;
    int rc = mm_ring_peek(r, &p, &len, 10000);
    if (rc == MM_EOF) break;
    ASSERT_OK(rc);
    const unsigned char *b = p;
    if (got == n) {
      uint64_t theirs;
      ASSERT_EQ(len, 8);
      memcpy(&theirs, b, 8);
      if (theirs != sum) FAIL("checksum mismatch after %llu messages", (unsigned long long)n);
    } else {
      if (len >= 8) {
        uint64_t seq;
        memcpy(&seq, b, 8);
        if (seq != got) FAIL("message %llu carries sequence %llu", (unsigned long long)got,
                             (unsigned long long)seq);
      }
      for (size_t k = 0; k < len; k++) sum = sum * 31 + b[k];
    }
    got++;
    ASSERT_OK(mm_ring_release(r));
  }
  ASSERT_EQ(got, n + 1);
  int st;
  waitpid(pid, &st, 0);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  mm_ring_close(r);
}

TEST_T(ring_fork_stress_one_million_messages_on_different_cores, 120) {
  stress(1000000, 0, sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 1 : 0);
}

TEST_T(ring_fork_stress_one_million_messages_on_one_core, 120) { stress(1000000, 0, 0); }

TEST_T(ring_fork_stress_unpinned, 120) { stress(300000, -1, -1); }

/* ---- killing the peer --------------------------------------------------- */

static void kill_producer_once(uint64_t seed, double *worst) {
  mm_ring_opts_t o = {.capacity = 16384, .max_msg = 8192};
  mm_ring_t *r;
  ASSERT_OK(mm_ring_create(&r, NULL, &o));
  int ready[2];
  ASSERT(pipe(ready) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (mm_ring_attach(r, MM_RING_PRODUCER)) _exit(2);
    if (write(ready[1], "r", 1) != 1) _exit(5); /* attached: its pid is known */
    unsigned char buf[8192];
    uint64_t x = seed | 1;
    for (uint64_t i = 0;; i++) {
      size_t len = make_msg(buf, i, 8 + (size_t)(xs(&x) % 8000));
      void *w;
      if (mm_ring_reserve(r, len, &w, -1)) _exit(3);
      /* Written slowly, so that kills land mid-message too. */
      memcpy(w, buf, len / 2);
      memcpy((unsigned char *)w + len / 2, buf + len / 2, len - len / 2);
      if (mm_ring_commit(r, len)) _exit(4);
    }
  }
  ASSERT_OK(mm_ring_attach(r, MM_RING_CONSUMER));
  char c;
  ASSERT(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  close(ready[1]);
  uint64_t x = seed * 2654435761u + 1;
  double kill_at = now() + (double)(xs(&x) % 3000) / 1e6;
  int killed = 0;
  double t_kill = 0;
  uint64_t seq = 0;
  for (;;) {
    if (!killed && now() >= kill_at) {
      kill(pid, SIGKILL);
      killed = 1;
      t_kill = now();
    }
    const void *p;
    size_t len;
    int rc = mm_ring_peek(r, &p, &len, killed ? 2000 : 1);
    if (rc == -ETIMEDOUT) {
      if (killed) FAIL("no MM_EPEERDEAD within 2 s of SIGKILL");
      continue;
    }
    if (rc == MM_EPEERDEAD) break;
    ASSERT_OK(rc);
    if (!check_msg(p, len, seq)) FAIL("message %llu seen damaged or out of order", (unsigned long long)seq);
    seq++;
    ASSERT_OK(mm_ring_release(r));
  }
  ASSERT(killed);
  double dt = now() - t_kill;
  if (dt > *worst) *worst = dt;
  waitpid(pid, NULL, 0);
  mm_ring_close(r);
}

TEST_T(ring_producer_killed_200_times_never_shows_a_partial_message, 300) {
  double worst = 0;
  for (uint64_t i = 1; i <= 200; i++) kill_producer_once(i, &worst);
  printf("# worst time from SIGKILL to MM_EPEERDEAD: %.1f ms\n", worst * 1e3);
  ASSERT(worst < 1.0);
}

static void kill_consumer_once(uint64_t seed, double *worst) {
  mm_ring_opts_t o = {.capacity = 4096};
  mm_ring_t *r;
  ASSERT_OK(mm_ring_create(&r, NULL, &o));
  int ready[2];
  ASSERT(pipe(ready) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    if (mm_ring_attach(r, MM_RING_CONSUMER)) _exit(2);
    if (write(ready[1], "r", 1) != 1) _exit(5);
    char buf[4096];
    size_t n;
    for (;;)
      if (mm_ring_recv(r, buf, sizeof buf, &n, -1) < 0) _exit(3);
  }
  ASSERT_OK(mm_ring_attach(r, MM_RING_PRODUCER));
  char c;
  ASSERT(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  close(ready[1]);
  uint64_t x = seed * 2654435761u + 1;
  double kill_at = now() + (double)(xs(&x) % 3000) / 1e6;
  int killed = 0;
  double t_kill = 0;
  unsigned char buf[2048];
  memset(buf, 1, sizeof buf);
  for (;;) {
    if (!killed && now() >= kill_at) {
      kill(pid, SIGKILL);
      killed = 1;
      t_kill = now();
    }
    int rc = mm_ring_send(r, buf, 1 + (size_t)(xs(&x) % 2000), killed ? 2000 : 1);
    if (rc == -ETIMEDOUT) {
      if (killed) FAIL("no MM_EPEERDEAD within 2 s of SIGKILL");
      continue;
    }
    if (rc == MM_EPEERDEAD) break;
    ASSERT_OK(rc);
  }
  double dt = now() - t_kill;
  if (dt > *worst) *worst = dt;
  waitpid(pid, NULL, 0);
  mm_ring_close(r);
}

TEST_T(ring_consumer_killed_200_times_producer_gets_mm_epeerdead, 300) {
  double worst = 0;
  for (uint64_t i = 1; i <= 200; i++) kill_consumer_once(i, &worst);
  printf("# worst time from SIGKILL to MM_EPEERDEAD: %.1f ms\n", worst * 1e3);
  ASSERT(worst < 1.0);
}

/* ---- a hostile peer ----------------------------------------------------- */

TEST_T(ring_hostile_writes_to_the_shared_page_give_errors_not_crashes, 120) {
  mm_ring_opts_t o = {.capacity = 8192};
  mm_ring_t *r;
  ASSERT_OK(mm_ring_create(&r, NULL, &o));
  /* The attacker maps the same memory and writes junk everywhere the
   * consumer reads: the indices, the states, the record headers. */
  int fd = mm_ring_fd(r);
  size_t len = 4096 + 8192;
  ASSERT_OK(mm_ring_attach(r, MM_RING_CONSUMER)); /* before the junk starts */
  pid_t pid = fork();
  if (pid == 0) {
    void *mp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mp == MAP_FAILED) _exit(2);
    /* volatile: without it the compiler may keep these racy stores out of
     * memory altogether, and the consumer would never see them. */
    volatile uint32_t *w = mp;
    uint64_t x = 99;
    for (;;) {
      uint64_t v = xs(&x);
      size_t rec = (4096 + (xs(&x) % 1024) * 8) / 4;
      switch (v % 6) {
      case 0: w[16] = (uint32_t)v, w[17] = (uint32_t)(v >> 32); break; /* head */
      case 1: w[32] = (uint32_t)v, w[33] = (uint32_t)(v >> 32); break; /* tail */
      case 2: w[49] = (uint32_t)(v >> 32) % 4; break;                   /* prod_state */
      case 3: w[rec] = (uint32_t)v, w[rec + 1] = (uint32_t)(v >> 32); break;
      case 4: w[16] = (uint32_t)(v % 9000), w[17] = 0; break;           /* plausible head */
      default: w[rec] = (uint32_t)(v % 9000), w[rec + 1] = (uint32_t)(v % 9000) ^ 0x6d6d7267u;
      }
    }
  }
  int counts[4] = {0}, eof = 0, dead = 0;
  double end = now() + 2;
  unsigned char buf[8192];
  while (now() < end) {
    size_t n;
    int rc = mm_ring_recv(r, buf, sizeof buf, &n, 1);
    if (rc == 0) {
      ASSERT(n <= mm_ring_max_msg(r));
      counts[0]++;
    } else if (rc == MM_ECORRUPT) {
      counts[1]++;
    } else if (rc == -ETIMEDOUT || rc == -EAGAIN || rc == MM_EOF || rc == MM_EPEERDEAD) {
      counts[2]++;
      eof += rc == MM_EOF;
      dead += rc == MM_EPEERDEAD;
    } else {
      FAIL("unexpected %s", mm_errname(rc));
    }
  }
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  if (!WIFSIGNALED(st)) FAIL("the attacker stopped early: status %d", WEXITSTATUS(st));
  printf("# %d delivered, %d MM_ECORRUPT, %d waits (%d MM_EOF, %d MM_EPEERDEAD)\n",
         counts[0], counts[1], counts[2], eof, dead);
  ASSERT(counts[1] > 0); /* the junk was seen and refused */
  mm_ring_close(r);
}

TEST(ring_refuses_shared_memory_that_is_not_a_ring) {
  /* A memfd with the right size but junk, or no seals. */
  mm_ring_t *r;
  int fd = memfd_create("junk", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT(fd >= 0);
  ASSERT(ftruncate(fd, 4096 + 4096) == 0);
  ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
  ASSERT_RC(mm_ring_open_fd(&r, fd, NULL), MM_ECORRUPT);
  close(fd);
  mm_ring_opts_t o = {.capacity = 4096};
  mm_ring_t *good;
  ASSERT_OK(mm_ring_create(&good, NULL, &o));
  /* An unsealed copy of a good header. */
  fd = memfd_create("copy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  unsigned char page[8192];
  ASSERT(pread(mm_ring_fd(good), page, sizeof page, 0) == (ssize_t)sizeof page);
  ASSERT(pwrite(fd, page, sizeof page, 0) == (ssize_t)sizeof page);
  ASSERT_RC(mm_ring_open_fd(&r, fd, NULL), MM_ECORRUPT);
  ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
  ASSERT_OK(mm_ring_open_fd(&r, fd, NULL)); /* sealed, it is fine */
  mm_ring_close(r);
  /* A newer version. */
  uint32_t v = 2;
  int fd2 = memfd_create("v2", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  memcpy(page + 8, &v, 4);
  ASSERT(pwrite(fd2, page, sizeof page, 0) == (ssize_t)sizeof page);
  ASSERT(fcntl(fd2, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
  ASSERT_RC(mm_ring_open_fd(&r, fd2, NULL), MM_EVERSION);
  /* The anonymous ring itself is sealed: it can be neither cut nor grown. */
  ASSERT(ftruncate(mm_ring_fd(good), 4096) < 0 && errno == EPERM);
  ASSERT(ftruncate(mm_ring_fd(good), 1 << 20) < 0 && errno == EPERM);
  close(fd);
  close(fd2);
  mm_ring_close(good);
}

TEST(ring_named_is_0600_exclusive_and_checked_on_open) {
  const char *p = mm_test_path("ring");
  mm_ring_opts_t o = {.capacity = 4096};
  mm_ring_t *r, *r2;
  mode_t old = umask(0);
  ASSERT_OK(mm_ring_create(&r, p, &o));
  umask(old);
  struct stat st;
  ASSERT(stat(p, &st) == 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_RC(mm_ring_create(&r2, p, &o), -EEXIST);
  ASSERT_OK(mm_ring_open(&r2, p, NULL));
  ASSERT_OK(mm_ring_attach(r, MM_RING_PRODUCER));
  ASSERT_OK(mm_ring_attach(r2, MM_RING_CONSUMER));
  ASSERT_OK(mm_ring_send(r, "named", 5, 0));
  char buf[8];
  size_t n;
  ASSERT_OK(mm_ring_recv(r2, buf, sizeof buf, &n, 0));
  mm_ring_close(r2);
  /* Readable by others: refused unless asked. */
  ASSERT(chmod(p, 0644) == 0);
  ASSERT_RC(mm_ring_open(&r2, p, NULL), -EACCES);
  mm_ring_opts_t any = {.flags = MM_RING_ANY_OWNER};
  ASSERT_OK(mm_ring_open(&r2, p, &any));
  mm_ring_close(r2);
  ASSERT(chmod(p, 0600) == 0);
  if (geteuid() == 0) {
    ASSERT(chown(p, 65534, 65534) == 0);
    ASSERT_RC(mm_ring_open(&r2, p, NULL), -EACCES);
    ASSERT(chown(p, 0, 0) == 0);
  }
  /* The wrong size. */
  ASSERT(truncate(p, 4096 + 8192) == 0);
  ASSERT_RC(mm_ring_open(&r2, p, NULL), MM_ECORRUPT);
  /* A link at the name is not followed. */
  ASSERT(symlink(p, mm_test_path("link")) == 0);
  ASSERT_RC(mm_ring_open(&r2, mm_test_path("link"), NULL), -ELOOP);
  ASSERT_RC(mm_ring_create(&r2, mm_test_path("link"), NULL), -EEXIST);
  mm_ring_close(r);
  /* Not a ring at all. */
  mm_test_write_file(mm_test_path("plain"), 8192);
  ASSERT(chmod(mm_test_path("plain"), 0600) == 0);
  ASSERT_RC(mm_ring_open(&r2, mm_test_path("plain"), NULL), MM_ECORRUPT);
}

TEST(ring_descriptor_passes_over_a_unix_socket) {
  int sv[2];
  ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    int fd;
    mm_ring_t *r;
    if (mm_ring_recv_fd(sv[1], &fd)) _exit(2);
    if (mm_ring_open_fd(&r, fd, NULL)) _exit(3);
    close(fd);
    if (mm_ring_attach(r, MM_RING_PRODUCER)) _exit(4);
    if (mm_ring_send(r, "via socket", 10, -1)) _exit(5);
    mm_ring_close(r);
    _exit(0);
  }
  close(sv[1]);
  mm_ring_t *r;
  ASSERT_OK(mm_ring_create(&r, NULL, NULL));
  ASSERT_OK(mm_ring_send_fd(sv[0], r));
  ASSERT_OK(mm_ring_attach(r, MM_RING_CONSUMER));
  char buf[16];
  size_t n;
  ASSERT_OK(mm_ring_recv(r, buf, sizeof buf, &n, 5000));
  ASSERT(n == 10 && !memcmp(buf, "via socket", 10));
  ASSERT_RC(mm_ring_recv(r, buf, sizeof buf, &n, 5000), MM_EOF);
  int st;
  waitpid(pid, &st, 0);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* A message without a descriptor is refused. */
  int sv2[2];
  ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0);
  ASSERT(write(sv2[0], "x", 1) == 1);
  int fd;
  ASSERT_RC(mm_ring_recv_fd(sv2[1], &fd), MM_ECORRUPT);
  close(sv2[0]);
  ASSERT_RC(mm_ring_recv_fd(sv2[1], &fd), MM_EOF);
  close(sv2[1]);
  close(sv[0]);
  mm_ring_close(r);
}

TEST(ring_creation_failures_are_reported_and_leak_nothing) {
  mm_ring_t *r = (mm_ring_t *)1;
  mm__fault_set(MM_SYS_MEMFD_CREATE, 1, EMFILE, 0);
  ASSERT_RC(mm_ring_create(&r, NULL, NULL), -EMFILE);
  ASSERT(r == NULL);
  mm__fault_set(MM_SYS_MMAP, 2, ENOMEM, 0); /* the second half of the mirror */
  ASSERT_RC(mm_ring_create(&r, NULL, NULL), -ENOMEM);
  mm__fault_set(MM_SYS_FCNTL, 1, EINVAL, 0); /* sealing */
  ASSERT_RC(mm_ring_create(&r, NULL, NULL), -EINVAL);
  mm__fault_set(MM_SYS_FTRUNCATE, 1, ENOSPC, 0);
  ASSERT_RC(mm_ring_create(&r, mm_test_path("r"), NULL), -ENOSPC);
  ASSERT(access(mm_test_path("r"), F_OK) != 0); /* removed again */
}

TEST_T(ring_bench_ipc_reports_every_channel_against_the_pipe, 120) {
  char *out = malloc(1 << 16);
  int rc = mm_test_run(out, 1 << 16, "%s/memmap bench --quick --max-size 2M ipc 2>&1",
                       mm_test_bindir());
  if (rc != 0) FAIL("exit %d:\n%s", rc, out);
  const char *want[] = {"pipe-1m", "unix-stream", "unix-seqpacket", "ring-spin",
                        "ring-sleep", "memcpy ceiling", "verdict: the shared-memory ring"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(out, want[i])) FAIL("no '%s' in:\n%s", want[i], out);
  free(out);
}

TEST(ring_attach_refuses_misaligned_indices_and_leaves_the_role_free) {
  mm_ring_opts_t o = {.capacity = 4096};
  mm_ring_t *r;
  ASSERT_OK(mm_ring_create(&r, NULL, &o));
  /* What a hostile peer could write: head = tail = 3. */
  unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mm_ring_fd(r), 0);
  ASSERT(m != MAP_FAILED);
  uint64_t three = 3;
  memcpy(m + 64, &three, 8);
  memcpy(m + 128, &three, 8);
  ASSERT_RC(mm_ring_attach(r, MM_RING_CONSUMER), MM_ECORRUPT);
  ASSERT_RC(mm_ring_attach(r, MM_RING_PRODUCER), MM_ECORRUPT);
  uint64_t zero = 0;
  memcpy(m + 64, &zero, 8);
  memcpy(m + 128, &zero, 8);
  /* Repaired: the roles were never taken. */
  ASSERT_OK(mm_ring_attach(r, MM_RING_CONSUMER));
  munmap(m, 4096);
  mm_ring_close(r);
}
