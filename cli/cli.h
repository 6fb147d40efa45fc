/*
 * cli.h - shared pieces of the memmap command: the subcommand table and
 * small helpers for errors and sizes.
 */
#ifndef MM_CLI_H
#define MM_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "memmap.h"

/* Exit codes of every subcommand. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli_command {
  const char *name;
  const char *summary;                 /* one line for `memmap --help` */
  int (*run)(int argc, char **argv);   /* argv[0] is the subcommand name */
  void (*usage)(FILE *out);            /* full --help text */
};

/* Print "memmap: <what>: <mm_strerror(rc)>" to stderr. */
void cli_error(const char *what, int rc);
/* Print "memmap: <message>" to stderr. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse a size such as "4096", "64K", "1.5M", "2GiB". Returns 0 or -EINVAL. */
int cli_parse_size(const char *s, uint64_t *out);
/* Format a byte count for people: "512 B", "64 KiB", "1.5 GiB". */
const char *cli_format_size(uint64_t n, char *buf, size_t len);

/* Subcommands (cli/cmd_*.c). */
int cmd_bench(int argc, char **argv);
void cmd_bench_usage(FILE *out);
int cmd_cache(int argc, char **argv);
void cmd_cache_usage(FILE *out);
int cmd_doctor(int argc, char **argv);
void cmd_doctor_usage(FILE *out);
int cmd_heap(int argc, char **argv);
void cmd_heap_usage(FILE *out);
int cmd_view(int argc, char **argv);
void cmd_view_usage(FILE *out);

#endif /* MM_CLI_H */
