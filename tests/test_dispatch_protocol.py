"""The "jobs" protocol's `done`: inline outputs as before, blob references for large ones."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightbox_node.dispatch.protocol import (
    MAX_BLOB_REF_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_OUTPUTS,
    BlobRef,
    Done,
    blob_indices,
    encode,
    parse_host_message,
)
from lightbox_node.errors import MalformedMessage
from lightbox_node.store import BlobId

JOB = "j-" + "0123456789abcdef01234567"
BLOB = BlobId.of_bytes(b"a large result")


def done(*outputs: list[Any]) -> list[Any]:
    return ["done", JOB, 1, list(outputs)]


def test_an_inline_done_of_the_first_version_is_still_accepted() -> None:
    message = parse_host_message(done(["text", b"hello"], ["extra", b""]))
    assert message == Done(JOB, 1, [("text", b"hello"), ("extra", b"")])
    assert message.refs == [] and message.total_bytes == 5


def test_a_done_mixing_inline_outputs_and_blob_references_keeps_their_order() -> None:
    body = done(["a", b"small"], ["b", str(BLOB), 3 << 20], ["c", b"tail"])
    message = parse_host_message(body)
    assert message == Done(JOB, 1, [("a", b"small"), ("b", BlobRef(BLOB, 3 << 20)), ("c", b"tail")])
    assert message.refs == [BlobRef(BLOB, 3 << 20)]
    assert message.total_bytes == 5 + (3 << 20) + 4
    assert encode(message) == body


@pytest.mark.parametrize(
    ("output", "why"),
    [
        (["b", "sha256-" + "A" * 64, 10], "blob id"),
        (["b", "sha256-../../etc/passwd", 10], "blob id"),
        (["b", "md5-" + "0" * 32, 10], "blob id"),
        (["b", BLOB.hex_digest.encode(), 10], "blob id text"),
        (["b", str(BLOB), 0], "empty output"),
        (["b", str(BLOB), -1], "size"),
        (["b", str(BLOB), True], "size"),
        (["b", str(BLOB), 10.0], "size"),
        (["b", str(BLOB), "10"], "size"),
        (["b", str(BLOB), MAX_BLOB_REF_BYTES + 1], "size"),
        (["b", str(BLOB), 10, "extra"], "each output"),
        (["b"], "each output"),
        ({"name": "b"}, "each output"),
        (["b", "inline text, not bytes"], "inline output"),
        (["x" * 65, b"data"], "output name"),
        ([7, b"data"], "output name"),
    ],
)
def test_a_malformed_output_is_refused_with_what_was_wrong(output: Any, why: str) -> None:
    with pytest.raises(MalformedMessage, match=why):
        parse_host_message(done(output))


def test_inline_outputs_over_one_message_are_refused_however_many_blobs_ride_along() -> None:
    half = b"x" * (MAX_OUTPUT_BYTES // 2 + 1)
    with pytest.raises(MalformedMessage, match="inline outputs over"):
        parse_host_message(done(["a", half], ["b", str(BLOB), 10], ["c", half]))


def test_more_outputs_than_allowed_are_refused() -> None:
    with pytest.raises(MalformedMessage, match="at most"):
        parse_host_message(done(*[["o", str(BLOB), 1]] * (MAX_OUTPUTS + 1)))


def test_outputs_that_fit_inline_stay_inline() -> None:
    assert blob_indices([]) == set()
    assert blob_indices([MAX_OUTPUT_BYTES]) == set()
    assert blob_indices([100, MAX_OUTPUT_BYTES - 100]) == set()


def test_the_largest_outputs_become_blobs_until_the_rest_fits() -> None:
    assert blob_indices([MAX_OUTPUT_BYTES + 1]) == {0}
    assert blob_indices([10, 3 << 20, 20]) == {1}
    assert blob_indices([600 << 10, 500 << 10, 400 << 10, 10]) == {0, 1}


@given(st.lists(st.integers(min_value=0, max_value=4 * MAX_OUTPUT_BYTES), max_size=MAX_OUTPUTS))
def test_blob_indices_leave_an_inline_rest_that_fits_and_move_only_what_they_must(
    sizes: list[int],
) -> None:
    chosen = blob_indices(sizes)
    rest = [size for index, size in enumerate(sizes) if index not in chosen]
    assert sum(rest) <= MAX_OUTPUT_BYTES
    if chosen:
        assert max(rest, default=0) <= min(sizes[i] for i in chosen)  # largest ones first
        assert sum(rest) + min(sizes[i] for i in chosen) > MAX_OUTPUT_BYTES  # none needlessly


# -- fuzzing the new shape --------------------------------------------------------------------

names = st.text(max_size=70)
blob_texts = st.one_of(
    st.builds(lambda data: str(BlobId.of_bytes(data)), st.binary(max_size=8)),
    st.text(max_size=80),
    st.builds(lambda s: "sha256-" + s, st.text("0123456789abcdefABCDEF/.", max_size=66)),
)
sizes = st.one_of(
    st.integers(min_value=-2, max_value=MAX_BLOB_REF_BYTES + 2),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.binary(max_size=10),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
outputs = st.one_of(
    st.tuples(names, st.binary(max_size=64)).map(list),
    st.tuples(names, blob_texts, sizes).map(list),
    st.lists(junk, max_size=4),
    junk,
)


@settings(max_examples=400)
@given(st.one_of(st.lists(outputs, max_size=6), junk))
def test_any_done_body_parses_within_its_bounds_or_is_refused_as_malformed(body: Any) -> None:
    try:
        message = parse_host_message(["done", JOB, 3, body])
    except MalformedMessage:
        return
    assert isinstance(message, Done) and len(message.outputs) <= MAX_OUTPUTS
    inline = 0
    for name, data in message.outputs:
        assert type(name) is str and len(name) <= 64
        if isinstance(data, BlobRef):
            assert 0 < data.size <= MAX_BLOB_REF_BYTES and str(data.blob_id).startswith("sha256-")
        else:
            assert type(data) is bytes
            inline += len(data)
    assert inline <= MAX_OUTPUT_BYTES
    assert parse_host_message(encode(message)) == message


valid_outputs = st.lists(
    st.tuples(
        st.text(max_size=64),
        st.one_of(
            st.binary(max_size=256),
            st.builds(
                BlobRef,
                st.builds(BlobId.of_bytes, st.binary(max_size=8)),
                st.integers(min_value=1, max_value=MAX_BLOB_REF_BYTES),
            ),
        ),
    ),
    max_size=MAX_OUTPUTS,
)


@given(valid_outputs, st.integers(min_value=0, max_value=1_000_000))
def test_every_well_formed_done_survives_encoding_and_parsing(
    outputs: list[tuple[str, Any]], attempt: int
) -> None:
    message = Done(JOB, attempt, outputs)
    assert parse_host_message(encode(message)) == message
