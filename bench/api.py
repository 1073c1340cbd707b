"""The HTTP layer's cost: jobs and status through the HTTP API beside the in-process client.

Prints, from one run, for no-op jobs on one queue node with an in-process GPU host (SQLite
journal with fsync): submit-to-result latency p50/p99 and jobs/s through `JobClient` (the
in-process API the HTTP routes call) and through HTTP (POST the job, follow its WebSocket of
events until it ends, GET the result, with a user token); and requests/s for a job's status
(`JobClient.job` beside `GET /api/v1/jobs/{id}`) and for the node status endpoint. The ratio
of each pair is what HTTP, JSON and authentication add. The HTTP client runs in a separate
process (this script with --client), so the two do not share one interpreter's CPU.

    python bench/api.py [--jobs 400] [--concurrency 16] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from lightbox_node.accounts import FAST_TEST_COST, AccountService, AccountSettings, solve
from lightbox_node.api import NodeStatus, create_app, serve_http
from lightbox_node.api.settings import UNLIMITED, ApiSettings
from lightbox_node.dispatch.attach import run_local_pair
from lightbox_node.dispatch.client import JobClient
from lightbox_node.dispatch.host import GpuHost
from lightbox_node.dispatch.queue import QueueService
from lightbox_node.dispatch.test_tasks import test_task_runners
from lightbox_node.gossip.peer_policy import PeerPolicy
from lightbox_node.identity import Identity
from lightbox_node.sched.scheduler import Scheduler
from lightbox_node.store import BlobStore, open_database

SETTINGS = ApiSettings(
    submit_per_account=UNLIMITED,
    submit_per_address=UNLIMITED,
    register_per_address=UNLIMITED,
    login_per_address=UNLIMITED,
    login_per_user=UNLIMITED,
    max_active_jobs=100_000,
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Network:
    policy = PeerPolicy()

    def peer_rows(self) -> list:
        return []

    def score_table(self) -> list:
        return []

    def replace_policy(self, policy: PeerPolicy) -> None:
        self.policy = policy


# -- the in-process side ------------------------------------------------------------------------


async def in_process_jobs(client: JobClient, count: int, concurrency: int):
    latencies: list[float] = []
    limiter = trio.CapacityLimiter(concurrency)

    async def one() -> None:
        async with limiter:
            start = time.perf_counter()
            view = await client.submit("noop", {})
            final = await client.wait(view.job_id)
            assert final.state == "done", final
            await client.result(view.job_id)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return count / (time.perf_counter() - began), latencies


async def in_process_status(client: JobClient, job_id: str, seconds: float) -> float:
    calls, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for _ in range(1000):
            client.job(job_id)
        calls += 1000
        await trio.sleep(0)
    return calls / (time.perf_counter() - began)


# -- the HTTP client (a separate process) -------------------------------------------------------


class MiniHttp:
    """A keep-alive HTTP/1.1 connection speaking just what this bench needs.

    Lighter than a general client, so the numbers are the server's and not the client's.
    """

    def __init__(self, stream: trio.SocketStream, headers: dict[str, str]) -> None:
        self.stream = stream
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.buffer = b""

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str]) -> MiniHttp:
        host, port = url.split("//")[1].rstrip("/").split(":")
        return cls(await trio.open_tcp_stream(host, int(port)), headers)

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{self.extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        await self.stream.send_all(head.encode() + data)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive_some(65536)
        header, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length")
        )
        while len(self.buffer) < length:
            self.buffer += await self.stream.receive_some(65536)
        content, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, content


async def http_client(url: str, token: str, jobs: int, concurrency: int, seconds: float) -> dict:
    from trio_websocket import ConnectionClosed, open_websocket_url

    headers = {"Authorization": f"Bearer {token}"}
    pool = [await MiniHttp.connect(url, headers) for _ in range(concurrency)]

    async def one(http: MiniHttp, latencies: list[float]) -> str:
        start = time.perf_counter()
        status, body = await http.request("POST", "/api/v1/jobs", {"task": "noop"})
        assert status == 201, body
        job = json.loads(body)
        ws_url = url.replace("http", "ws", 1) + f"api/v1/jobs/{job['job_id']}/events"
        state = job["state"]
        async with open_websocket_url(ws_url, extra_headers=list(headers.items())) as ws:
            try:
                while True:
                    state = json.loads(await ws.get_message())["job"]["state"]
            except ConnectionClosed:
                pass
        assert state == "done", job
        status, _ = await http.request("GET", f"/api/v1/jobs/{job['job_id']}/result")
        assert status == 200
        latencies.append(time.perf_counter() - start)
        return job["job_id"]

    async def run(count: int, width: int) -> tuple[float, list[float], str]:
        latencies: list[float] = []
        ids: list[str] = []
        left = iter(range(count))

        async def worker(http: MiniHttp) -> None:
            for _ in left:
                ids.append(await one(http, latencies))

        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for http in pool[:width]:
                nursery.start_soon(worker, http)
        return count / (time.perf_counter() - began), latencies, ids[-1]

    await run(30, concurrency)  # warm up
    rate, latencies, last = await run(jobs, concurrency)
    serial_rate, serial, _ = await run(min(jobs, 200), 1)

    async def hammer(path: str) -> float:
        done = 0
        stop = time.perf_counter() + seconds

        async def worker(http: MiniHttp) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                status, _ = await http.request("GET", path)
                assert status == 200
                done += 1

        began = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for http in pool:
                nursery.start_soon(worker, http)
        return done / (time.perf_counter() - began)

    return {
        "rate": rate,
        "latencies": latencies,
        "serial_rate": serial_rate,
        "serial": serial,
        "job_status_rps": await hammer(f"/api/v1/jobs/{last}"),
        "node_status_rps": await hammer("/api/v1/status"),
    }


# -- the run ------------------------------------------------------------------------------------


async def main(jobs: int, concurrency: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        identity = Identity.generate()
        database = open_database(root / "node.sqlite3")
        accounts = AccountService.open(
            root / "node.sqlite3",
            identity,
            AccountSettings(password_cost=FAST_TEST_COST, pow_difficulty=8),
        )
        queue = QueueService(identity.peer_id, Scheduler(), database, BlobStore(root / "blobs"))
        host = GpuHost(test_task_runners(), slots=8)
        started = time.time()

        def status() -> NodeStatus:
            return NodeStatus(
                str(identity.peer_id),
                "bench",
                ("queue", "gpu"),
                "bench",
                started,
                time.time() - started,
            )

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(queue.run)
                await nursery.start(host.run)
                await nursery.start(run_local_pair, queue, host, identity.peer_id)
                app = create_app(status, Network(), queue, accounts=accounts, settings=SETTINGS)
                shutdown = trio.Event()
                url = await nursery.start(serve_http, app, "127.0.0.1", 0, shutdown)
                while "noop" not in queue.offered_tasks():
                    await trio.sleep(0.01)

                challenge = accounts.challenge()
                accounts.register(
                    "bench-http", "a long bench password", challenge.text, solve(challenge.text, 8)
                )
                token = accounts.login("bench-http", "a long bench password").token
                for user in ("bench-http", "bench-local"):  # enough trust for every job
                    queue.scheduler.ledger.set_trust(user, 1000.0, time.time())

                local = JobClient(queue, "bench-local")
                await in_process_jobs(local, 30, concurrency)  # warm up
                rate, latencies = await in_process_jobs(local, jobs, concurrency)
                serial_rate, serial = await in_process_jobs(local, min(jobs, 200), 1)
                last = (await local.submit("noop", {})).job_id
                await local.wait(last)
                status_rate = await in_process_status(local, last, seconds)

                result = await trio.run_process(
                    [
                        sys.executable,
                        __file__,
                        "--client",
                        url,
                        "--jobs",
                        str(jobs),
                        "--concurrency",
                        str(concurrency),
                        "--seconds",
                        str(seconds),
                    ],
                    stdin=subprocess.DEVNULL,
                    capture_stdout=True,
                    env={**os.environ, "LIGHTBOX_BENCH_TOKEN": token},
                )
                http = json.loads(result.stdout)
                shutdown.set()
                nursery.cancel_scope.cancel()
        finally:
            accounts.close()
            database.close()

    def row(name: str, jobs_per_s: float, values: list[float]) -> str:
        return (
            f"{name:<42}{jobs_per_s:>9.0f}{percentile(values, 0.5) * 1e3:>10.2f}"
            f"{percentile(values, 0.99) * 1e3:>10.2f}"
        )

    print(
        "api: 1 queue node + in-process GPU host (8 slots), no-op jobs, SQLite journal with "
        "fsync; HTTP client in its own process, user token"
    )
    print(f"{'submit -> result':<42}{'jobs/s':>9}{'p50 ms':>10}{'p99 ms':>10}")
    print(row("in-process JobClient, 1 at a time", serial_rate, serial))
    print(row("HTTP + WebSocket, 1 at a time", http["serial_rate"], http["serial"]))
    print(row(f"in-process JobClient, {concurrency} at a time", rate, latencies))
    print(row(f"HTTP + WebSocket, {concurrency} at a time", http["rate"], http["latencies"]))
    p50_ratio = percentile(http["serial"], 0.5) / percentile(serial, 0.5)
    p99_ratio = percentile(http["serial"], 0.99) / percentile(serial, 0.99)
    print(
        f"HTTP / in-process, 1 at a time: p50 x{p50_ratio:.2f}, p99 x{p99_ratio:.2f}; "
        f"{concurrency} at a time: jobs/s x{http['rate'] / rate:.2f}"
    )
    print(f"{'status reads':<42}{'req/s':>9}")
    print(f"{'in-process JobClient.job(id)':<42}{status_rate:>9.0f}")
    print(f"{'GET /api/v1/jobs/{id} (token checked)':<42}{http['job_status_rps']:>9.0f}")
    print(f"{'GET /api/v1/status (no auth)':<42}{http['node_status_rps']:>9.0f}")
    print(f"in-process / HTTP job status: x{status_rate / http['job_status_rps']:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        token = os.environ["LIGHTBOX_BENCH_TOKEN"]
        report = trio.run(
            http_client, args.client, token, args.jobs, args.concurrency, args.seconds
        )
        print(json.dumps(report))
    else:
        trio.run(main, args.jobs, args.concurrency, args.seconds)
