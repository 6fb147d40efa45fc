/*
 * heap_util.h - helpers shared by the heap's test files.
 */
#ifndef MM_TEST_HEAP_UTIL_H
#define MM_TEST_HEAP_UTIL_H

#include <inttypes.h>
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

#endif
