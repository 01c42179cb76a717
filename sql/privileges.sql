--
-- privileges: a role without grants can neither read secrets nor call the
-- functions; with the grants the README documents it can call the status
-- functions, and still cannot read or change credentials or use the
-- signing helpers.
--
\set VERBOSITY default
CREATE ROLE regress_paygw_app NOLOGIN;
CREATE ROLE regress_paygw_nobody NOLOGIN;

-- no grants at all
SET ROLE regress_paygw_nobody;
SELECT secret FROM paygw.credentials;
SELECT * FROM paygw.accounts;
SELECT * FROM paygw_status('okepay', '106');
SELECT * FROM paygw_status_by_order('morune', 'mo-order-1');
SELECT * FROM paygw_request('okepay', '106');
SELECT paygw.sign('ok', 'x');
SELECT * FROM paygw.webhook_parse('mo', '{}');
SELECT paygw_track('okepay', '106');
SELECT * FROM paygw_track('okepay', ARRAY['106']);
SELECT paygw_refresh();
SELECT * FROM paygw.invoices;
SELECT * FROM paygw.worker_status;
RESET ROLE;

-- PUBLIC holds no privilege on paygw's objects: every table's and view's
-- ACL is its owner's default one (whose letters vary: PostgreSQL 17 added
-- MAINTAIN), else the ACL is shown
SELECT c.relname,
       CASE WHEN coalesce(c.relacl, acldefault('r', c.relowner)) = acldefault('r', c.relowner)
            THEN 'owner only'
            ELSE replace(c.relacl::text, current_user, 'OWNER') END AS acl
  FROM pg_class c
 WHERE c.relnamespace = 'paygw'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1;
SELECT p.oid::regprocedure AS function, replace(p.proacl::text, current_user, 'OWNER') AS acl
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'paygw')
 ORDER BY p.oid::regprocedure::text;

-- every SECURITY DEFINER function pins its search_path
SELECT p.oid::regprocedure AS function, p.proconfig
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'paygw')
   AND p.prosecdef ORDER BY p.oid::regprocedure::text;

-- the documented application grants
GRANT USAGE ON SCHEMA paygw TO regress_paygw_app;
GRANT EXECUTE ON FUNCTION paygw_status(text, text, text),
                          paygw_status_by_order(text, text, text),
                          paygw_track(text, text, text, text),
                          paygw_track(text, text[], text[], text),
                          paygw_refresh(integer),
                          paygw_create_invoice(text, numeric, text, text, jsonb, text),
                          paygw_webhook(text, text, jsonb, text, text, boolean) TO regress_paygw_app;
GRANT SELECT ON paygw.invoices, paygw.invoice_events TO regress_paygw_app;
-- optional: let application code insert invoice rows itself
GRANT INSERT (provider, account, payment_id, order_id) ON paygw.invoices TO regress_paygw_app;

SET ROLE regress_paygw_app;
SELECT provider, account, status FROM paygw_status('okepay', '106');
SELECT provider, status = 'paid'::paygw.payment_status AS paid
  FROM paygw_status_by_order('morune', 'mo-order-1');
SELECT paygw_track('okepay', '106') AS tracked \gset
SELECT paygw_track('okepay', '106') = :tracked AS same;
SELECT invoice_id = :tracked AS same FROM paygw_track('okepay', ARRAY['106']);
INSERT INTO paygw.invoices (provider, payment_id) VALUES ('okepay', '101') RETURNING account, status;
SELECT paygw_refresh() AS checked;
SELECT provider, payment_id, status FROM paygw.invoices ORDER BY payment_id;
SELECT count(*) AS events FROM paygw.invoice_events;
-- but cannot change them, nor check one out of turn
UPDATE paygw.invoices SET status = 'paid';
DELETE FROM paygw.invoices;
INSERT INTO paygw.invoices (provider, payment_id, status) VALUES ('okepay', '102', 'paid');
SELECT paygw_check_invoice(:tracked);
SELECT * FROM paygw.worker_status;
-- still no access to secrets, the dry run, signing or webhook checks
SELECT secret FROM paygw.credentials;
SELECT name FROM paygw.credentials;
UPDATE paygw.credentials SET base_url = NULL;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret) VALUES ('evil', 'okepay', 'x', 'y');
DELETE FROM paygw.credentials;
SELECT * FROM paygw_request('okepay', '106');
SELECT paygw.sign('ok', 'x');
SELECT * FROM paygw.webhook_parse('mo', '{}');
SELECT * FROM paygw.http_info();
-- nor the settings
SET paygw.timeout = '10min';
SET paygw.max_response_size = '64MB';
-- errors raised for this role carry no secret either
SELECT * FROM paygw_status('okepay', '999');
RESET ROLE;

-- the credentials survive intact
SELECT name, provider FROM paygw.accounts ORDER BY name;

-- a search_path hijack cannot redirect paygw's functions: objects named
-- like the ones they use, in a schema the caller owns and puts first
CREATE SCHEMA regress_hijack AUTHORIZATION regress_paygw_app;
SET ROLE regress_paygw_app;
CREATE FUNCTION regress_hijack.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$;
CREATE FUNCTION regress_hijack.pg_notify(text, text) RETURNS void LANGUAGE sql AS $$ SELECT NULL $$;
CREATE TABLE regress_hijack.credentials (name text, secret text);
SET search_path = regress_hijack, public;
SELECT provider, status FROM paygw_status('okepay', '106');
SELECT paygw_track('okepay', '103') IS NOT NULL AS tracked;
SELECT paygw_refresh() AS checked;
SELECT payment_id, status, next_check_at <> 'infinity' AS real_clock
  FROM paygw.invoices WHERE payment_id = '103';
RESET search_path;
RESET ROLE;
DROP SCHEMA regress_hijack CASCADE;

DELETE FROM paygw.invoices;
-- the application creates an invoice (tracked at once) and hands over a
-- webhook (about a payment paygw does not track: a probe, left to the worker)
SET ROLE regress_paygw_app;
SELECT provider, account, order_id, status, pay_url IS NOT NULL AS pay_url
  FROM paygw_create_invoice('morune', 3, 'RUB', 'app-order-1', '{"comment": "from the app"}');
SELECT invoice_id, action, verified
  FROM paygw_webhook('okepay', '{"transaction": {"status": "confirmed", "invoice": {"paymentLinkId": 999999}}}');
RESET ROLE;
DELETE FROM paygw.invoices WHERE order_id = 'app-order-1';
DELETE FROM paygw.webhooks;

REVOKE ALL ON SCHEMA paygw FROM regress_paygw_app;
REVOKE ALL ON paygw.invoices, paygw.invoice_events FROM regress_paygw_app;
REVOKE ALL ON FUNCTION paygw_status(text, text, text),
                       paygw_status_by_order(text, text, text),
                       paygw_track(text, text, text, text),
                       paygw_track(text, text[], text[], text),
                       paygw_refresh(integer),
                       paygw_create_invoice(text, numeric, text, text, jsonb, text),
                       paygw_webhook(text, text, jsonb, text, text, boolean) FROM regress_paygw_app;
DROP ROLE regress_paygw_app;
DROP ROLE regress_paygw_nobody;
