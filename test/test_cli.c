/*
 * test_cli.c - the memmap command and the examples, run as a user would.
 */
#include "test.h"

#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define run mm_test_run

#define MEMMAP "%s/memmap"

TEST(cli_help_and_version_exit_zero) {
  char out[8192];
  ASSERT_EQ(run(out, sizeof out, MEMMAP " --help", mm_test_bindir()), 0);
  ASSERT(strstr(out, "bench") && strstr(out, "view"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " --version", mm_test_bindir()), 0);
  ASSERT(strstr(out, MM_VERSION_STRING));
  const char *cmds[] = {"bench", "cache", "doctor", "view"};
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(run(out, sizeof out, MEMMAP " %s --help", mm_test_bindir(), cmds[i]), 0);
    ASSERT(strstr(out, "usage: memmap"));
    char again[8192];
    ASSERT_EQ(run(again, sizeof again, MEMMAP " help %s", mm_test_bindir(), cmds[i]), 0);
    ASSERT(!strcmp(out, again));
  }
}

TEST(cli_bad_usage_exits_two_with_a_message) {
  char out[8192];
  ASSERT_EQ(run(out, sizeof out, MEMMAP " 2>&1", mm_test_bindir()), 2);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " frobnicate 2>&1", mm_test_bindir()), 2);
  ASSERT(strstr(out, "memmap: 'frobnicate' is not a memmap command"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " view --nope x 2>&1", mm_test_bindir()), 2);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " view --backend tape x 2>&1", mm_test_bindir()), 2);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " bench nosuchsuite 2>&1", mm_test_bindir()), 2);
  ASSERT(strstr(out, "no suite 'nosuchsuite'"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " help nosuch 2>&1", mm_test_bindir()), 2);
}

TEST(cli_view_reports_the_backend_and_errors_as_memmap_what_why) {
  char out[8192];
  const char *p = mm_test_path("f");
  mm_test_write_file(p, 1000);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " view %s", mm_test_bindir(), p), 0);
  ASSERT(strstr(out, "read backend") && strstr(out, "1000 bytes"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " view -b mmap --json %s", mm_test_bindir(), p), 0);
  ASSERT(strstr(out, "\"backend\": \"mmap\"") && strstr(out, "\"size\": 1000"));
  ASSERT_EQ(run(out, sizeof out, "printf abc | " MEMMAP " view -", mm_test_bindir()), 0);
  ASSERT(strstr(out, "-: read backend, 3 B"));
  ASSERT_EQ(run(out, sizeof out, "printf abc | " MEMMAP " view -b mmap - 2>&1", mm_test_bindir()), 1);
  ASSERT(strstr(out, "memmap: -: this file cannot be memory-mapped"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " view %s/none 2>&1", mm_test_bindir(), mm_test_dir()), 1);
  ASSERT(strstr(out, "No such file or directory"));
  ASSERT_EQ(run(out, sizeof out, MEMMAP " view -o 2000 %s 2>&1", mm_test_bindir(), p), 1);
  ASSERT(strstr(out, "the range lies outside the file"));
}

TEST(cli_view_dump_writes_the_range) {
  char out[8192];
  const char *p = mm_test_path("f");
  FILE *f = fopen(p, "w");
  fputs("0123456789abcdef", f);
  fclose(f);
  ASSERT_EQ(run(out, sizeof out, MEMMAP " view -d -o 3 -n 5 -b mmap %s", mm_test_bindir(), p), 0);
  ASSERT(!strcmp(out, "34567"));
}

