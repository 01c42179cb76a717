#!/usr/bin/env python3
"""test/secret_scan.py -- search everything a paygw test run left behind for
secrets.

Secrets searched for: every credential secret, salt, API key and passphrase
the suite writes (from test/emulator/fixtures.json and the SQL suites), every
line of the test private keys (encrypted and decrypted PEM bodies), and the
keyring keys of sql/secrets.sql in hex and base64.

Where: the server's CSV log (message, detail, hint, context, internal query,
statement), the pg_stat_activity samples, the emulator's log, and the
regression output (results/*.out).

Allowed: the test's own statements that write credentials -- SQL text that
inserts into or updates paygw.credentials (logged by log_statement, shown in
pg_stat_activity, echoed into the regression output, or quoted in an error's
context because a test ran it through EXECUTE).  Anything else is a leak.

Exit status 1 on any leak, or when the search found no occurrence at all
(then it is not searching the right thing).
"""
import argparse
import base64
import csv
import glob
import json
import os
import re
import sys

# secrets too common to search for without false hits (they also occur in
# ordinary words); listed so the omission is deliberate
TOO_COMMON = {"example"}

CSV_FIELDS = {13: "message", 14: "detail", 15: "hint", 16: "internal_query",
              18: "context", 19: "query"}


def collect_secrets(repo):
    secrets = set()
    with open(os.path.join(repo, "test/emulator/fixtures.json"), encoding="utf-8") as f:
        fixtures = json.load(f)
    for accounts in fixtures["accounts"].values():
        for account in accounts:
            for key in ("secret", "salt", "api_key", "additional_key"):
                if key in account:
                    secrets.add(account[key])
    secrets.add("test-alikassa-pass")
    # literal secrets the SQL suites write
    for path in glob.glob(os.path.join(repo, "sql/*.sql")):
        text = open(path, encoding="utf-8").read()
        secrets.update(re.findall(r"'(secret-value-\d+)'", text))
        secrets.update(re.findall(r"'(okepay-test-secret-[A-Za-z0-9]+)'", text))
        secrets.update(re.findall(r"'(INSTANCE_API_SECRET|SECRET_SALT|test-secret)'", text))
        for hexkey in re.findall(r"\\set k\d '([0-9a-f]{64})'", text):
            secrets.add(hexkey)
            secrets.add(base64.b64encode(bytes.fromhex(hexkey)).decode())
    # private key material: every base64 line of the PEM bodies
    for path in (glob.glob(os.path.join(repo, "test/keys/*.pem")) +
                 glob.glob(os.path.join(repo, "test/vectors/*.pem"))):
        if path.endswith(".pub.pem"):
            continue
        for line in open(path, encoding="ascii"):
            line = line.strip()
            if len(line) >= 40 and not line.startswith("-----"):
                secrets.add(line)
    return sorted(s for s in secrets if s and s not in TOO_COMMON and len(s) >= 8)


def writes_credentials(sql):
    """Is this SQL text a statement of the test that writes credentials?"""
    return re.search(r"(INSERT\s+INTO|UPDATE)\s+paygw\.credentials", sql, re.I) is not None


class Scan:
    def __init__(self, secrets):
        self.secrets = secrets
        self.leaks = []
        self.allowed = 0
        self.scanned = {}

    def found(self, text):
        return [s for s in self.secrets if s in text]

    def check(self, source, where, text, exempt):
        hits = self.found(text)
        if not hits:
            return
        if exempt:
            self.allowed += len(hits)
            return
        masked = [h[:4] + "..." for h in hits][:5]
        context = text
        for h in hits:
            context = context.replace(h, "[SECRET]")
        context = " ".join(context.split())[:160]
        self.leaks.append(f"{source} {where}: {', '.join(masked)} in: {context}")

    def count(self, source, n=1):
        self.scanned[source] = self.scanned.get(source, 0) + n


