"""Policies: FIFO has no trust, the paper's ledger, and Lightbox's real scheduler unchanged."""

from __future__ import annotations

import pytest

from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import JobSpec
from lightbox_node.sched.queues import DEFAULT_AGING_PER_S
from lightbox_node.sched.trust import STANDARD_IMAGE_COST, TrustExhausted, TrustLedger, TrustParams
from lightbox_node.sim.config import SimConfig
from lightbox_node.sim.policies import FlatLedger, PaperTrustLedger, Policy

HOST = PeerId(bytes([1]) * 32)
ORIGIN = PeerId(bytes([2]) * 32)
NEIGHBOUR = PeerId(bytes([3]) * 32)


def spec(n: int, owner: str, federated: bool = False) -> JobSpec:
    return JobSpec(
        job_id=f"j-{n:024x}",
        owner=f"peer:{NEIGHBOUR}" if federated else owner,
        origin=ORIGIN,
        task="sim",
        inputs={},
        cost=STANDARD_IMAGE_COST,
        submitted_at=0.0,
        federated_from=NEIGHBOUR if federated else None,
    )


def test_paper_ledger_takes_a_fixed_decrement_whatever_the_cost() -> None:
    ledger = PaperTrustLedger(TrustParams(), decrement=10.0, reset_after_s=3600.0)
    ledger.set_trust("alice", 500.0, 0.0)
    assert ledger.charge("alice", 1.0, 1.0) == 10.0
    assert ledger.charge("alice", 1e12, 2.0) == 10.0
    assert ledger.trust("alice", 3.0) == 480.0


def test_paper_ledger_refuses_at_zero_and_never_goes_negative() -> None:
    ledger = PaperTrustLedger(TrustParams(), decrement=10.0, reset_after_s=3600.0)
    ledger.set_trust("bob", 15.0, 0.0)
    ledger.charge("bob", 1.0, 1.0)  # 15 -> 5: still above zero, so accepted
    ledger.charge("bob", 1.0, 2.0)  # 5 -> 0
    assert ledger.trust("bob", 3.0) == 0.0
    with pytest.raises(TrustExhausted) as refused:
        ledger.charge("bob", 1.0, 4.0)
    assert refused.value.retry_at == 3600.0


def test_paper_ledger_resets_after_the_period_and_advances_the_reset_time() -> None:
    ledger = PaperTrustLedger(TrustParams(), decrement=10.0, reset_after_s=100.0)
    ledger.set_trust("carol", 0.0, 0.0)
    assert ledger.trust("carol", 99.0) == 0.0
    assert ledger.trust("carol", 100.0) == 1000.0
    ledger.charge("carol", 1.0, 150.0)
    assert ledger.trust("carol", 199.0) == 990.0  # not reset again: the time moved to 100
    assert ledger.trust("carol", 200.0) == 1000.0


def test_paper_ledger_never_charges_a_forwarding_server() -> None:
    ledger = PaperTrustLedger(TrustParams(), decrement=10.0, reset_after_s=3600.0)
    for t in range(500):
        assert ledger.charge(f"peer:{NEIGHBOUR}", 1.0, float(t)) == 0.0


def test_flat_ledger_gives_everyone_full_trust_and_refuses_nobody() -> None:
    ledger = FlatLedger(TrustParams())
    ledger.set_trust("dave", 3.0, 0.0)
    for t in range(200):
        ledger.charge("dave", 1e12, float(t))
    assert ledger.trust("dave", 500.0) == 1000.0
    assert ledger.nominal("dave") == 3.0


def test_fifo_queues_in_arrival_order_whatever_the_trust_or_origin() -> None:
    policy = Policy("fifo", SimConfig())
    scheduler = policy.new_scheduler()
    scheduler.host_available(HOST, {"sim"}, 0, 0.0)  # no slots yet: everything queues
    scheduler.ledger.set_trust("low", 1.0, 0.0)
    scheduler.ledger.set_trust("high", 999.0, 0.0)
    scheduler.submit(spec(1, "low"), 1.0)
    scheduler.submit(spec(2, "x", federated=True), 2.0)
    scheduler.submit(spec(3, "high"), 3.0)
    assert [j.job_id for j in scheduler.queue_of(HOST)] == [spec(n, "").job_id for n in (1, 2, 3)]


def test_paper_orders_by_trust_left_and_gives_federated_jobs_400() -> None:
    policy = Policy("paper", SimConfig())
    scheduler = policy.new_scheduler()
    scheduler.host_available(HOST, {"sim"}, 0, 0.0)
    scheduler.ledger.set_trust("low", 300.0, 0.0)
    scheduler.ledger.set_trust("high", 900.0, 0.0)
    scheduler.submit(spec(1, "low"), 1.0)
    scheduler.submit(spec(2, "x", federated=True), 2.0)
    scheduler.submit(spec(3, "high"), 3.0)
    queue = scheduler.queue_of(HOST)
    assert [j.priority for j in queue] == [890.0, 400.0, 290.0]
    assert scheduler.params.aging_per_s == 0.0


def test_lightbox_policy_is_the_real_ledger_with_the_real_defaults() -> None:
    scheduler = Policy("lightbox", SimConfig()).new_scheduler()
    assert type(scheduler.ledger) is TrustLedger
    assert scheduler.params.trust == TrustParams()
    assert scheduler.params.aging_per_s == DEFAULT_AGING_PER_S


def test_lightbox_policy_charges_a_forwarding_server_its_own_account() -> None:
    policy = Policy("lightbox", SimConfig())
    scheduler = policy.new_scheduler()
    scheduler.host_available(HOST, {"sim"}, 0, 0.0)
    scheduler.submit(spec(1, "x", federated=True), 0.0)
    assert scheduler.ledger.trust(f"peer:{NEIGHBOUR}", 0.0) == pytest.approx(1000.0 - 50.0)


def test_peer_scores_lower_the_federated_priority_only_under_lightbox() -> None:
    assert Policy("lightbox", SimConfig()).peer_score_aware
    assert not Policy("paper", SimConfig()).peer_score_aware
    assert not Policy("fifo", SimConfig()).peer_score_aware
