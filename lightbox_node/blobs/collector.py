"""The blob collector: a loop that deletes blobs nothing references, after a grace period.

The decision is `store.blob_gc.plan_collection` (pure); this loop lists the store, asks the
node which ids are referenced, and deletes what the plan says, each deletion re-checking
that the blob was not stored again meanwhile. If asking for the referenced ids fails, the
round deletes nothing: a blob is only ever deleted on positive knowledge that nothing needs
it.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio

from lightbox_node.errors import StoreError
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.store.blob_gc import DEFAULT_GRACE_S, Collection, plan_collection

log = logging.getLogger("lightbox.blobs.gc")

Referenced = Callable[[], Iterable[BlobId] | Awaitable[Iterable[BlobId]]]
"""Where the collector learns which blobs are in use (sync or async)."""


@dataclass(frozen=True, slots=True)
class CollectorParams:
    grace_s: float = DEFAULT_GRACE_S
    """An unreferenced blob younger than this (by mtime) is kept."""
    every_s: float = 600.0
    """Time between collection rounds."""


async def collect_once(
    store: BlobStore,
    referenced: Referenced,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    wall_clock: Callable[[], float] = time.time,
) -> Collection:
    """One round: list, ask what is referenced, delete the rest that is old enough.

    The listing comes first, so a blob stored after it is not even considered, and one
    stored again after it is spared by the mtime check at deletion.
    """
    blobs = await trio.to_thread.run_sync(lambda: list(store.stored()))
    staged = await trio.to_thread.run_sync(store.staged_fetches)
    in_use = referenced()
    if inspect.isawaitable(in_use):
        in_use = await in_use
    keep = set(in_use)
    plan = plan_collection(blobs, keep, now=wall_clock(), grace_s=grace_s, staged=staged)

    def delete() -> None:
        for blob in plan.blobs:
            store.delete_if_unchanged(blob.blob_id, blob.modified_at)
        for fetch in plan.staged:
            store.remove_staged_fetch(fetch.blob_id, fetch.modified_at)

    if plan.blobs or plan.staged:
        await trio.to_thread.run_sync(delete)
        log.info(
            "blobs collected",
            extra={
                "blobs": len(plan.blobs),
                "staged": len(plan.staged),
                "bytes": plan.bytes_freed,
                "kept_referenced": plan.kept_referenced,
                "kept_young": plan.kept_young,
            },
        )
    return plan


async def run_blob_collector(
    store: BlobStore,
    referenced: Referenced,
    *,
    params: CollectorParams | None = None,
    wall_clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Collect every `params.every_s` until cancelled; a failing round is logged, not fatal."""
    params = params or CollectorParams()
    task_status.started()
    while True:
        await trio.sleep(params.every_s)
        try:
            await collect_once(store, referenced, grace_s=params.grace_s, wall_clock=wall_clock)
        except (StoreError, OSError) as exc:
            log.warning("blob collection failed; nothing more deleted", extra={"error": str(exc)})
        except Exception:  # the referenced-ids source failed: keep everything this round
            log.exception("blob collection skipped: could not learn which blobs are in use")
