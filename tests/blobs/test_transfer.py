"""The fetch core: who is asked for what, what is staged, and who is blamed (only on proof)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from lightbox_node.blobs.transfer import (
    Action,
    Append,
    AskChunk,
    AskDigests,
    Blame,
    Commit,
    Discard,
    HolderState,
    Transfer,
    TransferParams,
    Truncate,
)
from lightbox_node.identity import Identity, PeerId
from lightbox_node.store import BlobId

CHUNK = 16
PARAMS = TransferParams(chunk_size=CHUNK, window=6, per_holder=3, max_holders=3, digest_page=4)
DATA = bytes(range(256)) * 2 + b"tail"  # 32 whole chunks and a short one
BLOB = BlobId.of_bytes(DATA)


def peer(name: str) -> PeerId:
    return Identity.from_seed(name.encode().ljust(32, b".")).peer_id


A, B, C = peer("a"), peer("b"), peer("c")


def digests_of(data: bytes) -> bytes:
    return b"".join(
        hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK)
    )


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass
class Harness:
    """Feeds a Transfer the answers of scripted holders and keeps the staged bytes."""

    transfer: Transfer
    content: dict[PeerId, bytes] = field(default_factory=dict)
    staged: bytearray = field(default_factory=bytearray)
    blamed: list[PeerId] = field(default_factory=list)
    asks: list[Action] = field(default_factory=list)
    committed: bytes | None = None
    discarded: int = 0
    now: float = 0.0

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, AskDigests | AskChunk):
                self.asks.append(action)
            elif isinstance(action, Append):
                for chunk in action.chunks:
                    self.staged += chunk
            elif isinstance(action, Truncate):
                assert action.size <= len(self.staged)
                del self.staged[action.size :]
            elif isinstance(action, Discard):
                self.staged.clear()
                self.discarded += 1
            elif isinstance(action, Blame):
                self.blamed.append(action.peer)
            elif isinstance(action, Commit):
                if hashlib.sha256(self.staged).hexdigest() == self.transfer.blob_id.hex_digest:
                    self.committed = bytes(self.staged)
                    self.apply(self.transfer.committed())
                else:
                    self.apply(self.transfer.hash_mismatch(self.now))

    def answer(self, ask: Action, *, data: bytes | None = None) -> None:
        """Answer one request as the holder's content says (or with `data`)."""
        self.asks.remove(ask)
        if isinstance(ask, AskDigests):
            content = self.content[ask.peer]
            listed = digests_of(content)[ask.first * 32 : (ask.first + ask.count) * 32]
            self.apply(
                self.transfer.digests_received(
                    ask.peer, len(content), CHUNK, ask.first, listed, self.now
                )
            )
        else:
            assert isinstance(ask, AskChunk)
            chunk = self.content[ask.peer][ask.offset : ask.offset + ask.length]
            chunk = chunk if data is None else data
            self.apply(
                self.transfer.chunk_received(ask.peer, ask.index, chunk, sha(chunk), self.now)
            )

    def list_all(self) -> None:
        """Answer every digest-list request (and the pages they lead to)."""
        while any(isinstance(ask, AskDigests) for ask in self.asks):
            self.answer(next(a for a in self.asks if isinstance(a, AskDigests)))

    def run(self, *, order: random.Random | None = None) -> None:
        """Answer everything asked until nothing is outstanding."""
        while self.asks:
            ask = order.choice(self.asks) if order else self.asks[0]
            self.answer(ask)


def start(*holders: tuple[PeerId, bytes], staged: bytes = b"") -> Harness:
    staged_digests = [sha(staged[i : i + CHUNK]) for i in range(0, len(staged), CHUNK)]
    transfer = Transfer(BLOB, staged=staged_digests, staged_bytes=len(staged), params=PARAMS)
    harness = Harness(transfer, dict(holders), bytearray(staged))
    harness.apply(transfer.add_holders([p for p, _ in holders], 0.0))
    return harness


