"""Signed envelopes: the canonical, strictly decoded msgpack form of anything forwarded.

An envelope is `[domain, author, seq, issued_at_ms, expires_at_ms, body]` packed as a
msgpack array (the *signed bytes*), travelling as `[signed_bytes, signature]`. The
signature covers a fixed context string plus the signed bytes, and the domain is part of
what is signed, so a signature made for one purpose never verifies for another.

Decoding is hostile-input decoding: sizes are bounded before allocation, only plain
msgpack types are accepted (no ext types), nesting is bounded, the encoding must be
canonical (re-packing gives the same bytes), and every failure is a `WireError`.
This module is pure: no clock, no I/O; `now_ms` is passed in.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgpack

from lightbox_node.errors import (
    Expired,
    FrameTooLarge,
    FromTheFuture,
    MalformedMessage,
    StaleSequence,
    WireError,
    WrongDomain,
)
from lightbox_node.identity import Identity, PeerId

SIGNING_CONTEXT = b"lightbox/envelope/v1\x00"
"""Prefix of every envelope signature input; keeps envelope signatures apart from handshakes."""

DOMAIN_PATTERN = re.compile(r"[a-z0-9][a-z0-9._/-]{0,63}")
MAX_U63 = 2**63 - 1
SIGNATURE_LEN = 64


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds applied before and during decoding; defaults suit capability records and jobs."""

    max_frame: int = 1 << 20
    max_str: int = 64 << 10
    max_bin: int = 1 << 20
    max_array: int = 4096
    max_map: int = 1024
    max_depth: int = 16
    max_clock_skew_ms: int = 30_000
    max_lifetime_ms: int = 7 * 24 * 3600 * 1000


DEFAULT_LIMITS = WireLimits()


@dataclass(frozen=True, slots=True)
class Envelope:
    """What an author says, to whom it may concern, for how long."""

    domain: str
    author: PeerId
    seq: int
    issued_at_ms: int
    expires_at_ms: int
    body: Any


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """An envelope whose signature, domain and time window have been checked.

    `frame` is kept so gossip can forward the exact bytes without re-encoding.
    """

    envelope: Envelope
    frame: bytes = field(repr=False)

    @property
    def message_id(self) -> bytes:
        """Stable id for seen caches: the hash of the whole frame."""
        return hashlib.blake2b(self.frame, digest_size=16).digest()


# -- encoding -------------------------------------------------------------------------------


def _canonical(value: Any, limits: WireLimits, depth: int) -> Any:
    """Check exact types and bounds, and sort map keys, in one walk.

    msgpack keeps insertion order, so sorting is what makes one value have one encoding.
    Exact types only: a bool is not an int, a tuple becomes a list, keys are strings.
    """
    kind = type(value)
    if kind is str:
        # Limits count UTF-8 bytes (as msgpack does); encode only when it could matter.
        if len(value) * 4 > limits.max_str and len(value.encode("utf-8", "surrogatepass")) > (
            limits.max_str
        ):
            raise FrameTooLarge(f"string over the {limits.max_str}-byte limit")
        return value
    if kind is int:
        if not -(2**63) <= value <= 2**64 - 1:
            raise MalformedMessage("integer out of the 64-bit range")
        return value
    if value is None or kind is bool or kind is float:
        return value
    if kind is bytes:
        if len(value) > limits.max_bin:
            raise FrameTooLarge(f"binary of {len(value)} bytes, over the {limits.max_bin} limit")
        return value
    if depth >= limits.max_depth and (kind is dict or kind is list or kind is tuple):
        raise MalformedMessage(f"nesting deeper than {limits.max_depth}")
    if kind is dict:
        if len(value) > limits.max_map:
            raise FrameTooLarge(f"map of {len(value)} entries, over the {limits.max_map} limit")
        for key in value:
            if type(key) is not str:
                raise MalformedMessage(f"map keys must be strings, got {type(key).__name__}")
            _canonical(key, limits, depth)
        return {key: _canonical(value[key], limits, depth + 1) for key in sorted(value)}
    if kind is list or kind is tuple:
        if len(value) > limits.max_array:
            raise FrameTooLarge(f"array of {len(value)}, over the {limits.max_array} limit")
        return [_canonical(item, limits, depth + 1) for item in value]
    raise MalformedMessage(f"unsupported type on the wire: {kind.__name__}")


