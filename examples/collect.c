/*
 * collect.c - gather standard input into memory whose final size is not
 * known in advance, without realloc copying it and without the pointer
 * ever moving. With a FILE argument the region is backed by that file, so
 * the data can be larger than RAM and is there again next time.
 *
 *   cc collect.c -lmemmap -o collect && some-command | ./collect [FILE]
 */
#include <memmap.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  mm_region_opts_t opts = {0};
  if (argc > 1) {
    opts.path = argv[1];
    opts.flags = MM_REGION_CREATE; /* reopening appends to what is there */
  }
  mm_region_t *region;
  int rc = mm_region_create(&region, &opts);
  if (rc < 0) {
    fprintf(stderr, "collect: %s: %s\n", argc > 1 ? argv[1] : "region", mm_strerror(rc));
    return 1;
  }
  const char *start = mm_region_base(region); /* valid for the region's life */
  uint64_t before = mm_region_size(region);
  char buf[65536];
  ssize_t n;
  while (rc == 0 && (n = read(0, buf, sizeof buf)) > 0)
    rc = mm_region_append(region, buf, (size_t)n, NULL);
  if (rc == 0 && mm_region_base(region) != start && mm_region_stable(region))
    rc = -1; /* cannot happen: a stable region never moves */
  if (rc == 0) {
    uint64_t size = mm_region_size(region), lines = 0;
    for (const char *p = start + before; (p = memchr(p, '\n', (size_t)(start + size - p)));
         p++)
      lines++;
    printf("%llu new lines, %llu bytes in all, moved %llu times\n",
           (unsigned long long)lines, (unsigned long long)size,
           (unsigned long long)mm_region_moves(region));
  }
  int rc2 = mm_region_close(region);
  if (rc < 0 || rc2 < 0) {
    fprintf(stderr, "collect: %s\n", mm_strerror(rc < 0 ? rc : rc2));
    return 1;
  }
  return 0;
}
