#!/usr/bin/env bash
# test/checks/30-refresh-concurrent.sh -- two sessions running
# paygw_refresh() at the same time never check the same invoice: together
# they check each due invoice exactly once (counted at the gateway), and
# each ends with exactly one event.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

db=paygw_check_refresh
emu="http://127.0.0.1:$PAYGW_EMU_PORT"
new_db "$db"
n=300
curl -sf -X POST -o /dev/null "$emu/_control/reset"
curl -sf -X POST -o /dev/null -d '{"delay_ms": 100}' "$emu/_control/config"
q -d "$db" -c "SELECT count(paygw_track('okepay', (5000000 + i)::text)) FROM generate_series(1, $n) i" >/dev/null

a=$PAYGW_WORKDIR/refresh-a.out
b=$PAYGW_WORKDIR/refresh-b.out
q -d "$db" -c "SET paygw.max_concurrency = 32" -c "SET paygw.max_per_account = 32" \
    -c "SELECT paygw_refresh(200)" > "$a" &
pa=$!
q -d "$db" -c "SET paygw.max_concurrency = 32" -c "SET paygw.max_per_account = 32" \
    -c "SELECT paygw_refresh(200)" > "$b" &
pb=$!
wait "$pa" || check_fail "first paygw_refresh failed: $(cat "$a")"
wait "$pb" || check_fail "second paygw_refresh failed: $(cat "$b")"
ca=$(tail -1 "$a"); cb=$(tail -1 "$b")
echo "concurrent paygw_refresh(200) calls checked $ca and $cb invoices"
(( ca + cb == n )) || check_fail "together they checked $((ca + cb)), expected $n"
(( ca > 0 && cb > 0 )) || check_fail "one session did all the work: the test did not overlap"

stats=$(curl -sf "$emu/_control/stats")
twice=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(sum(1 for k,v in d["by_payment"].items() if k.startswith("okepay:500") and v != 1))' "$stats")
seen=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(sum(1 for k in d["by_payment"] if k.startswith("okepay:500")))' "$stats")
[ "$seen" = "$n" ] || check_fail "gateway saw $seen distinct invoices, expected $n"
[ "$twice" = 0 ] || check_fail "$twice invoices were requested more than once"
[ "$(q -d "$db" -c "SELECT count(*) FROM paygw.invoices WHERE status = 'paid'")" = "$n" ] \
    || check_fail "not every invoice is paid"
[ "$(q -d "$db" -c "SELECT count(*) FROM paygw.invoice_events")" = "$n" ] \
    || check_fail "expected exactly $n events"
curl -sf -X POST -o /dev/null -d '{"delay_ms": 0}' "$emu/_control/config"
check_ok "two concurrent paygw_refresh calls never check the same invoice"
q -d postgres -c "DROP DATABASE $db"
