"""`lightbox-node simulate`: flags over a preset and a TOML file, outputs, errors, progress."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

from lightbox_node.sim.cli import add_simulate_parser, main, run_simulate

SMALL = ["--preset", "small", "--users", "10", "--duration-s", "120", "--no-plots"]


def test_simulate_writes_the_csv_summary_and_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main([*SMALL, "--out", str(out), "--policies", "fifo,lightbox", "--seed", "7"]) == 0
    printed = capsys.readouterr()
    assert "| servers | users/server | policy | trust |" in printed.out
    assert str(out / "requests.csv") in printed.out
    with (out / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["policy"] for r in rows} == {"fifo", "lightbox"}
    assert {r["servers"] for r in rows} == {"1", "4"}
    assert {r["outcome"] for r in rows} <= {"served", "refused", "failed", "unfinished"}
    assert "seed = 7" in (out / "config.toml").read_text()
    assert (out / "summary.csv").exists() and (out / "summary.md").exists()
    # Off a terminal the progress is one line per finished setup.
    assert printed.err.count("\n") == 4 and "1 server x 10 users, fifo" in printed.err


def test_a_toml_file_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    config.write_text("[simulation]\nservers = [1]\nusers = [10]\nduration_s = 60.0\n")
    out = tmp_path / "out"
    argv = ["--config", str(config), "--duration-s", "30", "--out", str(out), "--no-plots"]
    assert main([*argv, "--quiet", "--policies", "paper"]) == 0
    assert "duration_s = 30.0" in (out / "config.toml").read_text()
    assert "servers = [1]" in (out / "config.toml").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "lots"], "--users 'lots' is not a comma-separated list of integers"),
        (["--policies", "fifo,random"], "unknown policies"),
        (["--config", "/nonexistent/sim.toml"], "cannot read simulation config"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_1(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*SMALL, "--out", str(tmp_path), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lightbox-node: error: ") and message in err


def test_the_subcommand_fits_a_parent_that_has_its_own_config_option(tmp_path: Path) -> None:
    # The main command's common options include the node's --config; simulate's replaces it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="node config file")
    common.add_argument("--log-level")
    parser = argparse.ArgumentParser(prog="lightbox-node")
    commands = parser.add_subparsers(dest="command", required=True)
    add_simulate_parser(commands, [common])
    sim_toml = tmp_path / "sim.toml"
    sim_toml.write_text("users = [10]\nservers = [1]\nduration_s = 20.0\n")
    args = parser.parse_args(
        ["simulate", "--config", str(sim_toml), "--out", str(tmp_path / "o"), "--no-plots"]
    )
    assert args.command == "simulate" and args.config == sim_toml
    assert run_simulate(args) == 0
    assert (tmp_path / "o" / "requests.csv").exists()
