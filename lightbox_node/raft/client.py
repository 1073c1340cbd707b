"""A registry client that finds the leader itself: ask any member, follow its hint, retry.

A pure core like `RaftNode`: `write(command, now)` and `read(query, now)` return a request
id and actions, `receive(peer, body, now)` takes bodies that arrive under
`CLIENT_PROTOCOL`, `tick(now)` runs no later than `next_deadline()`. Each request ends
with exactly one `RequestDone(request_id, outcome)`.

Members come from gossip (the peers whose capability record has the `registry` role), never
from a list of addresses a person typed. A request goes to the leader last heard of, else
to a member picked at random. A REDIRECT names the leader and the request follows at once.
A RETRY, silence for `attempt_timeout`, a REDIRECT without a hint, or a fourth redirect in
a row (stale hints can point in a circle) moves it to another member after `retry_delay`.
After `request_timeout` it ends with RETRY. A write may thus be delivered more than once;
registry commands are written to be safe to repeat.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lightbox_node.errors import MalformedMessage
from lightbox_node.gossip.actions import PeerEvent, Send
from lightbox_node.identity import PeerId
from lightbox_node.raft.core import Outcome, RequestDone
from lightbox_node.raft.messages import (
    PROTOCOL,
    ClientRequest,
    ClientResponse,
    RequestKind,
    Status,
    parse_message,
)

ClientAction = Send | RequestDone | PeerEvent


@dataclass(frozen=True, slots=True)
class ClientParams:
    attempt_timeout: float = 1.0
    """Seconds to wait for one member's answer before asking another."""
    retry_delay: float = 0.1
    """Seconds to wait after a RETRY (no leader yet, election running) before asking again."""
    request_timeout: float = 10.0
    """Seconds after which a request ends with RETRY."""

    def __post_init__(self) -> None:
        for name in ("attempt_timeout", "retry_delay", "request_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"client setting {name} must be a positive number")


@dataclass(slots=True)
class _Pending:
    request_id: int
    kind: RequestKind
    payload: Any
    deadline: float
    target: PeerId | None = None
    attempt_deadline: float = math.inf
    retry_at: float = math.inf
    asked: set[PeerId] = field(default_factory=set)
    redirects: int = 0
    """REDIRECTs followed at once since the last pause (stale hints can point in a circle)."""


class RegistryClient:
    """Sends registry writes and reads to whichever member leads; see the module docstring."""

    def __init__(
        self, local: PeerId, *, rng: random.Random, params: ClientParams | None = None
    ) -> None:
        self._local = local
        self._rng = rng
        self._params = params if params is not None else ClientParams()
        self._members: tuple[PeerId, ...] = ()
        self._leader: PeerId | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1

    @property
    def leader(self) -> PeerId | None:
        """The leader last heard of (a hint, not a promise)."""
        return self._leader

    @property
    def members(self) -> tuple[PeerId, ...]:
        return self._members

    def set_members(self, members: Iterable[PeerId]) -> None:
        """The registry members known from gossip; replaces the previous list."""
        self._members = tuple(sorted(set(members), key=lambda peer: peer.public_key))

    def next_deadline(self) -> float:
        deadline = math.inf
        for pending in self._pending.values():
            deadline = min(deadline, pending.deadline, pending.attempt_deadline, pending.retry_at)
        return deadline

    def write(self, command: Any, now: float) -> tuple[int, list[ClientAction]]:
        return self._start(RequestKind.WRITE, command, now)

    def read(self, query: Any, now: float) -> tuple[int, list[ClientAction]]:
        return self._start(RequestKind.READ, query, now)

    def receive(self, peer: PeerId, body: Any, now: float) -> list[ClientAction]:
        """A body that arrived under `CLIENT_PROTOCOL`."""
        try:
            message = parse_message(body)
        except MalformedMessage as exc:
            return [PeerEvent(peer, "invalid_message", str(exc)[:200])]
        if not isinstance(message, ClientResponse):
            return [PeerEvent(peer, "invalid_message", "expected a client response")]
        pending = self._pending.get(message.request_id)
        if pending is None:
            return []  # a late answer to a request already finished
        if peer not in pending.asked:
            return [PeerEvent(peer, "invalid_message", "answered a request it was not sent")]
        status = message.status
        if status in (Status.OK, Status.REJECTED):
            if status is Status.OK and message.leader is not None:
                self._leader = message.leader
            del self._pending[pending.request_id]
            outcome = Outcome(status, message.result, message.leader)
            return [RequestDone(pending.request_id, outcome)]
        if peer != pending.target:
            return []  # an earlier attempt's refusal; the current attempt is still out
        self._leader = message.leader if message.leader != peer else None
        if status is Status.REDIRECT and self._leader is not None and pending.redirects < 3:
            pending.redirects += 1
            return self._attempt(pending, now)
        pending.redirects = 0
        pending.target = None
        pending.attempt_deadline = math.inf
        pending.retry_at = now + self._params.retry_delay
        return []

    def tick(self, now: float) -> list[ClientAction]:
        actions: list[ClientAction] = []
        for pending in list(self._pending.values()):
            if now >= pending.deadline:
                del self._pending[pending.request_id]
                why = "no registry leader answered in time; try again later"
                actions.append(RequestDone(pending.request_id, Outcome(Status.RETRY, why)))
            elif now >= pending.retry_at:
                actions += self._attempt(pending, now)
            elif now >= pending.attempt_deadline:
                if pending.target == self._leader:
                    self._leader = None  # it did not answer: stop sending everyone to it
                actions += self._attempt(pending, now)
        return actions

    def _start(self, kind: RequestKind, payload: Any, now: float) -> tuple[int, list]:
        request_id = self._next_id
        self._next_id += 1
        pending = _Pending(request_id, kind, payload, now + self._params.request_timeout)
        self._pending[request_id] = pending
        return request_id, self._attempt(pending, now)

    def _attempt(self, pending: _Pending, now: float) -> list[ClientAction]:
        target = self._leader
        if target is None:
            untried = [m for m in self._members if m != pending.target]
            target = self._rng.choice(untried or self._members) if self._members else None
        pending.retry_at = math.inf
        if target is None:
            pending.target = None
            pending.attempt_deadline = math.inf
            pending.retry_at = now + self._params.retry_delay
            return []
        pending.target = target
        pending.asked.add(target)
        pending.attempt_deadline = now + self._params.attempt_timeout
        request = ClientRequest(pending.request_id, pending.kind, pending.payload)
        return [Send(target, PROTOCOL, request.to_wire())]


__all__ = ["ClientAction", "ClientParams", "RegistryClient"]
