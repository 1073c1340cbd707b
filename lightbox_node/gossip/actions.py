"""Actions the gossip cores hand back to the trio shell, which executes them in order.

Every core in this package (router, liveness, ...) returns a list of these small frozen
values from each `peer_connected` / `receive` / `heartbeat` call; the shell sends the
messages, feeds peer events to the score keeper and updates its view of the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lightbox_node.identity import PeerId

if TYPE_CHECKING:
    from lightbox_node.gossip.records import CapabilityRecord


@dataclass(frozen=True, slots=True)
class Send:
    """Send `body` to `peer` under `protocol` (the shell packs [protocol, body])."""

    peer: PeerId
    protocol: str
    body: Any


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """Something a peer did that counts toward its score: `kind` is a key of the scoring weights."""

    peer: PeerId
    kind: str  # e.g. "first_delivery", "invalid_message", "broken_promise", "flood", "duplicate"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecordAccepted:
    """A capability record is now the current one for its author (new, or a higher seq).

    `source` is the neighbour that delivered it, or None for a record this node published.
    """

    record: CapabilityRecord
    source: PeerId | None = None


@dataclass(frozen=True, slots=True)
class RecordRemoved:
    """The record of `author` left the store: `reason` is "expired" or "evicted" (store full)."""

    author: PeerId
    reason: str


Action = Send | PeerEvent | RecordAccepted | RecordRemoved
"""Everything a gossip core may return."""

__all__ = ["Action", "PeerEvent", "RecordAccepted", "RecordRemoved", "Send"]
