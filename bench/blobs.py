"""Blob transfer over loopback peer links vs a plain file copy, MB/s side by side.

One blob (200 MiB of random bytes by default) is fetched by a `BlobExchange` in this process
from holders in other processes (`tests/blobs/blob_peer.py`: a swarm and an exchange, as
another node would run them), over sealed WebSocket links on 127.0.0.1: digest list, chunks
checked one by one, the whole hash checked, fsync and rename into the store. Beside it, in
the same rounds, the same file is copied with `shutil.copyfile` plus fsync (what the fetch
would be if network, crypto and checks were free). Rounds interleave the ways so machine
load hits all alike; medians are printed, with the ratio to the copy.

Rows: one holder in another process; two holders in other processes (chunks spread over
both); one holder in this same process (both ends share one core, as in bench/links.py).
Beside wall-clock MB/s it prints the CPU seconds each end spends per GB (this process with
its worker threads; the holder processes from /proc), which a loaded machine does not
distort: 1 / max(both) is the rate each end could reach with a core of its own.

Links read the socket `LinkLimits.read_size` bytes at a time (trio-websocket's own default
of 4 KiB halved the throughput); `--ws-receive-buffer BYTES` overrides it in this process,
the receiving end, to show what that setting is worth.

Run: .venv/bin/python bench/blobs.py [--size-mib 200] [--rounds 3] [--ws-receive-buffer N]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio_websocket._impl as trio_websocket_impl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lightbox_node.blobs import CHUNK, PROTOCOL, BlobExchange
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net import PeerLink, dial, serve_links
from lightbox_node.net.discovery import PeerHint, link_url
from lightbox_node.net.link import DEFAULT_LINK_LIMITS
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.swarm import Swarm
from tests.blobs.blob_peer import NETWORK
from tests.blobs.test_processes import PeerProcess, share

TARGET_MB_S = 200.0
COPY = "plain file copy + fsync"


def make_blob(root: Path, size: int) -> BlobId:
    store = BlobStore(root)
    piece = 8 << 20
    with store.open_writer() as writer:
        for start in range(0, size, piece):
            writer.write(os.urandom(min(piece, size - start)))
        blob_id = writer.commit()
    store.chunk_digests(blob_id, CHUNK)
    return blob_id


def copy_with_fsync(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def widen_websocket_reads(size: int) -> None:
    """The what-if: trio-websocket reads `size` bytes per receive instead of the link's."""
    original = trio_websocket_impl.WebSocketConnection.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        self._receive_buffer_size = size

    trio_websocket_impl.WebSocketConnection.__init__ = init  # type: ignore[method-assign]


Results = dict[str, list[tuple[float, float, float]]]
"""Per way, per round: (bytes per second, CPU s here, CPU s in the holder processes)."""


