/*
 * cmd_cache.c - `memmap cache`: what of some files is in the page cache;
 * load (touch), evict or lock it. A client of mm_cache, in the manner of
 * vmtouch.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void cmd_cache_usage(FILE *out) {
  fprintf(out,
          "usage: memmap cache [-t|-e|-l] [-r] [-v] [--json] [options] PATH...\n"
          "\n"
          "Report how much of each file is in the page cache (resident pages,\n"
          "and with cachestat also dirty, writeback and evicted pages), or\n"
          "change it. Directories need -r.\n"
          "\n"
          "actions (default: report only):\n"
          "  -t, --touch          load the files into the page cache\n"
          "  -e, --evict          drop them from the page cache (what cannot be\n"
          "                       dropped, dirty or mapped pages, is reported)\n"
          "  -l, --lock           load and lock them in memory until SIGINT or\n"
          "                       SIGTERM (like vmtouch -l)\n"
          "options:\n"
          "  -r, --recursive      descend into directories\n"
          "  -L, --follow         follow symbolic links (default: skip them)\n"
          "  -x, --one-file-system  do not cross into other filesystems\n"
          "  -v, --verbose        a line per file, with a map of its pages\n"
          "                       (O: all resident, o: some, space: none)\n"
          "  -m, --method M       auto (default), cachestat or mincore\n"
          "  -d, --daemon         with -l: lock in the background and return\n"
          "  -p, --pidfile FILE   with -l: write the locking process's pid\n"
          "  -q, --quiet          no summary\n"
          "      --json           the summary (and with -v, every file) as JSON\n"
          "  -h, --help           this text\n"
          "\n"
          "Files you could not write: the kernel does not tell their residency\n"
          "(Linux 5.2+), and they are reported as errors, not as 0%%.\n"
          "Exit status: 0 on success, 1 if any path failed, 2 on bad usage.\n");
}

enum { ACT_QUERY, ACT_TOUCH, ACT_EVICT, ACT_LOCK };

struct cache_run {
  int action, verbose, json, quiet, method, tty;
  unsigned walk_flags;
  int recursive;
  uint64_t files, dirs, pages, resident, failed;
  int64_t dirty, writeback, evicted, recently; /* -1: unknown */
  int used_method;
  mm_cache_lock_t **locks;
  size_t nlocks, caplocks;
  int json_entries;
  double last_progress;
  FILE *out;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* A 60-column picture of a file's pages. */
static void page_map(int fd, char *line, size_t cols) {
  uint64_t n = 0;
  memset(line, ' ', cols);
  line[cols] = 0;
  if (mm_cache_pages(fd, 0, 0, NULL, 0, &n) < 0 || n == 0) return;
  unsigned char *vec = malloc((size_t)n);
  if (!vec) return;
  if (mm_cache_pages(fd, 0, 0, vec, (size_t)n, &n) == 0) {
    size_t used = n < cols ? (size_t)n : cols;
    for (size_t c = 0; c < used; c++) {
      uint64_t lo = n * c / used, hi = n * (c + 1) / used, in = 0;
      for (uint64_t i = lo; i < hi; i++) in += vec[i];
      line[c] = in == hi - lo ? 'O' : in ? 'o' : ' ';
    }
    line[used] = 0;
  }
  free(vec);
}

static void add_counts(struct cache_run *r, const mm_cache_stat_t *st) {
  r->pages += st->pages;
  r->resident += st->resident;
  r->used_method = st->method;
  if (st->dirty < 0) {
    r->dirty = r->writeback = r->evicted = r->recently = -1;
  } else if (r->dirty >= 0) {
    r->dirty += st->dirty;
    r->writeback += st->writeback;
    r->evicted += st->evicted;
    r->recently += st->recently_evicted;
  }
}

static void file_error(struct cache_run *r, const char *path, int err) {
  r->failed++;
  if (r->tty) fputs("\r\033[K", stderr);
  cli_error(path, err);
  if (r->json && r->verbose) {
    fprintf(r->out, "%s\n    {\"path\": ", r->json_entries++ ? "," : "");
    json_string(r->out, path);
    fprintf(r->out, ", \"error\": ");
    json_string(r->out, mm_errname(err));
    fprintf(r->out, "}");
  }
}

