--
-- webhook_verify: what paygw.webhook_parse() makes of each gateway's
-- webhooks, signatures checked where the gateway signs; the webhook_key
-- column, checked per provider and sealed at rest where it is a secret.
-- Vectors: the Morune documentation's, and others computed independently
-- by test/vectors/webhook_vectors.py (its output: webhook_vectors.out).
--
\set VERBOSITY terse
\getenv emu_port PAYGW_EMU_PORT
\getenv testdir PAYGW_TEST_DIR
\set emu 'http://127.0.0.1:' :emu_port
\set pem `cat :testdir/keys/alikassa-test.pem`
-- AliKassa's notification public key (test data: its private half,
-- test/vectors/alikassa-notify.pem, serves only to make the vectors)
SELECT '-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyVnmlmk9zdYuBHZ84jwN
OoyijKfQmaMqpNHFSVwdjqeIwBzYhtIb1oi47tfbSorxDA4ZOcE/D8u8U7LfWXQj
p9YxzIEOHNHRyvINvGc1IcsD/h8PJCsA2SFcNd36TGrrweHiLpia5hPMG2HYnf2t
8kU1UzNgn1/qstY/DSy8pBuo6P4ELZRo7YXQXQagZAWzt8Ue0OtLpOGLOXy6SFhH
rQJOQqNxzHzHVCrZIlQCzsq7Zc389E99qR/5PCDWuAd+I1B6nI0d+xapCa16GzUm
QNToQ5Kr2EZNQM8DZd0nalReC8jfKQjaoCsURP02Zys9YIECHCy0rW8DHqdtx34r
MQIDAQAB
-----END PUBLIC KEY-----' AS ak_pub \gset

-- accounts of this suite; 'example' is the Morune documentation's key
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url, webhook_key) VALUES
  ('mo-wh', 'morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'secret-value-9101', NULL, :'emu' || '/morune', 'example'),
  ('mo-wh-other', 'morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'secret-value-9101', NULL, :'emu' || '/morune', 'not-the-key'),
  ('mo-nokey', 'morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'secret-value-9101', NULL, :'emu' || '/morune', NULL),
  ('ak-wh', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem', 'test-alikassa-pass', :'emu' || '/alikassa', :'ak_pub'),
  ('ak-nokey', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem', 'test-alikassa-pass', :'emu' || '/alikassa', NULL),
  ('ok-wh', 'okepay', 'demo-shop', 'secret-value-9103', NULL, :'emu' || '/okepay', NULL),
  ('ob-wh', 'obmenka', '1234', 'secret-value-9104', NULL, :'emu' || '/obmenka', NULL);
SELECT name, provider, has_webhook_key FROM paygw.accounts WHERE name LIKE '%-wh%' OR name LIKE '%-nokey' ORDER BY name;
-- a public key is stored as given
SELECT webhook_key = :'ak_pub' AS stored_as_given FROM paygw.credentials WHERE name = 'ak-wh';

--
-- Morune: HMAC-SHA256 over the body with sorted top-level keys
--
\set docs_body '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}'
-- the documentation's vector
SELECT * FROM paygw.webhook_parse('mo-wh', :'docs_body',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}');
-- the same webhook as a gateway may send it: keys in another order,
-- whitespace, header names in any case, upper-case hex
SELECT * FROM paygw.webhook_parse('mo-wh',
    '{ "type": 1, "status": "success", "payer_details": "553691******1279",
       "pay_time": "2023-04-06 16:27:59", "pay_service": "card",
       "order_id": "c78d8fe9-ab44-3f21-a37a-ce4ca269cb47",
       "invoice_id": "a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a",
       "custom_fields": {"user": 1}, "credited": "95.50", "amount": "100.00" }',
    '{"Content-Type": "application/json", "X-Api-Sha256-Signature": "E582B14DD13F8111711E3CB66A982FD7BFF28A0DDECE8BDE14A34A5BB4449136"}');
-- '/', non-ASCII (an emoji above U+FFFF too), an empty object, nested keys
-- out of order: signed unescaped, and signed escaped as PHP does
SELECT '{"status":"success","invoice_id":"A3E9FF6F-C5C1-4BCD-854E-4BC995B1A002","order_id":"order/42","amount":"10.00","custom_fields":{"z":"\u00e9t\u00e9","a":"x/y"},"payer_details":"Иван 😀","empty":{},"type":1}' AS uni_body \gset
SELECT * FROM paygw.webhook_parse('mo-wh', :'uni_body',
    '{"x-api-sha256-signature": "8febbf61f068fda83df829432981e331a20d0bf257b07b8b2b5a2a8de04b7246"}');
SELECT * FROM paygw.webhook_parse('mo-wh', :'uni_body',
    '{"x-api-sha256-signature": "b8bcfe57860577cb1502e29435c86ad760dbdff918c32ac9ef5f54eefeef4a45"}');
-- the same characters sent raw instead of as \u escapes
SELECT verified, payment_id FROM paygw.webhook_parse('mo-wh',
    '{"status":"success","invoice_id":"A3E9FF6F-C5C1-4BCD-854E-4BC995B1A002","order_id":"order\/42","amount":"10.00","custom_fields":{"z":"été","a":"x/y"},"payer_details":"Иван 😀","empty":{},"type":1}',
    '{"x-api-sha256-signature": "b8bcfe57860577cb1502e29435c86ad760dbdff918c32ac9ef5f54eefeef4a45"}');
-- forged, missing, wrong key, no key, tampered body
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449137"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh-other', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-nokey', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"fail","type":1}',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}',
    '{"x-api-sha256-signature": "not hex at all"}')$$, true);
-- not a Morune webhook: garbled, not an object, a key twice, a bad id,
-- the header twice, headers not an object
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"status":"success",',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '[1, 2]',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"status":"a","status":"b"}',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"x":1} trailing',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}',
    '{"x-api-sha256-signature": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136", "X-API-SHA256-SIGNATURE": "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}', '[]')$$, true);

