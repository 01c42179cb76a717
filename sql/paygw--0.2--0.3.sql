/* paygw--0.2--0.3.sql: secrets at rest encrypted under paygw.key_file */

\echo Use "ALTER EXTENSION paygw UPDATE TO '0.3'" to load this file. \quit

-- The id of the key that seals new secrets (NULL without paygw.key_file).
CREATE FUNCTION paygw.current_key_id()
RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'paygw_current_key_id_sql';
REVOKE ALL ON FUNCTION paygw.current_key_id() FROM PUBLIC;

-- The credentials without their secrets, now saying how each is stored.
CREATE OR REPLACE VIEW paygw.accounts AS
    SELECT c.name,
           c.provider,
           c.merchant_id,
           c.base_url,
           COALESCE(c.base_url, p.base_url) AS effective_base_url,
           c.secret_password IS NOT NULL AS has_secret_password,
           c.options,
           c.created_at,
           c.updated_at,
           c.secret LIKE '$paygw$v1$%' AS encrypted,
           CASE WHEN c.secret LIKE '$paygw$v1$%'
                THEN pg_catalog.split_part(c.secret, '$', 4) END AS key_id
      FROM paygw.credentials c
      LEFT JOIN paygw.providers p ON p.name = c.provider;

-- Re-encrypt every credential under the current (first) key of
-- paygw.key_file, atomically; plaintext rows get encrypted too.  Returns the
-- number of rows.  Keep the old key in the keyring until this has run.
CREATE FUNCTION paygw.rotate_key()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_key text := paygw.current_key_id();
    n integer;
    stale integer;
BEGIN
    IF current_key IS NULL THEN
        RAISE EXCEPTION 'paygw.key_file is not set'
            USING ERRCODE = 'PW006',
                  HINT = 'Put the new key on the first line of the keyring file, keep the old one after it, and set paygw.key_file.';
    END IF;
    LOCK TABLE paygw.credentials IN SHARE ROW EXCLUSIVE MODE;
    -- the validation trigger opens each secret and seals it again
    UPDATE paygw.credentials SET secret = secret, secret_password = secret_password;
    GET DIAGNOSTICS n = ROW_COUNT;
    SELECT count(*) INTO stale FROM paygw.credentials
     WHERE split_part(secret, '$', 4) IS DISTINCT FROM current_key
        OR (secret_password IS NOT NULL AND split_part(secret_password, '$', 4) IS DISTINCT FROM current_key);
    IF stale > 0 THEN
        RAISE EXCEPTION 'key rotation incomplete: % credentials are not under key %', stale, current_key
            USING ERRCODE = 'XX000';
    END IF;
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION paygw.rotate_key() FROM PUBLIC;
