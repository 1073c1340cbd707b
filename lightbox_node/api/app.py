"""The ASGI application: `/api/v1` for tools, the static editor at `/`.

The app reads node state only through the narrow views it is given, so it can be tested
without a running node and never reaches into the node's internals.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lightbox_node.dispatch.queue import JobView, QueueService
from lightbox_node.errors import PeerIdError
from lightbox_node.gossip.records import CapabilityRecord
from lightbox_node.gossip.scores import ScoreRow
from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import JobError
from lightbox_node.sched.trust import TrustExhausted, UserSuspended
from lightbox_node.swarm import PeerRow
from lightbox_node.tasks import InvalidJobInput


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
    """What the API may see of the peer network."""

    def peer_rows(self) -> list[PeerRow]: ...

    def score_table(self) -> list[ScoreRow]: ...


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


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status)


_USER = re.compile(r"[a-z0-9._-]{1,64}")

MAX_JOB_REQUEST = 16 << 20
"""Largest job request body (inline inputs); images travel as blobs, not here."""


async def _read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refusing anything over `limit` bytes before parsing it."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise _HttpError(413, "too_large", f"request bodies are limited to {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _HttpError(413, "too_large", f"request bodies are limited to {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _HttpError(400, "bad_json", f"the body is not valid JSON: {exc}") from None


class _HttpError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.response = JSONResponse({"error": code, "detail": detail, **extra}, status)


def job_json(view: JobView) -> dict[str, Any]:
    body = asdict(view)
    body["faults"] = list(view.faults)
    body["results"] = list(view.results)
    return body


def create_app(
    status: Callable[[], NodeStatus],
    network: NetworkView,
    queue: QueueService | None = None,
    *,
    api_token: str | None = None,
) -> Starlette:
    """The app; job endpoints need `Authorization: Bearer <api_token>` (the operator token).

    Until accounts exist, the operator token may act for any local user named in the
    `X-Lightbox-User` header (default "operator").
    """

    def require_queue(request: Request) -> QueueService:
        if queue is None:
            raise _HttpError(404, "no_queue_role", "this node does not have the queue role")
        expected = f"Bearer {api_token}" if api_token else None
        given = request.headers.get("authorization", "")
        if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise _HttpError(
                401,
                "unauthorized",
                "send 'Authorization: Bearer <token>' with the token in DATA_DIR/api.token",
            )
        return queue

    def user_of(request: Request) -> str:
        user = request.headers.get("x-lightbox-user", "operator")
        if not _USER.fullmatch(user):
            raise _HttpError(400, "bad_user", "user names are 1-64 of a-z 0-9 . _ -")
        return user

    def owned_job(request: Request, service: QueueService) -> JobView:
        try:
            view = service.job(request.path_params["job_id"])
        except JobError as exc:
            raise _HttpError(404, "unknown_job", str(exc)) from None
        if view.owner != user_of(request):
            raise _HttpError(404, "unknown_job", f"no job {view.job_id} of this user")
        return view

    async def get_status(request: Request) -> JSONResponse:
        return JSONResponse(asdict(status()))

    async def list_peers(request: Request) -> JSONResponse:
        return JSONResponse({"peers": [peer_json(row) for row in network.peer_rows()]})

    async def get_peer(request: Request) -> JSONResponse:
        text = request.path_params["peer_id"]
        try:
            wanted = str(PeerId.parse(text))
        except PeerIdError as exc:
            return _error(400, "bad_peer_id", str(exc))
        row = next((r for r in network.peer_rows() if r.peer_id == wanted), None)
        if row is None:
            return _error(404, "unknown_peer", f"no live record or link for peer {wanted}")
        scores = next((s for s in network.score_table() if str(s.peer) == wanted), None)
        body = peer_json(row, with_tasks=True)
        body["score_components"] = (
            {k: v for k, v in asdict(scores).items() if k not in ("peer", "address")}
            if scores
            else None
        )
        return JSONResponse(body)

    async def list_tasks(request: Request) -> JSONResponse:
        if queue is None:
            return _error(404, "no_queue_role", "this node does not have the queue role")
        return JSONResponse(
            {"tasks": [schema.to_wire() for schema in queue.offered_tasks().values()]}
        )

    async def submit_job(request: Request) -> JSONResponse:
        service = require_queue(request)
        body = await _read_json(request, MAX_JOB_REQUEST)
        if type(body) is not dict or type(body.get("task")) is not str:
            raise _HttpError(400, "bad_request", 'expected {"task": ..., "inputs": {...}}')
        inputs = body.get("inputs", {})
        if type(inputs) is not dict:
            raise _HttpError(400, "bad_request", "inputs must be an object")
        host = None
        if body.get("host") is not None:
            try:
                host = PeerId.parse(body["host"])
            except PeerIdError as exc:
                raise _HttpError(400, "bad_host", str(exc)) from None
        try:
            view = await service.submit(user_of(request), body["task"], inputs, host=host)
        except InvalidJobInput as exc:
            raise _HttpError(422, "invalid_inputs", str(exc), problems=exc.to_wire()) from None
        except TrustExhausted as exc:
            raise _HttpError(429, "trust_exhausted", str(exc), retry_at=exc.retry_at) from None
        except UserSuspended as exc:
            raise _HttpError(403, "suspended", str(exc)) from None
        except JobError as exc:
            raise _HttpError(409, "not_accepted", str(exc)) from None
        return JSONResponse(job_json(view), 201)

    async def get_job(request: Request) -> JSONResponse:
        return JSONResponse(job_json(owned_job(request, require_queue(request))))

    async def cancel_job(request: Request) -> JSONResponse:
        service = require_queue(request)
        view = owned_job(request, service)
        return JSONResponse(job_json(await service.cancel(view.job_id)))

    async def job_result(request: Request) -> JSONResponse:
        service = require_queue(request)
        view = owned_job(request, service)
        try:
            outputs = await service.result(view.job_id)
        except JobError as exc:
            raise _HttpError(409, "not_done", str(exc)) from None
        return JSONResponse(
            {"outputs": {name: base64.b64encode(data).decode() for name, data in outputs}}
        )

    async def get_trust(request: Request) -> JSONResponse:
        service = require_queue(request)
        user = request.path_params["user"]
        if not _USER.fullmatch(user):
            raise _HttpError(400, "bad_user", "user names are 1-64 of a-z 0-9 . _ -")
        ledger, now = service.scheduler.ledger, time.time()
        return JSONResponse(
            {
                "user": user,
                "trust": ledger.trust(user, now),
                "suspended": ledger.is_suspended(user),
                "recovery_eta_s": ledger.recovery_eta(user, now),
            }
        )

    async def not_found(request: Request) -> JSONResponse:
        return _error(404, "not_found", f"no API endpoint {request.url.path}")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, _HttpError)
        return exc.response

    return Starlette(
        routes=[
            Route("/api/v1/status", get_status),
            Route("/api/v1/peers", list_peers),
            Route("/api/v1/peers/{peer_id}", get_peer),
            Route("/api/v1/tasks", list_tasks),
            Route("/api/v1/jobs", submit_job, methods=["POST"]),
            Route("/api/v1/jobs/{job_id}", get_job),
            Route("/api/v1/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
            Route("/api/v1/jobs/{job_id}/result", job_result),
            Route("/api/v1/trust/{user}", get_trust),
            Route("/api/{rest:path}", not_found),
            Mount("/", StaticFiles(directory=web_static_dir(), html=True), name="editor"),
        ],
        exception_handlers={_HttpError: http_error},
    )
