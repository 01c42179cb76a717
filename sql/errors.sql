--
-- errors: every error class with its SQLSTATE, from bad arguments to
-- hostile gateways.  After each error the session goes on (the next
-- statement works), and nothing half-done is left behind.
--
\set VERBOSITY default
\getenv testdir PAYGW_TEST_DIR
\set other_key `cat :testdir/keys/alikassa-other.pem`

-- unknown provider (PW001)
SELECT * FROM paygw_status('paypal', '1');
SELECT paygw_try($$SELECT paygw_status(NULL, '1')$$);

-- invalid ids (PW004): empty, not an integer for OkePay, not a uuid for a
-- Morune invoice_id, too long, NULL
SELECT paygw_try($$SELECT paygw_status('okepay', '')$$);
SELECT paygw_try($$SELECT paygw_status('okepay', '12a')$$);
SELECT paygw_try($$SELECT paygw_status('okepay', '-5')$$);
SELECT paygw_try($$SELECT paygw_status('okepay', '0')$$);
SELECT paygw_try($$SELECT paygw_status('okepay', '1/../2')$$);
SELECT paygw_try($$SELECT paygw_status('okepay', '1234567890123456789')$$);
SELECT paygw_try($$SELECT paygw_status('morune', 'not-a-uuid')$$);
SELECT paygw_try($$SELECT paygw_status('morune', '')$$);
SELECT paygw_try($$SELECT paygw_status_by_order('morune', repeat('x', 256))$$);
SELECT paygw_try($$SELECT paygw_status('alikassa', repeat('x', 129))$$);
SELECT paygw_try($$SELECT paygw_status('obmenka', '')$$);
SELECT paygw_try($$SELECT paygw_status('obmenka', NULL)$$);

-- OkePay has no lookup by order id (PW005)
SELECT * FROM paygw_status_by_order('okepay', 'ok-order-106');

-- unknown account (PW002), and an account of another provider
SELECT paygw_try($$SELECT paygw_status('okepay', '106', 'nope')$$, true);
SELECT paygw_try($$SELECT paygw_status('okepay', '106', 'mo')$$, true);

-- payment not found (PW010): HTTP 404, and "not found" said with HTTP 200
SELECT paygw_try($$SELECT paygw_status('okepay', '999')$$, true);
SELECT paygw_try($$SELECT paygw_status('obmenka', 'NOPE-0000')$$, true);
SELECT paygw_try($$SELECT paygw_status('alikassa', '1')$$, true);
SELECT paygw_try($$SELECT paygw_status('morune', '00000000-0000-0000-0000-000000000000')$$, true);
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'notfound200')));
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'obmenka', '79DF-60B0-1702', paygw_fault_account('ob', 'notfound200')));
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'alikassa', '100000537', paygw_fault_account('ak', 'notfound200')));
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001', paygw_fault_account('mo', 'notfound200')));
-- AliKassa says "not found" as a Laravel validation error on the id it was
-- sent ("The selected id is invalid.", HTTP 400): PW010 by id (above) and by
-- order id, and whatever the HTTP status
SELECT paygw_try($$SELECT paygw_status_by_order('alikassa', 'no-such-order', 'ak')$$, true);
SELECT paygw_try(format('SELECT paygw_status_by_order(%L, %L, %L)', 'alikassa', 'ak-order-537', paygw_fault_account('ak', 'notfound200')), true);
-- other validation errors stay refusals (PW033), even one about the id's form
-- next to the "exists" rule's text about another field
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'alikassa', '100000537', paygw_fault_account('ak', 'invalid')), true);
SELECT paygw_try(format('SELECT paygw_status_by_order(%L, %L, %L)', 'alikassa', 'ak-order-537', paygw_fault_account('ak', 'invalid')), true);

-- now that there are several accounts per provider, NULL is ambiguous (PW003)
SELECT paygw_try($$SELECT paygw_status('okepay', '106')$$, true);

-- credentials or signature rejected (PW011): wrong secret for each gateway
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url)
SELECT c.name || '-wrong', c.provider, c.merchant_id,
       CASE c.provider WHEN 'alikassa' THEN :'other_key'
                       ELSE c.secret || 'x' END,
       CASE c.provider WHEN 'alikassa' THEN NULL END,
       c.base_url
  FROM paygw.credentials c WHERE c.name IN ('ok', 'ob', 'ak', 'mo');
SELECT paygw_try($$SELECT paygw_status('okepay', '106', 'ok-wrong')$$, true);
SELECT paygw_try($$SELECT paygw_status('obmenka', '79DF-60B0-1702', 'ob-wrong')$$, true);
SELECT paygw_try($$SELECT paygw_status('alikassa', '100000537', 'ak-wrong')$$, true);
SELECT paygw_try($$SELECT paygw_status('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001', 'mo-wrong')$$, true);
-- an unknown merchant id is rejected the same way
UPDATE paygw.credentials SET merchant_id = 'other-shop', secret = 'okepay-test-secret-7Qx' WHERE name = 'ok-wrong';
SELECT paygw_try($$SELECT paygw_status('okepay', '106', 'ok-wrong')$$);

-- connection refused and DNS failure (PW020)
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url) VALUES
  ('ok-refused', 'okepay', 'demo-shop', 's', 'http://127.0.0.1:1'),
  ('ok-nxdomain', 'okepay', 'demo-shop', 's', 'https://paygw-test.invalid');
SELECT paygw_try($$SELECT paygw_status('okepay', '106', 'ok-refused')$$);
SELECT paygw_try($$SELECT paygw_status('okepay', '106', 'ok-nxdomain')$$);

-- timeouts (PW021): a slow gateway, one that never answers, one that
-- dribbles its body; paygw.timeout bounds each call
SET paygw.timeout = '300ms';
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'delay=3000')), true);
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001', paygw_fault_account('mo', 'noreply')));
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'alikassa', '100000537', paygw_fault_account('ak', 'slowbody')));
RESET paygw.timeout;
-- a delay within the timeout is fine
SELECT status FROM paygw_status('okepay', '106', paygw_fault_account('ok', 'delay=100'));

-- statement_timeout interrupts a call in flight (57014)
SET statement_timeout = '300ms';
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'delay=5000')));
RESET statement_timeout;

-- connection lost (PW023): reset before and during the reply, truncated body
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'reset')));
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'obmenka', '79DF-60B0-1702', paygw_fault_account('ob', 'resetmid')));
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001', paygw_fault_account('mo', 'truncated')));

-- gateway errors (PW033): HTTP 5xx with and without a JSON body
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'status=503')), true);
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'alikassa', '100000537', paygw_fault_account('ak', 'status=500')), true);

-- replies that are not the documented JSON (PW030)
SELECT a AS fault, paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', a)))
  FROM unnest(ARRAY['malformed', 'notjson', 'emptybody', 'nul', 'badutf8', 'deepnest=100',
                    'hugenumber', 'wrongtypes']) AS a;
SELECT a AS fault, paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'obmenka', '79DF-60B0-1702', paygw_fault_account('ob', a)))
  FROM unnest(ARRAY['malformed', 'nul', 'badutf8', 'wrongtypes']) AS a;
SELECT a AS fault, paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'alikassa', '100000537', paygw_fault_account('ak', a)))
  FROM unnest(ARRAY['malformed', 'notjson', 'wrongtypes', 'hugenumber']) AS a;
SELECT a AS fault, paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001', paygw_fault_account('mo', a)))
  FROM unnest(ARRAY['malformed', 'deepnest=40', 'wrongtypes']) AS a;

-- a reply larger than paygw.max_response_size (PW031), with and without
-- Content-Length; the same reply under the default cap is accepted
SET paygw.max_response_size = '4kB';
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'oversize=100000')), true);
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'oversize_chunked=100000')));
RESET paygw.max_response_size;
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'okepay', '106', paygw_fault_account('ok', 'oversize=100000')));

-- Obmenka replies whose signature does not verify (PW032): forged, missing
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'obmenka', '79DF-60B0-1702', paygw_fault_account('ob', 'badsig')), true);
SELECT paygw_try(format('SELECT paygw_status(%L, %L, %L)', 'obmenka', '79DF-60B0-1702', paygw_fault_account('ob', 'nosig')), true);

-- settings are validated against their ranges (22023; the message's wording
-- differs between PostgreSQL versions, so only the SQLSTATE is shown)
SELECT name, unit, min_val, max_val FROM pg_settings
 WHERE name IN ('paygw.timeout', 'paygw.connect_timeout', 'paygw.max_response_size')
 ORDER BY name;
\set VERBOSITY sqlstate
SET paygw.timeout = 0;
SET paygw.connect_timeout = '1h';
SET paygw.max_response_size = 10;
\set VERBOSITY default
SET paygw.no_such_setting = 1;

-- after all of that the session still works
SELECT provider, status FROM paygw_status('okepay', '106', 'ok');
SELECT count(*) AS fault_accounts FROM paygw.credentials WHERE name LIKE '%:%';
DELETE FROM paygw.credentials WHERE name LIKE '%:%' OR name LIKE '%-wrong' OR name LIKE 'ok-%';
