/* paygw--0.3--0.4.sql: reconciliation you can leave running -- leases that
 * cannot outlive their worker, applies that never lose a result to another
 * session's lock, set-based application of a batch of outcomes */

\echo Use "ALTER EXTENSION paygw UPDATE TO '0.4'" to load this file. \quit

-- What the libcurl in use offers: without an asynchronous resolver, cancel
-- and the timeouts cannot interrupt a host name lookup.  Superuser only.
CREATE FUNCTION paygw.http_info(
    OUT libcurl_version text,
    OUT ssl_backend text,
    OUT async_resolver boolean,
    OUT ca_bundle text,
    OUT ca_path text)
RETURNS record
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'paygw_http_info';
REVOKE ALL ON FUNCTION paygw.http_info() FROM PUBLIC;
