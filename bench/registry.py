"""Registry: commit latency of a model-id write on 3 loopback registry nodes, and failover.

Prints, from one run: p50/p99 commit latency of `record_merge`-sized writes through the
Raft leader of three real nodes (fsync'd SQLite Raft storage on each, peer links over
WebSockets on 127.0.0.1), beside a single fsync'd SQLite write of the same command on this
machine (the floor: a commit needs a durable write on the leader and on one follower);
the same write from a node that is no registry member (one more hop, through its registry
client); and the failover time: from the leader's abrupt stop to the next committed write.
The three nodes run in this process (one trio loop, so the ratio is pessimistic: their
work is serialised on one core); targets: p50 <= 10 ms, failover <= 2 s.

    python bench/registry.py [--writes 300]
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import tempfile
import time
from pathlib import Path

import trio

from lightbox_node.config import NodeConfig
from lightbox_node.identity import Identity
from lightbox_node.node import NodeReady, run_node
from lightbox_node.raft.service import RegistryService
from lightbox_node.wire import pack


def blob(n: int) -> str:
    return "sha256-" + hashlib.sha256(f"adapter {n}".encode()).hexdigest()


def command(n: int) -> dict:
    return {"op": "submit_adapter", "concept": "bench", "adapter": blob(n), "weight": 1}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sqlite_floor(root: Path, writes: int) -> list[float]:
    """One fsync'd SQLite transaction per write of the packed command."""
    conn = sqlite3.connect(root / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE log (idx INTEGER PRIMARY KEY, entry BLOB)")
    latencies = []
    for n in range(writes):
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO log (entry) VALUES (?)", (pack(command(n)),))
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - start)
    conn.close()
    return latencies


async def start_node(
    nursery: trio.Nursery,
    root: Path,
    name: str,
    identity: Identity,
    roles: tuple[str, ...],
    founders: tuple[str, ...],
    bootstrap: tuple[str, ...],
) -> tuple[NodeReady, trio.Event]:
    config = NodeConfig(
        data_dir=root / name,
        roles=roles,
        http_port=0,
        p2p_port=0,
        mdns=False,
        log_level="warning",
        registry_founders=founders,
        bootstrap=bootstrap,
        test_tasks=False,
    )
    config.data_dir.mkdir(parents=True)
    shutdown = trio.Event()
    ready = await nursery.start(run_node, config, identity, shutdown)
    return ready, shutdown


async def timed_writes(service: RegistryService, start: int, count: int) -> list[float]:
    latencies = []
    for n in range(start, start + count):
        began = time.perf_counter()
        answer = await service.write(command(n))
        assert answer["ok"], answer
        latencies.append(time.perf_counter() - began)
    return latencies


async def main(writes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        floor = sqlite_floor(root, writes)
        identities = [Identity.generate() for _ in range(3)]
        founders = tuple(str(i.peer_id) for i in identities)
        async with trio.open_nursery() as nursery:
            first, first_stop = await start_node(
                nursery, root, "r0", identities[0], ("registry",), founders, ()
            )
            entry = f"{first.peer_id}@{first.p2p_url.removeprefix('ws://').split('/')[0]}"
            nodes = [(first, first_stop)]
            for i in (1, 2):
                nodes.append(
                    await start_node(
                        nursery, root, f"r{i}", identities[i], ("registry",), founders, (entry,)
                    )
                )
            client, _ = await start_node(
                nursery, root, "client", Identity.generate(), ("queue",), (), (entry,)
            )
            services = {ready.peer_id: (ready.registry, stop) for ready, stop in nodes}
            while True:  # a leader, known to every member
                leaders = {s.status().leader for s, _ in services.values()}
                if len(leaders) == 1 and None not in leaders:
                    break
                await trio.sleep(0.05)
            assert client.registry is not None
            (leader,) = leaders
            leader_service, leader_stop = services[str(leader)]
            assert leader_service is not None
            await timed_writes(leader_service, 0, 20)  # warm up
            await timed_writes(client.registry, 50, 20)  # the client finds the leader
            at_leader = await timed_writes(leader_service, 100, writes)
            via_client = await timed_writes(client.registry, 100 + writes, writes)

            leader_stop.set()
            stopped = time.perf_counter()
            answer = await client.registry.write(command(10**6))
            failover = time.perf_counter() - stopped
            assert answer["ok"], answer
            nursery.cancel_scope.cancel()

    ms = 1000.0
    f50, f99 = percentile(floor, 0.5) * ms, percentile(floor, 0.99) * ms
    l50, l99 = percentile(at_leader, 0.5) * ms, percentile(at_leader, 0.99) * ms
    c50, c99 = percentile(via_client, 0.5) * ms, percentile(via_client, 0.99) * ms
    print(f"registry commit latency, {writes} writes each (3 members, fsync'd SQLite on each)")
    print(f"  fsync'd SQLite write (floor): p50 {f50:7.2f} ms  p99 {f99:7.2f} ms")
    print(
        f"  commit at the leader:         p50 {l50:7.2f} ms  p99 {l99:7.2f} ms"
        f"   ratio to floor p50 {l50 / f50:5.1f}x   (target p50 <= 10 ms)"
    )
    print(
        f"  commit from a client node:    p50 {c50:7.2f} ms  p99 {c99:7.2f} ms"
        f"   ratio to floor p50 {c50 / f50:5.1f}x"
    )
    print(f"leader failover: stop to next committed write {failover:.2f} s   (target <= 2 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    trio.run(main, parser.parse_args().writes)
