"""Job input validation: exact types, bounds, grids, images, masks, rules, every problem at once."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightbox_node import wire
from lightbox_node.errors import BlobNotFound
from lightbox_node.tasks import (
    BUILTIN_TASKS,
    ImageInfo,
    InvalidJobInput,
    ValidatedInputs,
    validate_inputs,
)

TXT2IMG = BUILTIN_TASKS["txt2img"]
IMG2IMG = BUILTIN_TASKS["img2img"]
INPAINT = BUILTIN_TASKS["inpaint"]
OUTPAINT = BUILTIN_TASKS["outpaint"]
UPSCALE = BUILTIN_TASKS["upscale"]
FINETUNE = BUILTIN_TASKS["finetune"]
REMOVE_BACKGROUND = BUILTIN_TASKS["remove_background"]


def blob_id(tag: str) -> str:
    return "sha256-" + hashlib.sha256(tag.encode()).hexdigest()


def image(width: int = 512, height: int = 512, fmt: str = "png", tag: str = "img") -> dict:
    return {"blob": blob_id(tag), "width": width, "height": height, "format": fmt}


def problems(schema: Any, inputs: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(InvalidJobInput) as caught:
        validate_inputs(schema, inputs, **kwargs)
    assert caught.value.task == schema.name
    return {p.field: p.message for p in caught.value.problems}


# -- good inputs ----------------------------------------------------------------------------


def test_good_inputs_pass_with_every_default_filled() -> None:
    accepted = validate_inputs(TXT2IMG, {"prompt": "a lighthouse", "steps": 30})
    assert isinstance(accepted, ValidatedInputs)
    assert dict(accepted) == {
        "prompt": "a lighthouse",
        "negative_prompt": "",
        "width": 512,
        "height": 512,
        "batch_size": 1,
        "steps": 30,
        "guidance_scale": 7.5,
        "sampler": "euler_a",
        "seed": "random",
    }


def test_validated_inputs_are_plain_wire_values() -> None:
    accepted = validate_inputs(INPAINT, {"image": image(), "mask": image(tag="m"), "prompt": "x"})
    plain = accepted.to_wire()
    assert wire.unpack(wire.pack(plain)) == plain


def test_a_null_optional_value_means_its_default() -> None:
    assert validate_inputs(TXT2IMG, {"prompt": "x", "steps": None})["steps"] == 25


def test_an_integer_is_accepted_for_a_number_and_kept_as_a_float() -> None:
    accepted = validate_inputs(TXT2IMG, {"prompt": "x", "guidance_scale": 7})
    assert accepted["guidance_scale"] == 7.0 and type(accepted["guidance_scale"]) is float


def test_a_random_seed_is_drawn_once_from_the_injected_source() -> None:
    accepted = validate_inputs(TXT2IMG, {"prompt": "x"}, random_seed=lambda: 1234)
    assert accepted["seed"] == 1234
    assert validate_inputs(TXT2IMG, {"prompt": "x", "seed": 7}, random_seed=lambda: 1)["seed"] == 7


def test_seeds_span_zero_to_two_to_the_32_minus_one() -> None:
    assert validate_inputs(TXT2IMG, {"prompt": "x", "seed": 0})["seed"] == 0
    assert validate_inputs(TXT2IMG, {"prompt": "x", "seed": 2**32 - 1})["seed"] == 2**32 - 1
    assert set(problems(TXT2IMG, {"prompt": "x", "seed": 2**32})) == {"seed"}
    assert set(problems(TXT2IMG, {"prompt": "x", "seed": -1})) == {"seed"}
    assert set(problems(TXT2IMG, {"prompt": "x", "seed": "lucky"})) == {"seed"}


# -- each bad case names its field ----------------------------------------------------------


def test_an_unknown_field_is_rejected_by_name() -> None:
    found = problems(TXT2IMG, {"prompt": "x", "cfg_scale": 7})
    assert set(found) == {"cfg_scale"}
    assert "guidance_scale" in found["cfg_scale"]  # says what the task does take


def test_a_missing_required_field_is_rejected() -> None:
    assert problems(TXT2IMG, {"steps": 20}) == {"prompt": "is required"}


def test_the_text_false_is_not_a_boolean() -> None:
    found = problems(REMOVE_BACKGROUND, {"image": image(), "alpha_matting": "false"})
    assert set(found) == {"alpha_matting"}
    assert "not the text 'false'" in found["alpha_matting"]


def test_an_integer_is_not_a_boolean() -> None:
    assert set(problems(REMOVE_BACKGROUND, {"image": image(), "only_mask": 0})) == {"only_mask"}


def test_a_boolean_is_not_an_integer() -> None:
    found = problems(TXT2IMG, {"prompt": "x", "steps": True})
    assert found == {"steps": "must be an integer, not a boolean"}


def test_a_float_is_not_an_integer() -> None:
    assert set(problems(TXT2IMG, {"prompt": "x", "steps": 20.0})) == {"steps"}


def test_text_is_not_a_number() -> None:
    assert set(problems(TXT2IMG, {"prompt": "x", "guidance_scale": "7.5"})) == {"guidance_scale"}


def test_values_out_of_bounds_are_rejected_with_the_bound() -> None:
    found = problems(TXT2IMG, {"prompt": "x", "steps": 151, "guidance_scale": -0.5, "width": 32})
    assert found["steps"] == "must be at most 150 steps, got 151"
    assert "at least 0" in found["guidance_scale"]
    assert "at least 64" in found["width"]


def test_integers_off_the_step_grid_are_rejected_with_the_nearest_values() -> None:
    found = problems(TXT2IMG, {"prompt": "x", "width": 500})
    assert found == {"width": "must be a multiple of 8 (nearest: 496 or 504)"}


def test_numbers_off_the_step_grid_are_rejected_but_float_noise_is_not() -> None:
    assert set(problems(TXT2IMG, {"prompt": "x", "guidance_scale": 7.55})) == {"guidance_scale"}
    assert validate_inputs(TXT2IMG, {"prompt": "x", "guidance_scale": 0.1 + 0.2})


def test_a_grid_counts_from_its_minimum() -> None:
    assert validate_inputs(FINETUNE, _finetune(train_steps=850))["train_steps"] == 850
    found = problems(FINETUNE, _finetune(train_steps=820))
    assert found == {"train_steps": "must be a multiple of 50 (nearest: 800 or 850)"}


def test_a_choice_must_be_one_of_its_options_with_the_exact_type() -> None:
    assert set(problems(UPSCALE, {"image": image(), "scale": 3})) == {"scale"}
    assert set(problems(UPSCALE, {"image": image(), "scale": "4"})) == {"scale"}
    found = problems(TXT2IMG, {"prompt": "x", "sampler": "heun"})
    assert "'euler_a'" in found["sampler"]


def test_text_limits_and_single_lines_are_enforced() -> None:
    assert problems(TXT2IMG, {"prompt": ""}) == {"prompt": "must not be empty"}
    assert set(problems(TXT2IMG, {"prompt": "x" * 2001})) == {"prompt"}
    found = problems(FINETUNE, _finetune(concept_token="sks\ndog"))
    assert found == {"concept_token": "must be a single line"}


def test_inputs_that_are_not_a_map_are_one_problem_for_the_whole_job() -> None:
    assert set(problems(TXT2IMG, ["prompt", "x"])) == {""}


# -- images ---------------------------------------------------------------------------------


def test_an_image_must_be_a_blob_id_with_size_and_format() -> None:
    bad = {"blob": "sha256-XYZ", "width": 512, "height": "512", "format": "gif", "alt": "x"}
    found = problems(IMG2IMG, {"image": bad, "prompt": "x"})
    assert set(found) == {"image.blob", "image.height", "image.format", "image.alt"}


def test_an_image_blob_id_is_checked_strictly() -> None:
    upper = "sha256-" + "A" * 64
    assert set(problems(IMG2IMG, {"image": dict(image(), blob=upper), "prompt": "x"})) == {
        "image.blob"
    }
    assert set(problems(IMG2IMG, {"image": dict(image(), blob="../../etc/passwd"), "prompt": "x"}))


def test_raw_image_bytes_are_accepted_in_place_of_a_blob_id() -> None:
    accepted = validate_inputs(IMG2IMG, {"image": dict(image(), blob=b"\x89PNG..."), "prompt": "x"})
    assert accepted["image"]["blob"] == b"\x89PNG..."


def test_an_image_too_large_or_off_its_multiple_is_rejected() -> None:
    found = problems(IMG2IMG, {"image": image(4096, 1001), "prompt": "x"})
    assert found["image.width"] == "must be at most 2048 px, got 4096"
    assert (
        found["image.height"]
        == "must be a multiple of 8, got 1001 (resize or crop to 1000 or 1008)"
    )


def test_an_image_over_its_pixel_budget_is_rejected() -> None:
    found = problems(REMOVE_BACKGROUND, {"image": image(8000, 8000)})
    assert "over the limit" in found["image"]


def test_a_mask_must_be_the_size_of_its_image() -> None:
    found = problems(
        INPAINT, {"image": image(512, 512), "mask": image(512, 256, tag="m"), "prompt": "x"}
    )
    assert found == {"mask": "is 512×256 but must be the size of image (512×512)"}


def test_a_matching_mask_passes() -> None:
    validate_inputs(
        INPAINT, {"image": image(640, 512), "mask": image(640, 512, tag="m"), "prompt": "x"}
    )


def test_claimed_sizes_are_checked_against_the_real_image_when_a_reader_is_given() -> None:
    real = {blob_id("img"): ImageInfo(512, 512, "png"), blob_id("m"): ImageInfo(512, 512, "png")}

    def read(blob: str | bytes) -> ImageInfo:
        if blob not in real:
            raise BlobNotFound(f"no blob {blob}")
        return real[blob]

    found = problems(
        INPAINT,
        {"image": image(512, 256), "mask": image(512, 256, tag="m"), "prompt": "x"},
        image_info=read,
    )
    assert "is a 512×512 png, but the job says 512×256 png" in found["image"]
    found = problems(IMG2IMG, {"image": image(tag="gone"), "prompt": "x"}, image_info=read)
    assert "cannot be read" in found["image"]


# -- image lists ----------------------------------------------------------------------------


def _finetune(**overrides: Any) -> dict[str, Any]:
    inputs = {
        "instance_images": [image(768, 768, "jpeg", tag=str(i)) for i in range(5)],
        "concept": "my-dog",
        "concept_token": "sks",
    }
    inputs.update(overrides)
    return inputs


def test_an_image_list_within_its_count_passes() -> None:
    accepted = validate_inputs(FINETUNE, _finetune())
    assert len(accepted["instance_images"]) == 5 and accepted["rank"] == 8


def test_an_image_list_with_too_few_or_too_many_images_is_rejected() -> None:
    two = [image(tag=str(i)) for i in range(2)]
    assert problems(FINETUNE, _finetune(instance_images=two)) == {
        "instance_images": "needs at least 3 images, got 2"
    }
    many = [image(tag=str(i)) for i in range(21)]
    assert set(problems(FINETUNE, _finetune(instance_images=many))) == {"instance_images"}


def test_each_image_of_a_list_is_checked_and_named_by_index() -> None:
    images = [image(768, 768, tag="a"), image(100, 768, tag="b"), image(768, 768, "gif", tag="c")]
    found = problems(FINETUNE, _finetune(instance_images=images))
    assert set(found) == {"instance_images[1].width", "instance_images[2].format"}


# -- cross-field rules ----------------------------------------------------------------------


def test_a_conditionally_required_field_is_required_only_when_its_condition_holds() -> None:
    found = problems(FINETUNE, _finetune(prior_preservation=True))
    assert found == {"class_prompt": "is required when prior_preservation is True"}
    validate_inputs(FINETUNE, _finetune(prior_preservation=True, class_prompt="a photo of a dog"))


def test_outpaint_must_extend_somewhere_and_stay_within_bounds() -> None:
    none = {"left": 0, "right": 0, "top": 0, "bottom": 0}
    found = problems(OUTPAINT, {"image": image(), "prompt": "x", **none})
    assert found == {"left": "extend the picture on at least one side"}
    found = problems(OUTPAINT, {"image": image(2000, 512), "prompt": "x", "right": 128, "left": 0})
    assert "at most 2048 px wide" in found["right"]


# -- all at once ----------------------------------------------------------------------------


def test_every_problem_is_collected_in_one_error() -> None:
    with pytest.raises(InvalidJobInput) as caught:
        validate_inputs(
            INPAINT,
            {
                "image": image(512, 512),
                "mask": image(256, 256, tag="m"),
                "steps": 0,
                "guidance_scale": "high",
                "batch_size": 9,
                "sampler": "heun",
                "seed": -3,
                "mask_blur": True,
                "style": "noir",
            },
        )
    error = caught.value
    assert set(error.fields) == {
        "style", "prompt", "steps", "guidance_scale", "batch_size", "sampler", "seed",
        "mask_blur", "mask",
    }  # fmt: skip
    assert error.to_wire()[0].keys() == {"field", "message"}
    assert "9 problems with the inputs for task 'inpaint'" in str(error)


# -- hostile input --------------------------------------------------------------------------

_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(BUILTIN_TASKS)),
    st.dictionaries(
        st.sampled_from(["prompt", "image", "mask", "steps", "seed", "scale", "instance_images"])
        | st.text(max_size=8),
        _junk,
        max_size=6,
    ),
)
def test_any_inputs_either_validate_or_raise_invalid_job_input(name: str, inputs: dict) -> None:
    try:
        accepted = validate_inputs(BUILTIN_TASKS[name], inputs)
    except InvalidJobInput as error:
        assert error.problems
        return
    assert wire.unpack(wire.pack(accepted.to_wire())) == accepted.to_wire()


# -- concepts -------------------------------------------------------------------------------


def test_a_concept_is_optional_for_generation_and_required_for_finetuning() -> None:
    assert "concept" not in validate_inputs(TXT2IMG, {"prompt": "x"})
    assert validate_inputs(TXT2IMG, {"prompt": "x", "concept": "my-dog"})["concept"] == "my-dog"
    assert validate_inputs(IMG2IMG, {"prompt": "x", "image": image(), "concept": "a.b_c-1"})
    assert problems(FINETUNE, {k: v for k, v in _finetune().items() if k != "concept"}) == {
        "concept": "is required"
    }


@pytest.mark.parametrize("name", ["My-Dog", "-dog", "dog cat", "dog/cat", "d" * 129, "hund\u00e9"])
def test_a_concept_name_must_be_a_registry_concept_name(name: str) -> None:
    found = problems(TXT2IMG, {"prompt": "x", "concept": name})
    assert set(found) == {"concept"}
    assert "a concept name" in found["concept"] or "at most 128" in found["concept"]
    assert set(problems(FINETUNE, _finetune(concept=name))) == {"concept"}


def test_the_concept_format_is_the_registry_concept_pattern() -> None:
    from lightbox_node.raft.registry import CONCEPT_PATTERN
    from lightbox_node.tasks.schema import TEXT_FORMATS

    assert TEXT_FORMATS["concept"][0].pattern == CONCEPT_PATTERN.pattern
