"""The link handshake: two nodes prove their Ed25519 identities and agree on session keys.

Pure and sans-I/O: the two state machines here take the bytes of each handshake message and
return the bytes to send next; they import no trio and open no sockets. Randomness (the
ephemeral X25519 secrets and the nonces) is injected, so tests and simulations are
deterministic.

Three messages, no shared secret (a SIGMA-style exchange: signed Diffie-Hellman, where each
side signs the transcript rather than MACing it):

    initiator -> responder  HELLO   ["hello", version, network, key_i, ephemeral_i, nonce_i]
    responder -> initiator  REPLY   ["reply", key_r, ephemeral_r, nonce_r, signature_r]
    initiator -> responder  FINISH  ["finish", signature_i]

Every message is canonical msgpack (`wire.pack`) and is folded into a running transcript
hash, `h = SHA-256(h || message bytes)`, starting from `SHA-256("lightbox/handshake/v1")`.
A signature covers the domain string of the signer's role, a zero byte, and the transcript
hash over everything before the message plus the message itself without its signature
element. So the responder's signature binds both ephemerals, both nonces, both identity
keys, the network name and the version, and can verify for this one session and this one
role only; the initiator's signature covers the whole REPLY as well, signature included.
docs/protocol.md is the byte-exact specification.

Session keys: HKDF-SHA256 (RFC 5869, built from `hmac` and `hashlib`) with the X25519
shared secret as input keying material and the final transcript hash as salt, expanded to
64 bytes: the initiator-to-responder key, then the responder-to-initiator key. HKDF rather
than a keyed BLAKE2b because an X25519 output is not a uniformly random string, and HKDF's
extract step is the analysed way to turn it into one (it is what TLS 1.3, Noise and libp2p
use); and because every language has it, another implementation needs nothing bespoke.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import nacl.bindings
import nacl.exceptions

from lightbox_node.errors import BadSignature, FrameTooLarge, WireError
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.errors import HandshakeFailed, HandshakeFailure
from lightbox_node.wire import WireLimits, pack, unpack

PROTOCOL_VERSION = 1
HANDSHAKE_LABEL = b"lightbox/handshake/v1"
"""Hashed to start the transcript, so transcripts of other protocols never coincide."""
RESPONDER_DOMAIN = b"lightbox/handshake/v1/responder"
INITIATOR_DOMAIN = b"lightbox/handshake/v1/initiator"
KEY_INFO = b"lightbox/link/v1/keys"
"""HKDF `info`: names what the 64 output bytes are for."""

MAX_HANDSHAKE_MESSAGE = 512
"""Every valid handshake message is under 300 bytes; anything longer is refused unread."""
MAX_NETWORK_NAME = 64

_KEY_LEN = 32
_NONCE_LEN = 32
_SIGNATURE_LEN = 64
_INITIAL_HASH = hashlib.sha256(HANDSHAKE_LABEL).digest()
# Loose enough that a HELLO of a later version (other fields, same first two) still decodes
# and is refused for its version; the exact v1 shapes are checked after decoding.
_LIMITS = WireLimits(
    max_frame=MAX_HANDSHAKE_MESSAGE,
    max_str=MAX_HANDSHAKE_MESSAGE,
    max_bin=MAX_HANDSHAKE_MESSAGE,
    max_array=16,
    max_map=16,
    max_depth=4,
)

RandomBytes = Callable[[int], bytes]


class Role(StrEnum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake established: who the peer is, and this side's two keys."""

    remote: PeerId
    role: Role
    send_key: bytes = field(repr=False)
    receive_key: bytes = field(repr=False)
    session_id: bytes
    """The final transcript hash: the same on both sides, unique to this session."""


# -- the two roles --------------------------------------------------------------------------


