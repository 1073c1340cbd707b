"""One Raft server as a pure state machine: messages, ticks and client requests in, actions out.

Sans-I/O, like the gossip and scheduler cores: no trio, no sockets, no clock, no disk. The
shell calls `tick(now)` no later than `next_deadline()`, hands every body that arrives under
`PROTOCOL` on a peer link to `receive(peer, body, now)`, calls `propose`, `read`,
`add_member` and `remove_member` for local clients, and carries out the returned actions in
order. Randomness (election timeouts) comes from the injected `random.Random`.

It follows the Raft paper (Ongaro and Ousterhout, 2014) and Ongaro's dissertation:

* **Elections** (§5.2): a follower that hears from no leader for a random timeout in
  [election_timeout_min, election_timeout_max] becomes a candidate of the next term; a
  majority of votes of the membership makes it leader. A vote goes to a candidate whose log
  is at least as up to date (§5.4.1), at most one per term.
* **Replication** (§5.3): AppendEntries with the consistency check; a follower deletes a
  conflicting suffix (never entries it already holds in the right term, so reordered or
  duplicated messages are harmless) and answers a failed check with where to try next.
* **Commitment** (§5.4.2, Figure 8): a leader counts replicas only for entries of its own
  term; older entries are committed with them, never by counting. Every new leader appends a
  `noop` entry so this happens at once.
* **Snapshots** (§7): after `snapshot_threshold` applied entries the state machine is
  snapshotted and the log compacted; a follower that needs compacted entries gets the
  snapshot in chunks (InstallSnapshot).
* **Reads** (dissertation §6.4, read-index): a leader records its commit index, confirms it
  is still leader with a heartbeat round answered by a majority, waits until it has applied
  that index, then queries the state machine. A follower asks the leader for the index
  (`read-index`) and serves the read itself once applied. A new leader serves no read before
  its `noop` entry is committed.
* **Membership** (dissertation §4.1): one server added or removed at a time; a `config`
  entry takes effect as soon as it is appended; the next change waits until it is committed,
  and a new leader makes none before committing an entry of its own term (Ongaro's 2015
  correction). A leader that removed itself steps down once that entry is committed.
* **Disruption** (dissertation §4.2.3): a server that heard from a current leader within the
  minimum election timeout ignores RequestVote, so a removed or partitioned server cannot
  depose a working leader; a leader that has not heard from a majority for
  election_timeout_max steps down (check-quorum), so a partitioned leader stops taking writes.

**Durability: persist before send.** currentTerm, votedFor and the log must be on disk before
any message that depends on them leaves the node (a vote given and then forgotten in a
restart lets a second candidate win the same term). The rule is structural: whenever a call
changes the term, the vote, the log or the snapshot, its action list *begins* with a single
`Persist` carrying the change, and the shell must make it durable (`RaftStorage.save`, one
fsync'd transaction) before it carries out any later action of that list: no `Send`, no
`RequestDone` (a write is acknowledged only once durable) leaves before it. If the write
fails, the shell must stop the node and restart it from disk, never send. Sends that did not
need the write wait for it too: a rule that cannot be misapplied is worth the few
milliseconds. The simplest correct shell handles one event at a time: call, save, act.
Group commit is also correct: the shell may make several calls, then save their Persists
in order in one transaction (`RaftStorage.save_all`), then carry out all their other actions
in order; nothing from any of those calls may leave before the save returns. Commit and
applied indexes need no write: they are volatile (§5, Figure 2), and the state machine is
rebuilt from the snapshot and the log after a restart.

Every peer here is an authenticated `PeerId` (the sender of a body is the peer at the other
end of its link, so no message can claim to be from someone else). Messages are processed
whatever the receiver's membership says (as the dissertation requires, so that a new server
can be caught up and vote); bodies that are malformed, or that contradict the protocol,
are dropped and reported as `PeerEvent(kind="invalid_message")`; no input makes a call raise.
Raft tolerates crashes, not lies: a peer that sends a higher term is believed. So the shell
passes raft bodies only from peers it admits to the registry (those with the `registry`
role); client requests (`ClientRequest`) may come from any peer.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lightbox_node.errors import LightboxError, MalformedMessage, WireError
from lightbox_node.gossip.actions import PeerEvent, Send
from lightbox_node.identity import PeerId
from lightbox_node.raft.log import (
    MAX_MEMBERS,
    SNAPSHOT_LIMITS,
    DurableState,
    EntryKind,
    LogEntry,
    Persist,
    RaftLog,
    Snapshot,
    canonical_members,
    entry_size,
)
from lightbox_node.raft.messages import (
    PROTOCOL,
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

_INVALID = (LightboxError, ValueError, TypeError)
"""What a state machine's validation may raise for bad input: a REJECTED answer, not a crash."""

