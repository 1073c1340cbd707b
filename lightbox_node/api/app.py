"""The ASGI application: `/api/v1` for tools, the static editor at `/`.

The app reads node state only through the callables it is given, so it can be tested
without a running node and never reaches into the node's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What `/api/v1/status` reports: enough for a dashboard's overview and for health checks."""

    peer_id: str
    network: str
    roles: tuple[str, ...]
    version: str
    started_at: float
    uptime_s: float


def web_static_dir() -> Path:
    """The editor's files, whether run from a checkout or an installed wheel."""
    return Path(str(resources.files("lightbox_node.web_static")))


def create_app(status: Callable[[], NodeStatus]) -> Starlette:
    async def get_status(request: Request) -> JSONResponse:
        return JSONResponse(asdict(status()))

    async def not_found(request: Request) -> JSONResponse:
        return JSONResponse(
            {"error": "not_found", "detail": f"no API endpoint {request.url.path}"}, 404
        )

    return Starlette(
        routes=[
            Route("/api/v1/status", get_status),
            Route("/api/{rest:path}", not_found),
            Mount("/", StaticFiles(directory=web_static_dir(), html=True), name="editor"),
        ]
    )
