"""Node configuration: one frozen object built from defaults, TOML file, environment, flags.

Later sources override earlier ones, in that order. Every setting is declared once in
`SETTINGS` with its type, default, allowed values and help text; the same table parses
TOML values, `LIGHTBOX_*` environment strings and command-line strings, writes the
commented config file, and names the allowed values in every error.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightbox_node.errors import ConfigError, PeerIdError
from lightbox_node.identity import PeerId

ROLES = ("queue", "gpu", "registry")
LOG_LEVELS = ("debug", "info", "warning", "error")
ENV_PREFIX = "LIGHTBOX_"
CONFIG_FILE_NAME = "config.toml"
NOT_SETTINGS = frozenset({"DATA_DIR", "ADMIN_PASSWORD", "SMTP_PASSWORD"})
"""`LIGHTBOX_*` variables read elsewhere: where the data is, the password `init --admin` sets,
and the SMTP relay's password (a secret: never in the config file, never printed)."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lightbox"


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable value: how to parse it from text or TOML, and what is allowed."""

    name: str
    help: str
    parse_text: Callable[[str], Any]
    check: Callable[[Any], Any]
    allowed: str

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()


# -- value parsers; each raises ValueError with a short reason --------------------------


def _int_in(low: int, high: int) -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    def parse(text: str) -> int:
        try:
            return check(int(text.strip(), 10))
        except ValueError:
            raise ValueError(f"expected an integer from {low} to {high}") from None

    return parse, check, f"an integer from {low} to {high}"


def _number_in(low: float, high: float) -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    allowed = f"a number from {low:g} to {high:g}"

    def check(value: Any) -> float:
        if type(value) not in (int, float) or not low <= value <= high:
            raise ValueError(f"expected {allowed}")
        return float(value)

    def parse(text: str) -> float:
        try:
            return check(float(text.strip()))
        except ValueError:
            raise ValueError(f"expected {allowed}") from None

    return parse, check, allowed


def _bool() -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    words = {
        "true": True,
        "1": True,
        "yes": True,
        "on": True,
        "false": False,
        "0": False,
        "no": False,
        "off": False,
    }

    def check(value: Any) -> bool:
        if type(value) is not bool:
            raise ValueError("expected true or false")
        return value

    def parse(text: str) -> bool:
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise ValueError("expected true or false (or 1/0, yes/no, on/off)") from None

    return parse, check, "true or false"


def _choice(options: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    options = tuple(options)

    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return (lambda text: check(text.strip().lower())), check, "one of " + ", ".join(options)


def _roles() -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    allowed = "a non-empty list of " + ", ".join(ROLES)

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"expected {allowed}")
        for role in value:
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}; expected {allowed}")
        return tuple(r for r in ROLES if r in value)  # canonical order, no duplicates

    def parse(text: str) -> tuple[str, ...]:
        return check([part.strip() for part in text.split(",") if part.strip()])

    return parse, check, allowed


def _text(max_len: int = 256) -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    def check(value: Any) -> str:
        if type(value) is not str or not value or len(value) > max_len:
            raise ValueError(f"expected non-empty text of at most {max_len} characters")
        return value

    return check, check, f"non-empty text of at most {max_len} characters"


def _text_list() -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or any(type(v) is not str for v in value):
            raise ValueError("expected a list of strings")
        return tuple(value)

    def parse(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    return parse, check, "a list of strings (comma-separated in the environment)"


def _peer_list() -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or any(type(v) is not str for v in value):
            raise ValueError("expected a list of peer ids")
        for text in value:
            try:
                PeerId.parse(text)
            except PeerIdError as exc:
                raise ValueError(str(exc)) from None
        return tuple(value)

    def parse(text: str) -> tuple[str, ...]:
        return check([part.strip() for part in text.split(",") if part.strip()])

    return parse, check, "a list of peer ids (lb1…), comma-separated in the environment"


def _path() -> tuple[Callable[[str], Any], Callable[[Any], Any], str]:
    def check(value: Any) -> Path:
        if isinstance(value, Path):
            return value
        if type(value) is not str or not value:
            raise ValueError("expected a path")
        return Path(value).expanduser()

    return check, check, "a file-system path"


def _setting(name: str, help: str, kind: tuple) -> Setting:
    """Declare a setting; its default lives on the matching `NodeConfig` field."""
    parse, check, allowed = kind
    return Setting(name, help, parse, check, allowed)


SETTINGS: tuple[Setting, ...] = (
    _setting("network", "Network name; nodes only link with nodes of the same network.", _text(64)),
    _setting("roles", "Roles this node takes: queue, gpu, registry.", _roles()),
    _setting(
        "listen_host",
        "Address for the peer-to-peer listener (0.0.0.0 to accept other machines).",
        _text(),
    ),
    _setting("p2p_port", "TCP port for peer links; 0 picks a free port.", _int_in(0, 65535)),
    _setting(
        "http_host",
        "Address for the HTTP API and the editor. Keep 127.0.0.1 unless behind a proxy.",
        _text(),
    ),
    _setting(
        "http_port",
        "TCP port for the HTTP API and the editor; 0 picks a free one.",
        _int_in(0, 65535),
    ),
    _setting("bootstrap", "Bootstrap peers as PEER_ID@HOST:PORT.", _text_list()),
    _setting("mdns", "Discover peers on the LAN with mDNS.", _bool()),
    _setting(
        "allowlist_only",
        "Link only with peers allowed by `lightbox-node allow` (a closed federation).",
        _bool(),
    ),
    _setting("target_links", "Keep at least this many peer links up.", _int_in(1, 256)),
    _setting(
        "record_ttl_s",
        "Lifetime of this node's capability record, in seconds; republished at a third of it. "
        "A node that vanishes leaves every view within about this long.",
        _number_in(3, 3600),
    ),
    _setting(
        "attach_to",
        "Queue nodes this GPU host serves, by peer id; empty: its own queue role if it has "
        "one, else every linked queue node.",
        _peer_list(),
    ),
    _setting("gpu_slots", "Jobs this GPU host runs at once; 0 drains it.", _int_in(0, 64)),
    _setting(
        "registry_founders",
        "Peer ids of the registry members that found the Raft group, the same list on each; "
        "empty: a node with the registry role founds a group of its own. A registry node not "
        "in the list joins once a member adds it.",
        _peer_list(),
    ),
    _setting(
        "merge_every",
        "The registry leader merges a concept's adapters once this many are waiting "
        "(an administrator can also merge on demand).",
        _int_in(1, 256),
    ),
    _setting(
        "test_tasks",
        "Offer the built-in test tasks (noop, sleep, echo, fail) on this GPU host.",
        _bool(),
    ),
    _setting(
        "demo_models",
        "Build tiny demo models with random weights (for trying the editor without real "
        "weights) and serve them where no real model serves a task.",
        _bool(),
    ),
    _setting(
        "federated_priority",
        "Priority (0-1000) of jobs forwarded by other queue nodes; the paper used 400. "
        "Scaled down further for forwarders with a poor peer score.",
        _number_in(0, 1000),
    ),
    _setting(
        "job_retention_s",
        "How long a finished job's inputs and results are kept after delivery, in seconds.",
        _number_in(0, 365 * 86400),
    ),
    _setting(
        "models_dir", "Folder of model catalog TOML files; unset uses the bundled catalog.", _path()
    ),
    _setting(
        "max_active_jobs",
        "Jobs one account may have queued or running at once on this queue node.",
        _int_in(1, 10_000),
    ),
    _setting(
        "pow_difficulty",
        "Leading zero bits of the proof of work asked to register an account (18: a second or "
        "two in a browser; 0 turns it off, for private nodes).",
        _int_in(0, 32),
    ),
    _setting(
        "smtp_host",
        "SMTP relay for account verification mail; unset sends none. The password, if the "
        "relay needs one, comes from $LIGHTBOX_SMTP_PASSWORD only.",
        _text(),
    ),
    _setting("smtp_port", "SMTP relay port.", _int_in(1, 65535)),
    _setting("smtp_sender", "From address of the verification mail.", _text()),
    _setting("smtp_starttls", "Upgrade the SMTP connection with STARTTLS.", _bool()),
    _setting("smtp_username", "SMTP login name; unset logs in as nobody.", _text()),
    _setting("log_level", "Least severe log level printed.", _choice(LOG_LEVELS)),
    _setting("log_json", "Print logs as one JSON object per line.", _bool()),
)
SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node needs to start; built once by `load_config` and never mutated."""

    data_dir: Path
    network: str = "lightbox-main"
    roles: tuple[str, ...] = ROLES
    listen_host: str = "127.0.0.1"
    p2p_port: int = 7450
    http_host: str = "127.0.0.1"
    http_port: int = 7451
    bootstrap: tuple[str, ...] = ()
    mdns: bool = True
    allowlist_only: bool = False
    target_links: int = 8
    record_ttl_s: float = 30.0
    attach_to: tuple[str, ...] = ()
    gpu_slots: int = 1
    registry_founders: tuple[str, ...] = ()
    merge_every: int = 1
    test_tasks: bool = True
    demo_models: bool = False
    federated_priority: float = 400.0
    job_retention_s: float = 86400.0
    models_dir: Path | None = None
    max_active_jobs: int = 8
    pow_difficulty: int = 18
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_sender: str | None = None
    smtp_starttls: bool = True
    smtp_username: str | None = None
    log_level: str = "info"
    log_json: bool = False

    @property
    def key_file(self) -> Path:
        return self.data_dir / "node.key"

    @property
    def config_file(self) -> Path:
        return self.data_dir / CONFIG_FILE_NAME

    @property
    def database_file(self) -> Path:
        return self.data_dir / "node.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    def replace(self, **changes: Any) -> NodeConfig:
        return dataclasses.replace(self, **changes)


