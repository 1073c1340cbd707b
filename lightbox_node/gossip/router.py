"""GossipRouter: spreads capability records epidemically over a bounded mesh (GossipSub v1.1-like).

A pure state machine for one topic, the capability records. The trio shell calls
`peer_connected`, `peer_disconnected`, `receive` (a decoded `gossip` body from a peer link),
`heartbeat` (every `heartbeat_s`, 1 s) and `publish` (this node's own record), and executes the
actions each returns (`Send`, `PeerEvent`, `RecordAccepted`, `RecordRemoved`, see `actions`).
No trio, no sockets, no clock: `now` is passed in (float seconds, monotonic), and the wall
clock for envelope validity comes from the injected `wall_ms(now)`; all random choices use
the injected `random.Random`, so a simulation with fixed seeds replays exactly.

How a record spreads:

* **Mesh, eager push.** Each node keeps a mesh of D = 6 neighbours (between D_low = 4 and
  D_high = 12) through GRAFT/PRUNE, and forwards every new, valid record frame at once to
  its mesh peers (its own records to every neighbour: flood publishing).
* **Lazy repair.** Each heartbeat it sends IHAVE with the ids of the records it got in the
  last `history_gossip` heartbeats to D_lazy random neighbours outside the mesh; those ask
  with IWANT for the ones they lack. A neighbour that advertised an id, was asked for it and
  did not deliver within `iwant_followup_s` broke its promise.
* **Anti-entropy.** Every `anti_entropy_every` heartbeats, and once on each new link, a node
  trades store summaries with one neighbour and then the digests of the differing key
  ranges, and each side pushes what the other lacks. This is what lets a node that was
  offline, or a healed partition, catch up on records older than the IHAVE window.

Defences: a seen cache (message ids, `seen_ttl_s`) so a frame is verified once; a token
bucket per neighbour on bodies received (excess is dropped and reported as "flood" once per
heartbeat); caps on IHAVE and IWANT per neighbour per heartbeat; neighbours with a score below
`gossip_threshold` are never grafted, forwarded to, gossiped with or synced with, and bodies
from those below `graylist_threshold` are ignored. Peer events emitted: "first_delivery",
"invalid_message", "broken_promise", "flood", "duplicate" (the same neighbour sending the
same frame again outside an anti-entropy exchange).

Message layouts (the `body` under protocol "gossip"; msgpack arrays, tag first)::

    ["m", [frame, ...]]               MESSAGE  1..64 record frames (signed envelope bytes,
                                               forwarded unchanged), at most 512 KiB together
    ["h", [id, ...]]                  IHAVE    1..500 message ids (16 bytes: blake2b-128 of a
                                               frame) the sender holds
    ["w", [id, ...]]                  IWANT    1..500 message ids the sender asks for, each
                                               answered by a MESSAGE
    ["g"]                             GRAFT    add me to your mesh
    ["p", backoff_s]                  PRUNE    you are out of my mesh; do not GRAFT me again
                                               for backoff_s (int, 0..3600) seconds
    ["s", summary]                    SYNC     128 bytes: 16 bucket hashes of 8 bytes over the
                                               sender's (author, seq) pairs, by the first 4
                                               bits of the author key
    ["d", lo, hi, entries, reply]     DIGEST   the sender's records with lo <= author < hi
                                               (bytes of at most 32; hi b"" = no bound):
                                               entries [[author(32 bytes), seq], ...] in
                                               strictly increasing author order, at most 512;
                                               reply (bool) asks the receiver to answer with
                                               its own DIGEST of that range if it is missing
                                               something

Anti-entropy exchange between A and B: A→B SYNC; B answers, for the ranges whose bucket
hashes differ, DIGEST(reply=true); A pushes MESSAGEs with what B lacks and, if B has records A
lacks, DIGEST(reply=false) of the same range; B pushes what A lacks. A DIGEST is accepted only
within `sync_timeout_s` of the SYNC or DIGEST that asked for it, so nobody can make a node
push its whole store unasked.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lightbox_node.errors import ConfigError, MalformedMessage, StaleSequence
from lightbox_node.gossip.actions import Action, PeerEvent, RecordAccepted, RecordRemoved, Send
from lightbox_node.gossip.record_store import (
    SUMMARY_LEN,
    Offered,
    OfferOutcome,
    RecordStore,
    bucket_range,
    in_range,
)
from lightbox_node.gossip.records import message_id_of, open_record
from lightbox_node.identity import PeerId

PROTOCOL = "gossip"
MESSAGE_ID_LEN = 16
AUTHOR_KEY_LEN = 32
MAX_PRUNE_BACKOFF_S = 3600
MAX_SEQ = 2**63 - 1

MESSAGE = "m"
IHAVE = "h"
IWANT = "w"
GRAFT = "g"
PRUNE = "p"
SYNC = "s"
DIGEST = "d"


@dataclass(frozen=True, slots=True)
class GossipParams:
    """Every tunable of the router; the defaults follow GossipSub v1.1 where it has one."""

    d: int = 6
    """Target mesh degree."""
    d_low: int = 4
    """Graft back up to `d` when the mesh falls below this."""
    d_high: int = 12
    """Prune down to `d` at the heartbeat when the mesh has grown above this."""
    d_score: int = 4
    """When pruning, this many mesh peers are kept by score, the rest of `d` at random."""
    d_lazy: int = 6
    """At least this many non-mesh neighbours get IHAVE each heartbeat."""
    gossip_factor: float = 0.25
    """...or this share of the non-mesh neighbours, if more."""
    heartbeat_s: float = 1.0
    """How often the shell calls `heartbeat` (the router counts heartbeats, not seconds)."""
    history_length: int = 5
    """Heartbeats a forwarded frame stays in the message cache (served to IWANT)."""
    history_gossip: int = 3
    """Heartbeats of message ids advertised in IHAVE."""
    seen_ttl_s: float = 120.0
    """How long a message id is remembered as seen."""
    max_ihave_length: int = 500
    """Ids in one IHAVE or IWANT."""
    max_ihave_messages: int = 10
    """IHAVE bodies handled per neighbour per heartbeat; more are ignored."""
    max_iwant_per_heartbeat: int = 500
    """Ids asked of one neighbour per heartbeat."""
    max_iwant_served: int = 500
    """Ids served to one neighbour per heartbeat."""
    iwant_followup_s: float = 3.0
    """Time a neighbour has to deliver what it advertised and was asked for."""
    prune_backoff_s: int = 60
    """After a PRUNE, neither side grafts the other for this long."""
    flood_publish: bool = True
    """Send this node's own records to every neighbour above the gossip threshold."""
    rpc_rate_per_s: float = 50.0
    """Bodies accepted per neighbour per second, sustained..."""
    rpc_burst: int = 200
    """...and in a burst."""
    anti_entropy_every: int = 10
    """Heartbeats between anti-entropy exchanges (with one random neighbour)."""
    sync_timeout_s: float = 5.0
    """How long a DIGEST answering our SYNC or DIGEST is accepted."""
    max_sync_frames: int = 512
    """Frames pushed in answer to one DIGEST; the rest wait for a later exchange."""
    max_frames_per_message: int = 64
    max_message_bytes: int = 512 << 10
    max_digest_entries: int = 512
    mesh_threshold: float = 0.0
    """Score needed to be grafted into the mesh or stay in it."""
    gossip_threshold: float = -10.0
    """Below this score a neighbour gets no forwards, IHAVE, IWANT answers or syncs."""
    graylist_threshold: float = -80.0
    """Below this score everything a neighbour sends is ignored."""

    def __post_init__(self) -> None:
        if not 0 < self.d_low <= self.d <= self.d_high:
            raise ConfigError("gossip degrees must satisfy 0 < d_low <= d <= d_high")
        if not 0 <= self.d_score <= self.d:
            raise ConfigError("gossip d_score must be between 0 and d")
        if not 0 < self.history_gossip <= self.history_length:
            raise ConfigError("gossip history_gossip must be between 1 and history_length")
        if not self.graylist_threshold <= self.gossip_threshold <= self.mesh_threshold:
            raise ConfigError("gossip thresholds must satisfy graylist <= gossip <= mesh")
        if self.anti_entropy_every < 1 or self.rpc_burst < 1 or self.rpc_rate_per_s <= 0:
            raise ConfigError("gossip anti_entropy_every, rpc_burst and rpc_rate must be > 0")
        if not 0 <= self.prune_backoff_s <= MAX_PRUNE_BACKOFF_S:
            raise ConfigError(f"gossip prune_backoff_s must be 0..{MAX_PRUNE_BACKOFF_S}")


