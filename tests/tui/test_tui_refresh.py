"""A refresh on its way to the screen: the refresh task prepares the visible tab's table
batches off the screen's thread, and the frame that shows the snapshot only commits them."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

from lightbox_node.tui.app import DashboardApp, SnapshotArrived
from lightbox_node.tui.client import NodeClient
from lightbox_node.tui.jobs import JobsPane
from lightbox_node.tui.live import JobFilter, NodeSnapshot, Unavailable
from lightbox_node.tui.models import Job, JobList, NodeStatus, QueueView

from tests.tui.fake_node import NOW


def snapshot_of(*jobs: Job, at: float = NOW) -> NodeSnapshot:
    return NodeSnapshot(
        at=at,
        status=NodeStatus("lb1node", "lightbox-test", ("queue",), "0.1.0", 60.0),
        counters=Unavailable("test"),
        metrics=Unavailable("test"),
        peers=(),
        hosts=(),
        queues=QueueView({}, ()),
        jobs=JobList(jobs, node_wide=True),
        users=(),
    )


def job(job_id: str, owner: str, state: str = "running", progress: float = 0.5) -> Job:
    return Job(job_id, owner, "txt2img", state, progress=progress, submitted_at=NOW - 30)


def on_jobs_tab(check: Callable[[DashboardApp, JobsPane, Any], Awaitable[None]]) -> None:
    async def scenario() -> None:
        app = DashboardApp(NodeClient("http://node.invalid"), clock=lambda: NOW, live=False)
        async with app.run_test(size=(140, 40)) as pilot:
            app.action_show_tab("jobs")
            await pilot.pause()
            await check(app, app.query_one(JobsPane), pilot)

    asyncio.run(scenario())


def test_the_frame_after_a_refresh_commits_what_the_worker_thread_prepared() -> None:
    async def check(app: DashboardApp, pane: JobsPane, pilot: Any) -> None:
        app.on_snapshot_arrived(SnapshotArrived(snapshot_of(job("j1", "alice"))))
        snapshot = snapshot_of(job("j1", "alice", progress=0.9), job("j2", "bob"), at=NOW + 1)
        prepared = await asyncio.to_thread(pane.prepare, snapshot)
        planned: list[object] = []
        plan = pane.jobs_table.plan
        pane.jobs_table.plan = lambda *args, **kw: planned.append(args) or plan(*args, **kw)  # type: ignore[method-assign]
        app.on_snapshot_arrived(SnapshotArrived(snapshot, pane, prepared))
        assert planned == []  # nothing left to work out on the screen's thread
        assert sorted(pane.jobs_table.keys) == ["j1", "j2"]
        assert "90%" in str(pane.jobs_table.get_row("j1")[5])

    on_jobs_tab(check)


def test_a_refresh_prepared_before_the_job_filter_changed_is_shown_filtered() -> None:
    async def check(app: DashboardApp, pane: JobsPane, pilot: Any) -> None:
        snapshot = snapshot_of(job("j1", "alice"), job("j2", "bob"), job("j3", "alice"))
        prepared = await asyncio.to_thread(pane.prepare, snapshot)
        pane.set_filter(JobFilter(user="alice"))
        app.on_snapshot_arrived(SnapshotArrived(snapshot, pane, prepared))
        assert sorted(pane.jobs_table.keys) == ["j1", "j3"]

    on_jobs_tab(check)


def test_a_refresh_prepared_for_another_tab_is_worked_out_again() -> None:
    async def check(app: DashboardApp, pane: JobsPane, pilot: Any) -> None:
        snapshot = snapshot_of(job("j1", "alice"))
        peers = app.pane("peers")
        app.on_snapshot_arrived(SnapshotArrived(snapshot, peers, peers.prepare(snapshot)))
        assert pane.jobs_table.keys == ["j1"]

    on_jobs_tab(check)


def test_no_garbage_is_collected_between_a_refresh_and_the_frame_showing_it() -> None:
    async def check(app: DashboardApp, pane: JobsPane, pilot: Any) -> None:
        assert gc.isenabled()
        app.on_snapshot_arrived(SnapshotArrived(snapshot_of(job("j1", "alice"))))
        assert not gc.isenabled()
        await pilot.pause()
        assert gc.isenabled()

    on_jobs_tab(check)


def test_the_collector_is_resumed_by_a_dashboard_closing_before_its_next_frame() -> None:
    async def check(app: DashboardApp, pane: JobsPane, pilot: Any) -> None:
        app.on_snapshot_arrived(SnapshotArrived(snapshot_of(job("j1", "alice"))))

    on_jobs_tab(check)
    assert gc.isenabled()
