"""How an asyncio call waits on the native core (see ``src/runtime.rs``).

The native method spawns the operation on the core's runtime thread and returns
``(future, token)``; the future is resolved on the event loop by ``Completer.drain``, which the
loop calls when the completer's socket becomes readable. If the awaiting task is cancelled, the
core operation is aborted too.
"""

from __future__ import annotations

import asyncio
from typing import Any, Tuple

from . import _native


async def op(completer: _native.Completer, pair: Tuple["asyncio.Future[Any]", int]) -> Any:
    fut, token = pair
    try:
        return await fut
    except asyncio.CancelledError:
        completer.abort(token)
        raise


def attach(loop: asyncio.AbstractEventLoop) -> _native.Completer:
    """A completer whose completions are delivered on ``loop``."""
    completer = _native.Completer(loop)
    loop.add_reader(completer.fileno(), completer.drain)
    return completer


def detach(loop: asyncio.AbstractEventLoop, completer: _native.Completer) -> None:
    """Fails what is still in flight with ``ClosedError`` and stops watching the socket."""
    completer.close()
    if not loop.is_closed():
        loop.remove_reader(completer.fileno())
