#!/usr/bin/python3
"""paygw gateway emulator.

A loopback-only HTTP/1.1 server that plays the payment-status endpoints of the four
gateways paygw talks to (OkePay, Obmenka, AliKassa, Morune).  It checks every request
signature and credential the way the gateways document them, answers from a fixtures
file (plus synthetic payments for benchmarks) and injects network and payload faults on
demand.  Standard library plus `cryptography` (RSA verification for AliKassa) only.

Usage and the URL layout are described in README.md beside this file.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import http
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import time
import traceback
import uuid
from decimal import ROUND_HALF_UP, Decimal
from email.utils import formatdate
from urllib.parse import unquote, unquote_to_bytes

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

PROVIDERS = ("okepay", "obmenka", "alikassa", "morune")
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"

MAX_HEAD = 64 * 1024          # request line + headers
MAX_BODY = 1024 * 1024        # request body
IDLE_TIMEOUT = 75.0           # keep-alive connection with no new request
BODY_TIMEOUT = 30.0           # reading a request body once the head has arrived
NOREPLY_LIMIT = 120.0         # `noreply` holds the connection at most this long
SLOWBODY_BYTES = 600          # `slowbody`: 600 bytes at one per 500 ms = 5 minutes
SLOWBODY_INTERVAL = 0.5
RESETMID_LENGTH = 1000
RESETMID_SENT = 10
TRUNCATED_MISSING = 100
SYNTHETIC_OKEPAY_MIN = 1000000
SYNTHETIC_PREFIX = "bench-"
SYNTHETIC_MORUNE_UUID = "00000000-0000-4000-8000-"

REASONS = {status.value: status.phrase for status in http.HTTPStatus}
TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HEX = re.compile(rb"[0-9A-Fa-f]{1,8}")


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------

def dump_json(obj):
    """Compact JSON as UTF-8 bytes, non-ASCII written raw (\\u escapes only if unencodable)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:        # a lone surrogate echoed back from a client's JSON
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def form_decode(raw):
    """Decode one query component with form semantics: '+' is a space, then %XX, then UTF-8."""
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")


def parse_query(raw):
    """Split a raw query string (bytes) into (raw_pair, key, value); key and value decoded."""
    pairs = []
    for pair in raw.split(b"&"):
        if pair:
            key, _, value = pair.partition(b"=")
            pairs.append((pair, form_decode(key), form_decode(value)))
    return pairs


def media_type(value):
    """The media type of a Content-Type value, lower-cased, without parameters."""
    return (value or "").split(";", 1)[0].strip().lower()


def okepay_signature(secret, message):
    """OkePay ApiSignature: base64(HMAC-SHA256(secret, message)), as bytes."""
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest())


def obmenka_secure(salt, body_sha1):
    """Obmenka DPAY_SECURE: base64(md5(salt || base64(sha1(body)) || salt)) from sha1(body)."""
    inner = base64.b64encode(body_sha1)
    return base64.b64encode(hashlib.md5(salt + inner + salt).digest()).decode("ascii")


def is_synthetic_text(value):
    return value is not None and value.startswith(SYNTHETIC_PREFIX)


# --------------------------------------------------------------------------------------
# PHP-compatible encoders (creates and webhooks)
# --------------------------------------------------------------------------------------

PHP_URL_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def php_urlencode(text):
    """PHP urlencode (RFC 1738 form): A-Za-z0-9 and -_. kept, space as '+', every other
    byte of the UTF-8 text as %XX with upper-case hex (so '~' is %7E)."""
    out = []
    for byte in str(text).encode("utf-8", "surrogatepass"):
        if byte in PHP_URL_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


def php_scalar(value):
    """A value as PHP's http_build_query writes it: booleans 1/0, numbers as text."""
    if value is True or value is False:
        return "1" if value else "0"
    return str(value)


def php_build_query(obj, prefix=None):
    """PHP http_build_query of a (nested) dict or list: pairs in order, nested keys as
    `a[b][c]` (then encoded, `a%5Bb%5D%5Bc%5D`), list items by index, nulls dropped."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    parts = []
    for key, value in items:
        name = str(key) if prefix is None else f"{prefix}[{key}]"
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            inner = php_build_query(value, name)
            if inner:
                parts.append(inner)
        else:
            parts.append(f"{php_urlencode(name)}={php_urlencode(php_scalar(value))}")
    return "&".join(parts)


def php_next_index(array):
    ints = [int(k) for k in array if re.fullmatch(r"-?(0|[1-9][0-9]*)", k)]
    return str(max(ints) + 1 if ints and max(ints) >= 0 else 0)


def php_parse_str(raw):
    """Parse a form body the way PHP fills $_POST: '+' and %XX decoded, `a[b][]=v` made
    into nested arrays (dicts with string keys, `[]` appends the next integer index), a
    repeated name overwrites in place, '.' and ' ' in the top-level name become '_'.
    Returns an ordered dict."""
    result = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        key, value = form_decode(raw_key).lstrip(" "), form_decode(raw_value)
        open_at = key.find("[")
        if open_at > 0 and "]" in key[open_at:]:
            base, rest = key[:open_at], key[open_at:]
        else:
            base, rest = key, ""
        base = base.replace(" ", "_").replace(".", "_").replace("[", "_")
        if not base:
            continue
        path = [base]
        while rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                break
            path.append(rest[1:close])
            rest = rest[close + 1:]
        target = result
        for index, name in enumerate(path):
            if index and name == "":
                name = php_next_index(target)
            if index == len(path) - 1:
                target[name] = value
            else:
                if not isinstance(target.get(name), dict):
                    target[name] = {}
                target = target[name]
    return result


JSON_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def json_string(text, php_escape):
    """A JSON string literal.  php_escape=True is PHP's default json_encode: '/' as '\\/',
    every non-ASCII character as \\uXXXX (lower-case hex, surrogate pairs above U+FFFF).
    False is json_encode with JSON_UNESCAPED_SLASHES|JSON_UNESCAPED_UNICODE: both raw.
    Either way '"', '\\' and \\b\\f\\n\\r\\t are escaped, other controls (< 0x20) as \\u00XX;
    DEL (0x7F) is not escaped."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in JSON_SHORT_ESCAPES:
            out.append(JSON_SHORT_ESCAPES[char])
        elif code < 0x20:
            out.append("\\u%04x" % code)
        elif char == "/" and php_escape:
            out.append("\\/")
        elif code < 0x80 or not php_escape:
            out.append(char)
        elif code >= 0x10000:
            code -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)))
        else:
            out.append("\\u%04x" % code)
    out.append('"')
    return "".join(out)


def json_compact(obj, php_escape=True):
    """Compact JSON text (no whitespace) with PHP's string escaping (see json_string);
    objects keep their key order, an empty dict is `{}`, an empty list `[]`."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return json_string(obj, php_escape)
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return json.dumps(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(json_string(str(k), php_escape) + ":" + json_compact(v, php_escape)
                              for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(json_compact(v, php_escape) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def morune_webhook_signature(key, body_obj, php_escape):
    """Morune (Enot) webhook signature: lower-case hex HMAC-SHA256 with the shop's
    additional key over the compact JSON of the body with its top-level keys sorted by
    byte order (nested objects keep their order)."""
    ordered = {k: body_obj[k] for k in sorted(body_obj, key=lambda k: k.encode("utf-8"))}
    message = json_compact(ordered, php_escape).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def alikassa_notification_message(fields):
    """The text AliKassa signs for a notification: PHP json_encode (default flags) of an
    object with exactly the 11 keys in this order; `id` a bare integer when it is one,
    the others the strings sent (null when not sent)."""
    obj = {}
    for key in ALIKASSA_NOTIFY_KEYS:
        value = fields.get(key)
        if key == "id" and isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            value = int(value)
        obj[key] = value
    return json_compact(obj, php_escape=True).encode("utf-8")


ALIKASSA_NOTIFY_KEYS = ("type", "id", "order_id", "payment_status", "amount", "payment_amount",
                        "commission_amount", "is_partial_payment", "account", "service", "desc")


def ymd_his(unix):
    """`Y-m-d H:i:s` in UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix))


def money(value):
    """A Decimal as text with exactly two decimals."""
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def parse_money(value, max_places=2):
    """A positive amount from a JSON number or a dot-decimal string with at most
    `max_places` decimals; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        amount = Decimal(repr(value))
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,15}(\.[0-9]+)?", value):
        amount = Decimal(value)
    else:
        return None
    if amount <= 0 or amount >= Decimal(10) ** 15 or -amount.as_tuple().exponent > max_places:
        return None
    return amount


def json_number(amount):
    """A Decimal as a JSON number: int when whole, else float."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*", re.I)


def is_url(value):
    return isinstance(value, str) and len(value) <= 2048 and HTTP_URL.fullmatch(value) is not None


def split_url(url):
    """(path, query) of an absolute URL; path "/" when it has none."""
    rest = url.split("//", 1)[1] if "//" in url else url
    rest = rest.split("#", 1)[0]
    slash = rest.find("/")
    question = rest.find("?")
    if slash < 0 or (0 <= question < slash):
        tail = "/" + rest[question:] if question >= 0 else "/"
    else:
        tail = rest[slash:]
    path, _, query = tail.partition("?")
    return path or "/", query


def add_query(url, query):
    url = url.split("#", 1)[0]
    if not query:
        return url
    return url + ("&" if "?" in url else "?") + query


class FixtureError(Exception):
    """The fixtures file cannot be used."""


# --------------------------------------------------------------------------------------
# Fault modes
# --------------------------------------------------------------------------------------

FAULT_LIMITS = {                 # modes that take a number, with the accepted range
    "delay": (0, 600000),
    "status": (200, 599),
    "oversize": (0, 1 << 32),
    "oversize_chunked": (0, 1 << 32),
    "deepnest": (1, 10000000),
}
FAULT_FLAGS = {
    "noreply", "malformed", "notjson", "emptybody", "badsig", "nosig", "reset", "resetmid",
    "truncated", "slowbody", "notfound200", "authfail", "invalid", "nul", "badutf8", "hugenumber",
    "wrongtypes",
}
BODY_MODES = ("status", "malformed", "notjson", "emptybody", "oversize", "oversize_chunked",
              "notfound200", "authfail", "invalid")
DELIVERY_MODES = ("noreply", "reset", "resetmid", "truncated", "slowbody")
SIGNATURE_MODES = ("badsig", "nosig")
REDIRECT_CODES = (301, 302, 303, 307, 308)       # `status=CODE` adds a Location header

MALFORMED_BODY = b'{"status":"success","data":[{"id":'
HTML_BODY = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
             b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n")
# Placeholders put into the reply object, replaced by raw bytes after serialisation.
MARK_NUL = "\ue000nul\ue000"
MARK_BADUTF8 = "\ue000badutf8\ue000"
MARK_HUGE = "\ue000huge\ue000"
MARK_NEST = "\ue000nest\ue000"
BAD_UTF8_BYTES = b"\xff\xfe\xc3\x28"
HUGE_NUMBER = b"9" * 400


def parse_faults(spec):
    """Parse a fault spec ("delay=100,status=503" or a list of items) into (name, arg) pairs."""
    if spec is None:
        return []
    if isinstance(spec, list) and all(isinstance(item, str) for item in spec):
        spec = ",".join(spec)
    if not isinstance(spec, str):
        raise ValueError("a fault spec is a string like \"delay=100,status=503\"")
    faults = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        value = value.strip()
        if name in FAULT_LIMITS:
            if not eq or not value.isdigit():
                raise ValueError(f"fault mode {name} needs a number: {name}=N")
            number = int(value)
            low, high = FAULT_LIMITS[name]
            if not low <= number <= high:
                raise ValueError(f"fault mode {name}={number} is out of range {low}..{high}")
            faults.append((name, number))
        elif name in FAULT_FLAGS:
            if eq:
                raise ValueError(f"fault mode {name} takes no value")
            faults.append((name, None))
        else:
            raise ValueError(f"unknown fault mode {name!r}")
    return faults