def _apply(values: dict[str, Any], source: str, name: str, raw: Any, from_text: bool) -> None:
    setting = SETTINGS_BY_NAME.get(name)
    if setting is None:
        raise ConfigError(
            f"{source}: unknown setting {name!r}; known settings are " + ", ".join(SETTINGS_BY_NAME)
        )
    try:
        values[name] = setting.parse_text(raw) if from_text else setting.check(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: bad value {raw!r} for {name!r}: {exc} (allowed: {setting.allowed})"
        ) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML config file into checked settings; an absent file is empty."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for name, raw in data.items():
        _apply(values, f"config file {path}", name, raw, from_text=False)
    return values


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from `LIGHTBOX_*` variables; an unknown `LIGHTBOX_` variable is an error."""
    values: dict[str, Any] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var[len(ENV_PREFIX) :] in NOT_SETTINGS:
            continue
        name = var[len(ENV_PREFIX) :].lower()
        _apply(values, f"environment variable {var}", name, raw, from_text=True)
    return values


def parse_assignments(assignments: Iterable[str], source: str = "command line") -> dict[str, Any]:
    """Settings from `name=value` strings (the CLI's repeatable `--set`)."""
    values: dict[str, Any] = {}
    for item in assignments:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"{source}: expected NAME=VALUE, got {item!r}")
        _apply(values, f"{source} --set {name.strip()}", name.strip(), raw, from_text=True)
    return values


