-- paygw_create_invoice(): every gateway against the emulator, every option
-- rule, idempotency by order id, duplicates resolved by a lookup, errors.
-- Needs setup.sql (paygw_try, paygw_fault_account); its own accounts, so
-- that it does not depend on what earlier suites did to ok, ob, ak and mo.
\! curl -sf -X POST -o /dev/null "http://127.0.0.1:$PAYGW_EMU_PORT/_control/reset" && echo emulator reset
\getenv emu_port PAYGW_EMU_PORT
\getenv testdir PAYGW_TEST_DIR
\set emu 'http://127.0.0.1:' :emu_port
\set pem `cat :testdir/keys/alikassa-test.pem`
RESET paygw.key_file;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url) VALUES
  ('cr-ok', 'okepay',   'demo-shop', 'okepay-test-secret-7Qx', NULL, :'emu' || '/okepay'),
  ('cr-ob', 'obmenka',  '1234', 'obmenka-test-salt-9Kp', NULL, :'emu' || '/obmenka'),
  ('cr-ak', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem', 'test-alikassa-pass', :'emu' || '/alikassa'),
  ('cr-mo', 'morune',   '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'morune-test-key-d6be9962', NULL, :'emu' || '/morune');

-- OkePay: amount in cents, referenceId the order id, the options sent as
-- PHP's http_build_query (nested ones too) and covered by the signature
SELECT invoice_id > 0 AS tracked, provider, account, payment_id ~ '^[0-9]+$' AS gateway_id,
       order_id, status, pay_url LIKE '%/pay/okepay/%' AS pay_url,
       expires_at BETWEEN now() + interval '29 min' AND now() + interval '31 min' AS expires,
       response->'data'->0->>'amount' AS cents, response->'data'->0->>'currency' AS currency,
       response->'data'->0->'pm' AS pm, response->'data'->0->'fields' AS fields
  FROM paygw_create_invoice('okepay', 10.5, 'chf', 'ORD-OK-1',
                            '{"purpose": "Order 1", "validity": 30, "skipResultPage": true,
                              "pm": ["visa", "mastercard"], "psp": [44], "vatRate": "7.7",
                              "fields": {"email": {"value": "a b+c@example.com"}},
                              "successRedirectUrl": "https://shop.example/ok?x=1&y=ü"}', account => 'cr-ok');
-- the same gateway through a status call
SELECT s.status, s.amount, s.currency, s.order_id
  FROM paygw.invoices i, paygw_status('okepay', i.payment_id, 'cr-ok') s
 WHERE i.order_id = 'ORD-OK-1';

-- Obmenka: create, then process for the pay link; both replies verified.
-- "currency" is the method code; status_url gets payment_id=<order id>.
SELECT provider, order_id, payment_id ~ '^E[0-9A-F]{3}-[0-9A-F]{4}-[0-9A-F]{4}$' AS tracking,
       status, pay_url LIKE '%/pay/obmenka/%?form=1' AS pay_form, expires_at,
       response->'create' ? 'tracking' AS create_reply, response->'process'->>'status' AS process_status
  FROM paygw_create_invoice('obmenka', 1000, 'visamaster.uah', 'ORD-OB-1',
                            '{"description": "Заказ 1", "status_url": "https://shop.example/obmenka?shop=7",
                              "extra_fields": {"customer": 42}}', account => 'cr-ob');
SELECT s.status, s.provider_status, s.amount, s.currency
  FROM paygw_status_by_order('obmenka', 'ORD-OB-1', 'cr-ob') s;
\! python3 -c 'import json,os,urllib.request; r=urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%s/_control/webhook" % os.environ["PAYGW_EMU_PORT"], data=json.dumps({"provider":"obmenka","order_id":"ORD-OB-1"}).encode(), headers={"content-type":"application/json"})); print("callback query:", json.load(r)["query"])'

-- AliKassa: no currency field (the service implies it), amount as "10.50"
SELECT provider, order_id, payment_id ~ '^[0-9]+$' AS id, status, pay_url LIKE '%/pay/alikassa/%' AS pay_url,
       expires_at BETWEEN now() + interval '899 s' AND now() + interval '901 s' AS expires,
       response->>'payment_status' AS payment_status
  FROM paygw_create_invoice('alikassa', 250.00, NULL, 'ORD-AK-1',
                            '{"service": "payment_card_rub", "customer_ip": "203.0.113.9",
                              "customer_browser_user_agent": "Mozilla/5.0", "lifetime": "900",
                              "desc": "Order / 1", "notification_endpoint_url": "https://shop.example/ak"}', account => 'cr-ak');
SELECT provider, order_id, status, expires_at IS NULL AS no_lifetime
  FROM paygw_create_invoice('alikassa', 1.99, 'rub', 'ORD-AK-2',
                            '{"service": "payment_card_rub", "customer_ip": "2001:db8::1",
                              "customer_browser_user_agent": "curl"}', account => 'cr-ak');

-- Morune: currency RUB unless given; custom_fields sent as a JSON string
SELECT provider, order_id, payment_id ~ '^[0-9a-f-]{36}$' AS invoice_id, status,
       pay_url LIKE '%/pay/morune/%' AS pay_url,
       expires_at BETWEEN now() + interval '299 min' AND now() + interval '301 min' AS expires,
       response->'data'->>'currency' AS currency, response->'data'->>'amount' AS amount
  FROM paygw_create_invoice('morune', 100, NULL, 'ORD-MO-1',
                            '{"custom_fields": {"user": 1}, "hook_url": "https://shop.example/mo",
                              "include_service": ["card"]}', account => 'cr-mo');
SELECT s.status, s.amount, s.currency, s.response->'data'->'custom_field' AS custom_field
  FROM paygw_status_by_order('morune', 'ORD-MO-1', 'cr-mo') s;
SELECT order_id, response->'data'->>'currency' AS currency,
       expires_at BETWEEN now() + interval '59 min' AND now() + interval '61 min' AS expires
  FROM paygw_create_invoice('morune', 5.5, 'usd', 'ORD-MO-2', '{"expire": 60, "custom_fields": "{\"a\":[1,2]}"}', account => 'cr-mo');
SELECT s.currency, s.response->'data'->'custom_field' AS custom_field
  FROM paygw_status_by_order('morune', 'ORD-MO-2', 'cr-mo') s;

-- exact amounts: trailing zeros carry no value (1.230 is 1.23), an exponent
-- is just another spelling (1e3 is 1000)
SELECT order_id, response->'data'->>'amount' AS sent
  FROM paygw_create_invoice('morune', 1.230, NULL, 'ORD-MO-3', account => 'cr-mo');
SELECT order_id, response->'data'->>'amount' AS sent
  FROM paygw_create_invoice('morune', '1e3', NULL, 'ORD-MO-4', account => 'cr-mo');
SELECT order_id, create_amount FROM paygw.invoices WHERE order_id IN ('ORD-MO-3', 'ORD-MO-4') ORDER BY 1;

-- Every created invoice is tracked like paygw_track() would, with what
-- was asked for kept
SELECT provider, account, order_id, status, create_amount, create_currency, currency,
       next_check_at IS NOT NULL AS due, pay_url IS NOT NULL AS pay_url
  FROM paygw.invoices WHERE create_amount IS NOT NULL ORDER BY id;
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates created

-- Idempotent by order id: the tracked invoice again, no request made
SELECT (SELECT id FROM paygw.invoices WHERE order_id = 'ORD-MO-1') = c.invoice_id AS same_invoice,
       c.status, c.pay_url IS NOT NULL AS pay_url, c.response ? 'data' AS has_reply
  FROM paygw_create_invoice('morune', 100.00, 'RUB', 'ORD-MO-1', account => 'cr-mo') c;
SELECT (SELECT id FROM paygw.invoices WHERE order_id = 'ORD-OB-1') = c.invoice_id AS same_invoice
  FROM paygw_create_invoice('obmenka', 1000, 'visamaster.uah', 'ORD-OB-1', account => 'cr-ob') c;
-- ... compared with what was asked for at creation, not what status calls
-- report (the invoice ids depend on earlier suites: masked)
SELECT regexp_replace(paygw_try($$SELECT paygw_create_invoice('morune', 100.01, NULL, 'ORD-MO-1', account => 'cr-mo')$$, true), 'invoice [0-9]+', 'invoice N');
SELECT regexp_replace(paygw_try($$SELECT paygw_create_invoice('morune', 100, 'EUR', 'ORD-MO-1', account => 'cr-mo')$$, true), 'invoice [0-9]+', 'invoice N');
SELECT regexp_replace(paygw_try($$SELECT paygw_create_invoice('obmenka', 1000, 'privat24.uah', 'ORD-OB-1', account => 'cr-ob')$$, true), 'invoice [0-9]+', 'invoice N');
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates created

-- An outcome the caller never saw (a rolled-back transaction): the retry
-- meets the gateway's "duplicate order id" and resolves it by a lookup, so
-- there is still one payable invoice
BEGIN;
SELECT order_id FROM paygw_create_invoice('morune', 42, NULL, 'ORD-MO-RB', account => 'cr-mo');
SELECT order_id FROM paygw_create_invoice('alikassa', 42, NULL, 'ORD-AK-RB',
       '{"service": "payment_card_rub", "customer_ip": "203.0.113.9", "customer_browser_user_agent": "x"}', account => 'cr-ak');
SELECT order_id FROM paygw_create_invoice('obmenka', 42, 'visamaster.uah', 'ORD-OB-RB', account => 'cr-ob');
ROLLBACK;
SELECT count(*) FROM paygw.invoices WHERE order_id LIKE '%-RB';
SELECT provider, order_id, payment_id IS NOT NULL AS payment_id, status, pay_url IS NOT NULL AS pay_url,
       (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(response) k) AS replies
  FROM paygw_create_invoice('morune', 42, NULL, 'ORD-MO-RB', account => 'cr-mo')
UNION ALL
SELECT provider, order_id, payment_id IS NOT NULL, status, pay_url IS NOT NULL,
       (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(response) k)
  FROM paygw_create_invoice('alikassa', 42, NULL, 'ORD-AK-RB',
       '{"service": "payment_card_rub", "customer_ip": "203.0.113.9", "customer_browser_user_agent": "x"}', account => 'cr-ak')
UNION ALL
SELECT provider, order_id, payment_id IS NOT NULL, status, pay_url IS NOT NULL,
       (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(response) k)
  FROM paygw_create_invoice('obmenka', 42, 'visamaster.uah', 'ORD-OB-RB', account => 'cr-ob');
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates_by_order.morune:ORD-MO-RB creates_by_order.alikassa:ORD-AK-RB creates_by_order.obmenka:ORD-OB-RB created
-- ... also when the invoice was paid meanwhile: Obmenka's process call then
-- says it is final (no pay link), and the invoice is tracked as pending so
-- that the worker's first check records the change with its event and NOTIFY
BEGIN;
SELECT order_id FROM paygw_create_invoice('obmenka', 43, 'visamaster.uah', 'ORD-OB-PAID', account => 'cr-ob');
ROLLBACK;
\! curl -sf -X POST -o /dev/null -d '{"provider":"obmenka","order_id":"ORD-OB-PAID","status":"paid"}' "http://127.0.0.1:$PAYGW_EMU_PORT/_control/settle" && echo paid in the emulator
SELECT order_id, status, pay_url,
       response->'status'->>'status' AS looked_up, response->'process'->'error'->>'code' AS process_said
  FROM paygw_create_invoice('obmenka', 43, 'visamaster.uah', 'ORD-OB-PAID', account => 'cr-ob');
SELECT status, provider_status, next_check_at <= now() AS due_now
  FROM paygw.invoices WHERE order_id = 'ORD-OB-PAID';
-- ... and a different amount at the gateway is a conflict, not a second invoice
BEGIN;
SELECT order_id FROM paygw_create_invoice('morune', 10, NULL, 'ORD-MO-RB2', account => 'cr-mo');
ROLLBACK;
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 20, NULL, 'ORD-MO-RB2', account => 'cr-mo')$$, true);
SELECT count(*) FROM paygw.invoices WHERE order_id = 'ORD-MO-RB2';
-- The reply lost on the wire (the emulator creates, then resets the
-- connection): an error that says to retry; the retry finds the invoice
SELECT paygw_fault_account('cr-mo', 'reset') AS mo_reset \gset
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 7, NULL, 'ORD-MO-LOST', account => '$$ || :'mo_reset' || $$')$$, true);
DELETE FROM paygw.credentials WHERE name = :'mo_reset';
SELECT order_id, status, payment_id IS NOT NULL AS found
  FROM paygw_create_invoice('morune', 7, NULL, 'ORD-MO-LOST', account => 'cr-mo');
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates_by_order.morune:ORD-MO-LOST
-- OkePay cannot tell: referenceId is not unique and cannot be looked up, so
-- a retry after a lost outcome creates a second gateway (see the docs)
BEGIN;
SELECT order_id FROM paygw_create_invoice('okepay', 3, 'CHF', 'ORD-OK-RB', account => 'cr-ok');
ROLLBACK;
SELECT order_id FROM paygw_create_invoice('okepay', 3, 'CHF', 'ORD-OK-RB', account => 'cr-ok');
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates_by_order.okepay:ORD-OK-RB

