# push_redirect: the two commands an operator needs are `make run` and
# `make test`; both install what they use (Debian 12 or 13, as root).
#
#   make build       Rust core (release) + build/push_redirect.so
#   make run         Kamailio in the foreground with cfg-examples/push-redirect.cfg
#   make test        every test: Rust, C harness (valgrind, ASan/UBSan), end to end
#   make test-versions  the end-to-end tests against every other supported
#                    Kamailio (scripts/kamailio-versions)
#   make crash-loop  the crash and shutdown loop (hundreds of runs)
#   make install     build/push_redirect.so into Kamailio's module directory,
#                    and /var/lib/kamailio (the default store's folder)
#                    for the kamailio user (scripts/install-store-dir.sh)
#   make deb         a Debian package of the module for the installed
#                    Kamailio (build/deb/), and its lintian report
#   make header      regenerate include/push_redirect.h (commit it)
#   make fuzz        fuzz the parser, the engine and the C ABI (fuzz/README.md)
#   make clean

SHELL := /bin/bash
CARGO ?= cargo
KAMAILIO ?= kamailio
KAM_MODULES ?= /usr/lib/x86_64-linux-gnu/kamailio/modules
RUN_CFG ?= cfg-examples/push-redirect.cfg

.PHONY: all build core module run test test-rust test-c test-e2e test-versions e2e-valgrind crash-loop load-hostile install header clean fuzz deb

all: build

core:
	scripts/install-deps.sh build
	$(CARGO) build --release --locked

module: core
	scripts/build-module.sh

build: module

header:
	PR_WRITE_HEADER=1 $(CARGO) build --release --locked

run:
	scripts/install-deps.sh run
	$(MAKE) build
	mkdir -p var /run/kamailio
	@echo "push_redirect: Kamailio on udp:127.0.0.1:5060 (Ctrl-C stops it); store in var/;"
	@echo "  kamcmd (its default socket /run/kamailio/kamailio_ctl) reaches it."
	$(KAMAILIO) -DD -E -e -L "$(CURDIR)/build:$(KAM_MODULES)" -f $(RUN_CFG) \
		-A 'PR_STORE="$(CURDIR)/var/push_redirect.sqlite"'

install: build
	scripts/build-module.sh install

# scripts/build-deb.sh (README, "Debian package"); lintian's report
# follows, and an error of it fails the target
deb:
	scripts/install-deps.sh deb
	$(MAKE) build
	@deb=$$(scripts/build-deb.sh | tail -n 1) && \
		echo "push_redirect: package $$deb" && \
		echo "lintian --pedantic --display-info --show-overrides:" && \
		lintian --pedantic --display-info --show-overrides "$$deb"

test:
	scripts/install-deps.sh test
	$(MAKE) build
	$(MAKE) test-rust test-c test-e2e

test-rust:
	$(CARGO) test --release --locked

test-c: core
	$(MAKE) -C tests/c all-checks

# crash_loop_stock_udp is left out: it is the crash loop's control through
# stock Kamailio, whose own shutdown hangs now and then (README, "Crashes and
# shutdown"); make crash-loop CRASH_LOOP_ONLY=stock runs it
test-e2e: module
	$(CARGO) test --release --locked --test e2e -- --ignored --test-threads=1 --nocapture \
		--skip crash_loop_stock

# The end-to-end suite against every Kamailio of scripts/kamailio-versions
# but the installed one: Debian packages of another release in a
# debootstrapped root, source-built ones under .cache/ (README, "Supported
# Kamailio versions"). TEST_VERSIONS="6.0 6.1" picks some.
test-versions:
	scripts/install-deps.sh build
	scripts/test-versions.sh

# The push_redirect end-to-end cases with every Kamailio process under
# valgrind memcheck; prints what it says, and fails on any error with a
# frame in the module. Not part of `make test` (slow).
VG_DIR ?= /tmp/push_redirect-valgrind
e2e-valgrind:
	scripts/install-deps.sh test
	$(MAKE) build
	rm -rf $(VG_DIR)
	-VG_DIR=$(VG_DIR) KAMAILIO=$(CURDIR)/scripts/kamailio-valgrind.sh E2E_READY_SECS=60 E2E_STOP_SECS=30 E2E_SLOW=5 \
		$(CARGO) test --release --locked --test e2e -- --ignored --test-threads=1 \
		push_f hostile_ store_f6_301 2>&1 | grep -E '^test |test result'
	scripts/valgrind-summary.sh $(VG_DIR)

# The crash and shutdown loop (scripts/crash-loop.sh; README "Crashes and
# shutdown"): CRASH_LOOP_RUNS per transport (500), CRASH_LOOP_PAR at once,
# CRASH_LOOP_VALGRIND=1; not in `make test`, which runs each variant once.
crash-loop:
	scripts/install-deps.sh test
	$(MAKE) build
	scripts/crash-loop.sh

# Steady load against hostile terminals (not part of `make test`):
# LOAD_RATE requests/s (default 300) for LOAD_SECONDS (default 60).
load-hostile:
	scripts/install-deps.sh run
	$(MAKE) build
	scripts/load-hostile.sh

# Each target in turn for FUZZ_SECONDS; installs cargo-fuzz (and a C++
# compiler) if missing; crashes become tests/data/fuzz/<target>/open-*.
FUZZ_SECONDS ?= 600
FUZZ_JOBS ?= 1
FUZZ_TARGETS ?= reply_parser engine c_abi
fuzz:
	FUZZ_SECONDS="$(FUZZ_SECONDS)" FUZZ_JOBS="$(FUZZ_JOBS)" FUZZ_TARGETS="$(FUZZ_TARGETS)" \
		CARGO="$(CARGO)" bash fuzz/run.sh

clean:
	$(CARGO) clean
	rm -rf build var
	$(MAKE) -C tests/c clean 2>/dev/null || true

# Benchmarks (bench/README.md). `make bench`: Kamailio + sipp, push_redirect
# against stock uac_redirect (BENCH_RATE, BENCH_COUNT, BENCH_REPS, BENCH_QUICK=1
# for a smoke run); results in bench/results/. `make bench-core`: the Rust
# core's criterion benchmarks and their medians.
PYTHON3 ?= /usr/bin/python3

.PHONY: bench bench-core bench-instr

bench:
	scripts/install-deps.sh run
	bench/install-deps.sh
	$(MAKE) build
	@start=$$(date +%s); rc=0; $(PYTHON3) bench/bench.py || rc=$$?; \
		echo "make bench: $$(( $$(date +%s) - start )) s (bench.py)"; exit $$rc

# Instructions per MESSAGE of each configuration under callgrind (the
# deterministic complement of `make bench`'s CPU seconds; ~3 min).
bench-instr:
	scripts/install-deps.sh test
	bench/install-deps.sh
	$(MAKE) build
	$(PYTHON3) bench/instr.py

bench-core:
	scripts/install-deps.sh build
	bench/install-deps.sh core
	PYTHON3=$(PYTHON3) CARGO=$(CARGO) bench/core.sh
