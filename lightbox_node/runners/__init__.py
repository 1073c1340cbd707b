"""Model runners: the GPU host's tasks backed by real pipelines (diffusers, rembg, Real-ESRGAN).

`build_runners(catalog, data_dir)` gives a runner per task for the catalog's servable models
and the reasons the others are not served; `build_tiny_models(data_dir)` makes the random-
weight `tiny-*` demo models where the catalog expects them. One module per pipeline family
(`stable_diffusion`, `inpaint`, `instruct_pix2pix`, `background`, `upscale` with `rrdbnet`),
beside the parts they share: `diffusion` (loading, samplers, seeds, step hook), `cache` (the
LRU pipeline cache), `device` (where and in what precision) and `outputs` (validation and
PNG encoding). Importing this package imports neither torch nor diffusers; runners load their
models on the first job, in a worker thread.
"""

from lightbox_node.runners.cache import PipelineCache
from lightbox_node.runners.device import Device, DeviceUnavailable, select_device
from lightbox_node.runners.outputs import OutputRejected
from lightbox_node.runners.random_weights import build_tiny_models
from lightbox_node.runners.serving import build_runners
from lightbox_node.runners.source import ModelLoadFailed, ModelSource

__all__ = [
    "Device",
    "DeviceUnavailable",
    "ModelLoadFailed",
    "ModelSource",
    "OutputRejected",
    "PipelineCache",
    "build_runners",
    "build_tiny_models",
    "select_device",
]
