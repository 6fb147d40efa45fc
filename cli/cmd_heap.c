/*
 * cmd_heap.c - `memmap heap`: create a persistent heap file, report what
 * is in one (header, space, named objects), or check it for corruption.
 * A client of mm_heap.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* How long info and check wait for the heap's lock by default (ms). */
#define HEAP_WAIT_DEFAULT_MS 10000

void cmd_heap_usage(FILE *out) {
  fprintf(out,
          "usage: memmap heap create FILE [--size N] [--max N] [--chunk N] [--log N]\n"
          "                              [--durable]\n"
          "       memmap heap info FILE [--json] [--wait MS]\n"
          "       memmap heap check FILE [--wait MS]\n"
          "\n"
          "Create, inspect or check a persistent heap file (see mm_heap(3)).\n"
          "\n"
          "create: make a new heap in FILE (which must not exist).\n"
          "      --size N         bytes to allocate in the file at once (rounded\n"
          "                       up to whole chunks; default one chunk)\n"
          "      --max N          the most the file may ever grow to (default\n"
          "                       64 GiB; costs address space only)\n"
          "      --chunk N        the unit of growth, a power of two from 64K\n"
          "                       to 4M (default 4M)\n"
          "      --log N          bytes of log, at least 64K (default 1M);\n"
          "                       one transaction gets at least 3/8 of it\n"
          "      --durable        make every commit durable (synced) by default\n"
          "info: print the header (version, uuid, generation, page size, sizes,\n"
          "      durable), the space (used, free, overhead, largest free,\n"
          "      fragmentation, objects, cached, handles), the root and the\n"
          "      named objects with their offsets.\n"
          "      --json           the same as one JSON object\n"
          "check: walk all of the heap's metadata and print each problem found\n"
          "      as \"offset: message (ERRNAME)\".\n"
          "\n"
          "  -w, --wait MS        info, check: wait at most MS milliseconds for\n"
          "                       the heap's lock (default 10000; 0 = for ever)\n"
          "  -h, --help           this text\n"
          "\n"
          "Opening a heap whose last user died recovers it first (rolls back\n"
          "the operation it had under way), so info and check may write to it.\n"
          "Sizes take K, M, G suffixes (powers of 1024).\n"
          "Exit status: 0 on success, 1 on failure, 2 on bad usage.\n"
          "check: 0 when the heap is consistent, 1 when problems were found,\n"
          "2 when it could not be checked (not a heap, refused by open, ...).\n");
}

/* ---- output helpers ------------------------------------------------------- */

/* A name for people: printable ASCII as is, backslash and the rest as
 * \\ and \xNN (names are any bytes but NUL). */