class Plan:
    """The fault modes of one request, grouped.  Within a group the first mode given wins;
    delays add up; transforms (nul, badutf8, deepnest, hugenumber, wrongtypes) combine."""

    __slots__ = ("delay_ms", "body", "body_arg", "delivery", "sig", "transforms", "names")

    def __init__(self, faults):
        self.delay_ms = 0
        self.body = self.body_arg = self.delivery = self.sig = None
        self.transforms = {}
        self.names = [name for name, _ in faults]
        for name, arg in faults:
            if name == "delay":
                self.delay_ms += arg
            elif name in BODY_MODES:
                if self.body is None:
                    self.body, self.body_arg = name, arg
            elif name in DELIVERY_MODES:
                if self.delivery is None:
                    self.delivery = name
            elif name in SIGNATURE_MODES:
                if self.sig is None:
                    self.sig = name
            else:
                self.transforms[name] = arg
        if self.delivery is None and self.body == "oversize_chunked":
            self.delivery = "chunked"


class Body:
    """A reply body: a list of segments, each bytes or a (byte, count) run made on the fly,
    so that `oversize` bodies of any size cost no memory."""

    __slots__ = ("segments", "length")

    def __init__(self, *segments):
        self.segments = [seg for seg in segments if (len(seg) if isinstance(seg, bytes) else seg[1])]
        self.length = sum(len(seg) if isinstance(seg, bytes) else seg[1] for seg in self.segments)

    def chunks(self, size=65536):
        for seg in self.segments:
            if isinstance(seg, bytes):
                for start in range(0, len(seg), size):
                    yield seg[start:start + size]
            else:
                byte, count = seg
                block = byte * min(size, count)
                while count > 0:
                    step = min(size, count)
                    yield block if step == len(block) else block[:step]
                    count -= step

    def head(self, limit):
        out = bytearray()
        for chunk in self.chunks():
            out += chunk[:limit - len(out)]
            if len(out) >= limit:
                break
        return bytes(out)

    def sha1(self):
        digest = hashlib.sha1()
        for chunk in self.chunks(1 << 20):
            digest.update(chunk)
        return digest.digest()


def pad_json(raw, total):
    """A JSON object of `total` bytes (or the reply itself if bigger): the reply with a
    leading "padding" member of x characters."""
    if not raw.startswith(b"{"):
        return Body(raw)
    head = b'{"padding":"'
    tail = b'"}' if raw == b"{}" else b'",' + raw[1:]
    return Body(head, (b"x", max(0, total - len(head) - len(tail))), tail)


# --------------------------------------------------------------------------------------
# HTTP/1.1 request parsing
# --------------------------------------------------------------------------------------

class HttpError(Exception):
    """A request that cannot be parsed; answered with `code` and the connection closed."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Request:
    """One parsed request.  `path` is the raw path (latin-1 text, not percent-decoded),
    `query` the raw query bytes, header names lower-case."""

    __slots__ = ("method", "path", "query", "version", "headers", "dups", "body", "keep_alive", "base")

    def header(self, name):
        return self.headers.get(name)

    def single_header(self, name):
        """A header's value, or None when it is missing or was sent more than once."""
        return None if name in self.dups else self.headers.get(name)


async def read_request(reader, writer):
    """Read one request from the stream; None when the client has gone or stayed idle."""
    head = b""
    while not head:
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise HttpError(431, "request head too large")
        except TimeoutError:
            return None
        head = head.lstrip(b"\r\n")
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "bad request line")
    method, target, version = parts
    if not TOKEN.fullmatch(method):
        raise HttpError(400, "bad method")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505 if version.startswith(b"HTTP/") else 400, "unsupported HTTP version")
    headers, dups = {}, set()
    for line in lines[1:]:
        if not line or line[0] in b" \t":
            raise HttpError(400, "obsolete header line folding")
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN.fullmatch(name):
            raise HttpError(400, "bad header line")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key == "content-length" and text != headers[key]:
                raise HttpError(400, "conflicting Content-Length")
            dups.add(key)
            continue
        headers[key] = text
    if target.startswith(b"/"):
        pass
    elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        rest = target.split(b"//", 1)[1]
        target = b"/" + rest.partition(b"/")[2]
    else:
        raise HttpError(400, "bad request target")
    path, _, query = target.partition(b"?")

    req = Request()
    req.method = method.decode("ascii")
    req.path = path.decode("latin-1")
    req.query = query.partition(b"#")[0]
    req.version = version.decode("ascii")
    req.headers = headers
    req.dups = dups
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    req.keep_alive = ("close" not in tokens) if version == b"HTTP/1.1" else ("keep-alive" in tokens)
    req.base = None
    req.body = await read_body(reader, writer, req)
    return req


async def read_body(reader, writer, req):
    """Read the body announced by Content-Length or chunked Transfer-Encoding."""
    te = req.headers.get("transfer-encoding")
    cl = req.headers.get("content-length")
    if te is None and cl is None:
        return b""
    if te is not None and cl is not None:
        raise HttpError(400, "both Transfer-Encoding and Content-Length")
    if te is not None and te.lower() != "chunked":
        raise HttpError(501, "unsupported Transfer-Encoding")
    if cl is not None:
        if not cl.isdigit():
            raise HttpError(400, "bad Content-Length")
        length = int(cl)
        if length > MAX_BODY:
            raise HttpError(413, "request body too large")
        if length == 0:
            return b""
    if req.headers.get("expect", "").lower() == "100-continue" and req.version == "HTTP/1.1":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            if cl is not None:
                return await reader.readexactly(length)
            return await read_chunked(reader)
    except TimeoutError:
        raise HttpError(408, "request body timeout")
    except asyncio.LimitOverrunError:
        raise HttpError(400, "bad chunk")


async def read_chunked(reader):
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip(b" \t")
        if not HEX.fullmatch(size_text):
            raise HttpError(400, "bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > MAX_BODY:
            raise HttpError(413, "request body too large")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "bad chunk end")
    while await reader.readuntil(b"\r\n") != b"\r\n":     # trailer fields, ignored
        pass
    return bytes(body)


# --------------------------------------------------------------------------------------
# Providers
# --------------------------------------------------------------------------------------

class Answer:
    """A provider's reply to one request before faults: HTTP code, reply object, the
    payment object inside it (for payload faults), the payment's own `_fault` modes, the
    requested id (for not-found texts) and, for Obmenka, the reply signer."""

    __slots__ = ("code", "obj", "outcome", "payment", "faults", "ref", "signer")

    def __init__(self, code, obj, outcome, payment=None, faults=(), ref=None, signer=None):
        self.code = code
        self.obj = obj
        self.outcome = outcome
        self.payment = payment
        self.faults = faults
        self.ref = ref
        self.signer = signer


def no_route():
    return Answer(404, {"error": "no such endpoint"}, "no_route")


def wrong_method(allowed):
    return Answer(405, {"error": f"method not allowed, use {allowed}"}, "bad_method")


class Provider:
    """What the four gateways share: accounts, the payment store with its two indexes
    (gateway id and merchant order id), `_sequence`/`_fault` directives and counting."""

    name = ""
    id_field = ""            # the gateway's own payment id
    order_field = ""         # the merchant's id
    status_field = "status"
    amount_field = "amount"
    paid_status = ""

    def __init__(self, emu):
        self.emu = emu
        self.accounts = {}
        self.payments = []
        self.by_id = {}
        self.by_order = {}

    # -- fixtures ---------------------------------------------------------------------

    def load(self, accounts, payments, base_dir):
        if not isinstance(accounts, list) or not isinstance(payments, list):
            raise FixtureError(f"{self.name}: accounts and payments must be lists")
        try:
            self.accounts = self.parse_accounts(accounts, base_dir)
        except (KeyError, TypeError, AttributeError) as exc:
            raise FixtureError(f"{self.name}: bad account entry ({exc!r})")
        for payment in payments:
            error = self.check_payment(payment)
            if error:
                raise FixtureError(f"{self.name}: {error}")
        self.payments = [dict(p) for p in payments]
        self.reindex()

    def parse_accounts(self, accounts, base_dir):
        raise NotImplementedError

    def load_gateway_keys(self, conf, base_dir):
        """Keys of the gateway itself (fixtures `gateway_keys.<provider>`)."""

    def check_payment(self, payment):
        """An error text when `payment` cannot be stored, else None."""
        if not isinstance(payment, dict):
            return "a payment must be an object"
        if payment.get(self.id_field) is None:
            return f"a payment needs the field {self.id_field!r}"
        sequence = payment.get("_sequence")
        if sequence is not None and (not isinstance(sequence, list) or not sequence
                                     or not all(isinstance(s, str) for s in sequence)):
            return "_sequence must be a non-empty list of status strings"
        try:
            parse_faults(payment.get("_fault"))
        except ValueError as exc:
            return f"bad _fault: {exc}"
        return None

    def key_of(self, value):
        """Index key of an id value: ids compare as strings."""
        return str(value)

    def id_key(self, value):
        return self.key_of(value)

    def order_key(self, value):
        return self.key_of(value)

    def scope_of(self, payment):
        """The merchant account a payment belongs to (instance, client, account or shop),
        or None for a fixture payment that every account may see."""
        scope = payment.get("_scope")
        return None if scope is None else str(scope)

    def reindex(self):
        self.by_id = {}
        self.by_order = {}            # order id -> payment, whatever its scope (last wins)
        self.by_scoped = {}           # (scope, order id) -> payment
        for payment in self.payments:
            self.index(payment)

    def index(self, payment):
        self.by_id[self.id_key(payment[self.id_field])] = payment
        order = payment.get(self.order_field)
        if order is not None:
            self.by_order[self.order_key(order)] = payment
            self.by_scoped[(self.scope_of(payment), self.order_key(order))] = payment

    def find(self, gid, oid, scope=None):
        """The payment with gateway id `gid` and/or order id `oid` (both must agree).
        With a `scope`, only payments of that account (or of none) are seen, and the
        order id is looked up within the account first."""
        by_gid = by_oid = None
        if gid is not None:
            by_gid = self.by_id.get(self.id_key(gid))
            if by_gid is None:
                return None
            if scope is not None and self.scope_of(by_gid) not in (None, scope):
                return None
        if oid is not None:
            if scope is None:
                by_oid = self.by_order.get(self.order_key(oid))
            else:
                by_oid = (self.by_scoped.get((scope, self.order_key(oid)))
                          or self.by_scoped.get((None, self.order_key(oid))))
            if by_oid is None:
                return None
        if by_gid is not None and by_oid is not None and by_gid is not by_oid:
            return None
        return by_gid or by_oid

    def upsert(self, payment, old=None):
        if old is not None:
            self.payments[self.payments.index(old)] = payment
            self.reindex()
        else:
            self.add(payment)

    def add(self, payment):
        """Store a new payment (a create): no full reindex, so creates stay O(1)."""
        self.payments.append(payment)
        self.index(payment)

    def replace(self, old, new):
        """Replace a stored payment by an updated copy with the same ids."""
        self.payments[self.payments.index(old)] = new
        self.index(new)

    # -- the payment lifecycle (creates, settle, webhooks) -------------------------------

    SETTLE = {}              # "paid"/"failed"/"expired" -> the gateway's own status word

    def now(self):
        return self.emu.now()

    def base_url(self, req):
        return getattr(req, "base", None) or "http://127.0.0.1"

    def pay_url(self, req, token):
        return f"{self.base_url(req)}/pay/{self.name}/{token}"

    def pay_token(self, payment):
        return str(payment[self.id_field])

    def pay_lookup(self, token):
        payment = self.by_id.get(self.id_key(token))
        if payment is None:
            payment = next((p for p in self.payments if p.get("_token") == token), None)
        return payment

    def settle(self, payment, outcome, native, now):
        """The payment after it is settled with `outcome`; `native` overrides the status
        word.  The default sets the status only."""
        new = dict(payment)
        new.pop("_sequence", None)
        new[self.status_field] = native or self.SETTLE[outcome]
        new["_outcome"] = outcome
        new["_settled_at"] = now
        return new

    def webhook(self, payment, options):
        """(code, request object or error text) of the webhook for a payment."""
        raise NotImplementedError

    def webhook_target(self, payment, options, create_field):
        url = options.get("url")
        if url is None:
            url = (payment.get("_create") or {}).get(create_field)
        return url if is_url(url) else None

    # -- replies ------------------------------------------------------------------------

    def count(self, gid):
        """Count one request for a payment; returns how many came before it."""
        key = f"{self.name}:{self.key_of(gid)}"
        seen = self.emu.by_payment.get(key, 0)
        self.emu.by_payment[key] = seen + 1
        return seen

    def view(self, payment):
        """The reply copy of a stored payment (directives removed, `_sequence` applied)
        and its `_fault` modes; counts the request."""
        seen = self.count(payment[self.id_field])
        view = {k: v for k, v in payment.items() if not k.startswith("_")}
        sequence = payment.get("_sequence")
        if sequence:
            view[self.status_field] = sequence[min(seen, len(sequence) - 1)]
        faults = parse_faults(payment["_fault"]) if "_fault" in payment else ()
        return view, faults

    def synthetic_status(self):
        return self.emu.config["synthetic_status"].get(self.name, self.paid_status)

    def wrap(self, view):
        """The whole reply around a payment object."""
        return view

    def found(self, payment, signer=None, ref=None):
        view, faults = self.view(payment)
        return Answer(200, self.wrap(view), "found", payment=view, faults=faults,
                      ref=ref, signer=signer)

    def synthetic(self, view, signer=None, ref=None):
        self.count(view[self.id_field])
        return Answer(200, self.wrap(view), "synthetic", payment=view, ref=ref, signer=signer)

    def rejected(self, code, obj, signer=None):
        self.emu.signature_failures += 1
        return Answer(code, obj, "auth_failed", signer=signer)

    def not_found_obj(self, ref):
        raise NotImplementedError

    def auth_fail(self):
        """(HTTP code, body) of this gateway's credential-rejected reply."""
        raise NotImplementedError

    def invalid_reply(self):
        """(HTTP code, body) of this gateway's reply to a request it finds invalid for a
        reason other than an unknown id."""
        raise NotImplementedError

    def handle(self, req, path):
        raise NotImplementedError


