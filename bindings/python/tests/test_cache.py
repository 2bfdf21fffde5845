import time

import pytest

import felix
from conftest import wait_until


def test_put_get_delete_and_versions(client, ns):
    v1 = client.cache_put(ns, "c", "k", b"v1")
    got = client.cache_get(ns, "c", "k")
    assert (got.value, got.version) == (b"v1", v1)
    v2 = client.cache_put_if(ns, "c", "k", b"v2", if_version=v1)
    assert v2 > v1
    with pytest.raises(felix.ConflictError) as e:
        client.cache_put_if(ns, "c", "k", b"v3", if_version=v1)
    assert e.value.code == "conflict" and not e.value.retryable
    with pytest.raises(felix.ConflictError):
        client.cache_put_if(ns, "c", "k", b"v3", if_absent=True)
    assert client.cache_delete(ns, "c", "k") is True
    assert client.cache_delete(ns, "c", "k") is False
    assert client.cache_get(ns, "c", "k") is None
    client.cache_put_if(ns, "c", "k", b"again", if_absent=True)


# TTL tests check both sides: the entry is read back right after the put (a TTL sent 1000x too
# short is already gone), and its expiry is seen no earlier than the TTL after the put began
# (nor much later: the wait's deadline). TTL_S leaves a loaded 2-core CI a wide margin for the
# first read; EARLY_SLACK_S only absorbs clock rounding between the broker and this process.
TTL_S = 2.0
EARLY_SLACK_S = 0.05


def _wait_for_expiry(client, ns, cache, key) -> None:
    """Polls until `key` reads as a miss; fails after a generous deadline (TTL too long)."""
    wait_until(lambda: client.cache_get(ns, cache, key) is None, 30, f"expiry of {key!r}", 0.01)


def test_ttl_expiry(client, ns):
    start = time.monotonic()
    client.cache_put(ns, "c", "short", b"x", ttl=TTL_S)
    client.cache_put(ns, "c", "forever", b"y")
    got = client.cache_get(ns, "c", "short")
    read_at = time.monotonic() - start
    assert got is not None and got.value == b"x", f"gone {read_at:.3f}s after the put (TTL too short)"
    _wait_for_expiry(client, ns, "c", "short")
    elapsed = time.monotonic() - start
    assert elapsed >= TTL_S - EARLY_SLACK_S, f"expired after {elapsed:.3f}s, TTL {TTL_S}s"
    assert client.cache_get(ns, "c", "forever").value == b"y"


def test_cache_default_ttl(client, ns):
    client.create_cache(ns, "ttlc", default_ttl=TTL_S)
    start = time.monotonic()
    client.cache_put(ns, "ttlc", "k", b"x")
    client.cache_put(ns, "ttlc", "own", b"y", ttl=600)
    got = client.cache_get(ns, "ttlc", "k")
    read_at = time.monotonic() - start
    assert got is not None and got.value == b"x", f"gone {read_at:.3f}s after the put (default TTL too short)"
    _wait_for_expiry(client, ns, "ttlc", "k")
    elapsed = time.monotonic() - start
    assert elapsed >= TTL_S - EARLY_SLACK_S, f"expired after {elapsed:.3f}s, default TTL {TTL_S}s"
    assert client.cache_get(ns, "ttlc", "own").value == b"y", "a put's own TTL overrides the default"


def test_get_many_keeps_key_order(client, ns):
    client.cache_put(ns, "c", "a", b"1")
    client.cache_put(ns, "c", "c", b"3")
    vals = client.cache_get_many(ns, "c", ["a", "b", "c"])
    assert [v and v.value for v in vals] == [b"1", None, b"3"]


async def test_async_cache(aclient, ns):
    v = await aclient.cache_put(ns, "c", "k", bytearray(b"val"), ttl=60)
    got = await aclient.cache_get(ns, "c", "k")
    assert got == (await aclient.cache_get_many(ns, "c", ["k"]))[0]
    assert (got.value, got.version) == (b"val", v)
    assert await aclient.cache_delete(ns, "c", "k")
    assert await aclient.cache_get(ns, "c", "k") is None
