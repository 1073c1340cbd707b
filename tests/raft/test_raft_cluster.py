"""Raft scenarios on the simulated network, in the spirit of MIT 6.824's tests.

Elections and re-elections, minority partitions, divergent logs repaired, snapshots sent to a
lagging follower, linearizable reads through the leader, single-server membership changes,
and a client that finds the leader by itself. The raftsim `Checker` watches every step.
"""

from __future__ import annotations

from typing import Any

from raftsim import Cluster, blob, check_log_matching, peer

from lightbox_node.raft import RaftParams, Role, Status
from lightbox_node.raft.log import SNAPSHOT_LIMITS
from lightbox_node.wire import pack

PARAMS = RaftParams()


def submit(n: int, concept: str = "c") -> dict[str, Any]:
    return {"op": "submit_adapter", "concept": concept, "adapter": blob(n), "weight": 1.0}


def visible(outcome: Any) -> set[str]:
    assert outcome.status is Status.OK, outcome
    return {a["adapter"] for a in (outcome.result or {}).get("pending_adapters", [])}


CONCEPT = {"q": "concept", "concept": "c"}


def same_state(cluster: Cluster, members: Any = None) -> None:
    nodes = [cluster.node(pid) for pid in (members or cluster.ids)]
    states = {pack(node.state_machine.snapshot(), SNAPSHOT_LIMITS) for node in nodes}
    assert len(states) == 1
    check_log_matching(nodes)


# -- elections ---------------------------------------------------------------------------------


def test_one_leader_is_elected_and_every_member_follows_it() -> None:
    cluster = Cluster(3, seed=1)
    leader = cluster.wait_for_leader(timeout=3 * PARAMS.election_timeout_max)
    cluster.run(2.0)
    assert cluster.leader() is leader
    for node in cluster.live():
        assert node.term == leader.term
        assert node.leader == leader.local
        if node is not leader:
            assert node.role is Role.FOLLOWER
    assert len(cluster.checker.leaders) == 1


def test_a_new_leader_is_elected_within_two_seconds_of_a_crash() -> None:
    cluster = Cluster(3, seed=2)
    old = cluster.wait_for_leader()
    cluster.write(submit(1))
    crashed_at = cluster.now
    cluster.crash(old.local)
    new = cluster.wait_for_leader(timeout=2.0)
    assert new.local != old.local and new.term > old.term
    assert cluster.now - crashed_at < 2.0
    assert cluster.write(submit(2)).status is Status.OK
    cluster.restart(old.local)
    cluster.settle()
    same_state(cluster)


def test_idle_followers_do_not_disturb_a_working_leader() -> None:
    cluster = Cluster(5, seed=3, drop=0.05)
    leader = cluster.wait_for_leader()
    cluster.run(30.0)
    assert cluster.leader() is leader and max(cluster.checker.leaders) == leader.term


def test_a_minority_elects_no_leader_and_commits_nothing() -> None:
    cluster = Cluster(5, seed=4)
    old = cluster.wait_for_leader()
    cluster.write(submit(1))
    cluster.settle()
    minority = [old.local, next(p for p in cluster.ids if p != old.local)]
    majority = [p for p in cluster.ids if p not in minority]
    cluster.partition(minority, majority)
    old_term = old.term
    stranded = cluster.propose(old.local, submit(2))  # appended, can never commit
    commit_before = old.commit_index

    new = cluster.wait_for_leader(among=majority)
    assert cluster.write(submit(3)).status is Status.OK
    cluster.run(10.0)
    # The old leader stepped down (check-quorum); the minority never has a leader again.
    assert old.role is not Role.LEADER
    assert cluster.outcome(old.local, stranded).status is Status.RETRY
    for pid in minority:
        assert cluster.node(pid).commit_index == commit_before
    later_leaders = [who for term, who in cluster.checker.leaders.items() if term > old_term]
    assert later_leaders and not set(later_leaders) & set(minority)

    # Healing repairs the divergent log: the stranded entry is replaced by the leader's.
    cluster.heal()
    cluster.settle()
    same_state(cluster)
    assert cluster.leader().term >= new.term
    assert (
        blob(2) not in cluster.node(old.local).state_machine.snapshot()["concepts"]["c"]["adapters"]
    )


