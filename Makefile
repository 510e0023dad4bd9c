# Rust CNI plugins: bridge, host-local, loopback, portmap (+ cnitool).
#
#   make build     debug build of the whole workspace
#   make release   static release binaries (run on any x86_64 Linux node)
#   make test      every test: unit, namespace, end-to-end (needs root)
#   make lint      rustfmt check, clippy with warnings as errors, crate and module rules
#   make install   install the plugins to $(DESTDIR)$(CNIBINDIR) (default /opt/cni/bin)
#   make dist      release archive $(DIST_DIR)/cni-plugins-rs-linux-<arch>-<version>.tgz (+ .sha256, .sha512)
#   make dist-check  make dist, then check the archive (scripts/check-dist.sh)
#   make demo      attach two containers in private namespaces and show it working
#   make e2e       only the end-to-end tests (real runtimes, conf-examples)
#   make bench     side-by-side benchmark against the reference Go plugins (BENCH_BACKEND,
#                  BENCH_UPSTREAM, BENCH_SCALE, BENCH_ARGS; BENCHMARKS.md)
#   make bench-plot  target/bench/scale.svg from the benchmark results present
#   make churn     long ADD/CHECK/DEL churn with kills on both backends (CHURN_WORKERS, CHURN_ROUNDS)
#   make fuzz      run each libFuzzer target for FUZZ_SECONDS (needs cargo-fuzz)

CARGO       ?= cargo
LOCKED      := $(if $(CI),--locked,)
TARGET      ?= x86_64-unknown-linux-gnu
PREFIX      ?= /opt/cni
CNIBINDIR   ?= $(PREFIX)/bin
DESTDIR     ?=
# The plugins: every directory under plugins/ (package, binary and directory share the
# name; ARCHITECTURE.md). The one list: release, install and dist use it, and the scripts
# get it as $CNI_PLUGINS.
PLUGINS     := $(sort $(notdir $(patsubst %/Cargo.toml,%,$(wildcard plugins/*/Cargo.toml))))
export CNI_PLUGINS := $(PLUGINS)
RELEASE_DIR := target/$(TARGET)/release
# The version the release binaries print and the archive is named after: the workspace
# version, plus `git describe` (commits since the tag, commit, -dirty) when this is a git
# checkout; just the workspace version at the tag v<version>. Only `make release` (and
# the targets built on it) pass it to the build, as CNI_RS_VERSION (crates/cni, skel).
WS_VERSION  := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
GIT_DESCRIBE := $(shell git describe --tags --match 'v[0-9]*' --always --dirty --abbrev=12 2>/dev/null)
VERSION     ?= $(if $(GIT_DESCRIBE),$(if $(filter v%,$(GIT_DESCRIBE)),$(patsubst v%,%,$(GIT_DESCRIBE)),$(WS_VERSION)-g$(GIT_DESCRIBE)),$(WS_VERSION))
DIST_DIR    ?= target/dist
DIST_ARCH   := $(if $(filter x86_64-%,$(TARGET)),amd64,$(if $(filter aarch64-%,$(TARGET)),arm64,$(firstword $(subst -, ,$(TARGET)))))
DIST_NAME   := cni-plugins-rs-linux-$(DIST_ARCH)-$(VERSION)
DIST_BINS   := $(PLUGINS) cnitool
# Static linking: the plugins are copied onto nodes of any distribution.
# Passed only with an explicit --target so build scripts and proc macros
# stay dynamically linked. relocation-model=static: a plain static executable, not
# static-pie, so nothing is relocated (and no page dirtied for it) at start-up.
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=static

.PHONY: all build release dist dist-check test test-unit lint install uninstall demo e2e bench bench-plot churn fuzz clean

all: build

build:
	$(CARGO) build $(LOCKED) --workspace --all-targets

release:
	CNI_RS_VERSION="$(VERSION)" RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build $(LOCKED) --release --target $(TARGET) \
		$(addprefix -p ,$(PLUGINS)) -p cni-libcni

# The release archive: the static binaries at its top level (as upstream's
# cni-plugins-linux-<arch>-<version>.tgz), owner root, reproducible (sorted, mtime of the
# last commit), with sha256sum and sha512sum files beside it.
dist: release
	rm -rf $(DIST_DIR)/$(DIST_NAME)
	install -d $(DIST_DIR)/$(DIST_NAME)
	for b in $(DIST_BINS); do install -m 0755 $(RELEASE_DIR)/$$b $(DIST_DIR)/$(DIST_NAME)/$$b; done
	tar --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime=@$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
		-C $(DIST_DIR)/$(DIST_NAME) -cf - $(DIST_BINS) | gzip -9n >$(DIST_DIR)/$(DIST_NAME).tgz
	rm -rf $(DIST_DIR)/$(DIST_NAME)
	cd $(DIST_DIR) && sha256sum $(DIST_NAME).tgz >$(DIST_NAME).tgz.sha256 \
		&& sha512sum $(DIST_NAME).tgz >$(DIST_NAME).tgz.sha512
	@echo "$(DIST_DIR)/$(DIST_NAME).tgz (.sha256, .sha512)"

dist-check: dist
	scripts/check-dist.sh $(DIST_DIR)/$(DIST_NAME).tgz "$(VERSION)" $(DIST_BINS)

# Namespace and end-to-end tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
# scripts/prereqs.sh checks (as root with apt: installs) what .ci/packages lists first.
test:
	CARGO="$(CARGO)" scripts/prereqs.sh test
	$(MAKE) --no-print-directory build
	$(CARGO) test $(LOCKED) --workspace

# Tests that need no privileges (pure logic).
test-unit:
	$(CARGO) test $(LOCKED) --workspace --lib --bins

# archcheck (tools/archcheck): the crate-edge rules of ARCHITECTURE.md and no module
# cycle inside a crate.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(LOCKED) --workspace --all-targets -- -D warnings
	$(CARGO) run $(LOCKED) --quiet -p cni-archcheck

install: release
	install -d $(DESTDIR)$(CNIBINDIR)
	for p in $(PLUGINS); do install -m 0755 $(RELEASE_DIR)/$$p $(DESTDIR)$(CNIBINDIR)/$$p; done

uninstall:
	for p in $(PLUGINS); do rm -f $(DESTDIR)$(CNIBINDIR)/$$p; done

# Builds as the calling user; the namespaces need root, so the script runs under sudo
# unless make already does.
demo:
	CARGO="$(CARGO)" scripts/prereqs.sh demo
	$(MAKE) --no-print-directory release
	$(if $(filter 0,$(shell id -u)),,sudo )scripts/demo.sh $(RELEASE_DIR)

e2e: build
	$(CARGO) test $(LOCKED) -p cni-tests -p cni-cri-tests --test 'e2e_*'

# One backend per run: BENCH_BACKEND=iptables (default) or nftables. BENCH_UPSTREAM=<dir>
# adds upstream's current Go plugins as a third implementation (the only reference with
# nftables). Each run leaves target/bench/results-<backend>.json and redraws
# target/bench/scale.svg from all of them.
bench: release
	scripts/bench.sh $(RELEASE_DIR)

bench-plot:
	scripts/bench.sh --plot

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

clean:
	$(CARGO) clean
