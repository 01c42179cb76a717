#!/usr/bin/env bash
# test/checks/35-track-cache.sh -- the account paygw_track resolves is
# cached per transaction, yet another session's committed change to
# paygw.credentials is seen as a fresh query would see it: at the next call
# in READ COMMITTED, in the next transaction in REPEATABLE READ.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

db=paygw_check_track_cache
new_db "$db"

# session A stays open across the steps
coproc A { psql -X -q -At -d "$db" 2>&1; }
a_pid=$A_PID
a() {   # a SQL: run SQL in session A, print its output
    local line out=""
    printf '%s;\n\\echo --done--\n' "$1" >&"${A[1]}"
    while IFS= read -r line <&"${A[0]}"; do
        [[ $line == --done-- ]] && { printf '%s' "$out"; return 0; }
        out+=$line
    done
    check_fail "session A ended: $out"
}
try() { echo "SELECT CASE WHEN paygw_track($1) IS NOT NULL THEN 'ok' END"; }
add_second() {
    q -d "$db" -c "INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
                   VALUES ('ok2', 'okepay', 'demo-shop-2', 'okepay-test-secret-7Qx')"
}
drop_second() { q -d "$db" -c "DELETE FROM paygw.credentials WHERE name = 'ok2'"; }

# READ COMMITTED: the second account is seen by the very next call
a "BEGIN" >/dev/null
[ "$(a "$(try "'okepay', '7001'")")" = ok ] || check_fail "first track failed"
add_second
out=$(a "$(try "'okepay', '7002'")")
[[ $out == *"more than one okepay account"* ]] \
    || check_fail "READ COMMITTED: a committed second account was not seen: $out"
a "ROLLBACK" >/dev/null
drop_second
check_ok "READ COMMITTED: another session's new account is seen at the next call"

# REPEATABLE READ: the transaction's snapshot decides, the next one sees it
a "BEGIN ISOLATION LEVEL REPEATABLE READ" >/dev/null
[ "$(a "$(try "'okepay', '7006'")")" = ok ] || check_fail "first track failed"
add_second
[ "$(a "$(try "'okepay', '7007'")")" = ok ] \
    || check_fail "REPEATABLE READ: a change after the snapshot was seen"
a "COMMIT" >/dev/null
out=$(a "$(try "'okepay', '7008'")")
[[ $out == *"more than one okepay account"* ]] \
    || check_fail "the next transaction did not see the second account: $out"
check_ok "REPEATABLE READ: the cache does not outlive the transaction"

echo '\q' >&"${A[1]}"
wait "$a_pid" 2>/dev/null || true
q -d postgres -c "DROP DATABASE $db"
