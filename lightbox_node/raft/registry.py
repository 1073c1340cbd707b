"""The model registry: per concept, the current global model id, its history and metadata.

The state machine that Raft replicates among the registry members. Only small ids travel
through it: models and adapters are content-addressed blobs (`sha256-…`) fetched by id.
It is pure and deterministic: the same committed commands give the same state and the same
answers on every member, so nothing here reads a clock (times come inside commands) or
iterates a set.

Commands (plain maps, validated strictly: exact keys, exact types, bounded sizes)::

    {"op": "submit_adapter", "concept": C, "adapter": BLOB, "weight": W,
     "base": BLOB | None, "at": MS, "metadata": {...}}
        an adapter fine-tuned for concept C (on base model `base`) is offered for merging.
        Submitting the same adapter again is a no-op that answers like the first time.
    {"op": "record_merge", "concept": C, "model": BLOB, "parent": BLOB | None,
     "adapters": [BLOB, ...], "weights": [W, ...], "at": MS, "metadata": {...}}
        the adapters, weighted, were merged on top of `parent` into `model`, which becomes the
        concept's current global model. Only a registry member may record a merge. `parent`
        must be the current model (compare-and-set), so two merges racing cannot both win;
        repeating the merge that produced the current model answers like the first time, so
        a client may retry a write whose outcome it did not learn.
    {"op": "set_metadata", "concept": C, "metadata": {...}, "at": MS}
        set (or, with a null value, remove) metadata keys of the concept. Members only.

`metadata` and `at` are optional where shown; W is a finite number > 0 (int or float);
metadata values are text, numbers, booleans or null. Every command answers
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; a refused command changes nothing.

Queries::

    {"q": "concepts", "after": C, "limit": L}             sorted concept names after C
    {"q": "concept", "concept": C}                        current model, version, metadata,
                                                          adapters not merged yet (or null)
    {"q": "history", "concept": C, "after": N, "limit": L}  events with seq > N, oldest first

`after` and `limit` are optional. An answer always fits in one message: a page holds at most
`limit` items and stops early past `max_answer_bytes` (never empty while items remain), so a
client pages on from the last name or seq it got; a concept lists at most
`max_pending_shown` pending adapters, with their total in `pending_count`.

History events (each with `seq`, its position in the concept's history, and `index`, the
Raft log index that made it)::

    {"kind": "adapter", "adapter", "weight", "base", "by", "at", "metadata", ...}
    {"kind": "merge", "model", "parent", "adapters", "weights", "version", "by", "at", ...}
    {"kind": "metadata", "metadata", "by", "at", ...}

`by` is the authenticated peer id that proposed the command (from the log entry, never
from the command), as text.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from lightbox_node.errors import LightboxError
from lightbox_node.identity import PeerId
from lightbox_node.raft.core import ApplyContext
from lightbox_node.raft.log import SNAPSHOT_LIMITS
from lightbox_node.store.blob_id import BlobId, InvalidBlobId
from lightbox_node.wire import pack

CONCEPT_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
"""Concept names: lowercase, digits, dot, underscore, hyphen; at most 128 characters."""

_SNAPSHOT_VERSION = 1


class InvalidCommand(LightboxError):
    """A registry command or query is malformed; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    """Bounds on what one command may carry and how much history one query returns."""

    max_metadata_keys: int = 32
    max_metadata_key_len: int = 64
    max_metadata_text: int = 1024
    max_adapters_per_merge: int = 256
    max_history_page: int = 1000
    default_history_page: int = 100
    max_answer_bytes: int = 256 << 10
    max_pending_shown: int = 256
    max_concepts: int = 100_000
    max_adapters_per_concept: int = 100_000


DEFAULT_LIMITS = RegistryLimits()


# -- field checks -------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _map(value: Any, required: set[str], optional: set[str], what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise InvalidCommand(f"{what} must be a map, not {type(value).__name__}")
    keys = set(value)
    missing = required - keys
    if missing:
        raise InvalidCommand(f"{what} lacks {', '.join(sorted(missing))}")
    unknown = keys - required - optional
    if unknown:
        names = ", ".join(sorted(_shown(k) for k in unknown))
        raise InvalidCommand(f"{what} has unknown fields: {names}")
    return value


