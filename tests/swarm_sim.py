"""A whole network of swarms in one process: memory links, virtual time, scripted failures."""

from __future__ import annotations

import random
from collections.abc import Iterable

import trio

from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.discovery import PeerHint
from lightbox_node.net.errors import DialFailed
from lightbox_node.net.link import PeerLink, memory_link_pair
from lightbox_node.swarm import Swarm, SwarmParams

BASE_WALL_MS = 1_800_000_000_000


def sim_url(index: int) -> str:
    return f"ws://node{index}.sim:7450"


class SimNetwork:
    """N swarms linked through memory pairs; a node can be killed or the network split."""

    def __init__(self, size: int, *, seed: int, params: SwarmParams, bootstrap: int = 2) -> None:
        self.rng = random.Random(seed)
        self.identities = [
            Identity.from_seed(seed.to_bytes(4, "big") + i.to_bytes(28, "big")) for i in range(size)
        ]
        self.index = {sim_url(i): i for i in range(size)}
        self.by_peer = {ident.peer_id: i for i, ident in enumerate(self.identities)}
        self.alive = [True] * size
        self.side: list[int] = [0] * size
        self.scopes: list[trio.CancelScope] = [trio.CancelScope() for _ in range(size)]
        self.swarms = [
            Swarm(
                ident,
                network="lightbox-sim",
                roles=("queue", "gpu"),
                version="sim",
                dialer=self._dialer_for(i),
                params=params,
                rng=random.Random(self.rng.random()),
                wall_ms=lambda: BASE_WALL_MS + int(trio.current_time() * 1000),
            )
            for i, ident in enumerate(self.identities)
        ]
        for i, swarm in enumerate(self.swarms):
            swarm.addresses = (sim_url(i),)
            others = [j for j in range(size) if j != i]
            chosen = self.rng.sample(others, min(bootstrap, len(others)))
            swarm.add_hints(
                [PeerHint(sim_url(j), self.identities[j].peer_id) for j in chosen], pinned=True
            )

    def _dialer_for(self, i: int):
        async def dial(nursery: trio.Nursery, hint: PeerHint) -> PeerLink:
            j = self.index.get(hint.url)
            if j is None or not self.alive[j] or self.side[i] != self.side[j]:
                raise DialFailed(f"{hint.url} unreachable")
            await trio.sleep(0.01)  # a little latency, so dials interleave
            mine, theirs = memory_link_pair(
                self.identities[i],
                self.identities[j],
                a_address=f"10.0.{i // 250}.{i % 250}:7450",
                b_address=f"10.0.{j // 250}.{j % 250}:7450",
            )
            self.swarms[j].adopt(theirs)
            return mine

        return dial

    async def run(self, nursery: trio.Nursery) -> None:
        for i in range(len(self.swarms)):
            nursery.start_soon(self._run_node, i)
        for swarm in self.swarms:
            await swarm.ready.wait()

    async def _run_node(self, i: int) -> None:
        with self.scopes[i]:
            await self.swarms[i].run()

    def kill(self, i: int) -> None:
        self.alive[i] = False
        self.scopes[i].cancel()

    def split(self, side_b: Iterable[int]) -> None:
        """Partition: links across the two sides are cut and cannot be dialled."""
        side_b = set(side_b)
        for i in range(len(self.swarms)):
            self.side[i] = 1 if i in side_b else 0
        for i, swarm in enumerate(self.swarms):
            for peer in swarm.linked_peers:
                if self.side[self.by_peer.get(peer, i)] != self.side[i]:
                    swarm.disconnect(peer, "partition")

    def heal(self) -> None:
        self.side = [0] * len(self.swarms)

    def holders_of(self, author: PeerId, among: Iterable[int] | None = None) -> int:
        """How many live nodes hold a live record of `author`."""
        indices = range(len(self.swarms)) if among is None else among
        return sum(
            1
            for i in indices
            if self.alive[i] and any(r.author == author for r in self.swarms[i].records())
        )

    def all_hold_everyone(self) -> bool:
        live = [i for i, ok in enumerate(self.alive) if ok]
        authors = {self.identities[i].peer_id for i in live}
        return all(authors <= {r.author for r in self.swarms[i].records()} for i in live)