static int visit(void *arg, const char *path, int err, int is_dir, int depth) {
  struct cache_run *r = arg;
  if (err) {
    file_error(r, path, err);
    return 0;
  }
  if (is_dir) {
    r->dirs++;
    (void)depth;
    return 0;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    file_error(r, path, -errno);
    return 0;
  }
  int rc = 0;
  mm_cache_stat_t st;
  if (r->action == ACT_TOUCH) rc = mm_cache_touch(fd, 0, 0);
  if (r->action == ACT_LOCK) {
    mm_cache_lock_t *l = NULL;
    rc = mm_cache_lock(fd, 0, 0, &l);
    if (rc == -EINVAL) rc = 0; /* an empty file: nothing to lock */
    if (l) {
      if (r->nlocks == r->caplocks) {
        size_t n = r->caplocks ? r->caplocks * 2 : 64;
        mm_cache_lock_t **nl = realloc(r->locks, n * sizeof *nl);
        if (!nl) {
          (void)mm_cache_unlock(l);
          rc = -ENOMEM;
        } else {
          r->locks = nl;
          r->caplocks = n;
        }
      }
      if (rc == 0) r->locks[r->nlocks++] = l;
    }
  }
  if (rc == 0)
    rc = r->action == ACT_EVICT ? mm_cache_evict(fd, 0, 0, r->method, &st)
                                : mm_cache_stat_fd(fd, 0, 0, r->method, &st);
  if (rc < 0) {
    close(fd);
    file_error(r, path, rc);
    return 0;
  }
  r->files++;
  add_counts(r, &st);
  if (r->verbose) {
    char map[64];
    page_map(fd, map, 60);
    if (r->tty) fputs("\r\033[K", stderr);
    if (r->json) {
      fprintf(r->out, "%s\n    {\"path\": ", r->json_entries++ ? "," : "");
      json_string(r->out, path);
      fprintf(r->out, ", \"pages\": %llu, \"resident\": %llu, \"map\": \"%s\"}",
              (unsigned long long)st.pages, (unsigned long long)st.resident, map);
    } else {
      fprintf(r->out, "%s\n[%-60s] %llu/%llu\n", path, map,
              (unsigned long long)st.resident, (unsigned long long)st.pages);
    }
  }
  close(fd);
  if (r->tty && now_s() - r->last_progress > 0.1) {
    r->last_progress = now_s();
    fprintf(stderr, "\r\033[K%llu files, %llu resident pages: %.60s",
            (unsigned long long)r->files, (unsigned long long)r->resident, path);
  }
  return 0;
}

static void summary(struct cache_run *r, double elapsed) {
  uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
  double pct = r->pages ? 100.0 * (double)r->resident / (double)r->pages : 0;
  const char *verb = r->action == ACT_TOUCH   ? "Touched"
                     : r->action == ACT_LOCK  ? "Locked"
                     : r->action == ACT_EVICT ? "Left"
                                              : "Resident";
  if (r->json) {
    fprintf(r->out,
            "%s\"method\": \"%s\", \"action\": \"%s\", \"files\": %llu, "
            "\"directories\": %llu, \"failed\": %llu, \"page_size\": %llu, "
            "\"pages\": %llu, \"resident_pages\": %llu, \"resident_percent\": %.2f, "
            "\"dirty_pages\": %lld, \"writeback_pages\": %lld, "
            "\"evicted_pages\": %lld, \"recently_evicted_pages\": %lld, "
            "\"elapsed_seconds\": %.6f}\n",
            r->verbose ? "\n  ],\n  " : "{",
            mm_cache_method_name(r->used_method),
            r->action == ACT_TOUCH ? "touch" : r->action == ACT_EVICT ? "evict"
            : r->action == ACT_LOCK ? "lock" : "query",
            (unsigned long long)r->files, (unsigned long long)r->dirs,
            (unsigned long long)r->failed, (unsigned long long)ps,
            (unsigned long long)r->pages, (unsigned long long)r->resident, pct,
            (long long)r->dirty, (long long)r->writeback, (long long)r->evicted,
            (long long)r->recently, elapsed);
    return;
  }
  char a[32], b[32];
  fprintf(r->out, "           Files: %llu\n     Directories: %llu\n",
          (unsigned long long)r->files, (unsigned long long)r->dirs);
  fprintf(r->out, "%10s Pages: %llu/%llu  %s/%s  %.3g%%\n", verb,
          (unsigned long long)r->resident, (unsigned long long)r->pages,
          cli_format_size(r->resident * ps, a, sizeof a),
          cli_format_size(r->pages * ps, b, sizeof b), pct);
  if (r->dirty >= 0)
    fprintf(r->out,
            "     Dirty Pages: %lld  (writeback %lld, evicted %lld, recently "
            "evicted %lld)\n",
            (long long)r->dirty, (long long)r->writeback, (long long)r->evicted,
            (long long)r->recently);
  if (r->action == ACT_EVICT && r->resident)
    fprintf(r->out, "                 (%llu pages could not be evicted: dirty, "
                    "under writeback or mapped)\n",
            (unsigned long long)r->resident);
  if (r->failed) fprintf(r->out, "          Failed: %llu\n", (unsigned long long)r->failed);
  fprintf(r->out, "          Method: %s\n         Elapsed: %.4g seconds\n",
          mm_cache_method_name(r->used_method), elapsed);
}

/* -l: stay until SIGINT or SIGTERM. */
static void wait_for_signal(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sig;
  sigwait(&set, &sig);
}

static int write_pidfile(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return -errno;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  int rc = write(fd, buf, (size_t)n) == n ? 0 : -errno;
  if (close(fd) < 0 && rc == 0) rc = -errno;
  return rc;
}

