"""Messages the tabs send up to the app: refresh now, the job filter changed."""

from __future__ import annotations

from lightbox_node.tui.live import JobFilter
from textual.message import Message


class RefreshRequested(Message):
    """Something changed on the node because of us (a cancel, a suspension): refresh now."""


class JobFilterChanged(Message):
    """The jobs tab filters by another state or user; the next refresh asks for that."""

    def __init__(self, job_filter: JobFilter) -> None:
        super().__init__()
        self.job_filter = job_filter