def _concept(value: Any) -> str:
    if type(value) is not str or not CONCEPT_PATTERN.fullmatch(value):
        raise InvalidCommand(
            f"concept must be 1-128 of a-z 0-9 . _ - (starting with a letter or digit), "
            f"not {_shown(value)}"
        )
    return value


def _blob(value: Any, what: str) -> str:
    try:
        return str(BlobId.parse(value))
    except InvalidBlobId as exc:
        raise InvalidCommand(f"{what}: {exc}") from None


def _optional_blob(value: Any, what: str) -> str | None:
    return None if value is None else _blob(value, what)


def _weight(value: Any, what: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise InvalidCommand(f"{what} must be a finite number > 0, not {_shown(value)}")
    return float(value)


def _at(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise InvalidCommand(f"at must be milliseconds since the epoch, not {_shown(value)}")
    return value


def _count(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InvalidCommand(f"{what} must be an integer in [{low}, {high}]")
    return value


def _metadata(value: Any, limits: RegistryLimits, *, allow_null: bool) -> dict[str, Any]:
    if type(value) is not dict:
        raise InvalidCommand("metadata must be a map of text keys")
    if len(value) > limits.max_metadata_keys:
        raise InvalidCommand(f"metadata has over {limits.max_metadata_keys} keys")
    clean: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str or not 0 < len(key) <= limits.max_metadata_key_len:
            raise InvalidCommand(
                f"metadata keys are text of 1-{limits.max_metadata_key_len} characters"
            )
        kind = type(item)
        if kind is str:
            if len(item) > limits.max_metadata_text:
                raise InvalidCommand(f"metadata {key!r} is over {limits.max_metadata_text} chars")
        elif kind is float:
            if not math.isfinite(item):
                raise InvalidCommand(f"metadata {key!r} must be a finite number")
        elif kind is int:
            if not -(2**63) <= item < 2**63:
                raise InvalidCommand(f"metadata {key!r} is out of the 64-bit range")
        elif item is None:
            if not allow_null:
                raise InvalidCommand(f"metadata {key!r} is null")
        elif kind is not bool:
            raise InvalidCommand(
                f"metadata {key!r} must be text, a number, a boolean or null, not {kind.__name__}"
            )
        clean[key] = item
    return {key: clean[key] for key in sorted(clean)}


def validate_command(command: Any, limits: RegistryLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The command in canonical form, or InvalidCommand naming the field that is wrong."""
    if type(command) is not dict:
        raise InvalidCommand(f"a registry command is a map, not {type(command).__name__}")
    op = command.get("op")
    if op == "submit_adapter":
        c = _map(
            command,
            {"op", "concept", "adapter", "weight"},
            {"base", "at", "metadata"},
            "submit_adapter",
        )
        return {
            "op": op,
            "concept": _concept(c["concept"]),
            "adapter": _blob(c["adapter"], "adapter"),
            "weight": _weight(c["weight"], "weight"),
            "base": _optional_blob(c.get("base"), "base"),
            "at": _at(c.get("at", 0)),
            "metadata": _metadata(c.get("metadata", {}), limits, allow_null=False),
        }
    if op == "record_merge":
        c = _map(
            command,
            {"op", "concept", "model", "parent", "adapters", "weights"},
            {"at", "metadata"},
            "record_merge",
        )
        adapters, weights = c["adapters"], c["weights"]
        if type(adapters) is not list or not 0 < len(adapters) <= limits.max_adapters_per_merge:
            raise InvalidCommand(
                f"adapters must be a list of 1-{limits.max_adapters_per_merge} blob ids"
            )
        if type(weights) is not list or len(weights) != len(adapters):
            raise InvalidCommand("weights must be a list with one weight per adapter")
        ids = [_blob(a, "adapter") for a in adapters]
        if len(set(ids)) != len(ids):
            raise InvalidCommand("an adapter appears twice in one merge")
        model = _blob(c["model"], "model")
        parent = _optional_blob(c["parent"], "parent")
        if model == parent or model in ids:
            raise InvalidCommand("the merged model must be a new blob, not its parent or input")
        return {
            "op": op,
            "concept": _concept(c["concept"]),
            "model": model,
            "parent": parent,
            "adapters": ids,
            "weights": [_weight(w, "weight") for w in weights],
            "at": _at(c.get("at", 0)),
            "metadata": _metadata(c.get("metadata", {}), limits, allow_null=False),
        }
    if op == "set_metadata":
        c = _map(command, {"op", "concept", "metadata"}, {"at"}, "set_metadata")
        metadata = _metadata(c["metadata"], limits, allow_null=True)
        if not metadata:
            raise InvalidCommand("set_metadata needs at least one key")
        return {
            "op": op,
            "concept": _concept(c["concept"]),
            "metadata": metadata,
            "at": _at(c.get("at", 0)),
        }
    raise InvalidCommand(
        f"unknown registry op {_shown(op)}; use submit_adapter, record_merge or set_metadata"
    )


def validate_query(query: Any, limits: RegistryLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The query in canonical form, or InvalidCommand naming the field that is wrong."""
    if type(query) is not dict:
        raise InvalidCommand(f"a registry query is a map, not {type(query).__name__}")
    q = query.get("q")
    if q == "concepts":
        c = _map(query, {"q"}, {"after", "limit"}, "concepts query")
        after = c.get("after", "")
        if after != "":
            _concept(after)
        return {
            "q": q,
            "after": after,
            "limit": _count(
                c.get("limit", limits.max_history_page), "limit", 1, limits.max_history_page
            ),
        }
    if q == "concept":
        c = _map(query, {"q", "concept"}, set(), "concept query")
        return {"q": q, "concept": _concept(c["concept"])}
    if q == "history":
        c = _map(query, {"q", "concept"}, {"after", "limit"}, "history query")
        return {
            "q": q,
            "concept": _concept(c["concept"]),
            "after": _count(c.get("after", 0), "after", 0, 2**63 - 1),
            "limit": _count(
                c.get("limit", limits.default_history_page), "limit", 1, limits.max_history_page
            ),
        }
    raise InvalidCommand(f"unknown registry query {_shown(q)}; use concepts, concept or history")


# -- the state machine ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Adapter:
    weight: float
    base: str | None
    by: str
    at: int
    index: int
    merged_into: str | None = None


@dataclass(slots=True)
class _Concept:
    model: str | None = None
    version: int = 0
    metadata: dict[str, Any] | None = None
    adapters: dict[str, _Adapter] | None = None
    history: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.metadata = {} if self.metadata is None else self.metadata
        self.adapters = {} if self.adapters is None else self.adapters
        self.history = [] if self.history is None else self.history


def _ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def _refused(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


class Registry:
    """The registry state machine (see the module docstring); plugs into `RaftNode`."""

    def __init__(self, limits: RegistryLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._concepts: dict[str, _Concept] = {}

    # -- the StateMachine protocol ---------------------------------------------------------

    def validate_command(self, command: Any) -> dict[str, Any]:
        return validate_command(command, self._limits)

    def validate_query(self, query: Any) -> dict[str, Any]:
        return validate_query(query, self._limits)

    def apply(self, command: Any, context: ApplyContext) -> dict[str, Any]:
        """Apply a committed command. Validates again: a refused command changes nothing."""
        try:
            command = validate_command(command, self._limits)
        except InvalidCommand as exc:
            return _refused(str(exc))
        op = command["op"]
        if op == "submit_adapter":
            return self._submit_adapter(command, context)
        if context.proposer not in context.members:
            return _refused(f"only a registry member may {op.replace('_', ' ')}")
        if op == "record_merge":
            return self._record_merge(command, context)
        return self._set_metadata(command, context)

    def query(self, query: Any) -> Any:
        q = query["q"]
        if q == "concepts":
            names = sorted(self._concepts)
            start = bisect_right(names, query["after"])
            return self._page(names[start : start + query["limit"]])
        concept = self._concepts.get(query["concept"])
        if q == "concept":
            return None if concept is None else self._summary(query["concept"], concept)
        if concept is None:
            return []
        assert concept.history is not None
        after, limit = query["after"], query["limit"]
        return self._page([dict(event) for event in concept.history[after : after + limit]])

    def _page(self, items: list[Any]) -> list[Any]:
        """The leading items that fit in `max_answer_bytes` (at least one)."""
        budget = self._limits.max_answer_bytes
        for count, item in enumerate(items):
            budget -= len(pack(item, SNAPSHOT_LIMITS))
            if budget < 0 and count:
                return items[:count]
        return items

    def snapshot(self) -> dict[str, Any]:
        concepts = {}
        for name in sorted(self._concepts):
            concept = self._concepts[name]
            assert concept.adapters is not None
            concepts[name] = {
                "model": concept.model,
                "version": concept.version,
                "metadata": dict(concept.metadata or {}),
                "adapters": {
                    adapter_id: [a.weight, a.base, a.by, a.at, a.index, a.merged_into]
                    for adapter_id, a in sorted(concept.adapters.items())
                },
                "history": [dict(event) for event in concept.history or []],
            }
        return {"v": _SNAPSHOT_VERSION, "concepts": concepts}

    def restore(self, snapshot: Any | None) -> None:
        """Replace the state with `snapshot` (None: empty), or raise InvalidCommand and keep it."""
        if snapshot is None:
            self._concepts = {}
            return
        self._concepts = _parse_snapshot(snapshot, self._limits)

    # -- typed reads for the shell and the API -----------------------------------------------

    def current_model(self, concept: str) -> str | None:
        found = self._concepts.get(concept)
        return None if found is None else found.model

    def concepts(self) -> list[str]:
        """Every concept name, sorted (for the local API; over the wire, page with queries)."""
        return sorted(self._concepts)

    def describe(self, concept: str) -> dict[str, Any] | None:
        found = self._concepts.get(concept)
        return None if found is None else self._summary(concept, found)

    def history(self, concept: str) -> list[dict[str, Any]]:
        found = self._concepts.get(concept)
        return [] if found is None else [dict(event) for event in found.history or []]

    # -- commands ---------------------------------------------------------------------------

    def _concept_for_write(self, name: str) -> _Concept | None:
        concept = self._concepts.get(name)
        if concept is None:
            if len(self._concepts) >= self._limits.max_concepts:
                return None
            concept = self._concepts[name] = _Concept()
        return concept

    def _event(self, concept: _Concept, context: ApplyContext, **fields: Any) -> dict[str, Any]:
        assert concept.history is not None
        event = {
            "seq": len(concept.history) + 1,
            "index": context.index,
            "by": str(context.proposer),
            **fields,
        }
        concept.history.append(event)
        return event

    def _submit_adapter(self, c: dict[str, Any], context: ApplyContext) -> dict[str, Any]:
        existing = self._concepts.get(c["concept"])
        if existing is not None and existing.adapters and c["adapter"] in existing.adapters:
            adapter = existing.adapters[c["adapter"]]
            return _ok(
                concept=c["concept"], adapter=c["adapter"], index=adapter.index, duplicate=True
            )
        concept = self._concept_for_write(c["concept"])
        if concept is None:
            return _refused(f"the registry holds {self._limits.max_concepts} concepts already")
        assert concept.adapters is not None
        if len(concept.adapters) >= self._limits.max_adapters_per_concept:
            return _refused(f"concept {c['concept']} has too many adapters")
        concept.adapters[c["adapter"]] = _Adapter(
            c["weight"], c["base"], str(context.proposer), c["at"], context.index
        )
        self._event(
            concept,
            context,
            kind="adapter",
            adapter=c["adapter"],
            weight=c["weight"],
            base=c["base"],
            at=c["at"],
            metadata=c["metadata"],
        )
        return _ok(concept=c["concept"], adapter=c["adapter"], index=context.index, duplicate=False)

    def _record_merge(self, c: dict[str, Any], context: ApplyContext) -> dict[str, Any]:
        name = c["concept"]
        concept = self._concepts.get(name)
        if concept is None:
            return _refused(f"concept {name} has no submitted adapters")
        assert concept.adapters is not None and concept.history is not None
        if concept.model == c["model"]:
            last = next(e for e in reversed(concept.history) if e["kind"] == "merge")
            if last["parent"] == c["parent"] and last["adapters"] == c["adapters"]:
                return _ok(concept=name, model=c["model"], version=concept.version, duplicate=True)
            return _refused(f"model {c['model']} is already the current model of {name}")
        if concept.model != c["parent"]:
            return _refused(
                f"stale parent: the current model of {name} is {concept.model}, not "
                f"{c['parent']}; merge again on top of the current model"
            )
        for adapter_id in c["adapters"]:
            adapter = concept.adapters.get(adapter_id)
            if adapter is None:
                return _refused(f"adapter {adapter_id} was never submitted for {name}")
            if adapter.merged_into is not None:
                return _refused(
                    f"adapter {adapter_id} is already merged into {adapter.merged_into}"
                )
        for adapter_id in c["adapters"]:
            concept.adapters[adapter_id].merged_into = c["model"]
        concept.model = c["model"]
        concept.version += 1
        self._event(
            concept,
            context,
            kind="merge",
            model=c["model"],
            parent=c["parent"],
            adapters=list(c["adapters"]),
            weights=list(c["weights"]),
            version=concept.version,
            at=c["at"],
            metadata=c["metadata"],
        )
        return _ok(concept=name, model=c["model"], version=concept.version, duplicate=False)

    def _set_metadata(self, c: dict[str, Any], context: ApplyContext) -> dict[str, Any]:
        concept = self._concept_for_write(c["concept"])
        if concept is None:
            return _refused(f"the registry holds {self._limits.max_concepts} concepts already")
        merged = dict(concept.metadata or {})
        for key, value in c["metadata"].items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if len(merged) > self._limits.max_metadata_keys:
            return _refused(f"a concept has at most {self._limits.max_metadata_keys} metadata keys")
        concept.metadata = {key: merged[key] for key in sorted(merged)}
        self._event(concept, context, kind="metadata", metadata=c["metadata"], at=c["at"])
        return _ok(concept=c["concept"], metadata=dict(concept.metadata))

    def _summary(self, name: str, concept: _Concept) -> dict[str, Any]:
        assert concept.adapters is not None
        pending = [
            {"adapter": adapter_id, "weight": a.weight, "base": a.base, "by": a.by, "at": a.at}
            for adapter_id, a in sorted(concept.adapters.items(), key=lambda kv: kv[1].index)
            if a.merged_into is None
        ]
        shown = pending[: self._limits.max_pending_shown]
        return {
            "concept": name,
            "model": concept.model,
            "version": concept.version,
            "metadata": dict(concept.metadata or {}),
            "pending_adapters": shown,
            "pending_count": len(pending),
            "history_length": len(concept.history or []),
        }


# -- strict snapshot parsing ---------------------------------------------------------------------

_EVENT_FIELDS = {
    "adapter": {"seq", "index", "by", "kind", "adapter", "weight", "base", "at", "metadata"},
    "merge": {
        "seq",
        "index",
        "by",
        "kind",
        "model",
        "parent",
        "adapters",
        "weights",
        "version",
        "at",
        "metadata",
    },
    "metadata": {"seq", "index", "by", "kind", "metadata", "at"},
}


def _peer_text(value: Any) -> str:
    try:
        return str(PeerId.parse(value))
    except LightboxError as exc:
        raise InvalidCommand(f"snapshot: {exc}") from None


def _parse_event(raw: Any, seq: int, limits: RegistryLimits) -> dict[str, Any]:
    if type(raw) is not dict or raw.get("kind") not in _EVENT_FIELDS:
        raise InvalidCommand("snapshot: a history event is a map with a known kind")
    kind = raw["kind"]
    _map(raw, _EVENT_FIELDS[kind], set(), f"snapshot {kind} event")
    if raw["seq"] != seq:
        raise InvalidCommand("snapshot: history events must be numbered 1, 2, 3, …")
    event = {
        "seq": seq,
        "index": _count(raw["index"], "index", 1, 2**63 - 1),
        "by": _peer_text(raw["by"]),
        "kind": kind,
        "at": _at(raw["at"]),
        "metadata": _metadata(raw["metadata"], limits, allow_null=kind == "metadata"),
    }
    if kind == "adapter":
        event["adapter"] = _blob(raw["adapter"], "adapter")
        event["weight"] = _weight(raw["weight"], "weight")
        event["base"] = _optional_blob(raw["base"], "base")
    elif kind == "merge":
        event["model"] = _blob(raw["model"], "model")
        event["parent"] = _optional_blob(raw["parent"], "parent")
        adapters, weights = raw["adapters"], raw["weights"]
        if type(adapters) is not list or type(weights) is not list:
            raise InvalidCommand("snapshot: merge adapters and weights are lists")
        if len(adapters) != len(weights):
            raise InvalidCommand("snapshot: a merge has one weight per adapter")
        event["adapters"] = [_blob(a, "adapter") for a in adapters]
        event["weights"] = [_weight(w, "weight") for w in weights]
        event["version"] = _count(raw["version"], "version", 1, 2**63 - 1)
    return {key: event[key] for key in sorted(event)}


def _parse_snapshot(value: Any, limits: RegistryLimits) -> dict[str, _Concept]:
    top = _map(value, {"v", "concepts"}, set(), "registry snapshot")
    if top["v"] != _SNAPSHOT_VERSION:
        raise InvalidCommand(f"registry snapshot version {_shown(top['v'])} is not supported")
    raw_concepts = top["concepts"]
    if type(raw_concepts) is not dict or len(raw_concepts) > limits.max_concepts:
        raise InvalidCommand("snapshot: concepts must be a map of bounded size")
    concepts: dict[str, _Concept] = {}
    for name, raw in raw_concepts.items():
        _concept(name)
        c = _map(
            raw,
            {"model", "version", "metadata", "adapters", "history"},
            set(),
            f"snapshot concept {name}",
        )
        adapters: dict[str, _Adapter] = {}
        raw_adapters = c["adapters"]
        if type(raw_adapters) is not dict:
            raise InvalidCommand("snapshot: adapters must be a map")
        for adapter_id, fields in raw_adapters.items():
            if type(fields) is not list or len(fields) != 6:
                raise InvalidCommand(
                    "snapshot: an adapter is [weight, base, by, at, index, merged]"
                )
            weight, base, by, at, index, merged = fields
            adapters[_blob(adapter_id, "adapter")] = _Adapter(
                _weight(weight, "weight"),
                _optional_blob(base, "base"),
                _peer_text(by),
                _at(at),
                _count(index, "index", 1, 2**63 - 1),
                _optional_blob(merged, "merged_into"),
            )
        raw_history = c["history"]
        if type(raw_history) is not list:
            raise InvalidCommand("snapshot: history must be a list")
        history = [_parse_event(event, seq, limits) for seq, event in enumerate(raw_history, 1)]
        concepts[name] = _Concept(
            _optional_blob(c["model"], "model"),
            _count(c["version"], "version", 0, 2**63 - 1),
            _metadata(c["metadata"], limits, allow_null=False),
            adapters,
            history,
        )
    return concepts


__all__ = [
    "CONCEPT_PATTERN",
    "DEFAULT_LIMITS",
    "InvalidCommand",
    "Registry",
    "RegistryLimits",
    "validate_command",
    "validate_query",
]
