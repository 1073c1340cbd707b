"""The two weight files of a concept: a LoRA adapter, and the concept's merged global model.

**Adapter** (what a `finetune` job returns): safetensors with, per adapted UNet module, the
LoRA factors `<module>.lora_A` (rank × in) and `<module>.lora_B` (out × rank), so the
module's weight change is `alpha / rank · B @ A`. The header metadata says what it is:

    format "lightbox.lora", format_version "1", base_model (catalog id), concept (registry
    name), token, rank, alpha, target_modules (JSON list), images, train_steps,
    learning_rate, resolution, prior_preservation ("true"/"false"), seed

**Global model** (what a merge produces): safetensors with, per module, the fused weight
change `<module>.delta` (out × in), and metadata

    format "lightbox.concept", format_version "1", base_model, concept, token,
    weighting ("mean" or "sum"), total_weight, adapters (how many were merged in)

Fused, not stacked factors, because a concept's global model is merged again every time
adapters arrive: stacked factors grow by every adapter's rank for ever (past
out·in / (out + in) they are larger than the fused change), while a fused delta keeps one
size, merges on top of its parent with one addition, is exact by construction, and costs a
job one addition per weight instead of a low-rank product on every denoising step. Its
price is size: on Stable Diffusion 1.5's attention projections about 94 M values (375 MB
in float32), against a few MB for one rank-8 adapter; it is fetched once per host and
version, and cached.

Both arrive from the network, so parsing is strict: a size limit, known metadata keys only,
tensor names that are UNet module paths ending in a known projection, shapes consistent
with each other and the rank, float values only and all finite. Anything else raises
`InvalidAdapter` or `InvalidGlobalModel` saying what was wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import torch

from lightbox_node.errors import LightboxError
from lightbox_node.finetune._tensor_file import read_tensor_file, write_tensor_file

FORMAT_VERSION = 1
ADAPTER_FORMAT = "lightbox.lora"
GLOBAL_MODEL_FORMAT = "lightbox.concept"

MAX_ADAPTER_BYTES = 256 << 20
"""A rank-128 adapter of every SD 1.5 attention projection is about 100 MB in float32."""
MAX_GLOBAL_MODEL_BYTES = 1 << 30
"""The fused change of every SD 1.5 attention projection is about 375 MB in float32."""
MAX_MODULES = 1024
MAX_RANK = 1024

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
"""The attention projections of a diffusers UNet that adapters may change."""

CONCEPT = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
"""A registry concept name (the registry's `CONCEPT_PATTERN`)."""
MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
"""A catalog model id."""
_MODULE = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z0-9_]+){0,15}")
MAX_TOKEN = 64

Weighting = Literal["mean", "sum"]


class InvalidAdapter(LightboxError):
    """Bytes offered as a LoRA adapter are not one: the message says what is wrong."""


class InvalidGlobalModel(LightboxError):
    """Bytes offered as a concept's global model are not one: the message says what is wrong."""


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoraFactors:
    """One module's LoRA factors: `down` (A, rank × in) and `up` (B, out × rank)."""

    down: torch.Tensor
    up: torch.Tensor

    def product(self) -> torch.Tensor:
        """B @ A, the module's weight change before scaling (out × in)."""
        return self.up @ self.down


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """What an adapter was trained for and how; its file's metadata."""

    base_model: str
    concept: str
    token: str
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    images: int
    train_steps: int
    learning_rate: float
    resolution: int
    prior_preservation: bool
    seed: int

    @property
    def scale(self) -> float:
        """LoRA's alpha / rank: the factor between B @ A and the weight change."""
        return self.alpha / self.rank


@dataclass(frozen=True, slots=True)
class Adapter:
    """A LoRA adapter: its metadata and its factors by UNet module path."""

    info: AdapterInfo
    factors: Mapping[str, LoraFactors]

    def delta(self, module: str) -> torch.Tensor:
        """The weight change this adapter makes to `module`: alpha / rank · B @ A."""
        return self.factors[module].product() * self.info.scale


