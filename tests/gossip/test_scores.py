"""Peer scores: each component, decay, reconnects, colocation, thresholds and the table."""

from __future__ import annotations

import pytest

from lightbox_node.gossip.actions import PeerEvent
from lightbox_node.gossip.scores import PeerScores, ScoreParams, ScoreRow
from lightbox_node.identity import Identity, PeerId


def peer(n: int) -> PeerId:
    return Identity.from_seed(n.to_bytes(32, "big")).peer_id


ALICE, BOB = peer(1), peer(2)


def observe(scores: PeerScores, who: PeerId, kind: str, times: int = 1, now: float = 0.0) -> None:
    for _ in range(times):
        scores.observe(PeerEvent(who, kind), now)


def test_a_peer_never_seen_scores_zero_and_is_not_remembered() -> None:
    scores = PeerScores()
    assert scores.score(ALICE, 0.0) == 0.0
    assert ALICE not in scores


def test_first_deliveries_raise_the_score_up_to_a_cap() -> None:
    params = ScoreParams(first_delivery_weight=1.0, first_delivery_cap=10.0)
    scores = PeerScores(params)
    observe(scores, ALICE, "first_delivery", 3)
    assert scores.score(ALICE, 0.0) == pytest.approx(3.0)
    observe(scores, ALICE, "first_delivery", 100)
    assert scores.score(ALICE, 0.0) == pytest.approx(10.0)


def test_invalid_messages_lower_the_score_by_their_square() -> None:
    scores = PeerScores(ScoreParams(invalid_message_weight=-10.0))
    observe(scores, ALICE, "invalid_message")
    assert scores.score(ALICE, 0.0) == pytest.approx(-10.0)
    observe(scores, ALICE, "invalid_message", 2)
    assert scores.score(ALICE, 0.0) == pytest.approx(-90.0)


def test_broken_promises_lower_the_score() -> None:
    scores = PeerScores(ScoreParams(broken_promise_weight=-5.0, broken_promise_threshold=0.0))
    observe(scores, ALICE, "broken_promise", 2)
    assert scores.score(ALICE, 0.0) == pytest.approx(-20.0)


def test_broken_promises_up_to_the_threshold_are_forgiven() -> None:
    scores = PeerScores(ScoreParams(broken_promise_threshold=2.0))
    observe(scores, ALICE, "broken_promise", 2)
    assert scores.score(ALICE, 0.0) == 0.0
    observe(scores, ALICE, "broken_promise")
    assert scores.score(ALICE, 0.0) < 0.0


def test_duplicates_cost_a_little_only_past_their_cap() -> None:
    scores = PeerScores(ScoreParams(duplicate_weight=-0.1, duplicate_cap=5.0))
    observe(scores, ALICE, "duplicate", 5)
    assert scores.score(ALICE, 0.0) == 0.0
    observe(scores, ALICE, "duplicate", 10)
    assert scores.score(ALICE, 0.0) == pytest.approx(-1.0)


def test_each_report_of_flooding_beyond_the_rate_limit_lowers_the_score() -> None:
    scores = PeerScores(ScoreParams(flood_weight=-5.0))
    observe(scores, ALICE, "flood", 3)
    assert scores.score(ALICE, 0.0) == pytest.approx(-15.0)


def test_a_sustained_flood_ends_in_refusing_the_peer() -> None:
    scores = PeerScores()
    for second in range(60):  # the router reports once per second over the limit
        scores.observe(PeerEvent(ALICE, "flood", "over 50 gossip bodies/s"), float(second))
    assert not scores.accepts(ALICE, 60.0)


def test_completed_jobs_raise_and_faulted_jobs_lower_the_application_score() -> None:
    scores = PeerScores(ScoreParams(job_ok_weight=2.0, job_ok_cap=3.0, job_fault_weight=-10.0))
    for _ in range(5):
        scores.record_job(ALICE, True, 0.0)
    assert scores.score(ALICE, 0.0) == pytest.approx(6.0)
    scores.record_job(BOB, False, 0.0)
    assert scores.score(BOB, 0.0) == pytest.approx(-10.0)