--
-- AliKassa: GET parameters, RSA signature over PHP's json_encode of 11 keys
--
SELECT * FROM paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=500.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22&sign=EP9zXQZ0akB%2BgWdIChoaJeJ5tmc1K7lYNBlj%2FBTjoZKqu6f6QC77pMhHHrKo7EGevvG4Uh4ZqDEFIzdxouiB%2Fr7m6ZGO%2F39i05ahJAWVkm8dZ3jkzSN0wl9u8uVyg6f6c2%2Bru0nhqSQveSOb%2FwE%2B6o%2BIRtTukqluIgUWLZw1Btga%2FC9pTTHfcxVJs4OPwz6MCcycz%2BPSxnWDVAZqDd3KPBSMt3vtsyOxaRZSUrFgL0yJtO8olOK5ArDWRcwbbtbe770bkq9LWZKmv14ShOFbo9%2BevGACqqhxMkiRuPh16CSpSte7LfRTRBO%2FyLar2UmB2rNEDdEMeZ42AELCkml%2FNA%3D%3D');
SELECT * FROM paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=500.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22&sign=HpSi8Qveh%2By1Dx4tRd8ASb7qFJ%2FsYsevpMpV6jjWWeQAfhpbZB80DHNOfkpUxqNl9E%2Bp9o4T2jzmiYr53tVNaIe8L9KcH%2FW48LJ1%2Bh2ifaNMx5P6pz2U6M1rQOfzATU%2FxIiYShq7tQjBGyDgdWUm9uoWlYMONGHY5wIrmy4F07UWIMxGXptaO6c96bTl5ShLmm3btgjUQFRHSkmMh08gbNkNlti5H6X2REvZaEEBRhVMcAk3l%2FXUgkYoSEX8dXgTpwINNVRMGRXGvZF8IANyj%2BIZymIOt06aRl7vDmqB7vwwwQnLPoUKnvqebyMdnS%2FaIfzLQ0qRvwwkickkR7B4aw%3D%3D');
-- missing keys are null in the signed object; id is an integer (00777 -> 777)
SELECT * FROM paygw.webhook_parse('ak-wh', NULL, NULL,
    'type=payment&id=00777&order_id=ak-order%2F1&payment_status=wait&amount=500.00&payment_amount=500.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&sign=kqCBCc6iSXukUUkYVjJLPk%2F%2FM5wdJdGvxwKsFediMyDyrtgXU7rElf3cki0oMK1tONT7UL1y0kbMx7hyeAUnDpOvrPC1q860zgWiIYyyTDvuTAQWA7hTH08HGxzaqsPA9o5spr9Mr%2BI45wLuUbgVYDPPlk2rNWPvXoiRiiwmDyMPpQ4E%2BP7Vnctes0FaH3%2BGa6E5AUskvzgsJRsTfcAqmPrGeQQnJD0owenU%2B1vzEtV0yFxGAVuMNuquLl9Zyn2NsujLvNbIXA3s6yUo0Nx17kAWrNF3h9q1yrXrsscJ6%2BaB9ED9VfcUnnWbq4oI4PpbEO5MaNM%2B%2BKxA5%2FidAeMLqQ%3D%3D');
