"""Federated DreamBooth's core: adapters, their exact merge, training, and applying a concept.

One module per job:

* `adapters` — the adapter and global-model files (safetensors), parsed strictly:
  `parse_adapter`, `encode_adapter`, `parse_global_model`, `encode_global_model`.
* `merge` — adapters merged exactly in weight space into a concept's global model:
  `merge_adapters`, `merge_adapter_files` (blobs in, blob out).
* `train` — DreamBooth-LoRA on a Stable Diffusion pipeline's UNet: `train_lora`.
* `apply` — a global model applied to a loaded UNet for one job, then the base weights put
  back: `applied`, `DeltaCache`.

Torch is imported when a name is first used, not by importing this package, so a node
without the `ml` extra can still import the modules that mention these names.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Adapter": "adapters",
    "AdapterInfo": "adapters",
    "GlobalModel": "adapters",
    "GlobalModelInfo": "adapters",
    "InvalidAdapter": "adapters",
    "InvalidGlobalModel": "adapters",
    "LoraFactors": "adapters",
    "encode_adapter": "adapters",
    "encode_global_model": "adapters",
    "parse_adapter": "adapters",
    "parse_global_model": "adapters",
    "MergeError": "merge",
    "image_weights": "merge",
    "merge_adapter_files": "merge",
    "merge_adapters": "merge",
    "TrainSettings": "train",
    "train_lora": "train",
    "ConceptMismatch": "apply",
    "DeltaCache": "apply",
    "applied": "apply",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightbox_node.finetune' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lightbox_node.finetune.{module}"), name)


__all__ = sorted(_EXPORTS)  # the names __getattr__ resolves