static void text_name(FILE *f, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\\') fputs("\\\\", f);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\x%02x", c);
    else fputc(c, f);
  }
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static int utf8_len(const unsigned char *s) {
  int n;
  uint32_t cp;
  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) n = 2, cp = s[0] & 0x1fu;
  else if (s[0] >= 0xe0 && s[0] <= 0xef) n = 3, cp = s[0] & 0x0fu;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) n = 4, cp = s[0] & 0x07u;
  else return 0;
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0; /* also stops at the NUL */
    cp = cp << 6 | (s[i] & 0x3fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* A JSON string. Bytes that are not valid UTF-8 become \u00XX, so the
 * output is always valid JSON (such a name is then shown, not round-
 * tripped). */
static void json_string(FILE *f, const char *str) {
  const unsigned char *s = (const unsigned char *)str;
  fputc('"', f);
  while (*s) {
    if (*s == '"' || *s == '\\') {
      fprintf(f, "\\%c", *s++);
    } else if (*s < 0x20 || *s == 0x7f) {
      fprintf(f, "\\u%04x", *s++);
    } else {
      int n = utf8_len(s);
      if (n == 0) {
        fprintf(f, "\\u%04x", *s++);
      } else {
        fwrite(s, 1, (size_t)n, f);
        s += n;
      }
    }
  }
  fputc('"', f);
}

static void uuid_hex(const unsigned char uuid[16], char out[33]) {
  for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", uuid[i]);
}

/* ---- shared option handling ---------------------------------------------- */

struct heap_args {
  mm_heap_opts_t opts;
  int json, durable;
  long wait_ms;
};

static int parse_size_opt(const char *sub, const char *opt, const char *arg,
                          uint64_t *out) {
  if (cli_parse_size(arg, out) < 0) {
    cli_errorf("heap %s: bad size '%s' for --%s", sub, arg, opt);
    return -1;
  }
  return 0;
}

/* Parse argv (argv[0] is the action). Returns the index of FILE in argv,
 * or -1 after printing a message (usage error), or -2 for --help. */
static int parse_args(const char *sub, int argc, char **argv, struct heap_args *a) {
  static const struct option longopts[] = {
      {"size", required_argument, NULL, 's'},
      {"max", required_argument, NULL, 'M'},
      {"chunk", required_argument, NULL, 'c'},
      {"log", required_argument, NULL, 'L'},
      {"durable", no_argument, NULL, 'D'},
      {"json", no_argument, NULL, 'j'},
      {"wait", required_argument, NULL, 'w'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int is_create = !strcmp(sub, "create");
  int c;
  uint64_t v;
  memset(a, 0, sizeof *a);
  a->wait_ms = HEAP_WAIT_DEFAULT_MS;
  optind = 1;
  while ((c = getopt_long(argc, argv, "w:h", longopts, NULL)) != -1) {
    if (c == 'h') return -2;
    if (c == '?') return -1; /* getopt printed why */
    int create_only = c == 's' || c == 'M' || c == 'c' || c == 'L' || c == 'D';
    if (create_only && !is_create) {
      cli_errorf("heap %s: --%s goes with 'heap create'", sub,
                 c == 's' ? "size" : c == 'M' ? "max" : c == 'c' ? "chunk"
                 : c == 'L' ? "log" : "durable");
      return -1;
    }
    if (is_create && (c == 'j' || c == 'w')) {
      cli_errorf("heap create: --%s goes with 'heap info' or 'heap check'",
                 c == 'j' ? "json" : "wait");
      return -1;
    }
    if (c == 'j' && strcmp(sub, "info")) {
      cli_errorf("heap %s: --json goes with 'heap info'", sub);
      return -1;
    }
    switch (c) {
    case 's':
      if (parse_size_opt(sub, "size", optarg, &a->opts.initial_size) < 0) return -1;
      break;
    case 'M':
      if (parse_size_opt(sub, "max", optarg, &a->opts.max_size) < 0) return -1;
      if (a->opts.max_size == 0) {
        cli_errorf("heap create: --max must be more than 0");
        return -1;
      }
      break;
    case 'c':
    case 'L':
      if (parse_size_opt(sub, c == 'c' ? "chunk" : "log", optarg, &v) < 0) return -1;
      if (v == 0 || v > UINT32_MAX) {
        cli_errorf("heap create: --%s %s is out of range",
                   c == 'c' ? "chunk" : "log", optarg);
        return -1;
      }
      if (c == 'c') a->opts.chunk_size = (uint32_t)v;
      else a->opts.log_size = (uint32_t)v;
      break;
    case 'D': a->durable = 1; break;
    case 'j': a->json = 1; break;
    case 'w': {
      char *end;
      errno = 0;
      long ms = strtol(optarg, &end, 10);
      if (end == optarg || *end || errno || ms < 0 || ms > 86400000L) {
        cli_errorf("heap %s: bad --wait '%s' (milliseconds, 0 = for ever)", sub, optarg);
        return -1;
      }
      a->wait_ms = ms;
      break;
    }
    default: return -1;
    }
  }
  if (optind >= argc) {
    cli_errorf("heap %s: which FILE?", sub);
    return -1;
  }
  if (optind + 1 < argc) {
    cli_errorf("heap %s: one FILE only ('%s' is extra)", sub, argv[optind + 1]);
    return -1;
  }
  return optind;
}

/* "memmap: FILE: why", saying what a timeout means here. */
static void heap_error(const char *path, const struct heap_args *a, int rc) {
  if (rc == -ETIMEDOUT)
    cli_errorf("%s: another process held the heap's lock for more than %ld ms "
               "(--wait)", path, a->wait_ms);
  else
    cli_error(path, rc);
}

/* Open an existing heap for info or check; prints the error. */
static int open_existing(const char *path, const struct heap_args *a, mm_heap_t **h) {
  mm_heap_opts_t o;
  memset(&o, 0, sizeof o);
  o.lock_timeout_ms = (int)a->wait_ms;
  int rc = mm_heap_open(h, path, &o);
  if (rc < 0) heap_error(path, a, rc);
  return rc;
}

/* ---- create ------------------------------------------------------------------ */

static int heap_create(const char *path, struct heap_args *a) {
  mm_heap_t *h = NULL;
  a->opts.flags = MM_HEAP_CREATE | MM_HEAP_EXCL | (a->durable ? MM_HEAP_DURABLE : 0);
  int rc = mm_heap_open(&h, path, &a->opts);
  if (rc == -EINVAL) {
    cli_errorf("%s: %s (--chunk: a power of two from 64K to 4M; --log: at "
               "least 64K; --max: at least --size)", path, mm_strerror(rc));
    return CLI_FAIL;
  }
  if (rc < 0) {
    cli_error(path, rc);
    return CLI_FAIL;
  }
  mm_heap_info_t in;
  rc = mm_heap_info(h, &in);
  if (rc < 0) {
    cli_error(path, rc);
    (void)mm_heap_close(h);
    return CLI_FAIL;
  }
  rc = mm_heap_close(h);
  if (rc < 0) {
    cli_error(path, rc);
    return CLI_FAIL;
  }
  char s1[32], s2[32], s3[32], s4[32];
  printf("%s: heap created, %s in the file, at most %s; chunks of %s, undo log "
         "of %s%s\n",
         path, cli_format_size(in.file_size, s1, sizeof s1),
         cli_format_size(in.max_size, s2, sizeof s2),
         cli_format_size(in.chunk_size, s3, sizeof s3),
         cli_format_size(in.log_size, s4, sizeof s4),
         in.durable ? "; durable" : "");
  return CLI_OK;
}

/* ---- info -------------------------------------------------------------------- */

struct name_entry {
  char *name;
  uint64_t off;
};

struct name_list {
  struct name_entry *v;
  size_t n, cap;
  int err;
};

/* Called with the heap's lock held: only copy. */
static int collect_name(void *arg, const char *name, uint64_t off) {
  struct name_list *l = arg;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    struct name_entry *nv = realloc(l->v, cap * sizeof *nv);
    if (!nv) return l->err = -ENOMEM;
    l->v = nv;
    l->cap = cap;
  }
  char *copy = strdup(name);
  if (!copy) return l->err = -ENOMEM;
  l->v[l->n].name = copy;
  l->v[l->n].off = off;
  l->n++;
  return 0;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const struct name_entry *)a)->name,
                ((const struct name_entry *)b)->name);
}