def test_a_follower_with_a_long_divergent_log_is_repaired() -> None:
    cluster = Cluster(3, seed=5, params=RaftParams(max_entries_per_append=4))
    old = cluster.wait_for_leader()
    others = [p for p in cluster.ids if p != old.local]
    cluster.partition([old.local], others)
    for n in range(30):
        cluster.propose(old.local, submit(100 + n))  # 30 entries that will never commit
    cluster.wait_for_leader(among=others)
    for n in range(10):
        assert cluster.write(submit(n)).status is Status.OK
    cluster.heal()
    cluster.settle()
    same_state(cluster)
    adapters = cluster.node(old.local).state_machine.snapshot()["concepts"]["c"]["adapters"]
    assert set(adapters) == {blob(n) for n in range(10)}


# -- snapshots ---------------------------------------------------------------------------------


def test_a_lagging_follower_is_sent_the_snapshot_in_chunks() -> None:
    params = RaftParams(snapshot_threshold=10, snapshot_chunk_bytes=256)
    cluster = Cluster(3, seed=6, params=params)
    leader = cluster.wait_for_leader()
    lagging = next(p for p in cluster.ids if p != leader.local)
    cluster.crash(lagging)
    for n in range(40):
        assert cluster.write(submit(n)).status is Status.OK
    leader = cluster.leader()
    assert leader.log.snapshot_index >= 30, "the leader compacted its log"
    assert len(leader.log) < 12

    cluster.restart(lagging)
    chunks_before = cluster.delivered["snapshot"]
    cluster.settle()
    follower = cluster.node(lagging)
    assert cluster.delivered["snapshot"] - chunks_before >= 2, "sent in several chunks"
    assert follower.log.snapshot_index >= 30
    same_state(cluster)
    # it stays caught up afterwards through ordinary appends
    assert cluster.write(submit(99)).status is Status.OK
    cluster.settle()
    same_state(cluster)


def test_a_restarted_member_rebuilds_its_state_from_snapshot_and_log() -> None:
    cluster = Cluster(3, seed=7, params=RaftParams(snapshot_threshold=5))
    cluster.wait_for_leader()
    for n in range(23):
        cluster.write(submit(n))
    cluster.settle()
    for pid in cluster.ids:
        cluster.crash(pid)
    for pid in cluster.ids:
        cluster.restart(pid)
        assert cluster.node(pid).log.snapshot_index >= 20
    cluster.settle()
    same_state(cluster)
    adapters = cluster.node(cluster.ids[0]).state_machine.snapshot()["concepts"]["c"]["adapters"]
    assert len(adapters) == 23


# -- reads -------------------------------------------------------------------------------------


def test_a_read_after_a_committed_write_sees_it_on_the_leader_and_on_followers() -> None:
    cluster = Cluster(3, seed=8)
    leader = cluster.wait_for_leader()
    for n in range(5):
        assert cluster.write(submit(n)).status is Status.OK
        for pid in cluster.ids:  # at once: followers may not have applied it yet
            outcome = cluster.await_outcome(pid, cluster.read(pid, CONCEPT))
            assert blob(n) in visible(outcome)
    assert cluster.delivered["read-index"] > 0
    assert cluster.leader() is leader


def test_a_partitioned_old_leader_never_serves_a_stale_read() -> None:
    params = RaftParams(check_quorum=False)  # the old leader keeps believing it leads
    cluster = Cluster(5, seed=9, params=params)
    old = cluster.wait_for_leader()
    cluster.write(submit(1))
    minority = [old.local, next(p for p in cluster.ids if p != old.local)]
    majority = [p for p in cluster.ids if p not in minority]
    cluster.partition(minority, majority)
    cluster.wait_for_leader(among=majority)
    assert cluster.write(submit(2)).status is Status.OK
    assert old.role is Role.LEADER, "the old leader does not know it was deposed"

    at_old_leader = cluster.read(old.local, CONCEPT)
    at_minority_follower = cluster.read(minority[1], CONCEPT)
    cluster.run(5.0)
    for pid, request in ((old.local, at_old_leader), (minority[1], at_minority_follower)):
        outcome = cluster.outcome(pid, request)
        assert outcome is not None and outcome.status is Status.RETRY

    cluster.heal()
    cluster.settle()
    outcome = cluster.await_outcome(old.local, cluster.read(old.local, CONCEPT))
    assert blob(2) in visible(outcome)


