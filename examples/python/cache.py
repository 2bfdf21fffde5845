"""Cache with TTL and compare-and-set (asyncio API).

Exits non-zero, saying what differed, unless every read and the refused write behave as shown."""

import asyncio
import os
import sys

import felix


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"cache example FAILED: {what}")


async def main() -> None:
    addr = os.environ.get("FELIX_ADDRESS", "127.0.0.1:5000")
    ca = os.environ.get("FELIX_CA_FILE")
    async with await felix.AsyncClient.connect(addr, ca_file=ca) as client:
        version = await client.cache_put("examples", "sessions", "alice", b'{"cart":3}', ttl=60)
        current = await client.cache_get("examples", "sessions", "alice")
        check(current is not None and current.value == b'{"cart":3}', f"read back {current}")
        print("got", current.value, "version", current.version)
        try:
            await client.cache_put_if("examples", "sessions", "alice", b"{}", if_version=version + 100)
            check(False, "a put with a stale version was accepted")
        except felix.ConflictError as e:
            print("compare-and-set refused:", e.code)
        values = await asyncio.gather(*(client.cache_get("examples", "sessions", k) for k in ["alice", "bob"]))
        got = [v and v.value for v in values]
        print(got)
        check(got == [b'{"cart":3}', None], f"multi-read gave {got}")
    print("ok")


asyncio.run(main())
