/*
 * bench.h - the benchmark harness behind `memmap bench`: timing with
 * warm-up and repetitions, result rows with their baseline from the same
 * run, tables for a terminal and JSON rows for scripts.
 *
 * Every result is a median over repetitions, with the fastest and slowest
 * repetition kept as the spread, and a ratio to a named baseline measured
 * in the same run: ratio = baseline time / this time, so 2.0 means "twice
 * as fast as the baseline".
 */
#ifndef MM_BENCH_H
#define MM_BENCH_H

#include <stdint.h>
#include <stdio.h>

struct bench_row {
  char suite[16];
  char case_[48];   /* e.g. "seq-scan", "random-4k" */
  char method[32];  /* e.g. "read", "mmap", "view" */
  char baseline[32];/* the method this row is compared with */
  char note[48];    /* e.g. the backend a view chose */
  uint64_t bytes;   /* bytes the case works on (file size, message size) */
  uint64_t ops;     /* operations per timed repetition */
  double seconds;   /* median seconds per operation */
  double min, max;  /* fastest and slowest repetition, seconds per op */
  double ratio;     /* baseline seconds / seconds; 0 if none */
  int reps;
};

struct bench {
  int quick;
  int tty;              /* progress lines on stderr */
  const char *dir;      /* scratch directory for files */
  uint64_t max_size;    /* largest file or buffer a suite may use; 0: its own */
  FILE *out;            /* where tables and verdicts go */
  FILE *json;           /* rows as JSON objects, or NULL */
  int json_rows;        /* rows written so far (for commas) */
  struct bench_row *rows;
  int nrows, cap;
  char (*verdicts)[2][384]; /* {suite, text} pairs */
  int nverdicts;
};

/* Time `fn(arg)` : `warmup` untimed runs, then `reps` timed ones, each
 * running fn `inner` times. Fills seconds (median), min and max per call. */
typedef void (*bench_fn)(void *arg);
void bench_time(bench_fn fn, void *arg, int warmup, int reps, uint64_t inner,
                struct bench_row *row);

/* Time several methods fairly on a noisy machine: each is calibrated to
 * about target_s a repetition, warmed up once, then the repetitions are
 * interleaved (m0 m1 m2 m0 m1 m2 ...) so that drift hits every method
 * alike. rows[i] receives method i's median, min, max, reps and ops. */
void bench_time_set(const bench_fn *fns, void *const *args, int n, int reps,
                    double target_s, struct bench_row *rows);

/* Choose `inner` so that one repetition lasts about `target_s`. */
uint64_t bench_calibrate(bench_fn fn, void *arg, double target_s);

/* Record a row (copied). Ratio is filled from the row named by baseline
 * with the same suite, case and bytes when it is already recorded. */
struct bench_row *bench_add(struct bench *b, const struct bench_row *row);
/* Find a recorded row. */
struct bench_row *bench_find(struct bench *b, const char *suite,
                             const char *case_, const char *method,
                             uint64_t bytes);

/* A verdict in plain words, computed by a suite from its numbers: printed
 * as "verdict: <text>" and kept for the report. */
void bench_verdict(struct bench *b, const char *suite, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A progress line on a terminal ("\r" rewritten), nothing otherwise. */
void bench_progress(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bench_progress_done(struct bench *b);

double bench_now(void);
/* Sum a buffer as 64-bit words; the result goes to a global sink so the
 * compiler cannot drop the scan. */
uint64_t bench_sum(const void *p, size_t n);
extern volatile uint64_t bench_sink;

/* "1.23 us", "45.6 ms". Sizes: cli_format_size() in cli/cli.h. */
const char *bench_fmt_time(double s, char *buf, size_t len);

/* Suites: each returns 0 or a negative memmap error. */
int bench_files(struct bench *b);
int bench_grow(struct bench *b);
int bench_cache(struct bench *b);
int bench_ipc(struct bench *b);
int bench_share(struct bench *b);
int bench_heap(struct bench *b);
/* Before any suite runs, when heap will: if jemalloc is installed but
 * cannot be loaded for want of static TLS, run the command again with room
 * for it (see bench/heap.c). Returns if there is nothing to do. */
void bench_heap_prepare(void);

/* Write DIR/index.html, DIR/report.md and DIR/<suite>.svg for the rows
 * and verdicts so far; machine is a line describing the machine. */
int bench_report(struct bench *b, const char *dir, const char *machine);

#endif /* MM_BENCH_H */
