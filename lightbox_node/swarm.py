"""The swarm: the trio shell that keeps links to peers and runs the gossip cores over them.

It owns what the pure cores must not: links, tasks, timers. Each authenticated link gets a
receive loop and a bounded send queue; each message on a link is the canonical msgpack
array `[protocol, body]`, handed to the core that owns the protocol ("gossip" to the
router, "swim" to liveness, "px" to peer exchange here). Actions the cores return are
carried out at once: sends are queued (dropped, never awaited, when a peer's queue is full,
so one slow peer cannot stall the node), peer events go to the score table, a dead member's
link is closed.

Discovery only produces hints (bootstrap entries, mDNS answers, addresses in verified
capability records, peer exchange); the dialer keeps `target_links` links up by dialling
hints with per-address exponential backoff, and a peer is known only once its handshake
proves its key.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from lightbox_node.errors import LightboxError, WireError
from lightbox_node.gossip.actions import PeerEvent, RecordAccepted, RecordRemoved, Send
from lightbox_node.gossip.liveness import (
    Liveness,
    LivenessParams,
    MemberAlive,
    MemberDead,
    MemberSuspect,
)
from lightbox_node.gossip.peer_policy import PeerPolicy
from lightbox_node.gossip.record_store import RecordStore
from lightbox_node.gossip.records import MAX_BLOBS, CapabilityRecord, build_record_frame
from lightbox_node.gossip.router import GossipParams, GossipRouter
from lightbox_node.gossip.scores import PeerScores, ScoreParams, ScoreRow
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.discovery import PeerHint
from lightbox_node.net.errors import LinkError
from lightbox_node.net.link import PeerLink
from lightbox_node.wire import WireLimits, pack, unpack

log = logging.getLogger("lightbox.swarm")

MESSAGE_LIMITS = WireLimits(max_frame=1 << 20, max_bin=1 << 20, max_depth=16)
"""Bounds on one link message `[protocol, body]`; a record frame inside is bytes."""

MAX_PX_ENTRIES = 16
MAX_URL_LEN = 300


@dataclass(frozen=True, slots=True)
class SwarmParams:
    """Tunables of the shell; the cores have their own parameter objects."""

    target_links: int = 8
    """Dial hints while fewer links than this are up."""
    max_links: int = 48
    """Refuse links beyond this many (the oldest stay)."""
    record_ttl_s: float = 30.0
    """How long this node's capability record is valid; it is republished at a third of it."""
    send_queue: int = 256
    """Messages queued per link before further sends to that peer are dropped."""
    dial_backoff_s: float = 1.0
    dial_backoff_max_s: float = 60.0
    dial_timeout_s: float = 10.0
    explore_every_s: float = 30.0
    """Even with enough links, dial one more hint this often (up to `max_links`), so the
    graph keeps mixing and two halves that were partitioned find each other again."""
    gossip: GossipParams = field(default_factory=GossipParams)
    liveness: LivenessParams = field(default_factory=LivenessParams)
    scores: ScoreParams = field(default_factory=lambda: ScoreParams(accept_threshold=-80.0))
    """The router ignores a graylisted peer (score below -80) without scoring it further, so
    the swarm stops accepting it at the same score: a graylisted peer's link is closed."""


@dataclass(frozen=True, slots=True)
class PeerRow:
    """One line of the peers table for the API and the dashboard."""

    peer_id: str
    linked: bool
    address: str | None
    liveness: str | None
    score: float
    record: CapabilityRecord | None


@dataclass(slots=True)
class _Link:
    link: PeerLink
    dialled: bool
    outbox: trio.MemorySendChannel[bytes]
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass(slots=True)
class _Hint:
    hint: PeerHint
    failures: int = 0
    next_try: float = 0.0
    pinned: bool = False
    """Bootstrap hints are never forgotten."""


class ProtocolHandler(Protocol):
    """A shell-level protocol carried over peer links (e.g. "jobs"); called from link tasks."""

    def link_up(self, peer: PeerId) -> None: ...

    def link_down(self, peer: PeerId) -> None: ...

    def message(self, peer: PeerId, body: Any) -> None: ...


Dialer = Callable[[trio.Nursery, PeerHint], Awaitable[PeerLink]]
"""How the swarm opens a link for a hint (a WebSocket dial, or a memory pair in tests)."""


