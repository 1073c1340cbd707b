"""Fetching one blob from several holders at once: the pure core that decides who sends what.

A blob id is the SHA-256 of the whole blob, which says nothing about a single chunk. So
every holder is first asked for its *digest list* (the SHA-256 of each chunk) and chunks are
then checked against it as they arrive. A digest list cannot be checked on its own either,
but it is a function of the blob's bytes: every honest holder sends the same one. That
gives the rules here, each of which blames a peer only on proof:

* The first complete list becomes the *active* one. Chunks are asked only of holders whose
  own list is the active one, so a chunk that does not match is a holder contradicting
  itself: it is blamed at once, dropped from this transfer, and the chunk asked elsewhere.
* A holder whose list differs waits on the side. When the whole blob finally hashes to its
  id, the active list is proven right and every holder that sent another one is blamed.
* When all chunks match the active list but the whole hash does not, the active list is
  proven wrong: all holders that sent it are blamed, and the transfer switches to another
  list (asking more holders if none is left), keeping the staged chunks both lists agree on.

Chunks are staged strictly in order (a verified prefix), with up to `window` chunks in
flight or waiting past it, spread over holders with at most `per_holder` each. A holder
that goes away, refuses or is too slow gives its chunks back to the others; a prefix staged
by an earlier attempt is reused as far as it matches the active list. Pure: no trio, no
I/O; the shell feeds events with the time and carries out the returned actions in order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lightbox_node.blobs.protocol import CHUNK, DIGEST_LEN, DIGEST_PAGE
from lightbox_node.identity import PeerId
from lightbox_node.store import BlobId

MAX_FETCH_BYTES = 32 << 30
"""Largest blob fetched unless the caller says otherwise (full-size model weights fit)."""


@dataclass(frozen=True, slots=True)
class TransferParams:
    """How hard one transfer pushes; the defaults suit loopback to home broadband."""

    chunk_size: int = CHUNK
    window: int = 32
    """Chunks in flight or waiting past the staged prefix (16 MiB of memory at most)."""
    per_holder: int = 8
    """Chunk requests in flight to one holder: enough to fill a fast link, few enough that
    gossip and liveness messages queued behind them on a slow link are not held up long."""
    max_holders: int = 4
    """Holders asked for digest lists and chunks at once; the others are spares."""
    chunk_timeout_s: float = 10.0
    """A holder with chunks outstanding that delivers none for this long is dropped. It is
    measured from its last delivery, not per request: on a slow link the last of
    `per_holder` queued chunks may take many times a single chunk's time."""
    digests_timeout_s: float = 120.0
    """A holder computes a blob's digest list once, reading it whole: minutes for huge
    weights that nobody asked for before (announcing a blob computes it ahead)."""
    busy_backoff_s: float = 0.5
    max_bytes: int = MAX_FETCH_BYTES
    digest_page: int = DIGEST_PAGE

    def __post_init__(self) -> None:
        if self.chunk_size <= 0 or self.window <= 0 or self.per_holder <= 0:
            raise ValueError("chunk_size, window and per_holder must be positive")
        if self.max_holders <= 0 or not 0 < self.digest_page <= DIGEST_PAGE:
            raise ValueError(f"max_holders must be positive and digest_page 1..{DIGEST_PAGE}")


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AskDigests:
    """Ask `peer` for `count` digests of its list from chunk `first`."""

    peer: PeerId
    first: int
    count: int


@dataclass(frozen=True, slots=True)
class AskChunk:
    """Ask `peer` for chunk `index` (`length` bytes at `offset`)."""

    peer: PeerId
    index: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Append:
    """Stage these verified chunks at the end of the staged prefix, in order."""

    chunks: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    """Cut the staged bytes to `size`: only that much agrees with the new active list."""

    size: int


@dataclass(frozen=True, slots=True)
class Discard:
    """Delete the staged bytes: the list they were checked against is proven wrong."""


