"""Job input validation: check a job's inputs against its task schema once, where they enter.

`validate_inputs` fills defaults, refuses unknown fields, checks every value exactly (a bool is
not an integer, the text "false" is not a boolean), checks images against the facts when an
`image_info` reader is given, checks masks against their images and the schema's cross-field
rules, and reports *all* problems at once in one `InvalidJobInput`. `estimate_cost` prices a
job with the formula its schema declares.

Pure: the image reader, and the source of random seeds, are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lightbox_node.errors import LightboxError
from lightbox_node.tasks.errors import InvalidJobInput, Problem, shown
from lightbox_node.tasks.schema import (
    RANDOM_SEED,
    ImageInput,
    ImageListInput,
    MaskInput,
    SeedInput,
    TaskSchema,
)

ImageSource = str | bytes
"""What an image value's `blob` holds: a blob id (`sha256-…`) or the image bytes themselves."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """The facts about an image, read from its bytes rather than taken from the job."""

    width: int
    height: int
    format: str


ImageInfoReader = Callable[[ImageSource], ImageInfo]
"""Reads an image's real size and format; raises a LightboxError (e.g. BlobNotFound),
ValueError or OSError when it cannot."""


class ValidatedInputs(Mapping[str, Any]):
    """A job's inputs after validation: every input present (defaults filled), values exact.

    Read-only. Optional inputs without a default and not given are absent. `to_wire()` gives
    the plain values that go into the job message and the journal.
    """

    __slots__ = ("_values", "task")

    def __init__(self, task: str, values: Mapping[str, Any]) -> None:
        self.task = task
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ValidatedInputs({self.task!r}, {self._values!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ValidatedInputs):
            return self.task == other.task and self._values == other._values
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_wire(self) -> dict[str, Any]:
        return _plain_copy(self._values)


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(v) for v in value]
    return value


def validate_inputs(
    schema: TaskSchema,
    inputs: Any,
    *,
    image_info: ImageInfoReader | None = None,
    random_seed: Callable[[], int] | None = None,
) -> ValidatedInputs:
    """Check `inputs` against `schema` and return them with defaults filled.

    Raises `InvalidJobInput` listing every problem as `(field, message)`; a field is an input
    name, or a path into one such as `image.width` or `images[2].format`.

    With `image_info`, every image's claimed size and format are compared with what the
    reader finds. With `random_seed`, seeds given as "random" are replaced by a drawn seed,
    so the accepted job records the seed it will really use and can be reproduced.
    """
    if type(inputs) is not dict:
        raise InvalidJobInput(
            schema.name,
            [
                Problem(
                    "", f"inputs must be a map of input name to value, not {type(inputs).__name__}"
                )
            ],
        )
    problems: list[Problem] = []
    known = schema.input_names
    for key in inputs:
        if type(key) is not str or schema.input(key) is None:
            problems.append(
                Problem(
                    key if type(key) is str and len(key) <= 64 else "",
                    f"unknown input {shown(key)}; this task takes: {', '.join(known)}",
                )
            )

    values: dict[str, Any] = {}
    faulty: set[str] = set()
    for spec in schema.inputs:
        given = inputs.get(spec.name)
        if given is None:
            if spec.required:
                problems.append(Problem(spec.name, "is required"))
                faulty.add(spec.name)
            elif spec.default is not None:
                values[spec.name] = spec.default
            continue
        value, wrong = spec.check(given)
        problems.extend(Problem(spec.name + p.field, p.message) for p in wrong)
        if wrong:
            faulty.add(spec.name)
        else:
            values[spec.name] = value

    if image_info is not None:
        problems.extend(_compare_with_real_images(schema, values, image_info))
    problems.extend(_mask_problems(schema, values))
    for constraint in schema.constraints:
        if faulty.isdisjoint(constraint.reads()):
            why = constraint.violation(values)
            if why:
                problems.append(Problem(constraint.field, why))
    if problems:
        raise InvalidJobInput(schema.name, problems)

    if random_seed is not None:
        for spec in schema.inputs:
            if type(spec) is SeedInput and values.get(spec.name) == RANDOM_SEED:
                values[spec.name] = _drawn_seed(random_seed)
    return ValidatedInputs(schema.name, values)


def _drawn_seed(random_seed: Callable[[], int]) -> int:
    seed = random_seed()
    if type(seed) is not int or not 0 <= seed <= 2**32 - 1:
        raise ValueError(f"random_seed() must return an integer from 0 to 2^32-1, got {seed!r}")
    return seed


def _images_of(schema: TaskSchema, values: Mapping[str, Any]) -> Iterator[tuple[str, dict]]:
    """Each checked image value with its field path."""
    for spec in schema.inputs:
        value = values.get(spec.name)
        if value is None:
            continue
        if type(spec) in (ImageInput, MaskInput):
            yield spec.name, value
        elif type(spec) is ImageListInput:
            for index, item in enumerate(value):
                yield f"{spec.name}[{index}]", item


def _compare_with_real_images(
    schema: TaskSchema, values: Mapping[str, Any], image_info: ImageInfoReader
) -> list[Problem]:
    problems = []
    for where, image in _images_of(schema, values):
        try:
            info = image_info(image["blob"])
        except (LightboxError, ValueError, OSError) as exc:
            problems.append(Problem(where, f"cannot be read as an image: {exc}"))
            continue
        claimed = (image["width"], image["height"], image["format"])
        if claimed != (info.width, info.height, info.format):
            problems.append(
                Problem(
                    where,
                    f"is a {info.width}×{info.height} {info.format}, but the job says "
                    f"{image['width']}×{image['height']} {image['format']}",
                )
            )
    return problems


def _mask_problems(schema: TaskSchema, values: Mapping[str, Any]) -> list[Problem]:
    """Each mask is the size of its image; checked only where both passed on their own."""
    problems = []
    for spec in schema.inputs:
        if type(spec) is not MaskInput or spec.name not in values:
            continue
        mask = values[spec.name]
        image = values.get(spec.image)
        if image is None:
            continue
        if (mask["width"], mask["height"]) != (image["width"], image["height"]):
            problems.append(
                Problem(
                    spec.name,
                    f"is {mask['width']}×{mask['height']} but must be the size of "
                    f"{spec.image} ({image['width']}×{image['height']})",
                )
            )
    return problems


def estimate_cost(schema: TaskSchema, inputs: ValidatedInputs | Mapping[str, Any]) -> float:
    """The job's cost in the unit the schema's cost formula declares (e.g. pixel-steps).

    Inputs that are not yet a `ValidatedInputs` for this task are validated first, so a price
    is never computed from values the task would refuse.
    """
    if not isinstance(inputs, ValidatedInputs) or inputs.task != schema.name:
        inputs = validate_inputs(schema, dict(inputs))
    return schema.cost.estimate(inputs)


__all__ = [
    "ImageInfo",
    "ImageInfoReader",
    "ImageSource",
    "ValidatedInputs",
    "estimate_cost",
    "validate_inputs",
]
