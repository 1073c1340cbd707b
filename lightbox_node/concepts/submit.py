"""Finished fine-tune jobs offer their adapters to the registry, and retry until it answers.

The queue node that ran a `finetune` job holds its result, the adapter blob; it submits the
blob's id for the job's concept (`submit_adapter`), weighted by the number of instance
photos, so a merge gives more say to adapters trained on more evidence. The registry records
the submitting node as the adapter's proposer (`by`), which is where the merger fetches it.

Crash-safe by repetition: the queue service calls `job_finished` for every finished job it
restores from its journal too, and submitting the same adapter twice is a no-op in the
registry. A refused submission (a malformed concept, say) is logged and dropped; an
unreachable registry is retried with backoff for as long as the node runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from lightbox_node.errors import LightboxError
from lightbox_node.raft.service import RegistryRefused
from lightbox_node.sched.jobs import Job, JobState

log = logging.getLogger("lightbox.concepts")

FINETUNE_TASK = "finetune"
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
MAX_WAITING = 1024
"""Submissions waiting for the registry at once; more are dropped (a restart redoes them)."""

Write = Callable[[Any], Awaitable[Any]]


def adapter_command(job: Job, at_ms: int) -> dict[str, Any] | None:
    """The registry command for a finished job, or None if it offers no adapter."""
    if job.spec.task != FINETUNE_TASK or job.state is not JobState.DONE or not job.results:
        return None
    inputs = job.spec.inputs
    concept = inputs.get("concept")
    if type(concept) is not str:
        return None
    photos = inputs.get("instance_images")
    weight = len(photos) if isinstance(photos, list | tuple) and photos else 1
    metadata: dict[str, Any] = {"job": job.job_id[:128]}
    token = inputs.get("concept_token")
    if type(token) is str:
        metadata["token"] = token[:64]
    if job.spec.host is not None:
        metadata["host"] = str(job.spec.host)
    return {
        "op": "submit_adapter",
        "concept": concept,
        "adapter": job.results[0],
        "weight": weight,
        "base": None,
        "at": at_ms,
        "metadata": metadata,
    }


class AdapterSubmitter:
    """Takes finished jobs from the queue service; sends their adapters to the registry."""

    def __init__(
        self,
        write: Write,
        *,
        on_submitted: Callable[[str], None] = lambda blob: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._write = write
        self._on_submitted = on_submitted
        self._wall = wall_clock
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](MAX_WAITING)
        self.submitted = 0

    def job_finished(self, job: Job) -> None:
        """The queue service's `on_finished` hook (called in the trio thread)."""
        command = adapter_command(job, int(self._wall() * 1000))
        if command is None:
            return
        try:
            self._send.send_nowait(command)
        except trio.WouldBlock:
            log.warning("too many adapters waiting for the registry; one is left for a restart")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            async for command in self._receive:
                nursery.start_soon(self._submit, command)

    async def _submit(self, command: dict[str, Any]) -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                answer = await self._write(command)
            except RegistryRefused as exc:
                log.error("adapter refused", extra={"concept": command["concept"], "why": str(exc)})
                return
            except LightboxError as exc:
                log.info(
                    "registry unreachable; adapter submission retried",
                    extra={"concept": command["concept"], "in_s": delay, "why": str(exc)},
                )
                await trio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
                continue
            if answer.get("ok"):
                self.submitted += 1
                self._on_submitted(command["adapter"])
                log.info(
                    "adapter submitted",
                    extra={"concept": command["concept"], "adapter": command["adapter"]},
                )
            else:
                log.error(
                    "adapter refused",
                    extra={"concept": command["concept"], "why": str(answer.get("error"))},
                )
            return


__all__ = ["AdapterSubmitter", "adapter_command"]
