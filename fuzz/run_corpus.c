/*
 * run_corpus.c - run every file of a corpus through the fuzz harness
 * (fuzz/heap_fuzz.c) without libFuzzer, so the corpus is a regression test
 * in any build: make fuzz-corpus, and the heap_cli test of make test.
 *
 * usage: run-corpus [-v] DIR|FILE...
 *   -v  name each file on standard error before running it (so the last
 *       name printed is the one that crashed)
 * Exit status 0 when every input ran (a crash or a sanitizer report ends
 * the process, as in the fuzzer), 2 when a file or directory could not be
 * read.
 */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int verbose;
static unsigned long nrun;

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "run-corpus: %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  unsigned char *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      fprintf(stderr, "run-corpus: %s: out of memory\n", path);
      fclose(f);
      return -1;
    }
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap) break;
    unsigned char *nb = realloc(buf, cap * 2);
    if (!nb) free(buf);
    buf = nb;
    cap *= 2;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    fprintf(stderr, "run-corpus: %s: read error\n", path);
    free(buf);
    return -1;
  }
  if (verbose) fprintf(stderr, "run-corpus: %s (%zu bytes)\n", path, len);
  /* An exact-size copy, so ASan sees reads past the input's end. */
  unsigned char *in = malloc(len ? len : 1);
  if (!in) {
    free(buf);
    return -1;
  }
  memcpy(in, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(in, len);
  free(in);
  nrun++;
  return 0;
}

static int not_hidden(const struct dirent *d) { return d->d_name[0] != '.'; }

static int run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) {
    fprintf(stderr, "run-corpus: %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path);
  struct dirent **names;
  int n = scandir(path, &names, not_hidden, alphasort);
  if (n < 0) {
    fprintf(stderr, "run-corpus: %s: %s\n", path, strerror(errno));
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < n; i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", path, names[i]->d_name);
    struct stat fst;
    if (stat(p, &fst) == 0 && S_ISREG(fst.st_mode) && run_file(p) < 0) rc = -1;
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  int i = 1, rc = 0;
  if (i < argc && !strcmp(argv[i], "-v")) verbose = 1, i++;
  if (i >= argc) {
    fprintf(stderr, "usage: run-corpus [-v] DIR|FILE...\n");
    return 2;
  }
  for (; i < argc; i++)
    if (run_path(argv[i]) < 0) rc = 2;
  printf("run-corpus: %lu inputs run\n", nrun);
  return rc;
}
