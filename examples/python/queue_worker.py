"""A work-queue consumer: pull, ack what succeeds, nack what fails (redelivered later).

Exits non-zero, saying what is missing, unless every job is done (the failing one on its
second attempt)."""

import os
import sys
import uuid

import felix

addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
ca = os.environ.get("FELIX_CA_FILE")
run = uuid.uuid4().hex[:8]  # this run's jobs, apart from earlier runs' on the same broker
jobs = [f"resize:1:{run}".encode(), f"resize:2:{run}".encode(), f"fail:3:{run}".encode()]

done = {}
with felix.Client(addr, ca_file=ca) as client:
    client.publish_batch("examples", "jobs", jobs)
    worker = client.consumer("examples", "jobs", "workers")
    for msg in worker.messages(batch=10, wait=0.5, idle_timeout=10.0):
        if msg.payload.startswith(b"fail") and msg.attempt == 1:
            worker.nack(msg, delay=0.1)  # try again shortly
            print("nacked", msg.offset)
        else:
            worker.ack(msg)
            print("done", msg.offset, msg.payload, "attempt", msg.attempt)
            done[msg.payload] = msg.attempt
        if all(j in done for j in jobs):
            break

want = {jobs[0]: 1, jobs[1]: 1, jobs[2]: 2}
if {j: done.get(j) for j in jobs} != want:
    sys.exit(f"queue_worker example FAILED: done {done}, expected {want}")
print("ok")
