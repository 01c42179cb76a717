#!/usr/bin/env bash
# test/asan.sh -- paygw's whole test suite under AddressSanitizer +
# LeakSanitizer (default), or its pg_regress part under Valgrind memcheck.
#
#   bash test/asan.sh [--head] [--keep] [--patch FILE] [--valgrind [--all-stages]]
#
#   --head        test the committed HEAD (git archive) instead of the
#                 working tree (tracked + untracked, not ignored, files)
#   --keep        keep the temp dir (PostgreSQL copy, build, sanitizer logs)
#   --patch FILE  apply FILE (git diff format) to the source copy first:
#                 to try a fix, or a deliberate bug as a positive control
#   --valgrind    memcheck instead of ASan: a plain -O1 -g build, every
#                 postgres process under valgrind (no leak check), only
#                 pg_regress + the emulator selftest (the checks' timing
#                 bounds cannot hold under valgrind) unless --all-stages
#
# What it does, all under one temp dir $T (/tmp/paygw-asan.XXXXXX):
#   1. a private relocated copy of the system PostgreSQL 15 (bin, lib, share,
#      include) in $T/pg; its pg_config must resolve every path inside $T
#      (the system installation is never written to);
#   2. a copy of the source in $T/src, built with
#      COPT='-fsanitize=address -fsanitize-recover=address
#            -fno-omit-frame-pointer -O1 -g' and installed into the copy;
#   3. in the copy, bin/postgres becomes a wrapper that execs the real binary
#      with LD_PRELOAD="<gcc's libasan.so> $T/initfirst.so" (or under
#      valgrind); initdb's bootstrap/check/single-user runs and -V/-C queries
#      run uninstrumented (initfirst.so: see the comment at its build);
#   4. $T/src/test/run-tests.sh --no-install with PG_CONFIG = the copy and
#      PAYGW_SECRET_SCAN=0: pg_regress (all REGRESS suites), the emulator
#      selftest and every test/checks/*.sh, plus two checks added to the copy
#      only: 01-instrumented (the postmaster really maps libasan/valgrind and
#      $T's paygw.so) and 60-error-loops (errors raised in a loop while a CURL
#      transfer or an OpenSSL key is live: paygw.timeout, statement_timeout,
#      pg_cancel_backend, resets, bad replies, wrong key passphrase, then
#      pg_terminate_backend mid-transfer);
#   5. the cluster is stopped by the suite (every backend exits through
#      proc_exit, so LeakSanitizer runs in each), then the reports in
#      $T/logs are summarised: every ASan error, leak record or memcheck
#      error, grouped by stack, with its first frames and whether it has a
#      paygw frame (a frame in paygw.so, or in one of paygw's source files).
#
# Exit: 0 no report has a paygw frame, 1 at least one has, 2 setup failed.
# The suite's own PASS/FAIL is printed but does not decide the exit status:
# under ASan (slow unwinding on every malloc) and more so under valgrind,
# timing bounds can fail -- 10-cancel's 200 ms, 50-tls's 2 s connect
# timeout while OpenSSL loads the system CA store, privileges.out's refresh
# count -- without any memory error.
#
# PAYGW_ASAN_OPTIONS (env) is appended to the ASan options, e.g.
# max_free_fill_size=65536:free_fill_byte=88 to make reads of freed memory
# visible in results, or fast_unwind_on_malloc=1 for speed (leak stacks
# through libcurl/OpenSSL then lose their paygw frames).
#
# Suppressions: test/asan/lsan.supp (LeakSanitizer; PostgreSQL's own
# process-lifetime allocations only) and test/asan/valgrind.supp.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
mode=asan head=0 keep=0 all_stages=0 patches=()
while (( $# )); do
    arg=$1; shift
    case $arg in
        --patch) [[ $# -gt 0 && -r $1 ]] || { echo "asan.sh: --patch needs a readable file" >&2; exit 2; }
                 patches+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift ;;
        --head) head=1 ;;
        --keep) keep=1 ;;
        --valgrind) mode=valgrind ;;
        --all-stages) all_stages=1 ;;
        -h|--help) sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "asan.sh: unknown option: $arg" >&2; exit 2 ;;
    esac
