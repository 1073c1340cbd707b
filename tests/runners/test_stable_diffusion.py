"""Text to image and image to image on the tiny Stable Diffusion model, on the CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lightbox_node.dispatch.test_tasks import NO_IMAGE_RESOLVER, RunContext, TaskFailed
from lightbox_node.tasks.builtin import SAMPLERS
from tests.runners.harness import Blobs, decode, inputs_for, photo, pixels


async def run(runner: Any, values: dict[str, Any], blobs: Blobs | None = None) -> list:
    events: list[tuple[float, str]] = []
    context = RunContext(lambda f, m: events.append((f, m)), images=blobs.fetch if blobs else None)
    outputs = await runner.run(inputs_for(runner, values), context)
    return [(name, data) for name, data in outputs] + [("events", events)]


PROMPT = {"prompt": "a photo of the cat"}


async def test_txt2img_makes_pictures_of_the_asked_size(runners: dict) -> None:
    *outputs, _ = await run(runners["txt2img"], {**PROMPT, "width": 96, "height": 64, "seed": 1})
    assert [name for name, _ in outputs] == ["images"]
    image = decode(outputs[0][1])
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (96, 64))


async def test_the_same_seed_gives_the_same_picture(runners: dict) -> None:
    first = await run(runners["txt2img"], {**PROMPT, "seed": 7})
    again = await run(runners["txt2img"], {**PROMPT, "seed": 7})
    other = await run(runners["txt2img"], {**PROMPT, "seed": 8})
    assert first[0][1] == again[0][1]
    assert first[0][1] != other[0][1]


async def test_a_batch_is_independent_pictures_one_seed_each(runners: dict) -> None:
    *batch, _ = await run(runners["txt2img"], {**PROMPT, "seed": 40, "batch_size": 3})
    assert len(batch) == 3
    images = [pixels(data) for _, data in batch]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(images[i] - images[j]).mean() > 5, "batch pictures must differ"
    # Picture k of a batch is the picture of seed + k on its own (not the previous output fed
    # back in, as the paper's reference host did).
    alone = await run(runners["txt2img"], {**PROMPT, "seed": 41})
    assert np.abs(pixels(alone[0][1]) - images[1]).max() <= 2


async def test_progress_is_reported_for_every_step(runners: dict) -> None:
    *_, (_, events) = await run(runners["txt2img"], {**PROMPT, "seed": 3, "steps": 4})
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    steps = [m for _, m in events if m.startswith("step ")]
    assert steps == [f"step {i} of 4" for i in range(1, 5)]
    assert events[0] == (0.0, "seed 3")


async def test_a_random_seed_is_drawn_reported_and_reproducible(runners: dict) -> None:
    *outputs, (_, events) = await run(runners["txt2img"], {**PROMPT, "seed": "random"})
    seed = int(events[0][1].removeprefix("seed "))
    again = await run(runners["txt2img"], {**PROMPT, "seed": seed})
    assert outputs[0][1] == again[0][1]


async def test_img2img_keeps_the_source_size_and_follows_the_seed(
    runners: dict, blobs: Blobs
) -> None:
    source = blobs.put(photo(72, 64))
    values = {**PROMPT, "image": source, "seed": 5, "steps": 4, "strength": 0.5}
    *first, (_, events) = await run(runners["img2img"], values, blobs)
    again = await run(runners["img2img"], values, blobs)
    assert decode(first[0][1]).size == (72, 64)
    assert first[0][1] == again[0][1]
    # strength 0.5 of 4 steps runs 2 of them
    assert [m for _, m in events if m.startswith("step")] == ["step 1 of 2", "step 2 of 2"]


async def test_img2img_with_no_strength_keeps_the_picture(runners: dict, blobs: Blobs) -> None:
    source = photo(64, 64, seed=3)
    values = {**PROMPT, "image": blobs.put(source), "strength": 0.0, "batch_size": 2}
    *outputs, _ = await run(runners["img2img"], values, blobs)
    assert len(outputs) == 2
    for _, data in outputs:
        assert np.array_equal(pixels(data), np.asarray(source))


async def test_an_image_task_without_an_image_resolver_says_why(runners: dict) -> None:
    values = {**PROMPT, "image": Blobs().put(photo())}
    with pytest.raises(TaskFailed, match="cannot fetch image inputs"):
        await run(runners["img2img"], values)
    assert "blob transfer between nodes is not built" in NO_IMAGE_RESOLVER


async def test_an_image_that_is_not_the_size_the_job_says_is_refused(
    runners: dict, blobs: Blobs
) -> None:
    value = {**blobs.put(photo(64, 64)), "width": 72}
    with pytest.raises(TaskFailed, match="the image is 64×64, but the job says 72×64"):
        await run(runners["img2img"], {**PROMPT, "image": value}, blobs)


@pytest.mark.parametrize("sampler", [choice.value for choice in SAMPLERS])
async def test_every_sampler_of_the_schema_runs(runners: dict, sampler: str) -> None:
    *outputs, _ = await run(runners["txt2img"], {**PROMPT, "seed": 1, "sampler": sampler})
    assert decode(outputs[0][1]).size == (64, 64)


async def test_the_pipeline_is_loaded_once_and_kept(runners: dict) -> None:
    runner = runners["txt2img"]
    await run(runner, {**PROMPT, "seed": 1})
    loads = runner.cache.loads
    await run(runner, {**PROMPT, "seed": 2})
    assert runner.cache.loads == loads
    assert runner.cache_key in runner.cache
    # img2img of the same model shares the loaded weights
    assert runners["img2img"].cache_key == runner.cache_key
