#!/usr/bin/env bash
# test/bench/track.sh -- paygw_track benchmark (not a test).
#
#   bash test/bench/track.sh [N] [REPS]
#
# Starts its own cluster (paygw preloaded; the worker runs in database
# "postgres", the benchmark in database "bench" so the worker never sees its
# invoices) and, REPS times (default 3), each on an emptied paygw.invoices:
#
#   copy      INSERT of N rows into an unindexed copy of paygw.invoices
#             without triggers (the cost of writing the rows at all)
#   insert    INSERT INTO paygw.invoices (provider, account, payment_id) of
#             N rows: the indexes and both triggers, what an application
#             inserting directly pays
#   track     SELECT count(paygw_track('okepay', id)) over N new payments,
#             in one statement
#   again     the same statement again: N payments already tracked (the
#             idempotent path)
#   bulk      SELECT count(*) FROM paygw_track('okepay', ARRAY(...)): the
#             same N new payments tracked by the set-based form, in one
#             statement (on an emptied table)
#   bulk again  the same statement again: N payments already tracked
#
# N defaults to 100000.  For each it prints invoices per second (wall clock
# of the statement, seen from a persistent session) and per CPU second of
# the backend, and the ratios of track, again, bulk and bulk again to insert
# and copy.  The
# last line gives the medians over the repetitions.  PAYGW_BENCH_NO_BUILD=1
# skips `make install`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

N=${1:-100000}
REPS=${2:-3}

conf=$(mktemp)
cat "$here/../postgresql.conf" > "$conf"
cat >> "$conf" <<CONF
shared_buffers = '256MB'
max_wal_size = '4GB'
checkpoint_timeout = '30min'
CONF
export PAYGW_TEST_CONF=$conf
[[ ${PAYGW_BENCH_NO_BUILD:-0} = 1 ]] || paygw_build_install >/dev/null
paygw_start_cluster >/dev/null
rm -f "$conf"

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
export PGDATABASE=bench
sqlv() { psql -X -q -v ON_ERROR_STOP=1 -At -c "$1"; }
sqlv "CREATE EXTENSION paygw"
sqlv "INSERT INTO paygw.credentials (name, provider, merchant_id, secret)
      VALUES ('bench', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx')"
sqlv "CREATE TABLE public.invoices_copy (LIKE paygw.invoices INCLUDING DEFAULTS INCLUDING IDENTITY)"

# one persistent session: the statements run in the same backend, whose CPU
# time is read from /proc; each statement is followed by a marker line
coproc SESSION { psql -X -q -v ON_ERROR_STOP=1 -At 2>&1; }
run_sql() {
    local line out=""
    printf '%s;\nSELECT %s;\n' "$1" "'--done--'" >&"${SESSION[1]}"
    while IFS= read -r line <&"${SESSION[0]}"; do
        [[ $line == --done-- ]] && { [[ -n $out ]] && printf '%s\n' "$out"; return 0; }
        out+=$line
    done
    echo "session ended: $out" >&2
    exit 1
}
backend=$(run_sql "SELECT pg_backend_pid()")
hz=$(getconf CLK_TCK)
cpu_ticks() { local f; f=($(cut -d' ' -f14,15 "/proc/$backend/stat")); echo $(( f[0] + f[1] )); }

# timed NAME SQL: run SQL, set rate_NAME (per wall second) and cpu_NAME (per
# CPU second of the backend)
declare -A rate cpu
timed() {
    local name=$1 t0 t1 c0 c1
    c0=$(cpu_ticks); t0=$(date +%s%N)
    run_sql "$2" >/dev/null
    t1=$(date +%s%N); c1=$(cpu_ticks)
    rate[$name]=$(python3 -c "print(f'{$N / (($t1 - $t0) / 1e9):.0f}')")
    cpu[$name]=$(python3 -c "print(f'{$N / max(($c1 - $c0) / $hz, 1 / $hz):.0f}')")
}
empty() { run_sql "TRUNCATE paygw.invoices, paygw.invoice_events, paygw.webhooks, paygw.webhook_probes, public.invoices_copy; CHECKPOINT" >/dev/null; }

printf 'machine: %s, %s cores, %s; PostgreSQL %s; load %s\n' "$(uname -m)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
    "$(sqlv 'SHOW server_version')" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%d invoices per statement, %d repetitions; rates in invoices/s (wall, and per backend CPU second)\n\n' \
    "$N" "$REPS"

ids="generate_series(1, $N) i"
declare -a all_copy all_insert all_track all_again all_bulk all_bulk_again
for (( r = 1; r <= REPS; r++ )); do
    empty
    timed copy "INSERT INTO public.invoices_copy (provider, account, payment_id)
                SELECT 'okepay', 'bench', (1000000 + i)::text FROM $ids"
    empty
    timed insert "INSERT INTO paygw.invoices (provider, account, payment_id)
                  SELECT 'okepay', 'bench', (1000000 + i)::text FROM $ids"
    empty
    timed track "SELECT count(paygw_track('okepay', (1000000 + i)::text)) FROM $ids"
    timed again "SELECT count(paygw_track('okepay', (1000000 + i)::text)) FROM $ids"
    empty
    timed bulk "SELECT count(*) FROM paygw_track('okepay', ARRAY(SELECT (1000000 + i)::text FROM $ids))"
    timed bulk_again "SELECT count(*) FROM paygw_track('okepay', ARRAY(SELECT (1000000 + i)::text FROM $ids))"
    printf 'rep %d: copy %7s (%7s cpu)  insert %7s (%7s cpu)  track %7s (%7s cpu)  again %7s (%7s cpu)\n' \
        "$r" "${rate[copy]}" "${cpu[copy]}" "${rate[insert]}" "${cpu[insert]}" \
        "${rate[track]}" "${cpu[track]}" "${rate[again]}" "${cpu[again]}"
    printf '       bulk %7s (%7s cpu)  bulk again %7s (%7s cpu)\n' \
        "${rate[bulk]}" "${cpu[bulk]}" "${rate[bulk_again]}" "${cpu[bulk_again]}"
    all_copy+=("${rate[copy]}"); all_insert+=("${rate[insert]}")
    all_track+=("${rate[track]}"); all_again+=("${rate[again]}")
    all_bulk+=("${rate[bulk]}"); all_bulk_again+=("${rate[bulk_again]}")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
m_copy=$(median "${all_copy[@]}"); m_insert=$(median "${all_insert[@]}")
m_track=$(median "${all_track[@]}"); m_again=$(median "${all_again[@]}")
m_bulk=$(median "${all_bulk[@]}"); m_bulk_again=$(median "${all_bulk_again[@]}")
printf '\nmedian (wall): copy %s/s  insert %s/s  track %s/s  again %s/s  bulk %s/s  bulk again %s/s\n' \
    "$m_copy" "$m_insert" "$m_track" "$m_again" "$m_bulk" "$m_bulk_again"
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf 'ratio: track/insert %s  track/copy %s  again/insert %s  again/copy %s\n' \
    "$(ratio "$m_track" "$m_insert")" "$(ratio "$m_track" "$m_copy")" \
    "$(ratio "$m_again" "$m_insert")" "$(ratio "$m_again" "$m_copy")"
printf 'ratio: bulk/insert %s  bulk/copy %s  bulk again/insert %s  bulk again/copy %s\n' \
    "$(ratio "$m_bulk" "$m_insert")" "$(ratio "$m_bulk" "$m_copy")" \
    "$(ratio "$m_bulk_again" "$m_insert")" "$(ratio "$m_bulk_again" "$m_copy")"
