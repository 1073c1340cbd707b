"""A GPU host's view of concepts: the current global model of a concept, as bytes.

For a job with a `concept`, the host reads the concept's current model id from the
registry with a linearizable read at the moment the job runs, so a job submitted after a
merge was committed always sees that merge (or a later one). The model's blob comes from
this node's store, else from peers: the registry member that recorded the merge (it made
the blob) first, then any holder the blob exchange knows of, then the registry members.
Blobs are cached here by id, so a popular concept is fetched once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from lightbox_node.concepts.history import merger_of
from lightbox_node.dispatch.test_tasks import ConceptModel, TaskFailed
from lightbox_node.errors import LightboxError
from lightbox_node.identity import PeerId
from lightbox_node.store.blob_id import BlobId, InvalidBlobId

Read = Callable[[Any], Awaitable[Any]]
Fetch = Callable[[BlobId, list[PeerId]], Awaitable[bytes]]

CACHE_BYTES = 1 << 30
"""Global-model blobs kept in memory, least recently used dropped first."""


class ConceptResolver:
    """`await resolver(name)` -> the concept's current `ConceptModel`; TaskFailed if none."""

    def __init__(
        self,
        read: Read,
        fetch: Fetch,
        *,
        members: Callable[[], Iterable[PeerId]] = tuple,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self._read = read
        self._fetch = fetch
        self._members = members
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0

    async def __call__(self, name: str) -> ConceptModel:
        try:
            summary = await self._read({"q": "concept", "concept": name})
        except LightboxError as exc:
            raise TaskFailed(f"cannot look up concept {name!r} in the registry: {exc}") from None
        if not isinstance(summary, dict) or not summary.get("model"):
            why = "is not in the registry" if summary is None else "has no merged model yet"
            raise TaskFailed(f"concept {name!r} {why}; fine-tune it first")
        model_id = str(summary["model"])
        data = self._cache.get(model_id)
        if data is not None:
            self._cache.move_to_end(model_id)
            return ConceptModel(name, model_id, data)
        try:
            blob_id = BlobId.parse(model_id)
        except InvalidBlobId:
            raise TaskFailed(f"the registry names a malformed model id for {name!r}") from None
        peers = await self._holders(name, model_id)
        try:
            data = await self._fetch(blob_id, peers)
        except LightboxError as exc:
            raise TaskFailed(f"cannot fetch the model of concept {name!r}: {exc}") from None
        self._remember(model_id, data)
        return ConceptModel(name, model_id, data)

    async def _holders(self, name: str, model_id: str) -> list[PeerId]:
        """Who to ask for the model blob: its merger first, then the registry members."""
        merger = await merger_of(self._read, name, model_id)
        peers = [merger] if merger is not None else []
        return peers + [peer for peer in self._members() if peer not in peers]

    def _remember(self, model_id: str, data: bytes) -> None:
        if len(data) > self._cache_bytes:
            return
        self._cache[model_id] = data
        self._held += len(data)
        while self._held > self._cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._held -= len(dropped)


__all__ = ["ConceptResolver"]
