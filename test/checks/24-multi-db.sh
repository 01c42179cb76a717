#!/usr/bin/env bash
# test/checks/24-multi-db.sh -- one worker per database that uses paygw.  Its
# own cluster (the suite's is left alone), paygw preloaded, the launcher at
# its default naptime (10 s), paygw.database naming five databases of which
# none exists at start, log_min_messages = debug1 (so every start of a
# background worker is logged):
#   1. databases shop_a and shop_b, created while the server runs, each with
#      paygw and its own credentials (OkePay in one, Obmenka in the other):
#      each gets its own worker, and both reconcile their own invoices;
#      paygw.worker_status shows both;
#   2. independence: shop_a's gateway answers after 6 s; shop_b's invoices
#      are paid meanwhile; shop_a's worker terminated mid-flight comes back
#      while shop_b's keeps its pid and goes on working;
#   3. shop_c, listed, created while running: one look, no worker; CREATE
#      EXTENSION there starts one within the naptime; shop_e, not listed,
#      gets one after it is added to paygw.database and the server reloads;
#      shop_b, taken out of the list, loses its worker;
#   4. DROP EXTENSION in shop_a: its worker goes, with one LOG line and no
#      error; then, over two naptimes, nothing starts for shop_a, for the
#      listed database without paygw or for the one that does not exist, and
#      each of those was reported once only;
#   5. DROP DATABASE and ALTER DATABASE RENAME of a database whose worker
#      runs succeed at once; a role that does not own it does not bounce it;
#   6. paygw.database = '*' with max_worker_processes too small for every
#      database with paygw: workers in as many as fit, none where paygw is
#      not, and one WARNING that says how many paygw needs, not repeated.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
dir=$PAYGW_WORKDIR/multidb
data=$dir/data
log=$dir/server.log
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
stop_cluster() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ -f "$log" ]; then
        echo "----- last paygw lines of $log -----"
        grep -E 'paygw|ERROR|FATAL|WARNING' "$log" | tail -40
    fi
    [ -f "$data/postmaster.pid" ] && as_pg "$PG_BINDIR/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1
    exit "$rc"
}
trap stop_cluster EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start() {
    as_pg "$PG_BINDIR/pg_ctl" -D "$data" -l "$log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" \
        start >/dev/null || { tail -30 "$log"; check_fail "the cluster did not start"; }
}
on() { local db=$1; shift; q -h 127.0.0.1 -p "$port" -d "$db" -c "$*"; }
workers() { on postgres "SELECT datname || ':' || pid FROM pg_stat_activity WHERE backend_type = 'paygw worker' ORDER BY 1" | tr '\n' ' '; }
worker_of() { on postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'paygw worker' AND datname = '$1'"; }
# log lines since byte offset $1 that match the extended regexp $2
log_count() { tail -c +"$(($1 + 1))" "$log" | grep -cE -- "$2" || true; }
# background worker processes the postmaster started for database $1
starts() { log_count "${2:-0}" "starting background worker process \"paygw worker for database $1\""; }

mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
as_pg "$PG_BINDIR/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null \
    || check_fail "initdb failed"
cat "$PAYGW_TEST_CONF" >> "$data/postgresql.conf"
# this check reads its server log: one file, the same format whatever the
# suite's configuration (the secret scan's logs everything, elsewhere)
cat >> "$data/postgresql.conf" <<'CONF'
paygw.database = 'shop_a, shop_b, shop_c, shop_nodb, shop_plain'
paygw.timeout = '10s'
paygw.debug = off
log_min_messages = debug1
logging_collector = off
log_destination = 'stderr'
log_statement = 'none'
log_min_error_statement = error
log_error_verbosity = default
log_connections = off
CONF
start
[ "$(on postgres "SELECT current_setting('paygw.launcher_naptime')")" = 10s ] \
    || check_fail "paygw.launcher_naptime is not the default 10s"
wait_for 10 '[ "$(on postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = '\''paygw launcher'\''")" = 1 ]' \
    || check_fail "no paygw launcher"
[ -z "$(workers)" ] || check_fail "workers run although no listed database exists: $(workers)"

