"""`/metrics` in the Prometheus text format, and `/healthz` for load balancers.

Queue depths, jobs by state and by event, job latency (submission to end, for done jobs,
as a cumulative histogram), peers, accounts, the trust distribution, and HTTP requests by
status class. Only counts and buckets: no user names, no ids beyond hosts' peer ids.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lightbox_node.accounts import AccountService
from lightbox_node.dispatch.queue import QueueService

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
TRUST_BUCKETS = (0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)


class RequestCounter:
    """ASGI middleware counting HTTP responses by method and status class."""

    def __init__(self, app: ASGIApp, counts: Counter[tuple[str, str]]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts[(scope["method"], f"{message['status'] // 100}xx")] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


class Histogram:
    """A cumulative histogram in the Prometheus sense (buckets, sum, count)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Exposition:
    """Builds the text one metric family at a time."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help: str) -> None:
        self.lines.append(f"# HELP {name} {help}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(
            f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"
        )

    def histogram(self, name: str, help: str, histogram: Histogram) -> None:
        self.family(name, "histogram", help)
        for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
            self.sample(f"{name}_bucket", count, le=_number(float(bound)))
        self.sample(f"{name}_bucket", histogram.total, le="+Inf")
        self.sample(f"{name}_sum", histogram.sum)
        self.sample(f"{name}_count", histogram.total)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class MetricsRoutes:
    """`/metrics` and `/healthz`."""

    def __init__(
        self,
        queue: QueueService | None,
        network: Any,
        accounts: AccountService | None,
        status: Callable[[], Any],
        requests: Counter[tuple[str, str]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.network = network
        self.accounts = accounts
        self.status = status
        self.requests = requests
        self.clock = clock
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self._observed: set[str] = set()

    def routes(self) -> list[BaseRoute]:
        return [Route("/metrics", self.metrics), Route("/healthz", self.healthz)]

    async def healthz(self, request: Request) -> JSONResponse:
        status = self.status()
        return JSONResponse(
            {"status": "ok", "uptime_s": status.uptime_s, "queue": self.queue is not None}
        )

    def observe_finished_jobs(self) -> None:
        """Count each job that ended done once, the first time a scrape sees it."""
        assert self.queue is not None
        present = set()
        for job in self.queue.scheduler.jobs():
            if job.state.value != "done" or job.finished_at is None:
                continue
            present.add(job.job_id)
            if job.job_id not in self._observed:
                self._observed.add(job.job_id)
                self.latency.observe(max(0.0, job.finished_at - job.spec.submitted_at))
        self._observed &= present  # purged jobs need not be remembered

    async def metrics(self, request: Request) -> PlainTextResponse:
        out = Exposition()
        status = self.status()
        out.family("lightbox_uptime_seconds", "gauge", "Seconds since the node started.")
        out.sample("lightbox_uptime_seconds", status.uptime_s)
        rows = self.network.peer_rows()
        out.family("lightbox_peers", "gauge", "Peers known from gossip, and those linked now.")
        out.sample("lightbox_peers", len(rows), state="known")
        out.sample("lightbox_peers", sum(1 for r in rows if r.linked), state="linked")
        if self.queue is not None:
            self.queue_metrics(out)
        if self.accounts is not None:
            out.family("lightbox_accounts", "gauge", "Accounts registered on this node.")
            out.sample("lightbox_accounts", len(self.accounts.accounts()))
        if self.requests is not None:
            out.family("lightbox_http_responses_total", "counter", "HTTP responses by class.")
            for (method, klass), count in sorted(self.requests.items()):
                out.sample("lightbox_http_responses_total", count, method=method, status=klass)
        return PlainTextResponse(out.text(), media_type="text/plain; version=0.0.4")

    def queue_metrics(self, out: Exposition) -> None:
        assert self.queue is not None
        scheduler = self.queue.scheduler
        hosts = scheduler.hosts()
        out.family("lightbox_queue_depth", "gauge", "Jobs waiting in each GPU host's queue.")
        for host in hosts:
            out.sample("lightbox_queue_depth", host.queued, host=str(host.host))
        out.family("lightbox_queue_unplaced", "gauge", "Jobs waiting for a host to appear.")
        out.sample("lightbox_queue_unplaced", len(scheduler.unplaced()))
        out.family("lightbox_host_in_flight", "gauge", "Jobs dispatched to each host.")
        for host in hosts:
            out.sample("lightbox_host_in_flight", len(host.in_flight), host=str(host.host))
        out.family("lightbox_hosts", "gauge", "GPU hosts seen, online or not.")
        out.sample("lightbox_hosts", sum(1 for h in hosts if h.online), state="online")
        out.sample("lightbox_hosts", sum(1 for h in hosts if not h.online), state="offline")
        states: Counter[str] = Counter(job.state.value for job in scheduler.jobs())
        out.family("lightbox_jobs", "gauge", "Jobs known here, by state.")
        for state in ("queued", "dispatched", "running", "done", "faulted", "cancelled", "expired"):
            out.sample("lightbox_jobs", states.get(state, 0), state=state)
        out.family("lightbox_job_events_total", "counter", "Scheduler events since start.")
        for event, count in sorted(scheduler.counters.items()):
            out.sample("lightbox_job_events_total", count, event=event)
        self.observe_finished_jobs()
        out.histogram(
            "lightbox_job_latency_seconds",
            "Seconds from submission to result, for jobs that ended done.",
            self.latency,
        )
        ledger = scheduler.ledger
        now = self.clock()
        trusts = [ledger.trust(u, now) for u in ledger.users() if not u.startswith("peer:")]
        out.family(
            "lightbox_users_by_trust",
            "gauge",
            "Users whose trust is at most `le` (users the ledger has seen spend).",
        )
        for bound in TRUST_BUCKETS:
            out.sample(
                "lightbox_users_by_trust",
                sum(1 for t in trusts if t <= bound),
                le=_number(float(bound)),
            )
        out.sample("lightbox_users_by_trust", len(trusts), le="+Inf")
        out.family("lightbox_users_suspended", "gauge", "Users an administrator suspended.")
        out.sample(
            "lightbox_users_suspended", sum(1 for u in ledger.users() if ledger.is_suspended(u))
        )
