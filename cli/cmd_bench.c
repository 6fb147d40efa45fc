/*
 * cmd_bench.c - `memmap bench [SUITE...]`: run benchmark suites and report
 * every figure beside its baseline from the same run.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

static const struct {
  const char *name;
  int (*run)(struct bench *b);
  const char *summary;
} suites[] = {
    {"files", bench_files,
     "mmap vs read() for whole-file scans and random 4 KiB reads, 512 B to "
     "256 MiB"},
    {"grow", bench_grow,
     "growing a buffer: regions vs realloc() and mremap, and fragmentation"},
    {"cache", bench_cache,
     "page-cache residency queries: cachestat, mincore, vmtouch, fincore"},
    {"ipc", bench_ipc,
     "the shared-memory ring against pipes and Unix sockets, two processes"},
    {"share", bench_share,
     "memory used by N processes reading one file: mmap vs read()"},
    {"heap", bench_heap,
     "the persistent heap: small objects vs malloc, jemalloc, mimalloc; commits vs LMDB"},
};
#define NSUITES (sizeof suites / sizeof suites[0])

void cmd_bench_usage(FILE *out) {
  fprintf(out,
          "usage: memmap bench [--quick] [--json FILE] [--report DIR] [--dir DIR]\n"
          "                    [--max-size N] [SUITE...]\n"
          "\n"
          "Measure, on this machine, when memory mapping beats the usual\n"
          "alternative. Every figure is printed beside its baseline from the\n"
          "same run, as a ratio (baseline time / method time: >1 is faster).\n"
          "With no SUITE, every suite runs.\n"
          "\n"
          "suites:\n");
  for (size_t i = 0; i < NSUITES; i++)
    fprintf(out, "  %-8s %s\n", suites[i].name, suites[i].summary);
  fprintf(out,
          "\n"
          "options:\n"
          "  -q, --quick       fewer, shorter repetitions and smaller sizes (all\n"
          "                    the suites in under two minutes)\n"
          "  -j, --json FILE   also write every row as JSON to FILE ('-' for\n"
          "                    standard output)\n"
          "  -d, --dir DIR     where to create scratch files (default: $TMPDIR\n"
          "                    or /tmp); the filesystem of DIR is measured\n"
          "  -m, --max-size N  skip files and buffers larger than N (e.g. 16M)\n"
          "  -r, --report DIR  also write DIR/index.html (tables, verdicts, SVG\n"
          "                    charts; self-contained) and DIR/report.md\n"
          "  -h, --help        this text\n"
          "\n"
          "JSON rows carry suite, case, method, bytes, seconds (median per\n"
          "operation), min_seconds, max_seconds, reps, baseline and\n"
          "ratio_vs_baseline.\n"
          "Exit status: 0 on success, 1 on failure, 2 on bad usage.\n");
}

struct machine {
  char cpu[128], kernel[128], fs[32], thp[32], when[32];
  long cores, page;
  unsigned long long mem;
};

/* The first line of a file, without its newline. */
static void first_line(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "r");
  buf[0] = 0;
  if (!f) return;
  if (fgets(buf, (int)len, f)) buf[strcspn(buf, "\n")] = 0;
  fclose(f);
}

