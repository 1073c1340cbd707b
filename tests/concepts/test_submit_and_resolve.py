"""Adapters reach the registry from finished fine-tune jobs; hosts resolve concepts.

Through a real single-member registry (Raft core, shell and registry state machine, in
memory storage) in virtual time; the blob fetch is a function over a dict of blobs.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
import trio
import trio.testing

from lightbox_node.concepts import AdapterSubmitter, ConceptResolver, adapter_command
from lightbox_node.dispatch.test_tasks import TaskFailed
from lightbox_node.identity import Identity, PeerId
from lightbox_node.raft import MemoryRaftStorage, Registry
from lightbox_node.raft.service import RegistryService, RegistryUnavailable
from lightbox_node.sched.jobs import Job, JobSpec, JobState
from lightbox_node.store.blob_id import BlobId

ME = Identity.from_seed(b"\x01" * 32).peer_id


def blob(data: bytes) -> str:
    return "sha256-" + hashlib.sha256(data).hexdigest()


def finetune_job(
    state: JobState = JobState.DONE, concept: Any = "rex", task: str = "finetune"
) -> Job:
    spec = JobSpec(
        job_id="job-1",
        owner="alice",
        origin=ME,
        task=task,
        inputs={"concept": concept, "concept_token": "sks", "instance_images": [{}, {}, {}]},
        cost=1.0,
        submitted_at=0.0,
    )
    return Job(spec, state=state, results=[blob(b"adapter")])


class LoneSwarm:
    peer_id = ME
    roles = ("registry",)
    linked_peers: tuple[PeerId, ...] = ()

    def records(self) -> list[Any]:
        return []

    def send(self, peer: PeerId, protocol: str, body: Any) -> bool:
        return False

    def add_hints(self, hints: Any, *, pinned: bool = False) -> None:
        pass


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.01)


def test_only_a_finished_finetune_job_with_a_concept_offers_an_adapter() -> None:
    command = adapter_command(finetune_job(), 1234)
    assert command == {
        "op": "submit_adapter",
        "concept": "rex",
        "adapter": blob(b"adapter"),
        "weight": 3,
        "base": None,
        "at": 1234,
        "metadata": {"job": "job-1", "token": "sks"},
    }
    assert adapter_command(finetune_job(JobState.FAULTED), 0) is None
    assert adapter_command(finetune_job(task="txt2img"), 0) is None
    assert adapter_command(finetune_job(concept=None), 0) is None


async def test_a_submission_is_retried_until_the_registry_answers(
    clock: trio.testing.MockClock,
) -> None:
    calls: list[float] = []

    async def flaky_write(command: Any) -> Any:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise RegistryUnavailable("no leader yet")
        return {"ok": True}

    submitted: list[str] = []
    submitter = AdapterSubmitter(flaky_write, on_submitted=submitted.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(submitter.run)
        submitter.job_finished(finetune_job())
        submitter.job_finished(finetune_job(task="txt2img"))  # ignored
        while not submitted:
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert submitted == [blob(b"adapter")]
    assert len(calls) == 3 and calls[2] - calls[1] > calls[1] - calls[0]  # backoff grows


async def test_a_host_resolves_a_concept_to_its_merged_model_and_caches_the_blob(
    clock: trio.testing.MockClock,
) -> None:
    model = b"merged weights"
    fetched: list[tuple[BlobId, list[PeerId]]] = []

    async def fetch(blob_id: BlobId, peers: list[PeerId]) -> bytes:
        fetched.append((blob_id, peers))
        return model

    registry = RegistryService(LoneSwarm(), Registry(), MemoryRaftStorage(), rng=random.Random(1))
    resolver = ConceptResolver(registry.read, fetch)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        with pytest.raises(TaskFailed, match="not in the registry"):
            await resolver("rex")
        await registry.write(adapter_command(finetune_job(), 1))
        with pytest.raises(TaskFailed, match="no merged model yet"):
            await resolver("rex")
        answer = await registry.write(
            {
                "op": "record_merge",
                "concept": "rex",
                "model": blob(model),
                "parent": None,
                "adapters": [blob(b"adapter")],
                "weights": [3],
            }
        )
        assert answer["ok"], answer
        first = await resolver("rex")
        second = await resolver("rex")
        nursery.cancel_scope.cancel()
    assert first.model_id == blob(model) and first.data == model and second.data == model
    assert len(fetched) == 1  # the second job used the cached blob
    assert fetched[0][1][0] == ME  # asked the merger first
