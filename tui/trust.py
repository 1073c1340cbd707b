"""The trust tab: users with their trust score, recovery ETA and suspension; suspend,
restore and set trust (administrators, or the operator's token)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightbox_node.tui.client import NodeClient, NodeError
from lightbox_node.tui.live import NodeSnapshot, Unavailable
from lightbox_node.tui.models import UserTrust
from lightbox_node.tui.pane import Pane, show_text
from lightbox_node.tui.tables import Cell, Column, KeyedTable, bar, cell, duration, number
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, Input, Static

MAX_TRUST = 1000.0
COLUMNS = (
    Column("user", "User", 20),
    Column("trust", "Trust", 8),
    Column("level", "Level", 15),
    Column("eta", "Full again in", 14),
    Column("suspended", "Suspended", 10),
    Column("jobs", "Active jobs", 11),
    Column("role", "Role", 7),
)


def render_user(user: UserTrust) -> list[Cell]:
    trust = user.trust
    level = (trust or 0.0) / MAX_TRUST
    style = "green" if level > 0.6 else "yellow" if level > 0.2 else "red"
    return [
        cell(user.username),
        cell(number(trust), sort=trust),
        cell(bar(level), style, sort=trust),
        cell(
            duration(user.recovery_eta_s) if user.recovery_eta_s else "—", sort=user.recovery_eta_s
        ),
        cell("suspended", "bold red", sort=1) if user.suspended else cell("no", "dim", sort=0),
        cell(number(user.active_jobs), sort=user.active_jobs),
        cell(user.role or "—"),
    ]


class TrustPane(Pane):
    PRIMARY = "#users-table"
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("s", "suspend", "Suspend"),
        Binding("o", "restore", "Restore"),
        Binding("t", "set_trust", "Set trust"),
    ]

    def __init__(self, client: NodeClient, clock: Callable[[], float], *, id: str) -> None:
        super().__init__(client, clock, id=id)

    def compose(self) -> Any:
        with Horizontal(id="trust-form"):
            yield Input(placeholder="user", id="trust-user")
            yield Input(placeholder="reason (for suspend)", id="trust-reason")
            yield Input(placeholder="trust 0–1000", id="trust-value", type="number")
            yield Button("Suspend", id="suspend-user", variant="error")
            yield Button("Restore", id="restore-user", variant="success")
            yield Button("Set trust", id="set-trust", variant="primary")
        yield Static("", id="trust-note", classes="note")
        yield KeyedTable(COLUMNS, render_user, sort_column="user", id="users-table")

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        super().show(snapshot)
        note = self.query_one("#trust-note", Static)
        users = snapshot.users
        if isinstance(users, Unavailable):
            show_text(
                note,
                f"{users.reason}. You can still act on a user by name above "
                "(administrator token needed).",
            )
            return
        suspended = sum(u.suspended for u in users)
        show_text(note, f"{len(users)} users, {suspended} suspended")
        # The recovery ETA changes every refresh; compare it by the second.
        self.query_one("#users-table", KeyedTable).apply(
            (u.username, (u, round(u.recovery_eta_s or 0)), u) for u in users
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """A click (or Enter) on a user puts their name in the form."""
        event.stop()
        self.query_one("#trust-user", Input).value = str(event.row_key.value)

    def target(self) -> str | None:
        user = self.query_one("#trust-user", Input).value.strip()
        if not user and self.focused_on_table():
            user = self.query_one("#users-table", KeyedTable).cursor_key or ""
        if not user:
            self.notify("Type a user name, or select one in the table.", severity="warning")
            return None
        return user

    def focused_on_table(self) -> bool:
        return self.app.focused is self.query_one("#users-table", KeyedTable)

    @on(Button.Pressed, "#suspend-user")
    def action_suspend(self) -> None:
        if user := self.target():
            reason = self.query_one("#trust-reason", Input).value.strip()
            self.change(user, "suspend", reason=reason)

    @on(Button.Pressed, "#restore-user")
    def action_restore(self) -> None:
        if user := self.target():
            self.change(user, "restore")

    @on(Button.Pressed, "#set-trust")
    def action_set_trust(self) -> None:
        user = self.target()
        if user is None:
            return
        text = self.query_one("#trust-value", Input).value.strip()
        try:
            value = float(text)
        except ValueError:
            self.notify("Type the new trust (a number, 0–1000) first.", severity="warning")
            self.query_one("#trust-value", Input).focus()
            return
        self.change(user, "trust", value=value)

    @work(group="trust-actions")
    async def change(
        self, user: str, what: str, *, reason: str = "", value: float = 0.0
    ) -> UserTrust | None:
        try:
            if what == "suspend":
                after = await self.client.suspend_user(user, reason)
            elif what == "restore":
                after = await self.client.restore_user(user)
            else:
                after = await self.client.set_trust(user, value)
        except NodeError as exc:
            self.report(exc)
            return None
        state = "suspended" if after.suspended else "not suspended"
        self.notify(f"{after.username}: trust {number(after.trust)}, {state}")
        self.refresh_node()
        return after
