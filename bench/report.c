/*
 * report.c - `memmap bench --report DIR`: the run as a self-contained web
 * page (index.html: tables, verdicts and an SVG chart per suite, no
 * scripts, no network), the same as Markdown (report.md), and each chart
 * as DIR/<suite>.svg for embedding elsewhere.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "cli.h"

#define W 720
#define H 360
#define ML 70 /* margins */
#define MR 170
#define MT 40
#define MB 50

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                      "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

static void esc(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '&') fputs("&amp;", f);
    else fputc(*s, f);
  }
}

/* The start of a chart: the svg element, a white ground, the title. */
static void svg_open(FILE *f, const char *title) {
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\" "
             "class=\"chart\">\n", W, H, W, H);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
  fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", ML);
  esc(f, title);
  fprintf(f, "</text>\n");
}

struct series {
  const char *name;
  int n;
  double x[16], y[16];
};

static double tx(double v, double lo, double hi, int logx) {
  if (logx) v = log10(v), lo = log10(lo), hi = log10(hi);
  return ML + (v - lo) / (hi - lo ? hi - lo : 1) * (W - ML - MR);
}

static double ty(double v, double lo, double hi, int logy) {
  if (logy) v = log10(v), lo = log10(lo), hi = log10(hi);
  return H - MB - (v - lo) / (hi - lo ? hi - lo : 1) * (H - MT - MB);
}

static void axis_label(FILE *f, double v, char *buf, size_t len, int is_size, int is_time) {
  if (is_size) cli_format_size((uint64_t)v, buf, len);
  else if (is_time) bench_fmt_time(v, buf, len);
  else snprintf(buf, len, "%.3g", v);
  (void)f;
}

/* A line chart; log axes take powers of ten (or of two for sizes). */
static void svg_lines(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                      int logx, int logy, int xsize, int ytime, struct series *s, int ns) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int i = 0; i < ns; i++)
    for (int k = 0; k < s[i].n; k++) {
      if (s[i].y[k] <= 0 && logy) continue;
      xlo = fmin(xlo, s[i].x[k]), xhi = fmax(xhi, s[i].x[k]);
      ylo = fmin(ylo, s[i].y[k]), yhi = fmax(yhi, s[i].y[k]);
    }
  if (!isfinite(xlo) || !isfinite(ylo)) return;
  if (!logy) ylo = 0;
  if (logy) ylo = pow(10, floor(log10(ylo))), yhi = pow(10, ceil(log10(yhi)));
  else yhi *= 1.1;
  svg_open(f, title);
  char b[32];
  /* Grid and ticks. */
  if (logy) {
    for (double v = ylo; v <= yhi * 1.0001; v *= 10) {
      double y = ty(v, ylo, yhi, 1);
      axis_label(f, v, b, sizeof b, 0, ytime);
      fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                 "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
              ML, W - MR, y, y, ML - 4, y + 4, b);
    }
  } else {
    for (int k = 0; k <= 5; k++) {
      double v = ylo + (yhi - ylo) * k / 5, y = ty(v, ylo, yhi, 0);
      axis_label(f, v, b, sizeof b, 0, ytime);
      fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                 "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
              ML, W - MR, y, y, ML - 4, y + 4, b);
    }
  }
  /* X ticks at the data points of the first series. */
  for (int k = 0; k < s[0].n; k++) {
    double x = tx(s[0].x[k], xlo, xhi, logx);
    axis_label(f, s[0].x[k], b, sizeof b, xsize, 0);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x,
            H - MB + 15, b);
  }
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (ML + W - MR) / 2, H - 10);
  esc(f, xlabel);
  fprintf(f, "</text><text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" "
             "text-anchor=\"middle\">", (MT + H - MB) / 2, (MT + H - MB) / 2);
  esc(f, ylabel);
  fprintf(f, "</text>\n");
  for (int i = 0; i < ns; i++) {
    const char *col = palette[i % 8];
    fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
    for (int k = 0; k < s[i].n; k++)
      if (!logy || s[i].y[k] > 0)
        fprintf(f, "%.1f,%.1f ", tx(s[i].x[k], xlo, xhi, logx), ty(s[i].y[k], ylo, yhi, logy));
    fprintf(f, "\"/>\n");
    for (int k = 0; k < s[i].n; k++)
      if (!logy || s[i].y[k] > 0)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", tx(s[i].x[k], xlo, xhi, logx),
                ty(s[i].y[k], ylo, yhi, logy), col);
    fprintf(f, "\n<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"3\" fill=\"%s\"/>"
               "<text x=\"%d\" y=\"%d\">", W - MR + 10, MT + 14 * i + 4, col, W - MR + 26,
            MT + 14 * i + 8);
    esc(f, s[i].name);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "</svg>\n");
}

