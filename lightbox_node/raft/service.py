"""The registry's trio shell: a `RaftNode` and a `RegistryClient` over the swarm's peer links.

One task owns both pure cores and carries out their actions, so no lock is needed. It wakes
for a message, a local request or the cores' next deadline, takes every event that is
waiting (up to `MAX_BATCH`), feeds them all to the cores, then follows the persist rule of
`raft.core` with group commit: the batch's `Persist`s are written in one fsync'd transaction
(in a worker thread) before any of the batch's other actions leave. A failed write stops
the node (raises), because a server that cannot persist must not send.

Who may speak Raft: bodies under "raft" other than client requests are taken only from the
group's members and from peers whose signed capability record has the `registry` role (a
server being added is caught up before it is a member). Client requests under "raft" and
answers under "raft-client" come from anyone; the cores validate every body.

This node's own requests go through its `RegistryClient` like anyone's: the client finds the
leader itself (members come from gossip), and a request to this node is delivered through a
loopback, not a socket.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from lightbox_node.errors import LightboxError
from lightbox_node.gossip.actions import PeerEvent, Send
from lightbox_node.identity import PeerId
from lightbox_node.net.discovery import PeerHint
from lightbox_node.raft.client import ClientParams, RegistryClient
from lightbox_node.raft.core import (
    CLIENT_PROTOCOL,
    LeaderChanged,
    Outcome,
    RaftNode,
    RaftParams,
    RaftStatus,
    RequestDone,
    StateMachine,
)
from lightbox_node.raft.log import DurableState, Persist
from lightbox_node.raft.messages import PROTOCOL, Status

log = logging.getLogger("lightbox.registry")

MAX_BATCH = 256
"""Events handled (and persisted in one transaction) per turn of the loop."""
INBOX_SIZE = 4096
"""Messages waiting for the loop; more are dropped (Raft tolerates lost messages)."""
_REQUEST = "local-request"
"""The inbox tag of this node's own requests (never a protocol on the wire)."""
MEMBER_REFRESH_S = 0.5
"""How often the registry members are re-read from gossip."""


class RegistryUnavailable(LightboxError):
    """No registry leader answered in time (no registry reachable, or an election running)."""


class RegistryRefused(LightboxError):
    """The registry refused a request (malformed, or not allowed for this peer)."""


class Storage(Protocol):
    def load(self) -> DurableState: ...

    def bootstrap(self, members: Iterable[PeerId]) -> DurableState: ...

    def save_all(self, persists: Iterable[Persist]) -> None: ...


