#!/usr/bin/env bash
# test/checks/22-app-locks.sh -- the application's locks never make the
# worker throw a result away or strand an invoice (default lease, 5 min):
#   1. while the worker's requests are in flight, the application holds the
#      invoice rows for 2 s: an INSERT into its own table with a foreign key
#      to paygw.invoices (FOR KEY SHARE), a SELECT ... FOR SHARE, and an
#      UPDATE of some rows.  Every invoice is applied soon after the locks
#      go, with exactly one event; rows under a foreign key alone are applied
#      at once; the outcomes held back show in worker_status.busy, and none
#      is lost;
#   2. rows the application holds when they fall due are claimed on a later
#      pass, soon after the locks go.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"

for s in lease_time timeout max_concurrency max_per_account; do
    sqlv "ALTER SYSTEM SET paygw.$s TO DEFAULT" >/dev/null
done
sqlv "ALTER SYSTEM SET paygw.timeout = '10s'" >/dev/null
sqlv "ALTER SYSTEM SET paygw.max_concurrency = 64" >/dev/null
sqlv "ALTER SYSTEM SET paygw.max_per_account = 64" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
cleanup() {
    # this check's data goes, whatever happened (later checks count invoices)
    q -d postgres -c "DROP TABLE IF EXISTS app_orders" -c "DROP EXTENSION IF EXISTS paygw CASCADE" \
        >/dev/null 2>&1 || true
    for s in lease_time timeout max_concurrency max_per_account; do
        q -d postgres -c "ALTER SYSTEM RESET paygw.$s" >/dev/null 2>&1 || true
    done
    q -d postgres -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    jobs -p | xargs -r kill 2>/dev/null || true
}
trap cleanup EXIT
[ "$(sqlv "SELECT current_setting('paygw.lease_time')")" = 5min ] || check_fail "paygw.lease_time is not the default"
[ "$(sqlv "SELECT current_setting('paygw.timeout')")" = 10s ] || check_fail "paygw.timeout is not the default"

worker_db_ready
q -d postgres >/dev/null <<'SQL'
-- the application's own table, pointing at paygw's invoices
CREATE TABLE app_orders (id serial PRIMARY KEY,
                         invoice_id bigint NOT NULL REFERENCES paygw.invoices (id));
SQL
wait_for 15 '[ -n "$(worker_pid)" ]' || check_fail "worker not running"
wait_for 10 '[ "$(sqlv "SELECT max_concurrency FROM paygw.worker_status")" = 64 ]' \
    || check_fail "worker did not take up max_concurrency = 64"

n=50
in_batch() { echo "payment_id::bigint > $1 AND payment_id::bigint <= $1 + $n"; }
paid() { sqlv "SELECT count(*) FROM paygw.invoices WHERE $(in_batch "$1") AND status = 'paid'"; }
verify() {   # verify BASE WHAT: paid, one event, applied, nothing leased
    local bad
    bad=$(sqlv "SELECT count(*) FROM paygw.invoices i WHERE $(in_batch "$1")
                   AND (status <> 'paid' OR lease_token IS NOT NULL
                        OR (SELECT count(*) FROM paygw.invoice_events e
                             WHERE e.invoice_id = i.id AND e.applied) <> 1
                        OR (SELECT count(*) FROM paygw.invoice_events e
                             WHERE e.invoice_id = i.id) <> 1)")
    [ "$bad" = 0 ] || check_fail "$2: $bad invoices not paid exactly once"
}
stat() { sqlv "SELECT $1 FROM paygw.worker_status"; }

# --- 1. locks taken while the requests are in flight --------------------------
emu_post reset '{}'
emu_post config '{"delay_ms": 3000}'
base=8000000
busy0=$(stat busy); lost0=$(stat lost)
sqlv "SELECT count(paygw_track('okepay', ($base + i)::text)) FROM generate_series(1, $n) i" >/dev/null
wait_for 10 '[ "$(stat in_flight)" -ge 40 ]' || check_fail "requests not in flight"
lo=$(sqlv "SELECT min(id) FROM paygw.invoices WHERE $(in_batch $base)")
# a foreign key from the application's table on every invoice (FOR KEY SHARE),
# FOR SHARE on 20 of them, an UPDATE of 10 more; each held for 6 s from when
# it is taken, which is before the answers arrive (3 s after they were asked)
psql -X -q -d postgres -c "BEGIN" \
    -c "INSERT INTO app_orders (invoice_id) SELECT id FROM paygw.invoices WHERE $(in_batch $base)" \
    -c "SELECT pg_sleep(6) AS held_fk" -c "COMMIT" >/dev/null &
fk=$!
psql -X -q -d postgres -c "BEGIN" \
    -c "SELECT count(*) FROM (SELECT id FROM paygw.invoices WHERE id >= $lo + 10 AND id < $lo + 30 FOR SHARE) s" \
    -c "SELECT pg_sleep(6) AS held_share" -c "COMMIT" >/dev/null &
share=$!
psql -X -q -d postgres -c "BEGIN" \
    -c "UPDATE paygw.invoices SET response = response WHERE id >= $lo + 30 AND id < $lo + 40" \
    -c "SELECT pg_sleep(6) AS held_update" -c "COMMIT" >/dev/null &
upd=$!
wait_for 5 '[ "$(sqlv "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '\''SELECT pg_sleep(6) AS held_%'\''")" = 3 ]' \
    || check_fail "the application sessions did not take their locks"
