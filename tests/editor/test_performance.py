"""A 4096×4096 picture stays workable: opening it, previewing effects live and applying each
effect to the full layer are timed in the browser and printed (run pytest with -s to see)."""

from __future__ import annotations

from PIL import Image

SIDE = 4096
LIMIT_APPLY_S = 20.0
"""Generous: the printed timings are the point; this only catches a hang or a pathological case."""


def big_picture(folder) -> str:
    small = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((512, 512)),
            Image.linear_gradient("L").rotate(90).resize((512, 512)),
            Image.radial_gradient("L").resize((512, 512)),
        ),
    )
    path = folder / "big.png"
    small.resize((SIDE, SIDE), Image.Resampling.BILINEAR).save(path, compress_level=1)
    return str(path)


def test_effects_on_a_4096_square_picture_are_timed(editor, tmp_path) -> None:
    path = big_picture(tmp_path)
    started = editor.js("() => performance.now()")
    editor.open_image(path)
    opened_ms = editor.js("() => performance.now()") - started
    assert (editor.doc()["width"], editor.doc()["height"]) == (SIDE, SIDE)
    editor.tab("adjust")
    rows = []
    for name, amount in editor.js(
        "async () => (await import('/js/effects.js')).EFFECTS.map((e) => [e.name, e.default])"
    ):
        editor.page.click(f"[data-effect={name}]")
        editor.js(
            "() => { lightbox.effects.lastDraftMs = null; lightbox.effects.lastPreviewMs = null; }"
        )
        editor.page.locator("#effect-amount").fill(str(amount))  # as dragging the slider does
        draft_ms = editor.wait("() => lightbox.effects.lastDraftMs")
        preview_ms = editor.wait("() => lightbox.effects.lastPreviewMs")
        count = editor.js("() => lightbox.effects.timings.length")
        editor.page.click("#effect-apply")
        editor.wait("(n) => lightbox.effects.timings.length > n", arg=count, timeout_s=120)
        apply_ms = editor.js("() => lightbox.effects.timings.at(-1).ms")
        rows.append((name, amount, draft_ms, preview_ms, apply_ms))
    editor.shot("after-all-effects")
    assert editor.js("() => lightbox.effects.effectWorker instanceof Worker"), (
        "effects ran in a worker"
    )
    print(f"\n4096×4096 picture: opened in {opened_ms:.0f} ms")
    print("preview while dragging: 640 px; settled preview: 1280 px; apply: all 4096×4096 pixels")
    print(f"{'effect':<12}{'amount':>8}{'dragging ms':>13}{'settled ms':>12}{'apply ms':>10}")
    for name, amount, draft_ms, preview_ms, apply_ms in rows:
        print(f"{name:<12}{amount:>8}{draft_ms:>13.0f}{preview_ms:>12.0f}{apply_ms:>10.0f}")
    assert all(apply_ms < LIMIT_APPLY_S * 1000 for *_, apply_ms in rows), rows
    assert editor.doc()["undo"].startswith("Invert"), "every application is one undoable step"
    editor.key("Control+z")
    assert editor.doc()["undo"].startswith("Noise")