def pack(value: Any, limits: WireLimits = DEFAULT_LIMITS) -> bytes:
    """Canonical msgpack bytes of a plain value; raises MalformedMessage for unsupported types."""
    canonical = _canonical(value, limits, 0)
    try:
        return msgpack.packb(canonical, use_bin_type=True)
    except (UnicodeEncodeError, ValueError, OverflowError) as exc:
        raise MalformedMessage(f"value cannot be encoded: {exc}") from None


def seal(
    identity: Identity,
    domain: str,
    seq: int,
    issued_at_ms: int,
    expires_at_ms: int,
    body: Any,
    limits: WireLimits = DEFAULT_LIMITS,
) -> bytes:
    """Build, sign and encode an envelope authored by `identity`."""
    envelope = Envelope(domain, identity.peer_id, seq, issued_at_ms, expires_at_ms, body)
    _check_header(envelope, limits)
    signed = pack(
        [domain, identity.peer_id.public_key, seq, issued_at_ms, expires_at_ms, body], limits
    )
    if len(signed) > limits.max_bin:
        raise FrameTooLarge(f"signed part is {len(signed)} bytes, over the {limits.max_bin} limit")
    frame = msgpack.packb([signed, identity.sign(SIGNING_CONTEXT + signed)], use_bin_type=True)
    if len(frame) > limits.max_frame:
        raise FrameTooLarge(f"envelope is {len(frame)} bytes, over the {limits.max_frame} limit")
    return frame


# -- decoding -------------------------------------------------------------------------------


def _refuse_ext(code: int, data: bytes) -> Any:
    """msgpack ext hook: extension types (timestamps included) are never accepted."""
    raise MalformedMessage(f"msgpack extension type {code} is not allowed")


def _check_structure(value: Any, max_depth: int) -> None:
    """At most `max_depth` nested containers; map keys are strings, unique and sorted.

    One breadth-first pass over containers only (scalars are just type-tested), because
    this walk is most of the cost of opening an envelope beyond the signature itself.
    """
    level = [value] if type(value) is list or type(value) is dict else []
    depth = 0
    while level:
        if depth >= max_depth:
            raise MalformedMessage(f"nesting deeper than {max_depth}")
        below = []
        for container in level:
            if type(container) is dict:
                keys = list(container)
                for key in keys:
                    if type(key) is not str:
                        raise MalformedMessage(
                            f"map keys must be strings, got {type(key).__name__}"
                        )
                if keys != sorted(keys):
                    raise MalformedMessage("map keys must be sorted (canonical encoding)")
                items: Any = container.values()
            else:
                items = container
            below += [v for v in items if type(v) is list or type(v) is dict]
        level = below
        depth += 1


