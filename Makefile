# Makefile: a thin wrapper over CMake, so the everyday commands are short.
# CMakeLists.txt is the build; this file only names the build directories and
# the flags each flavour needs.
#
#   make              Release build in build/release (the default)
#   make debug        Debug build in build/debug
#   make test         Debug + ASan/UBSan build in build/asan, then ctest
#   make test-release ctest against build/release
#   make lint         clang-format check, clang-tidy, cppcheck (scripts/lint.sh)
#   make coverage     gcov build in build/coverage + gcovr report (scripts/coverage.sh)
#   make run          coordinator + 3 nodes + gateway on loopback (scripts/run-local.sh)
#   make stress       kv-stress: 100,000 checked sets on :8080 (tools/stress/stress.sh)
#   make bench        kvstore vs redis+webdis vs bare MHD with wrk (tools/bench/bench.sh)
#   make bench-mem    bytes per key vs redis at 10M keys, and 10M-key behaviour (tools/bench/mem.sh)
#   make partition-test  it_partition under ASan: partitions, kills, porcupine (root; scripts/partition-test.sh)
#   make format       clang-format -i every project .c/.h
#   make clean        remove build/

MAKEFLAGS   += --no-print-directory
NPROC       := $(shell nproc 2>/dev/null || echo 2)
CMAKE       ?= cmake
CTEST       ?= ctest
CMAKE_ARGS  ?=
CTEST_ARGS  ?=
CTEST_JOBS  ?= $(NPROC)

SRC_DIRS    := common proto node coordinator gateway tests tools
RELEASE_DIR := build/release
DEBUG_DIR   := build/debug
ASAN_DIR    := build/asan

# Sanitizer runtime options for `make test`: fail loudly on the first error,
# with a stack trace. A leak suppression file is used once tests/ ships one.
LSAN_SUPP   := $(wildcard $(CURDIR)/tests/lsan.supp)
ASAN_ENV    := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1 \
               UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
               $(if $(LSAN_SUPP),LSAN_OPTIONS=suppressions=$(LSAN_SUPP):print_suppressions=0)

.PHONY: all release debug asan test test-release lint coverage run format clean stress bench bench-mem \
        partition-test

all: release

release:
	$(CMAKE) -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	$(CMAKE) --build $(RELEASE_DIR) -j $(NPROC)

debug:
	$(CMAKE) -S . -B $(DEBUG_DIR) -DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS)
	$(CMAKE) --build $(DEBUG_DIR) -j $(NPROC)

asan:
	$(CMAKE) -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DKV_SANITIZE=ON $(CMAKE_ARGS)
	$(CMAKE) --build $(ASAN_DIR) -j $(NPROC)

test: asan
	cd $(ASAN_DIR) && $(ASAN_ENV) $(CTEST) --output-on-failure -j $(CTEST_JOBS) $(CTEST_ARGS)

test-release: release
	cd $(RELEASE_DIR) && $(CTEST) --output-on-failure -j $(CTEST_JOBS) $(CTEST_ARGS)

lint:
	scripts/lint.sh

coverage:
	scripts/coverage.sh

run: release
	KV_BUILD_DIR=$(RELEASE_DIR) scripts/run-local.sh

# kv-stress against the cluster on :8080, started (and stopped) if none answers.
stress: release
	KV_BUILD_DIR=$(RELEASE_DIR) tools/stress/stress.sh $(STRESS_ARGS)

# kvstore against redis+webdis and bare libmicrohttpd, wrk, medians (tools/bench).
bench: release
	KV_BENCH_BUILD_DIR=$(RELEASE_DIR) tools/bench/bench.sh

# Memory per key against redis with 10M keys loaded, then /get, /getKeys and a
# fourth node joining with those keys in place (tools/bench/mem.sh).
bench-mem: release
	KV_MEM_BUILD_DIR=$(RELEASE_DIR) tools/bench/mem.sh

# Linearizability under network partitions (tests/it_partition.c): root
# only, KV_PARTITION_SECONDS per scenario (default 60), PARTITION_ARGS for
# criterion (--filter 'partition/NAME').
partition-test: asan
	KV_BUILD_DIR=$(ASAN_DIR) $(ASAN_ENV) scripts/partition-test.sh $(PARTITION_ARGS)

format:
	@files=$$(find $(wildcard $(SRC_DIRS)) -type f -name '*.[ch]' 2>/dev/null); \
	if [ -n "$$files" ]; then clang-format -i $$files && echo "formatted $$(echo $$files | wc -w) files"; \
	else echo "no .c/.h files to format"; fi

clean:
	rm -rf build
