# Build, test and run the DHT file store. `make help` lists the targets.

CARGO ?= cargo
BIN_DIR := bin
TOOLS := dhtnode dhtsend dhtrecv dhthash dhtping
EMBEDDED_TARGET := thumbv7m-none-eabi

.PHONY: help all test test-core lint embedded setup scene bench clean

help:
	@echo "make all       build the tools in release mode into $(BIN_DIR)/"
	@echo "make test      run every test (unit, simulator, lint, embedded build)"
	@echo "make lint      rustfmt, clippy and rustdoc checks"
	@echo "make embedded  build dht-core for $(EMBEDDED_TARGET)"
	@echo "make scene     deploy 256 nodes, round-trip a 2 MB file, stop them"
	@echo "make bench     measure the 256-node scene (JSON on stdout)"
	@echo "make clean     remove build output"

# Rust targets the project needs; rustup is the only installer used.
setup:
	rustup target add $(EMBEDDED_TARGET)
	rustup component add clippy rustfmt llvm-tools

all:
	$(CARGO) build --release -p dht-tools
	@mkdir -p $(BIN_DIR)
	@for t in $(TOOLS); do cp target/release/$$t $(BIN_DIR)/$$t; done
	@echo "built $(addprefix $(BIN_DIR)/,$(TOOLS))"

test: lint embedded test-core

test-core:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# Builds the core for a Cortex-M3 and checks that nothing in it calls an
# allocator (no rlib may reference __rust_alloc and friends).
embedded:
	$(CARGO) build -p dht-core --target $(EMBEDDED_TARGET) --release
	@nm=$$(find "$$(rustc --print sysroot)" -name llvm-nm -type f | head -n 1); \
	if [ -z "$$nm" ]; then echo "llvm-nm missing: run make setup"; exit 1; fi; \
	bad=$$(for f in target/$(EMBEDDED_TARGET)/release/deps/*.rlib; do \
	  "$$nm" -u "$$f" 2>/dev/null | grep -E '__rust_(alloc|dealloc|realloc|alloc_zeroed)$$' | sed "s|^|$$f: |"; \
	done); \
	if [ -n "$$bad" ]; then echo "allocator used in the embedded build:"; echo "$$bad"; exit 1; fi; \
	echo "dht-core for $(EMBEDDED_TARGET): no allocator referenced"

# Deploys the 256-node scene, uploads a random 2 MB file through one node,
# downloads it through another, compares, and stops the scene (also on
# failure).
scene: all
	./scripts/scene-roundtrip.sh

# Measures the 256-node scene with real processes; prints one JSON object.
bench: all
	$(CARGO) build --release -p dht-bench
	target/release/dht-bench

clean:
	$(CARGO) clean
	rm -f $(addprefix $(BIN_DIR)/,$(TOOLS))
