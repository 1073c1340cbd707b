"""The gossip router on a handful of nodes: mesh upkeep, repair, promises, floods, scores."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simnet import SimNet, wall_ms

from lightbox_node.errors import StaleSequence
from lightbox_node.gossip.actions import PeerEvent, RecordAccepted, RecordRemoved, Send
from lightbox_node.gossip.record_store import SUMMARY_LEN, RecordStore
from lightbox_node.gossip.records import build_record_frame, message_id_of
from lightbox_node.gossip.router import PROTOCOL, GossipParams, GossipRouter
from lightbox_node.identity import Identity, PeerId

NETWORK = "lightbox-sim"  # the simnet's network, so frames built here open there too
T0 = 100.0


def _identity(n: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(b"router-%d" % n).digest())


LOCAL = _identity(0)
PEERS = [_identity(n).peer_id for n in range(1, 21)]
AUTHORS = [_identity(n) for n in range(100, 140)]


class Harness:
    """One router under test, with peers played by the test itself."""

    def __init__(self, connected: int = 0, **params: Any) -> None:
        self.scores: dict[PeerId, float] = {}
        self.store = RecordStore(NETWORK, own=LOCAL.peer_id)
        self.router = GossipRouter(
            LOCAL.peer_id,
            self.store,
            rng=random.Random(7),
            params=GossipParams(**params),
            score_of=lambda peer: self.scores.get(peer, 0.0),
            wall_ms=wall_ms,
        )
        for peer in PEERS[:connected]:
            self.router.peer_connected(peer, T0)

    def receive(self, peer: PeerId, body: Any, now: float = T0) -> list:
        return self.router.receive(peer, body, now)


def _frame(author: Identity, seq: int = 1, *, now: float = T0, ttl_ms: int = 60_000) -> bytes:
    return build_record_frame(
        author,
        network=NETWORK,
        roles=("gpu",),
        version="0.1.0",
        seq=seq,
        now_ms=wall_ms(now),
        ttl_ms=ttl_ms,
    )


def _sends(actions: list, tag: str | None = None) -> list[Send]:
    return [
        a
        for a in actions
        if isinstance(a, Send) and (tag is None or a.body[0] == tag) and a.protocol == PROTOCOL
    ]


def _events(actions: list, kind: str) -> list[PeerEvent]:
    return [a for a in actions if isinstance(a, PeerEvent) and a.kind == kind]


# -- mesh ------------------------------------------------------------------------------------


def test_heartbeat_grafts_d_peers_when_the_mesh_is_below_d_low() -> None:
    h = Harness(connected=10)
    actions = h.router.heartbeat(T0 + 1)
    grafts = _sends(actions, "g")
    assert len(grafts) == 6 and len(h.router.mesh) == 6
    assert {s.peer for s in grafts} == set(h.router.mesh)
    assert all(s.body == ["g"] for s in grafts)


def test_mesh_is_refilled_after_mesh_peers_leave() -> None:
    h = Harness(connected=10)
    h.router.heartbeat(T0 + 1)
    for peer in h.router.mesh[:3]:
        h.router.peer_disconnected(peer, T0 + 1.5)
    assert len(h.router.mesh) == 3
    h.router.heartbeat(T0 + 2)
    assert len(h.router.mesh) == 6


def test_mesh_within_d_low_and_d_high_is_left_alone() -> None:
    h = Harness(connected=10)
    h.router.heartbeat(T0 + 1)
    h.router.peer_disconnected(h.router.mesh[0], T0 + 1.5)
    before = h.router.mesh
    assert _sends(h.router.heartbeat(T0 + 2), "g") == []
    assert h.router.mesh == before and len(before) == 5


def test_mesh_above_d_high_is_pruned_to_d_keeping_the_best_scored() -> None:
    h = Harness(connected=15)
    best = PEERS[10:14]
    for peer in PEERS[:15]:
        h.scores[peer] = 5.0 if peer in best else 1.0
        h.receive(peer, ["g"])
    assert len(h.router.mesh) == 15
    prunes = _sends(h.router.heartbeat(T0 + 1), "p")
    assert len(h.router.mesh) == 6
    assert set(best) <= set(h.router.mesh)
    assert len(prunes) == 9 and all(s.body == ["p", 60] for s in prunes)
    assert not {s.peer for s in prunes} & set(h.router.mesh)


def test_mesh_degree_stays_within_bounds_on_a_small_network() -> None:
    sim = SimNet(5, seed=3, edges=[(a, b) for a in range(5) for b in range(a + 1, 5)])
    sim.run_for(5)
    assert [len(node.router.mesh) for node in sim.nodes] == [4] * 5  # all of D_low there is
    sim = SimNet(20, seed=3, edges=[(a, b) for a in range(20) for b in range(a + 1, 20)])
    for t in range(1, 10):
        sim.run_until(t + 0.99)
        assert all(4 <= len(node.router.mesh) <= 12 for node in sim.nodes)


def test_pruned_peer_is_not_regrafted_during_backoff() -> None:
    h = Harness(connected=1)
    h.receive(PEERS[0], ["p", 30])
    assert _sends(h.router.heartbeat(T0 + 1), "g") == []
    assert _sends(h.router.heartbeat(T0 + 31), "g") != []


def test_graft_during_backoff_is_answered_with_prune() -> None:
    h = Harness(connected=1)
    h.receive(PEERS[0], ["p", 30])
    assert _sends(h.receive(PEERS[0], ["g"], T0 + 5), "p")
    assert PEERS[0] not in h.router.mesh


# -- delivery --------------------------------------------------------------------------------


def test_new_record_is_accepted_reported_and_forwarded_to_the_mesh_but_not_back() -> None:
    h = Harness(connected=8)
    h.router.heartbeat(T0 + 1)
    source = h.router.mesh[0]
    frame = _frame(AUTHORS[0], now=T0 + 1)
    actions = h.receive(source, ["m", [frame]], T0 + 1.1)
    accepted = [a for a in actions if isinstance(a, RecordAccepted)]
    assert len(accepted) == 1 and accepted[0].source == source
    assert accepted[0].record.author == AUTHORS[0].peer_id
    assert _events(actions, "first_delivery") == [PeerEvent(source, "first_delivery")]
    forwards = _sends(actions, "m")
    assert {s.peer for s in forwards} == set(h.router.mesh) - {source}
    assert all(s.body == ["m", [frame]] for s in forwards)
    # The same frame from another mesh peer is neither accepted nor forwarded again...
    again = h.receive(h.router.mesh[1], ["m", [frame]], T0 + 1.2)
    assert again == []
    # ...and from the same peer again (outside the sync that opens every link) it is a
    # duplicate.
    assert _events(h.receive(source, ["m", [frame]], T0 + 10), "duplicate")


def test_invalid_record_frame_is_reported_and_not_forwarded() -> None:
    h = Harness(connected=8)
    h.router.heartbeat(T0 + 1)
    forged = bytearray(_frame(AUTHORS[0], now=T0 + 1))
    forged[forged.index(b"0.1.0")] = ord("6")
    actions = h.receive(PEERS[0], ["m", [bytes(forged)]], T0 + 1.1)
    assert [a.kind for a in actions] == ["invalid_message"]
    assert "signature" in actions[0].detail
    other = _frame(AUTHORS[1], now=T0 + 1, ttl_ms=60_000)
    wrong_network = build_record_frame(
        AUTHORS[2],
        network="elsewhere",
        roles=("gpu",),
        version="1",
        seq=1,
        now_ms=wall_ms(T0),
        ttl_ms=60_000,
    )
    actions = h.receive(PEERS[1], ["m", [other, wrong_network]], T0 + 1.2)
    assert len(_events(actions, "invalid_message")) == 1
    assert len(_events(actions, "first_delivery")) == 1


def test_stale_and_expired_records_are_dropped_without_blame() -> None:
    h = Harness(connected=2)
    h.receive(PEERS[0], ["m", [_frame(AUTHORS[0], 5)]])
    actions = h.receive(PEERS[1], ["m", [_frame(AUTHORS[0], 4)]])
    assert actions == []
    expired = _frame(AUTHORS[1], now=T0 - 100, ttl_ms=1_000)
    assert h.receive(PEERS[1], ["m", [expired]]) == []


def test_publish_sends_the_own_record_to_every_neighbour() -> None:
    h = Harness(connected=9)
    h.router.heartbeat(T0 + 1)
    frame = _frame(LOCAL, 1, now=T0 + 1)
    actions = h.router.publish(frame, T0 + 1)
    assert isinstance(actions[0], RecordAccepted) and actions[0].source is None
    assert {s.peer for s in _sends(actions, "m")} == set(PEERS[:9])
    assert h.store.get(LOCAL.peer_id).seq == 1
    with pytest.raises(StaleSequence):
        h.router.publish(frame, T0 + 2)
    with pytest.raises(ValueError):
        h.router.publish(_frame(AUTHORS[0]), T0 + 2)


def test_expired_records_are_removed_at_the_heartbeat() -> None:
    h = Harness(connected=1)
    h.receive(PEERS[0], ["m", [_frame(AUTHORS[0], ttl_ms=2_000)]])
    assert RecordRemoved(AUTHORS[0].peer_id, "expired") not in h.router.heartbeat(T0 + 1)
    assert RecordRemoved(AUTHORS[0].peer_id, "expired") in h.router.heartbeat(T0 + 2)
    assert len(h.store) == 0


# -- lazy repair -----------------------------------------------------------------------------


def test_ihave_iwant_repair_delivers_a_record_to_a_peer_outside_the_mesh() -> None:
    # A - B - C in a line; B keeps C out of its mesh (score between gossip and mesh
    # thresholds), so C can only learn A's record through B's IHAVE and its own IWANT.
    sim = SimNet(3, seed=5, edges=[(0, 1), (1, 2)], params=GossipParams(anti_entropy_every=1000))
    b, c = sim.nodes[1], sim.nodes[2]
    b.scores[c.peer_id] = -5.0
    c.scores[b.peer_id] = -5.0
    sim.run_for(3)
    assert c.peer_id not in b.router.mesh and b.peer_id not in c.router.mesh
    author, seq = sim.publish(0)
    published_at = sim.now
    sim.run_for(0.5)
    assert sim.holders(author, seq) == 2  # A and B: eager push stops at the mesh
    sim.run_for(2)
    assert sim.holders(author, seq) == 3
    assert sim.arrivals[(author, seq)][2] > published_at + 0.5
    assert sim.events_of("first_delivery", about=1)  # C credited B for the repair


def test_ihave_is_sent_to_non_mesh_peers_only_for_recent_ids_they_lack() -> None:
    h = Harness(connected=3, d=1, d_low=1, d_high=2, d_score=1)
    h.router.heartbeat(T0 + 1)
    (mesh_peer,) = h.router.mesh
    frame = _frame(AUTHORS[0], now=T0 + 1)
    h.receive(mesh_peer, ["m", [frame]], T0 + 1.1)
    ihaves = _sends(h.router.heartbeat(T0 + 2), "h")
    assert {s.peer for s in ihaves} == set(PEERS[:3]) - {mesh_peer}
    assert all(s.body == ["h", [message_id_of(frame)]] for s in ihaves)
    for _ in range(3):
        h.router.heartbeat(T0 + 3)
    assert _sends(h.router.heartbeat(T0 + 4), "h") == []  # out of the gossip window


def test_iwant_is_answered_from_the_cache() -> None:
    h = Harness(connected=2)
    frame = _frame(AUTHORS[0])
    h.receive(PEERS[0], ["m", [frame]])
    answer = h.receive(PEERS[1], ["w", [message_id_of(frame), b"\x00" * 16]])
    assert _sends(answer) == [Send(PEERS[1], PROTOCOL, ["m", [frame]])]


def test_ihave_is_answered_with_iwant_for_unknown_ids_only() -> None:
    h = Harness(connected=2)
    known = _frame(AUTHORS[0])
    h.receive(PEERS[0], ["m", [known]])
    fresh = b"\x01" * 16
    actions = h.receive(PEERS[1], ["h", [message_id_of(known), fresh]])
    assert _sends(actions) == [Send(PEERS[1], PROTOCOL, ["w", [fresh]])]
    # Already asked of PEERS[1]: another advertiser is not asked for it too.
    assert h.receive(PEERS[0], ["h", [fresh]]) == []


def test_a_peer_that_does_not_deliver_what_it_advertised_broke_its_promise() -> None:
    h = Harness(connected=2)
    h.receive(PEERS[0], ["h", [b"\x02" * 16, b"\x03" * 16]])
    assert _events(h.router.heartbeat(T0 + 2.9), "broken_promise") == []
    broken = _events(h.router.heartbeat(T0 + 3.0), "broken_promise")
    assert [e.peer for e in broken] == [PEERS[0]]
    assert "2 of 2" in broken[0].detail
    # Once the promise is settled, the ids may be asked for again.
    assert _sends(h.receive(PEERS[1], ["h", [b"\x02" * 16]], T0 + 3.1), "w")


def test_a_kept_promise_is_not_reported() -> None:
    h = Harness(connected=1)
    frame = _frame(AUTHORS[0])
    h.receive(PEERS[0], ["h", [message_id_of(frame)]])
    h.receive(PEERS[0], ["m", [frame]], T0 + 1)
    assert _events(h.router.heartbeat(T0 + 5), "broken_promise") == []


def test_iwant_requests_per_peer_are_capped_per_heartbeat() -> None:
    h = Harness(connected=1, max_iwant_per_heartbeat=5, max_ihave_length=10)
    ids = [bytes([i]) * 16 for i in range(10)]
    (iwant,) = _sends(h.receive(PEERS[0], ["h", ids]), "w")
    assert iwant.body[1] == ids[:5]
    assert h.receive(PEERS[0], ["h", ids[5:]]) == []
    h.router.heartbeat(T0 + 1)
    assert _sends(h.receive(PEERS[0], ["h", ids[5:]], T0 + 1.1), "w")


# -- anti-entropy ----------------------------------------------------------------------------


def test_a_late_joiner_catches_up_through_anti_entropy() -> None:
    sim = SimNet(2, seed=9, edges=[])
    for author in AUTHORS:
        sim.nodes[0].store.offer(_frame(author, now=0.0, ttl_ms=600_000), wall_ms(0.0))
    sim.nodes[1].store.offer(_frame(AUTHORS[0], 2, now=0.0, ttl_ms=600_000), wall_ms(0.0))
    sim.connect(0, 1)
    sim.run_for(1.5)
    assert sim.nodes[0].store.digest() == sim.nodes[1].store.digest()
    assert len(sim.nodes[1].store) == len(AUTHORS)
    assert sim.nodes[0].store.get(AUTHORS[0].peer_id).seq == 2


def test_a_digest_nobody_asked_for_is_ignored() -> None:
    h = Harness(connected=1)
    h.receive(PEERS[0], ["m", [_frame(AUTHORS[0])]])
    later = T0 + 10  # past the sync that opens every link
    assert h.receive(PEERS[0], ["d", b"", b"", [], True], later) == []
    assert h.receive(PEERS[0], ["d", b"", b"", [], False], later) == []


def test_sync_with_an_equal_store_ends_at_once() -> None:
    h = Harness(connected=1)
    assert h.receive(PEERS[0], ["s", h.store.summary()]) == []
    answer = h.receive(PEERS[0], ["s", b"\x00" * SUMMARY_LEN])
    assert answer == []  # one sync answered per peer per heartbeat
    h.router.heartbeat(T0 + 1)
    digests = _sends(h.receive(PEERS[0], ["s", b"\x00" * SUMMARY_LEN], T0 + 1.1), "d")
    assert digests and all(d.body[4] is True for d in digests)


# -- rate limits and scores ------------------------------------------------------------------


def test_a_flood_is_dropped_and_reported_once_per_heartbeat() -> None:
    h = Harness(connected=1, rpc_burst=20, rpc_rate_per_s=10.0)
    results = [h.receive(PEERS[0], ["g"]) for _ in range(50)]
    assert all(not _events(r, "flood") for r in results[:20])
    floods = [e for r in results[20:] for e in _events(r, "flood")]
    assert floods == [PeerEvent(PEERS[0], "flood", floods[0].detail)]
    h.router.heartbeat(T0 + 0.5)
    assert _events(h.receive(PEERS[0], ["g"], T0 + 0.5), "flood") == []  # 5 tokens back
    for _ in range(4):
        h.receive(PEERS[0], ["g"], T0 + 0.5)
    assert _events(h.receive(PEERS[0], ["g"], T0 + 0.5), "flood")
    # Dropped bodies are not processed: a flooded record never arrives.
    assert h.receive(PEERS[0], ["m", [_frame(AUTHORS[0])]], T0 + 0.5) == []


def test_graylisted_peers_are_ignored_entirely() -> None:
    h = Harness(connected=1)
    h.scores[PEERS[0]] = -100.0
    assert h.receive(PEERS[0], ["m", [_frame(AUTHORS[0])]]) == []
    assert h.receive(PEERS[0], "garbage") == []
    assert len(h.store) == 0


def test_peers_below_the_gossip_threshold_get_no_graft_forward_or_gossip() -> None:
    h = Harness(connected=8)
    low, mid = PEERS[0], PEERS[1]
    h.scores[low] = -20.0  # under gossip_threshold (-10)
    h.scores[mid] = -5.0  # under mesh_threshold (0), over gossip_threshold
    for t in range(1, 4):
        h.router.heartbeat(T0 + t)
        assert low not in h.router.mesh and mid not in h.router.mesh
    frame = _frame(LOCAL, now=T0 + 4)
    publish = h.router.publish(frame, T0 + 4)
    assert low not in {s.peer for s in _sends(publish)}
    assert mid in {s.peer for s in _sends(publish)}
    ihave_to = {s.peer for s in _sends(h.router.heartbeat(T0 + 5), "h")}
    assert low not in ihave_to
    assert h.receive(low, ["h", [b"\x09" * 16]], T0 + 5) == []
    assert h.receive(low, ["w", [message_id_of(frame)]], T0 + 5) == []
    assert _sends(h.receive(low, ["g"], T0 + 5), "p")
    assert _sends(h.receive(mid, ["g"], T0 + 5), "p")


def test_a_mesh_peer_whose_score_drops_is_pruned() -> None:
    h = Harness(connected=6)
    h.router.heartbeat(T0 + 1)
    victim = h.router.mesh[0]
    h.scores[victim] = -1.0
    prunes = _sends(h.router.heartbeat(T0 + 2), "p")
    assert victim not in h.router.mesh and [s.peer for s in prunes] == [victim]


def test_bodies_from_unknown_peers_are_ignored() -> None:
    h = Harness()
    assert h.receive(PEERS[0], ["m", [_frame(AUTHORS[0])]]) == []


# -- malformed bodies --------------------------------------------------------------------------

MALFORMED = [
    None,
    "m",
    [],
    [1, []],
    ["x", []],
    ["m"],
    ["m", []],
    ["m", [b""]],
    ["m", ["text"]],
    ["m", b"frame"],
    ["m", [b"x"] * 65],
    ["h", [b"short"]],
    ["h", []],
    ["h", [b"\x00" * 16] * 501],
    ["w", [b"\x00" * 17]],
    ["g", 1],
    ["p"],
    ["p", -1],
    ["p", True],
    ["p", 3601],
    ["s", b"\x00" * 10],
    ["s", "summary"],
    ["d", b"", b"", []],
    ["d", b"", b"", [], 1],
    ["d", b"\x20", b"\x10", [], True],
    ["d", b"", b"", [[b"\x00" * 32]], True],
    ["d", b"", b"", [[b"\x00" * 31, 1]], True],
    ["d", b"", b"", [[b"\x00" * 32, -1]], True],
    ["d", b"", b"", [[b"\x01" * 32, 1], [b"\x00" * 32, 1]], True],
    ["d", b"\x10", b"\x20", [[b"\x00" * 32, 1]], True],
    ["d", b"\x00" * 33, b"", [], True],
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies_are_reported_not_raised(body: Any) -> None:
    h = Harness(connected=1)
    actions = h.receive(PEERS[0], body)
    assert [(a.peer, a.kind) for a in actions] == [(PEERS[0], "invalid_message")]
    assert actions[0].detail


_wire_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=40)
    | st.sampled_from(["m", "h", "w", "g", "p", "s", "d", b"\x00" * 16, b"\x00" * 32]),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_wire_values, st.tuples(st.sampled_from("mhwgpsd"), _wire_values).map(list)))
def test_any_body_yields_actions_and_never_an_exception(body: Any) -> None:
    h = Harness(connected=1)
    h.router.heartbeat(T0 + 1)
    for action in h.receive(PEERS[0], body, T0 + 1.5):
        assert isinstance(action, Send | PeerEvent | RecordAccepted | RecordRemoved)


_authors = st.binary(min_size=32, max_size=32)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(_authors, st.integers(0, 2**63 - 1), max_size=20),
    st.booleans(),
    st.integers(0, 15),
)
def test_an_answered_digest_of_any_content_never_raises(
    digest: dict[bytes, int], reply: bool, bucket: int
) -> None:
    h = Harness()
    peer = next(p for p in PEERS if p.public_key > LOCAL.peer_id.public_key)
    h.router.peer_connected(peer, T0)  # this side starts the sync, so a reply is expected
    for author in AUTHORS[:5]:
        h.receive(peer, ["m", [_frame(author)]])
    h.receive(peer, ["s", b"\x00" * SUMMARY_LEN])  # ...and answered one: a final is expected
    lo = bytes([bucket << 4]) if bucket else b""
    hi = bytes([(bucket + 1) << 4]) if bucket < 15 else b""
    entries = [[a, s] for a, s in sorted(digest.items()) if a >= lo and (not hi or a < hi)]
    actions = h.receive(peer, ["d", lo, hi, entries, reply], T0 + 1)
    assert all(isinstance(a, Send) and a.body[0] in ("m", "d") for a in actions)
