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

-- a payment paygw does not track: a probe (see below), and no status call
-- in the call
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

-- ---------------------------------------------------------------------------
-- Probes: a webhook about a payment no tracked invoice of its account has.
-- Each distinct payment is asked about once, at most
-- paygw.webhook_probe_rate times per account and minute, and tracked only
-- when the gateway has it.  The call is the worker's (none runs here: what
-- it does is shown with paygw.claim_probes and paygw.probe_finish), or made
-- within the call with confirm => true.
-- ---------------------------------------------------------------------------
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url) VALUES
  ('wh-probe', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay'),
  ('wh-rate', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'emu' || '/okepay'),
  ('wh-ob', 'obmenka', '1234', 'obmenka-test-salt-9Kp', :'emu' || '/obmenka');
SHOW paygw.webhook_probe_rate;
-- (no probe from the hint above, nor from the privileges suite)
DELETE FROM paygw.webhook_probes;

-- recorded and answered at once: no status call in the call, nothing tracked
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.okepay
SELECT invoice_id, verified, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 30, "invoice": {"paymentLinkId": 106}}}', '{}', NULL, 'wh-probe');
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.okepay
SELECT count(*) AS tracked FROM paygw.invoices WHERE account = 'wh-probe';
SELECT provider, payment_id, order_id, state, attempts, next_attempt_at <= now() AS due,
       webhook_id = (SELECT max(id) FROM paygw.webhooks) AS asked_by_that_webhook
  FROM paygw.webhook_probes WHERE account = 'wh-probe';
-- the same payment in further webhooks, even with confirm: one probe, no call
SELECT invoice_id, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 31, "invoice": {"paymentLinkId": 106}}}', '{}', NULL, 'wh-probe');
SELECT invoice_id, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 32, "invoice": {"paymentLinkId": 106}}}', '{}', NULL, 'wh-probe', true);
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.okepay
SELECT count(*) AS probes FROM paygw.webhook_probes WHERE account = 'wh-probe';
-- an order id alone: OkePay cannot be asked by order id
SELECT invoice_id, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 33, "referenceId": "shop-order-1"}}', '{}', NULL, 'wh-probe');

-- the worker claims the probe under its run (never twice), makes the call
-- with no transaction open, and records the outcome: the gateway has the
-- payment, so it becomes a tracked invoice with the status reported, one
-- event, and the webhook that asked says so
SELECT account, payment_id, order_id FROM paygw.claim_probes(10, 41, 60) ORDER BY payment_id;
SELECT count(*) AS claimed_again FROM paygw.claim_probes(10, 41, 60);
SELECT attempts, lease_token, attempted_at IS NOT NULL AS attempted FROM paygw.webhook_probes WHERE account = 'wh-probe';
SELECT id AS probe FROM paygw.webhook_probes WHERE account = 'wh-probe' \gset
-- (a result for another run is not written)
SELECT * FROM paygw.probe_finish(:probe, 40, 'found', 'paid', 'confirmed', '106', 'ok-order-106',
                                 1.00, 'CHF', '{}', NULL, NULL, 1, 2, 604800);
SELECT outcome, invoice_id IS NOT NULL AS has_invoice
  FROM paygw.probe_finish(:probe, 41, 'found', 'paid', 'confirmed', '106', 'ok-order-106',
                          1.00, 'CHF', '{}', NULL, NULL, 1, 2, 604800);
SELECT provider, payment_id, order_id, status, provider_status, amount, currency, check_count,
       checked_at IS NOT NULL AS checked, next_check_at IS NULL AS final
  FROM paygw.invoices WHERE account = 'wh-probe';
SELECT e.old_status, e.new_status, e.provider_status, e.applied
  FROM paygw.invoice_events e JOIN paygw.invoices i ON i.id = e.invoice_id WHERE i.account = 'wh-probe';
SELECT p.state, p.next_attempt_at, p.lease_token, p.invoice_id = i.id AS linked
  FROM paygw.webhook_probes p JOIN paygw.invoices i ON i.account = p.account WHERE p.account = 'wh-probe';
SELECT payment_id, action, detail, invoice_id IS NOT NULL AS has_invoice
  FROM paygw.webhooks WHERE account = 'wh-probe' ORDER BY id;
-- now tracked: its next webhook makes its invoice due, as for any other
SELECT invoice_id IS NOT NULL AS has_invoice, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 34, "invoice": {"paymentLinkId": 106}}}', '{}', NULL, 'wh-probe');

-- not found at the gateway: not tracked, and the payment is not asked about
-- again (the probe is kept until the webhooks are purged)
SELECT action FROM paygw_webhook('okepay', '{"transaction": {"id": 35, "invoice": {"paymentLinkId": 999998}}}', '{}', NULL, 'wh-probe');
SELECT id AS probe FROM paygw.claim_probes(10, 41, 60) \gset
SELECT outcome, invoice_id
  FROM paygw.probe_finish(:probe, 41, 'not_found', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                          'PW010', 'payment not found at the okepay gateway', 1, 2, 604800);
