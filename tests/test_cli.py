"""The `lightbox-node` command, run as a real subprocess against a real data folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightbox_node.identity import PeerId
from tests.node_process import EXE, NodeProcess, clean_env, http_json

SUBCOMMANDS = (
    "init",
    "id",
    "config",
    "run",
    "block",
    "allow",
    "unblock",
    "policy",
    "dashboard",
)


def cli(*args: str, data_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )


@pytest.fixture
def running_node(tmp_path: Path) -> Iterator[tuple[NodeProcess, str, Path]]:
    node = NodeProcess(
        ["run", "--data-dir", str(tmp_path), "--http-port", "0", "--p2p-port", "0", "--no-mdns"]
    )
    try:
        yield node, node.line("editor:"), tmp_path
    finally:
        node.stop(signal.SIGKILL)


def test_help_works_for_every_subcommand() -> None:
    for sub in SUBCOMMANDS:
        result = subprocess.run([EXE, sub, "--help"], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert f"lightbox-node {sub}" in result.stdout


def test_init_creates_private_key_config_and_database(tmp_path: Path) -> None:
    data = tmp_path / "node"
    result = cli("init", data_dir=data)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(data / "node.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert (data / "config.toml").read_text().startswith("# Lightbox node configuration.")
    assert (data / "node.sqlite3").exists()
    printed = result.stdout.split("peer id:")[1].strip()
    assert PeerId.parse(printed)
    assert cli("id", data_dir=data).stdout.strip() == printed


def test_init_twice_keeps_the_same_identity(tmp_path: Path) -> None:
    first = cli("init", data_dir=tmp_path).stdout
    second = cli("init", data_dir=tmp_path)
    assert second.returncode == 0 and "kept existing" in second.stdout
    assert first.split("peer id:")[1] == second.stdout.split("peer id:")[1]


def test_id_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    result = cli("id", data_dir=tmp_path)
    assert result.returncode == 1
    assert "lightbox-node init" in result.stderr and "Traceback" not in result.stderr


def test_run_refuses_a_key_readable_by_others_and_says_how_to_fix_it(tmp_path: Path) -> None:
    cli("init", data_dir=tmp_path)
    os.chmod(tmp_path / "node.key", 0o644)
    result = cli("run", "--http-port", "0", "--no-mdns", data_dir=tmp_path)
    assert result.returncode == 1
    assert str(tmp_path / "node.key") in result.stderr and "chmod 600" in result.stderr


def test_run_reports_a_bad_config_value_with_file_key_and_allowed_values(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('log_level = "loud"\n')
    result = cli("run", data_dir=tmp_path)
    assert result.returncode == 1
    assert str(tmp_path / "config.toml") in result.stderr
    assert "log_level" in result.stderr and "debug, info, warning, error" in result.stderr


def test_run_with_the_http_port_taken_fails_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "run", "--http-port", str(port), "--p2p-port", "0", "--no-mdns", data_dir=tmp_path
        )
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "--http-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_serves_status_and_editor_then_exits_0_on_sigterm(running_node) -> None:
    node, editor, data = running_node
    proc = node.proc
    peer_id = (data / "node.key").read_text().split("peer id: ")[1].split()[0]
    with urllib.request.urlopen(editor + "api/v1/status", timeout=10) as response:
        status = json.load(response)
    assert status["peer_id"] == peer_id
    assert status["roles"] == ["queue", "gpu", "registry"]
    with urllib.request.urlopen(editor, timeout=10) as response:
        assert "<title>Lightbox</title>" in response.read().decode()

    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - sent < 2.0


def test_run_exits_0_on_sigint_within_two_seconds(running_node) -> None:
    node, _, _ = running_node
    proc = node.proc
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - sent < 2.0


def test_run_logs_one_json_object_per_line_when_asked(tmp_path: Path) -> None:
    node = NodeProcess(
        ["run", "--data-dir", str(tmp_path), "--http-port", "0", "--p2p-port", "0", "--no-mdns"],
        env=clean_env(LIGHTBOX_LOG_JSON="true"),
    )
    node.line("editor:")
    assert node.stop() == 0
    assert node.proc.stderr is not None
    err = node.proc.stderr.read()
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any(r["msg"] == "node ready" and r["level"] == "info" for r in records)
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)


def test_init_admin_creates_an_administrator_who_can_log_in(tmp_path: Path) -> None:
    env = clean_env(LIGHTBOX_ADMIN_PASSWORD="correct horse battery staple")
    result = subprocess.run(
        [EXE, "init", "--admin", "root-admin", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "admin:     root-admin (created)" in result.stdout
    again = subprocess.run(
        [EXE, "init", "--admin", "root-admin", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert again.returncode == 1 and "root-admin" in again.stderr  # the name is taken
    node = NodeProcess(
        ["run", "--data-dir", str(tmp_path), "--http-port", "0", "--p2p-port", "0", "--no-mdns"]
    )
    try:
        editor = node.line("editor:")
        status, body = http_json(
            editor + "api/v1/auth/login",
            method="POST",
            body={
                "username": "root-admin",
                "password": "correct horse battery staple",
                "scope": "admin",
            },
            headers={"Content-Type": "application/json"},
        )
        assert status == 200, body
        assert body["scope"] == "admin"
    finally:
        node.stop()
