#!/usr/bin/env bash
# test/checks/50-tls.sh -- transport security of the gateway client.
# Makes a throw-away test CA and server certificates (test/tls/make-certs.py,
# in $PAYGW_WORKDIR/tls), starts three emulators over TLS (good, expired and
# wrong-name certificate) and checks, in database paygw_tls:
#   1. https with paygw.ca_file = the test CA: the call succeeds (paid);
#   2. without paygw.ca_file, with the wrong CA, a missing CA file (without
#      showing its path) or one without a certificate: PW022, also in a
#      session that has just made a trusted call to the same gateway (no
#      kept-alive connection is reused across trust settings), and after the
#      file's content changed in place; a bundle of several CAs works;
#   3. an expired certificate: PW022 and a detail that names the expiry;
#   4. a certificate for another name: PW022;
#   5. paygw.ca_file is superuser-only: a plain role can neither SET nor
#      read it (42501);
#   6. http to a non-loopback host is refused at INSERT (PW006);
#   7. redirects (301/302/307/308 with a Location) are not followed: PW033
#      and exactly one request reaches the gateway;
#   8. paygw.max_response_size applies over TLS (chunked reply): PW031.
# Every wait has a deadline; the emulators it starts are stopped on exit.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

db=paygw_tls
role=paygw_tls_user
tls=$PAYGW_WORKDIR/tls
emulator=$PAYGW_TEST_DIR/emulator/emulator.py
emu_pids=()
port_good="" port_expired="" port_wrongname=""   # set by start_emu