class SwarmView(Protocol):
    """What the shell needs of the swarm (a `Swarm`, or a fake in tests)."""

    peer_id: PeerId
    roles: tuple[str, ...]

    @property
    def linked_peers(self) -> tuple[PeerId, ...]: ...

    def records(self) -> list[Any]: ...

    def send(self, peer: PeerId, protocol: str, body: Any) -> bool: ...

    def add_hints(self, hints: Iterable[PeerHint], *, pinned: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """What the API shows: this node's Raft state (None unless a member) and the leader."""

    raft: RaftStatus | None
    leader: PeerId | None
    members: tuple[PeerId, ...]


@dataclass(slots=True)
class _Waiter:
    done: trio.Event
    outcome: Outcome | None = None


class _Inbox:
    """The swarm handler of one protocol; hands bodies to the service's loop."""

    def __init__(self, service: RegistryService, protocol: str) -> None:
        self._service = service
        self._protocol = protocol

    def link_up(self, peer: PeerId) -> None:
        pass

    def link_down(self, peer: PeerId) -> None:
        pass

    def message(self, peer: PeerId, body: Any) -> None:
        self._service.deliver(self._protocol, peer, body)


class RegistryService:
    """Runs this node's Raft server (if it has the registry role) and its registry client."""

    def __init__(
        self,
        swarm: SwarmView,
        state_machine: StateMachine,
        storage: Storage | None,
        *,
        founders: Iterable[PeerId] = (),
        params: RaftParams | None = None,
        client_params: ClientParams | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`storage` None: this node is no registry member, only a client."""
        self.swarm = swarm
        self.local = swarm.peer_id
        self._sm = state_machine
        self._storage = storage
        self._founders = tuple(founders)
        self._params = params
        self._rng = rng or random.Random()
        self.client = RegistryClient(self.local, rng=self._rng, params=client_params)
        self.node: RaftNode | None = None
        self._send_event, self._events = trio.open_memory_channel[tuple[str, PeerId, Any]](
            INBOX_SIZE
        )
        self._loopback: deque[tuple[str, PeerId, Any]] = deque()
        self._client_waiters: dict[int, _Waiter] = {}
        self._node_waiters: dict[int, _Waiter] = {}
        self._next_node_request = 1
        self._registry_peers: set[PeerId] = set()
        self._members_at = -math.inf
        self.dropped = 0
        self.on_leader_change: Callable[[int, PeerId | None], None] = lambda _t, _l: None

    @property
    def inboxes(self) -> dict[str, _Inbox]:
        """The swarm handlers to register: Raft and client requests, and client answers."""
        return {PROTOCOL: _Inbox(self, PROTOCOL), CLIENT_PROTOCOL: _Inbox(self, CLIENT_PROTOCOL)}

    # -- the public surface --------------------------------------------------------------------

    async def write(self, command: Any) -> Any:
        """Commit `command` through the leader; the state machine's answer once applied."""
        return await self._request("write", command)

    async def read(self, query: Any) -> Any:
        """A linearizable read (read-index through the leader)."""
        return await self._request("read", query)

    async def add_member(self, peer: PeerId) -> Any:
        """Add a registry server (this node must be the leader)."""
        return await self._request("add", peer)

    async def remove_member(self, peer: PeerId) -> Any:
        return await self._request("remove", peer)

    def status(self) -> RegistryStatus:
        raft = self.node.status() if self.node is not None else None
        leader = self.node.leader if self.node is not None else self.client.leader
        members = self.node.members if self.node is not None else self.client.members
        return RegistryStatus(raft, leader, members)

    def deliver(self, protocol: str, peer: PeerId, body: Any) -> None:
        """A body from a peer link (called from link tasks; never blocks)."""
        try:
            self._send_event.send_nowait((protocol, peer, body))
        except trio.WouldBlock:
            self.dropped += 1

    # -- the loop --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._storage is not None:
            durable = await trio.to_thread.run_sync(self._load_durable_state)
            self.node = RaftNode(
                self.local,
                durable,
                self._sm,
                trio.current_time(),
                rng=self._rng,
                params=self._params,
            )
            log.info(
                "registry server started",
                extra={
                    "term": self.node.term,
                    "members": len(self.node.members),
                    "last": self.node.log.last_index,
                },
            )
        task_status.started()
        while True:
            now = trio.current_time()
            if now >= self._members_at:
                self._refresh_members(now)
            deadline = min(self._members_at, self.client.next_deadline())
            if self.node is not None:
                deadline = min(deadline, self.node.next_deadline())
            batch = await self._next_batch(deadline)
            await self._turn(batch, trio.current_time())

    def _load_durable_state(self) -> DurableState:
        """What storage holds; a founder (or a lone registry node) founds the group first."""
        assert self._storage is not None
        if self.local in self._founders or not self._founders:
            return self._storage.bootstrap(self._founders or (self.local,))
        return self._storage.load()

    async def _next_batch(self, deadline: float) -> list[tuple[str, PeerId, Any]]:
        batch: list[tuple[str, PeerId, Any]] = []
        while self._loopback and len(batch) < MAX_BATCH:
            batch.append(self._loopback.popleft())
        if not batch:
            with trio.move_on_at(deadline):
                batch.append(await self._events.receive())
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._events.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _turn(self, batch: list[tuple[str, PeerId, Any]], now: float) -> None:
        node_actions: list[Any] = []
        client_actions: list[Any] = []
        requests: list[tuple[str, Any, _Waiter]] = []
        for protocol, peer, body in batch:
            if protocol == _REQUEST:
                requests.append(body)
            elif protocol == CLIENT_PROTOCOL:
                client_actions += self.client.receive(peer, body, now)
            elif self.node is not None and self._admits(peer, body):
                node_actions += self.node.receive(peer, body, now)
        for kind, payload, waiter in requests:
            if kind in ("write", "read"):
                start = self.client.write if kind == "write" else self.client.read
                request_id, actions = start(payload, now)
                self._client_waiters[request_id] = waiter
                client_actions += actions
            elif self.node is None:
                waiter.outcome = Outcome(Status.REJECTED, "this node is no registry server")
                waiter.done.set()
            else:
                request_id = self._next_node_request
                self._next_node_request += 1
                self._node_waiters[request_id] = waiter
                change = self.node.add_member if kind == "add" else self.node.remove_member
                node_actions += change(payload, now, request_id=request_id)
        if self.node is not None:
            node_actions += self.node.tick(now)
        client_actions += self.client.tick(now)
        persists = [action for action in node_actions if isinstance(action, Persist)]
        if persists:
            assert self._storage is not None
            await trio.to_thread.run_sync(self._storage.save_all, persists)
        self._carry_out(node_actions, self._node_waiters)
        self._carry_out(client_actions, self._client_waiters)

    def _carry_out(self, actions: list[Any], waiters: dict[int, _Waiter]) -> None:
        for action in actions:
            if isinstance(action, Send):
                if action.peer == self.local:
                    self._loopback.append((action.protocol, self.local, action.body))
                else:
                    self.swarm.send(action.peer, action.protocol, action.body)
            elif isinstance(action, RequestDone):
                waiter = waiters.pop(action.request_id, None)
                if waiter is not None:
                    waiter.outcome = action.outcome
                    waiter.done.set()
            elif isinstance(action, LeaderChanged):
                log.info(
                    "registry leader changed",
                    extra={
                        "term": action.term,
                        "leader": action.leader.short if action.leader else "-",
                    },
                )
                self.on_leader_change(action.term, action.leader)
            elif isinstance(action, PeerEvent):
                log.debug(
                    "registry peer event",
                    extra={"peer": action.peer.short, "kind": action.kind},
                )

    def _admits(self, peer: PeerId, body: Any) -> bool:
        """Raft bodies only from members and registry-role peers; requests from anyone."""
        if type(body) is list and body and body[0] == "request":
            return True
        assert self.node is not None
        return peer in self.node.members or peer in self._registry_peers

    def _refresh_members(self, now: float) -> None:
        """Registry members from gossip (and the group's own list); keep links to them."""
        self._members_at = now + MEMBER_REFRESH_S
        registry: set[PeerId] = set()
        addresses: dict[PeerId, tuple[str, ...]] = {}
        for record in self.swarm.records():
            if "registry" in record.roles:
                registry.add(record.author)
                addresses[record.author] = record.addresses
        self._registry_peers = registry
        members = set(self.node.members) if self.node is not None else set()
        known = members | registry
        self.client.set_members(known)
        linked = set(self.swarm.linked_peers)
        for peer in known - linked - {self.local}:
            self.swarm.add_hints(
                (PeerHint(url, peer, "registry") for url in addresses.get(peer, ())), pinned=True
            )

    async def _request(self, kind: str, payload: Any) -> Any:
        waiter = _Waiter(trio.Event())
        await self._send_event.send((_REQUEST, self.local, (kind, payload, waiter)))
        await waiter.done.wait()
        outcome = waiter.outcome
        assert outcome is not None
        if outcome.status is Status.OK:
            return outcome.result
        if outcome.status in (Status.REJECTED, Status.REDIRECT):
            raise RegistryRefused(str(outcome.result))
        raise RegistryUnavailable(str(outcome.result or "no registry leader answered"))


__all__ = [
    "RegistryRefused",
    "RegistryService",
    "RegistryStatus",
    "RegistryUnavailable",
]
