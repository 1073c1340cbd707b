"""Persistence: the node's SQLite database and its content-addressed blob store.

Everything here is synchronous; the trio shell calls it through `trio.to_thread.run_sync`.
"""

from sqlite_utils import Database

from lightbox_node.store.blob_id import BLOB_ID_PREFIX, BlobId, InvalidBlobId
from lightbox_node.store.blobs import BlobReader, BlobStore, BlobTooLarge, BlobWriter
from lightbox_node.store.database import open_database
from lightbox_node.store.journal import (
    JOB_COUNTERS,
    JOURNAL_LIMITS,
    JobJournal,
    TrustRow,
    TrustStore,
)
from lightbox_node.store.migrations import Migration, schema_version
from lightbox_node.store.node_meta import get_meta, set_meta, setdefault_meta

__all__ = [
    "BLOB_ID_PREFIX",
    "JOB_COUNTERS",
    "JOURNAL_LIMITS",
    "LATEST_SCHEMA_VERSION",
    "MIGRATIONS",
    "BlobId",
    "BlobReader",
    "BlobStore",
    "BlobTooLarge",
    "BlobWriter",
    "Database",
    "InvalidBlobId",
    "JobJournal",
    "Migration",
    "TrustRow",
    "TrustStore",
    "get_meta",
    "open_database",
    "schema_version",
    "set_meta",
    "setdefault_meta",
]


def __getattr__(name: str) -> object:
    """`MIGRATIONS` and `LATEST_SCHEMA_VERSION`, imported on first use (see `open_database`)."""
    if name in ("MIGRATIONS", "LATEST_SCHEMA_VERSION"):
        from lightbox_node.store import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
