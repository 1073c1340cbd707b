"""Job results larger than one link message travel as blobs: stored by the host, fetched and
verified by the queue node, and relayed between queue nodes for a federated job."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from lightbox_node.blob_exchange import PROTOCOL as BLOBS_PROTOCOL
from lightbox_node.blob_exchange import BlobExchange, BlobUnavailable
from lightbox_node.dispatch.attach import PROTOCOL as JOBS_PROTOCOL
from lightbox_node.dispatch.attach import JobsProtocol
from lightbox_node.dispatch.client import JobClient
from lightbox_node.dispatch.federation import Federation
from lightbox_node.dispatch.host import GpuHost
from lightbox_node.dispatch.protocol import (
    MAX_OUTPUT_BYTES,
    BlobRef,
    Done,
    Fault,
    Hello,
    Run,
    Started,
    encode,
    parse_host_message,
    parse_queue_message,
)
from lightbox_node.dispatch.queue import JobView, QueueService
from lightbox_node.dispatch.test_tasks import NoopTask, filler, test_task_runners
from lightbox_node.errors import StoreError
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.link import memory_link_pair
from lightbox_node.sched.scheduler import Scheduler
from lightbox_node.store import BlobId, BlobStore, open_database
from lightbox_node.swarm import Swarm
from lightbox_node.tasks import FixedCost, Output, TaskSchema

BIG = 3_000_000
"""A 2048×2048 PNG or a LoRA adapter: several link messages' worth."""

QUEUE = Identity.from_seed(b"q" * 32).peer_id
HOST = Identity.from_seed(b"h" * 32).peer_id


# -- the host alone, reporting to a recording queue port ----------------------------------------


class Outputs:
    """A runner returning fixed outputs."""

    schema = TaskSchema(
        name="outputs",
        title="Outputs",
        description="Returns what the test set.",
        outputs=(Output(name="first", type="blob"), Output(name="second", type="blob")),
        cost=FixedCost(units=1.0),
    )

    def __init__(self, outputs: Any) -> None:
        self.outputs = outputs

    async def run(self, inputs: Mapping[str, Any], progress: Any) -> Any:
        return self.outputs


@dataclass
class Stored:
    """A host's blob store that counts what it was asked to keep."""

    blobs: BlobStore
    calls: int = 0

    async def __call__(self, data: bytes) -> str:
        self.calls += 1
        return str(await trio.to_thread.run_sync(self.blobs.put, data))


async def run_on_host(host: GpuHost, task: str = "outputs") -> Done | Fault:
    """Push one job to `host` and return what it sends back at the end."""
    ended = trio.Event()
    sent: list[Any] = []

    def port(body: Any) -> bool:
        message = parse_host_message(body)  # whatever a host sends must parse
        sent.append(message)
        if isinstance(message, Done | Fault):
            ended.set()
        return True

    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        host.attach(QUEUE, port)
        host.message(QUEUE, encode(Run("j-" + "0" * 24, 1, task, {}, 60.0)))
        with trio.fail_after(10):
            await ended.wait()
        nursery.cancel_scope.cancel()
    return sent[-1]


async def test_a_host_sends_small_outputs_inline_and_the_large_one_as_a_stored_blob(
    tmp_path: Path,
) -> None:
    big = os.urandom(BIG)
    store = Stored(BlobStore(tmp_path / "host"))
    host = GpuHost({"outputs": Outputs([("first", b"a"), ("second", big)])}, store_blob=store)
    done = await run_on_host(host)
    assert isinstance(done, Done)
    assert done.outputs == [("first", b"a"), ("second", BlobRef(BlobId.of_bytes(big), BIG))]
    assert store.calls == 1 and store.blobs.get(BlobId.of_bytes(big)) == big


async def test_a_result_that_fits_one_message_stays_inline_and_stores_nothing(
    tmp_path: Path,
) -> None:
    outputs = [("first", b"x" * (MAX_OUTPUT_BYTES - 10)), ("second", b"y" * 10)]
    store = Stored(BlobStore(tmp_path / "host"))
    done = await run_on_host(GpuHost({"outputs": Outputs(outputs)}, store_blob=store))
    assert done == Done("j-" + "0" * 24, 1, outputs) and store.calls == 0


