"""The Python API for jobs on a queue node: submit, watch progress, fetch results, cancel.

The HTTP API, the dashboard and the tests all go through this; it adds nothing the queue
service does not check itself, it only fixes the user on whose behalf it acts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from lightbox_node.dispatch.queue import JobView, QueueService
from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import JobError


class JobClient:
    """Jobs of one user on one queue node."""

    def __init__(self, service: QueueService, user: str) -> None:
        if not user or user.startswith("peer:"):
            raise ValueError("a local user name is non-empty and does not start with 'peer:'")
        self.service = service
        self.user = user

    async def submit(
        self, task: str, inputs: Mapping[str, Any] | None = None, *, host: PeerId | None = None
    ) -> JobView:
        """Returns once the job is journaled; raises with every problem if it is refused."""
        return await self.service.submit(self.user, task, inputs or {}, host=host)

    def watch(self, job_id: str) -> AsyncIterator[JobView]:
        self._check_owner(job_id)
        return self.service.watch(job_id)

    async def wait(self, job_id: str) -> JobView:
        """The job's final state (done, faulted, cancelled or expired)."""
        last: JobView | None = None
        async for view in self.watch(job_id):
            last = view
        assert last is not None  # watch yields at least the current state
        return last

    async def result(self, job_id: str) -> dict[str, bytes]:
        self._check_owner(job_id)
        return dict(await self.service.result(job_id))

    async def cancel(self, job_id: str) -> JobView:
        self._check_owner(job_id)
        return await self.service.cancel(job_id)

    def job(self, job_id: str) -> JobView:
        self._check_owner(job_id)
        return self.service.job(job_id)

    def _check_owner(self, job_id: str) -> None:
        if self.service.owner(job_id) != self.user:
            # Same message as for an unknown id: job ids of others are not confirmed.
            raise JobError(f"no job {job_id} of user {self.user!r}")
