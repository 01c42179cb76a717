#!/usr/bin/env bash
# test/fuzz/make-corpus.sh -- (re)record the seed corpora in test/fuzz/corpus/
# from the gateway emulator: every fixture of each gateway, its error replies
# and its payload fault modes, as the fuzz driver's inputs (make-corpus.py).
#
#   bash test/fuzz/make-corpus.sh [OUTDIR]     (default test/fuzz/corpus)
#
# The old seeds in OUTDIR/<target>/ are replaced.  Needs /usr/bin/python3 with
# the cryptography package (test/install-deps.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/lib.sh
. "$here/../lib.sh"

out=${1:-$here/corpus}
paygw_start_emulator
tmp=$PAYGW_WORKDIR/corpus
/usr/bin/python3 "$here/make-corpus.py" "$PAYGW_EMU_PORT" "$tmp"
for target in okepay obmenka alikassa morune sigverify; do
    [[ -d $tmp/$target ]] || paygw_die "no seeds recorded for $target"
    rm -rf "${out:?}/$target"
    mkdir -p "$out"
    cp -r "$tmp/$target" "$out/$target"
done
paygw_msg "seed corpora written to $out ($(du -sh "$out" | cut -f1))"
