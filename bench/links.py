"""Sealed peer links vs raw trio-websocket: messages per second over loopback, side by side.

Each round sends a burst of binary messages one way over 127.0.0.1 and times it until the
receiver acknowledges the last one; client and server share this one trio process, as two
nodes on one machine would share a CPU. The two transports are measured in interleaved
rounds and the median is reported, so drift in machine load hits both alike. The link side
pays for the XChaCha20-Poly1305 seal and open of every message (the handshake is done
before timing starts); the raw side is the same trio-websocket without them.

Run: .venv/bin/python bench/links.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time

import trio
import trio_websocket

from lightbox_node.identity import Identity
from lightbox_node.net import LinkLimits, PeerLink, dial, serve_links

NETWORK = "lightbox-bench"
SIZES = [(1 << 10, 20_000), (64 << 10, 1_000)]  # (message bytes, messages per round)
DONE = b"done"


async def _count_then_ack(receive, send, count: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(count):
        await receive()
    await send(DONE)


async def _burst(send, receive, message: bytes, count: int) -> float:  # type: ignore[no-untyped-def]
    """Messages per second for one burst of `count` messages."""
    started = time.perf_counter()
    for _ in range(count):
        await send(message)
    assert await receive() == DONE
    return count / (time.perf_counter() - started)


async def main(rounds: int) -> None:
    server_identity, client_identity = Identity.generate(), Identity.generate()
    limits = LinkLimits(max_message=max(size for size, _ in SIZES))
    plan: list[int] = []  # per connection, how many messages each round will bring

    async def link_handler(link: PeerLink) -> None:
        for count in plan:
            await _count_then_ack(link.receive, link.send, count)

    async def raw_handler(request: trio_websocket.WebSocketRequest) -> None:
        websocket = await request.accept()
        for count in plan:
            await _count_then_ack(websocket.get_message, websocket.send_message, count)

    plan += [count for _, count in SIZES for _ in range(rounds)]

    link_rates: dict[int, list[float]] = {size: [] for size, _ in SIZES}
    raw_rates: dict[int, list[float]] = {size: [] for size, _ in SIZES}
    async with trio.open_nursery() as nursery:
        link_port = await nursery.start(
            functools.partial(
                serve_links, link_handler, "127.0.0.1", 0, server_identity, NETWORK, limits=limits
            )
        )
        raw_server = await nursery.start(
            functools.partial(
                trio_websocket.serve_websocket,
                raw_handler,
                "127.0.0.1",
                0,
                None,
                max_message_size=limits.max_message,
                message_queue_size=limits.receive_queue,
            )
        )
        link = await dial(
            nursery,
            f"ws://127.0.0.1:{link_port}",
            client_identity,
            NETWORK,
            server_identity.peer_id,
            limits=limits,
        )
        raw = await trio_websocket.connect_websocket_url(
            nursery,
            f"ws://127.0.0.1:{raw_server.port}/",
            max_message_size=limits.max_message,
            message_queue_size=limits.receive_queue,
        )
        for size, count in SIZES:
            message = bytes(size)
            for _ in range(rounds):
                link_rates[size].append(await _burst(link.send, link.receive, message, count))
                raw_rates[size].append(
                    await _burst(raw.send_message, raw.get_message, message, count)
                )
        await link.aclose()
        await raw.aclose()
        nursery.cancel_scope.cancel()

    print(f"peer links vs raw trio-websocket, loopback, one process; median of {rounds} rounds")
    print(f"python {platform.python_version()}, trio {trio.__version__}, {platform.machine()}")
    header = f"{'message':>8}  {'link msg/s':>11}  {'raw msg/s':>11}  {'link/raw':>8}"
    print(header + f"  {'link MB/s':>9}  {'raw MB/s':>9}")
    for size, _ in SIZES:
        link_rate = statistics.median(link_rates[size])
        raw_rate = statistics.median(raw_rates[size])
        print(
            f"{size // 1024:>5} KiB  {link_rate:>11,.0f}  {raw_rate:>11,.0f}  "
            f"{link_rate / raw_rate:>8.2f}  {link_rate * size / 1e6:>9.1f}  "
            f"{raw_rate * size / 1e6:>9.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    trio.run(main, parser.parse_args().rounds)
