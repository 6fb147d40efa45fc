build/bench/files.o: bench/files.c bench/bench.h cli/cli.h \
 include/memmap.h include/memmap/common.h include/memmap/region.h \
 include/memmap/common.h include/memmap/view.h
bench/bench.h:
cli/cli.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/region.h:
include/memmap/common.h:
include/memmap/view.h:
