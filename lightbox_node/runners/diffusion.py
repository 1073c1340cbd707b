"""What every Stable Diffusion runner shares: loading, samplers, seeds and the step hook.

A model is loaded once into the pipeline cache (from a diffusers folder, a single-file
checkpoint or a hub id; the tiny demo models take exactly the same path) and each job gets
its own light pipeline object around the cached weights, with its own sampler, so jobs never
share scheduler state. Noise is drawn on the CPU, so a seed starts from the same noise on any
device; a batch uses one generator per picture (seed, seed+1, …), so the pictures are
independent and picture k of a batch is the single picture of seed+k. The step hook reports
progress and stops the pipeline at the next step once the job is cancelled.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lightbox_node.dispatch.test_tasks import RunContext, TaskFailed
from lightbox_node.runners.base import ModelRunner
from lightbox_node.runners.cache import module_bytes
from lightbox_node.runners.device import Device
from lightbox_node.runners.outputs import check_images, encode_png, is_flat, to_uint8
from lightbox_node.runners.source import ModelLoadFailed, ModelSource
from lightbox_node.tasks import RANDOM_SEED, SEED_MAX

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL.Image import Image

SCHEDULERS = {
    "euler_a": "EulerAncestralDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
}
"""The samplers of the task schemas (`builtin.SAMPLERS`) and the diffusers schedulers for them."""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt")
"""Files that count towards a diffusers model's size on disk."""

DECODE_SHARE = 0.05
"""Of a job's progress, the share left for decoding and checking after the last step."""


def load_diffusers_pipeline(cls: Any, source: ModelSource, device: Device) -> Any:
    """`cls` (a diffusers pipeline class) loaded from `source` onto `device`, ready to run."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    place = Path(source.location)
    try:
        if source.local and place.is_file():
            pipe = cls.from_single_file(str(place), dtype=device.dtype, local_files_only=True)
        else:
            pipe = cls.from_pretrained(
                source.location, dtype=device.dtype, local_files_only=source.local
            )
        pipe.to(device.name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadFailed(
            f"model {source.model_id} could not be loaded from {source.location}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if device.attention_slicing:
        pipe.enable_attention_slicing()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw_seeds(inputs: Mapping[str, Any], count: int) -> list[int]:
    """The job's seed and the next `count - 1`; a "random" seed is drawn here."""
    seed = inputs.get("seed", RANDOM_SEED)
    if seed == RANDOM_SEED:
        seed = secrets.randbelow(SEED_MAX + 1)
    return [(int(seed) + offset) % (SEED_MAX + 1) for offset in range(count)]


def generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per picture: the same seed gives the same noise on every device."""
    import torch

    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def step_hook(context: RunContext) -> Callable[..., dict[str, Any]]:
    """A `callback_on_step_end`: stop if cancelled, else report the step as progress."""

    def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict:
        context.raise_if_cancelled()
        total = max(1, int(pipe.num_timesteps))
        context((step + 1) / total * (1 - DECODE_SHARE), f"step {step + 1} of {total}")
        return tensors

    return on_step_end


class DiffusionRunner(ModelRunner):
    """A task served by a diffusers pipeline family; subclasses say which and how to call it.

    `loader_class` names the diffusers class the weights are loaded with (the cache key, so
    txt2img and img2img of one model share one copy); `job_class` the class a job runs.
    """

    loader_class: ClassVar[str] = "StableDiffusionPipeline"
    job_class: ClassVar[str] = "StableDiffusionPipeline"

    @property
    def cache_key(self) -> tuple[str, ...]:
        return (self.loader_class, self.source.location, self.device.name, str(self.device.dtype))

    def load(self) -> Any:
        """The model's loaded pipeline, from the cache or loaded now (blocking: a thread)."""
        import diffusers

        cls = getattr(diffusers, self.loader_class)
        estimate = self.source.size_on_disk(WEIGHT_SUFFIXES) // (2 if self.device.half else 1)
        return self.cache.get(
            self.cache_key,
            lambda: load_diffusers_pipeline(cls, self.source, self.device),
            size=lambda pipe: module_bytes(pipe.components.values()),
            estimate=estimate,
        )

    def job_pipeline(self, sampler: str | None) -> Any:
        """A pipeline object of `job_class` for one job: cached weights, its own scheduler."""
        import diffusers

        base = self.load()
        components = dict(base.components)
        if sampler is not None:
            scheduler_class = getattr(diffusers, SCHEDULERS[sampler])
            components["scheduler"] = scheduler_class.from_config(base.scheduler.config)
        cls = getattr(diffusers, self.job_class)
        wanted = _init_parameters(cls)
        kwargs = {name: value for name, value in components.items() if name in wanted}
        if "requires_safety_checker" in wanted:
            kwargs["requires_safety_checker"] = components.get("safety_checker") is not None
        pipe = cls(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def generate(self, context: RunContext, sampler: str | None, **call: Any) -> np.ndarray:
        """Run a job's pipeline in the device lane, with the step hook; its pictures as floats
        (N, H, W, 3) on 0..1."""
        import torch

        try:
            with self.lane.hold(context):
                pipe = self.job_pipeline(sampler)
                context.raise_if_cancelled()
                result = pipe(**call, output_type="np", callback_on_step_end=step_hook(context))
        except torch.OutOfMemoryError as exc:
            self.device.release_memory()
            raise TaskFailed(
                f"the {self.device.name} device ran out of memory for this job; try a smaller "
                "picture or fewer images at once"
            ) from exc
        flagged = getattr(result, "nsfw_content_detected", None) or []
        if any(flagged):
            which = ", ".join(str(i + 1) for i, hit in enumerate(flagged) if hit)
            raise TaskFailed(
                f"the model's safety checker withheld picture(s) {which}; nothing was delivered"
            )
        return result.images


def _init_parameters(cls: Any) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def rgb(image: Image) -> Image:
    """The image as RGB, transparent parts laid over white (diffusion models see no alpha)."""
    from PIL import Image as PILImage

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def finish(
    context: RunContext,
    images: np.ndarray,
    *,
    output: str,
    flat_allowed: bool = False,
    compose: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[tuple[str, bytes]]:
    """Check the raw pictures, optionally compose them (uint8 in, uint8 out), encode as PNG."""
    check_images(images, flat_allowed=flat_allowed)
    pixels = to_uint8(images)
    outputs = []
    for index in range(pixels.shape[0]):
        context.raise_if_cancelled()
        picture = pixels[index] if compose is None else compose(pixels[index])
        outputs.append((output, encode_png(picture)))
    context(1.0, "done")
    return outputs


def input_is_flat(image: Image) -> bool:
    import numpy as np

    return is_flat(np.asarray(image))


__all__ = [
    "SCHEDULERS",
    "DiffusionRunner",
    "draw_seeds",
    "finish",
    "generators",
    "input_is_flat",
    "load_diffusers_pipeline",
    "rgb",
    "step_hook",
]
