build/cli/main.o: cli/main.c cli/cli.h include/memmap.h \
 include/memmap/common.h include/memmap/region.h include/memmap/common.h \
 include/memmap/view.h
cli/cli.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/region.h:
include/memmap/common.h:
include/memmap/view.h:
