"""The model catalog: which models serve which tasks, where their weights are, and whether
this machine can load them.

One TOML file per model (see `models/README.md`), read strictly: an unknown key, a wrong type,
an unknown task or pipeline, or weights that name none or several of `path`, `file` and `hub`
is a `CatalogError` naming the file, the key and what is allowed. `Catalog.availability` then
says, for one machine, whether a model's weights are here (a diffusers folder with its
`model_index.json`, a single file whose SHA-256 matches) or exactly why not, so a GPU host
serves what it can load and explains what it cannot.

Synchronous file I/O (hashing a checkpoint reads gigabytes): the trio shell calls
`availability` through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from lightbox_node.tasks.builtin import BUILTIN_TASKS
from lightbox_node.tasks.errors import CatalogError, SchemaError, shown
from lightbox_node.tasks.schema import TaskSchema

HASH_CHUNK_SIZE = 1 << 20
"""How much of a checkpoint is read at a time while hashing it, so it never sits in memory."""

PLACEHOLDERS = ("data_dir", "catalog_dir")
"""`${data_dir}` is the node's data folder; `${catalog_dir}` the folder of the TOML file."""

_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_HF_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REMBG_MODEL = re.compile(r"rembg:[a-z0-9_-]{1,64}")
_HTTPS_URL = re.compile(r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~%/+-]*)?")

_KEYS = {
    "id": "the model id, equal to the file name without .toml",
    "title": "a name for people",
    "description": "what the model is good at",
    "tasks": "the built-in tasks it serves",
    "pipeline": "how it is run",
    "weights": "a table with one of path, file or hub (and sha256 with file)",
    "license": "the weights' license (an SPDX id or its name)",
    "license_url": "where the license text is",
    "defaults": "default inputs: name = value, or a [defaults.<task>] table",
}
_REQUIRED_KEYS = ("id", "title", "tasks", "pipeline", "weights", "license")
_WEIGHT_SOURCES = ("path", "file", "hub")


@dataclass(frozen=True, slots=True)
class PipelineKind:
    """A way of running models: the tasks it can do and how its weights look on disk."""

    name: str
    tasks: frozenset[str]
    folder_markers: tuple[str, ...]
    """Glob patterns; a weights folder is complete when one of them matches a file in it."""
    file_suffixes: tuple[str, ...]
    hub_forms: tuple[Literal["hf", "rembg", "https"], ...]


_DIFFUSERS_FILES = (".safetensors", ".ckpt")

PIPELINES: Mapping[str, PipelineKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            PipelineKind(
                "stable-diffusion",
                frozenset({"txt2img", "img2img", "finetune"}),
                ("model_index.json",),
                _DIFFUSERS_FILES,
                ("hf",),
            ),
            PipelineKind(
                "stable-diffusion-inpaint",
                frozenset({"inpaint", "outpaint"}),
                ("model_index.json",),
                _DIFFUSERS_FILES,
                ("hf",),
            ),
            PipelineKind(
                "instruct-pix2pix",
                frozenset({"instruct_edit"}),
                ("model_index.json",),
                _DIFFUSERS_FILES,
                ("hf",),
            ),
            PipelineKind(
                "rembg",
                frozenset({"remove_background"}),
                ("*.onnx",),
                (".onnx",),
                ("rembg", "hf", "https"),
            ),
            PipelineKind(
                "realesrgan",
                frozenset({"upscale"}),
                ("*.pth", "*.safetensors"),
                (".pth", ".safetensors"),
                ("hf", "https"),
            ),
        )
    }
)
"""Every pipeline kind a catalog entry may name; the GPU host has a runner for each."""


