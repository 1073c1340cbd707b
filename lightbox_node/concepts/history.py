"""Who made a concept's model: the registry member that recorded its merge holds its blob."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from lightbox_node.errors import LightboxError, PeerIdError
from lightbox_node.identity import PeerId

Read = Callable[[Any], Awaitable[Any]]

LOOKBACK = 64
"""Recent history events searched for the merge that made a model."""


async def merger_of(read: Read, concept: str, model_id: str) -> PeerId | None:
    """The peer that recorded the merge producing `model_id` (recent history), if known."""
    try:
        summary = await read({"q": "concept", "concept": concept})
        length = int(summary.get("history_length") or 0) if isinstance(summary, dict) else 0
        events = await read(
            {
                "q": "history",
                "concept": concept,
                "after": max(0, length - LOOKBACK),
                "limit": LOOKBACK,
            }
        )
    except LightboxError:
        return None
    for event in reversed(events if isinstance(events, list) else []):
        if (
            isinstance(event, dict)
            and event.get("kind") == "merge"
            and event.get("model") == model_id
        ):
            with contextlib.suppress(PeerIdError):
                return PeerId.parse(str(event.get("by")))
            return None
    return None


__all__ = ["merger_of"]
