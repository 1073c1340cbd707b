"""Garbage collection: unreferenced blobs go after a grace period; referenced or young ones stay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from lightbox_node.blobs import CollectorParams, collect_once, run_blob_collector
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.store.blob_gc import StagedFetch, StoredBlob, plan_collection

NOW = 1_700_000_000.0
HOUR = 3600.0


def blob(name: str, age_s: float, size: int = 10) -> StoredBlob:
    return StoredBlob(BlobId.of_bytes(name.encode()), NOW - age_s, size)


def test_an_old_unreferenced_blob_is_collected_and_the_rest_kept() -> None:
    old, used, young = blob("old", 2 * HOUR), blob("used", 9 * HOUR), blob("young", 60)
    plan = plan_collection([old, used, young], {used.blob_id}, now=NOW, grace_s=HOUR)
    assert plan.blobs == (old,)
    assert (plan.kept_referenced, plan.kept_young, plan.bytes_freed) == (1, 1, 10)


def test_a_blob_from_the_future_is_young() -> None:
    assert plan_collection([blob("skewed", -HOUR)], set(), now=NOW, grace_s=0).blobs == ()


def test_the_grace_period_is_inclusive_of_its_edge() -> None:
    edge = blob("edge", HOUR)
    assert plan_collection([edge], set(), now=NOW, grace_s=HOUR).blobs == (edge,)
    assert plan_collection([edge], set(), now=NOW, grace_s=HOUR + 1).blobs == ()


def test_stale_staged_fetches_are_collected_after_the_grace_period() -> None:
    stale = StagedFetch(BlobId.of_bytes(b"a"), NOW - 2 * HOUR, 5)
    fresh = StagedFetch(BlobId.of_bytes(b"b"), NOW - 10, 5)
    plan = plan_collection([], set(), now=NOW, grace_s=HOUR, staged=[stale, fresh])
    assert plan.staged == (stale,) and plan.bytes_freed == 5


def test_a_negative_grace_period_is_refused() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        plan_collection([], set(), now=NOW, grace_s=-1)


def _aged(store: BlobStore, data: bytes, age_s: float) -> BlobId:
    blob_id = store.put(data)
    when = NOW - age_s
    os.utime(store.path_of(blob_id), (when, when))
    return blob_id


async def test_a_collection_round_deletes_only_what_nothing_needs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    old = _aged(store, b"old", 2 * HOUR)
    used = _aged(store, b"used", 2 * HOUR)
    young = _aged(store, b"young", 60)

    async def referenced() -> set[BlobId]:
        return {used}

    plan = await collect_once(store, referenced, grace_s=HOUR, wall_clock=lambda: NOW)
    assert [b.blob_id for b in plan.blobs] == [old]
    assert not store.has(old) and store.has(used) and store.has(young)


async def test_a_blob_stored_again_after_the_listing_survives(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    old = _aged(store, b"old", 2 * HOUR)

    def referenced() -> list[BlobId]:
        store.put(b"old")  # a job stores the same bytes again while the round runs
        return []

    await collect_once(store, referenced, grace_s=HOUR, wall_clock=lambda: NOW)
    assert store.has(old)


async def test_the_collector_keeps_everything_when_it_cannot_learn_what_is_referenced(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = BlobStore(tmp_path)
    old = _aged(store, b"old", 2 * HOUR)
    survived_first_round: list[bool] = []

    def referenced() -> list[BlobId]:
        survived_first_round.append(store.has(old))
        if len(survived_first_round) == 1:
            raise RuntimeError("registry not ready")
        return []

    params = CollectorParams(grace_s=HOUR, every_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_blob_collector(
                store, referenced, params=params, wall_clock=lambda: NOW, task_status=task_status
            )
        )
        while store.has(old):
            await trio.sleep(1)
        assert survived_first_round == [True, True]
        nursery.cancel_scope.cancel()