static void machine_read(struct machine *m, const char *dir) {
  memset(m, 0, sizeof *m);
  snprintf(m->cpu, sizeof m->cpu, "unknown");
  FILE *ci = fopen("/proc/cpuinfo", "r");
  if (ci) {
    char line[512];
    while (fgets(line, sizeof line, ci)) {
      char *c = strchr(line, ':');
      if (!strncmp(line, "model name", 10) && c) {
        c += 1 + (c[1] == ' ');
        c[strcspn(c, "\n")] = 0;
        snprintf(m->cpu, sizeof m->cpu, "%s", c);
        break;
      }
    }
    fclose(ci);
  }
  struct utsname u;
  if (uname(&u) == 0) snprintf(m->kernel, sizeof m->kernel, "%s", u.release);
  m->cores = sysconf(_SC_NPROCESSORS_ONLN);
  m->page = sysconf(_SC_PAGESIZE);
  m->mem = (unsigned long long)sysconf(_SC_PHYS_PAGES) * (unsigned long long)m->page;
  /* The selected THP mode is the one in brackets. */
  char thp[128];
  first_line("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof thp);
  char *o = strchr(thp, '['), *c = o ? strchr(o, ']') : NULL;
  if (o && c) {
    *c = 0;
    snprintf(m->thp, sizeof m->thp, "%s", o + 1);
  } else {
    snprintf(m->thp, sizeof m->thp, "unknown");
  }
  struct statfs sf;
  snprintf(m->fs, sizeof m->fs, "unknown");
  if (statfs(dir, &sf) == 0) {
    static const struct { long magic; const char *name; } names[] = {
        {0xEF53, "ext4"}, {0x01021994, "tmpfs"}, {0x58465342, "xfs"},
        {0x9123683E, "btrfs"}, {0x6969, "nfs"}, {0x794c7630, "overlayfs"},
        {0x2FC12FC1, "zfs"}, {0x65735546, "fuse"}, {0xF2F52010, "f2fs"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
      if ((long)sf.f_type == names[i].magic) snprintf(m->fs, sizeof m->fs, "%s", names[i].name);
  }
  time_t now = time(NULL);
  strftime(m->when, sizeof m->when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
}

static void machine_line(const struct machine *m, const char *dir, char *buf, size_t len) {
  char mem[32];
  snprintf(buf, len,
           "%s, %ld cores, %s of memory, Linux %s, %s under %s, transparent huge pages "
           "%s, %ld-byte pages; run at %s.",
           m->cpu, m->cores, cli_format_size(m->mem, mem, sizeof mem), m->kernel, m->fs, dir,
           m->thp, m->page, m->when);
}

static void json_escaped(FILE *f, const char *s) {
  for (; *s; s++)
    if (*s != '"' && *s != '\\' && (unsigned char)*s >= 0x20) fputc(*s, f);
}

static void json_header(FILE *f, int quick, const struct machine *m, const char *dir) {
  fprintf(f, "{\n  \"memmap_version\": \"%s\",\n  \"time\": \"%s\",\n  \"quick\": %s,\n"
             "  \"machine\": {\"cpu\": \"", mm_version(), m->when, quick ? "true" : "false");
  json_escaped(f, m->cpu);
  fprintf(f, "\", \"cores\": %ld, \"memory_bytes\": %llu, \"kernel\": \"", m->cores, m->mem);
  json_escaped(f, m->kernel);
  fprintf(f, "\", \"filesystem\": \"%s\", \"dir\": \"", m->fs);
  json_escaped(f, dir);
  fprintf(f, "\", \"thp\": \"%s\", \"page_size\": %ld},\n  \"rows\": [", m->thp, m->page);
}

int cmd_bench(int argc, char **argv) {
  static const struct option longopts[] = {
      {"quick", no_argument, NULL, 'q'},
      {"json", required_argument, NULL, 'j'},
      {"dir", required_argument, NULL, 'd'},
      {"max-size", required_argument, NULL, 'm'},
      {"report", required_argument, NULL, 'r'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  struct bench b;
  memset(&b, 0, sizeof b);
  const char *json = NULL, *report = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "qj:d:m:r:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'q': b.quick = 1; break;
    case 'j': json = optarg; break;
    case 'd': b.dir = optarg; break;
    case 'r': report = optarg; break;
    case 'm':
      if (cli_parse_size(optarg, &b.max_size) < 0 || b.max_size == 0) {
        cli_errorf("bench: bad size '%s'", optarg);
        return CLI_USAGE;
      }
      break;
    case 'h': cmd_bench_usage(stdout); return CLI_OK;
    default: cmd_bench_usage(stderr); return CLI_USAGE;
    }
  }
  int run[NSUITES] = {0}, any = 0;
  for (int i = optind; i < argc; i++) {
    size_t k;
    for (k = 0; k < NSUITES; k++)
      if (!strcmp(argv[i], suites[k].name)) break;
    if (k == NSUITES) {
      cli_errorf("bench: no suite '%s'; see 'memmap bench --help'", argv[i]);
      return CLI_USAGE;
    }
    run[k] = any = 1;
  }
  if (!any)
    for (size_t k = 0; k < NSUITES; k++) run[k] = 1;
  for (size_t k = 0; k < NSUITES; k++)
    if (run[k] && suites[k].run == bench_heap) bench_heap_prepare();
  if (!b.dir) b.dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  b.tty = isatty(2);
  if (json) {
    b.json = strcmp(json, "-") ? fopen(json, "w") : stdout;
    if (!b.json) {
      cli_error(json, -errno);
      return CLI_FAIL;
    }
  }
  struct machine mach;
  machine_read(&mach, b.dir);
  if (b.json) json_header(b.json, b.quick, &mach, b.dir);
  int status = CLI_OK;
  /* With --json -, the JSON owns standard output; tables go to stderr. */
  b.out = b.json == stdout ? stderr : stdout;
  for (size_t k = 0; k < NSUITES; k++) {
    if (!run[k]) continue;
    int rc = suites[k].run(&b);
    if (rc < 0) {
      char what[64];
      snprintf(what, sizeof what, "bench %s", suites[k].name);
      cli_error(what, rc);
      status = CLI_FAIL;
    }
  }
  if (b.json) {
    fprintf(b.json, "\n  ]\n}\n");
    if ((b.json != stdout && fclose(b.json) != 0) ||
        (b.json == stdout && fflush(stdout) != 0)) {
      cli_error(json, -errno);
      status = CLI_FAIL;
    }
  }
  if (report) {
    char line[512];
    machine_line(&mach, b.dir, line, sizeof line);
    int rc = bench_report(&b, report, line);
    if (rc < 0) {
      cli_error(report, rc);
      status = CLI_FAIL;
    } else {
      fprintf(b.out, "report: %s/index.html, %s/report.md\n", report, report);
    }
  }
  free(b.rows);
  free(b.verdicts);
  return status;
}
