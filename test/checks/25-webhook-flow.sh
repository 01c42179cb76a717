#!/usr/bin/env bash
# test/checks/25-webhook-flow.sh -- the whole flow with the worker, for an
# invoice created at the gateway: tracked -> the customer pays -> the
# gateway's webhook -> paygw_webhook (signature checked, nothing else
# changed) -> the worker, woken at commit, confirms with a signed status call
# -> exactly one event and one NOTIFY.  Morune (signed webhook) and a forged
# copy of it (refused, nothing changes).  Then webhooks about payments paygw
# does not track (probes): one status call per payment however often it is
# named, tracked with one event and one NOTIFY when the gateway has it, not
# tracked when it does not, at most paygw.webhook_probe_rate (60) calls per
# account and minute, and confirm => true making the call in paygw_webhook.
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

# --- probes: webhooks about payments paygw does not track ------------------------
q -d postgres -v emu="$emu" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url) VALUES
  ('probe-ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay'),
  ('probe-rate', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay'),
  ('probe-ob', 'obmenka', '1234', 'obmenka-test-salt-9Kp', :'emu' || '/obmenka')
ON CONFLICT (name) DO NOTHING;
SQL
emu_post reset '{}'
[ "$(sqlv "SHOW paygw.webhook_probe_rate")" = 60 ] || check_fail "paygw.webhook_probe_rate is not at its default"
notes=$PAYGW_WORKDIR/probe-notify.out
{ echo "LISTEN paygw_status;"; for _ in $(seq 400); do echo "SELECT pg_sleep(0.1);"; done; } \
    | psql -X -d postgres -At > "$notes" 2>&1 &
listener=$!
sleep 0.5
notified() { grep -c "\"invoice_id\" : $1," "$notes" || true; }

# OkePay gateway 106 (confirmed at the emulator), untracked, named by five
# webhooks in one transaction: the first is a probe, the others duplicates;
# paygw_webhook makes no call; the worker, woken at commit, makes one and
# tracks the payment as paid, with one event and one notification
# (the emulator's count is read before the commit: the worker cannot see
# the probe yet)
out=$(q -d postgres <<'SQL'
BEGIN;
SELECT clock_timestamp() AS t0 \gset
SELECT string_agg(action, ' ' ORDER BY n) FROM generate_series(1, 5) n,
       paygw_webhook('okepay', format('{"transaction": {"id": %s, "invoice": {"paymentLinkId": 106}}}', 700 + n),
                     '{}', NULL, 'probe-ok');
SELECT 'ms ' || round(extract(epoch FROM clock_timestamp() - :'t0') * 1000);
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" by_payment.okepay:106
COMMIT;
SQL
)
res=$(sed -n 1p <<<"$out")
ms=$(sed -n 's/^ms //p' <<<"$out")
[ "$res" = "probe duplicate duplicate duplicate duplicate" ] || check_fail "five hints about 106 gave: $out"
grep -qx "by_payment.okepay:106: 0" <<<"$out" || check_fail "paygw_webhook made a status call itself: $out"
wait_for 10 '[ "$(sqlv "SELECT status FROM paygw.invoices WHERE account = '"'probe-ok'"' AND payment_id = '"'106'"'")" = paid ]' \
    || check_fail "the worker did not track 106 after the probe"
inv=$(sqlv "SELECT id FROM paygw.invoices WHERE account = 'probe-ok' AND payment_id = '106'")
wait_for 5 '[ "$(notified "$inv")" -ge 1 ]' || check_fail "no notification for the probed invoice"
# repeated hints after it was tracked are the usual webhooks of a tracked
# invoice; those in the burst above caused nothing more
sleep 1.5
[ "$(emu_stat "d['by_payment'].get('okepay:106', 0)")" = 1 ] \
    || check_fail "expected exactly one status call for 106, the emulator saw $(emu_stat "d['by_payment'].get('okepay:106', 0)")"
[ "$(notified "$inv")" = 1 ] || check_fail "expected one notification for invoice $inv, got $(notified "$inv")"
[ "$(sqlv "SELECT count(*) FROM paygw.invoice_events WHERE invoice_id = $inv AND old_status = 'pending' AND new_status = 'paid' AND applied")" = 1 ] \
    || check_fail "expected one event pending -> paid"
[ "$(sqlv "SELECT string_agg(action, ' ' ORDER BY id) FROM paygw.webhooks WHERE account = 'probe-ok'")" = "tracked duplicate duplicate duplicate duplicate" ] \
    || check_fail "webhooks recorded: $(sqlv "SELECT string_agg(action, ' ' ORDER BY id) FROM paygw.webhooks WHERE account = 'probe-ok'")"
echo "okepay 106, untracked, five webhooks in one statement: paygw_webhook answered in ${ms} ms in all, with no call; the worker made one status call and tracked it as paid: one event, one notification"
check_ok "an untracked payment the gateway has: one status call, tracked, one event and one NOTIFY"

# an Obmenka payment the gateway does not have: one call, not tracked; the
# same payment named again later causes no call at all
ob_before=$(emu_stat "d['requests'].get('obmenka', 0)")
[ "$(sqlv "SELECT action FROM paygw_webhook('obmenka', '', '{}', 'tracking=NOPE-0000-0001', 'probe-ob')")" = probe ] \
    || check_fail "an unknown Obmenka payment was not probed"
wait_for 10 '[ "$(sqlv "SELECT action FROM paygw.webhooks WHERE account = '"'probe-ob'"'")" = unknown ]' \
    || check_fail "the worker did not record the unknown payment"
for i in 1 2 3; do
    [ "$(sqlv "SELECT action FROM paygw_webhook('obmenka', '', '{}', 'tracking=NOPE-0000-0001&n=$i', 'probe-ob')")" = ignored ] \
        || check_fail "a payment already probed was not ignored"
done
sleep 1.5
[ "$(( $(emu_stat "d['requests'].get('obmenka', 0)") - ob_before ))" = 1 ] \
    || check_fail "expected one obmenka request, got $(( $(emu_stat "d['requests'].get('obmenka', 0)") - ob_before ))"
[ "$(sqlv "SELECT count(*) FROM paygw.invoices WHERE account = 'probe-ob'")" = 0 ] || check_fail "an unknown payment was tracked"
echo "obmenka NOPE-0000-0001, unknown at the gateway, named four times: one status call, not tracked ($(sqlv "SELECT detail FROM paygw.webhooks WHERE account = 'probe-ob' ORDER BY id LIMIT 1"))"
check_ok "an untracked payment the gateway does not have: one status call, not tracked, never asked about again"

# the rate: 63 new payments of one account within a minute (OkePay's
# synthetic gateways, all paid): 60 are probed and tracked, 3 ignored, and
# the gateway sees exactly 60 calls
res=$(sqlv "SELECT string_agg(action || ':' || k, ' ' ORDER BY action) FROM (
             SELECT action, count(*) AS k FROM generate_series(1, 63) n,
                    paygw_webhook('okepay', format('{\"transaction\": {\"id\": %s, \"invoice\": {\"paymentLinkId\": %s}}}', 800 + n, 1000100 + n),
                                  '{}', NULL, 'probe-rate') GROUP BY action) s")
[ "$res" = "ignored:3 probe:60" ] || check_fail "63 new payments gave: $res"
wait_for 20 '[ "$(sqlv "SELECT count(*) FROM paygw.invoices WHERE account = '"'probe-rate'"' AND status = '"'paid'"'")" = 60 ]' \
    || check_fail "the worker did not track the 60 probed payments"
sleep 1
calls=$(emu_stat "sorted(set(v for k, v in d['by_payment'].items() if k.startswith('okepay:10001')))")
n=$(emu_stat "len([k for k in d['by_payment'] if k.startswith('okepay:10001')])")
[ "$n" = 60 ] && [ "$calls" = "[1]" ] || check_fail "expected 60 payments asked about once each, the emulator saw $n (counts $calls)"
[ "$(sqlv "SELECT count(*) FROM paygw.invoice_events e JOIN paygw.invoices i ON i.id = e.invoice_id WHERE i.account = 'probe-rate'")" = 60 ] \
    || check_fail "expected 60 events"
wait_for 5 '[ "$(grep -c "\"account\" : \"probe-rate\"" "$notes")" = 60 ]' \
    || check_fail "expected 60 notifications, got $(grep -c "\"account\" : \"probe-rate\"" "$notes")"