# --- 1. two databases, their own credentials and invoices --------------------
for db in shop_a shop_b shop_plain; do on postgres "CREATE DATABASE $db" >/dev/null; done
on shop_a "CREATE EXTENSION paygw" >/dev/null
on shop_b "CREATE EXTENSION paygw" >/dev/null
q -h 127.0.0.1 -p "$port" -d shop_a -v emu="$emu" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('a-ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay'),
       ('a-slow', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/_fault/delay=6000/okepay');
SQL
q -h 127.0.0.1 -p "$port" -d shop_b -v emu="$emu" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('b-ob', 'obmenka', '1234', 'obmenka-test-salt-9Kp', :'emu' || '/obmenka');
SQL
wait_for 5 '[ -n "$(worker_of shop_a)" ] && [ -n "$(worker_of shop_b)" ]' \
    || check_fail "not a worker in each of shop_a and shop_b: $(workers)"
pid_a=$(worker_of shop_a); pid_b=$(worker_of shop_b)
[ "$pid_a" != "$pid_b" ] || check_fail "shop_a and shop_b share a worker"

emu_post reset '{}'
n=20
on shop_a "SELECT count(paygw_track('okepay', (7100000 + i)::text, NULL, 'a-ok')) FROM generate_series(1, $n) i" >/dev/null
on shop_b "SELECT count(paygw_track('obmenka', 'bench-b1-' || i, NULL, 'b-ob')) FROM generate_series(1, $n) i" >/dev/null
paid() { on "$1" "SELECT count(*) FROM paygw.invoices WHERE status = 'paid' AND $2"; }
wait_for 15 '[ "$(paid shop_a "payment_id LIKE '\''71%'\''")" = $n ] && [ "$(paid shop_b "payment_id LIKE '\''bench-b1-%'\''")" = $n ]' \
    || check_fail "not reconciled: shop_a $(paid shop_a "payment_id LIKE '71%'")/$n, shop_b $(paid shop_b "payment_id LIKE 'bench-b1-%'")/$n"
[ "$(emu_stat 'd["signature_failures"]')" = 0 ] || check_fail "the gateways rejected a signature"
[ "$(emu_stat 'd["requests"].get("okepay", 0) >= '$n' and d["requests"].get("obmenka", 0) >= '$n)" = True ] \
    || check_fail "each gateway should have been asked $n times: $(emu_stat 'd["requests"]')"
for db in shop_a shop_b; do
    [ "$(on "$db" "SELECT count(*) FROM paygw.invoice_events")" = $n ] || check_fail "$db: not one event per invoice"
done
status=$(on shop_a "SELECT string_agg(database || ':' || running || ':' || pid || ':' || state || ':' || (invoices_checked >= $n), ' ' ORDER BY database) FROM paygw.worker_status")
[ "$status" = "shop_a:true:$pid_a:running:true shop_b:true:$pid_b:running:true" ] \
    || check_fail "paygw.worker_status in shop_a: $status"
echo "workers: $(workers); worker_status: $status"
check_ok "two databases, each reconciled by its own worker with its own credentials"

# --- 2. independent workers ------------------------------------------------------
on shop_a "SELECT count(paygw_track('okepay', (7200000 + i)::text, NULL, 'a-slow')) FROM generate_series(1, 8) i" >/dev/null
wait_for 5 '[ "$(on shop_a "SELECT in_flight FROM paygw.worker_status WHERE database = current_database()")" -ge 8 ]' \
    || check_fail "shop_a's slow requests are not in flight"
t0=$(date +%s%N)
on shop_b "SELECT count(paygw_track('obmenka', 'bench-b2-' || i, NULL, 'b-ob')) FROM generate_series(1, $n) i" >/dev/null
wait_for 4 '[ "$(paid shop_b "payment_id LIKE '\''bench-b2-%'\''")" = $n ]' \
    || check_fail "shop_b waited for shop_a's slow gateway"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(paid shop_a "payment_id LIKE '72%'")" = 0 ] || check_fail "shop_a's slow answers came early; this proves nothing"
echo "shop_b's $n invoices paid ${ms} ms after tracking while shop_a's 8 requests wait 6 s at the gateway"
on postgres "SELECT pg_terminate_backend($pid_a)" >/dev/null
wait_for 5 '[ ! -e /proc/'"$pid_a"' ]' || check_fail "shop_a's worker did not stop"
on shop_b "SELECT count(paygw_track('obmenka', 'bench-b3-' || i, NULL, 'b-ob')) FROM generate_series(1, $n) i" >/dev/null
wait_for 5 '[ "$(paid shop_b "payment_id LIKE '\''bench-b3-%'\''")" = $n ]' \
    || check_fail "shop_b stopped working when shop_a's worker was terminated"
[ "$(worker_of shop_b)" = "$pid_b" ] || check_fail "shop_b's worker changed when shop_a's was terminated"
wait_for 10 '[ -n "$(worker_of shop_a)" ]' || check_fail "shop_a's worker did not come back"
pid_a=$(worker_of shop_a)
wait_for 20 '[ "$(paid shop_a "payment_id LIKE '\''72%'\''")" = 8 ]' \
    || check_fail "shop_a's invoices in flight at the termination were not finished"
