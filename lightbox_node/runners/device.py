"""Where models run: the accelerator chosen automatically or by configuration, and its precision.

CUDA runs diffusion in fp16 with attention slicing (half the memory, and slicing keeps a
2048 px canvas within a consumer card); everything else runs fp32, because fp16 on a CPU is
slow and poorly supported. Torch is imported only when a device is chosen, so a node without
the `ml` extra can still import the runners package and say why it serves no model.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lightbox_node.errors import LightboxError

if TYPE_CHECKING:
    import torch

    from lightbox_node.dispatch.test_tasks import RunContext

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<n>", "mps")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,2})?")

CUDA_MEMORY_SHARE = 0.8
"""Of the GPU's memory, the share the pipeline cache may fill (activations need the rest)."""
HOST_MEMORY_SHARE = 0.5
"""Of the machine's memory, the share the pipeline cache may fill when models run on it."""
LANE_POLL_S = 0.05
"""How often a job waiting for the device lane checks whether it was cancelled."""


class DeviceUnavailable(LightboxError):
    """The configured device is not a device name, or this machine does not have it."""


@dataclass(frozen=True, slots=True)
class Device:
    """A torch device with the precision and memory settings models use on it."""

    name: str
    """A torch device string: "cpu", "cuda", "cuda:1", "mps"."""
    half: bool
    """Weights and activations in fp16."""
    attention_slicing: bool

    @property
    def type(self) -> str:
        return self.name.split(":")[0]

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return torch.float16 if self.half else torch.float32

    def onnx_providers(self) -> list[str]:
        """onnxruntime execution providers for this device, best first, CPU always last."""
        import onnxruntime

        available = set(onnxruntime.get_available_providers())
        wanted = {"cuda": ["CUDAExecutionProvider"], "mps": ["CoreMLExecutionProvider"]}
        return [p for p in wanted.get(self.type, []) if p in available] + ["CPUExecutionProvider"]

    def memory_budget(self) -> int | None:
        """Bytes of loaded models this device holds comfortably; None when unknown."""
        if self.type == "cuda":
            import torch

            index = torch.device(self.name).index or 0
            return int(torch.cuda.get_device_properties(index).total_memory * CUDA_MEMORY_SHARE)
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
        return int(total * HOST_MEMORY_SHARE)

    def release_memory(self) -> None:
        """Give freed GPU memory back after a model was dropped, so the next one fits."""
        if self.type == "cuda":
            import torch

            torch.cuda.empty_cache()


class DeviceLane:
    """One job at a time on a device; a job's input decoding and PNG encoding run beside it.

    Runners hold the lane only for model work (loading, denoising, decoding latents). With two
    host slots on one GPU, the next job has its inputs ready and starts the moment the lane
    is free, while the previous job encodes its result: the GPU does not idle between queued
    jobs, and two pipelines never compete for its memory. Waiting for the lane is cancelled
    like a step.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, context: RunContext) -> Iterator[None]:
        """Wait for the lane (in a worker thread), checking for cancellation, then hold it."""
        while not self._lock.acquire(timeout=LANE_POLL_S):
            context.raise_if_cancelled()
        try:
            context.raise_if_cancelled()
            yield
        finally:
            self._lock.release()

    @property
    def busy(self) -> bool:
        return self._lock.locked()


def select_device(configured: str | Device | None = None) -> Device:
    """The device named by `configured` ("auto" or None: CUDA, else Apple MPS, else CPU)."""
    if isinstance(configured, Device):
        return configured
    name = (configured or "auto").strip().lower()
    if not _DEVICE.fullmatch(name):
        raise DeviceUnavailable(
            f"unknown device {configured!r}; use one of {', '.join(DEVICE_CHOICES)}"
        )
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if name.startswith("cuda"):
        if not has_cuda:
            raise DeviceUnavailable(
                f"device {name!r} is configured but torch {torch.__version__} finds no CUDA GPU "
                "(a CPU build of torch, or no driver); set the device to 'auto' or 'cpu'"
            )
        index = torch.device(name).index or 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device {name!r} is configured but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
            )
        return Device(name, half=True, attention_slicing=True)
    if name == "mps":
        if not has_mps:
            raise DeviceUnavailable(
                "device 'mps' is configured but torch finds no Apple GPU; set 'auto' or 'cpu'"
            )
        return Device("mps", half=False, attention_slicing=True)
    return Device("cpu", half=False, attention_slicing=False)


__all__ = ["DEVICE_CHOICES", "Device", "DeviceLane", "DeviceUnavailable", "select_device"]