# -- entries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weights:
    """Where a model's weights are: a local folder, a single local file, or a hub id.

    `location` is kept as written, placeholders and all; `resolve` expands it for a machine.
    """

    source: Literal["path", "file", "hub"]
    location: str
    sha256: str | None = None

    def resolve(self, *, data_dir: Path, catalog_dir: Path) -> Path:
        """The local path of `path` or `file` weights on this machine."""
        if self.source == "hub":
            raise ValueError("hub weights have no local path")
        places = {"data_dir": str(data_dir), "catalog_dir": str(catalog_dir)}
        expanded = _PLACEHOLDER.sub(lambda m: places[m.group(1)], self.location)
        return Path(expanded).expanduser()


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One catalog file, checked: a model, the tasks it serves, its weights and defaults."""

    id: str
    title: str
    tasks: tuple[str, ...]
    pipeline: str
    weights: Weights
    license: str
    description: str = ""
    license_url: str = ""
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per task served: input name → default, after merging flat and per-task tables."""
    source_file: Path | None = None

    def defaults_for(self, task: str) -> dict[str, Any]:
        return dict(self.defaults.get(task, {}))

    def to_wire(self) -> dict[str, Any]:
        """What a host may tell the network about the model: never its local paths."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "tasks": list(self.tasks),
            "pipeline": self.pipeline,
            "license": self.license,
            "license_url": self.license_url,
            "hub": self.weights.location if self.weights.source == "hub" else None,
            "sha256": self.weights.sha256,
            "defaults": {task: dict(values) for task, values in self.defaults.items()},
        }


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether one machine can load a model, and why or why not, in words a person can act on.

    `local`: the weights are on disk and check out. `downloadable`: only a hub id, and this
    machine may download. `unavailable`: see `reason`.
    """

    model: str
    state: Literal["local", "downloadable", "unavailable"]
    reason: str
    location: str = ""

    @property
    def servable(self) -> bool:
        return self.state != "unavailable"


# -- the catalog ----------------------------------------------------------------------------


