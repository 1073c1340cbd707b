"""The queue node side of dispatch: accept, journal, push to hosts, fan out progress.

The scheduler core decides; this shell carries its actions out. Two rules make it durable:
a job is in the SQLite journal before `submit` returns (a group commit, so many concurrent
submissions share one fsync), and a job's final state is in the journal before anyone is
told, so a crash can lose nothing that was acknowledged and never report a result twice.
Progress is pushed to watchers as it comes (no polling anywhere); watchers always see the
latest state, so a slow watcher misses intermediate progress, never the outcome.
A host's result arrives inline or as blob references (see `protocol`); referenced blobs are
fetched from the host (`fetch_blob`, verified by the blob exchange) and found complete in
this node's store before the job is called done; a fetch that fails faults the attempt.
The journal writer stores a result and journals its job done in one worker-thread call,
so a finished job costs one trip to a worker thread, not two; small results are also kept
in memory for a while, since their owner usually fetches them at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from lightbox_node.dispatch.protocol import (
    MAX_REASON,
    MAX_RESULT_BYTES,
    BlobRef,
    Done,
    Fault,
    Hello,
    OutputData,
    Progress,
    Run,
    Slots,
    Started,
    blob_indices,
    encode,
    parse_host_message,
)
from lightbox_node.dispatch.protocol import Cancel as CancelMessage
from lightbox_node.errors import BlobNotFound, LightboxError, StoreError, WireError
from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import Job, JobError, JobSpec, JobState, UnknownJob, new_job_id
from lightbox_node.sched.scheduler import CancelOnHost, Dispatch, JobChanged, Scheduler
from lightbox_node.store import BlobId, BlobStore, Database
from lightbox_node.store.journal import JobJournal, TrustStore
from lightbox_node.tasks import InvalidJobInput, TaskSchema, estimate_cost, validate_inputs
from lightbox_node.tasks.errors import SchemaError

log = logging.getLogger("lightbox.queue")

Port = Callable[[Any], bool]

JOURNAL_IDLE_FLUSH_S = 0.05
"""Non-final updates (progress, dispatch) are journaled in batches at most this late."""

PURGE_EVERY_S = 600.0

RECENT_RESULTS_BYTES = 16 << 20
"""Bytes of recently stored inline results kept in memory, so fetching them soon after the
job ends (or relaying them to the node that federated the job) needs no disk read."""

BlobFetcher = Callable[[BlobId, list[PeerId], int], Awaitable[object]]
"""Makes a blob present in this node's store, fetched from the given peers, refusing one
bigger than the given bytes (`BlobExchange.fetch(blob_id, peers, max_bytes=...)`); raises
(BlobUnavailable, StoreError) when it cannot."""


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


class NoSuchTask(JobError):
    """No attached GPU host offers the task (or the chosen host does not)."""


@dataclass(frozen=True, slots=True)
class JobView:
    """A read-only snapshot of a job for clients (the HTTP API, the dashboard, tests)."""

    job_id: str
    owner: str
    task: str
    state: str
    progress: float
    progress_message: str
    attempts: int
    faults: tuple[str, ...]
    results: tuple[str, ...]
    error: str | None
    host: str | None
    submitted_at: float
    finished_at: float | None

    @property
    def is_final(self) -> bool:
        return self.state in ("done", "faulted", "cancelled", "expired")


def output_names(schema: TaskSchema | None, count: int) -> list[str]:
    """Names for `count` results: one per declared output, an image list taking the rest."""
    names: list[str] = []
    outputs = list(schema.outputs) if schema is not None else []
    for index, output in enumerate(outputs):
        left = count - len(names)
        later = len(outputs) - index - 1
        take = max(1, left - later) if output.type == "image_list" else 1
        names.extend(
            output.name if i == 0 else f"{output.name}[{i}]" for i in range(min(take, left))
        )
    names.extend(f"output{i}" for i in range(len(names), count))
    return names


def _account(job: Job) -> str:
    """The trust account a job is charged to (a forwarding node's, for a federated job)."""
    origin = job.spec.federated_from
    return job.spec.owner if origin is None else f"peer:{origin}"


def _copy(job: Job) -> Job:
    """A snapshot the journal thread can read while the trio thread changes the original."""
    return job.snapshot()


def view_of(job: Job) -> JobView:
    attempt = job.current_attempt
    return JobView(
        job_id=job.job_id,
        owner=job.spec.owner,
        task=job.spec.task,
        state=job.state.value,
        progress=job.progress,
        progress_message=job.progress_message,
        attempts=len(job.attempts),
        faults=tuple(job.faults),
        results=tuple(job.results),
        error=job.error,
        host=str(attempt.host) if attempt else None,
        submitted_at=job.spec.submitted_at,
        finished_at=job.finished_at,
    )


@dataclass(slots=True)
class _Host:
    port: Port
    schemas: dict[str, TaskSchema]
    free_slots: int = 0
    pinned_only: bool = False
    fetch_from: tuple[PeerId, ...] = ()
    """Where its result blobs are fetched from: the host itself, or the queue node that
    relays a federated host's results."""


@dataclass(frozen=True, slots=True)
class _Collecting:
    """A `done` whose result is being stored or fetched, for one attempt on one host."""

    host: PeerId
    attempt: int
    scope: trio.CancelScope


def _is_in_flight(job: Job, host: PeerId, attempt: int) -> bool:
    current = job.current_attempt
    return (
        job.state in (JobState.DISPATCHED, JobState.RUNNING)
        and current is not None
        and current.number == attempt
        and current.host == host
    )


@dataclass(slots=True)
class _PendingAccept:
    job: Job
    written: trio.Event
    error: BaseException | None = None


@dataclass(slots=True)
class _PendingResult:
    """A `done` whose result the journal writer stores, journaling the job done with it."""

    done: Done
    collecting: _Collecting
    snapshot: Job | None = None
    """A copy of the job, completed in the worker thread with the stored result's ids."""
    outcome: list[str] | str = "the result was not stored"
    """The result blob ids, or why the attempt faults."""


class QueueService:
    """A queue node's jobs: submission, dispatch to attached hosts, journal, watchers.

    `fetch_blob` brings a host's result blobs into `blobs` (see `BlobFetcher`); without it
    only blobs already there are taken (a host sharing this node's store). A result over
    `max_result_bytes` (inline and referenced together) faults the attempt unfetched.
    """

    def __init__(
        self,
        peer_id: PeerId,
        scheduler: Scheduler,
        database: Database,
        blobs: BlobStore,
        *,
        retention_s: float = 24 * 3600,
        wall_clock: Callable[[], float] = time.time,
        fetch_blob: BlobFetcher | None = None,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        if max_result_bytes <= 0:
            raise ValueError("max_result_bytes must be positive")
        self.peer_id = peer_id
        self.scheduler = scheduler
        self.blobs = blobs
        self.retention_s = retention_s
        self.max_result_bytes = max_result_bytes
        self._fetch_blob = fetch_blob or self._present_only
        self._collecting: dict[str, _Collecting] = {}
        self._database = database
        self._journal = JobJournal(database)
        self._trust_store = TrustStore(database)
        self._db_lock = trio.Lock()
        self._wall = wall_clock
        self._hosts: dict[PeerId, _Host] = {}
        self.drained: set[PeerId] = set()
        """Hosts an operator drained: they finish their jobs but get no new ones."""
        self._offered: dict[str, TaskSchema] | None = None
        """`offered_tasks`, computed once per change of hosts (it is read on every submit)."""
        self._watchers: dict[str, trio.Event] = {}
        self._accepts: list[_PendingAccept] = []
        self._results: list[_PendingResult] = []
        self._updates: dict[str, Job] = {}
        self._done_journaled: set[str] = set()
        """Jobs just completed whose done state the journal holds already (see `_write`)."""
        self._not_journaled: set[str] = set()
        """Jobs refused because their acceptance could not be journaled: none of their later
        changes is written (there is no row to change)."""
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._recent_bytes = 0
        self._delivered: dict[str, float] = {}
        self._journal_wake = trio.Event()
        self._journal_urgent = trio.Event()
        self._tick_wake = trio.Event()
        self._tick_at = -math.inf
        """When the ticker wakes by itself; an earlier deadline has to wake it."""
        self._task_nursery: trio.Nursery | None = None
        self.find_host: Callable[[PeerId], bool] = lambda host: False
        """Called for a chosen host not attached here; federation makes it reachable."""
        self.on_finished: Callable[[Job], None] = lambda job: None
        """Called with a copy of each job once its final state is journaled, and for every
        finished job restored from the journal (so a follow-up lost in a crash is redone;
        follow-ups must be safe to repeat)."""

    # -- life cycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore from the journal, then serve until cancelled."""
        await self._restore()
        async with trio.open_nursery() as nursery:
            self._task_nursery = nursery
            nursery.start_soon(self._journal_writer)
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._purger)
            task_status.started()
            await trio.sleep_forever()

    async def _restore(self) -> None:
        async with self._db_lock:
            since = self._wall() - self.retention_s
            finished, jobs, trust_rows = await trio.to_thread.run_sync(
                lambda: (
                    self._journal.load_finished_since(since),
                    self._journal.load_unfinished(),
                    self._trust_store.load(),
                )
            )
        self.scheduler.ledger.load(trust_rows)
        for job in finished + jobs:  # finished ones only for lookup, until purged
            self._apply(self.scheduler.restore(job, self._wall()))
        for job in finished:
            self._finished(job)
        if jobs:
            log.info("restored unfinished jobs from the journal", extra={"jobs": len(jobs)})

    # -- hosts --------------------------------------------------------------------------------

    def attach_host(
        self,
        host: PeerId,
        port: Port,
        *,
        pinned_only: bool = False,
        fetch_from: Sequence[PeerId] | None = None,
    ) -> None:
        """A GPU host can now reach us; it says what it runs with `hello`.

        `pinned_only` marks a host of another queue node (federation): only jobs whose
        owners chose it go there. `fetch_from` is who holds its result blobs (default: the
        host itself; for a federated host, the queue node relaying its results).
        """
        holders = tuple(fetch_from) if fetch_from is not None else (host,)
        self._hosts[host] = _Host(port, {}, pinned_only=pinned_only, fetch_from=holders)
        self._offered = None

    def detach_host(self, host: PeerId) -> None:
        self._offered = None
        if self._hosts.pop(host, None) is not None:
            log.info("host gone", extra={"host": host.short})
            self._apply(self.scheduler.host_gone(host, self._wall()))

    def host_message(self, host: PeerId, body: Any) -> None:
        """A "jobs" body from `host`; malformed ones are dropped (and reported by the caller)."""
        entry = self._hosts.get(host)
        if entry is None:
            return
        try:
            message = parse_host_message(body)
        except WireError as exc:
            log.info("bad message from host", extra={"host": host.short, "error": str(exc)})
            return
        now = self._wall()
        match message:
            case Hello(tasks, free):
                entry.schemas = self._read_schemas(host, tasks)
                self._offered = None
                entry.free_slots = free
                self._announce(host, entry, now)
            case Slots(free):
                entry.free_slots = free
                self._announce(host, entry, now)
            case Started(job_id, attempt):
                self._apply(self.scheduler.job_started(job_id, host, attempt, now))
            case Progress(job_id, attempt, fraction, text):
                self._apply(self.scheduler.job_progress(job_id, host, attempt, fraction, text, now))
            case Fault(job_id, attempt, reason):
                self._apply(self.scheduler.job_faulted(job_id, host, attempt, reason, now))
            case Done():
                self._collect(host, message, entry.fetch_from)

    def _announce(self, host: PeerId, entry: _Host, now: float) -> None:
        self._apply(
            self.scheduler.host_available(
                host,
                frozenset(entry.schemas),
                0 if host in self.drained else entry.free_slots,
                now,
                pinned_only=entry.pinned_only,
            )
        )

    def _read_schemas(self, host: PeerId, tasks: list[dict[str, Any]]) -> dict[str, TaskSchema]:
        schemas = {}
        for wire in tasks:
            try:
                schema = TaskSchema.from_wire(wire)
            except SchemaError as exc:
                log.info(
                    "host offers a task with a bad schema",
                    extra={"host": host.short, "error": str(exc)[:300]},
                )
                continue
            schemas[schema.name] = schema
        return schemas

    # -- results ------------------------------------------------------------------------------

    def _collect(self, host: PeerId, done: Done, holders: tuple[PeerId, ...]) -> None:
        """Fetch a `done`'s referenced blobs, then have its result stored and the job done.

        Only for the attempt in flight on that host, so a host cannot make this node fetch
        for anything else, and once per attempt; `_changed` cancels the work when the
        attempt ends first (its deadline, the host gone, the job cancelled).
        """
        try:
            job = self.scheduler.job(done.job_id)
        except UnknownJob:
            return
        if not _is_in_flight(job, host, done.attempt):
            return
        earlier = self._collecting.get(done.job_id)
        if earlier is not None and (earlier.host, earlier.attempt) == (host, done.attempt):
            return  # a repeated done: its result is already on the way
        collecting = _Collecting(host, done.attempt, trio.CancelScope())
        self._collecting[done.job_id] = collecting
        problem = self._result_problem(done)
        if problem is not None:
            self._not_taken(done, collecting, problem)
        elif done.refs:
            assert self._task_nursery is not None, "the queue service is not running"
            self._task_nursery.start_soon(self._fetch_result, done, collecting, list(holders))
        else:
            self._to_store(done, collecting)

    def _result_problem(self, done: Done) -> str | None:
        """Why a `done`'s result is refused before anything is fetched, if it is."""
        total = done.total_bytes
        if total > self.max_result_bytes:
            return (
                f"the result is {_mib(total)}, over the {_mib(self.max_result_bytes)} this "
                "queue node takes from one job"
            )
        sizes: dict[BlobId, int] = {}
        for ref in done.refs:
            if sizes.setdefault(ref.blob_id, ref.size) != ref.size:
                return f"the host gave result blob {ref.blob_id} two different sizes"
        return None

    async def _fetch_result(
        self, done: Done, collecting: _Collecting, holders: list[PeerId]
    ) -> None:
        problem: str | None = None
        with collecting.scope:
            problem = await self._fetch_blobs(done, collecting.host, holders)
        if collecting.scope.cancelled_caught:
            self._stop_collecting(done.job_id, collecting)
            return  # the attempt ended meanwhile; the scheduler has moved on
        if problem is not None:
            self._not_taken(done, collecting, problem)
        else:
            self._to_store(done, collecting)

    async def _fetch_blobs(self, done: Done, host: PeerId, holders: list[PeerId]) -> str | None:
        """Make a `done`'s referenced blobs present here; None, or why the attempt faults."""
        sizes = {ref.blob_id: ref.size for ref in done.refs}
        job = self.scheduler.job(done.job_id)
        message = f"fetching the result ({_mib(sum(sizes.values()))}) from the host"
        self._apply(
            self.scheduler.job_progress(
                done.job_id, host, done.attempt, job.progress, message, self._wall()
            )
        )
        where = ", ".join(peer.short for peer in holders) or "nobody"
        for blob_id, size in sizes.items():
            try:
                await self._fetch_blob(blob_id, holders, size)
            except LightboxError as exc:
                return f"could not fetch result blob {blob_id} from {where}: {exc}"
            except Exception as exc:  # a bug in the fetcher must not stop the queue node
                log.exception("fetching a result blob crashed", extra={"job": done.job_id})
                return f"could not fetch result blob {blob_id}: {type(exc).__name__}: {exc}"
        return None

    def _to_store(self, done: Done, collecting: _Collecting) -> None:
        """Hand a result to the journal writer (someone waits for it: no batching delay)."""
        self._results.append(_PendingResult(done, collecting))
        self._journal_wake.set()
        self._journal_urgent.set()

    def _not_taken(self, done: Done, collecting: _Collecting, reason: str) -> None:
        self._stop_collecting(done.job_id, collecting)
        log.info("result not taken", extra={"job": done.job_id, "reason": reason[:300]})
        self._apply(
            self.scheduler.job_faulted(
                done.job_id, collecting.host, done.attempt, reason[:MAX_REASON], self._wall()
            )
        )

    def _stop_collecting(self, job_id: str, collecting: _Collecting) -> None:
        if self._collecting.get(job_id) is collecting:
            del self._collecting[job_id]

    def _wanted(self, result: _PendingResult) -> Job | None:
        """The job whose result this is, while the attempt it came from is in flight."""
        done, collecting = result.done, result.collecting
        if self._collecting.get(done.job_id) is not collecting:
            return None
        try:
            job = self.scheduler.job(done.job_id)
        except UnknownJob:
            return None
        return job if _is_in_flight(job, collecting.host, done.attempt) else None

    def _result_stored(self, result: _PendingResult, now: float, *, journaled: bool) -> None:
        """After the journal writer: the job done (or its attempt faulted) in the scheduler.

        The writer journaled the job done already when `journaled`; then, if the job ends
        exactly as it was journaled, it is final at once, without another write.
        """
        done, collecting = result.done, result.collecting
        job = self._wanted(result)
        self._stop_collecting(done.job_id, collecting)
        if job is None:
            return  # the attempt ended meanwhile; its new state overwrites the journaled one
        if isinstance(result.outcome, str):
            self._not_taken(done, collecting, result.outcome)
            return
        self._remember(done.outputs, result.outcome)
        actions = self.scheduler.job_done(
            done.job_id, collecting.host, done.attempt, result.outcome, now
        )
        if journaled and result.snapshot == job:
            self._done_journaled.add(job.job_id)
        try:
            self._apply(actions)
        finally:
            self._done_journaled.discard(job.job_id)

    def _store_result(self, done: Done) -> list[str] | str:
        """Runs in a worker thread: `_store_outputs`, with a failure as the reason."""
        try:
            return self._store_outputs(done.outputs)
        except (StoreError, OSError) as exc:
            log.error("cannot store a result", extra={"job": done.job_id, "error": str(exc)})
            return f"the queue node could not store the result: {exc}"

    def _store_outputs(self, outputs: list[tuple[str, OutputData]]) -> list[str] | str:
        """Runs in a worker thread: inline outputs stored, referenced ones checked present
        with the size the host declared (the store verified their hashes on arrival)."""
        ids: list[str] = []
        for _, data in outputs:
            if not isinstance(data, BlobRef):
                ids.append(str(self.blobs.put(data)))
                continue
            size = self.blobs.size(data.blob_id)
            if size != data.size:
                return (
                    f"result blob {data.blob_id} is {size} bytes, not the {data.size} bytes "
                    "the host declared"
                )
            ids.append(str(data.blob_id))
        return ids

    async def _present_only(self, blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
        """The fetcher of a node that cannot fetch: a blob is taken only if already here."""
        if not await trio.to_thread.run_sync(self.blobs.has, blob_id):
            raise BlobNotFound(
                f"blob {blob_id} is not here, and this queue node cannot fetch blobs from hosts"
            )

    def _remember(self, outputs: list[tuple[str, OutputData]], ids: list[str]) -> None:
        """Keep a just-stored result's inline outputs in memory (see RECENT_RESULTS_BYTES)."""
        for (_, data), blob_id in zip(outputs, ids, strict=True):
            if isinstance(data, BlobRef) or blob_id in self._recent:
                continue
            self._recent[blob_id] = data
            self._recent_bytes += len(data)
        while self._recent_bytes > RECENT_RESULTS_BYTES:
            _, data = self._recent.popitem(last=False)
            self._recent_bytes -= len(data)

    def _recalled(self, ids: list[BlobId]) -> list[bytes] | None:
        """The bytes of these blobs if every one is among the recent results, else None."""
        recent = self._recent
        found = [recent.get(str(blob_id)) for blob_id in ids]
        if any(data is None for data in found):
            return None
        return found  # type: ignore[return-value]

    # -- tasks on offer -----------------------------------------------------------------------

    def offered_tasks(self) -> dict[str, TaskSchema]:
        """Every task some attached host runs (the first host's schema for each name)."""
        if self._offered is None:
            tasks: dict[str, TaskSchema] = {}
            for entry in self._hosts.values():
                if entry.pinned_only:
                    continue  # another node's host: reachable only by choosing it
                for name, schema in entry.schemas.items():
                    tasks.setdefault(name, schema)
            self._offered = tasks
        return dict(self._offered)

    def drain_host(self, host: PeerId) -> bool:
        """Stop giving `host` new jobs: its running ones finish, its queued ones wait for it
        or are taken by an idle host that runs the task. False if no such host is attached."""
        return self._set_drained(host, True)

    def resume_host(self, host: PeerId) -> bool:
        """Give a drained host jobs again; False if no such host is attached."""
        return self._set_drained(host, False)

    def _set_drained(self, host: PeerId, drained: bool) -> bool:
        entry = self._hosts.get(host)
        if entry is None:
            return False
        if drained:
            self.drained.add(host)
        else:
            self.drained.discard(host)
        self._announce(host, entry, self._wall())
        return True

    def hosts(self) -> dict[PeerId, tuple[frozenset[str], int]]:
        return {peer: (frozenset(e.schemas), e.free_slots) for peer, e in self._hosts.items()}

    def _schema_for(self, task: str, host: PeerId | None) -> TaskSchema:
        if host is not None:
            if host not in self._hosts:
                self.find_host(host)
            entry = self._hosts.get(host)
            if entry is None or task not in entry.schemas:
                raise NoSuchTask(
                    f"host {host.short} is not attached here or does not run {task!r}; "
                    "pick a host from the list of hosts and their tasks"
                )
            return entry.schemas[task]
        schema = self.offered_tasks().get(task)
        if schema is None:
            offered = ", ".join(sorted(self.offered_tasks())) or "none right now"
            raise NoSuchTask(f"no GPU host here runs {task!r} (tasks on offer: {offered})")
        return schema

    # -- jobs ---------------------------------------------------------------------------------

    async def submit(
        self,
        owner: str,
        task: str,
        inputs: Mapping[str, Any],
        *,
        host: PeerId | None = None,
        federated_from: PeerId | None = None,
        remote_job_id: str | None = None,
        peer_score: float = 0.0,
    ) -> JobView:
        """Validate, charge trust, journal, queue; returns once the job is durable.

        Raises InvalidJobInput (with every problem), NoSuchTask, TrustExhausted or
        UserSuspended; nothing is charged or stored when it raises.
        """
        schema = self._schema_for(task, host)
        validated = validate_inputs(schema, inputs)
        spec = JobSpec(
            job_id=new_job_id(),
            owner=owner,
            origin=self.peer_id,
            task=task,
            inputs=validated.to_wire(),
            cost=estimate_cost(schema, validated),
            submitted_at=self._wall(),
            host=host,
            federated_from=federated_from,
            remote_job_id=remote_job_id,
        )
        actions = self.scheduler.submit(spec, self._wall(), peer_score=peer_score)
        job = self.scheduler.job(spec.job_id)
        pending = _PendingAccept(job, trio.Event())
        self._accepts.append(pending)
        self._journal_wake.set()
        self._journal_urgent.set()
        await pending.written.wait()
        if pending.error is not None:
            self._not_journaled.add(spec.job_id)
            self._apply(self.scheduler.cancel(spec.job_id, self._wall()))
            raise StoreError(f"the job could not be journaled: {pending.error}")
        self._apply(actions)
        log.debug("job accepted", extra={"job": spec.job_id, "task": task, "cost": spec.cost})
        return view_of(self.scheduler.job(spec.job_id))

    def job(self, job_id: str) -> JobView:
        return view_of(self.scheduler.job(job_id))

    def owner(self, job_id: str) -> str:
        """Who submitted the job (`peer:<id>` for a federated one); raises UnknownJob."""
        return self.scheduler.job(job_id).spec.owner

    def jobs(self) -> list[JobView]:
        return [view_of(job) for job in self.scheduler.jobs()]

    async def cancel(self, job_id: str) -> JobView:
        self._apply(self.scheduler.cancel(job_id, self._wall()))
        return view_of(self.scheduler.job(job_id))

    async def watch(self, job_id: str) -> AsyncIterator[JobView]:
        """Every change of the job until it ends (latest state wins for a slow reader)."""
        self.scheduler.job(job_id)  # UnknownJob early
        last: JobView | None = None
        while True:
            event = self._watchers.setdefault(job_id, trio.Event())
            current = view_of(self.scheduler.job(job_id))
            if current != last:
                yield current
                last = current
            if current.is_final:
                return
            await event.wait()

    async def result(self, job_id: str) -> list[tuple[str, bytes]]:
        """The outputs of a done job, by name; marks the job delivered (retention starts).

        An image-list output holds every picture the host returned for it, in order: the
        first under the output's name, the next as `images[1]`, `images[2]`, …
        """
        job, ids = self._results_of(job_id)
        data = self._recalled(ids)
        if data is None:
            data = await trio.to_thread.run_sync(lambda: [self.blobs.get(i) for i in ids])
        return self._delivered_as(job, data)

    async def result_for_relay(self, job_id: str) -> list[tuple[str, OutputData]]:
        """A done job's outputs as a `done` to another node carries them: inline while they
        fit, the largest as references to blobs held here (the other node fetches them from
        this one). Marks the job delivered, like `result`."""
        job, ids = self._results_of(job_id)
        recalled = self._recalled(ids)
        if recalled is not None and not blob_indices([len(d) for d in recalled]):
            return self._delivered_as(job, list(recalled))

        def read() -> list[OutputData]:
            sizes = [self.blobs.size(blob_id) for blob_id in ids]
            as_blobs = blob_indices(sizes)
            return [
                BlobRef(blob_id, size) if index in as_blobs else self.blobs.get(blob_id)
                for index, (blob_id, size) in enumerate(zip(ids, sizes, strict=True))
            ]

        data = await trio.to_thread.run_sync(read)
        return self._delivered_as(job, data)

    def _results_of(self, job_id: str) -> tuple[Job, list[BlobId]]:
        job = self.scheduler.job(job_id)
        if job.state.value != "done":
            raise JobError(f"job {job_id} is {job.state.value}, not done; watch it until it ends")
        return job, [BlobId.parse(text) for text in job.results]

    def _delivered_as(self, job: Job, data: list[Any]) -> list[tuple[str, Any]]:
        # Retention starts at delivery; recording that can ride along with the next write.
        self._delivered.setdefault(job.job_id, self._wall())
        self._journal_wake.set()
        names = output_names(self._schema_of(job), len(data))
        return list(zip(names, data, strict=True))

    def _schema_of(self, job: Job) -> TaskSchema | None:
        """The task's schema as the host that ran the job declared it (a federated host's
        task is not on offer here), else as some attached host offers it."""
        attempt = job.current_attempt
        entry = self._hosts.get(attempt.host) if attempt is not None else None
        schema = entry.schemas.get(job.spec.task) if entry is not None else None
        return schema or self.offered_tasks().get(job.spec.task)

    # -- carrying out the scheduler's actions -------------------------------------------------

    def _apply(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Dispatch):
                self._push(action)
            elif isinstance(action, CancelOnHost):
                entry = self._hosts.get(action.host)
                if entry is not None:
                    entry.port(encode(CancelMessage(action.job_id, action.attempt_number)))
            elif isinstance(action, JobChanged):
                self._changed(action.job)
        if actions:
            deadline = self.scheduler.next_deadline()
            if deadline is not None and deadline < self._tick_at:
                self._tick_wake.set()  # a deadline before the ticker would wake

    def _push(self, dispatch: Dispatch) -> None:
        job, attempt = dispatch.job, dispatch.attempt
        entry = self._hosts.get(dispatch.host)
        deadline_s = max(1.0, attempt.deadline - self._wall())
        body = encode(
            Run(job.job_id, attempt.number, job.spec.task, dict(job.spec.inputs), deadline_s)
        )
        if entry is None or not entry.port(body):
            # The link is gone or saturated: the host will be declared gone, or the deadline
            # re-queues the job; either way nothing waits forever.
            log.info("could not push a job", extra={"job": job.job_id, "host": dispatch.host.short})

    def _changed(self, job: Job) -> None:
        collecting = self._collecting.get(job.job_id)
        if collecting is not None and not _is_in_flight(job, collecting.host, collecting.attempt):
            collecting.scope.cancel()  # its result is no longer wanted
        if job.job_id in self._done_journaled:
            # Done exactly as the journal writer wrote it with its result: final already.
            self._updates.pop(job.job_id, None)
            self._notify(job.job_id)
            self._finished(_copy(job))
            return
        self._updates[job.job_id] = job
        self._journal_wake.set()
        if job.state.is_final:
            self._journal_urgent.set()
        else:
            self._notify(job.job_id)  # final states are told only once journaled

    def _finished(self, job: Job) -> None:
        try:
            self.on_finished(job)
        except Exception:  # a follow-up's bug must not stop the journal
            log.exception("job follow-up failed", extra={"job": job.job_id})

    def _notify(self, job_id: str) -> None:
        event = self._watchers.pop(job_id, None)
        if event is not None:
            event.set()

    # -- background work ----------------------------------------------------------------------

    async def _journal_writer(self) -> None:
        """Group commit: whatever accumulated while the last write ran goes in the next."""
        while True:
            await self._journal_wake.wait()
            if not self._journal_urgent.is_set():
                # Progress and dispatch updates may wait a little to share a write; an
                # acknowledgement or an outcome someone waits for ends the wait at once.
                with trio.move_on_after(JOURNAL_IDLE_FLUSH_S):
                    await self._journal_urgent.wait()
            self._journal_wake = trio.Event()
            self._journal_urgent = trio.Event()
            accepts, self._accepts = self._accepts, []
            updates, self._updates = self._updates, {}
            delivered, self._delivered = self._delivered, {}
            for pending in accepts:
                updates.pop(pending.job.job_id, None)  # its acceptance is written as it is now
            for job_id in self._not_journaled & updates.keys():
                if updates.pop(job_id).state.is_final:
                    self._not_journaled.discard(job_id)
                    self._notify(job_id)
            ended = [j for j in (*updates.values(), *(p.job for p in accepts)) if j.state.is_final]
            results: list[_PendingResult] = []
            for result in self._results:
                job = self._wanted(result)
                if job is None or job.job_id in self._not_journaled:
                    self._stop_collecting(result.done.job_id, result.collecting)
                else:
                    result.snapshot = _copy(job)
                    results.append(result)
            self._results = []
            now = self._wall()
            # Trust changes only when a job is charged (accepted) or refunded (ended).
            touched = {_account(p.job) for p in accepts} | {_account(job) for job in ended}
            trust_rows = [
                (r.user, r.trust, r.updated_at, r.suspended, r.reason)
                for r in self.scheduler.ledger.rows(touched)
            ]
            journaled = False
            try:
                async with self._db_lock:
                    await trio.to_thread.run_sync(
                        self._write,
                        [_copy(p.job) for p in accepts],
                        [_copy(job) for job in updates.values()],
                        results,
                        now,
                        trust_rows,
                        delivered,
                    )
                journaled = True
            except (StoreError, OSError) as exc:
                log.error("journal write failed", extra={"error": str(exc)})
                for pending in accepts:
                    pending.error = exc
            for pending in accepts:
                pending.written.set()
            for job in ended:
                self._notify(job.job_id)
                self._finished(_copy(job))
            for result in results:
                self._result_stored(result, now, journaled=journaled)

    def _write(
        self,
        accepts: list[Job],
        updates: list[Job],
        results: list[_PendingResult],
        now: float,
        trust_rows: list[Any],
        delivered: dict[str, float],
    ) -> None:
        """Runs in a worker thread, on copies taken in the trio thread (see `_copy`).

        One transaction, so one fsync, however much accumulated since the last write. The
        results are stored first; each job whose result was stored is journaled done with
        it (its snapshot completed as the scheduler will complete the job, at `now`), after
        its older changes, so nobody has to wait for another write to learn it is done.
        """
        completed: list[Job] = []
        for result in results:
            result.outcome = self._store_result(result.done)
            if isinstance(result.outcome, list):
                assert result.snapshot is not None
                result.snapshot.complete(result.outcome, now)
                completed.append(result.snapshot)
        with self._journal.batch():
            if accepts:
                self._journal.accept_many(accepts)
            self._journal.update_many(updates)
            self._journal.update_many(completed)
            self._trust_store.save(trust_rows)
            for job_id, when in delivered.items():
                with contextlib.suppress(UnknownJob):  # purged meanwhile
                    self._journal.mark_delivered(job_id, when)

    async def _ticker(self) -> None:
        while True:
            deadline = self.scheduler.next_deadline()
            now = self._wall()
            wait = 60.0 if deadline is None else min(60.0, max(0.0, deadline - now))
            self._tick_at = now + wait
            with trio.move_on_after(wait):
                await self._tick_wake.wait()
            self._tick_wake = trio.Event()
            self._tick_at = -math.inf  # the loop looks at the deadlines again anyway
            self._apply_tick()

    def _apply_tick(self) -> None:
        self._apply(self.scheduler.tick(self._wall()))

    async def _purger(self) -> None:
        while True:
            await trio.sleep(PURGE_EVERY_S)
            async with self._db_lock:
                purged = await trio.to_thread.run_sync(
                    self._journal.purge, self._wall(), self.retention_s
                )
            if purged:
                log.info("purged finished jobs past retention", extra={"jobs": purged})


__all__ = ["InvalidJobInput", "JobView", "NoSuchTask", "QueueService", "UnknownJob", "view_of"]
