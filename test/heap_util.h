/*
 * heap_util.h - helpers shared by the heap's test files.
 */
#ifndef MM_TEST_HEAP_UTIL_H
#define MM_TEST_HEAP_UTIL_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "test.h"

/* mm_heap_info, with the identity heap.h promises checked. */
static inline mm_heap_info_t info_of(mm_heap_t *h) {
  mm_heap_info_t i;
  memset(&i, 0, sizeof i);
  ASSERT_OK(mm_heap_info(h, &i));
  if (i.used + i.free + i.overhead != i.file_size)
    FAIL("info: used %" PRIu64 " + free %" PRIu64 " + overhead %" PRIu64
         " != file_size %" PRIu64, i.used, i.free, i.overhead, i.file_size);
  return i;
}

/* mm_heap_check's callback for tests: each problem on stderr. */
static inline void check_report(void *arg, int code, uint64_t off, const char *msg) {
  (void)arg;
  fprintf(stderr, "# mm_heap_check: %s at offset %" PRIu64 ": %s\n", mm_errname(code),
          off, msg ? msg : "(no message)");
}

/* mm_heap_check must find nothing; each problem is printed. */
#define ASSERT_CHECK_CLEAN(h)                                                \
  do {                                                                       \
    uint64_t nf_ = 12345;                                                    \
    int crc_ = mm_heap_check((h), check_report, NULL, &nf_);                 \
    if (crc_ != 0 || nf_ != 0)                                               \
      FAIL("mm_heap_check: %s, %" PRIu64 " problem(s)", mm_errname(crc_), nf_); \
  } while (0)

#endif
