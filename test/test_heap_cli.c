/*
 * test_heap_cli.c - `memmap heap` run as a user would, its man pages, the
 * example of mm_heap(3), and the fuzz corpus run as a regression test.
 */
#include "test.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define run mm_test_run

#define MEMMAP "%s/memmap"

/* data_off, from header copy A (offset 120, little-endian u64). */
static uint64_t read_data_off(const char *path) {
  unsigned char b[8];
  FILE *f = fopen(path, "rb");
  ASSERT(f);
  ASSERT_EQ(fseek(f, 120, SEEK_SET), 0);
  ASSERT_EQ(fread(b, 1, 8, f), 8);
  fclose(f);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
  return v;
}

static uint64_t file_size(const char *path) {
  struct stat st;
  ASSERT_EQ(stat(path, &st), 0);
  return (uint64_t)st.st_size;
}

static void xor_bytes(const char *path, uint64_t off, size_t n, unsigned char x) {
  FILE *f = fopen(path, "r+b");
  ASSERT(f);
  unsigned char b[64];
  ASSERT(n <= sizeof b);
  ASSERT_EQ(fseek(f, (long)off, SEEK_SET), 0);
  ASSERT_EQ(fread(b, 1, n, f), n);
  for (size_t i = 0; i < n; i++) b[i] ^= x;
  ASSERT_EQ(fseek(f, (long)off, SEEK_SET), 0);
  ASSERT_EQ(fwrite(b, 1, n, f), n);
  ASSERT_EQ(fclose(f), 0);
}

/* Create a heap with the command, then put objects, names and a root in
 * it with the library. */
static const char *make_heap(const char *name, uint64_t *alpha, uint64_t *beta) {
  char out[4096];
  const char *p = mm_test_path(name);
  int rc = run(out, sizeof out, MEMMAP " heap create %s --chunk 64K --log 64K --max 16M 2>&1",
               mm_test_bindir(), p);
  if (rc != 0) FAIL("heap create exited %d: %s", rc, out);
  mm_heap_t *h = NULL;
  ASSERT_OK(mm_heap_open(&h, p, NULL));
  uint64_t a, b, c;
  ASSERT_OK(mm_heap_alloc(h, 100, &a));
  ASSERT_OK(mm_heap_alloc(h, 10000, &b));
  ASSERT_OK(mm_heap_alloc(h, 100000, &c)); /* more than a chunk */
  ASSERT_OK(mm_heap_free(h, c));
  ASSERT_OK(mm_heap_name_set(h, "alpha", a));
  ASSERT_OK(mm_heap_name_set(h, "beta", b));
  ASSERT_OK(mm_heap_name_set(h, "odd \"name\"\\ \xff\x01", a));
  ASSERT_OK(mm_heap_set_root(h, b));
  ASSERT_OK(mm_heap_close(h));
  if (alpha) *alpha = a;
  if (beta) *beta = b;
  return p;
}

TEST(heap_cli_create_makes_a_heap_and_refuses_an_existing_file) {
  char out[4096];
  const char *p = mm_test_path("h");
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create %s --chunk 64K --log 64K --max 16M",
                mm_test_bindir(), p), 0);
  ASSERT(strstr(out, "heap created") && strstr(out, "64 KiB") && strstr(out, "16 MiB"));
  uint64_t data_off = read_data_off(p);
  ASSERT_EQ(data_off, 73728 + 65536); /* log_off + log_size */
  uint64_t size = file_size(p);
  ASSERT(size >= data_off + 65536);
  ASSERT_EQ((size - data_off) % 65536, 0);
  /* mode 0600 */
  struct stat st;
  ASSERT_EQ(stat(p, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);

  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create %s 2>&1", mm_test_bindir(), p), 1);
  ASSERT(strstr(out, "memmap: ") && strstr(out, "File exists"));
  ASSERT_EQ(file_size(p), size); /* untouched */

  /* --size rounds up to chunks; --durable shows in info. */
  const char *q = mm_test_path("d");
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create %s --chunk 64K --log 64K --size 100K "
                "--max 1M --durable", mm_test_bindir(), q), 0);
  ASSERT(strstr(out, "durable"));
  ASSERT(file_size(q) >= read_data_off(q) + 2 * 65536);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap info %s", mm_test_bindir(), q), 0);
  ASSERT(strstr(out, "durable: yes"));

  /* Bad geometry: a failure with a hint, and no file left behind. */
  const char *r = mm_test_path("bad");
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create %s --chunk 3K 2>&1", mm_test_bindir(), r), 1);
  ASSERT(strstr(out, "power of two"));
  ASSERT(access(r, F_OK) != 0);
}