async def test_a_host_without_a_blob_store_faults_a_result_too_large_for_one_message() -> None:
    fault = await run_on_host(GpuHost({"outputs": Outputs([("first", b"x" * BIG)])}))
    assert isinstance(fault, Fault)
    assert "too large to send inline" in fault.reason and "no blob store" in fault.reason


async def test_a_result_over_the_bound_faults_on_the_host_without_being_stored(
    tmp_path: Path,
) -> None:
    store = Stored(BlobStore(tmp_path / "host"))
    host = GpuHost(
        {"outputs": Outputs([("first", b"x" * (2 << 20))])},
        store_blob=store,
        max_result_bytes=1 << 20,
    )
    fault = await run_on_host(host)
    assert isinstance(fault, Fault) and "2.0 MiB, over the 1.0 MiB" in fault.reason
    assert store.calls == 0


async def test_a_blob_store_that_fails_faults_the_job_with_its_reason() -> None:
    async def broken(data: bytes) -> str:
        raise StoreError("the disk is full")

    host = GpuHost({"outputs": Outputs([("first", b"x" * BIG)])}, store_blob=broken)
    fault = await run_on_host(host)
    assert isinstance(fault, Fault) and "could not store the result: the disk is full" in (
        fault.reason
    )


@pytest.mark.parametrize(
    ("outputs", "why"),
    [
        ("not a list", "not a list"),
        ([("first", "text, not bytes")], "as str, not bytes"),
        ([("n" * 65, b"data")], "output name"),
        ([("first",)], "(name, bytes) pair"),
    ],
)
async def test_a_runner_returning_bad_outputs_faults_with_what_was_wrong(
    outputs: Any, why: str
) -> None:
    fault = await run_on_host(GpuHost({"outputs": Outputs(outputs)}))
    assert isinstance(fault, Fault) and why in fault.reason


# -- the queue node alone, with a scripted (hostile) host ---------------------------------------


@dataclass
class ScriptedHost:
    """The port of a host the test speaks for: it records the jobs pushed to it."""

    runs: list[Run] = field(default_factory=list)
    pushed: trio.Event = field(default_factory=trio.Event)

    def port(self, body: Any) -> bool:
        message = parse_queue_message(body)
        if isinstance(message, Run):
            self.runs.append(message)
            self.pushed.set()
        return True

    async def next_run(self) -> Run:
        with trio.fail_after(5):
            while not self.runs:
                self.pushed = trio.Event()
                await self.pushed.wait()
        return self.runs.pop(0)