class _HandshakeMachine:
    """One step per call, in order; after any failure every later call fails too."""

    _state = "start"

    def _advance(self, expected: str, then: str) -> None:
        if self._state != expected:
            state = self._state
            self._state = "failed"
            raise HandshakeFailed(
                HandshakeFailure.OUT_OF_ORDER,
                "the handshake already failed" if state == "failed" else f"unexpected in {state!r}",
            )
        self._state = then


class InitiatorHandshake(_HandshakeMachine):
    """The dialling side: `hello()`, then `receive_reply(reply)` gives FINISH and the result."""

    def __init__(
        self,
        identity: Identity,
        network: str,
        expected_peer: PeerId | None = None,
        *,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        _check_network(network)
        self._identity = identity
        self._network = network
        self._expected = expected_peer
        self._random = random_bytes
        self._ephemeral_secret = b""
        self._hash = _INITIAL_HASH

    def hello(self) -> bytes:
        """The first message. Draws this session's ephemeral key and nonce."""
        self._advance("start", "sent-hello")
        self._ephemeral_secret = _draw(self._random, _KEY_LEN)
        ephemeral = nacl.bindings.crypto_scalarmult_base(self._ephemeral_secret)
        message = pack(
            [
                "hello",
                PROTOCOL_VERSION,
                self._network,
                self._identity.peer_id.public_key,
                ephemeral,
                _draw(self._random, _NONCE_LEN),
            ],
            _LIMITS,
        )
        self._hash = _chain(self._hash, message)
        return message

    def receive_reply(self, data: bytes) -> tuple[bytes, HandshakeResult]:
        """Check the responder's REPLY; return the FINISH message to send and the result."""
        self._advance("sent-hello", "busy")
        try:
            fields = _decode(data, "reply", (bytes, bytes, bytes, bytes))
            key, ephemeral, nonce, signature = fields
            _check_lengths(key=key, ephemeral=ephemeral, nonce=nonce, signature=signature)
            remote = PeerId(key)
            if remote == self._identity.peer_id:
                raise HandshakeFailed(
                    HandshakeFailure.SELF_CONNECTION,
                    "the peer presented this node's own identity (dialled itself?)",
                )
            if self._expected is not None and remote != self._expected:
                raise HandshakeFailed(
                    HandshakeFailure.UNEXPECTED_PEER,
                    f"dialled {self._expected}, but the peer proved to be {remote}; "
                    "check the peer id configured for this address",
                )
            _verify(remote, RESPONDER_DOMAIN, _chain(self._hash, _unsigned(data)), signature)
            shared = _shared_secret(self._ephemeral_secret, ephemeral)
            self._hash = _chain(self._hash, data)
            finish_unsigned = pack(["finish"], _LIMITS)
            signature_i = self._identity.sign(
                _signing_input(INITIATOR_DOMAIN, _chain(self._hash, finish_unsigned))
            )
            finish = pack(["finish", signature_i], _LIMITS)
            self._hash = _chain(self._hash, finish)
            to_responder, to_initiator = _session_keys(shared, self._hash)
        except HandshakeFailed:
            self._state = "failed"
            raise
        self._state = "done"
        self._ephemeral_secret = b""
        result = HandshakeResult(remote, Role.INITIATOR, to_responder, to_initiator, self._hash)
        return finish, result


class ResponderHandshake(_HandshakeMachine):
    """The accepting side: `receive_hello(hello)` gives REPLY, `receive_finish(finish)` the result.

    `claimed_remote` is the identity the HELLO claims; it is proven only once
    `receive_finish` returns, so use it for logs, never for decisions.
    """

    def __init__(
        self,
        identity: Identity,
        network: str,
        *,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        _check_network(network)
        self._identity = identity
        self._network = network
        self._random = random_bytes
        self._ephemeral_secret = b""
        self._shared = b""
        self._hash = _INITIAL_HASH
        self.claimed_remote: PeerId | None = None

    def receive_hello(self, data: bytes) -> bytes:
        """Check the initiator's HELLO and return the signed REPLY."""
        self._advance("start", "busy")
        try:
            outer = _decode_array(data)
            if len(outer) < 2 or outer[0] != "hello":
                raise HandshakeFailed(HandshakeFailure.MALFORMED, "expected a HELLO message")
            # The version is read before the rest of the shape, so a later version with
            # other fields is refused as a version mismatch rather than as garbage.
            if type(outer[1]) is not int or outer[1] != PROTOCOL_VERSION:
                raise HandshakeFailed(
                    HandshakeFailure.WRONG_VERSION,
                    f"peer speaks handshake version {outer[1]!r:.20}, "
                    f"this node speaks {PROTOCOL_VERSION}",
                )
            fields = _shape(outer, "hello", (int, str, bytes, bytes, bytes))
            network, key, ephemeral, nonce = fields[2:]
            _check_lengths(key=key, ephemeral=ephemeral, nonce=nonce)
            if network != self._network:
                raise HandshakeFailed(
                    HandshakeFailure.WRONG_NETWORK,
                    f"peer is on network {network!r:.80}, this node is on {self._network!r}",
                )
            remote = PeerId(key)
            if remote == self._identity.peer_id:
                raise HandshakeFailed(
                    HandshakeFailure.SELF_CONNECTION,
                    "the peer presented this node's own identity (connected to itself?)",
                )
            self.claimed_remote = remote
            self._ephemeral_secret = _draw(self._random, _KEY_LEN)
            self._shared = _shared_secret(self._ephemeral_secret, ephemeral)
            self._hash = _chain(self._hash, data)
            reply_fields = [
                "reply",
                self._identity.peer_id.public_key,
                nacl.bindings.crypto_scalarmult_base(self._ephemeral_secret),
                _draw(self._random, _NONCE_LEN),
            ]
            transcript = _chain(self._hash, pack(reply_fields, _LIMITS))
            signature = self._identity.sign(_signing_input(RESPONDER_DOMAIN, transcript))
            reply = pack([*reply_fields, signature], _LIMITS)
            self._hash = _chain(self._hash, reply)
        except HandshakeFailed:
            self._state = "failed"
            raise
        self._ephemeral_secret = b""
        self._state = "sent-reply"
        return reply

    def receive_finish(self, data: bytes) -> HandshakeResult:
        """Check the initiator's FINISH; the initiator's identity is now proven."""
        self._advance("sent-reply", "busy")
        try:
            (signature,) = _decode(data, "finish", (bytes,))
            _check_lengths(signature=signature)
            assert self.claimed_remote is not None
            _verify(
                self.claimed_remote,
                INITIATOR_DOMAIN,
                _chain(self._hash, _unsigned(data)),
                signature,
            )
            self._hash = _chain(self._hash, data)
            to_responder, to_initiator = _session_keys(self._shared, self._hash)
        except HandshakeFailed:
            self._state = "failed"
            raise
        self._state = "done"
        self._shared = b""
        return HandshakeResult(
            self.claimed_remote, Role.RESPONDER, to_initiator, to_responder, self._hash
        )


# -- helpers --------------------------------------------------------------------------------


def _check_network(network: str) -> None:
    if type(network) is not str or not 0 < len(network) <= MAX_NETWORK_NAME:
        raise ValueError(f"a network name is 1 to {MAX_NETWORK_NAME} characters of text")


def _draw(random_bytes: RandomBytes, size: int) -> bytes:
    value = random_bytes(size)
    if type(value) is not bytes or len(value) != size:
        raise ValueError(f"random_bytes({size}) must return {size} bytes")
    return value


def _decode_array(data: bytes) -> list[Any]:
    if not isinstance(data, bytes):
        raise HandshakeFailed(HandshakeFailure.MALFORMED, "handshake messages are binary")
    if len(data) > MAX_HANDSHAKE_MESSAGE:
        raise HandshakeFailed(
            HandshakeFailure.TOO_LARGE,
            f"message of {len(data)} bytes, over the {MAX_HANDSHAKE_MESSAGE} byte limit",
        )
    try:
        value = unpack(data, _LIMITS)
    except FrameTooLarge as exc:
        raise HandshakeFailed(HandshakeFailure.TOO_LARGE, str(exc)) from None
    except WireError as exc:
        raise HandshakeFailed(HandshakeFailure.MALFORMED, str(exc)) from None
    if type(value) is not list:
        raise HandshakeFailed(HandshakeFailure.MALFORMED, "a handshake message is an array")
    return value


def _shape(value: list[Any], tag: str, types: tuple[type, ...]) -> list[Any]:
    if (
        len(value) != 1 + len(types)
        or value[0] != tag
        or any(type(v) is not t for v, t in zip(value[1:], types, strict=True))
    ):
        kinds = ", ".join(t.__name__ for t in types)
        raise HandshakeFailed(
            HandshakeFailure.MALFORMED, f"expected a {tag.upper()} message [{tag!r}, {kinds}]"
        )
    return value


def _decode(data: bytes, tag: str, types: tuple[type, ...]) -> list[Any]:
    """The fields after the tag, exactly typed."""
    return _shape(_decode_array(data), tag, types)[1:]


def _check_lengths(**fields: bytes) -> None:
    expected = {"key": _KEY_LEN, "ephemeral": _KEY_LEN, "nonce": _NONCE_LEN}
    for name, value in fields.items():
        size = expected.get(name, _SIGNATURE_LEN)
        if len(value) != size:
            raise HandshakeFailed(
                HandshakeFailure.MALFORMED, f"{name} is {len(value)} bytes, expected {size}"
            )


def _chain(transcript: bytes, message: bytes) -> bytes:
    return hashlib.sha256(transcript + message).digest()


def _unsigned(message: bytes) -> bytes:
    """The message re-packed without its final signature element (it was decoded strictly)."""
    return pack(unpack(message, _LIMITS)[:-1], _LIMITS)


def _signing_input(domain: bytes, transcript: bytes) -> bytes:
    return domain + b"\x00" + transcript


def _verify(peer: PeerId, domain: bytes, transcript: bytes, signature: bytes) -> None:
    try:
        peer.verify(_signing_input(domain, transcript), signature)
    except BadSignature:
        role = "responder" if domain == RESPONDER_DOMAIN else "initiator"
        raise HandshakeFailed(
            HandshakeFailure.BAD_SIGNATURE,
            f"the {role}'s signature from {peer.short} does not cover this session's transcript",
        ) from None


def _shared_secret(secret: bytes, peer_ephemeral: bytes) -> bytes:
    """X25519, refusing low-order points (they force an all-zero, attacker-known secret)."""
    try:
        shared = nacl.bindings.crypto_scalarmult(secret, peer_ephemeral)
    except nacl.exceptions.RuntimeError:  # libsodium refuses an all-zero result itself
        shared = bytes(_KEY_LEN)
    if hmac.compare_digest(shared, bytes(_KEY_LEN)):
        raise HandshakeFailed(
            HandshakeFailure.WEAK_KEY, "the peer's ephemeral key is a low-order point"
        )
    return shared


def _hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 extract-then-expand with HMAC-SHA256."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def _session_keys(shared: bytes, transcript: bytes) -> tuple[bytes, bytes]:
    """(initiator-to-responder key, responder-to-initiator key)."""
    okm = _hkdf_sha256(transcript, shared, KEY_INFO, 2 * _KEY_LEN)
    return okm[:_KEY_LEN], okm[_KEY_LEN:]


__all__ = [
    "INITIATOR_DOMAIN",
    "MAX_HANDSHAKE_MESSAGE",
    "PROTOCOL_VERSION",
    "RESPONDER_DOMAIN",
    "HandshakeResult",
    "InitiatorHandshake",
    "ResponderHandshake",
    "Role",
]
