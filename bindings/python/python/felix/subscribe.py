"""Subscriptions: ``for event in sub`` (sync) and ``async for event in sub`` (asyncio).

A subscription resumes by itself after a reconnect from the offset after the last event it
delivered; offsets the broker no longer held are reported by ``take_gaps()``. One reader at a
time per subscription.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, List, Optional, Union

from . import _aio, _native
from ._native import Event, Gap
from .error import TimeoutError

__all__ = ["Event", "Gap", "Start", "Subscription", "AsyncSubscription"]

Start = Union[str, int]
"""``"latest"`` (default), ``"earliest"``, or an offset."""


class Subscription:
    """A live subscription (``Client.subscribe``). Iterate it; ``close()`` or leave ``with``."""

    def __init__(self, native: _native.Subscription) -> None:
        self._n = native

    def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, ``None`` once the subscription has ended.

        Raises ``felix.TimeoutError`` if ``timeout`` (seconds) passes first.
        """
        ev = self._n.try_next()
        if ev is not None:
            return ev
        return self._n.next(None, timeout)

    def try_next(self) -> Optional[Event]:
        """The next buffered event without waiting, or ``None``."""
        return self._n.try_next()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        ev = self.next()
        if ev is None:
            raise StopIteration
        return ev

    def iter(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Iterates events; stops when the subscription ends or none arrives for ``timeout`` s."""
        while True:
            try:
                ev = self.next(timeout)
            except TimeoutError:
                return
            if ev is None:
                return
            yield ev

    def take_gaps(self) -> List[Gap]:
        return self._n.take_gaps()

    @property
    def ended(self) -> bool:
        return self._n.ended

    def close(self) -> None:
        self._n.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class AsyncSubscription:
    """The asyncio flavour of :class:`Subscription` (``await AsyncClient.subscribe(...)``)."""

    def __init__(self, native: _native.Subscription, completer: _native.Completer) -> None:
        self._n = native
        self._c = completer

    async def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        ev = self._n.try_next()
        if ev is not None:
            return ev
        return await _aio.op(self._c, self._n.next(self._c, timeout))

    def try_next(self) -> Optional[Event]:
        return self._n.try_next()

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Event:
        ev = self._n.try_next()
        if ev is None:
            ev = await _aio.op(self._c, self._n.next(self._c, None))
            if ev is None:
                raise StopAsyncIteration
        return ev

    async def iter(self, timeout: Optional[float] = None) -> AsyncIterator[Event]:
        """Iterates events; stops when the subscription ends or none arrives for ``timeout`` s."""
        while True:
            try:
                ev = await self.next(timeout)
            except TimeoutError:
                return
            if ev is None:
                return
            yield ev

    def take_gaps(self) -> List[Gap]:
        return self._n.take_gaps()

    @property
    def ended(self) -> bool:
        return self._n.ended

    def close(self) -> None:
        self._n.close()

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.close()
