"""Blobs move between swarms in verified chunks; liars are caught, absences explained."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from lightbox_node.blob_exchange import CHUNK, PROTOCOL, BlobExchange, BlobUnavailable
from lightbox_node.identity import Identity
from lightbox_node.net.link import memory_link_pair
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.swarm import Swarm


class Liar(BlobExchange):
    """Holds the blob and lists its true digests, but sends chunks of the wrong bytes."""

    async def _answer(self, request: Any) -> list[Any]:
        reply = await super()._answer(request)
        if reply[0] == "chunk":
            reply[3] = b"x" * len(reply[3])
        return reply


async def start(nursery: trio.Nursery, tmp: Path, name: str, cls: type = BlobExchange):
    identity = Identity.from_seed(name.encode().ljust(32, b"."))
    swarm = Swarm(identity, network="lightbox-test", roles=("queue",), version="test")
    await nursery.start(swarm.run)
    exchange = cls(swarm, BlobStore(tmp / name))
    await nursery.start(exchange.run)
    swarm.register(PROTOCOL, exchange)
    return identity, swarm, exchange


def link(a: tuple, b: tuple) -> None:
    end_a, end_b = memory_link_pair(a[0], b[0])
    a[1].adopt(end_a)
    b[1].adopt(end_b)


async def linked(swarm: Swarm, count: int) -> None:
    with trio.fail_after(5):
        while len(swarm.linked_peers) < count:
            await trio.sleep(0.01)


async def test_a_multi_chunk_blob_is_fetched_intact_from_a_peer(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 12345)
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder")
        wanter = await start(nursery, tmp_path, "wanter")
        blob_id = holder[2].store.put(data)
        link(holder, wanter)
        await linked(wanter[1], 1)
        assert await wanter[2].fetch(blob_id, [holder[0].peer_id]) == blob_id
        assert wanter[2].store.get(blob_id) == data
        assert wanter[2].fetched_bytes == holder[2].served_bytes == len(data)
        nursery.cancel_scope.cancel()


async def test_a_peer_sending_wrong_bytes_is_scored_down_and_the_next_peer_serves(
    tmp_path: Path,
) -> None:
    data = os.urandom(10 * CHUNK)
    async with trio.open_nursery() as nursery:
        liar = await start(nursery, tmp_path, "liar", Liar)
        holder = await start(nursery, tmp_path, "holder")
        wanter = await start(nursery, tmp_path, "wanter")
        blob_id = holder[2].store.put(data)
        liar[2].store.put(data)
        liar[2].store.chunk_digests(blob_id, CHUNK)  # ready first, so it is surely asked
        link(liar, wanter)
        link(holder, wanter)
        await linked(wanter[1], 2)
        await wanter[2].fetch(blob_id, [liar[0].peer_id, holder[0].peer_id])
        assert wanter[2].store.get(blob_id) == data
        assert wanter[1].scores.score(liar[0].peer_id, trio.current_time()) < 0
        assert not list((tmp_path / "wanter" / "staging").glob("*"))  # nothing half-written
        nursery.cancel_scope.cancel()


async def test_a_blob_nobody_holds_fails_with_every_reason(tmp_path: Path) -> None:
    missing = BlobId.of_bytes(b"never stored anywhere")
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder")
        wanter = await start(nursery, tmp_path, "wanter")
        stranger = Identity.from_seed(b"s" * 32).peer_id
        link(holder, wanter)
        await linked(wanter[1], 1)
        with pytest.raises(BlobUnavailable) as info:
            await wanter[2].fetch(missing, [holder[0].peer_id, stranger])
        assert "not held here" in str(info.value) and "not linked" in str(info.value)
        nursery.cancel_scope.cancel()


async def test_malformed_blob_messages_are_scored_not_raised(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        target = await start(nursery, tmp_path, "target")
        for body in (
            [],
            ["want"],
            ["want", 1, "../../etc/passwd", 0, 10],
            ["want", 1, str(BlobId.of_bytes(b"x")), -1, 10],
            ["chunk", 99, 0, b"", 0],
            "nonsense",
            ["want", 1, str(BlobId.of_bytes(b"x")), 0, CHUNK + 1],
        ):
            target[2].message(Identity.from_seed(b"m" * 32).peer_id, body)
        row = target[1].score_table()[0]
        assert row.invalid_messages < 0
        nursery.cancel_scope.cancel()
