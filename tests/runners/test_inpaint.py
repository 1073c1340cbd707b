"""Inpaint and outpaint on the tiny inpainting model: mask semantics and canvas geometry."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from lightbox_node.dispatch.test_tasks import RunContext
from lightbox_node.runners.inpaint import mask_values, outpaint_canvas
from tests.runners.harness import Blobs, decode, inputs_for, photo, pixels


async def run(runner: Any, values: dict[str, Any], blobs: Blobs) -> list[bytes]:
    outputs = await runner.run(inputs_for(runner, values), RunContext(images=blobs.fetch))
    return [data for _, data in outputs]


def square_mask(size: int, low: int, high: int) -> Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[low:high, low:high] = 255
    return Image.fromarray(mask)


async def test_white_is_repainted_and_black_is_kept_exactly(runners: dict, blobs: Blobs) -> None:
    source = photo(64, 64, seed=1)
    values = {
        "prompt": "a red ball",
        "image": blobs.put(source),
        "mask": blobs.put(square_mask(64, 24, 40)),
        "mask_blur": 2,
        "seed": 3,
    }
    (data,) = await run(runners["inpaint"], values, blobs)
    out, original = pixels(data), np.asarray(source).astype(np.int16)
    assert decode(data).size == (64, 64)
    # Well away from the mask (beyond the feather's reach) the picture is kept bit for bit,
    # even though the tiny VAE is random and changes everything it decodes.
    far = np.ones((64, 64), dtype=bool)
    far[24 - 8 : 40 + 8, 24 - 8 : 40 + 8] = False
    assert np.array_equal(out[far], original[far])
    # Inside the mask the picture is repainted.
    inside = np.abs(out[26:38, 26:38] - original[26:38, 26:38]).mean()
    assert inside > 10


async def test_an_empty_mask_keeps_the_picture(runners: dict, blobs: Blobs) -> None:
    source = photo(64, 64, seed=2)
    black = Image.new("L", (64, 64), 0)
    values = {"prompt": "x", "image": blobs.put(source), "mask": blobs.put(black), "seed": 1}
    (data,) = await run(runners["inpaint"], values, blobs)
    assert np.array_equal(pixels(data), np.asarray(source))


def test_a_transparent_mask_pixel_counts_as_black() -> None:
    brush = np.zeros((4, 4, 4), dtype=np.uint8)
    brush[..., :3] = 255  # white everywhere, but painted (opaque) only in one corner
    brush[:2, :2, 3] = 255
    values = mask_values(Image.fromarray(brush))
    assert values[:2, :2].min() == 1.0 and values[2:, 2:].max() == 0.0


async def test_inpaint_batches_are_independent_and_reproducible(
    runners: dict, blobs: Blobs
) -> None:
    values = {
        "prompt": "a cat",
        "image": blobs.put(photo()),
        "mask": blobs.put(square_mask(64, 16, 48)),
        "seed": 11,
        "batch_size": 2,
    }
    first = await run(runners["inpaint"], values, blobs)
    again = await run(runners["inpaint"], values, blobs)
    assert first == again and first[0] != first[1]


def test_the_outpaint_canvas_ramps_from_the_new_area_into_the_original() -> None:
    original = np.zeros((16, 16, 3), dtype=np.uint8)
    canvas, ramp, mask = outpaint_canvas(original, left=8, right=0, top=0, bottom=4, feather=4)
    assert canvas.shape == (20, 24, 3) and ramp.shape == (20, 24)
    assert (ramp[:, :8] == 1).all() and (ramp[16:, :] == 1).all()
    row = ramp[5, 8:16]  # into the original from the left seam
    assert list(np.round(row, 3)) == [0.875, 0.625, 0.375, 0.125, 0, 0, 0, 0]
    assert (ramp[:12, 12:] == 0).all(), "beyond the feather the original is untouched"
    assert (ramp[:, 23] < 1).any(), "the right side did not grow, so it has no seam"
    assert np.array_equal(mask, ramp >= 0.5)


async def test_outpaint_grows_the_canvas_in_one_pass_and_keeps_the_middle(
    runners: dict, blobs: Blobs, forward_calls: Any
) -> None:
    runner = runners["outpaint"]
    unet_calls = forward_calls(runner.load().unet)
    source = photo(64, 64, seed=4)
    values = {
        "prompt": "a wide landscape",
        "image": blobs.put(source),
        "left": 16,
        "right": 0,
        "top": 8,
        "bottom": 24,
        "feather": 8,
        "steps": 3,
        "seed": 2,
    }
    (data,) = await run(runner, values, blobs)
    out = pixels(data)
    assert decode(data).size == (64 + 16, 64 + 8 + 24)
    assert len(unet_calls) == 3, "one pass over the whole canvas: one UNet call per step"
    original = np.asarray(source).astype(np.int16)
    # The original sits at (left, top); beyond the seam band it is kept exactly. The right
    # side did not grow, so it is kept right up to the edge.
    assert np.array_equal(out[8 + 8 : 8 + 64 - 8, 16 + 8 : 16 + 64], original[8:56, 8:64])
    # Inside the seam band, the blend leans to the original the further in it goes.
    band = np.abs(out[40, 16 : 16 + 8] - original[32, 0:8]).mean(axis=-1)
    assert band[-1] <= band[0] + 1
    # The new area is painted, not the stretched border it started from.
    stretched = np.pad(original, ((8, 24), (16, 0), (0, 0)), mode="edge")
    assert np.abs(out[:, :8] - stretched[:, :8]).mean() > 10