class Swarm:
    """Links to peers, gossip of capability records, liveness and peer scores, in one place."""

    def __init__(
        self,
        identity: Identity,
        *,
        network: str,
        roles: Iterable[str],
        version: str,
        dialer: Dialer | None = None,
        params: SwarmParams | None = None,
        policy: PeerPolicy | None = None,
        rng: random.Random | None = None,
        wall_ms: Callable[[], int] | None = None,
        tasks: Callable[[], list[dict[str, Any]]] = list,
        free_slots: Callable[[], int] = lambda: 0,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.network = network
        self.roles = tuple(roles)
        self.version = version
        self.params = params or SwarmParams()
        self.policy = policy or PeerPolicy()
        self._dialer = dialer
        self._rng = rng or random.Random()
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._tasks = tasks
        self._queues: Callable[[], list[PeerId]] = list
        self._free_slots = free_slots
        self._blobs: Callable[[], Sequence[bytes]] = list
        self.addresses: tuple[str, ...] = ()
        self.scores = PeerScores(self.params.scores)
        self.store = RecordStore(network, own=self.peer_id)
        self.router = GossipRouter(
            self.peer_id,
            self.store,
            rng=self._rng,
            params=self.params.gossip,
            score_of=lambda peer: self.scores.score(peer, trio.current_time()),
            wall_ms=lambda _now: self._wall_ms(),
        )
        self._liveness: Liveness | None = None
        self._links: dict[PeerId, _Link] = {}
        self._protocols: dict[str, ProtocolHandler] = {}
        self._hints: dict[str, _Hint] = {}
        self._seq = 0
        self._republish = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.ready = trio.Event()

    # -- public surface ---------------------------------------------------------------------

    @property
    def linked_peers(self) -> tuple[PeerId, ...]:
        return tuple(self._links)

    def records(self) -> list[CapabilityRecord]:
        """Live capability records of every known node, this one included."""
        return list(self.store.live(self._wall_ms()))

    def peer_rows(self) -> list[PeerRow]:
        now = trio.current_time()
        known: dict[PeerId, CapabilityRecord | None] = {r.author: r for r in self.records()}
        for peer in self._links:
            known.setdefault(peer, None)
        known.pop(self.peer_id, None)
        rows = []
        for peer, record in known.items():
            entry = self._links.get(peer)
            state = self._liveness.state(peer) if self._liveness else None
            rows.append(
                PeerRow(
                    peer_id=str(peer),
                    linked=entry is not None,
                    address=entry.link.remote_address if entry else None,
                    liveness=state.value if state else None,
                    score=round(self.scores.score(peer, now), 3),
                    record=record,
                )
            )
        return sorted(rows, key=lambda row: row.peer_id)

    def score_table(self) -> list[ScoreRow]:
        return self.scores.table(trio.current_time())

    def add_hints(self, hints: Iterable[PeerHint], *, pinned: bool = False) -> None:
        """Addresses worth dialling; only hints, the handshake decides who is there."""
        for hint in hints:
            if hint.peer_id == self.peer_id or len(hint.url) > MAX_URL_LEN:
                continue
            known = self._hints.get(hint.url)
            if known is None:
                self._hints[hint.url] = _Hint(hint, pinned=pinned)
            elif pinned:
                known.pinned = True

    def register(self, protocol: str, handler: ProtocolHandler) -> None:
        """Route messages of `protocol` to `handler`, and tell it when links come and go."""
        if protocol in ("gossip", "swim", "px") or protocol in self._protocols:
            raise ValueError(f"protocol {protocol!r} is already handled")
        self._protocols[protocol] = handler
        for peer in self._links:
            handler.link_up(peer)

    def send(self, peer: PeerId, protocol: str, body: Any) -> bool:
        """Queue a message for `peer`; False if there is no link or its queue is full."""
        return self._send(peer, protocol, body)

    def adopt(self, link: PeerLink) -> None:
        """Serve a link that the other side opened, in this swarm's own nursery."""
        if self._nursery is None:
            raise RuntimeError("the swarm is not running")
        self._nursery.start_soon(self.serve_link, link)

    def disconnect(self, peer: PeerId, reason: str = "closed by this node") -> None:
        """Close the link to `peer`, if any; the dialer may link again later."""
        self._close(peer, reason)

    def set_tasks(
        self,
        tasks: Callable[[], list[dict[str, Any]]],
        queues: Callable[[], list[PeerId]] = list,
    ) -> None:
        """Where this node's record gets its task schemas and the queue nodes it serves."""
        self._tasks = tasks
        self._queues = queues
        self.capabilities_changed()

    def set_announced_blobs(self, blobs: Callable[[], Sequence[bytes]]) -> None:
        """Where this node's record gets the blob digests it offers (the blob exchange)."""
        self._blobs = blobs
        self.capabilities_changed()

    def capabilities_changed(self) -> None:
        """Republish this node's record now (free slots or tasks changed)."""
        self._republish.set()

    def replace_policy(self, policy: PeerPolicy) -> None:
        """Adopt a new block/allow list: refused peers lose their link and their record."""
        self.policy = policy
        for peer in list(self._links):
            why = policy.why_refused(peer)
            if why is not None:
                self._close(peer, why)
        for record in self.records():
            if record.author != self.peer_id and policy.why_refused(record.author) is not None:
                self.store.remove(record.author)

    # -- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeats, liveness, republishing and dialling, until cancelled."""
        self._liveness = Liveness(
            self.peer_id, trio.current_time(), rng=self._rng, params=self.params.liveness
        )
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._publish()
            nursery.start_soon(self._heartbeat_loop)
            nursery.start_soon(self._liveness_loop)
            nursery.start_soon(self._republish_loop)
            if self._dialer is not None:
                nursery.start_soon(self._dial_loop)
            self.ready.set()
            task_status.started()
            await trio.sleep_forever()

    async def serve_link(self, link: PeerLink, *, dialled: bool = False) -> None:
        """Run one authenticated link until it closes; the connection handler for listeners."""
        peer = link.remote
        refusal = self._refusal(peer)
        if refusal is None and peer in self._links:
            refusal = self._resolve_duplicate(peer, dialled)
        if refusal is not None:
            log.info("refusing link", extra={"peer": peer.short, "reason": refusal})
            await link.aclose()
            return
        outbox_send, outbox_receive = trio.open_memory_channel[bytes](self.params.send_queue)
        entry = _Link(link, dialled, outbox_send)
        self._links[peer] = entry
        log.info(
            "link up",
            extra={"peer": peer.short, "address": link.remote_address or "-", "dialled": dialled},
        )
        if link.remote_address:
            with contextlib.suppress(ValueError):
                self.scores.note_address(peer, link.remote_address.rsplit(":", 1)[0].strip("[]"))
        try:
            with entry.cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._send_loop, link, outbox_receive)
                    self._apply(self.router.peer_connected(peer, trio.current_time()))
                    if self._liveness is not None:
                        self._apply(self._liveness.add_member(peer, trio.current_time()))
                    self._send_peer_exchange(peer)
                    for handler in self._protocols.values():
                        handler.link_up(peer)
                    await self._receive_loop(peer, link)
                    nursery.cancel_scope.cancel()
        finally:
            if self._links.get(peer) is entry:
                del self._links[peer]
                self._apply(self.router.peer_disconnected(peer, trio.current_time()))
                if self._liveness is not None:
                    self._liveness.remove_member(peer)
                self.scores.forget_address(peer)
                for handler in self._protocols.values():
                    handler.link_down(peer)
                log.info("link down", extra={"peer": peer.short})
            outbox_send.close()
            with trio.CancelScope(shield=True):
                await link.aclose()

    # -- loops --------------------------------------------------------------------------------

    async def _receive_loop(self, peer: PeerId, link: PeerLink) -> None:
        while True:
            try:
                message = await link.receive()
            except LinkError:
                return
            now = trio.current_time()
            try:
                decoded = unpack(message, MESSAGE_LIMITS)
                if type(decoded) is not list or len(decoded) != 2 or type(decoded[0]) is not str:
                    raise WireError("a link message is [protocol, body]")
            except WireError as exc:
                self._observe(PeerEvent(peer, "invalid_message", str(exc)[:200]))
                continue
            protocol, body = decoded
            if protocol == "gossip":
                self._apply(self.router.receive(peer, body, now))
            elif protocol == "swim" and self._liveness is not None:
                self._apply(self._liveness.receive(peer, body, now))
            elif protocol == "px":
                self._receive_peer_exchange(peer, body)
            elif protocol in self._protocols:
                self._protocols[protocol].message(peer, body)
            else:
                log.debug(
                    "ignoring unknown protocol",
                    extra={"peer": peer.short, "protocol": protocol[:40]},
                )
            if not self.scores.accepts(peer, now):
                self._close(peer, "score below the accept threshold")
                return

    async def _send_loop(self, link: PeerLink, outbox: trio.MemoryReceiveChannel[bytes]) -> None:
        async for message in outbox:
            try:
                await link.send(message)
            except LinkError:
                return
            except LightboxError as exc:  # a message over the link limit: a bug, not fatal
                log.warning(
                    "message not sent", extra={"peer": link.remote.short, "error": str(exc)}
                )

    async def _heartbeat_loop(self) -> None:
        period = self.params.gossip.heartbeat_s
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            self._apply(self.router.heartbeat(now))
            self.scores.decay(now)
            for peer in [p for p in self._links if not self.scores.accepts(p, now)]:
                self._close(peer, "score below the accept threshold")

    async def _liveness_loop(self) -> None:
        assert self._liveness is not None
        while True:
            deadline = self._liveness.next_deadline()
            await trio.sleep_until(max(deadline, trio.current_time() + 0.05))
            self._apply(self._liveness.tick(trio.current_time()))

    async def _republish_loop(self) -> None:
        while True:
            with trio.move_on_after(self.params.record_ttl_s / 3):
                await self._republish.wait()
            self._republish = trio.Event()
            self._publish()

    async def _dial_loop(self) -> None:
        assert self._dialer is not None and self._nursery is not None
        next_exploration = trio.current_time() + self.params.explore_every_s
        while True:
            now = trio.current_time()
            wanted = self.params.target_links - len(self._links)
            if now >= next_exploration:
                next_exploration = now + self.params.explore_every_s
                if len(self._links) < self.params.max_links:
                    wanted = max(wanted, 1)
            for entry in self._dial_candidates(now):
                if wanted <= 0 and not entry.pinned:
                    break
                if entry.hint.peer_id is not None and entry.hint.peer_id in self._links:
                    continue
                entry.next_try = math.inf  # in flight
                self._nursery.start_soon(self._dial, entry)
                wanted -= 1
            await trio.sleep(1.0)

    def _dial_candidates(self, now: float) -> list[_Hint]:
        linked = set(self._links)
        for record in self.records():
            if record.author != self.peer_id and record.author not in linked:
                self.add_hints(PeerHint(url, record.author, "record") for url in record.addresses)
        ready = [
            h
            for h in self._hints.values()
            if h.next_try <= now
            and (h.hint.peer_id is None or h.hint.peer_id not in linked)
            and (h.hint.peer_id is None or self._refusal(h.hint.peer_id) is None)
        ]
        self._rng.shuffle(ready)
        ready.sort(key=lambda h: not h.pinned)  # bootstrap first
        return ready

    async def _dial(self, entry: _Hint) -> None:
        assert self._dialer is not None and self._nursery is not None
        try:
            with trio.fail_after(self.params.dial_timeout_s):
                link = await self._dialer(self._nursery, entry.hint)
        except (LightboxError, OSError, trio.TooSlowError) as exc:
            entry.failures += 1
            delay = min(
                self.params.dial_backoff_max_s,
                self.params.dial_backoff_s * 2 ** min(entry.failures, 16),
            )
            entry.next_try = trio.current_time() + delay * (0.5 + self._rng.random())
            log.debug("dial failed", extra={"url": entry.hint.url, "error": str(exc)[:200]})
            if entry.failures > 8 and not entry.pinned:
                self._hints.pop(entry.hint.url, None)
            return
        entry.failures = 0
        entry.next_try = trio.current_time() + self.params.dial_backoff_s
        await self.serve_link(link, dialled=True)
        entry.next_try = trio.current_time() + self.params.dial_backoff_s

    # -- actions ------------------------------------------------------------------------------

    def _apply(self, actions: Iterable[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action.peer, action.protocol, action.body)
            elif isinstance(action, PeerEvent):
                self._observe(action)
            elif isinstance(action, RecordAccepted):
                record = action.record
                if self.policy.why_refused(record.author) is not None:
                    self.store.remove(record.author)  # defederated: never in our view
                elif record.author != self.peer_id:
                    log.debug("record", extra={"author": record.author.short, "seq": record.seq})
            elif isinstance(action, RecordRemoved):
                log.debug(
                    "record removed", extra={"author": action.author.short, "reason": action.reason}
                )
            elif isinstance(action, MemberDead):
                log.info("peer declared dead", extra={"peer": action.peer.short})
                self._close(action.peer, "declared dead by liveness")
            elif isinstance(action, MemberSuspect):
                log.debug("peer suspected", extra={"peer": action.peer.short})
            elif isinstance(action, MemberAlive):
                log.debug("peer alive again", extra={"peer": action.peer.short})

    def _send(self, peer: PeerId, protocol: str, body: Any) -> bool:
        entry = self._links.get(peer)
        if entry is None:
            return False
        try:
            entry.outbox.send_nowait(pack([protocol, body], MESSAGE_LIMITS))
        except trio.WouldBlock:
            log.debug("send queue full; message dropped", extra={"peer": peer.short})
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    def _observe(self, event: PeerEvent) -> None:
        self.scores.observe(event, trio.current_time())
        if event.kind == "invalid_message":
            log.info("invalid message", extra={"peer": event.peer.short, "detail": event.detail})

    def _publish(self) -> None:
        now_ms = self._wall_ms()
        self._seq = max(self._seq + 1, now_ms)  # increasing across restarts, without state
        frame = build_record_frame(
            self.identity,
            network=self.network,
            roles=self.roles,
            addresses=self.addresses,
            tasks=self._tasks(),
            free_slots=self._free_slots(),
            version=self.version,
            queues=self._queues()[:16],
            blobs=self._blobs()[:MAX_BLOBS],
            seq=self._seq,
            now_ms=now_ms,
            ttl_ms=int(self.params.record_ttl_s * 1000),
        )
        self._apply(self.router.publish(frame, trio.current_time()))

    # -- peer exchange ------------------------------------------------------------------------

    def _send_peer_exchange(self, to: PeerId) -> None:
        entries = []
        for peer in self._links:
            if peer == to:
                continue
            record = self.store.get(peer)
            for url in record.addresses[:2] if record else ():
                entries.append([peer.public_key, url])
        self._rng.shuffle(entries)
        if entries:
            self._send(to, "px", entries[:MAX_PX_ENTRIES])

    def _receive_peer_exchange(self, source: PeerId, body: Any) -> None:
        if type(body) is not list or len(body) > MAX_PX_ENTRIES:
            self._observe(PeerEvent(source, "invalid_message", "px: bad list"))
            return
        hints = []
        for item in body:
            if (
                type(item) is not list
                or len(item) != 2
                or type(item[0]) is not bytes
                or len(item[0]) != 32
                or type(item[1]) is not str
                or not item[1].startswith(("ws://", "wss://"))
                or len(item[1]) > MAX_URL_LEN
            ):
                self._observe(PeerEvent(source, "invalid_message", "px: bad entry"))
                return
            hints.append(PeerHint(item[1], PeerId(item[0]), "px"))
        self.add_hints(hints)

    # -- link policy --------------------------------------------------------------------------

    def _refusal(self, peer: PeerId) -> str | None:
        if peer == self.peer_id:
            return "a link to this node itself"
        why = self.policy.why_refused(peer)
        if why is not None:
            return why
        if not self.scores.accepts(peer, trio.current_time()):
            return "score below the accept threshold"
        if len(self._links) >= self.params.max_links and peer not in self._links:
            return "link limit reached"
        return None

    def _resolve_duplicate(self, peer: PeerId, dialled: bool) -> str | None:
        """Two links to one peer (both dialled at once): both ends keep the same one.

        The link dialled by the node with the smaller public key wins.
        """
        existing = self._links[peer]
        new_initiator = self.peer_id if dialled else peer
        old_initiator = self.peer_id if existing.dialled else peer
        if new_initiator == old_initiator:
            return "already linked"
        if new_initiator.public_key < old_initiator.public_key:
            existing.cancel.cancel()
            del self._links[peer]
            self._apply(self.router.peer_disconnected(peer, trio.current_time()))
            if self._liveness is not None:
                self._liveness.remove_member(peer)
            return None
        return "already linked (duplicate resolved toward the other link)"

    def _close(self, peer: PeerId, reason: str) -> None:
        """Close the link to `peer` (its task unwinds and unregisters it)."""
        entry = self._links.get(peer)
        if entry is not None:
            log.info("closing link", extra={"peer": peer.short, "reason": reason})
            entry.cancel.cancel()
