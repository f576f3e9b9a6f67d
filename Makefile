# tidegate — the two commands a newcomer needs:
#   make demo   install what is missing, build, run the gateway in front of local model servers
#   make test   install what is missing, build, run every test (unit + integration) via ctest
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo bench bench-sim bench-async format clean asan tsan fuzz fuzz-deep chaos

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

tests/node_modules/.package-lock.json: tests/package-lock.json
	cd tests && npm ci --no-audit --no-fund --loglevel=error

# The unit tests also run under ASan+UBSan and TSan first (SANITIZERS=0 skips them); ctest runs
# last so its summary line closes the output. Serially: several suites run real servers, and
# timing-sensitive tests should not compete with an emulator booting next to them.
SANITIZERS ?= 1
test: build tests/node_modules/.package-lock.json
ifeq ($(SANITIZERS),1)
	@$(MAKE) --no-print-directory asan tsan
endif
	cd $(BUILD) && ctest --output-on-failure

demo: build
	@scripts/demo.sh

bench:
	@scripts/install-deps.sh --bench
	@$(MAKE) --no-print-directory build
	@bench/proxy_bench.sh

bench-sim: build
	@bench/sim_bench.sh

# The async processor's own overhead (queue → processor → gateway → zero-latency sims → queue).
bench-async:
	@scripts/install-deps.sh --bench
	@$(MAKE) --no-print-directory build
	@bench/async_bench.sh

# Unit tests under sanitizers (separate build trees). Unity batches of 16 sources: the same code,
# compiled in about a fifth less CPU time on two cores (Debug unit_tests: 468 s non-unity, ~390 s
# unity with the ext_proc module on top).
UNITY = -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16
asan:
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTIDEGATE_SANITIZE=address,undefined -DTIDEGATE_BENCH=OFF $(UNITY) >/dev/null
	cmake --build build-asan -j $(JOBS) --target unit_tests
	UBSAN_OPTIONS=halt_on_error=1 build-asan/unit_tests --gtest_brief=1

tsan:
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTIDEGATE_SANITIZE=thread -DTIDEGATE_BENCH=OFF $(UNITY) >/dev/null
	cmake --build build-tsan -j $(JOBS) --target unit_tests
	TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" build-tsan/unit_tests --gtest_brief=1

# Fuzzers (clang + libFuzzer): builds build-fuzz/*_fuzz and runs each for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DTIDEGATE_FUZZ=ON -DTIDEGATE_TESTS=OFF -DTIDEGATE_BENCH=OFF
	cmake --build build-fuzz -j $(JOBS)
	for f in build-fuzz/*_fuzz; do n=$$(basename $$f _fuzz); mkdir -p fuzz/corpus/$$n; \
	  $$f -max_total_time=$(FUZZ_SECONDS) fuzz/corpus/$$n || exit 1; done

# The chaos run (tests/chaos/chaos.mjs): faults under real-time and async traffic; make test runs
# the --short version.
chaos: build
	node tests/chaos/chaos.mjs --report build/chaos-report.json

# Fuzzing at depth: every target for FUZZ_RUNS executions (new inputs go to build-fuzz/corpus/,
# the committed corpus is read as seeds); the last line of each run is its record.
FUZZ_RUNS ?= 10000000
FUZZ_TARGETS = $(patsubst fuzz/%.cc,%,$(wildcard fuzz/*_fuzz.cc))
fuzz-deep:
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DTIDEGATE_FUZZ=ON -DTIDEGATE_TESTS=OFF -DTIDEGATE_BENCH=OFF
	cmake --build build-fuzz -j $(JOBS) --target $(FUZZ_TARGETS)
	for f in build-fuzz/*_fuzz; do n=$$(basename $$f _fuzz); mkdir -p build-fuzz/corpus/$$n; \
	  $$f -runs=$(FUZZ_RUNS) -print_final_stats=1 build-fuzz/corpus/$$n fuzz/corpus/$$n 2>&1 | \
	  grep -E 'Done|stat::number_of_executed_units|stat::average_exec_per_sec|ERROR|SUMMARY' | \
	  sed "s/^/$$n: /" || exit 1; done

format:
	find src tests/unit bench -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) build-asan build-tsan

# The seed scenario (issue 6): real-time + async on one simulated pool, and the scheduling
# comparison; writes reports/seed/report.{json,html} and prints the table (~12 min).
.PHONY: bench-seed
bench-seed: build
	$(BUILD)/tidegate bench --scenario scenarios/seed.yaml --report reports/seed
