# Build, test and run the DHT file store. `make help` lists the targets.

CARGO ?= cargo
BIN_DIR := bin
TOOLS := dhtnode dhtsend dhtrecv dhthash dhtping
EMBEDDED_TARGET := thumbv7m-none-eabi
BOARD_TARGET := thumbv7em-none-eabihf
FIRMWARE := firmware/qemu-mps2-an385
FIRMWARE_ELF := $(FIRMWARE)/target/$(EMBEDDED_TARGET)/release/dht-fw-mps2-an385
BOARD := firmware/stm32f411-enc28j60

.PHONY: help all test test-core lint embedded setup setup-qemu scene bench clean \
	firmware firmware-build firmware-test board fuzz-seeds test-lossy test-cold-start bench-loss \
	bench-durability bench-crash

help:
	@echo "make all       build the tools in release mode into $(BIN_DIR)/"
	@echo "make test      run every test (lint, embedded build, unit, simulator, processes,"
	@echo "               fuzz seeds, firmware in QEMU, 20 % loss across namespaces)"
	@echo "make lint      rustfmt, clippy and rustdoc checks"
	@echo "make embedded  build dht-core for $(EMBEDDED_TARGET)"
	@echo "make firmware  build the MPS2-AN385 firmware, print its flash and RAM use,"
	@echo "               run it in QEMU among host nodes and print its stack high-water"
	@echo "make firmware-test  only the QEMU test (part of make test)"
	@echo "make board     build the STM32F411 + ENC28J60 board example"
	@echo "make scene     deploy 256 nodes, round-trip a 2 MB file, stop them"
	@echo "make bench     measure the 256-node scene (JSON on stdout), then bench-loss"
	@echo "make bench-loss  2 MB round trips across namespaces at 0/5/20/30 % loss"
	@echo "make bench-durability  files surviving a crash of 30/50/60 % of the nodes (model)"
	@echo "make bench-crash  half of 256 nodes killed: which files come back (real processes)"
	@echo "make fuzz      run every fuzz target (FUZZ_SECONDS each, default 40)"
	@echo "make clean     remove build output"

# Rust targets the project needs (rustup), and QEMU for the firmware test
# (apt-get, as root or through sudo, only if qemu-system-arm is missing).
setup: setup-qemu
	rustup target add $(EMBEDDED_TARGET) $(BOARD_TARGET)
	rustup component add clippy rustfmt llvm-tools

setup-qemu:
	@if command -v qemu-system-arm >/dev/null; then \
	  echo "qemu-system-arm: $$(qemu-system-arm --version | head -n 1)"; \
	else \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm >/dev/null \
	    && qemu-system-arm --version | head -n 1; \
	fi

all:
	$(CARGO) build --release -p dht-tools
	@mkdir -p $(BIN_DIR)
	@# Copied beside and renamed into place: a tool that is running (a
	@# scene's nodes) is replaced rather than refused as "text file busy".
	@set -e; for t in $(TOOLS); do \
	    cp target/release/$$t $(BIN_DIR)/.$$t.new; mv -f $(BIN_DIR)/.$$t.new $(BIN_DIR)/$$t; \
	done
	@echo "built $(addprefix $(BIN_DIR)/,$(TOOLS))"

# `setup` first: on a fresh machine `make test` alone installs what it needs
# (rustup targets and components, QEMU); on a set-up one it only checks.
test: setup
	$(MAKE) lint embedded test-core fuzz-seeds board firmware-test test-lossy test-cold-start

# The fuzz targets' committed seeds, replayed through their checks (quick;
# `make fuzz` is the fuzzing itself).
fuzz-seeds:
	$(CARGO) test --manifest-path fuzz/Cargo.toml

# A 2 MB round trip across 24 network namespaces behind a switch that loses
# 20 % of the frames (5 ms +- 2 ms delay, 10 % reordered, 5 % duplicated).
# Needs root for the namespaces: without it the test says so and is skipped.
LOSSY_DEADLINE ?= 400
test-lossy: all
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "test-lossy: skipped, network namespaces need root"; \
	else \
	  LOSS=0.2 TRIPS=1 DEADLINE=$(LOSSY_DEADLINE) ./test_scene/netlab/lossy_roundtrip.sh; \
	fi

# 16 nodes started at once in 16 namespaces and a 1 MB upload as soon as
# the last one started: the upload succeeds (waiting for empty shards to
# be filled if needed, and saying so), the download is identical, and no
# node moves back to a shard it left. Needs root, like test-lossy.
test-cold-start: all
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "test-cold-start: skipped, network namespaces need root"; \
	else \
	  ./test_scene/netlab/cold_start.sh; \
	fi

test-core:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The core alone, as a microcontroller builds it (without `listing`).
	$(CARGO) clippy -p dht-core --lib -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
	cd $(FIRMWARE) && $(CARGO) fmt -- --check && $(CARGO) clippy --release -- -D warnings
	cd $(BOARD) && $(CARGO) fmt -- --check && $(CARGO) clippy --release -- -D warnings