class OkePay(Provider):
    """OkePay (Payrexx API): GET /v1.0/Gateway/{id}/ and /v1.0/SignatureCheck/ with
    `instance` and `ApiSignature` = base64(HMAC-SHA256(secret, other query pairs, raw))."""

    name = "okepay"
    id_field = "id"
    order_field = "referenceId"
    paid_status = "confirmed"
    GATEWAY = re.compile(r"/v1\.0/Gateway/([^/]*)/?")
    SIGNATURE_CHECK = re.compile(r"/v1\.0/SignatureCheck/?")
    INTEGER = re.compile(r"-?[0-9]{1,19}")
    BAD_SIGNATURE = {"status": "error", "message": "The API Signature is not valid"}
    CREATE = re.compile(r"/v1\.0/Gateway/?")
    FIRST_GATEWAY_ID = 900000
    FIRST_TRANSACTION_ID = 700000
    SETTLE = {"paid": "confirmed", "failed": "declined", "expired": "expired"}
    TRANSACTION_STATUS = {"paid": "confirmed", "failed": "declined"}
    FLAGS = ("preAuthorization", "reservation", "skipResultPage")

    def parse_accounts(self, accounts, base_dir):
        self.webhook_urls = {a["instance"]: a.get("webhook_url") for a in accounts}
        return {a["instance"]: a["secret"].encode("utf-8") for a in accounts}

    @staticmethod
    def param_error(name, missing=False):
        return Answer(400, {"status": "error", "message": f"Parameter {name} is {'required' if missing else 'invalid'}"},
                      "invalid")

    def create(self, req):
        """POST /v1.0/Gateway/?instance=NAME, form body.  PHP fills $_POST from the body,
        then the signature is checked over http_build_query of every parameter but
        ApiSignature (and instance), in the order received."""
        form = media_type(req.header("content-type")) == "application/x-www-form-urlencoded"
        params = php_parse_str(req.body) if form else {}
        reference = params.get("referenceId")
        self.emu.count_create(self.name)
        if isinstance(reference, str) and reference:
            self.emu.count_create(self.name, reference)
        instance = next((value for _, key, value in parse_query(req.query) if key == "instance"), None)
        if instance is None and isinstance(params.get("instance"), str):
            instance = params["instance"]
        secret = self.accounts.get(instance)
        if secret is None:
            return self.rejected(401, {"status": "error", "message": "Instance not found"})
        signature = params.get("ApiSignature")
        message = php_build_query({k: v for k, v in params.items() if k not in ("ApiSignature", "instance")})
        expected = okepay_signature(secret, message.encode("ascii"))
        if not isinstance(signature, str) or not hmac.compare_digest(signature.encode("utf-8"), expected):
            return self.rejected(401, dict(self.BAD_SIGNATURE))
        amount, currency = params.get("amount"), params.get("currency")
        if amount is None or amount == "":
            return self.param_error("amount", missing=True)
        if not isinstance(amount, str) or not re.fullmatch(r"[0-9]{1,12}", amount) or int(amount) < 1:
            return self.param_error("amount")
        if currency is None or currency == "":
            return self.param_error("currency", missing=True)
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            return self.param_error("currency")
        for name in self.FLAGS:
            if name in params and params[name] not in ("0", "1", "true", "false", ""):
                return self.param_error(name)
        if "validity" in params and not (isinstance(params["validity"], str)
                                         and re.fullmatch(r"[0-9]{1,9}", params["validity"])):
            return self.param_error("validity")
        if "vatRate" in params and params["vatRate"] != "" and not (
                isinstance(params["vatRate"], str) and re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,2})?", params["vatRate"])):
            return self.param_error("vatRate")
        for name in ("psp", "pm"):
            value = params.get(name)
            if value is not None and value != "" and not isinstance(value, dict):
                return self.param_error(name)
        if isinstance(params.get("psp"), dict) and not all(
                isinstance(v, str) and v.isdigit() for v in params["psp"].values()):
            return self.param_error("psp")
        for name in ("referenceId", "sku", "successRedirectUrl", "failedRedirectUrl", "cancelRedirectUrl",
                     "language", "buttonText"):
            if name in params and not isinstance(params[name], str):
                return self.param_error(name)
        gid = self.FIRST_GATEWAY_ID + self.emu.next_serial("okepay") - 1
        vat = params.get("vatRate")
        gateway = {
            "id": gid, "status": "waiting", "hash": hashlib.md5(f"okepay-gateway-{gid}".encode()).hexdigest(),
            "referenceId": reference if isinstance(reference, str) else "",
            "link": self.pay_url(req, gid), "invoices": [], "amount": int(amount), "currency": currency,
            "vatRate": float(vat) if vat else None, "sku": params.get("sku") or None, "createdAt": self.now(),
            "preAuthorization": params.get("preAuthorization") in ("1", "true"),
            "reservation": params.get("reservation") in ("1", "true"),
            "fields": params.get("fields") if isinstance(params.get("fields"), dict) else {},
            "psp": [int(v) for v in params["psp"].values()] if isinstance(params.get("psp"), dict) else [],
            "pm": list(params["pm"].values()) if isinstance(params.get("pm"), dict) else [],
            "_scope": instance,
            "_create": {k: v for k, v in params.items() if k != "ApiSignature"},
        }
        self.add(gateway)
        self.emu.created[self.name] += 1
        view = {k: v for k, v in gateway.items() if not k.startswith("_")}
        return Answer(200, self.wrap(view), "created")

    def settle(self, payment, outcome, native, now):
        """confirmed/declined add a transaction (id, uuid, status, time, amount) to an
        invoice in `invoices`; expired adds none."""
        new = super().settle(payment, outcome, native, now)
        if outcome in self.TRANSACTION_STATUS:
            serial = self.emu.next_serial("okepay-transaction")
            transaction = {
                "id": self.FIRST_TRANSACTION_ID + serial - 1,
                "uuid": hashlib.md5(f"okepay-transaction-{serial}".encode()).hexdigest()[:8],
                "status": native or self.TRANSACTION_STATUS[outcome],
                "time": ymd_his(now), "amount": payment.get("amount"), "psp": "Emulator",
            }
            invoices = [dict(i) for i in payment.get("invoices") or []]
            if not invoices:
                invoices.append({"paymentRequestId": payment["id"], "referenceId": payment.get("referenceId"),
                                 "amount": payment.get("amount"), "currency": payment.get("currency"),
                                 "transactions": []})
            invoices[0]["transactions"] = list(invoices[0].get("transactions") or []) + [transaction]
            new["invoices"] = invoices
            new["_transactions"] = list(payment.get("_transactions") or []) + [transaction]
        return new

    def webhook(self, payment, options):
        """Payrexx: POST, JSON (default) or form body with a top-level `transaction`, of
        the gateway's latest transaction; no signature.  The URL is set per instance."""
        transactions = payment.get("_transactions") or []
        if not transactions:
            return 409, "no transaction yet (settle the gateway as paid or failed first)"
        fmt = options.get("format", "json")
        if fmt not in ("json", "form"):
            return 400, "format must be json or form"
        url = options.get("url") or self.webhook_urls.get(payment.get("_scope") or next(iter(self.webhook_urls), None))
        if not is_url(url):
            return 409, "the instance has no webhook_url; give url"
        last = transactions[-1]
        transaction = {
            "id": last["id"], "uuid": last["uuid"], "status": last["status"], "amount": last["amount"],
            "referenceId": payment.get("referenceId"), "time": last["time"],
            "invoice": {"paymentLinkId": payment["id"], "referenceId": payment.get("referenceId")},
        }
        if fmt == "json":
            body, ctype = json.dumps({"transaction": transaction}, ensure_ascii=False, separators=(",", ":")), JSON_TYPE
        else:
            body, ctype = php_build_query({"transaction": transaction}), "application/x-www-form-urlencoded"
        path, query = split_url(url)
        return 200, {"method": "POST", "url": url, "path": path, "query": query,
                     "headers": {"Content-Type": ctype}, "body": body}

    def not_found_obj(self, ref):
        return {"status": "error", "message": f"No Gateway found with id {ref if ref is not None else 0}"}

    def auth_fail(self):
        return 401, dict(self.BAD_SIGNATURE)

    def invalid_reply(self):
        return 400, {"status": "error", "message": "Invalid gateway id"}

    def wrap(self, view):
        return {"status": "success", "data": [view]}

    def handle(self, req, path):
        if req.method == "POST" and self.CREATE.fullmatch(path):
            return self.create(req)
        match = self.GATEWAY.fullmatch(path)
        signature_check = match is None and self.SIGNATURE_CHECK.fullmatch(path) is not None
        if match is None and not signature_check:
            return no_route()
        if req.method != "GET":
            return wrong_method("GET")
        instance = signature = None
        message = []
        for raw, key, value in parse_query(req.query):
            if key == "instance":
                instance = value
            elif key == "ApiSignature":
                signature = value
            else:
                message.append(raw)
        secret = self.accounts.get(instance)
        if secret is None:
            return self.rejected(401, {"status": "error", "message": "Instance not found"})
        expected = okepay_signature(secret, b"&".join(message))
        if signature is None or not hmac.compare_digest(signature.encode("utf-8"), expected):
            return self.rejected(401, dict(self.BAD_SIGNATURE))
        if signature_check:
            return Answer(200, {"status": "success", "data": [{"id": 1}]}, "signature_ok")
        raw_id = match.group(1)
        if not self.INTEGER.fullmatch(raw_id) or not -2**63 <= int(raw_id) < 2**63:
            return Answer(*self.invalid_reply(), "invalid")
        gid = int(raw_id)
        payment = self.by_id.get(str(gid))
        if payment is not None and self.scope_of(payment) not in (None, instance):
            payment = None           # a gateway created under another instance
        if payment is not None:
            return self.found(payment, ref=gid)
        if gid >= SYNTHETIC_OKEPAY_MIN:
            return self.synthetic(self.make_synthetic(gid), ref=gid)
        return Answer(404, self.not_found_obj(gid), "not_found", ref=gid)

    def make_synthetic(self, gid):
        return {
            "id": gid, "status": self.synthetic_status(), "hash": f"bench{gid}",
            "referenceId": f"bench-{gid}", "link": f"https://bench.okepay.info/?payment=bench{gid}",
            "invoices": [], "amount": 100000, "currency": "EUR", "vatRate": None, "sku": None,
            "createdAt": 1700000000, "preAuthorization": False, "reservation": False,
            "fields": {}, "psp": [], "pm": [],
        }


