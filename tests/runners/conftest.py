"""Fixtures for the runner tests: the tiny models built once, served from the bundled catalog.

No test here reaches a model hub: the hub is switched off before anything imports it, and
every model is a `tiny-*` one built from config with random weights, loaded back through the
same catalog path as real weights. Image inputs live in an in-memory blob map, fetched
through the host's `images` resolver as the queue node's blob store would serve them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# Found, not imported: rembg's first import compiles numba code, which the runner does with
# numba's cache in a kept folder (see lightbox_node/runners/background.py).
_missing = [
    name
    for name in ("torch", "diffusers", "transformers", "rembg", "onnx", "PIL", "numpy")
    if importlib.util.find_spec(name) is None
]
if _missing:
    pytest.skip(
        f"the runner tests need the ml extra ({', '.join(_missing)})", allow_module_level=True
    )

import trio  # noqa: E402

from lightbox_node.dispatch.test_tasks import TaskRunner  # noqa: E402
from lightbox_node.runners import build_runners, build_tiny_models  # noqa: E402
from lightbox_node.tasks import load_catalog  # noqa: E402
from tests.runners.harness import Blobs, HostHarness  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node data folder with every tiny model built into `models/`."""
    folder = tmp_path_factory.mktemp("node-data")
    build_tiny_models(folder)
    return folder


@pytest.fixture(scope="session")
def served(data_dir: Path) -> tuple[dict[str, TaskRunner], list[str]]:
    return build_runners(load_catalog(), data_dir, device="cpu")


@pytest.fixture(scope="session")
def runners(served: tuple[dict[str, TaskRunner], list[str]]) -> dict[str, Any]:
    return served[0]


@pytest.fixture
def blobs() -> Blobs:
    return Blobs()


@pytest.fixture
async def host_for(nursery: trio.Nursery, blobs: Blobs) -> Callable[..., Any]:
    """Start a GpuHost serving the given runners; `images=False` gives it no resolver."""

    async def start(runners: dict[str, Any], *, images: bool = True, slots: int = 1) -> HostHarness:
        harness = HostHarness(runners, blobs.fetch if images else None, slots)
        await nursery.start(harness.host.run)
        harness.host.attach(HostHarness.QUEUE, harness.receive)
        return harness

    return start


@pytest.fixture
def forward_calls() -> Iterator[Callable[[Any], list[bool]]]:
    """Count a module's forward calls (while the test runs), noting a flag at each start."""
    handles: list[Any] = []

    def watch(module: Any, flag: Callable[[], bool] = lambda: False) -> list[bool]:
        calls: list[bool] = []
        handles.append(module.register_forward_pre_hook(lambda m, a: calls.append(flag())))
        return calls

    yield watch
    for handle in handles:
        handle.remove()
