"""``Client`` (blocking) and ``AsyncClient`` (asyncio) over the one Rust client core.

Both take the same connection options and offer the same calls; the async ones are awaitable,
and cancelling the awaiting task cancels the operation in the core. Blocking calls release the
GIL. A client is bound to the process that made it: after ``os.fork()`` the child's calls
raise ``felix.ForkedError`` (make a new client in the child).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import _aio, _native
from .cache import CacheValue
from .publish import AckMode, AsyncPublisher, Payload, Publisher, ack_value
from .queue import AsyncConsumer, Consumer
from .subscribe import AsyncSubscription, Start, Subscription

__all__ = ["Client", "AsyncClient"]

Addresses = Union[str, Sequence[str]]
PathLike = Union[str, "os.PathLike[str]"]
#: A static token, or a callable returning a fresh one (called before connecting and again
#: before each token expires, on a Felix thread: it may block, and must not need the event
#: loop). An exception it raises becomes ``felix.UnauthorizedError`` (at connect, or for calls
#: once the current token has expired unrefreshed).
Token = Union[str, Callable[[], str], None]


def _options(
    addresses: Addresses,
    ca_file: Optional[PathLike],
    ca_pem: Optional[Union[bytes, str]],
    insecure_dev: bool,
    server_name: str,
    tenant: str,
    token: "Token",
    connections: int,
    streams_per_connection: int,
    connect_timeout: float,
    request_timeout: float,
    reconnect_initial: float,
    reconnect_max: float,
    subscription_buffer: int,
    security: Dict[str, Any],
) -> Dict[str, Any]:
    if isinstance(addresses, str):
        addrs = [a.strip() for a in addresses.split(",") if a.strip()]
    else:
        addrs = list(addresses)
    if isinstance(ca_pem, str):
        ca_pem = ca_pem.encode()
    return dict(
        addresses=addrs,
        ca_file=None if ca_file is None else os.fspath(ca_file),
        ca_pem=None if ca_pem is None else bytes(ca_pem),
        insecure_dev=insecure_dev,
        server_name=server_name,
        tenant=tenant,
        token=token,
        connections=connections,
        streams_per_connection=streams_per_connection,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        reconnect_initial=reconnect_initial,
        reconnect_max=reconnect_max,
        subscription_buffer=subscription_buffer,
        token_exchange_url=security["token_exchange_url"],
        subject_token=security["subject_token"],
        subject_token_file=_path(security["subject_token_file"]),
        token_refresh_interval=security["token_refresh_interval"],
        client_cert_file=_path(security["client_cert_file"]),
        client_key_file=_path(security["client_key_file"]),
        token_exchange_ca_file=_path(security["token_exchange_ca_file"]),
    )


def _path(p: Optional[PathLike]) -> Optional[str]:
    return None if p is None else os.fspath(p)


class Client:
    """A blocking client: a pool of QUIC connections to a Felix broker.

    ``addresses``: ``"host:port"``, a comma-separated list or a sequence (tried in order).
    TLS: ``ca_file`` (PEM path; default ``<tmp>/felix-dev-<uid>/ca.pem``, the dev broker's CA),
    ``ca_pem`` (PEM bytes) or ``insecure_dev=True`` (no verification: development only).
    ``server_name``: name on the broker's certificate. ``tenant``/``token``: identity; ``token``
    is a string or a callable returning a fresh token (refreshed before it expires).
    ``token_exchange_url``: exchange an OIDC token (``token``, ``subject_token`` or the file
    ``subject_token_file``, read at each exchange) at the control plane for Felix tokens;
    ``token_exchange_ca_file``: PEM CA(s) of a control plane with a private CA (default: the
    public web roots).
    ``token_refresh_interval``: refresh at least this often (seconds). ``client_cert_file`` and
    ``client_key_file``: PEM certificate and key for mTLS.
    ``connections`` x ``streams_per_connection``: the pool. Timeouts are seconds.
    ``subscription_buffer``: events buffered per subscription (backpressure beyond).

    Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        addresses: Addresses = "127.0.0.1:5000",
        *,
        ca_file: Optional[PathLike] = None,
        ca_pem: Optional[Union[bytes, str]] = None,
        insecure_dev: bool = False,
        server_name: str = "localhost",
        tenant: str = "default",
        token: Token = None,
        connections: int = 1,
        streams_per_connection: int = 4,
        connect_timeout: float = 5.0,
        request_timeout: float = 10.0,
        reconnect_initial: float = 0.05,
        reconnect_max: float = 5.0,
        subscription_buffer: int = 1024,
        token_exchange_url: Optional[str] = None,
        subject_token: Optional[str] = None,
        subject_token_file: Optional[PathLike] = None,
        token_refresh_interval: Optional[float] = None,
        client_cert_file: Optional[PathLike] = None,
        client_key_file: Optional[PathLike] = None,
        token_exchange_ca_file: Optional[PathLike] = None,
    ) -> None:
        opts = _options(
            addresses, ca_file, ca_pem, insecure_dev, server_name, tenant, token, connections,
            streams_per_connection, connect_timeout, request_timeout, reconnect_initial,
            reconnect_max, subscription_buffer,
            dict(token_exchange_url=token_exchange_url, subject_token=subject_token,
                 subject_token_file=subject_token_file,
                 token_refresh_interval=token_refresh_interval,
                 client_cert_file=client_cert_file, client_key_file=client_key_file,
                 token_exchange_ca_file=token_exchange_ca_file),
        )  # fmt: skip
        self._n: _native.Client = _native.Client.connect(None, **opts)

    # lifecycle
    def close(self) -> None:
        """Closes every connection; later calls raise ``felix.ClosedError``."""
        self._n.close()

    @property
    def closed(self) -> bool:
        return self._n.closed

    @property
    def tenant(self) -> str:
        return self._n.tenant

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def ping(self) -> float:
        """Round trip to the broker, in seconds."""
        return self._n.ping(None)

    # publish
    def publish(self, namespace: str, stream: str, payload: Payload) -> None:
        """Publishes one message and waits for the broker's acknowledgement."""
        self._n.publish(None, namespace, stream, payload)

    def publish_batch(
        self,
        namespace: str,
        stream: str,
        payloads: Sequence[Payload],
        ack: Union[AckMode, str] = AckMode.PER_BATCH,
    ) -> None:
        """Publishes messages atomically and in order (contiguous offsets)."""
        self._n.publish_batch(None, namespace, stream, payloads, ack_value(ack))

    def publisher(
        self,
        namespace: str,
        stream: str,
        *,
        max_batch_messages: int = 256,
        max_batch_bytes: int = 256 * 1024,
        max_delay: float = 0.0,
        ack: Union[AckMode, str] = AckMode.PER_BATCH,
        queue_capacity: int = 4096,
    ) -> Publisher:
        """A batching publisher for one stream."""
        return Publisher(
            self._n.publisher(
                namespace, stream, max_batch_messages=max_batch_messages,
                max_batch_bytes=max_batch_bytes, max_delay=max_delay, ack=ack_value(ack),
                queue_capacity=queue_capacity,
            )
        )  # fmt: skip

    # subscribe
    def subscribe(self, namespace: str, stream: str, start: Start = "latest") -> Subscription:
        """Subscribes to a stream, or a ``*`` / ``>`` pattern; returns once accepted."""
        return Subscription(self._n.subscribe(None, namespace, stream, start))

    def create_stream(
        self,
        namespace: str,
        stream: str,
        *,
        max_records: Optional[int] = None,
        max_bytes: Optional[int] = None,
        subscriber_buffer: Optional[int] = None,
        full_policy: Optional[str] = None,
    ) -> None:
        """Creates a stream with settings (idempotent for equal settings)."""
        self._n.create_stream(
            None, namespace, stream, max_records=max_records, max_bytes=max_bytes,
            subscriber_buffer=subscriber_buffer, full_policy=full_policy,
        )  # fmt: skip

    # queue
    def consumer(self, namespace: str, stream: str, group: str) -> Consumer:
        """A consumer in ``group`` on ``namespace/stream``."""
        return Consumer(self._n.consumer(namespace, stream, group))

    def create_group(
        self,
        namespace: str,
        stream: str,
        group: str,
        *,
        from_latest: bool = False,
        ack_timeout: Optional[float] = None,
        max_deliveries: Optional[int] = None,
    ) -> None:
        """Creates a consumer group; an existing group is left unchanged."""
        self._n.create_group(
            None, namespace, stream, group, from_latest=from_latest,
            ack_timeout=ack_timeout, max_deliveries=max_deliveries,
        )  # fmt: skip

    # cache
    def cache_get(self, namespace: str, cache: str, key: str) -> Optional[CacheValue]:
        """Reads a key; ``None`` when missing or expired."""
        return self._n.cache_get(None, namespace, cache, key)

    def cache_put(
        self, namespace: str, cache: str, key: str, value: Payload, ttl: Optional[float] = None
    ) -> int:
        """Writes a key (``ttl`` seconds; ``None``: the cache's default); returns the version."""
        return self._n.cache_put(None, namespace, cache, key, value, ttl)

    def cache_put_if(
        self,
        namespace: str,
        cache: str,
        key: str,
        value: Payload,
        *,
        ttl: Optional[float] = None,
        if_absent: bool = False,
        if_version: Optional[int] = None,
    ) -> int:
        """Writes only if no live entry exists (``if_absent``) or the live entry has version
        ``if_version`` (compare-and-set); otherwise raises ``felix.ConflictError``."""
        return self._n.cache_put(None, namespace, cache, key, value, ttl, if_absent, if_version)

    def cache_delete(self, namespace: str, cache: str, key: str) -> bool:
        """Deletes a key; returns whether a live entry existed."""
        return self._n.cache_delete(None, namespace, cache, key)

    def cache_get_many(
        self, namespace: str, cache: str, keys: Sequence[str]
    ) -> List[Optional[CacheValue]]:
        """Reads several keys in one round trip; results in the order of ``keys``."""
        return self._n.cache_get_many(None, namespace, cache, list(keys))

    def create_cache(
        self,
        namespace: str,
        cache: str,
        *,
        max_bytes: Optional[int] = None,
        default_ttl: Optional[float] = None,
    ) -> None:
        """Creates a cache with a byte budget and default TTL (seconds)."""
        self._n.create_cache(None, namespace, cache, max_bytes=max_bytes, default_ttl=default_ttl)