DEFAULT_PARAMS = GossipParams()


def _no_score(peer: PeerId) -> float:
    return 0.0


def _wall_ms_of_now(now: float) -> int:
    """Default wall clock: `now` is taken to be Unix seconds."""
    return int(now * 1000)


@dataclass(slots=True)
class _Neighbour:
    """Per-link state; dropped when the link closes."""

    tokens: float
    refilled_at: float
    ihaves: int = 0
    iwants_asked: int = 0
    iwants_served: int = 0
    syncs_answered: int = 0
    flood_reported: bool = False
    reply_digest_until: float = -math.inf
    final_digest_until: float = -math.inf

    def new_heartbeat(self) -> None:
        self.ihaves = self.iwants_asked = self.iwants_served = self.syncs_answered = 0
        self.flood_reported = False


@dataclass(slots=True)
class _Seen:
    expires: float
    received_from: set[PeerId] = field(default_factory=set)
    sent_to: set[PeerId] = field(default_factory=set)

    def known_to(self, peer: PeerId) -> bool:
        return peer in self.received_from or peer in self.sent_to


@dataclass(frozen=True, slots=True)
class _Promise:
    peer: PeerId
    deadline: float
    ids: tuple[bytes, ...]


class GossipRouter:
    """Spreads capability records to every node of the network, and reports peer behaviour."""

    def __init__(
        self,
        local: PeerId,
        store: RecordStore,
        *,
        rng: random.Random,
        params: GossipParams = DEFAULT_PARAMS,
        score_of: Callable[[PeerId], float] = _no_score,
        wall_ms: Callable[[float], int] = _wall_ms_of_now,
    ) -> None:
        self.local = local
        self.store = store
        self.params = params
        self._rng = rng
        self._score_of = score_of
        self._wall_ms = wall_ms
        # Dicts, not sets, wherever order feeds a random choice: set order of PeerIds
        # follows hash randomisation and would make seeded simulations irreproducible.
        self._neighbours: dict[PeerId, _Neighbour] = {}
        self._mesh: dict[PeerId, None] = {}
        self._backoff: dict[PeerId, float] = {}
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()
        self._history: deque[list[bytes]] = deque([[]])
        self._cache: dict[bytes, bytes] = {}
        self._promises: list[_Promise] = []
        self._asked: dict[bytes, PeerId] = {}
        self._heartbeats = rng.randrange(params.anti_entropy_every)

    # -- introspection ---------------------------------------------------------------------

    @property
    def mesh(self) -> tuple[PeerId, ...]:
        return tuple(self._mesh)

    @property
    def neighbours(self) -> tuple[PeerId, ...]:
        return tuple(self._neighbours)

    # -- events from the shell --------------------------------------------------------------

    def peer_connected(self, peer: PeerId, now: float) -> list[Action]:
        """A link to `peer` is up. The side with the smaller key starts an anti-entropy sync."""
        if peer == self.local or peer in self._neighbours:
            return []
        self._neighbours[peer] = _Neighbour(tokens=float(self.params.rpc_burst), refilled_at=now)
        if self.local.public_key < peer.public_key and self._can_gossip(peer):
            return self._start_sync(peer, now)
        return []

    def peer_disconnected(self, peer: PeerId, now: float) -> list[Action]:
        """The link to `peer` closed: it leaves the mesh; its open promises are void."""
        self._neighbours.pop(peer, None)
        self._mesh.pop(peer, None)
        if any(p.peer == peer for p in self._promises):
            self._promises = [p for p in self._promises if p.peer != peer]
            self._asked = {mid: asked for mid, asked in self._asked.items() if asked != peer}
        return []

    def publish(self, frame: bytes, now: float) -> list[Action]:
        """Store this node's own new record and send it out.

        Raises a WireError if the frame is not a valid record newer than the last one (a
        programming error: e.g. a seq that did not grow across a restart), and ValueError
        if another node wrote it. The store is left unchanged when it raises.
        """
        wall_ms = self._wall_ms(now)
        record, _ = open_record(frame, wall_ms, self.store.network, self.store.limits)
        if record.author != self.local:
            raise ValueError("publish takes records authored by this node only")
        offered = self.store.offer(frame, wall_ms)
        if offered.outcome is not OfferOutcome.NEW or offered.record is None:
            raise offered.error or StaleSequence(
                f"own record was not accepted by the store ({offered.outcome.value}); "
                "its seq must grow with every publish, also across restarts"
            )
        seen = self._mark_seen(offered.message_id, now)
        self._cache_frame(offered.message_id, frame)
        actions: list[Action] = [RecordAccepted(offered.record, None)]
        actions += [RecordRemoved(author, "evicted") for author in offered.evicted]
        if self.params.flood_publish:
            targets = [p for p in self._neighbours if self._can_gossip(p)]
        else:
            targets = [p for p in self._mesh if self._can_gossip(p)]
        for peer in targets:
            seen.sent_to.add(peer)
            actions.append(Send(peer, PROTOCOL, [MESSAGE, [frame]]))
        return actions

    def receive(self, peer: PeerId, body: object, now: float) -> list[Action]:
        """Handle one gossip body from `peer`. Never raises: bad bodies become peer events."""
        neighbour = self._neighbours.get(peer)
        if neighbour is None or self._score_of(peer) < self.params.graylist_threshold:
            return []
        p = self.params
        elapsed = max(0.0, now - neighbour.refilled_at)
        neighbour.tokens = min(float(p.rpc_burst), neighbour.tokens + elapsed * p.rpc_rate_per_s)
        neighbour.refilled_at = max(now, neighbour.refilled_at)
        if neighbour.tokens < 1.0:
            if neighbour.flood_reported:
                return []
            neighbour.flood_reported = True
            return [PeerEvent(peer, "flood", f"over {p.rpc_rate_per_s:g} gossip bodies/s")]
        neighbour.tokens -= 1.0
        try:
            message = _parse(body, p)
        except MalformedMessage as exc:
            return [PeerEvent(peer, "invalid_message", str(exc))]
        tag = message[0]
        if tag == MESSAGE:
            return self._on_message(peer, message[1], now)
        if tag == IHAVE:
            return self._on_ihave(peer, neighbour, message[1], now)
        if tag == IWANT:
            return self._on_iwant(peer, neighbour, message[1])
        if tag == GRAFT:
            return self._on_graft(peer, now)
        if tag == PRUNE:
            self._mesh.pop(peer, None)
            self._backoff[peer] = max(self._backoff.get(peer, now), now + message[1])
            return []
        if tag == SYNC:
            return self._on_sync(peer, neighbour, message[1], now)
        _, lo, hi, entries, reply = message
        return self._on_digest(peer, neighbour, lo, hi, entries, reply, now)

    def heartbeat(self, now: float) -> list[Action]:
        """Periodic work: promises, expiry, mesh upkeep, IHAVE gossip, anti-entropy."""
        actions: list[Action] = []
        self._heartbeats += 1
        for neighbour in self._neighbours.values():
            neighbour.new_heartbeat()
        actions += self._check_promises(now)
        actions += [
            RecordRemoved(author, "expired") for author in self.store.expire(self._wall_ms(now))
        ]
        actions += self._maintain_mesh(now)
        actions += self._emit_gossip()
        self._history.appendleft([])
        while len(self._history) > self.params.history_length:
            for mid in self._history.pop():
                self._cache.pop(mid, None)
        while self._seen and next(iter(self._seen.values())).expires <= now:
            self._seen.popitem(last=False)
        self._backoff = {peer: until for peer, until in self._backoff.items() if until > now}
        if self._heartbeats % self.params.anti_entropy_every == 0:
            candidates = [p for p in self._neighbours if self._can_gossip(p)]
            if candidates:
                actions += self._start_sync(self._rng.choice(candidates), now)
        return actions

    # -- message handlers -------------------------------------------------------------------

    def _on_message(self, peer: PeerId, frames: list[bytes], now: float) -> list[Action]:
        actions: list[Action] = []
        outgoing: dict[PeerId, list[bytes]] = {}
        wall_ms = self._wall_ms(now)
        for frame in frames:
            mid = message_id_of(frame)
            seen = self._seen.get(mid)
            if seen is not None:
                if peer in seen.received_from and not self._syncing_with(peer, now):
                    actions.append(PeerEvent(peer, "duplicate", "sent the same record again"))
                seen.received_from.add(peer)
                continue
            seen = self._mark_seen(mid, now)
            seen.received_from.add(peer)
            self._asked.pop(mid, None)
            offered = self.store.offer(frame, wall_ms)
            actions += self._accept(peer, offered, frame, seen, outgoing)
        for target, batch in outgoing.items():
            actions += _frames_to(target, batch, self.params)
        return actions

    def _accept(
        self,
        peer: PeerId,
        offered: Offered,
        frame: bytes,
        seen: _Seen,
        outgoing: dict[PeerId, list[bytes]],
    ) -> list[Action]:
        if offered.outcome is OfferOutcome.INVALID:
            return [PeerEvent(peer, "invalid_message", str(offered.error))]
        if offered.outcome is not OfferOutcome.NEW:
            # Stale, expired, from-the-future or no room: an honest relay can send these
            # (races, clock skew), so they are dropped without blame and not forwarded.
            return []
        assert offered.record is not None
        self._cache_frame(offered.message_id, frame)
        for target in self._mesh:
            if not seen.known_to(target) and self._can_gossip(target):
                seen.sent_to.add(target)
                outgoing.setdefault(target, []).append(frame)
        return [
            RecordAccepted(offered.record, peer),
            PeerEvent(peer, "first_delivery"),
            *(RecordRemoved(author, "evicted") for author in offered.evicted),
        ]

    def _on_ihave(
        self, peer: PeerId, neighbour: _Neighbour, ids: list[bytes], now: float
    ) -> list[Action]:
        if not self._can_gossip(peer):
            return []
        neighbour.ihaves += 1
        if neighbour.ihaves > self.params.max_ihave_messages:
            return []
        budget = self.params.max_iwant_per_heartbeat - neighbour.iwants_asked
        wanted: list[bytes] = []
        for mid in ids:
            if len(wanted) >= budget:
                break
            if mid in self._seen or mid in self._asked or self.store.holds_message(mid):
                continue
            self._asked[mid] = peer
            wanted.append(mid)
        if not wanted:
            return []
        neighbour.iwants_asked += len(wanted)
        self._promises.append(_Promise(peer, now + self.params.iwant_followup_s, tuple(wanted)))
        return [Send(peer, PROTOCOL, [IWANT, wanted])]

    def _on_iwant(self, peer: PeerId, neighbour: _Neighbour, ids: list[bytes]) -> list[Action]:
        if not self._can_gossip(peer):
            return []
        frames: list[bytes] = []
        for mid in dict.fromkeys(ids):
            if neighbour.iwants_served >= self.params.max_iwant_served:
                break
            frame = self._cache.get(mid) or self.store.frame_by_message_id(mid)
            if frame is None:
                continue
            neighbour.iwants_served += 1
            frames.append(frame)
            seen = self._seen.get(mid)
            if seen is not None:
                seen.sent_to.add(peer)
        return _frames_to(peer, frames, self.params)

    def _on_graft(self, peer: PeerId, now: float) -> list[Action]:
        if peer in self._mesh:
            return []
        if (
            self._backoff.get(peer, -math.inf) > now
            or self._score_of(peer) < self.params.mesh_threshold
        ):
            return [self._prune(peer, now)]
        # Accepted even above d_high: the next heartbeat prunes back to d, keeping the best
        # scored, so a newcomer always has a chance to get into a full mesh.
        self._mesh[peer] = None
        return []

    def _on_sync(
        self, peer: PeerId, neighbour: _Neighbour, summary: bytes, now: float
    ) -> list[Action]:
        if not self._can_gossip(peer):
            return []
        neighbour.syncs_answered += 1
        if neighbour.syncs_answered > 1:
            return []
        buckets = self.store.differing_buckets(summary)
        if not buckets:
            return []
        neighbour.final_digest_until = now + self.params.sync_timeout_s
        actions: list[Action] = []
        for lo, hi in _merge_buckets(buckets):
            actions += self._digests(peer, lo, hi, reply=True)
        return actions

    def _on_digest(
        self,
        peer: PeerId,
        neighbour: _Neighbour,
        lo: bytes,
        hi: bytes,
        entries: list[list],
        reply: bool,
        now: float,
    ) -> list[Action]:
        expected_until = neighbour.reply_digest_until if reply else neighbour.final_digest_until
        if now > expected_until or not self._can_gossip(peer):
            return []  # unasked: never push the store to whoever requests it
        digest = {author: seq for author, seq in entries}
        frames = self.store.missing_from(digest, lo, hi) + self.store.newer_than(digest)
        if len(frames) > self.params.max_sync_frames:
            frames = self._rng.sample(frames, self.params.max_sync_frames)
        actions: list[Action] = list(_frames_to(peer, frames, self.params))
        if reply and self.store.wanted_from(digest):
            actions += self._digests(peer, lo, hi, reply=False)
        return actions

    # -- upkeep -----------------------------------------------------------------------------

    def _check_promises(self, now: float) -> list[Action]:
        actions: list[Action] = []
        open_promises: list[_Promise] = []
        for promise in self._promises:
            if promise.deadline > now:
                open_promises.append(promise)
                continue
            for mid in promise.ids:
                if self._asked.get(mid) == promise.peer:
                    del self._asked[mid]
            broken = sum(1 for mid in promise.ids if mid not in self._seen)
            if broken and promise.peer in self._neighbours:
                detail = f"{broken} of {len(promise.ids)} advertised records never delivered"
                actions.append(PeerEvent(promise.peer, "broken_promise", detail))
        self._promises = open_promises
        return actions

    def _maintain_mesh(self, now: float) -> list[Action]:
        p = self.params
        actions: list[Action] = []
        scores = {peer: self._score_of(peer) for peer in self._neighbours}
        for peer in list(self._mesh):
            if scores.get(peer, -math.inf) < p.mesh_threshold:
                del self._mesh[peer]
                actions.append(self._prune(peer, now))
        if len(self._mesh) < p.d_low:
            candidates = [
                peer
                for peer in self._neighbours
                if peer not in self._mesh
                and self._backoff.get(peer, -math.inf) <= now
                and scores[peer] >= p.mesh_threshold
            ]
            wanted = min(p.d - len(self._mesh), len(candidates))
            for peer in self._rng.sample(candidates, wanted):
                self._mesh[peer] = None
                actions.append(Send(peer, PROTOCOL, [GRAFT]))
        elif len(self._mesh) > p.d_high:
            members = list(self._mesh)
            self._rng.shuffle(members)
            members.sort(key=lambda peer: -scores[peer])  # stable: ties stay shuffled
            keep = members[: p.d_score]
            keep += self._rng.sample(members[p.d_score :], p.d - p.d_score)
            for peer in members:
                if peer not in keep:
                    del self._mesh[peer]
                    actions.append(self._prune(peer, now))
        return actions

    def _emit_gossip(self) -> list[Action]:
        p = self.params
        ids = [mid for window in list(self._history)[: p.history_gossip] for mid in window]
        if not ids:
            return []
        candidates = [
            peer for peer in self._neighbours if peer not in self._mesh and self._can_gossip(peer)
        ]
        count = min(len(candidates), max(p.d_lazy, int(p.gossip_factor * len(candidates))))
        actions: list[Action] = []
        for peer in self._rng.sample(candidates, count):
            offer = [mid for mid in ids if not self._seen_by(mid, peer)]
            if len(offer) > p.max_ihave_length:
                offer = self._rng.sample(offer, p.max_ihave_length)
            if offer:
                actions.append(Send(peer, PROTOCOL, [IHAVE, offer]))
        return actions

    # -- helpers ----------------------------------------------------------------------------

    def _can_gossip(self, peer: PeerId) -> bool:
        return self._score_of(peer) >= self.params.gossip_threshold

    def _seen_by(self, mid: bytes, peer: PeerId) -> bool:
        seen = self._seen.get(mid)
        return seen is not None and seen.known_to(peer)

    def _syncing_with(self, peer: PeerId, now: float) -> bool:
        neighbour = self._neighbours[peer]
        return now <= max(neighbour.reply_digest_until, neighbour.final_digest_until)

    def _mark_seen(self, mid: bytes, now: float) -> _Seen:
        seen = self._seen.get(mid)
        if seen is None:
            seen = self._seen[mid] = _Seen(now + self.params.seen_ttl_s)
        return seen

    def _cache_frame(self, mid: bytes, frame: bytes) -> None:
        if mid not in self._cache:
            self._cache[mid] = frame
            self._history[0].append(mid)

    def _prune(self, peer: PeerId, now: float) -> Send:
        backoff = self.params.prune_backoff_s
        self._backoff[peer] = max(self._backoff.get(peer, now), now + backoff)
        return Send(peer, PROTOCOL, [PRUNE, backoff])

    def _start_sync(self, peer: PeerId, now: float) -> list[Action]:
        self._neighbours[peer].reply_digest_until = now + self.params.sync_timeout_s
        return [Send(peer, PROTOCOL, [SYNC, self.store.summary()])]

    def _digests(self, peer: PeerId, lo: bytes, hi: bytes, *, reply: bool) -> list[Action]:
        """DIGEST bodies covering [lo, hi) exactly, split into chunks of bounded size."""
        entries = sorted(self.store.digest(lo, hi).items())
        size = self.params.max_digest_entries
        chunks = [entries[i : i + size] for i in range(0, len(entries), size)] or [[]]
        bodies: list[Action] = []
        for index, chunk in enumerate(chunks):
            chunk_lo = lo if index == 0 else chunk[0][0]
            chunk_hi = chunks[index + 1][0][0] if index + 1 < len(chunks) else hi
            pairs = [[author, seq] for author, seq in chunk]
            bodies.append(Send(peer, PROTOCOL, [DIGEST, chunk_lo, chunk_hi, pairs, reply]))
        return bodies


