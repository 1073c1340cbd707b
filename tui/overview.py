"""The overview tab: who the node is, what it holds, and how fast jobs go through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightbox_node.tui.client import NodeClient
from lightbox_node.tui.live import NodeSnapshot, ThroughputHistory, Unavailable
from lightbox_node.tui.pane import Pane, show_text
from lightbox_node.tui.tables import duration
from rich.table import Table
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

STATS = (
    ("peers", "Peers linked/known"),
    ("hosts", "GPU hosts online"),
    ("queued", "Queued jobs"),
    ("running", "Running jobs"),
    ("done", "Done jobs"),
)


class Stat(Vertical):
    """A number with its caption."""

    def __init__(self, key: str, caption: str) -> None:
        super().__init__(id=f"stat-{key}", classes="stat")
        self.caption = caption

    def compose(self) -> Any:
        yield Static("—", classes="stat-value")
        yield Label(self.caption, classes="stat-caption")

    def set(self, text: str) -> None:
        show_text(self.query_one(".stat-value", Static), text)


class OverviewPane(Pane):
    PRIMARY = ""

    def __init__(
        self,
        client: NodeClient,
        clock: Callable[[], float],
        throughput: ThroughputHistory,
        *,
        id: str,
    ) -> None:
        super().__init__(client, clock, id=id)
        self.throughput = throughput

    def compose(self) -> Any:
        yield Static("Waiting for the node…", id="node-identity")
        with Horizontal(id="stat-row"):
            for key, caption in STATS:
                yield Stat(key, caption)
        yield Label("Jobs per minute", id="jobs-rate-label", classes="spark-label")
        yield Sparkline([], id="jobs-sparkline")
        yield Label("p50 latency", id="latency-label", classes="spark-label")
        yield Sparkline([], id="latency-sparkline")
        yield Static("", id="overview-notes")

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        super().show(snapshot)
        status = snapshot.status
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("Peer id", status.peer_id)
        grid.add_row("Network", status.network)
        grid.add_row("Roles", ", ".join(status.roles) or "—")
        grid.add_row("Version", status.version)
        grid.add_row("Uptime", duration(status.uptime_s))
        self.query_one("#node-identity", Static).update(grid)

        counts = job_counts(snapshot)
        peers = snapshot.peers
        if isinstance(peers, Unavailable):
            peer_text = "—"
        else:
            peer_text = f"{sum(1 for p in peers if p.linked)}/{len(peers)}"
        hosts = snapshot.hosts
        host_text = "—" if isinstance(hosts, Unavailable) else str(sum(h.online for h in hosts))
        values = {
            "peers": peer_text,
            "hosts": host_text,
            "queued": _count(counts, "queued"),
            "running": _count(counts, "running", "dispatched"),
            "done": _count(counts, "done"),
        }
        for key, text in values.items():
            self.query_one(f"#stat-{key}", Stat).set(text)

        rates = list(self.throughput.jobs_per_min)
        latencies = list(self.throughput.p50_latency_s)
        self.query_one("#jobs-sparkline", Sparkline).data = rates or [0.0]
        self.query_one("#latency-sparkline", Sparkline).data = latencies or [0.0]
        now_rate = rates[-1] if rates else 0.0
        now_p50 = latencies[-1] if latencies else 0.0
        show_text(
            self.query_one("#jobs-rate-label", Label),
            f"Jobs per minute (last minute): [b]{now_rate:.1f}[/b]",
        )
        show_text(
            self.query_one("#latency-label", Label),
            f"p50 latency, submission to result (last minute): [b]{now_p50:.2f} s[/b]",
        )
        notes = [
            f"• {part.reason}"
            for part in (snapshot.counters, snapshot.metrics)
            if isinstance(part, Unavailable)
        ]
        show_text(self.query_one("#overview-notes", Static), "\n".join(notes))


def job_counts(snapshot: NodeSnapshot) -> dict[str, int] | None:
    """Jobs by state, node-wide: from the admin counters, else from the metrics."""
    if not isinstance(snapshot.counters, Unavailable):
        return dict(snapshot.counters.jobs_by_state)
    if not isinstance(snapshot.metrics, Unavailable):
        return {
            labels.get("state", ""): int(value)
            for labels, value in snapshot.metrics.family("lightbox_jobs")
        }
    return None


def _count(counts: dict[str, int] | None, *states: str) -> str:
    if counts is None:
        return "—"
    return str(sum(counts.get(s, 0) for s in states))
