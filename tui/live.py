"""Keeping the dashboard live: one snapshot of a node per refresh, reconnect backoff, and
the jobs/min and p50 latency series behind the overview's sparklines.

`fetch_snapshot` asks the node for everything the tabs show, concurrently, each request
with its own timeout; a part the node lacks (HTTP 404) or refuses becomes `Unavailable`
with the reason, so one missing endpoint never blanks the others. Only an unreachable node
fails the whole snapshot. `Backoff` and `ThroughputHistory` are pure: time is passed in.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lightbox_node.tui.client import NodeClient, NodeError, NotAvailable
from lightbox_node.tui.models import (
    Host,
    JobList,
    MetricSamples,
    NodeCounters,
    NodeStatus,
    Peer,
    QueueView,
    Registry,
    TaskSchema,
    UserTrust,
)

T = TypeVar("T")

LATENCY_FAMILY = "lightbox_job_latency_seconds_bucket"
EVENTS_FAMILY = "lightbox_job_events_total"


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why a part of the snapshot is missing, in words for the screen."""

    reason: str
    not_found: bool = False


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What the jobs tab asks the node for (and filters by)."""

    state: str | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """Everything the tabs show, as one node answered it at `at`."""

    at: float
    status: NodeStatus
    counters: NodeCounters | Unavailable
    metrics: MetricSamples | Unavailable
    peers: tuple[Peer, ...] | Unavailable
    hosts: tuple[Host, ...] | Unavailable
    queues: QueueView | Unavailable
    jobs: JobList | Unavailable
    users: tuple[UserTrust, ...] | Unavailable
    tasks: tuple[TaskSchema, ...] | Unavailable | None = None
    """None when this refresh did not ask (the task list is refreshed less often)."""
    registry: Registry | Unavailable | None = None
    job_filter: JobFilter = field(default_factory=JobFilter)


async def _part(call: Awaitable[T]) -> T | Unavailable:
    try:
        return await call
    except NotAvailable as exc:
        return Unavailable(str(exc), not_found=True)
    except NodeError as exc:
        return Unavailable(str(exc))


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


async def fetch_snapshot(
    client: NodeClient,
    now: float,
    *,
    job_filter: JobFilter = JobFilter(),
    slow_parts: bool = True,
) -> NodeSnapshot:
    """One refresh. Raises `NodeUnreachable` only if the node's status cannot be read."""
    status = await client.status()

    async def listed(call: Awaitable[list[Any]]) -> Any:
        return _tuple(await _part(call))

    parts: list[Awaitable[Any]] = [
        _part(client.counters()),
        _part(client.metrics()),
        listed(client.peers()),
        listed(client.hosts()),
        _part(client.queues()),
        _part(client.jobs(state=job_filter.state, user=job_filter.user)),
        listed(client.users()),
    ]
    if slow_parts:
        parts += [listed(client.tasks()), _part(client.registry())]
    # A part that times out shows as unavailable in its tab; if the node itself went away,
    # the next refresh's status says so.
    results = await asyncio.gather(*parts)
    counters, metrics, peers, hosts, queues, jobs, users, *slow = results
    tasks, registry = slow if slow else (None, None)
    return NodeSnapshot(
        at=now,
        status=status,
        counters=counters,
        metrics=metrics,
        peers=peers,
        hosts=hosts,
        queues=queues,
        jobs=jobs,
        users=users,
        tasks=tasks,
        registry=registry,
        job_filter=job_filter,
    )


class Backoff:
    """Delays between reconnection attempts: `first`, doubling up to `cap`; reset on success."""

    def __init__(self, first_s: float = 1.0, cap_s: float = 16.0, factor: float = 2.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.factor = factor
        self._next = first_s
        self.failures = 0

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.cap_s, self._next * self.factor)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self._next = self.first_s
        self.failures = 0


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    done: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count)


class ThroughputHistory:
    """Jobs finished per minute and the median latency of those jobs, over a sliding window.

    Fed the node's cumulative counters at each refresh (jobs done since start, the latency
    histogram's buckets); each point compares the newest sample with the oldest one still in
    the window, so the series survives missed refreshes. A counter that went backwards means
    the node restarted: the history starts again.
    """

    def __init__(self, window_s: float = 60.0, points: int = 120) -> None:
        self.window_s = window_s
        self._samples: deque[_Sample] = deque()
        self.jobs_per_min: deque[float] = deque(maxlen=points)
        self.p50_latency_s: deque[float] = deque(maxlen=points)

    def add(
        self, at: float, done_total: float, buckets: Sequence[tuple[float, float]] = ()
    ) -> None:
        sample = _Sample(at, done_total, tuple(sorted(buckets)))
        if self._samples and (done_total < self._samples[-1].done or at <= self._samples[-1].at):
            self._samples.clear()
        self._samples.append(sample)
        while len(self._samples) > 2 and self._samples[1].at <= at - self.window_s:
            self._samples.popleft()
        oldest = self._samples[0]
        span = at - oldest.at
        rate = (done_total - oldest.done) * 60.0 / span if span > 0 else 0.0
        self.jobs_per_min.append(max(0.0, rate))
        self.p50_latency_s.append(median_of_buckets(oldest.buckets, sample.buckets))

    @classmethod
    def counts_of(cls, metrics: MetricSamples) -> tuple[float | None, list[tuple[float, float]]]:
        """(jobs done since start, latency buckets) from a node's metrics."""
        done = metrics.value(EVENTS_FAMILY, event="done")
        buckets = []
        for labels, value in metrics.family(LATENCY_FAMILY):
            bound = labels.get("le", "")
            try:
                buckets.append((float(bound.replace("+Inf", "inf")), value))
            except ValueError:
                continue
        return done, buckets


def median_of_buckets(
    before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]]
) -> float:
    """The median of what a cumulative histogram gained between two readings, interpolated
    within its bucket as Prometheus' histogram_quantile does; 0 when nothing was added."""
    old = dict(before)
    gained = [(bound, count - old.get(bound, 0.0)) for bound, count in after]
    if not gained or gained[-1][1] <= 0:
        return 0.0
    half = gained[-1][1] / 2
    counts = [count for _, count in gained]
    index = bisect.bisect_left(counts, half)
    bound, count = gained[index]
    lower_bound, lower_count = gained[index - 1] if index > 0 else (0.0, 0.0)
    if bound == float("inf"):
        return lower_bound
    if count == lower_count:
        return bound
    return lower_bound + (bound - lower_bound) * (half - lower_count) / (count - lower_count)
