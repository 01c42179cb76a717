--
-- secrets: credential secrets encrypted at rest with AES-256-GCM under the
-- keyring named by paygw.key_file; rotation; tampering; errors.
-- (The test keys below are test data, made for this suite.)
--
\set VERBOSITY default
\set k1 '5313d96bf0bb46eddb5358210be1358a148724b6ecdb5db1f359ebb9db3462d2'
\set k2 'e249cb0cd399075b9421a0cfa756cee83aedfb31b61ddcf047b18498a4cf81ef'
\setenv PAYGW_K1 :k1
\setenv PAYGW_K2 :k2
-- keyrings in the work dir, owned by the server's user, mode 600
\! umask 077; d=$PAYGW_WORKDIR; printf '%s\n' "$PAYGW_K1" > $d/ring1; printf '# current\n%s\n# previous\n%s\n' "$PAYGW_K2" "$PAYGW_K1" > $d/ring21; printf '%s\n' "$PAYGW_K2" > $d/ring2; printf 'not a key\n' > $d/ringbad; printf '%s\n' "$PAYGW_K1" > $d/ringopen; chmod 644 $d/ringopen; chown --reference=$d/data $d/ring1 $d/ring21 $d/ring2 $d/ringbad $d/ringopen && echo keyrings written
\getenv workdir PAYGW_WORKDIR
\getenv emu_port PAYGW_EMU_PORT

-- without a key, secrets are stored as given, and the view says so
SHOW paygw.key_file;
SELECT paygw.current_key_id();
SELECT name, encrypted, key_id FROM paygw.accounts ORDER BY name;

-- unusable keyrings are refused with a clear error (and nothing written)
SELECT set_config('paygw.key_file', :'workdir' || '/ringopen', false) IS NOT NULL AS set;
SELECT paygw_try($$SELECT paygw.current_key_id()$$, true);
SELECT set_config('paygw.key_file', :'workdir' || '/missing', false) IS NOT NULL AS set;
SELECT paygw_try($$SELECT paygw.current_key_id()$$, true);
-- checked on the opened file: a directory and a FIFO (which must not block
-- the open) are not regular files
\! d=$PAYGW_WORKDIR; mkdir -m 700 $d/ringdir; mkfifo -m 600 $d/ringfifo; chown --reference=$d/data $d/ringdir $d/ringfifo && echo made
SELECT set_config('paygw.key_file', :'workdir' || '/ringdir', false) IS NOT NULL AS set;
SELECT paygw_try($$SELECT paygw.current_key_id()$$, true);
SET statement_timeout = '5s';
SELECT set_config('paygw.key_file', :'workdir' || '/ringfifo', false) IS NOT NULL AS set;
SELECT paygw_try($$SELECT paygw.current_key_id()$$, true);
RESET statement_timeout;
SELECT set_config('paygw.key_file', :'workdir' || '/ringbad', false) IS NOT NULL AS set;
SELECT paygw_try($$INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
                  VALUES ('x', 'okepay', 'shop', 'secret-value-20')$$, true);
SELECT count(*) AS no_row FROM paygw.credentials WHERE name = 'x';

-- with a key: rotate_key() encrypts every row, atomically
SELECT set_config('paygw.key_file', :'workdir' || '/ring1', false) IS NOT NULL AS set;
SELECT paygw.current_key_id();
SELECT paygw.rotate_key() AS rows_encrypted;
SELECT name, encrypted, key_id FROM paygw.accounts ORDER BY name;
-- what a superuser's SELECT (and pg_dump, and the WAL) sees
SELECT name, left(secret, 19) AS secret_starts, length(secret) > 60 AS long,
       secret NOT LIKE '%test%' AS no_plaintext,
       secret_password IS NULL OR secret_password LIKE '$paygw$v1$%' AS password_sealed
  FROM paygw.credentials ORDER BY name;

-- every gateway still works: secrets are opened only to sign a request
SELECT provider, status FROM paygw_status('okepay', '106')
UNION ALL SELECT provider, status FROM paygw_status('obmenka', '79DF-60B0-1702')
UNION ALL SELECT provider, status FROM paygw_status('alikassa', '100000537')
UNION ALL SELECT provider, status FROM paygw_status('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001');

-- a plaintext secret written through plain SQL is encrypted on the way in
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES ('ok-new', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx',
        'http://127.0.0.1:' || :'emu_port' || '/okepay');
SELECT name, encrypted, key_id FROM paygw.accounts WHERE name = 'ok-new';
SELECT status FROM paygw_status('okepay', '106', 'ok-new');

-- a sealed value is bound to its row and column: tampering, moving it to
-- another credential or into another column is refused
UPDATE paygw.credentials SET secret = overlay(secret placing
    CASE WHEN substr(secret, 40, 1) = 'A' THEN 'B' ELSE 'A' END from 40 for 1) WHERE name = 'ok';
UPDATE paygw.credentials SET secret = (SELECT secret FROM paygw.credentials WHERE name = 'ok')
 WHERE name = 'ok-new';
UPDATE paygw.credentials SET secret_password = secret WHERE name = 'ak';
-- renaming re-seals under the new name
UPDATE paygw.credentials SET name = 'ok-renamed' WHERE name = 'ok-new';
SELECT status FROM paygw_status('okepay', '106', 'ok-renamed');
DELETE FROM paygw.credentials WHERE name = 'ok-renamed';

-- key rotation: the new key first in the keyring, the old one after it
SELECT set_config('paygw.key_file', :'workdir' || '/ring21', false) IS NOT NULL AS set;
SELECT paygw.current_key_id();
SELECT status FROM paygw_status('okepay', '106');
SELECT paygw.rotate_key() AS rows_reencrypted;
SELECT key_id, count(*) FROM paygw.accounts GROUP BY key_id;
-- the old key can go now
SELECT set_config('paygw.key_file', :'workdir' || '/ring2', false) IS NOT NULL AS set;
SELECT status FROM paygw_status('alikassa', '100000537');

-- a keyring without the row's key, or no keyring at all: clear errors
SELECT set_config('paygw.key_file', :'workdir' || '/ring1', false) IS NOT NULL AS set;
SELECT paygw_try($$SELECT paygw_status('okepay', '106')$$, true);
SELECT set_config('paygw.key_file', '', false) IS NOT NULL AS set;
SELECT paygw_try($$SELECT paygw_status('morune', 'a3e9ff6f-c5c1-4bcd-854e-4bc995b1a001')$$, true);
SELECT paygw_try($$SELECT paygw.rotate_key()$$, true);

-- only a superuser can name or see the keyring
CREATE ROLE regress_paygw_keyless NOLOGIN;
SET ROLE regress_paygw_keyless;
SET paygw.key_file = '/tmp/x';
-- 42501 (the message's wording differs between PostgreSQL versions)
\set VERBOSITY sqlstate
SHOW paygw.key_file;
\set VERBOSITY default
RESET ROLE;
DROP ROLE regress_paygw_keyless;

-- (the upgrade suite runs next and drops the extension with these rows)