@dataclass
class Fetcher:
    """A fetch function whose behaviour each test sets; it records every call."""

    behaviour: Callable[[BlobId, list[PeerId], int], Any] | None = None
    calls: list[tuple[BlobId, list[PeerId], int]] = field(default_factory=list)
    stopped: bool = False

    async def __call__(self, blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
        self.calls.append((blob_id, peers, max_bytes))
        try:
            if self.behaviour is not None:
                await self.behaviour(blob_id, peers, max_bytes)
        finally:
            self.stopped = True


@contextlib.asynccontextmanager
async def queue_with_scripted_host(
    tmp_path: Path, fetcher: Fetcher, **options: Any
) -> AsyncIterator[tuple[QueueService, ScriptedHost]]:
    blobs = BlobStore(tmp_path / "queue-blobs")
    queue = QueueService(
        QUEUE,
        Scheduler(),
        open_database(tmp_path / "queue.sqlite3"),
        blobs,
        fetch_blob=fetcher,
        **options,
    )
    host = ScriptedHost()
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        queue.attach_host(HOST, host.port)
        queue.host_message(HOST, encode(Hello([NoopTask.schema.to_wire()], 1)))
        yield queue, host
        nursery.cancel_scope.cancel()


async def running_job(queue: QueueService, host: ScriptedHost) -> Run:
    view = await JobClient(queue, "alice").submit("noop")
    run = await host.next_run()
    assert run.job_id == view.job_id
    queue.host_message(HOST, encode(Started(run.job_id, run.attempt)))
    return run


async def until(queue: QueueService, job_id: str, check: Callable[[JobView], bool]) -> JobView:
    with trio.fail_after(5):
        async for view in queue.watch(job_id):
            if check(view):
                return view
    return queue.job(job_id)  # it ended otherwise: the caller's assertion says how


def ref_to(data: bytes, size: int | None = None) -> list[Any]:
    return ["status", str(BlobId.of_bytes(data)), len(data) if size is None else size]


async def test_a_referenced_result_is_fetched_from_the_host_and_the_job_done_with_it(
    tmp_path: Path,
) -> None:
    data = os.urandom(BIG)
    fetcher = Fetcher()
    async with queue_with_scripted_host(tmp_path, fetcher) as (queue, host):

        async def fetch(blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
            await trio.sleep(0.05)  # long enough for the host to repeat itself
            queue.blobs.put(data)

        fetcher.behaviour = fetch
        run = await running_job(queue, host)
        body = ["done", run.job_id, run.attempt, [ref_to(data)]]
        queue.host_message(HOST, body)
        queue.host_message(HOST, body)  # a repeated done does not fetch twice
        fetching = await until(queue, run.job_id, lambda v: "fetching" in v.progress_message)
        assert "2.9 MiB" in fetching.progress_message and fetching.state == "running"
        final = await until(queue, run.job_id, lambda v: v.is_final)
        assert final.state == "done" and final.results == (str(BlobId.of_bytes(data)),)
        assert fetcher.calls == [(BlobId.of_bytes(data), [HOST], BIG)]
        assert await queue.result(run.job_id) == [("status", data)]


async def test_inline_and_referenced_outputs_keep_their_order(tmp_path: Path) -> None:
    data = os.urandom(BIG)
    async with queue_with_scripted_host(tmp_path, Fetcher()) as (queue, host):
        queue.blobs.put(data)  # already here: the fetch finds it at once
        run = await running_job(queue, host)
        outputs = [["a", b"first"], ref_to(data), ["c", b"last"]]
        queue.host_message(HOST, ["done", run.job_id, run.attempt, outputs])
        assert (await until(queue, run.job_id, lambda v: v.is_final)).state == "done"
        assert [d for _, d in await queue.result(run.job_id)] == [b"first", data, b"last"]


async def test_a_fetch_that_fails_faults_the_attempt_with_why_and_the_job_runs_again(
    tmp_path: Path,
) -> None:
    async def unavailable(blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
        raise BlobUnavailable("h1: not held here")

    async with queue_with_scripted_host(tmp_path, Fetcher(unavailable)) as (queue, host):
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [ref_to(b"lost")]])
        view = await until(queue, run.job_id, lambda v: bool(v.faults))
        assert "could not fetch result blob" in view.faults[0]
        assert "h1: not held here" in view.faults[0]
        assert (await host.next_run()).attempt == 2  # re-queued like any fault


async def test_a_fetch_function_that_crashes_faults_the_attempt_not_the_node(
    tmp_path: Path,
) -> None:
    async def buggy(blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
        raise KeyError("oops")

    async with queue_with_scripted_host(tmp_path, Fetcher(buggy)) as (queue, host):
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [ref_to(b"lost")]])
        view = await until(queue, run.job_id, lambda v: bool(v.faults))
        assert "KeyError" in view.faults[0]


async def test_referenced_results_over_the_bound_fault_without_any_fetch(tmp_path: Path) -> None:
    fetcher = Fetcher()
    async with queue_with_scripted_host(tmp_path, fetcher, max_result_bytes=1 << 20) as (
        queue,
        host,
    ):
        run = await running_job(queue, host)
        refs = [ref_to(b"one", 600 << 10), ref_to(b"two", 600 << 10)]
        queue.host_message(HOST, ["done", run.job_id, run.attempt, refs])
        view = await until(queue, run.job_id, lambda v: bool(v.faults))
        assert "1.2 MiB, over the 1.0 MiB this queue node takes" in view.faults[0]
        assert fetcher.calls == []


