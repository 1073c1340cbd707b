"""Shared test parts for peer links: fixed identities, repeatable randomness, a raw client.

The raw client speaks the link protocol by hand (the pure handshake over a bare
trio-websocket connection), so tests can send what a well-behaved `dial` never would.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio_websocket

from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.channel import SecureChannel
from lightbox_node.net.handshake import InitiatorHandshake

NETWORK = "lightbox-test"


def identity(name: str) -> Identity:
    """The same identity for the same name in every run."""
    return Identity.from_seed(hashlib.sha256(name.encode()).digest())


def seeded_random(seed: str) -> Callable[[int], bytes]:
    """A repeatable stand-in for os.urandom: SHAKE-256 of the seed and a call counter."""
    counter = itertools.count()

    def random_bytes(size: int) -> bytes:
        return hashlib.shake_256(f"{seed}/{next(counter)}".encode()).digest(size)

    return random_bytes


@asynccontextmanager
async def raw_websocket(url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A bare WebSocket to the link listener, for sending anything at all."""
    async with trio_websocket.open_websocket_url(url) as websocket:
        yield websocket


async def raw_handshake(
    websocket: trio_websocket.WebSocketConnection,
    me: Identity,
    expected: PeerId | None,
    network: str = NETWORK,
) -> SecureChannel:
    """Authenticate by hand; return the channel, so the caller can seal (or mangle) frames."""
    initiator = InitiatorHandshake(me, network, expected)
    await websocket.send_message(initiator.hello())
    reply = await websocket.get_message()
    assert isinstance(reply, bytes)
    finish, result = initiator.receive_reply(reply)
    await websocket.send_message(finish)
    return SecureChannel(result.send_key, result.receive_key)


async def close_code(websocket: trio_websocket.WebSocketConnection) -> int | None:
    """Read until the server closes the WebSocket; return its close code."""
    while True:
        try:
            await websocket.get_message()
        except trio_websocket.ConnectionClosed as exc:
            return exc.reason.code if exc.reason else None
