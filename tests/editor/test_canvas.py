"""The canvas editor in a real browser: opening pictures, painting, erasing, effects with undo,
layers, transforms, text, crop and PNG export, with screenshots of each step."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320×240 picture: a red-to-blue ramp with a green square at (100..139, 80..119)."""
    image = Image.new("RGB", (320, 240))
    pixels = image.load()
    for y in range(240):
        for x in range(320):
            pixels[x, y] = (255 - x * 255 // 319, 40, x * 255 // 319)
    for y in range(80, 120):
        for x in range(100, 140):
            pixels[x, y] = (0, 200, 0)
    path = tmp_path_factory.mktemp("pictures") / "photo.png"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def sticker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64×64 half-transparent yellow WebP, to open as a second layer."""
    path = tmp_path_factory.mktemp("pictures") / "sticker.webp"
    Image.new("RGBA", (64, 64), (255, 220, 0, 255)).save(path, lossless=True)
    return path


def test_opening_a_picture_makes_it_the_document(editor, photo) -> None:
    editor.shot("empty")
    editor.open_image(photo)
    doc = editor.doc()
    assert (doc["width"], doc["height"]) == (320, 240)
    assert [layer["name"] for layer in doc["layers"]] == ["photo"]
    assert editor.layer_pixel(0, 120, 100) == [0, 200, 0, 255]
    assert doc["undo"] is None, "an opened picture is where history starts"
    editor.shot("opened")


def test_dropping_files_on_the_canvas_opens_them(editor, photo, sticker) -> None:
    files = [(photo.name, "image/png", photo.read_bytes())]
    files += [(sticker.name, "image/webp", sticker.read_bytes())]
    transfer = editor.page.evaluate_handle(
        """(files) => { const t = new DataTransfer();
            for (const [name, type, bytes] of files)
              t.items.add(new File([new Uint8Array(bytes)], name, { type }));
            return t; }""",
        [(name, kind, list(data)) for name, kind, data in files],
    )
    editor.page.dispatch_event("#stage", "dragenter", {"dataTransfer": transfer})
    assert editor.page.locator("#drop-hint").is_visible()
    editor.shot("dragging")
    editor.page.dispatch_event("#stage", "drop", {"dataTransfer": transfer})
    editor.wait("() => lightbox.doc.layers.length === 2")
    assert [layer["name"] for layer in editor.doc()["layers"]] == ["photo", "sticker"]
    assert editor.page.locator("#drop-hint").is_hidden()


def test_a_brush_stroke_paints_and_undo_and_redo_restore_it(editor, photo) -> None:
    editor.open_image(photo)
    editor.key("b")
    editor.settings("brush", color="#ffffff", hardness=100, size=12)
    before = editor.layer_pixel(0, 50, 200)
    editor.drag([(20, 200), (80, 200), (160, 200)])
    assert editor.layer_pixel(0, 50, 200) == [255, 255, 255, 255]
    assert editor.layer_pixel(0, 50, 220) != [255, 255, 255, 255], "a 12 px brush stays narrow"
    assert editor.doc()["undo"] == "Brush stroke"
    editor.shot("stroke")
    editor.key("Control+z")
    assert editor.layer_pixel(0, 50, 200) == before
    editor.key("Control+Shift+z")
    assert editor.layer_pixel(0, 50, 200) == [255, 255, 255, 255]


def test_brush_opacity_blends_the_stroke_once(editor, photo) -> None:
    editor.open_image(photo)
    editor.key("b")
    editor.settings("brush", color="#000000", opacity=50, hardness=100, size=20)
    editor.drag([(100, 30), (220, 30)])
    # The ramp at x=160 is (128, 40, 127): half black over it halves it, however many dabs.
    r, g, b, a = editor.layer_pixel(0, 160, 30)
    assert (abs(r - 64) <= 2, abs(g - 20) <= 2, abs(b - 64) <= 2, a) == (True, True, True, 255)


def test_the_eraser_leaves_real_transparency(editor, photo) -> None:
    editor.open_image(photo)
    editor.key("e")
    editor.settings("eraser", size=30, opacity=100, hardness=100)
    editor.drag([(40, 40), (200, 40)])
    assert editor.layer_pixel(0, 120, 40)[3] == 0
    assert editor.flat_pixel(120, 40)[3] == 0, "the exported picture is transparent there too"
    editor.shot("erased")
    editor.key("Control+z")
    assert editor.layer_pixel(0, 120, 40)[3] == 255


def test_an_effect_previews_live_applies_and_undoes(editor, photo) -> None:
    editor.open_image(photo)
    editor.tab("adjust")
    editor.page.click("[data-effect=invert]")
    editor.settle()
    assert editor.js("() => lightbox.previews.size") == 1, "a live preview is shown"
    assert editor.layer_pixel(0, 120, 100) == [0, 200, 0, 255], "the preview leaves the layer alone"
    editor.shot("invert-preview")
    editor.page.click("#effect-apply")
    editor.wait("() => lightbox.doc.history.undoLabel?.startsWith('Invert')")
    assert editor.layer_pixel(0, 120, 100) == [255, 55, 255, 255]
    editor.shot("inverted")
    editor.key("Control+z")
    assert editor.layer_pixel(0, 120, 100) == [0, 200, 0, 255]
    editor.page.click("[data-effect=brightness]")
    editor.page.locator("#effect-amount").fill("40")
    editor.page.click("#effect-apply")
    editor.wait("() => lightbox.doc.history.undoLabel?.startsWith('Brightness')")
    assert editor.layer_pixel(0, 120, 100) == [102, 255, 102, 255]


def test_an_effect_stays_inside_the_selection(editor, photo) -> None:
    editor.open_image(photo)
    editor.key("m")
    editor.drag([(0, 0), (160, 240)])
    assert editor.doc()["selection"] == {"x": 0, "y": 0, "w": 160, "h": 240}
    editor.tab("adjust")
    editor.page.click("[data-effect=invert]")
    editor.page.click("#effect-apply")
    editor.wait("() => lightbox.doc.history.undoLabel?.startsWith('Invert')")
    assert editor.layer_pixel(0, 120, 100) == [255, 55, 255, 255]
    assert editor.layer_pixel(0, 300, 100)[1] == 40, "outside the selection nothing changed"
    editor.shot("inverted-left-half")


def test_layers_add_hide_reorder_set_opacity_and_delete_with_undo(editor, photo, sticker) -> None:
    editor.open_image(photo)
    editor.open_image(sticker)
    doc = editor.doc()
    assert [layer["name"] for layer in doc["layers"]] == ["photo", "sticker"]
    assert editor.flat_pixel(160, 120)[:3] == [255, 220, 0], "the sticker is centred on top"
    editor.tab("layers")
    editor.page.click("#layer-add")
    assert len(editor.doc()["layers"]) == 3
    editor.page.click("#layer-delete")
    assert len(editor.doc()["layers"]) == 2
    rows = editor.page.locator("#layer-list li")
    rows.nth(0).locator(".visibility").click()
    assert editor.doc()["layers"][1]["visible"] is False
    assert editor.flat_pixel(160, 120)[:3] != [255, 220, 0]
    editor.shot("sticker-hidden")
    editor.key("Control+z")
    assert editor.doc()["layers"][1]["visible"] is True
    editor.page.locator("#layer-opacity").fill("50")
    editor.page.locator("#layer-opacity").dispatch_event("change")
    assert editor.doc()["layers"][1]["opacity"] == 0.5
    editor.page.click("#layer-down")
    assert [layer["name"] for layer in editor.doc()["layers"]] == ["sticker", "photo"]
    assert editor.flat_pixel(160, 120)[:3] != [255, 220, 0], "the sticker is now under the photo"
    editor.shot("reordered")
    editor.key("Control+z")
    editor.key("Control+z")
    assert [layer["name"] for layer in editor.doc()["layers"]] == ["photo", "sticker"]
    assert editor.doc()["layers"][1]["opacity"] == 1


def test_move_scale_and_rotate_a_layer_with_handles(editor, photo, sticker) -> None:
    editor.open_image(photo)
    editor.open_image(sticker)
    editor.key("v")
    editor.drag([(150, 110), (60, 50)])
    moved = editor.doc()["layers"][1]
    assert (moved["x"], moved["y"]) == (38, 28)
    editor.drag([(38 + 64, 28 + 64), (38 + 128, 28 + 128)])  # the bottom-right corner
    scaled = editor.doc()["layers"][1]
    assert scaled["scaleX"] == pytest.approx(2, abs=0.1) and scaled["scaleY"] == pytest.approx(
        2, abs=0.1
    )
    handle = editor.js(
        """() => { const v = lightbox.canvasView, l = lightbox.doc.active;
            const h = lightbox.tools.move.handles(v, l).rot, z = v.view.zoom;
            return [(h.x - v.view.panX) / z, (h.y - v.view.panY) / z]; }"""
    )
    centre = (scaled["x"] + 64 * scaled["scaleX"] / 2, scaled["y"] + 64 * scaled["scaleY"] / 2)
    editor.drag([tuple(handle), (centre[0] + 200, centre[1])])
    assert editor.doc()["layers"][1]["rotation"] == pytest.approx(1.5708, abs=0.1)
    editor.shot("rotated")
    for label in ("Rotate layer", "Scale layer", "Move layer"):
        assert editor.doc()["undo"] == label
        editor.key("Control+z")
    restored = editor.doc()["layers"][1]
    assert (restored["x"], restored["y"], restored["scaleX"], restored["rotation"]) == (
        128,
        88,
        1,
        0,
    )


def test_pan_and_zoom_keep_the_picture_in_place(editor, photo) -> None:
    editor.open_image(photo)
    fit = editor.js("() => lightbox.canvasView.view")
    editor.key("Control+1")
    assert editor.js("() => lightbox.canvasView.view.zoom") == pytest.approx(1)
    editor.key("h")
    before = editor.js("() => lightbox.canvasView.view")
    editor.page.mouse.move(500, 400)
    editor.page.mouse.down()
    editor.page.mouse.move(560, 430, steps=3)
    editor.page.mouse.up()
    after = editor.js("() => lightbox.canvasView.view")
    assert (after["panX"] - before["panX"], after["panY"] - before["panY"]) == (60, 30)
    editor.key("Control+0")
    assert editor.js("() => lightbox.canvasView.view") == fit


def test_text_tool_adds_an_editable_text_layer(editor, photo) -> None:
    editor.open_image(photo)
    editor.key("t")
    x, y = editor.to_screen(30, 60)
    editor.page.mouse.click(x, y)
    editor.page.keyboard.type("Hello")
    editor.shot("typing")
    editor.page.keyboard.press("Control+Enter")
    editor.settle()
    doc = editor.doc()
    assert doc["layers"][-1]["text"] == "Hello" and doc["undo"] == "Add text"
    editor.shot("text-layer")
    editor.key("Control+z")
    assert len(editor.doc()["layers"]) == 1


def test_crop_to_selection_then_export_png(editor, photo, tmp_path) -> None:
    editor.open_image(photo)
    editor.key("m")
    editor.drag([(100, 80), (140, 120)])
    editor.tab("layers")
    editor.page.click("#crop-selection")
    doc = editor.doc()
    assert (doc["width"], doc["height"]) == (40, 40)
    editor.shot("cropped")
    with editor.page.expect_download() as download:
        editor.key("Control+Shift+e")
    path = tmp_path / "export.png"
    download.value.save_as(path)
    exported = Image.open(path)
    assert exported.format == "PNG" and exported.size == (40, 40)
    assert exported.convert("RGBA").getpixel((20, 20)) == (0, 200, 0, 255)
    editor.key("Control+z")
    assert (editor.doc()["width"], editor.doc()["height"]) == (320, 240)


def test_crop_tool_and_export_of_an_edited_picture(editor, photo, tmp_path) -> None:
    editor.open_image(photo)
    editor.key("c")
    editor.drag([(10, 10), (210, 110)])
    editor.key("Enter")
    assert (editor.doc()["width"], editor.doc()["height"]) == (200, 100)
    editor.key("b")
    editor.settings("brush", color="#ff00ff", opacity=100, hardness=100, size=10)
    editor.drag([(20, 50), (180, 50)])
    with editor.page.expect_download() as download:
        editor.page.click("#export-png")
    data = Path(download.value.path()).read_bytes()
    exported = Image.open(io.BytesIO(data)).convert("RGBA")
    assert exported.size == (200, 100)
    assert exported.getpixel((100, 50)) == (255, 0, 255, 255)
    assert exported.getpixel((100, 5))[1] == 40, "the ramp beside the stroke is kept"
    editor.shot("exported")


def test_keyboard_shortcuts_pick_tools_and_sizes(editor) -> None:
    for key, tool in (
        ("v", "move"),
        ("b", "brush"),
        ("e", "eraser"),
        ("t", "text"),
        ("m", "select"),
        ("c", "crop"),
        ("g", "box"),
        ("k", "mask"),
        ("h", "hand"),
    ):
        editor.key(key)
        assert editor.js("() => lightbox.toolName") == tool
        assert (
            editor.page.locator(f"#toolbar [data-tool={tool}]").get_attribute("aria-pressed")
            == "true"
        )
    editor.key("b")
    size = editor.js("() => lightbox.settings.brush.size")
    editor.key("]")
    assert editor.js("() => lightbox.settings.brush.size") > size
    editor.key("Shift+?")
    assert editor.page.locator("#help-dialog").is_visible()
    editor.shot("shortcuts")
    editor.page.keyboard.press("Escape")
