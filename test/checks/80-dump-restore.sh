#!/usr/bin/env bash
# test/checks/80-dump-restore.sh -- pg_dump and pg_restore of a database
# with paygw keep every row of its tables (credentials with sealed secrets,
# invoices, events, webhooks) and its sequences, and the restored secrets
# still open with the same keyring: a status call works in the copy.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
src=paygw_check_dump_src
dst=paygw_check_dump_dst
dump=$PAYGW_WORKDIR/paygw.dump
ring=$PAYGW_WORKDIR/dump-ring
cleanup() {
    q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" >/dev/null 2>&1 || true
    rm -f "$dump" "$ring"
}
trap cleanup EXIT
q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" -c "CREATE DATABASE $src" >/dev/null

# a keyring only the server's user can read
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$ring")
chown --reference="$server_data" "$ring"

q -d "$src" -v emu="$emu" -v ring="$ring" >/dev/null <<'SQL'
CREATE EXTENSION paygw;
SET paygw.key_file = :'ring';
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay');
SELECT paygw_track('okepay', id) FROM unnest(ARRAY['106', '112', '500']) id;
SELECT paygw_refresh();
SELECT paygw_webhook('okepay', '{"transaction": {"id": 9, "invoice": {"paymentLinkId": 500}}}');
SELECT nextval('paygw.worker_runs'), nextval('paygw.worker_runs');
SQL
[ "$(q -d "$src" -c "SELECT encrypted FROM paygw.accounts WHERE name = 'ok'")" = t ] \
    || check_fail "the secret was not sealed"

# every row of paygw's tables, as text, in a stable order
rows() {
    q -d "$1" -c "
        SELECT 'credentials', md5(string_agg(c::text, '|' ORDER BY c.name)) FROM paygw.credentials c
        UNION ALL SELECT 'invoices', md5(string_agg(i::text, '|' ORDER BY i.id)) FROM paygw.invoices i
        UNION ALL SELECT 'events', md5(string_agg(e::text, '|' ORDER BY e.id)) FROM paygw.invoice_events e
        UNION ALL SELECT 'webhooks', md5(string_agg(w::text, '|' ORDER BY w.id)) FROM paygw.webhooks w
        UNION ALL SELECT 'counts', format('%s invoices, %s events, %s webhooks',
                    (SELECT count(*) FROM paygw.invoices), (SELECT count(*) FROM paygw.invoice_events),
                    (SELECT count(*) FROM paygw.webhooks))"
}
before=$(rows "$src")
grep -q "3 invoices, [1-9][0-9]* events, 1 webhooks" <<<"$before" || check_fail "source data not as expected: $before"

pg_dump -Fc -d "$src" -f "$dump"
q -d postgres -c "CREATE DATABASE $dst" >/dev/null
pg_restore -d "$dst" "$dump"
after=$(rows "$dst")
[ "$before" = "$after" ] || check_fail "rows differ after restore:
$before
---
$after"

# sequences go on from where they were: no id or run number handed out twice
for s in invoices_id_seq invoice_events_id_seq webhooks_id_seq worker_runs; do
    a=$(q -d "$src" -c "SELECT last_value FROM paygw.$s")
    b=$(q -d "$dst" -c "SELECT last_value FROM paygw.$s")
    [ "$a" = "$b" ] || check_fail "sequence paygw.$s: $a before, $b after the restore"
done

# the sealed secret opens with the same keyring in the copy, and not without it
res=$(q -d "$dst" -v ring="$ring" <<'SQL'
SET paygw.key_file = :'ring';
SELECT status FROM paygw_status('okepay', '106');
SQL
)
[ "$res" = paid ] || check_fail "status call in the restored database: $res"
res=$(psql -X -q -At -d "$dst" -v VERBOSITY=sqlstate -c "SELECT status FROM paygw_status('okepay', '106')" 2>&1 || true)
[[ $res == *PW006* ]] || check_fail "a sealed secret opened without the keyring: $res"
echo "dump and restore: $(tail -1 <<<"$after"); identical rows and sequences; the sealed secret opens with the same keyring only"
check_ok "pg_dump/pg_restore keep paygw's data, sequences and sealed secrets"
