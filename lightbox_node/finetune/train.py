"""DreamBooth with LoRA on a Stable Diffusion pipeline's UNet: a few photos in, an adapter out.

The loop of the DreamBooth-LoRA recipe (Ruiz et al. 2023; Hu et al. 2022), as diffusers'
training example runs it: the photos are centre-cropped and resized to the resolution and
encoded by the VAE once; each step noises one photo's latents at a random timestep and
trains LoRA factors on the UNet's attention projections (peft) to predict the noise (or the
velocity, for v-prediction models) given the instance prompt, "<class prompt> with the token
before its last word" ("a photo of a sks dog"), or "a photo of <token>" without a class prompt.

Prior preservation (optional) keeps the model's idea of the class: the pipeline itself first
paints class pictures from the class prompt, and each step also noises one of them and
trains the adapted UNet to predict, for the class prompt, what the base UNet predicts there
(its adapters switched off). Matching the base model's own prediction, rather than the noise
as the original recipe does, preserves the prior exactly, not only as well as the base model
fits its own pictures: on the random-weight demo model the noise target moved the class
prompt's prediction as far as the concept's, while the base prediction keeps it three to
seven times closer (tests/finetune/test_train.py).

Everything random comes from one seeded CPU generator, so a seed gives the same adapter on
any run of one machine. On CUDA the UNet runs under autocast (its own half precision, fp16
with a gradient scaler or bf16) with gradient checkpointing, while the LoRA factors and the
optimiser stay float32; on the CPU everything is float32. The cached pipeline is given back
as it was: the LoRA layers are taken out again, and the base weights are frozen but never
written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from lightbox_node.finetune.adapters import (
    TARGET_MODULES,
    Adapter,
    AdapterInfo,
    LoraFactors,
)

if TYPE_CHECKING:
    from PIL.Image import Image

ADAPTER_NAME = "lightbox"
CLASS_IMAGE_BATCH = 4
"""Class pictures painted at once: enough to keep a GPU busy, few enough for a small one."""
ENCODE_BATCH = 4
CLASS_SHARE = 0.15
"""Of a job's progress with prior preservation, the share for painting the class pictures."""
TRAIN_END = 0.98
"""Progress when the last step is done; the rest is for packing the adapter."""

Progress = Callable[[float, str], None]
MixedPrecision = Literal["auto", "no", "fp16", "bf16"]


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """One fine-tune: what the adapter is for, and how to train it."""

    base_model: str
    concept: str
    token: str
    class_prompt: str = ""
    prior_preservation: bool = False
    rank: int = 8
    alpha: float | None = None
    """LoRA's alpha; None means the rank (a scale of 1)."""
    steps: int = 800
    learning_rate: float = 1e-4
    resolution: int = 512
    seed: int = 0
    target_modules: tuple[str, ...] = TARGET_MODULES
    class_images: int = 0
    """How many class pictures to paint for prior preservation; 0: one per photo."""
    class_image_steps: int = 25
    prior_loss_weight: float = 1.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool | None = None
    """None: on CUDA only, where memory is short; on the CPU it only costs time."""
    mixed_precision: MixedPrecision = "auto"
    """"auto": the UNet's own half precision on CUDA (bf16 for a float32 UNet when the GPU
    has it, else fp16); float32 on other devices."""

    def __post_init__(self) -> None:
        if self.prior_preservation and not self.class_prompt.strip():
            raise ValueError("prior preservation needs a class prompt")
        if self.steps < 1 or self.rank < 1 or self.resolution < 8 or self.resolution % 8:
            raise ValueError("steps and rank must be positive and the resolution a multiple of 8")


def instance_prompt(token: str, class_prompt: str = "") -> str:
    """The prompt the photos are trained with: the class prompt with the token before its
    last word ("a photo of a dog" → "a photo of a sks dog"), or "a photo of <token>"."""
    words = class_prompt.split()
    if not words:
        return f"a photo of {token}"
    return " ".join([*words[:-1], token, words[-1]])


def prepare_images(images: Sequence[Image], resolution: int) -> torch.Tensor:
    """The photos centre-cropped to squares and resized: (N, 3, R, R) float32 on -1..1."""
    import numpy as np
    from PIL import Image as PILImage

    out = []
    for image in images:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.convert("RGB").crop((left, top, left + side, top + side))
        square = square.resize((resolution, resolution), PILImage.Resampling.BICUBIC)
        out.append(torch.from_numpy(np.asarray(square, dtype=np.float32).copy()))
    return torch.stack(out).permute(0, 3, 1, 2) / 127.5 - 1.0