-- Per-account defaults in the credential's options->'create', under the
-- same rules; the call's options override them, null removes one
UPDATE paygw.credentials SET options = '{"create": {"service": "payment_card_rub",
    "customer_browser_user_agent": "shop-backend/1.0", "desc": "default"}}' WHERE name = 'cr-ak';
SELECT order_id, response->>'payment_status' AS payment_status
  FROM paygw_create_invoice('alikassa', 9, 'RUB', 'ORD-AK-DEF', '{"customer_ip": "198.51.100.1", "desc": null}', account => 'cr-ak');
SELECT paygw_try($$UPDATE paygw.credentials SET options = '{"create": {"lifetime": 10}}' WHERE name = 'cr-ak'$$, true);
SELECT paygw_try($$UPDATE paygw.credentials SET options = '{"create": {"nope": 1}}' WHERE name = 'cr-ak'$$, true);
SELECT paygw_try($$UPDATE paygw.credentials SET options = '{"create": []}' WHERE name = 'cr-ak'$$, true);
UPDATE paygw.credentials SET options = '{}' WHERE name = 'cr-ak';

-- Bad input: a clear error naming what is wrong, before any request (the
-- counters below are the same before and after)
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E1', '{"colour": "red"}', account => 'cr-mo')$$, true);
SELECT paygw_try($$SELECT paygw_create_invoice('alikassa', 1, NULL, 'E2', '{"service": "payment_card_rub", "customer_browser_user_agent": "x"}', account => 'cr-ak')$$, true);
SELECT paygw_try($$SELECT paygw_create_invoice('alikassa', 1, NULL, 'E3', '{"service": "payment_card_rub", "customer_ip": "300.1.1.1", "customer_browser_user_agent": "x"}', account => 'cr-ak')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('alikassa', 1, NULL, 'E4', '{"service": "payment_card_rub", "customer_ip": "1.1.1.1", "customer_browser_user_agent": "x", "lifetime": 60}', account => 'cr-ak')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('alikassa', 1, 'USD', 'E5', '{"service": "payment_card_rub", "customer_ip": "1.1.1.1", "customer_browser_user_agent": "x"}', account => 'cr-ak')$$, true);
SELECT paygw_try($$SELECT paygw_create_invoice('alikassa', 1, NULL, repeat('x', 129), '{"service": "payment_card_rub", "customer_ip": "1.1.1.1", "customer_browser_user_agent": "x"}', account => 'cr-ak')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E6', '{"hook_url": "ftp://x"}', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E7', '{"expire": "soon"}', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E8', '{"include_service": "card"}', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E9', jsonb_build_object('custom_fields', jsonb_build_object('k', repeat('x', 600))), account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E9b', '{"custom_fields": "not json"}', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, 'GBP', 'E10', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1.234, NULL, 'E11', account => 'cr-mo')$$, true);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 0, NULL, 'E12', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', -5, NULL, 'E13', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 'NaN', NULL, 'E14', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 'Infinity', NULL, 'E14b', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 0.001, NULL, 'E14c', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 12345678901, NULL, 'E15', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', NULL, NULL, 'E16', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, NULL, account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, '', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E17', '[1]', account => 'cr-mo')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('okepay', 1, 'CHFX', 'E18', account => 'cr-ok')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('okepay', 1, NULL, 'E19', account => 'cr-ok')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('okepay', 1, 'CHF', 'E20', '{"skipResultPage": "yes"}', account => 'cr-ok')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('okepay', 1, 'CHF', 'E21', '{"psp": ["a"]}', account => 'cr-ok')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('okepay', 1, 'CHF', 'E22', '{"vatRate": 7.777}', account => 'cr-ok')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('obmenka', 1, 'UAH', 'E23', account => 'cr-ob')$$, true);
SELECT paygw_try($$SELECT paygw_create_invoice('nopay', 1, 'UAH', 'E24')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E25', account => 'nobody')$$);
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E26', account => 'cr-ok')$$);
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates
-- the gateway refuses (an unknown method code): its message in DETAIL
SELECT paygw_try($$SELECT paygw_create_invoice('obmenka', 1, 'bitcoin.btc', 'E27', account => 'cr-ob')$$, true);
-- credentials the gateway rejects
SELECT paygw_fault_account('cr-mo', 'status=401') AS mo_401 \gset
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E28', account => '$$ || :'mo_401' || $$')$$);
DELETE FROM paygw.credentials WHERE name = :'mo_401';
-- a read-only transaction could not keep the invoice: refused before the request
BEGIN READ ONLY;
SELECT paygw_try($$SELECT paygw_create_invoice('morune', 1, NULL, 'E29', account => 'cr-mo')$$);
ROLLBACK;
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" creates_by_order.morune:E29
SELECT count(*) AS error_rows FROM paygw.invoices WHERE order_id ~ '^E[0-9]';

-- no secret in any reply kept: none of this suite's accounts' secrets and
-- passwords, no private key (the secrets are not spelled out here: the
-- secret scan would find them in this statement)
SELECT count(*) AS leaks FROM paygw.invoices i
 WHERE i.create_response::text ~ 'PRIVATE KEY'
    OR EXISTS (SELECT 1 FROM paygw.credentials c
                WHERE c.name LIKE 'cr-%'
                  AND (strpos(i.create_response::text, c.secret) > 0
                       OR strpos(i.create_response::text, c.secret_password) > 0));

-- the worker's view: created invoices are due like tracked ones
SELECT count(*) FILTER (WHERE next_check_at IS NOT NULL) AS due, count(*) AS created
  FROM paygw.invoices WHERE create_amount IS NOT NULL;