def test_a_blob_is_fetched_from_one_holder_and_committed_in_order() -> None:
    harness = start((A, DATA))
    assert harness.asks == [AskDigests(A, 0, 4)]
    harness.run(order=random.Random(1))
    assert harness.committed == DATA and harness.transfer.done
    assert harness.blamed == []
    assert harness.transfer.received_from() == {A: len(DATA)}


def test_chunks_are_spread_over_holders_within_the_window() -> None:
    harness = start((A, DATA), (B, DATA), (C, DATA))
    harness.list_all()
    chunk_asks = [ask for ask in harness.asks if isinstance(ask, AskChunk)]
    assert len(chunk_asks) == PARAMS.window
    per_peer = {p: sum(ask.peer == p for ask in chunk_asks) for p in (A, B, C)}
    assert max(per_peer.values()) <= PARAMS.per_holder
    harness.run()
    assert harness.committed == DATA
    assert set(harness.transfer.received_from()) == {A, B, C}


def test_a_long_digest_list_is_asked_for_page_by_page() -> None:
    harness = start((A, DATA))
    pages = 0
    while isinstance(harness.asks[0], AskDigests):
        assert harness.asks[0].first == 4 * pages
        harness.answer(harness.asks[0])
        pages += 1
    assert pages == 9  # 33 digests, 4 a page


def test_a_chunk_that_contradicts_its_senders_own_list_is_blamed_and_fetched_elsewhere() -> None:
    harness = start((A, DATA), (B, DATA))
    harness.list_all()
    first_from_a = next(a for a in harness.asks if isinstance(a, AskChunk) and a.peer == A)
    harness.answer(first_from_a, data=b"x" * first_from_a.length)
    assert harness.blamed == [A]
    assert harness.transfer.holder_state(A) is HolderState.OUT
    harness.asks = [ask for ask in harness.asks if ask.peer != A]  # A's late answers are lost
    harness.run()
    assert harness.committed == DATA
    assert harness.blamed == [A]


def test_a_chunk_of_the_wrong_length_is_blamed() -> None:
    harness = start((A, DATA), (B, DATA))
    harness.list_all()
    ask = next(a for a in harness.asks if isinstance(a, AskChunk))
    harness.answer(ask, data=b"short")
    assert harness.blamed == [ask.peer]


def test_a_holder_whose_link_closes_hands_its_chunks_to_the_others_unblamed() -> None:
    harness = start((A, DATA), (B, DATA))
    harness.list_all()
    harness.apply(harness.transfer.peer_gone(A, 1.0))
    harness.asks = [ask for ask in harness.asks if ask.peer != A]
    harness.run()
    assert harness.committed == DATA and harness.blamed == []
    assert harness.transfer.worth_waiting


def test_a_self_consistent_lie_is_caught_by_the_whole_hash_and_the_honest_list_takes_over() -> None:
    forged = DATA[:100] + b"?" + DATA[101:]  # same size, chunk 6 differs
    harness = start((A, forged), (B, DATA))
    while not any(isinstance(ask, AskChunk) for ask in harness.asks):
        harness.answer(harness.asks[0])  # A's pages first: its list becomes the active one
    for _ in range(8):
        harness.answer(next(a for a in harness.asks if a.peer == A))
    assert harness.transfer.holder_state(A) is HolderState.READY
    harness.run()
    assert harness.committed == DATA
    assert harness.blamed == [A]


def test_a_lying_list_that_nobody_else_contradicts_leaves_nothing_staged() -> None:
    forged = DATA[:-1] + b"!"
    harness = start((A, forged))
    harness.run()
    assert harness.committed is None and harness.blamed == [A]
    assert harness.discarded == 1 and not harness.staged
    assert harness.transfer.stalled and not harness.transfer.worth_waiting


def test_a_dissenting_list_is_blamed_once_the_blob_proves_the_other_right() -> None:
    forged = DATA[:40] + b"!" + DATA[41:]
    harness = start((A, DATA), (B, forged))
    harness.run()
    assert harness.committed == DATA
    assert harness.blamed == [B]
    assert B not in harness.transfer.received_from()


