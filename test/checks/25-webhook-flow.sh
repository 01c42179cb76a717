#!/usr/bin/env bash
# test/checks/25-webhook-flow.sh -- the whole flow with the worker, for an
# invoice created at the gateway: tracked -> the customer pays -> the
# gateway's webhook -> paygw_webhook (signature checked, nothing else
# changed) -> the worker, woken at commit, confirms with a signed status call
# -> exactly one event and one NOTIFY.  Morune (signed webhook) and a forged
# copy of it (refused, nothing changes).
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
shop=3fa85f64-5717-4562-b3fc-2c963f66afa6
worker_db_ready
q -d postgres -v emu="$emu" -v shop="$shop" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url, webhook_key)
VALUES ('flow-mo', 'morune', :'shop', 'morune-test-key-d6be9962', :'emu' || '/morune',
        'morune-test-addkey-5e1f0c27')
ON CONFLICT (name) DO NOTHING;
SQL
wait_for 15 '[ -n "$(worker_pid)" ]' || check_fail "worker not running"
emu_post reset '{}'

# an invoice made at the gateway (paygw_create_invoice is not there yet:
# the application's own create call, straight to the emulator)
order="flow-$(date +%s%N)"
created=$(curl -sf -X POST -H 'content-type: application/json' -H 'x-api-key: morune-test-key-d6be9962' \
    -d "{\"amount\": 150.00, \"order_id\": \"$order\", \"currency\": \"RUB\", \"shop_id\": \"$shop\", \"hook_url\": \"https://shop.example/hooks/morune\"}" \
    "$emu/morune/invoice/create")
gid=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['data']['id'])" "$created")
inv=$(sqlv "SELECT paygw_track('morune', '$gid', '$order', 'flow-mo')")
wait_for 10 '[ "$(sqlv "SELECT check_count > 0 FROM paygw.invoices WHERE id = $inv")" = t ]' \
    || check_fail "the worker did not check the new invoice"
[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = pending ] || check_fail "not pending"
# its next check is half a minute away (paygw.backoff_initial in the test
# configuration is 1 s: push it out so only the webhook can bring it in)
sqlv "UPDATE paygw.invoices SET next_check_at = now() + interval '1 hour' WHERE id = $inv" >/dev/null

notes=$PAYGW_WORKDIR/flow-notify.out
{ echo "LISTEN paygw_status;"; for _ in $(seq 100); do echo "SELECT pg_sleep(0.1);"; done; } \
    | psql -X -d postgres -At > "$notes" 2>&1 &
listener=$!
sleep 0.5

# the customer pays; the gateway sends its webhook
emu_post settle "{\"provider\": \"morune\", \"id\": \"$gid\", \"status\": \"paid\"}"
hook=$(curl -sf -X POST -d "{\"provider\": \"morune\", \"id\": \"$gid\"}" "$emu/_control/webhook")
body=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['body'])" "$hook")
headers=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])['headers']))" "$hook")
forged=$(python3 -c "import json,sys; h=json.loads(sys.argv[1]); h['x-api-sha256-signature']='0'*64; print(json.dumps(h))" "$headers")

# a forged copy first: refused, nothing changes
res=$(psql -X -q -At -d postgres -v VERBOSITY=sqlstate -v body="$body" -v h="$forged" 2>&1 <<'SQL' || true
SELECT paygw_webhook('morune', :'body', :'h'::jsonb, NULL, 'flow-mo');
SQL
)
[[ $res == *PW040* ]] || check_fail "forged webhook not refused with PW040: $res"
[ "$(sqlv "SELECT next_check_at > now() + interval '50 minutes' FROM paygw.invoices WHERE id = $inv")" = t ] \
    || check_fail "a forged webhook moved the invoice"

t0=$(date +%s%N)
res=$(q -d postgres -v body="$body" -v h="$headers" <<'SQL'
SELECT format('%s %s %s', invoice_id, verified, action) FROM paygw_webhook('morune', :'body', :'h'::jsonb, NULL, 'flow-mo');
SQL
)
[ "$res" = "$inv t scheduled" ] || check_fail "paygw_webhook returned: $res"
wait_for 10 '[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = paid ]' \
    || check_fail "the worker did not confirm the payment after the webhook"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait_for 5 grep -q "\"invoice_id\" : $inv" "$notes" || check_fail "no notification"
sleep 0.5
kill "$listener" 2>/dev/null || true; wait "$listener" 2>/dev/null || true
[ "$(grep -c "\"invoice_id\" : $inv" "$notes")" = 1 ] || check_fail "expected exactly one notification"
[ "$(sqlv "SELECT count(*) FROM paygw.invoice_events WHERE invoice_id = $inv AND applied")" = 1 ] \
    || check_fail "expected exactly one applied event"
[ "$(sqlv "SELECT count(*) FROM paygw.webhooks WHERE invoice_id = $inv")" = 1 ] \
    || check_fail "expected one recorded webhook (the forged one is not recorded)"
echo "morune: created at the gateway, paid, webhook taken (forged copy refused): paid by the worker ${ms} ms after paygw_webhook, one event, one notification"
check_ok "create -> pay -> webhook -> signed confirmation -> one event and one NOTIFY"

# --- retention: the worker deletes old history while idle ----------------------
# (it looks at most once a minute; a restarted worker looks at its first idle
# moment)
sqlv "UPDATE paygw.invoice_events SET created_at = now() - interval '2 days'" >/dev/null
sqlv "UPDATE paygw.webhooks SET received_at = now() - interval '2 days'" >/dev/null
before=$(sqlv "SELECT (SELECT count(*) FROM paygw.invoice_events) || '/' || (SELECT count(*) FROM paygw.webhooks)")
sqlv "ALTER SYSTEM SET paygw.event_retention = '1d'" >/dev/null
sqlv "ALTER SYSTEM SET paygw.webhook_retention = '1d'" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
sqlv "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'paygw worker'" >/dev/null
wait_for 20 '[ "$(sqlv "SELECT (SELECT count(*) FROM paygw.invoice_events) + (SELECT count(*) FROM paygw.webhooks)")" = 0 ]' \
    || check_fail "the worker did not delete events and webhooks older than their retention"
sqlv "ALTER SYSTEM RESET paygw.event_retention" >/dev/null
sqlv "ALTER SYSTEM RESET paygw.webhook_retention" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
echo "retention 1 day: the worker deleted the 2-day-old history (events/webhooks: $before -> 0/0)"
check_ok "the worker applies paygw.event_retention and paygw.webhook_retention"

sqlv "DROP EXTENSION paygw CASCADE" >/dev/null
