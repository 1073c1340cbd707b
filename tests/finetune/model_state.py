"""Checking that a shared model is given back exactly as it was: same tensors, same values."""

from __future__ import annotations

from typing import Any

import torch

Snapshot = dict[str, tuple[torch.Tensor, int]]


def snapshot(model: Any) -> Snapshot:
    """Every parameter and buffer: a copy of its values and the address of its storage."""
    return {name: (t.detach().clone(), t.data_ptr()) for name, t in model.state_dict().items()}


def assert_unchanged(model: Any, before: Snapshot) -> None:
    """The model holds the very same tensors as at `before`, bit for bit."""
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, (values, address) in before.items():
        assert after[name].data_ptr() == address, f"{name} is another tensor"
        assert torch.equal(after[name], values), f"{name} changed"
