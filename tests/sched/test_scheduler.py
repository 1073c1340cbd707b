"""The scheduler core: accepting, placing, dispatching, stealing, faults, cancels, time,
restarts."""

from __future__ import annotations

import copy
import itertools

import pytest

from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import Job, JobError, JobSpec, JobState, UnknownJob
from lightbox_node.sched.scheduler import (
    COUNTERS,
    CancelOnHost,
    Dispatch,
    JobChanged,
    NoHostForTask,
    Scheduler,
    SchedulerParams,
)
from lightbox_node.sched.trust import STANDARD_IMAGE_COST, TrustExhausted, UserSuspended

H1, H2, H3 = (PeerId(bytes([n]) * 32) for n in (1, 2, 3))
ORIGIN = PeerId(bytes([9]) * 32)
NEIGHBOUR = PeerId(bytes([7]) * 32)
IMAGE = STANDARD_IMAGE_COST
TXT = frozenset({"txt2img"})
_ids = itertools.count(1)


def spec(
    owner: str = "alice",
    task: str = "txt2img",
    cost: float = IMAGE,
    host: PeerId | None = None,
    federated_from: PeerId | None = None,
) -> JobSpec:
    return JobSpec(
        job_id=f"j-{next(_ids):024x}",
        owner=f"peer:{federated_from}" if federated_from else owner,
        origin=federated_from or ORIGIN,
        task=task,
        inputs={"prompt": "a lighthouse at dusk"},
        cost=cost,
        submitted_at=0.0,
        host=host,
        federated_from=federated_from,
    )


def dispatches(actions: list) -> list[Dispatch]:
    return [a for a in actions if isinstance(a, Dispatch)]


def dispatched_ids(actions: list) -> list[str]:
    return [a.job.job_id for a in dispatches(actions)]


def host_view(sched: Scheduler, host: PeerId):
    return next(h for h in sched.hosts() if h.host == host)


def running_job(sched: Scheduler, host: PeerId = H1, *, slots: int = 1, now: float = 0.0) -> Job:
    """A scheduler with `host` offering txt2img, and one job dispatched to it."""
    sched.host_available(host, TXT, slots, now)
    actions = sched.submit(spec(), now)
    (d,) = dispatches(actions)
    assert d.host == host
    return d.job


# -- accepting ------------------------------------------------------------------------------


def test_submit_charges_trust_and_queues_by_trust_after_the_charge() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)  # known but busy: everything waits
    actions = sched.submit(spec(cost=2 * IMAGE), 0.0)
    (changed,) = actions
    assert isinstance(changed, JobChanged)
    assert changed.job.state is JobState.QUEUED
    assert changed.job.priority == pytest.approx(900.0)
    assert sched.ledger.trust("alice", 0.0) == pytest.approx(900.0)
    assert sched.queue_of(H1) == [changed.job]


def test_a_refused_job_changes_nothing() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    sched.ledger.set_trust("alice", 10.0, 0.0)
    with pytest.raises(TrustExhausted) as refused:
        sched.submit(spec(), 0.0)
    assert refused.value.retry_at == pytest.approx(40 * 3.6)
    assert sched.jobs() == [] and sched.queue_of(H1) == []
    assert sched.ledger.trust("alice", 0.0) == pytest.approx(10.0)
    assert sched.counters["refused"] == 1 and sched.counters["submitted"] == 0


def test_a_suspended_user_is_refused() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 1, 0.0)
    sched.ledger.suspend("alice", "abuse report #12", 0.0)
    with pytest.raises(UserSuspended, match="abuse report #12"):
        sched.submit(spec(), 0.0)
    assert sched.jobs() == []


def test_no_host_for_task_is_refused_naming_the_task_and_host() -> None:
    sched = Scheduler()
    with pytest.raises(NoHostForTask, match="'txt2img'"):
        sched.submit(spec(), 0.0)
    sched.host_available(H1, {"upscale"}, 1, 0.0)
    with pytest.raises(NoHostForTask, match="'txt2img'"):
        sched.submit(spec(), 0.0)
    with pytest.raises(NoHostForTask, match="offers only upscale") as refused:
        sched.submit(spec(host=H1), 0.0)
    assert str(H1) in str(refused.value) and refused.value.host == H1
    with pytest.raises(NoHostForTask, match="not known here"):
        sched.submit(spec(task="upscale", host=H2), 0.0)
    # A refused job was never charged.
    assert sched.ledger.trust("alice", 0.0) == 1000.0


