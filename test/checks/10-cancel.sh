#!/usr/bin/env bash
# test/checks/10-cancel.sh -- pg_cancel_backend and statement_timeout stop a
# paygw_status call that is waiting on a slow gateway, and the session stays
# usable.
# Both must stop the call within 200 ms (the measured figures are printed;
# they include psql's own round trips, so the bound is conservative).
set -euo pipefail
. "$(dirname "$0")/lib.bash"

db=paygw_check_cancel
new_db "$db" "delay=4000"
out=$PAYGW_WORKDIR/cancel.out

# a session that starts a 4 s call, then (after the cancel) proves it is alive
psql -X -d "$db" -v ON_ERROR_STOP=0 -At > "$out" 2>&1 <<'SQL' &
SET application_name = 'paygw-cancel-check';
SELECT status FROM paygw_status('okepay', '106', 'ok:delay=4000');
SELECT 'alive:' || status FROM paygw_status('okepay', '106', 'ok');
SQL
bg=$!

active() {
    [ "$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'paygw-cancel-check' AND state = 'active'
           AND query LIKE '%delay=4000%'")" = 1 ]
}
wait_for 10 active || check_fail "the slow call never became active"
sleep 0.3   # let it settle into the transfer

t0=$(date +%s%N)
q -d postgres -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                   WHERE application_name = 'paygw-cancel-check'" > /dev/null
wait_for 5 grep -q "canceling statement due to user request" "$out" \
    || check_fail "no cancel error within 5 s: $(cat "$out")"
t1=$(date +%s%N)
wait "$bg" || true
grep -q '^alive:paid$' "$out" || check_fail "session not usable after cancel: $(cat "$out")"
ms=$(( (t1 - t0) / 1000000 ))
(( ms < 200 )) || check_fail "pg_cancel_backend took ${ms} ms to stop the call (limit 200 ms)"
echo "pg_cancel_backend: call stopped after ${ms} ms (includes psql round trips)"

# statement_timeout: the call ends with the timeout error, well before the
# gateway would answer
t0=$(date +%s%N)
err=$(psql -X -d "$db" -At -c "SET statement_timeout = '500ms'" \
        -c "SELECT status FROM paygw_status('okepay', '106', 'ok:delay=4000')" 2>&1 || true)
t1=$(date +%s%N)
case $err in
    *"canceling statement due to statement timeout"*) ;;
    *) check_fail "expected a statement_timeout error, got: $err" ;;
esac
ms=$(( (t1 - t0) / 1000000 ))
(( ms < 500 + 200 )) || check_fail "statement_timeout=500ms ended the call after ${ms} ms (limit 700 ms)"
echo "statement_timeout=500ms: psql returned after ${ms} ms (connection setup included)"

check_ok "cancel and statement_timeout interrupt paygw_status; session stays usable"
q -d postgres -c "DROP DATABASE $db"
