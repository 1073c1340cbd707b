"""Merges on the registry leader, and copies of every global model on every member.

The leader looks at each concept every `interval_s` (and at once when asked). When
`merge_every` adapters are pending, it fetches them from the nodes that submitted them (the
registry records the submitter as `by`), merges them exactly in weight space on top of the
current model (`finetune.merge`, in a worker thread), stores the result as a blob and
commits `record_merge` with the current model as parent. The registry's compare-and-set on
the parent makes a merge that raced another (a leader change mid-merge) fail harmlessly;
the next round merges again on top of the winner.

An adapter that cannot be fetched now stays pending for the next round; one that is not a
valid adapter (or cannot merge with the others) is set aside by this merger and reported,
so one bad upload cannot block a concept.

Every member (leader or not) also fetches each concept's current model blob if it lacks it,
so the model outlives the member that merged it: hosts ask the merger first, then members.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from lightbox_node.concepts.history import merger_of
from lightbox_node.errors import LightboxError, PeerIdError
from lightbox_node.identity import PeerId
from lightbox_node.raft.service import RegistryService
from lightbox_node.store.blob_id import BlobId, InvalidBlobId

log = logging.getLogger("lightbox.concepts")

MergeFiles = Callable[[Sequence[bytes], Sequence[float], bytes | None], bytes]
"""(adapter blobs, their weights, parent model blob or None) -> new model blob."""
FetchBytes = Callable[[BlobId, list[PeerId]], Awaitable[bytes]]
HasBlob = Callable[[BlobId], Awaitable[bool]]
StoreBlob = Callable[[bytes], Awaitable[str]]

INTERVAL_S = 2.0
MAX_CONCEPTS_PER_ROUND = 1000


class MergeRefused(LightboxError):
    """A merge asked for cannot be made here (not the leader, nothing pending, bad data)."""


class Merger:
    """Runs on every registry member; merges only while this member leads."""

    def __init__(
        self,
        registry: RegistryService,
        merge_files: MergeFiles,
        fetch_bytes: FetchBytes,
        has_blob: HasBlob,
        store_blob: StoreBlob,
        *,
        merge_every: int = 1,
        interval_s: float = INTERVAL_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if merge_every < 1:
            raise ValueError("merge_every is at least 1")
        self.registry = registry
        self._merge_files = merge_files
        self._fetch = fetch_bytes
        self._has = has_blob
        self._store = store_blob
        self.merge_every = merge_every
        self.interval_s = interval_s
        self._wall = wall_clock
        self._wake = trio.Event()
        self._lock = trio.Lock()
        self.set_aside: dict[str, str] = {}
        """Adapter blob id -> why it is not merged (invalid, or incompatible)."""
        self.merges = 0

    @property
    def leading(self) -> bool:
        return self.registry.status().leader == self.registry.local

    def wake(self) -> None:
        """Look again now (an adapter was submitted, a leader elected)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self.interval_s):
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.round()
            except LightboxError as exc:
                log.info("merge round skipped", extra={"why": str(exc)})

    async def round(self) -> None:
        """One look at every concept: merge where due (leader only), copy current models."""
        names = await self.registry.read({"q": "concepts", "limit": MAX_CONCEPTS_PER_ROUND})
        for name in names:
            summary = await self.registry.read({"q": "concept", "concept": name})
            if summary is None:
                continue
            if self.leading and self._due(summary) >= self.merge_every:
                try:
                    await self.merge(name)
                except MergeRefused as exc:
                    log.info("no merge", extra={"concept": name, "why": str(exc)})
            elif summary.get("model"):
                await self._keep_copy(name, summary)

    def _due(self, summary: dict[str, Any]) -> int:
        return sum(
            1 for a in summary.get("pending_adapters", []) if a["adapter"] not in self.set_aside
        )

    async def merge(self, name: str) -> dict[str, Any]:
        """Merge the pending adapters of `name` now; the registry's answer. Leader only."""
        async with self._lock:
            if not self.leading:
                leader = self.registry.status().leader
                raise MergeRefused(
                    f"only the registry leader merges; it is {leader or 'not known yet'}"
                )
            summary = await self.registry.read({"q": "concept", "concept": name})
            if summary is None:
                raise MergeRefused(f"the registry has no concept {name!r}")
            pending = [a for a in summary["pending_adapters"] if a["adapter"] not in self.set_aside]
            if not pending:
                raise MergeRefused(f"concept {name!r} has no adapters waiting to be merged")
            files, chosen = await self._fetch_adapters(pending)
            if not files:
                raise MergeRefused("none of the pending adapters could be fetched yet")
            parent_id = summary.get("model")
            parent = await self._fetch_parent(name, parent_id) if parent_id else None
            model = await self._merge(files, chosen, parent)
            model_id = await self._store(model)
            answer = await self.registry.write(
                {
                    "op": "record_merge",
                    "concept": name,
                    "model": model_id,
                    "parent": parent_id,
                    "adapters": [a["adapter"] for a in chosen],
                    "weights": [a["weight"] for a in chosen],
                    "at": int(self._wall() * 1000),
                    "metadata": {"bytes": len(model)},
                }
            )
            if not answer.get("ok"):
                raise MergeRefused(str(answer.get("error")))
            self.merges += 1
            log.info(
                "concept merged",
                extra={"concept": name, "model": model_id, "adapters": len(chosen)},
            )
            return answer

    async def _fetch_adapters(
        self, pending: list[dict[str, Any]]
    ) -> tuple[list[bytes], list[dict[str, Any]]]:
        files: list[bytes] = []
        chosen: list[dict[str, Any]] = []
        for adapter in pending:
            try:
                blob_id = BlobId.parse(adapter["adapter"])
                submitter = [PeerId.parse(adapter["by"])]
            except (InvalidBlobId, PeerIdError) as exc:
                self.set_aside[adapter["adapter"]] = str(exc)
                continue
            try:
                files.append(await self._fetch(blob_id, submitter))
            except LightboxError as exc:
                log.info(
                    "adapter not fetched; left for the next round",
                    extra={"adapter": adapter["adapter"], "why": str(exc)},
                )
                continue
            chosen.append(adapter)
        return files, chosen

    async def _fetch_parent(self, name: str, model_id: str) -> bytes:
        holders = await self._mergers_of(name, model_id)
        try:
            return await self._fetch(BlobId.parse(model_id), holders)
        except LightboxError as exc:
            raise MergeRefused(f"the current model {model_id} is not available: {exc}") from None

    async def _merge(
        self, files: list[bytes], chosen: list[dict[str, Any]], parent: bytes | None
    ) -> bytes:
        weights = [float(a["weight"]) for a in chosen]
        try:
            return await trio.to_thread.run_sync(self._merge_files, files, weights, parent)
        except LightboxError as exc:
            # Find the culprits one by one, so the good adapters can merge next round.
            for data, adapter in zip(files, chosen, strict=True):
                try:
                    await trio.to_thread.run_sync(self._merge_files, [data], [1.0], parent)
                except LightboxError as single:
                    self.set_aside[adapter["adapter"]] = str(single)
                    log.warning(
                        "adapter set aside",
                        extra={"adapter": adapter["adapter"], "why": str(single)},
                    )
            raise MergeRefused(f"the merge failed: {exc}") from None

    async def _keep_copy(self, name: str, summary: dict[str, Any]) -> None:
        model_id = str(summary["model"])
        try:
            blob_id = BlobId.parse(model_id)
        except InvalidBlobId:
            return
        if await self._has(blob_id):
            return
        try:
            await self._fetch(blob_id, await self._mergers_of(name, model_id))
        except LightboxError as exc:
            log.info("global model not copied yet", extra={"model": model_id, "why": str(exc)})

    async def _mergers_of(self, name: str, model_id: str) -> list[PeerId]:
        """The member that recorded `model_id`, then every other member."""
        merger = await merger_of(self.registry.read, name, model_id)
        peers = [merger] if merger is not None and merger != self.registry.local else []
        members = self.registry.status().members
        return peers + [m for m in members if m not in peers and m != self.registry.local]


__all__ = ["MergeRefused", "Merger"]
