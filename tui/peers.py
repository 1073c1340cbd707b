"""The peers tab: every peer this node knows, sortable, and one peer's record and scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightbox_node.tui.client import NodeClient, NodeError
from lightbox_node.tui.live import NodeSnapshot, Unavailable
from lightbox_node.tui.models import Peer
from lightbox_node.tui.pane import Pane, show_text
from lightbox_node.tui.tables import (
    Cell,
    Column,
    KeyedTable,
    TableBatch,
    age,
    cell,
    number,
    short_id,
)
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

COLUMNS = (
    Column("peer", "Peer", 16),
    Column("roles", "Roles", 18),
    Column("address", "Address", 22),
    Column("score", "Score", 7),
    Column("seen", "Last seen", 9),
    Column("link", "Link", 8),
    Column("liveness", "Liveness", 9),
)


class PeersPane(Pane):
    PRIMARY = "#peers-table"
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("s", "next_sort", "Sort"),
        Binding("enter", "details", "Details", show=False),
    ]

    def __init__(self, client: NodeClient, clock: Callable[[], float], *, id: str) -> None:
        super().__init__(client, clock, id=id)
        self.details_for: str | None = None
        self._now = clock()
        self.table = KeyedTable(
            COLUMNS, self.render_peer, sort_column="score", reverse=True, id="peers-table"
        )

    def compose(self) -> Any:
        yield Static("", id="peers-note", classes="note")
        with Horizontal(id="peers-body"):
            yield self.table
            with VerticalScroll(id="peer-details"):
                yield Static("Select a peer (Enter or click) to see its record.", id="peer-detail")

    def render_peer(self, peer: Peer) -> list[Cell]:
        return render_peer(peer, self._now)

    def prepare(self, snapshot: NodeSnapshot) -> TableBatch[Peer] | None:
        peers, now = snapshot.peers, snapshot.at
        if isinstance(peers, Unavailable):
            return None
        rows = ((p.peer_id, (p, age(_seen(p, now))), p) for p in peers)
        return self.table.plan(rows, lambda peer: render_peer(peer, now))

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        super().show(snapshot)
        note = self.query_one("#peers-note", Static)
        peers = snapshot.peers
        if isinstance(peers, Unavailable):
            show_text(note, peers.reason)
            return
        self._now = snapshot.at
        show_text(note, f"{len(peers)} peers known, {sum(p.linked for p in peers)} linked")
        batch = prepared if isinstance(prepared, TableBatch) else self.prepare(snapshot)
        if batch is not None:
            self.table.commit(batch)

    def action_next_sort(self) -> None:
        table = self.query_one("#peers-table", KeyedTable)
        keys = [c.key for c in COLUMNS]
        current = keys.index(table.sort_column) if table.sort_column in keys else -1
        table.sort_by(keys[(current + 1) % len(keys)], reverse=False)

    def action_details(self) -> None:
        key = self.query_one("#peers-table", KeyedTable).cursor_key
        if key:
            self.load_details(key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.load_details(str(event.row_key.value))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = str(event.row_key.value) if event.row_key is not None else None
        if key and key != self.details_for:
            self.load_details(key)

    @work(exclusive=True, group="peer-details")
    async def load_details(self, peer_id: str) -> None:
        self.details_for = peer_id
        view = self.query_one("#peer-detail", Static)
        try:
            peer = await self.client.peer(peer_id)
        except NodeError as exc:
            view.update(Text(f"{short_id(peer_id)}: {exc}", style="red"))
            return
        view.update(peer_details(peer, self.clock()))


def render_peer(peer: Peer, now: float) -> list[Cell]:
    link = cell("linked", "green") if peer.linked else cell("—", "dim")
    seen = _seen(peer, now)
    return [
        cell(short_id(peer.peer_id), sort=peer.peer_id),
        cell(", ".join(peer.roles) or "—"),
        cell(peer.address or "—"),
        cell(number(peer.score, 2), sort=peer.score),
        cell(age(seen), sort=seen),
        link,
        cell(peer.liveness or "—", _liveness_style(peer.liveness)),
    ]


def _seen(peer: Peer, now: float) -> float | None:
    return None if peer.last_seen is None else now - peer.last_seen


def _liveness_style(liveness: str) -> str:
    return {"alive": "green", "suspect": "yellow", "dead": "red"}.get(liveness, "")


def peer_details(peer: Peer, now: float) -> Group:
    """A peer's capability record and score components, as one renderable."""
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("Peer id", peer.peer_id)
    facts.add_row("Address", peer.address or "—")
    facts.add_row("Link", "linked" if peer.linked else "not linked")
    facts.add_row("Liveness", peer.liveness or "—")
    facts.add_row("Score", number(peer.score, 3))
    parts: list[Any] = [Text("Peer", style="bold underline"), facts]
    record = peer.record
    if record is not None:
        rec = Table.grid(padding=(0, 1))
        rec.add_column(style="bold")
        rec.add_column(overflow="fold")
        rec.add_row("Roles", ", ".join(record.roles) or "—")
        rec.add_row("Addresses", "\n".join(record.addresses) or "—")
        rec.add_row("Version", record.version or "—")
        rec.add_row("Sequence", number(record.seq))
        rec.add_row("Free slots", number(record.free_slots))
        issued = None if record.issued_at is None else now - record.issued_at
        expires = None if record.expires_at is None else record.expires_at - now
        rec.add_row("Issued", f"{age(issued)} ago")
        rec.add_row("Expires in", age(expires))
        names = [t.name for t in record.tasks] or list(record.task_names)
        rec.add_row("Tasks", ", ".join(names) or "—")
        parts += [Text(""), Text("Capability record", style="bold underline"), rec]
        for task in record.tasks:
            inputs = ", ".join(f"{i.name}:{i.type}" for i in task.inputs) or "no inputs"
            parts.append(Text(f"  {task.title} ({task.name}): {inputs}", style="dim"))
    else:
        parts += [Text(""), Text("No capability record from this peer yet.", style="dim")]
    if peer.score_components:
        scores = Table("Component", "Value", box=None, padding=(0, 1))
        for key, value in peer.score_components.items():
            scores.add_row(key, number(value, 3) if isinstance(value, int | float) else str(value))
        parts += [Text(""), Text("Score components", style="bold underline"), scores]
    return Group(*parts)