def unpack(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Any:
    """Strictly decode one canonical msgpack value from untrusted bytes.

    msgpack enforces the size limits (in bytes) and refuses ext types; the structure walk
    refuses deep nesting and non-string or unsorted keys (a duplicate key cannot survive
    decoding into a dict, so the re-pack below catches it); re-packing must reproduce the
    input exactly, which refuses every other non-canonical form (wide integers, float32).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_frame:
        raise FrameTooLarge(f"frame is {len(data)} bytes, over the {limits.max_frame} limit")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
    except WireError:
        raise
    except Exception as exc:  # msgpack raises many types; every one means "bad bytes"
        raise MalformedMessage(f"not a valid msgpack value: {exc}") from None
    _check_structure(value, limits.max_depth)
    try:
        canonical = msgpack.packb(value, use_bin_type=True)
    except Exception as exc:  # e.g. a lone surrogate that decoded but cannot re-encode
        raise MalformedMessage(f"value cannot be re-encoded: {exc}") from None
    if canonical != data:
        raise MalformedMessage("encoding is not canonical (non-minimal forms)")
    return value


def _check_header(envelope: Envelope, limits: WireLimits) -> None:
    if type(envelope.domain) is not str or not DOMAIN_PATTERN.fullmatch(envelope.domain):
        raise MalformedMessage("domain must be 1-64 chars of a-z 0-9 . _ / -")
    for name in ("seq", "issued_at_ms", "expires_at_ms"):
        number = getattr(envelope, name)
        if type(number) is not int or not 0 <= number <= MAX_U63:
            raise MalformedMessage(f"{name} must be an integer in [0, 2^63)")
    if envelope.expires_at_ms <= envelope.issued_at_ms:
        raise MalformedMessage("expires_at must be after issued_at")
    if envelope.expires_at_ms - envelope.issued_at_ms > limits.max_lifetime_ms:
        raise MalformedMessage(f"lifetime over the {limits.max_lifetime_ms} ms limit")


def open_envelope(
    frame: bytes,
    *,
    expect_domain: str,
    now_ms: int,
    limits: WireLimits = DEFAULT_LIMITS,
) -> VerifiedEnvelope:
    """Decode and verify an envelope from untrusted bytes, or raise a WireError saying why.

    Cheap structural checks run before the signature check, and the time window after it,
    so a forged frame never gets to learn anything about the clock.
    """
    outer = unpack(frame, limits)
    if (
        type(outer) is not list
        or len(outer) != 2
        or type(outer[0]) is not bytes
        or type(outer[1]) is not bytes
        or len(outer[1]) != SIGNATURE_LEN
    ):
        raise MalformedMessage("an envelope is [signed_bytes, 64-byte signature]")
    signed, signature = outer
    inner = unpack(signed, limits)
    if type(inner) is not list or len(inner) != 6:
        raise MalformedMessage("signed part must be a 6-element array")
    domain, author_key, seq, issued_at_ms, expires_at_ms, body = inner
    if type(author_key) is not bytes or len(author_key) != 32:
        raise MalformedMessage("author must be a 32-byte public key")
    envelope = Envelope(domain, PeerId(author_key), seq, issued_at_ms, expires_at_ms, body)
    _check_header(envelope, limits)
    if domain != expect_domain:
        raise WrongDomain(f"envelope is for domain {domain!r}, expected {expect_domain!r}")
    envelope.author.verify(SIGNING_CONTEXT + signed, signature)
    if expires_at_ms <= now_ms:
        raise Expired(
            f"envelope from {envelope.author.short} expired {now_ms - expires_at_ms} ms ago"
        )
    if issued_at_ms > now_ms + limits.max_clock_skew_ms:
        raise FromTheFuture(
            f"envelope from {envelope.author.short} is issued {issued_at_ms - now_ms} ms ahead, "
            f"over the {limits.max_clock_skew_ms} ms clock-skew allowance"
        )
    return VerifiedEnvelope(envelope, bytes(frame))


class SequenceFilter:
    """Keeps the highest accepted `seq` per (domain, author) and refuses anything not newer.

    Bounded: the least recently updated authors are forgotten first, so a flood of new
    identities costs memory only up to `capacity`.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self._capacity = capacity
        self._highest: OrderedDict[tuple[str, bytes], int] = OrderedDict()

    def accept(self, envelope: Envelope) -> None:
        """Record the envelope's seq, or raise StaleSequence if it is not newer than the last."""
        key = (envelope.domain, envelope.author.public_key)
        last = self._highest.get(key)
        if last is not None and envelope.seq <= last:
            raise StaleSequence(
                f"seq {envelope.seq} from {envelope.author.short} is not newer than {last}"
            )
        self._highest[key] = envelope.seq
        self._highest.move_to_end(key)
        while len(self._highest) > self._capacity:
            self._highest.popitem(last=False)

    def highest(self, domain: str, author: PeerId) -> int | None:
        return self._highest.get((domain, author.public_key))


__all__ = [
    "DEFAULT_LIMITS",
    "SIGNING_CONTEXT",
    "Envelope",
    "SequenceFilter",
    "VerifiedEnvelope",
    "WireError",
    "WireLimits",
    "open_envelope",
    "pack",
    "seal",
    "unpack",
]