SELECT state, last_error_code, next_attempt_at IS NULL AS done, invoice_id FROM paygw.webhook_probes WHERE id = :probe;
SELECT action, detail FROM paygw.webhooks WHERE account = 'wh-probe' ORDER BY id DESC LIMIT 1;
SELECT action FROM paygw_webhook('okepay', '{"transaction": {"id": 36, "invoice": {"paymentLinkId": 999998}}}', '{}', NULL, 'wh-probe', true);
SELECT detail FROM paygw.webhooks WHERE account = 'wh-probe' ORDER BY id DESC LIMIT 1;
SELECT count(*) AS tracked FROM paygw.invoices WHERE account = 'wh-probe' AND payment_id = '999998';

-- any other error keeps the probe: tried again after a backoff of at least
-- a minute (paygw.backoff_initial is 1 s here), until give_up_after
SELECT action FROM paygw_webhook('okepay', '{"transaction": {"id": 37, "invoice": {"paymentLinkId": 999997}}}', '{}', NULL, 'wh-probe');
SELECT id AS probe FROM paygw.claim_probes(10, 41, 60) \gset
SELECT outcome FROM paygw.probe_finish(:probe, 41, 'error', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                       'PW021', 'okepay gateway did not answer in time', 1, 2, 604800);
SELECT state, next_attempt_at - now() BETWEEN interval '50 s' AND interval '60 s' AS retry_in_a_minute,
       lease_token, last_error_code
  FROM paygw.webhook_probes WHERE id = :probe;
SELECT action, detail FROM paygw.webhooks WHERE account = 'wh-probe' ORDER BY id DESC LIMIT 1;
SELECT count(*) AS due_now FROM paygw.claim_probes(10, 41, 60);
UPDATE paygw.webhook_probes SET next_attempt_at = now() WHERE id = :probe;
SELECT count(*) AS due_again FROM paygw.claim_probes(10, 41, 60);
SELECT attempts FROM paygw.webhook_probes WHERE id = :probe;
-- ... and gives up once give_up_after has passed since the webhook came
SELECT outcome FROM paygw.probe_finish(:probe, 41, 'error', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                       'PW021', 'okepay gateway did not answer in time', 1, 2, 0);
SELECT state, next_attempt_at IS NULL AS done FROM paygw.webhook_probes WHERE id = :probe;
SELECT action, detail FROM paygw.webhooks WHERE account = 'wh-probe' ORDER BY id DESC LIMIT 1;

-- the application tracked the payment while its probe was in flight: that
-- invoice is linked, untouched (no second row, no event)
SELECT action FROM paygw_webhook('okepay', '{"transaction": {"id": 38, "invoice": {"paymentLinkId": 110}}}', '{}', NULL, 'wh-probe');
SELECT id AS probe FROM paygw.claim_probes(10, 41, 60) \gset
SELECT paygw_track('okepay', '110', NULL, 'wh-probe') AS ok110 \gset
SELECT outcome, invoice_id = :ok110 AS the_tracked_one
  FROM paygw.probe_finish(:probe, 41, 'found', 'refunded', 'refunded', '110', 'ok-order-110',
                          1.00, 'CHF', '{}', NULL, NULL, 1, 2, 604800);
SELECT status, check_count FROM paygw.invoices WHERE id = :ok110;
SELECT count(*) AS events FROM paygw.invoice_events WHERE invoice_id = :ok110;
SELECT action, detail = 'tracked meanwhile as invoice ' || :ok110 AS detail_names_it
  FROM paygw.webhooks WHERE account = 'wh-probe' ORDER BY id DESC LIMIT 1;

-- confirm => true: the call is made within paygw_webhook, once.  A payment
-- the gateway has is tracked at once with its status (an open one with its
-- next check scheduled and no event, as after a first check of a pending
-- invoice) ...
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" by_payment.okepay:101 by_payment.okepay:112
SELECT invoice_id IS NOT NULL AS has_invoice, verified, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 40, "invoice": {"paymentLinkId": 101}}}', '{}', NULL, 'wh-probe', true);
SELECT invoice_id IS NOT NULL AS has_invoice, verified, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 41, "invoice": {"paymentLinkId": 112}}}', '{}', NULL, 'wh-probe', true);
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" by_payment.okepay:101 by_payment.okepay:112
SELECT payment_id, order_id, status, provider_status, check_count, next_check_at > now() AS next_check_later,
       (SELECT count(*) FROM paygw.invoice_events e WHERE e.invoice_id = i.id) AS events
  FROM paygw.invoices i WHERE account = 'wh-probe' AND payment_id IN ('101', '112') ORDER BY payment_id;
SELECT payment_id, state, attempts FROM paygw.webhook_probes
 WHERE account = 'wh-probe' AND payment_id IN ('101', '112') ORDER BY payment_id;