class AsyncClient:
    """The asyncio client: ``client = await AsyncClient.connect(...)`` with the options of
    :class:`Client`. Every call is awaitable; use ``async with`` or ``await client.close()``.

    A client belongs to the event loop that connected it. Completions reach the loop through
    one socket watched with ``loop.add_reader`` (no thread per call).
    """

    def __init__(
        self,
        native: _native.Client,
        completer: _native.Completer,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._n = native
        self._c = completer
        self._loop = loop

    @classmethod
    async def connect(
        cls,
        addresses: Addresses = "127.0.0.1:5000",
        *,
        ca_file: Optional[PathLike] = None,
        ca_pem: Optional[Union[bytes, str]] = None,
        insecure_dev: bool = False,
        server_name: str = "localhost",
        tenant: str = "default",
        token: Token = None,
        connections: int = 1,
        streams_per_connection: int = 4,
        connect_timeout: float = 5.0,
        request_timeout: float = 10.0,
        reconnect_initial: float = 0.05,
        reconnect_max: float = 5.0,
        subscription_buffer: int = 1024,
        token_exchange_url: Optional[str] = None,
        subject_token: Optional[str] = None,
        subject_token_file: Optional[PathLike] = None,
        token_refresh_interval: Optional[float] = None,
        client_cert_file: Optional[PathLike] = None,
        client_key_file: Optional[PathLike] = None,
        token_exchange_ca_file: Optional[PathLike] = None,
    ) -> "AsyncClient":
        opts = _options(
            addresses, ca_file, ca_pem, insecure_dev, server_name, tenant, token, connections,
            streams_per_connection, connect_timeout, request_timeout, reconnect_initial,
            reconnect_max, subscription_buffer,
            dict(token_exchange_url=token_exchange_url, subject_token=subject_token,
                 subject_token_file=subject_token_file,
                 token_refresh_interval=token_refresh_interval,
                 client_cert_file=client_cert_file, client_key_file=client_key_file,
                 token_exchange_ca_file=token_exchange_ca_file),
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        completer = _aio.attach(loop)
        try:
            native = await _aio.op(completer, _native.Client.connect(completer, **opts))
        except BaseException:
            _aio.detach(loop, completer)
            raise
        return cls(native, completer, loop)

    async def close(self) -> None:
        """Closes every connection; calls in flight and later raise ``felix.ClosedError``."""
        self._n.close()
        # Calls in flight end with `closed` on their own; give them a moment to be delivered.
        for _ in range(100):
            if self._c.pending_count() == 0:
                break
            await asyncio.sleep(0.001)
        _aio.detach(self._loop, self._c)

    @property
    def closed(self) -> bool:
        return self._n.closed

    @property
    def tenant(self) -> str:
        return self._n.tenant

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()

    async def ping(self) -> float:
        return await _aio.op(self._c, self._n.ping(self._c))

    async def publish(self, namespace: str, stream: str, payload: Payload) -> None:
        await _aio.op(self._c, self._n.publish(self._c, namespace, stream, payload))

    async def publish_batch(
        self,
        namespace: str,
        stream: str,
        payloads: Sequence[Payload],
        ack: Union[AckMode, str] = AckMode.PER_BATCH,
    ) -> None:
        await _aio.op(
            self._c, self._n.publish_batch(self._c, namespace, stream, payloads, ack_value(ack))
        )

    def publisher(
        self,
        namespace: str,
        stream: str,
        *,
        max_batch_messages: int = 256,
        max_batch_bytes: int = 256 * 1024,
        max_delay: float = 0.0,
        ack: Union[AckMode, str] = AckMode.PER_BATCH,
        queue_capacity: int = 4096,
    ) -> AsyncPublisher:
        return AsyncPublisher(
            self._n.publisher(
                namespace, stream, max_batch_messages=max_batch_messages,
                max_batch_bytes=max_batch_bytes, max_delay=max_delay, ack=ack_value(ack),
                queue_capacity=queue_capacity,
            ),
            self._c,
        )  # fmt: skip

    async def subscribe(
        self, namespace: str, stream: str, start: Start = "latest"
    ) -> AsyncSubscription:
        native = await _aio.op(self._c, self._n.subscribe(self._c, namespace, stream, start))
        return AsyncSubscription(native, self._c)

    async def create_stream(
        self,
        namespace: str,
        stream: str,
        *,
        max_records: Optional[int] = None,
        max_bytes: Optional[int] = None,
        subscriber_buffer: Optional[int] = None,
        full_policy: Optional[str] = None,
    ) -> None:
        await _aio.op(
            self._c,
            self._n.create_stream(
                self._c, namespace, stream, max_records=max_records, max_bytes=max_bytes,
                subscriber_buffer=subscriber_buffer, full_policy=full_policy,
            ),
        )  # fmt: skip

    def consumer(self, namespace: str, stream: str, group: str) -> AsyncConsumer:
        return AsyncConsumer(self._n.consumer(namespace, stream, group), self._c)

    async def create_group(
        self,
        namespace: str,
        stream: str,
        group: str,
        *,
        from_latest: bool = False,
        ack_timeout: Optional[float] = None,
        max_deliveries: Optional[int] = None,
    ) -> None:
        await _aio.op(
            self._c,
            self._n.create_group(
                self._c, namespace, stream, group, from_latest=from_latest,
                ack_timeout=ack_timeout, max_deliveries=max_deliveries,
            ),
        )  # fmt: skip

    async def cache_get(self, namespace: str, cache: str, key: str) -> Optional[CacheValue]:
        return await _aio.op(self._c, self._n.cache_get(self._c, namespace, cache, key))

    async def cache_put(
        self, namespace: str, cache: str, key: str, value: Payload, ttl: Optional[float] = None
    ) -> int:
        return await _aio.op(
            self._c, self._n.cache_put(self._c, namespace, cache, key, value, ttl)
        )

    async def cache_put_if(
        self,
        namespace: str,
        cache: str,
        key: str,
        value: Payload,
        *,
        ttl: Optional[float] = None,
        if_absent: bool = False,
        if_version: Optional[int] = None,
    ) -> int:
        return await _aio.op(
            self._c,
            self._n.cache_put(self._c, namespace, cache, key, value, ttl, if_absent, if_version),
        )

    async def cache_delete(self, namespace: str, cache: str, key: str) -> bool:
        return await _aio.op(self._c, self._n.cache_delete(self._c, namespace, cache, key))

    async def cache_get_many(
        self, namespace: str, cache: str, keys: Sequence[str]
    ) -> List[Optional[CacheValue]]:
        return await _aio.op(
            self._c, self._n.cache_get_many(self._c, namespace, cache, list(keys))
        )

    async def create_cache(
        self,
        namespace: str,
        cache: str,
        *,
        max_bytes: Optional[int] = None,
        default_ttl: Optional[float] = None,
    ) -> None:
        await _aio.op(
            self._c,
            self._n.create_cache(
                self._c, namespace, cache, max_bytes=max_bytes, default_ttl=default_ttl
            ),
        )
