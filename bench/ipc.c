/*
 * ipc.c - `memmap bench ipc`: the study note's to-do, shared memory
 * against pipes, between two processes.
 *
 * Channels: the ring spinning (MM_RING_SPIN_ONLY), the ring as it comes
 * (spin 20 us, then sleep), the ring sleeping at once (MM_RING_SPIN_NONE),
 * a pipe (the baseline), a pipe enlarged to 1 MiB with F_SETPIPE_SZ, a
 * Unix stream socket and a Unix seqpacket socket.
 * Latency: a 64-byte ping-pong, per round trip. Throughput: one process
 * sends N messages of 64 B, 4 KiB or 64 KiB, the other receives each into
 * its own buffer (mm_ring_recv copies out, as read() does) and checks its
 * sequence number; per message and per byte. The ceiling: memcpy of the
 * same message size between two buffers in one process. The two processes
 * are pinned to different cores when there are two.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

enum {
  K_RING_SPIN, K_RING, K_RING_SLEEP, K_PIPE, K_PIPE_1M, K_STREAM, K_SEQPACKET, NKINDS
};
static const char *const kind_names[NKINDS] = {
    "ring-spin", "ring", "ring-sleep", "pipe", "pipe-1m", "unix-stream", "unix-seqpacket"};

/* One direction of a channel. */
struct chan {
  int kind;
  int rfd, wfd;   /* pipe or socket ends */
  mm_ring_t *ring;
};

static int chan_make(struct chan *c, int kind, size_t max_msg) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->rfd = c->wfd = -1;
  if (kind <= K_RING_SLEEP) {
    /* The ring as it comes: 1 MiB, messages up to half of it. */
    mm_ring_opts_t o = {.capacity = 0};
    (void)max_msg;
    o.spin_us = kind == K_RING_SPIN ? MM_RING_SPIN_ONLY
                : kind == K_RING_SLEEP ? MM_RING_SPIN_NONE
                                       : 0;
    return mm_ring_create(&c->ring, NULL, &o);
  }
  int fds[2];
  if (kind == K_PIPE || kind == K_PIPE_1M) {
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    if (kind == K_PIPE_1M && fcntl(fds[1], F_SETPIPE_SZ, 1 << 20) < 0) return -errno;
  } else {
    if (socketpair(AF_UNIX, kind == K_STREAM ? SOCK_STREAM : SOCK_SEQPACKET, 0, fds) < 0)
      return -errno;
    int sz = 4 << 20;
    setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  }
  c->rfd = fds[0];
  c->wfd = fds[1];
  return 0;
}

/* After fork: keep our end. */
static int chan_side(struct chan *c, int sender) {
  if (c->ring) return mm_ring_attach(c->ring, sender ? MM_RING_PRODUCER : MM_RING_CONSUMER);
  if (sender) {
    close(c->rfd);
    c->rfd = -1;
  } else {
    close(c->wfd);
    c->wfd = -1;
  }
  return 0;
}

static void chan_close(struct chan *c) {
  if (c->ring) (void)mm_ring_close(c->ring);
  if (c->rfd >= 0) close(c->rfd);
  if (c->wfd >= 0) close(c->wfd);
  c->ring = NULL;
  c->rfd = c->wfd = -1;
}

