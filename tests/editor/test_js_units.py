"""The editor's pure modules (history, geometry, effects, forms from schemas, mask export, the
API client's error handling, SHA-256 for the proof of work, shortcuts), unit-tested in the
same Chromium: a small test page from tests/editor/js is served beside the editor."""

from __future__ import annotations

import json
from pathlib import Path

from lightbox_node.dispatch.test_tasks import test_task_runners
from lightbox_node.tasks.builtin import BUILTIN_TASKS

HERE = Path(__file__).parent / "js"


def _task_listing() -> dict:
    """What /api/v1/tasks would list if a host offered every built-in and test task."""
    host = {"peer_id": "lb1testhost", "attached": True, "free_slots": 1}
    tasks = [{**schema.to_wire(), "hosts": [host]} for schema in BUILTIN_TASKS.values()]
    tasks += [
        {**runner.schema.to_wire(), "hosts": [host]} for runner in test_task_runners().values()
    ]
    return {"tasks": tasks, "federated_only": []}


def serve_test_files(page) -> None:
    """Answer /__tests__/… from tests/editor/js (and the schema fixture), on the editor's origin."""

    def handle(route) -> None:
        name = route.request.url.split("/__tests__/", 1)[1].split("?")[0]
        if name == "fixtures/tasks.json":
            route.fulfill(body=json.dumps(_task_listing()), content_type="application/json")
            return
        path = (HERE / name).resolve()
        if HERE not in path.parents or not path.is_file():
            route.fulfill(status=404, body="no such test file")
            return
        kind = "text/html" if path.suffix == ".html" else "text/javascript"
        route.fulfill(body=path.read_text(), content_type=kind)

    page.route("**/__tests__/**", handle)


def test_pure_modules_pass_their_unit_tests_in_chromium(editor) -> None:
    serve_test_files(editor.page)
    editor.page.goto(editor.url + "__tests__/runner.html")
    editor.page.wait_for_function("() => window.__results", timeout=60_000)
    results = editor.js("() => window.__results")
    editor.shot("unit-tests")
    failed = [f"{r['name']}: {r['error']}" for r in results if not r["ok"]]
    assert len(results) >= 40
    assert failed == [], "\n".join(failed)