-- forged (another message's signature), a tampered field, no sign, no key,
-- not base64, no id, no query at all
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=500.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22&sign=HpSi8Qveh%2Fy1Dx4tRd8ASb7qFJ%2FsYsevpMpV6jjWWeQAfhpbZB80DHNOfkpUxqNl9E%2Bp9o4T2jzmiYr53tVNaIe8L9KcH%2FW48LJ1%2Bh2ifaNMx5P6pz2U6M1rQOfzATU%2FxIiYShq7tQjBGyDgdWUm9uoWlYMONGHY5wIrmy4F07UWIMxGXptaO6c96bTl5ShLmm3btgjUQFRHSkmMh08gbNkNlti5H6X2REvZaEEBRhVMcAk3l%2FXUgkYoSEX8dXgTpwINNVRMGRXGvZF8IANyj%2BIZymIOt06aRl7vDmqB7vwwwQnLPoUKnvqebyMdnS%2FaIfzLQ0qRvwwkickkR7B4aw%3D%3D')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=5000.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22&sign=EP9zXQZ0akB%2BgWdIChoaJeJ5tmc1K7lYNBlj%2FBTjoZKqu6f6QC77pMhHHrKo7EGevvG4Uh4ZqDEFIzdxouiB%2Fr7m6ZGO%2F39i05ahJAWVkm8dZ3jkzSN0wl9u8uVyg6f6c2%2Bru0nhqSQveSOb%2FwE%2B6o%2BIRtTukqluIgUWLZw1Btga%2FC9pTTHfcxVJs4OPwz6MCcycz%2BPSxnWDVAZqDd3KPBSMt3vtsyOxaRZSUrFgL0yJtO8olOK5ArDWRcwbbtbe770bkq9LWZKmv14ShOFbo9%2BevGACqqhxMkiRuPh16CSpSte7LfRTRBO%2FyLar2UmB2rNEDdEMeZ42AELCkml%2FNA%3D%3D')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=500.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-nokey', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=500.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22&sign=EP9zXQZ0akB%2BgWdIChoaJeJ5tmc1K7lYNBlj%2FBTjoZKqu6f6QC77pMhHHrKo7EGevvG4Uh4ZqDEFIzdxouiB%2Fr7m6ZGO%2F39i05ahJAWVkm8dZ3jkzSN0wl9u8uVyg6f6c2%2Bru0nhqSQveSOb%2FwE%2B6o%2BIRtTukqluIgUWLZw1Btga%2FC9pTTHfcxVJs4OPwz6MCcycz%2BPSxnWDVAZqDd3KPBSMt3vtsyOxaRZSUrFgL0yJtO8olOK5ArDWRcwbbtbe770bkq9LWZKmv14ShOFbo9%2BevGACqqhxMkiRuPh16CSpSte7LfRTRBO%2FyLar2UmB2rNEDdEMeZ42AELCkml%2FNA%3D%3D')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=500.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22&sign=%25%25%25')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&order_id=x&sign=AAAA')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-wh', '', '{}', NULL)$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ak-wh', '', '{}',
    'type=payment&id=100000537&order_id=ak-order%2F1&payment_status=paid&amount=500.00&payment_amount=500.00&commission_amount=15.00&is_partial_payment=0&account=93d5df06-996c-48c3-9847-348d6b580b80&service=payment_card_rub&desc=%D0%9E%D0%BF%D0%BB%D0%B0%D1%82%D0%B0+%D0%B7%D0%B0%D0%BA%D0%B0%D0%B7%D0%B0+%E2%84%961+%2F+%22test%22&sign=EP9zXQZ0akB%2BgWdIChoaJeJ5tmc1K7lYNBlj%2FBTjoZKqu6f6QC77pMhHHrKo7EGevvG4Uh4ZqDEFIzdxouiB%2Fr7m6ZGO%2F39i05ahJAWVkm8dZ3jkzSN0wl9u8uVyg6f6c2%2Bru0nhqSQveSOb%2FwE%2B6o%2BIRtTukqluIgUWLZw1Btga%2FC9pTTHfcxVJs4OPwz6MCcycz%2BPSxnWDVAZqDd3KPBSMt3vtsyOxaRZSUrFgL0yJtO8olOK5ArDWRcwbbtbe770bkq9LWZKmv14ShOFbo9%2BevGACqqhxMkiRuPh16CSpSte7LfRTRBO%2FyLar2UmB2rNEDdEMeZ42AELCkml%2FNA%3D%3D&id=1')$$, true);

