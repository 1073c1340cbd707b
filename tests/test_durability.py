"""A queue node SIGKILLed again and again loses no acknowledged job and completes none twice."""

from __future__ import annotations

import http.client
import random
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

from tests.node_process import RunningNode, http_json


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Submitter(threading.Thread):
    """Submits short jobs as fast as the node takes them; remembers every acknowledgement."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.acked: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "X-Lightbox-User": "erin",
            "Content-Type": "application/json",
        }
        while not self.stop.is_set():
            try:
                status, job = http_json(
                    self.url + "api/v1/jobs",
                    method="POST",
                    body={"task": "sleep", "inputs": {"seconds": 0.05}},
                    headers=headers,
                )
            except (OSError, http.client.HTTPException, ValueError):
                # The node is down, or died mid-reply: not acknowledged, nothing to remember.
                time.sleep(0.02)
                continue
            if status == 201:
                self.acked.append(job["job_id"])


def test_sigkilled_queue_node_finishes_every_acknowledged_job_exactly_once(tmp_path: Path):
    rng = random.Random(7)
    http_port, p2p_port = free_port(), free_port()
    args = (
        "--set",
        f"http_port={http_port}",
        "--set",
        f"p2p_port={p2p_port}",
        "--set",
        "gpu_slots=4",
    )

    def start() -> RunningNode:
        return RunningNode(tmp_path, *args)

    node = start()
    token = (tmp_path / "api.token").read_text().strip()
    submitter = Submitter(node.editor, token)
    submitter.start()
    seen_done: dict[str, tuple] = {}
    try:
        for _ in range(10):
            time.sleep(rng.uniform(0.2, 1.0))
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
            node = start()
            # Anything reported done before a crash must stay exactly as it was.
            for job_id in list(submitter.acked)[-50:]:
                status, job = node.api(f"jobs/{job_id}", user="erin")
                assert status == 200, (job_id, job)
                if job["state"] == "done":
                    seen_done.setdefault(job_id, (job["results"], job["attempts"]))
        submitter.stop.set()
        submitter.join(timeout=10)
        acked = list(submitter.acked)
        assert len(acked) > 50, "too few jobs were acknowledged to prove anything"
        deadline = time.monotonic() + 60
        pending = set(acked)
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                status, job = node.api(f"jobs/{job_id}", user="erin")
                assert status == 200, f"acknowledged job {job_id} was lost: {job}"
                assert job["state"] in ("queued", "dispatched", "running", "done"), job
                if job["state"] == "done":
                    pending.discard(job_id)
                    if job_id in seen_done:
                        assert seen_done[job_id] == (job["results"], job["attempts"])
            time.sleep(0.2)
        assert not pending, f"{len(pending)} acknowledged jobs never finished"
    finally:
        submitter.stop.set()
        node.stop()
    with sqlite3.connect(tmp_path / "node.sqlite3") as db:
        rows = dict(db.execute("SELECT job_id, state FROM jobs").fetchall())
    assert all(rows.get(job_id) == "done" for job_id in acked)
    assert len(set(acked)) == len(acked)
