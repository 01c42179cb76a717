#!/usr/bin/env bash
# test/checks/26-lifecycle.sh -- the whole payment lifecycle for each of the
# four gateways, with the worker: paygw_create_invoice (signed create call,
# tracked at once) -> the worker's first check (pending) -> the customer pays
# (in the emulator) -> the gateway's own webhook -> paygw_webhook (verified
# where the gateway signs) -> the worker, woken at commit, confirms with one
# signed status call -> exactly one event and one NOTIFY per invoice.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
worker_db_ready
q -d postgres -v emu="$emu" -v pem="$(cat "$PAYGW_TEST_DIR/keys/alikassa-test.pem")" \
    -v notify="$(cat "$PAYGW_TEST_DIR/keys/alikassa-notify.pub.pem")" >/dev/null <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url, webhook_key, options)
VALUES ('lc-ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', NULL, :'emu' || '/okepay', NULL, '{}'),
       ('lc-ob', 'obmenka', '1234', 'obmenka-test-salt-9Kp', NULL, :'emu' || '/obmenka', NULL, '{}'),
       ('lc-ak', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem', 'test-alikassa-pass',
        :'emu' || '/alikassa', :'notify',
        '{"create": {"service": "payment_card_rub", "customer_browser_user_agent": "check/26",
                     "notification_endpoint_url": "https://shop.example/hooks/alikassa"}}'),
       ('lc-mo', 'morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'morune-test-key-d6be9962', NULL,
        :'emu' || '/morune', 'morune-test-addkey-5e1f0c27',
        '{"create": {"hook_url": "https://shop.example/hooks/morune"}}')
ON CONFLICT (name) DO NOTHING;
SQL
wait_for 15 '[ -n "$(worker_pid)" ]' || check_fail "worker not running"
emu_post reset '{}'

notes=$PAYGW_WORKDIR/lifecycle-notify.out
{ echo "LISTEN paygw_status;"; for _ in $(seq 400); do echo "SELECT pg_sleep(0.1);"; done; } \
    | psql -X -d postgres -At > "$notes" 2>&1 &
listener=$!
cleanup() {
    kill "$listener" 2>/dev/null || true
    # leave database postgres as it was: later checks use its single
    # okepay account without naming it
    sqlv "DELETE FROM paygw.invoices WHERE account LIKE 'lc-%'" >/dev/null 2>&1 || true
    sqlv "DELETE FROM paygw.webhooks WHERE account LIKE 'lc-%'" >/dev/null 2>&1 || true
    sqlv "DELETE FROM paygw.credentials WHERE name LIKE 'lc-%'" >/dev/null 2>&1 || true
}
trap cleanup EXIT
sleep 0.5

run=$(date +%s%N)
declare -A created=(
    [okepay]="paygw_create_invoice('okepay', 12.30, 'CHF', 'lc-ok-$run', '{\"validity\": 15}', 'lc-ok')"
    [obmenka]="paygw_create_invoice('obmenka', 77, 'visamaster.uah', 'lc-ob-$run', '{\"status_url\": \"https://shop.example/hooks/obmenka\"}', 'lc-ob')"
    [alikassa]="paygw_create_invoice('alikassa', 300, NULL, 'lc-ak-$run', '{\"customer_ip\": \"192.0.2.1\"}', 'lc-ak')"
    [morune]="paygw_create_invoice('morune', 45.5, NULL, 'lc-mo-$run', '{}', 'lc-mo')"
)
declare -A signed=([okepay]=f [obmenka]=f [alikassa]=t [morune]=t)
declare -A account=([okepay]=lc-ok [obmenka]=lc-ob [alikassa]=lc-ak [morune]=lc-mo)
for provider in okepay obmenka alikassa morune; do
    row=$(sqlv "SELECT invoice_id || ' ' || payment_id || ' ' || (pay_url IS NOT NULL) FROM ${created[$provider]}")
    read -r inv gid has_url <<<"$row"
    [ "$has_url" = true ] || check_fail "$provider: no pay_url"
    # tracked at once: the worker's first check finds it pending
    wait_for 15 '[ "$(sqlv "SELECT check_count > 0 FROM paygw.invoices WHERE id = $inv")" = t ]' \
        || check_fail "$provider: the worker did not check the created invoice"
    [ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = pending ] || check_fail "$provider: not pending"
    # only the webhook may bring the next check in (the test configuration's
    # backoff is 1 s)
    sqlv "UPDATE paygw.invoices SET next_check_at = now() + interval '1 hour' WHERE id = $inv" >/dev/null
    calls_before=$(emu_stat "d['by_payment'].get('$provider:$gid', 0)")

    # the customer pays; the gateway sends its webhook; the handler hands it over
    hook=$(python3 "$PAYGW_TEST_DIR/emulator/pay.py" "$provider" "$gid")
    res=$(q -d postgres -v hook="$hook" -v p="$provider" -v acct="${account[$provider]}" <<'SQL'
SELECT format('%s %s %s', r.invoice_id, r.verified, r.action)
  FROM (SELECT :'hook'::jsonb AS w) h,
       paygw_webhook(:'p', h.w->>'body', h.w->'headers', NULLIF(h.w->>'query', ''), :'acct') r;
SQL
)
    [ "$res" = "$inv ${signed[$provider]} scheduled" ] || check_fail "$provider: paygw_webhook returned: $res"
    wait_for 15 '[ "$(sqlv "SELECT status FROM paygw.invoices WHERE id = $inv")" = paid ]' \
        || check_fail "$provider: the worker did not confirm the payment after the webhook"
    wait_for 5 grep -q "\"invoice_id\" : $inv," "$notes" || check_fail "$provider: no notification"
    calls=$(( $(emu_stat "d['by_payment'].get('$provider:$gid', 0)") - calls_before ))
    [ "$calls" = 1 ] || check_fail "$provider: $calls status calls after the webhook, expected 1"
    echo "$provider: created (invoice $inv), pending, paid, webhook verified=${signed[$provider]}, one status call, paid"
    invs+=("$inv")