TEST_T(cli_bench_files_quick_prints_the_table_and_json, 60) {
  char *out = malloc(1 << 20);
  const char *json = mm_test_path("bench.json");
  int rc = run(out, 1 << 20, MEMMAP " bench --quick --max-size 4M --json %s --dir %s files",
               mm_test_bindir(), json, mm_test_dir());
  if (rc != 0) FAIL("bench exited %d:\n%s", rc, out);
  ASSERT(strstr(out, "files: whole-file scan"));
  ASSERT(strstr(out, "4 MiB"));
  ASSERT(!strstr(out, "16 MiB")); /* --max-size */
  ASSERT(strstr(out, "verdict"));
  FILE *f = fopen(json, "r");
  ASSERT(f);
  size_t n = fread(out, 1, (1 << 20) - 1, f);
  out[n] = 0;
  fclose(f);
  const char *keys[] = {"\"suite\": \"files\"", "\"case\": \"seq-scan\"",
                        "\"case\": \"random-4k\"", "\"method\": \"view\"",
                        "\"bytes\": 4194304", "\"seconds\":",
                        "\"ratio_vs_baseline\":", "\"machine\""};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strstr(out, keys[i])) FAIL("JSON lacks %s", keys[i]);
  /* Well-formed, if python3 is here to say so. */
  char cmd[1024], res[256];
  snprintf(cmd, sizeof cmd,
           "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
           "print(len(d[\"rows\"]))' %s 2>&1", json);
  if (run(res, sizeof res, "%s", cmd) == 0) ASSERT(atoi(res) > 30);
  free(out);
}

TEST(examples_linecount_counts_files_and_pipes) {
  char out[4096];
  const char *p = mm_test_path("lines");
  FILE *f = fopen(p, "w");
  for (int i = 0; i < 1000; i++) fprintf(f, "line %d\n", i);
  fclose(f);
  ASSERT_EQ(run(out, sizeof out, "%s/examples/linecount %s", mm_test_bindir(), p), 0);
  ASSERT(strstr(out, "1000 lines"));
  ASSERT_EQ(run(out, sizeof out, "seq 1 77 | %s/examples/linecount -", mm_test_bindir()), 0);
  ASSERT(strstr(out, "77 lines") && strstr(out, "read backend"));
  ASSERT_EQ(run(out, sizeof out, "%s/examples/linecount %s/none 2>&1", mm_test_bindir(), mm_test_dir()), 1);
}

TEST(examples_patch_changes_bytes_in_place) {
  char out[4096];
  const char *p = mm_test_path("f");
  FILE *f = fopen(p, "w");
  fputs("hello, world\n", f);
  fclose(f);
  ASSERT_EQ(run(out, sizeof out, "%s/examples/patch %s 7 WORLD", mm_test_bindir(), p), 0);
  f = fopen(p, "r");
  ASSERT(fgets(out, sizeof out, f));
  fclose(f);
  ASSERT(!strcmp(out, "hello, WORLD\n"));
  ASSERT_EQ(run(out, sizeof out, "%s/examples/patch %s 100 X 2>&1", mm_test_bindir(), p), 1);
  ASSERT(strstr(out, "outside the file"));
}

TEST(cli_every_command_has_a_man_page_that_renders_cleanly) {
  const char *pages[] = {"memmap.1", "memmap-bench.1", "memmap-view.1",
                         "memmap.3", "mm_view.3", "mm_region.3",
                         "memmap-cache.1", "mm_cache.3", "mm_ring.3",
                         "memmap-doctor.1", "mm_env.3"};
  char out[4096];
  int have_groff = run(out, sizeof out, "command -v groff >/dev/null") == 0;
  for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/man/%s", mm_test_srcdir(), pages[i]);
    if (access(path, R_OK) != 0) FAIL("missing man page %s", path);
    if (!have_groff) continue;
    /* -ww: every warning; any output is a warning. */
    ASSERT_EQ(run(out, sizeof out, "groff -man -ww -z %s 2>&1", path), 0);
    if (out[0]) FAIL("%s: %s", pages[i], out);
  }
  if (!have_groff) SKIP("groff is not installed: pages exist, rendering not checked");
}

