"""Figure 8 of the Raft paper, step by step: a leader never commits an old-term entry by count.

Five servers S1…S5; every message is delivered (or not) by hand. Appends carry one entry
each, as the figure draws them.

(a) S1 leads term 1 and replicates entry X (index 2, term 1) to S2 only.
(b) S1 crashes; S5 is elected for term 2 by S3, S4 and itself and appends its own entries
    at index 2 (term 2) and 3, on no other server; then it crashes.
(c) S1 restarts and is elected for term 3; it replicates X to S3 and S4. X is now on a
    majority (S1, S3, S4), yet it is *not* committed: it is not of the leader's term.
(d) If S1 crashes now, S5 can be elected (term 4) by S2, S3, S4, whose last entries are of
    term 1, and it overwrites X everywhere. Had X been committed by counting replicas in
    (c), a committed entry would have been lost.
(e) If instead S1 first replicates an entry of its own term 3 to the majority, X is
    committed together with it, and S5 can never be elected again.
"""

from __future__ import annotations

from typing import Any

import pytest
from raftsim import ManualNet, blob

from lightbox_node.identity import PeerId
from lightbox_node.raft import RaftParams, Role

PARAMS = RaftParams(max_entries_per_append=1, check_quorum=False)


def adapter(n: int) -> dict[str, Any]:
    return {"op": "submit_adapter", "concept": "c", "adapter": blob(n), "weight": 1.0}


def among(*peers: PeerId):
    group = set(peers)
    return lambda src, dst, body: src in group and dst in group


def figure8_until_c() -> tuple[ManualNet, list[PeerId]]:
    net = ManualNet(5, params=PARAMS)
    s1, s2, s3, s4, s5 = servers = net.ids

    # (a) S1 leads term 1; its noop (index 1) reaches everyone; X (index 2) reaches S2 only.
    net.elect(s1, servers)
    net.deliver()
    assert all(net.node(s).log.last_index == 1 for s in servers)
    net.propose(s1, adapter(1))
    net.deliver(among(s1, s2))
    net.drop()
    assert net.node(s1).log.term_at(2) == 1 and net.node(s2).log.term_at(2) == 1
    assert net.node(s1).commit_index == 1

    # (b) S1 crashes; S5 leads term 2 with S3 and S4, appends index 2 (noop) and 3, crashes.
    net.crash(s1)
    net.elect(s5, [s3, s4])
    assert net.node(s5).term == 2
    net.propose(s5, adapter(2))
    net.drop()
    assert [net.node(s5).log.term_at(i) for i in (1, 2, 3)] == [1, 2, 2]
    net.crash(s5)

    # (c) S1 restarts and leads term 3 (votes of S2 and S3); X goes to S3 and S4, but
    # S1's own term-3 noop (index 3) goes nowhere yet.
    net.restart(s1)
    net.elect(s1, [s2, s3])
    assert net.node(s1).term == 3 and net.node(s1).log.term_at(3) == 3
    net.drop(lambda src, dst, body: dst == s2)

    def old_entries_only(src: PeerId, dst: PeerId, body: list[Any]) -> bool:
        # S1 probes back to index 2; once a follower holds X, the term-3 entry stays queued
        if dst == s1:
            return True
        if body[0] != "append" or dst not in (s3, s4):
            return False
        carries_own_term = bool(body[6]) and body[6][0][0] == 3
        return not (carries_own_term and net.node(dst).log.last_index >= 2)

    net.deliver(old_entries_only)
    for server in (s1, s3, s4):
        assert net.node(server).log.term_at(2) == 1, "X is on a majority"
    assert net.node(s3).log.last_index == 2 and net.node(s4).log.last_index == 2
    return net, servers


def test_an_old_term_entry_on_a_majority_is_not_committed_by_counting() -> None:
    net, (s1, _s2, s3, s4, _s5) = figure8_until_c()
    leader = net.node(s1)
    assert leader.role is Role.LEADER
    assert leader.commit_index < 2, "X (index 2, term 1) must not be committed by counting"
    assert net.node(s3).commit_index < 2 and net.node(s4).commit_index < 2
    assert leader.state_machine.concepts() == []


def test_the_uncommitted_old_entry_may_then_be_overwritten_by_a_newer_leader() -> None:
    net, (s1, s2, s3, s4, s5) = figure8_until_c()
    net.drop()
    net.crash(s1)
    net.restart(s5)
    net.elect(s5, [s2, s3, s4])  # their last entries are of term 1, S5's of term 2
    net.deliver()
    net.tick(s5, advance=PARAMS.heartbeat_interval)  # tells followers the commit index
    net.deliver()
    for server in (s2, s3, s4, s5):
        node = net.node(server)
        assert node.log.term_at(2) == 2, "X was replaced by S5's entry of term 2"
        assert node.commit_index == node.log.last_index == 4
    # nobody ever applied X: the checker saw every committed and applied entry
    committed_x = [
        i for i, (entry, _) in net.checker.committed.items() if entry.term == 1 and i == 2
    ]
    assert committed_x == []
    assert net.node(s2).state_machine.describe("c")["pending_adapters"] == [
        {"adapter": blob(2), "weight": 1.0, "base": None, "by": str(s5), "at": 0}
    ]


def test_an_old_term_entry_is_committed_with_the_first_entry_of_the_leaders_term() -> None:
    net, (s1, s2, s3, s4, s5) = figure8_until_c()
    net.tick(s1, advance=PARAMS.heartbeat_interval)  # heartbeats carry index 3 (term 3)
    net.deliver(lambda src, dst, body: {src, dst} <= {s1, s3, s4})
    leader = net.node(s1)
    assert leader.commit_index == 3
    assert leader.state_machine.describe("c")["pending_adapters"][0]["adapter"] == blob(1)
    # S5's log (last entry of term 2) is now behind a majority: it can never win again.
    net.drop()
    net.crash(s1)
    net.restart(s5)
    with pytest.raises(AssertionError, match="was not elected"):
        net.elect(s5, [s2, s3, s4])
    net.drop()
    winner = net.elect(s3, [s2, s4, s5])
    net.deliver()
    assert winner.log.term_at(2) == 1
    for server in (s2, s3, s4, s5):
        assert net.node(server).log.term_at(2) == 1, "X, committed, survives everywhere"
