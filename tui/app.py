"""The dashboard app: seven tabs over one node's API, kept live by a refresh loop.

The loop (a worker, so the screen never waits on the node) asks for a `NodeSnapshot` every
`poll_s` seconds, or as soon as the node's events stream says something changed, and hands
it to the visible tab, which has first worked out in a worker thread what changes in its
tables (`Pane.prepare`), so that the frame after a refresh only writes those changes. When
the node stops answering, the connection bar says so and counts down to the next try, with
the delay growing (`Backoff`) until the node is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from lightbox_node.tui.client import NodeClient, NodeError, NotAvailable
from lightbox_node.tui.help import HelpScreen
from lightbox_node.tui.hosts import HostsPane
from lightbox_node.tui.jobs import JobsPane
from lightbox_node.tui.live import (
    Backoff,
    JobFilter,
    NodeSnapshot,
    ThroughputHistory,
    Unavailable,
    fetch_snapshot,
)
from lightbox_node.tui.messages import JobFilterChanged, RefreshRequested
from lightbox_node.tui.overview import OverviewPane
from lightbox_node.tui.pane import Pane, show_text
from lightbox_node.tui.peers import PeersPane
from lightbox_node.tui.registry import RegistryPane
from lightbox_node.tui.submit import SubmitPane
from lightbox_node.tui.tables import short_id
from lightbox_node.tui.trust import TrustPane
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

TABS = (
    ("overview", "1 Overview"),
    ("peers", "2 Peers"),
    ("hosts", "3 GPU hosts"),
    ("jobs", "4 Jobs"),
    ("trust", "5 Trust"),
    ("registry", "6 Registry"),
    ("submit", "7 Submit"),
)
SLOW_TABS = frozenset({"hosts", "registry", "submit"})
"""Tabs that show the task list or the registry, which are otherwise refreshed less often."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Whether the node answers, and how the dashboard keeps up with it."""

    state: str  # "connecting", "connected" or "disconnected"
    url: str
    peer_id: str = ""
    reason: str = ""
    retry_at: float | None = None
    live: str = ""


class SnapshotArrived(Message):
    """A refresh, with what `pane.prepare` worked out for it (the tab visible then)."""

    def __init__(self, snapshot: NodeSnapshot, pane: Pane | None = None, prepared: Any = None):
        super().__init__()
        self.snapshot = snapshot
        self.pane = pane
        self.prepared = prepared


class ConnectionBar(Static):
    """One line: connected (and how updates arrive) or disconnected, retrying in N s."""

    connection: reactive[Connection | None] = reactive(None, always_update=True)

    def __init__(self, clock: Callable[[], float], *, id: str) -> None:
        super().__init__("", id=id)
        self.clock = clock

    def on_mount(self) -> None:
        self.set_interval(0.5, self.tick)

    def tick(self) -> None:
        if self.connection is not None and self.connection.state == "disconnected":
            self.show(self.connection)

    def watch_connection(self, connection: Connection | None) -> None:
        if connection is not None:
            self.show(connection)

    def show(self, connection: Connection) -> None:
        self.set_class(connection.state == "connected", "connected")
        self.set_class(connection.state == "disconnected", "disconnected")
        if connection.state == "connected":
            text = (
                f"● connected to {connection.url} · node {short_id(connection.peer_id)}"
                f" · {connection.live}"
            )
        elif connection.state == "disconnected":
            left = max(0, round((connection.retry_at or 0) - self.clock()))
            text = (
                f"○ disconnected from {connection.url}: {connection.reason} · retrying in {left} s"
            )
        else:
            text = f"… connecting to {connection.url}"
        show_text(self, text)