@dataclass(frozen=True, slots=True)
class GlobalModelInfo:
    """What a concept's global model is: its base model, concept, token and merge record.

    `weighting` "mean": the delta is the weighted mean of every adapter merged in so far,
    whose weights add up to `total_weight`. "sum": the delta is their weighted sum.
    """

    base_model: str
    concept: str
    token: str
    weighting: Weighting
    total_weight: float
    adapters: int


@dataclass(frozen=True, slots=True)
class GlobalModel:
    """A concept's global model: the fused weight change of each adapted UNet module."""

    info: GlobalModelInfo
    deltas: Mapping[str, torch.Tensor]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.deltas.values())


# -- metadata fields ----------------------------------------------------------------------------


class _Bad(Exception):
    pass


def _text(meta: Mapping[str, str], key: str, pattern: re.Pattern[str] | None = None) -> str:
    value = meta[key]
    if pattern is not None and not pattern.fullmatch(value):
        raise _Bad(f"{key} {value[:80]!r} is not of the form {pattern.pattern}")
    return value


def _token(meta: Mapping[str, str]) -> str:
    value = meta["token"]
    if not 1 <= len(value) <= MAX_TOKEN or not value.isprintable() or value != value.strip():
        raise _Bad(f"token must be 1 to {MAX_TOKEN} printable characters, not {value[:80]!r}")
    return value


def _int(meta: Mapping[str, str], key: str, low: int, high: int) -> int:
    value = meta[key]
    if not re.fullmatch(r"0|[1-9][0-9]{0,18}", value) or not low <= int(value) <= high:
        raise _Bad(f"{key} must be an integer from {low} to {high}, not {value[:40]!r}")
    return int(value)


def _float(meta: Mapping[str, str], key: str) -> float:
    value = meta[key]
    try:
        number = float(value) if len(value) <= 40 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise _Bad(f"{key} must be a finite number > 0, not {value[:40]!r}")
    return number


def _bool(meta: Mapping[str, str], key: str) -> bool:
    value = meta[key]
    if value not in ("true", "false"):
        raise _Bad(f"{key} must be 'true' or 'false', not {value[:40]!r}")
    return value == "true"


def _targets(meta: Mapping[str, str]) -> tuple[str, ...]:
    try:
        value = json.loads(meta["target_modules"])
    except ValueError:
        value = None
    if (
        type(value) is not list
        or not value
        or any(type(v) is not str or v not in TARGET_MODULES for v in value)
        or len(set(value)) != len(value)
    ):
        raise _Bad(f"target_modules must be a JSON list of some of {list(TARGET_MODULES)}")
    return tuple(value)


def _check_keys(meta: Mapping[str, str], keys: tuple[str, ...], fmt: str) -> None:
    # The format first: an adapter offered as a global model (or the reverse) says so.
    if meta.get("format") != fmt:
        raise _Bad(f"its format is {str(meta.get('format'))[:40]!r}, not {fmt!r}")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise _Bad(
            f"its format version is {str(meta.get('format_version'))[:20]!r}; this node reads "
            f"{FORMAT_VERSION}"
        )
    missing = [k for k in keys if k not in meta]
    if missing:
        raise _Bad(f"its metadata lacks {', '.join(missing)}")
    unknown = sorted(set(meta) - set(keys))
    if unknown:
        raise _Bad(f"its metadata has unknown keys: {', '.join(k[:40] for k in unknown[:5])}")


def _module_of(name: str, suffix: str, targets: tuple[str, ...]) -> str:
    module = name.removesuffix(suffix)
    if (
        not _MODULE.fullmatch(module)
        or not any(module == t or module.endswith("." + t) for t in targets)
        or len(module) > 240
    ):
        raise _Bad(
            f"tensor {name[:80]!r} is not a UNet module path ending in one of the target "
            f"modules {list(targets)}"
        )
    return module


