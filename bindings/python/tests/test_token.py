"""`token=` as a callable (sync and asyncio): called before connecting and used (the dev
broker accepts any token, so what is checked is that the callable ran and calls succeed); one
that raises surfaces as `felix.UnauthorizedError` with its message."""

import threading

import pytest

import felix


def test_callable_token_is_called_and_used(broker, ns):
    calls = []

    def token() -> str:
        calls.append(threading.get_ident())
        return "token-from-python"

    with broker.client(token=token) as c:
        assert len(calls) == 1
        # Called off the calling thread (on a Felix thread), never on the I/O path.
        assert calls[0] != threading.get_ident()
        c.cache_put(ns, "c", "k", b"v")
        assert c.cache_get(ns, "c", "k").value == b"v"


def test_failing_token_callable_is_unauthorized(broker):
    def token() -> str:
        raise RuntimeError("vault is sealed")

    with pytest.raises(felix.UnauthorizedError, match="vault is sealed"):
        broker.client(token=token)
    with pytest.raises(felix.UnauthorizedError):
        broker.client(token=lambda: 42)  # not a str


def test_token_options_are_checked(broker):
    with pytest.raises(felix.InvalidArgumentError, match="go together"):
        broker.client(client_cert_file="/nonexistent/cert.pem")
    with pytest.raises(felix.InvalidArgumentError, match="token_exchange_url"):
        broker.client(subject_token="id")


async def test_async_callable_token_is_called_and_used(broker, ns):
    calls = []

    def token() -> str:
        calls.append(1)
        return "token-from-python"

    c = await broker.aclient(token=token)
    try:
        assert calls == [1]
        await c.cache_put(ns, "c", "k", b"v")
        assert (await c.cache_get(ns, "c", "k")).value == b"v"
    finally:
        await c.close()


async def test_async_failing_token_callable_is_unauthorized(broker):
    def token() -> str:
        raise RuntimeError("identity provider down")

    with pytest.raises(felix.UnauthorizedError, match="identity provider down"):
        await broker.aclient(token=token)
