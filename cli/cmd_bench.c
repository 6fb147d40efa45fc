/*
 * cmd_bench.c - `memmap bench [SUITE...]`: run benchmark suites and report
 * every figure beside its baseline from the same run.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
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
};
#define NSUITES (sizeof suites / sizeof suites[0])

void cmd_bench_usage(FILE *out) {
  fprintf(out,
          "usage: memmap bench [--quick] [--json FILE] [--dir DIR] [--max-size N]\n"
          "                    [SUITE...]\n"
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
          "  -q, --quick       fewer and shorter repetitions (under a minute)\n"
          "  -j, --json FILE   also write every row as JSON to FILE ('-' for\n"
          "                    standard output)\n"
          "  -d, --dir DIR     where to create scratch files (default: $TMPDIR\n"
          "                    or /tmp); the filesystem of DIR is measured\n"
          "  -m, --max-size N  skip files and buffers larger than N (e.g. 16M)\n"
          "  -h, --help        this text\n"
          "\n"
          "JSON rows carry suite, case, method, bytes, seconds (median per\n"
          "operation), min_seconds, max_seconds, reps, baseline and\n"
          "ratio_vs_baseline.\n"
          "Exit status: 0 on success, 1 on failure, 2 on bad usage.\n");
}

static void json_header(FILE *f, int quick) {
  struct utsname u;
  char model[256] = "unknown";
  FILE *ci = fopen("/proc/cpuinfo", "r");
  if (ci) {
    char line[512];
    while (fgets(line, sizeof line, ci)) {
      if (!strncmp(line, "model name", 10)) {
        char *c = strchr(line, ':');
        if (c) {
          c += 1 + (c[1] == ' ');
          c[strcspn(c, "\n")] = 0;
          snprintf(model, sizeof model, "%s", c);
        }
        break;
      }
    }
    fclose(ci);
  }
  uname(&u);
  time_t now = time(NULL);
  char when[64];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  fprintf(f,
          "{\n  \"memmap_version\": \"%s\",\n  \"time\": \"%s\",\n"
          "  \"quick\": %s,\n  \"machine\": {\"cpu\": \"",
          mm_version(), when, quick ? "true" : "false");
  for (const char *s = model; *s; s++)
    if (*s != '"' && *s != '\\') fputc(*s, f);
  fprintf(f,
          "\", \"cores\": %ld, \"memory_bytes\": %llu, \"kernel\": \"%s\", "
          "\"page_size\": %ld},\n  \"rows\": [",
          sysconf(_SC_NPROCESSORS_ONLN),
          (unsigned long long)sysconf(_SC_PHYS_PAGES) *
              (unsigned long long)sysconf(_SC_PAGESIZE),
          u.release, sysconf(_SC_PAGESIZE));
}

int cmd_bench(int argc, char **argv) {
  static const struct option longopts[] = {
      {"quick", no_argument, NULL, 'q'},
      {"json", required_argument, NULL, 'j'},
      {"dir", required_argument, NULL, 'd'},
      {"max-size", required_argument, NULL, 'm'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  struct bench b;
  memset(&b, 0, sizeof b);
  const char *json = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "qj:d:m:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'q': b.quick = 1; break;
    case 'j': json = optarg; break;
    case 'd': b.dir = optarg; break;
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
  if (!b.dir) b.dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  b.tty = isatty(2);
  if (json) {
    b.json = strcmp(json, "-") ? fopen(json, "w") : stdout;
    if (!b.json) {
      cli_error(json, -errno);
      return CLI_FAIL;
    }
    json_header(b.json, b.quick);
  }
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
  free(b.rows);
  return status;
}
