"""Peer links: the `PeerLink` interface, its WebSocket transport, and in-memory pairs.

This is the trio shell around the pure handshake and channel. A `PeerLink` carries whole
binary messages between two authenticated nodes, in order, each sealed by the link's
`SecureChannel`. `dial` and `serve_links` make links over trio-websocket; `memory_link_pair`
makes a connected pair in one process for tests and virtual-time simulations.

A peer that stalls or fails the handshake, sends a text message, an oversized message or a
frame that does not authenticate has its link closed with one logged line (logger
`lightbox.net`) and a WebSocket close code saying why; other links are not affected.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NoReturn

import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
    wrap_server_stream,
)

from lightbox_node.errors import FrameTooLarge, LightboxError
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.channel import MAX_MESSAGE, TAG_LEN, SecureChannel
from lightbox_node.net.errors import (
    DialFailed,
    FrameRejected,
    HandshakeFailed,
    HandshakeFailure,
    LinkClosed,
    LinkError,
)
from lightbox_node.net.handshake import (
    HandshakeResult,
    InitiatorHandshake,
    RandomBytes,
    ResponderHandshake,
)

log = logging.getLogger("lightbox.net")

LINK_PATH = "/lightbox/v1"
"""The WebSocket resource of the link listener (the same path `discovery.link_url` builds)."""


class CloseCode(IntEnum):
    """WebSocket close codes a link uses; 1009 (message too big) comes from trio-websocket."""

    NORMAL = 1000
    HANDSHAKE_FAILED = 4000
    HANDSHAKE_TIMEOUT = 4001
    BAD_FRAME = 4002


@dataclass(frozen=True, slots=True)
class LinkLimits:
    """Bounds on one link's memory and patience."""

    max_message: int = MAX_MESSAGE
    """Largest plaintext message, in bytes, either way."""
    receive_queue: int = 1
    """Messages trio-websocket buffers before it stops reading the socket (backpressure).
    With the size bound, a link holds at most about (receive_queue + 1) * max_message bytes."""
    close_timeout: float = 2.0
    """Seconds to wait for the peer's half of a WebSocket closing handshake."""
    read_size: int = 256 << 10
    """Bytes asked of the socket per read. trio-websocket's default of 4 KiB makes a 512 KiB
    blob chunk cost 128 reads and halves bulk throughput; this bounds memory per read."""


DEFAULT_LINK_LIMITS = LinkLimits()

_CLOSE_CODES = frozenset(int(code) for code in CloseCode)
_FAILURE_CODES = frozenset(str(reason) for reason in HandshakeFailure)

# Failures of the network or of trio-websocket itself: expected, logged, never a crash.
_TRANSPORT_ERRORS = (ConnectionClosed, HandshakeError, trio.BrokenResourceError, OSError)


class PeerLink(trio.abc.AsyncResource):
    """An authenticated, ordered, message-oriented link to one peer.

    `receive` returns whole messages in the order they were sent and raises `LinkClosed`
    once the link is closed by either side or broken by a bad frame. `send` raises
    `FrameTooLarge` for a message over the link's limit (the link stays usable) and
    `LinkClosed` when the link is closed. `aclose` is idempotent; `async with link:`
    closes it on exit. One task may send while another receives.
    """

    remote: PeerId
    """The peer, proven by the handshake."""
    remote_address: str | None
    """`host:port` the peer connected from or was dialled at; None where there is none."""

    @abc.abstractmethod
    async def send(self, message: bytes) -> None: ...

    @abc.abstractmethod
    async def receive(self) -> bytes: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...


# -- WebSocket links ------------------------------------------------------------------------


class WebSocketLink(PeerLink):
    """A link over one trio-websocket connection: one sealed frame per binary message.

    Made by `dial` or `serve_links`, never directly.
    """

    def __init__(
        self,
        websocket: WebSocketConnection,
        result: HandshakeResult,
        limits: LinkLimits,
        remote_address: str | None,
    ) -> None:
        self.remote = result.remote
        self.remote_address = remote_address
        self.session_id = result.session_id
        self._websocket = websocket
        self._channel = SecureChannel(
            result.send_key, result.receive_key, max_message=limits.max_message
        )
        self._limits = limits
        self._send_lock = trio.Lock()  # the counter order must be the wire order
        self._closed: str | None = None

    def __repr__(self) -> str:
        return f"<WebSocketLink {self.remote.short} at {self.remote_address}>"

    async def send(self, message: bytes) -> None:
        self._check_open()
        # Take the lock without a checkpoint when it is free (send_message checkpoints anyway):
        # an extra yield per message costs a third of the throughput on loopback.
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        try:
            self._check_open()
            try:
                frame = self._channel.seal(message)  # FrameTooLarge leaves the link usable
            except LinkError as exc:  # counter exhausted: nothing more can be sent
                await self._close(CloseCode.NORMAL, f"link worn out: {exc}", logging.INFO)
            try:
                await self._websocket.send_message(frame)
            except ConnectionClosed as exc:
                self._lost(exc.reason)
            except trio.Cancelled:
                # The counter is spent but the frame may not be on the wire: the next frame
                # would fail at the peer, so this link is over.
                await self._shut(CloseCode.NORMAL, "a send was cancelled mid-frame", logging.DEBUG)
                raise
        finally:
            self._send_lock.release()

    async def receive(self) -> bytes:
        self._check_open()
        try:
            frame = await self._websocket.get_message()
        except ConnectionClosed as exc:
            self._lost(exc.reason)
        if not isinstance(frame, bytes):
            await self._close(CloseCode.BAD_FRAME, "not-binary: a text message on a link")
        try:
            return self._channel.open(frame)
        except FrameRejected as exc:
            await self._close(CloseCode.BAD_FRAME, f"{exc.reason}: {exc.detail}")
        except LinkError as exc:  # counter exhausted
            await self._close(CloseCode.NORMAL, f"link worn out: {exc}", logging.INFO)

    async def aclose(self) -> None:
        if self._closed is None:
            self._closed = "closed by this node"
            log.debug("closed link with %s at %s", self.remote, self.remote_address)
        await _close_websocket(self._websocket, CloseCode.NORMAL, None, self._limits)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise LinkClosed(self._closed)

    async def _close(self, code: CloseCode, reason: str, level: int = logging.WARNING) -> NoReturn:
        """Close because of what happened here, say why once, and raise LinkClosed."""
        await self._shut(code, reason, level)
        raise LinkClosed(self._closed or reason)

    async def _shut(self, code: CloseCode, reason: str, level: int) -> None:
        if self._closed is None:
            self._closed = reason
            log.log(
                level, "closing link with %s at %s: %s", self.remote, self.remote_address, reason
            )
        await _close_websocket(self._websocket, code, reason, self._limits)

    def _lost(self, close: CloseReason | None) -> NoReturn:
        """The WebSocket closed under us (peer, network or trio-websocket): raise LinkClosed."""
        if self._closed is None:
            self._closed, level = _describe_close(close)
            log.log(
                level,
                "link with %s at %s ended: %s",
                self.remote,
                self.remote_address,
                self._closed,
            )
        raise LinkClosed(self._closed)


async def dial(
    nursery: trio.Nursery,
    url: str,
    identity: Identity,
    network: str,
    expected_peer: PeerId | None,
    *,
    handshake_timeout: float = 10.0,
    limits: LinkLimits = DEFAULT_LINK_LIMITS,
    random_bytes: RandomBytes = os.urandom,
) -> WebSocketLink:
    """Connect to the link listener at `url` and authenticate the peer there.

    `expected_peer` is the peer id this node means to reach; if the peer proves another
    identity the handshake fails (`HandshakeFailed`, reason `unexpected-peer`) before this
    node signs anything. Pass None only for an address whose peer id is not known yet.
    `url` may omit the path (`ws://host:port`); the link path is used then.

    The WebSocket's reader task runs in `nursery`, which must outlive the link (as with
    trio-websocket's `connect_websocket_url`). Raises `DialFailed` when the peer cannot be
    reached, `HandshakeFailed` when it cannot be authenticated within `handshake_timeout`
    seconds (the whole dial, TCP connect included).
    """
    url = _with_link_path(url)
    websocket: WebSocketConnection | None = None
    try:
        with trio.move_on_after(handshake_timeout) as timer:
            try:
                websocket = await nursery.start(_run_client_websocket, url, limits)
            except BaseExceptionGroup as group:
                raise _dial_failure(url, group) from None
            except (ValueError, *_TRANSPORT_ERRORS) as exc:
                raise DialFailed(f"could not open a link to {url}: {exc}") from None
            assert websocket is not None
            initiator = InitiatorHandshake(
                identity, network, expected_peer, random_bytes=random_bytes
            )
            try:
                await websocket.send_message(initiator.hello())
                reply = await websocket.get_message()
                finish, result = initiator.receive_reply(reply)
                await websocket.send_message(finish)
            except ConnectionClosed as exc:
                raise _refusal(url, exc.reason) from None
        if timer.cancelled_caught:
            if websocket is None:
                raise DialFailed(f"no answer from {url} within {handshake_timeout:g} s")
            raise HandshakeFailed(
                HandshakeFailure.TIMEOUT,
                f"{url} did not complete the handshake within {handshake_timeout:g} s",
            )
    except HandshakeFailed as exc:
        if websocket is not None:
            await _close_websocket(
                websocket, CloseCode.HANDSHAKE_FAILED, _close_reason_text(exc), limits
            )
        raise
    except BaseException:
        if websocket is not None:
            await _close_websocket(websocket, CloseCode.NORMAL, None, limits)
        raise
    address = _endpoint_text(websocket.remote)
    log.debug("link up with %s at %s (dialled)", result.remote, address)
    return WebSocketLink(websocket, result, limits, address)


async def _run_client_websocket(
    url: str, limits: LinkLimits, *, task_status: trio.TaskStatus[WebSocketConnection]
) -> None:
    """Host a client WebSocket's reader task in a nursery of its own.

    trio-websocket raises a refused upgrade from the reader task; inside this task it
    reaches `dial` (through `nursery.start`) instead of crashing the caller's nursery.
    """
    started = False
    try:
        async with trio.open_nursery() as inner:
            websocket = await connect_websocket_url(
                inner,
                url,
                message_queue_size=limits.receive_queue,
                max_message_size=limits.max_message + TAG_LEN,
                receive_buffer_size=limits.read_size,
            )
            started = True
            task_status.started(websocket)
    except* _TRANSPORT_ERRORS as group:
        if not started:
            raise
        log.debug("link transport to %s ended: %r", url, group.exceptions[0])


ConnectionHandler = Callable[[PeerLink], Awaitable[None]]


async def serve_links(
    handler: ConnectionHandler,
    host: str | None,
    port: int,
    identity: Identity,
    network: str,
    *,
    handshake_timeout: float = 10.0,
    limits: LinkLimits = DEFAULT_LINK_LIMITS,
    random_bytes: RandomBytes = os.urandom,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept links on `host:port` until cancelled; start with `nursery.start`, get the port.

    Each connection is served in its own task: the WebSocket upgrade and the handshake must
    finish within `handshake_timeout` seconds each, then `handler(link)` runs and the link
    is closed when it returns. A `LinkError` or other `LightboxError` out of the handler is
    logged and ends only that link; any other exception is a bug and propagates.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]

    async def serve_connection(stream: trio.SocketStream) -> None:
        await _serve_connection(
            stream, handler, identity, network, handshake_timeout, limits, random_bytes
        )

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve_connection, listeners)
        log.info("accepting links on %s:%d (network %s)", host or "*", bound, network)
        task_status.started(bound)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve_connection(
    stream: trio.SocketStream,
    handler: ConnectionHandler,
    identity: Identity,
    network: str,
    handshake_timeout: float,
    limits: LinkLimits,
    random_bytes: RandomBytes,
) -> None:
    """One inbound connection, from TCP accept to close; nothing here may crash the server."""
    address = _socket_address(stream)
    try:
        async with trio.open_nursery() as nursery:
            link = await _accept_link(
                nursery, stream, address, identity, network, handshake_timeout, limits,
                random_bytes,
            )  # fmt: skip
            if link is not None:
                async with link:
                    try:
                        await handler(link)
                    except* LinkClosed:
                        pass  # already logged where it closed
                    except* LightboxError as group:
                        log.warning(
                            "link with %s at %s failed: %s",
                            link.remote,
                            address,
                            group.exceptions[0],
                        )
            nursery.cancel_scope.cancel()
    except* (*_TRANSPORT_ERRORS, trio.ClosedResourceError) as group:
        log.info("connection from %s ended: %r", address, group.exceptions[0])
    finally:
        await trio.aclose_forcefully(stream)


