#!/usr/bin/env bash
# test/checks/20-worker.sh -- the background worker (the test cluster
# preloads paygw with paygw.database = 'postgres'):
#   1. while the extension does not exist only the launcher runs, quietly,
#      and CREATE EXTENSION starts the worker at once;
#   2. a pending invoice becomes paid after the gateway flips it, with
#      exactly one event and one NOTIFY;
#   3. a commit that tracks an invoice wakes it (naptime set to 10 min);
#   4. SIGHUP reloads settings (paygw.max_concurrency observed at the gateway);
#   5. pg_terminate_backend (SIGTERM) during a slow gateway stops it within a
#      second, it comes back, and every invoice in flight ends paid exactly
#      once with no lease left;
#   6. kill -9 mid-batch: after the crash restart every invoice ends paid,
#      with exactly one event each and no lease left behind.
# Every wait is on a condition with a deadline.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
log=$PAYGW_WORKDIR/server.log
log_start=$(stat -c %s "$log")   # only what this check causes is examined

# --- 1. quiet while the extension is missing --------------------------------
launcher_pid() { sqlv "SELECT pid FROM pg_stat_activity WHERE backend_type = 'paygw launcher'"; }
wait_for 10 '[ -n "$(launcher_pid)" ]' || check_fail "launcher not running"
[ "$(sqlv "SELECT count(*) FROM pg_extension WHERE extname = 'paygw'")" = 0 ] \
    || check_fail "extension unexpectedly present in database postgres"
sleep 1
[ -z "$(worker_pid)" ] || check_fail "a worker runs in database postgres without the extension"
if tail -c +"$((log_start + 1))" "$log" | grep -E '(ERROR|FATAL)' | grep -i 'paygw' >/dev/null; then
    check_fail "paygw logged errors while the extension was missing"
fi
check_ok "without the extension only the launcher runs (pid $(launcher_pid)), quietly"

emu_post reset '{}'
new_db_in_place() {
    sqlv "CREATE EXTENSION paygw"
    q -d postgres -v emu="$emu" <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay');
SQL
}
new_db_in_place
# the commit of CREATE EXTENSION wakes the launcher (its naptime is 10 s)
wait_for 3 '[ -n "$(worker_pid)" ]' || check_fail "CREATE EXTENSION did not start a worker within 3 s"
check_ok "CREATE EXTENSION starts the worker (pid $(worker_pid))"

# --- 2. pending -> paid, one event, one notification ------------------------
notes=$PAYGW_WORKDIR/notify.out
# psql prints notifications after each statement: keep it busy for 15 s
{ echo "LISTEN paygw_status;"; for _ in $(seq 150); do echo "SELECT pg_sleep(0.1);"; done; } \
    | psql -X -d postgres -At > "$notes" 2>&1 &
listener=$!
sleep 0.5
inv=$(sqlv "SELECT paygw_track('okepay', '101')")
wait_for 10 '[ "$(sqlv "SELECT check_count > 0 FROM paygw.invoices WHERE id = $inv")" = t ]' \
    || check_fail "worker did not check invoice $inv"
[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = pending ] \
    || check_fail "invoice $inv should still be pending"
emu_post set '{"provider":"okepay","id":"101","status":"confirmed"}'
wait_for 10 '[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = paid ]' \
    || check_fail "invoice $inv did not become paid"
wait_for 5 grep -q "\"invoice_id\" : $inv" "$notes" || check_fail "no notification: $(cat "$notes")"
sleep 0.5
kill "$listener" 2>/dev/null || true; wait "$listener" 2>/dev/null || true
[ "$(grep -c "\"invoice_id\" : $inv" "$notes")" = 1 ] || check_fail "expected exactly one notification"
grep -q '"old_status" : "pending", "new_status" : "paid"' "$notes" || check_fail "notification payload: $(grep Async "$notes")"
[ "$(sqlv "SELECT count(*) FROM paygw.invoice_events WHERE invoice_id = $inv")" = 1 ] \
    || check_fail "expected exactly one event"
check_ok "pending -> paid by the worker: one event, one notification"

# --- 3. woken by a commit, not by its naptime --------------------------------
sqlv "ALTER SYSTEM SET paygw.naptime = '10min'" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
sleep 1.5   # let the worker go back to sleep with the new naptime
t0=$(date +%s%N)
inv=$(sqlv "SELECT paygw_track('okepay', '106')")
wait_for 5 '[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = paid ]' \
    || check_fail "tracking did not wake the worker"
echo "tracked invoice checked $(( ($(date +%s%N) - t0) / 1000000 )) ms after commit (naptime 10min)"
check_ok "commit of a tracked invoice wakes the worker"
# an invoice moved to fall due in 2 s is checked then, not after the
# 10-minute naptime (the commit wakes the worker, which recomputes its sleep)
emu_post set '{"provider":"okepay","id":"102","status":"confirmed"}'
inv=$(sqlv "SELECT paygw_track('okepay', '102')")
wait_for 5 '[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = paid ]' || check_fail "invoice 102 not checked"
sqlv "UPDATE paygw.invoices SET status = 'pending', next_check_at = now() + interval '2 s' WHERE id = $inv" >/dev/null
sleep 0.3
t0=$(date +%s%N)
wait_for 6 '[ "$(sqlv "SELECT check_count FROM paygw.invoices WHERE id = $inv")" = 2 ]' \
    || check_fail "the worker slept past the invoice's next_check_at"
echo "invoice due in 2 s checked after $(( ($(date +%s%N) - t0) / 1000000 )) ms (naptime 10min)"
check_ok "the worker wakes when the next invoice falls due"

