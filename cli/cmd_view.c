/*
 * cmd_view.c - `memmap view`: open a view of a file the way a program
 * would, and say how it was opened (backend, size, slack), or write its
 * bytes to standard output.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cmd_view_usage(FILE *out) {
  fprintf(out,
          "usage: memmap view [options] FILE|-\n"
          "\n"
          "Open a view of FILE (or standard input for '-') and report which\n"
          "backend the library chose: mmap for regular files at or above the\n"
          "threshold, read() for small files and for what cannot be mapped\n"
          "(pipes, ttys, sockets, procfs files).\n"
          "\n"
          "options:\n"
          "  -o, --offset N       first byte of the range (any value)\n"
          "  -n, --length N       bytes in the range (default: to the end)\n"
          "  -b, --backend B      auto (default), mmap or read\n"
          "  -t, --threshold N    map regular files at least this large\n"
          "  -p, --private        private copy-on-write view\n"
          "  -d, --dump           write the view's bytes to standard output\n"
          "      --json           report as JSON\n"
          "  -h, --help           this text\n"
          "\n"
          "Sizes take K, M, G suffixes (powers of 1024).\n"
          "Exit status: 0 on success, 1 on failure, 2 on bad usage.\n");
}

int cmd_view(int argc, char **argv) {
  static const struct option longopts[] = {
      {"offset", required_argument, NULL, 'o'},
      {"length", required_argument, NULL, 'n'},
      {"backend", required_argument, NULL, 'b'},
      {"threshold", required_argument, NULL, 't'},
      {"private", no_argument, NULL, 'p'},
      {"dump", no_argument, NULL, 'd'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  mm_view_opts_t o;
  memset(&o, 0, sizeof o);
  int dump = 0, json = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:n:b:t:pdh", longopts, NULL)) != -1) {
    switch (c) {
    case 'o':
    case 'n':
    case 't': {
      uint64_t v;
      if (cli_parse_size(optarg, &v) < 0) {
        cli_errorf("view: bad size '%s'", optarg);
        return CLI_USAGE;
      }
      if (c == 'o') o.offset = v;
      else if (c == 'n') o.length = v;
      else o.threshold = v;
      break;
    }
    case 'b':
      if (!strcmp(optarg, "auto")) o.backend = MM_BACKEND_AUTO;
      else if (!strcmp(optarg, "mmap")) o.backend = MM_BACKEND_MMAP;
      else if (!strcmp(optarg, "read")) o.backend = MM_BACKEND_READ;
      else {
        cli_errorf("view: unknown backend '%s' (auto, mmap or read)", optarg);
        return CLI_USAGE;
      }
      break;
    case 'p': o.mode = MM_VIEW_PRIVATE; break;
    case 'd': dump = 1; break;
    case 'j': json = 1; break;
    case 'h': cmd_view_usage(stdout); return CLI_OK;
    default: cmd_view_usage(stderr); return CLI_USAGE;
    }
  }
  if (optind != argc - 1) {
    cmd_view_usage(stderr);
    return CLI_USAGE;
  }
  const char *path = argv[optind];
  mm_view_t *v;
  int rc = !strcmp(path, "-") ? mm_view_open_fd(&v, 0, &o)
                              : mm_view_open(&v, path, &o);
  if (rc < 0) {
    cli_error(path, rc);
    return CLI_FAIL;
  }
  if (dump) {
    /* Guarded, in chunks: a file truncated meanwhile ends the dump with an
     * error rather than a SIGBUS. */
    char buf[65536];
    uint64_t size = mm_view_size(v);
    for (uint64_t at = 0; at < size && rc == 0;) {
      size_t n = size - at < sizeof buf ? (size_t)(size - at) : sizeof buf;
      rc = mm_view_read(v, at, buf, n);
      if (rc == 0 && fwrite(buf, 1, n, stdout) != n) rc = -errno;
      at += n;
    }
    if (rc == 0 && fflush(stdout) != 0) rc = -errno;
  } else if (json) {
    printf("{\"path\": \"");
    for (const char *s = path; *s; s++) {
      if (*s == '"' || *s == '\\') putchar('\\');
      if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
      else putchar(*s);
    }
    printf("\", \"backend\": \"%s\", \"size\": %llu, \"slack\": %llu}\n",
           mm_backend_name(mm_view_backend(v)),
           (unsigned long long)mm_view_size(v),
           (unsigned long long)mm_view_slack(v));
  } else {
    char a[32], b[32];
    printf("%s: %s backend, %s (%llu bytes), slack %s\n", path,
           mm_backend_name(mm_view_backend(v)),
           cli_format_size(mm_view_size(v), a, sizeof a),
           (unsigned long long)mm_view_size(v),
           cli_format_size(mm_view_slack(v), b, sizeof b));
  }
  int rc2 = mm_view_close(v);
  if (rc == 0) rc = rc2;
  if (rc < 0) {
    cli_error(path, rc);
    return CLI_FAIL;
  }
  return CLI_OK;
}
