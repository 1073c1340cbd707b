"""Which blobs to collect: those nothing references, once they are older than a grace period.

Pure: the caller lists what is stored (with modification times), says which ids are
referenced (model weights in the registry, images of live jobs, blobs pinned for sharing)
and what time it is; `plan_collection` answers what may go. The grace period protects a blob
that was just written or fetched and is not referenced *yet* (a job's result before the
job is marked done, a merged model before Raft commits its id): age is measured from the
file's modification time, which the store refreshes whenever the same blob is stored again.

Half-finished fetches (staging files kept so a broken transfer can resume) are collected the
same way once nobody has written to them for the grace period.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass

from lightbox_node.store.blob_id import BlobId

DEFAULT_GRACE_S = 3600.0
"""An unreferenced blob younger than this is kept."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """One blob on disk as the collector sees it."""

    blob_id: BlobId
    modified_at: float
    """Seconds since the epoch (the file's mtime)."""
    size: int


@dataclass(frozen=True, slots=True)
class StagedFetch:
    """The kept prefix of a fetch that has not finished (see `BlobStore.open_partial`)."""

    blob_id: BlobId
    modified_at: float
    size: int


@dataclass(frozen=True, slots=True)
class Collection:
    """What one collection round deletes, and why the rest stays."""

    blobs: tuple[StoredBlob, ...] = ()
    staged: tuple[StagedFetch, ...] = ()
    kept_referenced: int = 0
    kept_young: int = 0

    @property
    def bytes_freed(self) -> int:
        return sum(b.size for b in self.blobs) + sum(s.size for s in self.staged)


def plan_collection(
    blobs: Iterable[StoredBlob],
    referenced: Container[BlobId],
    *,
    now: float,
    grace_s: float = DEFAULT_GRACE_S,
    staged: Iterable[StagedFetch] = (),
) -> Collection:
    """The blobs (and stale staged fetches) to delete at `now`; referenced or young ones stay.

    A modification time in the future (a clock that jumped back) counts as young, so a
    clock error can only delay collection, never hasten it.
    """
    if grace_s < 0:
        raise ValueError(f"grace_s must be at least 0, not {grace_s}")
    cutoff = now - grace_s
    doomed: list[StoredBlob] = []
    kept_referenced = kept_young = 0
    for blob in blobs:
        if blob.blob_id in referenced:
            kept_referenced += 1
        elif blob.modified_at > cutoff:
            kept_young += 1
        else:
            doomed.append(blob)
    stale = tuple(fetch for fetch in staged if fetch.modified_at <= cutoff)
    return Collection(tuple(doomed), stale, kept_referenced, kept_young)


__all__ = ["DEFAULT_GRACE_S", "Collection", "StagedFetch", "StoredBlob", "plan_collection"]
