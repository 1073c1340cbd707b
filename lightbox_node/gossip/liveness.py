"""SWIM failure detection: probe one member per period, probe indirectly, suspect, refute.

A pure core (no trio, no sockets): the shell calls `tick(now)` no later than
`next_deadline()`, hands every `"swim"` body that arrives on a peer link to
`receive(peer, body, now)`, and carries out the actions both return.

Each protocol period the node pings one member, taken in round-robin order over a list that
is reshuffled every round. Without an ACK within `probe_timeout` it asks `indirect_probes`
other members to ping the target for it (PING-REQ) and relay the ACK, so one slow or broken
link does not look like a dead member. Still nothing by the end of the period: the target
becomes SUSPECT. A suspect that does not refute within its suspicion timeout becomes DEAD.

Membership updates (`alive`/`suspect`/`dead`, each with the member's incarnation) ride
piggybacked on pings and acks, fewest-sent first, each sent about
`retransmit_mult * ceil(log10(N + 1))` times. A member that hears it is suspected (or dead)
refutes by raising its own incarnation and spreading `alive`. Anything sent to a member we
hold as suspect or dead carries that verdict first, so it learns, and refutes, at once.

Suspicion timeout, for a group of N members (ALIVE or SUSPECT, this node included), as in
memberlist with its Lifeguard extension::

    min_timeout(N) = suspicion_mult * log10(max(N, 1) + 1) * protocol_period
    max_timeout(N) = suspicion_max_mult * min_timeout(N)
    timeout(C)     = max(min_timeout, max_timeout - (max_timeout - min_timeout)
                                                    * log(C + 1) / log(K + 1))

C counts the members other than the first accuser whose own probes also failed (every
`suspect` update names its accuser), K is `suspicion_confirmations` (0 when N - 2 < K, and
then the timeout is simply min_timeout). A suspicion raised by one member whose link to the
target is bad stays long enough for the refutation to come back; a member that truly failed
is soon confirmed by others and declared DEAD after min_timeout. With
`suspicion_max_mult=1` this is plain SWIM with the fixed `min_timeout(N)`.

Detection bound: every member keeps probing everyone itself, so a member of a static group
of N that stops answering is declared DEAD by every live member within::

    detection_bound(N) = 2 * (N - 1) * protocol_period + max_timeout(N)

(a member is probed once per round of N - 1 periods, so at most 2(N - 1) - 1 periods pass
between two probes of it, plus the failed probe's own period, plus the longest suspicion).
In practice the suspicion spreads by gossip, others confirm it within a few periods, and
every member declares the failure within about min_timeout(N) plus a few periods.

Wire bodies (msgpack arrays; keys are raw 32-byte Ed25519 public keys)::

    ["ping",     seq, target_key, updates]   ack me
    ["ping-req", seq, target_key, updates]   ping target for me; relay its ack as ["ack", seq]
    ["ack",      seq, updates]
    updates = [["alive", member_key, incarnation],
               ["suspect", member_key, incarnation, accuser_key],
               ["dead", member_key, incarnation], ...]

Malformed bodies are dropped whole and reported as `PeerEvent(kind="invalid_message")`.
Updates about members the shell never added are ignored: membership itself comes from the
shell (discovery, links); this module only says which of those members are alive.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Any

from lightbox_node.gossip.actions import PeerEvent, Send
from lightbox_node.identity import PeerId

PROTOCOL = "swim"
"""The protocol tag of these bodies on a peer link."""

MAX_INCARNATION = 2**63 - 1
MAX_SEQ = 2**63 - 1
_KEY_LEN = 32


class MemberState(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class MemberAlive:
    """A member we held as suspect or dead has refuted: it is alive again."""

    peer: PeerId


@dataclass(frozen=True, slots=True)
class MemberSuspect:
    """A member did not answer a probe (ours or someone's): it may have failed."""

    peer: PeerId


@dataclass(frozen=True, slots=True)
class MemberDead:
    """A member stayed suspected past the suspicion timeout: treat it as gone."""

    peer: PeerId


LivenessAction = Send | PeerEvent | MemberAlive | MemberSuspect | MemberDead


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What this node believes about one member, for the API and the dashboard."""

    peer: PeerId
    state: MemberState
    incarnation: int
    since: float
    """When this node last changed the member's state (or added it)."""


@dataclass(frozen=True, slots=True)
class LivenessParams:
    """Timing and size knobs; the defaults follow memberlist's LAN profile."""

    protocol_period: float = 1.0
    """Seconds between two probes started by this node."""
    probe_timeout: float = 0.5
    """Seconds to wait for a direct ACK before asking others to probe (PING-REQ)."""
    indirect_probes: int = 3
    """How many members are asked to probe on our behalf (k); 0 disables indirect probes."""
    suspicion_mult: float = 4.0
    """Scales the shortest suspicion timeout (see `suspicion_timeout`)."""
    suspicion_max_mult: float = 6.0
    """A suspicion nobody else confirms lasts this many times the shortest timeout."""
    suspicion_confirmations: int = 2
    """Independent confirmations that shrink a suspicion's timeout to the shortest."""
    retransmit_mult: int = 4
    """Each update is piggybacked retransmit_mult * ceil(log10(N + 1)) times (λ log N)."""
    max_piggyback: int = 8
    """Updates carried by one message."""
    max_broadcasts: int = 512
    """Updates waiting to be piggybacked; beyond it the most-sent are dropped."""
    max_updates_in: int = 64
    """An incoming message with more updates than this is malformed."""
    max_relays: int = 64
    """Indirect probes run for others at once; further PING-REQs are ignored."""

    def __post_init__(self) -> None:
        if not self.protocol_period > 0:
            raise ValueError(f"protocol_period must be positive, not {self.protocol_period}")
        if not 0 < self.probe_timeout < self.protocol_period:
            raise ValueError(
                f"probe_timeout must be positive and shorter than protocol_period "
                f"({self.protocol_period}), not {self.probe_timeout}"
            )
        if self.indirect_probes < 0:
            raise ValueError(f"indirect_probes must be at least 0, not {self.indirect_probes}")
        if not self.suspicion_mult > 0:
            raise ValueError(f"suspicion_mult must be positive, not {self.suspicion_mult}")
        if not self.suspicion_max_mult >= 1:
            raise ValueError(
                f"suspicion_max_mult must be at least 1, not {self.suspicion_max_mult}"
            )
        if self.suspicion_confirmations < 0:
            raise ValueError(
                f"suspicion_confirmations must be at least 0, not {self.suspicion_confirmations}"
            )
        for name in ("retransmit_mult", "max_piggyback", "max_broadcasts", "max_updates_in"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_relays < 0:
            raise ValueError(f"max_relays must be at least 0, not {self.max_relays}")


def suspicion_timeout(group_size: int, params: LivenessParams) -> float:
    """The shortest time a member stays SUSPECT before DEAD, in a group of `group_size`.

    `suspicion_mult * log10(max(N, 1) + 1) * protocol_period`: it grows with log N because
    news of a suspicion, and of its refutation, takes O(log N) periods to spread.
    """
    return params.suspicion_mult * math.log10(max(group_size, 1) + 1) * params.protocol_period


def max_suspicion_timeout(group_size: int, params: LivenessParams) -> float:
    """The longest suspicion: one that nobody but its first accuser confirms."""
    if _expected_confirmations(group_size, params) < 1:
        return suspicion_timeout(group_size, params)
    return params.suspicion_max_mult * suspicion_timeout(group_size, params)


def confirmed_suspicion_timeout(
    group_size: int, confirmations: int, params: LivenessParams
) -> float:
    """Lifeguard's timeout after `confirmations` independent accusers beyond the first."""
    shortest = suspicion_timeout(group_size, params)
    expected = _expected_confirmations(group_size, params)
    if expected < 1:
        return shortest
    longest = params.suspicion_max_mult * shortest
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(shortest, longest - (longest - shortest) * fraction)


def _expected_confirmations(group_size: int, params: LivenessParams) -> int:
    # Too few others to confirm anything: do not wait for confirmations (as memberlist).
    k = params.suspicion_confirmations
    return 0 if group_size - 2 < k else k


def retransmit_limit(group_size: int, params: LivenessParams) -> int:
    """How many times one update is piggybacked: `retransmit_mult * ceil(log10(N + 1))`."""
    return params.retransmit_mult * max(1, math.ceil(math.log10(max(group_size, 1) + 1)))


def detection_bound(group_size: int, params: LivenessParams) -> float:
    """Seconds after which every live member has declared a silent member DEAD.

    `2 * (N - 1) * protocol_period + max_suspicion_timeout(N)` for a static group of N
    members with working links (see the module docstring for the reasoning).
    """
    rounds = 2 * max(group_size - 1, 1) * params.protocol_period
    return rounds + max_suspicion_timeout(group_size, params)


class _Malformed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Update:
    state: MemberState
    peer: PeerId
    incarnation: int
    accuser: PeerId | None = None
    """Who probed and got no answer; set on SUSPECT updates only."""

    def to_wire(self) -> list[Any]:
        fields: list[Any] = [self.state.value, self.peer.public_key, self.incarnation]
        if self.accuser is not None:
            fields.append(self.accuser.public_key)
        return fields


@dataclass(frozen=True, slots=True)
class _Message:
    kind: str
    seq: int
    target: PeerId | None
    updates: tuple[_Update, ...]


@dataclass(slots=True)
class _Suspicion:
    started: float
    group_size: int
    accusers: list[PeerId]
    """The first accuser, then each independent confirmation, in order."""
    deadline: float


@dataclass(slots=True)
class _Member:
    state: MemberState
    incarnation: int
    since: float
    suspicion: _Suspicion | None = None


@dataclass(slots=True)
class _Probe:
    target: PeerId
    seq: int
    started: float
    relays: frozenset[PeerId] = frozenset()
    indirect_sent: bool = False
    acked: bool = False


@dataclass(frozen=True, slots=True)
class _Relay:
    """An indirect probe we run for `requester`: our ping `seq` to `target`."""

    requester: PeerId
    requester_seq: int
    target: PeerId
    expires: float


@dataclass(slots=True)
class _Broadcast:
    update: _Update
    transmits: int
    order: int


class Liveness:
    """The SWIM failure detector of one node; see the module docstring for the protocol."""

    def __init__(
        self,
        local: PeerId,
        now: float,
        *,
        rng: random.Random,
        params: LivenessParams | None = None,
        incarnation: int = 0,
    ) -> None:
        """`incarnation` lets a restarted node begin above what others may remember of it."""
        if not 0 <= incarnation <= MAX_INCARNATION:
            raise ValueError(f"incarnation must be in [0, 2^63), not {incarnation}")
        self._local = local
        self._params = params if params is not None else LivenessParams()
        self._rng = rng
        self._incarnation = incarnation
        self._members: dict[PeerId, _Member] = {}
        self._probe_order: list[PeerId] = []
        self._probe_index = 0
        self._probe: _Probe | None = None
        # A random phase, so that nodes started together do not probe in lockstep.
        self._next_probe_at = now + rng.uniform(0.0, self._params.protocol_period)
        self._relays: dict[int, _Relay] = {}
        self._broadcasts: dict[PeerId, _Broadcast] = {}
        self._broadcast_order = 0
        self._seq = 0

    # -- what the shell and the dashboard read ----------------------------------------------

    @property
    def local(self) -> PeerId:
        return self._local

    @property
    def params(self) -> LivenessParams:
        return self._params

    @property
    def incarnation(self) -> int:
        """This node's own incarnation; it rises each time the node refutes a suspicion."""
        return self._incarnation

    @property
    def group_size(self) -> int:
        """N: members not DEAD, this node included."""
        return 1 + sum(1 for m in self._members.values() if m.state is not MemberState.DEAD)

    def state(self, peer: PeerId) -> MemberState | None:
        """What this node believes about `peer`, or None if it is not a member here."""
        member = self._members.get(peer)
        return None if member is None else member.state

    def members(self) -> list[MemberInfo]:
        """Every member with its state, in the order they were added."""
        return [
            MemberInfo(peer, m.state, m.incarnation, m.since) for peer, m in self._members.items()
        ]

    def next_deadline(self) -> float:
        """The latest time at which the shell must call `tick` again."""
        deadline = self._next_probe_at
        probe = self._probe
        if probe is not None and not probe.acked and not probe.indirect_sent:
            deadline = min(deadline, probe.started + self._params.probe_timeout)
        for member in self._members.values():
            if member.suspicion is not None:
                deadline = min(deadline, member.suspicion.deadline)
        return deadline

    # -- membership, as the shell knows it ---------------------------------------------------

    def add_member(self, peer: PeerId, now: float) -> list[LivenessAction]:
        """Start probing `peer` (a peer the shell holds a link to).

        Adding a member already held as DEAD (its link came back) pings it at once, telling
        it that it was declared dead, so that it refutes and is taken back.
        """
        if peer == self._local:
            raise ValueError("a node is not a member of its own probe list")
        member = self._members.get(peer)
        if member is None:
            self._members[peer] = _Member(MemberState.ALIVE, 0, now)
            self._insert_into_probe_order(peer)
            return []
        if member.state is MemberState.DEAD:
            return [self._ping(peer, self._next_seq())]
        return []

    def remove_member(self, peer: PeerId) -> None:
        """Forget `peer` entirely (the shell dropped it, or an operator blocked it)."""
        self._members.pop(peer, None)
        self._broadcasts.pop(peer, None)
        if self._probe is not None and self._probe.target == peer:
            self._probe = None

    # -- events ------------------------------------------------------------------------------

    def tick(self, now: float) -> list[LivenessAction]:
        """Advance timers: indirect probes, the end of a probe period, suspicion timeouts."""
        actions: list[LivenessAction] = []
        self._relays = {seq: r for seq, r in self._relays.items() if r.expires > now}
        for peer, member in list(self._members.items()):
            if member.suspicion is not None and member.suspicion.deadline <= now:
                self._set_dead(peer, member, member.incarnation, now, actions)
        probe = self._probe
        if (
            probe is not None
            and not probe.acked
            and not probe.indirect_sent
            and now >= probe.started + self._params.probe_timeout
        ):
            self._probe_indirectly(probe, actions)
        if now >= self._next_probe_at:
            self._finish_probe(now, actions)
            self._start_probe(now, actions)
            self._next_probe_at += self._params.protocol_period
            if self._next_probe_at <= now:  # the shell fell behind: do not burst probes
                self._next_probe_at = now + self._params.protocol_period
        return actions

    def receive(self, peer: PeerId, body: Any, now: float) -> list[LivenessAction]:
        """Handle one `"swim"` body from `peer`; malformed bodies become a PeerEvent."""
        try:
            message = _parse(body, self._params)
        except _Malformed as exc:
            return [PeerEvent(peer, "invalid_message", f"swim: {exc}")]
        if message.target == peer and message.kind == "ping-req":
            return [PeerEvent(peer, "invalid_message", "swim: ping-req asks to probe the sender")]
        if message.kind == "ping" and message.target != self._local:
            return [PeerEvent(peer, "invalid_message", "swim: ping addressed to another member")]
        actions: list[LivenessAction] = []
        for update in message.updates:
            self._apply(update, now, actions)
        if message.kind == "ping":
            actions.append(self._ack(peer, message.seq))
        elif message.kind == "ping-req":
            self._relay_probe(peer, message, now, actions)
        else:
            self._handle_ack(peer, message.seq, actions)
        return actions

    # -- probing -----------------------------------------------------------------------------

    def _start_probe(self, now: float, actions: list[LivenessAction]) -> None:
        target = self._next_target()
        if target is None:
            return
        seq = self._next_seq()
        self._probe = _Probe(target, seq, now)
        actions.append(self._ping(target, seq))

    def _finish_probe(self, now: float, actions: list[LivenessAction]) -> None:
        probe, self._probe = self._probe, None
        if probe is None or probe.acked:
            return
        member = self._members.get(probe.target)
        if member is not None and member.state is not MemberState.DEAD:
            accusation = _Update(MemberState.SUSPECT, probe.target, member.incarnation, self._local)
            self._suspect(member, accusation, now, actions)

    def _probe_indirectly(self, probe: _Probe, actions: list[LivenessAction]) -> None:
        probe.indirect_sent = True
        candidates = [
            peer
            for peer, member in self._members.items()
            if member.state is MemberState.ALIVE and peer != probe.target
        ]
        count = min(self._params.indirect_probes, len(candidates))
        relays = self._rng.sample(candidates, count)
        probe.relays = frozenset(relays)
        for relay in relays:
            body = ["ping-req", probe.seq, probe.target.public_key, self._piggyback(relay)]
            actions.append(Send(relay, PROTOCOL, body))

    def _relay_probe(
        self, requester: PeerId, message: _Message, now: float, actions: list[LivenessAction]
    ) -> None:
        target = message.target
        assert target is not None
        if target == self._local:
            actions.append(self._ack(requester, message.seq))
            return
        if target not in self._members or len(self._relays) >= self._params.max_relays:
            return
        seq = self._next_seq()
        expires = now + self._params.protocol_period
        self._relays[seq] = _Relay(requester, message.seq, target, expires)
        actions.append(self._ping(target, seq))

    def _handle_ack(self, peer: PeerId, seq: int, actions: list[LivenessAction]) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq:
            # Only the target, or a member we asked, may vouch for the target.
            if peer == probe.target or peer in probe.relays:
                probe.acked = True
            return
        relay = self._relays.get(seq)
        if relay is not None and relay.target == peer:
            del self._relays[seq]
            actions.append(self._ack(relay.requester, relay.requester_seq))
        # Anything else is a late ack of a finished probe: its updates were still applied.

    def _next_target(self) -> PeerId | None:
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                peer = self._probe_order[self._probe_index]
                self._probe_index += 1
                member = self._members.get(peer)
                if member is not None and member.state is not MemberState.DEAD:
                    return peer
            self._probe_order = [
                peer for peer, m in self._members.items() if m.state is not MemberState.DEAD
            ]
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
        return None

    def _insert_into_probe_order(self, peer: PeerId) -> None:
        """SWIM's random insertion: a new or revived member is probed within this round."""
        if peer in self._probe_order[self._probe_index :]:
            return
        position = self._rng.randint(self._probe_index, len(self._probe_order))
        self._probe_order.insert(position, peer)

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < MAX_SEQ else 1
        return self._seq

    def _ping(self, target: PeerId, seq: int) -> Send:
        return Send(target, PROTOCOL, ["ping", seq, target.public_key, self._piggyback(target)])

    def _ack(self, peer: PeerId, seq: int) -> Send:
        return Send(peer, PROTOCOL, ["ack", seq, self._piggyback(peer)])

    # -- membership updates ------------------------------------------------------------------

    def _apply(self, update: _Update, now: float, actions: list[LivenessAction]) -> None:
        peer, incarnation = update.peer, update.incarnation
        if peer == self._local:
            self._maybe_refute(update)
            return
        member = self._members.get(peer)
        if member is None:
            return
        if update.state is MemberState.ALIVE:
            if incarnation > member.incarnation:
                self._set_alive(peer, member, incarnation, now, actions)
        elif update.state is MemberState.SUSPECT:
            self._suspect(member, update, now, actions)
        elif member.state is not MemberState.DEAD:
            if incarnation >= member.incarnation:
                self._set_dead(peer, member, incarnation, now, actions)
        elif incarnation > member.incarnation:
            member.incarnation = incarnation
            self._enqueue(_Update(MemberState.DEAD, peer, incarnation))

    def _maybe_refute(self, update: _Update) -> None:
        """Someone believes we are suspect or dead (or remembers a newer us): outbid it."""
        if update.state is MemberState.ALIVE:
            stale = update.incarnation > self._incarnation
        else:
            stale = update.incarnation >= self._incarnation
        if stale:
            self._incarnation = min(update.incarnation + 1, MAX_INCARNATION)
            self._enqueue(_Update(MemberState.ALIVE, self._local, self._incarnation))

    def _set_alive(
        self,
        peer: PeerId,
        member: _Member,
        incarnation: int,
        now: float,
        actions: list[LivenessAction],
    ) -> None:
        was = member.state
        member.incarnation = incarnation
        if was is not MemberState.ALIVE:
            member.state, member.since, member.suspicion = MemberState.ALIVE, now, None
            actions.append(MemberAlive(peer))
            if was is MemberState.DEAD:
                self._insert_into_probe_order(peer)
        self._enqueue(_Update(MemberState.ALIVE, peer, incarnation))

    def _suspect(
        self, member: _Member, accusation: _Update, now: float, actions: list[LivenessAction]
    ) -> None:
        """Start a suspicion, or count an independent confirmation of a running one."""
        incarnation, accuser = accusation.incarnation, accusation.accuser
        assert accuser is not None
        suspicion = member.suspicion
        if member.state is MemberState.ALIVE and incarnation >= member.incarnation:
            group_size = self.group_size
            deadline = now + max_suspicion_timeout(group_size, self._params)
            member.state, member.incarnation, member.since = MemberState.SUSPECT, incarnation, now
            member.suspicion = _Suspicion(now, group_size, [accuser], deadline)
            actions.append(MemberSuspect(accusation.peer))
        elif suspicion is not None and incarnation > member.incarnation:
            # It refuted (we missed that) and is accused again: a fresh suspicion.
            member.incarnation = incarnation
            deadline = now + max_suspicion_timeout(suspicion.group_size, self._params)
            member.suspicion = _Suspicion(now, suspicion.group_size, [accuser], deadline)
        elif (
            suspicion is not None
            and incarnation == member.incarnation
            and accuser not in suspicion.accusers
        ):
            suspicion.accusers.append(accuser)
            timeout = confirmed_suspicion_timeout(
                suspicion.group_size, len(suspicion.accusers) - 1, self._params
            )
            suspicion.deadline = min(suspicion.deadline, suspicion.started + timeout)
        else:
            return
        # Forward each accuser's word, so that others can count the confirmations too.
        self._enqueue(accusation)

    def _set_dead(
        self,
        peer: PeerId,
        member: _Member,
        incarnation: int,
        now: float,
        actions: list[LivenessAction],
    ) -> None:
        member.state, member.incarnation, member.since = MemberState.DEAD, incarnation, now
        member.suspicion = None
        actions.append(MemberDead(peer))
        self._enqueue(_Update(MemberState.DEAD, peer, incarnation))

    # -- piggybacking ------------------------------------------------------------------------

    def _enqueue(self, update: _Update) -> None:
        """Queue an update for piggybacking; it replaces any older one about the same member."""
        self._broadcast_order += 1
        self._broadcasts[update.peer] = _Broadcast(update, 0, self._broadcast_order)
        if len(self._broadcasts) > self._params.max_broadcasts:
            stalest = max(self._broadcasts.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
            del self._broadcasts[stalest[0]]

    def _piggyback(self, destination: PeerId) -> list[list[Any]]:
        """The updates to carry on a message to `destination`, fewest-sent and newest first."""
        updates: list[list[Any]] = []
        verdict = self._verdict_on(destination)
        if verdict is not None:
            # Tell it what we believe, so that it can refute without waiting for gossip.
            updates.append(verdict.to_wire())
        room = self._params.max_piggyback - len(updates)
        chosen = sorted(self._broadcasts.values(), key=lambda b: (b.transmits, -b.order))[:room]
        limit = retransmit_limit(self.group_size, self._params)
        for broadcast in chosen:
            update = broadcast.update
            if verdict is not None and update.peer == destination:
                continue
            updates.append(update.to_wire())
            broadcast.transmits += 1
            if broadcast.transmits >= limit:
                del self._broadcasts[update.peer]
        return updates

    def _verdict_on(self, peer: PeerId) -> _Update | None:
        """Our suspicion of, or death sentence on, `peer`; None while we hold it alive."""
        member = self._members.get(peer)
        if member is None or member.state is MemberState.ALIVE:
            return None
        accuser = member.suspicion.accusers[0] if member.suspicion is not None else None
        return _Update(member.state, peer, member.incarnation, accuser)


# -- strict parsing of untrusted bodies ------------------------------------------------------

_STATES = {state.value: state for state in MemberState}
_UPDATE_ARITY = {MemberState.ALIVE: 3, MemberState.SUSPECT: 4, MemberState.DEAD: 3}
_ARITY = {"ping": 4, "ping-req": 4, "ack": 3}


def _parse(body: Any, params: LivenessParams) -> _Message:
    if type(body) is not list or not body:
        raise _Malformed("a body is a non-empty array")
    kind = body[0]
    if type(kind) is not str or kind not in _ARITY:
        raise _Malformed(f"unknown message kind {str(kind)[:40]!r}")
    if len(body) != _ARITY[kind]:
        raise _Malformed(f"{kind} has {_ARITY[kind]} fields, not {len(body)}")
    seq = body[1]
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise _Malformed("seq must be an integer in [0, 2^63)")
    target = _parse_key(body[2], "target") if kind != "ack" else None
    raw_updates = body[-1]
    if type(raw_updates) is not list:
        raise _Malformed("updates must be an array")
    if len(raw_updates) > params.max_updates_in:
        raise _Malformed(f"{len(raw_updates)} updates, over the {params.max_updates_in} limit")
    updates = []
    for raw in raw_updates:
        if type(raw) is not list or not raw:
            raise _Malformed("an update is [state, member_key, incarnation(, accuser_key)]")
        state = _STATES.get(raw[0]) if type(raw[0]) is str else None
        if state is None:
            raise _Malformed("update state must be alive, suspect or dead")
        if len(raw) != _UPDATE_ARITY[state]:
            raise _Malformed(f"a {state.value} update has {_UPDATE_ARITY[state]} fields")
        incarnation = raw[2]
        if type(incarnation) is not int or not 0 <= incarnation <= MAX_INCARNATION:
            raise _Malformed("incarnation must be an integer in [0, 2^63)")
        member = _parse_key(raw[1], "member")
        accuser = _parse_key(raw[3], "accuser") if state is MemberState.SUSPECT else None
        if accuser == member:
            raise _Malformed("a member cannot accuse itself")
        updates.append(_Update(state, member, incarnation, accuser))
    return _Message(kind, seq, target, tuple(updates))


def _parse_key(value: Any, what: str) -> PeerId:
    if type(value) is not bytes or len(value) != _KEY_LEN:
        raise _Malformed(f"{what} must be a {_KEY_LEN}-byte public key")
    return PeerId(value)


__all__ = [
    "PROTOCOL",
    "Liveness",
    "LivenessAction",
    "LivenessParams",
    "MemberAlive",
    "MemberDead",
    "MemberInfo",
    "MemberState",
    "MemberSuspect",
    "confirmed_suspicion_timeout",
    "detection_bound",
    "max_suspicion_timeout",
    "retransmit_limit",
    "suspicion_timeout",
]
