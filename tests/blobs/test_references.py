"""What the blob collector keeps: blobs named by jobs and by the registry."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import trio
import trio.testing

from lightbox_node.blob_references import job_blob_ids, registry_blob_ids
from lightbox_node.identity import Identity, PeerId
from lightbox_node.raft import MemoryRaftStorage, Registry
from lightbox_node.raft.service import RegistryService
from lightbox_node.sched.jobs import Job, JobSpec
from lightbox_node.store.blob_id import BlobId

ME = Identity.from_seed(b"\x04" * 32).peer_id


def blob(n: int) -> str:
    return "sha256-" + hashlib.sha256(str(n).encode()).hexdigest()


def job(inputs: dict[str, Any], results: list[str]) -> Job:
    spec = JobSpec("job", "alice", ME, "img2img", inputs, 1.0, 0.0)
    return Job(spec, results=results)


def test_job_inputs_and_results_are_in_use_and_other_text_is_not() -> None:
    jobs = [
        job({"image": {"blob": blob(1), "width": 64}, "prompt": blob(9)}, [blob(2)]),
        job({"instance_images": [{"blob": blob(3)}, {"blob": blob(4)}], "mask": None}, []),
        job({"image": {"blob": "not a blob id"}}, ["junk"]),
    ]
    assert job_blob_ids(jobs) == {BlobId.parse(blob(n)) for n in (1, 2, 3, 4)}


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


async def test_the_registry_keeps_current_models_and_pending_adapters() -> None:
    registry = RegistryService(LoneSwarm(), Registry(), MemoryRaftStorage(), rng=random.Random(5))
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        for concept, adapter in (("a", 1), ("b", 2), ("b", 3)):
            await registry.write(
                {"op": "submit_adapter", "concept": concept, "adapter": blob(adapter), "weight": 1}
            )
        await registry.write(
            {
                "op": "record_merge",
                "concept": "b",
                "model": blob(10),
                "parent": None,
                "adapters": [blob(2)],
                "weights": [1],
            }
        )
        ids = await registry_blob_ids(registry.read)
        nursery.cancel_scope.cancel()
    # b's merged adapter (2) is no longer needed: the model (10) holds its change.
    assert ids == {BlobId.parse(blob(n)) for n in (1, 3, 10)}
