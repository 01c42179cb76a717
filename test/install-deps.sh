#!/usr/bin/env bash
# test/install-deps.sh -- install the Debian 12 packages paygw's build and
# test suite need.  Idempotent: does nothing (prints one line) when every
# package is already installed.
#
#   bash test/install-deps.sh           install what is missing (root only)
#   bash test/install-deps.sh --force   always apt-get update + install
#
# Not root and something missing: prints the missing packages, exits 1.
# apt output is hidden unless apt-get fails.
set -euo pipefail

PACKAGES=(
    postgresql-15 postgresql-server-dev-15
    libcurl4-openssl-dev libssl-dev pkg-config make gcc
    python3 python3-cryptography libipc-run-perl openssl curl
)

force=0
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install-deps: unknown option: $arg" >&2; exit 2 ;;
    esac
done

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if (( !force && ${#missing[@]} == 0 )); then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi

if (( EUID != 0 )); then
    if (( ${#missing[@]} )); then
        echo "install-deps: missing packages (run as root to install): ${missing[*]}" >&2
    else
        echo "install-deps: --force needs root" >&2
    fi
    exit 1
fi

log=$(mktemp /tmp/paygw-install-deps.XXXXXX)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update &&
       apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${PACKAGES[@]}"; } \
       >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: apt-get failed" >&2
    exit 1
fi
if (( ${#missing[@]} )); then
    echo "install-deps: installed ${missing[*]}"
else
    echo "install-deps: apt-get update + install done, all ${#PACKAGES[@]} packages present (--force)"
fi
