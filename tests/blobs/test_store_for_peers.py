"""The blob store's side of the network: digest lists, staged fetches that resume, ages."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from lightbox_node.errors import BlobCorrupt
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.store.blobs import BlobTooLarge

CHUNK = 1024
DATA = os.urandom(5 * CHUNK + 100)
BLOB = BlobId.of_bytes(DATA)


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def digests(data: bytes) -> bytes:
    return b"".join(hashlib.sha256(chunk).digest() for chunk in chunks(data))


def test_a_blobs_digest_list_is_computed_once_and_kept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(DATA)
    assert store.chunk_digests(BLOB, CHUNK) == digests(DATA)
    cached = list((tmp_path / "chunks").rglob(f"{BLOB.hex_digest}.{CHUNK}"))
    assert len(cached) == 1
    cached[0].write_bytes(b"\0" * len(digests(DATA)))  # proof that the cache is read
    assert store.chunk_digests(BLOB, CHUNK) == b"\0" * len(digests(DATA))
    cached[0].write_bytes(b"torn")
    assert store.chunk_digests(BLOB, CHUNK) == digests(DATA)


def test_a_damaged_blob_gets_no_digest_list(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(DATA)
    store.path_of(BLOB).write_bytes(b"X" + DATA[1:])
    with pytest.raises(BlobCorrupt):
        store.chunk_digests(BLOB, CHUNK)


def test_deleting_a_blob_deletes_its_digest_lists(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(DATA)
    store.chunk_digests(BLOB, CHUNK)
    store.chunk_digests(BLOB, 2 * CHUNK)
    assert store.delete(BLOB)
    assert not list((tmp_path / "chunks").rglob("*.*"))


def test_a_staged_fetch_becomes_a_blob_only_when_the_whole_hash_matches(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.open_partial(BLOB, CHUNK) as partial:
        partial.append(chunks(DATA)[:3])
        assert not store.has(BLOB)
        partial.append(chunks(DATA)[3:])
        assert partial.commit(digests(DATA)) == BLOB
    assert store.get(BLOB) == DATA
    assert store.chunk_digests(BLOB, CHUNK) == digests(DATA)
    assert store.staged_fetches() == []


def test_a_mismatching_commit_keeps_the_staged_bytes_for_the_caller_to_cut(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path)
    wrong = DATA[:-1] + b"?"
    with store.open_partial(BLOB, CHUNK) as partial:
        partial.append(chunks(wrong))
        with pytest.raises(BlobCorrupt, match="do not become a blob"):
            partial.commit()
        assert not store.has(BLOB)
        partial.truncate(5 * CHUNK)
        partial.append([DATA[5 * CHUNK :]])
        partial.commit()
    assert store.get(BLOB) == DATA


def test_a_kept_prefix_is_resumed_with_its_chunk_digests(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.open_partial(BLOB, CHUNK) as partial:
        partial.append(chunks(DATA)[:3])
        partial.append([b"half"])  # a torn last chunk, as a crash might leave
    [kept] = store.staged_fetches()
    assert kept.blob_id == BLOB and kept.size == 3 * CHUNK + 4
    with store.open_partial(BLOB, CHUNK) as partial:
        assert partial.size == 3 * CHUNK
        assert list(partial.resumed_digests) == [
            hashlib.sha256(c).digest() for c in chunks(DATA)[:3]
        ]
        partial.append(chunks(DATA)[3:])
        partial.commit()
    assert store.get(BLOB) == DATA


def test_a_discarded_fetch_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    partial = store.open_partial(BLOB, CHUNK)
    partial.append(chunks(DATA)[:1])
    partial.discard()
    assert store.staged_fetches() == [] and not store.has(BLOB)


def test_a_staged_fetch_respects_the_size_limit(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_blob_size=2 * CHUNK)
    with store.open_partial(BLOB, CHUNK) as partial, pytest.raises(BlobTooLarge):
        partial.append(chunks(DATA)[:3])


def test_staged_fetches_survive_the_startup_sweep_of_torn_writes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with store.open_partial(BLOB, CHUNK) as partial:
        partial.append(chunks(DATA)[:1])
    store.open_writer().write(b"torn")  # a write that never finished
    assert store.remove_leftover_staging_files() == 1
    assert [fetch.blob_id for fetch in store.staged_fetches()] == [BLOB]
    assert store.remove_staged_fetch(BLOB) and store.staged_fetches() == []


def test_storing_a_blob_again_makes_it_young_again(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(DATA)
    old = time.time() - 7200
    os.utime(store.path_of(BLOB), (old, old))
    [listed] = store.stored()
    assert listed.modified_at == pytest.approx(old) and listed.size == len(DATA)
    store.put(DATA)
    [again] = store.stored()
    assert again.modified_at > old + 3600
    assert not store.delete_if_unchanged(BLOB, listed.modified_at)
    assert store.delete_if_unchanged(BLOB, again.modified_at)
