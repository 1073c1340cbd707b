"""What every tab has in common: the node's client, a clock, and `show(snapshot)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightbox_node.tui.client import NodeClient, NodeError
from lightbox_node.tui.live import NodeSnapshot, Unavailable
from lightbox_node.tui.messages import RefreshRequested
from textual.containers import Vertical
from textual.visual import VisualType
from textual.widget import Widget
from textual.widgets import Static


class Pane(Vertical):
    """One tab's content. The app calls `show` with each snapshot while the tab is visible
    (and once more when the tab is opened); actions run in workers and report by toasts."""

    PRIMARY = ""
    """Selector of the widget focused when the tab is opened."""

    def __init__(self, client: NodeClient, clock: Callable[[], float], *, id: str) -> None:
        super().__init__(id=id, classes="pane")
        self.client = client
        self.clock = clock
        self.snapshot: NodeSnapshot | None = None

    def prepare(self, snapshot: NodeSnapshot) -> Any:
        """What `show(snapshot)` can work out without touching a widget (which rows of a
        table changed, and their cells), for the refresh task to run in a worker thread
        before the snapshot reaches the screen; None where there is nothing worth it. Reads
        only values and tables' `plan`, never the widget tree."""
        return None

    def show(self, snapshot: NodeSnapshot, prepared: Any = None) -> None:
        """Show `snapshot`, using what `prepare(snapshot)` returned if given."""
        self.snapshot = snapshot

    def focus_primary(self) -> None:
        widgets = self.query(self.PRIMARY) if self.PRIMARY else None
        if widgets:
            widgets.first().focus()
        else:
            # Focus left in a hidden tab would bring that tab back.
            self.screen.set_focus(None)

    def refresh_node(self) -> None:
        self.post_message(RefreshRequested())

    def report(self, error: NodeError) -> None:
        """A failed action, as a toast that says what the node said."""
        self.notify(str(error), title="The node said no", severity="error", timeout=8)


def unavailable(part: object) -> str | None:
    """The reason a snapshot part is missing, or None if it is there."""
    return part.reason if isinstance(part, Unavailable) else None


def set_visible(widget: Widget, visible: bool) -> None:
    widget.set_class(not visible, "hidden")


def set_title(widget: Widget, title: str) -> None:
    """`widget.border_title = title` unless it is that already (setting it redraws)."""
    if widget.border_title != title:
        widget.border_title = title


def show_text(widget: Static, content: VisualType) -> None:
    """`widget.update(content)` unless it shows that already: each update lays the whole
    screen out again and redraws it, in case the new text needs another size."""
    if widget.content != content:
        widget.update(content)
