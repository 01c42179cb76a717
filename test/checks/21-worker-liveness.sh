#!/usr/bin/env bash
# test/checks/21-worker-liveness.sh -- no invoice waits out a lease, at the
# settings users get.  The worker runs with paygw's DEFAULT timings here
# (lease 5 min, timeout 10 s, backoff from 30 s, max_concurrency 16,
# max_per_account 8); the gateway answers after 150 ms.  Each disruption
# hits a batch of 200 tracked invoices in flight, and every invoice must end
# paid within seconds (not after the 5-minute lease), with exactly one
# applied event:
#   1. pg_terminate_backend: an orderly stop -- the unanswered requests'
#      leases are given back before the worker exits;
#   2. an ERROR outside the apply (the worker's claim fails once): the next
#      run takes over the dead run's leases at once;
#   3. kill -9 of the worker (the server restarts every backend);
#   4. an immediate restart of the whole server;
#   5. the postmaster killed with requests in flight: the worker stops
#      calling the gateway at once, not when its requests end.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
log=$PAYGW_WORKDIR/server.log

# paygw's defaults, whatever test/postgresql.conf shortened
for s in timeout backoff_initial backoff_max lease_time naptime max_concurrency max_per_account batch_size; do
    sqlv "ALTER SYSTEM SET paygw.$s TO DEFAULT" >/dev/null
done
sqlv "ALTER SYSTEM SET paygw.timeout = '10s'" >/dev/null
sqlv "ALTER SYSTEM SET paygw.backoff_initial = '30s'" >/dev/null
sqlv "ALTER SYSTEM SET paygw.backoff_max = '1h'" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
cleanup_settings() {
    for s in timeout backoff_initial backoff_max lease_time naptime max_concurrency max_per_account batch_size; do
        q -d postgres -c "ALTER SYSTEM RESET paygw.$s" >/dev/null 2>&1 || true
    done
    q -d postgres -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
}
trap cleanup_settings EXIT
[ "$(sqlv "SELECT current_setting('paygw.lease_time')")" = 5min ] || check_fail "paygw.lease_time is not the default"
[ "$(sqlv "SELECT current_setting('paygw.timeout')")" = 10s ] || check_fail "paygw.timeout is not the default"

worker_db_ready
wait_for 15 '[ -n "$(worker_pid)" ]' || check_fail "worker not running"
wait_for 10 '[ "$(sqlv "SELECT max_concurrency FROM paygw.worker_status")" = 16 ]' \
    || check_fail "worker did not take up the default settings"

