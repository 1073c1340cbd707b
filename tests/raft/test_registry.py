"""The registry state machine: strict commands, deterministic results, history, snapshots."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from raftsim import blob, peer

from lightbox_node.raft import ApplyContext, InvalidCommand, Registry, RegistryLimits
from lightbox_node.raft.log import SNAPSHOT_LIMITS
from lightbox_node.raft.registry import validate_command, validate_query
from lightbox_node.wire import pack, unpack

MEMBER, OUTSIDER = peer(1), peer(40)
MEMBERS = (MEMBER, peer(2), peer(3))
A1, A2, A3, M1, M2 = blob("a1"), blob("a2"), blob("a3"), blob("m1"), blob("m2")


class Log:
    """Applies commands to a registry as consecutive committed entries."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        self.index = 0

    def apply(self, command: dict[str, Any], by: Any = MEMBER) -> dict[str, Any]:
        self.index += 1
        context = ApplyContext(self.index, 1, by, MEMBERS)
        return self.registry.apply(command, context)


def submit(adapter: str, weight: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "op": "submit_adapter",
        "concept": "sks-dog",
        "adapter": adapter,
        "weight": weight,
        **extra,
    }


def merge(model: str, parent: str | None, adapters: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "op": "record_merge",
        "concept": "sks-dog",
        "model": model,
        "parent": parent,
        "adapters": adapters,
        "weights": [1.0 / max(1, len(adapters))] * len(adapters),
        **extra,
    }


# -- validation ----------------------------------------------------------------------------------


def test_a_valid_command_comes_back_in_canonical_form() -> None:
    command = validate_command(submit(A1, 2, metadata={"steps": 400, "rank": 4}, at=5))
    assert command == {
        "op": "submit_adapter",
        "concept": "sks-dog",
        "adapter": A1,
        "weight": 2.0,
        "base": None,
        "at": 5,
        "metadata": {"rank": 4, "steps": 400},
    }
    assert type(command["weight"]) is float


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        ("submit", "is a map"),
        ({"op": "delete_everything"}, "unknown registry op"),
        ({**submit(A1), "extra": 1}, "unknown fields"),
        ({"op": "submit_adapter", "concept": "sks-dog", "weight": 1.0}, "lacks adapter"),
        (submit("sha256-XYZ"), "adapter"),
        (submit(A1.upper()), "adapter"),
        (submit("../../etc/passwd"), "adapter"),
        (submit(A1, weight=True), "weight"),
        (submit(A1, weight=0), "weight"),
        (submit(A1, weight=-1.0), "weight"),
        (submit(A1, weight=math.nan), "weight"),
        (submit(A1, weight=math.inf), "weight"),
        (submit(A1, weight="1"), "weight"),
        ({**submit(A1), "concept": "Sks Dog"}, "concept"),
        ({**submit(A1), "concept": ""}, "concept"),
        ({**submit(A1), "concept": "x" * 129}, "concept"),
        (submit(A1, at=-1), "at must be"),
        (submit(A1, at=1.5), "at must be"),
        (submit(A1, metadata={"k": [1]}), "metadata"),
        (submit(A1, metadata={"k": None}), "null"),
        (submit(A1, metadata={"k": "x" * 2000}), "metadata"),
        (submit(A1, metadata={str(n): n for n in range(40)}), "over 32 keys"),
        (merge(M1, None, []), "adapters"),
        (merge(M1, None, [A1, A1]), "twice"),
        ({**merge(M1, None, [A1, A2]), "weights": [1.0]}, "one weight per adapter"),
        (merge(M1, M1, [A1]), "new blob"),
        (merge(A1, None, [A1]), "new blob"),
        ({"op": "set_metadata", "concept": "sks-dog", "metadata": {}}, "at least one key"),
    ],
)
def test_malformed_commands_are_refused_with_the_field_named(command: Any, complaint: str) -> None:
    with pytest.raises(InvalidCommand, match=complaint):
        validate_command(command)


@pytest.mark.parametrize(
    "query",
    [
        {"q": "everything"},
        {"q": "history", "concept": "sks-dog", "limit": 0},
        {"q": "history", "concept": "sks-dog", "limit": 5000},
        {"q": "history", "concept": "sks-dog", "after": -1},
        {"q": "concepts", "concept": "sks-dog"},
        ["concepts"],
    ],
)
def test_malformed_queries_are_refused(query: Any) -> None:
    with pytest.raises(InvalidCommand):
        validate_query(query)


# -- applying --------------------------------------------------------------------------------------