done

die() { echo "asan.sh: $*" >&2; exit 2; }
msg() { printf '==> %s\n' "$*"; }

SYS_PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[[ -x $SYS_PG_CONFIG ]] || die "no pg_config at $SYS_PG_CONFIG (set PG_CONFIG)"
libasan=$(gcc -print-file-name=libasan.so)
libasan=$(readlink -f "$libasan")
[[ $mode != asan || -f $libasan ]] || die "gcc's libasan.so not found (apt-get install libasan8)"
[[ $mode != valgrind ]] || command -v valgrind >/dev/null || die "valgrind not installed"

T=$(mktemp -d /tmp/paygw-asan.XXXXXX) || die "mktemp failed"
chmod 755 "$T"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if (( keep )); then msg "kept: $T"; else rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. relocated PostgreSQL copy -------------------------------------------
sys_bindir=$("$SYS_PG_CONFIG" --bindir)
sys_pkgdir=$(dirname "$sys_bindir")                    # /usr/lib/postgresql/15
sys_share=$("$SYS_PG_CONFIG" --sharedir)               # /usr/share/postgresql/15
sys_inc=$("$SYS_PG_CONFIG" --includedir)               # /usr/include/postgresql
msg "PostgreSQL copy: $sys_pkgdir $sys_share $sys_inc -> $T/pg"
for d in "$sys_pkgdir" "$sys_share" "$sys_inc"; do
    mkdir -p "$T/pg$(dirname "$d")"
    cp -a "$d" "$T/pg$(dirname "$d")/" || die "copy of $d failed"
done
PG_CONFIG=$T/pg$sys_bindir/pg_config
for opt in --bindir --pkglibdir --sharedir --includedir-server --pgxs; do
    p=$("$PG_CONFIG" "$opt")
    [[ $p == "$T/pg/"* ]] || die "relocated pg_config $opt = $p is outside $T (not relocatable)"
