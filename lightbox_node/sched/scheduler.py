"""The scheduler core of a queue node: job and host events in, dispatches and job changes out.

Sans-I/O, like h11: every method takes `now` (float seconds) and returns a list of actions
(`Dispatch`, `CancelOnHost`, `JobChanged`) for the trio shell to carry out in order; nothing
here touches trio, sockets or the clock. It keeps every job by id, one `HostQueue` per GPU
host it has seen, the `TrustLedger`, and what each host offers and has in flight.

The rules it follows:

* **Accepting.** A local job is charged to its owner's trust; a federated job is charged to
  the forwarding node's own budget, the account ``peer:<peer id>`` (the paper skipped this
  check). Refusals (`TrustExhausted`, `UserSuspended`, `NoHostForTask`) change nothing.
  A local job's priority is its owner's trust *after* paying for it; a federated job's is
  `federated_priority(peer score)`.
* **Placing.** A job pinned to a host (`spec.host`) needs that host to be known and to offer
  the task; it is accepted even while the host is gone, and waits for it (or expires). Any
  other job goes to the online host offering the task with the least backlog (queued plus
  in-flight cost) per announced slot; ties go to the fewest queued jobs, then the peer id.
  If every host offering the task is gone, the job waits on one of them; if none offers it
  at all, the job is refused.
* **Dispatching.** `free_slots` is how many jobs from this node the host takes at once.
  The host is sent up to `free_slots` jobs plus `prefetch` more (DISPATCHED too, waiting at
  the host) so its GPU never idles between jobs; a host announcing 0 slots gets nothing. A
  host whose own queue has nothing it can run steals the best unpinned job for one of its
  tasks from another host's queue, but only into a truly free slot, never for prefetch.
* **Deadlines.** An attempt has ``deadline_base_s + deadline_per_cost * cost`` seconds; a
  prefetched job's clock starts at the latest deadline of the jobs ahead of it on that host.
* **Faults.** A host's fault report, a missed deadline and a host disconnect all count
  toward `max_faults` (3): a disconnect is not the job's fault, but a job that keeps
  knocking hosts over must not loop forever. A job re-queues on another host offering the
  task when there is one (a pinned job on its own host), keeping the age it had in the
  queue; at the limit it ends FAULTED with every reason in `job.faults` and `job.error`.
* **Stale reports.** Only the current attempt of a job, on the host it went to, counts;
  anything else (a late result of an earlier attempt, another host) is ignored, so a job
  never completes twice.
* **Refunds.** Trust is given back for a job that never reached a GPU (cancelled while
  queued, expired in the queue) and for a job that ends FAULTED (the user got nothing);
  not for a job cancelled once dispatched.
* **Restarts.** `restore` puts back jobs read from the journal: final ones for lookup,
  queued ones as they were, dispatched or running ones re-queued for a new attempt (the
  crash is not counted as a fault) with a `CancelOnHost` for the orphaned attempt.

`JobChanged` carries the live `Job`; the shell journals and fans it out when it handles the
action, so it always writes the newest state.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import (
    Attempt,
    Job,
    JobError,
    JobSpec,
    JobState,
    UnknownJob,
)
from lightbox_node.sched.queues import DEFAULT_AGING_PER_S, HostQueue, federated_priority
from lightbox_node.sched.trust import STANDARD_IMAGE_COST, TrustLedger, TrustParams

_IN_FLIGHT = (JobState.DISPATCHED, JobState.RUNNING)
_MAX_TEXT = 500
"""Longest progress message or fault reason kept from a host (the rest is cut)."""


class NoHostForTask(JobError):
    """No known GPU host offers the task (or the chosen host does not)."""

    def __init__(self, task: str, host: PeerId | None = None, detail: str = ""):
        self.task = task
        self.host = host
        if host is None:
            message = (
                f"no GPU host offers task {task!r} right now; pick another task or try again "
                "when a host that runs it has joined"
            )
        else:
            message = (
                f"GPU host {host} {detail or 'is not known here'}, so it cannot run task "
                f"{task!r}; pick a host that offers it, or leave the host open"
            )
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class SchedulerParams:
    """Every scheduling setting in one validated object."""

    trust: TrustParams = field(default_factory=TrustParams)
    aging_per_s: float = DEFAULT_AGING_PER_S
    """Priority points a queued job gains per second of waiting."""
    deadline_base_s: float = 30.0
    deadline_per_cost: float = 270.0 / STANDARD_IMAGE_COST
    """Seconds per unit of cost: a 512×512, 25-step image gets 30 + 270 s = 5 minutes."""
    max_faults: int = 3
    """Faults of any kind (reported, deadline, disconnect) after which a job ends FAULTED."""
    queue_timeout_s: float = 3600.0
    """A job that waits longer than this in a queue EXPIRES (and is refunded)."""
    prefetch: int = 1
    """Jobs sent to a host beyond its free slots, so its GPU never idles between jobs."""

    def __post_init__(self) -> None:
        for name in ("aging_per_s", "deadline_base_s", "deadline_per_cost", "queue_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"scheduler setting {name} must be a number >= 0, not {value!r}")
        if self.deadline_base_s <= 0:
            raise ValueError("deadline_base_s must be > 0")
        if self.queue_timeout_s <= 0:
            raise ValueError("queue_timeout_s must be > 0")
        if not isinstance(self.max_faults, int) or self.max_faults < 1:
            raise ValueError("max_faults must be an integer >= 1")
        if not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise ValueError("prefetch must be an integer >= 0")

    def deadline_for(self, cost: float) -> float:
        """Seconds an attempt of a job of this cost may take."""
        return self.deadline_base_s + self.deadline_per_cost * cost


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send `job` to GPU host `host` as attempt `attempt`."""

    host: PeerId
    job: Job
    attempt: Attempt


