"""Blob ids: the SHA-256 of a blob's bytes, written `sha256-<64 lowercase hex digits>`.

Ids arrive from peers, so they are parsed strictly before they come near a file path: only
that exact form is accepted, which also guarantees that a blob's path never leaves the store.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from lightbox_node.errors import StoreError

BLOB_ID_PREFIX = "sha256-"
"""Names the hash, so that another hash can be added later without ambiguity."""

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_SHOWN_CHARS = 80


class InvalidBlobId(StoreError):
    """A blob id is not of the form `sha256-<64 lowercase hex digits>`."""


def _shown(value: object) -> str:
    """A bounded repr of untrusted input, so an error message cannot be made huge."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


@dataclass(frozen=True, slots=True, order=True)
class BlobId:
    """The address of a blob: the lowercase hex SHA-256 of its bytes."""

    hex_digest: str

    def __post_init__(self) -> None:
        # Checked here, not only in parse(), so that no BlobId can ever hold a path fragment.
        if not isinstance(self.hex_digest, str) or not _HEX_DIGEST.fullmatch(self.hex_digest):
            raise InvalidBlobId(
                f"a blob id digest is 64 lowercase hex digits, not {_shown(self.hex_digest)}"
            )

    def __str__(self) -> str:
        return BLOB_ID_PREFIX + self.hex_digest

    def __repr__(self) -> str:
        return f"BlobId({self})"

    @classmethod
    def parse(cls, text: object) -> BlobId:
        """Parse the text form, rejecting anything but `sha256-` and 64 lowercase hex digits."""
        if not isinstance(text, str):
            raise InvalidBlobId(f"a blob id is text, not {type(text).__name__}")
        digest = text.removeprefix(BLOB_ID_PREFIX)
        if digest == text or not _HEX_DIGEST.fullmatch(digest):
            raise InvalidBlobId(
                f"a blob id is 'sha256-' followed by 64 lowercase hex digits, not {_shown(text)}"
            )
        return cls(digest)

    @classmethod
    def from_digest(cls, digest: bytes) -> BlobId:
        """The id for a raw 32-byte SHA-256 digest."""
        if len(digest) != hashlib.sha256().digest_size:
            raise InvalidBlobId(f"a SHA-256 digest is 32 bytes, not {len(digest)}")
        return cls(digest.hex())

    @classmethod
    def of_bytes(cls, data: bytes) -> BlobId:
        """The id that the given bytes are stored under."""
        return cls(hashlib.sha256(data).hexdigest())
