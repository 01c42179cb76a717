#!/usr/bin/env bash
# test/pg-build.sh -- build PostgreSQL 18 from its pristine upstream source
# into a cache directory, so the test suite can run against a second major
# version (PG_CONFIG=<prefix>/bin/pg_config bash test/run-tests.sh).
#
#   bash test/pg-build.sh [--prefix DIR] [--force]
#
#   --prefix DIR  install prefix (default $PAYGW_PG18_PREFIX, else /opt/pg18)
#   --force       rebuild even when the prefix holds a finished build
#
# Debian 12 packages only PostgreSQL 15; the upstream tarball of 18 comes
# from Debian's source package postgresql-18 (suite sid), whose .orig.tar.bz2
# is the release tarball unchanged.  The first run adds a deb-src entry for
# sid (source downloads only; no binary package comes from sid) with the
# archive URI of the machine's own sources, installs the build dependencies,
# downloads, builds with `make -j2` and installs; about 6 minutes on two
# cores.  Later runs find the finished build (a stamp file in the prefix)
# and return at once.  Works as root without a terminal (CI); not as root it
# needs the build dependencies installed and the deb-src entry present.
# Progress goes to stderr; stdout gets one line, the build's pg_config:
#   PG_CONFIG=$(bash test/pg-build.sh) bash test/run-tests.sh
set -euo pipefail

prefix=${PAYGW_PG18_PREFIX:-/opt/pg18}
force=0
while (( $# )); do
    case $1 in
        --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
        --force) force=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "pg-build: unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $prefix == /* ]] || { echo "pg-build: --prefix must be absolute: $prefix" >&2; exit 2; }

MAJOR=18
SRCPKG=postgresql-$MAJOR
# what the build needs; configure's defaults (readline, zlib, ICU) plus
# OpenSSL, which paygw links against anyway
BUILD_DEPS=(gcc make bison flex perl pkg-config bzip2
            libssl-dev libreadline-dev zlib1g-dev libicu-dev)
CONFIGURE_OPTS=(--with-openssl)
SID_LIST=/etc/apt/sources.list.d/paygw-sid-src.sources
stamp=$prefix/paygw-build.txt

msg() { printf 'pg-build: %s\n' "$*" >&2; }
die() { printf 'pg-build: %s\n' "$*" >&2; exit 1; }

# a finished build: the stamp is written last, after `make install`
cached() {
    [[ -f $stamp && -x $prefix/bin/pg_config ]] &&
        [[ $("$prefix/bin/pg_config" --version 2>/dev/null) == "PostgreSQL $MAJOR."* ]]
}

mkdir -p "$(dirname "$prefix")"
exec 9>"$prefix.lock"
flock 9 # a second run waits for the first and then finds its build

if (( !force )) && cached; then
    msg "cached: $("$prefix/bin/pg_config" --version) in $prefix"
    echo "$prefix/bin/pg_config"
    exit 0
fi

# never remove a directory this script did not make
if [[ -e $prefix ]]; then
    if [[ -f $stamp || -f $prefix/.paygw-build-partial || -z $(ls -A "$prefix") ]]; then
        rm -rf "$prefix"
    else
        die "$prefix exists and is not a build of this script; remove it or choose --prefix"
    fi
fi

export DEBIAN_FRONTEND=noninteractive
aptlog=$(mktemp /tmp/paygw-pg-build-apt.XXXXXX)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/paygw-pg-build.XXXXXX")
trap 'rm -rf "$work" "$aptlog"' EXIT

apt_quiet() {   # apt_quiet CMD... -- run, show the output only on failure
    if ! "$@" >"$aptlog" 2>&1; then
        cat "$aptlog" >&2
        die "failed: $*"
    fi
}

# --- build dependencies --------------------------------------------------------
missing=()
for pkg in "${BUILD_DEPS[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) == "install ok installed" ]] ||
        missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    (( EUID == 0 )) || die "missing packages (run as root to install): ${missing[*]}"
    msg "installing ${missing[*]}"
    apt_quiet apt-get update
    apt_quiet apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"
fi

# --- the deb-src entry for sid --------------------------------------------------
# The archive URI and keyring of the machine's own Debian sources (deb822
# .sources files or one-line sources.list), so a mirror or snapshot in use
# stays in use.
debian_source() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk '
            function flush() {
                if (uris != "" && suites ~ /(^| )(bookworm|trixie|stable|testing|sid|unstable)( |$)/)
                    { print uris "\t" key; found = 1; exit }
                uris = suites = key = ""
            }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "uris:" { uris = $2 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
            tolower($1) == "signed-by:" { key = $2 }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # deb [options] URI suite components...
        sed -n -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+(bookworm|trixie|stable|testing|sid|unstable)[[:space:]].*/\2\t/p' "$f"
    done
}
if [[ ! -f $SID_LIST ]]; then
    (( EUID == 0 )) || die "no deb-src entry for sid ($SID_LIST); run once as root"
    src=$(debian_source | head -n 1)
    uri=${src%%$'\t'*}
    key=${src#*$'\t'}
    [[ -n $uri ]] || die "no Debian archive URI found in /etc/apt/sources.list{,.d}"
    [[ -n $key ]] || key=/usr/share/keyrings/debian-archive-keyring.gpg
    msg "adding $SID_LIST (deb-src $uri sid main)"
    printf 'Types: deb-src\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: %s\n' \
        "$uri" "$key" >"$SID_LIST"
fi

# --- download ---------------------------------------------------------------------
cd "$work"
msg "downloading the source package $SRCPKG (sid)"
if ! apt-get source --download-only "$SRCPKG" >"$aptlog" 2>&1; then
    (( EUID == 0 )) || { cat "$aptlog" >&2; die "apt-get source failed; run as root to refresh the package lists"; }
    apt_quiet apt-get update
    apt_quiet apt-get source --download-only "$SRCPKG"
fi
tarball=$(ls "$work"/"${SRCPKG}"_*.orig.tar.bz2 2>/dev/null | head -n 1)
[[ -n $tarball ]] || die "no ${SRCPKG}_*.orig.tar.bz2 among the downloaded files: $(ls "$work")"
tar -xjf "$tarball"
srcdir=$(ls -d "$work"/postgresql-"$MAJOR".*/ | head -n 1)
srcdir=${srcdir%/}
version=${srcdir##*/postgresql-}
msg "building PostgreSQL $version into $prefix (log: $work/build.log)"

# --- build and install ------------------------------------------------------------
start=$SECONDS
log=$work/build.log
build() {
    cd "$srcdir" &&
        ./configure --prefix="$prefix" "${CONFIGURE_OPTS[@]}" &&
        nice -n 5 make -j2 &&
        mkdir -p "$prefix" && touch "$prefix/.paygw-build-partial" &&
        make install
}
if ! (build) >"$log" 2>&1; then
    cp "$log" /tmp/paygw-pg-build.log
    tail -n 60 "$log" >&2
    die "build failed (whole log: /tmp/paygw-pg-build.log)"
fi
{
    echo "PostgreSQL $version built by paygw test/pg-build.sh"
    echo "source: $(basename "$tarball") from Debian source package $SRCPKG (sid)"
    echo "configure: --prefix=$prefix ${CONFIGURE_OPTS[*]}"
    echo "built: $(date -u '+%Y-%m-%d %H:%M:%S UTC') in $((SECONDS - start)) s"
} >"$stamp"
rm -f "$prefix/.paygw-build-partial"
cached || die "installed, but $prefix/bin/pg_config does not report PostgreSQL $MAJOR"
msg "built PostgreSQL $version in $((SECONDS - start)) s"
echo "$prefix/bin/pg_config"