def test_adapters_are_submitted_once_and_listed_until_merged() -> None:
    log = Log()
    first = log.apply(submit(A1, 0.7, base=M2, at=10), by=OUTSIDER)
    assert first == {
        "ok": True,
        "concept": "sks-dog",
        "adapter": A1,
        "index": 1,
        "duplicate": False,
    }
    again = log.apply(submit(A1, 0.9), by=MEMBER)
    assert again["ok"] and again["duplicate"] and again["index"] == 1
    registry = log.registry
    summary = registry.describe("sks-dog")
    assert summary["model"] is None and summary["version"] == 0
    assert summary["pending_adapters"] == [
        {"adapter": A1, "weight": 0.7, "base": M2, "by": str(OUTSIDER), "at": 10}
    ]
    assert len(registry.history("sks-dog")) == 1, "the duplicate left no trace"


def test_a_merge_makes_a_new_global_model_and_records_how() -> None:
    log = Log()
    log.apply(submit(A1))
    log.apply(submit(A2))
    result = log.apply({**merge(M1, None, [A1, A2]), "weights": [0.25, 0.75], "at": 99})
    assert result == {
        "ok": True,
        "concept": "sks-dog",
        "model": M1,
        "version": 1,
        "duplicate": False,
    }
    registry = log.registry
    assert registry.current_model("sks-dog") == M1
    event = registry.history("sks-dog")[-1]
    assert event == {
        "seq": 3,
        "index": 3,
        "by": str(MEMBER),
        "kind": "merge",
        "model": M1,
        "parent": None,
        "adapters": [A1, A2],
        "weights": [0.25, 0.75],
        "version": 1,
        "at": 99,
        "metadata": {},
    }
    assert registry.describe("sks-dog")["pending_adapters"] == []

    log.apply(submit(A3))
    second = log.apply(merge(M2, M1, [A3]))
    assert second["ok"] and second["version"] == 2
    assert registry.current_model("sks-dog") == M2


def test_a_merge_on_a_stale_parent_loses_the_race() -> None:
    log = Log()
    log.apply(submit(A1))
    log.apply(submit(A2))
    assert log.apply(merge(M1, None, [A1]))["ok"]
    late = log.apply(merge(M2, None, [A2]))
    assert not late["ok"] and "stale parent" in late["error"]
    assert log.registry.current_model("sks-dog") == M1


def test_repeating_the_merge_that_produced_the_current_model_is_harmless() -> None:
    log = Log()
    log.apply(submit(A1))
    first = log.apply(merge(M1, None, [A1]))
    again = log.apply(merge(M1, None, [A1]))
    assert again == {**first, "duplicate": True}
    assert len(log.registry.history("sks-dog")) == 2


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        (merge(M1, None, [A3]), "never submitted"),
        ({**merge(M1, None, [A1]), "concept": "other"}, "no submitted adapters"),
    ],
)
def test_a_merge_of_unknown_adapters_is_refused(command: Any, complaint: str) -> None:
    log = Log()
    log.apply(submit(A1))
    result = log.apply(command)
    assert not result["ok"] and complaint in result["error"]
    assert log.registry.current_model("sks-dog") is None


def test_an_adapter_is_merged_only_once() -> None:
    log = Log()
    log.apply(submit(A1))
    log.apply(merge(M1, None, [A1]))
    result = log.apply(merge(M2, M1, [A1]))
    assert not result["ok"] and "already merged" in result["error"]


def test_only_registry_members_record_merges_and_metadata() -> None:
    log = Log()
    log.apply(submit(A1), by=OUTSIDER)
    refused = log.apply(merge(M1, None, [A1]), by=OUTSIDER)
    assert not refused["ok"] and "only a registry member" in refused["error"]
    meta = {"op": "set_metadata", "concept": "sks-dog", "metadata": {"title": "x"}}
    assert not log.apply(meta, by=OUTSIDER)["ok"]
    assert log.apply(merge(M1, None, [A1]), by=MEMBER)["ok"]


def test_metadata_is_set_and_removed() -> None:
    log = Log()
    set_ = {"op": "set_metadata", "concept": "sks-dog", "metadata": {"title": "Dog", "b": 1}}
    assert log.apply(set_)["metadata"] == {"b": 1, "title": "Dog"}
    unset = {"op": "set_metadata", "concept": "sks-dog", "metadata": {"b": None}, "at": 3}
    assert log.apply(unset)["metadata"] == {"title": "Dog"}
    assert log.registry.describe("sks-dog")["metadata"] == {"title": "Dog"}


def test_an_invalid_committed_command_changes_nothing() -> None:
    log = Log()
    result = log.apply({"op": "submit_adapter"})
    assert not result["ok"]
    assert log.registry.concepts() == []


# -- queries -----------------------------------------------------------------------------------