CLIENT_PROTOCOL = "raft-client"
"""The protocol tag of responses to clients (handled by `RegistryClient`, not by a node)."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


# -- what the state machine must offer -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """Where a command sits in the log, who proposed it, and who the members were then."""

    index: int
    term: int
    proposer: PeerId
    members: tuple[PeerId, ...]


class StateMachine(Protocol):
    """What Raft replicates. Pure and deterministic: same commands, same state, same answers."""

    def validate_command(self, command: Any) -> Any:
        """The command in canonical form, or raise LightboxError saying what is wrong."""
        ...

    def apply(self, command: Any, context: ApplyContext) -> Any:
        """Apply a committed command; return a plain msgpack value. Must not raise."""
        ...

    def validate_query(self, query: Any) -> Any:
        """The query in canonical form, or raise LightboxError saying what is wrong."""
        ...

    def query(self, query: Any) -> Any:
        """Answer a validated query with a plain msgpack value."""
        ...

    def snapshot(self) -> Any:
        """The whole state as a plain msgpack value."""
        ...

    def restore(self, snapshot: Any | None) -> None:
        """Replace the whole state (None: the initial state); raise LightboxError if invalid,
        leaving the state unchanged."""
        ...


# -- parameters --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RaftParams:
    """Timing and size knobs. The defaults elect a new leader within about 1 s of a crash."""

    heartbeat_interval: float = 0.1
    """Seconds between AppendEntries to an idle follower."""
    election_timeout_min: float = 0.5
    election_timeout_max: float = 1.0
    """A follower waits a random time in [min, max] without a leader before standing."""
    check_quorum: bool = True
    """A leader that has not heard from a majority for election_timeout_max steps down."""
    max_entries_per_append: int = 256
    max_append_bytes: int = 256 << 10
    """One AppendEntries carries at most this many entries / bytes (one entry always fits)."""
    max_command_bytes: int = 64 << 10
    """Commands larger than this are refused: only ids travel through consensus."""
    snapshot_threshold: int = 1024
    """Applied entries since the last snapshot that trigger a new one (and compaction)."""
    snapshot_chunk_bytes: int = 256 << 10
    """Bytes of snapshot per InstallSnapshot message."""
    max_snapshot_bytes: int = 256 << 20
    """A follower refuses a snapshot announced larger than this."""
    read_timeout: float = 2.0
    """A read not served within this many seconds ends with RETRY."""
    max_pending_requests: int = 4096
    """Client requests waiting at once; further ones get RETRY (busy)."""

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "election_timeout_min", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"raft setting {name} must be a positive number, not {value!r}")
        if not self.heartbeat_interval < self.election_timeout_min:
            raise ValueError("heartbeat_interval must be shorter than election_timeout_min")
        if not self.election_timeout_min < self.election_timeout_max < math.inf:
            raise ValueError("election_timeout_max must be finite and above election_timeout_min")
        for name in (
            "max_entries_per_append",
            "max_append_bytes",
            "max_command_bytes",
            "snapshot_threshold",
            "snapshot_chunk_bytes",
            "max_snapshot_bytes",
            "max_pending_requests",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"raft setting {name} must be an integer >= 1, not {value!r}")
        if self.max_entries_per_append > 4096 or self.snapshot_chunk_bytes > 512 << 10:
            raise ValueError("messages are bounded to 4096 entries and 512 KiB snapshot chunks")
        if self.max_append_bytes > 512 << 10 or self.max_command_bytes > self.max_append_bytes:
            raise ValueError(
                "max_append_bytes is at most 512 KiB (a message fits a 1 MiB frame), and "
                "max_command_bytes at most max_append_bytes"
            )


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a client request ended; see `Status`. `leader` is a hint for REDIRECT/RETRY."""

    status: Status
    result: Any = None
    """OK: the state machine's answer; otherwise a text saying why."""
    leader: PeerId | None = None


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A local request (`propose`, `read`, `add_member`, `remove_member`) has ended."""

    request_id: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """This node now believes `leader` (None: nobody known) leads term `term`."""

    term: int
    leader: PeerId | None


RaftAction = Persist | Send | PeerEvent | RequestDone | LeaderChanged
"""Everything a call may return. A `Persist` is always the first action of its list."""


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """What the node knows of itself, for the API and the dashboard."""

    local: PeerId
    role: Role
    term: int
    leader: PeerId | None
    members: tuple[PeerId, ...]
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int


# -- internal bookkeeping ------------------------------------------------------------------------


@dataclass(slots=True)
class _Progress:
    """The leader's view of one follower."""

    next_index: int
    last_ack: float
    match_index: int = 0
    last_sent: float = -math.inf
    awaiting: bool = False
    """An AppendEntries is out and unanswered; new entries wait for its answer or a heartbeat."""
    acked_round: int = 0
    snapshot_index: int = -1
    snapshot_offset: int = 0


@dataclass(slots=True)
class _Write:
    origin: PeerId | None
    request_id: int
    term: int


@dataclass(slots=True)
class _Read:
    origin: PeerId | None
    """None: a local request. A peer: a remote client, or a follower asking for a read index."""
    request_id: int
    query: Any
    deadline: float
    serves_index: bool = False
    """A follower's ReadIndexRequest: answer with the index, not with a query result."""
    round: int = 0
    index: int = 0
    asked: PeerId | None = None
    resend_at: float = math.inf
    """A follower's forwarded read: when to ask the leader again (a message may be lost)."""


@dataclass(slots=True)
class _IncomingSnapshot:
    key: tuple[PeerId, int, int, int, int]
    members: tuple[PeerId, ...]
    data: bytearray = field(default_factory=bytearray)


class RaftNode:
    """One Raft server; see the module docstring for the protocol and the persist rule."""

    def __init__(
        self,
        local: PeerId,
        durable: DurableState,
        state_machine: StateMachine,
        now: float,
        *,
        rng: random.Random,
        params: RaftParams | None = None,
    ) -> None:
        """Start (or restart) from `durable`, as loaded from storage, always as a follower.

        Raises LightboxError if the stored snapshot cannot be restored.
        """
        self._local = local
        self._params = params if params is not None else RaftParams()
        self._rng = rng
        self._sm = state_machine
        self._term = durable.term
        self._voted_for = durable.voted_for
        self._snapshot = durable.snapshot
        self._log = RaftLog(durable.snapshot, durable.entries)
        self._sm.restore(_decode_snapshot(durable.snapshot.data))
        self._commit = self._applied = durable.snapshot.index
        self._role = Role.FOLLOWER
        self._leader: PeerId | None = None
        self._last_contact = -math.inf
        self._election_deadline = 0.0
        self._reset_election_timer(now)
        self._votes: set[PeerId] = set()
        # leader state
        self._progress: dict[PeerId, _Progress] = {}
        self._term_start = 0
        self._round = 0
        self._need_round = False
        self._quorum_deadline = math.inf
        self._writes: dict[int, _Write] = {}
        # reads: waiting for a leadership round (leader), for the leader's answer (follower),
        # for the state machine to catch up (both)
        self._confirming: list[_Read] = []
        self._forwarded: dict[int, _Read] = {}
        self._waiting: list[_Read] = []
        self._next_read_id = 0
        self._incoming: _IncomingSnapshot | None = None
        # what the current call changed, for its Persist
        self._hard_dirty = False
        self._dirty_from: int | None = None
        self._snapshot_dirty = False
        self._actions: list[RaftAction] = []

    # -- what the shell and the dashboard read ---------------------------------------------

    @property
    def local(self) -> PeerId:
        return self._local

    @property
    def params(self) -> RaftParams:
        return self._params

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> PeerId | None:
        return self._voted_for

    @property
    def leader(self) -> PeerId | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def members(self) -> tuple[PeerId, ...]:
        return self._log.members

    @property
    def log(self) -> RaftLog:
        """The log itself, for inspection only: never change it from outside."""
        return self._log

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def state_machine(self) -> StateMachine:
        return self._sm

    def status(self) -> RaftStatus:
        return RaftStatus(
            self._local,
            self._role,
            self._term,
            self._leader,
            self._log.members,
            self._commit,
            self._applied,
            self._log.last_index,
            self._log.snapshot_index,
        )

    def durable_state(self) -> DurableState:
        """What storage must hold after the last Persist (used by tests and checks)."""
        return DurableState(
            self._term,
            self._voted_for,
            self._snapshot,
            tuple(self._log.entries(self._log.first_index)),
        )

    def next_deadline(self) -> float:
        """The latest time at which the shell must call `tick` again."""
        if self._role is Role.LEADER:
            deadline = self._quorum_deadline if self._params.check_quorum else math.inf
            interval = self._params.heartbeat_interval
            for progress in self._progress.values():
                deadline = min(deadline, progress.last_sent + interval)
        else:
            deadline = self._election_deadline
        for read in self._reads():
            deadline = min(deadline, read.deadline, read.resend_at)
        return deadline

    # -- events --------------------------------------------------------------------------------

    def tick(self, now: float) -> list[RaftAction]:
        """Time has passed: stand for election, send heartbeats, check quorum, expire reads."""
        self._actions = []
        if self._role is Role.LEADER:
            self._leader_tick(now)
        elif now >= self._election_deadline:
            if self._may_stand():
                self._start_election(now)
            else:
                self._reset_election_timer(now)  # not a voter: wait to be added
        self._expire_reads(now)
        self._resend_read_index(now)
        return self._finish(now)

    def receive(self, peer: PeerId, body: Any, now: float) -> list[RaftAction]:
        """A body arrived from `peer` under `PROTOCOL`."""
        self._actions = []
        try:
            message = parse_message(body)
        except MalformedMessage as exc:
            self._report(peer, str(exc))
            return self._finish(now)
        if peer == self._local and not isinstance(message, ClientRequest):
            self._report(peer, "raft message from this node to itself")
            return self._finish(now)
        handler = _HANDLERS.get(type(message))
        if handler is None:
            self._report(peer, f"{type(message).__name__} is not for a raft member")
        else:
            handler(self, peer, message, now)
        return self._finish(now)

    def propose(self, command: Any, now: float, *, request_id: int) -> list[RaftAction]:
        """A local client's write; ends with `RequestDone(request_id, …)` (later or now)."""
        self._actions = []
        self._propose(None, request_id, command, now)
        return self._finish(now)

    def read(self, query: Any, now: float, *, request_id: int) -> list[RaftAction]:
        """A local client's linearizable read; ends with `RequestDone(request_id, …)`."""
        self._actions = []
        self._read(None, request_id, query, now)
        return self._finish(now)

    def add_member(self, peer: PeerId, now: float, *, request_id: int) -> list[RaftAction]:
        """Add one server to the group (leader only); done when the config entry commits."""
        self._actions = []
        self._change_members(request_id, (*self._log.members, peer), now)
        return self._finish(now)

    def remove_member(self, peer: PeerId, now: float, *, request_id: int) -> list[RaftAction]:
        """Remove one server from the group (leader only; the leader itself included)."""
        self._actions = []
        self._change_members(request_id, [m for m in self._log.members if m != peer], now)
        return self._finish(now)

    # -- the end of every call ------------------------------------------------------------------

    def _finish(self, now: float) -> list[RaftAction]:
        if self._role is Role.LEADER:
            if self._need_round:
                self._round += 1
                for peer in self._progress:
                    self._send_append(peer, now)
            self._confirm_reads()
        self._need_round = False
        self._serve_reads()
        actions = self._actions
        self._actions = []
        persist = self._take_persist()
        if persist is not None:
            actions.insert(0, persist)
        return actions

    def _take_persist(self) -> Persist | None:
        if not (self._hard_dirty or self._dirty_from is not None or self._snapshot_dirty):
            return None
        log = self._log
        truncate_from = self._dirty_from
        start, entries = 0, ()
        if truncate_from is not None:
            start = max(truncate_from, log.first_index)
            entries = tuple(log.entries(start)) if start <= log.last_index else ()
        persist = Persist(
            self._term,
            self._voted_for,
            self._snapshot if self._snapshot_dirty else None,
            truncate_from,
            start,
            entries,
        )
        self._hard_dirty = False
        self._dirty_from = None
        self._snapshot_dirty = False
        return persist

    def _log_changed_from(self, index: int) -> None:
        self._dirty_from = index if self._dirty_from is None else min(self._dirty_from, index)

    # -- sending -----------------------------------------------------------------------------

    def _send(self, peer: PeerId, message: Any) -> None:
        self._actions.append(Send(peer, PROTOCOL, message.to_wire()))

    def _report(self, peer: PeerId, detail: str) -> None:
        self._actions.append(PeerEvent(peer, "invalid_message", detail[:200]))

    def _reply(self, origin: PeerId | None, request_id: int, outcome: Outcome) -> None:
        if origin is None:
            self._actions.append(RequestDone(request_id, outcome))
            return
        result = outcome.result
        if outcome.status is not Status.OK:
            result = str(result)[:1000]
        response = ClientResponse(request_id, outcome.status, result, outcome.leader)
        self._actions.append(Send(origin, CLIENT_PROTOCOL, response.to_wire()))

    def _not_leader(self, why: str) -> Outcome:
        if self._leader is not None and self._leader != self._local:
            return Outcome(Status.REDIRECT, f"not the leader; ask {self._leader}", self._leader)
        return Outcome(Status.RETRY, why)

    # -- terms, roles, timers -------------------------------------------------------------------

    def _reset_election_timer(self, now: float) -> None:
        p = self._params
        self._election_deadline = now + self._rng.uniform(
            p.election_timeout_min, p.election_timeout_max
        )

    def _set_term(self, term: int) -> None:
        self._term = term
        self._voted_for = None
        self._hard_dirty = True

    def _set_leader(self, leader: PeerId | None) -> None:
        if leader != self._leader:
            self._leader = leader
            self._actions.append(LeaderChanged(self._term, leader))

    def _become_follower(self, now: float, term: int, leader: PeerId | None) -> None:
        """Follow `leader` (None: not known yet) in `term`, which is not below ours."""
        if term > self._term:
            self._set_term(term)
        if self._role is Role.LEADER:
            self._abandon_leadership()
        if self._role is not Role.FOLLOWER:
            self._role = Role.FOLLOWER
            self._reset_election_timer(now)
        self._votes = set()
        self._set_leader(leader)

    def _abandon_leadership(self) -> None:
        """Leadership is lost: pending writes have an unknown outcome, unconfirmed reads fail."""
        for index in sorted(self._writes):
            write = self._writes[index]
            self._reply(
                write.origin,
                write.request_id,
                Outcome(Status.RETRY, "leadership was lost; the write may or may not commit"),
            )
        self._writes.clear()
        for read in self._confirming:
            self._fail_read(read, "leadership was lost before the read was confirmed")
        self._confirming.clear()
        self._progress.clear()
        self._quorum_deadline = math.inf

    def _start_election(self, now: float) -> None:
        self._set_term(self._term + 1)
        self._voted_for = self._local
        self._role = Role.CANDIDATE
        self._set_leader(None)
        self._votes = {self._local}
        self._reset_election_timer(now)
        if self._has_quorum(self._votes):
            self._become_leader(now)
            return
        vote = RequestVote(self._term, self._log.last_index, self._log.last_term)
        for peer in self._log.members:
            if peer != self._local:
                self._send(peer, vote)

    def _may_stand(self) -> bool:
        """Whether to stand for election: as a member, or while our own removal is uncommitted.

        A server whose latest config entry removes it may still hold entries that nobody else
        has; until that entry is committed the group may need it as leader (dissertation
        §4.2.2). Its own vote does not count then (`_has_quorum` counts members only).
        """
        log = self._log
        if self._local in log.members:
            return True
        return bool(log.members) and log.config_index > self._commit

    def _has_quorum(self, peers: set[PeerId]) -> bool:
        members = self._log.members
        return sum(1 for m in members if m in peers) >= len(members) // 2 + 1

    def _become_leader(self, now: float) -> None:
        self._role = Role.LEADER
        self._votes = set()
        self._set_leader(self._local)
        self._progress = {}
        self._sync_progress(now)
        self._term_start = self._append_as_leader(LogEntry.noop(self._term), now)
        self._quorum_deadline = now + self._params.election_timeout_max
        for read in self._forwarded.values():  # asked of a leader that is gone: ours now
            read.resend_at = math.inf
            self._confirm_later(read)
        self._forwarded.clear()
        for peer in self._progress:
            self._send_append(peer, now)
        self._advance_commit(now)

    def _sync_progress(self, now: float) -> None:
        """One progress record per member other than this node, as the membership changes."""
        members = self._log.members
        for peer in members:
            if peer != self._local and peer not in self._progress:
                self._progress[peer] = _Progress(self._log.last_index + 1, last_ack=now)
        for peer in [p for p in self._progress if p not in members]:
            del self._progress[peer]

    def _leader_is_current(self, now: float) -> bool:
        """Whether this node has heard from a live leader within the minimum election timeout."""
        if self._role is Role.LEADER:
            return True
        return (
            self._leader is not None
            and now - self._last_contact < self._params.election_timeout_min
        )

    def _leader_tick(self, now: float) -> None:
        p = self._params
        if p.check_quorum and now >= self._quorum_deadline:
            recent = now - p.election_timeout_max
            heard = {peer for peer, prog in self._progress.items() if prog.last_ack >= recent}
            heard.add(self._local)
            if not self._has_quorum(heard):
                self._become_follower(now, self._term, None)
                return
            self._quorum_deadline = now + p.election_timeout_max
        for peer, progress in self._progress.items():
            if now >= progress.last_sent + p.heartbeat_interval:
                self._send_append(peer, now)

    # -- elections ------------------------------------------------------------------------------

    def _on_request_vote(self, peer: PeerId, m: RequestVote, now: float) -> None:
        if m.term > self._term and self._leader_is_current(now):
            # §4.2.3: a live leader exists; a removed or cut-off server must not depose it.
            self._send(peer, RequestVoteReply(self._term, False))
            return
        if m.term > self._term:
            self._become_follower(now, m.term, None)
        log = self._log
        up_to_date = (m.last_log_term, m.last_log_index) >= (log.last_term, log.last_index)
        granted = (
            m.term == self._term
            and self._role is Role.FOLLOWER
            and self._voted_for in (None, peer)
            and up_to_date
        )
        if granted:
            if self._voted_for is None:
                self._voted_for = peer
                self._hard_dirty = True
            self._reset_election_timer(now)
        self._send(peer, RequestVoteReply(self._term, granted))

    def _on_vote_reply(self, peer: PeerId, m: RequestVoteReply, now: float) -> None:
        if m.term > self._term:
            self._become_follower(now, m.term, None)
            return
        if self._role is not Role.CANDIDATE or m.term != self._term or not m.granted:
            return
        self._votes.add(peer)
        if self._has_quorum(self._votes):
            self._become_leader(now)

    # -- replication: follower side -------------------------------------------------------------

    def _follow(self, peer: PeerId, term: int, now: float) -> bool:
        """Accept `peer` as leader of `term` (>= ours). False if that cannot be true."""
        if term == self._term and self._role is Role.LEADER:
            self._report(peer, f"claims to lead term {term}, which this node leads")
            return False
        if term == self._term and self._leader is not None and self._leader != peer:
            self._report(peer, f"claims to lead term {term}, led by {self._leader.short}")
            return False
        self._become_follower(now, term, peer)
        self._last_contact = now
        self._reset_election_timer(now)
        return True

    def _on_append(self, peer: PeerId, m: AppendEntries, now: float) -> None:
        if m.term < self._term:
            self._send(peer, AppendEntriesReply(self._term, False, 0, m.round))
            return
        if not self._follow(peer, m.term, now):
            return
        log = self._log
        prev, entries = m.prev_index, m.entries
        if prev < log.snapshot_index:
            # Entries up to the snapshot are committed, so they match the leader's already.
            skip = log.snapshot_index - prev
            entries = entries[skip:]
            prev = log.snapshot_index
        elif log.term_at(prev) != m.prev_term:
            # where to try next: past our end, or the start of the conflicting term's run
            short = prev > log.last_index
            hint = log.last_index + 1 if short else log.first_index_of_term_at(prev)
            self._send(peer, AppendEntriesReply(self._term, False, hint, m.round))
            return
        for offset, entry in enumerate(entries):
            index = prev + 1 + offset
            if index <= log.last_index:
                if log.term_at(index) == entry.term:
                    continue
                if index <= self._commit:
                    self._report(peer, f"tried to overwrite committed entry {index}")
                    return
                log.truncate_from(index)
            log.append(entries[offset:])
            self._log_changed_from(index)
            break
        last_new = prev + len(entries)
        if m.leader_commit > self._commit:
            self._commit_to(min(m.leader_commit, last_new), now)
        self._send(peer, AppendEntriesReply(self._term, True, last_new, m.round))

    def _on_install_snapshot(self, peer: PeerId, m: InstallSnapshot, now: float) -> None:
        if m.term < self._term:
            self._send(peer, InstallSnapshotReply(self._term, m.last_index, 0, m.round))
            return
        if not self._follow(peer, m.term, now):
            return
        if m.last_index <= self._commit:
            # What it covers is already committed here: nothing to install.
            self._send(peer, InstallSnapshotReply(self._term, m.last_index, m.size, m.round))
            return
        key = (peer, m.term, m.last_index, m.last_term, m.size)
        incoming = self._incoming
        if m.offset == 0:
            if m.size > self._params.max_snapshot_bytes:
                self._report(peer, f"snapshot of {m.size} bytes is over the limit")
                return
            incoming = self._incoming = _IncomingSnapshot(key, m.members)
        elif incoming is None or incoming.key != key or m.offset != len(incoming.data):
            held = len(incoming.data) if incoming is not None and incoming.key == key else 0
            self._send(peer, InstallSnapshotReply(self._term, m.last_index, held, m.round))
            return
        incoming.data += m.chunk
        received = len(incoming.data)
        if received == m.size:
            self._incoming = None
            snapshot = Snapshot(m.last_index, m.last_term, incoming.members, bytes(incoming.data))
            if not self._install(peer, snapshot):
                received = 0
        self._send(peer, InstallSnapshotReply(self._term, m.last_index, received, m.round))

    def _install(self, peer: PeerId, snapshot: Snapshot) -> bool:
        try:
            self._sm.restore(_decode_snapshot(snapshot.data))
        except (LightboxError, WireError) as exc:
            self._report(peer, f"snapshot {snapshot.index} does not restore: {exc}")
            return False
        if not snapshot.data:
            snapshot = Snapshot(snapshot.index, snapshot.term, snapshot.members, None)
        keeps_suffix = self._log.term_at(snapshot.index) == snapshot.term
        self._log.compact(snapshot)
        if not keeps_suffix:
            self._log_changed_from(snapshot.index + 1)
        self._snapshot = snapshot
        self._snapshot_dirty = True
        self._commit = max(self._commit, snapshot.index)
        self._applied = snapshot.index
        return True

    # -- replication: leader side ---------------------------------------------------------------

    def _append_as_leader(self, entry: LogEntry, now: float) -> int:
        self._log.append([entry])
        index = self._log.last_index
        self._log_changed_from(index)
        if entry.kind is EntryKind.CONFIG:
            self._sync_progress(now)
        return index

    def _send_append(self, peer: PeerId, now: float) -> None:
        progress = self._progress[peer]
        progress.last_sent = now
        progress.awaiting = True
        log = self._log
        if progress.next_index <= log.snapshot_index:
            self._send_snapshot_chunk(peer, progress)
            return
        prev = progress.next_index - 1
        p = self._params
        entries = log.batch(progress.next_index, p.max_entries_per_append, p.max_append_bytes)
        prev_term = log.term_at(prev)
        assert prev_term is not None
        self._send(
            peer,
            AppendEntries(self._term, prev, prev_term, self._commit, self._round, tuple(entries)),
        )

    def _send_snapshot_chunk(self, peer: PeerId, progress: _Progress) -> None:
        snapshot = self._snapshot
        if progress.snapshot_index != snapshot.index:
            progress.snapshot_index = snapshot.index
            progress.snapshot_offset = 0
        data = snapshot.data or b""
        offset = progress.snapshot_offset
        chunk = data[offset : offset + self._params.snapshot_chunk_bytes]
        self._send(
            peer,
            InstallSnapshot(
                self._term,
                snapshot.index,
                snapshot.term,
                snapshot.members,
                len(data),
                offset,
                chunk,
                self._round,
            ),
        )

    def _replicate(self, now: float) -> None:
        """Send new entries to every follower that has nothing unanswered in flight."""
        for peer, progress in self._progress.items():
            if not progress.awaiting:
                self._send_append(peer, now)

    def _leader_progress(self, peer: PeerId, term: int, now: float) -> _Progress | None:
        """The follower's progress record if this reply is for this node as leader now."""
        if term > self._term:
            self._become_follower(now, term, None)
            return None
        if self._role is not Role.LEADER or term < self._term:
            return None
        progress = self._progress.get(peer)
        if progress is None:
            return None
        progress.last_ack = now
        progress.awaiting = False
        return progress

    def _on_append_reply(self, peer: PeerId, m: AppendEntriesReply, now: float) -> None:
        progress = self._leader_progress(peer, m.term, now)
        if progress is None:
            return
        progress.acked_round = max(progress.acked_round, m.round)
        if m.success:
            if m.index > self._log.last_index:
                self._report(peer, f"acknowledged entry {m.index}, beyond the log")
                return
            progress.match_index = max(progress.match_index, m.index)
            progress.next_index = max(progress.next_index, progress.match_index + 1)
            self._advance_commit(now)
        else:
            floor = progress.match_index + 1
            progress.next_index = max(floor, min(progress.next_index - 1, m.index))
        if progress.next_index <= self._log.last_index and self._role is Role.LEADER:
            self._send_append(peer, now)

    def _on_snapshot_reply(self, peer: PeerId, m: InstallSnapshotReply, now: float) -> None:
        progress = self._leader_progress(peer, m.term, now)
        if progress is None:
            return
        progress.acked_round = max(progress.acked_round, m.round)
        snapshot = self._snapshot
        if m.last_index != snapshot.index or progress.snapshot_index != snapshot.index:
            return  # about an older snapshot; the next heartbeat sends the current one
        if m.received >= snapshot.size:
            progress.snapshot_index = -1
            progress.match_index = max(progress.match_index, snapshot.index)
            progress.next_index = max(progress.next_index, progress.match_index + 1)
            self._advance_commit(now)
        else:
            progress.snapshot_offset = m.received
        if self._role is Role.LEADER:
            self._send_append(peer, now)

    def _advance_commit(self, now: float) -> None:
        """Commit the highest index held by a majority, if it is of this leader's term."""
        members = self._log.members
        if self._role is not Role.LEADER or not members:
            return
        last = self._log.last_index
        matches = sorted(
            (
                last
                if member == self._local
                else (self._progress[member].match_index if member in self._progress else 0)
            )
            for member in members
        )
        # the (majority)-th highest: held by at least len // 2 + 1 members
        candidate = matches[(len(matches) - 1) // 2]
        if candidate > self._commit and self._log.term_at(candidate) == self._term:
            self._commit_to(candidate, now)

    def _commit_to(self, index: int, now: float) -> None:
        if index <= self._commit:
            return
        self._commit = index
        log = self._log
        while self._applied < self._commit:
            index = self._applied + 1
            entry = log.entry(index)
            if entry.kind is EntryKind.COMMAND:
                assert entry.proposer is not None
                context = ApplyContext(index, entry.term, entry.proposer, log.members_at(index))
                result = self._sm.apply(entry.command, context)
            elif entry.kind is EntryKind.CONFIG:
                result = {"members": [str(member) for member in entry.members]}
            else:
                result = None
            self._applied = index
            write = self._writes.pop(index, None)
            if write is not None:
                if write.term == entry.term:
                    outcome = Outcome(Status.OK, result, self._local)
                else:
                    outcome = Outcome(Status.RETRY, "the write was overwritten by a new leader")
                self._reply(write.origin, write.request_id, outcome)
        if (
            self._role is Role.LEADER
            and self._local not in log.members
            and log.config_index <= self._commit
        ):
            # Our own removal is committed: hand over by stepping down (dissertation §4.2.2).
            self._become_follower(now, self._term, None)
        self._maybe_snapshot()

    def _maybe_snapshot(self) -> None:
        log = self._log
        if self._applied - log.snapshot_index < self._params.snapshot_threshold:
            return
        index = self._applied
        term = log.term_at(index)
        assert term is not None
        data = pack(self._sm.snapshot(), SNAPSHOT_LIMITS)
        snapshot = Snapshot(index, term, log.members_at(index), data)
        log.compact(snapshot)
        self._snapshot = snapshot
        self._snapshot_dirty = True

    # -- client requests -------------------------------------------------------------------------

    def _busy(self) -> bool:
        pending = len(self._writes) + len(self._confirming)
        pending += len(self._forwarded) + len(self._waiting)
        return pending >= self._params.max_pending_requests

    def _propose(self, origin: PeerId | None, request_id: int, payload: Any, now: float) -> None:
        if self._role is not Role.LEADER:
            self._reply(origin, request_id, self._not_leader("no leader is known yet"))
            return
        if self._busy():
            self._reply(origin, request_id, Outcome(Status.RETRY, "busy; try again shortly"))
            return
        try:
            command = self._sm.validate_command(payload)
        except _INVALID as exc:
            self._reply(origin, request_id, Outcome(Status.REJECTED, str(exc)))
            return
        entry = LogEntry.of_command(self._term, origin or self._local, command)
        if entry_size(entry) > self._params.max_command_bytes:
            self._reply(
                origin,
                request_id,
                Outcome(Status.REJECTED, "command is too large; only ids belong in the registry"),
            )
            return
        index = self._append_as_leader(entry, now)
        self._writes[index] = _Write(origin, request_id, self._term)
        self._replicate(now)
        self._advance_commit(now)

    def _change_members(self, request_id: int, members: Iterable[PeerId], now: float) -> None:
        new = canonical_members(members)
        log = self._log
        if self._role is not Role.LEADER:
            self._reply(None, request_id, self._not_leader("no leader is known yet"))
            return
        if new == log.members:
            self._reply(None, request_id, Outcome(Status.OK, {"members": [str(m) for m in new]}))
            return
        if not new or len(new) > MAX_MEMBERS:
            why = f"a group has 1 to {MAX_MEMBERS} members"
            self._reply(None, request_id, Outcome(Status.REJECTED, why))
            return
        if self._commit < self._term_start:
            why = "the leader has not committed an entry of its term yet; try again shortly"
            self._reply(None, request_id, Outcome(Status.RETRY, why))
            return
        if log.config_index > self._commit:
            why = "another membership change is still being committed; try again shortly"
            self._reply(None, request_id, Outcome(Status.RETRY, why))
            return
        index = self._append_as_leader(LogEntry.config(self._term, new), now)
        self._writes[index] = _Write(None, request_id, self._term)
        self._replicate(now)
        self._advance_commit(now)

    def _on_client_request(self, peer: PeerId, m: ClientRequest, now: float) -> None:
        if m.kind is RequestKind.WRITE:
            self._propose(peer, m.request_id, m.payload, now)
        else:
            self._read(peer, m.request_id, m.payload, now)

    def _on_client_response(self, peer: PeerId, m: ClientResponse, now: float) -> None:
        self._report(peer, "a client response sent to a raft member")

    # -- reads (read-index) ----------------------------------------------------------------------

    def _reads(self) -> Iterable[_Read]:
        yield from self._confirming
        yield from self._forwarded.values()
        yield from self._waiting

    def _read(self, origin: PeerId | None, request_id: int, payload: Any, now: float) -> None:
        if self._busy():
            self._reply(origin, request_id, Outcome(Status.RETRY, "busy; try again shortly"))
            return
        try:
            query = self._sm.validate_query(payload)
        except _INVALID as exc:
            self._reply(origin, request_id, Outcome(Status.REJECTED, str(exc)))
            return
        read = _Read(origin, request_id, query, now + self._params.read_timeout)
        if self._role is Role.LEADER:
            self._confirm_later(read)
        elif self._leader is not None:
            read_id = self._next_read_id
            self._next_read_id += 1
            self._forwarded[read_id] = read
            self._ask_read_index(read_id, read, self._leader, now)
        else:
            self._reply(origin, request_id, Outcome(Status.RETRY, "no leader is known yet"))

    def _ask_read_index(self, read_id: int, read: _Read, leader: PeerId, now: float) -> None:
        read.asked = leader
        read.resend_at = now + 3 * self._params.heartbeat_interval
        self._send(leader, ReadIndexRequest(read_id))

    def _resend_read_index(self, now: float) -> None:
        """Ask again, whoever leads now, for read indexes not answered in a few heartbeats."""
        for read_id, read in self._forwarded.items():
            if read.resend_at <= now:
                leader = self._leader
                if leader is None or leader == self._local:
                    read.resend_at = now + 3 * self._params.heartbeat_interval
                else:
                    self._ask_read_index(read_id, read, leader, now)

    def _confirm_later(self, read: _Read) -> None:
        """Serve `read` at the current commit index once a fresh round confirms leadership."""
        read.index = self._commit
        read.round = self._round + 1
        self._need_round = True
        self._confirming.append(read)

    def _on_read_index(self, peer: PeerId, m: ReadIndexRequest, now: float) -> None:
        if self._role is not Role.LEADER or self._busy():
            self._send(peer, ReadIndexReply(m.read_id, None))
            return
        read = _Read(peer, m.read_id, None, now + self._params.read_timeout, serves_index=True)
        self._confirm_later(read)

    def _on_read_index_reply(self, peer: PeerId, m: ReadIndexReply, now: float) -> None:
        read = self._forwarded.get(m.read_id)
        if read is None or read.asked != peer:
            return  # late, duplicated, or from a leader we no longer asked
        del self._forwarded[m.read_id]
        read.resend_at = math.inf
        if m.index is None:
            hint = self._leader if self._leader not in (None, peer) else None
            outcome = Outcome(Status.RETRY, "the leader asked has stepped down", hint)
            self._reply(read.origin, read.request_id, outcome)
            return
        read.index = m.index
        self._waiting.append(read)

    def _confirm_reads(self) -> None:
        if not self._confirming or self._commit < self._term_start:
            return  # a new leader serves reads only once its noop entry is committed
        members = self._log.members
        acks = sorted(
            (
                self._round
                if member == self._local
                else (self._progress[member].acked_round if member in self._progress else 0)
            )
            for member in members
        )
        confirmed = acks[(len(acks) - 1) // 2] if acks else 0
        pending = []
        for read in self._confirming:
            if read.round > confirmed:
                pending.append(read)
                continue
            index = max(read.index, self._term_start)
            if read.serves_index:
                assert read.origin is not None
                self._send(read.origin, ReadIndexReply(read.request_id, index))
            else:
                read.index = index
                self._waiting.append(read)
        self._confirming = pending

    def _serve_reads(self) -> None:
        if not self._waiting:
            return
        pending = []
        for read in self._waiting:
            if read.index > self._applied:
                pending.append(read)
                continue
            try:
                outcome = Outcome(Status.OK, self._sm.query(read.query), self._leader)
            except LightboxError as exc:
                outcome = Outcome(Status.REJECTED, str(exc))
            self._reply(read.origin, read.request_id, outcome)
        self._waiting = pending

    def _fail_read(self, read: _Read, why: str) -> None:
        if read.serves_index:
            assert read.origin is not None
            self._send(read.origin, ReadIndexReply(read.request_id, None))
        else:
            self._reply(read.origin, read.request_id, Outcome(Status.RETRY, why, self._leader))

    def _expire_reads(self, now: float) -> None:
        why = "the read could not be confirmed in time; try again"
        for read in [r for r in self._confirming if r.deadline <= now]:
            self._confirming.remove(read)
            self._fail_read(read, why)
        for read_id in [i for i, r in self._forwarded.items() if r.deadline <= now]:
            self._fail_read(self._forwarded.pop(read_id), why)
        for read in [r for r in self._waiting if r.deadline <= now]:
            self._waiting.remove(read)
            self._fail_read(read, why)


def _decode_snapshot(data: bytes | None) -> Any:
    """The state machine's snapshot value; None (or no bytes) is its initial state."""
    if not data:
        return None
    return unpack(data, SNAPSHOT_LIMITS)


_HANDLERS: dict[type, Any] = {
    RequestVote: RaftNode._on_request_vote,
    RequestVoteReply: RaftNode._on_vote_reply,
    AppendEntries: RaftNode._on_append,
    AppendEntriesReply: RaftNode._on_append_reply,
    InstallSnapshot: RaftNode._on_install_snapshot,
    InstallSnapshotReply: RaftNode._on_snapshot_reply,
    ReadIndexRequest: RaftNode._on_read_index,
    ReadIndexReply: RaftNode._on_read_index_reply,
    ClientRequest: RaftNode._on_client_request,
    ClientResponse: RaftNode._on_client_response,
}


__all__ = [
    "CLIENT_PROTOCOL",
    "PROTOCOL",
    "ApplyContext",
    "LeaderChanged",
    "Outcome",
    "RaftAction",
    "RaftNode",
    "RaftParams",
    "RaftStatus",
    "RequestDone",
    "Role",
    "StateMachine",
    "Status",
]
