"""Felix: low-latency pub/sub streams, work queues and cache over QUIC.

``felix.Client`` (blocking) and ``felix.AsyncClient`` (asyncio) over the one Rust client core
(``felix._native``). Errors are ``felix.FelixError`` subclasses keyed by stable codes.
"""

from __future__ import annotations

import os as _os

from . import _native
from .cache import CacheValue
from .client import AsyncClient, Client
from .error import (
    AlreadyExistsError,
    AuthError,
    ClosedError,
    ConflictError,
    ConnectionError,
    FelixError,
    ForbiddenError,
    ForkedError,
    FrameTooLargeError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OperationCancelledError,
    OverloadedError,
    ProtocolError,
    QuotaExceededError,
    SlowConsumerError,
    StorageError,
    TimeoutError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedError,
    error_class,
)
from .publish import AckMode, AsyncPublisher, Publisher
from .queue import AsyncConsumer, Consumer, DeadLetter, QueueMessage
from .subscribe import AsyncSubscription, Event, Gap, Subscription

__version__: str = _native.__version__
#: Identifies this package (the Felix broker client), as opposed to unrelated PyPI packages
#: that also install a ``felix`` module.
FELIX_BROKER_CLIENT: str = _native.MARKER

if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_native.after_fork_in_child)

__all__ = [
    "Client", "AsyncClient", "Publisher", "AsyncPublisher", "Subscription",
    "AsyncSubscription", "Consumer", "AsyncConsumer", "AckMode", "Event", "Gap",
    "QueueMessage", "DeadLetter", "CacheValue", "FelixError", "InvalidArgumentError",
    "FrameTooLargeError", "NotFoundError", "AlreadyExistsError", "ConflictError", "AuthError",
    "UnauthorizedError", "ForbiddenError", "OverloadedError", "UnsupportedError",
    "TimeoutError", "UnavailableError", "ConnectionError", "ProtocolError",
    "SlowConsumerError", "OperationCancelledError", "ClosedError", "ForkedError",
    "InternalError", "QuotaExceededError", "StorageError", "error_class", "FELIX_BROKER_CLIENT",
    "__version__",
]  # fmt: skip
