"""Work queues: a consumer in a consumer group leases messages (pull), then acks, nacks
(redelivery after a delay), or extends them; messages past ``max_deliveries`` become dead
letters, which can be listed, redriven or discarded."""

from __future__ import annotations

from typing import AsyncIterator, Iterable, Iterator, List, Optional, Union

from . import _aio, _native
from ._native import DeadLetter, QueueMessage

__all__ = ["QueueMessage", "DeadLetter", "Consumer", "AsyncConsumer", "Offsets"]

Offsets = Union[int, QueueMessage, Iterable[Union[int, QueueMessage]]]
"""An offset, a message, or several of either."""


def _to_offsets(o: Offsets) -> List[int]:
    if isinstance(o, bool):
        raise TypeError("offsets must be ints or QueueMessages, not bool")
    if isinstance(o, int):
        return [o]
    if isinstance(o, QueueMessage):
        return [o.offset]
    if isinstance(o, (str, bytes)):
        raise TypeError(f"offsets must be ints or QueueMessages, not {type(o).__name__}")
    out = []
    for x in o:
        if isinstance(x, QueueMessage):
            out.append(x.offset)
        elif isinstance(x, int) and not isinstance(x, bool):
            out.append(x)
        else:
            raise TypeError(f"offsets must be ints or QueueMessages, not {type(x).__name__}")
    return out


def _opt(o: Optional[Offsets]) -> Optional[List[int]]:
    return None if o is None else _to_offsets(o)


class Consumer:
    """A member of a consumer group (``Client.consumer``).

    ``for msg in consumer`` pulls in batches (long poll) forever; ``messages()`` takes limits.
    """

    def __init__(self, native: _native.Consumer) -> None:
        self._n = native

    def pull(self, max: int = 100, wait: float = 0.0) -> List[QueueMessage]:
        """Takes up to ``max`` messages, waiting up to ``wait`` seconds for the first."""
        return self._n.pull(None, max, wait)

    def ack(self, offsets: Offsets) -> int:
        """Acknowledges; returns how many were still leased (and are now done)."""
        return self._n.ack(None, _to_offsets(offsets))

    def nack(self, offsets: Offsets, delay: float = 0.0) -> int:
        """Returns messages for redelivery after ``delay`` seconds."""
        return self._n.nack(None, _to_offsets(offsets), delay)

    def extend(self, offsets: Offsets, by: float) -> int:
        """Extends leases to ``by`` seconds from now."""
        return self._n.extend(None, _to_offsets(offsets), by)

    def dead_letters(self, max: int = 100) -> List[DeadLetter]:
        return self._n.dead_letters(None, max)

    def redrive(self, offsets: Optional[Offsets] = None) -> int:
        """Makes dead letters deliverable again (all when ``offsets`` is ``None``)."""
        return self._n.redrive(None, _opt(offsets))

    def discard(self, offsets: Optional[Offsets] = None) -> int:
        """Drops dead letters (all when ``offsets`` is ``None``)."""
        return self._n.discard(None, _opt(offsets))

    def messages(
        self, batch: int = 100, wait: float = 1.0, idle_timeout: Optional[float] = None
    ) -> Iterator[QueueMessage]:
        """Yields leased messages one by one; stops after ``idle_timeout`` s with none."""
        import time

        idle_since = time.monotonic()
        while True:
            got = self.pull(batch, wait)
            if got:
                idle_since = time.monotonic()
                yield from got
            elif idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return

    def __iter__(self) -> Iterator[QueueMessage]:
        return self.messages()


class AsyncConsumer:
    """The asyncio flavour of :class:`Consumer`; ``async for msg in consumer``."""

    def __init__(self, native: _native.Consumer, completer: _native.Completer) -> None:
        self._n = native
        self._c = completer

    async def pull(self, max: int = 100, wait: float = 0.0) -> List[QueueMessage]:
        return await _aio.op(self._c, self._n.pull(self._c, max, wait))

    async def ack(self, offsets: Offsets) -> int:
        return await _aio.op(self._c, self._n.ack(self._c, _to_offsets(offsets)))

    async def nack(self, offsets: Offsets, delay: float = 0.0) -> int:
        return await _aio.op(self._c, self._n.nack(self._c, _to_offsets(offsets), delay))

    async def extend(self, offsets: Offsets, by: float) -> int:
        return await _aio.op(self._c, self._n.extend(self._c, _to_offsets(offsets), by))

    async def dead_letters(self, max: int = 100) -> List[DeadLetter]:
        return await _aio.op(self._c, self._n.dead_letters(self._c, max))

    async def redrive(self, offsets: Optional[Offsets] = None) -> int:
        return await _aio.op(self._c, self._n.redrive(self._c, _opt(offsets)))

    async def discard(self, offsets: Optional[Offsets] = None) -> int:
        return await _aio.op(self._c, self._n.discard(self._c, _opt(offsets)))

    async def messages(
        self, batch: int = 100, wait: float = 1.0, idle_timeout: Optional[float] = None
    ) -> AsyncIterator[QueueMessage]:
        """Yields leased messages one by one; stops after ``idle_timeout`` s with none."""
        import time

        idle_since = time.monotonic()
        while True:
            got = await self.pull(batch, wait)
            if got:
                idle_since = time.monotonic()
                for m in got:
                    yield m
            elif idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return

    def __aiter__(self) -> AsyncIterator[QueueMessage]:
        return self.messages()
