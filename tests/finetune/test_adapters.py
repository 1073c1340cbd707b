"""Adapter and global-model files: standard safetensors out, anything malformed refused in."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_safetensors

from lightbox_node.errors import LightboxError
from lightbox_node.finetune.adapters import (
    InvalidAdapter,
    InvalidGlobalModel,
    encode_adapter,
    encode_global_model,
    parse_adapter,
    parse_global_model,
)
from tests.finetune.factories import SHAPES, global_model, random_adapter

ADAPTER = random_adapter(rank=3, seed=1)
ADAPTER_BYTES = encode_adapter(ADAPTER)
MODEL = global_model({m: torch.randn(r, c) for m, (r, c) in SHAPES.items()}, total_weight=5.5)
MODEL_BYTES = encode_global_model(MODEL)


def raw_file(header: dict[str, Any], data: bytes = b"") -> bytes:
    """A safetensors file written by hand, header and all, so that it can be wrong."""
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def refused(data: bytes) -> str:
    with pytest.raises(InvalidAdapter) as caught:
        parse_adapter(data)
    return str(caught.value)


def with_metadata(**changes: str | None) -> bytes:
    header, data = split(ADAPTER_BYTES)
    for key, value in changes.items():
        if value is None:
            del header["__metadata__"][key]
        else:
            header["__metadata__"][key] = value
    return raw_file(header, data)


# -- round trips ------------------------------------------------------------------------------


def test_an_adapter_round_trips_with_its_metadata_and_factors() -> None:
    parsed = parse_adapter(ADAPTER_BYTES)
    assert parsed.info == ADAPTER.info
    assert parsed.factors.keys() == ADAPTER.factors.keys()
    for module, factors in ADAPTER.factors.items():
        assert torch.equal(parsed.factors[module].down, factors.down)
        assert torch.equal(parsed.factors[module].up, factors.up)
    module = next(iter(SHAPES))
    assert torch.allclose(parsed.delta(module), ADAPTER.delta(module))


def test_an_adapter_is_standard_safetensors_with_lora_factor_names() -> None:
    tensors = load_safetensors(ADAPTER_BYTES)
    module = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    assert tensors[f"{module}.lora_A"].shape == (3, 6)  # rank × in
    assert tensors[f"{module}.lora_B"].shape == (8, 3)  # out × rank
    header, _ = split(ADAPTER_BYTES)
    meta = header["__metadata__"]
    assert meta["format"] == "lightbox.lora" and meta["format_version"] == "1"
    assert (meta["base_model"], meta["concept"], meta["token"], meta["rank"]) == (
        "tiny-sd",
        "my-dog",
        "sks",
        "3",
    )


def test_a_global_model_round_trips_in_float32_and_in_half_precision() -> None:
    parsed = parse_global_model(MODEL_BYTES)
    assert parsed.info == MODEL.info
    for module, delta in MODEL.deltas.items():
        assert torch.equal(parsed.deltas[module], delta)
    half = parse_global_model(encode_global_model(MODEL, dtype=torch.float16))
    assert len(encode_global_model(MODEL, dtype=torch.float16)) < len(MODEL_BYTES)
    for module, delta in MODEL.deltas.items():
        assert torch.allclose(half.deltas[module], delta, atol=2e-3)
        assert half.deltas[module].dtype == torch.float32


def test_one_content_has_one_encoding_so_one_blob_id() -> None:
    assert encode_adapter(parse_adapter(ADAPTER_BYTES)) == ADAPTER_BYTES
    assert encode_global_model(parse_global_model(MODEL_BYTES)) == MODEL_BYTES
    (length,) = struct.unpack_from("<Q", ADAPTER_BYTES)
    assert length % 8 == 0, "the header is padded so the data is aligned"


def test_a_global_model_in_bfloat16_reads_back() -> None:
    parsed = parse_global_model(encode_global_model(MODEL, dtype=torch.bfloat16))
    for module, delta in MODEL.deltas.items():
        assert torch.equal(parsed.deltas[module], delta.to(torch.bfloat16).float())


# -- refusals, each with its reason -----------------------------------------------------------


def test_an_oversized_file_is_refused_before_it_is_read() -> None:
    with pytest.raises(InvalidAdapter, match="over the limit"):
        parse_adapter(ADAPTER_BYTES, max_bytes=len(ADAPTER_BYTES) - 1)


@pytest.mark.parametrize("cut", [0, 7, 8, 20, -1])
def test_a_truncated_file_is_refused(cut: int) -> None:
    assert "not valid" in refused(ADAPTER_BYTES[:cut])


def test_a_header_that_is_not_plain_json_is_refused() -> None:
    assert "not JSON" in refused(struct.pack("<Q", 5) + b"{nope")
    assert "repeats the key" in refused(struct.pack("<Q", 15) + b'{"a":1, "a":2} ')
    assert "not plain JSON" in refused(struct.pack("<Q", 10) + b'{"a":NaN} ')
    assert "not a JSON object" in refused(struct.pack("<Q", 2) + b"[]")


def test_a_gap_or_trailing_bytes_in_the_data_is_refused() -> None:
    header, data = split(ADAPTER_BYTES)
    assert "not exactly the tensors" in refused(raw_file(header, data + b"\0\0\0\0"))
    name = next(k for k in header if k != "__metadata__" and header[k]["data_offsets"][0] == 0)
    header[name]["data_offsets"] = [4, header[name]["data_offsets"][1] + 4]
    assert "not valid" in refused(raw_file(header, b"\0\0\0\0" + data))


def test_values_that_are_not_finite_are_refused() -> None:
    header, data = split(ADAPTER_BYTES)
    poisoned = bytearray(data)
    poisoned[0:4] = struct.pack("<f", float("nan"))
    assert "not finite" in refused(raw_file(header, bytes(poisoned)))


def test_integer_tensors_are_refused() -> None:
    header, data = split(ADAPTER_BYTES)
    name = next(k for k in header if k != "__metadata__")
    header[name]["dtype"] = "I32"
    assert "dtype 'I32'" in refused(raw_file(header, data))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"rank": None}, "lacks rank"),
        ({"colour": "blue"}, "unknown keys: colour"),
        ({"format": "lightbox.concept"}, "format is 'lightbox.concept'"),
        ({"format_version": "2"}, "this node reads 1"),
        ({"rank": "2"}, "with rank 2"),
        ({"rank": "-3"}, "rank must be an integer"),
        ({"alpha": "nan"}, "alpha must be a finite number"),
        ({"alpha": "0"}, "alpha must be a finite number"),
        ({"concept": "My Dog"}, "concept 'My Dog' is not of the form"),
        ({"base_model": "../etc"}, "base_model '../etc'"),
        ({"token": " sks"}, "token must be"),
        ({"target_modules": '["to_q", "proj_in"]'}, "target_modules must be"),
        ({"target_modules": '["to_q"]'}, "ending in one of the target modules"),
        ({"prior_preservation": "yes"}, "prior_preservation must be 'true' or 'false'"),
    ],
)
def test_bad_metadata_is_refused_with_the_key(changes: dict[str, str | None], reason: str) -> None:
    assert reason in refused(with_metadata(**changes))


def test_a_module_missing_one_factor_is_refused() -> None:
    header, _ = split(ADAPTER_BYTES)
    tensors = load_safetensors(ADAPTER_BYTES)
    name = next(n for n in tensors if n.endswith(".lora_B"))
    del tensors[name]
    from safetensors.torch import save

    assert "lacks one of its two factors" in refused(save(tensors, metadata=header["__metadata__"]))


def test_tensors_that_are_not_lora_factors_of_attention_projections_are_refused() -> None:
    from safetensors.torch import save

    header, _ = split(ADAPTER_BYTES)
    meta = header["__metadata__"]
    tensors = load_safetensors(ADAPTER_BYTES)
    assert "neither <module>.lora_A" in refused(save({**tensors, "x.weight": torch.ones(2)}, meta))
    wrong = {"conv_in.lora_A": torch.ones(3, 4), "conv_in.lora_B": torch.ones(4, 3)}
    assert "target modules" in refused(save(wrong, meta))
    assert "1 to 1024 modules, not 0" in refused(save({}, meta))


def test_a_global_model_is_refused_as_one_and_an_adapter_is_not_a_global_model() -> None:
    with pytest.raises(InvalidGlobalModel, match=r"format is 'lightbox\.lora'"):
        parse_global_model(ADAPTER_BYTES)
    with pytest.raises(InvalidAdapter, match=r"format is 'lightbox\.concept'"):
        parse_adapter(MODEL_BYTES)
    header, data = split(MODEL_BYTES)
    header["__metadata__"]["weighting"] = "median"
    with pytest.raises(InvalidGlobalModel, match="weighting must be"):
        parse_global_model(raw_file(header, data))


# -- fuzzing: whatever arrives, only our error comes out --------------------------------------


def _only_our_error(parse: Any, error: type[LightboxError], data: bytes) -> None:
    with contextlib.suppress(error):  # anything else fails the test
        parse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_the_format_error(data: bytes) -> None:
    _only_our_error(parse_adapter, InvalidAdapter, data)
    _only_our_error(parse_global_model, InvalidGlobalModel, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_files_only_ever_raise_the_format_error(data: st.DataObject) -> None:
    original = data.draw(st.sampled_from([ADAPTER_BYTES, MODEL_BYTES]))
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(damaged) - 1))
        damaged[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    damaged = damaged[:cut] + data.draw(st.binary(max_size=16))
    _only_our_error(parse_adapter, InvalidAdapter, bytes(damaged))
    _only_our_error(parse_global_model, InvalidGlobalModel, bytes(damaged))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["__metadata__", "a.lora_A", "a.to_q.lora_A", "x.delta"])
        | st.text(max_size=12),
        _json_values,
        max_size=5,
    ),
    st.binary(max_size=64),
)
def test_random_headers_only_ever_raise_the_format_error(
    header: dict[str, Any], data: bytes
) -> None:
    raw = raw_file(header, data)  # NaN and infinity included: json writes them, we refuse them
    _only_our_error(parse_adapter, InvalidAdapter, raw)
    _only_our_error(parse_global_model, InvalidGlobalModel, raw)
