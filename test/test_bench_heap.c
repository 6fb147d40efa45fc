/*
 * test_bench_heap.c - `memmap bench --quick heap`, run as a user would: the
 * tables and verdicts are printed and the JSON has the heap's rows, each
 * with positive figures.
 */
#include "test.h"

#define MEMMAP "%s/memmap"

/* One JSON row's fields, read from the text between its braces. */
struct row {
  char case_[64], method[32], baseline[32];
  double seconds, min, max, ratio;
  long long ops;
  int reps;
};

static void str_field(const char *row, const char *key, char *out, size_t len) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": \"", key);
  const char *p = strstr(row, pat);
  out[0] = 0;
  if (!p) return;
  p += strlen(pat);
  size_t n = strcspn(p, "\"");
  if (n >= len) n = len - 1;
  memcpy(out, p, n);
  out[n] = 0;
}

static double num_field(const char *row, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *p = strstr(row, pat);
  return p ? strtod(p + strlen(pat), NULL) : -1;
}

/* The heap rows of the JSON text (at most max). */
static int heap_rows(const char *json, struct row *rows, int max) {
  int n = 0;
  for (const char *p = json; (p = strstr(p, "{\"suite\": \"heap\"")) != NULL && n < max;) {
    const char *end = strchr(p, '}');
    if (!end) break;
    char one[1024];
    size_t len = (size_t)(end - p) < sizeof one - 1 ? (size_t)(end - p) : sizeof one - 1;
    memcpy(one, p, len);
    one[len] = 0;
    struct row *r = &rows[n++];
    str_field(one, "case", r->case_, sizeof r->case_);
    str_field(one, "method", r->method, sizeof r->method);
    str_field(one, "baseline", r->baseline, sizeof r->baseline);
    r->seconds = num_field(one, "seconds");
    r->min = num_field(one, "min_seconds");
    r->max = num_field(one, "max_seconds");
    r->ratio = num_field(one, "ratio_vs_baseline");
    r->ops = (long long)num_field(one, "ops");
    r->reps = (int)num_field(one, "reps");
    p = end;
  }
  return n;
}

static const struct row *find(const struct row *rows, int n, const char *case_,
                              const char *method) {
  for (int i = 0; i < n; i++)
    if (!strcmp(rows[i].case_, case_) && !strcmp(rows[i].method, method)) return &rows[i];
  return NULL;
}

TEST_T(bench_heap_quick_writes_heap_rows_with_positive_figures, 180) {
  char *out = malloc(1 << 20);
  ASSERT(out);
  const char *json = mm_test_path("heap.json");
  int rc = mm_test_run(out, 1 << 20, MEMMAP " bench --quick --json %s --dir %s heap 2>&1",
                       mm_test_bindir(), json, mm_test_dir());
  if (rc != 0) FAIL("bench exited %d:\n%s", rc, out);
  const char *want[] = {"heap: small objects", "glibc malloc", "heap: transactions",
                        "verdict: the heap allocates and frees small objects at",
                        "process-crash", "durable"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(out, want[i])) FAIL("output lacks '%s':\n%s", want[i], out);
  int lmdb_missing = strstr(out, "LMDB was not installed") != NULL;

  FILE *f = fopen(json, "r");
  ASSERT(f);
  size_t n = fread(out, 1, (1 << 20) - 1, f);
  out[n] = 0;
  fclose(f);
  ASSERT(strstr(out, "\"quick\": true"));
  struct row rows[32];
  int nrows = heap_rows(out, rows, 32);
  ASSERT(nrows >= 6);

  /* Every row: a positive median inside its spread, whole repetitions, and
   * a positive ratio to its baseline. */
  for (int i = 0; i < nrows; i++) {
    const struct row *r = &rows[i];
    if (!(r->seconds > 0 && r->min > 0 && r->max >= r->seconds && r->min <= r->seconds))
      FAIL("row %s/%s: seconds %g (min %g, max %g)", r->case_, r->method, r->seconds, r->min,
           r->max);
    if (r->reps < 3 || r->ops < 1) FAIL("row %s/%s: reps %d, ops %lld", r->case_, r->method,
                                        r->reps, r->ops);
    if (!(r->ratio > 0)) FAIL("row %s/%s: ratio %g", r->case_, r->method, r->ratio);
  }

  /* The rows the suite always has. */
  const char *always[][2] = {{"alloc-free-64-live", "glibc"},
                             {"alloc-free-64-live", "heap"},
                             {"alloc-free-100k-live", "glibc"},
                             {"alloc-free-100k-live", "heap"},
                             {"tx-commit-64", "heap"},
                             {"tx-commit-64-durable", "heap"},
                             {"tx-write-64", "heap"},
                             {"tx-write-64-durable", "heap"}};
  for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
    if (!find(rows, nrows, always[i][0], always[i][1]))
      FAIL("JSON lacks the row %s/%s", always[i][0], always[i][1]);
  /* Quick mode says it has fewer live objects: no 1m row. */
  ASSERT(!find(rows, nrows, "alloc-free-1m-live", "heap"));
  const struct row *h = find(rows, nrows, "alloc-free-64-live", "heap");
  ASSERT(!strcmp(h->baseline, "glibc"));

  /* LMDB's rows are there when it is installed, and are the commits'
   * baseline; otherwise the verdict says it was not installed. */
  const char *tx[4] = {"tx-commit-64", "tx-commit-64-durable", "tx-write-64",
                       "tx-write-64-durable"};
  for (int d = 0; d < 4; d++) {
    const struct row *l = find(rows, nrows, tx[d], "lmdb");
    const struct row *t = find(rows, nrows, tx[d], "heap");
    if (lmdb_missing) {
      ASSERT(l == NULL);
    } else {
      if (!l) FAIL("LMDB is installed, but the JSON lacks %s/lmdb", tx[d]);
      ASSERT(!strcmp(t->baseline, "lmdb"));
    }
  }
  free(out);
}
