--
-- webhooks: paygw_webhook() records a gateway's webhook and makes the
-- invoice it is about due -- it never sets a status itself; with confirm it
-- checks the invoice within the call.  (No worker runs in this database:
-- what becomes due stays due, so schedules can be read back.)
--
\set VERBOSITY terse
\getenv emu_port PAYGW_EMU_PORT
\set emu 'http://127.0.0.1:' :emu_port
\! curl -sf -X POST -o /dev/null "http://127.0.0.1:$PAYGW_EMU_PORT/_control/reset" && echo emulator reset

INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url, webhook_key) VALUES
  ('wh-mo', 'morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'secret-value-9201', :'emu' || '/morune', 'example'),
  ('wh-ok', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay', NULL);

-- the Morune documentation's webhook, about a tracked invoice checked a
-- minute ago and not due again for an hour
\set docs_body '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}'
\set docs_sig '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}'
SELECT paygw_track('morune', 'a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a', NULL, 'wh-mo') AS mo \gset
UPDATE paygw.invoices SET checked_at = now() - interval '1 minute', check_count = 1,
       next_check_at = now() + interval '1 hour' WHERE id = :mo;

-- signed and good: due now; the status is not touched
SELECT invoice_id = :mo AS same_invoice, verified, action
  FROM paygw_webhook('morune', :'docs_body', :'docs_sig', NULL, 'wh-mo');
SELECT status, next_check_at <= now() AS due_now FROM paygw.invoices WHERE id = :mo;

-- the same request again is a replay
SELECT invoice_id = :mo AS same_invoice, verified, action
  FROM paygw_webhook('morune', :'docs_body', :'docs_sig', NULL, 'wh-mo');

-- a forged or missing signature is PW040 and records nothing
SELECT count(*) AS webhooks_before FROM paygw.webhooks \gset
SELECT paygw_try(format($$SELECT paygw_webhook('morune', %L, %L, NULL, 'wh-mo')$$,
    :'docs_body', '{"x-api-sha256-signature": "00' || repeat('ab', 31) || '"}'));
SELECT paygw_try(format($$SELECT paygw_webhook('morune', %L, '{}', NULL, 'wh-mo')$$, :'docs_body'));
SELECT count(*) = :webhooks_before AS nothing_recorded FROM paygw.webhooks;

-- OkePay's webhooks are unsigned: a hint (verified = false).  The first
-- webhook makes the invoice due at once, even one checked a moment ago; a
-- burst of further ones within paygw.webhook_min_interval (10 s) causes no
-- second check
SELECT paygw_track('okepay', '500', NULL, 'wh-ok') AS ok500 \gset
UPDATE paygw.invoices SET checked_at = now(), check_count = 1, next_check_at = now() + interval '1 hour'
 WHERE id = :ok500;
SELECT invoice_id = :ok500 AS same_invoice, verified, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 1, "status": "confirmed", "invoice": {"paymentLinkId": 500}}}',
                     '{"content-type": "application/json"}', NULL, 'wh-ok');
SELECT next_check_at <= now() AS due_now FROM paygw.invoices WHERE id = :ok500;
SELECT invoice_id = :ok500 AS same_invoice, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 2, "status": "confirmed", "invoice": {"paymentLinkId": 500}}}',
                     '{}', NULL, 'wh-ok');
-- once that check was made (checked_at moved on, next_check_at later), a
-- new webhook within the interval schedules the next check at its end
UPDATE paygw.invoices SET checked_at = now(), next_check_at = now() + interval '1 hour' WHERE id = :ok500;
SELECT action FROM paygw_webhook('okepay', '{"transaction": {"id": 7, "status": "confirmed", "invoice": {"paymentLinkId": 500}}}',
                                 '{}', NULL, 'wh-ok');
SELECT next_check_at - now() BETWEEN interval '8 s' AND interval '11 s' AS due_when_the_interval_ends
  FROM paygw.invoices WHERE id = :ok500;

-- a payment paygw does not track: ignored, no status call
SELECT invoice_id, verified, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 3, "status": "confirmed", "invoice": {"paymentLinkId": 999999}}}',
                     '{}', NULL, 'wh-ok');

