#!/usr/bin/env bash
# test/checks/05-docs.sh -- the documentation cannot drift from the code:
#   - the error table (docs/reference.md, and only there): every error class
#     of src/errors.c (SQLSTATE and name) has its row, exactly once, and no
#     row names a class that does not exist;
#   - the settings tables (the full one in docs/reference.md, the short one
#     in README.md; no other page has one): exactly the settings the loaded
#     library defines (pg_settings), each once, with the default the library
#     has;
#   - META.json and paygw.control name the same version, and META.json's
#     docfile exists;
#   - every relative link in README.md, CHANGELOG.md and docs/*.md leads to
#     an existing file, and its #anchor to a heading there
#     (test/check-doc-links.py).
set -euo pipefail
. "$(dirname "$0")/lib.bash"
repo=$PAYGW_SRC_DIR

# --- errors -------------------------------------------------------------------
python3 - "$repo" <<'PY' || check_fail "the error table of docs/reference.md and src/errors.c differ"
import glob, os, re, sys
repo = sys.argv[1]
code = open(f"{repo}/src/errors.c", encoding="utf-8").read()
classes = {}
for m in re.finditer(r"\{PAYGW_ERR_\w+,\s*(PW\('(\d)',\s*'(\d)',\s*'(\d)'\)|ERRCODE_\w+),\s*\"(\w+)\"\}", code):
    state = "PW" + m.group(2) + m.group(3) + m.group(4) if m.group(2) else m.group(1)
    classes[state] = m.group(5)
ROW = re.compile(r"^\| `(PW\d{3})` \| `(\w+)` \|", re.M)
home = "docs/reference.md"
pages = ["README.md"] + sorted(os.path.relpath(p, repo) for p in glob.glob(f"{repo}/docs/*.md"))
bad = False
for page in pages:
    found = ROW.findall(open(f"{repo}/{page}", encoding="utf-8").read())
    if page != home and found:
        print(f"{page} has {len(found)} error table rows; the table lives in {home} only"); bad = True
found = ROW.findall(open(f"{repo}/{home}", encoding="utf-8").read())
rows = dict(found)
for state in sorted({s for s, _ in found if [x for x, _ in found].count(s) > 1}):
    print(f"{home} has more than one row for {state}"); bad = True
pw = {k: v for k, v in classes.items() if k.startswith("PW")}
if not pw:
    print("no PW error classes found in src/errors.c (has its table changed form?)"); bad = True
for state, name in sorted(pw.items()):
    if rows.get(state) != name:
        print(f"{home} lacks or misnames {state} {name} (it says: {rows.get(state)})"); bad = True
for state in sorted(set(rows) - set(pw)):
    print(f"{home} documents {state}, which src/errors.c does not define"); bad = True
print(f"error classes: {len(pw)} PW codes in src/errors.c, {len(found)} rows in {home}")
sys.exit(1 if bad else 0)
PY

# --- settings -------------------------------------------------------------------
q -d postgres -c "SELECT name, COALESCE(boot_val, ''), COALESCE(unit, ''), vartype FROM pg_settings WHERE name LIKE 'paygw.%' ORDER BY 1" \
    > "$PAYGW_WORKDIR/settings.txt"
python3 - "$repo" "$PAYGW_WORKDIR/settings.txt" <<'PY' || check_fail "a settings table and the library's settings differ"
import glob, os, re, subprocess, sys
repo, path = sys.argv[1], sys.argv[2]
live = {}
for line in open(path, encoding="utf-8"):
    name, boot, unit, vartype = line.rstrip("\n").split("|")
    live[name] = (boot, unit, vartype)
ROW = re.compile(r"^\| `(paygw\.\w+)` \| ([^|]+?) \|", re.M)
tables = ["docs/reference.md", "README.md"]   # the full table, the README's short one
pages = ["README.md"] + sorted(os.path.relpath(p, repo) for p in glob.glob(f"{repo}/docs/*.md"))
def psql(sql):
    return subprocess.run(["psql", "-X", "-q", "-At", "-d", "postgres", "-c", sql],
                          capture_output=True, text=True).stdout.strip()
bad = False
if not live:
    print("the library defines no paygw.* setting (is it loaded?)"); bad = True
for page in pages:
    found = ROW.findall(open(f"{repo}/{page}", encoding="utf-8").read())
    if page not in tables:
        if found:
            print(f"{page} has {len(found)} settings table rows; settings tables live in {' and '.join(tables)} only"); bad = True
        continue
    rows = dict(found)
    names = [n for n, _ in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        print(f"{page}: more than one row for {name}"); bad = True
    for name in sorted(set(live) ^ set(rows)):
        where = "the library" if name in live else page
        print(f"{page}: {name} is only in {where}"); bad = True
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
            print(f"{page}: {name}: says {doc}, the library's default is {boot!r} {unit}"); bad = True
    print(f"settings: {len(live)} in the library, {len(found)} rows in {page}")
sys.exit(1 if bad else 0)
PY

# --- versions -------------------------------------------------------------------
control=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$repo/paygw.control")
meta=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['version'])" "$repo/META.json")
[ "$meta" = "$control.0" ] || check_fail "META.json version $meta is not paygw.control's $control"
echo "versions: paygw.control $control, META.json $meta"
docfile=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['provides']['paygw'].get('docfile', ''))" "$repo/META.json")
[ -z "$docfile" ] || [ -f "$repo/$docfile" ] || check_fail "META.json's docfile $docfile does not exist"

# --- links ----------------------------------------------------------------------
python3 "$(dirname "$0")/../check-doc-links.py" "$repo" || check_fail "broken links in the documentation"

check_ok "docs/reference.md's error and settings tables, README's settings table, META.json and the documentation's links match the code"
