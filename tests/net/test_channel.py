"""The secure channel: sealed frames in strict order; any bad frame kills the channel."""

from __future__ import annotations

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightbox_node.errors import FrameTooLarge
from lightbox_node.net.channel import TAG_LEN, SecureChannel, frame_nonce
from lightbox_node.net.errors import (
    ChannelBroken,
    ChannelExhausted,
    FrameFailure,
    FrameRejected,
)

KEY_AB = bytes(range(32))
KEY_BA = bytes(range(32, 64))


def _pair(**options: int) -> tuple[SecureChannel, SecureChannel]:
    return SecureChannel(KEY_AB, KEY_BA, **options), SecureChannel(KEY_BA, KEY_AB, **options)


def _rejected(reason: FrameFailure) -> object:
    return pytest.raises(FrameRejected, match=rf"\({reason}\)")


def _assert_dead(channel: SecureChannel) -> None:
    assert channel.broken
    with pytest.raises(ChannelBroken):
        channel.open(b"\x00" * 32)
    with pytest.raises(ChannelBroken):
        channel.seal(b"anything")


def test_messages_round_trip_in_both_directions() -> None:
    a, b = _pair()
    for i in range(50):
        message = f"message {i}".encode() * i
        assert b.open(a.seal(message)) == message
        assert a.open(b.seal(message[::-1])) == message[::-1]


def test_an_empty_message_round_trips() -> None:
    a, b = _pair()
    assert b.open(a.seal(b"")) == b""


def test_a_frame_is_the_ciphertext_and_tag_under_the_counter_nonce() -> None:
    """docs/protocol.md: nonce = 16 zero bytes || counter (8 bytes, big-endian), no AAD."""
    a, _ = _pair()
    a.seal(b"first")
    frame = a.seal(b"second")
    assert len(frame) == len(b"second") + TAG_LEN
    assert frame_nonce(1) == bytes(16) + (1).to_bytes(8, "big")
    plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        frame, None, bytes(16) + (1).to_bytes(8, "big"), KEY_AB
    )
    assert plain == b"second"


def test_the_same_message_sealed_twice_gives_different_frames() -> None:
    a, _ = _pair()
    assert a.seal(b"same") != a.seal(b"same")


def test_a_replayed_frame_is_rejected_and_the_channel_is_dead() -> None:
    a, b = _pair()
    frame = a.seal(b"pay 10")
    assert b.open(frame) == b"pay 10"
    with _rejected(FrameFailure.NOT_AUTHENTIC):
        b.open(frame)
    _assert_dead(b)


def test_reordered_frames_are_rejected_and_the_channel_is_dead() -> None:
    a, b = _pair()
    first, second = a.seal(b"one"), a.seal(b"two")
    with _rejected(FrameFailure.NOT_AUTHENTIC):
        b.open(second)
    _assert_dead(b)
    with pytest.raises(ChannelBroken):
        b.open(first)


def test_a_dropped_frame_makes_the_next_one_fail() -> None:
    a, b = _pair()
    a.seal(b"lost in transit")
    with _rejected(FrameFailure.NOT_AUTHENTIC):
        b.open(a.seal(b"next"))
    _assert_dead(b)


def test_every_altered_byte_is_rejected() -> None:
    message = b"an edit request for a photo"
    for position in range(len(message) + TAG_LEN):
        a, b = _pair()
        frame = bytearray(a.seal(message))
        frame[position] ^= 0x01
        with _rejected(FrameFailure.NOT_AUTHENTIC):
            b.open(bytes(frame))
        _assert_dead(b)


def test_a_frame_reflected_back_to_its_sender_is_rejected() -> None:
    """Each direction has its own key, so a node's own frame is never valid for it."""
    a, _ = _pair()
    with _rejected(FrameFailure.NOT_AUTHENTIC):
        a.open(a.seal(b"echo"))


def test_a_frame_shorter_than_a_tag_is_rejected_as_truncated() -> None:
    a, b = _pair()
    frame = a.seal(b"")
    with _rejected(FrameFailure.TRUNCATED):
        b.open(frame[:-1])
    _assert_dead(b)


def test_a_truncated_frame_is_rejected() -> None:
    a, b = _pair()
    frame = a.seal(b"a longer message that gets cut")
    with _rejected(FrameFailure.NOT_AUTHENTIC):
        b.open(frame[:-5])
    _assert_dead(b)


def test_a_frame_over_the_limit_is_rejected_without_decrypting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = _pair(max_message=1000)
    oversized = a.seal(b"x" * 1000) + b"x"

    def must_not_decrypt(*args: object) -> bytes:
        raise AssertionError("decrypted an oversized frame")

    monkeypatch.setattr(
        nacl.bindings, "crypto_aead_xchacha20poly1305_ietf_decrypt", must_not_decrypt
    )
    with _rejected(FrameFailure.TOO_LARGE):
        b.open(oversized)
    _assert_dead(b)


def test_the_default_limit_is_one_mebibyte_of_plaintext() -> None:
    a, b = _pair()
    largest = b"\x00" * (1 << 20)
    assert b.open(a.seal(largest)) == largest
    with pytest.raises(FrameTooLarge):
        a.seal(largest + b"\x00")


def test_sealing_an_oversized_message_refuses_it_and_keeps_the_channel_usable() -> None:
    a, b = _pair(max_message=10)
    with pytest.raises(FrameTooLarge):
        a.seal(b"x" * 11)
    assert not a.broken
    assert b.open(a.seal(b"fits")) == b"fits"


def test_a_frame_that_is_not_bytes_is_rejected() -> None:
    _, b = _pair()
    with _rejected(FrameFailure.NOT_BINARY):
        b.open("text")  # type: ignore[arg-type]
    _assert_dead(b)


def test_the_send_counter_never_wraps() -> None:
    a, b = _pair(counter_limit=3)
    for i in range(3):
        assert b.open(a.seal(bytes([i]))) == bytes([i])
    with pytest.raises(ChannelExhausted):
        a.seal(b"one too many")
    _assert_dead(a)


def test_the_receive_counter_never_wraps() -> None:
    a, _ = _pair()
    _, b = _pair(counter_limit=2)
    frames = [a.seal(bytes([i])) for i in range(3)]
    b.open(frames[0])
    b.open(frames[1])
    with pytest.raises(ChannelExhausted):
        b.open(frames[2])
    _assert_dead(b)


def test_keys_must_be_32_bytes() -> None:
    with pytest.raises(ValueError):
        SecureChannel(b"short", KEY_BA)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_sequence_of_messages_arrives_intact_and_in_order(messages: list[bytes]) -> None:
    a, b = _pair()
    assert [b.open(a.seal(m)) for m in messages] == messages


@settings(max_examples=500, deadline=None)
@given(garbage=st.binary(max_size=200), after=st.integers(min_value=0, max_value=3))
def test_arbitrary_bytes_never_open_and_leave_the_channel_dead(garbage: bytes, after: int) -> None:
    a, b = _pair()
    for i in range(after):
        b.open(a.seal(bytes([i])))
    with pytest.raises(FrameRejected):
        b.open(garbage)
    _assert_dead(b)