TEST(heap_cli_info_shows_the_header_space_and_names) {
  char out[16384];
  uint64_t a, b;
  const char *p = make_heap("h", &a, &b);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap info %s", mm_test_bindir(), p), 0);
  const char *want[] = {"version: 1", "uuid: ", "generation: ", "page size: ",
                        "chunk size: 65536", "log size: 65536", "max size: 16777216",
                        "durable: no", "used: ", "free: ", "overhead: ",
                        "largest free: ", "fragmentation: ", "objects: 2",
                        "cached: ", "handles: ", "names: 3", "alpha", "beta",
                        "odd \"name\"\\\\ \\xff\\x01"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(out, want[i])) FAIL("info lacks '%s':\n%s", want[i], out);
  char line[64];
  snprintf(line, sizeof line, "root: %llu", (unsigned long long)b);
  ASSERT(strstr(out, line));

  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap info --json %s", mm_test_bindir(), p), 0);
  const char *keys[] = {"\"version\": 1", "\"uuid\": \"", "\"used\": ", "\"free\": ",
                        "\"overhead\": ", "\"largest_free\": ", "\"fragmentation\": ",
                        "\"objects\": 2", "\"cached\": ", "\"handles\": ",
                        "\"durable\": false", "\"chunk_size\": 65536",
                        "\"name\": \"alpha\"", "\"name\": \"beta\""};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strstr(out, keys[i])) FAIL("JSON lacks %s:\n%s", keys[i], out);
  snprintf(line, sizeof line, "\"offset\": %llu", (unsigned long long)a);
  ASSERT(strstr(out, line));

  /* Well-formed, if python3 is here to say so: the numbers add up and the
   * names come back with their offsets. */
  const char *json = mm_test_path("info.json");
  FILE *f = fopen(json, "w");
  ASSERT(f);
  fputs(out, f);
  fclose(f);
  char res[1024];
  int rc = run(res, sizeof res,
               "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
               "n={e[\"name\"]: e[\"offset\"] for e in d[\"names\"]}; "
               "assert d[\"used\"]+d[\"free\"]+d[\"overhead\"]==d[\"file_size\"], d; "
               "assert len(d[\"uuid\"])==32, d; "
               "print(n[\"alpha\"], n[\"beta\"], d[\"root\"], len(n))' %s 2>&1", json);
  if (rc == 127 || (rc != 0 && strstr(res, "not found"))) return; /* no python3 */
  if (rc != 0) FAIL("python3 says the JSON is bad: %s\n%s", res, out);
  char want_line[128];
  snprintf(want_line, sizeof want_line, "%llu %llu %llu 3\n", (unsigned long long)a,
           (unsigned long long)b, (unsigned long long)b);
  ASSERT(!strcmp(res, want_line));
}

TEST(heap_cli_check_passes_a_fresh_heap) {
  char out[8192];
  const char *p = make_heap("h", NULL, NULL);
  int rc = run(out, sizeof out, MEMMAP " heap check %s 2>&1", mm_test_bindir(), p);
  if (rc != 0) FAIL("check exited %d:\n%s", rc, out);
  ASSERT(strstr(out, "consistent"));
  /* An empty heap straight from create, too. */
  const char *q = mm_test_path("empty");
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create %s --chunk 64K --log 64K --max 4M",
                mm_test_bindir(), q), 0);
  rc = run(out, sizeof out, MEMMAP " heap check %s 2>&1", mm_test_bindir(), q);
  if (rc != 0) FAIL("check of an empty heap exited %d:\n%s", rc, out);
}