def test_a_staged_prefix_from_an_earlier_attempt_is_not_fetched_again() -> None:
    harness = start((A, DATA), staged=DATA[: 10 * CHUNK])
    harness.run()
    assert harness.committed == DATA
    assert harness.transfer.received_from() == {A: len(DATA) - 10 * CHUNK}


def test_a_staged_prefix_is_cut_where_it_stops_matching_the_list() -> None:
    staged = DATA[: 4 * CHUNK] + b"z" * CHUNK + DATA[5 * CHUNK : 8 * CHUNK]
    harness = start((A, DATA), staged=staged)
    harness.list_all()
    assert len(harness.staged) == 4 * CHUNK
    harness.run()
    assert harness.committed == DATA


def test_a_holder_that_stops_delivering_times_out_unblamed_and_its_chunks_move_on() -> None:
    params = TransferParams(chunk_size=CHUNK, window=12, per_holder=3, digest_page=64)
    transfer = Transfer(BLOB, params=params)
    harness = Harness(transfer, {A: DATA, B: DATA})
    harness.apply(transfer.add_holders([A, B], 0.0))
    harness.list_all()
    assert transfer.next_deadline() == params.chunk_timeout_s
    harness.now = 6.0  # B delivers (its clock restarts), A does not
    for ask in [a for a in harness.asks if a.peer == B]:
        harness.answer(ask)
    assert any(a.peer == B for a in harness.asks)  # B was given more
    harness.now = params.chunk_timeout_s
    harness.apply(transfer.tick(harness.now))
    assert transfer.holder_state(A) is HolderState.OUT
    assert transfer.holder_state(B) is HolderState.READY
    assert "no chunk within 10 s" in transfer.reasons[0]
    harness.asks = [ask for ask in harness.asks if ask.peer != A]
    harness.run()
    assert harness.committed == DATA and harness.blamed == []


def test_a_slow_link_is_judged_by_its_progress_not_by_each_request() -> None:
    harness = start((A, DATA))
    harness.list_all()
    for step in range(1, 20):  # one chunk every 9 s: never 10 s without progress
        harness.now = 9.0 * step
        harness.apply(harness.transfer.tick(harness.now))
        harness.answer(next(a for a in harness.asks if isinstance(a, AskChunk)))
    assert harness.transfer.holder_state(A) is HolderState.READY


def test_a_busy_holder_is_asked_again_after_a_pause() -> None:
    harness = start((A, DATA))
    harness.list_all()
    ask = next(a for a in harness.asks if isinstance(a, AskChunk))
    harness.asks.remove(ask)
    harness.apply(harness.transfer.refused(A, ask.index, "busy", True, 0.0))
    assert all(a.index != ask.index for a in harness.asks if isinstance(a, AskChunk))
    assert harness.transfer.next_deadline() == PARAMS.busy_backoff_s
    harness.now = PARAMS.busy_backoff_s
    harness.apply(harness.transfer.tick(harness.now))
    harness.run()
    assert harness.committed == DATA


def test_a_holder_that_says_not_here_is_dropped_and_the_transfer_stalls() -> None:
    harness = start((A, DATA))
    ask = harness.asks.pop()
    harness.apply(harness.transfer.refused(A, None, "not held here", False, 0.0))
    assert harness.transfer.stalled and not harness.transfer.worth_waiting
    assert "not held here" in harness.transfer.reasons[0]
    assert ask.peer == A


def test_a_holder_back_after_its_link_closed_carries_on() -> None:
    harness = start((A, DATA))
    harness.list_all()
    for _ in range(3):
        harness.answer(next(a for a in harness.asks if isinstance(a, AskChunk)))
    harness.apply(harness.transfer.peer_gone(A, 1.0))
    harness.asks.clear()
    assert harness.transfer.stalled and harness.transfer.worth_waiting
    harness.apply(harness.transfer.add_holders([A], 2.0))
    assert harness.asks and all(isinstance(ask, AskChunk) for ask in harness.asks)
    harness.run()
    assert harness.committed == DATA


