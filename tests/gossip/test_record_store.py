"""The record store: the newest valid record per author, bounded, and diffable by digest."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lightbox_node.errors import BadSignature, Expired, FromTheFuture
from lightbox_node.gossip.record_store import (
    BUCKET_COUNT,
    SUMMARY_LEN,
    OfferOutcome,
    RecordStore,
    bucket_range,
)
from lightbox_node.gossip.records import build_record_frame, message_id_of
from lightbox_node.identity import Identity

NOW = 1_700_000_000_000
NETWORK = "lightbox-test"


def _identity(n: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(b"store-%d" % n).digest())


IDS = [_identity(n) for n in range(40)]


def _frame(
    who: Identity, seq: int, *, now_ms: int = NOW, ttl_ms: int = 60_000, slots: int = 0
) -> bytes:
    return build_record_frame(
        who,
        network=NETWORK,
        roles=("gpu",),
        addresses=("ws://127.0.0.1:7450",),
        free_slots=slots,
        version="0.1.0",
        seq=seq,
        now_ms=now_ms,
        ttl_ms=ttl_ms,
    )


def test_first_record_of_an_author_is_new_and_can_be_looked_up() -> None:
    store = RecordStore(NETWORK)
    frame = _frame(IDS[0], 1)
    offered = store.offer(frame, NOW)
    assert offered.outcome is OfferOutcome.NEW and offered.is_new
    assert offered.message_id == message_id_of(frame)
    assert offered.replaced is None
    assert store.get(IDS[0].peer_id) == offered.record
    assert store.frame_of(IDS[0].peer_id) == frame  # kept byte for byte, to forward unchanged
    assert store.frame_by_message_id(offered.message_id) == frame
    assert IDS[0].peer_id in store and len(store) == 1


def test_higher_seq_replaces_the_record_and_lower_or_equal_seq_is_stale() -> None:
    store = RecordStore(NETWORK)
    store.offer(_frame(IDS[0], 5), NOW)
    newer = store.offer(_frame(IDS[0], 6), NOW)
    assert newer.outcome is OfferOutcome.NEW
    assert newer.replaced is not None and newer.replaced.seq == 5
    assert store.offer(_frame(IDS[0], 4), NOW).outcome is OfferOutcome.STALE
    # Same seq, different content (an equivocating author): the first one stays.
    assert store.offer(_frame(IDS[0], 6, slots=9), NOW).outcome is OfferOutcome.STALE
    assert store.get(IDS[0].peer_id).seq == 6
    assert store.get(IDS[0].peer_id).free_slots == 0
    assert len(store) == 1


def test_the_same_frame_again_is_a_duplicate() -> None:
    store = RecordStore(NETWORK)
    frame = _frame(IDS[0], 1)
    store.offer(frame, NOW)
    offered = store.offer(frame, NOW)
    assert offered.outcome is OfferOutcome.DUPLICATE
    assert offered.record is None  # not even verified again


def test_invalid_expired_and_future_frames_are_refused_with_their_error() -> None:
    store = RecordStore(NETWORK)
    forged = bytearray(_frame(IDS[0], 1))
    forged[forged.index(b"0.1.0")] = ord("7")
    invalid = store.offer(bytes(forged), NOW)
    assert invalid.outcome is OfferOutcome.INVALID and isinstance(invalid.error, BadSignature)
    expired = store.offer(_frame(IDS[1], 1, ttl_ms=10), NOW + 10)
    assert expired.outcome is OfferOutcome.EXPIRED and isinstance(expired.error, Expired)
    future = store.offer(_frame(IDS[2], 1, now_ms=NOW + 120_000), NOW)
    assert future.outcome is OfferOutcome.FUTURE and isinstance(future.error, FromTheFuture)
    assert store.offer("not bytes", NOW).outcome is OfferOutcome.INVALID  # type: ignore[arg-type]
    assert len(store) == 0


def test_expire_removes_records_past_their_window_and_returns_the_authors() -> None:
    store = RecordStore(NETWORK)
    store.offer(_frame(IDS[0], 1, ttl_ms=1_000), NOW)
    store.offer(_frame(IDS[1], 1, ttl_ms=5_000), NOW)
    assert store.expire(NOW + 999) == []
    assert [r.author for r in store.live(NOW + 1_000)] == [IDS[1].peer_id]
    assert store.expire(NOW + 1_000) == [IDS[0].peer_id]
    assert IDS[0].peer_id not in store and IDS[1].peer_id in store
    assert store.expire(NOW + 5_000) == [IDS[1].peer_id]
    assert len(store) == 0


def test_a_replaced_record_does_not_expire_on_the_old_schedule() -> None:
    store = RecordStore(NETWORK)
    store.offer(_frame(IDS[0], 1, ttl_ms=1_000), NOW)
    store.offer(_frame(IDS[0], 2, now_ms=NOW + 500, ttl_ms=1_000), NOW + 500)
    assert store.expire(NOW + 1_000) == []
    assert store.expire(NOW + 1_500) == [IDS[0].peer_id]


def test_a_removed_record_cannot_be_replayed_back_but_a_newer_one_returns() -> None:
    store = RecordStore(NETWORK)
    old = _frame(IDS[0], 3)
    store.offer(old, NOW)
    assert store.remove(IDS[0].peer_id).seq == 3
    assert store.remove(IDS[0].peer_id) is None
    assert store.offer(old, NOW).outcome is OfferOutcome.STALE
    assert store.offer(_frame(IDS[0], 4), NOW).outcome is OfferOutcome.NEW


def test_capacity_drops_the_record_nearest_expiry() -> None:
    store = RecordStore(NETWORK, capacity=3)
    for n, ttl in enumerate([30_000, 10_000, 20_000]):
        store.offer(_frame(IDS[n], 1, ttl_ms=ttl), NOW)
    offered = store.offer(_frame(IDS[3], 1, ttl_ms=40_000), NOW)
    assert offered.outcome is OfferOutcome.NEW
    assert offered.evicted == (IDS[1].peer_id,)
    assert len(store) == 3 and IDS[1].peer_id not in store
    # A record that would expire before everything held is the one left out.
    full = store.offer(_frame(IDS[4], 1, ttl_ms=5_000), NOW)
    assert full.outcome is OfferOutcome.FULL
    assert IDS[4].peer_id not in store and len(store) == 3
    # A newer record of an author already held needs no room.
    assert store.offer(_frame(IDS[0], 2, ttl_ms=1_000), NOW).outcome is OfferOutcome.NEW


def test_capacity_never_drops_the_nodes_own_record() -> None:
    store = RecordStore(NETWORK, capacity=2, own=IDS[0].peer_id)
    store.offer(_frame(IDS[0], 1, ttl_ms=1_000), NOW)
    store.offer(_frame(IDS[1], 1, ttl_ms=5_000), NOW)
    offered = store.offer(_frame(IDS[2], 1, ttl_ms=9_000), NOW)
    assert offered.evicted == (IDS[1].peer_id,)
    assert IDS[0].peer_id in store


def test_capacity_bound_holds_under_many_authors() -> None:
    store = RecordStore(NETWORK, capacity=10)
    rng = random.Random(4)
    ttls = rng.sample(range(1_000, 100_000), 40)
    for n, ttl in enumerate(ttls):
        store.offer(_frame(IDS[n], 1, ttl_ms=ttl), NOW)
        assert len(store) <= 10
    # What is left is the ten records that live longest.
    assert sorted(r.expires_at_ms - NOW for r in store) == sorted(ttls)[-10:]


# -- digests -------------------------------------------------------------------------------


def _store_with(entries: dict[int, int]) -> RecordStore:
    store = RecordStore(NETWORK)
    for n, seq in entries.items():
        assert store.offer(_frame(IDS[n], seq), NOW).is_new
    return store


def test_digest_maps_author_keys_to_seqs() -> None:
    store = _store_with({0: 3, 1: 1})
    assert store.digest() == {IDS[0].peer_id.public_key: 3, IDS[1].peer_id.public_key: 1}


def test_equal_stores_have_equal_summaries_and_differ_only_where_they_differ() -> None:
    a = _store_with({n: 1 for n in range(20)})
    b = _store_with({n: 1 for n in range(20)})
    assert len(a.summary()) == SUMMARY_LEN
    assert a.summary() == b.summary() and a.differing_buckets(b.summary()) == []
    b.offer(_frame(IDS[7], 2), NOW)
    bucket = IDS[7].peer_id.public_key[0] >> 4
    assert a.differing_buckets(b.summary()) == [bucket]
    lo, hi = bucket_range(bucket)
    assert set(b.digest(lo, hi)) == {
        n.peer_id.public_key for n in IDS[:20] if n.peer_id.public_key[0] >> 4 == bucket
    }


def test_bucket_ranges_cover_the_key_space_once() -> None:
    for key in (bytes(32), b"\xff" * 32, b"\x10" + bytes(31), b"\x0f" + b"\xff" * 31):
        owners = [b for b in range(BUCKET_COUNT) if _in(key, *bucket_range(b))]
        assert owners == [key[0] >> 4]


def _in(key: bytes, lo: bytes, hi: bytes) -> bool:
    return key >= lo and (not hi or key < hi)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.integers(0, 11), st.integers(1, 3), max_size=12),
    st.dictionaries(st.integers(0, 11), st.integers(1, 3), max_size=12),
)
def test_digest_exchange_yields_exactly_the_missing_and_newer_records(
    mine: dict[int, int], theirs: dict[int, int]
) -> None:
    here, there = _store_with(mine), _store_with(theirs)
    digest = there.digest()
    sent = here.missing_from(digest) + here.newer_than(digest)
    expected = {n for n, seq in mine.items() if n not in theirs or seq > theirs[n]}
    assert sorted(sent) == sorted(here.frame_of(IDS[n].peer_id) for n in expected)
    wanted = {n for n, seq in theirs.items() if n not in mine or seq > mine[n]}
    assert sorted(here.wanted_from(digest)) == sorted(IDS[n].peer_id.public_key for n in wanted)
    # After the exchange both stores agree.
    for frame in sent:
        there.offer(frame, NOW)
    for frame in there.missing_from(here.digest()) + there.newer_than(here.digest()):
        here.offer(frame, NOW)
    assert here.digest() == there.digest()
    assert here.summary() == there.summary()


def test_missing_from_only_looks_inside_the_given_range() -> None:
    store = _store_with({n: 1 for n in range(12)})
    lo, hi = bucket_range(IDS[0].peer_id.public_key[0] >> 4)
    sent = store.missing_from({}, lo, hi)
    assert sorted(sent) == sorted(
        store.frame_of(i.peer_id) for i in IDS[:12] if _in(i.peer_id.public_key, lo, hi)
    )


def test_wanted_from_skips_what_was_removed_at_that_seq() -> None:
    store = _store_with({0: 2})
    store.remove(IDS[0].peer_id)
    key = IDS[0].peer_id.public_key
    assert store.wanted_from({key: 2}) == []
    assert store.wanted_from({key: 3}) == [key]