def test_resubmitting_the_same_spec_is_a_no_op_and_reusing_an_id_is_refused() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    s = spec()
    sched.submit(s, 0.0)
    assert sched.submit(s, 1.0) == []
    assert sched.ledger.trust("alice", 1.0) == pytest.approx(950.0 + 1 / 3.6)
    other = JobSpec(**{**{f: getattr(s, f) for f in s.__slots__}, "cost": 2.0})
    with pytest.raises(JobError, match="already taken"):
        sched.submit(other, 1.0)


def test_a_job_with_a_nonsense_cost_is_refused() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 1, 0.0)
    with pytest.raises(JobError, match="invalid cost"):
        sched.submit(spec(cost=float("nan")), 0.0)


def test_a_federated_job_is_charged_to_the_forwarding_node_and_penalised() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    sched.submit(spec(federated_from=NEIGHBOUR, cost=4 * IMAGE), 0.0)
    sched.submit(spec(federated_from=NEIGHBOUR), 0.0, peer_score=-80.0)
    sched.submit(spec(owner="alice"), 0.0)
    account = f"peer:{NEIGHBOUR}"
    assert sched.ledger.trust(account, 0.0) == pytest.approx(1000.0 - 200 - 50)
    assert sched.ledger.trust("alice", 0.0) == pytest.approx(950.0)
    assert [j.priority for j in sched.queue_of(H1)] == [950.0, 400.0, 100.0]


def test_a_federated_job_is_refused_once_the_forwarding_nodes_budget_is_spent() -> None:
    # The paper skipped the trust check for federated requests; a neighbour could flood us.
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    sched.ledger.set_trust(f"peer:{NEIGHBOUR}", 60.0, 0.0)
    sched.submit(spec(federated_from=NEIGHBOUR), 0.0)
    with pytest.raises(TrustExhausted, match=f"peer:{NEIGHBOUR}"):
        sched.submit(spec(federated_from=NEIGHBOUR), 0.0)
    sched.ledger.suspend(f"peer:{NEIGHBOUR}", "forwarded spam", 0.0)
    with pytest.raises(UserSuspended):
        sched.submit(spec(federated_from=NEIGHBOUR, cost=1), 0.0)


# -- placing and dispatching ------------------------------------------------------------------


def test_host_available_dispatches_free_slots_plus_one_prefetched_job() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    owners = ["u1", "u2", "u3", "u4", "u5"]
    specs = [spec(owner=o, cost=(i + 1) * IMAGE) for i, o in enumerate(owners)]
    for s in specs:
        sched.submit(s, 0.0)
    actions = sched.host_available(H1, TXT, 2, 10.0)
    # Best trust first: u1 paid least so has the most trust left.
    assert dispatched_ids(actions) == [s.job_id for s in specs[:3]]
    assert all(sched.job(s.job_id).state is JobState.DISPATCHED for s in specs[:3])
    assert [j.spec.job_id for j in sched.queue_of(H1)] == [s.job_id for s in specs[3:]]
    view = host_view(sched, H1)
    assert view.slots == 2 and len(view.in_flight) == 3 and view.free_slots == 0
    # Each dispatch is journaled (JobChanged) before it is sent.
    kinds = [type(a) for a in actions]
    assert kinds == [JobChanged, Dispatch] * 3
    d = dispatches(actions)
    assert d[0].attempt.number == 1 and d[0].attempt.host == H1
    assert d[0].attempt.deadline == pytest.approx(10.0 + 30 + 270)
    # The prefetched job's clock starts when the jobs ahead of it would be late.
    assert d[2].attempt.deadline == pytest.approx(d[1].attempt.deadline + 30 + 270 * 3)


def test_a_finished_job_frees_its_slot_for_the_next_one() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    specs = [spec() for _ in range(4)]
    for s in specs:
        sched.submit(s, 0.0)
    first = dispatches(sched.host_available(H1, TXT, 1, 0.0))
    assert len(first) == 2
    actions = sched.job_done(specs[0].job_id, H1, 1, ["sha256-" + "a" * 64], 5.0)
    assert dispatched_ids(actions) == [specs[2].job_id]
    assert sched.job(specs[0].job_id).state is JobState.DONE
    assert sched.job(specs[0].job_id).results == ["sha256-" + "a" * 64]


def test_a_host_announcing_zero_slots_gets_nothing_not_even_prefetch() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    assert dispatches(sched.submit(spec(), 0.0)) == []