async def _accept_link(
    nursery: trio.Nursery,
    stream: trio.SocketStream,
    address: str,
    identity: Identity,
    network: str,
    handshake_timeout: float,
    limits: LinkLimits,
    random_bytes: RandomBytes,
) -> WebSocketLink | None:
    """Upgrade and authenticate; None (after logging and closing) if the peer fails."""
    websocket: WebSocketConnection | None = None
    with trio.move_on_after(handshake_timeout):
        request = await wrap_server_stream(
            nursery,
            stream,
            message_queue_size=limits.receive_queue,
            max_message_size=limits.max_message + TAG_LEN,
            receive_buffer_size=limits.read_size,
        )
        if request.path != LINK_PATH:
            log.warning(
                "refused connection from %s: path %.80r is not %s", address, request.path, LINK_PATH
            )
            await request.reject(404, body=b"not a Lightbox link endpoint\n")
            return None
        websocket = await request.accept()
    if websocket is None:
        log.warning(
            "refused connection from %s: no WebSocket upgrade within %g s",
            address,
            handshake_timeout,
        )
        return None
    responder = ResponderHandshake(identity, network, random_bytes=random_bytes)
    who = address
    try:
        with trio.move_on_after(handshake_timeout) as timer:
            hello = await websocket.get_message()
            reply = responder.receive_hello(hello)
            who = f"{responder.claimed_remote} at {address}"
            await websocket.send_message(reply)
            result = responder.receive_finish(await websocket.get_message())
        if timer.cancelled_caught:
            raise HandshakeFailed(
                HandshakeFailure.TIMEOUT, f"no complete handshake within {handshake_timeout:g} s"
            )
    except HandshakeFailed as exc:
        log.warning("refused link from %s: %s", who, exc)
        code = (
            CloseCode.HANDSHAKE_TIMEOUT
            if exc.reason is HandshakeFailure.TIMEOUT
            else CloseCode.HANDSHAKE_FAILED
        )
        await _close_websocket(websocket, code, _close_reason_text(exc), limits)
        return None
    except ConnectionClosed as exc:
        log.info("link from %s ended during the handshake: %s", who, _describe_close(exc.reason)[0])
        return None
    log.debug("link up with %s at %s (accepted)", result.remote, address)
    return WebSocketLink(websocket, result, limits, address)


# -- in-memory links ------------------------------------------------------------------------


