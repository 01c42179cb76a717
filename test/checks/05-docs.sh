#!/usr/bin/env bash
# test/checks/05-docs.sh -- the tables in README.md that mirror code cannot
# drift from it:
#   - the error table: every error class of src/errors.c (SQLSTATE and name)
#     has its row, and no row names a class that does not exist;
#   - the configuration table: exactly the settings the loaded library
#     defines (pg_settings), each with the default the library has;
#   - META.json and paygw.control name the same version.
set -euo pipefail
. "$(dirname "$0")/lib.bash"
repo=$PAYGW_SRC_DIR

# --- errors -------------------------------------------------------------------
python3 - "$repo" <<'PY' || check_fail "README error table and src/errors.c differ"
import re, sys
repo = sys.argv[1]
code = open(f"{repo}/src/errors.c", encoding="utf-8").read()
classes = {}
for m in re.finditer(r"\{PAYGW_ERR_\w+,\s*(PW\('(\d)',\s*'(\d)',\s*'(\d)'\)|ERRCODE_\w+),\s*\"(\w+)\"\}", code):
    state = "PW" + m.group(2) + m.group(3) + m.group(4) if m.group(2) else m.group(1)
    classes[state] = m.group(5)
readme = open(f"{repo}/README.md", encoding="utf-8").read()
rows = dict(re.findall(r"^\| `(PW\d{3})` \| `(\w+)` \|", readme, re.M))
pw = {k: v for k, v in classes.items() if k.startswith("PW")}
bad = False
for state, name in sorted(pw.items()):
    if rows.get(state) != name:
        print(f"README lacks or misnames {state} {name} (README: {rows.get(state)})"); bad = True
for state in sorted(set(rows) - set(pw)):
    print(f"README documents {state}, which src/errors.c does not define"); bad = True
print(f"error classes: {len(pw)} PW codes in src/errors.c, {len(rows)} rows in README")
sys.exit(1 if bad else 0)
PY

# --- settings -------------------------------------------------------------------
q -d postgres -c "SELECT name, COALESCE(boot_val, ''), COALESCE(unit, ''), vartype FROM pg_settings WHERE name LIKE 'paygw.%' ORDER BY 1" \
    > "$PAYGW_WORKDIR/settings.txt"
python3 - "$repo" "$PAYGW_WORKDIR/settings.txt" <<'PY' || check_fail "README configuration table and the library's settings differ"
import re, subprocess, sys
repo, path = sys.argv[1], sys.argv[2]
live = {}
for line in open(path, encoding="utf-8"):
    name, boot, unit, vartype = line.rstrip("\n").split("|")
    live[name] = (boot, unit, vartype)
readme = open(f"{repo}/README.md", encoding="utf-8").read()
rows = dict(re.findall(r"^\| `(paygw\.\w+)` \| ([^|]+?) \|", readme, re.M))
bad = False
for name in sorted(set(live) ^ set(rows)):
    where = "the library" if name in live else "README"
    print(f"{name} is only in {where}"); bad = True
def psql(sql):
    return subprocess.run(["psql", "-X", "-q", "-At", "-d", "postgres", "-c", sql],
                          capture_output=True, text=True).stdout.strip()
for name in sorted(set(live) & set(rows)):
    boot, unit, vartype = live[name]
    doc = rows[name].strip()
    m = re.fullmatch(r"`([^`]*)`", doc)
    if m is None:                       # "empty (none)" and the like
        ok = boot == ""
    elif vartype in ("integer", "real") and unit:
        # let PostgreSQL read the documented value in the setting's unit
        got = psql(f"BEGIN; SET LOCAL {name} = '{m.group(1)}'; SELECT setting FROM pg_settings WHERE name = '{name}'; ROLLBACK;")
        ok = got.splitlines()[-1:] == [boot] if got else False
    else:
        ok = m.group(1) == boot
    if not ok:
        print(f"{name}: README says {doc}, the library's default is {boot!r} {unit}"); bad = True
print(f"settings: {len(live)} in the library, {len(rows)} rows in README")
sys.exit(1 if bad else 0)
PY

# --- versions -------------------------------------------------------------------
control=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$repo/paygw.control")
meta=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['version'])" "$repo/META.json")
[ "$meta" = "$control.0" ] || check_fail "META.json version $meta is not paygw.control's $control"
echo "versions: paygw.control $control, META.json $meta"
check_ok "README's error and settings tables and META.json match the code"
