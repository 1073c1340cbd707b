"""The "blobs" protocol over peer links: message shapes, sizes and their strict parsing.

Requests and their replies (every request carries a number the reply repeats)::

    ["have", request, blob_id]                          -> ["has", request, held]
    ["digests", request, blob_id, first, count]         -> ["digest-page", request, total,
                                                           chunk_size, first, digests]
    ["want", request, blob_id, offset, length]          -> ["chunk", request, offset, data,
                                                           total]
    any request                                         -> ["none", request, reason]

`digests` is the SHA-256 of each CHUNK-sized piece of the blob, concatenated (32 bytes
each): the "digest list" a fetcher checks every chunk against, paged so that one page fits
a link message. `none` says the request was refused: not held, busy (try again shortly:
the reason starts with "busy"), or the blob is damaged at the holder.

Everything here is checked before use: types, bounds (a chunk is at most CHUNK bytes, a
page at most DIGEST_PAGE digests), and blob ids parsed strictly; a malformed message is
reported as `Malformed` for the shell to score, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightbox_node.store import BlobId
from lightbox_node.store.blob_id import InvalidBlobId

PROTOCOL = "blobs"
CHUNK = 512 << 10
"""Bytes per chunk: half the 1 MiB link message limit, so a chunk and its header fit one
message, and large enough that per-message costs vanish beside the bytes."""
DIGEST_LEN = 32
DIGEST_PAGE = 16 << 10
"""Digests per page (512 KiB): a 32 GiB blob's list takes four pages."""
MAX_REASON = 200
BUSY = "busy"
"""Reasons starting with this mean "ask again shortly", not "not here"."""


class Malformed(ValueError):
    """A blobs message that breaks the protocol; the sender is scored for it."""


@dataclass(frozen=True, slots=True)
class Have:
    request: int
    blob_id: BlobId


@dataclass(frozen=True, slots=True)
class WantDigests:
    request: int
    blob_id: BlobId
    first: int
    count: int


@dataclass(frozen=True, slots=True)
class WantChunk:
    request: int
    blob_id: BlobId
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Has:
    request: int
    held: bool


@dataclass(frozen=True, slots=True)
class DigestPage:
    request: int
    total: int
    chunk_size: int
    first: int
    digests: bytes


@dataclass(frozen=True, slots=True)
class Chunk:
    request: int
    offset: int
    data: bytes
    total: int


@dataclass(frozen=True, slots=True)
class Refused:
    request: int
    reason: str

    @property
    def busy(self) -> bool:
        return self.reason.startswith(BUSY)


Request = Have | WantDigests | WantChunk
Reply = Has | DigestPage | Chunk | Refused


def parse(body: Any) -> Request | Reply:
    """One message from a peer, checked; raises Malformed saying what is wrong."""
    if type(body) is not list or not body or type(body[0]) is not str:
        raise Malformed("a blobs message is [tag, request, ...]")
    tag, fields = body[0], body[1:]
    shape = _SHAPES.get(tag)
    if shape is None:
        raise Malformed(f"unknown blobs message {tag[:20]!r}")
    if len(fields) != len(shape) or any(
        type(value) is not kind for value, kind in zip(fields, shape, strict=True)
    ):
        names = ", ".join(kind.__name__ for kind in shape)
        raise Malformed(f"{tag[:20]}: expected [{names}]")
    if fields[0] < 0:
        raise Malformed(f"{tag}: negative request number")
    match tag:
        case "have":
            return Have(fields[0], _blob_id(fields[1]))
        case "digests":
            _, text, first, count = fields
            if first < 0 or not 0 < count <= DIGEST_PAGE:
                raise Malformed(f"digests: bad range first={first} count={count}")
            return WantDigests(fields[0], _blob_id(text), first, count)
        case "want":
            _, text, offset, length = fields
            if offset < 0 or not 0 < length <= CHUNK:
                raise Malformed(f"want: bad range offset={offset} length={length}")
            return WantChunk(fields[0], _blob_id(text), offset, length)
        case "has":
            return Has(fields[0], fields[1])
        case "digest-page":
            request, total, chunk_size, first, digests = fields
            if total < 0 or chunk_size <= 0 or first < 0:
                raise Malformed("digest-page: negative size or position")
            if len(digests) % DIGEST_LEN or len(digests) > DIGEST_PAGE * DIGEST_LEN:
                raise Malformed(f"digest-page: {len(digests)} bytes is not a page of digests")
            return DigestPage(request, total, chunk_size, first, digests)
        case "chunk":
            request, offset, data, total = fields
            if offset < 0 or total < 0 or len(data) > CHUNK:
                raise Malformed("chunk: negative position or over CHUNK bytes")
            return Chunk(request, offset, data, total)
        case _:  # "none"
            return Refused(fields[0], fields[1][:MAX_REASON])


def _blob_id(text: str) -> BlobId:
    try:
        return BlobId.parse(text)
    except InvalidBlobId:
        raise Malformed("a blob id is 'sha256-' and 64 lowercase hex digits") from None


_SHAPES: dict[str, tuple[type, ...]] = {
    "have": (int, str),
    "digests": (int, str, int, int),
    "want": (int, str, int, int),
    "has": (int, bool),
    "digest-page": (int, int, int, int, bytes),
    "chunk": (int, int, bytes, int),
    "none": (int, str),
}


def have(request: int, blob_id: BlobId) -> list[Any]:
    return ["have", request, str(blob_id)]


def want_digests(request: int, blob_id: BlobId, first: int, count: int) -> list[Any]:
    return ["digests", request, str(blob_id), first, count]


def want_chunk(request: int, blob_id: BlobId, offset: int, length: int) -> list[Any]:
    return ["want", request, str(blob_id), offset, length]


def has(request: int, held: bool) -> list[Any]:
    return ["has", request, held]


def digest_page(request: int, total: int, chunk_size: int, first: int, digests: bytes) -> list:
    return ["digest-page", request, total, chunk_size, first, digests]


def chunk(request: int, offset: int, data: bytes, total: int) -> list[Any]:
    return ["chunk", request, offset, data, total]


def refused(request: int, reason: str) -> list[Any]:
    return ["none", request, reason[:MAX_REASON]]
