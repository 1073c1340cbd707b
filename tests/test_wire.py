"""Signed envelopes: canonical msgpack, hostile-input decoding, time windows and replay."""

from __future__ import annotations

import contextlib
import random
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightbox_node import wire
from lightbox_node.errors import (
    BadSignature,
    Expired,
    FrameTooLarge,
    FromTheFuture,
    MalformedMessage,
    StaleSequence,
    WireError,
    WrongDomain,
)
from lightbox_node.identity import Identity, PeerId
from lightbox_node.wire import (
    DEFAULT_LIMITS,
    SIGNING_CONTEXT,
    Envelope,
    SequenceFilter,
    WireLimits,
    open_envelope,
    pack,
    seal,
    unpack,
)

ALICE = Identity.from_seed(b"alice".ljust(32, b"."))
BOB = Identity.from_seed(b"bob".ljust(32, b"."))
CAROL = Identity.from_seed(b"carol".ljust(32, b"."))

NOW = 1_700_000_000_000
"""A fixed 'current time' in ms; no test reads the real clock."""
MINUTE = 60_000
MAX_U63 = 2**63 - 1

# -- strategies -----------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)

wire_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=6).map(tuple)
        | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=24,
)
"""Plain wire values. st.recursive bounds depth (about log2(max_leaves) levels) and size."""

domains = st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,63}", fullmatch=True)
identities = st.sampled_from([ALICE, BOB, CAROL])
seqs = st.integers(min_value=0, max_value=MAX_U63)
lifetimes = st.integers(min_value=1, max_value=DEFAULT_LIMITS.max_lifetime_ms)


@st.composite
def sealed_frames(draw: st.DrawFn, body: st.SearchStrategy[Any] = wire_values) -> bytes:
    """A valid envelope for domain "caps", open at NOW."""
    return seal(draw(identities), "caps", draw(seqs), NOW, NOW + MINUTE, draw(body))


# -- helpers --------------------------------------------------------------------------------


