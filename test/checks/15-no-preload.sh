#!/usr/bin/env bash
# test/checks/15-no-preload.sh -- paygw without shared_preload_libraries:
# a second throwaway cluster that does not preload it; CREATE EXTENSION
# works, the status calls and paygw_refresh work, and worker_status says no
# worker runs.  (The main test cluster preloads paygw for the worker checks.)
set -euo pipefail
. "$(dirname "$0")/lib.bash"

dir=$PAYGW_WORKDIR/nopreload
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
owner=$(stat -c %U "$PAYGW_WORKDIR/data")
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }
cleanup() { as_owner "$PG_BINDIR/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$dir" && chown "$owner" "$dir" 2>/dev/null || true
as_owner "$PG_BINDIR/initdb" -D "$dir" -A trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
as_owner "$PG_BINDIR/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" start >/dev/null
grep -q "^shared_preload_libraries" "$dir/postgresql.conf" && check_fail "this cluster must not preload paygw"

out=$(psql -X -q -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -v emu="http://127.0.0.1:$PAYGW_EMU_PORT" 2>&1 <<'SQL'
CREATE EXTENSION paygw;
SHOW shared_preload_libraries;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay');
SELECT 'status:' || status FROM paygw_status('okepay', '106');
SELECT 'tracked:' || (paygw_track('okepay', '106') IS NOT NULL);
SELECT 'refreshed:' || paygw_refresh();
SELECT 'worker running:' || running FROM paygw.worker_status;
SQL
) || check_fail "without preloading: $out"
for want in "status:paid" "tracked:true" "refreshed:1" "worker running:false"; do
    grep -qx "$want" <<<"$out" || check_fail "without preloading, expected '$want' in: $out"
done
check_ok "without shared_preload_libraries: CREATE EXTENSION, status calls and paygw_refresh work; no worker"
