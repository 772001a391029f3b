"""A bounded, per-instance cache whose entries expire on the one clock (`shared.runtime.clock`), so tests move
time instead of sleeping. Least recently used entries go first when it is full. Thread-safe."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Generic, TypeVar

from shared.runtime import clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlLru(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[V, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            value, expires_at = found
            if clock.now() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V, expires_at: datetime) -> None:
        with self._lock:
            self._entries[key] = (value, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def replace(self, key: K, change: Callable[[V], V]) -> None:
        """Change a live entry in place, keeping its expiry (no-op when absent)."""
        with self._lock:
            if (found := self._entries.get(key)) is not None:
                self._entries[key] = (change(found[0]), found[1])

    def evict(self, predicate: Callable[[K], bool]) -> int:
        with self._lock:
            gone = [k for k in self._entries if predicate(k)]
            for k in gone:
                del self._entries[k]
            return len(gone)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
