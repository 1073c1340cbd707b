"""The trust ledger: prices, capped continuous recovery, atomic charges, refusals, admin and
restarts."""

from __future__ import annotations

from dataclasses import astuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightbox_node.sched.jobs import JobError
from lightbox_node.sched.trust import (
    STANDARD_IMAGE_COST,
    TrustExhausted,
    TrustLedger,
    TrustParams,
    TrustRow,
    UserSuspended,
)

RATE = 1000.0 / 3600.0  # default recovery, points per second


def test_a_user_never_seen_has_start_trust_and_no_account() -> None:
    ledger = TrustLedger(TrustParams(start_trust=700))
    assert ledger.trust("alice", 123.0) == 700
    assert "alice" not in ledger


def test_a_standard_512px_25_step_image_costs_50_points() -> None:
    params = TrustParams()
    assert params.price(STANDARD_IMAGE_COST) == 50.0
    assert params.price(4 * STANDARD_IMAGE_COST) == 200.0


def test_every_job_costs_at_least_the_minimum_charge_and_at_most_a_full_bucket() -> None:
    params = TrustParams()
    assert params.price(0) == 1.0
    assert params.price(1e12) == 1000.0


def test_recovery_is_continuous_linear_and_capped_at_max() -> None:
    ledger = TrustLedger()
    ledger.set_trust("alice", 0.0, now=0.0)
    assert ledger.trust("alice", 900.0) == pytest.approx(250.0)
    assert ledger.trust("alice", 1800.0) == pytest.approx(500.0)
    assert ledger.trust("alice", 1800.5) == pytest.approx(500.0 + 0.5 * RATE)
    assert ledger.trust("alice", 3600.0) == pytest.approx(1000.0)
    assert ledger.trust("alice", 36000.0) == 1000.0


def test_update_time_advances_on_every_charge_so_recovery_restarts_from_it() -> None:
    # Regression: the paper's reference implementation never advanced the update time, so
    # recovery was always measured from the first charge. Charge, wait, charge, wait...
    ledger = TrustLedger()
    now = 0.0
    seen = []
    for _ in range(5):
        ledger.charge("alice", 4 * STANDARD_IMAGE_COST, now)  # 200 points
        assert ledger.snapshot()[0].updated_at == now
        seen.append(ledger.trust("alice", now))
        now += 360.0  # recovers 100 points
        seen.append(ledger.trust("alice", now))
    assert seen == pytest.approx([800, 900, 700, 800, 600, 700, 500, 600, 400, 500])


def test_reading_trust_repeatedly_does_not_count_recovery_twice() -> None:
    ledger = TrustLedger()
    ledger.set_trust("alice", 100.0, now=0.0)
    for t in range(0, 1800, 7):
        ledger.trust("alice", float(t))
    assert ledger.trust("alice", 1800.0) == pytest.approx(600.0)


def test_a_clock_that_steps_back_neither_recovers_nor_loses_trust() -> None:
    ledger = TrustLedger()
    ledger.set_trust("alice", 100.0, now=1000.0)
    assert ledger.trust("alice", 500.0) == pytest.approx(100.0)
    assert ledger.trust("alice", 1360.0) == pytest.approx(200.0)


def test_a_user_at_zero_is_refused_and_told_when_to_retry() -> None:
    ledger = TrustLedger()
    ledger.set_trust("alice", 0.0, now=1000.0)
    with pytest.raises(TrustExhausted) as refused:
        ledger.charge("alice", STANDARD_IMAGE_COST, 1000.0)
    # 50 points at 1000 per hour take 180 s.
    assert refused.value.retry_at == pytest.approx(1180.0)
    assert refused.value.price == 50.0
    assert "in 3 min 0 s" in str(refused.value)
    assert "alice" in str(refused.value)
    assert isinstance(refused.value, JobError)
    with pytest.raises(TrustExhausted):
        ledger.charge("alice", STANDARD_IMAGE_COST, 1179.0)
    assert ledger.charge("alice", STANDARD_IMAGE_COST, refused.value.retry_at) == 50.0
    assert ledger.trust("alice", refused.value.retry_at) == pytest.approx(0.0, abs=1e-6)


def test_retry_at_holds_with_epoch_timestamps() -> None:
    ledger = TrustLedger()
    now = 1_754_000_000.123
    ledger.set_trust("alice", 12.3, now=now)
    with pytest.raises(TrustExhausted) as refused:
        ledger.charge("alice", STANDARD_IMAGE_COST, now)
    ledger.charge("alice", STANDARD_IMAGE_COST, refused.value.retry_at)


def test_a_user_whose_trust_does_not_cover_the_price_is_refused() -> None:
    ledger = TrustLedger()
    ledger.set_trust("alice", 30.0, now=0.0)
    with pytest.raises(TrustExhausted) as refused:
        ledger.charge("alice", STANDARD_IMAGE_COST, 0.0)
    assert refused.value.retry_at == pytest.approx(20.0 / RATE)
    assert refused.value.available == pytest.approx(30.0)
    # A refusal spends nothing.
    assert ledger.trust("alice", 0.0) == pytest.approx(30.0)
    assert ledger.charge("alice", STANDARD_IMAGE_COST / 2, 0.0) == 25.0


def test_a_job_dearer_than_a_full_bucket_takes_all_of_full_trust() -> None:
    ledger = TrustLedger()
    assert ledger.charge("alice", 100 * STANDARD_IMAGE_COST, 0.0) == 1000.0
    assert ledger.trust("alice", 0.0) == 0.0
    with pytest.raises(TrustExhausted) as refused:
        ledger.charge("alice", 100 * STANDARD_IMAGE_COST, 0.0)
    assert refused.value.retry_at == pytest.approx(3600.0)


