"""The registry tab: the Raft members with their role and term, each concept's current
global model, the history of the concept under the cursor, and recent commits; says so
plainly while the node has no registry API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightbox_node.tui.client import NodeClient, NodeError
from lightbox_node.tui.live import NodeSnapshot, Unavailable
from lightbox_node.tui.models import ConceptModel, RegistryCommit, RegistryEvent, RegistryMember
from lightbox_node.tui.pane import Pane, set_visible, show_text
from lightbox_node.tui.tables import (
    Cell,
    Column,
    KeyedTable,
    age,
    cell,
    model_summary,
    number,
    plural,
    short_blob,
    short_id,
)
from textual import on, work
from textual.widgets import DataTable, Static

HISTORY_PAGE = 50
"""Events of the selected concept shown: its last ones, newest first."""


MEMBER_COLUMNS = (
    Column("peer", "Member", 16),
    Column("role", "Role", 10),
    Column("term", "Term", 6),
)
CONCEPT_COLUMNS = (
    Column("concept", "Concept", 20),
    Column("version", "Version", 7),
    Column("model", "Global model", 40),
    Column("pending", "Waiting", 7),
    Column("updated", "Merged", 8),
)
HISTORY_COLUMNS = (
    Column("seq", "#", 5),
    Column("kind", "Kind", 8),
    Column("event", "Event", 56),
    Column("by", "By", 16),
    Column("at", "When", 8),
)
COMMIT_COLUMNS = (
    Column("index", "Index", 7),
    Column("term", "Term", 6),
    Column("concept", "Concept", 20),
    Column("model", "Model", 40),
)
KIND_STYLES = {"merge": "green", "adapter": "cyan", "metadata": "magenta"}


def render_member(member: RegistryMember) -> list[Cell]:
    style = "bold green" if member.leader else ""
    return [
        cell(short_id(member.peer_id), sort=member.peer_id),
        cell(member.role, style),
        cell(number(member.term), sort=member.term),
    ]


def render_commit(commit: RegistryCommit) -> list[Cell]:
    return [
        cell(number(commit.index), sort=commit.index),
        cell(number(commit.term), sort=commit.term),
        cell(commit.concept),
        cell(commit.model_id),
    ]


def describe_event(event: RegistryEvent) -> str:
    """One history event in words."""
    if event.kind == "adapter":
        weight = "?" if event.weight is None else f"{event.weight:g}"
        return f"adapter {short_blob(event.adapter)} submitted, weight {weight}"
    if event.kind == "merge":
        merged = plural(len(event.adapters), "adapter")
        return (
            f"{merged} merged → version {number(event.version)}, model {short_blob(event.model_id)}"
        )
    if event.kind == "metadata":
        pairs = ", ".join(
            f"{key}={'(removed)' if value is None else value}" for key, value in event.metadata
        )
        return f"metadata {pairs}" if pairs else "metadata"
    return event.kind or "event"


class RegistryPane(Pane):
    PRIMARY = "#registry-concepts"

    def __init__(self, client: NodeClient, clock: Callable[[], float], *, id: str) -> None:
        super().__init__(client, clock, id=id)
        self.history_for: str | None = None
        """The concept whose history is shown (or being read)."""
        self._history_seen: ConceptModel | None = None
        self._events: list[RegistryEvent] = []
        self._now = clock()

    def compose(self) -> Any:
        yield Static("Waiting for the node…", id="registry-state", classes="note")
        yield KeyedTable(MEMBER_COLUMNS, render_member, sort_column="peer", id="registry-members")
        yield KeyedTable(
            CONCEPT_COLUMNS, self.render_concept, sort_column="concept", id="registry-concepts"
        )
        yield KeyedTable(
            HISTORY_COLUMNS,
            self.render_event,
            sort_column="seq",
            reverse=True,
            id="registry-history",
        )
        yield KeyedTable(
            COMMIT_COLUMNS, render_commit, sort_column="index", reverse=True, id="registry-commits"
        )

    def on_mount(self) -> None:
        for table_id, title in (
            ("#registry-members", "Raft members"),
            ("#registry-concepts", "Global model per concept"),
            ("#registry-history", "History: select a concept"),
            ("#registry-commits", "Recent commits"),
        ):
            self.query_one(table_id, KeyedTable).border_title = title

    def render_concept(self, concept: ConceptModel) -> list[Cell]:
        return [
            cell(concept.concept),
            cell(number(concept.version), sort=concept.version),
            cell(concept.model_id or "no model yet", "" if concept.model_id else "dim"),
            cell(number(concept.pending_count), sort=concept.pending_count),
            cell(self.ago(concept.updated_at), sort=concept.updated_at),
        ]

    def ago(self, at: float | None) -> str:
        return age(None if at is None else self._now - at)

    def event_age(self, event: RegistryEvent) -> str:
        return self.ago(event.at)

    def render_event(self, event: RegistryEvent) -> list[Cell]:
        return [
            cell(number(event.seq), sort=event.seq),
            cell(event.kind, KIND_STYLES.get(event.kind, "")),
            cell(describe_event(event)),
            cell(short_id(event.by), sort=event.by),
            cell(self.event_age(event), sort=event.at),
        ]

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        super().show(snapshot)
        registry = snapshot.registry
        if registry is None:
            return  # not asked this refresh
        self._now = snapshot.at
        state = self.query_one("#registry-state", Static)
        tables = list(self.query(KeyedTable))
        if isinstance(registry, Unavailable):
            show_text(
                state,
                f"{registry.reason}.\nThe registry tab fills in once this node serves the "
                "model registry (Raft members, global models per concept, commits).",
            )
            state.add_class("unavailable")
            for table in tables:
                set_visible(table, False)
            return
        state.remove_class("unavailable")
        leader = next((m for m in registry.members if m.leader), None)
        show_text(
            state,
            f"{plural(len(registry.members), 'member')}; leader "
            f"{short_id(leader.peer_id) if leader else 'unknown'}; "
            f"{plural(len(registry.concepts), 'concept')}",
        )
        for table in tables:
            set_visible(table, True)
        self.query_one("#registry-members", KeyedTable).apply(
            (m.peer_id, m, m) for m in registry.members
        )
        self.query_one("#registry-concepts", KeyedTable).apply(
            (c.concept, (c, self.ago(c.updated_at)), c) for c in registry.concepts
        )
        self.query_one("#registry-commits", KeyedTable).apply(
            (f"{c.index}:{c.term}:{c.concept}", c, c) for c in registry.commits
        )
        # The concept under the cursor changed (a new adapter or merge): read its history again.
        current = next((c for c in registry.concepts if c.concept == self.history_for), None)
        if current is not None and current != self._history_seen:
            self.load_history(current.concept)
        else:
            self.show_events(self._events)  # their ages move on

    # -- the selected concept's history --------------------------------------------------------

    @on(DataTable.RowHighlighted, "#registry-concepts")
    def concept_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = str(event.row_key.value) if event.row_key is not None else None
        if key and key != self.history_for:
            self.load_history(key)

    @work(exclusive=True, group="concept-history")
    async def load_history(self, concept: str) -> None:
        self.history_for = concept
        registry = self.snapshot.registry if self.snapshot else None
        listed = registry.concepts if registry and not isinstance(registry, Unavailable) else ()
        self._history_seen = next((c for c in listed if c.concept == concept), None)
        table = self.query_one("#registry-history", KeyedTable)
        table.border_title = f"History of {concept}"
        try:
            detail = await self.client.concept(concept)
            after = max(0, (detail.history_length or 0) - HISTORY_PAGE)
            events = await self.client.concept_history(concept, after=after, limit=HISTORY_PAGE)
        except NodeError as exc:
            table.border_subtitle = str(exc)
            self.show_events([])
            return
        if concept != self.history_for:
            return
        count = detail.history_length if detail.history_length is not None else len(events)
        shown = f", the last {len(events)} shown" if count > len(events) else ""
        summary = model_summary(detail.model_id, detail.version, detail.pending_count)
        table.border_subtitle = f"{summary}; {plural(count, 'event')}{shown}"
        self.show_events(events)

    def show_events(self, events: list[RegistryEvent]) -> None:
        self._events = events
        table = self.query_one("#registry-history", KeyedTable)
        table.apply((str(e.seq), (e, self.event_age(e)), e) for e in events)
