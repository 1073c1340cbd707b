"""The scheduler under random events: every job is in exactly one place and moves only legally.

A hypothesis state machine drives submits, host announcements and disconnects, progress,
results, faults (current and stale), cancels, ticks, suspensions and restarts across three
hosts and four users, and checks the invariants after every step.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import TRANSITIONS, JobSpec, JobState
from lightbox_node.sched.scheduler import (
    Dispatch,
    JobChanged,
    NoHostForTask,
    Scheduler,
    SchedulerParams,
)
from lightbox_node.sched.trust import (
    STANDARD_IMAGE_COST,
    TrustExhausted,
    TrustLedger,
    UserSuspended,
)

HOSTS = [PeerId(bytes([n]) * 32) for n in (1, 2, 3)]
NEIGHBOURS = [PeerId(bytes([n]) * 32) for n in (7, 8)]
ORIGIN = PeerId(bytes([9]) * 32)
USERS = ["ann", "bob", "cy", "dee"]
TASKS = ["txt2img", "upscale", "inpaint"]
START_TASKS = [frozenset({"txt2img", "upscale"}), frozenset({"txt2img"}), frozenset({"inpaint"})]
COSTS = [0, STANDARD_IMAGE_COST // 4, STANDARD_IMAGE_COST, 4 * STANDARD_IMAGE_COST, 10**9]
PARAMS = SchedulerParams(queue_timeout_s=1800.0, deadline_base_s=60.0)


def _closure() -> dict[JobState, frozenset[JobState]]:
    reach = {}
    for start in JobState:
        seen: set[JobState] = set()
        frontier = [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        reach[start] = frozenset(seen | {start})
    return reach


REACHABLE = _closure()


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sched = Scheduler(PARAMS)
        self.now = 0.0
        self.serial = 0
        self.seen_state: dict[str, JobState] = {}
        self.done: dict[str, tuple] = {}

    # -- helpers ----------------------------------------------------------------------------

    def _apply(self, event) -> list:
        before = {h.host: len(h.in_flight) for h in self.sched.hosts()}
        actions = event()
        for view in self.sched.hosts():
            capacity = view.slots + PARAMS.prefetch if view.slots > 0 and view.online else 0
            assert len(view.in_flight) <= max(capacity, before.get(view.host, 0)), view
        online = {h.host: h for h in self.sched.hosts() if h.online}
        for action in actions:
            if isinstance(action, Dispatch):
                assert action.host in online
                assert action.job.spec.task in online[action.host].tasks
                assert action.job.spec.host in (None, action.host)
                assert action.attempt is action.job.current_attempt
            if isinstance(action, JobChanged):
                assert action.job is self.sched.job(action.job.job_id)
        return actions

    def _in_flight(self) -> list[tuple[str, PeerId, int]]:
        out = []
        for view in self.sched.hosts():
            for job_id in view.in_flight:
                out.append((job_id, view.host, self.sched.job(job_id).current_attempt.number))
        return out

    # -- rules ------------------------------------------------------------------------------

    @initialize(slots=st.lists(st.integers(min_value=0, max_value=2), min_size=3, max_size=3))
    def hosts_announce(self, slots) -> None:
        for host, tasks, n in zip(HOSTS, START_TASKS, slots, strict=True):
            self._apply(
                lambda host=host, tasks=tasks, n=n: self.sched.host_available(
                    host, tasks, n, self.now
                )
            )

    @rule(
        user=st.sampled_from(USERS),
        task=st.sampled_from(TASKS),
        pin=st.sampled_from([None, None, None, *HOSTS]),
        forwarder=st.none() | st.sampled_from(NEIGHBOURS),
        cost=st.sampled_from(COSTS),
        peer_score=st.sampled_from([0.0, -40.0, -200.0]),
    )
    def submit(self, user, task, pin, forwarder, cost, peer_score) -> None:
        self.serial += 1
        spec = JobSpec(
            job_id=f"j-{self.serial:024x}",
            owner=f"peer:{forwarder}" if forwarder else user,
            origin=forwarder or ORIGIN,
            task=task,
            inputs={},
            cost=float(cost),
            submitted_at=self.now,
            host=pin,
            federated_from=forwarder,
        )
        count = len(self.sched.jobs())
        try:
            self._apply(lambda: self.sched.submit(spec, self.now, peer_score=peer_score))
        except (TrustExhausted, UserSuspended, NoHostForTask):
            assert len(self.sched.jobs()) == count

    @rule(
        host=st.sampled_from(HOSTS),
        tasks=st.sampled_from([*START_TASKS, frozenset(TASKS), frozenset()]),
        slots=st.integers(min_value=0, max_value=3),
    )
    def host_available(self, host, tasks, slots) -> None:
        self._apply(lambda: self.sched.host_available(host, tasks, slots, self.now))

    @rule(host=st.sampled_from(HOSTS))
    def host_gone(self, host) -> None:
        self._apply(lambda: self.sched.host_gone(host, self.now))

    @rule(
        data=st.data(),
        kind=st.sampled_from(["started", "progress", "done", "done", "faulted"]),
        stale=st.sampled_from([None, None, "attempt", "host"]),
    )
    def host_report(self, data, kind, stale) -> None:
        in_flight = self._in_flight()
        if not in_flight:
            return
        job_id, host, attempt = data.draw(st.sampled_from(in_flight))
        if stale == "attempt":
            attempt -= 1
        elif stale == "host":
            host = HOSTS[(HOSTS.index(host) + 1) % len(HOSTS)]
        job = self.sched.job(job_id)
        state, n_attempts = job.state, len(job.attempts)
        if kind == "started":
            actions = self._apply(lambda: self.sched.job_started(job_id, host, attempt, self.now))
        elif kind == "progress":
            fraction = data.draw(st.floats(min_value=-1, max_value=2, allow_nan=False))
            actions = self._apply(
                lambda: self.sched.job_progress(job_id, host, attempt, fraction, "step", self.now)
            )
        elif kind == "done":
            actions = self._apply(
                lambda: self.sched.job_done(job_id, host, attempt, ["sha256-r"], self.now)
            )
        else:
            actions = self._apply(
                lambda: self.sched.job_faulted(job_id, host, attempt, "boom", self.now)
            )
        if stale:
            assert actions == []
            assert (job.state, len(job.attempts)) == (state, n_attempts)

    @rule(data=st.data())
    def cancel(self, data) -> None:
        jobs = self.sched.jobs()
        if jobs:
            job = data.draw(st.sampled_from(jobs))
            self._apply(lambda: self.sched.cancel(job.job_id, self.now))

    @rule(dt=st.sampled_from([0.0, 1.0, 30.0, 400.0, 2000.0]))
    def tick(self, dt) -> None:
        self.now += dt
        self._apply(lambda: self.sched.tick(self.now))
        due = self.sched.next_deadline()
        assert due is None or due > self.now

    @rule(user=st.sampled_from(USERS), suspend=st.booleans())
    def suspend_or_restore(self, user, suspend) -> None:
        if suspend:
            self.sched.ledger.suspend(user, "testing", self.now)
        else:
            self.sched.ledger.restore(user, self.now)

    @rule()
    def restart(self) -> None:
        journal = [copy.deepcopy(job) for job in self.sched.jobs()]
        ledger = TrustLedger(PARAMS.trust)
        ledger.load(self.sched.ledger.snapshot())
        self.sched = Scheduler(PARAMS, ledger)
        for job in journal:
            self._apply(lambda job=job: self.sched.restore(job, self.now))

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def states_move_only_along_transitions_and_done_never_changes(self) -> None:
        for job in self.sched.jobs():
            last = self.seen_state.get(job.job_id, JobState.QUEUED)
            assert job.state in REACHABLE[last], (job.job_id, last, job.state)
            self.seen_state[job.job_id] = job.state
            if job.state is JobState.DONE:
                frozen = (job.results, job.finished_at, len(job.attempts), job.progress)
                assert self.done.setdefault(job.job_id, frozen) == frozen
            if job.state is JobState.FAULTED:
                assert len(job.faults) == PARAMS.max_faults
            assert len(job.faults) <= PARAMS.max_faults

    @invariant()
    def every_job_is_in_exactly_the_place_its_state_says(self) -> None:
        places: dict[str, list[str]] = {}
        for view in self.sched.hosts():
            for job in self.sched.queue_of(view.host):
                places.setdefault(job.job_id, []).append(f"queued on {view.host.short}")
            for job_id in view.in_flight:
                places.setdefault(job_id, []).append(f"in flight on {view.host.short}")
                current = self.sched.job(job_id).current_attempt
                assert current is not None and current.host == view.host
            assert view.in_flight == () or view.online
        for job in self.sched.unplaced():
            places.setdefault(job.job_id, []).append("unplaced")
        for job in self.sched.jobs():
            where = places.get(job.job_id, [])
            if job.state.is_final:
                assert where == [], (job.job_id, job.state, where)
            else:
                assert len(where) == 1, (job.job_id, job.state, where)
                in_flight = job.state in (JobState.DISPATCHED, JobState.RUNNING)
                assert where[0].startswith("in flight") == in_flight, (job.state, where)

    @invariant()
    def no_host_is_left_idle_beside_a_job_it_could_take(self) -> None:
        # The scheduler fills only the hosts events touched; this is what a fill of every
        # host after every event would leave behind.
        views = [v for v in self.sched.hosts() if v.online and v.slots > 0]
        for view in views:
            queued = [job for job in self.sched.queue_of(view.host) if job.spec.task in view.tasks]
            assert not queued or len(view.in_flight) >= view.slots + PARAMS.prefetch, view
        for thief in (v for v in views if len(v.in_flight) < v.slots):
            for other in self.sched.hosts():
                if other.host == thief.host:
                    continue
                stealable = [
                    job
                    for job in self.sched.queue_of(other.host)
                    if job.spec.host is None and job.spec.task in thief.tasks & other.tasks
                ]
                assert not stealable, (thief, other)

    @invariant()
    def trust_stays_between_zero_and_max(self) -> None:
        ledger = self.sched.ledger
        for user in [*USERS, *(f"peer:{n}" for n in NEIGHBOURS)]:
            assert 0.0 <= ledger.trust(user, self.now) <= PARAMS.trust.max_trust


TestSchedulerStates = SchedulerMachine.TestCase
TestSchedulerStates.settings = settings(
    max_examples=400,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