def _typed(value: Any) -> Any:
    """A form where equal means same wire value: True != 1, 1 != 1.0, 0.0 != -0.0, tuple = list."""
    if isinstance(value, dict):
        return ("map", sorted(((k, _typed(v)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, list | tuple):
        return ("array", [_typed(v) for v in value])
    if isinstance(value, float):
        return ("float", struct.pack(">d", value))
    return (type(value).__name__, value)


def _keys_in_sorted_order(value: Any) -> bool:
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(map(_keys_in_sorted_order, value.values()))
    if isinstance(value, list):
        return all(map(_keys_in_sorted_order, value))
    return True


def _frame(signed: bytes, signature: bytes) -> bytes:
    return msgpack.packb([signed, signature], use_bin_type=True)


def _hand_signed(fields: Any, signer: Identity = ALICE) -> bytes:
    """A frame whose signed part is msgpack of `fields` as given, with a valid signature."""
    signed = msgpack.packb(fields, use_bin_type=True)
    return _frame(signed, signer.sign(SIGNING_CONTEXT + signed))


def _good_fields(**changes: Any) -> list[Any]:
    fields = {
        "domain": "caps",
        "author": ALICE.peer_id.public_key,
        "seq": 1,
        "issued_at_ms": NOW,
        "expires_at_ms": NOW + MINUTE,
        "body": {"a": 1},
    }
    fields.update(changes)
    return list(fields.values())


def _open(frame: bytes, **kwargs: Any) -> wire.VerifiedEnvelope:
    kwargs.setdefault("expect_domain", "caps")
    kwargs.setdefault("now_ms", NOW)
    return open_envelope(frame, **kwargs)


def _nested_lists(levels: int, innermost: Any = 0) -> Any:
    value = innermost
    for _ in range(levels):
        value = [value]
    return value


def _split(frame: bytes) -> tuple[bytes, bytes]:
    signed, signature = msgpack.unpackb(frame)
    return signed, signature


# -- round trip -----------------------------------------------------------------------------


@given(
    identity=identities,
    domain=domains,
    seq=seqs,
    issued_at_ms=st.integers(0, MAX_U63 - DEFAULT_LIMITS.max_lifetime_ms),
    lifetime_ms=lifetimes,
    body=wire_values,
    data=st.data(),
)
def test_sealed_envelope_opens_to_what_was_sealed(
    identity: Identity,
    domain: str,
    seq: int,
    issued_at_ms: int,
    lifetime_ms: int,
    body: Any,
    data: st.DataObject,
) -> None:
    expires_at_ms = issued_at_ms + lifetime_ms
    now_ms = data.draw(
        st.integers(issued_at_ms - DEFAULT_LIMITS.max_clock_skew_ms, expires_at_ms - 1),
        label="now_ms",
    )
    frame = seal(identity, domain, seq, issued_at_ms, expires_at_ms, body)

    verified = open_envelope(frame, expect_domain=domain, now_ms=now_ms)

    envelope = verified.envelope
    assert envelope.domain == domain
    assert envelope.author == identity.peer_id
    assert envelope.seq == seq
    assert envelope.issued_at_ms == issued_at_ms
    assert envelope.expires_at_ms == expires_at_ms
    assert _typed(envelope.body) == _typed(body)
    assert _keys_in_sorted_order(envelope.body)
    assert verified.frame == frame


@given(wire_values)
def test_pack_then_unpack_gives_the_same_value(value: Any) -> None:
    decoded = unpack(pack(value))
    assert _typed(decoded) == _typed(value)
    assert _keys_in_sorted_order(decoded)


@given(st.dictionaries(st.text(max_size=8), wire_values, min_size=2, max_size=8), st.randoms())
def test_dict_key_order_does_not_change_the_encoding(
    mapping: dict[str, Any], rng: random.Random
) -> None:
    items = list(mapping.items())
    rng.shuffle(items)
    assert pack(dict(items)) == pack(mapping)


@given(wire_values)
def test_a_tuple_packs_like_the_list_of_its_items(value: Any) -> None:
    assert pack((value, value)) == pack([value, value])


def test_sealing_is_deterministic() -> None:
    first = seal(ALICE, "caps", 7, NOW, NOW + MINUTE, {"b": 1, "a": [1, 2]})
    second = seal(ALICE, "caps", 7, NOW, NOW + MINUTE, {"a": (1, 2), "b": 1})
    assert first == second


# -- tampering ------------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(frame=sealed_frames(), data=st.data())
def test_flipping_any_byte_of_a_frame_is_a_wire_error(frame: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(frame) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    damaged = bytearray(frame)
    damaged[position] ^= mask
    with pytest.raises(WireError):
        _open(bytes(damaged))


@settings(max_examples=30)
@given(sealed_frames())
def test_truncating_a_frame_at_any_length_is_a_wire_error(frame: bytes) -> None:
    for length in range(len(frame)):
        with pytest.raises(WireError):
            _open(frame[:length])


def test_flipping_each_bit_of_a_frame_is_a_wire_error() -> None:
    frame = seal(ALICE, "caps", 1, NOW, NOW + MINUTE, {"task": "upscale", "scale": 2.0})
    for position in range(len(frame)):
        for bit in range(8):
            damaged = bytearray(frame)
            damaged[position] ^= 1 << bit
            with pytest.raises(WireError):
                _open(bytes(damaged))


def test_envelope_sealed_for_another_domain_is_wrong_domain() -> None:
    frame = seal(ALICE, "jobs", 1, NOW, NOW + MINUTE, {"a": 1})
    assert _open(frame, expect_domain="jobs").envelope.domain == "jobs"
    with pytest.raises(WrongDomain):
        _open(frame, expect_domain="caps")


def test_signature_for_one_domain_does_not_verify_for_another() -> None:
    _, caps_signature = _split(seal(ALICE, "caps", 1, NOW, NOW + MINUTE, {"a": 1}))
    jobs_signed, jobs_signature = _split(seal(ALICE, "jobs", 1, NOW, NOW + MINUTE, {"a": 1}))
    ALICE.peer_id.verify(SIGNING_CONTEXT + jobs_signed, jobs_signature)  # control

    with pytest.raises(BadSignature):
        ALICE.peer_id.verify(SIGNING_CONTEXT + jobs_signed, caps_signature)
    with pytest.raises(BadSignature):
        _open(_frame(jobs_signed, caps_signature), expect_domain="jobs")


def test_signature_made_without_the_envelope_context_does_not_verify() -> None:
    signed, _ = _split(seal(ALICE, "caps", 1, NOW, NOW + MINUTE, {"a": 1}))
    with pytest.raises(BadSignature):
        _open(_frame(signed, ALICE.sign(signed)))


def test_envelope_claiming_another_author_is_a_bad_signature() -> None:
    # Mallory signs an envelope that names Alice as its author.
    with pytest.raises(BadSignature):
        _open(_hand_signed(_good_fields(author=ALICE.peer_id.public_key), signer=BOB))


def test_signature_of_the_outer_frame_fields_swapped_is_rejected() -> None:
    signed, signature = _split(seal(ALICE, "caps", 1, NOW, NOW + MINUTE, None))
    with pytest.raises(WireError):
        _open(_frame(signature, signed))


def test_hand_signed_canonical_envelope_opens() -> None:
    """Control for the structured-garbage tests: the hand-built frame itself is valid."""
    verified = _open(_hand_signed(_good_fields()))
    assert verified.envelope.body == {"a": 1}
    assert verified.envelope.author == ALICE.peer_id


# -- random garbage -------------------------------------------------------------------------


def _only_wire_errors(data: bytes) -> None:
    """Garbage must never open as an envelope, and may fail to decode only as a WireError."""
    with pytest.raises(WireError):
        _open(data)
    with contextlib.suppress(WireError):
        unpack(data)


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_give_only_wire_errors(data: bytes) -> None:
    _only_wire_errors(data)


def test_ten_thousand_seeded_mutations_of_real_frames_give_only_wire_errors() -> None:
    rng = random.Random(20240611)
    frames = [
        seal(ALICE, "caps", 1, NOW, NOW + MINUTE, {"models": ["sdxl", "rembg"], "vram": 24}),
        seal(BOB, "jobs", 2**40, NOW, NOW + MINUTE, [None, True, -1, 1.5, b"\x00" * 40]),
    ]
    for _ in range(10_000):
        damaged = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            action = rng.randrange(3)
            position = rng.randrange(len(damaged))
            if action == 0:
                damaged[position] = rng.randrange(256)
            elif action == 1:
                damaged.insert(position, rng.randrange(256))
            elif len(damaged) > 1:
                del damaged[position]
        if bytes(damaged) not in frames:  # a mutation may undo itself
            _only_wire_errors(bytes(damaged))


# -- structured garbage ---------------------------------------------------------------------

_SIGNED = msgpack.packb(_good_fields(), use_bin_type=True)
_SIGNATURE = ALICE.sign(SIGNING_CONTEXT + _SIGNED)


@pytest.mark.parametrize(
    "outer",
    [
        None,
        1,
        _SIGNED,
        {"signed": _SIGNED, "signature": _SIGNATURE},
        [],
        [_SIGNED],
        [_SIGNED, _SIGNATURE, b""],
        [_SIGNATURE, _SIGNED],
        [_SIGNED.decode("latin-1"), _SIGNATURE],
        [_SIGNED, _SIGNATURE.decode("latin-1")],
        [_SIGNED, _SIGNATURE[:63]],
        [_SIGNED, _SIGNATURE + b"\x00"],
        [_SIGNED, b""],
        [[_SIGNED], _SIGNATURE],
    ],
    ids=repr,
)
def test_outer_frame_of_the_wrong_shape_is_malformed(outer: Any) -> None:
    with pytest.raises(MalformedMessage):
        _open(msgpack.packb(outer, use_bin_type=True))


@pytest.mark.parametrize(
    "fields",
    [
        None,
        "caps",
        {"domain": "caps"},
        _good_fields()[:5],
        [*_good_fields(), None],
        [],
        _good_fields(author=ALICE.peer_id.public_key[:31]),
        _good_fields(author=ALICE.peer_id.public_key + b"\x00"),
        _good_fields(author=str(ALICE.peer_id)),
        _good_fields(author=None),
        _good_fields(seq=-1),
        _good_fields(seq=True),
        _good_fields(seq=1.0),
        _good_fields(seq="1"),
        _good_fields(seq=None),
        _good_fields(seq=2**63),
        _good_fields(seq=2**64 - 1),
        _good_fields(issued_at_ms=-1),
        _good_fields(issued_at_ms=float(NOW)),
        _good_fields(expires_at_ms=False),
        _good_fields(domain="Caps"),
        _good_fields(domain="CAPS"),
        _good_fields(domain="a" * 65),
        _good_fields(domain=""),
        _good_fields(domain=".caps"),
        _good_fields(domain="-caps"),
        _good_fields(domain="caps jobs"),
        _good_fields(domain="caps\x00"),
        _good_fields(domain="caps\u00e9"),
        _good_fields(domain=b"caps"),
        _good_fields(domain=None),
        _good_fields(expires_at_ms=NOW),
        _good_fields(expires_at_ms=NOW - 1),
        _good_fields(expires_at_ms=NOW + DEFAULT_LIMITS.max_lifetime_ms + 1),
    ],
    ids=repr,
)
def test_validly_signed_envelope_of_the_wrong_shape_is_malformed(fields: Any) -> None:
    frame = _hand_signed(fields)
    with pytest.raises(MalformedMessage):
        _open(frame, expect_domain="caps")
    if isinstance(fields, list) and len(fields) == 6 and isinstance(fields[0], str):
        with pytest.raises(MalformedMessage):
            _open(frame, expect_domain=fields[0])


def test_domain_with_a_trailing_newline_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        _open(_hand_signed(_good_fields(domain="caps\n")), expect_domain="caps\n")


@pytest.mark.parametrize(
    "changes",
    [
        {"domain": "a" * 64},
        {"domain": "0"},
        {"domain": "lightbox/caps-v1.2_x"},
        {
            "expires_at_ms": NOW + DEFAULT_LIMITS.max_lifetime_ms - MINUTE,
            "issued_at_ms": NOW - MINUTE,
        },
        {"seq": 0},
        {"seq": MAX_U63},
    ],
    ids=repr,
)
def test_envelope_at_the_edges_of_the_header_rules_opens(changes: dict[str, Any]) -> None:
    fields = _good_fields(**changes)
    verified = _open(_hand_signed(fields), expect_domain=fields[0])
    assert verified.envelope.domain == fields[0]
    assert verified.envelope.seq == fields[2]


@pytest.mark.parametrize(
    ("domain", "seq", "issued_at_ms", "expires_at_ms"),
    [
        ("Caps", 1, NOW, NOW + MINUTE),
        ("", 1, NOW, NOW + MINUTE),
        ("a" * 65, 1, NOW, NOW + MINUTE),
        ("caps", -1, NOW, NOW + MINUTE),
        ("caps", True, NOW, NOW + MINUTE),
        ("caps", 1.0, NOW, NOW + MINUTE),
        ("caps", 1, NOW, NOW),
        ("caps", 1, NOW, NOW + DEFAULT_LIMITS.max_lifetime_ms + 1),
    ],
    ids=repr,
)
def test_seal_refuses_a_bad_header(
    domain: str, seq: Any, issued_at_ms: int, expires_at_ms: int
) -> None:
    with pytest.raises(MalformedMessage):
        seal(ALICE, domain, seq, issued_at_ms, expires_at_ms, None)


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb(msgpack.ExtType(1, b"abc")),
        b"\xd6\xff\x00\x00\x00\x00",  # timestamp 32 written by hand
        msgpack.packb(msgpack.Timestamp(1_700_000_000, 5)),
        msgpack.packb([1, msgpack.ExtType(5, b"x")]),
        msgpack.packb({"t": msgpack.Timestamp(0)}),
        b"\xc7\x00\x01",  # ext 8 with an empty payload
        b"\xd4\x01\x00",  # fixext 1
    ],
    ids=repr,
)
def test_ext_types_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        unpack(data)


def test_ext_type_inside_a_validly_signed_body_is_malformed() -> None:
    frame = _hand_signed(_good_fields(body={"when": msgpack.Timestamp(NOW // 1000)}))
    with pytest.raises(MalformedMessage):
        _open(frame)


@pytest.mark.parametrize(
    ("non_canonical", "canonical"),
    [
        (b"\x82\xa1b\x01\xa1a\x02", b"\x82\xa1a\x02\xa1b\x01"),  # {"b": 1, "a": 2}, unsorted
        (b"\x82\xa1a\x01\xa1a\x02", b"\x81\xa1a\x02"),  # duplicate key
        (b"\xcd\x00\x01", b"\x01"),  # 1 as uint16
        (b"\xcc\x05", b"\x05"),  # 5 as uint8
        (b"\xd0\x05", b"\x05"),  # 5 as int8
        (b"\xd1\xff\xff", b"\xff"),  # -1 as int16
        (b"\xcf" + (300).to_bytes(8, "big"), b"\xcd\x01\x2c"),  # 300 as uint64
        (b"\xca" + struct.pack(">f", 1.5), b"\xcb" + struct.pack(">d", 1.5)),  # float32
        (b"\xd9\x01a", b"\xa1a"),  # "a" as str8
        (b"\xda\x00\x01a", b"\xa1a"),  # "a" as str16
        (b"\xc5\x00\x01z", b"\xc4\x01z"),  # b"z" as bin16
        (b"\xdc\x00\x01\x01", b"\x91\x01"),  # [1] as array16
        (b"\xde\x00\x01\xa1a\x01", b"\x81\xa1a\x01"),  # {"a": 1} as map16
        (b"\x01\x01", b"\x01"),  # trailing bytes
    ],
    ids=lambda b: b.hex(),
)
def test_non_canonical_encoding_is_malformed(non_canonical: bytes, canonical: bytes) -> None:
    decoded = unpack(canonical)
    assert pack(decoded) == canonical
    with pytest.raises(MalformedMessage):
        unpack(non_canonical)


def test_validly_signed_non_canonical_envelope_is_malformed() -> None:
    # The same header and body, but seq 1 written as uint16 inside the signed bytes.
    canonical = msgpack.packb(_good_fields(), use_bin_type=True)
    seq_at = canonical.index(ALICE.peer_id.public_key) + 32
    assert canonical[seq_at] == 0x01
    signed = canonical[:seq_at] + b"\xcd\x00\x01" + canonical[seq_at + 1 :]
    assert msgpack.unpackb(signed) == msgpack.unpackb(canonical)
    with pytest.raises(MalformedMessage):
        _open(_frame(signed, ALICE.sign(SIGNING_CONTEXT + signed)))


@pytest.mark.parametrize("data", ["\x01", None, 1, [1]], ids=repr)
def test_input_that_is_not_bytes_is_malformed(data: Any) -> None:
    with pytest.raises(MalformedMessage):
        unpack(data)


@pytest.mark.parametrize("data", [bytearray(b"\x91\x01"), memoryview(b"\x91\x01")], ids=repr)
def test_bytes_like_input_is_decoded(data: bytes) -> None:
    assert unpack(data) == [1]


def test_invalid_utf8_in_a_string_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        unpack(b"\xa2\xc3\x28")
    with pytest.raises(MalformedMessage):
        unpack(b"\xa3\xed\xa0\x80")  # an encoded surrogate


def test_map_with_a_non_string_key_is_malformed() -> None:
    for data in (b"\x81\x01\x01", b"\x81\xc4\x01k\x01", b"\x81\xc0\x01", b"\x81\x91\x01\x01"):
        with pytest.raises(MalformedMessage):
            unpack(data)


# -- limits ---------------------------------------------------------------------------------


def test_nesting_within_max_depth_is_accepted() -> None:
    limits = WireLimits(max_depth=8)
    value = _nested_lists(8)
    assert unpack(pack(value, limits), limits) == value


@pytest.mark.parametrize("levels", [9, 10, 100])
def test_nesting_deeper_than_max_depth_is_malformed(levels: int) -> None:
    limits = WireLimits(max_depth=8)
    with pytest.raises(MalformedMessage):
        pack(_nested_lists(levels), limits)
    with pytest.raises(MalformedMessage):
        unpack(msgpack.packb(_nested_lists(levels)), limits)
    nested_maps: Any = 0
    for _ in range(levels):
        nested_maps = {"k": nested_maps}
    with pytest.raises(MalformedMessage):
        unpack(msgpack.packb(nested_maps), limits)


@pytest.mark.parametrize("levels", [17, 1_000, 100_000])
def test_hostile_deep_nesting_with_default_limits_is_malformed(levels: int) -> None:
    with pytest.raises(MalformedMessage):
        unpack(b"\x91" * levels + b"\xc0")
    with pytest.raises(MalformedMessage):
        unpack(b"\x81\xa1k" * levels + b"\xc0")


def test_body_nested_deeper_than_max_depth_is_refused_by_seal_and_open() -> None:
    body = _nested_lists(DEFAULT_LIMITS.max_depth + 1)
    with pytest.raises(MalformedMessage):
        seal(ALICE, "caps", 1, NOW, NOW + MINUTE, body)
    with pytest.raises(MalformedMessage):
        _open(_hand_signed(_good_fields(body=body)))


def test_frame_over_max_frame_is_refused_before_decoding() -> None:
    limits = WireLimits(max_frame=64)
    # Bytes that would be malformed if decoded: the size check must come first.
    with pytest.raises(FrameTooLarge):
        unpack(b"\xc1" * 65, limits)
    with pytest.raises(FrameTooLarge):
        open_envelope(b"\xc1" * 65, expect_domain="caps", now_ms=NOW, limits=limits)
    with pytest.raises(MalformedMessage):
        unpack(b"\xc1" * 64, limits)


def test_frame_exactly_at_max_frame_is_decoded() -> None:
    limits = WireLimits(max_frame=64)
    data = msgpack.packb(b"x" * 62)
    assert len(data) == 64
    assert unpack(data, limits) == b"x" * 62
    with pytest.raises(FrameTooLarge):
        unpack(msgpack.packb(b"x" * 63), limits)


def test_envelope_over_max_frame_is_refused_by_seal_and_open() -> None:
    frame = seal(ALICE, "caps", 1, NOW, NOW + MINUTE, {"blob": b"x" * 1000})
    limits = WireLimits(max_frame=len(frame) - 1)
    with pytest.raises(FrameTooLarge):
        seal(ALICE, "caps", 1, NOW, NOW + MINUTE, {"blob": b"x" * 1000}, limits)
    with pytest.raises(FrameTooLarge):
        open_envelope(frame, expect_domain="caps", now_ms=NOW, limits=limits)
    opened = open_envelope(
        frame, expect_domain="caps", now_ms=NOW, limits=WireLimits(max_frame=len(frame))
    )
    assert opened.frame == frame


_SMALL = WireLimits(max_str=8, max_bin=8, max_array=8, max_map=8)


@pytest.mark.parametrize(
    ("at_limit", "over_limit"),
    [
        ("a" * 8, "a" * 9),
        (b"b" * 8, b"b" * 9),
        (list(range(8)), list(range(9))),
        ({str(i): i for i in range(8)}, {str(i): i for i in range(9)}),
        ({"k" * 8: 1}, {"k" * 9: 1}),
    ],
    ids=["str", "bin", "array", "map", "map key"],
)
def test_field_over_its_limit_is_a_wire_error(at_limit: Any, over_limit: Any) -> None:
    assert unpack(pack(at_limit, _SMALL), _SMALL) == at_limit
    with pytest.raises(WireError):
        pack(over_limit, _SMALL)
    with pytest.raises(WireError):
        unpack(pack(over_limit), _SMALL)


@pytest.mark.parametrize("text", ["\u00e9" * 30_000, "\U0001f4f7" * 16_000], ids=["2B", "4B"])
def test_multibyte_text_within_the_byte_limit_seals_and_opens(text: str) -> None:
    assert len(text.encode()) <= DEFAULT_LIMITS.max_str
    for body in ({"description": text}, {text: 1}):
        frame = seal(ALICE, "caps", 1, NOW, NOW + MINUTE, body)
        assert _open(frame).envelope.body == body


@pytest.mark.parametrize("text", ["\u00e9" * 40_000, "\U0001f4f7" * 20_000], ids=["2B", "4B"])
def test_text_over_the_byte_limit_is_refused_by_seal_not_only_by_open(text: str) -> None:
    # Limits count UTF-8 bytes on both sides: seal never makes what every peer would drop.
    assert len(text) <= DEFAULT_LIMITS.max_str < len(text.encode())
    for body in ({"description": text}, {text: 1}):
        with pytest.raises(FrameTooLarge):
            seal(ALICE, "caps", 1, NOW, NOW + MINUTE, body)


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        frozenset(),
        object(),
        {1: "one"},
        {b"k": "bytes key"},
        {None: 1},
        {("a",): 1},
        bytearray(b"x"),
        memoryview(b"x"),
        1j,
        2**64,
        -(2**63) - 1,
        [1, {2, 3}],
        {"ok": {"nested": {4: "int key"}}},
        msgpack.ExtType(1, b"x"),
        msgpack.Timestamp(0),
        range(3),
        iter([1]),
    ],
    ids=lambda value: type(value).__name__,
)
def test_pack_refuses_unsupported_types(value: Any) -> None:
    with pytest.raises(MalformedMessage):
        pack(value)


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 0, True, None, 0.1, "", b"", [], {}])
def test_pack_accepts_the_edges_of_the_plain_types(value: Any) -> None:
    assert _typed(unpack(pack(value))) == _typed(value)


# -- time window ----------------------------------------------------------------------------

issued_times = st.integers(10**9, 10**13)
skews = st.integers(0, 10 * MINUTE)


@given(issued_at_ms=issued_times, lifetime_ms=lifetimes, late_by_ms=st.integers(0, 10**9))
def test_envelope_at_or_after_its_expiry_is_expired(
    issued_at_ms: int, lifetime_ms: int, late_by_ms: int
) -> None:
    expires_at_ms = issued_at_ms + lifetime_ms
    frame = seal(ALICE, "caps", 1, issued_at_ms, expires_at_ms, None)
    with pytest.raises(Expired):
        _open(frame, now_ms=expires_at_ms + late_by_ms)


@given(issued_at_ms=issued_times, lifetime_ms=lifetimes)
def test_envelope_one_ms_before_its_expiry_opens(issued_at_ms: int, lifetime_ms: int) -> None:
    expires_at_ms = issued_at_ms + lifetime_ms
    frame = seal(ALICE, "caps", 1, issued_at_ms, expires_at_ms, None)
    assert _open(frame, now_ms=expires_at_ms - 1).envelope.expires_at_ms == expires_at_ms


@given(issued_at_ms=issued_times, skew_ms=skews, ahead_by_ms=st.integers(1, 10**9))
def test_envelope_issued_beyond_the_clock_skew_is_from_the_future(
    issued_at_ms: int, skew_ms: int, ahead_by_ms: int
) -> None:
    limits = WireLimits(max_clock_skew_ms=skew_ms)
    frame = seal(ALICE, "caps", 1, issued_at_ms, issued_at_ms + MINUTE, None)
    now_ms = issued_at_ms - skew_ms - ahead_by_ms
    with pytest.raises(FromTheFuture):
        open_envelope(frame, expect_domain="caps", now_ms=now_ms, limits=limits)


@given(issued_at_ms=issued_times, skew_ms=skews)
def test_envelope_issued_exactly_at_the_clock_skew_opens(issued_at_ms: int, skew_ms: int) -> None:
    limits = WireLimits(max_clock_skew_ms=skew_ms)
    frame = seal(ALICE, "caps", 1, issued_at_ms, issued_at_ms + MINUTE, None)
    now_ms = issued_at_ms - skew_ms
    verified = open_envelope(frame, expect_domain="caps", now_ms=now_ms, limits=limits)
    assert verified.envelope.issued_at_ms == issued_at_ms


def test_default_clock_skew_boundary() -> None:
    frame = seal(ALICE, "caps", 1, NOW, NOW + MINUTE, None)
    skew = DEFAULT_LIMITS.max_clock_skew_ms
    assert _open(frame, now_ms=NOW - skew).envelope.seq == 1
    with pytest.raises(FromTheFuture):
        _open(frame, now_ms=NOW - skew - 1)


def test_forged_envelope_is_a_bad_signature_whatever_the_clock() -> None:
    signed, _ = _split(seal(ALICE, "caps", 1, NOW, NOW + MINUTE, None))
    forged = _frame(signed, bytes(64))
    for now_ms in (NOW, NOW + 10 * MINUTE, NOW - 10 * MINUTE):
        with pytest.raises(BadSignature):
            _open(forged, now_ms=now_ms)


# -- sequence filter ------------------------------------------------------------------------


def _envelope(seq: int, author: Identity = ALICE, domain: str = "caps") -> Envelope:
    return Envelope(domain, author.peer_id, seq, NOW, NOW + MINUTE, None)


def test_replayed_envelope_is_dropped() -> None:
    frame = seal(ALICE, "caps", 5, NOW, NOW + MINUTE, {"a": 1})
    seen = SequenceFilter()
    seen.accept(_open(frame).envelope)
    with pytest.raises(StaleSequence):
        seen.accept(_open(frame).envelope)


def test_older_sequence_is_stale_and_newer_is_accepted() -> None:
    seen = SequenceFilter()
    seen.accept(_envelope(10))
    with pytest.raises(StaleSequence):
        seen.accept(_envelope(9))
    with pytest.raises(StaleSequence):
        seen.accept(_envelope(10))
    assert seen.highest("caps", ALICE.peer_id) == 10
    seen.accept(_envelope(11))
    assert seen.highest("caps", ALICE.peer_id) == 11


def test_sequence_may_skip_ahead() -> None:
    seen = SequenceFilter()
    seen.accept(_envelope(0))
    seen.accept(_envelope(MAX_U63))
    with pytest.raises(StaleSequence):
        seen.accept(_envelope(MAX_U63 - 1))


@given(st.lists(st.integers(0, 50), max_size=60))
def test_sequence_filter_accepts_exactly_the_strictly_increasing_records(seqs: list[int]) -> None:
    seen = SequenceFilter()
    highest: int | None = None
    for seq in seqs:
        if highest is None or seq > highest:
            seen.accept(_envelope(seq))
            highest = seq
        else:
            with pytest.raises(StaleSequence):
                seen.accept(_envelope(seq))
        assert seen.highest("caps", ALICE.peer_id) == highest


def test_sequences_are_independent_per_domain() -> None:
    seen = SequenceFilter()
    seen.accept(_envelope(10, domain="caps"))
    seen.accept(_envelope(1, domain="jobs"))
    assert seen.highest("caps", ALICE.peer_id) == 10
    assert seen.highest("jobs", ALICE.peer_id) == 1
    with pytest.raises(StaleSequence):
        seen.accept(_envelope(1, domain="jobs"))


def test_sequences_are_independent_per_author() -> None:
    seen = SequenceFilter()
    seen.accept(_envelope(10, author=ALICE))
    seen.accept(_envelope(1, author=BOB))
    assert seen.highest("caps", BOB.peer_id) == 1
    assert seen.highest("caps", CAROL.peer_id) is None
    with pytest.raises(StaleSequence):
        seen.accept(_envelope(10, author=ALICE))


def test_capacity_evicts_the_least_recently_updated_author() -> None:
    seen = SequenceFilter(capacity=2)
    seen.accept(_envelope(1, author=ALICE))
    seen.accept(_envelope(1, author=BOB))
    seen.accept(_envelope(2, author=ALICE))  # Alice updated after Bob
    seen.accept(_envelope(1, author=CAROL))  # over capacity: Bob goes
    assert seen.highest("caps", BOB.peer_id) is None
    assert seen.highest("caps", ALICE.peer_id) == 2
    assert seen.highest("caps", CAROL.peer_id) == 1
    with pytest.raises(StaleSequence):
        seen.accept(_envelope(2, author=ALICE))


def test_a_rejected_replay_does_not_count_as_an_update() -> None:
    seen = SequenceFilter(capacity=2)
    seen.accept(_envelope(5, author=ALICE))
    seen.accept(_envelope(5, author=BOB))
    with pytest.raises(StaleSequence):
        seen.accept(_envelope(5, author=ALICE))  # a replay must not keep Alice fresh
    seen.accept(_envelope(1, author=CAROL))
    assert seen.highest("caps", ALICE.peer_id) is None
    assert seen.highest("caps", BOB.peer_id) == 5


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5)), max_size=80))
def test_sequence_filter_never_holds_more_than_its_capacity(
    records: list[tuple[int, int]],
) -> None:
    capacity = 3
    seen = SequenceFilter(capacity=capacity)
    for author_index, seq in records:
        author = PeerId(bytes([author_index]) * 32)
        with contextlib.suppress(StaleSequence):
            seen.accept(Envelope("caps", author, seq, NOW, NOW + MINUTE, None))
        remembered = [
            i for i in range(21) if seen.highest("caps", PeerId(bytes([i]) * 32)) is not None
        ]
        assert len(remembered) <= capacity