[ "$(paid $base)" = 0 ] || check_fail "answers arrived before the locks were taken; the check proves nothing"
# the answers arrive while the locks are held; the foreign key alone does not
# hold anything back
wait_for 6 '[ "$(sqlv "SELECT count(*) FROM paygw.invoices WHERE $(in_batch $base) AND status = '\''paid'\'' AND (id < $lo + 10 OR id >= $lo + 40)")" = 20 ]' \
    || check_fail "invoices under a foreign key only were not applied while it was held"
held=$(paid $base)
(( held <= 20 )) || check_fail "$held invoices applied while FOR SHARE / UPDATE locks were held"
wait "$fk" "$share" "$upd"
t0=$(date +%s%N)
wait_for 10 '[ "$(paid '$base')" = "$n" ]' \
    || check_fail "only $(paid $base) of $n paid 10 s after the locks went (lease is 5 min)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
verify $base "locks in flight"
busy=$(( $(stat busy) - busy0 )); lost=$(( $(stat lost) - lost0 ))
(( busy > 0 )) || check_fail "worker_status.busy did not count the held-back outcomes"
(( lost == 0 )) || check_fail "worker_status.lost = $lost: results were thrown away"
echo "locks held over the answers: $held applied under the foreign key meanwhile; all $n paid ${ms} ms after the locks went; busy +$busy, lost +$lost"
check_ok "application locks in flight: no result lost, one event each, applied soon after"

# --- 2. rows held when they fall due -----------------------------------------
# due in 1.5 s; the application holds them FOR SHARE from now for 3 s
emu_post config '{"delay_ms": 100}'
base=8100000
sqlv "INSERT INTO paygw.invoices (provider, account, payment_id, next_check_at)
      SELECT 'okepay', 'ok', ($base + i)::text, now() + interval '1.5 s' FROM generate_series(1, $n) i" >/dev/null
psql -X -q -d postgres -c "BEGIN" \
    -c "SELECT count(*) FROM (SELECT id FROM paygw.invoices WHERE $(in_batch $base) FOR SHARE) s" \
    -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null &
share=$!
sleep 2.5
[ "$(paid $base)" = 0 ] || check_fail "invoices held FOR SHARE were applied while held"
wait "$share"
t0=$(date +%s%N)
wait_for 10 '[ "$(paid '$base')" = "$n" ]' \
    || check_fail "rows held when due: only $(paid $base) of $n paid 10 s after the lock went"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
verify $base "held when due"
echo "rows held when they fell due: all $n paid ${ms} ms after the lock went"
check_ok "rows the application holds are claimed on a later pass"

emu_post config '{"delay_ms": 0}'
