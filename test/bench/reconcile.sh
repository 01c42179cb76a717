#!/usr/bin/env bash
# test/bench/reconcile.sh -- reconciliation benchmark (not a test).
#
#   bash test/bench/reconcile.sh [N] [DELAY_MS] [C]
#   env: BASELINE_N (default 200), MEMORY_N (default 0: skip; e.g. 100000),
#        IDLE_N (default 1000000; 0: skip),
#        PERF_OUT (a file: `perf record -g` of the worker during the first C run),
#        BENCH_SQL (a file of SQL run once paygw is created: a variant of an
#        internal function or a setting to compare with the build as it is,
#        e.g. test/bench/apply-noop.sql)
#
# Starts its own cluster (paygw preloaded, worker in database "postgres")
# and emulator, tracks N invoices (N default 4000) with one paygw_track
# statement against a gateway that answers after DELAY_MS (default 50) and
# lets the worker check them with concurrency C (default 64); the clock
# starts when the tracking statement has committed and stops when the last
# of them has been applied.  Prints invoices per second, the ratio to the
# ideal C / delay, the same run with concurrency 1 as a baseline
# (BASELINE_N invoices: at 1/delay per second a full N would take minutes),
# the worker's CPU per invoice and peak private memory (RssAnon), and server
# CPU seconds per thousand invoices (all PostgreSQL processes, including
# exited ones, from the postmaster's cumulative child times).  Then, with
# IDLE_N more invoices tracked but not due for a day, the same N run again:
# its rate as a ratio to the first, and the claim query's plan.  With
# MEMORY_N it then keeps going to MEMORY_N invoices in total and compares the
# worker's memory at N and at MEMORY_N.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

N=${1:-4000}
DELAY=${2:-50}
C=${3:-64}
BASELINE_N=${BASELINE_N:-200}
MEMORY_N=${MEMORY_N:-0}
IDLE_N=${IDLE_N:-1000000}

conf=$(mktemp)
cat "$here/../postgresql.conf" > "$conf"
cat >> "$conf" <<CONF
paygw.naptime = '100ms'
paygw.timeout = '10s'
paygw.batch_size = $((2 * C))
shared_buffers = '256MB'
synchronous_commit = off
CONF
export PAYGW_TEST_CONF=$conf
[[ ${PAYGW_BENCH_NO_BUILD:-0} = 1 ]] || paygw_build_install >/dev/null
paygw_start_cluster >/dev/null
paygw_start_emulator >/dev/null
rm -f "$conf"