static int chan_send(struct chan *c, const void *buf, size_t n) {
  if (c->ring) return mm_ring_send(c->ring, buf, n, -1);
  const char *p = buf;
  while (n) {
    ssize_t w = write(c->wfd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* Receive exactly one n-byte message. */
static int chan_recv(struct chan *c, void *buf, size_t n) {
  if (c->ring) {
    size_t got;
    int rc = mm_ring_recv(c->ring, buf, n, &got, -1);
    return rc < 0 ? rc : got == n ? 0 : -EPROTO;
  }
  char *p = buf;
  while (n) {
    ssize_t r = read(c->rfd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) return MM_EOF;
    p += r, n -= (size_t)r;
  }
  return 0;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof set, &set);
}

static int ncpu(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 1 ? 2 : 1;
}

/* Latency: n round trips of 64 bytes; seconds per round trip. */
static int pingpong(int kind, uint64_t n, double *secs) {
  struct chan a2b, b2a;
  int rc = chan_make(&a2b, kind, 64);
  if (rc == 0) rc = chan_make(&b2a, kind, 64);
  if (rc < 0) return rc;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    if (ncpu() > 1) pin(1);
    if (chan_side(&a2b, 0) || chan_side(&b2a, 1)) _exit(2);
    char buf[64];
    for (uint64_t i = 0; i < n + 100; i++) {
      if (chan_recv(&a2b, buf, 64) || chan_send(&b2a, buf, 64)) _exit(3);
    }
    _exit(0);
  }
  if (ncpu() > 1) pin(0);
  rc = chan_side(&a2b, 1);
  if (rc == 0) rc = chan_side(&b2a, 0);
  char buf[64];
  memset(buf, 1, sizeof buf);
  double t0 = 0;
  for (uint64_t i = 0; i < n + 100 && rc == 0; i++) {
    if (i == 100) t0 = bench_now(); /* after a warm-up */
    rc = chan_send(&a2b, buf, 64);
    if (rc == 0) rc = chan_recv(&b2a, buf, 64);
  }
  *secs = (bench_now() - t0) / (double)n;
  int st;
  if (rc < 0) kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  chan_close(&a2b);
  chan_close(&b2a);
  if (rc == 0 && (!WIFEXITED(st) || WEXITSTATUS(st))) rc = -EIO;
  return rc;
}

/* Throughput: n messages of size bytes; seconds per message. */
static int stream(int kind, size_t size, uint64_t n, double *secs) {
  struct chan data, ack;
  int rc = chan_make(&data, kind, size);
  if (rc == 0) rc = chan_make(&ack, K_PIPE, 8);
  if (rc < 0) return rc;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    if (ncpu() > 1) pin(1);
    if (chan_side(&data, 0) || chan_side(&ack, 1)) _exit(2);
    unsigned char *buf = malloc(size);
    if (!buf) _exit(4);
    for (uint64_t i = 0; i < n; i++) {
      if (chan_recv(&data, buf, size)) _exit(3);
      uint64_t seq;
      memcpy(&seq, buf, size < 8 ? size : 8);
      if (size >= 8 && seq != i) _exit(5);
    }
    if (chan_send(&ack, "done", 4)) _exit(6);
    _exit(0);
  }
  if (ncpu() > 1) pin(0);
  rc = chan_side(&data, 1);
  if (rc == 0) rc = chan_side(&ack, 0);
  unsigned char *buf = malloc(size);
  if (!buf) rc = -ENOMEM;
  if (buf) memset(buf, 0x33, size);
  double t0 = bench_now();
  for (uint64_t i = 0; i < n && rc == 0; i++) {
    if (size >= 8) memcpy(buf, &i, 8);
    rc = chan_send(&data, buf, size);
  }
  char a[4];
  if (rc == 0) rc = chan_recv(&ack, a, 4);
  *secs = (bench_now() - t0) / (double)n;
  free(buf);
  int st;
  if (rc < 0) kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  chan_close(&data);
  chan_close(&ack);
  if (rc == 0 && (!WIFEXITED(st) || WEXITSTATUS(st))) rc = -EIO;
  return rc;
}

struct memcpy_arg {
  unsigned char *a, *b;
  size_t size;
  uint64_t n;
};

static void do_memcpy(void *p) {
  struct memcpy_arg *m = p;
  /* A buffer far larger than the caches, copied message by message, as
   * the channel's bytes travel. */
  size_t span = (size_t)16 << 20, off = 0;
  for (uint64_t i = 0; i < m->n; i++) {
    memcpy(m->b + off, m->a + off, m->size);
    off += m->size;
    if (off + m->size > span) off = 0;
  }
  bench_sink += m->b[0];
}