def _merge_buckets(buckets: Iterable[int]) -> list[tuple[bytes, bytes]]:
    """Key ranges covering the given buckets, adjacent buckets merged into one range."""
    ranges: list[tuple[bytes, bytes]] = []
    run_start = previous = None
    for bucket in sorted(buckets):
        if run_start is None:
            run_start = bucket
        elif bucket != previous + 1:
            ranges.append((bucket_range(run_start)[0], bucket_range(previous)[1]))
            run_start = bucket
        previous = bucket
    if run_start is not None:
        ranges.append((bucket_range(run_start)[0], bucket_range(previous)[1]))
    return ranges


def _frames_to(peer: PeerId, frames: list[bytes], params: GossipParams) -> list[Send]:
    """MESSAGE bodies carrying `frames`, within the per-body count and size limits."""
    sends: list[Send] = []
    batch: list[bytes] = []
    size = 0
    for frame in frames:
        if batch and (
            len(batch) >= params.max_frames_per_message
            or size + len(frame) > params.max_message_bytes
        ):
            sends.append(Send(peer, PROTOCOL, [MESSAGE, batch]))
            batch, size = [], 0
        batch.append(frame)
        size += len(frame)
    if batch:
        sends.append(Send(peer, PROTOCOL, [MESSAGE, batch]))
    return sends


