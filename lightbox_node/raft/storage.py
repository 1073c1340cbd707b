"""Raft's durable state in SQLite: currentTerm, votedFor, the snapshot and the log after it.

`RaftStorage.save(persist)` writes one `Persist` action in one transaction and returns only
once it is committed. The database must be opened by `open_database` (WAL journal,
`synchronous=FULL`): SQLite then fsyncs the write-ahead log at every commit, so a saved
vote or entry survives a crash or power cut, and the shell may send what depended on it.
`RaftStorage` refuses a connection with a weaker `synchronous` setting rather than
pretend. `load()` after a restart gives back exactly what was last saved.

Tables (created by `create_raft_tables`, which the store's migrations register)::

    raft_state (id = 1, term, voted_for, snapshot_index, snapshot_term,
                snapshot_members, snapshot_data)      one row, absent until the first save
    raft_log   (idx, entry)                           the entries after the snapshot

Keys and entries are stored in their canonical msgpack wire form and parsed as strictly on
the way back as from the network, so a damaged file is reported, not obeyed.

Synchronous on purpose: the trio shell calls it through `trio.to_thread.run_sync`, one
thread at a time, and waits for `save` before sending anything from the same call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlite_utils import Database

from lightbox_node.errors import PeerIdError, StoreError, WireError
from lightbox_node.identity import PeerId
from lightbox_node.raft.log import (
    SNAPSHOT_LIMITS,
    DurableState,
    LogEntry,
    Persist,
    Snapshot,
    canonical_members,
    parse_entry,
    parse_members,
)
from lightbox_node.wire import pack, unpack

_SYNCHRONOUS_FULL = 2


def create_raft_tables(db: Database) -> None:
    """Migration: Raft's hard state and snapshot (one row), and its log; frozen once shipped."""
    db.execute(
        "CREATE TABLE raft_state ("
        " id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),"
        " term INTEGER NOT NULL,"
        " voted_for BLOB,"
        " snapshot_index INTEGER NOT NULL,"
        " snapshot_term INTEGER NOT NULL,"
        " snapshot_members BLOB NOT NULL,"
        " snapshot_data BLOB"
        ")"
    )
    db.execute("CREATE TABLE raft_log (idx INTEGER PRIMARY KEY NOT NULL, entry BLOB NOT NULL)")


class MemoryRaftStorage:
    """Storage that lives as long as the object: for simulations and single-process tests.

    Same contract as `RaftStorage`: `load()` gives back exactly what was saved, so a node
    rebuilt from it after a simulated crash has lost only what it never persisted.
    """

    def __init__(self, initial: DurableState | None = None) -> None:
        state = initial if initial is not None else DurableState.fresh()
        self.term = state.term
        self.voted_for = state.voted_for
        self.snapshot = state.snapshot
        self.entries: list[LogEntry] = list(state.entries)
        self.saves = 0

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def load(self) -> DurableState:
        return DurableState(self.term, self.voted_for, self.snapshot, tuple(self.entries))

    def bootstrap(self, members: Iterable[PeerId]) -> DurableState:
        """Found a group with `members`, unless this storage already holds any state."""
        if self.term == 0 and self.last_index == 0 and not self.snapshot.members:
            founded = DurableState.bootstrap(members)
            self.snapshot = founded.snapshot
        return self.load()

    def save_all(self, persists: Iterable[Persist]) -> None:
        for persist in persists:
            self.save(persist)

    def save(self, persist: Persist) -> None:
        self.saves += 1
        self.term = persist.term
        self.voted_for = persist.voted_for
        if persist.snapshot is not None:
            # entries up to the snapshot go; later ones stay unless truncate_from says
            drop = persist.snapshot.index - self.snapshot.index
            self.snapshot = persist.snapshot
            self.entries = self.entries[drop:]
        if persist.truncate_from is not None:
            keep = max(0, persist.truncate_from - self.snapshot.index - 1)
            del self.entries[keep:]
        if persist.entries:
            if persist.entries_start != self.last_index + 1:
                raise StoreError(
                    f"entries start at {persist.entries_start} but the stored log ends at "
                    f"{self.last_index}: this is a bug in lightbox-node's raft core"
                )
            self.entries.extend(persist.entries)


class RaftStorage:
    """Raft's durable state in the node's SQLite database (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        """Raises StoreError unless the raft tables exist and commits are fsync'd."""
        self._db = db
        conn = db.conn
        try:
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'raft_%'"
                )
            }
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the raft tables: {exc}") from exc
        if synchronous < _SYNCHRONOUS_FULL:
            raise StoreError(
                "the database connection does not fsync every commit (PRAGMA synchronous is "
                f"{synchronous}, Raft needs FULL = 2); open it with "
                "lightbox_node.store.open_database"
            )
        if not {"raft_state", "raft_log"} <= tables:
            raise StoreError(
                "the database has no raft tables; open it with lightbox_node.store."
                "open_database so that its migrations run (create_raft_tables)"
            )

    # -- reading ---------------------------------------------------------------------------------

    def load(self) -> DurableState:
        """The state last saved (a fresh state if none); StoreError if the data is damaged."""
        conn = self._db.conn
        try:
            row = conn.execute(
                "SELECT term, voted_for, snapshot_index, snapshot_term, snapshot_members,"
                " snapshot_data FROM raft_state WHERE id = 1"
            ).fetchone()
            rows = conn.execute("SELECT idx, entry FROM raft_log ORDER BY idx").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the raft log: {exc}") from exc
        if row is None:
            if rows:
                raise _damaged("log entries without a raft_state row")
            return DurableState.fresh()
        term, voted_for, snapshot_index, snapshot_term, members, data = row
        try:
            snapshot = Snapshot(
                _int(snapshot_index, "snapshot_index"),
                _int(snapshot_term, "snapshot_term"),
                parse_members(unpack(members)),
                None if data is None else bytes(data),
            )
            vote = None if voted_for is None else PeerId(bytes(voted_for))
            entries = []
            for expected, (index, blob) in enumerate(rows, start=snapshot.index + 1):
                if index != expected:
                    raise _damaged(f"log entry {index} where {expected} was expected")
                entries.append(parse_entry(unpack(bytes(blob), SNAPSHOT_LIMITS)))
        except (WireError, PeerIdError, ValueError, TypeError) as exc:
            raise _damaged(str(exc)) from exc
        return DurableState(_int(term, "term"), vote, snapshot, tuple(entries))

    # -- writing ---------------------------------------------------------------------------------

    def bootstrap(self, members: Iterable[PeerId]) -> DurableState:
        """Found a group with `members`, unless this database already holds raft state.

        Every founding member must be bootstrapped with the same members. A server that
        joins an existing group is not bootstrapped: it starts fresh and is added by the
        leader (`RaftNode.add_member`).
        """
        founded = DurableState.bootstrap(canonical_members(members))
        with self._transaction("found the raft group") as conn:
            exists = conn.execute("SELECT 1 FROM raft_state WHERE id = 1").fetchone()
            if exists is None:
                self._write_state(conn, founded.term, founded.voted_for, founded.snapshot)
        return self.load()

    def save(self, persist: Persist) -> None:
        """Write `persist` in one transaction, committed (and fsync'd) before returning."""
        self.save_all([persist])

    def save_all(self, persists: Iterable[Persist]) -> None:
        """Write several Persist actions, in order, in one transaction (group commit): one
        fsync for a batch of calls, whose other actions all wait until it returns."""
        with self._transaction("save raft state") as conn:
            for persist in persists:
                self._save(conn, persist)

    def _save(self, conn: sqlite3.Connection, persist: Persist) -> None:
        snapshot = persist.snapshot
        if snapshot is None:
            conn.execute(
                "INSERT INTO raft_state (id, term, voted_for, snapshot_index, snapshot_term,"
                " snapshot_members) VALUES (1, ?, ?, 0, 0, ?) ON CONFLICT (id) DO UPDATE"
                " SET term = excluded.term, voted_for = excluded.voted_for",
                [persist.term, _key(persist.voted_for), pack([])],
            )
        else:
            self._write_state(conn, persist.term, persist.voted_for, snapshot)
            conn.execute("DELETE FROM raft_log WHERE idx <= ?", [snapshot.index])
        if persist.truncate_from is not None:
            conn.execute("DELETE FROM raft_log WHERE idx >= ?", [persist.truncate_from])
        if persist.entries:
            conn.executemany(
                "INSERT INTO raft_log (idx, entry) VALUES (?, ?)",
                (
                    (persist.entries_start + offset, pack(entry.to_wire(), SNAPSHOT_LIMITS))
                    for offset, entry in enumerate(persist.entries)
                ),
            )

    def _write_state(
        self,
        conn: sqlite3.Connection,
        term: int,
        voted_for: PeerId | None,
        snapshot: Snapshot,
    ) -> None:
        conn.execute(
            "INSERT INTO raft_state (id, term, voted_for, snapshot_index, snapshot_term,"
            " snapshot_members, snapshot_data) VALUES (1, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET term = excluded.term,"
            " voted_for = excluded.voted_for, snapshot_index = excluded.snapshot_index,"
            " snapshot_term = excluded.snapshot_term,"
            " snapshot_members = excluded.snapshot_members,"
            " snapshot_data = excluded.snapshot_data",
            [
                term,
                _key(voted_for),
                snapshot.index,
                snapshot.term,
                pack([m.public_key for m in snapshot.members]),
                snapshot.data,
            ],
        )

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction, committed before the caller goes on, or nothing."""
        conn = self._db.conn
        if conn.in_transaction:
            raise StoreError(
                f"cannot {action}: a transaction is already open on the database connection, "
                "so the write could not be committed on return. This is a bug in "
                "lightbox-node: please report it with this message"
            )
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(
                f"could not {action}: {exc}. Check free disk space and that the database "
                "folder is writable; the node must stop rather than send what it could not "
                "save"
            ) from exc


def _key(peer: PeerId | None) -> bytes | None:
    return None if peer is None else peer.public_key


def _int(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise _damaged(f"{what} is not a non-negative integer")
    return value


def _damaged(detail: str) -> StoreError:
    return StoreError(
        f"the raft state in the database is damaged ({detail}); this member cannot safely "
        "rejoin with it. Move the database aside (or restore a backup), then have the "
        "registry leader remove this node and add it again"
    )


__all__ = ["MemoryRaftStorage", "RaftStorage", "create_raft_tables"]
