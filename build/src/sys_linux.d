build/src/sys_linux.o: src/sys_linux.c src/internal.h \
 include/memmap/common.h src/sys.h
src/internal.h:
include/memmap/common.h:
src/sys.h:
