"""The link handshake: mutual authentication, session keys, and every attack refused."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import nacl.bindings
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from net_support import NETWORK, identity, seeded_random

from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.channel import SecureChannel
from lightbox_node.net.errors import HandshakeFailed, HandshakeFailure
from lightbox_node.net.handshake import (
    INITIATOR_DOMAIN,
    MAX_HANDSHAKE_MESSAGE,
    PROTOCOL_VERSION,
    RESPONDER_DOMAIN,
    HandshakeResult,
    InitiatorHandshake,
    ResponderHandshake,
    Role,
    _hkdf_sha256,
)
from lightbox_node.wire import pack, unpack


def _pair(
    initiator_identity: Identity,
    responder_identity: Identity,
    expected: PeerId | None = None,
    seed: str = "session",
    network: str = NETWORK,
) -> tuple[InitiatorHandshake, ResponderHandshake]:
    initiator = InitiatorHandshake(
        initiator_identity, network, expected, random_bytes=seeded_random(seed + "/i")
    )
    responder = ResponderHandshake(
        responder_identity, NETWORK, random_bytes=seeded_random(seed + "/r")
    )
    return initiator, responder


def _complete(
    initiator: InitiatorHandshake, responder: ResponderHandshake
) -> tuple[HandshakeResult, HandshakeResult]:
    finish, initiator_result = initiator.receive_reply(responder.receive_hello(initiator.hello()))
    return initiator_result, responder.receive_finish(finish)


def _refused(reason: HandshakeFailure) -> Any:
    return pytest.raises(HandshakeFailed, match=rf"\({reason}\)")


def _resign(message: bytes, signer: Identity, domain: bytes, transcript: bytes) -> bytes:
    """Replace a message's signature with `signer`'s over the given transcript prefix."""
    fields = unpack(message)
    unsigned = pack(fields[:-1])
    digest = hashlib.sha256(transcript + unsigned).digest()
    return pack([*fields[:-1], signer.sign(domain + b"\x00" + digest)])


def _transcript_after(*messages: bytes) -> bytes:
    digest = hashlib.sha256(b"lightbox/handshake/v1").digest()
    for message in messages:
        digest = hashlib.sha256(digest + message).digest()
    return digest


# -- the happy path ------------------------------------------------------------------------


def test_handshake_gives_both_sides_matching_directional_keys(
    alice: Identity, bob: Identity
) -> None:
    a, b = _complete(*_pair(alice, bob, bob.peer_id))
    assert a.send_key == b.receive_key
    assert a.receive_key == b.send_key
    assert a.send_key != a.receive_key
    assert len(a.send_key) == len(a.receive_key) == 32
    assert a.session_id == b.session_id


def test_each_side_learns_the_others_proven_peer_id(alice: Identity, bob: Identity) -> None:
    a, b = _complete(*_pair(alice, bob, bob.peer_id))
    assert (a.remote, a.role) == (bob.peer_id, Role.INITIATOR)
    assert (b.remote, b.role) == (alice.peer_id, Role.RESPONDER)


def test_dialling_without_a_known_peer_id_learns_it_from_the_handshake(
    alice: Identity, bob: Identity
) -> None:
    a, _ = _complete(*_pair(alice, bob, expected=None))
    assert a.remote == bob.peer_id


def test_the_same_randomness_gives_the_same_session_and_fresh_randomness_a_new_one(
    alice: Identity, bob: Identity
) -> None:
    first, _ = _complete(*_pair(alice, bob, seed="one"))
    again, _ = _complete(*_pair(alice, bob, seed="one"))
    other, _ = _complete(*_pair(alice, bob, seed="two"))
    assert (first.send_key, first.session_id) == (again.send_key, again.session_id)
    assert first.send_key != other.send_key
    assert first.session_id != other.session_id


def test_wire_layout_and_signatures_follow_the_protocol_document(
    alice: Identity, bob: Identity
) -> None:
    """Restates docs/protocol.md independently: layouts, transcript hash, domains, HKDF."""
    initiator, responder = _pair(alice, bob, bob.peer_id)
    hello = initiator.hello()
    reply = responder.receive_hello(hello)
    finish, result = initiator.receive_reply(reply)

    tag, version, network, key_i, ephemeral_i, nonce_i = unpack(hello)
    assert (tag, version, network, key_i) == ("hello", 1, NETWORK, alice.peer_id.public_key)
    assert len(ephemeral_i) == len(nonce_i) == 32
    tag, key_r, ephemeral_r, nonce_r, signature_r = unpack(reply)
    assert (tag, key_r) == ("reply", bob.peer_id.public_key)
    tag, signature_i = unpack(finish)
    assert tag == "finish"

    signed_r = hashlib.sha256(
        _transcript_after(hello) + pack(["reply", key_r, ephemeral_r, nonce_r])
    ).digest()
    nacl.signing.VerifyKey(key_r).verify(
        b"lightbox/handshake/v1/responder\x00" + signed_r, signature_r
    )
    signed_i = hashlib.sha256(_transcript_after(hello, reply) + pack(["finish"])).digest()
    nacl.signing.VerifyKey(key_i).verify(
        b"lightbox/handshake/v1/initiator\x00" + signed_i, signature_i
    )

    final = _transcript_after(hello, reply, finish)
    assert result.session_id == final
    # The responder's view of the shared secret, from its ephemeral secret (its first draw).
    ephemeral_secret_r = seeded_random("session/r")(32)
    shared = nacl.bindings.crypto_scalarmult(ephemeral_secret_r, ephemeral_i)
    prk = hmac.new(final, shared, hashlib.sha256).digest()
    t1 = hmac.new(prk, b"lightbox/link/v1/keys\x01", hashlib.sha256).digest()
    t2 = hmac.new(prk, t1 + b"lightbox/link/v1/keys\x02", hashlib.sha256).digest()
    assert (result.send_key, result.receive_key) == (t1, t2)


def test_hkdf_matches_rfc_5869_test_case_1() -> None:
    okm = _hkdf_sha256(
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        ikm=bytes.fromhex("0b" * 22),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_the_protocol_document_test_vector_is_reproduced() -> None:
    """docs/protocol.md section 4.8, byte for byte."""
    vector = {
        "hello": "96a568656c6c6f01ad6c69676874626f782d6d61696ec4208a88e3dd7409f195fd52db2d3cba5d72"
        "ca6709bf1d94121bf3748801b40f6f5cc4207b4e909bbe7ffe44c465a220037d608ee35897d31ef9"
        "72f07f74892cb0f73f13c4203333333333333333333333333333333333333333333333333333333333"
        "333333",
        "reply": "95a57265706c79c4208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3"
        "94c4200faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20c42044444444"
        "44444444444444444444444444444444444444444444444444444444c440c62c891d218d9152f1bd72"
        "d16af87a8670c02e461a63cdf392665bf4ee69a09c7fea65b28231ac692a33740fa410c2628704398c"
        "aff56b368cb8a764c3482c0e",
        "finish": "92a666696e697368c440698b798ee27f7dfbd1fd4a2a94d9123228d4cad44f8dcf1de9e36159"
        "60ab8f6bc03c18ea2e311c678ba838f3f72c41f7d1eff938e4a94a713921fc4f4bc94508",
        "h3": "eb3e76a0727138c147cd5894abc3a6d2750a9f345f9bfc2867eeac861c8f977b",
        "k_ir": "7f281eb8218b542fa6bf1a8199d1ccc04b670b47d92d6fb36a90a864e740caf1",
        "k_ri": "e47680c0eb4e638e0793d175051b0b562906ae28b305ea5c3e2891102b6593fe",
        "frame0": "1e6a6c80c421e8a474c8b288176ff45cced5864962d4107019",
    }
    draws_i = iter([b"\x11" * 32, b"\x33" * 32])
    draws_r = iter([b"\x22" * 32, b"\x44" * 32])
    initiator_id, responder_id = Identity.from_seed(b"\x01" * 32), Identity.from_seed(b"\x02" * 32)
    initiator = InitiatorHandshake(
        initiator_id, "lightbox-main", responder_id.peer_id, random_bytes=lambda n: next(draws_i)
    )
    responder = ResponderHandshake(
        responder_id, "lightbox-main", random_bytes=lambda n: next(draws_r)
    )
    hello = initiator.hello()
    reply = responder.receive_hello(hello)
    finish, result = initiator.receive_reply(reply)
    assert responder.receive_finish(finish).session_id == result.session_id
    assert (hello.hex(), reply.hex(), finish.hex()) == (
        vector["hello"],
        vector["reply"],
        vector["finish"],
    )
    assert result.session_id.hex() == vector["h3"]
    assert (result.send_key.hex(), result.receive_key.hex()) == (vector["k_ir"], vector["k_ri"])
    channel = SecureChannel(result.send_key, result.receive_key)
    assert channel.seal(pack(["gossip", None])).hex() == vector["frame0"]


# -- attacks -------------------------------------------------------------------------------


def test_a_responder_signature_that_does_not_verify_is_refused(
    alice: Identity, bob: Identity
) -> None:
    initiator, responder = _pair(alice, bob, bob.peer_id)
    fields = unpack(responder.receive_hello(initiator.hello()))
    fields[-1] = bytes([fields[-1][0] ^ 1]) + fields[-1][1:]
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        initiator.receive_reply(pack(fields))


def test_an_initiator_signature_that_does_not_verify_is_refused(
    alice: Identity, bob: Identity
) -> None:
    initiator, responder = _pair(alice, bob, bob.peer_id)
    finish, _ = initiator.receive_reply(responder.receive_hello(initiator.hello()))
    tag, signature = unpack(finish)
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        responder.receive_finish(pack([tag, signature[:-1] + bytes([signature[-1] ^ 1])]))


def test_a_responder_proving_another_identity_than_the_dialled_one_is_refused(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    initiator, responder = _pair(alice, mallory, expected=bob.peer_id)
    with _refused(HandshakeFailure.UNEXPECTED_PEER) as caught:
        initiator.receive_reply(responder.receive_hello(initiator.hello()))
    assert str(bob.peer_id) in str(caught.value)
    assert str(mallory.peer_id) in str(caught.value)


def test_a_man_in_the_middle_re_signing_with_its_own_key_is_refused(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """Mallory relays Alice's HELLO to Bob, then swaps Bob's key for hers and re-signs."""
    initiator, responder = _pair(alice, bob, expected=bob.peer_id)
    hello = initiator.hello()
    fields = unpack(responder.receive_hello(hello))
    fields[1] = mallory.peer_id.public_key
    forged = _resign(pack(fields), mallory, RESPONDER_DOMAIN, _transcript_after(hello))
    with _refused(HandshakeFailure.UNEXPECTED_PEER):
        initiator.receive_reply(forged)


def test_a_man_in_the_middle_without_a_pinned_id_is_only_ever_seen_as_itself(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """Unpinned, Alice may end up linked to Mallory, but then she knows it is Mallory."""
    initiator, responder = _pair(alice, bob, expected=None)
    hello = initiator.hello()
    fields = unpack(responder.receive_hello(hello))
    fields[1] = mallory.peer_id.public_key
    forged = _resign(pack(fields), mallory, RESPONDER_DOMAIN, _transcript_after(hello))
    _, result = initiator.receive_reply(forged)
    assert result.remote == mallory.peer_id


def test_a_substituted_identity_key_under_the_genuine_signature_is_refused(
    alice: Identity, bob: Identity, mallory: Identity
) -> None:
    initiator, responder = _pair(alice, bob, expected=None)
    fields = unpack(responder.receive_hello(initiator.hello()))
    fields[1] = mallory.peer_id.public_key
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        initiator.receive_reply(pack(fields))


def test_a_substituted_ephemeral_key_breaks_the_responders_signature(
    alice: Identity, bob: Identity
) -> None:
    initiator, responder = _pair(alice, bob, bob.peer_id)
    fields = unpack(responder.receive_hello(initiator.hello()))
    fields[2] = nacl.bindings.crypto_scalarmult_base(b"\x42" * 32)
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        initiator.receive_reply(pack(fields))


def test_an_ephemeral_key_swapped_in_the_hello_is_caught_by_the_initiator(
    alice: Identity, bob: Identity
) -> None:
    """Bob signs the HELLO he saw; Alice checks it against the HELLO she sent."""
    initiator, responder = _pair(alice, bob, bob.peer_id)
    fields = unpack(initiator.hello())
    fields[4] = nacl.bindings.crypto_scalarmult_base(b"\x42" * 32)
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        initiator.receive_reply(responder.receive_hello(pack(fields)))


def test_a_reply_replayed_from_another_session_is_refused(alice: Identity, bob: Identity) -> None:
    old_initiator, old_responder = _pair(alice, bob, bob.peer_id, seed="old")
    recorded_reply = old_responder.receive_hello(old_initiator.hello())
    initiator, _ = _pair(alice, bob, bob.peer_id, seed="new")
    initiator.hello()
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        initiator.receive_reply(recorded_reply)


def test_a_hello_and_finish_replayed_from_another_session_are_refused(
    alice: Identity, bob: Identity
) -> None:
    """An eavesdropper replays Alice's old messages; Bob's fresh nonce makes FINISH stale."""
    old_initiator, old_responder = _pair(alice, bob, bob.peer_id, seed="old")
    recorded_hello = old_initiator.hello()
    recorded_finish, _ = old_initiator.receive_reply(old_responder.receive_hello(recorded_hello))
    responder = ResponderHandshake(bob, NETWORK, random_bytes=seeded_random("new"))
    responder.receive_hello(recorded_hello)
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        responder.receive_finish(recorded_finish)


def test_a_responder_signature_cannot_stand_in_for_the_initiators(
    alice: Identity, bob: Identity
) -> None:
    """Role binding: Bob's own REPLY signature, sent back as a FINISH, is not Alice's."""
    initiator, responder = _pair(alice, bob, bob.peer_id)
    reply = responder.receive_hello(initiator.hello())
    with _refused(HandshakeFailure.BAD_SIGNATURE):
        responder.receive_finish(pack(["finish", unpack(reply)[-1]]))


def test_a_peer_on_another_network_is_refused(alice: Identity, bob: Identity) -> None:
    initiator, responder = _pair(alice, bob, bob.peer_id, network="lightbox-elsewhere")
    with _refused(HandshakeFailure.WRONG_NETWORK) as caught:
        responder.receive_hello(initiator.hello())
    assert "lightbox-elsewhere" in str(caught.value)
    assert NETWORK in str(caught.value)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_a_hello_of_another_protocol_version_is_refused(
    alice: Identity, bob: Identity, version: object
) -> None:
    fields = unpack(InitiatorHandshake(alice, NETWORK).hello())
    fields[1] = version
    with _refused(HandshakeFailure.WRONG_VERSION):
        ResponderHandshake(bob, NETWORK).receive_hello(pack(fields))


def test_a_later_version_with_other_fields_is_refused_as_a_version_mismatch(bob: Identity) -> None:
    hello_v2 = pack(["hello", PROTOCOL_VERSION + 1, {"anything": "new"}])
    with _refused(HandshakeFailure.WRONG_VERSION):
        ResponderHandshake(bob, NETWORK).receive_hello(hello_v2)


def test_a_responder_refuses_a_handshake_with_itself(alice: Identity) -> None:
    twin = identity("alice")
    with _refused(HandshakeFailure.SELF_CONNECTION):
        ResponderHandshake(alice, NETWORK).receive_hello(InitiatorHandshake(twin, NETWORK).hello())


def test_an_initiator_refuses_a_reply_from_itself(alice: Identity, bob: Identity) -> None:
    """A node that dialled its own address (unpinned) learns so from the REPLY."""
    initiator = InitiatorHandshake(alice, NETWORK)
    hello = initiator.hello()
    fields = unpack(ResponderHandshake(bob, NETWORK).receive_hello(hello))
    fields[1] = alice.peer_id.public_key
    with _refused(HandshakeFailure.SELF_CONNECTION):
        initiator.receive_reply(
            _resign(pack(fields), alice, RESPONDER_DOMAIN, _transcript_after(hello))
        )


@pytest.mark.parametrize(
    "low_order_point",
    [
        bytes(32),
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ],
)
def test_a_low_order_ephemeral_key_is_refused(
    alice: Identity, bob: Identity, low_order_point: bytes
) -> None:
    fields = unpack(InitiatorHandshake(alice, NETWORK).hello())
    fields[4] = low_order_point
    with _refused(HandshakeFailure.WEAK_KEY):
        ResponderHandshake(bob, NETWORK).receive_hello(pack(fields))


def test_every_truncation_of_every_message_is_refused(alice: Identity, bob: Identity) -> None:
    initiator, responder = _pair(alice, bob, bob.peer_id)
    hello = initiator.hello()
    reply = responder.receive_hello(hello)
    finish, _ = initiator.receive_reply(reply)
    for length in range(len(hello)):
        with _refused(HandshakeFailure.MALFORMED):
            ResponderHandshake(bob, NETWORK).receive_hello(hello[:length])
    for length in range(len(reply)):
        fresh_initiator, fresh_responder = _pair(alice, bob, bob.peer_id)
        fresh_responder.receive_hello(fresh_initiator.hello())
        with _refused(HandshakeFailure.MALFORMED):
            fresh_initiator.receive_reply(reply[:length])
    for length in range(len(finish)):
        fresh_initiator, fresh_responder = _pair(alice, bob, bob.peer_id)
        fresh_responder.receive_hello(fresh_initiator.hello())
        with _refused(HandshakeFailure.MALFORMED):
            fresh_responder.receive_finish(finish[:length])


def test_an_oversized_message_is_refused_before_decoding(alice: Identity, bob: Identity) -> None:
    padded = pack(["hello", 1, NETWORK, b"k" * 32, b"e" * 32, b"n" * 32, "x" * 600])
    assert len(padded) > MAX_HANDSHAKE_MESSAGE
    with _refused(HandshakeFailure.TOO_LARGE):
        ResponderHandshake(bob, NETWORK).receive_hello(padded)
    with _refused(HandshakeFailure.TOO_LARGE):
        ResponderHandshake(bob, NETWORK).receive_hello(b"\x00" * (10 << 20))


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\xc1",
        pack({"hello": 1}),
        pack(["hello", 1, NETWORK, b"k" * 31, b"e" * 32, b"n" * 32]),
        pack(["hello", 1, NETWORK, b"k" * 32, b"e" * 32]),
        pack(["hello", 1, NETWORK, "k" * 32, b"e" * 32, b"n" * 32]),
        pack(["hello", True, NETWORK, b"k" * 32, b"e" * 32, b"n" * 32]),
        pack(["finish", b"s" * 64]),
        "hello",
    ],
)
def test_a_malformed_hello_is_refused(bob: Identity, message: bytes) -> None:
    with pytest.raises(HandshakeFailed) as caught:
        ResponderHandshake(bob, NETWORK).receive_hello(message)
    assert caught.value.reason in (HandshakeFailure.MALFORMED, HandshakeFailure.WRONG_VERSION)


def test_a_non_canonical_encoding_is_refused(alice: Identity, bob: Identity) -> None:
    hello = InitiatorHandshake(alice, NETWORK).hello()
    # 0x01 as a one-byte uint8 (0xcc 0x01) instead of a positive fixint: same value, other bytes.
    stretched = hello.replace(b"\xa5hello\x01", b"\xa5hello\xcc\x01", 1)
    assert unpack(hello)[:2] == ["hello", 1] and stretched != hello
    with _refused(HandshakeFailure.MALFORMED):
        ResponderHandshake(bob, NETWORK).receive_hello(stretched)


def test_a_failed_handshake_refuses_every_later_call(alice: Identity, bob: Identity) -> None:
    initiator, responder = _pair(alice, bob, bob.peer_id)
    hello = initiator.hello()
    with _refused(HandshakeFailure.MALFORMED):
        responder.receive_hello(b"garbage")
    with _refused(HandshakeFailure.OUT_OF_ORDER):
        responder.receive_hello(hello)
    with _refused(HandshakeFailure.MALFORMED):
        initiator.receive_reply(b"garbage")
    with _refused(HandshakeFailure.OUT_OF_ORDER):
        initiator.receive_reply(ResponderHandshake(bob, NETWORK).receive_hello(hello))


def test_steps_out_of_order_are_refused(alice: Identity, bob: Identity) -> None:
    with _refused(HandshakeFailure.OUT_OF_ORDER):
        InitiatorHandshake(alice, NETWORK).receive_reply(b"")
    with _refused(HandshakeFailure.OUT_OF_ORDER):
        ResponderHandshake(bob, NETWORK).receive_finish(b"")
    initiator = InitiatorHandshake(alice, NETWORK)
    initiator.hello()
    with _refused(HandshakeFailure.OUT_OF_ORDER):
        initiator.hello()


def test_a_network_name_must_be_short_text(alice: Identity) -> None:
    for bad in ["", "x" * 65, b"bytes"]:
        with pytest.raises(ValueError):
            InitiatorHandshake(alice, bad)  # type: ignore[arg-type]


# -- fuzzing -------------------------------------------------------------------------------

_ALICE, _BOB = identity("alice"), identity("bob")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2 * MAX_HANDSHAKE_MESSAGE), step=st.sampled_from([0, 1, 2]))
def test_arbitrary_bytes_at_any_step_only_ever_raise_handshake_failed(
    data: bytes, step: int
) -> None:
    initiator, responder = _pair(_ALICE, _BOB, _BOB.peer_id, seed="fuzz")
    hello = initiator.hello()
    with pytest.raises(HandshakeFailed):
        if step == 0:
            responder.receive_hello(data)
        elif step == 1:
            initiator.receive_reply(data)
        else:
            responder.receive_hello(hello)
            responder.receive_finish(data)


@settings(max_examples=300, deadline=None)
@given(
    which=st.sampled_from(["hello", "reply", "finish"]),
    position=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_bit_flipped_in_transit_in_any_message_makes_the_handshake_fail(
    which: str, position: int, bit: int
) -> None:
    def in_transit(name: str, message: bytes) -> bytes:
        if name != which:
            return message
        mangled = bytearray(message)
        mangled[position % len(mangled)] ^= 1 << bit
        return bytes(mangled)

    initiator, responder = _pair(_ALICE, _BOB, _BOB.peer_id, seed="fuzz")
    with pytest.raises(HandshakeFailed):
        reply = responder.receive_hello(in_transit("hello", initiator.hello()))
        finish, _ = initiator.receive_reply(in_transit("reply", reply))
        responder.receive_finish(in_transit("finish", finish))


def test_initiator_domain_differs_from_responder_domain() -> None:
    assert INITIATOR_DOMAIN != RESPONDER_DOMAIN
    assert not INITIATOR_DOMAIN.startswith(RESPONDER_DOMAIN)