async def test_a_blob_of_another_size_than_declared_faults_the_attempt(tmp_path: Path) -> None:
    data = os.urandom(1000)
    async with queue_with_scripted_host(tmp_path, Fetcher()) as (queue, host):
        queue.blobs.put(data)
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [ref_to(data, 999)]])
        view = await until(queue, run.job_id, lambda v: bool(v.faults))
        assert "is 1000 bytes, not the 999 bytes the host declared" in view.faults[0]


async def test_without_a_fetch_function_only_blobs_already_here_are_taken(
    tmp_path: Path,
) -> None:
    blobs = BlobStore(tmp_path / "queue-blobs")
    queue = QueueService(QUEUE, Scheduler(), open_database(tmp_path / "q.sqlite3"), blobs)
    host = ScriptedHost()
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        queue.attach_host(HOST, host.port)
        queue.host_message(HOST, encode(Hello([NoopTask.schema.to_wire()], 1)))
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [ref_to(b"elsewhere")]])
        view = await until(queue, run.job_id, lambda v: bool(v.faults))
        assert "cannot fetch blobs from hosts" in view.faults[0]
        nursery.cancel_scope.cancel()


async def test_a_done_for_an_attempt_not_in_flight_fetches_nothing(tmp_path: Path) -> None:
    fetcher = Fetcher()
    async with queue_with_scripted_host(tmp_path, fetcher) as (queue, host):
        run = await running_job(queue, host)
        for job_id, attempt, sender in (
            (run.job_id, run.attempt + 1, HOST),  # a later attempt than the one it runs
            ("j-" + "f" * 24, 1, HOST),  # a job that does not exist
        ):
            queue.host_message(sender, ["done", job_id, attempt, [ref_to(b"x" * 10)]])
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [ref_to(b"x", 0)]])  # bad
        await trio.sleep(0.05)
        assert fetcher.calls == [] and queue.job(run.job_id).state == "running"


async def test_cancelling_a_job_stops_the_fetch_of_its_result(tmp_path: Path) -> None:
    async def forever(blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
        await trio.sleep_forever()

    fetcher = Fetcher(forever)
    async with queue_with_scripted_host(tmp_path, fetcher) as (queue, host):
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [ref_to(b"slow")]])
        await until(queue, run.job_id, lambda v: "fetching" in v.progress_message)
        assert (await queue.cancel(run.job_id)).state == "cancelled"
        with trio.fail_after(5):
            while not fetcher.stopped:
                await trio.sleep(0.01)
        assert queue.job(run.job_id).state == "cancelled"


async def test_a_host_gone_while_its_result_is_fetched_has_the_job_run_elsewhere(
    tmp_path: Path,
) -> None:
    async def forever(blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
        await trio.sleep_forever()

    fetcher = Fetcher(forever)
    async with queue_with_scripted_host(tmp_path, fetcher) as (queue, host):
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [ref_to(b"slow")]])
        await until(queue, run.job_id, lambda v: "fetching" in v.progress_message)
        queue.detach_host(HOST)
        view = await until(queue, run.job_id, lambda v: v.state == "queued")
        assert len(view.faults) == 1
        with trio.fail_after(5):
            while not fetcher.stopped:
                await trio.sleep(0.01)


# -- real nodes over memory links: swarms, blob exchanges, the jobs protocol --------------------


@dataclass
class Node:
    identity: Identity
    swarm: Swarm
    exchange: BlobExchange
    queue: QueueService | None = None
    host: GpuHost | None = None

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id


