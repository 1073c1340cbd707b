"""Three registry node processes on loopback: kill -9 the leader in a stream of writes.

Real `lightbox-node run` processes with fsync'd SQLite Raft storage, real peer links. The
writes go through a follower's HTTP API (which forwards them to the leader through its
registry client); the leader is SIGKILLed mid-stream. A new leader must be known within 2 s
and every write the API acknowledged must be in the committed history afterwards.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.node_process import EXE, RunningNode, clean_env, http_json

pytestmark = pytest.mark.slow


def blob(n: int) -> str:
    return "sha256-" + hashlib.sha256(f"adapter {n}".encode()).hexdigest()


def peer_id_of(data_dir: Path) -> str:
    subprocess.run(
        [EXE, "init", "--data-dir", str(data_dir)], check=True, env=clean_env(), capture_output=True
    )
    result = subprocess.run(
        [EXE, "id", "--data-dir", str(data_dir)],
        check=True,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def leader_seen_by(node: RunningNode) -> str | None:
    status, body = http_json(node.editor + "api/v1/registry")
    return body.get("leader") if status == 200 else None


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_killing_the_leader_elects_another_within_two_seconds_and_keeps_every_write(
    tmp_path: Path,
) -> None:
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    ids = [peer_id_of(d) for d in dirs]
    founders = "registry_founders=" + ",".join(ids)
    nodes: list[RunningNode] = []
    try:
        first = RunningNode(dirs[0], "--set", founders, roles="registry")
        nodes.append(first)
        for d in dirs[1:]:
            nodes.append(
                RunningNode(
                    d, "--set", founders, roles="registry", bootstrap=(first.bootstrap_entry,)
                )
            )
        by_id = {node.peer_id: node for node in nodes}
        assert set(by_id) == set(ids)
        leader = wait_for(
            lambda: (
                (seen := {leader_seen_by(n) for n in nodes})
                and len(seen) == 1
                and None not in seen
                and seen.pop()
            ),
            30,
            "all three to agree on a leader",
        )
        follower = next(n for n in nodes if n.peer_id != leader)
        acknowledged: list[int] = []

        def write(n: int) -> None:
            status, body = follower.api(
                "registry/concepts/dog/adapters",
                method="POST",
                body={"adapter": blob(n), "weight": 1},
            )
            assert status in (200, 201), body
            acknowledged.append(n)

        for n in range(20):
            write(n)
        by_id[leader].process.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        new_leader = wait_for(
            lambda: (seen := leader_seen_by(follower)) not in (None, leader) and seen,
            10,
            "a new leader",
        )
        elected_after = time.monotonic() - killed_at
        assert new_leader != leader
        assert elected_after <= 2.0, f"new leader after {elected_after:.2f} s"
        for n in range(20, 40):
            write(n)
        status, body = http_json(
            follower.editor + "api/v1/registry/concepts/dog/history?limit=1000"
        )
        assert status == 200, body
        committed = {event["adapter"] for event in body["events"] if event["kind"] == "adapter"}
        assert committed == {blob(n) for n in acknowledged}
        assert len(acknowledged) == 40
    finally:
        for node in nodes:
            node.stop()