def test_an_open_job_goes_to_the_host_with_the_least_backlog_per_slot() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 1, 0.0)
    sched.host_available(H2, TXT, 4, 0.0)
    placed = [dispatches(sched.submit(spec(), 0.0))[0].host for _ in range(7)]
    # Idle hosts tie on backlog and queue length, then go by peer id; then per slot.
    assert placed[0] == H1
    assert placed.count(H2) == 5 and placed.count(H1) == 2
    assert host_view(sched, H1).in_flight and len(host_view(sched, H2).in_flight) == 5


def test_an_idle_host_steals_the_best_unpinned_job_from_another_hosts_queue() -> None:
    sched = Scheduler()
    sched.host_available(H2, TXT, 1, 0.0)
    specs = [spec(owner=f"u{i}", cost=(i + 1) * IMAGE) for i in range(5)]
    for s in specs:
        sched.submit(s, 0.0)
    assert len(sched.queue_of(H2)) == 3
    actions = sched.host_available(H1, TXT, 2, 1.0)
    # Stealing fills free slots only, never the prefetch slot.
    assert dispatched_ids(actions) == [specs[2].job_id, specs[3].job_id]
    assert all(d.host == H1 for d in dispatches(actions))
    assert [j.job_id for j in sched.queue_of(H2)] == [specs[4].job_id]
    assert sched.counters["stolen"] == 2


def test_jobs_pinned_to_a_host_are_never_stolen() -> None:
    sched = Scheduler()
    sched.host_available(H2, TXT, 0, 0.0)
    pinned = spec(host=H2)
    sched.submit(pinned, 0.0)
    assert dispatches(sched.host_available(H1, TXT, 2, 0.0)) == []
    assert sched.queue_of(H2)[0].job_id == pinned.job_id


def test_a_pinned_only_host_gets_only_jobs_aimed_at_it_and_never_steals() -> None:
    sched = Scheduler()
    sched.host_available(H3, TXT, 4, 0.0, pinned_only=True)  # another queue node's host
    with pytest.raises(NoHostForTask):
        sched.submit(spec(), 0.0)  # no host of ours offers it: not placed on H3
    aimed = spec(host=H3)
    assert dispatched_ids(sched.submit(aimed, 0.0)) == [aimed.job_id]
    sched.host_available(H1, TXT, 0, 0.0)
    waiting = spec()
    sched.submit(waiting, 0.0)
    assert dispatches(sched.host_available(H3, TXT, 4, 1.0, pinned_only=True)) == []
    assert [j.job_id for j in sched.queue_of(H1)] == [waiting.job_id]


def test_a_host_steals_only_jobs_for_tasks_it_offers() -> None:
    sched = Scheduler()
    sched.host_available(H2, {"txt2img", "upscale"}, 0, 0.0)
    up, txt = spec(task="upscale"), spec(task="txt2img", cost=IMAGE / 2)
    sched.submit(up, 0.0)
    sched.submit(txt, 0.0)
    actions = sched.host_available(H1, TXT, 2, 0.0)
    assert dispatched_ids(actions) == [txt.job_id]


# -- hosts coming and going -------------------------------------------------------------------


def test_host_gone_requeues_its_jobs_in_flight_on_another_host() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    sched.host_available(H2, TXT, 1, 0.0)
    actions = sched.host_gone(H1, 20.0)
    (d,) = dispatches(actions)
    assert d.host == H2 and d.job is job and d.attempt.number == 2
    assert job.attempts[0].outcome == "host disconnected"
    assert len(job.faults) == 1 and "host disconnected" in job.faults[0]
    assert not host_view(sched, H1).online and host_view(sched, H1).in_flight == ()
    # The old host's late result is ignored.
    assert sched.job_done(job.job_id, H1, 1, ["sha256-x"], 21.0) == []


def test_host_gone_moves_open_queued_jobs_and_keeps_pinned_ones() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    open_job, pinned = spec(), spec(host=H1)
    sched.submit(open_job, 0.0)
    sched.submit(pinned, 0.0)
    sched.host_available(H2, TXT, 0, 0.0)
    sched.host_gone(H1, 5.0)
    assert [j.job_id for j in sched.queue_of(H2)] == [open_job.job_id]
    assert [j.job_id for j in sched.queue_of(H1)] == [pinned.job_id]
    assert sched.job(open_job.job_id).queued_at == 0.0  # moving keeps its age


def test_a_job_pinned_to_a_gone_host_is_accepted_and_waits_for_it() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 1, 0.0)
    sched.host_gone(H1, 1.0)
    s = spec(host=H1)
    assert dispatches(sched.submit(s, 2.0)) == []
    actions = sched.host_available(H1, TXT, 1, 3.0)
    assert dispatched_ids(actions) == [s.job_id]


