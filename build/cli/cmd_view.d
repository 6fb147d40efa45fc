build/cli/cmd_view.o: cli/cmd_view.c cli/cli.h include/memmap.h \
 include/memmap/common.h include/memmap/view.h include/memmap/common.h
cli/cli.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/view.h:
include/memmap/common.h:
