"""Raft's wire messages, and their strict parsing from untrusted bodies.

Bodies travel over authenticated peer links under the protocol tag `PROTOCOL` (the shell
packs `[protocol, body]` and signs or seals it); the sender of a body is the peer at the
other end of the link, so no message names its own sender. Every body is a msgpack array
whose first element is its kind; keys are raw 32-byte Ed25519 public keys::

    ["vote", term, last_log_index, last_log_term]                      RequestVote
    ["vote-reply", term, granted]
    ["append", term, prev_index, prev_term, leader_commit, round, [entry, ...]]
    ["append-reply", term, success, index, round]
        success: index is the follower's match index (prev_index + len(entries));
        failure: index is where the leader should try next (the fast back-up hint)
    ["snapshot", term, last_index, last_term, [member_key, ...], size, offset, chunk, round]
    ["snapshot-reply", term, last_index, received, round]
        received: bytes of that snapshot the follower now holds (== size once installed)
    ["read-index", read_id]                    follower to leader: confirm leadership
    ["read-index-reply", read_id, index]       index, or null if the peer is not the leader
    ["request", request_id, "write" | "read", payload]       client to any member
    ["response", request_id, status, result, leader_key | null]

`round` numbers the leader's heartbeat rounds: a follower echoes it, and a read is served
once a majority has echoed a round that began after the read arrived (read-index).

`parse_message` never lets anything but `MalformedMessage` out, whatever the body.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from lightbox_node.errors import MalformedMessage
from lightbox_node.identity import PeerId
from lightbox_node.raft.log import (
    LogEntry,
    parse_entry,
    parse_key,
    parse_members,
    parse_term,
)

PROTOCOL = "raft"
"""The protocol tag of these bodies on a peer link."""

MAX_ENTRIES_PER_MESSAGE = 4096
MAX_CHUNK = 1 << 20


class Status(enum.Enum):
    """How a client request ended."""

    OK = "ok"
    """Done: a write is committed and applied (result is the state machine's answer), a read
    saw every write committed before it was asked."""
    REJECTED = "rejected"
    """The command or query is invalid; sending it again will not help."""
    REDIRECT = "redirect"
    """Not the leader: ask `leader` (if known) instead."""
    RETRY = "retry"
    """Unavailable for now (no leader, leadership lost, busy); a write's outcome is unknown,
    so the command must be safe to repeat. Ask again, maybe another member."""


class RequestKind(enum.Enum):
    WRITE = "write"
    READ = "read"


@dataclass(frozen=True, slots=True)
class RequestVote:
    term: int
    last_log_index: int
    last_log_term: int

    def to_wire(self) -> list[Any]:
        return ["vote", self.term, self.last_log_index, self.last_log_term]


@dataclass(frozen=True, slots=True)
class RequestVoteReply:
    term: int
    granted: bool

    def to_wire(self) -> list[Any]:
        return ["vote-reply", self.term, self.granted]


@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    prev_index: int
    prev_term: int
    leader_commit: int
    round: int
    entries: tuple[LogEntry, ...]

    def to_wire(self) -> list[Any]:
        return [
            "append",
            self.term,
            self.prev_index,
            self.prev_term,
            self.leader_commit,
            self.round,
            [entry.to_wire() for entry in self.entries],
        ]


@dataclass(frozen=True, slots=True)
class AppendEntriesReply:
    term: int
    success: bool
    index: int
    round: int

    def to_wire(self) -> list[Any]:
        return ["append-reply", self.term, self.success, self.index, self.round]


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: int
    last_index: int
    last_term: int
    members: tuple[PeerId, ...]
    size: int
    offset: int
    chunk: bytes
    round: int

    def to_wire(self) -> list[Any]:
        return [
            "snapshot",
            self.term,
            self.last_index,
            self.last_term,
            [m.public_key for m in self.members],
            self.size,
            self.offset,
            self.chunk,
            self.round,
        ]


@dataclass(frozen=True, slots=True)
class InstallSnapshotReply:
    term: int
    last_index: int
    received: int
    round: int

    def to_wire(self) -> list[Any]:
        return ["snapshot-reply", self.term, self.last_index, self.received, self.round]


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    read_id: int

    def to_wire(self) -> list[Any]:
        return ["read-index", self.read_id]


@dataclass(frozen=True, slots=True)
class ReadIndexReply:
    read_id: int
    index: int | None
    """The read index; None when the peer asked is not (or no longer) the leader."""

    def to_wire(self) -> list[Any]:
        return ["read-index-reply", self.read_id, self.index]


@dataclass(frozen=True, slots=True)
class ClientRequest:
    request_id: int
    kind: RequestKind
    payload: Any
    """A state-machine command (write) or query (read), validated by the state machine."""

    def to_wire(self) -> list[Any]:
        return ["request", self.request_id, self.kind.value, self.payload]


@dataclass(frozen=True, slots=True)
class ClientResponse:
    request_id: int
    status: Status
    result: Any
    """OK: the state machine's answer; otherwise a short text saying why."""
    leader: PeerId | None

    def to_wire(self) -> list[Any]:
        leader = None if self.leader is None else self.leader.public_key
        return ["response", self.request_id, self.status.value, self.result, leader]


Message = (
    RequestVote
    | RequestVoteReply
    | AppendEntries
    | AppendEntriesReply
    | InstallSnapshot
    | InstallSnapshotReply
    | ReadIndexRequest
    | ReadIndexReply
    | ClientRequest
    | ClientResponse
)

_ARITY = {
    "vote": 4,
    "vote-reply": 3,
    "append": 7,
    "append-reply": 5,
    "snapshot": 9,
    "snapshot-reply": 5,
    "read-index": 2,
    "read-index-reply": 3,
    "request": 4,
    "response": 5,
}
_STATUSES = {status.value: status for status in Status}
_KINDS = {kind.value: kind for kind in RequestKind}


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise MalformedMessage(f"{what} must be true or false")
    return value


def parse_message(body: Any) -> Message:
    """The message in an untrusted body; raises MalformedMessage (and nothing else) if bad."""
    try:
        return _parse(body)
    except MalformedMessage:
        raise
    except Exception as exc:  # a bug in a check must still never crash the caller
        raise MalformedMessage(f"unparseable raft body: {type(exc).__name__}") from None


def _parse(body: Any) -> Message:
    if type(body) is not list or not body:
        raise MalformedMessage("a raft body is a non-empty array")
    kind = body[0]
    if type(kind) is not str or kind not in _ARITY:
        raise MalformedMessage(f"unknown raft message kind {str(kind)[:40]!r}")
    if len(body) != _ARITY[kind]:
        raise MalformedMessage(f"{kind} has {_ARITY[kind]} fields, not {len(body)}")
    f = body
    if kind == "vote":
        return RequestVote(
            parse_term(f[1], "term"),
            parse_term(f[2], "last_log_index"),
            parse_term(f[3], "last_log_term"),
        )
    if kind == "vote-reply":
        return RequestVoteReply(parse_term(f[1], "term"), _bool(f[2], "granted"))
    if kind == "append":
        raw_entries = f[6]
        if type(raw_entries) is not list or len(raw_entries) > MAX_ENTRIES_PER_MESSAGE:
            raise MalformedMessage(f"entries must be an array of at most {MAX_ENTRIES_PER_MESSAGE}")
        message = AppendEntries(
            parse_term(f[1], "term"),
            parse_term(f[2], "prev_index"),
            parse_term(f[3], "prev_term"),
            parse_term(f[4], "leader_commit"),
            parse_term(f[5], "round"),
            tuple(parse_entry(raw) for raw in raw_entries),
        )
        if message.prev_index + len(message.entries) > 2**63 - 1:
            raise MalformedMessage("entries run past the largest index")
        if any(entry.term > message.term for entry in message.entries):
            raise MalformedMessage("an entry's term is above the leader's term")
        if message.prev_term > message.term:
            raise MalformedMessage("prev_term is above the leader's term")
        return message
    if kind == "append-reply":
        return AppendEntriesReply(
            parse_term(f[1], "term"),
            _bool(f[2], "success"),
            parse_term(f[3], "index"),
            parse_term(f[4], "round"),
        )
    if kind == "snapshot":
        chunk = f[7]
        if type(chunk) is not bytes or len(chunk) > MAX_CHUNK:
            raise MalformedMessage(f"chunk must be at most {MAX_CHUNK} bytes")
        message = InstallSnapshot(
            parse_term(f[1], "term"),
            parse_term(f[2], "last_index"),
            parse_term(f[3], "last_term"),
            parse_members(f[4]),
            parse_term(f[5], "size"),
            parse_term(f[6], "offset"),
            chunk,
            parse_term(f[8], "round"),
        )
        if message.offset + len(chunk) > message.size:
            raise MalformedMessage("chunk runs past the snapshot's size")
        if message.last_term > message.term or not message.members:
            raise MalformedMessage("a snapshot needs members and a term not above the leader's")
        return message
    if kind == "snapshot-reply":
        return InstallSnapshotReply(
            parse_term(f[1], "term"),
            parse_term(f[2], "last_index"),
            parse_term(f[3], "received"),
            parse_term(f[4], "round"),
        )
    if kind == "read-index":
        return ReadIndexRequest(parse_term(f[1], "read_id"))
    if kind == "read-index-reply":
        index = None if f[2] is None else parse_term(f[2], "index")
        return ReadIndexReply(parse_term(f[1], "read_id"), index)
    if kind == "request":
        request_kind = _KINDS.get(f[2]) if type(f[2]) is str else None
        if request_kind is None:
            raise MalformedMessage("a request is a 'write' or a 'read'")
        return ClientRequest(parse_term(f[1], "request_id"), request_kind, f[3])
    # response
    status = _STATUSES.get(f[2]) if type(f[2]) is str else None
    if status is None:
        raise MalformedMessage("status must be ok, rejected, redirect or retry")
    leader = None if f[4] is None else parse_key(f[4], "leader")
    if status is not Status.OK and type(f[3]) is not str:
        raise MalformedMessage("a response that is not ok carries a text reason")
    return ClientResponse(parse_term(f[1], "request_id"), status, f[3], leader)


__all__ = [
    "PROTOCOL",
    "AppendEntries",
    "AppendEntriesReply",
    "ClientRequest",
    "ClientResponse",
    "InstallSnapshot",
    "InstallSnapshotReply",
    "Message",
    "ReadIndexReply",
    "ReadIndexRequest",
    "RequestKind",
    "RequestVote",
    "RequestVoteReply",
    "Status",
    "parse_message",
]
