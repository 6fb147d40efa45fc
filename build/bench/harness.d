build/bench/harness.o: bench/harness.c bench/bench.h
bench/bench.h:
