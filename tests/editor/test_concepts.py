"""Concepts in the editor: a fine-tune's photos picked from the canvas's layers (and files),
checked against the schema before sending; the concept picker fed by the live node's
registry; the adapter a fine-tune returns, offered as a download and followed into the
registry; and the chosen concept's history."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from tests.editor.test_generate import decode_data_url, png, stub_tasks

MODEL = "sha256-" + "ab" * 32
ADAPTER_BYTES = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      lora weights"
LORA = "application/vnd.lightbox.lora+safetensors"


def blob_id(text: str) -> str:
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()


def picture(folder: Path, name: str, size: tuple[int, int], color: tuple[int, ...]) -> Path:
    path = folder / f"{name}.png"
    path.write_bytes(png(size, (*color, 255)))
    return path


def image_list(editor) -> Any:
    return editor.page.locator(".field[data-input=instance_images]")


def pick_layer(editor, name: str, checked: bool = True) -> None:
    box = image_list(editor).locator("[data-layers] li", has_text=name).locator("input")
    box.set_checked(checked)


def error_of(editor, name: str, containing: str = "") -> str:
    """The problem shown under an input once the submit has checked the form."""
    return editor.wait(
        "([n, part]) => { const t = document.querySelector(`.field[data-input=${n}] .error`)"
        ".textContent; return t && t.includes(part) ? t : null; }",
        arg=[name, containing],
    )


def run(editor) -> None:
    """Press the form's Run button, as a person would once the toasts over it have gone."""
    editor.js("() => document.querySelector('#toasts').replaceChildren()")
    editor.page.click("#task-submit")


def list_status(editor) -> str:
    return image_list(editor).locator(".list-status").inner_text()


class FineTuneStub:
    """The node as a host that fine-tunes would make it, answered inside the browser: the job
    finishes at once with an adapter file, and the registry then shows the concept merged."""

    def __init__(self, editor, concept: str) -> None:
        self.concept = concept
        self.sent: list[dict[str, Any]] = []
        self.done = False
        listing = json.dumps({"tasks": stub_tasks("finetune", "txt2img"), "federated_only": []})
        page = editor.page
        page.route(
            "**/api/v1/tasks",
            lambda route: route.fulfill(body=listing, content_type="application/json"),
        )
        page.route("**/api/v1/jobs", self.submit)
        page.route("**/api/v1/jobs/stub-**", self.job)
        page.route(lambda url: "/api/v1/registry" in url, self.registry)
        editor.js(
            "() => { lightbox.api.websocketWorks = false; return lightbox.generate.loadTasks(); }"
        )

    def submit(self, route) -> None:
        self.sent.append(json.loads(route.request.post_data))
        body = {"job_id": f"stub-{len(self.sent)}", "state": "queued", "progress": 0}
        route.fulfill(status=201, body=json.dumps(body), content_type="application/json")

    def job(self, route) -> None:
        url = route.request.url
        job_id = url.split("/jobs/")[1].split("/")[0]
        if url.endswith("/outputs/0"):
            route.fulfill(body=ADAPTER_BYTES, content_type=LORA)
            return
        if url.endswith("/result"):
            self.done = True
            file = {
                "index": 0,
                "name": "adapter",
                "media_type": LORA,
                "bytes": len(ADAPTER_BYTES),
                "url": f"/api/v1/jobs/{job_id}/outputs/0",
            }
            encoded = base64.b64encode(ADAPTER_BYTES).decode()
            body: dict[str, Any] = {"outputs": {"adapter": encoded}, "files": [file]}
        else:
            body = {"job_id": job_id, "state": "done", "progress": 1, "task": "finetune"}
        route.fulfill(body=json.dumps(body), content_type="application/json")

    def registry(self, route) -> None:
        """Empty until the job is done; then the concept has a merged model and a history."""
        path = route.request.url.split("/api/v1/registry", 1)[1].split("?")[0]
        adapter = "sha256-" + hashlib.sha256(ADAPTER_BYTES).hexdigest()
        events = [
            {"seq": 1, "index": 5, "kind": "adapter", "adapter": adapter, "weight": 3,
             "base": None, "by": "lb1queueaaaaaaaaaaaaaaaaaaaaaa", "at": 1_700_000_000_000},
            {"seq": 2, "index": 6, "kind": "merge", "model": MODEL, "parent": None,
             "adapters": [adapter], "weights": [3], "version": 1,
             "by": "lb1leaderbbbbbbbbbbbbbbbbbbbbb", "at": 1_700_000_004_000},
        ]  # fmt: skip
        if path == "":
            concepts = [
                {"concept": self.concept, "model_id": MODEL, "version": 1, "pending_count": 0}
            ]
            body: Any = {"leader": None, "members": [], "commits": [],
                         "concepts": concepts if self.done else []}  # fmt: skip
        elif path == f"/concepts/{self.concept}":
            body = {"concept": self.concept, "model": MODEL, "version": 1, "metadata": {},
                    "pending_adapters": [], "pending_count": 0, "history_length": 2}  # fmt: skip
        elif path == f"/concepts/{self.concept}/history":
            body = {"concept": self.concept, "events": events}
        else:
            route.fulfill(status=404, body='{"error": "unknown_concept"}')
            return
        route.fulfill(body=json.dumps(body), content_type="application/json")


