"""Raft messages: exact wire forms, strict parsing, and a core that never raises on bad input."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raftsim import Cluster, blob, new_node, peer

from lightbox_node.errors import MalformedMessage
from lightbox_node.gossip.actions import PeerEvent
from lightbox_node.raft import DurableState, LogEntry, Persist
from lightbox_node.raft.log import parse_entry
from lightbox_node.raft.messages import (
    AppendEntries,
    AppendEntriesReply,
    ClientRequest,
    ClientResponse,
    InstallSnapshot,
    InstallSnapshotReply,
    ReadIndexReply,
    ReadIndexRequest,
    RequestKind,
    RequestVote,
    RequestVoteReply,
    Status,
    parse_message,
)
from lightbox_node.wire import pack, unpack

A, B, C = peer(1), peer(2), peer(3)
MEMBERS = tuple(sorted([A, B, C], key=lambda p: p.public_key))
COMMAND = {"op": "submit_adapter", "concept": "c", "adapter": blob(1), "weight": 1.0}

EXAMPLES = [
    RequestVote(3, 10, 2),
    RequestVoteReply(3, True),
    AppendEntries(
        3,
        9,
        2,
        8,
        5,
        (
            LogEntry.noop(3),
            LogEntry.config(3, [C, A]),
            LogEntry.of_command(3, B, COMMAND),
        ),
    ),
    AppendEntriesReply(3, False, 4, 5),
    InstallSnapshot(3, 100, 2, MEMBERS, 10, 4, b"abcdef", 7),
    InstallSnapshotReply(3, 100, 10, 7),
    ReadIndexRequest(12),
    ReadIndexReply(12, 40),
    ReadIndexReply(12, None),
    ClientRequest(5, RequestKind.WRITE, COMMAND),
    ClientRequest(6, RequestKind.READ, {"q": "concepts"}),
    ClientResponse(5, Status.OK, {"ok": True}, A),
    ClientResponse(5, Status.REDIRECT, "ask the leader", B),
    ClientResponse(5, Status.RETRY, "no leader yet", None),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_survives_canonical_encoding(message: Any) -> None:
    assert parse_message(unpack(pack(message.to_wire()))) == message


def test_the_wire_forms_are_tagged_arrays() -> None:
    assert RequestVote(3, 10, 2).to_wire() == ["vote", 3, 10, 2]
    assert LogEntry.config(1, [C, A, B]).to_wire() == [1, "config", [m.public_key for m in MEMBERS]]
    assert LogEntry.of_command(2, A, {"x": 1}).to_wire() == [2, "command", A.public_key, {"x": 1}]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        ["vote"],
        ["vote", 1, 2],
        ["vote", -1, 0, 0],
        ["vote", 2**63, 0, 0],
        ["vote", True, 0, 0],
        ["vote", 1.0, 0, 0],
        ["vote-reply", 1, 1],
        ["elect-me", 1, 0, 0],
        ["append", 1, 0, 0, 0, 0, "entries"],
        ["append", 1, 0, 0, 0, 0, [[2, "noop"]]],  # entry term above the leader's
        ["append", 1, 0, 0, 0, 0, [[1, "poison"]]],
        ["append", 1, 0, 0, 0, 0, [[1, "config", [B.public_key, A.public_key, A.public_key]]]],
        ["append", 1, 0, 0, 0, 0, [[1, "command", b"short", {}]]],
        ["append", 1, 0, 2, 0, 0, []],  # prev_term above the leader's
        ["snapshot", 1, 5, 1, [], 3, 0, b"abc", 0],  # no members
        ["snapshot", 1, 5, 1, [A.public_key], 3, 2, b"abc", 0],  # chunk past the size
        ["snapshot", 1, 5, 1, [A.public_key], 3, 0, "abc", 0],
        ["read-index-reply", 1, -5],
        ["request", 1, "delete", {}],
        ["response", 1, "maybe", None, None],
        ["response", 1, "retry", {"not": "text"}, None],
        ["response", 1, "ok", None, b"\x00" * 31],
    ],
)
def test_malformed_bodies_are_refused(body: Any) -> None:
    with pytest.raises(MalformedMessage):
        parse_message(body)


def test_an_entry_with_unsorted_members_is_refused() -> None:
    keys = [m.public_key for m in MEMBERS]
    with pytest.raises(MalformedMessage, match="sorted"):
        parse_entry([1, "config", keys[::-1]])


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_parsing_any_value_gives_a_message_or_malformed_message(body: Any) -> None:
    with contextlib.suppress(MalformedMessage):
        parse_message(body)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXAMPLES), st.data())
def test_a_message_with_one_field_replaced_never_raises_anything_else(
    message: Any, data: st.DataObject
) -> None:
    body = message.to_wire()
    position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    body[position] = data.draw(values)
    with contextlib.suppress(MalformedMessage):
        parse_message(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([B, C]), values), max_size=10))
def test_a_member_reports_garbage_and_carries_on(bodies: list[tuple[Any, Any]]) -> None:
    node = new_node(A, DurableState.bootstrap(MEMBERS))
    for sender, body in bodies:
        for action in node.receive(sender, body, 1.0):
            if isinstance(action, PeerEvent):
                assert action.kind == "invalid_message"
    node.tick(5.0)  # still works: stands for election


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_a_leader_survives_replies_with_arbitrary_fields(data: st.DataObject) -> None:
    """Well-formed but nonsensical replies (huge indexes, future rounds) never crash a leader."""
    node = new_node(A, DurableState.bootstrap(MEMBERS))
    node.tick(5.0)
    node.receive(B, RequestVoteReply(1, True).to_wire(), 5.0)
    numbers = st.integers(min_value=0, max_value=2**63 - 1)
    for _ in range(5):
        kind = data.draw(st.sampled_from(["append-reply", "snapshot-reply", "read-index"]))
        if kind == "append-reply":
            body = AppendEntriesReply(
                data.draw(st.integers(0, 2)), data.draw(st.booleans()), data.draw(numbers), 0
            ).to_wire()
        elif kind == "snapshot-reply":
            body = InstallSnapshotReply(1, data.draw(numbers), data.draw(numbers), 0).to_wire()
        else:
            body = ReadIndexRequest(data.draw(numbers)).to_wire()
        node.receive(data.draw(st.sampled_from([B, C])), body, 5.1)
        node.tick(5.2)


def test_a_message_from_itself_is_reported() -> None:
    node = new_node(A, DurableState.bootstrap(MEMBERS))
    actions = node.receive(A, RequestVote(5, 0, 0).to_wire(), 1.0)
    assert [type(a) for a in actions] == [PeerEvent]
    assert node.term == 0


def test_a_second_leader_for_the_same_term_is_reported_not_followed() -> None:
    node = new_node(A, DurableState.bootstrap(MEMBERS))
    node.receive(B, AppendEntries(1, 0, 0, 0, 0, ()).to_wire(), 1.0)
    assert node.leader == B
    actions = node.receive(C, AppendEntries(1, 0, 0, 0, 0, ()).to_wire(), 1.1)
    assert [type(a) for a in actions] == [PeerEvent]
    assert node.leader == B


def test_a_leader_cannot_overwrite_committed_entries() -> None:
    node = new_node(A, DurableState.bootstrap(MEMBERS))
    entries = (LogEntry.noop(1), LogEntry.of_command(1, B, COMMAND))
    node.receive(B, AppendEntries(1, 0, 0, 2, 0, entries).to_wire(), 1.0)
    assert node.commit_index == 2
    rewrite = (LogEntry.noop(2),)
    actions = node.receive(C, AppendEntries(2, 0, 0, 0, 0, rewrite).to_wire(), 2.0)
    assert any(isinstance(a, PeerEvent) for a in actions)
    assert node.log.term_at(1) == 1 and node.commit_index == 2


def test_every_durable_change_comes_first_as_one_persist() -> None:
    """Across a lossy run every call's Persist, if any, is first; raftsim also checks that
    storage then equals the node's state, so no reply ever left before its state was saved."""
    cluster = Cluster(5, seed=31, drop=0.2, duplicate=0.1, latency=(0.001, 0.2))
    cluster.wait_for_leader()
    for n in range(10):
        cluster.write({**COMMAND, "adapter": blob(n)}, timeout=30.0)
    saves = sum(storage.saves for storage in cluster.storages.values())
    assert saves > 10 and cluster.calls > saves


def test_a_persist_is_emitted_only_when_something_durable_changed() -> None:
    node = new_node(A, DurableState.bootstrap(MEMBERS))
    node.receive(B, AppendEntries(1, 0, 0, 0, 0, (LogEntry.noop(1),)).to_wire(), 1.0)
    heartbeat = node.receive(B, AppendEntries(1, 1, 1, 1, 1, ()).to_wire(), 1.1)
    assert not any(isinstance(action, Persist) for action in heartbeat)


def test_randomness_is_injected() -> None:
    deadlines = [
        new_node(A, DurableState.bootstrap(MEMBERS), seed=seed).next_deadline()
        for seed in (1, 1, 2)
    ]
    assert deadlines[0] == deadlines[1] != deadlines[2]
    assert all(0.5 <= d <= 1.0 for d in deadlines)
    assert random.Random(1).random() == random.Random(1).random()
