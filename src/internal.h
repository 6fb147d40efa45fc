/*
 * internal.h - helpers shared across src/ (names mm__*). Not installed.
 */
#ifndef MM_INTERNAL_H
#define MM_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
/* 64-bit file offsets in 32-bit builds too (the Makefile sets it for every
 * file; this keeps the library right when built some other way). */
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif

#include <stdint.h>
#include <string.h>

#include "memmap/common.h"
#include "sys.h"

#define MM__LIKELY(x) __builtin_expect(!!(x), 1)
#define MM__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The system page size, read once. */
size_t mm__page_size(void);

static inline uint64_t mm__align_down(uint64_t x, uint64_t a) {
  return x & ~(a - 1);
}

/* Round x up to a multiple of a (a power of two); 0 on overflow. */
static inline uint64_t mm__align_up(uint64_t x, uint64_t a) {
  if (x > UINT64_MAX - (a - 1)) return 0;
  return (x + a - 1) & ~(a - 1);
}

/* How many mappings the process has (lines of /proc/self/maps) and the
 * limit (vm.max_map_count); -1 where unreadable. Slow: error paths only. */
long mm__map_count(void);
long mm__max_map_count(void);

/* Map an mmap ENOMEM to MM_EMAPCOUNT when the process is at
 * vm.max_map_count, which the kernel reports as the same ENOMEM. */
int mm__mmap_error(int rc);

#endif /* MM_INTERNAL_H */
