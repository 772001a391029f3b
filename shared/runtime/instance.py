"""One client per function instance, created on first use: cold start pays nothing until a request needs it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerInstance(Generic[T]):
    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
        return self._value

    def set(self, value: T | None) -> None:
        """Point this process at another one (tests, tools); None: made again from the configuration on next use."""
        self._value = value
