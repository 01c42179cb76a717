/* paygw--0.3--0.4.sql: reconciliation you can leave running -- leases that
 * cannot outlive their worker, applies that never lose a result to another
 * session's lock, set-based application of a batch of outcomes */

\echo Use "ALTER EXTENSION paygw UPDATE TO '0.4'" to load this file. \quit

-- Empties the per-transaction account caches of paygw_track and the
-- invoices_validate trigger: this session's at once, the others' when the
-- change commits.  ENABLE ALWAYS: a change applied with
-- session_replication_role = replica must empty them too.
CREATE FUNCTION paygw.credentials_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'paygw_credentials_changed';
REVOKE ALL ON FUNCTION paygw.credentials_changed() FROM PUBLIC;

CREATE TRIGGER credentials_changed
    BEFORE INSERT OR UPDATE OR DELETE ON paygw.credentials
    FOR EACH ROW EXECUTE FUNCTION paygw.credentials_changed();
CREATE TRIGGER credentials_truncated
    BEFORE TRUNCATE ON paygw.credentials
    FOR EACH STATEMENT EXECUTE FUNCTION paygw.credentials_changed();
ALTER TABLE paygw.credentials ENABLE ALWAYS TRIGGER credentials_changed;
ALTER TABLE paygw.credentials ENABLE ALWAYS TRIGGER credentials_truncated;
