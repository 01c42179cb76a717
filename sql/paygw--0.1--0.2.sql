/* paygw--0.1--0.2.sql: tracked invoices kept current by paygw_refresh and
 * the background worker */

\echo Use "ALTER EXTENSION paygw UPDATE TO '0.2'" to load this file. \quit

-- The payments the application is waiting for.
CREATE TABLE paygw.invoices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        text NOT NULL,
    account         text NOT NULL REFERENCES paygw.credentials (name) ON UPDATE CASCADE,
    payment_id      text,
    order_id        text,
    status          paygw.payment_status NOT NULL DEFAULT 'pending',
    provider_status text,
    amount          numeric,
    currency        text,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    checked_at      timestamptz,
    next_check_at   timestamptz DEFAULT pg_catalog.now(),
    check_count     integer NOT NULL DEFAULT 0,
    error_count     integer NOT NULL DEFAULT 0,
    last_error      text,
    last_error_code text,
    gave_up_at      timestamptz,
    lease_until     timestamptz,
    lease_token     bigint,
    CONSTRAINT invoices_identified CHECK (payment_id IS NOT NULL OR order_id IS NOT NULL),
    CONSTRAINT invoices_payment_key UNIQUE (account, payment_id),
    CONSTRAINT invoices_order_key UNIQUE (account, order_id)
);
COMMENT ON TABLE paygw.invoices IS
    'Payments paygw keeps current; pending and authorized ones are polled';
CREATE INDEX invoices_due ON paygw.invoices (next_check_at)
    WHERE status IN ('pending', 'authorized') AND next_check_at IS NOT NULL;
REVOKE ALL ON TABLE paygw.invoices FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('paygw.invoices', '');
-- and its id sequence, or a restore would hand out ids already in use
SELECT pg_catalog.pg_extension_config_dump('paygw.invoices_id_seq', '');

-- One row per status change, written in the same transaction as the change.
-- applied = false records a transition the gateways cannot produce, which
-- was not applied.
CREATE TABLE paygw.invoice_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id      bigint NOT NULL REFERENCES paygw.invoices (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    old_status      paygw.payment_status NOT NULL,
    new_status      paygw.payment_status NOT NULL,
    provider_status text,
    applied         boolean NOT NULL
);
COMMENT ON TABLE paygw.invoice_events IS 'History of invoice status changes';
CREATE INDEX invoice_events_invoice ON paygw.invoice_events (invoice_id, id);
REVOKE ALL ON TABLE paygw.invoice_events FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('paygw.invoice_events', '');
SELECT pg_catalog.pg_extension_config_dump('paygw.invoice_events_id_seq', '');

-- Checks a row (provider, ids, account) and fills in the account when NULL.
CREATE FUNCTION paygw.invoices_validate()
RETURNS trigger
LANGUAGE C SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_invoices_validate';
REVOKE ALL ON FUNCTION paygw.invoices_validate() FROM PUBLIC;

CREATE TRIGGER invoices_validate
    BEFORE INSERT OR UPDATE OF provider, account, payment_id, order_id ON paygw.invoices
    FOR EACH ROW EXECUTE FUNCTION paygw.invoices_validate();

-- Wakes the background worker when a transaction commits that made an
-- invoice due sooner than the worker planned to look (inserted one, or set
-- its next_check_at earlier).
CREATE FUNCTION paygw.wake_worker()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'paygw_wake_worker';
REVOKE ALL ON FUNCTION paygw.wake_worker() FROM PUBLIC;

CREATE TRIGGER invoices_wake_worker
    AFTER INSERT OR UPDATE OF next_check_at ON paygw.invoices
    FOR EACH ROW EXECUTE FUNCTION paygw.wake_worker();

-- The transitions gateways can produce.  Anything else (a final status
-- changing, any status going back to pending) is recorded, not applied.
CREATE FUNCTION paygw.transition_allowed(old_status paygw.payment_status,
                                         new_status paygw.payment_status)
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE old_status
        WHEN 'pending' THEN new_status <> 'pending'
        WHEN 'authorized' THEN new_status NOT IN ('pending', 'authorized')
        WHEN 'paid' THEN new_status IN ('partially_refunded', 'refunded', 'chargeback')
        WHEN 'partially_refunded' THEN new_status IN ('refunded', 'chargeback')
        WHEN 'refunded' THEN new_status = 'chargeback'
        ELSE false
    END
$$;

REVOKE ALL ON FUNCTION paygw.transition_allowed(paygw.payment_status, paygw.payment_status) FROM PUBLIC;

