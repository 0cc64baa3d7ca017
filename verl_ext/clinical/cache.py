"""The per-text caches of the clinical models: references repeat G times per step and every epoch."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, Sequence, TypeVar

V = TypeVar("V")


class LRUCache:
    """A small thread-safe LRU map with hit/miss counters."""

    def __init__(self, max_size: int):
        self.max_size = int(max_size)
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key, default=None):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return default

    def put(self, key, value) -> None:
        if self.max_size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def get_many(self, keys: Sequence[Hashable], compute: Callable[[list], list[V]]) -> list[V]:
        """The value of every key, in order; the missing keys are computed once each, in one batched call.

        A value evicted before it is read back (a cache smaller than the batch) is recomputed alone.
        """
        todo = list(dict.fromkeys(k for k in keys if k not in self))
        if todo:
            for key, value in zip(todo, compute(todo)):
                self.put(key, value)
        out = []
        for key in keys:
            value = self.get(key)
            if value is None:
                value = compute([key])[0]
            out.append(value)
        return out
