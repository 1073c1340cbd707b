"""Real processes on loopback: five nodes find each other through a bootstrap chain."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.node_process import EXE, NodeProcess, clean_env

RECORD_TTL_S = 4


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Node:
    def __init__(self, data_dir: Path, *bootstrap: str | None, p2p_port: str = "0") -> None:
        args = [
            "run",
            "--data-dir",
            str(data_dir),
            "--http-port",
            "0",
            "--p2p-port",
            p2p_port,
            "--no-mdns",
            "--set",
            f"record_ttl_s={RECORD_TTL_S}",
        ]
        for entry in bootstrap:
            if entry:
                args += ["--bootstrap", entry]
        self.process = NodeProcess(args)
        self.proc = self.process.proc
        self.peer_id = self.process.line("peer id:")
        self.p2p_address = self.process.line("p2p:").removeprefix("ws://").split("/")[0]
        self.editor = self.process.line("editor:")

    @property
    def bootstrap_entry(self) -> str:
        return f"{self.peer_id}@{self.p2p_address}"

    def known_peers(self) -> set[str]:
        rows = get_json(self.editor + "api/v1/peers")["peers"]
        return {row["peer_id"] for row in rows if row["record"] is not None}

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def five_nodes(tmp_path: Path) -> Iterator[list[Node]]:
    nodes: list[Node] = []
    try:
        for i in range(5):
            previous = nodes[-1].bootstrap_entry if nodes else None
            nodes.append(Node(tmp_path / f"node{i}", previous))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_five_processes_converge_and_drop_a_killed_one(five_nodes: list[Node]) -> None:
    everyone = {node.peer_id for node in five_nodes}
    for node in five_nodes:
        wait_for(
            lambda node=node: node.known_peers() == everyone - {node.peer_id},
            timeout=30,
            what=f"{node.peer_id[:12]} to hold every other node's record",
        )
    details = get_json(five_nodes[0].editor + f"api/v1/peers/{five_nodes[4].peer_id}")
    assert details["record"]["roles"] == ["queue", "gpu", "registry"]

    victim = five_nodes[2]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=5)
    survivors = [n for n in five_nodes if n is not victim]
    for node in survivors:
        wait_for(
            lambda node=node: victim.peer_id not in node.known_peers(),
            timeout=RECORD_TTL_S + 6,
            what=f"{node.peer_id[:12]} to drop the killed node",
        )
    for node in survivors:  # the chain was broken at node 2, yet the rest stay connected
        assert node.known_peers() == everyone - {node.peer_id, victim.peer_id}


def test_a_blocked_peer_is_cut_off_at_once_and_stays_blocked_after_restart(
    tmp_path: Path,
) -> None:
    first = Node(tmp_path / "a", None)
    second = Node(tmp_path / "b", first.bootstrap_entry)
    try:
        wait_for(lambda: second.peer_id in first.known_peers(), 30, "the two nodes to link")
        blocked = subprocess.run(
            [EXE, "block", second.peer_id, "--reason", "spam", "--data-dir", str(tmp_path / "a")],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=False,
            timeout=30,
        )
        assert blocked.returncode == 0, blocked.stderr
        wait_for(lambda: second.peer_id not in first.known_peers(), 15, "the block to apply")
        listed = subprocess.run(
            [EXE, "policy", "--data-dir", str(tmp_path / "a")],
            capture_output=True,
            text=True,
            env=clean_env(),
            check=False,
            timeout=30,
        )
        assert f"block  {second.peer_id}" in listed.stdout and "spam" in listed.stdout

        # Restart with the same key and policy; a third node links to both, so each learns
        # the other's record and address through it: the block must hold against both paths.
        first.stop()
        first = Node(tmp_path / "a", None)
        third = Node(tmp_path / "c", first.bootstrap_entry, second.bootstrap_entry)
        everyone_else = {first.peer_id, second.peer_id}
        wait_for(lambda: third.known_peers() == everyone_else, 30, "the third node to link both")
        wait_for(lambda: first.peer_id in second.known_peers(), 30, "the blocked side to learn")
        time.sleep(RECORD_TTL_S)  # time for the blocked node to dial the address it learnt
        assert first.known_peers() == {third.peer_id}
        first_view = get_json(first.editor + "api/v1/peers")["peers"]
        assert all(row["peer_id"] != second.peer_id for row in first_view)
        third.stop()
    finally:
        first.stop()
        second.stop()
