"""Task schemas: a versioned wire form that round-trips, and strict reading of untrusted maps."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightbox_node import wire
from lightbox_node.tasks import (
    BUILTIN_TASKS,
    SCHEMA_FORMAT,
    ChoiceInput,
    Group,
    ImageInput,
    IntegerInput,
    MaskInput,
    NumberInput,
    Output,
    SchemaError,
    TaskSchema,
    TextInput,
)
from lightbox_node.tasks.builtin import TXT2IMG

BUILTINS = sorted(BUILTIN_TASKS)


def _minimal(**overrides: Any) -> dict[str, Any]:
    """A small valid schema on the wire, as a starting point for breaking it."""
    schema = {
        "format": SCHEMA_FORMAT,
        "name": "demo",
        "title": "Demo",
        "inputs": [
            {
                "type": "integer",
                "name": "steps",
                "label": "Steps",
                "min": 1,
                "max": 10,
                "default": 5,
            },
            {"type": "text", "name": "prompt", "label": "Prompt", "required": True},
        ],
        "outputs": [{"name": "image", "type": "image"}],
    }
    schema.update(overrides)
    return schema


def _rejection(data: Any) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        TaskSchema.from_wire(data)
    return caught.value


def _fields(error: SchemaError) -> list[str]:
    return [p.field for p in error.problems]


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_schema_round_trips_through_msgpack(name: str) -> None:
    schema = BUILTIN_TASKS[name]
    frame = wire.pack(schema.to_wire())
    assert TaskSchema.from_wire(wire.unpack(frame)) == schema


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_schema_has_one_canonical_encoding(name: str) -> None:
    schema = BUILTIN_TASKS[name]
    again = TaskSchema.from_wire(wire.unpack(wire.pack(schema.to_wire())))
    assert wire.pack(again.to_wire()) == wire.pack(schema.to_wire())


def test_the_wire_form_names_its_format_and_every_key() -> None:
    data = TXT2IMG.to_wire()
    assert data["format"] == "lightbox.task/1"
    assert data["name"] == "txt2img"
    steps = next(i for i in data["inputs"] if i["name"] == "steps")
    assert steps == {
        "type": "integer",
        "name": "steps",
        "label": "Steps",
        "help": steps["help"],
        "required": False,
        "default": 25,
        "advanced": False,
        "group": "sampling",
        "order": 10,
        "min": 1,
        "max": 150,
        "step": 1,
        "unit": "steps",
    }
    assert data["cost"] == {
        "kind": "pixels_x_steps",
        "width": "width",
        "height": "height",
        "steps": "steps",
        "batch": "batch_size",
        "strength": None,
        "unit": "pixel-steps",
    }


def test_missing_optional_keys_take_their_defaults() -> None:
    schema = TaskSchema.from_wire(_minimal())
    steps = schema.input("steps")
    assert isinstance(steps, IntegerInput)
    assert (steps.help, steps.required, steps.advanced, steps.group, steps.step) == (
        "",
        False,
        False,
        "main",
        1,
    )
    assert schema.version == 1


def test_number_bounds_are_kept_as_floats_so_the_encoding_is_stable() -> None:
    spec = NumberInput(name="g", label="G", min=0, max=30, step=1, default=7)
    assert (spec.min, spec.max, spec.step, spec.default) == (0.0, 30.0, 1.0, 7.0)
    assert all(type(v) is float for v in (spec.min, spec.max, spec.step, spec.default))


def test_layout_lists_groups_in_schema_order_and_inputs_by_order() -> None:
    layout = TXT2IMG.layout()
    assert [group.name for group, _ in layout] == ["prompt", "size", "sampling"]
    size = dict((g.name, [i.name for i in inputs]) for g, inputs in layout)["size"]
    assert size == ["width", "height", "batch_size"]


# -- strict reading -------------------------------------------------------------------------


def test_an_unknown_top_level_key_is_rejected_by_name() -> None:
    error = _rejection(_minimal(color="blue"))
    assert error.task == "demo"
    assert "color" in _fields(error)
    assert "unknown key 'color'" in str(error)


def test_an_unknown_input_key_is_rejected_with_the_allowed_keys() -> None:
    data = _minimal()
    data["inputs"][0]["maximum"] = 10
    error = _rejection(data)
    assert "inputs.steps.maximum" in _fields(error)
    assert "allowed:" in str(error) and "max" in str(error)


def test_a_schema_of_another_format_version_is_rejected() -> None:
    error = _rejection(_minimal(format="lightbox.task/2"))
    assert _fields(error) == ["format"]
    assert "lightbox.task/1" in str(error)


def test_min_above_max_is_rejected() -> None:
    data = _minimal()
    data["inputs"][0].update(min=10, max=1, default=None)
    error = _rejection(data)
    assert "inputs.steps.min" in _fields(error)
    assert "task schema 'demo'" in str(error)


def test_a_default_out_of_bounds_is_rejected() -> None:
    data = _minimal()
    data["inputs"][0]["default"] = 11
    error = _rejection(data)
    assert _fields(error) == ["inputs.steps.default"]
    assert "at most 10" in str(error)


def test_a_default_off_the_step_grid_is_rejected() -> None:
    data = _minimal()
    data["inputs"][0].update(min=0, max=64, step=8, default=12)
    assert _fields(_rejection(data)) == ["inputs.steps.default"]


def test_a_default_of_the_wrong_type_is_rejected() -> None:
    data = _minimal()
    data["inputs"][0]["default"] = True
    assert _fields(_rejection(data)) == ["inputs.steps.default"]


def test_a_required_input_with_a_default_is_rejected() -> None:
    data = _minimal()
    data["inputs"][1]["default"] = "a cat"
    assert _fields(_rejection(data)) == ["inputs.prompt.default"]


def test_duplicate_input_names_are_rejected() -> None:
    data = _minimal()
    data["inputs"].append(dict(data["inputs"][0]))
    assert "inputs.steps" in _fields(_rejection(data))


def test_an_unknown_input_type_is_rejected_with_the_known_types() -> None:
    data = _minimal()
    data["inputs"][0]["type"] = "slider"
    error = _rejection(data)
    assert "inputs.steps.type" in _fields(error)
    assert "integer" in str(error) and "image_list" in str(error)


def test_wrong_value_types_are_rejected_not_coerced() -> None:
    data = _minimal()
    data["inputs"][0]["min"] = "1"
    data["inputs"][1]["required"] = "true"
    fields = _fields(_rejection(data))
    assert "inputs.steps.min" in fields and "inputs.prompt.required" in fields


def test_a_mask_must_name_an_image_input_of_the_same_task() -> None:
    data = _minimal()
    data["inputs"].append({"type": "mask", "name": "mask", "label": "Mask", "image": "prompt"})
    assert "inputs.mask.image" in _fields(_rejection(data))


def test_an_input_in_an_undeclared_group_is_rejected() -> None:
    data = _minimal()
    data["inputs"][0]["group"] = "advanced_stuff"
    assert "inputs.steps.group" in _fields(_rejection(data))


def test_a_cost_formula_must_reference_numeric_inputs() -> None:
    data = _minimal(
        cost={"kind": "pixels_x_steps", "width": "prompt", "height": 512, "steps": "steps"}
    )
    error = _rejection(data)
    assert "cost.width" in _fields(error)
    assert "not a number" in str(error)


def test_a_cost_formula_of_an_unknown_kind_is_rejected() -> None:
    assert "cost.kind" in _fields(_rejection(_minimal(cost={"kind": "per_token"})))


def test_an_impossible_image_size_grid_is_rejected() -> None:
    spec = dict(
        type="image", name="image", label="Image", min_width=65, max_width=100, multiple_of=64
    )
    data = _minimal()
    data["inputs"].append(spec)
    assert "inputs.image.multiple_of" in _fields(_rejection(data))


def test_choice_options_must_be_distinct_and_of_one_kind() -> None:
    data = _minimal()
    data["inputs"].append(
        {
            "type": "choice",
            "name": "mode",
            "label": "Mode",
            "options": [
                {"value": "a", "label": "A"},
                {"value": "a", "label": "A again"},
                {"value": 3, "label": "Three"},
            ],
        }
    )
    fields = _fields(_rejection(data))
    assert "inputs.mode.options[1].value" in fields and "inputs.mode.options" in fields


def test_all_problems_of_a_schema_are_reported_together() -> None:
    data = _minimal(title="")
    data["inputs"][0]["default"] = 99
    data["outputs"][0]["type"] = "video"
    fields = _fields(_rejection(data))
    assert {"title", "inputs.steps.default", "outputs.image.type"} <= set(fields)


def test_schemas_built_in_python_are_checked_too() -> None:
    with pytest.raises(SchemaError, match="steps"):
        TaskSchema(
            name="broken",
            title="Broken",
            inputs=(IntegerInput(name="steps", label="Steps", min=5, max=1),),
            outputs=(Output(name="image", type="image"),),
        )


def test_not_a_map_is_rejected() -> None:
    assert _rejection([1, 2, 3]).task == "?"


# -- deriving -------------------------------------------------------------------------------


def test_with_defaults_gives_a_checked_copy() -> None:
    tuned = TXT2IMG.with_defaults({"steps": 4, "width": 64})
    assert tuned.input("steps").default == 4 and tuned.input("width").default == 64
    assert TXT2IMG.input("steps").default == 25
    with pytest.raises(SchemaError, match=r"inputs\.steps\.default"):
        TXT2IMG.with_defaults({"steps": 500})
    with pytest.raises(SchemaError, match="no such input"):
        TXT2IMG.with_defaults({"cfg": 7})


def test_json_schema_carries_bounds_steps_choices_and_layout() -> None:
    doc = TXT2IMG.to_json_schema()
    assert doc["type"] == "object" and doc["additionalProperties"] is False
    assert doc["required"] == ["prompt"]
    width = doc["properties"]["width"]
    assert (width["minimum"], width["maximum"], width["multipleOf"]) == (64, 2048, 8)
    assert width["x-lightbox-group"] == "size" and width["x-lightbox-unit"] == "px"
    assert doc["properties"]["sampler"]["enum"][0] == "euler_a"
    assert doc["properties"]["seed"]["oneOf"][1] == {"const": "random"}
    inpaint = BUILTIN_TASKS["inpaint"].to_json_schema()
    assert inpaint["properties"]["mask"]["x-lightbox-same-size-as"] == "image"


# -- hostile input: only SchemaError, whatever arrives ---------------------------------------

_KEYS = st.sampled_from(
    [
        "format", "name", "title", "type", "label", "inputs", "outputs", "min", "max", "step",
        "default", "options", "value", "image", "cost", "kind", "groups", "constraints",
        "required", "formats", "multiple_of", "terms", "factors", "width", "height", "steps",
    ]
)  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["lightbox.task/1", "integer", "image", "mask", "choice", "fixed", "main"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _values, max_size=8))
def test_random_maps_only_ever_raise_schema_error(data: dict[str, Any]) -> None:
    try:
        schema = TaskSchema.from_wire(data)
    except SchemaError:
        return
    assert TaskSchema.from_wire(schema.to_wire()) == schema


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*path, index)))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BUILTINS), st.data())
def test_builtin_schemas_with_one_value_replaced_only_ever_raise_schema_error(
    name: str, data: st.DataObject
) -> None:
    original = BUILTIN_TASKS[name].to_wire()
    mutated = copy.deepcopy(original)
    path = data.draw(st.sampled_from(_paths(mutated)[1:]))
    target = mutated
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(_values)
    try:
        schema = TaskSchema.from_wire(mutated)
    except SchemaError:
        return
    assert TaskSchema.from_wire(wire.unpack(wire.pack(schema.to_wire()))) == schema


def test_python_inputs_of_every_type_exist_for_the_editor() -> None:
    kinds = {i.kind for schema in BUILTIN_TASKS.values() for i in schema.inputs}
    assert kinds == {
        "text", "integer", "number", "boolean", "choice", "seed", "image", "mask", "image_list",
    }  # fmt: skip
    assert isinstance(BUILTIN_TASKS["upscale"].input("scale"), ChoiceInput)
    assert isinstance(BUILTIN_TASKS["inpaint"].input("mask"), MaskInput)
    assert isinstance(BUILTIN_TASKS["inpaint"].input("image"), ImageInput)
    assert isinstance(TXT2IMG.input("prompt"), TextInput)
    assert Group(name="main", label="Settings") in TaskSchema.from_wire(_minimal()).groups


def test_a_text_format_must_be_one_the_node_knows() -> None:
    data = _minimal()
    data["inputs"][1]["format"] = "[a-z]+"
    error = _rejection(data)
    assert _fields(error) == ["inputs.prompt.format"]
    assert "known: concept" in str(error)


def test_a_text_format_is_a_pattern_in_the_json_schema() -> None:
    concept = TXT2IMG.to_json_schema()["properties"]["concept"]
    assert concept["pattern"] == "^[a-z0-9][a-z0-9._-]{0,127}$"
    assert concept["x-lightbox-format"] == "concept"
    assert "concept" not in TXT2IMG.to_json_schema()["required"]