def test_a_new_leader_serves_reads_only_after_committing_an_entry_of_its_term() -> None:
    cluster = Cluster(3, seed=10)
    leader = cluster.wait_for_leader()
    cluster.write(submit(1))
    cluster.crash(leader.local)
    new = cluster.wait_for_leader()
    assert new.log.term_at(new.commit_index) == new.term
    assert blob(1) in visible(cluster.await_outcome(new.local, cluster.read(new.local, CONCEPT)))


def test_an_invalid_query_is_rejected_without_waiting() -> None:
    cluster = Cluster(3, seed=11)
    leader = cluster.wait_for_leader()
    request = cluster.read(leader.local, {"q": "everything"})
    assert cluster.outcome(leader.local, request).status is Status.REJECTED


# -- membership --------------------------------------------------------------------------------


def test_servers_are_added_and_removed_one_at_a_time() -> None:
    cluster = Cluster(5, seed=12, founders=3)
    founders, spare = cluster.ids[:3], cluster.ids[3:]
    leader = cluster.wait_for_leader()
    for n in range(5):
        cluster.write(submit(n))

    # add two servers, one at a time; each catches up and votes
    for new in spare:
        leader = cluster.wait_for_leader()
        request = cluster.add_member(leader.local, new)
        assert cluster.await_outcome(leader.local, request).status is Status.OK
        assert new in leader.members
    cluster.settle()
    same_state(cluster)
    assert set(cluster.node(spare[0]).members) == set(cluster.ids)

    # a second change while one is uncommitted waits
    leader = cluster.wait_for_leader()
    first = cluster.remove_member(leader.local, founders[1])
    second = cluster.remove_member(leader.local, founders[2])
    assert cluster.outcome(leader.local, second).status is Status.RETRY
    assert cluster.await_outcome(leader.local, first).status is Status.OK

    # remove the leader itself: it steps down once that is committed, and others go on
    leader = cluster.wait_for_leader()
    request = cluster.remove_member(leader.local, leader.local)
    assert cluster.await_outcome(leader.local, request).status is Status.OK
    assert leader.role is Role.FOLLOWER
    successor = cluster.wait_for_leader(among=leader.members)
    assert successor.local != leader.local and leader.local not in successor.members
    assert cluster.write(submit(50)).status is Status.OK

    # the removed servers never lead again nor disturb the group
    removed = {founders[1], leader.local}
    term = successor.term
    cluster.run(20.0)
    assert cluster.leader() is successor and successor.term == term
    assert not any(cluster.checker.leaders.get(t) in removed for t in range(term, term + 100))
    same_state(cluster, successor.members)


def test_membership_changes_are_for_the_leader_only_and_keep_one_member() -> None:
    cluster = Cluster(2, seed=13)
    leader = cluster.wait_for_leader()
    follower = next(p for p in cluster.ids if p != leader.local)
    request = cluster.add_member(follower, peer(99))
    outcome = cluster.outcome(follower, request)
    assert outcome.status is Status.REDIRECT and outcome.leader == leader.local

    request = cluster.remove_member(leader.local, leader.local)
    assert cluster.await_outcome(leader.local, request).status is Status.OK
    last = cluster.wait_for_leader(among=[follower])
    assert last.members == (follower,)
    request = cluster.remove_member(last.local, last.local)
    outcome = cluster.outcome(last.local, request)
    assert outcome.status is Status.REJECTED and "1 to" in outcome.result


# -- clients -----------------------------------------------------------------------------------