echo "63 new payments of one account in a minute: 60 probed (60 status calls, 60 tracked, 60 events, 60 notifications), 3 ignored"
check_ok "paygw.webhook_probe_rate holds: N+k hints, N calls"

# confirm => true: the call is made in paygw_webhook, which returns the
# invoice; the worker makes none (OkePay 112: declined)
res=$(sqlv "SELECT format('%s %s', invoice_id IS NOT NULL, action) FROM paygw_webhook('okepay',
             '{\"transaction\": {\"id\": 900, \"invoice\": {\"paymentLinkId\": 112}}}', '{}', NULL, 'probe-ok', true)")
[ "$res" = "t tracked" ] || check_fail "confirm gave: $res"
[ "$(emu_stat "d['by_payment'].get('okepay:112', 0)")" = 1 ] || check_fail "confirm did not make its call in the call"
inv=$(sqlv "SELECT id FROM paygw.invoices WHERE account = 'probe-ok' AND payment_id = '112'")
[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = failed ] || check_fail "112 not tracked as failed"
wait_for 5 '[ "$(notified "$inv")" = 1 ]' || check_fail "no notification for the confirmed probe"
sleep 1.5
[ "$(emu_stat "d['by_payment'].get('okepay:112', 0)")" = 1 ] || check_fail "the worker called again after confirm"
[ "$(notified "$inv")" = 1 ] || check_fail "expected one notification for invoice $inv"
kill "$listener" 2>/dev/null || true; wait "$listener" 2>/dev/null || true
echo "okepay 112 with confirm => true: tracked as failed within paygw_webhook, one status call, one notification"
check_ok "confirm => true makes the probe's one call in the call"

