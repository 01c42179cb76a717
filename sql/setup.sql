--
-- setup: create the extension and one account per gateway, all pointing at
-- the test run's emulator.  Later suites rely on these accounts.
--
\getenv emu_port PAYGW_EMU_PORT
\getenv testdir PAYGW_TEST_DIR
\set emu 'http://127.0.0.1:' :emu_port
\set pem `cat :testdir/keys/alikassa-test.pem`

CREATE EXTENSION paygw;

-- the objects the extension made, without the types that come with another
-- object (a table's row type, a type's array type: internal dependencies),
-- which PostgreSQL 18 lists as members too and 15 does not
SELECT pg_describe_object(d.classid, d.objid, 0) AS object
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'paygw')
   AND d.deptype = 'e'
   AND NOT (d.classid = 'pg_type'::regclass
            AND EXISTS (SELECT 1 FROM pg_depend i
                         WHERE i.classid = d.classid AND i.objid = d.objid AND i.deptype = 'i'))
 ORDER BY 1;

-- callable unqualified with the default search_path
SHOW search_path;
SELECT p.proname, n.nspname
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname LIKE 'paygw\_%' ORDER BY 1;

SELECT * FROM paygw.providers ORDER BY name;

INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url) VALUES
  ('ok', 'okepay',   'demo-shop', 'okepay-test-secret-7Qx', NULL, :'emu' || '/okepay'),
  ('ob', 'obmenka',  '1234', 'obmenka-test-salt-9Kp', NULL, :'emu' || '/obmenka'),
  ('ak', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem', 'test-alikassa-pass', :'emu' || '/alikassa'),
  ('mo', 'morune',   '3fa85f64-5717-4562-b3fc-2c963f66afa6', 'morune-test-key-d6be9962', NULL, :'emu' || '/morune');

SELECT name, provider, merchant_id, replace(base_url, :'emu_port', 'PORT') AS base_url,
       has_secret_password, options
  FROM paygw.accounts ORDER BY name;

-- Test helper: run a statement, return its SQLSTATE and message (and with
-- show_detail, its detail and hint) instead of raising, so the suites can show
-- error codes.  The emulator's port is masked.
CREATE FUNCTION paygw_try(q text, show_detail boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hnt text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    msg := st || ': ' || msg;
    IF show_detail AND det <> '' THEN msg := msg || E'\n  DETAIL: ' || det; END IF;
    IF show_detail AND hnt <> '' THEN msg := msg || E'\n  HINT: ' || hnt; END IF;
    RETURN replace(msg, current_setting('paygw_test.emu_port', true), 'PORT');
END;
$$;
SELECT current_database() AS db \gset
ALTER DATABASE :"db" SET paygw_test.emu_port = :'emu_port';

-- Test helper: an account like an existing one whose base_url asks the
-- emulator to misbehave (see test/emulator/README.md for the fault specs).
CREATE FUNCTION paygw_fault_account(base text, spec text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    src paygw.credentials;
    acct text := base || ':' || spec;
BEGIN
    SELECT * INTO STRICT src FROM paygw.credentials c WHERE c.name = base;
    INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url, options)
    VALUES (acct, src.provider, src.merchant_id, src.secret, src.secret_password,
            regexp_replace(src.base_url, '/([a-z]+)$', '/_fault/' || spec || '/\1'), src.options)
    ON CONFLICT DO NOTHING;
    RETURN acct;
END;
$$;