# -- strict parsing of untrusted bodies ------------------------------------------------------


def _parse(body: object, p: GossipParams) -> tuple:
    """Check a body's exact shape and types; returns (tag, fields...) or raises MalformedMessage."""
    if type(body) is not list or not body or type(body[0]) is not str:
        raise MalformedMessage("a gossip body is an array starting with a text tag")
    tag = body[0]
    if tag == MESSAGE:
        _arity(body, 2)
        frames = _bounded_list(body[1], p.max_frames_per_message, "MESSAGE frames")
        total = 0
        for frame in frames:
            if type(frame) is not bytes or not frame:
                raise MalformedMessage("MESSAGE frames must be non-empty bytes")
            total += len(frame)
        if total > p.max_message_bytes:
            raise MalformedMessage(f"MESSAGE over {p.max_message_bytes} bytes")
        return (tag, frames)
    if tag in (IHAVE, IWANT):
        _arity(body, 2)
        ids = _bounded_list(body[1], p.max_ihave_length, "message ids")
        if any(type(mid) is not bytes or len(mid) != MESSAGE_ID_LEN for mid in ids):
            raise MalformedMessage(f"message ids are {MESSAGE_ID_LEN} bytes")
        return (tag, ids)
    if tag == GRAFT:
        _arity(body, 1)
        return (tag,)
    if tag == PRUNE:
        _arity(body, 2)
        backoff = body[1]
        if type(backoff) is not int or not 0 <= backoff <= MAX_PRUNE_BACKOFF_S:
            raise MalformedMessage(f"PRUNE backoff must be an integer 0..{MAX_PRUNE_BACKOFF_S}")
        return (tag, backoff)
    if tag == SYNC:
        _arity(body, 2)
        if type(body[1]) is not bytes or len(body[1]) != SUMMARY_LEN:
            raise MalformedMessage(f"SYNC summary must be {SUMMARY_LEN} bytes")
        return (tag, body[1])
    if tag == DIGEST:
        _arity(body, 5)
        _, lo, hi, entries, reply = body
        for bound in (lo, hi):
            if type(bound) is not bytes or len(bound) > AUTHOR_KEY_LEN:
                raise MalformedMessage("DIGEST bounds must be bytes of at most 32")
        if hi and hi <= lo:
            raise MalformedMessage("DIGEST range is empty")
        if type(reply) is not bool:
            raise MalformedMessage("DIGEST reply flag must be a boolean")
        # An empty digest is valid: "I hold nothing in this range".
        entries = _bounded_list(entries, p.max_digest_entries, "DIGEST entries", least=0)
        previous = b""
        for entry in entries:
            if (
                type(entry) is not list
                or len(entry) != 2
                or type(entry[0]) is not bytes
                or len(entry[0]) != AUTHOR_KEY_LEN
                or type(entry[1]) is not int
                or not 0 <= entry[1] <= MAX_SEQ
            ):
                raise MalformedMessage("DIGEST entries are [32-byte author, seq]")
            if entry[0] <= previous or not in_range(entry[0], lo, hi):
                raise MalformedMessage("DIGEST authors must be increasing and inside the range")
            previous = entry[0]
        return (tag, lo, hi, entries, reply)
    raise MalformedMessage(f"unknown gossip tag {tag[:16]!r}")


def _arity(body: list, length: int) -> None:
    if len(body) != length:
        raise MalformedMessage(f"gossip {body[0]!r} body has {len(body)} fields, not {length}")


def _bounded_list(value: object, limit: int, what: str, *, least: int = 1) -> list:
    if type(value) is not list or not least <= len(value) <= limit:
        raise MalformedMessage(f"{what} must be a list of {least}..{limit}")
    return value


__all__ = ["DEFAULT_PARAMS", "PROTOCOL", "GossipParams", "GossipRouter"]
