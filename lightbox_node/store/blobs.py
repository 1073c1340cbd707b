"""The content-addressed blob store: files on disk named by the SHA-256 of their bytes.

Layout under the store's root::

    sha256/ab/cd/abcd…   one file per blob, fanned out by the first two bytes of the digest
    staging/             partial writes; renamed into place only once complete and fsynced
      blob-….partial     a write in progress (or left by a crash: swept at startup)
      fetch-<hex>.partial  the verified prefix of a fetch from peers, kept across broken
                         links so the fetch resumes where it stopped (see `open_partial`)
    chunks/ab/cd/<hex>.<chunk size>   the SHA-256 of each chunk of a blob, concatenated:
                         what peers check every chunk against (see `chunk_digests`)

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from lightbox_node.errors import BlobCorrupt, BlobNotFound, StoreError
from lightbox_node.store.blob_gc import StagedFetch, StoredBlob
from lightbox_node.store.blob_id import BlobId

READ_CHUNK_SIZE = 1 << 20
"""How much a whole-blob check reads at a time, so huge blobs never sit in memory at once."""

_BLOBS_DIR = "sha256"
_STAGING_DIR = "staging"
_CHUNKS_DIR = "chunks"
_STAGING_PREFIX = "blob-"
_FETCH_PREFIX = "fetch-"
_STAGING_SUFFIX = ".partial"
DIGEST_LEN = 32
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
            self._touch(blob_id)
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

    def _touch(self, blob_id: BlobId) -> None:
        """Storing a blob again restarts its garbage-collection grace period."""
        with _os_errors_as_store_errors("touch blob at", self.path_of(blob_id)):
            os.utime(self.path_of(blob_id))

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
                os.utime(final_path)
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

    def stored(self) -> Iterator[StoredBlob]:
        """Every blob with its size and modification time, for the garbage collector."""
        for blob_id in self.ids():
            try:
                stat = self.path_of(blob_id).stat()
            except FileNotFoundError:  # deleted while listing
                continue
            yield StoredBlob(blob_id, stat.st_mtime, stat.st_size)

    # -- chunk digests -----------------------------------------------------------------------

    def chunk_digests(self, blob_id: BlobId, chunk_size: int) -> bytes:
        """The SHA-256 of each `chunk_size` piece of the blob, concatenated (32 bytes each).

        Peers check every chunk they fetch against this list. It is computed once, while
        the whole blob is verified against its id (so a blob damaged on disk raises
        BlobCorrupt rather than being described to peers), and kept under chunks/.
        """
        _check_chunk_size(chunk_size)
        size = self.size(blob_id)
        cache = self._digests_path(blob_id, chunk_size)
        expected_len = DIGEST_LEN * _chunk_count(size, chunk_size)
        try:
            cached = cache.read_bytes()
            if len(cached) == expected_len:
                return cached
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"could not read chunk digests at {cache}: {exc}") from exc
        digests = bytearray()
        with self.open_reader(blob_id) as reader:
            while chunk := reader.read(chunk_size):
                digests += hashlib.sha256(chunk).digest()
        self._save_chunk_digests(blob_id, chunk_size, bytes(digests))
        return bytes(digests)

    def _digests_path(self, blob_id: BlobId, chunk_size: int) -> Path:
        digest = blob_id.hex_digest
        return self._root / _CHUNKS_DIR / digest[0:2] / digest[2:4] / f"{digest}.{chunk_size}"

    def _save_chunk_digests(self, blob_id: BlobId, chunk_size: int, digests: bytes) -> None:
        """Keep a verified digest list; a lost or torn cache file is only recomputed."""
        path = self._digests_path(blob_id, chunk_size)
        staged_file, staged_path = self._new_staging_file()
        try:
            with staged_file, _os_errors_as_store_errors("write chunk digests to", path):
                staged_file.write(digests)
            with _os_errors_as_store_errors("store chunk digests at", path):
                _make_directories_durably(path.parent)
                os.replace(staged_path, path)
        except BaseException:
            staged_path.unlink(missing_ok=True)
            raise

    # -- fetches that resume ---------------------------------------------------------------

    def open_partial(self, blob_id: BlobId, chunk_size: int) -> PartialBlob:
        """The staged prefix of a fetch of `blob_id`: new and empty, or kept from before.

        A kept prefix is cut to whole chunks and read back once, so the caller learns each
        chunk's digest (to check them against the digest list of whoever serves the rest)
        and the whole-blob hash can go on from there. Nothing is visible as a blob before
        `PartialBlob.commit` has checked the whole hash.
        """
        _check_chunk_size(chunk_size)
        staging = self._root / _STAGING_DIR
        path = staging / f"{_FETCH_PREFIX}{blob_id.hex_digest}{_STAGING_SUFFIX}"
        with _os_errors_as_store_errors("open a staging file in", staging):
            _make_directories_durably(staging)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        return PartialBlob(self, blob_id, os.fdopen(fd, "r+b"), path, chunk_size)

    def staged_fetches(self) -> list[StagedFetch]:
        """Kept prefixes of unfinished fetches, for the garbage collector."""
        staging = self._root / _STAGING_DIR
        found = []
        if not staging.is_dir():
            return found
        with _os_errors_as_store_errors("list the staging folder", staging):
            for entry in staging.iterdir():
                blob_id = _fetch_blob_id(entry.name)
                if blob_id is None:
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                found.append(StagedFetch(blob_id, stat.st_mtime, stat.st_size))
        return sorted(found, key=lambda fetch: fetch.blob_id)

    def remove_staged_fetch(self, blob_id: BlobId, modified_at: float | None = None) -> bool:
        """Drop the kept prefix of a fetch (only if still unmodified since `modified_at`)."""
        path = self._root / _STAGING_DIR / f"{_FETCH_PREFIX}{blob_id.hex_digest}{_STAGING_SUFFIX}"
        return _unlink_if_unchanged(path, modified_at)

    # -- removing --------------------------------------------------------------------------

    def delete(self, blob_id: BlobId) -> bool:
        """Remove the blob (and its chunk digests); returns whether it was there."""
        return self.delete_if_unchanged(blob_id, None)

    def delete_if_unchanged(self, blob_id: BlobId, modified_at: float | None) -> bool:
        """Remove the blob unless it was stored again since `modified_at` (None: always).

        The garbage collector decides from a listing; a blob stored again after that
        listing has a newer mtime and is spared.
        """
        path = self.path_of(blob_id)
        if not _unlink_if_unchanged(path, modified_at):
            return False
        with _os_errors_as_store_errors("delete blob at", path):
            _fsync_directory(path.parent)
            chunks = self._digests_path(blob_id, 1).parent
            if chunks.is_dir():
                for cached in chunks.glob(f"{blob_id.hex_digest}.*"):
                    cached.unlink(missing_ok=True)
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


def _unlink_if_unchanged(path: Path, modified_at: float | None) -> bool:
    with _os_errors_as_store_errors("delete", path):
        try:
            if modified_at is not None and path.stat().st_mtime != modified_at:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
    return True


def _fetch_blob_id(name: str) -> BlobId | None:
    """The blob a staged fetch file is for, or None for any other file."""
    if not (name.startswith(_FETCH_PREFIX) and name.endswith(_STAGING_SUFFIX)):
        return None
    try:
        return BlobId(name[len(_FETCH_PREFIX) : -len(_STAGING_SUFFIX)])
    except StoreError:
        return None


def _check_chunk_size(chunk_size: int) -> None:
    if type(chunk_size) is not int or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, not {chunk_size!r}")


def _chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


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


class PartialBlob:
    """A fetch in progress: a prefix of whole chunks in a staging file, hashed as it grows.

    Chunks arrive verified against a digest list (see `BlobStore.chunk_digests`) and are
    appended in order; `commit` checks the whole SHA-256 against the blob id and only then
    makes the blob visible. A commit that finds a mismatch keeps the file, so the caller can
    `truncate` to the part it still trusts (or `discard` it). Closing without commit keeps
    the prefix on disk for a later fetch to resume.

    Synchronous like the store; one thread at a time.
    """

    def __init__(
        self, store: BlobStore, blob_id: BlobId, file: BinaryIO, path: Path, chunk_size: int
    ) -> None:
        self._store = store
        self._blob_id = blob_id
        self._file = file
        self._path = path
        self._chunk_size = chunk_size
        self._finished = False
        try:
            with _os_errors_as_store_errors("read staged fetch", path):
                kept = os.fstat(file.fileno()).st_size
                self._hash, self._size, digests = self._rehash(kept - kept % chunk_size)
        except BaseException:
            file.close()
            raise
        self.resumed_digests: tuple[bytes, ...] = digests
        """The digest of each whole chunk kept from an earlier attempt, in order."""

    @property
    def blob_id(self) -> BlobId:
        return self._blob_id

    @property
    def size(self) -> int:
        """Bytes staged so far (always whole chunks, except a final short one)."""
        return self._size

    def _rehash(self, size: int) -> tuple[Any, int, tuple[bytes, ...]]:
        """Cut the file to `size` and hash it again from the start."""
        self._file.truncate(size)
        self._file.seek(0)
        whole = hashlib.sha256()
        digests = []
        for _ in range(_chunk_count(size, self._chunk_size)):
            chunk = self._file.read(self._chunk_size)
            whole.update(chunk)
            digests.append(hashlib.sha256(chunk).digest())
        self._file.seek(size)
        return whole, size, tuple(digests)

    def append(self, chunks: Sequence[bytes]) -> None:
        """Add verified chunks at the end, in order."""
        self._require_open()
        added = sum(len(chunk) for chunk in chunks)
        self._store._check_size(self._size + added)
        with _os_errors_as_store_errors("write", self._path):
            for chunk in chunks:
                self._file.write(chunk)
        for chunk in chunks:
            self._hash.update(chunk)
        self._size += added

    def truncate(self, size: int) -> None:
        """Keep only the first `size` bytes (a multiple of the chunk size)."""
        self._require_open()
        if not 0 <= size <= self._size or size % self._chunk_size:
            raise ValueError(f"cannot cut {self._size} staged bytes to {size}")
        with _os_errors_as_store_errors("truncate", self._path):
            self._file.flush()
            self._hash, self._size, _ = self._rehash(size)

    def commit(self, chunk_digests: bytes | None = None) -> BlobId:
        """Make the blob durable and visible if its bytes hash to its id.

        Raises BlobCorrupt on a mismatch and keeps the staged file open. `chunk_digests`,
        the list the chunks were checked against, is kept for serving peers.
        """
        self._require_open()
        actual = BlobId.from_digest(self._hash.digest())
        if actual != self._blob_id:
            raise BlobCorrupt(
                f"the {self._size} bytes fetched for blob {self._blob_id} hash to {actual}; "
                "they do not become a blob"
            )
        with _os_errors_as_store_errors("write", self._path):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        self._finished = True
        self._store._publish(self._path, self._blob_id, self._size)
        if chunk_digests is not None:
            self._store._save_chunk_digests(self._blob_id, self._chunk_size, chunk_digests)
        return self._blob_id

    def close(self) -> None:
        """Stop for now, keeping the staged prefix for a later fetch to resume."""
        if not self._finished:
            self._finished = True
            self._file.close()

    def discard(self) -> None:
        """Stop and delete the staged bytes (they were built on a lie)."""
        if not self._finished:
            self._finished = True
            self._file.close()
        self._path.unlink(missing_ok=True)

    def _require_open(self) -> None:
        if self._finished:
            raise ValueError("this staged fetch is already committed, closed or discarded")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


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
