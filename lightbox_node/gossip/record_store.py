"""The current capability record of every known author, kept as the exact frames that arrived.

`RecordStore.offer(frame, now_ms)` is the one way in: it verifies the frame (skipping the
signature check for a frame already held), keeps it only if its seq is the highest seen
from its author, and says what happened as an `Offered` value. Frames are kept as bytes so
gossip forwards them unchanged.

Anti-entropy works on author-key ranges. The 32-byte author keys fall into 16 buckets by
their first four bits; `summary()` is 16 eight-byte hashes of each bucket's (author, seq)
pairs, so two stores find the buckets where they differ from 128 bytes, and then trade
`digest(lo, hi)` maps `{author_bytes: seq}` only for those ranges. `missing_from` and
`newer_than` say which frames the other side lacks, `wanted_from` which authors it has newer.

The store is bounded: past `capacity` authors, the record nearest expiry is dropped (never
the node's own). The highest seq per author is remembered beyond removal (through
`wire.SequenceFilter`), so a removed or expired record cannot be brought back by replaying
it; only a newer record from its author returns.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from lightbox_node.errors import Expired, FromTheFuture, MalformedMessage, WireError
from lightbox_node.gossip.records import (
    RECORD_DOMAIN,
    RECORD_LIMITS,
    CapabilityRecord,
    message_id_of,
    open_record,
)
from lightbox_node.identity import PeerId
from lightbox_node.wire import SequenceFilter, WireLimits

BUCKET_COUNT = 16
BUCKET_HASH_LEN = 8
SUMMARY_LEN = BUCKET_COUNT * BUCKET_HASH_LEN
AUTHOR_KEY_LEN = 32


class OfferOutcome(enum.Enum):
    """What `RecordStore.offer` did with a frame."""

    NEW = "new"
    """Stored: the first record from its author, or a higher seq replacing the older one."""
    DUPLICATE = "duplicate"
    """The very same frame (same message id) is already held; not verified again."""
    STALE = "stale"
    """A valid record whose seq is not above the highest seen from its author."""
    INVALID = "invalid"
    """Refused by `open_record`: bad signature, shape, bounds, domain or network."""
    EXPIRED = "expired"
    """Its validity window has passed."""
    FUTURE = "future"
    """Issued further ahead than the allowed clock skew."""
    FULL = "full"
    """The store is at capacity and this record would expire before every one held."""


@dataclass(frozen=True, slots=True)
class Offered:
    """The outcome of one offer, with what a caller needs to act on it."""

    outcome: OfferOutcome
    message_id: bytes
    record: CapabilityRecord | None = None
    """The record, for NEW, STALE and FULL (it verified)."""
    replaced: CapabilityRecord | None = None
    """For NEW, the older record of the same author that it replaced."""
    evicted: tuple[PeerId, ...] = ()
    """For NEW, authors dropped to stay within capacity."""
    error: WireError | None = None
    """For INVALID, EXPIRED and FUTURE, why."""

    @property
    def is_new(self) -> bool:
        return self.outcome is OfferOutcome.NEW


@dataclass(frozen=True, slots=True)
class _Held:
    record: CapabilityRecord
    frame: bytes
    message_id: bytes


def bucket_of(author_key: bytes) -> int:
    return author_key[0] >> 4 if author_key else 0


def bucket_range(bucket: int) -> tuple[bytes, bytes]:
    """The author-key range [lo, hi) of a bucket; hi is b"" for "to the end"."""
    lo = bytes([bucket << 4]) if bucket else b""
    hi = bytes([(bucket + 1) << 4]) if bucket + 1 < BUCKET_COUNT else b""
    return lo, hi


def in_range(author_key: bytes, lo: bytes, hi: bytes) -> bool:
    """Whether `lo <= author_key < hi`, with an empty `hi` meaning no upper bound."""
    return author_key >= lo and (not hi or author_key < hi)


class RecordStore:
    """The highest-seq, unexpired capability record per author, bounded in size."""

    def __init__(
        self,
        network: str,
        *,
        capacity: int = 4096,
        own: PeerId | None = None,
        limits: WireLimits = RECORD_LIMITS,
    ) -> None:
        if capacity < 1:
            raise ValueError("a record store holds at least one record")
        self.network = network
        self.capacity = capacity
        self.own = own
        self.limits = limits
        self._held: dict[bytes, _Held] = {}
        self._by_message_id: dict[bytes, bytes] = {}
        self._expiry: list[tuple[int, bytes, int]] = []  # (expires_at_ms, author, seq), lazy
        self._highest = SequenceFilter(capacity=4 * capacity)
        self._bucket_hashes: dict[int, bytes] = {}

    # -- the way in -------------------------------------------------------------------------

    def offer(self, frame: bytes, now_ms: int) -> Offered:
        """Verify `frame` and keep it if it is the newest record from its author."""
        if not isinstance(frame, bytes):
            return Offered(
                OfferOutcome.INVALID,
                b"",
                error=MalformedMessage(f"a record frame is bytes, got {type(frame).__name__}"),
            )
        message_id = message_id_of(frame)
        if message_id in self._by_message_id:
            return Offered(OfferOutcome.DUPLICATE, message_id)
        try:
            record, verified = open_record(frame, now_ms, self.network, self.limits)
        except Expired as exc:
            return Offered(OfferOutcome.EXPIRED, message_id, error=exc)
        except FromTheFuture as exc:
            return Offered(OfferOutcome.FUTURE, message_id, error=exc)
        except WireError as exc:
            return Offered(OfferOutcome.INVALID, message_id, error=exc)
        author = record.author.public_key
        last = self._highest.highest(RECORD_DOMAIN, record.author)
        if last is not None and record.seq <= last:
            return Offered(OfferOutcome.STALE, message_id, record=record)
        previous = self._held.get(author)
        evicted: list[PeerId] = []
        if previous is None and len(self._held) >= self.capacity:
            victim = self._nearest_expiry(exclude=record.author)
            expires_first = victim is None or victim.record.expires_at_ms > record.expires_at_ms
            if expires_first and record.author != self.own:
                return Offered(OfferOutcome.FULL, message_id, record=record)
            if victim is not None:
                self._drop(victim.record.author.public_key)
                evicted.append(victim.record.author)
        self._highest.accept(verified.envelope)
        if previous is not None:
            del self._by_message_id[previous.message_id]
        self._held[author] = _Held(record, verified.frame, message_id)
        self._by_message_id[message_id] = author
        heapq.heappush(self._expiry, (record.expires_at_ms, author, record.seq))
        self._bucket_hashes.pop(bucket_of(author), None)
        self._compact_expiry()
        return Offered(
            OfferOutcome.NEW,
            message_id,
            record=record,
            replaced=previous.record if previous else None,
            evicted=tuple(evicted),
        )

    # -- the ways out ----------------------------------------------------------------------

    def remove(self, author: PeerId) -> CapabilityRecord | None:
        """Forget the record of `author` (e.g. liveness found it dead); returns it if held."""
        held = self._drop(author.public_key)
        return held.record if held else None

    def expire(self, now_ms: int) -> list[PeerId]:
        """Drop every record whose window has passed; returns their authors."""
        removed: list[PeerId] = []
        while self._expiry and self._expiry[0][0] <= now_ms:
            _, author, seq = heapq.heappop(self._expiry)
            held = self._held.get(author)
            if held is not None and held.record.seq == seq:
                self._drop(author)
                removed.append(held.record.author)
        return removed

    def _drop(self, author: bytes) -> _Held | None:
        held = self._held.pop(author, None)
        if held is not None:
            del self._by_message_id[held.message_id]
            self._bucket_hashes.pop(bucket_of(author), None)
        self._compact_expiry()
        return held

    def _compact_expiry(self) -> None:
        """Drop heap entries of replaced or removed records once they outnumber live ones."""
        if len(self._expiry) > 4 * len(self._held) + 64:
            self._expiry = [e for e in self._expiry if self._is_current(e)]
            heapq.heapify(self._expiry)

    def _is_current(self, entry: tuple[int, bytes, int]) -> bool:
        held = self._held.get(entry[1])
        return held is not None and held.record.seq == entry[2]

    def _nearest_expiry(self, exclude: PeerId) -> _Held | None:
        """The held record that expires first, other than the node's own and `exclude`'s."""
        skip = {exclude.public_key} | ({self.own.public_key} if self.own else set())
        for entry in heapq.nsmallest(len(skip) + 1, filter(self._is_current, self._expiry)):
            if entry[1] not in skip:
                return self._held[entry[1]]
        return None

    # -- lookups ---------------------------------------------------------------------------

    def get(self, author: PeerId) -> CapabilityRecord | None:
        held = self._held.get(author.public_key)
        return held.record if held else None

    def frame_of(self, author: PeerId) -> bytes | None:
        held = self._held.get(author.public_key)
        return held.frame if held else None

    def frame_by_message_id(self, message_id: bytes) -> bytes | None:
        author = self._by_message_id.get(message_id)
        return self._held[author].frame if author is not None else None

    def holds_message(self, message_id: bytes) -> bool:
        return message_id in self._by_message_id

    def live(self, now_ms: int) -> Iterator[CapabilityRecord]:
        """The records still valid at `now_ms` (expired ones linger until `expire`)."""
        for held in list(self._held.values()):
            if held.record.expires_at_ms > now_ms:
                yield held.record

    def __iter__(self) -> Iterator[CapabilityRecord]:
        return iter([held.record for held in self._held.values()])

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, author: object) -> bool:
        return isinstance(author, PeerId) and author.public_key in self._held

    # -- anti-entropy ----------------------------------------------------------------------

    def summary(self) -> bytes:
        """16 bucket hashes of 8 bytes: equal summaries mean equal (author, seq) sets."""
        return b"".join(self._bucket_hash(bucket) for bucket in range(BUCKET_COUNT))

    def differing_buckets(self, summary: bytes) -> list[int]:
        """Buckets where another store's `summary()` differs from this one's."""
        return [
            bucket
            for bucket in range(BUCKET_COUNT)
            if summary[bucket * BUCKET_HASH_LEN : (bucket + 1) * BUCKET_HASH_LEN]
            != self._bucket_hash(bucket)
        ]

    def _bucket_hash(self, bucket: int) -> bytes:
        cached = self._bucket_hashes.get(bucket)
        if cached is None:
            hasher = hashlib.blake2b(digest_size=BUCKET_HASH_LEN, person=b"lightbox-digest")
            lo, hi = bucket_range(bucket)
            for author, seq in sorted(self.digest(lo, hi).items()):
                hasher.update(author + seq.to_bytes(8, "big"))
            cached = self._bucket_hashes[bucket] = hasher.digest()
        return cached

    def digest(self, lo: bytes = b"", hi: bytes = b"") -> dict[bytes, int]:
        """`{author_key: seq}` of the records held with `lo <= author_key < hi`."""
        return {
            author: held.record.seq
            for author, held in self._held.items()
            if in_range(author, lo, hi)
        }

    def missing_from(
        self, digest: Mapping[bytes, int], lo: bytes = b"", hi: bytes = b""
    ) -> list[bytes]:
        """Frames held here, in [lo, hi), whose author the digest does not list at all."""
        return [
            held.frame
            for author, held in self._held.items()
            if author not in digest and in_range(author, lo, hi)
        ]

    def newer_than(self, digest: Mapping[bytes, int]) -> list[bytes]:
        """Frames held here with a higher seq than the digest lists for their author."""
        return [
            held.frame
            for author, held in self._held.items()
            if author in digest and held.record.seq > digest[author]
        ]

    def wanted_from(self, digest: Mapping[bytes, int]) -> list[bytes]:
        """Authors the digest lists with a higher seq than anything accepted here."""
        wanted = []
        for author, seq in digest.items():
            held = self._held.get(author)
            if held is not None:
                if seq > held.record.seq:
                    wanted.append(author)
            elif len(author) == AUTHOR_KEY_LEN:
                last = self._highest.highest(RECORD_DOMAIN, PeerId(author))
                if last is None or seq > last:
                    wanted.append(author)
        return wanted


__all__ = [
    "BUCKET_COUNT",
    "SUMMARY_LEN",
    "OfferOutcome",
    "Offered",
    "RecordStore",
    "bucket_range",
]
