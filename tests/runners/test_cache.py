"""The pipeline cache: least recently used dropped first, by count and by bytes, loaded once."""

from __future__ import annotations

import threading
import time

import pytest

from lightbox_node.runners.cache import PipelineCache


def loader(log: list[str], name: str):
    def load() -> str:
        log.append(name)
        return name

    return load


def test_the_least_recently_used_model_is_dropped_past_the_count() -> None:
    cache = PipelineCache(max_models=2)
    log: list[str] = []
    for name in ("a", "b", "a", "c"):
        cache.get(name, loader(log, name), size=lambda _: 1)
    assert log == ["a", "b", "c"] and cache.keys() == ["a", "c"]
    assert (cache.loads, cache.hits, cache.evictions) == (3, 1, 1)


def test_room_is_made_by_bytes_before_a_load() -> None:
    released: list[int] = []
    cache = PipelineCache(max_models=5, max_bytes=100, on_evict=lambda: released.append(1))
    log: list[str] = []
    cache.get("a", loader(log, "a"), size=lambda _: 60)
    cache.get("b", loader(log, "b"), size=lambda _: 30)
    cache.get("c", loader(log, "c"), size=lambda _: 30, estimate=50)
    assert cache.keys() == ["b", "c"] and cache.total_bytes == 60 and released


def test_a_model_bigger_than_the_budget_is_still_served_alone() -> None:
    cache = PipelineCache(max_bytes=10)
    assert cache.get("big", lambda: "big", size=lambda _: 1000) == "big"
    assert cache.keys() == ["big"]


def test_two_jobs_wanting_one_model_load_it_once() -> None:
    cache = PipelineCache()
    loads: list[int] = []

    def slow_load() -> object:
        loads.append(1)
        time.sleep(0.05)
        return object()

    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("m", slow_load, size=id)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(r) for r in results}) == 1


def test_a_failed_load_is_not_cached() -> None:
    cache = PipelineCache()

    def broken() -> str:
        raise OSError("disk gone")

    with pytest.raises(OSError):
        cache.get("m", broken, size=len)
    assert cache.get("m", lambda: "ok", size=len) == "ok"
