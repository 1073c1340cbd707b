"""WebSocket links on 127.0.0.1: a live server keeps serving good peers whatever others send."""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio_websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net_support import (
    NETWORK,
    close_code,
    raw_handshake,
    raw_websocket,
)

from lightbox_node.errors import FrameTooLarge
from lightbox_node.identity import Identity
from lightbox_node.net import (
    LINK_PATH,
    CloseCode,
    DialFailed,
    HandshakeFailed,
    HandshakeFailure,
    LinkClosed,
    LinkLimits,
    PeerLink,
    WebSocketLink,
    dial,
    serve_links,
)
from lightbox_node.net.channel import TAG_LEN
from lightbox_node.net.handshake import InitiatorHandshake
from lightbox_node.wire import pack, unpack

pytestmark = pytest.mark.slow

HANDSHAKE_TIMEOUT = 0.5
MESSAGE_TOO_BIG = 1009


@dataclass
class Server:
    identity: Identity
    port: int
    url: str


async def _echo(link: PeerLink) -> None:
    while True:
        await link.send(await link.receive())


async def _start_server(
    nursery: trio.Nursery,
    who: Identity,
    handler: Callable[[PeerLink], Awaitable[None]] = _echo,
    **options: object,
) -> Server:
    options.setdefault("handshake_timeout", HANDSHAKE_TIMEOUT)
    port = await nursery.start(
        functools.partial(serve_links, handler, "127.0.0.1", 0, who, NETWORK, **options)
    )
    return Server(who, port, f"ws://127.0.0.1:{port}{LINK_PATH}")


@pytest.fixture
async def server(nursery: trio.Nursery, bob: Identity) -> Server:
    return await _start_server(nursery, bob)


@pytest.fixture
async def good_peer(nursery: trio.Nursery, server: Server, alice: Identity) -> WebSocketLink:
    return await dial(nursery, server.url, alice, NETWORK, server.identity.peer_id)


async def _exchange(link: PeerLink, rounds: int = 3) -> None:
    for i in range(rounds):
        message = b"good message %d" % i
        await link.send(message)
        assert await link.receive() == message


def _net_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.name == "lightbox.net" and record.levelno >= logging.WARNING
    ]
    assert all("\n" not in line for line in lines), "a log record must be one line"
    return lines


# -- a good peer ---------------------------------------------------------------------------


async def test_a_good_peer_exchanges_messages_over_a_live_link(
    server: Server, good_peer: WebSocketLink
) -> None:
    assert good_peer.remote == server.identity.peer_id
    assert good_peer.remote_address == f"127.0.0.1:{server.port}"
    await _exchange(good_peer, rounds=20)
    big = bytes(range(256)) * 4096  # exactly the 1 MiB limit
    await good_peer.send(big)
    assert await good_peer.receive() == big


