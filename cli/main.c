/*
 * main.c - the memmap command: option parsing for the top level and
 * dispatch to the subcommands in cli/cmd_*.c. Each subcommand is a client
 * of the public API only.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static const struct cli_command commands[] = {
    {"bench", "measure mmap against read(), pipes, realloc and malloc",
     cmd_bench, cmd_bench_usage},
    {"cache", "what of some files is in the page cache; touch, evict, lock",
     cmd_cache, cmd_cache_usage},
    {"doctor", "report the limits and settings that bite mmap users, with advice",
     cmd_doctor, cmd_doctor_usage},
    {"heap", "create a persistent heap file, show what is in one, or check it",
     cmd_heap, cmd_heap_usage},
    {"view", "open a view of a file and report how it was opened (or dump it)",
     cmd_view, cmd_view_usage},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out) {
  fprintf(out,
          "usage: memmap [--help] [--version] <command> [<args>]\n"
          "\n"
          "memmap makes memory mapping safe, fast and measured.\n"
          "\n"
          "commands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "  help     show the help of a command: memmap help <command>\n"
          "\n"
          "Run 'memmap <command> --help' for a command's options.\n");
}

void cli_error(const char *what, int rc) {
  fprintf(stderr, "memmap: %s: %s\n", what, mm_strerror(rc));
}

void cli_errorf(const char *fmt, ...) {
  va_list ap;
  fputs("memmap: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int cli_parse_size(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !(v >= 0)) return -EINVAL;
  double mul = 1;
  if (*end) {
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; break;
    case 'm': case 'M': mul = 1048576.0; break;
    case 'g': case 'G': mul = 1073741824.0; break;
    case 't': case 'T': mul = 1099511627776.0; break;
    case 'b': case 'B': mul = 1; break;
    default: return -EINVAL;
    }
    end++;
    if (*end && strcasecmp(end, "iB") && strcasecmp(end, "B")) return -EINVAL;
  }
  v *= mul;
  if (v >= 18446744073709551615.0 || v != floor(v)) return -EINVAL;
  *out = (uint64_t)v;
  return 0;
}

const char *cli_format_size(uint64_t n, char *buf, size_t len) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, u++;
  if (u == 0)
    snprintf(buf, len, "%llu B", (unsigned long long)n);
  else if (v == floor(v))
    snprintf(buf, len, "%.0f %s", v, units[u]);
  else
    snprintf(buf, len, "%.1f %s", v, units[u]);
  return buf;
}

static const struct cli_command *find(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return CLI_OK;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
    printf("memmap %s\n", mm_version());
    return CLI_OK;
  }
  if (!strcmp(cmd, "help")) {
    if (argc < 3) {
      usage(stdout);
      return CLI_OK;
    }
    const struct cli_command *c = find(argv[2]);
    if (!c) {
      cli_errorf("help: no such command '%s'", argv[2]);
      return CLI_USAGE;
    }
    c->usage(stdout);
    return CLI_OK;
  }
  const struct cli_command *c = find(cmd);
  if (!c) {
    cli_errorf("'%s' is not a memmap command; see 'memmap --help'", cmd);
    return CLI_USAGE;
  }
  return c->run(argc - 1, argv + 1);
}
