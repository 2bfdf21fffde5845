"""Publishing: ack modes and the batching publisher (sync and asyncio)."""

from __future__ import annotations

import enum
from typing import Any, Optional, Union

from . import _aio, _native

__all__ = ["AckMode", "Publisher", "AsyncPublisher", "Payload"]

Payload = Union[bytes, bytearray, memoryview]


class AckMode(str, enum.Enum):
    """What a publish waits for."""

    NONE = "none"
    """Returns once the batch is written (no broker acknowledgement)."""
    PER_BATCH = "per_batch"
    """One acknowledgement for the whole batch (default)."""
    PER_MESSAGE = "per_message"
    """One acknowledgement per message."""


def ack_value(ack: Union[AckMode, str]) -> str:
    if isinstance(ack, AckMode):
        return ack.value
    if isinstance(ack, str):
        return ack
    raise TypeError(f"ack must be an AckMode or str, not {type(ack).__name__}")


class Publisher:
    """A batching publisher bound to one stream (``Client.publisher``).

    ``publish`` waits for the acknowledgement of the batch holding the message; ``send`` only
    queues it (concurrent messages batch together) and ``flush`` waits for everything sent.
    Leaving a ``with`` block flushes.
    """

    def __init__(self, native: _native.Publisher) -> None:
        self._n = native

    def publish(self, payload: Payload) -> None:
        self._n.publish(None, payload)

    def send(self, payload: Payload) -> None:
        self._n.send(None, payload)

    def flush(self) -> int:
        """Waits for every message sent so far; returns how many; raises the first error."""
        return self._n.flush(None)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.flush()


class AsyncPublisher:
    """The asyncio flavour of :class:`Publisher` (``AsyncClient.publisher``)."""

    def __init__(self, native: _native.Publisher, completer: _native.Completer) -> None:
        self._n = native
        self._c = completer

    async def publish(self, payload: Payload) -> None:
        await _aio.op(self._c, self._n.publish(self._c, payload))

    async def send(self, payload: Payload) -> None:
        await _aio.op(self._c, self._n.send(self._c, payload))

    async def flush(self) -> int:
        return await _aio.op(self._c, self._n.flush(self._c))

    async def __aenter__(self) -> "AsyncPublisher":
        return self

    async def __aexit__(self, exc_type: Optional[type], *_: Any) -> None:
        if exc_type is None:
            await self.flush()
