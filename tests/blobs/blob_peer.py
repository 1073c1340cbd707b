"""A bare blob holder for tests and benchmarks: a swarm and a blob exchange, no full node.

Run `python -m tests.blobs.blob_peer --root DIR --seed NAME` and it listens for peer links
on 127.0.0.1, announces every blob in DIR's store, prints three lines and serves until it
is killed::

    peer id: lb1...
    p2p: ws://127.0.0.1:PORT/...
    ready: N blobs announced

`--corrupt` makes it a liar that lists true digests but sends zeroed chunks. It depends on
nothing but the swarm and the exchange, so tests of the blob protocol do not wait on (or
break with) the rest of the node.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

import trio

from lightbox_node.blobs import PROTOCOL, BlobExchange
from lightbox_node.identity import Identity
from lightbox_node.net import serve_links
from lightbox_node.net.discovery import link_url
from lightbox_node.store import BlobStore
from lightbox_node.swarm import Swarm

NETWORK = "lightbox-blob-test"


class CorruptExchange(BlobExchange):
    """Lists the true digests but sends chunks of zeros: caught at the first chunk."""

    async def _answer(self, request: Any) -> list[Any]:
        reply = await super()._answer(request)
        if reply[0] == "chunk":
            reply[3] = bytes(len(reply[3]))
        return reply


async def serve(root: Path, seed: str, corrupt: bool) -> None:
    identity = Identity.from_seed(seed.encode().ljust(32, b".")[:32])
    swarm = Swarm(identity, network=NETWORK, roles=("queue",), version="blob-peer")
    store = BlobStore(root)
    exchange = (CorruptExchange if corrupt else BlobExchange)(swarm, store)
    announced = 0
    for blob_id in await trio.to_thread.run_sync(lambda: list(store.ids())):
        exchange.announce(blob_id)
        announced += 1
    swarm.register(PROTOCOL, exchange)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            functools.partial(serve_links, swarm.serve_link, "127.0.0.1", 0, identity, NETWORK)
        )
        swarm.addresses = (link_url("127.0.0.1", port),)
        await nursery.start(swarm.run)
        await nursery.start(exchange.run)
        print(f"peer id: {identity.peer_id}", flush=True)
        print(f"p2p: {swarm.addresses[0]}", flush=True)
        print(f"ready: {announced} blobs announced", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the blob store's folder")
    parser.add_argument("--seed", required=True, help="identity seed (any text)")
    parser.add_argument("--corrupt", action="store_true", help="send zeroed chunks")
    args = parser.parse_args(argv)
    try:
        trio.run(serve, args.root, args.seed, args.corrupt)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
