"""Fixtures for the dashboard's tests: a real node subprocess and a dashboard pointed at it.

Textual's `run_test` runs on asyncio, so the tests are plain functions around
`asyncio.run(...)`, beside pytest-trio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lightbox_node.tui.app import DashboardApp
from lightbox_node.tui.client import NodeClient

from tests.node_process import RunningNode

SIZE = (140, 44)


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """`lightbox-node run` with its default roles (queue, gpu, registry) and test tasks."""
    node = RunningNode(tmp_path_factory.mktemp("node"))
    try:
        yield node
    finally:
        node.stop()


def token_of(node: RunningNode) -> str:
    return (node.data_dir / "api.token").read_text().strip()


def dashboard_for(node: RunningNode, user: str = "operator", **options: Any) -> DashboardApp:
    client = NodeClient(node.editor, token_of(node), user, timeout_s=3.0)
    return DashboardApp(client, retry_first_s=0.5, retry_cap_s=1.0, **options)


async def until(
    pilot: Any, condition: Callable[[], Any], timeout: float = 15.0, what: str = ""
) -> Any:
    """Let the app run until `condition()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def wait_for_job(
    node: RunningNode, job_id: str, states: set[str], user: str, timeout: float = 15.0
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = node.api(f"jobs/{job_id}", user=user)
        assert status == 200, body
        if body["state"] in states:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{job_id} never reached {states}")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def screen_text(app: DashboardApp) -> str:
    """Everything on the screen as plain text, as a person would read it."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()
