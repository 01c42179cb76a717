-- test/bench/apply-noop.sql -- for measurements only, never in a real database.
--
--   BENCH_SQL=test/bench/apply-noop.sql bash test/bench/reconcile.sh 8000 50 64
--
-- Replaces paygw.apply_checks by one that writes nothing and reports every
-- check as unchanged: the worker still claims, signs, sends, reads, parses,
-- locks and counts, so the difference from a run of the real function is what
-- applying the outcomes (the row updates, events, notifications and learnt
-- ids) costs the worker.  The rows keep their leases: each invoice is checked
-- once, as in the real run.
CREATE OR REPLACE FUNCTION paygw.apply_checks(
    ids bigint[], leases bigint[],
    new_statuses paygw.payment_status[], provider_statuses text[],
    payment_ids text[], order_ids text[], amounts numeric[], currencies text[],
    responses jsonb[], error_codes text[], errors text[], learns boolean[],
    backoff_initial float8, backoff_max float8, give_up_after float8)
RETURNS TABLE (invoice_id bigint, outcome text, old_status paygw.payment_status,
               new_status paygw.payment_status, provider_status text, learnt boolean)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.id, 'unchanged', u.status, u.status, u.provider_status, false
      FROM unnest(ids, new_statuses, provider_statuses) AS u(id, status, provider_status)
     ORDER BY u.id
$$;
