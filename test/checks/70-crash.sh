#!/usr/bin/env bash
# test/checks/70-crash.sh -- kill -9 of the postmaster while a paygw_refresh
# pass (in one database) and the worker (in "postgres") are in the middle of
# their batches; restart; then:
#   - every invoice is in a state it legitimately reached: pending with no
#     applied event, or the status its last applied event says;
#   - exactly one applied event per invoice that changed;
#   - nothing stays leased: after the leases expire every invoice ends paid.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
db=paygw_check_crash
data=$server_data
n=150

consistent() {   # consistent DB: print the number of invoices in an illegitimate state
    q -d "$1" -c "
        SELECT count(*) FROM paygw.invoices i
         WHERE NOT (
               (i.status = 'pending' AND NOT EXISTS (SELECT 1 FROM paygw.invoice_events e
                                                      WHERE e.invoice_id = i.id AND e.applied))
            OR i.status = (SELECT e.new_status FROM paygw.invoice_events e
                            WHERE e.invoice_id = i.id AND e.applied ORDER BY e.id DESC LIMIT 1))
            OR (SELECT count(*) FROM paygw.invoice_events e WHERE e.invoice_id = i.id AND e.applied) > 1"
}

new_db "$db"
q -d postgres -c "CREATE EXTENSION IF NOT EXISTS paygw" >/dev/null
q -d postgres -v emu="$emu" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay')
ON CONFLICT (name) DO NOTHING;
SQL
curl -sf -X POST -o /dev/null "$emu/_control/reset"
curl -sf -X POST -o /dev/null -d '{"delay_ms": 400}' "$emu/_control/config"

q -d "$db" -c "SELECT count(paygw_track('okepay', (6000000 + i)::text)) FROM generate_series(1, $n) i" >/dev/null
q -d postgres -c "SELECT count(paygw_track('okepay', (6100000 + i)::text)) FROM generate_series(1, $n) i" >/dev/null
# a refresh pass in the checker database, long enough to be caught mid-way
psql -X -d "$db" -At -c "SELECT paygw_refresh($n)" >/dev/null 2>&1 &
wait_for 10 '[ "$(curl -sf "$emu/_control/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"in_flight\"] > 8)")" = True ]' \
    || check_fail "nothing in flight before the crash"
sleep 0.3
pm=$(head -1 "$data/postmaster.pid")
kill -KILL "$pm"
wait_for 10 '! kill -0 '"$pm"' 2>/dev/null' || check_fail "postmaster $pm did not die"
# the children notice the postmaster's death and exit; then restart
wait_for 20 '! pgrep -f "postgres: .*paygw" >/dev/null' || true
sleep 1
echo "killed the postmaster (kill -9) with a refresh pass and a worker batch in flight"
curl -sf -X POST -o /dev/null -d '{"delay_ms": 0}' "$emu/_control/config"
restart_server || check_fail "server did not restart after the crash"
wait_for 30 pg_isready -q || check_fail "server not ready after restart"

# right after recovery: every state is one that was legitimately reached
for d in "$db" postgres; do
    bad=$(consistent "$d")
    [ "$bad" = 0 ] || check_fail "$bad invoices in $d are in a state no event explains"
done
echo "after recovery: every invoice's status matches its history in both databases"

# the worker finishes its own; a refresh finishes the other database's
wait_for 60 '[ "$(q -d postgres -c "SELECT count(*) FROM paygw.invoices WHERE payment_id::bigint > 6100000 AND payment_id::bigint <= 6100000 + '"$n"' AND status = '\''paid'\''")" = '"$n"' ]' \
    || check_fail "worker did not finish its invoices after the crash"
q -d "$db" -c "SELECT paygw_refresh($n)" >/dev/null
[ "$(q -d "$db" -c "SELECT count(*) FROM paygw.invoices WHERE status = 'paid'")" = "$n" ] \
    || check_fail "refresh after the crash left invoices unpaid"
for d in "$db" postgres; do
    [ "$(consistent "$d")" = 0 ] || check_fail "inconsistent invoices in $d at the end"
    [ "$(q -d "$d" -c "SELECT count(*) FROM paygw.invoices WHERE lease_until IS NOT NULL OR lease_token IS NOT NULL")" = 0 ] \
        || check_fail "invoices still leased in $d"
done
check_ok "kill -9 of the postmaster mid-pass: no invoice lost, double-applied or left leased"
q -d postgres -c "DROP DATABASE $db"
q -d postgres -c "DROP EXTENSION paygw CASCADE" >/dev/null
