"""Publish a few events and read them back (blocking API).

FELIX_ADDRESS (default 127.0.0.1:5000) and FELIX_CA_FILE (default: the dev broker's CA).
Exits non-zero, saying what it missed, unless it reads back exactly what it published.
"""

import os
import sys

import felix

addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
ca = os.environ.get("FELIX_CA_FILE")
want = [b"hello", b"one", b"two"]

with felix.Client(addr, ca_file=ca) as client:
    with client.subscribe("examples", "orders") as sub:
        client.publish("examples", "orders", b"hello")
        client.publish_batch("examples", "orders", [b"one", b"two"], ack=felix.AckMode.PER_MESSAGE)
        got = []
        for event in sub.iter(timeout=10.0):  # stops after 10 s without an event
            print(event.stream, event.offset, event.payload)
            got.append(event.payload)
            if len(got) == len(want):
                break

if got != want:
    sys.exit(f"pubsub example FAILED: received {got}, expected {want}")
print("ok")
