"""Compose a node: its identity, store and roles, in one trio nursery.

Each service is started with `nursery.start` so the node reports ready only when every
listener is bound. Shutdown is one cancel scope: set `shutdown`, and everything stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from lightbox_node import __version__
from lightbox_node.api import NodeStatus, create_app, serve_http
from lightbox_node.config import NodeConfig
from lightbox_node.identity import Identity
from lightbox_node.store import BlobStore, open_database, setdefault_meta

log = logging.getLogger("lightbox.node")

SHUTDOWN_GRACE_S = 1.5
"""How long services get to finish after shutdown is asked, before they are cancelled."""


@dataclass(frozen=True, slots=True)
class NodeReady:
    """What a started node tells its caller: who it is and where people can reach it."""

    peer_id: str
    editor_url: str


async def run_node(
    config: NodeConfig,
    identity: Identity,
    shutdown: trio.Event,
    *,
    wall_clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[NodeReady] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node until `shutdown` is set; report `NodeReady` once it is serving."""
    started_at = wall_clock()
    database = await trio.to_thread.run_sync(open_database, config.database_file)
    try:
        await trio.to_thread.run_sync(BlobStore, config.blob_dir)
        await trio.to_thread.run_sync(
            setdefault_meta, database, "first_started_at", str(started_at)
        )

        def status() -> NodeStatus:
            return NodeStatus(
                peer_id=str(identity.peer_id),
                network=config.network,
                roles=config.roles,
                version=__version__,
                started_at=started_at,
                uptime_s=round(wall_clock() - started_at, 3),
            )

        async with trio.open_nursery() as nursery:
            editor_url = await nursery.start(
                serve_http, create_app(status), config.http_host, config.http_port, shutdown
            )
            ready = NodeReady(str(identity.peer_id), editor_url)
            log.info(
                "node ready",
                extra={
                    "peer_id": ready.peer_id,
                    "roles": ",".join(config.roles),
                    "editor": editor_url,
                },
            )
            task_status.started(ready)
            await shutdown.wait()
            log.info("shutting down")
            nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE_S
    finally:
        database.close()