@dataclass(frozen=True, slots=True)
class CancelOnHost:
    """Tell `host` to stop attempt `attempt_number` of a job (cancelled, late or orphaned)."""

    host: PeerId
    job_id: str
    attempt_number: int


@dataclass(frozen=True, slots=True)
class JobChanged:
    """The job's state, progress, attempts or results changed: journal it, tell watchers."""

    job: Job


Action = Dispatch | CancelOnHost | JobChanged
"""Everything the scheduler returns."""


# -- read side ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostView:
    """A GPU host as this queue node sees it."""

    host: PeerId
    tasks: frozenset[str]
    slots: int
    """Slots the host last announced to this node."""
    in_flight: tuple[str, ...]
    """Ids of the jobs dispatched to it and not yet finished, oldest first."""
    queued: int
    queued_cost: float
    online: bool
    seen_at: float

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - len(self.in_flight))


COUNTERS = (
    "submitted",
    "refused",
    "dispatched",
    "stolen",
    "started",
    "done",
    "faults",
    "deadline_missed",
    "requeued",
    "faulted",
    "cancelled",
    "expired",
    "restored",
)
"""Names of the scheduler's event counters (see `Scheduler.counters`)."""


@dataclass(slots=True)
class _Host:
    peer: PeerId
    name: str
    queue: HostQueue
    tasks: frozenset[str] = frozenset()
    slots: int = 0
    online: bool = True
    seen_at: float = 0.0
    pinned_only: bool = False
    """A host reached through another queue node (federation) takes only jobs aimed at it."""
    in_flight: dict[str, None] = field(default_factory=dict)
    """Job ids in dispatch order (a dict as an ordered set)."""
    in_flight_cost: float = 0.0
    """The cost of the jobs in flight, summed again whenever they change (read far more
    often, by every placement)."""


