# shellcheck shell=bash
# test/lib.sh -- shared helpers for paygw's test scripts (run-tests.sh,
# demo.sh).  Source it from bash; it defines functions and a few variables
# and has no other side effects until a function is called.
#
# Functions:
#   paygw_build_install   make -j2 + make install in $PAYGW_SRC_DIR (make clean
#                         first when the last build was for another pg_config)
#   paygw_start_cluster   throwaway PostgreSQL cluster on a free 127.0.0.1 port
#   paygw_start_emulator  gateway emulator on a free port, waits for health
#   paygw_stop            stop emulator + cluster, remove the work dir
#                         (also run automatically on EXIT/INT/TERM)
#
# Environment honoured:
#   PG_CONFIG        pg_config to use (default /usr/lib/postgresql/15/bin/pg_config,
#                    else pg_config on PATH)
#   PAYGW_SRC_DIR    extension source tree to build/installcheck
#                    (default: the repository containing this file)
#   PAYGW_EMULATOR   emulator script (default $PAYGW_TEST_DIR/emulator/emulator.py)
#   PAYGW_TEST_CONF  file whose lines are appended to postgresql.conf
#   PAYGW_KEEP=1     keep the work dir (data dir, logs) on exit
#   CI=true          build with COPT=-Werror
#   PAYGW_STAGE_TIMEOUT  seconds before a paygw_run_logged job is killed (900)
#
# Exported once the cluster/emulator run (for psql, pg_regress, checks):
#   PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGDATABASE=postgres
#   PAYGW_EMU_PORT PAYGW_TEST_DIR PAYGW_SRC_DIR PAYGW_WORKDIR
#   PG_CONFIG PG_BINDIR, and PATH with $PG_BINDIR first.
#
# Functions report errors on stderr and return non-zero (or exit 2 via
# paygw_die for setup problems); they do not rely on `set -e`.

PAYGW_TEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PAYGW_REPO_DIR=$(dirname "$PAYGW_TEST_DIR")
PAYGW_SRC_DIR=$(cd "${PAYGW_SRC_DIR:-$PAYGW_REPO_DIR}" && pwd)
export PAYGW_TEST_DIR PAYGW_SRC_DIR

_paygw_workdir_made=0   # 1 once this shell created PAYGW_WORKDIR
_paygw_pgdata=""        # data dir of the cluster we started
_paygw_emu_pid=""       # pid of the emulator we started
_paygw_job_pid=""       # pid of the running paygw_run_logged job

paygw_msg() { printf '==> %s\n' "$*"; }
paygw_err() { printf 'ERROR: %s\n' "$*" >&2; }
paygw_die() { paygw_err "$@"; exit 2; }

# paygw_tail FILE N [TITLE] -- print the last N lines of FILE, framed.
paygw_tail() {
    local file=$1 n=$2 title=${3:-$1}
    if [[ -s $file ]]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$title"
        tail -n "$n" "$file"
        printf -- '----- end of %s -----\n' "$title"
    else
        printf -- '----- %s: empty or missing -----\n' "$title"
    fi
}

# Locate pg_config and the server's bindir (after install-deps has run).
paygw_find_pg_config() {
    if [[ -z ${PG_CONFIG:-} ]]; then
        if [[ -x /usr/lib/postgresql/15/bin/pg_config ]]; then
            PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
        elif command -v pg_config >/dev/null 2>&1; then
            PG_CONFIG=$(command -v pg_config)
        else
            paygw_die "pg_config not found: set PG_CONFIG or run test/install-deps.sh"
        fi
    fi
    PG_BINDIR=$("$PG_CONFIG" --bindir) || paygw_die "$PG_CONFIG --bindir failed"
    [[ -x $PG_BINDIR/initdb ]] || paygw_die "no initdb in $PG_BINDIR (server package missing?)"
    case ":$PATH:" in *":$PG_BINDIR:"*) ;; *) PATH=$PG_BINDIR:$PATH ;; esac
    export PG_CONFIG PG_BINDIR PATH
}

