"""Job cost estimates: the formula each schema declares, in its own unit."""

from __future__ import annotations

import hashlib

import pytest

from lightbox_node.tasks import (
    BUILTIN_TASKS,
    FixedCost,
    IntegerInput,
    InvalidJobInput,
    Output,
    TaskSchema,
    estimate_cost,
    validate_inputs,
)


def image(width: int, height: int, tag: str = "img") -> dict:
    blob = "sha256-" + hashlib.sha256(tag.encode()).hexdigest()
    return {"blob": blob, "width": width, "height": height, "format": "png"}


def test_txt2img_costs_pixels_times_steps_times_batch() -> None:
    inputs = {"prompt": "x", "width": 768, "height": 512, "steps": 30, "batch_size": 2}
    assert estimate_cost(BUILTIN_TASKS["txt2img"], inputs) == 768 * 512 * 30 * 2


def test_txt2img_defaults_cost_512_squared_times_25_steps() -> None:
    accepted = validate_inputs(BUILTIN_TASKS["txt2img"], {"prompt": "x"})
    assert estimate_cost(BUILTIN_TASKS["txt2img"], accepted) == 512 * 512 * 25


def test_img2img_pays_only_for_the_share_of_steps_its_strength_runs() -> None:
    inputs = {"image": image(640, 512), "prompt": "x", "steps": 40, "strength": 0.5}
    assert estimate_cost(BUILTIN_TASKS["img2img"], inputs) == pytest.approx(640 * 512 * 40 * 0.5)


def test_outpaint_costs_the_extended_picture() -> None:
    inputs = {"image": image(512, 512), "prompt": "x", "left": 64, "right": 0, "top": 0}
    inputs |= {"bottom": 128, "steps": 10}
    assert estimate_cost(BUILTIN_TASKS["outpaint"], inputs) == (512 + 64) * (512 + 128) * 10


def test_upscale_costs_the_output_pixels() -> None:
    inputs = {"image": image(300, 200), "scale": 2}
    assert estimate_cost(BUILTIN_TASKS["upscale"], inputs) == 600 * 400


def test_background_removal_costs_the_input_pixels() -> None:
    assert estimate_cost(BUILTIN_TASKS["remove_background"], {"image": image(300, 200)}) == 60_000


def test_finetune_costs_resolution_squared_times_training_steps() -> None:
    inputs = {
        "instance_images": [image(512, 512, str(i)) for i in range(3)],
        "concept": "my-dog",
        "concept_token": "sks",
        "train_steps": 400,
        "resolution": 256,
    }
    assert estimate_cost(BUILTIN_TASKS["finetune"], inputs) == 256 * 256 * 400


def test_a_fixed_cost_task_costs_its_units() -> None:
    schema = TaskSchema(
        name="ping",
        title="Ping",
        inputs=(IntegerInput(name="n", label="N", default=1, min=1, max=3),),
        outputs=(Output(name="reply", type="text"),),
        cost=FixedCost(units=2.5),
    )
    assert estimate_cost(schema, {}) == 2.5


def test_inputs_the_task_refuses_are_never_priced() -> None:
    with pytest.raises(InvalidJobInput):
        estimate_cost(BUILTIN_TASKS["txt2img"], {"prompt": "x", "steps": 10_000})


def test_every_builtin_task_prices_its_defaults() -> None:
    samples = {
        "txt2img": {"prompt": "x"},
        "img2img": {"image": image(512, 512), "prompt": "x"},
        "inpaint": {"image": image(512, 512), "mask": image(512, 512, "m"), "prompt": "x"},
        "outpaint": {"image": image(512, 512), "prompt": "x"},
        "instruct_edit": {"image": image(512, 512), "instruction": "make it snow"},
        "remove_background": {"image": image(512, 512)},
        "upscale": {"image": image(512, 512)},
        "finetune": {
            "instance_images": [image(512, 512, str(i)) for i in range(3)],
            "concept": "my-dog",
            "concept_token": "sks",
        },
    }
    assert samples.keys() == BUILTIN_TASKS.keys()
    for name, inputs in samples.items():
        assert estimate_cost(BUILTIN_TASKS[name], inputs) > 0, name
