#!/usr/bin/env bash
# test/bench/apply.sh -- what applying outcomes costs in SQL (not a test).
#
#   bash test/bench/apply.sh [BATCH] [BATCHES] [ROUNDS]
#   env: VARIANT (a file of SQL: a change to compare with the build as it is),
#        VARIANT_UNDO (a file of SQL that takes the change back; not needed
#        when VARIANT only replaces paygw.apply_checks)
#
# Starts its own cluster (paygw preloaded; the worker runs in database
# "postgres", the benchmark in database "bench", so the worker never sees
# its invoices) with 200,000 tracked invoices, and times, in one backend,
# what the worker does to apply a batch of checks: lock BATCH rows (default
# 64, the worker's batch at paygw.max_concurrency = 64) FOR NO KEY UPDATE
# and run paygw.apply_checks over them, every one turning paid with a
# gateway reply stored; BATCHES batches (default 40) on fresh rows.  Twice
# per round: with the reply naming an order id the rows lack (learn=true,
# the first check of a payment tracked by its payment id) and without.
# Prints microseconds per invoice (wall clock of the loop; the backend is
# the only thing running).  With VARIANT, each of ROUNDS rounds (default 3)
# times the build as it is and then the variant, alternately, so the two
# are compared under the same conditions.  PAYGW_BENCH_NO_BUILD=1 skips
# `make install`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

BATCH=${1:-64}
BATCHES=${2:-40}
ROUNDS=${3:-3}

[[ ${PAYGW_BENCH_NO_BUILD:-0} = 1 ]] || paygw_build_install >/dev/null
paygw_start_cluster >/dev/null

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
export PGDATABASE=bench
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION paygw;
INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
VALUES ('bench', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx');
INSERT INTO paygw.invoices (provider, account, payment_id, next_check_at)
SELECT 'okepay', 'bench', (1000000 + i)::text, now() + interval '1 day'
  FROM generate_series(1, 200000) i;
VACUUM ANALYZE paygw.invoices;
SQL
# (in the work directory, which lib.sh's exit trap removes with the cluster)
original=$PAYGW_WORKDIR/apply_checks.sql
{ psql -X -q -At -c "SELECT pg_get_functiondef('paygw.apply_checks'::regproc)"; echo ';'; } > "$original"

# one timed run: prints microseconds per invoice
timed() {
    psql -X -q -v ON_ERROR_STOP=1 -At -v learn="$1" -v n="$BATCH" -v batches="$BATCHES" 2>&1 <<'SQL' |
SELECT set_config('bench.learn', :'learn', false), set_config('bench.n', :'n', false),
       set_config('bench.batches', :'batches', false) \gset
DO $$
DECLARE
    n int := current_setting('bench.n')::int;
    learn boolean := current_setting('bench.learn')::boolean;
    reply jsonb := '{"status": "success", "data": [{"id": 1234567, "status": "success",
                     "amount": "100.00", "currency": "RUB", "order_id": "x",
                     "hash": "0123456789abcdef0123456789abcdef"}]}';
    first bigint;
    ids bigint[];
    t0 timestamptz;
BEGIN
    first := COALESCE((SELECT max(id) FROM paygw.invoices WHERE status <> 'pending'), 0);
    t0 := clock_timestamp();
    FOR b IN 0 .. current_setting('bench.batches')::int - 1 LOOP
        ids := ARRAY(SELECT g FROM generate_series(first + b * n + 1, first + (b + 1) * n) g);
        PERFORM 1 FROM paygw.invoices WHERE id = ANY (ids) FOR NO KEY UPDATE;
        PERFORM * FROM paygw.apply_checks(
            ids, array_fill(NULL::bigint, ARRAY[n]),
            array_fill('paid'::paygw.payment_status, ARRAY[n]),
            array_fill('success'::text, ARRAY[n]), array_fill(NULL::text, ARRAY[n]),
            ARRAY(SELECT 'order-' || i FROM unnest(ids) i),
            array_fill(100.00::numeric, ARRAY[n]), array_fill('RUB'::text, ARRAY[n]),
            array_fill(reply, ARRAY[n]), array_fill(NULL::text, ARRAY[n]),
            array_fill(NULL::text, ARRAY[n]), array_fill(learn, ARRAY[n]),
            1.0, 3600.0, 864000.0);
    END LOOP;
    RAISE NOTICE 'us/invoice %',
        round(extract(epoch FROM clock_timestamp() - t0) * 1e6
              / (current_setting('bench.batches')::int * n), 1);
END $$;
SQL
    sed -n 's/.*us\/invoice //p'
}

printf 'machine: %s, %s cores; PostgreSQL %s; %d batches of %d invoices per figure\n' \
    "$(uname -m)" "$(nproc)" "$(psql -X -At -c 'SHOW server_version')" "$BATCHES" "$BATCH"
for ((r = 1; r <= ROUNDS; r++)); do
    for which in build ${VARIANT:+variant}; do
        if [[ $which = build ]]; then
            psql -X -q -v ON_ERROR_STOP=1 -f "$original" >/dev/null
            if [[ -n ${VARIANT_UNDO:-} && $r -gt 1 ]]; then
                psql -X -q -v ON_ERROR_STOP=1 -f "$VARIANT_UNDO" >/dev/null
            fi
        else
            psql -X -q -v ON_ERROR_STOP=1 -f "$VARIANT" >/dev/null
        fi
        printf 'round %d  %-7s  learn: %6s us/invoice   no learn: %6s us/invoice\n' \
            "$r" "$which" "$(timed true)" "$(timed false)"
    done
done
