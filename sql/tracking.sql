--
-- tracking: paygw.invoices, paygw_track, paygw_refresh and
-- paygw_check_invoice in one session (the worker and concurrent sessions
-- are tested by test/checks/).
--
\set VERBOSITY default
\! curl -sf -X POST -o /dev/null "http://127.0.0.1:$PAYGW_EMU_PORT/_control/reset" && echo emulator reset

-- the accounts from setup, and nothing tracked yet
SELECT name, provider FROM paygw.accounts ORDER BY name;
SELECT count(*) FROM paygw.invoices;

-- tracking is idempotent: the same payment gives the same invoice
SELECT paygw_track('okepay', '500') AS ok500 \gset
SELECT paygw_track('okepay', '500') = :ok500 AS same,
       paygw_track('okepay', '00500') = :ok500 AS same_without_zeros,
       paygw_track('okepay', '500', 'ok-order-500') = :ok500 AS same_with_order,
       paygw_track('okepay', '500', NULL, 'ok') = :ok500 AS same_named_account;
SELECT provider, account, payment_id, order_id, status, check_count, next_check_at <= now() AS due
  FROM paygw.invoices WHERE id = :ok500;

-- an invoice known only by its order id, and found again by it
SELECT paygw_track('alikassa', NULL, 'ak-order-537') AS ak537 \gset
SELECT paygw_track('alikassa', NULL, 'ak-order-537') = :ak537 AS same;
SELECT paygw_track('morune', 'A3E9FF6F-C5C1-4BCD-854E-4BC995B1A001') AS mo1 \gset
SELECT paygw_track('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001', 'mo-order-1') = :mo1 AS same_uuid_any_case;
SELECT provider, payment_id, order_id FROM paygw.invoices WHERE id IN (:ak537, :mo1) ORDER BY id;

-- application code can insert rows directly; the account is filled in
INSERT INTO paygw.invoices (provider, payment_id) VALUES ('obmenka', '79DF-60B0-1702')
RETURNING provider, account, payment_id, status;

-- bad input: clear errors, nothing written
SELECT paygw_try($$SELECT paygw_track('paypal', '1')$$);
SELECT paygw_try($$SELECT paygw_track('okepay', NULL, 'ok-order-1')$$, true);
SELECT paygw_try($$SELECT paygw_track('okepay', 'abc')$$);
SELECT paygw_try($$SELECT paygw_track('morune', 'not-a-uuid')$$);
SELECT paygw_try($$SELECT paygw_track('okepay', NULL, NULL)$$);
SELECT paygw_try($$SELECT paygw_track('okepay', '101', NULL, 'mo')$$, true);
SELECT paygw_try($$SELECT paygw_track('okepay', '500', 'another-order')$$);
SELECT paygw_try($$INSERT INTO paygw.invoices (provider, payment_id) VALUES ('morune', 'x')$$);
SELECT paygw_try($$INSERT INTO paygw.invoices (provider) VALUES ('obmenka')$$);
SELECT count(*) AS invoices FROM paygw.invoices;