class MemoryLink(PeerLink):
    """One end of a link made by `memory_link_pair`: memory channels, optionally sealed."""

    def __init__(
        self,
        remote: PeerId,
        outgoing: trio.MemorySendChannel[bytes],
        incoming: trio.MemoryReceiveChannel[bytes],
        channel: SecureChannel | None,
        max_message: int,
        remote_address: str | None,
    ) -> None:
        self.remote = remote
        self.remote_address = remote_address
        self._outgoing = outgoing
        self._incoming = incoming
        self._channel = channel
        self._max_message = max_message
        self._closed: str | None = None

    def __repr__(self) -> str:
        return f"<MemoryLink to {self.remote.short}>"

    @property
    def encrypted(self) -> bool:
        """Whether messages pass through a real SecureChannel."""
        return self._channel is not None

    async def send(self, message: bytes) -> None:
        if self._closed is not None:
            raise LinkClosed(self._closed)
        if len(message) > self._max_message:
            raise FrameTooLarge(
                f"message of {len(message)} bytes, over the {self._max_message} byte link limit"
            )
        if self._channel is None:
            frame = bytes(message)
        else:
            try:
                frame = self._channel.seal(message)
            except LinkError as exc:
                self._shut(f"link worn out: {exc}")
                raise LinkClosed(self._closed or "closed") from None
        try:
            await self._outgoing.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._shut("closed by the peer")
            raise LinkClosed(self._closed or "closed") from None
        except trio.Cancelled:
            if self._channel is not None:  # a sealed frame was spent but not delivered
                self._shut("a send was cancelled mid-frame")
            raise

    async def receive(self) -> bytes:
        if self._closed is not None:
            raise LinkClosed(self._closed)
        try:
            frame = await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self._shut("closed by the peer")
            raise LinkClosed(self._closed or "closed") from None
        if self._channel is None:
            return frame
        try:
            return self._channel.open(frame)
        except LinkError as exc:
            self._shut(str(exc))
            raise LinkClosed(self._closed or "closed") from None

    async def aclose(self) -> None:
        self._shut("closed by this node")
        await trio.lowlevel.checkpoint()

    def _shut(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
        self._outgoing.close()
        self._incoming.close()


def memory_link_pair(
    a: Identity,
    b: Identity,
    *,
    encrypted: bool = False,
    network: str = "lightbox-sim",
    buffer: int | float = 16,
    max_message: int = MAX_MESSAGE,
    a_address: str | None = None,
    b_address: str | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> tuple[MemoryLink, MemoryLink]:
    """A connected pair of links: the first is `a`'s end (its remote is `b`), the second `b`'s.

    No I/O and no clock, so it works under `trio.testing.MockClock`. With `encrypted=True`
    the real handshake runs (synchronously; it is pure) and every message is sealed and
    opened by a real `SecureChannel`, so simulations exercise the same crypto; it is off by
    default for speed. `buffer` is the number of messages in flight each way before `send`
    waits. `a_address` is what `b`'s end reports as its `remote_address`, and vice versa.
    """
    if a.peer_id == b.peer_id:
        raise HandshakeFailed(HandshakeFailure.SELF_CONNECTION, "a link needs two identities")
    a_to_b_send, a_to_b_receive = trio.open_memory_channel[bytes](buffer)
    b_to_a_send, b_to_a_receive = trio.open_memory_channel[bytes](buffer)
    channel_a = channel_b = None
    if encrypted:
        initiator = InitiatorHandshake(a, network, b.peer_id, random_bytes=random_bytes)
        responder = ResponderHandshake(b, network, random_bytes=random_bytes)
        finish, result_a = initiator.receive_reply(responder.receive_hello(initiator.hello()))
        result_b = responder.receive_finish(finish)
        channel_a = SecureChannel(result_a.send_key, result_a.receive_key, max_message=max_message)
        channel_b = SecureChannel(result_b.send_key, result_b.receive_key, max_message=max_message)
    end_a = MemoryLink(b.peer_id, a_to_b_send, b_to_a_receive, channel_a, max_message, b_address)
    end_b = MemoryLink(a.peer_id, b_to_a_send, a_to_b_receive, channel_b, max_message, a_address)
    return end_a, end_b


# -- helpers --------------------------------------------------------------------------------


def _with_link_path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path=LINK_PATH)
    return urllib.parse.urlunsplit(parts)


def _dial_failure(url: str, group: BaseExceptionGroup[Any]) -> BaseException:
    matched, rest = group.split((ValueError, *_TRANSPORT_ERRORS))
    if rest is not None or matched is None:
        return group
    first = matched.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return DialFailed(f"could not open a link to {url}: {first!r}")


async def _close_websocket(
    websocket: WebSocketConnection, code: int, reason: str | None, limits: LinkLimits
) -> None:
    """Close, waiting at most `close_timeout` for the peer's half of the closing handshake.

    From a cancelled task the close is forceful instead: the socket is closed at once. A
    cancellation that arrives while waiting also cuts the wait short (trio-websocket closes
    the socket on its way out).
    """
    if reason is not None:
        reason = reason.encode()[:123].decode(errors="ignore")  # a close frame's limit
    cancelled = trio.current_effective_deadline() == -math.inf
    with (
        trio.CancelScope(shield=cancelled),
        trio.move_on_after(0 if cancelled else limits.close_timeout),
        contextlib.suppress(*_TRANSPORT_ERRORS),
    ):
        await websocket.aclose(code, reason)


def _close_reason_text(exc: HandshakeFailed) -> str:
    """`<reason>: <detail>`, cut to the 123 bytes a WebSocket close frame allows."""
    return f"{exc.reason}: {exc.detail}"


def _refusal(url: str, close: CloseReason | None) -> HandshakeFailed:
    """The responder closed during the handshake; keep its reason if it gave a known one."""
    words, _ = _describe_close(close)
    if close is not None and close.code in (
        CloseCode.HANDSHAKE_FAILED,
        CloseCode.HANDSHAKE_TIMEOUT,
    ):
        code, _, detail = (close.reason or "").partition(": ")
        if code in _FAILURE_CODES:
            return HandshakeFailed(HandshakeFailure(code), f"{url} refused the link: {detail}")
    return HandshakeFailed(HandshakeFailure.CLOSED, f"{url} closed during the handshake: {words}")


def _describe_close(close: CloseReason | None) -> tuple[str, int]:
    """Words for a WebSocket close, and the log level it deserves."""
    if close is None:
        return "connection lost", logging.INFO
    name = CloseCode(close.code).name if close.code in _CLOSE_CODES else close.name
    text = f"{close.code} {name}" + (f": {close.reason}" if close.reason else "")
    if close.code == CloseCode.NORMAL:
        return f"closed by the peer ({text})", logging.DEBUG
    if close.code == 1006:
        return f"connection lost ({text})", logging.INFO
    if close.code == 1009:
        return f"message too big ({text})", logging.WARNING
    return f"closed by the peer ({text})", logging.WARNING


def _endpoint_text(endpoint: Any) -> str | None:
    address = getattr(endpoint, "address", None)
    port = getattr(endpoint, "port", None)
    if address is None or port is None:
        return str(endpoint) if endpoint else None
    text = str(address)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _socket_address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown address"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


__all__ = [
    "DEFAULT_LINK_LIMITS",
    "LINK_PATH",
    "CloseCode",
    "LinkLimits",
    "MemoryLink",
    "PeerLink",
    "WebSocketLink",
    "dial",
    "memory_link_pair",
    "serve_links",
]
