/*
 * runner.c - runs every registered test in its own process, with a time
 * limit, and prints TAP. A crash or a hang fails one test, not the run.
 *
 * usage: run-tests [-l] [-t SECONDS] [NAME-SUBSTRING...]
 *   -l  list the tests and exit
 *   -t  default time limit per test (30 s; MM_TEST_TIMEOUT_SCALE multiplies
 *       every limit, for slow sanitizer builds)
 * MM_TEST_NOFORK=1 with a filter that selects one test runs it in the
 * runner's own process, for a debugger.
 * The last line is "N passed, N failed, N skipped". Exit status 0 when
 * nothing failed.
 */
#include "test.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MM_TEST_BINDIR
#define MM_TEST_BINDIR "build"
#endif
#ifndef MM_TEST_SRCDIR
#define MM_TEST_SRCDIR "."
#endif

static struct mm_test *tests_head, **tests_tail = &tests_head;
static char test_dir[256];
static int skip_fd = -1;

void mm_test_register(struct mm_test *t) {
  *tests_tail = t;
  tests_tail = &t->next;
}

void mm_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "# FAIL %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  exit(1);
}

void mm_test_skip(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  if (skip_fd >= 0 && write(skip_fd, msg, (size_t)n) < 0) { /* best effort */
  }
  fflush(NULL);
  exit(77);
}

const char *mm_test_dir(void) { return test_dir; }

const char *mm_test_path(const char *name) {
  static char slots[8][512];
  static unsigned next;
  char *p = slots[next++ % 8];
  snprintf(p, sizeof slots[0], "%s/%s", test_dir, name);
  return p;
}

void mm_test_write_file(const char *path, uint64_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) FAIL("fopen %s: %s", path, strerror(errno));
  unsigned char buf[65536];
  for (uint64_t i = 0; i < size;) {
    size_t n = size - i < sizeof buf ? (size_t)(size - i) : sizeof buf;
    for (size_t k = 0; k < n; k++) buf[k] = mm_test_byte(i + k);
    if (fwrite(buf, 1, n, f) != n) FAIL("fwrite %s: %s", path, strerror(errno));
    i += n;
  }
  if (fclose(f) != 0) FAIL("fclose %s: %s", path, strerror(errno));
}

const char *mm_test_bindir(void) { return MM_TEST_BINDIR; }
const char *mm_test_srcdir(void) { return MM_TEST_SRCDIR; }

int mm_test_run(char *out, size_t cap, const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  fflush(NULL);
  FILE *p = popen(cmd, "r");
  if (!p) FAIL("popen %s: %s", cmd, strerror(errno));
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = 0;
  /* Drain what did not fit, so the command is not killed by SIGPIPE. */
  char sink[4096];
  while (fread(sink, 1, sizeof sink, p) > 0) {
  }
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run one test; returns 0 pass, 1 fail, 2 skip. */
static int run_one(struct mm_test *t, int num, double limit) {
  snprintf(test_dir, sizeof test_dir, "%s/mmtest.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(test_dir)) {
    printf("not ok %d - %s # mkdtemp: %s\n", num, t->name, strerror(errno));
    return 1;
  }
  int pfd[2];
  /* Close-on-exec: a program the test runs (a daemon, say) must not hold
   * the write end, or reading the skip reason would wait for it. The read
   * end does not block for the same reason. */
  if (pipe2(pfd, O_CLOEXEC) < 0 || fcntl(pfd[0], F_SETFL, O_NONBLOCK) < 0) {
    printf("not ok %d - %s # pipe: %s\n", num, t->name, strerror(errno));
    return 1;
  }
  fflush(NULL);
  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) {
    printf("not ok %d - %s # fork: %s\n", num, t->name, strerror(errno));
    return 1;
  }
  if (pid == 0) {
    setpgid(0, 0);
    close(pfd[0]);
    skip_fd = pfd[1];
    t->fn();
    fflush(NULL);
    exit(0);
  }
  setpgid(pid, pid);
  close(pfd[1]);
  int status = 0, timed_out = 0;
  useconds_t nap = 200;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) break;
    if (now() - t0 > limit) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      timed_out = 1;
      break;
    }
    usleep(nap);
    if (nap < 20000) nap *= 2;
  }
  kill(-pid, SIGKILL); /* stray grandchildren */
  double dt = now() - t0;
  char reason[512] = "";
  ssize_t n = read(pfd[0], reason, sizeof reason - 1);
  reason[n > 0 ? n : 0] = 0;
  close(pfd[0]);
  nftw(test_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

  if (timed_out) {
    printf("not ok %d - %s # timed out after %.0f s\n", num, t->name, limit);
    return 1;
  }
  if (WIFSIGNALED(status)) {
    printf("not ok %d - %s # killed by signal %d (%s)\n", num, t->name,
           WTERMSIG(status), strsignal(WTERMSIG(status)));
    return 1;
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 77) {
    printf("ok %d - %s # SKIP %s\n", num, t->name, reason[0] ? reason : "(no reason given)");
    return 2;
  }
  if (code != 0) {
    printf("not ok %d - %s # exit status %d\n", num, t->name, code);
    return 1;
  }
  printf("ok %d - %s (%.2f s)\n", num, t->name, dt);
  return 0;
}

