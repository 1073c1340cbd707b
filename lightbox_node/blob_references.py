"""Which blobs a node still needs, so the blob collector deletes only the rest.

A blob is in use while a job known to the queue (inputs and results, until the job is
purged after its retention) or the registry (each concept's current model and the
adapters waiting to be merged) names it, or while this node announces it. Anything else
is collected after the collector's grace period; a cached model can always be fetched
again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from lightbox_node.sched.jobs import Job
from lightbox_node.store.blob_id import BlobId, InvalidBlobId

Read = Callable[[Any], Awaitable[Any]]

MAX_CONCEPTS = 1000
"""Concepts read per page from the registry."""


def _add(ids: set[BlobId], text: Any) -> None:
    if type(text) is str:
        with contextlib.suppress(InvalidBlobId):
            ids.add(BlobId.parse(text))


def _input_blobs(value: Any, ids: set[BlobId], depth: int = 0) -> None:
    """Image inputs are `{"blob": id, ...}`, alone or in lists; look no deeper than that."""
    if depth > 3:
        return
    if isinstance(value, dict):
        _add(ids, value.get("blob"))
    elif isinstance(value, list | tuple):
        for item in value:
            _input_blobs(item, ids, depth + 1)


def job_blob_ids(jobs: Iterable[Job]) -> set[BlobId]:
    """Blob ids named by these jobs' inputs and results."""
    ids: set[BlobId] = set()
    for job in jobs:
        for result in job.results:
            _add(ids, result)
        for value in job.spec.inputs.values():
            _input_blobs(value, ids)
    return ids


async def registry_blob_ids(read: Read) -> set[BlobId]:
    """Every concept's current model and pending adapters, read through the leader.

    Raises if the registry cannot be read: the collector then deletes nothing this round.
    """
    ids: set[BlobId] = set()
    after = ""
    while True:
        names = await read({"q": "concepts", "after": after, "limit": MAX_CONCEPTS})
        for name in names:
            summary = await read({"q": "concept", "concept": name})
            if not isinstance(summary, dict):
                continue
            _add(ids, summary.get("model"))
            for adapter in summary.get("pending_adapters", []):
                _add(ids, adapter.get("adapter"))
        if not names:
            return ids
        after = names[-1]


__all__ = ["job_blob_ids", "registry_blob_ids"]
