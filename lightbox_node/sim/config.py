"""Simulation settings: one validated object built from a preset, a TOML file and flags.

`SimConfig` holds every parameter of an experiment (network shape, workload, policies and
the knobs of each policy). `PRESETS` name whole configurations (`paper` is the paper's
Figure 15 experiment); `build_config` applies a TOML file and then command-line overrides
on top of a preset, in that order, and validates the result once.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightbox_node.errors import ConfigError

POLICY_NAMES = ("fifo", "paper", "lightbox")
"""The scheduling policies, in the order they are run and reported."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Every parameter of a simulation run (see `SETTING_HELP` for what each one means)."""

    servers: tuple[int, ...] = (1, 4)
    users: tuple[int, ...] = (10, 30, 50, 100, 200)
    hosts_per_user: float = 0.1
    min_hosts: int = 1
    host_slots: int = 1
    duration_s: float = 3600.0
    task_time_s: float = 5.0
    sleep_min_s: float = 10.0
    sleep_max_s: float = 16.0
    trust_min: float = 0.0
    trust_max: float = 1000.0
    federated_share: float = 0.5
    pin_local: bool = False
    link_latency_s: float = 0.05
    job_cost: float = 0.2
    peer_score: float = 0.0
    policies: tuple[str, ...] = POLICY_NAMES
    seed: int = 1
    federated_priority: float = 400.0
    paper_decrement: float = 10.0
    paper_reset_s: float = 3600.0
    aging_per_s: float = 1000.0 / 600.0
    recovery_per_hour: float = 1000.0
    charge_peers: bool = True
    setups: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    """Derived: every (servers, users per server) pair, in run order."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("bad simulation settings: " + "; ".join(problems))
        pairs = tuple((s, u) for s in self.servers for u in self.users)
        object.__setattr__(self, "setups", pairs)

    def hosts_for(self, users: int) -> int:
        """GPU hosts per server for this many users per server."""
        return max(self.min_hosts, round(self.hosts_per_user * users))

    def to_toml(self) -> str:
        """The settings as a TOML file that `build_config(config_file=...)` reads back."""
        lines = ["# lightbox-node simulate: the settings of this run", ""]
        for name in SETTING_NAMES:
            lines.append(f"{name} = {_toml_value(getattr(self, name))}")
        return "\n".join(lines) + "\n"


SETTING_HELP: Mapping[str, str] = {
    "servers": "queue servers per setup, one setup per value (e.g. 1,4)",
    "users": "simulated users per server, one setup per value (e.g. 10,30,50,100,200)",
    "hosts_per_user": "GPU hosts per user on each server (the paper: 0.1)",
    "min_hosts": "least GPU hosts per server",
    "host_slots": "jobs a GPU host runs at once",
    "duration_s": "virtual seconds simulated per setup",
    "task_time_s": "virtual seconds a GPU host takes for one job",
    "sleep_min_s": "least think time of a user between a response and the next request",
    "sleep_max_s": "most think time of a user (uniform between min and max)",
    "trust_min": "lowest initial trust of a user (uniform in [min, max))",
    "trust_max": "highest initial trust of a user (exclusive)",
    "federated_share": "with several servers, share of requests aimed at another server's host",
    "pin_local": "pin local requests to a random host of the user's server (else: any host)",
    "link_latency_s": "one-way latency of the links between queue servers, in seconds",
    "job_cost": "cost of one request in standard images (512x512, 25 steps = 50 trust points)",
    "peer_score": "peer score every server gives its neighbours (lowers the federated priority "
    "under the lightbox policy when < 0)",
    "policies": "policies to run side by side: fifo, paper, lightbox",
    "seed": "random seed; the same seed gives byte-identical output",
    "federated_priority": "queue priority of a federated job (the paper: 400 of 1000)",
    "paper_decrement": "paper policy: trust points one request costs",
    "paper_reset_s": "paper policy: seconds after which an account's trust resets to the max",
    "aging_per_s": "lightbox policy: priority points a queued job gains per second",
    "recovery_per_hour": "lightbox policy: trust points regained per hour",
    "charge_peers": "lightbox policy: charge federated jobs to the forwarding server's account "
    "(the real rule; false exempts them, to see federation without that budget)",
}
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(SimConfig) if f.name != "setups")

PRESETS: Mapping[str, Mapping[str, Any]] = {
    # The paper's Figure 15 experiment (every field's default is the paper's value).
    "paper": {},
    # Seconds, not minutes: for tests and a first look.
    "small": {"users": (10, 30), "duration_s": 900.0},
}


def build_config(
    preset: str = "paper",
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SimConfig:
    """The preset, then the TOML file's settings, then `overrides` (e.g. from flags)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    if config_file is not None:
        values.update(_read_toml(config_file))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[_known(name, "override")] = value
    return SimConfig(**{name: _coerce(name, value) for name, value in values.items()})


