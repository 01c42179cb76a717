--
-- upgrade: 0.1 installed and updated to 0.2, then 0.3, gives exactly the
-- objects a fresh install has, and keeps the data.  Runs last: it drops
-- and recreates the extension.
--
\getenv emu_port PAYGW_EMU_PORT
CREATE TEMP TABLE fresh AS
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'paygw');
SELECT extversion FROM pg_extension WHERE extname = 'paygw';

DROP EXTENSION paygw CASCADE;
CREATE EXTENSION paygw VERSION '0.1';
SELECT extversion FROM pg_extension WHERE extname = 'paygw';
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx',
        'http://127.0.0.1:' || :'emu_port' || '/okepay');
SELECT status FROM paygw_status('okepay', '106');

ALTER EXTENSION paygw UPDATE TO '0.2';
SELECT extversion FROM pg_extension WHERE extname = 'paygw';
SELECT paygw_track('okepay', '106') IS NOT NULL AS tracked_in_0_2;

ALTER EXTENSION paygw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'paygw';

-- the same objects as a fresh install (both lists empty = identical)
(SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
  WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
    AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'paygw')
 EXCEPT SELECT object FROM fresh)
UNION ALL
(SELECT object FROM fresh
 EXCEPT SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
  WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
    AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'paygw'));

-- the account and the invoice survived and work with the new functions
SELECT name, provider, encrypted FROM paygw.accounts;
SELECT count(*) AS invoices FROM paygw.invoices;
SELECT paygw_refresh() AS checked;
SELECT payment_id, status FROM paygw.invoices;

-- user data is dumped with the extension's configuration tables
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid)
  JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'paygw' ORDER BY 1;

-- from 0.3 with data in every table: a sealed secret, invoices in several
-- states with their events, one leased by a 0.3 worker (a transaction id as
-- its token) and one in an application's foreign key; the update keeps
-- every row, the 0.4 worker's claim takes the 0.3 lease over at once, and
-- the sealed secret still opens
\! umask 077; d=$PAYGW_WORKDIR; python3 -c 'import secrets; print(secrets.token_hex(32))' > $d/upgrade-ring; chown --reference=$d/data $d/upgrade-ring && echo keyring written
\getenv workdir PAYGW_WORKDIR
DROP EXTENSION paygw CASCADE;
CREATE EXTENSION paygw VERSION '0.3';
SELECT set_config('paygw.key_file', :'workdir' || '/upgrade-ring', false) IS NOT NULL AS keyring_set;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx',
        'http://127.0.0.1:' || :'emu_port' || '/okepay');
SELECT paygw_track('okepay', id) IS NOT NULL AS tracked FROM unnest(ARRAY['106', '112', '500', '501']) id;
-- (the 0.4 library is installed: paygw_refresh() asks for the update first)
SELECT paygw_try($$SELECT paygw_refresh()$$, true);
UPDATE paygw.invoices SET status = 'paid', provider_status = 'confirmed', check_count = 1,
       next_check_at = NULL WHERE payment_id = '106';
INSERT INTO paygw.invoice_events (invoice_id, old_status, new_status, provider_status, applied)
SELECT id, 'pending', 'paid', 'confirmed', true FROM paygw.invoices WHERE payment_id = '106';
UPDATE paygw.invoices SET next_check_at = now(), lease_until = now() + interval '1 hour',
       lease_token = txid_current() WHERE payment_id = '501';
CREATE TABLE app_orders (invoice_id bigint REFERENCES paygw.invoices (id));
INSERT INTO app_orders SELECT id FROM paygw.invoices WHERE payment_id = '106';
CREATE TEMP TABLE before AS
SELECT 'credentials' AS t, md5(string_agg((c.name, c.provider, c.merchant_id, c.secret, c.secret_password,
       c.base_url, c.options, c.created_at, c.updated_at)::text, '|' ORDER BY c.name)) AS rows FROM paygw.credentials c
UNION ALL SELECT 'invoices', md5(string_agg((i.id, i.provider, i.account, i.payment_id, i.order_id, i.status,
       i.provider_status, i.amount, i.currency, i.response, i.check_count, i.lease_token)::text, '|' ORDER BY i.id))
  FROM paygw.invoices i