def test_n_charges_in_sequence_never_lose_a_decrement() -> None:
    ledger = TrustLedger()
    for _ in range(20):
        ledger.charge("alice", STANDARD_IMAGE_COST, 0.0)
    assert ledger.trust("alice", 0.0) == pytest.approx(0.0)
    with pytest.raises(TrustExhausted):
        ledger.charge("alice", STANDARD_IMAGE_COST, 0.0)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=600, allow_nan=False),
            st.integers(min_value=0, max_value=30 * STANDARD_IMAGE_COST),
        ),
        max_size=60,
    )
)
def test_the_ledger_matches_a_reference_model_for_any_sequence_of_charges(
    steps: list[tuple[float, int]],
) -> None:
    params = TrustParams()
    ledger = TrustLedger(params)
    model, now = params.start_trust, 0.0
    for dt, cost in steps:
        now += dt
        model = min(params.max_trust, model + dt * params.recovery_per_s)
        price = params.price(cost)
        try:
            charged = ledger.charge("alice", cost, now)
        except TrustExhausted as refused:
            assert model < price + 1e-3
            assert refused.retry_at >= now
        else:
            assert charged == price
            assert model >= price - 1e-3
            model = max(0.0, model - price)
        trust = ledger.trust("alice", now)
        assert trust == pytest.approx(model, abs=1e-6)
        assert 0.0 <= trust <= params.max_trust


def test_a_suspended_user_is_refused_with_the_reason_until_restored() -> None:
    ledger = TrustLedger()
    ledger.charge("alice", 10 * STANDARD_IMAGE_COST, 0.0)
    ledger.suspend("alice", "sent 900 jobs in a minute", 0.0)
    assert ledger.is_suspended("alice")
    with pytest.raises(UserSuspended) as refused:
        ledger.charge("alice", STANDARD_IMAGE_COST, 10.0)
    assert "sent 900 jobs in a minute" in str(refused.value)
    assert refused.value.reason == "sent 900 jobs in a minute"
    ledger.restore("alice", 1800.0)
    assert not ledger.is_suspended("alice")
    # Trust kept recovering during the suspension.
    assert ledger.trust("alice", 1800.0) == pytest.approx(1000.0)
    assert ledger.charge("alice", STANDARD_IMAGE_COST, 1800.0) == 50.0


def test_suspending_a_user_never_seen_works() -> None:
    ledger = TrustLedger()
    ledger.suspend("mallory", "", 0.0)
    with pytest.raises(UserSuspended, match="no reason given"):
        ledger.charge("mallory", 1, 0.0)


def test_set_trust_is_bounded_by_zero_and_max() -> None:
    ledger = TrustLedger()
    ledger.set_trust("alice", 250.0, 5.0)
    assert ledger.trust("alice", 5.0) == 250.0
    for bad in (-1.0, 1000.5, float("nan")):
        with pytest.raises(ValueError):
            ledger.set_trust("alice", bad, 5.0)


def test_refunds_add_back_up_to_max() -> None:
    ledger = TrustLedger()
    ledger.charge("alice", 4 * STANDARD_IMAGE_COST, 0.0)
    assert ledger.refund("alice", 150.0, 0.0) == pytest.approx(950.0)
    assert ledger.refund("alice", 150.0, 0.0) == 1000.0
    with pytest.raises(ValueError):
        ledger.refund("alice", -1.0, 0.0)


def test_recovery_eta_is_the_time_to_full_trust() -> None:
    ledger = TrustLedger()
    assert ledger.recovery_eta("alice", 0.0) == 0.0
    ledger.set_trust("alice", 500.0, 0.0)
    assert ledger.recovery_eta("alice", 0.0) == pytest.approx(1800.0)
    assert ledger.recovery_eta("alice", 900.0) == pytest.approx(900.0)


def test_snapshot_and_load_survive_a_restart_without_resetting_anyone() -> None:
    ledger = TrustLedger()
    ledger.charge("alice", 10 * STANDARD_IMAGE_COST, 100.0)
    ledger.set_trust("bob", 0.0, 200.0)
    ledger.suspend("mallory", "spam", 300.0)
    rows = ledger.snapshot()
    assert [r.user for r in rows] == ["alice", "bob", "mallory"]
    assert rows[0] == TrustRow("alice", 500.0, 100.0, False, "")

    restarted = TrustLedger()
    restarted.load(rows)
    assert restarted.snapshot() == rows
    for user in ("alice", "bob", "mallory"):
        assert restarted.trust(user, 1000.0) == ledger.trust(user, 1000.0)
    assert restarted.is_suspended("mallory")

    from_tuples = TrustLedger()
    from_tuples.load([astuple(r) for r in rows])
    assert from_tuples.snapshot() == rows


@pytest.mark.parametrize(
    "settings",
    [
        {"max_trust": 0},
        {"start_trust": 1001},
        {"start_trust": -1},
        {"recovery_per_hour": 0},
        {"trust_per_cost": -1},
        {"minimum_charge": 0},
        {"federated_priority": 1001},
        {"max_trust": float("inf")},
    ],
)
def test_bad_trust_settings_are_refused(settings: dict) -> None:
    with pytest.raises(ValueError):
        TrustParams(**settings)


def test_rows_of_some_users_are_their_snapshot_rows_and_skip_users_without_accounts() -> None:
    ledger = TrustLedger()
    for user, cost in (("cy", 1), ("alice", 2), ("bob", 3)):
        ledger.charge(user, cost * STANDARD_IMAGE_COST, 10.0)
    ledger.suspend("bob", "spam", 20.0)
    wanted = ledger.rows(["cy", "bob", "nobody", "cy"])
    assert wanted == [row for row in ledger.snapshot() if row.user in {"bob", "cy"}]
