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
