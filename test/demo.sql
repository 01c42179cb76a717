-- test/demo.sql -- the paygw demo, run by test/demo.sh against a throwaway
-- cluster and the gateway emulator:
--   psql -X -v ON_ERROR_STOP=1 -v emu_url=http://127.0.0.1:PORT \
--        -v pem="$(cat test/keys/alikassa-test.pem)" -v alikassa_pass=... \
--        -v okepay_secret=... -v obmenka_salt=... -v morune_key=... -f test/demo.sql
-- Secrets arrive as psql variables and are used as :'name' literals.

\set QUIET on
CREATE EXTENSION paygw;
SET search_path = public, paygw;

INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url) VALUES
  ('okepay-demo',   'okepay',   'demo-shop',                            :'okepay_secret', NULL,             :'emu_url' || '/okepay'),
  ('obmenka-demo',  'obmenka',  '1234',                                 :'obmenka_salt',  NULL,             :'emu_url' || '/obmenka'),
  ('alikassa-demo', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem',           :'alikassa_pass', :'emu_url' || '/alikassa'),
  ('morune-demo',   'morune',   '3fa85f64-5717-4562-b3fc-2c963f66afa6', :'morune_key',    NULL,             :'emu_url' || '/morune');
\set QUIET off

\echo
\echo '== Credentials (secrets not shown):'
SELECT name, provider, merchant_id, base_url FROM paygw.credentials ORDER BY name;

\echo '== paygw_status(provider, payment_id): one live lookup per gateway'
SELECT provider, payment_id, order_id, status, provider_status, amount, currency
  FROM paygw_status('okepay', '106')
UNION ALL
SELECT provider, payment_id, order_id, status, provider_status, amount, currency
  FROM paygw_status('obmenka', '79DF-60B0-1702')
UNION ALL
SELECT provider, payment_id, order_id, status, provider_status, amount, currency
  FROM paygw_status('alikassa', '100000537')
UNION ALL
SELECT provider, payment_id, order_id, status, provider_status, amount, currency
  FROM paygw_status('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001');

\echo '== paygw_status_by_order(provider, order_id): lookup by the merchant''s order id'
SELECT * FROM paygw_status_by_order('morune', 'mo-order-1');
