#!/usr/bin/env python3
"""Print counters of the running emulator (PAYGW_EMU_PORT) for the SQL suites.

    python3 stat.py creates created 'creates_by_order.morune:ORD-1'

Each argument is a key of GET /_control/stats, dots descending into objects;
one "key: value" line each (a missing key prints 0).
"""
import json
import os
import sys
import urllib.request

port = os.environ["PAYGW_EMU_PORT"]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/_control/stats", timeout=10) as reply:
    stats = json.load(reply)
for key in sys.argv[1:]:
    value = stats
    for part in key.split(".", 1) if key.startswith("creates_by_order.") else key.split("."):
        value = value.get(part, 0) if isinstance(value, dict) else 0
    print(f"{key}: {json.dumps(value, sort_keys=True)}")