-- Claim up to max_invoices due invoices.  With a lease, the rows are marked
-- leased (lease_token = this transaction's id) so the caller can commit and
-- work without a transaction open; without one, the rows stay locked until
-- the caller's transaction ends.  SKIP LOCKED: concurrent callers never get
-- the same row.
CREATE FUNCTION paygw.claim_due(max_invoices integer, lease interval)
RETURNS TABLE (id bigint, provider text, account text, payment_id text,
               order_id text, lease_token bigint)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT i.id
          FROM paygw.invoices i
         WHERE i.next_check_at <= now()
           AND i.status IN ('pending', 'authorized')
           AND (i.lease_until IS NULL OR i.lease_until < now())
         ORDER BY i.next_check_at
         LIMIT max_invoices
           FOR UPDATE SKIP LOCKED
    )
    UPDATE paygw.invoices i
       SET lease_until = now() + lease,
           lease_token = CASE WHEN lease IS NULL THEN NULL ELSE txid_current() END
      FROM due
     WHERE i.id = due.id
    RETURNING i.id, i.provider, i.account, i.payment_id, i.order_id, i.lease_token
$$;
REVOKE ALL ON FUNCTION paygw.claim_due(integer, interval) FROM PUBLIC;

-- Claim one invoice whatever its status or schedule (paygw_check_invoice);
-- nothing when the worker holds it (leased or locked).
CREATE FUNCTION paygw.claim_one(invoice_id bigint)
RETURNS TABLE (id bigint, provider text, account text, payment_id text,
               order_id text, lease_token bigint)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.id, i.provider, i.account, i.payment_id, i.order_id, NULL::bigint
      FROM paygw.invoices i
     WHERE i.id = invoice_id
       AND (i.lease_until IS NULL OR i.lease_until < now())
       FOR UPDATE SKIP LOCKED
$$;
REVOKE ALL ON FUNCTION paygw.claim_one(bigint) FROM PUBLIC;

-- Apply the outcome of one check.  Returns what happened: changed,
-- unchanged, anomaly, error, gave_up, or lost (the lease passed to someone
-- else, nothing written).  Never raises for gateway outcomes: errors are
-- data (last_error, check_count, a later next_check_at).
CREATE FUNCTION paygw.apply_check(
    invoice_id bigint, lease bigint,
    new_status paygw.payment_status, provider_status text,
    payment_id text, order_id text, amount numeric, currency text, response jsonb,
    error_code text, error text,
    backoff_initial float8, backoff_max float8, give_up_after float8)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inv paygw.invoices;
    delay float8;
    next_at timestamptz;
    outcome text;
BEGIN
    -- a row another session has locked (a paygw_refresh that claimed it
    -- after our lease ran out) is no longer ours: do not wait for it
    SELECT * INTO inv FROM paygw.invoices i WHERE i.id = invoice_id FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR (lease IS NOT NULL AND inv.lease_token IS DISTINCT FROM lease) THEN
        RETURN 'lost';
    END IF;

    -- exponential backoff with +-20% jitter, from backoff_initial to backoff_max
    delay := least(backoff_max, backoff_initial * power(2, least(inv.check_count, 40)));
    next_at := now() + make_interval(secs => delay * (0.8 + 0.4 * random()));

    IF error_code IS NOT NULL THEN
        UPDATE paygw.invoices i
           SET check_count = i.check_count + 1, error_count = i.error_count + 1,
               checked_at = now(), last_error = error, last_error_code = error_code,
               next_check_at = CASE WHEN i.status IN ('pending', 'authorized') THEN next_at END,
               lease_until = NULL, lease_token = NULL
         WHERE i.id = inv.id;
        outcome := 'error';
    ELSIF new_status = inv.status OR paygw.transition_allowed(inv.status, new_status) THEN
        UPDATE paygw.invoices i
           SET status = new_status, provider_status = apply_check.provider_status,
               amount = apply_check.amount, currency = apply_check.currency,
               response = apply_check.response,
               check_count = i.check_count + 1, error_count = 0, checked_at = now(),
               last_error = NULL, last_error_code = NULL,
               updated_at = CASE WHEN new_status <> inv.status THEN now() ELSE i.updated_at END,
               next_check_at = CASE WHEN new_status IN ('pending', 'authorized') THEN next_at END,
               lease_until = NULL, lease_token = NULL
         WHERE i.id = inv.id;
        -- learn the id the invoice was not tracked by, best effort: an id the
        -- validation trigger refuses, or one another invoice has, is skipped
        IF (inv.payment_id IS NULL AND NULLIF(apply_check.payment_id, '') IS NOT NULL)
           OR (inv.order_id IS NULL AND NULLIF(apply_check.order_id, '') IS NOT NULL) THEN
            BEGIN
                UPDATE paygw.invoices i
                   SET payment_id = COALESCE(i.payment_id, NULLIF(apply_check.payment_id, '')),
                       order_id = COALESCE(i.order_id, NULLIF(apply_check.order_id, ''))
                 WHERE i.id = inv.id;
            EXCEPTION WHEN unique_violation OR SQLSTATE 'PW004' OR SQLSTATE 'PW005' THEN
                NULL;
            END;
        END IF;
        IF new_status = inv.status THEN
            outcome := 'unchanged';
        ELSE
            INSERT INTO paygw.invoice_events (invoice_id, old_status, new_status, provider_status, applied)
            VALUES (inv.id, inv.status, new_status, apply_check.provider_status, true);
            PERFORM pg_notify('paygw_status', json_build_object(
                'invoice_id', inv.id, 'provider', inv.provider, 'account', inv.account,
                'payment_id', COALESCE(inv.payment_id, apply_check.payment_id),
                'order_id', COALESCE(inv.order_id, apply_check.order_id),
                'old_status', inv.status, 'new_status', new_status,
                'provider_status', apply_check.provider_status)::text);
            outcome := 'changed';
        END IF;
    ELSE
        INSERT INTO paygw.invoice_events (invoice_id, old_status, new_status, provider_status, applied)
        VALUES (inv.id, inv.status, new_status, apply_check.provider_status, false);
        RAISE WARNING 'invoice % reported % by the gateway while %: transition not applied',
            inv.id, new_status, inv.status
            USING DETAIL = format('The gateway''s status is "%s"; %s invoices cannot become %s.',
                                  apply_check.provider_status, inv.status, new_status);
        UPDATE paygw.invoices i
           SET check_count = i.check_count + 1, checked_at = now(),
               last_error = format('gateway reported %s (%s) while %s; not applied',
                                   new_status, apply_check.provider_status, inv.status),
               last_error_code = 'anomaly',
               next_check_at = CASE WHEN i.status IN ('pending', 'authorized') THEN next_at END,
               lease_until = NULL, lease_token = NULL
         WHERE i.id = inv.id;
        outcome := 'anomaly';
    END IF;

    -- give up on invoices that stay open past the horizon
    UPDATE paygw.invoices i
       SET next_check_at = NULL, gave_up_at = now()
     WHERE i.id = inv.id AND i.status IN ('pending', 'authorized')
       AND i.created_at + make_interval(secs => give_up_after) <= now();
    IF FOUND AND outcome IN ('unchanged', 'error') THEN
        outcome := 'gave_up';
    END IF;
    RETURN outcome;
