"""Task schemas: what a task takes and gives, as versioned data published in capability records.

A `TaskSchema` is a frozen value with typed inputs (text, integer, number, boolean, choice,
seed, image, mask, image list), typed outputs, UI groups, cross-field constraints and a cost
formula. `to_wire()` gives plain msgpack values (the layout is `SCHEMA_FORMAT`), and
`TaskSchema.from_wire()` reads them back strictly: an unknown key, a wrong type, impossible
bounds or a default that its own input would reject is a `SchemaError` naming the task and
the field. Every input also knows how to check a value (`Input.check`), which is what job
validation and default checking share.

Pure: no I/O, no clock, no trio.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from lightbox_node.tasks.errors import Problem, SchemaError, shown

SCHEMA_FORMAT = "lightbox.task/1"
"""The layout of `TaskSchema.to_wire()`; a node refuses schemas of a format it does not know."""

SEED_MAX = 2**32 - 1
RANDOM_SEED = "random"
"""The seed value that asks for a fresh random seed, chosen once when the job is accepted."""

IMAGE_FORMATS = ("png", "jpeg", "webp")
INPUT_GROUP = "main"
MAX_IMAGE_SIDE = 65_536
MAX_TEXT_LENGTH = 65_536
"""Matches the wire's string limit: a longer text could not travel in a job message."""
MAX_LIST_COUNT = 256
MAX_INPUTS = 64
MAX_OPTIONS = 256
MAX_LABEL = 200
MAX_HELP = 4_000

BLOB_ID_PATTERN = re.compile(r"sha256-[0-9a-f]{64}")
"""The text form of a blob id (the store's `BlobId`), matched here without importing the store."""

TEXT_FORMATS: Mapping[str, tuple[re.Pattern[str], str]] = {
    "concept": (
        re.compile(r"[a-z0-9][a-z0-9._-]{0,127}"),
        "a concept name: 1 to 128 of a-z 0-9 . _ - starting with a letter or digit",
    ),
}
"""Named forms a text input may require: the pattern (fullmatch) and how to say it to a person.

Named rather than regular expressions in the schema, because schemas come from peers and a
queue node must not run a peer's pattern (a slow one would stall it) on every job. "concept"
is the model registry's concept name (`raft.registry.CONCEPT_PATTERN`)."""

_SLUG = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_SLACK = 1e-9
_BAD = object()

Term = str | int | float | tuple[str | int | float, ...]
"""A cost or constraint operand: an input reference, a constant, or a tuple summed together.

References are an input name (integer, number or numeric choice), `<image>.width`,
`<image>.height` (image or mask inputs) or `<image list>.count`.
"""


# -- small helpers --------------------------------------------------------------------------


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "text",
        bytes: "bytes",
        list: "a list",
        tuple: "a list",
        dict: "a map",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _num(value: float | int) -> str:
    """A number as a person would write it: 512, 7.5, 0.0001."""
    if type(value) is float:
        rounded = round(value, 12)
        return str(int(rounded)) if rounded.is_integer() and abs(rounded) < 1e15 else repr(rounded)
    return str(value)


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_number(value: object) -> bool:
    return (type(value) is int) or (type(value) is float and math.isfinite(value))


def _is_slug(value: object) -> bool:
    return type(value) is str and _SLUG.fullmatch(value) is not None


def _w(kind: str) -> dict[str, str]:
    """Field metadata saying how the field's wire value is parsed."""
    return {"wire": kind}


