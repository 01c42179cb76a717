#!/usr/bin/env python3
"""Pay an invoice in the running emulator and print the webhook it sends.

    python3 pay.py PROVIDER GATEWAY_ID [STATUS]

Settles the invoice (POST /_control/settle, status "paid" unless given) and prints,
as one line of JSON, the webhook request the gateway sends for it (POST
/_control/webhook): {"method","url","path","query","headers","body"}.  Used by the
demo (test/demo.sql) and the end-to-end check; needs PAYGW_EMU_PORT.
"""
import json
import os
import sys
import urllib.request

port = os.environ["PAYGW_EMU_PORT"]


def control(path, payload):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/_control/{path}",
                                     data=json.dumps(payload).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


provider, gateway_id = sys.argv[1], sys.argv[2]
status = sys.argv[3] if len(sys.argv) > 3 else "paid"
control("settle", {"provider": provider, "id": gateway_id, "status": status})
print(json.dumps(control("webhook", {"provider": provider, "id": gateway_id})))