static void free_names(struct name_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i].name);
  free(l->v);
}

static void print_size_line(const char *label, uint64_t n) {
  char buf[32];
  printf("%14s: %llu (%s)\n", label, (unsigned long long)n,
         cli_format_size(n, buf, sizeof buf));
}

static int heap_info(const char *path, const struct heap_args *a) {
  mm_heap_t *h = NULL;
  if (open_existing(path, a, &h) < 0) return CLI_FAIL;
  mm_heap_info_t in;
  struct name_list names;
  memset(&names, 0, sizeof names);
  /* Info walks the metadata: on a damaged heap it fills what it can and
   * says MM_ECORRUPT. Show that, and say so. */
  int rc = mm_heap_info(h, &in);
  int names_rc = 0;
  if (rc == 0 || rc == MM_ECORRUPT) {
    names_rc = mm_heap_name_list(h, collect_name, &names);
    if (names.err) names_rc = names.err;
  }
  int crc = mm_heap_close(h);
  if (rc < 0 && rc != MM_ECORRUPT) {
    heap_error(path, a, rc);
    free_names(&names);
    return CLI_FAIL;
  }
  int status = CLI_OK;
  if (rc == MM_ECORRUPT) {
    cli_errorf("%s: %s: the figures below may be wrong; see 'memmap heap check %s'",
               path, mm_strerror(rc), path);
    status = CLI_FAIL;
  }
  if (names_rc == -ETIMEDOUT) {
    heap_error(path, a, names_rc);
    status = CLI_FAIL;
  } else if (names_rc < 0) {
    cli_errorf("%s: listing the names: %s", path, mm_strerror(names_rc));
    status = CLI_FAIL;
  }
  if (crc < 0) {
    cli_error(path, crc);
    status = CLI_FAIL;
  }
  if (names.n > 1) qsort(names.v, names.n, sizeof names.v[0], cmp_name);
  char uuid[33];
  uuid_hex(in.uuid, uuid);
  double frag = isfinite(in.fragmentation) ? in.fragmentation : 0;

  if (a->json) {
    printf("{\"path\": ");
    json_string(stdout, path);
    printf(", \"version\": %u, \"uuid\": \"%s\", \"generation\": %llu, "
           "\"page_size\": %u, \"file_size\": %llu, \"max_size\": %llu, "
           "\"chunk_size\": %llu, \"log_size\": %llu, \"durable\": %s,\n"
           " \"used\": %llu, \"free\": %llu, \"overhead\": %llu, "
           "\"largest_free\": %llu, \"fragmentation\": %.4f, \"objects\": %llu, "
           "\"cached\": %llu, \"handles\": %u,\n"
           " \"root\": %llu, \"names\": [",
           in.version, uuid, (unsigned long long)in.generation, in.page_size,
           (unsigned long long)in.file_size, (unsigned long long)in.max_size,
           (unsigned long long)in.chunk_size, (unsigned long long)in.log_size,
           in.durable ? "true" : "false", (unsigned long long)in.used,
           (unsigned long long)in.free, (unsigned long long)in.overhead,
           (unsigned long long)in.largest_free, frag,
           (unsigned long long)in.objects, (unsigned long long)in.cached,
           in.handles, (unsigned long long)in.root);
    for (size_t i = 0; i < names.n; i++) {
      printf("%s\n  {\"name\": ", i ? "," : "");
      json_string(stdout, names.v[i].name);
      printf(", \"offset\": %llu}", (unsigned long long)names.v[i].off);
    }
    printf("%s]}\n", names.n ? "\n " : "");
  } else {
    printf("%14s: %s\n", "heap", path);
    printf("%14s: %u\n", "version", in.version);
    printf("%14s: %s\n", "uuid", uuid);
    printf("%14s: %llu\n", "generation", (unsigned long long)in.generation);
    printf("%14s: %u\n", "page size", in.page_size);
    print_size_line("file size", in.file_size);
    print_size_line("max size", in.max_size);
    print_size_line("chunk size", in.chunk_size);
    print_size_line("log size", in.log_size);
    printf("%14s: %s\n", "durable", in.durable ? "yes" : "no");
    print_size_line("used", in.used);
    print_size_line("free", in.free);
    print_size_line("overhead", in.overhead);
    print_size_line("largest free", in.largest_free);
    printf("%14s: %.1f%%\n", "fragmentation", 100.0 * frag);
    printf("%14s: %llu\n", "objects", (unsigned long long)in.objects);
    print_size_line("cached", in.cached);
    printf("%14s: %u\n", "handles", in.handles);
    if (in.root) printf("%14s: %llu\n", "root", (unsigned long long)in.root);
    else printf("%14s: none\n", "root");
    printf("%14s: %zu\n", "names", names.n);
    for (size_t i = 0; i < names.n; i++) {
      printf("%16s%-12llu ", "", (unsigned long long)names.v[i].off);
      text_name(stdout, names.v[i].name);
      putchar('\n');
    }
  }
  free_names(&names);
  return status;
}

