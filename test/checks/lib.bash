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