--
-- OkePay: unsigned; JSON or form body with a transaction object
--
SELECT * FROM paygw.webhook_parse('ok-wh',
    '{"transaction": {"id": 9001, "uuid": "b4a3c2d1", "status": "confirmed", "amount": 1250,
       "referenceId": "ok-order-7", "invoice": {"paymentLinkId": 106, "referenceId": "ok-order-7"}}}',
    '{"Content-Type": "application/json"}');
SELECT * FROM paygw.webhook_parse('ok-wh',
    'transaction%5Bid%5D=9002&transaction%5Bstatus%5D=waiting&transaction%5BreferenceId%5D=ok+order+8'
    '&transaction%5Binvoice%5D%5BpaymentLinkId%5D=0107',
    '{"Content-Type": "application/x-www-form-urlencoded"}');
SELECT paygw_try($$SELECT paygw.webhook_parse('ok-wh', '{"event": "ping"}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ok-wh', '{"transaction": {"status": "confirmed"}}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ok-wh',
    '{"transaction": {"invoice": {"paymentLinkId": "abc"}}}')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ok-wh', '')$$, true);

--
-- Obmenka: an empty GET to the merchant's status_url, named by its query
--
SELECT * FROM paygw.webhook_parse('ob-wh', '', '{}', 'payment_id=ob-order%2F1');
SELECT * FROM paygw.webhook_parse('ob-wh', NULL, NULL, '?tracking=79DF-60B0-17F6&payment_id=ob-order-2&x=1');
SELECT * FROM paygw.webhook_parse('ob-wh', NULL, NULL, 'order_id=ob-order-3');
SELECT paygw_try($$SELECT paygw.webhook_parse('ob-wh', '', '{}', NULL)$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ob-wh', '', '{}', 'payment_id=a&order_id=b')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('ob-wh', '', '{}', 'payment_id=a&payment_id=b')$$, true);
SELECT paygw_try($$SELECT paygw.webhook_parse('nobody', '')$$, true);

--
-- webhook_key validation per provider
--
-- unsigned gateways take none
SELECT paygw_try($$UPDATE paygw.credentials SET webhook_key = 'k' WHERE name = 'ok-wh'$$, true);
SELECT paygw_try($$UPDATE paygw.credentials SET webhook_key = 'k' WHERE name = 'ob-wh'$$, true);
-- morune: not empty, one line
SELECT paygw_try($$UPDATE paygw.credentials SET webhook_key = '' WHERE name = 'mo-nokey'$$, true);
SELECT paygw_try($$UPDATE paygw.credentials SET webhook_key = E'a\nb' WHERE name = 'mo-nokey'$$, true);
-- alikassa: an RSA public key in PEM (not garbage, not a private key --
-- here the vectors' own --, not a truncated key)
\set notify_priv `cat :testdir/vectors/alikassa-notify.pem`
SELECT paygw_try($$UPDATE paygw.credentials SET webhook_key = 'not a key' WHERE name = 'ak-nokey'$$, true);
SELECT paygw_try(format('UPDATE paygw.credentials SET webhook_key = %L WHERE name = %L',
                        :'notify_priv', 'ak-nokey'), true);
SELECT paygw_try(format('UPDATE paygw.credentials SET webhook_key = %L WHERE name = %L',
                        replace(:'ak_pub', 'MIIBIjAN', 'MIIBIjAA'), 'ak-nokey'), true);
SELECT name, has_webhook_key FROM paygw.accounts WHERE name IN ('ok-wh', 'ob-wh', 'mo-nokey', 'ak-nokey') ORDER BY name;

--
-- sealed at rest: a keyring makes the morune key '$paygw$v1$...', bound to
-- its row and column; rotate_key() re-seals it.  (The keyrings also hold k2
-- of the secrets suite, under which the earlier suites' rows are sealed.)
--
\set k5 '286a2426cc81d588a89c3ae5fdd511fbba285e2f607e038dd1ac566f2f1b7588'
\set k6 '643e2af7cfe2ef3a7d5252258a49a112815e833a4b0436b92cb0ad8f005cb59f'
\set k2 'e249cb0cd399075b9421a0cfa756cee83aedfb31b61ddcf047b18498a4cf81ef'
\setenv PAYGW_K5 :k5
\setenv PAYGW_K6 :k6
\setenv PAYGW_K2 :k2
\! umask 077; d=$PAYGW_WORKDIR; printf '%s\n%s\n' "$PAYGW_K5" "$PAYGW_K2" > $d/whring5; printf '%s\n%s\n%s\n' "$PAYGW_K6" "$PAYGW_K5" "$PAYGW_K2" > $d/whring65; chown --reference=$d/data $d/whring5 $d/whring65 && echo keyrings written
\getenv workdir PAYGW_WORKDIR
SELECT set_config('paygw.key_file', :'workdir' || '/whring5', false) IS NOT NULL AS set;
SELECT paygw.current_key_id() AS k5_id \gset
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url, webhook_key)
VALUES ('mo-sealed', 'morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'secret-value-9101',
        :'emu' || '/morune', 'secret-value-9102');
SELECT left(webhook_key, 19) = '$paygw$v1$' || :'k5_id' || '$' AS sealed_under_k5,
       webhook_key NOT LIKE '%secret-value%' AS no_plaintext
  FROM paygw.credentials WHERE name = 'mo-sealed';
SELECT name, encrypted, has_webhook_key FROM paygw.accounts WHERE name = 'mo-sealed';
\set sealed_body '{"invoice_id":"a3e9ff6f-c5c1-4bcd-854e-4bc995b1a003","status":"fail","order_id":"mo-sealed-1"}'
SELECT * FROM paygw.webhook_parse('mo-sealed', :'sealed_body',
    '{"x-api-sha256-signature": "590fb5c44a40edf96b45b598bcd5ab94e46f4ed95a7cd48a469ac18651c488ae"}');
-- moved to another row, or into another column: refused
SELECT paygw_try($$UPDATE paygw.credentials SET webhook_key =
    (SELECT webhook_key FROM paygw.credentials WHERE name = 'mo-sealed') WHERE name = 'mo-nokey'$$, true);
SELECT paygw_try($$UPDATE paygw.credentials SET secret = webhook_key WHERE name = 'mo-sealed'$$, true);
-- rotation re-seals it under the new key, and it still verifies
SELECT set_config('paygw.key_file', :'workdir' || '/whring65', false) IS NOT NULL AS set;
SELECT paygw.current_key_id() AS k6_id \gset
SELECT paygw.rotate_key() > 0 AS rotated;
SELECT left(webhook_key, 19) = '$paygw$v1$' || :'k6_id' || '$' AS sealed_under_k6
  FROM paygw.credentials WHERE name = 'mo-sealed';
SELECT verified, payment_id FROM paygw.webhook_parse('mo-sealed', :'sealed_body',
    '{"x-api-sha256-signature": "590fb5c44a40edf96b45b598bcd5ab94e46f4ed95a7cd48a469ac18651c488ae"}');
-- the public key was left as it is
SELECT webhook_key = :'ak_pub' AS still_as_given FROM paygw.credentials WHERE name = 'ak-wh';
SELECT set_config('paygw.key_file', '', false) IS NOT NULL AS set;
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-sealed', '{}')$$, true);

--
-- privileges: only administrators can call it
--
CREATE ROLE regress_paygw_webhook NOLOGIN;
GRANT USAGE ON SCHEMA paygw TO regress_paygw_webhook;
SET ROLE regress_paygw_webhook;
SELECT paygw_try($$SELECT paygw.webhook_parse('mo-wh', '{}')$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA paygw FROM regress_paygw_webhook;
DROP ROLE regress_paygw_webhook;
