/*
 * cmd_doctor.c - `memmap doctor`: report the limits and settings that
 * matter to mmap users (mm_env_read) with advice (mm_env_advise), and,
 * with --calibrate, measure on a filesystem the file size from which
 * mapping a file beats reading it, which is the value for
 * mm_view_opts_t.threshold.
 *
 * Calibration writes scratch files of 4 KiB, 8 KiB, ... up to 256 MiB (or
 * --max-size) one at a time, caches each the way a file read from disk is
 * cached (write, fsync, drop from the cache, read back, so read-ahead
 * builds the folios), then times open + read every byte + close through
 * mm_view_open() with the read backend against the mmap backend: the
 * median of several interleaved repetitions (bench_time_set). The
 * threshold is the smallest size from which mapping stays faster at every
 * larger size measured.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"
#include "memmap/env.h"

void cmd_doctor_usage(FILE *out) {
  fprintf(out,
          "usage: memmap doctor [options] [PATH]\n"
          "\n"
          "Report the machine's limits and settings that matter to mmap\n"
          "users, with advice where a value will bite: page and huge page\n"
          "sizes, transparent huge pages, RLIMIT_NOFILE/AS/MEMLOCK,\n"
          "vm.max_map_count and the mappings in use, overcommit, swap,\n"
          "/dev/shm, the filesystem of PATH (default: .), the address width,\n"
          "cachestat, fault_around_bytes, a hypervisor and a virtio balloon.\n"
          "\n"
          "With --calibrate, also measure on PATH's filesystem the file size\n"
          "from which mapping a file beats reading it, and print the value\n"
          "for mm_view_opts_t.threshold. Scratch files up to 256 MiB are\n"
          "created in PATH (a directory) or PATH's directory, and removed.\n"
          "\n"
          "options:\n"
          "  -c, --calibrate      measure the mmap-versus-read threshold\n"
          "  -m, --max-size N     largest scratch file (default 256M)\n"
          "      --json           report as JSON\n"
          "  -h, --help           this text\n"
          "\n"
          "Sizes take K, M, G suffixes (powers of 1024).\n"
          "Exit status: 0 on success, 1 on failure, 2 on bad usage.\n");
}

/* ---------------------------------------------------------------------- */
/* Formatting                                                              */

#define UNKNOWN "unknown"

static const char *size_or_unknown(int64_t v, char *buf, size_t len) {
  if (v < 0) return UNKNOWN;
  return cli_format_size((uint64_t)v, buf, len);
}

static const char *limit_str(uint64_t v, char *buf, size_t len) {
  if (v == MM_ENV_UNLIMITED) return "unlimited";
  return cli_format_size(v, buf, len);
}

static const char *yes_no(int v) { return v < 0 ? UNKNOWN : v ? "yes" : "no"; }

