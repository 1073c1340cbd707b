"""The node_meta key/value table: facts the node records about itself."""

from __future__ import annotations

from pathlib import Path

from lightbox_node.store import get_meta, open_database, set_meta, setdefault_meta


def test_missing_key_reads_as_none(database_path: Path) -> None:
    with open_database(database_path) as db:
        assert get_meta(db, "first_started_at") is None


def test_set_value_is_read_back_after_reopening(database_path: Path) -> None:
    with open_database(database_path) as db:
        set_meta(db, "first_started_at", "2025-01-01T00:00:00Z")
    with open_database(database_path) as db:
        assert get_meta(db, "first_started_at") == "2025-01-01T00:00:00Z"


def test_set_replaces_the_earlier_value(database_path: Path) -> None:
    with open_database(database_path) as db:
        set_meta(db, "last_version", "0.1.0")
        set_meta(db, "last_version", "0.2.0")
        assert get_meta(db, "last_version") == "0.2.0"


def test_setdefault_keeps_the_first_value_recorded(database_path: Path) -> None:
    with open_database(database_path) as db:
        assert setdefault_meta(db, "first_started_at", "first") == "first"
        assert setdefault_meta(db, "first_started_at", "second") == "first"
        assert get_meta(db, "first_started_at") == "first"
