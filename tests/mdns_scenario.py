"""The mDNS scenario of tests/test_mdns.py, run INSIDE a fresh network namespace.

tests/test_mdns.py runs `unshare --net --pid --fork --kill-child python -m tests.mdns_scenario
WORKDIR`. In there, the only interface is a private loopback, so multicast cannot reach the
machine's real network. This script refuses to start any node unless that is so, brings `lo` up
with multicast, starts MDNS_NODES nodes with mDNS on and no bootstrap entries plus one node with
`--no-mdns`, polls every node's `/api/v1/peers`, and prints one JSON object on its last stdout
line for the test to judge:

    {"ok": true, "mdns": [...], "quiet": {...}, "timings": {...}}
    {"skip": "why the namespace could not be set up"}
    {"error": "what went wrong", "logs": {...}}

It runs as PID 1 of its own PID namespace: when it exits, or `unshare` is killed, the kernel
kills every node left in there and the network namespace goes away with the last of them.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.node_process import EXE, clean_env

MDNS_NODES = 3
RECORD_TTL_S = 6
CONVERGE_TIMEOUT_S = 20.0
QUIET_CHECK_S = 3.0  # after the mDNS nodes converged, the --no-mdns node must stay unknown

# No proxy: a proxy from the environment is unreachable from inside the namespace.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ScenarioError(Exception):
    pass


def _isolated() -> str | None:
    """Why this is not a private namespace holding nothing but loopback, or None if it is."""
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        return f"interfaces here are {names}, not just ['lo']: refusing to send multicast"
    return None


def _setup_loopback() -> None:
    for cmd in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", "lo", "multicast", "on"],
        ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise OSError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()}")


class Node:
    """A `lightbox-node run` child; stdout read by one thread, stderr logged to a file."""

    def __init__(self, name: str, workdir: Path, mdns: bool) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        args = [
            "run",
            "--data-dir",
            str(workdir / name),
            "--http-port",
            "0",
            "--p2p-port",
            "0",
            "--log-level",
            "debug",
            "--set",
            f"record_ttl_s={RECORD_TTL_S}",
        ]
        if not mdns:
            args.append("--no-mdns")
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [EXE, *args], stdout=subprocess.PIPE, stderr=log, text=True, env=clean_env()
            )
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [self._lines.put(ln) for ln in stdout], daemon=True).start()
        self.peer_id = ""
        self.editor = ""

    def read_ready(self, deadline: float) -> None:
        fields: dict[str, str] = {}
        while len(fields) < 3:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self._lines.empty()):
                raise ScenarioError(f"{self.name} did not report ready (exit={self.proc.poll()})")
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            key, sep, value = line.partition(":")
            if sep and key in ("peer id", "p2p", "editor"):
                fields[key] = value.strip()
        self.peer_id = fields["peer id"]
        self.editor = fields["editor"]

    def peers(self) -> dict[str, bool]:
        """Every peer this node lists, and whether it holds that peer's record."""
        with _http.open(self.editor + "api/v1/peers", timeout=5) as response:
            rows = json.load(response)["peers"]
        return {row["peer_id"]: row["record"] is not None for row in rows}

    def wait_or_kill(self, deadline: float) -> None:
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"


def _scenario(workdir: Path, nodes: list[Node]) -> dict[str, Any]:
    start = time.monotonic()
    # The --no-mdns node starts first, so it has been up longest when the others are checked.
    quiet = Node("quiet", workdir, mdns=False)
    nodes.append(quiet)
    mdns_nodes = [Node(f"mdns{i}", workdir, mdns=True) for i in range(MDNS_NODES)]
    nodes.extend(mdns_nodes)
    for node in nodes:
        node.read_ready(start + 20)
    ready_s = time.monotonic() - start

    everyone = {node.peer_id for node in mdns_nodes}
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        views = {node.name: node.peers() for node in mdns_nodes}
        if all(
            {p for p, has_record in views[node.name].items() if has_record}
            >= everyone - {node.peer_id}
            for node in mdns_nodes
        ):
            break
        if time.monotonic() > deadline:
            raise ScenarioError(
                f"mDNS nodes did not converge within {CONVERGE_TIMEOUT_S} s; views: {views}"
            )
        time.sleep(0.2)
    converged_s = time.monotonic() - start

    time.sleep(QUIET_CHECK_S)
    return {
        "ok": True,
        "mdns": [
            {"name": node.name, "peer_id": node.peer_id, "peers": node.peers()}
            for node in mdns_nodes
        ],
        "quiet": {"name": quiet.name, "peer_id": quiet.peer_id, "peers": quiet.peers()},
        "timings": {
            "ready_s": round(ready_s, 2),
            "converged_s": round(converged_s, 2),
            "total_s": round(time.monotonic() - start, 2),
        },
    }


def main() -> dict[str, Any]:
    workdir = Path(sys.argv[1])
    why = _isolated()
    if why:
        return {"error": why}
    try:
        _setup_loopback()
    except OSError as exc:
        return {"skip": f"could not enable multicast on the namespace's loopback: {exc}"}
    why = _isolated()  # still nothing but lo
    if why:
        return {"error": why}
    nodes: list[Node] = []
    try:
        return _scenario(workdir, nodes)
    except (ScenarioError, OSError, ValueError, KeyError) as exc:
        return {
            "error": f"{type(exc).__name__}: {exc}",
            "logs": {node.name: node.log_tail() for node in nodes},
        }
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                node.proc.terminate()
        deadline = time.monotonic() + 5
        for node in nodes:
            node.wait_or_kill(deadline)


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
