"""The `stable-diffusion` family: text to image and image to image on one loaded model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from lightbox_node.dispatch.test_tasks import ProgressCallback, RunContext
from lightbox_node.runners.diffusion import (
    DiffusionRunner,
    draw_seeds,
    finish,
    generators,
    input_is_flat,
    rgb,
)
from lightbox_node.runners.outputs import encode_png

if TYPE_CHECKING:
    from PIL.Image import Image


class TextToImage(DiffusionRunner):
    """txt2img: a batch of independent pictures from a prompt, one seed each."""

    job_class: ClassVar[str] = "StableDiffusionPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        return await context.run_sync(self.paint, inputs, context)

    def paint(self, inputs: Mapping[str, Any], context: RunContext) -> list[tuple[str, bytes]]:
        count = int(inputs.get("batch_size", 1))
        seeds = draw_seeds(inputs, count)
        context(0.0, f"seed {seeds[0]}")
        images = self.generate(
            context,
            inputs.get("sampler"),
            prompt=inputs["prompt"],
            negative_prompt=inputs.get("negative_prompt") or None,
            width=int(inputs["width"]),
            height=int(inputs["height"]),
            num_inference_steps=int(inputs["steps"]),
            guidance_scale=float(inputs["guidance_scale"]),
            num_images_per_prompt=count,
            generator=generators(seeds),
        )
        return finish(context, images, output="images")


class ImageToImage(DiffusionRunner):
    """img2img: repaint a picture; `strength` is the share of the steps that run."""

    job_class: ClassVar[str] = "StableDiffusionImg2ImgPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        image = await context.image(inputs["image"])
        return await context.run_sync(self.paint, inputs, image, context)

    def paint(
        self, inputs: Mapping[str, Any], image: Image, context: RunContext
    ) -> list[tuple[str, bytes]]:
        count = int(inputs.get("batch_size", 1))
        steps = int(inputs["steps"])
        strength = float(inputs["strength"])
        source = rgb(image)
        if int(steps * strength) < 1:
            # Too little strength to run even one step: the picture is kept as it is.
            context(1.0, "strength too low to change anything; the picture is kept")
            return [("images", encode_png(source))] * count
        seeds = draw_seeds(inputs, count)
        context(0.0, f"seed {seeds[0]}")
        images = self.generate(
            context,
            inputs.get("sampler"),
            prompt=inputs["prompt"],
            negative_prompt=inputs.get("negative_prompt") or None,
            image=source,
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=float(inputs["guidance_scale"]),
            num_images_per_prompt=count,
            generator=generators(seeds),
        )
        return finish(context, images, output="images", flat_allowed=input_is_flat(source))


__all__ = ["ImageToImage", "TextToImage"]
