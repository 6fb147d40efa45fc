/*
 * todo.c - a to-do list kept in a memmap heap file: every run opens the
 * heap, changes the list in a transaction, and leaves it for the next run
 * (or for another process running at the same time).
 *
 *   todo FILE add TEXT     append an item
 *   todo FILE done N       remove item N (1-based)
 *   todo FILE list         print the items
 *
 * The list is a linked list of offsets under the name "todo". Each change
 * is one transaction: killed half way, the file keeps the list as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memmap.h>

struct list { uint64_t head, count; };      /* the named object */
struct item { uint64_t next; char text[]; }; /* one item, in the heap */

static int fail(const char *what, int rc) {
  fprintf(stderr, "todo: %s: %s\n", what, mm_strerror(rc));
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: todo FILE add TEXT | done N | list\n");
    return 2;
  }
  mm_heap_t *h;
  mm_heap_opts_t o = {.flags = MM_HEAP_CREATE, .chunk_size = 64 << 10, .log_size = 64 << 10};
  int rc = mm_heap_open(&h, argv[1], &o);
  if (rc) return fail(argv[1], rc);

  rc = mm_heap_tx_begin(h, NULL);
  if (rc) return fail("begin", rc);
  uint64_t loff;
  rc = mm_heap_name_get(h, "todo", &loff);
  if (rc == -ENOENT) { /* first run: make the list, in this transaction */
    if ((rc = mm_heap_zalloc(h, sizeof(struct list), &loff)) == 0)
      rc = mm_heap_name_set(h, "todo", loff);
  }
  if (rc) return fail("list", rc);
  struct list *l = MM_HEAP_PTR(h, loff, struct list);

  if (!strcmp(argv[2], "add") && argc == 4) {
    size_t n = strlen(argv[3]) + 1;
    uint64_t ioff;
    if ((rc = mm_heap_alloc(h, sizeof(struct item) + n, &ioff))) return fail("alloc", rc);
    struct item *it = MM_HEAP_PTR(h, ioff, struct item);
    it->next = 0;
    memcpy(it->text, argv[3], n);
    /* Append: declare the link we change (the head or the last next). */
    uint64_t *link = &l->head;
    while (*link) link = &MM_HEAP_PTR(h, *link, struct item)->next;
    if ((rc = mm_heap_tx_add_ptr(h, link, 8)) || (rc = mm_heap_tx_add_ptr(h, &l->count, 8)))
      return fail("tx_add", rc);
    *link = ioff;
    l->count++;
  } else if (!strcmp(argv[2], "done") && argc == 4) {
    long k = strtol(argv[3], NULL, 10);
    uint64_t *link = &l->head;
    for (long i = 1; *link && i < k; i++) link = &MM_HEAP_PTR(h, *link, struct item)->next;
    if (k < 1 || !*link) {
      fprintf(stderr, "todo: no item %s\n", argv[3]);
      (void)mm_heap_tx_abort(h);
      mm_heap_close(h);
      return 1;
    }
    uint64_t gone = *link;
    if ((rc = mm_heap_tx_add_ptr(h, link, 8)) || (rc = mm_heap_tx_add_ptr(h, &l->count, 8)))
      return fail("tx_add", rc);
    *link = MM_HEAP_PTR(h, gone, struct item)->next;
    l->count--;
    if ((rc = mm_heap_free(h, gone))) return fail("free", rc); /* at commit */
  } else if (!strcmp(argv[2], "list")) {
    long i = 1;
    for (uint64_t x = l->head; x; x = MM_HEAP_PTR(h, x, struct item)->next)
      printf("%ld. %s\n", i++, MM_HEAP_PTR(h, x, struct item)->text);
  } else {
    (void)mm_heap_tx_abort(h);
    mm_heap_close(h);
    fprintf(stderr, "usage: todo FILE add TEXT | done N | list\n");
    return 2;
  }
  if ((rc = mm_heap_tx_commit(h))) return fail("commit", rc);
  return mm_heap_close(h) ? 1 : 0;
}