class Catalog(Mapping[str, ModelEntry]):
    """All model entries by id, with the task schemas they serve and their availability."""

    def __init__(
        self, models: Iterable[ModelEntry], *, tasks: Mapping[str, TaskSchema] = BUILTIN_TASKS
    ) -> None:
        self._tasks = tasks
        self._models: dict[str, ModelEntry] = {}
        for entry in models:
            if entry.id in self._models:
                raise CatalogError(
                    str(entry.source_file or "catalog"),
                    "id",
                    f"model id {entry.id!r} is used twice",
                )
            self._models[entry.id] = entry
        self._checksums: dict[tuple[str, int, int, int], str] = {}

    def __getitem__(self, model_id: str) -> ModelEntry:
        return self._models[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._models))

    def __len__(self) -> int:
        return len(self._models)

    def for_task(self, task: str) -> tuple[ModelEntry, ...]:
        """The models that serve `task`, by id."""
        return tuple(self._models[m] for m in self if task in self._models[m].tasks)

    def schema_for(self, model_id: str, task: str) -> TaskSchema:
        """`task`'s schema with the model's defaults, as a host running that model advertises it."""
        entry = self._models[model_id]
        if task not in entry.tasks:
            raise KeyError(f"model {model_id!r} does not serve task {task!r}")
        return self._tasks[task].with_defaults(entry.defaults_for(task))

    def availability(
        self,
        model: str | ModelEntry,
        data_dir: Path,
        *,
        allow_downloads: bool = False,
        hub_cache: Path | None = None,
    ) -> Availability:
        """Whether this machine can load `model`'s weights, and if not, why not.

        `data_dir` expands `${data_dir}` in paths. `hub_cache` is a Hugging Face hub cache
        folder; a hub model already in it counts as local, even with downloads disabled.
        """
        entry = model if isinstance(model, ModelEntry) else self._models[model]
        weights = entry.weights
        kind = PIPELINES[entry.pipeline]
        if weights.source == "hub":
            return self._hub_availability(entry, kind, allow_downloads, hub_cache)
        catalog_dir = entry.source_file.parent if entry.source_file else Path.cwd()
        place = weights.resolve(data_dir=data_dir, catalog_dir=catalog_dir)
        if weights.source == "path":
            return _folder_availability(entry.id, place, kind)
        return self._file_availability(entry.id, place, weights.sha256)

    def survey(
        self, data_dir: Path, *, allow_downloads: bool = False, hub_cache: Path | None = None
    ) -> dict[str, Availability]:
        """The availability of every model, by id."""
        return {
            model_id: self.availability(
                model_id, data_dir, allow_downloads=allow_downloads, hub_cache=hub_cache
            )
            for model_id in self
        }

    def _hub_availability(
        self, entry: ModelEntry, kind: PipelineKind, allow_downloads: bool, hub_cache: Path | None
    ) -> Availability:
        hub = entry.weights.location
        if hub_cache is not None and _HF_REPO.fullmatch(hub):
            snapshots = hub_cache / ("models--" + hub.replace("/", "--")) / "snapshots"
            if snapshots.is_dir():
                for snapshot in sorted(snapshots.iterdir()):
                    if snapshot.is_dir() and _has_marker(snapshot, kind):
                        return Availability(
                            entry.id, "local", f"found {hub} in the hub cache", str(snapshot)
                        )
        if allow_downloads:
            return Availability(entry.id, "downloadable", f"will download {hub} on first use", hub)
        return Availability(
            entry.id,
            "unavailable",
            f"hub id only ({hub}) and downloads are disabled; download the weights and point "
            "a catalog entry's weights.path or weights.file at them, or allow downloads",
            hub,
        )

    def _file_availability(self, model_id: str, place: Path, sha256: str | None) -> Availability:
        if not place.exists():
            return Availability(
                model_id, "unavailable", f"weights file {place} missing", str(place)
            )
        if not place.is_file():
            return Availability(
                model_id,
                "unavailable",
                f"weights file {place} is not a file (a folder is given with weights.path)",
                str(place),
            )
        if sha256 is not None:
            try:
                actual = self._sha256_of(place)
            except OSError as exc:
                return Availability(
                    model_id, "unavailable", f"weights file {place} unreadable: {exc}", str(place)
                )
            if actual != sha256:
                return Availability(
                    model_id,
                    "unavailable",
                    f"checksum mismatch for {place}: expected {sha256}, got {actual}; the file "
                    "is damaged or another version",
                    str(place),
                )
            return Availability(model_id, "local", f"weights file {place}, checksum ok", str(place))
        return Availability(model_id, "local", f"weights file {place}", str(place))

    def _sha256_of(self, place: Path) -> str:
        """Streamed SHA-256, remembered per (path, size, mtime, inode) so it is paid once."""
        stat = place.stat()
        key = (str(place.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key not in self._checksums:
            digest = hashlib.sha256()
            with place.open("rb") as handle:
                while chunk := handle.read(HASH_CHUNK_SIZE):
                    digest.update(chunk)
            self._checksums[key] = digest.hexdigest()
        return self._checksums[key]


def _has_marker(folder: Path, kind: PipelineKind) -> bool:
    return any(match.is_file() for pattern in kind.folder_markers for match in folder.glob(pattern))


def _folder_availability(model_id: str, place: Path, kind: PipelineKind) -> Availability:
    if not place.exists():
        return Availability(model_id, "unavailable", f"weights folder {place} missing", str(place))
    if not place.is_dir():
        return Availability(
            model_id,
            "unavailable",
            f"weights folder {place} is not a folder (a single file is given with weights.file)",
            str(place),
        )
    if not _has_marker(folder := place, kind):
        wanted = " or ".join(kind.folder_markers)
        return Availability(
            model_id,
            "unavailable",
            f"weights folder {folder} has no {wanted}; it is incomplete or not a {kind.name} model",
            str(place),
        )
    return Availability(model_id, "local", f"weights folder {place}", str(place))


# -- loading --------------------------------------------------------------------------------


def bundled_catalog_dir() -> Path:
    """The bundled catalog: the `models/` folder, installed as `lightbox_node.models`."""
    return Path(str(importlib.resources.files("lightbox_node.models")))


def load_catalog(
    folder: Path | None = None, *, tasks: Mapping[str, TaskSchema] = BUILTIN_TASKS
) -> Catalog:
    """Read every `*.toml` file in `folder` (default: the bundled catalog), strictly."""
    folder = bundled_catalog_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        raise CatalogError(str(folder), "", "catalog folder missing; set models_dir to a folder")
    return Catalog(
        (load_model_file(p, tasks=tasks) for p in sorted(folder.glob("*.toml"))), tasks=tasks
    )


def load_model_file(path: Path, *, tasks: Mapping[str, TaskSchema] = BUILTIN_TASKS) -> ModelEntry:
    """Read and check one catalog file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(str(path), "", f"cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(str(path), "", f"is not valid TOML: {exc}") from None
    return parse_model(data, file=path, tasks=tasks)


def parse_model(
    data: Mapping[str, Any], *, file: Path, tasks: Mapping[str, TaskSchema] = BUILTIN_TASKS
) -> ModelEntry:
    """Check one catalog entry's table; `file` names it in errors and anchors `${catalog_dir}`."""
    name = str(file)

    def fail(key: str, message: str) -> CatalogError:
        return CatalogError(name, key, message)

    for key in data:
        if key == "sha256":
            raise fail(key, "belongs in the [weights] table, next to file")
        if key not in _KEYS:
            allowed = "; ".join(f"{k} ({why})" for k, why in _KEYS.items())
            raise fail(key, f"unknown key; allowed keys: {allowed}")
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise fail(key, f"missing; every model needs {', '.join(_REQUIRED_KEYS)}")

    model_id = _text(data, "id", fail)
    if not _MODEL_ID.fullmatch(model_id):
        raise fail("id", "must be 1-64 chars of a-z 0-9 . _ -, starting with a letter or digit")
    if model_id != file.stem:
        raise fail("id", f"{model_id!r} must equal the file name {file.stem!r} (without .toml)")
    title = _text(data, "title", fail)
    description = _text(data, "description", fail, default="", empty_ok=True)
    license_name = _text(data, "license", fail)
    license_url = _text(data, "license_url", fail, default="", empty_ok=True)
    if license_url and not _HTTPS_URL.fullmatch(license_url):
        raise fail("license_url", "must be an https:// address")

    pipeline_name = _text(data, "pipeline", fail)
    if pipeline_name not in PIPELINES:
        raise fail("pipeline", f"unknown pipeline {pipeline_name!r}; known: {', '.join(PIPELINES)}")
    kind = PIPELINES[pipeline_name]

    served = data["tasks"]
    if type(served) is not list or not served or any(type(t) is not str for t in served):
        raise fail("tasks", "must be a non-empty list of task names")
    if len(set(served)) != len(served):
        raise fail("tasks", "lists a task twice")
    for task in served:
        if task not in tasks:
            raise fail("tasks", f"unknown task {task!r}; known tasks: {', '.join(tasks)}")
        if task not in kind.tasks:
            raise fail(
                "tasks",
                f"pipeline {pipeline_name!r} cannot run task {task!r}; it runs: "
                f"{', '.join(sorted(kind.tasks))}",
            )

    weights = _parse_weights(data["weights"], kind, fail)
    defaults = _parse_defaults(data.get("defaults", {}), tuple(served), tasks, fail)
    return ModelEntry(
        id=model_id,
        title=title,
        tasks=tuple(served),
        pipeline=pipeline_name,
        weights=weights,
        license=license_name,
        description=description,
        license_url=license_url,
        defaults=MappingProxyType(defaults),
        source_file=file,
    )


def _text(
    data: Mapping[str, Any],
    key: str,
    fail: Any,
    *,
    default: str | None = None,
    empty_ok: bool = False,
) -> str:
    value = data.get(key, default)
    if type(value) is not str:
        raise fail(key, f"must be text (a quoted string), not {type(value).__name__}")
    if not value.strip() and not empty_ok:
        raise fail(key, "must not be empty")
    if len(value) > 4000:
        raise fail(key, "must be at most 4000 characters")
    return value


def _parse_weights(table: Any, kind: PipelineKind, fail: Any) -> Weights:
    if type(table) is not dict:
        raise fail("weights", "must be a table: [weights] with one of path, file or hub")
    for key in table:
        if key not in (*_WEIGHT_SOURCES, "sha256"):
            raise fail(f"weights.{key}", "unknown key; allowed: path, file, hub, sha256")
    given = [key for key in _WEIGHT_SOURCES if key in table]
    if len(given) != 1:
        which = "none" if not given else " and ".join(given)
        raise fail(
            "weights",
            f"gives {which}; give exactly one of path (a local folder), file (a single-file "
            "checkpoint) or hub (an id to download from)",
        )
    source = given[0]
    key = f"weights.{source}"
    location = table[source]
    if type(location) is not str or not location.strip():
        raise fail(key, "must be non-empty text")
    sha256 = table.get("sha256")
    if sha256 is not None:
        if source != "file":
            raise fail("weights.sha256", "only a single file (weights.file) has a checksum here")
        if type(sha256) is not str or not _SHA256.fullmatch(sha256):
            raise fail("weights.sha256", "must be 64 lowercase hex digits (sha256sum's output)")

    if source == "hub":
        forms = {
            "hf": _HF_REPO.fullmatch(location),
            "rembg": _REMBG_MODEL.fullmatch(location),
            "https": _HTTPS_URL.fullmatch(location),
        }
        if not any(forms[form] for form in kind.hub_forms):
            described = {
                "hf": "a Hugging Face repo id 'org/name'",
                "rembg": "'rembg:<model>' for rembg's own downloader",
                "https": "an https:// address of the weights file",
            }
            allowed = "; or ".join(described[form] for form in kind.hub_forms)
            raise fail(key, f"{shown(location)} is not a hub id {kind.name} can use: {allowed}")
        if forms["https"] and not location.endswith(kind.file_suffixes):
            raise fail(key, f"must end in {' or '.join(kind.file_suffixes)}")
        return Weights("hub", location)

    for placeholder in _PLACEHOLDER.findall(location):
        if placeholder not in PLACEHOLDERS:
            raise fail(
                key,
                f"unknown placeholder ${{{placeholder}}}; known: "
                + ", ".join(f"${{{p}}}" for p in PLACEHOLDERS),
            )
    if "$" in _PLACEHOLDER.sub("", location):
        raise fail(key, "a $ is only allowed in ${data_dir} or ${catalog_dir}")
    if not location.startswith(("${data_dir}", "${catalog_dir}", "~", "/")):
        raise fail(
            key,
            "must be absolute: start with ${data_dir}, ${catalog_dir}, ~ or /, so it does not "
            "depend on the folder the node was started in",
        )
    if source == "file" and not location.endswith(kind.file_suffixes):
        raise fail(key, f"a {kind.name} checkpoint file ends in {' or '.join(kind.file_suffixes)}")
    return Weights(source, location, sha256)


def _parse_defaults(
    table: Any, served: tuple[str, ...], tasks: Mapping[str, TaskSchema], fail: Any
) -> dict[str, dict[str, Any]]:
    """Flat `name = value` applies to every served task with that input; `[defaults.<task>]`
    sets one task's, and wins over a flat value."""
    if type(table) is not dict:
        raise fail("defaults", "must be a table of input name = default value")
    flat: dict[str, dict[str, Any]] = {task: {} for task in served}
    specific: dict[str, dict[str, Any]] = {task: {} for task in served}
    origin: dict[tuple[str, str], str] = {}
    for key, value in table.items():
        if key in served:
            if type(value) is not dict:
                raise fail(f"defaults.{key}", "a task's defaults are a table: [defaults.<task>]")
            for name, default in value.items():
                if tasks[key].input(name) is None:
                    raise fail(
                        f"defaults.{key}.{name}",
                        f"task {key!r} has no input {name!r}; its inputs: "
                        f"{', '.join(tasks[key].input_names)}",
                    )
                specific[key][name] = default
                origin[key, name] = f"defaults.{key}.{name}"
        elif key in tasks:
            raise fail(f"defaults.{key}", f"this model does not serve task {key!r}")
        else:
            having = [task for task in served if tasks[task].input(key) is not None]
            if not having:
                raise fail(
                    f"defaults.{key}",
                    f"no task of this model ({', '.join(served)}) has an input {key!r}",
                )
            for task in having:
                flat[task][key] = value
                origin.setdefault((task, key), f"defaults.{key}")
    merged = {task: {**flat[task], **specific[task]} for task in served}
    for task, values in merged.items():
        for name, value in values.items():
            try:
                tasks[task].with_defaults({name: value})
            except SchemaError as exc:
                detail = "; ".join(p.message for p in exc.problems)
                raise fail(
                    origin[task, name],
                    f"{shown(value)} is not a valid default for {task}.{name}: {detail}",
                ) from None
    return {task: values for task, values in merged.items() if values}


__all__ = [
    "PIPELINES",
    "PLACEHOLDERS",
    "Availability",
    "Catalog",
    "ModelEntry",
    "PipelineKind",
    "Weights",
    "bundled_catalog_dir",
    "load_catalog",
    "load_model_file",
    "parse_model",
]
