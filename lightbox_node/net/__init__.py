"""Peer links: authenticated, encrypted, message-oriented connections between nodes.

Public surface: `dial` and `serve_links` (WebSocket links), `memory_link_pair` (in-process
links for tests and simulations), the `PeerLink` interface, `LinkLimits`, and the link
errors. The sans-I/O handshake and channel live in `net.handshake` and `net.channel`;
docs/protocol.md specifies the wire format.
"""

from lightbox_node.net.errors import (
    ChannelBroken,
    ChannelExhausted,
    DialFailed,
    FrameFailure,
    FrameRejected,
    HandshakeFailed,
    HandshakeFailure,
    LinkClosed,
    LinkError,
)
from lightbox_node.net.link import (
    LINK_PATH,
    CloseCode,
    LinkLimits,
    MemoryLink,
    PeerLink,
    WebSocketLink,
    dial,
    memory_link_pair,
    serve_links,
)

__all__ = [
    "LINK_PATH",
    "ChannelBroken",
    "ChannelExhausted",
    "CloseCode",
    "DialFailed",
    "FrameFailure",
    "FrameRejected",
    "HandshakeFailed",
    "HandshakeFailure",
    "LinkClosed",
    "LinkError",
    "LinkLimits",
    "MemoryLink",
    "PeerLink",
    "WebSocketLink",
    "dial",
    "memory_link_pair",
    "serve_links",
]
