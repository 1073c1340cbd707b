"""The model catalog: strict TOML entries, per-model defaults, and honest availability."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lightbox_node import wire
from lightbox_node.tasks import (
    BUILTIN_TASKS,
    PIPELINES,
    Catalog,
    CatalogError,
    load_catalog,
)

SHIPPED = {
    "stable-diffusion-v1-5",
    "stable-diffusion-inpainting",
    "instruct-pix2pix",
    "u2net",
    "realesrgan-x4plus",
    "tiny-sd",
    "tiny-sd-inpaint",
    "tiny-pix2pix",
    "tiny-rembg",
    "tiny-realesrgan",
}

TINY = """\
id = "tiny"
title = "Tiny"
tasks = ["txt2img"]
pipeline = "stable-diffusion"
license = "Apache-2.0"

[weights]
path = "${data_dir}/models/tiny"
"""


def write_entry(folder: Path, text: str, name: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def catalog_error(folder: Path, text: str, name: str = "tiny") -> CatalogError:
    path = write_entry(folder, text, name)
    with pytest.raises(CatalogError) as caught:
        load_catalog(folder)
    assert str(path) in str(caught.value)
    return caught.value


# -- the shipped catalog --------------------------------------------------------------------


def test_the_shipped_catalog_loads_with_every_entry() -> None:
    catalog = load_catalog()
    assert set(catalog) == SHIPPED


def test_every_builtin_task_is_served_by_a_real_and_a_tiny_model() -> None:
    catalog = load_catalog()
    for task in BUILTIN_TASKS:
        served_by = {entry.id for entry in catalog.for_task(task)}
        assert any(m.startswith("tiny-") for m in served_by), task
        assert any(not m.startswith("tiny-") for m in served_by), task


def test_real_models_name_their_hub_and_license_and_tiny_ones_live_in_the_data_dir() -> None:
    catalog = load_catalog()
    for entry in catalog.values():
        assert entry.license
        if entry.id.startswith("tiny-"):
            assert entry.weights.source == "path"
            assert entry.weights.location == f"${{data_dir}}/models/{entry.id}"
        else:
            assert entry.weights.source == "hub"
    assert catalog["stable-diffusion-v1-5"].weights.location == (
        "stable-diffusion-v1-5/stable-diffusion-v1-5"
    )
    assert catalog["instruct-pix2pix"].license == "MIT"


def test_a_models_defaults_shape_the_schema_it_advertises() -> None:
    catalog = load_catalog()
    tiny = catalog.schema_for("tiny-sd", "txt2img")
    assert (tiny.input("width").default, tiny.input("steps").default) == (64, 2)
    assert catalog.schema_for("tiny-sd", "finetune").input("train_steps").default == 50
    assert catalog.schema_for("tiny-sd", "img2img").input("steps").default == 2
    with pytest.raises(KeyError):
        catalog.schema_for("tiny-sd", "upscale")


def test_a_models_public_description_travels_without_local_paths() -> None:
    for entry in load_catalog().values():
        plain = entry.to_wire()
        assert wire.unpack(wire.pack(plain)) == plain
        assert "data_dir" not in json.dumps(plain)


# -- strict loading -------------------------------------------------------------------------


def test_an_unknown_key_names_the_file_the_key_and_the_allowed_keys(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace('license = "Apache-2.0"', 'licence = "MIT"'))
    assert error.key == "licence"
    assert "allowed keys" in str(error) and "license" in str(error)


def test_a_missing_required_key_is_named(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace('title = "Tiny"\n', ""))
    assert error.key == "title" and "missing" in str(error)


def test_a_wrong_type_is_rejected(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace('tasks = ["txt2img"]', 'tasks = "txt2img"'))
    assert error.key == "tasks"


def test_an_unknown_task_is_rejected_with_the_known_tasks(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace('["txt2img"]', '["txt2video"]'))
    assert error.key == "tasks" and "inpaint" in str(error)


def test_a_task_the_pipeline_cannot_run_is_rejected(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace('["txt2img"]', '["upscale"]'))
    assert "cannot run task 'upscale'" in str(error)


def test_an_unknown_pipeline_is_rejected_with_the_known_ones(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace('"stable-diffusion"', '"sdxl-turbo"'))
    assert error.key == "pipeline"
    assert all(name in str(error) for name in PIPELINES)


def test_weights_with_both_a_path_and_a_hub_id_are_rejected(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY + 'hub = "org/name"\n')
    assert error.key == "weights"
    assert "gives path and hub" in str(error) and "exactly one of path" in str(error)


def test_weights_with_neither_path_file_nor_hub_are_rejected(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace('path = "${data_dir}/models/tiny"\n', ""))
    assert error.key == "weights" and "gives none" in str(error)


def test_a_relative_weights_path_is_rejected(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace("${data_dir}/models/tiny", "models/tiny"))
    assert error.key == "weights.path" and "absolute" in str(error)


def test_an_unknown_placeholder_is_rejected(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY.replace("${data_dir}", "${home}"))
    assert error.key == "weights.path" and "${data_dir}" in str(error)


def test_a_checksum_belongs_with_a_single_file(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY + f'sha256 = "{"0" * 64}"\n')
    assert error.key == "weights.sha256"
    error = catalog_error(tmp_path, f'sha256 = "{"0" * 64}"\n' + TINY)
    assert error.key == "sha256" and "[weights]" in str(error)


def test_a_malformed_checksum_is_rejected(tmp_path: Path) -> None:
    text = TINY.replace('path = "${data_dir}/models/tiny"', 'file = "/w/v1.safetensors"')
    error = catalog_error(tmp_path, text + 'sha256 = "ABC"\n')
    assert error.key == "weights.sha256"


def test_a_hub_id_must_have_a_form_the_pipeline_can_download(tmp_path: Path) -> None:
    text = TINY.replace('path = "${data_dir}/models/tiny"', 'hub = "rembg:u2net"')
    error = catalog_error(tmp_path, text)
    assert error.key == "weights.hub" and "org/name" in str(error)


def test_the_id_must_match_the_file_name(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY, name="other")
    assert error.key == "id"


def test_defaults_are_checked_against_the_task_schema(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, TINY + "[defaults]\nsteps = 500\n")
    assert error.key == "defaults.steps" and "at most 150" in str(error)
    error = catalog_error(tmp_path, TINY + "[defaults]\nwidth = 500\n")
    assert error.key == "defaults.width" and "multiple of 8" in str(error)
    error = catalog_error(tmp_path, TINY + "[defaults]\ncfg = 7\n")
    assert error.key == "defaults.cfg"
    error = catalog_error(tmp_path, TINY + "[defaults.inpaint]\nsteps = 5\n")
    assert error.key == "defaults.inpaint" and "does not serve" in str(error)
    error = catalog_error(tmp_path, TINY + '[defaults]\nguidance_scale = "high"\n')
    assert error.key == "defaults.guidance_scale"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    error = catalog_error(tmp_path, "id = \n")
    assert error.key == "" and "not valid TOML" in str(error)


def test_a_missing_catalog_folder_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalog folder missing"):
        load_catalog(tmp_path / "nowhere")


# -- availability ---------------------------------------------------------------------------


def test_a_missing_weights_folder_is_unavailable_with_its_path(tmp_path: Path) -> None:
    catalog = load_catalog()
    found = catalog.availability("tiny-sd", tmp_path)
    assert found.state == "unavailable" and not found.servable
    assert found.reason == f"weights folder {tmp_path / 'models' / 'tiny-sd'} missing"


def test_a_weights_folder_without_model_index_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "models" / "tiny-sd" / "unet").mkdir(parents=True)
    found = load_catalog().availability("tiny-sd", tmp_path)
    assert not found.servable and "has no model_index.json" in found.reason


def test_a_complete_weights_folder_is_local(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "tiny-sd"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    found = load_catalog().availability("tiny-sd", tmp_path)
    assert found.state == "local" and found.location == str(folder)


def test_a_rembg_folder_is_complete_with_an_onnx_file(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "tiny-rembg"
    folder.mkdir(parents=True)
    assert not load_catalog().availability("tiny-rembg", tmp_path).servable
    (folder / "tiny.onnx").write_bytes(b"onnx")
    assert load_catalog().availability("tiny-rembg", tmp_path).servable


def _file_entry(tmp_path: Path, sha256: str) -> Catalog:
    text = TINY.replace('path = "${data_dir}/models/tiny"', 'file = "${data_dir}/v1.safetensors"')
    write_entry(tmp_path / "catalog", text + f'sha256 = "{sha256}"\n')
    return load_catalog(tmp_path / "catalog")


def test_a_single_file_with_the_right_checksum_is_local(tmp_path: Path) -> None:
    weights = b"\x00weights\x01" * 100_000
    (tmp_path / "v1.safetensors").write_bytes(weights)
    catalog = _file_entry(tmp_path, hashlib.sha256(weights).hexdigest())
    found = catalog.availability("tiny", tmp_path)
    assert found.state == "local" and "checksum ok" in found.reason


def test_a_single_file_with_the_wrong_checksum_is_unavailable_saying_both_sums(
    tmp_path: Path,
) -> None:
    (tmp_path / "v1.safetensors").write_bytes(b"not the weights you want")
    expected = hashlib.sha256(b"the real weights").hexdigest()
    actual = hashlib.sha256(b"not the weights you want").hexdigest()
    found = _file_entry(tmp_path, expected).availability("tiny", tmp_path)
    assert not found.servable
    assert (
        f"checksum mismatch for {tmp_path / 'v1.safetensors'}: expected {expected}, got {actual}"
        in (found.reason)
    )


def test_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "v1.safetensors"
    path.write_bytes(b"first")
    catalog = _file_entry(tmp_path, hashlib.sha256(b"second!").hexdigest())
    assert not catalog.availability("tiny", tmp_path).servable
    path.write_bytes(b"second!")
    assert catalog.availability("tiny", tmp_path).servable


def test_a_missing_single_file_is_unavailable(tmp_path: Path) -> None:
    found = _file_entry(tmp_path, "0" * 64).availability("tiny", tmp_path)
    assert found.reason == f"weights file {tmp_path / 'v1.safetensors'} missing"


def test_a_hub_only_model_is_unavailable_when_downloads_are_disabled(tmp_path: Path) -> None:
    found = load_catalog().availability("stable-diffusion-v1-5", tmp_path)
    assert not found.servable
    assert found.reason.startswith(
        "hub id only (stable-diffusion-v1-5/stable-diffusion-v1-5) and downloads are disabled"
    )


def test_a_hub_only_model_is_downloadable_when_downloads_are_allowed(tmp_path: Path) -> None:
    found = load_catalog().availability("u2net", tmp_path, allow_downloads=True)
    assert found.state == "downloadable" and found.servable


def test_a_hub_model_already_in_the_hub_cache_is_local(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--timbrooks--instruct-pix2pix" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    found = load_catalog().availability("instruct-pix2pix", tmp_path, hub_cache=tmp_path / "hub")
    assert found.state == "local" and found.location == str(snapshot)


def test_a_survey_covers_every_model(tmp_path: Path) -> None:
    survey = load_catalog().survey(tmp_path)
    assert set(survey) == SHIPPED
    assert not any(a.servable for a in survey.values())
