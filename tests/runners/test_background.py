"""Background removal through rembg with a catalog model outside rembg's own home folder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lightbox_node.dispatch.test_tasks import RunContext
from lightbox_node.runners import OutputRejected, PipelineCache, select_device
from lightbox_node.runners.background import RemoveBackground
from lightbox_node.runners.source import ModelSource
from lightbox_node.tasks import BUILTIN_TASKS
from tests.runners.harness import Blobs, decode, inputs_for, photo


async def cut(runner: RemoveBackground, values: dict, blobs: Blobs) -> bytes:
    ((name, data),) = await runner.run(inputs_for(runner, values), RunContext(images=blobs.fetch))
    assert name == "image"
    return data


async def test_the_cut_out_is_transparent_where_the_background_was(
    runners: dict, blobs: Blobs, data_dir: Path
) -> None:
    runner = runners["remove_background"]
    home = Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).resolve()
    assert home not in Path(runner.source.location).resolve().parents
    out = decode(await cut(runner, {"image": blobs.put(photo(96, 64))}, blobs))
    assert (out.mode, out.size) == ("RGBA", (96, 64))
    alpha = np.asarray(out.getchannel("A"))
    assert int(alpha.max()) - int(alpha.min()) > 100, "the mask separates subject and background"


async def test_only_the_mask_when_asked(runners: dict, blobs: Blobs) -> None:
    values = {"image": blobs.put(photo(64, 64)), "only_mask": True}
    out = decode(await cut(runners["remove_background"], values, blobs))
    assert (out.mode, out.size) == ("L", (64, 64))


@pytest.mark.slow
async def test_fine_edges_use_alpha_matting(runners: dict, blobs: Blobs) -> None:
    values = {"image": blobs.put(photo(64, 64)), "alpha_matting": True}
    out = decode(await cut(runners["remove_background"], values, blobs))
    assert (out.mode, out.size) == ("RGBA", (64, 64))


async def test_a_model_that_finds_no_subject_is_a_fault_not_an_empty_picture(
    tmp_path: Path, blobs: Blobs
) -> None:
    flat = nn.Conv2d(3, 1, 1)
    nn.init.zeros_(flat.weight)
    nn.init.zeros_(flat.bias)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            nn.Sequential(flat, nn.Sigmoid()),
            (torch.zeros(1, 3, 320, 320),),
            str(tmp_path / "flat.onnx"),
            dynamo=False,
        )
    runner = RemoveBackground(
        BUILTIN_TASKS["remove_background"],
        ModelSource("flat", str(tmp_path), local=True),
        select_device("cpu"),
        PipelineCache(),
    )
    with pytest.raises(OutputRejected, match="found no subject"):
        await cut(runner, {"image": blobs.put(photo())}, blobs)
