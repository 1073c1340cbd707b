"""Adapters and global models made up for tests: random factors on given module shapes."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch

from lightbox_node.finetune.adapters import (
    TARGET_MODULES,
    Adapter,
    AdapterInfo,
    GlobalModel,
    GlobalModelInfo,
    LoraFactors,
)

SHAPES = {
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q": (8, 8),
    "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k": (8, 6),
    "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0": (8, 8),
}
"""Module path → (out, in): small stand-ins for a UNet's attention projections."""


def info(**overrides: Any) -> AdapterInfo:
    values: dict[str, Any] = {
        "base_model": "tiny-sd",
        "concept": "my-dog",
        "token": "sks",
        "rank": 2,
        "alpha": 2.0,
        "target_modules": TARGET_MODULES,
        "images": 3,
        "train_steps": 50,
        "learning_rate": 1e-4,
        "resolution": 64,
        "prior_preservation": False,
        "seed": 7,
    }
    values.update(overrides)
    return AdapterInfo(**values)


def random_adapter(
    shapes: dict[str, tuple[int, int]] = SHAPES,
    *,
    rank: int = 2,
    seed: int = 0,
    scale: float = 0.1,
    **overrides: Any,
) -> Adapter:
    """An adapter of `rank` with random factors (both nonzero) on every module of `shapes`."""
    generator = torch.Generator().manual_seed(seed)
    factors = {
        module: LoraFactors(
            down=torch.randn(rank, cols, generator=generator) * scale,
            up=torch.randn(rows, rank, generator=generator) * scale,
        )
        for module, (rows, cols) in shapes.items()
    }
    overrides.setdefault("alpha", float(rank))
    return Adapter(info=info(rank=rank, **overrides), factors=MappingProxyType(factors))


def global_model(deltas: dict[str, torch.Tensor], **overrides: Any) -> GlobalModel:
    values: dict[str, Any] = {
        "base_model": "tiny-sd",
        "concept": "my-dog",
        "token": "sks",
        "weighting": "mean",
        "total_weight": 1.0,
        "adapters": 1,
    }
    values.update(overrides)
    return GlobalModel(info=GlobalModelInfo(**values), deltas=MappingProxyType(deltas))


def unet_shapes(unet: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """The attention projections of a diffusers UNet that adapters target: path → (out, in)."""
    return {
        name: (module.out_features, module.in_features)
        for name, module in unet.named_modules()
        if isinstance(module, torch.nn.Linear)
        and any(name.endswith("." + target) for target in TARGET_MODULES)
    }
