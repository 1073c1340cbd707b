"""Image tasks end to end: the editor in Chromium sends the generation box's picture and mask
to the live node, whose tiny demo models (random weights through the real diffusers, rembg
and RRDBNet code) run the job, and the result is staged and accepted as a layer.

Tiny models paint noise, so these tests check structure, not content: what the job was sent,
that it ran on the node's own host, the result's size, where its layer lands, its alpha, and
the exported PNG. Jobs are kept small (boxes of 64–192 px, 2 steps). One page serves the
module; each test starts from a new picture.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

STEPS = "2"
CHECKERBOARD = (240, 152, 64, 64)
FINAL_STATES = ("done", "faulted", "cancelled", "expired")


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320×240 picture: a red-to-blue ramp with a green square at (100..139, 80..119) and a
    magenta-and-green checkerboard of 8 px cells at (240..303, 152..215). The tiny upscaler's
    random weights answer a gentle ramp with a nearly flat grey, which its host refuses as
    "one flat colour"; the checkerboard gives it contrast enough to pass."""
    image = Image.new("RGB", (320, 240))
    pixels = image.load()
    for y in range(240):
        for x in range(320):
            pixels[x, y] = (255 - x * 255 // 319, 40, x * 255 // 319)
    for y in range(80, 120):
        for x in range(100, 140):
            pixels[x, y] = (0, 200, 0)
    for y in range(152, 216):
        for x in range(240, 304):
            pixels[x, y] = (255, 0, 255) if (x // 8 + y // 8) % 2 else (0, 255, 0)
    path = tmp_path_factory.mktemp("pictures") / "photo.png"
    image.save(path)
    return path


@pytest.fixture
def editor(same_page_editor, node, photo):
    """The module's editor with the photo open, on a node whose hosts run the tiny models."""
    _, listing = node.api("tasks")
    offered = {t["name"] for t in listing["tasks"]}
    needed = {"txt2img", "inpaint", "outpaint", "remove_background", "upscale"}
    if not needed <= offered:
        pytest.skip(f"the node offers no {', '.join(sorted(needed - offered))} (no ml extra)")
    same_page_editor.open_image(photo)
    return same_page_editor


# -- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RanJob:
    """A job the editor submitted and the node finished: what was sent and what the node says."""

    inputs: dict[str, Any]
    job: dict[str, Any]


def decode_data_url(text: str) -> Image.Image:
    assert text.startswith("data:image/png;base64,"), text[:40]
    return Image.open(io.BytesIO(base64.b64decode(text.split(",", 1)[1])))


def fill(editor, name: str, value: str) -> None:
    """Set the form field of input `name` as a person would: type, or pick an option."""
    control = editor.page.locator(
        f"#task-form .field[data-input={name}] :is(input, textarea, select)"
    ).first
    if control.evaluate("(el) => el.tagName") == "SELECT":
        control.select_option(value)
    else:
        control.fill(value)
        control.dispatch_event("change")


def box_from_selection(editor, task: str, x: int, y: int, w: int, h: int) -> dict[str, int]:
    """Pick `task`, drag a selection over the picture and make the generation box from it."""
    editor.choose_task(task)
    editor.key("m")
    editor.drag([(x, y), (x + w, y + h)])
    editor.page.click("#box-panel button:has-text('From selection')")
    editor.settle()
    box = editor.doc()["box"]
    assert box == {"x": x, "y": y, "w": w, "h": h}
    return box


def run(editor, node, task: str, **fields: str) -> RanJob:
    """Fill the task's form, run it, wait until the node has finished it and its result is
    staged, and check that it ran on the node's own host."""
    editor.choose_task(task)
    for name, value in fields.items():
        fill(editor, name, value)
    page = editor.page
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/api/v1/jobs")
    ) as answer:
        page.click("#task-submit")
    response = answer.value
    assert response.status == 201, response.text()
    inputs = json.loads(response.request.post_data)["inputs"]
    job_id = response.json()["job_id"]
    state = editor.wait(
        """([id, final]) => { const s = lightbox.jobs.cards.get(id)?.el.dataset.state;
            return final.includes(s) && s; }""",
        [job_id, list(FINAL_STATES)],
        timeout_s=300,
    )
    card = page.locator(f".job[data-job-id='{job_id}'] .message")
    assert state == "done", card.inner_text()
    editor.wait(
        "(id) => lightbox.jobs.current?.job.job_id === id && lightbox.jobs.current.canvas",
        job_id,
    )
    status, job = node.api(f"jobs/{job_id}", user="operator")
    assert status == 200 and job["state"] == "done"
    assert job["host"] == node.peer_id, "the job ran on the node's own model host"
    return RanJob(inputs=inputs, job=job)


def staged_size(editor) -> tuple[int, int]:
    return tuple(
        editor.js("() => [lightbox.jobs.current.canvas.width, lightbox.jobs.current.canvas.height]")
    )


def accept(editor) -> dict[str, Any]:
    """Accept the staged result; returns its new layer (the top one)."""
    layers = len(editor.doc()["layers"])
    editor.page.click("#staging-accept")
    editor.settle()
    doc = editor.doc()
    assert len(doc["layers"]) == layers + 1 and doc["undo"] == "Accept result"
    layer = doc["layers"][-1]
    assert doc["active"] == layer["id"]
    return layer


def assert_fills_box(layer: dict[str, Any], box: dict[str, int]) -> None:
    assert (layer["x"], layer["y"]) == (box["x"], box["y"])
    assert layer["width"] * layer["scaleX"] == pytest.approx(box["w"])
    assert layer["height"] * layer["scaleY"] == pytest.approx(box["h"])
    assert layer["rotation"] == 0 and layer["opacity"] == 1


def layer_alpha(editor, index: int) -> list[int]:
    """Every alpha value of a layer's own pixels."""
    return editor.js(
        """(i) => { const c = lightbox.doc.layers[i].canvas;
            const d = c.getContext('2d', {willReadFrequently: true})
              .getImageData(0, 0, c.width, c.height).data;
            const out = new Array(d.length / 4);
            for (let k = 0; k < out.length; k++) out[k] = d[k * 4 + 3];
            return out; }""",
        index,
    )


def export_png(editor, tmp_path: Path) -> Image.Image:
    with editor.page.expect_download() as download:
        editor.page.click("#export-png")
    path = tmp_path / "export.png"
    download.value.save_as(path)
    exported = Image.open(path)
    assert exported.format == "PNG"
    return exported.convert("RGBA")


def flat(editor) -> Image.Image:
    """The flattened picture, as the editor composes it, read back as a PIL image."""
    url = editor.js(
        """async () => { const c = lightbox.doc.flatten();
            const blob = await c.convertToBlob({ type: 'image/png' });
            return await new Promise((r) => { const f = new FileReader();
              f.onload = () => r(f.result); f.readAsDataURL(blob); }); }"""
    )
    return decode_data_url(url).convert("RGBA")


# -- the tasks --------------------------------------------------------------------------------


def test_txt2img_in_the_box_is_accepted_as_a_layer_filling_the_box(editor, node) -> None:
    box = box_from_selection(editor, "txt2img", 32, 48, 128, 96)
    editor.shot("box")
    ran = run(editor, node, "txt2img", prompt="a small red house", steps=STEPS)
    assert (ran.inputs["width"], ran.inputs["height"]) == (128, 96), "the box sets the size"
    assert ran.inputs["steps"] == 2 and ran.inputs["prompt"] == "a small red house"
    assert staged_size(editor) == (128, 96)
    editor.shot("staged")
    before = flat(editor)
    layer = accept(editor)
    assert_fills_box(layer, box)
    assert (editor.doc()["width"], editor.doc()["height"]) == (320, 240)
    after = flat(editor)
    top = len(editor.doc()["layers"]) - 1
    assert after.getpixel((32 + 64, 48 + 48)) == tuple(editor.layer_pixel(top, 64, 48))
    for outside in ((20, 20), (170, 100), (100, 200)):
        assert after.getpixel(outside) == before.getpixel(outside), outside
    editor.shot("accepted")
    editor.key("Control+z")
    assert len(editor.doc()["layers"]) == 1


def test_a_painted_mask_is_inpainted_and_the_result_replaces_only_the_box(editor, node) -> None:
    box = box_from_selection(editor, "inpaint", 64, 64, 128, 128)
    editor.key("k")
    editor.settings("mask", size=24, hardness=100, erase=False)
    editor.drag([(80, 128), (176, 128)])
    note = "document.querySelector('.field[data-input=mask]').textContent"
    editor.wait(f"() => /[1-9]\\d*% painted/.test({note})")
    editor.shot("mask-painted")
    before = flat(editor)
    ran = run(editor, node, "inpaint", prompt="a blue stripe", steps=STEPS)
    picture = decode_data_url(ran.inputs["image"]).convert("RGBA")
    mask = decode_data_url(ran.inputs["mask"]).convert("L")
    assert picture.size == mask.size == (128, 128)
    assert picture.getpixel((60, 30)) == before.getpixel((64 + 60, 64 + 30)), "the box's picture"
    assert mask.getpixel((64, 64)) == 255, "white where the mask was painted"
    assert mask.getpixel((64, 10)) == 0 and mask.getpixel((64, 120)) == 0, "black elsewhere"
    assert staged_size(editor) == (128, 128)
    editor.shot("staged")
    layer = accept(editor)
    assert_fills_box(layer, box)
    after = flat(editor)
    for outside in ((30, 30), (63, 128), (192, 128), (128, 63), (128, 192), (300, 230)):
        assert after.getpixel(outside) == before.getpixel(outside), outside
    top = len(editor.doc()["layers"]) - 1
    assert after.getpixel((128, 128)) == tuple(editor.layer_pixel(top, 64, 64))
    editor.shot("inpainted")


@dataclass(frozen=True)
class Outpainting:
    """A box dragged `by` from `selection` until it reaches past the picture, and what follows."""

    selection: tuple[int, int, int, int]
    by: tuple[int, int]
    sides: tuple[int, int, int, int]
    """left, right, top, bottom: what the job is asked to paint around its image"""
    image: tuple[int, int, int, int]
    """the part of the box inside the picture that the job is sent"""
    shift: tuple[int, int]
    """where the old picture's top-left corner lands in the grown picture"""
    blank: tuple[int, int]
    """a point of the grown picture outside both the box and the old picture"""
    painted: tuple[int, int]
    """a point of the grown picture only the job painted"""


OUTPAINTINGS = {
    "left": Outpainting(
        selection=(0, 56, 128, 128),
        by=(-64, 0),
        sides=(64, 0, 0, 0),
        image=(0, 56, 64, 128),
        shift=(64, 0),
        blank=(10, 20),
        painted=(10, 120),
    ),
    "bottom-right": Outpainting(
        selection=(192, 112, 128, 128),
        by=(64, 64),
        sides=(0, 64, 0, 64),
        image=(256, 176, 64, 64),
        shift=(0, 0),
        blank=(350, 20),
        painted=(350, 280),
    ),
}


@pytest.mark.parametrize("case", OUTPAINTINGS.values(), ids=OUTPAINTINGS.keys())
def test_a_box_past_an_edge_is_outpainted_and_extends_the_picture(
    editor, node, case: Outpainting
) -> None:
    x, y, w, h = case.selection
    box_from_selection(editor, "outpaint", x, y, w, h)
    editor.key("g")
    centre = (x + w / 2, y + h / 2)
    editor.drag([centre, (centre[0] + case.by[0], centre[1] + case.by[1])])
    box = editor.doc()["box"]
    assert box == {"x": x + case.by[0], "y": y + case.by[1], "w": w, "h": h}
    assert "outpainting" in editor.page.locator("#box-note").inner_text()
    editor.shot("box-past-edge")
    before = flat(editor)
    ran = run(editor, node, "outpaint", prompt="more meadow", steps=STEPS)
    sides = (ran.inputs["left"], ran.inputs["right"], ran.inputs["top"], ran.inputs["bottom"])
    assert sides == case.sides
    sent = decode_data_url(ran.inputs["image"]).convert("RGBA")
    ix, iy, iw, ih = case.image
    assert sent.size == (iw, ih), "the image is the part of the box inside the picture"
    assert sent.getpixel((10, 10)) == before.getpixel((ix + 10, iy + 10))
    assert staged_size(editor) == (w, h), "the image and what was painted around it"
    editor.shot("staged")
    layer = accept(editor)
    dx, dy = case.shift
    grown = (320 + case.sides[0] + case.sides[1], 240 + case.sides[2] + case.sides[3])
    doc = editor.doc()
    assert (doc["width"], doc["height"]) == grown, "the picture grew to hold the box"
    assert_fills_box(layer, {**box, "x": box["x"] + dx, "y": box["y"] + dy})
    photo_layer = doc["layers"][0]
    assert (photo_layer["x"], photo_layer["y"]) == case.shift, "the old picture moved with it"
    after = flat(editor)
    assert after.size == grown
    assert after.getpixel(case.blank)[3] == 0, "new area outside the box is transparent"
    assert after.getpixel(case.painted)[3] == 255, "the result covers the new area in the box"
    for old in ((200, 20), (300, 230), (120, 100), (20, 230)):
        if not (box["x"] <= old[0] < box["x"] + w and box["y"] <= old[1] < box["y"] + h):
            assert after.getpixel((old[0] + dx, old[1] + dy)) == before.getpixel(old), old
    editor.shot("outpainted")
    editor.key("Control+z")
    assert (editor.doc()["width"], editor.doc()["height"]) == (320, 240)
    assert editor.doc()["box"] == box, "undo puts the picture and the box back"


def test_a_removed_background_is_real_transparency_in_the_layer_and_the_export(
    editor, node, tmp_path
) -> None:
    box = box_from_selection(editor, "remove_background", 0, 0, 320, 240)
    ran = run(editor, node, "remove_background")
    assert decode_data_url(ran.inputs["image"]).size == (320, 240)
    assert staged_size(editor) == (320, 240)
    editor.shot("staged")
    layer = accept(editor)
    assert_fills_box(layer, box)
    alpha = layer_alpha(editor, 1)
    # Random weights cut out noise, but the alpha must really vary: mostly clear here, kept there.
    assert min(alpha) < 64 and max(alpha) > 192, (min(alpha), max(alpha))
    editor.tab("layers")
    editor.page.locator("#layer-list li").nth(1).locator(".visibility").click()
    assert editor.doc()["layers"][0]["visible"] is False, "the photo under the cut-out is hidden"
    editor.shot("cut-out")
    exported = export_png(editor, tmp_path)
    assert exported.size == (320, 240)
    assert list(exported.getchannel("A").tobytes()) == alpha, "the export keeps the alpha"
    clearest = alpha.index(min(alpha))
    assert exported.getpixel((clearest % 320, clearest // 320))[3] < 64


def test_an_upscaled_box_is_larger_and_accepted_scaled_into_the_box(editor, node, tmp_path) -> None:
    box = box_from_selection(editor, "upscale", *CHECKERBOARD)
    ran = run(editor, node, "upscale", scale="2")
    assert ran.inputs["scale"] == 2
    sent = decode_data_url(ran.inputs["image"])
    assert sent.size == (64, 64)
    assert staged_size(editor) == (128, 128), "twice the box on each side"
    editor.shot("staged")
    before = flat(editor)
    layer = accept(editor)
    assert (layer["width"], layer["height"]) == (128, 128)
    assert (layer["scaleX"], layer["scaleY"]) == (0.5, 0.5)
    assert_fills_box(layer, box)
    editor.shot("upscaled")
    exported = export_png(editor, tmp_path)
    assert exported.size == (320, 240)
    assert exported.getpixel((10, 10)) == before.getpixel((10, 10)), "outside the box: the photo"
    inside = exported.getpixel((272, 184))
    assert inside[3] == 255 and inside == flat(editor).getpixel((272, 184)), (
        "the export is what the editor shows"
    )


def test_staged_results_land_where_their_box_was_after_the_picture_changed(editor, node) -> None:
    """A crop after the job was sent, and undoing an accepted result that grew the picture,
    move the picture under the staged results; each still lands on its box."""
    box_from_selection(editor, "txt2img", 0, 56, 128, 128)
    editor.key("g")
    editor.drag([(64, 120), (0, 120)])
    assert editor.doc()["box"] == {"x": -64, "y": 56, "w": 128, "h": 128}
    run(editor, node, "txt2img", prompt="a red house", steps=STEPS, batch_size="2")
    assert editor.js("() => lightbox.jobs.items.length") == 2
    editor.key("m")
    editor.drag([(16, 0), (320, 240)])
    editor.tab("layers")
    editor.page.click("#crop-selection")
    assert (editor.doc()["width"], editor.doc()["height"]) == (304, 240)
    editor.shot("cropped-with-results-staged")
    for attempt in ("first", "second"):
        layer = accept(editor)
        doc = editor.doc()
        assert (doc["width"], doc["height"]) == (304 + 80, 240), attempt
        assert_fills_box(layer, {"x": 0, "y": 56, "w": 128, "h": 128})
        photo_layer = doc["layers"][0]
        assert (photo_layer["x"], photo_layer["y"]) == (64, 0), "the photo's left edge as it was"
        editor.shot(f"{attempt}-accepted")
        editor.key("Control+z")
        assert (editor.doc()["width"], editor.doc()["height"]) == (304, 240)