/* "  key:            value" with the values in one column. */
static void kv(const char *key, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void kv(const char *key, const char *fmt, ...) {
  char k[64];
  snprintf(k, sizeof k, "%s:", key);
  printf("  %-20s ", k);
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

/* "  key:  <a>, <b> <what>" for two sizes, or "unknown" when neither is
 * known. */
static void kv_pair(const char *key, int64_t x, int64_t y, const char *what) {
  char a[32], b[32];
  if (x < 0 && y < 0) kv(key, "%s", UNKNOWN);
  else kv(key, "%s, %s %s", size_or_unknown(x, a, sizeof a),
          size_or_unknown(y, b, sizeof b), what);
}

/* Print text wrapped to `width` columns, every line after the first
 * indented by `indent` spaces; the first line starts at column `col`. */
static void wrap(const char *text, int col, int indent, int width) {
  const char *p = text;
  while (*p) {
    while (*p == ' ') p++;
    const char *w = p;
    while (*p && *p != ' ') p++;
    int len = (int)(p - w);
    if (len == 0) break;
    if (col > indent && col + 1 + len > width) {
      printf("\n%*s", indent, "");
      col = indent;
    } else if (col > indent) {
      putchar(' ');
      col++;
    }
    printf("%.*s", len, w);
    col += len;
  }
  putchar('\n');
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
    else putchar(*s);
  }
  putchar('"');
}

static void json_int(int64_t v) {
  if (v < 0) printf("null");
  else printf("%lld", (long long)v);
}

static void json_limit(uint64_t v) {
  if (v == MM_ENV_UNLIMITED) printf("\"unlimited\"");
  else printf("%llu", (unsigned long long)v);
}

static void json_bool(int v) { printf(v < 0 ? "null" : v ? "true" : "false"); }

static void json_strn(const char *s) {
  if (s[0]) json_str(s);
  else printf("null");
}

/* Whether mapping files on this kind of filesystem is wise, in a few
 * words; the advice says why. */
static const char *fs_verdict(const mm_env_t *e) {
  switch (e->fs_kind) {
  case MM_ENV_FS_LOCAL: return "fine";
  case MM_ENV_FS_MEMORY: return "fine (no disk I/O)";
  case MM_ENV_FS_NETWORK: return "not advised: read() instead";
  case MM_ENV_FS_FUSE: return "not advised: read() instead";
  case MM_ENV_FS_OVERLAY: return "fine for reading; copy-up on first write";
  case MM_ENV_FS_PSEUDO: return "not possible: views read these files";
  default: return UNKNOWN;
  }
}

/* ---------------------------------------------------------------------- */
/* Calibration                                                             */

#define CAL_MIN ((uint64_t)4 << 10)
#define CAL_MAX ((uint64_t)256 << 20)
#define CAL_MAXSIZES 32
#define CAL_REPS 7
#define CAL_TARGET_S 0.02

struct cal_row {
  uint64_t bytes;
  double read_s, mmap_s; /* median seconds for open + scan + close */
};

struct calibration {
  char dir[PATH_MAX];
  int nrows;
  struct cal_row rows[CAL_MAXSIZES];
  uint64_t threshold; /* 0: mapping never stayed ahead */
  const char *stopped; /* why it ended before --max-size, or NULL */
};

struct cal_arg {
  const char *path;
  int backend;
  int fail; /* the first error, as a memmap return value */
};

/* The scratch file, for the signal handler to remove. */
static char scratch[PATH_MAX];
static volatile sig_atomic_t have_scratch;

static void on_signal(int sig) {
  if (have_scratch) unlink(scratch);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void cal_view(void *p) {
  struct cal_arg *a = p;
  mm_view_opts_t o;
  memset(&o, 0, sizeof o);
  o.backend = a->backend;
  mm_view_t *v;
  int rc = mm_view_open(&v, a->path, &o);
  if (rc < 0) {
    if (!a->fail) a->fail = rc;
    return;
  }
  bench_sum(mm_view_data(v), (size_t)mm_view_size(v));
  rc = mm_view_close(v);
  if (rc < 0 && !a->fail) a->fail = rc;
}

/* Write `size` bytes to fd and cache them as a file read from disk is:
 * fsync, drop the pages, read the file back front to back. */
static int cal_fill(int fd, uint64_t size, unsigned char *chunk, size_t clen) {
  for (uint64_t at = 0; at < size;) {
    size_t n = size - at < clen ? (size_t)(size - at) : clen;
    ssize_t w = pwrite(fd, chunk, n, (off_t)at);
    if (w <= 0) return w < 0 ? -errno : -EIO;
    at += (uint64_t)w;
  }
  if (fsync(fd) < 0) return -errno;
  int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (rc) return -rc;
  if (lseek(fd, 0, SEEK_SET) < 0) return -errno;
  for (;;) {
    ssize_t n = read(fd, chunk, clen);
    if (n < 0) return -errno;
    if (n == 0) return 0;
  }
}

static int calibrate(const char *path, uint64_t max_size, int64_t fs_free,
                     struct calibration *cal) {
  struct stat st;
  if (stat(path, &st) < 0) return -errno;
  if (S_ISDIR(st.st_mode)) {
    snprintf(cal->dir, sizeof cal->dir, "%s", path);
  } else {
    snprintf(cal->dir, sizeof cal->dir, "%s", path);
    char *slash = strrchr(cal->dir, '/');
    if (!slash) snprintf(cal->dir, sizeof cal->dir, ".");
    else if (slash == cal->dir) cal->dir[1] = 0;
    else *slash = 0;
  }
  static const char tmpl[] = "/.memmap-calibrate-XXXXXX";
  size_t dlen = strlen(cal->dir);
  if (dlen + sizeof tmpl > sizeof scratch) return -ENAMETOOLONG;
  memcpy(scratch, cal->dir, dlen);
  memcpy(scratch + dlen, tmpl, sizeof tmpl);
  int fd = mkostemp(scratch, O_CLOEXEC);
  if (fd < 0) return -errno;
  have_scratch = 1;
  struct sigaction sa, old[3];
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; i++) sigaction(sigs[i], &sa, &old[i]);

  struct bench progress;
  memset(&progress, 0, sizeof progress);
  progress.tty = isatty(2);
  const size_t clen = (size_t)1 << 20;
  unsigned char *chunk = malloc(clen);
  int rc = chunk ? 0 : -ENOMEM;
  for (size_t i = 0; chunk && i < clen; i++) chunk[i] = (unsigned char)(i * 7 + 1);

  uint64_t top = max_size < CAL_MAX ? max_size : CAL_MAX;
  for (uint64_t size = CAL_MIN; rc == 0 && size <= top; size *= 2) {
    char s[32];
    cli_format_size(size, s, sizeof s);
    /* Leave room on the filesystem: never take more than half of it. */
    if (fs_free >= 0 && size > (uint64_t)fs_free / 2) {
      cal->stopped = "not enough free space for larger files";
      break;
    }
    bench_progress(&progress, "doctor: calibrating: %s: writing", s);
    if (ftruncate(fd, 0) < 0) {
      rc = -errno;
      break;
    }
    rc = cal_fill(fd, size, chunk, clen);
    if (rc < 0) break;
    bench_progress(&progress, "doctor: calibrating: %s: timing", s);
    struct cal_arg args[2] = {{scratch, MM_BACKEND_READ, 0},
                              {scratch, MM_BACKEND_MMAP, 0}};
    const bench_fn fns[2] = {cal_view, cal_view};
    void *const argp[2] = {&args[0], &args[1]};
    struct bench_row rows[2];
    memset(rows, 0, sizeof rows);
    bench_time_set(fns, argp, 2, CAL_REPS, CAL_TARGET_S, rows);
    if (args[0].fail || args[1].fail) {
      rc = args[0].fail ? args[0].fail : args[1].fail;
      break;
    }
    struct cal_row *r = &cal->rows[cal->nrows++];
    r->bytes = size;
    r->read_s = rows[0].seconds;
    r->mmap_s = rows[1].seconds;
  }
  bench_progress_done(&progress);
  free(chunk);
  close(fd);
  unlink(scratch);
  have_scratch = 0;
  for (int i = 0; i < 3; i++) sigaction(sigs[i], &old[i], NULL);

  /* From the largest size down, while mapping stays ahead. */
  cal->threshold = 0;
  for (int i = cal->nrows - 1; i >= 0 && cal->rows[i].mmap_s < cal->rows[i].read_s; i--)
    cal->threshold = cal->rows[i].bytes;
  return rc;
}

static void print_calibration(const struct calibration *cal, const mm_env_t *e) {
  char a[32], b[32], c[32];
  printf("\ncalibration in %s (%s): open + read every byte + close, "
         "median of %d\n",
         cal->dir, e->fs_type[0] ? e->fs_type : "unknown filesystem", CAL_REPS);
  printf("  %10s  %10s  %10s  %s\n", "size", "read()", "mmap", "mmap speed-up");
  for (int i = 0; i < cal->nrows; i++) {
    const struct cal_row *r = &cal->rows[i];
    printf("  %10s  %10s  %10s  %.2fx\n", cli_format_size(r->bytes, a, sizeof a),
           bench_fmt_time(r->read_s, b, sizeof b),
           bench_fmt_time(r->mmap_s, c, sizeof c),
           r->mmap_s > 0 ? r->read_s / r->mmap_s : 0.0);
  }
  if (cal->stopped) printf("  (stopped: %s)\n", cal->stopped);
  if (cal->nrows == 0) return;
  uint64_t last = cal->rows[cal->nrows - 1].bytes;
  if (cal->threshold) {
    printf("threshold: %s: mapping beat reading at every size from %s to %s\n",
           cli_format_size(cal->threshold, a, sizeof a),
           cli_format_size(cal->threshold, b, sizeof b),
           cli_format_size(last, c, sizeof c));
    printf("in code:   .threshold = %llu, /* mm_view_opts_t */\n",
           (unsigned long long)cal->threshold);
  } else {
    printf("threshold: none: reading beat mapping at %s, the largest size "
           "measured\n",
           cli_format_size(last, a, sizeof a));
    printf("in code:   .threshold = UINT64_MAX, /* mm_view_opts_t; or "
           "calibrate with a larger --max-size */\n");
  }
}

/* ---------------------------------------------------------------------- */
/* The report                                                              */

static void print_text(const char *path, const mm_env_t *e,
                       const mm_env_advice_t *adv, int nadv) {
  char a[32], b[32], c[64];
  printf("memory\n");
  kv("page size", "%s", size_or_unknown(e->page_size, a, sizeof a));
  if (e->nhugepages > 0) {
    printf("  %-20s ", "huge page sizes:");
    for (int i = 0; i < e->nhugepages; i++) {
      const mm_env_hugepage_t *h = &e->hugepages[i];
      printf("%s%s", i ? ", " : "", cli_format_size(h->size, a, sizeof a));
      if (h->total >= 0 && h->free >= 0)
        printf(" (%lld in pool, %lld free)", (long long)h->total,
               (long long)h->free);
    }
    putchar('\n');
  } else {
    kv("huge page sizes", "%s", e->hugepage_default == 0 ? "none" : UNKNOWN);
  }
  kv("THP anonymous", "%s", e->thp_anon[0] ? e->thp_anon : UNKNOWN);
  kv("THP shmem", "%s", e->thp_shmem[0] ? e->thp_shmem : UNKNOWN);
  kv("THP defrag", "%s", e->thp_defrag[0] ? e->thp_defrag : UNKNOWN);
  static const char *const oc[] = {"heuristic", "always", "strict"};
  if (e->overcommit_ratio >= 0)
    snprintf(c, sizeof c, "%lld%%", (long long)e->overcommit_ratio);
  else
    snprintf(c, sizeof c, "%s", UNKNOWN);
  if (e->overcommit_memory >= 0)
    kv("overcommit", "%d (%s), ratio %s", e->overcommit_memory,
       oc[e->overcommit_memory], c);
  else
    kv("overcommit", "%s", UNKNOWN);
  kv_pair("commit limit", e->commit_limit, e->committed, "committed");
  kv_pair("RAM", e->mem_total, e->mem_available, "available");
  if (e->swap_total == 0) kv("swap", "none");
  else kv_pair("swap", e->swap_total, e->swap_free, "free");

  printf("limits\n");
  if (e->nofile_used >= 0) snprintf(c, sizeof c, ", %lld open", (long long)e->nofile_used);
  else c[0] = 0;
  char n1[32], n2[32];
  if (e->nofile_soft == MM_ENV_UNLIMITED) snprintf(n1, sizeof n1, "unlimited");
  else snprintf(n1, sizeof n1, "%llu", (unsigned long long)e->nofile_soft);
  if (e->nofile_hard == MM_ENV_UNLIMITED) snprintf(n2, sizeof n2, "unlimited");
  else snprintf(n2, sizeof n2, "%llu", (unsigned long long)e->nofile_hard);
  kv("RLIMIT_NOFILE", "%s (hard %s)%s", n1, n2, c);
  kv("RLIMIT_AS", "%s (hard %s)", limit_str(e->as_soft, a, sizeof a),
     limit_str(e->as_hard, b, sizeof b));
  kv("RLIMIT_MEMLOCK", "%s (hard %s)", limit_str(e->memlock_soft, a, sizeof a),
     limit_str(e->memlock_hard, b, sizeof b));
  kv("CAP_IPC_LOCK", "%s", e->cap_ipc_lock == 1 ? "yes (lifts RLIMIT_MEMLOCK)"
                           : yes_no(e->cap_ipc_lock));
  if (e->map_count >= 0) snprintf(c, sizeof c, ", %lld in use", (long long)e->map_count);
  else c[0] = 0;
  if (e->max_map_count >= 0)
    kv("vm.max_map_count", "%lld%s", (long long)e->max_map_count, c);
  else
    kv("vm.max_map_count", "%s%s", UNKNOWN, c);

  printf("shared memory\n");
  if (!strcmp(e->shm_fstype, "none"))
    kv("/dev/shm", "none");
  else if (e->shm_size < 0)
    kv("/dev/shm", "%s", UNKNOWN);
  else
    kv("/dev/shm", "%s, %s, %s free", e->shm_fstype[0] ? e->shm_fstype : UNKNOWN,
       size_or_unknown(e->shm_size, a, sizeof a),
       size_or_unknown(e->shm_free, b, sizeof b));

  printf("filesystem of %s\n", path);
  if (e->fs_magic)
    kv("type", "%s (%s, magic 0x%llx)", e->fs_type[0] ? e->fs_type : UNKNOWN,
       mm_env_fs_kind_name(e->fs_kind), (unsigned long long)e->fs_magic);
  else
    kv("type", "%s", UNKNOWN);
  kv("mount point", "%s", e->fs_mount[0] ? e->fs_mount : UNKNOWN);
  kv_pair("size", e->fs_size, e->fs_free, "free");
  kv("read-only", "%s", yes_no(e->fs_readonly));
  kv("mapping files", "%s", fs_verdict(e));

  printf("platform\n");
  kv("kernel", "%s (%s)", e->kernel[0] ? e->kernel : UNKNOWN,
     e->machine[0] ? e->machine : UNKNOWN);
  if (e->va_bits > 0)
    kv("address space", "%d-bit process, %d-bit virtual addresses", e->ptr_bits,
       e->va_bits);
  else
    kv("address space", "%d-bit process", e->ptr_bits);
  kv("hypervisor", "%s", yes_no(e->hypervisor));
  if (e->balloon == 1)
    kv("virtio balloon", "yes, free page reporting %s",
       e->balloon_reporting == 1 ? "on" : e->balloon_reporting == 0 ? "off" : UNKNOWN);
  else
    kv("virtio balloon", "%s", yes_no(e->balloon));
  kv("cachestat", "%s", e->cachestat == 1 ? "available" : e->cachestat == 0 ? "unavailable" : UNKNOWN);
  if (e->fault_around_bytes >= 0)
    kv("fault_around_bytes", "%s", cli_format_size((uint64_t)e->fault_around_bytes, a, sizeof a));
  else
    kv("fault_around_bytes", "unknown (needs debugfs and root)");

  printf("\nadvice:\n");
  if (nadv == 0) printf("  none: nothing here should bite\n");
  for (int i = 0; i < nadv; i++) {
    int col = printf("  %-8s %s:", mm_env_severity_name(adv[i].severity), adv[i].key);
    wrap(adv[i].message, col, 11, 78);
  }
}

static void print_json(const char *path, const mm_env_t *e,
                       const mm_env_advice_t *adv, int nadv,
                       const struct calibration *cal) {
  printf("{\n  \"path\": ");
  json_str(path);
  printf(",\n  \"memory\": {\"page_size\": ");
  json_int(e->page_size);
  printf(", \"hugepage_default\": ");
  json_int(e->hugepage_default);
  printf(", \"hugepages\": [");
  for (int i = 0; i < e->nhugepages; i++) {
    printf("%s{\"size\": %llu, \"total\": ", i ? ", " : "",
           (unsigned long long)e->hugepages[i].size);
    json_int(e->hugepages[i].total);
    printf(", \"free\": ");
    json_int(e->hugepages[i].free);
    putchar('}');
  }
  printf("],\n    \"thp_anon\": ");
  json_strn(e->thp_anon);
  printf(", \"thp_shmem\": ");
  json_strn(e->thp_shmem);
  printf(", \"thp_defrag\": ");
  json_strn(e->thp_defrag);
  printf(",\n    \"overcommit_memory\": ");
  json_int(e->overcommit_memory);
  printf(", \"overcommit_ratio\": ");
  json_int(e->overcommit_ratio);
  printf(", \"commit_limit\": ");
  json_int(e->commit_limit);
  printf(", \"committed\": ");
  json_int(e->committed);
  printf(",\n    \"mem_total\": ");
  json_int(e->mem_total);
  printf(", \"mem_available\": ");
  json_int(e->mem_available);
  printf(", \"swap_total\": ");
  json_int(e->swap_total);
  printf(", \"swap_free\": ");
  json_int(e->swap_free);
  printf("},\n  \"limits\": {\"nofile_soft\": ");
  json_limit(e->nofile_soft);
  printf(", \"nofile_hard\": ");
  json_limit(e->nofile_hard);
  printf(", \"nofile_used\": ");
  json_int(e->nofile_used);
  printf(",\n    \"as_soft\": ");
  json_limit(e->as_soft);
  printf(", \"as_hard\": ");
  json_limit(e->as_hard);
  printf(", \"memlock_soft\": ");
  json_limit(e->memlock_soft);
  printf(", \"memlock_hard\": ");
  json_limit(e->memlock_hard);
  printf(", \"cap_ipc_lock\": ");
  json_bool(e->cap_ipc_lock);
  printf(",\n    \"max_map_count\": ");
  json_int(e->max_map_count);
  printf(", \"map_count\": ");
  json_int(e->map_count);
  printf("},\n  \"shm\": {\"fstype\": ");
  json_strn(e->shm_fstype);
  printf(", \"size\": ");
  json_int(e->shm_size);
  printf(", \"free\": ");
  json_int(e->shm_free);
  printf("},\n  \"filesystem\": {\"type\": ");
  json_strn(e->fs_type);
  printf(", \"kind\": ");
  json_str(mm_env_fs_kind_name(e->fs_kind));
  printf(", \"magic\": ");
  if (e->fs_magic) printf("%llu", (unsigned long long)e->fs_magic);
  else printf("null");
  printf(", \"mount\": ");
  json_strn(e->fs_mount);
  printf(",\n    \"readonly\": ");
  json_bool(e->fs_readonly);
  printf(", \"size\": ");
  json_int(e->fs_size);
  printf(", \"free\": ");
  json_int(e->fs_free);
  printf(", \"mapping\": ");
  json_str(fs_verdict(e));
  printf("},\n  \"platform\": {\"kernel\": ");
  json_strn(e->kernel);
  printf(", \"machine\": ");
  json_strn(e->machine);
  printf(", \"ptr_bits\": %d, \"va_bits\": ", e->ptr_bits);
  json_int(e->va_bits);
  printf(",\n    \"cachestat\": ");
  json_bool(e->cachestat);
  printf(", \"fault_around_bytes\": ");
  json_int(e->fault_around_bytes);
  printf(", \"hypervisor\": ");
  json_bool(e->hypervisor);
  printf(", \"balloon\": ");
  json_bool(e->balloon);
  printf(", \"balloon_reporting\": ");
  json_bool(e->balloon_reporting);
  printf("},\n  \"advice\": [");
  for (int i = 0; i < nadv; i++) {
    printf("%s\n    {\"severity\": ", i ? "," : "");
    json_str(mm_env_severity_name(adv[i].severity));
    printf(", \"key\": ");
    json_str(adv[i].key);
    printf(", \"message\": ");
    json_str(adv[i].message);
    putchar('}');
  }
  printf("%s]", nadv ? "\n  " : "");
  if (cal) {
    printf(",\n  \"calibration\": {\"dir\": ");
    json_str(cal->dir);
    printf(", \"reps\": %d, \"rows\": [", CAL_REPS);
    for (int i = 0; i < cal->nrows; i++)
      printf("%s\n    {\"bytes\": %llu, \"read_seconds\": %.9g, "
             "\"mmap_seconds\": %.9g}",
             i ? "," : "", (unsigned long long)cal->rows[i].bytes,
             cal->rows[i].read_s, cal->rows[i].mmap_s);
    printf("],\n    \"threshold\": ");
    if (cal->threshold) printf("%llu", (unsigned long long)cal->threshold);
    else printf("null");
    printf(", \"stopped\": ");
    if (cal->stopped) json_str(cal->stopped);
    else printf("null");
    putchar('}');
  }
  printf("\n}\n");
}

int cmd_doctor(int argc, char **argv) {
  static const struct option longopts[] = {
      {"calibrate", no_argument, NULL, 'c'},
      {"max-size", required_argument, NULL, 'm'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int json = 0, cal_on = 0, c;
  uint64_t max_size = CAL_MAX;
  int max_given = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "cm:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'c': cal_on = 1; break;
    case 'm':
      if (cli_parse_size(optarg, &max_size) < 0 || max_size < CAL_MIN) {
        cli_errorf("doctor: bad size '%s' (at least 4K)", optarg);
        return CLI_USAGE;
      }
      max_given = 1;
      break;
    case 'j': json = 1; break;
    case 'h': cmd_doctor_usage(stdout); return CLI_OK;
    default: cmd_doctor_usage(stderr); return CLI_USAGE;
    }
  }
  if (argc - optind > 1) {
    cmd_doctor_usage(stderr);
    return CLI_USAGE;
  }
  if (max_given && !cal_on) {
    cli_errorf("doctor: --max-size needs --calibrate");
    return CLI_USAGE;
  }
  const char *path = optind < argc ? argv[optind] : ".";
  mm_env_t env;
  int rc = mm_env_read(&env, path);
  if (rc < 0) {
    cli_error(path, rc);
    return CLI_FAIL;
  }
  mm_env_advice_t *adv = NULL;
  int nadv = mm_env_advise(&env, NULL, 0);
  if (nadv > 0) {
    adv = calloc((size_t)nadv, sizeof *adv);
    if (!adv) {
      cli_error("doctor", -ENOMEM);
      return CLI_FAIL;
    }
    nadv = mm_env_advise(&env, adv, nadv);
  }
  if (nadv < 0) {
    cli_error("doctor", nadv);
    free(adv);
    return CLI_FAIL;
  }
  int status = CLI_OK;
  struct calibration *cal = NULL;
  if (cal_on) {
    cal = calloc(1, sizeof *cal);
    if (!cal) {
      cli_error("doctor", -ENOMEM);
      free(adv);
      return CLI_FAIL;
    }
  }
  if (json) {
    /* One JSON object: measure first, then print. */
    if (cal) rc = calibrate(path, max_size, env.fs_free, cal);
    print_json(path, &env, adv, nadv, cal);
  } else {
    print_text(path, &env, adv, nadv);
    if (cal) {
      fflush(stdout);
      rc = calibrate(path, max_size, env.fs_free, cal);
      if (cal->nrows > 0) print_calibration(cal, &env);
    }
  }
  if (cal && rc < 0) {
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "doctor: calibrating in %s",
             cal->dir[0] ? cal->dir : path);
    fflush(stdout);
    cli_error(what, rc);
    status = CLI_FAIL;
  }
  if (fflush(stdout) != 0) {
    cli_error("doctor: standard output", -errno);
    status = CLI_FAIL;
  }
  free(cal);
  free(adv);
  return status;
}
