"""asyncio: one task subscribes with `async for`, another publishes.

Exits non-zero, saying what it missed, unless every tick arrives in order."""

import asyncio
import os
import sys

import felix


async def main() -> None:
    addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
    ca = os.environ.get("FELIX_CA_FILE")
    want = [str(i).encode() for i in range(5)]
    got = []
    async with await felix.AsyncClient.connect(addr, ca_file=ca) as client:
        sub = await client.subscribe("examples", "ticks")

        async def produce() -> None:
            for payload in want:
                await client.publish("examples", "ticks", payload)

        producer = asyncio.create_task(produce())
        async for event in sub.iter(timeout=10.0):  # stops after 10 s without an event
            print("tick", event.payload.decode())
            got.append(event.payload)
            if len(got) == len(want):
                break
        await producer
        sub.close()
    if got != want:
        sys.exit(f"async_pubsub example FAILED: received {got}, expected {want}")
    print("ok")


asyncio.run(main())