async def start_node(
    nursery: trio.Nursery, tmp: Path, name: str, roles: tuple[str, ...], attach_to: Node | None
) -> Node:
    """A node wired the way `node.py` wires one (with the test tasks on its GPU host)."""
    identity = Identity.from_seed(name.encode().ljust(32, b"."))
    swarm = Swarm(identity, network="lightbox-test", roles=roles, version="test")
    await nursery.start(swarm.run)
    (tmp / name).mkdir()
    blobs = BlobStore(tmp / name / "blobs")
    exchange = BlobExchange(swarm, blobs)
    await nursery.start(exchange.run)
    swarm.register(BLOBS_PROTOCOL, exchange)
    node = Node(identity, swarm, exchange)
    federation = None
    if "queue" in roles:

        async def fetch_blob(blob_id: BlobId, peers: list[PeerId], max_bytes: int) -> None:
            await exchange.fetch(blob_id, peers, max_bytes=max_bytes)

        node.queue = QueueService(
            identity.peer_id,
            Scheduler(),
            open_database(tmp / name / "node.sqlite3"),
            blobs,
            fetch_blob=fetch_blob,
        )
        await nursery.start(node.queue.run)
        federation = Federation(identity, swarm, node.queue)
        await nursery.start(federation.run)
        node.queue.find_host = federation.ensure_host
    if "gpu" in roles:

        async def store_blob(data: bytes) -> str:
            return str(await trio.to_thread.run_sync(blobs.put, data))

        node.host = GpuHost(
            test_task_runners(), on_change=swarm.capabilities_changed, store_blob=store_blob
        )
        await nursery.start(node.host.run)
        host = node.host
        swarm.set_tasks(host.task_schemas, lambda: host.queues)
    attach = frozenset({attach_to.peer_id} if attach_to else ())
    protocol = JobsProtocol(swarm, node.queue, node.host, attach, federation)
    swarm.register(JOBS_PROTOCOL, protocol)
    nursery.start_soon(protocol.run)
    return node


def link(a: Node, b: Node) -> None:
    end_a, end_b = memory_link_pair(a.identity, b.identity)
    a.swarm.adopt(end_a)
    b.swarm.adopt(end_b)


async def eventually(check: Callable[[], object], what: str) -> None:
    with trio.fail_after(10):
        while not check():
            await trio.sleep(0.02)
    assert check(), what


async def test_a_3_mb_result_travels_from_the_host_to_the_queue_node_as_a_verified_blob(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        queue_node = await start_node(nursery, tmp_path, "queue", ("queue",), None)
        host_node = await start_node(nursery, tmp_path, "gpu", ("gpu",), queue_node)
        link(queue_node, host_node)
        queue = queue_node.queue
        assert queue is not None
        await eventually(lambda: "noop" in queue.offered_tasks(), "the host to attach")
        alice = JobClient(queue, "alice")

        small = await alice.submit("echo", {"text": "still inline"})
        assert (await alice.wait(small.job_id)).state == "done"
        assert await alice.result(small.job_id) == {"text": b"still inline"}
        assert queue_node.exchange.fetched_bytes == 0

        big = await alice.submit("noop", {"size": BIG})
        final = await alice.wait(big.job_id)
        assert final.state == "done", final
        assert await alice.result(big.job_id) == {"status": filler(BIG)}
        assert queue_node.exchange.fetched_bytes == BIG  # it came over the link, in chunks
        assert host_node.exchange.served_bytes == BIG
        nursery.cancel_scope.cancel()


async def test_a_federated_3_mb_result_reaches_the_origin_through_the_serving_queue_node(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        origin = await start_node(nursery, tmp_path, "origin", ("queue",), None)
        serving = await start_node(nursery, tmp_path, "serving", ("queue",), None)
        gpu = await start_node(nursery, tmp_path, "gpu", ("gpu",), serving)
        assert origin.queue is not None and serving.queue is not None

        def knows_the_host(node: Node) -> bool:
            return any(
                r.author == gpu.peer_id and serving.peer_id in r.queues
                for r in node.swarm.records()
            )

        link(serving, gpu)
        await eventually(lambda: knows_the_host(serving), "the host to attach to its queue")
        link(origin, serving)  # the origin has no link to the host at all
        await eventually(lambda: knows_the_host(origin), "the host's record to reach the origin")
        alice = JobClient(origin.queue, "alice")
        job = await alice.submit("noop", {"size": BIG}, host=gpu.peer_id)
        final = await alice.wait(job.job_id)
        assert final.state == "done", final
        assert await alice.result(job.job_id) == {"status": filler(BIG)}
        assert serving.exchange.fetched_bytes == BIG  # from the host
        assert origin.exchange.fetched_bytes == BIG  # from the serving node
        assert gpu.exchange.served_bytes == BIG  # once: the origin did not ask the host
        nursery.cancel_scope.cancel()
