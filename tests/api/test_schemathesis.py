"""schemathesis fuzzes every operation of the app's own OpenAPI document: no 5xx anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import ROOMY
from tests.api.harness import OPERATOR_TOKEN, ApiServer

pytest.importorskip("schemathesis")
CLI = Path(sys.executable).parent / "schemathesis"


def test_no_generated_request_gets_a_server_error(tmp_path):
    # Its own server: with the operator token the fuzzer suspends, blocks and sets trust.
    server = ApiServer(tmp_path, ROOMY).start()
    try:
        run = subprocess.run(
            [
                str(CLI),
                "run",
                server.url + "api/v1/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "15",
                "--workers",
                "1",  # its parallel workers trip over a CPython ast thread-safety bug
                "--seed",
                "7",
                "--request-timeout",
                "10",
                "--header",
                f"Authorization: Bearer {OPERATOR_TOKEN}",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary + run.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary.split("Test cases:")[-1]