-- an update of the ids is checked as an insert is (the ids only: the
-- provider and the account are the row's); one of the provider or the
-- account gets the whole check (all rolled back)
BEGIN;
UPDATE paygw.invoices SET payment_id = '0000501' WHERE id = :ok500 RETURNING payment_id, order_id;
SELECT paygw_try(format($$UPDATE paygw.invoices SET payment_id = 'abc' WHERE id = %s$$, :ok500));
SELECT paygw_try(format($$UPDATE paygw.invoices SET payment_id = NULL WHERE id = %s$$, :ok500));
SELECT paygw_try(format($$UPDATE paygw.invoices SET account = 'mo' WHERE id = %s$$, :ok500), true);
SELECT paygw_try(format($$UPDATE paygw.invoices SET provider = 'morune' WHERE id = %s$$, :ok500));
ROLLBACK;

-- the account is resolved once per transaction and cached; any change to
-- paygw.credentials is seen by the next call, in the same transaction and
-- even in the same statement (all rolled back; the ids it used are given
-- back at the end so later invoice ids do not move)
SELECT last_value AS ids_before FROM paygw.invoices_id_seq \gset
BEGIN;
SELECT paygw_track('okepay', '9001') IS NOT NULL AS tracked_with_the_only_account;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
VALUES ('ok2', 'okepay', 'demo-shop-2', 'okepay-test-secret-7Qx');
SELECT paygw_try($$SELECT paygw_track('okepay', '9002')$$);
SELECT paygw_try($$INSERT INTO paygw.invoices (provider, payment_id) VALUES ('okepay', '9002')$$);
SELECT paygw_track('okepay', '9002', NULL, 'ok2') AS t \gset
SELECT account FROM paygw.invoices WHERE id = :t;
-- renamed: the old name is gone, the new one works, invoices follow it
UPDATE paygw.credentials SET name = 'ok3' WHERE name = 'ok2';
SELECT paygw_try($$SELECT paygw_track('okepay', '9003', NULL, 'ok2')$$);
SELECT paygw_track('okepay', '9003', NULL, 'ok3') AS t \gset
SELECT account FROM paygw.invoices WHERE id = :t;
SELECT account, payment_id FROM paygw.invoices WHERE payment_id LIKE '900_' ORDER BY payment_id;
-- deleted: refused again, and the provider's only account is usable again
DELETE FROM paygw.invoices WHERE account = 'ok3';
DELETE FROM paygw.credentials WHERE name = 'ok3';
SELECT paygw_try($$SELECT paygw_track('okepay', '9004', NULL, 'ok3')$$);
SELECT paygw_track('okepay', '9004') AS t \gset
SELECT account FROM paygw.invoices WHERE id = :t;
-- a credential added by a rolled-back subtransaction is forgotten
SAVEPOINT s;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
VALUES ('ok4', 'okepay', 'demo-shop-4', 'okepay-test-secret-7Qx');
SELECT paygw_track('okepay', '9005', NULL, 'ok4') AS t \gset
SELECT account FROM paygw.invoices WHERE id = :t;
ROLLBACK TO SAVEPOINT s;
SELECT paygw_try($$SELECT paygw_track('okepay', '9006', NULL, 'ok4')$$);
SELECT paygw_track('okepay', '9006') AS t \gset
SELECT account FROM paygw.invoices WHERE id = :t;
-- within one statement: a second account makes the provider ambiguous
-- for the very next row
SELECT paygw_try($q$
DO $$
BEGIN
    PERFORM paygw_track('okepay', '9007');
    INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
    VALUES ('ok5', 'okepay', 'demo-shop-5', 'okepay-test-secret-7Qx');
    PERFORM paygw_track('okepay', '9008');
END;
$$$q$);
ROLLBACK;
BEGIN;
SELECT paygw_track('okepay', '9009') IS NOT NULL AS tracked;
-- renamed in the same statement as the tracking that follows it
SELECT paygw_try($$
    WITH r AS (UPDATE paygw.credentials SET name = 'ok6' WHERE name = 'ok' RETURNING name)
    SELECT paygw_track('okepay', '9010') FROM r$$);
SELECT account FROM paygw.invoices WHERE payment_id = '9010';
-- truncated: no account at all
TRUNCATE paygw.credentials CASCADE;
SELECT paygw_try($$SELECT paygw_track('okepay', '9011')$$);
ROLLBACK;
-- with the invalidation trigger disabled nothing is cached: still correct
BEGIN;
ALTER TABLE paygw.credentials DISABLE TRIGGER credentials_changed;
SELECT paygw_track('okepay', '9012') IS NOT NULL AS tracked;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
VALUES ('ok7', 'okepay', 'demo-shop-7', 'okepay-test-secret-7Qx');
SELECT paygw_try($$SELECT paygw_track('okepay', '9013')$$);
ROLLBACK;
SELECT setval('paygw.invoices_id_seq', :ids_before) = :ids_before AS ids_given_back;
SELECT count(*) AS invoices FROM paygw.invoices;

-- paygw_track over arrays: a batch of payments in one call, a row per
-- element in order (its ids as given, its invoice); the same rules as one
-- call per element.  The invoice ids it uses are given back at the end.
SELECT last_value AS ids_before FROM paygw.invoices_id_seq \gset
-- new payments: new invoices, numbered in the elements' order
SELECT payment_id, order_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track('okepay', ARRAY['7001', '7002', '7003']);
-- again: the same invoices, the ones the single form returns too
SELECT payment_id, invoice_id - :ids_before AS new_invoice,
       invoice_id = paygw_track('okepay', payment_id) AS same_as_single
  FROM paygw_track('okepay', ARRAY['7001', '7002', '7003']);
-- mixed: tracked before (by either form), new, duplicates and spellings
-- of one id (OkePay ids without leading zeros), all in input order
SELECT t.payment_id, t.invoice_id - :ids_before AS new_invoice, t.invoice_id = :ok500 AS is_ok500
  FROM paygw_track('okepay', ARRAY['7002', '7004', '500', '7004', '007004', '00500']) t;
SELECT count(*) AS rows_7004 FROM paygw.invoices WHERE payment_id = '7004';
-- empty arrays: no rows
SELECT count(*) AS rows FROM paygw_track('okepay', ARRAY[]::text[]);
SELECT count(*) AS rows FROM paygw_track('okepay', '{}'::text[], '{}'::text[]);
-- by order ids only (ids NULL), where the gateway looks invoices up by them
SELECT payment_id, order_id, invoice_id - :ids_before AS new_invoice, invoice_id = :ak537 AS is_ak537
  FROM paygw_track('alikassa', NULL, ARRAY['ak-7001', 'ak-order-537', 'ak-7002']);
-- both arrays, element by element; a NULL element where the other array
-- gives an id
SELECT payment_id, order_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track('morune', ARRAY['A3E9FF6F-C5C1-4BCD-854E-4BC995B17001', NULL,
                                   'a3e9ff6f-c5c1-4bcd-854e-4bc995b17003'],
                   ARRAY['mo-7001', 'mo-7002', NULL], 'mo');
SELECT payment_id, order_id FROM paygw.invoices
 WHERE order_id IN ('mo-7001', 'mo-7002') OR payment_id LIKE '%17003' ORDER BY id;
-- an id an invoice lacks is filled in (one UPDATE for the batch): a gateway
-- id for invoices known by their order id, an order id for one known by
-- its gateway id; the others are left as they are
SELECT payment_id, order_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track('alikassa', ARRAY['AK-PAY-7001', NULL, 'AK-PAY-7002'],
                   ARRAY['ak-7001', 'ak-7002', 'ak-7002']);
SELECT payment_id, order_id FROM paygw.invoices WHERE order_id IN ('ak-7001', 'ak-7002') ORDER BY id;
SELECT payment_id, order_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track('morune', ARRAY['a3e9ff6f-c5c1-4bcd-854e-4bc995b17003'], ARRAY['mo-7003']);
SELECT payment_id, order_id FROM paygw.invoices WHERE order_id = 'mo-7003';

-- an untyped id still means the single form, by position or by name; the
-- arrays' form by its types or by its parameter names
SELECT pg_typeof(paygw_track('okepay', '7001')) AS untyped,
       pg_typeof(paygw_track('alikassa', NULL, 'ak-7001')) AS untyped_null,
       pg_typeof(paygw_track(provider => 'okepay', id => '7001')) AS named,
       paygw_track('okepay', '7001', account => 'ok') = :ids_before + 1 AS named_account;
SELECT payment_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track(provider => 'okepay', ids => ARRAY['7001']);
SELECT payment_id, order_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track('alikassa', order_ids => ARRAY['ak-7001'], ids => NULL, account => 'ak');

-- two invoices known by their gateway ids only
SELECT payment_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track('alikassa', ARRAY['AK-PAY-7005', 'AK-PAY-7006']);

-- bad input: the single form's errors, naming the element; nothing of the
-- call is kept, even rows it had inserted before the error
SELECT count(*) AS invoices_before FROM paygw.invoices \gset
SELECT * FROM paygw_track('okepay', ARRAY['7010', '7011', 'abc']);
SELECT * FROM paygw_track('okepay', ARRAY['7010', NULL], ARRAY['ok-7010', NULL]);
SELECT * FROM paygw_track('okepay', NULL, ARRAY['ok-7010']);
SELECT * FROM paygw_track('morune', ARRAY['a3e9ff6f-c5c1-4bcd-854e-4bc995b17001'],
                          ARRAY['mo-7002']);
SELECT * FROM paygw_track('okepay', ARRAY['7010', '7011', '500'], ARRAY[NULL, NULL, 'another-order']);
-- two elements of one call that fill different ids into one invoice: the
-- second is the conflict, as it would be one call after the other
SELECT * FROM paygw_track('okepay', ARRAY['7010', '7003', '7003'], ARRAY[NULL, 'ok-7003', 'ok-7003b']);
-- ... or one order id into two invoices
SELECT * FROM paygw_track('alikassa', ARRAY['AK-PAY-7005', 'AK-PAY-7006'], ARRAY['ak-7007', 'ak-7007']);
-- stricter than one call after the other: an element that fills in an
-- order id, and a later one with that order id alone (inserted as an
-- invoice of its own before the ids are filled in)
SELECT * FROM paygw_track('alikassa', ARRAY['AK-PAY-7005', NULL], ARRAY['ak-7005', 'ak-7005']);
SELECT count(*) = :invoices_before AS nothing_kept,
       count(*) FILTER (WHERE payment_id IN ('7010', '7011') OR order_id = 'ok-7003') AS rows_7010
  FROM paygw.invoices;
SELECT paygw_try($$SELECT * FROM paygw_track(NULL, ARRAY['7010'])$$);
SELECT paygw_try($$SELECT * FROM paygw_track('paypal', ARRAY['7010'])$$);
SELECT paygw_try($$SELECT * FROM paygw_track('okepay', NULL, NULL)$$);
SELECT paygw_try($$SELECT * FROM paygw_track('okepay', NULL::text[])$$);
SELECT paygw_try($$SELECT * FROM paygw_track('okepay', ARRAY['7010'], NULL, 'mo')$$);
SELECT paygw_try($$SELECT * FROM paygw_track('okepay', ARRAY['7010', '7011'], ARRAY['x'])$$, true);
SELECT paygw_try($$SELECT * FROM paygw_track('okepay', ARRAY[['7010', '7011'], ['7012', '7013']])$$, true);
SELECT paygw_try($$SELECT * FROM paygw_track('alikassa', ARRAY['a'], ARRAY[['b']])$$, true);
SELECT count(*) = :invoices_before AS nothing_kept FROM paygw.invoices;

-- the validation trigger skips only rows exactly like those paygw_track
-- checked: a row an application trigger changes first, or inserts
-- meanwhile, is checked as always (here: made canonical, the account
-- filled in, or refused)
SELECT paygw.invoice_prevalidated('okepay', 'ok', '7001', NULL) AS outside_paygw_track;
CREATE FUNCTION app_pad_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payment_id IN ('7020', '7024') THEN NEW.payment_id := '000' || NEW.payment_id; END IF;
    IF NEW.payment_id = '7021' THEN NEW.payment_id := 'abc'; END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION app_insert_more() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payment_id = '7022' THEN
        INSERT INTO paygw.invoices (provider, payment_id) VALUES ('okepay', '0007023');
    END IF;
    RETURN NEW;
END $$;
-- (BEFORE triggers fire in name order: this one before invoices_validate)
CREATE TRIGGER app_pad_id BEFORE INSERT ON paygw.invoices
    FOR EACH ROW EXECUTE FUNCTION app_pad_id();
CREATE TRIGGER app_insert_more AFTER INSERT ON paygw.invoices
    FOR EACH ROW EXECUTE FUNCTION app_insert_more();
SELECT payment_id, invoice_id - :ids_before AS new_invoice
  FROM paygw_track('okepay', ARRAY['7020', '7022']);
SELECT paygw_track('okepay', '7024') - :ids_before AS single_form;
SELECT account, payment_id FROM paygw.invoices WHERE payment_id IN ('7020', '7022', '7023', '7024') ORDER BY id;
SELECT paygw_try($$SELECT * FROM paygw_track('okepay', ARRAY['7025', '7021'])$$);
SELECT paygw_try($$SELECT paygw_track('okepay', '7021')$$);
DROP TRIGGER app_pad_id ON paygw.invoices;
DROP TRIGGER app_insert_more ON paygw.invoices;
DROP FUNCTION app_pad_id();
DROP FUNCTION app_insert_more();

-- privileges: none for PUBLIC; the grant on the single form does not
-- cover the arrays' form, nor the other way round
CREATE ROLE regress_paygw_track NOLOGIN;
GRANT EXECUTE ON FUNCTION paygw_track(text, text, text, text) TO regress_paygw_track;
SET ROLE regress_paygw_track;
SELECT * FROM paygw_track('okepay', ARRAY['7001']);
SELECT paygw_track('okepay', '7001') = :ids_before + 1 AS single_form;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION paygw_track(text, text, text, text) FROM regress_paygw_track;
GRANT EXECUTE ON FUNCTION paygw_track(text, text[], text[], text) TO regress_paygw_track;
SET ROLE regress_paygw_track;
SELECT paygw_track('okepay', '7001');
SELECT invoice_id = :ids_before + 1 AS arrays_form FROM paygw_track('okepay', ARRAY['7001']);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION paygw_track(text, text[], text[], text) FROM regress_paygw_track;
DROP ROLE regress_paygw_track;

DELETE FROM paygw.invoices WHERE id > :ids_before;
SELECT setval('paygw.invoices_id_seq', :ids_before) = :ids_before AS ids_given_back;
SELECT count(*) AS invoices FROM paygw.invoices;

-- the transitions gateways can produce
SELECT o AS "from", string_agg(n::text, ', ' ORDER BY n) AS "may become"
  FROM unnest(enum_range(NULL::paygw.payment_status)) o,
       unnest(enum_range(NULL::paygw.payment_status)) n
 WHERE paygw.transition_allowed(o, n)
 GROUP BY o ORDER BY o;

-- paygw_refresh checks every due invoice once; OkePay 500 answers
-- waiting, waiting, then confirmed
SET paygw.backoff_initial = '10s';
SET paygw.backoff_max = '40s';
SELECT paygw_refresh() AS checked;
SELECT provider, status, provider_status, check_count, last_error,
       next_check_at - checked_at BETWEEN '8s' AND '12s' AS backoff_10s
  FROM paygw.invoices ORDER BY id;
SELECT paygw_refresh() AS checked_when_nothing_due;

-- make OkePay 500 due again: still waiting, the backoff doubles
UPDATE paygw.invoices SET next_check_at = now() WHERE id = :ok500;
SELECT paygw_refresh() AS checked;
SELECT status, check_count, next_check_at - checked_at BETWEEN '16s' AND '24s' AS backoff_20s
  FROM paygw.invoices WHERE id = :ok500;
SELECT count(*) AS events FROM paygw.invoice_events WHERE invoice_id = :ok500;

-- third check: confirmed -> paid, exactly one event, no more polling
UPDATE paygw.invoices SET next_check_at = now() WHERE id = :ok500;
SELECT paygw_refresh() AS checked;
SELECT status, provider_status, amount, currency, check_count, next_check_at
  FROM paygw.invoices WHERE id = :ok500;
SELECT old_status, new_status, provider_status, applied
  FROM paygw.invoice_events WHERE invoice_id = :ok500 ORDER BY id;

-- the event history so far: one per change, written with the change
SELECT i.provider, i.payment_id, e.old_status, e.new_status, e.applied
  FROM paygw.invoice_events e JOIN paygw.invoices i ON i.id = e.invoice_id
 ORDER BY e.id;

-- gateway errors are data: recorded on the invoice, never abort the pass
SELECT paygw_fault_account('ok', 'status=503') AS acct \gset
SELECT paygw_track('okepay', '106', NULL, :'acct') AS broken \gset
SELECT paygw_fault_account('mo', 'malformed') AS acct \gset
SELECT paygw_track('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a002', NULL, :'acct') AS malformed \gset
SELECT paygw_track('okepay', '112', NULL, 'ok') AS declined \gset
SELECT paygw_refresh() AS checked;
SELECT payment_id, status, check_count, error_count, last_error_code, last_error,
       next_check_at > now() AS retry_later
  FROM paygw.invoices WHERE id IN (:broken, :malformed, :declined) ORDER BY id;
-- errors back off too
UPDATE paygw.invoices SET next_check_at = now() WHERE id = :broken;
SELECT paygw_refresh() AS checked;
SELECT check_count, error_count, next_check_at - checked_at BETWEEN '16s' AND '24s' AS backoff_20s
  FROM paygw.invoices WHERE id = :broken;

-- the backoff stops at paygw.backoff_max
UPDATE paygw.invoices SET check_count = 10, next_check_at = now() WHERE id = :broken;
SELECT paygw_refresh() AS checked;
SELECT next_check_at - checked_at BETWEEN '32s' AND '48s' AS backoff_capped_40s
  FROM paygw.invoices WHERE id = :broken;

-- give-up horizon: an invoice still open after paygw.give_up_after is no
-- longer polled, keeps its status and is marked
SET paygw.give_up_after = 0;
UPDATE paygw.invoices SET next_check_at = now() WHERE id = :broken;
SELECT paygw_refresh() AS checked;
SELECT status, next_check_at, gave_up_at IS NOT NULL AS gave_up
  FROM paygw.invoices WHERE id = :broken;
SELECT paygw_refresh() AS checked_after_give_up;
RESET paygw.give_up_after;

-- a transition the gateways cannot produce is recorded, warned about and
-- not applied: a declined (failed) payment reported as confirmed
\! curl -sf -X POST -o /dev/null -d '{"provider":"okepay","id":"112","status":"confirmed"}' "http://127.0.0.1:$PAYGW_EMU_PORT/_control/set" && echo emulator changed 112
SELECT paygw_check_invoice(:declined);
SELECT status, provider_status, last_error_code, last_error FROM paygw.invoices WHERE id = :declined;
SELECT old_status, new_status, provider_status, applied
  FROM paygw.invoice_events WHERE invoice_id = :declined ORDER BY id;

-- and a status never moves back to pending
SELECT paygw_track('okepay', '103', NULL, 'ok') AS authorized \gset
SELECT paygw_check_invoice(:authorized);
\! curl -sf -X POST -o /dev/null -d '{"provider":"okepay","id":"103","status":"waiting"}' "http://127.0.0.1:$PAYGW_EMU_PORT/_control/set" && echo emulator changed 103
SELECT paygw_check_invoice(:authorized);
SELECT status, last_error_code FROM paygw.invoices WHERE id = :authorized;
SELECT old_status, new_status, applied FROM paygw.invoice_events WHERE invoice_id = :authorized ORDER BY id;

-- paygw_check_invoice on something that is not there: a NULL id is no
-- invoice (STRICT), ids are positive, an unknown one is PW007
SELECT paygw_check_invoice(NULL) IS NULL AS null_is_null;
SELECT paygw_try($$SELECT paygw_check_invoice(-1)$$);
SELECT paygw_try($$SELECT paygw_check_invoice(0)$$);
SELECT paygw_try($$SELECT paygw_check_invoice(999999999)$$);
SELECT paygw_try($$SELECT paygw_refresh(0)$$);

-- one outcome that cannot be written never loses the others: an
-- application trigger refuses the update of one invoice; the batch falls
-- back to one subtransaction per invoice, the others are applied, and the
-- refused one is recorded as an error (and rescheduled)
SELECT paygw_track('okepay', '106', NULL, 'ok') AS good1,
       paygw_track('okepay', '107', NULL, 'ok') AS refused,
       paygw_track('okepay', '108', NULL, 'ok') AS good2 \gset
CREATE FUNCTION refuse_107() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payment_id = '107' AND NEW.check_count > OLD.check_count AND NEW.error_count = 0 THEN
        RAISE EXCEPTION 'the application refuses this update';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_107 BEFORE UPDATE ON paygw.invoices FOR EACH ROW EXECUTE FUNCTION refuse_107();
SELECT paygw_refresh() AS checked;
SELECT payment_id, status, check_count, last_error_code, next_check_at IS NOT NULL AS rescheduled
  FROM paygw.invoices WHERE id IN (:good1, :refused, :good2) ORDER BY id;
DROP TRIGGER refuse_107 ON paygw.invoices;
DROP FUNCTION refuse_107();

-- a notification's text is what json_build_object() writes, whatever the
-- values hold
WITH v(s) AS (VALUES ('plain'), ('q"uote'), (E'back\\slash'), (E'nl\nx\r\t\b\f'), (E'\u0001ctl'),
                     ('é'), (''), (NULL))
SELECT count(*) AS payloads,
       count(*) FILTER (WHERE paygw.status_payload(12345678901, a.s, b.s, a.s, b.s, 'pending', 'paid', a.s)
                            = json_build_object('invoice_id', 12345678901, 'provider', a.s, 'account', b.s,
                                                'payment_id', a.s, 'order_id', b.s,
                                                'old_status', 'pending'::paygw.payment_status,
                                                'new_status', 'paid'::paygw.payment_status,
                                                'provider_status', a.s)::text) AS as_json_build_object
  FROM v a, v b;

-- notification payloads stay under NOTIFY's 8000-byte limit whatever the
-- gateway returns: fields from replies are cut, the row keeps them whole
SELECT paygw_track('okepay', '109', NULL, 'ok') AS huge \gset
BEGIN;
SELECT id FROM paygw.invoices WHERE id = :huge FOR NO KEY UPDATE;
SELECT invoice_id = :huge AS same, outcome, old_status, new_status, length(provider_status), learnt
  FROM paygw.apply_checks(ARRAY[:huge]::bigint[], ARRAY[NULL]::bigint[], ARRAY['paid']::paygw.payment_status[],
                          ARRAY[repeat('s', 9000)], ARRAY[NULL]::text[], ARRAY[repeat('o', 9000)],
                          ARRAY[NULL]::numeric[], ARRAY[NULL]::text[], ARRAY[NULL]::jsonb[],
                          ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[false], 10, 40, 86400);
COMMIT;
SELECT status, length(provider_status) FROM paygw.invoices WHERE id = :huge;

-- a lease taken under another run (a worker that is gone) is lost for the
-- result of an older claim: nothing is written
SELECT paygw_track('okepay', '110', NULL, 'ok') AS stolen \gset
UPDATE paygw.invoices SET lease_until = now() + interval '1 hour', lease_token = 42 WHERE id = :stolen;
SELECT outcome FROM paygw.apply_checks(ARRAY[:stolen]::bigint[], ARRAY[41]::bigint[], ARRAY['paid']::paygw.payment_status[],
                          ARRAY['confirmed'], ARRAY[NULL]::text[], ARRAY[NULL]::text[],
                          ARRAY[NULL]::numeric[], ARRAY[NULL]::text[], ARRAY[NULL]::jsonb[],
                          ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[false], 10, 40, 86400);
SELECT status, check_count, lease_token FROM paygw.invoices WHERE id = :stolen;
-- ... and claimed at once by a worker of another run, not by paygw_refresh
SELECT count(*) AS refresh_claims FROM paygw.claim_due(10, NULL, NULL) WHERE id = :stolen;
SELECT id = :stolen AS claimed, lease_token FROM paygw.claim_due(10, interval '1 minute', 43) WHERE id = :stolen;
UPDATE paygw.invoices SET lease_until = NULL, lease_token = NULL, next_check_at = NULL WHERE id = :stolen;

-- an invoice leased by a (dead) worker is skipped until the lease expires
SELECT paygw_track('okepay', '101', NULL, 'ok') AS leased \gset
UPDATE paygw.invoices SET lease_until = now() + interval '1 hour', lease_token = 1 WHERE id = :leased;
SELECT paygw_refresh() AS checked_while_leased;
SELECT paygw_try(format('SELECT paygw_check_invoice(%s)', :leased));
UPDATE paygw.invoices SET lease_until = now() - interval '1 second' WHERE id = :leased;
SELECT paygw_refresh() AS checked_after_expiry;
SELECT status, lease_until, lease_token FROM paygw.invoices WHERE id = :leased;

-- the worker's view (values depend on whether paygw is preloaded)
SELECT count(*) AS rows FROM paygw.worker_status WHERE database = current_database();

DELETE FROM paygw.invoices;
DELETE FROM paygw.credentials WHERE name LIKE '%:%';