-- ... one it does not have is not; and a failed call leaves the probe to
-- the worker
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.okepay
SELECT invoice_id, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 42, "invoice": {"paymentLinkId": 999996}}}', '{}', NULL, 'wh-probe', true);
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.okepay
SELECT paygw_fault_account('wh-probe', 'status=503') AS faulty \gset
SELECT invoice_id, action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 43, "invoice": {"paymentLinkId": 101}}}', '{}', NULL, :'faulty', true);
SELECT state, attempts, last_error_code, next_attempt_at - attempted_at AS retry_after
  FROM paygw.webhook_probes WHERE account = :'faulty';
SELECT action, detail FROM paygw.webhooks WHERE account = :'faulty';
-- Obmenka, by order id: its callback names the order (payment_id in the
-- status_url's query); the gateway's own id is learnt from the reply
SELECT invoice_id IS NOT NULL AS has_invoice, verified, action
  FROM paygw_webhook('obmenka', '', '{}', 'payment_id=ob-order-1702', 'wh-ob', true);
SELECT provider, payment_id, order_id, status FROM paygw.invoices WHERE account = 'wh-ob';
SELECT payment_id, order_id, state FROM paygw.webhook_probes WHERE account = 'wh-ob';

-- where the gateway signs (Morune, AliKassa), the signature is checked
-- first: a forged webhook about a payment paygw does not track makes no
-- probe; the Morune documentation's webhook, good for a second shop account
-- that tracks nothing, does (and the gateway does not have that invoice)
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url, webhook_key) VALUES
  ('wh-mo2', 'morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'morune-test-key-d6be9962',
   :'emu' || '/morune', 'example');
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.morune
SELECT paygw_try(format($$SELECT paygw_webhook('morune', %L, %L, NULL, 'wh-mo2', true)$$,
    :'docs_body', '{"x-api-sha256-signature": "00' || repeat('ab', 31) || '"}'));
SELECT count(*) AS probes FROM paygw.webhook_probes WHERE account = 'wh-mo2';
SELECT invoice_id, verified, action FROM paygw_webhook('morune', :'docs_body', :'docs_sig', NULL, 'wh-mo2', true);
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.morune
SELECT payment_id, state, last_error_code FROM paygw.webhook_probes WHERE account = 'wh-mo2';

-- the rate: with 2 a minute, the third new payment of an account within the
-- minute is ignored, and only two calls are made
SET paygw.webhook_probe_rate = 2;
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.okepay
SELECT n, action
  FROM generate_series(1, 3) n,
       paygw_webhook('okepay', format('{"transaction": {"id": %s, "invoice": {"paymentLinkId": %s}}}', 50 + n, 888800 + n),
                     '{}', NULL, 'wh-rate', true);
\! python3 "$PAYGW_TEST_DIR/emulator/stat.py" requests.okepay
SELECT payment_id, action, detail FROM paygw.webhooks WHERE account = 'wh-rate' ORDER BY id;
SELECT count(*) AS probes FROM paygw.webhook_probes WHERE account = 'wh-rate';
-- the worker keeps to the rate too, counting the calls started in the last
-- minute (those made with confirm included): nothing more this minute
SET paygw.webhook_probe_rate = 10;
SELECT n, action
  FROM generate_series(4, 6) n,
       paygw_webhook('okepay', format('{"transaction": {"id": %s, "invoice": {"paymentLinkId": %s}}}', 50 + n, 888800 + n),
                     '{}', NULL, 'wh-rate');
SELECT count(*) AS claimed_at_rate_2 FROM paygw.claim_probes(10, 41, 2);
SELECT count(*) AS claimed_at_rate_3 FROM paygw.claim_probes(10, 41, 3);
SELECT count(*) AS claimed_at_rate_10 FROM paygw.claim_probes(10, 41, 10);
-- off: no probe at all
SET paygw.webhook_probe_rate = 0;
SELECT action
  FROM paygw_webhook('okepay', '{"transaction": {"id": 60, "invoice": {"paymentLinkId": 888870}}}', '{}', NULL, 'wh-rate');
RESET paygw.webhook_probe_rate;
SELECT detail FROM paygw.webhooks WHERE account = 'wh-rate' ORDER BY id DESC LIMIT 1;
SELECT count(*) AS probes FROM paygw.webhook_probes WHERE payment_id = '888870';

-- history that does not grow forever: paygw.purge_history deletes events
-- and webhooks (and probes) older than an age, oldest first, at most
-- max_rows of each
UPDATE paygw.webhooks SET received_at = now() - interval '40 days'
 WHERE id IN (SELECT id FROM paygw.webhooks ORDER BY id LIMIT 3);
UPDATE paygw.invoice_events SET created_at = now() - interval '40 days' WHERE invoice_id = :ok106;
UPDATE paygw.webhook_probes SET created_at = now() - interval '40 days' WHERE account = 'wh-rate';
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
DELETE FROM paygw.webhook_probes;
DELETE FROM paygw.invoices WHERE account LIKE 'wh-%';
DELETE FROM paygw.credentials WHERE name LIKE 'wh-%';
