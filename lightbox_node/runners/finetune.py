"""The `finetune` task: DreamBooth LoRA on the served Stable Diffusion model, the adapter out.

The photos are fetched and decoded beside the device (each named by its place in the list
when it cannot be used), then the training runs in the device lane on the cached pipeline's
components (`finetune.train`), reporting every step and stopping at the next one when the
job is cancelled. The result is the adapter file (`finetune.adapters`), the task's one blob.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from lightbox_node.dispatch.test_tasks import ProgressCallback, RunContext, TaskFailed, decode_image
from lightbox_node.runners.diffusion import DiffusionRunner, draw_seeds, input_is_flat, rgb

if TYPE_CHECKING:
    from PIL.Image import Image

    from lightbox_node.finetune.train import TrainSettings

CLASS_SAMPLER = "euler_a"
"""The sampler that paints class pictures for prior preservation."""


class FineTune(DiffusionRunner):
    """finetune: a LoRA adapter for a concept token, from 3 to 20 photos."""

    loader_class: ClassVar[str] = "StableDiffusionPipeline"
    job_class: ClassVar[str] = "StableDiffusionPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        photos = await self.photos(inputs["instance_images"], context)
        return await context.run_sync(self.train, inputs, photos, context)

    async def photos(self, values: Sequence[Mapping[str, Any]], context: RunContext) -> list:
        """The instance images, fetched and decoded; a bad one is named by its place."""
        out = []
        for index, value in enumerate(values):
            data = await context.image_bytes(value)
            try:
                image = await trio.to_thread.run_sync(decode_image, data, value)
            except TaskFailed as exc:
                raise TaskFailed(f"photo {index + 1} of {len(values)}: {exc}") from None
            out.append(image)
        return out

    def settings(self, inputs: Mapping[str, Any]) -> TrainSettings:
        """The training settings of a job's (validated) inputs."""
        from lightbox_node.finetune.train import TrainSettings

        return TrainSettings(
            base_model=self.source.model_id,
            concept=str(inputs["concept"]),
            token=str(inputs["concept_token"]).strip(),
            class_prompt=str(inputs.get("class_prompt") or ""),
            prior_preservation=bool(inputs.get("prior_preservation", False)),
            rank=int(inputs["rank"]),
            steps=int(inputs["train_steps"]),
            learning_rate=float(inputs["learning_rate"]),
            resolution=int(inputs["resolution"]),
            seed=draw_seeds(inputs, 1)[0],
        )

    def train(
        self, inputs: Mapping[str, Any], photos: list[Image], context: RunContext
    ) -> list[tuple[str, bytes]]:
        import torch

        from lightbox_node.finetune.adapters import encode_adapter
        from lightbox_node.finetune.train import train_lora

        pictures = [rgb(photo) for photo in photos]
        for index, picture in enumerate(pictures):
            if input_is_flat(picture):
                raise TaskFailed(
                    f"photo {index + 1} of {len(pictures)} is one flat colour; a concept is "
                    "learnt from photos of it"
                )
        if not str(inputs["concept_token"]).strip():
            raise TaskFailed("the concept token is blank; use a rare word such as 'sks'")
        if inputs.get("prior_preservation") and not str(inputs.get("class_prompt") or "").strip():
            raise TaskFailed("prior preservation needs a class prompt, e.g. 'a photo of a dog'")
        settings = self.settings(inputs)
        context(0.0, f"seed {settings.seed}")
        try:
            with self.lane.hold(context):
                pipe = self.job_pipeline(CLASS_SAMPLER)
                adapter = train_lora(
                    pipe,
                    pictures,
                    settings,
                    report=context,
                    check_cancel=context.raise_if_cancelled,
                )
        except torch.OutOfMemoryError as exc:
            self.device.release_memory()
            raise TaskFailed(
                f"the {self.device.name} device ran out of memory for this fine-tune; try a "
                "lower resolution or rank"
            ) from exc
        data = encode_adapter(adapter)
        context(1.0, "done")
        return [("adapter", data)]


__all__ = ["FineTune"]
