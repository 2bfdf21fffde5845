"""A work-queue consumer: pull, ack what succeeds, nack what fails (redelivered later)."""

import os

import felix

addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
ca = os.environ.get("FELIX_CA_FILE")

with felix.Client(addr, ca_file=ca) as client:
    client.publish_batch("examples", "jobs", [b"resize:1", b"resize:2", b"fail:3"])
    worker = client.consumer("examples", "jobs", "workers")
    for msg in worker.messages(batch=10, wait=0.5, idle_timeout=1.0):
        if msg.payload.startswith(b"fail") and msg.attempt == 1:
            worker.nack(msg, delay=0.1)  # try again shortly
            print("nacked", msg.offset)
        else:
            worker.ack(msg)
            print("done", msg.offset, msg.payload, "attempt", msg.attempt)
