"""The editor as the tests see it: load it, drive it like a person, read its pixels back."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"


class EditorPage:
    """One browser page with the editor, collecting console errors and taking screenshots."""

    def __init__(self, page: Any, url: str, artifacts: Path, test_name: str) -> None:
        self.page = page
        self.url = url
        self.artifacts = artifacts
        self.rename(test_name)
        self.errors: list[str] = []
        self.allowed_errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def load(self, path: str = "") -> EditorPage:
        self.page.goto(self.url + path)
        self.page.wait_for_function(
            "() => window.lightbox && window.lightbox.doc.layers.length > 0"
        )
        return self

    def close_and_check(self) -> None:
        errors = [e for e in self.errors if not any(a in e for a in self.allowed_errors)]
        self.page.context.close()
        assert errors == [], "the page logged errors:\n" + "\n".join(errors)

    def check_errors(self) -> None:
        """Fail on the errors logged so far, and start counting afresh (a page kept for more
        than one test)."""
        errors = [e for e in self.errors if not any(a in e for a in self.allowed_errors)]
        self.errors.clear()
        self.allowed_errors.clear()
        assert errors == [], "the page logged errors:\n" + "\n".join(errors)

    def rename(self, test_name: str) -> None:
        """Name this page's next screenshots after `test_name`, numbered from 1."""
        self.prefix = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:60]
        self.shots = 0

    # -- looking ---------------------------------------------------------------------------------

    def shot(self, step: str) -> Path:
        """Save a screenshot of this step as an artefact; returns its path."""
        self.shots += 1
        path = self.artifacts / f"{self.prefix}-{self.shots:02d}-{step}.png"
        self.page.screenshot(path=str(path))
        return path

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def settle(self) -> None:
        """Wait for pending renders (two animation frames)."""
        self.js("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def doc(self) -> dict[str, Any]:
        return self.js(
            """() => { const d = lightbox.doc; return {
                width: d.width, height: d.height, active: d.activeId, selection: d.selection,
                box: d.box, undo: d.history.undoLabel, redo: d.history.redoLabel,
                layers: d.layers.map((l) => ({ id: l.id, name: l.name, width: l.width,
                  height: l.height, x: l.x, y: l.y, scaleX: l.scaleX, scaleY: l.scaleY,
                  rotation: l.rotation,
                  opacity: l.opacity, visible: l.visible, text: l.text && l.text.content })) }; }"""
        )

    def layer_pixel(self, index: int, x: int, y: int) -> list[int]:
        """RGBA of a layer's own pixel (index 0 is the bottom layer)."""
        return self.js(
            """([i, x, y]) => { const c = lightbox.doc.layers[i].canvas;
                const ctx = c.getContext('2d', {willReadFrequently: true});
                return [...ctx.getImageData(x, y, 1, 1).data]; }""",
            [index, x, y],
        )

    def flat_pixel(self, x: int, y: int) -> list[int]:
        """RGBA of the flattened picture."""
        return self.js(
            """([x, y]) => [...lightbox.doc.flatten().getContext('2d')
                .getImageData(x, y, 1, 1).data]""",
            [x, y],
        )

    # -- doing -----------------------------------------------------------------------------------

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of a picture point."""
        return tuple(
            self.js(
                """([x, y]) => { const v = lightbox.canvasView;
                    const r = v.canvas.getBoundingClientRect(), z = v.view.zoom;
                    return [r.left + x * z + v.view.panX, r.top + y * z + v.view.panY]; }""",
                [x, y],
            )
        )

    def drag(self, points: list[tuple[float, float]], steps: int = 6) -> None:
        """Press at the first picture point, move through the others, release."""
        mouse = self.page.mouse
        first = self.to_screen(*points[0])
        mouse.move(*first)
        mouse.down()
        for p in points[1:]:
            mouse.move(*self.to_screen(*p), steps=steps)
        mouse.up()
        self.settle()

    def settings(self, tool: str, **values: Any) -> None:
        """Set a tool's settings (size, colour, opacity, hardness…) as its options bar would."""
        self.js(
            "([tool, values]) => Object.assign(lightbox.settings[tool], values)", [tool, values]
        )

    def key(self, chord: str) -> None:
        self.page.locator("#view").focus()
        self.page.keyboard.press(chord)
        self.settle()

    def open_image(self, path: Path) -> None:
        before = self.js("() => lightbox.opened || 0")
        self.page.set_input_files("#open-file", str(path))
        self.page.wait_for_function("(n) => (lightbox.opened || 0) > n", arg=before, timeout=60_000)
        self.settle()

    def tab(self, name: str) -> None:
        self.page.click(f"#sidebar [role=tab][data-tab={name}]")
        self.settle()

    def choose_task(self, name: str) -> None:
        self.tab("generate")
        self.page.wait_for_selector("#task-select")
        value = self.js(
            """(n) => [...document.querySelectorAll('#task-select option')]
                .find((o) => o.value === n || o.value === 'f:' + n)?.value""",
            name,
        )
        assert value, f"task {name} is not in the list"
        self.page.select_option("#task-select", value)
        self.settle()

    def wait(self, condition: str, arg: Any = None, timeout_s: float = 30) -> Any:
        return self.page.wait_for_function(
            condition, arg=arg, timeout=timeout_s * 1000
        ).json_value()


def wait_until(check, timeout_s: float = 10, every_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError("timed out")