class Scheduler:
    """The pure scheduling core of one queue node."""

    def __init__(self, params: SchedulerParams | None = None, ledger: TrustLedger | None = None):
        self.params = params or SchedulerParams()
        self.ledger = ledger if ledger is not None else TrustLedger(self.params.trust)
        self._jobs: dict[str, Job] = {}
        self._hosts: dict[PeerId, _Host] = {}
        self._host_order: list[_Host] = []
        self._offering: dict[str, list[_Host]] = {}
        """Per task, the hosts that offer it to any job (not pinned-only), in name order;
        rebuilt when a host's tasks change."""
        self._dirty: dict[PeerId, _Host] = {}
        """Hosts that may be able to take a job from their own queue: their queue grew, or
        their slots, tasks or jobs in flight changed, since `_fill_all` last visited them.
        Every other host is full, or has nothing queued that it runs."""
        self._idle: dict[PeerId, _Host] = {}
        """Online hosts that take any job (not pinned-only) and have a free slot: the only
        ones that may steal."""
        self._open_queued = 0
        """Unpinned jobs in the hosts' queues (jobs another host may steal)."""
        self._queued_on: dict[str, PeerId | None] = {}
        """Where each QUEUED job waits: a host's queue, or None for `_unplaced`."""
        self._unplaced: dict[str, Job] = {}
        """Queued jobs that no known host offers to run: restored before any host announced
        itself, or re-queued after the last host offering the task dropped it."""
        self._deadlines: list[tuple[float, str, int]] = []
        self._expiries: list[tuple[float, str, float]] = []
        self._counters = dict.fromkeys(COUNTERS, 0)

    # -- events: users --------------------------------------------------------------------

    def submit(self, spec: JobSpec, now: float, *, peer_score: float = 0.0) -> list[Action]:
        """Accept a job (charging trust), queue it, and dispatch what can be dispatched.

        `peer_score` is the forwarding node's peer score, for a federated job. Raises
        NoHostForTask, TrustExhausted or UserSuspended and then changes nothing. Submitting
        the same spec again is a no-op (a retried request), another spec under a known id is
        refused.
        """
        known = self._jobs.get(spec.job_id)
        if known is not None:
            if known.spec == spec:
                return []
            raise JobError(f"job id {spec.job_id} is already taken; submit with a new id")
        try:
            self.params.trust.price(spec.cost)
        except ValueError as exc:
            raise JobError(f"job {spec.job_id} has an invalid cost: {exc}") from None
        try:
            host = self._place_new(spec)
            account = _account_of(spec)
            self.ledger.charge(account, spec.cost, now)
        except JobError:
            self._counters["refused"] += 1
            raise
        if spec.is_federated:
            priority = federated_priority(self.params.trust, peer_score)
        else:
            priority = self.ledger.trust(account, now)
        job = Job(spec, priority=priority)
        self._jobs[spec.job_id] = job
        self._counters["submitted"] += 1
        self._enqueue(job, host, now)
        return [JobChanged(job), *self._fill_all(now)]

    def cancel(self, job_id: str, now: float) -> list[Action]:
        """Cancel a job in any state before it ends; a finished job is left as it is."""
        job = self.job(job_id)
        if job.state.is_final:
            return []
        actions: list[Action] = []
        if job.state is JobState.QUEUED:
            self._dequeue(job)
            self._refund(job, now)
        else:
            attempt = self._leave_host(job)
            attempt.outcome = "cancelled"
            actions.append(CancelOnHost(attempt.host, job_id, attempt.number))
        self._finish(job, JobState.CANCELLED, now, error="cancelled")
        self._counters["cancelled"] += 1
        return [JobChanged(job), *actions, *self._fill_all(now)]

    # -- events: hosts --------------------------------------------------------------------

    def host_available(
        self,
        host: PeerId,
        tasks: Iterable[str],
        free_slots: int,
        now: float,
        *,
        pinned_only: bool = False,
    ) -> list[Action]:
        """A host (re)announced the tasks it runs and how many jobs from here it takes.

        A `pinned_only` host (one attached to another queue node) gets only the jobs whose
        owners chose it; other jobs are never placed there or stolen by it.
        """
        if not isinstance(free_slots, int) or free_slots < 0:
            raise ValueError(f"free_slots must be an integer >= 0, not {free_slots!r}")
        tasks = frozenset(tasks)
        h = self._hosts.get(host)
        if h is None:
            h = _Host(host, str(host), HostQueue(self.params.aging_per_s))
            self._hosts[host] = h
            self._host_order.append(h)
            self._host_order.sort(key=_by_name)
            self._offering.clear()
        elif h.tasks != tasks or h.pinned_only != pinned_only:
            self._offering.clear()
        dropped = h.tasks - tasks
        h.tasks, h.slots, h.online, h.seen_at = tasks, free_slots, True, now
        h.pinned_only = pinned_only
        self._dirty[host] = h
        self._note_slots(h)
        if dropped:
            # Unpinned jobs for a task it no longer runs go to a host that does, if any.
            for job in list(h.queue):
                if job.spec.task in dropped and job.spec.host is None:
                    target = self._choose_host(job.spec)
                    if target is not None and target != host:
                        self._move(job, target)
        for job in list(self._unplaced.values()):
            target = self._requeue_target(job.spec)
            if target is not None:
                self._move(job, target)
        return self._fill_all(now)

    def host_gone(self, host: PeerId, now: float) -> list[Action]:
        """A host disconnected: re-queue its jobs in flight, move its queue where possible."""
        h = self._hosts.get(host)
        if h is None or not h.online:
            return []
        h.online = False
        self._note_slots(h)
        actions: list[Action] = []
        for job_id in list(h.in_flight):
            actions += self._fault(self._jobs[job_id], "host disconnected", now)
        for job in list(h.queue):
            if job.spec.host is None:
                target = self._choose_host(job.spec, avoid=host)
                if target is not None and self._hosts[target].online:
                    self._move(job, target)
        return actions + self._fill_all(now)

    def job_started(self, job_id: str, host: PeerId, attempt: int, now: float) -> list[Action]:
        """The host began running the job."""
        job = self._current(job_id, host, attempt)
        if job is None or job.state is JobState.RUNNING:
            return []
        job.move_to(JobState.RUNNING)
        self._counters["started"] += 1
        return [JobChanged(job)]

    def job_progress(
        self,
        job_id: str,
        host: PeerId,
        attempt: int,
        fraction: float,
        message: str,
        now: float,
    ) -> list[Action]:
        """The host reports progress (fraction clamped to 0..1); implies the job started."""
        job = self._current(job_id, host, attempt)
        if job is None:
            return []
        if job.state is JobState.DISPATCHED:
            job.move_to(JobState.RUNNING)
            self._counters["started"] += 1
        job.progress = min(1.0, max(0.0, fraction))  # NaN becomes 0.0
        job.progress_message = str(message)[:_MAX_TEXT]
        return [JobChanged(job)]

    def job_done(
        self, job_id: str, host: PeerId, attempt: int, results: list[str], now: float
    ) -> list[Action]:
        """The host finished the job; `results` are the result blob ids."""
        job = self._current(job_id, host, attempt)
        if job is None:
            return []
        self._leave_host(job)
        job.complete(results, now)
        self._counters["done"] += 1
        return [JobChanged(job), *self._fill_all(now)]

    def job_faulted(
        self, job_id: str, host: PeerId, attempt: int, reason: str, now: float
    ) -> list[Action]:
        """The host could not run the job; re-queue it, or fail it at the fault limit."""
        job = self._current(job_id, host, attempt)
        if job is None:
            return []
        return self._fault(job, str(reason)[:_MAX_TEXT] or "no reason given", now) + (
            self._fill_all(now)
        )

    # -- events: time and restarts ----------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Handle missed deadlines (a fault, and a cancel on the late host) and queue timeouts."""
        actions: list[Action] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            entry = heapq.heappop(self._deadlines)
            job = self._deadline_job(entry)
            if job is None:
                continue
            attempt = job.current_attempt
            assert attempt is not None
            allowed = attempt.deadline - attempt.dispatched_at
            self._counters["deadline_missed"] += 1
            actions.append(CancelOnHost(attempt.host, job.job_id, attempt.number))
            actions += self._fault(job, f"missed its deadline of {allowed:.0f} s", now)
        while self._expiries and self._expiries[0][0] <= now:
            entry = heapq.heappop(self._expiries)
            job = self._expiry_job(entry)
            if job is None:
                continue
            self._dequeue(job)
            self._refund(job, now)
            self._finish(
                job,
                JobState.EXPIRED,
                now,
                error=(
                    f"no GPU host took it within {self.params.queue_timeout_s:.0f} s; "
                    "submit it again later or choose another host"
                ),
            )
            self._counters["expired"] += 1
            actions.append(JobChanged(job))
        return actions + self._fill_all(now)

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (an attempt deadline or a queue timeout)."""
        while self._deadlines and self._deadline_job(self._deadlines[0]) is None:
            heapq.heappop(self._deadlines)
        while self._expiries and self._expiry_job(self._expiries[0]) is None:
            heapq.heappop(self._expiries)
        heads = [heap[0][0] for heap in (self._deadlines, self._expiries) if heap]
        return min(heads) if heads else None

    def restore(self, job: Job, now: float) -> list[Action]:
        """Put back a job read from the journal after a restart (see the module docstring)."""
        if job.job_id in self._jobs:
            raise JobError(f"job {job.job_id} is already known; it was restored twice")
        self._jobs[job.job_id] = job
        self._counters["restored"] += 1
        if job.state.is_final:
            return []
        actions: list[Action] = []
        if job.state is JobState.QUEUED:
            self._enqueue(job, self._requeue_target(job.spec), job.queued_at)
        else:
            attempt = job.current_attempt
            if attempt is not None:
                attempt.outcome = "queue node restarted"
                actions.append(CancelOnHost(attempt.host, job.job_id, attempt.number))
            self._requeue(job, now)
            actions.append(JobChanged(job))
        return actions + self._fill_all(now)

    def purge(self, finished_before: float) -> list[str]:
        """Forget final jobs that finished before this time; returns their ids."""
        gone = [
            job_id
            for job_id, job in self._jobs.items()
            if job.state.is_final and (job.finished_at or 0.0) < finished_before
        ]
        for job_id in gone:
            del self._jobs[job_id]
        return gone

    # -- read side ------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        """The job with this id; raises UnknownJob."""
        job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJob(
                f"no job {job_id!r} here; check the id (finished jobs are forgotten after a while)"
            )
        return job

    def jobs(self) -> list[Job]:
        """Every job known here, in the order they were submitted or restored."""
        return list(self._jobs.values())

    def queue_of(self, host: PeerId) -> list[Job]:
        """The jobs waiting for `host`, best first (empty for an unknown host)."""
        h = self._hosts.get(host)
        return list(h.queue) if h is not None else []

    def unplaced(self) -> list[Job]:
        """Queued jobs that wait for a host offering their task (or their pinned host) to
        announce itself: restored ones, or those whose last host stopped offering the task."""
        return list(self._unplaced.values())

    def hosts(self) -> list[HostView]:
        """Every host seen, by peer id."""
        return [
            HostView(
                host=h.peer,
                tasks=h.tasks,
                slots=h.slots,
                in_flight=tuple(h.in_flight),
                queued=len(h.queue),
                queued_cost=h.queue.total_cost,
                online=h.online,
                seen_at=h.seen_at,
            )
            for h in self._host_order
        ]

    @property
    def counters(self) -> dict[str, int]:
        """Event counts since start, for metrics (names in `COUNTERS`)."""
        return dict(self._counters)

    # -- internals: placing -----------------------------------------------------------------

    def _place_new(self, spec: JobSpec) -> PeerId:
        if spec.host is not None:
            h = self._hosts.get(spec.host)
            if h is None:
                raise NoHostForTask(spec.task, spec.host)
            if spec.task not in h.tasks:
                offers = ", ".join(sorted(h.tasks)) or "nothing"
                raise NoHostForTask(spec.task, spec.host, f"offers only {offers}")
            return spec.host
        host = self._choose_host(spec)
        if host is None:
            raise NoHostForTask(spec.task)
        return host

    def _choose_host(self, spec: JobSpec, avoid: PeerId | None = None) -> PeerId | None:
        """The best host for an unpinned job: online before gone, not `avoid` if possible."""
        offering = self._offering.get(spec.task)
        if offering is None:
            offering = [h for h in self._host_order if spec.task in h.tasks and not h.pinned_only]
            self._offering[spec.task] = offering
        candidates = [h for h in offering if h.online] or offering
        if avoid is not None:
            candidates = [h for h in candidates if h.peer != avoid] or candidates
        # The least (backlog per slot, queued jobs, name); the backlog alone decides almost
        # every comparison, so the rest of the key is looked at only on a tie.
        best: _Host | None = None
        best_load = math.inf
        for h in candidates:
            load = (h.queue.total_cost + h.in_flight_cost) / h.slots if h.slots > 0 else math.inf
            if (
                best is None
                or load < best_load
                or (load == best_load and (len(h.queue), h.name) < (len(best.queue), best.name))
            ):
                best, best_load = h, load
        return None if best is None else best.peer

    def _requeue_target(self, spec: JobSpec, avoid: PeerId | None = None) -> PeerId | None:
        if spec.host is not None:
            return spec.host if spec.host in self._hosts else None
        return self._choose_host(spec, avoid)

    def _enqueue(self, job: Job, host: PeerId | None, since: float) -> None:
        if host is None:
            job.queued_at = since
            self._unplaced[job.job_id] = job
            self._queued_on[job.job_id] = None
        else:
            self._push(self._hosts[host], job, since)
        expires = since + self.params.queue_timeout_s
        heapq.heappush(self._expiries, (expires, job.job_id, since))

    def _dequeue(self, job: Job) -> None:
        host = self._queued_on.get(job.job_id)
        if host is None:
            del self._queued_on[job.job_id]
            del self._unplaced[job.job_id]
        else:
            self._hosts[host].queue.remove(job.job_id)
            self._unqueued(job)

    def _move(self, job: Job, host: PeerId) -> None:
        """Move a queued job to another host's queue, keeping its age."""
        since = job.queued_at
        self._dequeue(job)
        self._push(self._hosts[host], job, since)

    def _push(self, h: _Host, job: Job, since: float) -> None:
        """Queue a job on a host, which may now have something to dispatch."""
        h.queue.push(job, since)
        self._queued_on[job.job_id] = h.peer
        self._dirty[h.peer] = h
        if job.spec.host is None:
            self._open_queued += 1

    def _unqueued(self, job: Job) -> None:
        """Bookkeeping for a job just taken out of a host's queue."""
        del self._queued_on[job.job_id]
        if job.spec.host is None:
            self._open_queued -= 1

    def _note_slots(self, h: _Host) -> None:
        """Keep `_idle` in step with the host's state and jobs in flight."""
        if h.online and not h.pinned_only and len(h.in_flight) < h.slots:
            self._idle[h.peer] = h
        else:
            self._idle.pop(h.peer, None)

    # -- internals: dispatching -------------------------------------------------------------

    def _fill_all(self, now: float) -> list[Action]:
        """Dispatch whatever can be dispatched, after any event.

        Called after every event, so it visits only the hosts the events since its last
        call touched (`_dirty`), in name order, as a visit of every host would: a host it
        left full or without a job it runs stays so until its queue grows or a job of its
        ends. Stealing is tried only while some host is idle and some job may be stolen.
        """
        actions: list[Action] = []
        if self._dirty:
            dirty = list(self._dirty.values())
            self._dirty.clear()
            if len(dirty) > 1:
                dirty.sort(key=_by_name)
            prefetch = self.params.prefetch
            for h in dirty:
                if not h.online or h.slots <= 0 or not h.queue:
                    continue
                capacity = h.slots + prefetch
                tasks = h.tasks
                while len(h.in_flight) < capacity and any(h.queue.count(t) for t in tasks):
                    job = h.queue.take(lambda j, tasks=tasks: j.spec.task in tasks)
                    if job is None:
                        break
                    self._unqueued(job)
                    actions += self._dispatch(h, job, now)
        if not self._idle or not self._open_queued:
            return actions
        # Stealing looks at every other queue; skip it unless some queue holds an unpinned
        # job for a task the thief runs (one pass here instead of one per thief).
        thieves = sorted(self._idle.values(), key=_by_name)
        open_tasks = {
            task
            for h in self._host_order
            if h.queue
            for task in h.tasks
            if h.queue.count(task, open_only=True)
        }
        for h in thieves:
            if not h.tasks & open_tasks:
                continue
            while len(h.in_flight) < h.slots:
                job = self._steal_for(h, now)
                if job is None:
                    break
                self._counters["stolen"] += 1
                actions += self._dispatch(h, job, now)
        return actions

    def _steal_for(self, thief: _Host, now: float) -> Job | None:
        """Take the best unpinned job for one of `thief`'s tasks from another host's queue."""
        best: Job | None = None
        best_priority = -math.inf
        best_host: _Host | None = None

        def stealable(job: Job) -> bool:
            return job.spec.host is None and job.spec.task in thief.tasks

        for h in self._host_order:
            if h is thief or not any(h.queue.count(t, open_only=True) for t in thief.tasks):
                continue
            job = h.queue.find(stealable)
            if job is not None:
                priority = h.queue.effective_priority(job, now)
                if priority > best_priority:
                    best, best_priority, best_host = job, priority, h
        if best is None or best_host is None:
            return None
        best_host.queue.remove(best.job_id)
        self._unqueued(best)
        return best

    def _dispatch(self, h: _Host, job: Job, now: float) -> list[Action]:
        start = now
        if len(h.in_flight) >= h.slots:
            # Prefetched: it waits at the host until a job ahead of it ends, at the latest
            # when the last of them would miss its deadline.
            ahead = (self._jobs[j].current_attempt for j in h.in_flight)
            start = max([now, *(a.deadline for a in ahead if a is not None)])
        attempt = Attempt(
            number=len(job.attempts) + 1,
            host=h.peer,
            dispatched_at=now,
            deadline=start + self.params.deadline_for(job.spec.cost),
        )
        job.move_to(JobState.DISPATCHED)
        job.attempts.append(attempt)
        job.progress = 0.0
        job.progress_message = ""
        h.in_flight[job.job_id] = None
        self._in_flight_changed(h)
        heapq.heappush(self._deadlines, (attempt.deadline, job.job_id, attempt.number))
        self._counters["dispatched"] += 1
        return [JobChanged(job), Dispatch(h.peer, job, attempt)]

    # -- internals: ending attempts ---------------------------------------------------------

    def _current(self, job_id: str, host: PeerId, attempt: int) -> Job | None:
        """The job if `attempt` on `host` is its attempt in flight; None for anything stale."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in _IN_FLIGHT:
            return None
        current = job.current_attempt
        if current is None or current.number != attempt or current.host != host:
            return None
        return job

    def _leave_host(self, job: Job) -> Attempt:
        attempt = job.current_attempt
        assert attempt is not None
        h = self._hosts[attempt.host]
        del h.in_flight[job.job_id]
        self._in_flight_changed(h)
        self._dirty[h.peer] = h
        return attempt

    def _in_flight_changed(self, h: _Host) -> None:
        jobs = self._jobs
        h.in_flight_cost = sum(jobs[j].spec.cost for j in h.in_flight)
        self._note_slots(h)

    def _fault(self, job: Job, reason: str, now: float) -> list[Action]:
        attempt = self._leave_host(job)
        attempt.outcome = reason
        job.faults.append(f"attempt {attempt.number} on {attempt.host.short}: {reason}")
        self._counters["faults"] += 1
        if len(job.faults) >= self.params.max_faults:
            self._refund(job, now)
            self._finish(
                job,
                JobState.FAULTED,
                now,
                error=f"failed {len(job.faults)} times: " + "; ".join(job.faults),
            )
            self._counters["faulted"] += 1
        else:
            self._requeue(job, now, avoid=attempt.host)
        return [JobChanged(job)]

    def _requeue(self, job: Job, now: float, avoid: PeerId | None = None) -> None:
        """Back into a queue after a failed attempt, with the age it had when dispatched."""
        attempt = job.current_attempt
        if attempt is not None:
            job.priority += self.params.aging_per_s * max(
                0.0, attempt.dispatched_at - job.queued_at
            )
        job.move_to(JobState.QUEUED)
        job.progress = 0.0
        job.progress_message = ""
        self._enqueue(job, self._requeue_target(job.spec, avoid), now)
        self._counters["requeued"] += 1

    def _finish(self, job: Job, state: JobState, now: float, error: str | None = None) -> None:
        job.move_to(state)
        job.finished_at = now
        if error is not None:
            job.error = error

    def _refund(self, job: Job, now: float) -> None:
        self.ledger.refund(_account_of(job.spec), self.params.trust.price(job.spec.cost), now)

    def _deadline_job(self, entry: tuple[float, str, int]) -> Job | None:
        deadline, job_id, number = entry
        job = self._jobs.get(job_id)
        if job is None or job.state not in _IN_FLIGHT:
            return None
        attempt = job.current_attempt
        if attempt is None or attempt.number != number or attempt.deadline != deadline:
            return None
        return job

    def _expiry_job(self, entry: tuple[float, str, float]) -> Job | None:
        _, job_id, since = entry
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.QUEUED or job.queued_at != since:
            return None
        return job


def _by_name(h: _Host) -> str:
    return h.name


def _account_of(spec: JobSpec) -> str:
    """The trust account a job is charged to: its owner, or the node that forwarded it."""
    if spec.federated_from is not None:
        return f"peer:{spec.federated_from}"
    return spec.owner


__all__ = [
    "COUNTERS",
    "Action",
    "CancelOnHost",
    "Dispatch",
    "HostView",
    "JobChanged",
    "NoHostForTask",
    "Scheduler",
    "SchedulerParams",
]
