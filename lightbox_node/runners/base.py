"""What every model runner holds: its task schema, where its weights are, and where it runs."""

from __future__ import annotations

from lightbox_node.runners.cache import PipelineCache
from lightbox_node.runners.device import Device, DeviceLane
from lightbox_node.runners.source import ModelSource
from lightbox_node.tasks import TaskSchema


class ModelRunner:
    """Base of the runners: one model serving one task, sharing a cache and a device lane."""

    def __init__(
        self,
        schema: TaskSchema,
        source: ModelSource,
        device: Device,
        cache: PipelineCache,
        lane: DeviceLane | None = None,
    ) -> None:
        self.schema = schema
        self.source = source
        self.device = device
        self.cache = cache
        self.lane = lane if lane is not None else DeviceLane()