UNION ALL SELECT 'events', md5(string_agg(e::text, '|' ORDER BY e.id)) FROM paygw.invoice_events e;
SELECT extversion FROM pg_extension WHERE extname = 'paygw';

ALTER EXTENSION paygw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'paygw';
(SELECT 'credentials' AS t, md5(string_agg((c.name, c.provider, c.merchant_id, c.secret, c.secret_password,
        c.base_url, c.options, c.created_at, c.updated_at)::text, '|' ORDER BY c.name)) AS rows FROM paygw.credentials c
 UNION ALL SELECT 'invoices', md5(string_agg((i.id, i.provider, i.account, i.payment_id, i.order_id, i.status,
        i.provider_status, i.amount, i.currency, i.response, i.check_count, i.lease_token)::text, '|' ORDER BY i.id))
   FROM paygw.invoices i
 UNION ALL SELECT 'events', md5(string_agg(e::text, '|' ORDER BY e.id)) FROM paygw.invoice_events e)
EXCEPT SELECT * FROM before;
-- (no row above: nothing changed)
SELECT count(*) AS invoices, count(*) FILTER (WHERE status = 'paid') AS paid,
       (SELECT count(*) FROM paygw.invoice_events) AS events, (SELECT count(*) FROM app_orders) AS app_rows
  FROM paygw.invoices;
-- the 0.3 worker's lease is another run's: a 0.4 worker takes it at once,
-- paygw_refresh still waits for it
SELECT count(*) AS refresh_takes_it FROM paygw.claim_due(10, NULL, NULL) WHERE payment_id = '501';
SELECT payment_id FROM paygw.claim_due(10, interval '1 minute', 1) WHERE payment_id = '501';
-- the sealed secret opens after the update
SELECT encrypted, status FROM paygw.accounts, paygw_status('okepay', '106') WHERE name = 'ok';
DROP TABLE app_orders;
SELECT set_config('paygw.key_file', '', false) = '' AS keyring_unset;
\! rm -f $PAYGW_WORKDIR/upgrade-ring

-- and from 0.2 with data: invoices, events, a 0.2 lease
DROP EXTENSION paygw CASCADE;
CREATE EXTENSION paygw VERSION '0.2';
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx',
        'http://127.0.0.1:' || :'emu_port' || '/okepay');
SELECT paygw_track('okepay', id) IS NOT NULL AS tracked FROM unnest(ARRAY['106', '112', '501']) id;
UPDATE paygw.invoices SET status = 'paid', provider_status = 'confirmed', next_check_at = NULL
 WHERE payment_id = '106';
INSERT INTO paygw.invoice_events (invoice_id, old_status, new_status, provider_status, applied)
SELECT id, 'pending', 'paid', 'confirmed', true FROM paygw.invoices WHERE payment_id = '106';
UPDATE paygw.invoices SET lease_until = now() + interval '1 hour', lease_token = txid_current()
 WHERE payment_id = '501';
CREATE TEMP TABLE before_02 AS
SELECT md5(string_agg((i.id, i.provider, i.account, i.payment_id, i.order_id, i.status, i.provider_status,
       i.lease_token)::text, '|' ORDER BY i.id)) AS invoices,
       (SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) FROM paygw.invoice_events e) AS events
  FROM paygw.invoices i;
ALTER EXTENSION paygw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'paygw';
SELECT md5(string_agg((i.id, i.provider, i.account, i.payment_id, i.order_id, i.status, i.provider_status,
       i.lease_token)::text, '|' ORDER BY i.id)) = (SELECT invoices FROM before_02) AS invoices_kept,
       (SELECT md5(string_agg(e::text, '|' ORDER BY e.id)) FROM paygw.invoice_events e)
         = (SELECT events FROM before_02) AS events_kept
  FROM paygw.invoices i;
SELECT payment_id FROM paygw.claim_due(10, interval '1 minute', 1) ORDER BY payment_id;
SELECT paygw_refresh() AS checked_after_update;