def test_an_open_job_waits_on_a_gone_host_when_no_host_offering_its_task_is_online() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 1, 0.0)
    sched.host_gone(H1, 1.0)
    s = spec()
    assert dispatches(sched.submit(s, 2.0)) == []
    assert sched.queue_of(H1)[0].job_id == s.job_id
    # Another host that offers the task takes it as soon as it appears.
    assert dispatched_ids(sched.host_available(H2, TXT, 1, 3.0)) == [s.job_id]


def test_a_host_that_stops_offering_a_task_hands_its_queued_jobs_to_one_that_does() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    s = spec()
    sched.submit(s, 0.0)
    sched.host_available(H2, TXT, 0, 0.0)
    sched.host_available(H1, {"upscale"}, 1, 1.0)
    assert [j.job_id for j in sched.queue_of(H2)] == [s.job_id]


def test_repeated_disconnects_end_the_job_faulted_instead_of_looping() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    for n in range(3):
        sched.host_gone(H1, 10.0 * n + 1)
        sched.host_available(H1, TXT, 1, 10.0 * n + 2)
    assert job.state is JobState.FAULTED
    assert len(job.attempts) == 3
    assert all("host disconnected" in f for f in job.faults)


# -- reports from hosts -----------------------------------------------------------------------


def test_a_job_faulting_three_times_ends_faulted_with_three_reasons_and_a_refund() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 1, 0.0)
    sched.host_available(H2, TXT, 1, 0.0)
    s = spec(cost=4 * IMAGE)
    sched.submit(s, 0.0)
    assert sched.ledger.trust("alice", 0.0) == pytest.approx(800.0)
    hosts_tried = []
    for n, reason in enumerate(["CUDA out of memory", "NaN in latents", "worker crashed"], 1):
        job = sched.job(s.job_id)
        attempt = job.current_attempt
        assert attempt.number == n
        hosts_tried.append(attempt.host)
        sched.job_faulted(s.job_id, attempt.host, n, reason, 10.0 * n)
    job = sched.job(s.job_id)
    assert job.state is JobState.FAULTED
    assert len(job.faults) == 3
    reasons = ["CUDA out of memory", "NaN in latents", "worker crashed"]
    for reason, fault in zip(reasons, job.faults, strict=True):
        assert reason in fault and reason in job.error
    assert job.finished_at == 30.0
    # A fault moves the job to another host offering the task.
    assert hosts_tried[0] != hosts_tried[1] != hosts_tried[2]
    assert sched.ledger.trust("alice", 30.0) == pytest.approx(1000.0)
    assert sched.counters["faulted"] == 1 and sched.counters["faults"] == 3


def test_a_late_result_from_an_old_attempt_is_ignored_so_a_job_never_completes_twice() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    sched.host_available(H2, TXT, 1, 0.0)
    sched.job_faulted(job.job_id, H1, 1, "driver reset", 1.0)
    assert job.current_attempt.host == H2 and job.current_attempt.number == 2
    assert sched.job_done(job.job_id, H1, 1, ["sha256-old"], 2.0) == []
    assert sched.job_progress(job.job_id, H1, 1, 0.5, "late", 2.0) == []
    assert sched.job_started(job.job_id, H1, 1, 2.0) == []
    assert sched.job_faulted(job.job_id, H1, 1, "late", 2.0) == []
    assert job.state is JobState.DISPATCHED
    done = sched.job_done(job.job_id, H2, 2, ["sha256-new"], 3.0)
    assert isinstance(done[0], JobChanged) and job.state is JobState.DONE
    assert sched.job_done(job.job_id, H2, 2, ["sha256-again"], 4.0) == []
    assert job.results == ["sha256-new"] and job.finished_at == 3.0
    assert sched.counters["done"] == 1


def test_a_report_from_a_host_the_attempt_did_not_go_to_is_ignored() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    assert sched.job_done(job.job_id, H2, 1, ["sha256-forged"], 1.0) == []
    assert sched.job_started("j-" + "0" * 24, H1, 1, 1.0) == []
    assert job.state is JobState.DISPATCHED


