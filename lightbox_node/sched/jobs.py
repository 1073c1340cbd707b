"""Jobs: what a user asked for, where it stands, and what came of it.

`JobSpec` is immutable once accepted (it is what the journal writes before the job is
acknowledged); `Job` is the scheduler's mutable view of one job's life. States move only
along `TRANSITIONS`: a job ends DONE, FAULTED (after too many faults), CANCELLED or EXPIRED.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightbox_node.errors import LightboxError
from lightbox_node.identity import PeerId

JOB_ID_PATTERN = re.compile(r"j-[0-9a-f]{24}")


def new_job_id(token_hex: Any = secrets.token_hex) -> str:
    """A random job id; unguessable, so knowing one is not a way to find others."""
    return "j-" + token_hex(12)


class JobError(LightboxError):
    """A job could not be accepted or changed; the message says why and what to do."""


class UnknownJob(JobError):
    """No job with this id is known here (never was, or it was purged after retention)."""


class JobState(enum.Enum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    DONE = "done"
    FAULTED = "faulted"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.DONE, JobState.FAULTED, JobState.CANCELLED, JobState.EXPIRED})

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.DISPATCHED, JobState.CANCELLED, JobState.EXPIRED, JobState.FAULTED}
    ),
    # Back to QUEUED when the host disconnects, misses the deadline or reports a fault.
    JobState.DISPATCHED: frozenset(
        {JobState.RUNNING, JobState.QUEUED, JobState.DONE, JobState.FAULTED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.QUEUED, JobState.DONE, JobState.FAULTED, JobState.CANCELLED}
    ),
    JobState.DONE: frozenset(),
    JobState.FAULTED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.EXPIRED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class JobSpec:
    """An accepted job request, as journaled before it is acknowledged.

    `owner` is the local user id for jobs submitted here, or `peer:<peer id>` for a job
    federated from another queue node (whose users stay private to that node). `host` is the
    GPU host the user chose, or None for any host offering `task`. `inputs` are already
    validated against the task schema and hold only plain msgpack values.
    """

    job_id: str
    owner: str
    origin: PeerId
    task: str
    inputs: Mapping[str, Any]
    cost: float
    submitted_at: float
    host: PeerId | None = None
    federated_from: PeerId | None = None
    """The queue node that forwarded this job here, for a federated job."""
    remote_job_id: str | None = None
    """The forwarding node's own id for this job (opaque here)."""

    @property
    def is_federated(self) -> bool:
        return self.federated_from is not None


@dataclass(slots=True)
class Attempt:
    """One try of a job on one host."""

    number: int
    host: PeerId
    dispatched_at: float
    deadline: float
    outcome: str | None = None


@dataclass(slots=True)
class Job:
    """The scheduler's view of one job."""

    spec: JobSpec
    state: JobState = JobState.QUEUED
    priority: float = 0.0
    queued_at: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    progress: float = 0.0
    progress_message: str = ""
    results: list[str] = field(default_factory=list)
    """Result blob ids (`sha256-…`), in the order the task's outputs declare."""
    finished_at: float | None = None
    error: str | None = None

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def snapshot(self) -> Job:
        """A copy that another thread may read while this one goes on changing the job
        (its attempts, faults and results are copied too; the spec is immutable)."""
        return Job(
            spec=self.spec,
            state=self.state,
            priority=self.priority,
            queued_at=self.queued_at,
            attempts=[
                Attempt(a.number, a.host, a.dispatched_at, a.deadline, a.outcome)
                for a in self.attempts
            ],
            faults=list(self.faults),
            progress=self.progress,
            progress_message=self.progress_message,
            results=list(self.results),
            finished_at=self.finished_at,
            error=self.error,
        )

    def complete(self, results: list[str], now: float) -> None:
        """End the job DONE with these result blob ids; its current attempt ends "done".

        The one place that says what a done job looks like, so that a queue node can
        journal a copy of a job completed this way before the scheduler completes the job.
        """
        attempt = self.current_attempt
        if attempt is None:
            raise JobError(f"job {self.job_id} was never dispatched, so it cannot be done")
        self.move_to(JobState.DONE)
        attempt.outcome = "done"
        self.results = list(results)
        self.progress = 1.0
        self.finished_at = now

    def move_to(self, state: JobState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise JobError(f"job {self.job_id} cannot go from {self.state.value} to {state.value}")
        self.state = state