# track N invoices with ids BASE+1..BASE+N; the emulator reports them paid
n=200
track() { sqlv "SELECT count(paygw_track('okepay', ($1 + i)::text)) FROM generate_series(1, $n) i" >/dev/null; }
paid() { sqlv "SELECT count(*) FROM paygw.invoices WHERE payment_id::bigint > $1 AND payment_id::bigint <= $1 + $n AND status = 'paid'"; }
# every invoice of the batch paid once: exactly one event, and it was applied
verify() {   # verify BASE WHAT
    local bad
    bad=$(sqlv "SELECT count(*) FROM paygw.invoices i
                 WHERE payment_id::bigint > $1 AND payment_id::bigint <= $1 + $n
                   AND (status <> 'paid'
                        OR (SELECT count(*) FROM paygw.invoice_events e
                             WHERE e.invoice_id = i.id AND e.applied) <> 1
                        OR (SELECT count(*) FROM paygw.invoice_events e
                             WHERE e.invoice_id = i.id) <> 1)")
    [ "$bad" = 0 ] || check_fail "$2: $bad invoices not paid exactly once"
}
# wait_paid BASE WHAT T0: all paid within 20 s (the lease is 5 min)
wait_paid() {
    wait_for 20 '[ "$(paid '"$1"')" = "$n" ]' \
        || check_fail "$2: only $(paid "$1") of $n paid 20 s later (leases waited out?)"
    verify "$1" "$2"
    echo "$2: $n/$n paid $(( ($(date +%s%N) - $3) / 1000000 )) ms after the disruption, one applied event each"
}
mid_batch() {   # wait until some, not all, of the batch is paid
    wait_for 20 '[ "$(paid '"$1"')" -ge 30 ]' || check_fail "worker made no progress"
    [ "$(paid "$1")" -lt "$n" ] || check_fail "batch finished before the disruption"
}

emu_post reset '{}'
emu_post config '{"delay_ms": 150}'

# --- 1. pg_terminate_backend: orderly stop ---------------------------------
# with a slow gateway first, so the signal finds the worker waiting on its
# requests: the leases of every unanswered request come back
emu_post config '{"delay_ms": 3000}'
base=7000000
track $base
wait_for 10 '[ "$(sqlv "SELECT in_flight >= 8 FROM paygw.worker_status")" = t ]' || check_fail "no request in flight"
pid=$(worker_pid)
log_at=$(stat -c %s "$log")
t0=$(date +%s%N)
sqlv "SELECT pg_terminate_backend($pid)" >/dev/null
wait_for 5 '[ ! -e "/proc/$pid" ]' || check_fail "worker $pid still alive 5 s after SIGTERM"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
leased=$(sqlv "SELECT count(*) FROM paygw.invoices WHERE lease_token IS NOT NULL")
[ "$leased" = 0 ] || check_fail "$leased invoices still leased after an orderly stop"
# (with logging_collector on, as in the secret scan, the log is in data/log)
stopping=$({ tail -c +"$((log_at + 1))" "$log"; cat "$server_data"/log/*.log 2>/dev/null; } |
           grep -o 'paygw worker stopping: .*' | tail -1 || true)
[ -n "$stopping" ] || check_fail "no orderly-stop line in the server log"
echo "pg_terminate_backend: worker exited after ${ms} ms; $stopping; no lease left"
emu_post config '{"delay_ms": 150}'
wait_paid $base "terminated while waiting" "$t0"

# and mid-batch at the default pace
base=7100000
track $base
mid_batch $base
t0=$(date +%s%N)
sqlv "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'paygw worker'" >/dev/null
wait_paid $base "pg_terminate_backend mid-batch" "$t0"
check_ok "pg_terminate_backend: leases given back, every invoice paid once within seconds"

# --- 2. an ERROR outside the apply: the third claim of a run fails -----------
sqlv "CREATE SEQUENCE liveness_claims" >/dev/null
q -d postgres >/dev/null <<'SQL'
CREATE FUNCTION liveness_fail_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.lease_token IS NOT NULL AND OLD.lease_token IS DISTINCT FROM NEW.lease_token
       AND nextval('public.liveness_claims') = 3 THEN
        RAISE EXCEPTION 'liveness check: the claim fails once';
    END IF;
    RETURN NEW;
END $$;
SQL
base=7200000
track $base
wait_for 20 '[ "$(paid '$base')" -ge 30 ]' || check_fail "worker made no progress"
sqlv "CREATE TRIGGER liveness_fail_claim BEFORE UPDATE ON paygw.invoices FOR EACH ROW EXECUTE FUNCTION liveness_fail_claim()" >/dev/null
t0=$(date +%s%N)
# the sequence is not transactional: it shows the failing claim happened
wait_for 20 '[ "$(sqlv "SELECT last_value >= 3 FROM liveness_claims")" = t ]' || check_fail "the claim never failed"
sqlv "DROP TRIGGER liveness_fail_claim ON paygw.invoices" >/dev/null
wait_paid $base "worker ERROR in its claim" "$t0"
check_ok "an ERROR outside the apply: the next run takes the rows over at once"

# --- 3. kill -9 of the worker ------------------------------------------------
base=7300000
track $base
mid_batch $base
t0=$(date +%s%N)
kill -KILL "$(worker_pid)"
wait_for 30 pg_isready -q || check_fail "server did not come back after the crash"
wait_paid $base "kill -9 of the worker" "$t0"
check_ok "kill -9 of the worker: every invoice paid once within seconds"

# --- 4. immediate restart of the server ---------------------------------------
base=7400000
track $base
mid_batch $base
t0=$(date +%s%N)
as_server_user "$PG_BINDIR/pg_ctl" -D "$server_data" -m immediate -w -t 60 stop >/dev/null
restart_server || check_fail "server did not restart"
wait_for 30 pg_isready -q || check_fail "server not ready after restart"
wait_paid $base "immediate server restart" "$t0"
check_ok "immediate restart: every invoice paid once within seconds"

# --- 5. postmaster death with requests in flight -------------------------------
emu_post config '{"delay_ms": 4000}'
base=7500000
track $base
wait_for 10 '[ "$(sqlv "SELECT in_flight >= 8 FROM paygw.worker_status")" = t ]' || check_fail "no request in flight"
pid=$(worker_pid)
pm=$(head -1 "$server_data/postmaster.pid")
t0=$(date +%s%N)
kill -KILL "$pm"
# gone, or a zombie nobody has reaped yet (its parent is dead)
wait_for 5 '[ ! -e "/proc/$pid" ] || grep -q "^State:.*Z" "/proc/$pid/status" 2>/dev/null' \
    || check_fail "worker $pid still alive 5 s after the postmaster died"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
(( ms < 1000 )) || check_fail "worker took ${ms} ms to notice the postmaster's death"
echo "postmaster killed with requests in flight (answers due after 4 s): worker gone after ${ms} ms"
wait_for 20 '! pgrep -f "postgres: .*paygw" >/dev/null' || true
emu_post config '{"delay_ms": 150}'
# its children may still be going (they hold the shared memory): retry
wait_for 30 restart_server || check_fail "server did not restart after the postmaster was killed"
wait_for 30 pg_isready -q || check_fail "server not ready after restart"
t0=$(date +%s%N)
wait_paid $base "after the postmaster's death" "$t0"
check_ok "postmaster death: the worker stops at once; after the restart every invoice is paid once"

# --- 6. leases sized for the queue ------------------------------------------
# One request at a time for the account (max_per_account = 1), claims of 5
# (batch_size), 40 invoices at 300 ms each: a later claim's invoices wait
# behind up to 35 earlier ones, about 10 s.  A lease sized for its own claim
# only, (5 + 1) x paygw.timeout (1 s here) = 6 s, would end while they wait
# and they would be claimed and asked for a second time.  Sized for the whole
# queue, no lease ends before its request is answered: each invoice is asked
# for once.
sqlv "ALTER SYSTEM SET paygw.lease_time = '1s'" >/dev/null
sqlv "ALTER SYSTEM SET paygw.timeout = '1s'" >/dev/null
sqlv "ALTER SYSTEM SET paygw.max_per_account = 1" >/dev/null
sqlv "ALTER SYSTEM SET paygw.batch_size = 5" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
wait_for 10 '[ "$(sqlv "SELECT max_per_account FROM paygw.worker_status")" = 1 ]' \
    || check_fail "worker did not take up max_per_account = 1"
emu_post reset '{}'
emu_post config '{"delay_ms": 300}'
lost0=$(sqlv "SELECT lost FROM paygw.worker_status")
n=40
base=7600000
track $base
t0=$(date +%s%N)
wait_for 30 '[ "$(paid '"$base"')" = "$n" ]' || check_fail "the queued invoices were not all paid"
verify $base "queue behind max_per_account"
twice=$(emu_stat 'sum(1 for k, v in d["by_payment"].items() if k.startswith("okepay:76") and v > 1)')
[ "$twice" = 0 ] || check_fail "$twice invoices were asked for twice: a lease ended while its request waited"
[ "$(sqlv "SELECT lost FROM paygw.worker_status")" = "$lost0" ] || check_fail "results were lost"
echo "40 invoices queued behind max_per_account = 1 (lease_time 1 s, timeout 1 s): paid after $(( ($(date +%s%N) - t0) / 1000000 )) ms, each asked for once"
check_ok "leases cover the worker's whole queue: each invoice asked for once, none lost"

sqlv "DROP EXTENSION paygw CASCADE" >/dev/null
sqlv "DROP FUNCTION liveness_fail_claim(); DROP SEQUENCE liveness_claims" >/dev/null
emu_post config '{"delay_ms": 0}'