stop_emulators() {
    local pid i
    for pid in "${emu_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${emu_pids[@]}"; do
        for (( i = 0; i < 50; i++ )); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    emu_pids=()
}
trap stop_emulators EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    local f
    for f in "$tls"/*.out; do
        [[ -s $f ]] && { echo "----- $(basename "$f") -----"; tail -n 20 "$f"; } >&2
    done
    check_fail "$@"
}

# start_emu NAME STEM: an emulator serving $tls/STEM.crt on a free port;
# sets port_NAME.
start_emu() {
    local name=$1 stem=$2 pfile=$tls/$1.port pid port
    rm -f "$pfile"
    /usr/bin/python3 "$emulator" --port 0 --port-file "$pfile" --log "$tls/$name.log" \
        --tls-cert "$tls/$stem.crt" --tls-key "$tls/$stem.key" >"$tls/$name.out" 2>&1 &
    pid=$!
    emu_pids+=("$pid")
    wait_for 10 '[ -s "$pfile" ] || ! kill -0 "$pid" 2>/dev/null' || fail "emulator $name: no port file after 10 s"
    kill -0 "$pid" 2>/dev/null || fail "emulator $name exited at start"
    port=$(tr -d '[:space:]' <"$pfile")
    [[ $port =~ ^[0-9]+$ ]] || fail "emulator $name: bad port file: $port"
    printf -v "port_$name" '%s' "$port"
}

mkdir -p "$tls"
/usr/bin/python3 "$PAYGW_TEST_DIR/tls/make-certs.py" "$tls" || check_fail "make-certs.py failed"
ca=$tls/ca.crt
t0=$(date +%s%N)
start_emu good server
start_emu expired expired
start_emu wrongname wrongname
# health: each emulator is up, and its certificate is what the case needs
# (checked with curl, independently of paygw)
health=/_control/health
wait_for 10 curl -sf --max-time 2 -o /dev/null --cacert "$ca" "https://127.0.0.1:$port_good$health" \
    || fail "TLS emulator (good certificate) not healthy"
wait_for 10 curl -sf --max-time 2 -o /dev/null --cacert "$ca" \
    --resolve "gateway.invalid:$port_wrongname:127.0.0.1" "https://gateway.invalid:$port_wrongname$health" \
    || fail "TLS emulator (wrong-name certificate) not healthy"
wait_for 10 curl -sf --max-time 2 -o /dev/null -k "https://127.0.0.1:$port_expired$health" \
    || fail "TLS emulator (expired certificate) not healthy"
curl_err=$(curl -sS --max-time 2 -o /dev/null --cacert "$ca" "https://127.0.0.1:$port_expired$health" 2>&1) \
    && fail "curl accepted the expired certificate"
[[ $curl_err == *expired* ]] || fail "curl refused the expired certificate for another reason: $curl_err"
curl_err=$(curl -sS --max-time 2 -o /dev/null --cacert "$ca" "https://127.0.0.1:$port_wrongname$health" 2>&1) \
    && fail "curl accepted the wrong-name certificate for 127.0.0.1"
echo "TLS emulators up in $(( ($(date +%s%N) - t0) / 1000000 )) ms: good :$port_good," \
     "expired :$port_expired, wrong name :$port_wrongname"

# --- the database ------------------------------------------------------------
new_db "$db"
q -d postgres -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS $role" -c "CREATE ROLE $role LOGIN"
add_account() {   # add_account NAME BASE_URL
    q -d "$db" -v name="$1" -v url="$2" <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, base_url)
VALUES (:'name', 'okepay', 'demo-shop', 'okepay-test-secret-7Qx', :'url');
SQL
}
good=https://127.0.0.1:$port_good
add_account tls-good "$good/okepay"
add_account tls-expired "https://127.0.0.1:$port_expired/okepay"
add_account tls-wrongname "https://127.0.0.1:$port_wrongname/okepay"
add_account tls-oversize "$good/_fault/oversize_chunked=200000/okepay"
for code in 301 302 307 308; do add_account "tls-$code" "$good/_fault/status=$code/okepay"; done

# call ACCOUNT [SQL...]: in one session run the SQL statements, then
# the status call of payment 106 through ACCOUNT.  Prints "OK|<status>" or
# "<SQLSTATE>|<message>|<detail>" of the first error.
call() {
    local account=$1 out rc=0 s
    shift
    local args=()
    for s in "$@"; do args+=(-c "$s"); done
    args+=(-c "SELECT status FROM paygw_status('okepay', '106', '$account')")
    out=$(psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$db" "${args[@]}" 2>&1) || rc=$?
    if (( rc == 0 )); then
        printf 'OK|%s\n' "$(tail -n 1 <<<"$out")"
        return
    fi
    awk '/^ERROR:  [0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]: / && !e { sub(/^ERROR:  /, ""); state = substr($0, 1, 5); msg = substr($0, 8); e = 1; next }
         e && /^DETAIL:  / && !d { sub(/^DETAIL:  /, ""); det = $0; d = 1 }
         END { if (e) printf "%s|%s|%s\n", state, msg, det; else { gsub(/\n/, " ", all); printf "NOERROR|unparsed psql output: %s|\n", all } }
         { all = all $0 " " }' <<<"$out"
}

failures=0
# expect NAME WANT_STATE [DETAIL_PATTERN] -- RESULT_OF_call
expect() {
    local name=$1 want=$2 pattern=${3:-} got=$4
    local state=${got%%|*} rest=${got#*|}
    local msg=${rest%%|*} detail=${rest#*|}
    [[ $state == OK ]] && detail=""
    printf '%-52s %s: %s%s\n' "$name" "$state" "$msg" "${detail:+ (detail: $detail)}"
    if [[ $state != "$want" ]]; then
        echo "FAIL: $name: want $want, got $state" >&2; failures=$((failures + 1))
    elif [[ -n $pattern && ! ${detail,,} =~ $pattern ]]; then
        echo "FAIL: $name: detail does not match /$pattern/" >&2; failures=$((failures + 1))
    fi
}

set_ca() { printf "SET paygw.ca_file = '%s'" "$1"; }

# --- 1-4. certificate verification -----------------------------------------
res=$(call tls-good "$(set_ca "$ca")")
expect "trusted (paygw.ca_file = test CA)" OK "" "$res"
[[ $res == "OK|paid" ]] || { echo "FAIL: trusted call answered $res, want OK|paid" >&2; failures=$((failures + 1)); }
expect "paygw.ca_file unset (system store only)" PW022 "" "$(call tls-good)"
expect "paygw.ca_file = an unrelated CA" PW022 "" "$(call tls-good "$(set_ca "$tls/wrong-ca.crt")")"
res=$(call tls-good "$(set_ca "$tls/no-such-ca.crt")")
expect "paygw.ca_file = a file that does not exist" PW022 "cannot be read" "$res"
[[ $res != *"$tls"* ]] || { echo "FAIL: the error shows paygw.ca_file's path: $res" >&2; failures=$((failures + 1)); }
printf 'not a certificate\n' >"$tls/no-cert.pem"
expect "paygw.ca_file = a file without a certificate" PW022 "no pem certificate" \
    "$(call tls-good "$(set_ca "$tls/no-cert.pem")")"
# paygw.ca_file is a bundle: every certificate in it counts, the system's too
cat "$tls/wrong-ca.crt" "$ca" >"$tls/two-cas.crt"
expect "paygw.ca_file = unrelated CA + test CA" OK "" "$(call tls-good "$(set_ca "$tls/two-cas.crt")")"
# the file is read again when it changes: same path, same session, new content
# (the pauses keep file times, which move in ticks of a few ms, apart)
cp "$ca" "$tls/swap-ca.crt"
sleep 0.05
expect "same session: ca_file replaced by the wrong CA" PW022 "" \
    "$(call tls-good "$(set_ca "$tls/swap-ca.crt")" "SELECT status FROM paygw_status('okepay', '106', 'tls-good')" \
        "\\! sleep 0.05; cp '$tls/wrong-ca.crt' '$tls/swap-ca.crt'")"
cp "$ca" "$tls/swap-ca.crt"
sleep 0.05
expect "same session: ca_file replaced by the test CA" OK "" \
    "$(call tls-good "$(set_ca "$tls/swap-ca.crt")" "\\! sleep 0.05; cp '$tls/wrong-ca.crt' '$tls/swap-ca.crt'" \
        "DO \$\$ BEGIN PERFORM paygw_status('okepay', '106', 'tls-good');
                   EXCEPTION WHEN SQLSTATE 'PW022' THEN NULL; END \$\$" \
        "\\! sleep 0.05; cp '$ca' '$tls/swap-ca.crt'")"
# Within one session, a trusted call and then the CA dropped or replaced:
# the next call must verify again, whether it would reuse the kept-alive
# connection or resume the TLS session on a new one (first call through a
# gateway that closes the connection after its reply: `truncated`).
emu_stats() {   # prints: okepay requests, connections, resumed TLS sessions
    curl -sf --max-time 5 --cacert "$ca" "$good/_control/stats" | /usr/bin/python3 -c \
        'import json, sys; d = json.load(sys.stdin); print(d["requests"]["okepay"], d["connections"], d["tls_resumed"])'
}
same_session() {   # same_session NAME FIRST_ACCOUNT THEN_SQL
    local r0 c0 s0 r1 c1 s1 res
    read -r r0 c0 s0 < <(emu_stats) || fail "emulator stats unavailable"
    res=$(call tls-good "$(set_ca "$ca")" \
        "DO \$\$ BEGIN PERFORM paygw_status('okepay', '106', '$2');
                   EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'first call: %', SQLERRM; END \$\$" "$3")
    read -r r1 c1 s1 < <(emu_stats) || fail "emulator stats unavailable"
    expect "$1" PW022 "" "$res"
    printf '%-52s gateway saw %d requests on %d new connection(s), %d resumed TLS session(s)\n' "" \
        $((r1 - r0)) $((c1 - c0 - 1)) $((s1 - s0))
}
add_account tls-truncated "$good/_fault/truncated/okepay"
same_session "same session: trusted call, then RESET ca_file" tls-good "RESET paygw.ca_file"
same_session "same session: trusted call, then the wrong CA" tls-good "$(set_ca "$tls/wrong-ca.crt")"
same_session "same session, connection closed, then RESET" tls-truncated "RESET paygw.ca_file"
same_session "same session, connection closed, then wrong CA" tls-truncated "$(set_ca "$tls/wrong-ca.crt")"
expect "expired certificate (test CA trusted)" PW022 "expired" \
    "$(call tls-expired "$(set_ca "$ca")")"
expect "certificate for gateway.invalid at 127.0.0.1" PW022 "" \
    "$(call tls-wrongname "$(set_ca "$ca")")"

# --- 5. paygw.ca_file is superuser-only --------------------------------------
q -d postgres -c "ALTER ROLE $role IN DATABASE $db SET paygw.ca_file = '$ca'"
as_role() { psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -U "$role" -d "$db" -c "$1" 2>&1; }
role_case() {   # role_case NAME SQL: must fail with 42501 and not show the path
    local out rc=0 state
    out=$(as_role "$2") || rc=$?
    state=$(sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' <<<"$out" | head -n 1)
    printf '%-52s %s: %s\n' "$1" "${state:-OK}" "$(sed -n 's/^ERROR:  [0-9A-Z]\{5\}: //p' <<<"$out" | head -n 1)"
    if (( rc == 0 )) || [[ $state != 42501 ]]; then
        echo "FAIL: $1: want 42501, got ${state:-success}: $out" >&2; failures=$((failures + 1))
    elif [[ $out == *"$tls"* ]]; then
        echo "FAIL: $1: the error shows the path: $out" >&2; failures=$((failures + 1))
    fi
}
role_case "non-superuser SET paygw.ca_file" "SET paygw.ca_file = '$tls/wrong-ca.crt'"
role_case "non-superuser RESET paygw.ca_file" "RESET paygw.ca_file"
role_case "non-superuser SHOW paygw.ca_file" "SHOW paygw.ca_file"
role_case "non-superuser current_setting('paygw.ca_file')" "SELECT current_setting('paygw.ca_file')"
n=$(as_role "SELECT count(*) FROM pg_settings WHERE name = 'paygw.ca_file'")
printf '%-52s %s\n' "non-superuser pg_settings rows for paygw.ca_file" "$n"
[[ $n == 0 ]] || { echo "FAIL: pg_settings shows paygw.ca_file to a plain role: $n" >&2; failures=$((failures + 1)); }
n=$(q -d "$db" -c "SELECT count(*) FROM pg_settings WHERE name = 'paygw.ca_file'")
[[ $n == 1 ]] || { echo "FAIL: pg_settings has no paygw.ca_file row for the superuser (library not loaded?)" >&2; failures=$((failures + 1)); }
q -d postgres -c "ALTER ROLE $role IN DATABASE $db RESET paygw.ca_file"

# --- 6. plain http only for loopback -----------------------------------------
out=$(psql -X -q -At -v VERBOSITY=verbose -d "$db" -c "INSERT INTO paygw.credentials
      (name, provider, merchant_id, secret, base_url) VALUES
      ('plain', 'okepay', 'demo-shop', 's', 'http://gateway.invalid/okepay')" 2>&1) || true
expect "INSERT http://gateway.invalid (not loopback)" PW006 "" \
    "$(awk '/^ERROR:  / { sub(/^ERROR:  /, ""); printf "%s|%s|", substr($0, 1, 5), substr($0, 8); exit }' <<<"$out")"

# --- 7. redirects are not followed -------------------------------------------
requests() {
    curl -sf --max-time 5 --cacert "$ca" "$good/_control/stats" \
        | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["requests"]["okepay"])'
}
for code in 301 302 307 308; do
    before=$(requests) || fail "emulator stats unavailable"
    res=$(call "tls-$code" "$(set_ca "$ca")")
    after=$(requests) || fail "emulator stats unavailable"
    expect "HTTP $code with Location (gateway saw $((after - before)))" PW033 "" "$res"
    [[ $res == *"$code"* ]] || { echo "FAIL: HTTP $code: the error does not name the code" >&2; failures=$((failures + 1)); }
    (( after - before == 1 )) || { echo "FAIL: HTTP $code: the gateway saw $((after - before)) requests, want 1" >&2; failures=$((failures + 1)); }
done
# the emulator really sends a Location that leads to the paid payment
loc=$(curl -s --max-time 5 --cacert "$ca" -o /dev/null -w '%{redirect_url}' "$good/_fault/status=302/okepay/v1.0/Gateway/106/")
[[ $loc == "$good/okepay/v1.0/Gateway/106/" ]] || fail "emulator redirect Location: '$loc'"

# --- 8. the reply size cap over TLS ------------------------------------------
expect "200000-byte chunked reply, max_response_size 64kB" PW031 "" \
    "$(call tls-oversize "$(set_ca "$ca")" "SET paygw.max_response_size = '64kB'")"
expect "the same reply with the default limit (1MB)" OK "" "$(call tls-oversize "$(set_ca "$ca")")"

q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $role"
echo "took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
(( failures == 0 )) || fail "$failures TLS case(s) differ from what is expected (see above)"
check_ok "TLS: trust, expiry, host name, superuser-only CA file, no redirects, size cap"
