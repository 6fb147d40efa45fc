build/bench/files.o: bench/files.c bench/bench.h cli/cli.h \
 include/memmap.h include/memmap/common.h include/memmap/view.h \
 include/memmap/common.h
bench/bench.h:
cli/cli.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/view.h:
include/memmap/common.h:
