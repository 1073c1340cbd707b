"""Where a runner's model comes from, and the fault when it cannot be loaded from there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightbox_node.dispatch.test_tasks import TaskFailed
from lightbox_node.runners.cache import bytes_on_disk


class ModelLoadFailed(TaskFailed):
    """A model's weights are listed and present but could not be loaded."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A model's weights: a local folder or file (as the catalog resolved it), or a hub id."""

    model_id: str
    location: str
    local: bool
    """True: a path on this machine, never downloaded. False: a hub id that may be."""

    def size_on_disk(self, suffixes: tuple[str, ...]) -> int:
        """Bytes of the weight files (those ending in `suffixes`) here; 0 for a hub id."""
        return bytes_on_disk(Path(self.location), suffixes) if self.local else 0


__all__ = ["ModelLoadFailed", "ModelSource"]
