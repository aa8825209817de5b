# Tally: the two commands a user needs are `make cluster` and `make test`.
# Everything else here is for developers.

BUILD_DIR ?= build
JOBS ?= 2
# ccache with paths taken relative to the checkout, so that another clone
# (CI's) reuses what this one compiled.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
CMAKE_FLAGS ?=
# Warnings in our code are errors, in CI and locally alike (one setting, so
# that switching between `make build` and `make test` rebuilds nothing).
# `make build WERROR=OFF` to only warn.
WERROR ?= ON

.PHONY: all deps configure build test test-tls fuzz install cluster cluster-stop sim tsan jepsen bench microbench format lint clean

all: build

deps:
	@TALLY_DEPS_QUIET=1 scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DTALLY_WERROR=$(WERROR) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Every test suite: unit and interaction tests, the simulator over 300 seeds,
# and the dependency check on the raft core; then every fuzz target for
# FUZZ_SMOKE_SECONDS under libFuzzer (clang, in build-fuzz).
FUZZ_SMOKE_SECONDS ?= 20
test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900
	@JOBS=$(JOBS) scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS)

# Every fuzz target under libFuzzer for FUZZ_SECONDS each (default 10
# minutes, two at a time); the corpus grows in build-fuzz/corpus. A crash's
# input lands in fuzz/regressions/<target>/ (docs/security.md).
FUZZ_SECONDS ?= 600
fuzz: deps
	@JOBS=$(JOBS) scripts/fuzz.sh $(FUZZ_SECONDS)

# libtally.so, its headers (include/tally/), a CMake package (find_package(
# Tally)) and a pkg-config file, under PREFIX.
PREFIX ?= /usr/local
install: build
	@cmake --install $(BUILD_DIR) --prefix $(PREFIX)

# The integration tests, kvctl's test and the jepsen smoke set with TLS on
# every port (scripts/test-tls.sh; about 14 minutes).
test-tls: build
	@JOBS=$(JOBS) scripts/test-tls.sh

# Three kvd nodes on 127.0.0.1 in the background (data in .tally-cluster);
# `make cluster-stop` stops them.
# TLS=1: every port with TLS, certificates made in .tally-cluster/certs.
TLS ?= 0
cluster: build
	@TALLY_TLS=$(TLS) deploy/local-cluster.sh start

cluster-stop:
	@deploy/local-cluster.sh stop

sim: build
	@$(BUILD_DIR)/bin/raft_sim --seeds 1..300 --steps 2000
	@$(BUILD_DIR)/bin/host_sim --seeds 1..2000

# ThreadSanitizer build and run of the threaded code's tests (in build-tsan;
# about 15 minutes the first time, with abseil built instrumented).
tsan: deps
	@scripts/tsan.sh

# Fault-injection runs against real kvd processes (jepsen/README.md): every
# nemesis with every workload, JEPSEN_DURATION seconds each (default 60).
# JEPSEN_SEED=<n> reproduces a run's plan; JEPSEN_ARGS passes pytest options
# (JEPSEN_ARGS='-k partition' for a subset). Run folders: build/jepsen/.
JEPSEN_DURATION ?= 60
jepsen: build
	@TALLY_BUILD_DIR=$(abspath $(BUILD_DIR)) TALLY_JEPSEN_DURATION=$(JEPSEN_DURATION) \
	  $(if $(JEPSEN_SEED),TALLY_JEPSEN_SEED=$(JEPSEN_SEED)) \
	  /usr/bin/python3 -m pytest -p no:cacheprovider jepsen/tests $(JEPSEN_ARGS)

# Tally next to etcd 3.4 on this machine (docs/performance.md): about 15
# minutes; prints a Markdown table and a summary line.
bench: build
	@bench/compare-etcd.sh

# Google Benchmark micro-benchmarks of the write path.
microbench: build
	@$(BUILD_DIR)/bin/microbench

SOURCES = $(shell git ls-files '*.cc' '*.h')

format:
	@clang-format -i $(SOURCES)

# clang-format check on every file; clang-tidy (about 15 s a file) only on the
# .cc files changed since LINT_BASE (default: the previous commit), including
# uncommitted changes.
LINT_BASE ?= $(shell git rev-parse -q --verify HEAD~1 || git hash-object -t tree /dev/null)

lint: configure
	@clang-format --dry-run --Werror $(SOURCES)
	@changed=$$(git diff --name-only --diff-filter=AM $(LINT_BASE) -- '*.cc'); \
	if [ -n "$$changed" ]; then echo "clang-tidy: $$changed"; clang-tidy -p $(BUILD_DIR) --quiet $$changed; fi

clean:
	rm -rf $(BUILD_DIR)
