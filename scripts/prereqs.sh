#!/usr/bin/env bash
# Checks what `make demo` or `make test` needs before anything is built:
# a Rust toolchain and the packages listed in .ci/packages (the one list,
# which .ci/run installs through this script too).
#
# Usage: scripts/prereqs.sh demo|test
#
# Missing packages are installed when running as root on a machine with
# apt-get (Debian, Ubuntu); otherwise the script stops at once, printing the
# exact command to run. Exit status 0 when everything is there (or was just
# installed), 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIST=$ROOT/.ci/packages
what=${1:-}
case "$what" in
demo | test) ;;
*)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
target="make $what"

fail() {
    printf '%s: %s\n' "$target" "$1" >&2
    shift
    for line in "$@"; do printf '    %s\n' "$line" >&2; done
    exit 1
}

# The Rust toolchain. `sudo` resets PATH, so a rustup installation in the
# invoking user's home is not found by `sudo make test`: say how to pass it.
cargo=${CARGO:-cargo}
if ! command -v "$cargo" >/dev/null 2>&1; then
    home=''
    if [ -n "${SUDO_USER:-}" ] && [ "$(id -u)" -eq 0 ]; then
        home=$(getent passwd "$SUDO_USER" | cut -d: -f6 || true)
    fi
    if [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ]; then
        fail "cargo is not in root's PATH (sudo resets it); $SUDO_USER's rustup toolchain is in $home/.cargo. Run:" \
            "sudo env PATH=\"$home/.cargo/bin:\$PATH\" RUSTUP_HOME=\"$home/.rustup\" make $what"
    fi
    fail "cargo not found: install a Rust toolchain (https://rustup.rs), e.g.:" \
        "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal" \
        "then open a new shell (or: . \"\$HOME/.cargo/env\") and run make $what again"
fi

# The packages this target needs, in list order.
needed=()
checks=()
while read -r pkg check tag _; do
    case "$pkg" in '' | '#'*) continue ;; esac
    if [ "$what" = test ] || [ "${tag:-}" = demo ]; then
        needed+=("$pkg")
        checks+=("${check:-}")
    fi
done <"$LIST"

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${needed[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || missing+=("$pkg")
    done
else
    # Not Debian: look for what each package provides.
    for i in "${!needed[@]}"; do
        c=${checks[$i]}
        case "$c" in
        '') continue ;;
        /*) [ -e "$c" ] || missing+=("${needed[$i]} ($c)") ;;
        *) command -v "$c" >/dev/null 2>&1 || missing+=("${needed[$i]} ($c)") ;;
        esac
    done
    if [ ${#missing[@]} -gt 0 ]; then
        fail "missing (Debian package names, with what is looked for): ${missing[*]}" \
            "install them with your distribution's package manager, then run make $what again"
    fi
    exit 0
fi
# `make demo` runs scripts/demo.sh under sudo when not root.
if [ "$what" = demo ] && [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    fail "the demo's network namespaces need root and sudo is not installed: run make demo as root"
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    fail "missing packages: ${missing[*]} (no apt-get here: install them by hand)"
fi
if [ "$(id -u)" -ne 0 ]; then
    fail "missing packages: ${missing[*]}. Run:" \
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" \
        "then make $what again"
fi
printf '%s: installing missing packages: %s\n' "$target" "${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
printf '%s: installed %s\n' "$target" "${missing[*]}"
