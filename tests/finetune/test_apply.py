"""Applying a concept for one job: the cached UNet changes inside the block and is bit-identical
after it, however the block ends."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lightbox_node.finetune.adapters import InvalidGlobalModel, encode_global_model
from lightbox_node.finetune.apply import ConceptMismatch, DeltaCache, applied
from lightbox_node.finetune.merge import merge_adapters
from tests.finetune.factories import global_model, random_adapter, unet_shapes
from tests.finetune.model_state import assert_unchanged, snapshot


def predict(unet: Any) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    text = torch.randn(1, 77, 32, generator=generator)
    with torch.no_grad():
        return unet(sample, 500, encoder_hidden_states=text).sample


@pytest.fixture(scope="module")
def concept(unet: Any) -> Any:
    return merge_adapters([random_adapter(unet_shapes(unet), rank=4, seed=5, scale=0.4)])


def test_a_concept_changes_the_unet_only_inside_the_block(unet: Any, concept: Any) -> None:
    before, base = snapshot(unet), predict(unet)
    with applied(unet, concept):
        inside = predict(unet)
        module = next(iter(concept.deltas))
        assert torch.allclose(
            unet.get_submodule(module).weight,
            before[f"{module}.weight"][0] + concept.deltas[module],
            atol=1e-6,
        )
    assert (inside - base).abs().mean() > 0.01
    assert_unchanged(unet, before)
    assert torch.equal(predict(unet), base)


def test_the_base_weights_come_back_when_the_job_fails_inside(unet: Any, concept: Any) -> None:
    before = snapshot(unet)
    with pytest.raises(RuntimeError, match="cancelled mid-step"), applied(unet, concept):
        predict(unet)
        raise RuntimeError("cancelled mid-step")
    assert_unchanged(unet, before)


def test_a_concept_for_another_model_is_refused_before_anything_changes(unet: Any) -> None:
    before = snapshot(unet)
    shapes = unet_shapes(unet)
    fits, *_ = shapes
    wrong_shape = global_model(
        {
            fits: torch.zeros(shapes[fits]),
            "down_blocks.1.attentions.0.proj_in.to_q": torch.ones(3, 3),
        }
    )
    with pytest.raises(ConceptMismatch, match="does not have"), applied(unet, wrong_shape):
        pass
    too_wide = global_model({fits: torch.zeros(shapes[fits][0], shapes[fits][1] + 1)})
    with pytest.raises(ConceptMismatch, match="made for tiny-sd"), applied(unet, too_wide):
        pass
    assert_unchanged(unet, before)


def test_parsed_concepts_are_cached_by_model_id_least_recently_used_dropped(concept: Any) -> None:
    cache = DeltaCache(max_models=2)
    data = encode_global_model(concept)
    first = cache.get("sha256-a", data, device="cpu", dtype=torch.float32)
    assert cache.get("sha256-a", b"not read again", device="cpu", dtype=torch.float32) is first
    half = cache.get("sha256-a", data, device="cpu", dtype=torch.float16)
    assert next(iter(half.deltas.values())).dtype == torch.float16
    cache.get("sha256-b", data, device="cpu", dtype=torch.float32)
    assert (len(cache), cache.loads) == (2, 3)
    with pytest.raises(InvalidGlobalModel):
        cache.get("sha256-a", b"gone, so read again", device="cpu", dtype=torch.float32)