async def measure(size_mib: int, rounds: int, root: Path) -> Results:
    size = size_mib << 20
    print(f"making a {size_mib} MiB blob ...", file=sys.stderr)
    blob_id = await trio.to_thread.run_sync(make_blob, root / "far0", size)
    await trio.to_thread.run_sync(share, root / "far0", root / "far1", blob_id)
    await trio.to_thread.run_sync(share, root / "far0", root / "near", blob_id)
    far = [PeerProcess(root / f"far{i}", f"far{i}") for i in range(2)]
    identity = Identity.generate()
    near_identity = Identity.generate()

    async def dial_hint(nursery: trio.Nursery, hint: PeerHint) -> PeerLink:
        return await dial(nursery, hint.url, identity, NETWORK, hint.peer_id)

    swarm = Swarm(identity, network=NETWORK, roles=("queue",), version="bench", dialer=dial_hint)
    store = BlobStore(root / "fetcher")
    exchange = BlobExchange(swarm, store)
    swarm.register(PROTOCOL, exchange)
    near_swarm = Swarm(near_identity, network=NETWORK, roles=("queue",), version="bench")
    near = BlobExchange(near_swarm, BlobStore(root / "near"))
    near_swarm.register(PROTOCOL, near)
    results: Results = {}
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(
                    serve_links, near_swarm.serve_link, "127.0.0.1", 0, near_identity, NETWORK
                )
            )
            await nursery.start(near_swarm.run)
            await nursery.start(near.run)
            await nursery.start(swarm.run)
            await nursery.start(exchange.run)
            hints = [PeerHint(p.url, p.peer_id) for p in far]
            hints.append(PeerHint(link_url("127.0.0.1", port), near_identity.peer_id))
            swarm.add_hints(hints, pinned=True)
            with trio.fail_after(30):
                while len(swarm.linked_peers) < 3:
                    await trio.sleep(0.05)

            def fetch_from(peers: list[PeerId]) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    await exchange.fetch(blob_id, peers)
                    await trio.to_thread.run_sync(store.delete, blob_id)

                return run

            async def plain_copy() -> None:
                target = root / "copy"
                await trio.to_thread.run_sync(copy_with_fsync, store_path, target)
                target.unlink()

            store_path = BlobStore(root / "far0").path_of(blob_id)
            ways: dict[str, Callable[[], Awaitable[None]]] = {
                COPY: plain_copy,
                "fetch, 1 holder, other process": fetch_from([far[0].peer_id]),
                "fetch, 2 holders, other processes": fetch_from([p.peer_id for p in far]),
                "fetch, 1 holder, same process": fetch_from([near_identity.peer_id]),
            }

            def holders_cpu_s() -> float:
                return sum(process_cpu_s(p.proc.pid) for p in far)

            for way in ways.values():  # warm up: digest lists, page cache, code paths
                await way()
            for round_number in range(rounds):
                print(f"round {round_number + 1} of {rounds} ...", file=sys.stderr)
                for name, way in ways.items():
                    here, there = own_cpu_s(), holders_cpu_s()
                    started = time.perf_counter()
                    await way()
                    rate = size / (time.perf_counter() - started)
                    here, there = own_cpu_s() - here, holders_cpu_s() - there
                    results.setdefault(name, []).append((rate, here, there))
            nursery.cancel_scope.cancel()
    finally:
        for process in far:
            process.kill()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ws-receive-buffer", type=int, default=0, metavar="BYTES")
    args = parser.parse_args()
    if args.ws_receive_buffer:
        widen_websocket_reads(args.ws_receive_buffer)
    with tempfile.TemporaryDirectory(prefix="lightbox-bench-blobs-") as tmp:
        results = trio.run(measure, args.size_mib, args.rounds, Path(tmp))
    reads = (
        f"{args.ws_receive_buffer} B (what-if)"
        if args.ws_receive_buffer
        else f"{DEFAULT_LINK_LIMITS.read_size >> 10} KiB (the links' setting)"
    )
    print(
        f"blob transfer vs plain file copy, {args.size_mib} MiB, loopback; "
        f"median of {args.rounds} rounds"
    )
    print(
        f"python {platform.python_version()}, trio {trio.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, chunk {CHUNK >> 10} KiB, websocket reads {reads}"
    )
    gigabytes = (args.size_mib << 20) / 1e9
    copy = statistics.median(rate for rate, _, _ in results[COPY])
    print(
        f"{'way':<36}{'MB/s':>8}{'min':>8}{'max':>8}{'vs copy':>9}"
        f"{'cpu s/GB here':>15}{'holders':>9}{'1 core each':>13}"
    )
    for name, samples in results.items():
        rates = [rate for rate, _, _ in samples]
        median = statistics.median(rates)
        here = statistics.median(cpu for _, cpu, _ in samples) / gigabytes
        there = statistics.median(cpu for _, _, cpu in samples) / gigabytes
        capacity = f"{1e3 / max(here, there):.0f}" if name != COPY and here > 0 else "-"
        print(
            f"{name:<36}{median / 1e6:>8.1f}{min(rates) / 1e6:>8.1f}{max(rates) / 1e6:>8.1f}"
            f"{median / copy:>9.3f}{here:>15.2f}{there:>9.2f}{capacity:>13}"
        )
    best = max(
        statistics.median(rate for rate, _, _ in samples)
        for name, samples in results.items()
        if name != COPY
    )
    verdict = "met" if best / 1e6 >= TARGET_MB_S else "NOT met"
    print(f"target: a fetch at >= {TARGET_MB_S:.0f} MB/s: {verdict} (best {best / 1e6:.1f} MB/s)")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