def test_history_is_paged_oldest_first() -> None:
    log = Log()
    for n in range(7):
        log.apply(submit(blob(n)))
    registry = log.registry
    page = registry.query(validate_query({"q": "history", "concept": "sks-dog", "limit": 3}))
    assert [event["seq"] for event in page] == [1, 2, 3]
    page = registry.query(
        validate_query({"q": "history", "concept": "sks-dog", "after": 5, "limit": 3})
    )
    assert [event["seq"] for event in page] == [6, 7]
    assert registry.query(validate_query({"q": "history", "concept": "none"})) == []
    assert registry.query(validate_query({"q": "concept", "concept": "none"})) is None
    assert registry.query(validate_query({"q": "concepts"})) == ["sks-dog"]


def test_query_results_are_copies() -> None:
    log = Log()
    log.apply(submit(A1))
    page = log.registry.query(validate_query({"q": "history", "concept": "sks-dog"}))
    page[0]["adapter"] = "changed"
    assert log.registry.history("sks-dog")[0]["adapter"] == A1


# -- determinism and snapshots -------------------------------------------------------------------


def run_script(registry: Registry) -> Log:
    log = Log(registry)
    log.apply({"op": "set_metadata", "concept": "cat", "metadata": {"title": "Cat"}})
    for n in range(5):
        log.apply(submit(blob(n), 1 + n, at=n))
    log.apply(merge(M1, None, [blob(0), blob(1)]))
    log.apply(merge(M2, M1, [blob(2)]))
    log.apply({**submit(A1), "concept": "cat"}, by=OUTSIDER)
    return log


def test_the_same_commands_give_the_same_state_and_snapshot() -> None:
    first, second = run_script(Registry()), run_script(Registry())
    assert pack(first.registry.snapshot(), SNAPSHOT_LIMITS) == pack(
        second.registry.snapshot(), SNAPSHOT_LIMITS
    )


def test_a_snapshot_restores_an_equal_registry_that_goes_on_identically() -> None:
    original = run_script(Registry())
    data = pack(original.registry.snapshot(), SNAPSHOT_LIMITS)
    restored = Registry()
    restored.restore(unpack(data, SNAPSHOT_LIMITS))
    assert pack(restored.snapshot(), SNAPSHOT_LIMITS) == data
    clone = Log(restored)
    clone.index = original.index
    for log in (original, clone):
        log.apply(submit(A2))
        log.apply(merge(blob("m3"), M2, [A2]))
    assert pack(clone.registry.snapshot(), SNAPSHOT_LIMITS) == pack(
        original.registry.snapshot(), SNAPSHOT_LIMITS
    )


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(v=2),
        lambda s: s["concepts"].update({"Bad Name": s["concepts"]["cat"]}),
        lambda s: s["concepts"]["sks-dog"].update(model="sha256-nope"),
        lambda s: s["concepts"]["sks-dog"]["history"][0].update(seq=9),
        lambda s: s["concepts"]["sks-dog"]["history"][0].update(by="lb1nobody"),
        lambda s: s["concepts"]["sks-dog"]["history"][0].update(extra=1),
        lambda s: s["concepts"]["sks-dog"]["adapters"].update({A1: [1.0, None]}),
        lambda s: s["concepts"]["sks-dog"].update(version=-1),
    ],
)
def test_a_damaged_snapshot_is_refused_and_the_state_kept(damage: Any) -> None:
    registry = run_script(Registry()).registry
    before = pack(registry.snapshot(), SNAPSHOT_LIMITS)
    snapshot = copy.deepcopy(registry.snapshot())
    damage(snapshot)
    with pytest.raises(InvalidCommand):
        registry.restore(snapshot)
    assert pack(registry.snapshot(), SNAPSHOT_LIMITS) == before
    registry.restore(None)
    assert registry.concepts() == []


def test_answers_are_paged_to_fit_one_message() -> None:
    limits = RegistryLimits(max_answer_bytes=2000, max_pending_shown=3)
    log = Log(Registry(limits))
    for n in range(12):
        log.apply(submit(blob(n), metadata={"note": "x" * 300}))
        log.apply({**submit(blob(100 + n)), "concept": f"c{n:02d}"})
    registry = log.registry
    page = registry.query(validate_query({"q": "history", "concept": "sks-dog"}))
    assert 1 < len(page) < 12 and len(pack(page)) < 2000 + 500
    rest = registry.query(
        validate_query({"q": "history", "concept": "sks-dog", "after": page[-1]["seq"]})
    )
    assert rest[0]["seq"] == page[-1]["seq"] + 1
    summary = registry.describe("sks-dog")
    assert len(summary["pending_adapters"]) == 3 and summary["pending_count"] == 12
    names = registry.query(validate_query({"q": "concepts", "limit": 5}))
    assert names == ["c00", "c01", "c02", "c03", "c04"]
    names = registry.query(validate_query({"q": "concepts", "after": "c10"}))
    assert names == ["c11", "sks-dog"]
