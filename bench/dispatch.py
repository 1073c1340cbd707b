"""Dispatch overhead: no-op jobs through a queue node to 16 GPU hosts over loopback links.

Prints, from one run: jobs/s and submit-to-result latency p50/p99 through the node, beside a
direct in-process call of the same no-op task; the extra latency of a federated hop (a job
pinned to a host of another queue node); and the queue node's RSS with 10,000 jobs queued.
Every node is a real node (SQLite journal with fsync, peer links over WebSockets on
127.0.0.1). The measured queue node runs in this process (the client calls it through
`JobClient`, as the HTTP API does); the GPU hosts and the second queue node are
`lightbox-node run` subprocesses, as they would be on other machines.

    python bench/dispatch.py [--jobs 2000] [--hosts 16] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

from lightbox_node.config import NodeConfig
from lightbox_node.dispatch.client import JobClient
from lightbox_node.dispatch.test_tasks import NoopTask
from lightbox_node.identity import Identity, PeerId
from lightbox_node.node import NodeReady, run_node

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.node_process import NodeProcess


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def start_node(
    nursery: trio.Nursery, root: Path, name: str, roles: tuple[str, ...], **settings: object
) -> NodeReady:
    config = NodeConfig(
        data_dir=root / name,
        roles=roles,
        http_port=0,
        p2p_port=0,
        mdns=False,
        log_level="warning",
        **settings,  # type: ignore[arg-type]
    )
    config.data_dir.mkdir(parents=True)
    identity = Identity.generate()
    return await nursery.start(run_node, config, identity, trio.Event())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_jobs(
    client: JobClient, count: int, concurrency: int, host: PeerId | None = None
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    limiter = trio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            start = time.perf_counter()
            view = await client.submit("noop", {}, host=host)
            final = await client.wait(view.job_id)
            assert final.state == "done", final
            await client.result(view.job_id)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    return count / (time.perf_counter() - began), latencies


async def direct_calls(count: int) -> list[float]:
    task, latencies = NoopTask(), []
    for _ in range(count):
        start = time.perf_counter()
        await task.run({}, lambda fraction, message: None)
        latencies.append(time.perf_counter() - start)
    return latencies


def spawn(data: Path, roles: str, attach: str, bootstrap: str, slots: int = 4) -> NodeProcess:
    return NodeProcess(
        [
            "run",
            "--data-dir",
            str(data),
            "--roles",
            roles,
            "--http-port",
            "0",
            "--p2p-port",
            "0",
            "--no-mdns",
            "--log-level",
            "warning",
            "--set",
            f"attach_to={attach}",
            "--set",
            f"gpu_slots={slots}",
            "--bootstrap",
            bootstrap,
        ]
    )


async def main(jobs: int, hosts: int, concurrency: int) -> None:
    processes: list[NodeProcess] = []
    try:
        await _main(jobs, hosts, concurrency, processes)
    finally:
        for process in processes:
            process.stop()


async def _main(jobs: int, hosts: int, concurrency: int, processes: list[NodeProcess]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with trio.open_nursery() as nursery:
            queue_a = await start_node(nursery, root, "queue-a", ("queue",))
            queue_b = await start_node(
                nursery,
                root,
                "queue-b",
                ("queue",),
                bootstrap=(f"{queue_a.peer_id}@{queue_a.p2p_url.split('/')[2]}",),
            )
            entry_a = f"{queue_a.peer_id}@{queue_a.p2p_url.split('/')[2]}"
            entry_b = f"{queue_b.peer_id}@{queue_b.p2p_url.split('/')[2]}"
            for i in range(hosts):
                processes.append(spawn(root / f"host-{i}", "gpu", queue_a.peer_id, entry_a))
            far_process = spawn(root / "host-b", "gpu", queue_b.peer_id, entry_b)
            processes.append(far_process)
            far_peer = far_process.line("peer id:")
            assert queue_a.queue is not None
            while len(queue_a.queue.hosts()) < hosts:
                await trio.sleep(0.1)
            far = PeerId.parse(far_peer)
            while not queue_a.queue.find_host(far):  # its record has come by gossip
                await trio.sleep(0.1)

            users = [JobClient(queue_a.queue, f"bench{i}") for i in range(max(1, jobs // 500))]

            direct = await direct_calls(jobs)
            await run_jobs(users[0], 50, concurrency)  # warm up
            rate, through_node = await run_jobs(users[-1], min(jobs, 500), concurrency)
            serial_rate, serial = await run_jobs(users[0], 200, 1)
            far_rate, federated = await run_jobs(users[1 % len(users)], 200, 1, host=far)

            print(
                f"dispatch: 1 queue node, {hosts} GPU host processes x 4 slots, loopback "
                "links, SQLite journal with fsync"
            )
            print(f"{'path':<34}{'jobs/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
            for name, jobs_per_s, latencies in (
                ("direct in-process no-op call", None, direct),
                ("through the node, 1 at a time", serial_rate, serial),
                (f"through the node, {concurrency} at a time", rate, through_node),
                ("federated hop, 1 at a time", far_rate, federated),
            ):
                shown_rate = "" if jobs_per_s is None else f"{jobs_per_s:.0f}"
                print(
                    f"{name:<34}{shown_rate:>10}{percentile(latencies, 0.5) * 1e3:>10.3f}"
                    f"{percentile(latencies, 0.99) * 1e3:>10.3f}"
                )
            overhead_p50 = percentile(serial, 0.5) - percentile(direct, 0.5)
            overhead_p99 = percentile(serial, 0.99) - percentile(direct, 0.99)
            hop = percentile(federated, 0.5) - percentile(serial, 0.5)
            print(
                f"overhead vs direct: p50 {overhead_p50 * 1e3:.2f} ms (target <= 3), "
                f"p99 {overhead_p99 * 1e3:.2f} ms (target <= 15); "
                f"throughput {rate:.0f} jobs/s (target >= 2000); "
                f"federated hop adds {hop * 1e3:.2f} ms p50 (target <= 2)"
            )

            # Memory: 10,000 jobs queued on a drained host.
            drained = spawn(root / "drained", "gpu", queue_a.peer_id, entry_a, slots=0)
            processes.append(drained)
            target = PeerId.parse(drained.line("peer id:"))
            while target not in queue_a.queue.hosts():
                await trio.sleep(0.1)
            gc.collect()
            before = rss_mb()
            many = [JobClient(queue_a.queue, f"mem{i}") for i in range(200)]
            async with trio.open_nursery() as submitters:
                for i in range(10_000):
                    submitters.start_soon(partial(many[i % 200].submit, "noop", {}, host=target))
                    if i % 500 == 499:
                        await trio.sleep(0)
            gc.collect()
            after = rss_mb()
            print(
                f"RSS of this process (queue nodes A and B and the bench client): {after:.0f} MB "
                f"with 10,000 jobs queued on A (+{after - before:.0f} MB for them; "
                "target <= 150 MB for a queue node)"
            )
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    trio.run(main, args.jobs, args.hosts, args.concurrency)