TEST(heap_cli_check_reports_a_corrupt_chunk_map) {
  char out[65536];
  const char *p = make_heap("h", NULL, NULL);
  uint64_t data_off = read_data_off(p);
  xor_bytes(p, data_off, 16, 0xff); /* the first chunk's map */
  int rc = run(out, sizeof out, MEMMAP " heap check %s 2>&1", mm_test_bindir(), p);
  if (rc == 1) {
    /* "offset: message (ERRNAME)" lines, then a count. */
    ASSERT(strstr(out, "problem"));
    unsigned long long off;
    char name[64];
    ASSERT(sscanf(out, "%llu: %*[^(](%63[A-Z_])", &off, name) == 2);
    ASSERT(!strncmp(name, "MM_E", 4) || name[0] == 'E');
    /* info still shows what it could, says the heap is damaged, exits 1 */
    ASSERT_EQ(run(out, sizeof out, MEMMAP " heap info %s 2>&1", mm_test_bindir(), p), 1);
    ASSERT(strstr(out, "version: 1") && strstr(out, "memmap heap check"));
  } else if (rc == 2) {
    /* open refused it: said so, with the library's message */
    ASSERT(strstr(out, "memmap: ") && strstr(out, p));
  } else {
    FAIL("check of a corrupt heap exited %d:\n%s", rc, out);
  }
}

TEST(heap_cli_refuses_what_is_not_a_heap) {
  char out[8192];
  const char *p = mm_test_path("junk");
  mm_test_write_file(p, 100000);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap check %s 2>&1", mm_test_bindir(), p), 2);
  ASSERT(strstr(out, "memmap: ") && strstr(out, "the file is not a memmap heap"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap info %s 2>&1", mm_test_bindir(), p), 1);
  ASSERT(strstr(out, "the file is not a memmap heap"));
  const char *e = mm_test_path("empty");
  mm_test_write_file(e, 0);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap check %s 2>&1", mm_test_bindir(), e), 2);
  ASSERT(strstr(out, "the file is not a memmap heap"));
  ASSERT_EQ(file_size(e), 0); /* left alone */
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap check %s/none 2>&1", mm_test_bindir(),
                mm_test_dir()), 2);
  ASSERT(strstr(out, "No such file or directory"));
}

TEST(heap_cli_gives_up_on_a_held_lock_after_wait) {
  char out[8192];
  const char *p = make_heap("h", NULL, NULL);
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) { /* hold the heap's lock in a transaction until told */
    mm_heap_t *h = NULL;
    char c = 1;
    if (mm_heap_open(&h, p, NULL) == 0 && mm_heap_tx_begin(h, NULL) == 0) c = 0;
    if (write(ready[1], &c, 1) != 1) _exit(1);
    if (read(done[0], &c, 1) < 0) _exit(1);
    (void)mm_heap_tx_abort(h);
    (void)mm_heap_close(h);
    _exit(0);
  }
  char c = 1;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 0);
  int rc_info = run(out, sizeof out, MEMMAP " heap info --wait 200 %s 2>&1", mm_test_bindir(), p);
  int ok_info = rc_info == 1 && strstr(out, "held the heap's lock for more than 200 ms");
  char out2[8192];
  int rc_check = run(out2, sizeof out2, MEMMAP " heap check -w 200 %s 2>&1", mm_test_bindir(), p);
  c = 0;
  ASSERT_EQ(write(done[1], &c, 1), 1);
  int st;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  if (!ok_info) FAIL("info exited %d:\n%s", rc_info, out);
  ASSERT_EQ(rc_check, 2);
  ASSERT(strstr(out2, "(--wait)"));
  /* Free again: both work. */
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap check -w 200 %s", mm_test_bindir(), p), 0);
}