# --- 4. SIGHUP: a new concurrency limit takes effect -------------------------
sqlv "ALTER SYSTEM SET paygw.max_concurrency = 2" >/dev/null
sqlv "ALTER SYSTEM SET paygw.max_per_account = 2" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
wait_for 10 '[ "$(sqlv "SELECT max_concurrency FROM paygw.worker_status")" = 2 ]' \
    || check_fail "worker did not take up paygw.max_concurrency = 2"
# the emulator finishes a delayed answer even when its client has gone (an
# earlier check cancels calls): let those drain so max_in_flight is ours
wait_for 15 '[ "$(emu_stat "d[\"in_flight\"]")" = 0 ]' || check_fail "emulator never drained"
emu_post reset '{}'
emu_post config '{"delay_ms": 200}'
sqlv "SELECT count(paygw_track('okepay', (2000000 + i)::text)) FROM generate_series(1, 12) i" >/dev/null
wait_for 20 '[ "$(sqlv "SELECT count(*) FROM paygw.invoices WHERE payment_id::bigint > 2000000 AND status = '\''paid'\''")" = 12 ]' \
    || check_fail "synthetic invoices not all paid"
peak=$(emu_stat 'd["max_in_flight"]')
(( peak <= 2 )) || check_fail "max_in_flight $peak > paygw.max_concurrency 2 after reload"
echo "after SIGHUP with max_concurrency = 2: gateway saw at most $peak requests at once"
sqlv "ALTER SYSTEM RESET paygw.max_concurrency" >/dev/null
sqlv "ALTER SYSTEM RESET paygw.max_per_account" >/dev/null
sqlv "ALTER SYSTEM RESET paygw.naptime" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
check_ok "SIGHUP reloads the worker's settings"

# --- 5. SIGTERM with requests in flight --------------------------------------
emu_post config '{"delay_ms": 30000}'
sqlv "SELECT count(paygw_track('okepay', (3000000 + i)::text)) FROM generate_series(1, 8) i" >/dev/null
wait_for 10 '[ "$(sqlv "SELECT in_flight > 0 FROM paygw.worker_status")" = t ]' \
    || check_fail "no request in flight"
pid=$(worker_pid)
t0=$(date +%s%N)
sqlv "SELECT pg_terminate_backend($pid)" >/dev/null
wait_for 5 '[ ! -e "/proc/$pid" ]' || check_fail "worker $pid still alive 5 s after SIGTERM"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
(( ms < 1000 )) || check_fail "worker took ${ms} ms to stop"
echo "pg_terminate_backend with requests in flight: worker exited after ${ms} ms"
emu_post config '{"delay_ms": 0}'
wait_for 15 '[ -n "$(worker_pid)" ]' || check_fail "worker did not come back"
wait_for 20 '[ "$(sqlv "SELECT count(*) FROM paygw.invoices WHERE payment_id::bigint > 3000000 AND status = '\''paid'\''")" = 8 ]' \
    || check_fail "invoices in flight at SIGTERM were not completed after the restart"
bad=$(sqlv "SELECT count(*) FROM paygw.invoices i WHERE payment_id::bigint > 3000000
             AND ((SELECT count(*) FROM paygw.invoice_events e WHERE e.invoice_id = i.id) <> 1
                  OR lease_until IS NOT NULL OR lease_token IS NOT NULL)")
[ "$bad" = 0 ] || check_fail "$bad invoices double-applied or still leased after the termination"
check_ok "pg_terminate_backend stops the worker promptly; it restarts and finishes each invoice once"

# --- 6. kill -9 mid-batch ----------------------------------------------------
emu_post reset '{}'
emu_post config '{"delay_ms": 300}'
n=200
sqlv "SELECT count(paygw_track('okepay', (4000000 + i)::text)) FROM generate_series(1, $n) i" >/dev/null
wait_for 20 '[ "$(sqlv "SELECT count(*) FROM paygw.invoices WHERE payment_id::bigint > 4000000 AND status = '\''paid'\''")" -ge 20 ]' \
    || check_fail "worker made no progress"
done_before=$(sqlv "SELECT count(*) FROM paygw.invoices WHERE payment_id::bigint > 4000000 AND status = 'paid'")
kill -KILL "$(worker_pid)"
echo "killed the worker (kill -9) with about $done_before of $n done"
wait_for 30 pg_isready -q || check_fail "server did not come back after the crash"
wait_for 30 '[ -n "$(worker_pid 2>/dev/null)" ]' || check_fail "worker did not restart after the crash"
wait_for 60 '[ "$(sqlv "SELECT count(*) FROM paygw.invoices WHERE payment_id::bigint > 4000000 AND status = '\''paid'\''")" = "$n" ]' \
    || check_fail "not every invoice ended paid after the crash"
bad=$(sqlv "SELECT count(*) FROM paygw.invoices i WHERE payment_id::bigint > 4000000
             AND (SELECT count(*) FROM paygw.invoice_events e WHERE e.invoice_id = i.id) <> 1")
[ "$bad" = 0 ] || check_fail "$bad invoices do not have exactly one event"
leased=$(sqlv "SELECT count(*) FROM paygw.invoices WHERE lease_until IS NOT NULL OR lease_token IS NOT NULL")
[ "$leased" = 0 ] || check_fail "$leased invoices still leased"
twice=$(emu_stat 'sum(1 for k, v in d["by_payment"].items() if k.startswith("okepay:400") and v > 1)')
echo "after kill -9: $n/$n paid, one event each, no lease left ($twice asked for twice: the dead worker's requests in flight, asked again by the next run)"
emu_post config '{"delay_ms": 0}'
check_ok "a killed worker comes back and every invoice ends in the right state exactly once"

sqlv "DROP EXTENSION paygw CASCADE" >/dev/null
