"""Blob exchange: content-addressed blobs fetched from peers in chunks, verified on arrival.

Model weights and job images are blobs named by their SHA-256; a node that lacks one asks
peers that may hold it (the queue node that sent a job, the registry members that merged
a model), a chunk at a time with a few chunks in flight, and writes them through the blob
store's streaming writer, which checks the hash before the blob becomes visible. A peer
that sends bytes that do not hash to the id is scored down and the next peer is tried.

Protocol "blobs" over peer links::

    ["want", request, blob_id, offset, length]      length <= CHUNK
    ["chunk", request, offset, data, total_size]
    ["none", request, reason]                       not held here, or refused
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import trio

from lightbox_node.errors import BlobNotFound, LightboxError, StoreError
from lightbox_node.gossip.actions import PeerEvent
from lightbox_node.identity import PeerId
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.store.blob_id import InvalidBlobId
from lightbox_node.swarm import Swarm

log = logging.getLogger("lightbox.blobs")

PROTOCOL = "blobs"
CHUNK = 256 << 10
"""Bytes per chunk: well under the 1 MiB link message limit."""
WINDOW = 4
"""Chunks in flight per fetch."""
CHUNK_TIMEOUT_S = 10.0
MAX_FETCH_BYTES = 32 << 30
"""Largest blob fetched unless the caller says otherwise (full-size model weights fit)."""
MAX_REQUESTS_PER_PEER = 16
"""Chunk requests served at once for one peer; more are answered with "none"."""


class BlobUnavailable(LightboxError):
    """No peer asked could deliver the blob (none holds it, or they sent bad data)."""


@dataclass(slots=True)
class _Pending:
    peer: PeerId
    offset: int
    reply: trio.MemorySendChannel[tuple[str, Any]]


class BlobExchange:
    """Serves this node's blobs to peers and fetches missing ones from them."""

    def __init__(self, swarm: Swarm, store: BlobStore) -> None:
        self.swarm = swarm
        self.store = store
        self._requests = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._serving: dict[PeerId, int] = {}
        self._nursery: trio.Nursery | None = None
        self.fetched_bytes = 0
        self.served_bytes = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- ProtocolHandler --------------------------------------------------------------------

    def link_up(self, peer: PeerId) -> None:
        pass

    def link_down(self, peer: PeerId) -> None:
        for request, pending in list(self._pending.items()):
            if pending.peer == peer:
                self._answer(request, ("gone", "the link closed"))

    def message(self, peer: PeerId, body: Any) -> None:
        if type(body) is not list or not body or type(body[0]) is not str:
            return self._invalid(peer, "a blobs message is [tag, ...]")
        tag = body[0]
        if tag == "want" and len(body) == 5:
            self._want(peer, body)
        elif tag == "chunk" and len(body) == 5:
            request, offset, data, total = body[1:]
            pending = self._pending.get(request) if type(request) is int else None
            if (
                pending is None
                or pending.peer != peer
                or type(offset) is not int
                or offset != pending.offset
                or type(data) is not bytes
                or len(data) > CHUNK
                or type(total) is not int
                or total < 0
            ):
                return self._invalid(peer, "unexpected or malformed chunk")
            self._answer(request, ("chunk", (data, total)))
        elif tag == "none" and len(body) == 3:
            request, reason = body[1], body[2]
            pending = self._pending.get(request) if type(request) is int else None
            if pending is not None and pending.peer == peer and type(reason) is str:
                self._answer(request, ("none", reason[:200]))
        else:
            self._invalid(peer, f"unknown blobs message {tag[:20]!r}")

    def _invalid(self, peer: PeerId, why: str) -> None:
        self.swarm.scores.observe(PeerEvent(peer, "invalid_message", why), trio.current_time())

    def _answer(self, request: int, answer: tuple[str, Any]) -> None:
        pending = self._pending.pop(request, None)
        if pending is not None:
            with contextlib.suppress(
                trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
            ):
                pending.reply.send_nowait(answer)

    # -- serving ----------------------------------------------------------------------------

    def _want(self, peer: PeerId, body: list[Any]) -> None:
        request, blob_text, offset, length = body[1:]
        if type(request) is not int or type(offset) is not int or type(length) is not int:
            return self._invalid(peer, "want: bad field types")
        if offset < 0 or not 0 < length <= CHUNK:
            return self._invalid(peer, "want: bad range")
        try:
            blob_id = BlobId.parse(blob_text)
        except InvalidBlobId:
            return self._invalid(peer, "want: bad blob id")
        if self._serving.get(peer, 0) >= MAX_REQUESTS_PER_PEER or self._nursery is None:
            self.swarm.send(peer, PROTOCOL, ["none", request, "busy: too many requests"])
            return
        self._serving[peer] = self._serving.get(peer, 0) + 1
        self._nursery.start_soon(self._serve, peer, request, blob_id, offset, length)

    async def _serve(
        self, peer: PeerId, request: int, blob_id: BlobId, offset: int, length: int
    ) -> None:
        try:
            try:
                data, total = await trio.to_thread.run_sync(
                    lambda: (
                        self.store.read_chunk(blob_id, offset, length),
                        self.store.size(blob_id),
                    )
                )
            except BlobNotFound:
                self.swarm.send(peer, PROTOCOL, ["none", request, "not held here"])
                return
            except StoreError as exc:
                self.swarm.send(peer, PROTOCOL, ["none", request, f"unreadable: {exc}"[:200]])
                return
            if self.swarm.send(peer, PROTOCOL, ["chunk", request, offset, data, total]):
                self.served_bytes += len(data)
        finally:
            self._serving[peer] -= 1
            if not self._serving[peer]:
                del self._serving[peer]

    # -- fetching ---------------------------------------------------------------------------

    async def fetch(
        self, blob_id: BlobId, peers: Iterable[PeerId], *, max_bytes: int = MAX_FETCH_BYTES
    ) -> BlobId:
        """Make `blob_id` present here, from the first of `peers` that delivers it intact."""
        if await trio.to_thread.run_sync(self.store.has, blob_id):
            return blob_id
        reasons = []
        for peer in peers:
            if peer not in self.swarm.linked_peers:
                reasons.append(f"{peer.short}: not linked")
                continue
            try:
                await self._fetch_from(peer, blob_id, max_bytes)
                return blob_id
            except BlobUnavailable as exc:
                reasons.append(f"{peer.short}: {exc}")
        raise BlobUnavailable(
            f"blob {blob_id} could not be fetched: " + ("; ".join(reasons) or "no peers to ask")
        )

    async def _fetch_from(self, peer: PeerId, blob_id: BlobId, max_bytes: int) -> None:
        writer = await trio.to_thread.run_sync(lambda: self.store.open_writer(expected=blob_id))
        try:
            total = await self._transfer(peer, blob_id, writer, max_bytes)
            try:
                await trio.to_thread.run_sync(writer.commit)
            except StoreError as exc:  # the bytes do not hash to the id: a lying peer
                self._invalid(peer, f"sent a blob that does not match {blob_id}")
                raise BlobUnavailable(f"delivered bytes that do not match the id ({exc})") from None
            self.fetched_bytes += total
            log.debug("blob fetched", extra={"blob": str(blob_id), "peer": peer.short})
        finally:
            await trio.to_thread.run_sync(writer.abort)

    async def _transfer(self, peer: PeerId, blob_id: BlobId, writer: Any, max_bytes: int) -> int:
        """Pipelined chunk requests (up to WINDOW in flight), written in order."""
        total: int | None = None
        next_offset = 0
        in_flight: list[tuple[int, int, trio.MemoryReceiveChannel[tuple[str, Any]]]] = []

        def ask(offset: int) -> None:
            send, receive = trio.open_memory_channel[tuple[str, Any]](1)
            request = next(self._requests)
            self._pending[request] = _Pending(peer, offset, send)
            in_flight.append((request, offset, receive))
            if not self.swarm.send(peer, PROTOCOL, ["want", request, str(blob_id), offset, CHUNK]):
                self._answer(request, ("gone", "could not send the request"))

        try:
            ask(0)
            next_offset = CHUNK
            written = 0
            while in_flight:
                _, offset, receive = in_flight.pop(0)
                with trio.move_on_after(CHUNK_TIMEOUT_S) as timer:
                    kind, value = await receive.receive()
                if timer.cancelled_caught:
                    raise BlobUnavailable(f"no answer within {CHUNK_TIMEOUT_S:g} s")
                if kind != "chunk":
                    raise BlobUnavailable(str(value))
                data, size = value
                if total is None:
                    if size > max_bytes:
                        raise BlobUnavailable(f"it is {size} bytes, over the {max_bytes} limit")
                    total = size
                elif size != total:
                    raise BlobUnavailable("the peer reported two different sizes")
                expected = min(CHUNK, total - offset)
                if len(data) != expected:
                    raise BlobUnavailable(
                        f"chunk at {offset} has {len(data)} bytes, not {expected}"
                    )
                await trio.to_thread.run_sync(writer.write, data)
                written += len(data)
                while next_offset < total and len(in_flight) < WINDOW:
                    ask(next_offset)
                    next_offset += CHUNK
            return written
        finally:
            for request, _, _ in in_flight:
                self._pending.pop(request, None)