# -- message ids ----------------------------------------------------------------------------


@given(body=wire_values, seq=seqs)
def test_message_id_is_equal_for_identical_frames(body: Any, seq: int) -> None:
    first = seal(ALICE, "caps", seq, NOW, NOW + MINUTE, body)
    second = seal(ALICE, "caps", seq, NOW, NOW + MINUTE, body)
    assert _open(first).message_id == _open(second, now_ms=NOW + 1).message_id


@given(
    fields=st.tuples(identities, seqs, st.integers(0, MINUTE - 1), wire_values),
    other=st.tuples(identities, seqs, st.integers(0, MINUTE - 1), wire_values),
)
def test_message_id_differs_for_different_frames(
    fields: tuple[Identity, int, int, Any], other: tuple[Identity, int, int, Any]
) -> None:
    def frame_of(identity: Identity, seq: int, issued_offset: int, body: Any) -> bytes:
        return seal(identity, "caps", seq, NOW - issued_offset, NOW + MINUTE, body)

    first, second = frame_of(*fields), frame_of(*other)
    if first != second:
        assert _open(first).message_id != _open(second).message_id


def test_message_id_changes_with_every_header_field() -> None:
    base = (ALICE, "caps", 1, NOW, NOW + MINUTE, {"a": 1})
    variants = [
        (BOB, "caps", 1, NOW, NOW + MINUTE, {"a": 1}),
        (ALICE, "jobs", 1, NOW, NOW + MINUTE, {"a": 1}),
        (ALICE, "caps", 2, NOW, NOW + MINUTE, {"a": 1}),
        (ALICE, "caps", 1, NOW - 1, NOW + MINUTE, {"a": 1}),
        (ALICE, "caps", 1, NOW, NOW + MINUTE + 1, {"a": 1}),
        (ALICE, "caps", 1, NOW, NOW + MINUTE, {"a": 2}),
    ]
    ids = {_open(seal(*base)).message_id}
    for variant in variants:
        ids.add(open_envelope(seal(*variant), expect_domain=variant[1], now_ms=NOW).message_id)
    assert len(ids) == 1 + len(variants)
