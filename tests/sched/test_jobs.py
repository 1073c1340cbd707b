"""Jobs: snapshots that another thread may read, and what a done job looks like."""

from __future__ import annotations

import pytest

from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import Attempt, Job, JobError, JobSpec, JobState

HOST = PeerId(bytes([1]) * 32)


def running_job() -> Job:
    spec = JobSpec("j-" + "0" * 24, "alice", HOST, "noop", {}, 1.0, 0.0)
    job = Job(spec, state=JobState.RUNNING, priority=500.0, queued_at=1.0)
    job.attempts.append(Attempt(1, HOST, 2.0, 30.0))
    job.faults.append("an earlier fault")
    return job


def test_a_snapshot_equals_the_job_and_does_not_follow_its_changes() -> None:
    job = running_job()
    copy = job.snapshot()
    assert copy == job and copy is not job
    job.complete(["sha256-r"], 9.0)
    job.faults.append("later")
    assert copy.state is JobState.RUNNING and copy.attempts[0].outcome is None
    assert copy.results == [] and copy.faults == ["an earlier fault"]


def test_complete_ends_the_job_done_with_its_results_and_attempt_outcome() -> None:
    job = running_job()
    job.complete(["sha256-a", "sha256-b"], 9.0)
    assert job.state is JobState.DONE and job.finished_at == 9.0 and job.progress == 1.0
    assert job.results == ["sha256-a", "sha256-b"] and job.attempts[-1].outcome == "done"


def test_a_job_never_dispatched_or_already_ended_cannot_complete() -> None:
    queued = Job(running_job().spec)
    with pytest.raises(JobError):
        queued.complete([], 1.0)
    done = running_job()
    done.complete([], 1.0)
    with pytest.raises(JobError):
        done.complete([], 2.0)