END;
$$;
REVOKE ALL ON FUNCTION paygw.apply_check(bigint, bigint, paygw.payment_status, text, text, text,
                                         numeric, text, jsonb, text, text, float8, float8, float8)
    FROM PUBLIC;

-- Start tracking a payment; idempotent.
CREATE FUNCTION @extschema@.paygw_track(provider text, id text, order_id text DEFAULT NULL,
                                        account text DEFAULT NULL)
RETURNS bigint
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_track';
COMMENT ON FUNCTION @extschema@.paygw_track(text, text, text, text) IS
    'Track a payment in paygw.invoices; returns the invoice id (the same one when called again)';

-- One pass over due invoices in this session; returns how many were checked.
CREATE FUNCTION @extschema@.paygw_refresh(max_invoices integer DEFAULT 100)
RETURNS integer
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_refresh';
COMMENT ON FUNCTION @extschema@.paygw_refresh(integer) IS
    'Check up to max_invoices due invoices now, concurrently; returns how many were checked';

-- Check one invoice now, whatever its status or schedule.
CREATE FUNCTION @extschema@.paygw_check_invoice(invoice_id bigint)
RETURNS text
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_check_invoice';
COMMENT ON FUNCTION @extschema@.paygw_check_invoice(bigint) IS
    'Check one invoice now; returns changed, unchanged, anomaly, error, gave_up, or failed (the outcome could not be recorded)';

REVOKE ALL ON FUNCTION @extschema@.paygw_track(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.paygw_refresh(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.paygw_check_invoice(bigint) FROM PUBLIC;

-- The background worker, as its shared memory sees it.
CREATE FUNCTION paygw.worker_status_info(
    OUT running boolean, OUT pid integer, OUT database text,
    OUT started_at timestamptz, OUT last_pass_at timestamptz,
    OUT passes bigint, OUT invoices_checked bigint, OUT changes_applied bigint,
    OUT anomalies bigint, OUT errors bigint, OUT errors_by_kind jsonb,
    OUT in_flight integer, OUT max_concurrency integer, OUT max_per_account integer,
    OUT memory_bytes bigint)
RETURNS record
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'paygw_worker_status_info';
REVOKE ALL ON FUNCTION paygw.worker_status_info() FROM PUBLIC;

CREATE VIEW paygw.worker_status AS SELECT * FROM paygw.worker_status_info();
COMMENT ON VIEW paygw.worker_status IS 'The reconciliation worker: whether it runs and what it did';
REVOKE ALL ON TABLE paygw.worker_status FROM PUBLIC;