def scan_csv_logs(scan, workdir):
    csv.field_size_limit(sys.maxsize)
    files = sorted(glob.glob(os.path.join(workdir, "data/log/*.csv")))
    if not files:
        scan.leaks.append("no CSV server log found (logging_collector off?)")
    for path in files:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for n, row in enumerate(csv.reader(f), 1):
                scan.count("csv log records")
                for idx, field in CSV_FIELDS.items():
                    if idx >= len(row) or not row[idx]:
                        continue
                    text = row[idx]
                    if field == "message":
                        m = re.match(r"(?:statement|execute [^:]*|duration: [\d.]+ ms\s+statement): (.*)",
                                     text, re.S)
                        exempt = m is not None and writes_credentials(m.group(1))
                    elif field in ("query", "context", "internal_query"):
                        exempt = writes_credentials(text)
                    else:
                        exempt = False
                    scan.check(os.path.basename(path), f"record {n} {field}", text, exempt)


def scan_plain_logs(scan, workdir):
    """stderr logs (the collector's .log files repeat the CSV; server.log has
    what was written before the collector started).  An entry starts with a
    timestamp; continuation lines belong to it.  Statement, query and context
    entries that write credentials are exempt, as in the CSV."""
    paths = sorted(glob.glob(os.path.join(workdir, "data/log/*.log")))
    paths.append(os.path.join(workdir, "server.log"))
    for path in paths:
        if not os.path.exists(path):
            continue
        entries = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if re.match(r"\d{4}-\d\d-\d\d ", line) or not entries:
                    entries.append([n, line])
                else:
                    entries[-1][1] += line
        for n, text in entries:
            scan.count("plain log entries")
            # "LOG:  statement: ..." (with verbose errors: "LOG:  00000: statement: ...")
            statement = re.search(r"\b(?:LOG:\s+(?:[0-9A-Z]{5}:\s+)?(?:statement|execute [^:]*|duration: [\d.]+ ms\s+statement):"
                                  r"|STATEMENT:|CONTEXT:|QUERY:)", text)
            scan.check(os.path.basename(path), f"line {n}", text,
                       statement is not None and writes_credentials(text))


def scan_samples(scan, samples):
    """pg_stat_activity, sampled every 50 ms: each sample starts with a
    <<sample>> marker row, then one row per query (queries may span lines)."""
    with open(samples, encoding="utf-8", errors="replace") as f:
        text = f.read()
    blocks = text.split("<<sample>>")[1:]
    for n, block in enumerate(blocks, 1):
        scan.count("pg_stat_activity samples")
        scan.check("pg_stat_activity", f"sample {n}", block, writes_credentials(block))
    if len(blocks) < 100:
        scan.leaks.append(f"only {len(blocks)} pg_stat_activity samples: the sampler did not run")


def scan_results(scan, repo):
    for path in sorted(glob.glob(os.path.join(repo, "results/*.out"))):
        test = os.path.splitext(os.path.basename(path))[0]
        sql_path = os.path.join(repo, "sql", test + ".sql")
        sql_lines = set(open(sql_path, encoding="utf-8").read().splitlines()) if os.path.exists(sql_path) else set()
        for n, line in enumerate(open(path, encoding="utf-8", errors="replace").read().splitlines(), 1):
            scan.count("regression output lines")
            scan.check(f"results/{test}.out", f"line {n}", line, line in sql_lines)


def scan_emulator(scan, workdir):
    path = os.path.join(workdir, "emulator.log")
    if os.path.exists(path):
        for n, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
            scan.count("emulator log lines")
            scan.check("emulator.log", f"line {n}", line, False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--samples", required=True)
    args = ap.parse_args()

    scan = Scan(collect_secrets(args.repo))
    scan_csv_logs(scan, args.workdir)
    scan_plain_logs(scan, args.workdir)
    scan_samples(scan, args.samples)
    scan_results(scan, args.repo)
    scan_emulator(scan, args.workdir)

    sizes = ", ".join(f"{v} {k}" for k, v in sorted(scan.scanned.items()))
    print(f"secret scan: {len(scan.secrets)} secrets searched in {sizes}")
    print(f"secret scan: {scan.allowed} occurrences inside the tests' own credential-writing statements")
    for leak in scan.leaks[:50]:
        print(f"LEAK {leak}")
    if scan.leaks:
        print(f"secret scan: {len(scan.leaks)} leaks")
        return 1
    if scan.allowed == 0:
        print("secret scan: no occurrence at all -- the search is not looking at the right files")
        return 1
    print("secret scan: 0 leaks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
