--
-- signing: every gateway's signature scheme against the vectors in
-- PROVIDERS.md, the signed requests paygw would send, and an AliKassa
-- signature checked by `openssl dgst -verify`.
--
\getenv testdir PAYGW_TEST_DIR
\getenv emu_port PAYGW_EMU_PORT
\set pem `cat :testdir/keys/alikassa-test.pem`

-- accounts holding the documentation's example secrets
INSERT INTO paygw.credentials (name, provider, merchant_id, secret) VALUES
  ('vec-okepay',  'okepay',  'INSTANCE_NAME', 'INSTANCE_API_SECRET'),
  ('vec-okepay2', 'okepay',  'INSTANCE_NAME', 'test-secret'),
  ('vec-obmenka', 'obmenka', '1234', 'INSTANCE_API_SECRET'),
  ('vec-obmenka2','obmenka', '1234', 'SECRET_SALT'),
  ('vec-morune',  'morune',  '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'example');

-- OkePay ApiSignature = base64(HMAC-SHA256(secret, query))
SELECT paygw.sign('vec-okepay', '') = 'xjWOoDWMQeBLqHTQ4CykcylL3Ogj7jkgxLIalBAqDj0=' AS okepay_empty,
       paygw.sign('vec-okepay', 'model=Page&id=17') = 'ZLiHCeXICSOqWkuq9GoWGBosQQK19X3ur0fL5DdAVrs=' AS okepay_page,
       paygw.sign('vec-okepay', 'purpose=Order+42+%7Etest&referenceId=inv-%C3%A4%2F1')
           = '/lk33j1shJOPWBSiQ8pFMuwIpuNb8wQvceT7j8M+ZJg=' AS okepay_encoded,
       paygw.sign('vec-okepay2', 'model=Page&id=17') = 'zp8vWZDr2rL9gGz3TxuYoxR6/rZFt2mJrqkLj5cwgXI=' AS okepay_other_key;

-- the status request carries the empty-query signature, percent-encoded
SELECT method, url, headers, body FROM paygw_request('okepay', '17', 'vec-okepay');
SELECT url FROM paygw_request('okepay', '0042', 'vec-okepay');

-- Obmenka DPAY_SECURE = base64(md5(salt . base64(sha1(body)) . salt))
SELECT paygw.sign('vec-obmenka', '') = 'dqKfvNJnQpErkkeDaRLH4Q==' AS obmenka_empty,
       paygw.sign('vec-obmenka', '{"payment_id":"6623237"}') = 'AjfQ5UrOrKXaC2Mzj4Mbuw==' AS obmenka_body,
       paygw.sign('vec-obmenka2', '{"payment_id":"6623237"}') = '2LH9D6z5tqZfL1IJkTbe/A==' AS obmenka_other_salt;

-- the by-order request is exactly the documented body, with its signature
SELECT method, url, headers, body FROM paygw_request('obmenka', '6623237', 'vec-obmenka2', true);
SELECT body, headers->>'DPAY_SECURE' AS signature
  FROM paygw_request('obmenka', '79DF-60B0-17F6', 'vec-obmenka');

-- Morune signs webhooks (lower-case hex HMAC-SHA256), not status calls
SELECT paygw.sign('vec-morune', '{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card","pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279","status":"success","type":1}')
       = 'e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136' AS morune_webhook;
-- its status request: the API key is redacted in the preview
SELECT method, url, headers, body
  FROM paygw_request('morune', '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'vec-morune');

-- AliKassa Sign = base64(RSA PKCS#1 v1.5 over SHA-1 of the body)
SELECT method, replace(url, :'emu_port', 'PORT') AS url, headers - 'Sign' AS headers, body,
       length(headers->>'Sign') AS sign_length
  FROM paygw_request('alikassa', '100000536', 'ak');
SELECT headers->>'Sign' AS sign FROM paygw_request('alikassa', '100000536', 'ak') \gset
\setenv PAYGW_SIGN :sign
-- openssl verifies paygw's signature over the exact body with the public key
\! printf '%s' '{"id":"100000536"}' > "$PAYGW_WORKDIR/ak-body.json"; printf '%s' "$PAYGW_SIGN" | base64 -d > "$PAYGW_WORKDIR/ak-sig.bin"; openssl dgst -sha1 -verify "$PAYGW_TEST_DIR/keys/alikassa-test.pub.pem" -signature "$PAYGW_WORKDIR/ak-sig.bin" "$PAYGW_WORKDIR/ak-body.json"
-- and a signature openssl makes with the encrypted key is byte-identical
\! openssl dgst -sha1 -sign "$PAYGW_TEST_DIR/keys/alikassa-test.pem" -passin pass:test-alikassa-pass "$PAYGW_WORKDIR/ak-body.json" | base64 -w0 > "$PAYGW_WORKDIR/ak-openssl.b64"; if [ "$(cat "$PAYGW_WORKDIR/ak-openssl.b64")" = "$PAYGW_SIGN" ]; then echo "openssl signature identical"; else echo "openssl signature DIFFERS"; fi

-- paygw.sign over the same body gives the same signature
SELECT paygw.sign('ak', '{"id":"100000536"}') = :'sign' AS same_as_request;

-- the digest is an account option: sha256 verifies with -sha256
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, options)
VALUES ('vec-ak256', 'alikassa', '5b3c1d2e-0f4a-4b6c-8d7e-9f0a1b2c3d4e', :'pem', 'test-alikassa-pass',
        '{"digest": "sha256"}');
SELECT paygw.sign('vec-ak256', '{"id":"100000536"}') AS sign256 \gset
\setenv PAYGW_SIGN :sign256
\! printf '%s' "$PAYGW_SIGN" | base64 -d > "$PAYGW_WORKDIR/ak-sig.bin"; openssl dgst -sha256 -verify "$PAYGW_TEST_DIR/keys/alikassa-test.pub.pem" -signature "$PAYGW_WORKDIR/ak-sig.bin" "$PAYGW_WORKDIR/ak-body.json"
SELECT :'sign256' <> :'sign' AS digest_changes_signature;

-- an unencrypted key signs identically
\set plain `cat :testdir/keys/alikassa-test-plain.pem`
INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
VALUES ('vec-akplain', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'plain');
SELECT paygw.sign('vec-akplain', '{"id":"100000536"}') = :'sign' AS plain_key_same_signature;

-- with the parsed-key cache off (the key is parsed for each signature and
-- freed right after), the signature is the same
SET paygw.key_cache_ttl = 0;
SELECT paygw.sign('ak', '{"id":"100000536"}') = :'sign' AS same_without_cache;
RESET paygw.key_cache_ttl;

-- ids that could break a URL or a body are encoded, never interpreted
SELECT url FROM paygw_request('morune', E'a&b?c/d#e%f g\nh-ü€+=;', 'vec-morune', true);
SELECT body FROM paygw_request('obmenka', E'a"b\\c\n\td&?/#% ü€', 'vec-obmenka', true);
SELECT body FROM paygw_request('alikassa', E'x"}, "id": "1', 'ak', true);

-- the vector accounts are no longer needed
DELETE FROM paygw.credentials WHERE name LIKE 'vec-%';
