"""The finetune task on a GPU host's runner, and txt2img / img2img painting with a concept."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import trio
from PIL import Image

from lightbox_node.dispatch.test_tasks import ConceptModel, RunContext, TaskFailed
from lightbox_node.finetune.adapters import encode_global_model, parse_adapter
from lightbox_node.finetune.merge import merge_adapter_files, merge_adapters
from lightbox_node.runners import ModelSource, PipelineCache
from lightbox_node.runners.finetune import FineTune
from tests.finetune.factories import random_adapter, unet_shapes
from tests.finetune.model_state import assert_unchanged, snapshot
from tests.runners.harness import Blobs, inputs_for, photo, pixels

PROMPT = "a photo of a sks dog"


def finetune_inputs(blobs: Blobs, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "instance_images": [blobs.put(photo(256, 256, seed=i)) for i in range(3)],
        "concept": "my-dog",
        "concept_token": "sks",
        "train_steps": 50,
        "learning_rate": 5e-3,
        "resolution": 64,
        "rank": 4,
        "seed": 1,
    }
    values.update(overrides)
    return values


def concept_blob(model: Any, concept: str = "my-dog") -> ConceptModel:
    data = encode_global_model(model)
    return ConceptModel(concept, "sha256-" + hashlib.sha256(data).hexdigest(), data)


def resolver(*concepts: ConceptModel) -> Callable[[str], Any]:
    by_name = {c.concept: c for c in concepts}

    async def resolve(name: str) -> ConceptModel:
        await trio.lowlevel.checkpoint()
        if name not in by_name:
            raise TaskFailed(f"no concept {name!r} in the registry")
        return by_name[name]

    return resolve


async def run(
    runner: Any,
    values: dict[str, Any],
    blobs: Blobs | None = None,
    concepts: Callable[[str], Any] | None = None,
    events: list[tuple[float, str]] | None = None,
) -> list[tuple[str, bytes]]:
    events = events if events is not None else []
    context = RunContext(
        lambda f, m: events.append((f, m)),
        images=blobs.fetch if blobs else None,
        concepts=concepts,
    )
    return await runner.run(inputs_for(runner, values), context)


@pytest.fixture(scope="module")
def concept(unet: Any) -> ConceptModel:
    """A concept whose global model changes the tiny UNet clearly."""
    return concept_blob(merge_adapters([random_adapter(unet_shapes(unet), rank=4, scale=0.5)]))


# -- finetune ---------------------------------------------------------------------------------


async def test_a_finetune_job_returns_the_adapter_of_its_concept_step_by_step(
    runners: dict[str, Any], unet: Any
) -> None:
    blobs, events = Blobs(), []
    before = snapshot(unet)
    outputs = await run(runners["finetune"], finetune_inputs(blobs), blobs, events=events)
    assert [name for name, _ in outputs] == ["adapter"]
    info = parse_adapter(outputs[0][1]).info
    assert (info.concept, info.token, info.base_model, info.rank) == ("my-dog", "sks", "tiny-sd", 4)
    assert (info.images, info.train_steps, info.resolution, info.seed) == (3, 50, 64, 1)
    steps = [m.split(",")[0] for _, m in events if m.startswith("step ")]
    assert steps == [f"step {i} of 50" for i in range(1, 51)]
    assert events[0] == (0.0, "seed 1") and events[-1] == (1.0, "done")
    assert_unchanged(unet, before)


async def test_a_fine_tuned_concept_changes_what_txt2img_paints(
    runners: dict[str, Any], unet: Any
) -> None:
    """The whole chain: a finetune job's adapter, merged into a global model, painted with."""
    blobs = Blobs()
    values = finetune_inputs(blobs, train_steps=100, learning_rate=1e-2)
    (_, adapter), *_ = await run(runners["finetune"], values, blobs)
    model = merge_adapter_files([adapter])
    found = ConceptModel("my-dog", "sha256-" + hashlib.sha256(model).hexdigest(), model)
    paint = {"prompt": PROMPT, "seed": 4, "steps": 3}
    plain = await run(runners["txt2img"], paint)
    with_concept = await run(
        runners["txt2img"], {**paint, "concept": "my-dog"}, None, resolver(found)
    )
    change = abs(pixels(with_concept[0][1]) - pixels(plain[0][1])).mean()
    print("CHANGE", change)
    assert change > 1


async def test_a_photo_that_cannot_be_decoded_is_named_by_its_place(
    runners: dict[str, Any],
) -> None:
    blobs = Blobs()
    values = finetune_inputs(blobs)
    values["instance_images"][1] = {**values["instance_images"][1], "blob": "sha256-" + "0" * 64}
    blobs.data["sha256-" + "0" * 64] = b"\x89PNG but not really"
    with pytest.raises(TaskFailed, match="photo 2 of 3: an input image cannot be decoded"):
        await run(runners["finetune"], values, blobs)


