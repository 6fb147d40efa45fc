build/src/view.o: src/view.c src/internal.h include/memmap/common.h \
 src/sys.h include/memmap/view.h include/memmap/common.h
src/internal.h:
include/memmap/common.h:
src/sys.h:
include/memmap/view.h:
include/memmap/common.h:
