"""Write transactions that are durable when they return, and batches of them.

Every writer of the node's database goes through `committed`: BEGIN IMMEDIATE (so a busy
database fails before any change, not halfway through), COMMIT (fsynced: the connection
runs with synchronous=FULL) before the caller goes on, ROLLBACK on any error, and sqlite3
errors turned into `StoreError` messages a person can act on. `batch` makes several such
writes one transaction, so a group commit costs one fsync.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlite_utils import Database

from lightbox_node.errors import StoreError

_BATCHES: set[int] = set()
"""Connections (by identity) inside `batch()`; sqlite3.Connection takes no attributes."""


@contextmanager
def committed(
    db: Database, action: str, *, on_conflict: type[StoreError] = StoreError
) -> Iterator[sqlite3.Connection]:
    """One write transaction, committed before the block's caller goes on.

    Inside `batch()` it joins the batch's transaction instead. A constraint violation
    raises `on_conflict` (SQLite names the constraint and column, never the value).
    """
    conn = db.conn
    if id(conn) in _BATCHES:
        yield conn
        return
    if conn.in_transaction:
        raise StoreError(
            f"cannot {action}: a transaction is already open on the database connection, so "
            "the write could not be committed on return. This is a bug in lightbox-node: "
            "please report it with this message"
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
    except sqlite3.IntegrityError as exc:
        raise on_conflict(f"could not {action}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(
            f"could not {action}: {exc}. Check free disk space and that the database "
            "folder is writable"
        ) from exc


@contextmanager
def batch(db: Database, action: str) -> Iterator[None]:
    """Make every `committed` write inside the block one transaction: all or nothing."""
    with committed(db, action) as conn:
        _BATCHES.add(id(conn))
        try:
            yield
        finally:
            _BATCHES.discard(id(conn))
