"""Simulation settings: the paper preset, then a TOML file, then flags; validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightbox_node.errors import ConfigError
from lightbox_node.sim.config import (
    POLICY_NAMES,
    SETTING_HELP,
    SETTING_NAMES,
    SimConfig,
    build_config,
    parse_setting,
)


def test_the_paper_preset_has_the_papers_parameters() -> None:
    config = build_config("paper")
    assert config.users == (10, 30, 50, 100, 200)
    assert config.servers == (1, 4)
    assert [config.hosts_for(u) for u in config.users] == [1, 3, 5, 10, 20]
    assert config.task_time_s == 5.0
    assert (config.sleep_min_s, config.sleep_max_s) == (10.0, 16.0)
    assert (config.trust_min, config.trust_max) == (0.0, 1000.0)
    assert config.federated_priority == 400.0
    assert config.duration_s == 3600.0
    assert config.policies == POLICY_NAMES
    assert config.setups == tuple((s, u) for s in (1, 4) for u in (10, 30, 50, 100, 200))


def test_hosts_are_a_tenth_of_the_users_but_at_least_one() -> None:
    config = SimConfig(users=(3, 14, 15))
    assert [config.hosts_for(u) for u in config.users] == [1, 1, 2]


def test_the_toml_file_overrides_the_preset_and_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text("[simulation]\nusers = [5, 7]\nseed = 3\ntask_time_s = 2\n")
    config = build_config("paper", config_file=path, overrides={"seed": 9, "users": None})
    assert config.users == (5, 7)
    assert config.task_time_s == 2.0
    assert config.seed == 9


def test_a_config_written_by_a_run_reads_back_to_the_same_settings(tmp_path: Path) -> None:
    config = build_config("small", overrides={"policies": ("paper",), "pin_local": True})
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert build_config("paper", config_file=path) == config


def test_flags_parse_lists_numbers_and_booleans() -> None:
    assert parse_setting("users", "10, 30,50") == (10, 30, 50)
    assert parse_setting("policies", "fifo,lightbox") == ("fifo", "lightbox")
    assert parse_setting("duration_s", "60") == 60.0
    assert parse_setting("pin_local", "yes") is True
    with pytest.raises(ConfigError, match="--users 'ten' is not a comma-separated list"):
        parse_setting("users", "ten")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"policies": ("fifo", "wfq")}, "unknown policies"),
        ({"sleep_min_s": 20.0}, "sleep_min_s <= sleep_max_s"),
        ({"users": (0,)}, "users must be integers >= 1"),
        ({"federated_share": 1.5}, "federated_share"),
        ({"duration_s": "long"}, "duration_s must be a number"),
        ({"sleep_max_s": 0.0, "sleep_min_s": 0.0}, "sleep_max_s must be > 0"),
    ],
)
def test_bad_settings_are_refused_with_what_is_wrong(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config("paper", overrides=overrides)


def test_unknown_settings_and_presets_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text("userz = [1]\n")
    with pytest.raises(ConfigError, match="unknown simulation setting 'userz'"):
        build_config("paper", config_file=path)
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config("huge")


def test_every_setting_has_help() -> None:
    assert set(SETTING_HELP) == set(SETTING_NAMES)