check_ok "shop_a's slow gateway and its terminated worker do not touch shop_b's worker"

# --- 3. databases that come, and go from the list ------------------------------
mark=$(stat -c %s "$log")
on postgres "CREATE DATABASE shop_c" >/dev/null
wait_for 5 '[ "$(log_count '"$mark"' "database \"shop_c\" has no extension paygw")" = 1 ]' \
    || check_fail "the launcher did not look at the new database shop_c"
[ -z "$(worker_of shop_c)" ] || check_fail "a worker stayed in shop_c without the extension"
t0=$(date +%s%N)
on shop_c "CREATE EXTENSION paygw" >/dev/null
wait_for 10 '[ -n "$(worker_of shop_c)" ]' || check_fail "CREATE EXTENSION in shop_c started no worker within the naptime (10 s)"
echo "CREATE EXTENSION in shop_c: worker after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
q -h 127.0.0.1 -p "$port" -d shop_c -v emu="$emu" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('c-ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay');
SELECT paygw_track('okepay', '7300001');
SQL
wait_for 10 '[ "$(paid shop_c true)" = 1 ]' || check_fail "shop_c's invoice was not reconciled"

on postgres "CREATE DATABASE shop_e" >/dev/null
on shop_e "CREATE EXTENSION paygw" >/dev/null
sleep 1
[ -z "$(worker_of shop_e)" ] || check_fail "a worker runs in shop_e, which paygw.database does not name"
on postgres "ALTER SYSTEM SET paygw.database = 'shop_a, shop_c, shop_e, shop_nodb, shop_plain'" >/dev/null
on postgres "SELECT pg_reload_conf()" >/dev/null
wait_for 10 '[ -n "$(worker_of shop_e)" ]' || check_fail "adding shop_e to paygw.database started no worker"
wait_for 10 '[ -z "$(worker_of shop_b)" ]' || check_fail "shop_b's worker still runs after shop_b left paygw.database"
wait_for 5 '[ "$(log_count "$mark" "paygw worker for database \"shop_b\" stopped: the database is no longer in paygw.database")" = 1 ]' \
    || check_fail "not one LOG line for shop_b's worker leaving"
echo "after the reload: $(workers)"
check_ok "a new listed database gets a worker at CREATE EXTENSION; a reload adds and removes databases"

# --- 4. DROP EXTENSION, and the databases without paygw ----------------------------
mark=$(stat -c %s "$log")
starts_plain=$(starts shop_plain); starts_nodb=$(starts shop_nodb)
[ "$starts_plain" = 1 ] || check_fail "shop_plain (no extension) was looked at $starts_plain times, expected once"
[ "$starts_nodb" = 0 ] || check_fail "a worker was started for shop_nodb, which does not exist"
on shop_a "DROP EXTENSION paygw CASCADE" >/dev/null
wait_for 5 '[ ! -e /proc/'"$pid_a"' ]' || check_fail "shop_a's worker $pid_a is still there after DROP EXTENSION"
[ -z "$(worker_of shop_a)" ] || check_fail "a worker runs in shop_a after DROP EXTENSION"
echo "DROP EXTENSION in shop_a: worker $pid_a gone; watching the log for two naptimes"
sleep 21
[ -z "$(worker_of shop_a)" ] || check_fail "a worker came back in shop_a"
[ "$(log_count "$mark" 'paygw worker for database "shop_a" stopped: extension paygw is not installed there any more')" = 1 ] \
    || check_fail "not exactly one LOG line for shop_a's worker going"
bad=$(log_count "$mark" '(ERROR|FATAL|WARNING):')
[ "$bad" = 0 ] || check_fail "errors in the log after DROP EXTENSION: $(tail -c +"$((mark + 1))" "$log" | grep -E '(ERROR|FATAL|WARNING):' | head -5)"
for db in shop_a shop_plain shop_nodb; do
    [ "$(starts "$db" "$mark")" = 0 ] || check_fail "$(starts "$db" "$mark") workers started for $db in two naptimes"
done
# the worker's exit, as the postmaster and the launcher saw it; nothing else
paygw_lines=$(log_count "$mark" 'paygw')
tail -c +"$((mark + 1))" "$log" | grep paygw | sed 's/^[^]]*\] /  /'
(( paygw_lines <= 3 )) || check_fail "$paygw_lines log lines about paygw in two naptimes"
[ "$(log_count 0 'names database "shop_nodb", which does not exist')" = 1 ] \
    || check_fail "the missing database shop_nodb was not reported exactly once"
