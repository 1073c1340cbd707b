"""The exchange over real (in-memory) links: announcing, finding, parallel fetch, resume, limits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from lightbox_node.blobs import CHUNK, BlobExchange, BlobUnavailable, ExchangeLimits
from lightbox_node.blobs.protocol import WantChunk
from lightbox_node.store import BlobId
from tests.blobs.support import Node, eventually, link, linked, staging_files, start

FAST = ExchangeLimits(stall_timeout_s=1.0, have_timeout_s=1.0)


class SlowHolder(BlobExchange):
    """Serves every chunk after a short wait, so a test can act in the middle of a fetch."""

    delay = 0.01

    async def _answer(self, request: Any) -> list[Any]:
        if isinstance(request, WantChunk):
            await trio.sleep(self.delay)
        return await super()._answer(request)


class Forger(BlobExchange):
    """Claims a blob id for other bytes: a digest list and chunks that agree with each other."""

    forged: bytes = b""

    async def _digests_of(self, blob_id: BlobId) -> tuple[int, bytes]:
        return len(self.forged), self.store.chunk_digests(BlobId.of_bytes(self.forged), CHUNK)

    async def _answer(self, request: Any) -> list[Any]:
        if isinstance(request, WantChunk):
            end = request.offset + request.length
            data = self.forged[request.offset : end]
            return ["chunk", request.request, request.offset, data, len(self.forged)]
        return await super()._answer(request)


async def test_an_announced_blob_is_in_the_record_and_its_holders_are_known(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder")
        wanter = await start(nursery, tmp_path, "wanter")
        blob_id = holder.store.put(b"model weights")
        link(holder, wanter)
        await linked(wanter, holder)
        holder.exchange.announce(blob_id)
        await eventually(lambda: wanter.exchange.holders(blob_id) == [holder.peer_id])
        assert holder.exchange.announced() == [blob_id]
        assert holder.exchange.holders(blob_id) == []  # never itself
        holder.exchange.withdraw(blob_id)
        await eventually(lambda: wanter.exchange.holders(blob_id) == [])
        nursery.cancel_scope.cancel()


async def test_only_the_newest_announcements_are_kept(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = await start(nursery, tmp_path, "node", limits=ExchangeLimits(max_announced=2))
        ids = [BlobId.of_bytes(bytes([i])) for i in range(3)]
        for blob_id in ids:
            node.exchange.announce(blob_id)
        node.exchange.announce(ids[1])
        assert node.exchange.announced() == [ids[1], ids[2]]
        nursery.cancel_scope.cancel()


async def test_a_blob_is_fetched_from_all_announced_holders_in_parallel(tmp_path: Path) -> None:
    data = os.urandom(24 * CHUNK + 999)
    async with trio.open_nursery() as nursery:
        holders = [await start(nursery, tmp_path, f"holder{i}", SlowHolder) for i in range(3)]
        wanter = await start(nursery, tmp_path, "wanter")
        for holder in holders:
            blob_id = holder.store.put(data)
            holder.store.chunk_digests(blob_id, CHUNK)  # all answer at once: all are used
            holder.exchange.announce(blob_id)
            link(holder, wanter)
        await eventually(lambda: len(wanter.exchange.holders(blob_id)) == 3)
        assert await wanter.exchange.fetch(blob_id) == blob_id
        assert wanter.store.get(blob_id) == data
        served = [holder.exchange.served_bytes for holder in holders]
        assert all(served) and sum(served) == len(data)
        assert wanter.exchange.fetched_bytes == len(data)
        assert wanter.store.chunk_digests(blob_id, CHUNK)  # ready to serve it on
        assert staging_files(wanter) == []
        nursery.cancel_scope.cancel()


async def test_an_unannounced_blob_is_found_by_asking_linked_peers(tmp_path: Path) -> None:
    data = os.urandom(CHUNK + 5)
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder")
        other = await start(nursery, tmp_path, "other")
        wanter = await start(nursery, tmp_path, "wanter")
        blob_id = holder.store.put(data)
        link(holder, wanter)
        link(other, wanter)
        await linked(wanter, holder, other)
        assert await wanter.exchange.find_holders(blob_id) == [holder.peer_id]
        await wanter.exchange.fetch(blob_id)
        assert wanter.store.get(blob_id) == data
        nursery.cancel_scope.cancel()


async def test_a_holder_serving_corrupt_chunks_is_scored_down_and_others_finish(
    tmp_path: Path,
) -> None:
    class Corrupt(BlobExchange):
        async def _answer(self, request: Any) -> list[Any]:
            reply = await super()._answer(request)
            if reply[0] == "chunk":
                reply[3] = bytes(len(reply[3]))
            return reply

    data = os.urandom(12 * CHUNK)
    async with trio.open_nursery() as nursery:
        corrupt = await start(nursery, tmp_path, "corrupt", Corrupt)
        honest = await start(nursery, tmp_path, "honest", SlowHolder)
        wanter = await start(nursery, tmp_path, "wanter")
        blob_id = corrupt.store.put(data)
        corrupt.store.chunk_digests(blob_id, CHUNK)  # answers first, so it is surely asked
        honest.store.put(data)
        link(corrupt, wanter)
        link(honest, wanter)
        await linked(wanter, corrupt, honest)
        await wanter.exchange.fetch(blob_id, [corrupt.peer_id, honest.peer_id])
        assert wanter.store.get(blob_id) == data
        assert wanter.score_of(corrupt) < 0 <= wanter.score_of(honest)
        row = next(r for r in wanter.swarm.score_table() if r.peer == corrupt.peer_id)
        assert row.invalid_messages == pytest.approx(-10, rel=0.01)  # blamed once, not per chunk
        nursery.cancel_scope.cancel()


async def test_a_forged_digest_list_is_caught_by_the_whole_hash_and_blamed(
    tmp_path: Path,
) -> None:
    data = os.urandom(6 * CHUNK)
    async with trio.open_nursery() as nursery:
        forger = await start(nursery, tmp_path, "forger", Forger)
        honest = await start(nursery, tmp_path, "honest", SlowHolder)
        wanter = await start(nursery, tmp_path, "wanter")
        forged = data[:-1] + bytes([data[-1] ^ 1])
        forger.exchange.forged = forged  # type: ignore[attr-defined]
        forger.store.put(forged)
        blob_id = honest.store.put(data)
        link(forger, wanter)
        link(honest, wanter)
        await linked(wanter, forger, honest)
        await wanter.exchange.fetch(blob_id, [forger.peer_id, honest.peer_id])
        assert wanter.store.get(blob_id) == data
        assert wanter.score_of(forger) < 0 <= wanter.score_of(honest)
        nursery.cancel_scope.cancel()


async def test_a_forger_alone_leaves_no_blob_and_nothing_staged(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    async with trio.open_nursery() as nursery:
        forger = await start(nursery, tmp_path, "forger", Forger)
        wanter = await start(nursery, tmp_path, "wanter", limits=FAST)
        forger.exchange.forged = data  # type: ignore[attr-defined]
        forger.store.put(data)
        claimed = BlobId.of_bytes(b"what the wanter asked for")
        link(forger, wanter)
        await linked(wanter, forger)
        with pytest.raises(BlobUnavailable, match="does not describe"):
            await wanter.exchange.fetch(claimed, [forger.peer_id])
        assert not wanter.store.has(claimed)
        assert staging_files(wanter) == []
        assert wanter.score_of(forger) < 0
        nursery.cancel_scope.cancel()


async def test_a_fetch_waits_for_a_broken_link_to_come_back_and_resumes(tmp_path: Path) -> None:
    data = os.urandom(16 * CHUNK)
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder", SlowHolder)
        wanter = await start(nursery, tmp_path, "wanter", limits=ExchangeLimits(stall_timeout_s=5))
        blob_id = holder.store.put(data)
        link(holder, wanter)
        await linked(wanter, holder)
        result: list[BlobId] = []

        async def fetch() -> None:
            result.append(await wanter.exchange.fetch(blob_id, [holder.peer_id]))

        nursery.start_soon(fetch)
        await eventually(lambda: _staged(wanter) >= 4 * CHUNK)
        wanter.swarm.disconnect(holder.peer_id)
        await eventually(lambda: holder.peer_id not in wanter.swarm.linked_peers)
        staged_at_break = _staged(wanter)
        await trio.sleep(0.1)
        link(holder, wanter)
        await eventually(lambda: result == [blob_id])
        assert wanter.store.get(blob_id) == data
        assert holder.exchange.served_bytes < len(data) + 8 * CHUNK  # no restart from zero
        assert 0 < staged_at_break < len(data)
        nursery.cancel_scope.cancel()


async def test_a_fetch_that_loses_its_holders_keeps_its_prefix_for_the_next_attempt(
    tmp_path: Path,
) -> None:
    data = os.urandom(16 * CHUNK)
    async with trio.open_nursery() as nursery:
        first = await start(nursery, tmp_path, "first", SlowHolder)
        second = await start(nursery, tmp_path, "second")
        wanter = await start(nursery, tmp_path, "wanter", limits=FAST)
        blob_id = first.store.put(data)
        second.store.put(data)
        link(first, wanter)
        await linked(wanter, first)
        failure: list[BaseException] = []

        async def fetch() -> None:
            try:
                await wanter.exchange.fetch(blob_id, [first.peer_id])
            except BlobUnavailable as exc:
                failure.append(exc)

        nursery.start_soon(fetch)
        await eventually(lambda: _staged(wanter) >= 4 * CHUNK)
        wanter.swarm.disconnect(first.peer_id)
        await eventually(lambda: bool(failure))
        assert "link closed" in str(failure[0]) and "staged" in str(failure[0])
        assert not wanter.store.has(blob_id)
        kept = wanter.store.staged_fetches()
        assert [fetch.blob_id for fetch in kept] == [blob_id] and kept[0].size >= 4 * CHUNK
        link(second, wanter)
        await linked(wanter, second)
        await wanter.exchange.fetch(blob_id, [second.peer_id])
        assert wanter.store.get(blob_id) == data
        assert second.exchange.served_bytes == len(data) - kept[0].size
        assert staging_files(wanter) == []
        nursery.cancel_scope.cancel()


async def test_a_holder_refuses_transfers_beyond_its_limit_and_serves_them_later(
    tmp_path: Path,
) -> None:
    data = os.urandom(6 * CHUNK)
    limits = ExchangeLimits(max_serving=1, serve_idle_s=0.2)
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder", SlowHolder, limits=limits)
        wanters = [await start(nursery, tmp_path, f"wanter{i}") for i in range(2)]
        blob_id = holder.store.put(data)
        for wanter in wanters:
            link(holder, wanter)
            await linked(wanter, holder)
        refusals: list[str] = []
        original = holder.exchange._busy

        def spy(peer: Any, request: Any) -> str | None:
            why = original(peer, request)
            if why is not None:
                refusals.append(why)
            return why

        holder.exchange._busy = spy  # type: ignore[method-assign]
        async with trio.open_nursery() as fetches:
            for wanter in wanters:
                fetches.start_soon(wanter.exchange.fetch, blob_id, [holder.peer_id])
        assert all(w.store.get(blob_id) == data for w in wanters)
        assert any("serving 1 transfers" in why for why in refusals)
        nursery.cancel_scope.cancel()


async def test_fetches_beyond_the_limit_wait_their_turn(tmp_path: Path) -> None:
    blobs = [os.urandom(4 * CHUNK) for _ in range(3)]
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder", SlowHolder)
        wanter = await start(nursery, tmp_path, "wanter", limits=ExchangeLimits(max_fetches=1))
        ids = [holder.store.put(data) for data in blobs]
        link(holder, wanter)
        await linked(wanter, holder)
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, len(wanter.exchange.transfers()))
                await trio.sleep(0)

        nursery.start_soon(watch)
        async with trio.open_nursery() as fetches:
            for blob_id in ids:
                fetches.start_soon(wanter.exchange.fetch, blob_id, [holder.peer_id])
        assert most == 1
        assert all(wanter.store.has(blob_id) for blob_id in ids)
        nursery.cancel_scope.cancel()


async def test_two_fetches_of_one_blob_share_the_work(tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK)
    async with trio.open_nursery() as nursery:
        holder = await start(nursery, tmp_path, "holder", SlowHolder)
        wanter = await start(nursery, tmp_path, "wanter")
        blob_id = holder.store.put(data)
        link(holder, wanter)
        await linked(wanter, holder)
        async with trio.open_nursery() as fetches:
            for _ in range(2):
                fetches.start_soon(wanter.exchange.fetch, blob_id, [holder.peer_id])
        assert holder.exchange.served_bytes == len(data)
        nursery.cancel_scope.cancel()


async def test_a_holder_with_a_damaged_copy_deletes_it_and_refuses(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK)
    async with trio.open_nursery() as nursery:
        damaged = await start(nursery, tmp_path, "damaged")
        wanter = await start(nursery, tmp_path, "wanter", limits=FAST)
        blob_id = damaged.store.put(data)
        path = damaged.store.path_of(blob_id)
        path.write_bytes(b"rot" + path.read_bytes()[3:])
        link(damaged, wanter)
        await linked(wanter, damaged)
        with pytest.raises(BlobUnavailable, match="damaged here"):
            await wanter.exchange.fetch(blob_id, [damaged.peer_id])
        assert not damaged.store.has(blob_id)
        assert wanter.score_of(damaged) >= 0  # honest about its damage: no blame
        nursery.cancel_scope.cancel()


async def test_replies_nobody_asked_for_are_scored(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        target = await start(nursery, tmp_path, "target")
        stranger = await start(nursery, tmp_path, "stranger")
        link(target, stranger)
        await linked(target, stranger)
        for body in (
            ["chunk", 10**9, 0, b"x", 1],
            ["digest-page", 10**9, 1, CHUNK, 0, b"d" * 32],
            ["has", 10**9, True],
            ["digests", 1, str(BlobId.of_bytes(b"x")), 0, 10**9],
            ["want", 1, str(BlobId.of_bytes(b"x")), 0, True],
            ["none", 1],
        ):
            target.exchange.message(stranger.peer_id, body)
        row = next(r for r in target.swarm.score_table() if r.peer == stranger.peer_id)
        assert row.invalid_messages == pytest.approx(-10 * 6**2, rel=0.01)
        nursery.cancel_scope.cancel()


async def test_requests_are_served_only_once_the_exchange_runs(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = await start(nursery, tmp_path, "node")
        idle = BlobExchange(node.swarm, node.store)
        sent: list[Any] = []
        node.swarm.send = lambda peer, protocol, body: sent.append(body) or True  # type: ignore
        idle.message(node.peer_id, ["want", 7, str(BlobId.of_bytes(b"x")), 0, 10])
        assert sent == [["none", 7, "busy: not serving yet"]]
        nursery.cancel_scope.cancel()


def _staged(node: Node) -> int:
    return sum(t.staged_bytes for t in node.exchange.transfers())


async def test_a_blob_nobody_linked_has_fails_at_once_saying_what_to_do(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        other = await start(nursery, tmp_path, "other")
        wanter = await start(nursery, tmp_path, "wanter")
        link(other, wanter)
        await linked(wanter, other)
        with trio.fail_after(3), pytest.raises(BlobUnavailable, match="link to a peer"):
            await wanter.exchange.fetch(BlobId.of_bytes(b"nowhere"))
        nursery.cancel_scope.cancel()


async def test_a_holder_answering_amiss_is_scored_and_dropped_at_once(tmp_path: Path) -> None:
    class Amiss(BlobExchange):
        async def _answer(self, request: Any) -> list[Any]:
            reply = await super()._answer(request)
            if reply[0] == "chunk":
                reply[2] += 1  # data from another offset than asked
            return reply

    data = os.urandom(4 * CHUNK)
    async with trio.open_nursery() as nursery:
        amiss = await start(nursery, tmp_path, "amiss", Amiss)
        honest = await start(nursery, tmp_path, "honest")
        wanter = await start(nursery, tmp_path, "wanter")
        blob_id = amiss.store.put(data)
        amiss.store.chunk_digests(blob_id, CHUNK)
        honest.store.put(data)
        link(amiss, wanter)
        link(honest, wanter)
        await linked(wanter, amiss, honest)
        with trio.fail_after(3):  # not after a chunk timeout
            await wanter.exchange.fetch(blob_id, [amiss.peer_id, honest.peer_id])
        assert wanter.store.get(blob_id) == data
        assert wanter.score_of(amiss) < 0
        nursery.cancel_scope.cancel()
