"""Swarms with blob exchanges over in-memory links, for the blob tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from lightbox_node.blobs import PROTOCOL, BlobExchange, ExchangeLimits
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net.link import memory_link_pair
from lightbox_node.store import BlobStore
from lightbox_node.swarm import Swarm


@dataclass
class Node:
    identity: Identity
    swarm: Swarm
    exchange: BlobExchange

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    @property
    def store(self) -> BlobStore:
        return self.exchange.store

    def score_of(self, other: Node) -> float:
        return self.swarm.scores.score(other.peer_id, trio.current_time())


async def start(
    nursery: trio.Nursery,
    root: Path,
    name: str,
    cls: type[BlobExchange] = BlobExchange,
    limits: ExchangeLimits | None = None,
) -> Node:
    identity = Identity.from_seed(name.encode().ljust(32, b"."))
    swarm = Swarm(identity, network="lightbox-test", roles=("queue",), version="test")
    await nursery.start(swarm.run)
    exchange = cls(swarm, BlobStore(root / name), limits=limits)
    await nursery.start(exchange.run)
    swarm.register(PROTOCOL, exchange)
    return Node(identity, swarm, exchange)


def link(a: Node, b: Node) -> None:
    end_a, end_b = memory_link_pair(a.identity, b.identity)
    a.swarm.adopt(end_a)
    b.swarm.adopt(end_b)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.01)


async def linked(a: Node, *others: Node) -> None:
    await eventually(lambda: all(o.peer_id in a.swarm.linked_peers for o in others))


def staging_files(node: Node) -> list[Path]:
    staging = node.store.root / "staging"
    return sorted(staging.glob("*")) if staging.is_dir() else []
