"""Facts about this node kept in the database as text: first start time, last run version, …"""

from __future__ import annotations

from sqlite_utils import Database


def create_node_meta_table(db: Database) -> None:
    """Migration 1: a key/value table; frozen in time, later changes are new migrations."""
    db.execute(
        "CREATE TABLE node_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID"
    )


def get_meta(db: Database, key: str) -> str | None:
    """The value stored under `key`, or None if there is none."""
    row = db.execute("SELECT value FROM node_meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def set_meta(db: Database, key: str, value: str) -> None:
    """Store `value` under `key`, replacing any earlier value."""
    db.execute(
        "INSERT INTO node_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )


def setdefault_meta(db: Database, key: str, value: str) -> str:
    """Store `value` only if `key` has none yet, and return what is stored.

    For facts that must be recorded once and never overwritten, like the first start time.
    """
    db.execute("INSERT OR IGNORE INTO node_meta (key, value) VALUES (?, ?)", [key, value])
    stored = get_meta(db, key)
    assert stored is not None  # just inserted or already there
    return stored
