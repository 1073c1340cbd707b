"""The secure channel: seals and opens the frames of one link with its two session keys.

Pure: no I/O, no clock. Each direction has its own 32-byte key (from the handshake) and its
own 64-bit frame counter. A frame is XChaCha20-Poly1305 (IETF) ciphertext and tag, nothing
else: the nonce is implicit, 16 zero bytes then the counter as 8 bytes big-endian, and the
receiver always uses the next counter it expects. So a replayed, reordered, dropped,
truncated or altered frame fails authentication, and the channel is dead afterwards: every
later call raises `ChannelBroken`, and the link must be closed.

Counters never wrap: at `counter_limit` frames the channel refuses to go on
(`ChannelExhausted`). With the default 2^64 that cannot happen in practice, but it is
checked rather than assumed.
"""

from __future__ import annotations

from typing import NoReturn

import nacl.bindings
import nacl.exceptions

from lightbox_node.errors import FrameTooLarge
from lightbox_node.net.errors import (
    ChannelBroken,
    ChannelExhausted,
    FrameFailure,
    FrameRejected,
    LinkError,
)

MAX_MESSAGE = 1 << 20
"""Default bound on one message's plaintext, in bytes."""
TAG_LEN = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
KEY_LEN = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
COUNTER_LIMIT = 2**64

_NONCE_PAD = bytes(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES - 8)


def frame_nonce(counter: int) -> bytes:
    """The 24-byte nonce of frame number `counter`: 16 zero bytes, then the counter big-endian."""
    return _NONCE_PAD + counter.to_bytes(8, "big")


class SecureChannel:
    """Both directions of one link's encryption. Not safe to share between two links."""

    __slots__ = (
        "_broken",
        "_counter_limit",
        "_receive_counter",
        "_receive_key",
        "_send_counter",
        "_send_key",
        "max_message",
    )

    def __init__(
        self,
        send_key: bytes,
        receive_key: bytes,
        *,
        max_message: int = MAX_MESSAGE,
        counter_limit: int = COUNTER_LIMIT,
    ) -> None:
        """`counter_limit` is lowered only by tests; nodes keep the default."""
        for key in (send_key, receive_key):
            if type(key) is not bytes or len(key) != KEY_LEN:
                raise ValueError(f"channel keys are {KEY_LEN} bytes")
        if not 0 < counter_limit <= COUNTER_LIMIT:
            raise ValueError("counter_limit must be in (0, 2^64]")
        self._send_key = send_key
        self._receive_key = receive_key
        self._send_counter = 0
        self._receive_counter = 0
        self._counter_limit = counter_limit
        self._broken: LinkError | None = None
        self.max_message = max_message

    @property
    def broken(self) -> bool:
        return self._broken is not None

    @property
    def max_frame(self) -> int:
        """The largest frame `open` will look at: the largest message plus the tag."""
        return self.max_message + TAG_LEN

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt the next outgoing message.

        An oversized message raises `FrameTooLarge` and leaves the channel usable: nothing
        was sent and no counter was spent.
        """
        self._check_alive()
        if len(plaintext) > self.max_message:
            raise FrameTooLarge(
                f"message of {len(plaintext)} bytes, over the {self.max_message} byte link limit"
            )
        if self._send_counter >= self._counter_limit:
            self._broken = ChannelExhausted(
                "this link has sent as many frames as its counter allows; open a new link"
            )
            raise self._broken
        frame = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            bytes(plaintext), None, frame_nonce(self._send_counter), self._send_key
        )
        self._send_counter += 1
        return frame

    def open(self, frame: bytes) -> bytes:
        """Authenticate and decrypt the next incoming frame, or raise `FrameRejected`."""
        self._check_alive()
        if type(frame) is not bytes:
            self._fail(FrameFailure.NOT_BINARY, f"a frame is bytes, got {type(frame).__name__}")
        if len(frame) > self.max_frame:
            self._fail(
                FrameFailure.TOO_LARGE,
                f"frame of {len(frame)} bytes, over the {self.max_frame} byte limit",
            )
        if len(frame) < TAG_LEN:
            self._fail(FrameFailure.TRUNCATED, f"frame of {len(frame)} bytes has no room for a tag")
        if self._receive_counter >= self._counter_limit:
            self._broken = ChannelExhausted(
                "this link has received as many frames as its counter allows; open a new link"
            )
            raise self._broken
        try:
            plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                frame, None, frame_nonce(self._receive_counter), self._receive_key
            )
        except nacl.exceptions.CryptoError:
            self._fail(
                FrameFailure.NOT_AUTHENTIC,
                f"frame {self._receive_counter} does not authenticate "
                "(altered, replayed, reordered or dropped)",
            )
        self._receive_counter += 1
        return plaintext

    def _check_alive(self) -> None:
        if self._broken is not None:
            raise ChannelBroken(f"the channel is broken ({self._broken}); open a new link")

    def _fail(self, reason: FrameFailure, message: str) -> NoReturn:
        self._broken = FrameRejected(reason, message)
        raise self._broken


__all__ = ["MAX_MESSAGE", "TAG_LEN", "SecureChannel", "frame_nonce"]
