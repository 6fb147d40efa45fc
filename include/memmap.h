/*
 * memmap.h - the umbrella header: include this one to get all of memmap.
 * See include/memmap/<module>.h for each module's documentation.
 */
#ifndef MEMMAP_H
#define MEMMAP_H

#include "memmap/common.h"
#include "memmap/env.h"
#include "memmap/heap.h"
#include "memmap/cache.h"
#include "memmap/region.h"
#include "memmap/ring.h"
#include "memmap/view.h"

#endif /* MEMMAP_H */
