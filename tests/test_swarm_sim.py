"""Many swarms in one process under MockClock: records converge, the dead are dropped."""

from __future__ import annotations

import contextlib
import random

import trio
import trio.testing

from lightbox_node.identity import Identity
from lightbox_node.net.errors import LinkClosed
from lightbox_node.net.link import memory_link_pair
from lightbox_node.swarm import SwarmParams
from lightbox_node.wire import pack
from tests.swarm_sim import SimNetwork

PARAMS = SwarmParams(record_ttl_s=30.0, target_links=6)


async def wait_until(predicate, timeout: float, step: float = 1.0) -> float:
    """Virtual seconds it took for `predicate()` to hold; fails after `timeout`."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)
    return trio.current_time() - start


async def test_every_record_reaches_every_node_of_200(autojump_clock: trio.testing.MockClock):
    net = SimNetwork(200, seed=1, params=PARAMS)
    async with trio.open_nursery() as nursery:
        await net.run(nursery)
        took = await wait_until(net.all_hold_everyone, timeout=120)
        assert took < 60
        nursery.cancel_scope.cancel()


async def test_a_killed_node_is_dropped_by_every_node_within_the_record_lifetime(
    autojump_clock: trio.testing.MockClock,
):
    net = SimNetwork(60, seed=2, params=PARAMS)
    async with trio.open_nursery() as nursery:
        await net.run(nursery)
        await wait_until(net.all_hold_everyone, timeout=120)
        victim = net.identities[7].peer_id
        net.kill(7)
        took = await wait_until(lambda: net.holders_of(victim) == 0, timeout=120)
        # Its record expires where nobody republishes it: one lifetime plus propagation.
        assert took <= PARAMS.record_ttl_s + 2
        assert net.all_hold_everyone()  # nobody else was lost along the way
        nursery.cancel_scope.cancel()


async def test_a_partitioned_half_catches_up_after_healing(
    autojump_clock: trio.testing.MockClock,
):
    net = SimNetwork(60, seed=3, params=PARAMS)
    half = range(30, 60)
    async with trio.open_nursery() as nursery:
        await net.run(nursery)
        await wait_until(net.all_hold_everyone, timeout=120)
        net.split(half)
        far = net.identities[45].peer_id
        # The other half's records expire on this side while the partition lasts.
        await wait_until(lambda: net.holders_of(far, among=range(30)) == 0, timeout=120)
        net.heal()
        took = await wait_until(net.all_hold_everyone, timeout=240)
        assert took <= PARAMS.explore_every_s * 2 + 30
        nursery.cancel_scope.cancel()


async def test_a_node_sending_invalid_records_is_cut_off_while_honest_records_converge(
    autojump_clock: trio.testing.MockClock,
):
    net = SimNetwork(40, seed=4, params=PARAMS)
    attacker = Identity.from_seed(b"\xee" * 32)

    async def attack(target: int) -> None:
        rng = random.Random(target)
        for _ in range(5):  # keeps coming back after each cut
            mine, theirs = memory_link_pair(attacker, net.identities[target])
            net.swarms[target].adopt(theirs)
            with contextlib.suppress(LinkClosed):
                while True:
                    forged = bytes(rng.randrange(256) for _ in range(200))
                    await mine.send(pack(["gossip", ["m", [forged]]]))
                    await trio.sleep(0.01)
            await trio.sleep(2)

    async def relink_is_refused(target: int) -> bool:
        mine, theirs = memory_link_pair(attacker, net.identities[target])
        net.swarms[target].adopt(theirs)
        with trio.move_on_after(5):
            try:
                await mine.receive()
            except LinkClosed:
                return True
        return False

    async with trio.open_nursery() as nursery:
        await net.run(nursery)
        for target in range(0, 40, 4):
            nursery.start_soon(attack, target)
        await trio.sleep(30)
        for i in range(0, 40, 4):
            assert attacker.peer_id not in net.swarms[i].linked_peers
            assert not net.swarms[i].scores.accepts(attacker.peer_id, trio.current_time())
            assert await relink_is_refused(i)
        await wait_until(net.all_hold_everyone, timeout=60)
        assert net.holders_of(attacker.peer_id) == 0
        nursery.cancel_scope.cancel()
