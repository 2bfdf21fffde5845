"""asyncio: one task subscribes with `async for`, another publishes."""

import asyncio
import os

import felix


async def main() -> None:
    addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
    ca = os.environ.get("FELIX_CA_FILE")
    async with await felix.AsyncClient.connect(addr, ca_file=ca) as client:
        sub = await client.subscribe("examples", "ticks")

        async def produce() -> None:
            for i in range(5):
                await client.publish("examples", "ticks", str(i).encode())

        producer = asyncio.create_task(produce())
        async for event in sub:
            print("tick", event.payload.decode())
            if event.payload == b"4":
                break
        await producer
        sub.close()


asyncio.run(main())
