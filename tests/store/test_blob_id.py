"""Blob ids: exactly `sha256-` and 64 lowercase hex digits, never anything path-like."""

from __future__ import annotations

import hashlib
import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightbox_node.errors import StoreError
from lightbox_node.store import BlobId, InvalidBlobId

_VALID_HEX = "0123456789abcdef" * 4


def test_blob_id_is_the_sha256_of_the_bytes_in_lowercase_hex() -> None:
    data = os.urandom(4096)
    assert str(BlobId.of_bytes(data)) == "sha256-" + hashlib.sha256(data).hexdigest()


def test_blob_id_from_a_raw_digest_matches_the_id_of_the_bytes() -> None:
    data = os.urandom(100)
    assert BlobId.from_digest(hashlib.sha256(data).digest()) == BlobId.of_bytes(data)


def test_text_form_parses_back_to_the_same_id() -> None:
    blob_id = BlobId.of_bytes(b"a photo")
    assert BlobId.parse(str(blob_id)) == blob_id


@pytest.mark.parametrize(
    "text",
    [
        "",
        "../x",
        "sha256-../../etc/passwd",
        "sha256-" + "../" * 21 + "a",
        "sha256-" + _VALID_HEX.upper(),
        "sha256-" + _VALID_HEX[:-1],
        "sha256-" + _VALID_HEX + "0",
        "sha512-" + _VALID_HEX,
        "SHA256-" + _VALID_HEX,
        _VALID_HEX,
        "sha256-" + _VALID_HEX + "\n",
        " sha256-" + _VALID_HEX,
        "sha256-" + _VALID_HEX[:-1] + "g",
        "sha256-" + _VALID_HEX[:-1] + "\u0663",  # an Arabic-Indic digit three
        "sha256-" + _VALID_HEX[:-1] + "/",
    ],
)
def test_malformed_blob_id_text_is_rejected(text: str) -> None:
    with pytest.raises(InvalidBlobId):
        BlobId.parse(text)


@pytest.mark.parametrize("value", [None, 42, b"sha256-" + _VALID_HEX.encode(), ["sha256-"]])
def test_blob_id_that_is_not_text_is_rejected(value: object) -> None:
    with pytest.raises(InvalidBlobId, match="is text"):
        BlobId.parse(value)


def test_invalid_blob_id_is_a_store_error() -> None:
    assert issubclass(InvalidBlobId, StoreError)


def test_blob_id_cannot_be_constructed_around_a_path_fragment() -> None:
    with pytest.raises(InvalidBlobId):
        BlobId("../../etc/passwd")


def test_rejection_message_does_not_echo_huge_input() -> None:
    with pytest.raises(InvalidBlobId) as caught:
        BlobId.parse("x" * 100_000)
    assert len(str(caught.value)) < 300


@given(st.text())
def test_any_text_either_parses_to_itself_or_is_rejected(text: str) -> None:
    try:
        blob_id = BlobId.parse(text)
    except InvalidBlobId:
        assert not re.fullmatch(r"sha256-[0-9a-f]{64}", text)
    else:
        assert str(blob_id) == text