done
bindir=$("$PG_CONFIG" --bindir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
echo "    pg_config --pkglibdir = $pkglibdir"
echo "    pg_config --sharedir  = $("$PG_CONFIG" --sharedir)"

# --- 2. source copy and build ----------------------------------------------
mkdir -p "$T/src"
if (( head )); then
    git -C "$repo" archive HEAD | tar -x -C "$T/src"
    echo "    source: HEAD $(git -C "$repo" rev-parse --short HEAD)"
else
    (cd "$repo" && git ls-files -z -c -o --exclude-standard | xargs -0 -r sh -c \
        'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh | tar --null -T - -cf -) \
        | tar -x -C "$T/src"
    echo "    source: working tree of $repo (HEAD $(git -C "$repo" rev-parse --short HEAD)" \
         "+ $(git -C "$repo" status --porcelain | wc -l) changed/untracked files)"
fi
for p in "${patches[@]}"; do
    (cd "$T/src" && git apply "$p") || die "patch $p does not apply"
    echo "    applied $p"
done
if [[ $mode == asan ]]; then
    export COPT='-fsanitize=address -fsanitize-recover=address -fno-omit-frame-pointer -O1 -g'
else
    export COPT='-O1 -g -fno-omit-frame-pointer'
fi
msg "build: make COPT='$COPT' (in $T/src)"
nice -n 10 make -C "$T/src" --no-print-directory -j2 PG_CONFIG="$PG_CONFIG" >"$T/build.log" 2>&1 \
    || { tail -n 40 "$T/build.log"; die "build failed"; }
nice -n 10 make -C "$T/src" --no-print-directory install PG_CONFIG="$PG_CONFIG" >>"$T/build.log" 2>&1 \
    || { tail -n 40 "$T/build.log"; die "install failed"; }
[[ -f $pkglibdir/paygw.so ]] || die "paygw.so not installed in $pkglibdir"
if [[ $mode == asan ]]; then
    [[ $(ldd "$pkglibdir/paygw.so") == *libasan* ]] || die "installed paygw.so is not linked with libasan"
    [[ $(nm -D "$pkglibdir/paygw.so") == *__asan_report* ]] || die "installed paygw.so is not instrumented"
fi
echo "    installed $pkglibdir/paygw.so"

# --- 3. postgres wrapper --------------------------------------------------
logs=$T/logs
mkdir -p "$logs"
chown postgres: "$logs" 2>/dev/null || chmod 1777 "$logs"
mv "$bindir/postgres" "$bindir/postgres.bin"
rm -f "$bindir/postmaster"; ln -s postgres "$bindir/postmaster"
supp_dir=$T/supp
mkdir -p "$supp_dir"
cp "$here/asan/lsan.supp" "$here/asan/valgrind.supp" "$supp_dir/"
chmod -R a+rX "$supp_dir"
asan_opts="detect_leaks=1:abort_on_error=0:halt_on_error=0:exitcode=0:log_path=$logs/asan"
asan_opts+=":detect_odr_violation=0:alloc_dealloc_mismatch=0:allow_user_segv_handler=1"
asan_opts+=":fast_unwind_on_malloc=0:malloc_context_size=40:symbolize=1"
asan_opts+=":stack_trace_format='    #%n %p %F %S %M'"
asan_opts+=${PAYGW_ASAN_OPTIONS:+:$PAYGW_ASAN_OPTIONS}   # extra/overriding ASan options
lsan_opts="suppressions=$supp_dir/lsan.supp:print_suppressions=1:exitcode=0"
vg_opts="--tool=memcheck --trace-children=yes --leak-check=no --track-origins=yes"
vg_opts+=" --num-callers=30 --read-var-info=no --error-limit=no --child-silent-after-fork=no"
vg_opts+=" --suppressions=$supp_dir/valgrind.supp --gen-suppressions=all --log-file=$logs/vg.%p"
# The ASan runtime normally initialises on the first malloc(); in postgres
# that first malloc comes from libgpg-error's constructor inside
# bindtextdomain(), with glibc's _nl_state_lock held, and ASan's init calls
# dlerror() -> dcgettext(), which takes the same lock: postgres hangs before
# main().  A preloaded shim marked -z initfirst mallocs once before any other
# constructor runs, so ASan is initialised without that lock held.
if [[ $mode == asan ]]; then
    cat >"$T/initfirst.c" <<'EOF_C'
#include <stdlib.h>
void *volatile paygw_asan_initfirst_p;
__attribute__((constructor)) static void paygw_asan_initfirst(void)
{
    paygw_asan_initfirst_p = malloc(1);
    free(paygw_asan_initfirst_p);
}
EOF_C
    gcc -shared -fPIC -O1 -Wl,-z,initfirst "$T/initfirst.c" -o "$T/initfirst.so" || die "shim build failed"
    chmod 755 "$T/initfirst.so"
fi
{
    echo '#!/bin/bash'
    echo '# paygw test/asan.sh wrapper: the real binary is postgres.bin'
    echo 'real=$(dirname "$0")/postgres.bin'
    echo 'case ${1:-} in --boot|--single|--check|-V|--version|-C|--describe-config) exec -a "$0" "$real" "$@" ;; esac'
    if [[ $mode == asan ]]; then
        printf 'export LD_PRELOAD=%q ASAN_OPTIONS=%q LSAN_OPTIONS=%q\n' "$libasan $T/initfirst.so" "$asan_opts" "$lsan_opts"
        echo 'exec -a "$0" "$real" "$@"'
    else
        echo "exec valgrind $vg_opts \"\$real\" \"\$@\""
    fi
} >"$bindir/postgres"
chmod 755 "$bindir/postgres"

# checks added to the copy only
cat >"$T/src/test/checks/01-instrumented.sh" <<EOF
#!/usr/bin/env bash
# (added by test/asan.sh) the postmaster runs instrumented with \$T's paygw.so
set -euo pipefail
pid=\$(head -n 1 "\$PAYGW_WORKDIR/data/postmaster.pid")
maps=/proc/\$pid/maps
grep -q '$pkglibdir/paygw.so' "\$maps" || { echo "FAIL: postmaster \$pid does not map $pkglibdir/paygw.so"; exit 1; }
if [[ $mode == asan ]]; then
    grep -q 'libasan' "\$maps" || { echo "FAIL: postmaster \$pid has no libasan"; exit 1; }
else
    grep -q 'vgpreload_memcheck' "\$maps" || { echo "FAIL: postmaster \$pid is not under memcheck"; exit 1; }
fi
echo "ok: postmaster \$pid maps $pkglibdir/paygw.so ($mode)"
EOF
cat >"$T/src/test/checks/60-error-loops.sh" <<'EOF'
#!/usr/bin/env bash
# (added by test/asan.sh) errors raised again and again in one backend while
# a CURL transfer or an OpenSSL key is live, so that a per-error leak shows
# up as a leak of N objects; then a backend terminated mid-transfer.
set -euo pipefail
. "$(dirname "$0")/lib.bash"
db=paygw_asan_errors
new_db "$db" "delay=4000" "reset" "resetmid" "malformed" "truncated" "oversize_chunked=100000" "noreply"
emu="http://127.0.0.1:$PAYGW_EMU_PORT"
pem=$(cat "$PAYGW_TEST_DIR/keys/alikassa-test.pem")
q -d "$db" -v emu="$emu" -v pem="$pem" <<'SQL'
INSERT INTO paygw.credentials (name, provider, merchant_id, secret, secret_password, base_url) VALUES
  ('ak', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem', 'test-alikassa-pass', :'emu' || '/alikassa'),
  ('ak:delay', 'alikassa', '93d5df06-996c-48c3-9847-348d6b580b80', :'pem', 'test-alikassa-pass', :'emu' || '/_fault/delay=4000/alikassa');
SQL
out=$(q -d "$db" 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.loop(q text, n int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE errs int := 0;
BEGIN
  FOR i IN 1..n LOOP
    BEGIN EXECUTE q; EXCEPTION WHEN OTHERS THEN errs := errs + 1; END;
  END LOOP;
  RETURN errs;
END $$;
SET paygw.timeout = '150ms';
SELECT 'timeout', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'ok:delay=4000')$$, 10);
SELECT 'noreply', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'ok:noreply')$$, 5);
SELECT 'ak-timeout', pg_temp.loop($$SELECT paygw_status('alikassa', '100000537', 'ak:delay')$$, 10);
RESET paygw.timeout;
SELECT 'reset', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'ok:reset')$$, 10);
SELECT 'resetmid', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'ok:resetmid')$$, 10);
SELECT 'malformed', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'ok:malformed')$$, 10);
SELECT 'truncated', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'ok:truncated')$$, 10);
SET paygw.max_response_size = '4kB';
SELECT 'oversize', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'ok:oversize_chunked=100000')$$, 10);
RESET paygw.max_response_size;
SELECT 'refused', pg_temp.loop($$SELECT paygw_status('okepay', '106', 'nope')$$, 10);
SELECT 'badpass', pg_temp.loop($$UPDATE paygw.credentials SET secret_password = 'wrong' WHERE name = 'ak'$$, 10);
SELECT 'badkey', pg_temp.loop($$UPDATE paygw.credentials SET secret = 'not a key' WHERE name = 'ak'$$, 10);
SELECT 'sign-ok', paygw.sign('ak', '{"id":"1"}') IS NOT NULL;
SELECT 'ak-ok', status FROM paygw_status('alikassa', '100000537', 'ak');
SQL
) || check_fail "error loops failed: $out"
echo "$out"
# statement_timeout and pg_cancel_backend, several times in one session
for i in 1 2 3 4 5; do
    echo "SET statement_timeout = '200ms'; SELECT paygw_status('okepay', '106', 'ok:delay=4000');"
    echo "SELECT paygw_status('alikassa', '100000537', 'ak:delay');"
