"""Convergence of 200 gossip routers in virtual time: spread, partitions, attackers, expiry.

Each test builds its own `SimNet` (a random connected graph, ~8 links per node, 50-70 ms per
hop, heartbeats every second at random phases) with a fixed seed, so every run is the same.
"""

from __future__ import annotations

import hashlib

from simnet import NETWORK, SimNet, wall_ms

from lightbox_node.gossip.records import build_record_frame
from lightbox_node.identity import Identity, PeerId

N = 200
WARM_UP_S = 5.0


def _network(seed: int) -> SimNet:
    sim = SimNet(N, seed=seed, degree=8)
    sim.run_until(WARM_UP_S)
    return sim


def test_a_new_record_reaches_every_node() -> None:
    sim = _network(seed=1)
    degrees = [len(sim.neighbours_of(i)) for i in range(N)]
    assert 7 <= sum(degrees) / N <= 9
    for node, degree in zip(sim.nodes, degrees, strict=True):
        assert min(4, degree) <= len(node.router.mesh) <= 12
    author, seq = sim.publish(17)
    sim.run_for(1.0)
    assert sim.holders(author, seq) == N  # eager push alone, within a second
    assert {e[2].kind for e in sim.events} == {"first_delivery"}


def test_a_newer_record_replaces_the_old_one_everywhere() -> None:
    sim = _network(seed=2)
    author, _ = sim.publish(3, free_slots=1)
    sim.run_for(2.0)
    _, seq = sim.publish(3, free_slots=0)
    sim.run_for(2.0)
    assert sim.holders(author, seq) == N
    assert all(node.store.get(sim.nodes[3].peer_id).free_slots == 0 for node in sim.nodes)


def test_a_partitioned_half_catches_up_after_healing() -> None:
    sim = _network(seed=3)
    left = set(range(N // 2))
    cut = sim.partition(left)
    assert len(cut) > 50
    published = [sim.publish(i) for i in (1, 2, 3, 150, 151)]
    sim.publish(4)
    updated = sim.publish(4)  # the left side also sees an update of one record
    published.append(updated)
    sim.run_for(15.0)  # long past the IHAVE window: only anti-entropy can repair now
    for author, seq in published:
        reachable = _reachable(sim, sim.index_of(PeerId(author)))
        holding = {i for i, node in enumerate(sim.nodes) if node.store.get(PeerId(author))}
        assert holding == reachable  # all of its side that links reach, nobody else
        assert len(reachable) < N // 2 + 5
        assert sim.holders(author, seq) == len(reachable)
    sim.heal()
    sim.run_for(15.0)
    for author, seq in published:
        assert sim.holders(author, seq) == N
    digests = {tuple(sorted(node.store.digest().items())) for node in sim.nodes}
    assert len(digests) == 1


def test_an_offline_node_catches_up_when_it_comes_back() -> None:
    sim = _network(seed=4)
    away = 77
    links = sim.neighbours_of(away)
    for other in links:
        sim.disconnect(away, other)
    published = [sim.publish(i) for i in range(0, 40, 4)]
    sim.run_for(20.0)
    for other in links:
        sim.connect(away, other)
    sim.run_for(3.0)
    assert all(sim.nodes[away].store.get(PeerId(a)) for a, _ in published)


def test_a_node_that_missed_records_catches_up_through_periodic_anti_entropy() -> None:
    sim = _network(seed=7)
    deaf = 123
    sim.deaf.add(deaf)  # links stay up, so no reconnect triggers a sync
    published = [sim.publish(i) for i in range(0, 60, 6)]
    sim.run_for(10.0)
    assert not any(sim.nodes[deaf].store.get(PeerId(a)) for a, _ in published)
    sim.deaf.clear()
    sim.run_for(25.0)  # two anti-entropy rounds of 10 heartbeats, with some slack
    assert all(sim.nodes[deaf].store.get(PeerId(a)) for a, _ in published)


def test_flooding_and_forging_nodes_are_reported_while_honest_records_converge() -> None:
    sim = _network(seed=5)
    flooder, forger = 10, 20
    forged_author = Identity.from_seed(hashlib.sha256(b"forged").digest())
    forged = bytearray(
        build_record_frame(
            forged_author,
            network=NETWORK,
            roles=("gpu",),
            version="6.6.6",
            seq=1,
            now_ms=wall_ms(sim.now),
            ttl_ms=60_000,
        )
    )
    forged[forged.index(b"6.6.6")] = ord("9")  # breaks the signature
    for neighbour in sim.neighbours_of(flooder):
        for n in range(500):
            sim.inject(flooder, neighbour, ["h", [hashlib.blake2b(b"%d" % n).digest()[:16]]])
    for neighbour in sim.neighbours_of(forger):
        sim.inject(forger, neighbour, ["m", [bytes(forged)]])
        sim.inject(forger, neighbour, ["d", "not", "a", "digest"])
    honest = [sim.publish(i) for i in (30, 31, 32)]
    sim.run_for(10.0)

    for author, seq in honest:
        assert sim.holders(author, seq) == N
    assert sim.holders(forged_author.peer_id.public_key, 1) == 0

    def observers(kind: str, about: int) -> set[int]:
        return {observer for _, observer, _ in sim.events_of(kind, about=about)}

    assert observers("flood", flooder) == set(sim.neighbours_of(flooder))
    assert observers("broken_promise", flooder) == set(sim.neighbours_of(flooder))
    assert observers("invalid_message", forger) == set(sim.neighbours_of(forger))
    blamed = {sim.index_of(e.peer) for _, _, e in sim.events if e.kind != "first_delivery"}
    assert blamed == {flooder, forger}
    invalid_per_neighbour = len(sim.events_of("invalid_message", about=forger)) / len(
        sim.neighbours_of(forger)
    )
    assert invalid_per_neighbour == 2  # one for the forged record, one for the bad body


def test_the_record_of_a_node_that_stops_republishing_expires_everywhere() -> None:
    sim = _network(seed=6)
    silent, chatty = 40, 41
    silent_author, _ = sim.publish(silent, ttl_ms=20_000)  # t = 5
    sim.run_for(5.0)
    sim.publish(silent, ttl_ms=20_000)  # t = 10, its last record: expires at t = 30
    chatty_author = b""
    while sim.now < 33.0:
        chatty_author, _ = sim.publish(chatty, ttl_ms=20_000)
        sim.run_for(5.0)
        if sim.now <= 29.0:
            assert sim.holders(silent_author, 2) == N
    assert sim.now >= 33.0
    assert not any(node.store.get(PeerId(silent_author)) for node in sim.nodes)
    assert sim.holders(chatty_author, sim.nodes[chatty].seq) == N
    removed_at = [t for t, _, r in sim.removed if r.author == PeerId(silent_author)]
    assert len(removed_at) == N and all(30.0 <= t <= 31.0 for t in removed_at)


def test_the_simulation_is_deterministic() -> None:
    runs = []
    for _ in range(2):
        sim = SimNet(50, seed=11)
        sim.run_until(3.0)
        sim.publish(5)
        sim.run_for(5.0)
        runs.append((sim.bytes_sent, [(t, i, e.kind) for t, i, e in sim.events]))
    assert runs[0] == runs[1]


def _reachable(sim: SimNet, start: int) -> set[int]:
    """The nodes that the links currently up connect to `start`."""
    found, frontier = {start}, [start]
    while frontier:
        for other in sim.neighbours_of(frontier.pop()):
            if other not in found:
                found.add(other)
                frontier.append(other)
    return found
