"""Generating through the network from the editor: forms rendered from whatever schemas the
node lists, jobs submitted and followed live, cancelled, and results staged and accepted."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image

from lightbox_node.tasks.builtin import BUILTIN_TASKS

WIDGETS = {
    "text": {"text", "textarea", "concept"},
    "integer": {"integer"},
    "number": {"number"},
    "boolean": {"checkbox"},
    "choice": {"select"},
    "seed": {"seed"},
    "image": {"image"},
    "mask": {"mask"},
    "image_list": {"image_list"},
}


def _number_text(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def check_form(editor, task: dict[str, Any]) -> None:
    """Every input of `task` is shown with the widget of its type, holding its default."""
    editor.choose_task(task["name"])
    for spec in task["inputs"]:
        field = editor.page.locator(f"#task-form .field[data-input={spec['name']}]")
        assert field.count() == 1, f"{task['name']}.{spec['name']} has no field"
        widget = field.get_attribute("data-widget")
        assert widget in WIDGETS[spec["type"]], f"{task['name']}.{spec['name']}: {widget}"
        if spec["label"]:
            assert spec["label"] in field.text_content()
        if spec["type"] in ("image", "mask", "image_list"):
            continue  # pictures come from the canvas: no value to compare with a default
        default = spec.get("default")
        control = field.locator("input, select, textarea").first
        if control.get_attribute("title") == "Set by the generation box":
            # width/height follow the box over the picture, not the schema's default
            value = int(control.input_value())
            assert spec.get("min", 1) <= value <= spec.get("max", value), (spec, value)
        elif spec["type"] in ("integer", "number") and default is not None:
            assert control.input_value() == _number_text(default)
            if spec.get("min") is not None:
                assert float(control.get_attribute("min")) == spec["min"]
        elif spec["type"] == "text":
            assert control.input_value() == (default or "")
        elif spec["type"] == "boolean":
            assert control.is_checked() is bool(default)
        elif spec["type"] == "choice":
            assert control.input_value() == str(default)
        elif spec["type"] == "seed":
            assert control.input_value() == str(default or "random")


def test_every_offered_task_gets_a_form_with_its_widgets_and_defaults(editor, node) -> None:
    status, listing = node.api("tasks")
    assert status == 200
    tasks = listing["tasks"] + listing["federated_only"]
    assert {"echo", "sleep", "noop", "fail"} <= {t["name"] for t in tasks}
    for task in tasks:
        check_form(editor, task)
        editor.shot(f"form-{task['name']}")
    options = editor.page.locator("#task-select option").all_inner_texts()
    assert sorted(options) == sorted(t["title"] for t in tasks)
    assert "Runs on attached" in editor.page.locator("#task-hosts").inner_text()


def test_built_in_model_task_forms_render_from_their_schemas(editor) -> None:
    """With a node that offered every built-in task (the listing is stubbed in the browser),
    each form renders, and the box feeds image, mask, size and extension inputs."""
    host = {"peer_id": "lb1stubbedhost", "attached": True, "free_slots": 1}
    tasks = [{**schema.to_wire(), "hosts": [host]} for schema in BUILTIN_TASKS.values()]
    editor.page.route(
        "**/api/v1/tasks",
        lambda route: route.fulfill(
            body=json.dumps({"tasks": tasks, "federated_only": []}), content_type="application/json"
        ),
    )
    editor.js("() => lightbox.generate.loadTasks()")
    for task in tasks:
        check_form(editor, task)
        editor.shot(f"form-{task['name']}")
    editor.choose_task("txt2img")
    editor.page.fill("#box-w", "768")
    editor.page.locator("#box-w").dispatch_event("change")
    assert editor.page.locator(".field[data-input=width] input[type=number]").input_value() == "768"
    assert editor.doc()["box"]["w"] == 768
    editor.choose_task("outpaint")
    assert (
        editor.page.locator(".field[data-input=left] input[type=number]").get_attribute("readonly")
        is not None
    )
    assert "generation box" in editor.page.locator(".field[data-input=image]").inner_text()


def submit(editor, task: str, **values: str) -> None:
    editor.choose_task(task)
    for name, value in values.items():
        editor.page.fill(
            f".field[data-input={name}] input, .field[data-input={name}] textarea",
            value,
        )
    editor.page.click("#task-submit")


def test_an_echo_job_runs_and_its_text_lands_in_the_staging_strip(editor) -> None:
    submit(editor, "echo", text="hello from the editor")
    editor.wait("() => document.querySelector('.job[data-state=done]')")
    editor.wait("() => !document.querySelector('#staging').hidden")
    assert "hello from the editor" in editor.page.locator("#staging-items").inner_text()
    assert editor.page.locator("#staging-accept").is_disabled(), (
        "text results are shown, not placed"
    )
    editor.shot("echo-result")
    editor.key("Delete")
    assert editor.page.locator("#staging").is_hidden()


def test_a_sleep_job_shows_live_progress_then_its_result(editor) -> None:
    submit(editor, "sleep", seconds="2")
    progress = editor.wait(
        "() => { const j = document.querySelector('.job'); const p = Number(j?.dataset.progress);"
        " return j?.dataset.state === 'running' && p > 0 && p < 1 ? p : null; }"
    )
    assert 0 < progress < 1
    assert "slept" in editor.page.locator(".job .message").inner_text()
    editor.shot("sleep-progress")
    editor.wait("() => document.querySelector('#staging-items').textContent.includes('slept 2 s')")
    assert editor.page.locator(".job[data-state=done]").count() == 1
    assert editor.js("() => lightbox.api.websocketWorks"), "progress came over the WebSocket"
    editor.shot("sleep-done")


def test_a_running_job_can_be_cancelled(editor) -> None:
    submit(editor, "sleep", seconds="30")
    editor.wait("() => document.querySelector('.job[data-state=running]')")
    editor.page.click(".job button:has-text('Cancel')")
    editor.wait("() => document.querySelector('.job[data-state=cancelled]')")
    assert editor.page.locator(".job button:has-text('Cancel')").is_hidden()
    editor.shot("cancelled")


def test_a_faulting_job_says_why(editor) -> None:
    submit(editor, "fail", message="the GPU caught fire")
    editor.wait("() => document.querySelector('.job[data-state=faulted]')", timeout_s=60)
    assert "the GPU caught fire" in editor.page.locator(".job .message").inner_text()


def test_mistakes_show_next_to_their_fields_before_and_after_sending(editor) -> None:
    submit(editor, "echo", text="")
    error = editor.page.locator(".field[data-input=text] .error")
    assert error.inner_text() == "must not be empty"
    submit(editor, "sleep", seconds="9999")
    assert (
        "must be at most 600 s"
        in editor.page.locator(".field[data-input=seconds] .error").inner_text()
    )
    # What the node refuses comes back as problems, shown where they belong.
    problems = {
        "error": "invalid_inputs",
        "detail": "refused",
        "problems": [{"field": "seconds", "message": "too sleepy for this host"}],
    }
    editor.page.route(
        "**/api/v1/jobs",
        lambda route: (
            route.fulfill(status=422, body=json.dumps(problems), content_type="application/json")
            if route.request.method == "POST"
            else route.continue_()
        ),
    )
    editor.allowed_errors.append("status of 422")
    editor.page.fill(".field[data-input=seconds] input[type=number]", "1")
    editor.page.click("#task-submit")
    editor.wait(
        "() => document.querySelector('.field[data-input=seconds] .error')"
        ".textContent.includes('too sleepy')"
    )
    editor.shot("field-errors")


# -- image tasks ---------------------------------------------------------------------------------


def image_task(listing: dict[str, Any]) -> dict[str, Any] | None:
    for task in listing["tasks"]:
        if any(o["type"] in ("image", "image_list") for o in task["outputs"]):
            return task
    return None


def test_an_image_task_on_a_real_host_is_run_and_accepted_as_a_layer(editor, node) -> None:
    _, listing = node.api("tasks")
    task = image_task(listing)
    if task is None:
        pytest.skip(
            "no host on this node offers a task with image outputs (no model runners installed)"
        )
    editor.choose_task(task["name"])
    for spec in task["inputs"]:
        if spec["type"] == "text" and spec["required"]:
            editor.page.fill(
                f".field[data-input={spec['name']}] :is(textarea, input)",
                "a small red house",
            )
    editor.page.click("#task-submit")
    editor.wait(
        "() => document.querySelector('.job[data-state=done], .job[data-state=faulted]')",
        timeout_s=300,
    )
    assert editor.page.locator(".job[data-state=done]").count() == 1, editor.page.locator(
        ".job .message"
    ).inner_text()
    editor.wait("() => lightbox.jobs.current?.canvas")
    editor.shot("staged")
    layers = len(editor.doc()["layers"])
    editor.page.click("#staging-accept")
    assert len(editor.doc()["layers"]) == layers + 1
    editor.shot("accepted")


class StubbedNode:
    """Answers the job routes in the browser as a node with a model host would, recording
    what the editor sent; results are `result_png`."""

    def __init__(self, editor, tasks: list[dict[str, Any]], result_png: bytes) -> None:
        self.sent: list[dict[str, Any]] = []
        self.result_png = result_png
        listing = json.dumps({"tasks": tasks, "federated_only": []})
        page = editor.page
        page.route(
            "**/api/v1/tasks",
            lambda route: route.fulfill(body=listing, content_type="application/json"),
        )
        page.route("**/api/v1/jobs", self.submit)
        page.route("**/api/v1/jobs/stub-**", self.job)
        editor.js(
            "() => { lightbox.api.websocketWorks = false; return lightbox.generate.loadTasks(); }"
        )

    def submit(self, route) -> None:
        self.sent.append(json.loads(route.request.post_data))
        body = {
            "job_id": f"stub-{len(self.sent)}",
            "state": "queued",
            "progress": 0,
            "queue_position": 1,
            "task": self.sent[-1]["task"],
        }
        route.fulfill(status=201, body=json.dumps(body), content_type="application/json")

    def job(self, route) -> None:
        url = route.request.url
        job_id = url.split("/jobs/")[1].split("/")[0]
        if url.endswith("/result"):
            body = {"outputs": {"images": base64.b64encode(self.result_png).decode()}}
        else:
            body = {
                "job_id": job_id,
                "state": "done",
                "progress": 1,
                "progress_message": "",
                "queue_position": None,
            }
        route.fulfill(body=json.dumps(body), content_type="application/json")


def png(size: tuple[int, int], color: tuple[int, int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, color).save(out, "PNG")
    return out.getvalue()


def decode_data_url(text: str) -> Image.Image:
    assert text.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(text.split(",", 1)[1])))


def stub_tasks(*names: str) -> list[dict[str, Any]]:
    host = {"peer_id": "lb1stubbedhost", "attached": True, "free_slots": 1}
    return [{**BUILTIN_TASKS[name].to_wire(), "hosts": [host]} for name in names]


def test_a_generated_picture_is_staged_and_accepted_scaled_into_the_box(editor) -> None:
    stub = StubbedNode(editor, stub_tasks("txt2img"), png((256, 256), (200, 30, 30, 255)))
    editor.choose_task("txt2img")
    editor.js("() => { const d = lightbox.doc; d.setBox({ x: 64, y: 64, w: 128, h: 128 }); }")
    editor.page.fill(".field[data-input=prompt] textarea", "a red square")
    editor.page.click("#task-submit")
    editor.wait("() => lightbox.jobs.current?.canvas")
    sent = stub.sent[-1]
    assert sent["task"] == "txt2img"
    assert (sent["inputs"]["width"], sent["inputs"]["height"]) == (128, 128), (
        "the box sets the size"
    )
    assert sent["inputs"]["prompt"] == "a red square" and sent["inputs"]["seed"] == "random"
    editor.shot("staged-in-box")
    editor.key("Enter")
    layer = editor.doc()["layers"][-1]
    assert (layer["x"], layer["y"], layer["scaleX"], layer["width"]) == (64, 64, 0.5, 256)
    assert editor.flat_pixel(128, 128) == [200, 30, 30, 255]
    assert editor.flat_pixel(32, 32) == [255, 255, 255, 255]
    editor.shot("accepted")
    editor.key("Control+z")
    assert len(editor.doc()["layers"]) == 1


def test_inpainting_sends_the_box_picture_and_the_painted_mask(editor) -> None:
    stub = StubbedNode(editor, stub_tasks("inpaint"), png((128, 128), (0, 0, 255, 255)))
    editor.choose_task("inpaint")
    editor.js("() => lightbox.doc.setBox({ x: 0, y: 0, w: 128, h: 128 })")
    editor.key("k")
    editor.settings("mask", size=20, hardness=100, erase=False)
    editor.drag([(20, 64), (100, 64)])
    note = "document.querySelector('.field[data-input=mask]').textContent"
    editor.wait(f"() => /[1-9]\\d*% painted/.test({note})")
    editor.shot("mask-painted")
    editor.page.fill(".field[data-input=prompt] textarea", "a blue stripe")
    editor.page.click("#task-submit")
    editor.wait("() => lightbox.jobs.current?.canvas")
    inputs = stub.sent[-1]["inputs"]
    picture = decode_data_url(inputs["image"]).convert("RGBA")
    mask = decode_data_url(inputs["mask"]).convert("L")
    assert picture.size == mask.size == (128, 128)
    assert picture.getpixel((60, 64)) == (255, 255, 255, 255)
    assert mask.getpixel((60, 64)) == 255 and mask.getpixel((60, 10)) == 0
    editor.page.click("#staging-accept")
    assert editor.flat_pixel(64, 64)[:3] == [0, 0, 255]


def test_outpainting_is_a_box_reaching_past_the_picture(editor) -> None:
    stub = StubbedNode(editor, stub_tasks("outpaint"), png((256, 128), (0, 160, 0, 255)))
    editor.choose_task("outpaint")
    editor.js("() => lightbox.doc.setBox({ x: -128, y: 0, w: 256, h: 128 })")
    editor.settle()
    editor.shot("box-past-edge")
    assert "outpainting" in editor.page.locator("#box-note").inner_text()
    editor.page.fill(".field[data-input=prompt] textarea", "more meadow")
    editor.page.click("#task-submit")
    editor.wait("() => lightbox.jobs.current?.canvas")
    inputs = stub.sent[-1]["inputs"]
    assert (inputs["left"], inputs["right"], inputs["top"], inputs["bottom"]) == (128, 0, 0, 0)
    assert decode_data_url(inputs["image"]).size == (128, 128), (
        "the image is the part inside the picture"
    )
    editor.page.click("#staging-accept")
    doc = editor.doc()
    assert (doc["width"], doc["height"]) == (1024 + 128, 768), "the picture grew to hold the box"
    assert editor.flat_pixel(10, 10) == [0, 160, 0, 255]
    editor.shot("outpainted")
    editor.key("Control+z")
    assert (editor.doc()["width"], editor.doc()["height"]) == (1024, 768)
