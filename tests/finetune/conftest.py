"""Fixtures for the fine-tuning tests: the tiny models built once and served from the catalog.

As in the runner tests, no model hub is reached: `tiny-sd` is built from config with random
weights and loaded back through the catalog and the runners, the path real weights take.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

_missing = [
    name
    for name in ("torch", "diffusers", "transformers", "peft", "safetensors", "PIL", "numpy")
    if importlib.util.find_spec(name) is None
]
if _missing:
    pytest.skip(
        f"the fine-tuning tests need the ml extra ({', '.join(_missing)})", allow_module_level=True
    )

import torch  # noqa: E402

from lightbox_node.runners import build_runners, build_tiny_models  # noqa: E402
from lightbox_node.tasks import load_catalog  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from two threads, and on a shared two-core machine torch's
    spinning threads make a 2 s fine-tune take a minute; results are the same either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node data folder with every tiny model built into `models/`."""
    folder = tmp_path_factory.mktemp("node-data")
    build_tiny_models(folder)
    return folder


@pytest.fixture(scope="session")
def runners(data_dir: Path) -> dict[str, Any]:
    """The CPU runners of the bundled catalog's tiny models, sharing one pipeline cache."""
    served, _ = build_runners(load_catalog(), data_dir, device="cpu")
    return served


@pytest.fixture(scope="session")
def pipe(runners: dict[str, Any]) -> Any:
    """A job pipeline around the cached tiny Stable Diffusion (its own sampler)."""
    return runners["finetune"].job_pipeline("euler_a")


@pytest.fixture(scope="session")
def unet(pipe: Any) -> Any:
    """The cached tiny UNet itself: what every job of the host shares."""
    return pipe.unet
