"""Fixtures for the store tests: real files in a fresh temporary folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightbox_node.store import BlobStore


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    return tmp_path / "node.sqlite3"


@pytest.fixture
def blob_store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")