@dataclass(frozen=True, slots=True)
class Blame:
    """`peer` is proven to have sent something false (or malformed): score it down."""

    peer: PeerId
    why: str


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything is staged: check the whole hash and publish, then report back."""

    digests: bytes


Action = AskDigests | AskChunk | Append | Truncate | Discard | Blame | Commit


class HolderState(enum.Enum):
    LISTING = "listing"
    """Its digest list is being fetched."""
    READY = "ready"
    """Its list is the active one: it may be asked for chunks."""
    DISSENTING = "dissenting"
    """Its list differs from the active one; the final hash will say who was right."""
    SPARE = "spare"
    """Not asked yet (over `max_holders`), or waiting to be asked again."""
    OUT = "out"
    """Gone, refusing, too slow or proven lying: not asked again in this transfer."""


@dataclass(slots=True)
class _Holder:
    peer: PeerId
    state: HolderState = HolderState.SPARE
    total: int | None = None
    pages: bytearray = field(default_factory=bytearray)
    listing_deadline: float = 0.0
    chunk_deadline: float = 0.0
    """While it has chunks outstanding: when it must have delivered one more."""
    listing_first: int = -1
    in_flight: set[int] = field(default_factory=set)
    paused_until: float = 0.0
    received: int = 0
    why_out: str = ""
    may_return: bool = False
    """Out only because its link closed or it was slow: worth waiting for."""


_ListKey = tuple[int, bytes]
"""A digest list with its blob size: what every honest holder agrees on."""


class Transfer:
    """The state of fetching one blob: `done` once committed, `stalled` when out of holders."""

    def __init__(
        self,
        blob_id: BlobId,
        *,
        staged: Sequence[bytes] = (),
        staged_bytes: int = 0,
        params: TransferParams | None = None,
    ) -> None:
        """`staged` is the digest of each chunk an earlier attempt left (`staged_bytes`)."""
        self.blob_id = blob_id
        self.params = params or TransferParams()
        self._holders: dict[PeerId, _Holder] = {}
        self._lists: dict[_ListKey, list[PeerId]] = {}
        self._rejected: set[_ListKey] = set()
        self._active: _ListKey | None = None
        self._staged: list[bytes] = list(staged)
        self._staged_bytes = staged_bytes
        self._prefix = 0
        """Chunks staged that match the active list (valid once a list is active)."""
        self._next = 0
        self._retry: list[int] = []
        self._buffer: dict[int, bytes] = {}
        self._in_flight: dict[int, PeerId] = {}
        self._committing = False
        self.done = False
        self.reasons: list[str] = []
        """Why holders dropped out, for the error a person reads if the fetch fails."""

    # -- what the shell asks -------------------------------------------------------------

    @property
    def total(self) -> int | None:
        """The blob's size per the active list, once there is one."""
        return self._active[0] if self._active else None

    @property
    def staged_bytes(self) -> int:
        return self._staged_bytes

    @property
    def stalled(self) -> bool:
        """Nobody left to ask and nothing outstanding: more holders are needed."""
        if self.done or self._committing:
            return False
        return not any(
            h.state in (HolderState.LISTING, HolderState.READY, HolderState.SPARE)
            for h in self._holders.values()
        )

    @property
    def worth_waiting(self) -> bool:
        """Some holder left only because its link closed or it was slow, so it may be back."""
        return any(h.state is HolderState.OUT and h.may_return for h in self._holders.values())

    def received_from(self) -> dict[PeerId, int]:
        """Chunk bytes each holder delivered intact."""
        return {peer: h.received for peer, h in self._holders.items() if h.received}

    def holder_state(self, peer: PeerId) -> HolderState | None:
        holder = self._holders.get(peer)
        return holder.state if holder else None

    def next_deadline(self) -> float | None:
        """When `tick` has something to do (a request times out, a pause ends)."""
        times = []
        for holder in self._holders.values():
            if holder.in_flight:
                times.append(holder.chunk_deadline)
            if holder.state is HolderState.LISTING:
                times.append(holder.listing_deadline)
            elif holder.paused_until and holder.state is not HolderState.OUT:
                times.append(holder.paused_until)
        return min(times, default=None)

    # -- events ----------------------------------------------------------------------------

    def add_holders(self, peers: Iterable[PeerId], now: float) -> list[Action]:
        """Peers that hold the blob (or say so); ones already out are given another chance
        only if they left without lying (a link that came back)."""
        for peer in peers:
            holder = self._holders.get(peer)
            if holder is None:
                self._holders[peer] = _Holder(peer)
            elif holder.state is HolderState.OUT and holder.may_return:
                holder.state = self._state_after_return(holder)
        return self._pump(now)

    def digests_received(
        self, peer: PeerId, total: int, chunk_size: int, first: int, digests: bytes, now: float
    ) -> list[Action]:
        """A page of `peer`'s digest list."""
        holder = self._holders.get(peer)
        if holder is None or holder.state is not HolderState.LISTING:
            return []
        if first != holder.listing_first:
            return self._lied(holder, "sent a digest page that was not asked for", now)
        if chunk_size != self.params.chunk_size:
            return self._drop(holder, f"uses {chunk_size}-byte chunks", now)
        if total > self.params.max_bytes:
            return self._drop(holder, f"it is {total} bytes, over the {self.params.max_bytes}", now)
        if holder.total is not None and total != holder.total:
            return self._lied(holder, "gave two different sizes", now)
        count = _chunk_count(total, chunk_size)
        expected = min(self.params.digest_page, count - first) if first < count else 0
        if len(digests) != expected * DIGEST_LEN:
            got = len(digests) // DIGEST_LEN
            return self._lied(holder, f"sent {got} digests, not {expected}", now)
        holder.total = total
        holder.pages += digests
        if first + expected < count:
            return [self._ask_digests(holder, now)]
        key: _ListKey = (total, bytes(holder.pages))
        holder.pages = bytearray()
        self._lists.setdefault(key, []).append(peer)
        if key in self._rejected:
            return self._lied(holder, "sent a digest list already proven wrong", now)
        if self._active is None:
            return self._activate(key, now)
        holder.state = HolderState.READY if key == self._active else HolderState.DISSENTING
        return self._pump(now)

    def chunk_received(
        self, peer: PeerId, index: int, data: bytes, digest: bytes, now: float
    ) -> list[Action]:
        """Chunk `index` from `peer`, with the SHA-256 of `data` (hashed off the event loop)."""
        holder = self._holders.get(peer)
        if self._in_flight.get(index) != peer or holder is None or self._active is None:
            return []  # a late answer after the chunk was given to another holder
        del self._in_flight[index]
        holder.in_flight.discard(index)
        holder.chunk_deadline = now + self.params.chunk_timeout_s
        total, digests = self._active
        expected = _chunk_length(index, total, self.params.chunk_size)
        if len(data) != expected:
            self._retry.append(index)
            return self._lied(
                holder, f"sent {len(data)} bytes for chunk {index}, not {expected}", now
            )
        if digest != _digest_at(digests, index):
            self._retry.append(index)
            return self._lied(
                holder, f"sent chunk {index} that does not match its own digest list", now
            )
        holder.received += len(data)
        self._buffer[index] = data
        actions: list[Action] = []
        ready = []
        while self._prefix in self._buffer:
            chunk = self._buffer.pop(self._prefix)
            ready.append(chunk)
            self._staged.append(_digest_at(digests, self._prefix))
            self._staged_bytes += len(chunk)
            self._prefix += 1
        if ready:
            actions.append(Append(tuple(ready)))
        return actions + self._pump(now)

    def refused(
        self, peer: PeerId, index: int | None, reason: str, busy: bool, now: float
    ) -> list[Action]:
        """`peer` answered "none" to a chunk request (`index`) or to its digest list (None)."""
        holder = self._holders.get(peer)
        if holder is None:
            return []
        if index is not None:
            if self._in_flight.get(index) != peer:
                return []
            del self._in_flight[index]
            holder.in_flight.discard(index)
            self._retry.append(index)
        elif holder.state is not HolderState.LISTING:
            return []
        if busy and index is not None:
            holder.paused_until = now + self.params.busy_backoff_s
            return self._pump(now)
        if busy:
            holder.state = HolderState.SPARE
            holder.pages = bytearray()
            holder.total = None
            holder.paused_until = now + self.params.busy_backoff_s
            return self._pump(now)
        return self._drop(holder, reason, now)

    def peer_gone(self, peer: PeerId, now: float) -> list[Action]:
        """The link to `peer` closed: its outstanding requests go to the others."""
        holder = self._holders.get(peer)
        if holder is None or holder.state is HolderState.OUT:
            return []
        return self._drop(holder, "the link closed", now, may_return=True)

    def tick(self, now: float) -> list[Action]:
        """Time out slow requests and end pauses."""
        actions: list[Action] = []
        for holder in self._holders.values():
            if holder.in_flight and holder.chunk_deadline <= now:
                why = f"no chunk within {self.params.chunk_timeout_s:g} s"
                actions += self._drop(holder, why, may_return=True)
        for holder in self._holders.values():
            if holder.state is HolderState.LISTING and holder.listing_deadline <= now:
                timeout = self.params.digests_timeout_s
                why = f"no digest list within {timeout:g} s"
                actions += self._drop(holder, why, may_return=True)
            if holder.paused_until <= now:
                holder.paused_until = 0.0
        return actions + self._pump(now)

    def committed(self) -> list[Action]:
        """The whole hash matched: the active list is right, so every other list was a lie."""
        self._committing = False
        self.done = True
        actions: list[Action] = []
        for key, peers in self._lists.items():
            if key != self._active and key not in self._rejected:  # rejected: blamed already
                actions += [
                    Blame(peer, f"sent a digest list that does not describe {self.blob_id}")
                    for peer in peers
                ]
        return actions

    def hash_mismatch(self, now: float) -> list[Action]:
        """Every chunk matched the active list, yet the whole does not hash to the id: the
        list is false, and so is everyone who sent it."""
        self._committing = False
        assert self._active is not None
        wrong = self._active
        self._rejected.add(wrong)
        self._active = None
        actions: list[Action] = []
        for peer in self._lists.get(wrong, ()):
            actions += self._lied(
                self._holders[peer], f"sent a digest list that does not describe {self.blob_id}"
            )
        return actions + self._choose_active(now)

    # -- the rules ---------------------------------------------------------------------------

    def _activate(self, key: _ListKey, now: float) -> list[Action]:
        """Make `key` the active list, keeping the staged chunks that agree with it."""
        self._active = key
        digests = key[1]
        keep = 0
        for index, staged in enumerate(self._staged):
            if staged != _digest_at(digests, index):
                break
            keep += 1
        actions: list[Action] = []
        if keep < len(self._staged):
            size = keep * self.params.chunk_size
            actions.append(Truncate(size))
            self._staged = self._staged[:keep]
            self._staged_bytes = size
        self._prefix = self._next = keep
        self._retry.clear()
        self._buffer.clear()
        self._in_flight.clear()  # late answers to these are ignored
        for holder in self._holders.values():
            holder.in_flight.clear()
        for peer, holder in self._holders.items():
            if holder.state in (HolderState.READY, HolderState.DISSENTING):
                agrees = peer in self._lists.get(key, ())
                holder.state = HolderState.READY if agrees else HolderState.DISSENTING
        for peer in self._lists[key]:
            holder = self._holders[peer]
            if holder.state is not HolderState.OUT:
                holder.state = HolderState.READY
        return actions + self._pump(now)

    def _choose_active(self, now: float) -> list[Action]:
        """After the active list is lost: the best remaining list, or ask more holders."""
        usable = {
            key: [p for p in peers if self._holders[p].state is not HolderState.OUT]
            for key, peers in self._lists.items()
            if key not in self._rejected
        }
        usable = {key: peers for key, peers in usable.items() if peers}
        if usable:
            best = max(usable, key=lambda key: len(usable[key]))
            return self._activate(best, now)
        # Checked against a proven lie and no other list to tell good chunks from bad:
        # nothing staged is kept, whoever is asked next.
        self._staged, self._staged_bytes = [], 0
        return [Discard(), *self._pump(now)]

    def _pump(self, now: float) -> list[Action]:
        """Ask for digest lists and chunks until the limits are reached; commit when complete."""
        if self.done or self._committing:
            return []
        actions: list[Action] = []
        listing = sum(h.state is HolderState.LISTING for h in self._holders.values())
        working = sum(
            h.state in (HolderState.LISTING, HolderState.READY) for h in self._holders.values()
        )
        for holder in self._holders.values():
            if working >= self.params.max_holders:
                break
            if holder.state is HolderState.SPARE and holder.paused_until <= now:
                holder.state = HolderState.LISTING
                holder.pages = bytearray()
                holder.total = None
                holder.listing_first = -1
                actions.append(self._ask_digests(holder, now))
                listing += 1
                working += 1
        if self._active is None:
            return actions
        total, _ = self._active
        count = _chunk_count(total, self.params.chunk_size)
        if self._prefix == count:
            self._committing = True
            return [*actions, Commit(self._active[1])]
        ready = [
            h
            for h in self._holders.values()
            if h.state is HolderState.READY
            and h.paused_until <= now
            and len(h.in_flight) < self.params.per_holder
        ]
        while ready and len(self._in_flight) + len(self._buffer) < self.params.window:
            index = self._take_index(count)
            if index is None:
                break
            holder = min(ready, key=lambda h: len(h.in_flight))
            if not holder.in_flight:
                holder.chunk_deadline = now + self.params.chunk_timeout_s
            holder.in_flight.add(index)
            self._in_flight[index] = holder.peer
            offset = index * self.params.chunk_size
            length = _chunk_length(index, total, self.params.chunk_size)
            actions.append(AskChunk(holder.peer, index, offset, length))
            if len(holder.in_flight) >= self.params.per_holder:
                ready.remove(holder)
        if not any(
            h.state in (HolderState.LISTING, HolderState.READY) for h in self._holders.values()
        ):
            actions += self._switch_if_stuck(now)
        return actions

    def _switch_if_stuck(self, now: float) -> list[Action]:
        """Every holder of the active list is out while others hold another list: use
        theirs (the final hash still decides), rather than waiting for nobody."""
        assert self._active is not None
        others = [
            key
            for key, peers in self._lists.items()
            if key != self._active
            and key not in self._rejected
            and any(self._holders[p].state is not HolderState.OUT for p in peers)
        ]
        if not others:
            return []
        best = max(others, key=lambda key: len(self._lists[key]))
        return self._activate(best, now)

    def _take_index(self, count: int) -> int | None:
        """The lowest chunk nobody is fetching or holding, retries first."""
        self._retry.sort()
        while self._retry:
            index = self._retry.pop(0)
            if index >= self._prefix and index not in self._in_flight and index not in self._buffer:
                return index
        while self._next < count:
            index = self._next
            self._next += 1
            if index >= self._prefix and index not in self._in_flight and index not in self._buffer:
                return index
        return None

    def _ask_digests(self, holder: _Holder, now: float) -> AskDigests:
        first = len(holder.pages) // DIGEST_LEN
        holder.listing_first = first
        holder.listing_deadline = now + self.params.digests_timeout_s
        return AskDigests(holder.peer, first, self.params.digest_page)

    def _drop(
        self, holder: _Holder, why: str, now: float | None = None, *, may_return: bool = False
    ) -> list[Action]:
        """Take `holder` out of this transfer; its chunks go back to the queue."""
        holder.state = HolderState.OUT
        holder.why_out = why
        holder.may_return = may_return
        self.reasons.append(f"{holder.peer.short}: {why}")
        for index in holder.in_flight:
            if self._in_flight.get(index) == holder.peer:
                del self._in_flight[index]
                self._retry.append(index)
        holder.in_flight.clear()
        holder.pages = bytearray()
        return [] if now is None else self._pump(now)

    def _lied(self, holder: _Holder, why: str, now: float | None = None) -> list[Action]:
        return [Blame(holder.peer, why), *self._drop(holder, f"lied: {why}", now)]

    def _state_after_return(self, holder: _Holder) -> HolderState:
        for key, peers in self._lists.items():
            if holder.peer in peers and key not in self._rejected:
                return HolderState.READY if key == self._active else HolderState.DISSENTING
        return HolderState.SPARE


def _digest_at(digests: bytes, index: int) -> bytes:
    return digests[index * DIGEST_LEN : (index + 1) * DIGEST_LEN]


def _chunk_count(total: int, chunk_size: int) -> int:
    return -(-total // chunk_size)


def _chunk_length(index: int, total: int, chunk_size: int) -> int:
    return min(chunk_size, total - index * chunk_size)


__all__ = [
    "MAX_FETCH_BYTES",
    "Action",
    "Append",
    "AskChunk",
    "AskDigests",
    "Blame",
    "Commit",
    "Discard",
    "HolderState",
    "Transfer",
    "TransferParams",
    "Truncate",
]
