# test/checks/lib.bash -- helpers for the check scripts (sourced).
# Each check runs with the environment test/run-tests.sh exports (PGHOST,
# PGPORT, PGUSER, PAYGW_EMU_PORT, PAYGW_TEST_DIR, PAYGW_WORKDIR) and makes
# its own database, so it does not depend on the pg_regress run.

check_fail() { echo "FAIL: $*" >&2; exit 1; }
check_ok() { echo "ok: $*"; }

# psql with no .psqlrc, errors fatal, quiet, unaligned tuples only
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# wait_for SECONDS COMMAND...: run COMMAND every 20 ms until it succeeds.
# A single string argument is evaluated each time (so "$(...)" in it is
# re-run): wait_for 10 '[ "$(q -c "SELECT 1")" = 1 ]'
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 ))
    shift
    while true; do
        if (( $# == 1 )); then eval "$1" && return 0; else "$@" && return 0; fi
        (( $(date +%s%N) < deadline )) || return 1
        sleep 0.02
    done
}

# new_db NAME: a fresh database with paygw and one okepay account per fault
# spec given after NAME (account "ok" plus "ok:<spec>")
new_db() {
    local db=$1; shift
    q -d postgres -c "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    q -d "$db" -c "CREATE EXTENSION paygw"
    local emu="http://127.0.0.1:$PAYGW_EMU_PORT"
    q -d "$db" -v emu="$emu" <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay');
SQL
    local spec
    for spec in "$@"; do
        q -d "$db" -v emu="$emu" -v spec="$spec" <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok:' || :'spec', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx',
        :'emu' || '/_fault/' || :'spec' || '/okepay');
SQL
    done
}

# The test cluster's data directory, and how to start it again after a check
# killed it (same port and socket directory as test/lib.sh used).
server_data=${PAYGW_WORKDIR:-}/data
as_server_user() { if [ "$(id -u)" = 0 ]; then runuser -u "$(stat -c %U "$server_data")" -- "$@"; else "$@"; fi; }
restart_server() {
    as_server_user "$PG_BINDIR/pg_ctl" -D "$server_data" -l "$PAYGW_WORKDIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$PAYGW_WORKDIR -c fsync=off" \
        start >/dev/null
}

# emu_stat EXPR: a Python expression over the emulator's stats dict d
emu_stat() {
    curl -sf "http://127.0.0.1:$PAYGW_EMU_PORT/_control/stats" |
        python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}
emu_post() { curl -sf -X POST -o /dev/null -d "$2" "http://127.0.0.1:$PAYGW_EMU_PORT/_control/$1"; }

# In database postgres, where the test cluster's worker runs
sqlv() { q -d postgres -c "$1"; }
worker_pid() { sqlv "SELECT pid FROM pg_stat_activity WHERE backend_type = 'paygw worker'"; }
# the extension and the okepay account "ok" in database postgres (idempotent)
worker_db_ready() {
    sqlv "CREATE EXTENSION IF NOT EXISTS paygw" >/dev/null
    q -d postgres -v emu="http://127.0.0.1:$PAYGW_EMU_PORT" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay')
ON CONFLICT (name) DO NOTHING;
SQL
}