# --- retention: the worker deletes old history while idle ----------------------
# (it looks at most once a minute; a restarted worker looks at its first idle
# moment)
sqlv "UPDATE paygw.invoice_events SET created_at = now() - interval '2 days'" >/dev/null
sqlv "UPDATE paygw.webhooks SET received_at = now() - interval '2 days'" >/dev/null
sqlv "UPDATE paygw.webhook_probes SET created_at = now() - interval '2 days'" >/dev/null
before=$(sqlv "SELECT (SELECT count(*) FROM paygw.invoice_events) || '/' || (SELECT count(*) FROM paygw.webhooks) || '/' || (SELECT count(*) FROM paygw.webhook_probes)")
sqlv "ALTER SYSTEM SET paygw.event_retention = '1d'" >/dev/null
sqlv "ALTER SYSTEM SET paygw.webhook_retention = '1d'" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
sqlv "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'paygw worker'" >/dev/null
wait_for 20 '[ "$(sqlv "SELECT (SELECT count(*) FROM paygw.invoice_events) + (SELECT count(*) FROM paygw.webhooks) + (SELECT count(*) FROM paygw.webhook_probes)")" = 0 ]' \
    || check_fail "the worker did not delete events, webhooks and probes older than their retention"
sqlv "ALTER SYSTEM RESET paygw.event_retention" >/dev/null
sqlv "ALTER SYSTEM RESET paygw.webhook_retention" >/dev/null
sqlv "SELECT pg_reload_conf()" >/dev/null
echo "retention 1 day: the worker deleted the 2-day-old history (events/webhooks/probes: $before -> 0/0/0)"
check_ok "the worker applies paygw.event_retention and paygw.webhook_retention"

sqlv "DROP EXTENSION paygw CASCADE" >/dev/null
