"""The generalisation layer in the terminal: a form generated from a task's schema.

`TaskForm.build(schema)` lays out one field per input, grouped and ordered as the schema
says (advanced inputs folded away), with the input's label, unit, help and default. A text
input in the registry's concept-name format suggests the registry's concepts as it is typed
(`TaskForm.set_concepts`) and says what the typed concept is.
`TaskForm.collect()` turns what was typed into the job's inputs, reading image files into
the data URLs the API takes, and says per field what is wrong before the node is asked.
The form knows input types, never particular models or tasks.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightbox_node.tui.client import image_data_url
from lightbox_node.tui.models import ConceptModel, InputSpec, TaskSchema
from lightbox_node.tui.tables import model_summary
from textual import on
from textual.containers import Vertical
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Label, Select, Static, Switch, TextArea

SEED_MAX = 2**32 - 1
RANDOM_SEED = "random"
IMAGE_TYPES = ("image", "mask")
IMAGE_MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
IMAGE_MEDIA[".webp"] = "image/webp"
MAX_IMAGE_BYTES = 32 * 1024 * 1024
TEXT_FORMATS = {
    "concept": (
        re.compile(r"[a-z0-9][a-z0-9._-]{0,127}"),
        "a concept name: 1 to 128 of a-z 0-9 . _ - starting with a letter or digit",
    ),
}
"""The named forms a text input may require (its schema's `format`), as the node says them."""
CONCEPTS_LISTED = 6


class FormProblem(Exception):
    """A value that cannot become a job input; the message is shown under its field."""


def field_id(name: str) -> str:
    return f"field-{name}"


def _bounds(spec: InputSpec) -> str:
    low, high = spec.minimum, spec.maximum
    unit = f" {spec.unit}" if spec.unit else ""

    def fmt(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    if low is not None and high is not None:
        return f"{fmt(low)}–{fmt(high)}{unit}"
    if low is not None:
        return f"≥ {fmt(low)}{unit}"
    if high is not None:
        return f"≤ {fmt(high)}{unit}"
    return unit.strip()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def concept_line(typed: str, concepts: Sequence[ConceptModel]) -> str:
    """What the registry knows of the typed concept, or which concepts it has."""
    name = typed.strip()
    known = {c.concept: c for c in concepts}
    if name and name in known:
        c = known[name]
        return f"{name}: {model_summary(c.model_id, c.version, c.pending_count)}"
    if name and not TEXT_FORMATS["concept"][0].fullmatch(name):
        return f"must be {TEXT_FORMATS['concept'][1]}"
    if name:
        return f"{name} is not in the registry yet (a fine-tune makes it)"
    if not concepts:
        return "the registry has no concepts yet"
    names = [c.concept for c in concepts]
    more = f" and {len(names) - CONCEPTS_LISTED} more" if len(names) > CONCEPTS_LISTED else ""
    return "in the registry: " + ", ".join(names[:CONCEPTS_LISTED]) + more


class FormField(Vertical):
    """One input: its label, its editor widget, its help and its problem (if any)."""

    def __init__(self, spec: InputSpec, concepts: Sequence[ConceptModel] = ()) -> None:
        super().__init__(classes=f"form-field form-{spec.type}")
        self.spec = spec
        self.concepts = tuple(concepts)

    @property
    def is_concept(self) -> bool:
        return self.spec.type == "text" and self.spec.format == "concept"

    def compose(self) -> Any:
        spec = self.spec
        title = spec.label + (" *" if spec.required else "")
        hint = _bounds(spec) if spec.type in ("integer", "number") else ""
        yield Label(f"{title}  [dim]{hint}[/]" if hint else title, classes="field-label")
        yield self.editor()
        if self.is_concept:
            yield Static(concept_line(_text(spec.default), self.concepts), classes="field-concepts")
        if spec.help:
            yield Static(spec.help, classes="field-help", markup=False)
        yield Static("", classes="field-problem")

    def editor(self) -> Widget:
        spec = self.spec
        wid = field_id(spec.name)
        if spec.type == "boolean":
            return Switch(value=bool(spec.default), id=wid)
        if spec.type == "choice":
            options = [(c.label, c.value) for c in spec.options]
            values = [c.value for c in spec.options]
            return Select(
                options,
                value=spec.default if spec.default in values else Select.NULL,
                allow_blank=not spec.required or spec.default not in values,
                id=wid,
            )
        if spec.type == "text" and spec.multiline:
            area = TextArea(_text(spec.default), id=wid, soft_wrap=True)
            return area
        if spec.type == "integer":
            return Input(_text(spec.default), placeholder=_bounds(spec), type="integer", id=wid)
        if spec.type == "number":
            return Input(_text(spec.default), placeholder=_bounds(spec), type="number", id=wid)
        if spec.type == "seed":
            return Input(
                _text(spec.default if spec.default is not None else RANDOM_SEED),
                placeholder=f"{RANDOM_SEED}, or 0–{SEED_MAX}",
                id=wid,
            )
        if spec.type in IMAGE_TYPES:
            return Input(placeholder="path to a PNG, JPEG or WebP file", id=wid)
        if spec.type == "image_list":
            return Input(placeholder="image file paths, separated by commas", id=wid)
        if self.is_concept:
            return Input(
                _text(spec.default),
                placeholder=spec.placeholder or "a concept name",
                max_length=spec.max_length or 0,
                suggester=self.suggester(),
                id=wid,
            )
        return Input(
            _text(spec.default),
            placeholder=spec.placeholder,
            max_length=spec.max_length or 0,
            id=wid,
        )

    # -- reading -------------------------------------------------------------------------------

    def raw(self) -> Any:
        widget = self.query_one(f"#{field_id(self.spec.name)}")
        if isinstance(widget, Switch):
            return widget.value
        if isinstance(widget, Select):
            return None if widget.value is Select.NULL else widget.value
        if isinstance(widget, TextArea):
            return widget.text
        assert isinstance(widget, Input)
        return widget.value

    # -- concepts ------------------------------------------------------------------------------

    def suggester(self) -> SuggestFromList | None:
        names = [c.concept for c in self.concepts]
        return SuggestFromList(names, case_sensitive=True) if names else None

    def set_concepts(self, concepts: Sequence[ConceptModel]) -> None:
        """The registry's concepts, offered as the concept is typed."""
        if not self.is_concept or tuple(concepts) == self.concepts:
            return
        self.concepts = tuple(concepts)
        widget = self.query_one(f"#{field_id(self.spec.name)}", Input)
        widget.suggester = self.suggester()
        self.query_one(".field-concepts", Static).update(concept_line(widget.value, concepts))

    @on(Input.Changed)
    def concept_typed(self, event: Input.Changed) -> None:
        if self.is_concept:
            self.query_one(".field-concepts", Static).update(
                concept_line(event.value, self.concepts)
            )

    def show_problem(self, message: str) -> None:
        self.query_one(".field-problem", Static).update(message)
        self.set_class(bool(message), "has-problem")


def convert_value(spec: InputSpec, raw: Any) -> tuple[bool, Any]:
    """(present, value) as the job takes it from what was typed; raises `FormProblem`.

    Reads image files, so it runs in a worker thread.
    """
    if spec.type == "boolean":
        return True, bool(raw)
    if spec.type == "choice":
        if raw is None:
            if spec.required:
                raise FormProblem("choose one")
            return False, None
        return True, raw
    text = str(raw).strip() if spec.type != "text" else str(raw)
    if text.strip() == "":
        if spec.required:
            raise FormProblem("required")
        return False, None
    if spec.type == "integer":
        return True, _checked_number(spec, _parse(int, text, "a whole number"))
    if spec.type == "number":
        return True, _checked_number(spec, _parse(float, text, "a number"))
    if spec.type == "seed":
        if text.lower() == RANDOM_SEED:
            return True, RANDOM_SEED
        seed = _parse(int, text, f"'{RANDOM_SEED}' or a whole number")
        if not 0 <= seed <= SEED_MAX:
            raise FormProblem(f"must be from 0 to {SEED_MAX}")
        return True, seed
    if spec.type in IMAGE_TYPES:
        return True, read_image(text)
    if spec.type == "image_list":
        paths = [p.strip() for p in text.split(",") if p.strip()]
        return True, [read_image(p) for p in paths]
    if spec.max_length is not None and len(text) > spec.max_length:
        raise FormProblem(f"at most {spec.max_length} characters")
    if spec.format in TEXT_FORMATS:
        pattern, described = TEXT_FORMATS[spec.format]
        if not pattern.fullmatch(text):
            raise FormProblem(f"must be {described}")
    return True, text


def _parse(kind: type, text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise FormProblem(f"must be {what}") from None


def _checked_number(spec: InputSpec, value: float) -> float:
    if spec.minimum is not None and value < spec.minimum:
        raise FormProblem(f"must be at least {_text(spec.minimum)}")
    if spec.maximum is not None and value > spec.maximum:
        raise FormProblem(f"must be at most {_text(spec.maximum)}")
    return value


def read_image(path_text: str) -> str:
    """An image file as a data URL; the node checks its format and size."""
    path = Path(path_text).expanduser()
    media = IMAGE_MEDIA.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or ""
    if not media.startswith("image/"):
        raise FormProblem("give a .png, .jpg or .webp file")
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise FormProblem(f"the file is over {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise FormProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    return image_data_url(data, media)


class TaskForm(Vertical):
    """The form of one task; empty until `build`."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.schema: TaskSchema | None = None
        self.concepts: tuple[ConceptModel, ...] = ()

    def set_concepts(self, concepts: Sequence[ConceptModel]) -> None:
        """Offer the registry's concepts in every concept field, now and after `build`."""
        self.concepts = tuple(concepts)
        for field in self.fields:
            field.set_concepts(self.concepts)

    async def build(self, schema: TaskSchema | None) -> None:
        self.schema = schema
        await self.remove_children()
        if schema is None:
            return
        if not schema.inputs:
            await self.mount(Static("This task takes no inputs.", classes="form-empty"))
            return
        widgets: list[Widget] = []
        advanced: list[FormField] = []
        for group, label in schema.groups:
            fields = sorted(
                (i for i in schema.inputs if i.group == group),
                key=lambda i: i.order,
            )
            plain = [FormField(i, self.concepts) for i in fields if not i.advanced]
            advanced += [FormField(i, self.concepts) for i in fields if i.advanced]
            if plain:
                if len(schema.groups) > 1:
                    widgets.append(Label(label, classes="form-group"))
                widgets += plain
        known = {g for g, _ in schema.groups}
        widgets += [
            FormField(i, self.concepts)
            for i in schema.inputs
            if i.group not in known and not i.advanced
        ]
        if advanced:
            widgets.append(Collapsible(*advanced, title="Advanced", collapsed=True))
        await self.mount_all(widgets)

    @property
    def fields(self) -> list[FormField]:
        return list(self.query(FormField))

    def raw_values(self) -> list[tuple[InputSpec, Any]]:
        """What was typed in each field (read on the UI thread; convert with `inputs_from`)."""
        return [(field.spec, field.raw()) for field in self.fields]

    def show_problems(self, problems: dict[str, str]) -> None:
        for field in self.fields:
            field.show_problem(problems.get(field.spec.name, ""))


def problems_by_field(problems: list[dict[str, Any]]) -> dict[str, str]:
    """The node's 422 problems (`field` like `width`, `image.width` or `images[2]`) by input."""
    out: dict[str, str] = {}
    for problem in problems:
        field = str(problem.get("field", ""))
        name = field.split(".", 1)[0].split("[", 1)[0]
        message = str(problem.get("message") or problem.get("detail") or "not accepted")
        out[name] = f"{out[name]}; {message}" if name in out else message
    return out


def inputs_from(raw_values: list[tuple[InputSpec, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(job inputs, problems by input name) from `TaskForm.raw_values()`; reads image files."""
    inputs: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for spec, raw in raw_values:
        try:
            present, value = convert_value(spec, raw)
        except FormProblem as exc:
            problems[spec.name] = str(exc)
            continue
        if present:
            inputs[spec.name] = value
    return inputs, problems
