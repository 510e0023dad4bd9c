#!/usr/bin/env bash
# Regenerates scripts/hot-text.ld, the list of code the plugins execute, which `make
# release` links first (.text.hot) so that a plugin run touches few 64 KiB windows of its
# binary: the kernel maps file pages around each fault ("fault-around"), so scattered hot
# code makes nearly the whole binary resident. Run it (`sudo make hot-text`) after changes
# to the release profile or flags, or when the peak RSS of scenario 5 of the benchmark
# grows; it needs root (private network namespaces, ptrace) and a C compiler.
#
#   STATIC_RUSTFLAGS="..." scripts/hot-text.sh      (make hot-text passes the flags)
#
# Builds the release binaries unstripped with linker maps in $HOT_TARGET_DIR (default
# target/hot-text), runs VERSION, host-local ADD/DEL and two chain ADDs and DELs (bridge
# with ipMasq and its host-local, portmap with two mappings), single-stepping every
# instruction (scripts/hot-text-trace.c), and writes the input sections that ran as
# hash-free patterns (scripts/hot-text.py). Takes 5 to 10 minutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${TARGET:-x86_64-unknown-linux-gnu}
tdir=${HOT_TARGET_DIR:-$root/target/hot-text}
out=${HOT_TEXT_OUT:-$root/scripts/hot-text.ld}
: "${STATIC_RUSTFLAGS:?set by make hot-text}"
cargo=${CARGO:-cargo}

[ "$(id -u)" -eq 0 ] || { echo "hot-text: needs root (network namespaces)" >&2; exit 1; }

bin=$tdir/$target/release
work=$(mktemp -d /tmp/hot-text.XXXXXX)
H=hottext-h$$ C1=hottext-c1-$$ C2=hottext-c2-$$
cleanup() {
    for ns in $H $C1 $C2; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

${CC:-cc} -O2 -o "$work/trace" "$root/scripts/hot-text-trace.c"
for p in bridge host-local portmap; do
    (cd "$root" && CARGO_TARGET_DIR=$tdir CARGO_PROFILE_RELEASE_STRIP=none \
        RUSTFLAGS="$STATIC_RUSTFLAGS" $cargo rustc --quiet --release --target "$target" \
        -p "$p" --bin "$p" -- -C link-arg=-Wl,-Map,"$work/$p.map")
done

ip netns add $H
ip netns add $C1
ip netns add $C2
ip -n $H link set lo up

# run PLUGIN COMMAND CONTAINER-NS CONTAINER-ID < config: one traced call in $H; the
# plugin's own children are traced too (host-local under bridge), iptables/nft not.
run() {
    ip netns exec $H env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CNI_COMMAND="$2" \
        CNI_CONTAINERID="$4" CNI_NETNS=/var/run/netns/"$3" CNI_IFNAME=eth0 CNI_PATH="$bin" \
        "$work/trace" "$bin" "$work/trace.txt" "$bin/$1"
}

bridge_conf() {
    cat <<EOF
{"cniVersion":"1.0.0","name":"hottext","type":"bridge","bridge":"hottext0","isGateway":true,
 "ipMasq":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.99.0.0/16"}]],
 "routes":[{"dst":"0.0.0.0/0"}],"dataDir":"$work/ipam"}${1:+,\"prevResult\":$1}}
EOF
}
portmap_conf() {
    cat <<EOF
{"cniVersion":"1.0.0","name":"hottext","type":"portmap","capabilities":{"portMappings":true},
 "snat":true,"runtimeConfig":{"portMappings":[
  {"hostPort":$2,"containerPort":80,"protocol":"tcp"},
  {"hostPort":$2,"containerPort":53,"protocol":"udp"}]},"prevResult":$1}
EOF
}

for p in bridge host-local portmap; do
    echo '{"cniVersion":"1.0.0"}' | run $p VERSION $C1 v >/dev/null
done
bridge_conf | run host-local ADD $C1 hl >/dev/null
bridge_conf | run host-local DEL $C1 hl >/dev/null
# A UDP flow to a mapped port, so that the conntrack flush of portmap finds entries.
udp_flow() { ip netns exec $H bash -c "echo hot-text >/dev/udp/127.0.0.1/$1" || true; }
i=0
for c in $C1 $C2; do
    i=$((i + 1))
    bridge_conf | run bridge ADD $c "id$i" >"$work/result$i.json"
    udp_flow $((20000 + i))
    portmap_conf "$(cat "$work/result$i.json")" $((20000 + i)) | run portmap ADD $c "id$i" >/dev/null
done
for i in 2 1; do
    c=$C1; [ $i = 2 ] && c=$C2
    udp_flow $((20000 + i))
    portmap_conf "$(cat "$work/result$i.json")" $((20000 + i)) | run portmap DEL $c "id$i"
    bridge_conf "$(cat "$work/result$i.json")" | run bridge DEL $c "id$i"
done

python3 "$root/scripts/hot-text.py" "$out" "$work/trace.txt" \
    bridge="$work/bridge.map" host-local="$work/host-local.map" portmap="$work/portmap.map"

# Cargo does not track the linker script: drop the release plugins so that the next
# `make release` links them again with the new list (dependencies are kept).
(cd "$root" && $cargo clean --quiet --release --target "$target" \
    -p bridge -p host-local -p portmap -p cni-libcni)
echo "hot-text: wrote $out; run make release to link with it" >&2
