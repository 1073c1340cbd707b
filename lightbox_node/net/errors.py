"""Errors of peer links: a refused handshake, a rejected frame, a closed link.

Each error carries a short machine-readable reason (used as the WebSocket close reason and in
logs) and a message for people that says what was wrong.
"""

from __future__ import annotations

from enum import StrEnum

from lightbox_node.errors import LightboxError


class HandshakeFailure(StrEnum):
    """Why a handshake was refused; the value is what goes on the wire and into logs."""

    MALFORMED = "malformed"
    TOO_LARGE = "too-large"
    WRONG_VERSION = "wrong-version"
    WRONG_NETWORK = "wrong-network"
    BAD_SIGNATURE = "bad-signature"
    UNEXPECTED_PEER = "unexpected-peer"
    SELF_CONNECTION = "self-connection"
    WEAK_KEY = "weak-key"
    TIMEOUT = "timeout"
    CLOSED = "closed"
    OUT_OF_ORDER = "out-of-order"


class FrameFailure(StrEnum):
    """Why a sealed frame was rejected."""

    TOO_LARGE = "too-large"
    TRUNCATED = "truncated"
    NOT_AUTHENTIC = "not-authentic"
    NOT_BINARY = "not-binary"


class LinkError(LightboxError):
    """Base of everything a peer link raises on purpose."""


class HandshakeFailed(LinkError):
    """The peer could not be authenticated; no link was made. `reason` says which check failed."""

    def __init__(self, reason: HandshakeFailure, detail: str) -> None:
        super().__init__(f"handshake failed ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class FrameRejected(LinkError):
    """A received frame was oversized, truncated, replayed, reordered or altered.

    The channel that raised it is dead afterwards: the link must be closed.
    """

    def __init__(self, reason: FrameFailure, detail: str) -> None:
        super().__init__(f"frame rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class ChannelBroken(LinkError):
    """The secure channel was already broken by an earlier failure; open a new link."""


class ChannelExhausted(LinkError):
    """The frame counter reached its limit; the link must be closed and a new one opened."""


class LinkClosed(LinkError):
    """The link is closed (by either side, or after a protocol violation); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"link closed: {reason}")
        self.reason = reason


class DialFailed(LinkError):
    """The peer could not be reached (refused, unreachable, not a Lightbox link endpoint)."""


__all__ = [
    "ChannelBroken",
    "ChannelExhausted",
    "DialFailed",
    "FrameFailure",
    "FrameRejected",
    "HandshakeFailed",
    "HandshakeFailure",
    "LinkClosed",
    "LinkError",
]