[ "$(log_count 0 'database "shop_plain" has no extension paygw')" = 1 ] \
    || check_fail "shop_plain (no extension) was not reported exactly once"
echo "two naptimes after DROP EXTENSION: no worker start for shop_a, shop_plain or shop_nodb; $paygw_lines paygw log lines"
check_ok "DROP EXTENSION: the worker goes quietly; no busy loop on a database without paygw or a missing one"

# --- 5. DROP DATABASE with a worker connected --------------------------------------
on postgres "DROP DATABASE shop_b" >/dev/null   # no longer listed: no worker
pid_c=$(worker_of shop_c)
[ -n "$pid_c" ] || check_fail "no worker in shop_c"
t0=$(date +%s%N)
on postgres "DROP DATABASE shop_c" >/dev/null || check_fail "DROP DATABASE shop_c failed while its worker ran"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ ! -e "/proc/$pid_c" ] || check_fail "shop_c's worker outlived its database"
sleep 1
[ "$(log_count "$mark" 'FATAL:')" = 0 ] || check_fail "FATAL after DROP DATABASE: $(tail -c +"$((mark + 1))" "$log" | grep FATAL | head -3)"
echo "DROP DATABASE shop_c with its worker running: done in ${ms} ms"
# a role that does not own the database cannot drop it, nor bounce its worker
pid_e=$(worker_of shop_e)
[ -n "$pid_e" ] || check_fail "no worker in shop_e"
on postgres "CREATE ROLE shop_intruder LOGIN CREATEDB" >/dev/null
if out=$(psql -X -q -h 127.0.0.1 -p "$port" -U shop_intruder -d postgres -c "DROP DATABASE shop_e" 2>&1); then
    check_fail "shop_intruder dropped shop_e"
fi
grep -q "must be owner of database shop_e" <<<"$out" || check_fail "unexpected: $out"
sleep 0.5
[ "$(worker_of shop_e)" = "$pid_e" ] || check_fail "a refused DROP DATABASE bounced shop_e's worker"
# rename: the worker stops first; the new name is not listed, the old one back is
on postgres "ALTER DATABASE shop_e RENAME TO shop_e2" >/dev/null || check_fail "RENAME of shop_e failed while its worker ran"
[ -z "$(worker_of shop_e2)" ] || check_fail "a worker runs in shop_e2, which is not listed"
on postgres "ALTER DATABASE shop_e2 RENAME TO shop_e" >/dev/null
wait_for 5 '[ -n "$(worker_of shop_e)" ]' || check_fail "no worker in shop_e after renaming it back"
check_ok "DROP DATABASE and RENAME stop the database's worker first, for the owner only"

# --- 6. '*', with too few worker processes -------------------------------------------
# every database: postgres and shop_plain without paygw, shop_a, shop_b2 and
# shop_e with it.  The logical replication launcher and paygw's take two of
# the four worker processes; the three databases with paygw need three more
on postgres "CREATE DATABASE shop_b2" >/dev/null
on shop_b2 "CREATE EXTENSION paygw" >/dev/null
on shop_a "CREATE EXTENSION paygw" >/dev/null
on postgres "ALTER SYSTEM SET paygw.database = '*'" >/dev/null
on postgres "ALTER SYSTEM SET max_worker_processes = 4" >/dev/null
on postgres "ALTER SYSTEM SET max_parallel_workers = 0" >/dev/null
as_pg "$PG_BINDIR/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null
mark=$(stat -c %s "$log")
start
wait_for 10 '[ "$(log_count '"$mark"' "WARNING:  paygw could not start a worker")" = 1 ]' \
    || check_fail "no WARNING about the worker budget: $(tail -c +"$((mark + 1))" "$log" | grep paygw | head)"
warning=$(tail -c +"$((mark + 1))" "$log" | grep -A2 "WARNING:  paygw could not start a worker")
grep -q "paygw uses 3 background worker processes and needs 4: its launcher and one worker for each of 3 databases.  max_worker_processes is 4" <<<"$warning" \
    || check_fail "the WARNING does not say how many are needed: $warning"
[ "$(workers | wc -w)" = 2 ] || check_fail "expected 2 workers within the budget: $(workers)"
[ "$(workers | grep -cE 'postgres|shop_plain')" = 0 ] || check_fail "a worker stayed where paygw is not: $(workers)"
sleep 11
[ "$(log_count "$mark" "WARNING:  paygw could not start a worker")" = 1 ] || check_fail "the budget WARNING was repeated"
echo "$warning" | sed 's/^.*\(WARNING\|DETAIL\|HINT\):/\1:/'
check_ok "too small a max_worker_processes gives one WARNING saying how many paygw needs"
