"""Blob exchange (kept importable here): the code lives in the `lightbox_node.blobs` package.

See `lightbox_node.blobs.exchange` for how blobs are announced, served and fetched.
"""

from lightbox_node.blobs.exchange import (
    BlobExchange,
    BlobUnavailable,
    ExchangeLimits,
    TransferProgress,
)
from lightbox_node.blobs.protocol import CHUNK, PROTOCOL
from lightbox_node.blobs.transfer import MAX_FETCH_BYTES

__all__ = [
    "CHUNK",
    "MAX_FETCH_BYTES",
    "PROTOCOL",
    "BlobExchange",
    "BlobUnavailable",
    "ExchangeLimits",
    "TransferProgress",
]
