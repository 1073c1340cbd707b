"""The pipeline cache: loaded models kept between jobs, least recently used dropped first.

Loading Stable Diffusion takes seconds and gigabytes, so a host loads a model once and keeps
it while memory allows (the paper's reference host reloaded it on every job). Bounded by a
count and by bytes: before a load, room is made for the size the weights have on disk; after
it, the real size (parameters and buffers) is recorded and the cache trimmed again. A model
still in use by a running job is only dropped from the cache; its memory is freed when that
job lets go of it.

Thread-safe: loads happen in worker threads, and two jobs wanting the same model wait for one
load rather than loading it twice.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_MAX_MODELS = 3


@dataclass(slots=True)
class _Entry:
    value: Any
    nbytes: int


class PipelineCache:
    """Loaded pipelines by key; at most `max_models` of them and `max_bytes` in all."""

    def __init__(
        self,
        *,
        max_models: int = DEFAULT_MAX_MODELS,
        max_bytes: int | None = None,
        on_evict: Callable[[], None] = lambda: None,
    ) -> None:
        if max_models < 1:
            raise ValueError("a pipeline cache holds at least one model")
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._on_evict = on_evict
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.hits = 0
        self.evictions = 0

    def get(
        self,
        key: Hashable,
        load: Callable[[], T],
        *,
        size: Callable[[T], int],
        estimate: int = 0,
    ) -> T:
        """The cached value for `key`, loading it with `load()` (in this thread) if absent.

        `estimate` is the expected size in bytes, used to make room before loading; `size`
        measures the loaded value.
        """
        with self._lock:
            found = self._hit(key)
            if found is not None:
                return found.value
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                found = self._hit(key)
                if found is not None:
                    return found.value
                evicted = self._trim(incoming=estimate)
            if evicted:
                self._released()
            try:
                value = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            nbytes = size(value)
            with self._lock:
                self._entries[key] = _Entry(value, nbytes)
                self.loads += 1
                evicted = self._trim(keep=key)
            if evicted:
                self._released()
            return value

    def _hit(self, key: Hashable) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def _trim(self, *, incoming: int | None = None, keep: Hashable = None) -> int:
        """Drop least recently used entries until the bounds hold, with room for an incoming
        entry of `incoming` bytes if given; how many were dropped."""
        dropped = 0
        while self._entries:
            count = len(self._entries) + (0 if incoming is None else 1)
            total = self.total_bytes + (incoming or 0)
            over = count > self.max_models or (
                self.max_bytes is not None and total > self.max_bytes
            )
            oldest = next(iter(self._entries))
            if not over or oldest == keep:
                break
            del self._entries[oldest]
            dropped += 1
        self.evictions += dropped
        return dropped

    def _released(self) -> None:
        gc.collect()
        self._on_evict()

    @property
    def total_bytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self._released()


def module_bytes(modules: Iterable[Any]) -> int:
    """Bytes of the parameters and buffers of the torch modules among `modules`."""
    import torch

    total = 0
    seen: set[int] = set()
    for module in modules:
        if not isinstance(module, torch.nn.Module):
            continue
        for tensor in (*module.parameters(), *module.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def bytes_on_disk(place: Path, suffixes: tuple[str, ...]) -> int:
    """Total size of the weight files at `place` (a file, or a folder searched recursively)."""
    if place.is_file():
        return place.stat().st_size
    if not place.is_dir():
        return 0
    return sum(p.stat().st_size for p in place.rglob("*") if p.is_file() and p.suffix in suffixes)


__all__ = ["DEFAULT_MAX_MODELS", "PipelineCache", "bytes_on_disk", "module_bytes"]
