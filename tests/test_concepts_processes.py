"""Federated DreamBooth end to end across real loopback processes, on tiny CPU models.

Four `lightbox-node run` processes: a registry node R (merges once two adapters wait) and
three queue+gpu nodes. Two of them fine-tune the concept "rex" from different photos; their
queue nodes submit the adapters; R fetches both, merges them exactly and commits the global
model; the third node, which never saw an adapter, paints with the concept after fetching
the merged model from R, and the picture differs from the same seed without the concept.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightbox_node.runners import build_tiny_models
from lightbox_node.store import BlobId, BlobStore
from tests.node_process import RunningNode, http_json

pytestmark = pytest.mark.slow

TIMEOUT_S = 120


def photo(seed: int) -> str:
    """A 256 px photo-like picture (smooth colours and a blob) as a PNG data URL."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:256, 0:256] / 255.0
    base = rng.uniform(0.2, 0.8, 3)
    pixels = np.stack([base[c] + 0.2 * np.sin(6 * x + c + seed) * y for c in range(3)], -1)
    cx, cy = rng.uniform(80, 176, 2)
    pixels[(np.hypot(x * 255 - cx, y * 255 - cy) < 40)] = rng.uniform(0, 1, 3)
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_job(node: RunningNode, task: str, inputs: dict) -> dict:
    status, job = node.api("jobs", method="POST", body={"task": task, "inputs": inputs})
    assert status == 201, job

    def ended() -> dict | None:
        status, view = node.api(f"jobs/{job['job_id']}")
        assert status == 200, view
        return view if view["state"] in ("done", "faulted", "cancelled", "expired") else None

    final = wait_for(ended, TIMEOUT_S, f"{task} job to end")
    assert final["state"] == "done", final
    return final


def result_bytes(node: RunningNode, job_id: str) -> dict[str, bytes]:
    status, body = node.api(f"jobs/{job_id}/result")
    assert status == 200, body
    return {name: base64.b64decode(text) for name, text in body["outputs"].items()}


def finetune_inputs(seed: int) -> dict:
    return {
        "instance_images": [photo(seed * 10 + i) for i in range(3)],
        "concept": "rex",
        "concept_token": "sks",
        "train_steps": 50,
        "resolution": 64,
        "learning_rate": 1e-2,
        "seed": seed,
    }


def paint_inputs(**extra: object) -> dict:
    return {
        "prompt": "a photo of sks dog",
        "width": 64,
        "height": 64,
        "steps": 2,
        "seed": 7,
        **extra,
    }


def test_two_hosts_fine_tune_the_leader_merges_and_a_third_host_paints_the_concept(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    build_tiny_models(shared)  # once, linked into every node instead of built four times
    dirs = {name: tmp_path / name for name in ("r", "h1", "h2", "h3")}
    for name, data_dir in dirs.items():
        data_dir.mkdir()
        if name != "r":
            (data_dir / "models").symlink_to(shared / "models", target_is_directory=True)
    nodes: list[RunningNode] = []
    try:
        registry = RunningNode(
            dirs["r"], "--set", "merge_every=2", "--set", "test_tasks=false", roles="registry"
        )
        nodes.append(registry)
        hosts = {}
        for name in ("h1", "h2", "h3"):
            hosts[name] = RunningNode(
                dirs[name],
                "--set",
                "demo_models=true",
                roles="queue,gpu",
                bootstrap=(registry.bootstrap_entry,),
            )
            nodes.append(hosts[name])

        tuned = [
            run_job(hosts["h1"], "finetune", finetune_inputs(1)),
            run_job(hosts["h2"], "finetune", finetune_inputs(2)),
        ]
        adapters = [job["results"][0] for job in tuned]

        def merged() -> dict | None:
            status, concept = http_json(hosts["h3"].editor + "api/v1/registry/concepts/rex")
            return concept if status == 200 and concept.get("model") else None

        concept = wait_for(merged, TIMEOUT_S, "the leader to merge both adapters")
        assert concept["version"] == 1 and concept["pending_count"] == 0
        status, history = http_json(hosts["h3"].editor + "api/v1/registry/concepts/rex/history")
        assert status == 200, history
        (merge,) = [e for e in history["events"] if e["kind"] == "merge"]
        assert sorted(merge["adapters"]) == sorted(adapters)
        assert merge["weights"] == [3, 3] and merge["by"] == registry.peer_id

        with_concept = run_job(hosts["h3"], "txt2img", paint_inputs(concept="rex"))
        without = run_job(hosts["h3"], "txt2img", paint_inputs())
        painted = result_bytes(hosts["h3"], with_concept["job_id"])
        plain = result_bytes(hosts["h3"], without["job_id"])
        assert painted.keys() == plain.keys()
        pixels = [
            np.asarray(Image.open(io.BytesIO(next(iter(r.values())))), dtype=np.int16)
            for r in (painted, plain)
        ]
        assert np.abs(pixels[0] - pixels[1]).mean() > 1.0  # the concept changed the picture

        # The third host fetched the merged model, never an adapter.
        store = BlobStore(dirs["h3"] / "blobs")
        assert store.has(BlobId.parse(concept["model"]))
        assert not any(store.has(BlobId.parse(a)) for a in adapters)
    finally:
        for node in nodes:
            node.stop()