# -- adapters ---------------------------------------------------------------------------------

_ADAPTER_KEYS = (
    "format",
    "format_version",
    "base_model",
    "concept",
    "token",
    "rank",
    "alpha",
    "target_modules",
    "images",
    "train_steps",
    "learning_rate",
    "resolution",
    "prior_preservation",
    "seed",
)


def _adapter_info(meta: Mapping[str, str]) -> AdapterInfo:
    _check_keys(meta, _ADAPTER_KEYS, ADAPTER_FORMAT)
    return AdapterInfo(
        base_model=_text(meta, "base_model", MODEL_ID),
        concept=_text(meta, "concept", CONCEPT),
        token=_token(meta),
        rank=_int(meta, "rank", 1, MAX_RANK),
        alpha=_float(meta, "alpha"),
        target_modules=_targets(meta),
        images=_int(meta, "images", 1, 10_000),
        train_steps=_int(meta, "train_steps", 1, 10_000_000),
        learning_rate=_float(meta, "learning_rate"),
        resolution=_int(meta, "resolution", 8, 16_384),
        prior_preservation=_bool(meta, "prior_preservation"),
        seed=_int(meta, "seed", 0, 2**63 - 1),
    )


def _adapter_factors(
    info: AdapterInfo, tensors: Mapping[str, torch.Tensor]
) -> dict[str, LoraFactors]:
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(".lora_A"):
            downs[_module_of(name, ".lora_A", info.target_modules)] = tensor
        elif name.endswith(".lora_B"):
            ups[_module_of(name, ".lora_B", info.target_modules)] = tensor
        else:
            raise _Bad(f"tensor {name[:80]!r} is neither <module>.lora_A nor <module>.lora_B")
    if not downs or len(downs) > MAX_MODULES:
        raise _Bad(f"it must adapt 1 to {MAX_MODULES} modules, not {len(downs)}")
    if set(downs) != set(ups):
        lonely = sorted(set(downs) ^ set(ups))[0]
        raise _Bad(f"module {lonely[:80]!r} lacks one of its two factors")
    factors = {}
    for module in sorted(downs):
        down, up = downs[module], ups[module]
        if down.dim() != 2 or up.dim() != 2:
            raise _Bad(f"the factors of {module!r} must be matrices")
        if down.shape[0] != info.rank or up.shape[1] != info.rank:
            raise _Bad(
                f"the factors of {module!r} are {tuple(down.shape)} and {tuple(up.shape)}; "
                f"with rank {info.rank} they must be (rank × in) and (out × rank)"
            )
        factors[module] = LoraFactors(down=down, up=up)
    return factors


def parse_adapter(data: bytes, *, max_bytes: int = MAX_ADAPTER_BYTES) -> Adapter:
    """The adapter in `data`, every part checked; `InvalidAdapter` says what is wrong."""
    meta, tensors = read_tensor_file(
        data, max_bytes=max_bytes, error=InvalidAdapter, what="the adapter"
    )
    try:
        info = _adapter_info(meta)
        factors = _adapter_factors(info, tensors)
    except _Bad as why:
        raise InvalidAdapter(f"the adapter is not valid: {why}") from None
    return Adapter(info=info, factors=MappingProxyType(factors))


def _number(value: float) -> str:
    return repr(float(value))


def encode_adapter(adapter: Adapter) -> bytes:
    """The adapter as safetensors bytes (float32 factors), readable by `parse_adapter`."""
    info = adapter.info
    meta = {
        "format": ADAPTER_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "base_model": info.base_model,
        "concept": info.concept,
        "token": info.token,
        "rank": str(info.rank),
        "alpha": _number(info.alpha),
        "target_modules": json.dumps(list(info.target_modules)),
        "images": str(info.images),
        "train_steps": str(info.train_steps),
        "learning_rate": _number(info.learning_rate),
        "resolution": str(info.resolution),
        "prior_preservation": "true" if info.prior_preservation else "false",
        "seed": str(info.seed),
    }
    tensors: dict[str, torch.Tensor] = {}
    for module, factors in adapter.factors.items():
        tensors[f"{module}.lora_A"] = factors.down.float()
        tensors[f"{module}.lora_B"] = factors.up.float()
    return write_tensor_file(tensors, meta)


