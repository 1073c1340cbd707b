"""Exact merges of LoRA adapters into a concept's global model, in weight space.

An adapter changes a module's weight by ΔWᵢ = sᵢ·Bᵢ·Aᵢ (sᵢ = alpha / rank). A merge adds
those products, weighted: never averages of the A's and of the B's separately, because the
product of two averages is not the average of the products (mean(B)·mean(A) has cross terms
Bᵢ·Aⱼ that no adapter ever learnt). Adapters of different ranks merge the same way, since
only their products meet.

Two weightings, recorded in the global model so the next merge continues the same way:

* "mean" (the default, federated averaging): the global delta is the weighted mean of every
  adapter merged so far, ΔW = Σ wᵢ·ΔWᵢ / Σ wᵢ. On top of a parent whose weights add up to W,
  ΔW' = (W·ΔW + Σ wⱼ·ΔWⱼ) / (W + Σ wⱼ), so merging in several rounds gives the same model
  as merging everything at once, and the delta keeps the size of one adapter's however many
  are merged. Weights default to each adapter's number of training images.
* "sum": ΔW' = ΔW + Σ wⱼ·ΔWⱼ, the weights being plain scales chosen by the caller.

Pure torch on the CPU, no I/O; a merge that cannot be made raises `MergeError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import MappingProxyType

import torch

from lightbox_node.errors import LightboxError
from lightbox_node.finetune.adapters import (
    Adapter,
    GlobalModel,
    GlobalModelInfo,
    Weighting,
    encode_global_model,
    parse_adapter,
    parse_global_model,
)

MAX_ADAPTERS_PER_MERGE = 256
"""As many as the registry records in one merge."""


class MergeError(LightboxError):
    """Adapters (or a parent model) that cannot be merged together: the message says why."""


def image_weights(adapters: Sequence[Adapter]) -> list[float]:
    """Each adapter weighted by the number of images it was trained on."""
    return [float(adapter.info.images) for adapter in adapters]


def _checked_weights(adapters: Sequence[Adapter], weights: Sequence[float] | None) -> list[float]:
    if not 1 <= len(adapters) <= MAX_ADAPTERS_PER_MERGE:
        raise MergeError(
            f"a merge takes 1 to {MAX_ADAPTERS_PER_MERGE} adapters, not {len(adapters)}"
        )
    if weights is None:
        return image_weights(adapters)
    if len(weights) != len(adapters):
        raise MergeError(f"{len(weights)} weights were given for {len(adapters)} adapters")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise MergeError(f"a weight must be a number, not {type(weight).__name__}")
        if not math.isfinite(weight) or weight <= 0:
            raise MergeError(f"a weight must be a finite number > 0, not {weight!r}")
    return [float(w) for w in weights]


def _identity(adapters: Sequence[Adapter], parent: GlobalModel | None) -> tuple[str, str, str]:
    first = adapters[0].info
    wanted = (first.base_model, first.concept, first.token)
    for adapter in adapters[1:]:
        info = adapter.info
        if (info.base_model, info.concept, info.token) != wanted:
            raise MergeError(
                f"adapters for different models cannot merge: base model {first.base_model}, "
                f"concept {first.concept!r}, token {first.token!r} vs {info.base_model}, "
                f"{info.concept!r}, {info.token!r}"
            )
    if parent is not None:
        info = parent.info
        if (info.base_model, info.concept, info.token) != wanted:
            raise MergeError(
                f"the parent model is base model {info.base_model}, concept {info.concept!r}, "
                f"token {info.token!r}; the adapters are {wanted[0]}, {wanted[1]!r}, "
                f"{wanted[2]!r}"
            )
    return wanted


def _shapes(adapters: Sequence[Adapter], parent: GlobalModel | None) -> dict[str, tuple[int, int]]:
    shapes: dict[str, tuple[int, int]] = {}

    def note(module: str, shape: tuple[int, int]) -> None:
        seen = shapes.setdefault(module, shape)
        if seen != shape:
            raise MergeError(
                f"module {module!r} is {seen[0]}×{seen[1]} in one file and "
                f"{shape[0]}×{shape[1]} in another"
            )

    if parent is not None:
        for module, delta in parent.deltas.items():
            note(module, (delta.shape[0], delta.shape[1]))
    for adapter in adapters:
        for module, factors in adapter.factors.items():
            note(module, (factors.up.shape[0], factors.down.shape[1]))
    return shapes


def merge_adapters(
    adapters: Sequence[Adapter],
    weights: Sequence[float] | None = None,
    *,
    parent: GlobalModel | None = None,
    weighting: Weighting | None = None,
) -> GlobalModel:
    """The global model of `adapters` merged with `weights` (default: their image counts),
    on top of `parent` if given, with `weighting` "mean" or "sum" (default: the parent's,
    else "mean"). Modules an adapter does not change count as a zero change for it."""
    chosen = _checked_weights(adapters, weights)
    base_model, concept, token = _identity(adapters, parent)
    if weighting is None:
        weighting = parent.info.weighting if parent is not None else "mean"
    if weighting not in ("mean", "sum"):
        raise MergeError(f"weighting must be 'mean' or 'sum', not {weighting!r}")
    if parent is not None and parent.info.weighting != weighting:
        raise MergeError(
            f"the parent model was merged by {parent.info.weighting}; a merge on top of it "
            f"must use the same weighting, not {weighting}"
        )
    shapes = _shapes(adapters, parent)
    added = math.fsum(chosen)
    before = parent.info.total_weight if parent is not None else 0.0
    total = before + added
    # "mean" scales the parent by W / (W + Σw) and each adapter by wᵢ / (W + Σw).
    keep, share = (before / total, 1.0 / total) if weighting == "mean" else (1.0, 1.0)
    deltas: dict[str, torch.Tensor] = {}
    for module, (rows, cols) in sorted(shapes.items()):
        if parent is not None and module in parent.deltas:
            delta = parent.deltas[module].to(torch.float32) * keep
        else:
            delta = torch.zeros(rows, cols, dtype=torch.float32)
        for adapter, weight in zip(adapters, chosen, strict=True):
            factors = adapter.factors.get(module)
            if factors is not None:
                # delta += (w · share · s) · B @ A, one fused multiply-add per adapter
                delta.addmm_(factors.up, factors.down, alpha=weight * share * adapter.info.scale)
        if not bool(torch.isfinite(delta).all()):
            raise MergeError(f"the merged change of {module!r} overflows float32")
        deltas[module] = delta
    info = GlobalModelInfo(
        base_model=base_model,
        concept=concept,
        token=token,
        weighting=weighting,
        total_weight=total,
        adapters=(parent.info.adapters if parent is not None else 0) + len(adapters),
    )
    return GlobalModel(info=info, deltas=MappingProxyType(deltas))


def merge_adapter_files(
    adapters: Sequence[bytes],
    weights: Sequence[float] | None = None,
    *,
    parent: bytes | None = None,
    weighting: Weighting | None = None,
    dtype: torch.dtype = torch.float32,
) -> bytes:
    """`merge_adapters` on files: adapter blobs (and the parent global model's blob) in,
    the new global model's blob out. Raises `InvalidAdapter`, `InvalidGlobalModel` or
    `MergeError`, all `LightboxError`s."""
    parsed = [parse_adapter(data) for data in adapters]
    base = parse_global_model(parent) if parent is not None else None
    merged = merge_adapters(parsed, weights, parent=base, weighting=weighting)
    return encode_global_model(merged, dtype=dtype)


__all__ = [
    "MAX_ADAPTERS_PER_MERGE",
    "MergeError",
    "image_weights",
    "merge_adapter_files",
    "merge_adapters",
]
