"""The ASGI application: `/api/v1` for people and tools, `/api/v2` for Horde clients,
`/metrics` and `/healthz`, the OpenAPI document and its docs page, the editor at `/`.

The app reads node state only through the narrow views it is given, so it can be tested
without a running node and never reaches into the node's internals. Each group of routes
lives in its own module; this one composes them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lightbox_node.accounts import AccountError, AccountService
from lightbox_node.api.accounts import AccountRoutes
from lightbox_node.api.admin import AdminRoutes
from lightbox_node.api.auth import Gate
from lightbox_node.api.horde import HordeRoutes
from lightbox_node.api.http import DrainUnreadBody, HttpError, error
from lightbox_node.api.jobs import JobRoutes, job_json
from lightbox_node.api.metrics import MetricsRoutes, RequestCounter
from lightbox_node.api.openapi import DocsRoutes
from lightbox_node.api.registry import RegistryRoutes
from lightbox_node.api.settings import ApiSettings
from lightbox_node.dispatch.queue import QueueService
from lightbox_node.errors import PeerIdError
from lightbox_node.gossip.peer_policy import PeerPolicy
from lightbox_node.gossip.records import CapabilityRecord
from lightbox_node.gossip.scores import ScoreRow
from lightbox_node.identity import PeerId
from lightbox_node.raft.service import RegistryService
from lightbox_node.swarm import PeerRow

log = logging.getLogger("lightbox.api")


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What `/api/v1/status` reports: enough for a dashboard's overview and for health checks."""

    peer_id: str
    network: str
    roles: tuple[str, ...]
    version: str
    started_at: float
    uptime_s: float


class NetworkView(Protocol):
    """What the API may see of the peer network, and change (the admin's block/allow)."""

    policy: PeerPolicy

    def peer_rows(self) -> list[PeerRow]: ...

    def score_table(self) -> list[ScoreRow]: ...

    def replace_policy(self, policy: PeerPolicy) -> None: ...


def web_static_dir() -> Path:
    """The editor's files, whether run from a checkout or an installed wheel."""
    return Path(str(resources.files("lightbox_node.web_static")))


def record_json(record: CapabilityRecord | None, *, with_tasks: bool) -> dict[str, Any] | None:
    if record is None:
        return None
    tasks = record.plain_tasks()
    return {
        "seq": record.seq,
        "issued_at_ms": record.issued_at_ms,
        "expires_at_ms": record.expires_at_ms,
        "roles": list(record.roles),
        "addresses": list(record.addresses),
        "free_slots": record.free_slots,
        "version": record.version,
        "task_names": [task["name"] for task in tasks],
        **({"tasks": tasks} if with_tasks else {}),
    }


def peer_json(row: PeerRow, *, with_tasks: bool = False) -> dict[str, Any]:
    return {
        "peer_id": row.peer_id,
        "linked": row.linked,
        "address": row.address,
        "liveness": row.liveness,
        "score": row.score,
        "record": record_json(row.record, with_tasks=with_tasks),
    }


def create_app(
    status: Callable[[], NodeStatus],
    network: NetworkView,
    queue: QueueService | None = None,
    *,
    api_token: str | None = None,
    accounts: AccountService | None = None,
    settings: ApiSettings | None = None,
    registry: RegistryService | None = None,
    merge: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The app. Accounts' tokens open user and admin routes by scope; `api_token` (the
    operator's, from `DATA_DIR/api.token`) opens both, acting on user routes for the user in
    `X-Lightbox-User` (see `lightbox_node.api.auth`)."""
    settings = settings or ApiSettings()
    gate = Gate(accounts, api_token)
    responses: Counter[tuple[str, str]] = Counter()
    jobs = JobRoutes(queue, gate, settings, network, clock=clock)
    groups = [
        AccountRoutes(accounts, gate, settings, queue, clock=clock),
        jobs,
        AdminRoutes(gate, accounts, queue, network, status, clock=clock),
        MetricsRoutes(queue, network, accounts, status, responses, clock=clock),
        HordeRoutes(queue, gate, jobs, clock=clock),
        RegistryRoutes(registry, gate, clock, merge),
    ]

    async def get_status(request: Request) -> JSONResponse:
        return JSONResponse(asdict(status()))

    async def list_peers(request: Request) -> JSONResponse:
        return JSONResponse({"peers": [peer_json(row) for row in network.peer_rows()]})

    async def get_peer(request: Request) -> JSONResponse:
        text = request.path_params["peer_id"]
        try:
            wanted = str(PeerId.parse(text))
        except PeerIdError as exc:
            return error(400, "bad_peer_id", str(exc))
        row = next((r for r in network.peer_rows() if r.peer_id == wanted), None)
        if row is None:
            return error(404, "unknown_peer", f"no live record or link for peer {wanted}")
        scores = next((s for s in network.score_table() if str(s.peer) == wanted), None)
        body = peer_json(row, with_tasks=True)
        body["score_components"] = (
            {k: v for k, v in asdict(scores).items() if k not in ("peer", "address")}
            if scores
            else None
        )
        return JSONResponse(body)

    async def not_found(request: Request) -> JSONResponse:
        return error(404, "not_found", f"no API endpoint {request.method} {request.url.path}")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HttpError)
        return exc.response

    async def account_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AccountError)
        return HttpError.from_account_error(exc).response

    routes: list[Any] = [
        Route("/api/v1/status", get_status),
        Route("/api/v1/peers", list_peers),
        Route("/api/v1/peers/{peer_id}", get_peer),
    ]
    for group in groups:
        routes += group.routes()
    docs = DocsRoutes()
    routes += docs.routes()
    routes += [
        Route("/api/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Mount("/", StaticFiles(directory=web_static_dir(), html=True), name="editor"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestCounter, counts=responses), Middleware(DrainUnreadBody)],
        exception_handlers={HttpError: http_error, AccountError: account_error},
    )


__all__ = ["NetworkView", "NodeStatus", "create_app", "job_json", "peer_json"]
