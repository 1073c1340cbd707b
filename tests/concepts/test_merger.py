"""The merger on a registry leader, through a real single-member registry in virtual time.

The merge function is a stand-in that records its inputs (the exact weight-space merge is
tested in tests/finetune); blobs live in a dict, as a store would hold them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

from lightbox_node.concepts.merger import Merger, MergeRefused
from lightbox_node.errors import LightboxError
from lightbox_node.identity import Identity, PeerId
from lightbox_node.raft import MemoryRaftStorage, Registry
from lightbox_node.raft.service import RegistryService
from lightbox_node.store.blob_id import BlobId

ME = Identity.from_seed(b"\x02" * 32).peer_id


def blob(data: bytes) -> str:
    return "sha256-" + hashlib.sha256(data).hexdigest()


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


class Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.asked: list[tuple[str, list[PeerId]]] = []

    def add(self, data: bytes) -> str:
        self.data[blob(data)] = data
        return blob(data)

    async def fetch(self, blob_id: BlobId, peers: list[PeerId]) -> bytes:
        self.asked.append((str(blob_id), peers))
        if str(blob_id) not in self.data:
            raise LightboxError(f"nobody holds {blob_id}")
        return self.data[str(blob_id)]

    async def has(self, blob_id: BlobId) -> bool:
        return str(blob_id) in self.data

    async def store(self, data: bytes) -> str:
        return self.add(data)


merged_calls: list[tuple[list[bytes], list[float], bytes | None]] = []


def fake_merge(files: Sequence[bytes], weights: Sequence[float], parent: bytes | None) -> bytes:
    if any(f.startswith(b"junk") for f in files):
        raise LightboxError("not a LoRA adapter")
    merged_calls.append((list(files), list(weights), parent))
    return b"model(" + b"+".join(files) + b")<-" + (parent or b"none")


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.01)


async def offer(registry: RegistryService, adapter: str, weight: int = 3) -> None:
    answer = await registry.write(
        {"op": "submit_adapter", "concept": "rex", "adapter": adapter, "weight": weight}
    )
    assert answer["ok"], answer


async def test_the_leader_merges_pending_adapters_on_top_of_the_current_model(
    clock: trio.testing.MockClock,
) -> None:
    merged_calls.clear()
    blobs = Blobs()
    registry = RegistryService(LoneSwarm(), Registry(), MemoryRaftStorage(), rng=random.Random(2))
    merger = Merger(registry, fake_merge, blobs.fetch, blobs.has, blobs.store, merge_every=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        await nursery.start(merger.run)
        first, second = blobs.add(b"A1"), blobs.add(b"A2")
        await offer(registry, first, 3)
        await trio.sleep(5)
        assert merger.merges == 0  # one pending adapter: below merge_every
        await offer(registry, second, 5)
        merger.wake()
        await trio.sleep(1)
        assert merger.merges == 1
        concept = await registry.read({"q": "concept", "concept": "rex"})
        assert concept["model"] == blob(b"model(A1+A2)<-none") and concept["pending_count"] == 0
        assert merged_calls == [([b"A1", b"A2"], [3.0, 5.0], None)]

        third = blobs.add(b"A3")
        await offer(registry, third, 1)
        answer = await merger.merge("rex")  # on demand, below the threshold
        assert answer["ok"]
        assert merged_calls[-1] == ([b"A3"], [1.0], b"model(A1+A2)<-none")
        history = await registry.read({"q": "history", "concept": "rex"})
        merges = [e for e in history if e["kind"] == "merge"]
        assert [m["parent"] for m in merges] == [None, concept["model"]]
        nursery.cancel_scope.cancel()


async def test_an_invalid_adapter_is_set_aside_and_the_others_still_merge(
    clock: trio.testing.MockClock,
) -> None:
    merged_calls.clear()
    blobs = Blobs()
    registry = RegistryService(LoneSwarm(), Registry(), MemoryRaftStorage(), rng=random.Random(3))
    merger = Merger(registry, fake_merge, blobs.fetch, blobs.has, blobs.store)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        junk, good = blobs.add(b"junk bytes"), blobs.add(b"G")
        await offer(registry, junk)
        await offer(registry, good)
        with pytest.raises(MergeRefused, match="not a LoRA adapter"):
            await merger.merge("rex")
        assert set(merger.set_aside) == {junk}
        await merger.merge("rex")
        concept = await registry.read({"q": "concept", "concept": "rex"})
        assert concept["model"] == blob(b"model(G)<-none")
        assert [a["adapter"] for a in concept["pending_adapters"]] == [junk]
        nursery.cancel_scope.cancel()


async def test_an_adapter_nobody_serves_stays_pending_and_nothing_is_merged(
    clock: trio.testing.MockClock,
) -> None:
    blobs = Blobs()
    registry = RegistryService(LoneSwarm(), Registry(), MemoryRaftStorage(), rng=random.Random(4))
    merger = Merger(registry, fake_merge, blobs.fetch, blobs.has, blobs.store)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        await offer(registry, blob(b"held by a node that went away"))
        with pytest.raises(MergeRefused, match="could be fetched"):
            await merger.merge("rex")
        concept = await registry.read({"q": "concept", "concept": "rex"})
        assert concept["model"] is None and concept["pending_count"] == 1
        assert blobs.asked[-1][1] == [ME]  # asked the node that submitted it
        nursery.cancel_scope.cancel()
