build/cli/cmd_bench.o: cli/cmd_bench.c bench/bench.h cli/cli.h \
 include/memmap.h include/memmap/common.h include/memmap/view.h \
 include/memmap/common.h
bench/bench.h:
cli/cli.h:
include/memmap.h:
include/memmap/common.h:
include/memmap/view.h:
include/memmap/common.h:
