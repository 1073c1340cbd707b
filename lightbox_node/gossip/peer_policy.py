"""The operator's block and allow lists by peer id: defederation, as Mastodon does it.

The operator's latest word on a peer wins: each peer has at most one entry, `block` or
`allow`. A blocked peer is refused everywhere (links, gossip, federation). In
allowlist-only mode every peer without an `allow` entry is refused as well, like Mastodon's
limited federation mode; that mode is a setting of the node, not a row in the database.

`PeerPolicy` is the pure in-memory form the node consults on every link and message. The
table `peer_policy` keeps the entries across restarts: the caller changes the policy first,
then saves the entry it got back (`save_entry` / `delete_entry`), and `load_policy` rebuilds
the policy at start. Times are wall-clock seconds (UNIX time), since they are kept on disk.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from sqlite_utils import Database

from lightbox_node.errors import PeerIdError, StoreError
from lightbox_node.identity import PeerId

MAX_REASON_CHARS = 500
"""Reasons are for people reading a list; a longer one is refused rather than cut."""


class Verdict(enum.Enum):
    BLOCK = "block"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """The operator's decision about one peer, with why and when."""

    peer: PeerId
    verdict: Verdict
    reason: str = ""
    decided_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str):
            raise ValueError(f"a reason is text, not {type(self.reason).__name__}")
        if len(self.reason) > MAX_REASON_CHARS:
            raise ValueError(
                f"a reason is at most {MAX_REASON_CHARS} characters, not {len(self.reason)}; "
                "shorten it"
            )


class PeerPolicy:
    """Which peers this node refuses to deal with; pure and in memory."""

    def __init__(self, entries: Iterable[PolicyEntry] = (), *, allowlist_only: bool = False):
        self._entries: dict[PeerId, PolicyEntry] = {}
        for entry in entries:
            self._entries[entry.peer] = entry
        self.allowlist_only = allowlist_only
        """When true, only peers with an `allow` entry are permitted."""

    def block(self, peer: PeerId, reason: str, now: float) -> PolicyEntry:
        """Refuse `peer` from now on; replaces an `allow` entry. Returns the entry to save."""
        entry = PolicyEntry(peer, Verdict.BLOCK, reason, now)
        self._entries[peer] = entry
        return entry

    def allow(self, peer: PeerId, reason: str = "", now: float | None = None) -> PolicyEntry:
        """Put `peer` on the allowlist; replaces a block. Returns the entry to save."""
        entry = PolicyEntry(peer, Verdict.ALLOW, reason, now)
        self._entries[peer] = entry
        return entry

    def unblock(self, peer: PeerId) -> bool:
        """Lift a block; returns whether there was one. An `allow` entry is left alone."""
        return self._remove(peer, Verdict.BLOCK)

    def disallow(self, peer: PeerId) -> bool:
        """Take `peer` off the allowlist; returns whether it was on it."""
        return self._remove(peer, Verdict.ALLOW)

    def is_blocked(self, peer: PeerId) -> bool:
        """Whether to refuse `peer`: blocked, or not allowed in allowlist-only mode."""
        return self.why_refused(peer) is not None

    def why_refused(self, peer: PeerId) -> str | None:
        """Why `peer` is refused, in words for logs and the API; None if it is permitted."""
        entry = self._entries.get(peer)
        if entry is not None and entry.verdict is Verdict.BLOCK:
            return f"blocked by the operator: {entry.reason}" if entry.reason else "blocked"
        if self.allowlist_only and entry is None:
            return "not on the allowlist, and this node federates with allowed peers only"
        return None

    def entry(self, peer: PeerId) -> PolicyEntry | None:
        return self._entries.get(peer)

    def entries(self) -> list[PolicyEntry]:
        """Every entry, blocks first, then by peer id."""
        order = {Verdict.BLOCK: 0, Verdict.ALLOW: 1}
        return sorted(self._entries.values(), key=lambda e: (order[e.verdict], str(e.peer)))

    def blocked(self) -> list[PolicyEntry]:
        return [e for e in self.entries() if e.verdict is Verdict.BLOCK]

    def allowed(self) -> list[PolicyEntry]:
        return [e for e in self.entries() if e.verdict is Verdict.ALLOW]

    def _remove(self, peer: PeerId, verdict: Verdict) -> bool:
        entry = self._entries.get(peer)
        if entry is None or entry.verdict is not verdict:
            return False
        del self._entries[peer]
        return True


# -- persistence -----------------------------------------------------------------------------


def create_peer_policy_table(db: Database) -> None:
    """Migration: one row per peer the operator decided about; frozen in time once shipped."""
    db.execute(
        "CREATE TABLE peer_policy ("
        " peer_id TEXT PRIMARY KEY NOT NULL,"
        " verdict TEXT NOT NULL CHECK (verdict IN ('block', 'allow')),"
        " reason TEXT NOT NULL DEFAULT '',"
        " decided_at REAL"
        ") WITHOUT ROWID"
    )


def save_entry(db: Database, entry: PolicyEntry) -> None:
    """Store `entry`, replacing any earlier entry for the same peer (committed on return)."""
    db.execute(
        "INSERT INTO peer_policy (peer_id, verdict, reason, decided_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (peer_id) DO UPDATE SET verdict = excluded.verdict, "
        "reason = excluded.reason, decided_at = excluded.decided_at",
        [str(entry.peer), entry.verdict.value, entry.reason, entry.decided_at],
    )


def delete_entry(db: Database, peer: PeerId, verdict: Verdict | None = None) -> None:
    """Remove the peer's entry (only if it has this verdict, when one is given)."""
    if verdict is None:
        db.execute("DELETE FROM peer_policy WHERE peer_id = ?", [str(peer)])
    else:
        db.execute(
            "DELETE FROM peer_policy WHERE peer_id = ? AND verdict = ?",
            [str(peer), verdict.value],
        )


def load_policy(db: Database, *, allowlist_only: bool = False) -> PeerPolicy:
    """Rebuild the policy from the `peer_policy` table; `allowlist_only` comes from settings."""
    rows = db.execute("SELECT peer_id, verdict, reason, decided_at FROM peer_policy").fetchall()
    entries = []
    for peer_text, verdict, reason, decided_at in rows:
        try:
            peer = PeerId.parse(peer_text)
            entries.append(PolicyEntry(peer, Verdict(verdict), reason, decided_at))
        except (PeerIdError, ValueError) as exc:
            raise StoreError(
                f"the peer_policy table holds a damaged row for {str(peer_text)[:80]!r}: {exc}. "
                "Delete that row (sqlite3: DELETE FROM peer_policy WHERE peer_id = '…') and "
                "block or allow the peer again"
            ) from exc
    return PeerPolicy(entries, allowlist_only=allowlist_only)


__all__ = [
    "MAX_REASON_CHARS",
    "PeerPolicy",
    "PolicyEntry",
    "Verdict",
    "create_peer_policy_table",
    "delete_entry",
    "load_policy",
    "save_entry",
]
