"""Small simulations (well under a second each) and the properties their results must have.

They assert properties, not pictures: no gradient without trust, a gradient with it,
federated requests behind local ones of equal trust, a bound on waiting under aging,
refusals kept apart from service, and byte-identical output for a seed.
"""

from __future__ import annotations

import itertools
import math
from functools import cache
from pathlib import Path

import pytest

from lightbox_node.sim.config import SimConfig, build_config
from lightbox_node.sim.network import FAILED, REFUSED, SERVED, UNFINISHED, SetupResult, run_setup
from lightbox_node.sim.report import BUCKET_LABELS, bucket_of, percentile, summarize
from lightbox_node.sim.runner import run_simulation

HALF_HOUR = build_config("paper", overrides={"duration_s": 1800.0})


@cache
def simulate(policy: str, servers: int, users: int, config: SimConfig = HALF_HOUR) -> SetupResult:
    return run_setup(config, policy, servers, users)


def medians(result: SetupResult, kind: str = "all", least: int = 20) -> dict[str, float]:
    """Median response of served requests per bucket, for buckets with enough of them."""
    return {
        row.bucket: row.median_s
        for row in summarize(result)
        if row.kind == kind and row.served >= least
    }


def test_fifo_gives_no_trust_gradient() -> None:
    by_bucket = medians(simulate("fifo", 1, 50))
    assert set(by_bucket) == set(BUCKET_LABELS)
    assert max(by_bucket.values()) / min(by_bucket.values()) < 1.1


@pytest.mark.parametrize("policy", ["paper", "lightbox"])
def test_trust_schemes_serve_trusted_users_faster(policy: str) -> None:
    by_bucket = medians(simulate(policy, 1, 50), least=10)
    lowest = by_bucket[BUCKET_LABELS[0]]
    highest = by_bucket[BUCKET_LABELS[-1]]
    assert highest * 2 < lowest
    # ... and never slower for more trust (a little slack for noise between buckets).
    ordered = [by_bucket[label] for label in BUCKET_LABELS if label in by_bucket]
    assert all(later <= earlier * 1.1 for earlier, later in itertools.pairwise(ordered))


@pytest.mark.parametrize("policy", ["paper", "lightbox"])
def test_federated_requests_wait_longer_than_local_ones_of_equal_trust(policy: str) -> None:
    result = simulate(policy, 4, 30)
    local, federated = medians(result, "local"), medians(result, "federated")
    # Above the federated priority (400) a user's own trust outranks the penalty at the
    # serving server, and the forwarding server's queue for that host comes first.
    for label in ("601-800", "801-1000"):
        assert federated[label] > local[label] * 1.2, label


def test_below_the_federated_priority_the_penalty_is_a_floor_not_a_penalty() -> None:
    # A finding, not a wish: a user with trust under 400 gets 400 at the serving server,
    # so going through another server is faster than waiting at home.
    result = simulate("paper", 4, 30)
    local, federated = medians(result, "local"), medians(result, "federated")
    assert federated["0-200"] < local["0-200"]


def _longest_wait(result: SetupResult, end: float) -> float:
    """Submit to start of service, or to the end of the run for requests never started."""
    return max(
        (r.started_at if r.started_at is not None else end) - r.submitted_at
        for r in result.requests
        if r.outcome != REFUSED
    )


def test_nothing_starves_under_aging() -> None:
    config, users = HALF_HOUR, 50
    hosts = config.hosts_for(users)
    # After 1000 / aging seconds a job outranks every job submitted later, so it waits
    # at most that long plus the time to run what was queued before it: each closed-loop
    # user has one request open at most (plus one prefetched job per host).
    bound = 1000.0 / config.aging_per_s + math.ceil(users / hosts + 1) * config.task_time_s
    assert _longest_wait(simulate("lightbox", 1, users), config.duration_s) <= bound
    # Without aging (the paper's scheme) the least trusted wait far longer: it is the aging.
    assert _longest_wait(simulate("paper", 1, users), config.duration_s) > 2 * bound


def test_refused_requests_are_never_counted_as_served() -> None:
    # A request costing 200 points: the users run out of trust and are refused.
    config = build_config("paper", overrides={"duration_s": 900.0, "job_cost": 4.0})
    result = simulate("lightbox", 1, 30, config)
    refused = [r for r in result.requests if r.outcome == REFUSED]
    served = [r for r in result.requests if r.outcome == SERVED]
    assert len(refused) > 100 and len(served) > 100
    assert all(r.started_at is None and r.queue_wait is None for r in refused)
    assert all(r.response_time == 0.0 for r in refused)
    for row in summarize(result):
        members = [r for r in result.requests if bucket_of(r.trust) == row.bucket]
        assert row.requests == len(members)
        assert row.served == sum(r.outcome == SERVED for r in members)
        assert row.refused == sum(r.outcome == REFUSED for r in members)
        assert row.served + row.refused + row.failed + row.unfinished == row.requests
        times = sorted(r.response_time for r in members if r.outcome == SERVED)
        if times:
            assert row.median_s == percentile(times, 0.5)
            assert row.p99_s == percentile(times, 0.99)


def test_every_request_ends_in_exactly_one_outcome() -> None:
    result = simulate("lightbox", 4, 30)
    outcomes = {r.outcome for r in result.requests}
    assert outcomes <= {SERVED, REFUSED, FAILED, UNFINISHED}
    for r in result.requests:
        assert (r.finished_at is None) == (r.outcome == UNFINISHED)
        if r.outcome == SERVED:
            assert r.started_at is not None
            assert r.response_time >= r.queue_wait + HALF_HOUR.task_time_s - 1e-9


def _csv(tmp: Path, **overrides: object) -> bytes:
    config = build_config(
        "small", overrides={"users": (10,), "servers": (1, 4), "duration_s": 600.0, **overrides}
    )
    run_simulation(config, tmp, plots=False)
    return (tmp / "requests.csv").read_bytes()


def test_the_same_seed_gives_a_byte_identical_csv(tmp_path: Path) -> None:
    first = _csv(tmp_path / "a")
    assert first == _csv(tmp_path / "b")
    assert first != _csv(tmp_path / "c", seed=2)
    assert first.count(b"\n") > 1000


def test_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    config = build_config("small", overrides={"users": (10,), "duration_s": 300.0})
    run_simulation(config, tmp_path / "one", plots=False)
    run_simulation(config, tmp_path / "two", plots=False, workers=2)
    for name in ("requests.csv", "summary.csv", "summary.md"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_progress_runs_up_to_the_whole_virtual_duration() -> None:
    seen: list[float] = []
    config = build_config("small", overrides={"duration_s": 100.0})
    run_setup(config, "fifo", 1, 10, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 100


def test_plots_are_written_and_small(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    config = build_config("small", overrides={"users": (10,), "duration_s": 300.0})
    output = run_simulation(config, tmp_path)
    pngs = [p for p in output.files if p.suffix == ".png"]
    assert {p.name for p in pngs} == {
        "response_by_trust.png",
        "policies_compared.png",
        "federated_vs_local.png",
    }
    assert all(0 < p.stat().st_size < 300_000 for p in pngs)