async def test_a_flat_photo_is_refused_with_a_reason(runners: dict[str, Any]) -> None:
    blobs = Blobs()
    values = finetune_inputs(blobs)
    values["instance_images"][0] = blobs.put(Image.new("RGB", (256, 256), (90, 90, 90)))
    with pytest.raises(TaskFailed, match="photo 1 of 3 is one flat colour"):
        await run(runners["finetune"], values, blobs)


async def test_prior_preservation_without_a_class_prompt_is_refused(
    runners: dict[str, Any],
) -> None:
    blobs = Blobs()
    values = finetune_inputs(blobs, prior_preservation=True, class_prompt="   ")
    with pytest.raises(TaskFailed, match="prior preservation needs a class prompt"):
        await run(runners["finetune"], values, blobs)


async def test_missing_base_weights_fail_the_job_with_the_model_and_place(
    runners: dict[str, Any], tmp_path: Path
) -> None:
    served = runners["finetune"]
    gone = ModelSource("tiny-sd", str(tmp_path / "models" / "tiny-sd"), local=True)
    runner = FineTune(served.schema, gone, served.device, PipelineCache())
    blobs = Blobs()
    with pytest.raises(TaskFailed, match=r"model tiny-sd could not be loaded from .*tiny-sd"):
        await run(runner, finetune_inputs(blobs), blobs)


async def test_a_cancelled_finetune_stops_at_the_next_step_and_gives_the_model_back(
    runners: dict[str, Any], unet: Any
) -> None:
    blobs = Blobs()
    before = snapshot(unet)
    steps: list[str] = []
    with trio.CancelScope() as scope:

        def progress(fraction: float, message: str) -> None:
            if message.startswith("step "):
                steps.append(message)
                scope.cancel()

        context = RunContext(progress, images=blobs.fetch)
        runner = runners["finetune"]
        await runner.run(inputs_for(runner, finetune_inputs(blobs)), context)
    assert scope.cancelled_caught
    assert 1 <= len(steps) <= 3, "training stops within a step or two of the cancel"
    assert_unchanged(unet, before)
    assert "peft_config" not in vars(unet)


# -- painting with a concept ------------------------------------------------------------------


async def test_txt2img_with_a_concept_paints_otherwise_and_leaves_the_model_as_it_was(
    runners: dict[str, Any], unet: Any, concept: ConceptModel
) -> None:
    paint = {"prompt": PROMPT, "seed": 4, "steps": 2}
    before = snapshot(unet)
    plain = await run(runners["txt2img"], paint)
    events: list[tuple[float, str]] = []
    with_concept = await run(
        runners["txt2img"], {**paint, "concept": "my-dog"}, None, resolver(concept), events
    )
    again = await run(runners["txt2img"], paint)
    assert abs(pixels(with_concept[0][1]) - pixels(plain[0][1])).mean() > 1
    assert again[0][1] == plain[0][1], "the next job without a concept paints as before"
    assert_unchanged(unet, before)
    assert any(m.startswith("concept my-dog (1 adapter(s), token sks)") for _, m in events)


async def test_img2img_with_a_concept_paints_otherwise(
    runners: dict[str, Any], concept: ConceptModel
) -> None:
    blobs = Blobs()
    paint = {"prompt": PROMPT, "image": blobs.put(photo(64, 64)), "seed": 4, "steps": 4}
    plain = await run(runners["img2img"], paint, blobs)
    with_concept = await run(
        runners["img2img"], {**paint, "concept": "my-dog"}, blobs, resolver(concept)
    )
    assert abs(pixels(with_concept[0][1]) - pixels(plain[0][1])).mean() > 1


async def test_a_concept_that_does_not_fit_fails_the_job_with_the_reason(
    runners: dict[str, Any], unet: Any
) -> None:
    shapes = unet_shapes(unet)
    paint = {"prompt": PROMPT, "seed": 4, "concept": "my-dog"}
    other_base = concept_blob(merge_adapters([random_adapter(shapes, base_model="other-sd")]))
    with pytest.raises(
        TaskFailed, match="fine-tuned on other-sd, but this host paints with tiny-sd"
    ):
        await run(runners["txt2img"], paint, None, resolver(other_base))
    other_name = concept_blob(merge_adapters([random_adapter(shapes, concept="my-cat")]))
    with pytest.raises(TaskFailed, match="is for concept 'my-cat', not 'my-dog'"):
        await run(
            runners["txt2img"],
            paint,
            None,
            resolver(ConceptModel("my-dog", other_name.model_id, other_name.data)),
        )
    broken = ConceptModel("my-dog", "sha256-" + "1" * 64, b"not a model")
    with pytest.raises(TaskFailed, match=r"concept 'my-dog' .*global model is not valid"):
        await run(runners["txt2img"], paint, None, resolver(broken))
    with pytest.raises(TaskFailed, match="cannot resolve concepts"):
        await run(runners["txt2img"], paint)
    wrong_shape = concept_blob(
        merge_adapters([random_adapter({"conv_in.to_q": (4, 4)}, base_model="tiny-sd")])
    )
    with pytest.raises(TaskFailed, match="does not have as a linear layer"):
        await run(runners["txt2img"], paint, None, resolver(wrong_shape))
    assert torch.is_grad_enabled()