# -- global models ----------------------------------------------------------------------------

_GLOBAL_KEYS = (
    "format",
    "format_version",
    "base_model",
    "concept",
    "token",
    "weighting",
    "total_weight",
    "adapters",
)


def _global_info(meta: Mapping[str, str]) -> GlobalModelInfo:
    _check_keys(meta, _GLOBAL_KEYS, GLOBAL_MODEL_FORMAT)
    weighting = meta["weighting"]
    if weighting not in ("mean", "sum"):
        raise _Bad(f"weighting must be 'mean' or 'sum', not {weighting[:40]!r}")
    return GlobalModelInfo(
        base_model=_text(meta, "base_model", MODEL_ID),
        concept=_text(meta, "concept", CONCEPT),
        token=_token(meta),
        weighting=weighting,  # type: ignore[arg-type]  # checked just above
        total_weight=_float(meta, "total_weight"),
        adapters=_int(meta, "adapters", 1, 2**63 - 1),
    )


def parse_global_model(data: bytes, *, max_bytes: int = MAX_GLOBAL_MODEL_BYTES) -> GlobalModel:
    """The global model in `data`, every part checked; `InvalidGlobalModel` says what is wrong."""
    meta, tensors = read_tensor_file(
        data, max_bytes=max_bytes, error=InvalidGlobalModel, what="the concept's global model"
    )
    try:
        info = _global_info(meta)
        deltas = {}
        for name in sorted(tensors):
            if not name.endswith(".delta"):
                raise _Bad(f"tensor {name[:80]!r} is not <module>.delta")
            module = _module_of(name, ".delta", TARGET_MODULES)
            if tensors[name].dim() != 2:
                raise _Bad(f"the delta of {module!r} must be a matrix (out × in)")
            deltas[module] = tensors[name]
        if not 1 <= len(deltas) <= MAX_MODULES:
            raise _Bad(f"it must change 1 to {MAX_MODULES} modules, not {len(deltas)}")
    except _Bad as why:
        raise InvalidGlobalModel(f"the concept's global model is not valid: {why}") from None
    return GlobalModel(info=info, deltas=MappingProxyType(deltas))


def encode_global_model(model: GlobalModel, *, dtype: torch.dtype = torch.float32) -> bytes:
    """The global model as safetensors bytes, its deltas stored in `dtype` (float32,
    float16 or bfloat16), readable by `parse_global_model`."""
    info = model.info
    meta = {
        "format": GLOBAL_MODEL_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "base_model": info.base_model,
        "concept": info.concept,
        "token": info.token,
        "weighting": info.weighting,
        "total_weight": _number(info.total_weight),
        "adapters": str(info.adapters),
    }
    tensors = {f"{module}.delta": delta.to(dtype) for module, delta in model.deltas.items()}
    return write_tensor_file(tensors, meta)


__all__ = [
    "ADAPTER_FORMAT",
    "FORMAT_VERSION",
    "GLOBAL_MODEL_FORMAT",
    "MAX_ADAPTER_BYTES",
    "MAX_GLOBAL_MODEL_BYTES",
    "TARGET_MODULES",
    "Adapter",
    "AdapterInfo",
    "GlobalModel",
    "GlobalModelInfo",
    "InvalidAdapter",
    "InvalidGlobalModel",
    "LoraFactors",
    "Weighting",
    "encode_adapter",
    "encode_global_model",
    "parse_adapter",
    "parse_global_model",
]
