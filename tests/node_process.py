"""Run `lightbox-node` as a real subprocess and read what it prints, line by line."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "lightbox-node")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any LIGHTBOX_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(extra)
    return env


class NodeProcess:
    """A `lightbox-node` subprocess whose stdout is read by one thread into a queue.

    One reader thread, not select(): the text wrapper buffers lines that select cannot see,
    and two readers would steal each other's lines.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [EXE, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or clean_env(),
        )
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [self._lines.put(ln) for ln in stdout], daemon=True).start()

    def line(self, prefix: str, timeout: float = 30) -> str:
        """The rest of the next stdout line starting with `prefix`; fails clearly otherwise."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        self.proc.kill()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        self.proc.wait()
        raise AssertionError(f"no {prefix!r} line; exit={self.proc.returncode}; stderr:\n{err}")

    def stop(self, sig: int = 15, timeout: float = 5) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def http_json(
    url: str, *, method: str = "GET", body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    """(status, JSON body) of one request; HTTP errors are returned, not raised."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


class RunningNode:
    """`lightbox-node run` on loopback with free ports, and its HTTP API."""

    def __init__(
        self, data_dir: Path, *extra: str, bootstrap: tuple[str, ...] = (), roles: str = ""
    ) -> None:
        args = [
            "run",
            "--data-dir",
            str(data_dir),
            "--http-port",
            "0",
            "--p2p-port",
            "0",
            "--no-mdns",
            *extra,
        ]
        if roles:
            args += ["--roles", roles]
        for entry in bootstrap:
            args += ["--bootstrap", entry]
        self.data_dir = data_dir
        self.process = NodeProcess(args)
        self.proc = self.process.proc
        self.peer_id = self.process.line("peer id:")
        self.p2p_address = self.process.line("p2p:").removeprefix("ws://").split("/")[0]
        self.editor = self.process.line("editor:")

    @property
    def bootstrap_entry(self) -> str:
        return f"{self.peer_id}@{self.p2p_address}"

    def api(
        self, path: str, *, method: str = "GET", body: object = None, user: str = "alice"
    ) -> tuple[int, dict]:
        token = (self.data_dir / "api.token").read_text().strip()
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Lightbox-User": user,
            "Content-Type": "application/json",
        }
        return http_json(self.editor + "api/v1/" + path, method=method, body=body, headers=headers)

    def stop(self) -> int:
        return self.process.stop()
