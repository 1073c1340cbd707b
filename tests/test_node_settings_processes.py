"""Operator settings reach the running node: SMTP verification mail, proof-of-work difficulty
and the per-account job cap, set in the config and honoured by a real `lightbox-node run`.

The SMTP relay is a minimal one in a thread on 127.0.0.1 that records what it is sent.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightbox_node.accounts.proof_of_work import solve
from tests.node_process import NodeProcess, RunningNode, clean_env, http_json

pytestmark = pytest.mark.slow


class _Relay(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to take one message."""

    def handle(self) -> None:
        inbox: list[str] = self.server.inbox  # type: ignore[attr-defined]
        self.wfile.write(b"220 fake relay\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 fake\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                body = []
                while (text := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(text.decode())
                inbox.append("".join(body))
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def relay() -> Iterator[tuple[int, list[str]]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Relay)
    server.daemon_threads = True
    server.inbox = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], server.inbox  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_verification_mail_goes_through_the_configured_relay_and_job_caps_apply(
    tmp_path: Path, relay: tuple[int, list[str]]
) -> None:
    port, inbox = relay
    node = RunningNode(
        tmp_path / "n",
        *("--set", "smtp_host=127.0.0.1", "--set", f"smtp_port={port}"),
        *("--set", "smtp_sender=lightbox@example.org", "--set", "smtp_starttls=false"),
        *("--set", "pow_difficulty=0", "--set", "max_active_jobs=1"),
        roles="queue,gpu",
    )
    try:
        status, challenge = http_json(node.editor + "api/v1/accounts/challenge")
        assert status == 200 and challenge["difficulty"] == 0
        body = {
            "username": "mallory",
            "password": "a long enough password",
            "email": "mallory@example.org",
            "challenge": challenge["challenge"],
            "answer": solve(challenge["challenge"], 0),
        }
        status, account = http_json(node.editor + "api/v1/accounts", method="POST", body=body)
        assert status == 201, account
        assert len(inbox) == 1
        assert "To: mallory@example.org" in inbox[0] and "From: lightbox@example.org" in inbox[0]

        login = {"username": "mallory", "password": "a long enough password"}
        status, token = http_json(node.editor + "api/v1/auth/login", method="POST", body=login)
        assert status == 200, token
        headers = {"Authorization": f"Bearer {token['token']}"}
        sleep = {"task": "sleep", "inputs": {"seconds": 5}}
        url = node.editor + "api/v1/jobs"
        status, job = http_json(url, method="POST", body=sleep, headers=headers)
        assert status == 201, job
        status, refused = http_json(url, method="POST", body=sleep, headers=headers)
        assert status == 429 and refused["error"] == "too_many_active_jobs", refused
    finally:
        node.stop()


def test_a_relay_without_a_sender_stops_the_node_before_it_serves(tmp_path: Path) -> None:
    process = NodeProcess(
        [
            "run",
            "--data-dir",
            str(tmp_path / "n"),
            "--http-port",
            "0",
            "--p2p-port",
            "0",
            "--no-mdns",
            "--set",
            "smtp_host=127.0.0.1",
        ],
        env=clean_env(LIGHTBOX_SMTP_PASSWORD="hunter2"),
    )
    assert process.proc.wait(timeout=30) != 0
    err = process.proc.stderr.read() if process.proc.stderr else ""
    assert "smtp_sender" in err and "hunter2" not in err
