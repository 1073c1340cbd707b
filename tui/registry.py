"""The registry tab: the Raft members with their role and term, each concept's current
global model, and recent commits; says so plainly while the node has no registry API."""

from __future__ import annotations

from typing import Any

from lightbox_node.tui.live import NodeSnapshot, Unavailable
from lightbox_node.tui.models import ConceptModel, RegistryCommit, RegistryMember
from lightbox_node.tui.pane import Pane, set_visible
from lightbox_node.tui.tables import Cell, Column, KeyedTable, cell, number, short_id
from textual.widgets import Static


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


MEMBER_COLUMNS = (
    Column("peer", "Member", 16),
    Column("role", "Role", 10),
    Column("term", "Term", 6),
)
CONCEPT_COLUMNS = (
    Column("concept", "Concept", 20),
    Column("model", "Global model", 40),
    Column("updated", "Updated", 20),
)
COMMIT_COLUMNS = (
    Column("index", "Index", 7),
    Column("term", "Term", 6),
    Column("concept", "Concept", 20),
    Column("model", "Model", 40),
)


def render_member(member: RegistryMember) -> list[Cell]:
    style = "bold green" if member.leader else ""
    return [
        cell(short_id(member.peer_id), sort=member.peer_id),
        cell(member.role, style),
        cell(number(member.term), sort=member.term),
    ]


def render_concept(concept: ConceptModel) -> list[Cell]:
    return [
        cell(concept.concept),
        cell(concept.model_id),
        cell(number(concept.updated_at), sort=concept.updated_at),
    ]


def render_commit(commit: RegistryCommit) -> list[Cell]:
    return [
        cell(number(commit.index), sort=commit.index),
        cell(number(commit.term), sort=commit.term),
        cell(commit.concept),
        cell(commit.model_id),
    ]


class RegistryPane(Pane):
    PRIMARY = "#registry-members"

    def compose(self) -> Any:
        yield Static("Waiting for the node…", id="registry-state", classes="note")
        yield KeyedTable(MEMBER_COLUMNS, render_member, sort_column="peer", id="registry-members")
        yield KeyedTable(
            CONCEPT_COLUMNS, render_concept, sort_column="concept", id="registry-concepts"
        )
        yield KeyedTable(
            COMMIT_COLUMNS, render_commit, sort_column="index", reverse=True, id="registry-commits"
        )

    def on_mount(self) -> None:
        for table_id, title in (
            ("#registry-members", "Raft members"),
            ("#registry-concepts", "Global model per concept"),
            ("#registry-commits", "Recent commits"),
        ):
            self.query_one(table_id, KeyedTable).border_title = title

    def show(self, snapshot: NodeSnapshot) -> None:
        super().show(snapshot)
        registry = snapshot.registry
        if registry is None:
            return  # not asked this refresh
        state = self.query_one("#registry-state", Static)
        tables = list(self.query(KeyedTable))
        if isinstance(registry, Unavailable):
            state.update(
                f"{registry.reason}.\nThe registry tab fills in once this node serves the "
                "model registry (Raft members, global models per concept, commits)."
            )
            state.add_class("unavailable")
            for table in tables:
                set_visible(table, False)
            return
        state.remove_class("unavailable")
        leader = next((m for m in registry.members if m.leader), None)
        state.update(
            f"{plural(len(registry.members), 'member')}; leader "
            f"{short_id(leader.peer_id) if leader else 'unknown'}; "
            f"{plural(len(registry.concepts), 'concept')}"
        )
        for table in tables:
            set_visible(table, True)
        self.query_one("#registry-members", KeyedTable).apply(
            (m.peer_id, m, m) for m in registry.members
        )
        self.query_one("#registry-concepts", KeyedTable).apply(
            (c.concept, c, c) for c in registry.concepts
        )
        self.query_one("#registry-commits", KeyedTable).apply(
            (f"{c.index}:{c.term}:{c.concept}", c, c) for c in registry.commits
        )
