"""The form generated from a task's schema: one field per input, values typed as the job
takes them, and problems said per field."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from lightbox_node.tui.client import parse_task
from lightbox_node.tui.form import (
    FormProblem,
    TaskForm,
    convert_value,
    inputs_from,
    problems_by_field,
)
from lightbox_node.tui.models import InputSpec
from textual.app import App
from textual.widgets import Collapsible, Input, Select, Switch

from tests.tui.fake_node import EVERY_INPUT_TASK

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class FormApp(App[None]):
    def compose(self) -> Any:
        yield TaskForm(id="form")


def test_every_input_type_gets_its_own_editor_with_its_default() -> None:
    schema = parse_task(EVERY_INPUT_TASK)

    async def scenario() -> None:
        app = FormApp()
        async with app.run_test(size=(100, 60)) as pilot:
            form = app.query_one(TaskForm)
            await form.build(schema)
            await pilot.pause()
            assert isinstance(app.query_one("#field-prompt"), Input)
            assert app.query_one("#field-steps", Input).value == "20"
            assert app.query_one("#field-tiling", Switch).value is False
            assert app.query_one("#field-sampler", Select).value == "euler"
            assert app.query_one("#field-seed", Input).value == "random"
            # The advanced image input is folded away.
            assert any(isinstance(a, Collapsible) for a in app.query_one("#field-init").ancestors)
            app.query_one("#field-prompt", Input).value = "a lighthouse"
            app.query_one("#field-steps", Input).value = "30"
            inputs, problems = inputs_from(form.raw_values())
            assert problems == {}
            assert inputs == {
                "prompt": "a lighthouse",
                "steps": 30,
                "guidance": 7.5,
                "tiling": False,
                "sampler": "euler",
                "seed": "random",
            }
            app.query_one("#field-prompt", Input).value = ""
            app.query_one("#field-steps", Input).value = "900"
            inputs, problems = inputs_from(form.raw_values())
            assert problems == {"prompt": "required", "steps": "must be at most 150"}
            form.show_problems(problems)
            await pilot.pause()
            assert len(app.query(".has-problem")) == 2

    asyncio.run(scenario())


def spec(kind: str, **extra: Any) -> InputSpec:
    return InputSpec(type=kind, name="x", label="X", **extra)


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("integer", "12", 12),
        ("number", "0.25", 0.25),
        ("seed", "random", "random"),
        ("seed", "42", 42),
        ("boolean", True, True),
        ("choice", "ddim", "ddim"),
        ("text", "  keep spaces ", "  keep spaces "),
    ],
)
def test_typed_text_becomes_the_inputs_type(kind: str, raw: Any, expected: Any) -> None:
    assert convert_value(spec(kind), raw) == (True, expected)


@pytest.mark.parametrize(
    ("kind", "raw", "why"),
    [
        ("integer", "1.5", "a whole number"),
        ("number", "lots", "a number"),
        ("seed", "-1", "from 0 to"),
        ("image", "/no/such/file.png", "cannot read"),
        ("image", "notes.txt", ".png, .jpg or .webp"),
    ],
)
def test_values_that_cannot_be_inputs_say_why(kind: str, raw: Any, why: str) -> None:
    with pytest.raises(FormProblem, match=why):
        convert_value(spec(kind), raw)


def test_an_empty_optional_input_is_left_to_its_default() -> None:
    assert convert_value(spec("integer"), "") == (False, None)
    with pytest.raises(FormProblem, match="required"):
        convert_value(spec("integer", required=True), " ")


def test_image_files_travel_as_data_urls(tmp_path: Path) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    present, value = convert_value(spec("image"), str(image))
    assert present and value == "data:image/png;base64," + base64.b64encode(PNG).decode()
    present, values = convert_value(spec("image_list"), f"{image}, {image}")
    assert present and len(values) == 2


def test_the_nodes_problems_are_matched_to_their_inputs() -> None:
    problems = [
        {"field": "init.width", "message": "too wide"},
        {"field": "refs[2]", "message": "not an image"},
        {"field": "init", "message": "not a png"},
    ]
    assert problems_by_field(problems) == {
        "init": "too wide; not a png",
        "refs": "not an image",
    }
