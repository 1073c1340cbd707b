"""Scheduling: jobs, the trust ledger, per-host priority queues and the scheduler core.

Pure cores (no trio, no sockets, time passed in). The trio shell that moves jobs over
peer links and journals them lives in `lightbox_node.dispatch`.
"""
