"""The `lightbox-node simulate` command: parse flags, run the simulation, show progress.

`add_simulate_parser(subparsers, parents)` adds the subcommand to the main parser and
`run_simulate(args)` runs it; `python -m lightbox_node.sim` runs it on its own. Settings come
from the preset, then `--config FILE.toml`, then one flag per setting (`--users 10,30`,
`--task-time-s 5`, ...), in that order.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from lightbox_node.errors import LightboxError
from lightbox_node.sim.config import (
    PRESETS,
    SETTING_HELP,
    SETTING_NAMES,
    build_config,
    parse_setting,
)
from lightbox_node.sim.report import summary_table
from lightbox_node.sim.runner import Setup, SetupDone, run_simulation, setups_of

DEFAULT_OUT = Path("simulation")


def add_simulate_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> Any:
    """Add `simulate` to the command's subparsers; returns its parser.

    `--config` here names the simulation's TOML file: it replaces a `--config` option of the
    parents (the node's config file), so dispatch `simulate` before loading the node config.
    """
    parser = subparsers.add_parser(
        "simulate",
        parents=list(parents),
        conflict_handler="resolve",
        help="simulate trust scheduling in virtual time (the paper's Figure 15)",
        description="Simulate whole networks of queue servers, GPU hosts and users in virtual "
        "time with the real scheduler core, under several policies side by side, and write a "
        "CSV of every request, a summary by trust bucket and plots. Settings: the preset, "
        "then --config, then the flags below.",
    )
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The simulate options, on any parser."""
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="paper",
        help="starting settings: paper (the paper's experiment, the default) or small",
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE.toml", help="TOML file of settings (see below)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes to spread the setups over (output is the same; default 1)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    settings = parser.add_argument_group("settings (override the preset and --config)")
    for name in SETTING_NAMES:
        settings.add_argument(
            "--" + name.replace("_", "-"),
            dest=f"setting_{name}",
            metavar="VALUE",
            help=SETTING_HELP[name],
        )


def run_simulate(args: argparse.Namespace) -> int:
    """Run the simulation the parsed flags describe; 0 on success, 1 with a message if not."""
    try:
        return _run(args)
    except LightboxError as exc:
        print(f"lightbox-node: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    overrides = {}
    for name in SETTING_NAMES:
        text = getattr(args, f"setting_{name}", None)
        if text is not None:
            overrides[name] = parse_setting(name, text)
    config = build_config(args.preset, config_file=args.config, overrides=overrides)
    if args.workers < 1:
        raise LightboxError("--workers must be at least 1")
    total = len(setups_of(config))
    bar = None if args.quiet else _ProgressBar(sys.stderr, total, live=args.workers == 1)
    started = time.perf_counter()
    output = run_simulation(
        config,
        args.out,
        workers=args.workers,
        plots=not args.no_plots,
        on_progress=bar.progress if bar is not None else None,
        on_done=bar.done if bar is not None else None,
    )
    wall = time.perf_counter() - started
    print(summary_table(output.rows))
    print()
    print(f"{total} runs of {config.duration_s:.0f} virtual seconds in {wall:.1f} s wall; wrote:")
    for path in output.files:
        print(f"  {path}")
    return 0


class _ProgressBar:
    """Percent of virtual time per setup, on one line (or one line per setup off a tty)."""

    def __init__(self, out: TextIO, total: int, *, live: bool) -> None:
        self.out = out
        self.total = total
        self.live = live and out.isatty()
        self._started = time.perf_counter()

    def progress(self, setup: Setup, fraction: float) -> None:
        if not self.live:
            return
        filled = round(fraction * 24)
        elapsed = time.perf_counter() - self._started
        self.out.write(
            f"\r[{setup.index + 1}/{self.total}] {setup.label():38s} "
            f"[{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%}  {elapsed:6.1f} s"
        )
        self.out.flush()

    def done(self, done: SetupDone) -> None:
        counts = ", ".join(f"{n} {name}" for name, n in done.outcomes.items() if n)
        line = (
            f"[{done.setup.index + 1}/{self.total}] {done.setup.label():38s} "
            f"{done.wall_s:5.1f} s  {counts}"
        )
        self.out.write(("\r" + line + " " * 8 if self.live else line) + "\n")
        self.out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lightbox_node.sim`: the simulate command on its own."""
    parser = argparse.ArgumentParser(
        prog="python -m lightbox_node.sim",
        description="Simulate trust scheduling in virtual time (lightbox-node simulate).",
    )
    configure_parser(parser)
    return run_simulate(parser.parse_args(argv))


__all__ = ["add_simulate_parser", "configure_parser", "main", "run_simulate"]
