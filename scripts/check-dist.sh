#!/usr/bin/env bash
# Checks a release archive written by `make dist` (run by `make dist-check`, in CI):
# it holds exactly the expected binaries at its top level, executable; the .sha256
# and .sha512 files beside it verify; every plugin prints the version when run
# without CNI_COMMAND (as upstream's do) and answers VERSION; `cnitool --version`
# prints it too.
#
# Usage: scripts/check-dist.sh ARCHIVE.tgz VERSION BINARY...   (the last is cnitool)
set -euo pipefail

archive=$1 version=$2
shift 2
bins=("$@")
[ ${#bins[@]} -gt 0 ] || { echo "usage: $0 ARCHIVE.tgz VERSION BINARY..." >&2; exit 2; }
fail() {
    echo "check-dist: FAIL: $*" >&2
    exit 1
}
ok() { echo "check-dist: ok    $*"; }

dir=$(cd "$(dirname "$archive")" && pwd)
name=$(basename "$archive")
case "$name" in *"-$version.tgz") ;; *) fail "$name is not named after version $version" ;; esac

# Listing: exactly the binaries, at the top level, regular files with mode 0755, owned by root.
listing=$(tar -tvzf "$archive")
names=$(tar -tzf "$archive" | sort)
expected=$(printf '%s\n' "${bins[@]}" | sort)
[ "$names" = "$expected" ] || fail "archive holds [$(echo $names)], expected [$(echo $expected)]"
while read -r mode owner _; do
    [ "$mode" = "-rwxr-xr-x" ] || fail "mode $mode in: $listing"
    [ "$owner" = "0/0" ] || fail "owner $owner in: $listing"
done <<<"$listing"
ok "$name holds ${bins[*]} at its top level (0755, 0/0)"

# Checksums, in sha256sum/sha512sum format (verified from the archive's directory).
for sum in sha256 sha512; do
    [ -f "$dir/$name.$sum" ] || fail "$name.$sum missing"
    grep -qx "[0-9a-f]*  $name" "$dir/$name.$sum" || fail "$name.$sum is not '<hash>  $name'"
    (cd "$dir" && ${sum}sum --quiet -c "$name.$sum") || fail "$name.$sum does not match"
done
ok "$name.sha256 and $name.sha512 verify"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$archive" -C "$work"
for b in "${bins[@]}"; do
    if [ "$b" = cnitool ]; then
        out=$(env -i "$work/cnitool" --version) || fail "cnitool --version failed"
        [ "$out" = "cnitool $version" ] || fail "cnitool --version printed '$out'"
        ok "cnitool --version: $out"
        continue
    fi
    # Without CNI_COMMAND: the about text on stderr, exit 0 (an empty environment:
    # the binaries are static and need nothing).
    about=$(env -i "$work/$b" 2>&1 </dev/null) || fail "$b without CNI_COMMAND exited $?"
    first=${about%%$'\n'*}
    [ "$first" = "CNI $b plugin $version (rust-cni-plugins)" ] || fail "$b printed '$first'"
    out=$(echo '{"cniVersion":"1.0.0"}' | env -i CNI_COMMAND=VERSION "$work/$b") || fail "$b VERSION failed"
    case "$out" in *'"supportedVersions"'*'"1.1.0"'*) ;; *) fail "$b VERSION printed $out" ;; esac
    ok "$b: $first; VERSION lists 1.1.0"
done