def parse_setting(name: str, text: str) -> Any:
    """A setting's value from command-line text (lists are comma-separated)."""
    kind = _KINDS[_known(name, "flag")]
    try:
        if kind in (tuple[int, ...], tuple[str, ...]):
            items = [item.strip() for item in text.split(",") if item.strip()]
            return tuple(int(i) for i in items) if kind == tuple[int, ...] else tuple(items)
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        return kind(text)
    except ValueError:
        raise ConfigError(
            f"--{name.replace('_', '-')} {text!r} is not {_KIND_WORDS[kind]}"
        ) from None


_KINDS: Mapping[str, Any] = typing.get_type_hints(SimConfig)
_KIND_WORDS: Mapping[Any, str] = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    tuple[int, ...]: "a comma-separated list of integers",
    tuple[str, ...]: "a comma-separated list of names",
}


def _known(name: str, where: str) -> str:
    if name not in SETTING_NAMES:
        raise ConfigError(
            f"unknown simulation setting {name!r} ({where}); known: {', '.join(SETTING_NAMES)}"
        )
    return name


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read simulation config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"simulation config {path} is not valid TOML: {exc}") from None
    table = data.get("simulation", data)
    if not isinstance(table, dict):
        raise ConfigError(f"[simulation] in {path} must be a table of settings")
    return {_known(name, f"in {path}"): value for name, value in table.items()}


def _coerce(name: str, value: Any) -> Any:
    kind = _KINDS[name]
    bad = ConfigError(f"simulation setting {name} must be {_KIND_WORDS[kind]}, not {value!r}")
    if kind in (tuple[int, ...], tuple[str, ...]):
        if isinstance(value, str):
            return parse_setting(name, value)
        if not isinstance(value, list | tuple):
            raise bad
        item_type = int if kind == tuple[int, ...] else str
        if not all(isinstance(v, item_type) and not isinstance(v, bool) for v in value):
            raise bad
        return tuple(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise bad
        return int(value)
    return float(value)


def _problems(c: SimConfig) -> list[str]:
    problems = []

    def need(ok: bool, text: str) -> None:
        if not ok:
            problems.append(text)

    for name in SETTING_NAMES:
        value = getattr(c, name)
        if isinstance(value, float):
            need(math.isfinite(value), f"{name} must be a finite number")
    need(bool(c.servers) and all(n >= 1 for n in c.servers), "servers must be integers >= 1")
    need(bool(c.users) and all(n >= 1 for n in c.users), "users must be integers >= 1")
    need(c.hosts_per_user >= 0, "hosts_per_user must be >= 0")
    need(c.min_hosts >= 1, "min_hosts must be >= 1")
    need(c.host_slots >= 1, "host_slots must be >= 1")
    need(c.duration_s > 0, "duration_s must be > 0")
    need(c.task_time_s > 0, "task_time_s must be > 0")
    need(0 <= c.sleep_min_s <= c.sleep_max_s, "need 0 <= sleep_min_s <= sleep_max_s")
    need(c.sleep_max_s > 0, "sleep_max_s must be > 0 (a user must not retry in no time)")
    need(0 <= c.trust_min <= c.trust_max <= 1000, "need 0 <= trust_min <= trust_max <= 1000")
    need(0 <= c.federated_share <= 1, "federated_share must be between 0 and 1")
    need(c.link_latency_s >= 0, "link_latency_s must be >= 0")
    need(c.job_cost >= 0, "job_cost must be >= 0")
    need(bool(c.policies), "policies must name at least one policy")
    unknown = [p for p in c.policies if p not in POLICY_NAMES]
    need(not unknown, f"unknown policies {unknown}; choose from {', '.join(POLICY_NAMES)}")
    need(len(set(c.policies)) == len(c.policies), "policies must not repeat")
    need(0 <= c.federated_priority <= 1000, "federated_priority must be between 0 and 1000")
    need(c.paper_decrement > 0, "paper_decrement must be > 0")
    need(c.paper_reset_s > 0, "paper_reset_s must be > 0")
    need(c.aging_per_s >= 0, "aging_per_s must be >= 0")
    need(c.recovery_per_hour > 0, "recovery_per_hour must be > 0")
    return problems


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)


__all__ = [
    "POLICY_NAMES",
    "PRESETS",
    "SETTING_HELP",
    "SETTING_NAMES",
    "SimConfig",
    "build_config",
    "parse_setting",
]
