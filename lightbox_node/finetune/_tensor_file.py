"""Safetensors files read strictly, for weights that arrive from the network.

The safetensors layout is 8 bytes of little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range (plus a `__metadata__` map of text), then the data.
Reading it here, in Python, rather than through the safetensors library means every check
runs before anything is allocated, and no malformed file can reach native code: the header
is bounded, its JSON must be plain (no duplicate keys, no NaN), every byte range must tile
the data exactly, and every value must be finite. Writing is canonical (one content, one
byte string, so one blob id) and standard: the safetensors library reads what is written.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lightbox_node.errors import LightboxError

MAX_HEADER_BYTES = 4 << 20
"""Far above the header of any adapter (a few hundred tensors), far below harm."""
MAX_DIM = 1 << 16
MAX_METADATA_VALUE = 4096

DTYPES: Mapping[str, torch.dtype] = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
"""Floating dtypes accepted on reading; every tensor is handed out as float32."""

_LITTLE = {
    torch.float32: np.dtype("<f4"),
    torch.float16: np.dtype("<f2"),
    torch.bfloat16: np.dtype("<i2"),  # raw bits, viewed as bfloat16 once in native order
}
"""How each dtype's values lie in a safetensors file: little-endian, whatever this machine is."""

TENSOR_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]{0,255}")
_HEADER_LENGTH = struct.Struct("<Q")


class _Reject(Exception):
    """Internal: why a file was refused; the caller turns it into its own error."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Reject(f"the header repeats the key {key[:80]!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise _Reject(f"the header holds {name}, which is not plain JSON")


def _header(data: bytes) -> tuple[dict[str, Any], int]:
    if len(data) < _HEADER_LENGTH.size:
        raise _Reject(f"{len(data)} bytes is too short for a safetensors file")
    (length,) = _HEADER_LENGTH.unpack_from(data)
    if not 2 <= length <= min(MAX_HEADER_BYTES, len(data) - _HEADER_LENGTH.size):
        raise _Reject(f"the header length {length} does not fit the file")
    start = _HEADER_LENGTH.size
    try:
        text = data[start : start + length].decode("utf-8")
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Reject(f"the header is not JSON: {str(exc)[:120]}") from None
    if type(header) is not dict:
        raise _Reject("the header is not a JSON object")
    return header, start + length


def _metadata(value: Any) -> dict[str, str]:
    if type(value) is not dict:
        raise _Reject("__metadata__ must be a map of text")
    for key, text in value.items():
        if type(text) is not str or len(key) > 64 or len(text) > MAX_METADATA_VALUE:
            raise _Reject(f"metadata {key[:64]!r} must be text of at most {MAX_METADATA_VALUE}")
    return value


def _entry(name: str, spec: Any) -> tuple[torch.dtype, tuple[int, ...], int, int]:
    if not TENSOR_NAME.fullmatch(name):
        raise _Reject(f"tensor name {name[:80]!r} is not a plain dotted name")
    if type(spec) is not dict or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise _Reject(f"tensor {name}: needs exactly dtype, shape and data_offsets")
    dtype = DTYPES.get(spec["dtype"]) if type(spec["dtype"]) is str else None
    if dtype is None:
        raise _Reject(
            f"tensor {name}: dtype {str(spec['dtype'])[:20]!r} is not one of {list(DTYPES)}"
        )
    shape = spec["shape"]
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 4
        or any(type(d) is not int or not 1 <= d <= MAX_DIM for d in shape)
    ):
        raise _Reject(f"tensor {name}: shape must be 1 to 4 sizes from 1 to {MAX_DIM}")
    offsets = spec["data_offsets"]
    if type(offsets) is not list or len(offsets) != 2 or any(type(o) is not int for o in offsets):
        raise _Reject(f"tensor {name}: data_offsets must be two integers")
    begin, end = offsets
    size = math.prod(shape) * dtype.itemsize
    if begin < 0 or end - begin != size:
        raise _Reject(f"tensor {name}: its byte range does not hold a {shape} {spec['dtype']}")
    return dtype, tuple(shape), begin, end


def read_tensor_file(
    data: bytes, *, max_bytes: int, error: type[LightboxError], what: str
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and the float32 tensors of a safetensors file, every part checked.

    Anything wrong raises `error` with a message starting "`what` is not valid: ...".
    """
    try:
        if type(data) is not bytes:
            raise _Reject(f"expected bytes, not {type(data).__name__}")
        if len(data) > max_bytes:
            raise _Reject(f"{len(data)} bytes is over the limit of {max_bytes}")
        header, data_start = _header(data)
        metadata = _metadata(header.pop("__metadata__", None))
        entries = {name: _entry(name, spec) for name, spec in header.items()}
        ranges = sorted((begin, end, name) for name, (_, _, begin, end) in entries.items())
        position = 0
        for begin, end, name in ranges:
            if begin != position:
                raise _Reject(f"tensor {name}: byte ranges must tile the data without gaps")
            position = end
        if data_start + position != len(data):
            raise _Reject("the data is not exactly the tensors the header lists")
        tensors = {}
        for name, (dtype, shape, begin, end) in entries.items():
            layout = _LITTLE[dtype]
            count = (end - begin) // layout.itemsize
            little = np.frombuffer(data, dtype=layout, count=count, offset=data_start + begin)
            native = little.astype(layout.newbyteorder("="))
            tensor = torch.from_numpy(native)
            if dtype == torch.bfloat16:
                tensor = tensor.view(torch.bfloat16)
            tensor = tensor.reshape(shape).to(torch.float32)
            if not bool(torch.isfinite(tensor).all()):
                raise _Reject(f"tensor {name} holds values that are not finite")
            tensors[name] = tensor
    except _Reject as why:
        raise error(f"{what} is not valid: {why}") from None
    return metadata, tensors


_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


def write_tensor_file(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """Canonical safetensors bytes of float `tensors` with `metadata`: the same tensors and
    metadata always give the same bytes (sorted names and keys, no whitespace but the
    header's padding to 8 bytes), so equal content has one blob id."""
    entries: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        raw = tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor
        # A view of the tensor's memory where it is little-endian already (copied otherwise);
        # the one copy of the data is the join below.
        data = memoryview(np.ascontiguousarray(raw.numpy(), dtype=_LITTLE[tensor.dtype])).cast("B")
        entries[name] = {
            "dtype": _DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
    header += b" " * (-len(header) % 8)
    return b"".join([_HEADER_LENGTH.pack(len(header)), header, *chunks])


__all__ = ["DTYPES", "MAX_DIM", "TENSOR_NAME", "read_tensor_file", "write_tensor_file"]
