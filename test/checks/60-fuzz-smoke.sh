#!/usr/bin/env bash
# test/checks/60-fuzz-smoke.sh -- a short libFuzzer run of every reply parser
# and of Obmenka's reply signature check (test/fuzz/run.sh), in its own
# throwaway single-user cluster under ASan (not the suite's shared cluster):
#   1. the harness still catches each planted bug kind (--selftest);
#   2. each target fuzzes for PAYGW_FUZZ_SMOKE_SECONDS (15) seconds, after
#      running its seed corpus and its minimized regressions;
#   3. the seeds and regressions once more in a LATIN1 and in an SQL_ASCII
#      database (a reply's characters need not exist in the server encoding).
# About 2 minutes.  Installs clang and libclang-rt-14-dev when missing and
# running as root (CI); otherwise skips with a note.  Findings are printed
# (the input's bytes are in the output); see test/fuzz/README.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)

fuzzer_rt_present() {
    command -v clang >/dev/null 2>&1 &&
        [[ -f $(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a) ]] &&
        [[ -f $(clang -print-file-name=libclang_rt.asan-x86_64.so) ]]
}
if ! fuzzer_rt_present; then
    if (( EUID != 0 )); then
        echo "skipped: clang with libFuzzer/ASan runtimes not installed (apt-get install clang libclang-rt-14-dev)"
        exit 0
    fi
    log=$(mktemp /tmp/paygw-fuzz-apt.XXXXXX)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            clang libclang-rt-14-dev >"$log" 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            clang libclang-rt-14-dev >>"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
    fi
    rm -f "$log"
    fuzzer_rt_present || { echo "FAIL: clang installed but its libFuzzer/ASan runtimes are missing" >&2; exit 1; }
    echo "installed clang and libclang-rt-14-dev"
fi

tmp=$(mktemp -d /tmp/paygw-fuzz-smoke.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"   # the backend (OS user postgres) writes under it

rc=0
bash "$repo/test/fuzz/run.sh" --selftest --out "$tmp/out" --build "$tmp/build" \
    "${PAYGW_FUZZ_SMOKE_SECONDS:-15}" || rc=1
for enc in LATIN1 SQL_ASCII; do
    bash "$repo/test/fuzz/run.sh" --replay --encoding "$enc" --out "$tmp/out-$enc" \
        --build "$tmp/build" || rc=1
done
if (( rc )); then
    echo "FAIL: fuzz smoke run found a problem (see above; reproduce with test/fuzz/run.sh --files)" >&2
else
    echo "ok: fuzz smoke run: no crash, leak or hang"
fi
exit "$rc"