def _value_to_wire(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_wire()
    if isinstance(value, tuple | list):
        return [_value_to_wire(v) for v in value]
    return value


def _grid_problem(
    value: float | int, low: float | int | None, high: float | int | None, step: float | int
) -> str | None:
    """Why `value` is off the grid `low + k*step`, with the nearest values on it, or None."""
    base = low if low is not None else 0
    if type(value) is int and type(base) is int and type(step) is int:
        off = (value - base) % step != 0
    else:
        k = (value - base) / step
        if not abs(k) < 2**53:
            return None  # the step is too fine for this range to tell on or off the grid
        off = abs(k - round(k)) > _FLOAT_SLACK * max(1.0, abs(k))
    if not off:
        return None
    below = base + math.floor((value - base) / step) * step
    nearest = [
        n
        for n in (below, below + step)
        if (low is None or n >= low) and (high is None or n <= high)
    ]
    if type(base) is int and type(step) is int and base % step == 0:
        grid = f"must be a multiple of {step}"
    else:
        grid = f"must be {_num(base)} plus a multiple of {_num(step)}"
    if nearest:
        grid += " (nearest: " + " or ".join(_num(n) for n in nearest) + ")"
    return grid


def _bounds_problem(
    value: float | int, low: float | int | None, high: float | int | None, unit: str = ""
) -> str | None:
    suffix = f" {unit}" if unit else ""
    if low is not None and value < low:
        return f"must be at least {_num(low)}{suffix}, got {_num(value)}"
    if high is not None and value > high:
        return f"must be at most {_num(high)}{suffix}, got {_num(value)}"
    return None


def _check_text_field(value: object, *, allow_empty: bool, limit: int) -> str | None:
    if type(value) is not str:
        return f"must be text, not {_type_name(value)}"
    if not allow_empty and not value:
        return "must not be empty"
    if len(value) > limit:
        return f"must be at most {limit} characters"
    return None


# -- records: frozen dataclasses with a generic, strict wire form ---------------------------


class _Record:
    """Mixin: `to_wire()` from the dataclass fields; the tag says which variant a map is."""

    __slots__ = ()
    _tag_key: ClassVar[str | None] = None
    kind: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._tag_key is not None:
            out[self._tag_key] = self.kind
        for spec in fields(self):  # type: ignore[arg-type]
            if not spec.init:
                continue
            out[spec.name] = _value_to_wire(getattr(self, spec.name))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice(_Record):
    """One option of a choice input: the value sent in a job and the label a person reads."""

    value: str | int = field(metadata=_w("choice_value"))
    label: str = field(metadata=_w("str"))
    help: str = field(default="", metadata=_w("str"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Group(_Record):
    """A titled section of the form; groups are shown in the order the schema lists them."""

    name: str = field(metadata=_w("str"))
    label: str = field(metadata=_w("str"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Output(_Record):
    """One result of a task: an image, a list of images, a blob (e.g. an adapter) or text."""

    name: str = field(metadata=_w("str"))
    type: str = field(metadata=_w("str"))
    description: str = field(default="", metadata=_w("str"))
    media_type: str = field(default="", metadata=_w("str"))


OUTPUT_TYPES = ("image", "image_list", "blob", "text")


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Input(_Record):
    """What every input has: its name in a job, a label and help for people, and layout.

    A required input has no default and must be given. An optional input whose default is
    None is simply absent from the job when not given.
    """

    _tag_key: ClassVar[str | None] = "type"

    name: str = field(metadata=_w("str"))
    label: str = field(metadata=_w("str"))
    help: str = field(default="", metadata=_w("str"))
    required: bool = field(default=False, metadata=_w("bool"))
    default: Any = field(default=None, metadata=_w("scalar?"))
    advanced: bool = field(default=False, metadata=_w("bool"))
    group: str = field(default=INPUT_GROUP, metadata=_w("str"))
    order: int = field(default=0, metadata=_w("int"))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        """The normalised value and its problems; a problem's field is relative ("" or ".width")."""
        raise NotImplementedError

    def definition_problems(self) -> list[Problem]:
        """What is wrong with this input's own definition; fields are relative to the input."""
        problems: list[Problem] = []
        if not _is_slug(self.name):
            problems.append(Problem("name", "must be a slug: a-z, then a-z 0-9 _ (64 at most)"))
        for key, limit, empty in (("label", MAX_LABEL, False), ("help", MAX_HELP, True)):
            why = _check_text_field(getattr(self, key), allow_empty=empty, limit=limit)
            if why:
                problems.append(Problem(key, why))
        for key in ("required", "advanced"):
            if type(getattr(self, key)) is not bool:
                problems.append(Problem(key, "must be true or false"))
        if not _is_slug(self.group):
            problems.append(Problem("group", "must be a slug naming one of the schema's groups"))
        if not _is_int(self.order) or not _INT64_MIN <= self.order <= _INT64_MAX:
            problems.append(Problem("order", "must be an integer"))
        problems.extend(self._type_problems())
        if problems:
            return problems
        if self.required is True and self.default is not None:
            problems.append(Problem("default", "a required input has no default"))
        elif self.default is not None:
            _, wrong = self.check(self.default)
            problems.extend(Problem("default" + p.field, p.message) for p in wrong)
        return problems

    def _type_problems(self) -> list[Problem]:
        return []

    def json_schema(self) -> dict[str, Any]:
        """This input as a JSON Schema property, with `x-lightbox-*` keys for the form layout."""
        out: dict[str, Any] = {"title": self.label}
        if self.help:
            out["description"] = self.help
        out.update(self._value_json_schema())
        if self.default is not None:
            out["default"] = self.default
        out["x-lightbox-type"] = self.kind
        out["x-lightbox-group"] = self.group
        out["x-lightbox-order"] = self.order
        out["x-lightbox-advanced"] = self.advanced
        return out

    def _value_json_schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class TextInput(Input):
    """Free text such as a prompt; single-line unless `multiline`."""

    kind: ClassVar[str] = "text"
    min_length: int = field(default=0, metadata=_w("int"))
    max_length: int = field(default=2_000, metadata=_w("int"))
    multiline: bool = field(default=False, metadata=_w("bool"))
    placeholder: str = field(default="", metadata=_w("str"))
    format: str = field(default="", metadata=_w("str"))
    """A name from `TEXT_FORMATS` the text must have; "" for any text."""

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        if type(value) is not str:
            return value, [Problem("", f"must be text, not {_type_name(value)}")]
        problems = []
        if len(value) < self.min_length:
            problems.append(
                Problem("", "must not be empty")
                if self.min_length == 1
                else Problem("", f"must be at least {self.min_length} characters, got {len(value)}")
            )
        if len(value) > self.max_length:
            problems.append(
                Problem("", f"must be at most {self.max_length} characters, got {len(value)}")
            )
        if not self.multiline and ("\n" in value or "\r" in value):
            problems.append(Problem("", "must be a single line"))
        if "\x00" in value:
            problems.append(Problem("", "must not contain NUL characters"))
        if self.format and not problems:
            pattern, described = TEXT_FORMATS[self.format]
            if not pattern.fullmatch(value):
                problems.append(Problem("", f"must be {described}"))
        return value, problems

    def _type_problems(self) -> list[Problem]:
        problems = []
        low, high = self.min_length, self.max_length
        if not _is_int(low) or not 0 <= low <= MAX_TEXT_LENGTH:
            problems.append(
                Problem("min_length", f"must be an integer from 0 to {MAX_TEXT_LENGTH}")
            )
        if not _is_int(high) or not 1 <= high <= MAX_TEXT_LENGTH:
            problems.append(
                Problem("max_length", f"must be an integer from 1 to {MAX_TEXT_LENGTH}")
            )
        elif _is_int(low) and low > high:
            problems.append(Problem("min_length", f"{low} is above max_length {high}"))
        if type(self.multiline) is not bool:
            problems.append(Problem("multiline", "must be true or false"))
        why = _check_text_field(self.placeholder, allow_empty=True, limit=MAX_LABEL)
        if why:
            problems.append(Problem("placeholder", why))
        if type(self.format) is not str or (self.format and self.format not in TEXT_FORMATS):
            problems.append(
                Problem(
                    "format",
                    f"unknown text format {shown(self.format)}; known: {', '.join(TEXT_FORMATS)}",
                )
            )
        return problems

    def _value_json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            out["minLength"] = self.min_length
        if self.format:
            # The named form excludes line breaks itself.
            out["pattern"] = "^" + TEXT_FORMATS[self.format][0].pattern + "$"
            out["x-lightbox-format"] = self.format
        elif not self.multiline:
            out["pattern"] = "^[^\\r\\n]*$"
        if self.placeholder:
            out["x-lightbox-placeholder"] = self.placeholder
        out["x-lightbox-multiline"] = self.multiline
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegerInput(Input):
    """A whole number within bounds, on the grid `min + k*step` (or `k*step` with no min)."""

    kind: ClassVar[str] = "integer"
    min: int | None = field(default=None, metadata=_w("int?"))
    max: int | None = field(default=None, metadata=_w("int?"))
    step: int = field(default=1, metadata=_w("int"))
    unit: str = field(default="", metadata=_w("str"))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        if type(value) is not int:
            return value, [Problem("", f"must be an integer, not {_type_name(value)}")]
        why = _bounds_problem(value, self.min, self.max, self.unit) or _grid_problem(
            value, self.min, self.max, self.step
        )
        return value, [Problem("", why)] if why else []

    def _type_problems(self) -> list[Problem]:
        problems = []
        for key in ("min", "max"):
            bound = getattr(self, key)
            if bound is not None and (not _is_int(bound) or not _INT64_MIN <= bound <= _INT64_MAX):
                problems.append(Problem(key, "must be a 64-bit integer or null"))
        if not _is_int(self.step) or not 1 <= self.step <= _INT64_MAX:
            problems.append(Problem("step", "must be a positive integer"))
        why = _check_text_field(self.unit, allow_empty=True, limit=32)
        if why:
            problems.append(Problem("unit", why))
        if not problems and self.min is not None and self.max is not None and self.min > self.max:
            problems.append(Problem("min", f"{self.min} is above max {self.max}"))
        return problems

    def _value_json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.min is not None:
            out["minimum"] = self.min
        if self.max is not None:
            out["maximum"] = self.max
        if self.step != 1:
            if (self.min or 0) % self.step == 0:
                out["multipleOf"] = self.step
            out["x-lightbox-step"] = self.step
        if self.unit:
            out["x-lightbox-unit"] = self.unit
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberInput(Input):
    """A real number within bounds; with a `step`, on the grid `min + k*step`.

    Bounds, step and default are kept as floats so one schema has one wire encoding.
    """

    kind: ClassVar[str] = "number"
    min: float | None = field(default=None, metadata=_w("num?"))
    max: float | None = field(default=None, metadata=_w("num?"))
    step: float | None = field(default=None, metadata=_w("num?"))
    unit: str = field(default="", metadata=_w("str"))

    def __post_init__(self) -> None:
        for key in ("min", "max", "step", "default"):
            value = getattr(self, key)
            if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
                object.__setattr__(self, key, float(value))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        if type(value) is not float and type(value) is not int:
            return value, [Problem("", f"must be a number, not {_type_name(value)}")]
        if type(value) is float and not math.isfinite(value):
            return value, [Problem("", "must be a finite number")]
        try:
            number = float(value)
        except OverflowError:
            return value, [Problem("", "is too large")]
        why = _bounds_problem(number, self.min, self.max, self.unit)
        if why is None and self.step is not None:
            why = _grid_problem(number, self.min, self.max, self.step)
        return number, [Problem("", why)] if why else []

    def _type_problems(self) -> list[Problem]:
        problems = []
        for key in ("min", "max", "step"):
            bound = getattr(self, key)
            if bound is not None and not (type(bound) is float and math.isfinite(bound)):
                problems.append(Problem(key, "must be a finite number or null"))
        if not problems and self.step is not None and self.step <= 0:
            problems.append(Problem("step", "must be above 0"))
        why = _check_text_field(self.unit, allow_empty=True, limit=32)
        if why:
            problems.append(Problem("unit", why))
        if not problems and self.min is not None and self.max is not None and self.min > self.max:
            problems.append(Problem("min", f"{_num(self.min)} is above max {_num(self.max)}"))
        return problems

    def _value_json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.min is not None:
            out["minimum"] = self.min
        if self.max is not None:
            out["maximum"] = self.max
        if self.step is not None:
            out["x-lightbox-step"] = self.step
        if self.unit:
            out["x-lightbox-unit"] = self.unit
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class BooleanInput(Input):
    """True or false, exactly: the text "false" is not a boolean. Never required."""

    kind: ClassVar[str] = "boolean"
    default: Any = field(default=False, metadata=_w("scalar?"))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        if type(value) is bool:
            return value, []
        if type(value) is str:
            return value, [Problem("", f"must be true or false, not the text {shown(value)}")]
        return value, [Problem("", f"must be true or false, not {_type_name(value)}")]

    def _type_problems(self) -> list[Problem]:
        if self.required is True:
            return [Problem("required", "a boolean always has a value; give it a default instead")]
        if type(self.default) is not bool:
            return [Problem("default", "a boolean input needs a default of true or false")]
        return []

    def _value_json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChoiceInput(Input):
    """One of a fixed list of options; values are all text or all integers."""

    kind: ClassVar[str] = "choice"
    options: tuple[Choice, ...] = field(default=(), metadata=_w("options"))

    def __post_init__(self) -> None:
        if type(self.options) is list:
            object.__setattr__(self, "options", tuple(self.options))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        for option in self.options:
            if type(option.value) is type(value) and option.value == value:
                return value, []
        listed = ", ".join(repr(o.value) for o in self.options[:20])
        more = ", …" if len(self.options) > 20 else ""
        return value, [Problem("", f"must be one of {listed}{more}; got {shown(value)}")]

    def _type_problems(self) -> list[Problem]:
        if type(self.options) is not tuple or not 1 <= len(self.options) <= MAX_OPTIONS:
            return [Problem("options", f"must list 1 to {MAX_OPTIONS} options")]
        problems = []
        seen: set[Any] = set()
        kinds = set()
        for index, option in enumerate(self.options):
            where = f"options[{index}]"
            if not isinstance(option, Choice):
                problems.append(Problem(where, "must be a map with value, label and help"))
                continue
            if type(option.value) not in (str, int):
                problems.append(Problem(where + ".value", "must be text or an integer"))
                continue
            kinds.add(type(option.value))
            if option.value in seen:
                problems.append(Problem(where + ".value", f"duplicate value {shown(option.value)}"))
            seen.add(option.value)
            for key, empty in (("label", False), ("help", True)):
                why = _check_text_field(getattr(option, key), allow_empty=empty, limit=MAX_HELP)
                if why:
                    problems.append(Problem(f"{where}.{key}", why))
        if len(kinds) > 1:
            problems.append(Problem("options", "values must be all text or all integers"))
        return problems

    def _value_json_schema(self) -> dict[str, Any]:
        return {
            "enum": [o.value for o in self.options],
            "oneOf": [
                {"const": o.value, "title": o.label, **({"description": o.help} if o.help else {})}
                for o in self.options
            ],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedInput(Input):
    """A random seed: an integer from 0 to 2^32-1, or "random" for a fresh one per job."""

    kind: ClassVar[str] = "seed"
    default: Any = field(default=RANDOM_SEED, metadata=_w("scalar?"))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        if type(value) is str and value == RANDOM_SEED:
            return value, []
        if type(value) is not int or not 0 <= value <= SEED_MAX:
            return value, [
                Problem(
                    "", f"must be an integer from 0 to {SEED_MAX} or 'random', got {shown(value)}"
                )
            ]
        return value, []

    def _value_json_schema(self) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
                {"const": RANDOM_SEED},
            ]
        }


def _check_image_value(
    value: Any,
    *,
    formats: tuple[str, ...],
    width: tuple[int, int],
    height: tuple[int, int],
    multiple_of: int,
    max_pixels: int | None,
) -> tuple[Any, list[Problem]]:
    """Check `{"blob", "width", "height", "format"}`; the blob is a blob id or the raw bytes."""
    if type(value) is not dict:
        return value, [
            Problem(
                "", f"must be an image map {{blob, width, height, format}}, not {_type_name(value)}"
            )
        ]
    problems = []
    for key in value:
        if key not in IMAGE_KEYS:
            problems.append(
                Problem(
                    f".{key}" if type(key) is str else "", f"unknown key {shown(key)} in an image"
                )
            )
    for key in IMAGE_KEYS:
        if key not in value:
            problems.append(Problem(f".{key}", "missing"))
    blob = value.get("blob")
    if "blob" in value and not (
        (type(blob) is str and BLOB_ID_PATTERN.fullmatch(blob))
        or (type(blob) is bytes and len(blob) > 0)
    ):
        problems.append(
            Problem(
                ".blob", f"must be a blob id 'sha256-' + 64 lowercase hex digits, got {shown(blob)}"
            )
        )
    sides = {}
    for key, (low, high) in (("width", width), ("height", height)):
        side = value.get(key)
        if key not in value:
            continue
        if type(side) is not int:
            problems.append(Problem(f".{key}", f"must be an integer, not {_type_name(side)}"))
            continue
        why = _bounds_problem(side, low, high, "px")
        if why is None and side % multiple_of:
            below = side - side % multiple_of
            nearest = [n for n in (below, below + multiple_of) if low <= n <= high]
            why = f"must be a multiple of {multiple_of}, got {side}"
            if nearest:
                why += " (resize or crop to " + " or ".join(map(str, nearest)) + ")"
        if why:
            problems.append(Problem(f".{key}", why))
        else:
            sides[key] = side
    if max_pixels is not None and len(sides) == 2 and sides["width"] * sides["height"] > max_pixels:
        problems.append(
            Problem(
                "",
                f"is {sides['width']}×{sides['height']} = {sides['width'] * sides['height']} "
                f"pixels, over the limit of {max_pixels}",
            )
        )
    image_format = value.get("format")
    if "format" in value and not (type(image_format) is str and image_format in formats):
        problems.append(
            Problem(".format", f"must be one of {', '.join(formats)}; got {shown(image_format)}")
        )
    if problems:
        return value, problems
    return {key: value[key] for key in IMAGE_KEYS}, []


IMAGE_KEYS = ("blob", "width", "height", "format")


def _formats_problems(formats: object) -> list[Problem]:
    if (
        type(formats) is not tuple
        or not formats
        or any(f not in IMAGE_FORMATS for f in formats if type(f) is str)
        or any(type(f) is not str for f in formats)
        or len(set(formats)) != len(formats)
    ):
        return [Problem("formats", f"must list distinct formats out of {', '.join(IMAGE_FORMATS)}")]
    return []


def _image_json_schema(
    formats: tuple[str, ...], width: tuple[int, int], height: tuple[int, int], multiple_of: int
) -> dict[str, Any]:
    def side(bounds: tuple[int, int]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}
        if multiple_of > 1:
            out["multipleOf"] = multiple_of
        return out

    return {
        "type": "object",
        "properties": {
            "blob": {"type": "string", "pattern": "^" + BLOB_ID_PATTERN.pattern + "$"},
            "width": side(width),
            "height": side(height),
            "format": {"enum": list(formats)},
        },
        "required": list(IMAGE_KEYS),
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInput(Input):
    """One image, by blob id with its size and format; sizes bounded and on a multiple.

    The value is `{"blob": "sha256-…", "width": 512, "height": 512, "format": "png"}`.
    """

    kind: ClassVar[str] = "image"
    formats: tuple[str, ...] = field(default=IMAGE_FORMATS, metadata=_w("strs"))
    min_width: int = field(default=1, metadata=_w("int"))
    max_width: int = field(default=4096, metadata=_w("int"))
    min_height: int = field(default=1, metadata=_w("int"))
    max_height: int = field(default=4096, metadata=_w("int"))
    multiple_of: int = field(default=1, metadata=_w("int"))
    max_pixels: int | None = field(default=None, metadata=_w("int?"))

    def __post_init__(self) -> None:
        if type(self.formats) is list:
            object.__setattr__(self, "formats", tuple(self.formats))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        return _check_image_value(
            value,
            formats=self.formats,
            width=(self.min_width, self.max_width),
            height=(self.min_height, self.max_height),
            multiple_of=self.multiple_of,
            max_pixels=self.max_pixels,
        )

    def _type_problems(self) -> list[Problem]:
        problems = _formats_problems(self.formats)
        problems.extend(_image_bounds_problems(self))
        if self.default is not None:
            problems.append(Problem("default", "an image input has no default"))
        return problems

    def _value_json_schema(self) -> dict[str, Any]:
        out = _image_json_schema(
            self.formats,
            (self.min_width, self.max_width),
            (self.min_height, self.max_height),
            self.multiple_of,
        )
        if self.max_pixels is not None:
            out["x-lightbox-max-pixels"] = self.max_pixels
        return out


def _image_bounds_problems(spec: ImageInput) -> list[Problem]:
    problems = []
    for key in ("min_width", "max_width", "min_height", "max_height", "multiple_of"):
        bound = getattr(spec, key)
        if not _is_int(bound) or not 1 <= bound <= MAX_IMAGE_SIDE:
            problems.append(Problem(key, f"must be an integer from 1 to {MAX_IMAGE_SIDE}"))
    if spec.max_pixels is not None and (not _is_int(spec.max_pixels) or spec.max_pixels < 1):
        problems.append(Problem("max_pixels", "must be a positive integer or null"))
    if problems:
        return problems
    for axis in ("width", "height"):
        low, high = getattr(spec, f"min_{axis}"), getattr(spec, f"max_{axis}")
        if low > high:
            problems.append(Problem(f"min_{axis}", f"{low} is above max_{axis} {high}"))
        elif (high - high % spec.multiple_of) < low:
            problems.append(
                Problem(
                    "multiple_of",
                    f"no {axis} from {low} to {high} is a multiple of {spec.multiple_of}",
                )
            )
    return problems


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskInput(Input):
    """A mask over the image input named by `image`, the same size as it; white = repaint."""

    kind: ClassVar[str] = "mask"
    image: str = field(metadata=_w("str"))
    formats: tuple[str, ...] = field(default=("png", "webp"), metadata=_w("strs"))

    def __post_init__(self) -> None:
        if type(self.formats) is list:
            object.__setattr__(self, "formats", tuple(self.formats))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        return _check_image_value(
            value,
            formats=self.formats,
            width=(1, MAX_IMAGE_SIDE),
            height=(1, MAX_IMAGE_SIDE),
            multiple_of=1,
            max_pixels=None,
        )

    def _type_problems(self) -> list[Problem]:
        problems = _formats_problems(self.formats)
        if not _is_slug(self.image):
            problems.append(Problem("image", "must name an image input of this task"))
        if self.default is not None:
            problems.append(Problem("default", "a mask input has no default"))
        return problems

    def _value_json_schema(self) -> dict[str, Any]:
        out = _image_json_schema(self.formats, (1, MAX_IMAGE_SIDE), (1, MAX_IMAGE_SIDE), 1)
        out["x-lightbox-same-size-as"] = self.image
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageListInput(Input):
    """Several images (e.g. a fine-tuning set), each checked like an image input."""

    kind: ClassVar[str] = "image_list"
    formats: tuple[str, ...] = field(default=IMAGE_FORMATS, metadata=_w("strs"))
    min_width: int = field(default=1, metadata=_w("int"))
    max_width: int = field(default=4096, metadata=_w("int"))
    min_height: int = field(default=1, metadata=_w("int"))
    max_height: int = field(default=4096, metadata=_w("int"))
    multiple_of: int = field(default=1, metadata=_w("int"))
    max_pixels: int | None = field(default=None, metadata=_w("int?"))
    min_count: int = field(default=1, metadata=_w("int"))
    max_count: int = field(default=16, metadata=_w("int"))

    def __post_init__(self) -> None:
        if type(self.formats) is list:
            object.__setattr__(self, "formats", tuple(self.formats))

    def check(self, value: Any) -> tuple[Any, list[Problem]]:
        if type(value) is not list and type(value) is not tuple:
            return value, [Problem("", f"must be a list of images, not {_type_name(value)}")]
        problems = []
        if len(value) < self.min_count:
            problems.append(
                Problem("", f"needs at least {self.min_count} images, got {len(value)}")
            )
        if len(value) > self.max_count:
            problems.append(Problem("", f"takes at most {self.max_count} images, got {len(value)}"))
            return value, problems
        images = []
        for index, item in enumerate(value):
            image, wrong = _check_image_value(
                item,
                formats=self.formats,
                width=(self.min_width, self.max_width),
                height=(self.min_height, self.max_height),
                multiple_of=self.multiple_of,
                max_pixels=self.max_pixels,
            )
            images.append(image)
            problems.extend(Problem(f"[{index}]{p.field}", p.message) for p in wrong)
        return images, problems

    def _type_problems(self) -> list[Problem]:
        problems = _formats_problems(self.formats)
        problems.extend(_image_bounds_problems(self))  # type: ignore[arg-type]
        low, high = self.min_count, self.max_count
        if not _is_int(low) or not 0 <= low <= MAX_LIST_COUNT:
            problems.append(Problem("min_count", f"must be an integer from 0 to {MAX_LIST_COUNT}"))
        if not _is_int(high) or not 1 <= high <= MAX_LIST_COUNT:
            problems.append(Problem("max_count", f"must be an integer from 1 to {MAX_LIST_COUNT}"))
        elif _is_int(low) and low > high:
            problems.append(Problem("min_count", f"{low} is above max_count {high}"))
        if self.default is not None:
            problems.append(Problem("default", "an image list input has no default"))
        return problems

    def _value_json_schema(self) -> dict[str, Any]:
        item = _image_json_schema(
            self.formats,
            (self.min_width, self.max_width),
            (self.min_height, self.max_height),
            self.multiple_of,
        )
        return {
            "type": "array",
            "items": item,
            "minItems": self.min_count,
            "maxItems": self.max_count,
        }


INPUT_TYPES: Mapping[str, type[Input]] = {
    cls.kind: cls
    for cls in (
        TextInput,
        IntegerInput,
        NumberInput,
        BooleanInput,
        ChoiceInput,
        SeedInput,
        ImageInput,
        MaskInput,
        ImageListInput,
    )
}


# -- references: how costs and constraints name input values ---------------------------------


def _reference_problem(schema: TaskSchema, ref: object, *, must_be_present: bool) -> str | None:
    """Why `ref` does not name a numeric value of this schema's inputs, or None."""
    if type(ref) is not str:
        return f"must be an input reference, not {_type_name(ref)}"
    name, _, part = ref.partition(".")
    spec = schema.input(name)
    if spec is None:
        return f"{shown(ref)} names no input of this task"
    if part:
        wanted = {"width": (ImageInput, MaskInput), "height": (ImageInput, MaskInput)}
        wanted["count"] = (ImageListInput,)
        if part not in wanted or type(spec) not in wanted[part]:
            return f"{shown(ref)}: only image or mask .width/.height and image list .count exist"
    elif type(spec) is ChoiceInput:
        if any(type(o.value) is not int for o in spec.options):
            return f"{shown(ref)} is a choice with non-integer values"
    elif type(spec) not in (IntegerInput, NumberInput):
        return f"{shown(ref)} is a {spec.kind} input, not a number"
    if must_be_present and not spec.required and spec.default is None:
        return f"{shown(ref)} is optional without a default, so it may have no value"
    return None


def _term_problems(schema: TaskSchema, term: object, where: str) -> list[Problem]:
    if type(term) is tuple:
        if not 1 <= len(term) <= 16:
            return [Problem(where, "a sum lists 1 to 16 terms")]
        problems = []
        for index, part in enumerate(term):
            problems.extend(_term_problems(schema, part, f"{where}[{index}]"))
        return problems
    if _is_number(term):
        return [] if term >= 0 else [Problem(where, "a constant must not be negative")]
    why = _reference_problem(schema, term, must_be_present=True)
    return [Problem(where, why)] if why else []


def resolve_term(term: Term, values: Mapping[str, Any]) -> float:
    """The number a term stands for, given validated input values."""
    if type(term) is tuple:
        return float(sum(resolve_term(part, values) for part in term))
    if type(term) is not str:
        return float(term)
    name, _, part = term.partition(".")
    value = values[name]
    if part == "count":
        return float(len(value))
    if part:
        return float(value[part])
    return float(value)


def _term_label(term: Term) -> str:
    if type(term) is tuple:
        return " + ".join(_term_label(part) for part in term)
    return term if type(term) is str else _num(term)


# -- constraints ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraint(_Record):
    """A rule across several inputs, checked after each input passed on its own."""

    _tag_key: ClassVar[str | None] = "kind"

    @property
    def field(self) -> str:
        """The input a violation is shown next to."""
        raise NotImplementedError

    def problems(self, schema: TaskSchema) -> list[Problem]:
        """What is wrong with this constraint's definition inside `schema`."""
        raise NotImplementedError

    def violation(self, values: Mapping[str, Any]) -> str | None:
        """Why validated `values` break this rule, or None."""
        raise NotImplementedError

    def reads(self) -> frozenset[str]:
        """The inputs this rule reads; it is checked only when all of them are valid."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class AnyPositive(Constraint):
    """At least one of the named numeric inputs is above zero (e.g. outpaint extends somewhere)."""

    kind: ClassVar[str] = "any_positive"
    inputs: tuple[str, ...] = field(metadata=_w("strs"))
    message: str = field(default="", metadata=_w("str"))

    def __post_init__(self) -> None:
        if type(self.inputs) is list:
            object.__setattr__(self, "inputs", tuple(self.inputs))

    @property
    def field(self) -> str:
        return self.inputs[0]

    def reads(self) -> frozenset[str]:
        return frozenset(self.inputs)

    def problems(self, schema: TaskSchema) -> list[Problem]:
        if type(self.inputs) is not tuple or not 1 <= len(self.inputs) <= 16:
            return [Problem("inputs", "must list 1 to 16 inputs")]
        problems = []
        for index, name in enumerate(self.inputs):
            why = _reference_problem(schema, name, must_be_present=False)
            if why is None and "." in name:
                why = "must name an integer or number input"
            if why:
                problems.append(Problem(f"inputs[{index}]", why))
        why = _check_text_field(self.message, allow_empty=True, limit=MAX_HELP)
        if why:
            problems.append(Problem("message", why))
        return problems

    def violation(self, values: Mapping[str, Any]) -> str | None:
        if any((values.get(name) or 0) > 0 for name in self.inputs):
            return None
        return self.message or f"at least one of {', '.join(self.inputs)} must be above 0"


@dataclass(frozen=True, slots=True, kw_only=True)
class RequiredIf(Constraint):
    """`input` must be given (and not empty) when input `when` equals `equals`."""

    kind: ClassVar[str] = "required_if"
    input: str = field(metadata=_w("str"))
    when: str = field(metadata=_w("str"))
    equals: Any = field(metadata=_w("scalar?"))

    @property
    def field(self) -> str:
        return self.input

    def reads(self) -> frozenset[str]:
        return frozenset((self.input, self.when))

    def problems(self, schema: TaskSchema) -> list[Problem]:
        problems = []
        target = schema.input(self.input) if type(self.input) is str else None
        if target is None:
            problems.append(Problem("input", f"{shown(self.input)} names no input of this task"))
        elif target.required:
            problems.append(Problem("input", f"{self.input!r} is always required already"))
        condition = schema.input(self.when) if type(self.when) is str else None
        if type(condition) not in (BooleanInput, ChoiceInput):
            problems.append(
                Problem("when", f"{shown(self.when)} must name a boolean or choice input")
            )
        elif condition is not None and condition.check(self.equals)[1]:
            problems.append(
                Problem("equals", f"{shown(self.equals)} is not a value of {self.when!r}")
            )
        return problems

    def violation(self, values: Mapping[str, Any]) -> str | None:
        condition = values.get(self.when)
        if type(condition) is not type(self.equals) or condition != self.equals:
            return None
        if values.get(self.input) in (None, "", []):
            return f"is required when {self.when} is {shown(self.equals)}"
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SumAtMost(Constraint):
    """The sum of the terms is at most `max` (e.g. outpaint's result stays within bounds)."""

    kind: ClassVar[str] = "sum_at_most"
    terms: tuple[str, ...] = field(metadata=_w("strs"))
    max: int = field(metadata=_w("int"))
    message: str = field(default="", metadata=_w("str"))

    def __post_init__(self) -> None:
        if type(self.terms) is list:
            object.__setattr__(self, "terms", tuple(self.terms))

    @property
    def field(self) -> str:
        plain = [t for t in self.terms if "." not in t]
        return (plain or list(self.terms))[-1].partition(".")[0]

    def reads(self) -> frozenset[str]:
        return frozenset(term.partition(".")[0] for term in self.terms)

    def problems(self, schema: TaskSchema) -> list[Problem]:
        if type(self.terms) is not tuple or not 1 <= len(self.terms) <= 16:
            return [Problem("terms", "must list 1 to 16 input references")]
        problems = []
        for index, term in enumerate(self.terms):
            why = _reference_problem(schema, term, must_be_present=True)
            if why:
                problems.append(Problem(f"terms[{index}]", why))
        if not _is_int(self.max) or not 0 <= self.max <= _INT64_MAX:
            problems.append(Problem("max", "must be a non-negative integer"))
        why = _check_text_field(self.message, allow_empty=True, limit=MAX_HELP)
        if why:
            problems.append(Problem("message", why))
        return problems

    def violation(self, values: Mapping[str, Any]) -> str | None:
        total = resolve_term(tuple(self.terms), values)
        if total <= self.max:
            return None
        why = f"{' + '.join(self.terms)} is {_num(total)}, over {self.max}"
        return f"{self.message} ({why})" if self.message else why


CONSTRAINT_KINDS: Mapping[str, type[Constraint]] = {
    cls.kind: cls for cls in (AnyPositive, RequiredIf, SumAtMost)
}


# -- cost formulas --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Cost(_Record):
    """How much compute a job costs, in the task's `unit`, computed from its inputs."""

    _tag_key: ClassVar[str | None] = "kind"

    def terms(self) -> dict[str, Term]:
        """The named operands, for checking their references."""
        return {}

    def estimate(self, values: Mapping[str, Any]) -> float:
        raise NotImplementedError

    def problems(self, schema: TaskSchema) -> list[Problem]:
        problems = []
        for name, term in self.terms().items():
            problems.extend(_term_problems(schema, term, name))
        why = _check_text_field(getattr(self, "unit", ""), allow_empty=False, limit=32)
        if why:
            problems.append(Problem("unit", why))
        return problems


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedCost(Cost):
    """Every job costs the same."""

    kind: ClassVar[str] = "fixed"
    units: float = field(default=1.0, metadata=_w("num"))
    unit: str = field(default="jobs", metadata=_w("str"))

    def terms(self) -> dict[str, Term]:
        return {"units": self.units}

    def estimate(self, values: Mapping[str, Any]) -> float:
        return float(self.units)


@dataclass(frozen=True, slots=True, kw_only=True)
class PixelStepsCost(Cost):
    """Diffusion cost: width × height × steps × batch × strength (img2img runs that share)."""

    kind: ClassVar[str] = "pixels_x_steps"
    width: Term = field(metadata=_w("term"))
    height: Term = field(metadata=_w("term"))
    steps: Term = field(metadata=_w("term"))
    batch: Term | None = field(default=None, metadata=_w("term?"))
    strength: Term | None = field(default=None, metadata=_w("term?"))
    unit: str = field(default="pixel-steps", metadata=_w("str"))

    def terms(self) -> dict[str, Term]:
        named = {"width": self.width, "height": self.height, "steps": self.steps}
        for key in ("batch", "strength"):
            if getattr(self, key) is not None:
                named[key] = getattr(self, key)
        return named

    def estimate(self, values: Mapping[str, Any]) -> float:
        total = 1.0
        for term in self.terms().values():
            total *= resolve_term(term, values)
        return total


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductCost(Cost):
    """The product of the factors times `scale` (e.g. upscale: width × height × scale²)."""

    kind: ClassVar[str] = "product"
    factors: tuple[Term, ...] = field(metadata=_w("terms"))
    scale: float = field(default=1.0, metadata=_w("num"))
    unit: str = field(default="units", metadata=_w("str"))

    def __post_init__(self) -> None:
        if type(self.factors) is list:
            object.__setattr__(self, "factors", tuple(self.factors))

    def terms(self) -> dict[str, Term]:
        named: dict[str, Term] = {f"factors[{i}]": term for i, term in enumerate(self.factors)}
        named["scale"] = self.scale
        return named

    def problems(self, schema: TaskSchema) -> list[Problem]:
        if type(self.factors) is not tuple or not 1 <= len(self.factors) <= 16:
            return [Problem("factors", "must list 1 to 16 factors")]
        return Cost.problems(self, schema)

    def estimate(self, values: Mapping[str, Any]) -> float:
        total = float(self.scale)
        for term in self.factors:
            total *= resolve_term(term, values)
        return total


COST_KINDS: Mapping[str, type[Cost]] = {
    cls.kind: cls for cls in (FixedCost, PixelStepsCost, ProductCost)
}


# -- the schema -----------------------------------------------------------------------------


DEFAULT_GROUPS = (Group(name=INPUT_GROUP, label="Settings"),)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSchema(_Record):
    """A task as data: its inputs, outputs, form layout, cross-field rules and cost formula.

    `name` is the task's slug (e.g. "txt2img") and `version` the revision of its contract;
    `SCHEMA_FORMAT` is the layout of this whole structure on the wire. Checked on creation,
    so no invalid schema exists.
    """

    name: str = field(metadata=_w("str"))
    title: str = field(metadata=_w("str"))
    description: str = field(default="", metadata=_w("str"))
    version: int = field(default=1, metadata=_w("int"))
    inputs: tuple[Input, ...] = field(default=(), metadata=_w("inputs"))
    outputs: tuple[Output, ...] = field(default=(), metadata=_w("outputs"))
    groups: tuple[Group, ...] = field(default=DEFAULT_GROUPS, metadata=_w("groups"))
    constraints: tuple[Constraint, ...] = field(default=(), metadata=_w("constraints"))
    cost: Cost = field(default=FixedCost(), metadata=_w("cost"))
    _by_name: dict[str, Input] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for key in ("inputs", "outputs", "groups", "constraints"):
            if type(getattr(self, key)) is list:
                object.__setattr__(self, key, tuple(getattr(self, key)))
        by_name = {}
        if type(self.inputs) is tuple:
            by_name = {
                i.name: i for i in self.inputs if isinstance(i, Input) and type(i.name) is str
            }
        object.__setattr__(self, "_by_name", by_name)
        problems = self._definition_problems()
        if problems:
            task = self.name if _is_slug(self.name) else "?"
            raise SchemaError(task, problems)

    # -- reading ----------------------------------------------------------------------------

    def input(self, name: str) -> Input | None:
        """The input called `name`, or None."""
        return self._by_name.get(name)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    def layout(self) -> list[tuple[Group, list[Input]]]:
        """The form: groups in schema order, each with its inputs sorted by `order`."""
        return [
            (
                group,
                sorted((i for i in self.inputs if i.group == group.name), key=lambda i: i.order),
            )
            for group in self.groups
        ]

    # -- deriving ---------------------------------------------------------------------------

    def with_defaults(self, overrides: Mapping[str, Any]) -> TaskSchema:
        """The same task with other defaults (a model's preferred settings), checked again."""
        unknown = [name for name in overrides if name not in self._by_name]
        if unknown:
            raise SchemaError(
                self.name,
                [
                    Problem(f"inputs.{shown(n)}", "no such input; cannot set its default")
                    for n in unknown
                ],
            )
        inputs = tuple(
            dataclasses.replace(i, default=overrides[i.name]) if i.name in overrides else i
            for i in self.inputs
        )
        return dataclasses.replace(self, inputs=inputs)

    # -- wire -------------------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack values in the `SCHEMA_FORMAT` layout, every key present."""
        out = {"format": SCHEMA_FORMAT}
        out.update(_Record.to_wire(self))
        return out

    @classmethod
    def from_wire(cls, data: Any) -> TaskSchema:
        """Read a schema from untrusted plain values; any flaw is a SchemaError naming it."""
        if type(data) is not dict:
            raise SchemaError("?", [Problem("", f"a task schema is a map, not {_type_name(data)}")])
        name = data.get("name")
        task = name if _is_slug(name) else "?"
        problems: list[Problem] = []
        fmt = data.get("format")
        if "format" not in data:
            problems.append(Problem("format", f"missing; this node reads {SCHEMA_FORMAT!r}"))
        elif type(fmt) is not str or fmt != SCHEMA_FORMAT:
            problems.append(
                Problem(
                    "format", f"{shown(fmt)} is not a format this node reads ({SCHEMA_FORMAT!r})"
                )
            )
        body = {k: v for k, v in data.items() if k != "format"}
        schema = _record_from_wire(cls, body, "", problems)
        if problems or schema is None:
            raise SchemaError(task, problems)
        return schema

    def to_json_schema(self) -> dict[str, Any]:
        """The job inputs as a JSON Schema (2020-12) object, for the HTTP API and OpenAPI."""
        required = [i.name for i in self.inputs if i.required]
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.title,
            "description": self.description,
            "type": "object",
            "properties": {i.name: i.json_schema() for i in self.inputs},
            "required": required,
            "additionalProperties": False,
            "x-lightbox-task": self.name,
            "x-lightbox-version": self.version,
            "x-lightbox-format": SCHEMA_FORMAT,
            "x-lightbox-groups": [g.to_wire() for g in self.groups],
            "x-lightbox-constraints": [c.to_wire() for c in self.constraints],
            "x-lightbox-outputs": [o.to_wire() for o in self.outputs],
            "x-lightbox-cost": self.cost.to_wire(),
        }

    # -- checks -----------------------------------------------------------------------------

    def _definition_problems(self) -> list[Problem]:
        problems: list[Problem] = []
        if not _is_slug(self.name):
            problems.append(Problem("name", "must be a slug: a-z, then a-z 0-9 _ (64 at most)"))
        for key, limit, empty in (("title", MAX_LABEL, False), ("description", MAX_HELP, True)):
            why = _check_text_field(getattr(self, key), allow_empty=empty, limit=limit)
            if why:
                problems.append(Problem(key, why))
        if not _is_int(self.version) or not 1 <= self.version <= _INT64_MAX:
            problems.append(Problem("version", "must be a positive integer"))
        problems.extend(self._group_problems())
        problems.extend(self._input_problems())
        problems.extend(self._output_problems())
        if problems:
            return problems  # rules and costs read the inputs; check them only once those are sound
        for index, constraint in enumerate(self.constraints):
            if not isinstance(constraint, Constraint):
                problems.append(Problem(f"constraints[{index}]", "must be a constraint"))
                continue
            for p in constraint.problems(self):
                problems.append(Problem(f"constraints[{index}].{p.field}", p.message))
        if not isinstance(self.cost, Cost):
            problems.append(Problem("cost", "must be a cost formula"))
        else:
            problems.extend(Problem(f"cost.{p.field}", p.message) for p in self.cost.problems(self))
        return problems

    def _group_problems(self) -> list[Problem]:
        if type(self.groups) is not tuple or not 1 <= len(self.groups) <= 32:
            return [Problem("groups", "must list 1 to 32 groups")]
        problems = []
        seen = set()
        for index, group in enumerate(self.groups):
            if not isinstance(group, Group) or not _is_slug(group.name):
                problems.append(Problem(f"groups[{index}]", "must be a group with a slug name"))
                continue
            if group.name in seen:
                problems.append(Problem(f"groups.{group.name}", "duplicate group name"))
            seen.add(group.name)
            why = _check_text_field(group.label, allow_empty=False, limit=MAX_LABEL)
            if why:
                problems.append(Problem(f"groups.{group.name}.label", why))
        return problems

    def _input_problems(self) -> list[Problem]:
        if type(self.inputs) is not tuple or len(self.inputs) > MAX_INPUTS:
            return [Problem("inputs", f"must list at most {MAX_INPUTS} inputs")]
        problems = []
        seen = set()
        groups = {g.name for g in self.groups if isinstance(g, Group)}
        for index, spec in enumerate(self.inputs):
            if not isinstance(spec, Input) or type(spec) is Input:
                problems.append(Problem(f"inputs[{index}]", "must be an input of a known type"))
                continue
            where = f"inputs.{spec.name}" if _is_slug(spec.name) else f"inputs[{index}]"
            if spec.name in seen:
                problems.append(Problem(where, "duplicate input name"))
            seen.add(spec.name)
            own = spec.definition_problems()
            problems.extend(Problem(f"{where}.{p.field}", p.message) for p in own)
            if _is_slug(spec.group) and spec.group not in groups:
                problems.append(
                    Problem(
                        f"{where}.group",
                        f"unknown group {spec.group!r}; declared: {', '.join(sorted(groups))}",
                    )
                )
            if (
                type(spec) is MaskInput
                and _is_slug(spec.image)
                and type(self._by_name.get(spec.image)) is not ImageInput
            ):
                problems.append(
                    Problem(f"{where}.image", f"{spec.image!r} is not an image input of this task")
                )
        return problems

    def _output_problems(self) -> list[Problem]:
        if type(self.outputs) is not tuple or not 1 <= len(self.outputs) <= 16:
            return [Problem("outputs", "must list 1 to 16 outputs")]
        problems = []
        seen = set()
        for index, output in enumerate(self.outputs):
            if not isinstance(output, Output) or not _is_slug(output.name):
                problems.append(Problem(f"outputs[{index}]", "must be an output with a slug name"))
                continue
            where = f"outputs.{output.name}"
            if output.name in seen:
                problems.append(Problem(where, "duplicate output name"))
            seen.add(output.name)
            if type(output.type) is not str or output.type not in OUTPUT_TYPES:
                problems.append(
                    Problem(
                        f"{where}.type",
                        f"unknown output type {shown(output.type)}; "
                        f"known: {', '.join(OUTPUT_TYPES)}",
                    )
                )
            why = _check_text_field(output.description, allow_empty=True, limit=MAX_HELP)
            if why:
                problems.append(Problem(f"{where}.description", why))
            if type(output.media_type) is not str or (
                output.media_type and not _MEDIA_TYPE.fullmatch(output.media_type)
            ):
                problems.append(Problem(f"{where}.media_type", "must be empty or a media type"))
        return problems


# -- strict reading of wire values ----------------------------------------------------------


def _parse_scalar(value: Any) -> Any:
    if value is None or type(value) is bool:
        return value
    if type(value) is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else _BAD
    if type(value) is float:
        return value if math.isfinite(value) else _BAD
    if type(value) is str:
        return value if len(value) <= MAX_TEXT_LENGTH else _BAD
    return _BAD


def _parse_term(value: Any, where: str, problems: list[Problem]) -> Any:
    if type(value) is list:
        if not 1 <= len(value) <= 16:
            problems.append(Problem(where, "a sum lists 1 to 16 terms"))
            return _BAD
        parts = [_parse_term_atom(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return _BAD if _BAD in parts else tuple(parts)
    return _parse_term_atom(value, where, problems)


def _parse_term_atom(value: Any, where: str, problems: list[Problem]) -> Any:
    if type(value) is str and len(value) <= 200:
        return value
    if _is_number(value) and (type(value) is float or _INT64_MIN <= value <= _INT64_MAX):
        return value
    problems.append(Problem(where, "must be an input reference, a number, or a list of those"))
    return _BAD


def _in_int64(value: object) -> bool:
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def _is_wire_number(value: object) -> bool:
    return (type(value) is float and math.isfinite(value)) or _in_int64(value)


_PLAIN_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: type(v) is str and len(v) <= MAX_TEXT_LENGTH, "text"),
    "bool": (lambda v: type(v) is bool, "true or false"),
    "int": (_in_int64, "an integer"),
    "int?": (lambda v: v is None or _in_int64(v), "an integer or null"),
    "num": (_is_wire_number, "a finite number"),
    "num?": (lambda v: v is None or _is_wire_number(v), "a finite number or null"),
    "choice_value": (
        lambda v: (type(v) is str and len(v) <= MAX_LABEL) or _in_int64(v),
        "text or an integer",
    ),
}
"""Wire kinds that are one plain value: the test, and what to call it in a problem."""

_ItemParser = Callable[[Any, str, list[Problem]], Any]

_LIST_KINDS: dict[str, tuple[_ItemParser, int]] = {
    "strs": (lambda v, where, problems: _parse("str", v, where, problems), 64),
    "terms": (_parse_term, 16),
    "options": (lambda v, where, problems: _record_from_wire(Choice, v, where, problems), 256),
    "groups": (lambda v, where, problems: _record_from_wire(Group, v, where, problems), 32),
    "outputs": (lambda v, where, problems: _record_from_wire(Output, v, where, problems), 16),
    "inputs": (lambda v, where, problems: _input_from_wire(v, where, problems), MAX_INPUTS),
    "constraints": (
        lambda v, where, problems: _variant_from_wire(CONSTRAINT_KINDS, "kind", v, where, problems),
        32,
    ),
}
"""Wire kinds that are lists: how each item is read, and how many items at most."""


def _parse(kind: str, value: Any, where: str, problems: list[Problem]) -> Any:
    """One wire value of the given kind, or _BAD (or None for a record) after recording why."""
    if kind in _PLAIN_KINDS:
        test, wanted = _PLAIN_KINDS[kind]
        if test(value):
            return value
        problems.append(Problem(where, f"must be {wanted}, not {_type_name(value)}"))
        return _BAD
    if kind in _LIST_KINDS:
        parse_item, limit = _LIST_KINDS[kind]
        if type(value) is not list:
            problems.append(Problem(where, f"must be a list, not {_type_name(value)}"))
            return _BAD
        if len(value) > limit:
            problems.append(Problem(where, f"must list at most {limit} entries"))
            return _BAD
        items = [parse_item(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
        return _BAD if any(item is _BAD or item is None for item in items) else tuple(items)
    if kind == "scalar?":
        parsed = _parse_scalar(value)
        if parsed is _BAD:
            problems.append(Problem(where, f"must be a plain value, not {_type_name(value)}"))
        return parsed
    if kind == "term":
        return _parse_term(value, where, problems)
    if kind == "term?":
        return None if value is None else _parse_term(value, where, problems)
    if kind == "cost":
        return _variant_from_wire(COST_KINDS, "kind", value, where, problems)
    raise AssertionError(f"no wire parser for {kind!r}")


def _input_from_wire(value: Any, where: str, problems: list[Problem]) -> Input | None:
    """An input of any type; named by its name in problems when that much is readable."""
    name = value.get("name") if type(value) is dict else None
    if _is_slug(name):
        where = f"inputs.{name}"
    found = _variant_from_wire(INPUT_TYPES, "type", value, where, problems)
    return found if isinstance(found, Input) else None


def _variant_from_wire(
    registry: Mapping[str, type[_Record]],
    tag_key: str,
    value: Any,
    where: str,
    problems: list[Problem],
) -> Any:
    if type(value) is not dict:
        problems.append(Problem(where, f"must be a map, not {_type_name(value)}"))
        return None
    tag = value.get(tag_key)
    if type(tag) is not str or tag not in registry:
        problems.append(
            Problem(
                f"{where}.{tag_key}",
                f"unknown {tag_key} {shown(tag)}; known: {', '.join(registry)}",
            )
        )
        return None
    return _record_from_wire(registry[tag], value, where, problems)


def _record_from_wire(cls: type[Any], data: Any, where: str, problems: list[Problem]) -> Any:
    """Build `cls` from a map whose keys must all be known; None after recording problems."""
    prefix = f"{where}." if where else ""
    if type(data) is not dict:
        problems.append(Problem(where, f"must be a map, not {_type_name(data)}"))
        return None
    specs = {f.name: f for f in fields(cls) if f.init}
    allowed = set(specs)
    if cls._tag_key is not None:
        allowed.add(cls._tag_key)
    before = len(problems)
    for key in data:
        if type(key) is not str or key not in allowed:
            problems.append(
                Problem(
                    prefix + key if type(key) is str and len(key) <= 64 else where,
                    f"unknown key {shown(key)}; allowed: {', '.join(sorted(allowed))}",
                )
            )
    kwargs = {}
    for key, spec in specs.items():
        if key in data:
            parsed = _parse(spec.metadata["wire"], data[key], prefix + key, problems)
            if parsed is not _BAD:
                kwargs[spec.name] = parsed
        elif spec.default is dataclasses.MISSING:
            problems.append(Problem(prefix + key, "missing"))
    if len(problems) > before:
        return None
    return cls(**kwargs)  # a TaskSchema checks its meaning here and raises SchemaError


def schemas_by_name(schemas: Iterable[TaskSchema]) -> dict[str, TaskSchema]:
    """Index schemas by task name, refusing two with one name."""
    out: dict[str, TaskSchema] = {}
    for schema in schemas:
        if schema.name in out:
            raise SchemaError(schema.name, [Problem("name", "two schemas share this task name")])
        out[schema.name] = schema
    return out


__all__ = [
    "CONSTRAINT_KINDS",
    "COST_KINDS",
    "IMAGE_FORMATS",
    "INPUT_TYPES",
    "OUTPUT_TYPES",
    "RANDOM_SEED",
    "SCHEMA_FORMAT",
    "SEED_MAX",
    "TEXT_FORMATS",
    "AnyPositive",
    "BooleanInput",
    "Choice",
    "ChoiceInput",
    "Constraint",
    "Cost",
    "FixedCost",
    "Group",
    "ImageInput",
    "ImageListInput",
    "Input",
    "IntegerInput",
    "MaskInput",
    "NumberInput",
    "Output",
    "PixelStepsCost",
    "ProductCost",
    "RequiredIf",
    "SeedInput",
    "SumAtMost",
    "TaskSchema",
    "Term",
    "TextInput",
    "resolve_term",
    "schemas_by_name",
]
