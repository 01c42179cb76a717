#!/usr/bin/env bash
# test/demo.sh -- `make demo`: build and install paygw, start a throwaway
# cluster and the gateway emulator, register one credential per gateway and
# query a payment from each (SQL in test/demo.sql), then stop everything.
#
#   bash test/demo.sh [--no-install] [--keep]
#
# Exit: 0 demo ran, 1 the demo SQL failed, 2 setup failed.
set -euo pipefail

# shellcheck source=test/lib.sh
. "$(dirname "$0")/lib.sh"

install=1
for arg in "$@"; do
    case $arg in
        --no-install) install=0 ;;
        --keep) export PAYGW_KEEP=1 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "demo: unknown option: $arg" >&2; exit 2 ;;
    esac
done

if (( install )); then
    bash "$PAYGW_TEST_DIR/install-deps.sh" || paygw_die "install-deps failed"
fi
# The build's output goes to a log, shown only when it fails.
paygw_find_pg_config
build_log=$(mktemp /tmp/paygw-demo-build.XXXXXX) || paygw_die "mktemp failed"
paygw_msg "build + install (make, make install; log: $build_log)"
if ! paygw_build_install >"$build_log" 2>&1; then
    cat "$build_log" >&2
    paygw_die "build/install failed (log kept: $build_log)"
fi
rm -f "$build_log"
# the worker runs in "postgres", where the demo creates the extension; every
# other setting at its default
demo_conf=$(mktemp /tmp/paygw-demo-conf.XXXXXX) || paygw_die "mktemp failed"
printf "shared_preload_libraries = 'paygw'\npaygw.database = 'postgres'\n" >"$demo_conf"
chmod 644 "$demo_conf"
PAYGW_TEST_CONF=$demo_conf paygw_start_cluster
rm -f "$demo_conf"
paygw_start_emulator

pem_file=$PAYGW_TEST_DIR/keys/alikassa-test.pem
[[ -r $pem_file ]] || paygw_die "missing $pem_file"

paygw_msg "demo: psql -f test/demo.sql"
# Test-only secrets (they match test/emulator/fixtures.json), handed to psql
# as variables; demo.sql uses them as :'name' literals.  The private key is
# read by psql itself from its file (\set pem `cat ...` in demo.sql), the way
# the README recommends for real secrets.
rc=0
psql -X -v ON_ERROR_STOP=1 \
    -v emu_url="http://127.0.0.1:$PAYGW_EMU_PORT" \
    -v okepay_secret=okepay-test-secret-7Qx \
    -v obmenka_salt=obmenka-test-salt-9Kp \
    -v pem_file="$pem_file" \
    -v alikassa_pass=test-alikassa-pass \
    -v morune_key=morune-test-key-d6be9962 \
    -v morune_additional_key=morune-test-addkey-5e1f0c27 \
    -v notify_pem_file="$PAYGW_TEST_DIR/keys/alikassa-notify.pub.pem" \
    -f "$PAYGW_TEST_DIR/demo.sql" </dev/null || rc=$?

if (( rc != 0 )); then
    paygw_err "demo SQL failed (psql exit $rc)"
    paygw_show_logs 80
    exit 1
fi

cat <<EOF

What happened: paygw ran inside a throwaway PostgreSQL 15 cluster
(127.0.0.1:$PGPORT).  Each row above is a live HTTP API call made by
the extension from SQL to a local emulator of the gateway (okepay, obmenka,
alikassa, morune on 127.0.0.1:$PAYGW_EMU_PORT), signed with the credential
stored in paygw.credentials (alikassa: RSA signature with the encrypted PEM
key), and the gateway's answer mapped to a common status.  The last call
shows how a gateway's "not found" reaches SQL: an error with SQLSTATE PW010.
Then each gateway went through a whole payment: paygw_create_invoice made the
signed create call and tracked the invoice, the emulator took the payment and
produced the gateway's webhook, paygw_webhook checked it (Morune's HMAC,
AliKassa's RSA signature) and made the invoice due, and the worker confirmed
each payment with a signed status call: one event and one NOTIFY per change.
Everything is stopped and removed now (use --keep to keep logs and data).
EOF
