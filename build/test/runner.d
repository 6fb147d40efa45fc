build/test/runner.o: test/runner.c test/test.h include/memmap.h \
 include/memmap/common.h include/memmap/view.h include/memmap/common.h
test/test.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/view.h:
include/memmap/common.h:
