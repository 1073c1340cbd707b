"""Raft's safety properties under random partitions, crashes, restarts, loss and reordering.

Each seed builds a cluster (3 or 5 founders, sometimes a spare server for membership changes)
and plays a random schedule: partitions and heals, crashes and restarts from storage,
dropped, duplicated and reordered messages, writes and reads at random members, and
single-server membership changes. The `Checker` in raftsim raises at the first broken
invariant (two leaders in a term, committed or applied entries that differ, a leader missing
a committed entry, a message sent before what it depends on was saved). At the end the
network heals, every server restarts, and the group must commit a write, converge to one
state machine state and have matching logs.

Reads are checked for linearizability against a grow-only set: every adapter whose write
was acknowledged before a read began must be visible to that read.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from raftsim import Cluster, SafetyViolation, blob, check_log_matching

from lightbox_node.raft import RaftParams, Role, Status
from lightbox_node.raft.log import SNAPSHOT_LIMITS
from lightbox_node.wire import pack

SEEDS_PER_CHUNK = 25
CHUNKS = 10
FIGURE8_CHUNKS = 4


def submit(n: int) -> dict[str, Any]:
    return {"op": "submit_adapter", "concept": "c", "adapter": blob(n), "weight": 1.0}


def run_random_schedule(seed: int) -> Cluster:
    rng = random.Random(seed)
    founders = rng.choice([3, 3, 5])
    spare = rng.random() < 0.4
    params = RaftParams(
        snapshot_threshold=rng.choice([4, 16, 1024]),
        snapshot_chunk_bytes=rng.choice([64, 4096]),
        max_entries_per_append=rng.choice([1, 3, 64]),
    )
    cluster = Cluster(
        founders + spare,
        seed=seed,
        params=params,
        founders=founders,
        latency=(0.001, rng.choice([0.01, 0.05, 0.3])),
        drop=rng.choice([0.0, 0.05, 0.2]),
        duplicate=rng.choice([0.0, 0.05]),
    )
    ids = cluster.ids
    written = 0
    writes: list[tuple[int, int]] = []  # (request at node, adapter number)
    reads: list[tuple[Any, int, float]] = []
    for _ in range(rng.randint(6, 12)):
        event = rng.random()
        live = [pid for pid in ids if cluster.nodes[pid] is not None]
        if event < 0.15:
            shuffled = ids[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(ids) - 1)
            cluster.partition(shuffled[:cut], shuffled[cut:])
        elif event < 0.25:
            cluster.heal()
        elif event < 0.35 and len(live) > 1:
            cluster.crash(rng.choice(live))
        elif event < 0.45:
            for pid in ids:
                cluster.restart(pid)
        elif event < 0.55:
            leader = cluster.leader()
            if leader is not None:
                target = rng.choice(ids)
                if target in leader.members and len(leader.members) > 1:
                    cluster.remove_member(leader.local, target)
                elif target not in leader.members:
                    cluster.add_member(leader.local, target)
        for _ in range(rng.randint(0, 6)):
            live = [pid for pid in ids if cluster.nodes[pid] is not None]
            leader = cluster.leader()
            pid = leader.local if leader and rng.random() < 0.7 else rng.choice(live)
            if rng.random() < 0.6:
                written += 1
                writes.append((pid, cluster.propose(pid, submit(written)), written))
            else:
                # Often at a node that believes it leads, possibly deposed without knowing.
                believers = [n.local for n in cluster.live() if n.role is Role.LEADER]
                if believers and rng.random() < 0.5:
                    pid = rng.choice(believers)
                query = {"q": "concept", "concept": "c"}
                reads.append((pid, cluster.read(pid, query), cluster.now))
        cluster.run(rng.uniform(0.05, 1.5))

    return _converge(cluster, written + 1, writes, reads)


def run_figure8_schedule(seed: int) -> Cluster:
    """MIT 6.824's "Figure 8 (unreliable)": five servers, a write at whoever leads, then
    often a crash of that leader after a short or a long pause, so that leaders change while
    their entries are on only some servers. Appends carry one entry each, so an old-term
    entry often reaches a majority before the new leader's own entry does."""
    rng = random.Random(seed)
    cluster = Cluster(
        5,
        seed=seed,
        params=RaftParams(max_entries_per_append=1),
        latency=(0.001, 0.03),
        drop=rng.choice([0.0, 0.1]),
    )
    ids = cluster.ids
    writes: list[tuple[Any, int, int]] = []
    for number in range(1, 41):
        leader = cluster.leader()
        if leader is not None:
            writes.append((leader.local, cluster.propose(leader.local, submit(number)), number))
        pause = rng.uniform(0, 0.02) if rng.random() < 0.9 else rng.uniform(0, 0.6)
        cluster.run(pause)
        if leader is not None and cluster.nodes[leader.local] is not None and rng.random() < 0.5:
            cluster.crash(leader.local)
        live = [pid for pid in ids if cluster.nodes[pid] is not None]
        if len(live) < 3:
            cluster.restart(rng.choice([pid for pid in ids if pid not in live]))
    return _converge(cluster, 41, writes, [])


def _converge(cluster: Cluster, number: int, writes: list, reads: list) -> Cluster:
    """Heal everything; the group must make progress, converge, and have answered reads right."""
    cluster.heal()
    cluster.drop = 0.0
    for pid in cluster.ids:
        cluster.restart(pid)
    final = cluster.write(submit(number), timeout=30.0)
    assert final.status is Status.OK
    cluster.settle(timeout=30.0)
    leader = cluster.leader()
    assert leader is not None
    members = [cluster.node(pid) for pid in leader.members]
    assert cluster.invalid == [], "a correct peer's message was reported invalid"
    states = {pack(node.state_machine.snapshot(), SNAPSHOT_LIMITS) for node in members}
    assert len(states) == 1, "members applied the same log into different states"
    check_log_matching(cluster.live())
    _check_reads(cluster, writes, reads)
    return cluster


def _check_reads(cluster: Cluster, writes: list, reads: list) -> None:
    acknowledged = {}
    for pid, request_id, number in writes:
        found = cluster.outcomes.get((pid, request_id))
        if found is not None and found[1].status is Status.OK:
            acknowledged[number] = found[0]
    for pid, request_id, began in reads:
        found = cluster.outcomes.get((pid, request_id))
        if found is None or found[1].status is not Status.OK:
            continue
        result = found[1].result
        seen = {a["adapter"] for a in result["pending_adapters"]} if result else set()
        for number, acked_at in acknowledged.items():
            if acked_at < began and blob(number) not in seen:
                raise SafetyViolation(f"stale read: write {number} acknowledged before the read")


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_schedules_never_break_raft_safety(chunk: int) -> None:
    for seed in range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK):
        try:
            run_random_schedule(seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc


@pytest.mark.parametrize("chunk", range(FIGURE8_CHUNKS))
def test_leader_churn_never_commits_an_old_term_entry_by_counting(chunk: int) -> None:
    for seed in range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK):
        try:
            run_figure8_schedule(seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
