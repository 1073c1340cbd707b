"""Run every setup of a configuration and write its outputs: CSV, summary, plots.

The setups run in a fixed order (servers, then users per server, then policy), in this
process or spread over worker processes; either way each writes its requests to its own
part file, and the parts are joined in that order, so the output does not depend on how
many workers ran it.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lightbox_node.sim.config import SimConfig
from lightbox_node.sim.network import OUTCOMES, Progress, run_setup
from lightbox_node.sim.report import (
    SummaryRow,
    summarize,
    summary_table,
    write_requests,
    write_summary,
)


@dataclass(frozen=True, slots=True)
class Setup:
    """One simulated network under one policy."""

    index: int
    servers: int
    users: int
    policy: str

    def label(self) -> str:
        noun = "server" if self.servers == 1 else "servers"
        return f"{self.servers} {noun} x {self.users} users, {self.policy}"


@dataclass(frozen=True, slots=True)
class SetupDone:
    """What a finished setup reports back."""

    setup: Setup
    rows: list[SummaryRow]
    outcomes: dict[str, int]
    wall_s: float


@dataclass(frozen=True, slots=True)
class SimulationOutput:
    rows: list[SummaryRow]
    done: list[SetupDone]
    files: list[Path]


def setups_of(config: SimConfig) -> list[Setup]:
    pairs = [(s, u, p) for s, u in config.setups for p in config.policies]
    return [Setup(i, s, u, p) for i, (s, u, p) in enumerate(pairs)]


def _run_one(config: SimConfig, setup: Setup, part: Path, progress: Progress | None) -> SetupDone:
    result = run_setup(config, setup.policy, setup.servers, setup.users, progress)
    with part.open("w", encoding="utf-8", newline="") as out:
        write_requests(out, result, header=setup.index == 0)
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for request in result.requests:
        outcomes[request.outcome] += 1
    return SetupDone(setup, summarize(result), outcomes, result.wall_s)


def run_simulation(
    config: SimConfig,
    out_dir: Path,
    *,
    workers: int = 1,
    plots: bool = True,
    on_progress: Callable[[Setup, float], None] | None = None,
    on_done: Callable[[SetupDone], None] | None = None,
) -> SimulationOutput:
    """Run every setup, write `requests.csv`, `summary.csv`, `summary.md`, `config.toml`
    and (with `plots`) the PNG figures into `out_dir`.

    `on_progress(setup, fraction)` is called as a setup runs (only with one worker);
    `on_done(done)` after each setup, in order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    setups = setups_of(config)
    done: list[SetupDone] = []
    with tempfile.TemporaryDirectory(prefix="parts-", dir=out_dir) as scratch:
        parts = [Path(scratch) / f"{s.index:04d}.csv" for s in setups]
        if workers <= 1:
            for setup, part in zip(setups, parts, strict=True):
                progress = None
                if on_progress is not None:
                    progress = lambda fraction, s=setup: on_progress(s, fraction)  # noqa: E731
                done.append(_run_one(config, setup, part, progress))
                if on_done is not None:
                    on_done(done[-1])
        else:
            with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(_run_one, config, s, p, None)
                    for s, p in zip(setups, parts, strict=True)
                ]
                for future in futures:
                    done.append(future.result())
                    if on_done is not None:
                        on_done(done[-1])
        requests_csv = out_dir / "requests.csv"
        with requests_csv.open("wb") as joined:
            for part in parts:
                with part.open("rb") as piece:
                    shutil.copyfileobj(piece, joined)
    rows = [row for d in done for row in d.rows]
    files = [requests_csv]
    summary_csv = out_dir / "summary.csv"
    with summary_csv.open("w", encoding="utf-8", newline="") as out:
        write_summary(out, rows)
    files.append(summary_csv)
    summary_md = out_dir / "summary.md"
    text = ["# Simulation summary", "", "Served requests by trust at submit (all requests):", ""]
    text.append(summary_table(rows))
    if any(r.kind == "federated" for r in rows):
        text += ["", "Local requests only:", "", summary_table(rows, kind="local")]
        text += ["", "Federated requests only:", "", summary_table(rows, kind="federated")]
    summary_md.write_text("\n".join(text) + "\n", encoding="utf-8")
    files.append(summary_md)
    config_toml = out_dir / "config.toml"
    config_toml.write_text(config.to_toml(), encoding="utf-8")
    files.append(config_toml)
    if plots:
        from lightbox_node.sim.plots import write_plots

        files += write_plots(rows, out_dir)
    return SimulationOutput(rows, done, files)


__all__ = [
    "Setup",
    "SetupDone",
    "SimulationOutput",
    "run_simulation",
    "setups_of",
]