/* A grouped bar chart of ratios to the baseline, on a log axis with the
 * baseline's 1.0 drawn across. values[g][k] <= 0: no bar. */
static void svg_bars(FILE *f, const char *title, const char *ylabel, const char **groups,
                     int ng, const char **names, int nb, double values[][8]) {
  double lo = 1, hi = 1;
  for (int g = 0; g < ng; g++)
    for (int k = 0; k < nb; k++)
      if (values[g][k] > 0) lo = fmin(lo, values[g][k]), hi = fmax(hi, values[g][k]);
  lo = pow(10, floor(log10(lo))), hi = pow(10, ceil(log10(hi)));
  if (hi <= lo) hi = lo * 10;
  svg_open(f, title);
  for (double v = lo; v <= hi * 1.0001; v *= 10) {
    double y = ty(v, lo, hi, 1);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
               "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%gx</text>\n",
            ML, W - MR, y, y, fabs(v - 1) < 1e-9 ? "#444" : "#ddd", ML - 4, y + 4, v);
  }
  double gw = (double)(W - ML - MR) / ng, bw = gw * 0.8 / nb;
  for (int g = 0; g < ng; g++) {
    for (int k = 0; k < nb; k++) {
      if (values[g][k] <= 0) continue;
      double x = ML + g * gw + gw * 0.1 + k * bw;
      double y1 = ty(values[g][k], lo, hi, 1), y0 = ty(1, lo, hi, 1);
      fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                 "fill=\"%s\"><title>%s: %.2fx</title></rect>\n",
              x, fmin(y0, y1), bw * 0.9, fabs(y1 - y0) < 1 ? 1 : fabs(y1 - y0),
              palette[k % 8], names[k], values[g][k]);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", ML + g * gw + gw / 2, H - MB + 15);
    esc(f, groups[g]);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">",
          (MT + H - MB) / 2, (MT + H - MB) / 2);
  esc(f, ylabel);
  fprintf(f, "</text>\n");
  for (int k = 0; k < nb; k++) {
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"10\" fill=\"%s\"/>"
               "<text x=\"%d\" y=\"%d\">", W - MR + 10, MT + 14 * k, palette[k % 8], W - MR + 26,
            MT + 14 * k + 9);
    esc(f, names[k]);
    fprintf(f, "</text>\n");
  }
  fprintf(f, "</svg>\n");
}

/* Distinct values of a row field, in order of first appearance. */
/* The speed charts leave out cases whose ratio is not one of time. */
static int charted(const struct bench_row *r) { return strcmp(r->case_, "fragmentation") != 0; }

static int distinct(struct bench *b, const char *suite, int field, const char **out, int max) {
  int n = 0;
  for (int i = 0; i < b->nrows; i++) {
    struct bench_row *r = &b->rows[i];
    if (strcmp(r->suite, suite) || !charted(r)) continue;
    const char *v = field == 0 ? r->case_ : r->method;
    int seen = 0;
    for (int k = 0; k < n; k++) seen |= !strcmp(out[k], v);
    if (!seen && n < max) out[n++] = v;
  }
  return n;
}