done

sleep 1
kill "$listener" 2>/dev/null || true; wait "$listener" 2>/dev/null || true
for inv in "${invs[@]}"; do
    [ "$(grep -c "\"invoice_id\" : $inv," "$notes")" = 1 ] || check_fail "invoice $inv: expected exactly one notification"
    [ "$(sqlv "SELECT count(*) FROM paygw.invoice_events WHERE invoice_id = $inv AND applied")" = 1 ] \
        || check_fail "invoice $inv: expected exactly one applied event"
done
# no second create was sent for any order
creates=$(emu_stat "sorted(d['creates_by_order'].items())")
python3 -c "import sys; d=dict(eval(sys.argv[1])); bad={k: v for k, v in d.items() if 'lc-' in k and v != 1}; sys.exit(1 if bad or len(d) < 4 else 0)" "$creates" \
    || check_fail "creates by order: $creates"

# Two sessions creating one order id: the second waits for the first (the
# create lock) and gets its invoice, no second request.  Under REPEATABLE
# READ, a snapshot taken before the first committed cannot see that invoice:
# 40001 (retry), never a second create.
order="lc-race-$run"
for iso in "READ COMMITTED" "REPEATABLE READ"; do
    o="$order-${iso// /-}"
    out=$PAYGW_WORKDIR/lifecycle-race.out
    { echo "BEGIN ISOLATION LEVEL $iso;"; echo "SELECT 1;"; echo "SELECT pg_sleep(1.5);"
      echo "SELECT 'second:' || invoice_id FROM paygw_create_invoice('morune', 9, NULL, '$o', '{}', 'lc-mo');"
      echo "COMMIT;"; } | psql -X -d postgres -At -v VERBOSITY=verbose > "$out" 2>&1 &
    second=$!
    sleep 0.5
    first=$(sqlv "BEGIN; SELECT invoice_id FROM paygw_create_invoice('morune', 9, NULL, '$o', '{}', 'lc-mo'), pg_sleep(0.5); COMMIT;" | grep -E '^[0-9]+' | cut -d'|' -f1)
    wait "$second" || true
    if [ "$iso" = "READ COMMITTED" ]; then
        grep -q "^second:$first\$" "$out" || check_fail "read committed: the second session did not get invoice $first: $(cat "$out")"
    else
        grep -q "40001" "$out" || check_fail "repeatable read: expected 40001: $(cat "$out")"
    fi
    n=$(emu_stat "d['creates_by_order'].get('morune:$o', 0)")
    [ "$n" = 1 ] || check_fail "$iso: $n creates for one order id"
    echo "$iso: two sessions, one order id: one create, $( [ "$iso" = "READ COMMITTED" ] && echo "the second got invoice $first" || echo "the second got 40001")"
done

check_ok "create -> pay -> webhook -> signed confirmation -> one event and one NOTIFY, for all four gateways"