TEST(heap_cli_usage_and_bad_arguments) {
  char out[8192], again[8192];
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap 2>&1", mm_test_bindir()), 2);
  ASSERT(strstr(out, "usage: memmap heap"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap --help", mm_test_bindir()), 0);
  ASSERT(strstr(out, "usage: memmap heap") && strstr(out, "--durable"));
  ASSERT_EQ(run(again, sizeof again, MEMMAP " help heap", mm_test_bindir()), 0);
  ASSERT(!strcmp(out, again));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " --help", mm_test_bindir()), 0);
  ASSERT(strstr(out, "heap"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap frob x 2>&1", mm_test_bindir()), 2);
  ASSERT(strstr(out, "unknown action 'frob'"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create 2>&1", mm_test_bindir()), 2);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create %s --size lots 2>&1", mm_test_bindir(),
                mm_test_path("x")), 2);
  ASSERT(strstr(out, "bad size 'lots'"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap create %s --chunk 8G 2>&1", mm_test_bindir(),
                mm_test_path("x")), 2);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap check --json %s 2>&1", mm_test_bindir(),
                mm_test_path("x")), 2);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap info a b 2>&1", mm_test_bindir()), 2);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " heap info --wait soon a 2>&1", mm_test_bindir()), 2);
  ASSERT(access(mm_test_path("x"), F_OK) != 0);
}

TEST(heap_cli_man_pages_render_cleanly) {
  const char *pages[] = {"memmap-heap.1", "mm_heap.3", "memmap.1", "memmap.3"};
  char out[4096];
  int have_groff = run(out, sizeof out, "command -v groff >/dev/null") == 0;
  for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/man/%s", mm_test_srcdir(), pages[i]);
    if (access(path, R_OK) != 0) FAIL("missing man page %s", path);
    if (!have_groff) continue;
    ASSERT_EQ(run(out, sizeof out, "groff -man -ww -z %s 2>&1", path), 0);
    if (out[0]) FAIL("%s: %s", pages[i], out);
  }
  if (!have_groff) SKIP("groff is not installed: pages exist, rendering not checked");
}

TEST_T(heap_man_page_example_builds_and_counts, 60) {
#ifdef MM_TEST_SAN
  if (MM_TEST_SAN[0]) SKIP("a sanitizer build's library needs the sanitizer runtime to link against");
#endif
  char out[8192];
  const char *dir = mm_test_dir();
  /* The EXAMPLE section's program, roff escapes undone. */
  int rc = run(out, sizeof out,
               "cd %s && sed -n '/^\\.SH EXAMPLE/,/^\\.SH /p' %s/man/mm_heap.3 | "
               "sed -n '/^\\.nf/,/^\\.fi/p' | sed '/^\\.nf/d; /^\\.fi/d' | "
               "sed 's/\\\\e/\\\\/g; s/\\\\-/-/g; s/\\\\&//g' > ex.c && "
               "cc -std=c11 -Wall -Wextra -Werror -I%s/include ex.c %s/libmemmap.a "
               "-pthread -lm -o ex 2>&1",
               dir, mm_test_srcdir(), mm_test_srcdir(), mm_test_bindir());
  if (rc != 0) FAIL("the example does not build:\n%s", out);
  ASSERT_EQ(run(out, sizeof out, "cd %s && ./ex && ./ex && ./ex 2>&1", dir), 0);
  ASSERT(!strcmp(out, "run 1\nrun 2\nrun 3\n"));
}

/* The fuzz corpus (fuzz/corpus/heap) through the harness, as a regression
 * test: every input that ever crashed open or check stays fixed. */
TEST_T(heap_fuzz_corpus_runs_clean, 300) {
  char bin[1024];
  snprintf(bin, sizeof bin, "%s/fuzz/run-corpus", mm_test_bindir());
  if (access(bin, X_OK) != 0) SKIP("%s is not built (make test builds it)", bin);
  size_t cap = 1 << 20;
  char *out = malloc(cap);
  ASSERT(out);
  int rc = run(out, cap, "TMPDIR=%s %s -v %s/fuzz/corpus/heap 2>&1", mm_test_dir(), bin,
               mm_test_srcdir());
  if (rc != 0) {
    size_t n = strlen(out);
    FAIL("run-corpus exited %d; the end of its output:\n%s", rc, n > 6000 ? out + n - 6000 : out);
  }
  ASSERT(strstr(out, "inputs run"));
  free(out);
}