# -- the pieces of a step ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Latents:
    """The VAE's distribution of each picture's latents: sampled afresh at every step."""

    mean: torch.Tensor
    std: torch.Tensor
    scale: float

    def sample(self, index: int, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.mean[index : index + 1], self.std[index : index + 1]
        noise = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
        return (mean + std * noise) * self.scale

    def __len__(self) -> int:
        return self.mean.shape[0]


@torch.no_grad()
def _encode(vae: Any, pixels: torch.Tensor) -> _Latents:
    means, stds = [], []
    for start in range(0, pixels.shape[0], ENCODE_BATCH):
        batch = pixels[start : start + ENCODE_BATCH].to(vae.device, vae.dtype)
        dist = vae.encode(batch).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return _Latents(torch.cat(means), torch.cat(stds), float(vae.config.scaling_factor))


@torch.no_grad()
def _prompt(pipe: Any, prompt: str) -> torch.Tensor:
    embeds, _ = pipe.encode_prompt(prompt, pipe.unet.device, 1, False)
    return embeds


def _class_pictures(
    pipe: Any, settings: TrainSettings, count: int, report: Progress, check: Callable[[], None]
) -> torch.Tensor:
    """`count` pictures of the class painted by the pipeline itself, as (N, 3, R, R) on -1..1."""
    batches = []
    done = 0
    while done < count:
        size = min(CLASS_IMAGE_BATCH, count - done)
        seeds = [settings.seed + 1 + done + k for k in range(size)]
        result = pipe(
            settings.class_prompt,
            num_images_per_prompt=size,
            height=settings.resolution,
            width=settings.resolution,
            num_inference_steps=settings.class_image_steps,
            generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            output_type="pt",
            callback_on_step_end=_class_step_hook(done, size, count, report, check),
        )
        batches.append(result.images.float().cpu() * 2 - 1)
        done += size
    return torch.cat(batches)


def _class_step_hook(
    done: int, size: int, count: int, report: Progress, check: Callable[[], None]
) -> Callable[..., dict[str, Any]]:
    """A `callback_on_step_end` for painting pictures done+1 … done+size of `count`."""

    def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        check()
        total = max(1, int(pipe.num_timesteps))
        share = (done + size * (step + 1) / total) / count
        report(share * CLASS_SHARE, f"class picture {done + 1}–{done + size} of {count}")
        return tensors

    return on_step


def _autocast(unet: Any, setting: MixedPrecision) -> tuple[torch.dtype | None, bool]:
    """The autocast dtype for the UNet (None: none) and whether gradients need scaling."""
    if unet.device.type != "cuda" or setting == "no":
        return None, False
    if setting == "auto":
        if unet.dtype in (torch.float16, torch.bfloat16):
            setting = "fp16" if unet.dtype == torch.float16 else "bf16"
        else:
            setting = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return (torch.float16, True) if setting == "fp16" else (torch.bfloat16, False)


# -- LoRA layers on the cached UNet -----------------------------------------------------------


@contextmanager
def lora_layers(unet: Any, settings: TrainSettings) -> Iterator[list[tuple[str, Any]]]:
    """LoRA layers (peft) on `unet`'s target modules for the length of the block, trainable in
    float32 while every base weight is frozen; afterwards the UNet is as it was: the same
    modules, flags, mode and gradient checkpointing."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    flags = {name: p.requires_grad for name, p in unet.named_parameters()}
    training = unet.training
    checkpointing = bool(getattr(unet, "is_gradient_checkpointing", False))
    had_config = "peft_config" in vars(unet)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha if settings.alpha is not None else settings.rank,
        target_modules=list(settings.target_modules),
        init_lora_weights=True,  # A random, B zero: training starts from the base model
    )
    unet.requires_grad_(False)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)  # peft draws A from the global generator
            inject_adapter_in_model(config, unet, adapter_name=ADAPTER_NAME)
        layers = [(n, m) for n, m in unet.named_modules() if isinstance(m, LoraLayer)]
        for _, layer in layers:
            for factor in (layer.lora_A[ADAPTER_NAME], layer.lora_B[ADAPTER_NAME]):
                factor.to(torch.float32)
                factor.requires_grad_(True)
        yield layers
    finally:
        _remove_lora(unet)
        if not had_config:
            vars(unet).pop("peft_config", None)
        for name, param in unet.named_parameters():
            param.requires_grad_(flags.get(name, False))
        unet.train(training)
        if hasattr(unet, "is_gradient_checkpointing"):
            if checkpointing and not unet.is_gradient_checkpointing:
                unet.enable_gradient_checkpointing()
            elif not checkpointing and unet.is_gradient_checkpointing:
                unet.disable_gradient_checkpointing()


def _remove_lora(unet: Any) -> None:
    """Put every module that peft wrapped back in its place: the original module object."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(n, m) for n, m in unet.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, wrapper in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        setattr(parent, child, wrapper.get_base_layer())


def _switch(layers: list[tuple[str, Any]], on: bool) -> None:
    for _, layer in layers:
        layer.enable_adapters(on)


def _factors(layers: list[tuple[str, Any]]) -> dict[str, LoraFactors]:
    return {
        name: LoraFactors(
            down=layer.lora_A[ADAPTER_NAME].weight.detach().float().cpu().clone(),
            up=layer.lora_B[ADAPTER_NAME].weight.detach().float().cpu().clone(),
        )
        for name, layer in layers
    }


# -- the loop ---------------------------------------------------------------------------------


def train_lora(
    pipe: Any,
    images: Sequence[Image],
    settings: TrainSettings,
    *,
    report: Progress | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> Adapter:
    """Fine-tune a LoRA adapter for `settings.token` from `images` on `pipe`'s UNet.

    `pipe` is a diffusers Stable Diffusion pipeline (its components are used, not changed);
    `report(fraction, message)` is called after every step, and `check_cancel()` before
    every step (it raises to stop). Blocking: run it in a worker thread.
    """
    import diffusers

    report = report if report is not None else (lambda fraction, message: None)
    check = check_cancel if check_cancel is not None else (lambda: None)
    unet = pipe.unet
    device = unet.device
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    check()
    instance = _encode(pipe.vae, prepare_images(images, settings.resolution))
    cond = _prompt(pipe, instance_prompt(settings.token, settings.class_prompt))
    if settings.prior_preservation:
        count = settings.class_images or len(images)
        painted = _class_pictures(pipe, settings, count, report, check)
        prior = _encode(pipe.vae, painted)
        cond = torch.cat([cond, _prompt(pipe, settings.class_prompt)])
    noise_schedule = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
    timesteps = int(noise_schedule.config.num_train_timesteps)
    velocity = noise_schedule.config.prediction_type == "v_prediction"
    autocast_dtype, scaled = _autocast(unet, settings.mixed_precision)
    checkpointing = (
        settings.gradient_checkpointing
        if settings.gradient_checkpointing is not None
        else device.type == "cuda"
    )
    start = CLASS_SHARE if settings.prior_preservation else 0.0

    def autocast() -> Any:
        if autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=autocast_dtype)

    def noised(latents: _Latents, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clean = latents.sample(index, generator)
        noise = torch.randn(clean.shape, generator=generator).to(device, clean.dtype)
        t = torch.randint(0, timesteps, (1,), generator=generator).to(device)
        target = noise_schedule.get_velocity(clean, noise, t) if velocity else noise
        return noise_schedule.add_noise(clean, noise, t), t, target

    with lora_layers(unet, settings) as layers:
        params = [p for _, layer in layers for p in layer.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=settings.learning_rate)
        scaler = torch.amp.GradScaler(device.type) if scaled else None
        if checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        order: list[int] = []
        for step in range(settings.steps):
            check()
            if not order:
                order = torch.randperm(len(instance), generator=generator).tolist()
            noisy, t, target = noised(instance, order.pop())
            if settings.prior_preservation:
                prior_noisy, prior_t, _ = noised(prior, step % len(prior))
                with torch.no_grad(), autocast():
                    _switch(layers, False)
                    try:
                        teacher = unet(prior_noisy, prior_t, encoder_hidden_states=cond[1:]).sample
                    finally:
                        _switch(layers, True)
                noisy, t = torch.cat([noisy, prior_noisy]), torch.cat([t, prior_t])
            with autocast():
                predicted = unet(noisy, t, encoder_hidden_states=cond).sample.float()
            loss = F.mse_loss(predicted[:1], target.float())
            if settings.prior_preservation:
                prior_loss = F.mse_loss(predicted[1:], teacher.float())
                loss = loss + settings.prior_loss_weight * prior_loss
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimiser)
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            if scaler is not None:
                scaler.step(optimiser)
                scaler.update()
            else:
                optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            done = (step + 1) / settings.steps
            report(
                start + (TRAIN_END - start) * done,
                f"step {step + 1} of {settings.steps}, loss {loss.item():.4f}",
            )
        factors = _factors(layers)
    info = AdapterInfo(
        base_model=settings.base_model,
        concept=settings.concept,
        token=settings.token,
        rank=settings.rank,
        alpha=float(settings.alpha if settings.alpha is not None else settings.rank),
        target_modules=tuple(settings.target_modules),
        images=len(images),
        train_steps=settings.steps,
        learning_rate=settings.learning_rate,
        resolution=settings.resolution,
        prior_preservation=settings.prior_preservation,
        seed=settings.seed,
    )
    return Adapter(info=info, factors=MappingProxyType(factors))


__all__ = [
    "TrainSettings",
    "instance_prompt",
    "lora_layers",
    "prepare_images",
    "train_lora",
]