# Builds the core for a Cortex-M3 and checks that nothing in it calls an
# allocator (no rlib may reference __rust_alloc and friends).
embedded:
	$(CARGO) build -p dht-core --target $(EMBEDDED_TARGET) --release
	$(CARGO) build -p dht-core --target $(EMBEDDED_TARGET) --release --features listing
	@nm=$$(find "$$(rustc --print sysroot)" -name llvm-nm -type f | head -n 1); \
	if [ -z "$$nm" ]; then echo "llvm-nm missing: run make setup"; exit 1; fi; \
	bad=$$(for f in target/$(EMBEDDED_TARGET)/release/deps/*.rlib; do \
	  "$$nm" -u "$$f" 2>/dev/null | grep -E '__rust_(alloc|dealloc|realloc|alloc_zeroed)$$' | sed "s|^|$$f: |"; \
	done); \
	if [ -n "$$bad" ]; then echo "allocator used in the embedded build:"; echo "$$bad"; exit 1; fi; \
	echo "dht-core for $(EMBEDDED_TARGET): no allocator referenced"

# The MPS2-AN385 firmware (its own workspace, built for the Cortex-M3).
# Panic locations put source paths in flash, so the machine's own paths
# (this checkout, cargo's registry) are remapped to short fixed ones: the
# firmware is the same size wherever it is built. RUSTFLAGS replaces the
# config's rustflags, hence the linker script again.
firmware-build:
	cd $(FIRMWARE) && $(CARGO) fetch --quiet && \
	reg="$${CARGO_HOME:-$$HOME/.cargo}/registry/src"; \
	flags="-C link-arg=-Tlink.x --remap-path-prefix=$(CURDIR)=/dht"; \
	for d in "$$reg"/*/; do [ -d "$$d" ] && flags="$$flags --remap-path-prefix=$${d%/}=/crates"; done; \
	RUSTFLAGS="$$flags" $(CARGO) build --release

# Flash and RAM from the ELF, then the QEMU run that measures the stack.
firmware: all firmware-build
	@size=$$(find "$$(rustc --print sysroot)" -name llvm-size -type f | head -n 1); \
	"$$size" -A $(FIRMWARE_ELF) | awk '\
	  $$1 == ".vector_table" || $$1 == ".text" || $$1 == ".rodata" { flash += $$2 } \
	  $$1 == ".data" { data = $$2; flash += $$2 } $$1 == ".bss" { bss = $$2 } \
	  $$1 ~ /^\.(vector_table|text|rodata|data|bss)$$/ { printf "%-14s %7d bytes\n", $$1, $$2 } \
	  END { printf "flash (vectors+text+rodata+data): %d bytes (%.1f KiB)\n", flash, flash / 1024; \
	        printf "static RAM (data+bss): %d bytes (%.1f KiB)\n", data + bss, (data + bss) / 1024 }'
	./scripts/firmware-test.sh
	@cat target/firmware/report.txt

firmware-test: all firmware-build
	./scripts/firmware-test.sh

# The ENC28J60 board example builds for its target (it needs the hardware
# to run; see its README).
board:
	cd $(BOARD) && $(CARGO) build --release

# Deploys the 256-node scene, uploads a random 2 MB file through one node,
# downloads it through another, compares, and stops the scene (also on
# failure).
scene: all
	./scripts/scene-roundtrip.sh

# Measures the 256-node scene with real processes; prints one JSON object.
bench: all
	$(CARGO) build --release -p dht-bench
	target/release/dht-bench
	$(MAKE) bench-loss
	$(MAKE) bench-durability
	$(MAKE) bench-crash

# Five files plain and coded on the 256-node scene, half the nodes killed
# at once: which files come back, in how long, and what repair moved.
bench-crash: all
	./scripts/bench-crash.sh

# Share of 2 MB and 20 MB files that survive a simultaneous crash of 30, 50
# and 60 % of 64, 256 and 1,024 nodes: whole copies against erasure-coded
# designs (a placement model over DURABILITY_TRIALS seeded trials a cell).
DURABILITY_TRIALS ?= 1000
bench-durability:
	$(CARGO) run --release -q -p dht-sim --example durability -- $(DURABILITY_TRIALS)

# Upload and download times of a 2 MB file across 24 namespaces at 0, 5, 20
# and 30 % frame loss (medians of BENCH_LOSS_TRIPS round trips; needs root).
BENCH_LOSS_TRIPS ?= 3
bench-loss: all
	@if [ "$$(id -u)" != 0 ]; then echo "bench-loss: skipped, network namespaces need root"; exit 0; fi; \
	for loss in 0 0.05 0.2 0.3; do \
	  LOSS=$$loss TRIPS=$(BENCH_LOSS_TRIPS) DEADLINE=900 ./test_scene/netlab/lossy_roundtrip.sh | grep '^loss' \
	    || { echo "bench-loss: the round trips at loss $$loss failed"; exit 1; }; \
	done

clean:
	$(CARGO) clean
	cd $(FIRMWARE) && $(CARGO) clean
	cd $(BOARD) && $(CARGO) clean
	rm -f $(addprefix $(BIN_DIR)/,$(TOOLS))

# Fuzzing with cargo-fuzz (libFuzzer); fuzz/ is its own workspace (see
# fuzz/README.md). Runs every target for FUZZ_SECONDS from its committed
# seeds in fuzz/corpus/<target>; what the fuzzer finds goes to a scratch
# directory (removed afterwards), so the committed corpus stays as it is.
# Prints executions and libFuzzer's coverage (cov: edges, ft: features)
# per target, then the dht-core line coverage of the seeds plus what was
# found (llvm-cov; FUZZ_COVERAGE=0 skips it). A crash's input is kept in
# fuzz/artifacts/<target>/ and printed in hex; the run goes on with the
# other targets and fails at the end.
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take cargo-fuzz's -Z flags.
# No sanitizer by default: dht-core forbids unsafe code, so AddressSanitizer
# only watches the dependencies, and it runs 3 to 9 times fewer executions
# (FUZZ_SANITIZER=address turns it on; each sanitizer has its own build
# directory). Panics, overflow checks and debug assertions are on either way.
FUZZ_SECONDS ?= 40
FUZZ_TARGETS ?= decode index node client
FUZZ_SANITIZER ?= none
FUZZ_COVERAGE ?= 1
FUZZ_FLAGS = --sanitizer $(FUZZ_SANITIZER) --target-dir fuzz/target/$(FUZZ_SANITIZER)

.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build $(FUZZ_FLAGS)
	@work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p "$$work/$$t"; \
	  echo "fuzz $$t: $(FUZZ_SECONDS) s from fuzz/corpus/$$t"; \
	  if RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_FLAGS) $$t "$$work/$$t" fuzz/corpus/$$t -- \
	      -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 >"$$work/$$t.log" 2>&1; \
	  then \
	    execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' "$$work/$$t.log"); \
	    done_line=$$(grep -E '^#[0-9]+[[:space:]]+DONE' "$$work/$$t.log" | tail -n 1 \
	      | sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//'); \
	    echo "  $$execs executions; $$done_line"; \
	  else \
	    failed="$$failed $$t"; \
	    echo "  CRASH in $$t:"; \
	    why=$$(awk '/panicked at/ { p = 1 } p && /^(stack backtrace|note:|==[0-9]+==)/ { p = 0 } \
	      p || /ERROR: libFuzzer|^SUMMARY|ALARM:/ { print "    " $$0 }' "$$work/$$t.log" | head -n 20); \
	    if [ -n "$$why" ]; then echo "$$why"; else tail -n 15 "$$work/$$t.log" | sed 's/^/    /'; fi; \
	    crash=$$(sed -n 's/.*Test unit written to \(.*\)$$/\1/p' "$$work/$$t.log" | tail -n 1); \
	    if [ -n "$$crash" ]; then \
	      echo "    input $$crash ($$(wc -c <"$$crash") bytes):"; \
	      od -An -v -tx1 "$$crash" | tr -d ' \n' | fold -w 96 | sed 's/^/      /'; echo; \
	    fi; \
	  fi; \
	done; \
	if [ "$(FUZZ_COVERAGE)" = 1 ]; then \
	  cov=$$(find "$$(rustc --print sysroot)" -name llvm-cov -type f | head -n 1); \
	  if [ -z "$$cov" ]; then echo "llvm-cov missing: run make setup (llvm-tools)"; exit 1; fi; \
	  for t in $(FUZZ_TARGETS); do \
	    echo "dht-core lines covered by $$t (seeds and new inputs):"; \
	    RUSTC_BOOTSTRAP=1 $(CARGO) fuzz coverage --target-dir fuzz/target/coverage $$t \
	      "$$work/$$t" fuzz/corpus/$$t >"$$work/$$t.cov.log" 2>&1 \
	      || { echo "  cargo fuzz coverage failed:"; tail -n 5 "$$work/$$t.cov.log"; continue; }; \
	    "$$cov" report fuzz/target/coverage/$$(rustc -vV | sed -n 's/^host: //p')/release/$$t \
	      -instr-profile=fuzz/coverage/$$t/coverage.profdata -show-region-summary=false \
	      -show-branch-summary=false -show-instantiation-summary=false \
	      "$$(pwd)/crates/dht-core/src" \
	      | awk 'NR > 2 && NF >= 7 && $$5 != $$6 { printf "  %-28s %5d of %5d lines %8s\n", $$1, $$5 - $$6, $$5, $$7 }'; \
	  done; \
	fi; \
	if [ -n "$$failed" ]; then echo "fuzz: crash in$$failed"; exit 1; fi