/* ---- check ------------------------------------------------------------------- */

static void print_finding(void *arg, int code, uint64_t off, const char *msg) {
  (void)arg;
  printf("%llu: %s (%s)\n", (unsigned long long)off, msg ? msg : "?",
         mm_errname(code));
}

static int heap_check(const char *path, const struct heap_args *a) {
  mm_heap_t *h = NULL;
  if (open_existing(path, a, &h) < 0) return 2;
  uint64_t nfound = 0;
  int rc = mm_heap_check(h, print_finding, NULL, &nfound);
  int crc = mm_heap_close(h);
  fflush(stdout);
  if (rc == 0 && nfound == 0) {
    if (crc < 0) {
      cli_error(path, crc);
      return 2;
    }
    printf("%s: consistent\n", path);
    return CLI_OK;
  }
  if (rc == 0 || rc == MM_ECORRUPT) {
    printf("%s: %llu problem%s found%s\n", path, (unsigned long long)nfound,
           nfound == 1 ? "" : "s", nfound > 1000 ? " (the first 1000 shown)" : "");
    return CLI_FAIL;
  }
  heap_error(path, a, rc);
  return 2;
}

/* ---- dispatch ------------------------------------------------------------------ */

int cmd_heap(int argc, char **argv) {
  if (argc < 2) {
    cmd_heap_usage(stderr);
    return CLI_USAGE;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
    cmd_heap_usage(stdout);
    return CLI_OK;
  }
  if (strcmp(sub, "create") && strcmp(sub, "info") && strcmp(sub, "check")) {
    cli_errorf("heap: unknown action '%s' (create, info or check)", sub);
    return CLI_USAGE;
  }
  struct heap_args a;
  int fi = parse_args(sub, argc - 1, argv + 1, &a);
  if (fi == -2) {
    cmd_heap_usage(stdout);
    return CLI_OK;
  }
  if (fi < 0) {
    fprintf(stderr, "Run 'memmap heap --help' for the options.\n");
    return CLI_USAGE;
  }
  const char *path = argv[1 + fi];
  if (!strcmp(sub, "create")) return heap_create(path, &a);
  if (!strcmp(sub, "info")) return heap_info(path, &a);
  return heap_check(path, &a);
}
