"""The `realesrgan` family: enlarge a picture 2× or 4× with an RRDBNet, tile by tile.

The network runs at its own scale; another requested scale resizes its result with Lanczos
(Real-ESRGAN's `outscale` does the same, so x4plus serves 2× too). An alpha channel is
enlarged with Lanczos beside the network's colour result, as Real-ESRGAN does by default.
Progress and cancellation come between tiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightbox_node.dispatch.test_tasks import ProgressCallback, RunContext, TaskFailed
from lightbox_node.runners.base import ModelRunner
from lightbox_node.runners.cache import module_bytes
from lightbox_node.runners.device import Device
from lightbox_node.runners.outputs import check_images, encode_png, is_flat, to_uint8
from lightbox_node.runners.source import ModelLoadFailed, ModelSource

if TYPE_CHECKING:
    from PIL.Image import Image

    from lightbox_node.runners.rrdbnet import RRDBNet

WEIGHT_SUFFIXES = (".pth", ".safetensors")


def weights_file(place: Path) -> Path:
    """The one weights file at `place` (a file, or a folder holding exactly one)."""
    if place.is_file():
        return place
    found = sorted(p for p in place.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise ModelLoadFailed(
            f"{place} must hold exactly one .pth or .safetensors upscaler file, it holds "
            f"{listed}; point the catalog's weights.file at the one to serve"
        )
    return found[0]


def load_upscaler(source: ModelSource, device: Device) -> RRDBNet:
    """The RRDBNet of `source` on `device`, from a local file or folder or an https release."""
    import torch

    from lightbox_node.runners.rrdbnet import (
        read_state_dict,
        rrdbnet_from_state_dict,
        state_dict_of,
    )

    if source.local:
        path = weights_file(Path(source.location))
        state, where = read_state_dict(path), str(path)
    else:
        loaded = torch.hub.load_state_dict_from_url(
            source.location, map_location="cpu", weights_only=True, progress=False
        )
        state, where = state_dict_of(loaded, where=source.location), source.location
    net = rrdbnet_from_state_dict(state, where=where)
    return net.to(device=device.name, dtype=device.dtype)


class Upscale(ModelRunner):
    """upscale: Real-ESRGAN ×2 / ×4 with tiling for large pictures."""

    @property
    def cache_key(self) -> tuple[str, ...]:
        return ("RRDBNet", self.source.location, self.device.name, str(self.device.dtype))

    def load(self) -> RRDBNet:
        return self.cache.get(
            self.cache_key,
            lambda: load_upscaler(self.source, self.device),
            size=lambda net: module_bytes([net]),
        )

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        image = await context.image(inputs["image"])
        return await context.run_sync(self.enlarge, inputs, image, context)

    def enlarge(
        self, inputs: Mapping[str, Any], image: Image, context: RunContext
    ) -> list[tuple[str, bytes]]:
        import numpy as np
        import torch
        from PIL import Image as PILImage

        from lightbox_node.runners.rrdbnet import upscale

        scale = int(inputs.get("scale", 4))
        tile = int(inputs.get("tile_size", 0))
        alpha = None
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            alpha = rgba.getchannel("A")
            colour = rgba.convert("RGB")
        else:
            colour = image.convert("RGB")

        def on_tile(done: int, total: int) -> None:
            context.raise_if_cancelled()
            context(done / total * 0.95, f"tile {done} of {total}")

        pixels = torch.from_numpy(np.asarray(colour).copy()).permute(2, 0, 1)[None]
        try:
            with self.lane.hold(context):
                net = self.load()
                on_device = pixels.to(device=self.device.name, dtype=self.device.dtype) / 255.0
                result = upscale(net, on_device, tile=tile, on_tile=on_tile)
                values = result[0].permute(1, 2, 0).float().cpu().numpy()
        except torch.OutOfMemoryError as exc:
            self.device.release_memory()
            raise TaskFailed(
                f"the {self.device.name} device ran out of memory for this picture; try a "
                "smaller tile size"
            ) from exc
        check_images(values[None], flat_allowed=is_flat(np.asarray(colour)))
        enlarged = PILImage.fromarray(to_uint8(values))
        target = (colour.width * scale, colour.height * scale)
        if enlarged.size != target:
            enlarged = enlarged.resize(target, PILImage.Resampling.LANCZOS)
        if alpha is not None:
            enlarged.putalpha(alpha.resize(target, PILImage.Resampling.LANCZOS))
        context(1.0, "done")
        return [("image", encode_png(enlarged))]


__all__ = ["Upscale", "load_upscaler", "weights_file"]
