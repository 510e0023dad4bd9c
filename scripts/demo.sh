#!/usr/bin/env bash
# The README's "run it" command (`make demo`): attach two containers to
# conf-examples/10-bridge.conflist (bridge + host-local + portmap) with
# cnitool and show that they work, then delete them and show that nothing
# is left.
#
# Usage: scripts/demo.sh [BIN_DIR]   (BIN_DIR holds the plugins and cnitool;
#                                     default target/release)
#
# Nothing touches the real host's network: the "host" is a private network
# namespace (cnidemo-host) in which cnitool and the plugins run; the two
# containers (cnidemo-c1, cnidemo-c2) and an "outside" network
# (cnidemo-outside, joined to the host by a veth) are namespaces too. Plugins
# are installed into a private temporary directory, which also holds the
# host-local data directory and the result cache. Everything is removed on
# exit (also on failure or Ctrl-C); leftovers of an interrupted earlier run
# are removed first, so the script can be run any number of times.
# Needs root, iproute2, iputils-ping and netcat-openbsd.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${1:-$ROOT/target/release}
NET=cni-rs
CONF_SRC=$ROOT/conf-examples/10-bridge.conflist
HOST=cnidemo-host C1=cnidemo-c1 C2=cnidemo-c2 OUT=cnidemo-outside
HOST_UPLINK=192.0.2.1 OUTSIDE_IP=192.0.2.2 # TEST-NET-1, never routed
HOST_PORT=8080
# The plugins: $CNI_PLUGINS from make, else every directory under plugins/ (the same list).
PLUGINS=${CNI_PLUGINS:-$(cd "$ROOT/plugins" && for d in */Cargo.toml; do printf '%s ' "${d%/Cargo.toml}"; done)}

