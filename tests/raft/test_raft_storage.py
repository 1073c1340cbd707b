"""Raft's durable state in SQLite: what is saved before a reply survives a crash and a restart.

The regression this guards against: a Raft library that keeps currentTerm and votedFor only
in memory forgets its vote in a restart, votes again in the same term, and lets two leaders
be elected in one term. `test_forgetting_the_vote_on_restart_elects_two_leaders_in_a_term`
shows that scenario happening with such a storage; the tests before it show it cannot
happen with `RaftStorage`, on a real database file.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from raftsim import Cluster, ManualNet, SafetyViolation, blob, peer
from sqlite_utils import Database

from lightbox_node.errors import StoreError
from lightbox_node.raft import (
    DurableState,
    LogEntry,
    MemoryRaftStorage,
    Persist,
    RaftNode,
    RaftParams,
    RaftStorage,
    Registry,
    Role,
    Snapshot,
    Status,
    create_raft_tables,
)
from lightbox_node.raft.messages import RequestVote, RequestVoteReply, parse_message
from lightbox_node.store import Migration, open_database

RAFT_MIGRATIONS = (Migration(1, "create raft tables", create_raft_tables),)


def open_storage(path: Path) -> RaftStorage:
    return RaftStorage(open_database(path, RAFT_MIGRATIONS))


def reopen(storage: RaftStorage, path: Path) -> RaftStorage:
    """Close the connection (as a crash would) and open the file again."""
    storage._db.conn.close()
    return open_storage(path)


def submit(n: int) -> dict[str, Any]:
    return {"op": "submit_adapter", "concept": "c", "adapter": blob(n), "weight": 1.0}


A, B, C = peer(1), peer(2), peer(3)


# -- the storage itself ------------------------------------------------------------------------


def test_a_fresh_database_holds_a_fresh_state_and_bootstrap_founds_a_group_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raft.sqlite3"
    storage = open_storage(path)
    assert storage.load() == DurableState.fresh()
    founded = storage.bootstrap([C, A, B])
    assert founded.snapshot.members == tuple(sorted([A, B, C], key=lambda p: p.public_key))
    storage.save(Persist(term=4, voted_for=B))
    storage = reopen(storage, path)
    assert storage.bootstrap([A]).term == 4, "bootstrapping again changes nothing"
    assert storage.load().snapshot.members == founded.snapshot.members


def test_term_vote_log_and_snapshot_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "raft.sqlite3"
    storage = open_storage(path)
    storage.bootstrap([A, B, C])
    entries = [LogEntry.noop(1), LogEntry.of_command(1, A, submit(1)), LogEntry.config(2, [A, B])]
    storage.save(Persist(2, A, None, 1, 1, tuple(entries)))
    storage = reopen(storage, path)
    assert storage.load() == DurableState(2, A, Snapshot(0, 0, (A, B, C)), tuple(entries))

    # a follower's conflicting suffix is replaced
    replacement = (LogEntry.of_command(3, B, submit(2)), LogEntry.noop(3))
    storage.save(Persist(3, None, None, 3, 3, replacement))
    storage = reopen(storage, path)
    assert storage.load().entries == (*entries[:2], *replacement)

    # a snapshot compacts the log up to its index, keeping what follows
    snapshot = Snapshot(2, 1, (A, B, C), b"\x80")
    storage.save(Persist(3, B, snapshot))
    storage = reopen(storage, path)
    assert storage.load() == DurableState(3, B, snapshot, replacement)

    # an installed snapshot that conflicts with the log replaces all of it
    snapshot = Snapshot(7, 5, (A, B), b"\x81")
    storage.save(Persist(5, None, snapshot, 8, 8, ()))
    storage = reopen(storage, path)
    assert storage.load() == DurableState(5, None, snapshot, ())


def test_sqlite_and_memory_storage_agree_on_every_save_of_a_real_run(tmp_path: Path) -> None:
    """Every Persist of a cluster run with crashes and snapshots, saved to both storages."""

    class Both:
        def __init__(self, pid: Any) -> None:
            self.sqlite = open_storage(tmp_path / f"{pid}.sqlite3")
            self.memory = MemoryRaftStorage()

        def bootstrap(self, members: Any) -> DurableState:
            self.memory.bootstrap(members)
            return self.sqlite.bootstrap(members)

        def save(self, persist: Persist) -> None:
            self.sqlite.save(persist)
            self.memory.save(persist)
            assert self.sqlite.load() == self.memory.load()

        def load(self) -> DurableState:
            return self.sqlite.load()

    cluster = Cluster(3, seed=21, params=RaftParams(snapshot_threshold=6), storage_factory=Both)
    leader = cluster.wait_for_leader()
    for n in range(8):
        cluster.write(submit(n))
    cluster.crash(leader.local)
    for n in range(8, 16):
        cluster.write(submit(n))
    cluster.restart(leader.local)
    cluster.settle()
    for pid in cluster.ids:
        assert cluster.storages[pid].load() == cluster.node(pid).durable_state()


def test_storage_refuses_a_connection_that_does_not_fsync_every_commit(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "weak.sqlite3")
    db = Database(conn)
    create_raft_tables(db)
    conn.execute("PRAGMA synchronous=NORMAL")
    with pytest.raises(StoreError, match="synchronous"):
        RaftStorage(db)


def test_storage_refuses_a_database_without_the_raft_tables(tmp_path: Path) -> None:
    db = open_database(tmp_path / "empty.sqlite3", ())
    with pytest.raises(StoreError, match="no raft tables"):
        RaftStorage(db)


def test_a_damaged_log_is_reported_not_obeyed(tmp_path: Path) -> None:
    path = tmp_path / "raft.sqlite3"
    storage = open_storage(path)
    storage.bootstrap([A, B, C])
    entries = tuple(LogEntry.of_command(1, A, submit(n)) for n in range(3))
    storage.save(Persist(1, A, None, 1, 1, entries))
    storage._db.conn.execute("DELETE FROM raft_log WHERE idx = 2")
    with pytest.raises(StoreError, match="damaged"):
        storage.load()
    storage._db.conn.execute("UPDATE raft_log SET entry = x'c1' WHERE idx = 1")
    with pytest.raises(StoreError, match="damaged"):
        storage.load()
    storage._db.conn.execute("DELETE FROM raft_log")
    storage._db.conn.execute("UPDATE raft_state SET voted_for = x'0102'")
    with pytest.raises(StoreError, match="damaged"):
        storage.load()


# -- votes are not forgotten -------------------------------------------------------------------


def vote_reply(actions: list[Any]) -> RequestVoteReply:
    sends = [a for a in actions if type(a).__name__ == "Send"]
    assert len(sends) == 1
    reply = parse_message(sends[0].body)
    assert isinstance(reply, RequestVoteReply)
    return reply


def test_a_vote_is_saved_before_the_reply_that_grants_it(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "c.sqlite3")
    node = RaftNode(C, storage.bootstrap([A, B, C]), Registry(), 0.0, rng=random.Random(1))
    actions = node.receive(A, RequestVote(1, 0, 0).to_wire(), 5.0)
    assert isinstance(actions[0], Persist)
    assert (actions[0].term, actions[0].voted_for) == (1, A)
    assert vote_reply(actions).granted


def test_a_restarted_member_cannot_vote_twice_in_a_term(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    storage = open_storage(path)
    node = RaftNode(C, storage.bootstrap([A, B, C]), Registry(), 0.0, rng=random.Random(1))
    actions = node.receive(A, RequestVote(1, 0, 0).to_wire(), 5.0)
    storage.save(actions[0])  # the shell saves, then sends the reply granting the vote
    assert vote_reply(actions).granted

    storage = reopen(storage, path)  # crash, restart from the file
    restarted = RaftNode(C, storage.load(), Registry(), 6.0, rng=random.Random(2))
    assert (restarted.term, restarted.voted_for) == (1, A)
    actions = restarted.receive(B, RequestVote(1, 0, 0).to_wire(), 6.0)
    assert not vote_reply(actions).granted, "voted twice in term 1"
    # it may still vote again in a later term, once
    actions = restarted.receive(B, RequestVote(2, 0, 0).to_wire(), 7.0)
    storage.save(actions[0])
    assert vote_reply(actions).granted
    storage = reopen(storage, path)
    assert storage.load().voted_for == B and storage.load().term == 2


class ForgetfulStorage(MemoryRaftStorage):
    """Keeps the log but not currentTerm and votedFor, like the library the issue warns of."""

    def save(self, persist: Persist) -> None:
        term, vote = self.term, self.voted_for
        super().save(persist)
        self.term, self.voted_for = term, vote


def two_candidates_and_a_restart(storage_factory: Any) -> ManualNet:
    """A and B stand in term 1; C votes for A, which wins; C restarts; B's request reaches C."""
    net = ManualNet(3, params=RaftParams(check_quorum=False), storage_factory=storage_factory)
    a, b, c = net.ids
    net.now = 5.0
    net.tick(a)
    net.tick(b)
    assert net.node(a).term == net.node(b).term == 1
    net.deliver(lambda s, d, body: s == a and d == c)  # C votes for A
    net.deliver(lambda s, d, body: d == a and body[0] == "vote-reply")
    assert net.node(a).role is Role.LEADER and net.node(a).term == 1
    held = [m for m in net.outbox if m[0] == b and m[1] == c]
    net.crash(c)
    net.restart(c)
    net.outbox += held  # B's request arrives after the restart
    net.deliver(lambda s, d, body: s == b and d == c)
    net.deliver(lambda s, d, body: d == b and body[0] == "vote-reply")
    return net