done | psql -X -d "$db" -At >"$PAYGW_WORKDIR/loops-st.out" 2>&1 || true
n=$(grep -c 'statement timeout' "$PAYGW_WORKDIR/loops-st.out" || true)
(( n == 10 )) || check_fail "expected 10 statement_timeout errors, got $n: $(cat "$PAYGW_WORKDIR/loops-st.out")"
check_ok "10 statement_timeout errors mid-transfer in one session"
# pg_cancel_backend mid-transfer, 3 times in one session, then terminate it;
# a call is mid-transfer once the gateway has counted its request
reqs() { curl -sf "$emu/_control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"]["'"$1"'"])'; }
cancels() { grep -c 'canceling statement' "$PAYGW_WORKDIR/loops-cancel.out" || true; }
ak0=$(reqs alikassa) ok0=$(reqs okepay)
{ echo "SET application_name = 'paygw-asan-loop';"
  for i in 1 2 3; do echo "SELECT paygw_status('alikassa', '100000537', 'ak:delay');"; done
  echo "SELECT paygw_status('okepay', '106', 'ok:delay=4000');"; } \
    | psql -X -d "$db" -At >"$PAYGW_WORKDIR/loops-cancel.out" 2>&1 &
bg=$!
for i in 1 2 3; do
    wait_for 60 '[ "$(reqs alikassa)" -ge '"$((ak0 + i))"' ]' \
        || check_fail "call $i never reached the gateway: $(cat "$PAYGW_WORKDIR/loops-cancel.out")"
    sleep 0.2
    q -d postgres -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'paygw-asan-loop'" >/dev/null
    wait_for 60 '[ "$(cancels)" -ge '"$i"' ]' \
        || check_fail "cancel $i not seen: $(cat "$PAYGW_WORKDIR/loops-cancel.out")"
