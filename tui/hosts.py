"""The GPU hosts tab: each host's slots, current job and progress, faults, and its tasks'
schemas; drain or resume a host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightbox_node.tui.client import NodeClient, NodeError
from lightbox_node.tui.live import NodeSnapshot, Unavailable
from lightbox_node.tui.models import Job, TaskSchema
from lightbox_node.tui.pane import Pane, show_text
from lightbox_node.tui.tables import STATE_STYLES, Cell, Column, KeyedTable, bar, cell, short_id
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

COLUMNS = (
    Column("host", "Host", 16),
    Column("state", "State", 10),
    Column("slots", "Busy/slots", 10),
    Column("queue", "Queue", 6),
    Column("job", "Current job", 16),
    Column("progress", "Progress", 15),
    Column("faults", "Faults", 6),
    Column("tasks", "Tasks", 30),
)


@dataclass(frozen=True, slots=True)
class HostRow:
    """A host as the tab shows it, from the queue's view and from gossip."""

    peer_id: str
    attached: bool
    online: bool
    slots: int | None
    free_slots: int | None
    queued: int | None
    tasks: tuple[str, ...]
    current: Job | None
    current_id: str | None
    faults: int | None
    draining: bool | None


def host_rows(snapshot: NodeSnapshot) -> list[HostRow]:
    """Attached hosts (the admin view), then GPU peers known from gossip only."""
    jobs = (
        {} if isinstance(snapshot.jobs, Unavailable) else {j.job_id: j for j in snapshot.jobs.jobs}
    )
    rows: list[HostRow] = []
    seen: set[str] = set()
    if not isinstance(snapshot.hosts, Unavailable):
        for host in snapshot.hosts:
            seen.add(host.peer_id)
            current_id = host.in_flight[0] if host.in_flight else None
            faults = host.faults
            if faults is None and not isinstance(snapshot.jobs, Unavailable):
                faults = sum(
                    1 for j in jobs.values() if j.host == host.peer_id and j.state == "faulted"
                )
            rows.append(
                HostRow(
                    host.peer_id,
                    True,
                    host.online,
                    host.slots,
                    host.free_slots,
                    host.queued,
                    host.tasks,
                    jobs.get(current_id) if current_id else None,
                    current_id,
                    faults,
                    host.draining,
                )
            )
    if not isinstance(snapshot.peers, Unavailable):
        for peer in snapshot.peers:
            record = peer.record
            if record is None or "gpu" not in record.roles or peer.peer_id in seen:
                continue
            rows.append(
                HostRow(
                    peer.peer_id,
                    False,
                    peer.liveness != "dead",
                    None,
                    record.free_slots,
                    None,
                    record.task_names,
                    None,
                    None,
                    None,
                    None,
                )
            )
    return rows


def render_host(row: HostRow) -> list[Cell]:
    if not row.online:
        state = cell("offline", "red")
    elif row.draining:
        state = cell("draining", "yellow")
    elif row.attached:
        state = cell("online", "green")
    else:
        state = cell("gossip", "cyan")
    busy = None
    if row.slots is not None and row.free_slots is not None:
        busy = row.slots - row.free_slots
    slots = f"{busy}/{row.slots}" if busy is not None else f"{row.free_slots or 0} free"
    job = row.current
    progress = cell("—", "dim")
    if job is not None:
        progress = cell(bar(job.progress), STATE_STYLES.get(job.state, ""), sort=job.progress)
    elif row.current_id:
        progress = cell("running", "cyan")
    return [
        cell(short_id(row.peer_id), sort=row.peer_id),
        state,
        cell(slots, sort=busy),
        cell("—" if row.queued is None else str(row.queued), sort=row.queued),
        cell(row.current_id or "—", sort=row.current_id),
        progress,
        cell("—" if row.faults is None else str(row.faults), sort=row.faults),
        cell(", ".join(row.tasks) or "—"),
    ]