def test_a_blob_over_the_limit_is_refused_without_blame() -> None:
    small = TransferParams(chunk_size=CHUNK, max_bytes=100)
    transfer = Transfer(BLOB, params=small)
    transfer.add_holders([A], 0.0)
    actions = transfer.digests_received(A, len(DATA), CHUNK, 0, digests_of(DATA)[:128], 0.0)
    assert actions == [] and transfer.stalled
    assert "over the 100" in transfer.reasons[0]


def test_an_empty_blob_commits_at_once() -> None:
    transfer = Transfer(BlobId.of_bytes(b""), params=PARAMS)
    transfer.add_holders([A], 0.0)
    assert transfer.digests_received(A, 0, CHUNK, 0, b"", 0.0) == [Commit(b"")]


def test_a_digest_page_of_the_wrong_size_is_blamed() -> None:
    transfer = Transfer(BLOB, params=PARAMS)
    transfer.add_holders([A], 0.0)
    actions = transfer.digests_received(A, len(DATA), CHUNK, 0, b"d" * 32, 0.0)
    assert actions[0] == Blame(A, "sent 1 digests, not 4")


# -- a property: whatever the liars do and in whatever order answers come -------------------

KINDS = ("honest", "corrupt_chunks", "forged_list", "vanishes", "busy")
STAGED = ("nothing", "true_prefix", "garbage_prefix")


@settings(max_examples=200, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5),
    staged=st.sampled_from(STAGED),
    seed=st.integers(0, 2**32),
)
def test_only_liars_are_blamed_and_only_the_true_blob_is_committed(
    kinds: list[str], staged: str, seed: int
) -> None:
    order = random.Random(seed)
    holders = [(peer(f"h{i}"), kind) for i, kind in enumerate(kinds)]
    content = {}
    for holder, kind in holders:
        if kind == "forged_list":
            spot = order.randrange(len(DATA))
            content[holder] = DATA[:spot] + bytes([DATA[spot] ^ 1]) + DATA[spot + 1 :]
        else:
            content[holder] = DATA
    prefix = order.randrange(len(DATA) // CHUNK) * CHUNK
    kept = {"nothing": b"", "true_prefix": DATA[:prefix], "garbage_prefix": bytes(prefix)}
    harness = start(*((holder, content[holder]) for holder, _ in holders), staged=kept[staged])
    transfer, kind_of = harness.transfer, dict(holders)
    for _ in range(5000):
        if harness.committed is not None or transfer.stalled:
            break
        if not harness.asks:
            deadline = transfer.next_deadline()
            assert deadline is not None, "nothing asked, nothing due, yet not stalled"
            harness.now = max(harness.now, deadline)
            harness.apply(transfer.tick(harness.now))
            continue
        harness.now += 0.01
        ask = order.choice(harness.asks)
        kind = kind_of[ask.peer]
        if kind == "vanishes" and order.random() < 0.1:
            harness.asks = [a for a in harness.asks if a.peer != ask.peer]
            harness.apply(transfer.peer_gone(ask.peer, harness.now))
        elif kind == "corrupt_chunks" and isinstance(ask, AskChunk) and order.random() < 0.3:
            harness.answer(ask, data=bytes(ask.length))
        elif kind == "busy" and isinstance(ask, AskChunk) and order.random() < 0.3:
            harness.asks.remove(ask)
            harness.apply(transfer.refused(ask.peer, ask.index, "busy", True, harness.now))
        else:
            harness.answer(ask)
        out = {p for p, _ in holders if transfer.holder_state(p) is HolderState.OUT}
        harness.asks = [a for a in harness.asks if a.peer not in out]
    liars = {holder for holder, kind in holders if kind in ("corrupt_chunks", "forged_list")}
    assert set(harness.blamed) <= liars
    if harness.committed is not None:
        assert harness.committed == DATA
        for holder, kind in holders:
            state = transfer.holder_state(holder)
            if kind == "forged_list" and state in (HolderState.READY, HolderState.DISSENTING):
                assert holder in harness.blamed  # its complete list is proven false
    else:
        assert transfer.stalled, "gave up neither committed nor stalled"
        if ("honest" in kinds or "busy" in kinds) and "vanishes" not in kinds:
            raise AssertionError(f"stuck with an honest holder at hand: {transfer.reasons}")
