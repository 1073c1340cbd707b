"""Blobs across the network: store, fetch core, exchange, collector, real processes."""
