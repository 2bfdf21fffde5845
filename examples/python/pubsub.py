"""Publish a few events and read them back (blocking API).

FELIX_ADDRESS (default 127.0.0.1:5000) and FELIX_CA_FILE (default: the dev broker's CA).
"""

import os

import felix

addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
ca = os.environ.get("FELIX_CA_FILE")

with felix.Client(addr, ca_file=ca) as client:
    with client.subscribe("examples", "orders") as sub:
        client.publish("examples", "orders", b"hello")
        client.publish_batch("examples", "orders", [b"one", b"two"], ack=felix.AckMode.PER_MESSAGE)
        for event in sub.iter(timeout=2.0):
            print(event.stream, event.offset, event.payload)
            if event.payload == b"two":
                break
