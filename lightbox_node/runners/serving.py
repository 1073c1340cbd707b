"""Which catalog models this host serves: a runner per task, and why the others are not served.

`build_runners` walks the catalog, asks `Catalog.availability` whether each model's weights
are here, and makes one runner per task from the first servable model that offers it. Demo
models (ids starting `tiny-`) come after every other model, so real weights win as soon as
they are configured; `prefer` names models to try first. Models are loaded lazily, on the
first job (or `runner.load()`), into one `PipelineCache` shared by every runner, and every
runner takes its turn on the device through one `DeviceLane`. Runners that apply concepts
(txt2img, img2img) also share one `DeltaCache` of concepts' global models.

Every model that is listed but not served, and every task of a served model that another
model serves instead or that has no runner, gets a line in the returned reasons, e.g.
"stable-diffusion-v1-5: not served: hub id only (…) and downloads are disabled; …".

Synchronous (availability hashes checkpoint files): call it through `trio.to_thread.run_sync`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightbox_node.dispatch.test_tasks import TaskRunner
from lightbox_node.runners.cache import PipelineCache
from lightbox_node.runners.device import Device, DeviceLane, select_device
from lightbox_node.runners.source import ModelSource
from lightbox_node.tasks import Availability, Catalog, ModelEntry, TaskSchema
from lightbox_node.tasks.schema import MAX_HELP

if TYPE_CHECKING:
    from lightbox_node.finetune.apply import DeltaCache

DEMO_PREFIX = "tiny-"
"""Model ids of random-weight demo models; a host prefers any other model for a task."""

RUNNERS: dict[str, dict[str, tuple[str, str]]] = {
    "stable-diffusion": {
        "txt2img": ("stable_diffusion", "TextToImage"),
        "img2img": ("stable_diffusion", "ImageToImage"),
        "finetune": ("finetune", "FineTune"),
    },
    "stable-diffusion-inpaint": {
        "inpaint": ("inpaint", "Inpaint"),
        "outpaint": ("inpaint", "Outpaint"),
    },
    "instruct-pix2pix": {"instruct_edit": ("instruct_pix2pix", "InstructEdit")},
    "rembg": {"remove_background": ("background", "RemoveBackground")},
    "realesrgan": {"upscale": ("upscale", "Upscale")},
}
"""Per pipeline kind of the catalog: task → (module in this package, runner class)."""

NOT_BUILT: dict[str, str] = {}
"""Tasks of the catalog that have no runner yet, and why (shown in the reasons)."""

_PACKAGES = {
    "stable-diffusion": ("torch", "diffusers", "transformers", "safetensors", "PIL", "numpy"),
    "stable-diffusion-inpaint": ("torch", "diffusers", "transformers", "safetensors", "PIL"),
    "instruct-pix2pix": ("torch", "diffusers", "transformers", "safetensors", "PIL", "numpy"),
    "rembg": ("rembg", "onnxruntime", "PIL", "numpy"),
    "realesrgan": ("torch", "safetensors", "PIL", "numpy"),
}
_TASK_PACKAGES = {"finetune": ("peft",)}
"""Packages a task needs beyond its pipeline's."""
_INSTALL_HINT = "install the ml extra: pip install 'lightbox-node[ml]'"


def _missing(packages: Iterable[str]) -> list[str]:
    return [name for name in packages if importlib.util.find_spec(name) is None]


def _serving_order(catalog: Catalog, prefer: Iterable[str]) -> list[ModelEntry]:
    first = [model_id for model_id in prefer if model_id in catalog]
    rest = sorted(
        (m for m in catalog if m not in first), key=lambda m: (m.startswith(DEMO_PREFIX), m)
    )
    return [catalog[m] for m in (*first, *rest)]


def _source(entry: ModelEntry, availability: Availability) -> ModelSource:
    if availability.state == "local":
        return ModelSource(entry.id, availability.location, local=True)
    return ModelSource(entry.id, entry.weights.location, local=False)


def advertised_schema(catalog: Catalog, entry: ModelEntry, task: str) -> TaskSchema:
    """The task's schema with the model's defaults, its description naming the model."""
    schema = catalog.schema_for(entry.id, task)
    note = f" Model: {entry.title}." + (f" {entry.description}" if entry.description else "")
    return dataclasses.replace(schema, description=(schema.description + note)[:MAX_HELP])


def default_cache(device: Device) -> PipelineCache:
    return PipelineCache(max_bytes=device.memory_budget(), on_evict=device.release_memory)


def build_runners(
    catalog: Catalog,
    data_dir: Path,
    *,
    device: str | Device | None = None,
    allow_downloads: bool = False,
    hub_cache: Path | None = None,
    cache: PipelineCache | None = None,
    prefer: Iterable[str] = (),
) -> tuple[dict[str, TaskRunner], list[str]]:
    """Runners by task name for the catalog's servable models, and why the rest are not served.

    `device` is "auto" (None), "cpu", "cuda", "cuda:<n>" or "mps"; a device that is not here
    raises `DeviceUnavailable`. `allow_downloads` and `hub_cache` are passed to
    `Catalog.availability`.
    """
    reasons: list[str] = []
    if _missing(("torch",)):
        return {}, [f"{m}: not served: torch is not installed; {_INSTALL_HINT}" for m in catalog]
    chosen = select_device(device)
    cache = cache if cache is not None else default_cache(chosen)
    lane = DeviceLane()
    deltas: DeltaCache | None = None
    runners: dict[str, Any] = {}
    served_by: dict[str, str] = {}
    for entry in _serving_order(catalog, prefer):
        missing = _missing(_PACKAGES[entry.pipeline])
        if missing:
            reasons.append(
                f"{entry.id}: not served: {', '.join(missing)} not installed; {_INSTALL_HINT}"
            )
            continue
        availability = catalog.availability(
            entry, data_dir, allow_downloads=allow_downloads, hub_cache=hub_cache
        )
        if not availability.servable:
            reasons.append(f"{entry.id}: not served: {availability.reason}")
            continue
        source = _source(entry, availability)
        for task in entry.tasks:
            if task in served_by:
                reasons.append(
                    f"{entry.id}: {task} not served: {served_by[task]} serves {task} here"
                )
                continue
            where = RUNNERS[entry.pipeline].get(task)
            if where is None:
                why = NOT_BUILT.get(task, "this host has no runner for it")
                reasons.append(f"{entry.id}: {task} not served: {why}")
                continue
            missing = _missing(_TASK_PACKAGES.get(task, ()))
            if missing:
                reasons.append(
                    f"{entry.id}: {task} not served: {', '.join(missing)} not installed; "
                    f"{_INSTALL_HINT}"
                )
                continue
            module = importlib.import_module(f"lightbox_node.runners.{where[0]}")
            runner_class = getattr(module, where[1])
            schema = advertised_schema(catalog, entry, task)
            extra: dict[str, Any] = {}
            if getattr(runner_class, "applies_concepts", False):
                if deltas is None:
                    from lightbox_node.finetune.apply import DeltaCache

                    deltas = DeltaCache()
                extra["deltas"] = deltas  # one cache of concepts' global models per host
            runners[task] = runner_class(schema, source, chosen, cache, lane, **extra)
            served_by[task] = entry.id
    return runners, reasons


__all__ = ["DEMO_PREFIX", "NOT_BUILT", "RUNNERS", "advertised_schema", "build_runners"]