def test_a_fine_tune_takes_its_photos_from_the_layers_and_returns_an_adapter(
    editor, tmp_path: Path
) -> None:
    for name, size, color in (
        ("red", (300, 300), (200, 30, 30)),
        ("green", (320, 256), (30, 200, 30)),
        ("blue", (200, 200), (30, 30, 200)),
    ):
        editor.open_image(picture(tmp_path, name, size, color))
    stub = FineTuneStub(editor, "rex-the-dog")
    editor.choose_task("finetune")
    rows = image_list(editor).locator("[data-layers] li")
    assert rows.all_inner_texts() == ["blue\n200×200", "green\n320×256", "red\n300×300"], (
        "every layer is offered, top first, at its own size"
    )
    assert list_status(editor) == "0 images chosen (3–20)"

    pick_layer(editor, "red")
    pick_layer(editor, "green")
    assert "needs at least 3 images, got 2" in list_status(editor), "said as they are chosen"
    editor.page.fill(".field[data-input=concept] input", "Rex the dog")
    editor.page.fill(".field[data-input=concept_token] input", "sks")
    run(editor)
    assert error_of(editor, "instance_images") == "needs at least 3 images, got 2"
    assert "must be a concept name" in error_of(editor, "concept")
    errors = editor.page.locator("#task-form .field .error:visible")
    assert errors.count() == 2 and stub.sent == [], "nothing is sent while fields are wrong"
    editor.shot("too-few-photos")

    pick_layer(editor, "blue")
    assert "blue: width must be at least 256 px, got 200" in list_status(editor)
    run(editor)
    assert error_of(editor, "instance_images", "blue") == (
        "blue: width must be at least 256 px, got 200"
    )
    pick_layer(editor, "blue", checked=False)
    editor.page.set_input_files(
        "input[data-list-files=instance_images]",
        str(picture(tmp_path, "white", (256, 256), (255, 255, 255))),
    )
    editor.wait("() => document.querySelector('.list-status').textContent.startsWith('3 images')")
    assert image_list(editor).locator("[data-extras] li").inner_text().startswith("white.png")
    editor.page.fill(".field[data-input=concept] input", "rex-the-dog")
    editor.page.locator(".field[data-input=concept] input").dispatch_event("change")
    assert "A new concept: rex-the-dog" in editor.page.locator(".concept-status").inner_text()
    editor.shot("photos-chosen")
    run(editor)

    editor.wait("() => document.querySelector('#staging-items .file')")
    inputs = stub.sent[-1]["inputs"]
    assert stub.sent[-1]["task"] == "finetune"
    assert (inputs["concept"], inputs["concept_token"]) == ("rex-the-dog", "sks")
    sizes = [decode_data_url(u).size for u in inputs["instance_images"]]
    assert sizes == [(320, 256), (300, 300), (256, 256)], "the layers' own pixels, then the file"
    assert decode_data_url(inputs["instance_images"][0]).convert("RGB").getpixel((5, 5)) == (
        30,
        200,
        30,
    )

    strip = editor.page.locator("#staging-items .file")
    assert "adapter submitted for concept rex-the-dog" in strip.inner_text()
    assert editor.page.locator("#staging-accept").is_disabled(), "an adapter is not a layer"
    with editor.page.expect_download() as download:
        strip.locator("a.download").click()
    assert download.value.suggested_filename == "stub-1-adapter.safetensors"
    assert Path(download.value.path()).read_bytes() == ADAPTER_BYTES

    card = editor.page.locator(".job[data-concept=rex-the-dog]")
    editor.wait("() => document.querySelector('.job[data-merged=true]')", timeout_s=20)
    assert "merged: rex-the-dog is now at version 1" in card.inner_text()
    history = editor.page.locator("#concept-history")
    editor.wait("() => document.querySelectorAll('#concept-history tbody tr').length === 2")
    assert history.locator("tbody tr").first.get_attribute("data-kind") == "merge"
    assert "1 adapter merged → version 1, model sha256-abababab…" in history.inner_text()
    assert "adapter sha256-" in history.locator("tbody tr").nth(1).inner_text()
    history.scroll_into_view_if_needed()
    editor.shot("adapter-merged")


