-- test/demo.sql -- the paygw demo, run by test/demo.sh against a throwaway
-- cluster and the gateway emulator:
--   psql -X -v ON_ERROR_STOP=1 -v emu_url=http://127.0.0.1:PORT \
--        -v pem_file=test/keys/alikassa-test.pem -v alikassa_pass=... \
--        -v okepay_secret=... -v obmenka_salt=... -v morune_key=... -f test/demo.sql
-- Secrets are psql variables used as :'name' literals; the private key is
-- read from its file by psql itself, so it is never on a command line.

\set QUIET on
\set pem `cat :'pem_file'`
CREATE EXTENSION paygw;

INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url) VALUES
  ('okepay-demo',   'okepay',   'demo-shop',                            :'okepay_secret', NULL,             :'emu_url' || '/okepay'),
  ('obmenka-demo',  'obmenka',  '1234',                                 :'obmenka_salt',  NULL,             :'emu_url' || '/obmenka'),
  ('alikassa-demo', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem',           :'alikassa_pass', :'emu_url' || '/alikassa'),
  ('morune-demo',   'morune',   '3fa85f64-5717-4562-b3fc-2c963f66afa6', :'morune_key',    NULL,             :'emu_url' || '/morune');
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