def test_unknown_event_kinds_are_ignored() -> None:
    scores = PeerScores()
    observe(scores, ALICE, "something_new")
    assert ALICE not in scores


# -- time ------------------------------------------------------------------------------------


def test_counters_decay_by_half_every_half_life() -> None:
    scores = PeerScores(ScoreParams(first_delivery_half_life=60.0))
    observe(scores, ALICE, "first_delivery", 40)
    assert scores.score(ALICE, 60.0) == pytest.approx(20.0)
    assert scores.score(ALICE, 120.0) == pytest.approx(10.0)


def test_a_bad_score_returns_toward_zero_over_time() -> None:
    scores = PeerScores(ScoreParams(invalid_message_half_life=100.0))
    observe(scores, ALICE, "invalid_message", 3)
    observe(scores, ALICE, "broken_promise", 3)
    observe(scores, ALICE, "flood", 3)
    readings = [scores.score(ALICE, t) for t in (0.0, 100.0, 1_000.0, 100_000.0)]
    assert readings[0] < readings[1] < readings[2] < 0.0
    assert readings[3] == 0.0


def test_decay_forgets_peers_with_nothing_left_to_remember() -> None:
    scores = PeerScores()
    observe(scores, ALICE, "duplicate")
    observe(scores, BOB, "invalid_message")
    scores.note_address(BOB, "203.0.113.5")
    scores.decay(10_000.0)
    assert ALICE not in scores
    assert BOB in scores  # still linked, and its invalid messages fade slowly
    scores.forget_address(BOB)
    scores.decay(1_000_000.0)
    assert BOB not in scores


def test_decay_and_lazy_scoring_agree() -> None:
    lazy, eager = PeerScores(), PeerScores()
    for scores in (lazy, eager):
        observe(scores, ALICE, "first_delivery", 30)
        observe(scores, ALICE, "invalid_message", 2)
    for t in range(0, 3_000, 100):
        eager.decay(float(t))
    assert eager.score(ALICE, 3_000.0) == pytest.approx(lazy.score(ALICE, 3_000.0))


# -- links and addresses ---------------------------------------------------------------------


def test_a_reconnect_keeps_the_score() -> None:
    scores = PeerScores()
    scores.note_address(ALICE, "198.51.100.7")
    observe(scores, ALICE, "invalid_message", 2)
    before = scores.score(ALICE, 0.0)
    scores.forget_address(ALICE)  # the link closes
    scores.note_address(ALICE, "192.0.2.44")  # and comes back from elsewhere
    assert scores.score(ALICE, 0.0) == before < 0.0


def test_many_peer_ids_from_one_address_are_penalised_by_the_squared_surplus() -> None:
    scores = PeerScores(ScoreParams(colocation_threshold=3, colocation_weight=-10.0))
    sybils = [peer(100 + i) for i in range(5)]
    for sybil in sybils[:3]:
        scores.note_address(sybil, "203.0.113.9")
    assert all(scores.score(s, 0.0) == 0.0 for s in sybils[:3])
    for sybil in sybils[3:]:
        scores.note_address(sybil, "203.0.113.9")
    assert all(scores.score(s, 0.0) == pytest.approx(-40.0) for s in sybils)
    scores.note_address(ALICE, "203.0.113.10")
    assert scores.score(ALICE, 0.0) == 0.0
    scores.forget_address(sybils[0])
    assert scores.score(sybils[1], 0.0) == pytest.approx(-10.0)
    assert scores.score(sybils[0], 0.0) == 0.0


def test_ipv6_peers_in_one_slash_64_count_as_colocated() -> None:
    scores = PeerScores(ScoreParams(colocation_threshold=1))
    scores.note_address(ALICE, "2001:db8:1:2::1")
    scores.note_address(BOB, "2001:db8:1:2:ffff::9")
    assert scores.score(ALICE, 0.0) < 0.0
    scores.note_address(BOB, "2001:db8:1:3::1")
    assert scores.score(ALICE, 0.0) == 0.0


def test_ipv4_mapped_ipv6_counts_as_the_ipv4_address() -> None:
    scores = PeerScores(ScoreParams(colocation_threshold=1))
    scores.note_address(ALICE, "::ffff:203.0.113.9")
    scores.note_address(BOB, "203.0.113.9")
    assert scores.score(ALICE, 0.0) < 0.0


