"""The `stable-diffusion-inpaint` family: inpaint a masked region, and outpaint past the borders.

Both run the inpainting pipeline once and then lay the result over the original through a
feathered mask, so what the mask keeps is kept exactly (the VAE's round trip would otherwise
shift every pixel a little) and the repainted part blends in over `mask_blur` or `feather`
pixels. Masks are white where the picture is repainted; a transparent pixel of an RGBA mask
counts as black, so a brush layer from the editor works as it is.

Outpainting pads the canvas on any side in one pass (not four quadrant passes): the new area
starts as the stretched border, the pipeline repaints it with a mask that also covers the
outer half of the seam band, and the result is blended back with a ramp that runs from the
new area across `feather` pixels into the original.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from lightbox_node.dispatch.test_tasks import ProgressCallback, RunContext
from lightbox_node.runners.diffusion import DiffusionRunner, draw_seeds, finish, generators, rgb
from lightbox_node.runners.outputs import encode_png

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image


def mask_values(mask: Image) -> np.ndarray:
    """A mask as (H, W) floats on 0..1, white = repaint; transparent counts as black."""
    import numpy as np

    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        luminance = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        return luminance * alpha
    return np.asarray(mask.convert("L"), dtype=np.float32) / 255.0


def feathered(values: np.ndarray, radius: float) -> np.ndarray:
    """`values` (H, W, on 0..1) blurred by a Gaussian of `radius` pixels, in 1/255 steps.

    In 8 bits on purpose: the blur's far tail rounds to exactly 0, so pixels well away from
    the mask are kept bit for bit.
    """
    import numpy as np
    from PIL import Image, ImageFilter

    if radius <= 0:
        return values
    image = Image.fromarray((np.clip(values, 0, 1) * 255 + 0.5).astype(np.uint8))
    blurred = image.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(blurred, dtype=np.float32) / 255.0


def blend(generated: np.ndarray, original: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 pictures mixed per pixel: `alpha` (H, W) of `generated`, the rest `original`."""
    import numpy as np

    weight = alpha[..., None]
    mixed = generated.astype(np.float32) * weight + original.astype(np.float32) * (1 - weight)
    out = (mixed + 0.5).astype(np.uint8)
    # Where the mask keeps the picture, keep it bit for bit.
    keep = alpha <= 0
    out[keep] = original[keep]
    return out


class Inpaint(DiffusionRunner):
    """inpaint: repaint where the mask is white, keep the rest, blend over `mask_blur` px."""

    loader_class: ClassVar[str] = "StableDiffusionInpaintPipeline"
    job_class: ClassVar[str] = "StableDiffusionInpaintPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        image = await context.image(inputs["image"])
        mask = await context.image(inputs["mask"])
        return await context.run_sync(self.paint, inputs, image, mask, context)

    def paint(
        self, inputs: Mapping[str, Any], image: Image, mask: Image, context: RunContext
    ) -> list[tuple[str, bytes]]:
        import numpy as np
        from PIL import Image as PILImage

        count = int(inputs.get("batch_size", 1))
        source = rgb(image)
        original = np.asarray(source)
        values = mask_values(mask)
        if float(values.max()) < 0.5:
            context(1.0, "the mask is empty; the picture is kept")
            return [("images", encode_png(original))] * count
        alpha = np.clip(feathered(values, float(inputs.get("mask_blur", 0))), 0.0, 1.0)
        seeds = draw_seeds(inputs, count)
        context(0.0, f"seed {seeds[0]}")
        images = self.generate(
            context,
            inputs.get("sampler"),
            prompt=inputs["prompt"],
            negative_prompt=inputs.get("negative_prompt") or None,
            image=source,
            mask_image=PILImage.fromarray((values * 255 + 0.5).astype(np.uint8)),
            width=source.width,
            height=source.height,
            strength=float(inputs.get("strength", 1.0)),
            num_inference_steps=int(inputs["steps"]),
            guidance_scale=float(inputs["guidance_scale"]),
            num_images_per_prompt=count,
            generator=generators(seeds),
        )
        return finish(context, images, output="images", compose=lambda g: blend(g, original, alpha))


def outpaint_canvas(
    original: np.ndarray, left: int, right: int, top: int, bottom: int, feather: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The enlarged canvas (border stretched outward), the blend ramp and the repaint mask.

    The ramp is 1 on the new area and falls linearly to 0 across `feather` pixels into the
    original from every side that grew; the mask (for the pipeline) is where the ramp is at
    least one half.
    """
    import numpy as np

    height, width = original.shape[:2]
    canvas = np.pad(original, ((top, bottom), (left, right), (0, 0)), mode="edge")
    ramp = np.ones(canvas.shape[:2], dtype=np.float32)
    inner = np.zeros((height, width), dtype=np.float32)
    if feather > 0:
        ys = np.arange(height, dtype=np.float32)[:, None]
        xs = np.arange(width, dtype=np.float32)[None, :]
        for grown, distance in (
            (left, xs),
            (right, width - 1 - xs),
            (top, ys),
            (bottom, height - 1 - ys),
        ):
            if grown > 0:
                inner = np.maximum(inner, np.clip(1 - (distance + 0.5) / feather, 0, 1))
    ramp[top : top + height, left : left + width] = inner
    return canvas, ramp, ramp >= 0.5


class Outpaint(DiffusionRunner):
    """outpaint: extend the canvas on any side in one pass, with a feathered seam."""

    loader_class: ClassVar[str] = "StableDiffusionInpaintPipeline"
    job_class: ClassVar[str] = "StableDiffusionInpaintPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        image = await context.image(inputs["image"])
        return await context.run_sync(self.paint, inputs, image, context)

    def paint(
        self, inputs: Mapping[str, Any], image: Image, context: RunContext
    ) -> list[tuple[str, bytes]]:
        import numpy as np
        from PIL import Image as PILImage

        sides = {side: int(inputs.get(side, 0)) for side in ("left", "right", "top", "bottom")}
        canvas, ramp, mask = outpaint_canvas(
            np.asarray(rgb(image)), **sides, feather=int(inputs.get("feather", 0))
        )
        seeds = draw_seeds(inputs, 1)
        context(0.0, f"seed {seeds[0]}")
        images = self.generate(
            context,
            inputs.get("sampler"),
            prompt=inputs["prompt"],
            negative_prompt=inputs.get("negative_prompt") or None,
            image=PILImage.fromarray(canvas),
            mask_image=PILImage.fromarray(mask.astype(np.uint8) * 255),
            width=canvas.shape[1],
            height=canvas.shape[0],
            strength=1.0,
            num_inference_steps=int(inputs["steps"]),
            guidance_scale=float(inputs["guidance_scale"]),
            generator=generators(seeds),
        )
        return finish(context, images, output="image", compose=lambda g: blend(g, canvas, ramp))


__all__ = ["Inpaint", "Outpaint", "blend", "feathered", "mask_values", "outpaint_canvas"]
