"""Opening the node's SQLite database: durable settings first, then pending migrations.

The database is returned as a plain `sqlite_utils.Database`, so features use sqlite-utils
directly; this module only guarantees how the file is opened and that its schema is current.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from sqlite_utils import Database

from lightbox_node.errors import StoreError
from lightbox_node.store.migrations import Migration, apply_migrations

BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another connection's lock before giving up."""


def open_database(
    path: str | os.PathLike[str], migrations: Sequence[Migration] | None = None
) -> Database:
    """Open (or create) the database file at `path` and bring its schema up to date.

    Raises StoreError if the file cannot be opened or is not a SQLite database, and
    MigrationError if it is newer than this program or a migration fails.

    The connection may be used from any thread (the trio shell hands it to worker threads),
    but from one thread at a time: callers serialise access.
    """
    if migrations is None:
        # The node's schema names tables of many packages; importing it lazily keeps the
        # store importable from those packages without a cycle.
        from lightbox_node.store.schema import MIGRATIONS

        migrations = MIGRATIONS
    path = Path(path)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from exc
    try:
        # Plugins are off so that whatever happens to be installed cannot change the connection.
        db = Database(conn, execute_plugins=False)
        _configure_durability(db, path)
        apply_migrations(db, migrations, path)
    except sqlite3.Error as exc:
        conn.close()
        raise _unusable(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return db


def _configure_durability(db: Database, path: Path) -> None:
    """Write-ahead logging, a full fsync at every commit, and enforced foreign keys.

    WAL lets readers run while one writer commits; with synchronous=FULL a committed
    transaction survives a power cut, which the job journal relies on before acknowledging.
    """
    conn = db.conn
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(
            f"SQLite could not switch {path} to write-ahead logging (journal mode stays "
            f"{mode!r}); keep the database on a local disk rather than a network share"
        )
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")


def _unusable(path: Path, exc: sqlite3.Error) -> StoreError:
    return StoreError(
        f"cannot use the database {path}: {exc}. Check that its folder exists and is writable; "
        "if the file is damaged or not a lightbox-node database, move it aside (or restore a "
        "backup) and start lightbox-node again"
    )
