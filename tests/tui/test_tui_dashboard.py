"""The dashboard against a real node: every tab, submitting from a generated form, cancelling,
suspending, and surviving a restart of the node."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightbox_node.tui.app import DashboardApp
from lightbox_node.tui.form import TaskForm
from lightbox_node.tui.help import HelpScreen
from lightbox_node.tui.jobs import JobsPane
from lightbox_node.tui.submit import SubmitPane
from lightbox_node.tui.tables import KeyedTable, short_id
from textual.widgets import Static

from tests.node_process import RunningNode
from tests.tui.conftest import SIZE, dashboard_for, run, screen_text, until, wait_for_job

pytestmark = pytest.mark.slow


def connected(app: DashboardApp) -> bool:
    return app.connection is not None and app.connection.state == "connected"


def test_every_tab_shows_the_live_node(live_node: RunningNode) -> None:
    async def scenario() -> None:
        app = dashboard_for(live_node)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None, what="the first refresh")
            # The panels render after the first refresh lands: wait for them, on a busy CI too.
            for shown in (
                "connected to",
                live_node.peer_id,
                "queue, gpu, registry",
                "Jobs per minute",
            ):
                await until(pilot, lambda shown=shown: shown in screen_text(app), what=shown)

            await pilot.press("2")
            await until(pilot, lambda: "peers known" in screen_text(app), what="peers tab")

            await pilot.press("3")
            hosts = app.query_one("#hosts-table", KeyedTable)
            await until(pilot, lambda: live_node.peer_id in hosts.keys, what="this node's host")
            await until(pilot, lambda: "Echo (echo)" in screen_text(app), what="task schemas")

            await pilot.press("4")
            await until(pilot, lambda: "Host queues" in screen_text(app), what="jobs tab")
            scope = str(app.query_one("#jobs-scope", Static).content)
            # A node with the admin job list shows every job; an older one, the user's own.
            assert scope == "all jobs on this node" or "no node-wide job list" in scope

            await pilot.press("5")
            await until(pilot, lambda: "users" in screen_text(app), what="trust tab")

            status, _ = live_node.api(
                "registry/concepts/rex/adapters",
                method="POST",
                body={"adapter": "sha256-" + "ab" * 32, "weight": 2},
            )
            assert status in (200, 201)
            await pilot.press("6")
            leader = f"1 member; leader {short_id(live_node.peer_id)}"
            await until(pilot, lambda: leader in screen_text(app), what="the registry leader")
            concepts = app.query_one("#registry-concepts", KeyedTable)
            await until(pilot, lambda: "rex" in concepts.keys, what="the offered concept")
            history = app.query_one("#registry-history", KeyedTable)
            await until(pilot, lambda: history.keys == ["1"], what="the concept's history")
            assert history.border_title == "History of rex"
            assert "adapter sha256-abababab… submitted, weight 2" in screen_text(app)

            await pilot.press("7")
            submit = app.query_one(SubmitPane)
            await until(pilot, lambda: {"echo", "sleep"} <= set(submit.tasks), what="tasks")

            await pilot.press("question_mark")
            await until(pilot, lambda: "Lightbox dashboard" in screen_text(app), what="help")
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, HelpScreen), what="help gone")
            await pilot.press("1")
            await until(pilot, lambda: app.active_tab == "overview", what="back to the overview")

    run(scenario())


def test_a_job_submitted_from_the_generated_form_is_saved_to_a_file(
    live_node: RunningNode, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "echoed.txt"

    async def scenario() -> None:
        app = dashboard_for(live_node, user="dora")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("7")
            pane = app.query_one(SubmitPane)
            await until(pilot, lambda: "echo" in pane.tasks, what="the task list")
            # Choose the task as a person would: open the list, type to find "Echo", pick it.
            await pilot.click("#task-select")
            await pilot.press(*"echo", "enter")
            form = app.query_one("#task-form", TaskForm)
            await until(pilot, lambda: form.schema and form.schema.name == "echo", what="form")
            await until(pilot, lambda: form.fields, what="the generated fields")
            assert [f.spec.name for f in form.fields] == ["text"]

            await pilot.click("#field-text")
            await pilot.press(*"hello from the dashboard")
            await pilot.click("#submit-job")
            await until(pilot, lambda: pane.result is not None, what="the result")
            assert pane.job is not None and pane.job.state == "done"

            await pilot.click("#save-path")
            await pilot.press("end", "ctrl+u", *str(target))
            await pilot.press("ctrl+o")
            await until(pilot, lambda: pane.saved, what="the saved file")

    run(scenario())
    assert target.read_text() == "hello from the dashboard"


def test_a_form_problem_is_shown_before_anything_is_submitted(live_node: RunningNode) -> None:
    async def scenario() -> None:
        app = dashboard_for(live_node)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("7")
            pane = app.query_one(SubmitPane)
            await until(pilot, lambda: "sleep" in pane.tasks, what="the task list")
            await pane.choose(pane.tasks["sleep"])
            field = app.query_one("#field-seconds")
            await until(pilot, lambda: field.region.height, what="the laid-out field")
            await pilot.click("#field-seconds")
            await pilot.press("end", "ctrl+u", *"900")  # the schema says at most 600
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "Fix 1 field" in screen_text(app), what="the problem")
            assert "must be at most 600" in screen_text(app)
            assert pane.job is None

    run(scenario())


def test_cancelling_a_running_job_cancels_it_on_the_node(live_node: RunningNode) -> None:
    status, job = live_node.api(
        "jobs", method="POST", body={"task": "sleep", "inputs": {"seconds": 30}}, user="erin"
    )
    assert status == 201, job
    job_id = job["job_id"]
    wait_for_job(live_node, job_id, {"running"}, user="erin")

    async def scenario() -> None:
        app = dashboard_for(live_node)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("4")
            jobs = app.query_one(JobsPane)
            await pilot.press("f", *"erin", "enter")  # filter by user: the node lists erin's jobs
            table = app.query_one("#jobs-table", KeyedTable)
            await until(pilot, lambda: job_id in table.keys, what="erin's job in the table")
            table.move_cursor(row=table.keys.index(job_id))
            table.focus()
            await pilot.pause()
            assert jobs.selected_job() is not None
            await pilot.press("c")
            await until(pilot, lambda: "Cancel " + job_id in screen_text(app), what="confirm")
            await pilot.press("y")
            await until(
                pilot,
                lambda: any(
                    j.job_id == job_id and j.state == "cancelled"
                    for j in (jobs.snapshot.jobs.jobs if jobs.snapshot else ())
                ),
                what="the cancelled state in the table",
            )

    run(scenario())
    assert wait_for_job(live_node, job_id, {"cancelled"}, user="erin")["state"] == "cancelled"


def test_a_suspended_user_is_refused_by_the_node(live_node: RunningNode) -> None:
    echo = {"task": "echo", "inputs": {"text": "hi"}}
    assert live_node.api("jobs", method="POST", body=echo, user="mallory")[0] == 201
    answers: list[tuple[int, dict]] = []

    def suspended(app: DashboardApp) -> bool | None:
        users = app.snapshot.users if app.snapshot else ()
        row = next((u for u in users if getattr(u, "username", "") == "mallory"), None)
        return None if row is None else row.suspended

    async def scenario() -> None:
        app = dashboard_for(live_node)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            await until(pilot, lambda: app.query_one("#trust-user").region.height, what="form")
            await pilot.click("#trust-user")
            await pilot.press(*"mallory")
            await pilot.click("#trust-reason")
            await pilot.press(*"too many jobs")
            await pilot.click("#suspend-user")
            await until(pilot, lambda: suspended(app) is True, what="mallory suspended")
            assert "mallory" in app.query_one("#users-table", KeyedTable).keys
            answers.append(live_node.api("jobs", method="POST", body=echo, user="mallory"))
            await pilot.click("#restore-user")
            await until(pilot, lambda: suspended(app) is False, what="mallory restored")

    run(scenario())
    status, body = answers[0]
    assert status == 403 and body["error"] == "suspended", body
    assert live_node.api("jobs", method="POST", body=echo, user="mallory")[0] == 201


def test_the_dashboard_survives_the_node_restarting(tmp_path: Path) -> None:
    node = RunningNode(tmp_path / "node")
    http_port = node.editor.rstrip("/").rsplit(":", 1)[1]
    p2p_port = node.p2p_address.rsplit(":", 1)[1]
    restarted: list[RunningNode] = []

    async def scenario() -> None:
        app = dashboard_for(node)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: connected(app), what="connected")
            node.stop()
            await until(
                pilot, lambda: "disconnected" in screen_text(app), what="disconnected shown"
            )
            assert "retrying in" in screen_text(app)
            # The same data folder and ports: the same node, back.
            restarted.append(
                RunningNode(
                    node.data_dir,
                    "--http-port",
                    http_port,
                    "--p2p-port",
                    p2p_port,
                    "--set",
                    f"http_port={http_port}",
                    "--set",
                    f"p2p_port={p2p_port}",
                )
            )
            await until(pilot, lambda: connected(app), timeout=20, what="reconnected")
            assert "connected to" in screen_text(app)
            assert app.snapshot is not None and app.snapshot.status.peer_id == node.peer_id

    try:
        run(scenario())
    finally:
        node.stop()
        for again in restarted:
            again.stop()
