"""The content-addressed blob store: files on disk named by the SHA-256 of their bytes.

Layout under the store's root::

    sha256/ab/cd/abcd…   one file per blob, fanned out by the first two bytes of the digest
    staging/             partial writes; renamed into place only once complete and fsynced

Writing to a staging file, fsyncing it, renaming it into place and fsyncing the directory
means a crash leaves either the whole blob or no blob, never a torn one. All staging files
live in one folder on the same file system as the blobs (so the rename stays atomic), which
keeps them out of listings and makes leftovers from a crash easy to sweep.

Synchronous on purpose: the trio shell calls it through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from lightbox_node.errors import BlobCorrupt, BlobNotFound, StoreError
from lightbox_node.store.blob_id import BlobId

READ_CHUNK_SIZE = 1 << 20
"""How much a whole-blob check reads at a time, so huge blobs never sit in memory at once."""

_BLOBS_DIR = "sha256"
_STAGING_DIR = "staging"
_STAGING_PREFIX = "blob-"
_STAGING_SUFFIX = ".partial"
_HEX_DIGITS = frozenset("0123456789abcdef")


class BlobTooLarge(StoreError):
    """A blob is over the store's configured maximum size."""


def _fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directories_durably(directory: Path) -> None:
    """Create `directory` and any missing parents, fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for new_directory in reversed(missing):
        new_directory.mkdir(exist_ok=True)  # another writer may have made it first
        _fsync_directory(new_directory.parent)


@contextmanager
def _os_errors_as_store_errors(action: str, path: Path) -> Iterator[None]:
    """Turn a file-system failure (disk full, permissions) into a message a person can act on."""
    try:
        yield
    except OSError as exc:
        raise StoreError(
            f"could not {action} {path}: {exc.strerror or exc}; "
            "check free space and permissions of the blob folder"
        ) from exc


class BlobStore:
    """Stores, reads and checks blobs in one folder; every read of a whole blob is verified."""

    def __init__(self, root: str | os.PathLike[str], *, max_blob_size: int | None = None) -> None:
        if max_blob_size is not None and max_blob_size < 0:
            raise ValueError(f"max_blob_size must be at least 0, not {max_blob_size}")
        self._root = Path(root)
        self._max_blob_size = max_blob_size

    @property
    def root(self) -> Path:
        return self._root

    @property
    def max_blob_size(self) -> int | None:
        return self._max_blob_size

    def path_of(self, blob_id: BlobId) -> Path:
        """Where the blob lives (or would live); safe because a BlobId is only hex digits."""
        digest = blob_id.hex_digest
        return self._root / _BLOBS_DIR / digest[0:2] / digest[2:4] / digest

    # -- writing ---------------------------------------------------------------------------

    def put(self, data: bytes) -> BlobId:
        """Store `data` durably and return its id; storing the same bytes again is a no-op."""
        self._check_size(len(data))
        blob_id = BlobId.of_bytes(data)
        if self._holds_complete_copy(blob_id, len(data)):
            return blob_id
        staged_file, staged_path = self._new_staging_file()
        try:
            with staged_file, _os_errors_as_store_errors("write", staged_path):
                staged_file.write(data)
                staged_file.flush()
                os.fsync(staged_file.fileno())
            self._publish(staged_path, blob_id, len(data))
        except BaseException:
            staged_path.unlink(missing_ok=True)
            raise
        return blob_id

    def open_writer(self, expected: BlobId | None = None) -> BlobWriter:
        """Start streaming a blob in chunks; give `expected` to verify bytes fetched from a peer.

        Use it as a context manager: leaving the block without `commit()` discards the bytes.
        """
        staged_file, staged_path = self._new_staging_file()
        return BlobWriter(self, staged_file, staged_path, expected)

    def _check_size(self, size: int) -> None:
        if self._max_blob_size is not None and size > self._max_blob_size:
            raise BlobTooLarge(
                f"a blob of {size} bytes or more is over this store's limit of "
                f"{self._max_blob_size} bytes (max_blob_size)"
            )

    def _holds_complete_copy(self, blob_id: BlobId, size: int) -> bool:
        # A size mismatch means a torn or truncated copy: writing again repairs it.
        try:
            return self.path_of(blob_id).stat().st_size == size
        except FileNotFoundError:
            return False

    def _new_staging_file(self) -> tuple[BinaryIO, Path]:
        staging = self._root / _STAGING_DIR
        with _os_errors_as_store_errors("create a staging file in", staging):
            _make_directories_durably(staging)
            fd, name = tempfile.mkstemp(dir=staging, prefix=_STAGING_PREFIX, suffix=_STAGING_SUFFIX)
        return os.fdopen(fd, "wb"), Path(name)

    def _publish(self, staged_path: Path, blob_id: BlobId, size: int) -> None:
        """Rename a complete, fsynced staging file into place and make the rename durable."""
        final_path = self.path_of(blob_id)
        with _os_errors_as_store_errors("store blob at", final_path):
            if self._holds_complete_copy(blob_id, size):
                staged_path.unlink()
                return
            _make_directories_durably(final_path.parent)
            os.replace(staged_path, final_path)
            _fsync_directory(final_path.parent)

    # -- reading ---------------------------------------------------------------------------

    def has(self, blob_id: BlobId) -> bool:
        """Whether a file for the blob is here (its bytes are checked only when read)."""
        return self.path_of(blob_id).is_file()

    def size(self, blob_id: BlobId) -> int:
        """The stored blob's length in bytes."""
        path = self.path_of(blob_id)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise self._not_found(blob_id) from None

    def get(self, blob_id: BlobId) -> bytes:
        """The blob's bytes, after checking that they still hash to its id."""
        path = self.path_of(blob_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._not_found(blob_id) from None
        except OSError as exc:
            raise StoreError(f"could not read blob {blob_id} at {path}: {exc}") from exc
        actual = BlobId.of_bytes(data)
        if actual != blob_id:
            raise self._corrupt(blob_id, actual)
        return data

    def open_reader(self, blob_id: BlobId) -> BlobReader:
        """Open the blob for reading front to back; reaching its end checks its hash."""
        path = self.path_of(blob_id)
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise self._not_found(blob_id) from None
        except OSError as exc:
            raise StoreError(f"could not open blob {blob_id} at {path}: {exc}") from exc
        return BlobReader(self, blob_id, file)

    def read_chunk(self, blob_id: BlobId, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`, unverified: for serving peers piece by piece.

        Checking the whole blob for every piece would make serving cost quadratic; the
        receiver verifies instead, when it commits its writer with `expected=blob_id`.
        """
        if offset < 0 or size < 0:
            raise ValueError(f"offset and size must be at least 0, not {offset} and {size}")
        path = self.path_of(blob_id)
        try:
            with path.open("rb") as file:
                file.seek(offset)
                return file.read(size)
        except FileNotFoundError:
            raise self._not_found(blob_id) from None
        except OSError as exc:
            raise StoreError(f"could not read blob {blob_id} at {path}: {exc}") from exc

    def verify(self, blob_id: BlobId) -> None:
        """Check the stored bytes against the id without holding them all in memory."""
        with self.open_reader(blob_id) as reader:
            while reader.read(READ_CHUNK_SIZE):
                pass

    def ids(self) -> Iterator[BlobId]:
        """The ids of all stored blobs, in order; stray files in the tree are ignored."""
        top = self._root / _BLOBS_DIR
        for first in _sorted_subdirectories(top):
            for second in _sorted_subdirectories(first):
                for entry in sorted(second.iterdir()):
                    name = entry.name
                    if name[0:2] != first.name or name[2:4] != second.name:
                        continue
                    try:
                        blob_id = BlobId(name)
                    except StoreError:
                        continue
                    if entry.is_file():
                        yield blob_id

    def __iter__(self) -> Iterator[BlobId]:
        return self.ids()

    # -- removing --------------------------------------------------------------------------

    def delete(self, blob_id: BlobId) -> bool:
        """Remove the blob; returns whether it was there."""
        path = self.path_of(blob_id)
        with _os_errors_as_store_errors("delete blob at", path):
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_directory(path.parent)
        return True

    def remove_leftover_staging_files(self) -> int:
        """Delete partial writes left by a crash; returns how many were removed.

        Call it at startup, before any writer runs: it cannot tell a leftover from a write
        that is still in progress.
        """
        staging = self._root / _STAGING_DIR
        if not staging.is_dir():
            return 0
        removed = 0
        with _os_errors_as_store_errors("clean the staging folder", staging):
            for entry in staging.iterdir():
                if entry.name.startswith(_STAGING_PREFIX) and entry.name.endswith(_STAGING_SUFFIX):
                    entry.unlink(missing_ok=True)
                    removed += 1
        return removed

    # -- errors ----------------------------------------------------------------------------

    def _not_found(self, blob_id: BlobId) -> BlobNotFound:
        return BlobNotFound(
            f"blob {blob_id} is not stored here ({self.path_of(blob_id)}); "
            "fetch it from a peer that has it"
        )

    def _corrupt(self, blob_id: BlobId, actual: BlobId) -> BlobCorrupt:
        path = self.path_of(blob_id)
        return BlobCorrupt(
            f"blob {blob_id} at {path} is corrupt: its bytes hash to {actual} instead; "
            "delete the file (BlobStore.delete) and fetch the blob again from a peer"
        )


def _sorted_subdirectories(directory: Path) -> list[Path]:
    """Two-hex-digit fan-out folders of `directory`; anything else is not ours to list."""
    if not directory.is_dir():
        return []
    return sorted(
        entry
        for entry in directory.iterdir()
        if len(entry.name) == 2 and set(entry.name) <= _HEX_DIGITS and entry.is_dir()
    )


class BlobWriter:
    """Streams one blob into the store, hashing as it goes; nothing is visible before commit."""

    def __init__(
        self, store: BlobStore, file: BinaryIO, staged_path: Path, expected: BlobId | None
    ) -> None:
        self._store = store
        self._file = file
        self._staged_path = staged_path
        self._expected = expected
        self._hash = hashlib.sha256()
        self._size = 0
        self._finished = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, chunk: bytes) -> None:
        """Append `chunk`; refuses (and discards everything) once over the store's size limit."""
        self._require_open()
        try:
            self._store._check_size(self._size + len(chunk))
            with _os_errors_as_store_errors("write", self._staged_path):
                self._file.write(chunk)
        except BaseException:
            self.abort()
            raise
        self._hash.update(chunk)
        self._size += len(chunk)

    def commit(self) -> BlobId:
        """Make the blob durable and visible under its id, and return the id.

        Raises BlobCorrupt, storing nothing, if the bytes do not match `expected`.
        """
        self._require_open()
        try:
            with _os_errors_as_store_errors("write", self._staged_path):
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            blob_id = BlobId.from_digest(self._hash.digest())
            if self._expected is not None and blob_id != self._expected:
                raise BlobCorrupt(
                    f"the bytes received for blob {self._expected} hash to {blob_id} instead; "
                    "they were discarded: fetch the blob again, preferably from another peer"
                )
            self._store._publish(self._staged_path, blob_id, self._size)
        except BaseException:
            self.abort()
            raise
        self._finished = True
        return blob_id

    def abort(self) -> None:
        """Discard everything written; does nothing after commit or a previous abort."""
        if self._finished:
            return
        self._finished = True
        self._file.close()
        self._staged_path.unlink(missing_ok=True)

    def _require_open(self) -> None:
        if self._finished:
            raise ValueError("this blob writer is already committed or aborted")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()


class BlobReader:
    """Reads one stored blob front to back and checks its hash when the end is reached.

    The read that reaches the end raises BlobCorrupt instead of returning if the bytes were
    altered, so whoever reads to the end never mistakes a damaged blob for a good one.
    """

    def __init__(self, store: BlobStore, blob_id: BlobId, file: BinaryIO) -> None:
        self._store = store
        self._blob_id = blob_id
        self._file = file
        self._hash = hashlib.sha256()
        self._checked = False

    @property
    def blob_id(self) -> BlobId:
        return self._blob_id

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all remaining when negative); b"" at the end, once verified."""
        data = self._file.read(size)
        self._hash.update(data)
        if not self._checked and (size < 0 or not data or self._at_end()):
            self._checked = True
            actual = BlobId.from_digest(self._hash.digest())
            if actual != self._blob_id:
                raise self._store._corrupt(self._blob_id, actual)
        return data

    def _at_end(self) -> bool:
        return self._file.tell() >= os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
