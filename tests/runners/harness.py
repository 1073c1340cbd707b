"""Helpers for the runner tests: image inputs, pictures, and a GpuHost with a fake queue node."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import trio
from PIL import Image

from lightbox_node.dispatch.host import GpuHost
from lightbox_node.dispatch.protocol import Cancel, Done, Fault, Run, encode, parse_host_message
from lightbox_node.identity import PeerId
from lightbox_node.tasks import validate_inputs


class Blobs:
    """Image inputs by blob id, as a queue node's blob store holds them."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, image: Image.Image) -> dict[str, Any]:
        """Store `image` as PNG; the image input value a job would carry."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        blob = "sha256-" + hashlib.sha256(data).hexdigest()
        self.data[blob] = data
        return {"blob": blob, "width": image.width, "height": image.height, "format": "png"}

    async def fetch(self, blob: str) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.data[blob]


def photo(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A picture with structure (gradients and blocks) and a little noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xs * 255 / width, ys * 255 / height, ((xs // 16 + ys // 16) % 2) * 200 + 20], axis=-1
    )
    noisy = base + rng.normal(0, 8, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(decode(data)).astype(np.int16)


def inputs_for(runner: Any, values: dict[str, Any]) -> Any:
    """`values` checked against the runner's schema, defaults filled, as the host does."""
    return validate_inputs(runner.schema, values)


class HostHarness:
    """A GpuHost attached to a fake queue node that records what the host sends it."""

    QUEUE = PeerId(bytes(range(32)))

    def __init__(self, runners: dict[str, Any], images: Callable | None, slots: int = 1) -> None:
        self.host = GpuHost(runners, slots=slots, prefetch=1, images=images)
        self.sent: list[Any] = []
        self._changed = trio.Event()
        self._count = 0

    def receive(self, body: Any) -> bool:
        """The port the host sends its messages through."""
        self.sent.append(parse_host_message(body))
        self._changed.set()
        self._changed = trio.Event()
        return True

    def submit(self, task: str, inputs: dict[str, Any], *, deadline_s: float = 120.0) -> str:
        self._count += 1
        job_id = f"j-{self._count:024x}"
        self.host.message(self.QUEUE, encode(Run(job_id, 1, task, inputs, deadline_s)))
        return job_id

    def cancel(self, job_id: str) -> None:
        self.host.message(self.QUEUE, encode(Cancel(job_id, 1)))

    def of(self, job_id: str) -> list[Any]:
        return [m for m in self.sent if getattr(m, "job_id", None) == job_id]

    async def outcome(self, job_id: str) -> Done | Fault:
        while True:
            for message in self.of(job_id):
                if isinstance(message, Done | Fault):
                    return message
            await self._changed.wait()

    async def idle(self) -> None:
        while self.host.busy_slots:
            await trio.sleep(0.005)
