"""The tiny models: built from config, reproducibly, once, and loadable like real weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lightbox_node.runners import build_tiny_models
from lightbox_node.runners.random_weights import byte_level_vocab, clip_tokenizer
from lightbox_node.tasks import load_catalog


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_every_tiny_model_is_where_the_catalog_expects_it(data_dir: Path) -> None:
    catalog = load_catalog()
    tiny = [model for model in catalog if model.startswith("tiny-")]
    survey = {model: catalog.availability(model, data_dir) for model in tiny}
    assert {model: a.state for model, a in survey.items()} == dict.fromkeys(tiny, "local")


def test_building_again_changes_nothing(data_dir: Path) -> None:
    before = digests(data_dir / "models")
    stamps = {p: p.stat().st_mtime_ns for p in (data_dir / "models").rglob("*")}
    build_tiny_models(data_dir)
    assert digests(data_dir / "models") == before
    assert {p: p.stat().st_mtime_ns for p in (data_dir / "models").rglob("*")} == stamps


def test_the_random_weights_are_the_same_in_every_build(tmp_path: Path, data_dir: Path) -> None:
    built = build_tiny_models(tmp_path)
    for model in ("tiny-sd", "tiny-realesrgan"):
        ours = {k: v for k, v in digests(built[model]).items() if k.endswith(".safetensors")}
        theirs = {k: v for k, v in digests(data_dir / "models" / model).items() if k in ours}
        assert ours == theirs
    assert not [p for p in tmp_path.joinpath("models").iterdir() if p.name.startswith(".")]


def test_the_byte_level_tokenizer_covers_any_text(tmp_path: Path) -> None:
    vocab, merges = byte_level_vocab()
    assert len(vocab) == 512 + len(merges) + 2
    tokenizer = clip_tokenizer(tmp_path)
    common = tokenizer("a photo of the cat")["input_ids"]
    assert common[0] == tokenizer.bos_token_id and common[-1] == tokenizer.eos_token_id
    assert len(common) == 2 + 5, "common words are single tokens"
    rare = tokenizer("ünïcödé ✨ zebra")["input_ids"]
    assert max(rare) < len(vocab) and tokenizer.unk_token_id not in rare[1:-1]
