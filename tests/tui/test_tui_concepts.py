"""Concepts in the dashboard: the registry tab shows the history of the concept under the
cursor, and a concept input of a generated form offers the registry's concepts and checks
the name's form before anything is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from lightbox_node.tui.app import DashboardApp
from lightbox_node.tui.client import NodeClient, parse_task
from lightbox_node.tui.form import TaskForm, concept_line, inputs_from
from lightbox_node.tui.models import ConceptModel
from lightbox_node.tui.submit import SubmitPane
from lightbox_node.tui.tables import KeyedTable
from textual.app import App
from textual.widgets import Input, Static

from lightbox_node.tasks.builtin import FINETUNE, TXT2IMG
from tests.tui.conftest import screen_text, until
from tests.tui.fake_node import ANSWERS, MODEL, NOW, PEER_A, fake_node

SIZE = (120, 36)
REX_ADAPTER = "sha256-" + "7e" * 32
CONCEPTS = [
    {"concept": "my-dog", "model_id": MODEL, "version": 1, "pending_count": 1,
     "updated_at": NOW - 7190},
    {"concept": "rex", "model_id": "", "version": 0, "pending_count": 1, "updated_at": None},
]  # fmt: skip
REGISTRY = {**ANSWERS["/api/v1/registry"], "concepts": CONCEPTS}
REX = {
    "/api/v1/registry/concepts/rex": {
        "concept": "rex", "model": None, "version": 0, "metadata": {}, "pending_count": 1,
        "pending_adapters": [], "history_length": 1,
    },
    "/api/v1/registry/concepts/rex/history": {
        "concept": "rex",
        "events": [{"seq": 1, "index": 30, "kind": "adapter", "adapter": REX_ADAPTER,
                    "weight": 2.5, "base": None, "by": PEER_A, "at": (NOW - 90) * 1000}],
    },
}  # fmt: skip


def dashboard(answers: dict[str, Any]) -> tuple[DashboardApp, list[httpx.Request]]:
    transport, seen = fake_node(answers)
    client = NodeClient("http://node.test", "token", transport=transport)
    app = DashboardApp(client, clock=lambda: NOW, use_events=False, poll_s=3600)
    app.animation_level = "none"
    return app, seen


def history_rows(app: DashboardApp) -> list[str]:
    table = app.query_one("#registry-history", KeyedTable)
    return [" ".join(c.plain for c in table.get_row(key)) for key in table.keys]


def test_the_registry_tab_shows_the_history_of_the_concept_under_the_cursor() -> None:
    async def scenario() -> None:
        app, seen = dashboard({"/api/v1/registry": REGISTRY, **REX})
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None, what="the first refresh")
            await pilot.press("6")
            history = app.query_one("#registry-history", KeyedTable)
            await until(pilot, lambda: len(history.keys) == 4, what="my-dog's history")
            assert history.border_title == "History of my-dog"
            assert history.keys == ["4", "3", "2", "1"], "newest first"
            assert "1 adapter merged → version 1, model sha256-abababab…" in history_rows(app)[2]
            assert "version 1 · sha256-abababab… · 1 adapter waiting; 4 events" in str(
                history.border_subtitle
            )
            asked = [r.url for r in seen if r.url.path.endswith("/my-dog/history")]
            assert asked[-1].params["after"] == "0" and asked[-1].params["limit"] == "50"

            concepts = app.query_one("#registry-concepts", KeyedTable)
            assert concepts.has_focus, "the tab opens on the concepts"
            await pilot.press("down")
            await until(pilot, lambda: history.keys == ["1"], what="rex's history")
            assert history.border_title == "History of rex"
            assert history_rows(app) == [
                "1 adapter adapter sha256-7e7e7e7e… submitted, weight 2.5 lb1peeraaa…aaa1 1m"
            ]
            assert "no model yet · 1 adapter waiting; 1 event" in str(history.border_subtitle)
            assert "no model yet" in screen_text(app), "a concept without a model says so"

    asyncio.run(scenario())


def test_a_history_the_node_cannot_give_is_said_in_its_title() -> None:
    async def scenario() -> None:
        missing = httpx.Response(
            404, json={"error": "unknown_concept", "detail": "the registry has no concept 'rex'"}
        )
        answers = {"/api/v1/registry": REGISTRY, **REX}
        answers["/api/v1/registry/concepts/rex"] = missing
        app, _ = dashboard(answers)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None, what="the first refresh")
            await pilot.press("6")
            history = app.query_one("#registry-history", KeyedTable)
            await until(pilot, lambda: len(history.keys) == 4, what="my-dog's history")
            await pilot.press("down")
            await until(
                pilot, lambda: "no concept 'rex'" in str(history.border_subtitle), what="why"
            )
            assert history.keys == [], "no stale rows of the concept before"

    asyncio.run(scenario())


class FormApp(App[None]):
    def compose(self) -> Any:
        yield TaskForm(id="form")


KNOWN = (
    ConceptModel("my-dog", MODEL, None, 2, 0),
    ConceptModel("rex", "", None, 0, 3),
)


def test_a_concept_input_suggests_the_registrys_concepts_and_checks_the_name() -> None:
    schema = parse_task(FINETUNE.to_wire())
    assert next(i for i in schema.inputs if i.name == "concept").format == "concept"

    async def scenario() -> None:
        app = FormApp()
        async with app.run_test(size=(100, 80)) as pilot:
            form = app.query_one(TaskForm)
            form.set_concepts(KNOWN)
            await form.build(schema)
            await pilot.pause()
            line = app.query_one(".form-field.form-text .field-concepts", Static)
            assert str(line.content) == "in the registry: my-dog, rex"
            field = app.query_one("#field-concept", Input)
            field.focus()
            await pilot.press(*"my")
            await until(pilot, lambda: field._suggestion == "my-dog", what="the suggestion")
            await pilot.press("right")  # takes the suggestion, as in a shell
            assert field.value == "my-dog"
            await until(pilot, lambda: "version 2" in str(line.content), what="the concept said")
            assert str(line.content) == "my-dog: version 2 · sha256-abababab…"

            await pilot.press("ctrl+u", *"Rex!")
            await until(pilot, lambda: "must be a concept name" in str(line.content), what="why")
            app.query_one("#field-concept_token", Input).value = "sks"
            _, problems = inputs_from(form.raw_values())
            assert problems["concept"].startswith("must be a concept name: 1 to 128 of a-z")
            field.value = "rex"
            inputs, problems = inputs_from(form.raw_values())
            assert "concept" not in problems and inputs["concept"] == "rex"
            # Concepts that arrive later reach the fields already built.
            form.set_concepts((*KNOWN, ConceptModel("tabby", "", None, 0, 1)))
            await pilot.pause()
            assert field.suggester is not None
            assert await field.suggester.get_suggestion("tab") == "tabby"

    asyncio.run(scenario())


def test_concept_line_says_what_the_typed_name_is() -> None:
    assert concept_line("", ()) == "the registry has no concepts yet"
    assert (
        concept_line("new-one", KNOWN)
        == "new-one is not in the registry yet (a fine-tune makes it)"
    )
    assert concept_line(" rex ", KNOWN) == "rex: no model yet · 3 adapters waiting"
    many = tuple(ConceptModel(f"c{i}", "", None) for i in range(9))
    assert concept_line("", many) == "in the registry: c0, c1, c2, c3, c4, c5 and 3 more"


def test_the_submit_tab_offers_the_registrys_concepts_in_the_form() -> None:
    host = {"peer_id": PEER_A, "attached": True, "free_slots": 1}
    tasks = {"tasks": [{**TXT2IMG.to_wire(), "hosts": [host]}], "federated_only": []}

    async def scenario() -> None:
        app, _ = dashboard({"/api/v1/tasks": tasks, "/api/v1/registry": REGISTRY})
        async with app.run_test(size=(120, 60)) as pilot:
            await until(pilot, lambda: app.snapshot is not None, what="the first refresh")
            await pilot.press("7")
            pane = app.query_one(SubmitPane)
            await until(pilot, lambda: "txt2img" in pane.tasks, what="the task list")
            await pane.choose(pane.tasks["txt2img"])
            await until(
                pilot, lambda: app.query("#field-concept"), what="the generated concept field"
            )
            field = app.query_one("#field-concept", Input)
            assert field.suggester is not None
            assert await field.suggester.get_suggestion("r") == "rex"
            line = app.query_one(".field-concepts", Static)
            assert str(line.content) == "in the registry: my-dog, rex"

    asyncio.run(scenario())
