"""Serve an ASGI app with hypercorn's trio worker, inside the caller's nursery."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from lightbox_node.errors import LightboxError

log = logging.getLogger("lightbox.api")


class HttpBindError(LightboxError):
    """The HTTP port could not be bound (in use, or not permitted)."""


async def serve_http(
    app: object,
    host: str,
    port: int,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until `shutdown` is set; `task_status.started` gets the base URL actually bound."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = logging.getLogger("lightbox.api.hypercorn")
    try:
        # Bind first ourselves: hypercorn's own bind error is an opaque traceback.
        probe = trio.socket.socket()
        probe.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        await probe.bind((host, port))
        probe.close()
    except OSError as exc:
        raise HttpBindError(
            f"cannot listen for HTTP on {host}:{port} ({exc.strerror}); "
            "choose another port with --http-port (0 picks a free one)"
        ) from None

    class _ReportBaseUrl:
        """Adapts hypercorn's list of bound URLs to the one base URL our caller wants."""

        def started(self, value: list[str] | None = None) -> None:
            urls = value or []
            base = urls[0] if urls else f"http://{host}:{port}"
            task_status.started(base.rstrip("/") + "/")

    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=_ReportBaseUrl())
