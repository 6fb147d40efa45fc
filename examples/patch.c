/*
 * patch.c - overwrite bytes in the middle of a file through a shared
 * writable view, and make the change durable. Only the pages touched are
 * read and written back; the rest of the file is never copied.
 *
 *   cc patch.c -lmemmap -o patch && ./patch FILE OFFSET TEXT
 */
#include <memmap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: patch FILE OFFSET TEXT\n");
    return 2;
  }
  size_t n = strlen(argv[3]);
  /* A window of just the bytes we change: any offset, no alignment. */
  mm_view_opts_t opts = {.mode = MM_VIEW_WRITE,
                         .offset = strtoull(argv[2], NULL, 0),
                         .length = n};
  mm_view_t *view;
  int rc = mm_view_open(&view, argv[1], &opts);
  if (rc < 0) {
    fprintf(stderr, "patch: %s: %s\n", argv[1], mm_strerror(rc));
    return 1;
  }
  /* A guarded store: MM_ETRUNCATED, not SIGBUS, if the file shrank. */
  rc = mm_view_write(view, 0, argv[3], n);
  /* Durable only once this returns 0. */
  if (rc == 0) rc = mm_view_sync(view, 0, 0, MM_SYNC_WAIT);
  int rc2 = mm_view_close(view);
  if (rc < 0 || rc2 < 0) {
    fprintf(stderr, "patch: %s: %s\n", argv[1], mm_strerror(rc < 0 ? rc : rc2));
    return 1;
  }
  return 0;
}
