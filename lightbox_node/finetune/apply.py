"""A concept's global model applied to a loaded UNet for one job, the base weights kept intact.

The cached base pipeline serves every job, so a concept may change it only for the length of
one call and must leave it exactly as it was, whether the job ends, fails or is cancelled.
`applied` therefore never writes into a base weight: for each module of the global model it
builds W + ΔW in a new tensor and puts that in the module's place, and on the way out puts
the original parameter object back. Restoring is a pointer swap, so the base weights are
bit-identical (they are the very same tensors) and nothing is copied back. The runner holds
the device lane around it, so no other job sees the changed UNet meanwhile.

`DeltaCache` keeps parsed global models, on the device and in the UNet's precision, by
model id: a concept used by many jobs is parsed and moved once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import MappingProxyType

import torch

from lightbox_node.errors import LightboxError
from lightbox_node.finetune.adapters import GlobalModel, parse_global_model

DEFAULT_MAX_MODELS = 4


class ConceptMismatch(LightboxError):
    """A global model that does not fit the model it is applied to (other modules or shapes)."""


def _targets(
    unet: torch.nn.Module, model: GlobalModel
) -> list[tuple[torch.nn.Linear, torch.Tensor]]:
    found = []
    for path, delta in model.deltas.items():
        try:
            module = unet.get_submodule(path)
        except AttributeError:
            module = None
        if not isinstance(module, torch.nn.Linear):
            raise ConceptMismatch(
                f"concept {model.info.concept!r} changes {path!r}, which this model's UNet does "
                f"not have as a linear layer; it was made for {model.info.base_model}"
            )
        if tuple(module.weight.shape) != tuple(delta.shape):
            raise ConceptMismatch(
                f"concept {model.info.concept!r} changes {path!r} as {tuple(delta.shape)}, but "
                f"it is {tuple(module.weight.shape)} here; it was made for {model.info.base_model}"
            )
        found.append((module, delta))
    return found


@contextmanager
def applied(unet: torch.nn.Module, model: GlobalModel) -> Iterator[None]:
    """Within the block, `unet` computes with W + ΔW for every module of `model`; after it,
    with its original weights (the same tensor objects). Checks every module first, so a
    model that does not fit raises `ConceptMismatch` before anything changes."""
    targets = _targets(unet, model)
    originals: list[tuple[torch.nn.Linear, torch.nn.Parameter]] = []
    try:
        with torch.no_grad():
            for module, delta in targets:
                original = module.weight
                merged = original.to(torch.float32) + delta.to(original.device, torch.float32)
                originals.append((module, original))
                module.weight = torch.nn.Parameter(merged.to(original.dtype), requires_grad=False)
        yield
    finally:
        for module, original in reversed(originals):
            module.weight = original


def to_device(model: GlobalModel, device: torch.device | str, dtype: torch.dtype) -> GlobalModel:
    """`model` with its deltas on `device` in `dtype` (the UNet's), ready to apply."""
    deltas = {m: d.to(device=device, dtype=dtype) for m, d in model.deltas.items()}
    return replace(model, deltas=MappingProxyType(deltas))


class DeltaCache:
    """Parsed global models on a device, by model id; the least recently used is dropped
    when more than `max_models` or more than `max_bytes` (when given) are held."""

    def __init__(self, *, max_models: int = DEFAULT_MAX_MODELS, max_bytes: int | None = None):
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._models: OrderedDict[tuple[str, str, str], GlobalModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(
        self, model_id: str, data: bytes, *, device: torch.device | str, dtype: torch.dtype
    ) -> GlobalModel:
        """The global model `model_id` (whose bytes are `data`), parsed and on `device`.
        Raises `InvalidGlobalModel` for bytes that are not one."""
        key = (model_id, str(device), str(dtype))
        with self._lock:
            found = self._models.get(key)
            if found is not None:
                self._models.move_to_end(key)
                return found
            # Parsed under the lock: two jobs asking for one new model parse it once.
            model = to_device(parse_global_model(data), device, dtype)
            self._models[key] = model
            self.loads += 1
            while len(self._models) > self.max_models or (
                self.max_bytes is not None
                and len(self._models) > 1
                and sum(m.nbytes() for m in self._models.values()) > self.max_bytes
            ):
                self._models.popitem(last=False)
            return model

    def __len__(self) -> int:
        return len(self._models)


__all__ = ["ConceptMismatch", "DeltaCache", "applied", "to_device"]
