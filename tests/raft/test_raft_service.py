"""The registry's trio shell: real cores, real SQLite storage, links faked in virtual time.

Every body crosses a fake link as canonical msgpack (as on a real link), so what the shell
sends is exactly what a peer could send. The clock is trio's MockClock with a short
autojump threshold.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from raftsim import blob, peer

from lightbox_node.identity import PeerId
from lightbox_node.raft import MemoryRaftStorage, RaftStorage, Registry, Role
from lightbox_node.raft.service import RegistryRefused, RegistryService, RegistryUnavailable
from lightbox_node.store import open_database
from lightbox_node.wire import pack, unpack


@dataclass
class FakeRecord:
    author: PeerId
    roles: tuple[str, ...]
    addresses: tuple[str, ...] = ()


@dataclass
class Net:
    services: dict[PeerId, RegistryService] = field(default_factory=dict)
    down: set[PeerId] = field(default_factory=set)
    roles: dict[PeerId, tuple[str, ...]] = field(default_factory=dict)
    sent: int = 0


class FakeSwarm:
    def __init__(self, net: Net, me: PeerId, roles: tuple[str, ...]) -> None:
        self.net = net
        self.peer_id = me
        self.roles = roles
        net.roles[me] = roles
        self.hints: list[Any] = []

    @property
    def linked_peers(self) -> tuple[PeerId, ...]:
        return tuple(p for p in self.net.services if p != self.peer_id and p not in self.net.down)

    def records(self) -> list[FakeRecord]:
        return [FakeRecord(p, r) for p, r in self.net.roles.items() if p not in self.net.down]

    def send(self, to: PeerId, protocol: str, body: Any) -> bool:
        if self.peer_id in self.net.down or to in self.net.down or to not in self.net.services:
            return False
        self.net.sent += 1
        self.net.services[to].deliver(protocol, self.peer_id, unpack(pack(body)))
        return True

    def add_hints(self, hints: Any, *, pinned: bool = False) -> None:
        self.hints.extend(hints)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time that jumps only once every task has waited 10 real ms: storage writes
    run in worker threads, and time must not race ahead while one is in flight."""
    return trio.testing.MockClock(autojump_threshold=0.01)


def start(
    nursery: trio.Nursery, net: Net, me: PeerId, storage: Any, founders: tuple[PeerId, ...]
) -> trio.CancelScope:
    swarm = FakeSwarm(net, me, ("registry",) if storage is not None else ("queue",))
    service = RegistryService(
        swarm, Registry(), storage, founders=founders, rng=random.Random(me.public_key)
    )
    net.services[me] = service
    net.down.discard(me)
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await service.run()

    nursery.start_soon(run)
    return scope


def submit(concept: str, n: int) -> dict[str, Any]:
    return {"op": "submit_adapter", "concept": concept, "adapter": blob(n), "weight": 1}


def leaders(net: Net) -> list[PeerId]:
    return [
        p
        for p, s in net.services.items()
        if p not in net.down and s.node is not None and s.node.role is Role.LEADER
    ]


async def test_a_lone_registry_node_founds_its_own_group_and_commits_through_loopback(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    net = Net()
    me = peer(1)
    db = open_database(tmp_path / "node.db")
    async with trio.open_nursery() as nursery:
        start(nursery, net, me, RaftStorage(db), ())
        answer = await net.services[me].write(submit("dog", 1))
        assert answer["ok"] is True
        concept = await net.services[me].read({"q": "concept", "concept": "dog"})
        assert concept["pending_count"] == 1
        nursery.cancel_scope.cancel()
    assert net.sent == 0  # nothing left the node: a group of one


async def test_three_members_elect_a_leader_and_a_client_node_writes_and_reads(
    clock: trio.testing.MockClock,
) -> None:
    net = Net()
    members = (peer(1), peer(2), peer(3))
    async with trio.open_nursery() as nursery:
        for member in members:
            start(nursery, net, member, MemoryRaftStorage(), members)
        start(nursery, net, peer(9), None, members)  # a queue node: client only
        client = net.services[peer(9)]
        answer = await client.write(submit("cat", 1))
        assert answer["ok"] is True
        assert len(leaders(net)) == 1
        read = await client.read({"q": "concept", "concept": "cat"})
        assert read["pending_count"] == 1
        assert client.status().raft is None and client.status().leader in members
        nursery.cancel_scope.cancel()


async def test_killing_the_leader_elects_a_new_one_within_two_seconds_and_loses_no_write(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    net = Net()
    members = (peer(1), peer(2), peer(3))
    databases = {m: open_database(tmp_path / f"{i}.db") for i, m in enumerate(members)}
    scopes: dict[PeerId, trio.CancelScope] = {}
    acknowledged: list[int] = []
    async with trio.open_nursery() as nursery:
        for member in members:
            scopes[member] = start(nursery, net, member, RaftStorage(databases[member]), members)
        start(nursery, net, peer(9), None, members)
        client = net.services[peer(9)]
        for n in range(5):
            await client.write(submit("dog", n))
            acknowledged.append(n)
        (old,) = leaders(net)
        scopes[old].cancel()
        net.down.add(old)
        killed_at = trio.current_time()
        while not leaders(net):
            await trio.sleep(0.01)
        assert trio.current_time() - killed_at <= 2.0
        for n in range(5, 10):
            await client.write(submit("dog", n))
            acknowledged.append(n)
        # The old leader restarts from its database and catches up.
        scopes[old] = start(nursery, net, old, RaftStorage(databases[old]), members)
        await trio.sleep(1.0)
        history = await client.read({"q": "history", "concept": "dog"})
        adapters = {event["adapter"] for event in history}
        assert adapters == {blob(n) for n in acknowledged}
        restarted = net.services[old].node
        (leader,) = leaders(net)
        current = net.services[leader].node
        assert restarted is not None and current is not None
        assert restarted.applied_index == current.applied_index
        nursery.cancel_scope.cancel()


async def test_without_any_registry_member_a_request_ends_unavailable(
    clock: trio.testing.MockClock,
) -> None:
    net = Net()
    async with trio.open_nursery() as nursery:
        start(nursery, net, peer(9), None, ())
        with pytest.raises(RegistryUnavailable):
            await net.services[peer(9)].read({"q": "concepts"})
        nursery.cancel_scope.cancel()


async def test_a_malformed_command_is_refused_with_the_reason(
    clock: trio.testing.MockClock,
) -> None:
    net = Net()
    async with trio.open_nursery() as nursery:
        start(nursery, net, peer(1), MemoryRaftStorage(), ())
        with pytest.raises(RegistryRefused, match="op"):
            await net.services[peer(1)].write({"op": "drop tables"})
        nursery.cancel_scope.cancel()


async def test_raft_bodies_from_a_peer_without_the_registry_role_are_ignored(
    clock: trio.testing.MockClock,
) -> None:
    net = Net()
    me = peer(1)
    async with trio.open_nursery() as nursery:
        start(nursery, net, me, MemoryRaftStorage(), ())
        await net.services[me].write(submit("dog", 1))
        term = net.services[me].node.term
        # An outsider claims a huge term: were it believed, the leader would step down.
        outsider = peer(7)
        net.roles[outsider] = ("queue",)
        net.services[me].deliver("raft", outsider, ["vote", term + 100, 10**6, term + 100])
        await trio.sleep(1.0)
        node = net.services[me].node
        assert node.term == term and node.role is Role.LEADER
        nursery.cancel_scope.cancel()


async def test_a_fresh_registry_server_joins_when_the_leader_adds_it_and_then_votes(
    clock: trio.testing.MockClock,
) -> None:
    net = Net()
    members = (peer(1), peer(2), peer(3))
    joiner = peer(4)
    async with trio.open_nursery() as nursery:
        for member in members:
            start(nursery, net, member, MemoryRaftStorage(), members)
        start(nursery, net, joiner, MemoryRaftStorage(), members)  # not a founder
        start(nursery, net, peer(9), None, members)
        await net.services[peer(9)].write(submit("dog", 1))
        assert net.services[joiner].node.members == ()
        (leader,) = leaders(net)
        follower = next(m for m in members if m != leader)
        with pytest.raises(RegistryRefused, match="not the leader"):
            await net.services[follower].add_member(joiner)
        await net.services[leader].add_member(joiner)
        await trio.sleep(1.0)
        joined = net.services[joiner].node
        assert set(joined.members) == {*members, joiner}
        assert joined.applied_index == net.services[leader].node.applied_index
        # With four members, losing the leader still leaves a majority (3 of 4).
        net.down.add(leader)
        await net.services[peer(9)].write(submit("dog", 2))
        nursery.cancel_scope.cancel()