if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B='' G='' R='' N=''; fi
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
ok() { printf '   %sok%s    %s\n' "$G" "$N" "$*"; }
info() { printf '         %s\n' "$*"; }
die() {
    printf '   %sFAIL%s  %s\n' "$R" "$N" "$*" >&2
    exit 1
}
indent() { sed 's/^/         /'; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for cmd in ip ping nc; do
    command -v "$cmd" >/dev/null || die "$cmd not found (apt-get install iproute2 iputils-ping netcat-openbsd)"
done
for bin in $PLUGINS cnitool; do
    [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin not found (build first: make release)"
done

WORK=''
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in "$C1" "$C2" "$OUT" "$HOST"; do ip netns del "$ns" 2>/dev/null || true; done
    [ -n "$WORK" ] && rm -rf "$WORK"
    if [ "$rc" -eq 0 ]; then
        step "cleaned up: namespaces and $WORK removed"
    else
        printf '\n%sdemo failed%s (exit %s); namespaces and temporary files removed\n' "$R" "$N" "$rc" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "$C1" "$C2" "$OUT" "$HOST"; do
    if ip netns list | grep -qw "^$ns"; then
        info "removing $ns left over from an earlier run"
        ip netns del "$ns"
    fi
done

WORK=$(mktemp -d /tmp/cni-demo.XXXXXX)
install -d "$WORK/bin" "$WORK/net.d"
for bin in $PLUGINS cnitool; do install -m 0755 "$BIN_DIR/$bin" "$WORK/bin/"; done
# The example as shipped, with host-local's dataDir moved into $WORK.
sed "s|\"type\": \"host-local\",|\"type\": \"host-local\", \"dataDir\": \"$WORK/ipam\",|" \
    "$CONF_SRC" >"$WORK/net.d/10-bridge.conflist"
grep -q "\"dataDir\": \"$WORK/ipam\"" "$WORK/net.d/10-bridge.conflist" || die "could not set dataDir in $CONF_SRC"
export CNI_PATH=$WORK/bin NETCONFPATH=$WORK/net.d CNI_CACHE_DIR=$WORK/cache
unset CNI_ARGS CAP_ARGS CNI_IFNAME CNI_CONTAINERID

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
cnitool() { in_ns "$HOST" "$WORK/bin/cnitool" "$@"; }
# First value of "key": "value" in a JSON text.
json_field() { grep -o "\"$1\": *\"[^\"]*\"" | head -n1 | sed 's/.*: *"\(.*\)"/\1/'; }
# Container ID of the cache entry for a netns (cnitool derives it from the path).
container_id() { grep -l "\"netns\":\"/run/netns/$1\"" "$WORK"/cache/results/* | xargs cat | json_field containerId; }
# Wait until a background nc prints "Listening".
wait_listening() { for _ in $(seq 50); do grep -q Listening "$1" 2>/dev/null && return 0; sleep 0.1; done; die "listener did not start"; }

step "1. namespaces: host $HOST, containers $C1 and $C2, $OUT"
for ns in "$HOST" "$C1" "$C2" "$OUT"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
done
ip link add to-outside netns "$HOST" type veth peer name eth0 netns "$OUT"
in_ns "$HOST" ip addr add "$HOST_UPLINK/24" dev to-outside
in_ns "$HOST" ip link set to-outside up
in_ns "$OUT" ip addr add "$OUTSIDE_IP/24" dev eth0
in_ns "$OUT" ip link set eth0 up
ok "host uplink $HOST_UPLINK/24 <-> outside $OUTSIDE_IP/24 (the outside has no route to the containers' subnet)"
info "plugins installed in $WORK/bin; network config: $WORK/net.d/10-bridge.conflist"

step "2. cnitool add $NET: $C1 (host port $HOST_PORT -> 80) and $C2"
CAPS="{\"portMappings\":[{\"hostPort\":$HOST_PORT,\"containerPort\":80,\"protocol\":\"tcp\"}]}"
CAP_ARGS=$CAPS cnitool add "$NET" "/run/netns/$C1" >"$WORK/c1.json"
cnitool add "$NET" "/run/netns/$C2" >"$WORK/c2.json"
info "\$ CAP_ARGS='$CAPS' cnitool add $NET /run/netns/$C1"
indent <"$WORK/c1.json"
IP1=$(json_field address <"$WORK/c1.json" | cut -d/ -f1)
IP2=$(json_field address <"$WORK/c2.json" | cut -d/ -f1)
GW=$(json_field gateway <"$WORK/c1.json")
ID1=$(container_id "$C1")
ID2=$(container_id "$C2")
ok "$C1: $IP1 (container ID $ID1)"
ok "$C2: $IP2 (container ID $ID2), gateway $GW on bridge cni-rs0"
in_ns "$HOST" ip -br link show type veth | grep -v to-outside | indent
CAP_ARGS=$CAPS cnitool check "$NET" "/run/netns/$C1"
cnitool check "$NET" "/run/netns/$C2"
ok "cnitool check: both attachments are as the plugins left them"

step "3. the containers reach each other and the gateway"
in_ns "$C1" ping -c1 -W2 "$IP2" >/dev/null || die "$C1 cannot ping $C2 ($IP2)"
ok "$C1 -> $C2 ($IP2): ping"
in_ns "$C2" ping -c1 -W2 "$IP1" >/dev/null || die "$C2 cannot ping $C1 ($IP1)"
ok "$C2 -> $C1 ($IP1): ping"
in_ns "$C1" ping -c1 -W2 "$GW" >/dev/null || die "$C1 cannot ping the gateway $GW"
ok "$C1 -> gateway ($GW): ping"

step "4. a container reaches the outside through masquerade"
in_ns "$OUT" nc -lvn -N -p 9000 </dev/null >/dev/null 2>"$WORK/outside.log" &
PIDS+=($!)
wait_listening "$WORK/outside.log"
echo "hello from $C1" | in_ns "$C1" nc -N -w 3 "$OUTSIDE_IP" 9000 || die "$C1 cannot connect to $OUTSIDE_IP:9000"
wait "${PIDS[-1]}" || true
peer=$(sed -n 's/^Connection received on \([^ ]*\) .*/\1/p' "$WORK/outside.log")
[ "$peer" = "$HOST_UPLINK" ] || die "the outside saw the connection from '$peer', expected $HOST_UPLINK"
ok "$C1 ($IP1) -> $OUTSIDE_IP:9000: the outside saw the connection come from $peer (masqueraded)"
in_ns "$HOST" iptables -t nat -S 2>/dev/null | grep -F "$ID1" | grep -E 'MASQUERADE|POSTROUTING' | indent || true

step "5. the outside reaches $C1's server through host port $HOST_PORT"
in_ns "$C1" sh -c "printf 'hello from the server in $C1\n' | nc -lvn -N -p 80" >/dev/null 2>"$WORK/server.log" &
PIDS+=($!)
wait_listening "$WORK/server.log"
reply=$(in_ns "$OUT" nc -N -w 3 "$HOST_UPLINK" "$HOST_PORT" </dev/null) || die "$OUT cannot connect to $HOST_UPLINK:$HOST_PORT"
wait "${PIDS[-1]}" || true
[ "$reply" = "hello from the server in $C1" ] || die "unexpected reply '$reply'"
client=$(sed -n 's/^Connection received on \([^ ]*\) .*/\1/p' "$WORK/server.log")
ok "$OUT -> $HOST_UPLINK:$HOST_PORT answered: \"$reply\""
ok "the server in $C1 saw the client as $client (the real outside address)"
in_ns "$HOST" iptables -t nat -S 2>/dev/null | grep -F -- "--to-destination $IP1:80" | indent || true

step "6. cnitool del both; nothing is left"
CAP_ARGS=$CAPS cnitool del "$NET" "/run/netns/$C1"
cnitool del "$NET" "/run/netns/$C2"
ok "cnitool del $NET /run/netns/$C1, /run/netns/$C2"
left=$(in_ns "$HOST" ip -o link show type veth | grep -v to-outside || true)
[ -z "$left" ] || die "veths left in $HOST: $left"
ok "no veth left in $HOST (only the uplink to-outside)"
for ns in "$C1" "$C2"; do
    ! in_ns "$ns" ip link show eth0 >/dev/null 2>&1 || die "eth0 left in $ns"
done
ok "no eth0 left in $C1, $C2"
reserved=$(ls "$WORK/ipam/$NET" | grep -E '^[0-9a-f.:]+$' || true)
[ -z "$reserved" ] || die "IP reservations left: $reserved"
ok "no IP reservation left in $WORK/ipam/$NET ($(ls "$WORK/ipam/$NET" | tr '\n' ' '))"
rules=$( (in_ns "$HOST" iptables-save 2>/dev/null; in_ns "$HOST" nft list ruleset 2>/dev/null) | grep -E -e "$ID1|$ID2" -e "($IP1|$IP2)([^0-9]|$)" || true)
[ -z "$rules" ] || die "netfilter rules left: $rules"
ok "no netfilter rule mentions $ID1, $ID2, $IP1 or $IP2"
cached=$(ls "$WORK/cache/results" 2>/dev/null || true)
[ -z "$cached" ] || die "cached results left: $cached"
ok "no cached result left in $WORK/cache/results"
