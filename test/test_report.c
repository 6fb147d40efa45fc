/*
 * test_report.c - `memmap bench --report`: the HTML page, the Markdown and
 * the SVG charts, checked in headless Chromium where it is installed.
 */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

static const char *chromium(void) {
  static const char *const names[] = {"chromium", "chromium-browser", "google-chrome"};
  char out[256];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (mm_test_run(out, sizeof out, "command -v %s 2>/dev/null", names[i]) == 0) return names[i];
  return NULL;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) FAIL("cannot open %s", path);
  char *buf = malloc(1 << 20);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
  return n;
}

/* A small real run: files up to 64 KiB and the share suite. */
static void make_report(const char *dir) {
  char *out = malloc(1 << 16);
  int rc = mm_test_run(out, 1 << 16, "%s/memmap bench --quick --max-size 64K --dir %s --report %s files share 2>&1",
                       mm_test_bindir(), mm_test_dir(), dir);
  if (rc != 0) FAIL("bench exited %d:\n%s", rc, out);
  if (!strstr(out, "report: ")) FAIL("%s", out);
  free(out);
}

TEST_T(report_writes_html_markdown_and_svg_charts, 120) {
  const char *dir = mm_test_path("rep");
  make_report(dir);
  char p[1024];
  snprintf(p, sizeof p, "%s/index.html", dir);
  char *html = slurp(p);
  ASSERT(count(html, "<svg") == 2); /* files and share */
  ASSERT(count(html, "class=\"verdict\"") >= 2);
  ASSERT(strstr(html, "<table>") && strstr(html, "vs baseline"));
  ASSERT(!strstr(html, "http://") || strstr(html, "http://www.w3.org/2000/svg"));
  ASSERT(!strstr(html, "<script")); /* self-contained, nothing to fetch */
  free(html);
  snprintf(p, sizeof p, "%s/report.md", dir);
  char *md = slurp(p);
  ASSERT(strstr(md, "## files") && strstr(md, "## share") && strstr(md, "![files](files.svg)"));
  ASSERT(strstr(md, "**verdict:**"));
  free(md);
  snprintf(p, sizeof p, "%s/files.svg", dir);
  char *svg = slurp(p);
  ASSERT(count(svg, "<polyline") == 6); /* one line per method */
  free(svg);
}

TEST_T(report_page_renders_its_charts_in_headless_chromium, 180) {
  const char *browser = chromium();
  if (!browser) SKIP("Chromium is not installed (apt-get install chromium)");
  const char *dir = mm_test_path("rep");
  make_report(dir);
  char *out = malloc(1 << 20);
  int rc = mm_test_run(out, 1 << 20,
                       "%s --headless --no-sandbox --disable-gpu --dump-dom file://%s/index.html 2>/dev/null",
                       browser, dir);
  if (rc != 0) FAIL("%s --dump-dom exited %d", browser, rc);
  /* The browser parsed the page into a DOM with both charts, their lines
   * and their legends. */
  if (count(out, "<svg") != 2 || count(out, "class=\"series\"") < 8 || !strstr(out, "mmap (shared pages)"))
    FAIL("charts missing from the rendered DOM:\n%.2000s", out);
  char shot[1024];
  snprintf(shot, sizeof shot, "%s/shot.png", dir);
  rc = mm_test_run(out, 1 << 16,
                   "%s --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,1600 "
                   "--screenshot=%s file://%s/index.html 2>&1",
                   browser, shot, dir);
  struct stat st;
  if (rc != 0 || stat(shot, &st) != 0) FAIL("screenshot failed (%d): %s", rc, out);
  ASSERT(st.st_size > 20000); /* a page with charts, not a blank one */
  free(out);
}