class DashboardApp(App[None]):
    """`lightbox-node dashboard`: see and steer a node and its network, live."""

    CSS_PATH: ClassVar[Any] = ["dashboard.tcss", "forms.tcss"]
    TITLE = "Lightbox"
    SUB_TITLE = "node dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str(i), f"show_tab('{tab}')", label, show=False)
            for i, (tab, label) in enumerate(TABS, start=1)
        ),
        Binding("r", "refresh", "Refresh"),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        client: NodeClient,
        *,
        clock: Callable[[], float] = time.time,
        poll_s: float = 1.0,
        events_poll_s: float = 5.0,
        retry_first_s: float = 1.0,
        retry_cap_s: float = 16.0,
        slow_every: int = 5,
        use_events: bool = True,
        live: bool = True,
    ) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.poll_s = poll_s
        self.events_poll_s = events_poll_s
        self.backoff = Backoff(retry_first_s, retry_cap_s)
        self.slow_every = slow_every
        self.use_events = use_events
        self.live = live
        self.throughput = ThroughputHistory()
        self.snapshot: NodeSnapshot | None = None
        self.job_filter = JobFilter()
        self.events_live = False
        self._poke: asyncio.Event | None = None
        self._want_slow = True
        self._gc_paused = False

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> Any:
        yield Header(show_clock=False)
        self.bar = ConnectionBar(self.clock, id="connection")
        yield self.bar
        self.panes: dict[str, Pane] = {
            "overview": OverviewPane(self.client, self.clock, self.throughput, id="overview-pane"),
            "peers": PeersPane(self.client, self.clock, id="peers-pane"),
            "hosts": HostsPane(self.client, self.clock, id="hosts-pane"),
            "jobs": JobsPane(self.client, self.clock, id="jobs-pane"),
            "trust": TrustPane(self.client, self.clock, id="trust-pane"),
            "registry": RegistryPane(self.client, self.clock, id="registry-pane"),
            "submit": SubmitPane(self.client, self.clock, id="submit-pane"),
        }
        with TabbedContent(initial="overview", id="tabs") as self.tabs:
            for tab, label in TABS:
                with TabPane(label, id=tab):
                    yield self.panes[tab]
        yield Footer()

    def on_mount(self) -> None:
        self._poke = asyncio.Event()
        self.bar.connection = Connection("connecting", self.client.base_url)
        if self.live:
            self.poll_node()

    async def on_unmount(self) -> None:
        self.resume_gc()
        with contextlib.suppress(Exception):
            await self.client.aclose()

    @property
    def active_tab(self) -> str:
        return str(self.tabs.active)

    def pane(self, tab: str) -> Pane:
        return self.panes[tab]

    # -- keeping up with the node --------------------------------------------------------------

    @property
    def connection(self) -> Connection | None:
        return self.bar.connection

    def set_connection(self, connection: Connection) -> None:
        self.bar.connection = connection
        self.sub_title = connection.state

    def poke(self) -> None:
        """Refresh now instead of at the next tick."""
        if self._poke is not None:
            self._poke.set()

    async def _wait(self, seconds: float) -> None:
        assert self._poke is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._poke.wait(), seconds)
        self._poke.clear()

    @work(exclusive=True, group="poll")
    async def poll_node(self) -> None:
        refreshes = 0
        url = self.client.base_url
        while True:
            slow = self._want_slow or refreshes % self.slow_every == 0
            try:
                async with asyncio.timeout(self.client.timeout_s * 2 + 1):
                    snapshot = await fetch_snapshot(
                        self.client, self.clock(), job_filter=self.job_filter, slow_parts=slow
                    )
            except (NodeError, TimeoutError) as exc:
                reason = str(exc) or "no answer in time"
                delay = self.backoff.next_delay()
                self.set_connection(
                    Connection("disconnected", url, reason=reason, retry_at=self.clock() + delay)
                )
                refreshes = 0
                await self._wait(delay)
                continue
            if refreshes == 0 and self.use_events:
                self.follow_events()  # (again) after connecting: the node may have changed
            refreshes += 1
            self._want_slow = False
            self.backoff.reset()
            if not slow and self.snapshot is not None:
                snapshot = dataclasses.replace(
                    snapshot, tasks=self.snapshot.tasks, registry=self.snapshot.registry
                )
            live = (
                "live: node events stream"
                if self.events_live
                else f"live: polling every {self.poll_s:g} s"
            )
            self.set_connection(Connection("connected", url, snapshot.status.peer_id, live=live))
            # The visible tab works out its tables' changes here, in a worker thread, so that
            # the frame after the refresh only writes them.
            pane = self.pane(self.active_tab)
            prepared = await asyncio.to_thread(pane.prepare, snapshot)
            self.post_message(SnapshotArrived(snapshot, pane, prepared))
            await self._wait(self.events_poll_s if self.events_live else self.poll_s)

    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        """Refresh whenever the node's events stream says something changed, where it has one."""
        try:
            async with self.client.node_events() as events:
                self.events_live = True
                async for _event in events:
                    self.poke()
        except NotAvailable:
            pass  # polling it is
        except NodeError:
            pass  # the refresh loop notices a node that went away
        finally:
            self.events_live = False

    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        pane = self.pane(self.active_tab)
        if not pane.is_attached:
            return  # a refresh that arrives as the app closes: nothing left to show it on
        self.pause_gc_until_drawn()
        snapshot = message.snapshot
        self.snapshot = snapshot
        self.feed_throughput(snapshot)
        pane.show(snapshot, message.prepared if message.pane is pane else None)

    def pause_gc_until_drawn(self) -> None:
        """As Textual does while scrolling (PAUSE_GC_ON_SCROLL): no garbage collection
        between a refresh and the frame that shows it; it catches up once that is drawn."""
        if gc.isenabled():
            gc.disable()
            self._gc_paused = True
            self.call_after_refresh(self.resume_gc)

    def resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def feed_throughput(self, snapshot: NodeSnapshot) -> None:
        done: float | None = None
        buckets: list[tuple[float, float]] = []
        if not isinstance(snapshot.metrics, Unavailable):
            done, buckets = ThroughputHistory.counts_of(snapshot.metrics)
        if done is None and not isinstance(snapshot.counters, Unavailable):
            done = snapshot.counters.events.get("done")
        if done is not None:
            self.throughput.add(snapshot.at, done, buckets)

    def on_refresh_requested(self, message: RefreshRequested) -> None:
        self.poke()

    def on_job_filter_changed(self, message: JobFilterChanged) -> None:
        self.job_filter = message.job_filter
        self.poke()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = str(event.pane.id)
        pane = self.pane(tab)
        if self.snapshot is not None:
            pane.show(self.snapshot)
        if tab in SLOW_TABS:
            self._want_slow = True
            self.poke()
        pane.focus_primary()

    # -- actions -------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.tabs.active = tab

    def action_refresh(self) -> None:
        self._want_slow = True
        self.backoff.reset()
        self.poke()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