class Obmenka(Provider):
    """Obmenka (dpay engine): POST /api/einvoice/status, JSON body, headers DPAY_CLIENT and
    DPAY_SECURE = base64(md5(salt || base64(sha1(body)) || salt)); replies signed alike."""

    name = "obmenka"
    id_field = "tracking"
    order_field = "payment_id"
    paid_status = "PAYED"
    PATH = "/api/einvoice/status"
    NOT_FOUND = {"error": {"code": 401, "message": "Payment not found"}}
    INVALID_SIGNATURE = {"error": {"code": 403, "message": "Invalid signature"}}
    UNKNOWN_CLIENT = {"error": {"code": 403, "message": "Unknown client"}}
    INVALID_REQUEST = {"error": {"code": 400, "message": "Invalid request"}}
    DUPLICATE = {"error": {"code": 409, "message": "Payment with this payment_id already exists"}}
    FINAL = {"error": {"code": 409, "message": "Payment is already processed"}}
    ROUTES = {"/api/einvoice/status": "status", "/api/einvoice/create": "create",
              "/api/einvoice/process": "process"}
    METHODS = ("visamaster.uah", "visamaster.usd", "visamaster.eur", "privat24.uah", "monobank.uah",
               "applepay.uah", "googlepay.uah")
    SETTLE = {"paid": "PAYED", "failed": "FAILED", "expired": "CANCELED"}
    FEE_PERCENT = Decimal("1.5")

    @staticmethod
    def field_error(name, missing, signer):
        text = f"Field {name} is required" if missing else f"Field {name} is invalid"
        return Answer(400, {"error": {"code": 400, "message": text}}, "invalid", signer=signer)

    def create(self, req, data, client, signer):
        """POST /api/einvoice/create: payment_id, currency (a method code) and amount are
        required; payment_id is unique per client (cash register)."""
        payment_id = data.get("payment_id")
        if payment_id is None or payment_id == "":
            return self.field_error("payment_id", True, signer)
        if not isinstance(payment_id, str) or len(payment_id) > 255:
            return self.field_error("payment_id", False, signer)
        method = data.get("currency")
        if method is None or method == "":
            return self.field_error("currency", True, signer)
        if method not in self.METHODS:
            return self.field_error("currency", False, signer)
        if data.get("amount") is None or data.get("amount") == "":
            return self.field_error("amount", True, signer)
        amount = parse_money(data.get("amount"))
        if amount is None:
            return self.field_error("amount", False, signer)
        for name in ("description", "sender", "account"):
            if data.get(name) is not None and not isinstance(data[name], str):
                return self.field_error(name, False, signer)
        for name in ("success_url", "fail_url", "status_url"):
            if data.get(name) is not None and not is_url(data[name]):
                return self.field_error(name, False, signer)
        if data.get("extra_fields") is not None and not isinstance(data["extra_fields"], dict):
            return self.field_error("extra_fields", False, signer)
        if self.by_scoped.get((client, payment_id)) or self.by_scoped.get((None, payment_id)):
            return Answer(200, self.DUPLICATE, "duplicate", signer=signer)
        serial = self.emu.next_serial("obmenka")
        tracking = f"E{(serial >> 32) & 0xFFF:03X}-{(serial >> 16) & 0xFFFF:04X}-{serial & 0xFFFF:04X}"
        payment = {
            "tracking": tracking, "payment_id": payment_id, "currency": method,
            "created": ymd_his(self.now()), "processed": None, "status": "CREATED",
            "amount": money(amount), "fee": "0.00", "accrual_amount": money(amount),
            "accrual_currency": method.rsplit(".", 1)[1].upper(), "is_recalc": False, "error": None,
            "_scope": client, "_create": data,
        }
        self.add(payment)
        self.emu.created[self.name] += 1
        return Answer(200, {"tracking": tracking, "payment_id": payment_id}, "created", signer=signer)

    def process(self, req, payment, signer):
        """POST /api/einvoice/process: the pay links; CREATED becomes PAYIN."""
        if payment.get("status") not in ("CREATED", "PAYIN"):
            return Answer(200, self.FINAL, "final", signer=signer)
        if payment.get("status") != "PAYIN":
            new = dict(payment, status="PAYIN")
            new.pop("_sequence", None)
            self.replace(payment, new)
            payment = new
        link = self.pay_url(req, payment["tracking"])
        return Answer(200, {"payment_id": payment["payment_id"], "tracking": payment["tracking"],
                            "status": "PAYIN", "pay_link": link, "pay_form": link + "?form=1"},
                      "processed", signer=signer)

    def settle(self, payment, outcome, native, now):
        new = super().settle(payment, outcome, native, now)
        new["processed"] = ymd_his(now)
        amount = Decimal(str(payment.get("amount") or "0"))
        if outcome == "paid":
            fee = (amount * self.FEE_PERCENT / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            new.update(fee=money(fee), accrual_amount=money(amount - fee), error=None)
        else:
            new.update(fee="0.00", accrual_amount="0.00",
                       error="Payment declined" if outcome == "failed" else "Payment expired")
        return new

    def webhook(self, payment, options):
        """The callback: an empty GET to the invoice's status_url, no signature."""
        url = self.webhook_target(payment, options, "status_url")
        if url is None:
            return 409, "the invoice has no status_url; give url"
        path, query = split_url(url)
        return 200, {"method": "GET", "url": url, "path": path, "query": query, "headers": {}, "body": ""}

    def parse_accounts(self, accounts, base_dir):
        return {str(a["client"]): a["salt"].encode("utf-8") for a in accounts}

    def not_found_obj(self, ref):
        return json.loads(json.dumps(self.NOT_FOUND))

    def auth_fail(self):
        return 403, json.loads(json.dumps(self.INVALID_SIGNATURE))

    def invalid_reply(self):
        return 400, json.loads(json.dumps(self.INVALID_REQUEST))

    @staticmethod
    def signer_for(salt):
        def sign(body_sha1, wrong=False):
            return obmenka_secure(b"wrong-" + salt if wrong else salt, body_sha1)
        return sign

    def handle(self, req, path):
        kind = self.ROUTES.get(path)
        if kind is None:
            return no_route()
        if req.method != "POST":
            return wrong_method("POST")
        if kind == "create":
            self.emu.count_create(self.name)
            try:
                peek = json.loads(req.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                peek = None
            if isinstance(peek, dict) and isinstance(peek.get("payment_id"), str) and peek["payment_id"]:
                self.emu.count_create(self.name, peek["payment_id"])
        client = req.single_header("dpay_client")
        salt = self.accounts.get(client)
        if salt is None:
            return self.rejected(403, self.UNKNOWN_CLIENT)        # unsigned: no salt to use
        signer = self.signer_for(salt)
        given = req.single_header("dpay_secure")
        expected = obmenka_secure(salt, hashlib.sha1(req.body).digest())
        if given is None or not hmac.compare_digest(given.encode("latin-1"), expected.encode("ascii")):
            return self.rejected(403, self.INVALID_SIGNATURE, signer)
        invalid = Answer(400, self.INVALID_REQUEST, "invalid", signer=signer)
        if media_type(req.header("content-type")) != JSON_TYPE:
            return invalid
        try:
            data = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return invalid
        if not isinstance(data, dict):
            return invalid
        if kind == "create":
            return self.create(req, data, client, signer)
        tracking, payment_id = data.get("tracking"), data.get("payment_id")
        if any(v is not None and not isinstance(v, str) for v in (tracking, payment_id)):
            return invalid
        tracking, payment_id = tracking or None, payment_id or None
        if tracking is None and payment_id is None:
            return invalid
        payment = self.find(tracking, payment_id, client)
        if kind == "process":
            if payment is None:
                return Answer(200, self.NOT_FOUND, "not_found", signer=signer)
            return self.process(req, payment, signer)
        if payment is not None:
            return self.found(payment, signer)
        if all(v is None or is_synthetic_text(v) for v in (tracking, payment_id)):
            return self.synthetic(self.make_synthetic(tracking or payment_id, payment_id or tracking), signer)
        return Answer(200, self.NOT_FOUND, "not_found", signer=signer)

    def make_synthetic(self, tracking, payment_id):
        return {
            "tracking": tracking, "payment_id": payment_id, "currency": "visamaster.uah",
            "created": "2026-01-01 00:00:00", "processed": "2026-01-01 00:01:00",
            "status": self.synthetic_status(), "amount": "1000.00", "fee": "0.00",
            "accrual_amount": "1000.00", "accrual_currency": "UAH", "is_recalc": False,
            "error": None,
        }


class AliKassa(Provider):
    """AliKassa: POST /v1/payment/status, JSON body, headers Account and Sign = base64 RSA
    PKCS#1 v1.5 signature of the raw body (SHA-1 or SHA-256 per account)."""

    name = "alikassa"
    id_field = "id"
    order_field = "order_id"
    status_field = "payment_status"
    paid_status = "paid"
    PATH = "/v1/payment/status"
    CREATE_PATH = "/v1/payment"
    INVALID_SIGNATURE = {"message": "Invalid signature"}
    DIGESTS = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}
    SERVICES = ("payment_card_rub", "payment_card_uah", "payment_card_kzt", "payment_card_uzs",
                "payment_card_azn", "payment_card_usd", "payment_card_eur", "payment_sbp_rub")
    FIRST_ID = 200000000
    SETTLE = {"paid": "paid", "failed": "fail", "expired": "cancel"}
    COMMISSION_PERCENT = Decimal("3")
    OPTIONAL_STRINGS = ("desc", "customer_phone", "customer_first_name", "customer_last_name",
                        "customer_middle_name", "customer_country", "customer_city", "customer_address",
                        "customer_zip", "customer_user_id", "customer_birthday")
    URL_FIELDS = ("success_redirect_url", "fail_redirect_url", "notification_endpoint_url")
    ID_FIELDS = ("success_redirect_id", "fail_redirect_id", "notification_endpoint_id")
    notify_key = None

    def load_gateway_keys(self, conf, base_dir):
        path = conf.get("notification_private_key")
        self.notify_key = None
        if path:
            full = os.path.join(base_dir, path)
            try:
                with open(full, "rb") as f:
                    self.notify_key = serialization.load_pem_private_key(f.read(), password=None)
            except (OSError, ValueError, TypeError) as exc:
                raise FixtureError(f"alikassa: cannot load notification key {full}: {exc}")

    def create(self, req, data, account):
        """POST /v1/payment.  Laravel validation: every failing field is reported, one
        message each, HTTP 400."""
        errors = {}

        def error(field, text):
            errors.setdefault(field, [text])

        def label(field):
            return field.replace("_", " ")

        def present(field):
            return data.get(field) is not None and data.get(field) != ""

        if not present("amount"):
            error("amount", "The amount field is required.")
        else:
            raw = data["amount"]
            text = None if isinstance(raw, bool) else repr(raw) if isinstance(raw, float) else (
                str(raw) if isinstance(raw, (int, str)) else None)
            if text is None or not re.fullmatch(r"-?[0-9]{1,15}(\.[0-9]+)?", text):
                error("amount", "The amount must be a number.")
            elif Decimal(text) < Decimal("0.01"):
                error("amount", "The amount must be at least 0.01.")
            elif parse_money(raw) is None:
                error("amount", "The amount must have 0-2 decimal places.")
        order_id = data.get("order_id")
        if not present("order_id"):
            error("order_id", "The order id field is required.")
        elif not isinstance(order_id, str):
            error("order_id", "The order id must be a string.")
        elif len(order_id) > 128:
            error("order_id", "The order id must not be greater than 128 characters.")
        elif self.by_scoped.get((account, order_id)) or self.by_scoped.get((None, order_id)):
            error("order_id", "The order id has already been taken.")
        if not present("service"):
            error("service", "The service field is required.")
        elif data["service"] not in self.SERVICES:
            error("service", "The selected service is invalid.")
        if not present("customer_ip"):
            error("customer_ip", "The customer ip field is required.")
        else:
            try:
                ipaddress.ip_address(data["customer_ip"] if isinstance(data["customer_ip"], str) else None)
            except ValueError:
                error("customer_ip", "The customer ip must be a valid IP address.")
        if not present("customer_browser_user_agent"):
            error("customer_browser_user_agent", "The customer browser user agent field is required.")
        elif not isinstance(data["customer_browser_user_agent"], str):
            error("customer_browser_user_agent", "The customer browser user agent must be a string.")
        for field in self.OPTIONAL_STRINGS:
            if data.get(field) is not None and not isinstance(data[field], str):
                error(field, f"The {label(field)} must be a string.")
        if present("desc") and isinstance(data["desc"], str) and len(data["desc"]) > 255:
            error("desc", "The desc must not be greater than 255 characters.")
        lifetime = data.get("lifetime")
        if lifetime is not None:
            if isinstance(lifetime, str) and re.fullmatch(r"-?[0-9]{1,9}", lifetime):
                lifetime = int(lifetime)
            if not isinstance(lifetime, int) or isinstance(lifetime, bool):
                error("lifetime", "The lifetime must be an integer.")
            elif not 900 <= lifetime <= 3600:
                error("lifetime", "The lifetime must be between 900 and 3600.")
        email = data.get("customer_email")
        if email is not None and not (isinstance(email, str) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email)):
            error("customer_email", "The customer email must be a valid email address.")
        for field in self.URL_FIELDS:
            if data.get(field) is not None and not is_url(data[field]):
                error(field, f"The {label(field)} must be a valid URL.")
        for field in self.ID_FIELDS:
            value = data.get(field)
            if value is not None and not ((isinstance(value, int) and not isinstance(value, bool))
                                          or (isinstance(value, str) and value.isdigit())):
                error(field, f"The {label(field)} must be an integer.")
        if errors:
            return Answer(400, {"message": "The given data was invalid.", "errors": errors}, "invalid")
        serial = self.emu.next_serial("alikassa")
        gid = self.FIRST_ID + serial - 1
        token = str(uuid.uuid5(uuid.NAMESPACE_URL, f"paygw-emulator/alikassa/{gid}"))
        url = self.pay_url(req, token)
        payment = {
            "url": url, "payment_status": "wait", "id": gid, "order_id": order_id, "card_mask": None,
            "amount": money(parse_money(data["amount"])), "payment_amount": None, "hold_amount": "0",
            "hold_at": None, "account_payment_amount": None, "commission_amount": None,
            "service_code": data["service"], "account_old_balance": None, "account_new_balance": None,
            "_scope": account, "_create": data, "_token": token,
        }
        self.add(payment)
        self.emu.created[self.name] += 1
        return Answer(200, {"url": url, "payment_status": "wait", "id": gid, "uuid": token,
                            "success_redirect_url": data.get("success_redirect_url")}, "created")

    def settle(self, payment, outcome, native, now):
        new = super().settle(payment, outcome, native, now)
        if outcome == "paid":
            amount = Decimal(str(payment.get("amount") or "0"))
            commission = (amount * self.COMMISSION_PERCENT / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            new.update(payment_amount=money(amount), commission_amount=money(commission),
                       account_payment_amount=money(amount - commission), card_mask="516874******8284")
        else:
            new.update(payment_amount=None, commission_amount=None, account_payment_amount=None)
        return new

    def notification_fields(self, payment, kind="payment"):
        """The notification's fields as sent (strings; None = not sent), in order."""
        create = payment.get("_create") or {}
        partial = "0"
        if payment.get("payment_amount") is not None and payment.get("amount") is not None:
            partial = "1" if Decimal(str(payment["payment_amount"])) < Decimal(str(payment["amount"])) else "0"
        values = {
            "type": kind, "id": payment.get("id"), "order_id": payment.get("order_id"),
            "payment_status": payment.get("payment_status"), "amount": payment.get("amount"),
            "payment_amount": payment.get("payment_amount"), "commission_amount": payment.get("commission_amount"),
            "is_partial_payment": partial, "account": payment.get("_scope") or next(iter(self.accounts), None),
            "service": payment.get("service_code"), "desc": create.get("desc") or None,
        }
        return {k: (None if v is None else str(v)) for k, v in values.items()}

    def webhook(self, payment, options):
        """A notification: GET to notification_endpoint_url with the 11 fields and `sign`
        (base64 RSA PKCS#1 v1.5, AliKassa's notification key, over the PHP json_encode of
        the fields; SHA-1 unless digest=sha256)."""
        if self.notify_key is None:
            return 409, "no gateway_keys.alikassa.notification_private_key in the fixtures"
        if payment.get("payment_status") not in ("paid", "cancel", "fail"):
            return 409, "no notification for a payment in progress (settle it first)"
        url = self.webhook_target(payment, options, "notification_endpoint_url")
        if url is None:
            return 409, "the payment has no notification_endpoint_url; give url"
        digest = options.get("digest", "sha1")
        if digest not in self.DIGESTS:
            return 400, "digest must be sha1 or sha256"
        kind = options.get("type", "payment")
        if kind not in ("payment", "payout"):
            return 400, "type must be payment or payout"
        fields = self.notification_fields(payment, kind)
        message = alikassa_notification_message(fields)
        signed = message + b" forged" if options.get("forge") else message
        sign = base64.b64encode(self.notify_key.sign(signed, padding.PKCS1v15(), self.DIGESTS[digest]())).decode("ascii")
        pairs = [(k, v) for k, v in fields.items() if v is not None] + [("sign", sign)]
        query = "&".join(f"{php_urlencode(k)}={php_urlencode(v)}" for k, v in pairs)
        full = add_query(url, query)
        path, full_query = split_url(full)
        return 200, {"method": "GET", "url": full, "path": path, "query": full_query, "headers": {}, "body": ""}

    def parse_accounts(self, accounts, base_dir):
        parsed = {}
        for a in accounts:
            digest = str(a.get("digest", "sha1")).lower()
            if digest not in self.DIGESTS:
                raise FixtureError(f"alikassa: unknown digest {digest!r}")
            key_path = os.path.join(base_dir, a["public_key"])
            try:
                with open(key_path, "rb") as f:
                    key = serialization.load_pem_public_key(f.read())
            except (OSError, ValueError) as exc:
                raise FixtureError(f"alikassa: cannot load public key {key_path}: {exc}")
            parsed[a["account"]] = (key, self.DIGESTS[digest]())
        return parsed

    def not_found_obj(self, ref):
        """AliKassa checks ids with Laravel's `exists` rule: an unknown id is a validation
        error on the field that was sent (`ref`, "id" or "order_id")."""
        field = ref or "id"
        return {"message": "The given data was invalid.",
                "errors": {field: [f"The selected {field.replace('_', ' ')} is invalid."]}}

    def auth_fail(self):
        return 401, dict(self.INVALID_SIGNATURE)

    def invalid_reply(self):
        # validation errors, none of them "unknown id": one about the id's form, and
        # the "exists" rule's text about another field
        return 400, {"message": "The given data was invalid.",
                     "errors": {"id": ["The id must be a string."],
                                "service": ["The selected service is invalid."]}}

    @staticmethod
    def invalid(field, text):
        return Answer(400, {"message": "The given data was invalid.", "errors": {field: [text]}}, "invalid")

    def handle(self, req, path):
        if path not in (self.PATH, self.CREATE_PATH):
            return no_route()
        if req.method != "POST":
            return wrong_method("POST")
        create = path == self.CREATE_PATH
        if create:
            self.emu.count_create(self.name)
            try:
                peek = json.loads(req.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                peek = None
            if isinstance(peek, dict) and isinstance(peek.get("order_id"), (str, int)) and peek["order_id"] != "":
                self.emu.count_create(self.name, str(peek["order_id"]))
        scope = req.single_header("account")
        account = self.accounts.get(scope)
        sign = req.single_header("sign")
        if account is None or sign is None:
            return self.rejected(401, self.INVALID_SIGNATURE)
        key, digest = account
        try:
            key.verify(base64.b64decode(sign, validate=True), req.body, padding.PKCS1v15(), digest)
        except (ValueError, InvalidSignature):
            return self.rejected(401, self.INVALID_SIGNATURE)
        if media_type(req.header("content-type")) != JSON_TYPE:
            return self.invalid("body", "The request must be sent as application/json.")
        try:
            data = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            return self.invalid("body", "The body must be a JSON object.")
        if create:
            return self.create(req, data, scope)
        ids = {}
        for field in ("id", "order_id"):
            value = data.get(field)
            if value is None or value == "":
                ids[field] = None
            elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                ids[field] = value
            else:
                return self.invalid(field, f"The {field.replace('_', ' ')} must be a string.")
        gid, oid = ids["id"], ids["order_id"]
        if gid is None and oid is None:
            return self.invalid("id", "The id field is required when order id is not present.")
        ref = "id" if gid is not None else "order_id"
        payment = self.find(gid, oid, scope)
        if payment is not None:
            return self.found(payment, ref=ref)
        if all(v is None or is_synthetic_text(str(v)) for v in (gid, oid)):
            return self.synthetic(self.make_synthetic(gid if gid is not None else oid,
                                                      oid if oid is not None else gid), ref=ref)
        for field, value in (("id", gid), ("order_id", oid)):
            known = self.find(value, None, scope) if field == "id" else self.find(None, value, scope)
            if value is not None and known is None and not is_synthetic_text(str(value)):
                return Answer(400, self.not_found_obj(field), "not_found")
        # both ids exist but name different payments
        return Answer(404, {"message": "Payment not found"}, "not_found")

    def make_synthetic(self, gid, oid):
        return {
            "url": f"https://pay-merchant.alikassa.com/{gid}", "payment_status": self.synthetic_status(),
            "id": gid, "order_id": oid, "card_mask": None, "amount": "1000",
            "payment_amount": "1000", "hold_amount": "0", "hold_at": None,
            "account_payment_amount": "1000", "commission_amount": "0",
            "service_code": "payment_card_rub", "account_old_balance": "0",
            "account_new_balance": "1000",
        }


class Morune(Provider):
    """Morune (Enot.io API): GET /invoice/info?shop_id=&invoice_id= or &order_id=, header
    x-api-key with the shop's secret key; no signature."""

    name = "morune"
    id_field = "invoice_id"
    order_field = "order_id"
    amount_field = "invoice_amount"
    paid_status = "success"
    PATH = "/invoice/info"
    UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

    @staticmethod
    def error(code, text):
        return {"data": None, "error": text, "status": code, "status_check": False}

    CREATE_PATH = "/invoice/create"
    CURRENCIES = ("RUB", "USD", "EUR", "UAH")
    SETTLE = {"paid": "success", "failed": "fail", "expired": "expired"}
    WEBHOOK_CODES = {"success": 1, "fail": 20, "expired": 30}
    COMMISSION_PERCENT = Decimal("3")
    DEFAULT_EXPIRE = 300
    MAX_EXPIRE = 43200

    def parse_accounts(self, accounts, base_dir):
        self.additional_keys = {a["shop_id"].lower(): a["additional_key"].encode("utf-8")
                                for a in accounts if a.get("additional_key")}
        return {a["shop_id"].lower(): a["api_key"].encode("utf-8") for a in accounts}

    def create(self, req):
        """POST /invoice/create: JSON body, x-api-key and the body's shop_id; validation
        errors are 422 with the first failing field's message."""
        self.emu.count_create(self.name)
        try:
            data = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("order_id"), str) and data["order_id"]:
            self.emu.count_create(self.name, data["order_id"])
        shop = data.get("shop_id") if isinstance(data, dict) else None
        if shop is None:
            shop = next((value for _, key, value in parse_query(req.query) if key == "shop_id"), None)
        shop = shop.lower() if isinstance(shop, str) else ""
        key = self.accounts.get(shop)
        given = req.single_header("x-api-key")
        if key is None or given is None or not hmac.compare_digest(given.encode("latin-1"), key):
            return self.rejected(401, self.error(401, "Unauthorized"))
        if media_type(req.header("content-type")) != JSON_TYPE or not isinstance(data, dict):
            return Answer(*self.invalid_reply(), "invalid")

        def fail(text):
            return Answer(422, self.error(422, text), "invalid")

        if data.get("amount") is None or data.get("amount") == "":
            return fail("The amount field is required.")
        amount = parse_money(data["amount"])
        if amount is None:
            return fail("The amount must be a number greater than 0 with at most 2 decimals.")
        order_id = data.get("order_id")
        if order_id is None or order_id == "":
            return fail("The order id field is required.")
        if not isinstance(order_id, str):
            return fail("The order id must be a string.")
        if len(order_id) > 255:
            return fail("The order id must not be greater than 255 characters.")
        currency = data.get("currency")
        if currency is None:
            currency = "RUB"
        if currency not in self.CURRENCIES:
            return fail("The selected currency is invalid.")
        for field in ("hook_url", "fail_url", "success_url"):
            if data.get(field) is not None and not is_url(data[field]):
                return fail(f"The {field.replace('_', ' ')} must be a valid URL.")
        custom = data.get("custom_fields")
        custom_value = None
        if custom is not None:
            if not isinstance(custom, str):
                return fail("The custom fields must be a string.")
            if len(custom) > 500:
                return fail("The custom fields must not be greater than 500 characters.")
            try:
                custom_value = json.loads(custom)
            except (ValueError, RecursionError):
                return fail("The custom fields must be a valid JSON string.")
        if data.get("comment") is not None and not isinstance(data["comment"], str):
            return fail("The comment must be a string.")
        expire = data.get("expire")
        if expire is None:
            expire = self.DEFAULT_EXPIRE
        if isinstance(expire, str) and re.fullmatch(r"[0-9]{1,9}", expire):
            expire = int(expire)
        if not isinstance(expire, int) or isinstance(expire, bool):
            return fail("The expire must be an integer.")
        if not 1 <= expire <= self.MAX_EXPIRE:
            return fail(f"The expire must be between 1 and {self.MAX_EXPIRE}.")
        for field in ("include_service", "exclude_service"):
            value = data.get(field)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                return fail(f"The {field.replace('_', ' ')} must be an array of strings.")
        if self.by_scoped.get((shop, order_id)) or self.by_scoped.get((None, order_id)):
            return fail("The order id has already been taken.")
        serial = self.emu.next_serial("morune")
        invoice_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"paygw-emulator/morune/{serial}"))
        now = self.now()
        expired = ymd_his(now + expire * 60)
        number = json_number(amount)
        payment = {
            "invoice_id": invoice_id, "order_id": order_id, "shop_id": shop, "status": "created",
            "invoice_amount": number, "credited": None, "currency": currency, "pay_service": None,
            "payer_details": None, "commission_amount": 0, "commission_percent": 0,
            "shop_commission_amount": 0, "user_commission_amount": 0, "user_commission_percent": 0,
            "custom_field": custom_value, "created_at": ymd_his(now), "expired_at": expired, "paid_at": None,
            "_create": data,
        }
        self.add(payment)
        self.emu.created[self.name] += 1
        return Answer(200, {"status": 200, "data": {"id": invoice_id, "amount": number, "currency": currency,
                                                    "url": self.pay_url(req, invoice_id), "expired": expired},
                            "status_check": True}, "created")

    def settle(self, payment, outcome, native, now):
        new = super().settle(payment, outcome, native, now)
        amount = Decimal(str(payment.get("invoice_amount") or 0))
        if outcome == "paid":
            commission = (amount * self.COMMISSION_PERCENT / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            new.update(credited=json_number(amount - commission) if amount > commission else 0,
                       pay_service="card", payer_details="553691******1279",
                       commission_amount=json_number(commission) if commission else 0,
                       commission_percent=json_number(self.COMMISSION_PERCENT),
                       shop_commission_amount=json_number(commission) if commission else 0,
                       paid_at=ymd_his(now))
        else:
            new.update(credited=None, pay_service=None, payer_details=None, paid_at=None)
        return new

    def webhook_body(self, payment):
        """The webhook's JSON object in the order the gateway writes it."""
        status = payment.get("status")
        amount = Decimal(str(payment.get("invoice_amount") or 0))
        credited = payment.get("credited")
        settled = ymd_his(payment["_settled_at"]) if payment.get("_settled_at") is not None else None
        custom = payment.get("custom_field")
        return {
            "invoice_id": payment.get("invoice_id"), "status": status, "amount": money(amount),
            "currency": payment.get("currency"), "order_id": payment.get("order_id"),
            "pay_service": payment.get("pay_service"), "payer_details": payment.get("payer_details"),
            "custom_fields": {} if custom is None else custom, "type": 1,
            "credited": None if credited is None else money(Decimal(str(credited))),
            "pay_time": payment.get("paid_at") or (settled if status == "success" else None),
            "code": self.WEBHOOK_CODES.get(status),
            "reject_time": settled if status in ("fail", "expired") else None,
        }

    def webhook(self, payment, options):
        """POST JSON to hook_url with x-api-sha256-signature (see morune_webhook_signature);
        escape=none (default) writes '/' and non-ASCII raw, escape=php as PHP's
        json_encode does; the body and the signed text use the same escaping."""
        if payment.get("status") not in self.WEBHOOK_CODES:
            return 409, "no webhook for an invoice in progress (settle it first)"
        escape = options.get("escape", "none")
        if escape not in ("none", "php"):
            return 400, "escape must be none or php"
        key = self.additional_keys.get(self.scope_of(payment) or "")
        if key is None:
            return 409, "the shop has no additional_key in the fixtures"
        url = self.webhook_target(payment, options, "hook_url")
        if url is None:
            return 409, "the invoice has no hook_url; give url"
        body_obj = self.webhook_body(payment)
        php = escape == "php"
        body = json_compact(body_obj, php)
        signature = morune_webhook_signature(b"forged-" + key if options.get("forge") else key, body_obj, php)
        path, query = split_url(url)
        return 200, {"method": "POST", "url": url, "path": path, "query": query,
                     "headers": {"Content-Type": JSON_TYPE, "x-api-sha256-signature": signature}, "body": body}

    def pay_token(self, payment):
        return str(payment["invoice_id"])

    def key_of(self, value):
        return str(value).lower() if self.UUID.fullmatch(str(value)) else str(value)

    def id_key(self, value):
        return str(value).lower()

    def order_key(self, value):
        return str(value)

    def scope_of(self, payment):
        shop = payment.get("shop_id")
        return None if shop is None else str(shop).lower()

    def not_found_obj(self, ref):
        return self.error(404, "Инвойс не найден")

    def auth_fail(self):
        return 401, self.error(401, "Unauthorized")

    def invalid_reply(self):
        return 422, self.error(422, "Validation error")

    def wrap(self, view):
        return {"data": view, "status": 200, "status_check": True}

    def handle(self, req, path):
        if path == self.CREATE_PATH:
            return self.create(req) if req.method == "POST" else wrong_method("POST")
        if path != self.PATH:
            return no_route()
        if req.method != "GET":
            return wrong_method("GET")
        params = {key: value for _, key, value in parse_query(req.query)}   # last one wins, as in PHP
        shop = params.get("shop_id", "").lower()
        key = self.accounts.get(shop)
        given = req.single_header("x-api-key")
        if key is None or given is None or not hmac.compare_digest(given.encode("latin-1"), key):
            return self.rejected(401, self.error(401, "Unauthorized"))
        invoice_id = params.get("invoice_id") or None
        order_id = params.get("order_id") or None
        if ((invoice_id is None and order_id is None)
                or (invoice_id is not None and not self.UUID.fullmatch(invoice_id))
                or (order_id is not None and len(order_id) > 255)):
            return Answer(*self.invalid_reply(), "invalid")
        payment = self.find(invoice_id, order_id, shop)
        if payment is not None and str(payment.get("shop_id", "")).lower() != shop:
            payment = None
        if payment is not None:
            return self.found(payment)
        if ((invoice_id is None or invoice_id.lower().startswith(SYNTHETIC_MORUNE_UUID))
                and (order_id is None or is_synthetic_text(order_id))):
            return self.synthetic(self.make_synthetic(invoice_id, order_id, shop))
        return Answer(404, self.not_found_obj(None), "not_found")

    def make_synthetic(self, invoice_id, order_id, shop):
        if invoice_id is None:
            invoice_id = SYNTHETIC_MORUNE_UUID + hashlib.sha256(order_id.encode("utf-8")).hexdigest()[:12]
        if order_id is None:
            order_id = SYNTHETIC_PREFIX + invoice_id[len(SYNTHETIC_MORUNE_UUID):]
        status = self.synthetic_status()
        return {
            "invoice_id": invoice_id.lower(), "order_id": order_id, "shop_id": shop,
            "status": status, "invoice_amount": 1000, "credited": 1000, "currency": "RUB",
            "pay_service": "card", "payer_details": None, "commission_amount": 0,
            "commission_percent": 0, "shop_commission_amount": 0, "user_commission_amount": 0,
            "user_commission_percent": 0, "custom_field": None,
            "created_at": "2026-01-01 00:00:00", "expired_at": "2026-01-01 01:00:00",
            "paid_at": "2026-01-01 00:01:00" if status == "success" else None,
        }


PROVIDER_CLASSES = {cls.name: cls for cls in (OkePay, Obmenka, AliKassa, Morune)}


def load_providers(emu, path):
    """Read the fixtures file and build the four providers (raises FixtureError)."""
    try:
        with open(path, "rb") as f:
            fixtures = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise FixtureError(f"cannot read fixtures {path}: {exc}")
    if not isinstance(fixtures, dict):
        raise FixtureError("fixtures must be a JSON object")
    accounts = fixtures.get("accounts") or {}
    payments = fixtures.get("payments") or {}
    base_dir = os.path.dirname(os.path.abspath(path))
    providers = {}
    gateway_keys = fixtures.get("gateway_keys") or {}
    for name, cls in PROVIDER_CLASSES.items():
        provider = cls(emu)
        provider.load(accounts.get(name, []), payments.get(name, []), base_dir)
        provider.load_gateway_keys(gateway_keys.get(name) or {}, base_dir)
        providers[name] = provider
    return providers


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------

def apply_transforms(provider, payment, transforms):
    """Payload faults on the reply's payment object; returns (placeholder, raw bytes) pairs
    to substitute after serialisation."""
    subst = []
    sf, af = provider.status_field, provider.amount_field
    if "wrongtypes" in transforms:
        payment[sf] = {"value": payment.get(sf)}
        payment[af] = [payment.get(af)]
    if "hugenumber" in transforms:
        payment[af] = MARK_HUGE
        subst.append((dump_json(MARK_HUGE), HUGE_NUMBER))
    for mode, mark, raw in (("nul", MARK_NUL, b"\x00"), ("badutf8", MARK_BADUTF8, BAD_UTF8_BYTES)):
        if mode in transforms:
            status = payment.get(sf)
            payment[sf] = (status if isinstance(status, str) else "") + mark
            subst.append((mark.encode("utf-8"), raw))
    if "deepnest" in transforms:
        depth = transforms["deepnest"]
        payment["nested"] = MARK_NEST
        subst.append((dump_json(MARK_NEST), b"[" * depth + b"]" * depth))
    return subst


class Emulator:
    """Server state (providers, counters, runtime config) and the connection handler."""

    def __init__(self, fixtures_path, delay_ms=0, log_path=None):
        self.fixtures_path = fixtures_path
        self.base_delay_ms = delay_ms
        self.in_flight = 0
        self.conns = set()
        self.log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None
        self._date = (0, "")
        # serial numbers of created invoices and transactions: never reset, so that a
        # gateway id is never handed out twice by one emulator process
        self.serials = {}
        self.providers = load_providers(self, fixtures_path)
        self.reset_counters()

    def reset_counters(self):
        self.config = {"delay_ms": self.base_delay_ms, "synthetic_status": {}, "now": None}
        self.requests = dict.fromkeys(PROVIDERS, 0)
        self.creates = dict.fromkeys(PROVIDERS, 0)
        self.creates_by_order = {}
        self.created = dict.fromkeys(PROVIDERS, 0)
        self.by_payment = {}
        self.signature_failures = 0
        self.max_in_flight = self.in_flight
        self.connections = 0
        self.tls_resumed = 0

    def now(self):
        """Unix time for created/paid stamps: the `now` config when set, else the clock."""
        fixed = self.config.get("now")
        return int(time.time()) if fixed is None else fixed

    def next_serial(self, name):
        self.serials[name] = self.serials.get(name, 0) + 1
        return self.serials[name]

    def count_create(self, provider, order=None):
        """Count a create request (any outcome); `order` is the merchant's order id when
        the body carried one."""
        if order is None:
            self.creates[provider] += 1
        else:
            key = f"{provider}:{order}"
            self.creates_by_order[key] = self.creates_by_order.get(key, 0) + 1

    # -- output -------------------------------------------------------------------------

    def date(self):
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]

    def head(self, code, headers, length=None, keep=True, chunked=False, version="HTTP/1.1"):
        lines = [f"HTTP/1.1 {code} {REASONS.get(code, 'Unknown')}", f"Date: {self.date()}",
                 "Server: paygw-emulator"]
        lines.extend(f"{k}: {v}" for k, v in headers)
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif length is not None:
            lines.append(f"Content-Length: {length}")
        if not keep:
            lines.append("Connection: close")
        elif version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send_json(self, writer, code, obj, keep, version="HTTP/1.1", headers=()):
        body = dump_json(obj)
        writer.write(self.head(code, [("Content-Type", JSON_TYPE), *headers], len(body), keep, version=version) + body)
        await writer.drain()

    def log_line(self, req, provider, outcome, code):
        if self.log is None:
            return
        path = "".join(c if "!" <= c <= "~" else f"%{ord(c):02X}" for c in req.path[:300])
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        self.log.write(f"{stamp}Z {req.method} {path} {provider} {outcome} {code}\n")

    # -- connections --------------------------------------------------------------------

    async def on_connection(self, reader, writer):
        task = asyncio.current_task()
        self.conns.add(task)
        self.connections += 1
        ssl_object = writer.get_extra_info("ssl_object")     # the handshake is done by now
        if ssl_object is not None and ssl_object.session_reused:
            self.tls_resumed += 1
        try:
            while True:
                try:
                    req = await read_request(reader, writer)
                except HttpError as exc:
                    await self.send_json(writer, exc.code, {"error": exc.message}, keep=False)
                    break
                if req is None:
                    break
                if not await self.dispatch(req, reader, writer) or not req.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError, OSError):
            pass
        except Exception:
            traceback.print_exc()
        finally:
            self.conns.discard(task)
            if not writer.is_closing():
                writer.close()

    async def dispatch(self, req, reader, writer):
        """Route one request; returns whether the connection may be kept."""
        path = req.path
        req.base = self.base_url(writer)
        if path.startswith("/_control/"):
            return await self.control(req, writer)
        if path.startswith("/pay/"):
            return await self.pay_page(req, writer)
        faults = []
        if path.startswith("/_fault/"):
            spec, _, rest = path[len("/_fault/"):].partition("/")
            try:
                faults = parse_faults(unquote(spec))
            except ValueError as exc:
                await self.send_json(writer, 400, {"error": f"bad fault spec: {exc}"}, req.keep_alive, req.version)
                self.log_line(req, "-", "bad_fault_spec", 400)
                return True
            path = "/" + rest
        name, _, sub = path[1:].partition("/")
        provider = self.providers.get(name)
        if provider is None:
            await self.send_json(writer, 404, {"error": "no such endpoint"}, req.keep_alive, req.version)
            self.log_line(req, "-", "no_route", 404)
            return True
        return await self.serve(provider, "/" + sub, req, faults, reader, writer)

    async def serve(self, provider, path, req, url_faults, reader, writer):
        """Answer one gateway request: check it, look the payment up, apply faults.
        Returns whether the connection may be kept."""
        self.requests[provider.name] += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        sent = {"code": "-"}             # the HTTP code actually sent, for the log
        outcome = "error"
        try:
            try:
                answer = provider.handle(req, path)
            except Exception:                 # an emulator bug must not look like a network fault
                traceback.print_exc()
                answer = Answer(500, {"error": "internal emulator error"}, "emulator_error")
            outcome = answer.outcome
            faults = url_faults + list(answer.faults) if answer.faults else url_faults
            plan = Plan(faults) if faults else None
            if plan is not None:
                outcome += "+" + "+".join(plan.names)
            delay = self.config["delay_ms"] + (plan.delay_ms if plan else 0)
            if delay > 0:
                await asyncio.sleep(delay / 1000.0)
            if plan is not None:
                return await self.serve_faulty(provider, answer, plan, req, reader, writer, sent)
            body = dump_json(answer.obj)
            headers = [("Content-Type", JSON_TYPE)]
            if answer.signer is not None:
                headers.append(("DPAY_SECURE", answer.signer(hashlib.sha1(body).digest())))
            sent["code"] = answer.code
            writer.write(self.head(answer.code, headers, len(body), req.keep_alive, version=req.version) + body)
            await writer.drain()
            return True
        finally:
            self.in_flight -= 1
            self.log_line(req, provider.name, outcome, sent["code"])

    async def serve_faulty(self, provider, answer, plan, req, reader, writer, sent):
        """Send `answer` the way the fault plan says; records the code in `sent`.
        Returns whether the connection may be kept."""
        if plan.delivery == "noreply":
            await self.hold_until_gone(reader)
            return False
        if plan.delivery == "reset":
            self.reset(writer)
            return False
        code, ctype, body = self.render(provider, answer, plan)
        sent["code"] = code
        headers = [("Content-Type", ctype)]
        if plan.body == "status" and code in REDIRECT_CODES:
            headers.append(("Location", self.redirect_target(req, writer)))
        if answer.signer is not None and plan.sig != "nosig":
            headers.append(("DPAY_SECURE", answer.signer(body.sha1(), wrong=plan.sig == "badsig")))
        keep = req.keep_alive
        if plan.delivery is None:
            writer.write(self.head(code, headers, body.length, keep, version=req.version))
            await self.send_body(writer, body)
            return keep
        if plan.delivery == "chunked":
            if req.version == "HTTP/1.0":      # no chunked encoding in 1.0: delimit by close
                writer.write(self.head(code, headers, None, False))
                await self.send_body(writer, body)
                return False
            writer.write(self.head(code, headers, keep=keep, chunked=True))
            for chunk in body.chunks(16384):
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return keep
        if plan.delivery == "truncated":
            writer.write(self.head(code, headers, body.length + TRUNCATED_MISSING, keep, version=req.version))
            await self.send_body(writer, body)
            return False
        if plan.delivery == "resetmid":
            writer.write(self.head(code, headers, RESETMID_LENGTH, keep, version=req.version)
                         + body.head(RESETMID_SENT))
            await self.flushed(writer)
            await asyncio.sleep(0.05)
            self.reset(writer)
            return False
        if plan.delivery == "slowbody":
            total = max(SLOWBODY_BYTES, body.length)
            data = body.head(SLOWBODY_BYTES).ljust(min(total, SLOWBODY_BYTES), b" ")
            writer.write(self.head(code, headers, total, keep, version=req.version))
            for i in range(len(data)):
                if i:
                    await asyncio.sleep(SLOWBODY_INTERVAL)
                if writer.is_closing():
                    return False
                writer.write(data[i:i + 1])
                await writer.drain()
            return keep and total == len(data)
        raise AssertionError(plan.delivery)

    @staticmethod
    def base_url(writer):
        """scheme://address:port the request came in on (empty when unknown)."""
        scheme = "https" if writer.get_extra_info("ssl_object") is not None else "http"
        address = writer.get_extra_info("sockname")
        if not address:
            return ""
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        return f"{scheme}://{host}:{address[1]}"

    @staticmethod
    def redirect_target(req, writer):
        """`status=3xx`: where the redirect points -- the same request (path and query)
        without its `/_fault/<spec>` prefix, so a client that follows it gets the normal
        answer.  An absolute URL on the address and port the request came in on."""
        path = req.path
        if path.startswith("/_fault/"):
            path = "/" + path[len("/_fault/"):].partition("/")[2]
        target = path + ("?" + req.query.decode("latin-1") if req.query else "")
        return Emulator.base_url(writer) + target

    async def pay_page(self, req, writer):
        """GET /pay/<provider>/<token>: a stand-in for the gateway's payment page."""
        name, _, token = req.path[len("/pay/"):].partition("/")
        provider = self.providers.get(name)
        payment = provider.pay_lookup(unquote(token)) if provider is not None else None
        if req.method not in ("GET", "HEAD"):
            code, text = 405, "method not allowed"
        elif payment is None:
            code, text = 404, "no such payment page"
        else:
            code = 200
            view = {k: v for k, v in payment.items() if not k.startswith("_")}
            text = (f"{name} payment page\n{json.dumps(view, ensure_ascii=False)}\n"
                    "(settle it with POST /_control/settle)\n")
        html = ("<!DOCTYPE html>\n<html><head><title>paygw emulator</title></head><body><pre>"
                + text.replace("&", "&amp;").replace("<", "&lt;") + "</pre></body></html>\n").encode("utf-8")
        writer.write(self.head(code, [("Content-Type", HTML_TYPE)], len(html), req.keep_alive, version=req.version)
                     + (b"" if req.method == "HEAD" else html))
        await writer.drain()
        self.log_line(req, name if provider else "-", "pay_page", code)
        return True

    def render(self, provider, answer, plan):
        """(code, content type, Body) of an answer after the plan's body and payload faults."""
        code, obj, payment = answer.code, answer.obj, answer.payment
        mode = plan.body
        if mode == "status":
            code, obj, payment = plan.body_arg, {"error": "injected"}, None
        elif mode == "notfound200":
            code, obj, payment = 200, provider.not_found_obj(answer.ref), None
        elif mode == "authfail":
            (code, obj), payment = provider.auth_fail(), None
        elif mode == "invalid":
            (code, obj), payment = provider.invalid_reply(), None
        elif mode == "malformed":
            return 200, JSON_TYPE, Body(MALFORMED_BODY)
        elif mode == "notjson":
            return 200, HTML_TYPE, Body(HTML_BODY)
        elif mode == "emptybody":
            return 200, JSON_TYPE, Body()
        elif mode in ("oversize", "oversize_chunked"):
            code = 200
        subst = apply_transforms(provider, payment, plan.transforms) if payment is not None and plan.transforms else ()
        raw = dump_json(obj)
        for mark, replacement in subst:
            raw = raw.replace(mark, replacement)
        if mode in ("oversize", "oversize_chunked"):
            return code, JSON_TYPE, pad_json(raw, plan.body_arg)
        return code, JSON_TYPE, Body(raw)

    async def send_body(self, writer, body):
        for chunk in body.chunks():
            writer.write(chunk)
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()
        await writer.drain()

    @staticmethod
    async def flushed(writer):
        """Wait until the transport has handed every byte to the kernel."""
        while writer.transport.get_write_buffer_size() > 0 and not writer.is_closing():
            await asyncio.sleep(0.005)

    @staticmethod
    def reset(writer):
        """Close the connection with a TCP RST (SO_LINGER on, timeout 0)."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        writer.transport.abort()

    @staticmethod
    async def hold_until_gone(reader):
        """`noreply`: swallow input until the client closes, at most NOREPLY_LIMIT seconds."""
        try:
            async with asyncio.timeout(NOREPLY_LIMIT):
                while await reader.read(65536):
                    pass
        except (TimeoutError, ConnectionError, OSError):
            pass

    # -- control API ----------------------------------------------------------------------

    async def control(self, req, writer):
        name = req.path[len("/_control/"):].rstrip("/")
        routes = {
            "health": ("GET", lambda: (200, {"ok": True})),
            "stats": ("GET", self.control_stats),
            "set": ("POST", lambda: self.control_set(req.body)),
            "reset": ("POST", self.control_reset),
            "config": ("POST", lambda: self.control_config(req.body)),
            "settle": ("POST", lambda: self.control_settle(req.body)),
            "webhook": ("POST", lambda: self.control_webhook(req.body)),
        }
        if name == "config" and req.method == "GET":
            code, obj = 200, {"ok": True, "config": self.config}
        elif name not in routes:
            code, obj = 404, {"ok": False, "error": "no such control endpoint"}
        elif req.method != routes[name][0]:
            code, obj = 405, {"ok": False, "error": f"use {routes[name][0]}"}
        else:
            code, obj = routes[name][1]()
        await self.send_json(writer, code, obj, req.keep_alive, req.version)
        self.log_line(req, "control", name, code)
        return True

    def control_stats(self):
        return 200, {
            "requests": dict(self.requests), "by_payment": dict(self.by_payment),
            "signature_failures": self.signature_failures, "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight, "connections": self.connections,
            "tls_resumed": self.tls_resumed, "creates": dict(self.creates),
            "creates_by_order": dict(self.creates_by_order), "created": dict(self.created),
        }

    def control_reset(self):
        try:
            providers = load_providers(self, self.fixtures_path)
        except FixtureError as exc:
            return 500, {"ok": False, "error": str(exc)}
        self.providers = providers
        self.reset_counters()
        return 200, {"ok": True}

    @staticmethod
    def parse_control_body(body):
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    def control_set(self, body):
        data = self.parse_control_body(body)
        if data is None:
            return 400, {"ok": False, "error": "body must be a JSON object"}
        provider = self.providers.get(data.get("provider"))
        if provider is None:
            return 400, {"ok": False, "error": f"provider must be one of {', '.join(PROVIDERS)}"}
        gid, oid = data.get("id"), data.get("order_id")
        new = data.get("payment")
        if new is None and "status" not in data and "fault" not in data:
            return 400, {"ok": False, "error": "give status, fault or payment"}
        if new is not None:
            error = provider.check_payment(new)
            if error:
                return 400, {"ok": False, "error": error}
            new = dict(new)
            if gid is None and oid is None:
                gid = new[provider.id_field]
        if gid is None and oid is None:
            return 400, {"ok": False, "error": "give id or order_id"}
        current = provider.find(None if gid is None else str(gid), None if oid is None else str(oid))
        if new is None:
            if current is None:
                return 404, {"ok": False, "error": "payment not found"}
            new = dict(current)
        if "status" in data:
            if not isinstance(data["status"], str):
                return 400, {"ok": False, "error": "status must be a string"}
            new[provider.status_field] = data["status"]
            new.pop("_sequence", None)
        if "fault" in data:
            if data["fault"] in (None, ""):
                new.pop("_fault", None)
            else:
                try:
                    parse_faults(data["fault"])
                except ValueError as exc:
                    return 400, {"ok": False, "error": f"bad fault spec: {exc}"}
                new["_fault"] = data["fault"]
        provider.upsert(new, current)
        return 200, {"ok": True, "payment": new}

    def control_config(self, body):
        data = self.parse_control_body(body)
        if data is None:
            return 400, {"ok": False, "error": "body must be a JSON object"}
        unknown = set(data) - {"delay_ms", "synthetic_status", "now"}
        if unknown:
            return 400, {"ok": False, "error": f"unknown config keys: {', '.join(sorted(unknown))}"}
        if "delay_ms" in data:
            delay = data["delay_ms"]
            if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 600000:
                return 400, {"ok": False, "error": "delay_ms must be an integer 0..600000"}
        if "now" in data:
            now = data["now"]
            if now is not None and (not isinstance(now, int) or isinstance(now, bool) or not 0 <= now < 2**33):
                return 400, {"ok": False, "error": "now must be a unix time (integer) or null"}
        statuses = data.get("synthetic_status", {})
        if not isinstance(statuses, dict) or any(
                k not in PROVIDERS or not isinstance(v, str) for k, v in statuses.items()):
            return 400, {"ok": False, "error": "synthetic_status maps provider names to status strings"}
        if "delay_ms" in data:
            self.config["delay_ms"] = data["delay_ms"]
        self.config["synthetic_status"].update(statuses)
        if "now" in data:
            self.config["now"] = data["now"]
        return 200, {"ok": True, "config": self.config}

    def lifecycle_target(self, body, options):
        """(provider, payment, data) for settle/webhook, or (None, (code, obj), None).
        A payment is named by `id` (the gateway's id) or `order_id` (the merchant's, with
        `scope` to pick the account when two accounts use the same order id)."""
        data = self.parse_control_body(body)
        if data is None:
            return None, (400, {"ok": False, "error": "body must be a JSON object"}), None
        provider = self.providers.get(data.get("provider"))
        if provider is None:
            return None, (400, {"ok": False, "error": f"provider must be one of {', '.join(PROVIDERS)}"}), None
        unknown = set(data) - {"provider", "id", "order_id", "scope"} - options.get(provider.name, set())
        if unknown:
            return None, (400, {"ok": False, "error": f"unknown keys for {provider.name}: "
                                f"{', '.join(sorted(unknown))}"}), None
        gid, oid, scope = data.get("id"), data.get("order_id"), data.get("scope")
        if any(v is not None and not isinstance(v, (str, int)) or isinstance(v, bool) for v in (gid, oid, scope)):
            return None, (400, {"ok": False, "error": "id, order_id and scope are strings"}), None
        if gid is None and oid is None:
            return None, (400, {"ok": False, "error": "give id or order_id"}), None
        if gid is not None:
            payment = provider.by_id.get(provider.id_key(gid))
            matches = [payment] if payment is not None else []
        else:
            key = provider.order_key(oid)
            matches = [p for p in provider.payments
                       if p.get(provider.order_field) is not None and provider.order_key(p[provider.order_field]) == key
                       and (scope is None or provider.scope_of(p) == str(scope).lower()
                            or provider.scope_of(p) == str(scope))]
        if gid is not None and oid is not None and matches and (
                matches[0].get(provider.order_field) is None
                or provider.order_key(matches[0][provider.order_field]) != provider.order_key(oid)):
            matches = []
        if not matches:
            return None, (404, {"ok": False, "error": "payment not found"}), None
        if len(matches) > 1:
            return None, (409, {"ok": False, "error": "several payments have this order_id; give id (or scope)"}), None
        return provider, matches[0], data

    SETTLE_OUTCOMES = ("paid", "failed", "expired")

    def control_settle(self, body):
        provider, payment, data = self.lifecycle_target(body, {name: {"status", "native"} for name in PROVIDERS})
        if provider is None:
            return payment
        outcome, native = data.get("status"), data.get("native")
        if outcome not in self.SETTLE_OUTCOMES:
            return 400, {"ok": False, "error": "status must be paid, failed or expired"}
        if native is not None and (not isinstance(native, str) or not native):
            return 400, {"ok": False, "error": "native must be a non-empty status string"}
        new = provider.settle(payment, outcome, native, self.now())
        provider.replace(payment, new)
        return 200, {"ok": True, "payment": {k: v for k, v in new.items() if not k.startswith("_")}}

    WEBHOOK_OPTIONS = {
        "okepay": {"url", "format"},
        "obmenka": {"url"},
        "alikassa": {"url", "digest", "forge", "type"},
        "morune": {"url", "escape", "forge"},
    }

    def control_webhook(self, body):
        provider, payment, data = self.lifecycle_target(body, self.WEBHOOK_OPTIONS)
        if provider is None:
            return payment
        options = {k: v for k, v in data.items() if k in self.WEBHOOK_OPTIONS[provider.name]}
        if "url" in options and not is_url(options["url"]):
            return 400, {"ok": False, "error": "url must be an absolute http(s) URL"}
        if "forge" in options and not isinstance(options["forge"], bool):
            return 400, {"ok": False, "error": "forge must be true or false"}
        code, result = provider.webhook(payment, options)
        if code != 200:
            return code, {"ok": False, "error": result}
        return 200, result


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def loopback_address(host):
    """The loopback address to bind for `host`, or None if it is not loopback."""
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return None
    addresses = [info[4][0] for info in infos]
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return None
    ipv4 = [a for a in addresses if ":" not in a]
    return (ipv4 or addresses)[0]


def write_port_file(path, port):
    """Write the port number atomically: a temporary file in the same folder, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def run(args, address):
    emu = Emulator(args.fixtures, args.delay_ms, args.log)
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    server = await asyncio.start_server(emu.on_connection, address, args.port, ssl=context,
                                        limit=MAX_HEAD, backlog=1024, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    scheme = "https" if context else "http"
    shown = f"[{address}]" if ":" in address else address
    print(f"paygw emulator listening on {scheme}://{shown}:{port}/", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    for task in list(emu.conns):
        task.cancel()
    await asyncio.gather(*emu.conns, return_exceptions=True)
    if emu.log:
        emu.log.close()


def main(argv=None):
    if sys.version_info < (3, 11):
        print("emulator: needs Python 3.11 or newer (use /usr/bin/python3)", file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="Loopback emulator of the paygw payment gateways.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 for a free one (default 0)")
    parser.add_argument("--port-file", help="write the bound port number here once listening")
    parser.add_argument("--fixtures", default=os.path.join(here, "fixtures.json"), help="fixtures file")
    parser.add_argument("--delay-ms", type=int, default=0, help="delay added before every gateway answer")
    parser.add_argument("--log", help="append one line per request to this file")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.delay_ms < 0:
        parser.error("--delay-ms must not be negative")
    address = loopback_address(args.host)
    if address is None:
        print(f"emulator: refusing to bind {args.host!r}: not a loopback address", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(args, address))
    except FixtureError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    except (OSError, ssl.SSLError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
