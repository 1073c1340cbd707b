"""Capability records: sealed as `lightbox/capability/v1` envelopes, opened strictly."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightbox_node.errors import (
    BadSignature,
    Expired,
    FrameTooLarge,
    FromTheFuture,
    MalformedMessage,
    WireError,
    WrongDomain,
)
from lightbox_node.gossip.records import (
    MAX_RECORD_TTL_MS,
    RECORD_DOMAIN,
    build_record_frame,
    message_id_of,
    open_record,
)
from lightbox_node.identity import Identity
from lightbox_node.wire import open_envelope, seal

NOW = 1_700_000_000_000
NETWORK = "lightbox-test"
ALICE = Identity.from_seed(b"a" * 32)
TASK = {
    "name": "txt2img",
    "inputs": [{"name": "prompt", "type": "text"}, {"name": "steps", "type": "integer"}],
}
VALID_BODY = [NETWORK, ["queue", "gpu"], ["ws://127.0.0.1:7450"], [TASK], 2, "0.1.0", []]


def _frame(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "network": NETWORK,
        "roles": ("gpu", "queue"),
        "addresses": ("ws://127.0.0.1:7450", "wss://gpu.example.org/p2p"),
        "tasks": (TASK,),
        "free_slots": 2,
        "version": "0.1.0",
        "seq": 7,
        "now_ms": NOW,
        "ttl_ms": 60_000,
    }
    fields.update(overrides)
    return build_record_frame(ALICE, **fields)


def _sealed_body(body: Any, *, domain: str = RECORD_DOMAIN, ttl_ms: int = 60_000) -> bytes:
    """A correctly signed envelope around an arbitrary body: only body checks can refuse it."""
    return seal(ALICE, domain, 1, NOW, NOW + ttl_ms, body)


# -- round trip ------------------------------------------------------------------------------


def test_built_record_opens_to_the_same_fields() -> None:
    record, verified = open_record(_frame(), NOW + 1, NETWORK)
    assert record.author == ALICE.peer_id
    assert (record.seq, record.issued_at_ms, record.expires_at_ms) == (7, NOW, NOW + 60_000)
    assert record.network == NETWORK
    assert record.roles == ("queue", "gpu")  # canonical order, whatever order was given
    assert record.addresses == ("ws://127.0.0.1:7450", "wss://gpu.example.org/p2p")
    assert record.plain_tasks() == [TASK]
    assert record.tasks[0]["name"] == "txt2img"
    assert record.free_slots == 2
    assert record.version == "0.1.0"
    assert verified.envelope.domain == RECORD_DOMAIN
    assert record.is_live(NOW + 59_999) and not record.is_live(NOW + 60_000)


def test_record_is_an_immutable_hashable_value() -> None:
    record, _ = open_record(_frame(), NOW, NETWORK)
    again, _ = open_record(_frame(), NOW, NETWORK)
    assert record == again and hash(record) == hash(again)
    with pytest.raises(TypeError):
        record.tasks[0]["name"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        record.free_slots = 3  # type: ignore[misc]


def test_message_id_matches_the_verified_envelope_id() -> None:
    frame = _frame()
    _, verified = open_record(frame, NOW, NETWORK)
    assert message_id_of(frame) == verified.message_id
    assert len(message_id_of(frame)) == 16


def test_the_frame_is_an_ordinary_envelope_of_the_capability_domain() -> None:
    verified = open_envelope(_frame(), expect_domain="lightbox/capability/v1", now_ms=NOW)
    addresses = ["ws://127.0.0.1:7450", "wss://gpu.example.org/p2p"]
    assert verified.envelope.body == [NETWORK, ["queue", "gpu"], addresses, [TASK], 2, "0.1.0", []]


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, ""),
        (0, "n" * 65),
        (0, b"lightbox-test"),
        (1, []),
        (1, ["gpu", "queue"]),  # not canonical order
        (1, ["gpu", "gpu"]),
        (1, ["miner"]),
        (1, "gpu"),
        (2, ["http://127.0.0.1:7450"]),
        (2, ["ws://"]),
        (2, ["ws://host name:1"]),
        (2, ["ws://h:1\n"]),
        (2, ["ws://" + "h" * 241]),
        (2, ["ws://h:1"] * 9),
        (2, [b"ws://h:1"]),
        (3, [{"title": "no name"}]),
        (3, [{"name": 3}]),
        (3, [{"name": ""}]),
        (3, [{"name": "x" * 129}]),
        (3, ["txt2img"]),
        (3, [TASK, TASK]),
        (3, [{"name": f"t{i}"} for i in range(65)]),
        (3, {"name": "txt2img"}),
        (4, -1),
        (4, True),
        (4, 1.0),
        (4, 65_537),
        (5, ""),
        (5, "v" * 65),
        (5, "0.1.0\n"),
        (5, 1),
    ],
)
def test_record_body_with_a_bad_field_is_malformed(index: int, value: Any) -> None:
    body = list(VALID_BODY)
    body[index] = value
    with pytest.raises(MalformedMessage):
        open_record(_sealed_body(body), NOW, NETWORK)


@pytest.mark.parametrize(
    "body", [[], VALID_BODY[:5], [*VALID_BODY, "extra"], {"network": NETWORK}, None, "record"]
)
def test_record_body_of_the_wrong_shape_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedMessage):
        open_record(_sealed_body(body), NOW, NETWORK)


def test_the_valid_body_used_by_the_refusal_tests_opens() -> None:
    record, _ = open_record(_sealed_body(VALID_BODY), NOW, NETWORK)
    assert record.roles == ("queue", "gpu")


def test_record_for_another_network_is_refused() -> None:
    with pytest.raises(WrongDomain, match="network"):
        open_record(_frame(network="lightbox-other"), NOW, NETWORK)


def test_envelope_signed_for_another_domain_is_refused() -> None:
    with pytest.raises(WrongDomain):
        open_record(_sealed_body(VALID_BODY, domain="lightbox/job/v1"), NOW, NETWORK)


def test_expired_record_is_refused() -> None:
    with pytest.raises(Expired):
        open_record(_frame(ttl_ms=1000), NOW + 1000, NETWORK)


def test_record_from_too_far_in_the_future_is_refused() -> None:
    with pytest.raises(FromTheFuture):
        open_record(_frame(now_ms=NOW + 31_000), NOW, NETWORK)


def test_record_living_longer_than_an_hour_is_refused() -> None:
    with pytest.raises(MalformedMessage, match="lives over"):
        open_record(_sealed_body(VALID_BODY, ttl_ms=MAX_RECORD_TTL_MS + 1), NOW, NETWORK)
    with pytest.raises(MalformedMessage, match="ttl"):
        _frame(ttl_ms=MAX_RECORD_TTL_MS + 1)


def test_tampered_record_fails_the_signature_check() -> None:
    frame = bytearray(_frame())
    at = frame.index(b"0.1.0")
    frame[at] = ord("9")
    with pytest.raises(BadSignature):
        open_record(bytes(frame), NOW, NETWORK)


def test_oversized_record_frame_is_refused_before_decoding() -> None:
    with pytest.raises(FrameTooLarge):
        open_record(b"\x00" * ((256 << 10) + 1), NOW, NETWORK)


def test_building_an_invalid_record_fails_instead_of_publishing_it() -> None:
    with pytest.raises(MalformedMessage):
        _frame(roles=("gpu", "miner"))
    with pytest.raises(MalformedMessage):
        _frame(addresses=("tcp://1.2.3.4:5",))
    with pytest.raises(MalformedMessage):
        _frame(tasks=({"title": "unnamed"},))
    with pytest.raises(MalformedMessage):
        _frame(free_slots=-1)


# -- hostile input -----------------------------------------------------------------------------

_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
_near_valid = st.tuples(st.integers(0, 5), _plain).map(
    lambda change: [change[1] if i == change[0] else v for i, v in enumerate(VALID_BODY)]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_plain, _near_valid))
def test_any_signed_body_opens_or_raises_only_a_wire_error(body: Any) -> None:
    try:
        frame = _sealed_body(body)
    except WireError:
        return  # not even encodable as a plain value
    with contextlib.suppress(WireError):
        open_record(frame, NOW, NETWORK)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_open_or_raise_only_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        open_record(data, NOW, NETWORK)


@settings(max_examples=200)
@given(_plain)
def test_any_msgpack_value_as_a_frame_raises_only_a_wire_error(value: Any) -> None:
    with pytest.raises(WireError):
        open_record(msgpack.packb(value, use_bin_type=True), NOW, NETWORK)


def test_a_gpu_host_record_names_the_queue_nodes_it_serves() -> None:
    queues = (Identity.from_seed(b"q" * 32).peer_id, Identity.from_seed(b"r" * 32).peer_id)
    record, _ = open_record(_frame(queues=queues), NOW, NETWORK)
    assert record.queues == queues
    assert open_record(_frame(), NOW, NETWORK)[0].queues == ()


@pytest.mark.parametrize("queues", [[b"short"], ["text"], [b"k" * 32] * 17, b"k" * 32], ids=repr)
def test_record_queues_must_be_a_short_list_of_keys(queues: Any) -> None:
    body = list(VALID_BODY)
    body[6] = queues
    with pytest.raises(MalformedMessage, match="queues"):
        open_record(_sealed_body(body), NOW, NETWORK)


# -- announced blobs -------------------------------------------------------------------------


def test_a_record_announces_the_blobs_its_author_offers_newest_first() -> None:
    digests = (b"\x01" * 32, b"\x02" * 32)
    record, _ = open_record(_frame(blobs=digests), NOW, NETWORK)
    assert record.blobs == digests
    assert open_record(_frame(), NOW, NETWORK)[0].blobs == ()


def test_a_record_announcing_nothing_is_the_seven_field_record_older_nodes_read() -> None:
    def body_of(frame: bytes) -> list[Any]:
        return open_envelope(frame, expect_domain=RECORD_DOMAIN, now_ms=NOW).envelope.body

    assert len(body_of(_frame(blobs=()))) == 7
    assert len(body_of(_frame(blobs=[b"\x01" * 32]))) == 8


@pytest.mark.parametrize(
    "blobs",
    [[], [b"short"], ["text"], [b"d" * 32] * 2, [bytes([i]) * 32 for i in range(65)], b"d" * 32],
    ids=repr,
)
def test_record_blobs_must_be_a_short_list_of_distinct_digests(blobs: Any) -> None:
    body = [*VALID_BODY, blobs]
    with pytest.raises(MalformedMessage, match="blobs"):
        open_record(_sealed_body(body), NOW, NETWORK)


def test_a_record_with_fields_beyond_blobs_is_refused() -> None:
    with pytest.raises(MalformedMessage):
        open_record(_sealed_body([*VALID_BODY, [b"d" * 32], "extra"]), NOW, NETWORK)


def test_a_node_cannot_publish_a_record_peers_would_refuse_for_its_blobs() -> None:
    with pytest.raises(MalformedMessage, match="blobs"):
        _frame(blobs=[b"x" * 31])
