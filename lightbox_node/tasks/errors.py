"""The errors of the generalisation layer: bad task schemas, bad job inputs, a bad catalog.

Each carries its problems as data as well as in its message, so the HTTP API and the editor
can show every problem next to the field it is about instead of one sentence at the top.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from lightbox_node.errors import LightboxError

_SHOWN_CHARS = 80


def shown(value: object) -> str:
    """A bounded repr of untrusted input, so that no error message can be made huge."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


class Problem(NamedTuple):
    """One thing wrong with one field; `field` is "" when the problem is about the whole."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SchemaError(LightboxError):
    """A task schema is malformed: unknown key, wrong type, impossible bounds, bad default.

    `task` is the task's name ("?" when even that is unreadable) and `problems` names each
    field, e.g. `inputs.steps.default`.
    """

    def __init__(self, task: str, problems: Iterable[Problem | tuple[str, str]]) -> None:
        self.task = task
        self.problems = tuple(Problem(*p) for p in problems)
        listed = "; ".join(str(p) for p in self.problems) or "no details"
        super().__init__(f"task schema {task!r} is invalid: {listed}")


class InvalidJobInput(LightboxError):
    """A job's inputs do not satisfy its task's schema; `problems` lists every one of them."""

    def __init__(self, task: str, problems: Iterable[Problem | tuple[str, str]]) -> None:
        self.task = task
        self.problems = tuple(Problem(*p) for p in problems)
        count = len(self.problems)
        listed = "; ".join(str(p) for p in self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} with the inputs for task "
            f"{task!r}: {listed}"
        )

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields with problems, in the order found (a field may appear once per problem)."""
        return tuple(p.field for p in self.problems)

    def to_wire(self) -> list[dict[str, str]]:
        """The problems as plain values for an HTTP error body or a job-rejected message."""
        return [{"field": p.field, "message": p.message} for p in self.problems]


class CatalogError(LightboxError):
    """A model catalog file is unreadable or has an unknown key or a bad value.

    `file` is the TOML file and `key` the dotted key at fault ("" for the file as a whole).
    """

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")


__all__ = ["CatalogError", "InvalidJobInput", "Problem", "SchemaError", "shown"]
