/* paygw--0.3--0.4.sql: reconciliation you can leave running -- leases that
 * cannot outlive their worker, applies that never lose a result to another
 * session's lock, set-based application of a batch of outcomes */

\echo Use "ALTER EXTENSION paygw UPDATE TO '0.4'" to load this file. \quit

-- Each start of the background worker takes a number from this sequence
-- (its run) and leases invoices with it: a lease whose run is not the
-- current worker's belongs to a worker that is gone (terminated, crashed,
-- or the old primary after a failover), and the current worker takes the
-- row over at once instead of waiting for lease_until.
CREATE SEQUENCE paygw.worker_runs;
REVOKE ALL ON SEQUENCE paygw.worker_runs FROM PUBLIC;
-- dumped with the data, so a restored database never hands out a run number
-- that a restored lease carries
SELECT pg_catalog.pg_extension_config_dump('paygw.worker_runs', '');
COMMENT ON SEQUENCE paygw.worker_runs IS
    'One number per start of the reconciliation worker; invoices.lease_token holds it';

-- Claim up to max_invoices due invoices (any invoice whose next_check_at has
-- come: open ones are polled, a final one is due only when a webhook or an
-- operator asked for a check).  run NULL (paygw_refresh): the rows
-- stay locked until the caller's transaction ends, no lease is written, and
-- rows leased by a worker are skipped until the lease ends.  run not NULL
-- (the worker): the rows are leased with lease_token = run, so the caller can
-- commit and work without a transaction open; rows leased by another run are
-- taken over at once.  FOR NO KEY UPDATE: a foreign key pointing at an
-- invoice (FOR KEY SHARE) does not keep it from being claimed.  SKIP LOCKED:
-- concurrent callers never get the same row, and a row another session
-- holds is claimed on a later pass.
CREATE FUNCTION paygw.claim_due(max_invoices integer, lease interval, run bigint)
RETURNS TABLE (id bigint, provider text, account text, payment_id text,
               order_id text, lease_token bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a handful of rows by key: never a plan cached while the table was small
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    -- PL/pgSQL, not SQL: the plan is kept across calls
    RETURN QUERY
    WITH due AS (
        SELECT i.id
          FROM paygw.invoices i
         WHERE i.next_check_at <= now()
           AND (i.lease_until IS NULL OR i.lease_until < now()
                OR (claim_due.run IS NOT NULL AND i.lease_token IS DISTINCT FROM claim_due.run))
         ORDER BY i.next_check_at
         LIMIT claim_due.max_invoices
           FOR NO KEY UPDATE SKIP LOCKED
    )
    UPDATE paygw.invoices i
       SET lease_until = CASE WHEN claim_due.run IS NULL THEN NULL ELSE now() + claim_due.lease END,
           lease_token = claim_due.run
      FROM due
     WHERE i.id = due.id
    RETURNING i.id, i.provider, i.account, i.payment_id, i.order_id, i.lease_token;
END;
$$;
REVOKE ALL ON FUNCTION paygw.claim_due(integer, interval, bigint) FROM PUBLIC;

-- The 0.3 form keeps its 0.3 meaning for a 0.3 worker still running after
-- the update (until the server restarts with the new library): with a lease
-- the rows are leased under the claiming transaction's id, which no 0.4 run
-- number equals, so the 0.4 worker takes them over at once.
CREATE OR REPLACE FUNCTION paygw.claim_due(max_invoices integer, lease interval)
RETURNS TABLE (id bigint, provider text, account text, payment_id text,
               order_id text, lease_token bigint)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM paygw.claim_due(max_invoices, lease,
                                  CASE WHEN lease IS NULL THEN NULL ELSE txid_current() END)
$$;

-- Claim one invoice whatever its status or schedule (paygw_check_invoice);
-- nothing when a worker holds its lease or another session holds the row.
CREATE OR REPLACE FUNCTION paygw.claim_one(invoice_id bigint)
RETURNS TABLE (id bigint, provider text, account text, payment_id text,
               order_id text, lease_token bigint)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.id, i.provider, i.account, i.payment_id, i.order_id, NULL::bigint
      FROM paygw.invoices i
     WHERE i.id = invoice_id
       AND (i.lease_until IS NULL OR i.lease_until < now())
       FOR NO KEY UPDATE SKIP LOCKED
$$;

-- Give back the leases of claimed invoices whose check was never made (the
-- worker is stopping).  Rows another session holds right now keep their
-- lease; the next worker run takes them over at once.
CREATE FUNCTION paygw.release_leases(ids bigint[], run bigint)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
-- a handful of rows by key: never a plan cached while the table was small
SET enable_seqscan = off
AS $$
    WITH mine AS (
        SELECT i.id FROM paygw.invoices i
         WHERE i.id = ANY (ids) AND i.lease_token = run
           FOR NO KEY UPDATE SKIP LOCKED
    ), released AS (
        UPDATE paygw.invoices i SET lease_until = NULL, lease_token = NULL
          FROM mine WHERE i.id = mine.id
        RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;
REVOKE ALL ON FUNCTION paygw.release_leases(bigint[], bigint) FROM PUBLIC;

-- Inlinable from now on (a STRICT SQL function is called, and parsed, once
-- per row); NULL input still gives false through the ELSE branch.
ALTER FUNCTION paygw.transition_allowed(paygw.payment_status, paygw.payment_status)
    CALLED ON NULL INPUT;

-- Room on each page for the updates every check makes: the worker's claim
-- writes the lease (lease_until and lease_token are in no index), which can
-- then be a HOT update on the same page -- no new entry in any of the four
-- indexes -- instead of a copy elsewhere; the apply's update stays on the
-- page too.  Pages written from now on (ALTER TABLE ... SET only records
-- it; VACUUM FULL or CLUSTER would rewrite older ones).
ALTER TABLE paygw.invoices SET (fillfactor = 50);

-- The text of a paygw_status notification: a JSON object with these keys,
-- as json_build_object() writes it (which took most of the time of
-- notifying, per row, with its per-call type lookups).
CREATE FUNCTION paygw.status_payload(invoice_id bigint, provider text, account text,
                                     payment_id text, order_id text, old_status text,
                                     new_status text, provider_status text)
RETURNS text
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'paygw_status_payload';
REVOKE ALL ON FUNCTION paygw.status_payload(bigint, text, text, text, text, text, text, text)
    FROM PUBLIC;

-- Apply the outcomes of a batch of checks in one statement.  The caller has
-- locked every row (FOR NO KEY UPDATE) in its transaction first, so each row
-- read here is the current one and nobody changes it meanwhile.  Arrays are
-- parallel, one element per invoice; error_codes[k] not NULL means the check
-- failed (errors are data: last_error, check_count, a later next_check_at).
-- learns[k]: the reply named an id the row lacks and the caller holds the
-- row FOR UPDATE (changing a key column needs it, and a foreign key's FOR
-- KEY SHARE conflicts with it), so fill the id in -- unless another invoice
-- of the account has it; otherwise it is learnt at a later check.
-- Returns one row per invoice: its outcome -- changed, unchanged, anomaly,
-- error, gave_up, or lost (the lease passed to another run or session,
-- nothing written) -- the statuses before and after, and learnt = true when
-- an id was filled in.
--
-- Notification payloads stay far below NOTIFY's 8000-byte limit whatever a
-- gateway returns: every text field in them is cut to 200 characters (the
-- row keeps the whole value).
CREATE FUNCTION paygw.apply_checks(
    ids bigint[], leases bigint[],
    new_statuses paygw.payment_status[], provider_statuses text[],
    payment_ids text[], order_ids text[], amounts numeric[], currencies text[],
    responses jsonb[], error_codes text[], errors text[], learns boolean[],
    backoff_initial float8, backoff_max float8, give_up_after float8)
RETURNS TABLE (invoice_id bigint, outcome text, old_status paygw.payment_status,
               new_status paygw.payment_status, provider_status text, learnt boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a handful of rows by key: never a plan cached while the table was small
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH u AS (
        SELECT *
          FROM unnest(ids, leases, new_statuses, provider_statuses, payment_ids,
                      order_ids, amounts, currencies, responses, error_codes, errors, learns)
               AS u(id, lease, new_status, provider_status, payment_id, order_id,
                    amount, currency, response, error_code, error, learn)
    ), c AS (
        SELECT u.*, i.status AS old_status, i.provider, i.account,
               i.payment_id AS have_payment, i.order_id AS have_order,
               CASE WHEN u.lease IS NOT NULL AND i.lease_token IS DISTINCT FROM u.lease THEN 'lost'
                    WHEN u.error_code IS NOT NULL THEN 'error'
                    WHEN u.new_status = i.status THEN 'unchanged'
                    WHEN paygw.transition_allowed(i.status, u.new_status) THEN 'changed'
                    ELSE 'anomaly' END AS kind,
               -- exponential backoff with +-20% jitter
               now() + make_interval(secs => least(backoff_max,
                        backoff_initial * power(2, least(i.check_count, 40)))
                        * (0.8 + 0.4 * random())) AS next_at,
               i.created_at + make_interval(secs => give_up_after) <= now() AS too_old
          FROM u JOIN paygw.invoices i ON i.id = u.id
    ), r AS (
        -- the status each row ends with, whether it is still polled, and the
        -- ids it learns (each checked through its own unique index)
        SELECT c.*, CASE WHEN c.kind = 'changed' THEN c.new_status ELSE c.old_status END AS final,
               (CASE WHEN c.kind = 'changed' THEN c.new_status ELSE c.old_status END)
                   IN ('pending', 'authorized') AS open,
               -- (scalar subqueries: one index probe per row, never a hash
               -- of the whole table)
               COALESCE(c.learn, false) AND c.kind IN ('changed', 'unchanged')
                 AND c.have_payment IS NULL AND NULLIF(c.payment_id, '') IS NOT NULL
                 AND (SELECT o.id FROM paygw.invoices o
                       WHERE o.account = c.account AND o.payment_id = c.payment_id) IS NULL
                 AS learn_payment,
               COALESCE(c.learn, false) AND c.kind IN ('changed', 'unchanged')
                 AND c.have_order IS NULL AND NULLIF(c.order_id, '') IS NOT NULL
                 AND (SELECT o.id FROM paygw.invoices o
                       WHERE o.account = c.account AND o.order_id = c.order_id) IS NULL
                 AS learn_order
          FROM c
    ), upd AS (
        -- rows that learn no id: payment_id and order_id are not named, so
        -- the row lock stays FOR NO KEY UPDATE (a BEFORE UPDATE trigger
        -- takes the lock for the columns named, changed or not, and a key
        -- column would conflict with a foreign key's FOR KEY SHARE)
        UPDATE paygw.invoices i
           SET status = r.final,
               provider_status = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.provider_status
                                      ELSE i.provider_status END,
               amount = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.amount ELSE i.amount END,
               currency = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.currency ELSE i.currency END,
               response = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.response ELSE i.response END,
               check_count = i.check_count + 1,
               error_count = CASE WHEN r.kind = 'error' THEN i.error_count + 1
                                  WHEN r.kind = 'anomaly' THEN i.error_count ELSE 0 END,
               checked_at = now(),
               last_error = CASE r.kind
                   WHEN 'error' THEN r.error
                   WHEN 'anomaly' THEN format('gateway reported %s (%s) while %s; not applied',
                                              r.new_status, r.provider_status, r.old_status)
                   END,
               last_error_code = CASE r.kind WHEN 'error' THEN r.error_code
                                             WHEN 'anomaly' THEN 'anomaly' END,
               updated_at = CASE WHEN r.kind = 'changed' THEN now() ELSE i.updated_at END,
               -- a webhook came while this check was in flight: once more, now
               next_check_at = CASE WHEN i.hinted_at IS NOT NULL THEN now()
                                    WHEN r.open AND NOT r.too_old THEN r.next_at END,
               hinted_at = NULL,
               gave_up_at = CASE WHEN r.open AND r.too_old THEN now() ELSE i.gave_up_at END,
               lease_until = NULL, lease_token = NULL
          FROM r
         WHERE i.id = r.id AND r.kind <> 'lost' AND NOT (r.learn_payment OR r.learn_order)
    ), upd_learn AS (
        -- rows that learn an id: the caller already holds them FOR UPDATE
        UPDATE paygw.invoices i
           SET status = r.final,
               provider_status = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.provider_status
                                      ELSE i.provider_status END,
               amount = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.amount ELSE i.amount END,
               currency = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.currency ELSE i.currency END,
               response = CASE WHEN r.kind IN ('changed', 'unchanged') THEN r.response ELSE i.response END,
               check_count = i.check_count + 1,
               error_count = CASE WHEN r.kind = 'error' THEN i.error_count + 1
                                  WHEN r.kind = 'anomaly' THEN i.error_count ELSE 0 END,
               checked_at = now(),
               last_error = CASE r.kind
                   WHEN 'error' THEN r.error
                   WHEN 'anomaly' THEN format('gateway reported %s (%s) while %s; not applied',
                                              r.new_status, r.provider_status, r.old_status)
                   END,
               last_error_code = CASE r.kind WHEN 'error' THEN r.error_code
                                             WHEN 'anomaly' THEN 'anomaly' END,
               updated_at = CASE WHEN r.kind = 'changed' THEN now() ELSE i.updated_at END,
               -- a webhook came while this check was in flight: once more, now
               next_check_at = CASE WHEN i.hinted_at IS NOT NULL THEN now()
                                    WHEN r.open AND NOT r.too_old THEN r.next_at END,
               hinted_at = NULL,
               gave_up_at = CASE WHEN r.open AND r.too_old THEN now() ELSE i.gave_up_at END,
               payment_id = CASE WHEN r.learn_payment THEN r.payment_id ELSE i.payment_id END,
               order_id = CASE WHEN r.learn_order THEN r.order_id ELSE i.order_id END,
               lease_until = NULL, lease_token = NULL
          FROM r
         WHERE i.id = r.id AND r.kind <> 'lost' AND (r.learn_payment OR r.learn_order)
    ), ev AS (
        INSERT INTO paygw.invoice_events (invoice_id, old_status, new_status, provider_status, applied)
        SELECT r.id, r.old_status, r.new_status, r.provider_status, r.kind = 'changed'
          FROM r WHERE r.kind IN ('changed', 'anomaly')
         ORDER BY r.id
    ), nt AS (
        -- one notification per applied change, sent at commit
        SELECT pg_notify('paygw_status', paygw.status_payload(
                   r.id, left(r.provider, 200), left(r.account, 200),
                   left(COALESCE(r.have_payment, r.payment_id), 200),
                   left(COALESCE(r.have_order, r.order_id), 200),
                   r.old_status::text, r.new_status::text, left(r.provider_status, 200)))
          FROM r WHERE r.kind = 'changed'
         ORDER BY r.id
    )
    SELECT r.id,
           CASE WHEN r.kind IN ('unchanged', 'error') AND r.open AND r.too_old THEN 'gave_up'
                ELSE r.kind END,
           r.old_status, r.new_status, r.provider_status, r.learn_payment OR r.learn_order
      FROM r CROSS JOIN (SELECT count(*) FROM nt) AS sent
     ORDER BY r.id;
END;
$$;
REVOKE ALL ON FUNCTION paygw.apply_checks(bigint[], bigint[], paygw.payment_status[], text[],
                                          text[], text[], numeric[], text[], jsonb[], text[],
                                          text[], boolean[], float8, float8, float8)
    FROM PUBLIC;


-- Checking a single invoice needs one: NULL is no invoice at all.
ALTER FUNCTION @extschema@.paygw_check_invoice(bigint) STRICT;

-- It reads shared memory that changes under it.
ALTER FUNCTION paygw.worker_status_info() VOLATILE;

-- The background workers as shared memory sees them: one row per database
-- with a worker (and one for the current database when it has none), now
-- with each worker's run, the outcomes it could not apply at once -- lost
-- (the lease had passed to another run or session, or the row was deleted;
-- nothing written) and busy (another session held the row; the result was
-- kept and applied later) -- and its state in words.
CREATE FUNCTION paygw.worker_info(
    OUT running boolean, OUT pid integer, OUT database text,
    OUT started_at timestamptz, OUT last_pass_at timestamptz,
    OUT passes bigint, OUT invoices_checked bigint, OUT changes_applied bigint,
    OUT anomalies bigint, OUT errors bigint, OUT errors_by_kind jsonb,
    OUT in_flight integer, OUT max_concurrency integer, OUT max_per_account integer,
    OUT memory_bytes bigint, OUT run bigint, OUT lost bigint, OUT busy bigint,
    OUT waiting_retry integer, OUT state text)
RETURNS SETOF record
LANGUAGE C VOLATILE ROWS 4
AS 'MODULE_PATHNAME', 'paygw_worker_info';
REVOKE ALL ON FUNCTION paygw.worker_info() FROM PUBLIC;

-- The same columns as before, and the new ones after them.
CREATE OR REPLACE VIEW paygw.worker_status AS SELECT * FROM paygw.worker_info();

-- Wake the worker only for rows that become due sooner: inserted ones, and
-- updates that move next_check_at earlier (or set it on a row that had none).
-- The worker's own rescheduling moves it later or clears it, and no longer
-- queues a trigger event per row.
DROP TRIGGER invoices_wake_worker ON paygw.invoices;
CREATE TRIGGER invoices_wake_worker
    AFTER INSERT ON paygw.invoices
    FOR EACH ROW EXECUTE FUNCTION paygw.wake_worker();
CREATE TRIGGER invoices_wake_worker_sooner
    AFTER UPDATE OF next_check_at ON paygw.invoices
    FOR EACH ROW
    WHEN (NEW.next_check_at IS NOT NULL
          AND (OLD.next_check_at IS NULL OR NEW.next_check_at < OLD.next_check_at))
    EXECUTE FUNCTION paygw.wake_worker();

-- Validate a row when it is inserted, and on update only when a column it
-- checks really changes (the worker's apply names payment_id and order_id in
-- its UPDATE for the rows that learn one, and would fire it for every row).
-- An update that changes only ids -- the worker filling in an id a gateway's
-- reply named -- has them checked by paygw.invoices_validate_ids(), which
-- reads nothing (the provider and the account are the row's, checked when
-- they were written) and so needs neither SECURITY DEFINER nor settings of
-- its own; a new provider or account gets the whole check.
--
-- A row paygw_track inserts it has checked itself, just before: the WHEN
-- clause, paygw.invoice_prevalidated(), lets only a row byte-identical to
-- one it checked for the INSERT it is running in this session through
-- unchecked (the trigger is SECURITY DEFINER with a setting of its own: it
-- took 13 % of the time of tracking a batch of new payments).  The WHEN
-- clause runs as the role that inserts, so every role may execute the
-- function; it reads nothing, and says only whether its arguments are such
-- a row.
CREATE FUNCTION paygw.invoice_prevalidated(provider text, account text, payment_id text,
                                           order_id text)
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'paygw_invoice_prevalidated';
-- (PUBLIC's EXECUTE stated, not left to the default)
REVOKE ALL ON FUNCTION paygw.invoice_prevalidated(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION paygw.invoice_prevalidated(text, text, text, text) TO PUBLIC;
DROP TRIGGER invoices_validate ON paygw.invoices;
CREATE TRIGGER invoices_validate
    BEFORE INSERT ON paygw.invoices
    FOR EACH ROW
    WHEN (NOT paygw.invoice_prevalidated(NEW.provider, NEW.account, NEW.payment_id, NEW.order_id))
    EXECUTE FUNCTION paygw.invoices_validate();
CREATE TRIGGER invoices_validate_update
    BEFORE UPDATE OF provider, account, payment_id, order_id ON paygw.invoices
    FOR EACH ROW
    WHEN (NEW.provider IS DISTINCT FROM OLD.provider OR NEW.account IS DISTINCT FROM OLD.account)
    EXECUTE FUNCTION paygw.invoices_validate();

CREATE FUNCTION paygw.invoices_validate_ids()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'paygw_invoices_validate_ids';
REVOKE ALL ON FUNCTION paygw.invoices_validate_ids() FROM PUBLIC;

CREATE TRIGGER invoices_validate_ids
    BEFORE UPDATE OF payment_id, order_id ON paygw.invoices
    FOR EACH ROW
    WHEN (NEW.provider IS NOT DISTINCT FROM OLD.provider AND NEW.account IS NOT DISTINCT FROM OLD.account
          AND (NEW.payment_id IS DISTINCT FROM OLD.payment_id OR NEW.order_id IS DISTINCT FROM OLD.order_id))
    EXECUTE FUNCTION paygw.invoices_validate_ids();

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

-- ---------------------------------------------------------------------------
-- Webhooks: a gateway's notification makes the invoice it is about due (the
-- worker confirms it with a signed status call), whatever the invoice's
-- status -- a refund arrives after "paid".  Any invoice with a next_check_at
-- is now due then; the worker's apply clears next_check_at once an invoice
-- is final, as before.
-- ---------------------------------------------------------------------------
DROP INDEX paygw.invoices_due;
CREATE INDEX invoices_due ON paygw.invoices (next_check_at) WHERE next_check_at IS NOT NULL;

-- When a webhook arrived while the invoice's check was in flight: the check
-- may have been answered before the payment moved, so the worker checks it
-- once more right after applying (and clears this).
ALTER TABLE paygw.invoices ADD COLUMN hinted_at timestamptz;

-- Every webhook handed to paygw_webhook(), whatever became of it.  No
-- secret and no body: a hash of what was received, to recognise replays.
CREATE TABLE paygw.webhooks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    provider        text NOT NULL,
    account         text NOT NULL,
    verified        boolean NOT NULL,
    invoice_id      bigint REFERENCES paygw.invoices (id) ON DELETE SET NULL,
    payment_id      text,
    order_id        text,
    event           text,
    action          text NOT NULL
                    CHECK (action IN ('scheduled', 'confirmed', 'duplicate', 'ignored',
                                      'probe', 'tracked', 'unknown')),
    detail          text,
    request_sha256  text NOT NULL
);
COMMENT ON TABLE paygw.webhooks IS 'Webhooks received through paygw_webhook(), and what each caused';
CREATE INDEX webhooks_received ON paygw.webhooks (received_at);
CREATE INDEX webhooks_request ON paygw.webhooks (account, request_sha256, received_at);
CREATE INDEX webhooks_invoice ON paygw.webhooks (invoice_id) WHERE invoice_id IS NOT NULL;
REVOKE ALL ON TABLE paygw.webhooks FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('paygw.webhooks', '');
SELECT pg_catalog.pg_extension_config_dump('paygw.webhooks_id_seq', '');

CREATE TYPE paygw.webhook_result AS (
    invoice_id  bigint,
    verified    boolean,
    action      text
);

-- Hints about payments paygw does not track: a webhook naming ids that no
-- tracked invoice of its account has.  Each distinct one (per account, by
-- the gateway's id, else by the order id where the gateway looks orders up)
-- is checked once with a signed status call -- by the worker, or within
-- paygw_webhook() with confirm -- and becomes a tracked invoice only when
-- the gateway confirms the payment exists for that account.  Until then it
-- lives here, not in paygw.invoices, which applications read.
--   pending  not checked yet, or the check failed (last_error) and is tried
--            again at next_attempt_at;
--   tracked  the gateway has it: invoice_id is the invoice made for it (or
--            the one tracked meanwhile);
--   unknown  the gateway does not know it (PW010), or it could not be asked
--            before paygw.give_up_after passed.
-- Rows stay (so a repeated hint causes no second call) until purged with the
-- webhooks, after paygw.webhook_retention.  lease_token: the worker run
-- whose check is in flight; a row leased by any other run is taken over.
CREATE TABLE paygw.webhook_probes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        text NOT NULL,
    account         text NOT NULL REFERENCES paygw.credentials (name)
                    ON UPDATE CASCADE ON DELETE CASCADE,
    payment_id      text,
    order_id        text,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'tracked', 'unknown')),
    webhook_id      bigint,
    invoice_id      bigint REFERENCES paygw.invoices (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    next_attempt_at timestamptz DEFAULT pg_catalog.now(),
    attempted_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    finished_at     timestamptz,
    last_error      text,
    last_error_code text,
    lease_token     bigint,
    -- the one id the status call asks about
    CONSTRAINT webhook_probes_one_id CHECK (pg_catalog.num_nonnulls(payment_id, order_id) = 1),
    CONSTRAINT webhook_probes_pending CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CONSTRAINT webhook_probes_payment_key UNIQUE (account, payment_id),
    CONSTRAINT webhook_probes_order_key UNIQUE (account, order_id)
);
COMMENT ON TABLE paygw.webhook_probes IS
    'Webhooks about payments paygw did not track: one status call each, tracked only if the gateway has the payment';
COMMENT ON COLUMN paygw.webhook_probes.webhook_id IS
    'The paygw.webhooks row that asked for the check (gone once purged)';
CREATE INDEX webhook_probes_due ON paygw.webhook_probes (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
-- the rate windows: probes made and checks started in the last minute
CREATE INDEX webhook_probes_created ON paygw.webhook_probes (created_at);
CREATE INDEX webhook_probes_attempted ON paygw.webhook_probes (attempted_at)
    WHERE attempted_at IS NOT NULL;
CREATE INDEX webhook_probes_invoice ON paygw.webhook_probes (invoice_id)
    WHERE invoice_id IS NOT NULL;
REVOKE ALL ON TABLE paygw.webhook_probes FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('paygw.webhook_probes', '');
SELECT pg_catalog.pg_extension_config_dump('paygw.webhook_probes_id_seq', '');

-- Take a hint about a payment no tracked invoice of the account has (called
-- by paygw.webhook_record): payment_id or order_id is the id the status call
-- will ask about (both NULL: the gateway cannot be asked about what the
-- webhook names).
--   probe      a new probe is made (confirm: the caller checks it now and
--              counts as its first attempt);
--   duplicate  a probe of that id is pending already;
--   ignored    that id was probed before, probing is off (rate 0), or the
--              account had rate probes made or checked in the last minute.
-- Admissions of one account are serialised by an advisory lock, so the
-- count is exact under READ COMMITTED.
CREATE FUNCTION paygw.webhook_probe_admit(
    p_provider text, p_account text, p_payment_id text, p_order_id text,
    p_rate integer, p_confirm boolean,
    OUT action text, OUT detail text, OUT probe_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a handful of rows by key: never a plan cached while the table was small
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    p paygw.webhook_probes;
    recent bigint;
BEGIN
    IF p_payment_id IS NULL AND p_order_id IS NULL THEN
        action := 'ignored';
        detail := 'no tracked invoice has these ids, and the gateway has no lookup by the id named';
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('paygw.webhook_probes'), hashtext(p_account));
    SELECT * INTO p FROM paygw.webhook_probes w
     WHERE w.account = p_account
       AND (w.payment_id = p_payment_id OR w.order_id = p_order_id)
     LIMIT 1;
    IF FOUND THEN
        IF p.state = 'pending' THEN
            action := 'duplicate';
            detail := 'a check of this payment at the gateway is already scheduled';
        ELSE
            action := 'ignored';
            detail := format('this payment was checked at the gateway before (%s)', p.state);
        END IF;
        RETURN;
    END IF;
    IF p_rate IS NULL OR p_rate <= 0 THEN
        action := 'ignored';
        detail := 'no tracked invoice has these ids (paygw.webhook_probe_rate is 0)';
        RETURN;
    END IF;
    SELECT count(*) INTO recent FROM paygw.webhook_probes w
     WHERE w.account = p_account
       AND (w.created_at > now() - interval '1 minute' OR w.attempted_at > now() - interval '1 minute');
    IF recent >= p_rate THEN
        action := 'ignored';
        detail := format('no tracked invoice has these ids, and the account is at paygw.webhook_probe_rate (%s a minute)',
                         p_rate);
        RETURN;
    END IF;
    INSERT INTO paygw.webhook_probes (provider, account, payment_id, order_id,
                                      attempted_at, attempts)
    VALUES (p_provider, p_account, p_payment_id, p_order_id,
            CASE WHEN p_confirm THEN now() END, CASE WHEN p_confirm THEN 1 ELSE 0 END)
    RETURNING id INTO probe_id;
    action := 'probe';
END;
$$;
REVOKE ALL ON FUNCTION paygw.webhook_probe_admit(text, text, text, text, integer, boolean)
    FROM PUBLIC;

-- Claim up to max_probes due probes for the worker run `run`, at most `rate`
-- checks per account per minute (counting those started in the last minute,
-- with confirm too); rows leased by any other run are taken over.  The
-- caller commits and makes the calls with no transaction open.
CREATE FUNCTION paygw.claim_probes(max_probes integer, run bigint, rate integer)
RETURNS TABLE (id bigint, provider text, account text, payment_id text, order_id text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH recent AS (
        SELECT r.account, count(*) AS n
          FROM paygw.webhook_probes r
         WHERE r.attempted_at > now() - interval '1 minute'
         GROUP BY r.account
    ), due AS (
        SELECT p.id, p.next_attempt_at,
               row_number() OVER (PARTITION BY p.account ORDER BY p.next_attempt_at, p.id)
                 + COALESCE((SELECT recent.n FROM recent WHERE recent.account = p.account), 0) AS nth
          FROM paygw.webhook_probes p
         WHERE p.next_attempt_at <= now()
           AND p.lease_token IS DISTINCT FROM claim_probes.run
    ), mine AS (
        SELECT p.id
          FROM paygw.webhook_probes p
         WHERE p.id IN (SELECT due.id FROM due
                         WHERE due.nth <= claim_probes.rate
                         ORDER BY due.next_attempt_at
                         LIMIT claim_probes.max_probes)
           FOR UPDATE SKIP LOCKED
    )
    UPDATE paygw.webhook_probes p
       SET lease_token = claim_probes.run, attempted_at = now(), attempts = p.attempts + 1
      FROM mine
     WHERE p.id = mine.id
    RETURNING p.id, p.provider, p.account, p.payment_id, p.order_id;
END;
$$;
REVOKE ALL ON FUNCTION paygw.claim_probes(integer, bigint, integer) FROM PUBLIC;

-- Record the outcome of a probe's status call.  lease: the run that claimed
-- it (NULL: the caller made the probe in this transaction, confirm).  kind:
--   found      the gateway has the payment: it becomes a tracked invoice with
--              the reported status, checked now (one event and one
--              notification when that status is not pending, as for any
--              change), or, if the application tracked it meanwhile, that
--              invoice is linked and keeps its own schedule;
--   not_found  the gateway does not know it (PW010): not tracked;
--   error      anything else: tried again after a backoff of at least a
--              minute (so a probe is checked at most once in any rate
--              window), until give_up_after has passed since the webhook.
-- The webhook that asked gets the outcome (action tracked or unknown, or the
-- error in detail).  Returns outcome -- tracked, unknown, error, gave_up, or
-- lost (not pending any more, or leased by another run: nothing written)
-- -- and the invoice.
CREATE FUNCTION paygw.probe_finish(
    p_probe bigint, p_lease bigint, p_kind text,
    p_status paygw.payment_status, p_provider_status text,
    p_payment_id text, p_order_id text, p_amount numeric, p_currency text,
    p_response jsonb, p_error_code text, p_error text,
    p_backoff_initial float8, p_backoff_max float8, p_give_up_after float8,
    OUT outcome text, OUT invoice_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    p paygw.webhook_probes;
    inv paygw.invoices;
    note text;
BEGIN
    SELECT * INTO p FROM paygw.webhook_probes w WHERE w.id = p_probe FOR UPDATE;
    IF NOT FOUND OR p.state <> 'pending'
       OR (p_lease IS NOT NULL AND p.lease_token IS DISTINCT FROM p_lease) THEN
        outcome := 'lost';
        RETURN;
    END IF;

    IF p_kind = 'found' THEN
        -- under the id asked about (the one the gateway confirmed)
        INSERT INTO paygw.invoices (provider, account, payment_id, order_id, status,
                                    provider_status, amount, currency, response,
                                    checked_at, check_count, next_check_at)
        VALUES (p.provider, p.account, p.payment_id, p.order_id, p_status,
                p_provider_status, p_amount, p_currency, p_response, now(), 1,
                CASE WHEN p_status IN ('pending', 'authorized')
                     THEN now() + make_interval(secs => least(p_backoff_max, p_backoff_initial)
                                                        * (0.8 + 0.4 * random())) END)
        ON CONFLICT DO NOTHING
        RETURNING * INTO inv;
        IF inv.id IS NULL THEN
            SELECT * INTO inv FROM paygw.invoices i
             WHERE i.account = p.account
               AND (i.payment_id = p.payment_id OR i.order_id = p.order_id);
            note := format('tracked meanwhile as invoice %s', inv.id);
        ELSE
            -- the reply's other id too, unless it is not one the gateway
            -- could issue or another invoice has it
            IF (p.payment_id IS NULL AND NULLIF(p_payment_id, '') IS NOT NULL)
               OR (p.order_id IS NULL AND NULLIF(p_order_id, '') IS NOT NULL) THEN
                BEGIN
                    UPDATE paygw.invoices i
                       SET payment_id = COALESCE(i.payment_id, NULLIF(p_payment_id, '')),
                           order_id = COALESCE(i.order_id, NULLIF(p_order_id, ''))
                     WHERE i.id = inv.id
                    RETURNING * INTO inv;
                EXCEPTION WHEN unique_violation OR SQLSTATE 'PW004' THEN
                    NULL;
                END;
            END IF;
            IF p_status <> 'pending' THEN
                -- one event and one notification, as for any change
                INSERT INTO paygw.invoice_events (invoice_id, old_status, new_status,
                                                  provider_status, applied)
                VALUES (inv.id, 'pending', p_status, p_provider_status, true);
                PERFORM pg_notify('paygw_status', paygw.status_payload(
                    inv.id, left(inv.provider, 200), left(inv.account, 200),
                    left(inv.payment_id, 200), left(inv.order_id, 200),
                    'pending', p_status::text, left(p_provider_status, 200)));
            END IF;
        END IF;
        IF inv.id IS NULL THEN
            RAISE EXCEPTION 'probe % found no invoice to track it as', p.id;
        END IF;
        UPDATE paygw.webhook_probes w
           SET state = 'tracked', invoice_id = inv.id, finished_at = now(),
               next_attempt_at = NULL, lease_token = NULL, last_error = NULL, last_error_code = NULL
         WHERE w.id = p.id;
        UPDATE paygw.webhooks w SET action = 'tracked', invoice_id = inv.id, detail = note
         WHERE w.id = p.webhook_id AND w.action = 'probe';
        outcome := 'tracked';
        invoice_id := inv.id;
    ELSIF p_kind = 'not_found' OR p.created_at + make_interval(secs => p_give_up_after) <= now() THEN
        UPDATE paygw.webhook_probes w
           SET state = 'unknown', finished_at = now(), next_attempt_at = NULL, lease_token = NULL,
               last_error = p_error, last_error_code = p_error_code
         WHERE w.id = p.id;
        UPDATE paygw.webhooks w
           SET action = 'unknown',
               detail = CASE WHEN p_kind = 'not_found'
                             THEN format('the gateway does not know this payment: %s', p_error)
                             ELSE format('gave up after %s attempts: %s', p.attempts, p_error) END
         WHERE w.id = p.webhook_id AND w.action = 'probe';
        outcome := CASE WHEN p_kind = 'not_found' THEN 'unknown' ELSE 'gave_up' END;
    ELSE
        -- exponential backoff with +-20% jitter, never less than a minute
        UPDATE paygw.webhook_probes w
           SET next_attempt_at = now() + make_interval(secs => greatest(60,
                   least(p_backoff_max, p_backoff_initial * power(2, least(greatest(p.attempts - 1, 0), 40)))
                   * (0.8 + 0.4 * random()))),
               lease_token = NULL, last_error = p_error, last_error_code = p_error_code
         WHERE w.id = p.id;
        UPDATE paygw.webhooks w
           SET detail = format('the check failed and will be tried again: %s', p_error)
         WHERE w.id = p.webhook_id AND w.action = 'probe';
        outcome := 'error';
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION paygw.probe_finish(bigint, bigint, text, paygw.payment_status, text,
                                          text, text, numeric, text, jsonb, text, text,
                                          float8, float8, float8) FROM PUBLIC;

-- Record a parsed webhook and act on it (called by paygw_webhook() after the
-- gateway's signature, where it signs, was checked):
--   duplicate  the same request for this account within replay_window, or
--              the invoice is already due by then: nothing more to do;
--   scheduled  the invoice becomes due now -- or, when a webhook already
--              had it checked less than min_interval ago, when that interval
--              is over (so a burst of webhooks causes one status call per
--              interval); one in flight gets a second check right after the
--              current one (hinted_at);
--   probe, or duplicate or ignored
--              no tracked invoice of this account has those ids: a hint
--              about a payment paygw does not track, checked once at the
--              gateway (paygw.webhook_probe_admit has the rules; the caller
--              wakes the worker, or checks it itself with confirm):
--              probe_id is the new probe.  p_order_lookup: the gateway can
--              look payments up by order id (else only its own id is asked
--              about).
CREATE FUNCTION paygw.webhook_record(
    p_provider text, p_account text, p_verified boolean,
    p_payment_id text, p_order_id text, p_event text, p_request_sha256 text,
    p_min_interval interval, p_replay_window interval,
    p_order_lookup boolean, p_probe_rate integer, p_confirm boolean,
    OUT invoice_id bigint, OUT action text, OUT webhook_id bigint, OUT probe_id bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    inv paygw.invoices;
    due_at timestamptz;
    detail text;
BEGIN
    SELECT * INTO inv FROM paygw.invoices i
     WHERE i.account = p_account
       AND ((p_payment_id IS NOT NULL AND i.payment_id = p_payment_id)
            OR (p_order_id IS NOT NULL AND i.order_id = p_order_id))
     ORDER BY (i.payment_id = p_payment_id) DESC NULLS LAST
     LIMIT 1
       FOR NO KEY UPDATE;
    IF FOUND THEN
        invoice_id := inv.id;
    END IF;

    IF EXISTS (SELECT 1 FROM paygw.webhooks w
                WHERE w.account = p_account AND w.request_sha256 = p_request_sha256
                  AND w.received_at > now() - p_replay_window) THEN
        action := 'duplicate';
        detail := 'the same request was received before';
    ELSIF inv.id IS NULL THEN
        SELECT a.action, a.detail, a.probe_id INTO action, detail, probe_id
          FROM paygw.webhook_probe_admit(
                   p_provider, p_account, p_payment_id,
                   CASE WHEN p_payment_id IS NULL AND p_order_lookup THEN p_order_id END,
                   p_probe_rate, p_confirm) a;
    ELSIF inv.lease_token IS NOT NULL AND inv.lease_until > now() THEN
        -- a check is in flight: have it followed by another
        IF inv.hinted_at IS NULL THEN
            UPDATE paygw.invoices i SET hinted_at = now() WHERE i.id = inv.id;
            action := 'scheduled';
        ELSE
            action := 'duplicate';
            detail := 'a check is already scheduled';
        END IF;
    ELSE
        -- at once, unless a webhook already had it checked within
        -- min_interval: then not before that interval is over
        SELECT max(w.received_at) + p_min_interval INTO due_at
          FROM paygw.webhooks w
         WHERE w.invoice_id = inv.id AND w.action IN ('scheduled', 'confirmed')
           AND w.received_at > now() - p_min_interval;
        due_at := greatest(now(), COALESCE(due_at, now()));
        IF inv.next_check_at IS NOT NULL AND inv.next_check_at <= due_at THEN
            action := 'duplicate';
            detail := 'a check is already scheduled';
        ELSE
            UPDATE paygw.invoices i SET next_check_at = due_at WHERE i.id = inv.id;
            action := 'scheduled';
        END IF;
    END IF;

    INSERT INTO paygw.webhooks (provider, account, verified, invoice_id, payment_id, order_id,
                                event, action, detail, request_sha256)
    VALUES (p_provider, p_account, p_verified, inv.id, left(p_payment_id, 300),
            left(p_order_id, 300), left(p_event, 100), action, detail, p_request_sha256)
    RETURNING id INTO webhook_id;
    IF probe_id IS NOT NULL THEN
        UPDATE paygw.webhook_probes p SET webhook_id = webhook_record.webhook_id WHERE p.id = probe_id;
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION paygw.webhook_record(text, text, boolean, text, text, text, text,
                                            interval, interval, boolean, integer, boolean)
    FROM PUBLIC;

-- What the application's HTTP handler calls with the request it received.
CREATE FUNCTION @extschema@.paygw_webhook(provider text, body text,
                                          headers jsonb DEFAULT '{}',
                                          query text DEFAULT NULL,
                                          account text DEFAULT NULL,
                                          confirm boolean DEFAULT false)
RETURNS paygw.webhook_result
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_webhook';
COMMENT ON FUNCTION @extschema@.paygw_webhook(text, text, jsonb, text, text, boolean) IS
    'Take a gateway webhook: verify it where the gateway signs, make its invoice due (or check it now with confirm)';
REVOKE ALL ON FUNCTION @extschema@.paygw_webhook(text, text, jsonb, text, text, boolean) FROM PUBLIC;

-- What verifies an account's webhooks, checked per provider by the
-- credentials_validate trigger: for morune the shop's additional key (a
-- secret: sealed at rest like secret, bound to its row and column); for
-- alikassa AliKassa's notification public key in PEM (not a secret: stored
-- as given).  OkePay and Obmenka do not sign webhooks: a key is refused.
ALTER TABLE paygw.credentials ADD COLUMN webhook_key text;
COMMENT ON COLUMN paygw.credentials.webhook_key IS
    'morune: the additional key (sealed); alikassa: AliKassa''s notification public key (PEM); NULL otherwise';

-- The same columns as before, and whether a webhook key is set.
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
                THEN pg_catalog.split_part(c.secret, '$', 4) END AS key_id,
           c.webhook_key IS NOT NULL AS has_webhook_key
      FROM paygw.credentials c
      LEFT JOIN paygw.providers p ON p.name = c.provider;

-- Key rotation re-seals a sealed webhook_key too (the trigger seals the
-- keys of providers whose webhook_key is a secret, and leaves public keys
-- as they are).
CREATE OR REPLACE FUNCTION paygw.rotate_key()
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
    UPDATE paygw.credentials
       SET secret = secret, secret_password = secret_password, webhook_key = webhook_key;
    GET DIAGNOSTICS n = ROW_COUNT;
    SELECT count(*) INTO stale FROM paygw.credentials
     WHERE split_part(secret, '$', 4) IS DISTINCT FROM current_key
        OR (secret_password IS NOT NULL AND split_part(secret_password, '$', 4) IS DISTINCT FROM current_key)
        OR (webhook_key LIKE '$paygw$v1$%' AND split_part(webhook_key, '$', 4) IS DISTINCT FROM current_key);
    IF stale > 0 THEN
        RAISE EXCEPTION 'key rotation incomplete: % credentials are not under key %', stale, current_key
            USING ERRCODE = 'XX000';
    END IF;
    RETURN n;
END;
$$;

-- What an account's provider reads from a webhook request, its signature
-- checked where the gateway signs (PW040 when it does not verify, PW041
-- when the request is not that gateway's webhook).  For tests and for
-- operators checking an HTTP handler.  Administrators only.
CREATE FUNCTION paygw.webhook_parse(account text, body text,
                                    headers jsonb DEFAULT '{}'::jsonb,
                                    query text DEFAULT NULL,
                                    OUT verified boolean, OUT payment_id text,
                                    OUT order_id text, OUT event text)
RETURNS record
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_webhook_parse';
REVOKE ALL ON FUNCTION paygw.webhook_parse(text, text, jsonb, text) FROM PUBLIC;

-- Delete history older than older_than: invoice events (an audit trail: the
-- worker deletes them only with paygw.event_retention set) and webhooks with
-- the probes they asked for (the worker deletes them after
-- paygw.webhook_retention; a probe's payment may then be probed again).  At
-- most max_rows of each table (NULL: all), oldest first.  Returns how many
-- rows went.
CREATE FUNCTION paygw.purge_history(older_than interval, max_rows integer DEFAULT NULL,
                                    include_events boolean DEFAULT true,
                                    include_webhooks boolean DEFAULT true,
                                    OUT events bigint, OUT webhooks bigint, OUT probes bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must be an interval of zero or more'
            USING ERRCODE = '22023';
    END IF;
    IF max_rows IS NOT NULL AND max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be at least 1 (or NULL for all)'
            USING ERRCODE = '22023';
    END IF;
    events := 0;
    webhooks := 0;
    probes := 0;
    IF include_events THEN
        -- oldest first through the primary key: a batch stops after max_rows
        DELETE FROM paygw.invoice_events e
         WHERE e.id = ANY (ARRAY(SELECT o.id FROM paygw.invoice_events o
                                  WHERE o.created_at < now() - older_than
                                  ORDER BY o.id LIMIT max_rows));
        GET DIAGNOSTICS events = ROW_COUNT;
    END IF;
    IF include_webhooks THEN
        DELETE FROM paygw.webhooks w
         WHERE w.id = ANY (ARRAY(SELECT o.id FROM paygw.webhooks o
                                  WHERE o.received_at < now() - older_than
                                  ORDER BY o.received_at LIMIT max_rows));
        GET DIAGNOSTICS webhooks = ROW_COUNT;
        DELETE FROM paygw.webhook_probes p
         WHERE p.id = ANY (ARRAY(SELECT o.id FROM paygw.webhook_probes o
                                  WHERE o.created_at < now() - older_than
                                  ORDER BY o.created_at LIMIT max_rows));
        GET DIAGNOSTICS probes = ROW_COUNT;
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION paygw.purge_history(interval, integer, boolean, boolean) FROM PUBLIC;

-- Creating invoices: paygw_create_invoice() makes the gateway's signed create
-- call and tracks the new invoice.  What was asked for is kept, so that a
-- second call with the same order id compares with it (not with what later
-- status calls report: Obmenka reports UAH where the create took the method
-- code visamaster.uah).
ALTER TABLE paygw.invoices
    ADD COLUMN create_amount   numeric,
    ADD COLUMN create_currency text,
    ADD COLUMN pay_url         text,
    ADD COLUMN expires_at      timestamptz,
    ADD COLUMN create_response jsonb;
COMMENT ON COLUMN paygw.invoices.create_amount IS
    'The amount paygw_create_invoice() asked for (NULL for invoices only tracked)';
COMMENT ON COLUMN paygw.invoices.create_currency IS
    'The currency paygw_create_invoice() sent, as the gateway spells it (or the ISO code it implies when none was given)';
COMMENT ON COLUMN paygw.invoices.pay_url IS
    'Where to send the customer to pay, from the gateway''s create reply';
COMMENT ON COLUMN paygw.invoices.expires_at IS
    'When the invoice stops being payable, where the create call tells';
COMMENT ON COLUMN paygw.invoices.create_response IS
    'The gateway''s reply to the create call(s)';

CREATE TYPE paygw.created_invoice AS (
    invoice_id  bigint,
    provider    text,
    account     text,
    payment_id  text,
    order_id    text,
    status      paygw.payment_status,
    pay_url     text,
    expires_at  timestamptz,
    response    jsonb
);

CREATE FUNCTION @extschema@.paygw_create_invoice(provider text, amount numeric,
                                                 currency text, order_id text,
                                                 options jsonb DEFAULT '{}',
                                                 account text DEFAULT NULL)
RETURNS paygw.created_invoice
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_create_invoice';
COMMENT ON FUNCTION @extschema@.paygw_create_invoice(text, numeric, text, text, jsonb, text) IS
    'Create an invoice at a gateway (one signed call; idempotent by order id) and track it';
REVOKE ALL ON FUNCTION @extschema@.paygw_create_invoice(text, numeric, text, text, jsonb, text) FROM PUBLIC;

-- Track a batch of payments in one call, as paygw_track(provider, id,
-- order_id, account) would one by one: element k of ids and of order_ids
-- are one payment's ids (ids may be NULL when order_ids is given).  Returns
-- a row per element, in order: its ids as given and its invoice id.  One
-- INSERT of the whole batch, one lookup by key, and one UPDATE when ids are
-- filled in, whatever the batch's size.
CREATE FUNCTION @extschema@.paygw_track(provider text, ids text[],
                                        order_ids text[] DEFAULT NULL,
                                        account text DEFAULT NULL)
RETURNS TABLE (payment_id text, order_id text, invoice_id bigint)
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'paygw_track_bulk';
COMMENT ON FUNCTION @extschema@.paygw_track(text, text[], text[], text) IS
    'Track a batch of payments in paygw.invoices; a row per element, in order, with its invoice id';
REVOKE ALL ON FUNCTION @extschema@.paygw_track(text, text[], text[], text) FROM PUBLIC;
