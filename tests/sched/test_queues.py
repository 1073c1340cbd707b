"""Per-host priority queues: trust order, FIFO among equals, aging, federated penalty, removal."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import Job, JobSpec
from lightbox_node.sched.queues import (
    DEFAULT_AGING_PER_S,
    HostQueue,
    federated_priority,
    peer_factor,
)
from lightbox_node.sched.trust import TrustParams

ORIGIN = PeerId(bytes([9]) * 32)
_ids = iter(range(1, 10**9))


def job(priority: float, cost: float = 1.0, task: str = "txt2img") -> Job:
    spec = JobSpec(
        job_id=f"j-{next(_ids):024x}",
        owner="alice",
        origin=ORIGIN,
        task=task,
        inputs={},
        cost=cost,
        submitted_at=0.0,
    )
    return Job(spec, priority=priority)


def drain(queue: HostQueue) -> list[Job]:
    out = []
    while (j := queue.pop()) is not None:
        out.append(j)
    return out


def test_jobs_come_out_by_owner_trust_highest_first() -> None:
    queue = HostQueue()
    low, high, mid = job(100), job(900), job(500)
    for j in (low, high, mid):
        queue.push(j, 0.0)
    assert queue.peek() is high
    assert drain(queue) == [high, mid, low]
    assert queue.pop() is None and queue.peek() is None


def test_jobs_of_equal_priority_come_out_first_in_first_out() -> None:
    queue = HostQueue()
    jobs = [job(500) for _ in range(20)]
    for j in jobs:
        queue.push(j, 7.0)
    assert drain(queue) == jobs


def test_an_old_low_trust_job_overtakes_a_fresh_high_trust_one_after_the_computed_time() -> None:
    aging = 2.0  # points per second
    # 100 + 2t > 900 once the low job has waited 400 s longer than the high one.
    for gap, first in ((399.0, "high"), (401.0, "low")):
        queue = HostQueue(aging_per_s=aging)
        low, high = job(100), job(900)
        queue.push(low, 0.0)
        queue.push(high, gap)
        assert queue.pop() is (high if first == "high" else low)


def test_by_default_a_job_that_waited_ten_minutes_beats_any_fresh_job() -> None:
    queue = HostQueue()
    assert pytest.approx(1000.0) == DEFAULT_AGING_PER_S * 600
    old, fresh = job(0), job(1000)
    queue.push(old, 0.0)
    queue.push(fresh, 600.5)
    assert queue.pop() is old
    assert queue.effective_priority(fresh, 600.5) == 1000.0


def test_the_federated_penalty_depends_on_the_forwarding_nodes_peer_score() -> None:
    params = TrustParams()
    assert peer_factor(0.0) == 1.0
    assert peer_factor(25.0) == 1.0
    assert peer_factor(-40.0) == pytest.approx(0.625)
    assert peer_factor(-80.0) == 0.25
    assert peer_factor(-1000.0) == 0.25
    assert peer_factor(float("nan")) == 1.0
    assert federated_priority(params, 0.0) == 400.0
    assert federated_priority(params, -80.0) == 100.0
    assert federated_priority(TrustParams(federated_priority=600), -40.0) == pytest.approx(375.0)


def test_a_federated_job_waits_behind_trusted_local_users_but_ahead_of_spent_ones() -> None:
    queue = HostQueue()
    local_full, local_spent = job(950), job(50)
    forwarded = job(federated_priority(TrustParams(), 0.0))
    for j in (local_spent, forwarded, local_full):
        queue.push(j, 0.0)
    assert drain(queue) == [local_full, forwarded, local_spent]


def test_removed_jobs_never_come_out_and_the_queue_counts_only_live_jobs() -> None:
    queue = HostQueue()
    a, b, c = job(900, cost=10), job(500, cost=20), job(100, cost=40)
    for j in (a, b, c):
        queue.push(j, 0.0)
    assert queue.total_cost == 70
    assert queue.remove(b.job_id) is b
    assert queue.remove(b.job_id) is None
    assert b.job_id not in queue and a.job_id in queue
    assert len(queue) == 2 and queue.total_cost == 50
    assert queue.remove(a.job_id) is a
    assert queue.peek() is c
    queue.push(b, 1.0)  # a removed job may come back
    assert drain(queue) == [b, c]
    assert len(queue) == 0 and not queue and queue.total_cost == 0


def test_a_job_cannot_be_queued_twice() -> None:
    queue = HostQueue()
    j = job(1)
    queue.push(j, 0.0)
    with pytest.raises(ValueError):
        queue.push(j, 0.0)


def test_find_and_take_return_the_best_job_a_predicate_accepts() -> None:
    queue = HostQueue()
    a, b, c = job(900, task="inpaint"), job(500, task="txt2img"), job(100, task="txt2img")
    for j in (c, b, a):
        queue.push(j, 0.0)
    assert queue.find(lambda j: j.spec.task == "txt2img") is b
    assert queue.find(lambda j: j.spec.task == "upscale") is None
    assert queue.take(lambda j: j.spec.task == "txt2img") is b
    assert queue.take(lambda j: j.spec.task == "txt2img") is c
    assert list(queue) == [a]


def test_many_removals_compact_the_heap_without_changing_the_order() -> None:
    queue = HostQueue()
    jobs = [job(p) for p in range(200)]
    for j in jobs:
        queue.push(j, 0.0)
    for j in jobs[::2] + jobs[1:150:2]:
        queue.remove(j.job_id)
    assert len(queue._heap) < 100  # rebuilt along the way
    assert drain(queue) == sorted(jobs[151::2], key=lambda j: -j.priority)


def test_iteration_lists_the_queue_best_first_without_emptying_it() -> None:
    queue = HostQueue()
    jobs = [job(p) for p in (3, 1, 2)]
    for j in jobs:
        queue.push(j, 0.0)
    assert [j.priority for j in queue] == [3, 2, 1]
    assert len(queue) == 3


@given(
    aging=st.sampled_from([0.0, 2.0, DEFAULT_AGING_PER_S]),
    entries=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=1000),  # priority
            st.integers(min_value=0, max_value=7200),  # queued at
            st.booleans(),  # removed later
        ),
        max_size=40,
    ),
    now=st.integers(min_value=7200, max_value=20000),
)
def test_heap_order_equals_a_sort_by_effective_priority_at_any_time(
    aging: float, entries: list[tuple[int, int, bool]], now: int
) -> None:
    queue = HostQueue(aging_per_s=aging)
    pushed = []
    for seq, (priority, queued_at, removed) in enumerate(entries):
        j = job(priority)
        queue.push(j, float(queued_at))
        pushed.append((seq, j, removed))
    for _, j, removed in pushed:
        if removed:
            queue.remove(j.job_id)
    live = [(seq, j) for seq, j, removed in pushed if not removed]

    def effective(j: Job) -> float:
        return j.priority + aging * (now - j.queued_at)

    listed = list(queue)
    popped = drain(queue)
    assert listed == popped
    assert sorted(map(id, popped)) == sorted(id(j) for _, j in live)
    order = {id(j): seq for seq, j in live}
    for first, second in itertools.pairwise(popped):
        assert effective(first) >= effective(second) - 1e-6
        same = (first.priority, first.queued_at) == (second.priority, second.queued_at)
        if same:
            assert order[id(first)] < order[id(second)]  # FIFO among equals


def test_the_queue_counts_its_jobs_per_task_and_those_open_to_any_host() -> None:
    queue = HostQueue()
    open_txt, open_up = job(1, task="txt2img"), job(2, task="upscale")
    pinned = Job(
        JobSpec(
            job_id="j-" + "e" * 24,
            owner="bob",
            origin=ORIGIN,
            task="txt2img",
            inputs={},
            cost=1.0,
            submitted_at=0.0,
            host=ORIGIN,
        )
    )
    for j in (open_txt, open_up, pinned):
        queue.push(j, 0.0)
    assert queue.count("txt2img") == 2 and queue.count("txt2img", open_only=True) == 1
    assert queue.count("inpaint") == 0
    queue.remove(open_txt.job_id)
    assert queue.count("txt2img", open_only=True) == 0 and queue.count("txt2img") == 1
    queue.pop()
    queue.pop()
    assert queue.count("upscale") == 0 and queue.count("txt2img") == 0
