#!/usr/bin/env bash
# test/run-tests.sh -- paygw's whole test suite (`make test`, .ci/run).
#
#   bash test/run-tests.sh [--no-install] [--keep]
#
#   --no-install  skip test/install-deps.sh
#   --keep        keep the work dir (cluster data, logs) and print its path
#
# Steps: install-deps, build + install, start a throwaway cluster and the
# gateway emulator, then run the stages
#   (a) pg_regress: `make installcheck` (suites = the Makefile's REGRESS)
#   (b) test/emulator/selftest.py, if present
#   (c) every executable test/checks/*.sh, in name order
# and print "N passed, N failed" last.
# Exit: 0 all stages passed, 1 a stage failed, 2 setup failed (deps, build,
# cluster or emulator start), 130/143 interrupted.
set -euo pipefail

# shellcheck source=test/lib.sh
. "$(dirname "$0")/lib.sh"

install=1
for arg in "$@"; do
    case $arg in
        --no-install) install=0 ;;
        --keep) export PAYGW_KEEP=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "run-tests: unknown option: $arg" >&2; exit 2 ;;
    esac
done

# the test cluster preloads paygw so the worker checks can run
export PAYGW_TEST_CONF=${PAYGW_TEST_CONF:-$(cd "$(dirname "$0")" && pwd)/postgresql.conf}

STAGE_TIMEOUT=${PAYGW_STAGE_TIMEOUT:-900}   # seconds per stage (see lib.sh)
passed=0
failed=0
results=()

stage_result() {   # stage_result NAME RC
    if (( $2 == 0 )); then
        passed=$((passed + 1)); results+=("PASS  $1")
        printf 'PASS  %s\n' "$1"
    else
        failed=$((failed + 1)); results+=("FAIL  $1")
        printf 'FAIL  %s (exit %s)\n' "$1" "$2"
    fi
}

# --- setup -----------------------------------------------------------------
if (( install )); then
    bash "$PAYGW_TEST_DIR/install-deps.sh" || paygw_die "install-deps failed"
fi
paygw_build_install || paygw_die "build/install failed"
paygw_start_cluster
paygw_start_emulator
mkdir -p "$PAYGW_WORKDIR/logs"
# for the secret scan: sample pg_stat_activity every 50 ms while the suite runs
if [[ -n ${PAYGW_ACTIVITY_LOG:-} ]]; then
    echo "SELECT q FROM (SELECT 0 AS o, '<<sample>>' AS q UNION ALL SELECT 1, query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query <> '') s ORDER BY o \\watch 0.05" \
        | psql -X -At -d postgres >>"$PAYGW_ACTIVITY_LOG" 2>/dev/null &
fi

# --- (a) pg_regress ----------------------------------------------------------
paygw_msg "stage: pg_regress (make installcheck)"
rm -f "$PAYGW_SRC_DIR/regression.diffs" "$PAYGW_SRC_DIR/regression.out"
log=$PAYGW_WORKDIR/logs/installcheck.log
rc=0
paygw_run_logged "$log" "$PAYGW_SRC_DIR" \
    make --no-print-directory installcheck "PG_CONFIG=$PG_CONFIG" || rc=$?
# pg_regress's own summary: from "running regression test queries" (15) or
# "# using postmaster" (16 on: TAP-style output) on.
start_re='running regression test queries|^# using postmaster'
if grep -Eq "$start_re" "$log"; then
    awk -v re="$start_re" '$0 ~ re { on = 1 } on && !/^make(\[[0-9]+\])?: /' "$log"
else
    paygw_tail "$log" 40 "make installcheck output"
fi
if (( rc != 0 )); then
    (( rc == 124 )) && echo "pg_regress: timed out after ${STAGE_TIMEOUT}s"
    if [[ -s $PAYGW_SRC_DIR/regression.diffs ]]; then
        echo "----- regression.diffs (first 400 lines) -----"
        head -n 400 "$PAYGW_SRC_DIR/regression.diffs"
        echo "----- end of regression.diffs -----"
    fi
    paygw_show_logs 80
fi
stage_result pg_regress "$rc"

# --- (b) emulator self-test --------------------------------------------------
selftest=$PAYGW_TEST_DIR/emulator/selftest.py
if [[ -f $selftest ]]; then
    paygw_msg "stage: emulator selftest"
    log=$PAYGW_WORKDIR/logs/selftest.log
    rc=0
    paygw_run_logged "$log" "$PAYGW_REPO_DIR" /usr/bin/python3 "$selftest" || rc=$?
    if (( rc != 0 )); then
        paygw_tail "$log" 100 "selftest output"
        paygw_tail "$PAYGW_WORKDIR/emulator.log" 80 emulator.log
    fi
    stage_result selftest "$rc"
fi

# --- (c) checks --------------------------------------------------------------
checks=()
if [[ -d $PAYGW_TEST_DIR/checks ]]; then
    mapfile -t checks < <(find "$PAYGW_TEST_DIR/checks" -maxdepth 1 -type f -name '*.sh' | LC_ALL=C sort)
fi
for check in "${checks[@]}"; do
    name=checks/$(basename "$check")
    if [[ ! -x $check ]]; then
        echo "note: $name is not executable, skipped (chmod +x it)"
        continue
    fi
    paygw_msg "stage: $name"
    log=$PAYGW_WORKDIR/logs/$(basename "$check" .sh).log
    rc=0
    paygw_run_logged "$log" "$PAYGW_REPO_DIR" "$check" || rc=$?
    if (( rc != 0 )); then
        (( rc == 124 )) && echo "$name: timed out after ${STAGE_TIMEOUT}s"
        paygw_tail "$log" 200 "$name output"
        paygw_tail "$PAYGW_WORKDIR/server.log" 80 server.log
    fi
    stage_result "$name" "$rc"
done

paygw_stop

# --- (d) secret scan: the whole suite again, at full debug logging -----------
if [[ ${PAYGW_NESTED:-0} != 1 && ${PAYGW_SECRET_SCAN:-1} != 0 ]]; then
    paygw_msg "stage: secret-scan (whole suite again with debug5 logging)"
    log=$(mktemp /tmp/paygw-secret-scan.XXXXXX)
    rc=0
    paygw_run_logged "$log" "$PAYGW_REPO_DIR" bash "$PAYGW_TEST_DIR/secret-scan.sh" || rc=$?
    if (( rc != 0 )); then
        paygw_tail "$log" 120 "secret-scan output"
    else
        grep -E '^secret scan' "$log" || true
    fi
    rm -f "$log"
    stage_result secret-scan "$rc"
fi

# --- summary -----------------------------------------------------------------
echo "===== summary ====="
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
(( failed == 0 )) || exit 1
exit 0