int cmd_cache(int argc, char **argv) {
  static const struct option longopts[] = {
      {"touch", no_argument, NULL, 't'},
      {"evict", no_argument, NULL, 'e'},
      {"lock", no_argument, NULL, 'l'},
      {"recursive", no_argument, NULL, 'r'},
      {"follow", no_argument, NULL, 'L'},
      {"one-file-system", no_argument, NULL, 'x'},
      {"verbose", no_argument, NULL, 'v'},
      {"method", required_argument, NULL, 'm'},
      {"daemon", no_argument, NULL, 'd'},
      {"pidfile", required_argument, NULL, 'p'},
      {"quiet", no_argument, NULL, 'q'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  struct cache_run r;
  memset(&r, 0, sizeof r);
  r.out = stdout;
  int daemon_mode = 0, c, actions = 0;
  const char *pidfile = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "telrLxvm:dp:qh", longopts, NULL)) != -1) {
    switch (c) {
    case 't': r.action = ACT_TOUCH; actions++; break;
    case 'e': r.action = ACT_EVICT; actions++; break;
    case 'l': r.action = ACT_LOCK; actions++; break;
    case 'r': r.recursive = 1; break;
    case 'L': r.walk_flags |= MM_CACHE_FOLLOW; break;
    case 'x': r.walk_flags |= MM_CACHE_XDEV; break;
    case 'v': r.verbose = 1; break;
    case 'm':
      if (!strcmp(optarg, "auto")) r.method = MM_CACHE_AUTO;
      else if (!strcmp(optarg, "cachestat")) r.method = MM_CACHE_CACHESTAT;
      else if (!strcmp(optarg, "mincore")) r.method = MM_CACHE_MINCORE;
      else {
        cli_errorf("cache: unknown method '%s' (auto, cachestat or mincore)", optarg);
        return CLI_USAGE;
      }
      break;
    case 'd': daemon_mode = 1; break;
    case 'p': pidfile = optarg; break;
    case 'q': r.quiet = 1; break;
    case 'j': r.json = 1; break;
    case 'h': cmd_cache_usage(stdout); return CLI_OK;
    default: cmd_cache_usage(stderr); return CLI_USAGE;
    }
  }
  if (optind >= argc) {
    cmd_cache_usage(stderr);
    return CLI_USAGE;
  }
  if (actions > 1) {
    cli_errorf("cache: choose one of -t, -e and -l");
    return CLI_USAGE;
  }
  if ((daemon_mode || pidfile) && r.action != ACT_LOCK) {
    cli_errorf("cache: --daemon and --pidfile go with -l");
    return CLI_USAGE;
  }
  if (r.method == MM_CACHE_CACHESTAT && !mm_cache_have_cachestat()) {
    cli_errorf("cache: this kernel has no cachestat(2) (Linux 6.5+); use -m mincore");
    return CLI_FAIL;
  }
  r.dirty = r.writeback = r.evicted = r.recently = 0;
  r.used_method = r.method ? r.method
                           : mm_cache_have_cachestat() ? MM_CACHE_CACHESTAT
                                                       : MM_CACHE_MINCORE;
  r.tty = isatty(2) && !r.json;

  /* Locks are not inherited across fork: become the daemon first, lock,
   * then tell the waiting parent how it went. */
  int ready[2] = {-1, -1};
  if (daemon_mode) {
    if (pipe(ready) < 0) {
      cli_error("pipe", -errno);
      return CLI_FAIL;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      cli_error("fork", -errno);
      return CLI_FAIL;
    }
    if (pid > 0) {
      close(ready[1]);
      char status = 1;
      if (read(ready[0], &status, 1) != 1) status = 1;
      return status;
    }
    close(ready[0]);
    setsid();
    r.tty = 0;
  }

  double t0 = now_s();
  if (r.json && r.verbose) fprintf(r.out, "{\n  \"entries\": [");
  for (int i = optind; i < argc; i++) {
    struct stat st;
    /* Without -r a directory is an error of its own, not walked. */
    if (!r.recursive && stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
      file_error(&r, argv[i], -EISDIR);
      continue;
    }
    int rc = mm_cache_walk(argv[i], r.walk_flags, visit, &r);
    if (rc < 0) file_error(&r, argv[i], rc);
  }
  if (r.tty) fputs("\r\033[K", stderr);
  if (!r.quiet || r.json) summary(&r, now_s() - t0);
  fflush(r.out);

  int status = r.failed ? CLI_FAIL : CLI_OK;
  if (r.action == ACT_LOCK && status == CLI_OK) {
    if (pidfile) {
      int rc = write_pidfile(pidfile);
      if (rc < 0) {
        cli_error(pidfile, rc);
        status = CLI_FAIL;
      }
    }
    if (daemon_mode) {
      char s = (char)status;
      if (write(ready[1], &s, 1) != 1) status = CLI_FAIL;
      close(ready[1]);
      int devnull = open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
        if (devnull > 2) close(devnull);
      }
    }
    if (status == CLI_OK) wait_for_signal();
    if (pidfile) unlink(pidfile);
  } else if (daemon_mode) {
    char s = (char)status;
    if (write(ready[1], &s, 1) != 1) status = CLI_FAIL;
    close(ready[1]);
  }
  for (size_t i = 0; i < r.nlocks; i++) (void)mm_cache_unlock(r.locks[i]);
  free(r.locks);
  return status;
}
