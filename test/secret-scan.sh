#!/usr/bin/env bash
# test/secret-scan.sh -- run the whole test suite with log_min_messages =
# debug5, log_statement = all and paygw.debug = on, sampling
# pg_stat_activity every 50 ms, then search the server's logs, the samples,
# the emulator's log and the regression output for every secret the suite
# uses and every decrypted key byte string (test/secret_scan.py).  Only the
# test's own statements that write credentials may contain them.
#
#   bash test/secret-scan.sh        (run-tests.sh runs it as its last stage)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

conf=$(mktemp /tmp/paygw-scan-conf.XXXXXX)
samples=$(mktemp /tmp/paygw-scan-activity.XXXXXX)
out=$(mktemp /tmp/paygw-scan-run.XXXXXX)
workdir=
cleanup() {
    rm -f "$conf" "$samples" "$out"
    [[ -n $workdir && -d $workdir && ${PAYGW_SCAN_KEEP:-0} != 1 ]] && rm -rf "$workdir"
    return 0
}
trap cleanup EXIT

cat "$here/postgresql.conf" > "$conf"
cat >> "$conf" <<'CONF'
# secret scan: everything that could carry a secret is logged
log_min_messages = debug5
log_min_error_statement = debug5
log_statement = all
log_connections = on
log_error_verbosity = verbose
paygw.debug = on
logging_collector = on
log_destination = 'stderr,csvlog'
log_directory = 'log'
log_rotation_size = 0
CONF
chmod 644 "$conf" "$samples"
chmod 666 "$samples"

rc=0
PAYGW_NESTED=1 PAYGW_KEEP=1 PAYGW_TEST_CONF=$conf PAYGW_ACTIVITY_LOG=$samples \
    bash "$here/run-tests.sh" --no-install >"$out" 2>&1 || rc=$?
workdir=$(sed -n 's/^==> work dir kept: //p' "$out" | tail -1)
tail -n 3 "$out"
if (( rc != 0 )); then
    echo "the suite itself failed under debug logging (exit $rc):"
    tail -n 60 "$out"
    exit 1
fi
[[ -n $workdir && -d $workdir ]] || { echo "no work dir kept"; exit 1; }
/usr/bin/python3 "$here/secret_scan.py" --repo "$(dirname "$here")" \
    --workdir "$workdir" --samples "$samples"
