"""A least-recently-used map bounded by the bytes of what it holds (thread-safe)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """Values by key; when their total size passes ``max_bytes`` the least recently used go first.

    The newest value is always kept, even alone over the bound: callers that must not hold an
    oversized value check its size before :meth:`put`.

    Args:
        max_bytes: Bound on the summed sizes given to :meth:`put`.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, but got {max_bytes}")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: str) -> V | None:
        """The value under ``key`` (now the most recently used), or None; counts hits and misses."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: V, size: int) -> None:
        """Stores ``value`` as the most recently used, then drops the oldest while over the bound."""
        with self._lock:
            self._discard(key)
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def discard(self, key: str) -> None:
        """Forgets ``key`` if present."""
        with self._lock:
            self._discard(key)

    def _discard(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
