"""Merging adapters: exact in weight space (weighted sums of B·A), never averages of the factors."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from lightbox_node.finetune.adapters import Adapter, parse_global_model
from lightbox_node.finetune.apply import applied
from lightbox_node.finetune.merge import (
    MergeError,
    merge_adapter_files,
    merge_adapters,
)
from tests.finetune.factories import SHAPES, random_adapter, unet_shapes


def weighted(adapters: list[Adapter], weights: list[float], module: str) -> torch.Tensor:
    """Σ wᵢ·sᵢ·Bᵢ·Aᵢ, computed the slow, obvious way in float64."""
    total = torch.zeros(SHAPES[module], dtype=torch.float64)
    for adapter, weight in zip(adapters, weights, strict=True):
        if module in adapter.factors:
            f = adapter.factors[module]
            total += weight * adapter.info.scale * (f.up.double() @ f.down.double())
    return total


def naive_factor_average(
    adapters: list[Adapter], weights: list[float], module: str
) -> torch.Tensor:
    """The wrong merge: the weighted mean of the B's times the weighted mean of the A's."""
    total = sum(weights)
    up = sum(w * a.factors[module].up for a, w in zip(adapters, weights, strict=True)) / total
    down = sum(w * a.factors[module].down for a, w in zip(adapters, weights, strict=True)) / total
    return adapters[0].info.scale * (up @ down)


def test_a_mean_merge_is_the_weighted_mean_of_the_adapters_products() -> None:
    adapters = [random_adapter(seed=1), random_adapter(seed=2), random_adapter(seed=3)]
    weights = [1.0, 2.0, 5.0]
    merged = merge_adapters(adapters, weights)
    assert merged.info.weighting == "mean" and merged.info.total_weight == 8.0
    assert merged.info.adapters == 3
    for module in SHAPES:
        expected = weighted(adapters, weights, module) / 8.0
        assert torch.allclose(merged.deltas[module].double(), expected, atol=1e-6)


def test_a_sum_merge_uses_the_weights_as_plain_scales() -> None:
    adapters = [random_adapter(seed=1), random_adapter(seed=2)]
    merged = merge_adapters(adapters, [0.5, 2.0], weighting="sum")
    for module in SHAPES:
        expected = weighted(adapters, [0.5, 2.0], module)
        assert torch.allclose(merged.deltas[module].double(), expected, atol=1e-6)


def test_adapters_of_different_ranks_and_modules_merge_exactly() -> None:
    small = random_adapter(rank=1, seed=1, alpha=4.0)
    large = random_adapter(rank=6, seed=2)
    partial = random_adapter({m: s for m, s in SHAPES.items() if "attn1" in m}, rank=3, seed=3)
    adapters = [small, large, partial]
    merged = merge_adapters(adapters, [1.0, 1.0, 2.0])
    for module in SHAPES:
        expected = weighted(adapters, [1.0, 1.0, 2.0], module) / 4.0
        assert torch.allclose(merged.deltas[module].double(), expected, atol=1e-6)


def test_the_exact_merge_differs_from_averaging_the_factors() -> None:
    adapters = [random_adapter(rank=4, seed=1), random_adapter(rank=4, seed=2)]
    merged = merge_adapters(adapters, [1.0, 1.0])
    module = next(iter(SHAPES))
    exact = weighted(adapters, [1.0, 1.0], module).float() / 2
    naive = naive_factor_average(adapters, [1.0, 1.0], module)
    assert torch.allclose(merged.deltas[module], exact, atol=1e-6)
    # mean(B)·mean(A) = ¼(B₁A₁ + B₂A₂ + B₁A₂ + B₂A₁): half the products, plus cross terms
    assert (naive - exact).norm() > 0.5 * exact.norm()


def test_weights_default_to_the_number_of_training_images() -> None:
    adapters = [random_adapter(seed=1, images=3), random_adapter(seed=2, images=9)]
    assert merge_adapters(adapters).info.total_weight == 12.0
    by_images = merge_adapters(adapters)
    explicit = merge_adapters(adapters, [3.0, 9.0])
    for module in SHAPES:
        assert torch.equal(by_images.deltas[module], explicit.deltas[module])


@pytest.mark.parametrize("weighting", ["mean", "sum"])
def test_merging_in_rounds_gives_the_model_of_merging_all_at_once(weighting: Any) -> None:
    adapters = [random_adapter(seed=s, rank=1 + s) for s in range(4)]
    weights = [1.0, 4.0, 2.0, 3.0]
    at_once = merge_adapters(adapters, weights, weighting=weighting)
    first = merge_adapters(adapters[:1], weights[:1], weighting=weighting)
    second = merge_adapters(adapters[1:3], weights[1:3], parent=first)
    third = merge_adapters(adapters[3:], weights[3:], parent=second)
    assert (third.info.total_weight, third.info.adapters) == (10.0, 4)
    for module in SHAPES:
        assert torch.allclose(third.deltas[module], at_once.deltas[module], atol=1e-6)


def test_merging_files_gives_a_global_model_file() -> None:
    from lightbox_node.finetune.adapters import encode_adapter

    adapters = [random_adapter(seed=1), random_adapter(seed=2, rank=3)]
    first = merge_adapter_files([encode_adapter(a) for a in adapters], [1.0, 3.0])
    parsed = parse_global_model(first)
    assert parsed.info.total_weight == 4.0
    again = merge_adapter_files([encode_adapter(random_adapter(seed=3))], [4.0], parent=first)
    assert parse_global_model(again).info == parsed.info.__class__(
        base_model="tiny-sd",
        concept="my-dog",
        token="sks",
        weighting="mean",
        total_weight=8.0,
        adapters=3,
    )


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (random_adapter(seed=2, base_model="other-sd"), "different models"),
        (random_adapter(seed=2, concept="my-cat"), "different models"),
        (random_adapter(seed=2, token="xyz"), "different models"),
        (random_adapter({next(iter(SHAPES)): (8, 5)}, seed=2), "8×8 in one file and 8×5"),
    ],
)
def test_adapters_that_do_not_belong_together_are_refused(second: Adapter, reason: str) -> None:
    with pytest.raises(MergeError, match=reason):
        merge_adapters([random_adapter(seed=1), second])


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ([1.0], "1 weights were given for 2 adapters"),
        ([1.0, 0.0], "finite number > 0"),
        ([1.0, -2.0], "finite number > 0"),
        ([1.0, math.nan], "finite number > 0"),
        ([1.0, math.inf], "finite number > 0"),
        ([1.0, True], "must be a number"),
    ],
)
def test_bad_weights_are_refused(weights: list[Any], reason: str) -> None:
    with pytest.raises(MergeError, match=reason):
        merge_adapters([random_adapter(seed=1), random_adapter(seed=2)], weights)


def test_a_merge_needs_adapters_and_keeps_its_parents_weighting() -> None:
    with pytest.raises(MergeError, match="1 to 256 adapters"):
        merge_adapters([])
    parent = merge_adapters([random_adapter(seed=1)], weighting="sum")
    with pytest.raises(MergeError, match="same weighting"):
        merge_adapters([random_adapter(seed=2)], parent=parent, weighting="mean")
    other = merge_adapters([random_adapter(seed=1, concept="my-cat")])
    with pytest.raises(MergeError, match="parent model"):
        merge_adapters([random_adapter(seed=2)], parent=other)


# -- on the model -----------------------------------------------------------------------------


def test_the_merged_model_is_the_base_with_each_delta_added_at_its_weight(unet: Any) -> None:
    shapes = unet_shapes(unet)
    first = random_adapter(shapes, rank=4, seed=11, scale=0.4)
    second = random_adapter(shapes, rank=4, seed=12, scale=0.4)
    weights = [1.0, 3.0]
    merged = merge_adapters([first, second], weights)
    # The reference: a copy of the UNet whose weights are W + (1·ΔW₁ + 3·ΔW₂) / 4, set by hand.
    reference = copy.deepcopy(unet)
    with torch.no_grad():
        for module in shapes:
            delta = (first.delta(module) + 3 * second.delta(module)) / 4
            reference.get_submodule(module).weight += delta
    naive = copy.deepcopy(unet)
    with torch.no_grad():
        for module in shapes:
            factors = [first.factors[module], second.factors[module]]
            up = (factors[0].up + 3 * factors[1].up) / 4
            down = (factors[0].down + 3 * factors[1].down) / 4
            naive.get_submodule(module).weight += first.info.scale * (up @ down)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    text = torch.randn(1, 77, 32, generator=generator)

    def predict(model: Any) -> torch.Tensor:
        with torch.no_grad():
            return model(sample, 500, encoder_hidden_states=text).sample

    with applied(unet, merged):
        merged_out = predict(unet)
    base_out, expected, naive_out = predict(unet), predict(reference), predict(naive)
    change = (expected - base_out).abs().mean()
    assert change > 0.01, "the adapters must change the prediction for this test to mean much"
    assert (merged_out - expected).abs().max() < 1e-4
    assert (naive_out - expected).abs().mean() > 0.2 * change
