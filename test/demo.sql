-- test/demo.sql -- the paygw demo, run by test/demo.sh against a throwaway
-- cluster and the gateway emulator:
--   psql -X -v ON_ERROR_STOP=1 -v emu_url=http://127.0.0.1:PORT \
--        -v pem_file=test/keys/alikassa-test.pem -v alikassa_pass=... \
--        -v okepay_secret=... -v obmenka_salt=... -v morune_key=... -f test/demo.sql
-- Secrets are psql variables used as :'name' literals; the private key is
-- read from its file by psql itself, so it is never on a command line.
-- The second half is the whole payment lifecycle for each gateway: create,
-- pay in the emulator, hand its webhook to paygw_webhook(), and the
-- worker's signed confirmation arriving as a NOTIFY.

\set QUIET on
\set pem `cat :'pem_file'`
\set notify_pem `cat :'notify_pem_file'`
CREATE EXTENSION paygw;

INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url) VALUES
  ('okepay-demo',   'okepay',   'demo-shop',                            :'okepay_secret', NULL,             :'emu_url' || '/okepay'),
  ('obmenka-demo',  'obmenka',  '1234',                                 :'obmenka_salt',  NULL,             :'emu_url' || '/obmenka'),
  ('alikassa-demo', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem',           :'alikassa_pass', :'emu_url' || '/alikassa'),
  ('morune-demo',   'morune',   '3fa85f64-5717-4562-b3fc-2c963f66afa6', :'morune_key',    NULL,             :'emu_url' || '/morune');
-- what verifies the signed webhooks: Morune's additional key, AliKassa's
-- notification public key
UPDATE paygw.credentials SET webhook_key = :'morune_additional_key' WHERE name = 'morune-demo';
UPDATE paygw.credentials SET webhook_key = :'notify_pem',
       options = '{"create": {"customer_browser_user_agent": "demo-shop/1.0"}}' WHERE name = 'alikassa-demo';
\set QUIET off

\echo
\echo '== paygw.accounts: the stored credentials, without their secrets'
SELECT name, provider, merchant_id, base_url, has_secret_password
  FROM paygw.accounts ORDER BY provider;

\echo '== paygw_status(provider, id): one signed call to each gateway'
SELECT s.provider, s.payment_id, s.order_id, s.status, s.provider_status, s.amount, s.currency
  FROM (VALUES (1, 'okepay',   '106'),
               (2, 'obmenka',  '79DF-60B0-1702'),
               (3, 'alikassa', '100000537'),
               (4, 'morune',   'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001')) AS q(n, provider, id),
       paygw_status(q.provider, q.id) AS s
 ORDER BY q.n;

\echo '== paygw_status_by_order(provider, order_id): by the merchant''s own order id'
SELECT provider, account, payment_id, order_id, status, amount, currency,
       response->'data'->>'pay_service' AS "response->data->pay_service"
  FROM paygw_status_by_order('morune', 'mo-order-1');

\echo '== A payment the gateway does not know: an error with its own SQLSTATE'
\set ON_ERROR_STOP off
SELECT * FROM paygw_status('okepay', '999');
\set ON_ERROR_STOP on
\echo 'SQLSTATE' :LAST_ERROR_SQLSTATE

\echo
\echo '== The whole lifecycle: create -> the customer pays -> webhook -> signed confirmation -> NOTIFY'
LISTEN paygw_status;

\echo '-- paygw_create_invoice: one signed create call per gateway; the invoice is tracked at once'
SELECT invoice_id, provider, payment_id, order_id, status, pay_url
  FROM (VALUES
    (1, paygw_create_invoice('okepay', 10.50, 'CHF', 'demo-1001', '{"purpose": "Demo order 1001", "validity": 30}')),
    (2, paygw_create_invoice('obmenka', 250, 'visamaster.uah', 'demo-1002',
                             '{"description": "Demo order 1002", "status_url": "https://shop.example/paygw/obmenka"}')),
    (3, paygw_create_invoice('alikassa', 990, NULL, 'demo-1003',
                             '{"service": "payment_card_rub", "customer_ip": "203.0.113.7",
                               "notification_endpoint_url": "https://shop.example/paygw/alikassa"}')),
    (4, paygw_create_invoice('morune', 499.90, 'RUB', 'demo-1004', '{"hook_url": "https://shop.example/paygw/morune"}'))
  ) AS c(n, r), LATERAL (SELECT (c.r).*) AS i
 ORDER BY n;

\echo '-- calling it again with the same order id returns the same invoice, and makes no request'
SELECT invoice_id, provider, order_id FROM paygw_create_invoice('morune', 499.90, 'RUB', 'demo-1004');

\echo '-- the customers pay (in the emulator), and each gateway sends its webhook'
SELECT payment_id AS ok_id FROM paygw.invoices WHERE order_id = 'demo-1001' \gset
SELECT payment_id AS ob_id FROM paygw.invoices WHERE order_id = 'demo-1002' \gset
SELECT payment_id AS ak_id FROM paygw.invoices WHERE order_id = 'demo-1003' \gset
SELECT payment_id AS mo_id FROM paygw.invoices WHERE order_id = 'demo-1004' \gset
\set ok_hook `python3 "$PAYGW_TEST_DIR/emulator/pay.py" okepay :'ok_id'`
\set ob_hook `python3 "$PAYGW_TEST_DIR/emulator/pay.py" obmenka :'ob_id'`
\set ak_hook `python3 "$PAYGW_TEST_DIR/emulator/pay.py" alikassa :'ak_id'`
\set mo_hook `python3 "$PAYGW_TEST_DIR/emulator/pay.py" morune :'mo_id'`
SELECT h.provider, h.w->>'method' AS method, h.w->>'path' AS path,
       left(COALESCE(NULLIF(h.w->>'body', ''), h.w->>'query'), 70) AS "body or query (cut)"
  FROM (VALUES ('okepay', :'ok_hook'::jsonb), ('obmenka', :'ob_hook'::jsonb),
               ('alikassa', :'ak_hook'::jsonb), ('morune', :'mo_hook'::jsonb)) AS h(provider, w);

\echo '-- the shop''s handler passes each request to paygw_webhook: signatures checked where the'
\echo '-- gateway signs (morune, alikassa); the invoice becomes due, no gateway call is made here'
SELECT h.provider, r.*
  FROM (VALUES ('okepay', :'ok_hook'::jsonb), ('obmenka', :'ob_hook'::jsonb),
               ('alikassa', :'ak_hook'::jsonb), ('morune', :'mo_hook'::jsonb)) AS h(provider, w),
       paygw_webhook(h.provider, h.w->>'body', h.w->'headers', NULLIF(h.w->>'query', '')) AS r;

\echo '-- the worker, woken at commit, confirms each with a signed status call'
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM paygw.invoices
                               WHERE order_id LIKE 'demo-100%' AND status <> 'paid');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT i.provider, i.order_id, i.status, i.provider_status, i.amount, i.currency,
       e.old_status || ' -> ' || e.new_status AS event
  FROM paygw.invoices i JOIN paygw.invoice_events e ON e.invoice_id = i.id
 WHERE i.order_id LIKE 'demo-100%' ORDER BY i.id, e.id;
