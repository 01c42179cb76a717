/* paygw--0.1.sql: signed payment-gateway status checks */

\echo Use "CREATE EXTENSION paygw" to load this file. \quit

-- Data and helpers live in schema paygw; the functions applications call
-- live in the extension's schema (public by default) so they can be called
-- unqualified.
CREATE SCHEMA paygw;
COMMENT ON SCHEMA paygw IS 'paygw: credentials, provider list and types';

CREATE TYPE paygw.payment_status AS ENUM (
    'pending',
    'authorized',
    'paid',
    'partially_refunded',
    'refunded',
    'chargeback',
    'failed',
    'cancelled',
    'expired'
);

CREATE TYPE paygw.status_result AS (
    provider        text,
    account         text,
    payment_id      text,
    order_id        text,
    status          paygw.payment_status,
    provider_status text,
    amount          numeric,
    currency        text,
    response        jsonb
);

CREATE TYPE paygw.request_preview AS (
    method  text,
    url     text,
    headers jsonb,
    body    text
);

-- The supported gateways, from the C registry.
CREATE FUNCTION paygw.provider_list(
    OUT name text, OUT base_url text, OUT auth_scheme text,
    OUT id_name text, OUT order_id_name text, OUT order_lookup boolean)
RETURNS SETOF record
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'paygw_provider_list';

CREATE VIEW paygw.providers AS
    SELECT name, base_url, auth_scheme, id_name, order_id_name, order_lookup
      FROM paygw.provider_list();
COMMENT ON VIEW paygw.providers IS
    'Supported gateways and their production base URLs';

-- One row per merchant account at a gateway.  Readable only by its owner.
CREATE TABLE paygw.credentials (
    name            text PRIMARY KEY,
    provider        text NOT NULL,
    merchant_id     text NOT NULL,
    secret          text NOT NULL,
    secret_password text,
    base_url        text,
    options         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE paygw.credentials IS
    'Gateway accounts with their secrets; never grant SELECT on it';
REVOKE ALL ON TABLE paygw.credentials FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('paygw.credentials', '');

CREATE FUNCTION paygw.credentials_validate()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'paygw_credentials_validate';
REVOKE ALL ON FUNCTION paygw.credentials_validate() FROM PUBLIC;

CREATE TRIGGER credentials_validate
    BEFORE INSERT OR UPDATE ON paygw.credentials
    FOR EACH ROW EXECUTE FUNCTION paygw.credentials_validate();

CREATE FUNCTION paygw.credentials_touch()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION paygw.credentials_touch() FROM PUBLIC;

CREATE TRIGGER credentials_touch
    BEFORE UPDATE ON paygw.credentials
    FOR EACH ROW EXECUTE FUNCTION paygw.credentials_touch();

-- The credentials without their secrets.
CREATE VIEW paygw.accounts AS
    SELECT c.name,
           c.provider,
           c.merchant_id,
           c.base_url,
           COALESCE(c.base_url, p.base_url) AS effective_base_url,
           c.secret_password IS NOT NULL AS has_secret_password,
           c.options,
           c.created_at,
           c.updated_at
      FROM paygw.credentials c
      LEFT JOIN paygw.providers p ON p.name = c.provider;
COMMENT ON VIEW paygw.accounts IS 'paygw.credentials without secrets';
REVOKE ALL ON TABLE paygw.accounts FROM PUBLIC;

-- Status calls.  SECURITY DEFINER so that a role granted EXECUTE can use
-- the credentials without being able to read them; search_path pinned.
CREATE FUNCTION @extschema@.paygw_status(provider text, id text, account text DEFAULT NULL)
RETURNS paygw.status_result
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_status';
COMMENT ON FUNCTION @extschema@.paygw_status(text, text, text) IS
    'Ask a gateway for the status of a payment by the gateway''s own id';

CREATE FUNCTION @extschema@.paygw_status_by_order(provider text, order_id text, account text DEFAULT NULL)
RETURNS paygw.status_result
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_status_by_order';
COMMENT ON FUNCTION @extschema@.paygw_status_by_order(text, text, text) IS
    'Ask a gateway for the status of a payment by the merchant''s order id';

CREATE FUNCTION @extschema@.paygw_request(provider text, id text, account text DEFAULT NULL,
                                          by_order boolean DEFAULT false)
RETURNS paygw.request_preview
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_request';
COMMENT ON FUNCTION @extschema@.paygw_request(text, text, text, boolean) IS
    'The signed request paygw_status would send, without sending it (API keys redacted)';

-- The signature an account's provider puts on a message, for comparing
-- with a gateway's documentation.  Administrators only.
CREATE FUNCTION paygw.sign(account text, message text)
RETURNS text
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_sign';

REVOKE ALL ON FUNCTION @extschema@.paygw_status(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.paygw_status_by_order(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.paygw_request(text, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION paygw.sign(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION paygw.provider_list() FROM PUBLIC;
