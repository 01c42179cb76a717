#!/usr/bin/python3
"""Record the fuzzers' seed corpora from a running gateway emulator.

    /usr/bin/python3 test/fuzz/make-corpus.py PORT OUTDIR

Asks the emulator (test/emulator) for every fixture payment of each gateway, by
the gateway's id and by the merchant's order id where the gateway has one, for
its error replies and for each payload fault mode, and writes each reply as it
came over the wire (status, body bytes, Obmenka's DPAY_SECURE header) in the
fuzz driver's input format (fuzz_driver.c, README.md) to OUTDIR/<target>/.
Requests are signed by test/emulator/selftest.py's client, which implements the
gateways' schemes independently of paygw.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "emulator"))
import selftest  # noqa: E402  (the emulator's independent client)

# fuzz_driver.c's status_codes[]: the index of each code's first occurrence
STATUS_CODES = [200, 200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 422, 429, 500, 503, 599]
LOOKUP_ID, LOOKUP_ORDER = 0, 1

# payload faults: each changes what parse_reply sees (delivery faults do not)
FAULTS = ["malformed", "notjson", "emptybody", "oversize=4000", "status=503", "status=500",
          "status=401", "status=422", "notfound200", "authfail", "nul", "badutf8",
          "deepnest=31", "deepnest=40", "hugenumber", "wrongtypes", "nul,badutf8,wrongtypes"]


def status_index(code):
    return STATUS_CODES.index(code) if code in STATUS_CODES else STATUS_CODES.index(599)


def lenpref(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    assert len(data) <= 255, data
    return bytes([len(data)]) + data


def head(code, lookup, mode=0):
    return bytes([status_index(code) | (lookup << 4) | (mode << 5)])


class Writer:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = {}

    def put(self, target, name, data):
        d = os.path.join(self.outdir, target)
        os.makedirs(d, exist_ok=True)
        safe = "".join(ch if ch.isalnum() or ch in "-_=." else "_" for ch in name)
        with open(os.path.join(d, safe), "wb") as f:
            f.write(data)
        self.count[target] = self.count.get(target, 0) + 1


def record_plain(w, target, name, resp, lookup, ident):
    """okepay, alikassa, morune: head, id, body"""
    w.put(target, name, head(resp.status, lookup) + lenpref(str(ident)) + resp.body)


def record_obmenka(w, name, resp, lookup, ident):
    """obmenka: once signed by the harness (mode 0), once with the header as received
    (mode 5, or 4 when there was none); sigverify: the recorded header (mode 2), and
    the correct signature (mode 0)."""
    sig = resp.header("DPAY_SECURE")
    ident = lenpref(str(ident))
    w.put("obmenka", name, head(resp.status, lookup, 0) + ident + resp.body)
    if sig is None:
        w.put("obmenka", name + ".unsigned", head(resp.status, lookup, 4) + ident + resp.body)
        w.put("sigverify", name + ".unsigned", head(resp.status, lookup, 1) + b"\0" + ident + resp.body)
    else:
        w.put("obmenka", name + ".recorded", head(resp.status, lookup, 5) + ident + lenpref(sig) + resp.body)
        w.put("sigverify", name + ".recorded", head(resp.status, lookup, 2) + b"\0" + ident + lenpref(sig) + resp.body)
    w.put("sigverify", name, head(resp.status, lookup, 0) + b"\0" + ident + resp.body)


def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    c = selftest.Client(port)
    w = Writer(outdir)
    c.reset()
    pay = selftest.FIX["payments"]

    # --- OkePay: id lookups only ---------------------------------------------------
    for p in pay["okepay"]:
        record_plain(w, "okepay", f"fixture-{p['id']}", c.okepay(p["id"]), LOOKUP_ID, p["id"])
    record_plain(w, "okepay", "fixture-0106-leading-zeros", c.okepay("0106"), LOOKUP_ID, "0106")
    record_plain(w, "okepay", "synthetic-1000000", c.okepay(1000000), LOOKUP_ID, 1000000)
    record_plain(w, "okepay", "notfound-999", c.okepay(999), LOOKUP_ID, 999)
    record_plain(w, "okepay", "invalid-id", c.okepay("abc"), LOOKUP_ID, 101)
    record_plain(w, "okepay", "bad-secret", c.okepay(101, secret="wrong"), LOOKUP_ID, 101)
    record_plain(w, "okepay", "unknown-instance", c.okepay(101, instance="nobody"), LOOKUP_ID, 101)
    for f in FAULTS:
        record_plain(w, "okepay", f"fault-{f}", c.okepay(106, prefix=f"/_fault/{f}"), LOOKUP_ID, 106)

    # --- Obmenka: tracking or payment_id ---------------------------------------------
    for p in pay["obmenka"]:
        t = p["tracking"]
        record_obmenka(w, f"fixture-{t}-id", c.obmenka({"tracking": t}), LOOKUP_ID, t)
        record_obmenka(w, f"fixture-{t}-order", c.obmenka({"payment_id": p["payment_id"]}),
                       LOOKUP_ORDER, p["payment_id"])
    record_obmenka(w, "synthetic-bench", c.obmenka({"tracking": "bench-1"}), LOOKUP_ID, "bench-1")
    record_obmenka(w, "notfound", c.obmenka({"tracking": "NOPE-1"}), LOOKUP_ID, "NOPE-1")
    record_obmenka(w, "wrong-salt", c.obmenka({"tracking": "79DF-60B0-1702"}, salt="wrong"),
                   LOOKUP_ID, "79DF-60B0-1702")
    record_obmenka(w, "unknown-client", c.obmenka({"tracking": "79DF-60B0-1702"}, client="999"),
                   LOOKUP_ID, "79DF-60B0-1702")
    record_obmenka(w, "invalid-request", c.obmenka(b"[]"), LOOKUP_ID, "79DF-60B0-1702")
    for f in FAULTS + ["badsig", "nosig"]:
        record_obmenka(w, f"fault-{f}", c.obmenka({"tracking": "79DF-60B0-1702"}, prefix=f"/_fault/{f}"),
                       LOOKUP_ID, "79DF-60B0-1702")
    # sigverify: the other header modes, on one signed status reply
    base = c.obmenka({"tracking": "79DF-60B0-1702"})
    ident = lenpref("79DF-60B0-1702")
    for mode, extra in ((3, b"\x10"), (4, lenpref("=")), (5, b"\x05B"), (6, b"\x00x"), (7, b"")):
        w.put("sigverify", f"mode{mode}", head(200, LOOKUP_ID, mode) + b"\0" + ident + extra + base.body)
    w.put("sigverify", "own-salt", head(200, LOOKUP_ID, 0) + lenpref("another-salt-for-fuzzing") + ident + base.body)

    # --- AliKassa: id or order_id ------------------------------------------------------
    for p in pay["alikassa"]:
        record_plain(w, "alikassa", f"fixture-{p['id']}-id", c.alikassa({"id": p["id"]}), LOOKUP_ID, p["id"])
        record_plain(w, "alikassa", f"fixture-{p['id']}-order", c.alikassa({"order_id": p["order_id"]}),
                     LOOKUP_ORDER, p["order_id"])
    record_plain(w, "alikassa", "sha256-account", c.alikassa({"id": 100000537}, account=selftest.ALI_SHA256),
                 LOOKUP_ID, 100000537)
    record_plain(w, "alikassa", "synthetic-bench", c.alikassa({"order_id": "bench-1"}), LOOKUP_ORDER, "bench-1")
    record_plain(w, "alikassa", "notfound", c.alikassa({"id": 999}), LOOKUP_ID, 999)
    record_plain(w, "alikassa", "bad-sign", c.alikassa({"id": 100000537}, sign="not base64!"), LOOKUP_ID, 100000537)
    record_plain(w, "alikassa", "invalid-request", c.alikassa({}), LOOKUP_ID, 100000537)
    for f in FAULTS:
        record_plain(w, "alikassa", f"fault-{f}", c.alikassa({"id": 100000537}, prefix=f"/_fault/{f}"),
                     LOOKUP_ID, 100000537)

    # --- Morune: invoice_id or order_id --------------------------------------------------
    for p in pay["morune"]:
        inv = p["invoice_id"]
        record_plain(w, "morune", f"fixture-{inv[-4:]}-id", c.morune(params=[("invoice_id", inv)]),
                     LOOKUP_ID, inv)
        record_plain(w, "morune", f"fixture-{inv[-4:]}-order", c.morune(params=[("order_id", p["order_id"])]),
                     LOOKUP_ORDER, p["order_id"])
    inv = pay["morune"][1]["invoice_id"]
    record_plain(w, "morune", "fixture-upper-case-id", c.morune(params=[("invoice_id", inv.upper())]),
                 LOOKUP_ID, inv.upper())
    record_plain(w, "morune", "synthetic-bench", c.morune(params=[("order_id", "bench-1")]), LOOKUP_ORDER, "bench-1")
    missing = "a3e9ff6f-c5c1-4bcd-854e-000000000000"
    record_plain(w, "morune", "notfound", c.morune(params=[("invoice_id", missing)]), LOOKUP_ID, missing)
    record_plain(w, "morune", "bad-key", c.morune(params=[("invoice_id", inv)], key="wrong"), LOOKUP_ID, inv)
    record_plain(w, "morune", "validation-error", c.morune(params=[("invoice_id", "x")]), LOOKUP_ID, inv)
    for f in FAULTS:
        record_plain(w, "morune", f"fault-{f}", c.morune(params=[("invoice_id", inv)], prefix=f"/_fault/{f}"),
                     LOOKUP_ID, inv)

    for target in sorted(w.count):
        print(f"{target}: {w.count[target]} seeds")


if __name__ == "__main__":
    main()
