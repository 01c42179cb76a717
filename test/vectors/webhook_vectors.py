#!/usr/bin/env python3
"""test/vectors/webhook_vectors.py -- the webhook vectors of
sql/webhook_verify.sql, computed independently of paygw (Python's json and
hmac modules, and the `cryptography` package).

    python3 test/vectors/webhook_vectors.py [--new-key]

--new-key makes a fresh RSA key pair (alikassa-notify.pem and .pub.pem next
to this script); without it the stored pair is used, so the output is the
same every run (PKCS#1 v1.5 signatures are deterministic).  The private key
is test data, used only here to sign the vectors.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
PRIV = os.path.join(HERE, "alikassa-notify.pem")
PUB = os.path.join(HERE, "alikassa-notify.pub.pem")


def morune_message(body, php):
    """Enot/Morune: top-level keys sorted, compact; php: escaped like PHP."""
    obj = json.loads(body)
    text = json.dumps(dict(sorted(obj.items())), separators=(",", ":"),
                      ensure_ascii=php)
    # '/' occurs only inside strings in this output
    return text.replace("/", "\\/") if php else text


def morune_sign(key, body, php):
    msg = morune_message(body, php).encode("utf-8")
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


ALIKASSA_KEYS = ["type", "id", "order_id", "payment_status", "amount", "payment_amount",
                 "commission_amount", "is_partial_payment", "account", "service", "desc"]


def alikassa_message(params):
    obj = {}
    for k in ALIKASSA_KEYS:
        if k == "id":
            obj[k] = int(params[k])
        else:
            obj[k] = params.get(k)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def alikassa_query(priv, params, digest):
    msg = alikassa_message(params).encode("utf-8")
    sig = priv.sign(msg, padding.PKCS1v15(), digest)
    q = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in params.items())
    return msg.decode(), q + "&sign=" + quote_plus(base64.b64encode(sig).decode())


def main():
    if "--new-key" in sys.argv:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with open(PRIV, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(PUB, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    with open(PRIV, "rb") as f:
        priv = serialization.load_pem_private_key(f.read(), password=None)

    print("== morune")
    docs = ('{"amount":"100.00","credited":"95.50","custom_fields":{"user":1},'
            '"invoice_id":"a3e9ff6f-c5c1-3bcd-854e-4bc995b1ae7a",'
            '"order_id":"c78d8fe9-ab44-3f21-a37a-ce4ca269cb47","pay_service":"card",'
            '"pay_time":"2023-04-06 16:27:59","payer_details":"553691******1279",'
            '"status":"success","type":1}')
    print("docs body:", docs)
    print("docs key example:", morune_sign("example", docs, False))
    uni = ('{"status":"success","invoice_id":"A3E9FF6F-C5C1-4BCD-854E-4BC995B1A002",'
           '"order_id":"order/42","amount":"10.00","custom_fields":{"z":"\\u00e9t\\u00e9","a":"x/y"},'
           '"payer_details":"\u0418\u0432\u0430\u043d \U0001F600","empty":{},"type":1}')
    print("unicode body:", uni)
    print("unicode key example plain:", morune_sign("example", uni, False))
    print("unicode key example php:  ", morune_sign("example", uni, True))
    print("unicode plain message:", morune_message(uni, False))
    print("unicode php message:  ", morune_message(uni, True))
    sealed = '{"invoice_id":"a3e9ff6f-c5c1-4bcd-854e-4bc995b1a003","status":"fail","order_id":"mo-sealed-1"}'
    print("sealed body:", sealed)
    print("sealed key secret-value-9102:", morune_sign("secret-value-9102", sealed, False))

    print("== alikassa")
    with open(PUB) as f:
        print(f.read().strip())
    base = {"type": "payment", "id": "100000537", "order_id": "ak-order/1",
            "payment_status": "paid", "amount": "500.00", "payment_amount": "500.00",
            "commission_amount": "15.00", "is_partial_payment": "0",
            "account": "93d5df06-996c-48c3-9847-348d6b580b80",
            "service": "payment_card_rub", "desc": "Оплата заказа №1 / \"test\""}
    msg, q = alikassa_query(priv, base, hashes.SHA1())
    print("message:", msg)
    print("sha1 query:", q)
    msg, q = alikassa_query(priv, base, hashes.SHA256())
    print("sha256 query:", q)
    partial = {k: v for k, v in base.items() if k not in ("commission_amount", "desc")}
    partial["id"] = "00777"
    partial["payment_status"] = "wait"
    msg, q = alikassa_query(priv, partial, hashes.SHA1())
    print("partial message:", msg)
    print("partial sha1 query:", q)


if __name__ == "__main__":
    main()
