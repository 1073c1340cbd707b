"""Dashboard refresh cost: one update batch with 2,000 jobs and 200 peers in view.

Prints, from one run in a headless Textual app (160×50), for one refresh's snapshot (5 % of
jobs progressed, 1 % changed state, 10 new, 10 gone, a quarter of the peers rescored, one
second later) reaching the jobs and peers tabs:

* prepare: what the refresh task works out in a worker thread before the snapshot reaches
  the screen (`Pane.prepare`: which rows changed, their cells), as the app does;
* apply: the tabs' `show` with that, on the screen's thread (`KeyedTable.commit`);
* + next frame: apply plus drawing the next frame, that is the main thread's time in
  DataTable's idle work (measuring new rows) and in the screen's updates (layout where
  asked for, then every dirty line rendered and composited) until the app is idle again:
  what stands between the refresh and the next keypress being answered;

and, in the same run, a bare DataTable refreshed the usual way (clear, then add every row,
all on the screen's thread) with the same rows. The ratios compare the screen's thread's
work, and then all the work (the dashboard's prepare included). The dashboard's target is
the next frame within 16 ms (one 60 Hz frame) after a refresh. Writing to a real terminal
is not included (headless); garbage collection is where it happens, which for the
dashboard is after that frame (the app pauses the collector from a refresh until then).

Times are CPU time of the thread doing the work (`--clock cpu`, the default), which other
programs on a busy machine do not inflate; `--clock wall` measures elapsed time instead.

    python bench/tui.py [--jobs 2000] [--peers 200] [--batches 30] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import inspect
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from lightbox_node.tui.app import DashboardApp, SnapshotArrived
from lightbox_node.tui.client import NodeClient
from lightbox_node.tui.jobs import JOB_COLUMNS, JobsPane, render_job
from lightbox_node.tui.live import JobFilter, NodeSnapshot, Unavailable
from lightbox_node.tui.models import (
    Host,
    Job,
    JobList,
    NodeStatus,
    Peer,
    PeerRecord,
    QueueView,
)
from lightbox_node.tui.peers import COLUMNS as PEER_COLUMNS
from lightbox_node.tui.peers import PeersPane, render_peer
from textual.screen import Screen
from textual.widgets import DataTable

NOW = 1_800_000_000.0
CLOCK = [time.thread_time]
STATES = ("queued", "dispatched", "running", "done", "done", "done", "faulted", "cancelled")


def make_jobs(count: int, rng: random.Random, start: int = 0) -> list[Job]:
    return [
        Job(
            job_id=f"j-{i:024x}",
            owner=f"user{rng.randrange(50)}",
            task=rng.choice(("txt2img", "img2img", "upscale", "inpaint")),
            state=(state := rng.choice(STATES)),
            progress=1.0 if state == "done" else rng.random(),
            host=f"lb1host{rng.randrange(16):02d}" + "x" * 50,
            submitted_at=NOW - rng.uniform(0, 3600),
            priority=round(rng.uniform(100, 1000), 1),
        )
        for i in range(start, start + count)
    ]


def make_peers(count: int, rng: random.Random) -> list[Peer]:
    return [
        Peer(
            peer_id=f"lb1peer{i:04d}" + "y" * 50,
            linked=rng.random() < 0.5,
            address=f"10.0.{i // 250}.{i % 250}:7452",
            liveness=rng.choice(("alive", "alive", "suspect")),
            score=round(rng.uniform(-10, 50), 2),
            record=PeerRecord(roles=("gpu",) if i % 3 else ("queue",), free_slots=1),
            last_seen=NOW - rng.uniform(0, 120),
        )
        for i in range(count)
    ]


def snapshot_of(jobs: list[Job], peers: list[Peer], at: float) -> NodeSnapshot:
    return NodeSnapshot(
        at=at,
        status=NodeStatus("lb1bench", "lightbox-main", ("queue",), "0.1.0", 100.0),
        counters=Unavailable("bench"),
        metrics=Unavailable("bench"),
        peers=tuple(peers),
        hosts=tuple(Host(f"lb1host{i:02d}" + "x" * 50, True, (), 1, 0, (), 0) for i in range(16)),
        queues=QueueView({}, ()),
        jobs=JobList(tuple(jobs), node_wide=True),
        users=(),
        job_filter=JobFilter(),
    )


def next_batch(
    jobs: list[Job], peers: list[Peer], rng: random.Random, serial: int
) -> tuple[list[Job], list[Job], list[Peer]]:
    """One refresh later: what a busy node's answer looks like."""
    jobs = list(jobs)
    for index in rng.sample(range(len(jobs)), len(jobs) // 20):
        job = jobs[index]
        jobs[index] = replace(job, progress=min(1.0, job.progress + 0.1), state="running")
    for index in rng.sample(range(len(jobs)), len(jobs) // 100):
        jobs[index] = replace(jobs[index], state="done", progress=1.0)
    jobs.sort(key=lambda j: j.submitted_at or 0)
    new = make_jobs(10, rng, start=1_000_000 + serial * 10)
    new = [replace(j, submitted_at=NOW + serial) for j in new]
    jobs = jobs[10:] + new
    peers = list(peers)
    for index in rng.sample(range(len(peers)), len(peers) // 4):
        peers[index] = replace(peers[index], score=round(rng.uniform(-10, 50), 2))
    return jobs, new, peers


class BareScreen(Screen):
    def compose(self):  # type: ignore[no-untyped-def]
        yield DataTable(id="bare-jobs")
        yield DataTable(id="bare-peers")


def bare_rows(jobs: list[Job], at: float) -> list[list[object]]:
    return [list(render_job(j, at)) for j in jobs]


FRAME_WORK = [0.0]
"""Main-thread time spent drawing since last reset (see `frames_metered`)."""


def _metered(method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = CLOCK[0]()
            try:
                return await method(*args, **kwargs)
            finally:
                FRAME_WORK[0] += CLOCK[0]() - started

        return functools.wraps(method)(timed_async)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = CLOCK[0]()
        try:
            return method(*args, **kwargs)
        finally:
            FRAME_WORK[0] += CLOCK[0]() - started

    return functools.wraps(method)(timed)


@contextlib.contextmanager
def frames_metered() -> Iterator[None]:
    """Count into FRAME_WORK what drawing a frame costs the tables and the screen: DataTable's
    idle work (it measures new rows and sizes itself when idle) and the screen's update
    (`Screen._on_timer_update`: layout if asked for, then rendering and compositing every
    dirty region). Neither awaits anything, so their clock times are theirs alone."""
    originals = [(DataTable, "_on_idle"), (Screen, "_on_timer_update")]
    saved = [getattr(cls, name) for cls, name in originals]
    for cls, name in originals:
        setattr(cls, name, _metered(getattr(cls, name)))
    try:
        yield
    finally:
        for (cls, name), method in zip(originals, saved, strict=True):
            setattr(cls, name, method)


def prepared_for(panes: tuple[JobsPane, PeersPane], snapshot: NodeSnapshot) -> tuple[Any, float]:
    """What the refresh task's worker thread works out, and the time it took there."""
    started = CLOCK[0]()
    prepared = tuple(pane.prepare(snapshot) for pane in panes)
    return prepared, CLOCK[0]() - started


async def measure(jobs_n: int, peers_n: int, batches: int) -> dict[str, list[float]]:
    rng = random.Random(7)
    jobs, peers = make_jobs(jobs_n, rng), make_peers(peers_n, rng)
    out: dict[str, list[float]] = {
        k: [] for k in ("prepare", "apply", "frame", "bare", "bare_frame")
    }
    with frames_metered():
        app = DashboardApp(NodeClient("http://bench.invalid"), clock=lambda: NOW, live=False)
        async with app.run_test(size=(160, 50)) as pilot:
            app.action_show_tab("jobs")
            await pilot.pause()
            panes = (app.query_one(JobsPane), app.query_one(PeersPane))
            first = snapshot_of(jobs, peers, NOW)
            for pane in panes:
                pane.show(first)
            await pilot.pause()
            batches_data = []
            for serial in range(1, batches + 1):
                jobs, _new, peers = next_batch(jobs, peers, rng, serial)
                batches_data.append(snapshot_of(jobs, peers, NOW + serial))
            for snapshot in batches_data:
                # As the refresh task does: the worker thread, then the message to the screen.
                prepared, took = await asyncio.to_thread(prepared_for, panes, snapshot)
                await pilot.pause()
                FRAME_WORK[0] = 0.0
                started = CLOCK[0]()
                # The app's own handler for the jobs tab's refresh; the peers tab beside it.
                app.on_snapshot_arrived(SnapshotArrived(snapshot, panes[0], prepared[0]))
                panes[1].show(snapshot, prepared[1])
                applied = CLOCK[0]() - started
                await pilot.pause()
                out["prepare"].append(took)
                out["apply"].append(applied)
                out["frame"].append(applied + FRAME_WORK[0])

            await app.push_screen(BareScreen())
            await pilot.pause()
            bare_jobs = app.screen.query_one("#bare-jobs", DataTable)
            bare_peers = app.screen.query_one("#bare-peers", DataTable)
            for column in JOB_COLUMNS:
                bare_jobs.add_column(column.label, key=column.key, width=column.width)
            for column in PEER_COLUMNS:
                bare_peers.add_column(column.label, key=column.key, width=column.width)
            for snapshot in batches_data:
                assert not isinstance(snapshot.jobs, Unavailable)
                assert not isinstance(snapshot.peers, Unavailable)
                await pilot.pause()
                FRAME_WORK[0] = 0.0
                started = CLOCK[0]()
                job_rows = bare_rows(list(snapshot.jobs.jobs), snapshot.at)
                peer_rows = [render_peer(p, snapshot.at) for p in snapshot.peers]
                bare_jobs.clear()
                bare_jobs.add_rows(job_rows)
                bare_peers.clear()
                bare_peers.add_rows(peer_rows)
                applied = CLOCK[0]() - started
                await pilot.pause()
                out["bare"].append(applied)
                out["bare_frame"].append(applied + FRAME_WORK[0])
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--peers", type=int, default=200)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    CLOCK[0] = time.thread_time if args.clock == "cpu" else time.perf_counter
    out = asyncio.run(measure(args.jobs, args.peers, args.batches))
    print(
        f"one update batch: {args.jobs} jobs (on screen) + {args.peers} peers, "
        f"{args.batches} batches, 160x50 headless, {args.clock} time"
    )
    print(
        f"{'':34} {'prepare p50/p90 ms':>18} {'apply p50/p90 ms':>18}"
        f" {'+ next frame p50/p90 ms':>25}"
    )
    print(
        f"{'dashboard (plan, then commit)':34}"
        f" {p50(out['prepare']):9.2f} /{p90(out['prepare']):7.2f}"
        f" {p50(out['apply']):9.2f} /{p90(out['apply']):7.2f}"
        f" {p50(out['frame']):14.2f} /{p90(out['frame']):7.2f}"
    )
    print(
        f"{'bare DataTable clear + add_rows':34} {'—':>9} / {'—':>6}"
        f" {p50(out['bare']):9.2f} /{p90(out['bare']):7.2f}"
        f" {p50(out['bare_frame']):14.2f} /{p90(out['bare_frame']):7.2f}"
    )
    print(
        f"{'bare / dashboard':34} {'':18} {p50(out['bare']) / p50(out['apply']):9.1f}x"
        f" {p50(out['bare_frame']) / p50(out['frame']):15.1f}x"
    )
    whole = [p + a for p, a in zip(out["prepare"], out["apply"], strict=True)]
    whole_frame = [p + f for p, f in zip(out["prepare"], out["frame"], strict=True)]
    print(
        f"{'bare / dashboard, prepare included':34} {'':18}"
        f" {p50(out['bare']) / p50(whole):9.1f}x"
        f" {p50(out['bare_frame']) / p50(whole_frame):15.1f}x"
    )
    frame = p50(out["frame"])
    print(
        f"target: the next frame within 16 ms of a refresh (p50 apply + next frame): "
        f"{frame:.1f} ms, {'met' if frame < 16 else 'NOT met'}"
        f" (the refresh task's worker thread planned it in {p50(out['prepare']):.1f} ms before)"
    )


if __name__ == "__main__":
    main()