def load_config(
    *,
    data_dir: Path | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Build the config: defaults < TOML file < environment < command-line overrides.

    `overrides` are already-typed values from explicit flags, or text from `--set`
    (pass those through `parse_assignments` first).
    """
    env = os.environ if environ is None else environ
    if data_dir is None:
        data_dir = (
            Path(env[ENV_PREFIX + "DATA_DIR"])
            if env.get(ENV_PREFIX + "DATA_DIR")
            else (default_data_dir())
        )
    data_dir = data_dir.expanduser()
    values: dict[str, Any] = {}
    values.update(read_config_file(config_file or data_dir / CONFIG_FILE_NAME))
    values.update(read_environment(env))
    for name, raw in (overrides or {}).items():
        _apply(values, "command line", name, raw, from_text=False)
    return NodeConfig(data_dir=data_dir, **values)


def render_config_file(config: NodeConfig) -> str:
    """A commented TOML file listing every setting at its current value, for `init`."""
    lines = [
        "# Lightbox node configuration.",
        "# Precedence: this file < LIGHTBOX_* environment variables < command-line flags.",
        "# Uncomment a line to change it. Every setting, with its allowed values:",
        "",
    ]
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        lines.append(f"# {setting.help} Allowed: {setting.allowed}. Env: {setting.env_var}")
        lines.append(
            f"# {setting.name} = {_toml_value(value)}"
            if value is not None
            else f'# {setting.name} = "..."'
        )
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
