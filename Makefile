# memmap - GNU Makefile.
#
#   make               libmemmap.a, libmemmap.so, the memmap command, the tests
#   make run           the main job: memmap bench --quick (report in build/report)
#   make test          every test, each in its own process
#   make check-asan    the tests under AddressSanitizer (also check-ubsan)
#   make install       PREFIX=/usr/local DESTDIR= (headers, libraries, command,
#                      man pages, memmap.pc)

VERSION  := 0.1.0
SOMAJOR  := 0
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
BUILD    ?= build

CC       ?= cc
OPT      ?= -O2 -g
WARN     := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-missing-field-initializers
SAN      ?=
SANFLAGS := $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer \
              $(if $(filter undefined,$(SAN)),-fno-sanitize-recover=all) \
              $(if $(filter thread,$(SAN)),-Wno-tsan),)
# (-Wno-tsan: TSan does not model the ring's fences and says so; the ring's
# cross-process protocol is tested by the fork tests, not by TSan.)
CFLAGS   += $(OPT) $(WARN) $(SANFLAGS) -fPIC -pthread -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
            -fvisibility=hidden -Iinclude -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS  += $(SANFLAGS) -pthread
LDLIBS   += -lm

LIB_SRC   := $(wildcard src/*.c)
CLI_SRC   := $(wildcard cli/*.c) $(wildcard bench/*.c)
TEST_SRC  := $(wildcard test/*.c)
EX_SRC    := $(wildcard examples/*.c)

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)
EX_BIN    := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)

STATIC    := $(BUILD)/libmemmap.a
SHARED    := $(BUILD)/libmemmap.so.$(VERSION)
SONAME    := libmemmap.so.$(SOMAJOR)
MEMMAP    := $(BUILD)/memmap
RUNTESTS  := $(BUILD)/run-tests

.PHONY: all lib run test check check-asan check-ubsan check-tsan check-m32 \
        stress install uninstall clean

all: $(STATIC) $(SHARED) $(MEMMAP) $(RUNTESTS) $(EX_BIN)

lib: $(STATIC) $(SHARED)

$(BUILD)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DMM_BUILDING_LIBRARY -Isrc -c $< -o $@

$(BUILD)/cli/%.o $(BUILD)/bench/%.o: CFLAGS += -Icli -Ibench
$(BUILD)/cli/%.o: cli/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/bench/%.o: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Tests may reach the library's internal fault-injection hooks (src/sys.h).
$(BUILD)/test/%.o: test/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -Itest -DMM_TEST_BINDIR='"$(abspath $(BUILD))"' \
	  -DMM_TEST_SRCDIR='"$(abspath .)"' -DMM_TEST_SAN='"$(SAN)"' \
	  -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS) \
	  -o $@ $^ $(LDLIBS)
	ln -sf libmemmap.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libmemmap.so

$(MEMMAP): $(CLI_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC) $(LDLIBS)

$(RUNTESTS): $(TEST_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(STATIC) $(LDLIBS)

$(BUILD)/examples/%: examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(STATIC) $(LDFLAGS) $(LDLIBS)

# The main job: every suite, quick, with the report written to build/report.
run: $(MEMMAP)
	$(abspath $(MEMMAP)) bench --quick --report $(BUILD)/report

test: all
	./$(RUNTESTS)

check: test

# Sanitized builds are slower: give every test three times as long.
check-asan:
	MM_TEST_TIMEOUT_SCALE=3 $(MAKE) BUILD=build/asan SAN=address OPT="-O1 -g" test

check-ubsan:
	MM_TEST_TIMEOUT_SCALE=3 $(MAKE) BUILD=build/ubsan SAN=undefined OPT="-O1 -g" test

check-tsan:
	MM_TEST_TIMEOUT_SCALE=5 $(MAKE) BUILD=build/tsan SAN=thread OPT="-O1 -g" test

# The heap's crash torture at 1000 kills (make test runs 50).
stress: all
	MM_HEAP_TORTURE_KILLS=1000 ./$(BUILD)/run-tests heap_tx_torture

# A 32-bit build (needs gcc-multilib). The tests run when the kernel can
# execute 32-bit programs; a kernel without IA32 emulation only builds them.
check-m32:
	$(MAKE) BUILD=build/m32 EXTRA_CFLAGS="-m32 $(EXTRA_CFLAGS)" LDFLAGS=-m32 all
	@if ./build/m32/examples/linecount Makefile >/dev/null 2>&1; then \
	  MM_TEST_TIMEOUT_SCALE=2 ./build/m32/run-tests; \
	else \
	  echo "check-m32: built; this kernel cannot run 32-bit programs, tests not run"; \
	fi

$(BUILD)/memmap.pc: Makefile
	@mkdir -p $(dir $@)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: memmap' 'Description: memory mapping made safe, fast and measured' \
	  'Version: $(VERSION)' 'Libs: -L$${libdir} -lmemmap' \
	  'Libs.private: -pthread' 'Cflags: -I$${includedir}' > $@

install: $(STATIC) $(SHARED) $(MEMMAP) $(BUILD)/memmap.pc
	install -d $(DESTDIR)$(INCDIR)/memmap $(DESTDIR)$(LIBDIR)/pkgconfig \
	  $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 644 include/memmap.h $(DESTDIR)$(INCDIR)/
	install -m 644 include/memmap/*.h $(DESTDIR)$(INCDIR)/memmap/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libmemmap.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmemmap.so
	install -m 644 $(BUILD)/memmap.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 755 $(MEMMAP) $(DESTDIR)$(BINDIR)/
	install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/*.3 $(DESTDIR)$(MANDIR)/man3/

uninstall:
	rm -rf $(DESTDIR)$(INCDIR)/memmap $(DESTDIR)$(INCDIR)/memmap.h
	rm -f $(DESTDIR)$(LIBDIR)/libmemmap.* $(DESTDIR)$(LIBDIR)/pkgconfig/memmap.pc
	rm -f $(DESTDIR)$(BINDIR)/memmap
	cd man && for f in *.1; do rm -f $(DESTDIR)$(MANDIR)/man1/$$f; done
	cd man && for f in *.3; do rm -f $(DESTDIR)$(MANDIR)/man3/$$f; done

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

# ---- fuzzing (fuzz/) ----------------------------------------------------------
#   make fuzz          build $(BUILD)/fuzz/heap_fuzz (clang, libFuzzer, ASan and
#                      UBSan) and run it on fuzz/corpus/heap for FUZZ_TIME seconds;
#                      new inputs go to $(BUILD)/fuzz/new, crashes to
#                      $(BUILD)/fuzz/crash-*; FUZZ_FLAGS adds libFuzzer flags
#   make fuzz-corpus   run the corpus through the same harness in a plain build
#                      ($(CC), no libFuzzer); make test does it too (heap_cli test)
#   make fuzz-merge    add to fuzz/corpus/heap the inputs of $(BUILD)/fuzz/new that
#                      reach new code (keep the corpus small: under 200 files)
#   make fuzz-seeds    rewrite the seed inputs of fuzz/corpus/heap
#   Inputs that still crash the heap go to fuzz/crashes/heap, not the corpus.

FUZZ_TIME   ?= 60
FUZZ_CC     ?= clang
FUZZ_FLAGS  ?=
FUZZ_CORPUS := fuzz/corpus/heap
FUZZ_BIN    := $(BUILD)/fuzz/heap_fuzz
RUN_CORPUS  := $(BUILD)/fuzz/run-corpus

.PHONY: fuzz fuzz-build fuzz-corpus fuzz-merge fuzz-seeds

$(FUZZ_BIN): $(LIB_SRC) fuzz/heap_fuzz.c $(wildcard src/*.h include/*.h include/memmap/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -std=c11 -pthread -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -DMM_BUILDING_LIBRARY \
	  -Iinclude -Isrc $(LIB_SRC) fuzz/heap_fuzz.c -o $@ -lm

fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz/new
	$(abspath $(FUZZ_BIN)) -max_len=4096 -max_total_time=$(FUZZ_TIME) -timeout=20 \
	  -artifact_prefix=$(BUILD)/fuzz/ $(FUZZ_FLAGS) $(BUILD)/fuzz/new $(FUZZ_CORPUS)

$(BUILD)/fuzz/%.o: fuzz/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(RUN_CORPUS): $(BUILD)/fuzz/heap_fuzz.o $(BUILD)/fuzz/run_corpus.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-corpus: $(RUN_CORPUS)
	$(abspath $(RUN_CORPUS)) $(FUZZ_CORPUS)

fuzz-merge: $(FUZZ_BIN)
	$(abspath $(FUZZ_BIN)) -merge=1 -use_counters=0 -max_len=4096 -timeout=20 \
	  $(FUZZ_CORPUS) $(BUILD)/fuzz/new

fuzz-seeds:
	sh fuzz/seeds.sh $(FUZZ_CORPUS)

# make test runs the corpus too (test/test_heap_cli.c).
test: $(RUN_CORPUS)

-include $(BUILD)/fuzz/heap_fuzz.d $(BUILD)/fuzz/run_corpus.d
