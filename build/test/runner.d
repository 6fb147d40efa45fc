build/test/runner.o: test/runner.c test/test.h include/memmap.h \
 include/memmap/common.h include/memmap/region.h include/memmap/common.h \
 include/memmap/view.h
test/test.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/region.h:
include/memmap/common.h:
include/memmap/view.h:
