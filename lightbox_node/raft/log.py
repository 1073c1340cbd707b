"""The replicated log: its entries, the snapshot that replaces its prefix, and what must be durable.

A Raft log here is a snapshot (index, term and membership of the last entry it covers, plus
the state machine's bytes) followed by entries `snapshot.index + 1 … last_index`. Indexes
start at 1; index 0 is the empty log, whose term is 0.

Entries are of three kinds:

* ``noop``: appended by every new leader, so that it commits an entry of its own term at
  once (it may commit nothing else before that, Raft §5.4.2, and may serve no read).
* ``config``: the complete new membership, one server added or removed at a time. It takes
  effect on each server as soon as it is in its log, committed or not (dissertation §4.1).
* ``command``: a state-machine command (a plain msgpack value) and the authenticated peer
  that proposed it.

Wire form of an entry (msgpack arrays; keys are raw 32-byte Ed25519 public keys)::

    [term, "noop"]
    [term, "config", [member_key, ...]]
    [term, "command", proposer_key, command]

`Persist` is what the core asks the shell to make durable (fsync) before it carries out
anything else from the same call; see `lightbox_node.raft.core` for the rule.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lightbox_node.errors import MalformedMessage, WireError
from lightbox_node.identity import PeerId
from lightbox_node.wire import WireLimits, pack

MAX_U63 = 2**63 - 1
_KEY_LEN = 32
MAX_MEMBERS = 64
"""A Raft group of more than a handful of servers is slow; this bound only stops abuse."""

SNAPSHOT_LIMITS = WireLimits(
    max_frame=1 << 30,
    max_str=1 << 20,
    max_bin=1 << 30,
    max_array=1 << 24,
    max_map=1 << 24,
    max_depth=32,
)
"""Bounds for packing and unpacking a state machine's snapshot: it arrives whole (after its
chunks are joined), so only its total size is bounded by the network limits."""


class EntryKind(enum.Enum):
    NOOP = "noop"
    CONFIG = "config"
    COMMAND = "command"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of the replicated log. Build them with `noop`, `config` and `command`."""

    term: int
    kind: EntryKind
    members: tuple[PeerId, ...] = ()
    """CONFIG: the whole membership from this entry on."""
    proposer: PeerId | None = None
    """COMMAND: the authenticated peer that proposed it (the leader itself for local writes)."""
    command: Any = None
    """COMMAND: the state-machine command, a plain msgpack value."""

    @classmethod
    def noop(cls, term: int) -> LogEntry:
        return cls(term, EntryKind.NOOP)

    @classmethod
    def config(cls, term: int, members: Iterable[PeerId]) -> LogEntry:
        return cls(term, EntryKind.CONFIG, members=canonical_members(members))

    @classmethod
    def of_command(cls, term: int, proposer: PeerId, command: Any) -> LogEntry:
        return cls(term, EntryKind.COMMAND, proposer=proposer, command=command)

    def to_wire(self) -> list[Any]:
        if self.kind is EntryKind.NOOP:
            return [self.term, "noop"]
        if self.kind is EntryKind.CONFIG:
            return [self.term, "config", [m.public_key for m in self.members]]
        assert self.proposer is not None
        return [self.term, "command", self.proposer.public_key, self.command]


def canonical_members(members: Iterable[PeerId]) -> tuple[PeerId, ...]:
    """A membership as a sorted tuple without repeats, so that one set has one form."""
    return tuple(sorted(set(members), key=lambda peer: peer.public_key))


def parse_term(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_U63:
        raise MalformedMessage(f"{what} must be an integer in [0, 2^63)")
    return value


def parse_key(value: Any, what: str) -> PeerId:
    if type(value) is not bytes or len(value) != _KEY_LEN:
        raise MalformedMessage(f"{what} must be a {_KEY_LEN}-byte public key")
    return PeerId(value)


def parse_members(value: Any) -> tuple[PeerId, ...]:
    """A membership list: distinct keys in canonical (sorted) order, at most MAX_MEMBERS."""
    if type(value) is not list or len(value) > MAX_MEMBERS:
        raise MalformedMessage(f"members must be an array of at most {MAX_MEMBERS} keys")
    members = tuple(parse_key(item, "member") for item in value)
    if members != canonical_members(members):
        raise MalformedMessage("members must be distinct and sorted by key")
    return members


def parse_entry(raw: Any) -> LogEntry:
    """Strictly parse one entry's wire form; raises MalformedMessage."""
    if type(raw) is not list or len(raw) < 2:
        raise MalformedMessage("an entry is [term, kind, ...]")
    term = parse_term(raw[0], "entry term")
    kind = raw[1]
    if kind == "noop" and len(raw) == 2:
        return LogEntry(term, EntryKind.NOOP)
    if kind == "config" and len(raw) == 3:
        return LogEntry(term, EntryKind.CONFIG, members=parse_members(raw[2]))
    if kind == "command" and len(raw) == 4:
        return LogEntry(
            term, EntryKind.COMMAND, proposer=parse_key(raw[2], "proposer"), command=raw[3]
        )
    raise MalformedMessage(
        "an entry is [term, 'noop'], [term, 'config', members] or "
        "[term, 'command', proposer, command]"
    )


def entry_size(entry: LogEntry) -> int:
    """Bytes of the entry's canonical encoding; bounds how many travel in one message."""
    try:
        return len(pack(entry.to_wire(), SNAPSHOT_LIMITS))
    except WireError:  # not encodable: it was never accepted, so this is only a guard
        return MAX_U63


# -- snapshots and the durable state ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine as of entry `index` (of `term`), and the membership at that point.

    `data` is the state machine's snapshot in canonical msgpack, or None for its initial
    (empty) state, which is what a freshly bootstrapped group starts from at index 0.
    """

    index: int
    term: int
    members: tuple[PeerId, ...]
    data: bytes | None = None

    @property
    def size(self) -> int:
        return 0 if self.data is None else len(self.data)


@dataclass(frozen=True, slots=True)
class DurableState:
    """Everything Raft keeps on disk: currentTerm, votedFor, the snapshot and the log after it."""

    term: int
    voted_for: PeerId | None
    snapshot: Snapshot
    entries: tuple[LogEntry, ...] = ()

    @classmethod
    def fresh(cls) -> DurableState:
        """A server that belongs to no group yet: it waits for a leader to add it."""
        return cls(0, None, Snapshot(0, 0, ()))

    @classmethod
    def bootstrap(cls, members: Iterable[PeerId]) -> DurableState:
        """A founding member of a new group. Every founder must be given the same members."""
        founders = canonical_members(members)
        if not founders:
            raise ValueError("a Raft group needs at least one founding member")
        return cls(0, None, Snapshot(0, 0, founders))

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)


@dataclass(frozen=True, slots=True)
class Persist:
    """Make this durable (one fsync'd transaction) before carrying out any later action.

    Applied to storage in this order:

    1. currentTerm := `term`, votedFor := `voted_for`;
    2. if `snapshot` is set: store it, and delete stored entries with index <= snapshot.index;
    3. if `truncate_from` is set: delete stored entries with index >= truncate_from;
    4. store `entries` at indexes `entries_start`, `entries_start + 1`, ….

    Afterwards the stored state equals the core's in-memory state.
    """

    term: int
    voted_for: PeerId | None
    snapshot: Snapshot | None = None
    truncate_from: int | None = None
    entries_start: int = 0
    entries: tuple[LogEntry, ...] = ()


# -- the in-memory log -----------------------------------------------------------------------


class RaftLog:
    """Entries after a snapshot, with their sizes and the membership entries among them."""

    __slots__ = (
        "_config_indexes",
        "_entries",
        "_sizes",
        "_snapshot_index",
        "_snapshot_members",
        "_snapshot_term",
    )

    def __init__(self, snapshot: Snapshot, entries: Sequence[LogEntry] = ()) -> None:
        self._snapshot_index = snapshot.index
        self._snapshot_term = snapshot.term
        self._snapshot_members = snapshot.members
        self._entries: list[LogEntry] = []
        self._sizes: list[int] = []
        self._config_indexes: list[int] = []
        self.append(entries)

    # -- reading -------------------------------------------------------------------------------

    @property
    def snapshot_index(self) -> int:
        return self._snapshot_index

    @property
    def snapshot_term(self) -> int:
        return self._snapshot_term

    @property
    def first_index(self) -> int:
        """The index of the first entry still held (one past the snapshot)."""
        return self._snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self._snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._snapshot_term

    def __len__(self) -> int:
        return len(self._entries)

    def term_at(self, index: int) -> int | None:
        """The term of entry `index`, the snapshot's term at its index, None if not held."""
        if index == self._snapshot_index:
            return self._snapshot_term
        if self._snapshot_index < index <= self.last_index:
            return self._entries[index - self._snapshot_index - 1].term
        return None

    def entry(self, index: int) -> LogEntry:
        if not self._snapshot_index < index <= self.last_index:
            raise IndexError(
                f"entry {index} is not held (held: {self.first_index}…{self.last_index})"
            )
        return self._entries[index - self._snapshot_index - 1]

    def entries(self, start: int, stop: int | None = None) -> list[LogEntry]:
        """Entries `start` … `stop - 1` (to the end if stop is None); start > snapshot index."""
        if start <= self._snapshot_index:
            raise IndexError(f"entry {start} is compacted into the snapshot")
        offset = self._snapshot_index + 1
        end = None if stop is None else stop - offset
        return self._entries[start - offset : end]

    def batch(self, start: int, max_count: int, max_bytes: int) -> list[LogEntry]:
        """Entries from `start` for one message: at most max_count, and max_bytes unless one
        entry alone is larger (it still goes, alone)."""
        first = start - self._snapshot_index - 1
        batch: list[LogEntry] = []
        total = 0
        for position in range(first, min(len(self._entries), first + max_count)):
            size = self._sizes[position]
            if batch and total + size > max_bytes:
                break
            batch.append(self._entries[position])
            total += size
        return batch

    def first_index_of_term_at(self, index: int) -> int:
        """The first held index of the run of entries that has entry `index`'s term."""
        term = self.term_at(index)
        while index - 1 > self._snapshot_index and self.term_at(index - 1) == term:
            index -= 1
        return index

    @property
    def members(self) -> tuple[PeerId, ...]:
        """The membership in force: the last config entry in the log, else the snapshot's."""
        if self._config_indexes:
            return self.entry(self._config_indexes[-1]).members
        return self._snapshot_members

    @property
    def config_index(self) -> int:
        """Index of the entry that set the membership in force (the snapshot's if none)."""
        return self._config_indexes[-1] if self._config_indexes else self._snapshot_index

    def members_at(self, index: int) -> tuple[PeerId, ...]:
        """The membership in force once entries up to `index` are in the log."""
        position = bisect_right(self._config_indexes, index)
        if position:
            return self.entry(self._config_indexes[position - 1]).members
        return self._snapshot_members

    # -- changing ------------------------------------------------------------------------------

    def append(self, entries: Iterable[LogEntry]) -> None:
        for entry in entries:
            self._entries.append(entry)
            self._sizes.append(entry_size(entry))
            if entry.kind is EntryKind.CONFIG:
                self._config_indexes.append(self.last_index)

    def truncate_from(self, index: int) -> None:
        """Delete entries `index` … last (a follower's conflicting suffix)."""
        if index <= self._snapshot_index:
            raise IndexError(f"cannot truncate at {index}: compacted into the snapshot")
        keep = index - self._snapshot_index - 1
        del self._entries[keep:]
        del self._sizes[keep:]
        while self._config_indexes and self._config_indexes[-1] >= index:
            self._config_indexes.pop()

    def compact(self, snapshot: Snapshot) -> None:
        """Replace entries up to `snapshot.index` by the snapshot.

        If the log holds that entry with the snapshot's term, the entries after it stay
        (they extend the snapshot); otherwise the whole log is discarded (Raft §7).
        """
        if snapshot.index <= self._snapshot_index:
            raise ValueError(f"snapshot at {snapshot.index} is not newer than the log's start")
        if self.term_at(snapshot.index) == snapshot.term:
            drop = snapshot.index - self._snapshot_index
            del self._entries[:drop]
            del self._sizes[:drop]
            self._config_indexes = [i for i in self._config_indexes if i > snapshot.index]
        else:
            self._entries.clear()
            self._sizes.clear()
            self._config_indexes.clear()
        self._snapshot_index = snapshot.index
        self._snapshot_term = snapshot.term
        self._snapshot_members = snapshot.members


__all__ = [
    "MAX_MEMBERS",
    "SNAPSHOT_LIMITS",
    "DurableState",
    "EntryKind",
    "LogEntry",
    "Persist",
    "RaftLog",
    "Snapshot",
    "canonical_members",
    "entry_size",
    "parse_entry",
    "parse_members",
]