# Run a command as the postgres OS user when we are root (PostgreSQL refuses
# to run as root), from the work dir so the cwd is accessible to that user.
paygw_as_pg() {
    if (( EUID == 0 )); then
        (cd "$PAYGW_WORKDIR" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

paygw_build_install() {
    paygw_find_pg_config
    local args=("PG_CONFIG=$PG_CONFIG")
    [[ ${CI:-} == true ]] && args+=("COPT=-Werror")
    # objects compiled for another server are stale (PGXS does not know):
    # clean when the pg_config differs from the last build's
    local stamp=$PAYGW_SRC_DIR/.paygw-built-for want
    want="$PG_CONFIG $("$PG_CONFIG" --version)"
    if [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
        paygw_msg "build: make clean (last build was not for $want)"
        make -C "$PAYGW_SRC_DIR" --no-print-directory clean "${args[@]}" >/dev/null || return 1
        printf '%s\n' "$want" >"$stamp"
    fi
    paygw_msg "build: make -j2 ${args[*]}  (in $PAYGW_SRC_DIR)"
    make -C "$PAYGW_SRC_DIR" --no-print-directory -j2 "${args[@]}" || return 1
    paygw_msg "install: make install"
    make -C "$PAYGW_SRC_DIR" --no-print-directory install "${args[@]}" || return 1
}

# Create the work dir once and install the cleanup traps.
paygw_workdir_init() {
    (( _paygw_workdir_made )) && return 0
    PAYGW_WORKDIR=$(mktemp -d /tmp/paygw-test.XXXXXX) || paygw_die "mktemp failed"
    _paygw_workdir_made=1
    export PAYGW_WORKDIR
    # INT/TERM exit with the conventional code; the EXIT trap then cleans up.
    trap paygw_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if (( EUID == 0 )); then
        id postgres >/dev/null 2>&1 || paygw_die "OS user postgres missing (install postgresql-15)"
        chown postgres: "$PAYGW_WORKDIR" || paygw_die "chown $PAYGW_WORKDIR failed"
    fi
}

# Print a TCP port on 127.0.0.1 that is free right now (kernel-chosen).
paygw_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
            && return 0
    fi
    local port
    for _ in $(seq 100); do
        port=$(( 20000 + RANDOM % 40000 ))
        # connection refused => nobody listens there
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"; return 0
        fi
    done
    return 1
}

paygw_start_cluster() {
    paygw_find_pg_config
    paygw_workdir_init
    local data=$PAYGW_WORKDIR/data port i ready=0
    paygw_msg "cluster: initdb in $data"
    if ! paygw_as_pg "$PG_BINDIR/initdb" -D "$data" -U postgres -A trust -E UTF8 \
            --locale=C.UTF-8 --no-sync >"$PAYGW_WORKDIR/initdb.log" 2>&1; then
        cat "$PAYGW_WORKDIR/initdb.log" >&2
        paygw_die "initdb failed"
    fi
    if [[ -n ${PAYGW_TEST_CONF:-} ]]; then
        [[ -r $PAYGW_TEST_CONF ]] || paygw_die "PAYGW_TEST_CONF not readable: $PAYGW_TEST_CONF"
        { printf '\n# from PAYGW_TEST_CONF=%s\n' "$PAYGW_TEST_CONF"; cat "$PAYGW_TEST_CONF"; } \
            >>"$data/postgresql.conf"
    fi
    port=$(paygw_free_port) || paygw_die "no free TCP port found"
    _paygw_pgdata=$data
    if ! paygw_as_pg "$PG_BINDIR/pg_ctl" -D "$data" -l "$PAYGW_WORKDIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PAYGW_WORKDIR -c fsync=off" \
            start >"$PAYGW_WORKDIR/pg_ctl.log" 2>&1; then
        cat "$PAYGW_WORKDIR/pg_ctl.log" >&2
        paygw_tail "$PAYGW_WORKDIR/server.log" 80 server.log >&2
        paygw_die "postgres did not start"
    fi
    for (( i = 0; i < 150; i++ )); do
        if "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then ready=1; break; fi
        sleep 0.2
    done
    if (( !ready )); then
        paygw_tail "$PAYGW_WORKDIR/server.log" 80 server.log >&2
        paygw_die "postgres not ready on 127.0.0.1:$port after 30 s"
    fi
    export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
    paygw_msg "cluster: PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}') on 127.0.0.1:$port"
}

paygw_start_emulator() {
    paygw_workdir_init
    local emu=${PAYGW_EMULATOR:-$PAYGW_TEST_DIR/emulator/emulator.py}
    local pfile=$PAYGW_WORKDIR/emu.port port="" i healthy=0
    [[ -f $emu ]] || paygw_die "emulator not found: $emu"
    rm -f "$pfile"
    # stdout/stderr go to emulator.out; the emulator writes its own log.
    (cd "$PAYGW_REPO_DIR" && exec /usr/bin/python3 "$emu" --port 0 --port-file "$pfile" \
        --log "$PAYGW_WORKDIR/emulator.log") >"$PAYGW_WORKDIR/emulator.out" 2>&1 &
    _paygw_emu_pid=$!
    for (( i = 0; i < 100; i++ )); do
        if [[ -s $pfile ]]; then
            port=$(tr -d '[:space:]' <"$pfile")
            [[ $port =~ ^[0-9]+$ ]] && break
            port=""
        fi
        kill -0 "$_paygw_emu_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $port ]]; then
        paygw_tail "$PAYGW_WORKDIR/emulator.out" 40 "emulator stdout/stderr" >&2
        kill -0 "$_paygw_emu_pid" 2>/dev/null || paygw_die "emulator exited before writing its port file"
        paygw_die "emulator did not write its port file within 10 s"
    fi
    for (( i = 0; i < 100; i++ )); do
        if curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port/_control/health"; then
            healthy=1; break
        fi
        kill -0 "$_paygw_emu_pid" 2>/dev/null || break
        sleep 0.1
    done
    if (( !healthy )); then
        paygw_tail "$PAYGW_WORKDIR/emulator.out" 40 "emulator stdout/stderr" >&2
        paygw_die "emulator on port $port not healthy within 10 s"
    fi
    export PAYGW_EMU_PORT=$port
    paygw_msg "emulator: $(basename "$emu") on 127.0.0.1:$port (pid $_paygw_emu_pid)"
}

# paygw_run_logged LOG DIR CMD... -- run CMD in DIR, stdout+stderr to LOG,
# stdin from /dev/null, killed after ${PAYGW_STAGE_TIMEOUT:-900} s (status
# 124).  Runs as a background job and waits for it, so INT/TERM sent to the
# calling script interrupt it at once (cleanup then kills the job).
paygw_run_logged() {
    local log=$1 dir=$2 rc=0
    shift 2
    (cd "$dir" && exec timeout "${PAYGW_STAGE_TIMEOUT:-900}" "$@") >"$log" 2>&1 </dev/null &
    _paygw_job_pid=$!
    wait "$_paygw_job_pid" || rc=$?
    _paygw_job_pid=""
    return "$rc"
}

# Print the tails of the server and emulator logs (for failure reports).
paygw_show_logs() {
    local n=${1:-80}
    paygw_tail "$PAYGW_WORKDIR/server.log" "$n" server.log
    paygw_tail "$PAYGW_WORKDIR/emulator.log" "$n" emulator.log
    if [[ -s $PAYGW_WORKDIR/emulator.out ]]; then
        paygw_tail "$PAYGW_WORKDIR/emulator.out" "$n" "emulator stdout/stderr"
    fi
}

# Stop emulator and cluster, remove (or keep) the work dir.  Idempotent,
# safe under `set -e` (always returns 0).
paygw_stop() {
    local i
    if [[ -n $_paygw_job_pid ]]; then
        # timeout(1) leads its own process group: stop the whole job.
        kill -TERM -- "-$_paygw_job_pid" 2>/dev/null || kill -TERM "$_paygw_job_pid" 2>/dev/null || true
        wait "$_paygw_job_pid" 2>/dev/null || true
        _paygw_job_pid=""
    fi
    if [[ -n $_paygw_emu_pid ]]; then
        kill "$_paygw_emu_pid" 2>/dev/null || true
        for (( i = 0; i < 50; i++ )); do
            kill -0 "$_paygw_emu_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$_paygw_emu_pid" 2>/dev/null || true
        wait "$_paygw_emu_pid" 2>/dev/null || true
        _paygw_emu_pid=""
    fi
    if [[ -n $_paygw_pgdata && -f $_paygw_pgdata/postmaster.pid ]]; then
        paygw_as_pg "$PG_BINDIR/pg_ctl" -D "$_paygw_pgdata" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            paygw_as_pg "$PG_BINDIR/pg_ctl" -D "$_paygw_pgdata" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            paygw_err "could not stop the cluster in $_paygw_pgdata"
    fi
    _paygw_pgdata=""
    if (( _paygw_workdir_made )) && [[ -d $PAYGW_WORKDIR ]]; then
        if [[ ${PAYGW_KEEP:-0} == 1 ]]; then
            paygw_msg "work dir kept: $PAYGW_WORKDIR"
        else
            rm -rf "$PAYGW_WORKDIR"
        fi
    fi
    _paygw_workdir_made=0
    return 0
}

# EXIT trap: clean up and keep the exit status.
paygw_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    paygw_stop
    exit "$rc"
}
