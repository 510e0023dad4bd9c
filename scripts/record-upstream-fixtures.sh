#!/usr/bin/env bash
# Records the golden nftables fixtures of tests/tests/upstream_nftables.rs from a build
# of upstream containernetworking/plugins v1.9.1 (bridge, host-local, portmap).
#
# Usage (as root): scripts/record-upstream-fixtures.sh <dir with the upstream binaries>
#
# The scenarios are defined once, in the test; this runs its recording mode
# (UPSTREAM_RECORD=1), which runs every scenario twice with upstream in private network
# namespaces (the two runs must list the same), then writes
# tests/fixtures/upstream-v1.9.1/<scenario>/NN-<add|del>-<id>.{nft,calls.json}.
# The host's own network state is not touched. Then it lists the fixtures that changed
# and runs the whole test file (ours against the fixtures, and the cross-switch tests).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: $0 <dir with upstream v1.9.1 bridge, host-local, portmap>}
dir=$(cd "$dir" && pwd)
for p in bridge host-local portmap; do
    [ -x "$dir/$p" ] || { echo "$dir/$p: missing or not executable" >&2; exit 1; }
done
version=$("$dir/bridge" </dev/null 2>&1 | head -n 1 || true)
case "$version" in
*v1.9.1*) ;;
*) echo "warning: $dir/bridge reports '$version', the fixtures are named for v1.9.1" >&2 ;;
esac

cd "$ROOT"
CARGO=${CARGO:-cargo}
# Our plugins, for the comparison runs that follow.
"$CARGO" build -p bridge -p host-local -p portmap
UPSTREAM_PLUGINS=$dir UPSTREAM_RECORD=1 \
    "$CARGO" test -p cni-tests --test upstream_nftables -- --exact record_fixtures --nocapture
echo "changed fixtures (none: upstream still writes what was recorded):"
git status --short tests/fixtures/upstream-v1.9.1
# Ours against the new fixtures, and the cross-switch tests.
UPSTREAM_PLUGINS=$dir "$CARGO" test -p cni-tests --test upstream_nftables
