"""In-memory link pairs: the PeerLink contract without sockets, in virtual time."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing
from net_support import identity, seeded_random

from lightbox_node.errors import FrameTooLarge
from lightbox_node.identity import Identity
from lightbox_node.net import HandshakeFailed, LinkClosed, PeerLink, memory_link_pair


async def test_memory_links_carry_messages_in_order_both_ways(
    alice: Identity, bob: Identity
) -> None:
    to_bob, to_alice = memory_link_pair(alice, bob)
    assert isinstance(to_bob, PeerLink)
    assert (to_bob.remote, to_alice.remote) == (bob.peer_id, alice.peer_id)
    for i in range(10):
        await to_bob.send(b"%d" % i)
    assert [await to_alice.receive() for _ in range(10)] == [b"%d" % i for i in range(10)]
    await to_alice.send(b"reply")
    assert await to_bob.receive() == b"reply"


@pytest.mark.parametrize("encrypted", [False, True])
async def test_memory_links_run_in_virtual_time(
    autojump_clock: trio.testing.MockClock, alice: Identity, bob: Identity, encrypted: bool
) -> None:
    to_bob, to_alice = memory_link_pair(
        alice, bob, encrypted=encrypted, random_bytes=seeded_random("virtual")
    )
    started_wall, started_virtual = time.monotonic(), trio.current_time()

    async def slow_sender() -> None:
        for i in range(5):
            await trio.sleep(3600)
            await to_bob.send(b"hourly %d" % i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_sender)
        received = [await to_alice.receive() for _ in range(5)]
    assert received == [b"hourly %d" % i for i in range(5)]
    assert trio.current_time() - started_virtual == pytest.approx(5 * 3600)
    assert time.monotonic() - started_wall < 5


async def test_hundreds_of_nodes_pass_a_token_round_a_ring_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    nodes = [identity(f"node-{i}") for i in range(300)]
    ends = [memory_link_pair(nodes[i], nodes[(i + 1) % len(nodes)]) for i in range(len(nodes))]
    # ends[i] = (node i's link to node i+1, node i+1's link from node i)
    hops: list[int] = []

    async def node(index: int) -> None:
        inbound = ends[index - 1][1]
        outbound = ends[index][0]
        token = await inbound.receive()
        hops.append(index)
        await trio.sleep(1)  # one second of "work" per hop
        if int(token) < len(nodes):
            await outbound.send(b"%d" % (int(token) + 1))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for index in range(len(nodes)):
            nursery.start_soon(node, index)
        await ends[-1][0].send(b"1")  # the last node's link to node 0 starts the round
    assert hops == list(range(len(nodes)))
    assert trio.current_time() - start == pytest.approx(len(nodes))


async def test_encrypted_memory_links_run_the_real_handshake_and_channel(
    alice: Identity, bob: Identity
) -> None:
    to_bob, to_alice = memory_link_pair(alice, bob, encrypted=True)
    assert to_bob.encrypted and to_alice.encrypted
    await to_bob.send(b"sealed")
    assert await to_alice.receive() == b"sealed"
    plain_a, _ = memory_link_pair(alice, bob)
    assert not plain_a.encrypted


async def test_closing_one_end_ends_the_other_ends_receive(alice: Identity, bob: Identity) -> None:
    to_bob, to_alice = memory_link_pair(alice, bob)
    await to_bob.send(b"last words")
    await to_bob.aclose()
    assert await to_alice.receive() == b"last words"
    with pytest.raises(LinkClosed, match="closed by the peer"):
        await to_alice.receive()
    with pytest.raises(LinkClosed):
        await to_alice.send(b"anyone there?")
    with pytest.raises(LinkClosed, match="closed by this node"):
        await to_bob.send(b"after close")
    await to_bob.aclose()  # idempotent


async def test_a_receive_waiting_when_the_peer_closes_gets_link_closed(
    autojump_clock: trio.testing.MockClock, alice: Identity, bob: Identity
) -> None:
    to_bob, to_alice = memory_link_pair(alice, bob)

    async def close_later() -> None:
        await trio.sleep(10)
        await to_bob.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(close_later)
        with pytest.raises(LinkClosed):
            await to_alice.receive()


async def test_an_oversized_message_is_refused_and_the_link_stays_usable(
    alice: Identity, bob: Identity
) -> None:
    to_bob, to_alice = memory_link_pair(alice, bob, max_message=100)
    with pytest.raises(FrameTooLarge):
        await to_bob.send(b"x" * 101)
    await to_bob.send(b"x" * 100)
    assert await to_alice.receive() == b"x" * 100


async def test_a_full_buffer_makes_send_wait(
    autojump_clock: trio.testing.MockClock, alice: Identity, bob: Identity
) -> None:
    to_bob, _ = memory_link_pair(alice, bob, buffer=2)
    await to_bob.send(b"1")
    await to_bob.send(b"2")
    with trio.move_on_after(1) as waited:
        await to_bob.send(b"3")
    assert waited.cancelled_caught


async def test_remote_addresses_are_what_each_side_is_told(alice: Identity, bob: Identity) -> None:
    to_bob, to_alice = memory_link_pair(alice, bob, a_address="10.0.0.1:7000", b_address=None)
    assert to_alice.remote_address == "10.0.0.1:7000"
    assert to_bob.remote_address is None


def test_a_pair_needs_two_identities(alice: Identity) -> None:
    with pytest.raises(HandshakeFailed):
        memory_link_pair(alice, identity("alice"))
