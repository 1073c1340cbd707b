"""`lightbox-node dashboard`'s flags: the local node and its token by default."""

from __future__ import annotations

import argparse
from pathlib import Path

from lightbox_node.tui.cli import DEFAULT_NODE, add_dashboard_parser, resolve


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lightbox-node")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path)
    commands = parser.add_subparsers(dest="command")
    add_dashboard_parser(commands, [common])
    return parser.parse_args(["dashboard", *argv])


def test_with_no_flags_the_local_node_and_its_token_are_used(tmp_path: Path) -> None:
    (tmp_path / "api.token").write_text("local-token\n")
    (tmp_path / "config.toml").write_text("http_port = 9123\n")
    node, token, user = resolve(parse("--data-dir", str(tmp_path)))
    assert (node, token, user) == ("http://127.0.0.1:9123", "local-token", "operator")


def test_flags_name_another_node_and_read_a_token_file(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("from-file")
    args = parse("--node", "node.example:8000", "--token", f"@{tmp_path / 't'}", "--user", "ann")
    args.data_dir = tmp_path / "empty"
    assert resolve(args) == ("http://node.example:8000", "from-file", "ann")


def test_a_missing_config_falls_back_to_the_default_address(tmp_path: Path) -> None:
    args = parse("--data-dir", str(tmp_path / "nothing-here"))
    node, token, _ = resolve(args)
    assert node == DEFAULT_NODE and token is None
