"""Blob exchange: the trio shell that serves this node's blobs to peers and fetches missing ones.

Model weights and job images are blobs named by their SHA-256. A node *announces* a bounded
set of blobs it offers (model weights, adapters: whatever it pins for sharing) in its signed
capability record, so `holders(blob_id)` can read from gossip who has one; for anything not
announced (a job's image), `find_holders` asks linked peers directly ("have?").

`fetch` asks every holder for its digest list, then chunks from several holders in parallel,
each chunk checked against the list on arrival and the whole against the id before it
becomes visible; `transfer.Transfer` is the pure core deciding who is asked what and who
is blamed (see there for why only proven liars are scored down). The staged prefix of a
fetch that ran out of holders stays in the store's staging folder, and the next fetch of
the same blob resumes from it; a fetch waits `stall_timeout_s` for a holder's link to come
back before it gives up. Fetches and served transfers are bounded (`ExchangeLimits`).

Blocking work runs in worker threads: each batch of arriving chunks is hashed in one, and a
writer task stages verified chunks through another, so asking for more chunks never waits on
the disk. The protocol itself is `protocol`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from lightbox_node.blobs import protocol
from lightbox_node.blobs.protocol import (
    CHUNK,
    PROTOCOL,
    Chunk,
    DigestPage,
    Has,
    Have,
    Malformed,
    Refused,
    WantChunk,
    WantDigests,
)
from lightbox_node.blobs.transfer import (
    MAX_FETCH_BYTES,
    Action,
    Append,
    AskChunk,
    AskDigests,
    Blame,
    Commit,
    Discard,
    Transfer,
    TransferParams,
    Truncate,
)
from lightbox_node.errors import BlobCorrupt, BlobNotFound, LightboxError, StoreError
from lightbox_node.gossip.actions import PeerEvent
from lightbox_node.gossip.records import MAX_BLOBS
from lightbox_node.identity import PeerId
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.store.blobs import PartialBlob
from lightbox_node.swarm import Swarm

log = logging.getLogger("lightbox.blobs")


class BlobUnavailable(LightboxError):
    """No peer asked could deliver the blob (none holds it, or they sent bad data)."""


@dataclass(frozen=True, slots=True)
class ExchangeLimits:
    """How much this node fetches and serves at once; one object, like every setting."""

    max_fetches: int = 4
    """Blobs fetched at once; further `fetch` calls wait their turn."""
    max_serving: int = 8
    """Transfers (peer, blob) served at once; a request for another is answered busy."""
    max_requests_per_peer: int = 16
    """Requests of one peer in service at once; more are answered busy."""
    serve_idle_s: float = 5.0
    """A served transfer with no request for this long no longer counts."""
    disk_threads: int = 4
    """Worker threads reading blobs for peers at once."""
    stall_timeout_s: float = 10.0
    """How long a fetch with no holder left waits for one (a link coming back) before it
    gives up, keeping what it staged for the next attempt."""
    have_timeout_s: float = 2.0
    max_have_peers: int = 16
    """Linked peers asked "have?" when gossip names too few holders."""
    max_announced: int = MAX_BLOBS
    transfer: TransferParams = field(default_factory=TransferParams)


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """One fetch under way, for dashboards and tests."""

    blob_id: BlobId
    total: int | None
    """Bytes in the blob, once a digest list is in."""
    staged_bytes: int
    received_from: Mapping[PeerId, int]
    """Verified chunk bytes per holder in this attempt."""


@dataclass(slots=True)
class _Pending:
    peer: PeerId
    kind: str
    """"have", "digests" or "chunk": what the reply must be."""
    position: int
    """The chunk index, or the first digest asked."""
    offset: int
    sink: trio.MemorySendChannel[tuple[Any, ...]]


@dataclass(slots=True)
class _Run:
    """A fetch in progress: its core, its staged file and its event inbox."""

    core: Transfer
    partial: PartialBlob
    inbox: trio.MemorySendChannel[tuple[Any, ...]]
    events: trio.MemoryReceiveChannel[tuple[Any, ...]]
    staging: trio.MemorySendChannel[Action]
    """To the writer task: Append, Truncate, Discard and Commit, in order."""
    wanted: set[PeerId]
    came_back: set[PeerId] = field(default_factory=set)
    finished: bool = False


@dataclass(slots=True)
class _FetchSlot:
    lock: trio.Lock = field(default_factory=trio.Lock)
    users: int = 0


class BlobExchange:
    """Serves this node's blobs to peers and fetches missing ones from them."""

    def __init__(
        self, swarm: Swarm, store: BlobStore, *, limits: ExchangeLimits | None = None
    ) -> None:
        self.swarm = swarm
        self.store = store
        self.limits = limits or ExchangeLimits()
        self._requests = itertools.count(1)
        self._last_request = 0
        self._pending: dict[int, _Pending] = {}
        self._runs: dict[BlobId, _Run] = {}
        self._slots: dict[BlobId, _FetchSlot] = {}
        self._fetching = trio.CapacityLimiter(self.limits.max_fetches)
        self._disk = trio.CapacityLimiter(self.limits.disk_threads)
        self._serving: dict[PeerId, int] = {}
        self._served: dict[tuple[PeerId, BlobId], float] = {}
        self._listing: dict[BlobId, trio.Lock] = {}
        self._announced: collections.OrderedDict[BlobId, None] = collections.OrderedDict()
        self._nursery: trio.Nursery | None = None
        self.fetched_bytes = 0
        self.served_bytes = 0
        swarm.set_announced_blobs(self._announced_digests)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve peers until cancelled; blobs announced before now get their digest lists."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for blob_id in self._announced:
                nursery.start_soon(self._prepare, blob_id)
            task_status.started()
            await trio.sleep_forever()

    # -- announcing -------------------------------------------------------------------------

    def announce(self, blob_id: BlobId) -> None:
        """Offer a blob held here to the network (in this node's record, newest first).

        Meant for blobs worth sharing widely (model weights, adapters); at most
        `max_announced` are announced, the oldest dropping off. The digest list peers will
        ask for is computed ahead, so the first fetch does not wait for it.
        """
        self._announced.pop(blob_id, None)
        self._announced[blob_id] = None
        while len(self._announced) > self.limits.max_announced:
            self._announced.popitem(last=False)
        self.swarm.capabilities_changed()
        if self._nursery is not None:
            self._nursery.start_soon(self._prepare, blob_id)

    def withdraw(self, blob_id: BlobId) -> None:
        """Stop announcing a blob (it may still be served to whoever asks)."""
        if blob_id in self._announced:
            del self._announced[blob_id]
            self.swarm.capabilities_changed()

    def announced(self) -> list[BlobId]:
        """The blobs this node announces, newest first: pinned, so never garbage-collected."""
        return list(reversed(self._announced))

    def _announced_digests(self) -> list[bytes]:
        return [bytes.fromhex(blob_id.hex_digest) for blob_id in self.announced()]

    def holders(self, blob_id: BlobId) -> list[PeerId]:
        """Peers whose live record announces `blob_id`: linked ones first, best score first."""
        digest = bytes.fromhex(blob_id.hex_digest)
        linked = set(self.swarm.linked_peers)
        now = trio.current_time()
        found = [
            record.author
            for record in self.swarm.records()
            if digest in record.blobs and record.author != self.swarm.peer_id
        ]
        return sorted(
            found, key=lambda peer: (peer not in linked, -self.swarm.scores.score(peer, now))
        )

    async def find_holders(self, blob_id: BlobId) -> list[PeerId]:
        """Linked peers that hold `blob_id`: those gossip names, else those that say so."""
        linked = set(self.swarm.linked_peers)
        found = [peer for peer in self.holders(blob_id) if peer in linked]
        if len(found) >= self.limits.transfer.max_holders:
            return found
        ask = [peer for peer in self.swarm.linked_peers if peer not in found]
        ask = ask[: self.limits.max_have_peers]
        if not ask:
            return found
        send, receive = trio.open_memory_channel[tuple[Any, ...]](math.inf)
        requests = []
        for peer in ask:
            request = self._new_request(peer, "have", 0, 0, send)
            requests.append(request)
            if not self.swarm.send(peer, PROTOCOL, protocol.have(request, blob_id)):
                self._reply(request, ("has", peer, False))
        answered = 0
        with trio.move_on_after(self.limits.have_timeout_s):
            async for _, peer, held in receive:
                answered += 1
                if held:
                    found.append(peer)
                if answered == len(ask):
                    break
        for request in requests:
            self._pending.pop(request, None)
        return found

    # -- ProtocolHandler --------------------------------------------------------------------

    def link_up(self, peer: PeerId) -> None:
        for run in self._runs.values():
            self._post(run.inbox, ("up", peer))

    def link_down(self, peer: PeerId) -> None:
        for request, pending in list(self._pending.items()):
            if pending.peer == peer and pending.kind == "have":
                self._reply(request, ("has", peer, False))
            elif pending.peer == peer:
                del self._pending[request]
        for run in self._runs.values():
            self._post(run.inbox, ("gone", peer))

    def message(self, peer: PeerId, body: Any) -> None:
        try:
            message = protocol.parse(body)
        except Malformed as exc:
            return self._invalid(peer, str(exc))
        if isinstance(message, Have | WantDigests | WantChunk):
            return self._accept_request(peer, message)
        pending = self._pending.get(message.request)
        if pending is None or pending.peer != peer:
            if pending is not None or message.request > self._last_request:
                self._invalid(peer, "a reply to a request that was never sent to it")
            return  # a late reply to a request given up on
        if isinstance(message, Refused):
            if pending.kind == "have":
                self._reply(message.request, ("has", peer, False))
            else:
                index = pending.position if pending.kind == "chunk" else None
                event = ("refused", peer, index, message.reason, message.busy)
                self._reply(message.request, event)
        elif isinstance(message, Has) and pending.kind == "have":
            self._reply(message.request, ("has", peer, message.held))
        elif (
            isinstance(message, DigestPage)
            and pending.kind == "digests"
            and message.first == pending.position
        ):
            self._reply(message.request, ("digests", peer, message))
        elif (
            isinstance(message, Chunk)
            and pending.kind == "chunk"
            and message.offset == pending.offset
        ):
            self._reply(message.request, ("chunk", peer, pending.position, message.data))
        else:  # scored here; the fetch just stops asking this peer
            self._invalid(peer, f"a {type(message).__name__} that does not answer its request")
            if pending.kind == "have":
                self._reply(message.request, ("has", peer, False))
            else:
                index = pending.position if pending.kind == "chunk" else None
                self._reply(message.request, ("refused", peer, index, "answered amiss", False))

    def _invalid(self, peer: PeerId, why: str) -> None:
        self.swarm.scores.observe(PeerEvent(peer, "invalid_message", why), trio.current_time())
        log.info("blobs: peer scored down", extra={"peer": peer.short, "why": why[:200]})

    def _new_request(
        self,
        peer: PeerId,
        kind: str,
        position: int,
        offset: int,
        sink: trio.MemorySendChannel[tuple[Any, ...]],
    ) -> int:
        request = next(self._requests)
        self._last_request = request
        self._pending[request] = _Pending(peer, kind, position, offset, sink)
        return request

    def _reply(self, request: int, event: tuple[Any, ...]) -> None:
        pending = self._pending.pop(request, None)
        if pending is not None:
            self._post(pending.sink, event)

    @staticmethod
    def _post(sink: trio.MemorySendChannel[tuple[Any, ...]], event: tuple[Any, ...]) -> None:
        # Closed: the fetch or query is over.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            sink.send_nowait(event)

    # -- serving ----------------------------------------------------------------------------

    def _accept_request(self, peer: PeerId, request: Have | WantDigests | WantChunk) -> None:
        busy = self._busy(peer, request)
        if busy is not None:
            self.swarm.send(peer, PROTOCOL, protocol.refused(request.request, busy))
            return
        assert self._nursery is not None
        self._serving[peer] = self._serving.get(peer, 0) + 1
        self._nursery.start_soon(self._serve, peer, request)

    def _busy(self, peer: PeerId, request: Have | WantDigests | WantChunk) -> str | None:
        """Why a request is refused for now ("busy: ..."), or None to serve it."""
        if self._nursery is None:
            return "busy: not serving yet"
        if self._serving.get(peer, 0) >= self.limits.max_requests_per_peer:
            return "busy: too many requests from you"
        if isinstance(request, Have):
            return None
        now = trio.current_time()
        key = (peer, request.blob_id)
        if key not in self._served:
            idle = now - self.limits.serve_idle_s
            for old in [k for k, last in self._served.items() if last < idle]:
                del self._served[old]
            if len(self._served) >= self.limits.max_serving:
                return f"busy: serving {len(self._served)} transfers"
        self._served[key] = now
        return None

    async def _serve(self, peer: PeerId, request: Have | WantDigests | WantChunk) -> None:
        try:
            reply = await self._answer(request)
            if self.swarm.send(peer, PROTOCOL, reply) and isinstance(request, WantChunk):
                self.served_bytes += len(reply[3])
        finally:
            self._serving[peer] -= 1
            if not self._serving[peer]:
                del self._serving[peer]

    async def _answer(self, request: Have | WantDigests | WantChunk) -> list[Any]:
        number = request.request
        if isinstance(request, Have):
            held = await trio.to_thread.run_sync(self.store.has, request.blob_id)
            return protocol.has(number, held)
        try:
            if isinstance(request, WantDigests):
                total, digests = await self._digests_of(request.blob_id)
                page = digests[request.first * 32 : (request.first + request.count) * 32]
                return protocol.digest_page(number, total, CHUNK, request.first, page)
            blob_id, offset, length = request.blob_id, request.offset, request.length
            async with self._disk:
                data, total = await trio.to_thread.run_sync(
                    lambda: (
                        self.store.read_chunk(blob_id, offset, length),
                        self.store.size(blob_id),
                    )
                )
            return protocol.chunk(number, offset, data, total)
        except BlobNotFound:
            return protocol.refused(number, "not held here")
        except BlobCorrupt:
            log.warning("blob damaged on disk: deleted", extra={"blob": str(request.blob_id)})
            self.withdraw(request.blob_id)
            await trio.to_thread.run_sync(self.store.delete, request.blob_id)
            return protocol.refused(number, "damaged here")
        except StoreError as exc:
            return protocol.refused(number, f"unreadable here: {exc}")

    async def _digests_of(self, blob_id: BlobId) -> tuple[int, bytes]:
        """The blob's size and digest list; computed (and verified) once per blob at a time."""
        lock = self._listing.setdefault(blob_id, trio.Lock())
        try:
            async with lock, self._disk:
                return await trio.to_thread.run_sync(
                    lambda: (self.store.size(blob_id), self.store.chunk_digests(blob_id, CHUNK))
                )
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._listing.pop(blob_id, None)

    async def _prepare(self, blob_id: BlobId) -> None:
        try:
            await self._digests_of(blob_id)
        except BlobCorrupt:
            self.withdraw(blob_id)
            log.warning("announced blob is damaged: not offered", extra={"blob": str(blob_id)})
        except StoreError as exc:  # not (or no longer) here
            log.info("announced blob not readable", extra={"blob": str(blob_id), "error": str(exc)})

    # -- fetching ---------------------------------------------------------------------------

    async def fetch(
        self,
        blob_id: BlobId,
        peers: Iterable[PeerId] | None = None,
        *,
        max_bytes: int = MAX_FETCH_BYTES,
    ) -> BlobId:
        """Make `blob_id` present here, fetched from `peers` (default: `find_holders`).

        Raises BlobUnavailable with every holder's reason when no one delivers it intact.
        Concurrent fetches of one blob share the work; at most `max_fetches` run at once.
        """
        if await trio.to_thread.run_sync(self.store.has, blob_id):
            return blob_id
        slot = self._slots.setdefault(blob_id, _FetchSlot())
        slot.users += 1
        try:
            async with slot.lock:
                if await trio.to_thread.run_sync(self.store.has, blob_id):
                    return blob_id
                async with self._fetching:
                    chosen = list(peers) if peers is not None else await self.find_holders(blob_id)
                    if not chosen:
                        raise BlobUnavailable(
                            f"blob {blob_id} could not be fetched: no linked peer announces it "
                            "or says it has it; link to a peer that holds it and try again"
                        )
                    await self._fetch(blob_id, chosen, max_bytes)
                    return blob_id
        finally:
            slot.users -= 1
            if not slot.users:
                del self._slots[blob_id]

    def transfers(self) -> list[TransferProgress]:
        """The fetches under way."""
        return [
            TransferProgress(
                blob_id, run.core.total, run.core.staged_bytes, run.core.received_from()
            )
            for blob_id, run in self._runs.items()
        ]

    async def _fetch(self, blob_id: BlobId, holders: list[PeerId], max_bytes: int) -> None:
        params = dataclasses.replace(self.limits.transfer, max_bytes=max_bytes)
        partial = await trio.to_thread.run_sync(self.store.open_partial, blob_id, params.chunk_size)
        core = Transfer(
            blob_id,
            staged=partial.resumed_digests,
            staged_bytes=partial.size,
            params=params,
        )
        inbox, events = trio.open_memory_channel[tuple[Any, ...]](math.inf)
        staging, staged = trio.open_memory_channel[Action](params.window)
        run = _Run(core, partial, inbox, events, staging, set(holders))
        self._runs[blob_id] = run
        failure: BlobUnavailable | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stage, run, staged)
                try:
                    await self._drive(run, holders)
                except BlobUnavailable as exc:
                    failure = exc  # after the writer has staged what was verified
                finally:
                    staging.close()
        finally:
            del self._runs[blob_id]
            for request, pending in list(self._pending.items()):
                if pending.sink is inbox:
                    del self._pending[request]
            inbox.close()
            if not run.finished:
                # Keep what was staged for the next attempt; an empty file is not worth it.
                keep = run.partial.close if run.partial.size else run.partial.discard
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(keep)
        if failure is not None:
            raise failure
        self.fetched_bytes += sum(core.received_from().values())
        log.debug("blob fetched", extra={"blob": str(blob_id), "bytes": core.staged_bytes})

    async def _drive(self, run: _Run, holders: list[PeerId]) -> None:
        """Feed the core with replies and carry out its actions until the blob is in."""
        core = run.core
        linked = set(self.swarm.linked_peers)
        core.reasons += [f"{peer.short}: not linked" for peer in holders if peer not in linked]
        actions = core.add_holders([p for p in holders if p in linked], trio.current_time())
        while True:
            await self._carry_out(run, actions)
            if core.done:
                return
            if core.stalled:
                actions = await self._wait_for_holders(run)
            else:
                actions = await self._next_actions(run)

    async def _next_actions(self, run: _Run) -> list[Action]:
        """Wait for replies (or the core's next deadline) and feed them to the core."""
        core = run.core
        events: list[tuple[Any, ...]] = []
        deadline = core.next_deadline()
        with trio.move_on_at(deadline if deadline is not None else math.inf):
            events.append(await run.events.receive())
        while True:
            try:
                events.append(run.events.receive_nowait())
            except trio.WouldBlock:
                break
        data = [event[3] for event in events if event[0] == "chunk"]
        digests = iter(
            await trio.to_thread.run_sync(lambda: [hashlib.sha256(d).digest() for d in data])
            if data
            else ()
        )
        now = trio.current_time()
        actions: list[Action] = []
        for event in events:
            kind, peer = event[0], event[1]
            if kind == "chunk":
                actions += core.chunk_received(peer, event[2], event[3], next(digests), now)
            elif kind == "digests":
                page: DigestPage = event[2]
                actions += core.digests_received(
                    peer, page.total, page.chunk_size, page.first, page.digests, now
                )
            elif kind == "refused":
                actions += core.refused(peer, event[2], event[3], event[4], now)
            elif kind == "gone":
                actions += core.peer_gone(peer, now)
            elif kind == "up" and self._wanted(run, peer):
                actions += core.add_holders([peer], now)
            elif kind == "committed":
                actions += core.committed() if event[2] else core.hash_mismatch(now)
        deadline = core.next_deadline()
        if deadline is not None and deadline <= now:
            actions += core.tick(now)
        return actions

    def _wanted(self, run: _Run, peer: PeerId) -> bool:
        """Whether a peer whose link came up may hold what `run` fetches."""
        return peer in run.wanted or peer in self.holders(run.core.blob_id)

    async def _wait_for_holders(self, run: _Run) -> list[Action]:
        """No holder left: wait for one to (re)appear, or give up keeping the staged part."""
        core = run.core
        patience = self.limits.stall_timeout_s if core.worth_waiting else 0
        with trio.move_on_after(patience):
            while True:
                linked = set(self.swarm.linked_peers)
                candidates = [
                    peer
                    for peer in run.wanted | set(self.holders(core.blob_id))
                    if peer in linked and (core.holder_state(peer) is None or peer in run.came_back)
                ]
                run.came_back.clear()
                if candidates:
                    actions = core.add_holders(candidates, trio.current_time())
                    if not core.stalled:
                        return actions
                with trio.move_on_after(0.5):
                    event = await run.events.receive()
                    if event[0] == "up":
                        run.came_back.add(event[1])
        staged = f"; {core.staged_bytes} bytes staged for the next attempt" * bool(
            core.staged_bytes
        )
        raise BlobUnavailable(
            f"blob {core.blob_id} could not be fetched: "
            + ("; ".join(core.reasons) or "no peers to ask")
            + staged
        )

    async def _carry_out(self, run: _Run, actions: list[Action]) -> None:
        """Send requests and scores at once; staging goes to the writer task, in order, so
        hashing and asking for more chunks never wait on the disk."""
        for action in actions:
            if isinstance(action, AskChunk):
                self._ask(run, action.peer, "chunk", action.index, action.offset, action.length)
            elif isinstance(action, AskDigests):
                self._ask(run, action.peer, "digests", action.first, 0, action.count)
            elif isinstance(action, Blame):
                self._invalid(action.peer, f"blob {run.core.blob_id}: {action.why}")
            else:
                await run.staging.send(action)

    async def _stage(self, run: _Run, staged: trio.MemoryReceiveChannel[Action]) -> None:
        """The writer: appends (batched), cuts and commits in the core's order."""
        async with staged:
            async for first in staged:
                batch = [first]
                while True:
                    try:
                        batch.append(staged.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                chunks: list[bytes] = []
                for action in batch:
                    if isinstance(action, Append):
                        chunks += action.chunks
                        continue
                    if chunks:
                        await trio.to_thread.run_sync(run.partial.append, chunks)
                        chunks = []
                    await self._stage_one(run, action)
                if chunks:
                    await trio.to_thread.run_sync(run.partial.append, chunks)

    async def _stage_one(self, run: _Run, action: Action) -> None:
        if isinstance(action, Truncate):
            await trio.to_thread.run_sync(run.partial.truncate, action.size)
        elif isinstance(action, Discard):
            await trio.to_thread.run_sync(run.partial.discard)
            run.partial = await trio.to_thread.run_sync(
                self.store.open_partial, run.core.blob_id, run.core.params.chunk_size
            )
        elif isinstance(action, Commit):
            try:
                await trio.to_thread.run_sync(run.partial.commit, action.digests)
            except BlobCorrupt:
                self._post(run.inbox, ("committed", None, False))
            else:
                run.finished = True
                self._post(run.inbox, ("committed", None, True))

    def _ask(self, run: _Run, peer: PeerId, kind: str, position: int, offset: int, n: int) -> None:
        request = self._new_request(peer, kind, position, offset, run.inbox)
        blob_id = run.core.blob_id
        if kind == "chunk":
            body = protocol.want_chunk(request, blob_id, offset, n)
        else:
            body = protocol.want_digests(request, blob_id, position, n)
        if not self.swarm.send(peer, PROTOCOL, body):
            index = position if kind == "chunk" else None
            self._reply(request, ("refused", peer, index, "busy: could not send", True))
