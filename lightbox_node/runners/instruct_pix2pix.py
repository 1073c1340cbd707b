"""The `instruct-pix2pix` family: edit a picture by following a written instruction."""

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

if TYPE_CHECKING:
    from PIL.Image import Image


class InstructEdit(DiffusionRunner):
    """instruct_edit: InstructPix2Pix, guided by the instruction and by the picture itself."""

    loader_class: ClassVar[str] = "StableDiffusionInstructPix2PixPipeline"
    job_class: ClassVar[str] = "StableDiffusionInstructPix2PixPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        image = await context.image(inputs["image"])
        return await context.run_sync(self.edit, inputs, image, context)

    def edit(
        self, inputs: Mapping[str, Any], image: Image, context: RunContext
    ) -> list[tuple[str, bytes]]:
        count = int(inputs.get("batch_size", 1))
        source = rgb(image)
        seeds = draw_seeds(inputs, count)
        context(0.0, f"seed {seeds[0]}")
        images = self.generate(
            context,
            inputs.get("sampler"),
            prompt=inputs["instruction"],
            negative_prompt=inputs.get("negative_prompt") or None,
            image=source,
            num_inference_steps=int(inputs["steps"]),
            guidance_scale=float(inputs["guidance_scale"]),
            image_guidance_scale=float(inputs["image_guidance_scale"]),
            num_images_per_prompt=count,
            generator=generators(seeds),
        )
        return finish(context, images, output="images", flat_allowed=input_is_flat(source))


__all__ = ["InstructEdit"]
