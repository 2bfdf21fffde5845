"""Exceptions: one class per stable error code of the Felix core.

Every exception raised by Felix derives from :class:`FelixError` and carries the core's stable
code (the same in every language, ``docs/wire-protocol.md`` section 6):

- ``code``: the snake_case string (``"not_found"``, ``"overloaded"``, ...);
- ``code_number``: its stable number;
- ``retryable``: whether the same call may succeed later;
- ``message``: the human-readable part (not part of the contract).

Wrong Python types raise the built-in :class:`TypeError`, not a ``FelixError``.
"""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Type

__all__ = [
    "FelixError",
    "InvalidArgumentError",
    "FrameTooLargeError",
    "NotFoundError",
    "AlreadyExistsError",
    "ConflictError",
    "AuthError",
    "UnauthorizedError",
    "ForbiddenError",
    "OverloadedError",
    "UnsupportedError",
    "TimeoutError",
    "UnavailableError",
    "ConnectionError",
    "ProtocolError",
    "SlowConsumerError",
    "OperationCancelledError",
    "ClosedError",
    "ForkedError",
    "InternalError",
    "QuotaExceededError",
    "StorageError",
]


class FelixError(Exception):
    """Base class of every Felix error."""

    code: str = "internal"
    code_number: int = 16
    retryable: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        code: Optional[str] = None,
        code_number: Optional[int] = None,
        retryable: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if code_number is not None:
            self.code_number = code_number
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgumentError(FelixError, ValueError):
    """A request field is malformed or out of range (names, sizes, durations)."""

    code, code_number = "invalid_argument", 1


class FrameTooLargeError(InvalidArgumentError):
    """A payload or request is larger than the broker accepts."""

    code, code_number = "frame_too_large", 8


class NotFoundError(FelixError, LookupError):
    """The stream, cache, group, key or message does not exist."""

    code, code_number = "not_found", 2


class AlreadyExistsError(FelixError):
    """The resource already exists with different settings."""

    code, code_number = "already_exists", 3


class ConflictError(FelixError):
    """A condition (put-if-absent, compare-and-set version) did not hold."""

    code, code_number = "conflict", 4


class AuthError(FelixError):
    """Authentication or authorization failed."""


class UnauthorizedError(AuthError):
    """No valid credentials were presented."""

    code, code_number = "unauthorized", 5


class ForbiddenError(AuthError):
    """The credentials do not grant this operation."""

    code, code_number = "forbidden", 6


class OverloadedError(FelixError):
    """A limit was reached; retry later."""

    code, code_number, retryable = "overloaded", 7, True


class UnsupportedError(FelixError):
    """The broker does not support this operation."""

    code, code_number = "unsupported", 9


class TimeoutError(FelixError, builtins.TimeoutError):
    """The operation did not complete before its deadline."""

    code, code_number, retryable = "timeout", 10, True


class UnavailableError(FelixError, builtins.ConnectionError):
    """The broker is unreachable, restarting or shutting down; retry later."""

    code, code_number, retryable = "unavailable", 11, True


ConnectionError = UnavailableError


class ProtocolError(FelixError):
    """The peer sent bytes that are not valid Felix protocol."""

    code, code_number = "protocol", 12


class SlowConsumerError(FelixError):
    """The subscriber could not keep up and was disconnected by its stream's policy."""

    code, code_number = "slow_consumer", 13


class OperationCancelledError(FelixError):
    """The operation was cancelled."""

    code, code_number = "cancelled", 14


class ClosedError(FelixError):
    """The client or handle was already closed."""

    code, code_number = "closed", 15


class ForkedError(ClosedError):
    """A client made before ``os.fork()`` was used in the child process.

    The child has none of the parent's connections or runtime thread: make a new client there.
    """


class InternalError(FelixError):
    """A bug or unexpected failure inside Felix."""

    code, code_number = "internal", 16


class QuotaExceededError(FelixError):
    """The tenant is past one of its quotas (connections, subscriptions, publish rate, cache
    bytes, queue depth); other tenants are unaffected. Retryable: rate quotas recover within a
    second, count quotas once the tenant's usage drops."""

    code, code_number, retryable = "quota_exceeded", 17, True


class StorageError(FelixError):
    """Durable storage could not do it (disk full, disk quota, an I/O or fsync error, a
    quarantined log); nothing the request asked for happened. Retryable as a code; the error's
    own retryable flag is false when an operator is needed (a quarantined log)."""

    code, code_number, retryable = "storage", 18, True


_BY_CODE: Dict[str, Type[FelixError]] = {
    c.code: c
    for c in (
        InvalidArgumentError,
        FrameTooLargeError,
        NotFoundError,
        AlreadyExistsError,
        ConflictError,
        UnauthorizedError,
        ForbiddenError,
        OverloadedError,
        UnsupportedError,
        TimeoutError,
        UnavailableError,
        ProtocolError,
        SlowConsumerError,
        OperationCancelledError,
        ClosedError,
        InternalError,
        QuotaExceededError,
        StorageError,
    )
}


def error_class(code: str) -> Type[FelixError]:
    """The exception class of a stable code (``FelixError`` for an unknown one)."""
    return _BY_CODE.get(code, FelixError)


def _from_code(code: str, number: int, retryable: bool, message: str) -> FelixError:
    """Called by the native module to build the exception of a core error."""
    return error_class(code)(message, code=code, code_number=number, retryable=retryable)
