"""Forward-only schema migrations, each applied in its own transaction.

The schema version is SQLite's `PRAGMA user_version`, not a table: it lives in the file
header, so it can be read before any table exists, and it is written in the same transaction
as the migration's own changes, so a migration and its version number commit or roll back
together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from lightbox_node.errors import MigrationError


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema's history: the version it brings the database to, and how.

    `apply` runs inside an open transaction. It may use plain SQL (`db.execute`) or
    sqlite-utils table helpers, which nest as savepoints; it must never commit, roll back
    or call `conn.executescript` (which commits), or the step would no longer be atomic.
    """

    version: int
    name: str
    apply: Callable[[Database], None]


def schema_version(db: Database) -> int:
    """The number of the last migration applied to this database (0 for a new one)."""
    version: int = db.conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def check_migration_sequence(migrations: Sequence[Migration]) -> None:
    """Refuse a history with gaps or reordering: versions must read 1, 2, 3, … in order."""
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, … in order, not {versions}")


def apply_migrations(db: Database, migrations: Sequence[Migration], path: Path) -> int:
    """Bring the database at `path` up to the last of `migrations`; returns the new version.

    Already applied steps are skipped, so running this again is a no-op.
    """
    check_migration_sequence(migrations)
    known = len(migrations)
    found = schema_version(db)
    if found > known:
        raise MigrationError(
            f"{path} has schema version {found}, but this lightbox-node knows versions up to "
            f"{known} only: the file was written by a newer lightbox-node; upgrade lightbox-node "
            "to open it"
        )
    for migration in migrations[found:]:
        _apply_one(db, migration, path)
    return schema_version(db)


def _apply_one(db: Database, migration: Migration, path: Path) -> None:
    conn = db.conn
    # IMMEDIATE takes the write lock before the version is read, so two processes opening
    # the same file cannot both apply the same step.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if schema_version(db) >= migration.version:
            conn.execute("COMMIT")
            return
        migration.apply(db)
        if not conn.in_transaction:
            raise MigrationError(
                f"migration {migration.version} ({migration.name}) ended the transaction it "
                "runs in; a migration must not commit, roll back or use executescript"
            )
        conn.execute(f"PRAGMA user_version = {migration.version:d}")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, MigrationError) or not isinstance(exc, Exception):
            raise
        raise MigrationError(
            f"migration {migration.version} ({migration.name}) failed on {path}: {exc}; "
            f"the database was left unchanged at schema version {migration.version - 1}. "
            "This is a bug in lightbox-node: please report it with this message"
        ) from exc