def offer(node, concept: str, count: int) -> None:
    """Adapters offered by hand (admin route) as the registry's writes, as the dashboard
    tests do: the blobs do not exist, so nothing merges and the concept waits."""
    for i in range(count):
        status, body = node.api(
            f"registry/concepts/{concept}/adapters",
            method="POST",
            body={"adapter": blob_id(f"{concept}/{i}"), "weight": i + 2},
        )
        assert status in (200, 201), body


def test_the_concept_picker_offers_the_registrys_concepts_and_shows_a_history(editor, node) -> None:
    offer(node, "picker-rex", 2)
    offer(node, "picker-tabby", 1)
    listing = json.dumps({"tasks": stub_tasks("finetune", "txt2img"), "federated_only": []})
    editor.page.route(
        "**/api/v1/tasks",
        lambda route: route.fulfill(body=listing, content_type="application/json"),
    )
    editor.js("() => lightbox.generate.loadTasks()")
    editor.choose_task("finetune")
    field = editor.page.locator(".field[data-input=concept]")
    editor.wait(
        "() => ['picker-rex', 'picker-tabby'].every((n) => document.querySelector("
        "`.field[data-input=concept] datalist option[value=${n}]`))"
    )
    options = field.locator("datalist option")
    labels = dict(options.evaluate_all("os => os.map((o) => [o.value, o.label])"))
    assert labels["picker-rex"] == "no model yet · 2 adapters waiting"
    assert labels["picker-tabby"] == "no model yet · 1 adapter waiting"

    field.locator("input").fill("picker-rex")
    status = field.locator(".concept-status")
    assert status.inner_text() == "Adds to picker-rex: no model yet · 2 adapters waiting"
    history = editor.page.locator("#concept-history")
    editor.wait("() => document.querySelectorAll('#concept-history tbody tr').length === 2")
    assert "History of picker-rex" in history.inner_text()
    assert "no model yet · 2 adapters waiting; 2 events." in history.inner_text()
    rows = history.locator("tbody tr")
    assert rows.first.get_attribute("data-seq") == "2", "newest first"
    assert f"adapter {blob_id('picker-rex/1')[:15]}… submitted, weight 3" in rows.first.inner_text()
    assert node.peer_id[:8] in rows.first.inner_text(), "who proposed it"
    history.scroll_into_view_if_needed()
    editor.shot("concept-history")

    field.locator("input").fill("picker-new")
    field.locator("input").dispatch_event("change")
    assert "A new concept: picker-new" in status.inner_text()
    editor.wait("() => document.querySelector('#concept-history').textContent.includes('Not in')")
    field.locator("input").fill("Picker New")
    assert "Must be a concept name" in status.inner_text()
    assert "bad" in (status.get_attribute("class") or "")
    field.locator("input").dispatch_event("change")
    assert history.is_hidden(), "no history for what cannot be a concept"

    # A painting task picks among concepts; one without a model yet cannot be chosen.
    editor.choose_task("txt2img")
    select = editor.page.locator(".field[data-input=concept] select")
    editor.wait(
        "() => [...document.querySelectorAll('.field[data-input=concept] option')]"
        ".some((o) => o.value === 'picker-tabby')"
    )
    texts = select.locator("option").all_inner_texts()
    assert texts[0] == "— no concept —"
    assert "picker-rex — no model yet · 2 adapters waiting" in texts
    assert select.locator("option[value=picker-rex]").is_disabled()
    assert select.input_value() == "" and history.is_hidden()
    editor.shot("concept-select")


def test_image_list_thumbnails_follow_the_layers(editor) -> None:
    listing = json.dumps({"tasks": stub_tasks("finetune"), "federated_only": []})
    editor.page.route(
        "**/api/v1/tasks",
        lambda route: route.fulfill(body=listing, content_type="application/json"),
    )
    editor.js("() => lightbox.generate.loadTasks()")
    editor.choose_task("finetune")
    assert image_list(editor).locator("[data-layers] li").count() == 1
    pick_layer(editor, "Background")
    editor.key("Control+Shift+n")  # a new layer: offered too, the choice kept
    editor.wait("() => document.querySelectorAll('[data-layers] li').length === 2")
    assert image_list(editor).locator("[data-layers] input:checked").count() == 1
    assert "1 image chosen" in list_status(editor)
    editor.key("Control+z")
    editor.wait("() => document.querySelectorAll('[data-layers] li').length === 1")