/* Write the chart of a suite; 0 if it has none. */
static int chart(FILE *f, struct bench *b, const char *suite) {
  if (!strcmp(suite, "files")) {
    static const char *const methods[] = {"read", "read-stream", "mmap", "mmap+populate",
                                          "view", "memory"};
    struct series s[6];
    memset(s, 0, sizeof s);
    for (int m = 0; m < 6; m++) {
      s[m].name = methods[m];
      for (int i = 0; i < b->nrows && s[m].n < 16; i++) {
        struct bench_row *r = &b->rows[i];
        if (!strcmp(r->suite, "files") && !strcmp(r->case_, "seq-scan") &&
            !strcmp(r->method, methods[m])) {
          s[m].x[s[m].n] = (double)r->bytes;
          s[m].y[s[m].n++] = r->seconds;
        }
      }
    }
    if (!s[0].n) return 0;
    svg_lines(f, "files: whole-file scan of a cached file (lower is faster)", "file size",
              "time per file", 1, 1, 1, 1, s, 6);
    return 1;
  }
  if (!strcmp(suite, "share")) {
    struct series s[2] = {{.name = "read() into own buffer"}, {.name = "mmap (shared pages)"}};
    for (int i = 0; i < b->nrows; i++) {
      struct bench_row *r = &b->rows[i];
      if (strcmp(r->suite, "share")) continue;
      int m = !strcmp(r->method, "mmap");
      const char *p = strstr(r->note, "pss_bytes=");
      if (!p || s[m].n >= 16) continue;
      s[m].x[s[m].n] = (double)r->ops;
      s[m].y[s[m].n++] = (double)strtoull(p + 10, NULL, 10) / (1 << 20);
    }
    if (!s[0].n) return 0;
    svg_lines(f, "share: memory used by N processes reading one file", "processes",
              "MiB (PSS summed)", 0, 0, 0, 0, s, 2);
    return 1;
  }
  if (!strcmp(suite, "heap")) {
    /* Rates against glibc malloc (allocation cases) and LMDB (commits),
     * one color per method across the cases; a row without its baseline
     * (LMDB not installed) gets no bar rather than a false 1.0. */
    static const char *const methods[] = {"glibc", "heap", "jemalloc", "mimalloc", "lmdb"};
    static const char *legend[] = {"glibc malloc", "heap (mm_heap)", "jemalloc", "mimalloc",
                                   "LMDB"};
    enum { NMETH = sizeof methods / sizeof methods[0] };
    const char *cases[16], *labels[16];
    char label_buf[16][40];
    int ng = distinct(b, "heap", 0, cases, 16);
    if (!ng) return 0;
    double v[16][8];
    memset(v, 0, sizeof v);
    for (int g = 0; g < ng; g++) {
      /* "alloc-free-64-live" -> "64 live"; "tx-write-64-durable" -> "durable write commit" */
      const char *c = cases[g];
      if (!strncmp(c, "alloc-free-", 11)) {
        snprintf(label_buf[g], sizeof label_buf[g], "%.*s live",
                 (int)strcspn(c + 11, "-"), c + 11);
      } else {
        snprintf(label_buf[g], sizeof label_buf[g], "%s%scommit",
                 strstr(c, "durable") ? "durable " : "",
                 strstr(c, "alloc") ? "alloc " : strstr(c, "write") ? "write " : "");
      }
      labels[g] = label_buf[g];
    }
    for (int i = 0; i < b->nrows; i++) {
      struct bench_row *r = &b->rows[i];
      if (strcmp(r->suite, "heap")) continue;
      int g = 0, k = 0;
      while (g < ng && strcmp(cases[g], r->case_)) g++;
      while (k < NMETH && strcmp(methods[k], r->method)) k++;
      if (g == ng || k == NMETH) continue;
      if (r->baseline[0]) v[g][k] = r->ratio;
      else if (k == 0 || k == NMETH - 1) v[g][k] = 1.0; /* a baseline itself */
    }
    svg_bars(f, "heap: rate against glibc malloc and LMDB (higher is faster)",
             "times the baseline's rate", labels, ng, legend, NMETH, v);
    return 1;
  }
  /* Others: ratio to the baseline, grouped by case. */
  const char *groups[16], *names[8];
  int ng = distinct(b, suite, 0, groups, 16), nb = distinct(b, suite, 1, names, 8);
  if (!ng || !nb) return 0;
  double v[16][8];
  memset(v, 0, sizeof v);
  for (int i = 0; i < b->nrows; i++) {
    struct bench_row *r = &b->rows[i];
    if (strcmp(r->suite, suite) || !charted(r)) continue;
    int g = 0, k = 0;
    while (g < ng && strcmp(groups[g], r->case_)) g++;
    while (k < nb && strcmp(names[k], r->method)) k++;
    if (g < ng && k < nb) v[g][k] = r->baseline[0] ? r->ratio : 1.0;
  }
  char title[96];
  snprintf(title, sizeof title, "%s: speed against the baseline (higher is faster)", suite);
  svg_bars(f, title, "times the baseline", groups, ng, names, nb, v);
  return 1;
}

