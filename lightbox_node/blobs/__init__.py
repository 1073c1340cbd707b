"""Blobs across the network: announcing, serving, fetching in verified chunks, collecting.

Public surface: `BlobExchange` (serve and fetch over peer links; `announce`, `holders`,
`fetch`), `BlobUnavailable`, `ExchangeLimits`, `TransferProgress`, the pure fetch core
`Transfer` with `TransferParams`, and the garbage collector loop `run_blob_collector`
(its pure decision is `lightbox_node.store.blob_gc`). The wire format is `protocol`.
"""

from lightbox_node.blobs.collector import CollectorParams, collect_once, run_blob_collector
from lightbox_node.blobs.exchange import (
    BlobExchange,
    BlobUnavailable,
    ExchangeLimits,
    TransferProgress,
)
from lightbox_node.blobs.protocol import CHUNK, PROTOCOL
from lightbox_node.blobs.transfer import MAX_FETCH_BYTES, Transfer, TransferParams

__all__ = [
    "CHUNK",
    "MAX_FETCH_BYTES",
    "PROTOCOL",
    "BlobExchange",
    "BlobUnavailable",
    "CollectorParams",
    "ExchangeLimits",
    "Transfer",
    "TransferParams",
    "TransferProgress",
    "collect_once",
    "run_blob_collector",
]
