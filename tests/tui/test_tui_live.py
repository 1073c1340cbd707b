"""Staying live: reconnect backoff, the sparklines' series, and one snapshot of a node."""

from __future__ import annotations

import asyncio

import pytest
from lightbox_node.tui.client import NodeClient
from lightbox_node.tui.live import (
    Backoff,
    JobFilter,
    ThroughputHistory,
    Unavailable,
    fetch_snapshot,
    median_of_buckets,
)

from tests.tui.fake_node import NOW, fake_node


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first_s=1, cap_s=5)
    assert [backoff.next_delay() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_jobs_per_minute_come_from_the_done_counter_over_the_window() -> None:
    history = ThroughputHistory(window_s=60)
    for second in range(0, 31):
        history.add(1000.0 + second, done_total=float(second * 2))  # 2 jobs a second
    assert history.jobs_per_min[-1] == pytest.approx(120.0)


def test_a_counter_going_backwards_means_the_node_restarted() -> None:
    history = ThroughputHistory()
    history.add(1.0, 100.0)
    history.add(2.0, 110.0)
    history.add(3.0, 0.0)
    assert history.jobs_per_min[-1] == 0.0


def test_the_median_latency_is_interpolated_within_its_bucket() -> None:
    before = [(1.0, 0.0), (2.0, 0.0), (float("inf"), 0.0)]
    after = [(1.0, 0.0), (2.0, 4.0), (float("inf"), 4.0)]
    assert median_of_buckets(before, after) == pytest.approx(1.5)
    assert median_of_buckets(after, after) == 0.0


def test_a_snapshot_marks_missing_parts_and_keeps_the_rest() -> None:
    async def scenario() -> None:
        transport, seen = fake_node(missing=("/api/v1/registry", "/api/v1/admin/users"))
        client = NodeClient("http://node.test", transport=transport)
        snapshot = await fetch_snapshot(client, NOW, job_filter=JobFilter("running", "alice"))
        assert isinstance(snapshot.registry, Unavailable) and snapshot.registry.not_found
        assert isinstance(snapshot.users, Unavailable)
        assert not isinstance(snapshot.peers, Unavailable) and len(snapshot.peers) == 2
        jobs_request = next(r for r in seen if r.url.path == "/api/v1/admin/jobs")
        assert jobs_request.url.params["state"] == "running"
        assert jobs_request.url.params["user"] == "alice"
        quick = await fetch_snapshot(client, NOW, slow_parts=False)
        assert quick.tasks is None and quick.registry is None

    asyncio.run(scenario())
