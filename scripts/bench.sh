#!/usr/bin/env bash
# Side-by-side benchmark: our release plugins vs the Go reference plugins (Debian's
# containernetworking-plugins v1.1.1 in /usr/lib/cni and, with $BENCH_UPSTREAM, upstream's
# current release), interleaved in one run, on one netfilter backend.
#
#   scripts/bench.sh <our-release-dir> [cni-bench options]     (make bench does this)
#   scripts/bench.sh --plot                                    (make bench-plot does this)
#
# $BENCH_BACKEND: iptables (default) or nftables (Debian's v1.1.1 has no nftables backend
# and is left out then: give $BENCH_UPSTREAM). $BENCH_UPSTREAM: a directory with upstream's
# bridge, host-local, portmap (e.g. a release archive unpacked). Extra options also come
# from $BENCH_ARGS, e.g. `make bench BENCH_ARGS=--quick`; $BENCH_NICE sets the priority of
# the run (default -10), $BENCH_SCALE the container count of the scale scenario (default
# 500).
# Results: target/bench/results-<backend>.json, results-<backend>.md, table-<backend>.txt
# (directory: $BENCH_OUT), then target/bench/scale.svg drawn from every results-*.json
# there, so an iptables and an nftables run end up in one plot.
# Needs root: everything happens in private network namespaces that are removed again.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 <our-release-dir> [cni-bench options] | $0 --plot" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_OUT:-$root/target/bench}
cargo=${CARGO:-cargo}
refdir=/usr/lib/cni
backend=${BENCH_BACKEND:-iptables}
target_dir=${CARGO_TARGET_DIR:-$root/target}
bench=$target_dir/release/cni-bench

# The plot of every run's results present (needs no root).
plot() {
    local files=()
    for f in "$out"/results-*.json; do
        [ -e "$f" ] && files+=("$f")
    done
    if [ ${#files[@]} -eq 0 ]; then
        echo "bench: no $out/results-*.json to plot" >&2
        return 1
    fi
    "$bench" --plot "$out/scale.svg" "${files[@]}"
}

if [ "$1" = --plot ]; then
    (cd "$root" && $cargo build --release --quiet -p cni-bench --bin cni-bench)
    plot
    exit
fi
ours=$(cd "$1" && pwd)
shift
upstream=()
if [ -n "${BENCH_UPSTREAM:-}" ]; then
    for p in bridge host-local portmap; do
        if [ ! -x "$BENCH_UPSTREAM/$p" ]; then
            echo "bench: BENCH_UPSTREAM: $BENCH_UPSTREAM/$p is missing" >&2
            exit 1
        fi
    done
    upstream=(--upstream "$(cd "$BENCH_UPSTREAM" && pwd)")
fi

# The plugins: $CNI_PLUGINS from make, else every directory under plugins/ (the same list).
plugins=${CNI_PLUGINS:-$(cd "$root/plugins" && for d in */Cargo.toml; do printf '%s ' "${d%/Cargo.toml}"; done)}
for p in $plugins; do
    if [ ! -x "$ours/$p" ]; then
        echo "bench: $ours/$p is missing: run make release first" >&2
        exit 1
    fi
done

if [ "$(id -u)" -ne 0 ]; then
    echo "bench: needs root (it creates network namespaces); try: sudo make bench" >&2
    exit 1
fi

# The reference plugins, from the distribution (not used with nftables).
if [ "$backend" = iptables ] && [ ! -x $refdir/bridge ] || [ ! -x $refdir/host-local ] || [ ! -x $refdir/portmap ]; then
    echo "bench: installing the reference plugins (containernetworking-plugins)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y containernetworking-plugins >&2 ||
        { apt-get update >&2 && apt-get install -y containernetworking-plugins >&2; }
fi
for tool in ip iptables iptables-save iptables-restore nft; do
    command -v $tool >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done

# The benchmark driver itself (not one of the measured binaries).
(cd "$root" && $cargo build --release --quiet -p cni-bench --bin cni-bench)

# Remove leftovers of killed earlier runs (namespaces of running ones are kept).
"$bench" --cleanup

mkdir -p "$out"
# Every implementation (and every helper it runs) inherits the same raised priority, so
# other work on a shared machine delays them less; the interleaving does the rest.
# BENCH_NICE=0 measures at normal priority.
# shellcheck disable=SC2086 # BENCH_ARGS is a list of options
# The scale scenario defaults to 500 containers, which keeps the whole run near 10 minutes
# here; BENCH_SCALE=1000 (about 25 minutes) is the full count of BENCHMARKS.md.
# --quick keeps its own small scale unless BENCH_SCALE is set.
scale=(--scale "${BENCH_SCALE:-500}")
if [ -z "${BENCH_SCALE:-}" ] && [[ " ${BENCH_ARGS:-} $* " == *" --quick "* ]]; then
    scale=()
fi
nice -n "${BENCH_NICE:--10}" "$bench" "$ours" --reference $refdir "${upstream[@]}" \
    --backend "$backend" "${scale[@]}" \
    --json "$out/results-$backend.json" --markdown "$out/results-$backend.md" ${BENCH_ARGS:-} "$@" |
    tee "$out/table-$backend.txt"
status=${PIPESTATUS[0]}
echo "bench: results in $out/results-$backend.json, results-$backend.md, table-$backend.txt" >&2
plot || true
exit "$status"