static int matches(const char *name, int argc, char **argv) {
  if (argc == 0) return 1;
  for (int i = 0; i < argc; i++)
    if (strstr(name, argv[i])) return 1;
  return 0;
}

int main(int argc, char **argv) {
  double limit = 30, scale = 1;
  int list = 0, opt;
  while ((opt = getopt(argc, argv, "lt:")) != -1) {
    if (opt == 'l') list = 1;
    else if (opt == 't') limit = atof(optarg);
    else {
      fprintf(stderr, "usage: %s [-l] [-t SECONDS] [NAME...]\n", argv[0]);
      return 2;
    }
  }
  if (getenv("MM_TEST_TIMEOUT_SCALE")) scale = atof(getenv("MM_TEST_TIMEOUT_SCALE"));
  if (scale <= 0) scale = 1;
  argc -= optind;
  argv += optind;
  int total = 0;
  for (struct mm_test *t = tests_head; t; t = t->next)
    total += matches(t->name, argc, argv);
  if (list) {
    for (struct mm_test *t = tests_head; t; t = t->next)
      if (matches(t->name, argc, argv)) printf("%s\n", t->name);
    return 0;
  }
  /* MM_TEST_NOFORK=1 runs the (single) selected test in this process, for
   * a debugger. */
  if (getenv("MM_TEST_NOFORK") && total == 1) {
    for (struct mm_test *t = tests_head; t; t = t->next) {
      if (!matches(t->name, argc, argv)) continue;
      snprintf(test_dir, sizeof test_dir, "/tmp/mmtest.XXXXXX");
      if (!mkdtemp(test_dir)) return 1;
      t->fn();
      printf("ok 1 - %s (in process; %s left in place)\n", t->name, test_dir);
      return 0;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  printf("1..%d\n", total);
  int num = 0, passed = 0, failed = 0, skipped = 0;
  for (struct mm_test *t = tests_head; t; t = t->next) {
    if (!matches(t->name, argc, argv)) continue;
    double lim = (t->timeout_s ? t->timeout_s : limit) * scale;
    int r = run_one(t, ++num, lim);
    if (r == 0) passed++;
    else if (r == 1) failed++;
    else skipped++;
    fflush(stdout);
  }
  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}

double mm_test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int mm_test_wait_flag(_Atomic int *flag, double seconds) {
  double t0 = mm_test_now();
  while (!atomic_load(flag)) {
    if (mm_test_now() - t0 > seconds) return 0;
    usleep(200);
  }
  return 1;
}

void *mm_test_shared_page(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) FAIL("mmap shared: %s", strerror(errno));
  memset(p, 0, size);
  return p;
}

int mm_test_wait_child(int pid, double seconds) {
  double t0 = mm_test_now();
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0 && errno != EINTR) FAIL("waitpid: %s", strerror(errno));
    if (mm_test_now() - t0 > seconds) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    usleep(500);
  }
}