-- a check in flight (the worker's lease): it is followed by another one
-- right after its outcome is applied
SELECT paygw_track('okepay', '501', NULL, 'wh-ok') AS ok501 \gset
UPDATE paygw.invoices SET lease_until = now() + interval '1 minute', lease_token = 77,
       next_check_at = now() - interval '1 second' WHERE id = :ok501;
SELECT action FROM paygw_webhook('okepay', '{"transaction": {"id": 4, "invoice": {"paymentLinkId": 501}}}', '{}', NULL, 'wh-ok');
SELECT hinted_at IS NOT NULL AS hinted FROM paygw.invoices WHERE id = :ok501;
BEGIN;
SELECT count(*) AS locked FROM (SELECT id FROM paygw.invoices WHERE id = :ok501 FOR NO KEY UPDATE) s;
SELECT outcome FROM paygw.apply_checks(ARRAY[:ok501]::bigint[], ARRAY[77]::bigint[],
    ARRAY['pending']::paygw.payment_status[], ARRAY['waiting'], ARRAY[NULL]::text[], ARRAY[NULL]::text[],
    ARRAY[NULL]::numeric[], ARRAY[NULL]::text[], ARRAY[NULL]::jsonb[], ARRAY[NULL]::text[],
    ARRAY[NULL]::text[], ARRAY[false], 30, 3600, 604800);
COMMIT;
SELECT next_check_at <= now() AS checked_again_at_once, hinted_at IS NULL AS hint_cleared, lease_token
  FROM paygw.invoices WHERE id = :ok501;

-- a final invoice becomes due too (a refund comes after "paid"), and is
-- claimed like any other; with confirm => true the signed status call is
-- made within the call (OkePay 106 is confirmed at the emulator)
SELECT paygw_track('okepay', '106', NULL, 'wh-ok') AS ok106 \gset
UPDATE paygw.invoices SET status = 'paid', next_check_at = NULL WHERE id = :ok106;
SELECT action FROM paygw_webhook('okepay', '{"transaction": {"id": 5, "invoice": {"paymentLinkId": 106}}}', '{}', NULL, 'wh-ok');
SELECT count(*) AS claimable FROM paygw.claim_due(100, NULL, NULL) WHERE id = :ok106;
UPDATE paygw.invoices SET status = 'pending', next_check_at = NULL WHERE id = :ok106;
SELECT invoice_id = :ok106 AS same_invoice, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 6, "invoice": {"paymentLinkId": 106}}}', '{}', NULL, 'wh-ok', true);
SELECT status, provider_status, next_check_at IS NULL AS final FROM paygw.invoices WHERE id = :ok106;
SELECT old_status, new_status, applied FROM paygw.invoice_events WHERE invoice_id = :ok106;

-- refused before anything is parsed or written
SET paygw.webhook_max_size = '1kB';
SELECT paygw_try(format($$SELECT paygw_webhook('okepay', %L, '{}', NULL, 'wh-ok')$$, repeat('x', 2000)), true);
RESET paygw.webhook_max_size;
SELECT paygw_try($$SELECT paygw_webhook('okepay', '{}', '[1, 2]', NULL, 'wh-ok')$$);
SELECT paygw_try($$SELECT paygw_webhook('okepay', 'not json', '{}', NULL, 'wh-ok')$$);
SELECT paygw_try($$SELECT paygw_webhook('paypal', '{}')$$);
SELECT paygw_try($$SELECT paygw_webhook(NULL, '{}')$$);
SELECT paygw_try($$SELECT paygw_webhook('okepay', '{"transaction": {"invoice": {"paymentLinkId": 1}}}', '{}', NULL, 'nobody')$$);

-- what was recorded: no body, no signature, a hash of the request
SELECT provider, account, verified, invoice_id IS NOT NULL AS tracked, payment_id, event, action, detail,
       length(request_sha256) AS hash_length
  FROM paygw.webhooks ORDER BY id;

-- history that does not grow forever: paygw.purge_history deletes events
-- and webhooks older than an age, oldest first, at most max_rows of each
UPDATE paygw.webhooks SET received_at = now() - interval '40 days'
 WHERE id IN (SELECT id FROM paygw.webhooks ORDER BY id LIMIT 3);
UPDATE paygw.invoice_events SET created_at = now() - interval '40 days' WHERE invoice_id = :ok106;
SELECT count(*) AS webhooks_before FROM paygw.webhooks \gset
SELECT * FROM paygw.purge_history(interval '30 days', 2);
SELECT * FROM paygw.purge_history(interval '30 days');
SELECT * FROM paygw.purge_history(interval '30 days', NULL, false);
SELECT :webhooks_before - count(*) AS webhooks_deleted FROM paygw.webhooks;
SELECT count(*) AS events_left FROM paygw.invoice_events WHERE invoice_id = :ok106;
SELECT paygw_try($$SELECT paygw.purge_history(interval '-1 day')$$);
SELECT paygw_try($$SELECT paygw.purge_history(NULL)$$);
SELECT paygw_try($$SELECT paygw.purge_history(interval '1 day', 0)$$);

DELETE FROM paygw.webhooks;
DELETE FROM paygw.invoices WHERE account IN ('wh-mo', 'wh-ok');
DELETE FROM paygw.credentials WHERE name IN ('wh-mo', 'wh-ok');
