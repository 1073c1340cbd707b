"""Per-host priority queues: jobs ordered by their owner's trust, aged so that nobody starves.

A job's *effective priority* at time `now` is ``priority + aging_per_s * (now - queued_at)``.
Every queued job ages at the same rate, so the order between two jobs never changes while
they wait, and the constant ``priority - aging_per_s * queued_at`` is a valid heap key: the
queue is a binary heap on (-key, insertion sequence) — O(log n) push and pop, FIFO among
equals — with lazy removal (a removed job's heap entry is skipped when it surfaces).

`priority` is the owner's trust at enqueue for a local job (0..max_trust), or the penalised
`federated_priority` for a job forwarded by another queue node. Pure: no trio, no I/O.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lightbox_node.sched.jobs import Job
from lightbox_node.sched.trust import TrustParams

DEFAULT_AGING_PER_S = 1000.0 / 600.0
"""1000 points per 10 minutes: a job that waited 10 minutes beats any fresh job."""

PEER_FACTOR_FLOOR = 0.25
"""The least share of `federated_priority` a forwarding node keeps, however badly it scores."""
PEER_SCORE_AT_FLOOR = -80.0
"""The peer score at which the factor reaches its floor (the gossip graylist threshold)."""


def peer_factor(peer_score: float) -> float:
    """1 for a forwarding node scoring >= 0, falling linearly to 0.25 at a score <= -80."""
    if not peer_score < 0:  # also catches NaN: an unknown score is not held against a peer
        return 1.0
    if peer_score <= PEER_SCORE_AT_FLOOR:
        return PEER_FACTOR_FLOOR
    return 1.0 - (1.0 - PEER_FACTOR_FLOOR) * (peer_score / PEER_SCORE_AT_FLOOR)


def federated_priority(params: TrustParams, peer_score: float) -> float:
    """Queue priority of a job forwarded by a node with this peer score:
    ``params.federated_priority * peer_factor(peer_score)`` (400, down to 100 by default)."""
    return params.federated_priority * peer_factor(peer_score)


@dataclass(slots=True)
class _Entry:
    job: Job
    key: float
    seq: int


class HostQueue:
    """The queued jobs of one GPU host, best first."""

    def __init__(self, aging_per_s: float = DEFAULT_AGING_PER_S) -> None:
        if not aging_per_s >= 0:
            raise ValueError("aging_per_s must be >= 0")
        self.aging_per_s = aging_per_s
        self._heap: list[tuple[float, int, str]] = []
        self._entries: dict[str, _Entry] = {}
        self._seq = 0
        self._cost = 0.0
        self._by_task: Counter[str] = Counter()
        self._open_by_task: Counter[str] = Counter()

    def effective_priority(self, job: Job, now: float) -> float:
        """The job's priority after aging for the time it has waited."""
        return job.priority + self.aging_per_s * (now - job.queued_at)

    def push(self, job: Job, now: float) -> None:
        """Queue `job`, waiting since `now` (sets `job.queued_at`; pass the old value to keep
        the age of a job moved here from another queue)."""
        if job.job_id in self._entries:
            raise ValueError(f"job {job.job_id} is already in this queue")
        job.queued_at = now
        key = job.priority - self.aging_per_s * now
        self._seq += 1
        self._entries[job.job_id] = _Entry(job, key, self._seq)
        heapq.heappush(self._heap, (-key, self._seq, job.job_id))
        self._cost += job.spec.cost
        self._by_task[job.spec.task] += 1
        if job.spec.host is None:
            self._open_by_task[job.spec.task] += 1

    def peek(self) -> Job | None:
        """The best job, left in the queue."""
        self._drop_stale_top()
        return self._entries[self._heap[0][2]].job if self._heap else None

    def pop(self) -> Job | None:
        """Take the best job out of the queue; None when empty."""
        self._drop_stale_top()
        if not self._heap:
            return None
        _, _, job_id = heapq.heappop(self._heap)
        return self._forget(job_id)

    def find(self, accept: Callable[[Job], bool]) -> Job | None:
        """The best job that `accept` accepts, left in the queue.

        Walks the heap best-first (a heap of heap positions), so it looks only at the jobs
        better than the one it returns, not at the whole queue.
        """
        heap = self._heap
        frontier = [(heap[0], 0)] if heap else []
        while frontier:
            (_, seq, job_id), index = heapq.heappop(frontier)
            entry = self._entries.get(job_id)
            if entry is not None and entry.seq == seq and accept(entry.job):
                return entry.job
            for child in (2 * index + 1, 2 * index + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))
        return None

    def take(self, accept: Callable[[Job], bool]) -> Job | None:
        """Remove and return the best job that `accept` accepts."""
        # Usually the best job is accepted: pop it rather than walk the heap and leave a
        # stale entry on top for the next call to skip.
        self._drop_stale_top()
        heap = self._heap
        if heap:
            job = self._entries[heap[0][2]].job
            if accept(job):
                heapq.heappop(heap)
                return self._forget(job.job_id)
        job = self.find(accept)
        if job is not None:
            self.remove(job.job_id)
        return job

    def remove(self, job_id: str) -> Job | None:
        """Take this job out of the queue (lazily); None when it is not queued here."""
        if job_id not in self._entries:
            return None
        job = self._forget(job_id)
        # Stale heap entries cost memory and pop time; rebuild once they outnumber live ones.
        if len(self._heap) > 2 * len(self._entries) + 32:
            self._heap = [(-e.key, e.seq, key) for key, e in self._entries.items()]
            heapq.heapify(self._heap)
        return job

    def count(self, task: str, *, open_only: bool = False) -> int:
        """Queued jobs for `task`; with `open_only`, only those not pinned to a host (the
        ones another host may take), so callers skip a queue without walking it."""
        return (self._open_by_task if open_only else self._by_task)[task]

    @property
    def total_cost(self) -> float:
        """Sum of the queued jobs' cost estimates (the host's backlog)."""
        return self._cost

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._entries

    def __iter__(self) -> Iterator[Job]:
        """The queued jobs, best first (for dashboards; O(n log n))."""
        ordered = sorted(self._entries.values(), key=lambda e: (-e.key, e.seq))
        return iter([e.job for e in ordered])

    def _forget(self, job_id: str) -> Job:
        entry = self._entries.pop(job_id)
        spec = entry.job.spec
        self._cost = self._cost - spec.cost if self._entries else 0.0
        _decrement(self._by_task, spec.task)
        if spec.host is None:
            _decrement(self._open_by_task, spec.task)
        return entry.job

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap:
            _, seq, job_id = heap[0]
            entry = self._entries.get(job_id)
            if entry is not None and entry.seq == seq:
                return
            heapq.heappop(heap)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


__all__ = [
    "DEFAULT_AGING_PER_S",
    "PEER_FACTOR_FLOOR",
    "PEER_SCORE_AT_FLOOR",
    "HostQueue",
    "federated_priority",
    "peer_factor",
]
