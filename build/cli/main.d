build/cli/main.o: cli/main.c cli/cli.h include/memmap.h \
 include/memmap/common.h include/memmap/view.h include/memmap/common.h
cli/cli.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/view.h:
include/memmap/common.h:
