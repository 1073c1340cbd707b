"""The editor's files: small, all shipped in the wheel, and every module they load exists."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "web_static"
BUDGET = 300 * 1024


def static_files() -> list[Path]:
    return [p for p in STATIC.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def test_the_editor_stays_under_300_kb_uncompressed() -> None:
    total = sum(p.stat().st_size for p in static_files())
    assert total < BUDGET, f"web_static/ holds {total} bytes; the budget is {BUDGET}"


def test_every_editor_file_is_package_data() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = tool["package-data"]["lightbox_node.web_static"]
    for path in static_files():
        if path.suffix == ".py":
            continue
        relative = path.relative_to(STATIC).as_posix()
        assert any(
            fnmatch.fnmatch(relative, g) and g.count("/") == relative.count("/") for g in globs
        ), relative


def test_every_import_and_asset_points_at_a_file() -> None:
    for path in [*STATIC.glob("js/*.js"), STATIC / "index.html"]:
        text = path.read_text()
        targets = re.findall(r"""from\s+["'](\./[^"']+)["']""", text)
        targets += re.findall(r"""new URL\(["'](\./[^"']+)["'], import\.meta\.url\)""", text)
        targets += re.findall(r"""(?:src|href)="((?!https?:|data:|#)[^"]+)\"""", text)
        for target in targets:
            assert (path.parent / target).resolve().is_file(), f"{path.name}: {target}"
