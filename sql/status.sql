--
-- status: every status value of every gateway, end to end through the
-- emulator, by the gateway's id and by the merchant's order id.
--
\getenv emu_port PAYGW_EMU_PORT
-- fresh emulator state (request counters drive the flipping payment below)
\! curl -sf -X POST -o /dev/null "http://127.0.0.1:$PAYGW_EMU_PORT/_control/reset" && echo reset

-- the libcurl in use has an asynchronous resolver (cancel and the timeouts
-- work during DNS lookups; without one the first call warns), OpenSSL, and
-- a system trust store paygw.ca_file adds to
SELECT async_resolver, ssl_backend LIKE 'OpenSSL/%' AS openssl,
       libcurl_version ~ '^[0-9]+\.[0-9]+\.[0-9]+' AS version,
       ca_bundle IS NOT NULL OR ca_path IS NOT NULL AS system_trust
  FROM paygw.http_info();

-- OkePay: gateway ids 101..116, one per documented status (and one unknown);
-- amounts arrive in cents and come back in major units
SELECT s.provider, s.account, s.payment_id, s.order_id, s.status, s.provider_status,
       s.amount, s.currency
  FROM generate_series(101, 116) AS i, paygw_status('okepay', i::text) AS s
 ORDER BY i;

-- Obmenka: every status; "currency" is a method code, reported as ISO
SELECT s.payment_id, s.order_id, s.status, s.provider_status, s.amount, s.currency
  FROM generate_series(0, 8) AS i,
       paygw_status('obmenka', '79DF-60B0-' || (1700 + i)::text) AS s
 ORDER BY i;
SELECT s.payment_id, s.order_id, s.status, s.provider_status
  FROM generate_series(0, 8) AS i,
       paygw_status_by_order('obmenka', 'ob-order-' || (1700 + i)::text) AS s
 ORDER BY i;

-- AliKassa: ids 100000536.., by id and by order id
SELECT s.payment_id, s.order_id, s.status, s.provider_status, s.amount, s.currency
  FROM generate_series(0, 4) AS i, paygw_status('alikassa', (100000536 + i)::text) AS s
 ORDER BY i;
SELECT s.payment_id, s.order_id, s.status, s.provider_status
  FROM generate_series(0, 4) AS i, paygw_status_by_order('alikassa', 'ak-order-' || (536 + i)::text) AS s
 ORDER BY i;

-- Morune: by invoice_id (a uuid) and by order_id
SELECT s.payment_id, s.order_id, s.status, s.provider_status, s.amount, s.currency
  FROM generate_series(0, 5) AS i,
       paygw_status('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a' || lpad(i::text, 3, '0')) AS s
 ORDER BY i;
SELECT s.payment_id, s.order_id, s.status, s.provider_status
  FROM generate_series(0, 5) AS i, paygw_status_by_order('morune', 'mo-order-' || i) AS s
 ORDER BY i;
-- upper-case uuids are the same invoice
SELECT payment_id, status FROM paygw_status('morune', 'A3E9FF6F-C5C1-4BCD-854E-4BC995B1A001');

-- the whole reply is kept
SELECT response FROM paygw_status('okepay', '106');
SELECT response->'data'->>'status' AS status, response->>'status_check' AS checked
  FROM paygw_status('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001');
SELECT response->>'service_code' AS service, response->>'card_mask' AS card
  FROM paygw_status('alikassa', '100000537');

-- leading zeros of an OkePay id are insignificant
SELECT payment_id, status FROM paygw_status('okepay', '000106');

-- order ids with URL and JSON metacharacters, newlines and non-ASCII text
-- reach the gateway intact (the emulator matches them byte for byte)
SELECT provider, payment_id, order_id, status
  FROM paygw_status_by_order('morune', E'a&b?c/d#e%f g\nh-ü€+=;');
SELECT provider, payment_id, order_id, status
  FROM paygw_status_by_order('alikassa', E'a&b?c/d#e%f g\nh-ü€"\\');
SELECT provider, payment_id, order_id, status
  FROM paygw_status_by_order('obmenka', E'a&b?c/d#e%f g\nh-ü€');
-- a near miss is a different order
SELECT paygw_try($$SELECT paygw_status_by_order('morune', E'a&b?c/d#e%f g\nh-ü€+=')$$);

-- the account can be named explicitly
SELECT account, status FROM paygw_status('okepay', '106', 'ok');

-- a payment whose status changes between calls (the emulator flips it on
-- its third request): each call reports what the gateway says now
SELECT status, provider_status FROM paygw_status('okepay', '500');
SELECT status, provider_status FROM paygw_status('okepay', '500');
SELECT status, provider_status FROM paygw_status('okepay', '500');

-- consecutive calls reuse one connection (keep-alive): count the
-- connections the emulator accepted around twenty calls (less the one
-- curl itself opens to read the counter)
\! curl -sf "http://127.0.0.1:$PAYGW_EMU_PORT/_control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])' > "$PAYGW_WORKDIR/conn-before"
SELECT count(*) AS calls FROM generate_series(1, 20) AS i, paygw_status('okepay', '106') AS s;
\! before=$(cat "$PAYGW_WORKDIR/conn-before"); after=$(curl -sf "http://127.0.0.1:$PAYGW_EMU_PORT/_control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])'); echo "new connections for 20 calls: $((after - before - 1))"