class HostsPane(Pane):
    PRIMARY = "#hosts-table"
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("d", "drain", "Drain host"),
        Binding("u", "resume", "Resume host"),
    ]

    def __init__(self, client: NodeClient, clock: Callable[[], float], *, id: str) -> None:
        super().__init__(client, clock, id=id)
        self.selected: str | None = None
        self._detail_shown: tuple[Any, ...] | None = None
        """What the detail view was drawn from: redrawn (and the screen laid out) only when
        that changes, not on every refresh."""

    def compose(self) -> Any:
        yield Static("", id="hosts-note", classes="note")
        yield KeyedTable(COLUMNS, render_host, sort_column="host", id="hosts-table")
        with VerticalScroll(id="host-tasks"):
            yield Static("Select a host to see its tasks and their schemas.", id="host-detail")

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        super().show(snapshot)
        rows = host_rows(snapshot)
        notes = []
        if isinstance(snapshot.hosts, Unavailable):
            notes.append(snapshot.hosts.reason + "; showing GPU hosts known from gossip")
        attached = sum(r.attached for r in rows)
        notes.insert(0, f"{attached} hosts attached here, {len(rows) - attached} known by gossip")
        show_text(self.query_one("#hosts-note", Static), "\n".join(notes))
        table = self.query_one("#hosts-table", KeyedTable)
        table.apply((r.peer_id, r, r) for r in rows)
        if self.selected is None and rows:
            self.selected = table.cursor_key
        self.show_tasks()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key is not None:
            self.selected = str(event.row_key.value)
            self.show_tasks()

    def show_tasks(self) -> None:
        view = self.query_one("#host-detail", Static)
        snapshot = self.snapshot
        if snapshot is None or self.selected is None:
            return
        row = next((r for r in host_rows(snapshot) if r.peer_id == self.selected), None)
        if row is None:
            return
        schemas: dict[str, TaskSchema] = {}
        if snapshot.tasks is not None and not isinstance(snapshot.tasks, Unavailable):
            schemas = {t.name: t for t in snapshot.tasks}
        shown = (row, tuple(schemas.get(name) for name in row.tasks))
        if shown != self._detail_shown:
            self._detail_shown = shown
            view.update(host_tasks(row, schemas))

    def _selected(self) -> str | None:
        return self.query_one("#hosts-table", KeyedTable).cursor_key

    def action_drain(self) -> None:
        if key := self._selected():
            self.change_host(key, drain=True)

    def action_resume(self) -> None:
        if key := self._selected():
            self.change_host(key, drain=False)

    @work(group="host-actions")
    async def change_host(self, peer_id: str, *, drain: bool) -> None:
        try:
            if drain:
                await self.client.drain_host(peer_id)
            else:
                await self.client.resume_host(peer_id)
        except NodeError as exc:
            self.report(exc)
            return
        verb = "draining" if drain else "resumed"
        self.notify(f"{short_id(peer_id)}: {verb}")
        self.refresh_node()


def host_tasks(row: HostRow, schemas: dict[str, TaskSchema]) -> Group:
    parts: list[Any] = [Text(f"Host {row.peer_id}", style="bold underline")]
    if row.current is not None:
        job = row.current
        parts.append(
            Text(f"Running {job.job_id} ({job.task} for {job.owner}): {job.progress_message}")
        )
    for name in row.tasks:
        schema = schemas.get(name)
        if schema is None:
            parts.append(Text(f"\n{name}", style="bold"))
            continue
        parts.append(Text(f"\n{schema.title} ({schema.name})", style="bold"))
        if schema.description:
            parts.append(Text(schema.description, style="dim"))
        table = Table("Input", "Type", "Default", "Bounds / options", box=None, padding=(0, 1))
        for spec in schema.inputs:
            bounds = ""
            if spec.options:
                bounds = ", ".join(str(c.value) for c in spec.options)
            elif spec.minimum is not None or spec.maximum is not None:
                bounds = f"{_fmt(spec.minimum)}…{_fmt(spec.maximum)} {spec.unit}".strip()
            name_text = spec.name + (" *" if spec.required else "")
            table.add_row(name_text, spec.type, _fmt(spec.default), bounds)
        if schema.inputs:
            parts.append(table)
        outputs = ", ".join(f"{o.name} ({o.type})" for o in schema.outputs)
        parts.append(Text(f"outputs: {outputs or '—'}", style="dim"))
    return Group(*parts)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
