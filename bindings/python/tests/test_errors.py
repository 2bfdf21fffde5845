"""Bad inputs give the right exception class."""

import pytest

import felix
from conftest import Broker, free_port


@pytest.mark.parametrize(
    "call",
    [
        lambda c, ns: c.publish(ns, "s", "text is not bytes"),
        lambda c, ns: c.publish(ns, "s", 42),
        lambda c, ns: c.publish(ns, 7, b"x"),
        lambda c, ns: c.publish_batch(ns, "s", b"not a list"),
        lambda c, ns: c.publish_batch(ns, "s", [b"ok", None]),
        lambda c, ns: c.cache_get(ns, "c", 1),
        lambda c, ns: c.cache_put(ns, "c", "k", {"a": 1}),
        lambda c, ns: c.subscribe(ns, "s", start=1.5),
        lambda c, ns: c.consumer(ns, "s", "g").ack(["1"]),
    ],
)
def test_wrong_types_raise_type_error(client, ns, call):
    with pytest.raises(TypeError):
        call(client, ns)


@pytest.mark.parametrize(
    "call",
    [
        lambda c, ns: c.publish(ns, "bad name!", b"x"),
        lambda c, ns: c.publish("bad ns", "s", b"x"),
        lambda c, ns: c.publish(ns, "orders.*", b"x"),
        lambda c, ns: c.subscribe(ns, "ord*"),
        lambda c, ns: c.cache_put(ns, "bad cache", "k", b"v"),
        lambda c, ns: c.consumer(ns, "s", "bad group").pull(1),
        lambda c, ns: c.publish_batch(ns, "s", []),
        lambda c, ns: c.cache_put(ns, "c", "k", b"v", ttl=0),
        lambda c, ns: c.cache_put(ns, "c", "k", b"v", ttl=-1),
        lambda c, ns: c.publish_batch(ns, "s", [b"x"], ack="sometimes"),
        lambda c, ns: c.subscribe(ns, "s", start="middle"),
    ],
)
def test_invalid_arguments(client, ns, call):
    with pytest.raises(felix.InvalidArgumentError) as e:
        call(client, ns)
    assert e.value.code == "invalid_argument" and not e.value.retryable
    client.ping()  # the connection keeps working


def test_oversized_payload(client, ns):
    with pytest.raises(felix.FrameTooLargeError) as e:
        client.publish(ns, "big", b"x" * (17 * 1024 * 1024))
    assert e.value.code == "frame_too_large"
    client.publish(ns, "big", b"x" * (1024 * 1024))


def test_unreachable_broker_is_unavailable(tmp_path, broker):
    # QUIC over UDP gets no "connection refused": the core reports the connect deadline
    # (`timeout`) or `unavailable`; both are retryable.
    with pytest.raises((felix.UnavailableError, felix.TimeoutError)) as e:
        felix.Client(f"127.0.0.1:{free_port()}", ca_file=broker.ca_file, connect_timeout=0.5)
    assert e.value.retryable


def test_wrong_token_is_unauthorized(monkeypatch):
    # Tokens reach the broker through its environment, never its command line.
    monkeypatch.setenv("FELIX_AUTH_TOKENS", "default:secret-a,default:secret-b,acme:acme-token")
    b = Broker()
    try:
        with pytest.raises(felix.AuthError) as e:
            b.client(token="wrong")
        assert e.value.code == "unauthorized"
        # A valid token of another tenant opens nothing here.
        with pytest.raises(felix.AuthError) as e:
            b.client(token="acme-token")
        assert e.value.code == "unauthorized"
        with b.client(token="secret-b") as c:
            c.ping()
    finally:
        b.stop()


def test_not_found_without_auto_create(ns):
    b = Broker(["--auto-create", "false"])
    try:
        with b.client() as c, pytest.raises(felix.NotFoundError):
            c.publish(ns, "missing", b"x")
    finally:
        b.stop()


def test_closed_client(broker):
    c = broker.client()
    c.close()
    assert c.closed
    with pytest.raises(felix.ClosedError):
        c.ping()


def test_bad_options(broker):
    with pytest.raises(felix.InvalidArgumentError):
        broker.client(connections=0)
    with pytest.raises(felix.InvalidArgumentError):
        broker.client(request_timeout=float("nan"))
    with pytest.raises(felix.InvalidArgumentError):
        felix.Client(broker.address, ca_file=broker.ca_file, insecure_dev=True)
