"""Opening the database: durable settings, forward migrations, refusal of unusable files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlite_utils import Database

from lightbox_node.errors import MigrationError, StoreError
from lightbox_node.store import (
    LATEST_SCHEMA_VERSION,
    MIGRATIONS,
    Migration,
    get_meta,
    open_database,
    schema_version,
    set_meta,
)


def _raw_user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _raw_table_names(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {name for (name,) in rows}
    finally:
        conn.close()


def _create_widgets(db: Database) -> None:
    db.execute("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")


def _fail_after_creating_gadgets(db: Database) -> None:
    db.execute("CREATE TABLE gadgets (id INTEGER PRIMARY KEY)")
    db["gadgets"].insert({"id": 1})
    raise RuntimeError("disk on fire")


def test_new_database_is_migrated_to_the_latest_version(database_path: Path) -> None:
    with open_database(database_path) as db:
        assert schema_version(db) == LATEST_SCHEMA_VERSION == len(MIGRATIONS)
        assert "node_meta" in db.table_names()


def test_reopening_a_current_database_changes_neither_version_nor_data(
    database_path: Path,
) -> None:
    with open_database(database_path) as db:
        set_meta(db, "first_started_at", "2025-01-01T00:00:00Z")
    with open_database(database_path) as db:
        assert schema_version(db) == LATEST_SCHEMA_VERSION
        assert get_meta(db, "first_started_at") == "2025-01-01T00:00:00Z"


def test_applied_migrations_are_not_run_again(database_path: Path) -> None:
    calls: list[int] = []

    def record(db: Database) -> None:
        calls.append(1)

    migrations = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "record a call", record))
    open_database(database_path, migrations).close()
    open_database(database_path, migrations).close()
    assert calls == [1]
    assert _raw_user_version(database_path) == len(migrations)


def test_an_older_database_gets_only_the_missing_migrations(database_path: Path) -> None:
    open_database(database_path).close()
    widgets = Migration(len(MIGRATIONS) + 1, "create widgets", _create_widgets)
    with open_database(database_path, (*MIGRATIONS, widgets)) as db:
        assert schema_version(db) == widgets.version
        assert "widgets" in db.table_names()


def test_database_from_a_newer_program_is_refused_naming_the_file(database_path: Path) -> None:
    open_database(database_path).close()
    conn = sqlite3.connect(database_path)
    conn.execute(f"PRAGMA user_version = {LATEST_SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(MigrationError) as caught:
        open_database(database_path)
    message = str(caught.value)
    assert str(database_path) in message
    assert "upgrade lightbox-node" in message
    assert _raw_user_version(database_path) == LATEST_SCHEMA_VERSION + 1


def test_failing_migration_rolls_back_and_keeps_the_previous_version(
    database_path: Path,
) -> None:
    open_database(database_path).close()
    failing = Migration(len(MIGRATIONS) + 1, "create gadgets", _fail_after_creating_gadgets)
    with pytest.raises(MigrationError) as caught:
        open_database(database_path, (*MIGRATIONS, failing))
    assert "create gadgets" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert _raw_user_version(database_path) == LATEST_SCHEMA_VERSION
    assert "gadgets" not in _raw_table_names(database_path)


def test_steps_before_a_failing_migration_stay_applied(database_path: Path) -> None:
    migrations = (
        Migration(1, "create widgets", _create_widgets),
        Migration(2, "create gadgets", _fail_after_creating_gadgets),
    )
    with pytest.raises(MigrationError):
        open_database(database_path, migrations)
    assert _raw_user_version(database_path) == 1
    assert _raw_table_names(database_path) == {"widgets"}


def test_migration_with_invalid_sql_is_reported_as_a_migration_error(database_path: Path) -> None:
    def broken_sql(db: Database) -> None:
        db.execute("CREATE TABLE oops (")

    with pytest.raises(MigrationError, match="broken sql"):
        open_database(database_path, (Migration(1, "broken sql", broken_sql),))
    assert _raw_user_version(database_path) == 0


def test_migration_that_commits_on_its_own_is_refused(database_path: Path) -> None:
    def commits(db: Database) -> None:
        db.conn.execute("CREATE TABLE widgets (id INTEGER PRIMARY KEY)")
        db.conn.commit()

    with pytest.raises(MigrationError, match="must not commit"):
        open_database(database_path, (Migration(1, "commits early", commits),))
    assert _raw_user_version(database_path) == 0


@pytest.mark.parametrize("versions", [(2,), (1, 3), (2, 1), (1, 1)])
def test_migrations_must_be_numbered_from_one_without_gaps(
    database_path: Path, versions: tuple[int, ...]
) -> None:
    migrations = [Migration(version, f"step {version}", _create_widgets) for version in versions]
    with pytest.raises(ValueError, match="numbered"):
        open_database(database_path, migrations)


def test_database_uses_write_ahead_logging(database_path: Path) -> None:
    with open_database(database_path) as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # WAL is a property of the file, so a plain connection sees it too.
    conn = sqlite3.connect(database_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_database_syncs_fully_and_enforces_foreign_keys(database_path: Path) -> None:
    with open_database(database_path) as db:
        assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_file_that_is_not_a_database_is_refused_naming_the_file(database_path: Path) -> None:
    database_path.write_bytes(b"these are holiday photos, not a database\n" * 200)
    with pytest.raises(StoreError) as caught:
        open_database(database_path)
    assert str(database_path) in str(caught.value)
    assert "move it aside" in str(caught.value)


def test_a_database_in_a_missing_folder_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "node.sqlite3"
    with pytest.raises(StoreError) as caught:
        open_database(path)
    assert str(path) in str(caught.value)


def test_the_connection_can_be_used_from_a_worker_thread(database_path: Path) -> None:
    db = open_database(database_path)
    failures: list[BaseException] = []

    def write_from_thread() -> None:
        try:
            set_meta(db, "written_by", "worker")
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=write_from_thread)
    thread.start()
    thread.join()
    assert failures == []
    assert get_meta(db, "written_by") == "worker"
    db.close()
