"""The blob store: durable, content-addressed, verified on read, never left half-written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightbox_node.errors import BlobCorrupt, BlobNotFound
from lightbox_node.store import BlobId, BlobStore, BlobTooLarge


def _all_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def _flip_one_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_put_then_get_returns_the_same_bytes(blob_store: BlobStore) -> None:
    data = os.urandom(10_000)
    assert blob_store.get(blob_store.put(data)) == data


def test_put_returns_the_sha256_of_the_bytes(blob_store: BlobStore) -> None:
    data = os.urandom(10_000)
    assert str(blob_store.put(data)) == "sha256-" + hashlib.sha256(data).hexdigest()


def test_empty_blob_round_trips(blob_store: BlobStore) -> None:
    assert blob_store.get(blob_store.put(b"")) == b""


def test_blob_is_stored_under_a_two_level_fan_out(blob_store: BlobStore) -> None:
    blob_id = blob_store.put(b"a photo")
    digest = blob_id.hex_digest
    expected = blob_store.root / "sha256" / digest[:2] / digest[2:4] / digest
    assert blob_store.path_of(blob_id) == expected
    assert expected.read_bytes() == b"a photo"


def test_putting_the_same_bytes_twice_stores_one_file(blob_store: BlobStore) -> None:
    first = blob_store.put(b"same bytes")
    second = blob_store.put(b"same bytes")
    assert first == second
    assert _all_files(blob_store.root) == [blob_store.path_of(first)]


def test_put_leaves_no_staging_file_behind(blob_store: BlobStore) -> None:
    ids = [blob_store.put(os.urandom(1000)) for _ in range(5)]
    assert _all_files(blob_store.root) == sorted(blob_store.path_of(i) for i in ids)


def test_put_replaces_a_truncated_copy(blob_store: BlobStore) -> None:
    data = os.urandom(1000)
    blob_id = blob_store.put(data)
    path = blob_store.path_of(blob_id)
    path.write_bytes(data[:10])
    assert blob_store.put(data) == blob_id
    assert blob_store.get(blob_id) == data


def test_blob_altered_on_disk_is_reported_corrupt_on_read(blob_store: BlobStore) -> None:
    blob_id = blob_store.put(os.urandom(1000))
    path = blob_store.path_of(blob_id)
    _flip_one_byte(path, 500)
    with pytest.raises(BlobCorrupt) as caught:
        blob_store.get(blob_id)
    message = str(caught.value)
    assert str(blob_id) in message
    assert str(path) in message
    assert "delete" in message


def test_blob_altered_on_disk_fails_verification_and_a_full_streamed_read(
    blob_store: BlobStore,
) -> None:
    blob_id = blob_store.put(os.urandom(3000))
    _flip_one_byte(blob_store.path_of(blob_id), 2999)
    with pytest.raises(BlobCorrupt):
        blob_store.verify(blob_id)
    with blob_store.open_reader(blob_id) as reader, pytest.raises(BlobCorrupt):
        while reader.read(1000):
            pass


def test_streamed_read_of_an_intact_blob_returns_all_bytes(blob_store: BlobStore) -> None:
    data = os.urandom(2500)
    blob_id = blob_store.put(data)
    pieces = []
    with blob_store.open_reader(blob_id) as reader:
        while piece := reader.read(1000):
            pieces.append(piece)
    assert b"".join(pieces) == data
    blob_store.verify(blob_id)


def test_missing_blob_is_reported_not_found(blob_store: BlobStore) -> None:
    blob_id = BlobId.of_bytes(b"never stored")
    assert not blob_store.has(blob_id)
    with pytest.raises(BlobNotFound, match=str(blob_id)):
        blob_store.get(blob_id)
    with pytest.raises(BlobNotFound):
        blob_store.size(blob_id)
    with pytest.raises(BlobNotFound):
        blob_store.open_reader(blob_id)
    with pytest.raises(BlobNotFound):
        blob_store.read_chunk(blob_id, 0, 10)


def test_has_and_size_describe_a_stored_blob(blob_store: BlobStore) -> None:
    blob_id = blob_store.put(b"12345")
    assert blob_store.has(blob_id)
    assert blob_store.size(blob_id) == 5


def test_read_chunk_returns_the_requested_range(blob_store: BlobStore) -> None:
    data = os.urandom(1000)
    blob_id = blob_store.put(data)
    assert blob_store.read_chunk(blob_id, 100, 50) == data[100:150]
    assert blob_store.read_chunk(blob_id, 990, 50) == data[990:]
    assert blob_store.read_chunk(blob_id, 5000, 50) == b""


def test_read_chunk_refuses_negative_offsets_and_sizes(blob_store: BlobStore) -> None:
    blob_id = blob_store.put(b"data")
    with pytest.raises(ValueError):
        blob_store.read_chunk(blob_id, -1, 1)
    with pytest.raises(ValueError):
        blob_store.read_chunk(blob_id, 0, -1)


def test_delete_removes_the_blob_and_reports_whether_it_was_there(
    blob_store: BlobStore,
) -> None:
    blob_id = blob_store.put(b"to be deleted")
    assert blob_store.delete(blob_id) is True
    assert not blob_store.has(blob_id)
    assert blob_store.delete(blob_id) is False


def test_ids_lists_stored_blobs_in_order_and_ignores_stray_files(
    blob_store: BlobStore,
) -> None:
    ids = {blob_store.put(os.urandom(100)) for _ in range(10)}
    some_id = next(iter(ids))
    # Files that are not blobs at their proper place must not be listed.
    (blob_store.path_of(some_id).parent / "notes.txt").write_text("hello")
    misplaced = BlobId.of_bytes(b"misplaced")
    (blob_store.path_of(some_id).parent / misplaced.hex_digest).write_bytes(b"misplaced")
    (blob_store.root / "sha256" / "zz").mkdir()
    assert list(blob_store.ids()) == sorted(ids)
    assert list(blob_store) == sorted(ids)


def test_empty_store_lists_no_ids(tmp_path: Path) -> None:
    assert list(BlobStore(tmp_path / "never-created")) == []


def test_streamed_blob_has_the_same_id_as_put(blob_store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    with blob_store.open_writer() as writer:
        for start in range(0, len(data), 7_000):
            writer.write(data[start : start + 7_000])
        streamed_id = writer.commit()
    assert streamed_id == BlobStore(tmp_path / "other").put(data)
    assert blob_store.get(streamed_id) == data
    assert _all_files(blob_store.root) == [blob_store.path_of(streamed_id)]


def test_streamed_blob_is_invisible_until_committed(blob_store: BlobStore) -> None:
    blob_id = BlobId.of_bytes(b"chunk")
    with blob_store.open_writer() as writer:
        writer.write(b"chunk")
        assert not blob_store.has(blob_id)
        writer.commit()
    assert blob_store.has(blob_id)


def test_aborted_streaming_write_leaves_nothing_behind(blob_store: BlobStore) -> None:
    with pytest.raises(RuntimeError), blob_store.open_writer() as writer:
        writer.write(b"half a photo")
        raise RuntimeError("peer went away")
    assert _all_files(blob_store.root) == []
    assert list(blob_store) == []


def test_streaming_write_left_without_commit_is_discarded(blob_store: BlobStore) -> None:
    with blob_store.open_writer() as writer:
        writer.write(b"forgotten")
    assert _all_files(blob_store.root) == []


def test_writer_refuses_use_after_commit(blob_store: BlobStore) -> None:
    with blob_store.open_writer() as writer:
        writer.write(b"done")
        writer.commit()
        with pytest.raises(ValueError):
            writer.write(b"more")
        with pytest.raises(ValueError):
            writer.commit()


def test_streamed_bytes_that_do_not_match_the_expected_id_are_discarded(
    blob_store: BlobStore,
) -> None:
    expected = BlobId.of_bytes(b"the real weights")
    with blob_store.open_writer(expected) as writer:
        writer.write(b"tampered weights")
        with pytest.raises(BlobCorrupt, match=str(expected)):
            writer.commit()
    assert _all_files(blob_store.root) == []


def test_streamed_bytes_that_match_the_expected_id_are_stored(blob_store: BlobStore) -> None:
    expected = BlobId.of_bytes(b"the real weights")
    with blob_store.open_writer(expected) as writer:
        writer.write(b"the real ")
        writer.write(b"weights")
        assert writer.commit() == expected


def test_blob_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_blob_size=10)
    store.put(b"0123456789")
    with pytest.raises(BlobTooLarge, match="max_blob_size"):
        store.put(b"0123456789a")


def test_streamed_blob_over_the_size_limit_is_refused_and_discarded(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_blob_size=10)
    with store.open_writer() as writer:
        writer.write(b"012345")
        with pytest.raises(BlobTooLarge):
            writer.write(b"6789a")
    assert _all_files(store.root) == []


def test_leftover_staging_files_from_a_crash_are_removed(blob_store: BlobStore) -> None:
    writer = blob_store.open_writer()
    writer.write(b"interrupted by a crash")  # never committed nor aborted
    kept = blob_store.put(b"kept")
    assert blob_store.remove_leftover_staging_files() == 1
    assert _all_files(blob_store.root) == [blob_store.path_of(kept)]
    writer.abort()  # only closes the handle that a crashed process would have lost


@given(data=st.binary(max_size=5000), cut=st.integers(min_value=1, max_value=6000))
def test_any_bytes_round_trip_through_put_and_the_streaming_writer(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, cut: int
) -> None:
    store = BlobStore(tmp_path_factory.mktemp("blobs"))
    blob_id = store.put(data)
    assert store.get(blob_id) == data
    with store.open_writer() as writer:
        for start in range(0, len(data), cut):
            writer.write(data[start : start + cut])
        assert writer.commit() == blob_id