def test_a_client_finds_the_leader_by_itself_and_follows_it_through_a_crash() -> None:
    cluster = Cluster(3, seed=14)
    client_id = peer(50)
    client = cluster.add_client(client_id, cluster.ids)
    cluster.wait_for_leader()
    for n in range(5):
        request = cluster.client_write(client_id, submit(n))
        assert cluster.await_outcome(client_id, request).status is Status.OK
    leader = cluster.leader()
    assert client.leader == leader.local

    cluster.crash(leader.local)
    request = cluster.client_write(client_id, submit(5))
    assert cluster.await_outcome(client_id, request, timeout=10.0).status is Status.OK
    assert client.leader == cluster.leader().local != leader.local
    outcome = cluster.await_outcome(client_id, cluster.client_read(client_id, CONCEPT))
    assert visible(outcome) == {blob(n) for n in range(6)}


def test_a_client_gets_a_redirect_from_a_follower_and_a_rejection_for_bad_commands() -> None:
    cluster = Cluster(3, seed=15)
    leader = cluster.wait_for_leader()
    client_id = peer(51)
    follower = next(p for p in cluster.ids if p != leader.local)
    client = cluster.add_client(client_id, [follower])
    request = cluster.client_write(client_id, submit(1))
    assert cluster.await_outcome(client_id, request).status is Status.OK
    assert client.leader == leader.local
    bad = cluster.client_write(client_id, {"op": "submit_adapter", "concept": "c"})
    outcome = cluster.await_outcome(client_id, bad)
    assert outcome.status is Status.REJECTED and "adapter" in outcome.result


def test_a_client_gives_up_when_no_member_answers() -> None:
    cluster = Cluster(3, seed=16)
    cluster.wait_for_leader()
    client_id = peer(52)
    cluster.add_client(client_id, cluster.ids, request_timeout=3.0)
    cluster.partition([client_id])
    request = cluster.client_write(client_id, submit(1))
    outcome = cluster.await_outcome(client_id, request, timeout=5.0)
    assert outcome.status is Status.RETRY


# -- the registry on every member --------------------------------------------------------------


def test_registry_commands_are_applied_identically_on_every_member() -> None:
    cluster = Cluster(5, seed=17, drop=0.1, duplicate=0.1, latency=(0.001, 0.1))
    members = cluster.ids
    cluster.wait_for_leader()
    a, b, merged, merged2 = blob("a"), blob("b"), blob("m1"), blob("m2")
    commands = [
        {"op": "set_metadata", "concept": "sks-dog", "metadata": {"title": "My dog"}, "at": 1},
        {"op": "submit_adapter", "concept": "sks-dog", "adapter": a, "weight": 2, "at": 2},
        {"op": "submit_adapter", "concept": "sks-dog", "adapter": b, "weight": 0.5, "at": 3},
        {
            "op": "record_merge",
            "concept": "sks-dog",
            "model": merged,
            "parent": None,
            "adapters": [a, b],
            "weights": [0.8, 0.2],
            "at": 4,
        },
        {
            "op": "record_merge",
            "concept": "sks-dog",
            "model": merged2,
            "parent": None,
            "adapters": [a],
            "weights": [1.0],
            "at": 5,
        },
    ]
    results = [cluster.write(command).result for command in commands]
    assert [r["ok"] for r in results] == [True, True, True, True, False]
    assert "stale parent" in results[-1]["error"]
    cluster.settle()
    same_state(cluster)
    for pid in members:
        registry = cluster.node(pid).state_machine
        assert registry.current_model("sks-dog") == merged
        history = registry.history("sks-dog")
        assert [event["kind"] for event in history] == ["metadata", "adapter", "adapter", "merge"]
        assert history[-1]["adapters"] == [a, b] and history[-1]["version"] == 1
    history = cluster.await_outcome(
        members[2], cluster.read(members[2], {"q": "history", "concept": "sks-dog", "after": 2})
    )
    assert history.status is Status.OK, history
    assert [event["seq"] for event in history.result] == [3, 4]