static int cmp_d(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static void add_row(struct bench *b, const char *case_, int kind, uint64_t bytes,
                    uint64_t ops, double *t, int reps) {
  qsort(t, (size_t)reps, sizeof t[0], cmp_d);
  struct bench_row r;
  memset(&r, 0, sizeof r);
  snprintf(r.suite, sizeof r.suite, "ipc");
  snprintf(r.case_, sizeof r.case_, "%s", case_);
  snprintf(r.method, sizeof r.method, "%s", kind < 0 ? "memcpy" : kind_names[kind]);
  snprintf(r.baseline, sizeof r.baseline, "%s", kind == K_PIPE ? "" : "pipe");
  r.bytes = bytes;
  r.ops = ops;
  r.seconds = t[reps / 2];
  r.min = t[0];
  r.max = t[reps - 1];
  r.reps = reps;
  bench_add(b, &r);
}

int bench_ipc(struct bench *b) {
  int reps = b->quick ? 3 : 5;
  /* Quick: 5,000 round trips a run (a pipe's take 25-250 us each here, so
   * 20,000 cost 15 s of the quick run for no steadier a median). */
  uint64_t rtts = b->quick ? 5000 : 100000;
  static const size_t sizes[] = {64, 4096, 65536};
  uint64_t counts[3];
  uint64_t budget = b->quick ? (uint64_t)128 << 20 : (uint64_t)1 << 30;
  if (b->max_size && budget > b->max_size) budget = b->max_size;
  for (int s = 0; s < 3; s++) {
    counts[s] = budget / sizes[s];
    if (counts[s] > (b->quick ? 100000u : 1000000u)) counts[s] = b->quick ? 100000 : 1000000;
    if (counts[s] < 100) counts[s] = 100;
  }
  double t[16];
  char s1[32], t1[32];
  int rc = 0;
  signal(SIGPIPE, SIG_IGN);

  /* Latency; pipe first so the others find their baseline. */
  static const int order[NKINDS] = {K_PIPE, K_PIPE_1M, K_STREAM, K_SEQPACKET,
                                    K_RING_SPIN, K_RING, K_RING_SLEEP};
  for (int k = 0; k < NKINDS && rc == 0; k++) {
    for (int r = 0; r < reps && rc == 0; r++) {
      bench_progress(b, "ipc: 64 B round trips, %s, run %d/%d", kind_names[order[k]], r + 1, reps);
      rc = pingpong(order[k], rtts, &t[r]);
    }
    if (rc == 0) add_row(b, "round-trip-64", order[k], 64, rtts, t, reps);
  }
  /* Throughput. */
  for (int s = 0; s < 3 && rc == 0; s++) {
    char case_[32];
    snprintf(case_, sizeof case_, "stream-%zu", sizes[s]);
    for (int k = 0; k < NKINDS && rc == 0; k++) {
      for (int r = 0; r < reps && rc == 0; r++) {
        bench_progress(b, "ipc: %s messages, %s, run %d/%d",
                       cli_format_size(sizes[s], s1, sizeof s1), kind_names[order[k]], r + 1, reps);
        rc = stream(order[k], sizes[s], counts[s], &t[r]);
      }
      if (rc == 0) add_row(b, case_, order[k], sizes[s], counts[s], t, reps);
    }
    if (rc) break;
    /* The ceiling. */
    struct memcpy_arg m = {malloc((size_t)16 << 20), malloc((size_t)16 << 20), sizes[s], 0};
    if (!m.a || !m.b) rc = -ENOMEM;
    if (rc == 0) {
      memset(m.a, 1, (size_t)16 << 20);
      memset(m.b, 2, (size_t)16 << 20);
      struct bench_row row;
      memset(&row, 0, sizeof row);
      m.n = counts[s] / 4 + 1;
      bench_time(do_memcpy, &m, 1, reps, 1, &row);
      for (int r = 0; r < reps; r++) t[r] = row.seconds / (double)m.n;
      add_row(b, case_, -1, sizes[s], m.n, t, reps);
    }
    free(m.a);
    free(m.b);
  }
  bench_progress_done(b);
  if (rc < 0) return rc;

  /* Tables. */
  fprintf(b->out,
          "\nipc: two processes%s; median of %d runs. [x] = pipe time / this "
          "time (>1: faster than a pipe).\n"
          "  ring-spin never sleeps; ring spins 20 us, then sleeps on a futex; "
          "ring-sleep sleeps at once.\n",
          ncpu() > 1 ? " on two cores" : " on one core", reps);
  fprintf(b->out, "%-15s %22s %16s %16s %16s\n", "channel", "64 B round trip",
          "64 B msgs/s", "4 KiB GB/s", "64 KiB GB/s");
  for (int k = 0; k < NKINDS; k++) {
    int kind = order[k];
    struct bench_row *rt = bench_find(b, "ipc", "round-trip-64", kind_names[kind], 64);
    fprintf(b->out, "%-15s", kind_names[kind]);
    char cell[48];
    if (kind == K_PIPE) snprintf(cell, sizeof cell, "%s", bench_fmt_time(rt->seconds, t1, sizeof t1));
    else snprintf(cell, sizeof cell, "%s [%5.2fx]", bench_fmt_time(rt->seconds, t1, sizeof t1), rt->ratio);
    fprintf(b->out, " %22s", cell);
    for (int s = 0; s < 3; s++) {
      char case_[32];
      snprintf(case_, sizeof case_, "stream-%zu", sizes[s]);
      struct bench_row *r = bench_find(b, "ipc", case_, kind_names[kind], sizes[s]);
      double v = s == 0 ? 1.0 / r->seconds : (double)sizes[s] / r->seconds / 1e9;
      if (kind == K_PIPE) snprintf(cell, sizeof cell, s ? "%.2f" : "%.3g", v);
      else snprintf(cell, sizeof cell, s ? "%.2f [%5.1fx]" : "%.3g [%5.1fx]", v, r->ratio);
      fprintf(b->out, " %16s", cell);
    }
    fprintf(b->out, "\n");
  }
  fprintf(b->out, "%-15s %22s", "memcpy ceiling", "");
  for (int s = 0; s < 3; s++) {
    char case_[32];
    snprintf(case_, sizeof case_, "stream-%zu", sizes[s]);
    struct bench_row *r = bench_find(b, "ipc", case_, "memcpy", sizes[s]);
    double v = s == 0 ? 1.0 / r->seconds : (double)sizes[s] / r->seconds / 1e9;
    char cell[32];
    snprintf(cell, sizeof cell, s ? "%.2f" : "%.3g", v);
    fprintf(b->out, " %16s", cell);
  }
  fprintf(b->out, "\n");

  struct bench_row *r64 = bench_find(b, "ipc", "stream-64", "ring", 64);
  struct bench_row *r64k = bench_find(b, "ipc", "stream-65536", "ring", 65536);
  struct bench_row *m64k = bench_find(b, "ipc", "stream-65536", "memcpy", 65536);
  struct bench_row *spin = bench_find(b, "ipc", "round-trip-64", "ring-spin", 64);
  struct bench_row *slp = bench_find(b, "ipc", "round-trip-64", "ring-sleep", 64);
  fprintf(b->out, "\n");
  bench_verdict(b, "ipc",
                "the shared-memory ring moves 64 B messages %.0fx faster than a pipe, "
                "and 64 KiB messages at %.1fx the pipe's bytes/s (%.2fx of memcpy).",
                r64->ratio, r64k->ratio, m64k->seconds / r64k->seconds);
  bench_verdict(b, "ipc",
                "a 64 B round trip takes %s spinning (1/%.0f of a pipe's) and %s "
                "sleeping on a futex (%.2fx the pipe's speed).",
                bench_fmt_time(spin->seconds, t1, sizeof t1), spin->ratio,
                bench_fmt_time(slp->seconds, s1, sizeof s1), slp->ratio);
  return 0;
}
