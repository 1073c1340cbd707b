"""Every tab, drawn from the same fixed node answers, must look as it did (SVG snapshots).

A changed screen fails with the new picture saved beside the test's temporary files; when
the change is wanted, refresh the pictures with `LIGHTBOX_UPDATE_SNAPSHOTS=1 pytest
tests/tui/test_tui_snapshots.py` and review them like code. (pytest-textual-snapshot does
the same, but pins pytest below 9 through syrupy, so these few lines stand in for it.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lightbox_node.tui.app import DashboardApp
from lightbox_node.tui.client import NodeClient
from lightbox_node.tui.tables import KeyedTable

from tests.tui.conftest import screen_text, until
from tests.tui.fake_node import NOW, fake_node

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (120, 36)


def table_rows(app: DashboardApp, selector: str) -> int:
    return app.query_one(selector, KeyedTable).row_count


READY: dict[str, tuple[Callable[[DashboardApp], Any], tuple[str, ...]]] = {
    "overview": (lambda app: "Done jobs" in screen_text(app), ("Uptime", "1h 02m 05s")),
    "peers": (
        lambda app: "first_deliveries" in screen_text(app),
        ("2 peers known, 1 linked", "Score components"),
    ),
    "hosts": (lambda app: "Text to image (txt2img)" in screen_text(app), ("online", "1/1")),
    "jobs": (lambda app: table_rows(app, "#jobs-table") == 4, ("all jobs on this node",)),
    "trust": (lambda app: table_rows(app, "#users-table") == 2, ("suspended", "alice")),
    "registry": (
        lambda app: (
            table_rows(app, "#registry-commits") == 1 and table_rows(app, "#registry-history") == 4
        ),
        ("leader", "History of my-dog", "1 adapter merged → version 1"),
    ),
    "submit": (lambda app: app.query_one("#task-select").value == "txt2img", ("Prompt *",)),
}


@pytest.mark.parametrize("tab", list(READY))
def test_each_tab_looks_as_it_did(tab: str, tmp_path: Path) -> None:
    ready, words = READY[tab]

    async def scenario() -> str:
        transport, _ = fake_node()
        client = NodeClient("http://node.test", "token", transport=transport)
        # One refresh (plus one when a tab needs the task list): the sparklines must not
        # grow a point per refresh while the test waits.
        app = DashboardApp(client, clock=lambda: NOW, use_events=False, poll_s=3600)
        app.animation_level = "none"  # the tab underline would be caught mid-slide
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None, what="the first refresh")
            app.action_show_tab(tab)
            if tab == "submit":
                await until(pilot, lambda: "txt2img" in app.panes["submit"].tasks, what="tasks")
                app.query_one("#task-select").value = "txt2img"
            await until(pilot, lambda: ready(app), what=f"the {tab} tab")
            await pilot.wait_for_scheduled_animations()
            await pilot.pause()
            text = screen_text(app)
            for word in words:
                assert word in text, f"{word!r} not on the {tab} tab"
            return app.export_screenshot(title=f"Lightbox dashboard: {tab}")

    svg = asyncio.run(scenario())
    expected = SNAPSHOTS / f"{tab}.svg"
    if os.environ.get("LIGHTBOX_UPDATE_SNAPSHOTS") or not expected.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        expected.write_text(svg)
        return
    if svg != expected.read_text():
        actual = tmp_path / f"{tab}.svg"
        actual.write_text(svg)
        pytest.fail(f"the {tab} tab changed: compare {actual} with {expected}")
