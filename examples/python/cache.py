"""Cache with TTL and compare-and-set (asyncio API)."""

import asyncio
import os

import felix


async def main() -> None:
    addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
    ca = os.environ.get("FELIX_CA_FILE")
    async with await felix.AsyncClient.connect(addr, ca_file=ca) as client:
        version = await client.cache_put("examples", "sessions", "alice", b'{"cart":3}', ttl=60)
        current = await client.cache_get("examples", "sessions", "alice")
        print("got", current.value, "version", current.version)
        try:
            await client.cache_put_if("examples", "sessions", "alice", b"{}", if_version=version + 100)
        except felix.ConflictError as e:
            print("compare-and-set refused:", e.code)
        values = await asyncio.gather(*(client.cache_get("examples", "sessions", k) for k in ["alice", "bob"]))
        print([v and v.value for v in values])


asyncio.run(main())
