"""Dashboard refresh cost: one update batch with 2,000 jobs and 200 peers in view.

Prints, from one run in a headless Textual app (160×50): the time the jobs and peers tabs
take to apply one refresh's snapshot (5 % of jobs progressed, 1 % changed state, 10 new,
10 gone, a quarter of the peers rescored, one second later), and the same plus the next
frame drawn; beside it, a bare DataTable refreshed the usual way (clear, then add every
row) with the same rows, in the same run. The dashboard's target is < 16 ms per batch.

Times are the main thread's CPU time (`--clock cpu`, the default), which other programs on
a busy machine do not inflate; `--clock wall` measures elapsed time instead.

    python bench/tui.py [--jobs 2000] [--peers 200] [--batches 30] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import replace

from lightbox_node.tui.app import DashboardApp
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
from lightbox_node.tui.peers import PeersPane
from textual import events
from textual.geometry import Region
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


async def draw(tables: list[DataTable]) -> None:
    """What the next frame costs the tables: their idle work (DataTable measures new rows
    and recomputes its size when idle), then rendering every visible line."""
    for table in tables:
        await table._on_idle(events.Idle())
        width, height = table.size
        table.render_lines(Region(0, 0, width, height))


async def measure(jobs_n: int, peers_n: int, batches: int) -> dict[str, list[float]]:
    rng = random.Random(7)
    jobs, peers = make_jobs(jobs_n, rng), make_peers(peers_n, rng)
    app = DashboardApp(NodeClient("http://bench.invalid"), clock=lambda: NOW, live=False)
    out: dict[str, list[float]] = {k: [] for k in ("apply", "frame", "bare", "bare_frame")}
    async with app.run_test(size=(160, 50)) as pilot:
        app.action_show_tab("jobs")
        await pilot.pause()
        jobs_pane = app.query_one(JobsPane)
        peers_pane = app.query_one(PeersPane)
        first = snapshot_of(jobs, peers, NOW)
        jobs_pane.show(first)
        peers_pane.show(first)
        await pilot.pause()
        visible = [
            app.query_one("#jobs-table", DataTable),
            app.query_one("#peers-table", DataTable),
        ]
        batches_data = []
        for serial in range(1, batches + 1):
            jobs, _new, peers = next_batch(jobs, peers, rng, serial)
            batches_data.append(snapshot_of(jobs, peers, NOW + serial))
        for snapshot in batches_data:
            started = CLOCK[0]()
            jobs_pane.show(snapshot)
            peers_pane.show(snapshot)
            applied = CLOCK[0]()
            await draw(visible)
            drawn = CLOCK[0]()
            out["apply"].append(applied - started)
            out["frame"].append(drawn - started)

        await app.push_screen(BareScreen())
        await pilot.pause()
        bare_jobs = app.screen.query_one("#bare-jobs", DataTable)
        bare_peers = app.screen.query_one("#bare-peers", DataTable)
        for column in JOB_COLUMNS:
            bare_jobs.add_column(column.label, key=column.key, width=column.width)
        for column in PEER_COLUMNS:
            bare_peers.add_column(column.label, key=column.key, width=column.width)
        render_peer = peers_pane.render_peer
        for snapshot in batches_data:
            assert not isinstance(snapshot.jobs, Unavailable)
            assert not isinstance(snapshot.peers, Unavailable)
            started = CLOCK[0]()
            job_rows = bare_rows(list(snapshot.jobs.jobs), snapshot.at)
            peer_rows = [render_peer(p) for p in snapshot.peers]
            bare_jobs.clear()
            bare_jobs.add_rows(job_rows)
            bare_peers.clear()
            bare_peers.add_rows(peer_rows)
            applied = CLOCK[0]()
            await draw([bare_jobs, bare_peers])
            drawn = CLOCK[0]()
            out["bare"].append(applied - started)
            out["bare_frame"].append(drawn - started)
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
    print(f"{'':34} {'apply p50/p90 ms':>18} {'+ next frame p50/p90 ms':>25}")
    for label, apply, frame in (
        ("dashboard (KeyedTable.apply)", "apply", "frame"),
        ("bare DataTable clear + add_rows", "bare", "bare_frame"),
    ):
        print(
            f"{label:34} {p50(out[apply]):9.2f} /{p90(out[apply]):7.2f}"
            f" {p50(out[frame]):14.2f} /{p90(out[frame]):7.2f}"
        )
    print(
        f"{'bare / dashboard':34} {p50(out['bare']) / p50(out['apply']):9.1f}x"
        f" {p50(out['bare_frame']) / p50(out['frame']):15.1f}x"
    )
    for label, key in (("apply", "apply"), ("apply + next frame", "frame")):
        verdict = "met" if p50(out[key]) < 16 else "NOT met"
        print(f"target < 16 ms (p50), {label}: {verdict}")


if __name__ == "__main__":
    main()
