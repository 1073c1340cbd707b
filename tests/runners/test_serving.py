"""Serving from the catalog: a runner per task for the models that are here, reasons for others."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lightbox_node.runners import ModelLoadFailed, build_runners
from lightbox_node.tasks import bundled_catalog_dir, load_catalog

SERVED = {
    "txt2img": "tiny-sd",
    "img2img": "tiny-sd",
    "finetune": "tiny-sd",
    "inpaint": "tiny-sd-inpaint",
    "outpaint": "tiny-sd-inpaint",
    "instruct_edit": "tiny-pix2pix",
    "remove_background": "tiny-rembg",
    "upscale": "tiny-realesrgan",
}


def test_the_tiny_models_serve_every_task_that_has_a_runner(served: tuple) -> None:
    runners, _ = served
    assert {task: r.source.model_id for task, r in runners.items()} == SERVED
    for task, runner in runners.items():
        assert runner.schema.name == task
        assert "(demo)" in runner.schema.description, "the description says it is a demo model"
    txt2img = runners["txt2img"].schema
    assert (txt2img.input("width").default, txt2img.input("steps").default) == (64, 2)


def test_every_model_not_served_has_a_clear_reason(served: tuple) -> None:
    _, reasons = served
    hub_only = ["instruct-pix2pix", "realesrgan-x4plus", "stable-diffusion-inpainting"]
    hub_only += ["stable-diffusion-v1-5", "u2net"]
    for model in hub_only:
        (line,) = [r for r in reasons if r.startswith(f"{model}: ")]
        assert "not served: hub id only" in line and "downloads are disabled" in line
    assert len(reasons) == len(hub_only)


def catalog_with(tmp_path: Path, *files: str, extra: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "catalog"
    folder.mkdir()
    for name in files:
        shutil.copy(bundled_catalog_dir() / f"{name}.toml", folder)
    for name, text in (extra or {}).items():
        (folder / f"{name}.toml").write_text(text)
    return folder


def test_a_real_model_wins_over_a_demo_model_for_the_same_task(
    tmp_path: Path, data_dir: Path
) -> None:
    own = f"""
id = "my-sd"
title = "My Stable Diffusion"
tasks = ["txt2img"]
pipeline = "stable-diffusion"
license = "Apache-2.0"
[weights]
path = "{data_dir / "models" / "tiny-sd"}"
"""
    catalog = load_catalog(catalog_with(tmp_path, "tiny-sd", extra={"my-sd": own}))
    runners, reasons = build_runners(catalog, data_dir, device="cpu")
    assert runners["txt2img"].source.model_id == "my-sd"
    assert runners["img2img"].source.model_id == "tiny-sd"
    assert "tiny-sd: txt2img not served: my-sd serves txt2img here" in reasons
    preferred, _ = build_runners(catalog, data_dir, device="cpu", prefer=["tiny-sd"])
    assert preferred["txt2img"].source.model_id == "tiny-sd"


def test_missing_weights_and_a_bad_checksum_are_named(tmp_path: Path) -> None:
    weights = tmp_path / "x4.pth"
    weights.write_bytes(b"not the weights you are looking for")
    wrong = hashlib.sha256(b"the real file").hexdigest()
    entry = f"""
id = "checked-upscaler"
title = "Checked upscaler"
tasks = ["upscale"]
pipeline = "realesrgan"
license = "BSD-3-Clause"
[weights]
file = "{weights}"
sha256 = "{wrong}"
"""
    folder = catalog_with(tmp_path, "tiny-sd", extra={"checked-upscaler": entry})
    runners, reasons = build_runners(load_catalog(folder), tmp_path / "empty", device="cpu")
    assert runners == {}
    assert any(
        r.startswith("tiny-sd: not served: weights folder ") and r.endswith("tiny-sd missing")
        for r in reasons
    )
    (line,) = [r for r in reasons if r.startswith("checked-upscaler")]
    assert f"checksum mismatch for {weights}: expected {wrong}, got " in line


def test_weights_that_are_present_but_broken_fault_the_job_with_the_cause(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "models" / "tiny-sd"
    broken.mkdir(parents=True)
    (broken / "model_index.json").write_text("{ this is not json")
    runners, _ = build_runners(load_catalog(catalog_with(tmp_path, "tiny-sd")), tmp_path)
    with pytest.raises(ModelLoadFailed, match=r"model tiny-sd could not be loaded from .*tiny-sd"):
        runners["txt2img"].load()
