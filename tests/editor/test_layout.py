"""The editor fits a 1280×800 laptop screen and grows with a large monitor."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("size", [(1280, 800), (2560, 1440)], ids=["1280x800", "2560x1440"])
def test_the_workspace_fits_the_screen(open_editor, size) -> None:
    editor = open_editor(size).load()
    width, height = size
    box = editor.js(
        """() => { const r = (s) => document.querySelector(s).getBoundingClientRect().toJSON();
            const root = document.documentElement, top = document.querySelector('#topbar');
            return { page: [root.scrollWidth, root.scrollHeight], canvas: r('#canvas-host'),
              sidebar: r('#sidebar'), status: r('#statusbar'),
              topbar: [top.scrollWidth, top.clientWidth] }; }"""
    )
    assert box["page"] == [width, height], "nothing spills out of the window"
    assert box["topbar"][0] <= box["topbar"][1], "the top bar holds all its buttons"
    assert box["canvas"]["width"] >= width * 0.6 and box["canvas"]["height"] >= height - 120
    assert box["sidebar"]["right"] == width and box["status"]["bottom"] == height
    for tab in ("layers", "adjust", "generate"):
        editor.tab(tab)
        editor.shot(f"{tab}-{width}x{height}")
    editor.tab("layers")
    rows = editor.js(
        """() => [...document.querySelectorAll('#tab-layers .buttons')]
            .map((row) => new Set([...row.children].map((b) => b.offsetTop)).size)"""
    )
    assert rows[0] == 1, "the layer buttons fit on one row"