def test_progress_is_clamped_implies_running_and_is_reported() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    (changed,) = sched.job_progress(job.job_id, H1, 1, 1.7, "step 25/25", 1.0)
    assert changed.job is job and job.state is JobState.RUNNING
    assert job.progress == 1.0 and job.progress_message == "step 25/25"
    sched.job_progress(job.job_id, H1, 1, -3.0, "x" * 5000, 2.0)
    assert job.progress == 0.0 and len(job.progress_message) == 500
    sched.job_progress(job.job_id, H1, 1, float("nan"), "", 2.0)
    assert job.progress == 0.0
    assert sched.job_started(job.job_id, H1, 1, 3.0) == []  # already running


def test_job_started_moves_a_dispatched_job_to_running() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    (changed,) = sched.job_started(job.job_id, H1, 1, 1.0)
    assert changed.job.state is JobState.RUNNING


def test_a_requeued_job_keeps_the_age_it_had_waited() -> None:
    sched = Scheduler(SchedulerParams(aging_per_s=1.0))
    sched.host_available(H1, TXT, 0, 0.0)
    s = spec()
    sched.submit(s, 0.0)
    job = sched.job(s.job_id)
    sched.host_available(H1, TXT, 1, 100.0)  # dispatched after waiting 100 s
    sched.job_faulted(s.job_id, H1, 1, "oops", 130.0)
    assert job.state in (JobState.QUEUED, JobState.DISPATCHED)
    assert job.priority == pytest.approx(950.0 + 100.0)


# -- cancelling -------------------------------------------------------------------------------


def test_cancelling_a_queued_job_refunds_its_trust() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    s = spec(cost=4 * IMAGE)
    sched.submit(s, 0.0)
    (changed,) = sched.cancel(s.job_id, 0.0)
    assert changed.job.state is JobState.CANCELLED and changed.job.finished_at == 0.0
    assert sched.queue_of(H1) == []
    assert sched.ledger.trust("alice", 0.0) == pytest.approx(1000.0)


@pytest.mark.parametrize("started", [False, True])
def test_cancelling_a_dispatched_or_running_job_cancels_it_on_the_host(started: bool) -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    if started:
        sched.job_started(job.job_id, H1, 1, 1.0)
    actions = sched.cancel(job.job_id, 2.0)
    assert CancelOnHost(H1, job.job_id, 1) in actions
    assert job.state is JobState.CANCELLED and job.attempts[0].outcome == "cancelled"
    assert host_view(sched, H1).in_flight == ()
    # Compute may already have been spent: no refund once dispatched.
    assert sched.ledger.trust("alice", 2.0) < 1000.0
    assert sched.job_done(job.job_id, H1, 1, ["sha256-late"], 3.0) == []


def test_cancelling_a_finished_job_does_nothing_and_an_unknown_id_is_an_error() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    sched.job_done(job.job_id, H1, 1, ["sha256-r"], 1.0)
    assert sched.cancel(job.job_id, 2.0) == []
    assert job.state is JobState.DONE
    with pytest.raises(UnknownJob):
        sched.cancel("j-" + "f" * 24, 2.0)
    with pytest.raises(UnknownJob):
        sched.job("j-" + "f" * 24)


def test_cancelling_a_running_job_frees_the_slot_for_the_next() -> None:
    sched = Scheduler()
    sched.host_available(H1, TXT, 0, 0.0)
    specs = [spec() for _ in range(3)]
    for s in specs:
        sched.submit(s, 0.0)
    sched.host_available(H1, TXT, 1, 0.0)
    actions = sched.cancel(specs[0].job_id, 1.0)
    assert dispatched_ids(actions) == [specs[2].job_id]


# -- time -------------------------------------------------------------------------------------


def test_a_standard_image_gets_five_minutes() -> None:
    assert SchedulerParams().deadline_for(IMAGE) == pytest.approx(300.0)


def test_a_missed_deadline_is_a_fault_that_cancels_on_the_late_host_and_requeues() -> None:
    sched = Scheduler()
    job = running_job(sched, H1, now=100.0)
    sched.host_available(H2, TXT, 1, 100.0)
    assert sched.next_deadline() == pytest.approx(400.0)
    assert sched.tick(399.0) == []
    actions = sched.tick(400.0)
    assert actions[0] == CancelOnHost(H1, job.job_id, 1)
    assert job.attempts[0].outcome == "missed its deadline of 300 s"
    assert "missed its deadline of 300 s" in job.faults[0]
    (d,) = dispatches(actions)
    assert d.host == H2 and d.attempt.number == 2
    assert sched.counters["deadline_missed"] == 1
    assert sched.next_deadline() == pytest.approx(700.0)


