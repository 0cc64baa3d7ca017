"""The per-text caches of the clinical models: references repeat G times per step and every epoch.

Caches are bounded by bytes, not entries: one RaTE analysis of a report holds ~10 entity vectors of 768 floats plus
the edit engine's derived matrices (a normalised copy and, for references, a self-similarity matrix), ~60 KB, so the
former 200,000-entry bound meant 8-9 GB per process. ``approx_nbytes`` estimates what an entry keeps alive.
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterator, Optional, Sequence, TypeVar

import numpy as np

V = TypeVar("V")

MiB = 1 << 20


def approx_nbytes(value: Any) -> int:
    """Bytes kept alive by ``value`` (numpy buffers, strings, containers, analyses), estimated from above.

    A ``ReportAnalysis`` counts its text, sentences and entities, each embedding twice (the vector and the edit
    engine's normalised copy) and the self-similarity matrix the edit engine attaches to a reference, so that the
    matrices computed after the analysis was cached are paid for when it is put. Vectors shared with another cache
    (entity embeddings) are counted in both.
    """
    from verl_ext.editing.types import ReportAnalysis

    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 112
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return sys.getsizeof(value)
    if isinstance(value, ReportAnalysis):
        n_ent = 0
        total = sys.getsizeof(value.text) + 64 * (1 + len(value.sentences))
        for s in value.sentences:
            total += sys.getsizeof(s.text)
            for e in s.entities:
                n_ent += 1
                total += 200 + sys.getsizeof(e.text)
                if e.embedding is not None:
                    total += 2 * (int(e.embedding.nbytes) + 112)
        return total + 4 * n_ent * n_ent + 16 * n_ent
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(approx_nbytes(k) + approx_nbytes(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + sum(approx_nbytes(v) for v in value)
    return sys.getsizeof(value)


class LRUCache:
    """A thread-safe LRU map bounded by ``max_bytes`` (keys and values, by ``sizeof``), with hit/miss counters.

    ``max_bytes <= 0`` disables caching. ``max_entries`` optionally bounds the entry count too (None: no bound). A
    value larger than the whole budget is not cached.
    """

    def __init__(
        self,
        max_bytes: int,
        max_entries: Optional[int] = None,
        sizeof: Callable[[Any], int] = approx_nbytes,
    ):
        self.max_bytes = int(max_bytes)
        self.max_entries = None if max_entries is None else int(max_entries)
        self.sizeof = sizeof
        self._data: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key, default=None):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return default

    def put(self, key, value) -> None:
        if self.max_bytes <= 0 or self.max_entries == 0:
            return
        size = self.sizeof(key) + self.sizeof(value)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._data:
                self.nbytes -= self._sizes[key]
            self._data[key] = value
            self._sizes[key] = size
            self.nbytes += size
            self._data.move_to_end(key)
            while self.nbytes > self.max_bytes or (self.max_entries is not None and len(self._data) > self.max_entries):
                old, _ = self._data.popitem(last=False)
                self.nbytes -= self._sizes.pop(old)
                self.evictions += 1

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._data

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[Any, Any]]:
        with self._lock:
            return iter(list(self._data.items()))

    def stats(self) -> dict:
        return {
            "entries": len(self._data),
            "mib": self.nbytes / MiB,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }

    def get_many(self, keys: Sequence[Hashable], compute: Callable[[list], list[V]]) -> list[V]:
        """The value of every key, in order; the missing keys are computed once each, in one batched call.

        Values computed here are returned even when the cache cannot keep them all (a budget smaller than the
        batch); a cached value evicted by this batch before it is read back is recomputed alone.
        """
        todo = list(dict.fromkeys(k for k in keys if k not in self))
        fresh: dict = {}
        if todo:
            for key, value in zip(todo, compute(todo)):
                self.put(key, value)
                fresh[key] = value
        out = []
        for key in keys:
            value = self.get(key)
            if value is None:
                value = fresh[key] if key in fresh else compute([key])[0]
            out.append(value)
        return out
