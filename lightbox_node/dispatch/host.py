"""The GPU host side of dispatch: accept pushed jobs, run them, report progress and results.

A host is attached to one or more queue nodes (over peer links, or in-process when the node
also has the queue role). It tells each what it runs and how many jobs it runs at once
(`hello`, then `slots` when that changes: 0 drains the host). The queue node keeps track of
what it has in flight here and pushes one job more than the slots (prefetch), so the next
job is already here when one ends and the GPU never idles. Jobs run as trio tasks; a model
runner moves its heavy work to a worker thread itself (`RunContext.run_sync`), so the node
stays responsive. Image inputs arrive as blob ids; the `images` resolver fetches their bytes
(a host without one faults jobs that have image inputs).
Results go back in `done`: inline while they fit one link message, else the largest outputs
are put in this node's blob store (`store_blob`, which works in a worker thread) and `done`
names them by blob id and size; the queue node fetches them from here.
Everything a queue sends is checked again here: the queue is another node, so its messages
are hostile input.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from lightbox_node.dispatch.protocol import (
    MAX_OUTPUT_NAME,
    MAX_OUTPUTS,
    MAX_PROGRESS_MESSAGE,
    MAX_REASON,
    MAX_RESULT_BYTES,
    BlobRef,
    Cancel,
    Done,
    Fault,
    Hello,
    Progress,
    Run,
    Slots,
    Started,
    blob_indices,
    encode,
    parse_queue_message,
)
from lightbox_node.dispatch.test_tasks import (
    NO_IMAGE_RESOLVER,
    ConceptResolver,
    ImageResolver,
    RunContext,
    TaskFailed,
    TaskRunner,
)
from lightbox_node.errors import LightboxError, WireError
from lightbox_node.identity import PeerId
from lightbox_node.store.blob_id import BlobId
from lightbox_node.tasks import (
    ImageInput,
    ImageListInput,
    InvalidJobInput,
    MaskInput,
    TaskSchema,
    validate_inputs,
)

log = logging.getLogger("lightbox.gpu")

Port = Callable[[Any], bool]
"""Sends one "jobs" body to a queue node; False if it could not be queued."""

PROGRESS_INTERVAL_S = 0.1
"""At most ten progress messages a second per job; the last one always goes out."""

ResultStore = Callable[[bytes], Awaitable[BlobId | str]]
"""Puts one output's bytes in this node's blob store and returns its id. It hashes, writes
and fsyncs megabytes, so it does that in a worker thread, never in the trio thread
(`trio.to_thread.run_sync(store.put, data)`)."""


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _output_problem(outputs: Any) -> str | None:
    """What is wrong with a runner's outputs (a runner bug), or None if a `done` can carry them."""
    if not isinstance(outputs, list | tuple) or len(outputs) > MAX_OUTPUTS:
        return f"its outputs as {type(outputs).__name__}, not a list of at most {MAX_OUTPUTS}"
    for item in outputs:
        if not isinstance(item, list | tuple) or len(item) != 2:
            return "an output that is not a (name, bytes) pair"
        name, data = item
        if not isinstance(name, str) or len(name) > MAX_OUTPUT_NAME:
            return f"an output name that is not text of at most {MAX_OUTPUT_NAME} characters"
        if type(data) is not bytes:
            return f"output {name!r} as {type(data).__name__}, not bytes"
    return None


@dataclass(slots=True)
class _Job:
    queue: PeerId
    run: Run
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    cancelled: bool = False


def _has_image_inputs(schema: TaskSchema, inputs: Mapping[str, Any]) -> bool:
    return any(
        isinstance(spec, ImageInput | MaskInput | ImageListInput) and spec.name in inputs
        for spec in schema.inputs
    )


class GpuHost:
    """Runs the tasks of `runners` for the queue nodes attached with `attach`.

    `images` fetches an image input's bytes by blob id; None (for now, on a host that is not
    also the queue node holding the blobs) faults every job that has image inputs.
    `concepts` resolves a concept name to its current global model through the registry.
    `store_blob` keeps outputs too large to send inline (see `ResultStore`); without it such
    a job faults. A result over `max_result_bytes` faults here rather than being sent, as
    the queue node would refuse it.
    """

    def __init__(
        self,
        runners: Mapping[str, TaskRunner],
        *,
        slots: int = 1,
        prefetch: int = 1,
        on_change: Callable[[], None] = lambda: None,
        images: ImageResolver | None = None,
        concepts: ConceptResolver | None = None,
        store_blob: ResultStore | None = None,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        if slots < 0 or prefetch < 0:
            raise ValueError("a GPU host has at least one slot and a prefetch of zero or more")
        if max_result_bytes <= 0:
            raise ValueError("max_result_bytes must be positive")
        self.runners = dict(runners)
        self.slots = slots
        self.prefetch = prefetch
        self._queues: dict[PeerId, Port] = {}
        self._pending: deque[_Job] = deque()
        self._running: dict[str, _Job] = {}
        self._nursery: trio.Nursery | None = None
        self._on_change = on_change
        self.images = images
        self.concepts = concepts
        self.store_blob = store_blob
        self.max_result_bytes = max_result_bytes
        self.completed = 0
        self.faulted = 0

    # -- what the host offers -----------------------------------------------------------------

    def task_schemas(self) -> list[dict[str, Any]]:
        return [runner.schema.to_wire() for runner in self.runners.values()]

    @property
    def capacity(self) -> int:
        """How many more jobs this host takes now: free slots plus the prefetch allowance."""
        return max(0, self.slots + self.prefetch - len(self._running) - len(self._pending))

    @property
    def queues(self) -> list[PeerId]:
        """The queue nodes this host serves now (advertised in its capability record)."""
        return list(self._queues)

    @property
    def busy_slots(self) -> int:
        return len(self._running)

    # -- queue nodes --------------------------------------------------------------------------

    def attach(self, queue: PeerId, port: Port) -> None:
        self._queues[queue] = port
        port(encode(Hello(self.task_schemas(), self.slots)))
        log.info("attached to queue node", extra={"queue": queue.short})
        self._on_change()

    def detach(self, queue: PeerId) -> None:
        """The queue is gone: its jobs stop (it has re-queued them elsewhere)."""
        if self._queues.pop(queue, None) is None:
            return
        for job in [j for j in self._pending if j.queue == queue]:
            self._pending.remove(job)
        for job in [j for j in self._running.values() if j.queue == queue]:
            job.cancelled = True
            job.scope.cancel()
        log.info("detached from queue node", extra={"queue": queue.short})
        self._on_change()

    def message(self, queue: PeerId, body: Any) -> None:
        port = self._queues.get(queue)
        if port is None:
            return  # not a queue we serve
        try:
            message = parse_queue_message(body)
        except WireError as exc:
            log.info("bad message from queue", extra={"queue": queue.short, "error": str(exc)})
            return
        if isinstance(message, Cancel):
            self._cancel(queue, message)
        else:
            self._accept(queue, port, message)

    def _accept(self, queue: PeerId, port: Port, run: Run) -> None:
        if run.job_id in self._running or any(j.run.job_id == run.job_id for j in self._pending):
            return  # a duplicate push; the first one is already here
        if self.capacity <= 0:
            port(encode(Fault(run.job_id, run.attempt, "host busy: no free slot")))
            return
        self._pending.append(_Job(queue, run))
        self._start_ready()

    def _cancel(self, queue: PeerId, cancel: Cancel) -> None:
        for job in list(self._pending):
            if job.queue == queue and job.run.job_id == cancel.job_id:
                self._pending.remove(job)
        job = self._running.get(cancel.job_id)
        if job is not None and job.queue == queue and job.run.attempt == cancel.attempt:
            job.cancelled = True
            job.scope.cancel()

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            self._start_ready()
            await trio.sleep_forever()

    def _start_ready(self) -> None:
        if self._nursery is None:
            return
        while self._pending and len(self._running) < self.slots:
            job = self._pending.popleft()
            self._running[job.run.job_id] = job
            self._nursery.start_soon(self._run_job, job)

    async def _run_job(self, job: _Job) -> None:
        run = job.run
        port = self._queues.get(job.queue)
        try:
            if port is None:
                return
            outcome = await self._execute(job, port)
            if outcome is not None and job.queue in self._queues:
                port(encode(outcome))
                if isinstance(outcome, Done):
                    self.completed += 1
                else:
                    self.faulted += 1
        finally:
            self._running.pop(run.job_id, None)
            self._start_ready()

    async def _execute(self, job: _Job, port: Port) -> Done | Fault | None:
        run = job.run
        runner = self.runners.get(run.task)
        if runner is None:
            return Fault(run.job_id, run.attempt, f"this host does not run task {run.task!r}")
        try:
            inputs = validate_inputs(runner.schema, run.inputs)
        except InvalidJobInput as exc:
            return Fault(run.job_id, run.attempt, f"inputs refused by the host: {exc}"[:MAX_REASON])
        if self.images is None and _has_image_inputs(runner.schema, inputs):
            return Fault(run.job_id, run.attempt, NO_IMAGE_RESOLVER)
        port(encode(Started(run.job_id, run.attempt)))
        last_sent = -1.0

        def progress(fraction: float, message: str) -> None:
            nonlocal last_sent
            now = time.monotonic()
            if fraction < 1 and now - last_sent < PROGRESS_INTERVAL_S:
                return
            last_sent = now
            fraction = min(1.0, max(0.0, float(fraction)))
            port(
                encode(Progress(run.job_id, run.attempt, fraction, message[:MAX_PROGRESS_MESSAGE]))
            )

        outputs: list[tuple[str, bytes]] | None = None
        failure: str | None = None
        with job.scope:
            job.scope.deadline = trio.current_time() + run.deadline_s
            try:
                outputs = await runner.run(
                    inputs, RunContext(progress, images=self.images, concepts=self.concepts)
                )
            except TaskFailed as exc:
                failure = str(exc) or "the task failed"
            except LightboxError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug in a runner must not take the host down
                log.exception("task crashed", extra={"task": run.task, "job": run.job_id})
                failure = f"the task crashed: {type(exc).__name__}: {exc}"
        if job.cancelled:
            return None  # the queue cancelled it (or went away); it expects nothing
        if job.scope.cancelled_caught:
            failure = f"ran past its deadline of {run.deadline_s:g} s"
        if failure is not None:
            return Fault(run.job_id, run.attempt, failure[:MAX_REASON])
        outcome = await self._package(run, outputs)
        return None if job.cancelled else outcome

    async def _package(self, run: Run, outputs: Any) -> Done | Fault:
        """The `done` for a runner's outputs: inline while they fit, the largest as blobs."""
        problem = _output_problem(outputs)
        if problem is not None:
            log.error("task returned bad outputs", extra={"task": run.task, "problem": problem})
            return Fault(run.job_id, run.attempt, f"the task returned {problem}"[:MAX_REASON])
        sizes = [len(data) for _, data in outputs]
        if sum(sizes) > self.max_result_bytes:
            return Fault(
                run.job_id,
                run.attempt,
                f"the result is {_mib(sum(sizes))}, over the {_mib(self.max_result_bytes)} "
                "a queue node takes from one job",
            )
        chosen = sorted(blob_indices(sizes))
        if not chosen:
            return Done(run.job_id, run.attempt, [(name, data) for name, data in outputs])
        store = self.store_blob
        if store is None:
            return Fault(
                run.job_id,
                run.attempt,
                f"the result ({_mib(sum(sizes))}) is too large to send inline, and this host "
                "has no blob store to send it from",
            )
        try:
            ids = [BlobId.parse(str(await store(outputs[i][1]))) for i in chosen]
        except (LightboxError, OSError) as exc:
            log.error("cannot store a result", extra={"job": run.job_id, "error": str(exc)})
            return Fault(
                run.job_id, run.attempt, f"the host could not store the result: {exc}"[:MAX_REASON]
            )
        except Exception as exc:  # a bug in the store must not take the host down
            log.exception("storing a result crashed", extra={"job": run.job_id})
            why = f"the host could not store the result: {type(exc).__name__}: {exc}"
            return Fault(run.job_id, run.attempt, why[:MAX_REASON])
        refs = dict(zip(chosen, ids, strict=True))
        return Done(
            run.job_id,
            run.attempt,
            [
                (name, BlobRef(refs[i], len(data)) if i in refs else data)
                for i, (name, data) in enumerate(outputs)
            ],
        )

    def set_slots(self, slots: int) -> None:
        """Change how many jobs run at once; 0 drains the host (running jobs finish)."""
        if slots < 0:
            raise ValueError("slots must be zero or more")
        self.slots = slots
        body = encode(Slots(slots))
        for port in self._queues.values():
            port(body)
        self._start_ready()