done
wait_for 60 '[ "$(reqs okepay)" -ge '"$((ok0 + 1))"' ]' || check_fail "last call never reached the gateway"
sleep 0.2
q -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'paygw-asan-loop'" >/dev/null
wait "$bg" || true
grep -q 'terminating connection' "$PAYGW_WORKDIR/loops-cancel.out" \
    || check_fail "terminate not seen: $(cat "$PAYGW_WORKDIR/loops-cancel.out")"
check_ok "3 cancels mid-transfer, then pg_terminate_backend mid-transfer"
q -d postgres -c "DROP DATABASE $db WITH (FORCE)"
EOF
chmod 755 "$T/src/test/checks/01-instrumented.sh" "$T/src/test/checks/60-error-loops.sh"
if [[ $mode == valgrind ]] && (( !all_stages )); then
    for c in "$T"/src/test/checks/*.sh; do
        [[ $(basename "$c") == 01-instrumented.sh ]] || chmod a-x "$c"
    done
fi

# --- 4. the suite ----------------------------------------------------------
conf=$T/test.conf
{ cat "$T/src/test/postgresql.conf"
  echo "# test/asan.sh: no JIT (LLVM is not what is under test)"
  echo "jit = off"
} >"$conf"
chmod a+r "$conf"
msg "suite: $T/src/test/run-tests.sh --no-install ($mode; log $T/suite.log)"
suite_rc=0
if [[ $mode == valgrind ]]; then export PAYGW_STAGE_TIMEOUT=${PAYGW_STAGE_TIMEOUT:-5400}; fi
PG_CONFIG=$PG_CONFIG PAYGW_SRC_DIR=$T/src PAYGW_SECRET_SCAN=0 PAYGW_TEST_CONF=$conf \
    nice -n 10 bash "$T/src/test/run-tests.sh" --no-install >"$T/suite.log" 2>&1 || suite_rc=$?
sed -n '/^===== summary =====/,$p' "$T/suite.log"
if (( suite_rc != 0 )); then
    echo "suite exit status $suite_rc; output of the failed stages:"
    sed -n '/^----- last [0-9]* lines of .* output -----$/,/^----- end of .* output -----$/p' "$T/suite.log" \
        | grep -v '^\s*$' | head -n 300
fi
if [[ -s $T/src/regression.diffs ]]; then
    cp "$T/src/regression.diffs" "$logs/regression.diffs"
    echo "regression.diffs: $(grep -c '^[-+][^-+]' "$T/src/regression.diffs") changed lines (kept in $logs when --keep)"
fi
sleep 2   # backends still exiting after the stop write their last reports

# --- 5. summary ------------------------------------------------------------
msg "reports in $logs"
srcnames=$(cd "$T/src/src" && find . -name '*.[ch]' -printf '%f\n' | sort -u | tr '\n' ' ')
python3 - "$mode" "$logs" "$srcnames" <<'PY'
import os, re, sys, glob, collections
mode, logs = sys.argv[1], sys.argv[2]
reports = []          # (kind, header, frames, file)
if mode == 'asan':
    for path in sorted(glob.glob(os.path.join(logs, 'asan.*'))):
        text = open(path, errors='replace').read()
        # ASan errors: a block from "ERROR: AddressSanitizer" to "SUMMARY:"
        for m in re.finditer(r'ERROR: AddressSanitizer: (.*?)\n(.*?)SUMMARY:', text, re.S):
            frames = re.findall(r'^\s+#\d+ .*$', m.group(2), re.M)
            reports.append(('asan', m.group(1).strip(), frames, path))
        # leaks: one record per "Direct/Indirect leak of" with its stack
        for m in re.finditer(r'^((?:Direct|Indirect) leak of .*?)\n((?:\s+#\d+ .*\n)+)', text, re.M):
            frames = re.findall(r'^\s+#\d+ .*$', m.group(2), re.M)
            reports.append(('leak', m.group(1).strip(), frames, path))
        for m in re.finditer(r'ERROR: LeakSanitizer: (?!detected memory leaks)(.*)', text):
            reports.append(('lsan-error', m.group(1).strip(), [], path))
else:
    for path in sorted(glob.glob(os.path.join(logs, 'vg.*'))):
        cur = None
        for line in open(path, errors='replace').read().splitlines():
            m = re.match(r'==\d+== (.*)$', line)
            if not m:                       # generated suppression text
                continue
            body = m.group(1)
            if not body.strip():
                cur = None
            elif not body[0].isspace():     # an error's first line
                if body.startswith(('Memcheck,', 'Copyright', 'Using Valgrind', 'Command:',
                                    'Parent PID', 'HEAP SUMMARY', 'For lists', 'ERROR SUMMARY',
                                    'For a detailed', 'Use --track', 'To see them')):
                    cur = None
                    continue
                cur = ('valgrind', body.strip(), [], path)
                reports.append(cur)
            elif cur is not None and re.match(r'\s+(at|by) 0x', body):
                cur[2].append(body)
    reports = [r for r in reports if r[2]]
# a frame is paygw's when it names paygw.so (ASan) or one of paygw's source
# files (valgrind prints "fn (file.c:N)" for objects with debug info)
srcs = set(sys.argv[3].split())
srcre = re.compile(r'\((' + '|'.join(re.escape(x) for x in sorted(srcs)) + r'):\d+\)') if srcs else None
def paygw(frames):
    return any('paygw.so' in f or (srcre and srcre.search(f)) for f in frames)
ours = [r for r in reports if paygw(r[2])]
nlogs = len(glob.glob(os.path.join(logs, 'asan.*' if mode == 'asan' else 'vg.*')))
print(f"{nlogs} process log(s); {len(reports)} report(s) in {len(set(r[3] for r in reports))} of them; "
      f"{len(ours)} with a paygw frame")
groups = collections.OrderedDict()
for r in reports:
    key = (r[0], paygw(r[2]), tuple(re.sub(r'0x[0-9a-f]+', '', f) for f in r[2][:6]))
    groups.setdefault(key, []).append(r)
for (kind, isours, _), rs in sorted(groups.items(), key=lambda kv: (not kv[0][1], kv[0][0])):
    r = rs[0]
    print(f"--- [{'PAYGW' if isours else 'not paygw'}] {kind} x{len(rs)}: {r[1]}   ({os.path.basename(r[3])})")
    for f in r[2][:8]:
        print("      " + f.strip())
if mode == 'asan':
    supp = collections.Counter()
    for path in glob.glob(os.path.join(logs, 'asan.*')):
        text = open(path, errors='replace').read()
        for blk in re.findall(r'Suppressions used:\n\s+count\s+bytes\s+template\n((?:\s+\d+\s+\d+\s+\S.*\n)+)', text):
            for m in re.finditer(r'^\s+(\d+)\s+(\d+)\s+(\S.*)$', blk, re.M):
                supp[m.group(3).strip()] += int(m.group(1))
    if supp:
        print("suppressed by lsan.supp (count, pattern): " + ", ".join(f"{n} {p}" for p, n in supp.most_common()))
sys.exit(1 if ours else 0)
PY