emu="http://127.0.0.1:$PAYGW_EMU_PORT"
sqlv() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres -c "$1"; }
sqlv "CREATE EXTENSION paygw"
if [[ -n ${BENCH_SQL:-} ]]; then
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -f "$BENCH_SQL" >/dev/null
fi
sqlv "INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
      VALUES ('bench', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', '$emu/okepay')"
curl -sf -X POST -o /dev/null -d "{\"delay_ms\": $DELAY}" "$emu/_control/config"

hz=$(getconf CLK_TCK)
pm_pid=$(head -1 "$PAYGW_WORKDIR/data/postmaster.pid")
# CPU ticks of the postmaster, its live children, and its exited children
server_ticks() {
    local total=0 p f
    f=($(cut -d' ' -f14-17 "/proc/$pm_pid/stat"))
    total=$(( f[0] + f[1] + f[2] + f[3] ))
    for p in $(pgrep -P "$pm_pid"); do
        f=($(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null || echo "0 0"))
        total=$(( total + f[0] + f[1] ))
    done
    echo "$total"
}
worker_pid() { sqlv "SELECT pid FROM paygw.worker_status WHERE running"; }

# one persistent session for polling, so the measurement does not fork a
# backend per sample
coproc POLL { psql -X -q -At -d postgres; }
poll() { echo "$1;" >&"${POLL[1]}"; read -r REPLY <&"${POLL[0]}"; echo "$REPLY"; }
emu_pid=$(pgrep -f "emulator.py --port 0 --port-file $PAYGW_WORKDIR" | head -1)
proc_ticks() { local f; f=($(cut -d' ' -f14,15 "/proc/$1/stat" 2>/dev/null || echo "0 0")); echo $(( f[0] + f[1] )); }
rss_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

set_concurrency() {
    sqlv "ALTER SYSTEM SET paygw.max_concurrency = $1"
    sqlv "ALTER SYSTEM SET paygw.max_per_account = $1"
    sqlv "ALTER SYSTEM SET paygw.batch_size = $(( $1 * 2 ))"
    sqlv "SELECT pg_reload_conf()" >/dev/null
    sleep 1
}

next_id=1000000
# run COUNT: make COUNT invoices due at once; sets rate, peak_kb, cpu_per_k
run() {
    local count=$1 pid base t0 t1 c0 c1 w0 w1 e0 e1 done_now peak=0 kb
    pid=$(worker_pid)
    base=$(poll "SELECT invoices_checked FROM paygw.worker_status")
    passes0=$(poll "SELECT passes FROM paygw.worker_status")
    c0=$(server_ticks); w0=$(proc_ticks "$pid"); e0=$(proc_ticks "$emu_pid")
    # the invoices are due at once when this commits; the clock starts then
    sqlv "SELECT count(paygw_track('okepay', (${next_id} + i)::text)) FROM generate_series(1, $count) i" >/dev/null
    t0=$(date +%s%N)
    local fl_sum=0 fl_n=0 fl
    next_id=$(( next_id + count ))
    while :; do
        IFS='|' read -r done_now fl <<< "$(poll "SELECT invoices_checked, in_flight FROM paygw.worker_status")"
        fl_sum=$(( fl_sum + fl )); fl_n=$(( fl_n + 1 ))
        kb=$(rss_kb "$pid"); (( kb > peak )) && peak=$kb
        (( done_now - base >= count )) && break
        sleep 0.02
    done
    t1=$(date +%s%N)
    c1=$(server_ticks); w1=$(proc_ticks "$pid"); e1=$(proc_ticks "$emu_pid")
    passes=$(( $(poll "SELECT passes FROM paygw.worker_status") - passes0 ))
    worker_cpu=$(python3 -c "print(f'{($w1 - $w0) / $hz:.2f}')")
    worker_ms_per=$(python3 -c "print(f'{($w1 - $w0) / $hz / $count * 1000:.3f}')")
    emu_cpu=$(python3 -c "print(f'{($e1 - $e0) / $hz:.2f}')")
    wall=$(python3 -c "print(f'{($t1 - $t0) / 1e9:.2f}')")
    avg_in_flight=$(( fl_sum / (fl_n > 0 ? fl_n : 1) ))
    rate=$(python3 -c "print(f'{$count / (($t1 - $t0) / 1e9):.1f}')")
    cpu_per_k=$(python3 -c "print(f'{($c1 - $c0) / $hz / $count * 1000:.3f}')")
    peak_kb=$peak
}

printf 'machine: %s, %s cores, %s; PostgreSQL %s\n' "$(uname -m)" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
    "$(sqlv 'SHOW server_version')"
printf 'gateway delay %d ms, %d invoices due at once\n\n' "$DELAY" "$N"

set_concurrency 1
run "$BASELINE_N"
base_rate=$rate
base_ideal=$(python3 -c "print(f'{1000 / $DELAY:.1f}')")
printf 'baseline  C=1:  %6d invoices  %8s/s  ideal %7s/s  ratio %.2f  worker RssAnon peak %d kB  CPU %s s/1000\n' \
    "$BASELINE_N" "$base_rate" "$base_ideal" "$(python3 -c "print($base_rate / $base_ideal)")" "$peak_kb" "$cpu_per_k"

set_concurrency "$C"
if [[ -n ${PERF_OUT:-} ]]; then
    perf record -q -g -F 999 -o "$PERF_OUT" -p "$(worker_pid)" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
fi
run "$N"
if [[ -n ${PERF_OUT:-} ]]; then
    kill -INT "$perf_pid"; wait "$perf_pid" || true
fi
ideal=$(python3 -c "print(f'{$C * 1000 / $DELAY:.1f}')")
ratio=$(python3 -c "print(f'{$rate / $ideal:.2f}')")
mem_n=$(rss_kb "$(worker_pid)")
ctx_n=$(sqlv "SELECT memory_bytes FROM paygw.worker_status")
printf 'run       C=%d: %6d invoices  %8s/s  ideal %7s/s  ratio %s  worker RssAnon peak %d kB  CPU %s s/1000\n' \
    "$C" "$N" "$rate" "$ideal" "$ratio" "$peak_kb" "$cpu_per_k"
printf 'speed-up over C=1: %.1fx   (wall %s s; average requests in flight %d; CPU: worker %s s, emulator %s s)\n' \
    "$(python3 -c "print($rate / $base_rate)")" "$wall" "$avg_in_flight" "$worker_cpu" "$emu_cpu"
printf 'worker CPU per reconciled invoice: %s ms  (%d claiming passes, %.1f invoices each)\n' \
    "$worker_ms_per" "$passes" "$(python3 -c "print($N / max(1, $passes))")"
first_rate=$rate

if (( IDLE_N > 0 )); then
    # IDLE_N more tracked invoices, none due for a day
    sqlv "INSERT INTO paygw.invoices (provider, account, payment_id, next_check_at)
          SELECT 'okepay', 'bench', (900000000 + i)::text, now() + interval '1 day'
            FROM generate_series(1, $IDLE_N) i"
    sqlv "VACUUM ANALYZE paygw.invoices"
    run "$N"
    printf 'run       C=%d: %6d invoices with %d more tracked and not due: %8s/s  ratio to the first run %.2f  worker CPU %s ms/invoice\n' \
        "$C" "$N" "$IDLE_N" "$rate" "$(python3 -c "print($rate / $first_rate)")" "$worker_ms_per"
    printf 'claim plan (the query inside paygw.claim_due):\n'
    psql -X -q -At -d postgres -c "EXPLAIN (COSTS OFF)
        SELECT i.id FROM paygw.invoices i
         WHERE i.next_check_at <= now() AND i.status IN ('pending', 'authorized')
           AND (i.lease_until IS NULL OR i.lease_until < now() OR i.lease_token IS DISTINCT FROM 1)
         ORDER BY i.next_check_at LIMIT $((2 * C)) FOR NO KEY UPDATE SKIP LOCKED" | sed 's/^/    /'
fi

if (( MEMORY_N > N )); then
    run $(( MEMORY_N - N ))
    mem_m=$(rss_kb "$(worker_pid)")
    ctx_m=$(sqlv "SELECT memory_bytes FROM paygw.worker_status")
    printf 'memory: worker RssAnon %d kB after %d refreshes, %d kB after %d (peak %d kB; %s/s)\n' \
        "$mem_n" "$N" "$mem_m" "$MEMORY_N" "$peak_kb" "$rate"
    printf 'memory: worker memory contexts %d bytes after %d refreshes, %d bytes after %d\n' \
        "$ctx_n" "$N" "$ctx_m" "$MEMORY_N"
fi
printf 'worker: %s\n' "$(sqlv "SELECT format('checked %s, changed %s, errors %s', invoices_checked, changes_applied, errors) FROM paygw.worker_status")"
