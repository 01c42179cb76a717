#!/usr/bin/python3
"""Self-test of the paygw gateway emulator.

Starts emulator.py on a free loopback port, acts as a correct client of each gateway
(the signing schemes are implemented here independently of the emulator), checks every
fixture's reply, every error answer, every fault mode on the wire, the control API, the
HTTP layer and the command line.  Prints failures as they happen and `N passed, N failed`
as its last line; exits non-zero on any failure.

    /usr/bin/python3 selftest.py [-v]
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "emulator.py")
FIXTURES = os.path.join(HERE, "fixtures.json")
KEYS = os.path.normpath(os.path.join(HERE, "..", "keys"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
VERBOSE = "-v" in sys.argv[1:]

ALIKASSA_KEY = os.path.join(KEYS, "alikassa-test.pem")
ALIKASSA_PLAIN_KEY = os.path.join(KEYS, "alikassa-test-plain.pem")
ALIKASSA_OTHER_KEY = os.path.join(KEYS, "alikassa-other.pem")
ALIKASSA_PASS = b"test-alikassa-pass"

with open(FIXTURES, encoding="utf-8") as _f:
    FIX = json.load(_f)
OKEPAY = FIX["accounts"]["okepay"][0]
OBMENKA = FIX["accounts"]["obmenka"][0]
ALI_SHA1 = next(a for a in FIX["accounts"]["alikassa"] if a.get("digest", "sha1") == "sha1")
ALI_SHA256 = next(a for a in FIX["accounts"]["alikassa"] if a.get("digest") == "sha256")
MORUNE = FIX["accounts"]["morune"][0]

SENT_SECRETS = set()       # every signature or key sent: must never reach the log


# ======================================================================================
# Signing helpers, written from PROVIDERS.md
# ======================================================================================

def php_urlencode(value):
    """PHP urlencode: A-Za-z0-9 and -_. kept, space as '+', the rest %XX upper-case."""
    out = []
    for byte in str(value).encode("utf-8"):
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in "-_."):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


def http_build_query(pairs):
    """PHP http_build_query for flat pairs: nulls dropped, booleans as 1/0."""
    parts = []
    for key, value in pairs:
        if value is None:
            continue
        if value is True or value is False:
            value = "1" if value else "0"
        parts.append(f"{php_urlencode(key)}={php_urlencode(value)}")
    return "&".join(parts)


def okepay_sign(secret, message):
    mac = hmac.new(secret.encode("utf-8"), message.encode("latin-1"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def obmenka_sign(salt, body):
    salt = salt.encode("utf-8")
    inner = base64.b64encode(hashlib.sha1(body).digest())
    return base64.b64encode(hashlib.md5(salt + inner + salt).digest()).decode("ascii")


_private_keys = {}


def load_private(path, password=None):
    if path not in _private_keys:
        with open(path, "rb") as f:
            _private_keys[path] = serialization.load_pem_private_key(f.read(), password=password)
    return _private_keys[path]


def alikassa_sign(body, digest="sha1", key_path=ALIKASSA_KEY, password=ALIKASSA_PASS):
    key = load_private(key_path, password)
    algorithm = hashes.SHA1() if digest == "sha1" else hashes.SHA256()
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), algorithm)).decode("ascii")


def morune_webhook_sign(key, body_obj):
    text = json.dumps(body_obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


# ======================================================================================
# A raw HTTP/1.1 client that reports exactly what came over the wire
# ======================================================================================

class Resp:
    """One response.  `end`: complete, eof (closed early), reset (RST), timeout."""

    def __init__(self):
        self.status = None
        self.headers = {}
        self.header_list = []
        self.body = b""
        self.end = None
        self.chunked = False
        self.elapsed = 0.0

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<Resp {self.status} end={self.end} body={self.body[:160]!r}>"


class Closed(Exception):
    pass


class Conn:
    """A client connection; several requests may be sent on it (keep-alive).  TLS runs
    over memory BIOs so that a TCP RST under TLS is seen as such, not as a TLS EOF."""

    def __init__(self, port, timeout=10.0, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.tls = None
        if tls is not None:
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = tls.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
            while True:
                try:
                    self.tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush_tls()
                    self._recv_tls()
            self._flush_tls()

    def _flush_tls(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _recv_tls(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.incoming.write(data)

    def settimeout(self, seconds):
        self.sock.settimeout(seconds)

    def send(self, data):
        if self.tls is None:
            self.sock.sendall(data)
        else:
            self.tls.write(data)
            self._flush_tls()

    def recv(self, n):
        """Application bytes; b"" on a clean close."""
        if self.tls is None:
            return self.sock.recv(n)
        while True:
            try:
                return self.tls.read(n)
            except ssl.SSLWantReadError:
                try:
                    self._recv_tls()
                except Closed:
                    return b""
            except ssl.SSLZeroReturnError:
                return b""

    def _fill(self):
        data = self.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def read_until(self, sep):
        while sep not in self.buf:
            self._fill()
        index = self.buf.index(sep) + len(sep)
        data, self.buf = self.buf[:index], self.buf[index:]
        return data

    def read_exact(self, n, sink):
        while len(self.buf) < n:
            try:
                self._fill()
            except BaseException:
                sink.extend(self.buf)
                self.buf = b""
                raise
        sink.extend(self.buf[:n])
        self.buf = self.buf[n:]

    def request(self, method, target, headers=(), body=b"", version="HTTP/1.1"):
        lines = [f"{method} {target} {version}", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return self.read_response()

    def read_response(self):
        resp, started = Resp(), time.monotonic()
        body = bytearray()
        try:
            while True:
                head = self.read_until(b"\r\n\r\n")
                lines = head[:-4].decode("latin-1").split("\r\n")
                resp.status = int(lines[0].split(" ")[1])
                if resp.status >= 200:
                    break
            for line in lines[1:]:
                name, _, value = line.partition(":")
                resp.header_list.append((name, value.strip()))
                resp.headers[name.lower()] = value.strip()
            if resp.header("transfer-encoding") == "chunked":
                resp.chunked = True
                while True:
                    size = int(self.read_until(b"\r\n")[:-2].split(b";")[0], 16)
                    if size == 0:
                        self.read_until(b"\r\n")
                        break
                    self.read_exact(size, body)
                    self.read_until(b"\r\n")
            elif resp.header("content-length") is not None:
                self.read_exact(int(resp.header("content-length")), body)
            else:
                while True:
                    self._fill()
                    body.extend(self.buf)
                    self.buf = b""
            resp.end = "complete"
        except Closed:
            resp.end = "eof" if resp.header("content-length") or resp.chunked or resp.status is None else "complete"
        except ConnectionResetError:
            resp.end = "reset"
        except (socket.timeout, TimeoutError):
            resp.end = "timeout"
        resp.body = bytes(body)
        resp.elapsed = time.monotonic() - started
        return resp

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Client:
    """Requests to one running emulator, each gateway signed the documented way."""

    def __init__(self, port, tls=None):
        self.port = port
        self.tls = tls

    def raw(self, method, target, headers=(), body=b"", timeout=10.0, version="HTTP/1.1"):
        conn = Conn(self.port, timeout, self.tls)
        try:
            started = time.monotonic()
            resp = conn.request(method, target, headers, body, version)
            resp.elapsed = time.monotonic() - started
            return resp
        finally:
            conn.close()

    # -- OkePay ----------------------------------------------------------------------

    def okepay_target(self, gid, extra="", instance=None, secret=None, prefix="",
                      signature=None, encode_signature=True, resource="Gateway", slash=True):
        instance = OKEPAY["instance"] if instance is None else instance
        secret = OKEPAY["secret"] if secret is None else secret
        if signature is None:
            signature = okepay_sign(secret, extra)
        SENT_SECRETS.add(signature)
        encoded = php_urlencode(signature) if encode_signature else signature
        query = f"instance={php_urlencode(instance)}" + (f"&{extra}" if extra else "") + f"&ApiSignature={encoded}"
        path = f"/v1.0/{resource}/" + (f"{gid}/" if gid is not None else "")
        if not slash:
            path = path.rstrip("/")
        return f"{prefix}/okepay{path}?{query}"

    def okepay(self, gid, **kw):
        timeout = kw.pop("timeout", 10.0)
        return self.raw("GET", self.okepay_target(gid, **kw), timeout=timeout)

    # -- Obmenka -----------------------------------------------------------------------

    def obmenka_headers(self, body, client=None, salt=None, ctype="application/json", sign=True):
        headers = []
        if ctype is not None:
            headers.append(("Content-Type", ctype))
        headers.append(("DPAY_CLIENT", OBMENKA["client"] if client is None else client))
        if sign:
            signature = obmenka_sign(OBMENKA["salt"] if salt is None else salt, body)
            SENT_SECRETS.add(signature)
            headers.append(("DPAY_SECURE", signature))
        return headers

    def obmenka(self, body, prefix="", timeout=10.0, **kw):
        if not isinstance(body, bytes):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return self.raw("POST", f"{prefix}/obmenka/api/einvoice/status",
                        self.obmenka_headers(body, **kw), body, timeout)

    # -- AliKassa ----------------------------------------------------------------------

    def alikassa(self, body, account=None, digest=None, key_path=ALIKASSA_KEY, password=ALIKASSA_PASS,
                 ctype="application/json", sign=None, prefix="", timeout=10.0):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")            # like PHP json_encode: \u escapes
        account = account or ALI_SHA1
        if isinstance(account, dict):
            digest = digest or account.get("digest", "sha1")
            account = account["account"]
        if sign is None:
            sign = alikassa_sign(body, digest or "sha1", key_path, password)
        if isinstance(sign, str):
            SENT_SECRETS.add(sign)
        headers = [("Content-Type", ctype), ("Account", account)]
        if sign is not False:
            headers.append(("Sign", sign))
        return self.raw("POST", f"{prefix}/alikassa/v1/payment/status", headers, body, timeout)

    # -- Morune ------------------------------------------------------------------------

    def morune(self, query=None, params=(), key=None, prefix="", timeout=10.0, send_key=True):
        if query is None:
            query = http_build_query([("shop_id", MORUNE["shop_id"])] + list(params))
        key = MORUNE["api_key"] if key is None else key
        headers = [("Accept", "application/json")]
        if send_key:
            headers.append(("x-api-key", key))
        return self.raw("GET", f"{prefix}/morune/invoice/info?{query}", headers, timeout=timeout)

    # -- control -----------------------------------------------------------------------

    def control(self, name, obj=None):
        if obj is None and name in ("health", "stats"):
            resp = self.raw("GET", f"/_control/{name}")
        else:
            resp = self.raw("POST", f"/_control/{name}", [("Content-Type", "application/json")],
                            json.dumps(obj if obj is not None else {}).encode())
        return resp

    def stats(self):
        return self.control("stats").json()

    def reset(self):
        return self.control("reset").status


# ======================================================================================
# Test bookkeeping
# ======================================================================================

class Suite:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            if VERBOSE:
                print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}", flush=True)
        return bool(cond)

    def eq(self, name, got, want):
        return self.check(name, got == want, f"got {got!r}, want {want!r}")

    def run(self, section, *args):
        print(f"-- {section.__name__}", flush=True)
        try:
            section(self, *args)
        except Exception:
            self.failed += 1
            print(f"FAIL {section.__name__} crashed:\n{traceback.format_exc()}", flush=True)


def view(payment):
    return {k: v for k, v in payment.items() if not k.startswith("_")}


def json_or_none(resp):
    try:
        return resp.json()
    except Exception:
        return None


def check_json_reply(t, name, resp, code, obj):
    t.eq(f"{name}: status", resp.status, code)
    t.eq(f"{name}: content type", resp.header("content-type"), "application/json")
    t.eq(f"{name}: complete", resp.end, "complete")
    t.eq(f"{name}: body", json_or_none(resp), obj)


def check_obmenka_signed(t, name, resp, salt=None):
    want = obmenka_sign(OBMENKA["salt"] if salt is None else salt, resp.body)
    t.eq(f"{name}: reply DPAY_SECURE", resp.header("DPAY_SECURE"), want)


def wait_for(predicate, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# ======================================================================================
# Sections
# ======================================================================================

def test_vectors(t, c):
    s = "INSTANCE_API_SECRET"
    t.eq("okepay vector empty", okepay_sign(s, ""), "xjWOoDWMQeBLqHTQ4CykcylL3Ogj7jkgxLIalBAqDj0=")
    message = http_build_query([("model", "Page"), ("id", 17)])
    t.eq("okepay build model/id", message, "model=Page&id=17")
    t.eq("okepay vector model/id", okepay_sign(s, message), "ZLiHCeXICSOqWkuq9GoWGBosQQK19X3ur0fL5DdAVrs=")
    message = http_build_query([("purpose", "Order 42 ~test"), ("referenceId", "inv-ä/1"), ("gone", None)])
    t.eq("okepay build encoded", message, "purpose=Order+42+%7Etest&referenceId=inv-%C3%A4%2F1")
    t.eq("okepay vector encoded", okepay_sign(s, message), "/lk33j1shJOPWBSiQ8pFMuwIpuNb8wQvceT7j8M+ZJg=")
    t.eq("okepay vector test-secret", okepay_sign("test-secret", "model=Page&id=17"),
         "zp8vWZDr2rL9gGz3TxuYoxR6/rZFt2mJrqkLj5cwgXI=")
    t.eq("php booleans", http_build_query([("a", True), ("b", False)]), "a=1&b=0")

    t.eq("obmenka vector empty", obmenka_sign(s, b""), "dqKfvNJnQpErkkeDaRLH4Q==")
    t.eq("obmenka vector payment_id", obmenka_sign(s, b'{"payment_id":"6623237"}'), "AjfQ5UrOrKXaC2Mzj4Mbuw==")
    t.eq("obmenka vector SECRET_SALT", obmenka_sign("SECRET_SALT", b'{"payment_id":"6623237"}'),
         "2LH9D6z5tqZfL1IJkTbe/A==")

    webhook = json.loads('{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},'
                         '"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a",'
                         '"order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card",'
                         '"pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279",'
                         '"status":"success","type":1}')
    t.eq("morune webhook vector", morune_webhook_sign("example", webhook),
         "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136")

    body = b'{"id":"100000536"}'
    with open(os.path.join(KEYS, "alikassa-test.pub.pem"), "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    for digest, algorithm in (("sha1", hashes.SHA1()), ("sha256", hashes.SHA256())):
        sig = alikassa_sign(body, digest)
        plain = alikassa_sign(body, digest, ALIKASSA_PLAIN_KEY, None)
        t.eq(f"alikassa {digest}: encrypted and plain key agree", sig, plain)
        try:
            public.verify(base64.b64decode(sig), body, padding.PKCS1v15(), algorithm)
            verified = True
        except Exception:
            verified = False
        t.check(f"alikassa {digest}: verifies with the public key", verified)
        if shutil.which("openssl"):
            with tempfile.NamedTemporaryFile() as f:
                f.write(body)
                f.flush()
                out = subprocess.run(["openssl", "dgst", f"-{digest}", "-sign", ALIKASSA_KEY, "-passin",
                                      f"pass:{ALIKASSA_PASS.decode()}", f.name],
                                     capture_output=True, check=False)
            t.eq(f"alikassa {digest}: openssl CLI agrees", base64.b64encode(out.stdout).decode(), sig)


def test_health(t, c):
    resp = c.control("health")
    check_json_reply(t, "health", resp, 200, {"ok": True})
    t.eq("reset", c.reset(), 200)


def test_fixtures_okepay(t, c):
    c.reset()
    for p in FIX["payments"]["okepay"]:
        if "_sequence" in p:
            continue
        want = {"status": "success", "data": [view(p)]}
        check_json_reply(t, f"okepay {p['id']}", c.okepay(p["id"]), 200, want)
        check_json_reply(t, f"okepay {p['id']} no slash", c.okepay(p["id"], slash=False), 200, want)
    seq = next(p for p in FIX["payments"]["okepay"] if "_sequence" in p)
    statuses = []
    for _ in range(len(seq["_sequence"]) + 2):
        body = json_or_none(c.okepay(seq["id"]))
        statuses.append(body and body["data"][0]["status"])
    want = seq["_sequence"] + [seq["_sequence"][-1]] * 2
    t.eq("okepay _sequence", statuses, want)
    t.eq("okepay _sequence other fields", json_or_none(c.okepay(seq["id"]))["data"][0]["amount"], seq["amount"])
    c.reset()
    body = json_or_none(c.okepay(seq["id"]))
    t.eq("okepay _sequence restarts after reset", body and body["data"][0]["status"], seq["_sequence"][0])
    resp = c.okepay(106)
    t.eq("okepay content-length", int(resp.header("content-length")), len(resp.body))


def test_fixtures_obmenka(t, c):
    for p in FIX["payments"]["obmenka"]:
        for label, body in (("tracking", {"tracking": p["tracking"]}),
                            ("payment_id", {"payment_id": p["payment_id"]}),
                            ("both", {"tracking": p["tracking"], "payment_id": p["payment_id"]})):
            resp = c.obmenka(body)
            check_json_reply(t, f"obmenka {p['tracking']} by {label}", resp, 200, view(p))
            check_obmenka_signed(t, f"obmenka {p['tracking']} by {label}", resp)
    awkward = next(p for p in FIX["payments"]["obmenka"] if "\n" in p["payment_id"])
    resp = c.obmenka({"payment_id": awkward["payment_id"]})
    t.check("obmenka: non-ASCII written as raw UTF-8", "ü€".encode() in resp.body and b"\\n" in resp.body,
            resp.body)
    escaped = json.dumps({"payment_id": awkward["payment_id"]}, ensure_ascii=True).replace("/", "\\/").encode()
    check_json_reply(t, "obmenka: PHP-escaped request body", c.obmenka(escaped), 200, view(awkward))


def test_fixtures_alikassa(t, c):
    for p in FIX["payments"]["alikassa"]:
        for account in (ALI_SHA1, ALI_SHA256):
            tag = f"alikassa {p['id']} ({account['digest']})"
            check_json_reply(t, f"{tag} by id", c.alikassa({"id": str(p["id"])}, account), 200, view(p))
            check_json_reply(t, f"{tag} by order_id", c.alikassa({"order_id": p["order_id"]}, account), 200, view(p))
        check_json_reply(t, f"alikassa {p['id']} both", c.alikassa({"id": p["id"], "order_id": p["order_id"]}),
                         200, view(p))
        if isinstance(p["id"], int):
            check_json_reply(t, f"alikassa {p['id']} numeric id", c.alikassa({"id": p["id"]}), 200, view(p))
    awkward = next(p for p in FIX["payments"]["alikassa"] if "\\" in p["order_id"])
    php = json.dumps({"order_id": awkward["order_id"]}).replace("/", "\\/").encode()
    check_json_reply(t, "alikassa PHP json_encode body", c.alikassa(php), 200, view(awkward))
    raw = json.dumps({"order_id": awkward["order_id"]}, ensure_ascii=False, indent=2).encode()
    check_json_reply(t, "alikassa pretty raw UTF-8 body", c.alikassa(raw), 200, view(awkward))


def test_fixtures_morune(t, c):
    for p in FIX["payments"]["morune"]:
        want = {"data": view(p), "status": 200, "status_check": True}
        check_json_reply(t, f"morune {p['order_id']!r} by invoice_id",
                         c.morune(params=[("invoice_id", p["invoice_id"])]), 200, want)
        check_json_reply(t, f"morune {p['order_id']!r} by order_id",
                         c.morune(params=[("order_id", p["order_id"])]), 200, want)
    awkward = next(p for p in FIX["payments"]["morune"] if "+" in p["order_id"])
    from urllib.parse import quote
    query = f"order_id={quote(awkward['order_id'], safe='')}&shop_id={MORUNE['shop_id']}"
    resp = c.morune(query=query)
    t.eq("morune order_id %20-encoded", json_or_none(resp) and resp.json()["data"]["invoice_id"],
         awkward["invoice_id"])
    first = FIX["payments"]["morune"][0]
    resp = c.morune(params=[("invoice_id", first["invoice_id"].upper())])
    t.eq("morune invoice_id upper-case", resp.status, 200)


def test_errors_okepay(t, c):
    c.reset()
    invalid = {"status": "error", "message": "The API Signature is not valid"}
    check_json_reply(t, "okepay unknown instance", c.okepay(101, instance="nope"), 401,
                     {"status": "error", "message": "Instance not found"})
    resp = c.raw("GET", f"/okepay/v1.0/Gateway/101/?ApiSignature={php_urlencode(okepay_sign(OKEPAY['secret'], ''))}")
    check_json_reply(t, "okepay missing instance", resp, 401, {"status": "error", "message": "Instance not found"})
    check_json_reply(t, "okepay missing signature",
                     c.raw("GET", f"/okepay/v1.0/Gateway/101/?instance={OKEPAY['instance']}"), 401, invalid)
    check_json_reply(t, "okepay wrong secret", c.okepay(101, secret="wrong"), 401, invalid)
    check_json_reply(t, "okepay signature over other text", c.okepay(101, signature=okepay_sign(OKEPAY["secret"], "x=1")),
                     401, invalid)
    # '+' in the signature must be sent as %2B: a raw '+' reads as a space.
    extra_plus = next(f"n={i}" for i in range(10000) if "+" in okepay_sign(OKEPAY["secret"], f"n={i}"))
    check_json_reply(t, "okepay raw '+' in signature", c.okepay(101, extra=extra_plus, encode_signature=False),
                     401, invalid)
    t.eq("okepay encoded '+' in signature", c.okepay(101, extra=extra_plus).status, 200)
    extra_slash = next(f"n={i}" for i in range(10000)
                       if "/" in (s := okepay_sign(OKEPAY["secret"], f"n={i}")) and "+" not in s)
    t.eq("okepay raw '/' and '=' in signature (form decoding)",
         c.okepay(101, extra=extra_slash, encode_signature=False).status, 200)
    t.eq("okepay extra params signed", c.okepay(101, extra="model=Page&id=17").status, 200)
    raw_extra = "purpose=Order+42+%7Etest&referenceId=inv-%C3%A4%2F1"
    t.eq("okepay message is the raw encoding", c.okepay(101, extra=raw_extra).status, 200)
    t.eq("okepay decoded message rejected",
         c.okepay(101, extra=raw_extra, signature=okepay_sign(OKEPAY["secret"], "purpose=Order 42 ~test")).status, 401)
    t.eq("okepay pair order matters",
         c.okepay(101, extra="a=1&b=2", signature=okepay_sign(OKEPAY["secret"], "b=2&a=1")).status, 401)
    t.eq("okepay unsigned extra param",
         c.okepay(101, extra="a=1", signature=okepay_sign(OKEPAY["secret"], "")).status, 401)
    sig = php_urlencode(okepay_sign(OKEPAY["secret"], "model=Page"))
    t.eq("okepay ApiSignature first, instance last",
         c.raw("GET", f"/okepay/v1.0/Gateway/101/?ApiSignature={sig}&model=Page&instance={OKEPAY['instance']}").status, 200)
    for bad in ("abc", "12.5", "1e3", "%31"):
        check_json_reply(t, f"okepay id {bad!r}", c.okepay(bad), 400, {"status": "error", "message": "Invalid gateway id"})
    check_json_reply(t, "okepay not found", c.okepay(999), 404, {"status": "error", "message": "No Gateway found with id 999"})
    check_json_reply(t, "okepay negative id", c.okepay(-3), 404, {"status": "error", "message": "No Gateway found with id -3"})
    ok = {"status": "success", "data": [{"id": 1}]}
    check_json_reply(t, "okepay SignatureCheck", c.okepay(None, resource="SignatureCheck"), 200, ok)
    check_json_reply(t, "okepay SignatureCheck no slash", c.okepay(None, resource="SignatureCheck", slash=False), 200, ok)
    check_json_reply(t, "okepay SignatureCheck bad", c.okepay(None, resource="SignatureCheck", secret="x"), 401, invalid)
    t.eq("okepay POST", c.raw("POST", c.okepay_target(101)).status, 405)
    t.eq("okepay unknown path", c.raw("GET", "/okepay/v1.0/Invoice/1/").status, 404)
    t.eq("okepay signature failures counted", c.stats()["signature_failures"], 10)


def test_errors_obmenka(t, c):
    c.reset()
    good = b'{"payment_id":"ob-order-1702"}'
    resp = c.obmenka(good, client="9999")
    check_json_reply(t, "obmenka unknown client", resp, 403, {"error": {"code": 403, "message": "Unknown client"}})
    t.eq("obmenka unknown client unsigned", resp.header("DPAY_SECURE"), None)
    resp = c.raw("POST", "/obmenka/api/einvoice/status", [("Content-Type", "application/json")], good)
    check_json_reply(t, "obmenka no client header", resp, 403, {"error": {"code": 403, "message": "Unknown client"}})
    invalid_sig = {"error": {"code": 403, "message": "Invalid signature"}}
    for label, kw in (("wrong salt", {"salt": "wrong"}), ("no DPAY_SECURE", {"sign": False})):
        resp = c.obmenka(good, **kw)
        check_json_reply(t, f"obmenka {label}", resp, 403, invalid_sig)
        check_obmenka_signed(t, f"obmenka {label}", resp)
    headers = c.obmenka_headers(good)
    resp = c.raw("POST", "/obmenka/api/einvoice/status", headers, b'{"payment_id": "ob-order-1702"}')
    check_json_reply(t, "obmenka re-serialised body", resp, 403, invalid_sig)
    lower = [(k.lower(), v) for k, v in c.obmenka_headers(good)]
    check_json_reply(t, "obmenka lower-case header names",
                     c.raw("POST", "/obmenka/api/einvoice/status", lower, good), 200,
                     view(FIX["payments"]["obmenka"][2]))
    dashed = [(k.replace("_", "-"), v) for k, v in c.obmenka_headers(good)]
    t.eq("obmenka DPAY-CLIENT with a dash is not DPAY_CLIENT",
         c.raw("POST", "/obmenka/api/einvoice/status", dashed, good).status, 403)
    odd = b'{ "x" : [1, 2.50, {"y": null}],\n  "tracking" : "79DF-60B0-1702" }'
    check_json_reply(t, "obmenka signature over raw odd bytes", c.obmenka(odd), 200, view(FIX["payments"]["obmenka"][2]))
    t.eq("obmenka charset parameter", c.obmenka(good, ctype="application/json; charset=utf-8").status, 200)
    invalid = {"error": {"code": 400, "message": "Invalid request"}}
    for label, body, kw in (("text/plain", good, {"ctype": "text/plain"}),
                            ("no content type", good, {"ctype": None}),
                            ("not JSON", b"tracking=1", {}), ("array", b"[]", {}), ("empty object", b"{}", {}),
                            ("empty body", b"", {}), ("number tracking", b'{"tracking":5}', {}),
                            ("bad UTF-8", b'{"tracking":"\xff"}', {})):
        resp = c.obmenka(body, **kw)
        check_json_reply(t, f"obmenka invalid: {label}", resp, 400, invalid)
        check_obmenka_signed(t, f"obmenka invalid: {label}", resp)
    not_found = {"error": {"code": 401, "message": "Payment not found"}}
    for label, body in (("tracking", {"tracking": "NOPE"}), ("payment_id", {"payment_id": "nope"}),
                        ("mismatch", {"tracking": "79DF-60B0-1702", "payment_id": "ob-order-1700"}),
                        ("known tracking, unknown payment_id", {"tracking": "79DF-60B0-1702", "payment_id": "x"})):
        resp = c.obmenka(body)
        check_json_reply(t, f"obmenka not found: {label}", resp, 200, not_found)
        check_obmenka_signed(t, f"obmenka not found: {label}", resp)
    t.eq("obmenka GET", c.raw("GET", "/obmenka/api/einvoice/status").status, 405)
    t.eq("obmenka signature failures counted", c.stats()["signature_failures"], 6)


def test_errors_alikassa(t, c):
    c.reset()
    bad = {"message": "Invalid signature"}
    body = b'{"id":"100000537"}'
    check_json_reply(t, "alikassa unknown account", c.alikassa(body, account="00000000-0000-0000-0000-000000000000"),
                     401, bad)
    check_json_reply(t, "alikassa no Sign", c.alikassa(body, sign=False), 401, bad)
    check_json_reply(t, "alikassa garbage Sign", c.alikassa(body, sign="not base64!"), 401, bad)
    check_json_reply(t, "alikassa other key", c.alikassa(body, key_path=ALIKASSA_OTHER_KEY, password=None), 401, bad)
    check_json_reply(t, "alikassa sha256 sig on sha1 account", c.alikassa(body, ALI_SHA1, digest="sha256"), 401, bad)
    check_json_reply(t, "alikassa sha1 sig on sha256 account", c.alikassa(body, ALI_SHA256, digest="sha1"), 401, bad)
    check_json_reply(t, "alikassa Sign of another body",
                     c.alikassa(body, sign=alikassa_sign(b'{"id": "100000537"}')), 401, bad)
    required = {"message": "The given data was invalid.",
                "errors": {"id": ["The id field is required when order id is not present."]}}
    for label, payload in (("empty object", b"{}"), ("empty id", b'{"id":""}'), ("null ids", b'{"id":null,"order_id":null}'),
                           ("other field", b'{"order":"x"}')):
        check_json_reply(t, f"alikassa 400 {label}", c.alikassa(payload), 400, required)
    for label, payload in (("not JSON", b"id=1"), ("array", b"[1]"), ("boolean id", b'{"id":true}')):
        resp = c.alikassa(payload)
        t.eq(f"alikassa 400 {label}", (resp.status, (json_or_none(resp) or {}).get("message")),
             (400, "The given data was invalid."))
    t.eq("alikassa text/plain", c.alikassa(body, ctype="text/plain").status, 400)
    # unknown ids fail Laravel's "exists" rule on the field that names them
    unknown_id = {"message": "The given data was invalid.", "errors": {"id": ["The selected id is invalid."]}}
    unknown_order = {"message": "The given data was invalid.",
                     "errors": {"order_id": ["The selected order id is invalid."]}}
    check_json_reply(t, "alikassa unknown id", c.alikassa({"id": "999"}), 400, unknown_id)
    check_json_reply(t, "alikassa unknown numeric id", c.alikassa({"id": 999}), 400, unknown_id)
    check_json_reply(t, "alikassa unknown order_id", c.alikassa({"order_id": "nope"}), 400, unknown_order)
    check_json_reply(t, "alikassa unknown id, known order_id", c.alikassa({"id": "999", "order_id": "ak-order-536"}),
                     400, unknown_id)
    check_json_reply(t, "alikassa known id, unknown order_id", c.alikassa({"id": 100000537, "order_id": "nope"}),
                     400, unknown_order)
    check_json_reply(t, "alikassa id/order_id mismatch", c.alikassa({"id": 100000537, "order_id": "ak-order-536"}),
                     404, {"message": "Payment not found"})
    t.eq("alikassa GET", c.raw("GET", "/alikassa/v1/payment/status").status, 405)
    t.eq("alikassa signature failures counted", c.stats()["signature_failures"], 7)


def test_errors_morune(t, c):
    c.reset()
    unauthorized = {"data": None, "error": "Unauthorized", "status": 401, "status_check": False}
    inv = FIX["payments"]["morune"][1]["invoice_id"]
    check_json_reply(t, "morune wrong key", c.morune(params=[("invoice_id", inv)], key="wrong"), 401, unauthorized)
    check_json_reply(t, "morune no key", c.morune(params=[("invoice_id", inv)], send_key=False), 401, unauthorized)
    check_json_reply(t, "morune unknown shop", c.morune(query=f"shop_id=3fa85f64-5717-4562-b3fc-000000000000&invoice_id={inv}"),
                     401, unauthorized)
    check_json_reply(t, "morune no shop_id", c.morune(query=f"invoice_id={inv}"), 401, unauthorized)
    validation = {"data": None, "error": "Validation error", "status": 422, "status_check": False}
    check_json_reply(t, "morune invoice_id not a uuid", c.morune(params=[("invoice_id", "123")]), 422, validation)
    check_json_reply(t, "morune neither id", c.morune(), 422, validation)
    check_json_reply(t, "morune empty ids", c.morune(params=[("invoice_id", ""), ("order_id", "")]), 422, validation)
    check_json_reply(t, "morune order_id too long", c.morune(params=[("order_id", "x" * 256)]), 422, validation)
    not_found = {"data": None, "error": "Инвойс не найден", "status": 404, "status_check": False}
    resp = c.morune(params=[("invoice_id", "a3e9ff6f-c5c1-4bcd-854e-000000000000")])
    check_json_reply(t, "morune unknown invoice", resp, 404, not_found)
    t.check("morune 404 text as raw UTF-8", "Инвойс не найден".encode() in resp.body, resp.body)
    check_json_reply(t, "morune unknown order", c.morune(params=[("order_id", "nope")]), 404, not_found)
    check_json_reply(t, "morune order_id '+' is a space", c.morune(query=f"shop_id={MORUNE['shop_id']}&order_id=mo+order+1"),
                     404, not_found)
    check_json_reply(t, "morune invoice/order mismatch",
                     c.morune(params=[("invoice_id", inv), ("order_id", "mo-order-0")]), 404, not_found)
    t.eq("morune POST", c.raw("POST", "/morune/invoice/info").status, 405)
    t.eq("morune signature failures counted", c.stats()["signature_failures"], 4)


def test_synthetic(t, c):
    c.reset()
    body = json_or_none(c.okepay(1000000))
    g = body and body["data"][0]
    t.eq("synthetic okepay", g and (g["id"], g["status"], g["amount"]), (1000000, "confirmed", 100000))
    t.eq("okepay 999999 is not synthetic", c.okepay(999999).status, 404)
    resp = c.obmenka({"tracking": "bench-1"})
    p = json_or_none(resp)
    t.eq("synthetic obmenka", p and (p["tracking"], p["status"], p["amount"]), ("bench-1", "PAYED", "1000.00"))
    check_obmenka_signed(t, "synthetic obmenka", resp)
    p = json_or_none(c.obmenka({"payment_id": "bench-2", "tracking": "bench-T2"}))
    t.eq("synthetic obmenka echoes both", p and (p["tracking"], p["payment_id"]), ("bench-T2", "bench-2"))
    t.eq("obmenka bench tracking + real payment_id",
         json_or_none(c.obmenka({"tracking": "bench-1", "payment_id": "ob-order-1702"})),
         {"error": {"code": 401, "message": "Payment not found"}})
    p = json_or_none(c.alikassa({"id": "bench-1"}))
    t.eq("synthetic alikassa id", p and (p["id"], p["payment_status"], p["amount"]), ("bench-1", "paid", "1000"))
    p = json_or_none(c.alikassa({"order_id": "bench-o9"}))
    t.eq("synthetic alikassa order_id", p and p["order_id"], "bench-o9")
    p = json_or_none(c.morune(params=[("order_id", "bench-7")]))
    d = p and p["data"]
    t.eq("synthetic morune order_id", d and (d["order_id"], d["status"], d["invoice_amount"], p["status_check"]),
         ("bench-7", "success", 1000, True))
    t.check("synthetic morune invoice id", d and d["invoice_id"].startswith("00000000-0000-4000-8000-"), d)
    inv = "00000000-0000-4000-8000-000000000042"
    p = json_or_none(c.morune(params=[("invoice_id", inv)]))
    t.eq("synthetic morune invoice_id", p and p["data"]["invoice_id"], inv)
    c.okepay(1000000)
    stats = c.stats()
    bp = stats["by_payment"]
    t.eq("by_payment synthetic", (bp.get("okepay:1000000"), bp.get("obmenka:bench-1"), bp.get("alikassa:bench-1"),
                                  bp.get(f"morune:{inv}")), (2, 1, 1, 1))
    t.eq("by_payment has no not-found ids", bp.get("okepay:999999"), None)
    statuses = {"okepay": "waiting", "obmenka": "PAYIN", "alikassa": "wait", "morune": "created"}
    t.eq("config synthetic_status", c.control("config", {"synthetic_status": statuses}).status, 200)
    got = (json_or_none(c.okepay(1000001))["data"][0]["status"], json_or_none(c.obmenka({"tracking": "bench-1"}))["status"],
           json_or_none(c.alikassa({"id": "bench-1"}))["payment_status"],
           json_or_none(c.morune(params=[("order_id", "bench-1")]))["data"]["status"])
    t.eq("synthetic statuses changed", got, tuple(statuses.values()))
    c.reset()
    t.eq("synthetic status after reset", json_or_none(c.okepay(1000001))["data"][0]["status"], "confirmed")


def test_control(t, c):
    c.reset()
    resp = c.control("set", {"provider": "okepay", "id": "101", "status": "confirmed"})
    t.eq("set okepay status", resp.status, 200)
    t.eq("set okepay status applied", json_or_none(c.okepay(101))["data"][0]["status"], "confirmed")
    t.eq("set by order_id", c.control("set", {"provider": "okepay", "order_id": "ok-order-102", "status": "expired"}).status, 200)
    t.eq("set by order_id applied", json_or_none(c.okepay(102))["data"][0]["status"], "expired")
    c.control("set", {"provider": "okepay", "id": 500, "status": "declined"})
    t.eq("set drops _sequence", [json_or_none(c.okepay(500))["data"][0]["status"] for _ in range(3)], ["declined"] * 3)
    c.control("set", {"provider": "obmenka", "id": "79DF-60B0-1700", "status": "FINISHED"})
    t.eq("set obmenka", json_or_none(c.obmenka({"tracking": "79DF-60B0-1700"}))["status"], "FINISHED")
    c.control("set", {"provider": "alikassa", "id": "100000536", "status": "paid"})
    t.eq("set alikassa", json_or_none(c.alikassa({"id": 100000536}))["payment_status"], "paid")
    c.control("set", {"provider": "morune", "id": "a3e9ff6f-c5c1-4bcd-854e-4bc995b1a000", "status": "fail"})
    t.eq("set morune", json_or_none(c.morune(params=[("order_id", "mo-order-0")]))["data"]["status"], "fail")
    t.eq("set unknown id", c.control("set", {"provider": "okepay", "id": "4242", "status": "x"}).status, 404)
    t.eq("set unknown provider", c.control("set", {"provider": "paypal", "id": "1", "status": "x"}).status, 400)
    t.eq("set without change", c.control("set", {"provider": "okepay", "id": "101"}).status, 400)
    t.eq("set bad JSON", c.raw("POST", "/_control/set", body=b"{").status, 400)
    new = {"id": 777, "status": "authorized", "referenceId": "ok-new-777", "amount": 1, "currency": "EUR"}
    t.eq("set new payment", c.control("set", {"provider": "okepay", "payment": new}).status, 200)
    check_json_reply(t, "new payment served", c.okepay(777), 200, {"status": "success", "data": [new]})
    replaced = dict(new, amount=2)
    c.control("set", {"provider": "okepay", "id": "777", "payment": replaced})
    t.eq("payment replaced", json_or_none(c.okepay(777))["data"][0]["amount"], 2)
    seq = {"tracking": "SEQ-1", "payment_id": "seq-1", "status": "CREATED", "_sequence": ["PAYIN", "PAYED"]}
    c.control("set", {"provider": "obmenka", "payment": seq})
    t.eq("set payment with _sequence",
         [json_or_none(c.obmenka({"payment_id": "seq-1"}))["status"] for _ in range(3)], ["PAYIN", "PAYED", "PAYED"])
    t.eq("set payment with bad _fault",
         c.control("set", {"provider": "okepay", "payment": dict(new, id=778, _fault="bogus")}).status, 400)
    t.eq("config delay_ms", c.control("config", {"delay_ms": 300}).status, 200)
    t.check("config delay applied", c.okepay(101).elapsed >= 0.29)
    t.check("control answers not delayed", c.control("health").elapsed < 0.2)
    t.eq("config bad key", c.control("config", {"nope": 1}).status, 400)
    t.eq("config bad delay", c.control("config", {"delay_ms": -1}).status, 400)
    t.eq("config GET", (json_or_none(c.raw("GET", "/_control/config")) or {}).get("config", {}).get("delay_ms"), 300)
    stats = c.stats()
    t.eq("stats keys", sorted(stats), ["by_payment", "connections", "created", "creates", "creates_by_order", "in_flight",
                                       "max_in_flight", "requests", "signature_failures", "tls_resumed"])
    t.eq("stats requests keys", sorted(stats["requests"]), sorted(["okepay", "obmenka", "alikassa", "morune"]))
    t.eq("reset", c.reset(), 200)
    t.check("reset clears delay", c.okepay(101).elapsed < 0.2)
    t.eq("reset restores fixtures", json_or_none(c.okepay(101))["data"][0]["status"], "waiting")
    t.eq("reset drops added payments", c.okepay(777).status, 404)
    stats = c.stats()
    t.eq("reset clears counters", (stats["requests"]["okepay"], stats["by_payment"], stats["signature_failures"]),
         (3, {"okepay:101": 2}, 0))
    t.eq("unknown control endpoint", c.raw("GET", "/_control/nope").status, 404)
    t.eq("control wrong method", c.raw("GET", "/_control/reset").status, 405)


# ======================================================================================
# The payment lifecycle: creates, settle, webhooks (written from PROVIDERS.md, section
# "Creating invoices and notifications", independently of the emulator's code)
# ======================================================================================

NOTIFY_PUBLIC = os.path.normpath(os.path.join(HERE, FIX["gateway_keys"]["alikassa"]["notification_public_key"]))
NOTIFY_PRIVATE = os.path.normpath(os.path.join(HERE, FIX["gateway_keys"]["alikassa"]["notification_private_key"]))
OKEPAY_FORM = "application/x-www-form-urlencoded"

# AliKassa notification vector (recorded in README.md)
ALI_VECTOR_FIELDS = [
    ("type", "payment"), ("id", "200000042"), ("order_id", "order/42"), ("payment_status", "paid"),
    ("amount", "1500.00"), ("payment_amount", "1500.00"), ("commission_amount", "45.00"),
    ("is_partial_payment", "0"), ("account", "93d5df06-996c-48c3-9847-348d6b580b80"),
    ("service", "payment_card_rub"), ("desc", "Оплата заказа/42 €😀\t"),
]
ALI_VECTOR_MESSAGE = (
    '{"type":"payment","id":200000042,"order_id":"order\\/42","payment_status":"paid","amount":"1500.00",'
    '"payment_amount":"1500.00","commission_amount":"45.00","is_partial_payment":"0",'
    '"account":"93d5df06-996c-48c3-9847-348d6b580b80","service":"payment_card_rub",'
    '"desc":"\\u041e\\u043f\\u043b\\u0430\\u0442\\u0430 \\u0437\\u0430\\u043a\\u0430\\u0437\\u0430\\/42 \\u20ac\\ud83d\\ude00\\t"}')
ALI_VECTOR_SHA1 = (
    "c8OaZPgqGerirfpD7xdTz6nqE/MxpKjt00Gh4BnxnkcdsLkx2Ajpe2HuaBjU/GnqlgXJHsLmskmSmyQO2QhbtELDWaITo2hqBAtn5i2Zc0hbnPNz"
    "GgeJalIzSVEgmKrht93S0znUnG9oX5hOwzeTbnVgsZpspFjkp15DhEb/Jv33KOA2uHOXkW+DKZm+DYzo2euuNCLRjseYfV2aCx9MLrGwcxrMKdHK"
    "q7gOZTPOBVS76LleiwjJWD9oIWr+nJnsiiMoQIwkXBXiXrsW5ftiIAG65mwzyjlGvreReEbY7P14OKO4Ig/JzIeAHOFnsGfp9B5KkQ6eIm0XnGCf"
    "Lm5+YQ==")
ALI_VECTOR_SHA256 = (
    "GTDhyNikKgqOy6KSDtRE4xiV9THEHSMhqktmKkQpIE3IE4EkKodlezDfZB21jWpLoMOdbPtxO32phpohUDtQ3SU2zFEsNawMgbnCbgZ9vRP2/+IO"
    "zHn1svkRL4jG0xKQiBODyfZ4osk/5REL6Xwu+P/f9Cd85qV4x7f+xQkOXeWhOSjqLuleZuU8Jo7JCYFZIXngglnvOD2OkVjbCN4I7Wiic4bodXkh"
    "IKeNUH5omB1dVFD6hJNT+eq1K1dqLJi9CPbB2EWtkqj/UetuM2HiBdmruPhE8m6y0TWkvF3Mw1BFrW0iVWpyEbl1MKNtsCa109tMQEz4rgtYHWPb"
    "YT3NTw==")
# Morune escaping vector (key "example"; recorded in README.md)
MORUNE_ESC_BODY = ('{"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a","status":"success","amount":"100.00",'
                   '"currency":"RUB","order_id":"order/42","custom_fields":{"user":1,"comment":"Оплата €😀"},'
                   '"type":1,"credited":"97.00"}')
MORUNE_ESC_NONE = "4190465499167a1e48ce333864b420b3d75cbde3e7cf9460d961d114b6855900"
MORUNE_ESC_PHP = "d4d25b788a7c88b2f5fd83cc60f38df62cb6b11958fbab6e4e09b96964765134"
MORUNE_DOC_BODY = ('{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},'
                   '"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a",'
                   '"order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card",'
                   '"pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279",'
                   '"status":"success","type":1}')
MORUNE_DOC_SIG = "e582b14dd13f8111711e3cb66a982fd7bff28a0ddece8bde14a34a5bb4449136"


def php_json(obj):
    """PHP json_encode with default flags, from Python's ASCII-only JSON: '/' escaped,
    and DEL left raw (Python escapes it, PHP does not)."""
    text = json.dumps(obj, separators=(",", ":"))
    text = text.replace("/", "\\/")
    return re.sub(r"(\\\\)|\\u007f", lambda m: m.group(1) or "\x7f", text)


def morune_signed_text(body_text, php_escape):
    """What a Morune webhook receiver signs: parse, sort the top-level keys, compact JSON."""
    obj = json.loads(body_text)
    ordered = {k: obj[k] for k in sorted(obj, key=lambda k: k.encode("utf-8"))}
    return php_json(ordered) if php_escape else json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))


def morune_verify(key, body_text, signature):
    """The receiver strategy of PROVIDERS.md: unescaped first, then PHP-escaped.
    Returns the variant that matched ("none"/"php") or None."""
    for name, php_escape in (("none", False), ("php", True)):
        mac = hmac.new(key.encode("utf-8"), morune_signed_text(body_text, php_escape).encode("utf-8"), hashlib.sha256)
        if hmac.compare_digest(mac.hexdigest(), signature):
            return name
    return None


def form_pairs(query):
    """Split a query string into decoded (key, value) pairs (form semantics)."""
    from urllib.parse import unquote_plus
    return [(unquote_plus(k), unquote_plus(v)) for k, _, v in (p.partition("=") for p in query.split("&") if p)]


def alikassa_verify(query, digest):
    """Verify an AliKassa notification's query with the notification public key."""
    with open(NOTIFY_PUBLIC, "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    got = dict(form_pairs(query))
    keys = ["type", "id", "order_id", "payment_status", "amount", "payment_amount", "commission_amount",
            "is_partial_payment", "account", "service", "desc"]
    obj = {k: got.get(k) for k in keys}
    if obj["id"] is not None and re.fullmatch(r"[0-9]+", obj["id"]):
        obj["id"] = int(obj["id"])
    message = php_json(obj).encode("utf-8")
    algorithm = hashes.SHA1() if digest == "sha1" else hashes.SHA256()
    try:
        public.verify(base64.b64decode(got.get("sign", "")), message, padding.PKCS1v15(), algorithm)
        return True
    except Exception:
        return False


def okepay_create(c, pairs, instance=None, secret=None, sign_text=None, ctype=OKEPAY_FORM, prefix="", extra_body=""):
    """POST a create: body = pairs in order (bracketed names as PHP writes them) plus
    ApiSignature over the same text."""
    body = http_build_query(pairs)
    signature = okepay_sign(OKEPAY["secret"] if secret is None else secret, body if sign_text is None else sign_text)
    SENT_SECRETS.add(signature)
    full = (body + "&" if body else "") + extra_body + "ApiSignature=" + php_urlencode(signature)
    query = "instance=" + php_urlencode(OKEPAY["instance"] if instance is None else instance)
    return c.raw("POST", f"{prefix}/okepay/v1.0/Gateway/?{query}", [("Content-Type", ctype)], full.encode("ascii"))


def obmenka_call(c, endpoint, obj, salt=None, prefix=""):
    body = obj if isinstance(obj, bytes) else json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return c.raw("POST", f"{prefix}/obmenka/api/einvoice/{endpoint}", c.obmenka_headers(body, salt=salt), body)


def alikassa_create(c, obj, account=None, key_path=ALIKASSA_KEY, prefix=""):
    body = json.dumps(obj).encode("utf-8")
    account = account or ALI_SHA1
    sign = alikassa_sign(body, account.get("digest", "sha1"), key_path)
    SENT_SECRETS.add(sign)
    return c.raw("POST", f"{prefix}/alikassa/v1/payment",
                 [("Content-Type", "application/json"), ("Account", account["account"]), ("Sign", sign)], body)


def morune_create(c, obj, key=None, prefix=""):
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return c.raw("POST", f"{prefix}/morune/invoice/create",
                 [("Content-Type", "application/json"), ("x-api-key", MORUNE["api_key"] if key is None else key)], body)


def ali_order(order_id, **extra):
    obj = {"amount": "100.00", "order_id": order_id, "service": "payment_card_rub", "customer_ip": "203.0.113.7",
           "customer_browser_user_agent": "Mozilla/5.0 (paygw selftest)"}
    obj.update(extra)
    return obj


def mo_order(order_id, **extra):
    obj = {"amount": 100.5, "order_id": order_id, "shop_id": MORUNE["shop_id"]}
    obj.update(extra)
    return obj


def test_lifecycle_vectors(t, c):
    sys.path.insert(0, HERE)
    import emulator as emu_module          # the emulator's own signing functions
    doc = json.loads(MORUNE_DOC_BODY)
    t.eq("morune docs vector: emulator signing function",
         emu_module.morune_webhook_signature(b"example", doc, False), MORUNE_DOC_SIG)
    t.eq("morune docs vector: emulator, php escaping (ASCII body)",
         emu_module.morune_webhook_signature(b"example", doc, True), MORUNE_DOC_SIG)
    t.eq("morune docs vector: independent receiver", morune_verify("example", MORUNE_DOC_BODY, MORUNE_DOC_SIG), "none")
    esc = json.loads(MORUNE_ESC_BODY)
    t.eq("morune escaping vector none: emulator", emu_module.morune_webhook_signature(b"example", esc, False), MORUNE_ESC_NONE)
    t.eq("morune escaping vector php: emulator", emu_module.morune_webhook_signature(b"example", esc, True), MORUNE_ESC_PHP)
    t.eq("morune escaping vector none: independent", morune_verify("example", MORUNE_ESC_BODY, MORUNE_ESC_NONE), "none")
    t.eq("morune escaping vector php: independent", morune_verify("example", MORUNE_ESC_BODY, MORUNE_ESC_PHP), "php")
    fields = dict(ALI_VECTOR_FIELDS)
    t.eq("alikassa vector message: emulator", emu_module.alikassa_notification_message(fields).decode("utf-8"),
         ALI_VECTOR_MESSAGE)
    obj = dict(fields, id=int(fields["id"]))
    t.eq("alikassa vector message: independent", php_json(obj), ALI_VECTOR_MESSAGE)
    t.eq("php json: DEL raw, controls escaped", php_json({"a": "\x7f\x01\n/\\"}), '{"a":"\x7f\\u0001\\n\\/\\\\"}')
    t.eq("emulator php json agrees", emu_module.json_compact({"a": "\x7f\x01\n/\\"}), php_json({"a": "\x7f\x01\n/\\"}))
    private = load_private(NOTIFY_PRIVATE)
    with open(NOTIFY_PUBLIC, "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    t.eq("notification key pair matches", private.public_key().public_numbers(), public.public_numbers())
    for digest, algorithm, want in (("sha1", hashes.SHA1(), ALI_VECTOR_SHA1), ("sha256", hashes.SHA256(), ALI_VECTOR_SHA256)):
        sig = base64.b64encode(private.sign(ALI_VECTOR_MESSAGE.encode(), padding.PKCS1v15(), algorithm)).decode()
        t.eq(f"alikassa vector {digest}: signature", sig, want)
        query = "&".join(f"{php_urlencode(k)}={php_urlencode(v)}" for k, v in ALI_VECTOR_FIELDS) + "&sign=" + php_urlencode(want)
        t.check(f"alikassa vector {digest}: verifies from the query", alikassa_verify(query, digest))
        t.check(f"alikassa vector {digest}: other digest fails",
                not alikassa_verify(query, "sha256" if digest == "sha1" else "sha1"))
    with open(ALIKASSA_KEY.replace("alikassa-test.pem", "alikassa-test.pub.pem"), "rb") as f:
        merchant = serialization.load_pem_public_key(f.read())
    t.check("notification key is not the merchant key", merchant.public_numbers() != public.public_numbers())
    # the vector through the control API: a payment with exactly these values
    c.reset()
    payment = {"id": 200000042, "order_id": "order/42", "payment_status": "paid", "amount": "1500.00",
               "payment_amount": "1500.00", "commission_amount": "45.00", "service_code": "payment_card_rub",
               "_scope": "93d5df06-996c-48c3-9847-348d6b580b80", "_create": {"desc": fields["desc"]}}
    t.eq("vector payment stored", c.control("set", {"provider": "alikassa", "payment": payment}).status, 200)
    for digest, want in (("sha1", ALI_VECTOR_SHA1), ("sha256", ALI_VECTOR_SHA256)):
        hook = json_or_none(c.control("webhook", {"provider": "alikassa", "id": "200000042", "digest": digest,
                                                  "url": "https://merchant.example/ak/notify"}))
        t.eq(f"alikassa vector {digest}: webhook sign", dict(form_pairs(hook["query"])).get("sign"), want)
        t.eq(f"alikassa vector {digest}: query pairs in order", form_pairs(hook["query"]),
             ALI_VECTOR_FIELDS + [("sign", want)])


def test_create_okepay(t, c):
    c.reset()
    c.control("config", {"now": 1767225600})
    pairs = [("amount", 1050), ("currency", "CHF"), ("referenceId", "inv ä/1~x"), ("purpose", "Order 42"),
             ("pm[0]", "visa"), ("pm[1]", "mastercard"), ("psp[0]", 44), ("fields[email][value]", "a@b.example"),
             ("basket[0][name]", "Tee shirt"), ("basket[0][amount]", 1050), ("preAuthorization", False),
             ("successRedirectUrl", "https://shop.example/ok?x=1"), ("unknownField", "ignored")]
    resp = okepay_create(c, pairs)
    body = json_or_none(resp) or {}
    t.eq("okepay create: 200", resp.status, 200)
    gw = (body.get("data") or [{}])[0]
    t.eq("okepay create: shape", (body.get("status"), gw.get("status"), gw.get("invoices"), gw.get("amount"),
                                  gw.get("currency"), gw.get("referenceId"), gw.get("createdAt")),
         ("success", "waiting", [], 1050, "CHF", "inv ä/1~x", 1767225600))
    t.check("okepay create: integer id and hash", isinstance(gw.get("id"), int) and isinstance(gw.get("hash"), str), gw)
    t.eq("okepay create: link", gw.get("link"), f"http://127.0.0.1:{c.port}/pay/okepay/{gw.get('id')}")
    t.eq("okepay create: nested fields and pm", (gw.get("fields"), gw.get("pm"), gw.get("psp")),
         ({"email": {"value": "a@b.example"}}, ["visa", "mastercard"], [44]))
    check_json_reply(t, "okepay create: visible to status", c.okepay(gw.get("id")), 200, body)
    page = c.raw("GET", f"/pay/okepay/{gw.get('id')}")
    t.check("okepay pay page", page.status == 200 and page.header("content-type").startswith("text/html"), page)
    second = (json_or_none(okepay_create(c, pairs)) or {}).get("data", [{}])[0]
    t.check("okepay create: same referenceId makes a second gateway", second.get("id") not in (None, gw.get("id")), second)
    t.eq("okepay create: both visible", [json_or_none(c.okepay(i))["data"][0]["referenceId"]
                                         for i in (gw.get("id"), second.get("id"))], ["inv ä/1~x"] * 2)
    # `pm[]` as sent: PHP numbers it, so the signed text has pm%5B0%5D
    raw_body = "amount=100&currency=EUR&pm%5B%5D=visa"
    sig = okepay_sign(OKEPAY["secret"], "amount=100&currency=EUR&pm%5B0%5D=visa")
    resp = c.raw("POST", "/okepay/v1.0/Gateway/?instance=demo-shop", [("Content-Type", OKEPAY_FORM)],
                 f"{raw_body}&ApiSignature={php_urlencode(sig)}".encode())
    t.eq("okepay create: pm[] signed as PHP rebuilds it", resp.status, 200)
    sig = okepay_sign(OKEPAY["secret"], raw_body)
    resp = c.raw("POST", "/okepay/v1.0/Gateway/?instance=demo-shop", [("Content-Type", OKEPAY_FORM)],
                 f"{raw_body}&ApiSignature={php_urlencode(sig)}".encode())
    t.eq("okepay create: pm[] signed raw is rejected", resp.status, 401)
    bad = {"status": "error", "message": "The API Signature is not valid"}
    check_json_reply(t, "okepay create: wrong secret", okepay_create(c, pairs[:2], secret="nope"), 401, bad)
    check_json_reply(t, "okepay create: signature over other text",
                     okepay_create(c, pairs[:2], sign_text="amount=1050&currency=EUR"), 401, bad)
    check_json_reply(t, "okepay create: '~' not encoded as PHP does",
                     c.raw("POST", "/okepay/v1.0/Gateway/?instance=demo-shop", [("Content-Type", OKEPAY_FORM)],
                           ("amount=1&currency=EUR&referenceId=a~b&ApiSignature="
                            + php_urlencode(okepay_sign(OKEPAY["secret"], "amount=1&currency=EUR&referenceId=a~b"))).encode()),
                     401, bad)
    check_json_reply(t, "okepay create: JSON body", okepay_create(c, pairs[:2], ctype="application/json"), 401, bad)
    check_json_reply(t, "okepay create: unknown instance", okepay_create(c, pairs[:2], instance="other"), 401,
                     {"status": "error", "message": "Instance not found"})
    for name, ps, message in (
            ("no amount", [("currency", "CHF")], "Parameter amount is required"),
            ("no currency", [("amount", 100)], "Parameter currency is required"),
            ("decimal amount", [("amount", "10.50"), ("currency", "CHF")], "Parameter amount is invalid"),
            ("zero amount", [("amount", 0), ("currency", "CHF")], "Parameter amount is invalid"),
            ("lower-case currency", [("amount", 100), ("currency", "chf")], "Parameter currency is invalid"),
            ("bad validity", [("amount", 100), ("currency", "CHF"), ("validity", "soon")], "Parameter validity is invalid")):
        check_json_reply(t, f"okepay create: {name}", okepay_create(c, ps), 400, {"status": "error", "message": message})
    t.eq("okepay create: POST to a gateway id", c.raw("POST", "/okepay/v1.0/Gateway/101/").status, 405)
    resp = okepay_create(c, [("amount", 100), ("currency", "CHF")], prefix="/_fault/reset")
    t.eq("okepay create under a reset fault: reply lost", resp.end, "reset")
    stats = c.stats()
    t.eq("okepay create under a reset fault: created anyway", stats["created"]["okepay"], 4)
    t.eq("okepay stats: creates and by order", (stats["creates"]["okepay"], stats["creates_by_order"].get("okepay:inv ä/1~x")),
         (16, 2))


def test_create_obmenka(t, c):
    c.reset()
    c.control("config", {"now": 1767225600})
    order = {"payment_id": "ob-new-1", "currency": "visamaster.uah", "amount": "10.50", "description": "Заказ 1",
             "sender": "a@b.example", "account": "x", "success_url": "https://shop.example/ok",
             "fail_url": "https://shop.example/fail", "status_url": "https://shop.example/cb?inv=ob-new-1&k=%2F",
             "extra_fields": {"a": 1}, "unknown": True}
    resp = obmenka_call(c, "create", order)
    created = json_or_none(resp) or {}
    t.eq("obmenka create: 200", resp.status, 200)
    t.eq("obmenka create: payment_id echoed", created.get("payment_id"), "ob-new-1")
    t.check("obmenka create: tracking like 79DF-60B0-17F6",
            re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", str(created.get("tracking"))), created)
    check_obmenka_signed(t, "obmenka create", resp)
    status = json_or_none(c.obmenka({"payment_id": "ob-new-1"})) or {}
    t.eq("obmenka create: visible by payment_id", (status.get("tracking"), status.get("status"), status.get("amount"),
                                                   status.get("currency"), status.get("accrual_currency"), status.get("created")),
         (created.get("tracking"), "CREATED", "10.50", "visamaster.uah", "UAH", "2026-01-01 00:00:00"))
    t.eq("obmenka create: visible by tracking", json_or_none(c.obmenka({"tracking": created.get("tracking")})), status)
    resp = obmenka_call(c, "create", order)
    check_json_reply(t, "obmenka create: duplicate payment_id", resp, 200,
                     {"error": {"code": 409, "message": "Payment with this payment_id already exists"}})
    check_obmenka_signed(t, "obmenka duplicate", resp)
    check_json_reply(t, "obmenka create: fixture payment_id taken", obmenka_call(c, "create", dict(order, payment_id="ob-order-1700")),
                     200, {"error": {"code": 409, "message": "Payment with this payment_id already exists"}})
    for name, change, message in (
            ("no payment_id", {"payment_id": None}, "Field payment_id is required"),
            ("no currency", {"currency": None}, "Field currency is required"),
            ("no amount", {"amount": None}, "Field amount is required"),
            ("unknown method", {"currency": "UAH"}, "Field currency is invalid"),
            ("comma amount", {"amount": "10,50"}, "Field amount is invalid"),
            ("three decimals", {"amount": "10.505"}, "Field amount is invalid"),
            ("bad status_url", {"status_url": "ftp://x"}, "Field status_url is invalid")):
        obj = {k: v for k, v in dict(dict(order, payment_id="ob-bad"), **change).items() if v is not None}
        resp = obmenka_call(c, "create", obj)
        check_json_reply(t, f"obmenka create: {name}", resp, 400, {"error": {"code": 400, "message": message}})
    t.eq("obmenka create: number amount", json_or_none(obmenka_call(c, "create", dict(order, payment_id="ob-num", amount=1000)))
         .get("payment_id"), "ob-num")
    t.eq("obmenka create: number amount stored", json_or_none(c.obmenka({"payment_id": "ob-num"}))["amount"], "1000.00")
    check_json_reply(t, "obmenka create: bad signature", obmenka_call(c, "create", dict(order, payment_id="x"), salt="wrong"),
                     403, {"error": {"code": 403, "message": "Invalid signature"}})
    resp = obmenka_call(c, "process", {"payment_id": "ob-new-1"})
    link = f"http://127.0.0.1:{c.port}/pay/obmenka/{created.get('tracking')}"
    check_json_reply(t, "obmenka process", resp, 200, {"payment_id": "ob-new-1", "tracking": created.get("tracking"),
                                                        "status": "PAYIN", "pay_link": link, "pay_form": link + "?form=1"})
    check_obmenka_signed(t, "obmenka process", resp)
    t.eq("obmenka process: status is PAYIN", json_or_none(c.obmenka({"payment_id": "ob-new-1"}))["status"], "PAYIN")
    t.eq("obmenka process by tracking", json_or_none(obmenka_call(c, "process", {"tracking": created.get("tracking")}))["status"],
         "PAYIN")
    check_json_reply(t, "obmenka process: unknown", obmenka_call(c, "process", {"payment_id": "nope"}), 200,
                     {"error": {"code": 401, "message": "Payment not found"}})
    check_json_reply(t, "obmenka process: no id", obmenka_call(c, "process", {}), 400,
                     {"error": {"code": 400, "message": "Invalid request"}})
    c.control("settle", {"provider": "obmenka", "order_id": "ob-new-1", "status": "paid"})
    check_json_reply(t, "obmenka process: paid invoice", obmenka_call(c, "process", {"payment_id": "ob-new-1"}), 200,
                     {"error": {"code": 409, "message": "Payment is already processed"}})
    stats = c.stats()
    t.eq("obmenka stats", (stats["creates"]["obmenka"], stats["creates_by_order"].get("obmenka:ob-new-1"),
                           stats["created"]["obmenka"]), (12, 2, 2))


def test_create_alikassa(t, c):
    c.reset()
    order = ali_order("ak-new-1", desc="Заказ/1", lifetime=900, customer_email="a@b.example",
                      success_redirect_url="https://shop.example/ok", notification_endpoint_url="https://shop.example/ak?x=1",
                      something_new="ignored")
    resp = alikassa_create(c, order)
    created = json_or_none(resp) or {}
    t.eq("alikassa create: 200", resp.status, 200)
    t.eq("alikassa create: keys", sorted(created), ["id", "payment_status", "success_redirect_url", "url", "uuid"])
    t.eq("alikassa create: status and redirect", (created.get("payment_status"), created.get("success_redirect_url")),
         ("wait", "https://shop.example/ok"))
    t.check("alikassa create: integer id", isinstance(created.get("id"), int), created)
    t.eq("alikassa create: url", created.get("url"), f"http://127.0.0.1:{c.port}/pay/alikassa/{created.get('uuid')}")
    by_id = json_or_none(c.alikassa({"id": str(created.get("id"))})) or {}
    t.eq("alikassa create: visible by id", (by_id.get("payment_status"), by_id.get("order_id"), by_id.get("amount"),
                                            by_id.get("service_code"), by_id.get("url")),
         ("wait", "ak-new-1", "100.00", "payment_card_rub", created.get("url")))
    t.eq("alikassa create: visible by order_id", json_or_none(c.alikassa({"order_id": "ak-new-1"})), by_id)
    t.eq("alikassa pay page", c.raw("GET", f"/pay/alikassa/{created.get('uuid')}").status, 200)
    taken = {"message": "The given data was invalid.", "errors": {"order_id": ["The order id has already been taken."]}}
    check_json_reply(t, "alikassa create: duplicate order_id", alikassa_create(c, order), 400, taken)
    check_json_reply(t, "alikassa create: fixture order_id taken", alikassa_create(c, ali_order("ak-order-536")), 400, taken)
    other = alikassa_create(c, ali_order("ak-new-1", amount=5), account=ALI_SHA256)
    t.eq("alikassa create: same order_id on another account", other.status, 200)
    t.eq("alikassa status: each account sees its own order",
         (json_or_none(c.alikassa({"order_id": "ak-new-1"}))["amount"],
          json_or_none(c.alikassa({"order_id": "ak-new-1"}, account=ALI_SHA256))["amount"]), ("100.00", "5.00"))
    t.eq("alikassa status: other account's id is unknown",
         c.alikassa({"id": created.get("id")}, account=ALI_SHA256).status, 400)
    check_json_reply(t, "alikassa create: all required missing", alikassa_create(c, {}), 400, {
        "message": "The given data was invalid.", "errors": {
            "amount": ["The amount field is required."], "order_id": ["The order id field is required."],
            "service": ["The service field is required."], "customer_ip": ["The customer ip field is required."],
            "customer_browser_user_agent": ["The customer browser user agent field is required."]}})
    for name, change, field, message in (
            ("unknown service", {"service": "payment_paypal_usd"}, "service", "The selected service is invalid."),
            ("three decimals", {"amount": "1.234"}, "amount", "The amount must have 0-2 decimal places."),
            ("not a number", {"amount": "abc"}, "amount", "The amount must be a number."),
            ("zero", {"amount": "0.00"}, "amount", "The amount must be at least 0.01."),
            ("lifetime too short", {"lifetime": 899}, "lifetime", "The lifetime must be between 900 and 3600."),
            ("lifetime too long", {"lifetime": 3601}, "lifetime", "The lifetime must be between 900 and 3600."),
            ("bad ip", {"customer_ip": "300.1.1.1"}, "customer_ip", "The customer ip must be a valid IP address."),
            ("integer order_id", {"order_id": 5}, "order_id", "The order id must be a string."),
            ("long order_id", {"order_id": "x" * 129}, "order_id", "The order id must not be greater than 128 characters."),
            ("bad url", {"notification_endpoint_url": "nope"}, "notification_endpoint_url",
             "The notification endpoint url must be a valid URL.")):
        obj = ali_order("ak-bad")
        obj.update(change)
        check_json_reply(t, f"alikassa create: {name}", alikassa_create(c, obj), 400,
                         {"message": "The given data was invalid.", "errors": {field: [message]}})
    t.eq("alikassa create: order_id of 128", alikassa_create(c, ali_order("y" * 128)).status, 200)
    check_json_reply(t, "alikassa create: unknown key", alikassa_create(c, ali_order("z"), key_path=ALIKASSA_OTHER_KEY),
                     401, {"message": "Invalid signature"})
    body = json.dumps(ali_order("z")).encode()
    resp = c.raw("POST", "/alikassa/v1/payment", [("Content-Type", "application/json"), ("Account", ALI_SHA256["account"]),
                                                  ("Sign", alikassa_sign(body, "sha1"))], body)
    t.eq("alikassa create: SHA-1 Sign on a SHA-256 account", resp.status, 401)
    stats = c.stats()
    t.eq("alikassa stats", (stats["creates_by_order"].get("alikassa:ak-new-1"), stats["created"]["alikassa"]), (3, 3))


def test_create_morune(t, c):
    c.reset()
    c.control("config", {"now": 1767225600})
    order = mo_order("mo-new-1", currency="EUR", hook_url="https://shop.example/hook?s=1",
                     custom_fields=json.dumps({"user": 7, "note": "Оплата/1"}, ensure_ascii=False),
                     comment="c", fail_url="https://shop.example/f", success_url="https://shop.example/s",
                     include_service=["card"], exclude_service=[], extra_unknown=1)
    resp = morune_create(c, order)
    created = json_or_none(resp) or {}
    data = created.get("data") or {}
    t.eq("morune create: 200", resp.status, 200)
    t.eq("morune create: shape", (list(created), created.get("status"), created.get("status_check"), sorted(data)),
         (["status", "data", "status_check"], 200, True, ["amount", "currency", "expired", "id", "url"]))
    t.eq("morune create: values", (data.get("amount"), data.get("currency"), data.get("expired")),
         (100.5, "EUR", "2026-01-01 05:00:00"))
    t.eq("morune create: url", data.get("url"), f"http://127.0.0.1:{c.port}/pay/morune/{data.get('id')}")
    by_id = json_or_none(c.morune(params=[("invoice_id", data.get("id", ""))])) or {}
    info = by_id.get("data") or {}
    t.eq("morune create: visible by invoice_id", (info.get("order_id"), info.get("status"), info.get("invoice_amount"),
                                                  info.get("custom_field"), info.get("created_at"), info.get("expired_at")),
         ("mo-new-1", "created", 100.5, {"user": 7, "note": "Оплата/1"}, "2026-01-01 00:00:00", "2026-01-01 05:00:00"))
    t.eq("morune create: visible by order_id", json_or_none(c.morune(params=[("order_id", "mo-new-1")])), by_id)
    t.eq("morune create: expire given", json_or_none(morune_create(c, mo_order("mo-new-2", expire=15)))["data"]["expired"],
         "2026-01-01 00:15:00")
    t.eq("morune create: default currency", json_or_none(morune_create(c, mo_order("mo-new-3", amount="20")))["data"]["currency"],
         "RUB")

    def err(code, text):
        return {"data": None, "error": text, "status": code, "status_check": False}
    check_json_reply(t, "morune create: duplicate order_id", morune_create(c, order), 422,
                     err(422, "The order id has already been taken."))
    check_json_reply(t, "morune create: fixture order_id taken", morune_create(c, mo_order("mo-order-0")), 422,
                     err(422, "The order id has already been taken."))
    check_json_reply(t, "morune create: wrong key", morune_create(c, mo_order("mo-x"), key="wrong"), 401, err(401, "Unauthorized"))
    check_json_reply(t, "morune create: unknown shop", morune_create(c, mo_order("mo-x", shop_id="3fa85f64-5717-4562-b3fc-000000000000")),
                     401, err(401, "Unauthorized"))
    for name, change, text in (
            ("no amount", {"amount": None}, "The amount field is required."),
            ("negative amount", {"amount": -5}, "The amount must be a number greater than 0 with at most 2 decimals."),
            ("no order_id", {"order_id": None}, "The order id field is required."),
            ("long order_id", {"order_id": "x" * 256}, "The order id must not be greater than 255 characters."),
            ("currency GBP", {"currency": "GBP"}, "The selected currency is invalid."),
            ("custom_fields not JSON", {"custom_fields": "{"}, "The custom fields must be a valid JSON string."),
            ("custom_fields too long", {"custom_fields": json.dumps("x" * 499)},
             "The custom fields must not be greater than 500 characters."),
            ("expire zero", {"expire": 0}, "The expire must be between 1 and 43200."),
            ("bad hook_url", {"hook_url": "x"}, "The hook url must be a valid URL.")):
        obj = {k: v for k, v in dict(mo_order("mo-bad"), **change).items() if v is not None}
        check_json_reply(t, f"morune create: {name}", morune_create(c, obj), 422, err(422, text))
    t.eq("morune create: order_id of 255", morune_create(c, mo_order("y" * 255)).status, 200)
    t.eq("morune create: GET", c.raw("GET", "/morune/invoice/create").status, 405)
    stats = c.stats()
    t.eq("morune stats", (stats["creates_by_order"].get("morune:mo-new-1"), stats["created"]["morune"]), (2, 4))


def test_settle(t, c):
    c.reset()
    ok = (json_or_none(okepay_create(c, [("amount", 500), ("currency", "EUR"), ("referenceId", "dup")])) or {"data": [{}]})["data"][0]
    okepay_create(c, [("amount", 600), ("currency", "EUR"), ("referenceId", "dup")])
    obmenka_call(c, "create", {"payment_id": "ob-s", "currency": "visamaster.uah", "amount": "200.00"})
    alikassa_create(c, ali_order("ak-s", amount="300.00"))
    mo = json_or_none(morune_create(c, mo_order("mo-s", amount=400)))["data"]
    cases = (
        ("okepay", {"id": ok.get("id")}, lambda: json_or_none(c.okepay(ok.get("id")))["data"][0]["status"],
         {"paid": "confirmed", "failed": "declined", "expired": "expired"}),
        ("obmenka", {"order_id": "ob-s"}, lambda: json_or_none(c.obmenka({"payment_id": "ob-s"}))["status"],
         {"paid": "PAYED", "failed": "FAILED", "expired": "CANCELED"}),
        ("alikassa", {"order_id": "ak-s"}, lambda: json_or_none(c.alikassa({"order_id": "ak-s"}))["payment_status"],
         {"paid": "paid", "failed": "fail", "expired": "cancel"}),
        ("morune", {"id": mo["id"]}, lambda: json_or_none(c.morune(params=[("order_id", "mo-s")]))["data"]["status"],
         {"paid": "success", "failed": "fail", "expired": "expired"}),
    )
    for provider, sel, status, mapping in cases:
        for outcome, word in mapping.items():
            resp = c.control("settle", dict(sel, provider=provider, status=outcome))
            t.eq(f"settle {provider} {outcome}: reply", (resp.status, (json_or_none(resp) or {}).get("payment", {}).get(
                {"alikassa": "payment_status"}.get(provider, "status"))), (200, word))
            t.eq(f"settle {provider} {outcome}: status call", status(), word)
    c.control("settle", {"provider": "obmenka", "order_id": "ob-s", "status": "paid", "native": "FINISHED"})
    t.eq("settle obmenka native FINISHED", json_or_none(c.obmenka({"payment_id": "ob-s"}))["status"], "FINISHED")
    c.control("settle", {"provider": "alikassa", "order_id": "ak-s", "status": "paid"})
    paid = json_or_none(c.alikassa({"order_id": "ak-s"}))
    t.eq("settle alikassa paid amounts", (paid["payment_amount"], paid["commission_amount"], paid["account_payment_amount"]),
         ("300.00", "9.00", "291.00"))
    c.control("settle", {"provider": "morune", "id": mo["id"], "status": "paid"})
    paid = json_or_none(c.morune(params=[("order_id", "mo-s")]))["data"]
    t.eq("settle morune paid amounts", (paid["credited"], paid["commission_amount"], paid["pay_service"]), (388, 12, "card"))
    t.check("settle morune paid_at", isinstance(paid["paid_at"], str), paid)
    gw = json_or_none(c.okepay(ok.get("id")))["data"][0]
    t.eq("settle okepay: one transaction per paid/failed settle",
         [tr["status"] for tr in gw["invoices"][0]["transactions"]], ["confirmed", "declined"])
    t.eq("settle fixture payment", c.control("settle", {"provider": "okepay", "id": 101, "status": "paid"}).status, 200)
    t.eq("settle: ambiguous order_id", c.control("settle", {"provider": "okepay", "order_id": "dup", "status": "paid"}).status, 409)
    t.eq("settle: unknown", c.control("settle", {"provider": "morune", "id": "nope", "status": "paid"}).status, 404)
    t.eq("settle: bad status", c.control("settle", {"provider": "morune", "id": mo["id"], "status": "success"}).status, 400)
    t.eq("settle: unknown key", c.control("settle", {"provider": "morune", "id": mo["id"], "status": "paid", "x": 1}).status, 400)
    t.eq("settle: GET", c.raw("GET", "/_control/settle").status, 405)


def test_webhooks(t, c):
    c.reset()
    c.control("config", {"now": 1767225600})
    # Morune
    mo = json_or_none(morune_create(c, mo_order("mo/wh-Заказ", amount="250.00", hook_url="https://shop.example/mo/hook?a=1",
                                                custom_fields=json.dumps({"z": "Оплата/1 😀", "a": 1}, ensure_ascii=False))))["data"]
    t.eq("morune webhook before settle", c.control("webhook", {"provider": "morune", "id": mo["id"]}).status, 409)
    c.control("settle", {"provider": "morune", "id": mo["id"], "status": "paid"})
    key = MORUNE["additional_key"]
    for escape in ("none", "php"):
        hook = json_or_none(c.control("webhook", {"provider": "morune", "id": mo["id"], "escape": escape})) or {}
        t.eq(f"morune webhook {escape}: request", (sorted(hook), hook.get("method"), hook.get("url"), hook.get("path"),
                                                   hook.get("query"), hook.get("headers", {}).get("Content-Type")),
             (["body", "headers", "method", "path", "query", "url"], "POST", "https://shop.example/mo/hook?a=1",
              "/mo/hook", "a=1", "application/json"))
        body = json.loads(hook.get("body", "null"))
        t.eq(f"morune webhook {escape}: body", {k: body.get(k) for k in ("invoice_id", "status", "amount", "order_id",
                                                                          "custom_fields", "type", "credited", "pay_time")},
             {"invoice_id": mo["id"], "status": "success", "amount": "250.00", "order_id": "mo/wh-Заказ",
              "custom_fields": {"z": "Оплата/1 😀", "a": 1}, "type": 1, "credited": "242.50",
              "pay_time": "2026-01-01 00:00:00"})
        t.eq(f"morune webhook {escape}: body escaping", "\\/" in hook["body"], escape == "php")
        t.eq(f"morune webhook {escape}: signature verifies (independent)",
             morune_verify(key, hook["body"], hook["headers"].get("x-api-sha256-signature", "")), escape)
        t.check(f"morune webhook {escape}: not the API key",
                morune_verify(MORUNE["api_key"], hook["body"], hook["headers"]["x-api-sha256-signature"]) is None)
    forged = json_or_none(c.control("webhook", {"provider": "morune", "id": mo["id"], "forge": True}))
    t.check("morune webhook forged: well-formed",
            re.fullmatch(r"[0-9a-f]{64}", forged["headers"]["x-api-sha256-signature"]) is not None, forged)
    t.eq("morune webhook forged: fails", morune_verify(key, forged["body"], forged["headers"]["x-api-sha256-signature"]), None)
    url = json_or_none(c.control("webhook", {"provider": "morune", "order_id": "mo/wh-Заказ", "url": "http://127.0.0.1:1/x"}))
    t.eq("morune webhook: url option and order_id", url.get("url"), "http://127.0.0.1:1/x")
    t.eq("morune webhook: bad escape", c.control("webhook", {"provider": "morune", "id": mo["id"], "escape": "x"}).status, 400)
    t.eq("morune webhook: option of another gateway",
         c.control("webhook", {"provider": "morune", "id": mo["id"], "digest": "sha1"}).status, 400)
    no_hook = json_or_none(morune_create(c, mo_order("mo-nohook")))["data"]
    c.control("settle", {"provider": "morune", "id": no_hook["id"], "status": "failed"})
    t.eq("morune webhook: no hook_url", c.control("webhook", {"provider": "morune", "id": no_hook["id"]}).status, 409)
    failed = json_or_none(c.control("webhook", {"provider": "morune", "id": no_hook["id"], "url": "https://s.example/h"}))
    body = json.loads(failed["body"])
    t.eq("morune webhook failed: body", (body["status"], body["credited"], body["pay_time"], body["custom_fields"],
                                         body["reject_time"]), ("fail", None, None, {}, "2026-01-01 00:00:00"))
    t.eq("morune webhook failed: verifies", morune_verify(key, failed["body"], failed["headers"]["x-api-sha256-signature"]), "none")
    # AliKassa
    desc = "Оплата/№1 😀 \"q\" \\ \t"
    ak = json_or_none(alikassa_create(c, ali_order("ak/wh 1", amount="1200.50", desc=desc,
                                                   notification_endpoint_url="https://shop.example/ak/n?src=ak")))
    t.eq("alikassa webhook before settle", c.control("webhook", {"provider": "alikassa", "id": ak["id"]}).status, 409)
    c.control("settle", {"provider": "alikassa", "id": ak["id"], "status": "paid"})
    for digest in ("sha1", "sha256"):
        opts = {"provider": "alikassa", "id": ak["id"]}
        if digest == "sha256":
            opts["digest"] = "sha256"
        hook = json_or_none(c.control("webhook", opts)) or {}
        t.eq(f"alikassa webhook {digest}: request", (hook.get("method"), hook.get("path"), hook.get("body"), hook.get("headers")),
             ("GET", "/ak/n", "", {}))
        t.check(f"alikassa webhook {digest}: url is endpoint + query",
                hook.get("url") == "https://shop.example/ak/n?" + hook.get("query", "") and hook["query"].startswith("src=ak&"), hook)
        pairs = form_pairs(hook["query"])
        t.eq(f"alikassa webhook {digest}: parameters in order", [k for k, _ in pairs],
             ["src", "type", "id", "order_id", "payment_status", "amount", "payment_amount", "commission_amount",
              "is_partial_payment", "account", "service", "desc", "sign"])
        got = dict(pairs)
        t.eq(f"alikassa webhook {digest}: values", (got["type"], got["id"], got["order_id"], got["payment_status"], got["amount"],
                                                    got["payment_amount"], got["commission_amount"], got["is_partial_payment"],
                                                    got["account"], got["service"], got["desc"]),
             ("payment", str(ak["id"]), "ak/wh 1", "paid", "1200.50", "1200.50", "36.02", "0", ALI_SHA1["account"],
              "payment_card_rub", desc))
        t.check(f"alikassa webhook {digest}: verifies with the notification key",
                alikassa_verify(hook["query"].partition("&")[2], digest))
        t.check(f"alikassa webhook {digest}: spaces as '+'", "+" in hook["query"] and "%20" not in hook["query"])
    forged = json_or_none(c.control("webhook", {"provider": "alikassa", "id": ak["id"], "forge": True}))
    t.check("alikassa webhook forged: fails", not alikassa_verify(forged["query"].partition("&")[2], "sha1"))
    t.eq("alikassa webhook: bad digest", c.control("webhook", {"provider": "alikassa", "id": ak["id"], "digest": "md5"}).status, 400)
    plain = json_or_none(alikassa_create(c, ali_order("ak-plain")))
    c.control("settle", {"provider": "alikassa", "id": plain["id"], "status": "failed"})
    t.eq("alikassa webhook: no endpoint", c.control("webhook", {"provider": "alikassa", "id": plain["id"]}).status, 409)
    hook = json_or_none(c.control("webhook", {"provider": "alikassa", "id": plain["id"], "url": "https://s.example/n"}))
    got = dict(form_pairs(hook["query"]))
    t.eq("alikassa webhook failed: missing fields not sent", sorted(k for k in ("payment_amount", "commission_amount", "desc")
                                                                     if k in got), [])
    t.check("alikassa webhook failed: verifies with nulls", alikassa_verify(hook["query"], "sha1"))
    # OkePay
    gw = json_or_none(okepay_create(c, [("amount", 990), ("currency", "CHF"), ("referenceId", "ok/wh ä")]))["data"][0]
    t.eq("okepay webhook before settle", c.control("webhook", {"provider": "okepay", "id": gw["id"]}).status, 409)
    c.control("settle", {"provider": "okepay", "id": gw["id"], "status": "paid"})
    hook = json_or_none(c.control("webhook", {"provider": "okepay", "id": gw["id"]})) or {}
    t.eq("okepay webhook json: request", (hook.get("method"), hook.get("url"), hook.get("headers")),
         ("POST", OKEPAY["webhook_url"], {"Content-Type": "application/json"}))
    tr = json.loads(hook["body"])["transaction"]
    t.eq("okepay webhook json: transaction", (tr["status"], tr["amount"], tr["referenceId"], tr["time"], tr["invoice"]),
         ("confirmed", 990, "ok/wh ä", "2026-01-01 00:00:00", {"paymentLinkId": gw["id"], "referenceId": "ok/wh ä"}))
    t.check("okepay webhook json: id and uuid", isinstance(tr["id"], int) and isinstance(tr["uuid"], str), tr)
    form = json_or_none(c.control("webhook", {"provider": "okepay", "id": gw["id"], "format": "form",
                                              "url": "https://shop.example/ok/hook"}))
    t.eq("okepay webhook form: content type", form["headers"], {"Content-Type": "application/x-www-form-urlencoded"})
    t.eq("okepay webhook form: body", form_pairs(form["body"]),
         [("transaction[id]", str(tr["id"])), ("transaction[uuid]", tr["uuid"]), ("transaction[status]", "confirmed"),
          ("transaction[amount]", "990"), ("transaction[referenceId]", "ok/wh ä"), ("transaction[time]", "2026-01-01 00:00:00"),
          ("transaction[invoice][paymentLinkId]", str(gw["id"])), ("transaction[invoice][referenceId]", "ok/wh ä")])
    t.check("okepay webhook form: PHP encoding", "transaction%5Binvoice%5D%5BpaymentLinkId%5D=" in form["body"]
            and "ok%2Fwh+%C3%A4" in form["body"], form["body"])
    # Obmenka
    obmenka_call(c, "create", {"payment_id": "ob-wh", "currency": "visamaster.uah", "amount": "5.00",
                               "status_url": "https://shop.example/ob/cb?inv=ob-wh&sig=abc"})
    hook = json_or_none(c.control("webhook", {"provider": "obmenka", "order_id": "ob-wh"}))
    t.eq("obmenka webhook: empty GET to status_url", hook, {
        "method": "GET", "url": "https://shop.example/ob/cb?inv=ob-wh&sig=abc", "path": "/ob/cb",
        "query": "inv=ob-wh&sig=abc", "headers": {}, "body": ""})
    obmenka_call(c, "create", {"payment_id": "ob-nourl", "currency": "visamaster.uah", "amount": "5.00"})
    t.eq("obmenka webhook: no status_url", c.control("webhook", {"provider": "obmenka", "order_id": "ob-nourl"}).status, 409)
    t.eq("webhook: unknown provider", c.control("webhook", {"provider": "paypal", "id": "1"}).status, 400)
    t.eq("webhook: unknown id", c.control("webhook", {"provider": "obmenka", "id": "nope"}).status, 404)


def test_create_counters(t, c):
    c.reset()
    first = json_or_none(morune_create(c, mo_order("mo-c1")))["data"]["id"]
    morune_create(c, mo_order("mo-c1"))
    morune_create(c, mo_order("mo-c2"), key="wrong")
    stats = c.stats()
    t.eq("counters: creates, by order, created",
         (stats["creates"]["morune"], stats["creates_by_order"], stats["created"]["morune"], stats["requests"]["morune"]),
         (3, {"morune:mo-c1": 2, "morune:mo-c2": 1}, 1, 3))
    t.eq("counters: a wrong key counts as a signature failure", stats["signature_failures"], 1)
    c.reset()
    stats = c.stats()
    t.eq("counters: reset clears", (stats["creates"]["morune"], stats["creates_by_order"], stats["created"]["morune"]),
         (0, {}, 0))
    t.eq("reset drops created invoices", c.morune(params=[("order_id", "mo-c1")]).status, 404)
    again = json_or_none(morune_create(c, mo_order("mo-c1")))["data"]["id"]
    t.check("ids are not reused after a reset", again != first, (first, again))
    t.eq("config now: null restores the clock", c.control("config", {"now": None}).status, 200)
    t.eq("config now: bad", c.control("config", {"now": "soon"}).status, 400)


def okepay_normal_body(c):
    return c.okepay(106).body


def test_faults(t, c):
    c.reset()
    normal = c.okepay(106)
    prefix = lambda spec: f"/_fault/{spec}"

    resp = c.okepay(106, prefix=prefix("delay=300"))
    t.check("delay: waited", resp.elapsed >= 0.29, resp.elapsed)
    t.eq("delay: normal answer", resp.body, normal.body)

    conn = Conn(c.port, timeout=1.0)
    conn.send(f"GET {c.okepay_target(106, prefix=prefix('noreply'))} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    resp = conn.read_response()
    t.eq("noreply: nothing sent", (resp.end, resp.status, resp.body), ("timeout", None, b""))
    t.eq("noreply: request in flight", c.stats()["in_flight"], 1)
    conn.close()
    t.check("noreply: closed when the client goes", wait_for(lambda: c.stats()["in_flight"] == 0, 3.0))

    resp = c.okepay(106, prefix=prefix("status=503"))
    check_json_reply(t, "status=503", resp, 503, {"error": "injected"})
    resp = c.okepay(106, prefix=prefix("status=503"))
    t.eq("status=503: no Location", resp.header("location"), None)
    plain = c.okepay_target(106)
    for code in (301, 302, 303, 307, 308):
        before = c.stats()["requests"]["okepay"]
        resp = c.raw("GET", c.okepay_target(106, prefix=prefix(f"status={code}")))
        t.eq(f"status={code}: code and body", (resp.status, json_or_none(resp), resp.end),
             (code, {"error": "injected"}, "complete"))
        t.eq(f"status={code}: Location is the request without the fault prefix",
             resp.header("location"), f"http://127.0.0.1:{c.port}{plain}")
        t.eq(f"status={code}: counted once", c.stats()["requests"]["okepay"] - before, 1)
    location = resp.header("location") or ""
    followed = c.raw("GET", location[location.find("/", len("http://")):])
    t.eq("redirect target answers normally", (followed.status, followed.body), (200, normal.body))
    resp = c.okepay(106, prefix=prefix("delay=10,status=302,malformed"))
    t.check("status=302 with other modes keeps its Location", resp.status == 302
            and (resp.header("location") or "").endswith(plain), resp.header_list)
    resp = c.morune(params=[("order_id", "mo-order-1")], prefix=prefix("status=307"))
    t.check("morune status=307: Location keeps the query", resp.status == 307 and (resp.header("location") or "")
            .endswith("/morune/invoice/info?" + http_build_query([("shop_id", MORUNE["shop_id"]),
                                                                  ("order_id", "mo-order-1")])), resp.header_list)
    resp = c.okepay(106, prefix=prefix("malformed"))
    t.eq("malformed", (resp.status, resp.body, resp.end, resp.header("content-length")),
         (200, b'{"status":"success","data":[{"id":', "complete", str(len(b'{"status":"success","data":[{"id":'))))
    resp = c.okepay(106, prefix=prefix("notjson"))
    t.check("notjson", resp.status == 200 and resp.header("content-type").startswith("text/html")
            and resp.body.lstrip().startswith(b"<") and json_or_none(resp) is None, resp)
    resp = c.okepay(106, prefix=prefix("emptybody"))
    t.eq("emptybody", (resp.status, resp.body, resp.header("content-length"), resp.end), (200, b"", "0", "complete"))

    resp = c.okepay(106, prefix=prefix("oversize=300000"))
    t.eq("oversize: size and framing", (resp.status, len(resp.body), resp.header("content-length"), resp.chunked),
         (200, 300000, "300000", False))
    t.eq("oversize: valid JSON with the reply", (json_or_none(resp) or {}).get("data"), normal.json()["data"])
    resp = c.okepay(106, prefix=prefix("oversize_chunked=300000"))
    t.eq("oversize_chunked: framing", (resp.status, len(resp.body), resp.header("content-length"), resp.chunked,
                                       resp.end), (200, 300000, None, True, "complete"))
    t.eq("oversize_chunked: valid JSON", (json_or_none(resp) or {}).get("data"), normal.json()["data"])

    conn = Conn(c.port, timeout=5.0)
    conn.send(f"GET {c.okepay_target(106, prefix=prefix('reset'))} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    resp = conn.read_response()
    conn.close()
    t.eq("reset: TCP RST, no bytes", (resp.end, resp.status), ("reset", None))
    resp = c.okepay(106, prefix=prefix("resetmid"))
    t.eq("resetmid: head, 10 of 1000 bytes, RST",
         (resp.status, resp.header("content-length"), resp.body, resp.end), (200, "1000", normal.body[:10], "reset"))
    resp = c.okepay(106, prefix=prefix("truncated"))
    t.check("truncated: short body then FIN",
            resp.end == "eof" and resp.body == normal.body and int(resp.header("content-length")) > len(resp.body), resp)

    conn = Conn(c.port, timeout=5.0)
    conn.send(f"GET {c.okepay_target(106, prefix=prefix('slowbody'))} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = conn.read_until(b"\r\n\r\n")
    got, started = bytearray(conn.buf), time.monotonic()
    conn.buf = b""
    conn.settimeout(0.2)
    while time.monotonic() - started < 1.3:
        try:
            data = conn.recv(100)
        except (socket.timeout, TimeoutError):
            continue
        if not data:
            break
        got += data
    t.check("slowbody: large Content-Length", b"Content-Length: 600\r\n" in head, head)
    t.check("slowbody: one byte per 500 ms", 2 <= len(got) <= 4 and normal.body.startswith(bytes(got)), bytes(got))
    conn.close()
    t.check("slowbody: stops when the client goes", wait_for(lambda: c.stats()["in_flight"] == 0, 3.0))

    check_json_reply(t, "okepay notfound200", c.okepay(106, prefix=prefix("notfound200")), 200,
                     {"status": "error", "message": "No Gateway found with id 106"})
    check_json_reply(t, "okepay authfail", c.okepay(106, prefix=prefix("authfail")), 401,
                     {"status": "error", "message": "The API Signature is not valid"})

    resp = c.okepay(106, prefix=prefix("nul"))
    t.check("nul: raw NUL inside the status string", resp.status == 200 and b'"confirmed\x00"' in resp.body, resp)
    t.check("nul: strict JSON parsers refuse it", json_or_none(resp) is None)
    resp = c.okepay(106, prefix=prefix("badutf8"))
    t.check("badutf8: invalid UTF-8 inside a string", resp.status == 200 and b'"confirmed\xff' in resp.body, resp)
    try:
        resp.body.decode("utf-8")
        t.check("badutf8: not decodable", False)
    except UnicodeDecodeError:
        t.check("badutf8: not decodable", True)
    resp = c.okepay(106, prefix=prefix("deepnest=40"))
    nested = (json_or_none(resp) or {"data": [{}]})["data"][0].get("nested")
    depth = 0
    while isinstance(nested, list):
        depth, nested = depth + 1, (nested[0] if nested else None)
    t.eq("deepnest=40: depth", depth, 40)
    resp = c.okepay(106, prefix=prefix("deepnest=200000"))
    t.check("deepnest=200000: on the wire", resp.status == 200 and b"[" * 200000 + b"]" * 200000 in resp.body
            and resp.end == "complete", resp)
    resp = c.okepay(106, prefix=prefix("hugenumber"))
    amount = (json_or_none(resp) or {"data": [{}]})["data"][0].get("amount")
    t.check("hugenumber: 400-digit amount", isinstance(amount, int) and len(str(amount)) == 400, amount)
    resp = c.okepay(106, prefix=prefix("wrongtypes"))
    g = (json_or_none(resp) or {"data": [{}]})["data"][0]
    t.check("wrongtypes: status object, amount array", isinstance(g.get("status"), dict)
            and isinstance(g.get("amount"), list), g)

    resp = c.okepay(106, prefix=prefix("delay=200,status=502"))
    t.check("combined delay + status", resp.status == 502 and resp.elapsed >= 0.19, resp)
    resp = c.okepay(106, prefix=prefix("delay%3D100%2Cstatus%3D500"))
    t.eq("URL-encoded spec", resp.status, 500)
    resp = c.okepay(106, prefix=prefix("bogus"))
    t.check("unknown fault mode refused", resp.status == 400 and b"bogus" in resp.body, resp)
    t.eq("fault value required", c.okepay(106, prefix=prefix("delay")).status, 400)
    t.eq("fault applies to errors too", c.okepay(106, prefix=prefix("status=504"), secret="x").status, 504)

    # Per-provider payload faults.
    for provider, call, get_payment, status_field, amount_field in (
            ("obmenka", lambda p: c.obmenka({"tracking": "79DF-60B0-1702"}, prefix=p), lambda o: o, "status", "amount"),
            ("alikassa", lambda p: c.alikassa({"id": 100000537}, prefix=p), lambda o: o, "payment_status", "amount"),
            ("morune", lambda p: c.morune(params=[("order_id", "mo-order-1")], prefix=p), lambda o: o["data"],
             "status", "invoice_amount")):
        base = call("")
        resp = call(prefix("wrongtypes"))
        pay = get_payment(json_or_none(resp) or {"data": {}})
        t.check(f"{provider} wrongtypes", isinstance(pay.get(status_field), dict) and isinstance(pay.get(amount_field), list), pay)
        resp = call(prefix("hugenumber"))
        pay = get_payment(json_or_none(resp) or {"data": {}})
        t.check(f"{provider} hugenumber", isinstance(pay.get(amount_field), int) and len(str(pay[amount_field])) == 400, pay)
        if provider == "obmenka":
            check_obmenka_signed(t, "obmenka hugenumber still signed", resp)
        status = get_payment(base.json())[status_field]
        resp = call(prefix("nul"))
        t.check(f"{provider} nul", f'"{status}\x00"'.encode() in resp.body, resp)
        resp = call(prefix("badutf8"))
        t.check(f"{provider} badutf8", f'"{status}'.encode() + b"\xff" in resp.body, resp)
        resp = call(prefix("deepnest=30"))
        t.check(f"{provider} deepnest", b"[" * 30 + b"]" * 30 in resp.body and json_or_none(resp) is not None, resp)
        resp = call(prefix("oversize=100000"))
        t.check(f"{provider} oversize", len(resp.body) == 100000 and json_or_none(resp) is not None, resp)
        if provider == "obmenka":
            check_obmenka_signed(t, "obmenka oversize signed", resp)
            resp = call(prefix("oversize_chunked=100000"))
            check_obmenka_signed(t, "obmenka oversize_chunked signed", resp)
            resp = call(prefix("malformed"))
            check_obmenka_signed(t, "obmenka malformed signed", resp)
    for provider, call, nf, af in (
            ("obmenka", lambda p: c.obmenka({"tracking": "79DF-60B0-1702"}, prefix=p),
             (200, {"error": {"code": 401, "message": "Payment not found"}}),
             (403, {"error": {"code": 403, "message": "Invalid signature"}})),
            ("alikassa", lambda p: c.alikassa({"id": 100000537}, prefix=p),
             (200, {"message": "The given data was invalid.", "errors": {"id": ["The selected id is invalid."]}}),
             (401, {"message": "Invalid signature"})),
            ("alikassa", lambda p: c.alikassa({"order_id": "ak-order-537"}, prefix=p),
             (200, {"message": "The given data was invalid.",
                    "errors": {"order_id": ["The selected order id is invalid."]}}),
             (401, {"message": "Invalid signature"})),
            ("morune", lambda p: c.morune(params=[("order_id", "mo-order-1")], prefix=p),
             (200, {"data": None, "error": "Инвойс не найден", "status": 404, "status_check": False}),
             (401, {"data": None, "error": "Unauthorized", "status": 401, "status_check": False}))):
        resp = call(prefix("notfound200"))
        check_json_reply(t, f"{provider} notfound200", resp, *nf)
        resp = call(prefix("authfail"))
        check_json_reply(t, f"{provider} authfail", resp, *af)
        if provider == "alikassa":
            resp = call(prefix("invalid"))
            check_json_reply(t, "alikassa invalid", resp, 400,
                             {"message": "The given data was invalid.",
                              "errors": {"id": ["The id must be a string."],
                                         "service": ["The selected service is invalid."]}})
        if provider == "obmenka":
            check_obmenka_signed(t, "obmenka notfound200 signed", call(prefix("notfound200")))
    check_json_reply(t, "okepay invalid", c.okepay(106, prefix=prefix("invalid")), 400,
                     {"status": "error", "message": "Invalid gateway id"})
    resp = c.obmenka({"tracking": "79DF-60B0-1702"}, prefix=prefix("invalid"))
    check_json_reply(t, "obmenka invalid", resp, 400, {"error": {"code": 400, "message": "Invalid request"}})
    check_obmenka_signed(t, "obmenka invalid signed", resp)
    check_json_reply(t, "morune invalid", c.morune(params=[("order_id", "mo-order-1")], prefix=prefix("invalid")),
                     422, {"data": None, "error": "Validation error", "status": 422, "status_check": False})

    resp = c.obmenka({"tracking": "79DF-60B0-1702"}, prefix=prefix("badsig"))
    t.check("obmenka badsig: header present but wrong", resp.status == 200 and resp.header("DPAY_SECURE")
            and resp.header("DPAY_SECURE") != obmenka_sign(OBMENKA["salt"], resp.body), resp.header_list)
    resp = c.obmenka({"tracking": "79DF-60B0-1702"}, prefix=prefix("nosig"))
    t.eq("obmenka nosig: no header", (resp.status, resp.header("DPAY_SECURE")), (200, None))
    t.eq("obmenka nosig: body intact", json_or_none(resp), view(FIX["payments"]["obmenka"][2]))
    resp = c.obmenka({"tracking": "79DF-60B0-1702"}, prefix=prefix("status=500"))
    check_obmenka_signed(t, "obmenka status=500 signed", resp)
    resp = c.alikassa({"id": 100000537}, prefix=prefix("reset"))
    t.eq("alikassa reset", resp.end, "reset")
    resp = c.morune(params=[("order_id", "mo-order-1")], prefix=prefix("truncated"))
    t.eq("morune truncated", resp.end, "eof")

    # A payment's own _fault.
    c.control("set", {"provider": "okepay", "id": "101", "fault": "status=418"})
    t.eq("payment _fault applied", c.okepay(101).status, 418)
    t.eq("payment _fault only that payment", c.okepay(102).status, 200)
    c.control("set", {"provider": "okepay", "id": "101", "fault": None})
    t.eq("payment _fault cleared", c.okepay(101).status, 200)
    c.control("set", {"provider": "alikassa", "payment": {"id": "f-1", "order_id": "f-1", "payment_status": "paid",
                                                          "amount": "1", "_fault": "delay=200,wrongtypes"}})
    resp = c.alikassa({"id": "f-1"})
    t.check("payment _fault from a payment object", resp.elapsed >= 0.19
            and isinstance((json_or_none(resp) or {}).get("payment_status"), dict), resp)
    c.reset()


def test_http(t, c):
    conn = Conn(c.port)
    statuses = [conn.request("GET", c.okepay_target(101)).status for _ in range(3)]
    t.eq("keep-alive: three requests on one connection", statuses, [200] * 3)
    body = b'{"tracking":"79DF-60B0-1702"}'
    resp = conn.request("POST", "/obmenka/api/einvoice/status", c.obmenka_headers(body), body)
    t.eq("keep-alive: POST after GET", resp.status, 200)
    conn.close()

    conn = Conn(c.port)
    one = f"GET {c.okepay_target(101)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    conn.send(one + one.replace(b"101", b"102"))
    first, second = conn.read_response(), conn.read_response()
    t.eq("pipelining", (first.json()["data"][0]["id"], second.json()["data"][0]["id"]), (101, 102))
    conn.close()

    conn = Conn(c.port, timeout=3.0)
    resp = conn.request("GET", c.okepay_target(101), version="HTTP/1.0")
    t.eq("HTTP/1.0 answered and closed", (resp.status, resp.header("connection")), (200, "close"))
    try:
        closed = conn.recv(1) == b""
    except OSError:
        closed = True
    t.check("HTTP/1.0 connection closed", closed)
    conn.close()

    conn = Conn(c.port, timeout=3.0)
    resp = conn.request("GET", c.okepay_target(101), headers=[("Connection", "close")])
    t.eq("Connection: close honoured", (resp.status, resp.header("connection"), conn.recv(1)), (200, "close", b""))
    conn.close()

    conn = Conn(c.port, timeout=3.0)
    headers = c.obmenka_headers(body) + [("Content-Length", str(len(body))), ("Expect", "100-continue")]
    conn.send(("POST /obmenka/api/einvoice/status HTTP/1.1\r\nHost: x\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode())
    interim = conn.read_until(b"\r\n\r\n")
    conn.send(body)
    resp = conn.read_response()
    t.eq("Expect: 100-continue", (interim.split(b"\r\n")[0], resp.status), (b"HTTP/1.1 100 Continue", 200))
    conn.close()

    conn = Conn(c.port, timeout=3.0)
    chunked = b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:])
    conn.send(("POST /obmenka/api/einvoice/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in c.obmenka_headers(body)) + "\r\n").encode() + chunked)
    resp = conn.read_response()
    t.eq("chunked request body", resp.status, 200)
    check_obmenka_signed(t, "chunked request body", resp)
    conn.close()

    for label, raw, code in (("bad request line", b"GARBAGE\r\n\r\n", 400),
                             ("bad version", b"GET / HTTP/2.0\r\n\r\n", 505),
                             ("header too large", b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431),
                             ("bad Content-Length", b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
                             ("body too large", b"POST / HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n", 413)):
        conn = Conn(c.port, timeout=3.0)
        try:
            conn.send(raw)
        except OSError:
            pass
        t.eq(label, conn.read_response().status, code)
        conn.close()
    t.eq("unknown prefix", c.raw("GET", "/paypal/x").status, 404)
    t.eq("absolute-form target", c.raw("GET", f"http://127.0.0.1:{c.port}{c.okepay_target(101)}").status, 200)
    resp = c.okepay(101)
    t.check("Date header", bool(resp.header("date")), resp.header_list)


def test_concurrency(t, c):
    c.reset()
    results = []

    def worker(i):
        try:
            resp = c.okepay(1000000 + i, prefix="/_fault/delay=1000", timeout=15.0)
            results.append(resp.status)
        except Exception as exc:
            results.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(80)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - started
    t.eq("80 slow requests all answered", results.count(200), 80)
    t.check("80 slow requests served concurrently", elapsed < 3.5, f"{elapsed:.2f} s")
    stats = c.stats()
    t.check("max_in_flight >= 64", stats["max_in_flight"] >= 64, stats["max_in_flight"])
    t.eq("in_flight back to 0", stats["in_flight"], 0)
    t.eq("each synthetic id counted once", sorted(set(stats["by_payment"].values())), [1])


def test_throughput(t, c):
    """Informational: requests per second over a few keep-alive connections."""
    c.reset()
    count, threads_n = 3000, 4
    targets = [c.okepay_target(1000000 + i).encode() for i in range(count)]
    errors = []

    def worker(k):
        conn = Conn(c.port)
        try:
            for i in range(k, count, threads_n):
                conn.send(b"GET " + targets[i] + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                if conn.read_response().status != 200:
                    errors.append(i)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rate = count / (time.monotonic() - started)
    print(f"   info: {rate:.0f} req/s (okepay, {threads_n} keep-alive connections, Python client)")
    t.eq("throughput run without errors", errors, [])
    stats = c.stats()
    t.eq("throughput: every invoice checked once", (len(stats["by_payment"]), set(stats["by_payment"].values())),
         (count, {1}))


def test_log(t, c, log_path):
    with open(log_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    t.check("log has lines", len(lines) > 200, len(lines))
    t.check("log lines have 6 fields", all(len(line.split(" ")) == 6 for line in lines),
            [line for line in lines if len(line.split(" ")) != 6][:3])
    text = "\n".join(lines)
    secrets = {OKEPAY["secret"], OBMENKA["salt"], MORUNE["api_key"], "ApiSignature", "DPAY_SECURE"}
    leaked = [s for s in secrets | SENT_SECRETS
              if s in text or php_urlencode(s) in text]
    t.eq("log leaks no secret or signature", leaked, [])
    t.check("log shows provider and outcome", any(" okepay found 200" in line for line in lines)
            and any(" obmenka auth_failed 403" in line for line in lines))


def make_cert(directory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def start_emulator(tmp, *extra, name="emu"):
    port_file = os.path.join(tmp, f"{name}.port")
    err = open(os.path.join(tmp, f"{name}.stderr"), "wb")
    proc = subprocess.Popen([PYTHON, EMULATOR, "--port", "0", "--port-file", port_file, *extra],
                            stdout=subprocess.DEVNULL, stderr=err)
    if not wait_for(lambda: os.path.exists(port_file) or proc.poll() is not None, 15.0):
        proc.kill()
        raise RuntimeError("emulator did not start")
    if proc.poll() is not None:
        raise RuntimeError(f"emulator exited with {proc.returncode}")
    with open(port_file) as f:
        return proc, int(f.read().strip())


def test_cli(t, tmp):
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        port_file = os.path.join(tmp, "refused.port")
        proc = subprocess.run([PYTHON, EMULATOR, "--host", host, "--port", "0", "--port-file", port_file],
                              capture_output=True, timeout=20)
        t.check(f"refuses to bind {host}", proc.returncode != 0 and not os.path.exists(port_file)
                and b"loopback" in proc.stderr, proc.stderr)
    cert, key = make_cert(tmp)
    proc, port = start_emulator(tmp, "--tls-cert", cert, "--tls-key", key, "--delay-ms", "200",
                                "--host", "localhost", name="tls")
    tls = ssl.create_default_context(cafile=cert)
    c = Client(port, tls)
    resp = c.okepay(106)
    t.check("TLS request with --delay-ms 200", resp.status == 200 and resp.elapsed >= 0.19, resp)
    resp = c.okepay(106, prefix="/_fault/reset")
    t.eq("TLS reset fault", resp.end, "reset")
    resp = c.okepay(106, prefix="/_fault/status=308")
    t.eq("TLS status=308: https Location", (resp.status, resp.header("location")),
         (308, f"https://127.0.0.1:{port}{c.okepay_target(106)}"))
    t.eq("TLS control", c.control("health").status, 200)
    c.reset()
    sessions = []
    for i in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw_sock:
            with tls.wrap_socket(raw_sock, server_hostname="127.0.0.1",
                                 session=sessions[-1] if sessions else None) as s:
                s.sendall(b"GET /_control/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                while s.recv(65536):              # TLS 1.3 tickets come with the reply
                    pass
                sessions.append(s.session)
                resumed = s.session_reused
        t.eq(f"TLS connection {i + 1}: client sees resumption", resumed, i == 1)
    stats = c.stats()
    t.eq("TLS stats: connections and tls_resumed", (stats["connections"], stats["tls_resumed"]), (3, 1))
    proc.send_signal(signal.SIGINT)
    try:
        t.eq("SIGINT: clean exit", proc.wait(10), 0)
    except subprocess.TimeoutExpired:
        proc.kill()
        t.check("SIGINT: clean exit", False, "still running")


def main():
    t = Suite()
    tmp = tempfile.mkdtemp(prefix="paygw-emu-")
    log_path = os.path.join(tmp, "requests.log")
    proc = None
    try:
        proc, port = start_emulator(tmp, "--log", log_path)
        with open(os.path.join(tmp, "emu.port")) as f:
            t.check("port file holds the port", f.read() == f"{port}\n")
        c = Client(port)
        t.run(test_vectors, c)
        t.run(test_health, c)
        t.run(test_fixtures_okepay, c)
        t.run(test_fixtures_obmenka, c)
        t.run(test_fixtures_alikassa, c)
        t.run(test_fixtures_morune, c)
        t.run(test_errors_okepay, c)
        t.run(test_errors_obmenka, c)
        t.run(test_errors_alikassa, c)
        t.run(test_errors_morune, c)
        t.run(test_synthetic, c)
        t.run(test_control, c)
        t.run(test_lifecycle_vectors, c)
        t.run(test_create_okepay, c)
        t.run(test_create_obmenka, c)
        t.run(test_create_alikassa, c)
        t.run(test_create_morune, c)
        t.run(test_settle, c)
        t.run(test_webhooks, c)
        t.run(test_create_counters, c)
        t.run(test_faults, c)
        t.run(test_http, c)
        t.run(test_concurrency, c)
        t.run(test_throughput, c)
        t.run(test_log, c, log_path)
        idle = Conn(port)                    # an idle keep-alive connection must not block exit
        proc.send_signal(signal.SIGTERM)
        try:
            t.eq("SIGTERM: clean exit", proc.wait(10), 0)
        except subprocess.TimeoutExpired:
            t.check("SIGTERM: clean exit", False, "still running")
        idle.close()
        t.run(test_cli, tmp)
    except Exception:
        t.failed += 1
        print(f"FAIL harness:\n{traceback.format_exc()}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