def test_forgetting_the_vote_on_restart_elects_two_leaders_in_a_term() -> None:
    with pytest.raises(SafetyViolation, match="two leaders in term 1"):
        two_candidates_and_a_restart(lambda pid: ForgetfulStorage())


def test_with_raft_storage_the_same_schedule_elects_one_leader(tmp_path: Path) -> None:
    net = two_candidates_and_a_restart(lambda pid: open_storage(tmp_path / f"{pid}.sqlite3"))
    a, b, _c = net.ids
    assert net.node(a).role is Role.LEADER and net.node(b).role is Role.CANDIDATE


# -- a whole group restarted from its files ----------------------------------------------------


def test_a_full_cluster_restart_from_sqlite_files_keeps_every_committed_write(
    tmp_path: Path,
) -> None:
    paths = {}

    def factory(pid: Any) -> RaftStorage:
        paths[pid] = tmp_path / f"{pid}.sqlite3"
        return open_storage(paths[pid])

    params = RaftParams(snapshot_threshold=7)
    cluster = Cluster(3, seed=22, params=params, storage_factory=factory)
    cluster.wait_for_leader()
    for n in range(20):
        assert cluster.write(submit(n)).status is Status.OK
    terms = {pid: cluster.node(pid).term for pid in cluster.ids}
    for pid in cluster.ids:
        cluster.crash(pid)
        cluster.storages[pid] = reopen(cluster.storages[pid], paths[pid])
    for pid in cluster.ids:
        cluster.restart(pid)
        node = cluster.node(pid)
        assert node.term == terms[pid]
        assert node.log.snapshot_index >= 14, "restored from the saved snapshot"
    assert cluster.write(submit(20)).status is Status.OK
    cluster.settle()
    for pid in cluster.ids:
        adapters = cluster.node(pid).state_machine.snapshot()["concepts"]["c"]["adapters"]
        assert set(adapters) == {blob(n) for n in range(21)}
