"""RRDBNet, the Real-ESRGAN generator, in plain torch; its weights loaded from either release form.

Why here and not `realesrgan`: `realesrgan` and `basicsr` (and `spandrel`) import
torchvision, which has no CPU build on these machines, and a CUDA torchvision over a CPU torch
breaks diffusers too. The network is small (ESRGAN, Wang et al. 2018): a first convolution,
`num_block` residual-in-residual dense blocks, a trunk convolution, two ×2 nearest-neighbour
upsamplings each followed by a convolution, and two output convolutions. The ×2 and ×1
variants first fold the picture into channels with pixel-unshuffle. Parameter names follow
basicsr's `RRDBNet`, so the authors' `.pth` files (a `params_ema` or `params` table) and
safetensors exports load unchanged, strictly, and the shape of each tensor tells the
network's width, depth and scale.

`upscale` runs the network over tiles with overlapping margins (Real-ESRGAN's `tile` and
`tile_pad`) so that a large picture fits in memory, and calls back after every tile (for
progress and cancellation).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from lightbox_node.dispatch.test_tasks import TaskFailed

TILE_PAD = 16
"""Margin each tile borrows from its neighbours, then drops, so seams do not show (a multiple
of 4, because the ×1 network folds 4×4 pixels)."""

_BODY_BLOCK = re.compile(r"body\.(\d+)\.")


class BadUpscalerWeights(TaskFailed):
    """A weights file is not an RRDBNet (Real-ESRGAN) state dict this module can load."""


class ResidualDenseBlock(nn.Module):
    """Five 3×3 convolutions, each seeing the block's input and every earlier output."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks with a scaled residual around them."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """The ESRGAN / Real-ESRGAN generator; `scale` is 1, 2 or 4 (x4plus: 64 features, 23 blocks)."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError("RRDBNet upscales by 1, 2 or 4")
        self.scale = scale
        self.fold = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.fold**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = functional.pixel_unshuffle(x, self.fold) if self.fold > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(functional.interpolate(feat, scale_factor=2.0)))
        feat = self.lrelu(self.conv_up2(functional.interpolate(feat, scale_factor=2.0)))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


# -- weights --------------------------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Real-ESRGAN weights file: `.pth` (the authors' release) or safetensors.

    A `.pth` is read with `weights_only=True`, so a file cannot run code when it is loaded.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a damaged file
        raise BadUpscalerWeights(f"cannot read upscaler weights {path}: {exc}") from exc
    return state_dict_of(state, where=str(path))


def state_dict_of(loaded: object, *, where: str) -> dict[str, torch.Tensor]:
    """The model tensors in what a weights file held: the table itself, or its `params_ema`
    (Real-ESRGAN releases), `params` or `state_dict` entry."""
    state = loaded
    if isinstance(state, Mapping):
        for key in ("params_ema", "params", "state_dict"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise BadUpscalerWeights(f"{where} holds no table of tensors (not a model state dict)")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def rrdbnet_from_state_dict(state: Mapping[str, torch.Tensor], *, where: str = "") -> RRDBNet:
    """An RRDBNet shaped after `state` (width, depth, scale read from the tensors), loaded."""
    try:
        first = state["conv_first.weight"]
        num_feat, in_folded = int(first.shape[0]), int(first.shape[1])
        num_out_ch = int(state["conv_last.weight"].shape[0])
        num_grow_ch = int(state["body.0.rdb1.conv1.weight"].shape[0])
    except KeyError as exc:
        raise BadUpscalerWeights(
            f"{where or 'the weights'} are not an RRDBNet (Real-ESRGAN x4plus/x2plus) state "
            f"dict: no {exc.args[0]!r}. Compact models (realesr-general) are not supported"
        ) from None
    num_block = 1 + max(int(m.group(1)) for k in state if (m := _BODY_BLOCK.match(k)))
    scales = {3: 4, 12: 2, 48: 1}
    if in_folded not in scales:
        raise BadUpscalerWeights(
            f"{where or 'the weights'}: conv_first takes {in_folded} channels; an RGB RRDBNet "
            "takes 3 (×4), 12 (×2) or 48 (×1)"
        )
    net = RRDBNet(3, num_out_ch, scales[in_folded], num_feat, num_block, num_grow_ch)
    try:
        net.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise BadUpscalerWeights(f"{where or 'the weights'} do not fit RRDBNet: {exc}") from None
    return net.eval()


# -- running --------------------------------------------------------------------------------


def upscale(
    net: RRDBNet,
    image: torch.Tensor,
    *,
    tile: int = 0,
    on_tile: Callable[[int, int], None] = lambda done, total: None,
) -> torch.Tensor:
    """`image` (1, C, H, W) on 0..1 enlarged by the network's scale, tile by tile if `tile`.

    Sides are reflect-padded to what the network's pixel-unshuffle needs, and the padding is
    cut from the result. `on_tile(done, total)` runs after each tile.
    """
    _, _, height, width = image.shape
    fold = net.fold
    pad_h, pad_w = (-height) % fold, (-width) % fold
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        image = functional.pad(image, (0, pad_w, 0, pad_h), mode=mode)
    scale = net.scale
    with torch.inference_mode():
        if tile <= 0 or (image.shape[2] <= tile and image.shape[3] <= tile):
            out = net(image)
            on_tile(1, 1)
        else:
            out = _tiled(net, image, tile, on_tile)
    return out[:, :, : height * scale, : width * scale]


def _tiled(
    net: RRDBNet, image: torch.Tensor, tile: int, on_tile: Callable[[int, int], None]
) -> torch.Tensor:
    _, _, height, width = image.shape
    scale = net.scale
    out = image.new_zeros((1, net.conv_last.out_channels, height * scale, width * scale))
    tile = max(net.fold, tile - tile % net.fold)
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    for row in range(rows):
        for col in range(cols):
            y0, x0 = row * tile, col * tile
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            py0, px0 = max(y0 - TILE_PAD, 0), max(x0 - TILE_PAD, 0)
            py1, px1 = min(y1 + TILE_PAD, height), min(x1 + TILE_PAD, width)
            result = net(image[:, :, py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[
                :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
            on_tile(row * cols + col + 1, rows * cols)
    return out


__all__ = [
    "RRDB",
    "TILE_PAD",
    "BadUpscalerWeights",
    "RRDBNet",
    "ResidualDenseBlock",
    "read_state_dict",
    "rrdbnet_from_state_dict",
    "state_dict_of",
    "upscale",
]
