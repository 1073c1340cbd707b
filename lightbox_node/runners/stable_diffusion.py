"""The `stable-diffusion` family: text to image and image to image on one loaded model.

A job may name a `concept`: the host resolves the concept's current global model (a blob of
fused weight changes, `finetune.adapters`), and the job's pipeline runs with it applied to
the cached UNet, inside the device lane, taken off again as the call ends however it ends
(`finetune.apply`). Parsed global models are kept on the device by model id, in one
`DeltaCache` that `build_runners` shares among the runners of a host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from lightbox_node.dispatch.test_tasks import ConceptModel, ProgressCallback, RunContext, TaskFailed
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

    from lightbox_node.finetune.adapters import GlobalModel
    from lightbox_node.finetune.apply import DeltaCache


class ConceptPipeline:
    """A job's pipeline that runs a call with a concept's global model applied when given one
    (`concept_model=`), so the change lasts exactly as long as the call, in the device lane."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __call__(self, *, concept_model: GlobalModel | None = None, **call: Any) -> Any:
        if concept_model is None:
            return self.pipe(**call)
        from lightbox_node.finetune.apply import ConceptMismatch, applied

        try:
            with applied(self.pipe.unet, concept_model):
                return self.pipe(**call)
        except ConceptMismatch as exc:
            raise TaskFailed(str(exc)) from None


class ConceptRunner(DiffusionRunner):
    """A Stable Diffusion runner whose jobs may name a concept to paint with."""

    applies_concepts: ClassVar[bool] = True
    """`build_runners` gives such runners one shared `DeltaCache`."""

    def __init__(self, *args: Any, deltas: DeltaCache | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if deltas is None:
            from lightbox_node.finetune.apply import DeltaCache

            deltas = DeltaCache()
        self.deltas = deltas

    async def concept_of(
        self, inputs: Mapping[str, Any], context: RunContext
    ) -> ConceptModel | None:
        """The job's concept's global model as the registry has it now, or None."""
        name = inputs.get("concept")
        return await context.concept(str(name)) if name else None

    def concept_call(self, concept: ConceptModel | None, context: RunContext) -> dict[str, Any]:
        """The pipeline call's `concept_model` argument for `concept`, parsed and checked."""
        if concept is None:
            return {}
        from lightbox_node.finetune.adapters import InvalidGlobalModel

        try:
            model = self.deltas.get(
                concept.model_id, concept.data, device=self.device.name, dtype=self.device.dtype
            )
        except InvalidGlobalModel as exc:
            raise TaskFailed(f"concept {concept.concept!r} ({concept.model_id}): {exc}") from None
        info = model.info
        if info.concept != concept.concept:
            raise TaskFailed(
                f"the global model {concept.model_id} is for concept {info.concept!r}, not "
                f"{concept.concept!r}"
            )
        if info.base_model != self.source.model_id:
            raise TaskFailed(
                f"concept {concept.concept!r} was fine-tuned on {info.base_model}, but this "
                f"host paints with {self.source.model_id}; pick a host that serves "
                f"{info.base_model}"
            )
        context(0.0, f"concept {concept.concept} ({info.adapters} adapter(s), token {info.token})")
        return {"concept_model": model}

    def job_pipeline(self, sampler: str | None) -> Any:
        return ConceptPipeline(super().job_pipeline(sampler))


class TextToImage(ConceptRunner):
    """txt2img: a batch of independent pictures from a prompt, one seed each."""

    job_class: ClassVar[str] = "StableDiffusionPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        concept = await self.concept_of(inputs, context)
        return await context.run_sync(self.paint, inputs, context, concept)

    def paint(
        self, inputs: Mapping[str, Any], context: RunContext, concept: ConceptModel | None = None
    ) -> list[tuple[str, bytes]]:
        count = int(inputs.get("batch_size", 1))
        seeds = draw_seeds(inputs, count)
        context(0.0, f"seed {seeds[0]}")
        images = self.generate(
            context,
            inputs.get("sampler"),
            **self.concept_call(concept, context),
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


class ImageToImage(ConceptRunner):
    """img2img: repaint a picture; `strength` is the share of the steps that run."""

    job_class: ClassVar[str] = "StableDiffusionImg2ImgPipeline"

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        context = RunContext.of(progress)
        image = await context.image(inputs["image"])
        concept = await self.concept_of(inputs, context)
        return await context.run_sync(self.paint, inputs, image, context, concept)

    def paint(
        self,
        inputs: Mapping[str, Any],
        image: Image,
        context: RunContext,
        concept: ConceptModel | None = None,
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
            **self.concept_call(concept, context),
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


__all__ = ["ConceptPipeline", "ConceptRunner", "ImageToImage", "TextToImage"]