TEST_T(install_gives_headers_libraries_and_pkg_config_that_build_a_program, 120) {
#ifdef MM_TEST_SAN
  if (MM_TEST_SAN[0]) SKIP("a sanitizer build's library needs the sanitizer runtime to link against");
#endif
  char out[16384];
  const char *dest = mm_test_path("dest");
  int rc = run(out, sizeof out, "make -s -C %s BUILD=%s install DESTDIR=%s PREFIX=/usr 2>&1",
               mm_test_srcdir(), mm_test_bindir(), dest);
  if (rc != 0) FAIL("make install: %s", out);
  const char *files[] = {"usr/include/memmap.h", "usr/include/memmap/view.h",
                         "usr/lib/libmemmap.a", "usr/lib/libmemmap.so.0",
                         "usr/bin/memmap", "usr/share/man/man3/mm_view.3",
                         "usr/share/man/man1/memmap.1"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dest, files[i]);
    if (access(p, R_OK) != 0) FAIL("make install did not install %s", files[i]);
  }
  /* The .pc file's flags (prefix moved to DESTDIR) build and run an example
   * against the shared library. */
  rc = run(out, sizeof out,
           "cd %s && pc=usr/lib/pkgconfig/memmap.pc && "
           "cc -I%s/usr/include %s/examples/linecount.c -L%s/usr/lib "
           "$(sed -n 's/^Libs: -L[^ ]* //p' $pc) -o lc 2>&1 && "
           "LD_LIBRARY_PATH=%s/usr/lib ./lc %s/usr/include/memmap.h 2>&1",
           dest, dest, mm_test_srcdir(), dest, dest, dest);
  if (rc != 0) FAIL("build against the installed library: %s", out);
  ASSERT(strstr(out, "lines"));
}

TEST_T(cli_bench_grow_reports_moves_rss_and_fragmentation, 120) {
  char *out = malloc(1 << 20);
  const char *json = mm_test_path("grow.json");
  /* Under a sanitizer realloc() always copies, which makes growing by
   * realloc one step at a time quadratic: keep the buffer small there. */
  const char *size = "8M";
#ifdef MM_TEST_SAN
  if (MM_TEST_SAN[0]) size = "512K";
#endif
  int rc = run(out, 1 << 20, MEMMAP " bench --quick --max-size %s --json %s grow",
               mm_test_bindir(), size, json);
  if (rc != 0) FAIL("bench exited %d:\n%s", rc, out);
  const char *want[] = {"grow: a buffer grown to ", "realloc-x2", "mremap-x2",
                        "peak RSS", "fragmentation", "verdict: a region grows"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(out, want[i])) FAIL("output lacks '%s':\n%s", want[i], out);
  FILE *f = fopen(json, "r");
  ASSERT(f);
  size_t n = fread(out, 1, (1 << 20) - 1, f);
  out[n] = 0;
  fclose(f);
  ASSERT(strstr(out, "\"case\": \"grow-step-64\""));
  ASSERT(strstr(out, "\"case\": \"fragmentation\""));
  ASSERT(strstr(out, "moves=0 "));   /* regions never move */
  free(out);
}

TEST(examples_collect_gathers_stdin_into_a_region_and_keeps_it_in_a_file) {
  char out[4096];
  const char *p = mm_test_path("store");
  ASSERT_EQ(run(out, sizeof out, "seq 1 100000 | %s/examples/collect", mm_test_bindir()), 0);
  ASSERT(strstr(out, "100000 new lines, 588895 bytes in all, moved 0 times"));
  ASSERT_EQ(run(out, sizeof out, "seq 1 10 | %s/examples/collect %s", mm_test_bindir(), p), 0);
  ASSERT(strstr(out, "10 new lines, 21 bytes in all"));
  ASSERT_EQ(run(out, sizeof out, "seq 1 5 | %s/examples/collect %s", mm_test_bindir(), p), 0);
  ASSERT(strstr(out, "5 new lines, 31 bytes in all"));
  FILE *f = fopen(p, "r");
  ASSERT(f);
  size_t n = fread(out, 1, sizeof out - 1, f);
  fclose(f);
  ASSERT_EQ(n, 31); /* the file ends where the data does */
}