async def test_the_handler_gets_the_dialers_proven_peer_id_and_address(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    seen: list[tuple[object, str | None]] = []

    async def greet(link: PeerLink) -> None:
        seen.append((link.remote, link.remote_address))
        await link.send(b"welcome")

    server = await _start_server(nursery, bob, greet)
    link = await dial(nursery, f"ws://127.0.0.1:{server.port}", alice, NETWORK, bob.peer_id)
    assert await link.receive() == b"welcome"
    (remote, address), *_ = seen
    assert remote == alice.peer_id
    assert address is not None and address.startswith("127.0.0.1:")


async def test_the_server_closes_the_link_when_the_handler_returns(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    async def say_bye(link: PeerLink) -> None:
        await link.send(b"bye")

    server = await _start_server(nursery, bob, say_bye)
    link = await dial(nursery, server.url, alice, NETWORK, bob.peer_id)
    assert await link.receive() == b"bye"
    with pytest.raises(LinkClosed, match="closed by the peer"):
        await link.receive()
    with pytest.raises(LinkClosed):
        await link.send(b"too late")


async def test_closing_a_dialled_link_ends_the_handlers_receive(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    ended = trio.Event()

    async def wait_for_close(link: PeerLink) -> None:
        with pytest.raises(LinkClosed):
            await link.receive()
        ended.set()

    server = await _start_server(nursery, bob, wait_for_close)
    link = await dial(nursery, server.url, alice, NETWORK, bob.peer_id)
    await link.aclose()
    await link.aclose()  # idempotent
    with trio.fail_after(5):
        await ended.wait()
    with pytest.raises(LinkClosed, match="closed by this node"):
        await link.receive()


async def test_one_task_can_send_while_another_receives(
    server: Server, good_peer: WebSocketLink
) -> None:
    messages = [b"%d" % i * (i % 50) for i in range(300)]
    received: list[bytes] = []

    async def receive_all() -> None:
        for _ in messages:
            received.append(await good_peer.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_all)
        for message in messages:
            await good_peer.send(message)
    assert received == messages


async def test_concurrent_senders_on_one_link_keep_each_senders_order(
    server: Server, good_peer: WebSocketLink
) -> None:
    senders, per_sender = 8, 50
    received: list[bytes] = []

    async def send_all(sender: int) -> None:
        for i in range(per_sender):
            await good_peer.send(b"%d:%d" % (sender, i))

    async with trio.open_nursery() as nursery:
        for sender in range(senders):
            nursery.start_soon(send_all, sender)
        for _ in range(senders * per_sender):
            received.append(await good_peer.receive())
    for sender in range(senders):
        mine = [m for m in received if m.startswith(b"%d:" % sender)]
        assert mine == [b"%d:%d" % (sender, i) for i in range(per_sender)]


async def test_an_oversized_message_is_refused_before_sending_and_the_link_stays_usable(
    server: Server, good_peer: WebSocketLink
) -> None:
    with pytest.raises(FrameTooLarge):
        await good_peer.send(b"x" * ((1 << 20) + 1))
    await _exchange(good_peer)


async def test_a_handler_failing_with_a_lightbox_error_ends_only_its_own_link(
    nursery: trio.Nursery,
    alice: Identity,
    bob: Identity,
    mallory: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def picky(link: PeerLink) -> None:
        if link.remote == mallory.peer_id:
            raise FrameTooLarge("pretend the first message was too large")
        await _echo(link)

    server = await _start_server(nursery, bob, picky)
    good_peer = await dial(nursery, server.url, alice, NETWORK, bob.peer_id)
    rejected = await dial(nursery, server.url, mallory, NETWORK, bob.peer_id)
    with pytest.raises(LinkClosed):
        await rejected.receive()
    await _exchange(good_peer)
    (line,) = _net_warnings(caplog)
    assert "pretend" in line and str(mallory.peer_id) in line


async def test_a_handler_whose_own_tasks_see_the_link_close_does_not_disturb_the_server(
    nursery: trio.Nursery, alice: Identity, bob: Identity, mallory: Identity
) -> None:
    """LinkClosed out of a handler's nursery arrives in an exception group; still not a crash."""

    async def two_tasks(link: PeerLink) -> None:
        async with trio.open_nursery() as tasks:
            tasks.start_soon(_echo, link)
            tasks.start_soon(_echo, link)

    server = await _start_server(nursery, bob, two_tasks)
    good_peer = await dial(nursery, server.url, alice, NETWORK, bob.peer_id)
    leaver = await dial(nursery, server.url, mallory, NETWORK, bob.peer_id)
    await _exchange(leaver, rounds=1)
    await leaver.aclose()
    await trio.sleep(0.05)
    await _exchange(good_peer)


# -- dialling failures ---------------------------------------------------------------------


async def test_dialling_the_wrong_peer_id_fails_before_signing_anything(
    nursery: trio.Nursery, server: Server, alice: Identity, mallory: Identity
) -> None:
    with pytest.raises(HandshakeFailed) as caught:
        await dial(nursery, server.url, alice, NETWORK, mallory.peer_id)
    assert caught.value.reason is HandshakeFailure.UNEXPECTED_PEER


async def test_dialling_with_another_network_name_fails_and_both_sides_say_why(
    nursery: trio.Nursery, server: Server, alice: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(HandshakeFailed) as caught:
        await dial(nursery, server.url, alice, "lightbox-elsewhere", server.identity.peer_id)
    assert caught.value.reason is HandshakeFailure.WRONG_NETWORK
    assert "lightbox-elsewhere" in str(caught.value)
    (line,) = _net_warnings(caplog)
    assert "wrong-network" in line and "127.0.0.1:" in line


async def test_dialling_a_port_with_no_listener_fails_with_dial_failed(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DialFailed, match="could not open a link"):
        await dial(nursery, f"ws://127.0.0.1:{port}", alice, NETWORK, bob.peer_id)


async def test_dialling_something_that_is_not_a_websocket_url_fails_with_dial_failed(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    with pytest.raises(DialFailed, match="ws:"):
        await dial(nursery, "http://127.0.0.1:1/", alice, NETWORK, bob.peer_id)


async def test_dialling_another_path_is_rejected(
    nursery: trio.Nursery, server: Server, alice: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(DialFailed, match="404"):
        await dial(
            nursery, f"ws://127.0.0.1:{server.port}/other", alice, NETWORK, server.identity.peer_id
        )
    (line,) = _net_warnings(caplog)
    assert "/other" in line


async def test_dialling_a_listener_that_never_answers_times_out(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    with trio.fail_after(5), pytest.raises(DialFailed, match="no answer"):
        await dial(
            nursery, f"ws://127.0.0.1:{port}", alice, NETWORK, bob.peer_id, handshake_timeout=0.3
        )
    await listener.aclose()


async def test_dialling_a_websocket_that_never_replies_times_out(
    nursery: trio.Nursery, alice: Identity, bob: Identity
) -> None:
    async def silent(request: trio_websocket.WebSocketRequest) -> None:
        await request.accept()
        await trio.sleep_forever()

    ws_server = await nursery.start(trio_websocket.serve_websocket, silent, "127.0.0.1", 0, None)
    with trio.fail_after(5), pytest.raises(HandshakeFailed) as caught:
        await dial(
            nursery, f"ws://127.0.0.1:{ws_server.port}", alice, NETWORK, bob.peer_id,
            handshake_timeout=0.3,
        )  # fmt: skip
    assert caught.value.reason is HandshakeFailure.TIMEOUT


# -- misbehaving clients: the server stays up ----------------------------------------------


async def test_clients_stalling_the_handshake_are_closed_after_the_timeout(
    server: Server,
    good_peer: WebSocketLink,
    mallory: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stall_before_hello() -> None:
        async with raw_websocket(server.url) as websocket:
            assert await close_code(websocket) == CloseCode.HANDSHAKE_TIMEOUT

    async def stall_after_hello() -> None:
        async with raw_websocket(server.url) as websocket:
            await websocket.send_message(InitiatorHandshake(mallory, NETWORK).hello())
            assert await close_code(websocket) == CloseCode.HANDSHAKE_TIMEOUT

    async def stall_before_the_upgrade() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        with contextlib.suppress(trio.BrokenResourceError):  # a reset is as good as a close
            assert await stream.receive_some() == b""

    started = trio.current_time()
    with trio.fail_after(5 * HANDSHAKE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stall_before_hello)
            nursery.start_soon(stall_after_hello)
            nursery.start_soon(stall_before_the_upgrade)
            await _exchange(good_peer)  # served while the others stall
    assert trio.current_time() - started >= HANDSHAKE_TIMEOUT * 0.9
    await _exchange(good_peer)
    lines = _net_warnings(caplog)
    assert sum("timeout" in line for line in lines) == 2
    assert sum("no WebSocket upgrade" in line for line in lines) == 1
    assert any(str(mallory.peer_id) in line for line in lines)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00" * 40, b"GET / HTTP/1.1", pack(["hello", 1]), "a text message"],
    ids=["empty", "zeros", "http", "short-hello", "text"],
)
async def test_a_client_sending_garbage_as_its_hello_is_refused(
    server: Server,
    good_peer: WebSocketLink,
    garbage: bytes | str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raw_websocket(server.url) as websocket:
        await websocket.send_message(garbage)
        assert await close_code(websocket) == CloseCode.HANDSHAKE_FAILED
    await _exchange(good_peer)
    (line,) = _net_warnings(caplog)
    assert "malformed" in line and "127.0.0.1:" in line


async def test_garbage_instead_of_a_websocket_upgrade_is_dropped(
    server: Server, good_peer: WebSocketLink
) -> None:
    for junk in [b"\x16\x03\x01\x02\x00" + bytes(200), b"NOT HTTP AT ALL\r\n\r\n"]:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(junk)
        with trio.fail_after(5):
            try:
                while await stream.receive_some():
                    pass
            except trio.BrokenResourceError:
                pass
        await stream.aclose()
    await _exchange(good_peer)


async def test_a_forged_finish_is_refused(
    server: Server,
    good_peer: WebSocketLink,
    mallory: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raw_websocket(server.url) as websocket:
        initiator = InitiatorHandshake(mallory, NETWORK, server.identity.peer_id)
        await websocket.send_message(initiator.hello())
        finish, _ = initiator.receive_reply(await websocket.get_message())
        await websocket.send_message(pack([unpack(finish)[0], bytes(64)]))
        assert await close_code(websocket) == CloseCode.HANDSHAKE_FAILED
    await _exchange(good_peer)
    (line,) = _net_warnings(caplog)
    assert "bad-signature" in line and str(mallory.peer_id) in line


async def test_a_replayed_data_frame_closes_only_that_link(
    server: Server,
    good_peer: WebSocketLink,
    mallory: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with raw_websocket(server.url) as websocket:
        channel = await raw_handshake(websocket, mallory, server.identity.peer_id)
        frame = channel.seal(b"transfer 10 credits")
        await websocket.send_message(frame)
        assert channel.open(await websocket.get_message()) == b"transfer 10 credits"
        await websocket.send_message(frame)  # the same bytes again
        assert await close_code(websocket) == CloseCode.BAD_FRAME
    await _exchange(good_peer)
    (line,) = _net_warnings(caplog)
    assert "not-authentic" in line and str(mallory.peer_id) in line


async def test_a_text_message_on_an_open_link_closes_it(
    server: Server, good_peer: WebSocketLink, mallory: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_websocket(server.url) as websocket:
        await raw_handshake(websocket, mallory, server.identity.peer_id)
        await websocket.send_message("{}")
        assert await close_code(websocket) == CloseCode.BAD_FRAME
    await _exchange(good_peer)
    (line,) = _net_warnings(caplog)
    assert "not-binary" in line


async def test_a_message_over_the_size_limit_closes_the_link_unread(
    nursery: trio.Nursery,
    bob: Identity,
    alice: Identity,
    mallory: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await _start_server(nursery, bob, limits=LinkLimits(max_message=1000))
    good_peer = await dial(nursery, server.url, alice, NETWORK, bob.peer_id)
    async with raw_websocket(server.url) as websocket:
        await raw_handshake(websocket, mallory, bob.peer_id)
        await websocket.send_message(b"\x00" * (1000 + TAG_LEN + 1))
        assert await close_code(websocket) == MESSAGE_TOO_BIG
    await _exchange(good_peer)
    (line,) = _net_warnings(caplog)
    assert "too big" in line and str(mallory.peer_id) in line


# -- fuzzing a live server -----------------------------------------------------------------

# An op is (kind, payload, position, text). Most ops are valid frames, which the server must
# echo; the rest are faults, each of which must close that connection with the right code.
_VALID, _FLIP, _REPLAY, _DROP, _GARBAGE, _TEXT, _TRUNCATE, _BAD_HELLO = range(8)
_KIND_BY_ROLL = [_VALID] * 90 + [_FLIP, _FLIP, _REPLAY, _DROP, _GARBAGE, _GARBAGE]
_KIND_BY_ROLL += [_TEXT, _TRUNCATE, _BAD_HELLO, _BAD_HELLO]
_ops = st.tuples(
    st.integers(0, len(_KIND_BY_ROLL) - 1).map(_KIND_BY_ROLL.__getitem__),
    st.binary(max_size=48),
    st.integers(0, 1 << 16),
    st.text(max_size=8),
)
FUZZ_EXAMPLES = 40
FUZZ_OPS_PER_EXAMPLE = 250  # 40 x 250 = 10,000 frames


@dataclass
class _Tally:
    frames: int = 0
    faults: int = 0
    connections: int = 0
    codes: list[int | None] = field(default_factory=list)


async def _play(url: str, attacker: Identity, server: Identity, ops: list, tally: _Tally) -> None:
    """Send every op; after each fault, check the close code and reconnect."""
    index = 0
    while index < len(ops):
        tally.connections += 1
        async with raw_websocket(url) as websocket:
            kind, payload, _, _ = ops[index]
            if kind == _BAD_HELLO:
                index += 1
                tally.frames += 1
                tally.faults += 1
                await websocket.send_message(payload)
                tally.codes.append(await close_code(websocket))
                assert tally.codes[-1] == CloseCode.HANDSHAKE_FAILED
                continue
            channel = await raw_handshake(websocket, attacker, server.peer_id)
            previous: bytes | None = None
            while index < len(ops):
                kind, payload, position, text = ops[index]
                index += 1
                tally.frames += 1
                if kind == _VALID:
                    previous = channel.seal(payload)
                    await websocket.send_message(previous)
                    assert channel.open(await websocket.get_message()) == payload
                    continue
                if kind == _FLIP:
                    frame = bytearray(channel.seal(payload))
                    frame[position % len(frame)] ^= 1 << (position % 8)
                    await websocket.send_message(bytes(frame))
                elif kind == _REPLAY:
                    await websocket.send_message(previous or b"")
                elif kind == _DROP:
                    channel.seal(b"never sent")
                    await websocket.send_message(channel.seal(payload))
                elif kind in (_GARBAGE, _BAD_HELLO):
                    await websocket.send_message(payload)
                elif kind == _TEXT:
                    await websocket.send_message(text)
                elif kind == _TRUNCATE:
                    frame = channel.seal(payload)
                    await websocket.send_message(frame[: position % len(frame)])
                tally.faults += 1
                tally.codes.append(await close_code(websocket))
                assert tally.codes[-1] == CloseCode.BAD_FRAME
                break


async def test_the_server_survives_ten_thousand_fuzzed_frames_and_keeps_serving(
    server: Server,
    good_peer: WebSocketLink,
    mallory: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="lightbox.net")
    tally = _Tally()
    fuzzing_done = trio.Event()
    good_rounds = 0

    async def keep_talking() -> None:
        nonlocal good_rounds
        while not fuzzing_done.is_set():
            await _exchange(good_peer, rounds=1)
            good_rounds += 1
            await trio.sleep(0.01)

    def fuzz_from_a_thread() -> None:
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(_ops, min_size=FUZZ_OPS_PER_EXAMPLE, max_size=FUZZ_OPS_PER_EXAMPLE))
        def example(ops: list) -> None:
            trio.from_thread.run(_play, server.url, mallory, server.identity, ops, tally)

        example()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_talking)
        await trio.to_thread.run_sync(fuzz_from_a_thread)
        fuzzing_done.set()
    await _exchange(good_peer)

    assert tally.frames >= 10_000
    assert tally.faults > 100
    assert good_rounds > 10
    assert len(_net_warnings(caplog)) == tally.faults