static void md_table(FILE *f, struct bench *b, const char *suite) {
  fprintf(f, "| case | method | bytes | median | fastest | slowest | vs baseline | note |\n"
             "|---|---|---|---|---|---|---|---|\n");
  char t1[32], t2[32], t3[32], s[32];
  for (int i = 0; i < b->nrows; i++) {
    struct bench_row *r = &b->rows[i];
    if (strcmp(r->suite, suite)) continue;
    char ratio[48];
    if (r->baseline[0]) snprintf(ratio, sizeof ratio, "%.2fx %s", r->ratio, r->baseline);
    else snprintf(ratio, sizeof ratio, "baseline");
    fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r->case_, r->method,
            cli_format_size(r->bytes, s, sizeof s), bench_fmt_time(r->seconds, t1, sizeof t1),
            bench_fmt_time(r->min, t2, sizeof t2), bench_fmt_time(r->max, t3, sizeof t3), ratio,
            r->note);
  }
}

static void html_table(FILE *f, struct bench *b, const char *suite) {
  fprintf(f, "<table><tr><th>case</th><th>method</th><th>bytes</th><th>median</th>"
             "<th>fastest</th><th>slowest</th><th>vs baseline</th><th>note</th></tr>\n");
  char t1[32], t2[32], t3[32], s[32];
  for (int i = 0; i < b->nrows; i++) {
    struct bench_row *r = &b->rows[i];
    if (strcmp(r->suite, suite)) continue;
    fprintf(f, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>",
            r->case_, r->method, cli_format_size(r->bytes, s, sizeof s),
            bench_fmt_time(r->seconds, t1, sizeof t1), bench_fmt_time(r->min, t2, sizeof t2),
            bench_fmt_time(r->max, t3, sizeof t3));
    if (r->baseline[0]) fprintf(f, "%.2fx %s", r->ratio, r->baseline);
    else fprintf(f, "baseline");
    fprintf(f, "</td><td>");
    esc(f, r->note);
    fprintf(f, "</td></tr>\n");
  }
  fprintf(f, "</table>\n");
}

int bench_report(struct bench *b, const char *dir, const char *machine) {
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return -errno;
  const char *suites[16];
  int ns = 0;
  for (int i = 0; i < b->nrows; i++) {
    int seen = 0;
    for (int k = 0; k < ns; k++) seen |= !strcmp(suites[k], b->rows[i].suite);
    if (!seen && ns < 16) suites[ns++] = b->rows[i].suite;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/index.html", dir);
  FILE *h = fopen(path, "w");
  snprintf(path, sizeof path, "%s/report.md", dir);
  FILE *md = fopen(path, "w");
  if (!h || !md) {
    int e = -errno;
    if (h) fclose(h);
    if (md) fclose(md);
    return e;
  }
  fprintf(h, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>memmap bench</title>\n"
             "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "th{background:#f4f4f4}.verdict{background:#eef6ee;padding:6px 10px;margin:4px 0}"
             "</style></head><body>\n<h1>memmap bench</h1>\n<p>");
  esc(h, machine);
  fprintf(h, "</p>\n<p>Every figure is the median of several repetitions after a warm-up, "
             "with the fastest and slowest shown; ratios are to the baseline measured in "
             "the same run (baseline time / method time: above 1 is faster).</p>\n");
  fprintf(md, "# memmap bench\n\n%s\n\nEvery figure is the median of several repetitions "
              "after a warm-up, with the fastest and slowest shown; ratios are to the "
              "baseline measured in the same run (baseline time / method time: above 1 is "
              "faster).\n",
          machine);
  for (int k = 0; k < ns; k++) {
    fprintf(h, "<h2 id=\"%s\">%s</h2>\n", suites[k], suites[k]);
    fprintf(md, "\n## %s\n\n", suites[k]);
    for (int v = 0; v < b->nverdicts; v++)
      if (!strcmp(b->verdicts[v][0], suites[k])) {
        fprintf(h, "<p class=\"verdict\">");
        esc(h, b->verdicts[v][1]);
        fprintf(h, "</p>\n");
        fprintf(md, "- **verdict:** %s\n", b->verdicts[v][1]);
      }
    snprintf(path, sizeof path, "%s/%s.svg", dir, suites[k]);
    FILE *svg = fopen(path, "w");
    int have = svg ? chart(svg, b, suites[k]) : 0;
    if (svg) fclose(svg);
    if (have) {
      chart(h, b, suites[k]);
      fprintf(md, "\n![%s](%s.svg)\n\n", suites[k], suites[k]);
    } else {
      remove(path);
      fprintf(md, "\n");
    }
    html_table(h, b, suites[k]);
    md_table(md, b, suites[k]);
  }
  fprintf(h, "</body></html>\n");
  int rc = 0;
  if (fclose(h) != 0) rc = -errno;
  if (fclose(md) != 0 && rc == 0) rc = -errno;
  return rc;
}
