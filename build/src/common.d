build/src/common.o: src/common.c src/internal.h include/memmap/common.h \
 src/sys.h
src/internal.h:
include/memmap/common.h:
src/sys.h:
