"""The imported `felix` is this project's package (an unrelated `felix-client` exists on
PyPI), and the native module matches the Python layer."""

from importlib import metadata
from pathlib import Path

import felix
from felix import _native


def test_imported_felix_is_the_broker_client():
    assert felix.FELIX_BROKER_CLIENT == "felix-broker-client"
    assert _native.MARKER == "felix-broker-client"
    assert felix.__version__ == _native.__version__ == metadata.version("felix-client")
    assert hasattr(felix, "AsyncClient") and hasattr(felix.Client, "cache_get")
    assert Path(felix.__file__).parent == Path(_native.__file__).parent


def test_error_table_matches_the_core_codes():
    for code, number, retryable in _native.error_codes():
        cls = felix.error_class(code)
        assert cls is not felix.FelixError, code
        assert (cls.code, cls.code_number, cls.retryable) == (code, number, retryable)
    assert len(_native.error_codes()) == 18


def test_hierarchy():
    assert issubclass(felix.UnavailableError, ConnectionError)
    assert felix.ConnectionError is felix.UnavailableError
    assert issubclass(felix.TimeoutError, TimeoutError)
    assert issubclass(felix.UnauthorizedError, felix.AuthError)
    assert issubclass(felix.ForbiddenError, felix.AuthError)
    assert issubclass(felix.InvalidArgumentError, ValueError)
    assert issubclass(felix.FrameTooLargeError, felix.InvalidArgumentError)
    assert issubclass(felix.ForkedError, felix.ClosedError)
    for cls in (felix.NotFoundError, felix.OverloadedError, felix.ConflictError):
        assert issubclass(cls, felix.FelixError)
