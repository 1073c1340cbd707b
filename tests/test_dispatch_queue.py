"""The queue node's shell around the scheduler: results stored and journaled done in one
write, results kept in memory for their owner, and deadlines that wake the ticker."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from lightbox_node.dispatch.client import JobClient
from lightbox_node.dispatch.protocol import Hello, Run, encode, parse_queue_message
from lightbox_node.dispatch.queue import QueueService
from lightbox_node.dispatch.test_tasks import NoopTask
from lightbox_node.errors import StoreError
from lightbox_node.sched.scheduler import Scheduler, SchedulerParams
from lightbox_node.store import BlobId, BlobStore, open_database
from lightbox_node.store.journal import JobJournal
from tests.test_dispatch_large_results import (
    HOST,
    QUEUE,
    Fetcher,
    ScriptedHost,
    queue_with_scripted_host,
    running_job,
    until,
)


def journaled_state(tmp_path: Path, job_id: str) -> tuple[str, list[str]]:
    """The job's state and results as another connection reads them from the journal."""
    job = JobJournal(open_database(tmp_path / "queue.sqlite3")).load(job_id)
    assert job is not None
    return job.state.value, job.results


async def test_a_done_job_is_journaled_with_its_stored_result_before_anyone_is_told(
    tmp_path: Path,
) -> None:
    async with queue_with_scripted_host(tmp_path, Fetcher()) as (queue, host):
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [["status", b"ok"]]])
        final = await until(queue, run.job_id, lambda v: v.is_final)
        assert final.state == "done" and final.results == (str(BlobId.of_bytes(b"ok")),)
        assert journaled_state(tmp_path, run.job_id) == ("done", list(final.results))
        assert queue.blobs.get(BlobId.of_bytes(b"ok")) == b"ok"


async def test_a_result_the_queue_node_cannot_store_faults_the_attempt_and_it_runs_again(
    tmp_path: Path,
) -> None:
    async with queue_with_scripted_host(tmp_path, Fetcher()) as (queue, host):

        def full(data: bytes) -> BlobId:
            raise StoreError("the disk is full")

        queue.blobs.put = full  # type: ignore[method-assign]
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [["status", b"ok"]]])
        view = await until(queue, run.job_id, lambda v: bool(v.faults))
        assert "could not store the result: the disk is full" in view.faults[0]
        assert (await host.next_run()).attempt == 2
        assert journaled_state(tmp_path, run.job_id)[0] != "done"


async def test_a_job_cancelled_while_its_result_is_stored_ends_cancelled_in_the_journal_too(
    tmp_path: Path,
) -> None:
    async with queue_with_scripted_host(tmp_path, Fetcher()) as (queue, host):
        storing, release = threading.Event(), threading.Event()
        put = queue.blobs.put

        def slow_put(data: bytes) -> BlobId:
            storing.set()
            release.wait(5)
            return put(data)

        queue.blobs.put = slow_put  # type: ignore[method-assign]
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [["status", b"ok"]]])
        with trio.fail_after(5):
            while not storing.is_set():
                await trio.sleep(0.01)
        assert (await queue.cancel(run.job_id)).state == "cancelled"
        release.set()
        # The writer journals the result it was storing, then the cancel over it.
        with trio.fail_after(5):
            while journaled_state(tmp_path, run.job_id)[0] != "cancelled":
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        assert journaled_state(tmp_path, run.job_id)[0] == "cancelled"
        assert queue.job(run.job_id).state == "cancelled"


async def test_a_result_fetched_soon_after_the_job_ends_is_served_from_memory(
    tmp_path: Path,
) -> None:
    async with queue_with_scripted_host(tmp_path, Fetcher()) as (queue, host):
        run = await running_job(queue, host)
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [["status", b"fresh"]]])
        await until(queue, run.job_id, lambda v: v.is_final)

        def unreadable(blob_id: BlobId) -> bytes:
            raise AssertionError("read from the store")

        queue.blobs.get = unreadable  # type: ignore[method-assign]
        assert await JobClient(queue, "alice").result(run.job_id) == {"status": b"fresh"}
        assert await queue.result_for_relay(run.job_id) == [("status", b"fresh")]


async def test_a_missed_deadline_requeues_the_job_without_waiting_for_the_tickers_minute(
    tmp_path: Path,
) -> None:
    params = SchedulerParams(deadline_base_s=0.3, deadline_per_cost=0.0)
    queue = QueueService(
        QUEUE,
        Scheduler(params),
        open_database(tmp_path / "queue.sqlite3"),
        BlobStore(tmp_path / "queue-blobs"),
    )
    host = ScriptedHost()
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        await trio.sleep(0.05)  # the ticker now sleeps for want of any deadline
        queue.attach_host(HOST, host.port)
        queue.host_message(HOST, encode(Hello([NoopTask.schema.to_wire()], 1)))
        began = time.monotonic()
        view = await JobClient(queue, "alice").submit("noop")
        first = await host.next_run()
        second: Any = await host.next_run()  # never answered: the deadline re-queues it
        assert (first.job_id, second.job_id) == (view.job_id, view.job_id)
        assert (first.attempt, second.attempt) == (1, 2)
        assert time.monotonic() - began < 5
        assert "missed its deadline" in queue.job(view.job_id).faults[0]
        nursery.cancel_scope.cancel()


async def test_a_job_whose_acceptance_cannot_be_journaled_is_refused_and_the_journal_goes_on(
    tmp_path: Path,
) -> None:
    async with queue_with_scripted_host(tmp_path, Fetcher()) as (queue, host):
        sent: list[Any] = []
        port = host.port

        def recording_port(body: Any) -> bool:
            sent.append(parse_queue_message(body))
            return port(body)

        queue.attach_host(HOST, recording_port)
        queue.host_message(HOST, encode(Hello([NoopTask.schema.to_wire()], 1)))
        accept_many = queue._journal.accept_many

        def failing(jobs: Any) -> None:
            raise StoreError("the disk is full")

        queue._journal.accept_many = failing  # type: ignore[method-assign]
        with pytest.raises(StoreError, match="could not be journaled: the disk is full"):
            await JobClient(queue, "alice").submit("noop")
        (refused,) = [job for job in queue.jobs() if job.owner == "alice"]
        assert refused.state == "cancelled"
        assert not [m for m in sent if isinstance(m, Run)]  # it never went to the host
        queue._journal.accept_many = accept_many  # type: ignore[method-assign]
        run = await running_job(queue, host)  # the journal goes on with the next jobs
        queue.host_message(HOST, ["done", run.job_id, run.attempt, [["status", b"ok"]]])
        assert (await until(queue, run.job_id, lambda v: v.is_final)).state == "done"
        assert journaled_state(tmp_path, run.job_id)[0] == "done"
        assert JobJournal(open_database(tmp_path / "queue.sqlite3")).load(refused.job_id) is None
