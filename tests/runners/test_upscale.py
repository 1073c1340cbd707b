"""Upscaling with the plain-torch RRDBNet: sizes, tiling, alpha, and loading release files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from lightbox_node.dispatch.test_tasks import RunContext, TaskFailed
from lightbox_node.runners.rrdbnet import (
    BadUpscalerWeights,
    RRDBNet,
    read_state_dict,
    rrdbnet_from_state_dict,
    upscale,
)
from tests.runners.harness import Blobs, decode, inputs_for, photo, pixels


async def enlarge(runner: Any, values: dict[str, Any], blobs: Blobs) -> tuple[bytes, list]:
    events: list[tuple[float, str]] = []
    context = RunContext(lambda f, m: events.append((f, m)), images=blobs.fetch)
    ((name, data),) = await runner.run(inputs_for(runner, values), context)
    assert name == "image"
    return data, events


@pytest.mark.parametrize("scale", [2, 4])
async def test_the_picture_grows_by_the_asked_scale(
    runners: dict, blobs: Blobs, scale: int
) -> None:
    data, _ = await enlarge(
        runners["upscale"], {"image": blobs.put(photo(40, 24)), "scale": scale}, blobs
    )
    image = decode(data)
    assert (image.mode, image.size) == ("RGB", (40 * scale, 24 * scale))


async def test_tiles_give_the_picture_whole_with_progress_per_tile(
    runners: dict, blobs: Blobs
) -> None:
    source = blobs.put(photo(150, 100, seed=5))
    whole, _ = await enlarge(runners["upscale"], {"image": source, "tile_size": 0}, blobs)
    tiled, events = await enlarge(runners["upscale"], {"image": source, "tile_size": 64}, blobs)
    assert [m for _, m in events if m.startswith("tile")] == [f"tile {i} of 6" for i in range(1, 7)]
    difference = np.abs(pixels(whole) - pixels(tiled))
    # Overlapping margins hide the seams: (almost) nothing changes at tile borders.
    assert difference.mean() < 0.5 and difference.max() <= 8


async def test_transparency_is_kept(runners: dict, blobs: Blobs) -> None:
    rgba = photo(32, 32).convert("RGBA")
    alpha = np.zeros((32, 32), dtype=np.uint8)
    alpha[:, 16:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    data, _ = await enlarge(runners["upscale"], {"image": blobs.put(rgba), "scale": 2}, blobs)
    out = decode(data)
    assert out.mode == "RGBA" and out.size == (64, 64)
    channel = np.asarray(out.getchannel("A"))
    assert channel[:, :28].max() < 8 and channel[:, 36:].min() > 247


async def test_a_cancelled_upscale_stops_between_tiles(runners: dict, blobs: Blobs) -> None:
    context = RunContext(images=blobs.fetch)
    context.cancelled.set()
    values = {"image": blobs.put(photo(64, 64)), "tile_size": 64}
    with pytest.raises(TaskFailed, match="cancelled"):
        await runners["upscale"].run(inputs_for(runners["upscale"], values), context)


def test_release_pth_and_safetensors_files_load_the_same_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=2)
    torch.save({"params_ema": net.state_dict(), "params": {}}, tmp_path / "x2.pth")
    save_file(net.state_dict(), tmp_path / "x2.safetensors")
    from_pth = rrdbnet_from_state_dict(read_state_dict(tmp_path / "x2.pth"))
    from_safetensors = rrdbnet_from_state_dict(read_state_dict(tmp_path / "x2.safetensors"))
    assert (from_pth.scale, from_pth.fold, len(from_pth.body)) == (2, 2, 2)
    picture = torch.rand(1, 3, 18, 22)  # odd-free but not a multiple of 4: padded and cut
    a, b = upscale(from_pth, picture), upscale(from_safetensors, picture)
    assert a.shape == (1, 3, 36, 44) and torch.equal(a, b)


def test_weights_that_are_not_rrdbnet_are_refused_clearly(tmp_path: Path) -> None:
    save_file({"weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    (tmp_path / "broken.pth").write_bytes(b"not a pickle")
    with pytest.raises(BadUpscalerWeights, match="not an RRDBNet"):
        rrdbnet_from_state_dict(read_state_dict(tmp_path / "other.safetensors"))
    with pytest.raises(BadUpscalerWeights, match="cannot read upscaler weights"):
        read_state_dict(tmp_path / "broken.pth")
