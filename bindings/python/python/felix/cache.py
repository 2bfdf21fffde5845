"""Cache values. The cache calls themselves are methods of ``Client`` / ``AsyncClient``:
``cache_get``, ``cache_put``, ``cache_put_if``, ``cache_delete``, ``cache_get_many``,
``create_cache``."""

from __future__ import annotations

from ._native import CacheValue

__all__ = ["CacheValue"]