def test_loopback_is_exempt_from_the_colocation_penalty() -> None:
    scores = PeerScores(ScoreParams(colocation_threshold=1))
    for n in range(10):
        scores.note_address(peer(200 + n), "127.0.0.1")
    assert scores.score(peer(200), 0.0) == 0.0


def test_a_malformed_address_is_refused() -> None:
    with pytest.raises(ValueError):
        PeerScores().note_address(ALICE, "not-an-address")


# -- thresholds ------------------------------------------------------------------------------


def test_thresholds_gate_gossip_then_messages_then_links() -> None:
    params = ScoreParams(
        invalid_message_weight=-1.0,
        gossip_threshold=-10.0,
        graylist_threshold=-50.0,
        accept_threshold=-100.0,
    )
    scores = PeerScores(params)
    verdicts = []
    for count in (0, 4, 5, 8, 10):  # scores 0, -16, -25, -64, -100
        fresh = PeerScores(params)
        observe(fresh, ALICE, "invalid_message", count)
        verdicts.append(
            (
                fresh.may_gossip_to(ALICE, 0.0),
                fresh.is_graylisted(ALICE, 0.0),
                fresh.accepts(ALICE, 0.0),
            )
        )
    assert verdicts == [
        (True, False, True),
        (False, False, True),
        (False, False, True),
        (False, True, True),
        (False, True, True),
    ]
    observe(scores, ALICE, "invalid_message", 11)
    assert not scores.accepts(ALICE, 0.0)
    assert scores.accepts(BOB, 0.0) and scores.may_gossip_to(BOB, 0.0)


def test_params_refuse_thresholds_out_of_order() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ScoreParams(gossip_threshold=-50.0, graylist_threshold=-10.0)
    with pytest.raises(ValueError, match="invalid_message_weight"):
        ScoreParams(invalid_message_weight=1.0)
    with pytest.raises(ValueError, match="half_life"):
        ScoreParams(job_half_life=0.0)


# -- the table -------------------------------------------------------------------------------


def test_table_lists_every_component_best_first() -> None:
    params = ScoreParams(colocation_threshold=0)
    scores = PeerScores(params)
    observe(scores, ALICE, "first_delivery", 4)
    scores.record_job(ALICE, True, 0.0)
    observe(scores, BOB, "invalid_message")
    observe(scores, BOB, "broken_promise")
    scores.note_address(BOB, "203.0.113.1")
    alice, bob = scores.table(0.0)
    assert alice == ScoreRow(
        peer=ALICE,
        score=pytest.approx(4.0 + 2.0),
        first_deliveries=4.0,
        invalid_messages=0.0,
        broken_promises=0.0,
        flooding=0.0,
        duplicates=0.0,
        colocation=0.0,
        application=2.0,
        address=None,
    )
    assert bob.peer == BOB and bob.address == "203.0.113.1"
    assert (bob.invalid_messages, bob.broken_promises, bob.colocation) == (-10.0, -5.0, -10.0)
    assert bob.score == pytest.approx(-25.0)
    components = (
        bob.first_deliveries,
        bob.invalid_messages,
        bob.broken_promises,
        bob.flooding,
        bob.duplicates,
        bob.colocation,
        bob.application,
    )
    assert bob.score == pytest.approx(sum(components))


# -- bounded memory --------------------------------------------------------------------------


def test_the_table_is_bounded_and_keeps_bad_scores_over_harmless_ones() -> None:
    scores = PeerScores(ScoreParams(max_peers=10))
    observe(scores, ALICE, "invalid_message")  # the oldest, but a bad score
    for n in range(50):
        observe(scores, peer(300 + n), "first_delivery", now=float(n))
    assert len(scores) == 10
    assert ALICE in scores
    assert scores.score(ALICE, 50.0) < 0.0


def test_linked_peers_are_evicted_last() -> None:
    scores = PeerScores(ScoreParams(max_peers=3))
    scores.note_address(ALICE, "198.51.100.1")
    for n in range(10):
        observe(scores, peer(400 + n), "duplicate", now=float(n))
    assert ALICE in scores
