#!/usr/bin/env bash
# test/checks/23-failover.sh -- a streaming standby promoted after the primary
# died with a worker batch in flight takes over at once (default lease, 5
# min).  Its own two clusters (the suite's cluster is left alone), both with
# paygw preloaded:
#   1. the standby (pg_basebackup -R) runs no paygw worker;
#   2. the primary's worker is killed with the postmaster (kill -9) while
#      requests are in flight and the standby has replayed their leases;
#   3. the standby is promoted: its worker starts, takes the dead primary's
#      leases over at once, and every invoice ends paid with exactly one
#      applied event.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
dir=$PAYGW_WORKDIR/failover
primary=$dir/primary
standby=$dir/standby
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
stop_all() {
    local rc=$? d
    set +e
    for d in "$primary" "$standby"; do
        if [ -f "$d/postmaster.pid" ]; then
            as_pg "$PG_BINDIR/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1
        fi
    done
    exit "$rc"
}
trap stop_all EXIT
start() {   # start DATA PORT
    as_pg "$PG_BINDIR/pg_ctl" -D "$1" -l "$1.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$2 -c unix_socket_directories=$dir -c fsync=off" \
        start >/dev/null || { tail -30 "$1.log"; check_fail "cluster in $1 did not start"; }
}
p1=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
p2=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
on() { local port=$1; shift; q -h 127.0.0.1 -p "$port" -d postgres -c "$*"; }
worker_on() { on "$1" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'paygw worker'"; }

mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
as_pg "$PG_BINDIR/initdb" -D "$primary" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null \
    || check_fail "initdb failed"
cat "$PAYGW_TEST_CONF" >> "$primary/postgresql.conf"
start "$primary" "$p1"
# paygw's default timings (the suite's configuration shortens some)
for s in timeout backoff_initial backoff_max lease_time; do
    on "$p1" "ALTER SYSTEM SET paygw.$s TO DEFAULT" >/dev/null
done
on "$p1" "ALTER SYSTEM SET paygw.timeout = '10s'" >/dev/null
on "$p1" "ALTER SYSTEM SET paygw.backoff_initial = '30s'" >/dev/null
on "$p1" "SELECT pg_reload_conf()" >/dev/null
on "$p1" "CREATE EXTENSION paygw" >/dev/null
q -h 127.0.0.1 -p "$p1" -d postgres -v emu="$emu" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay');
SQL
[ "$(on "$p1" "SELECT current_setting('paygw.lease_time')")" = 5min ] || check_fail "lease_time is not the default"

as_pg "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D "$standby" -R -X stream -c fast \
    >/dev/null 2>&1 || check_fail "pg_basebackup failed"
start "$standby" "$p2"
wait_for 30 '[ "$(on "$p2" "SELECT pg_is_in_recovery()")" = t ]' || check_fail "standby not in recovery"
wait_for 10 '[ "$(worker_on "$p1")" = 1 ]' || check_fail "no worker on the primary"
sleep 2
[ "$(worker_on "$p2")" = 0 ] || check_fail "a paygw worker runs on the standby"
check_ok "the standby runs no paygw worker"

# --- a batch in flight, its leases replayed on the standby ---------------------
n=200
base=9000000
emu_post reset '{}'
emu_post config '{"delay_ms": 150}'
on "$p1" "SELECT count(paygw_track('okepay', ($base + i)::text)) FROM generate_series(1, $n) i" >/dev/null
paid() { on "$1" "SELECT count(*) FROM paygw.invoices WHERE status = 'paid'"; }
wait_for 20 '[ "$(paid "$p1")" -ge 30 ]' || check_fail "the primary's worker made no progress"
wait_for 10 '[ "$(on "$p2" "SELECT count(*) FROM paygw.invoices WHERE lease_token IS NOT NULL")" -gt 0 ]' \
    || check_fail "no lease replayed on the standby"
pm=$(head -1 "$primary/postmaster.pid")
kill -KILL "$pm"
wait_for 10 '! kill -0 '"$pm"' 2>/dev/null' || check_fail "primary postmaster did not die"
leased=$(on "$p2" "SELECT count(*) FROM paygw.invoices WHERE lease_token IS NOT NULL")
paid_before=$(paid "$p2")
t0=$(date +%s%N)
as_pg "$PG_BINDIR/pg_ctl" -D "$standby" -w -t 60 promote >/dev/null || check_fail "promotion failed"
wait_for 30 '[ "$(on "$p2" "SELECT pg_is_in_recovery()")" = f ]' || check_fail "standby still in recovery"
wait_for 15 '[ "$(worker_on "$p2")" = 1 ]' || check_fail "no worker on the promoted standby"
wait_for 20 '[ "$(paid "$p2")" = "$n" ]' \
    || check_fail "after promotion only $(paid "$p2") of $n paid 20 s later (leases waited out?)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
bad=$(on "$p2" "SELECT count(*) FROM paygw.invoices i
                 WHERE (SELECT count(*) FROM paygw.invoice_events e WHERE e.invoice_id = i.id AND e.applied) <> 1
                    OR lease_token IS NOT NULL")
[ "$bad" = 0 ] || check_fail "$bad invoices without exactly one applied event, or still leased"
echo "primary killed with $leased invoices leased on the standby ($paid_before/$n paid there); promoted: $n/$n paid ${ms} ms after promotion, one applied event each"
check_ok "a promoted standby's worker takes the dead primary's leases over at once"
emu_post config '{"delay_ms": 0}'
