"""Config: defaults < TOML file < environment < command line, and errors that name the culprit."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from lightbox_node.config import (
    SETTINGS,
    NodeConfig,
    load_config,
    parse_assignments,
    render_config_file,
)
from lightbox_node.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


def test_every_setting_is_a_config_field_and_every_field_but_data_dir_is_a_setting() -> None:
    fields = {f.name for f in dataclasses.fields(NodeConfig)} - {"data_dir"}
    assert {s.name for s in SETTINGS} == fields


def test_defaults_apply_when_nothing_is_configured(tmp_path: Path) -> None:
    config = load_config(data_dir=tmp_path, environ={})
    assert config == NodeConfig(data_dir=tmp_path)
    assert config.roles == ("queue", "gpu", "registry")


def test_file_overrides_defaults_env_overrides_file_flags_override_env(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", 'http_port = 1001\np2p_port = 2001\nnetwork = "from-file"\n')
    env = {"LIGHTBOX_P2P_PORT": "2002", "LIGHTBOX_NETWORK": "from-env"}
    config = load_config(data_dir=tmp_path, environ=env, overrides={"network": "from-flag"})
    assert config.http_port == 1001  # file only
    assert config.p2p_port == 2002  # env beats file
    assert config.network == "from-flag"  # flag beats env


def test_data_dir_comes_from_the_environment_when_no_flag_is_given(tmp_path: Path) -> None:
    config = load_config(environ={"LIGHTBOX_DATA_DIR": str(tmp_path / "d")})
    assert config.data_dir == tmp_path / "d"
    assert config.key_file == tmp_path / "d" / "node.key"


def test_explicit_config_file_replaces_the_one_in_the_data_dir(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", "http_port = 1\n")
    other = write(tmp_path / "other.toml", "http_port = 2\n")
    assert load_config(data_dir=tmp_path, config_file=other, environ={}).http_port == 2


def test_unknown_key_in_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "http_prot = 80\n")
    with pytest.raises(ConfigError) as info:
        load_config(data_dir=tmp_path, environ={})
    message = str(info.value)
    assert str(path) in message and "'http_prot'" in message and "http_port" in message


def test_bad_value_in_file_names_file_key_and_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "http_port = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_config(data_dir=tmp_path, environ={})
    message = str(info.value)
    assert str(path) in message and "http_port" in message and "0 to 65535" in message


def test_wrong_toml_type_is_refused_even_if_it_looks_right(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", 'http_port = "8080"\nmdns = 1\n')
    with pytest.raises(ConfigError, match="http_port"):
        load_config(data_dir=tmp_path, environ={})


def test_invalid_toml_is_reported_with_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "http_port = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(data_dir=tmp_path, environ={})
    assert str(path) in str(info.value)


def test_unknown_role_lists_the_allowed_roles(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", 'roles = ["queue", "miner"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(data_dir=tmp_path, environ={})
    assert "miner" in str(info.value) and "queue, gpu, registry" in str(info.value)


def test_roles_are_deduplicated_in_canonical_order(tmp_path: Path) -> None:
    config = load_config(data_dir=tmp_path, environ={"LIGHTBOX_ROLES": "registry,queue,queue"})
    assert config.roles == ("queue", "registry")


def test_environment_booleans_and_lists_are_parsed_from_text(tmp_path: Path) -> None:
    env = {"LIGHTBOX_MDNS": "off", "LIGHTBOX_LOG_JSON": "yes", "LIGHTBOX_BOOTSTRAP": "a@h:1, b@h:2"}
    config = load_config(data_dir=tmp_path, environ=env)
    assert config.mdns is False and config.log_json is True
    assert config.bootstrap == ("a@h:1", "b@h:2")


def test_unknown_lightbox_environment_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LIGHTBOX_HTTP_PROT"):
        load_config(data_dir=tmp_path, environ={"LIGHTBOX_HTTP_PROT": "1"})


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data_dir=tmp_path, environ={"LIGHTBOX_LOG_LEVEL": "loud"})
    assert "LIGHTBOX_LOG_LEVEL" in str(info.value) and "debug, info, warning, error" in str(
        info.value
    )


def test_set_assignments_parse_like_the_environment() -> None:
    assert parse_assignments(["http_port=9", "mdns=false"]) == {"http_port": 9, "mdns": False}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_assignments(["http_port"])
    with pytest.raises(ConfigError, match="--set nope"):
        parse_assignments(["nope=1"])


def test_rendered_config_file_parses_back_to_the_same_values_when_uncommented(
    tmp_path: Path,
) -> None:
    config = load_config(data_dir=tmp_path, environ={}, overrides={"http_port": 1234})
    text = render_config_file(config)
    assert tomllib.loads(text) == {}  # everything commented out: defaults stay in code
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line and '= "..."' not in line else line
        for line in text.splitlines()
    )
    write(tmp_path / "config.toml", uncommented)
    assert load_config(data_dir=tmp_path, environ={}) == config
