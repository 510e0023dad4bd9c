# Rust CNI plugins: bridge, host-local, portmap (+ cnitool).
#
#   make build     debug build of the whole workspace
#   make release   static release binaries (run on any x86_64 Linux node)
#   make test      every test: unit, namespace, end-to-end (needs root)
#   make lint      rustfmt check and clippy with warnings as errors
#   make install   install the plugins to $(DESTDIR)$(CNIBINDIR) (default /opt/cni/bin)
#   make demo      attach two containers in private namespaces and show it working
#   make e2e       only the end-to-end tests (real runtimes, conf-examples)
#   make bench     side-by-side benchmark against the reference Go plugins
#   make churn     long ADD/CHECK/DEL churn with kills on both backends (CHURN_WORKERS, CHURN_ROUNDS)
#   make fuzz      run each libFuzzer target for FUZZ_SECONDS (needs cargo-fuzz)
#   make hot-text  regenerate scripts/hot-text.ld, the release link order (needs root)

CARGO       ?= cargo
LOCKED      := $(if $(CI),--locked,)
TARGET      ?= x86_64-unknown-linux-gnu
PREFIX      ?= /opt/cni
CNIBINDIR   ?= $(PREFIX)/bin
DESTDIR     ?=
PLUGINS     := bridge host-local portmap
RELEASE_DIR := target/$(TARGET)/release
# Static linking: the plugins are copied onto nodes of any distribution.
# Passed only with an explicit --target so build scripts and proc macros
# stay dynamically linked. relocation-model=static: a plain static executable, not
# static-pie, so nothing is relocated (and no page dirtied for it) at start-up.
# hot-text.ld links the code a plugin run executes first, contiguously, so that a
# run maps few pages of the binary (`make hot-text` regenerates it; README, Install).
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=static \
	-C link-arg=-Wl,-T,$(CURDIR)/scripts/hot-text.ld

.PHONY: all build release test test-unit lint install uninstall demo e2e bench churn fuzz hot-text clean

all: build

build:
	$(CARGO) build $(LOCKED) --workspace --all-targets

release:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build $(LOCKED) --release --target $(TARGET) \
		-p bridge -p host-local -p portmap -p cni-libcni

# Namespace and end-to-end tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
test: build
	$(CARGO) test $(LOCKED) --workspace

# Tests that need no privileges (pure logic).
test-unit:
	$(CARGO) test $(LOCKED) --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(LOCKED) --workspace --all-targets -- -D warnings

install: release
	install -d $(DESTDIR)$(CNIBINDIR)
	for p in $(PLUGINS); do install -m 0755 $(RELEASE_DIR)/$$p $(DESTDIR)$(CNIBINDIR)/$$p; done

uninstall:
	for p in $(PLUGINS); do rm -f $(DESTDIR)$(CNIBINDIR)/$$p; done

demo: release
	scripts/demo.sh $(RELEASE_DIR)

e2e: build
	$(CARGO) test $(LOCKED) -p cni-tests --test 'e2e_*'

bench: release
	scripts/bench.sh $(RELEASE_DIR)

# The churn test of `make test` (tests/tests/churn.rs), long: CHURN_WORKERS threads
# each take CHURN_ROUNDS containers through ADD/CHECK/DEL with random SIGKILLs, on one
# iptables and one nftables dual-stack network. CHURN_SEED=<n> replays a run.
CHURN_WORKERS ?= 8
CHURN_ROUNDS  ?= 100
churn: build
	CHURN_WORKERS=$(CHURN_WORKERS) CHURN_ROUNDS=$(CHURN_ROUNDS) \
		$(CARGO) test $(LOCKED) -p cni-tests --test churn -- --nocapture

# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the pinned stable
# toolchain build them. New corpus entries land in crates/*/fuzz/corpus and
# are replayed by the ordinary test suite.
FUZZ_SECONDS ?= 60
FUZZ_CRATES  := crates/cni plugins/host-local
fuzz:
	for c in $(FUZZ_CRATES); do \
	  for t in $$(cd $$c && cargo fuzz list); do \
	    (cd $$c && RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	  done; \
	done

# Traces VERSION, ADD and DEL of the release plugins in private namespaces and
# lists the code they run (scripts/hot-text.sh; 5 to 10 minutes).
hot-text:
	STATIC_RUSTFLAGS="$(STATIC_RUSTFLAGS)" TARGET=$(TARGET) CARGO="$(CARGO)" scripts/hot-text.sh

clean:
	$(CARGO) clean
