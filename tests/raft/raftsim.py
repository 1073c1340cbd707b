"""A deterministic Raft cluster in virtual time, checking Raft's safety properties at every step.

`Cluster` runs `RaftNode`s (and `RegistryClient`s) in one process. Every body goes through
canonical msgpack as the shell sends it, after a random latency (so messages reorder), and
may be dropped or duplicated; partitions cut links both ways; a crashed node loses all but
its storage, and restarts from it. Nodes are ticked exactly at their deadlines.

After every call into a node the `Checker` verifies, and raises `SafetyViolation` otherwise:

* the call's `Persist` (if any) is its first action, and afterwards storage holds exactly the
  node's term, vote, snapshot and log (nothing a message depended on was left unsaved);
* election safety: at most one leader per term, across crashes and restarts;
* state-machine safety: every entry any node learns is committed at index i is the same
  entry, and every command applied at index i is the same with the same result everywhere;
* leader completeness: a new leader of term T holds every entry committed in a term < T;
* the Figure 8 rule: a leader's commit index only ever advances to an entry of its own term.

`check_log_matching` compares every pair of logs (if two hold an entry with the same index
and term, they agree on every entry up to it).
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lightbox_node.gossip.actions import PeerEvent, Send
from lightbox_node.identity import Identity, PeerId
from lightbox_node.raft import (
    CLIENT_PROTOCOL,
    PROTOCOL,
    ApplyContext,
    DurableState,
    LeaderChanged,
    LogEntry,
    MemoryRaftStorage,
    Outcome,
    Persist,
    RaftNode,
    RaftParams,
    Registry,
    RegistryClient,
    RequestDone,
    Role,
    Status,
)
from lightbox_node.raft.client import ClientParams
from lightbox_node.wire import pack, unpack


@functools.cache
def peer(n: int) -> PeerId:
    return Identity.from_seed(n.to_bytes(32, "big")).peer_id


def blob(n: int | str) -> str:
    """A well-formed blob id, distinct per `n`."""
    import hashlib

    return "sha256-" + hashlib.sha256(str(n).encode()).hexdigest()


class SafetyViolation(AssertionError):
    pass


class RecordingRegistry(Registry):
    """The registry, reporting each applied command to the checker."""

    def __init__(self, on_apply: Callable[[int, Any, Any], None]) -> None:
        super().__init__()
        self._on_apply = on_apply

    def apply(self, command: Any, context: ApplyContext) -> dict[str, Any]:
        result = super().apply(command, context)
        self._on_apply(context.index, command, result)
        return result


@dataclass
class Checker:
    leaders: dict[int, PeerId]
    committed: dict[int, tuple[LogEntry, int]]
    applied: dict[int, tuple[Any, Any]]

    def __init__(self) -> None:
        self.leaders = {}
        self.committed = {}
        self.applied = {}
        self._seen_commit: dict[PeerId, int] = {}
        self._was_leader: dict[PeerId, bool] = {}
        self._last_applied: dict[PeerId, int] = {}

    def node_started(self, node: RaftNode) -> None:
        self._seen_commit[node.local] = node.commit_index
        self._was_leader[node.local] = False
        self._last_applied[node.local] = node.applied_index

    def on_apply(self, who: PeerId, index: int, command: Any, result: Any) -> None:
        if index <= self._last_applied.get(who, 0):
            raise SafetyViolation(f"{who.short} applied {index} after {self._last_applied[who]}")
        self._last_applied[who] = index
        seen = self.applied.setdefault(index, (command, result))
        if seen != (command, result):
            raise SafetyViolation(f"state machines differ at {index}: {seen} vs {command, result}")

    def after_call(self, node: RaftNode) -> None:
        me = node.local
        if node.role is Role.LEADER:
            first = self.leaders.setdefault(node.term, me)
            if first != me:
                raise SafetyViolation(f"two leaders in term {node.term}: {first} and {me}")
            if not self._was_leader[me]:
                self._check_completeness(node)
        self._was_leader[me] = node.role is Role.LEADER
        log = node.log
        start = max(self._seen_commit[me], log.snapshot_index)
        for index in range(start + 1, node.commit_index + 1):
            entry = log.entry(index)
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = (entry, node.term)
            elif known[0] != entry:
                raise SafetyViolation(f"committed entries differ at {index}: {known[0]} / {entry}")
        if node.commit_index < self._seen_commit[me]:
            raise SafetyViolation(f"{me.short}'s commit index went back")
        if (
            node.role is Role.LEADER
            and node.commit_index > self._seen_commit[me]
            and node.log.term_at(node.commit_index) != node.term
        ):
            raise SafetyViolation(
                f"leader {me.short} of term {node.term} committed up to entry "
                f"{node.commit_index} of an older term by counting replicas (Figure 8)"
            )
        self._seen_commit[me] = node.commit_index

    def _check_completeness(self, node: RaftNode) -> None:
        log = node.log
        for index, (entry, commit_term) in self.committed.items():
            if commit_term >= node.term or index <= log.snapshot_index:
                continue
            if index > log.last_index or log.entry(index) != entry:
                raise SafetyViolation(
                    f"leader {node.local.short} of term {node.term} lacks entry {index} "
                    f"committed in term {commit_term}"
                )


def check_log_matching(nodes: Iterable[RaftNode]) -> None:
    logs = [node.log for node in nodes]
    for i, a in enumerate(logs):
        for b in logs[i + 1 :]:
            low = max(a.snapshot_index, b.snapshot_index) + 1
            high = min(a.last_index, b.last_index)
            matched = False
            for index in range(high, low - 1, -1):
                if matched:
                    if a.entry(index) != b.entry(index):
                        raise SafetyViolation(f"logs match at a later index but differ at {index}")
                elif a.term_at(index) == b.term_at(index):
                    matched = True
                    if a.entry(index) != b.entry(index):
                        raise SafetyViolation(f"same index and term, different entry at {index}")


SIM_PARAMS = RaftParams()


class Cluster:
    """Raft members (and optional clients) on a simulated network; see the module docstring."""

    def __init__(
        self,
        size: int = 3,
        *,
        seed: int = 0,
        params: RaftParams = SIM_PARAMS,
        founders: int | None = None,
        storage_factory: Callable[[PeerId], Any] | None = None,
        latency: tuple[float, float] = (0.002, 0.02),
        drop: float = 0.0,
        duplicate: float = 0.0,
        check_durable: bool = True,
    ) -> None:
        """`size` servers; the first `founders` (default all) found the group, the others start
        fresh and wait to be added."""
        self.rng = random.Random(seed)
        self.seed = seed
        self.params = params
        self.latency = latency
        self.drop = drop
        self.duplicate = duplicate
        self.check_durable = check_durable
        self.now = 0.0
        self.ids = [peer(i + 1) for i in range(size)]
        self.founders = self.ids[: size if founders is None else founders]
        self.checker = Checker()
        self.storages: dict[PeerId, Any] = {}
        self.nodes: dict[PeerId, RaftNode | None] = {}
        self.clients: dict[PeerId, RegistryClient] = {}
        self.outcomes: dict[tuple[PeerId, int], tuple[float, Outcome]] = {}
        self.invalid: list[tuple[float, PeerId, PeerEvent]] = []
        self.delivered: Counter[str] = Counter()
        self.calls = 0
        self._labels: dict[PeerId, int] = {}
        self._queue: list[tuple[float, int, PeerId, PeerId, bytes]] = []
        self._counter = 0
        self._next_request = 1
        self._starts = 0
        for pid in self.ids:
            storage = storage_factory(pid) if storage_factory else MemoryRaftStorage()
            if pid in self.founders:
                storage.bootstrap(self.founders)
            self.storages[pid] = storage
            self._start(pid)

    # -- nodes ---------------------------------------------------------------------------------

    def _start(self, pid: PeerId) -> None:
        self._starts += 1
        registry = RecordingRegistry(
            lambda index, command, result, pid=pid: self.checker.on_apply(
                pid, index, command, result
            )
        )
        node = RaftNode(
            pid,
            self.storages[pid].load(),
            registry,
            self.now,
            rng=random.Random(self.seed * 7919 + self._starts),
            params=self.params,
        )
        self.nodes[pid] = node
        self.checker.node_started(node)

    def node(self, pid: PeerId) -> RaftNode:
        node = self.nodes[pid]
        assert node is not None, f"{pid.short} is crashed"
        return node

    def live(self) -> list[RaftNode]:
        return [node for node in self.nodes.values() if node is not None]

    def crash(self, pid: PeerId) -> None:
        self.nodes[pid] = None

    def restart(self, pid: PeerId) -> None:
        if self.nodes[pid] is None:
            self._start(pid)

    def add_client(self, pid: PeerId, members: Iterable[PeerId], **params: Any) -> RegistryClient:
        client = RegistryClient(pid, rng=random.Random(self.seed), params=ClientParams(**params))
        client.set_members(members)
        self.clients[pid] = client
        return client

    # -- the network ---------------------------------------------------------------------------

    def partition(self, *groups: Iterable[PeerId]) -> None:
        """Only nodes in the same group talk; nodes in no group are each cut off alone."""
        self._labels = {}
        for label, group in enumerate(groups):
            for pid in group:
                self._labels[pid] = label
        for offset, pid in enumerate(self.ids + list(self.clients)):
            self._labels.setdefault(pid, len(groups) + offset)

    def heal(self) -> None:
        self._labels = {}

    def can_talk(self, a: PeerId, b: PeerId) -> bool:
        return self._labels.get(a, -1) == self._labels.get(b, -1)

    def _post(self, src: PeerId, send: Send) -> None:
        if not self.can_talk(src, send.peer) or self.rng.random() < self.drop:
            return
        frame = pack([send.protocol, send.body])
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            self._counter += 1
            at = self.now + self.rng.uniform(*self.latency)
            heapq.heappush(self._queue, (at, self._counter, src, send.peer, frame))

    def _deliver(self, src: PeerId, dst: PeerId, frame: bytes) -> None:
        if not self.can_talk(src, dst):
            return
        protocol, body = unpack(frame)
        if protocol == CLIENT_PROTOCOL:
            client = self.clients.get(dst)
            if client is not None:
                self._execute(dst, client.receive(src, body, self.now))
            return
        assert protocol == PROTOCOL
        node = self.nodes.get(dst)
        if node is None:
            return
        self.delivered[body[0]] += 1
        self._execute(dst, node.receive(src, body, self.now))

    # -- executing actions ---------------------------------------------------------------------

    def _execute(self, src: PeerId, actions: list[Any]) -> None:
        self.calls += 1
        node = self.nodes.get(src)
        for position, action in enumerate(actions):
            if isinstance(action, Persist):
                if position != 0:
                    raise SafetyViolation("a Persist action is not the first of its list")
                self.storages[src].save(action)
            elif isinstance(action, Send):
                self._post(src, action)
            elif isinstance(action, RequestDone):
                self.outcomes[(src, action.request_id)] = (self.now, action.outcome)
            elif isinstance(action, PeerEvent):
                self.invalid.append((self.now, src, action))
            else:
                assert isinstance(action, LeaderChanged), action
        if node is not None:
            self.checker.after_call(node)
            if self.check_durable:
                self._check_durable(node)

    def _check_durable(self, node: RaftNode) -> None:
        storage = self.storages[node.local]
        if not isinstance(storage, MemoryRaftStorage):
            return
        if (storage.term, storage.voted_for) != (node.term, node.voted_for):
            raise SafetyViolation(f"{node.local.short}: term or vote not saved before sending")
        if storage.snapshot.index != node.log.snapshot_index:
            raise SafetyViolation(f"{node.local.short}: snapshot not saved")
        if storage.last_index != node.log.last_index or (
            storage.entries and storage.entries[-1] != node.log.entry(node.log.last_index)
        ):
            raise SafetyViolation(f"{node.local.short}: log not saved before sending")

    # -- running -------------------------------------------------------------------------------

    def _endpoints(self) -> list[tuple[PeerId, Any]]:
        found: list[tuple[PeerId, Any]] = [(p, n) for p, n in self.nodes.items() if n is not None]
        found += list(self.clients.items())
        return found

    def run(self, duration: float, until: Callable[[], bool] | None = None) -> bool:
        """Run for `duration` virtual seconds, or until `until()` holds (then True)."""
        end = self.now + duration
        steps = 0
        while True:
            if until is not None and until():
                return True
            next_message = self._queue[0][0] if self._queue else math.inf
            next_tick, who = math.inf, None
            for pid, endpoint in self._endpoints():
                deadline = endpoint.next_deadline()
                if deadline < next_tick:
                    next_tick, who = deadline, pid
            at = min(next_message, next_tick)
            if at > end:
                break
            self.now = max(self.now, at)
            steps += 1
            if steps > 500_000:
                raise RuntimeError("simulation does not advance")
            if next_message <= next_tick:
                _, _, src, dst, frame = heapq.heappop(self._queue)
                self._deliver(src, dst, frame)
            else:
                assert who is not None
                endpoint = self.nodes.get(who) or self.clients[who]
                self._execute(who, endpoint.tick(self.now))
        self.now = end
        return until is not None and until()

    # -- requests ------------------------------------------------------------------------------

    def _request_id(self) -> int:
        self._next_request += 1
        return self._next_request

    def propose(self, pid: PeerId, command: Any) -> int:
        request_id = self._request_id()
        self._execute(pid, self.node(pid).propose(command, self.now, request_id=request_id))
        return request_id

    def read(self, pid: PeerId, query: Any) -> int:
        request_id = self._request_id()
        self._execute(pid, self.node(pid).read(query, self.now, request_id=request_id))
        return request_id

    def add_member(self, pid: PeerId, new: PeerId) -> int:
        request_id = self._request_id()
        self._execute(pid, self.node(pid).add_member(new, self.now, request_id=request_id))
        return request_id

    def remove_member(self, pid: PeerId, old: PeerId) -> int:
        request_id = self._request_id()
        self._execute(pid, self.node(pid).remove_member(old, self.now, request_id=request_id))
        return request_id

    def client_write(self, pid: PeerId, command: Any) -> int:
        request_id, actions = self.clients[pid].write(command, self.now)
        self._execute(pid, actions)
        return request_id

    def client_read(self, pid: PeerId, query: Any) -> int:
        request_id, actions = self.clients[pid].read(query, self.now)
        self._execute(pid, actions)
        return request_id

    def outcome(self, pid: PeerId, request_id: int) -> Outcome | None:
        found = self.outcomes.get((pid, request_id))
        return None if found is None else found[1]

    def await_outcome(self, pid: PeerId, request_id: int, timeout: float = 5.0) -> Outcome:
        self.run(timeout, until=lambda: (pid, request_id) in self.outcomes)
        outcome = self.outcome(pid, request_id)
        assert outcome is not None, f"request {request_id} at {pid.short} did not finish"
        return outcome

    # -- conveniences --------------------------------------------------------------------------

    def leader(self) -> RaftNode | None:
        leaders = [node for node in self.live() if node.role is Role.LEADER]
        return max(leaders, key=lambda node: node.term) if leaders else None

    def wait_for_leader(
        self, timeout: float = 10.0, among: Iterable[PeerId] | None = None
    ) -> RaftNode:
        allowed = set(self.ids if among is None else among)

        def stable() -> bool:
            node = self.leader()
            return (
                node is not None
                and node.local in allowed
                and node.commit_index >= 1
                and (node.log.term_at(node.commit_index) == node.term)
            )

        assert self.run(timeout, until=stable), "no leader was elected"
        leader = self.leader()
        assert leader is not None
        return leader

    def write(self, command: Any, timeout: float = 10.0) -> Outcome:
        """Propose at whoever leads until the write is committed (OK or REJECTED)."""
        deadline = self.now + timeout
        while self.now < deadline:
            leader = self.wait_for_leader(deadline - self.now)
            request_id = self.propose(leader.local, command)
            outcome = self.await_outcome(leader.local, request_id, max(0.0, deadline - self.now))
            if outcome.status in (Status.OK, Status.REJECTED):
                return outcome
        raise AssertionError("the write was not committed in time")

    def settle(self, timeout: float = 10.0) -> None:
        """Run until every live member has applied everything the leader has committed."""
        leader = self.wait_for_leader(timeout)

        def caught_up() -> bool:
            target = leader.commit_index
            return all(
                node.applied_index >= target for node in self.live() if node.local in leader.members
            )

        assert self.run(timeout, until=caught_up), "members did not catch up"


def new_node(
    pid: PeerId,
    state: DurableState | None = None,
    *,
    seed: int = 0,
    params: RaftParams = SIM_PARAMS,
) -> RaftNode:
    return RaftNode(
        pid,
        state if state is not None else DurableState.fresh(),
        Registry(),
        0.0,
        rng=random.Random(seed),
        params=params,
    )


class ManualNet:
    """Raft members whose messages wait in an outbox until a test delivers or drops them.

    Nothing happens unless the test says so: no ticks, no deliveries. `elect` makes one
    node stand (repeatedly, if a vote is refused) with the votes of the given voters only.
    The same `Checker` watches every call.
    """

    def __init__(
        self,
        size: int,
        *,
        params: RaftParams = SIM_PARAMS,
        storage_factory: Callable[[PeerId], Any] | None = None,
    ) -> None:
        self.ids = [peer(i + 1) for i in range(size)]
        self.params = params
        self.now = 0.0
        self.checker = Checker()
        self.outbox: list[tuple[PeerId, PeerId, list[Any]]] = []
        self.storages: dict[PeerId, Any] = {}
        self.nodes: dict[PeerId, RaftNode | None] = {}
        self.done: dict[tuple[PeerId, int], Outcome] = {}
        self._starts = 0
        self._next_request = 0
        for pid in self.ids:
            storage = storage_factory(pid) if storage_factory else MemoryRaftStorage()
            storage.bootstrap(self.ids)
            self.storages[pid] = storage
            self.restart(pid)

    def node(self, pid: PeerId) -> RaftNode:
        node = self.nodes[pid]
        assert node is not None, f"{pid.short} is crashed"
        return node

    def crash(self, pid: PeerId) -> None:
        self.nodes[pid] = None
        self.outbox = [m for m in self.outbox if m[1] != pid and m[0] != pid]

    def restart(self, pid: PeerId) -> None:
        self._starts += 1
        registry = RecordingRegistry(
            lambda index, command, result, pid=pid: self.checker.on_apply(
                pid, index, command, result
            )
        )
        node = RaftNode(
            pid,
            self.storages[pid].load(),
            registry,
            self.now,
            rng=random.Random(self._starts),
            params=self.params,
        )
        self.nodes[pid] = node
        self.checker.node_started(node)

    def run(self, pid: PeerId, actions: list[Any]) -> list[Any]:
        for position, action in enumerate(actions):
            if isinstance(action, Persist):
                assert position == 0, "a Persist action is not the first of its list"
                self.storages[pid].save(action)
            elif isinstance(action, Send):
                if action.protocol == PROTOCOL and self.nodes.get(action.peer) is not None:
                    self.outbox.append((pid, action.peer, action.body))
            elif isinstance(action, RequestDone):
                self.done[(pid, action.request_id)] = action.outcome
        node = self.nodes[pid]
        if node is not None:
            self.checker.after_call(node)
        return actions

    def tick(self, pid: PeerId, advance: float = 0.0) -> list[Any]:
        self.now += advance
        return self.run(pid, self.node(pid).tick(self.now))

    def propose(self, pid: PeerId, command: Any) -> int:
        self._next_request += 1
        self.run(pid, self.node(pid).propose(command, self.now, request_id=self._next_request))
        return self._next_request

    def deliver(self, where: Callable[[PeerId, PeerId, list[Any]], bool] | None = None) -> int:
        """Deliver, in order, every queued message that `where` accepts, and what they cause,
        until none is left; the others stay queued. Returns how many were delivered."""
        delivered = 0
        while True:
            position = next(
                (i for i, (s, d, b) in enumerate(self.outbox) if where is None or where(s, d, b)),
                None,
            )
            if position is None:
                return delivered
            src, dst, body = self.outbox.pop(position)
            body = unpack(pack(body))
            if self.nodes.get(dst) is not None:
                self.run(dst, self.node(dst).receive(src, body, self.now))
                delivered += 1

    def drop(self, where: Callable[[PeerId, PeerId, list[Any]], bool] | None = None) -> None:
        self.outbox = [m for m in self.outbox if where is not None and not where(*m)]

    def elect(self, pid: PeerId, voters: Iterable[PeerId], attempts: int = 6) -> RaftNode:
        """Make `pid` stand until it leads, with only `voters` hearing its requests."""
        allowed = set(voters)
        node = self.node(pid)
        for _ in range(attempts):
            # well past every election timeout, so that no voter still trusts an old leader
            self.now += 2 * self.params.election_timeout_max
            self.run(pid, node.tick(self.now))
            self.deliver(
                lambda s, d, b: (
                    (s == pid and d in allowed and b[0] == "vote")
                    or (d == pid and b[0] == "vote-reply")
                )
            )
            if node.role is Role.LEADER:
                return node
        raise AssertionError(f"{pid.short} was not elected by {len(allowed)} voters")