def test_a_job_waiting_longer_than_the_queue_timeout_expires_with_a_refund() -> None:
    sched = Scheduler(SchedulerParams(queue_timeout_s=3600.0))
    sched.host_available(H1, TXT, 0, 0.0)
    s = spec(cost=2 * IMAGE)
    sched.submit(s, 0.0)
    assert sched.next_deadline() == 3600.0
    assert sched.tick(3599.0) == []
    (changed,) = sched.tick(3600.0)
    assert changed.job.state is JobState.EXPIRED
    assert "3600 s" in changed.job.error
    assert sched.queue_of(H1) == []
    assert sched.ledger.trust("alice", 3600.0) == 1000.0
    assert sched.next_deadline() is None


def test_a_finished_job_leaves_no_deadline_behind() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    sched.job_done(job.job_id, H1, 1, [], 1.0)
    assert sched.next_deadline() is None
    assert sched.tick(10_000.0) == []


# -- restarts ---------------------------------------------------------------------------------


def test_restore_from_the_journal_keeps_final_jobs_and_requeues_the_rest() -> None:
    before = Scheduler()
    before.host_available(H1, TXT, 1, 0.0)
    done, running, prefetched, queued = (spec() for _ in range(4))
    for s in (done, running, prefetched, queued):
        before.submit(s, 0.0)
    before.job_done(done.job_id, H1, 1, ["sha256-d"], 1.0)
    before.job_started(running.job_id, H1, 1, 1.0)
    before.job_faulted(running.job_id, H1, 1, "flaky", 2.0)  # requeued, dispatched again
    before.job_started(running.job_id, H1, 2, 3.0)
    journal = [copy.deepcopy(j) for j in before.jobs()]
    states = {j.job_id: j.state for j in journal}
    assert states[running.job_id] is JobState.RUNNING
    assert states[queued.job_id] is JobState.QUEUED

    after = Scheduler(ledger=before.ledger)
    actions = []
    for job in journal:
        actions += after.restore(job, 50.0)
    assert CancelOnHost(H1, running.job_id, 2) in actions
    assert after.job(done.job_id).state is JobState.DONE
    # No host has announced itself since the restart: everything waits.
    assert {j.job_id for j in after.unplaced()} == {
        running.job_id,
        prefetched.job_id,
        queued.job_id,
    }
    restored = after.job(running.job_id)
    assert restored.state is JobState.QUEUED
    assert restored.attempts[1].outcome == "queue node restarted"
    assert restored.faults == before.job(running.job_id).faults  # history kept, crash not a fault
    actions = after.host_available(H1, TXT, 2, 60.0)
    assert len(dispatches(actions)) == 3
    assert after.job(running.job_id).current_attempt.number == 3
    assert after.unplaced() == []
    with pytest.raises(JobError, match="restored twice"):
        after.restore(copy.deepcopy(journal[0]), 60.0)


def test_a_restored_job_that_waited_too_long_expires_on_the_next_tick() -> None:
    before = Scheduler()
    before.host_available(H1, TXT, 0, 0.0)
    s = spec()
    before.submit(s, 0.0)
    after = Scheduler()
    after.restore(copy.deepcopy(before.job(s.job_id)), 5000.0)
    (changed,) = after.tick(5000.0)
    assert changed.job.state is JobState.EXPIRED


def test_purge_forgets_only_old_final_jobs() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    sched.job_done(job.job_id, H1, 1, [], 10.0)
    waiting = spec()
    sched.submit(waiting, 10.0)
    assert sched.purge(10.0) == []
    assert sched.purge(11.0) == [job.job_id]
    with pytest.raises(UnknownJob):
        sched.job(job.job_id)
    assert sched.job(waiting.job_id)


def test_counters_name_every_event_kind() -> None:
    sched = Scheduler()
    job = running_job(sched, H1)
    sched.job_started(job.job_id, H1, 1, 1.0)
    sched.job_done(job.job_id, H1, 1, [], 2.0)
    counters = sched.counters
    assert set(counters) == set(COUNTERS)
    assert counters["submitted"] == counters["dispatched"] == counters["done"] == 1
    assert counters["started"] == 1


@pytest.mark.parametrize(
    "settings",
    [
        {"max_faults": 0},
        {"prefetch": -1},
        {"queue_timeout_s": 0},
        {"deadline_base_s": 0},
        {"aging_per_s": -1},
        {"deadline_per_cost": float("nan")},
    ],
)
def test_bad_scheduler_settings_are_refused(settings: dict) -> None:
    with pytest.raises(ValueError):
        SchedulerParams(**settings)
