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
