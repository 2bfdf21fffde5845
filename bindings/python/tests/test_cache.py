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


def test_ttl_expiry(client, ns):
    client.cache_put(ns, "c", "short", b"x", ttl=0.3)
    client.cache_put(ns, "c", "forever", b"y")
    wait_until(lambda: client.cache_get(ns, "c", "short") is None, 10, "TTL expiry")
    assert client.cache_get(ns, "c", "forever").value == b"y"


def test_cache_default_ttl(client, ns):
    client.create_cache(ns, "ttlc", default_ttl=0.3)
    client.cache_put(ns, "ttlc", "k", b"x")
    wait_until(lambda: client.cache_get(ns, "ttlc", "k") is None, 10, "default TTL expiry")


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
