/*
 * harness.c - timing, rows, progress and formatting for `memmap bench`.
 */
#define _GNU_SOURCE 1
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

volatile uint64_t bench_sink;

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t bench_sum(const void *p, size_t n) {
  const unsigned char *c = p;
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    memcpy(w, c + i, 32);
    s0 += w[0], s1 += w[1], s2 += w[2], s3 += w[3];
  }
  for (; i < n; i++) s0 += c[i];
  uint64_t s = s0 + s1 + s2 + s3;
  bench_sink += s;
  return s;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void bench_time(bench_fn fn, void *arg, int warmup, int reps, uint64_t inner,
                struct bench_row *row) {
  double t[64];
  if (reps > 64) reps = 64;
  if (reps < 1) reps = 1;
  if (inner < 1) inner = 1;
  for (int w = 0; w < warmup; w++) fn(arg);
  for (int r = 0; r < reps; r++) {
    double t0 = bench_now();
    for (uint64_t i = 0; i < inner; i++) fn(arg);
    t[r] = (bench_now() - t0) / (double)inner;
  }
  qsort(t, (size_t)reps, sizeof t[0], cmp_double);
  row->seconds = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
  row->min = t[0];
  row->max = t[reps - 1];
  row->reps = reps;
}

uint64_t bench_calibrate(bench_fn fn, void *arg, double target_s) {
  uint64_t n = 1;
  for (;;) {
    double t0 = bench_now();
    for (uint64_t i = 0; i < n; i++) fn(arg);
    double dt = bench_now() - t0;
    if (dt >= target_s / 4 || n >= (1u << 24)) {
      double per = dt / (double)n;
      uint64_t want = per > 0 ? (uint64_t)(target_s / per) : n;
      return want < 1 ? 1 : want;
    }
    n *= 4;
  }
}

struct bench_row *bench_find(struct bench *b, const char *suite,
                             const char *case_, const char *method,
                             uint64_t bytes) {
  for (int i = 0; i < b->nrows; i++) {
    struct bench_row *r = &b->rows[i];
    if (r->bytes == bytes && !strcmp(r->suite, suite) &&
        !strcmp(r->case_, case_) && !strcmp(r->method, method))
      return r;
  }
  return NULL;
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
    else fputc(*s, f);
  }
  fputc('"', f);
}

struct bench_row *bench_add(struct bench *b, const struct bench_row *row) {
  if (b->nrows == b->cap) {
    int ncap = b->cap ? b->cap * 2 : 64;
    struct bench_row *n = realloc(b->rows, (size_t)ncap * sizeof *n);
    if (!n) return NULL;
    b->rows = n;
    b->cap = ncap;
  }
  struct bench_row *r = &b->rows[b->nrows++];
  *r = *row;
  r->ratio = 0;
  if (r->baseline[0]) {
    struct bench_row *base =
        bench_find(b, r->suite, r->case_, r->baseline, r->bytes);
    if (base && r->seconds > 0) r->ratio = base->seconds / r->seconds;
  }
  if (b->json) {
    FILE *f = b->json;
    fprintf(f, "%s\n    {\"suite\": ", b->json_rows++ ? "," : "");
    json_str(f, r->suite);
    fprintf(f, ", \"case\": ");
    json_str(f, r->case_);
    fprintf(f, ", \"method\": ");
    json_str(f, r->method);
    fprintf(f, ", \"bytes\": %llu, \"ops\": %llu, \"seconds\": %.9g, "
               "\"min_seconds\": %.9g, \"max_seconds\": %.9g, \"reps\": %d, "
               "\"baseline\": ",
            (unsigned long long)r->bytes, (unsigned long long)r->ops,
            r->seconds, r->min, r->max, r->reps);
    json_str(f, r->baseline[0] ? r->baseline : r->method);
    fprintf(f, ", \"ratio_vs_baseline\": %.6g, \"note\": ",
            r->baseline[0] ? r->ratio : 1.0);
    json_str(f, r->note);
    fputc('}', f);
  }
  return r;
}

void bench_progress(struct bench *b, const char *fmt, ...) {
  if (!b->tty) return;
  va_list ap;
  fputs("\r\033[K", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
}

void bench_progress_done(struct bench *b) {
  if (b->tty) fputs("\r\033[K", stderr);
}

const char *bench_fmt_time(double s, char *buf, size_t len) {
  if (s < 1e-6) snprintf(buf, len, "%.0f ns", s * 1e9);
  else if (s < 1e-3) snprintf(buf, len, "%.2f us", s * 1e6);
  else if (s < 1) snprintf(buf, len, "%.2f ms", s * 1e3);
  else snprintf(buf, len, "%.2f s", s);
  return buf;
}

void bench_time_set(const bench_fn *fns, void *const *args, int n, int reps,
                    double target_s, struct bench_row *rows) {
  enum { MAXM = 16, MAXR = 64 };
  uint64_t inner[MAXM];
  double t[MAXM][MAXR];
  if (n > MAXM) n = MAXM;
  if (reps > MAXR) reps = MAXR;
  if (reps < 1) reps = 1;
  for (int m = 0; m < n; m++) {
    fns[m](args[m]); /* warm-up */
    inner[m] = bench_calibrate(fns[m], args[m], target_s);
  }
  for (int r = 0; r < reps; r++) {
    for (int m = 0; m < n; m++) {
      double t0 = bench_now();
      for (uint64_t i = 0; i < inner[m]; i++) fns[m](args[m]);
      t[m][r] = (bench_now() - t0) / (double)inner[m];
    }
  }
  for (int m = 0; m < n; m++) {
    qsort(t[m], (size_t)reps, sizeof t[m][0], cmp_double);
    rows[m].seconds = reps % 2 ? t[m][reps / 2]
                               : (t[m][reps / 2 - 1] + t[m][reps / 2]) / 2;
    rows[m].min = t[m][0];
    rows[m].max = t[m][reps - 1];
    rows[m].reps = reps;
    rows[m].ops = inner[m];
  }
}

void bench_verdict(struct bench *b, const char *suite, const char *fmt, ...) {
  char text[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  fprintf(b->out, "verdict: %s\n", text);
  void *n = realloc(b->verdicts, (size_t)(b->nverdicts + 1) * sizeof *b->verdicts);
  if (!n) return;
  b->verdicts = n;
  snprintf(b->verdicts[b->nverdicts][0], sizeof b->verdicts[0][0], "%s", suite);
  snprintf(b->verdicts[b->nverdicts][1], sizeof b->verdicts[0][1], "%s", text);
  b->nverdicts++;
}
