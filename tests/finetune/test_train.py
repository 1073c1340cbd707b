"""DreamBooth-LoRA training on the tiny Stable Diffusion, on the CPU, loaded as real weights are."""

from __future__ import annotations

from typing import Any

import diffusers
import pytest
import torch
from PIL import Image

from lightbox_node.finetune.adapters import TARGET_MODULES, encode_adapter, parse_adapter
from lightbox_node.finetune.apply import applied
from lightbox_node.finetune.merge import merge_adapters
from lightbox_node.finetune.train import (
    TrainSettings,
    instance_prompt,
    prepare_images,
    train_lora,
)
from tests.finetune.model_state import assert_unchanged, snapshot
from tests.runners.harness import photo

PHOTOS = [photo(256, 256, seed=i) for i in range(3)]
CONCEPT_PROMPT = "a photo of a sks dog"
CLASS_PROMPT = "a photo of a dog"
UNRELATED_PROMPT = "a watercolor of a red car at night"


def settings(**overrides: Any) -> TrainSettings:
    values: dict[str, Any] = {
        "base_model": "tiny-sd",
        "concept": "my-dog",
        "token": "sks",
        "class_prompt": CLASS_PROMPT,
        "rank": 4,
        "steps": 10,
        "learning_rate": 1e-2,
        "resolution": 64,
        "seed": 2,
        "class_image_steps": 5,
    }
    values.update(overrides)
    return TrainSettings(**values)


def predictions(pipe: Any, prompt: str, concept: Any = None) -> torch.Tensor:
    """The UNet's noise predictions for the photos noised at three timesteps, given `prompt`."""
    with torch.no_grad():
        latents = pipe.vae.encode(prepare_images(PHOTOS, 64)).latent_dist.mean
        latents = latents * pipe.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
        timesteps = torch.tensor([200, 500, 800])
        schedule = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
        noisy = schedule.add_noise(latents, noise, timesteps)
        text, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
        text = text.expand(len(PHOTOS), -1, -1)
        if concept is None:
            return pipe.unet(noisy, timesteps, encoder_hidden_states=text).sample
        with applied(pipe.unet, concept):
            return pipe.unet(noisy, timesteps, encoder_hidden_states=text).sample


def test_the_instance_prompt_puts_the_token_before_the_class_noun() -> None:
    assert instance_prompt("sks", "a photo of a dog") == "a photo of a sks dog"
    assert instance_prompt("sks", "dog") == "sks dog"
    assert instance_prompt("sks") == "a photo of sks"


def test_photos_are_centre_cropped_squares_on_minus_one_to_one() -> None:
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 100, 100))  # the left third, cut off by the centre crop
    pixels = prepare_images([wide, PHOTOS[0]], 64)
    assert pixels.shape == (2, 3, 64, 64)
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert torch.allclose(pixels[0, :, 32, 32], torch.tensor([1.0, -1.0, -1.0]))


def test_prior_preservation_needs_a_class_prompt() -> None:
    with pytest.raises(ValueError, match="class prompt"):
        settings(prior_preservation=True, class_prompt=" ")


def test_a_fine_tune_changes_the_concept_prompt_and_keeps_the_class_prompt(pipe: Any) -> None:
    """The adapter moves the UNet's prediction for "a photo of a sks dog" four to seven times
    as far as for "a photo of a dog" (prior preservation keeps the class as the base model
    has it). A random-weight model barely reads its prompt (prompts move its prediction by a
    few per cent), so a prompt never seen in training moves with the concept's (0.6 to 1.0
    of it); that an unrelated prompt stays put is a trait of a trained base model,
    which a random one cannot show."""
    adapter = train_lora(pipe, PHOTOS, settings(steps=80, prior_preservation=True))
    concept = merge_adapters([adapter])
    moved = {
        prompt: (predictions(pipe, prompt, concept) - predictions(pipe, prompt)).abs().mean()
        for prompt in (CONCEPT_PROMPT, CLASS_PROMPT, UNRELATED_PROMPT)
    }
    assert moved[CONCEPT_PROMPT] > 0.1
    assert moved[CLASS_PROMPT] < moved[CONCEPT_PROMPT] / 2.5
    assert moved[UNRELATED_PROMPT] < moved[CONCEPT_PROMPT]


def test_an_adapter_records_what_it_was_trained_for_and_is_one_seed_one_adapter(
    pipe: Any,
) -> None:
    events: list[tuple[float, str]] = []
    first = train_lora(pipe, PHOTOS, settings(), report=lambda f, m: events.append((f, m)))
    again = train_lora(pipe, PHOTOS, settings())
    other = train_lora(pipe, PHOTOS, settings(seed=3))
    assert encode_adapter(first) == encode_adapter(again)
    assert encode_adapter(first) != encode_adapter(other)
    info = parse_adapter(encode_adapter(first)).info
    assert (info.base_model, info.concept, info.token, info.rank, info.images) == (
        "tiny-sd",
        "my-dog",
        "sks",
        4,
        3,
    )
    assert info.target_modules == TARGET_MODULES
    # 2 transformer blocks × (self- and cross-attention) × 4 projections, on each side
    assert len(first.factors) == 32
    assert all(module.endswith(TARGET_MODULES) for module in first.factors)
    steps = [message for _, message in events]
    assert [m.split(",")[0] for m in steps] == [f"step {i} of 10" for i in range(1, 11)]
    fractions = [fraction for fraction, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] < 1.0


def test_training_gives_the_cached_unet_back_as_it_was_even_when_cancelled(pipe: Any) -> None:
    unet = pipe.unet
    before = snapshot(unet)
    modules = [(name, type(module)) for name, module in unet.named_modules()]
    flags = {name: p.requires_grad for name, p in unet.named_parameters()}
    mode = unet.training
    seen = []

    def cancel_at_step_three() -> None:
        seen.append(1)
        if len(seen) == 4:
            raise RuntimeError("the job was cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        train_lora(
            pipe, PHOTOS, settings(prior_preservation=True), check_cancel=cancel_at_step_three
        )
    train_lora(pipe, PHOTOS, settings(steps=2))
    assert [(name, type(module)) for name, module in unet.named_modules()] == modules
    assert {name: p.requires_grad for name, p in unet.named_parameters()} == flags
    assert unet.training == mode and "peft_config" not in vars(unet)
    assert not unet.is_gradient_checkpointing
    assert_unchanged(unet, before)


def test_gradient_checkpointing_saves_memory_not_results(pipe: Any) -> None:
    plain = train_lora(pipe, PHOTOS, settings(steps=3))
    checkpointed = train_lora(pipe, PHOTOS, settings(steps=3, gradient_checkpointing=True))
    assert not pipe.unet.is_gradient_checkpointing, "switched off again after training"
    for module, factors in plain.factors.items():
        assert torch.allclose(checkpointed.factors[module].up, factors.up, atol=1e-5)
        assert torch.allclose(checkpointed.factors[module].down, factors.down, atol=1e-5)
